/* flash_bf16.cu — tiled attention forward for bf16 on tensor cores (WMMA,
 * 16×16×16 bf16 → fp32), used by qw_cuda_attn_fwd_bf16 when d is a
 * multiple of 16 and at most 128.
 *
 * A block of 4 warps takes 64 queries of one (row, head); each warp owns
 * 16 of them.  Keys and values stream through shared memory 64 at a time,
 * from the block's first segment start to its last query.  Per tile a warp
 * computes S = Q·Kᵀ (fp32, in shared memory), masks it to each query's
 * range [kv_start, i], updates the online softmax (two lanes per row), and
 * adds P·V into its fp32 output rows, which stay in shared memory so that
 * the per-row rescale is plain indexing.  A first tensor-core version: no
 * asynchronous copies, no wgmma, the output round-trips shared memory. */
#include <mma.h>

#include "internal.cuh"

using namespace nvcuda;

#define BQ 64    /* queries per block */
#define BK 64    /* keys per tile */
#define NW 4     /* warps; 16 queries each */
#define SLD (BK + 4)

struct flash_smem {
    int ld, old;          /* bf16 tile row stride, fp32 output row stride */
    size_t q, k, v, s, p, o, bytes;
};

static flash_smem layout(int d)
{
    flash_smem m;
    m.ld = d + 8;
    m.old = d + 4;
    m.q = 0;
    m.k = m.q + (size_t)BQ * m.ld * 2;
    m.v = m.k + (size_t)BK * m.ld * 2;
    m.s = m.v + (size_t)BK * m.ld * 2;
    m.p = m.s + (size_t)NW * 16 * SLD * 4;
    m.o = m.p + (size_t)NW * 16 * (BK + 8) * 2;
    m.bytes = m.o + (size_t)NW * 16 * m.old * 4;
    return m;
}

