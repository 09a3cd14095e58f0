/* norm.cu — RMSNorm over rows, the RoPE table, and Qwen3's fused per-head
 * q/k RMSNorm + RoPE.  fp32 arithmetic whatever the storage.  For the
 * usual shapes (dim a multiple of 256 up to 8192; d = 64 or 128) a group
 * of threads holds a row in registers, 8 columns each, loaded as 16-byte
 * vectors; other shapes take the general kernels (one block per row, one
 * warp per head row).
 *
 * The weight gradients dw (a sum over rows) are reduced without atomics,
 * so they are deterministic: each block sums its columns over its rows
 * into backend scratch, then one pass adds the blocks' sums in order.  For
 * the usual shapes the backward kernels do dx and dw in one pass over dy
 * and x; other shapes take a dx kernel, then a dw kernel of 32 columns
 * per block over slices of rows. */
#include "internal.cuh"

/* ---- RMSNorm ---- */

template <typename T, int V>
__global__ void rmsnorm_fwd_kernel(T *y, float *rstd, const T *x, const float *w, int dim, float eps)
{
    __shared__ float sh[32];
    const T *xr = x + (size_t)blockIdx.x * dim;
    T *yr = y + (size_t)blockIdx.x * dim;
    float ss = 0, f[V], wf[V];
    for (int j = threadIdx.x * V; j < dim; j += blockDim.x * V) {
        qw_ldv<V>(f, xr + j);
#pragma unroll
        for (int e = 0; e < V; e++) ss += f[e] * f[e];
    }
    float rs = 1.0f / sqrtf(qw_block_sum(ss, sh) / dim + eps);
    if (threadIdx.x == 0) rstd[blockIdx.x] = rs;
    for (int j = threadIdx.x * V; j < dim; j += blockDim.x * V) {
        qw_ldv<V>(f, xr + j);
        qw_ldv<V>(wf, w + j);
#pragma unroll
        for (int e = 0; e < V; e++) f[e] = wf[e] * (f[e] * rs);
        qw_stv<V>(yr + j, f);
    }
}

/* Rows in groups: when dim is a multiple of 256 and at most 8192 (and the
 * rows 16-byte aligned), a group of nt = dim/8 threads holds a row, 8
 * consecutive columns per thread in registers, and a block of
 * RMS_THREADS threads (or nt when more) holds RMS_THREADS/nt rows. */

#define RMS_THREADS 512

static bool rms_groups(int dim, const void *a, const void *b, const void *c, const void *d = 0)
{
    return dim % 256 == 0 && dim <= 8192 && qw_aligned(16, a, b, c, d);
}

static int rms_rows_per_block(int dim) { return dim / 8 < RMS_THREADS ? RMS_THREADS / (dim / 8) : 1; }

/* Sum over the group of nt threads (a multiple of 32) that holds this
 * thread's row, in a fixed order; wsum holds blockDim/32 floats.  Every
 * thread of the block must call it. */
__device__ __forceinline__ float group_sum(float v, float *wsum, int nt)
{
    v = qw_warp_sum(v);
    if ((threadIdx.x & 31) == 0) wsum[threadIdx.x >> 5] = v;
    __syncthreads();
    int w0 = threadIdx.x / nt * (nt / 32);
    v = 0;
    for (int k = 0; k < nt / 32; k++) v += wsum[w0 + k];
    __syncthreads();
    return v;
}

template <typename T>
__global__ void __launch_bounds__(1024)
rmsnorm_fwd_rows_kernel(T *y, float *rstd, const T *x, const float *w, int rows, int dim, float eps)
{
    constexpr int V = 8;
    __shared__ float wsum[32];
    int nt = dim / V, r = blockIdx.x * (blockDim.x / nt) + threadIdx.x / nt, j = (threadIdx.x % nt) * V;
    bool ok = r < rows;
    size_t o = (size_t)r * dim + j;
    float f[V], wf[V], ss = 0;
#pragma unroll
    for (int e = 0; e < V; e++) f[e] = 0;
    if (ok) qw_ldv<V>(f, x + o);
#pragma unroll
    for (int e = 0; e < V; e++) ss += f[e] * f[e];
    float rs = 1.0f / sqrtf(group_sum(ss, wsum, nt) / dim + eps);
    if (!ok) return;
    if (j == 0) rstd[r] = rs;
    qw_ldv<V>(wf, w + j);
#pragma unroll
    for (int e = 0; e < V; e++) f[e] = wf[e] * (f[e] * rs);
    qw_stv<V>(y + o, f);
}

