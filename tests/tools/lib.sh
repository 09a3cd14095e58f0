# tests/tools/lib.sh — sourced by every tests/tools/test_*.sh.
#
#   plan N                      this file runs exactly N cases (call it once,
#                               right after sourcing lib.sh; N is a number
#                               written in the file, not computed from data)
#   check NAME CMD...           pass if CMD succeeds
#   expect_status NAME N CMD... run CMD, pass if it exits N
#   expect_stderr NAME RE       the last expect_status's stderr matches RE
#                               (grep -E; make RE specific to the message)
#   pass NAME / fail NAME MSG   record a case by hand
#
# Every case is one "PASS name" or "FAIL name: why" line on stdout (a helper
# in Python or another language may print such lines itself).  tests/run.sh
# counts them and fails the file unless it printed exactly one "PLAN N" line
# and N case lines: a file that stops early, skips a loop or loses its input
# data fails even when every case it ran passed.  When you add or remove a
# case, change N.  Run one file the way the suite does (plan checked):
#     bash tests/run.sh tests/tools/test_foo.sh
#
# $tmp is a fresh directory removed at exit; $QW_SRCDIR is the repository.
set -u
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
last_err=$tmp/.stderr
last_out=$tmp/.stdout

plan() {
    case ${1:-} in ''|0*|*[!0-9]*) echo "FAIL plan: 'plan ${1:-}': give a positive case count"; return ;; esac
    echo "PLAN $1"
}
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
