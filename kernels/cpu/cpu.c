/* cpu.c — the fp32 CPU backend (activations are float: act_size 4):
 * memory, GEMM (OpenBLAS), elementwise and row ops (OpenMP), the optimizer
 * ops, and the op table.  Attention, MoE routing and the cross-entropy
 * live in their own files. */
#include "cpu.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qw/ops.h"

/* Column blocks for reductions over rows (deterministic, no atomics). */
#define COLBLOCK 16

/* Each block carries its size in a 64-byte header, so mem_stats can count
 * what is live. */
#define HDR 64
static size_t live_bytes, peak_bytes;

static void *cpu_alloc(size_t bytes)
{
    size_t n = (bytes + 63) / 64 * 64;
    char *p = aligned_alloc(64, HDR + n);
    if (!p) return NULL;
    memset(p + HDR, 0, n);
    *(size_t *)p = n;
    size_t now = __atomic_add_fetch(&live_bytes, n, __ATOMIC_RELAXED);
    size_t peak = __atomic_load_n(&peak_bytes, __ATOMIC_RELAXED);
    while (now > peak && !__atomic_compare_exchange_n(&peak_bytes, &peak, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    return p + HDR;
}

static void cpu_free(void *p)
{
    if (!p) return;
    char *b = (char *)p - HDR;
    __atomic_sub_fetch(&live_bytes, *(size_t *)b, __ATOMIC_RELAXED);
    free(b);
}

static void cpu_mem_stats(size_t *in_use, size_t *peak)
{
    *in_use = __atomic_load_n(&live_bytes, __ATOMIC_RELAXED);
    *peak = __atomic_load_n(&peak_bytes, __ATOMIC_RELAXED);
}

static void cpu_zero(void *p, size_t bytes) { memset(p, 0, bytes); }
static void cpu_copy(void *dst, const void *src, size_t bytes) { memmove(dst, src, bytes); }
static void cpu_sync(void) {}
static void cpu_set_deterministic(int on) {}   /* always deterministic */
/* Batch invariance: a product's rows computed one at a time (qw_cpu_gemm). */
static int batch_invariant;
static void cpu_set_batch_invariant(int on) { batch_invariant = on != 0; }
static void to_act(void *dst, const float *src, size_t n) { memcpy(dst, src, n * sizeof *src); }
static void from_act(float *dst, const void *src, size_t n) { memcpy(dst, src, n * sizeof *dst); }

static void cpu_set_threads(int n)
{
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    omp_set_num_threads(n);
}

/* Products smaller than this many multiply-adds run on one thread. */
#define GEMM_SPLIT_MIN (1 << 21)

static void sgemm1(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
                   const float *B, int ldb, float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* The BLAS runs single-threaded (see qw_ops_cpu); a large product is split
 * into blocks of C's rows (or columns, when C is wide) over the OpenMP
 * threads, so the process has one thread pool and nothing oversubscribes
 * the cores.  Inside a parallel region (attention heads) it runs whole. */
void qw_cpu_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc)
{
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {   /* empty sum: C = beta·C (some BLAS builds reject k = 0) */
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) C[(size_t)i * ldc + j] = beta == 0 ? 0 : beta * C[(size_t)i * ldc + j];
        return;
    }
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (batch_invariant && !ta && m > 1) {   /* BLAS libraries change kernels (and sum orders) with m */
        #pragma omp parallel for schedule(static) if (nt > 1 && (double)m * n * k >= GEMM_SPLIT_MIN)
        for (int i = 0; i < m; i++)
            sgemm1(ta, tb, 1, n, k, alpha, A + (size_t)i * lda, lda, B, ldb, beta, C + (size_t)i * ldc, ldc);
        return;
    }
    if (nt <= 1 || (double)m * n * k < GEMM_SPLIT_MIN) {
        sgemm1(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int by_rows = m >= n, len = by_rows ? m : n;
    int step = (len + nt - 1) / nt;
    step = (step + 15) / 16 * 16;
    int blocks = (len + step - 1) / step;
    #pragma omp parallel for schedule(static) num_threads(blocks)
    for (int b = 0; b < blocks; b++) {
        int o = b * step, w = o + step < len ? step : len - o;
        if (by_rows)
            sgemm1(ta, tb, w, n, k, alpha, ta ? A + o : A + (size_t)o * lda, lda, B, ldb, beta,
                   C + (size_t)o * ldc, ldc);
        else
            sgemm1(ta, tb, m, w, k, alpha, A, lda, tb ? B + (size_t)o * ldb : B + o, ldb, beta, C + o, ldc);
    }
}

/* Activations and fp32 outputs are both float here: c_f32 changes nothing. */
static void gemm(int ta, int tb, int m, int n, int k, float alpha, const void *A, int lda, const void *B, int ldb,
                 float beta, void *C, int ldc, int c_f32)
{
    qw_cpu_gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

static void embed_fwd(void *y, const float *table, const int32_t *ids, int n, int H)
{
    float *Y = y;
    #pragma omp parallel for schedule(static) if((size_t)n * H >= QW_CPU_PAR_MIN)
    for (int i = 0; i < n; i++) memcpy(Y + (size_t)i * H, table + (size_t)ids[i] * H, H * sizeof *Y);
}

/* dst[rows[a]] += src[a]: each thread owns a block of columns, so repeated
 * rows need no atomics and the sum order is fixed. */
static void scatter_add_rows(void *vdst, const void *vsrc, const int32_t *rows, int n, int dim)
{
    float *dst = vdst;
    const float *src = vsrc;
    int nb = (dim + COLBLOCK - 1) / COLBLOCK;
    #pragma omp parallel for schedule(static) if((size_t)n * dim >= QW_CPU_PAR_MIN)
    for (int b = 0; b < nb; b++) {
        int j0 = b * COLBLOCK, j1 = j0 + COLBLOCK < dim ? j0 + COLBLOCK : dim;
        for (int a = 0; a < n; a++) {
            float *d = dst + (size_t)rows[a] * dim;
            const float *s = src + (size_t)a * dim;
            for (int j = j0; j < j1; j++) d[j] += s[j];
        }
    }
}

static void embed_bwd(float *dtable, const void *dy, const int32_t *ids, int n, int H)
{
    scatter_add_rows(dtable, dy, ids, n, H);
}

static void rmsnorm_fwd(void *vy, float *rstd, const void *vx, const float *w, int rows, int dim, float eps)
{
    float *y = vy;
    const float *x = vx;
    #pragma omp parallel for schedule(static) if((size_t)rows * dim >= QW_CPU_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        float *yr = y + (size_t)r * dim;
        float ss = 0;
        #pragma omp simd reduction(+:ss)
        for (int j = 0; j < dim; j++) ss += xr[j] * xr[j];
        float rs = 1.0f / sqrtf(ss / dim + eps);
        rstd[r] = rs;
        for (int j = 0; j < dim; j++) yr[j] = w[j] * (xr[j] * rs);
    }
}

/* dw first, then dx row by row, so dx may alias dy. */
static void rmsnorm_bwd(void *vdx, float *dw, const void *vdy, const void *vx, const float *w,
                        const float *rstd, int rows, int dim, int acc)
{
    float *dx = vdx;
    const float *dy = vdy, *x = vx;
    int nb = (dim + COLBLOCK - 1) / COLBLOCK;
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < nb; b++) {
        int j0 = b * COLBLOCK, j1 = j0 + COLBLOCK < dim ? j0 + COLBLOCK : dim;
        double s[COLBLOCK] = {0};
        for (int r = 0; r < rows; r++) {
            const float *xr = x + (size_t)r * dim, *gr = dy + (size_t)r * dim;
            for (int j = j0; j < j1; j++) s[j - j0] += (double)(gr[j] * xr[j] * rstd[r]);
        }
        for (int j = j0; j < j1; j++) dw[j] += (float)s[j - j0];
    }
    #pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim, *gr = dy + (size_t)r * dim;
        float *dr = dx + (size_t)r * dim;
        float rs = rstd[r], dot = 0;
        #pragma omp simd reduction(+:dot)
        for (int j = 0; j < dim; j++) dot += gr[j] * w[j] * xr[j];
        float c = rs * rs * dot / dim;
        if (acc)
            for (int j = 0; j < dim; j++) dr[j] += rs * (gr[j] * w[j] - xr[j] * c);
        else
            for (int j = 0; j < dim; j++) dr[j] = rs * (gr[j] * w[j] - xr[j] * c);
    }
}

static void rope_table(float *cs, float *sn, const int32_t *pos, int n, const float *inv_freq, int half, float scale)
{
    #pragma omp parallel for schedule(static) if((size_t)n * half >= QW_CPU_PAR_MIN)
    for (int i = 0; i < n; i++)
        for (int j = 0; j < half; j++) {
            float ang = (float)pos[i] * inv_freq[j];
            cs[(size_t)i * half + j] = cosf(ang) * scale;
            sn[(size_t)i * half + j] = sinf(ang) * scale;
        }
}

/* Rotate x [n, heads, d] in place; inverse: the transposed rotation. */
static void rope(float *x, const float *cs, const float *sn, int n, int heads, int d, int inverse)
{
    int half = d / 2;
    float sgn = inverse ? -1.0f : 1.0f;
    #pragma omp parallel for schedule(static) if((size_t)n * heads * d >= QW_CPU_PAR_MIN)
    for (long r = 0; r < (long)n * heads; r++) {
        float *x1 = x + (size_t)r * d, *x2 = x1 + half;
        const float *c = cs + (size_t)(r / heads) * half, *s = sn + (size_t)(r / heads) * half;
        for (int j = 0; j < half; j++) {
            float a = x1[j], b = x2[j], sj = sgn * s[j];
            x1[j] = a * c[j] - b * sj;
            x2[j] = b * c[j] + a * sj;
        }
    }
}

static void qk_norm_rope_fwd(void *y, float *rstd, const void *x, const float *w, const float *cs,
                             const float *sn, int n, int heads, int d, float eps)
{
    rmsnorm_fwd(y, rstd, x, w, n * heads, d, eps);
    rope(y, cs, sn, n, heads, d, 0);
}

/* dx = Rᵀ·dy, then the RMSNorm backward in place on dx. */
static void qk_norm_rope_bwd(void *dx, float *dw, const void *dy, const void *x, const float *w,
                             const float *rstd, const float *cs, const float *sn, int n, int heads, int d)
{
    memcpy(dx, dy, (size_t)n * heads * d * sizeof(float));
    rope(dx, cs, sn, n, heads, d, 1);
    rmsnorm_bwd(dx, dw, dx, x, w, rstd, n * heads, d, 0);
}

static void swiglu_fwd(void *a, const void *g, const void *u, size_t n)
{
    float *A = a;
    const float *G = g, *U = u;
    #pragma omp parallel for schedule(static) if(n >= QW_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) A[i] = G[i] / (1.0f + expf(-G[i])) * U[i];
}

static void swiglu_bwd(void *dg, void *du, const void *da, const void *g, const void *u, size_t n)
{
    float *DG = dg, *DU = du;
    const float *DA = da, *G = g, *U = u;
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float s = 1.0f / (1.0f + expf(-G[i])), d = DA[i];
        DU[i] = d * G[i] * s;
        DG[i] = d * U[i] * s * (1.0f + G[i] * (1.0f - s));
    }
}

