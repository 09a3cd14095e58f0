/* test_ops.c — every op of both CUDA tables against the CPU op on fresh
 * random inputs (the seed is printed; QW_SEED repeats a run).  GPU outputs
 * are poisoned with NaN before each call, so an output an op fails to
 * write cannot pass.
 *
 * The "cuda-fp32" table gets the CPU op's inputs as they are.  For the
 * "cuda" table (bf16 activations) every activation input is first rounded
 * to bf16 on the host, so that the CPU op sees exactly the values the GPU
 * reads; the remaining differences are the GPU's bf16 outputs and fp32
 * summation order.
 *
 * bf16 outputs, element by element (cmp_bf16).  An op that computes in
 * fp32 from its (identical) inputs and rounds once to bf16 at the store
 * lands within half a bf16 ulp of its own fp32 result, and that result is
 * within the fp32 difference of the CPU's (another summation order, FMA
 * contraction, another expf).  So, with r the CPU's fp32 value:
 *     |gpu − r| ≤ u·ulp(r) + rel·|r| + abs·max|r|
 * where ulp(r) = 2^(⌊log2 |r|⌋ − 7) is bf16's spacing at r (8 significant
 * bits), u = 1 (half an ulp for the rounding, doubled for a result that
 * rounds across a power of two, where the spacing halves), and rel and abs
 * bound the fp32 difference: a length-K fp32 reduction in another order
 * differs by at most K·2^-24 of the sum of |terms| on each side, so
 * K·2^-22 (both sides, and a factor 2 for the sum of |terms| over the
 * largest output) where a reduction feeds the element: rel for a factor
 * that scales the whole row (rstd in the norm forwards), abs for a term
 * that is subtracted (the row's dot product in the norm backwards, the
 * rotation's difference in RoPE, the GEMM's k products).  swiglu gets rel
 * 2^-18 (expf and the division in σ, a few fp32 ulps, with margin) and abs
 * 2^-20; its dg abs 2^-16 of the largest output (σ's error times
 * |1 + g − 2gσ| ≤ 13 for |g| ≤ 6, where 1 + g·(1 − σ(g)) cancels);
 * scale_rows none (one fp32 product on both sides);
 * cross-entropy's gradient rel 2^-12 (softmax = exp(logit − lse), the two
 * lse of 151936 terms differ by ~√V·2^-24 at most in practice).  That
 * is about an eighth of a bf16 ulp or less for the largest elements: an
 * error of 2^-8 ≈ 0.4% of a value (0.6–4% for an RMSNorm-backward bug)
 * exceeds it at the large elements.  The old measure, max|gpu − cpu| /
 * max|cpu| ≤ 1e-2, let such an error through.
 *
 * Attention keeps the old measure (TOL_ACT): its kernels round P and dS to
 * bf16 before the second matrix product, an error of 2^-9 relative per
 * term that the output sums (the flash tests check those kernels against
 * double).  scatter_add_rows on the bf16 table keeps 2·TOL_ACT: each add to
 * a repeated row is stored, so rounded, again.
 *
 * Other measures: max|gpu − cpu| / max|cpu| over an output.
 *   TOL_F32   1e-4  every output of the fp32 table
 *   TOL_ACT   1e-2  attention's bf16 outputs (8 significant bits: 2^-7 for
 *                   the last rounding, plus what rounded intermediates feed)
 *   TOL_MIX   1e-3  fp32 outputs of the bf16 table (rstd, lse, dw, fp32
 *                   GEMM results, gradients of the table): fp32 math on the
 *                   same rounded inputs, in another order; for a reduction
 *                   of K terms 2·K·2^-24 of the sum of |terms|, which for
 *                   the sums here (K in the hundreds; random signs, so the
 *                   sum of |terms| is up to about √K times the largest
 *                   output) is of the order of 1e-3: not tightened
 * Exact (0): conversions, gathers, embedding forward, MoE selection and
 * dispatch, AdamW (same operation order, no fused multiply-adds) and its
 * bf16 copy (= the fp32 result rounded), determinism (bit-identical runs),
 * the deterministic scatter-add (= the rows added in order, each sum
 * stored in the activation type).
 *
 *   test_ops            all cases for both tables (PASS/FAIL lines; with
 *                       QW_TEST_VERBOSE set, every measured error too)
 *   test_ops fault      provoke a device fault: must exit 1 with "qw: cuda:"
 *   test_ops bench      time the bf16 table's ops at Qwen3-0.6B shapes
 */
#include <stdint.h>
#include <time.h>

#include "qwtest.h"
#include "qw/layer.h"
#include "qw/ops.h"
#include "qwcuda.h"
#include "bf16_tol.h"

#define TOL_F32 1e-4
#define TOL_ACT 1e-2
#define TOL_MIX 1e-3

static const qw_ops *C, *G;   /* cpu, the cuda table under test */
static int bf;                /* G has bf16 activations */
static double tol_act, tol_f32, tol_scatter;
static unsigned long long rng;

/* Buffers of one case, freed together by done(). */
static void *hbufs[256], *dbufs[256];
static int nh_, nd_;

static void *keep(void **list, int *n, void *p)
{
    if (*n == 256) { fprintf(stderr, "test_ops: too many buffers in one case\n"); exit(1); }
    return list[(*n)++] = p;
}

static void *hkeep(void *p) { return keep(hbufs, &nh_, p); }
static void *dkeep(void *p) { return keep(dbufs, &nd_, p); }

static void done(void)
{
    while (nh_) free(hbufs[--nh_]);
    while (nd_) G->free(dbufs[--nd_]);
}

static double urand(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (rng >> 11) * (1.0 / 9007199254740992.0);
}

static float *hnew(size_t n) { return hkeep(malloc((n ? n : 1) * sizeof(float))); }

static float *hrand(size_t n, float lo, float hi)
{
    float *p = hnew(n);
    for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * (float)urand();
    return p;
}

static int32_t *hints(size_t n, int lo, int hi)   /* in [lo, hi) */
{
    int32_t *p = hkeep(malloc(n * sizeof *p));
    for (size_t i = 0; i < n; i++) p[i] = lo + (int)(urand() * (hi - lo));
    return p;
}

static float *hcopy(const float *x, size_t n) { return memcpy(hnew(n), x, n * sizeof *x); }

/* Device buffers: fp32 from host values; activations from host values
 * (rounded in place first on the bf16 table); NaN-poisoned outputs. */
static void *dalloc(size_t bytes)
{
    void *d = G->alloc(bytes);
    if (!d) { fprintf(stderr, "test_ops: out of device memory\n"); exit(1); }
    return dkeep(d);
}

static void *dput(const void *h, size_t bytes)
{
    void *d = dalloc(bytes);
    G->upload(d, h, bytes);
    return d;
}

static float *df32(const float *h, size_t n) { return dput(h, n * sizeof *h); }

static void *dact(float *h, size_t n)
{
    if (bf) round_bf16(h, n);
    float *t = G->alloc(n * sizeof *t);
    G->upload(t, h, n * sizeof *t);
    void *d = dalloc(n * G->act_size);
    G->to_act(d, t, n);
    G->free(t);
    return d;
}

static void *dpoison(size_t n, size_t size)
{
    unsigned char *h = malloc(n * size);
    for (size_t i = 0; i < n; i++) {
        if (size == 4) memcpy(h + 4 * i, &(uint32_t){0x7fc00000u}, 4);
        else memcpy(h + 2 * i, &(uint16_t){0x7fc0u}, 2);
    }
    void *d = dput(h, n * size);
    free(h);
    return d;
}

static float *dnan(size_t n) { return dpoison(n, 4); }
static void *dnan_act(size_t n) { return dpoison(n, G->act_size); }

static float *get_f32(const float *d, size_t n)
{
    float *h = hnew(n);
    G->download(h, d, n * sizeof *h);
    return h;
}

static float *get_act(const void *d, size_t n)
{
    float *t = G->alloc(n * sizeof *t), *h = hnew(n);
    G->from_act(t, d, n);
    G->download(h, t, n * sizeof *h);
    G->free(t);
    return h;
}

static double rel_err(const float *ref, const float *got, size_t n)
{
    double mx = 0, e = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs(ref[i]);
        mx = r > mx ? r : mx;
        double d = fabs((double)ref[i] - got[i]);
        if (!(d <= e)) e = isnan(d) ? INFINITY : d;
    }
    return e / (mx > 0 ? mx : 1);
}

static void check(const char *what, const float *ref, const float *got, size_t n, double tol)
{
    double e = rel_err(ref, got, n);
    if (getenv("QW_TEST_VERBOSE")) printf("# %s %s: %.3g (tolerance %.0e)\n", G->name, what, e, tol);
    CHECK_MSG(e <= tol, "%s: relative error %.3g > %.0e", what, e, tol);
}

/* Compare a device fp32 output / a device activation output with the CPU's
 * (rounded to bf16 first on the bf16 table: what the GPU can best store). */
