#!/usr/bin/env bash
# tests/fuzz/seeds.sh — (re)make the seed files tests/corpus/<target>/seed-*
# that every fuzz target starts from: small valid inputs, made by the
# programs in bin/ (make), by the fuzz targets' own start-up (make
# fuzz-build: the index and state targets replace a file their start-up
# wrote; that file as written is their seed), or written below in Python
# where no program makes the variant (32-bit ids, masked multi-block shards,
# safetensors dtypes, other tokenizer.json shapes).  Regression files
# (crash-*) are not touched.  Run from anywhere; the seeds are committed.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=${QW_BIN:-$root/bin}
corpus=$root/tests/corpus
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
for d in tokens shard index st config tokenizer jsonl chat state; do
    mkdir -p "$corpus/$d"
    rm -f "$corpus/$d"/seed-*
done

# A tokenizer and some text.
cat >"$t/text" <<'EOF'
The quick brown fox jumps over the lazy dog. 0123456789
def add(a, b):
    return a + b
naïve café, 日本語, emoji 🙂
<think>
why
</think>
EOF
printf '{"text": "first document"}\n{"text": "second, with \\u00e9 and \\n a newline"}\n\n{"text": "third"}\n' >"$t/docs.jsonl"
"$bin/qw-tokenize" -q --train --vocab-size 300 --min-frequency 1 -o "$t/tok" "$t/text"

