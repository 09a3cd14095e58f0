/* test_ops.c — every CUDA op against the CPU reference op on fresh random
 * inputs (the seed is printed, and QW_SEED repeats a run).  CUDA outputs
 * are poisoned with NaN before each call, so an output the op fails to
 * write cannot pass.  Error measure: max|cuda − cpu| / max|cpu| over the
 * output; tolerances: fp32 ops 1e-4, bf16 ops 1e-2 (against the CPU op on
 * the same bf16-rounded inputs).
 *
 *   test_ops            all cases (PASS/FAIL lines)
 *   test_ops fault      provoke a device fault: must exit 1 with "qw: cuda:"
 */
#include <stdint.h>
#include <time.h>

#include "qwtest.h"
#include "qw/ops.h"
#include "qwcuda.h"

#define TOL32 1e-4
#define TOL16 1e-2

static const qw_ops *C, *G;   /* cpu, cuda */
static unsigned long long rng;

static double urand(void)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (rng >> 11) * (1.0 / 9007199254740992.0);
}

static float *hrand(size_t n, float lo, float hi)
{
    float *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * (float)urand();
    return p;
}

static int32_t *hints(size_t n, int lo, int hi)   /* in [lo, hi) */
{
    int32_t *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = lo + (int)(urand() * (hi - lo));
    return p;
}

/* Round to bf16 (nearest even) in place, as the device conversion does. */
static void round_bf16(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u;
        memcpy(&x[i], &u, 4);
    }
}

static void *dput(const void *h, size_t bytes)
{
    void *d = G->alloc(bytes);
    if (h) G->upload(d, h, bytes);
    return d;
}

/* A device buffer of n floats holding NaN. */
static float *dpoison(size_t n)
{
    float *h = malloc(n * sizeof *h);
    for (size_t i = 0; i < n; i++) h[i] = NAN;
    float *d = dput(h, n * sizeof *h);
    free(h);
    return d;
}

