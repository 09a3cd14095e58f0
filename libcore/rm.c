/* rm.c — the reward model's value head and Bradley–Terry loss (qw/rm.h). */
#include "qw/rm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qw/cli.h"

int qw_rm_pool(const int32_t *ids, int n, int pad)
{
    if (pad < 0) return n - 1;
    for (int t = n - 1; t >= 0; t--)
        if (ids[t] != pad) return t;
    return 0;
}

/* The H values at device or host pointer src of P's arena. */
static void get(const qw_params *P, float *dst, const float *src, int H)
{
    if (P->ops) P->ops->download(dst, src, (size_t)H * sizeof *dst);
    else memcpy(dst, src, (size_t)H * sizeof *dst);
}

static int need_score(const qw_params *P)
{
    if (!P->score) return qw_error(QW_EXIT_DATA, "the model has no score.weight: it is not a reward model");
    return 0;
}

int qw_rm_head_forward(const qw_params *P, const float *h, int n, float *r)
{
    int rc = need_score(P), H = P->cfg.hidden_size;
    if (rc) return rc;
    float *w = qw_malloc((size_t)H * sizeof *w);
    get(P, w, P->score, H);
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < H; j++) s += (double)w[j] * h[(size_t)i * H + j];
        r[i] = (float)s;
    }
    free(w);
    return 0;
}

int qw_rm_head_backward(const qw_params *P, qw_params *G, const float *h, const float *dr, int n, float *dh)
{
    int rc = need_score(P), H = P->cfg.hidden_size;
    if (rc) return rc;
    if (!G->score) return qw_error(QW_EXIT_FAIL, "the gradient arena has no score.weight");
    float *w = qw_malloc(2 * (size_t)H * sizeof *w), *g = w + H;
    get(P, w, P->score, H);
    get(G, g, G->score, H);
    for (int j = 0; j < H; j++) {
        double s = 0;
        for (int i = 0; i < n; i++) s += (double)dr[i] * h[(size_t)i * H + j];
        g[j] += (float)s;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < H; j++) dh[(size_t)i * H + j] = dr[i] * w[j];
    if (G->ops) G->ops->upload(G->score, g, (size_t)H * sizeof *g);
    else memcpy(G->score, g, (size_t)H * sizeof *g);
    free(w);
    return 0;
}

int qw_rm_forward(qw_model *m, const qw_params *P, const qw_batch *b, const int32_t *idx, int n, float *h, float *r)
{
    int rc = need_score(P);
    if (!rc) rc = qw_model_forward_hidden(m, b, idx, n, h, NULL);
    if (!rc) rc = qw_rm_head_forward(P, h, n, r);
    return rc;
}

/* −log σ(z), stably */
static double softplus_neg(double z) { return z >= 0 ? log1p(exp(-z)) : -z + log1p(exp(z)); }

void qw_rm_bt_loss(const float *c, const float *r, const float *margin, int n, long P, double center, float *dc,
                   float *dr, qw_rm_sums *s)
{
    for (int i = 0; i < n; i++) {
        double z = (double)c[i] - r[i] - (margin ? margin[i] : 0), sum = (double)c[i] + r[i];
        double sig_neg = 1 / (1 + exp(z));   /* σ(−z) = −∂(−log σ(z))/∂z */
        s->loss += (softplus_neg(z) + center * sum * sum) / P;
        dc[i] = (float)((-sig_neg + 2 * center * sum) / P);
        dr[i] = (float)((sig_neg + 2 * center * sum) / P);
        s->correct += c[i] > r[i];
        s->margin += (double)c[i] - r[i];
        s->chosen += c[i];
        s->rejected += r[i];
    }
}
