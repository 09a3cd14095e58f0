/* test_model.c — the whole model against a naive double-precision
 * reference written here (forward: logits, loss, aux loss; backward: every
 * parameter's gradient against central differences of the reference), on
 * tiny dense and MoE configs; document isolation; the RoPE tables against
 * the golden fixtures.
 *
 *   test_model                          run the unit tests
 *   test_model --compare [--tol L,S,G] EXPECTED GOT
 *       compare qw-eval forward output with a golden expected.safetensors
 *       (tests/tools/test_golden.sh); limits: logits max|diff| <= L of
 *       max|logits| (1e-4), loss/aux_loss |diff| <= S (1e-5), every
 *       gradient relative error <= G (1e-3); looser for bf16 (tests/gpu/tools.sh)
 */
#include "qwtest.h"
#include "qw/cli.h"
#include "qw/config.h"
#include "qw/model.h"
#include "qw/objective.h"
#include "qw/params.h"
#include "qw/rm.h"
#include "qw/st.h"

#include <stdint.h>

/* ------------------------------------------------ the double reference */

typedef struct {
    const qw_params *P;
    double *w;                /* parameters in P's layout */
    int B, T;
    const int32_t *ids, *kvs, *tgt;
    const float *cs, *sn;     /* RoPE tables [N, d/2], as the model builds them */
    const float *coef;
    int capacity;
    double aux_coef;
    double *logits;           /* out [N,V], or NULL */
    double loss, aux;         /* out */
} ref_model;

#define RW(r, ptr) ((r)->w + ((ptr) - (r)->P->data))

static void ref_linear(double *y, const double *x, const double *W, int n, int out, int in)
{
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int j = 0; j < in; j++) s += x[(size_t)i * in + j] * W[(size_t)o * in + j];
            y[(size_t)i * out + o] = s;
        }
}

static void ref_norm(double *y, const double *x, const double *w, int rows, int dim, double eps)
{
    for (int r = 0; r < rows; r++) {
        double ss = 0;
        for (int j = 0; j < dim; j++) ss += x[r * dim + j] * x[r * dim + j];
        double rs = 1 / sqrt(ss / dim + eps);
        for (int j = 0; j < dim; j++) y[r * dim + j] = w[j] * x[r * dim + j] * rs;
    }
}

static void ref_rope(double *x, const ref_model *r, int heads, int d)
{
    int N = r->B * r->T, half = d / 2;
    for (int i = 0; i < N; i++)
        for (int h = 0; h < heads; h++)
            for (int j = 0; j < half; j++) {
                double *v = x + ((size_t)i * heads + h) * d, a = v[j], b = v[j + half];
                double c = r->cs[i * half + j], s = r->sn[i * half + j];
                v[j] = a * c - b * s;
                v[j + half] = b * c + a * s;
            }
}

/* y += (silu(x·Wgᵀ) ⊙ x·Wuᵀ)·Wdᵀ · scale for one token */
static void ref_mlp(double *y, const double *x, const double *Wg, const double *Wu, const double *Wd,
                    int I, int H, double scale)
{
    double *a = qw_malloc(I * sizeof *a), g, u;
    for (int i = 0; i < I; i++) {
        g = u = 0;
        for (int j = 0; j < H; j++) g += x[j] * Wg[(size_t)i * H + j], u += x[j] * Wu[(size_t)i * H + j];
        a[i] = g / (1 + exp(-g)) * u;
    }
    for (int j = 0; j < H; j++) {
        double s = 0;
        for (int i = 0; i < I; i++) s += a[i] * Wd[(size_t)j * I + i];
        y[j] += scale * s;
    }
    free(a);
}

