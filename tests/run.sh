#!/usr/bin/env bash
# tests/run.sh [unit|tools] — run the CPU test suite and print one closing
# line "N passed, N failed".
#
# Unit tests: every build/tests/test_* binary; each prints PASS/FAIL lines.
# Tool tests: every tests/tools/test_*.sh; each is a bash script that sources
# tests/tools/lib.sh and reports its cases through `pass`/`fail`.
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
    local p f
    p=$(grep -c '^PASS ' "$2")
    f=$(grep -c '^FAIL ' "$2")
    if [ "$3" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1; echo "FAIL $1 (exited $3)" >>"$2"
    fi
    passed=$((passed + p)); failed=$((failed + f))
    if [ "$f" -gt 0 ]; then failures+=("$1"); fi
    printf '%-40s %3d passed, %d failed\n' "$1" "$p" "$f"
}

if [ "$what" = all ] || [ "$what" = unit ]; then
    for t in "$root"/build/tests/test_*; do
        [ -x "$t" ] || continue
        name=unit/$(basename "$t")
        out=$log/$(basename "$t").out
        (cd "$root" && "$t") >"$out" 2>&1
        count "$name" "$out" $?
    done
fi
if [ "$what" = all ] || [ "$what" = tools ]; then
    for t in "$root"/tests/tools/test_*.sh; do
        [ -e "$t" ] || continue
        name=tools/$(basename "$t" .sh)
        out=$log/$(basename "$t").out
        (cd "$root" && bash "$t") >"$out" 2>&1
        count "$name" "$out" $?
    done
fi
for f in "${failures[@]+"${failures[@]}"}"; do
    echo "---- $f"
    base=${f#*/}
    grep -v '^PASS ' "$log/$base"*.out | tail -n 60
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
