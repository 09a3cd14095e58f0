/* vision.c — the Qwen3-VL vision tower on the CPU, fp32 (qw/vision.h). */
#include "qw/vision.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qw/cli.h"
#include "qw/ops.h"

#define LN_EPS 1e-6f

typedef struct {   /* one block's weights (or gradients) */
    float *n1w, *n1b, *n2w, *n2b, *qkv_w, *qkv_b, *proj_w, *proj_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} blk_w;

typedef struct {   /* a merger's weights (or gradients) */
    float *nw, *nb, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} mrg_w;

typedef struct {   /* a block's saved activations */
    float *x;                  /* input [S,Hv] */
    float *ln1, *mu1, *rs1;    /* [S,Hv], [S], [S] */
    float *qkv;                /* [S,3Hv], q and k after RoPE */
    float *att;                /* [S,Hv] */
    float *xm;                 /* after the attention residual [S,Hv] */
    float *ln2, *mu2, *rs2;
    float *h1, *g1;            /* fc1 output and its GELU [S,Iv] */
} blk_act;

typedef struct {   /* a merger's saved activations (rows R = S/4, width M = 4Hv) */
    float *in;                 /* its input as [S,Hv] (not owned) */
    float *ln, *mu, *rs;       /* [S,Hv] or [R,M]; stats per LN row */
    float *h1, *g1;            /* [R,M] */
    float *out;                /* [R,O] */
} mrg_act;

struct qw_vision {
    const qw_params *P;
    const qw_ops *ops;
    int S, R, Hv, Iv, O, M, nh, hd, depth, nds, K;   /* K = C·tp·p·p */
    int ds[8];
    int nseg, *seg;            /* attention segments: [nseg+1] starts */
    int maxL;
    int32_t *pidx;             /* [S,4] pos_embed rows */
    float *pw;                 /* [S,4] their weights */
    float *cs, *sn;            /* 2-D RoPE [S, hd/2] */
    float *pix;                /* [S,K] */
    float *x0;                 /* embedded patches [S,Hv] */
    float *xf;                 /* the last block's output [S,Hv] */
    blk_act *a;                /* [depth] */
    mrg_act mm, *md;           /* merger, DeepStack [nds] */
    float *scr, *scr2;         /* attention scratch [maxL²] ×2 */
    float *t_s, *t_i, *t_m, *t_m2;   /* backward scratch: [S,3Hv], [S,max(Iv,Hv)], [S,Hv] ×2 */
};

