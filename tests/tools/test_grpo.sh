#!/usr/bin/env bash
# test_grpo.sh — qw-grpo: rollouts of a fixture model (qw-rollout -n 4, EOS
# ids that stop some completions early), rewards attached, one update; its
# gradient (--dump-grads) against an independent reference: `qw-eval
# forward --grads` with per-token coefficients computed by
# tests/tools/grpo_ref.py from TRL's formulas (advantages, completion mask,
# loss aggregation) on qw-eval's logits, for dapo, grpo and dr_grpo, with
# several micro-batches; the loss; a wrong aggregation is told apart;
# --epochs 2 engages clipping; the rollout ratio metrics; the checkpoint
# loads and has moved; --beta with the model as its own reference gives KL
# 0; the pipe qw-rollout | qw-reward | qw-grpo; bad input writes nothing.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 36
cd "$tmp"
ref() { python3 "$QW_SRCDIR/tests/tools/grpo_ref.py" "$@"; }
M=m
mkdir -p $M && cp "$QW_SRCDIR/tests/golden/dense_tied/model/"* $M/
# many EOS ids, so completions end at different lengths (the mask after the first EOS)
python3 -c 'import json; print(json.dumps({"eos_token_id": list(range(2, 256, 16))}))' >$M/generation_config.json
python3 - >p.jsonl <<'PY'
import json
for i, n in enumerate([3, 5, 8]):
    print(json.dumps({"prompt_ids": [(7 * i + 13 * t + 3) % 256 for t in range(n)]}))
PY
expect_status "qw-rollout -n 4" 0 qw-rollout -m $M -p p.jsonl -n 4 --max-new-tokens 16 --seed 3 --threads 1 -q -o r.jsonl
python3 - r.jsonl >s.jsonl <<'PY'
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l); r["reward"] = float((sum(r["completion_ids"]) + len(r["completion_ids"])) % 3); print(json.dumps(r))
PY
check "completions of different lengths, some ended by EOS" python3 -c '
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
assert len({len(r["completion_ids"]) for r in rs}) > 1 and any(r["finish_reason"] == "stop" for r in rs), rs' s.jsonl
EOS=$(python3 -c 'print(",".join(str(i) for i in range(2, 256, 16)))')   # the mask: up to the first of them
ref input s.jsonl "$EOS" in.st >/dev/null 2>&1
for lt in dapo grpo dr_grpo; do
    rm -rf o_$lt
    expect_status "$lt: one update, micro-batches of 64 tokens" 0 qw-grpo -m $M -o o_$lt --loss-type $lt \
        --micro-batch-tokens 64 --dump-grads g_$lt.st --log m_$lt.jsonl --threads 1 -q s.jsonl
    expect_status "$lt: the reference's rows through qw-eval forward" 0 qw-eval forward -m $M --input in.st --output f.st
    loss=$(ref coef s.jsonl "$EOS" f.st $lt c_$lt.st)
    expect_status "$lt: the reference's coefficients through qw-eval forward --grads" 0 \
        qw-eval forward -m $M --input c_$lt.st --output rg_$lt.st --grads
    if out=$(ref grads rg_$lt.st g_$lt.st 1e-4); then pass "$lt: gradient = the reference's"; echo "NOTE $lt: worst relative difference $out"
    else fail "$lt: gradient = the reference's" "$out"; fi
    check "$lt: loss = the reference's ($loss)" python3 -c '