/* Returns loss + aux_coef·aux; fills r->loss, r->aux, r->logits. */
static double ref_forward(ref_model *r)
{
    const qw_config *c = &r->P->cfg;
    const qw_params *P = r->P;
    int N = r->B * r->T, T = r->T, H = c->hidden_size, nh = c->num_attention_heads, nkv = c->num_key_value_heads;
    int d = c->head_dim, Q = nh * d, KV = nkv * d, V = c->vocab_size, E = c->num_experts, k = c->num_experts_per_tok;
    double eps = c->rms_norm_eps;
    double *x = qw_malloc((size_t)N * H * 8), *xn = qw_malloc((size_t)N * H * 8), *q = qw_malloc((size_t)N * Q * 8);
    double *kk = qw_malloc((size_t)N * KV * 8), *v = qw_malloc((size_t)N * KV * 8), *o = qw_malloc((size_t)N * Q * 8);
    double *y = qw_malloc((size_t)N * H * 8), *p = qw_malloc(T * 8);
    double *lg = qw_malloc((size_t)N * (V > E ? V : E) * 8), *prob = qw_malloc((E + 1) * 8);
    double *count = qw_calloc(E + 1, 8), *psum = qw_calloc(E + 1, 8);
    int *seen = qw_calloc(E + 1, sizeof *seen), n_moe = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < H; j++) x[i * H + j] = RW(r, P->embed)[(size_t)r->ids[i] * H + j];
    for (int l = 0; l < c->num_hidden_layers; l++) {
        const qw_layer_params *L = &P->layer[l];
        ref_norm(xn, x, RW(r, L->input_norm), N, H, eps);
        ref_linear(q, xn, RW(r, L->q), N, Q, H);
        ref_linear(kk, xn, RW(r, L->k), N, KV, H);
        ref_linear(v, xn, RW(r, L->v), N, KV, H);
        ref_norm(q, q, RW(r, L->q_norm), N * nh, d, eps);
        ref_norm(kk, kk, RW(r, L->k_norm), N * nkv, d, eps);
        ref_rope(q, r, nh, d);
        ref_rope(kk, r, nkv, d);
        for (int i = 0; i < N; i++)
            for (int h = 0; h < nh; h++) {
                int b = i / T, kh = h / (nh / nkv), lo = b * T + r->kvs[i];
                double mx = -INFINITY, sum = 0;
                for (int j = lo; j <= i; j++) {
                    double s = 0;
                    for (int t = 0; t < d; t++) s += q[(size_t)i * Q + h * d + t] * kk[(size_t)j * KV + kh * d + t];
                    p[j - lo] = s / sqrt(d);
                    mx = fmax(mx, p[j - lo]);
                }
                for (int j = lo; j <= i; j++) sum += p[j - lo] = exp(p[j - lo] - mx);
                for (int t = 0; t < d; t++) {
                    double s = 0;
                    for (int j = lo; j <= i; j++) s += p[j - lo] / sum * v[(size_t)j * KV + kh * d + t];
                    o[(size_t)i * Q + h * d + t] = s;
                }
            }
        ref_linear(y, o, RW(r, L->o), N, H, Q);
        for (size_t i = 0; i < (size_t)N * H; i++) x[i] += y[i];
        ref_norm(xn, x, RW(r, L->post_norm), N, H, eps);
        if (!L->is_moe) {
            for (int i = 0; i < N; i++)
                ref_mlp(x + (size_t)i * H, xn + (size_t)i * H, RW(r, L->gate), RW(r, L->up), RW(r, L->down),
                        c->intermediate_size, H, 1);
            continue;
        }
        n_moe++;
        int Ie = c->moe_intermediate_size;
        ref_linear(lg, xn, RW(r, L->router), N, E, H);
        memset(seen, 0, E * sizeof *seen);
        for (int i = 0; i < N; i++) {
            double mx = -INFINITY, sum = 0, tot = 0;
            int sel[16];
            for (int e = 0; e < E; e++) mx = fmax(mx, lg[i * E + e]);
            for (int e = 0; e < E; e++) sum += prob[e] = exp(lg[i * E + e] - mx);
            for (int e = 0; e < E; e++) psum[e] += prob[e] /= sum;
            for (int j = 0; j < k; j++) {
                sel[j] = -1;
                for (int e = 0; e < E; e++) {
                    int taken = 0;
                    for (int t = 0; t < j; t++) taken |= sel[t] == e;
                    if (!taken && (sel[j] < 0 || prob[e] > prob[sel[j]])) sel[j] = e;
                }
                tot += prob[sel[j]];
                count[sel[j]]++;
            }
            for (int j = 0; j < k; j++) {
                int e = sel[j];
                if (seen[e]++ >= r->capacity) continue;
                double wt = prob[e] / (c->norm_topk_prob ? tot : 1);
                ref_mlp(x + (size_t)i * H, xn + (size_t)i * H, RW(r, L->exp_gate) + (size_t)e * Ie * H,
                        RW(r, L->exp_up) + (size_t)e * Ie * H, RW(r, L->exp_down) + (size_t)e * H * Ie, Ie, H, wt);
            }
        }
    }
    ref_norm(xn, x, RW(r, P->final_norm), N, H, eps);
    ref_linear(lg, xn, RW(r, P->lm_head), N, V, H);
    r->loss = 0;
    for (int i = 0; i < N; i++) {
        if (r->tgt[i] < 0) continue;
        double mx = -INFINITY, sum = 0;
        for (int t = 0; t < V; t++) mx = fmax(mx, lg[(size_t)i * V + t]);
        for (int t = 0; t < V; t++) sum += exp(lg[(size_t)i * V + t] - mx);
        r->loss -= r->coef[i] * (lg[(size_t)i * V + r->tgt[i]] - mx - log(sum));
    }
    if (r->logits) memcpy(r->logits, lg, (size_t)N * V * 8);
    r->aux = 0;
    for (int e = 0; e < E; e++) r->aux += count[e] * psum[e];
    if (n_moe) r->aux *= E / ((double)n_moe * N * n_moe * N);
    free(x); free(xn); free(q); free(kk); free(v); free(o); free(y); free(p); free(lg); free(prob);
    free(count); free(psum); free(seen);
    return r->loss + r->aux_coef * r->aux;
}

/* ------------------------------------------------------------ fixtures */

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static double urand(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (double)(rng >> 11) / 4503599627370496.0 - 1.0;
}

/* A model from a config.json text, random weights, norm weights 1 ± 0.2
 * (so a norm weight that is never applied shows up). */
static void make_params(qw_params *P, const char *json, uint64_t seed)
{
    qw_config c;
    int st = qw_config_parse(json, "test", &c);
    CHECK_MSG(!st, "%s", qw_error_msg());
    st = qw_params_init(P, &c);
    CHECK_MSG(!st, "%s", qw_error_msg());
    qw_params_init_random(P, seed);
    for (int i = 0; i < P->n; i++)
        if (strstr(P->p[i].name, "norm"))
            for (int64_t j = 0; j < P->p[i].numel; j++) qw_params_ptr(P, &P->p[i])[j] = (float)(1 + 0.2 * urand());
}

static const char *DENSE =
    "{\"model_type\":\"qwen3\",\"vocab_size\":19,\"hidden_size\":16,\"intermediate_size\":20,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":6,"
    "\"max_position_embeddings\":64,\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,\"initializer_range\":0.3,"
    "\"tie_word_embeddings\":false}";
static const char *TIED_YARN =
    "{\"model_type\":\"qwen3\",\"vocab_size\":19,\"hidden_size\":12,\"intermediate_size\":20,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":1,\"head_dim\":8,"
    "\"max_position_embeddings\":16,\"rms_norm_eps\":1e-6,\"rope_theta\":100.0,\"initializer_range\":0.3,"
    "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0,\"original_max_position_embeddings\":4},"
    "\"tie_word_embeddings\":true}";
static const char *MOE_FMT =
    "{\"model_type\":\"qwen3_moe\",\"vocab_size\":19,\"hidden_size\":12,\"intermediate_size\":14,"
    "\"num_hidden_layers\":3,\"num_attention_heads\":2,\"num_key_value_heads\":2,\"head_dim\":4,"
    "\"max_position_embeddings\":64,\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,\"initializer_range\":0.3,"
    "\"tie_word_embeddings\":false,\"num_experts\":4,\"num_experts_per_tok\":2,\"moe_intermediate_size\":6,"
    "\"decoder_sparse_step\":1,\"mlp_only_layers\":[1],\"norm_topk_prob\":%s,"
    "\"output_router_logits\":true,\"router_aux_loss_coef\":0.01}";

typedef struct {
    int B, T;
    const int32_t *seg, *pos, *targets;
    const float *coef;
    double capacity_factor, aux_coef;
} scenario;

/* Forward and backward of the C model against the double reference:
 * logits, loss, aux loss, and every tensor's gradient against central
 * differences of the reference over every parameter. */
