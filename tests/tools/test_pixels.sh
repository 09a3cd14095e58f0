#!/usr/bin/env bash
# test_pixels.sh — qw-eval pixels against transformers' Qwen3-VL image
# processor (the fixture tests/golden/vision, written by
# tests/golden/make_vision_golden.py), and its errors: a missing path, a
# truncated or corrupt image, an unsupported format and an aspect ratio
# above 200 are exit 3 naming the file; a small image is enlarged.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 16

fix=$QW_SRCDIR/tests/golden/vision

# small PNGs written here (zlib + struct): RGB noise W×H, or grey
python3 - "$tmp" <<'PY'
import random, struct, sys, zlib
d = sys.argv[1]
def png(name, w, h, ct=2, bd=8, seed=1):
    ch = {0: 1, 2: 3, 4: 2, 6: 4}[ct]
    r = random.Random(seed)
    raw = b"".join(b"\0" + bytes(r.randrange(256) for _ in range(w * ch * bd // 8)) for _ in range(h))
    def chunk(t, x): return struct.pack(">I", len(x)) + t + x + struct.pack(">I", zlib.crc32(t + x))
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bd, ct, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    open(f"{d}/{name}", "wb").write(data)
    return data
full = png("ok.png", 70, 50)
open(f"{d}/trunc.png", "wb").write(full[:len(full) // 2])
bad = bytearray(full); bad[40] ^= 0xFF
open(f"{d}/corrupt.png", "wb").write(bytes(bad))
open(f"{d}/jpeg_trunc.jpg", "wb").write(b"\xff\xd8\xff\xe0\0\x10JFIF\0\1\1\0\0\1\0\1\0\0")
open(f"{d}/gif.gif", "wb").write(b"GIF89a\1\0\1\0\0\0\0;")
png("small.png", 31, 100, 0)
png("thin.png", 6500, 32, 0)
PY

# no preprocessor_config.json: Qwen3-VL's defaults (min_pixels 65536):
# 70×50 → round to 64×64 = 4096 < 65536 → β = √(65536/3500), 50·β/32 → 7, 70·β/32 → 10
mkdir -p "$tmp/nomodel"
expect_status defaults_run 0 qw-eval pixels --model "$tmp/nomodel" -o "$tmp/d.safetensors" "$tmp/ok.png" "$tmp/ok.png"
check defaults_shapes test "$(python3 "$QW_SRCDIR/tests/tools/eval_st.py" header "$tmp/d.safetensors" | tr '\n' ' ')" \
    = "image_grid_thw I64 2,3 pixel_values F32 560,1536 "
check defaults_grid test "$(python3 "$QW_SRCDIR/tests/tools/eval_st.py" values "$tmp/d.safetensors" image_grid_thw)" = "1 14 20 1 14 20"

# errors: exit 3 naming the file and the reason
expect_status missing 3 qw-eval pixels -m "$tmp/nomodel" -o "$tmp/e.st" "$tmp/ok.png" "$tmp/nope.png"
expect_stderr missing_msg "nope.png'?: no such image"
expect_status truncated 3 qw-eval pixels -m "$tmp/nomodel" -o "$tmp/e.st" "$tmp/trunc.png"
expect_status corrupt 3 qw-eval pixels -m "$tmp/nomodel" -o "$tmp/e.st" "$tmp/corrupt.png"
expect_status jpeg_truncated 3 qw-eval pixels -m "$tmp/nomodel" -o "$tmp/e.st" "$tmp/jpeg_trunc.jpg"
expect_status unsupported 3 qw-eval pixels -m "$tmp/nomodel" -o "$tmp/e.st" "$tmp/gif.gif"
expect_stderr unsupported_msg "gif.gif'?: unsupported image format"
# a small image is enlarged as transformers 5 does (31×100 → 160×480 at min_pixels 65536)
expect_status small_enlarged 0 qw-eval pixels -m "$tmp/nomodel" -o "$tmp/s.st" "$tmp/small.png"
check small_grid test "$(python3 "$QW_SRCDIR/tests/tools/eval_st.py" values "$tmp/s.st" image_grid_thw)" = "1 30 10"
expect_status aspect 3 qw-eval pixels -m "$tmp/nomodel" -o "$tmp/e.st" "$tmp/thin.png"
expect_stderr aspect_msg "thin.png'?: aspect ratio"
check no_output_on_error test ! -e "$tmp/e.st"

# the fixture: every image in one call, compared with transformers' output
if [ ! -f "$fix/meta.json" ] || [ ! -f "$fix/pixels.safetensors" ]; then
    fail fixture "tests/golden/vision is missing: run 'cd tests/golden && python3 make_vision_golden.py --out vision' on a machine with torch, torchvision, Pillow and transformers, and commit its output"
else
    mapfile -t imgs < <(python3 -c 'import json,sys; [print(sys.argv[2] + "/images/" + i["name"]) for i in json.load(open(sys.argv[1]))["images"]]' "$fix/meta.json" "$fix")
    if qw-eval pixels -q -m "$fix/model" -o "$tmp/f.safetensors" "${imgs[@]}" 2>"$tmp/f.err"; then
        # one uint8 step of the resize is 1/127.5 after Qwen3-VL's normalisation
        if python3 "$QW_SRCDIR/tests/tools/pixels_cmp.py" "$fix/meta.json" "$fix/pixels.safetensors" "$tmp/f.safetensors" 0.00785 >"$tmp/cmp.txt"; then
            sed 's/^/# /' "$tmp/cmp.txt"; pass fixture
        else
            sed 's/^/# /' "$tmp/cmp.txt"; fail fixture "qw-eval pixels differs from transformers: $(tail -n 1 "$tmp/cmp.txt")"
        fi
    else
        fail fixture "qw-eval pixels failed: $(head -c 400 "$tmp/f.err")"
    fi
fi
