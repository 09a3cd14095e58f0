#!/usr/bin/env bash
# test_pack_images.sh — qw-pack --chat with a Qwen3-VL model: image parts of
# chat JSONL and webdataset tars become version-2 shards whose patches are
# qw-eval pixels' bytes, whose pad runs match the grids and are never
# targets; bad samples are exit 3 naming the sample, or skipped and counted
# with --skip-bad.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 31

bash "$QW_SRCDIR/tests/tools/gen_vl_model.sh" "$tmp/m" >/dev/null 2>&1
m=$tmp/m
read -r pad vstart <<<"$(python3 -c "import json,sys; c=json.load(open(sys.argv[1])); print(c['image_token_id'], c['vision_start_token_id'])" "$m/model/config.json")"
vl() { qw-pack -T "${T:-64}" --zstd 0 --mode sft --chat --tokenizer "$m/tok" --model "$m/model" "$@"; }

# JSONL with image parts
expect_status pack_jsonl 0 vl -o "$tmp/d" "$m/chat.jsonl"
expect_stderr pack_jsonl_summary '^qw-pack: 24 images, [0-9]+ patch rows of 1536; 0 bad samples skipped$'
expect_status inspect 0 qw-pack --inspect "$tmp/d/train-00000.qwp"
check inspect_version grep -q '^format: qw-pack 2$' "$last_out"
check inspect_images grep -Eq '^images: 24 \([0-9]+ patch rows\)$' "$last_out"
expect_status pad_runs 0 python3 "$QW_SRCDIR/tests/tools/vl_shard.py" rows "$tmp/d/train-00000.qwp" "$pad" "$vstart"
check pad_runs_count grep -q '^images 24 ' "$last_out"
# several samples in a row (best-fit), every image whole
T=160 expect_status pack_bestfit 0 vl -o "$tmp/bf" "$m/chat.jsonl"
expect_status bestfit_runs 0 python3 "$QW_SRCDIR/tests/tools/vl_shard.py" rows "$tmp/bf/train-00000.qwp" "$pad" "$vstart"
check bestfit_rows python3 -c "import json,sys; j=json.load(open(sys.argv[1])); sys.exit(not j['splits']['train']['rows'] < 24 and j['version'] == 2)" "$tmp/bf/index.json"
# the patches are qw-eval pixels' values, byte for byte
head -1 "$m/chat.jsonl" >"$m/one.jsonl"
img=$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).readline())['messages'][0]['content'][0]['image'])" "$m/one.jsonl")
vl -q -o "$tmp/one" "$m/one.jsonl"
qw-eval pixels -q --model "$m/model" -o "$tmp/px.safetensors" "$m/$img"
expect_status pixels_equal 0 python3 "$QW_SRCDIR/tests/tools/vl_shard.py" pixels "$tmp/one/train-00000.qwp" "$tmp/px.safetensors"

# webdataset tar: the same conversations give the same tokens
python3 - "$m" <<'PY'
import io, json, sys, tarfile
m = sys.argv[1]
recs = [json.loads(l) for l in open(f"{m}/chat.jsonl")][:6]
def add(t, name, data):
    i = tarfile.TarInfo(name); i.size = len(data); t.addfile(i, io.BytesIO(data))
with tarfile.open(f"{m}/wds.tar", "w") as t, open(f"{m}/six.jsonl", "w") as j:
    for k, r in enumerate(recs):
        path = r["messages"][0]["content"][0]["image"]
        j.write(json.dumps(r) + "\n")
        r["messages"][0]["content"][0] = {"type": "image"} if k % 2 else {"type": "image", "image": "png"}
        add(t, f"s/{k:03d}.png", open(f"{m}/{path}", "rb").read())
        add(t, f"s/{k:03d}.json", json.dumps(r).encode())