static float *wp(const qw_params *P, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static float *wp(const qw_params *P, const char *fmt, ...)
{
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const qw_param *p = qw_params_find(P, name);
    return p ? P->data + p->offset : NULL;
}

static void blk_views(const qw_params *P, int i, blk_w *w)
{
    const char *v = "model.visual.blocks";
    w->n1w = wp(P, "%s.%d.norm1.weight", v, i), w->n1b = wp(P, "%s.%d.norm1.bias", v, i);
    w->n2w = wp(P, "%s.%d.norm2.weight", v, i), w->n2b = wp(P, "%s.%d.norm2.bias", v, i);
    w->qkv_w = wp(P, "%s.%d.attn.qkv.weight", v, i), w->qkv_b = wp(P, "%s.%d.attn.qkv.bias", v, i);
    w->proj_w = wp(P, "%s.%d.attn.proj.weight", v, i), w->proj_b = wp(P, "%s.%d.attn.proj.bias", v, i);
    w->fc1_w = wp(P, "%s.%d.mlp.linear_fc1.weight", v, i), w->fc1_b = wp(P, "%s.%d.mlp.linear_fc1.bias", v, i);
    w->fc2_w = wp(P, "%s.%d.mlp.linear_fc2.weight", v, i), w->fc2_b = wp(P, "%s.%d.mlp.linear_fc2.bias", v, i);
}

static void mrg_views(const qw_params *P, int j, mrg_w *w)
{
    char m[64];
    if (j < 0) snprintf(m, sizeof m, "merger");
    else snprintf(m, sizeof m, "deepstack_merger_list.%d", j);
    w->nw = wp(P, "model.visual.%s.norm.weight", m), w->nb = wp(P, "model.visual.%s.norm.bias", m);
    w->fc1_w = wp(P, "model.visual.%s.linear_fc1.weight", m), w->fc1_b = wp(P, "model.visual.%s.linear_fc1.bias", m);
    w->fc2_w = wp(P, "model.visual.%s.linear_fc2.weight", m), w->fc2_b = wp(P, "model.visual.%s.linear_fc2.bias", m);
}

/* ---- building ---- */

/* torch.linspace(0, end, n) in fp32 (CPU): the first half counts up from
 * 0, the second down from end. */
static float linspace_at(float end, int n, int i)
{
    if (n == 1) return 0;
    float step = end / (float)(n - 1);
    return i < n / 2 ? step * (float)i : end - step * (float)(n - 1 - i);
}

int qw_vision_new(const qw_params *P, int n, const int32_t *thw, const char *what, qw_vision **out)
{
    const qw_config *c = &P->cfg;
    *out = NULL;
    if (c->vision.depth <= 0) return qw_error(QW_EXIT_DATA, "%s: the model (%s) has no vision tower", what, c->model_type);
    if (P->ops && strcmp(P->ops->name, "cpu"))
        return qw_error(QW_EXIT_FAIL, "%s: the vision tower runs on the CPU only (parameters on %s)", what, P->ops->name);
    if (n < 1) return qw_error(QW_EXIT_DATA, "%s: no images", what);
    int64_t S = 0;
    int maxL = 0, nseg = 0;
    for (int i = 0; i < n; i++) {
        int t = thw[3 * i], h = thw[3 * i + 1], w = thw[3 * i + 2];
        if (t < 1 || h < 2 || w < 2 || h % 2 || w % 2 || (int64_t)h * w > 1 << 20 || t > 1 << 12)
            return qw_error(QW_EXIT_DATA, "%s: image_grid_thw[%d] = (%d, %d, %d): t must be >= 1 and h, w even "
                            "and >= 2", what, i, t, h, w);
        S += (int64_t)t * h * w;
        nseg += t;
        if (h * w > maxL) maxL = h * w;
        if (S > 1 << 24) return qw_error(QW_EXIT_DATA, "%s: more than %d patches", what, 1 << 24);
    }
    qw_vision *v = qw_calloc(1, sizeof *v);
    v->P = P, v->ops = qw_ops_cpu();
    v->S = (int)S, v->R = (int)(S / 4), v->Hv = c->vision.hidden_size, v->Iv = c->vision.intermediate_size;
    v->O = c->vision.out_hidden_size, v->M = 4 * v->Hv, v->nh = c->vision.num_heads, v->hd = v->Hv / v->nh;
    v->depth = c->vision.depth, v->nds = c->vision.n_deepstack;
    memcpy(v->ds, c->vision.deepstack, sizeof v->ds);
    v->K = c->vision.in_channels * c->vision.temporal_patch_size * c->vision.patch_size * c->vision.patch_size;
    v->maxL = maxL, v->nseg = nseg;
    v->seg = qw_malloc((nseg + 1) * sizeof *v->seg);
    size_t Sz = (size_t)S, Hv = v->Hv, Iv = v->Iv, M = v->M, R = v->R, O = v->O, half = v->hd / 2;
    v->pidx = qw_malloc(Sz * 4 * sizeof *v->pidx);
    v->pw = qw_malloc(Sz * 4 * sizeof *v->pw);
    v->cs = qw_malloc(Sz * half * sizeof *v->cs);
    v->sn = qw_malloc(Sz * half * sizeof *v->sn);
    /* positions: pos_embed corners and RoPE angles of every patch */
    int side = (int)lround(sqrt((double)c->vision.num_position_embeddings)), q4 = v->hd / 4;
    float inv[q4 > 0 ? q4 : 1];
    for (int k = 0; k < q4; k++)
        inv[k] = (float)(1.0 / pow(c->vision.rope_theta, (double)((float)(2 * k) / (float)(2 * q4))));
    int s = 0, g = 0;
    for (int i = 0; i < n; i++) {
        int t = thw[3 * i], h = thw[3 * i + 1], w = thw[3 * i + 2];
        for (int f = 0; f < t; f++) {
            v->seg[g++] = s;
            for (int p = 0; p < h * w; p++, s++) {
                int blk = p / 4, qd = p % 4, r = blk / (w / 2) * 2 + qd / 2, col = blk % (w / 2) * 2 + qd % 2;
                float hi = linspace_at((float)(side - 1), h, r), wi = linspace_at((float)(side - 1), w, col);
                int hf = (int)hi, wf = (int)wi;
                int hc = hf + 1 < side ? hf + 1 : side - 1, wc = wf + 1 < side ? wf + 1 : side - 1;
                float dh = hi - (float)hf, dw = wi - (float)wf;
                int32_t *ix = v->pidx + (size_t)s * 4;
                float *pw = v->pw + (size_t)s * 4;
                ix[0] = hf * side + wf, ix[1] = hf * side + wc, ix[2] = hc * side + wf, ix[3] = hc * side + wc;
                pw[0] = (1 - dh) * (1 - dw), pw[1] = (1 - dh) * dw, pw[2] = dh * (1 - dw), pw[3] = dh * dw;
                for (int k = 0; k < q4; k++) {
                    float ar = (float)r * inv[k], ac = (float)col * inv[k];
                    v->cs[(size_t)s * half + k] = cosf(ar), v->sn[(size_t)s * half + k] = sinf(ar);
                    v->cs[(size_t)s * half + q4 + k] = cosf(ac), v->sn[(size_t)s * half + q4 + k] = sinf(ac);
                }
            }
        }
    }
    v->seg[nseg] = s;
    /* activations */
    v->pix = qw_malloc(Sz * v->K * sizeof(float));
    v->x0 = qw_malloc(Sz * Hv * sizeof(float));
    v->a = qw_calloc(v->depth, sizeof *v->a);
    for (int b = 0; b < v->depth; b++) {
        blk_act *A = &v->a[b];
        A->ln1 = qw_malloc(Sz * Hv * 4); A->mu1 = qw_malloc(Sz * 4); A->rs1 = qw_malloc(Sz * 4);
        A->qkv = qw_malloc(Sz * 3 * Hv * 4); A->att = qw_malloc(Sz * Hv * 4); A->xm = qw_malloc(Sz * Hv * 4);
        A->ln2 = qw_malloc(Sz * Hv * 4); A->mu2 = qw_malloc(Sz * 4); A->rs2 = qw_malloc(Sz * 4);
        A->h1 = qw_malloc(Sz * Iv * 4); A->g1 = qw_malloc(Sz * Iv * 4);
    }
    v->a[0].x = v->x0;
    for (int b = 1; b < v->depth; b++) v->a[b].x = qw_malloc(Sz * Hv * 4);
    v->xf = qw_malloc(Sz * Hv * 4);
    v->md = qw_calloc(v->nds > 0 ? v->nds : 1, sizeof *v->md);
    for (int j = -1; j < v->nds; j++) {
        mrg_act *A = j < 0 ? &v->mm : &v->md[j];
        A->ln = qw_malloc(Sz * Hv * 4); A->mu = qw_malloc(Sz * 4); A->rs = qw_malloc(Sz * 4);
        A->h1 = qw_malloc(R * M * 4); A->g1 = qw_malloc(R * M * 4); A->out = qw_malloc(R * O * 4);
    }
    v->scr = qw_malloc((size_t)maxL * maxL * 4);
    v->scr2 = qw_malloc((size_t)maxL * maxL * 4);
    size_t big = Iv > Hv ? Iv : Hv;
    v->t_s = qw_malloc(Sz * 3 * Hv * 4);
    v->t_i = qw_malloc(Sz * big * 4);
    v->t_m = qw_malloc(Sz * Hv * 4);
    v->t_m2 = qw_malloc(Sz * Hv * 4);
    *out = v;
    return 0;
}

void qw_vision_free(qw_vision *v)
{
    if (!v) return;
    for (int b = 0; b < v->depth; b++) {
        blk_act *A = &v->a[b];
        if (b) free(A->x);
        free(A->ln1); free(A->mu1); free(A->rs1); free(A->qkv); free(A->att); free(A->xm);
        free(A->ln2); free(A->mu2); free(A->rs2); free(A->h1); free(A->g1);
    }
    for (int j = -1; j < v->nds; j++) {
        mrg_act *A = j < 0 ? &v->mm : &v->md[j];
        free(A->ln); free(A->mu); free(A->rs); free(A->h1); free(A->g1); free(A->out);
    }
    free(v->a); free(v->md); free(v->seg); free(v->pidx); free(v->pw); free(v->cs); free(v->sn);
    free(v->pix); free(v->x0); free(v->xf); free(v->scr); free(v->scr2);
    free(v->t_s); free(v->t_i); free(v->t_m); free(v->t_m2);
    free(v);
}

int qw_vision_patches(const qw_vision *v) { return v->S; }
int qw_vision_merged_rows(const qw_vision *v) { return v->R; }
const float *qw_vision_merged(const qw_vision *v) { return v->mm.out; }
const float *qw_vision_deepstack(const qw_vision *v, int j) { return v->md[j].out; }
const float *qw_vision_embedded(const qw_vision *v) { return v->x0; }

/* ---- pieces ---- */

/* y[n,out] = x[n,in]·Wᵀ + b */
static void linear(const qw_vision *v, float *y, const float *x, const float *W, const float *b, int n, int out, int in)
{
    v->ops->gemm(0, 1, n, out, in, 1, x, in, W, in, 0, y, out, 0);
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) y[(size_t)i * out + o] += b[o];
}

