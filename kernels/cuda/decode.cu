/* decode.cu — the decoding ops on the GPU (semantics: qw/ops.h): K/V
 * writes into the paged cache, attention of new queries against it
 * (flash-decoding), and the fused sampler.
 *
 * kv_write: one thread per 16-byte piece of a row (or per element when a
 * row does not split into them).
 *
 * attn_paged: a block of 4 warps per (query, kv head, split of the keys).
 * A key row of d elements is read by a group of d/VEC lanes, VEC elements
 * (16 bytes) each, so a warp reads 32/(d/VEC) keys at once; the block's
 * query heads that share the kv head (GQA) all score the key from that one
 * load.  Each lane group keeps an online softmax (max, sum, weighted sum of
 * the values) per query head; the groups merge through shuffles, the warps
 * through shared memory.  When the queries × kv heads are too few to fill
 * the GPU (decoding a few long sequences), a query's keys are split over
 * up to 64 blocks, which write partial (max, sum, accumulator) rows to the
 * backend's scratch, and a second kernel merges them (flash-decoding) —
 * except under set_batch_invariant(1), where the split would make a query's
 * result depend on how many other queries share the launch.
 * Head sizes other than 16/32/64/128 (or more than 8 query heads per kv
 * head) go to a plain kernel: a warp per (query, head), keys in turn.
 * Arithmetic is fp32; a score is q·k·scale with scale folded into q.
 *
 * sample: a block per row.  Pass 1 finds the row's max, its argmax (lowest
 * id among equal values) and its log-sum-exp.  Sampling works on the
 * masses exp(z − max z) in 40-bit fixed point (integers: their sums do not
 * depend on the order of additions, so the choice is the same run to run).
 * Without top-k/top-p the token is the first, in id order, where the
 * running mass passes u·total (a block-wide scan over contiguous chunks of
 * ids).  With them, the order is decreasing z, equal values by increasing
 * id, as on the CPU; nothing is sorted: each cut of that order (the top k;
 * the shortest prefix of mass ≥ top_p of it; the sampled token) is found by
 * a radix select over the 32-bit order-preserving key of z (four passes of
 * 8 bits, histograms of counts or masses), then the rank among the equal
 * keys by a scan in id order.  A mass smaller than 2^-41 of the largest
 * rounds to 0: such a token (probability below 5e-13 of the top one's) is
 * never drawn. */
#include <math.h>

#include "internal.cuh"

/* ---- kv_write ---- */

template <typename U>
__global__ void kv_write_kernel(U *kc, U *vc, const U *k, const U *v, const int32_t *slots, int n, int units)
{
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)n * units) return;
    size_t i = idx / units, j = idx % units, dst = (size_t)slots[i] * units + j;
    kc[dst] = k[idx];
    vc[dst] = v[idx];
}

template <typename T>
static void kv_write(void *kc, void *vc, const void *k, const void *v, const int32_t *slots, int n, int kv)
{
    if (n <= 0) return;
    size_t row = (size_t)kv * sizeof(T);
    if (row % 16 == 0 && qw_aligned(16, kc, vc, k, v)) {
        int u = (int)(row / 16);
        kv_write_kernel<uint4><<<qw_blocks((size_t)n * u, TPB), TPB>>>((uint4 *)kc, (uint4 *)vc, (const uint4 *)k,
                                                                       (const uint4 *)v, slots, n, u);
    } else {
        kv_write_kernel<T><<<qw_blocks((size_t)n * kv, TPB), TPB>>>((T *)kc, (T *)vc, (const T *)k, (const T *)v,
                                                                    slots, n, kv);
    }
    QW_LAUNCHED("kv_write");
}

/* ---- attn_paged ---- */

#define PW 4            /* warps per block */
#define MAX_SPLIT 64

/* (m, l, acc) ← merge with (m2, l2, acc2): two online-softmax states. */
__device__ __forceinline__ void merge_scale(float m, float m2, float &c1, float &c2, float &mn)
{
    mn = fmaxf(m, m2);
    c1 = m == -INFINITY ? 0.0f : expf(m - mn);
    c2 = m2 == -INFINITY ? 0.0f : expf(m2 - mn);
}