template <typename T>
static void rmsnorm_fwd(void *y, float *rstd, const void *x, const float *w, int rows, int dim, float eps)
{
    if (rows <= 0) return;
    constexpr int V = qw_vec<T>();
    if (rms_groups(dim, y, x, w)) {
        int rb = rms_rows_per_block(dim);
        rmsnorm_fwd_rows_kernel<T><<<qw_blocks(rows, rb), rb * (dim / 8)>>>((T *)y, rstd, (const T *)x, w, rows,
                                                                            dim, eps);
    } else if (dim % V == 0 && qw_aligned(16, y, x, w))
        rmsnorm_fwd_kernel<T, V><<<rows, TPB>>>((T *)y, rstd, (const T *)x, w, dim, eps);
    else
        rmsnorm_fwd_kernel<T, 1><<<rows, TPB>>>((T *)y, rstd, (const T *)x, w, dim, eps);
    QW_LAUNCHED("rmsnorm forward");
}

template <typename T, int V>
__global__ void rmsnorm_dx_kernel(T *dx, const T *dy, const T *x, const float *w, const float *rstd, int dim,
                                  int acc)
{
    __shared__ float sh[32];
    size_t o = (size_t)blockIdx.x * dim;
    float rs = rstd[blockIdx.x], dot = 0, g[V], xf[V], wf[V], d[V];
    for (int j = threadIdx.x * V; j < dim; j += blockDim.x * V) {
        qw_ldv<V>(g, dy + o + j);
        qw_ldv<V>(xf, x + o + j);
        qw_ldv<V>(wf, w + j);
#pragma unroll
        for (int e = 0; e < V; e++) dot += g[e] * wf[e] * xf[e];
    }
    float c = rs * rs * qw_block_sum(dot, sh) / dim;
    for (int j = threadIdx.x * V; j < dim; j += blockDim.x * V) {
        qw_ldv<V>(g, dy + o + j);
        qw_ldv<V>(xf, x + o + j);
        qw_ldv<V>(wf, w + j);
        if (acc) qw_ldv<V>(d, dx + o + j);
#pragma unroll
        for (int e = 0; e < V; e++) {
            float v = rs * (g[e] * wf[e] - xf[e] * c);
            d[e] = acc ? d[e] + v : v;
        }
        qw_stv<V>(dx + o + j, d);
    }
}

/* ---- dw: Σ over rows of dz·x·rstd, dz = dy (plain) or the inverse
 * rotation of dy (q/k path, rows = tokens·heads) ---- */

#define DW_COLS 32
#define DW_LANES 8

template <typename T, bool ROPE>
__global__ void dw_partial_kernel(float *part, const T *dy, const T *x, const float *rstd, const float *cs,
                                  const float *sn, int rows, int dim, int heads, int slice)
{
    __shared__ float sh[DW_LANES][DW_COLS + 1];
    int j = blockIdx.x * DW_COLS + threadIdx.x, r0 = blockIdx.y * slice, r1 = min(rows, r0 + slice);
    int half = dim / 2;
    float s = 0;
    if (j < dim)
        for (int r = r0 + threadIdx.y; r < r1; r += DW_LANES) {
            size_t o = (size_t)r * dim;
            float dz = qw_ld(dy + o + j);
            if (ROPE) {
                int jj = j < half ? j : j - half;
                size_t t = (size_t)(r / heads) * half + jj;
                float other = qw_ld(dy + o + (j < half ? j + half : jj));
                dz = j < half ? dz * cs[t] + other * sn[t] : dz * cs[t] - other * sn[t];
            }
            s += dz * qw_ld(x + o + j) * rstd[r];
        }
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && j < dim) {
        for (int l = 1; l < DW_LANES; l++) s += sh[l][threadIdx.x];
        part[(size_t)blockIdx.y * dim + j] = s;
    }
}

__global__ void dw_reduce_kernel(float *dw, const float *part, int slices, int dim)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= dim) return;
    float s = 0;
    for (int k = 0; k < slices; k++) s += part[(size_t)k * dim + j];
    dw[j] += s;
}