static void check_model(const qw_params *P, const scenario *s)
{
    int N = s->B * s->T, V = P->cfg.vocab_size;
    int32_t ids[64], kvs[64], tgt[64];
    float coef[64];
    for (int i = 0; i < N; i++) ids[i] = (int32_t)((urand() + 1) / 2 * V);
    qw_batch b = {.ids = ids, .pos = s->pos, .seg = s->seg, .targets = s->targets, .coef = s->coef};
    qw_model_opts o = {.capacity_factor = s->capacity_factor};
    qw_model *m;
    CHECK(!qw_model_new(qw_ops_cpu(), P, s->B, s->T, &o, &m));
    float *logits = qw_malloc((size_t)N * V * sizeof *logits), logp[64];
    qw_model_out out;
    CHECK(!qw_model_forward(m, &b, logits, logp, &out));
    qw_params G;
    CHECK(!qw_params_alloc_like(&G, P));
    CHECK(!qw_model_backward(m, &G, (float)s->aux_coef));

    /* the reference's inputs, built independently of the model */
    for (int r = 0; r < s->B; r++)
        for (int t = 0; t < s->T; t++) {
            int i = r * s->T + t;
            kvs[i] = t == 0 || (s->seg && s->seg[i] != s->seg[i - 1]) ? t : kvs[i - 1];
        }
    if (s->targets) memcpy(tgt, s->targets, N * sizeof *tgt);
    else qw_objective_next_token(ids, NULL, s->B, s->T, tgt);
    if (s->coef) memcpy(coef, s->coef, N * sizeof *coef);
    else qw_objective_mean(tgt, N, coef);
    int d = P->cfg.head_dim, half = d / 2;
    float inv[64], scale, cs[64 * 32], sn[64 * 32];
    qw_model_rope(&P->cfg, inv, &scale);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < half; j++) {
            int pos = s->pos ? s->pos[i] : i % s->T - kvs[i];
            float ang = (float)pos * inv[j];
            cs[i * half + j] = cosf(ang) * scale;
            sn[i * half + j] = sinf(ang) * scale;
        }
    int capacity = N;
    if (s->capacity_factor > 0 && P->cfg.num_experts)
        capacity = (int)ceil(s->capacity_factor * N * P->cfg.num_experts_per_tok / P->cfg.num_experts);
    ref_model r = {P, qw_malloc(P->total * sizeof(double)), s->B, s->T, ids, kvs, tgt, cs, sn, coef, capacity,
                   s->aux_coef, qw_malloc((size_t)N * V * sizeof(double)), 0, 0};
    for (size_t i = 0; i < P->total; i++) r.w[i] = P->data[i];
    ref_forward(&r);
    double lmax = 0, ldiff = 0;
    for (int i = 0; i < N * V; i++) lmax = fmax(lmax, fabs(r.logits[i])), ldiff = fmax(ldiff, fabs(logits[i] - r.logits[i]));
    CHECK_MSG(ldiff <= 1e-5 * lmax, "logits max|diff| %.3g (max %.3g)", ldiff, lmax);
    CHECK_NEAR(out.loss, r.loss, 1e-5);
    CHECK_NEAR(out.aux_loss, r.aux, 1e-5);
    int nt = 0;
    double lsum = 0;
    for (int i = 0; i < N; i++) {
        nt += tgt[i] >= 0;
        lsum -= coef[i] * logp[i];
        if (tgt[i] < 0) CHECK(logp[i] == 0);
    }
    CHECK(out.n_targets == nt);
    CHECK_NEAR(lsum, out.loss, 1e-6);
    free(r.logits);
    r.logits = NULL;

    const double h = 1e-5;
    double worst = 0;
    for (int t = 0; t < P->n; t++) {
        const qw_param *p = &P->p[t];
        double num = 0, den = 0;
        for (int64_t j = 0; j < p->numel; j++) {
            double *w = r.w + p->offset + j, w0 = *w;
            *w = w0 + h; double lp = ref_forward(&r);
            *w = w0 - h; double lm = ref_forward(&r);
            *w = w0;
            double fd = (lp - lm) / (2 * h), an = G.data[p->offset + j];
            num += (an - fd) * (an - fd), den += fd * fd;
        }
        double rel = den > 0 ? sqrt(num / den) : sqrt(num);
        worst = fmax(worst, rel);
        CHECK_MSG(rel <= 1e-3, "gradient of %s: relative error %.3g (norm %.3g)", p->name, rel, sqrt(den));
    }
    printf("  worst gradient relative error %.2g\n", worst);

    /* the backward accumulates */
    float g0 = G.data[P->layer[0].q - P->data];
    CHECK(!qw_model_backward(m, &G, (float)s->aux_coef));
    CHECK_NEAR(G.data[P->layer[0].q - P->data], 2 * g0, 1e-6 * fabs(g0) + 1e-12);
    free(r.w); free(logits);
    qw_params_free(&G);
    qw_model_free(m);
}

TEST(dense_untied_gradients)
{
    qw_params P;
    make_params(&P, DENSE, 1);
    scenario s = {.B = 2, .T = 5};
    check_model(&P, &s);
    qw_params_free(&P);
}

TEST(dense_tied_yarn_documents_gradients)
{
    qw_params P;
    make_params(&P, TIED_YARN, 2);
    /* row 0: documents of 3 and 4 tokens; row 1 one document with given
     * positions; own targets and coefficients (an SFT-like mask) */
    int32_t seg[] = {5, 5, 5, 6, 6, 6, 6, 1, 1, 1, 1, 1, 1, 1};
    int32_t pos[] = {0, 1, 2, 0, 1, 2, 3, 9, 10, 11, 12, 13, 14, 15};
    int32_t tgt[] = {3, -1, 4, 0, 18, -1, -1, 7, 7, 2, -1, 5, 6, -1};
    float coef[] = {0.5f, 0, 0.25f, 1, 0.125f, 0, 0, 0.1f, 0.2f, 0.3f, 0, -0.4f, 0.5f, 0};
    scenario s = {.B = 2, .T = 7, .seg = seg, .pos = pos, .targets = tgt, .coef = coef};
    check_model(&P, &s);
    qw_params_free(&P);
}

