/* test_ops.c — every CPU op against a naive double-precision reference,
 * and every backward against central finite differences of that reference
 * (scalar loss L = Σ dy·y with a random dy), on tiny shapes. */
#include "qwtest.h"
#include "qw/cli.h"
#include "qw/ops.h"

#include <stdint.h>

static const qw_ops *ops;
static uint64_t rng = 88172645463325252ULL;

static double urand(void)   /* uniform in [-1, 1) */
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (double)(rng >> 11) / 4503599627370496.0 - 1.0;
}
static float *frand(size_t n, double scale)
{
    float *x = qw_malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (float)(scale * urand());
    return x;
}
static double *dup_d(const float *x, size_t n)
{
    double *y = qw_malloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}
/* ‖a − b‖ / ‖b‖ */
static double relerr(const float *a, const double *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) { num += (a[i] - b[i]) * (a[i] - b[i]); den += b[i] * b[i]; }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static double maxabs(const float *a, const double *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]));
    return m;
}

/* Central differences of loss() with respect to every element of x. */
typedef double (*lossfn)(void *ctx);
static double *fd_grad(lossfn f, void *ctx, double *x, size_t n)
{
    const double h = 1e-5;
    double *g = qw_malloc(n * sizeof *g);
    for (size_t i = 0; i < n; i++) {
        double xi = x[i];
        x[i] = xi + h; double lp = f(ctx);
        x[i] = xi - h; double lm = f(ctx);
        x[i] = xi;
        g[i] = (lp - lm) / (2 * h);
    }
    return g;
}
#define CHECK_GRAD(analytic, fd, n) do { double e_ = relerr(analytic, fd, n); \
    CHECK_MSG(e_ <= 1e-3, "%s: relative error %.3g", #analytic, e_); free(fd); } while (0)

/* ---------------------------------------------------------------- gemm */

/* Small products run whole; large ones are split over threads by rows of C
 * (m >= n) or by columns. */
TEST(gemm_all_transposes_and_splits)
{
    int shapes[3][3] = {{5, 7, 3}, {300, 70, 120}, {70, 300, 120}}, pad = 2;
    for (int s = 0; s < 3; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
                int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
                float *A = frand((size_t)ar * (ac + pad), 1), *B = frand((size_t)br * (bc + pad), 1);
                float *C = frand((size_t)m * (n + pad), 1);
                double *ref = qw_malloc((size_t)m * n * sizeof *ref), err = 0;
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++) {
                        double t = 0;
                        for (int l = 0; l < k; l++)
                            t += (double)(ta ? A[l * (ac + pad) + i] : A[i * (ac + pad) + l]) *
                                 (tb ? B[j * (bc + pad) + l] : B[l * (bc + pad) + j]);
                        ref[i * n + j] = 2 * t + 0.5 * C[i * (n + pad) + j];
                    }
                float pad_before = C[n];
                ops->gemm(ta, tb, m, n, k, 2, A, ac + pad, B, bc + pad, 0.5f, C, n + pad, s == 1);
                for (int i = 0; i < m; i++)
                    for (int j = 0; j < n; j++) err = fmax(err, fabs(C[i * (n + pad) + j] - ref[i * n + j]));
                CHECK_MSG(err < 1e-4, "%dx%dx%d ta=%d tb=%d: max error %.3g", m, n, k, ta, tb, err);
                CHECK(C[n] == pad_before);   /* the padding of C is left alone */
                free(A); free(B); free(C); free(ref);
            }
}

/* ----------------------------------------------------------- embedding */