template <typename T, bool ROPE>
static void norm_dw(float *dw, const T *dy, const T *x, const float *rstd, const float *cs, const float *sn,
                    int rows, int dim, int heads)
{
    int slices = (rows + 63) / 64;
    if (slices > 1024) slices = 1024;
    int slice = (rows + slices - 1) / slices;
    slices = (rows + slice - 1) / slice;
    float *part = (float *)qw_cuda_scratch((size_t)slices * dim * sizeof(float));
    dw_partial_kernel<T, ROPE><<<dim3(qw_blocks(dim, DW_COLS), slices), dim3(DW_COLS, DW_LANES)>>>(
        part, dy, x, rstd, cs, sn, rows, dim, heads, slice);
    QW_LAUNCHED("norm backward (dw slices)");
    dw_reduce_kernel<<<qw_blocks(dim, TPB), TPB>>>(dw, part, slices, dim);
    QW_LAUNCHED("norm backward (dw)");
}

/* Blocks of `kernel` (threads each, smem bytes of dynamic shared memory)
 * that fit on the device at once. */
static int resident_blocks(const void *kernel, int threads, size_t smem)
{
    static int sms;
    int per_sm;
    if (!sms) {
        int dev;
        QW_CU(cudaGetDevice(&dev));
        QW_CU(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    }
    QW_CU(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
    return sms * (per_sm > 0 ? per_sm : 1);
}

/* The fused RMSNorm backward, rows in groups: dx and dw in one read of dy
 * and x.  A thread always holds the same columns, so it sums its share of
 * dw in registers over every row it visits.  A block has rb groups; block
 * b takes the tiles of rb rows b, b + grid, ...; at the end the groups'
 * sums are added in group order into part[b][dim], which dw_reduce_kernel
 * adds in block order.  Dynamic shared memory: rb·dim floats. */

template <typename T>
__global__ void __launch_bounds__(1024)
rmsnorm_bwd_kernel(T *dx, float *part, const T *dy, const T *x, const float *w, const float *rstd, int rows,
                   int dim, int acc)
{
    constexpr int V = 8;
    extern __shared__ float sh[];
    __shared__ float wsum[32];
    int nt = dim / V, rb = blockDim.x / nt, gi = threadIdx.x / nt, j = (threadIdx.x % nt) * V;
    int tiles = (rows + rb - 1) / rb;
    float wf[V], a[V];
    qw_ldv<V>(wf, w + j);
#pragma unroll
    for (int e = 0; e < V; e++) a[e] = 0;
    for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
        int r = t * rb + gi;
        bool ok = r < rows;
        size_t o = (size_t)r * dim + j;
        float g[V], xf[V], rs = 0, dot = 0;
#pragma unroll
        for (int e = 0; e < V; e++) g[e] = xf[e] = 0;
        if (ok) {
            qw_ldv<V>(g, dy + o);
            qw_ldv<V>(xf, x + o);
            rs = rstd[r];
        }
#pragma unroll
        for (int e = 0; e < V; e++) {
            dot += g[e] * wf[e] * xf[e];
            a[e] += g[e] * xf[e] * rs;
        }
        float c = rs * rs * group_sum(dot, wsum, nt) / dim;
        if (ok) {
            float d[V];
            if (acc) qw_ldv<V>(d, dx + o);
#pragma unroll
            for (int e = 0; e < V; e++) {
                float v = rs * (g[e] * wf[e] - xf[e] * c);
                d[e] = acc ? d[e] + v : v;
            }
            qw_stv<V>(dx + o, d);
        }
    }
#pragma unroll
    for (int e = 0; e < V; e++) sh[gi * dim + j + e] = a[e];
    __syncthreads();
    for (int k = threadIdx.x; k < dim; k += blockDim.x) {
        float s = 0;
        for (int g = 0; g < rb; g++) s += sh[g * dim + k];
        part[(size_t)blockIdx.x * dim + k] = s;
    }
}

template <typename T>
static void rmsnorm_bwd(void *dx, float *dw, const void *dy, const void *x, const float *w, const float *rstd,
                        int rows, int dim, int acc)
{
    if (rows <= 0) return;
    if (rms_groups(dim, dx, dy, x, w)) {
        int rb = rms_rows_per_block(dim), threads = rb * (dim / 8);
        size_t smem = (size_t)rb * dim * sizeof(float);
        int tiles = (rows + rb - 1) / rb, resident = resident_blocks((const void *)rmsnorm_bwd_kernel<T>, threads, smem);
        int grid = tiles < resident ? tiles : resident;
        float *part = (float *)qw_cuda_scratch((size_t)grid * dim * sizeof(float));
        rmsnorm_bwd_kernel<T><<<grid, threads, smem>>>((T *)dx, part, (const T *)dy, (const T *)x, w, rstd, rows,
                                                       dim, acc);
        QW_LAUNCHED("rmsnorm backward");
        dw_reduce_kernel<<<qw_blocks(dim, TPB), TPB>>>(dw, part, grid, dim);
        QW_LAUNCHED("rmsnorm backward (dw)");
        return;
    }
    constexpr int V = qw_vec<T>();
    if (dim % V == 0 && qw_aligned(16, dx, dy, x, w))
        rmsnorm_dx_kernel<T, V><<<rows, TPB>>>((T *)dx, (const T *)dy, (const T *)x, w, rstd, dim, acc);
    else
        rmsnorm_dx_kernel<T, 1><<<rows, TPB>>>((T *)dx, (const T *)dy, (const T *)x, w, rstd, dim, acc);
    QW_LAUNCHED("rmsnorm backward (dx)");
    norm_dw<T, false>(dw, (const T *)dy, (const T *)x, rstd, NULL, NULL, rows, dim, 1);
}

/* ---- RoPE table ---- */

__global__ void rope_table_kernel(float *cs, float *sn, const int32_t *pos, int n, const float *inv_freq, int half,
                                  float scale)
{
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)n * half) return;
    float ang = __fmul_rn((float)pos[idx / half], inv_freq[idx % half]);
    cs[idx] = cosf(ang) * scale;
    sn[idx] = sinf(ang) * scale;
}