# tokenizer: as trained; merges as pairs, no normalizer; ByteLevel's own regex.
cp "$t/tok/tokenizer.json" "$corpus/tokenizer/seed-trained.json"
python3 - "$t/tok/tokenizer.json" "$corpus/tokenizer" <<'EOF'
import json, sys
tok = json.load(open(sys.argv[1]))
a = json.loads(json.dumps(tok))
a["normalizer"] = None
a["model"]["merges"] = [m.split(" ", 1) if isinstance(m, str) else m for m in a["model"]["merges"]]
json.dump(a, open(sys.argv[2] + "/seed-pairs.json", "w"), ensure_ascii=False)
b = json.loads(json.dumps(tok))
b["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
b["added_tokens"] = b["added_tokens"][:3]
json.dump(b, open(sys.argv[2] + "/seed-bytelevel.json", "w"), ensure_ascii=False)
EOF

# tokens: plain, zstd in frames of a few tokens, and 32-bit ids (a vocabulary
# above 65536; written here, as no small tokenizer makes one).
"$bin/qw-tokenize" -q -t "$t/tok" "$t/text" >"$corpus/tokens/seed-text.qwt"
"$bin/qw-tokenize" -q -t "$t/tok" --jsonl --zstd --frame-tokens 8 --add-eos "$t/docs.jsonl" >"$corpus/tokens/seed-zstd.qwt"
python3 - "$root/tests/tools" "$corpus/tokens/seed-ids32.qwt" <<'EOF'
import struct, sys
sys.path.insert(0, sys.argv[1])
from qw_tokens_ref import crc32c
docs = [[70000, 1, 2], [], [99999]]
payload = b"".join(struct.pack("<I", len(d)) for d in docs) + b"".join(struct.pack("<I", i) for d in docs for i in d)
h = b"QWTK" + bytes([1, 2, 0, 0]) + struct.pack("<QIIQQI", 0x1234, 100000, len(docs), sum(map(len, docs)), len(payload), crc32c(payload))
open(sys.argv[2], "wb").write(h + struct.pack("<I", crc32c(h)) + payload)
EOF

# shard: qw-pack's pretrain (raw blocks) and sft (zstd, padding) shards, and
# a masked shard of several blocks (qw-pack does not write masks yet).
"$bin/qw-tokenize" -q -t "$t/tok" --jsonl --add-eos "$t/docs.jsonl" >"$t/docs.qwt"
"$bin/qw-pack" -q -T 8 --zstd 0 -o "$t/p1" "$t/docs.qwt"
"$bin/qw-pack" -q -T 16 --mode sft --long split -o "$t/p2" "$t/docs.qwt"
cp "$t/p1/train-00000.qwp" "$corpus/shard/seed-pretrain.qwp"
cp "$t/p2/train-00000.qwp" "$corpus/shard/seed-sft.qwp"
python3 - "$root/tests/tools" "$corpus/shard/seed-mask.qwp" <<'EOF'
import struct, sys
sys.path.insert(0, sys.argv[1])
from qw_tokens_ref import crc32c
L, per = 6, 2
rows = [(6, [0, 2], [5, 6, 7, 8, 9, 10], 0b111011), (4, [0], [1, 2, 3, 4, 0, 0], 0b1110), (6, [0, 1, 5], [9] * 6, 0b101110)]
def row(n_valid, starts, toks, mask):
    return struct.pack("<II", n_valid, len(starts)) + struct.pack("<%dI" % len(starts), *starts) + \
        struct.pack("<%dH" % L, *toks) + bytes([mask & ((1 << n_valid) - 1)])
blocks = [b"".join(row(*r) for r in rows[i:i + per]) for i in range(0, len(rows), per)]
index, off = b"", 64
for b in blocks:
    index += struct.pack("<QIIII", off, len(b), len(b), crc32c(b), 0)
    off += len(b)
h = b"QWPK" + struct.pack("<HHIIQQIIIIQI", 1, 1, L, 2, len(rows), 0x77, 16, 0, per, len(blocks), off, crc32c(index))
open(sys.argv[2], "wb").write(h + struct.pack("<I", crc32c(h)) + b"".join(blocks) + index)
EOF

# index and state: what the targets' start-up writes.
mkdir "$t/empty"
QW_FUZZ_SEEDS=$corpus/index "$root/build/fuzz/fuzz_index" -runs=0 "$t/empty" >/dev/null 2>&1
QW_FUZZ_SEEDS=$corpus/state "$root/build/fuzz/fuzz_state" -runs=0 "$t/empty" >/dev/null 2>&1

# st: the input ids of a golden fixture (written by the safetensors library),
# and one tensor of each kind of dtype with metadata.
cp "$root/tests/golden/dense_tied/input.safetensors" "$corpus/st/seed-input.safetensors"
python3 - "$corpus/st/seed-dtypes.safetensors" <<'EOF'
import json, struct, sys
tensors = [("w", "F32", [2, 3], struct.pack("<6f", 1, -2, 0.5, 3e38, -0.0, 7)),
           ("h", "BF16", [2], bytes([0x80, 0x3f, 0x00, 0xc0])), ("f", "F16", [1], bytes([0x00, 0x3c])),
           ("e", "F8_E4M3", [2], bytes([0x38, 0xff])), ("d", "F64", [1], struct.pack("<d", 1e300)),
           ("ids", "I64", [1, 2], struct.pack("<2q", 5, -1)), ("u", "U64", [1], struct.pack("<Q", 2**63 - 1)),
           ("b", "BOOL", [3], bytes([0, 1, 2])), ("z", "I32", [0, 4], b""), ("s", "U8", [], bytes([9]))]
header, data = {"__metadata__": {"format": "pt"}}, b""
for name, dt, shape, raw in tensors:
    header[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + data)
EOF

# config: the pipelines' configs and the golden fixtures' (both key generations).
for f in "$root"/pipelines/configs/*.json; do cp "$f" "$corpus/config/seed-$(basename "$f")"; done
for d in dense_tied dense_yarn moe; do cp "$root/tests/golden/$d/model/config.json" "$corpus/config/seed-$d.json"; done
cp "$root/tests/golden/moe/model_fused/config.json" "$corpus/config/seed-moe_fused.json"

# jsonl: records, compressed, in an archive, and chat records.
cp "$t/docs.jsonl" "$corpus/jsonl/seed-docs.jsonl"
zstd -q -c "$t/docs.jsonl" >"$corpus/jsonl/seed-docs.jsonl.zst"
(cd "$t" && tar -cf "$corpus/jsonl/seed-docs.tar" docs.jsonl)
head -n 3 "$root/tests/tools/chat_cases.jsonl" >"$corpus/jsonl/seed-chat.jsonl"

# chat: each conversation of the template tests, one record a file.
n=0
while IFS= read -r line; do
    n=$((n + 1))
    printf '%s\n' "$line" >"$corpus/chat/seed-$(printf %02d $n).json"
done <"$root/tests/tools/chat_cases.jsonl"
du -sh "$corpus"
