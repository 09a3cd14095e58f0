#!/usr/bin/env python3
"""demo_report.py — summarise the demo's three pretraining stages.

Reads OUT/logs/MODEL-sN.jsonl (qw-pretrain --log) and writes
  OUT/report.md   a table per model: validation loss before and after each
                  stage, steps, tokens, mean tokens/s, training time, and
                  the figure OUT/loss.svg that demo.mk draws with qw-eval plot
and prints the table.  Exits 1 if a log is missing or a stage did not
lower its validation loss.  Standard library only.
"""
import argparse
import json
import os
import sys

STAGES = [(1, "S1 general"), (2, "S2 reasoning"), (3, "S3 long context")]


def read_log(path):
    train, val = [], []
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            (val if "val_loss" in r else train).append(r)
    return train, val


def summarise(out, models):
    rows, bad = [], []
    for m in models:
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
    return rows, bad


def table(rows):
    lines = ["| model | stage | steps | tokens | val loss before | val loss after | tok/s | time |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for m, name, steps, tokens, before, after, tps, secs in rows:
        lines.append(f"| {m} | {name} | {steps} | {tokens} | {before:.4f} | {after:.4f} | {tps:.0f} | {secs:.1f} s |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--models", default="dense moe")
    args = ap.parse_args()
    rows, bad = summarise(args.out, args.models.split())
    text = table(rows)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write("# qw demo\n\n" + text + "\n\n![training curves](loss.svg)\n")
    print(text)
    print(f"\nwrote {args.out}/report.md")
    if bad:
        sys.exit("demo_report.py: " + "; ".join(bad))


if __name__ == "__main__":
    main()