static void rope_table(float *cs, float *sn, const int32_t *pos, int n, const float *inv_freq, int half, float scale)
{
    if (n <= 0) return;
    rope_table_kernel<<<qw_blocks((size_t)n * half, TPB), TPB>>>(cs, sn, pos, n, inv_freq, half, scale);
    QW_LAUNCHED("rope_table");
}

/* ---- q/k: per-head RMSNorm then RoPE, one warp per head row ----
 * Lane l holds V consecutive pairs (j, j + d/2) at a time, V = 2 when d/2
 * is a multiple of 64 (d = 128: one load of each half per lane). */

#define QK_WARPS 8

template <typename T, int V>
__global__ void qk_fwd_kernel(T *y, float *rstd, const T *x, const float *w, const float *cs, const float *sn,
                              int rows, int heads, int d, float eps)
{
    int r = blockIdx.x * QK_WARPS + threadIdx.x / 32, lane = threadIdx.x & 31, half = d / 2;
    if (r >= rows) return;
    const T *xr = x + (size_t)r * d;
    T *yr = y + (size_t)r * d;
    float ss = 0, a[V], b[V], w1[V], w2[V], c[V], s[V];
    for (int j = lane * V; j < half; j += 32 * V) {
        qw_ldv<V>(a, xr + j);
        qw_ldv<V>(b, xr + j + half);
#pragma unroll
        for (int e = 0; e < V; e++) ss += a[e] * a[e] + b[e] * b[e];
    }
    float rs = 1.0f / sqrtf(qw_warp_sum(ss) / d + eps);
    if (lane == 0) rstd[r] = rs;
    const float *cr = cs + (size_t)(r / heads) * half, *sr = sn + (size_t)(r / heads) * half;
    for (int j = lane * V; j < half; j += 32 * V) {
        qw_ldv<V>(a, xr + j);
        qw_ldv<V>(b, xr + j + half);
        qw_ldv<V>(w1, w + j);
        qw_ldv<V>(w2, w + j + half);
        qw_ldv<V>(c, cr + j);
        qw_ldv<V>(s, sr + j);
        float y1[V], y2[V];
#pragma unroll
        for (int e = 0; e < V; e++) {
            float p = w1[e] * (a[e] * rs), q = w2[e] * (b[e] * rs);
            y1[e] = p * c[e] - q * s[e];
            y2[e] = q * c[e] + p * s[e];
        }
        qw_stv<V>(yr + j, y1);
        qw_stv<V>(yr + j + half, y2);
    }
}

