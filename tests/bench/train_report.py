#!/usr/bin/env python3
"""train_report.py — the bookkeeping of tests/bench/train_cuda.sh (stdlib only).

    train_report.py qw --config FILE --log METRICS.jsonl --warmup W --batch B --seq T
                       --micro M --status RC [--stderr FILE] [--note TEXT]
        one JSON line for a qw-pretrain run: tok_per_s (median of the steps
        after the first W; tok_per_s_mean: all their tokens over all their
        time), mfu by train_torch.flops_per_token (the same formula as the
        PyTorch side), qw_mfu (the run's own "mfu" field when it logs one),
        mem_peak_bytes (the largest "mem_peak_bytes" logged), or "error"
    train_report.py error --model NAME --impl IMPL --mode MODE --error TEXT [--stderr FILE]
        one JSON line for a part that gave no result
    train_report.py table RESULTS.jsonl [--svg FILE]
        the comparison table of the latest run (the records after the last
        {"run": ...} line): per model, the last record of each side; with
        --svg also a bar chart of tokens/s per model and side
"""
import argparse
import json
import math
import os
import statistics
import sys

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
    steps = []
    try:
        with open(a.log) as f:
            steps = [r for r in map(json.loads, f) if "loss" in r]
    except (OSError, ValueError):
        pass
    timed = [r for r in steps if r["step"] > a.warmup]
    rec["steps"] = len(timed)
    if timed:
        tps = [r["tok_per_s"] for r in timed]
        tokens = a.batch * a.seq
        rec["tok_per_s"] = round(statistics.median(tps), 1)
        rec["tok_per_s_mean"] = round(tokens * len(tps) / sum(tokens / t for t in tps), 1)
        rec["mfu"] = round(rec["tok_per_s"] * flops_per_token(cfg, a.seq) / PEAK_FLOPS, 4)
        if "mfu" in timed[-1]:
            rec["qw_mfu"] = timed[-1]["mfu"]
        rec["step_ms"] = [round(tokens / t * 1e3, 1) for t in tps]
        rec["loss_first_last"] = [steps[0]["loss"], steps[-1]["loss"]]
    peaks = [r["mem_peak_bytes"] for r in steps if "mem_peak_bytes" in r]
    if peaks:
        rec["mem_peak_bytes"] = max(peaks)
    if not timed:
        why = last_line(a.stderr) if a.stderr else ""
        rec["error"] = f"exit {a.status}, {len(steps)} steps logged" + (f": {why}" if why else "")
    if a.note:
        rec["note"] = a.note
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


def table(path, svg=None):
    order, last = latest(path)
    if svg:
        bars_svg(order, last, svg)
    head = ("model", "qw tok/s", "eager tok/s", "compile tok/s", "qw/compile", "qw/eager",
            "MFU qw", "MFU eager", "MFU compile", "GiB qw", "GiB eager", "GiB compile", "qw micro")
    rows = [head]
    notes = []
    for m in order:
        q, e, c = (last.get((m, k), {}) for k in ("qw", "eager", "compile"))
        tps = lambda r: r.get("tok_per_s") if "error" not in r else None
        ratio = lambda a, b: f"{a / b:.2f}" if a and b else "-"
        fmt = lambda r: f"{r['tok_per_s'] / 1e3:.1f}k" if tps(r) else "ERR" if r else "-"
        mfu = lambda r: f"{100 * r['mfu']:.1f}%" if tps(r) else "-"
        rows.append((m, fmt(q), fmt(e), fmt(c), ratio(tps(q), tps(c)), ratio(tps(q), tps(e)),
                     mfu(q), mfu(e), mfu(c), gib(q.get("mem_peak_bytes")),
                     gib(e.get("peak_reserved_bytes")), gib(c.get("peak_reserved_bytes")),
                     str(q.get("micro_batch", "-"))))
        for name, r in (("qw", q), ("eager", e), ("compile", c)):
            if "error" in r:
                notes.append(f"{m} {name}: {r['error']}")
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    for r in rows:
        print("  ".join(str(v).rjust(w) for v, w in zip(r, widths)))
    print("tok/s: median step; MFU: (6·N + 12·L·nh·d·T)·tok/s / 989.4 TFLOP/s (reference/qwen3.md §9);"
          " memory: qw mem_peak_bytes, torch max_memory_reserved")
    for n in notes:
        print("  " + n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("qw")
    q.add_argument("--config", required=True)
    q.add_argument("--log", required=True)
    q.add_argument("--warmup", type=int, required=True)
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
    t = sub.add_parser("table")
    t.add_argument("results")
    t.add_argument("--svg")
    a = ap.parse_args()
    if a.cmd == "table":
        table(a.results, a.svg)
    else:
        print(json.dumps(qw_record(a) if a.cmd == "qw" else error_record(a)), flush=True)


if __name__ == "__main__":
    main()
