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
#
# Online: step 1 of `qw-grpo --online` gives the same scored rollouts
# (--save-rollouts), gradient and weights as the pipe qw-rollout | qw-reward
# | qw-grpo on the same prompts with the same seed; step 2 samples from the
# weights step 1 left in memory (the pipe from the step-1 checkpoint with
# seed + 1 and the next prompts gives its records); three steps with the
# math and cmd verifiers and a KL term log every metric; bad input (a field
# the verifier needs, a reward program that prints garbage) exits 3 naming
# the record and writes nothing.
#
# Several ranks (mpirun -np 2, whole groups per rank): the same gradient as
# one rank within 1e-6 of its largest value, offline for dapo, grpo and
# dr_grpo with full micro-batches, and online (each rank sampling its half of
# the prompts).
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 30
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

# ---- online ----
cat >rw.py <<'PY'
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(json.dumps({"reward": float((sum(r["completion_ids"]) + len(r["completion_ids"])) % 3)}), flush=True)
PY
ON="-G 4 --max-new-tokens 16 --temperature 0.8 --verifier cmd --lr 1e-3 --threads 1 -q"
expect_status "online, 2 steps of 2 prompts" 0 qw-grpo --online -m $M -o on2 --prompts p.jsonl --prompts-per-step 2 --steps 2 \
    --seed 7 --cmd "python3 rw.py" --save-rollouts sr2.jsonl $ON
expect_status "online, step 1 alone (its checkpoint, its gradient)" 0 qw-grpo --online -m $M -o on1 --prompts p.jsonl \
    --prompts-per-step 2 --steps 1 --seed 7 --cmd "python3 rw.py" --save-rollouts sr1.jsonl --dump-grads gon.st $ON
head -n 2 p.jsonl | qw-rollout -m $M -p - -n 4 --max-new-tokens 16 --temperature 0.8 --seed 7 --threads 1 -q |
    qw-reward --verifier cmd --cmd "python3 rw.py" -q >pipe1.jsonl
check "step 1: the scored rollouts = qw-rollout --seed 7 | qw-reward's" bash -c 'head -n 8 sr2.jsonl | cmp -s - pipe1.jsonl && cmp -s sr1.jsonl pipe1.jsonl'
expect_status "step 1 through the pipe's qw-grpo" 0 qw-grpo -m $M -o op --temperature 0.8 --lr 1e-3 --dump-grads gpipe.st \
    --threads 1 -q pipe1.jsonl
check "step 1: the gradient = the pipe's, bit for bit" cmp -s gon.st gpipe.st
check "step 1: the updated weights = the pipe's, bit for bit" cmp -s on1/step-000001/model.safetensors op/step-000001/model.safetensors
sed -n 3,4p p.jsonl | qw-rollout -m op/step-000001 -p - -n 4 --max-new-tokens 16 --temperature 0.8 --seed 8 --threads 1 -q |
    qw-reward --verifier cmd --cmd "python3 rw.py" -q >pipe2.jsonl
check "step 2 samples the updated weights: its rollouts = the pipe's from step 1's checkpoint, seed + 1" \
    bash -c 'tail -n 8 sr2.jsonl | cmp -s - pipe2.jsonl && ! cmp -s pipe1.jsonl pipe2.jsonl'

# three steps with a tokenizer: math and cmd verifiers, KL, TensorBoard
bash "$QW_SRCDIR/tests/tools/gen_rollout_model.sh" gm >/dev/null 2>&1
python3 - >pm.jsonl <<'PY'
import json
for i, a in enumerate([2, 3, 5]):
    print(json.dumps({"prompt": "the cat sat on %d mats and" % i, "answer": str(a)}))
PY
expect_status "online, 3 steps, --verifier math:1,cmd:0.5, --beta 0.04" 0 qw-grpo --online -m gm/model -o o3 --prompts pm.jsonl \
    --prompts-per-step 2 --steps 3 -G 3 --max-new-tokens 12 --verifier math:1,cmd:0.5 --cmd "python3 rw.py" --beta 0.04 \
    --lr 1e-3 --log m3.jsonl --tensorboard tb3 --save-rollouts sr3.jsonl --seed 1 --threads 1
check "  the metrics of each step" python3 -c '
import json, sys
ms = [json.loads(l) for l in open(sys.argv[1])]
assert [m["step"] for m in ms] == [1, 2, 3], ms
for m in ms:
    for k in ("loss", "reward_mean", "reward_std", "frac_reward_zero_std", "kl", "clip_ratio_low", "clip_ratio_high", "entropy",
              "completion_length", "completion_length_max", "gen_s", "reward_s", "train_s", "rollout_ratio_median"):
        assert k in m, (k, m)
    assert abs(m["gen_frac"] + m["reward_frac"] + m["train_frac"] - 1) < 1e-6 and m["gen_s"] > 0 and m["train_s"] > 0, m
    assert 0 < m["completion_length"] <= m["completion_length_max"] <= 12 and m["entropy"] > 0, m
    assert abs(m["rollout_ratio_median"] - 1) < 1e-4, m   # the engine samples the weights being trained
