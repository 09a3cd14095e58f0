"""gen_sft_stream.py IDENTITY_HEX VOCAB DOCS SEED [MAXLEN] [--trailer K] [--json]
— write a qw-tokens(5) version-2 stream (loss masks) of learnable SFT
samples to stdout, straight from the format's man page: a prompt (mask 0:
a start and a step, then filler), an answer (mask 1: the arithmetic
progression they define, modulo VOCAB) and a trailer token (mask 0, value
K + document number, default K 0: a masked-out target that is no token's
input, like the newline after <|im_end|>).  Samples have at most MAXLEN
tokens (default 40).  --json writes {"ids": [...], "mask": [...]} lines
instead.  Deterministic."""
import json, os, random, struct, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_stream import crc  # noqa: E402  (the one CRC-32C of the test generators)
def main(ident, vocab, n_docs, seed, maxlen, trailer, as_json):
    r = random.Random(seed)
    docs = []
    for d in range(n_docs):
        s, k = r.randrange(vocab), r.randrange(1, 7)
        prompt = [s, k] + [r.randrange(vocab) for _ in range(r.randrange(1, 6))]
        n = r.randrange(4, maxlen - len(prompt))
        answer = [(s + i * k) % vocab for i in range(n)]
        ids = prompt + answer + [(trailer + d) % vocab]
        mask = [0] * len(prompt) + [1] * n + [0]
        docs.append((ids, mask))
    if as_json:
        for ids, mask in docs: print(json.dumps({"ids": ids, "mask": mask}))
        return
    ntok = sum(len(i) for i, _ in docs)
    bits = bytearray((ntok + 7) // 8)
    at = 0
    for _, mask in docs:
        for m in mask:
            if m: bits[at // 8] |= 1 << (at % 8)
            at += 1
    payload = struct.pack("<%dI" % len(docs), *(len(i) for i, _ in docs))
    payload += b"".join(struct.pack("<%dH" % len(i), *i) for i, _ in docs) + bytes(bits)
    h = b"QWTK" + struct.pack("<BBHQIIQQI", 2, 4, 0, ident, vocab, len(docs), ntok, len(payload), crc(payload))
    sys.stdout.buffer.write(h + struct.pack("<I", crc(h)) + payload)
a = sys.argv[1:]
flags = {"--json": False, "--trailer": 0}
if "--json" in a: a.remove("--json"); flags["--json"] = True
if "--trailer" in a:
    i = a.index("--trailer"); flags["--trailer"] = int(a[i + 1]); del a[i:i + 2]
main(int(a[0], 16), int(a[1]), int(a[2]), int(a[3]), int(a[4]) if len(a) > 4 else 40, flags["--trailer"], flags["--json"])
