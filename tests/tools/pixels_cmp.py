#!/usr/bin/env python3
"""pixels_cmp.py — compare `qw-eval pixels` output with the fixture (stdlib only).

    pixels_cmp.py META.json FIXTURE.safetensors OURS.safetensors TOL

Prints the worst |diff| of pixel_values overall and per image (in uint8
steps of 1/127.5 when the normalisation is Qwen3-VL's), and how many values
differ.  Exit 0 when image_grid_thw is identical and every value is within
TOL; 1 otherwise, naming the worst image.
"""
import json
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    hdr.pop("__metadata__", None)
    out = {}
    for name, t in hdr.items():
        a, b = t["data_offsets"]
        fmt = {"F32": "f", "I64": "q"}[t["dtype"]]
        k = (b - a) // struct.calcsize(fmt)
        out[name] = (t["shape"], struct.unpack("<%d%s" % (k, fmt), raw[8 + n + a:8 + n + b]))
    return out


meta = json.load(open(sys.argv[1]))
ref, ours, tol = read(sys.argv[2]), read(sys.argv[3]), float(sys.argv[4])
ok = True
if ref["image_grid_thw"] != ours["image_grid_thw"]:
    print("image_grid_thw differs: fixture %s, ours %s" % (ref["image_grid_thw"], ours["image_grid_thw"]))
    sys.exit(1)
(rs, rv), (os_, ov) = ref["pixel_values"], ours["pixel_values"]
if rs != os_:
    print("pixel_values shape differs: fixture %s, ours %s" % (rs, os_))
    sys.exit(1)
L = rs[1]
worst, worst_name, ndiff = 0.0, None, 0
for im in meta["images"]:
    a, b = im["rows"]
    w = 0.0
    nd = 0
    for i in range(a * L, b * L):
        d = abs(rv[i] - ov[i])
        if d:
            nd += 1
            if d > w:
                w = d
    ndiff += nd
    print("  %-32s grid %-12s worst |diff| %.3g (%.2f uint8 steps), %d of %d values differ"
          % (im["name"], im["grid_thw"], w, w * 127.5, nd, (b - a) * L))
    if w > worst:
        worst, worst_name = w, im["name"]
print("worst |diff| %.3g (%.2f uint8 steps) in %s; %d of %d values differ"
      % (worst, worst * 127.5, worst_name or "-", ndiff, len(rv)))
sys.exit(0 if worst <= tol else 1)
