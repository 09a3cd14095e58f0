#!/bin/bash
# tests/bench/grpo_cuda.sh — `make bench-gpu`: one GRPO step of Qwen3-0.6B
# shapes on the GPU, split into generation, reward and training — 64
# prompts of 128 random ids, a group of 8 completions each, 512 new tokens
# (EOS ignored, so every completion is full length: the worst case of a
# step), sampled at temperature 1 by qw-rollout (bf16, --max-batch 512),
# scored by qw-reward --verifier cmd (a small Python coprocess: a
# pseudo-reward from the ids), and one qw-grpo update (bf16, dapo) on the
# 512 completions.  Random weights (transformers' initialisation, bf16), as
# in rollout_cuda.sh.
#
# One JSON line on stdout and in $QW_BENCH_RESULTS/grpo.jsonl: each part's
# wall seconds (loading included for qw-rollout and qw-grpo; their own
# compute times beside them where they print or log one), the fractions,
# and the distribution of the first-iteration ratio exp(logp_train −
# logp_rollout) that qw-grpo logs (bf16 sampling against the bf16 training
# forward).
#
#   QW_BIN  QW_BENCH_MODEL (config name or directory; default qwen3-0.6b)
#   QW_BENCH_PROMPTS (64)  QW_BENCH_GROUP (8)  QW_BENCH_NEW (512)
#   QW_BENCH_RESULTS (build/bench-gpu)  PYTHON (python3)
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
PATH=${QW_BIN:-$root/bin}:$PATH
m=${QW_BENCH_MODEL:-qwen3-0.6b}
P=${QW_BENCH_PROMPTS:-64} G=${QW_BENCH_GROUP:-8} N=${QW_BENCH_NEW:-512}
res=${QW_BENCH_RESULTS:-build/bench-gpu}
py=${PYTHON:-python3}
rt=tests/bench/rollout_torch.py
mkdir -p "$res" || exit 1
w=$(mktemp -d) || exit 1
trap 'rm -rf "$w"' EXIT
say() { echo "grpo bench: [${SECONDS}s] $*" >&2; }
now() { date +%s.%N; }
fail() { printf '{"bench": "grpo", "model": "%s", "error": "%s"}\n' "$m" "$1" | tee -a "$res/grpo.jsonl"; exit 1; }

if [ -f "$m/config.json" ]; then dir=$m cfg=$m/config.json
else
    cfg=pipelines/configs/$m.json dir=$w/model
    say "making random bf16 weights"
    timeout 300 "$py" $rt model --config "$cfg" --out "$dir" >"$w/make.log" 2>&1 || { tail -5 "$w/make.log" >&2; fail "could not make the model"; }
fi
vocab=$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$cfg")
"$py" $rt prompts --vocab "$vocab" --n "$P" --len 128 >"$w/p.jsonl"
cat >"$w/rw.py" <<'PY'
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    ids = r["completion_ids"]
    print(json.dumps({"reward": float(sum(ids[:16]) % 5 == 0) + 0.1 * (sum(ids) % 7)}), flush=True)
PY
say "qw-rollout: $P prompts x $G samples x $N new tokens"
t0=$(now)
qw-rollout -m "$dir" -p "$w/p.jsonl" -n "$G" --max-new-tokens "$N" --ignore-eos --temperature 1 --seed 1 \
    --max-batch $((P * G)) --device cuda -o "$w/r.jsonl" 2>"$w/gen.log" || { tail -5 "$w/gen.log" >&2; fail "qw-rollout failed"; }
t1=$(now)
tr '\r' '\n' <"$w/gen.log" | tail -2 >&2
say "qw-reward"
qw-reward --verifier cmd --cmd "$py $w/rw.py" -q -o "$w/s.jsonl" "$w/r.jsonl" || fail "qw-reward failed"
t2=$(now)
say "qw-grpo"
qw-grpo -m "$dir" -o "$w/out" --device cuda --lr 1e-6 --log "$w/m.jsonl" -q "$w/s.jsonl" 2>"$w/train.log" ||
    { tail -5 "$w/train.log" >&2; fail "qw-grpo failed"; }
t3=$(now)
cat "$w/train.log" >&2
"$py" - "$m" "$P" "$G" "$N" "$t0" "$t1" "$t2" "$t3" "$w/m.jsonl" "$w/gen.log" <<'PY' | tee -a "$res/grpo.jsonl"
import json, re, sys
m, P, G, N = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t0, t1, t2, t3 = map(float, sys.argv[5:9])
metrics = [json.loads(l) for l in open(sys.argv[9]) if l.strip()]
gen_log = open(sys.argv[10], errors="replace").read().replace("\r", "\n")
gen, rew, train = t1 - t0, t2 - t1, t3 - t2
tot = gen + rew + train
out = {"bench": "grpo", "model": m, "prompts": P, "group": G, "new_tokens": N, "completions": P * G,
       "generated_tokens": P * G * N, "gen_s": round(gen, 2), "reward_s": round(rew, 2), "train_s": round(train, 2),
       "gen_frac": round(gen / tot, 3), "reward_frac": round(rew / tot, 3), "train_frac": round(train / tot, 3),
       "gen_tok_per_s": round(P * G * N / gen), "note": "wall seconds per program, model loading included"}
last = [l for l in gen_log.splitlines() if "tok/s" in l or "tokens" in l]
if last:
    out["qw_rollout_says"] = last[-1].strip()[:200]
if metrics:
    keep = ("loss", "grad_norm", "tokens", "step_s", "time_s", "tok_per_s")
    out["grpo_metrics"] = {k: v for k, v in metrics[0].items() if k in keep or k.startswith("ratio") or k.startswith("rollout")}
print(json.dumps(out))
PY
