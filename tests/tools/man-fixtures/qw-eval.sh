# Files the qw-eval(1) examples name: the repository's golden fixtures and
# bench configs, a byte-level tokenizer (tests/tools/eval_ref.py) for the
# fixture models, items, a text and two stages of metrics.
ln -s "$QW_SRCDIR/tests" tests
python3 "$QW_SRCDIR/tests/tools/eval_ref.py" tokenizer tok '!'
printf '%s\n' '{"context": "The cat sat on the", "choices": ["mat", "moon"], "gold": 0}' \
    '{"context": "One, two,", "choices": [" three", " seven"], "gold": 0}' >items.jsonl
printf '%s\n' '{"question": "Which is hot?", "choices": {"text": ["ice", "fire"], "label": ["A", "B"]}, "answerKey": "B"}' \
    '{"question": "Which is wet?", "choices": {"text": ["water", "sand"], "label": ["A", "B"]}, "answerKey": "A"}' >arc.jsonl
printf 'The quick brown fox jumps over the lazy dog. %.0s' 1 2 3 4 >doc.txt
printf '{"step":%d,"loss":%s,"lr":0.001}\n' 1 5.5 2 4.5 3 4.0 >s1.jsonl
printf '{"step":3,"val_loss":4.2}\n' >>s1.jsonl
printf '{"step":%d,"loss":%s,"lr":0.0005}\n' 1 3.9 2 3.7 >s2.jsonl
printf '{"step":2,"val_loss":3.8}\n' >>s2.jsonl
# HumanEval completions from "another engine": two samples of each of two
# problems, the canonical solution and a wrong one
python3 - "$QW_SRCDIR/tests/data/humaneval/HumanEval-first10.jsonl" >he.jsonl <<'PY'
import json, sys
for i, l in enumerate(open(sys.argv[1]).readlines()[:2]):
    r = json.loads(l)
    for j, c in enumerate([r["canonical_solution"], "    return None\n"]):
        print(json.dumps(dict(r, idx=i, sample=j, completion=c)))
PY
# an RGB PNG for pixels, and a model directory without preprocessor_config.json
mkdir -p vl
python3 - <<'PY'
import struct, zlib
w, h = 70, 50
raw = b"".join(b"\0" + bytes((x * 3 + y * 5 + c * 40) % 256 for x in range(w) for c in range(3)) for y in range(h))
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open("photo.png", "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                              + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
PY
