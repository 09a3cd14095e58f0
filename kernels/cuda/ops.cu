/* ops.cu — the fp32 CUDA backend: device memory, GEMM (cuBLAS, TF32 off),
 * the elementwise and row ops, MoE routing, cross-entropy, and the table.
 * Attention lives in attention.cu, the bf16 GEMM in gemm_bf16.cu.
 *
 * Everything runs on the default stream in issue order.  Reductions over
 * rows (rmsnorm dw, embedding and scatter-add) use fp32 atomics, so their
 * low bits can differ from run to run. */
#include <cublas_v2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.cuh"
extern "C" {
#include "qw/ops.h"
}

#define TPB 256

static cublasHandle_t blas;
cublasLtHandle_t qw_cuda_lt;
static const char *why = "";

void qw_cuda_fatal(const char *what, const char *reason)
{
    fprintf(stderr, "qw: cuda: %s: %s\n", what, reason);
    exit(1);
}

static void blas_check(cublasStatus_t st, const char *what)
{
    if (st != CUBLAS_STATUS_SUCCESS) qw_cuda_fatal(what, cublasGetStatusString(st));
}

extern "C" const char *qw_cuda_why(void) { return why; }
extern "C" void qw_cuda_sync(void) { QW_CU(cudaDeviceSynchronize()); }

/* ---- memory ---- */

static void *cu_alloc(size_t bytes)
{
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 64) != cudaSuccess) {
        cudaGetLastError();   /* clear the sticky-free allocation error */
        return NULL;
    }
    QW_CU(cudaMemset(p, 0, bytes ? bytes : 64));
    return p;
}

static void cu_free(void *p) { QW_CU(cudaFree(p)); }
static void cu_zero(void *p, size_t bytes) { QW_CU(cudaMemset(p, 0, bytes)); }
static void cu_copy(void *dst, const void *src, size_t bytes) { QW_CU(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice)); }
static void cu_upload(void *dst, const void *src, size_t bytes) { QW_CU(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice)); }
static void cu_download(void *dst, const void *src, size_t bytes) { QW_CU(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost)); }
static void cu_set_threads(int n) {}

/* ---- GEMM: row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ ---- */

__global__ void scale_matrix(float *C, int m, int n, int ldc, float beta)
{
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)m * n) return;
    float *c = C + (idx / n) * ldc + idx % n;
    *c = beta == 0 ? 0 : beta * *c;
}

static void cu_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        scale_matrix<<<qw_blocks((size_t)m * n, TPB), TPB>>>(C, m, n, ldc, beta);
        QW_LAUNCHED("gemm (k = 0)");
        return;
    }
    blas_check(cublasSgemm(blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k,
                           &alpha, B, ldb, A, lda, &beta, C, ldc), "cublasSgemm");
}

/* ---- rows ---- */

__global__ void gather_kernel(float *dst, const float *src, const int32_t *rows, int n, int dim)
{
    for (int j = threadIdx.x; j < dim; j += blockDim.x)
        dst[(size_t)blockIdx.x * dim + j] = src[(size_t)rows[blockIdx.x] * dim + j];
}

static void gather_rows(float *dst, const float *src, const int32_t *rows, int n, int dim)
{
    if (n <= 0) return;
    gather_kernel<<<n, TPB>>>(dst, src, rows, n, dim);
    QW_LAUNCHED("gather_rows");
}

static void embed_fwd(float *y, const float *table, const int32_t *ids, int n, int H)
{
    gather_rows(y, table, ids, n, H);
}

__global__ void scatter_add_kernel(float *dst, const float *src, const int32_t *rows, int n, int dim)
{
    for (int j = threadIdx.x; j < dim; j += blockDim.x)
        atomicAdd(&dst[(size_t)rows[blockIdx.x] * dim + j], src[(size_t)blockIdx.x * dim + j]);
}