template <typename T, int D, int G>
__global__ void __launch_bounds__(PW * 32) paged_kernel(T *o, float *part, const T *q, const T *kc, const T *vc,
                                                        const int32_t *tables, int max_blocks, const int32_t *seq,
                                                        const int32_t *pos, int nh, int nkv, int bs, float scale,
                                                        int S)
{
    constexpr int VEC = 16 / sizeof(T), LG = D / VEC, KPW = 32 / LG;
    __shared__ float sm_m[PW][G], sm_l[PW][G], sm_a[PW][G][D];
    int i = blockIdx.x, kh = blockIdx.y, sp = blockIdx.z;
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, sub = lane / LG, li = lane % LG;
    int len = pos[i] + 1, chunk = (len + S - 1) / S;
    int k0 = sp * chunk, k1 = min(len, k0 + chunk);
    const int32_t *table = tables + (size_t)seq[i] * max_blocks;
    size_t kv = (size_t)nkv * D;
    float qr[G][VEC], acc[G][VEC], m[G], l[G];
#pragma unroll
    for (int g = 0; g < G; g++) {
        qw_ldv<VEC>(qr[g], q + ((size_t)i * nh + kh * G + g) * D + li * VEC);
#pragma unroll
        for (int e = 0; e < VEC; e++) qr[g][e] *= scale, acc[g][e] = 0;
        m[g] = -INFINITY, l[g] = 0;
    }
    /* the keys of the next step are loaded before this step's arithmetic (two loads in flight per lane) */
    auto load = [&](int p, float *kr, float *vr) {
        if (p < k1) {
            size_t off = ((size_t)table[p / bs] * bs + p % bs) * kv + (size_t)kh * D + li * VEC;
            qw_ldv<VEC>(kr, kc + off);
            qw_ldv<VEC>(vr, vc + off);
        } else {
#pragma unroll
            for (int e = 0; e < VEC; e++) kr[e] = vr[e] = 0;
        }
    };
    float kr[VEC], vr[VEC];
    load(k0 + w * KPW + sub, kr, vr);
    for (int base = k0 + w * KPW; base < k1; base += PW * KPW) {   /* warp-uniform loop: shuffles stay converged */
        bool valid = base + sub < k1;
        float kn[VEC], vn[VEC];
        load(base + PW * KPW + sub, kn, vn);
#pragma unroll
        for (int g = 0; g < G; g++) {
            float s = 0;
#pragma unroll
            for (int e = 0; e < VEC; e++) s += qr[g][e] * kr[e];
#pragma unroll
            for (int off = LG / 2; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
            if (valid) {
                float mn = fmaxf(m[g], s), c = expf(m[g] - mn), pe = expf(s - mn);
                l[g] = l[g] * c + pe;
#pragma unroll
                for (int e = 0; e < VEC; e++) acc[g][e] = acc[g][e] * c + pe * vr[e];
                m[g] = mn;
            }
        }
#pragma unroll
        for (int e = 0; e < VEC; e++) kr[e] = kn[e], vr[e] = vn[e];
    }
    /* merge the lane groups of the warp (lanes with the same li hold the same slice) */
#pragma unroll
    for (int off = LG; off < 32; off <<= 1) {
#pragma unroll
        for (int g = 0; g < G; g++) {
            float m2 = __shfl_xor_sync(0xffffffffu, m[g], off), l2 = __shfl_xor_sync(0xffffffffu, l[g], off);
            float c1, c2, mn;
            merge_scale(m[g], m2, c1, c2, mn);
            l[g] = l[g] * c1 + l2 * c2;
#pragma unroll
            for (int e = 0; e < VEC; e++) {
                float a2 = __shfl_xor_sync(0xffffffffu, acc[g][e], off);
                acc[g][e] = acc[g][e] * c1 + a2 * c2;
            }
            m[g] = mn;
        }
    }
    if (sub == 0) {
#pragma unroll
        for (int g = 0; g < G; g++) {
            if (li == 0) sm_m[w][g] = m[g], sm_l[w][g] = l[g];
#pragma unroll
            for (int e = 0; e < VEC; e++) sm_a[w][g][li * VEC + e] = acc[g][e];
        }
    }
    __syncthreads();
    for (int t = threadIdx.x; t < G * D; t += PW * 32) {
        int g = t / D, e = t % D;
        float M = -INFINITY, L = 0, A = 0;
        for (int ww = 0; ww < PW; ww++) {
            float c1, c2, mn;
            merge_scale(M, sm_m[ww][g], c1, c2, mn);
            L = L * c1 + sm_l[ww][g] * c2;
            A = A * c1 + sm_a[ww][g][e] * c2;
            M = mn;
        }
        size_t row = (size_t)i * nh + kh * G + g;
        if (S == 1) {
            qw_st(o + row * D + e, A / L);
        } else {
            float *pp = part + (row * S + sp) * (D + 2);
            if (e == 0) pp[0] = M, pp[1] = L;
            pp[2 + e] = A;
        }
    }
}

/* Merge the S partial states of each (query, head): part [n·nh][S][2 + d]. */
template <typename T>
__global__ void paged_combine_kernel(T *o, const float *part, int n_rows, int d, int S)
{
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)n_rows * d) return;
    size_t row = idx / d;
    int e = (int)(idx % d);
    float M = -INFINITY, L = 0, A = 0;
    for (int s = 0; s < S; s++) {
        const float *pp = part + (row * S + s) * (d + 2);
        float c1, c2, mn;
        merge_scale(M, pp[0], c1, c2, mn);
        L = L * c1 + pp[1] * c2;
        A = A * c1 + pp[2 + e] * c2;
        M = mn;
    }
    qw_st(o + idx, A / L);
}

