# tests/tools/lib.sh — sourced by every tests/tools/test_*.sh.
#
#   expect_status N CMD...      run CMD, pass if it exits N
#   expect_stderr RE            the last command's stderr matches RE (grep -E)
#   pass NAME / fail NAME MSG   record a case by hand
#
# $tmp is a fresh directory removed at exit; $QW_SRCDIR is the repository.
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
last_err=$tmp/.stderr
last_out=$tmp/.stdout

pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: ${2:-}"; }

# check NAME CONDITION-COMMAND...: pass if the command succeeds.
check() {
    local name=$1; shift
    if "$@"; then pass "$name"; else fail "$name" "$*"; fi
}

# expect_status NAME N CMD...: run CMD with stdout/stderr captured.
expect_status() {
    local name=$1 want=$2; shift 2
    "$@" >"$last_out" 2>"$last_err"
    local got=$?
    if [ "$got" -eq "$want" ]; then pass "$name"
    else fail "$name" "exit $got, expected $want: $* :: $(head -c 400 "$last_err")"; fi
}

# expect_stderr NAME REGEX: the last expect_status's stderr matches.
expect_stderr() {
    if grep -Eq -- "$2" "$last_err"; then pass "$1"
    else fail "$1" "stderr '$(head -c 400 "$last_err")' does not match /$2/"; fi
}
