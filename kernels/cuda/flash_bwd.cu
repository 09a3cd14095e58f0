/* flash_bwd.cu — flash-attention backward for bf16 on the H100/H200 tensor
 * cores, head_dim 64 or 128.  qwcuda.h has the contract.
 *
 * Three steps:
 *   pre   one warp per (token, head): Dsum = rowsum(dout ∘ o) in fp32 into
 *         the workspace (and, for the atomic path, zeroes that row of the
 *         fp32 dq accumulator).
 *   kv    (wgmma, sm_90a) one block of two warpgroups per (128-key tile, kv
 *         head, batch row).  It keeps the tile's K and V in shared memory and
 *         walks every 64-query tile that can see it (a contiguous range:
 *         kv_start is nondecreasing) for each query head of its GQA group,
 *         streaming Q, dO, lse, Dsum through a 3-stage cp.async ring.  All
 *         tiles use the forward's 128-byte swizzle (wgmma.cuh), so every
 *         operand below has the shape of one the forward already uses.
 *         Warpgroup w owns keys 64w..64w+63 and computes, transposed so
 *         that P and dS land in A-operand registers:
 *             Sᵀ = K·Qᵀ, dPᵀ = V·dOᵀ         wgmma SS (the forward's Q·Kᵀ)
 *             Pᵀ = exp2(Sᵀ·scale·log2e − lse·log2e)  (masked)
 *             dV += Pᵀ·dO                    wgmma RS (the forward's P·V),
 *                                            in flight while
 *             dSᵀ = Pᵀ∘(dPᵀ − Dsum)          is formed
 *             dK += dSᵀ·Q                    wgmma RS
 *         dK and dV stay in registers across the whole walk, so the GQA sum
 *         needs no atomics; dK is scaled once at the end.  With atomics
 *         allowed, dS goes to shared memory (queries × keys, keys
 *         contiguous, swizzled: a K-major A operand) and each warpgroup adds
 *         a 64-query × 64-column block of dS·K (wgmma SS, K as the N-major
 *         B operand) into the fp32 accumulator with float2 atomicAdd: for
 *         d = 128 columns 64w.. over all 128 keys, for d = 64 all columns
 *         over its own 64 keys.
 *   dq    atomic path: dq = bf16(scale · accumulator).
 *         deterministic path (mma.sync m16n8k16, ldmatrix): one block per
 *         (64-query tile, head, batch row) walks the key tiles its queries
 *         see, recomputing S, P, dP and dS, and keeps dQ += dS·K in
 *         registers (16 queries per warp).  No floating-point atomics
 *         anywhere (the kv kernel without its dQ part), so results are
 *         bit-identical.
 * Only tiles that cross the causal diagonal, a document start or the end of
 * the row are masked element by element; tiles outside the band are never
 * visited.  Heaviest blocks are numbered first (one causal triangle).
 *
 * The kv kernel takes one block per multiprocessor (179 KB of shared memory
 * at d = 128; ptxas: 253 registers with the dQ part, 246 without, no
 * spills, no serialized wgmma).  H200, B=4 nh=16 nkv=8 T=4096 d=128 causal
 * (tests/gpu/test_flash_bwd.cu bench): 222 TFLOP/s atomic, 196
 * deterministic with the earlier mma.sync kv kernel (latency bound at 8
 * warps per SM); the wgmma kv kernel is not yet measured. */
#include "internal.cuh"
#include "wgmma.cuh"

namespace {

constexpr int TILE = 64;   /* queries per q tile (and keys per dq-kernel tile) */
constexpr int NT = 128;    /* dq kernel threads: 4 warps of 16 queries each */
constexpr int KV_THREADS = 256; /* kv kernel: two warpgroups of 64 keys each */
constexpr int KT = 128;         /* keys per kv tile */
constexpr int KS = 3;           /* kv kernel Q/dO buffers: 2 tiles in flight */
constexpr float LOG2E = 1.4426950408889634f;
typedef __nv_bfloat16 bf16;

__device__ __forceinline__ uint32_t sa(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

/* 16-byte / 4-byte asynchronous copies; a false `ok` zero-fills. */
__device__ __forceinline__ void cp16(uint32_t dst, const void *src, bool ok)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(ok ? 16 : 0));
}
__device__ __forceinline__ void cp4(uint32_t dst, const void *src, bool ok)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(ok ? 4 : 0));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

