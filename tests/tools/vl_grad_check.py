#!/usr/bin/env python3
"""vl_grad_check.py — a training step on images against qw-eval forward.

  vl_grad_check.py input SHARD OUT.safetensors
      the first row of a one-sample qw-pack --zstd 0 shard with images as a
      qw-eval forward input: input_ids [1, n] (the sample, no padding),
      labels (-100 where the row's loss mask is 0), pixel_values and
      image_grid_thw from the shard
  vl_grad_check.py targets SHARD
      the first row's target count
  vl_grad_check.py compare A.safetensors B.safetensors TOL
      every grad.NAME of A against B: max |a - b| / max(max |b|, 1e-12) per
      tensor; prints the worst and the number of tensors, fails above TOL
"""
import array, json, struct, sys

sys.path.insert(0, __import__("os").path.dirname(__file__))
import vl_shard


def write_st(path, tensors):
    meta, blobs, off = {}, [], 0
    for name, (dtype, shape, data) in tensors.items():
        meta[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(meta).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_st(path):
    b = open(path, "rb").read()
    n = struct.unpack_from("<Q", b, 0)[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__" or v["dtype"] != "F32":
            continue
        a, e = v["data_offsets"]
        out[k] = array.array("f", b[8 + n + a:8 + n + e])
    return out


def main():
    if sys.argv[1] == "input":
        r = vl_shard.rows(sys.argv[2])[0]
        n = r["n_valid"]
        assert len(r["starts"]) == 1, "one sample per row"
        ids = r["tokens"][:n]
        labels = [ids[i] if i > 0 and r["mask"][i] else -100 for i in range(n)]
        thw = [x for _, t, h, w in r["images"] for x in (t, h, w)]
        rows = sum(t * h * w for _, t, h, w in r["images"])
        write_st(sys.argv[3], {
            "input_ids": ("I64", [1, n], struct.pack(f"<{n}q", *ids)),
            "labels": ("I64", [1, n], struct.pack(f"<{n}q", *labels)),
            "pixel_values": ("F32", [rows, r["K"]], r["pixels"]),
            "image_grid_thw": ("I64", [len(r["images"]), 3], struct.pack(f"<{len(thw)}q", *thw)),
        })
    elif sys.argv[1] == "targets":
        r = vl_shard.rows(sys.argv[2])[0]
        print(sum(r["mask"][1:r["n_valid"]]))
    else:
        if sys.argv[1] == "packed":
            a, b, nb, c, nc, tol = (read_st(sys.argv[2]), read_st(sys.argv[3]), float(sys.argv[4]), read_st(sys.argv[5]),
                                    float(sys.argv[6]), float(sys.argv[7]))
            b = {k: [(nb * x + nc * y) / (nb + nc) for x, y in zip(b[k], c[k])] for k in b}
        else:
            a, b, tol = read_st(sys.argv[2]), read_st(sys.argv[3]), float(sys.argv[4])
        names = [k for k in a if k.startswith("grad.")]
        assert names and all(k in b for k in names), "gradient names differ"
        worst, at = 0.0, ""
        for k in names:
            scale = max(max(abs(x) for x in b[k]), 1e-12)
            d = max(abs(x - y) for x, y in zip(a[k], b[k])) / scale
            if d > worst:
                worst, at = d, k
        print(f"{len(names)} gradients, worst relative difference {worst:.3g} ({at})")
        sys.exit(worst > tol)


if __name__ == "__main__":
    main()