/* dz = the inverse rotation of dy, then the RMSNorm backward of dz. */
template <typename T, int V>
__global__ void qk_dx_kernel(T *dx, const T *dy, const T *x, const float *w, const float *rstd, const float *cs,
                             const float *sn, int rows, int heads, int d)
{
    int r = blockIdx.x * QK_WARPS + threadIdx.x / 32, lane = threadIdx.x & 31, half = d / 2;
    if (r >= rows) return;
    size_t o = (size_t)r * d;
    const float *cr = cs + (size_t)(r / heads) * half, *sr = sn + (size_t)(r / heads) * half;
    float rs = rstd[r], dot = 0, g1[V], g2[V], x1[V], x2[V], w1[V], w2[V], c[V], s[V];
    for (int j = lane * V; j < half; j += 32 * V) {
        qw_ldv<V>(g1, dy + o + j);
        qw_ldv<V>(g2, dy + o + j + half);
        qw_ldv<V>(x1, x + o + j);
        qw_ldv<V>(x2, x + o + j + half);
        qw_ldv<V>(w1, w + j);
        qw_ldv<V>(w2, w + j + half);
        qw_ldv<V>(c, cr + j);
        qw_ldv<V>(s, sr + j);
#pragma unroll
        for (int e = 0; e < V; e++)
            dot += (g1[e] * c[e] + g2[e] * s[e]) * w1[e] * x1[e] + (g2[e] * c[e] - g1[e] * s[e]) * w2[e] * x2[e];
    }
    float cc = rs * rs * qw_warp_sum(dot) / d;
    for (int j = lane * V; j < half; j += 32 * V) {
        qw_ldv<V>(g1, dy + o + j);
        qw_ldv<V>(g2, dy + o + j + half);
        qw_ldv<V>(x1, x + o + j);
        qw_ldv<V>(x2, x + o + j + half);
        qw_ldv<V>(w1, w + j);
        qw_ldv<V>(w2, w + j + half);
        qw_ldv<V>(c, cr + j);
        qw_ldv<V>(s, sr + j);
        float d1[V], d2[V];
#pragma unroll
        for (int e = 0; e < V; e++) {
            d1[e] = rs * ((g1[e] * c[e] + g2[e] * s[e]) * w1[e] - x1[e] * cc);
            d2[e] = rs * ((g2[e] * c[e] - g1[e] * s[e]) * w2[e] - x2[e] * cc);
        }
        qw_stv<V>(dx + o + j, d1);
        qw_stv<V>(dx + o + j + half, d2);
    }
}

/* Head rows in lane groups, for d = 64 or 128 (16-byte aligned): a group
 * of L = d/16 lanes holds a head row, each lane 8 consecutive pairs
 * (j, j + d/2) with j = 8·(lane mod L); a block of QKB_THREADS threads
 * holds QKB_THREADS/L rows. */

#define QKB_THREADS 128   /* 4 warps: 5 blocks of the backward (<= 96 registers) per SM */

static bool qk_groups(int d, const void *a, const void *b, const void *w, const void *cs, const void *sn,
                      const void *c = 0)
{
    return (d == 64 || d == 128) && qw_aligned(16, a, b, w, cs) && qw_aligned(16, sn, c);
}

/* Sum over the L lanes (a power of two) of this lane's group, fixed order;
 * every lane of the warp must call it. */