static void cmp_f32(const char *what, const float *ref, const float *d, size_t n, double tol)
{
    check(what, ref, get_f32(d, n), n, tol);
}

static void cmp_act(const char *what, const float *ref, const void *d, size_t n, double tol)
{
    float *r = hcopy(ref, n);
    if (bf) round_bf16(r, n);
    check(what, r, get_act(d, n), n, tol);
}

/* A device activation output against the CPU's fp32 values: on the bf16
 * table element by element within u bf16 ulps plus the fp32 allowances
 * (see the top of this file); on the fp32 table within tol_act. */
static void cmp_bf16(const char *what, const float *ref, const void *d, size_t n, double u, double rel, double abs_)
{
    float *got = get_act(d, n);
    if (!bf) { check(what, ref, got, n, tol_act); return; }
    double ulps, e = bf16_err(ref, got, n, u, rel, abs_, &ulps);
    if (getenv("QW_TEST_VERBOSE"))
        printf("# %s %s: %.3g of the allowance (worst %.2f bf16 ulps)\n", G->name, what, e, ulps);
    CHECK_MSG(e <= 1, "%s: %.3g times the allowance of %g ulp + %g·|r| + %g·max|r| (worst %.2f bf16 ulps)", what,
              e, u, rel, abs_, ulps);
}

static void cmp_ints(const char *what, const int32_t *ref, const int32_t *d, size_t n)
{
    int32_t *got = hkeep(malloc((n ? n : 1) * sizeof *got));
    G->download(got, d, n * sizeof *got);
    CHECK_MSG(!memcmp(ref, got, n * sizeof *got), "%s: integers differ", what);
}

static int same_bytes(const void *a, const void *b, size_t bytes)
{
    unsigned char *x = malloc(bytes), *y = malloc(bytes);
    G->download(x, a, bytes);
    G->download(y, b, bytes);
    int same = !memcmp(x, y, bytes);
    free(x);
    free(y);
    return same;
}

/* ---- cases ---- */

TEST(convert)
{
    size_t n = 10001;
    float *x = hrand(n, -100, 100);
    x[0] = 1.00390625f;   /* halfway between two bf16 values: rounds to even */
    x[1] = 1.01171875f;
    float *dx = df32(x, n), *back = dnan(n);
    void *a = dnan_act(n);
    G->to_act(a, dx, n);
    G->from_act(back, a, n);
    if (bf) round_bf16(x, n);
    cmp_f32("to_act/from_act", x, back, n, 0);
    done();
}

/* C = alpha·op(A)·op(B) + beta·C with padded leading dimensions; c_f32
 * selects an fp32 C on the bf16 table. */
static void gemm_case(int ta, int tb, int m, int n, int k, float beta, int c_f32)
{
    int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
    size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
    int cf = c_f32 || !bf;
    float *A = hrand(na, -1, 1), *B = hrand(nb, -1, 1), *Cc = hrand(nc, -1, 1);
    void *dA = dact(A, na), *dB = dact(B, nb), *dC = cf ? (void *)df32(Cc, nc) : dact(Cc, nc);
    C->gemm(ta, tb, m, n, k, 0.75f, A, lda, B, ldb, beta, Cc, ldc, 1);
    G->gemm(ta, tb, m, n, k, 0.75f, dA, lda, dB, ldb, beta, dC, ldc, c_f32);
    char what[80];
    snprintf(what, sizeof what, "gemm %d%d %dx%dx%d beta %g c_f32 %d", ta, tb, m, n, k, beta, c_f32);
    if (cf) cmp_f32(what, Cc, dC, nc, tol_f32);
    else cmp_bf16(what, Cc, dC, nc, 1, 0, k * 0x1p-22);
    done();
}

TEST(gemm)
{
    for (int c_f32 = 0; c_f32 < 2; c_f32++) {
        for (int t = 0; t < 4; t++) gemm_case(t >> 1, t & 1, 67, 45, 131, t & 1 ? 1.0f : 0.0f, c_f32);
        gemm_case(0, 1, 256, 512, 384, 0.5f, c_f32);
        gemm_case(1, 0, 5, 7, 0, 0.5f, c_f32);   /* k = 0: C = beta·C */
    }
}

/* A weight gradient accumulated over two batches: dW += dyᵀ·x, beta = 1, fp32 arena. */
TEST(gemm_accumulate)
{
    int out = 96, in = 160, rows = 200;
    float *dW = hrand((size_t)out * in, -1, 1), *gdW = df32(dW, (size_t)out * in);
    for (int b = 0; b < 2; b++) {
        float *dy = hrand((size_t)rows * out, -1, 1), *x = hrand((size_t)rows * in, -1, 1);
        void *gdy = dact(dy, (size_t)rows * out), *gx = dact(x, (size_t)rows * in);
        C->gemm(1, 0, out, in, rows, 1, dy, out, x, in, 1, dW, in, 1);
        G->gemm(1, 0, out, in, rows, 1, gdy, out, gx, in, 1, gdW, in, 1);
    }
    cmp_f32("dW += dyT x (twice)", dW, gdW, (size_t)out * in, tol_f32);
    done();
}

/* The experts of a MoE layer as one grouped product (ops->gemm_grouped on
 * the bf16 table; the per-group fallback on the fp32 table), against the
 * CPU's gemm per group: forward y_e = x_e·W_eᵀ, input gradient dx_e =
 * dy_e·W_e, and weight gradient dW_e += dy_eᵀ·x_e into fp32 — with groups
 * of 0 rows (skipped; for dW the empty sum leaves dW_e as it was). */
TEST(gemm_grouped)
{
    enum { E = 9 };
    int rows[E] = {37, 0, 5, 64, 1, 0, 130, 17, 29}, off[E + 1] = {0};
    for (int e = 0; e < E; e++) off[e + 1] = off[e] + rows[e];
    int R = off[E], out = 96, in = 80;
    size_t a = G->act_size;
    float *x = hrand((size_t)R * in, -1, 1), *W = hrand((size_t)E * out * in, -1, 1);
    float *dy = hrand((size_t)R * out, -1, 1), *dW = hrand((size_t)E * out * in, -1, 1);
    float *y = hrand((size_t)R * out, -1, 1), *dx = hrand((size_t)R * in, -1, 1);
    void *gx = dact(x, (size_t)R * in), *gW = dact(W, (size_t)E * out * in), *gdy = dact(dy, (size_t)R * out);
    void *gy = dact(y, (size_t)R * out), *gdx = dact(dx, (size_t)R * in);
    float *gdW = df32(dW, (size_t)E * out * in);
    int m[E], n[E], k[E];
    const void *A[E], *B[E], *hA[E], *hB[E];
    void *Cg[E], *Ch[E];
    /* forward: y_e = x_e·W_eᵀ (beta 0) */
    for (int e = 0; e < E; e++) {
        m[e] = rows[e], n[e] = out, k[e] = in;
        A[e] = (char *)gx + (size_t)off[e] * in * a, B[e] = (char *)gW + (size_t)e * out * in * a;
        Cg[e] = (char *)gy + (size_t)off[e] * out * a;
        hA[e] = x + (size_t)off[e] * in, hB[e] = W + (size_t)e * out * in, Ch[e] = y + (size_t)off[e] * out;
    }
    qw_layer_gemm_grouped(C, 0, 1, E, m, n, k, 1, hA, in, hB, in, 0, Ch, out, 1);
    qw_layer_gemm_grouped(G, 0, 1, E, m, n, k, 1, A, in, B, in, 0, Cg, out, 0);
    cmp_bf16("grouped y = x·Wt", y, gy, (size_t)R * out, 1, 0, in * 0x1p-22);
    /* input gradient: dx_e = dy_e·W_e, accumulated (beta 1) */
    for (int e = 0; e < E; e++) {
        m[e] = rows[e], n[e] = in, k[e] = out;
        A[e] = (char *)gdy + (size_t)off[e] * out * a, Cg[e] = (char *)gdx + (size_t)off[e] * in * a;
        hA[e] = dy + (size_t)off[e] * out, Ch[e] = dx + (size_t)off[e] * in;
    }
    qw_layer_gemm_grouped(C, 0, 0, E, m, n, k, 1, hA, out, hB, in, 1, Ch, in, 1);
    qw_layer_gemm_grouped(G, 0, 0, E, m, n, k, 1, A, out, B, in, 1, Cg, in, 0);
    cmp_bf16("grouped dx += dy·W", dx, gdx, (size_t)R * in, 2, 0, out * 0x1p-22);
    /* weight gradient: dW_e += dy_eᵀ·x_e (fp32), the rows are the reduction */
    for (int e = 0; e < E; e++) {
        m[e] = out, n[e] = in, k[e] = rows[e];
        B[e] = (char *)gx + (size_t)off[e] * in * a, Cg[e] = gdW + (size_t)e * out * in;
        hB[e] = x + (size_t)off[e] * in, Ch[e] = dW + (size_t)e * out * in;
    }
    qw_layer_gemm_grouped(C, 1, 0, E, m, n, k, 1, hA, out, hB, in, 1, Ch, in, 1);
    qw_layer_gemm_grouped(G, 1, 0, E, m, n, k, 1, A, out, B, in, 1, Cg, in, 1);
    cmp_f32("grouped dW += dyT·x", dW, gdW, (size_t)E * out * in, tol_f32);
    done();
}

