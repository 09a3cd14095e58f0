/* kernels/cuda/internal.cuh — internal to the CUDA backend: error checks,
 * launch helpers, element loads for fp32 and bf16, and the entry points the
 * table in ops.cu gathers from the other files. */
#ifndef QW_CUDA_INTERNAL_CUH
#define QW_CUDA_INTERNAL_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "qwcuda.h"

/* Fatal: print "qw: cuda: what: reason" and exit 1 (see qwcuda.h). */
[[noreturn]] void qw_cuda_fatal(const char *what, const char *reason);
#define QW_CU(call) do { cudaError_t e_ = (call); \
    if (e_ != cudaSuccess) qw_cuda_fatal(#call, cudaGetErrorString(e_)); } while (0)
#define QW_LAUNCHED(name) do { cudaError_t e_ = cudaGetLastError(); \
    if (e_ != cudaSuccess) qw_cuda_fatal(name, cudaGetErrorString(e_)); } while (0)

static inline unsigned qw_blocks(size_t n, unsigned threads) { return (unsigned)((n + threads - 1) / threads); }

__device__ __forceinline__ float qw_ld(const float *p) { return *p; }
__device__ __forceinline__ float qw_ld(const __nv_bfloat16 *p) { return __bfloat162float(*p); }
__device__ __forceinline__ void qw_st(float *p, float v) { *p = v; }
__device__ __forceinline__ void qw_st(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

__device__ __forceinline__ float qw_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* attention.cu */
template <typename T>
void qw_cuda_attn_fwd_t(T *o, float *lse, const T *q, const T *k, const T *v, const int32_t *kv_start,
                        int B, int T_, int nh, int nkv, int d, float scale);
template <typename T>
void qw_cuda_attn_bwd_t(T *dq, T *dk, T *dv, const T *dout, const T *q, const T *k, const T *v, const T *o,
                        const float *lse, const int32_t *kv_start, int B, int T_, int nh, int nkv, int d,
                        float scale);

/* flash_bf16.cu: the tensor-core forward; 0 (nothing done) when d does not
 * suit it (d % 16 or d > 128). */
int qw_cuda_flash_fwd_bf16(__nv_bfloat16 *o, float *lse, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                           const __nv_bfloat16 *v, const int32_t *kv_start, int B, int T, int nh, int nkv, int d,
                           float scale);

/* ops.cu: the cuBLAS handle, made by qw_ops_cuda(). */
#include <cublasLt.h>
extern cublasLtHandle_t qw_cuda_lt;

#endif