__device__ __forceinline__ void ldsm(uint32_t r[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void ldsm_t(uint32_t r[4], uint32_t addr)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
/* c += a·b, a 16×16 (row), b 16×8 (col), fp32 accumulators. */
__device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}
__device__ __forceinline__ float ex2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* Accumulator tiles c[2j], c[2j+1] (16×8 each) as the A operand of k-chunk j. */
__device__ __forceinline__ void acc_to_a(uint32_t a[4], const float lo[4], const float hi[4])
{
    a[0] = pack(lo[0], lo[1]);
    a[1] = pack(lo[2], lo[3]);
    a[2] = pack(hi[0], hi[1]);
    a[3] = pack(hi[2], hi[3]);
}

/* Stage ROWS rows × D of a [rows, stride] bf16 matrix into shared memory
 * (row pitch D+8 elements: ldmatrix reads 8 rows without bank conflicts);
 * rows ≥ valid are zero-filled. */
template <int D, int ROWS, int THREADS>
__device__ __forceinline__ void load_tile(bf16 *s, const bf16 *g, size_t stride, int valid)
{
    constexpr int CPR = D / 8;
#pragma unroll
    for (int c0 = 0; c0 < ROWS * CPR; c0 += THREADS) {
        int c = c0 + threadIdx.x, r = c / CPR, col = (c % CPR) * 8;
        bool ok = r < valid;
        cp16(sa(s + r * (D + 8) + col), g + (size_t)(ok ? r : 0) * stride + col, ok);
    }
}

/* acc[16 × N] += X[16 rows at x] · Y[N rows]ᵀ, X and Y row-major [row][D]
 * in shared memory (pitch D+8): the score-shaped products Sᵀ = K·Qᵀ,
 * dPᵀ = V·dOᵀ (kv kernel) and S = Q·Kᵀ, dP = dO·Vᵀ (dq kernel). */
template <int D, int N>
__device__ __forceinline__ void mm_xyt(float acc[N / 8][4], const bf16 *X, const bf16 *Y, int lane)
{
    constexpr int LD = D + 8;
    uint32_t xa = sa(X + (lane & 15) * LD + (lane >> 4) * 8);
    uint32_t ya = sa(Y + ((lane & 7) + (lane >> 4) * 8) * LD + ((lane >> 3) & 1) * 8);
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) {
        uint32_t a[4];
        ldsm(a, xa + kk * 32);
#pragma unroll
        for (int np = 0; np < N / 16; np++) {
            uint32_t b[4];
            ldsm(b, ya + (np * 16 * LD) * 2 + kk * 32);
            mma(acc[2 * np], a, b[0], b[1]);
            mma(acc[2 * np + 1], a, b[2], b[3]);
        }
    }
}

/* acc[16 × D] += A[16 × K] · Y[K rows × D], A given as the accumulator
 * tiles src[K/8][4] (rounded to bf16), Y row-major in shared memory: dV += Pᵀ·dO,
 * dK += dSᵀ·Q, dQ += dS·K. */
template <int D, int K>
__device__ __forceinline__ void mm_ay(float acc[D / 8][4], const float src[K / 8][4], const bf16 *Y, int lane)
{
    constexpr int LD = D + 8;
    uint32_t ya = sa(Y + ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8);
#pragma unroll
    for (int c = 0; c < K / 16; c++) {
        uint32_t a[4];
        acc_to_a(a, src[2 * c], src[2 * c + 1]);
#pragma unroll
        for (int np = 0; np < D / 16; np++) {
            uint32_t b[4];
            ldsm_t(b, ya + (c * 16 * LD) * 2 + np * 32);
            mma(acc[2 * np], a, b[0], b[1]);
            mma(acc[2 * np + 1], a, b[2], b[3]);
        }
    }
}

/* kv kernel shared memory (byte offsets from a 1024-aligned base; every
 * tile is a multiple of 1024 bytes, as the 128-byte swizzle needs): K and
 * V (KT rows), KS-deep rings of Q and dO tiles (TILE rows), dS (TILE
 * queries × KT keys, written for dQ), and the rings' lse, Dsum, kv_start. */
