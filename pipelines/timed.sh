#!/bin/sh
# timed.sh FILE CMD [ARG...] — run CMD; when it succeeds, append the seconds
# it took (wall clock) as a line to FILE.  The demo's post-training rules
# time their commands with it; demo_report.py sums each file.  Exit status:
# CMD's.
f=$1
shift
s=$(date +%s.%N)
"$@" || exit
awk -v s="$s" -v e="$(date +%s.%N)" 'BEGIN { printf "%.3f\n", e - s }' >>"$f"
