#!/usr/bin/env python3
"""train_report.py — the bookkeeping of tests/bench/train_cuda.sh (stdlib only).

    train_report.py qw --config FILE --log METRICS.jsonl --warmup W --steps S --batch B
                       --seq T --micro M --status RC [--optim JSON] [--stderr FILE] [--note TEXT]
        one JSON line for a qw-pretrain run: the steps W+1 … W+S of the log
        are the timed ones (a run killed late may log more; they are left
        out); tok_per_s (median of their tok_per_s; tok_per_s_mean: all
        their tokens over all their time), mfu and mfu_causal by
        train_torch.flops_per_token (the same formula as the PyTorch side),
        mem_peak_bytes (the largest "mem_peak_bytes" logged: every cudaMalloc
        of qw's backend at its peak), the first and last learning rates, or
        "error"
    train_report.py error --model NAME --impl IMPL --mode MODE --error TEXT [--stderr FILE]
        one JSON line for a part that gave no result
    train_report.py used --samples FILE --baseline MIB  < RECORD
        the record (one JSON line) with mem_used_peak_bytes added: the
        largest of the driver's memory.used samples in FILE (MiB, one a
        line, as `nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits
        -lms 200` writes them) minus BASELINE, the value before the part
        started; unchanged when FILE has no samples
    train_report.py table RESULTS.jsonl [--svg FILE]
        the comparison table of the latest run (the records after the last
        {"run": ...} line): per model, the last record of each side, one row
        a side; notes where the sides' step counts or optimizer settings
        differ; with --svg also a bar chart of tokens/s per model and side

MFU is the PaLM convention: (6·N + 12·L·nh·d·T) FLOPs per token over 989.4
TFLOP/s (N: the matmul parameters a token uses; the attention term counts
all T keys of every query); "MFU causal" halves the attention term
(6·L·nh·d·T), the query-key pairs a causal kernel computes.
"""
import argparse
import json
import math
import os
import statistics
import sys

sys.dont_write_bytecode = True   # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_torch import PEAK_FLOPS, flops_per_token  # noqa: E402