static void embed_case(int n, int H, int V)
{
    float *tab = hrand((size_t)V * H, -1, 1), *y = hnew((size_t)n * H), *dy = hrand((size_t)n * H, -1, 1);
    int32_t *ids = hints(n, 0, V);
    float *dtab = df32(tab, (size_t)V * H);
    void *gy = dnan_act((size_t)n * H), *gdy = dact(dy, (size_t)n * H);
    int32_t *dids = dput(ids, n * 4);
    C->embed_fwd(y, tab, ids, n, H);
    G->embed_fwd(gy, dtab, dids, n, H);
    cmp_act("embed_fwd", y, gy, (size_t)n * H, 0);
    C->embed_bwd(tab, dy, ids, n, H);   /* += into the table */
    G->embed_bwd(dtab, gdy, dids, n, H);
    cmp_f32("embed_bwd", tab, dtab, (size_t)V * H, tol_f32);
    done();
}

TEST(embed)
{
    embed_case(300, 96, 50);
    embed_case(257, 1030, 40);   /* rows that do not split into vectors */
}

static void rmsnorm_case(int rows, int dim)
{
    size_t n = (size_t)rows * dim;
    float *x = hrand(n, -2, 2), *w = hrand(dim, 0.5f, 1.5f), *dy = hrand(n, -1, 1), *dx = hrand(n, -1, 1);
    float *dw = hrand(dim, -1, 1), *y = hnew(n), *rs = hnew(rows);
    void *gx = dact(x, n), *gdy = dact(dy, n), *gdx = dact(dx, n), *gy = dnan_act(n);
    float *gw = df32(w, dim), *gdw = df32(dw, dim), *grs = dnan(rows);
    char what[64];
    C->rmsnorm_fwd(y, rs, x, w, rows, dim, 1e-6f);
    G->rmsnorm_fwd(gy, grs, gx, gw, rows, dim, 1e-6f);
    snprintf(what, sizeof what, "rmsnorm_fwd %dx%d y", rows, dim);
    cmp_bf16(what, y, gy, n, 1, dim * 0x1p-22, 0x1p-20);
    cmp_f32("rmsnorm_fwd rstd", rs, grs, rows, tol_f32);
    C->rmsnorm_bwd(dx, dw, dy, x, w, rs, rows, dim, 1);
    G->rmsnorm_bwd(gdx, gdw, gdy, gx, gw, grs, rows, dim, 1);
    cmp_bf16("rmsnorm_bwd dx (acc)", dx, gdx, n, 1, 0, dim * 0x1p-22);
    cmp_f32("rmsnorm_bwd dw", dw, gdw, dim, tol_f32);
    gdx = dnan_act(n);
    C->rmsnorm_bwd(dx, dw, dy, x, w, rs, rows, dim, 0);
    G->rmsnorm_bwd(gdx, gdw, gdy, gx, gw, grs, rows, dim, 0);
    cmp_bf16("rmsnorm_bwd dx", dx, gdx, n, 1, 0, dim * 0x1p-22);
    cmp_f32("rmsnorm_bwd dw (second)", dw, gdw, dim, tol_f32);
    done();
}

TEST(rmsnorm)
{
    rmsnorm_case(333, 203);    /* element by element */
    rmsnorm_case(130, 1024);   /* vectors */
    rmsnorm_case(9, 8192);
}

static void qk_case(int n, int heads, int d)
{
    int half = d / 2;
    int32_t *pos = hints(n, 0, 40000);
    float *inv = hnew(half);
    for (int j = 0; j < half; j++) inv[j] = powf(1e6f, -2.0f * j / d);
    float *cs = hnew((size_t)n * half), *sn = hnew((size_t)n * half);
    int32_t *gpos = dput(pos, n * 4);
    float *ginv = df32(inv, half), *gcs = dnan((size_t)n * half), *gsn = dnan((size_t)n * half);
    C->rope_table(cs, sn, pos, n, inv, half, 1.1f);
    G->rope_table(gcs, gsn, gpos, n, ginv, half, 1.1f);
    cmp_f32("rope_table cos", cs, gcs, (size_t)n * half, TOL_F32);
    cmp_f32("rope_table sin", sn, gsn, (size_t)n * half, TOL_F32);
    G->upload(gcs, cs, (size_t)n * half * 4);   /* both sides rotate by the same table */
    G->upload(gsn, sn, (size_t)n * half * 4);
    size_t nx = (size_t)n * heads * d, nr = (size_t)n * heads;
    float *x = hrand(nx, -2, 2), *w = hrand(d, 0.5f, 1.5f), *dy = hrand(nx, -1, 1), *dw = hrand(d, -1, 1);
    float *y = hnew(nx), *rs = hnew(nr), *dx = hnew(nx);
    void *gx = dact(x, nx), *gdy = dact(dy, nx), *gy = dnan_act(nx), *gdx = dnan_act(nx);
    float *gw = df32(w, d), *gdw = df32(dw, d), *grs = dnan(nr);
    char what[64];
    snprintf(what, sizeof what, "qk_norm_rope_fwd n%d heads%d d%d", n, heads, d);
    C->qk_norm_rope_fwd(y, rs, x, w, cs, sn, n, heads, d, 1e-6f);
    G->qk_norm_rope_fwd(gy, grs, gx, gw, gcs, gsn, n, heads, d, 1e-6f);
    cmp_bf16(what, y, gy, nx, 1, d * 0x1p-22, d * 0x1p-22);
    cmp_f32("qk_norm_rope_fwd rstd", rs, grs, nr, tol_f32);
    C->qk_norm_rope_bwd(dx, dw, dy, x, w, rs, cs, sn, n, heads, d);
    G->qk_norm_rope_bwd(gdx, gdw, gdy, gx, gw, grs, gcs, gsn, n, heads, d);
    cmp_bf16("qk_norm_rope_bwd dx", dx, gdx, nx, 1, 0, d * 0x1p-22);
    cmp_f32("qk_norm_rope_bwd dw", dw, gdw, d, tol_f32);
    done();
}

TEST(qk_norm_rope)
{
    qk_case(150, 3, 128);
    qk_case(77, 5, 64);
    qk_case(40, 2, 200);   /* half not a multiple of 32 */
}

/* kv_start for B rows of T tokens cut into random documents. */
static int32_t *segments(int B, int T)
{
    int32_t *ks = hkeep(malloc((size_t)B * T * 4));
    for (int b = 0; b < B; b++) {
        int start = 0;
        for (int i = 0; i < T; i++) {
            if (i > 0 && urand() < 0.03) start = i;
            ks[(size_t)b * T + i] = start;
        }
    }
    return ks;
}

static void attn_case(int B, int T, int nh, int nkv, int d)
{
    size_t nq = (size_t)B * T * nh * d, nk = (size_t)B * T * nkv * d, nl = (size_t)B * T * nh;
    float sc = 1 / sqrtf((float)d);
    float *q = hrand(nq, -2, 2), *k = hrand(nk, -2, 2), *v = hrand(nk, -1, 1), *g = hrand(nq, -1, 1);
    float *o = hnew(nq), *lse = hnew(nl), *dq = hnew(nq), *dk = hnew(nk), *dv = hnew(nk);
    int32_t *ks = segments(B, T), *gks = dput(ks, (size_t)B * T * 4);
    void *gq = dact(q, nq), *gk = dact(k, nk), *gv = dact(v, nk), *gg = dact(g, nq);
    void *go = dnan_act(nq), *gdq = dnan_act(nq), *gdk = dnan_act(nk), *gdv = dnan_act(nk);
    float *gl = dnan(nl);
    size_t wsb = C->attn_workspace(B, T, nh, d), gwb = G->attn_workspace(B, T, nh, d);
    void *ws = hkeep(malloc(wsb ? wsb : 1)), *gws = gwb ? dalloc(gwb) : NULL;
    C->attn_fwd(o, lse, q, k, v, ks, B, T, nh, nkv, d, sc, ws, wsb);
    G->attn_fwd(go, gl, gq, gk, gv, gks, B, T, nh, nkv, d, sc, gws, gwb);
    char what[96];
    snprintf(what, sizeof what, "attn_fwd B%d T%d nh%d nkv%d d%d", B, T, nh, nkv, d);
    cmp_act(what, o, go, nq, tol_act);
    cmp_f32("attn_fwd lse", lse, gl, nl, tol_f32);
    if (bf) round_bf16(o, nq);   /* the backward reads the stored output */
    C->attn_bwd(dq, dk, dv, g, q, k, v, o, lse, ks, B, T, nh, nkv, d, sc, ws, wsb);
    G->attn_bwd(gdq, gdk, gdv, gg, gq, gk, gv, go, gl, gks, B, T, nh, nkv, d, sc, gws, gwb);
    cmp_act("attn_bwd dq", dq, gdq, nq, tol_act);
    cmp_act("attn_bwd dk", dk, gdk, nk, tol_act);
    cmp_act("attn_bwd dv", dv, gdv, nk, tol_act);
    done();
}