TEST(embedding)
{
    int V = 6, H = 37, n = 5;
    int32_t ids[] = {3, 0, 3, 5, 3};
    float *tab = frand(V * H, 1), *y = frand(n * H, 1), *dy = frand(n * H, 1);
    float *dtab = qw_calloc(V * H, sizeof *dtab);
    ops->embed_fwd(y, tab, ids, n, H);
    for (int i = 0; i < n; i++) CHECK(!memcmp(y + i * H, tab + ids[i] * H, H * sizeof *y));
    ops->embed_bwd(dtab, dy, ids, n, H);
    ops->embed_bwd(dtab, dy, ids, n, H);   /* accumulates */
    double ref[6 * 37] = {0};
    for (int i = 0; i < n; i++)
        for (int j = 0; j < H; j++) ref[ids[i] * H + j] += 2.0 * dy[i * H + j];
    CHECK(maxabs(dtab, ref, V * H) < 1e-6);
    free(tab); free(y); free(dy); free(dtab);
}

/* ------------------------------------------------------------- RMSNorm */

typedef struct { double *x, *w, *dy; int rows, dim; double eps; } norm_ctx;

static void rmsnorm_ref(double *y, const double *x, const double *w, int rows, int dim, double eps)
{
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int j = 0; j < dim; j++) ss += x[r * dim + j] * x[r * dim + j];
        double rs = 1 / sqrt(ss / dim + eps);
        for (int j = 0; j < dim; j++) y[r * dim + j] = w[j] * x[r * dim + j] * rs;
    }
}
static double norm_loss(void *p)
{
    norm_ctx *c = p;
    double *y = qw_malloc((size_t)c->rows * c->dim * sizeof *y), s = 0;
    rmsnorm_ref(y, c->x, c->w, c->rows, c->dim, c->eps);
    for (int i = 0; i < c->rows * c->dim; i++) s += c->dy[i] * y[i];
    free(y);
    return s;
}

TEST(rmsnorm)
{
    int rows = 6, dim = 40;
    float eps = 1e-6f;
    float *x = frand(rows * dim, 2), *w = frand(dim, 1), *dy = frand(rows * dim, 1);
    float *y = qw_malloc(rows * dim * sizeof *y), rstd[6];
    norm_ctx c = {dup_d(x, rows * dim), dup_d(w, dim), dup_d(dy, rows * dim), rows, dim, eps};
    double *yr = qw_malloc(rows * dim * sizeof *yr);
    rmsnorm_ref(yr, c.x, c.w, rows, dim, eps);
    ops->rmsnorm_fwd(y, rstd, x, w, rows, dim, eps);
    CHECK(relerr(y, yr, rows * dim) < 1e-6);

    float *dx = frand(rows * dim, 1), *dx0 = qw_malloc(rows * dim * sizeof *dx0), *dw = frand(dim, 1);
    float *dw0 = qw_malloc(dim * sizeof *dw0);
    memcpy(dx0, dx, rows * dim * sizeof *dx);
    memcpy(dw0, dw, dim * sizeof *dw);
    ops->rmsnorm_bwd(dx, dw, dy, x, w, rstd, rows, dim, 1);   /* accumulating into dx and dw */
    for (int i = 0; i < rows * dim; i++) dx[i] -= dx0[i];
    for (int i = 0; i < dim; i++) dw[i] -= dw0[i];
    CHECK_GRAD(dx, fd_grad(norm_loss, &c, c.x, rows * dim), rows * dim);
    CHECK_GRAD(dw, fd_grad(norm_loss, &c, c.w, dim), dim);
    ops->rmsnorm_bwd(dx0, dw0, dy, x, w, rstd, rows, dim, 0);  /* overwriting dx */
    for (int i = 0; i < rows * dim; i++) CHECK_NEAR(dx0[i], dx[i], 1e-6);
    free(x); free(w); free(dy); free(y); free(dx); free(dx0); free(dw); free(dw0); free(yr);
    free(c.x); free(c.w); free(c.dy);
}

/* ------------------------------------------------- q/k norm and RoPE */

/* The reference composes the two steps in double: RMSNorm of each head's
 * d values, then the rotate_half rotation by the table. */
typedef struct { double *x, *w, *dy, *cs, *sn; int n, heads, d; double eps; } qk_ctx;

