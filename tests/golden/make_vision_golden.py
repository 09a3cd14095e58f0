#!/usr/bin/env python3
"""Image-preprocessing fixture for `qw-eval pixels` (tests/tools/test_pixels.sh).

    cd tests/golden && python3 make_vision_golden.py --out vision

Needs Pillow, PyTorch, torchvision and transformers (the project's GPU
machine; the CPU is enough, it runs in a few seconds).  Writes into OUT:

  images/*.png, images/*.jpg   small test images drawn here with Pillow from a
                               fixed seed (Python's random): PNG modes 1, L, LA,
                               P (+ transparency), RGB, RGBA, I;16; JPEG RGB
                               (4:2:0 and 4:4:4), L, CMYK, progressive, and
                               EXIF orientations 3, 5, 6 and 8; noisy
                               "photographs" and sharp-edged "drawings" of many
                               sizes and aspect ratios, some below min_pixels
                               (upscaled), most above max_pixels (downscaled)
  model/preprocessor_config.json  Qwen3-VL's settings with SMALL min/max
                               pixels so that the outputs stay small
  pixels.safetensors           pixel_values F32 [N,1536] and image_grid_thw
                               I64 [n,3] of ONE processor call on all images in
                               the order of meta.json's "images"
  meta.json                    versions, processor class, settings, the image
                               list (name, PIL mode as opened, size, grid), the
                               self-checks below, and "probes": what the
                               processor does with sizes the C side must refuse
                               or treat specially (too small, aspect > 200, ...)

Images are loaded exactly as transformers' chat pipeline loads a path:
transformers.image_utils.load_image (EXIF transpose, then convert("RGB")), then
given to AutoImageProcessor.from_pretrained(OUT/model) (the default, fast class
for a Qwen3-VL preprocessor_config.json).  Self-checks recorded in meta.json:
each image processed alone equals its rows of the batch call (if not, the
per-image outputs are written too, as pixels_<i>.safetensors), and the worst
|diff| between the fast processor and the slow (PIL) one, per image.
"""
import argparse
import io
import json
import math
import os
import random
import struct
import sys

from PIL import Image, ImageDraw, ImageFilter

MIN_PIXELS = 2048        # 2 merged 32x32 units
MAX_PIXELS = 6144        # 6 merged units: <= 24 patch rows per image

PRE_CONFIG = {
    "size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
    "patch_size": 16,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor",
    "image_processor_type": "Qwen2VLImageProcessorFast",
}


# ------------------------------------------------------------------ images

def photo(w, h, rng):
    """A smooth colour field with soft blobs and per-pixel noise."""
    img = Image.new("RGB", (w, h))
    cx = [rng.uniform(0, w) for _ in range(3)]
    cy = [rng.uniform(0, h) for _ in range(3)]
    px = []
    for y in range(h):
        for x in range(w):
            r = 255 * x / max(1, w - 1)
            g = 255 * y / max(1, h - 1)
            b = 128 + 100 * math.sin((x + 2 * y) / 9.0)
            for i in range(3):
                d2 = ((x - cx[i]) ** 2 + (y - cy[i]) ** 2) / (0.05 * w * h + 1)
                v = 90 * math.exp(-d2)
                if i == 0:
                    r += v
                elif i == 1:
                    g -= v
                else:
                    b += v
            n = rng.gauss(0, 12)
            px.append(tuple(max(0, min(255, int(c + n))) for c in (r, g, b)))
    img.putdata(px)
    return img.filter(ImageFilter.GaussianBlur(0.6))