TEST(moe_gradients)
{
    char json[2048];
    for (int norm = 0; norm < 2; norm++) {
        qw_params P;
        snprintf(json, sizeof json, MOE_FMT, norm ? "true" : "false");
        make_params(&P, json, 3 + norm);
        CHECK(P.layer[0].is_moe && !P.layer[1].is_moe && P.layer[2].is_moe);
        scenario s = {.B = 2, .T = 4, .aux_coef = 0.5};
        check_model(&P, &s);
        qw_params_free(&P);
    }
}

TEST(moe_capacity_gradients)
{
    char json[2048];
    qw_params P;
    snprintf(json, sizeof json, MOE_FMT, "true");
    make_params(&P, json, 5);
    scenario s = {.B = 2, .T = 6, .capacity_factor = 0.5, .aux_coef = 0.25};   /* 3 of 6 assignments per expert */
    check_model(&P, &s);
    qw_params_free(&P);
}

/* qw_model_step (LM-head gradient taken in the forward) gives the loss and
 * the gradients of forward + backward, bit for bit; a backward after it
 * is refused. */
TEST(step_is_forward_plus_backward)
{
    char json[2048];
    snprintf(json, sizeof json, MOE_FMT, "true");
    const char *cfgs[] = {DENSE, TIED_YARN, json};
    for (int ci = 0; ci < 3; ci++) {
        qw_params P, G1, G2;
        make_params(&P, cfgs[ci], 11);
        CHECK(!qw_params_alloc_like(&G1, &P) && !qw_params_alloc_like(&G2, &P));
        int32_t ids[10] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3}, seg[10] = {0, 0, 0, 1, 1, 1, 1, 2, 2, 2};
        qw_batch b = {.ids = ids, .seg = seg};
        qw_model *m;
        qw_model_out o1, o2;
        CHECK(!qw_model_new(qw_ops_cpu(), &P, 2, 5, NULL, &m));
        CHECK(!qw_model_forward(m, &b, NULL, NULL, &o1) && !qw_model_backward(m, &G1, 0.25f));
        CHECK(!qw_model_step(m, &b, &G2, 0.25f, &o2));
        CHECK(o1.loss == o2.loss && o1.aux_loss == o2.aux_loss && o1.n_targets == o2.n_targets);
        CHECK(!memcmp(G1.data, G2.data, G1.total * sizeof(float)));
        CHECK(qw_model_backward(m, &G2, 0) == QW_EXIT_FAIL);
        qw_model_free(m);
        qw_params_free(&P); qw_params_free(&G1); qw_params_free(&G2);
    }
}

/* The split path for objectives computed from the forward: forward with
 * some coefficients (log-probs out), new coefficients from those log-probs,
 * backward — the gradients of qw_model_step with the new coefficients, bit
 * for bit; the forward's log-probs are those of the targets. */
TEST(backward_takes_coefficients_after_the_forward)
{
    char json[2048];
    snprintf(json, sizeof json, MOE_FMT, "true");
    const char *cfgs[] = {DENSE, json};
    for (int ci = 0; ci < 2; ci++) {
        qw_params P, G1, G2;
        make_params(&P, cfgs[ci], 13);
        CHECK(!qw_params_alloc_like(&G1, &P) && !qw_params_alloc_like(&G2, &P));
        int32_t ids[10] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3}, seg[10] = {0, 0, 0, 1, 1, 1, 1, 2, 2, 2};
        int32_t tgt[10];
        int n = qw_objective_next_token(ids, seg, 2, 5, tgt), ok = 1;
        qw_batch b = {.ids = ids, .seg = seg, .targets = tgt};
        qw_model *m;
        qw_model_out o1, o2;
        float logp[10], logits[10 * 64], coef[10];
        CHECK(!qw_model_new(qw_ops_cpu(), &P, 2, 5, NULL, &m));
        CHECK(qw_model_set_coef(m, coef) == QW_EXIT_FAIL);   /* no forward yet */
        qw_error_clear();
        CHECK(!qw_model_forward(m, &b, logits, logp, &o1));
        /* a GRPO-like weight: advantage × exp(logp − stop_grad(logp)) = ±1·1, over the tokens */
        for (int i = 0; i < 10; i++) {
            coef[i] = tgt[i] >= 0 ? (i % 3 ? 1.0f : -0.5f) * expf(logp[i] - logp[i]) / (float)n : 0;
            if (tgt[i] >= 0) {   /* log p(target) from the logits */
                const float *z = logits + (size_t)i * P.cfg.vocab_size;
                double mx = z[0], se = 0;
                for (int v = 1; v < P.cfg.vocab_size; v++) mx = z[v] > mx ? z[v] : mx;
                for (int v = 0; v < P.cfg.vocab_size; v++) se += exp(z[v] - mx);
                ok &= fabs(logp[i] - (z[tgt[i]] - mx - log(se))) < 1e-5;
            } else {
                ok &= logp[i] == 0;
            }
        }
        CHECK(ok);
        CHECK(!qw_model_set_coef(m, coef) && !qw_model_backward(m, &G1, 0.25f));
        qw_batch b2 = {.ids = ids, .seg = seg, .targets = tgt, .coef = coef};
        CHECK(!qw_model_step(m, &b2, &G2, 0.25f, &o2));
        CHECK(!memcmp(G1.data, G2.data, G1.total * sizeof(float)));
        qw_model_free(m);
        qw_params_free(&P); qw_params_free(&G1); qw_params_free(&G2);
    }
}

/* Activation recomputation: the same loss and gradients, bit for bit, from
 * a smaller activation plan (dense, tied + YaRN, MoE with a dense layer). */
TEST(recompute_is_exact)
{
    char json[2048];
    snprintf(json, sizeof json, MOE_FMT, "true");
    const char *cfgs[] = {DENSE, TIED_YARN, json};
    for (int ci = 0; ci < 3; ci++) {
        qw_params P, G1, G2;
        make_params(&P, cfgs[ci], 13);
        CHECK(!qw_params_alloc_like(&G1, &P) && !qw_params_alloc_like(&G2, &P));
        int32_t ids[10] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3}, seg[10] = {0, 0, 0, 1, 1, 1, 1, 2, 2, 2};
        qw_batch b = {.ids = ids, .seg = seg};
        qw_model *m1, *m2;
        qw_model_out o1, o2;
        CHECK(!qw_model_new(qw_ops_cpu(), &P, 2, 5, NULL, &m1));
        CHECK(!qw_model_new(qw_ops_cpu(), &P, 2, 5, &(qw_model_opts){.recompute = 1}, &m2));
        CHECK(qw_model_plan_bytes(m2) < qw_model_plan_bytes(m1));
        CHECK(!qw_model_step(m1, &b, &G1, 0.25f, &o1) && !qw_model_step(m2, &b, &G2, 0.25f, &o2));
        CHECK(o1.loss == o2.loss && o1.aux_loss == o2.aux_loss);
        CHECK(!memcmp(G1.data, G2.data, G1.total * sizeof(float)));
        qw_model_free(m1); qw_model_free(m2);
        qw_params_free(&P); qw_params_free(&G1); qw_params_free(&G2);
    }
}