with tarfile.open(f"{m}/nojson.tar", "w") as t:
    add(t, "000.png", open(f"{m}/img/red.png", "rb").read()); add(t, "000.json", json.dumps(recs[0]).encode())
    add(t, "001.png", open(f"{m}/img/red.png", "rb").read())
    add(t, "002.png", open(f"{m}/img/blue.png", "rb").read()); add(t, "002.json", json.dumps(recs[1]).encode())
PY
expect_status pack_tar 0 vl -o "$tmp/wds" "$m/wds.tar"
vl -q -o "$tmp/six" "$m/six.jsonl"
check tar_equals_jsonl cmp -s "$tmp/wds/train-00000.qwp" "$tmp/six/train-00000.qwp"
expect_status tar_no_json 3 vl -o "$tmp/x" "$m/nojson.tar"
expect_stderr tar_no_json_msg "nojson.tar': sample '001': no .json member"
expect_status tar_skip_bad 0 vl --skip-bad -o "$tmp/x" "$m/nojson.tar"
expect_stderr tar_skip_bad_count '2 images, .*; 1 bad samples skipped'

# bad images and samples: exit 3 naming the record
python3 - "$m" <<'PY'
import json, sys
m = sys.argv[1]
full = open(f"{m}/img/red.png", "rb").read()
open(f"{m}/img/trunc.png", "wb").write(full[:len(full) // 2])
open(f"{m}/img/anim.gif", "wb").write(b"GIF89a\1\0\1\0\0\0\0;")
import struct, zlib
def png(path, w, h):
    raw = b"".join(b"\0" + bytes(3 * w) for _ in range(h))
    def chunk(t, x): return struct.pack(">I", len(x)) + t + x + struct.pack(">I", zlib.crc32(t + x))
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
png(f"{m}/img/thin.png", 6500, 30)
for name, path in [("missing", "img/nope.png"), ("trunc", "img/trunc.png"), ("gif", "img/anim.gif"), ("thin", "img/thin.png")]:
    with open(f"{m}/{name}.jsonl", "w") as f:
        f.write(open(f"{m}/one.jsonl").read())
        q = {"role": "user", "content": [{"type": "image", "image": path}, {"type": "text", "text": "what?"}]}
        f.write(json.dumps({"messages": [q, {"role": "assistant", "content": "it is red."}]}) + "\n")
PY
expect_status missing_image 3 vl -o "$tmp/x" "$m/missing.jsonl"
expect_stderr missing_image_msg "missing.jsonl': line 2: image 0: '.*img/nope.png': no such file"
expect_status truncated_image 3 vl -o "$tmp/x" "$m/trunc.jsonl"
expect_stderr truncated_image_msg "trunc.jsonl': line 2: image 0: '.*trunc.png'"
expect_status unsupported_image 3 vl -o "$tmp/x" "$m/gif.jsonl"
expect_stderr unsupported_image_msg "gif.jsonl': line 2: image 0: '.*anim.gif'"
expect_status extreme_aspect 3 vl -o "$tmp/x" "$m/thin.jsonl"
expect_stderr extreme_aspect_msg "thin.jsonl': line 2: image 0: .*aspect ratio"
expect_status skip_bad_images 0 vl --skip-bad -o "$tmp/x" "$m/missing.jsonl" "$m/trunc.jsonl" "$m/gif.jsonl" "$m/thin.jsonl"
expect_stderr skip_bad_images_count '4 images, .*; 4 bad samples skipped'
T=12 expect_status too_long 3 vl -o "$tmp/x" "$m/one.jsonl"
expect_stderr too_long_msg "one.jsonl': line 1: [0-9]+ tokens with images do not fit a row of 13"
expect_status pretrain_mode 2 qw-pack -T 64 --chat --tokenizer "$m/tok" --model "$m/model" -o "$tmp/x" "$m/one.jsonl"
expect_status text_reader_refuses 3 qw-tokenize --chat -t "$m/tok" "$m/one.jsonl" -o "$tmp/x.qwt"
