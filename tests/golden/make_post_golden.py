#!/usr/bin/env python3
"""make_post_golden.py — whole-update parity fixtures for qw-grpo and qw-dpo.

    cd tests/golden && python3 make_post_golden.py --out post

Runs where PyTorch and transformers are installed (the project's GPU machine;
the CPU is enough).  The policy is the committed fixture model
dense_tied/model (a tiny Qwen3, V 256, tied embeddings); the reference model
is the same with every tensor perturbed by normal(0, 0.02) and is written to
OUT/ref_model.  For each case below, the model's per-token log-probs come from
transformers (fp32, eager attention, TF32 off, each sequence run alone), the
loss is TRL's written out in torch (GRPOTrainer._compute_loss,
DPOTrainer.dpo_loss), and autograd gives its gradient with respect to every
parameter of the policy.  Writes:

    OUT/ref_model/               config.json + model.safetensors (the reference)
    OUT/grpo.jsonl               scored rollouts as qw-rollout and qw-reward write them
                                 (idx, sample, prompt_ids, completion_ids, logprobs,
                                 finish_reason, reward); `logprobs` are the policy's own
                                 log-probs at the case temperature plus normal(0, 0.3)
                                 noise, so that old-from-rollout cases clip
    OUT/dpo.jsonl                preference pairs, ids form (prompt_ids, chosen_ids,
                                 rejected_ids)
    OUT/expected.safetensors     per case C: C.loss F32 [1] and C.grad.<HF name> F32
    OUT/meta.json                the cases with their settings (the qw-grpo / qw-dpo
                                 options that reproduce them), versions, self-checks

GRPO (one optimizer step's gradient, one micro-batch holding every
completion): advantages per group of G (mean, Bessel std + 1e-4, or as
`scale`), the completion mask up to and including the first EOS (id 2), ratio
exp(logp − old) with old = the records' logprobs (old_from_rollout) or the
forward's own (ratio 1), clipped to [1 − 0.2, 1 + eps_high], the k3 KL to the
reference with beta, log-probs of log_softmax(logits / temperature); the loss
aggregated as loss_type says (dr_grpo divides by S · max_completion_length 8).

DPO: summed completion log-probs (IPO: per-token means) of policy and
reference; sigmoid, hinge, ipo, robust (label smoothing 0.1); the loss is the
mean over pairs.
"""
import argparse
import json
import math
import os
import random
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
POLICY = os.path.join(HERE, "dense_tied", "model")
EOS = 2
G = 4
MAX_COMPLETION = 8
EPS_LOW, EPS_HIGH = 0.2, 0.28

GRPO_CASES = [
    # name, loss_type, beta, old_from_rollout, temperature, scale
    ("grpo_dapo", "dapo", 0.0, False, 1.0, "group"),
    ("grpo_dapo_kl_old", "dapo", 0.04, True, 1.0, "group"),
    ("grpo_grpo_kl_old", "grpo", 0.04, True, 1.0, "group"),
    ("grpo_bnpo_old", "bnpo", 0.0, True, 1.0, "batch"),
    ("grpo_drgrpo_kl_old", "dr_grpo", 0.04, True, 1.0, "none"),
    ("grpo_grpo", "grpo", 0.0, False, 1.0, "group"),
    ("grpo_dapo_kl_old_t07", "dapo", 0.04, True, 0.7, "group"),
    ("grpo_grpo_old_t07", "grpo", 0.0, True, 0.7, "group"),
]
DPO_CASES = [
    ("dpo_sigmoid", "sigmoid", 0.1, 0.0),
    ("dpo_hinge", "hinge", 0.5, 0.0),
    ("dpo_ipo", "ipo", 0.1, 0.0),
    ("dpo_robust", "robust", 0.1, 0.1),
]


def load(path, device):
    m = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").float().to(device)
    m.train()
    return m


def seq_logps(model, prompt, completion, temperature, device):
    """log p(completion token | prefix) under log_softmax(logits / T), one per completion token."""
    ids = torch.tensor([prompt + completion], device=device)
    logits = model(input_ids=ids).logits[0].float()
    z = logits[len(prompt) - 1: len(prompt) + len(completion) - 1] / temperature
    lp = torch.log_softmax(z, -1)
    return lp.gather(1, torch.tensor(completion, device=device)[:, None])[:, 0]


