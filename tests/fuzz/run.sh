#!/usr/bin/env bash
# tests/fuzz/run.sh — run fuzz targets (build/fuzz/fuzz_<target>, made by
# `make fuzz-build`) for a while each, several at a time.
#
#   bash tests/fuzz/run.sh [-s SECONDS] [-j JOBS] [-w WORKDIR] [-c CRASHDIR] [TARGET...]
#
# Each target fuzzes for SECONDS (default 30) on one core, JOBS targets at a
# time (default: the number of cores), starting from its seeds and
# regressions in tests/corpus/<target> and from WORKDIR/corpus/<target>
# (default WORKDIR: build/fuzz), where the inputs it finds go and stay for the
# next run.  An input that crashes, leaks, trips a sanitizer, exceeds the
# memory limit or takes over 10 s is saved in CRASHDIR/<target>/ (default
# WORKDIR/crashes); add it to tests/corpus/<target>/ once fixed
# (doc/fuzzing.md).  No TARGET: all of them.
#
# Prints one line per target, in the order given:
#   fuzz TARGET: ok, N runs in S s (R/s), corpus C
#   fuzz TARGET: FAILED: REASON; input saved as FILE; log LOG
# and exits 1 when any target failed.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=30 jobs=$(nproc 2>/dev/null || echo 1) work=$root/build/fuzz crashes=
while getopts s:j:w:c: o; do
    case $o in
    s) seconds=$OPTARG ;;
    j) jobs=$OPTARG ;;
    w) work=$OPTARG ;;
    c) crashes=$OPTARG ;;
    *) echo "usage: $0 [-s SECONDS] [-j JOBS] [-w WORKDIR] [-c CRASHDIR] [TARGET...]" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
crashes=${crashes:-$work/crashes}
if [ $# -eq 0 ]; then
    set -- $(cd "$root/tests/fuzz" && ls fuzz_*.c | sed 's/^fuzz_//; s/\.c$//')
fi
mkdir -p "$work/logs"
# the targets' scratch files, in memory when /dev/shm is there (the config
# target writes through the atomic, fsync'ed path), removed at the end even
# after a crash skipped a process's own clean-up
scratch=$(mktemp -d /dev/shm/qw-fuzz.XXXXXX 2>/dev/null || mktemp -d "$work/scratch.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

# run_one TARGET: fuzz it, leaving its log in $work/logs/TARGET.log.
run_one() {
    local t=$1 bin=$root/build/fuzz/fuzz_$1
    local dict=()
    case $t in tokens | shard) ;; *) dict=(-dict="$root/tests/fuzz/json.dict") ;; esac
    mkdir -p "$work/corpus/$t" "$crashes/$t" "$root/tests/corpus/$t"
    # a slow input is a failure after 10 s; the image target gets 60: a JPEG
    # header of a few bytes may declare ~170 megapixels, which libjpeg really
    # decodes (about 25 s under ASan on 2 cores; a 1.5 kB input found it)
    local slow=10
    [ "$t" = image ] && slow=60
    TMPDIR=$scratch OMP_NUM_THREADS=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        timeout $((seconds + 300)) "$bin" -max_total_time="$seconds" -timeout="$slow" -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$crashes/$t/" "${dict[@]}" \
        "$work/corpus/$t" "$root/tests/corpus/$t" >"$work/logs/$t.log" 2>&1
    echo $? >"$work/logs/$t.status"
}

# report TARGET: the line for it.
report() {
    local t=$1 log=$work/logs/$1.log status runs rate files saved why
    status=$(cat "$work/logs/$t.status" 2>/dev/null || echo 127)
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    files=$(ls "$work/corpus/$t" | wc -l)
    if [ "$status" -eq 0 ] && [ -n "$runs" ]; then
        echo "fuzz $t: ok, $runs runs in $seconds s ($rate/s), corpus $files"
        return 0
    fi
    # a crashed process leaves the OpenMP runtime's registration in /dev/shm
    for pid in $(sed -n 's/^==\([0-9]*\)==.*/\1/p' "$log" | sort -u); do rm -f "/dev/shm/__KMP_REGISTERED_LIB_${pid}_0"; done
    saved=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    why=$(grep -m 1 -E '^==[0-9]+==ERROR|^fuzz: |runtime error:|^SUMMARY|ERROR: libFuzzer' "$log" | head -c 300)
    [ -x "$root/build/fuzz/fuzz_$t" ] || why="no build/fuzz/fuzz_$t (make fuzz-build)"
    echo "fuzz $t: FAILED: ${why:-exit $status}; input saved as ${saved:-nothing}; log $log"
    return 1
}

running=0
for t in "$@"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n
        running=$((running - 1))
    fi
    rm -f "$work/logs/$t.status"
    run_one "$t" &
    running=$((running + 1))
done
wait
failed=0
for t in "$@"; do report "$t" || failed=1; done
exit $failed