TEST(attention)
{
    attn_case(2, 97, 4, 2, 64);
    attn_case(1, 70, 4, 1, 128);
    attn_case(2, 33, 4, 4, 16);
}

static void swiglu_case(size_t n)
{
    float *g = hrand(n, -6, 6), *u = hrand(n, -2, 2), *da = hrand(n, -1, 1);
    float *a = hnew(n), *dg = hnew(n), *du = hnew(n);
    void *gg = dact(g, n), *gu = dact(u, n), *gda = dact(da, n), *ga = dnan_act(n), *gdu = dnan_act(n);
    C->swiglu_fwd(a, g, u, n);
    G->swiglu_fwd(ga, gg, gu, n);
    cmp_bf16("swiglu_fwd", a, ga, n, 1, 0x1p-18, 0x1p-20);
    C->swiglu_bwd(dg, du, da, g, u, n);
    G->swiglu_bwd(gda, gdu, gda, gg, gu, n);   /* dg aliases da */
    cmp_bf16("swiglu_bwd dg", dg, gda, n, 1, 0x1p-18, 0x1p-16);
    cmp_bf16("swiglu_bwd du", du, gdu, n, 1, 0x1p-18, 0x1p-20);
    done();
}

TEST(swiglu)
{
    swiglu_case(10007);
    swiglu_case(16384);
}

static void moe_case(int n, int E, int k, int norm, int capacity)
{
    float *lg = hrand((size_t)n * E, -3, 3), *probs = hnew((size_t)n * E), *w = hnew((size_t)n * k);
    int32_t *sel = hkeep(malloc((size_t)n * k * 4));
    float *glg = df32(lg, (size_t)n * E), *gp = dnan((size_t)n * E), *gw = dnan((size_t)n * k);
    int32_t *gsel = dalloc((size_t)n * k * 4);
    C->moe_route_fwd(probs, sel, w, lg, n, E, k, norm);
    G->moe_route_fwd(gp, gsel, gw, glg, n, E, k, norm);
    cmp_f32("moe_route_fwd probs", probs, gp, (size_t)n * E, TOL_F32);
    cmp_f32("moe_route_fwd w", w, gw, (size_t)n * k, TOL_F32);
    cmp_ints("moe_route_fwd sel", sel, gsel, (size_t)n * k);
    float *dw = hrand((size_t)n * k, -1, 1), *dpr = hrand(E, -0.1f, 0.1f), *dl = hnew((size_t)n * E);
    float *gdw = df32(dw, (size_t)n * k), *gdpr = df32(dpr, E), *gdl = dnan((size_t)n * E);
    C->moe_route_bwd(dl, dw, probs, sel, w, dpr, n, E, k, norm);
    G->moe_route_bwd(gdl, gdw, gp, gsel, gw, gdpr, n, E, k, norm);
    cmp_f32("moe_route_bwd", dl, gdl, (size_t)n * E, TOL_F32);
    C->moe_route_bwd(dl, dw, probs, sel, w, NULL, n, E, k, norm);
    G->moe_route_bwd(gdl, gdw, gp, gsel, gw, NULL, n, E, k, norm);
    cmp_f32("moe_route_bwd (no dprobs)", dl, gdl, (size_t)n * E, TOL_F32);
    float *cnt = hrand(E, 0, 5), *ps = hrand(E, 0, 5), *gcnt = df32(cnt, E), *gps = df32(ps, E);
    C->moe_aux_stats(cnt, ps, probs, sel, n, E, k);
    G->moe_aux_stats(gcnt, gps, gp, gsel, n, E, k);
    cmp_f32("moe_aux_stats count", cnt, gcnt, E, TOL_F32);
    cmp_f32("moe_aux_stats psum", ps, gps, E, TOL_F32);
    int32_t *off = hkeep(malloc((E + 1) * 4)), *goff = hkeep(malloc((E + 1) * 4));
    int32_t *rows = hkeep(malloc((size_t)n * k * 4)), *slots = hkeep(malloc((size_t)n * k * 4));
    int32_t *grows = dalloc((size_t)n * k * 4), *gslots = dalloc((size_t)n * k * 4);
    int kept = C->moe_dispatch(off, rows, slots, sel, n, E, k, capacity);
    int gkept = G->moe_dispatch(goff, grows, gslots, gsel, n, E, k, capacity);
    CHECK(kept == gkept);
    CHECK(!memcmp(off, goff, (E + 1) * 4));
    cmp_ints("moe_dispatch rows", rows, grows, kept);
    cmp_ints("moe_dispatch slots", slots, gslots, kept);
    done();
}

TEST(moe)
{
    moe_case(257, 8, 2, 1, 1 << 30);
    moe_case(300, 16, 4, 0, 40);   /* capacity drops assignments */
}

static void rows_case(int n, int src_rows, int dim)
{
    float *src = hrand((size_t)src_rows * dim, -1, 1), *x = hrand((size_t)n * dim, -1, 1);
    float *y = hrand((size_t)n * dim, -1, 1), *w = hrand(n, -1, 1), *dst = hrand((size_t)src_rows * dim, -1, 1);
    float *gat = hnew((size_t)n * dim), *out = hnew(n);
    int32_t *rows = hints(n, 0, src_rows), *slots = hkeep(malloc(n * 4));
    for (int a = 0; a < n; a++) slots[a] = (int)(((long)a * 37) % n);   /* a permutation when gcd(37, n) = 1 */
    void *gsrc = dact(src, (size_t)src_rows * dim), *gx = dact(x, (size_t)n * dim), *gy = dact(y, (size_t)n * dim);
    void *gdst = dact(dst, (size_t)src_rows * dim), *ggat = dnan_act((size_t)n * dim);
    float *gw = df32(w, n), *gout = dnan(n);
    int32_t *grows = dput(rows, n * 4), *gslots = dput(slots, n * 4);
    C->gather_rows(gat, src, rows, n, dim);
    G->gather_rows(ggat, gsrc, grows, n, dim);
    cmp_act("gather_rows", gat, ggat, (size_t)n * dim, 0);
    C->scatter_add_rows(dst, x, rows, n, dim);
    G->scatter_add_rows(gdst, gx, grows, n, dim);
    cmp_act("scatter_add_rows", dst, gdst, (size_t)src_rows * dim, tol_scatter);
    C->scale_rows(x, x, w, slots, n, dim);
    G->scale_rows(gx, gx, gw, gslots, n, dim);   /* in place */
    cmp_bf16("scale_rows", x, gx, (size_t)n * dim, 1, 0, 0);
    if (bf) round_bf16(x, (size_t)n * dim);   /* row_dot reads the stored x */
    C->row_dot(out, x, y, slots, n, dim);
    G->row_dot(gout, gx, gy, gslots, n, dim);
    cmp_f32("row_dot", out, gout, n, tol_f32);
    done();
}

TEST(rows)
{
    rows_case(121, 60, 72);    /* each destination row about twice */
    rows_case(120, 64, 256);   /* vectors */
}

static void ce_case(int n, int V)
{
    size_t nl = (size_t)n * V;
    float *lg = hrand(nl, -8, 8), *coef = hrand(n, 0, 1), *lse = hnew(n), *logp = hnew(n), *dl = hnew(nl);
    int32_t *t = hints(n, -1, V);
    t[0] = -100;
    float *glg = df32(lg, nl), *gcoef = df32(coef, n), *glse = dnan(n), *glogp = dnan(n);
    void *gdl = dnan_act(nl);
    int32_t *gt = dput(t, n * 4);
    char what[64];
    snprintf(what, sizeof what, "ce_fwd n%d V%d lse", n, V);
    C->ce_fwd(lse, logp, lg, t, n, V);
    G->ce_fwd(glse, glogp, glg, gt, n, V);
    cmp_f32(what, lse, glse, n, TOL_F32);
    cmp_f32("ce_fwd logp", logp, glogp, n, TOL_F32);
    C->ce_bwd(dl, lg, lse, t, coef, n, V);
    G->ce_bwd(gdl, glg, glse, gt, gcoef, n, V);
    cmp_bf16("ce_bwd", dl, gdl, nl, 1, 0x1p-12, 0x1p-20);
    cmp_f32("ce_bwd leaves logits", lg, glg, nl, 0);
    done();
}

TEST(cross_entropy)
{
    ce_case(77, 5003);
    ce_case(9, 151936);
}

/* ---- decoding ---- */

/* kv_write into pools of random values: the written slots equal the rows
 * (a copy: exact), every other slot keeps its value. */