/* A row packing two documents gives the logits of each document alone. */
TEST(documents_are_isolated)
{
    char json[2048];
    snprintf(json, sizeof json, MOE_FMT, "true");
    const char *cfgs[] = {DENSE, json};
    for (int ci = 0; ci < 2; ci++) {
        qw_params P;
        make_params(&P, cfgs[ci], 7);
        int V = P.cfg.vocab_size;
        int32_t ids[9] = {3, 1, 4, 1, 5, 9, 2, 6, 5}, seg[9] = {0, 0, 0, 0, 1, 1, 1, 1, 1};
        float packed[9 * 19], alone[9 * 19];
        qw_model *m;
        qw_model_out out;
        CHECK(!qw_model_new(qw_ops_cpu(), &P, 1, 9, NULL, &m));
        CHECK(!qw_model_forward(m, &(qw_batch){.ids = ids, .seg = seg}, packed, NULL, &out));
        qw_model_free(m);
        for (int part = 0; part < 2; part++) {
            int t0 = part ? 4 : 0, n = part ? 5 : 4;
            CHECK(!qw_model_new(qw_ops_cpu(), &P, 1, n, NULL, &m));
            CHECK(!qw_model_forward(m, &(qw_batch){.ids = ids + t0}, alone + t0 * V, NULL, &out));
            qw_model_free(m);
        }
        double diff = 0;
        for (int i = 0; i < 9 * V; i++) diff = fmax(diff, fabs(packed[i] - alone[i]));
        CHECK_MSG(diff < 1e-5, "max|diff| %.3g", diff);
        /* and without segment ids the second document does see the first */
        CHECK(!qw_model_new(qw_ops_cpu(), &P, 1, 9, NULL, &m));
        CHECK(!qw_model_forward(m, &(qw_batch){.ids = ids}, packed, NULL, &out));
        qw_model_free(m);
        CHECK(fabs(packed[5 * V] - alone[5 * V]) > 1e-4);
        qw_params_free(&P);
    }
}

TEST(bad_batches)
{
    qw_params P;
    make_params(&P, DENSE, 9);
    qw_model *m;
    qw_model_out out;
    CHECK(!qw_model_new(qw_ops_cpu(), &P, 1, 3, NULL, &m));
    int32_t ids[3] = {1, 19, 2}, ok[3] = {1, 2, 3}, pos[3] = {0, -1, 2}, tgt[3] = {1, 2, 19};
    CHECK(qw_model_forward(m, &(qw_batch){.ids = ids}, NULL, NULL, &out) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "outside the vocabulary"));
    CHECK(qw_model_forward(m, &(qw_batch){.ids = ok, .pos = pos}, NULL, NULL, &out) == QW_EXIT_DATA);
    CHECK(qw_model_forward(m, &(qw_batch){.ids = ok, .targets = tgt}, NULL, NULL, &out) == QW_EXIT_DATA);
    qw_params G;
    CHECK(!qw_params_alloc_like(&G, &P));
    CHECK(qw_model_backward(m, &G, 0) == QW_EXIT_FAIL);   /* no successful forward */
    qw_params_free(&G);
    qw_model_free(m);
    CHECK(qw_model_new(qw_ops_cpu(), &P, 0, 3, NULL, &m) == QW_EXIT_DATA);
    qw_params_free(&P);
    char json[2048];
    snprintf(json, sizeof json, MOE_FMT, "true");
    make_params(&P, json, 9);
    P.cfg.num_experts_per_tok = 5;   /* more than the 4 experts */
    CHECK(qw_model_new(qw_ops_cpu(), &P, 1, 3, NULL, &m) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "num_experts_per_tok 5"));
    qw_params_free(&P);
}

/* Arenas moved to the CPU backend's memory give bit-identical results to
 * host arenas; arenas of another memory are refused. */
TEST(device_arenas_match_host)
{
    const qw_ops *cpu = qw_ops_cpu();
    qw_params P, D, G, GD;
    make_params(&P, DENSE, 4);
    CHECK(qw_params_init(&D, &P.cfg) == 0);
    memcpy(D.data, P.data, P.total * sizeof(float));
    CHECK(qw_params_to_device(&D, cpu) == 0);
    CHECK(!qw_params_alloc_like(&G, &P) && !qw_params_alloc_like(&GD, &D) && GD.ops == cpu);
    qw_model *m, *md;
    qw_model_out o1, o2;
    int32_t ids[8] = {1, 5, 9, 2, 7, 7, 3, 11};
    CHECK(!qw_model_new(cpu, &P, 2, 4, NULL, &m) && !qw_model_new(cpu, &D, 2, 4, NULL, &md));
    CHECK(!qw_model_forward(m, &(qw_batch){.ids = ids}, NULL, NULL, &o1));
    CHECK(!qw_model_forward(md, &(qw_batch){.ids = ids}, NULL, NULL, &o2));
    CHECK(o1.loss == o2.loss && o1.loss > 0);
    CHECK(!qw_model_backward(m, &G, 0) && !qw_model_backward(md, &GD, 0));
    CHECK(!memcmp(G.data, GD.data, G.total * sizeof(float)));
    CHECK(qw_model_backward(md, &G, 0) == QW_EXIT_FAIL);   /* gradients in host memory */
    qw_model_free(m);
    qw_model_free(md);
    qw_ops other = *cpu;
    other.name = "other";
    CHECK(qw_model_new(&other, &P, 1, 4, NULL, &m) == QW_EXIT_FAIL);
    CHECK(strstr(qw_error_msg(), "host memory, not other"));
    CHECK(qw_model_new(&other, &D, 1, 4, NULL, &m) == QW_EXIT_FAIL);
    qw_params_free(&P); qw_params_free(&D); qw_params_free(&G); qw_params_free(&GD);
}

