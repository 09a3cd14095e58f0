"""gen_stream.py IDENTITY_HEX VOCAB DOCS SEED — write a qw-tokens(5) stream of
learnable documents (arithmetic progressions modulo VOCAB: a start, a step
of 1..6, 8..99 tokens) to stdout, straight from the format's man page, so
training tests need neither a tokenizer nor a corpus.  Deterministic."""
import random, struct, sys
T = [0] * 256
for i in range(256):
    c = i
    for _ in range(8): c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    T[i] = c
def crc(b):
    """CRC-32C (Castagnoli), as qw-tokens(5) checksums its headers and payloads."""
    c = 0xFFFFFFFF
    for x in b: c = T[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF
def main(ident, vocab, n_docs, seed):
    r = random.Random(seed)
    ds = []
    for _ in range(n_docs):
        s, k, n = r.randrange(vocab), r.randrange(1, 7), r.randrange(8, 100)
        ds.append([(s + i * k) % vocab for i in range(n)])
    out = sys.stdout.buffer
    payload = struct.pack("<%dI" % len(ds), *map(len, ds))
    payload += b"".join(struct.pack("<%dH" % len(d), *d) for d in ds)
    h = b"QWTK" + struct.pack("<BBHQIIQQI", 1, 0, 0, ident, vocab, len(ds), sum(map(len, ds)), len(payload), crc(payload))
    out.write(h + struct.pack("<I", crc(h)) + payload)
if __name__ == "__main__":
    main(int(sys.argv[1], 16), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