static void kv_write_case(int n, int n_slots, int kv)
{
    size_t np = (size_t)n_slots * kv, nr = (size_t)n * kv;
    float *kc = hrand(np, -1, 1), *vc = hrand(np, -1, 1), *k = hrand(nr, -2, 2), *v = hrand(nr, -2, 2);
    int32_t *slots = hkeep(malloc(n * 4));
    for (int i = 0; i < n; i++) slots[i] = (int)(((long)i * 7919 + 13) % n_slots);   /* distinct: gcd(7919, n_slots) = 1 */
    void *gkc = dact(kc, np), *gvc = dact(vc, np), *gk = dact(k, nr), *gv = dact(v, nr);
    int32_t *gs = dput(slots, n * 4);
    C->kv_write(kc, vc, k, v, slots, n, kv);
    G->kv_write(gkc, gvc, gk, gv, gs, n, kv);
    char what[64];
    snprintf(what, sizeof what, "kv_write n%d kv%d k", n, kv);
    cmp_act(what, kc, gkc, np, 0);
    cmp_act("kv_write v", vc, gvc, np, 0);
    done();
}

TEST(kv_write)
{
    kv_write_case(37, 101, 256);   /* 16-byte pieces */
    kv_write_case(50, 211, 36);    /* rows of 72 or 144 bytes: element by element on the bf16 table */
}

/* attn_paged over a cache of random values in shuffled blocks of bs
 * slots: n_seq sequences of the given lengths; either one query per
 * sequence at its last position (decoding) or every position of every
 * sequence (prefill).  Splits over the key axis happen when the queries
 * are few (decoding) and a context is long.
 *
 * Tolerance (bf16 table): the CPU and the GPU get the same rounded q, K,
 * V; each output is a convex combination of V rows, Σ p_j v_j, with p the
 * softmax of d-term fp32 dot products; another summation order changes a
 * score by at most about d·2^-23·Σ|q k|·scale (≈ 1e-4 here) and p by that
 * relative amount plus expf's few ulps, so the fp32 results differ by far
 * less than 2^-10·max|o|; the GPU rounds once to bf16 (1 ulp with the
 * power-of-two margin).  A wrong slot, head or softmax misses by whole
 * percents. */
static void paged_case(int n_seq, const int *lens, int prefill, int nh, int nkv, int d, int bs)
{
    int max_len = 0, total_blocks = 0;
    for (int s = 0; s < n_seq; s++) {
        max_len = lens[s] > max_len ? lens[s] : max_len;
        total_blocks += (lens[s] + bs - 1) / bs;
    }
    int max_blocks = (max_len + bs - 1) / bs, n_blocks = total_blocks + 3;
    int32_t *perm = hkeep(malloc(n_blocks * 4)), *tables = hkeep(calloc((size_t)n_seq * max_blocks, 4));
    for (int b = 0; b < n_blocks; b++) perm[b] = b;
    for (int b = n_blocks - 1; b > 0; b--) {
        int j = (int)(urand() * (b + 1));
        int32_t t = perm[b]; perm[b] = perm[j]; perm[j] = t;
    }
    int used = 0, n = 0;
    for (int s = 0; s < n_seq; s++) {
        for (int b = 0; b < (lens[s] + bs - 1) / bs; b++) tables[(size_t)s * max_blocks + b] = perm[used++];
        n += prefill ? lens[s] : 1;
    }
    int32_t *seq = hkeep(malloc(n * 4)), *pos = hkeep(malloc(n * 4));
    for (int s = 0, r = 0; s < n_seq; s++)
        for (int p = prefill ? 0 : lens[s] - 1; p < lens[s]; p++) seq[r] = s, pos[r++] = p;
    size_t kv = (size_t)nkv * d, np = (size_t)n_blocks * bs * kv, nq = (size_t)n * nh * d;
    float *kc = hrand(np, -2, 2), *vc = hrand(np, -1, 1), *q = hrand(nq, -2, 2), *o = hnew(nq);
    void *gkc = dact(kc, np), *gvc = dact(vc, np), *gq = dact(q, nq), *go = dnan_act(nq);
    int32_t *gt = dput(tables, (size_t)n_seq * max_blocks * 4), *gseq = dput(seq, n * 4), *gpos = dput(pos, n * 4);
    float sc = 1 / sqrtf((float)d);
    size_t wsb = C->attn_paged_workspace(nh, nkv, max_blocks * bs), gwb = G->attn_paged_workspace(nh, nkv, max_blocks * bs);
    void *ws = hkeep(malloc(wsb ? wsb : 1)), *gws = gwb ? dalloc(gwb) : NULL;
    C->attn_paged(o, q, kc, vc, tables, max_blocks, seq, pos, n, nh, nkv, d, bs, sc, ws, wsb);
    G->attn_paged(go, gq, gkc, gvc, gt, max_blocks, gseq, gpos, n, nh, nkv, d, bs, sc, gws, gwb);
    char what[128];
    snprintf(what, sizeof what, "attn_paged %s seqs%d max_len%d nh%d nkv%d d%d bs%d", prefill ? "prefill" : "decode",
             n_seq, max_len, nh, nkv, d, bs);
    cmp_bf16(what, o, go, nq, 1, 0, 0x1p-10);
    done();
}

TEST(attn_paged)
{
    int few[] = {1, 17, 300, 2500, 64};
    paged_case(5, few, 0, 16, 8, 128, 16);   /* Qwen3-0.6B heads; few queries: split keys */
    paged_case(5, few, 0, 8, 2, 64, 16);     /* 4 query heads per kv head */
    int many[64];
    for (int s = 0; s < 64; s++) many[s] = 1 + (int)(urand() * 200);
    paged_case(64, many, 0, 16, 8, 128, 16);   /* one block per (query, kv head) */
    int pre[] = {33, 7, 70};
    paged_case(3, pre, 1, 4, 2, 32, 16);     /* prefill rows */
    paged_case(3, pre, 1, 2, 1, 16, 8);      /* the dense_tied fixture's heads */
    paged_case(3, pre, 1, 6, 2, 48, 16);     /* d 48, 3 per kv head: the plain kernel */
    paged_case(5, few, 0, 16, 1, 128, 32);   /* 16 per kv head: the plain kernel, long contexts */
}

/* sample against the CPU: the same tokens exactly (same logits, same u),
 * log-probs within fp32 differences (the log-sum-exp over V terms in
 * another order, ~1e-6 absolute).  Logits: uniform, with runs of equal
 * values (ties broken by id), and a row that is all one value. */
static void sample_case(int n, int V, float temp, int top_k, float top_p, int with_forced)
{
    size_t nl = (size_t)n * V;
    float *lg = hrand(nl, -6, 6);
    for (size_t i = 0; i < nl; i += 7) lg[i] = (float)(int)(lg[i] * 2) / 2;   /* equal values */
    for (int i = 0; i < n; i++) lg[(size_t)i * V + (i * 31) % V] = 9;      /* one clear maximum ... */
    if (n > 2) for (int v = 0; v < V; v++) lg[(size_t)V + v] = 1.5f;       /* ... and a row of equal values */
    if (n > 3) lg[(size_t)3 * V + V / 2] = 9, lg[(size_t)3 * V + V - 1] = 9;   /* equal maxima */
    double *u = hkeep(malloc(n * sizeof *u));
    for (int i = 0; i < n; i++) u[i] = urand();
    int32_t *forced = hkeep(malloc(n * 4)), tok[n], *gtok = dalloc(n * 4);
    for (int i = 0; i < n; i++) forced[i] = with_forced && i % 3 == 0 ? (int)(urand() * V) : -1;
    float lp[n], raw[n], *glp = dnan(n), *graw = dnan(n), *glg = df32(lg, nl);
    double *gu = dput(u, n * sizeof *u);
    int32_t *gf = dput(forced, n * 4);
    size_t wsb = C->sample_workspace(n, V), gwb = G->sample_workspace(n, V);
    void *ws = hkeep(malloc(wsb ? wsb : 1)), *gws = gwb ? dalloc(gwb) : NULL;
    C->sample(tok, lp, raw, lg, u, forced, n, V, temp, top_k, top_p, ws);
    G->sample(gtok, glp, graw, glg, gu, gf, n, V, temp, top_k, top_p, gws);
    char what[128];
    snprintf(what, sizeof what, "sample n%d V%d T%g top_k %d top_p %g%s tokens", n, V, temp, top_k, top_p,
             with_forced ? " forced" : "");
    int32_t got[n];
    G->download(got, gtok, n * 4);
    int same = 0;
    for (int i = 0; i < n; i++) same += got[i] == tok[i];
    if (getenv("QW_TEST_VERBOSE")) printf("# %s %s: %d of %d equal\n", G->name, what, same, n);
    CHECK_MSG(same == n, "%s: %d of %d equal", what, same, n);
    float *hl = get_f32(glp, n), *hr = get_f32(graw, n);
    double el = 0, er = 0;
    for (int i = 0; i < n; i++)
        if (got[i] == tok[i]) {
            el = fmax(el, fabs((double)hl[i] - lp[i]));
            er = fmax(er, fabs((double)hr[i] - raw[i]));
        }
    if (getenv("QW_TEST_VERBOSE")) printf("# %s %s: logp diff %.3g, raw diff %.3g\n", G->name, what, el, er);
    CHECK_MSG(el <= 1e-4 && er <= 1e-4, "%s: logp diff %.3g, raw %.3g > 1e-4", what, el, er);
    done();
}

