#!/usr/bin/env bash
# test_bench_report.sh — tests/bench/train_report.py (the table and chart of
# make bench-gpu) on the results of the H200 run kept in
# tests/bench/results, and on made-up records: the ratios are those of the
# records, MFU causal is the PaLM MFU with the attention term halved, the
# chart has a bar per result, a later run in the same file replaces the
# earlier, differing step counts or optimizer settings are called out, the
# driver's memory samples become the "GiB used" column, only the timed steps
# of a qw log are counted; and train_torch.py's learning-rate schedule is
# qw-pretrain's (the rates qw-pretrain logs).
. "$QW_SRCDIR/tests/tools/lib.sh"
plan 14
cd "$tmp" || exit 1
report=$QW_SRCDIR/tests/bench/train_report.py
res=$QW_SRCDIR/tests/bench/results/h200-2026-12-04.jsonl
expect_status report_runs 0 python3 "$report" table "$res" --svg chart.svg
python3 "$report" table "$res" --svg chart.svg >table.txt 2>&1
# rows: model, side (one or two words), tok/s, qw/side, MFU, MFU causal, steps, GiB alloc, GiB used, micro
cat >rows.py <<'PY'
import re
def rows(path):
    out = {}
    for l in open(path):
        m = re.match(r"(\S+) +(qw|PyTorch eager|torch\.compile) +(.*)", l)
        if m:
            out[(m[1], m[2])] = m[3].split()
    return out
PY
check table_has_ratios python3 - table.txt "$res" <<'PY'
import json, sys
from rows import rows
t = rows(sys.argv[1])
recs = [json.loads(l) for l in open(sys.argv[2])]
for m in ("qwen3-0.6b", "qwen3-1.7b"):
    q = [r for r in recs if r.get("model") == m and r.get("impl") == "qw"][-1]["tok_per_s"]
    c = [r for r in recs if r.get("model") == m and r.get("mode") == "compile"][-1]["tok_per_s"]
    assert t[(m, "torch.compile")][1] == f"{q / c:.2f}", (t[(m, "torch.compile")], q / c)
PY
check table_mfu_causal_halves_attention python3 - table.txt "$res" "$QW_SRCDIR/pipelines/configs" <<'PY'
import json, sys
from rows import rows
t = rows(sys.argv[1])
recs = [json.loads(l) for l in open(sys.argv[2])]
for r in recs:
    if "tok_per_s" not in r:
        continue
    c = json.load(open(f"{sys.argv[3]}/{r['model']}.json"))
    att = 12 * c["num_hidden_layers"] * c["num_attention_heads"] * c["head_dim"] * r["seq"]
    full = [x for x in recs if x.get("model") == r["model"] and "flops_per_token" in x][0]["flops_per_token"]
    want = r["tok_per_s"] * (full - att / 2) / 989.4e12
    side = "qw" if r["impl"] == "qw" else {"eager": "PyTorch eager", "compile": "torch.compile"}[r["mode"]]
    row = t[(r["model"], side)]
    assert row[2] == f"{100 * r['mfu']:.1f}%" and row[3] == f"{100 * want:.1f}%", (row, want)
PY
check table_steps_agree sh -c '! grep -q "steps differ" table.txt && grep -c " 2+5 " table.txt | grep -qx 6'
check chart_has_a_bar_per_result python3 - chart.svg <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
bars = [e for e in root.iter("{http://www.w3.org/2000/svg}rect") if float(e.get("height", 0)) > 10 and e.get("width") != "10"]
assert len(bars) == 6 + 1, len(bars)   # 2 models x 3 sides, plus the background
PY
# a second run appended to the file: only its records are reported
{ cat "$res"; echo '{"run":"later"}'; echo '{"model":"m","impl":"qw","mode":"bf16","tok_per_s":2000,"mfu":0.1,"warmup":2,"steps":5}';
  echo '{"model":"m","impl":"torch","mode":"compile","tok_per_s":1000,"mfu":0.05,"warmup":3,"steps":10,"optim":{"lr":0.001}}'; } >two.jsonl
