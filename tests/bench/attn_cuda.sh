#!/bin/bash
# tests/bench/attn_cuda.sh [BINDIR] — qw's flash attention (forward:
# test_flash_fwd bench; backward: test_flash_bwd bench when that program is
# in BINDIR) against PyTorch SDPA (flash and cuDNN backends, attn_cuda.py)
# on B4 T4096 H16/8 D128 causal, in one run on the same GPU, then one table
# with the ratios.  BINDIR (default build/gpu) holds the test programs;
# test_flash_fwd is built there with nvcc when missing.
cd "${QW_SRCDIR:-$(dirname "$0")/../..}" || exit 1
bin=${1:-build/gpu}
if [ ! -x "$bin/test_flash_fwd" ]; then
    mkdir -p "$bin" &&
    nvcc -O3 -gencode=arch=compute_90a,code=sm_90a -std=c++17 -Ilibcore/include -Ikernels/cuda -o "$bin/test_flash_fwd" \
        tests/gpu/test_flash_fwd.cu kernels/cuda/flash_fwd.cu || exit 1
fi
py=tests/bench/attn_cuda.py
[ -f "$bin/attn_cuda.py" ] && py=$bin/attn_cuda.py
set -o pipefail
log=$(mktemp)
trap 'rm -f "$log"' EXIT
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader 2>/dev/null
"$bin/test_flash_fwd" bench | tee -a "$log" || exit 1
if [ -x "$bin/test_flash_bwd" ]; then "$bin/test_flash_bwd" bench | tee -a "$log" || exit 1; fi
python3 "$py" 4 4096 16 8 128 | tee -a "$log" || exit 1
awk '
/^fwd B4 T4096 H16\/8 D128 docs1 / { qf = $(NF-1) }
/^fwd B4 T4096 H16\/8 D128 docs4 / { qf4 = $(NF-1) }
/^bwd TFLOP\/s:/ { qb = $3 }
/^torch sdpa_flash fwd/ { ff = $(NF-1) }
/^torch sdpa_flash bwd/ { fb = $(NF-1) }
/^torch sdpa_cudnn fwd/ { cf = $(NF-1) }
/^torch sdpa_cudnn bwd/ { cb = $(NF-1) }
function cell(x) { return x == "" ? "-" : x }
function ratio(a, b) { return (a == "" || b == "") ? "-" : sprintf("%.2f", a / b) }
END {
    print ""
    print "B4 T4096 H16/8 D128 causal, TFLOP/s (bwd FLOPs = 2.5 x fwd)"
    printf "%-5s %8s %11s %11s %9s %9s\n", "pass", "qw", "sdpa_flash", "sdpa_cudnn", "qw/flash", "qw/cudnn"
    printf "%-5s %8s %11s %11s %9s %9s\n", "fwd", cell(qf), cell(ff), cell(cf), ratio(qf, ff), ratio(qf, cf)
    printf "%-5s %8s %11s %11s %9s %9s\n", "bwd", cell(qb), cell(fb), cell(cb), ratio(qb, fb), ratio(qb, cb)
    printf "qw fwd with 4 documents a row: %s TFLOP/s (attended pairs counted)\n", cell(qf4)
}' "$log"
