#!/usr/bin/env python3
"""grpo_ref.py — an independent reference for qw-grpo's first step (stdlib only).

    grpo_ref.py input  SCORED.jsonl EOS,... OUT.safetensors            rows for `qw-eval forward`: input_ids, labels
    grpo_ref.py coef   SCORED.jsonl EOS,... FWD.safetensors LOSS_TYPE OUT.safetensors
        the log-probs of the completion tokens from FWD's logits (log-softmax), TRL's GRPO advantages
        (group mean, std with Bessel's correction, eps 1e-4) and loss at ratio 1 for LOSS_TYPE
        (dapo, bnpo: token mean over the batch; grpo: per-sequence mean, then mean; dr_grpo: sum over
        S·max length), written as input_ids, labels and coef = -dloss/dlogp; prints the loss.
    grpo_ref.py grads  A.safetensors B.safetensors REL           the grad.* tensors of A and B agree, each
        within REL of its largest |value| in A; prints the worst relative difference

    grpo_ref.py scale  IN.safetensors NAME FACTOR OUT.safetensors  IN with the F32 tensor NAME multiplied by
        FACTOR (the rest byte for byte): an untied model whose lm_head is divided by T has the logits z/T
        of temperature T, and d/dlm_head at temperature T is that model's times 1/T

Rows are the records sorted by idx (then file order); targets are the completion tokens up to and
including the first EOS (TRL's completion mask).
"""
import json
import math
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval_st  # noqa: E402


def records(path):
    rs = [json.loads(l) for l in open(path) if l.strip()]
    return sorted(rs, key=lambda r: r["idx"])   # stable: file order within an idx


def rows(rs, eos):
    T = max(len(r["prompt_ids"]) + len(r["completion_ids"]) for r in rs)
    ids, labels, masks = [], [], []
    for r in rs:
        p, c = r["prompt_ids"], r["completion_ids"]
        m, seen = [], False
        for t in c:
            m.append(0 if seen else 1)
            seen = seen or t in eos
        row = p + c + [0] * (T - len(p) - len(c))
        lab = [-100] * len(p) + [t if k else -100 for t, k in zip(c, m)] + [-100] * (T - len(p) - len(c))
        ids.append(row), labels.append(lab), masks.append(m)
    return T, ids, labels, masks


def write(out, n, T, ids, labels, coef=None):
    flat = lambda a: ",".join(str(x) for row in a for x in row)
    spec = ["input_ids:I64:%d,%d:%s" % (n, T, flat(ids)), "labels:I64:%d,%d:%s" % (n, T, flat(labels))]
    if coef is not None:
        spec.append("coef:F32:%d,%d:%s" % (n, T, ",".join(repr(x) for row in coef for x in row)))
    eval_st.main(["eval_st.py", "write", out] + spec)


def main(argv):
    if argv[1] == "grads":
        ha, da = eval_st.read(argv[2])
        hb, db = eval_st.read(argv[3])
        names = sorted(k for k in ha if k.startswith("grad."))
        if not names or names != sorted(k for k in hb if k.startswith("grad.")):
            print("different gradient tensors"); return 1
        worst = 0.0
        for k in names:
            a, b = eval_st.values(ha, da, k), eval_st.values(hb, db, k)
            scale = max(abs(v) for v in a) or 1.0
            worst = max(worst, max(abs(x - y) for x, y in zip(a, b)) / scale)
        print("%.3g" % worst)
        return 0 if worst <= float(argv[4]) else 1
    if argv[1] == "scale":
        raw = open(argv[2], "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        hdr = json.loads(raw[8:8 + n])
        t, f = hdr[argv[3]], float(argv[4])
        assert t["dtype"] == "F32", t
        a, b = (8 + n + o for o in t["data_offsets"])
        v = struct.unpack("<%df" % ((b - a) // 4), raw[a:b])
        with open(argv[5], "wb") as out:
            out.write(raw[:a] + struct.pack("<%df" % len(v), *(x * f for x in v)) + raw[b:])
        return 0
    rs = records(argv[2])
    eos = {int(x) for x in argv[3].split(",")}
    T, ids, labels, masks = rows(rs, eos)
    n = len(rs)
    if argv[1] == "input":
        write(argv[4], n, T, ids, labels)
        return 0
    hdr, data = eval_st.read(argv[4])
    V = hdr["logits"]["shape"][2]
    logits = eval_st.values(hdr, data, "logits")
    G = sum(1 for r in rs if r["idx"] == rs[0]["idx"])
    rw = [r["reward"] for r in rs]
    adv = []
    for g in range(0, n, G):
        x = rw[g:g + G]
        mu = sum(x) / G
        sd = math.sqrt(sum((v - mu) ** 2 for v in x) / (G - 1)) if G > 1 else 0.0
        adv += [(v - mu) / (sd + 1e-4) for v in x]
    lt = argv[5]
    N = sum(sum(m) for m in masks)
    L = max(len(m) for m in masks)
    loss, coef = 0.0, [[0.0] * T for _ in range(n)]
    for i, r in enumerate(rs):
        p = len(r["prompt_ids"])
        ni = sum(masks[i])
        for k, t in enumerate(r["completion_ids"]):
            if not masks[i][k]:
                continue
            pos = p - 1 + k   # the position predicting token p + k
            row = logits[(i * T + pos) * V:(i * T + pos + 1) * V]
            mx = max(row)
            lse = mx + math.log(sum(math.exp(v - mx) for v in row))
            lp = row[t] - lse   # noqa: F841 (ratio 1: the value drops out of the gradient)
            # per-token loss -A·ρ with ρ = 1 and dρ/dlp = 1: -dloss/dlp = A·(weight of the token)
            w = {"dapo": 1 / N, "bnpo": 1 / N, "grpo": 1 / (ni * n), "dr_grpo": 1 / (n * L)}[lt]
            loss += -adv[i] * w
            coef[i][p + k] = adv[i] * w   # labels[t+1] indexing: the label's own column
    write(argv[6], n, T, ids, labels, coef)
    print("%.9g" % loss)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
