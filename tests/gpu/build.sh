#!/bin/bash
# tests/gpu/build.sh OUTDIR — build the GPU test and bench programs against
# libcore/libqwcore.a and kernels/cuda/libqwcuda.a (run `make` first).
# They link only what they use; OpenBLAS and the CUDA runtime statically,
# so that a binary built here also runs on a GPU machine that lacks the
# project's build dependencies (cuBLAS comes from /usr/local/cuda/lib64).
set -e
out=${1:?usage: build.sh OUTDIR}
mkdir -p "$out"
cuda=${CUDA_HOME:-/usr/local/cuda}
flags="-O2 -g -std=gnu11 -fopenmp -Wall -DQW_HAVE_CUDA=1 -Ilibcore/include -Ikernels/cuda -Itests/unit"
# NCCL when the build has it (qw/comm.h's "nccl" kind, kernels/cuda/nccl.cu)
nccl=
if [ -f "$cuda/include/nccl.h" ] || [ -f /usr/include/nccl.h ]; then nccl=-lnccl; flags="$flags -DQW_HAVE_NCCL=1"; fi
libs="libcore/libqwcore.a kernels/cuda/libqwcuda.a -L$cuda/lib64 $nccl -lcublasLt -lcublas -lcudart_static
      -Wl,-Bstatic -lopenblas -Wl,-Bdynamic -lstdc++ -ldl -lrt -lm -lpthread"
${CC:-cc} $flags -o "$out/test_ops" tests/gpu/test_ops.c $libs
# The flash-attention tests carry their own host references: each links its
# kernel file alone.
for k in fwd bwd; do
    ${NVCC:-nvcc} -O3 -gencode=arch=compute_90a,code=sm_90a -std=c++17 --default-stream per-thread -Ilibcore/include -Ikernels/cuda \
        -o "$out/test_flash_$k" "tests/gpu/test_flash_$k.cu" "kernels/cuda/flash_$k.cu"
done