static void scatter_add_rows(float *dst, const float *src, const int32_t *rows, int n, int dim)
{
    if (n <= 0) return;
    scatter_add_kernel<<<n, TPB>>>(dst, src, rows, n, dim);
    QW_LAUNCHED("scatter_add_rows");
}

static void embed_bwd(float *dtable, const float *dy, const int32_t *ids, int n, int H)
{
    scatter_add_rows(dtable, dy, ids, n, H);
}

__global__ void scale_rows_kernel(float *dst, const float *src, const float *w, const int32_t *slots, int dim)
{
    float s = w[slots[blockIdx.x]];
    for (int j = threadIdx.x; j < dim; j += blockDim.x)
        dst[(size_t)blockIdx.x * dim + j] = s * src[(size_t)blockIdx.x * dim + j];
}

static void scale_rows(float *dst, const float *src, const float *w, const int32_t *slots, int n, int dim)
{
    if (n <= 0) return;
    scale_rows_kernel<<<n, TPB>>>(dst, src, w, slots, dim);
    QW_LAUNCHED("scale_rows");
}

__global__ void row_dot_kernel(float *out, const float *x, const float *y, const int32_t *slots, int n, int dim)
{
    int a = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (a >= n) return;
    float s = 0;
    for (int j = lane; j < dim; j += 32) s += x[(size_t)a * dim + j] * y[(size_t)a * dim + j];
    s = qw_warp_sum(s);
    if (lane == 0) out[slots[a]] = s;
}

static void row_dot(float *out, const float *x, const float *y, const int32_t *slots, int n, int dim)
{
    if (n <= 0) return;
    row_dot_kernel<<<qw_blocks(n, TPB / 32), TPB>>>(out, x, y, slots, n, dim);
    QW_LAUNCHED("row_dot");
}

/* ---- block reductions (blockDim.x == TPB) ---- */

__device__ float block_sum(float v, float *sh)
{
    v = qw_warp_sum(v);
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    float t = 0;
    for (int w = 0; w < TPB / 32; w++) t += sh[w];
    __syncthreads();
    return t;
}

__device__ float block_max(float v, float *sh)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    float t = -INFINITY;
    for (int w = 0; w < TPB / 32; w++) t = fmaxf(t, sh[w]);
    __syncthreads();
    return t;
}

/* ---- RMSNorm ---- */

template <typename T>
__global__ void rmsnorm_fwd_kernel(T *y, float *rstd, const T *x, const float *w, int dim, float eps)
{
    __shared__ float sh[TPB / 32];
    const T *xr = x + (size_t)blockIdx.x * dim;
    T *yr = y + (size_t)blockIdx.x * dim;
    float ss = 0;
    for (int j = threadIdx.x; j < dim; j += TPB) {
        float v = qw_ld(xr + j);
        ss += v * v;
    }
    float rs = 1.0f / sqrtf(block_sum(ss, sh) / dim + eps);
    if (threadIdx.x == 0) rstd[blockIdx.x] = rs;
    for (int j = threadIdx.x; j < dim; j += TPB) qw_st(yr + j, w[j] * (qw_ld(xr + j) * rs));
}

template <typename T>
static void rmsnorm_fwd_t(T *y, float *rstd, const T *x, const float *w, int rows, int dim, float eps)
{
    if (rows <= 0) return;
    rmsnorm_fwd_kernel<T><<<rows, TPB>>>(y, rstd, x, w, dim, eps);
    QW_LAUNCHED("rmsnorm forward");
}

static void rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int rows, int dim, float eps)
{
    rmsnorm_fwd_t(y, rstd, x, w, rows, dim, eps);
}

extern "C" void qw_cuda_rmsnorm_fwd_bf16(uint16_t *y, float *rstd, const uint16_t *x, const float *w, int rows,
                                         int dim, float eps)
{
    rmsnorm_fwd_t((__nv_bfloat16 *)y, rstd, (const __nv_bfloat16 *)x, w, rows, dim, eps);
}