template <int D>
struct kv_smem {
    static constexpr uint32_t qtile = TILE * D * 2, ktile = KT * D * 2;
    static constexpr uint32_t k = 0, v = ktile, q = 2 * ktile, dout = q + KS * qtile, ds = dout + KS * qtile;
    static constexpr uint32_t lse = ds + TILE * KT * 2, dsum = lse + KS * TILE * 4, ks = dsum + KS * TILE * 4;
    static constexpr uint32_t bytes = ks + KS * TILE * 4 + 1024; /* + alignment slack */
};

template <int D>
struct dq_smem {
    static constexpr int LD = D + 8;
    static constexpr size_t tile = (size_t)TILE * LD * 2;
    static constexpr size_t q = 0, dout = tile, k = 2 * tile, v = 4 * tile, lse = 6 * tile;
    static constexpr size_t dsum = lse + TILE * 4, ks = dsum + TILE * 4, bytes = ks + TILE * 4;
};

template <int D>
__global__ void __launch_bounds__(256) flash_bwd_pre(float *dsum, float *acc, const bf16 *o, const bf16 *dout,
                                                     size_t rows)
{
    size_t row = (size_t)blockIdx.x * 8 + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows)
        return;
    constexpr int E = D / 32; /* elements per lane: 2 or 4 */
    const bf16 *po = o + row * D + lane * E, *pd = dout + row * D + lane * E;
    float s = 0.0f;
#pragma unroll
    for (int e = 0; e < E; e += 2) {
        float2 a = __bfloat1622float2(*(const __nv_bfloat162 *)(po + e));
        float2 b = __bfloat1622float2(*(const __nv_bfloat162 *)(pd + e));
        s += a.x * b.x + a.y * b.y;
    }
    s = qw_warp_sum(s);
    if (lane == 0)
        dsum[row] = s;
    if (acc) {
#pragma unroll
        for (int e = 0; e < E; e += 2)
            *(float2 *)(acc + row * D + lane * E + e) = make_float2(0.0f, 0.0f);
    }
}

/* Copy ROWS rows of D bf16 (global row stride `stride` elements) into a
 * swizzled tile (wgmma.cuh's swz) with KV_THREADS threads; rows from
 * `valid` on are zero-filled. */
template <int D, int ROWS>
__device__ __forceinline__ void load_swz(uint32_t dst, const bf16 *g, size_t stride, int valid, int tid)
{
    constexpr int CH = D / 8;
#pragma unroll
    for (int it = 0; it < ROWS * CH / KV_THREADS; it++) {
        int idx = it * KV_THREADS + tid, r = idx / CH, c = idx % CH;
        bool ok = r < valid;
        cp16(dst + swz<ROWS>(r, c), g + (size_t)(ok ? r : 0) * stride + c * 8, ok);
    }
}

/* d[64 × 64] (+)= A·B with A K-major and B N-major, both from shared memory
 * (the dQ product dS·K): wg_ss_n64 with the transposed-B flag set. */
__device__ __forceinline__ void wg_ss_n64_tb(float *d, uint64_t da, uint64_t db, int accumulate)
{
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, %32, %33, p, 1, 1, 0, 1;\n}\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
                 : "l"(da), "l"(db), "r"(accumulate));
}

/* acc[64 × D] += A·Y: A the warpgroup's 64 × TILE operand as packed bf16
 * fragments a[TILE/16][4] in registers, Y a TILE-row swizzled tile (rows
 * the k index, D contiguous) as the N-major B operand: dV += Pᵀ·dO and
 * dK += dSᵀ·Q (the forward's P·V). */
template <int D>
__device__ __forceinline__ void wg_rs_acc(float *acc, const uint32_t (*a)[4], uint32_t y)
{
#pragma unroll
    for (int kk = 0; kk < TILE / 16; kk++) {
        uint64_t dy = wg_desc(y + kk * 16 * 128, TILE * 128, 1024);
        if (D == 128)
            wg_rs_n128_tb(acc, a[kk], dy, 1);
        else
            wg_rs_n64_tb(acc, a[kk], dy, 1);
    }
}

/* acc[64 × TILE] = X·Yᵀ: X the warpgroup's 64 rows of a KT-row swizzled
 * tile (K or V), Y a TILE-row swizzled tile (Q or dO), both K-major (the
 * forward's Q·Kᵀ): Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ. */
