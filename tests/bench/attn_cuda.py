#!/usr/bin/env python3
"""attn_cuda.py — the PyTorch side of tests/bench/attn_cuda.sh: SDPA (flash
and cuDNN backends) forward and backward, and torch.matmul, timed with CUDA
events on the same shapes and the same FLOP convention as attn_cuda.c.

    attn_cuda.py [B T nh nkv d gemm_size]   (default 4 4096 16 8 128 8192)
"""
import sys
import torch
from torch.nn.attention import sdpa_kernel, SDPBackend
import torch.nn.functional as F

B, T, nh, nkv, d, S = (list(map(int, sys.argv[1:7])) + [4, 4096, 16, 8, 128, 8192][len(sys.argv[1:7]):])
dev = "cuda"


def timed(fn, iters):
    fn()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for _ in range(iters):
        fn()
    b.record()
    torch.cuda.synchronize()
    return a.elapsed_time(b) / iters / 1e3


q = torch.randn(B, nh, T, d, device=dev, dtype=torch.bfloat16, requires_grad=True)
k = torch.randn(B, nkv, T, d, device=dev, dtype=torch.bfloat16, requires_grad=True)
v = torch.randn(B, nkv, T, d, device=dev, dtype=torch.bfloat16, requires_grad=True)
g = torch.randn(B, nh, T, d, device=dev, dtype=torch.bfloat16)
f = 4.0 * B * nh * T * T * d / 2
for name, be in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
    try:
        with sdpa_kernel(be):
            fwd = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            tf = timed(fwd, 10)
            o = fwd()
            tb = timed(lambda: torch.autograd.grad(o, (q, k, v), g, retain_graph=True), 10)
        print(f"torch sdpa_{name} fwd B{B} T{T} H{nh}/{nkv} D{d} causal {tf*1e3:.3f} ms {f/tf/1e12:.2f} TFLOP/s")
        print(f"torch sdpa_{name} bwd B{B} T{T} H{nh}/{nkv} D{d} causal {tb*1e3:.3f} ms {2.5*f/tb/1e12:.2f} TFLOP/s")
    except Exception as e:  # a backend that refuses the shape
        print(f"torch sdpa_{name}: not available: {str(e).splitlines()[0][:200]}")

A = torch.randn(S, S, device=dev, dtype=torch.bfloat16)
Bm = torch.randn(S, S, device=dev, dtype=torch.bfloat16)
fg = 2.0 * S ** 3
t = timed(lambda: A @ Bm.t(), 10)
print(f"torch matmul_bf16 {S}^3 (x·Wᵀ) {t*1e3:.3f} ms {fg/t/1e12:.1f} TFLOP/s")
torch.backends.cuda.matmul.allow_tf32 = False
Af, Bf = A.float(), Bm.float()
t = timed(lambda: Af @ Bf.t(), 3)
print(f"torch matmul_fp32 {S}^3 (TF32 off) {t*1e3:.3f} ms {fg/t/1e12:.1f} TFLOP/s")