static void gather_rows(void *dst, const void *src, const int32_t *rows, int n, int dim)
{
    float *D = dst;
    const float *S = src;
    #pragma omp parallel for schedule(static) if((size_t)n * dim >= QW_CPU_PAR_MIN)
    for (int a = 0; a < n; a++) memcpy(D + (size_t)a * dim, S + (size_t)rows[a] * dim, dim * sizeof *D);
}

static void scale_rows(void *dst, const void *src, const float *w, const int32_t *slots, int n, int dim)
{
    float *D = dst;
    const float *S = src;
    #pragma omp parallel for schedule(static) if((size_t)n * dim >= QW_CPU_PAR_MIN)
    for (int a = 0; a < n; a++) {
        float s = w[slots[a]];
        for (int j = 0; j < dim; j++) D[(size_t)a * dim + j] = s * S[(size_t)a * dim + j];
    }
}

static void row_dot(float *out, const void *x, const void *y, const int32_t *slots, int n, int dim)
{
    #pragma omp parallel for schedule(static)
    for (int a = 0; a < n; a++) {
        const float *xa = (const float *)x + (size_t)a * dim, *ya = (const float *)y + (size_t)a * dim;
        float s = 0;
        #pragma omp simd reduction(+:s)
        for (int j = 0; j < dim; j++) s += xa[j] * ya[j];
        out[slots[a]] = s;
    }
}

