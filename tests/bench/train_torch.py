#!/usr/bin/env python3
"""train_torch.py — training throughput of PyTorch + transformers on a Qwen3
config: the reference side of tests/bench/train_cuda.sh, measured as
reference/qwen3.md §9 did (random weights, fp32 master parameters, bf16
autocast, SDPA attention, fused AdamW, the HF causal-LM loss, random ids).

    train_torch.py --config FILE [--batch 4] [--seq 4096] [--steps 10]
                   [--warmup 3] [--mode eager|compile] [--clip 1.0]

Prints one JSON line: model, mode, batch, seq, tok_per_s (batch·seq over the
median timed step; tok_per_s_mean over their sum), mfu, peak_alloc_bytes and
peak_reserved_bytes (torch.cuda.max_memory_allocated / _reserved over the
whole run), the step times, versions.  Any failure (out of memory included)
still prints the line, with "error", and exits 1.  Progress goes to stderr.

MFU (flops_per_token, also used for qw's side by train_cuda.sh): per token
6·N + 12·L·nh·d·T over 989.4 TFLOP/s (H200 dense bf16), where N counts the
matmul parameters a token uses (q/k/v/o projections, the MLP or the router
and k experts, the LM head; not the embedding gather) and the attention
term counts all T keys, not only the causal half (reference/qwen3.md §9: it
reproduces the table's MFU).  qw's own qw_model_matmul_flops counts only
the attended pairs, so its attention term is about half of this one.
"""
import argparse
import json
import os
import signal
import statistics
import sys
import time

PEAK_FLOPS = 989.4e12


def flops_per_token(cfg, T):
    """Training FLOPs per token of a Qwen3 config.json (dict) at sequence length T (§9)."""
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
    return 6.0 * n + 12.0 * L * nh * d * T


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
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=0.1, fused=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    ids = torch.randint(0, cfg["vocab_size"], (args.batch, args.seq), device="cuda", generator=gen)
    rec["setup_s"] = round(time.perf_counter() - t0, 2)
    log(f"{rec['model']} {args.mode}: {rec['params'] / 1e6:.0f}M parameters, setup {rec['setup_s']} s")

    times, losses = [], []
    for i in range(args.warmup + args.steps):
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = fwd(input_ids=ids, labels=ids).loss
        loss.backward()
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
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
    rec["first_step_s"] = round(times[0], 2)
    rec["step_ms"] = [round(t * 1e3, 1) for t in timed]
    rec["loss_first_last"] = [round(losses[0], 4), round(losses[-1], 4)]


def terminated(signum, frame):
    raise TimeoutError(f"stopped by signal {signum} (time limit)")


def main():
    signal.signal(signal.SIGTERM, terminated)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="Qwen3 config.json (pipelines/configs/*.json)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=10, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    ap.add_argument("--mode", choices=("eager", "compile"), default="eager")
    ap.add_argument("--clip", type=float, default=1.0, help="clip the gradient norm, as qw-pretrain does (0: off)")
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 1 or args.batch < 1 or args.seq < 2:
        ap.error("--steps, --warmup and --batch must be at least 1, --seq at least 2")
    with open(args.config) as f:
        cfg = json.load(f)
    name = os.path.splitext(os.path.basename(args.config))[0]
    rec = {"model": name, "impl": "torch", "mode": args.mode, "batch": args.batch, "seq": args.seq,
           "steps": args.steps, "warmup": args.warmup, "clip": args.clip,
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
