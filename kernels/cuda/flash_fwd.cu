/* flash_fwd.cu — FlashAttention-2 style forward for bf16 on the H100/H200
 * tensor cores (wgmma, sm_90a; fp32 accumulation): the semantics of
 * qw_ops.attn_fwd (causal document segments through kv_start, GQA,
 * natural-log lse).
 *
 * A block of two warpgroups (8 warps, 256 threads) takes 128 queries of
 * one (row, head); each warpgroup owns 64 of them, each warp 16.  Keys and
 * values stream through shared memory 64 at a time with cp.async,
 * double-buffered: while a tile is computed the next one is in flight.  Per
 * tile a warpgroup computes S = Q·Kᵀ with wgmma m64n64k16 (Q and K both from
 * shared memory), masks it only when the tile crosses the diagonal or a
 * document start, updates the online softmax in registers (log2 domain,
 * scale·log2e folded into one FMA before exp2), packs the probabilities
 * into bf16 A fragments in registers and adds P·V with wgmma m64n{d}k16 (V
 * from shared memory as the N-major operand).  Tiles outside [kv_start of
 * the block's first query, its last query] are never loaded.  Blocks run
 * the query tiles with the most keys first, heads fastest (heads sharing a
 * kv head run together).  The output is staged through Q's shared tile and
 * written with 16-byte stores.  Two blocks fit on a multiprocessor (97 KB
 * of shared memory and at most 128 registers a thread each).  scale must
 * be positive (the row maxima are taken on unscaled scores). */
#include "internal.cuh"
#include "wgmma.cuh"

#define BM 128  /* queries per block */
#define BN 64   /* keys per tile */
#define NTH 256 /* threads: two warpgroups */

static __device__ __forceinline__ float ex2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

static __device__ __forceinline__ uint32_t pack_bf16(float lo, float hi)
{
    __nv_bfloat162 p = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&p;
}

/* Copy ROWS rows of D bf16 (global row stride gs elements) into a swizzled
 * tile; rows from `valid` on are zero-filled (nothing read). */
template <int D, int ROWS>
static __device__ __forceinline__ void load_tile(uint32_t dst, const uint16_t *g, size_t gs, int valid, int tid)
{
    constexpr int CH = D / 8;
#pragma unroll
    for (int it = 0; it < ROWS * CH / NTH; it++) {
        int idx = it * NTH + tid, r = idx / CH, c = idx % CH;
        bool ok = r < valid;
        cp_async16(dst + swz<ROWS>(r, c), ok ? g + r * gs + c * 8 : g, ok ? 16 : 0);
    }
}