static void rope_ref(double *y, const double *x, const double *cs, const double *sn, int n, int heads, int d)
{
    int half = d / 2;
    for (int i = 0; i < n; i++)
        for (int h = 0; h < heads; h++)
            for (int j = 0; j < half; j++) {
                const double *xr = x + ((size_t)i * heads + h) * d;
                double *yr = y + ((size_t)i * heads + h) * d, c = cs[i * half + j], s = sn[i * half + j];
                yr[j] = xr[j] * c - xr[j + half] * s;
                yr[j + half] = xr[j + half] * c + xr[j] * s;
            }
}
static void qk_ref(double *y, const qk_ctx *c)
{
    size_t m = (size_t)c->n * c->heads * c->d;
    double *t = qw_malloc(m * sizeof *t);
    rmsnorm_ref(t, c->x, c->w, c->n * c->heads, c->d, c->eps);
    rope_ref(y, t, c->cs, c->sn, c->n, c->heads, c->d);
    free(t);
}
static double qk_loss(void *p)
{
    qk_ctx *c = p;
    size_t m = (size_t)c->n * c->heads * c->d;
    double *y = qw_malloc(m * sizeof *y), s = 0;
    qk_ref(y, c);
    for (size_t i = 0; i < m; i++) s += c->dy[i] * y[i];
    free(y);
    return s;
}

TEST(qk_norm_rope)
{
    int n = 5, heads = 3, d = 8, half = 4;
    int32_t pos[] = {0, 1, 7, 100, 33};
    float inv[] = {1.0f, 0.1f, 0.01f, 0.001f}, scale = 1.1386f, eps = 1e-6f;
    float cs[5 * 4], sn[5 * 4];
    ops->rope_table(cs, sn, pos, n, inv, half, scale);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < half; j++) {
            CHECK_NEAR(cs[i * half + j], cos((float)pos[i] * inv[j]) * scale, 1e-6);
            CHECK_NEAR(sn[i * half + j], sin((float)pos[i] * inv[j]) * scale, 1e-6);
        }
    size_t m = (size_t)n * heads * d;
    float *x = frand(m, 2), *w = frand(d, 1), *dy = frand(m, 1), *y = qw_malloc(m * sizeof *y), rstd[15];
    qk_ctx c = {dup_d(x, m), dup_d(w, d), dup_d(dy, m), dup_d(cs, n * half), dup_d(sn, n * half), n, heads, d, eps};
    double *yr = qw_malloc(m * sizeof *yr);
    qk_ref(yr, &c);
    ops->qk_norm_rope_fwd(y, rstd, x, w, cs, sn, n, heads, d, eps);
    CHECK(relerr(y, yr, m) < 1e-6);
    for (int r = 0; r < n * heads; r++) {   /* rstd of each head's raw values */
        double ss = 0;
        for (int j = 0; j < d; j++) ss += c.x[r * d + j] * c.x[r * d + j];
        CHECK_NEAR(rstd[r], 1 / sqrt(ss / d + eps), 1e-5);
    }
    float *dx = frand(m, 5), *dw = frand(d, 1), *dw0 = qw_malloc(d * sizeof *dw0);
    memcpy(dw0, dw, d * sizeof *dw);
    ops->qk_norm_rope_bwd(dx, dw, dy, x, w, rstd, cs, sn, n, heads, d);   /* dx overwritten, dw += */
    for (int i = 0; i < d; i++) dw[i] -= dw0[i];
    CHECK_GRAD(dx, fd_grad(qk_loss, &c, c.x, m), m);
    CHECK_GRAD(dw, fd_grad(qk_loss, &c, c.w, d), d);
    free(x); free(w); free(dy); free(y); free(yr); free(dx); free(dw); free(dw0);
    free(c.x); free(c.w); free(c.dy); free(c.cs); free(c.sn);
}

/* ----------------------------------------------------------- attention */

typedef struct { double *q, *k, *v, *dout; const int32_t *ks; int B, T, nh, nkv, d; double scale; } attn_ctx;

