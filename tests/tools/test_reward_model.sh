#!/usr/bin/env bash
# test_reward_model.sh — the reward model: `qw-reward train` and
# `qw-reward --verifier model`.
#
# Parity with transformers + TRL (tests/golden/rm/, written by
# tests/golden/make_rm_golden.py on the GPU machine): one step of
# qw-reward train on the fixture's pairs (margins, center_rewards 0.01)
# gives TRL's loss and every gradient of Qwen3ForSequenceClassification
# within 1e-5, and --verifier model scores each chosen and rejected
# sequence as transformers does (including the pooling rule: a sequence
# ending in a real token equal to pad_token_id).  While the fixture is
# absent these cases FAIL, saying so.
#
# Then, on the fixture model dense_tied (a causal LM whose LM head is
# replaced): separable synthetic pairs (the chosen completion ends with a
# token the rejected never has) are learned to accuracy 1 on held-out pairs
# in 20 steps; the head is drawn from --seed; the checkpoint is a reward
# model that qw-ckpt inspects and verifies and that scores the same after
# qw-ckpt export; 3 steps + --resume to 6 equal 6 steps bit for bit; text
# pairs with a tokenizer; bad input is refused with exit 3 (or 2) naming
# the record, writing nothing.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 43
cd "$tmp"
G=$QW_SRCDIR/tests/golden/rm
M=$QW_SRCDIR/tests/golden/dense_tied/model
st() { python3 "$QW_SRCDIR/tests/tools/eval_st.py" "$@"; }

# ---- parity with transformers + TRL ----
if [ -f "$G/expected.safetensors" ] && [ -f "$G/pairs.jsonl" ] && [ -f "$G/meta.json" ]; then
    expect_status "golden: one step of qw-reward train on the fixture's pairs" 0 \
        qw-reward train -m "$G/model" -o g --steps 1 --batch-pairs 4 --micro-pairs 3 --lr 1e-9 \
        --margin-field margin --center-rewards 0.01 --dump-grads g.st --log g.jsonl --threads 1 -q "$G/pairs.jsonl"
    python3 - "$G/expected.safetensors" >want.st <<'PY' 2>/dev/null
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8:8 + n]); hdr.pop("__metadata__", None)
keep = {k: v for k, v in hdr.items() if k.startswith("grad.")}
data, out, off = raw[8 + n:], [], 0
h = {}
for k in sorted(keep):
    a, b = keep[k]["data_offsets"]
    h[k] = {"dtype": keep[k]["dtype"], "shape": keep[k]["shape"], "data_offsets": [off, off + b - a]}
    out.append(data[a:b]); off += b - a
j = json.dumps(h).encode()
sys.stdout.buffer.write(struct.pack("<Q", len(j)) + j + b"".join(out))
PY
    if out=$(st close want.st g.st 1e-5); then pass "golden: every gradient = transformers' (1e-5)"; echo "NOTE $out"
    else fail "golden: every gradient = transformers' (1e-5)" "$out"; fi
    check "golden: loss and accuracy = TRL's" python3 -c '
import json, sys
m = json.loads(open(sys.argv[1]).readline()); want = json.load(open(sys.argv[2]))
assert abs(m["loss"] - want["loss"]) <= 1e-5 * max(1, abs(want["loss"])), (m["loss"], want["loss"])
assert m["accuracy"] == want["accuracy"], (m["accuracy"], want["accuracy"])
assert abs(m["margin"] - want["margin_mean"]) <= 1e-5, (m["margin"], want["margin_mean"])
print("NOTE loss", m["loss"], "want", want["loss"], file=sys.stderr)' g.jsonl "$G/meta.json"
    python3 - "$G/pairs.jsonl" >recs.jsonl <<'PY'
import json, sys
for i, l in enumerate(open(sys.argv[1])):
    p = json.loads(l)
    for w in ("chosen", "rejected"):
        print(json.dumps({"idx": i, "which": w, "prompt_ids": p["prompt_ids"], "completion_ids": p[w + "_ids"]}))
