#!/usr/bin/env python3
"""train_torch.py — training throughput of PyTorch + transformers on a Qwen3
config: the reference side of tests/bench/train_cuda.sh (random weights, fp32
master parameters, bf16 autocast, SDPA attention, fused AdamW, the HF
causal-LM loss, random ids).

    train_torch.py --config FILE [--batch 4] [--seq 4096] [--steps 5]
                   [--warmup 2] [--mode eager|compile] [--lr 3e-4]
                   [--lr-warmup 0] [--lr-steps N] [--min-lr-ratio 0.1]
                   [--weight-decay 0.1] [--clip 1.0]

The optimizer is qw-pretrain's, setting for setting: AdamW β (0.9, 0.95),
eps 1e-8, weight decay only on the matrices (none on the RMSNorm weights nor
the embedding, nor on the LM head when it is the embedding), the learning
rate by qw's warmup-cosine schedule (linear from 0 over --lr-warmup updates,
then cosine from --lr down to --min-lr-ratio·lr at update --lr-steps; default
--lr-steps: warmup + steps), and the global gradient norm clipped at --clip.
train_cuda.sh passes the same values to both sides.

Prints one JSON line: model, mode, batch, seq, warmup, steps, optim (the
settings above), tok_per_s (batch·seq over the median timed step;
tok_per_s_mean over their sum), mfu and mfu_causal (see below),
peak_alloc_bytes and peak_reserved_bytes (torch.cuda.max_memory_allocated /
_reserved over the whole run), the step times, the first and last learning
rates, versions.  Any failure (out of memory included) still prints the
line, with "error", and exits 1.  Progress goes to stderr.  Each step is
timed between two torch.cuda.synchronize() calls.

MFU (flops_per_token, also used for qw's side by train_report.py): the PaLM
convention, per token 6·N + 12·L·nh·d·T, over 989.4 TFLOP/s (H200 dense
bf16), where N counts the matmul parameters a token uses (q/k/v/o
projections, the MLP or the router and k experts, the LM head; not the
embedding gather) and the attention term counts all T keys of every query.
mfu_causal halves the attention term (6·L·nh·d·T: the query-key pairs a
causal kernel computes); qw's own qw_model_matmul_flops counts those.
"""
import argparse
import json
import math
import os
import signal
import statistics
import sys
import time

PEAK_FLOPS = 989.4e12


def flops_per_token(cfg, T, causal=False):
    """Training FLOPs per token of a Qwen3 config.json (dict) at sequence
    length T: the PaLM convention (attention over all T keys), or with
    causal the attention term halved."""
    H, L, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    d = cfg.get("head_dim") or H // nh
    moe = cfg.get("model_type") == "qwen3_moe"
    E = cfg.get("num_experts") or cfg.get("num_local_experts") or 0
    k = cfg.get("num_experts_per_tok", 0)
    step = cfg.get("decoder_sparse_step", 1) or 1
    dense_layers = set(cfg.get("mlp_only_layers") or [])
    n = V * H
    for l in range(L):
        n += H * (2 * nh * d + 2 * nkv * d)
        if moe and E and l not in dense_layers and (l + 1) % step == 0:
            n += E * H + 3 * k * H * cfg["moe_intermediate_size"]
        else:
            n += 3 * H * cfg["intermediate_size"]
    return 6.0 * n + (6.0 if causal else 12.0) * L * nh * d * T


def lr_factor(step, warmup, total, min_ratio):
    """qw-pretrain's warmup-cosine schedule (qw/optim.h): the factor of the
    peak rate for the 0-based update index step."""
    if step < warmup:
        return step / warmup
    if step >= total:
        return min_ratio
    f = 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
    return min_ratio + (1 - min_ratio) * f