static void attn_ref(double *o, const attn_ctx *c)
{
    int B = c->B, T = c->T, nh = c->nh, nkv = c->nkv, d = c->d;
    double *p = qw_malloc(T * sizeof *p);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < nh; h++)
            for (int i = 0; i < T; i++) {
                const double *qi = c->q + (((size_t)b * T + i) * nh + h) * d;
                int lo = c->ks[b * T + i], kh = h / (nh / nkv);
                double mx = -INFINITY, sum = 0;
                for (int j = lo; j <= i; j++) {
                    const double *kj = c->k + (((size_t)b * T + j) * nkv + kh) * d;
                    double s = 0;
                    for (int t = 0; t < d; t++) s += qi[t] * kj[t];
                    p[j] = s * c->scale;
                    mx = fmax(mx, p[j]);
                }
                for (int j = lo; j <= i; j++) sum += p[j] = exp(p[j] - mx);
                double *oi = o + (((size_t)b * T + i) * nh + h) * d;
                for (int t = 0; t < d; t++) oi[t] = 0;
                for (int j = lo; j <= i; j++)
                    for (int t = 0; t < d; t++) oi[t] += p[j] / sum * c->v[(((size_t)b * T + j) * nkv + kh) * d + t];
            }
    free(p);
}
static double attn_loss(void *p)
{
    attn_ctx *c = p;
    size_t m = (size_t)c->B * c->T * c->nh * c->d;
    double *o = qw_malloc(m * sizeof *o), s = 0;
    attn_ref(o, c);
    for (size_t i = 0; i < m; i++) s += c->dout[i] * o[i];
    free(o);
    return s;
}

/* kv_start from per-token segment ids (documents are runs of equal ids). */
static void seg_starts(int32_t *ks, const int32_t *seg, int B, int T)
{
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            ks[b * T + t] = t == 0 || seg[b * T + t] != seg[b * T + t - 1] ? t : ks[b * T + t - 1];
}

/* Forward against the reference; backward against finite differences, on
 * every element (full) or on `sample` random elements of q, k and v. */
static void check_attention(int B, int T, int nh, int nkv, int d, const int32_t *seg, int sample)
{
    size_t nq = (size_t)B * T * nh * d, nk = (size_t)B * T * nkv * d;
    int32_t *ks = qw_malloc(B * T * sizeof *ks);
    seg_starts(ks, seg, B, T);
    float *q = frand(nq, 1), *k = frand(nk, 1), *v = frand(nk, 1), *dout = frand(nq, 1);
    float *o = qw_malloc(nq * 4), *lse = qw_malloc((size_t)B * T * nh * 4);
    float *dq = qw_malloc(nq * 4), *dk = qw_malloc(nk * 4), *dv = qw_malloc(nk * 4);
    size_t wsb = ops->attn_workspace(B, T, nh, d);
    void *ws = ops->alloc(wsb);
    float scale = 1 / sqrtf(d);
    attn_ctx c = {dup_d(q, nq), dup_d(k, nk), dup_d(v, nk), dup_d(dout, nq), ks, B, T, nh, nkv, d, scale};
    double *oref = qw_malloc(nq * sizeof *oref);
    attn_ref(oref, &c);
    ops->attn_fwd(o, lse, q, k, v, ks, B, T, nh, nkv, d, scale, ws, wsb);
    CHECK_MSG(relerr(o, oref, nq) < 1e-5, "T=%d: forward relative error %.3g", T, relerr(o, oref, nq));
    ops->attn_bwd(dq, dk, dv, dout, q, k, v, o, lse, ks, B, T, nh, nkv, d, scale, ws, wsb);
    struct { float *an; double *x; size_t n; } g[3] = {{dq, c.q, nq}, {dk, c.k, nk}, {dv, c.v, nk}};
    for (int t = 0; t < 3; t++) {
        if (!sample) { CHECK_GRAD(g[t].an, fd_grad(attn_loss, &c, g[t].x, g[t].n), g[t].n); continue; }
        float an[64];
        double *fd = qw_malloc(sample * sizeof *fd);
        for (int s = 0; s < sample; s++) {
            size_t i = (size_t)((urand() + 1) / 2 * g[t].n);
            double *one = fd_grad(attn_loss, &c, g[t].x + i, 1);
            fd[s] = one[0];
            free(one);
            an[s] = g[t].an[i];
        }
        CHECK_GRAD(an, fd, sample);
    }
    ops->free(ws);
    free(ks); free(q); free(k); free(v); free(dout); free(o); free(lse); free(dq); free(dk); free(dv);
    free(oref); free(c.q); free(c.k); free(c.v); free(c.dout);
}