__global__ void rmsnorm_dx_kernel(float *dx, const float *dy, const float *x, const float *w, const float *rstd,
                                  int dim, int acc)
{
    __shared__ float sh[TPB / 32];
    size_t o = (size_t)blockIdx.x * dim;
    float rs = rstd[blockIdx.x], dot = 0;
    for (int j = threadIdx.x; j < dim; j += TPB) dot += dy[o + j] * w[j] * x[o + j];
    float c = rs * rs * block_sum(dot, sh) / dim;
    for (int j = threadIdx.x; j < dim; j += TPB) {
        float g = rs * (dy[o + j] * w[j] - x[o + j] * c);
        dx[o + j] = acc ? dx[o + j] + g : g;
    }
}

/* dw: blocks of 32 columns × a slice of rows, partial sums added atomically. */
#define DW_ROWS 256
__global__ void rmsnorm_dw_kernel(float *dw, const float *dy, const float *x, const float *rstd, int rows, int dim)
{
    __shared__ float sh[8][33];
    int j = blockIdx.x * 32 + threadIdx.x, r0 = blockIdx.y * DW_ROWS;
    float s = 0;
    if (j < dim)
        for (int r = r0 + threadIdx.y; r < rows && r < r0 + DW_ROWS; r += 8)
            s += dy[(size_t)r * dim + j] * x[(size_t)r * dim + j] * rstd[r];
    sh[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && j < dim) {
        for (int t = 1; t < 8; t++) s += sh[t][threadIdx.x];
        atomicAdd(&dw[j], s);
    }
}

static void rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                        int rows, int dim, int acc)
{
    if (rows <= 0) return;
    rmsnorm_dx_kernel<<<rows, TPB>>>(dx, dy, x, w, rstd, dim, acc);
    QW_LAUNCHED("rmsnorm backward (dx)");
    rmsnorm_dw_kernel<<<dim3(qw_blocks(dim, 32), qw_blocks(rows, DW_ROWS)), dim3(32, 8)>>>(dw, dy, x, rstd, rows, dim);
    QW_LAUNCHED("rmsnorm backward (dw)");
}

/* ---- RoPE ---- */

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

__global__ void rope_kernel(float *x, const float *cs, const float *sn, int n, int heads, int d, float sgn)
{
    int half = d / 2;
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)n * heads * half) return;
    size_t r = idx / half;
    int j = idx % half;
    float *x1 = x + r * d, *x2 = x1 + half;
    size_t t = (r / heads) * half + j;
    float a = x1[j], b = x2[j], c = cs[t], s = sgn * sn[t];
    x1[j] = a * c - b * s;
    x2[j] = b * c + a * s;
}

static void rope(float *x, const float *cs, const float *sn, int n, int heads, int d, int inverse)
{
    if (n <= 0) return;
    rope_kernel<<<qw_blocks((size_t)n * heads * (d / 2), TPB), TPB>>>(x, cs, sn, n, heads, d, inverse ? -1.0f : 1.0f);
    QW_LAUNCHED("rope");
}

/* ---- SwiGLU ---- */

__global__ void swiglu_fwd_kernel(float *a, const float *g, const float *u, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) a[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void swiglu_fwd(float *a, const float *g, const float *u, size_t n)
{
    if (!n) return;
    swiglu_fwd_kernel<<<qw_blocks(n, TPB), TPB>>>(a, g, u, n);
    QW_LAUNCHED("swiglu forward");
}

__global__ void swiglu_bwd_kernel(float *dg, float *du, const float *da, const float *g, const float *u, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i], s = 1.0f / (1.0f + expf(-gi)), d = da[i];
    du[i] = d * gi * s;
    dg[i] = d * u[i] * s * (1.0f + gi * (1.0f - s));
}