/* The RoPE tables match those HF built for the golden fixtures (YaRN). */
TEST(rope_tables_match_hf)
{
    const char *names[] = {"dense_yarn", "dense_tied", "moe"};
    for (int i = 0; i < 3; i++) {
        char path[512];
        qw_config c;
        qw_st *st;
        snprintf(path, sizeof path, "tests/golden/%s/model", names[i]);
        CHECK_MSG(!qw_config_load(qwtest_path(path), &c), "%s", qw_error_msg());
        snprintf(path, sizeof path, "tests/golden/%s/expected.safetensors", names[i]);
        CHECK_MSG(!qw_st_open(qwtest_path(path), &st), "%s", qw_error_msg());
        const qw_st_tensor *ti = qw_st_find(st, "rope_inv_freq"), *ts = qw_st_find(st, "rope_attention_scaling");
        CHECK(ti && ts && ti->numel == c.head_dim / 2);
        float inv[256], want[256], scale, want_scale;
        qw_model_rope(&c, inv, &scale);
        qw_st_to_f32(ti, want);
        qw_st_to_f32(ts, &want_scale);
        for (int j = 0; j < c.head_dim / 2; j++) CHECK_NEAR(inv[j], want[j], 1e-6 * want[j]);
        CHECK_NEAR(scale, want_scale, 1e-6);
        qw_st_close(st);
    }
}

/* ------------------------------------------------ golden comparison mode */

/* The fused expert gradient `name` (…mlp.experts.gate_up_proj or
 * …down_proj, as transformers 5 names it) assembled from GOT's per-expert
 * gradients in the shape of e ([E,2Ie,H] / [E,H,Ie], or the transposed
 * Qwen3-VL-MoE Hub form [E,H,2Ie] / [E,Ie,H]); NULL when it cannot be. */
static float *fused_grad(const qw_st *got, const qw_st_tensor *e)
{
    const char *x = strstr(e->name, ".mlp.experts.");
    if (!x || e->ndim != 3) return NULL;
    const char *what = x + 13;
    int gu = !strcmp(what, "gate_up_proj");
    if (!gu && strcmp(what, "down_proj")) return NULL;
    int64_t E = e->shape[0];
    char pre[200], nm[260];
    snprintf(pre, sizeof pre, "%.*s", (int)(x - e->name + 13), e->name);
    snprintf(nm, sizeof nm, "%s0.%s.weight", pre, gu ? "gate_proj" : "down_proj");
    const qw_st_tensor *p0 = qw_st_find(got, nm);
    if (!p0 || p0->ndim != 2) return NULL;
    int64_t r = p0->shape[0], c = p0->shape[1];   /* one expert's [rows, cols] */
    int transposed = gu ? e->shape[1] != 2 * r : e->shape[1] != r;
    float *out = qw_malloc(e->numel * sizeof *out), *tmp = qw_malloc(r * c * sizeof *tmp);
    for (int64_t k = 0; k < E; k++)
        for (int part = 0; part < (gu ? 2 : 1); part++) {
            snprintf(nm, sizeof nm, "%s%lld.%s.weight", pre, (long long)k, gu ? (part ? "up_proj" : "gate_proj") : "down_proj");
            const qw_st_tensor *t = qw_st_find(got, nm);
            if (!t || t->numel != r * c) { free(out); free(tmp); return NULL; }
            qw_st_to_f32(t, tmp);
            for (int64_t i = 0; i < r; i++)
                for (int64_t j = 0; j < c; j++) {
                    int64_t row = part * r + i;   /* in the fused [rows·parts, c] block */
                    size_t at = transposed ? (size_t)(k * c * (gu ? 2 * r : r) + j * (gu ? 2 * r : r) + row)
                                           : (size_t)(k * (gu ? 2 * r : r) * c + row * c + j);
                    out[at] = tmp[i * c + j];
                }
        }
    free(tmp);
    return out;
}

/* A per-expert gradient that the expected file holds fused. */
static int fused_in(const qw_st *exp, const char *name)
{
    const char *x = strstr(name, ".mlp.experts.");
    if (!x) return 0;
    char nm[260];
    const char *w = strrchr(name, '.');
    int down = w && w - name > 9 && !strncmp(w - 9, "down_proj", 9);
    snprintf(nm, sizeof nm, "%.*s%s", (int)(x - name + 13), name, down ? "down_proj" : "gate_up_proj");
    return qw_st_find(exp, nm) != NULL;
}

/* max|a − b| and max|a| of two tensors of n values */
static void diff_of(const qw_st_tensor *e, const qw_st_tensor *g, double *dmax, double *amax)
{
    float *a = qw_malloc(e->numel * sizeof *a), *b = qw_malloc(e->numel * sizeof *b);
    qw_st_to_f32(e, a);
    qw_st_to_f32(g, b);
    *dmax = *amax = 0;
    for (int64_t j = 0; j < e->numel; j++) *dmax = fmax(*dmax, fabs(a[j] - b[j])), *amax = fmax(*amax, fabs(a[j]));
    free(a); free(b);
}

/* Intermediates, when both files have them: position_ids exactly,
 * vision.patch_embed to max|diff| <= 1e-4 of max|value|.  The merger and
 * DeepStack outputs (vision.merged, vision.deepstack.<j>) are matched by
 * value to one of GOT's, to the same limit: the vl fixtures label them
 * one place off (transformers 5.17 returns the merger's output split per
 * image, so make_vl_golden.py took the two DeepStack outputs for merged
 * and deepstack.0); the merger's output itself is checked through the
 * logits and gradients. */