/* dx[n,in] (+)= dy·W (dx may be NULL); dW += dyᵀ·x; db += Σ rows of dy */
static void linear_bwd(const qw_vision *v, float *dx, float *dW, float *db, const float *dy, const float *x,
                       const float *W, int n, int out, int in, int acc)
{
    if (dx) v->ops->gemm(0, 0, n, in, out, 1, dy, out, W, in, acc ? 1 : 0, dx, in, 0);
    v->ops->gemm(1, 0, out, in, n, 1, dy, out, x, in, 1, dW, in, 1);
    #pragma omp parallel for schedule(static)
    for (int o = 0; o < out; o++) {
        double s = 0;
        for (int i = 0; i < n; i++) s += dy[(size_t)i * out + o];
        db[o] += (float)s;
    }
}

static void layernorm(float *y, float *mu, float *rs, const float *x, const float *w, const float *b, int rows, int dim)
{
    #pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim;
        double m = 0, var = 0;
        for (int j = 0; j < dim; j++) m += xr[j];
        m /= dim;
        for (int j = 0; j < dim; j++) var += (xr[j] - m) * (xr[j] - m);
        var /= dim;
        float rstd = (float)(1 / sqrt(var + LN_EPS)), mf = (float)m;
        mu[r] = mf, rs[r] = rstd;
        for (int j = 0; j < dim; j++) y[(size_t)r * dim + j] = (xr[j] - mf) * rstd * w[j] + b[j];
    }
}