static void swiglu_bwd(float *dg, float *du, const float *da, const float *g, const float *u, size_t n)
{
    if (!n) return;
    swiglu_bwd_kernel<<<qw_blocks(n, TPB), TPB>>>(dg, du, da, g, u, n);
    QW_LAUNCHED("swiglu backward");
}

/* ---- MoE routing: one thread per token (E and k are small) ---- */

__global__ void route_fwd_kernel(float *probs, int32_t *sel, float *w, const float *logits, int n, int E, int k,
                                 int norm)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float *l = logits + (size_t)i * E;
    float *p = probs + (size_t)i * E, *wi = w + (size_t)i * k;
    int32_t *s = sel + (size_t)i * k;
    float mx = -INFINITY, sum = 0, tot = 0;
    for (int e = 0; e < E; e++) mx = fmaxf(mx, l[e]);
    for (int e = 0; e < E; e++) sum += p[e] = expf(l[e] - mx);
    for (int e = 0; e < E; e++) p[e] /= sum;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int t = 0; t < j; t++) taken |= s[t] == e;
            if (!taken && (best < 0 || p[e] > p[best])) best = e;
        }
        s[j] = best;
        tot += wi[j] = p[best];
    }
    if (norm)
        for (int j = 0; j < k; j++) wi[j] /= tot;
}

static void moe_route_fwd(float *probs, int32_t *sel, float *w, const float *logits, int n, int E, int k, int norm)
{
    if (n <= 0) return;
    route_fwd_kernel<<<qw_blocks(n, 128), 128>>>(probs, sel, w, logits, n, E, k, norm);
    QW_LAUNCHED("moe_route forward");
}

__global__ void route_bwd_kernel(float *dlogits, const float *dw, const float *probs, const int32_t *sel,
                                 const float *w, const float *dprobs, int n, int E, int k, int norm)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float *p = probs + (size_t)i * E, *dwi = dw + (size_t)i * k, *wi = w + (size_t)i * k;
    const int32_t *s = sel + (size_t)i * k;
    float *dp = dlogits + (size_t)i * E;
    for (int e = 0; e < E; e++) dp[e] = dprobs ? dprobs[e] : 0;
    if (norm) {
        float tot = 0, t = 0;
        for (int j = 0; j < k; j++) { tot += p[s[j]]; t += dwi[j] * wi[j]; }
        for (int j = 0; j < k; j++) dp[s[j]] += (dwi[j] - t) / tot;
    } else {
        for (int j = 0; j < k; j++) dp[s[j]] += dwi[j];
    }
    float dot = 0;
    for (int e = 0; e < E; e++) dot += p[e] * dp[e];
    for (int e = 0; e < E; e++) dp[e] = p[e] * (dp[e] - dot);
}

static void moe_route_bwd(float *dlogits, const float *dw, const float *probs, const int32_t *sel, const float *w,
                          const float *dprobs, int n, int E, int k, int norm)
{
    if (n <= 0) return;
    route_bwd_kernel<<<qw_blocks(n, 128), 128>>>(dlogits, dw, probs, sel, w, dprobs, n, E, k, norm);
    QW_LAUNCHED("moe_route backward");
}

/* One block per expert: sums over the rows. */
__global__ void aux_stats_kernel(float *count, float *psum, const float *probs, const int32_t *sel, int n, int E, int k)
{
    __shared__ float sh[TPB / 32];
    int e = blockIdx.x;
    float ps = 0, c = 0;
    for (int i = threadIdx.x; i < n; i += TPB) {
        ps += probs[(size_t)i * E + e];
        for (int j = 0; j < k; j++) c += sel[(size_t)i * k + j] == e;
    }
    ps = block_sum(ps, sh);
    c = block_sum(c, sh);
    if (threadIdx.x == 0) { count[e] += c; psum[e] += ps; }
}