static int compare_extra(const qw_st *exp, const qw_st *got)
{
    int bad = 0;
    for (int i = 0; i < qw_st_count(exp); i++) {
        const qw_st_tensor *e = qw_st_at(exp, i);
        int exact = !strcmp(e->name, "position_ids"), named = exact || !strcmp(e->name, "vision.patch_embed");
        if (!named && strncmp(e->name, "vision.", 7)) continue;
        double dmax = 0, amax = 0;
        const char *as = NULL;
        if (named) {
            const qw_st_tensor *g = qw_st_find(got, e->name);
            if (!g) continue;
            if (g->numel != e->numel) { printf("bad %s: wrong shape\n", e->name); bad = 1; continue; }
            diff_of(e, g, &dmax, &amax);
            as = e->name;
        } else {
            double best = INFINITY;
            for (int k = 0; k < qw_st_count(got); k++) {
                const qw_st_tensor *g = qw_st_at(got, k);
                if (strncmp(g->name, "vision.", 7) || g->numel != e->numel || !strcmp(g->name, "vision.patch_embed")) continue;
                double d, m;
                diff_of(e, g, &d, &m);
                if (d < best) best = d, dmax = d, amax = m, as = g->name;
            }
            if (!as) continue;
        }
        int ok = exact ? dmax == 0 : dmax <= 1e-4 * amax;
        printf("%s%s (as %s) max|diff| %.3g (limit %s)\n", ok ? "" : "bad ", e->name, as, dmax,
               exact ? "0" : "1e-4 of max|value|");
        bad |= !ok;
    }
    return bad;
}

static int compare(const char *exp_path, const char *got_path, const double tol[3])
{
    qw_st *exp, *got;
    if (qw_st_open(exp_path, &exp) || qw_st_open(got_path, &got)) {
        fprintf(stderr, "%s\n", qw_error_msg());
        return 2;
    }
    int bad = 0;
    double worst_grad = 0;
    const char *worst_name = "-";
    for (int i = 0; i < qw_st_count(exp); i++) {
        const qw_st_tensor *e = qw_st_at(exp, i);
        int is_grad = !strncmp(e->name, "grad.", 5);
        if (!is_grad && strcmp(e->name, "logits") && strcmp(e->name, "loss") && strcmp(e->name, "aux_loss")) continue;
        const qw_st_tensor *g = qw_st_find(got, e->name);
        float *b = NULL;
        if (!g && is_grad) b = fused_grad(got, e);
        if (!b && (!g || g->numel != e->numel || g->ndim != e->ndim ||
                   memcmp(g->shape, e->shape, e->ndim * sizeof *e->shape))) {
            printf("bad %s: %s in the output\n", e->name, g ? "wrong shape" : "missing");
            bad = 1;
            continue;
        }
        float *a = qw_malloc(e->numel * sizeof *a);
        qw_st_to_f32(e, a);
        if (!b) {
            b = qw_malloc(e->numel * sizeof *b);
            qw_st_to_f32(g, b);
        }
        double num = 0, den = 0, dmax = 0, amax = 0;
        for (int64_t j = 0; j < e->numel; j++) {
            num += (double)(a[j] - b[j]) * (a[j] - b[j]), den += (double)a[j] * a[j];
            dmax = fmax(dmax, fabs(a[j] - b[j])), amax = fmax(amax, fabs(a[j]));
        }
        if (is_grad) {
            double rel = den > 0 ? sqrt(num / den) : sqrt(num);
            if (rel > worst_grad || !strcmp(worst_name, "-")) worst_grad = rel, worst_name = e->name;
            if (rel > tol[2]) { printf("bad %s: relative error %.3g > %g\n", e->name, rel, tol[2]); bad = 1; }
        } else if (!strcmp(e->name, "logits")) {
            printf("logits max|diff| %.3g = %.3g of max|logits| (limit %g)\n", dmax, dmax / amax, tol[0]);
            if (dmax > tol[0] * amax) bad = 1;
        } else {
            printf("%s |diff| %.3g (limit %g)\n", e->name, dmax, tol[1]);
            if (dmax > tol[1]) bad = 1;
        }
        free(a); free(b);
    }
    for (int i = 0; i < qw_st_count(got); i++) {
        const qw_st_tensor *g = qw_st_at(got, i);
        if (!strncmp(g->name, "grad.", 5) && !qw_st_find(exp, g->name) && !fused_in(exp, g->name)) {
            printf("bad %s: not in the expected output\n", g->name);
            bad = 1;
        }
    }
    bad |= compare_extra(exp, got);
    printf("worst gradient relative error %.3g (%s, limit %g)\n", worst_grad, worst_name, tol[2]);
    qw_st_close(exp);
    qw_st_close(got);
    return bad;
}


/* The value path (a reward model's backbone): forward_hidden returns the
 * final normed hidden states (the LM head applied to them gives the
 * logits), and backward_hidden with ∂loss/∂h = the LM head's chain rule,
 * computed here on the host, gives the LM path's gradient of every
 * backbone tensor; then a reward model's score head (qw/rm.h): the head's
 * and the Bradley–Terry loss's gradients against central differences. */