template <int D>
__device__ __forceinline__ void wg_ss_xyt(float *acc, uint32_t x, uint32_t y)
{
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++)
        wg_ss_n64(acc, wg_desc(x + (kk >> 2) * KT * 128 + (kk & 3) * 32, 16, 1024),
                  wg_desc(y + (kk >> 2) * TILE * 128 + (kk & 3) * 32, 16, 1024), kk > 0);
}

__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
/* Wait until at most N of this thread's committed wgmma groups are pending. */
template <int N>
__device__ __forceinline__ void wg_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }

/* Score-shaped accumulator s[8][4] (64 rows × 64 columns, rows 16w+g and
 * 16w+8+g of warp w, columns 8j+2t, +1) as bf16 A fragments of the four
 * k16 steps (the forward's P packing). */
__device__ __forceinline__ void pack_a(uint32_t a[4][4], const float s[8][4])
{
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int hh = 0; hh < 2; hh++)
            a[j >> 1][(j & 1) * 2 + hh] = pack(s[j][hh * 2], s[j][hh * 2 + 1]);
}

template <int D, bool ATOMIC_DQ>
__global__ void __launch_bounds__(KV_THREADS, 1)
    flash_bwd_kv(bf16 *dk, bf16 *dv, float *dq_acc, const bf16 *dout, const bf16 *q, const bf16 *k,
                 const bf16 *v, const float *lse, const float *dsum, const int32_t *kv_start, int T, int nh,
                 int nkv, float scale)
{
    typedef kv_smem<D> L;
    extern __shared__ __align__(1024) unsigned char sm_raw[];
    const uint32_t raw = sa(sm_raw), base = (raw + 1023) & ~1023u;
    unsigned char *sm = sm_raw + (base - raw);
    float *lse_s = (float *)(sm + L::lse), *dsum_s = (float *)(sm + L::dsum);
    int32_t *ks_s = (int32_t *)(sm + L::ks);

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3, wg = warp >> 2;
    int nt_ = (T + TILE - 1) / TILE, per = gridDim.x / ((T + KT - 1) / KT);
    int kt = blockIdx.x / per, kh = (blockIdx.x % per) % nkv, b = (blockIdx.x % per) / nkv;
    int grp = nh / nkv, kv0 = kt * KT, qt0 = kv0 / TILE;
    const int32_t *ksb = kv_start + (size_t)b * T;

    /* Query tiles that see this key tile: qt ≥ qt0 with kv_start[first query] ≤ last key. */
    int nq = 0;
    for (int base_qt = qt0; base_qt < nt_; base_qt += KV_THREADS) {
        int qt = base_qt + tid;
        nq += __syncthreads_count(qt < nt_ && ksb[(size_t)qt * TILE] <= kv0 + KT - 1);
    }
    int nit = grp * nq;

    size_t kvs = (size_t)nkv * D, qs = (size_t)nh * D;
    load_swz<D, KT>(base + L::k, k + ((size_t)b * T + kv0) * kvs + (size_t)kh * D, kvs, T - kv0, tid);
    load_swz<D, KT>(base + L::v, v + ((size_t)b * T + kv0) * kvs + (size_t)kh * D, kvs, T - kv0, tid);
    cp_commit();

    auto prefetch = [&](int it) {
        int buf = it % KS, h = kh * grp + it / nq, q0 = (qt0 + it % nq) * TILE, valid = T - q0;
        size_t r0 = (size_t)b * T + q0;
        load_swz<D, TILE>(base + L::q + buf * L::qtile, q + r0 * qs + (size_t)h * D, qs, valid, tid);
        load_swz<D, TILE>(base + L::dout + buf * L::qtile, dout + r0 * qs + (size_t)h * D, qs, valid, tid);
        if (tid < TILE) {
            bool ok = tid < valid;
            size_t r = ok ? r0 + tid : r0;
            cp4(sa(lse_s + buf * TILE + tid), lse + r * nh + h, ok);
            cp4(sa(dsum_s + buf * TILE + tid), dsum + r * nh + h, ok);
            cp4(sa(ks_s + buf * TILE + tid), ksb + (ok ? q0 + tid : q0), ok);
        }
    };
    for (int it = 0; it < KS - 1; it++) {
        if (it < nit)
            prefetch(it);
        cp_commit();
    }

    float dka[D / 8][4], dva[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            dka[n][e] = dva[n][e] = 0.0f;

    const float sl2 = scale * LOG2E;
    const int kl = wg * 64 + (warp & 3) * 16 + g; /* this lane's block-local keys: kl, kl + 8 */
    const int j0 = kv0 + kl;
    const uint32_t kx = base + L::k + wg * 64 * 128, vx = base + L::v + wg * 64 * 128;
    for (int it = 0; it < nit; it++) {
        /* Tile it has landed (and is visible to the tensor cores); every
         * thread is done with iteration it − 1 (its MMAs waited for), so
         * its buffers and dS can be overwritten. */
        cp_wait<KS - 2>();
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        __syncthreads();
        if (it + KS - 1 < nit)
            prefetch(it + KS - 1);
        cp_commit();

        int buf = it % KS, h = kh * grp + it / nq, q0 = (qt0 + it % nq) * TILE;
        const uint32_t sq = base + L::q + buf * L::qtile, sdo = base + L::dout + buf * L::qtile;
        const float *lb = lse_s + buf * TILE, *db = dsum_s + buf * TILE;
        const int32_t *kb = ks_s + buf * TILE;
        bool full = q0 >= kv0 + KT && q0 + TILE <= T && kb[TILE - 1] <= kv0;

        /* Sᵀ = K·Qᵀ and dPᵀ = V·dOᵀ for the warpgroup's 64 keys × 64 queries,
         * two groups: P is formed while dPᵀ is in flight. */
        float s[8][4], dp[8][4];
        wg_fence_regs<32>(&s[0][0]);
        wg_fence_regs<32>(&dp[0][0]);
        wg_fence();
        wg_ss_xyt<D>(&s[0][0], kx, sq);
        wg_commit();
        wg_ss_xyt<D>(&dp[0][0], vx, sdo);
        wg_commit();
        wg_wait<1>();
        wg_fence_regs<32>(&s[0][0]);

        /* Pᵀ = exp2(Sᵀ·scale·log2e − lse·log2e), masked; s[j][e] is key
         * j0, s[j][e + 2] key j0 + 8, both query q0 + 8j + 2t4 + e. */
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int col = n * 8 + 2 * t4 + e, i = q0 + col;
                float l2 = lb[col] * LOG2E;
                float p0 = ex2(fmaf(s[n][e], sl2, -l2)), p1 = ex2(fmaf(s[n][e + 2], sl2, -l2));
                if (!full) {
                    int ksi = kb[col];
                    bool vi = i < T;
                    if (!(vi && j0 <= i && j0 >= ksi))
                        p0 = 0.0f;
                    if (!(vi && j0 + 8 <= i && j0 + 8 >= ksi))
                        p1 = 0.0f;
                }
                s[n][e] = p0;
                s[n][e + 2] = p1;
            }

        /* dV += Pᵀ·dO, in flight while dSᵀ = Pᵀ∘(dPᵀ − Dsum) is formed. */
        uint32_t pa[4][4], da[4][4];
        pack_a(pa, s);
        wg_fence_regs<D / 2>(&dva[0][0]);
        wg_fence();
        wg_rs_acc<D>(&dva[0][0], pa, sdo);
        wg_commit();
        wg_wait<1>(); /* dPᵀ done, dV may still run */
        wg_fence_regs<32>(&dp[0][0]);
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                float dd = db[n * 8 + 2 * t4 + e];
                s[n][e] *= dp[n][e] - dd;
                s[n][e + 2] *= dp[n][e + 2] - dd;
            }
        pack_a(da, s);

        /* dK += dSᵀ·Q. */
        wg_fence_regs<D / 2>(&dka[0][0]);
        wg_fence();
        wg_rs_acc<D>(&dka[0][0], da, sq);
        wg_commit();

        if (ATOMIC_DQ) {
            /* dS (queries × keys, keys contiguous, swizzled) → shared memory;
             * then warpgroup w adds dQ[64 queries × 64 columns] = dS·K:
             * for d = 128 columns 64w.. over all KT keys, for d = 64 all
             * columns over its own 64 keys (k steps 4w..4w+3). */
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int hh = 0; hh < 2; hh++) {
                    uint32_t w = da[j >> 1][(j & 1) * 2 + hh];
                    int key = kl + hh * 8, c = j * 8 + 2 * t4;
                    uint32_t a0 = base + L::ds + swz<TILE>(c, key >> 3) + (key & 7) * 2;
                    uint32_t a1 = base + L::ds + swz<TILE>(c + 1, key >> 3) + (key & 7) * 2;
                    asm volatile("st.shared.b16 [%0], %1;\n" ::"r"(a0), "h"((unsigned short)(w & 0xffffu)) : "memory");
                    asm volatile("st.shared.b16 [%0], %1;\n" ::"r"(a1), "h"((unsigned short)(w >> 16)) : "memory");
                }
            asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
            __syncthreads();
            constexpr int NKK = D == 128 ? KT / 16 : 4;
            const int cb = D == 128 ? wg : 0, kk0 = D == 128 ? 0 : 4 * wg;
            float dqa[8][4];
            wg_fence_regs<32>(&dqa[0][0]);
            wg_fence();
#pragma unroll
            for (int x = 0; x < NKK; x++) {
                int kk = kk0 + x;
                wg_ss_n64_tb(&dqa[0][0], wg_desc(base + L::ds + (kk >> 2) * TILE * 128 + (kk & 3) * 32, 16, 1024),
                             wg_desc(base + L::k + cb * KT * 128 + kk * 16 * 128, KT * 128, 1024), x > 0);
            }
            wg_commit();
            wg_wait<0>();
            wg_fence_regs<32>(&dqa[0][0]);
            int i0 = q0 + (warp & 3) * 16 + g;
            float *dq0 = dq_acc + (((size_t)b * T + i0) * nh + h) * D + cb * 64 + 2 * t4;
            float *dq1 = dq0 + (size_t)8 * nh * D;
#pragma unroll
            for (int n = 0; n < 8; n++) {
                if (i0 < T)
                    atomicAdd((float2 *)(dq0 + n * 8), make_float2(dqa[n][0], dqa[n][1]));
                if (i0 + 8 < T)
                    atomicAdd((float2 *)(dq1 + n * 8), make_float2(dqa[n][2], dqa[n][3]));
            }
        } else {
            wg_wait<0>();
        }
        wg_fence_regs<D / 2>(&dva[0][0]);
        wg_fence_regs<D / 2>(&dka[0][0]);
    }

    /* dK = scale·Σ dSᵀ·Q, dV = Σ Pᵀ·dO over the group's heads; rows past T dropped. */
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int j = j0 + r * 8;
        if (j >= T)
            continue;
        size_t off = ((size_t)b * T + j) * kvs + (size_t)kh * D + 2 * t4;
