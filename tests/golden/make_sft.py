#!/usr/bin/env python3
"""make_sft.py — the SFT parity fixture tests/golden/sft/: transformers'
loss and gradients for a packed, masked batch as TRL's SFTTrainer builds it.

Runs where PyTorch and transformers 5.x are installed (the project's GPU
machine), like make_golden.py, whose model builder it uses.  The batch is
TRL's padding-free packing with a completion/assistant mask:

  input_ids     I64 [2,16]: row 0 holds samples of 7 and 9 tokens, row 1 of
                5, 4 and 7;
  position_ids  I64 [2,16]: restarting at 0 at every sample;
  labels        I64 [2,16]: input_ids where the sample's loss mask is 1 (its
                completion: every token after a prompt of 2 or 3 tokens),
                -100 elsewhere and at every position 0 (TRL sets the label of
                a sequence start to -100).

The reference loss is TRL's: the sum of -log p over the labels that are not
-100 (position t predicts labels[t+1]) divided by their number; attention
stays inside each sample (FlashAttention's varlen path with these
position_ids), so the script runs every sample as its own sequence, sums
their token losses and backpropagates the mean.  expected.safetensors holds
the logits of every position (each sample's, in place), the loss and
grad.<HF name> of every parameter; meta.json the versions and a float64
self-check.

    cd tests/golden && python3 make_sft.py [--out DIR]
"""
import argparse
import copy
import json
import os
import sys

import torch
import transformers
from safetensors.torch import save_file

from make_golden import COMMON, SEED, build_model, hub_config, to_hub_layout

SPEC = dict(architectures=["Qwen3ForCausalLM"], model_type="qwen3",
            vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, head_dim=16,
            max_position_embeddings=128, rope_theta=10000.0, rope_scaling=None,
            tie_word_embeddings=False)
ROWS = [[7, 9], [5, 4, 7]]
PROMPT = [[2, 3], [3, 2, 2]]
T = 16


def batch(vocab):
    g = torch.Generator().manual_seed(SEED + 7)
    ids = torch.randint(0, vocab, (len(ROWS), T), generator=g, dtype=torch.int64)
    pos = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    docs = []   # (row, start, length)
    for b, (lens, prompts) in enumerate(zip(ROWS, PROMPT)):
        at = 0
        for n, p in zip(lens, prompts):
            pos[b, at:at + n] = torch.arange(n)
            labels[b, at + p:at + n] = ids[b, at + p:at + n]
            labels[b, at] = -100
            docs.append((b, at, n))
            at += n
        assert at == T
    return ids, pos, labels, docs


def sft_loss(model, ids, labels, docs, device):
    """TRL's loss, each sample its own sequence; logits [B,T,V] in place."""
    model.zero_grad(set_to_none=True)
    total, count = 0.0, 0
    logits = torch.zeros(ids.shape + (model.config.vocab_size,), dtype=torch.float64)
    for b, s, n in docs:
        x = ids[b:b + 1, s:s + n].to(device)
        lab = labels[b, s:s + n].to(device)
        out = model(input_ids=x).logits[0]
        logits[b, s:s + n] = out.detach().double().cpu()
        keep = lab[1:] != -100
        nll = torch.nn.functional.cross_entropy(out[:-1][keep], lab[1:][keep], reduction="sum")
        total = total + nll
        count += int(keep.sum())
    loss = total / count
    loss.backward()
    grads = {k: p.grad.detach().float().cpu() for k, p in model.named_parameters()}
    return loss.detach(), logits, grads, count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = "cuda" if torch.cuda.is_available() else "cpu"
    d = os.path.join(a.out, "sft")
    mdir = os.path.join(d, "model")
    os.makedirs(mdir, exist_ok=True)
    hub = hub_config(SPEC)
    with open(os.path.join(mdir, "config.json"), "w") as f:
        json.dump(hub, f, indent=2)
        f.write("\n")
    torch.manual_seed(SEED)
    model = build_model(mdir, "cpu")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0.0, hub["initializer_range"])
    ids, pos, labels, docs = batch(SPEC["vocab_size"])
    model64 = copy.deepcopy(model).double()
    model = model.to(device)
    loss, logits, grads, count = sft_loss(model, ids, labels, docs, device)
    expected = {"logits": logits.float().contiguous(), "loss": loss.float().cpu().reshape(1)}
    for n, gr in to_hub_layout(grads, SPEC).items():
        expected["grad." + n] = gr.contiguous()
    save_file({k: t.contiguous() for k, t in to_hub_layout(model.state_dict(), SPEC).items()},
              os.path.join(mdir, "model.safetensors"), metadata={"format": "pt"})
    save_file({"input_ids": ids, "position_ids": pos, "labels": labels}, os.path.join(d, "input.safetensors"))
    save_file(expected, os.path.join(d, "expected.safetensors"))
    loss64, logits64, grads64, _ = sft_loss(model64, ids, labels, docs, "cpu")
    worst = max(((grads64[n].double() - grads[n].double()).norm() / grads64[n].double().norm()).item()
                for n in grads)
    meta = {"name": "sft", "seed": SEED, "rows": ROWS, "prompt_tokens": PROMPT, "targets": count,
            "torch": torch.__version__, "transformers": transformers.__version__,
            "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
            "attn_implementation": model.config._attn_implementation, "tf32": False,
            "loss": loss.item(),
            "checks": {"fp64_loss_abs": abs(loss64.item() - loss.item()),
                       "fp64_logits_max_abs": (logits64 - logits).abs().max().item(),
                       "fp64_grad_max_rel": worst}}
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(json.dumps(meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
