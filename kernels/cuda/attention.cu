/* attention.cu — causal GQA attention with document segments, one warp per
 * query (forward, dq) or per key (dk, dv), fp32 arithmetic over fp32 or
 * bf16 storage.  Each lane holds d/32 elements of its row (d ≤ 256); a
 * score is a warp-wide dot product; the forward keeps an online softmax and
 * saves the log-sum-exp, the backward recomputes probabilities from it.
 * dk and dv are summed per key by one warp over all queries of the group,
 * so nothing is accumulated with atomics and the result is deterministic.
 * This is the correctness baseline, not the fast kernel: it reads every key
 * from L2 once per query, without tensor cores. */
#include "internal.cuh"

#define MAXL 8           /* elements per lane: d ≤ 32·MAXL */
#define WARPS 4          /* warps (queries or keys) per block */

template <typename T>
__device__ __forceinline__ void load_row(float *r, const T *p, int d, int lane)
{
#pragma unroll
    for (int t = 0; t < MAXL; t++) r[t] = t * 32 + lane < d ? qw_ld(p + t * 32 + lane) : 0.0f;
}

__device__ __forceinline__ float dot_row(const float *a, const float *b)
{
    float s = 0;
#pragma unroll
    for (int t = 0; t < MAXL; t++) s += a[t] * b[t];
    return qw_warp_sum(s);
}

template <typename T>
__device__ __forceinline__ float dot_mem(const float *a, const T *p, int d, int lane)
{
    float s = 0;
#pragma unroll
    for (int t = 0; t < MAXL; t++)
        if (t * 32 + lane < d) s += a[t] * qw_ld(p + t * 32 + lane);
    return qw_warp_sum(s);
}

template <typename T>
__device__ __forceinline__ void store_row(T *p, const float *r, float mul, int d, int lane)
{
#pragma unroll
    for (int t = 0; t < MAXL; t++)
        if (t * 32 + lane < d) qw_st(p + t * 32 + lane, r[t] * mul);
}

template <typename T>
__global__ void attn_fwd_kernel(T *o, float *lse, const T *q, const T *k, const T *v, const int32_t *ks,
                                int B, int T_, int nh, int nkv, int d, float scale)
{
    int lane = threadIdx.x & 31, i = blockIdx.x * WARPS + (threadIdx.x >> 5), h = blockIdx.y, b = blockIdx.z;
    if (i >= T_) return;
    int kh = h / (nh / nkv);
    size_t qo = (((size_t)b * T_ + i) * nh + h) * d;
    float qr[MAXL], acc[MAXL];
    load_row(qr, q + qo, d, lane);
#pragma unroll
    for (int t = 0; t < MAXL; t++) acc[t] = 0;
    float m = -INFINITY, l = 0;
    for (int j = ks[(size_t)b * T_ + i]; j <= i; j++) {
        size_t ko = (((size_t)b * T_ + j) * nkv + kh) * d;
        float s = dot_mem(qr, k + ko, d, lane) * scale;
        float mn = fmaxf(m, s), c = expf(m - mn), p = expf(s - mn);
        l = l * c + p;
#pragma unroll
        for (int t = 0; t < MAXL; t++)
            acc[t] = acc[t] * c + (t * 32 + lane < d ? p * qw_ld(v + ko + t * 32 + lane) : 0.0f);
        m = mn;
    }
    store_row(o + qo, acc, 1.0f / l, d, lane);
    if (lane == 0) lse[((size_t)b * T_ + i) * nh + h] = m + logf(l);
}

/* dq for one query: Σ_j p_ij (dout_i·v_j − dout_i·o_i) · scale · k_j. */
template <typename T>
__global__ void attn_dq_kernel(T *dq, const T *dout, const T *q, const T *k, const T *v, const T *o,
                               const float *lse, const int32_t *ks, int B, int T_, int nh, int nkv, int d,
                               float scale)
{
    int lane = threadIdx.x & 31, i = blockIdx.x * WARPS + (threadIdx.x >> 5), h = blockIdx.y, b = blockIdx.z;
    if (i >= T_) return;
    int kh = h / (nh / nkv);
    size_t qo = (((size_t)b * T_ + i) * nh + h) * d;
    float qr[MAXL], gr[MAXL], acc[MAXL];
    load_row(qr, q + qo, d, lane);
    load_row(gr, dout + qo, d, lane);
    float D = dot_mem(gr, o + qo, d, lane), L = lse[((size_t)b * T_ + i) * nh + h];
#pragma unroll
    for (int t = 0; t < MAXL; t++) acc[t] = 0;
    for (int j = ks[(size_t)b * T_ + i]; j <= i; j++) {
        size_t ko = (((size_t)b * T_ + j) * nkv + kh) * d;
        float p = expf(dot_mem(qr, k + ko, d, lane) * scale - L);
        float ds = p * (dot_mem(gr, v + ko, d, lane) - D) * scale;
#pragma unroll
        for (int t = 0; t < MAXL; t++)
            if (t * 32 + lane < d) acc[t] += ds * qw_ld(k + ko + t * 32 + lane);
    }
    store_row(dq + qo, acc, 1.0f, d, lane);
}

/* dk, dv for one key of one kv head: over the group's query heads and every
 * query i ≥ j whose segment reaches j. */