template <int L>
__device__ __forceinline__ float lanes_sum(float v)
{
#pragma unroll
    for (int o = L / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <typename T, int L>
__global__ void __launch_bounds__(QKB_THREADS)
qk_fwd_rows_kernel(T *y, float *rstd, const T *x, const float *w, const float *cs, const float *sn, int rows,
                   int heads, float eps)
{
    constexpr int V = 8, HALF = L * V, D = 2 * HALF;
    int r = blockIdx.x * (QKB_THREADS / L) + threadIdx.x / L, j = (threadIdx.x % L) * V;
    bool ok = r < rows;
    size_t o = (size_t)r * D + j;
    float ss = 0, a[V], b[V], w1[V], w2[V], c[V], s[V];
#pragma unroll
    for (int e = 0; e < V; e++) a[e] = b[e] = 0;
    if (ok) {
        qw_ldv<V>(a, x + o);
        qw_ldv<V>(b, x + o + HALF);
    }
#pragma unroll
    for (int e = 0; e < V; e++) ss += a[e] * a[e] + b[e] * b[e];
    float rs = 1.0f / sqrtf(lanes_sum<L>(ss) / D + eps);
    if (!ok) return;
    if (j == 0) rstd[r] = rs;
    size_t tk = (size_t)(r / heads) * HALF + j;
    qw_ldv<V>(w1, w + j);
    qw_ldv<V>(w2, w + j + HALF);
    qw_ldv<V>(c, cs + tk);
    qw_ldv<V>(s, sn + tk);
#pragma unroll
    for (int e = 0; e < V; e++) {
        float p = w1[e] * (a[e] * rs), q = w2[e] * (b[e] * rs);
        a[e] = p * c[e] - q * s[e];
        b[e] = q * c[e] + p * s[e];
    }
    qw_stv<V>(y + o, a);
    qw_stv<V>(y + o + HALF, b);
}

/* The fused backward: dx and dw in one read of dy and x.  A lane always
 * holds the same columns, so it sums its share of dw in registers over
 * every row it visits.  Block b takes the tiles of QKB_THREADS/L rows
 * b, b + grid, ...; at the end the groups' sums are added in group order
 * into part[b][d], which dw_reduce_kernel adds in block order. */

template <typename T, int L>
__global__ void __launch_bounds__(QKB_THREADS)
qk_bwd_kernel(T *dx, float *part, const T *dy, const T *x, const float *w, const float *rstd, const float *cs,
              const float *sn, int rows, int heads)
{
    constexpr int V = 8, HALF = L * V, D = 2 * HALF, RPB = QKB_THREADS / L;
    __shared__ float sh[RPB][D];
    int gi = threadIdx.x / L, j = (threadIdx.x % L) * V, tiles = (rows + RPB - 1) / RPB;
    float w1[V], w2[V], a1[V], a2[V];
    qw_ldv<V>(w1, w + j);
    qw_ldv<V>(w2, w + j + HALF);
#pragma unroll
    for (int e = 0; e < V; e++) a1[e] = a2[e] = 0;
    for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
        int r = t * RPB + gi;
        bool ok = r < rows;
        float g1[V], g2[V], x1[V], x2[V], c[V], s[V], rs = 0, dot = 0;
#pragma unroll
        for (int e = 0; e < V; e++) g1[e] = g2[e] = x1[e] = x2[e] = c[e] = s[e] = 0;
        if (ok) {
            size_t o = (size_t)r * D + j, tk = (size_t)(r / heads) * HALF + j;
            qw_ldv<V>(g1, dy + o);
            qw_ldv<V>(g2, dy + o + HALF);
            qw_ldv<V>(x1, x + o);
            qw_ldv<V>(x2, x + o + HALF);
            qw_ldv<V>(c, cs + tk);
            qw_ldv<V>(s, sn + tk);
            rs = rstd[r];
        }
#pragma unroll
        for (int e = 0; e < V; e++) {   /* g becomes dz, the inverse rotation of dy */
            float z1 = g1[e] * c[e] + g2[e] * s[e], z2 = g2[e] * c[e] - g1[e] * s[e];
            g1[e] = z1;
            g2[e] = z2;
            dot += z1 * w1[e] * x1[e] + z2 * w2[e] * x2[e];
            a1[e] += z1 * x1[e] * rs;
            a2[e] += z2 * x2[e] * rs;
        }
        float cc = rs * rs * lanes_sum<L>(dot) / D;
        if (ok) {
#pragma unroll
            for (int e = 0; e < V; e++) {
                g1[e] = rs * (g1[e] * w1[e] - x1[e] * cc);
                g2[e] = rs * (g2[e] * w2[e] - x2[e] * cc);
            }
            size_t o = (size_t)r * D + j;
            qw_stv<V>(dx + o, g1);
            qw_stv<V>(dx + o + HALF, g2);
        }
    }
#pragma unroll
    for (int e = 0; e < V; e++) {
        sh[gi][j + e] = a1[e];
        sh[gi][j + HALF + e] = a2[e];
    }
    __syncthreads();
    for (int k = threadIdx.x; k < D; k += QKB_THREADS) {
        float s = 0;
        for (int g = 0; g < RPB; g++) s += sh[g][k];
        part[(size_t)blockIdx.x * D + k] = s;
    }
}

template <typename T, int L>
static void qk_bwd_fused(T *dx, float *dw, const T *dy, const T *x, const float *w, const float *rstd,
                         const float *cs, const float *sn, int rows, int heads)
{
    constexpr int D = 16 * L, RPB = QKB_THREADS / L;
    static int resident = resident_blocks((const void *)qk_bwd_kernel<T, L>, QKB_THREADS, 0);
    int tiles = (rows + RPB - 1) / RPB, grid = tiles < resident ? tiles : resident;
    float *part = (float *)qw_cuda_scratch((size_t)grid * D * sizeof(float));
    qk_bwd_kernel<T, L><<<grid, QKB_THREADS>>>(dx, part, dy, x, w, rstd, cs, sn, rows, heads);
    QW_LAUNCHED("qk_norm_rope backward");
    dw_reduce_kernel<<<qw_blocks(D, TPB), TPB>>>(dw, part, grid, D);
    QW_LAUNCHED("qk_norm_rope backward (dw)");
}

/* Pairs of elements per lane: 2 when the rows and tables allow it. */
static bool qk_pairs(int d, const void *a, const void *b, const void *w, const void *cs, const void *sn)
{
    return (d / 2) % 64 == 0 && qw_aligned(8, a, b, w, cs) && qw_aligned(8, sn);
}

template <typename T>
static void qk_norm_rope_fwd(void *y, float *rstd, const void *x, const float *w, const float *cs, const float *sn,
                             int n, int heads, int d, float eps)
{
    int rows = n * heads;
    if (rows <= 0) return;
    unsigned g = qw_blocks(rows, QK_WARPS);
    if (qk_groups(d, y, x, w, cs, sn) && d == 64)
        qk_fwd_rows_kernel<T, 4><<<qw_blocks(rows, QKB_THREADS / 4), QKB_THREADS>>>((T *)y, rstd, (const T *)x, w,
                                                                                  cs, sn, rows, heads, eps);
    else if (qk_groups(d, y, x, w, cs, sn))
        qk_fwd_rows_kernel<T, 8><<<qw_blocks(rows, QKB_THREADS / 8), QKB_THREADS>>>((T *)y, rstd, (const T *)x, w,
                                                                                  cs, sn, rows, heads, eps);
    else if (qk_pairs(d, y, x, w, cs, sn))
        qk_fwd_kernel<T, 2><<<g, 32 * QK_WARPS>>>((T *)y, rstd, (const T *)x, w, cs, sn, rows, heads, d, eps);
    else
        qk_fwd_kernel<T, 1><<<g, 32 * QK_WARPS>>>((T *)y, rstd, (const T *)x, w, cs, sn, rows, heads, d, eps);
    QW_LAUNCHED("qk_norm_rope forward");
}

template <typename T>
static void qk_norm_rope_bwd(void *dx, float *dw, const void *dy, const void *x, const float *w, const float *rstd,
                             const float *cs, const float *sn, int n, int heads, int d)
{
    int rows = n * heads;
    if (rows <= 0) return;
    if (qk_groups(d, dx, dy, w, cs, sn, x)) {
        if (d == 64)
            qk_bwd_fused<T, 4>((T *)dx, dw, (const T *)dy, (const T *)x, w, rstd, cs, sn, rows, heads);
        else
            qk_bwd_fused<T, 8>((T *)dx, dw, (const T *)dy, (const T *)x, w, rstd, cs, sn, rows, heads);
        return;
    }
    unsigned g = qw_blocks(rows, QK_WARPS);
    if (qk_pairs(d, dx, dy, w, cs, sn) && qw_aligned(8, x))
        qk_dx_kernel<T, 2><<<g, 32 * QK_WARPS>>>((T *)dx, (const T *)dy, (const T *)x, w, rstd, cs, sn, rows, heads, d);
    else
        qk_dx_kernel<T, 1><<<g, 32 * QK_WARPS>>>((T *)dx, (const T *)dy, (const T *)x, w, rstd, cs, sn, rows, heads, d);
    QW_LAUNCHED("qk_norm_rope backward (dx)");
    norm_dw<T, true>(dw, (const T *)dy, (const T *)x, rstd, cs, sn, rows, d, heads);
}

template <typename T>
static void fill(qw_ops *t)
{
    t->rmsnorm_fwd = rmsnorm_fwd<T>;
    t->rmsnorm_bwd = rmsnorm_bwd<T>;
    t->rope_table = rope_table;
    t->qk_norm_rope_fwd = qk_norm_rope_fwd<T>;
    t->qk_norm_rope_bwd = qk_norm_rope_bwd<T>;
}

QW_FILL_BOTH(norm)