/* dx (+)= ∂/∂x; dw, db += */
static void layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *mu,
                          const float *rs, const float *w, int rows, int dim, int acc)
{
    #pragma omp parallel for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * dim, *g = dy + (size_t)r * dim;
        double s1 = 0, s2 = 0;
        for (int j = 0; j < dim; j++) {
            double xh = (xr[j] - mu[r]) * rs[r], gx = (double)g[j] * w[j];
            s1 += gx, s2 += gx * xh;
        }
        s1 /= dim, s2 /= dim;
        for (int j = 0; j < dim; j++) {
            double xh = (xr[j] - mu[r]) * rs[r], gx = (double)g[j] * w[j];
            float d = (float)(rs[r] * (gx - s1 - xh * s2));
            dx[(size_t)r * dim + j] = acc ? dx[(size_t)r * dim + j] + d : d;
        }
    }
    #pragma omp parallel for schedule(static)
    for (int j = 0; j < dim; j++) {
        double sw = 0, sb = 0;
        for (int r = 0; r < rows; r++) {
            double g = dy[(size_t)r * dim + j];
            sw += g * (x[(size_t)r * dim + j] - mu[r]) * rs[r], sb += g;
        }
        dw[j] += (float)sw, db[j] += (float)sb;
    }
}

#define GELU_K 0.7978845608028654f   /* sqrt(2/pi) */

static void gelu_fwd(float *y, const float *x, size_t n, int tanh_form)
{
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float a = x[i];
        y[i] = tanh_form ? 0.5f * a * (1 + tanhf(GELU_K * (a + 0.044715f * a * a * a)))
                         : 0.5f * a * (1 + erff(a * 0.70710678118654752f));
    }
}