TEST(attention_small_full_fd)
{
    /* row 0: one document; row 1: documents of 3, 1 and 5 tokens */
    int32_t seg[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 7, 9, 9, 9, 9, 9};
    check_attention(2, 9, 4, 2, 4, seg, 0);
    check_attention(1, 9, 3, 3, 4, seg + 9, 0);   /* MHA */
    check_attention(2, 9, 4, 1, 6, seg, 0);       /* MQA */
}

TEST(attention_multiple_blocks)
{
    int T = 300;   /* more than two query blocks */
    int32_t seg[2 * 300];
    for (int t = 0; t < T; t++) { seg[t] = 0; seg[T + t] = t < 140 ? 1 : t < 141 ? 2 : 3; }
    check_attention(2, T, 4, 2, 8, seg, 24);
}

/* ------------------------------------------------------------- SwiGLU */

typedef struct { double *g, *u, *da; int n; } glu_ctx;
static double glu_loss(void *p)
{
    glu_ctx *c = p;
    double s = 0;
    for (int i = 0; i < c->n; i++) s += c->da[i] * c->g[i] / (1 + exp(-c->g[i])) * c->u[i];
    return s;
}

TEST(swiglu)
{
    int n = 50;
    float *g = frand(n, 4), *u = frand(n, 2), *da = frand(n, 1), a[50], dg[50], du[50];
    glu_ctx c = {dup_d(g, n), dup_d(u, n), dup_d(da, n), n};
    ops->swiglu_fwd(a, g, u, n);
    for (int i = 0; i < n; i++) CHECK_NEAR(a[i], c.g[i] / (1 + exp(-c.g[i])) * c.u[i], 1e-6);
    ops->swiglu_bwd(dg, du, da, g, u, n);
    CHECK_GRAD(dg, fd_grad(glu_loss, &c, c.g, n), n);
    CHECK_GRAD(du, fd_grad(glu_loss, &c, c.u, n), n);
    memcpy(a, da, sizeof a);
    ops->swiglu_bwd(a, du, a, g, u, n);   /* dg aliasing da */
    for (int i = 0; i < n; i++) CHECK(a[i] == dg[i]);
    free(g); free(u); free(da); free(c.g); free(c.u); free(c.da);
}

/* ----------------------------------------------------------------- MoE */

typedef struct { double *logits, *dw, *dprobs; const int32_t *sel; int n, E, k, norm; } route_ctx;

/* Softmax, then the weights of the given selection (renormalised if norm). */
static void route_ref(double *probs, double *w, const double *logits, const int32_t *sel, int n, int E, int k, int norm)
{
    for (int i = 0; i < n; i++) {
        double mx = -INFINITY, sum = 0, tot = 0;
        for (int e = 0; e < E; e++) mx = fmax(mx, logits[i * E + e]);
        for (int e = 0; e < E; e++) sum += probs[i * E + e] = exp(logits[i * E + e] - mx);
        for (int e = 0; e < E; e++) probs[i * E + e] /= sum;
        for (int j = 0; j < k; j++) tot += w[i * k + j] = probs[i * E + sel[i * k + j]];
        if (norm)
            for (int j = 0; j < k; j++) w[i * k + j] /= tot;
    }
}
static double route_loss(void *p)
{
    route_ctx *c = p;
    double *probs = qw_malloc(c->n * c->E * sizeof *probs), *w = qw_malloc(c->n * c->k * sizeof *w), s = 0;
    route_ref(probs, w, c->logits, c->sel, c->n, c->E, c->k, c->norm);
    for (int i = 0; i < c->n * c->k; i++) s += c->dw[i] * w[i];
    for (int i = 0; i < c->n * c->E; i++) s += c->dprobs[i % c->E] * probs[i];
    free(probs); free(w);
    return s;
}