PY
    expect_status "golden: --verifier model scores the fixture's sequences" 0 \
        qw-reward --verifier model --model "$G/model" --batch 3 --threads 1 -q -o scored.jsonl recs.jsonl
    check "golden: rewards = transformers' (1e-5), pooled at the last token that is not the pad id" python3 -c '
import json, sys
want = json.load(open(sys.argv[2]))
worst = 0
for l in open(sys.argv[1]):
    r = json.loads(l)
    w = want["rewards_" + r["which"]][r["idx"]]
    worst = max(worst, abs(r["reward"] - w))
assert worst <= 1e-5, worst
print("NOTE worst reward difference %.3g" % worst, file=sys.stderr)' scored.jsonl "$G/meta.json"
else
    for c in "one step of qw-reward train" "every gradient = transformers'" "loss and accuracy = TRL's" \
             "--verifier model scores the fixture's sequences" "rewards = transformers'"; do
        fail "golden: $c" "tests/golden/rm/ is missing: run tests/golden/make_rm_golden.py on the GPU machine and commit its output"
    done
fi

# ---- training a reward model from a causal LM ----
python3 - <<'PY'
import json, random
rng = random.Random(5)
def pair():
    p = [rng.randint(10, 200) for _ in range(rng.randint(1, 4))]
    c = [rng.randint(10, 200) for _ in range(rng.randint(0, 4))] + [7]
    r = [rng.randint(10, 200) for _ in range(rng.randint(1, 5))]
    return {"prompt_ids": p, "chosen_ids": c, "rejected_ids": r, "m": 0.5}
with open("train.jsonl", "w") as f:
    for _ in range(32): f.write(json.dumps(pair()) + "\n")
with open("held.jsonl", "w") as g:
    for i in range(16):
        x = pair()
        for w in ("chosen", "rejected"):
            g.write(json.dumps({"idx": i, "which": w, "prompt_ids": x["prompt_ids"], "completion_ids": x[w + "_ids"]}) + "\n")
PY
heldout_acc() {   # heldout_acc SCORED: the fraction of held-out pairs ranked right
    python3 -c '
import json, sys
r = {}
for l in open(sys.argv[1]):
    x = json.loads(l); r[(x["idx"], x["which"])] = x["reward"]
n = len(r) // 2
print(sum(r[(i, "chosen")] > r[(i, "rejected")] for i in range(n)) / n)' "$1"
}
expect_status "the untrained head scores the held-out pairs" 0 \
    qw-reward train -m "$M" -o r0 --steps 1 --lr 1e-12 --batch-pairs 8 --threads 1 -q train.jsonl
qw-reward --verifier model --model r0 --threads 1 -q held.jsonl >s0.jsonl 2>/dev/null
expect_status "20 steps on separable pairs (margin field, centering)" 0 \
    qw-reward train -m "$M" -o r --steps 20 --lr 3e-3 --batch-pairs 8 --micro-pairs 4 --margin-field m \
    --center-rewards 0.001 --log r.jsonl --threads 1 -q train.jsonl
expect_status "--verifier model scores the held-out pairs" 0 \
    qw-reward --verifier model --model r --batch 5 --threads 1 -q -o s.jsonl held.jsonl
acc0=$(heldout_acc s0.jsonl 2>/dev/null); acc=$(heldout_acc s.jsonl 2>/dev/null)
echo "NOTE held-out accuracy: $acc0 before, $acc after 20 steps"
check "held-out accuracy 1 after training (it was $acc0 before)" test "$acc" = 1.0
check "training metrics: the loss falls, accuracy reaches 1, the margin grows" python3 -c '
import json, sys
m = [json.loads(l) for l in open(sys.argv[1])]
assert len(m) == 20 and m[-1]["step"] == 20, len(m)
assert m[-1]["loss"] < 0.5 * m[0]["loss"], (m[0]["loss"], m[-1]["loss"])
assert m[-1]["accuracy"] == 1 and m[-1]["margin"] > m[0]["margin"], m[-1]
for k in ("rewards_chosen", "rewards_rejected", "grad_norm", "lr", "tokens", "pairs_per_s"): assert k in m[-1], k' r.jsonl
check "the records come back whole, with a reward each" python3 -c '
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]; b = [json.loads(l) for l in open(sys.argv[2])]
assert len(a) == len(b) == 32
for x, y in zip(a, b):
    r = y.pop("reward"); assert isinstance(r, float) and x == y, (x, y)' held.jsonl s.jsonl
