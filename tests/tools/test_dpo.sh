#!/usr/bin/env bash
# test_dpo.sh — qw-dpo on a tiny fixture model (V 256) and a reference (the
# same perturbed, tests/golden/post/ref_model): the first loss is ln 2 when
# the reference is the policy; for each loss type the loss and the first
# step's gradient (--dump-grads, pairs split into micro-batches) against an
# independent reference: tests/tools/dpo_ref.py computes TRL's loss from
# `qw-eval forward` logits of both models and its derivative by central
# differences, and `qw-eval forward --grads` turns those per-token weights
# into a gradient; a wrong loss is told apart; reference log-probs saved by
# --save-ref equal the reference's forward, and training on them equals
# training beside the reference; the metrics; steps and epochs; resume from
# a mid-run checkpoint gives the weights of one run (the pairs shuffled
# per epoch, the default); --no-shuffle and the seed's order; truncation; text pairs
# (plain and chat) tokenized as documented; bad input exits 3 naming the
# file and record, writing nothing.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 62
cd "$tmp"
ref() { python3 "$QW_SRCDIR/tests/tools/dpo_ref.py" "$@"; }
grads() { python3 "$QW_SRCDIR/tests/tools/grpo_ref.py" grads "$@"; }
M=$QW_SRCDIR/tests/golden/dense_tied/model
R=$QW_SRCDIR/tests/golden/post/ref_model
# six pairs: the parity fixture's four, one with an empty prompt (its first completion token is not
# scored), one longer
cp "$QW_SRCDIR/tests/golden/post/dpo.jsonl" pairs.jsonl
cat >>pairs.jsonl <<'EOF'
{"prompt_ids": [], "chosen_ids": [17, 99, 3, 250], "rejected_ids": [17, 98]}

{"prompt_ids": [5, 6, 7, 8, 9, 10, 11, 12], "chosen_ids": [40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50], "rejected_ids": [200, 201, 202]}
EOF
ref input pairs.jsonl in.st
expect_status "qw-eval forward: the policy's rows" 0 qw-eval forward -m $M --input in.st --output fp.st
expect_status "qw-eval forward: the reference's rows" 0 qw-eval forward -m $R --input in.st --output fr.st

# 1. the reference is the policy: loss ln 2, margins and accuracy 0
expect_status "reference = policy (default): one step" 0 qw-dpo -m $M -o o_same --batch-pairs 6 --steps 1 \
    --log m_same.jsonl --threads 1 -q pairs.jsonl
check "  step 1: loss = ln 2, margins 0, accuracy 0" python3 -c '
import json, math, sys
m = json.loads(open(sys.argv[1]).readline())
assert abs(m["loss"] - math.log(2)) < 1e-6 and abs(m["rewards/margins"]) < 1e-6 and m["rewards/accuracies"] == 0, m' m_same.jsonl

# 2. each loss against the independent reference
for c in "sigmoid 0.1 0" "hinge 0.5 0" "ipo 0.1 0" "robust 0.1 0.1"; do
    set -- $c
    lt=$1
    rm -rf o_$lt
    expect_status "$lt: one step, 3 micro-batches of 2 pairs" 0 qw-dpo -m $M --ref $R -o o_$lt --loss-type $lt --beta $2 \
        --label-smoothing $3 --batch-pairs 6 --micro-batch-pairs 2 --dump-grads g_$lt.st --log m_$lt.jsonl --threads 1 -q pairs.jsonl
    loss=$(ref coef pairs.jsonl fp.st fr.st $lt $2 $3 c_$lt.st)
    expect_status "$lt: the reference's weights through qw-eval forward --grads" 0 \
        qw-eval forward -m $M --input c_$lt.st --output rg_$lt.st --grads
    if out=$(grads rg_$lt.st g_$lt.st 1e-4); then pass "$lt: gradient = the reference's"; echo "NOTE $lt: worst relative difference $out"
    else fail "$lt: gradient = the reference's" "$out"; fi
    check "$lt: loss = the reference's ($loss)" python3 -c '
import json, sys
got = json.loads(open(sys.argv[1]).readline())["loss"]; want = float(sys.argv[2])
assert abs(got - want) <= 1e-5 * max(1, abs(want)), (got, want)' m_$lt.jsonl "$loss"
done
check "a wrong loss is told apart (hinge's gradient is not sigmoid's)" bash -c '! python3 "$1" grads rg_hinge.st g_sigmoid.st 1e-4 >/dev/null' \
    _ "$QW_SRCDIR/tests/tools/grpo_ref.py"