python3 "$report" table two.jsonl >two.txt 2>&1
check later_run_replaces sh -c '! grep -q qwen3-0.6b two.txt && grep -q "^m  *torch.compile  *1.0k  *2.00 " two.txt'
check steps_differ_named grep -q "m: warm-up + timed steps differ: qw 2+5, torch.compile 3+10" two.txt
check optim_differs_named grep -q "m: optimizer settings differ" two.txt

# the driver's samples: peak minus the value before
printf '512\n9000\n20992\n17000\n' >mem.txt
echo '{"model":"m","impl":"qw","mode":"bf16","tok_per_s":2000,"mfu":0.1,"mem_peak_bytes":17179869184}' |
    python3 "$report" used --samples mem.txt --baseline 512 >used.json
check used_peak_minus_baseline python3 -c 'import json,sys; r = json.load(open(sys.argv[1]))
assert r["mem_used_peak_bytes"] == (20992 - 512) * 2**20 and r["mem_used_samples"] == 4, r' used.json
echo '{"model":"m","impl":"qw"}' | python3 "$report" used --samples missing.txt --baseline 0 >none.json
check used_no_samples_no_field python3 -c 'import json,sys; assert "mem_used_peak_bytes" not in json.load(open(sys.argv[1]))' none.json
{ echo '{"run":"x"}'; cat used.json; } >three.jsonl
python3 "$report" table three.jsonl >three.txt 2>&1
check table_gib_used python3 - three.txt <<'PY'
import sys
from rows import rows
row = rows(sys.argv[1])[("m", "qw")]
assert row[5:7] == ["16.0", "20.0"], row   # GiB alloc, GiB used
PY

# qw's record: steps warmup+1 .. warmup+steps of the log, no more
cfg=$QW_SRCDIR/pipelines/configs/demo-dense.json
python3 -c 'import json
for s in range(1, 10):
    print(json.dumps({"step": s, "loss": 10.0 - s, "lr": 1e-3, "tok_per_s": 1000.0 * s, "mem_peak_bytes": 5}))' >log.jsonl
python3 "$report" qw --config "$cfg" --log log.jsonl --warmup 2 --steps 5 --batch 4 --seq 128 --micro 4 --status 0 >qw.json
check qw_record_timed_steps_only python3 -c 'import json,sys; r = json.load(open(sys.argv[1]))
assert r["steps"] == 5 and r["tok_per_s"] == 5000.0 and len(r["step_ms"]) == 5 and "error" not in r, r
assert r["loss_first_last"] == [9.0, 3.0] and "mfu_causal" in r, r' qw.json

# train_torch.py's schedule against the rates qw-pretrain logs (warmup 2 of 10, cosine to 0.1)
python3 "$QW_SRCDIR/tests/tools/gen_stream.py" 00000000c0ffee05 256 200 1 >a.qwt
qw-pack -q -T 32 -o data a.qwt
expect_status lr_run 0 qw-pretrain --config "$cfg" --data data -T 32 --batch-tokens 64 --steps 10 --warmup 2 \
    --lr 1e-3 --min-lr-ratio 0.1 --threads 1 -q --out ck --log lr.jsonl
check torch_schedule_is_qws python3 - lr.jsonl "$QW_SRCDIR/tests/bench" <<'PY'
import json, sys
sys.dont_write_bytecode = True
sys.path.insert(0, sys.argv[2])
from train_torch import lr_factor
got = [r["lr"] for r in map(json.loads, open(sys.argv[1])) if "loss" in r]
want = [1e-3 * lr_factor(i, 2, 10, 0.1) for i in range(10)]
assert len(got) == 10 and all(abs(g - w) <= 1e-9 for g, w in zip(got, want)), (got, want)
PY