TEST(sample)
{
    sample_case(40, 1000, 0, 0, 1, 0);          /* greedy */
    sample_case(40, 1000, 0, 0, 1, 1);
    sample_case(64, 1000, 1, 0, 1, 0);          /* full vocabulary, id order */
    sample_case(64, 1000, 0.7f, 0, 1, 1);
    sample_case(64, 1000, 0.8f, 20, 1, 0);      /* top-k */
    sample_case(64, 1000, 1.3f, 0, 0.9f, 0);    /* top-p */
    sample_case(64, 1000, 0.6f, 50, 0.8f, 1);   /* both */
    sample_case(16, 1000, 1, 1000, 1, 0);       /* top-k = V: sorted order, all kept */
    sample_case(8, 151936, 0, 0, 1, 0);         /* Qwen3's vocabulary */
    sample_case(8, 151936, 1, 0, 1, 0);
    sample_case(8, 151936, 0.7f, 20, 0.95f, 0);
}

/* Tokens drawn on the GPU over many rows of the same logits follow the
 * softmax: the frequencies of the 8 likeliest tokens and the rest within
 * 5 standard deviations of their expectations. */
TEST(sample_frequencies)
{
    int n = 20000, V = 64;
    float *row = hrand(V, -2, 2), *lg = hnew((size_t)n * V);
    for (int i = 0; i < n; i++) memcpy(lg + (size_t)i * V, row, V * sizeof *row);
    double *u = hkeep(malloc(n * sizeof *u)), z = 0, p[64];
    for (int i = 0; i < n; i++) u[i] = urand();
    for (int v = 0; v < V; v++) z += exp(row[v]);
    for (int v = 0; v < V; v++) p[v] = exp(row[v]) / z;
    int32_t *gtok = dalloc(n * 4), *tok = hkeep(malloc(n * 4));
    float *glp = dalloc(n * 4), *graw = dalloc(n * 4), *glg = df32(lg, (size_t)n * V);
    double *gu = dput(u, n * sizeof *u);
    G->sample(gtok, glp, graw, glg, gu, NULL, n, V, 1, 0, 1, NULL);
    G->download(tok, gtok, n * 4);
    int cnt[64] = {0};
    for (int i = 0; i < n; i++) if (tok[i] >= 0 && tok[i] < V) cnt[tok[i]]++;
    double worst = 0;
    for (int v = 0; v < V; v++) {
        double e = n * p[v], sd = sqrt(n * p[v] * (1 - p[v]));
        worst = fmax(worst, fabs(cnt[v] - e) / sd);
    }
    if (getenv("QW_TEST_VERBOSE")) printf("# %s sample frequencies: worst %.2f standard deviations\n", G->name, worst);
    CHECK_MSG(worst <= 5, "sample frequencies: %.2f standard deviations off", worst);
    done();
}

TEST(sumsq)
{
    size_t n = 1000003;
    float *x = hrand(n, -3, 3);
    float *gx = df32(x, n);
    double s = C->sumsq(x, n), g = G->sumsq(gx, n);
    CHECK_MSG(fabs(s - g) <= 1e-12 * s, "sumsq %.17g, cpu %.17g", g, s);
    CHECK(G->sumsq(gx, n) == g);   /* fixed order */
    CHECK(G->sumsq(gx, 0) == 0);
    done();
}

TEST(adamw)
{
    size_t n = 100003;
    float *p = hrand(n, -1, 1), *g = hrand(n, -2, 2), *m = hrand(n, -0.1f, 0.1f), *v = hrand(n, 0, 0.01f);
    float *gp = df32(p, n), *gg = df32(g, n), *gm = df32(m, n), *gv = df32(v, n);
    void *gpa = bf ? dnan_act(n) : NULL;
    qw_adamw_scalars s = {0.9f, 0.95f, 1e-8f, 0.5f, 3e-4f / (1 - 0.9f * 0.9f), sqrtf(1 - 0.95f * 0.95f), 1 - 3e-4f * 0.1f};
    for (int step = 0; step < 2; step++) {
        C->adamw(p, NULL, g, m, v, n, &s);
        G->adamw(gp, gpa, gg, gm, gv, n, &s);
    }
    cmp_f32("adamw p", p, gp, n, 0);
    cmp_f32("adamw m", m, gm, n, 0);
    cmp_f32("adamw v", v, gv, n, 0);
    if (bf) {   /* the compute copy: the GPU's p rounded to bf16 */
        float *r = get_f32(gp, n);
        round_bf16(r, n);
        check("adamw p_act", r, get_act(gpa, n), n, 0);
    }
    done();
}

/* With set_deterministic(1): bit-identical results from identical inputs,
 * for the ops that otherwise use atomics (embed_bwd, scatter_add_rows with
 * many repeated rows) and the attention backward; and still the CPU's. */
TEST(deterministic)
{
    G->set_deterministic(1);
    int n = 4096, H = 264, V = 8;
    float *tab = hrand((size_t)V * H, -1, 1), *dy = hrand((size_t)n * H, -1, 1);
    int32_t *ids = hints(n, 0, V), *gids = dput(ids, n * 4);
    void *gdy = dact(dy, (size_t)n * H);
    float *t1 = df32(tab, (size_t)V * H), *t2 = df32(tab, (size_t)V * H);
    G->embed_bwd(t1, gdy, gids, n, H);
    G->embed_bwd(t2, gdy, gids, n, H);
    CHECK_MSG(same_bytes(t1, t2, (size_t)V * H * 4), "embed_bwd differs run to run");
    C->embed_bwd(tab, dy, ids, n, H);
    cmp_f32("embed_bwd (deterministic)", tab, t1, (size_t)V * H, tol_f32);
    float *d0 = hrand((size_t)V * H, -1, 1);
    void *r1 = dact(d0, (size_t)V * H), *r2 = dact(d0, (size_t)V * H);
    int ns = 32;
    G->scatter_add_rows(r1, gdy, gids, ns, H);
    G->scatter_add_rows(r2, gdy, gids, ns, H);
    CHECK_MSG(same_bytes(r1, r2, (size_t)V * H * G->act_size), "scatter_add_rows differs run to run");
    float *seq = hcopy(d0, (size_t)V * H);   /* the rows added in order, each sum stored */
    for (int a = 0; a < ns; a++)
        for (int j = 0; j < H; j++) {
            float *e = &seq[(size_t)ids[a] * H + j];
            *e += dy[(size_t)a * H + j];
            if (bf) round_bf16(e, 1);
        }
    check("scatter_add_rows (deterministic, in order)", seq, get_act(r1, (size_t)V * H), (size_t)V * H, 0);
    C->scatter_add_rows(d0, dy, ids, ns, H);
    cmp_act("scatter_add_rows (deterministic)", d0, r1, (size_t)V * H, tol_scatter);
    done();

    int B = 2, T = 80, nh = 4, nkv = 2, d = 64;
    size_t nq = (size_t)B * T * nh * d, nk = (size_t)B * T * nkv * d;
    float *q = hrand(nq, -2, 2), *k = hrand(nk, -2, 2), *v = hrand(nk, -1, 1), *g = hrand(nq, -1, 1);
    int32_t *gks = dput(segments(B, T), (size_t)B * T * 4);
    void *gq = dact(q, nq), *gk = dact(k, nk), *gv = dact(v, nk), *gg = dact(g, nq), *go = dnan_act(nq);
    float *gl = dnan((size_t)B * T * nh);
    size_t wsb = G->attn_workspace(B, T, nh, d);
    void *ws = wsb ? dalloc(wsb) : NULL, *out[2][3];
    G->attn_fwd(go, gl, gq, gk, gv, gks, B, T, nh, nkv, d, 0.125f, ws, wsb);
    for (int r = 0; r < 2; r++) {
        out[r][0] = dnan_act(nq);
        out[r][1] = dnan_act(nk);
        out[r][2] = dnan_act(nk);
        G->attn_bwd(out[r][0], out[r][1], out[r][2], gg, gq, gk, gv, go, gl, gks, B, T, nh, nkv, d, 0.125f, ws, wsb);
    }
    CHECK_MSG(same_bytes(out[0][0], out[1][0], nq * G->act_size), "attn_bwd dq differs run to run");
    CHECK_MSG(same_bytes(out[0][1], out[1][1], nk * G->act_size), "attn_bwd dk differs run to run");
    CHECK_MSG(same_bytes(out[0][2], out[1][2], nk * G->act_size), "attn_bwd dv differs run to run");
    done();
    G->set_deterministic(0);
}