def nanstd(x):
    k = x.numel()
    if k < 2:
        return torch.tensor(0.0, dtype=x.dtype)
    return torch.sqrt(((x - x.mean()) ** 2).sum() / (k - 1))


def advantages(r, scale):
    r = torch.tensor(r, dtype=torch.float64)
    out = torch.zeros_like(r)
    bstd = nanstd(r)
    for g in range(len(r) // G):
        rg = r[g * G:(g + 1) * G]
        div = {"group": nanstd(rg) + 1e-4, "batch": bstd + 1e-4, "none": torch.tensor(1.0, dtype=torch.float64)}[scale]
        out[g * G:(g + 1) * G] = (rg - rg.mean()) / div
    return out


def make_rollouts(rng):
    recs = []
    rewards = [[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5], [0.0, 2.0, 1.0, 0.25]]
    for p in range(3):
        prompt = [rng.randrange(3, 256) for _ in range(rng.randint(2, 6))]
        for j in range(G):
            n = rng.randint(2, MAX_COMPLETION)
            comp = [rng.randrange(3, 256) for _ in range(n)]
            if j % 2 == 0 and n > 2:          # EOS inside: the tokens after it are not trained
                comp[rng.randrange(1, n - 1)] = EOS
            finish = "stop" if EOS in comp else "length"
            recs.append({"idx": p, "sample": j, "prompt_ids": prompt, "completion_ids": comp,
                         "finish_reason": finish, "reward": rewards[p][j]})
    return recs


def grpo_case(policy, ref, recs, case, device):
    name, loss_type, beta, old_from_rollout, temp, scale = case
    policy.zero_grad(set_to_none=True)
    A = advantages([r["reward"] for r in recs], scale)
    S = len(recs)
    tokens = 0
    terms = []
    for s, r in enumerate(recs):
        c = r["completion_ids"]
        end = c.index(EOS) + 1 if EOS in c else len(c)
        lp = seq_logps(policy, r["prompt_ids"], c, temp, device)[:end].double()
        old = torch.tensor(r["logprobs_t"][temp][:end], dtype=torch.float64, device=device) if old_from_rollout else lp.detach()
        coef_1 = torch.exp(lp - old)
        coef_2 = torch.clamp(coef_1, 1 - EPS_LOW, 1 + EPS_HIGH)
        a = A[s].item()
        per_token = -torch.min(coef_1 * a, coef_2 * a)
        if beta:
            with torch.no_grad():
                rl = seq_logps(ref, r["prompt_ids"], c, temp, device)[:end].double()
            per_token = per_token + beta * (torch.exp(rl - lp) - (rl - lp) - 1)
        terms.append(per_token)
        tokens += end
    if loss_type == "grpo":
        loss = sum(t.sum() / max(t.numel(), 1) for t in terms) / S
    elif loss_type in ("bnpo", "dapo"):
        loss = sum(t.sum() for t in terms) / tokens
    else:
        loss = sum(t.sum() for t in terms) / (S * MAX_COMPLETION)
    loss.backward()
    grads = {n: p.grad.detach().float().cpu().contiguous() for n, p in policy.named_parameters()}
    return loss.item(), grads


def dpo_case(policy, ref, pairs, case, device):
    name, loss_type, beta, eps = case
    policy.zero_grad(set_to_none=True)
    losses = []
    for q in pairs:
        side = {}
        for k in ("chosen_ids", "rejected_ids"):
            lp = seq_logps(policy, q["prompt_ids"], q[k], 1.0, device).double()
            with torch.no_grad():
                rl = seq_logps(ref, q["prompt_ids"], q[k], 1.0, device).double()
            if loss_type == "ipo":
                side[k] = (lp.sum() / lp.numel(), rl.sum() / rl.numel())
            else:
                side[k] = (lp.sum(), rl.sum())
        x = (side["chosen_ids"][0] - side["chosen_ids"][1]) - (side["rejected_ids"][0] - side["rejected_ids"][1])
        if loss_type == "sigmoid":
            losses.append(-torch.nn.functional.logsigmoid(beta * x))
        elif loss_type == "hinge":
            losses.append(torch.relu(1 - beta * x))
        elif loss_type == "ipo":
            losses.append((x - 1 / (2 * beta)) ** 2)
        else:
            losses.append((-(1 - eps) * torch.nn.functional.logsigmoid(beta * x)
                           + eps * torch.nn.functional.logsigmoid(-beta * x)) / (1 - 2 * eps))
    loss = sum(losses) / len(losses)
    loss.backward()
    grads = {n: p.grad.detach().float().cpu().contiguous() for n, p in policy.named_parameters()}
    return loss.item(), grads


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "post"))
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = "cuda" if torch.cuda.is_available() else "cpu"
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(99)
    policy = load(POLICY, device)
    ref = load(POLICY, device)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.02 * torch.randn_like(p))
    ref.eval()
    rdir = os.path.join(a.out, "ref_model")
    ref.save_pretrained(rdir, safe_serialization=True)
    # the Hub key generation of the committed policy, for every reader
    with open(os.path.join(POLICY, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(rdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    sd = {n: t.detach().float().cpu().contiguous() for n, t in ref.state_dict().items() if n != "lm_head.weight"}
    save_file(sd, os.path.join(rdir, "model.safetensors"), metadata={"format": "pt"})

    rng = random.Random(20261205)
    recs = make_rollouts(rng)
    # rollout log-probs at each temperature: the policy's own plus noise
    g = random.Random(7)
    for r in recs:
        r["logprobs_t"] = {}
        for t in sorted({c[4] for c in GRPO_CASES}):
            with torch.no_grad():
                lp = seq_logps(policy, r["prompt_ids"], r["completion_ids"], t, device).tolist()
            r["logprobs_t"][t] = [x + g.gauss(0, 0.3) for x in lp]
    expected, meta_cases = {}, []
    for case in GRPO_CASES:
        loss, grads = grpo_case(policy, ref, recs, case, device)
        name = case[0]
        expected[name + ".loss"] = torch.tensor([loss], dtype=torch.float32)
        for n, gr in grads.items():
            expected[f"{name}.grad.{n}"] = gr
        meta_cases.append({"name": name, "program": "qw-grpo", "loss_type": case[1], "beta": case[2],
                           "old_from_rollout": case[3], "temperature": case[4], "scale_rewards": case[5],
                           "epsilon": EPS_LOW, "epsilon_high": EPS_HIGH,
                           "max_completion_length": MAX_COMPLETION, "loss": loss,
                           "input": f"grpo_t{case[4]:g}.jsonl"})
    for t in sorted({c[4] for c in GRPO_CASES}):
        with open(os.path.join(a.out, f"grpo_t{t:g}.jsonl"), "w") as f:
            for r in recs:
                out = {k: v for k, v in r.items() if k != "logprobs_t"}
                out["logprobs"] = [round(x, 7) for x in r["logprobs_t"][t]]
                f.write(json.dumps({k: out[k] for k in ("idx", "sample", "prompt_ids", "completion_ids",
                                                        "logprobs", "finish_reason", "reward")}) + "\n")
    pairs = []
    for _ in range(4):
        pairs.append({"prompt_ids": [rng.randrange(3, 256) for _ in range(rng.randint(2, 5))],
                      "chosen_ids": [rng.randrange(3, 256) for _ in range(rng.randint(2, 7))],
                      "rejected_ids": [rng.randrange(3, 256) for _ in range(rng.randint(2, 7))]})
    with open(os.path.join(a.out, "dpo.jsonl"), "w") as f:
        for q in pairs:
            f.write(json.dumps(q) + "\n")
    for case in DPO_CASES:
        loss, grads = dpo_case(policy, ref, pairs, case, device)
        name = case[0]
        expected[name + ".loss"] = torch.tensor([loss], dtype=torch.float32)
        for n, gr in grads.items():
            expected[f"{name}.grad.{n}"] = gr
        meta_cases.append({"name": name, "program": "qw-dpo", "loss_type": case[1], "beta": case[2],
                           "label_smoothing": case[3], "loss": loss, "input": "dpo.jsonl"})
    save_file(expected, os.path.join(a.out, "expected.safetensors"))
    meta = {"torch": torch.__version__, "transformers": transformers.__version__,
            "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
            "policy": "dense_tied/model", "reference": "ref_model (policy + normal(0, 0.02))",
            "eos": EOS, "num_generations": G, "cases": meta_cases}
    with open(os.path.join(a.out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    for c in meta_cases:
        print(c["name"], c["loss"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
