#!/usr/bin/env bash
# test_dpo_online.sh — qw-dpo --online: sample from the policy in memory,
# score with the verifiers, pair the best with the worst sample of each
# prompt, and make the DPO update of pairs from a file.
#
# Step 1 online equals the pipe: its scored rollouts (--save-rollouts) are
# qw-rollout --seed S | qw-reward's; its pairs (--pairs-out, qw-dpo(5)) are
# the best and worst of each group; and qw-dpo offline on those pairs gives
# the same gradient and updated weights, bit for bit.  Step 2 samples the
# updated weights with seed S + 1.  A verifier with no spread makes no
# pair, no update, and is counted; the metrics; bad input and usage.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 19
cd "$tmp"
mkdir -p m && cp "$QW_SRCDIR/tests/golden/sft/model/"* m/
echo '{"eos_token_id": 255}' >m/generation_config.json
python3 - >p.jsonl <<'PY'
import json
for i, n in enumerate([3, 5, 8, 4]):
    print(json.dumps({"prompt_ids": [(7 * i + 13 * t + 3) % 256 for t in range(n)]}))
PY
cat >rw.py <<'PY'
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(json.dumps({"reward": float((sum(r["completion_ids"]) + len(r["completion_ids"])) % 3)}), flush=True)
PY
ON="-n 3 --max-new-tokens 6 --verifier cmd --lr 1e-3 --schedule constant --micro-batch-pairs 2 --threads 1 -q"
expect_status "online, step 1 (its pairs, rollouts, gradient, checkpoint)" 0 qw-dpo --online -m m -o on1 --prompts p.jsonl \
    --steps 1 --seed 7 --cmd "python3 rw.py" --pairs-out pairs1.jsonl --save-rollouts sr1.jsonl --dump-grads gon.st --log m1.jsonl $ON
qw-rollout -m m -p p.jsonl -n 3 --max-new-tokens 6 --seed 7 --threads 1 -q | qw-reward --verifier cmd --cmd "python3 rw.py" -q >pipe1.jsonl
check "step 1: the scored rollouts = qw-rollout --seed 7 | qw-reward's" cmp -s sr1.jsonl pipe1.jsonl
check "step 1: the pairs = the first best and the first worst sample of each prompt" python3 - pipe1.jsonl pairs1.jsonl <<'PY'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
want = []
for i in range(0, len(rs), 3):
    g = rs[i:i + 3]
    r = [x["reward"] for x in g]
    if max(r) == min(r): continue
    b, w = r.index(max(r)), r.index(min(r))
    want.append({"step": 1, "idx": g[0]["idx"], "prompt_ids": g[0]["prompt_ids"], "chosen_ids": g[b]["completion_ids"],
                 "rejected_ids": g[w]["completion_ids"], "chosen_reward": max(r), "rejected_reward": min(r)})
got = [json.loads(l) for l in open(sys.argv[2])]
assert got == want and len(got) >= 2, (got, want)
PY
NP=$(wc -l <pairs1.jsonl)
expect_status "the pairs through qw-dpo offline (--no-shuffle)" 0 qw-dpo -m m -o off1 --no-shuffle --steps 1 --batch-pairs $NP --lr 1e-3 --schedule constant \
    --micro-batch-pairs 2 --dump-grads goff.st --log moff.jsonl --threads 1 -q pairs1.jsonl
check "step 1: the gradient = offline's, bit for bit" cmp -s gon.st goff.st
check "step 1: the updated weights = offline's, bit for bit" cmp -s on1/step-000001/model.safetensors off1/step-000001/model.safetensors
check "step 1: the metrics (TRL's, pairs, groups without spread, time split)" python3 - m1.jsonl moff.jsonl "$NP" <<'PY'
import json, math, sys
a = json.loads(open(sys.argv[1]).readline()); b = json.loads(open(sys.argv[2]).readline())
for k in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected",
          "grad_norm", "pairs", "tokens"):
    assert a[k] == b[k], (k, a[k], b[k])
assert a["pairs"] == int(sys.argv[3]) and a["groups_without_spread"] == 4 - a["pairs"], a
assert abs(a["loss"] - math.log(2)) < 1e-6 and a["gen_s"] > 0 and a["train_s"] > 0 and 0 < a["gen_frac"] < 1, a
assert 0 <= a["contain_eos"] <= 1 and a["reward_margin"] > 0, a
PY