def last_line(path):
    try:
        with open(path, errors="replace") as f:
            lines = [l.strip() for l in f if l.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def qw_record(a):
    with open(a.config) as f:
        cfg = json.load(f)
    rec = {"model": os.path.splitext(os.path.basename(a.config))[0], "impl": "qw", "mode": "bf16",
           "batch": a.batch, "seq": a.seq, "micro_batch": a.micro, "warmup": a.warmup}
    if a.optim:
        rec["optim"] = json.loads(a.optim)
    steps = []
    try:
        with open(a.log) as f:
            steps = [r for r in map(json.loads, f) if "loss" in r]
    except (OSError, ValueError):
        pass
    timed = [r for r in steps if a.warmup < r["step"] <= a.warmup + a.steps]
    rec["steps"] = len(timed)
    if timed:
        tps = [r["tok_per_s"] for r in timed]
        tokens = a.batch * a.seq
        rec["tok_per_s"] = round(statistics.median(tps), 1)
        rec["tok_per_s_mean"] = round(tokens * len(tps) / sum(tokens / t for t in tps), 1)
        rec["mfu"] = round(rec["tok_per_s"] * flops_per_token(cfg, a.seq) / PEAK_FLOPS, 4)
        rec["mfu_causal"] = round(rec["tok_per_s"] * flops_per_token(cfg, a.seq, causal=True) / PEAK_FLOPS, 4)
        rec["step_ms"] = [round(tokens / t * 1e3, 1) for t in tps]
        rec["loss_first_last"] = [steps[0]["loss"], timed[-1]["loss"]]
        rec["lr_first_last"] = [steps[0].get("lr"), timed[-1].get("lr")]
    peaks = [r["mem_peak_bytes"] for r in steps if "mem_peak_bytes" in r]
    if peaks:
        rec["mem_peak_bytes"] = max(peaks)
    notes = [a.note] if a.note else []
    if len(timed) < a.steps:
        why = last_line(a.stderr) if a.stderr else ""
        what = f"exit {a.status}, {len(steps)} steps logged, {a.warmup} + {a.steps} wanted" + (f": {why}" if why else "")
        if timed:
            notes.append(what)
        else:
            rec["error"] = what
    if notes:
        rec["note"] = "; ".join(notes)
    return rec


def used_record(a):
    """A record from stdin with the driver's peak memory.used added."""
    rec = json.loads(sys.stdin.read().strip().splitlines()[-1])
    samples = []
    try:
        with open(a.samples) as f:
            for line in f:
                try:
                    samples.append(float(line.strip()))
                except ValueError:
                    pass
    except OSError:
        pass
    if samples:
        rec["mem_used_peak_bytes"] = int((max(samples) - a.baseline) * 2**20)
        rec["mem_used_samples"] = len(samples)
    return rec


def error_record(a):
    rec = {"model": a.model, "impl": a.impl, "mode": a.mode, "error": a.error}
    why = last_line(a.stderr) if a.stderr else ""
    if why:
        rec["error"] += f": {why}"
    return rec


def gib(x):
    return f"{x / 2**30:.1f}" if x else "-"


def latest(path):
    """The latest run of a results file: the models in order, and per
    (model, "qw"|"eager"|"compile") its last record."""
    last = {}
    order = []
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if "run" in r:
                last, order = {}, []
            if "model" not in r:
                continue
            if r.get("model") not in order:
                order.append(r.get("model"))
            key = "qw" if r.get("impl") == "qw" else r.get("mode")
            last[(r.get("model"), key)] = r
    return order, last


SIDES = (("qw", "qw", "#2a6fdb"), ("eager", "PyTorch eager", "#b0b0b0"), ("compile", "torch.compile", "#707070"))


def bars_svg(order, last, path):
    """Grouped bars: tokens/s of each side per model, qw's ratio to
    torch.compile above its bar."""
    W, H, left, bottom, top = 640, 380, 70, 40, 70
    group = (W - left - 20) / max(len(order), 1)
    tps = lambda r: r.get("tok_per_s") if r and "error" not in r else None
    high = max([tps(r) or 0 for r in last.values()] + [1]) * 1.12   # room for the labels
    step = 10 ** math.floor(math.log10(high / 4))
    step *= next(f for f in (1, 2, 5, 10) if high / (f * step) <= 5)
    ticks = int(math.ceil(high / step))
    peak = ticks * step
    y = lambda v: H - bottom - (H - bottom - top) * v / peak
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">training tokens/s, one H200, T 4096</text>',
           f'<line x1="{left}" y1="{H - bottom}" x2="{W - 10}" y2="{H - bottom}" stroke="black"/>']
    for k in range(ticks + 1):
        v = step * k
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v / 1e3:.0f}k</text>')
        out.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{W - 10}" y2="{y(v):.1f}" stroke="#eee"/>')
    bw = group / (len(SIDES) + 1)
    for gi, m in enumerate(order):
        x0 = left + gi * group + bw / 2
        for si, (key, label, colour) in enumerate(SIDES):
            v = tps(last.get((m, key)))
            if not v:
                continue
            x = x0 + si * bw
            out.append(f'<rect x="{x:.1f}" y="{y(v):.1f}" width="{bw * 0.9:.1f}" height="{H - bottom - y(v):.1f}" fill="{colour}"/>')
            out.append(f'<text x="{x + bw * 0.45:.1f}" y="{y(v) - 4:.1f}" text-anchor="middle">{v / 1e3:.1f}k</text>')
        q, c = tps(last.get((m, "qw"))), tps(last.get((m, "compile")))
        if q and c:
            out.append(f'<text x="{x0 + bw * 0.45:.1f}" y="{y(q) - 18:.1f}" text-anchor="middle" font-weight="bold">'
                       f'{q / c:.2f}×</text>')
        out.append(f'<text x="{x0 + 1.5 * bw:.1f}" y="{H - bottom + 18}" text-anchor="middle">{m}</text>')
    for si, (key, label, colour) in enumerate(SIDES):
        lx = left + 10 + si * 150
        out.append(f'<rect x="{lx}" y="34" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{lx + 14}" y="43">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def config_flops(model, seq, causal):
    """flops_per_token of pipelines/configs/MODEL.json, for records that
    predate their mfu_causal field; None when there is no such config."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "pipelines", "configs", model + ".json")
    try:
        with open(path) as f:
            return flops_per_token(json.load(f), seq, causal)
    except (OSError, ValueError, KeyError):
        return None


def mfu_causal(r):
    if "mfu_causal" in r:
        return r["mfu_causal"]
    fl = config_flops(r.get("model", ""), r.get("seq", 4096), True)
    return r["tok_per_s"] * fl / PEAK_FLOPS if fl else None


def table(path, svg=None):
    order, last = latest(path)
    if svg:
        bars_svg(order, last, svg)
    head = ("model", "side", "tok/s", "qw/side", "MFU", "MFU causal", "steps", "GiB alloc", "GiB used", "micro")
    rows = [head]
    notes = []
    tps = lambda r: r.get("tok_per_s") if r and "error" not in r else None
    pct = lambda x: f"{100 * x:.1f}%" if x is not None else "-"
    for m in order:
        q = last.get((m, "qw"), {})
        sides = [(key, label, last.get((m, key))) for key, label, _ in SIDES]
        for key, label, r in sides:
            if r is None:
                continue
            ok = tps(r) is not None
            rows.append((m, label, f"{r['tok_per_s'] / 1e3:.1f}k" if ok else "ERR",
                         f"{tps(q) / tps(r):.2f}" if ok and tps(q) and key != "qw" else "-",
                         pct(r.get("mfu")) if ok else "-", pct(mfu_causal(r)) if ok else "-",
                         f"{r['warmup']}+{r['steps']}" if "warmup" in r and "steps" in r else "-",
                         gib(r.get("mem_peak_bytes" if key == "qw" else "peak_alloc_bytes")),
                         gib(r.get("mem_used_peak_bytes")), str(r.get("micro_batch", "-"))))
            if "error" in r:
                notes.append(f"{m} {label}: {r['error']}")
            elif r.get("note"):
                notes.append(f"{m} {label}: {r['note']}")
        done = [(label, r) for _, label, r in sides if r and tps(r)]
        counts = {(r.get("warmup"), r.get("steps")) for _, r in done}
        if len(counts) > 1:
            notes.append(f"{m}: warm-up + timed steps differ: " +
                         ", ".join(f"{label} {r.get('warmup')}+{r.get('steps')}" for label, r in done))
        optims = {json.dumps(r["optim"], sort_keys=True) for _, r in done if "optim" in r}
        if len(optims) > 1 or (optims and any("optim" not in r for _, r in done)):
            notes.append(f"{m}: optimizer settings differ between the sides")
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    for r in rows:
        print("  ".join(str(v).ljust(w) if i < 2 else str(v).rjust(w) for i, (v, w) in enumerate(zip(r, widths))))
    print("tok/s: batch tokens over the median timed step (steps: warm-up + timed); qw/side: qw's tok/s over that side's")
    print("MFU: PaLM convention, (6·N + 12·L·nh·d·T)·tok/s / 989.4 TFLOP/s (N: matmul parameters a token uses,"
          " attention over all T keys); MFU causal: attention term halved (6·L·nh·d·T)")
    print("GiB alloc: peak allocated (qw: its backend's cudaMalloc total, mem_peak_bytes; torch: max_memory_allocated);"
          " GiB used: the driver's memory.used at its peak during the part minus before it (nvidia-smi every 0.2 s)")
    for n in notes:
        print("  " + n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("qw")
    q.add_argument("--config", required=True)
    q.add_argument("--log", required=True)
    q.add_argument("--warmup", type=int, required=True)
    q.add_argument("--steps", type=int, required=True)
    q.add_argument("--optim")
    q.add_argument("--batch", type=int, required=True)
    q.add_argument("--seq", type=int, required=True)
    q.add_argument("--micro", type=int, required=True)
    q.add_argument("--status", type=int, required=True)
    q.add_argument("--stderr")
    q.add_argument("--note")
    e = sub.add_parser("error")
    for k in ("model", "impl", "mode", "error"):
        e.add_argument("--" + k, required=True)
    e.add_argument("--stderr")
    u = sub.add_parser("used")
    u.add_argument("--samples", required=True)
    u.add_argument("--baseline", type=float, required=True)
    t = sub.add_parser("table")
    t.add_argument("results")
    t.add_argument("--svg")
    a = ap.parse_args()
    if a.cmd == "table":
        table(a.results, a.svg)
    elif a.cmd == "used":
        print(json.dumps(used_record(a)), flush=True)
    else:
        print(json.dumps(qw_record(a) if a.cmd == "qw" else error_record(a)), flush=True)


if __name__ == "__main__":
    main()