template <int D>
__global__ void __launch_bounds__(NTH, 2)
flash_fwd_kernel(uint16_t *o, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                 const int32_t *ks, int B, int T, int nh, int nkv, float sl2, int nqt)
{
    constexpr int KT = BN * D * 2, NDT = D / 8;
    extern __shared__ __align__(1024) unsigned char sm_raw[];
    const uint32_t sQ = (smem_u32(sm_raw) + 1023) & ~1023u, sK = sQ + BM * D * 2, sV = sK + 2 * KT;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;

    int bid = blockIdx.x, h = bid % nh, b = (bid / nh) % B, qt = nqt - 1 - bid / (nh * B);
    int q0 = qt * BM, kh = h / (nh / nkv), qlast = min(q0 + BM, T) - 1;
    const int32_t *ksb = ks + (size_t)b * T;
    const size_t qs = (size_t)nh * D, kvs = (size_t)nkv * D;
    const uint16_t *kg = k + (size_t)b * T * kvs + kh * D, *vg = v + (size_t)b * T * kvs + kh * D;
    const int nt0 = ksb[q0] / BN, nt1 = qlast / BN;

    load_tile<D, BM>(sQ, q + ((size_t)b * T + q0) * qs + h * D, qs, T - q0, tid);
    load_tile<D, BN>(sK, kg + (size_t)nt0 * BN * kvs, kvs, T - nt0 * BN, tid);
    load_tile<D, BN>(sV, vg + (size_t)nt0 * BN * kvs, kvs, T - nt0 * BN, tid);
    asm volatile("cp.async.commit_group;\n");

    /* This thread's rows (block-local): rb + g and rb + 8 + g, in the
     * accumulator layout of wgmma (warp w of a warpgroup: its rows 16w..). */
    const int rb = warp * 16, rhi_lo = ksb[min(q0 + rb + 15, T - 1)];
    int lo[2];
#pragma unroll
    for (int hh = 0; hh < 2; hh++) lo[hh] = ksb[min(q0 + rb + hh * 8 + g, T - 1)];

    float acc[NDT][4], m[2], l[2];
#pragma unroll
    for (int j = 0; j < NDT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    m[0] = m[1] = -INFINITY;
    l[0] = l[1] = 0.f;

    for (int nt = nt0; nt <= nt1; nt++) {
        const int buf = (nt - nt0) & 1, n0 = nt * BN;
        asm volatile("cp.async.wait_group 0;\n" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        __syncthreads();
        if (nt < nt1) {
            size_t off = (size_t)(n0 + BN) * kvs;
            load_tile<D, BN>(sK + (buf ^ 1) * KT, kg + off, kvs, T - n0 - BN, tid);
            load_tile<D, BN>(sV + (buf ^ 1) * KT, vg + off, kvs, T - n0 - BN, tid);
            asm volatile("cp.async.commit_group;\n");
        }
        const uint32_t kb = sK + buf * KT, vb = sV + buf * KT;

        /* S = Q·Kᵀ: the warpgroup's 64 rows × 64 keys, D/16 k-steps; a
         * k-step inside a 128-byte column block moves the start by 32 bytes. */
        float s[BN / 8][4];
        wg_fence_regs<BN / 2>(&s[0][0]);
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++)
            wg_ss_n64(&s[0][0], wg_desc(sQ + (kk >> 2) * BM * 128 + (warp >> 2) * 64 * 128 + (kk & 3) * 32, 16, 1024),
                      wg_desc(kb + (kk >> 2) * BN * 128 + (kk & 3) * 32, 16, 1024), kk > 0);
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        wg_fence_regs<BN / 2>(&s[0][0]);

        if (n0 + BN - 1 > q0 + rb || n0 < rhi_lo) {
#pragma unroll
            for (int hh = 0; hh < 2; hh++) {
                int r = q0 + rb + hh * 8 + g;
#pragma unroll
                for (int j = 0; j < BN / 8; j++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        int key = n0 + j * 8 + 2 * t + e;
                        if (key > r || key < lo[hh]) s[j][hh * 2 + e] = -INFINITY;
                    }
            }
        }

        /* Online softmax; m in unscaled units, mu = m·sl2 the exp2 offset.
         * P lands in the A-fragment order of a k16 step: p[kk][0..3]. */
        uint32_t p[BN / 16][4];
#pragma unroll
        for (int hh = 0; hh < 2; hh++) {
            float mx = m[hh];
#pragma unroll
            for (int j = 0; j < BN / 8; j++) mx = fmaxf(mx, fmaxf(s[j][hh * 2], s[j][hh * 2 + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            float mu = mx == -INFINITY ? 0.f : mx * sl2;
            float alpha = ex2(m[hh] * sl2 - mu);
            m[hh] = mx;
            float sum = 0.f;
#pragma unroll
            for (int j = 0; j < BN / 8; j++) {
                float p0 = ex2(fmaf(s[j][hh * 2], sl2, -mu));
                float p1 = ex2(fmaf(s[j][hh * 2 + 1], sl2, -mu));
                sum += p0 + p1;
                p[j >> 1][(j & 1) * 2 + hh] = pack_bf16(p0, p1);
            }
            l[hh] = l[hh] * alpha + sum;
#pragma unroll
            for (int j = 0; j < NDT; j++) {
                acc[j][hh * 2] *= alpha;
                acc[j][hh * 2 + 1] *= alpha;
            }
        }

        /* O += P·V: P from registers, V (keys × d, d contiguous) as the
         * N-major B operand: 64-column blocks BN·128 bytes apart (LBO),
         * 8-key groups 1024 bytes apart (SBO). */
        wg_fence_regs<D / 2>(&acc[0][0]);
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            uint64_t dv = wg_desc(vb + kk * 16 * 128, BN * 128, 1024);
            if (D == 128) wg_rs_n128_tb(&acc[0][0], p[kk], dv, 1);
            else wg_rs_n64_tb(&acc[0][0], p[kk], dv, 1);
        }
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        wg_fence_regs<D / 2>(&acc[0][0]);
    }

    /* Epilogue: normalise, lse, stage bf16 rows in Q's shared tile (after
     * a barrier: every warp's MMAs read all of its warpgroup's rows), then
     * 16-byte stores. */
    __syncthreads();
#pragma unroll
    for (int hh = 0; hh < 2; hh++) {
        float sum = l[hh];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        float inv = 1.f / sum;
        int rl = rb + hh * 8 + g, r = q0 + rl;
        if (t == 0 && r < T) lse[((size_t)b * T + r) * nh + h] = m[hh] * sl2 * 0.69314718055994531f + logf(sum);
#pragma unroll
        for (int j = 0; j < NDT; j++) {
            uint32_t w = pack_bf16(acc[j][hh * 2] * inv, acc[j][hh * 2 + 1] * inv);
            asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(sQ + swz<BM>(rl, j) + 4 * t), "r"(w) : "memory");
        }
    }
    __syncthreads();
    uint16_t *og = o + ((size_t)b * T + q0) * qs + h * D;
#pragma unroll
    for (int it = 0; it < BM * NDT / NTH; it++) {
        int idx = it * NTH + tid, rl = idx / NDT, c = idx % NDT;
        if (q0 + rl < T) {
            uint4 w;
            asm volatile("ld.shared.v4.b32 {%0,%1,%2,%3}, [%4];\n"
                         : "=r"(w.x), "=r"(w.y), "=r"(w.z), "=r"(w.w) : "r"(sQ + swz<BM>(rl, c)) : "memory");
            *(uint4 *)(og + (size_t)rl * qs + c * 8) = w;
        }
    }
}

template <int D>
static void launch(uint16_t *o, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                   const int32_t *kv_start, int B, int T, int nh, int nkv, float scale)
{
    const int smem = BM * D * 2 + 4 * BN * D * 2 + 1024;
    static bool ready;
    if (!ready) {
        QW_CU(cudaFuncSetAttribute(flash_fwd_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        ready = true;
    }
    int nqt = (T + BM - 1) / BM;
    flash_fwd_kernel<D><<<(unsigned)nqt * B * nh, NTH, smem>>>(o, lse, q, k, v, kv_start, B, T, nh, nkv,
                                                               scale * 1.4426950408889634f, nqt);
    QW_LAUNCHED("flash_fwd_kernel");
}

void qw_cuda_flash_fwd(uint16_t *o, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                       const int32_t *kv_start, int B, int T, int nh, int nkv, int d, float scale)
{
    if (d == 64) launch<64>(o, lse, q, k, v, kv_start, B, T, nh, nkv, scale);
    else if (d == 128) launch<128>(o, lse, q, k, v, kv_start, B, T, nh, nkv, scale);
    else qw_cuda_fatal("qw_cuda_flash_fwd", "head_dim must be 64 or 128");
}