/* dx = dy·gelu'(x) (dx may alias dy) */
static void gelu_bwd(float *dx, const float *dy, const float *x, size_t n, int tanh_form)
{
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        double a = x[i], d;
        if (tanh_form) {
            double t = tanh(GELU_K * (a + 0.044715 * a * a * a));
            d = 0.5 * (1 + t) + 0.5 * a * (1 - t * t) * GELU_K * (1 + 3 * 0.044715 * a * a);
        } else {
            d = 0.5 * (1 + erf(a * 0.70710678118654752)) + a * exp(-0.5 * a * a) * 0.3989422804014327;
        }
        dx[i] = (float)(dy[i] * d);
    }
}

/* RoPE on the q and k thirds of qkv [S,3Hv] (inverse: the transposed rotation) */
static void rope2d(const qw_vision *v, float *qkv, int inverse)
{
    int Hv = v->Hv, hd = v->hd, half = hd / 2;
    float sg = inverse ? -1.0f : 1.0f;
    #pragma omp parallel for schedule(static)
    for (int s = 0; s < v->S; s++) {
        const float *c = v->cs + (size_t)s * half, *sn = v->sn + (size_t)s * half;
        for (int part = 0; part < 2; part++)
            for (int h = 0; h < v->nh; h++) {
                float *x = qkv + (size_t)s * 3 * Hv + part * Hv + h * hd;
                for (int j = 0; j < half; j++) {
                    float a = x[j], b = x[j + half];
                    x[j] = a * c[j] - sg * b * sn[j];
                    x[j + half] = b * c[j] + sg * a * sn[j];
                }
            }
    }
}

/* softmax over rows of P [L,L] in place */
static void softmax_rows(float *P, int L)
{
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < L; i++) {
        float *p = P + (size_t)i * L, mx = p[0];
        for (int j = 1; j < L; j++) mx = p[j] > mx ? p[j] : mx;
        double sum = 0;
        for (int j = 0; j < L; j++) sum += (p[j] = expf(p[j] - mx));
        float inv = (float)(1 / sum);
        for (int j = 0; j < L; j++) p[j] *= inv;
    }
}

static void attention(const qw_vision *v, float *att, const float *qkv)
{
    int Hv = v->Hv, hd = v->hd, ld = 3 * Hv;
    float scale = 1 / sqrtf((float)hd);
    for (int g = 0; g < v->nseg; g++) {
        int s0 = v->seg[g], L = v->seg[g + 1] - s0;
        for (int h = 0; h < v->nh; h++) {
            const float *q = qkv + (size_t)s0 * ld + h * hd;
            v->ops->gemm(0, 1, L, L, hd, scale, q, ld, q + Hv, ld, 0, v->scr, L, 0);
            softmax_rows(v->scr, L);
            v->ops->gemm(0, 0, L, hd, L, 1, v->scr, L, q + 2 * Hv, ld, 0, att + (size_t)s0 * Hv + h * hd, Hv, 0);
        }
    }
}

/* dqkv [S,3Hv] (overwritten) from datt [S,Hv] */
static void attention_bwd(const qw_vision *v, float *dqkv, const float *datt, const float *qkv)
{
    int Hv = v->Hv, hd = v->hd, ld = 3 * Hv;
    float scale = 1 / sqrtf((float)hd);
    for (int g = 0; g < v->nseg; g++) {
        int s0 = v->seg[g], L = v->seg[g + 1] - s0;
        for (int h = 0; h < v->nh; h++) {
            const float *q = qkv + (size_t)s0 * ld + h * hd, *dO = datt + (size_t)s0 * Hv + h * hd;
            float *dq = dqkv + (size_t)s0 * ld + h * hd, *P = v->scr, *dP = v->scr2;
            v->ops->gemm(0, 1, L, L, hd, scale, q, ld, q + Hv, ld, 0, P, L, 0);
            softmax_rows(P, L);
            v->ops->gemm(0, 1, L, L, hd, 1, dO, Hv, q + 2 * Hv, ld, 0, dP, L, 0);
            v->ops->gemm(1, 0, L, hd, L, 1, P, L, dO, Hv, 0, dq + 2 * Hv, ld, 0);
            #pragma omp parallel for schedule(static)
            for (int i = 0; i < L; i++) {
                float *p = P + (size_t)i * L, *d = dP + (size_t)i * L;
                double D = 0;
                for (int j = 0; j < L; j++) D += (double)p[j] * d[j];
                for (int j = 0; j < L; j++) d[j] = p[j] * (d[j] - (float)D);
            }
            v->ops->gemm(0, 0, L, hd, L, scale, dP, L, q + Hv, ld, 0, dq, ld, 0);
            v->ops->gemm(1, 0, L, hd, L, scale, dP, L, q, ld, 0, dq + Hv, ld, 0);
        }
    }
}