/* set_batch_invariant(1): each row of a product or of a paged-attention
 * launch is the same bytes whatever rows share it — the GEMM at Qwen3-0.6B's
 * projection shapes for 1 to 700 rows, at two row offsets; attn_paged for a
 * query alone and among others with long contexts (where the keys would
 * otherwise be split by the launch's size).  bf16 table only: cuda-fp32
 * has no batch-invariant mode (the hook is NULL there). */
TEST(batch_invariant)
{
    if (!bf) {
        CHECK_MSG(!G->set_batch_invariant, "cuda-fp32 claims batch invariance");
        done();
        return;
    }
    G->set_batch_invariant(1);
    static const int shapes[][2] = {{1024, 2048}, {4096, 1024}, {1024, 3072}, {6144, 1024}};   /* n, k */
    static const int ms[] = {1, 3, 8, 61, 256, 600};
    int M = 700;
    for (int si = 0; si < 4; si++) {
        int n = shapes[si][0], k = shapes[si][1];
        float *A = hrand((size_t)M * k, -1, 1), *B = hrand((size_t)n * k, -1, 1);
        void *dA = dact(A, (size_t)M * k), *dB = dact(B, (size_t)n * k), *ref = dnan_act((size_t)M * n);
        G->gemm(0, 1, M, n, k, 1, dA, k, dB, k, 0, ref, n, 0);
        for (int mi = 0; mi < 6; mi++)
            for (int off = 0; off <= 64; off += 64) {
                int m = ms[mi];
                void *c = dnan_act((size_t)m * n);
                G->gemm(0, 1, m, n, k, 1, (char *)dA + (size_t)off * k * 2, k, dB, k, 0, c, n, 0);
                CHECK_MSG(same_bytes(c, (char *)ref + (size_t)off * n * 2, (size_t)m * n * 2),
                          "gemm %dx%dx%d at row %d: rows differ from the %d-row product", m, n, k, off, M);
            }
    }
    int lens[] = {2500, 300, 17, 1, 64}, nh = 16, nkv = 8, d = 128, bs = 16, max_blocks = 2500 / bs + 1;
    int nb = 5 * max_blocks;
    int32_t *tables = hkeep(malloc((size_t)nb * 4)), seq[5], pos[5];
    for (int b = 0; b < nb; b++) tables[b] = b;
    for (int i = 0; i < 5; i++) seq[i] = i, pos[i] = lens[i] - 1;
    size_t np = (size_t)nb * bs * nkv * d, nq = (size_t)5 * nh * d;
    float *kc = hrand(np, -2, 2), *vc = hrand(np, -1, 1), *q = hrand(nq, -2, 2);
    void *gkc = dact(kc, np), *gvc = dact(vc, np), *gq = dact(q, nq), *all = dnan_act(nq);
    int32_t *gt = dput(tables, (size_t)nb * 4), *gseq = dput(seq, sizeof seq), *gpos = dput(pos, sizeof pos);
    size_t gwb = G->attn_paged_workspace(nh, nkv, max_blocks * bs);
    void *gws = gwb ? dalloc(gwb) : NULL;
    float sc = 1 / sqrtf((float)d);
    G->attn_paged(all, gq, gkc, gvc, gt, max_blocks, gseq, gpos, 5, nh, nkv, d, bs, sc, gws, gwb);
    for (int i = 0; i < 5; i++) {
        void *one = dnan_act((size_t)nh * d);
        size_t off = (size_t)i * nh * d * 2;
        G->attn_paged(one, (char *)gq + off, gkc, gvc, gt, max_blocks, gseq + i, gpos + i, 1, nh, nkv, d, bs, sc, gws, gwb);
        CHECK_MSG(same_bytes(one, (char *)all + off, (size_t)nh * d * 2),
                  "attn_paged: query %d (context %d) alone differs from it among 5", i, lens[i]);
    }
    G->set_batch_invariant(0);
    done();
}

/* Graphs: a recorded GEMM + RMSNorm replays on new inputs (uploaded into
 * the recorded buffers) to the bytes a direct run gives; once the
 * backend's scratch grows, launching it reports it stale. */
TEST(graph)
{
    int m = 37, n = 256, k = 512;
    float *A = hrand((size_t)m * k, -1, 1), *B = hrand((size_t)n * k, -1, 1), *w = hrand(n, 0.5f, 1.5f);
    float *A2 = hrand((size_t)m * k, -1, 1);
    void *dA = dact(A, (size_t)m * k), *dA2 = dact(A2, (size_t)m * k), *dB = dact(B, (size_t)n * k);
    void *c = dnan_act((size_t)m * n), *y = dnan_act((size_t)m * n), *c2 = dnan_act((size_t)m * n), *y2 = dnan_act((size_t)m * n);
    float *dw = df32(w, n), *rstd = dnan(m), *rstd2 = dnan(m);
    G->gemm(0, 1, m, n, k, 1, dA, k, dB, k, 0, c, n, 0);   /* once directly: plans made before recording */
    G->rmsnorm_fwd(y, rstd, c, dw, m, n, 1e-6f);
    CHECK_MSG(G->graph_begin && G->graph_begin() == 0, "graph_begin failed");
    G->gemm(0, 1, m, n, k, 1, dA, k, dB, k, 0, c, n, 0);
    G->rmsnorm_fwd(y, rstd, c, dw, m, n, 1e-6f);
    void *g = G->graph_end();
    CHECK_MSG(g != NULL, "graph_end made no graph");
    if (g) {
        G->copy(dA, dA2, (size_t)m * k * G->act_size);   /* new inputs */
        CHECK_MSG(G->graph_launch(g) == 0, "graph_launch refused a fresh graph");
        G->gemm(0, 1, m, n, k, 1, dA2, k, dB, k, 0, c2, n, 0);
        G->rmsnorm_fwd(y2, rstd2, c2, dw, m, n, 1e-6f);
        CHECK_MSG(same_bytes(y, y2, (size_t)m * n * G->act_size) && same_bytes(rstd, rstd2, (size_t)m * 4),
                  "the replay differs from the direct run");
        static size_t grow = (size_t)1 << 30;   /* larger each call: both tables share the scratch */
        qw_cuda_scratch_reserve(grow *= 2);
        CHECK_MSG(G->graph_launch(g) != 0, "a graph recorded before the scratch grew launched");
        G->graph_free(g);
    }
    done();
}

TEST(mem_stats)
{
    size_t use0, peak0, use1, peak1, use2, peak2;
    G->mem_stats(&use0, &peak0);
    void *p = G->alloc(3 << 20);
    G->mem_stats(&use1, &peak1);
    G->free(p);
    G->mem_stats(&use2, &peak2);
    CHECK(p != NULL);
    CHECK(use1 >= use0 + (3 << 20));
    CHECK(peak1 >= use1 && peak0 >= use0);
    CHECK(use2 == use0);
    CHECK(peak2 == peak1);
}

TEST(out_of_memory)
{
    CHECK(G->alloc((size_t)1 << 52) == NULL);   /* 4 PiB */
    float *p = G->alloc(1024);                    /* the context survives */
    CHECK(p != NULL);
    G->free(p);
}

/* An out-of-bounds gather: the device faults, the next op must report it
 * and exit 1. */
static int fault(void)
{
    int32_t bad = 1 << 28;
    void *src = G->alloc(256), *dst = G->alloc(256);
    float h[64];
    int32_t *rows = G->alloc(sizeof bad);
    G->upload(rows, &bad, sizeof bad);
    G->gather_rows(dst, src, rows, 1, 64);
    G->download(h, dst, sizeof h);
    return 0;   /* not reached */
}

/* RUN, with the table's name in the PASS/FAIL line. */
/* ---- bench: ms per call and the bytes (or FLOPs) it moves per second ---- */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define TIME(iters, body) ({ body; G->sync(); double t0_ = now(); \
    for (int it_ = 0; it_ < (iters); it_++) { body; } G->sync(); (now() - t0_) / (iters); })
#define REPORT(name, t, amount, unit) printf("bench %-34s %9.3f ms %8.1f %s\n", name, (t) * 1e3, (amount) / (t) / 1e9, unit)


