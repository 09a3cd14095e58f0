#!/usr/bin/env bash
# qw-pack: token streams (from qw-tokenize, and from an independent writer)
# -> packed shards -> --inspect; determinism, the validation split, the
# qw-pack(5) layout read by an independent reader, and bad input (exit 3).
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 59

# An independent reader and writer of the formats, from their man pages:
# token streams (qw-tokens(5)) of 300 random documents of varied length,
# and raw (--zstd 0) shards (qw-pack(5)), every field and CRC checked.
cat >"$tmp/qwfmt.py" <<'EOF'
import json, random, struct, sys
T = [0] * 256
for i in range(256):
    c = i
    for _ in range(8): c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    T[i] = c
def crc(b):
    c = 0xFFFFFFFF
    for x in b: c = T[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF
assert crc(b"123456789") == 0xE3069283

def docs(vocab, seed):
    r = random.Random(seed)
    return [[r.randrange(vocab) for _ in range(r.choice([3, 10, 40, 120]))] for _ in range(300)]

def write_stream(ident, vocab, seed, out):
    ds = docs(vocab, seed)
    for frame in (ds[:100], ds[100:]):   # two frames
        payload = struct.pack("<%dI" % len(frame), *map(len, frame))
        payload += b"".join(struct.pack("<%dH" % len(d), *d) for d in frame)
        h = b"QWTK" + struct.pack("<BBHQIIQQI", 1, 0, 0, ident, vocab, len(frame), sum(map(len, frame)),
                                  len(payload), crc(payload))
        out.write(h + struct.pack("<I", crc(h)) + payload)

def read_shards(d):
    """{split: [(tokens, starts, n_valid)]} of a data directory of raw shards."""
    ix = json.load(open(d + "/index.json"))
    rows = {"train": [], "val": []}
    for s in ix["shards"]:
        b = open(d + "/" + s["file"], "rb").read()
        h = b[:64]
        magic, ver, flags, L, width, nrows, ident, vocab, pad, rpb, nblk, ixoff, ixcrc, hcrc = \
            struct.unpack("<4sHHIIQQIIIIQII", h)
        assert magic == b"QWPK" and ver == 1 and flags == 0 and L == ix["row_len"] and width == 2
        assert crc(h[:60]) == hcrc and nrows == s["rows"] and "%016x" % ident == ix["tokenizer_identity"]
        assert len(b) == ixoff + 24 * nblk and crc(b[ixoff:]) == ixcrc and nblk == -(-nrows // rpb)
        at, n = 64, 0
        for k in range(nblk):
            off, stored, raw, bcrc, zero = struct.unpack_from("<QIIII", b, ixoff + 24 * k)
            assert off == at and stored == raw and zero == 0 and crc(b[off:off + stored]) == bcrc
            p = off
            while p < off + stored:
                nvalid, nseg = struct.unpack_from("<II", b, p); p += 8
                starts = struct.unpack_from("<%dI" % nseg, b, p); p += 4 * nseg
                toks = struct.unpack_from("<%dH" % L, b, p); p += 2 * L
                assert starts[0] == 0 and list(starts) == sorted(set(starts)) and starts[-1] < nvalid <= L
                assert all(t == pad for t in toks[nvalid:]) and all(t < vocab for t in toks)
                rows[s["split"]].append((toks, starts, nvalid))
                n += 1
            assert p == off + stored
            at += stored
        assert at == ixoff and n == nrows
    for sp in rows:
        assert len(rows[sp]) == ix["splits"][sp]["rows"]
    return ix, rows
EOF
export PYTHONPATH=$tmp
python3 -c 'import qwfmt, sys; qwfmt.write_stream(0xaa, 300, 1, sys.stdout.buffer)' >"$tmp/a.qwt"
python3 -c 'import qwfmt, sys; qwfmt.write_stream(0xbb, 400, 2, sys.stdout.buffer)' >"$tmp/b.qwt"

d1=$tmp/d1
expect_status pack 0 qw-pack -T 32 -o "$d1" --val-frac 0.1 --seed 1 --shard-rows 50 "$tmp/a.qwt"
expect_stderr pack_summary '^qw-pack: train: 270 documents, [0-9]+ tokens -> [0-9]+ rows in [0-9]+ shards'
expect_stderr pack_summary_val '^qw-pack: val: 30 documents'
check pack_files test -s "$d1/index.json" -a -s "$d1/train-00000.qwp" -a -s "$d1/train-00001.qwp" -a -s "$d1/val-00000.qwp"

# --inspect agrees with index.json, and rows = (tokens - 1) / T.
expect_status inspect_dir 0 qw-pack --inspect -T 32 "$d1"
cp "$last_out" "$tmp/inspect.txt"
check inspect_rows python3 - "$d1/index.json" "$tmp/inspect.txt" <<'EOF'
import json, re, sys
ix = json.load(open(sys.argv[1]))
rows = [int(x) for x in re.findall(r"^rows: (\d+)$", open(sys.argv[2]).read(), re.M)]
tr, va = ix["splits"]["train"], ix["splits"]["val"]
ok = rows == [tr["rows"], va["rows"]] and tr["rows"] == (tr["tokens"] - 1) // 32 and va["rows"] == (va["tokens"] - 1) // 32
ok = ok and tr["docs"] + va["docs"] == 300 and sum(s["rows"] for s in ix["shards"] if s["split"] == "train") == tr["rows"]
sys.exit(0 if ok else 1)
EOF
expect_status inspect_file 0 qw-pack --inspect "$d1/train-00000.qwp"
check inspect_file_fields grep -Eq '^rows: 50$' "$last_out"
check inspect_file_fields2 grep -Eq '^seq_len: 32 \(rows of 33 tokens\)$' "$last_out"
check inspect_file_fields3 grep -Eq '^padding: 0\.0000$' "$last_out"

# The same seed gives the same bytes; another seed another order; streams
# concatenate.
expect_status determinism_run 0 qw-pack -q -T 32 -o "$tmp/d2" --val-frac 0.1 --seed 1 --shard-rows 50 "$tmp/a.qwt"
check deterministic cmp -s "$d1/train-00001.qwp" "$tmp/d2/train-00001.qwp"
check deterministic_val cmp -s "$d1/val-00000.qwp" "$tmp/d2/val-00000.qwp"
expect_status other_seed_run 0 qw-pack -q -T 32 -o "$tmp/d3" --val-frac 0.1 --seed 2 --shard-rows 50 "$tmp/a.qwt"
check other_seed sh -c '! cmp -s "$1" "$2"' _ "$d1/train-00000.qwp" "$tmp/d3/train-00000.qwp"
cat "$tmp/a.qwt" "$tmp/a.qwt" | qw-pack -T 32 -o "$tmp/d4" 2>"$last_err" >/dev/null
expect_stderr stdin_concatenated '^qw-pack: train: 600 documents'

# SFT rows hold whole documents (or pieces of long ones), then padding.
expect_status sft_pack 0 qw-pack -q -T 48 -o "$tmp/sft" --mode sft --long split --zstd 0 --pad-id 1 "$tmp/a.qwt"
check sft_rows python3 - "$tmp/sft" <<'EOF'
import qwfmt, sys
ix, rows = qwfmt.read_shards(sys.argv[1])
segs = []
for toks, starts, nvalid in rows["train"]:
    b = list(starts) + [nvalid]
    segs += [tuple(toks[b[k]:b[k + 1]]) for k in range(len(starts))]
# documents longer than a row (120 > 49 tokens) are cut into 49 + 49 + 22
want = [tuple(d[k:k + 49]) for d in qwfmt.docs(300, 1) for k in range(0, len(d), 49)]
sys.exit(0 if ix["mode"] == "sft" and sorted(segs) == sorted(want) else 1)
EOF

# Pretrain rows are stride-T cuts of the concatenation; no document has
# tokens in both the training and the validation rows.
expect_status split_pack 0 qw-pack -q -T 16 -o "$tmp/split" --val-frac 0.2 --seed 4 --zstd 0 "$tmp/a.qwt"
check val_split_disjoint python3 - "$tmp/split" <<'EOF'
import qwfmt, sys
ix, rows = qwfmt.read_shards(sys.argv[1])
docs = qwfmt.docs(300, 1)
where = {}                      # 8-gram -> documents holding it
for i, d in enumerate(docs):
    for k in range(len(d) - 7): where.setdefault(tuple(d[k:k + 8]), set()).add(i)
found = {"train": set(), "val": set()}
for sp in rows:
    for toks, starts, nvalid in rows[sp]:
        assert nvalid == 17
        b = list(starts) + [nvalid]
        for k in range(len(starts)):
            if b[k + 1] - b[k] >= 8: found[sp] |= where[tuple(toks[b[k]:b[k] + 8])]
assert found["train"] and found["val"] and ix["splits"]["val"]["docs"] == 60
sys.exit(0 if not found["train"] & found["val"] else 1)
EOF

# Bad input: exit 3 with a clear message.
mkdir "$tmp/empty"
expect_status empty_dir 3 qw-pack --inspect "$tmp/empty"
expect_stderr empty_dir_msg "'.*empty': no index.json"
cp "$d1/train-00000.qwp" "$tmp/corrupt.qwp"
printf '\xff' | dd of="$tmp/corrupt.qwp" bs=1 seek=200 conv=notrunc 2>/dev/null
expect_status corrupt_shard 3 qw-pack --inspect "$tmp/corrupt.qwp"
expect_stderr corrupt_shard_msg "corrupt.qwp': block 0: checksum mismatch"
head -c 1000 "$d1/train-00000.qwp" >"$tmp/short.qwp"
expect_status truncated_shard 3 qw-pack --inspect "$tmp/short.qwp"
expect_stderr truncated_shard_msg "short.qwp': truncated file"
# A byte-level tokenizer.json with the 256 byte tokens and no merges.
python3 - >"$tmp/tokenizer.json" <<'EOF'
import json
bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
cs = bs[:]
for b in range(256):
    if b not in bs:
        bs.append(b); cs.append(256 + len(cs) - 188)
print(json.dumps({"version": "1.0", "added_tokens": [], "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    "decoder": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {chr(c): b for b, c in zip(bs, cs)}, "merges": []}}))
EOF
expect_status other_tokenizer_shard 3 qw-pack --inspect --tokenizer "$tmp/tokenizer.json" "$d1"
expect_stderr other_tokenizer_shard_msg "train-00000.qwp': tokenizer identity 00000000000000aa, expected [0-9a-f]{16}"
expect_status other_tokenizer_option 3 qw-pack -T 32 -o "$tmp/x" --tokenizer "$tmp/tokenizer.json" "$tmp/a.qwt"
expect_stderr other_tokenizer_option_msg "a.qwt': frame 0 at byte 0: tokenizer identity 00000000000000aa, expected"
# --tokenizer takes a directory holding tokenizer.json, as every program does
mkdir "$tmp/tokdir" && cp "$tmp/tokenizer.json" "$tmp/tokdir/"
expect_status tokenizer_dir 3 qw-pack -T 32 -o "$tmp/x" --tokenizer "$tmp/tokdir" "$tmp/a.qwt"
expect_stderr tokenizer_dir_msg "a.qwt': frame 0 at byte 0: tokenizer identity 00000000000000aa, expected"
expect_status tokenizer_dir_inspect 3 qw-pack --inspect --tokenizer "$tmp/tokdir" "$d1"
expect_stderr tokenizer_dir_inspect_msg "train-00000.qwp': tokenizer identity 00000000000000aa, expected [0-9a-f]{16}"
expect_status bad_tokenizer 3 qw-pack -T 32 -o "$tmp/x" --tokenizer "$tmp/a.qwt" "$tmp/a.qwt"
expect_status seq_len_mismatch 3 qw-pack --inspect -T 64 "$d1"
expect_stderr seq_len_mismatch_msg "rows of 33 tokens \(seq-len 32\), expected seq-len 64"
cp -r "$d1" "$tmp/mixed"
qw-pack -q -T 32 -o "$tmp/dB" --shard-rows 50 "$tmp/b.qwt"
cp "$tmp/dB/train-00000.qwp" "$tmp/mixed/train-00000.qwp"
expect_status mixed_dir 3 qw-pack --inspect "$tmp/mixed"
expect_stderr mixed_dir_msg "does not match '.*index.json'"
expect_status other_tokenizer_stream 3 qw-pack -T 32 -o "$tmp/x" "$tmp/a.qwt" "$tmp/b.qwt"
expect_stderr other_tokenizer_stream_msg "b.qwt': frame 0 at byte 0: tokenizer identity"
head -c 100 "$tmp/a.qwt" >"$tmp/short.qwt"
expect_status truncated_stream 3 qw-pack -T 32 -o "$tmp/x" "$tmp/short.qwt"
# A run that fails on its input leaves an earlier run's directory as it
# was; one that fails while writing leaves no index (not a mix of two).
cp -r "$d1" "$tmp/rerun"
expect_status rerun_bad_input 3 qw-pack -T 100000 -o "$tmp/rerun" "$tmp/a.qwt"
check rerun_keeps_index cmp -s "$d1/index.json" "$tmp/rerun/index.json"
mkdir "$tmp/rerun/train-00000.qwp.tmp"
expect_status rerun_write_fails 1 qw-pack -T 32 -o "$tmp/rerun" "$tmp/a.qwt"
check rerun_no_index test ! -e "$tmp/rerun/index.json"
expect_status no_documents 3 qw-pack -T 32 -o "$tmp/x" /dev/null
expect_stderr no_documents_msg "no documents"
expect_status too_few_tokens 3 qw-pack -T 100000 -o "$tmp/x" "$tmp/a.qwt"
expect_stderr too_few_tokens_msg "do not fill a row"
expect_status missing_seq_len 2 qw-pack -o "$tmp/x" "$tmp/a.qwt"
expect_status bad_mode 2 qw-pack -T 8 -o "$tmp/x" --mode foo "$tmp/a.qwt"
expect_status missing_file 1 qw-pack -T 8 -o "$tmp/x" "$tmp/nonexistent.qwt"

# The man page lists exactly the --help options.
help_opts=$(qw-pack --help | grep -oE -- '--[a-z][a-z-]*' | sort -u)
man_opts=$(sed -n '/^\.SH OPTIONS/,/^\.SH EXIT/p' "$QW_SRCDIR/man/man1/qw-pack.1" | grep -oE -- '\\-\\-[a-z][a-z\\-]*' |
           sed 's/\\//g' | sort -u)
check man_options test "$help_opts" = "$man_opts"

# End to end: qw-tokenize a small text, pack it with the tokenizer checked,
# inspect it.  The byte-level tokenizer makes one token per byte, so the
# index must count exactly the bytes of the text.
python3 - "$tmp/text.jsonl" <<'PY'
import json, random, sys
r = random.Random(3)
words = "the a model token row shard pack data train loss of to and in is that it for on with as".split()
with open(sys.argv[1], "w") as f:
    for i in range(200):
        f.write(json.dumps({"text": f"Document {i}: " + " ".join(r.choice(words) for _ in range(r.randrange(5, 80)))}) + "\n")
PY
expect_status e2e_tokenize 0 sh -c 'qw-tokenize -t "$1" --jsonl "$2" >"$3"' _ "$tmp/tokenizer.json" "$tmp/text.jsonl" "$tmp/t.qwt"
expect_status e2e_pack 0 qw-pack -T 64 -o "$tmp/dt" --val-frac 0.1 --tokenizer "$tmp/tokenizer.json" "$tmp/t.qwt"
expect_status e2e_inspect 0 qw-pack --inspect -T 64 --tokenizer "$tmp/tokenizer.json" "$tmp/dt"
check e2e_inspect_vocab grep -q '^vocab_size: 256$' "$last_out"
check e2e_token_count python3 - "$tmp/dt/index.json" "$tmp/text.jsonl" <<'PY'
import json, sys
ix = json.load(open(sys.argv[1]))
nbytes = sum(len(json.loads(l)["text"].encode()) for l in open(sys.argv[2]))
s = ix["splits"]
sys.exit(0 if s["train"]["tokens"] + s["val"]["tokens"] == nbytes and s["val"]["docs"] == 20 else 1)
PY
