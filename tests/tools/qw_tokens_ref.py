#!/usr/bin/env python3
"""qw_tokens_ref.py — an independent reader of qw-tokens(5), written from the
man page (man/man5/qw-tokens.5), standard library only.

    python3 qw_tokens_ref.py FILE          one line of decimal ids per document
    python3 qw_tokens_ref.py --mask FILE   and after each, a line of its loss
                                           mask as 0/1 digits ("-" when the
                                           frame has none)

Uncompressed frames only (the standard library has no zstd).  Every check
of the man page's "Checking order" is made; a violation prints
"FILE: frame N at byte B: reason" to stderr and exits 3.
"""
import struct
import sys

POLY = 0x82F63B78  # CRC-32C, reflected
TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ POLY if c & 1 else c >> 1
    TABLE.append(c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def main(path, show_mask=False):
    data = open(path, "rb").read()
    pos, index, out = 0, 0, []

    def bad(reason):
        sys.stderr.write("%s: frame %d at byte %d: %s\n" % (path, index, pos, reason))
        sys.exit(3)

    while pos < len(data):
        h = data[pos:pos + 48]
        if not b"QWTK".startswith(h[:4]):
            bad("bad magic")
        if len(h) < 48:
            bad("truncated header")
        magic, version, flags, reserved, identity, vocab, ndocs, ntok, plen, pcrc, hcrc = struct.unpack(
            "<4sBBHQIIQQII", h)
        if version not in (1, 2):
            bad("unknown version")
        if hcrc != crc32c(h[:44]):
            bad("bad header checksum")
        if flags & ~(7 if version == 2 else 3) or reserved:
            bad("unknown flags or reserved bytes")
        masked = bool(flags & 4)
        if flags & 1:
            bad("zstd payload (not supported by this reader)")
        width = 4 if flags & 2 else 2
        if vocab == 0 or vocab > 2**31 or (width == 2 and vocab > 65536):
            bad("vocabulary size")
        mask_len = (ntok + 7) // 8 if masked else 0
        raw_len = 4 * ndocs + width * ntok + mask_len
        if raw_len > 1 << 30 or plen != raw_len:
            bad("payload length")
        payload = data[pos + 48:pos + 48 + plen]
        if len(payload) < plen:
            bad("truncated payload")
        if crc32c(payload) != pcrc:
            bad("bad payload checksum")
        lens = struct.unpack("<%dI" % ndocs, payload[:4 * ndocs])
        ids = struct.unpack("<%d%s" % (ntok, "I" if width == 4 else "H"),
                            payload[4 * ndocs:4 * ndocs + width * ntok])
        bits = payload[4 * ndocs + width * ntok:]
        mask = [(bits[i // 8] >> (i % 8)) & 1 for i in range(ntok)] if masked else None
        if masked and ntok % 8 and bits[-1] >> (ntok % 8):
            bad("mask padding bits")
        if sum(lens) != ntok:
            bad("document lengths")
        if any(i >= vocab for i in ids):
            bad("token id out of range")
        s = 0
        for n in lens:
            out.append(" ".join(str(i) for i in ids[s:s + n]))
            if show_mask:
                out.append("".join(str(b) for b in mask[s:s + n]) if masked else "-")
            s += n
        pos += 48 + plen
        index += 1
    sys.stdout.write("".join(line + "\n" for line in out))


if __name__ == "__main__":
    if sys.argv[1] == "--mask":
        main(sys.argv[2], True)
    else:
        main(sys.argv[1])
