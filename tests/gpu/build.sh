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
libs="libcore/libqwcore.a kernels/cuda/libqwcuda.a -L$cuda/lib64 -lcublasLt -lcublas -lcudart_static
      -Wl,-Bstatic -lopenblas -Wl,-Bdynamic -lstdc++ -ldl -lrt -lm -lpthread"
for p in tests/gpu/test_ops.c tests/bench/attn_cuda.c; do
    ${CC:-cc} $flags -o "$out/$(basename "$p" .c)" "$p" $libs
done
