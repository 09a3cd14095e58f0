#!/bin/bash
# tests/bench/attn_cuda.sh [B T nh nkv d gemm_size] — qw's CUDA attention
# and GEMM against PyTorch (SDPA flash and cuDNN, torch.matmul), in one run
# on the same GPU.  Programs from $QW_GPU_BIN (tests/gpu/build.sh) or built
# into build/gpu.
cd "${QW_SRCDIR:-$(dirname "$0")/../..}" || exit 1
bin=${QW_GPU_BIN:-build/gpu}
if [ -z "$QW_GPU_BIN" ]; then bash tests/gpu/build.sh "$bin" || exit 1; fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader 2>/dev/null
"$bin/attn_cuda" "$@" || exit 1
python3 tests/bench/attn_cuda.py "$@"