/* The plain kernel: a warp per (query, head), each lane holding d/32
 * elements (d ≤ 256), the keys in turn. */
#define PMAXL 8
template <typename T>
__global__ void paged_plain_kernel(T *o, const T *q, const T *kc, const T *vc, const int32_t *tables, int max_blocks,
                                   const int32_t *seq, const int32_t *pos, int n, int nh, int nkv, int d, int bs,
                                   float scale)
{
    int lane = threadIdx.x & 31;
    size_t wid = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) >> 5;
    if (wid >= (size_t)n * nh) return;
    int i = (int)(wid / nh), h = (int)(wid % nh), kh = h / (nh / nkv), len = pos[i] + 1;
    const int32_t *table = tables + (size_t)seq[i] * max_blocks;
    const T *qh = q + wid * d;
    float qr[PMAXL], acc[PMAXL], m = -INFINITY, l = 0;
#pragma unroll
    for (int t = 0; t < PMAXL; t++) {
        qr[t] = t * 32 + lane < d ? qw_ld(qh + t * 32 + lane) * scale : 0.0f;
        acc[t] = 0;
    }
    for (int p = 0; p < len; p++) {
        size_t off = ((size_t)table[p / bs] * bs + p % bs) * nkv * d + (size_t)kh * d;
        float s = 0;
#pragma unroll
        for (int t = 0; t < PMAXL; t++)
            if (t * 32 + lane < d) s += qr[t] * qw_ld(kc + off + t * 32 + lane);
        s = qw_warp_sum(s);
        float mn = fmaxf(m, s), c = expf(m - mn), pe = expf(s - mn);
        l = l * c + pe;
#pragma unroll
        for (int t = 0; t < PMAXL; t++)
            if (t * 32 + lane < d) acc[t] = acc[t] * c + pe * qw_ld(vc + off + t * 32 + lane);
        m = mn;
    }
#pragma unroll
    for (int t = 0; t < PMAXL; t++)
        if (t * 32 + lane < d) qw_st(o + wid * d + t * 32 + lane, acc[t] / l);
}