import json, sys
got = json.loads(open(sys.argv[1]).readline())["loss"]; want = float(sys.argv[2])
assert abs(got - want) <= 1e-5 * max(1, abs(want)), (got, want)' m_$lt.jsonl "$loss"
done
check "a wrong aggregation is told apart (grpo's gradient is not dapo's)" bash -c '! python3 "$1" grads rg_grpo.st g_dapo.st 1e-4 >/dev/null' _ "$QW_SRCDIR/tests/tools/grpo_ref.py"
check "first step: the training forward equals the sampler (rollout ratio in [0.9, 1.1], median 1)" python3 -c '
import json, sys
m = json.loads(open(sys.argv[1]).readline())
assert m["rollout_ratio_frac_outside"] == 0 and abs(m["rollout_ratio_median"] - 1) < 1e-4, m
assert m["rollout_ratio_min"] <= m["rollout_ratio_p1"] <= m["rollout_ratio_median"] <= m["rollout_ratio_p99"] <= m["rollout_ratio_max"], m
assert m["clip_ratio"] == 0 and m["frac_reward_zero_std"] <= 1 and m["completion_length"] > 0, m' m_dapo.jsonl
check "the checkpoint loads and the weights moved" bash -c '
qw-eval forward -m "$1/step-000001" --input in.st --output f2.st && ! python3 "$QW_SRCDIR/tests/tools/eval_st.py" close f.st f2.st 1e-7 >/dev/null 2>&1' _ o_dapo

# μ = 2: the second step's old log-probs are the first's, the policy moved: clipping engages
rm -rf o_mu
expect_status "--epochs 2, lr 1e-2" 0 qw-grpo -m $M -o o_mu --epochs 2 --lr 1e-2 --log m_mu.jsonl --threads 1 -q s.jsonl
check "  clip ratio 0 at step 1, > 0 at step 2" python3 -c '
import json, sys
a, b = [json.loads(l) for l in open(sys.argv[1])]
assert a["clip_ratio"] == 0 and b["clip_ratio_low"] + b["clip_ratio_high"] > 0 and b["step"] == 2, (a, b)' m_mu.jsonl
check "  two checkpoints' worth of steps: step-000002" test -f o_mu/step-000002/model.safetensors

# KL: the model as its own reference
rm -rf o_kl
expect_status "--beta 0.04 --ref (the model itself)" 0 qw-grpo -m $M --ref $M -o o_kl --beta 0.04 --log m_kl.jsonl --threads 1 -q s.jsonl
check "  kl = 0 at the first step" python3 -c '
import json, sys
m = json.loads(open(sys.argv[1]).readline()); assert abs(m["kl"]) < 1e-6, m' m_kl.jsonl

# the pipe
cat >rw.py <<'PY'
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(json.dumps({"reward": float(len(r["completion_ids"]) % 2)}), flush=True)
PY
rm -rf o_pipe
check "qw-rollout | qw-reward --verifier cmd | qw-grpo" bash -c '
qw-rollout -m m -p p.jsonl -n 4 --max-new-tokens 8 --seed 4 --threads 1 -q |
qw-reward --verifier cmd --cmd "python3 rw.py" -q | qw-grpo -m m -o o_pipe --log m_pipe.jsonl --threads 1 -q &&
test -f o_pipe/latest && grep -q "\"step\":1" m_pipe.jsonl'

# bad input: exit 3 naming the record, nothing written
python3 - s.jsonl <<'PY'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
def dump(name, recs):
    with open(name, "w") as f:
        for r in recs: f.write(json.dumps(r) + "\n")
a = [dict(r) for r in rs]; del a[5]["reward"]; dump("noreward.jsonl", a)
dump("unequal.jsonl", rs[:-1])
a = [dict(r) for r in rs]; a[7]["completion_ids"] = a[7]["completion_ids"][:-1] + [300]; dump("vocab.jsonl", a)
a = [dict(r) for r in rs]; del a[2]["prompt_ids"]; dump("noids.jsonl", a)
PY
for c in "noreward:record 6: no numeric \"reward\"" "unequal:expected 4" "vocab:record 8: \"completion_ids\"\[15\] = 300 is outside the model's vocabulary" \
         "noids:record 3: missing \"prompt_ids\""; do
    f=${c%%:*} re=${c#*:}
    rm -rf o_bad
    expect_status "bad input: $f → 3" 3 qw-grpo -m $M -o o_bad --log m_bad.jsonl --threads 1 -q $f.jsonl
    expect_stderr "  names the record ($re)" "$re"
done
check "  nothing written" test ! -e o_bad -a ! -e m_bad.jsonl
expect_status "--temperature 0 refused" 2 qw-grpo -m $M -o o_bad --temperature 0 s.jsonl