static void moe_aux_stats(float *count, float *psum, const float *probs, const int32_t *sel, int n, int E, int k)
{
    if (E <= 0) return;
    aux_stats_kernel<<<E, TPB>>>(count, psum, probs, sel, n, E, k);
    QW_LAUNCHED("moe_aux_stats");
}

/* The grouping is a counting sort whose offsets the caller wants on the
 * host anyway: done on the host over a downloaded sel. */
static int moe_dispatch(int32_t *offsets, int32_t *rows, int32_t *slots, const int32_t *sel, int n, int E, int k,
                        int capacity)
{
    size_t na = (size_t)n * k;
    int32_t *h = (int32_t *)malloc((3 * na + 2 * (size_t)E + 1) * sizeof *h);
    if (!h) qw_cuda_fatal("moe_dispatch", "out of host memory");
    int32_t *hr = h + na, *hs = hr + na, *seen = hs + na, *cur = seen + E;
    cu_download(h, sel, na * sizeof *h);
    memset(seen, 0, E * sizeof *seen);
    memset(offsets, 0, (E + 1) * sizeof *offsets);
    for (size_t a = 0; a < na; a++)
        if (seen[h[a]]++ < capacity) offsets[h[a] + 1]++;
    for (int e = 0; e < E; e++) offsets[e + 1] += offsets[e];
    memcpy(cur, offsets, E * sizeof *cur);
    memset(seen, 0, E * sizeof *seen);
    for (size_t a = 0; a < na; a++) {
        int e = h[a];
        if (seen[e]++ >= capacity) continue;
        hr[cur[e]] = (int32_t)(a / k);
        hs[cur[e]++] = (int32_t)a;
    }
    int kept = offsets[E];
    if (kept) {
        cu_upload(rows, hr, kept * sizeof *hr);
        cu_upload(slots, hs, kept * sizeof *hs);
    }
    free(h);
    return kept;
}

/* ---- cross-entropy: one block per row ---- */

__global__ void ce_fwd_kernel(float *lse, float *logp, const float *logits, const int32_t *targets, int V)
{
    __shared__ float sh[TPB / 32];
    const float *l = logits + (size_t)blockIdx.x * V;
    float mx = -INFINITY, sum = 0;
    for (int v = threadIdx.x; v < V; v += TPB) mx = fmaxf(mx, l[v]);
    mx = block_max(mx, sh);
    for (int v = threadIdx.x; v < V; v += TPB) sum += expf(l[v] - mx);
    float L = mx + logf(block_sum(sum, sh));
    if (threadIdx.x == 0) {
        int t = targets[blockIdx.x];
        lse[blockIdx.x] = L;
        logp[blockIdx.x] = t >= 0 ? l[t] - L : 0;
    }
}

static void ce_fwd(float *lse, float *logp, const float *logits, const int32_t *targets, int n, int V)
{
    if (n <= 0) return;
    ce_fwd_kernel<<<n, TPB>>>(lse, logp, logits, targets, V);
    QW_LAUNCHED("ce forward");
}

__global__ void ce_bwd_kernel(float *logits, const float *lse, const int32_t *targets, const float *coef, int V)
{
    float *l = logits + (size_t)blockIdx.x * V;
    int t = targets[blockIdx.x];
    float c = coef[blockIdx.x], m = lse[blockIdx.x];
    for (int v = threadIdx.x; v < V; v += TPB)
        l[v] = t < 0 ? 0 : c * expf(l[v] - m) - (v == t ? c : 0);
}

static void ce_bwd(float *logits, const float *lse, const int32_t *targets, const float *coef, int n, int V)
{
    if (n <= 0) return;
    ce_bwd_kernel<<<n, TPB>>>(logits, lse, targets, coef, V);
    QW_LAUNCHED("ce backward");
}

/* ---- attention ---- */

static size_t attn_workspace(int T, int d) { return 0; }

