#!/usr/bin/env bash
# test_rollout_hf.sh — qw-rollout reproduces transformers' greedy generate on
# the golden fixtures: tests/golden/<name>/generate.json (written by
# `make_golden.py --generate` on the GPU machine) holds prompts, HF's
# continuations (do_sample=False, 16 new tokens, stopping at the config's EOS)
# and each step's top-1/top-2 logit margin.  qw-rollout must give the same
# tokens; it may diverge only after a step whose margin is below 1e-4 (a
# near tie that fp32 rounding can flip), and then the rest is not compared.
# A fixture without generate.json fails, saying so.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 6
cd "$tmp"
for name in dense_yarn dense_tied moe; do
    gj=$QW_SRCDIR/tests/golden/$name/generate.json
    if [ ! -f "$gj" ]; then
        fail "$name: generate.json" "tests/golden/$name/generate.json is missing: run 'python3 make_golden.py --generate' in tests/golden on a machine with PyTorch and transformers"
        fail "$name: qw-rollout reproduces transformers' generate" "no reference (generate.json missing)"
        continue
    fi
    pass "$name: generate.json"
    python3 -c 'import json,sys
for p in json.load(open(sys.argv[1]))["prompts"]: print(json.dumps({"prompt_ids": p["prompt_ids"]}))' "$gj" >p.jsonl
    n=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["max_new_tokens"])' "$gj")
    if ! qw-rollout -m "$QW_SRCDIR/tests/golden/$name/model" -p p.jsonl --temperature 0 --max-new-tokens "$n" \
        --threads 1 -q -o r.jsonl 2>err; then
        fail "$name: qw-rollout reproduces transformers' generate" "qw-rollout failed: $(head -c 300 err)"; continue
    fi
    if out=$(python3 - "$gj" r.jsonl 2>&1 <<'PY'
import json, sys
ref = json.load(open(sys.argv[1]))["prompts"]
got = [json.loads(l) for l in open(sys.argv[2])]
assert len(got) == len(ref), "%d records, %d prompts" % (len(got), len(ref))
agree = total = 0
for i, (r, g) in enumerate(zip(ref, got)):
    a, b, m = r["completion_ids"], g["completion_ids"], r["margins"]
    for t in range(max(len(a), len(b))):
        if t < len(a) and t < len(b) and a[t] == b[t]:
            agree += 1; total += 1
            continue
        if min(m[:t + 1]) < 1e-4:
            print("NOTE prompt %d diverges at step %d after a near tie (margin %.2g)" % (i, t, min(m[:t + 1])))
            break
        sys.exit("prompt %d, step %d: transformers %s, qw-rollout %s (margins %s)" % (
            i, t, a[t] if t < len(a) else "(ended)", b[t] if t < len(b) else "(ended)", m[:t + 1]))
print("NOTE %d of %d tokens equal" % (agree, total))
PY
    ); then
        echo "$out"; pass "$name: qw-rollout reproduces transformers' generate"
    else fail "$name: qw-rollout reproduces transformers' generate" "$out"; fi
done