def drawing(w, h, rng, bg=(255, 255, 255)):
    """Sharp edges: boxes, ellipses, thin strokes like handwriting/text."""
    img = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(img)
    for _ in range(6):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = x0 + rng.randrange(4, max(5, w // 2)), y0 + rng.randrange(4, max(5, h // 2))
        col = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            d.rectangle([x0, y0, x1, y1], outline=col, width=rng.randrange(1, 4))
        else:
            d.ellipse([x0, y0, x1, y1], fill=col)
    # text-like strokes: rows of short zig-zags
    y = 4
    while y + 8 < h:
        x = 3
        while x + 6 < w:
            pts = [(x + i, y + (0 if i % 2 else 6) + rng.randrange(2)) for i in range(0, 6, 2)]
            d.line(pts, fill=(0, 0, 0), width=1)
            x += rng.randrange(6, 11)
        y += 12
    return img


def save(img, path, **kw):
    img.save(path, **kw)


def exif_bytes(orientation):
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex.tobytes()


def make_images(outdir):
    rng = random.Random(20261204)
    os.makedirs(outdir, exist_ok=True)
    made = []

    def add(name, img, **kw):
        save(img, os.path.join(outdir, name), **kw)
        made.append(name)

    # --- PNG, each mode PIL can write
    add("rgb_grad_64x48.png", photo(64, 48, rng))
    add("rgb_exact_64x64.png", photo(64, 64, rng))            # no resize needed
    add("rgb_exact_96x64.png", drawing(96, 64, rng))          # = max_pixels, no resize
    add("rgb_small_40x36.png", photo(40, 36, rng))            # upscale (min_pixels)
    add("rgb_small_32x33.png", drawing(32, 33, rng))          # smallest accepted
    add("photo_200x150.png", photo(200, 150, rng))            # downscale
    add("photo_tall_90x211.png", photo(90, 211, rng))
    add("drawing_256x64.png", drawing(256, 64, rng))
    add("drawing_wide_200x40.png", drawing(200, 40, rng))     # aspect 5, the short side floors to 32
    add("drawing_tall_40x180.png", drawing(40, 180, rng))
    add("drawing_thin_33x100.png", drawing(33, 100, rng))     # no downscale, rounds 100 -> 96
    add("drawing_wide_250x24.png", drawing(250, 24, rng))     # a side below 32; floors to 0 -> 32 (transformers 5)
    add("rgb_tiny_20x28.png", photo(20, 28, rng))             # below 32: enlarged (transformers 5)
    add("drawing_301x177.png", drawing(301, 177, rng))
    add("l_77x55.png", photo(77, 55, rng).convert("L"))
    la = Image.merge("LA", (photo(60, 90, rng).convert("L"),
                            drawing(60, 90, rng).convert("L")))
    add("la_60x90.png", la)
    p = drawing(120, 40, rng).quantize(colors=16)
    add("p_120x40.png", p, transparency=0)                    # palette + tRNS
    rgba = photo(50, 50, rng).convert("RGBA")
    rgba.putalpha(drawing(50, 50, rng).convert("L"))          # alpha must be dropped
    add("rgba_50x50.png", rgba)
    i16 = Image.new("I;16", (70, 45))
    i16.putdata([(x * 17 + y * 3) % 600 for y in range(45) for x in range(70)])  # clips at 255
    add("i16_70x45.png", i16)
    add("bw_64x33.png", drawing(64, 33, rng).convert("1"))
    # --- JPEG
    add("jpeg_photo_320x240.jpg", photo(320, 240, rng), quality=90)
    add("jpeg_444_150x100.jpg", photo(150, 100, rng), quality=95, subsampling=0)
    add("jpeg_422_99x77.jpg", drawing(99, 77, rng), quality=85, subsampling=1)
    add("jpeg_progressive_180x120.jpg", photo(180, 120, rng), quality=80, progressive=True)
    add("jpeg_grey_100x130.jpg", photo(100, 130, rng).convert("L"), quality=90)
    add("jpeg_cmyk_90x70.jpg", photo(90, 70, rng).convert("CMYK"), quality=90)
    base = drawing(64, 48, rng)
    for o in (3, 5, 6, 8):
        add("jpeg_exif%d_64x48.jpg" % o, base, quality=92, exif=exif_bytes(o))
    return made


# ------------------------------------------------------------- safetensors

def write_safetensors(path, tensors):
    """tensors: name -> (dtype string, shape, raw little-endian bytes)."""
    header, off, blobs = {}, 0, []
    for name, (dt, shape, raw) in tensors.items():
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def tensor_entry(t, dt):
    import torch
    t = t.contiguous().cpu()
    if dt == "F32":
        t = t.to(torch.float32)
    else:
        t = t.to(torch.int64)
    return (dt, tuple(t.shape), t.numpy().tobytes())


# -------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="vision")
    args = ap.parse_args()

    import PIL
    import torch
    import torchvision
    import transformers
    from transformers import AutoImageProcessor
    from transformers.image_utils import load_image

    out = args.out
    imgdir = os.path.join(out, "images")
    names = make_images(imgdir)
    mdir = os.path.join(out, "model")
    os.makedirs(mdir, exist_ok=True)
    with open(os.path.join(mdir, "preprocessor_config.json"), "w") as f:
        json.dump(PRE_CONFIG, f, indent=2)
        f.write("\n")

    try:
        proc = AutoImageProcessor.from_pretrained(mdir)
    except Exception as e:  # noqa: BLE001 — a transformers without the Fast class name
        print("AutoImageProcessor with Qwen2VLImageProcessorFast failed (%s); retrying with Qwen2VLImageProcessor" % e)
        PRE_CONFIG["image_processor_type"] = "Qwen2VLImageProcessor"
        with open(os.path.join(mdir, "preprocessor_config.json"), "w") as f:
            json.dump(PRE_CONFIG, f, indent=2)
            f.write("\n")
        proc = AutoImageProcessor.from_pretrained(mdir)
    pil_images = []
    info = []
    for n in names:
        path = os.path.join(imgdir, n)
        with Image.open(path) as raw:
            mode, size = raw.mode, raw.size
        im = load_image(path)
        pil_images.append(im)
        info.append({"name": n, "mode": mode, "size_wh": list(size), "loaded_size_wh": list(im.size)})

    batch = proc(images=pil_images, return_tensors="pt")
    pv, thw = batch["pixel_values"], batch["image_grid_thw"]
    write_safetensors(os.path.join(out, "pixels.safetensors"),
                      {"pixel_values": tensor_entry(pv, "F32"),
                       "image_grid_thw": tensor_entry(thw, "I64")})

    # self-checks: alone == batch rows; fast vs slow
    try:
        slow = AutoImageProcessor.from_pretrained(mdir, use_fast=False)
        slow_class = type(slow).__name__
    except Exception as e:  # noqa: BLE001
        slow, slow_class = None, "unavailable: %s" % e
    row = 0
    alone_equal_all = True
    for i, im in enumerate(pil_images):
        g = [int(v) for v in thw[i].tolist()]
        n = g[0] * g[1] * g[2]
        one = proc(images=[im], return_tensors="pt")
        same = torch.equal(one["pixel_values"], pv[row:row + n]) and torch.equal(one["image_grid_thw"][0], thw[i])
        info[i]["grid_thw"] = g
        info[i]["rows"] = [row, row + n]
        info[i]["alone_equals_batch"] = bool(same)
        if not same:
            alone_equal_all = False
            write_safetensors(os.path.join(out, "pixels_%d.safetensors" % i),
                              {"pixel_values": tensor_entry(one["pixel_values"], "F32"),
                               "image_grid_thw": tensor_entry(one["image_grid_thw"], "I64")})
        if slow is not None:
            s = slow(images=[im], return_tensors="pt")
            if tuple(s["pixel_values"].shape) == tuple(one["pixel_values"].shape):
                d = (torch.as_tensor(s["pixel_values"]).float() - one["pixel_values"].float()).abs().max().item()
                info[i]["slow_vs_fast_max_abs"] = d
            else:
                info[i]["slow_vs_fast_max_abs"] = "shape %s vs %s" % (tuple(s["pixel_values"].shape),
                                                                      tuple(one["pixel_values"].shape))
        row += n

    # probes: sizes the C side must refuse or treat specially
    probes = {}
    for label, (w, h) in {"too_small_31x100": (31, 100), "too_small_100x20": (100, 20),
                          "aspect_201_32x6432": (32, 6432), "aspect_200_32x6400": (32, 6400),
                          "zero_after_floor_40x400": (40, 400), "tiny_1x1": (1, 1)}.items():
        img = Image.new("RGB", (w, h), (10, 200, 30))
        try:
            r = proc(images=[img], return_tensors="pt")
            probes[label] = {"ok": True, "grid_thw": [int(v) for v in r["image_grid_thw"][0].tolist()],
                             "rows": int(r["pixel_values"].shape[0])}
        except Exception as e:  # noqa: BLE001
            probes[label] = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}

    meta = {
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "transformers": transformers.__version__,
                     "pillow": PIL.__version__},
        "cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: "?")(),
        "processor_class": type(proc).__name__,
        "slow_processor_class": slow_class,
        "processor_settings": json.loads(json.dumps(proc.to_dict(), default=str)),
        "preprocessor_config": PRE_CONFIG,
        "loader": "transformers.image_utils.load_image",
        "n_rows": int(pv.shape[0]),
        "alone_equals_batch": alone_equal_all,
        "images": info,
        "probes": probes,
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(out) for fn in fns)
    print("wrote %s: %d images, %d rows, %.2f MB; alone==batch %s" % (
        out, len(names), pv.shape[0], total / 1e6, alone_equal_all))


if __name__ == "__main__":
    main()
