#!/usr/bin/env bash
# test_fuzz.sh — the fuzz smoke of `make test` (doc/fuzzing.md): build the
# fuzz targets (clang with libFuzzer is required: without it this fails),
# replay every file of tests/corpus/<target>/ (the seeds, and the inputs
# that once crashed: each must pass), then fuzz each target for
# QW_FUZZ_SECONDS (default 30) seconds, as many at a time as there are
# cores.  Each fuzzing case reports its runs and runs per second; an input
# that fails is kept in build/fuzz/crashes/<target>/.
source "$(dirname "$0")/lib.sh"
plan 28
targets="tokens shard index st config tokenizer jsonl chat state gen image pref prompts"
seconds=${QW_FUZZ_SECONDS:-30}
cd "$QW_SRCDIR" || exit 1
export TMPDIR=$tmp   # what a crashed target leaves goes with $tmp

listed=$(ls tests/fuzz/fuzz_*.c | sed 's|.*/fuzz_||; s|\.c$||' | sort | tr '\n' ' ')
want=$(printf '%s\n' $targets | sort | tr '\n' ' ')
check "every target is fuzzed here" [ "$listed" = "$want" ]

if ! command -v "${FUZZ_CC:-clang}" >/dev/null; then
    fail "fuzz-build" "no ${FUZZ_CC:-clang}: the fuzz targets need clang with libFuzzer (.ci/setup installs them)"
elif make -j"$(nproc)" fuzz-build >"$tmp/build.log" 2>&1; then
    pass "fuzz-build"
else
    fail "fuzz-build" "make fuzz-build failed (clang and libFuzzer are needed: .ci/setup installs them): $(tail -c 600 "$tmp/build.log")"
fi

for t in $targets; do
    files=(tests/corpus/$t/*)
    if [ ! -e "${files[0]}" ]; then
        fail "replay $t" "tests/corpus/$t is empty"
    elif build/fuzz/fuzz_$t "${files[@]}" >"$tmp/replay-$t.log" 2>&1; then
        pass "replay $t (${#files[@]} files)"
    else
        fail "replay $t" "$(grep '^Running: ' "$tmp/replay-$t.log" | tail -n 1): $(grep -m 1 -E 'ERROR|^fuzz: |runtime error' "$tmp/replay-$t.log")"
    fi
done

bash tests/fuzz/run.sh -s "$seconds" -j "$(nproc)" -w "$tmp/work" -c build/fuzz/crashes $targets >"$tmp/run.out" 2>&1
for t in $targets; do
    line=$(grep "^fuzz $t: " "$tmp/run.out")
    case $line in
    "fuzz $t: ok, "*) pass "fuzz $t: ${line#fuzz $t: ok, }" ;;
    *) fail "fuzz $t" "${line:-no result: $(tail -c 400 "$tmp/run.out")}" ;;
    esac
done
