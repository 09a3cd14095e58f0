#!/usr/bin/env python3
"""dpo_ref.py — an independent reference for qw-dpo's first step (stdlib only).

    dpo_ref.py input PAIRS.jsonl OUT.safetensors
        rows for `qw-eval forward`: pair i's prompt + chosen in row 2i, prompt + rejected in
        row 2i+1, labels on the completion tokens that have a token before them
    dpo_ref.py logps PAIRS.jsonl FWD.safetensors OUT.jsonl
        the pairs with ref_chosen_logp / ref_rejected_logp: the summed completion log-probs of
        FWD's logits (the reference model's forward of the rows above)
    dpo_ref.py coef PAIRS.jsonl FWD.safetensors REF LOSS BETA EPS OUT.safetensors
        the loss of TRL's DPOTrainer over all the pairs (their mean), with the policy's summed
        log-probs from FWD's logits and the reference's from REF (the forward of the reference
        model, or `same`: the policy's own); its derivative in each side's summed log-prob by
        central differences; written as input_ids, labels and coef = -dloss/dlp on each scored
        token of that side; prints the loss

The loss is written here from the formulas (sigmoid: -log s(b D); hinge: max(0, 1 - b D);
ipo: (D' - 1/(2b))^2 with per-token means; robust: (-(1-e) log s(b D) + e log s(-b D))/(1-2e));
nothing of libcore/rl.c is used.
"""
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval_st  # noqa: E402


def pairs(path):
    return [json.loads(l) for l in open(path) if l.strip()]


def rows(ps):
    rs = []
    for p in ps:
        for k in ("chosen_ids", "rejected_ids"):
            rs.append((p["prompt_ids"], p[k]))
    T = max(len(a) + len(b) for a, b in rs)
    ids, labels = [], []
    for a, b in rs:
        row = a + b
        lab = [-100] * T
        for j in range(max(len(a), 1), len(row)):
            lab[j] = row[j]
        ids.append(row + [0] * (T - len(row)))
        labels.append(lab)
    return T, ids, labels


def write(out, T, ids, labels, coef=None):
    n = len(ids)
    flat = lambda a: ",".join(str(x) for row in a for x in row)
    spec = ["input_ids:I64:%d,%d:%s" % (n, T, flat(ids)), "labels:I64:%d,%d:%s" % (n, T, flat(labels))]
    if coef is not None:
        spec.append("coef:F32:%d,%d:%s" % (n, T, ",".join(repr(x) for row in coef for x in row)))
    eval_st.main(["eval_st.py", "write", out] + spec)


def seq_logps(path, T, labels):
    """Per row: (summed log-prob of the labels, their count), from the logits in path."""
    hdr, data = eval_st.read(path)
    V = hdr["logits"]["shape"][2]
    logits = eval_st.values(hdr, data, "logits")
    out = []
    for i, lab in enumerate(labels):
        s, n = 0.0, 0
        for j, t in enumerate(lab):
            if t < 0:
                continue
            row = logits[(i * T + j - 1) * V:(i * T + j) * V]   # position j-1 predicts token j
            mx = max(row)
            s += row[t] - (mx + math.log(sum(math.exp(v - mx) for v in row)))
            n += 1
        out.append((s, n))
    return out


def log_sigmoid(x):
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def pair_loss(kind, beta, eps, lc, lr, rc, rr, nc, nr):
    if kind == "ipo":
        d = (lc - rc) / nc - (lr - rr) / nr
        return (d - 1 / (2 * beta)) ** 2
    d = (lc - rc) - (lr - rr)
    if kind == "sigmoid":
        return -log_sigmoid(beta * d)
    if kind == "hinge":
        return max(0.0, 1 - beta * d)
    if kind == "robust":
        return (-(1 - eps) * log_sigmoid(beta * d) + eps * log_sigmoid(-beta * d)) / (1 - 2 * eps)
    raise SystemExit("unknown loss " + kind)


def main(argv):
    ps = pairs(argv[2])
    T, ids, labels = rows(ps)
    if argv[1] == "input":
        write(argv[3], T, ids, labels)
        return 0
    pol = seq_logps(argv[3], T, labels)
    if argv[1] == "logps":
        with open(argv[4], "w") as f:
            for i, p in enumerate(ps):
                q = dict(p, ref_chosen_logp=pol[2 * i][0], ref_rejected_logp=pol[2 * i + 1][0])
                f.write(json.dumps(q) + "\n")
        return 0
    ref = pol if argv[4] == "same" else seq_logps(argv[4], T, labels)
    kind, beta, eps = argv[5], float(argv[6]), float(argv[7])
    n = len(ps)
    loss, coef = 0.0, [[0.0] * T for _ in ids]
    for i in range(n):
        (lc, nc), (lr, nr) = pol[2 * i], pol[2 * i + 1]
        rc, rr = ref[2 * i][0], ref[2 * i + 1][0]
        f = lambda a, b: pair_loss(kind, beta, eps, a, b, rc, rr, nc, nr) / n
        loss += f(lc, lr)
        h = 1e-4
        dc = (f(lc + h, lr) - f(lc - h, lr)) / (2 * h)
        dr = (f(lc, lr + h) - f(lc, lr - h)) / (2 * h)
        for r, d in ((2 * i, dc), (2 * i + 1, dr)):
            for j, t in enumerate(labels[r]):
                if t >= 0:
                    coef[r][j] = -d
    write(argv[8], T, ids, labels, coef)
    print("%.12g" % loss)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
