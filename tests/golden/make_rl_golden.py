#!/usr/bin/env python3
"""GRPO and DPO objectives computed by PyTorch autograd, for tests/unit/test_rl.c.

    python3 make_rl_golden.py [--out rl/rl.json]

Writes inputs drawn from a fixed seed (Python's random, so the inputs do not
depend on the torch version) and, for each case, the loss and its gradient
with respect to every log-prob, computed in float64 by autograd from the
formulas of TRL's GRPOTrainer._compute_loss and DPOTrainer's losses written
out in torch.  Nothing here shares code with libcore/rl.c: the C side
derives its coefficients by hand, and the test compares the two.

Run on a machine with PyTorch (the project's GPU machine); CPU is enough.
"""
import argparse
import json
import math
import os
import random

import torch

torch.set_default_dtype(torch.float64)

# ---------------------------------------------------------------- GRPO

def nanstd(x):
    """TRL's nanstd (Bessel), with the single-value case defined as 0."""
    ok = ~torch.isnan(x)
    k = int(ok.sum())
    if k < 2:
        return torch.tensor(0.0)
    m = x[ok].mean()
    return torch.sqrt(((x[ok] - m) ** 2).sum() / (k - 1))


def advantages(r, G, scale, eps=1e-4):
    r = torch.tensor(r)
    out = torch.zeros_like(r)
    batch_std = nanstd(r)
    for g in range(len(r) // G):
        rg = r[g * G:(g + 1) * G]
        ok = ~torch.isnan(rg)
        mean = rg[ok].mean() if ok.any() else torch.tensor(float("nan"))
        std = nanstd(rg)
        div = {"group": std + eps, "batch": batch_std + eps, "none": torch.tensor(1.0)}[scale]
        a = (rg - mean) / div
        out[g * G:(g + 1) * G] = torch.where(torch.isnan(rg), torch.zeros_like(a), a)
    return out.tolist()


def grpo_case(rng, loss_type, beta, with_old, delta, scale):
    G = 3
    S = 6
    lens = [rng.randint(1, 7) for _ in range(S)]
    stop = 2
    ids = [[rng.choice([2, 5, 7, 9, 11]) for _ in range(n)] for n in lens]
    # group 0: a reward function that gave no value (NaN) among two values;
    # group 1: equal rewards (std 0, no signal)
    rewards = [rng.choice([0.0, 0.5, 1.0]), float("nan"), rng.choice([0.25, 2.0]), 1.0, 1.0, 1.0]
    adv = advantages(rewards, G, scale)
    lp = [[rng.uniform(-4, -0.05) for _ in range(n)] for n in lens]
    old = [[x + rng.gauss(0, 0.3) for x in row] for row in lp] if with_old else None
    ref = [[x + rng.gauss(0, 0.2) for x in row] for row in lp]
    mask = []
    for row in ids:
        end = next((t + 1 for t, v in enumerate(row) if v == stop), len(row))
        mask.append([1 if t < end else 0 for t in range(len(row))])
    cfg = {"loss_type": loss_type, "beta": beta, "eps_low": 0.2, "eps_high": 0.28, "delta": delta,
           "max_completion_length": 8, "n_micro": 2, "scale": scale}
    # padded tensors, as TRL holds them
    L = max(lens)
    def pad(rows):
        return torch.tensor([row + [0.0] * (L - len(row)) for row in rows])
    lpt = pad(lp).requires_grad_(True)
    m = pad([[float(v) for v in row] for row in mask])
    oldt = pad(old) if with_old else lpt.detach()
    reft = pad(ref)
    A = torch.tensor(adv)[:, None]
    log_ratio = lpt - oldt
    coef_1 = torch.exp(log_ratio)
    coef_2 = torch.clamp(coef_1, 1 - cfg["eps_low"], 1 + cfg["eps_high"])
    if delta:
        coef_1 = torch.clamp(coef_1, max=delta)
    per_token = -torch.min(coef_1 * A, coef_2 * A)
    k3 = torch.exp(reft - lpt) - (reft - lpt) - 1
    if beta:
        per_token = per_token + beta * k3
    gas = cfg["n_micro"]
    mb_tokens = m.sum()
    step_tokens = float(mb_tokens) * 2 + 5   # the other micro-batch had 5 more
    if loss_type == "grpo":
        loss = ((per_token * m).sum(-1) / m.sum(-1).clamp(min=1.0)).mean() / gas
    elif loss_type == "bnpo":
        loss = (per_token * m).sum() / m.sum().clamp(min=1.0) / gas
    elif loss_type == "dr_grpo":
        loss = (per_token * m).sum() / (S * cfg["max_completion_length"]) / gas
    else:
        loss = (per_token * m).sum() / step_tokens
    loss.backward()
    grad = [lpt.grad[s, :lens[s]].tolist() for s in range(S)]
    rho = torch.exp(log_ratio).detach()
    lo, hi = 1 - cfg["eps_low"], 1 + cfg["eps_high"]
    clip_low = (((rho < lo) & (A < 0)).double() * m).sum().item()
    clip_high = (((rho > hi) & (A > 0)).double() * m).sum().item()
    cfg["step_tokens"] = step_tokens
    return {"cfg": cfg, "ids": ids, "stop": [stop], "rewards": [None if math.isnan(r) else r for r in rewards],
            "G": G, "lp": lp, "old": old, "ref": ref,
            "expected": {"advantages": adv, "mask": mask, "loss": loss.item(), "grad": grad,
                         "kl_sum": (k3.detach() * m).sum().item(), "clip_low_sum": clip_low,
                         "clip_high_sum": clip_high, "tokens": mb_tokens.item()}}

# ---------------------------------------------------------------- DPO

def dpo_case(rng, loss_type, beta, eps):
    P = 5
    pairs = []
    for _ in range(P):
        nc, nr = rng.randint(1, 9), rng.randint(1, 9)
        pairs.append({"lp_c": rng.uniform(-30, -2), "lp_r": rng.uniform(-30, -2),
                      "ref_c": rng.uniform(-30, -2), "ref_r": rng.uniform(-30, -2), "n_c": nc, "n_r": nr})
    lpc = torch.tensor([p["lp_c"] for p in pairs], requires_grad=True)
    lpr = torch.tensor([p["lp_r"] for p in pairs], requires_grad=True)
    refc = torch.tensor([p["ref_c"] for p in pairs])
    refr = torch.tensor([p["ref_r"] for p in pairs])
    nc = torch.tensor([float(p["n_c"]) for p in pairs])
    nr = torch.tensor([float(p["n_r"]) for p in pairs])
    if loss_type == "ipo":
        logits = (lpc - refc) / nc - (lpr - refr) / nr
        losses = (logits - 1 / (2 * beta)) ** 2
    else:
        logits = (lpc - refc) - (lpr - refr)
        if loss_type == "sigmoid":
            losses = -torch.nn.functional.logsigmoid(beta * logits)
        elif loss_type == "hinge":
            losses = torch.relu(1 - beta * logits)
        else:
            losses = (-(1 - eps) * torch.nn.functional.logsigmoid(beta * logits)
                      + eps * torch.nn.functional.logsigmoid(-beta * logits)) / (1 - 2 * eps)
    n_pairs = 2 * P   # the step has a second micro-batch of P pairs
    loss = losses.sum() / n_pairs
    loss.backward()
    return {"cfg": {"type": loss_type, "beta": beta, "label_smoothing": eps, "n_pairs": n_pairs}, "pairs": pairs,
            "expected": {"loss": loss.item(), "d_lp_c": lpc.grad.tolist(), "d_lp_r": lpr.grad.tolist(),
                         "reward_c": (beta * (lpc - refc)).tolist(), "reward_r": (beta * (lpr - refr)).tolist()}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "rl", "rl.json"))
    a = ap.parse_args()
    rng = random.Random(20261204)
    grpo = []
    for loss_type in ["grpo", "bnpo", "dr_grpo", "dapo"]:
        for beta, with_old, delta in [(0.0, False, 0.0), (0.04, True, 0.0), (0.0, True, 1.5)]:
            for scale in ["group", "batch", "none"]:
                grpo.append(grpo_case(rng, loss_type, beta, with_old, delta, scale))
    dpo = []
    for loss_type in ["sigmoid", "hinge", "ipo", "robust"]:
        for beta in [0.1, 0.5]:
            dpo.append(dpo_case(rng, loss_type, beta, 0.1 if loss_type == "robust" else 0.0))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump({"torch": torch.__version__, "dtype": "float64", "grpo": grpo, "dpo": dpo}, f)
        f.write("\n")
    print(f"{a.out}: {len(grpo)} GRPO and {len(dpo)} DPO cases")


if __name__ == "__main__":
    main()