static int bench(void)
{
    int n = 16384, H = 1024, I = 3072, nh = 16, d = 128, Vc = 1024, V = 151936;
    size_t a = G->act_size;
    void *x = dalloc((size_t)n * I * a), *y = dalloc((size_t)n * I * a), *z = dalloc((size_t)n * I * a);
    void *u = dalloc((size_t)n * I * a), *W = dalloc((size_t)I * H * a);
    float *w = dalloc(I * 4), *rs = dalloc((size_t)n * nh * 4), *dW = dalloc((size_t)I * H * 4);
    float *cs = dalloc((size_t)n * d / 2 * 4), *sn = dalloc((size_t)n * d / 2 * 4);
    double t;
    t = TIME(20, G->gemm(0, 1, n, I, H, 1, x, H, W, H, 0, y, I, 0));
    REPORT("gemm x·Wt 16384x3072x1024 bf16", t, 2.0 * n * I * H / 1e3, "TFLOP/s");
    t = TIME(20, G->gemm(1, 0, I, H, n, 1, y, I, x, H, 1, dW, H, 1));
    REPORT("gemm dW += dyT·x fp32 C", t, 2.0 * n * I * H / 1e3, "TFLOP/s");
    {   /* Qwen3-30B-A3B experts (H 2048, Ie 768, 128 experts, top-8) for 8192
         * tokens: 65536 rows in groups of 448..576, one grouped call against a
         * gemm per expert */
        enum { NE = 128 };
        int Hm = 2048, Ie = 768, gm[NE], gn[NE], gk[NE], R = 0;
        for (int e = 0; e < NE; e++) gm[e] = 448 + (e * 37) % 129, gn[e] = Ie, gk[e] = Hm, R += gm[e];
        void *gx = dalloc((size_t)R * Hm * a), *gy = dalloc((size_t)R * Ie * a), *gw = dalloc((size_t)NE * Ie * Hm * a);
        float *gdw = dalloc((size_t)NE * Ie * Hm * 4);
        const void *pa[NE], *pb[NE], *px[NE];
        void *pc[NE], *pd[NE];
        for (int e = 0, o = 0; e < NE; o += gm[e], e++) {
            pa[e] = (char *)gx + (size_t)o * Hm * a, pb[e] = (char *)gw + (size_t)e * Ie * Hm * a;
            pc[e] = (char *)gy + (size_t)o * Ie * a, pd[e] = gdw + (size_t)e * Ie * Hm;
            px[e] = pc[e];
        }
        double fl = 2.0 * R * Ie * Hm / 1e3;
        t = TIME(10, qw_layer_gemm_grouped(G, 0, 1, NE, gm, gn, gk, 1, pa, Hm, pb, Hm, 0, pc, Ie, 0));
        REPORT("experts x·Wt grouped (30B-A3B)", t, fl, "TFLOP/s");
        t = TIME(10, for (int e = 0; e < NE; e++) G->gemm(0, 1, gm[e], Ie, Hm, 1, pa[e], Hm, pb[e], Hm, 0, pc[e], Ie, 0));
        REPORT("experts x·Wt per expert", t, fl, "TFLOP/s");
        t = TIME(10, qw_layer_gemm_grouped(G, 0, 0, NE, gm, gk, gn, 1, px, Ie, pb, Hm, 0, (void *const *)pa, Hm, 0));
        REPORT("experts dx = dy·W grouped", t, fl, "TFLOP/s");
        t = TIME(10, qw_layer_gemm_grouped(G, 1, 0, NE, gn, gk, gm, 1, px, Ie, pa, Hm, 1, pd, Hm, 1));
        REPORT("experts dW += dyT·x grouped", t, fl, "TFLOP/s");
        t = TIME(10, for (int e = 0; e < NE; e++) G->gemm(1, 0, Ie, Hm, gm[e], 1, px[e], Ie, pa[e], Hm, 1, pd[e], Hm, 1));
        REPORT("experts dW += dyT·x per expert", t, fl, "TFLOP/s");
    }
    t = TIME(50, G->rmsnorm_fwd(y, rs, x, w, n, H, 1e-6f));
    REPORT("rmsnorm_fwd 16384x1024", t, 2.0 * n * H * a, "GB/s");
    t = TIME(50, G->rmsnorm_bwd(z, w, y, x, w, rs, n, H, 0));
    REPORT("rmsnorm_bwd", t, 3.0 * n * H * a, "GB/s");
    t = TIME(50, G->qk_norm_rope_fwd(y, rs, x, w, cs, sn, n, nh, d, 1e-6f));
    REPORT("qk_norm_rope_fwd 16384x16x128", t, 2.0 * n * nh * d * a, "GB/s");
    t = TIME(50, G->qk_norm_rope_bwd(z, w, y, x, w, rs, cs, sn, n, nh, d));
    REPORT("qk_norm_rope_bwd", t, 3.0 * n * nh * d * a, "GB/s");
    t = TIME(50, G->swiglu_fwd(z, x, y, (size_t)n * I));
    REPORT("swiglu_fwd 16384x3072", t, 3.0 * n * I * a, "GB/s");
    t = TIME(50, G->swiglu_bwd(u, z, u, x, y, (size_t)n * I));
    REPORT("swiglu_bwd", t, 5.0 * n * I * a, "GB/s");
    float *lg = dalloc((size_t)Vc * V * 4), *lse = dalloc(Vc * 4), *lp = dalloc(Vc * 4), *coef = dalloc(Vc * 4);
    void *dl = dalloc((size_t)Vc * V * a);
    int32_t *tg = dalloc(Vc * 4), *ids = dput(hints(n, 0, V), n * 4);
    t = TIME(20, G->ce_fwd(lse, lp, lg, tg, Vc, V));
    REPORT("ce_fwd 1024x151936", t, 4.0 * Vc * V, "GB/s");
    t = TIME(20, G->ce_bwd(dl, lg, lse, tg, coef, Vc, V));
    REPORT("ce_bwd", t, (4.0 + a) * Vc * V, "GB/s");
    float *tab = dalloc((size_t)V * H * 4);
    t = TIME(20, G->embed_fwd(x, tab, ids, n, H));
    REPORT("embed_fwd 16384x1024", t, (4.0 + a) * n * H, "GB/s");
    t = TIME(20, G->embed_bwd(tab, x, ids, n, H));
    REPORT("embed_bwd (atomics)", t, (8.0 + a) * n * H, "GB/s");
    G->set_deterministic(1);
    t = TIME(3, G->embed_bwd(tab, x, ids, n, H));
    REPORT("embed_bwd (deterministic)", t, (8.0 + a) * n * H, "GB/s");
    G->set_deterministic(0);
    done();
    size_t np = (size_t)100 << 20;
    float *p = dalloc(np * 4), *g = dalloc(np * 4), *m = dalloc(np * 4), *v = dalloc(np * 4);
    void *pa = dalloc(np * a);
    qw_adamw_scalars sc = {0.9f, 0.95f, 1e-8f, 1, 1e-3f, 0.5f, 1};
    t = TIME(10, G->adamw(p, pa, g, m, v, np, &sc));
    REPORT("adamw 100M (with bf16 copy)", t, (28.0 + a) * np, "GB/s");
    t = TIME(10, G->sumsq(g, np));
    REPORT("sumsq 100M", t, 4.0 * np, "GB/s");
    size_t use, peak;
    G->mem_stats(&use, &peak);
    printf("bench mem_stats in use %.1f MiB, peak %.1f MiB\n", use / 1048576.0, peak / 1048576.0);
    done();
    return 0;
}

#define RUN_ON(case_) do { qwtest_case_failed = 0; test_##case_(); \
    if (qwtest_case_failed) { qwtest_failed++; printf("FAIL %s_%s\n", G->name, #case_); } \
    else { qwtest_passed++; printf("PASS %s_%s\n", G->name, #case_); } fflush(stdout); } while (0)

int main(int argc, char **argv)
{
    C = qw_ops_cpu();
    const qw_ops *tables[2] = {qw_ops_cuda_fp32(), qw_ops_cuda()};
    if (!tables[0] || !tables[1]) {
        fprintf(stderr, "test_ops: no usable GPU: %s\n", qw_cuda_why());
        return 1;
    }
    CHECK(!strcmp(tables[0]->name, "cuda-fp32") && tables[0]->act_size == 4);
    CHECK(!strcmp(tables[1]->name, "cuda") && tables[1]->act_size == 2);
    G = tables[1];
    if (argc > 1 && !strcmp(argv[1], "fault")) return fault();
    if (argc > 1 && !strcmp(argv[1], "bench")) return bench();
    const char *s = getenv("QW_SEED");
    rng = s ? strtoull(s, NULL, 10) : (unsigned long long)time(NULL);
    printf("# test_ops: QW_SEED=%llu\n", rng);
    PLAN(46);   /* the 23 cases below on each of the two tables */
    for (int t = 0; t < 2; t++) {
        G = tables[t];
        bf = G->act_size == 2;
        tol_act = bf ? TOL_ACT : TOL_F32;
        tol_f32 = bf ? TOL_MIX : TOL_F32;
        tol_scatter = bf ? 2 * TOL_ACT : TOL_F32;
        RUN_ON(convert);
        RUN_ON(gemm);
        RUN_ON(gemm_accumulate);
        RUN_ON(gemm_grouped);
        RUN_ON(embed);
        RUN_ON(rmsnorm);
        RUN_ON(qk_norm_rope);
        RUN_ON(attention);
        RUN_ON(swiglu);
        RUN_ON(moe);
        RUN_ON(rows);
        RUN_ON(cross_entropy);
        RUN_ON(kv_write);
        RUN_ON(attn_paged);
        RUN_ON(sample);
        RUN_ON(sample_frequencies);
        RUN_ON(sumsq);
        RUN_ON(adamw);
        RUN_ON(deterministic);
        RUN_ON(mem_stats);
        RUN_ON(out_of_memory);
        RUN_ON(batch_invariant);
        RUN_ON(graph);
    }
    return qwtest_finish();
}
