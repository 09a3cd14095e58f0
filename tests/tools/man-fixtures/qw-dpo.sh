# Files the qw-dpo(1) examples name: a tiny model, a reference (the same perturbed), id-form pairs.
mkdir model ref && cp "$QW_SRCDIR/tests/golden/dense_tied/model/"* model/
cp "$QW_SRCDIR/tests/golden/post/ref_model/"* ref/
cp "$QW_SRCDIR/tests/golden/post/dpo.jsonl" pairs.jsonl
# online: prompts as ids and a reward program
printf '%s\n' '{"prompt_ids": [3, 16, 29]}' '{"prompt_ids": [10, 23, 36, 49, 62]}' >prompts.jsonl
printf '%s\n' 'import json, sys' 'for line in sys.stdin:' \
    '    r = json.loads(line)' '    print(json.dumps({"reward": float(sum(r["completion_ids"]) % 3)}), flush=True)' >reward.py
