#!/usr/bin/env python3
"""make_rm_golden.py — the reward-model parity fixture tests/golden/rm/:
transformers' Qwen3ForSequenceClassification (num_labels 1) and TRL's
RewardTrainer loss (Bradley–Terry) with every gradient.

Runs where PyTorch and transformers 5.x are installed (the project's GPU
machine), like make_golden.py; CI only reads what it wrote.  The model is
dense_tied/model's backbone (the weights copied from its model.safetensors)
with a new `score` head, Linear(hidden, 1, bias=False), drawn from
normal(0, SCORE_STD) with a fixed seed, and pad_token_id PAD.  It writes

  rm/model/config.json        the config with architectures
                              ["Qwen3ForSequenceClassification"], id2label /
                              label2id as transformers writes them for one
                              label, pad_token_id
  rm/model/model.safetensors  backbone (Hub names "model.*") + score.weight [1,H]
  rm/pairs.jsonl              the preference pairs in qw's ids form
                              (prompt_ids, chosen_ids, rejected_ids) with a
                              "margin" field
  rm/expected.safetensors     rewards_chosen, rewards_rejected F32 [P];
                              loss F32 [1] (with the margins and
                              CENTER); loss_plain F32 [1] (neither);
                              grad.<HF name> F32 of every parameter for `loss`
  rm/meta.json                versions, settings, self-checks

The batch is built as TRL's RewardTrainer builds it: each sequence is
prompt + completion, the chosen and the rejected sequences of all pairs go
through one forward, right-padded with pad_token_id, attention_mask 1 on
the real tokens.  The reward of a sequence is transformers' pooling rule
(GenericForSequenceClassification): the score at the LAST position whose
token is not pad_token_id.  One chosen completion ends with a real token
equal to pad_token_id, so that rule (not "the last real token") is what
the fixture pins down.  The loss, per TRL:

    loss = mean_p −log σ(r_c − r_r − margin_p)
           + CENTER · mean_p (r_c + r_r)²

    cd tests/golden && python3 make_rm_golden.py [--out DIR]
"""
import argparse
import copy
import json
import os
import random
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForSequenceClassification

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "dense_tied", "model")
SEED = 1234
PAD = 0
SCORE_STD = 0.2
CENTER = 0.01
# (prompt length, chosen length, rejected length): different lengths, an
# empty prompt, a one-token completion
SHAPES = [(3, 5, 2), (0, 4, 7), (5, 1, 3), (2, 6, 6)]


def pairs_of(vocab):
    rng = random.Random(20261205)
    out = []
    for i, (np_, nc, nr) in enumerate(SHAPES):
        tok = lambda n: [rng.randint(3, vocab - 1) for _ in range(n)]
        p = {"prompt_ids": tok(np_), "chosen_ids": tok(nc), "rejected_ids": tok(nr),
             "margin": round(rng.uniform(-0.5, 1.0), 3)}
        if i == 0:
            p["chosen_ids"][-1] = PAD   # a real token equal to the pad id ends it
        out.append(p)
    return out


def build(mdir, device):
    config = AutoConfig.from_pretrained(mdir)
    try:
        model = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
    except TypeError:
        config._attn_implementation = "eager"
        model = AutoModelForSequenceClassification.from_config(config)
    return model.float().to(device)