static int sm_count(void)
{
    static int n;
    if (!n) {
        int dev = 0;
        QW_CU(cudaGetDevice(&dev));
        QW_CU(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    }
    return n;
}

static size_t paged_workspace(int nh, int nkv, int max_ctx) { return 0; }   /* partials live in qw_cuda_scratch */

template <typename T, int D, int G>
static void paged_launch(void *o, const void *q, const void *kc, const void *vc, const int32_t *tables,
                         int max_blocks, const int32_t *seq, const int32_t *pos, int n, int nh, int nkv, int bs,
                         float scale)
{
    /* splits: enough blocks for about 8 per SM, each split at least 128 keys of the longest context */
    long blocks = (long)n * nkv, want = 8L * sm_count();
    int max_ctx = max_blocks * bs, S = 1;
    if (blocks < want && !qw_cuda_batch_invariant) {   /* batch invariance: a query's result never depends on the batch */
        S = (int)((want + blocks - 1) / blocks);
        int cap = max_ctx / 128;
        if (S > cap) S = cap;
        if (S > MAX_SPLIT) S = MAX_SPLIT;
        if (S < 1) S = 1;
    }
    float *part = NULL;
    if (S > 1) part = (float *)qw_cuda_scratch((size_t)n * nh * S * (D + 2) * sizeof(float));
    dim3 grid(n, nkv, S);
    paged_kernel<T, D, G><<<grid, PW * 32>>>((T *)o, part, (const T *)q, (const T *)kc, (const T *)vc, tables,
                                             max_blocks, seq, pos, nh, nkv, bs, scale, S);
    QW_LAUNCHED("attn_paged");
    if (S > 1) {
        paged_combine_kernel<T><<<qw_blocks((size_t)n * nh * D, TPB), TPB>>>((T *)o, part, n * nh, D, S);
        QW_LAUNCHED("attn_paged combine");
    }
}

template <typename T, int D>
static bool paged_by_group(void *o, const void *q, const void *kc, const void *vc, const int32_t *tables,
                           int max_blocks, const int32_t *seq, const int32_t *pos, int n, int nh, int nkv, int bs,
                           float scale)
{
    switch (nh / nkv) {
    case 1: paged_launch<T, D, 1>(o, q, kc, vc, tables, max_blocks, seq, pos, n, nh, nkv, bs, scale); return true;
    case 2: paged_launch<T, D, 2>(o, q, kc, vc, tables, max_blocks, seq, pos, n, nh, nkv, bs, scale); return true;
    case 4: paged_launch<T, D, 4>(o, q, kc, vc, tables, max_blocks, seq, pos, n, nh, nkv, bs, scale); return true;
    case 8: paged_launch<T, D, 8>(o, q, kc, vc, tables, max_blocks, seq, pos, n, nh, nkv, bs, scale); return true;
    }
    return false;
}

template <typename T>
static void attn_paged(void *o, const void *q, const void *kc, const void *vc, const int32_t *tables, int max_blocks,
                       const int32_t *seq, const int32_t *pos, int n, int nh, int nkv, int d, int bs, float scale,
                       void *ws, size_t ws_bytes)
{
    if (n <= 0) return;
    bool done = false;
    if (qw_aligned(16, q, kc, vc)) {
        switch (d) {
        case 16: done = paged_by_group<T, 16>(o, q, kc, vc, tables, max_blocks, seq, pos, n, nh, nkv, bs, scale); break;
        case 32: done = paged_by_group<T, 32>(o, q, kc, vc, tables, max_blocks, seq, pos, n, nh, nkv, bs, scale); break;
        case 64: done = paged_by_group<T, 64>(o, q, kc, vc, tables, max_blocks, seq, pos, n, nh, nkv, bs, scale); break;
        case 128: done = paged_by_group<T, 128>(o, q, kc, vc, tables, max_blocks, seq, pos, n, nh, nkv, bs, scale); break;
        }
    }
    if (done) return;
    if (d > 32 * PMAXL) qw_cuda_fatal("attn_paged", "head_dim above 256");
    paged_plain_kernel<T><<<qw_blocks((size_t)n * nh * 32, 128), 128>>>((T *)o, (const T *)q, (const T *)kc,
                                                                         (const T *)vc, tables, max_blocks, seq, pos,
                                                                         n, nh, nkv, d, bs, scale);
    QW_LAUNCHED("attn_paged (plain)");
}

/* ---- sample ---- */

#define ST 512                 /* threads per row */
#define HC 16                  /* copies of each histogram bin (fewer atomics on one address) */
typedef unsigned long long u64;

struct cutv { uint32_t T; int idlim; };   /* the prefix of the order: key > T, or key == T and id ≤ idlim */

/* An order-preserving key of z (larger z, larger key; −0 as +0). */
__device__ __forceinline__ uint32_t zkey(float z)
{
    if (z == 0) z = 0.0f;
    uint32_t u = __float_as_uint(z);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float key_z(uint32_t k) { return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k); }
__device__ __forceinline__ bool in_cut(uint32_t k, int id, cutv c) { return k > c.T || (k == c.T && id <= c.idlim); }
/* The mass of z in 40-bit fixed point. */
__device__ __forceinline__ u64 fx(float z, float zmax) { return (u64)((double)expf(z - zmax) * 0x1p40 + 0.5); }

struct samp_sh {
    u64 hist[256 * HC];
    u64 hsum[256];
    u64 wsum[ST / 32];
    float wm[ST / 32], ws[ST / 32], wb[ST / 32];
    int wi[ST / 32];
    int sel, found;
    u64 above;
};

/* Block-wide: every thread gets the total (fixed order: integers anyway). */
__device__ u64 block_sum_u64(u64 v, samp_sh &sh)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) sh.wsum[threadIdx.x >> 5] = v;
    __syncthreads();
    u64 t = 0;
    for (int w = 0; w < ST / 32; w++) t += sh.wsum[w];
    __syncthreads();
    return t;
}