TEST(moe_route)
{
    int n = 7, E = 6, k = 3;
    for (int norm = 0; norm < 2; norm++) {
        float *logits = frand(n * E, 2), *dw = frand(n * k, 1), *dprobs = frand(E, 1);
        logits[0] = logits[1] = logits[2] = 5;   /* a tie: lower index first */
        float probs[7 * 6], w[7 * 3], dl[7 * 6];
        int32_t sel[7 * 3];
        ops->moe_route_fwd(probs, sel, w, logits, n, E, k, norm);
        CHECK(sel[0] == 0 && sel[1] == 1 && sel[2] == 2);
        route_ctx c = {dup_d(logits, n * E), dup_d(dw, n * k), dup_d(dprobs, E), sel, n, E, k, norm};
        double pr[7 * 6], wr[7 * 3];
        route_ref(pr, wr, c.logits, sel, n, E, k, norm);
        CHECK(relerr(probs, pr, n * E) < 1e-6 && relerr(w, wr, n * k) < 1e-6);
        for (int i = 0; i < n; i++)   /* sorted, and nothing outside beats the k-th */
            for (int j = 0; j < k; j++) {
                if (j) CHECK(probs[i * E + sel[i * k + j]] <= probs[i * E + sel[i * k + j - 1]]);
                for (int e = 0; e < E; e++) {
                    int in = 0;
                    for (int t = 0; t < k; t++) in |= sel[i * k + t] == e;
                    if (!in) CHECK(probs[i * E + e] <= probs[i * E + sel[i * k + k - 1]]);
                }
            }
        ops->moe_route_bwd(dl, dw, probs, sel, w, dprobs, n, E, k, norm);
        CHECK_GRAD(dl, fd_grad(route_loss, &c, c.logits, n * E), n * E);
        free(logits); free(dw); free(dprobs); free(c.logits); free(c.dw); free(c.dprobs);
    }
}

TEST(moe_aux_stats_and_dispatch)
{
    int n = 5, E = 4, k = 2;
    int32_t sel[] = {2, 0, 2, 3, 0, 2, 1, 2, 2, 3};
    float *probs = frand(n * E, 1), count[4] = {1, 1, 1, 1}, psum[4] = {0};
    ops->moe_aux_stats(count, psum, probs, sel, n, E, k);
    float want[4] = {3, 2, 6, 3};
    for (int e = 0; e < E; e++) {
        double s = 0;
        for (int i = 0; i < n; i++) s += probs[i * E + e];
        CHECK(count[e] == want[e]);
        CHECK_NEAR(psum[e], s, 1e-6);
    }
    int32_t off[5], rows[10], slots[10];
    CHECK(ops->moe_dispatch(off, rows, slots, sel, n, E, k, n) == 10);
    int32_t off_all[] = {0, 2, 3, 8, 10}, slots_all[] = {1, 4, 6, 0, 2, 5, 7, 8, 3, 9};
    CHECK(!memcmp(off, off_all, sizeof off) && !memcmp(slots, slots_all, sizeof slots));
    for (int a = 0; a < 10; a++) CHECK(rows[a] == slots[a] / k);
    /* capacity 2: expert 2 keeps its first two assignments in token order */
    CHECK(ops->moe_dispatch(off, rows, slots, sel, n, E, k, 2) == 7);
    int32_t off_cap[] = {0, 2, 3, 5, 7}, slots_cap[] = {1, 4, 6, 0, 2, 3, 9};
    CHECK(!memcmp(off, off_cap, sizeof off) && !memcmp(slots, slots_cap, 7 * sizeof *slots));
    free(probs);
}

