# Files the qw-reward(1) examples name: GSM8K and HumanEval records with completions, rollouts, a judge.
d=$QW_SRCDIR/tests/data
python3 - "$d" <<'PY'
import json, sys
d = sys.argv[1]
with open("gsm8k.jsonl", "w") as g, open("rollouts.jsonl", "w") as r:
    for i, l in enumerate(open(d + "/gsm8k/test-first20.jsonl")):
        x = json.loads(l); x["completion"] = x["answer"]; g.write(json.dumps(x) + "\n")
        n = x["answer"].rsplit("#### ", 1)[1]
        c = "<think>\n%s\n</think>\n\nThe answer is %s." % (x["answer"].rsplit("\n", 1)[0], n) if i % 2 else "I think it is %s0." % n
        r.write(json.dumps({"idx": i, "sample": 0, "completion": c, "answer": x["answer"]}) + "\n")
with open("humaneval.jsonl", "w") as h:
    for l in open(d + "/humaneval/HumanEval-first10.jsonl"):
        x = json.loads(l); x["completion"] = x["canonical_solution"]; h.write(json.dumps(x) + "\n")
PY
cat >judge.py <<'PY'
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(json.dumps({"reward": 1.0 / (1 + len(r["completion"]))}), flush=True)
PY
# The reward-model examples: the tiny causal LM of the test suite, separable pairs and held-out records.
mkdir -p lm && cp "$QW_SRCDIR/tests/golden/dense_tied/model/"* lm/
python3 - <<'PY'
import json, random
rng = random.Random(5)
def pair():
    p = [rng.randint(10, 200) for _ in range(rng.randint(1, 4))]
    return p, [rng.randint(10, 200) for _ in range(rng.randint(0, 4))] + [7], [rng.randint(10, 200) for _ in range(rng.randint(1, 5))]
with open("pairs.jsonl", "w") as f:
    for _ in range(32):
        p, c, r = pair(); f.write(json.dumps({"prompt_ids": p, "chosen_ids": c, "rejected_ids": r}) + "\n")
with open("held.jsonl", "w") as f:
    for i in range(8):
        p, c, r = pair()
        for w, x in (("chosen", c), ("rejected", r)): f.write(json.dumps({"idx": i, "which": w, "prompt_ids": p, "completion_ids": x}) + "\n")
PY