# step 2 samples the weights step 1 left in memory, with seed + 1
expect_status "online, 2 steps of 2 prompts" 0 qw-dpo --online -m m -o on2 --prompts p.jsonl --prompts-per-step 2 --steps 2 \
    --seed 7 --cmd "python3 rw.py" --save-rollouts sr2.jsonl --log m2.jsonl $ON
sed -n 1,2p p.jsonl | qw-rollout -m m -p - -n 3 --max-new-tokens 6 --seed 7 --threads 1 -q |
    qw-reward --verifier cmd --cmd "python3 rw.py" -q >pipe2a.jsonl
rm -rf on2a && qw-dpo --online -m m -o on2a --prompts p.jsonl --prompts-per-step 2 --steps 1 --seed 7 --cmd "python3 rw.py" $ON
sed -n 3,4p p.jsonl | qw-rollout -m on2a/step-000001 -p - -n 3 --max-new-tokens 6 --seed 8 --threads 1 -q |
    qw-reward --verifier cmd --cmd "python3 rw.py" -q >pipe2b.jsonl
check "step 2: rollouts of the updated weights (= the pipe from step 1's checkpoint, seed + 1)" \
    bash -c 'head -n 6 sr2.jsonl | cmp -s - pipe2a.jsonl && tail -n 6 sr2.jsonl | cmp -s - pipe2b.jsonl'
check "  two steps logged" python3 -c '
import json, sys
ms = [json.loads(l) for l in open(sys.argv[1])]
assert [m["step"] for m in ms] == [1, 2], ms' m2.jsonl

# no spread: no pair, no update
printf 'import sys\nfor l in sys.stdin: print("{\\"reward\\": 1.0}", flush=True)\n' >flat.py
expect_status "a verifier without spread" 0 qw-dpo --online -m m -o flat --prompts p.jsonl --seed 3 --cmd "python3 flat.py" \
    --log mflat.jsonl $ON
check "  no pair made, 4 groups without spread, the weights unchanged" bash -c '
python3 -c "
import json, sys
m = json.loads(open(sys.argv[1]).readline())
assert m[\"pairs\"] == 0 and m[\"groups_without_spread\"] == 4 and \"loss\" not in m, m" mflat.jsonl &&
python3 "$1" close m/model.safetensors flat/step-000001/model.safetensors 0' _ "$QW_SRCDIR/tests/tools/eval_st.py"
# --missing-eos-penalty turns a flat reward into a spread when some samples end without EOS
expect_status "--missing-eos-penalty 1 with the flat verifier" 0 qw-dpo --online -m m -o pen --prompts p.jsonl --seed 7 \
    --cmd "python3 flat.py" --missing-eos-penalty 1 --pairs-out pen.jsonl --log mpen.jsonl $ON
check "  pairs exactly where a group mixes EOS and length endings" python3 - sr1.jsonl pen.jsonl <<'PY'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
mixed = [rs[i]["idx"] for i in range(0, len(rs), 3) if len({x["finish_reason"] for x in rs[i:i + 3]}) == 2]
got = [json.loads(l) for l in open(sys.argv[2])]
assert [p["idx"] for p in got] == mixed, (got, mixed)
assert all(p["chosen_reward"] == 1 and p["rejected_reward"] == 0 for p in got), got
PY

# bad input and usage
printf 'import sys\nfor l in sys.stdin: print("not json", flush=True)\n' >garbage.py
expect_status "a reward program that prints garbage → 3" 3 qw-dpo --online -m m -o obad --prompts p.jsonl --cmd "python3 garbage.py" \
    --log mbad.jsonl --pairs-out pbad.jsonl $ON
expect_stderr "  names the record" "step 1: rollout record 1: the reward program's reply is not a JSON object"
check "  nothing written (no checkpoint, no pairs, no step in the metrics)" bash -c 'test ! -e obad -a ! -e pbad.jsonl && ! test -s mbad.jsonl'
expect_status "-n 1 → 2" 2 qw-dpo --online -m m -o obad --prompts p.jsonl --verifier cmd --cmd true -n 1
expect_status "--pairs-out without --online → 2" 2 qw-dpo -m m -o obad --pairs-out x.jsonl pairs1.jsonl