/* ---- forward ---- */

static void merger_fwd(const qw_vision *v, mrg_act *A, const mrg_w *W, const float *x, int post)
{
    A->in = (float *)x;
    if (post) layernorm(A->ln, A->mu, A->rs, x, W->nw, W->nb, v->R, v->M);
    else layernorm(A->ln, A->mu, A->rs, x, W->nw, W->nb, v->S, v->Hv);
    linear(v, A->h1, A->ln, W->fc1_w, W->fc1_b, v->R, v->M, v->M);
    gelu_fwd(A->g1, A->h1, (size_t)v->R * v->M, 0);
    linear(v, A->out, A->g1, W->fc2_w, W->fc2_b, v->R, v->O, v->M);
}

void qw_vision_forward(qw_vision *v, const float *pixels)
{
    const qw_params *P = v->P;
    int S = v->S, Hv = v->Hv, Iv = v->Iv;
    memcpy(v->pix, pixels, (size_t)S * v->K * sizeof *pixels);
    linear(v, v->x0, v->pix, wp(P, "model.visual.patch_embed.proj.weight"), wp(P, "model.visual.patch_embed.proj.bias"),
           S, Hv, v->K);
    const float *E = wp(P, "model.visual.pos_embed.weight");
    #pragma omp parallel for schedule(static)
    for (int s = 0; s < S; s++) {
        const int32_t *ix = v->pidx + (size_t)s * 4;
        const float *w = v->pw + (size_t)s * 4;
        float *x = v->x0 + (size_t)s * Hv;
        for (int j = 0; j < Hv; j++) {
            float pe = E[(size_t)ix[0] * Hv + j] * w[0] + E[(size_t)ix[1] * Hv + j] * w[1];
            pe += E[(size_t)ix[2] * Hv + j] * w[2];
            pe += E[(size_t)ix[3] * Hv + j] * w[3];
            x[j] += pe;
        }
    }
    for (int b = 0; b < v->depth; b++) {
        blk_act *A = &v->a[b];
        blk_w W;
        blk_views(P, b, &W);
        float *y = b + 1 < v->depth ? v->a[b + 1].x : v->xf;
        layernorm(A->ln1, A->mu1, A->rs1, A->x, W.n1w, W.n1b, S, Hv);
        linear(v, A->qkv, A->ln1, W.qkv_w, W.qkv_b, S, 3 * Hv, Hv);
        rope2d(v, A->qkv, 0);
        attention(v, A->att, A->qkv);
        linear(v, A->xm, A->att, W.proj_w, W.proj_b, S, Hv, Hv);
        for (size_t i = 0; i < (size_t)S * Hv; i++) A->xm[i] += A->x[i];
        layernorm(A->ln2, A->mu2, A->rs2, A->xm, W.n2w, W.n2b, S, Hv);
        linear(v, A->h1, A->ln2, W.fc1_w, W.fc1_b, S, Iv, Hv);
        gelu_fwd(A->g1, A->h1, (size_t)S * Iv, 1);
        linear(v, y, A->g1, W.fc2_w, W.fc2_b, S, Hv, Iv);
        for (size_t i = 0; i < (size_t)S * Hv; i++) y[i] += A->xm[i];
        for (int j = 0; j < v->nds; j++)
            if (v->ds[j] == b) {
                mrg_w M;
                mrg_views(P, j, &M);
                merger_fwd(v, &v->md[j], &M, y, 1);
            }
    }
    mrg_w M;
    mrg_views(P, -1, &M);
    merger_fwd(v, &v->mm, &M, v->xf, 0);
}

/* ---- backward ---- */