TEST(row_ops)
{
    int n = 4, dim = 21, src_rows = 3;
    int32_t rows[] = {2, 0, 2, 1}, slots[] = {3, 0, 1, 2};
    float *src = frand(src_rows * dim, 1), *x = frand(n * dim, 1), *y = frand(n * dim, 1), w[] = {0.5f, 2, -1, 3};
    float g[4 * 21], s[4 * 21], acc[3 * 21] = {0}, dots[4];
    ops->gather_rows(g, src, rows, n, dim);
    for (int a = 0; a < n; a++) CHECK(!memcmp(g + a * dim, src + rows[a] * dim, dim * sizeof *g));
    ops->scatter_add_rows(acc, x, rows, n, dim);
    for (int j = 0; j < dim; j++) {
        CHECK_NEAR(acc[2 * dim + j], x[j] + x[2 * dim + j], 1e-6);
        CHECK_NEAR(acc[j], x[dim + j], 0);
    }
    ops->scale_rows(s, x, w, slots, n, dim);
    ops->row_dot(dots, x, y, slots, n, dim);
    for (int a = 0; a < n; a++) {
        double d = 0;
        for (int j = 0; j < dim; j++) { CHECK(s[a * dim + j] == w[slots[a]] * x[a * dim + j]); d += x[a * dim + j] * y[a * dim + j]; }
        CHECK_NEAR(dots[slots[a]], d, 1e-5);
    }
    free(src); free(x); free(y);
}

/* ------------------------------------------------------- cross-entropy */

typedef struct { double *logits, *coef; const int32_t *t; int n, V; } ce_ctx;
static double ce_loss(void *p)
{
    ce_ctx *c = p;
    double s = 0;
    for (int i = 0; i < c->n; i++) {
        if (c->t[i] < 0) continue;
        double mx = -INFINITY, sum = 0;
        for (int v = 0; v < c->V; v++) mx = fmax(mx, c->logits[i * c->V + v]);
        for (int v = 0; v < c->V; v++) sum += exp(c->logits[i * c->V + v] - mx);
        s -= c->coef[i] * (c->logits[i * c->V + c->t[i]] - mx - log(sum));
    }
    return s;
}

TEST(cross_entropy)
{
    int n = 4, V = 33;
    int32_t t[] = {5, -1, 32, 0};
    float *logits = frand(n * V, 8), coef[] = {0.25f, 0.25f, 1.5f, -0.5f}, lse[4], logp[4];
    ce_ctx c = {dup_d(logits, n * V), dup_d(coef, n), t, n, V};
    ops->ce_fwd(lse, logp, logits, t, n, V);
    double tot = 0;
    for (int i = 0; i < n; i++) tot -= coef[i] * logp[i];
    CHECK(logp[1] == 0);
    CHECK_NEAR(tot, ce_loss(&c), 1e-5);
    float *dl = frand(n * V, 1), *before = qw_malloc(n * V * sizeof *before);
    memcpy(before, logits, n * V * sizeof *logits);
    ops->ce_bwd(dl, logits, lse, t, coef, n, V);
    CHECK(memcmp(before, logits, n * V * sizeof *logits) == 0);   /* out of place */
    CHECK_GRAD(dl, fd_grad(ce_loss, &c, c.logits, n * V), n * V);
    free(logits); free(dl); free(before); free(c.logits); free(c.coef);
}

/* ------------------------------------------------- memory, conversions */

TEST(memory_stats_and_conversions)
{
    CHECK(ops->act_size == sizeof(float));
    size_t use0, peak0, use, peak;
    ops->mem_stats(&use0, &peak0);
    float *a = ops->alloc(1000), *b = ops->alloc(64);
    CHECK(((uintptr_t)a & 63) == 0 && ((uintptr_t)b & 63) == 0);
    CHECK(a[0] == 0 && a[249] == 0);
    ops->mem_stats(&use, &peak);
    CHECK(use == use0 + 1024 + 64);   /* rounded up to 64 bytes */
    CHECK(peak >= use && peak >= peak0);
    ops->free(a);
    ops->mem_stats(&use, &peak);
    CHECK(use == use0 + 64);
    CHECK(peak >= use0 + 1088);
    float src[5] = {1.5f, -2, 3e-8f, 7, -0.0f}, back[5];
    ops->to_act(b, src, 5);
    ops->from_act(back, b, 5);
    CHECK(memcmp(src, back, sizeof src) == 0);
    ops->free(b);
    ops->sync();
    ops->set_deterministic(1);
}