#pragma unroll
        for (int n = 0; n < D / 8; n++) {
            *(uint32_t *)(dk + off + n * 8) = pack(dka[n][2 * r] * scale, dka[n][2 * r + 1] * scale);
            *(uint32_t *)(dv + off + n * 8) = pack(dva[n][2 * r], dva[n][2 * r + 1]);
        }
    }
}

template <int D>
__global__ void __launch_bounds__(NT, 2)
    flash_bwd_dq(bf16 *dq, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v, const float *lse,
                 const float *dsum, const int32_t *kv_start, int T, int nh, int nkv, float scale)
{
    typedef dq_smem<D> L;
    constexpr int LD = L::LD;
    extern __shared__ __align__(128) unsigned char sm[];
    bf16 *Qs = (bf16 *)(sm + L::q), *dOs = (bf16 *)(sm + L::dout);
    float *lse_s = (float *)(sm + L::lse), *dsum_s = (float *)(sm + L::dsum);
    int32_t *ks_s = (int32_t *)(sm + L::ks);

    int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    int nt_ = (T + TILE - 1) / TILE, per = gridDim.x / nt_;
    int qt = nt_ - 1 - (int)blockIdx.x / per, h = (blockIdx.x % per) % nh, b = (blockIdx.x % per) / nh;
    int kh = h / (nh / nkv), q0 = qt * TILE, valid = T - q0;
    const int32_t *ksb = kv_start + (size_t)b * T;
    size_t kvs = (size_t)nkv * D, qs = (size_t)nh * D, r0 = (size_t)b * T + q0;

    load_tile<D, TILE, NT>(Qs, q + r0 * qs + (size_t)h * D, qs, valid);
    load_tile<D, TILE, NT>(dOs, dout + r0 * qs + (size_t)h * D, qs, valid);
    if (tid < TILE) {
        bool ok = tid < valid;
        size_t r = ok ? r0 + tid : r0;
        cp4(sa(lse_s + tid), lse + r * nh + h, ok);
        cp4(sa(dsum_s + tid), dsum + r * nh + h, ok);
        cp4(sa(ks_s + tid), ksb + (ok ? q0 + tid : q0), ok);
    }
    cp_commit();

    /* Key tiles from the first query's segment start to the last query. */
    int kt0 = ksb[q0] / TILE, kt1 = min(q0 + TILE, T) - 1;
    kt1 /= TILE;
    int nit = kt1 - kt0 + 1;
    auto prefetch = [&](int it) {
        int buf = it & 1, kv0 = (kt0 + it) * TILE;
        size_t off = ((size_t)b * T + kv0) * kvs + (size_t)kh * D;
        load_tile<D, TILE, NT>((bf16 *)(sm + L::k + buf * L::tile), k + off, kvs, T - kv0);
        load_tile<D, TILE, NT>((bf16 *)(sm + L::v + buf * L::tile), v + off, kvs, T - kv0);
    };
    prefetch(0);
    cp_commit();

    float dqa[D / 8][4];
#pragma unroll
    for (int n = 0; n < D / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            dqa[n][e] = 0.0f;

    const float sl2 = scale * LOG2E;
    const int rl = warp * 16 + g, i0 = q0 + rl; /* this lane's queries: i0, i0 + 8 */
    float l20 = 0, l21 = 0, d0 = 0, d1 = 0;
    int ks0 = 0, ks1 = 0;
    for (int it = 0; it < nit; it++) {
        cp_wait<0>();
        __syncthreads();
        if (it + 1 < nit)
            prefetch(it + 1);
        cp_commit();
        if (it == 0) {
            l20 = lse_s[rl] * LOG2E, l21 = lse_s[rl + 8] * LOG2E;
            d0 = dsum_s[rl], d1 = dsum_s[rl + 8];
            ks0 = ks_s[rl], ks1 = ks_s[rl + 8];
        }
        int buf = it & 1, kt = kt0 + it, kv0 = kt * TILE;
        const bf16 *Kb = (const bf16 *)(sm + L::k + buf * L::tile);
        const bf16 *Vb = (const bf16 *)(sm + L::v + buf * L::tile);

        bool full = kt < qt && q0 + TILE <= T && ks_s[TILE - 1] <= kv0;
        float s[8][4], dp[8][4];
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                s[n][e] = dp[n][e] = 0.0f;
        mm_xyt<D, TILE>(s, Qs + warp * 16 * LD, Kb, lane);
        mm_xyt<D, TILE>(dp, dOs + warp * 16 * LD, Vb, lane);
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                int j = kv0 + n * 8 + 2 * t4 + e;
                float p0 = ex2(fmaf(s[n][e], sl2, -l20)), p1 = ex2(fmaf(s[n][e + 2], sl2, -l21));
                if (!full) {
                    if (!(i0 < T && j <= i0 && j >= ks0))
                        p0 = 0.0f;
                    if (!(i0 + 8 < T && j <= i0 + 8 && j >= ks1))
                        p1 = 0.0f;
                }
                s[n][e] = p0 * (dp[n][e] - d0);
                s[n][e + 2] = p1 * (dp[n][e + 2] - d1);
            }
        mm_ay<D, TILE>(dqa, s, Kb, lane);
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        int i = i0 + r * 8;
        if (i >= T)
            continue;
        size_t off = ((size_t)b * T + i) * qs + (size_t)h * D + 2 * t4;
#pragma unroll
        for (int n = 0; n < D / 8; n++)
            *(uint32_t *)(dq + off + n * 8) = pack(dqa[n][2 * r] * scale, dqa[n][2 * r + 1] * scale);
    }
}

