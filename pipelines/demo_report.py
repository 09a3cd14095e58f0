#!/usr/bin/env python3
"""demo_report.py — summarise the demo's three pretraining stages.

Reads OUT/logs/MODEL-sN.jsonl (qw-pretrain --log) and writes
  OUT/report.md   a table per model: validation loss before and after each
                  stage, steps, tokens, mean tokens/s, training time
  OUT/loss.svg    training and validation loss of every model over the
                  tokens of all three stages (stage boundaries marked)
and prints the table.  Exits 1 if a log is missing or a stage did not
lower its validation loss.  Standard library only.
"""
import argparse
import json
import os
import sys

STAGES = [(1, "S1 general"), (2, "S2 reasoning"), (3, "S3 long context")]
COLOURS = {"dense": "#1f77b4", "moe": "#d62728"}


def read_log(path):
    train, val = [], []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            (val if "val_loss" in r else train).append(r)
    return train, val


def summarise(out, models):
    rows, curves, bad = [], {}, []
    for m in models:
        offset = 0
        curves[m] = {"train": [], "val": [], "bounds": []}
        for n, name in STAGES:
            path = os.path.join(out, "logs", f"{m}-s{n}.jsonl")
            if not os.path.exists(path):
                sys.exit(f"demo_report.py: '{path}': no such log")
            train, val = read_log(path)
            if not train or len(val) < 2:
                sys.exit(f"demo_report.py: '{path}': needs training records and two validation records")
            per_step = train[0]["tokens"] / train[0]["step"]
            secs = sum(per_step / r["tok_per_s"] for r in train)
            before, after = val[0]["val_loss"], val[-1]["val_loss"]
            if not after < before:
                bad.append(f"{m} {name}: validation loss {before:.4f} -> {after:.4f} did not fall")
            tokens = train[-1]["tokens"]
            rows.append((m, name, len(train), tokens, before, after, tokens / secs, secs))
            curves[m]["train"] += [(offset + r["step"] * per_step, r["loss"]) for r in train]
            curves[m]["val"] += [(offset + r["step"] * per_step, r["val_loss"]) for r in val]
            offset += tokens
            curves[m]["bounds"].append(offset)
    return rows, curves, bad


def table(rows):
    lines = ["| model | stage | steps | tokens | val loss before | val loss after | tok/s | time |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for m, name, steps, tokens, before, after, tps, secs in rows:
        lines.append(f"| {m} | {name} | {steps} | {tokens} | {before:.4f} | {after:.4f} | {tps:.0f} | {secs:.1f} s |")
    return "\n".join(lines)


def svg(curves, path):
    W, H, L, R, T, B = 760, 420, 60, 20, 30, 50
    xs = [x for c in curves.values() for x, _ in c["train"] + c["val"]]
    ys = [y for c in curves.values() for _, y in c["train"] + c["val"]]
    x1, y0, y1 = max(xs), min(ys), max(ys)
    y0, y1 = y0 - 0.05 * (y1 - y0), y1 + 0.05 * (y1 - y0)
    px = lambda x: L + (W - L - R) * x / x1
    py = lambda y: T + (H - T - B) * (1 - (y - y0) / (y1 - y0))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14">qw demo: loss over the three pretraining stages</text>']
    for k in range(6):
        y = y0 + (y1 - y0) * k / 5
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{L - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.2f}</text>')
    for k in range(6):
        x = x1 * k / 5
        out.append(f'<text x="{px(x):.1f}" y="{H - B + 16}" text-anchor="middle">{x / 1e3:.0f}k</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 14}" text-anchor="middle">tokens</text>')
    first = next(iter(curves.values()))
    for i, b in enumerate(first["bounds"][:-1]):
        out.append(f'<line x1="{px(b):.1f}" x2="{px(b):.1f}" y1="{T}" y2="{H - B}" stroke="#999" stroke-dasharray="4 3"/>')
    for i, (n, name) in enumerate(STAGES):
        a = 0 if i == 0 else first["bounds"][i - 1]
        out.append(f'<text x="{px((a + first["bounds"][i]) / 2):.1f}" y="{T + 12}" text-anchor="middle" fill="#555">{name}</text>')
    for j, (m, c) in enumerate(curves.items()):
        col = COLOURS.get(m, "#2ca02c")
        pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in c["train"])
        out.append(f'<polyline points="{pts}" fill="none" stroke="{col}" stroke-width="1.2" opacity="0.6"/>')
        for x, y in c["val"]:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{col}"/>')
        out.append(f'<text x="{W - R - 150}" y="{T + 40 + 16 * j}" fill="{col}">{m}: train (line), val (dots)</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default="dense moe")
    args = ap.parse_args()
    rows, curves, bad = summarise(args.out, args.models.split())
    text = table(rows)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write("# qw demo\n\n" + text + "\n\n![loss](loss.svg)\n")
    svg(curves, os.path.join(args.out, "loss.svg"))
    print(text)
    print(f"\nwrote {args.out}/report.md and {args.out}/loss.svg")
    if bad:
        sys.exit("demo_report.py: " + "; ".join(bad))


if __name__ == "__main__":
    main()