template <typename T>
__global__ void attn_dkv_kernel(T *dk, T *dv, const T *dout, const T *q, const T *k, const T *v, const T *o,
                                const float *lse, const int32_t *ks, int B, int T_, int nh, int nkv, int d,
                                float scale)
{
    int lane = threadIdx.x & 31, j = blockIdx.x * WARPS + (threadIdx.x >> 5), kh = blockIdx.y, b = blockIdx.z;
    if (j >= T_) return;
    int group = nh / nkv;
    size_t ko = (((size_t)b * T_ + j) * nkv + kh) * d;
    float kr[MAXL], vr[MAXL], ak[MAXL], av[MAXL];
    load_row(kr, k + ko, d, lane);
    load_row(vr, v + ko, d, lane);
#pragma unroll
    for (int t = 0; t < MAXL; t++) ak[t] = av[t] = 0;
    for (int h = kh * group; h < (kh + 1) * group; h++)
        for (int i = j; i < T_; i++) {
            if (ks[(size_t)b * T_ + i] > j) continue;
            size_t qo = (((size_t)b * T_ + i) * nh + h) * d;
            float p = expf(dot_mem(kr, q + qo, d, lane) * scale - lse[((size_t)b * T_ + i) * nh + h]);
            float gv = dot_mem(vr, dout + qo, d, lane), D = 0, g[MAXL];
            load_row(g, dout + qo, d, lane);
            D = dot_mem(g, o + qo, d, lane);
            float ds = p * (gv - D) * scale;
#pragma unroll
            for (int t = 0; t < MAXL; t++) {
                av[t] += p * g[t];
                if (t * 32 + lane < d) ak[t] += ds * qw_ld(q + qo + t * 32 + lane);
            }
        }
    store_row(dk + ko, ak, 1.0f, d, lane);
    store_row(dv + ko, av, 1.0f, d, lane);
}

/* bf16 with head_dim 64 or 128 runs the tensor-core flash kernels
 * (flash_fwd.cu, flash_bwd.cu); everything else, the fp32 table included,
 * the kernels above, which need no workspace. */
template <typename T>
static bool use_flash(int d) { return sizeof(T) == 2 && (d == 64 || d == 128); }

template <typename T>
static size_t attn_workspace(int B, int T_, int nh, int d)
{
    return use_flash<T>(d) ? qw_cuda_flash_workspace(B, T_, nh, d) : 0;
}

template <typename T>
static void attn_fwd(void *o, float *lse, const void *q, const void *k, const void *v, const int32_t *kv_start,
                     int B, int T_, int nh, int nkv, int d, float scale, void *ws, size_t ws_bytes)
{
    if (use_flash<T>(d)) {
        qw_cuda_flash_fwd((uint16_t *)o, lse, (const uint16_t *)q, (const uint16_t *)k, (const uint16_t *)v, kv_start,
                          B, T_, nh, nkv, d, scale);
        return;
    }
    if (d > 32 * MAXL) qw_cuda_fatal("attention", "head dim above 256");
    dim3 grid(qw_blocks(T_, WARPS), nh, B);
    attn_fwd_kernel<T><<<grid, 32 * WARPS>>>((T *)o, lse, (const T *)q, (const T *)k, (const T *)v, kv_start, B, T_,
                                             nh, nkv, d, scale);
    QW_LAUNCHED("attention forward");
}

template <typename T>
static void attn_bwd(void *dq, void *dk, void *dv, const void *dout, const void *q, const void *k, const void *v,
                     const void *o, const float *lse, const int32_t *kv_start, int B, int T_, int nh, int nkv, int d,
                     float scale, void *ws, size_t ws_bytes)
{
    if (use_flash<T>(d)) {
        qw_cuda_flash_bwd((uint16_t *)dq, (uint16_t *)dk, (uint16_t *)dv, (const uint16_t *)dout, (const uint16_t *)q,
                          (const uint16_t *)k, (const uint16_t *)v, (const uint16_t *)o, lse, kv_start, B, T_, nh,
                          nkv, d, scale, qw_cuda_deterministic, ws, ws_bytes);
        return;
    }
    if (d > 32 * MAXL) qw_cuda_fatal("attention", "head dim above 256");
    attn_dq_kernel<T><<<dim3(qw_blocks(T_, WARPS), nh, B), 32 * WARPS>>>(
        (T *)dq, (const T *)dout, (const T *)q, (const T *)k, (const T *)v, (const T *)o, lse, kv_start, B, T_, nh,
        nkv, d, scale);
    QW_LAUNCHED("attention backward (dq)");
    attn_dkv_kernel<T><<<dim3(qw_blocks(T_, WARPS), nkv, B), 32 * WARPS>>>(
        (T *)dk, (T *)dv, (const T *)dout, (const T *)q, (const T *)k, (const T *)v, (const T *)o, lse, kv_start, B,
        T_, nh, nkv, d, scale);
    QW_LAUNCHED("attention backward (dk, dv)");
}

template <typename T>
static void fill(qw_ops *t)
{
    t->attn_workspace = attn_workspace<T>;
    t->attn_fwd = attn_fwd<T>;
    t->attn_bwd = attn_bwd<T>;
}

QW_FILL_BOTH(attention)