check "metrics: the DPO fields, rewards = beta x log-ratio" python3 -c '
import json, sys
m = json.loads(open(sys.argv[1]).readline())
for k in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
          "logps/rejected", "grad_norm", "lr", "tokens"):
    assert k in m, k
assert abs(m["rewards/margins"] - (m["rewards/chosen"] - m["rewards/rejected"])) < 1e-6, m
assert 0 <= m["rewards/accuracies"] <= 1 and m["logps/chosen"] < 0 and m["grad_norm"] > 0 and m["lr"] == 1e-6, m' m_sigmoid.jsonl
check "the checkpoint loads and the weights moved" bash -c '
qw-eval forward -m o_sigmoid/step-000001 --input in.st --output f2.st && ! python3 "$QW_SRCDIR/tests/tools/eval_st.py" close fp.st f2.st 1e-7 >/dev/null 2>&1'

# 3. precomputed reference log-probs
rm -rf o_pre
expect_status "--save-ref: the reference in a first pass" 0 qw-dpo -m $M --ref $R -o o_pre --batch-pairs 6 --micro-batch-pairs 4 \
    --save-ref saved.jsonl --dump-grads g_pre.st --log m_pre.jsonl --threads 1 -q pairs.jsonl
ref logps pairs.jsonl fr.st want_ref.jsonl
check "  the saved log-probs are the reference's forward" python3 -c '
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]; b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b) == 6
for x, y in zip(a, b):
    for k in ("prompt_ids", "chosen_ids", "rejected_ids"): assert x[k] == y[k], k
    for k in ("ref_chosen_logp", "ref_rejected_logp"): assert abs(x[k] - y[k]) <= 1e-5 * abs(y[k]), (k, x[k], y[k])' saved.jsonl want_ref.jsonl
check "  precomputed = beside the policy: gradient" bash -c 'python3 "$1" grads g_sigmoid.st g_pre.st 1e-6 >/dev/null' _ "$QW_SRCDIR/tests/tools/grpo_ref.py"
rm -rf o_fields
expect_status "pairs with ref fields (from stdin): no reference model" 0 bash -c \
    'qw-dpo -m "$1" -o o_fields --batch-pairs 6 --dump-grads g_fields.st --log m_fields.jsonl --threads 1 -q <saved.jsonl' _ $M
check "  the same gradient and loss" python3 -c '
import json, subprocess, sys
a = json.loads(open(sys.argv[1]).readline()); b = json.loads(open(sys.argv[2]).readline())
assert abs(a["loss"] - b["loss"]) < 1e-7, (a, b)
subprocess.run(["python3", sys.argv[3], "grads", "g_sigmoid.st", "g_fields.st", "1e-6"], check=True, stdout=subprocess.DEVNULL)' \
    m_sigmoid.jsonl m_fields.jsonl "$QW_SRCDIR/tests/tools/grpo_ref.py"
expect_status "ref fields and --ref: refused" 2 qw-dpo -m $M --ref $R -o o_bad2 saved.jsonl

# 4. steps, epochs, schedule
rm -rf o_ep
expect_status "--epochs 2 --batch-pairs 4 (2 steps an epoch), constant lr" 0 qw-dpo -m $M --ref $R -o o_ep --epochs 2 \
    --batch-pairs 4 --schedule constant --lr 1e-3 --log m_ep.jsonl --threads 1 -q pairs.jsonl
check "  4 steps, the loss falls" python3 -c '
import json, sys
m = [json.loads(l) for l in open(sys.argv[1])]
assert [x["step"] for x in m] == [1, 2, 3, 4] and all(x["pairs"] == 4 for x in m), m
assert m[2]["loss"] < m[0]["loss"], [x["loss"] for x in m]' m_ep.jsonl
rm -rf o_lin
expect_status "--steps 4 --warmup 1, linear schedule" 0 qw-dpo -m $M -o o_lin --steps 4 --warmup 1 --lr 1e-3 --batch-pairs 3 \
    --log m_lin.jsonl --threads 1 -q pairs.jsonl
check "  lr 0, 1e-3, then linear to 0" python3 -c '
import json, sys
lr = [json.loads(l)["lr"] for l in open(sys.argv[1])]
want = [0, 1e-3, 1e-3 * 2 / 3, 1e-3 / 3]
assert all(abs(a - b) < 1e-12 for a, b in zip(lr, want)) and len(lr) == 4, lr' m_lin.jsonl