def param_groups(model, weight_decay):
    """qw's groups: decay on the matrices, none on the RMSNorm weights (and
    any bias) nor the embedding (nor a tied LM head, the same tensor)."""
    embed = {id(p) for n, p in model.named_parameters() if "embed_tokens" in n}
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        (no_decay if p.ndim < 2 or id(p) in embed else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def log(msg):
    print(f"train_torch: {msg}", file=sys.stderr, flush=True)


def build(torch, cfg):
    from transformers import AutoConfig, AutoModelForCausalLM
    hf = {k: v for k, v in cfg.items() if k not in ("model_type", "torch_dtype", "dtype", "architectures")}
    conf = AutoConfig.for_model(cfg["model_type"], **hf)
    conf.use_cache = False
    with torch.device("cuda"):
        try:
            model = AutoModelForCausalLM.from_config(conf, attn_implementation="sdpa", dtype=torch.float32)
        except TypeError:   # transformers 4.x spelling
            model = AutoModelForCausalLM.from_config(conf, attn_implementation="sdpa", torch_dtype=torch.float32)
    model = model.to(device="cuda", dtype=torch.float32).train()
    assert all(p.dtype == torch.float32 and p.is_cuda for p in model.parameters())
    return model


def run(args, cfg, rec):
    import torch
    import transformers
    rec.update(torch=torch.__version__, transformers=transformers.__version__,
               device=torch.cuda.get_device_name(0))
    t0 = time.perf_counter()
    model = build(torch, cfg)
    rec["params"] = sum(p.numel() for p in model.parameters())
    fwd = torch.compile(model) if args.mode == "compile" else model
    opt = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
                            fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: lr_factor(i, args.lr_warmup, args.lr_steps, args.min_lr_ratio))
    rec["decay_params"] = sum(p.numel() for p in opt.param_groups[0]["params"])
    gen = torch.Generator(device="cuda").manual_seed(0)
    ids = torch.randint(0, cfg["vocab_size"], (args.batch, args.seq), device="cuda", generator=gen)
    rec["setup_s"] = round(time.perf_counter() - t0, 2)
    log(f"{rec['model']} {args.mode}: {rec['params'] / 1e6:.0f}M parameters, setup {rec['setup_s']} s")

    times, losses, lrs = [], [], []
    for i in range(args.warmup + args.steps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(input_ids=ids, labels=ids).loss
        loss.backward()
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
        losses.append(loss.item())
        log(f"{rec['model']} {args.mode} step {i + 1}/{args.warmup + args.steps}: "
            f"{times[-1] * 1e3:.0f} ms, loss {losses[-1]:.4f}")
    timed = times[args.warmup:]
    tokens = args.batch * args.seq
    rec["tok_per_s"] = round(tokens / statistics.median(timed), 1)
    rec["tok_per_s_mean"] = round(tokens * len(timed) / sum(timed), 1)
    rec["mfu"] = round(rec["tok_per_s"] * flops_per_token(cfg, args.seq) / PEAK_FLOPS, 4)
    rec["mfu_causal"] = round(rec["tok_per_s"] * flops_per_token(cfg, args.seq, causal=True) / PEAK_FLOPS, 4)
    rec["first_step_s"] = round(times[0], 2)
    rec["step_ms"] = [round(t * 1e3, 1) for t in timed]
    rec["loss_first_last"] = [round(losses[0], 4), round(losses[-1], 4)]
    rec["lr_first_last"] = [lrs[0], lrs[-1]]


def optim_settings(a):
    """The settings both sides must share, in the form train_report.py compares."""
    return {"lr": a.lr, "schedule": "cosine", "lr_warmup": a.lr_warmup, "lr_steps": a.lr_steps,
            "min_lr_ratio": a.min_lr_ratio, "weight_decay": a.weight_decay, "no_decay": "norms,embedding",
            "betas": [0.9, 0.95], "eps": 1e-8, "clip": a.clip}


def terminated(signum, frame):
    raise TimeoutError(f"stopped by signal {signum} (time limit)")


def main():
    signal.signal(signal.SIGTERM, terminated)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="Qwen3 config.json (pipelines/configs/*.json)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    ap.add_argument("--mode", choices=("eager", "compile"), default="eager")
    ap.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (qw-pretrain --lr)")
    ap.add_argument("--lr-warmup", type=int, default=0, help="linear warmup updates (qw-pretrain --warmup)")
    ap.add_argument("--lr-steps", type=int, help="the schedule's total updates (qw-pretrain --steps; "
                    "default: --warmup + --steps)")
    ap.add_argument("--min-lr-ratio", type=float, default=0.1, help="final lr = R·lr (qw-pretrain --min-lr-ratio)")
    ap.add_argument("--weight-decay", type=float, default=0.1, help="AdamW weight decay on the matrices")
    ap.add_argument("--clip", type=float, default=1.0, help="clip the gradient norm, as qw-pretrain does (0: off)")
    args = ap.parse_args()
    if args.lr_steps is None:
        args.lr_steps = args.warmup + args.steps
    if args.steps < 1 or args.warmup < 1 or args.batch < 1 or args.seq < 2:
        ap.error("--steps, --warmup and --batch must be at least 1, --seq at least 2")
    if not 0 <= args.lr_warmup <= args.lr_steps or args.lr_steps < 1 or not 0 <= args.min_lr_ratio <= 1:
        ap.error("need 0 <= --lr-warmup <= --lr-steps, --lr-steps >= 1 and 0 <= --min-lr-ratio <= 1")
    with open(args.config) as f:
        cfg = json.load(f)
    name = os.path.splitext(os.path.basename(args.config))[0]
    rec = {"model": name, "impl": "torch", "mode": args.mode, "batch": args.batch, "seq": args.seq,
           "steps": args.steps, "warmup": args.warmup, "clip": args.clip,
           "optim": optim_settings(args),
           "flops_per_token": flops_per_token(cfg, args.seq)}
    try:
        run(args, cfg, rec)
    except BaseException as e:   # out of memory, compile failures, Ctrl-C from timeout: still one JSON line
        text = (str(e).strip().splitlines() or [""])[0][:300]
        oom = "out of memory" in str(e).lower() or type(e).__name__ == "OutOfMemoryError"
        rec["error"] = ("out of memory: " if oom else type(e).__name__ + ": ") + text
    try:
        import torch
        if torch.cuda.is_initialized():
            rec["peak_alloc_bytes"] = torch.cuda.max_memory_allocated()
            rec["peak_reserved_bytes"] = torch.cuda.max_memory_reserved()
    except Exception:
        pass
    print(json.dumps(rec), flush=True)
    return 1 if "error" in rec else 0


if __name__ == "__main__":
    sys.exit(main())