/* Exclusive prefix sum over the threads in order; *total gets the sum. */
__device__ u64 block_scan_u64(u64 v, u64 *total, samp_sh &sh)
{
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    u64 x = v;
    for (int o = 1; o < 32; o <<= 1) {
        u64 y = __shfl_up_sync(0xffffffffu, x, o);
        if (lane >= o) x += y;
    }
    if (lane == 31) sh.wsum[w] = x;
    __syncthreads();
    u64 before = 0, t = 0;
    for (int ww = 0; ww < ST / 32; ww++) {
        if (ww < w) before += sh.wsum[ww];
        t += sh.wsum[ww];
    }
    __syncthreads();
    *total = t;
    return before + x - v;
}

__device__ __forceinline__ float zval(const float *l, int v, float temp) { return __fdiv_rn(l[v], temp); }

/* Σ mass over the cut. */
__device__ u64 cut_mass(const float *l, int V, float temp, float zmax, cutv c, samp_sh &sh)
{
    u64 s = 0;
    for (int v = threadIdx.x; v < V; v += ST) {
        float z = zval(l, v, temp);
        if (in_cut(zkey(z), v, c)) s += fx(z, zmax);
    }
    return block_sum_u64(s, sh);
}

/* The shortest prefix of cut c (in decreasing z, equal z by increasing id)
 * whose weight (1 per token when !mass, else its mass) reaches G ≥ 1. */