def batch(pairs):
    seqs = [p["prompt_ids"] + p["chosen_ids"] for p in pairs] + \
           [p["prompt_ids"] + p["rejected_ids"] for p in pairs]
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), PAD, dtype=torch.int64)
    mask = torch.zeros((len(seqs), T), dtype=torch.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return ids, mask


def rm_loss(model, ids, mask, margin, center, device):
    model.zero_grad(set_to_none=True)
    r = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.squeeze(-1)
    rc, rr = torch.chunk(r, 2)
    m = margin.to(device=device, dtype=r.dtype)
    loss = -torch.nn.functional.logsigmoid(rc - rr - m).mean()
    if center:
        loss = loss + center * torch.mean((rc + rr) ** 2)
    return loss, rc, rr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=HERE)
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = "cuda" if torch.cuda.is_available() else "cpu"
    d = os.path.join(a.out, "rm")
    mdir = os.path.join(d, "model")
    os.makedirs(mdir, exist_ok=True)

    with open(os.path.join(SRC, "config.json")) as f:
        cfg = json.load(f)
    cfg["architectures"] = ["Qwen3ForSequenceClassification"]
    cfg["id2label"] = {"0": "LABEL_0"}
    cfg["label2id"] = {"LABEL_0": 0}
    cfg["pad_token_id"] = PAD
    with open(os.path.join(mdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")

    torch.manual_seed(SEED)
    model = build(mdir, "cpu")
    assert model.config.num_labels == 1
    src = load_file(os.path.join(SRC, "model.safetensors"))
    sd = model.state_dict()
    with torch.no_grad():
        for n, t in src.items():
            assert n in sd, n
            sd[n].copy_(t)
        g = torch.Generator().manual_seed(SEED + 11)
        model.score.weight.copy_(torch.randn(model.score.weight.shape, generator=g) * SCORE_STD)
    missing = sorted(set(sd) - set(src) - {"score.weight"})
    assert not missing, missing

    pairs = pairs_of(cfg["vocab_size"])
    ids, mask = batch(pairs)
    margin = torch.tensor([p["margin"] for p in pairs], dtype=torch.float64)
    model64 = copy.deepcopy(model).double()
    model = model.to(device)

    with torch.no_grad():
        plain, _, _ = rm_loss(model, ids, mask, torch.zeros_like(margin), 0.0, device)
    loss, rc, rr = rm_loss(model, ids, mask, margin, CENTER, device)
    loss.backward()
    grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().cpu()
             for n, p in model.named_parameters()}

    expected = {"rewards_chosen": rc.detach().float().cpu().contiguous(),
                "rewards_rejected": rr.detach().float().cpu().contiguous(),
                "loss": loss.detach().float().cpu().reshape(1),
                "loss_plain": plain.detach().float().cpu().reshape(1)}
    for n, gr in grads.items():
        expected["grad." + n] = gr.contiguous()
    save_file({n: t.detach().float().cpu().contiguous() for n, t in model.state_dict().items()},
              os.path.join(mdir, "model.safetensors"), metadata={"format": "pt"})
    save_file(expected, os.path.join(d, "expected.safetensors"))
    with open(os.path.join(d, "pairs.jsonl"), "w") as f:
        for p in pairs:
            f.write(json.dumps(p) + "\n")

    checks = {}
    # transformers reads the directory back and gives the same rewards
    m2 = AutoModelForSequenceClassification.from_pretrained(mdir, attn_implementation="eager").float().to(device)
    with torch.no_grad():
        r2 = m2(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.squeeze(-1).float().cpu()
    checks["reload_rewards_max_abs"] = (r2 - torch.cat([expected["rewards_chosen"],
                                                        expected["rewards_rejected"]])).abs().max().item()
    # each sequence alone, unpadded: the padding changes nothing
    alone = []
    with torch.no_grad():
        for i in range(ids.shape[0]):
            n = int(mask[i].sum())
            alone.append(model(input_ids=ids[i:i + 1, :n].to(device)).logits.reshape(-1)[0].float().cpu())
    checks["unpadded_rewards_max_abs"] = (torch.stack(alone) - r2).abs().max().item()
    # float64 on the CPU: the noise floor
    l64, rc64, rr64 = rm_loss(model64, ids, mask, margin, CENTER, "cpu")
    l64.backward()
    checks["fp64_loss_abs"] = abs(l64.item() - loss.item())
    checks["fp64_rewards_max_abs"] = max((rc64.detach().float().cpu() - expected["rewards_chosen"]).abs().max().item(),
                                         (rr64.detach().float().cpu() - expected["rewards_rejected"]).abs().max().item())
    checks["fp64_grad_max_rel"] = max(
        ((p.grad.double() - grads[n].double()).norm() / max(p.grad.double().norm().item(), 1e-30)).item()
        for n, p in model64.named_parameters())

    rcl, rrl = expected["rewards_chosen"].tolist(), expected["rewards_rejected"].tolist()
    meta = {"name": "rm", "seed": SEED, "source": "dense_tied/model", "pad_token_id": PAD,
            "score_init": f"normal(0, {SCORE_STD}), torch.Generator seed {SEED + 11}",
            "center_rewards_coefficient": CENTER, "shapes": SHAPES,
            "padded_len": ids.shape[1],
            "torch": torch.__version__, "transformers": transformers.__version__,
            "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
            "attn_implementation": model.config._attn_implementation, "tf32": False,
            "loss": loss.item(), "loss_plain": plain.item(),
            "accuracy": sum(c > r for c, r in zip(rcl, rrl)) / len(rcl),
            "margin_mean": sum(c - r for c, r in zip(rcl, rrl)) / len(rcl),
            "rewards_chosen": rcl, "rewards_rejected": rrl,
            "checks": checks}
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    assert set(load_file(os.path.join(d, "expected.safetensors"))) == set(expected)
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