__global__ void flash_bwd_dq_convert(bf16 *dq, const float *acc, size_t n4, float scale)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4)
        return;
    float4 a = ((const float4 *)acc)[i];
    uint2 o;
    o.x = pack(a.x * scale, a.y * scale);
    o.y = pack(a.z * scale, a.w * scale);
    ((uint2 *)dq)[i] = o;
}

size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

template <int D>
void flash_bwd(bf16 *dq, bf16 *dk, bf16 *dv, const bf16 *dout, const bf16 *q, const bf16 *k, const bf16 *v,
               const bf16 *o, const float *lse, const int32_t *ks, int B, int T, int nh, int nkv, float scale,
               int det, float *acc, float *dsum)
{
    static bool init;
    if (!init) {
        QW_CU(cudaFuncSetAttribute(flash_bwd_kv<D, true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   (int)kv_smem<D>::bytes));
        QW_CU(cudaFuncSetAttribute(flash_bwd_kv<D, false>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   (int)kv_smem<D>::bytes));
        QW_CU(cudaFuncSetAttribute(flash_bwd_dq<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                   (int)dq_smem<D>::bytes));
        init = true;
    }
    size_t rows = (size_t)B * T * nh;
    int nt = (T + TILE - 1) / TILE, nkt = (T + KT - 1) / KT;
    flash_bwd_pre<D><<<qw_blocks(rows, 8), 256>>>(dsum, det ? nullptr : acc, o, dout, rows);
    QW_LAUNCHED("flash_bwd_pre");
    if (!det) {
        flash_bwd_kv<D, true><<<nkt * nkv * B, KV_THREADS, kv_smem<D>::bytes>>>(dk, dv, acc, dout, q, k, v, lse, dsum, ks,
                                                                       T, nh, nkv, scale);
        QW_LAUNCHED("flash_bwd_kv");
        size_t n4 = rows * D / 4;
        flash_bwd_dq_convert<<<qw_blocks(n4, 256), 256>>>(dq, acc, n4, scale);
        QW_LAUNCHED("flash_bwd_dq_convert");
    } else {
        flash_bwd_kv<D, false><<<nkt * nkv * B, KV_THREADS, kv_smem<D>::bytes>>>(dk, dv, nullptr, dout, q, k, v, lse,
                                                                        dsum, ks, T, nh, nkv, scale);
        QW_LAUNCHED("flash_bwd_kv");
        flash_bwd_dq<D><<<nt * nh * B, NT, dq_smem<D>::bytes>>>(dq, dout, q, k, v, lse, dsum, ks, T, nh, nkv,
                                                                scale);
        QW_LAUNCHED("flash_bwd_dq");
    }
}

} // namespace