__device__ cutv select_prefix(const float *l, int V, float temp, float zmax, cutv c, bool mass, u64 G, samp_sh &sh)
{
    uint32_t prefix = 0, mask = 0;
    u64 above = 0;
    int lane = threadIdx.x & 31;
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = threadIdx.x; b < 256 * HC; b += ST) sh.hist[b] = 0;
        __syncthreads();
        for (int v = threadIdx.x; v < V; v += ST) {
            float z = zval(l, v, temp);
            uint32_t k = zkey(z);
            if ((k & mask) != prefix || !in_cut(k, v, c)) continue;
            u64 w = mass ? fx(z, zmax) : 1;
            if (w) atomicAdd(&sh.hist[((k >> shift) & 255) * HC + (lane & (HC - 1))], w);
        }
        __syncthreads();
        for (int b = threadIdx.x; b < 256; b += ST) {
            u64 t = 0;
            for (int j = 0; j < HC; j++) t += sh.hist[b * HC + j];
            sh.hsum[b] = t;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            u64 a = above;
            int d = 255, last = -1;
            for (; d >= 0; d--) {
                if (sh.hsum[d]) last = d;
                if (a + sh.hsum[d] >= G) break;
                a += sh.hsum[d];
            }
            if (d < 0) {   /* G beyond the cut's weight (not expected): its last element */
                d = last < 0 ? 0 : last;
                a -= sh.hsum[d];
            }
            sh.sel = d;
            sh.above = a;
        }
        __syncthreads();
        prefix |= (uint32_t)sh.sel << shift;
        mask |= 255u << shift;
        above = sh.above;
        __syncthreads();
    }
    /* the r-th token of key `prefix` (by id) in the cut completes the prefix */
    u64 w = mass ? fx(key_z(prefix), zmax) : 1;
    u64 r = w ? (G - above + w - 1) / w : 1;
    if (r < 1) r = 1;
    int chunk = (V + ST - 1) / ST, v0 = threadIdx.x * chunk, v1 = min(V, v0 + chunk);
    u64 cnt = 0;
    for (int v = v0; v < v1; v++) {
        uint32_t k = zkey(zval(l, v, temp));
        cnt += k == prefix && in_cut(k, v, c);
    }
    u64 tot, before = block_scan_u64(cnt, &tot, sh);
    if (threadIdx.x == 0) sh.sel = -1;
    __syncthreads();
    if (r > tot) r = tot;   /* not expected */
    if (before < r && r <= before + cnt) {
        u64 seen = before;
        for (int v = v0; v < v1; v++) {
            uint32_t k = zkey(zval(l, v, temp));
            if (k == prefix && in_cut(k, v, c) && ++seen == r) { sh.sel = v; break; }
        }
    }
    __syncthreads();
    cutv out = {prefix, sh.sel};
    __syncthreads();
    return out;
}