static void attn_fwd(float *o, float *lse, const float *q, const float *k, const float *v, const int32_t *kv_start,
                     int B, int T, int nh, int nkv, int d, float scale, void *ws, size_t ws_bytes)
{
    qw_cuda_attn_fwd_t<float>(o, lse, q, k, v, kv_start, B, T, nh, nkv, d, scale);
}

static void attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                     const float *v, const float *o, const float *lse, const int32_t *kv_start, int B, int T, int nh,
                     int nkv, int d, float scale, void *ws, size_t ws_bytes)
{
    qw_cuda_attn_bwd_t<float>(dq, dk, dv, dout, q, k, v, o, lse, kv_start, B, T, nh, nkv, d, scale);
}

/* ---- conversions ---- */

__global__ void to_bf16_kernel(__nv_bfloat16 *dst, const float *src, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void from_bf16_kernel(float *dst, const __nv_bfloat16 *src, size_t n)
{
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __bfloat162float(src[i]);
}

extern "C" void qw_cuda_to_bf16(uint16_t *dst, const float *src, size_t n)
{
    if (!n) return;
    to_bf16_kernel<<<qw_blocks(n, TPB), TPB>>>((__nv_bfloat16 *)dst, src, n);
    QW_LAUNCHED("to_bf16");
}

extern "C" void qw_cuda_from_bf16(float *dst, const uint16_t *src, size_t n)
{
    if (!n) return;
    from_bf16_kernel<<<qw_blocks(n, TPB), TPB>>>(dst, (const __nv_bfloat16 *)src, n);
    QW_LAUNCHED("from_bf16");
}

/* ---- the table ---- */

static qw_ops cuda_ops;

extern "C" const qw_ops *qw_ops_cuda(void)
{
    static int state;   /* 0 untried, 1 ready, -1 unusable */
    if (state) return state > 0 ? &cuda_ops : NULL;
    state = -1;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        why = e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device found";
        cudaGetLastError();
        return NULL;
    }
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS || cublasLtCreate(&qw_cuda_lt) != CUBLAS_STATUS_SUCCESS) {
        why = "cuBLAS could not be initialised";
        return NULL;
    }
    /* fp32 GEMMs in full fp32: no TF32 (parity with the CPU reference). */
    blas_check(cublasSetMathMode(blas, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode");
    cuda_ops.name = "cuda";
    cuda_ops.alloc = cu_alloc;
    cuda_ops.free = cu_free;
    cuda_ops.zero = cu_zero;
    cuda_ops.copy = cu_copy;
    cuda_ops.upload = cu_upload;
    cuda_ops.download = cu_download;
    cuda_ops.set_threads = cu_set_threads;
    cuda_ops.gemm = cu_gemm;
    cuda_ops.embed_fwd = embed_fwd;
    cuda_ops.embed_bwd = embed_bwd;
    cuda_ops.rmsnorm_fwd = rmsnorm_fwd;
    cuda_ops.rmsnorm_bwd = rmsnorm_bwd;
    cuda_ops.rope_table = rope_table;
    cuda_ops.rope = rope;
    cuda_ops.attn_workspace = attn_workspace;
    cuda_ops.attn_fwd = attn_fwd;
    cuda_ops.attn_bwd = attn_bwd;
    cuda_ops.swiglu_fwd = swiglu_fwd;
    cuda_ops.swiglu_bwd = swiglu_bwd;
    cuda_ops.moe_route_fwd = moe_route_fwd;
    cuda_ops.moe_route_bwd = moe_route_bwd;
    cuda_ops.moe_aux_stats = moe_aux_stats;
    cuda_ops.moe_dispatch = moe_dispatch;
    cuda_ops.gather_rows = gather_rows;
    cuda_ops.scatter_add_rows = scatter_add_rows;
    cuda_ops.scale_rows = scale_rows;
    cuda_ops.row_dot = row_dot;
    cuda_ops.ce_fwd = ce_fwd;
    cuda_ops.ce_bwd = ce_bwd;
    state = 1;
    return &cuda_ops;
}