/* Σ x² in fp64 over SUMSQ_BLOCKS equal blocks, each summed in order and
 * the blocks added in order: the same result for any thread count. */
#define SUMSQ_BLOCKS 256

static double sumsq(const float *x, size_t n)
{
    double part[SUMSQ_BLOCKS];
    size_t step = (n + SUMSQ_BLOCKS - 1) / SUMSQ_BLOCKS;
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < SUMSQ_BLOCKS; b++) {
        size_t lo = b * step < n ? b * step : n, hi = lo + step < n ? lo + step : n;
        double s = 0;
        for (size_t i = lo; i < hi; i++) s += (double)x[i] * x[i];
        part[b] = s;
    }
    double s = 0;
    for (int b = 0; b < SUMSQ_BLOCKS; b++) s += part[b];
    return s;
}

static void adamw(float *p, void *p_act, const float *g, float *m, float *v, size_t n, const qw_adamw_scalars *sc)
{
    const float b1 = sc->beta1, b2 = sc->beta2, eps = sc->eps, s = sc->grad_scale;
    const float step_size = sc->step_size, bc2_sqrt = sc->bc2_sqrt, d = sc->decay;
    float *pa = p_act;
    #pragma omp parallel for simd schedule(static)
    for (size_t j = 0; j < n; j++) {
        float gj = g[j] * s;
        float mj = b1 * m[j] + (1.0f - b1) * gj;
        float vj = b2 * v[j] + (1.0f - b2) * gj * gj;
        m[j] = mj;
        v[j] = vj;
        p[j] = p[j] * d - step_size * mj / (sqrtf(vj) / bc2_sqrt + eps);
        if (pa) pa[j] = p[j];
    }
}