static uint16_t *dbf16(const float *h, size_t n)
{
    float *t = dput(h, n * sizeof *h);
    uint16_t *d = G->alloc(n * 2);
    qw_cuda_to_bf16(d, t, n);
    G->free(t);
    return d;
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

/* Compare device fp32 output d (n floats) with host reference. */
static void cmp(const char *what, const float *ref, const float *d, size_t n, double tol)
{
    float *got = malloc(n * sizeof *got);
    G->download(got, d, n * sizeof *got);
    double e = rel_err(ref, got, n);
    CHECK_MSG(e <= tol, "%s: relative error %.3g > %.0e", what, e, tol);
    free(got);
}

static void cmp_bf16(const char *what, const float *ref, const uint16_t *d, size_t n, double tol)
{
    float *f = G->alloc(n * sizeof *f);
    qw_cuda_from_bf16(f, d, n);
    cmp(what, ref, f, n, tol);
    G->free(f);
}

static void cmp_ints(const char *what, const int32_t *ref, const int32_t *d, size_t n)
{
    int32_t *got = malloc(n * sizeof *got);
    G->download(got, d, n * sizeof *got);
    CHECK_MSG(!memcmp(ref, got, n * sizeof *got), "%s: integers differ", what);
    free(got);
}

static void gemm_case(int ta, int tb, int m, int n, int k, float beta)
{
    int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
    size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
    float *A = hrand(na, -1, 1), *B = hrand(nb, -1, 1), *Cc = hrand(nc, -1, 1);
    float *dA = dput(A, na * 4), *dB = dput(B, nb * 4), *dC = dput(Cc, nc * 4);
    C->gemm(ta, tb, m, n, k, 0.75f, A, lda, B, ldb, beta, Cc, ldc);
    G->gemm(ta, tb, m, n, k, 0.75f, dA, lda, dB, ldb, beta, dC, ldc);
    char what[64];
    snprintf(what, sizeof what, "gemm %d%d %dx%dx%d", ta, tb, m, n, k);
    cmp(what, Cc, dC, nc, TOL32);
    free(A); free(B); free(Cc); G->free(dA); G->free(dB); G->free(dC);
}

TEST(gemm)
{
    for (int t = 0; t < 4; t++) gemm_case(t >> 1, t & 1, 67, 45, 131, t & 1 ? 1.0f : 0.0f);
    gemm_case(0, 1, 256, 512, 384, 0.5f);
    gemm_case(1, 0, 5, 7, 0, 0.5f);   /* k = 0: C = beta·C */
}

TEST(gemm_bf16)
{
    for (int t = 0; t < 4; t++) {
        int ta = t >> 1, tb = t & 1, m = 96, n = 80, k = 200;
        int lda = ta ? m : k, ldb = tb ? k : n;
        float *A = hrand((size_t)m * k, -1, 1), *B = hrand((size_t)k * n, -1, 1), *Cc = hrand((size_t)m * n, -1, 1);
        round_bf16(A, (size_t)m * k);
        round_bf16(B, (size_t)k * n);
        uint16_t *dA = dbf16(A, (size_t)m * k), *dB = dbf16(B, (size_t)k * n);
        float *dC = dput(Cc, (size_t)m * n * 4);
        C->gemm(ta, tb, m, n, k, 1, A, lda, B, ldb, 1, Cc, n);
        qw_cuda_gemm_bf16(ta, tb, m, n, k, 1, dA, lda, dB, ldb, 1, dC, n, 1);
        cmp("gemm_bf16 fp32 out", Cc, dC, (size_t)m * n, TOL16);
        uint16_t *dC16 = G->alloc((size_t)m * n * 2);
        C->gemm(ta, tb, m, n, k, 1, A, lda, B, ldb, 0, Cc, n);
        qw_cuda_gemm_bf16(ta, tb, m, n, k, 1, dA, lda, dB, ldb, 0, dC16, n, 0);
        cmp_bf16("gemm_bf16 bf16 out", Cc, dC16, (size_t)m * n, TOL16);
        free(A); free(B); free(Cc); G->free(dA); G->free(dB); G->free(dC); G->free(dC16);
    }
}

TEST(embed)
{
    int n = 300, H = 96, V = 50;
    float *tab = hrand((size_t)V * H, -1, 1), *y = malloc((size_t)n * H * 4), *dy = hrand((size_t)n * H, -1, 1);
    int32_t *ids = hints(n, 0, V);
    float *dtab = dput(tab, (size_t)V * H * 4), *dyv = dpoison((size_t)n * H), *ddy = dput(dy, (size_t)n * H * 4);
    int32_t *dids = dput(ids, n * 4);
    C->embed_fwd(y, tab, ids, n, H);
    G->embed_fwd(dyv, dtab, dids, n, H);
    cmp("embed_fwd", y, dyv, (size_t)n * H, 0);
    C->embed_bwd(tab, dy, ids, n, H);   /* += into the table */
    G->embed_bwd(dtab, ddy, dids, n, H);
    cmp("embed_bwd", tab, dtab, (size_t)V * H, TOL32);
    free(tab); free(y); free(dy); free(ids);
    G->free(dtab); G->free(dyv); G->free(ddy); G->free(dids);
}

TEST(rmsnorm)
{
    int rows = 333, dim = 200;
    size_t n = (size_t)rows * dim;
    float *x = hrand(n, -2, 2), *w = hrand(dim, 0.5f, 1.5f), *dy = hrand(n, -1, 1), *dx = hrand(n, -1, 1);
    float *dw = hrand(dim, -1, 1), *y = malloc(n * 4), *rs = malloc(rows * 4);
    float *gx = dput(x, n * 4), *gw = dput(w, dim * 4), *gdy = dput(dy, n * 4), *gdx = dput(dx, n * 4);
    float *gdw = dput(dw, dim * 4), *gy = dpoison(n), *grs = dpoison(rows);
    C->rmsnorm_fwd(y, rs, x, w, rows, dim, 1e-6f);
    G->rmsnorm_fwd(gy, grs, gx, gw, rows, dim, 1e-6f);
    cmp("rmsnorm_fwd y", y, gy, n, TOL32);
    cmp("rmsnorm_fwd rstd", rs, grs, rows, TOL32);
    C->rmsnorm_bwd(dx, dw, dy, x, w, rs, rows, dim, 1);
    G->rmsnorm_bwd(gdx, gdw, gdy, gx, gw, grs, rows, dim, 1);
    cmp("rmsnorm_bwd dx (acc)", dx, gdx, n, TOL32);
    cmp("rmsnorm_bwd dw", dw, gdw, dim, TOL32);
    G->free(gdx);
    gdx = dpoison(n);
    C->rmsnorm_bwd(dx, dw, dy, x, w, rs, rows, dim, 0);
    G->rmsnorm_bwd(gdx, gdw, gdy, gx, gw, grs, rows, dim, 0);
    cmp("rmsnorm_bwd dx", dx, gdx, n, TOL32);
    /* bf16 fast path */
    round_bf16(x, n);
    C->rmsnorm_fwd(y, rs, x, w, rows, dim, 1e-6f);
    uint16_t *x16 = dbf16(x, n), *y16 = G->alloc(n * 2);
    G->zero(grs, rows * 4);
    qw_cuda_rmsnorm_fwd_bf16(y16, grs, x16, gw, rows, dim, 1e-6f);
    cmp_bf16("rmsnorm_fwd_bf16 y", y, y16, n, TOL16);
    cmp("rmsnorm_fwd_bf16 rstd", rs, grs, rows, TOL16);
    free(x); free(w); free(dy); free(dx); free(dw); free(y); free(rs);
    G->free(gx); G->free(gw); G->free(gdy); G->free(gdx); G->free(gdw); G->free(gy); G->free(grs);
    G->free(x16); G->free(y16);
}

TEST(rope)
{
    int n = 150, heads = 3, d = 64, half = d / 2;
    int32_t *pos = hints(n, 0, 40000);
    float *inv = malloc(half * 4);
    for (int j = 0; j < half; j++) inv[j] = powf(1e6f, -2.0f * j / d);
    float *cs = malloc((size_t)n * half * 4), *sn = malloc((size_t)n * half * 4);
    size_t nx = (size_t)n * heads * d;
    float *x = hrand(nx, -1, 1);
    int32_t *gpos = dput(pos, n * 4);
    float *ginv = dput(inv, half * 4), *gcs = dpoison((size_t)n * half), *gsn = dpoison((size_t)n * half);
    float *gx = dput(x, nx * 4);
    C->rope_table(cs, sn, pos, n, inv, half, 1.1f);
    G->rope_table(gcs, gsn, gpos, n, ginv, half, 1.1f);
    cmp("rope_table cos", cs, gcs, (size_t)n * half, TOL32);
    cmp("rope_table sin", sn, gsn, (size_t)n * half, TOL32);
    for (int inverse = 0; inverse < 2; inverse++) {
        C->rope(x, cs, sn, n, heads, d, inverse);
        G->rope(gx, gcs, gsn, n, heads, d, inverse);
        cmp(inverse ? "rope inverse" : "rope", x, gx, nx, TOL32);
    }
    free(pos); free(inv); free(cs); free(sn); free(x);
    G->free(gpos); G->free(ginv); G->free(gcs); G->free(gsn); G->free(gx);
}

/* kv_start for B rows of T tokens cut into random documents. */
static int32_t *segments(int B, int T)
{
    int32_t *ks = malloc((size_t)B * T * 4);
    for (int b = 0; b < B; b++) {
        int start = 0;
        for (int i = 0; i < T; i++) {
            if (i > 0 && urand() < 0.03) start = i;
            ks[(size_t)b * T + i] = start;
        }
    }
    return ks;
}

static void attn_case(int B, int T, int nh, int nkv, int d, int bf16)
{
    size_t nq = (size_t)B * T * nh * d, nk = (size_t)B * T * nkv * d, nl = (size_t)B * T * nh;
    float sc = 1 / sqrtf((float)d);
    float *q = hrand(nq, -2, 2), *k = hrand(nk, -2, 2), *v = hrand(nk, -1, 1), *g = hrand(nq, -1, 1);
    if (bf16) { round_bf16(q, nq); round_bf16(k, nk); round_bf16(v, nk); round_bf16(g, nq); }
    float *o = malloc(nq * 4), *lse = malloc(nl * 4), *dq = malloc(nq * 4), *dk = malloc(nk * 4), *dv = malloc(nk * 4);
    int32_t *ks = segments(B, T), *gks = dput(ks, (size_t)B * T * 4);
    size_t wsb = C->attn_workspace(T, d);
    void *ws = malloc(wsb);
    C->attn_fwd(o, lse, q, k, v, ks, B, T, nh, nkv, d, sc, ws, wsb);
    char what[96];
    snprintf(what, sizeof what, "attn%s B%d T%d nh%d nkv%d d%d", bf16 ? "_bf16" : "", B, T, nh, nkv, d);
    if (bf16) {
        round_bf16(o, nq);   /* the bf16 backward reads the bf16 output */
        C->attn_bwd(dq, dk, dv, g, q, k, v, o, lse, ks, B, T, nh, nkv, d, sc, ws, wsb);
        C->attn_fwd(o, lse, q, k, v, ks, B, T, nh, nkv, d, sc, ws, wsb);
        uint16_t *gq = dbf16(q, nq), *gk = dbf16(k, nk), *gv = dbf16(v, nk), *gg = dbf16(g, nq);
        uint16_t *go = G->alloc(nq * 2), *gdq = G->alloc(nq * 2), *gdk = G->alloc(nk * 2), *gdv = G->alloc(nk * 2);
        float *gl = dpoison(nl);
        qw_cuda_attn_fwd_bf16(go, gl, gq, gk, gv, gks, B, T, nh, nkv, d, sc);
        cmp_bf16(what, o, go, nq, TOL16);
        cmp("attn_bf16 lse", lse, gl, nl, TOL16);
        qw_cuda_attn_bwd_bf16(gdq, gdk, gdv, gg, gq, gk, gv, go, gl, gks, B, T, nh, nkv, d, sc);
        cmp_bf16("attn_bwd_bf16 dq", dq, gdq, nq, TOL16);
        cmp_bf16("attn_bwd_bf16 dk", dk, gdk, nk, TOL16);
        cmp_bf16("attn_bwd_bf16 dv", dv, gdv, nk, TOL16);
        G->free(gq); G->free(gk); G->free(gv); G->free(gg); G->free(go); G->free(gdq); G->free(gdk); G->free(gdv);
        G->free(gl);
    } else {
        C->attn_bwd(dq, dk, dv, g, q, k, v, o, lse, ks, B, T, nh, nkv, d, sc, ws, wsb);
        float *gq = dput(q, nq * 4), *gk = dput(k, nk * 4), *gv = dput(v, nk * 4), *gg = dput(g, nq * 4);
        float *go = dpoison(nq), *gl = dpoison(nl), *gdq = dpoison(nq), *gdk = dpoison(nk), *gdv = dpoison(nk);
        size_t gwb = G->attn_workspace(T, d);
        void *gws = gwb ? G->alloc(gwb) : NULL;
        G->attn_fwd(go, gl, gq, gk, gv, gks, B, T, nh, nkv, d, sc, gws, gwb);
        cmp(what, o, go, nq, TOL32);
        cmp("attn lse", lse, gl, nl, TOL32);
        G->attn_bwd(gdq, gdk, gdv, gg, gq, gk, gv, go, gl, gks, B, T, nh, nkv, d, sc, gws, gwb);
        cmp("attn_bwd dq", dq, gdq, nq, TOL32);
        cmp("attn_bwd dk", dk, gdk, nk, TOL32);
        cmp("attn_bwd dv", dv, gdv, nk, TOL32);
        G->free(gq); G->free(gk); G->free(gv); G->free(gg); G->free(go); G->free(gl);
        G->free(gdq); G->free(gdk); G->free(gdv);
        if (gws) G->free(gws);
    }
    free(q); free(k); free(v); free(g); free(o); free(lse); free(dq); free(dk); free(dv); free(ks); free(ws);
    G->free(gks);
}

TEST(attention)
{
    attn_case(2, 97, 4, 2, 64, 0);
    attn_case(1, 70, 2, 1, 128, 0);
    attn_case(2, 33, 4, 4, 16, 0);
}

TEST(attention_bf16)
{
    attn_case(2, 97, 4, 2, 64, 1);
    attn_case(1, 70, 4, 1, 128, 1);
}

TEST(swiglu)
{
    size_t n = 10007;
    float *g = hrand(n, -6, 6), *u = hrand(n, -2, 2), *da = hrand(n, -1, 1);
    float *a = malloc(n * 4), *dg = malloc(n * 4), *du = malloc(n * 4);
    float *gg = dput(g, n * 4), *gu = dput(u, n * 4), *gda = dput(da, n * 4), *ga = dpoison(n), *gdu = dpoison(n);
    C->swiglu_fwd(a, g, u, n);
    G->swiglu_fwd(ga, gg, gu, n);
    cmp("swiglu_fwd", a, ga, n, TOL32);
    C->swiglu_bwd(dg, du, da, g, u, n);
    G->swiglu_bwd(gda, gdu, gda, gg, gu, n);   /* dg aliases da */
    cmp("swiglu_bwd dg", dg, gda, n, TOL32);
    cmp("swiglu_bwd du", du, gdu, n, TOL32);
    free(g); free(u); free(da); free(a); free(dg); free(du);
    G->free(gg); G->free(gu); G->free(gda); G->free(ga); G->free(gdu);
}

static void moe_case(int n, int E, int k, int norm, int capacity)
{
    float *lg = hrand((size_t)n * E, -3, 3), *probs = malloc((size_t)n * E * 4), *w = malloc((size_t)n * k * 4);
    int32_t *sel = malloc((size_t)n * k * 4);
    float *glg = dput(lg, (size_t)n * E * 4), *gp = dpoison((size_t)n * E), *gw = dpoison((size_t)n * k);
    int32_t *gsel = G->alloc((size_t)n * k * 4);
    C->moe_route_fwd(probs, sel, w, lg, n, E, k, norm);
    G->moe_route_fwd(gp, gsel, gw, glg, n, E, k, norm);
    cmp("moe_route_fwd probs", probs, gp, (size_t)n * E, TOL32);
    cmp("moe_route_fwd w", w, gw, (size_t)n * k, TOL32);
    cmp_ints("moe_route_fwd sel", sel, gsel, (size_t)n * k);
    float *dw = hrand((size_t)n * k, -1, 1), *dpr = hrand(E, -0.1f, 0.1f), *dl = malloc((size_t)n * E * 4);
    float *gdw = dput(dw, (size_t)n * k * 4), *gdpr = dput(dpr, E * 4), *gdl = dpoison((size_t)n * E);
    C->moe_route_bwd(dl, dw, probs, sel, w, dpr, n, E, k, norm);
    G->moe_route_bwd(gdl, gdw, gp, gsel, gw, gdpr, n, E, k, norm);
    cmp("moe_route_bwd", dl, gdl, (size_t)n * E, TOL32);
    C->moe_route_bwd(dl, dw, probs, sel, w, NULL, n, E, k, norm);
    G->moe_route_bwd(gdl, gdw, gp, gsel, gw, NULL, n, E, k, norm);
    cmp("moe_route_bwd (no dprobs)", dl, gdl, (size_t)n * E, TOL32);
    float *cnt = hrand(E, 0, 5), *ps = hrand(E, 0, 5), *gcnt = dput(cnt, E * 4), *gps = dput(ps, E * 4);
    C->moe_aux_stats(cnt, ps, probs, sel, n, E, k);
    G->moe_aux_stats(gcnt, gps, gp, gsel, n, E, k);
    cmp("moe_aux_stats count", cnt, gcnt, E, TOL32);
    cmp("moe_aux_stats psum", ps, gps, E, TOL32);
    int32_t *off = malloc((E + 1) * 4), *goff = malloc((E + 1) * 4);
    int32_t *rows = malloc((size_t)n * k * 4), *slots = malloc((size_t)n * k * 4);
    int32_t *grows = G->alloc((size_t)n * k * 4), *gslots = G->alloc((size_t)n * k * 4);
    int kept = C->moe_dispatch(off, rows, slots, sel, n, E, k, capacity);
    int gkept = G->moe_dispatch(goff, grows, gslots, gsel, n, E, k, capacity);
    CHECK(kept == gkept);
    CHECK(!memcmp(off, goff, (E + 1) * 4));
    cmp_ints("moe_dispatch rows", rows, grows, kept);
    cmp_ints("moe_dispatch slots", slots, gslots, kept);
    free(lg); free(probs); free(w); free(sel); free(dw); free(dpr); free(dl); free(cnt); free(ps);
    free(off); free(goff); free(rows); free(slots);
    G->free(glg); G->free(gp); G->free(gw); G->free(gsel); G->free(gdw); G->free(gdpr); G->free(gdl);
    G->free(gcnt); G->free(gps); G->free(grows); G->free(gslots);
}

TEST(moe)
{
    moe_case(257, 8, 2, 1, 1 << 30);
    moe_case(300, 16, 4, 0, 40);   /* capacity drops assignments */
}

TEST(rows)
{
    int n = 211, src_rows = 60, dim = 72;
    float *src = hrand((size_t)src_rows * dim, -1, 1), *x = hrand((size_t)n * dim, -1, 1);
    float *y = hrand((size_t)n * dim, -1, 1), *w = hrand(n, -1, 1), *dst = hrand((size_t)src_rows * dim, -1, 1);
    float *gat = malloc((size_t)n * dim * 4), *out = malloc(n * 4);
    int32_t *rows = hints(n, 0, src_rows), *slots = malloc(n * 4);
    for (int a = 0; a < n; a++) slots[a] = (a * 37) % n;   /* a permutation */
    float *gsrc = dput(src, (size_t)src_rows * dim * 4), *gx = dput(x, (size_t)n * dim * 4);
    float *gy = dput(y, (size_t)n * dim * 4), *gw = dput(w, n * 4), *gdst = dput(dst, (size_t)src_rows * dim * 4);
    float *ggat = dpoison((size_t)n * dim), *gout = dpoison(n);
    int32_t *grows = dput(rows, n * 4), *gslots = dput(slots, n * 4);
    C->gather_rows(gat, src, rows, n, dim);
    G->gather_rows(ggat, gsrc, grows, n, dim);
    cmp("gather_rows", gat, ggat, (size_t)n * dim, 0);
    C->scatter_add_rows(dst, x, rows, n, dim);
    G->scatter_add_rows(gdst, gx, grows, n, dim);
    cmp("scatter_add_rows", dst, gdst, (size_t)src_rows * dim, TOL32);
    C->scale_rows(x, x, w, slots, n, dim);
    G->scale_rows(gx, gx, gw, gslots, n, dim);   /* in place */
    cmp("scale_rows", x, gx, (size_t)n * dim, TOL32);
    C->row_dot(out, x, y, slots, n, dim);
    G->row_dot(gout, gx, gy, gslots, n, dim);
    cmp("row_dot", out, gout, n, TOL32);
    free(src); free(x); free(y); free(w); free(dst); free(gat); free(out); free(rows); free(slots);
    G->free(gsrc); G->free(gx); G->free(gy); G->free(gw); G->free(gdst); G->free(ggat); G->free(gout);
    G->free(grows); G->free(gslots);
}

TEST(cross_entropy)
{
    int n = 77, V = 5003;
    size_t nl = (size_t)n * V;
    float *lg = hrand(nl, -8, 8), *coef = hrand(n, 0, 1), *lse = malloc(n * 4), *logp = malloc(n * 4);
    int32_t *t = hints(n, -1, V);
    t[0] = -100;
    float *glg = dput(lg, nl * 4), *gcoef = dput(coef, n * 4), *glse = dpoison(n), *glogp = dpoison(n);
    int32_t *gt = dput(t, n * 4);
    C->ce_fwd(lse, logp, lg, t, n, V);
    G->ce_fwd(glse, glogp, glg, gt, n, V);
    cmp("ce_fwd lse", lse, glse, n, TOL32);
    cmp("ce_fwd logp", logp, glogp, n, TOL32);
    C->ce_bwd(lg, lse, t, coef, n, V);
    G->ce_bwd(glg, glse, gt, gcoef, n, V);
    cmp("ce_bwd", lg, glg, nl, TOL32);
    free(lg); free(coef); free(lse); free(logp); free(t);
    G->free(glg); G->free(gcoef); G->free(glse); G->free(glogp); G->free(gt);
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
    float *src = G->alloc(256), *dst = G->alloc(256), h[64];
    int32_t *rows = dput(&bad, sizeof bad);
    G->gather_rows(dst, src, rows, 1, 64);
    G->download(h, dst, sizeof h);
    return 0;   /* not reached */
}

int main(int argc, char **argv)
{
    C = qw_ops_cpu();
    G = qw_ops_cuda();
    if (!G) {
        fprintf(stderr, "test_ops: no usable GPU: %s\n", qw_cuda_why());
        return 1;
    }
    if (argc > 1 && !strcmp(argv[1], "fault")) return fault();
    const char *s = getenv("QW_SEED");
    rng = s ? strtoull(s, NULL, 10) : (unsigned long long)time(NULL);
    printf("# test_ops: QW_SEED=%llu\n", rng);
    RUN(gemm);
    RUN(gemm_bf16);
    RUN(embed);
    RUN(rmsnorm);
    RUN(rope);
    RUN(attention);
    RUN(attention_bf16);
    RUN(swiglu);
    RUN(moe);
    RUN(rows);
    RUN(cross_entropy);
    RUN(out_of_memory);
    return qwtest_finish();
}