/* dx [S,Hv] (+)= ∂/∂(merger input) from dout [R,O]; weight gradients into G */
static void merger_bwd(qw_vision *v, const mrg_act *A, const mrg_w *W, const mrg_w *G, const float *dout, float *dx,
                       int post, int acc)
{
    int R = v->R, M = v->M, O = v->O;
    float *dg = v->t_i, *dln = v->t_m2;   /* [R,M] each (= [S,Hv]) */
    linear_bwd(v, dg, G->fc2_w, G->fc2_b, dout, A->g1, W->fc2_w, R, O, M, 0);
    gelu_bwd(dg, dg, A->h1, (size_t)R * M, 0);
    linear_bwd(v, dln, G->fc1_w, G->fc1_b, dg, A->ln, W->fc1_w, R, M, M, 0);
    if (post) layernorm_bwd(dx, G->nw, G->nb, dln, A->in, A->mu, A->rs, W->nw, R, M, acc);
    else layernorm_bwd(dx, G->nw, G->nb, dln, A->in, A->mu, A->rs, W->nw, v->S, v->Hv, acc);
}

void qw_vision_backward(qw_vision *v, const float *d_merged, const float *const *d_deepstack, qw_params *G)
{
    const qw_params *P = v->P;
    int S = v->S, Hv = v->Hv, Iv = v->Iv;
    size_t SH = (size_t)S * Hv;
    float *dx = v->t_m;   /* ∂/∂(current block output) [S,Hv] */
    mrg_w MW, MG;
    mrg_views(P, -1, &MW);
    mrg_views(G, -1, &MG);
    if (d_merged) merger_bwd(v, &v->mm, &MW, &MG, d_merged, dx, 0, 0);
    else memset(dx, 0, SH * sizeof *dx);
    float *dxm = qw_malloc(SH * sizeof *dxm), *dln = qw_malloc(SH * sizeof *dln);
    for (int b = v->depth - 1; b >= 0; b--) {
        for (int j = 0; j < v->nds; j++)
            if (v->ds[j] == b && d_deepstack && d_deepstack[j]) {
                mrg_w W, Gj;
                mrg_views(P, j, &W);
                mrg_views(G, j, &Gj);
                merger_bwd(v, &v->md[j], &W, &Gj, d_deepstack[j], dx, 1, 1);
            }
        blk_act *A = &v->a[b];
        blk_w W, Gb;
        blk_views(P, b, &W);
        blk_views(G, b, &Gb);
        /* MLP: y = xm + fc2(gelu(fc1(LN2(xm)))) */
        float *dh = v->t_i;
        linear_bwd(v, dh, Gb.fc2_w, Gb.fc2_b, dx, A->g1, W.fc2_w, S, Hv, Iv, 0);
        gelu_bwd(dh, dh, A->h1, (size_t)S * Iv, 1);
        linear_bwd(v, dln, Gb.fc1_w, Gb.fc1_b, dh, A->ln2, W.fc1_w, S, Iv, Hv, 0);
        memcpy(dxm, dx, SH * sizeof *dxm);
        layernorm_bwd(dxm, Gb.n2w, Gb.n2b, dln, A->xm, A->mu2, A->rs2, W.n2w, S, Hv, 1);
        /* attention: xm = x + proj(attn(rope(qkv(LN1(x))))) */
        float *datt = v->t_m2, *dqkv = v->t_s;
        linear_bwd(v, datt, Gb.proj_w, Gb.proj_b, dxm, A->att, W.proj_w, S, Hv, Hv, 0);
        attention_bwd(v, dqkv, datt, A->qkv);
        rope2d(v, dqkv, 1);
        linear_bwd(v, dln, Gb.qkv_w, Gb.qkv_b, dqkv, A->ln1, W.qkv_w, S, 3 * Hv, Hv, 0);
        memcpy(dx, dxm, SH * sizeof *dx);
        layernorm_bwd(dx, Gb.n1w, Gb.n1b, dln, A->x, A->mu1, A->rs1, W.n1w, S, Hv, 1);
    }
    free(dxm);
    free(dln);
    /* position embedding and patch embedding */
    float *dE = wp(G, "model.visual.pos_embed.weight");
    for (int s = 0; s < S; s++) {
        const int32_t *ix = v->pidx + (size_t)s * 4;
        const float *w = v->pw + (size_t)s * 4, *g = dx + (size_t)s * Hv;
        for (int k = 0; k < 4; k++)
            for (int j = 0; j < Hv; j++) dE[(size_t)ix[k] * Hv + j] += w[k] * g[j];
    }
    linear_bwd(v, NULL, wp(G, "model.visual.patch_embed.proj.weight"), wp(G, "model.visual.patch_embed.proj.bias"), dx,
               v->pix, NULL, S, Hv, v->K, 0);
}