# 5. resume: a run cut after step 2 continues to the weights of one run
rm -rf o_full o_cut
expect_status "4 steps, saving every 2" 0 qw-dpo -m $M --ref $R -o o_full --steps 4 --batch-pairs 4 --lr 1e-3 --save-every 2 \
    --keep-last 0 --log m_full.jsonl --threads 1 -q pairs.jsonl
mkdir o_cut && cp -r o_full/step-000002 o_cut/ && echo step-000002 >o_cut/latest && head -n 2 m_full.jsonl >m_cut.jsonl
expect_status "--resume from step 2" 0 qw-dpo -m $M --ref $R -o o_cut --resume o_cut --steps 4 --batch-pairs 4 --lr 1e-3 \
    --save-every 2 --keep-last 0 --log m_cut.jsonl --threads 1 -q pairs.jsonl
check "  the same weights at step 4" cmp -s o_full/step-000004/model.safetensors o_cut/step-000004/model.safetensors
check "  the same log" cmp -s <(grep -o '"loss":[^,]*' m_full.jsonl) <(grep -o '"loss":[^,]*' m_cut.jsonl)
rm -rf o_sig
qw-dpo -m $M --ref $R -o o_sig --steps 100000 --batch-pairs 6 --save-every 1000 --log m_sig.jsonl --threads 1 -q pairs.jsonl \
    2>sig.err & pid=$!
for _ in $(seq 100); do [ -s m_sig.jsonl ] && break; sleep 0.1; done
kill -TERM $pid; wait $pid; st=$?
check "SIGTERM: exit 143 with a checkpoint to resume from" bash -c "[ $st -eq 143 ] && test -f o_sig/latest && grep -q -- --resume sig.err"

# 5b. shuffling: with lr 0 each step's loss is its pair's, so the logs show the order the pairs were taken in
for v in "ns --no-shuffle" "s0 --seed 0" "s1 --seed 1"; do
    set -- $v
    rm -rf o_$1
    qw-dpo -m $M --ref $R -o o_$1 --lr 0 --schedule constant --batch-pairs 1 --steps 12 --log l_$1.jsonl --threads 1 -q $2 ${3:-} pairs.jsonl
done
check "shuffling: --no-shuffle takes the file order twice; by default each epoch is a new permutation, by --seed" python3 - <<'PY'
import json
L = {k: [json.loads(l)["loss"] for l in open("l_%s.jsonl" % k)] for k in ("ns", "s0", "s1")}
ns, s0, s1 = L["ns"], L["s0"], L["s1"]
assert len(ns) == len(s0) == len(s1) == 12 and ns[:6] == ns[6:] and len(set(ns[:6])) == 6, ns
for s in (s0, s1):
    assert sorted(s[:6]) == sorted(ns[:6]) and sorted(s[6:]) == sorted(ns[:6]), (s, ns)
assert s0[:6] != ns[:6] and s0[:6] != s0[6:] and s0 != s1, (s0, s1)
PY

# 6. truncation: the scored tokens counted by the metrics
for mode in keep-start keep-end; do
    rm -rf o_tr
    expect_status "--max-length 9 --truncation $mode" 0 qw-dpo -m $M -o o_tr --max-length 9 --truncation $mode --batch-pairs 6 \
        --steps 1 --log m_$mode.jsonl --threads 1 -q pairs.jsonl
    check "  $mode: the scored tokens of the cut rows" python3 - m_$mode.jsonl pairs.jsonl $mode 9 <<'PY'
import json, sys
m = json.loads(open(sys.argv[1]).readline())
L, want = int(sys.argv[4]), 0
for q in (json.loads(l) for l in open(sys.argv[2]) if l.strip()):
    for k in ("chosen_ids", "rejected_ids"):
        p, row = q["prompt_ids"], q["prompt_ids"] + q[k]
        cut = max(0, len(row) - L)
        if sys.argv[3] == "keep-start": row, np = row[:L], len(p)
        else: row, np = row[cut:], max(0, len(p) - cut)
        want += len(row) - max(np, 1)
assert m["tokens"] == want, (m["tokens"], want)
PY
done

# 7. text pairs: a small model with a tokenizer (Qwen3's special tokens, <|im_end|> as EOS)
bash "$QW_SRCDIR/tests/tools/gen_rollout_model.sh" tm >/dev/null 2>&1
TM=tm/model
qw-tokenize --train --vocab-size 300 -q -o tm/tok2 tm/corpus.txt
cat >text.jsonl <<'EOF'
{"prompt": "the cat sat on", "chosen": " the mat.", "rejected": " a dog"}
{"prompt": [{"role": "user", "content": "where is the cat?"}], "chosen": [{"role": "assistant", "content": "on the mat."}], "rejected": [{"role": "assistant", "content": "a red house"}]}
EOF
expect_status "text and chat pairs, -t the model's tokenizer, --save-ref" 0 qw-dpo -m $TM -t $TM -o o_text --save-ref text_ids.jsonl \
    --log m_text.jsonl --threads 1 -q text.jsonl
