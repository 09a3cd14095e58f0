#!/usr/bin/env bash
# tests/bench/tokenize_train.sh — BPE training speed against HF tokenizers'
# BpeTrainer (Rust, via tests/tools/hf_check_trained.js) on the same text,
# merges compared.
#
# QW_BENCH_MB (default 100) MB of generated text: a Zipf-distributed
# vocabulary of 150k made-up words (with some accented, Cyrillic, Greek and
# CJK ones), capitals, numbers and punctuation, in lines of 60-120
# characters with no blank lines and no leading spaces, so that splitting
# the file into lines (as HF's trainer reads it) or not (as qw-tokenize
# reads a text file) gives the same pre-tokens.
#
# The Node binding can only train with BpeTrainer's defaults (vocab_size
# 30000 counting the characters seen, min_frequency 0).  So ours runs twice:
# with the vocabulary that makes exactly HF's number of merges (256 bytes +
# HF's merges + 26 specials, --min-frequency 1), whose merges must be
# identical to HF's, and with QW_BENCH_VOCAB (default 32768).  Both sides
# use all cores.  HF's time is the time inside train() only; ours is the
# whole qw-tokenize process (reading, counting, learning, writing the JSON).
# Prints seconds, the ratio to HF and peak RSS.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
PATH=${QW_BIN:-$root/bin}:$PATH
mb=${QW_BENCH_MB:-100}
vocab=${QW_BENCH_VOCAB:-32768}
hf="node $root/tests/tools/hf_check_trained.js"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! command -v qw-tokenize >/dev/null; then
    echo "tokenize_train.sh: qw-tokenize is not built" >&2
    exit 1
fi

timed() {   # timed CMD...: prints "seconds peak_kB"
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null
        cat "$work/time"
    else
        local t0 t1
        t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N)
        echo "$(echo "$t1 - $t0" | bc) ?"
    fi
}

echo "generating $mb MB of text" >&2
python3 - "$((mb * 1000000))" >"$work/corpus.txt" <<'EOF'
import random, sys
r = random.Random(1)
onset = ["", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w",
         "z", "br", "ch", "cl", "dr", "gr", "pl", "pr", "sh", "st", "str", "th", "tr"]
nucleus = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "io", "ou", "y", "é", "ö", "å"]
coda = ["", "", "n", "r", "s", "t", "l", "m", "nd", "ng", "rt", "st", "ck", "x"]
suffix = ["", "", "", "s", "ed", "ing", "ly", "er", "tion", "ness", "ment"]
foreign = ["Привет", "мир", "язык", "中文", "测试", "日本語", "こんにちは", "Ελλάδα", "κόσμε",
           "naïve", "Straße"]
lex = set()
while len(lex) < 150000:
    w = "".join(r.choice(onset) + r.choice(nucleus) + r.choice(coda)
                for _ in range(r.choice([1, 1, 2, 2, 2, 3, 3, 4])))
    lex.add(w + r.choice(suffix))
lex = sorted(lex)
r.shuffle(lex)
lex[50:50] = foreign
cum, t = [], 0.0
for i in range(len(lex)):
    t += 1.0 / (i + 2.7) ** 1.07
    cum.append(t)
punct = [",", ",", ".", ".", ".", ";", ":", "!", "?", " -", "'s"]
want, done = int(sys.argv[1]), 0
while done < want:
    parts, line = [], 0
    for w in r.choices(lex, cum_weights=cum, k=4000):
        x = r.random()
        if x < 0.08: w = w.capitalize()
        elif x < 0.09: w = str(r.randint(0, 99999))
        elif x < 0.095: w = "(" + w + ")"
        parts.append(w)
        line += len(w) + 1
        y = r.random()
        if line > 60 + r.randint(0, 60) and y < 0.3:
            parts.append(r.choice(punct[:5]) + "\n")
            line = 0
        elif y < 0.12:
            parts.append(r.choice(punct) + " ")
        else:
            parts.append(" ")
    b = "".join(parts).replace(" \n", "\n").encode()
    sys.stdout.buffer.write(b)
    done += len(b)
EOF
bytes=$(stat -c %s "$work/corpus.txt")

# HF needs a tokenizer.json with our normalizer and pre-tokenizer to train
# from: take it from a small run of ours.
head -c 100000 "$work/corpus.txt" >"$work/small.txt"
qw-tokenize --train -q --vocab-size 300 -o "$work/template" "$work/small.txt"

echo "HF BpeTrainer" >&2
read -r hf_wall hf_rss < <(timed $hf train "$work/template/tokenizer.json" "$work/corpus.txt" "$work/hf.json" 2>"$work/hf.err"; tail -n 1 "$work/hf.err" >&2)
hf_train=$(tail -n 1 "$work/hf.err")
read -r alpha hf_merges < <($hf size "$work/hf.json")
same=$((256 + hf_merges + 26))

runs=()
for v in "$same" "$vocab"; do
    echo "qw-tokenize --train --vocab-size $v --min-frequency 1" >&2
    read -r w r < <(timed qw-tokenize --train -q --vocab-size "$v" --min-frequency 1 -o "$work/ours$v" "$work/corpus.txt")
    runs+=("qw-tokenize --train --vocab-size $v|$w|$r|$work/ours$v/tokenizer.json")
done

printf '%-40s %8s %7s %8s  %s\n' what seconds 'x HF' 'peak MB' merges
printf '%-40s %8.2f %7s %8s  %s\n' "HF BpeTrainer train() (vocab 30000)" "$hf_train" 1.00 - "$hf_merges"
printf '%-40s %8.2f %7s %8s  %s\n' "HF process" "$hf_wall" \
    "$(python3 -c "print(f'{$hf_train / $hf_wall:.2f}')")" "$((hf_rss / 1024))" -
mismatch=()
for run in "${runs[@]}"; do
    IFS='|' read -r what w r tj <<<"$run"
    cmp_msg=$($hf compare "$work/hf.json" "$tj" 2>&1) || mismatch+=("$what")
    rss=$r; [ "$r" != '?' ] && rss=$((r / 1024))
    printf '%-40s %8.2f %7s %8s  %s\n' "$what" "$w" "$(python3 -c "print(f'{$hf_train / $w:.2f}')")" "$rss" "$cmp_msg"
done
echo "$((bytes / 1000000)) MB of text, $alpha distinct bytes, $(nproc) cores" >&2
# the timings mean nothing if the merges differ from HF's: fail
if [ ${#mismatch[@]} -gt 0 ]; then
    echo "tokenize_train.sh: merges differ from HF: ${mismatch[*]}" >&2
    exit 1
fi
