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

#define BM 128  /* queries per block */
#define BN 64   /* keys per tile */
#define NTH 256 /* threads: two warpgroups */

static __device__ __forceinline__ uint32_t smem_u32(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* Shared tiles of R rows × D bf16 are stored as D/64 column blocks of R
 * rows × 128 bytes; 16-byte chunk c of row r sits at chunk (c mod 8) XOR
 * (r mod 8) of its row: the 128-byte swizzle of wgmma (column blocks
 * 1024-byte aligned), and conflict-free for the 16-byte copies. */
template <int R>
static __device__ __forceinline__ uint32_t swz(int r, int c)
{
    return (uint32_t)((c >> 3) * R * 128 + r * 128 + (((c & 7) ^ (r & 7)) << 4));
}

static __device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}

/* wgmma (sm_90a), generated operand lists: d the warp's m64nN accumulator
 * fragment (n8 block j in d[4j..4j+3], the mma.sync C order). */
static __device__ __forceinline__ void wg_ss_n64(float *d, uint64_t da, uint64_t db, int accumulate)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(da), "l"(db), "r"(accumulate));
}

static __device__ __forceinline__ void wg_rs_n64_tb(float *d, const uint32_t *a, uint64_t db, int accumulate)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, p, 1, 1, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(accumulate));
}

static __device__ __forceinline__ void wg_rs_n128_tb(float *d, const uint32_t *a, uint64_t db, int accumulate)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, {%64,%65,%66,%67}, %68, p, 1, 1, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(accumulate));
}

/* Shared-memory matrix descriptor, 128-byte swizzle; lbo/sbo in bytes. */
static __device__ __forceinline__ uint64_t wg_desc(uint32_t addr, uint32_t lbo, uint32_t sbo)
{
    return (uint64_t)((addr & 0x3ffff) >> 4) | (uint64_t)(lbo >> 4) << 16 | (uint64_t)(sbo >> 4) << 32 |
           (uint64_t)1 << 62;
}

/* Keep the compiler from moving accumulator reads or writes across the
 * asynchronous wgmma window. */
template <int N>
static __device__ __forceinline__ void wg_fence_regs(float *d)
{
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(d[i])::"memory");
}

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