assert abs(ms[0]["kl"]) < 1e-6 and ms[2]["kl"] > 0, ms' m3.jsonl
check "  the scored rollouts: 18 records with completion text, reward and rewards per verifier" python3 -c '
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
assert len(rs) == 18 and all(isinstance(r["completion"], str) and set(r["rewards"]) == {"math", "cmd"} for r in rs), rs[0]
assert [r["idx"] for r in rs[:6]] == [0, 0, 0, 1, 1, 1] and rs[0]["prompt"].startswith("the cat sat on 0"), rs[0]
assert all(abs(r["reward"] - (r["rewards"]["math"] + 0.5 * r["rewards"]["cmd"])) < 1e-9 for r in rs)' sr3.jsonl
check "  a TensorBoard event file and the checkpoint" bash -c 'ls tb3/events.out.tfevents.* >/dev/null && test -f o3/step-000003/model.safetensors'

# bad input
python3 - >pbad.jsonl <<'PY'
import json
print(json.dumps({"prompt": "the cat", "answer": "1"}))
print(json.dumps({"prompt": "the dog"}))
PY
expect_status "a prompt without the math verifier's answer → 3" 3 qw-grpo --online -m gm/model -o obad --prompts pbad.jsonl -G 2 \
    --max-new-tokens 4 --verifier math --log mbad.jsonl --save-rollouts srbad.jsonl --threads 1 -q
expect_stderr "  names the record" "pbad.jsonl': line 2: no \"answer\""
printf 'import sys\nfor l in sys.stdin: print("not json", flush=True)\n' >garbage.py
expect_status "a reward program that prints garbage → 3" 3 qw-grpo --online -m $M -o obad --prompts p.jsonl -G 2 \
    --max-new-tokens 4 --verifier cmd --cmd "python3 garbage.py" --log mbad.jsonl --save-rollouts srbad.jsonl --threads 1 -q
expect_stderr "  names the record" "step 1: rollout record 1: the reward program's reply is not a JSON object"
check "  nothing written (no checkpoint, no rollouts, no step in the metrics)" bash -c 'test ! -e obad -a ! -e srbad.jsonl && ! test -s mbad.jsonl'
expect_status "--online without -G → 2" 2 qw-grpo --online -m $M -o obad --prompts p.jsonl --verifier cmd --cmd true

# ---- several ranks ----
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
       OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_plm_rsh_agent=false
python3 - >p8.jsonl <<'PY'
import json
for i, n in enumerate([3, 5, 8, 4, 6, 2, 7, 5]):
    print(json.dumps({"prompt_ids": [(7 * i + 13 * t + 3) % 256 for t in range(n)]}))
PY
qw-rollout -m $M -p p8.jsonl -n 4 --max-new-tokens 12 --seed 3 --threads 1 -q | qw-reward --verifier cmd --cmd "python3 rw.py" -q >s8.jsonl
# micro-batches of 4 rows: 8 on one rank, 4 on each of two (the same rows in each)
MBT=$(python3 -c 'import json, sys; print(4 * max(len(r["prompt_ids"]) + len(r["completion_ids"]) for r in map(json.loads, open(sys.argv[1]))))' s8.jsonl)
for lt in dapo grpo dr_grpo; do
    qw-grpo -m $M -o r1_$lt --loss-type $lt --micro-batch-tokens $MBT --dump-grads r1_$lt.st --threads 1 -q s8.jsonl
    mpirun -np 2 qw-grpo -m $M -o r2_$lt --loss-type $lt --micro-batch-tokens $MBT --dump-grads r2_$lt.st --threads 1 -q s8.jsonl
    if out=$(ref grads r1_$lt.st r2_$lt.st 1e-6); then pass "2 ranks = 1 rank, $lt"; echo "NOTE 2 ranks $lt: worst relative difference $out"
    else fail "2 ranks = 1 rank, $lt" "$out"; fi
done
expect_status "2 ranks online, a step of 4 prompts" 0 mpirun -np 2 qw-grpo --online -m $M -o on_r2 --prompts p8.jsonl \
    --prompts-per-step 4 --seed 7 --cmd "python3 rw.py" --dump-grads on_r2.st --log on_r2.jsonl $ON
qw-grpo --online -m $M -o on_r1 --prompts p8.jsonl --prompts-per-step 4 --seed 7 --cmd "python3 rw.py" --dump-grads on_r1.st \
    --log on_r1.jsonl $ON
if out=$(ref grads on_r1.st on_r2.st 1e-6); then pass "  = 1 rank online"; echo "NOTE 2 ranks online: worst relative difference $out"
else fail "  = 1 rank online" "$out"; fi
check "  the same rewards, loss and lengths in the metrics" python3 -c '
import json, sys
a, b = (json.loads(open(f).readline()) for f in sys.argv[1:])
for k in ("reward_mean", "reward_std", "completion_length", "completion_tokens", "entropy"):
    assert abs(a[k] - b[k]) <= 1e-6 * max(1, abs(a[k])), (k, a[k], b[k])
assert abs(a["loss"] - b["loss"]) <= 1e-5 * max(1e-3, abs(a["loss"])), (a["loss"], b["loss"])' on_r1.jsonl on_r2.jsonl
expect_status "several ranks: rollouts from standard input refused" 2 mpirun -np 2 qw-grpo -m $M -o obad --threads 1 -q
