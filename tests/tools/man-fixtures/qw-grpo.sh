# Files the qw-grpo(1) examples name: a tiny model, prompts as ids, a reward program.
mkdir model && cp "$QW_SRCDIR/tests/golden/dense_tied/model/"* model/
printf '%s\n' '{"prompt_ids": [3, 16, 29]}' '{"prompt_ids": [10, 23, 36, 49, 62]}' >prompts.jsonl
printf '%s\n' 'import json, sys' 'for line in sys.stdin:' \
    '    r = json.loads(line)' '    print(json.dumps({"reward": float(sum(r["completion_ids"]) % 3)}), flush=True)' >reward.py
