/* kernels/cuda/internal.cuh — internal to the CUDA backend: error checks,
 * launch helpers, element and vector loads for fp32 and bf16, reductions,
 * the backend state (cuBLAS handles, determinism, scratch) and the
 * functions through which each file fills its part of the op tables.
 *
 * Every op of qw/ops.h is written once, as a template over the activation
 * type T (float or __nv_bfloat16); qw_cuda_fill_*(t) puts the instances for
 * t->act_size into the table. */
#ifndef QW_CUDA_INTERNAL_CUH
#define QW_CUDA_INTERNAL_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "qwcuda.h"
extern "C" {
#include "qw/ops.h"
}

typedef __nv_bfloat16 bf16;

#define TPB 256   /* threads per block for plain launches */

/* Fatal: print "qw: cuda: what: reason" and exit 1 (see qwcuda.h). */
[[noreturn]] void qw_cuda_fatal(const char *what, const char *reason);
#define QW_CU(call) do { cudaError_t e_ = (call); \
    if (e_ != cudaSuccess) qw_cuda_fatal(#call, cudaGetErrorString(e_)); } while (0)
#define QW_LAUNCHED(name) do { cudaError_t e_ = cudaGetLastError(); \
    if (e_ != cudaSuccess) qw_cuda_fatal(name, cudaGetErrorString(e_)); } while (0)

static inline unsigned qw_blocks(size_t n, unsigned threads) { return (unsigned)((n + threads - 1) / threads); }

/* Whether every pointer is aligned to `bytes` (vector loads). */
static inline bool qw_aligned(size_t bytes, const void *a, const void *b = 0, const void *c = 0, const void *d = 0)
{
    return (((uintptr_t)a | (uintptr_t)b | (uintptr_t)c | (uintptr_t)d) & (bytes - 1)) == 0;
}

__device__ __forceinline__ float qw_ld(const float *p) { return *p; }
__device__ __forceinline__ float qw_ld(const bf16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void qw_st(float *p, float v) { *p = v; }
__device__ __forceinline__ void qw_st(bf16 *p, float v) { *p = __float2bfloat16_rn(v); }

/* V consecutive elements of T, moved as loads or stores of up to 16 bytes
 * (the address must be aligned to min(16, V·sizeof(T)) bytes), converted
 * to or from fp32. */
template <int B> struct qw_raw;
template <> struct qw_raw<2> { typedef unsigned short t; };
template <> struct qw_raw<4> { typedef unsigned t; };
template <> struct qw_raw<8> { typedef uint2 t; };
template <> struct qw_raw<16> { typedef uint4 t; };

template <int V, typename T>
__device__ __forceinline__ void qw_ldv(float *f, const T *p)
{
    constexpr int C = V * sizeof(T) > 16 ? 16 / sizeof(T) : V;
    typedef typename qw_raw<C * sizeof(T)>::t R;
#pragma unroll
    for (int c = 0; c < V; c += C) {
        R u = *(const R *)(p + c);
        const T *e = (const T *)&u;
#pragma unroll
        for (int i = 0; i < C; i++) f[c + i] = qw_ld(e + i);
    }
}

template <int V, typename T>
__device__ __forceinline__ void qw_stv(T *p, const float *f)
{
    constexpr int C = V * sizeof(T) > 16 ? 16 / sizeof(T) : V;
    typedef typename qw_raw<C * sizeof(T)>::t R;
#pragma unroll
    for (int c = 0; c < V; c += C) {
        R u;
        T *e = (T *)&u;
#pragma unroll
        for (int i = 0; i < C; i++) qw_st(e + i, f[c + i]);
        *(R *)(p + c) = u;
    }
}

/* Elements per 16-byte vector. */
template <typename T> constexpr int qw_vec() { return 16 / (int)sizeof(T); }

__device__ __forceinline__ void qw_atomic_add(float *p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void qw_atomic_add(bf16 *p, float v) { atomicAdd(p, __float2bfloat16_rn(v)); }

__device__ __forceinline__ float qw_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over the whole block (blockDim.x a multiple of 32, at most 1024); sh
 * holds 32 floats.  Every thread gets the total, summed in a fixed order. */
__device__ __forceinline__ float qw_block_sum(float v, float *sh)
{
    v = qw_warp_sum(v);
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    float t = 0;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) t += sh[w];
    __syncthreads();
    return t;
}

/* ---- backend state (ops.cu) ---- */
extern int qw_cuda_deterministic;   /* set_deterministic */
extern int qw_cuda_batch_invariant; /* set_batch_invariant */
/* A device buffer of at least `bytes` owned by the backend (grown on
 * demand, counted by mem_stats): per-block partial sums.  Valid until the
 * next call; every op runs on the default stream, in order. */
void *qw_cuda_scratch(size_t bytes);
extern unsigned long long qw_cuda_scratch_epoch;   /* counts the scratch's replacements (graph staleness) */
/* cudaMalloc / cudaFree counted by mem_stats (library workspaces). */
void *qw_cuda_malloc(size_t bytes);
void qw_cuda_release(void *p);

#include <cublasLt.h>
#include <cublas_v2.h>
extern cublasLtHandle_t qw_cuda_lt;
extern cublasHandle_t qw_cuda_blas;   /* pedantic math: fp32 GEMMs without TF32 */

/* ---- each file fills its ops into a table of t->act_size ---- */
void qw_cuda_fill_elementwise(qw_ops *t);   /* elementwise.cu: conversions, embedding, SwiGLU, rows */
void qw_cuda_fill_norm(qw_ops *t);          /* norm.cu: RMSNorm, RoPE table, q/k norm + RoPE */
void qw_cuda_fill_attention(qw_ops *t);     /* attention.cu */
void qw_cuda_fill_moe(qw_ops *t);           /* moe.cu: routing, statistics, dispatch */
void qw_cuda_fill_loss(qw_ops *t);          /* loss.cu: cross-entropy */
void qw_cuda_fill_optim(qw_ops *t);         /* optim.cu: sumsq, AdamW */
void qw_cuda_fill_decode(qw_ops *t);        /* decode.cu: K/V cache writes, paged attention, sampling */

/* Dispatch on the activation type of a table. */
#define QW_FILL_BOTH(fn) \
    void qw_cuda_fill_##fn(qw_ops *t) { if (t->act_size == 2) fill<bf16>(t); else fill<float>(t); }

#endif
