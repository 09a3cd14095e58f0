#!/usr/bin/env bash
# test_bench_report.sh — tests/bench/train_report.py (the table and chart of
# make bench-gpu) on the results of the H200 run kept in
# tests/bench/results: the ratios are those of the records, the chart has a
# bar per result, and a later run in the same file replaces the earlier.
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 4
cd "$tmp" || exit 1
report=$QW_SRCDIR/tests/bench/train_report.py
res=$QW_SRCDIR/tests/bench/results/h200-2026-11-28.jsonl
expect_status report_runs 0 python3 "$report" table "$res" --svg chart.svg
python3 "$report" table "$res" --svg chart.svg >table.txt 2>&1
check table_has_ratios python3 - table.txt "$res" <<'PY'
import json, sys
rows = {l.split()[0]: l.split() for l in open(sys.argv[1]) if l.startswith("qwen3")}
recs = [json.loads(l) for l in open(sys.argv[2])]
for m in ("qwen3-0.6b", "qwen3-1.7b"):
    q = [r for r in recs if r.get("model") == m and r.get("impl") == "qw"][-1]["tok_per_s"]
    c = [r for r in recs if r.get("model") == m and r.get("mode") == "compile"][-1]["tok_per_s"]
    assert rows[m][4] == f"{q / c:.2f}", (rows[m], q / c)
PY
check chart_has_a_bar_per_result python3 - chart.svg <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
bars = [e for e in root.iter("{http://www.w3.org/2000/svg}rect") if float(e.get("height", 0)) > 10 and e.get("width") != "10"]
assert len(bars) == 6 + 1, len(bars)   # 2 models x 3 sides, plus the background
PY
# a second run appended to the file: only its records are reported
{ cat "$res"; echo '{"run":"later"}'; echo '{"model":"m","impl":"qw","mode":"bf16","tok_per_s":2000,"mfu":0.1}';
  echo '{"model":"m","impl":"torch","mode":"compile","tok_per_s":1000,"mfu":0.05}'; } >two.jsonl
python3 "$report" table two.jsonl >two.txt 2>&1
check later_run_replaces sh -c '! grep -q qwen3-0.6b two.txt && grep -q "^ *m .* 2.00 " two.txt'