printf 'import sys\nfor l in sys.stdin: print("{\\"reward\\": 1}", flush=True)\n' >one.py
check "the weighted sum with another verifier (model:2,cmd:1)" bash -c '
qw-reward --verifier model:2,cmd:1 --cmd "python3 one.py" --model r --batch 5 --threads 1 -q held.jsonl >w.jsonl &&
python3 -c "
import json, sys
for x, y in zip(open(sys.argv[1]), open(sys.argv[2])):
    x, y = json.loads(x), json.loads(y)
    assert abs(y[\"reward\"] - (2 * x[\"reward\"] + 1)) < 1e-5 and y[\"rewards\"][\"model\"] == x[\"reward\"], (x, y)
" s.jsonl w.jsonl'

# the checkpoint: a reward model as transformers writes one
check "config.json: Qwen3ForSequenceClassification, one label" python3 -c '
import json, sys
c = json.load(open(sys.argv[1] + "/config.json"))
assert c["architectures"] == ["Qwen3ForSequenceClassification"], c["architectures"]
assert c["id2label"] == {"0": "LABEL_0"} and c["label2id"] == {"LABEL_0": 0}, c' r/step-000020
check "the tensors: score.weight [1,32], no lm_head" bash -c '
python3 "$1" header r/step-000020/model.safetensors >h.txt && grep -qx "score.weight F32 1,32" h.txt && ! grep -q lm_head h.txt' _ "$QW_SRCDIR/tests/tools/eval_st.py"
expect_status "qw-ckpt inspect shows the head" 0 qw-ckpt inspect r
check "… head: score [1, 32]" grep -q "^head: score \[1, 32\]" "$last_out"
expect_status "qw-ckpt verify accepts it" 0 qw-ckpt verify r
expect_status "qw-ckpt export --dtype f32" 0 qw-ckpt export r -o ex --dtype f32
qw-reward --verifier model --model ex --batch 5 --threads 1 -q held.jsonl >s_ex.jsonl 2>/dev/null
check "save, export, load, score: the same rewards" cmp -s s.jsonl s_ex.jsonl

# the new head: from --seed
qw-reward train -m "$M" -o h1 --steps 1 --lr 1e-12 --seed 1 --dump-grads h1.st --threads 1 -q train.jsonl 2>/dev/null
qw-reward train -m "$M" -o h1b --steps 1 --lr 1e-12 --seed 1 --dump-grads h1b.st --threads 1 -q train.jsonl 2>/dev/null
qw-reward train -m "$M" -o h2 --steps 1 --lr 1e-12 --seed 2 --dump-grads h2.st --threads 1 -q train.jsonl 2>/dev/null
check "the head is drawn from --seed: the same seed, the same weights and gradient" \
    cmp -s h1/step-000001/model.safetensors h1b/step-000001/model.safetensors
check "another seed, another head" bash -c '! cmp -s h1/step-000001/model.safetensors h2/step-000001/model.safetensors'
check "the head is normal(0, initializer_range 0.05)" python3 -c '
import math, sys
sys.path.insert(0, sys.argv[2])
import eval_st
h, d = eval_st.read(sys.argv[1])
w = eval_st.values(h, d, "score.weight")
m = sum(w) / len(w); s = math.sqrt(sum((x - m) ** 2 for x in w) / len(w))
assert 0.025 < s < 0.08 and abs(m) < 0.03, (m, s)' h1/step-000001/model.safetensors "$QW_SRCDIR/tests/tools"

# resume: 3 steps, then on to 6, equals 6 steps
qw-reward train -m "$M" -o full --steps 6 --batch-pairs 8 --lr 1e-3 --threads 1 -q train.jsonl 2>/dev/null
qw-reward train -m "$M" -o part --steps 3 --batch-pairs 8 --lr 1e-3 --threads 1 -q train.jsonl 2>/dev/null
expect_status "--resume to step 6" 0 qw-reward train -o part --resume part --steps 6 --batch-pairs 8 --lr 1e-3 --threads 1 -q train.jsonl
check "3 steps + resume to 6 = 6 steps, bit for bit (the order of pairs is a function of the step)" \
    cmp -s full/step-000006/model.safetensors part/step-000006/model.safetensors
expect_status "a resume with another --batch-pairs is refused" 3 \
    qw-reward train -o part --resume part --steps 8 --batch-pairs 4 --lr 1e-3 --threads 1 -q train.jsonl

# text pairs with a tokenizer
mkdir -p tk
python3 - <<'PY'
import json
# a byte-level BPE with no merges: one token per byte (ids 0..255)
from itertools import chain
bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
cs, n = bs[:], 0
for b in range(256):
    if b not in bs: bs.append(b); cs.append(256 + n); n += 1
vocab = {chr(c): b for b, c in zip(bs, cs)}
tok = {"version": "1.0", "added_tokens": [], "normalizer": None,
       "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
       "post_processor": None, "decoder": {"type": "ByteLevel"},
       "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                 "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                 "vocab": vocab, "merges": []}}
json.dump(tok, open("tk/tokenizer.json", "w"))
with open("text.jsonl", "w") as f:
    for i in range(8):
        f.write(json.dumps({"prompt": "Q%d: " % i, "chosen": "good!" * (1 + i % 2), "rejected": "bad" * (1 + i % 3)}) + "\n")
with open("text_recs.jsonl", "w") as f:
    f.write(json.dumps({"prompt": "Q9: ", "completion": "good!"}) + "\n")
PY
expect_status "text pairs with -t" 0 qw-reward train -m "$M" -o t -t tk --steps 2 --batch-pairs 4 --threads 1 -q text.jsonl
check "the tokenizer is kept in the checkpoint" test -f t/step-000002/tokenizer.json
expect_status "--verifier model scores text records with the checkpoint's tokenizer" 0 \
    qw-reward --verifier model --model t --threads 1 -q text_recs.jsonl
expect_status "text pairs without a tokenizer: exit 3" 3 qw-reward train -m "$M" -o t2 --steps 1 --threads 1 -q text.jsonl
expect_stderr "… naming the line" "text.jsonl': line 1: .*tokenizer"

# bad input
printf '{"prompt_ids": [1], "completion_ids": [5, 300]}\n' >bad.jsonl
expect_status "an id beyond the vocabulary: exit 3" 3 qw-reward --verifier model --model r -q -o out.jsonl bad.jsonl
expect_stderr "… naming the record and the field" "bad.jsonl': line 1: \"completion_ids\"\[1\] = 300 is outside"
check "… and nothing written" test ! -e out.jsonl
expect_status "a causal LM is not a reward model: exit 3" 3 qw-reward --verifier model --model "$M" -q held.jsonl
expect_stderr "… saying so" "not a reward model"
mkdir -p two && cp r/step-000020/model.safetensors two/ && python3 -c '
import json, sys
c = json.load(open(sys.argv[1])); c["id2label"] = {"0": "A", "1": "B"}; json.dump(c, open("two/config.json", "w"))' r/step-000020/config.json
expect_status "a classifier of two labels: exit 3" 3 qw-reward --verifier model --model two -q held.jsonl
expect_stderr "… naming the key" "id2label.*2 labels"
printf '{"prompt_ids": [1], "chosen_ids": [2], "rejected_ids": [999]}\n' >badp.jsonl
expect_status "a pair with an id beyond the vocabulary: exit 3" 3 qw-reward train -m "$M" -o bp -q badp.jsonl
check "… and no checkpoint" test ! -e bp
expect_status "--verifier model without --model: exit 2" 2 qw-reward --verifier model held.jsonl
expect_status "a reward model is not trained as a causal LM (qw-sft refuses it): exit 3" 3 \
    qw-sft -m r -o x -T 16 --batch-tokens 32 --data held.jsonl --steps 1 -q
expect_stderr "… saying so" "is a reward model"
printf '{"prompt_ids": [5, 6]}\n' >p.jsonl
expect_status "a reward model does not generate (qw-rollout refuses it): exit 3" 3 \
    qw-rollout -m r/step-000020 -p p.jsonl -q