/* ----------------------------------------------------------- optimizer */

TEST(sumsq_fp64_fixed_order)
{
    float g[3] = {3.0f, 4.0f, 12.0f};
    CHECK(ops->sumsq(g, 3) == 169.0);
    CHECK(ops->sumsq(g, 0) == 0.0);
    size_t n = 1000003;
    float *big = frand(n, 1);
    double ref = 0;
    for (size_t i = 0; i < n; i++) ref += (double)big[i] * big[i];
    ops->set_threads(1);
    double one = ops->sumsq(big, n);
    ops->set_threads(3);
    double three = ops->sumsq(big, n);
    ops->set_threads(0);
    CHECK(one == three);   /* the order does not depend on the threads */
    CHECK_NEAR(one, ref, 1e-9 * ref);
    for (size_t i = 0; i < n; i++) big[i] = 1e-3f;
    CHECK_NEAR(ops->sumsq(big, n), (double)1e-3f * 1e-3f * n, 1e-9);   /* fp32 sums would drift by ~1e-3 */
    free(big);
}

/* The op's update is torch's fp32 AdamW element by element, bit for bit,
 * and p_act receives the new p. */
TEST(adamw_op)
{
    size_t n = 1001;
    float *p = frand(n, 1), *g = frand(n, 2), *m = frand(n, 0.1), *v = frand(n, 0.1);
    for (size_t i = 0; i < n; i++) v[i] = fabsf(v[i]);
    float *p2 = qw_malloc(n * 4), *m2 = qw_malloc(n * 4), *v2 = qw_malloc(n * 4), *act = qw_malloc(n * 4);
    memcpy(p2, p, n * 4); memcpy(m2, m, n * 4); memcpy(v2, v, n * 4);
    qw_adamw_scalars s = {.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .grad_scale = 0.5f,
                          .step_size = 0.01f / (1 - 0.9f * 0.9f), .bc2_sqrt = sqrtf(1 - 0.95f * 0.95f), .decay = 0.999f};
    ops->adamw(p, act, g, m, v, n, &s);
    for (size_t j = 0; j < n; j++) {
        float gj = g[j] * s.grad_scale;
        float mj = s.beta1 * m2[j] + (1.0f - s.beta1) * gj;
        float vj = s.beta2 * v2[j] + (1.0f - s.beta2) * gj * gj;
        float pj = p2[j] * s.decay - s.step_size * mj / (sqrtf(vj) / s.bc2_sqrt + s.eps);
        if (m[j] != mj || v[j] != vj || p[j] != pj || act[j] != pj) {
            CHECK_MSG(0, "element %zu differs", j);
            break;
        }
    }
    ops->adamw(p2, NULL, g, m2, v2, n, &s);   /* no compute copy */
    CHECK(memcmp(p, p2, n * 4) == 0);
    free(p); free(g); free(m); free(v); free(p2); free(m2); free(v2); free(act);
}

int main(void)
{
    ops = qw_ops_cpu();
    PLAN(14);
    RUN(gemm_all_transposes_and_splits);
    RUN(embedding);
    RUN(rmsnorm);
    RUN(qk_norm_rope);
    RUN(attention_small_full_fd);
    RUN(attention_multiple_blocks);
    RUN(swiglu);
    RUN(moe_route);
    RUN(moe_aux_stats_and_dispatch);
    RUN(row_ops);
    RUN(cross_entropy);
    RUN(memory_stats_and_conversions);
    RUN(sumsq_fp64_fixed_order);
    RUN(adamw_op);
    return qwtest_finish();
}
