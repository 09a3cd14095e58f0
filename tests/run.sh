#!/usr/bin/env bash
# tests/run.sh [unit | tools | FILE...] — run the CPU test suite and print one
# closing line "N passed, N failed".
#
# Unit tests: every build/tests/test_* binary (tests/unit/test_*.c over
# tests/unit/qwtest.h).  Tool tests: every tests/tools/test_*.sh, a bash
# script that sources tests/tools/lib.sh.  FILE...: only these (a
# tests/tools/test_*.sh or a build/tests/test_* binary), checked the same way:
#     bash tests/run.sh tests/tools/test_pretrain.sh build/tests/test_optim
#
# Every test file runs a known number of cases; the rule all of them follow:
#   - a case prints one line on stdout: "PASS name" or "FAIL name: why";
#   - the file declares its case count once, before its first case, as a
#     number written in the file (not counted from its fixtures, so that an
#     emptied fixture fails):
#         C (qwtest.h):    PLAN(12);  first in main()
#         shell (lib.sh):  plan 12    right after sourcing lib.sh
#     either prints "PLAN 12";
#   - the runner fails the file (one more failed case, with the reason) when
#     it printed no PLAN line or several, when its PASS and FAIL lines do not
#     add up to the plan (it crashed, exited early, or a loop ran short), or
#     when it exited non-zero without a FAIL line.
# Adding a case to a file means raising its plan by one.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
export QW_SRCDIR=$root
export QW_BIN=${QW_BIN:-$root/bin}
export PATH=$QW_BIN:$PATH
what=${1:-all}
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
passed=0 failed=0
failures=()

count() {   # count <name> <output file> <exit status>
    local p f n planned why=
    p=$(grep -c '^PASS ' "$2")
    f=$(grep -c '^FAIL ' "$2")
    n=$(grep -c '^PLAN ' "$2")
    planned=$(sed -n 's/^PLAN \([1-9][0-9]*\)$/\1/p' "$2" | head -n 1)
    if [ "$n" -ne 1 ] || [ -z "$planned" ]; then
        why="printed $n PLAN lines; give its case count once (plan N in lib.sh, PLAN(N) in qwtest.h)"
    elif [ $((p + f)) -ne "$planned" ]; then
        why="planned $planned cases, ran $((p + f))"
    elif [ "$3" -ne 0 ] && [ "$f" -eq 0 ]; then
        why="exited $3"
    fi
    if [ -n "$why" ]; then
        f=$((f + 1)); echo "FAIL $1 ($why)" >>"$2"
    fi
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$f" -gt 0 ]; then failures+=("$1"); fi
    printf '%-40s %3d passed, %d failed\n' "$1" "$p" "$f"
}

run_unit() {   # run_unit <binary>
    local name=unit/$(basename "$1") out=$log/unit-$(basename "$1").out
    (cd "$root" && "$1") >"$out" 2>&1
    count "$name" "$out" $?
}

run_tool() {   # run_tool <script>
    local name=tools/$(basename "$1" .sh) out=$log/tools-$(basename "$1" .sh).out
    (cd "$root" && bash "$1") >"$out" 2>&1
    count "$name" "$out" $?
}

case $what in
all | unit | tools)
    if [ "$what" = all ] || [ "$what" = unit ]; then
        for t in "$root"/build/tests/test_*; do
            [ -x "$t" ] && run_unit "$t"
        done
    fi
    if [ "$what" = all ] || [ "$what" = tools ]; then
        for t in "$root"/tests/tools/test_*.sh; do
            [ -e "$t" ] && run_tool "$t"
        done
    fi
    ;;
*)
    for t in "$@"; do
        t=$(cd "$(dirname "$t")" && pwd)/$(basename "$t")
        case $t in
        *.sh) run_tool "$t" ;;
        *) if [ -x "$t" ]; then run_unit "$t"; else echo "tests/run.sh: '$t': not a test file" >&2; exit 2; fi ;;
        esac
    done
    ;;
esac
for f in "${failures[@]+"${failures[@]}"}"; do
    echo "---- $f"
    grep -v '^PASS \|^PLAN ' "$log/${f%%/*}-${f#*/}.out" | tail -n 60
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ $((passed + failed)) -gt 0 ]
