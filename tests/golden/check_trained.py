#!/usr/bin/env python3
"""check_trained.py — does transformers load a checkpoint qw trained, and give
the same logits as qw-eval forward?  Run on the GPU machine (torch +
transformers), fp32, eager attention, TF32 off.

  check_trained.py IN.safetensors CKPT_DIR QW_OUT.safetensors [CKPT_DIR QW_OUT ...]

IN holds input_ids [B,T]; each QW_OUT is `qw-eval forward --model CKPT_DIR
--input IN --output QW_OUT`.  For each checkpoint it prints the largest
|Δlogits| relative to the largest |logit| and the loss difference, and
exits 1 if either exceeds the tolerances of doc/design.md, Numerics (1e-4, 1e-5).
"""
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
ids = load_file(sys.argv[1])["input_ids"].long()
bad = 0
for ckpt, out in zip(sys.argv[2::2], sys.argv[3::2]):
    ref = load_file(out)
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        o = model(input_ids=ids, labels=ids)
    scale = o.logits.abs().max().item()
    dl = (o.logits - ref["logits"]).abs().max().item() / scale
    dloss = abs(o.loss.item() - ref["loss"].item())
    ok = dl <= 1e-4 and dloss <= 1e-5
    bad += not ok
    print(f"{ckpt}: {type(model).__name__} logits max|d|/max|logit| = {dl:.2e}, loss {o.loss.item():.6f} "
          f"vs qw {ref['loss'].item():.6f} (|d| = {dloss:.1e}) {'ok' if ok else 'MISMATCH'}")
sys.exit(1 if bad else 0)