size_t qw_cuda_flash_workspace(int B, int T, int nh, int d)
{
    size_t rows = (size_t)B * T * nh;
    return align256(rows * d * sizeof(float)) + align256(rows * sizeof(float));
}

void qw_cuda_flash_bwd(uint16_t *dq, uint16_t *dk, uint16_t *dv, const uint16_t *dout, const uint16_t *q,
                       const uint16_t *k, const uint16_t *v, const uint16_t *o, const float *lse,
                       const int32_t *kv_start, int B, int T, int nh, int nkv, int d, float scale,
                       int deterministic, void *ws, size_t ws_bytes)
{
    if (d != 64 && d != 128)
        qw_cuda_fatal("qw_cuda_flash_bwd", "head_dim must be 64 or 128");
    if (nkv <= 0 || nh % nkv != 0)
        qw_cuda_fatal("qw_cuda_flash_bwd", "nh must be a multiple of nkv");
    if (ws_bytes < qw_cuda_flash_workspace(B, T, nh, d))
        qw_cuda_fatal("qw_cuda_flash_bwd", "workspace too small");
    if (B <= 0 || T <= 0)
        return;
    float *acc = (float *)ws;
    float *dsum = (float *)((char *)ws + align256((size_t)B * T * nh * d * sizeof(float)));
    typedef const bf16 *cb;
    if (d == 64)
        flash_bwd<64>((bf16 *)dq, (bf16 *)dk, (bf16 *)dv, (cb)dout, (cb)q, (cb)k, (cb)v, (cb)o, lse, kv_start, B,
                      T, nh, nkv, scale, deterministic, acc, dsum);
    else
        flash_bwd<128>((bf16 *)dq, (bf16 *)dk, (bf16 *)dv, (cb)dout, (cb)q, (cb)k, (cb)v, (cb)o, lse, kv_start,
                       B, T, nh, nkv, scale, deterministic, acc, dsum);
}