__global__ void flash_fwd_kernel(__nv_bfloat16 *o, float *lse, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                                 const __nv_bfloat16 *v, const int32_t *ks, int T, int nh, int nkv, int d,
                                 float scale, flash_smem L)
{
    extern __shared__ __align__(128) unsigned char sm[];
    __nv_bfloat16 *Qs = (__nv_bfloat16 *)(sm + L.q), *Ks = (__nv_bfloat16 *)(sm + L.k);
    __nv_bfloat16 *Vs = (__nv_bfloat16 *)(sm + L.v);
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *Sw = (float *)(sm + L.s) + warp * 16 * SLD;
    __nv_bfloat16 *Pw = (__nv_bfloat16 *)(sm + L.p) + warp * 16 * (BK + 8);
    float *Ow = (float *)(sm + L.o) + warp * 16 * L.old;
    int q0 = blockIdx.x * BQ, h = blockIdx.y, b = blockIdx.z, kh = h / (nh / nkv), ld = L.ld;
    const int32_t *ksb = ks + (size_t)b * T;

    for (int idx = threadIdx.x; idx < BQ * d; idx += blockDim.x) {
        int r = idx / d, c = idx % d, i = q0 + r;
        Qs[r * ld + c] = i < T ? q[(((size_t)b * T + i) * nh + h) * d + c] : __float2bfloat16(0.0f);
    }
    for (int idx = lane; idx < 16 * d; idx += 32) Ow[(idx / d) * L.old + idx % d] = 0;
    __shared__ int jlo;
    if (threadIdx.x == 0) {
        int lo = ksb[q0];
        for (int r = 1; r < BQ && q0 + r < T; r++) lo = min(lo, ksb[q0 + r]);
        jlo = lo / BK * BK;
    }
    __syncthreads();
    int qhi = min(q0 + BQ, T) - 1;
    int r = lane >> 1, half = lane & 1, i = q0 + warp * 16 + r;
    int ki = i < T ? ksb[i] : 0;
    float m = -INFINITY, l = 0;
    for (int kt = jlo; kt <= qhi; kt += BK) {
        __syncthreads();
        for (int idx = threadIdx.x; idx < BK * d; idx += blockDim.x) {
            int rr = idx / d, c = idx % d, j = kt + rr;
            size_t g = (((size_t)b * T + j) * nkv + kh) * d + c;
            __nv_bfloat16 z = __float2bfloat16(0.0f);
            Ks[rr * ld + c] = j < T ? k[g] : z;
            Vs[rr * ld + c] = j < T ? v[g] : z;
        }
        __syncthreads();
        for (int nt = 0; nt < BK / 16; nt++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kk = 0; kk < d; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
                wmma::load_matrix_sync(fa, Qs + warp * 16 * ld + kk, ld);
                wmma::load_matrix_sync(fb, Ks + nt * 16 * ld + kk, ld);
                wmma::mma_sync(acc, fa, fb, acc);
            }
            wmma::store_matrix_sync(Sw + nt * 16, acc, SLD, wmma::mem_row_major);
        }
        __syncwarp();
        /* online softmax: lanes 2r, 2r+1 hold row r's columns [32·half, 32·half+32) */
        float mx = -INFINITY;
        for (int c = half * 32; c < half * 32 + 32; c++) {
            int j = kt + c;
            float s = (i < T && j >= ki && j <= i) ? Sw[r * SLD + c] * scale : -INFINITY;
            Sw[r * SLD + c] = s;
            mx = fmaxf(mx, s);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        float mn = fmaxf(m, mx), corr = mn == -INFINITY ? 1.0f : expf(m - mn), sum = 0;
        for (int c = half * 32; c < half * 32 + 32; c++) {
            float p = mn == -INFINITY ? 0.0f : expf(Sw[r * SLD + c] - mn);
            sum += p;
            Pw[r * (BK + 8) + c] = __float2bfloat16_rn(p);
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        l = l * corr + sum;
        m = mn;
        for (int c = half * (d / 2); c < (half + 1) * (d / 2); c++) Ow[r * L.old + c] *= corr;
        __syncwarp();
        for (int nt = 0; nt < d / 16; nt++) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::load_matrix_sync(acc, Ow + nt * 16, L.old, wmma::mem_row_major);
            for (int kk = 0; kk < BK; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> fb;
                wmma::load_matrix_sync(fa, Pw + kk, BK + 8);
                wmma::load_matrix_sync(fb, Vs + kk * ld + nt * 16, ld);
                wmma::mma_sync(acc, fa, fb, acc);
            }
            wmma::store_matrix_sync(Ow + nt * 16, acc, L.old, wmma::mem_row_major);
        }
        __syncwarp();
    }
    if (i < T) {
        size_t go = (((size_t)b * T + i) * nh + h) * d;
        float inv = 1.0f / l;
        for (int c = half * (d / 2); c < (half + 1) * (d / 2); c++) o[go + c] = __float2bfloat16_rn(Ow[r * L.old + c] * inv);
        if (!half) lse[((size_t)b * T + i) * nh + h] = m + logf(l);
    }
}

int qw_cuda_flash_fwd_bf16(__nv_bfloat16 *o, float *lse, const __nv_bfloat16 *q, const __nv_bfloat16 *k,
                           const __nv_bfloat16 *v, const int32_t *kv_start, int B, int T, int nh, int nkv, int d,
                           float scale)
{
    if (d % 16 || d > 128) return 0;
    flash_smem L = layout(d);
    static size_t opted;
    if (L.bytes > opted) {
        QW_CU(cudaFuncSetAttribute(flash_fwd_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)L.bytes));
        opted = L.bytes;
    }
    flash_fwd_kernel<<<dim3(qw_blocks(T, BQ), nh, B), 32 * NW, L.bytes>>>(o, lse, q, k, v, kv_start, T, nh, nkv, d,
                                                                         scale, L);
    QW_LAUNCHED("flash attention forward (bf16)");
    return 1;
}