check "  plain text: prompt and completions tokenized alone, EOS after each completion" python3 - text_ids.jsonl "$TM" <<'PY'
import json, subprocess, sys
p = json.loads(open(sys.argv[1]).readline())
eos = json.load(open(sys.argv[2] + "/generation_config.json"))["eos_token_id"]
eos = eos[0] if isinstance(eos, list) else eos
def tok(s):
    r = subprocess.run(["qw-tokenize", "-t", sys.argv[2], "--jsonl", "--ids", "-q"], input=json.dumps({"text": s}) + "\n",
                       capture_output=True, text=True, check=True)
    return [int(x) for x in r.stdout.split()]
assert p["prompt_ids"] == tok("the cat sat on"), p
assert p["chosen_ids"] == tok(" the mat.") + [eos] and p["rejected_ids"] == tok(" a dog") + [eos], p
PY
check "  chat: prompt + completion = the whole conversation rendered and tokenized" python3 - text_ids.jsonl "$TM" text.jsonl <<'PY'
import json, subprocess, sys
p = [json.loads(l) for l in open(sys.argv[1])][1]
q = [json.loads(l) for l in open(sys.argv[3])][1]
for k in ("chosen", "rejected"):
    r = subprocess.run(["qw-tokenize", "-t", sys.argv[2], "--chat", "--ids", "-q"],
                       input=json.dumps({"messages": q["prompt"] + q[k]}) + "\n", capture_output=True, text=True, check=True)
    whole = [int(x) for x in r.stdout.split()]
    assert p["prompt_ids"] + p[k + "_ids"] == whole, (k, p, whole)
    assert len(p[k + "_ids"]) > 2, p
PY
check "  the text run's first loss is ln 2" python3 -c '
import json, math, sys
m = json.loads(open(sys.argv[1]).readline()); assert abs(m["loss"] - math.log(2)) < 1e-6, m' m_text.jsonl

# 8. bad input: exit 3 naming the file and the record, nothing written
python3 - pairs.jsonl <<'PY'
import json, sys
ps = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def dump(name, rs):
    with open(name, "w") as f:
        for r in rs: f.write(json.dumps(r) + "\n")
a = [dict(p) for p in ps]; del a[2]["rejected_ids"]; dump("missing.jsonl", a)
a = [dict(p) for p in ps]; a[1]["chosen_ids"] = []; dump("empty.jsonl", a)
a = [dict(p) for p in ps]; a[3]["rejected_ids"] = a[3]["rejected_ids"] + [256]; dump("vocab.jsonl", a)
a = [dict(p) for p in ps]; a[5]["chosen_ids"] = list(range(1, 200)); dump("long.jsonl", a)
a = [dict(p) for p in ps]; a[0]["ref_chosen_logp"] = -3.0; a[0]["ref_rejected_logp"] = -4.0; dump("someref.jsonl", a)
dump("text.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"}])
PY
for c in "missing:missing.jsonl': line 3: missing \"rejected_ids\"" "empty:empty.jsonl': line 2: \"chosen_ids\" is empty" \
         "vocab:vocab.jsonl': line 4: \"rejected_ids\"\[[0-9]+\] = 256 is outside the model's vocabulary \(256\)" \
         "long:long.jsonl': line 6: prompt \+ chosen is 207 tokens, over --max-length 64" \
         "someref:someref.jsonl': 1 of 6 pairs carry" "text:text.jsonl': line 1: a text pair needs the tokenizer"; do
    f=${c%%:*} re=${c#*:}
    rm -rf o_bad
    expect_status "bad input: $f → 3" 3 qw-dpo -m $M -o o_bad --max-length 64 --log m_bad.jsonl --threads 1 -q $f.jsonl
    expect_stderr "  names the file and record ($f)" "$re"
done
rm -rf o_bad
expect_status "bad input: another tokenizer → 3" 3 qw-dpo -m $TM -t tm/tok2 -o o_bad --log m_bad.jsonl --threads 1 -q text.jsonl
expect_stderr "  names it" "is not the tokenizer of"
check "  nothing written" test ! -e o_bad -a ! -e m_bad.jsonl
