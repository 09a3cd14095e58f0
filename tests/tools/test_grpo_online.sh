#!/usr/bin/env bash
# test_grpo_online.sh — qw-grpo at a sampling temperature ≠ 1, and the
# online loop (--online): rollout → reward → update in one process.
#
# Temperature: rollouts sampled at T = 0.7 from an untied fixture model;
# the first step's training forward equals the sampler (the rollout ratio
# exp(logp_train − logprobs) is 1); the gradient of one update equals an
# independent reference: the same model with its LM head divided by T
# (whose logits are z/T) through `qw-eval forward --grads` with
# tests/tools/grpo_ref.py's coefficients, its LM-head gradient times 1/T.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 6
cd "$tmp"
ref() { python3 "$QW_SRCDIR/tests/tools/grpo_ref.py" "$@"; }
M=m
mkdir -p $M && cp "$QW_SRCDIR/tests/golden/sft/model/"* $M/
python3 -c 'import json; print(json.dumps({"eos_token_id": list(range(2, 256, 16))}))' >$M/generation_config.json
EOS=$(python3 -c 'print(",".join(str(i) for i in range(2, 256, 16)))')
python3 - >p.jsonl <<'PY'
import json
for i, n in enumerate([3, 5, 8, 4]):
    print(json.dumps({"prompt_ids": [(7 * i + 13 * t + 3) % 256 for t in range(n)], "answer": str(i % 3)}))
PY
score() {   # a reward from the ids: groups with different rewards
python3 - "$1" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l); r["reward"] = float((sum(r["completion_ids"]) + len(r["completion_ids"])) % 3); print(json.dumps(r))
PY
}

# ---- temperature ----
TT=0.7
qw-rollout -m $M -p p.jsonl -n 4 --max-new-tokens 12 --temperature $TT --seed 5 --threads 1 -q -o r7.jsonl
score r7.jsonl >s7.jsonl
expect_status "T=$TT: one update" 0 qw-grpo -m $M -o o7 --temperature $TT --micro-batch-tokens 64 \
    --dump-grads g7.st --log m7.jsonl --threads 1 -q s7.jsonl
check "T=$TT: the training forward equals the sampler's log-probs at T (ratio 1)" python3 -c '
import json, sys
m = json.loads(open(sys.argv[1]).readline())
assert m["rollout_ratio_frac_outside"] == 0 and abs(m["rollout_ratio_median"] - 1) < 1e-4, m
assert abs(m["rollout_ratio_min"] - 1) < 1e-3 and abs(m["rollout_ratio_max"] - 1) < 1e-3, m' m7.jsonl
mkdir -p mT && cp $M/* mT/
ref scale $M/model.safetensors lm_head.weight "$(python3 -c "print(1/$TT)")" mT/model.safetensors
ref input s7.jsonl "$EOS" in7.st >/dev/null
qw-eval forward -m mT --input in7.st --output f7.st 2>/dev/null
loss=$(ref coef s7.jsonl "$EOS" f7.st dapo c7.st)
qw-eval forward -m mT --input c7.st --output rg7.st --grads 2>/dev/null
ref scale rg7.st grad.lm_head.weight "$(python3 -c "print(1/$TT)")" rg7s.st
if out=$(ref grads rg7s.st g7.st 1e-4); then pass "T=$TT: gradient = the reference's"; echo "NOTE T=$TT: worst relative difference $out"
else fail "T=$TT: gradient = the reference's" "$out"; fi
check "T=$TT: a gradient at T = 1 is told apart" bash -c '
qw-grpo -m m -o o1 --dump-grads g1.st --threads 1 -q s7.jsonl && ! python3 "$1" grads rg7s.st g1.st 1e-4 >/dev/null' _ "$QW_SRCDIR/tests/tools/grpo_ref.py"
check "T=$TT: loss = the reference's ($loss)" python3 -c '
import json, sys
got = json.loads(open(sys.argv[1]).readline())["loss"]; want = float(sys.argv[2])
assert abs(got - want) <= 1e-5 * max(1, abs(want)), (got, want)' m7.jsonl "$loss"
expect_status "--temperature 0 refused" 2 qw-grpo -m $M -o o_bad --temperature 0 s7.jsonl