static const qw_ops cpu_ops = {
    .name = "cpu",
    .act_size = sizeof(float),
    .lm_chunk_elems = (size_t)1 << 22,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .zero = cpu_zero,
    .copy = cpu_copy,
    .upload = cpu_copy,
    .download = cpu_copy,
    .sync = cpu_sync,
    .set_threads = cpu_set_threads,
    .set_deterministic = cpu_set_deterministic,
    .set_batch_invariant = cpu_set_batch_invariant,
    .mem_stats = cpu_mem_stats,
    .to_act = to_act,
    .from_act = from_act,
    .gemm = gemm,
    .embed_fwd = embed_fwd,
    .embed_bwd = embed_bwd,
    .rmsnorm_fwd = rmsnorm_fwd,
    .rmsnorm_bwd = rmsnorm_bwd,
    .rope_table = rope_table,
    .qk_norm_rope_fwd = qk_norm_rope_fwd,
    .qk_norm_rope_bwd = qk_norm_rope_bwd,
    .attn_workspace = qw_cpu_attn_workspace,
    .attn_fwd = qw_cpu_attn_fwd,
    .attn_bwd = qw_cpu_attn_bwd,
    .kv_write = qw_cpu_kv_write,
    .attn_paged_workspace = qw_cpu_attn_paged_workspace,
    .attn_paged = qw_cpu_attn_paged,
    .sample_workspace = qw_cpu_sample_workspace,
    .sample = qw_cpu_sample,
    .swiglu_fwd = swiglu_fwd,
    .swiglu_bwd = swiglu_bwd,
    .moe_route_fwd = qw_cpu_moe_route_fwd,
    .moe_route_bwd = qw_cpu_moe_route_bwd,
    .moe_aux_stats = qw_cpu_moe_aux_stats,
    .moe_dispatch = qw_cpu_moe_dispatch,
    .gather_rows = gather_rows,
    .scatter_add_rows = scatter_add_rows,
    .scale_rows = scale_rows,
    .row_dot = row_dot,
    .ce_fwd = qw_cpu_ce_fwd,
    .ce_bwd = qw_cpu_ce_bwd,
    .sumsq = sumsq,
    .adamw = adamw,
};

const qw_ops *qw_ops_cpu(void)
{
    openblas_set_num_threads(1);   /* all threading is OpenMP's (qw_cpu_gemm) */
    return &cpu_ops;
}
