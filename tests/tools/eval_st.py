#!/usr/bin/env python3
"""eval_st.py — tiny safetensors reader/writer (stdlib only) for the tool tests.

    eval_st.py header FILE                 one line per tensor: NAME DTYPE D0,D1,...  (sorted by name)
    eval_st.py values FILE NAME            the tensor's values, space-separated
    eval_st.py write OUT SPEC...           SPEC = NAME:DTYPE:D0,D1,...:V0,V1,...  (DTYPE I64, I32 or F32)
    eval_st.py close A B REL               the same tensors, each within REL of its largest |value|
                                           in A (exit 1 and the worst tensor otherwise)
"""
import json
import struct
import sys

FMT = {"I64": "q", "I32": "i", "F32": "f"}


def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    hdr.pop("__metadata__", None)
    return hdr, raw[8 + n:]


def values(hdr, data, name):
    t = hdr[name]
    a, b = t["data_offsets"]
    fmt = FMT[t["dtype"]]
    return struct.unpack("<%d%s" % ((b - a) // struct.calcsize(fmt), fmt), data[a:b])


def main(argv):
    cmd = argv[1]
    if cmd == "header":
        hdr, _ = read(argv[2])
        for name in sorted(hdr):
            print(name, hdr[name]["dtype"], ",".join(str(d) for d in hdr[name]["shape"]))
    elif cmd == "values":
        hdr, data = read(argv[2])
        print(" ".join(repr(v) for v in values(hdr, data, argv[3])))
    elif cmd == "close":
        (ha, da), (hb, db), rel = read(argv[2]), read(argv[3]), float(argv[4])
        if sorted(ha) != sorted(hb):
            sys.exit("tensors differ: %s" % sorted(set(ha) ^ set(hb)))
        worst = (0.0, "-")
        for name in sorted(ha):
            a, b = values(ha, da, name), values(hb, db, name)
            scale = max(abs(x) for x in a)
            d = max(abs(x - y) for x, y in zip(a, b)) / scale if scale else max(abs(y) for y in b)
            worst = max(worst, (d, name))
        print("worst %s: %.3g of its largest |value| (limit %g)" % (worst[1], worst[0], rel))
        sys.exit(0 if worst[0] <= rel else 1)
    elif cmd == "write":
        hdr, blobs, off = {}, [], 0
        for spec in argv[3:]:
            name, dtype, shape, vals = spec.split(":")
            shape = [int(d) for d in shape.split(",") if d]
            conv = float if dtype == "F32" else int
            vals = [conv(v) for v in vals.split(",") if v]
            blob = struct.pack("<%d%s" % (len(vals), FMT[dtype]), *vals)
            hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(blob)]}
            blobs.append(blob)
            off += len(blob)
        h = json.dumps(hdr).encode()
        h += b" " * (-len(h) % 8)
        with open(argv[2], "wb") as f:
            f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    else:
        sys.exit("eval_st.py: unknown command " + cmd)


if __name__ == "__main__":
    main(sys.argv)