__global__ void __launch_bounds__(ST) sample_kernel(int32_t *tok, float *logp, float *raw, const float *logits,
                                                    const double *u, const int32_t *forced, int V, float temp,
                                                    int top_k, float top_p)
{
    extern __shared__ __align__(16) unsigned char smem[];
    samp_sh &sh = *(samp_sh *)smem;
    int row = blockIdx.x, lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const float *l = logits + (size_t)row * V;
    /* pass 1: max with its sum of exponentials (online), argmax */
    float m = -INFINITY, s = 0, bv = -INFINITY;
    int bi = 0x7fffffff;
    for (int v = threadIdx.x; v < V; v += ST) {
        float x = l[v];
        if (x > m) { s = s * expf(m - x) + 1.0f; m = x; }
        else if (m > -INFINITY) s += expf(x - m);
        if (x > bv || (x == bv && v < bi)) bv = x, bi = v;
    }
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        float b2 = __shfl_xor_sync(0xffffffffu, bv, o);
        int i2 = __shfl_xor_sync(0xffffffffu, bi, o);
        float c1, c2, mn;
        merge_scale(m, m2, c1, c2, mn);
        s = s * c1 + s2 * c2, m = mn;
        if (b2 > bv || (b2 == bv && i2 < bi)) bv = b2, bi = i2;
    }
    if (lane == 0) sh.wm[w] = m, sh.ws[w] = s, sh.wb[w] = bv, sh.wi[w] = bi;
    __syncthreads();
    m = sh.wm[0], s = sh.ws[0], bv = sh.wb[0], bi = sh.wi[0];
    for (int ww = 1; ww < ST / 32; ww++) {
        float c1, c2, mn;
        merge_scale(m, sh.wm[ww], c1, c2, mn);
        s = s * c1 + sh.ws[ww] * c2, m = mn;
        if (sh.wb[ww] > bv || (sh.wb[ww] == bv && sh.wi[ww] < bi)) bv = sh.wb[ww], bi = sh.wi[ww];
    }
    __syncthreads();
    float lse = m + logf(s);
    if (bi >= V) bi = 0;
    int f = forced ? forced[row] : -1;
    if (temp <= 0) {
        if (threadIdx.x == 0) {
            int t = f >= 0 ? f : bi;
            tok[row] = t;
            logp[row] = raw[row] = l[t] - lse;
        }
        return;
    }
    float zmax = __fdiv_rn(m, temp);
    if (f >= 0) {   /* log softmax(z)[f] over the whole vocabulary */
        double zs = 0;
        for (int v = threadIdx.x; v < V; v += ST) zs += expf(zval(l, v, temp) - zmax);
        for (int o = 16; o > 0; o >>= 1) zs += __shfl_xor_sync(0xffffffffu, zs, o);
        __syncthreads();
        if (lane == 0) sh.wsum[w] = __double_as_longlong(zs);
        __syncthreads();
        if (threadIdx.x == 0) {
            double t = 0;
            for (int ww = 0; ww < ST / 32; ww++) t += __longlong_as_double(sh.wsum[ww]);
            tok[row] = f;
            raw[row] = l[f] - lse;
            logp[row] = zval(l, f, temp) - (zmax + (float)log(t));
        }
        return;
    }
    int t;
    u64 total;
    if (!(top_k > 0 || top_p < 1)) {   /* id order */
        int chunk = (V + ST - 1) / ST, v0 = threadIdx.x * chunk, v1 = min(V, v0 + chunk);
        u64 cs = 0;
        for (int v = v0; v < v1; v++) cs += fx(zval(l, v, temp), zmax);
        u64 before = block_scan_u64(cs, &total, sh);
        u64 G = (u64)floor(u[row] * (double)total) + 1;
        if (threadIdx.x == 0) sh.sel = V - 1;
        __syncthreads();
        if (before < G && G <= before + cs) {
            u64 c = before;
            for (int v = v0; v < v1; v++)
                if ((c += fx(zval(l, v, temp), zmax)) >= G) { sh.sel = v; break; }
        }
        __syncthreads();
        t = sh.sel;
    } else {
        cutv c = {0u, 0x7fffffff};
        if (top_k > 0 && top_k < V) c = select_prefix(l, V, temp, zmax, c, false, (u64)top_k, sh);
        if (top_p < 1) {
            total = cut_mass(l, V, temp, zmax, c, sh);
            u64 G = (u64)ceil((double)top_p * (double)total);
            c = select_prefix(l, V, temp, zmax, c, true, G ? G : 1, sh);
        }
        total = cut_mass(l, V, temp, zmax, c, sh);
        c = select_prefix(l, V, temp, zmax, c, true, (u64)floor(u[row] * (double)total) + 1, sh);
        t = c.idlim;
        if (t < 0 || t >= V) t = bi;   /* not expected */
    }
    if (threadIdx.x == 0) {
        tok[row] = t;
        raw[row] = l[t] - lse;
        logp[row] = (zval(l, t, temp) - zmax) - (float)log((double)total * 0x1p-40);
    }
}

static size_t sample_workspace(int n, int V) { return 0; }

static void sample(int32_t *tok, float *logp, float *raw_logp, const float *logits, const double *u,
                   const int32_t *forced, int n, int V, float temperature, int top_k, float top_p, void *ws)
{
    if (n <= 0) return;
    static bool init;
    if (!init) {
        QW_CU(cudaFuncSetAttribute(sample_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sizeof(samp_sh)));
        init = true;
    }
    sample_kernel<<<n, ST, sizeof(samp_sh)>>>(tok, logp, raw_logp, logits, u, forced, V, temperature, top_k, top_p);
    QW_LAUNCHED("sample");
}

template <typename T>
static void fill(qw_ops *t)
{
    t->kv_write = kv_write<T>;
    t->attn_paged_workspace = paged_workspace;
    t->attn_paged = attn_paged<T>;
    t->sample_workspace = sample_workspace;
    t->sample = sample;
}

QW_FILL_BOTH(decode)
