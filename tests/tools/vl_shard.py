#!/usr/bin/env python3
"""vl_shard.py — checks of qw-pack(5) version-2 shards (images), read
independently of libcore: the layout of the man page, zstd-free shards
(qw-pack --zstd 0).

  vl_shard.py rows SHARD IMAGE_ID START_ID
      every image's pad run: starts where the row says, after
      <|vision_start|>, t*h*w/4 pad tokens, mask 0, all the row's pads
      accounted for; prints "images N patch_rows R"
  vl_shard.py pixels SHARD PIXELS.safetensors
      the first row's patches equal qw-eval pixels' pixel_values (bytes)
"""
import json, struct, sys


def rows(path):
    b = open(path, "rb").read()
    magic, ver, flags, L, width, n_rows = struct.unpack_from("<4sHHIIQ", b, 0)
    assert magic == b"QWPK", "bad magic"
    assert ver == 2 and flags & 4, f"version {ver} flags {flags}: not a shard with images"
    assert not flags & 2, "zstd blocks: pack with --zstd 0"
    rpb, nb, ix = struct.unpack_from("<IIQ", b, 40)
    out = []
    for k in range(nb):
        off, stored, raw, crc, _ = struct.unpack_from("<QIIII", b, ix + 24 * k)
        blk = b[off:off + raw]
        p = 0
        while p < len(blk):
            n_valid, n_segs = struct.unpack_from("<II", blk, p); p += 8
            starts = struct.unpack_from(f"<{n_segs}I", blk, p); p += 4 * n_segs
            fmt = "<%d%s" % (L, "H" if width == 2 else "I")
            toks = struct.unpack_from(fmt, blk, p); p += L * width
            mask = None
            if flags & 1:
                mb = blk[p:p + (L + 7) // 8]; p += (L + 7) // 8
                mask = [(mb[i // 8] >> (i % 8)) & 1 for i in range(L)]
            ni, K = struct.unpack_from("<II", blk, p); p += 8
            imgs = [struct.unpack_from("<IIII", blk, p + 16 * i) for i in range(ni)]
            p += 16 * ni
            nrows = sum(t * h * w for _, t, h, w in imgs)
            px = blk[p:p + 4 * nrows * K]; p += 4 * nrows * K
            out.append(dict(n_valid=n_valid, starts=starts, tokens=toks, mask=mask, images=imgs, K=K, pixels=px))
    assert len(out) == n_rows, "row count"
    return out


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    rs = rows(path)
    if cmd == "rows":
        pad, vstart = int(sys.argv[3]), int(sys.argv[4])
        n = pr = 0
        for r in rs:
            seen = 0
            for s, t, h, w in r["images"]:
                m = t * h * w // 4
                assert r["tokens"][s - 1] == vstart, f"image at {s} not after <|vision_start|>"
                assert all(x == pad for x in r["tokens"][s:s + m]), f"image at {s}: not {m} pad tokens"
                assert r["tokens"][s + m] != pad, f"image at {s}: more than {m} pad tokens"
                assert not any(r["mask"][s:s + m + 1]), f"image at {s}: pad tokens are targets"
                seen += m
                n += 1
                pr += t * h * w
            assert seen == sum(x == pad for x in r["tokens"][:r["n_valid"]]), "pad tokens outside the images"
        print(f"images {n} patch_rows {pr}")
    elif cmd == "pixels":
        st = open(sys.argv[3], "rb").read()
        hl = struct.unpack_from("<Q", st, 0)[0]
        h = json.loads(st[8:8 + hl])
        a, e = h["pixel_values"]["data_offsets"]
        want = st[8 + hl + a:8 + hl + e]
        got = rs[0]["pixels"]
        assert got == want, f"patches differ ({len(got)} vs {len(want)} bytes)"
        print("equal", len(got) // 4)


if __name__ == "__main__":
    main()
