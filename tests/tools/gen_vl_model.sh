#!/usr/bin/env bash
# gen_vl_model.sh DIR — a tiny Qwen3-VL with a tokenizer and small images,
# for the image-text tests and man-page examples: a byte-level BPE trained
# by qw-tokenize (Qwen's special tokens, <|image_pad|> among them), the
# shape of the tests/golden/vl fixture with that vocabulary and its token
# ids, a preprocessor_config.json with small pixel bounds (32×32 to 64×64:
# grids of 2×2 to 4×4 patches, 1 to 4 image tokens), random weights written
# by one qw-pretrain step (DIR/model), PNGs DIR/img/{red,green,blue,…}.png
# of solid colours and stripes, and DIR/chat.jsonl: "What colour is this?"
# conversations about them.  Deterministic; a few seconds.
set -eu
dir=$1
src=${QW_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
mkdir -p "$dir/img"
cd "$dir"
python3 - <<'PY' >corpus.txt
import random
r = random.Random(3)
w = "what colour is this picture it is red green blue white black the image shows a square of".split()
for i in range(300):
    print(" ".join(r.choice(w) for _ in range(r.randint(4, 16))) + ".")
PY
qw-tokenize --train --vocab-size 320 -q -o tok corpus.txt
python3 - "$src/tests/golden/vl/model/config.json" tok/tokenizer.json <<'PY' >cfg.json
import json, sys
c = json.load(open(sys.argv[1]))
t = json.load(open(sys.argv[2]))
ids = {a["content"]: a["id"] for a in t["added_tokens"]}
n = max(list(t["model"]["vocab"].values()) + list(ids.values())) + 1
c["text_config"]["vocab_size"] = (n + 31) // 32 * 32
c["text_config"]["eos_token_id"] = ids["<|im_end|>"]
c["text_config"]["dtype"] = "float32"
for k, tok in (("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
               ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")):
    c[k] = ids[tok]
print(json.dumps(c))
PY
qw-tokenize -q -t tok corpus.txt | qw-pack -q -T 32 -o data
qw-pretrain -q --config cfg.json --data data -T 32 --batch-tokens 64 --steps 1 --lr 0 --tokenizer tok --out run --threads 1
rm -rf model
mv "run/$(cat run/latest)" model
rm -rf model/trainer_state run data
cat >model/preprocessor_config.json <<'JSON'
{"image_processor_type": "Qwen2VLImageProcessorFast", "patch_size": 16, "merge_size": 2, "temporal_patch_size": 2,
 "size": {"shortest_edge": 1024, "longest_edge": 4096}, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
JSON
python3 - <<'PY'
import json, random, struct, zlib
def png(path, w, h, f):
    raw = b"".join(b"\0" + bytes(v for x in range(w) for v in f(x, y)) for y in range(h))
    def chunk(t, x): return struct.pack(">I", len(x)) + t + x + struct.pack(">I", zlib.crc32(t + x))
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
colours = {"red": (230, 20, 20), "green": (20, 200, 40), "blue": (30, 40, 220), "white": (250, 250, 250),
           "black": (5, 5, 5)}
sizes = [(32, 32), (64, 32), (48, 48), (32, 64), (64, 64)]
for (name, c), (w, h) in zip(colours.items(), sizes):
    png(f"img/{name}.png", w, h, lambda x, y, c=c: c)
png("img/stripes.png", 64, 64, lambda x, y: (255, 255, 255) if (x // 8) % 2 else (0, 0, 0))
r = random.Random(5)
with open("chat.jsonl", "w") as f:
    for i in range(24):
        name = r.choice(list(colours))
        q = {"role": "user", "content": [{"type": "image", "image": f"img/{name}.png"},
                                         {"type": "text", "text": "what colour is this?"}]}
        f.write(json.dumps({"messages": [q, {"role": "assistant", "content": f"it is {name}."}]}) + "\n")
PY
