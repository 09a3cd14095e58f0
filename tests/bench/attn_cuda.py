#!/usr/bin/env python3
"""attn_cuda.py — the PyTorch side of tests/bench/attn_cuda.sh: causal SDPA
with the FLASH_ATTENTION and CUDNN_ATTENTION backends, forward and
backward, GQA through enable_gqa, timed with CUDA events (median of 30
after warm-up) on random data.  FLOPs as in tests/gpu/test_flash_fwd.cu:
forward 4·B·nh·d·(attended pairs), causal pairs T(T+1)/2 a row and head;
backward 2.5× the forward.  One line per measurement:

    torch sdpa_NAME fwd|bwd B.. T.. H../.. D.. MS ms TF TFLOP/s

    attn_cuda.py [B T nh nkv d]   (default 4 4096 16 8 128)
"""
import sys
import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend

B, T, nh, nkv, d = (list(map(int, sys.argv[1:6])) + [4, 4096, 16, 8, 128][len(sys.argv[1:6]):])


def median_ms(fn, iters=30):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    return sorted(ts)[len(ts) // 2]


q = torch.randn(B, nh, T, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
k = torch.randn(B, nkv, T, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
v = torch.randn(B, nkv, T, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
g = torch.randn(B, nh, T, d, device="cuda", dtype=torch.bfloat16)
flops = 4.0 * B * nh * d * T * (T + 1) / 2
shape = f"B{B} T{T} H{nh}/{nkv} D{d}"
print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}")
for name, be in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
    try:
        with sdpa_kernel(be):
            fwd = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            tf = median_ms(fwd)
            o = fwd()
            tb = median_ms(lambda: torch.autograd.grad(o, (q, k, v), g, retain_graph=True))
        print(f"torch sdpa_{name} fwd {shape} {tf:.3f} ms {flops / tf / 1e9:.1f} TFLOP/s")
        print(f"torch sdpa_{name} bwd {shape} {tb:.3f} ms {2.5 * flops / tb / 1e9:.1f} TFLOP/s")
    except Exception as e:  # a backend that refuses the shape
        print(f"torch sdpa_{name}: not available: {str(e).splitlines()[0][:200]}")
