# Files the qw-rollout(1) examples name: a small model with a tokenizer, prompts, chats, the golden fixtures.
ln -s "$QW_SRCDIR/tests" tests
bash "$QW_SRCDIR/tests/tools/gen_rollout_model.sh" demo >/dev/null 2>&1
printf '%s\n' '{"prompt": "the cat sat on", "id": 1}' '{"prompt": "two dogs play with"}' >prompts.jsonl
printf '%s\n' '{"messages": [{"role": "user", "content": "where is the ball"}]}' >chats.jsonl
