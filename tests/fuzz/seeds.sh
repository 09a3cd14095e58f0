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
for d in tokens shard index st config tokenizer jsonl chat state gen image pref prompts; do
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

# gen: GSM8K and HumanEval items of tests/data with completions, MATH items, bare text.
python3 - "$root/tests/data" "$corpus/gen" <<'EOF'
import json, sys
d, out = sys.argv[1:3]
g = [json.loads(l) for l in open(d + "/gsm8k/test-first20.jsonl")][:2]
h = [json.loads(l) for l in open(d + "/humaneval/HumanEval-first10.jsonl")][:1]
recs = [dict(g[0], completion=g[0]["answer"] + "\n\nQuestion: next"),
        dict(g[1], completion="<think>maybe 3</think> The answer is 3. #### 3"),
        {"problem": "p", "solution": "So $\\boxed{\\frac{1}{2}}$.", "completion": "\\boxed{0.5} \\fbox{2}"},
        {"problem": "p", "answer": "x = 3/4", "completion": "\\boxed 3/4$ and \\sqrt2 \\text{ cm}"},
        dict(h[0], completion=h[0]["canonical_solution"] + "\ndef more():\n    pass\n")]
for i, r in enumerate(recs):
    with open("%s/seed-%02d.json" % (out, i + 1), "w") as f:
        f.write(json.dumps(r) + "\n")
with open(out + "/seed-text.txt", "w") as f:
    f.write("k = \\dfrac{3}{4}^\\circ, \\left( 1,234.5 \\right) #### -7. The answer is 8.\n")
EOF
# image: small PNGs of each layout (written here in Python) and JPEGs
# (grey, RGB, progressive, CMYK, with an EXIF orientation) written by a
# throwaway libjpeg program.
python3 - "$corpus/image" <<'EOF'
import struct, sys, zlib
d = sys.argv[1]
def chunk(t, x): return struct.pack(">I", len(x)) + t + x + struct.pack(">I", zlib.crc32(t + x))
def png(name, w, h, ct, bd, extra=b"", interlace=0):
    ch = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ct]
    rb = (w * ch * bd + 7) // 8
    if interlace:   # Adam7 of a 1x1 image is one pass of one row
        w = h = 1
        rb = (ch * bd + 7) // 8
    raw = b"".join(b"\0" + bytes((x * 37 + y * 11) & 255 for x in range(rb)) for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, bd, ct, 0, 0, interlace)
    open(f"{d}/seed-{name}.png", "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra
                                             + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
png("rgb", 40, 33, 2, 8)
png("rgba16", 9, 7, 6, 16)
png("grey2", 36, 40, 0, 2)
png("grey16", 12, 8, 0, 16)
png("ga", 8, 8, 4, 8)
png("palette", 40, 40, 3, 8, chunk(b"PLTE", bytes(range(256)) * 3) + chunk(b"tRNS", b"\0\x80"))
png("exif6", 10, 6, 2, 8, chunk(b"eXIf", b"MM\0*\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0\0\0\0\0"))
png("adam7", 1, 1, 2, 8, interlace=1)
EOF
cat >"$t/wjpeg.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <jpeglib.h>
int main(int argc, char **argv)
{
    int comps = atoi(argv[2]), prog = atoi(argv[3]), orient = atoi(argv[4]), w = 40, h = 34;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    FILE *f = fopen(argv[1], "wb");
    if (!f) return 1;
    jpeg_stdio_dest(&c, f);
    c.image_width = w, c.image_height = h, c.input_components = comps;
    c.in_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 80, TRUE);
    if (prog) jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    if (orient) {
        unsigned char b[32] = {'E', 'x', 'i', 'f', 0, 0, 'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 1, 3, 0, 1, 0, 0, 0};
        b[24] = (unsigned char)orient;
        jpeg_write_marker(&c, JPEG_APP0 + 1, b, 32);
    }
    unsigned char row[40 * 4];
    while (c.next_scanline < c.image_height) {
        for (int x = 0; x < w * comps; x++) row[x] = (unsigned char)(x * 5 + c.next_scanline * 7);
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    fclose(f);
    return argc < 5;
}
EOF
cc -o "$t/wjpeg" "$t/wjpeg.c" -ljpeg
"$t/wjpeg" "$corpus/image/seed-grey.jpg" 1 0 0
"$t/wjpeg" "$corpus/image/seed-rgb.jpg" 3 0 0
"$t/wjpeg" "$corpus/image/seed-progressive.jpg" 3 1 0
"$t/wjpeg" "$corpus/image/seed-cmyk.jpg" 4 0 0
"$t/wjpeg" "$corpus/image/seed-exif8.jpg" 3 0 8

# pref: preference records of each form; prompts: prompt records of each kind.
printf '%s' '{"prompt_ids": [1, 2, 3], "chosen_ids": [4, 5], "rejected_ids": [6], "ref_chosen_logp": -1.5, "ref_rejected_logp": -2.0}' \
    >"$corpus/pref/seed-ids.json"
printf '%s' '{"prompt": "What is 2 + 2?", "chosen": " 4", "rejected": " 5"}' >"$corpus/pref/seed-text.json"
printf '%s' '{"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "hello"}], "rejected": [{"role": "assistant", "content": "go away"}]}' \
    >"$corpus/pref/seed-chat.json"
printf '%s\n' '{"prompt_ids": [1, 2, 3]}' '{"prompt": "The quick brown fox"}' '' \
    '{"messages": [{"role": "user", "content": "2 + 2?"}], "answer": "4"}' >"$corpus/prompts/seed-mixed.jsonl"
printf '%s\n' '{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "why"}]}' \
    >"$corpus/prompts/seed-chat.jsonl"
du -sh "$corpus"