TEST(hidden_path_is_the_lm_path_without_its_head)
{
    char json[2048];
    snprintf(json, sizeof json, MOE_FMT, "true");
    const char *cfgs[] = {DENSE, json};
    for (int ci = 0; ci < 2; ci++) {
        qw_params P, G1, G2;
        make_params(&P, cfgs[ci], 17);
        CHECK(!qw_params_alloc_like(&G1, &P) && !qw_params_alloc_like(&G2, &P));
        int32_t ids[10] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3}, seg[10] = {0, 0, 0, 1, 1, 1, 1, 2, 2, 2}, tgt[10], idx[10];
        int n = qw_objective_next_token(ids, seg, 2, 5, tgt), V = P.cfg.vocab_size, H = P.cfg.hidden_size;
        float coef[10], logits[10 * 19], h[10 * 16], dh[10 * 16];
        for (int i = 0; i < 10; i++) coef[i] = tgt[i] >= 0 ? (i % 2 ? 1.0f : 0.5f) / n : 0, idx[i] = i;
        qw_batch b = {.ids = ids, .seg = seg, .targets = tgt, .coef = coef};
        qw_model *m;
        qw_model_out o;
        CHECK(!qw_model_new(qw_ops_cpu(), &P, 2, 5, NULL, &m));
        CHECK(qw_model_backward_hidden(m, &G2, dh) == QW_EXIT_FAIL);   /* no forward_hidden yet */
        CHECK(!qw_model_forward(m, &b, logits, NULL, &o) && !qw_model_backward(m, &G1, 0));
        CHECK(!qw_model_forward_hidden(m, &b, idx, 10, h, &o));
        double worst = 0;
        for (int i = 0; i < 10; i++) {
            double mx = -1e30, se = 0;
            for (int v = 0; v < V; v++) {   /* the LM head on h gives the logits */
                double z = 0;
                for (int j = 0; j < H; j++) z += (double)P.lm_head[(size_t)v * H + j] * h[i * H + j];
                worst = fmax(worst, fabs(z - logits[i * V + v]));
                mx = fmax(mx, logits[i * V + v]);
            }
            for (int v = 0; v < V; v++) se += exp(logits[i * V + v] - mx);
            for (int j = 0; j < H; j++) {
                double g = 0;
                for (int v = 0; tgt[i] >= 0 && v < V; v++)
                    g += coef[i] * (exp(logits[i * V + v] - mx) / se - (v == tgt[i])) * P.lm_head[(size_t)v * H + j];
                dh[i * H + j] = (float)g;
            }
        }
        CHECK_MSG(worst < 1e-5, "logits from h differ by %g", worst);
        CHECK(!qw_model_backward_hidden(m, &G2, dh));
        double rel = 0;
        for (int k = 0; k < P.n; k++) {
            if (!strcmp(P.p[k].name, "lm_head.weight")) continue;
            const float *a = qw_params_ptr(&G1, &P.p[k]), *c = qw_params_ptr(&G2, &P.p[k]);
            double d = 0, sc = 0;
            for (int64_t j = 0; j < P.p[k].numel; j++) d = fmax(d, fabs(a[j] - c[j])), sc = fmax(sc, fabs(a[j]));
            rel = fmax(rel, sc > 0 ? d / sc : d);
        }
        CHECK_MSG(rel < 1e-5, "backbone gradients differ by %g of their scale", rel);
        qw_model_free(m);
        qw_params_free(&P); qw_params_free(&G1); qw_params_free(&G2);
    }
    /* a reward model: layout, head, pooling, loss */
    qw_config c;
    CHECK(!qw_config_parse(DENSE, "rm", &c));
    c.score_head = 1;
    qw_params P, G;
    CHECK(!qw_params_init(&P, &c) && !qw_params_alloc_like(&G, &P));
    CHECK(P.score && !P.lm_head && qw_params_find(&P, "score.weight") && !qw_params_find(&P, "lm_head.weight"));
    qw_params_init_random(&P, 3);
    int32_t ids[10] = {3, 1, 4, 1, 5, 9, 2, 6, 0, 0}, idx[2];
    idx[0] = qw_rm_pool(ids, 5, 0);
    idx[1] = 5 + qw_rm_pool(ids + 5, 5, 0);
    CHECK(idx[0] == 4 && idx[1] == 7 && qw_rm_pool(ids + 8, 2, 0) == 0 && qw_rm_pool(ids, 5, -1) == 4);
    qw_model *m;
    float h[2 * 16], r[2], dc, drj, dh[2 * 16];
    qw_batch b = {.ids = ids};
    CHECK(!qw_model_new(qw_ops_cpu(), &P, 2, 5, NULL, &m));
    qw_error_clear();
    qw_model_out o;
    CHECK(qw_model_forward(m, &b, NULL, NULL, &o) == QW_EXIT_DATA && strstr(qw_error_msg(), "reward model"));
    CHECK(!qw_rm_forward(m, &P, &b, idx, 2, h, r));
    float margin = 0.3f;
    qw_rm_sums sm = {0};
    qw_rm_bt_loss(&r[0], &r[1], &margin, 1, 2, 0.1, &dc, &drj, &sm);
    double e = 1e-3, num_c, num_r;
    {
        qw_rm_sums a = {0}, z = {0};
        float t1, t2, cp = r[0] + (float)e, cm = r[0] - (float)e;
        qw_rm_bt_loss(&cp, &r[1], &margin, 1, 2, 0.1, &t1, &t2, &a);
        qw_rm_bt_loss(&cm, &r[1], &margin, 1, 2, 0.1, &t1, &t2, &z);
        num_c = (a.loss - z.loss) / ((double)cp - cm);
        float rp = r[1] + (float)e, rmn = r[1] - (float)e;
        a = z = (qw_rm_sums){0};
        qw_rm_bt_loss(&r[0], &rp, &margin, 1, 2, 0.1, &t1, &t2, &a);
        qw_rm_bt_loss(&r[0], &rmn, &margin, 1, 2, 0.1, &t1, &t2, &z);
        num_r = (a.loss - z.loss) / ((double)rp - rmn);
    }
    CHECK_NEAR(dc, num_c, 1e-4);
    CHECK_NEAR(drj, num_r, 1e-4);
    double z = r[0] - r[1] - margin, s2 = r[0] + r[1];
    CHECK_NEAR(sm.loss, (log1p(exp(-z)) + 0.1 * s2 * s2) / 2, 1e-6);
    float drs[2] = {dc, drj};
    CHECK(!qw_rm_head_backward(&P, &G, h, drs, 2, dh));
    for (int j = 0; j < 16; j++) {
        CHECK_NEAR(G.score[j], dc * h[j] + drj * h[16 + j], 1e-6);
        CHECK_NEAR(dh[j], dc * P.score[j], 1e-7);
    }
    CHECK(!qw_model_backward_hidden(m, &G, dh));
    qw_model_free(m);
    qw_params_free(&P); qw_params_free(&G);
}

int main(int argc, char **argv)
{
    double tol[3] = {1e-4, 1e-5, 1e-3};
    if (argc == 4 && !strcmp(argv[1], "--compare")) return compare(argv[2], argv[3], tol);
    if (argc == 6 && !strcmp(argv[1], "--compare") && !strcmp(argv[2], "--tol")) {
        if (sscanf(argv[3], "%lf,%lf,%lf", &tol[0], &tol[1], &tol[2]) != 3) {
            fprintf(stderr, "test_model: --tol wants L,S,G (three numbers)\n");
            return 2;
        }
        return compare(argv[4], argv[5], tol);
    }
    PLAN(12);
    RUN(dense_untied_gradients);
    RUN(dense_tied_yarn_documents_gradients);
    RUN(moe_gradients);
    RUN(moe_capacity_gradients);
    RUN(documents_are_isolated);
    RUN(bad_batches);
    RUN(device_arenas_match_host);
    RUN(step_is_forward_plus_backward);
    RUN(backward_takes_coefficients_after_the_forward);
    RUN(recompute_is_exact);
    RUN(rope_tables_match_hf);
    RUN(hidden_path_is_the_lm_path_without_its_head);
    return qwtest_finish();
}
