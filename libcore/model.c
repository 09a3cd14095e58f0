/* model.c — the Qwen3 decoder over the op table: activation plan, forward,
 * backward (qw/model.h). */
#include "qw/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qw/cli.h"
#include "qw/layer.h"
#include "qw/objective.h"
#include "qw/size.h"

/* Activations (void *) are in the backend's activation type, ops->act_size
 * bytes per element; float * buffers are fp32 whatever the backend.  Each
 * layer's saved activations are a qw_layer_act (qw/layer.h), filled by the
 * layer forward that the inference engine shares. */
typedef qw_layer_act layer_act;

struct qw_model {
    const qw_ops *ops;
    qw_layer_dims D;                  /* shapes for the shared layer forward */
    const qw_params *P;
    const qw_config *c;
    size_t as;                        /* ops->act_size */
    int B, T, N, H, Q, KV, nh, nkv, d, V, L, E, k, Ie, n_moe, capacity, chunk, recompute;
    float eps, rope_scale, sm_scale;
    float inv_temp;                   /* 1/temperature: the LM head's logits are z·inv_temp (1 by default) */
    char *arena;
    size_t arena_bytes;
    int plan_overflow;          /* the plan's bytes overflow size_t */

    int32_t *ids, *pos, *kvs, *tgt;   /* device [N] */
    float *coef, *logp, *lse_ce;      /* device [N] */
    float *cs, *sn, *inv_freq;        /* RoPE [N,d/2] ×2, [d/2] */
    void **x;                         /* host array of L+1 residual streams [N,H] */
    void *hf; float *rstd_f;          /* final norm output, its rstd */
    float *logits; void *dlogits;     /* one chunk of logits (fp32) and of their gradient [chunk,V] */
    layer_act *act;                   /* [L] */
    float *aux_count, *aux_psum, *aux_dprobs;   /* device [E] */
    void *attn_ws;
    size_t attn_ws_bytes;

    /* backward scratch, shared by all layers */
    void *dx, *dxn, *dq, *dk, *dv, *dout, *dkp, *da, *du, *dyg;
    float *drl, *dw;                  /* MoE: router logits, then their gradient [N,E]; ∂/∂w [N,k] */
    void *drl_act;                    /* MoE: the router logits' gradient as an activation [N,E] */

    /* host copies of the batch */
    int32_t *h_pos, *h_kvs, *h_tgt;
    float *h_coef, *h_logp, *h_count, *h_psum;
    double pairs, aux;
    int have_forward;
};

/* Element i of an activation array. */
static inline void *at(const qw_model *m, const void *p, size_t i) { return (char *)p + i * m->as; }
/* The compute copy of the weights that master pointer w (into P->data) views. */
static inline const void *cw(const qw_model *m, const float *w) { return at(m, m->P->compute, (size_t)(w - m->P->data)); }

/* ---- the activation plan ---- */

/* Carve n elements of `size` bytes from the arena; with no arena yet, only
 * count (and note a total that overflows size_t in plan_overflow). */
static void *take_n(qw_model *m, size_t n, size_t size)
{
    void *p = m->arena ? m->arena + m->arena_bytes : NULL;
    size_t bytes;
    if (qw_mul_size(n, size, &bytes) || bytes > SIZE_MAX - 64 ||
        __builtin_add_overflow(m->arena_bytes, (bytes + 63) / 64 * 64, &m->arena_bytes))
        m->plan_overflow = 1;
    return p;
}
static void *take(qw_model *m, size_t bytes) { return take_n(m, bytes, 1); }
#define TAKE_A(m, n) take_n(m, (size_t)(n), (m)->as)
#define TAKE_F(m, n) ((float *)take_n(m, (size_t)(n), sizeof(float)))
#define TAKE_I(m, n) ((int32_t *)take_n(m, (size_t)(n), sizeof(int32_t)))

static void plan(qw_model *m)
{
    size_t N = m->N, H = m->H, Q = m->Q, KV = m->KV;
    size_t mlp_rows = 0, mlp_w = 0;   /* widest MLP activation over the layers */
    m->arena_bytes = 0;
    /* with recomputation, one set of norm outputs and dense-MLP activations
     * serves every layer */
    size_t I = m->c->intermediate_size;
    void *r_xn1 = NULL, *r_xn2 = NULL, *r_g = NULL, *r_u = NULL, *r_a = NULL;
    if (m->recompute) {
        r_xn1 = TAKE_A(m, N * H); r_xn2 = TAKE_A(m, N * H);
        if (m->n_moe < m->L) { r_g = TAKE_A(m, N * I); r_u = TAKE_A(m, N * I); r_a = TAKE_A(m, N * I); }
    }
    m->ids = TAKE_I(m, N); m->pos = TAKE_I(m, N); m->kvs = TAKE_I(m, N); m->tgt = TAKE_I(m, N);
    m->coef = TAKE_F(m, N); m->logp = TAKE_F(m, N); m->lse_ce = TAKE_F(m, N);
    m->cs = TAKE_F(m, N * m->d / 2); m->sn = TAKE_F(m, N * m->d / 2); m->inv_freq = TAKE_F(m, m->d / 2);
    for (int l = 0; l <= m->L; l++) m->x[l] = TAKE_A(m, N * H);
    m->hf = TAKE_A(m, N * H); m->rstd_f = TAKE_F(m, N);
    m->logits = TAKE_F(m, (size_t)m->chunk * m->V); m->dlogits = TAKE_A(m, (size_t)m->chunk * m->V);
    for (int l = 0; l < m->L; l++) {
        layer_act *A = &m->act[l];
        A->xn1 = m->recompute ? r_xn1 : TAKE_A(m, N * H); A->rstd1 = TAKE_F(m, N);
        A->qp = TAKE_A(m, N * Q); A->kp = TAKE_A(m, N * KV); A->v = TAKE_A(m, N * KV);
        A->rq = TAKE_F(m, N * m->nh); A->rk = TAKE_F(m, N * m->nkv);
        A->q = TAKE_A(m, N * Q); A->k = TAKE_A(m, N * KV);
        A->o = TAKE_A(m, N * Q); A->lse = TAKE_F(m, N * m->nh);
        A->xm = TAKE_A(m, N * H); A->xn2 = m->recompute ? r_xn2 : TAKE_A(m, N * H); A->rstd2 = TAKE_F(m, N);
        size_t rows = N, w = I;
        if (m->P->layer[l].is_moe) {
            rows = N * m->k, w = m->Ie;
            A->aw = TAKE_A(m, rows * w); A->xg = TAKE_A(m, rows * H);
            A->probs = TAKE_F(m, N * m->E); A->w = TAKE_F(m, N * m->k);
            A->sel = TAKE_I(m, N * m->k); A->rows = TAKE_I(m, rows); A->slots = TAKE_I(m, rows);
        }
        if (m->recompute && !m->P->layer[l].is_moe) A->g = r_g, A->u = r_u, A->a = r_a;
        else { A->g = TAKE_A(m, rows * w); A->u = TAKE_A(m, rows * w); A->a = TAKE_A(m, rows * w); }
        if (rows * w > mlp_rows * mlp_w) mlp_rows = rows, mlp_w = w;
    }
    m->aux_count = TAKE_F(m, m->E); m->aux_psum = TAKE_F(m, m->E); m->aux_dprobs = TAKE_F(m, m->E);
    m->attn_ws_bytes = m->ops->attn_workspace(m->B, m->T, m->nh, m->d);
    m->attn_ws = take(m, m->attn_ws_bytes);
    m->dx = TAKE_A(m, N * H); m->dxn = TAKE_A(m, N * H);
    m->dq = TAKE_A(m, N * Q); m->dout = TAKE_A(m, N * Q);
    m->dk = TAKE_A(m, N * KV); m->dv = TAKE_A(m, N * KV); m->dkp = TAKE_A(m, N * KV);
    m->da = TAKE_A(m, mlp_rows * mlp_w); m->du = TAKE_A(m, mlp_rows * mlp_w);
    if (m->n_moe) {
        m->dyg = TAKE_A(m, N * m->k * H); m->drl = TAKE_F(m, N * m->E); m->dw = TAKE_F(m, N * m->k);
        m->drl_act = TAKE_A(m, N * m->E);
    }
    for (int l = 0; l < m->L; l++) m->act[l].router_logits = m->drl, m->act[l].expert_out = m->dyg;
}

void qw_model_rope(const qw_config *c, float *inv_freq, float *attention_scaling)
{
    int d = c->head_dim, half = d / 2;
    double base = c->rope_theta;
    if (c->rope_type != QW_ROPE_YARN) {
        for (int i = 0; i < half; i++) inv_freq[i] = (float)(1.0 / pow(base, (float)(2 * i) / (float)d));
        *attention_scaling = 1;
        return;
    }
    double orig = c->rope_original_max_position;
    double f = c->rope_factor > 0 ? c->rope_factor : c->max_position_embeddings / orig;
    double ms = c->yarn_mscale, msa = c->yarn_mscale_all_dim;
#define MSCALE(s, mm) ((s) <= 1 ? 1.0 : 0.1 * (mm) * log(s) + 1)
    if (c->rope_attention_factor > 0) *attention_scaling = (float)c->rope_attention_factor;
    else if (ms != 0 && msa != 0) *attention_scaling = (float)(MSCALE(f, ms) / MSCALE(f, msa));
    else *attention_scaling = (float)MSCALE(f, 1.0);
#undef MSCALE
    double bf = c->yarn_beta_fast > 0 ? c->yarn_beta_fast : 32, bs = c->yarn_beta_slow > 0 ? c->yarn_beta_slow : 1;
    double low = d * log(orig / (bf * 2 * M_PI)) / (2 * log(base));
    double high = d * log(orig / (bs * 2 * M_PI)) / (2 * log(base));
    if (c->yarn_truncate) low = floor(low), high = ceil(high);
    if (low < 0) low = 0;
    if (high > d - 1) high = d - 1;
    if (low == high) high += 0.001;
    for (int i = 0; i < half; i++) {
        double ramp = (i - low) / (high - low);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        double pf = pow(base, (float)(2 * i) / (float)d);
        inv_freq[i] = (float)(1 / (f * pf) * ramp + 1 / pf * (1 - ramp));
    }
}

int qw_model_new(const qw_ops *ops, const qw_params *P, int B, int T, const qw_model_opts *opts,
                 qw_model **out)
{
    const qw_config *c = &P->cfg;
    if (B < 1 || T < 1) return qw_error(QW_EXIT_DATA, "batch shape %d x %d: need at least one token", B, T);
    if (c->head_dim % 2 || c->num_key_value_heads < 1 || c->num_attention_heads % c->num_key_value_heads)
        return qw_error(QW_EXIT_DATA, "model: head_dim %d must be even and num_attention_heads %d a multiple "
                        "of num_key_value_heads %d", c->head_dim, c->num_attention_heads, c->num_key_value_heads);
    if ((size_t)B * T > (size_t)INT32_MAX / (c->num_experts_per_tok > 1 ? c->num_experts_per_tok : 1))
        return qw_error(QW_EXIT_DATA, "batch shape %d x %d: too many tokens", B, T);
    for (int l = 0; l < c->num_hidden_layers; l++)
        if (P->layer[l].is_moe && (c->num_experts_per_tok < 1 || c->num_experts_per_tok > c->num_experts))
            return qw_error(QW_EXIT_DATA, "model: num_experts_per_tok %d must be between 1 and num_experts %d",
                            c->num_experts_per_tok, c->num_experts);
    if (P->ops ? P->ops != ops : strcmp(ops->name, "cpu"))
        return qw_error(QW_EXIT_FAIL, "model: the parameters are in %s memory, not %s (qw_params_to_device)",
                        P->ops ? P->ops->name : "host", ops->name);
    if (!P->compute) return qw_error(QW_EXIT_FAIL, "model: the parameter arena has no compute copy");
    qw_model *m = qw_calloc(1, sizeof *m);
    m->ops = ops, m->P = P, m->c = c, m->as = ops->act_size;
    qw_layer_dims_init(&m->D, ops, P);
    m->B = B, m->T = T, m->N = B * T;
    m->H = c->hidden_size, m->nh = c->num_attention_heads, m->nkv = c->num_key_value_heads, m->d = c->head_dim;
    m->Q = m->nh * m->d, m->KV = m->nkv * m->d, m->V = c->vocab_size, m->L = c->num_hidden_layers;
    m->E = c->num_experts, m->k = c->num_experts_per_tok, m->Ie = c->moe_intermediate_size;
    m->eps = (float)c->rms_norm_eps, m->sm_scale = 1 / sqrtf((float)m->d);
    m->inv_temp = 1;
    for (int l = 0; l < m->L; l++) m->n_moe += P->layer[l].is_moe;
    m->capacity = m->N;
    m->recompute = opts && opts->recompute;
    if (m->n_moe && opts && opts->capacity_factor > 0) {
        double cap = ceil(opts->capacity_factor * m->N * m->k / m->E);
        if (cap < m->N) m->capacity = (int)cap;
    }
    m->chunk = (int)(ops->lm_chunk_elems / (size_t)m->V);
    if (m->chunk < 64) m->chunk = 64;
    if (m->chunk > m->N) m->chunk = m->N;
    m->x = qw_calloc(m->L + 1, sizeof *m->x);
    m->act = qw_calloc(m->L, sizeof *m->act);
    plan(m);
    uint64_t phys = qw_phys_mem_bytes();
    if (m->plan_overflow || (!strcmp(ops->name, "cpu") && phys && m->arena_bytes > phys)) {
        /* host memory: zeroing more than the machine has would bring the out-of-memory killer */
        size_t bytes = m->arena_bytes;
        int over = m->plan_overflow;
        qw_model_free(m);
        if (over) return qw_error(QW_EXIT_DATA, "batch shape %d x %d: the activations' bytes overflow 64 bits", B, T);
        return qw_error(QW_EXIT_FAIL, "batch shape %d x %d: the activations need %zu bytes, more than the machine's "
                        "memory (%llu bytes)", B, T, bytes, (unsigned long long)phys);
    }
    m->arena = ops->alloc(m->arena_bytes);
    if (!m->arena) {
        size_t bytes = m->arena_bytes;
        qw_model_free(m);
        return qw_error(QW_EXIT_FAIL, "out of %s memory for the activations (%zu bytes)", ops->name, bytes);
    }
    plan(m);
    for (int l = 0; l < m->L; l++)
        if (P->layer[l].is_moe) m->act[l].offsets = qw_calloc(m->E + 1, sizeof(int32_t));
    m->h_pos = qw_malloc(m->N * sizeof *m->h_pos);
    m->h_kvs = qw_malloc(m->N * sizeof *m->h_kvs);
    m->h_tgt = qw_malloc(m->N * sizeof *m->h_tgt);
    m->h_coef = qw_malloc(m->N * sizeof *m->h_coef);
    m->h_logp = qw_malloc(m->N * sizeof *m->h_logp);
    m->h_count = qw_calloc(m->E + 1, sizeof *m->h_count);
    m->h_psum = qw_calloc(m->E + 1, sizeof *m->h_psum);
    float inv[m->d / 2];
    qw_model_rope(c, inv, &m->rope_scale);
    ops->upload(m->inv_freq, inv, sizeof inv);
    *out = m;
    return 0;
}

void qw_model_free(qw_model *m)
{
    if (!m) return;
    if (m->arena) m->ops->free(m->arena);
    for (int l = 0; l < m->L; l++) free(m->act[l].offsets);
    free(m->act); free(m->x);
    free(m->h_pos); free(m->h_kvs); free(m->h_tgt); free(m->h_coef); free(m->h_logp);
    free(m->h_count); free(m->h_psum);
    free(m);
}

size_t qw_model_plan_bytes(const qw_model *m) { return m->arena_bytes; }

/* ---- forward ---- */

/* dx[n,in] (+)= dy·W;  dW += dyᵀ·x into the fp32 gradient arena */
static void linear_bwd_scaled(const qw_model *m, void *dx, float *dW, const void *dy, const void *x, const float *W,
                              int n, int out, int in, int acc, float alpha)
{
    m->ops->gemm(0, 0, n, in, out, alpha, dy, out, cw(m, W), in, acc ? 1 : 0, dx, in, 0);
    m->ops->gemm(1, 0, out, in, n, alpha, dy, out, x, in, 1, dW, in, 1);
}

static void linear_bwd(const qw_model *m, void *dx, float *dW, const void *dy, const void *x, const float *W,
                       int n, int out, int in, int acc)
{
    linear_bwd_scaled(m, dx, dW, dy, x, W, n, out, in, acc, 1);
}

/* logits[rows,V] (fp32) of the final hidden states from row c0, divided
 * by the temperature (the GEMM's alpha: 1 by default, so nothing changes) */
static void lm_head(const qw_model *m, int c0, int rows)
{
    m->ops->gemm(0, 1, rows, m->V, m->H, m->inv_temp, at(m, m->hf, (size_t)c0 * m->H), m->H, cw(m, m->P->lm_head), m->H, 0,
                 m->logits, m->V, 1);
}

/* One layer: the shared layer forward around the training attention. */
static void layer_forward(qw_model *m, int l)
{
    layer_act *A = &m->act[l];
    qw_layer_attn_in(&m->D, l, A, m->x[l], m->cs, m->sn, m->N);
    m->ops->attn_fwd(A->o, A->lse, A->q, A->k, A->v, m->kvs, m->B, m->T, m->nh, m->nkv, m->d, m->sm_scale,
                     m->attn_ws, m->attn_ws_bytes);
    qw_layer_attn_out(&m->D, l, A, m->x[l], m->x[l + 1], m->N, m->capacity, m->aux_count, m->aux_psum);
}

/* Host side of the batch: positions, attention starts, targets and
 * coefficients, validated. */
static int prepare_batch(qw_model *m, const qw_batch *b)
{
    int B = m->B, T = m->T, V = m->V;
    for (int i = 0; i < m->N; i++) {
        if (b->ids[i] < 0 || b->ids[i] >= V)
            return qw_error(QW_EXIT_DATA, "token id %d at row %d, position %d is outside the vocabulary (%d)",
                            b->ids[i], i / T, i % T, V);
        if (b->pos && b->pos[i] < 0)
            return qw_error(QW_EXIT_DATA, "position id %d at row %d, position %d is negative", b->pos[i], i / T, i % T);
        if (b->targets && (b->targets[i] < -1 || b->targets[i] >= V))
            return qw_error(QW_EXIT_DATA, "target %d at row %d, position %d is outside the vocabulary (%d)",
                            b->targets[i], i / T, i % T, V);
    }
    m->pairs = 0;
    for (int r = 0; r < B; r++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)r * T + t;
            int start = t == 0 || (b->seg && b->seg[i] != b->seg[i - 1]);
            m->h_kvs[i] = start ? t : m->h_kvs[i - 1];
            m->h_pos[i] = b->pos ? b->pos[i] : t - m->h_kvs[i];
            m->pairs += t - m->h_kvs[i] + 1;
        }
    if (b->targets) memcpy(m->h_tgt, b->targets, m->N * sizeof *m->h_tgt);
    else qw_objective_next_token(b->ids, NULL, B, T, m->h_tgt);
    if (b->coef) memcpy(m->h_coef, b->coef, m->N * sizeof *m->h_coef);
    else qw_objective_mean(m->h_tgt, m->N, m->h_coef);
    const qw_ops *ops = m->ops;
    ops->upload(m->ids, b->ids, m->N * sizeof *m->ids);
    ops->upload(m->pos, m->h_pos, m->N * sizeof *m->pos);
    ops->upload(m->kvs, m->h_kvs, m->N * sizeof *m->kvs);
    ops->upload(m->tgt, m->h_tgt, m->N * sizeof *m->tgt);
    ops->upload(m->coef, m->h_coef, m->N * sizeof *m->coef);
    return 0;
}

/* The LM head's gradient for rows c0 … c0+rows−1 whose logits are in
 * m->logits (ce_fwd done): ∂/∂hf into dxn, dW added to G's LM head. */
static void head_backward(qw_model *m, qw_params *G, int c0, int rows)
{
    int H = m->H, V = m->V;
    m->ops->ce_bwd(m->dlogits, m->logits, m->lse_ce + c0, m->tgt + c0, m->coef + c0, rows, V);
    /* d/dz of log_softmax(z/T) = (1/T)·(d/d(z/T)): the 1/T rides on the GEMMs' alpha */
    linear_bwd_scaled(m, at(m, m->dxn, (size_t)c0 * H), G->lm_head, m->dlogits, at(m, m->hf, (size_t)c0 * H),
                      m->P->lm_head, rows, V, H, 0, m->inv_temp);
}

/* The forward; with G, the LM head's gradient as well (qw_model_step). */
static int forward(qw_model *m, const qw_batch *b, float *logits, float *logp, qw_model_out *out, qw_params *G)
{
    const qw_ops *ops = m->ops;
    const qw_params *P = m->P;
    int N = m->N, H = m->H, V = m->V, E = m->E;
    m->have_forward = 0;
    int st = prepare_batch(m, b);
    if (st) return st;
    ops->rope_table(m->cs, m->sn, m->pos, N, m->inv_freq, m->d / 2, m->rope_scale);
    ops->embed_fwd(m->x[0], P->embed, m->ids, N, H);
    if (m->n_moe) {
        ops->zero(m->aux_count, E * sizeof(float));
        ops->zero(m->aux_psum, E * sizeof(float));
    }
    for (int l = 0; l < m->L; l++) layer_forward(m, l);
    ops->rmsnorm_fwd(m->hf, m->rstd_f, m->x[m->L], P->final_norm, N, H, m->eps);
    for (int c0 = 0; c0 < N; c0 += m->chunk) {
        int rows = c0 + m->chunk < N ? m->chunk : N - c0;
        lm_head(m, c0, rows);
        if (logits) ops->download(logits + (size_t)c0 * V, m->logits, (size_t)rows * V * sizeof *logits);
        ops->ce_fwd(m->lse_ce + c0, m->logp + c0, m->logits, m->tgt + c0, rows, V);
        if (G) head_backward(m, G, c0, rows);
    }
    ops->download(m->h_logp, m->logp, N * sizeof *m->h_logp);
    if (logp) memcpy(logp, m->h_logp, N * sizeof *logp);
    double loss = 0;
    int nt = 0;
    for (int i = 0; i < N; i++) {
        loss -= (double)m->h_coef[i] * m->h_logp[i];
        nt += m->h_tgt[i] >= 0;
    }
    m->aux = 0;
    if (m->n_moe) {
        ops->download(m->h_count, m->aux_count, E * sizeof(float));
        ops->download(m->h_psum, m->aux_psum, E * sizeof(float));
        double rows = (double)m->n_moe * N;
        for (int e = 0; e < E; e++) m->aux += (m->h_count[e] / rows) * (m->h_psum[e] / rows);
        m->aux *= E;
    }
    out->loss = loss;
    out->aux_loss = m->aux;
    out->n_targets = nt;
    m->have_forward = 1;
    return 0;
}

int qw_model_forward(qw_model *m, const qw_batch *b, float *logits, float *logp, qw_model_out *out)
{
    return forward(m, b, logits, logp, out, NULL);
}

/* ---- backward ---- */

/* The experts' linear_bwd as grouped products (expert e: rows off[e] ≤ r <
 * off[e+1] of dy [·,out] and x [·,in]; W_e = W + e·out·in):
 * dx (+)= dy·W_e; dW_e += dyᵀ·x. */
static void experts_bwd(const qw_model *m, void *dx, float *dW, const void *dy, const void *x, const float *W,
                        const int32_t *off, int out, int in, int acc)
{
    int E = m->E;
    int *dims = qw_malloc(3 * (size_t)E * sizeof *dims);
    const void **ptr = qw_malloc(3 * (size_t)E * sizeof *ptr);
    int *rows = dims, *outs = dims + E, *ins = dims + 2 * E;
    for (int e = 0; e < E; e++) {
        rows[e] = off[e + 1] - off[e], outs[e] = out, ins[e] = in;
        ptr[e] = at(m, dy, (size_t)off[e] * out);
        ptr[E + e] = cw(m, W + (size_t)e * out * in);
        ptr[2 * E + e] = at(m, dx, (size_t)off[e] * in);
    }
    qw_layer_gemm_grouped(m->ops, 0, 0, E, rows, ins, outs, 1, ptr, out, ptr + E, in, acc ? 1 : 0,
                          (void *const *)(ptr + 2 * E), in, 0);
    for (int e = 0; e < E; e++) {   /* dW_e [out,in] += dy_eᵀ·x_e: the rows are the reduction */
        ptr[E + e] = at(m, x, (size_t)off[e] * in);
        ptr[2 * E + e] = dW + (size_t)e * out * in;
    }
    qw_layer_gemm_grouped(m->ops, 1, 0, E, outs, ins, rows, 1, ptr, out, ptr + E, in, 1, (void *const *)(ptr + 2 * E),
                          in, 1);
    free(ptr);
    free(dims);
}

static void moe_backward(qw_model *m, const qw_layer_params *W, qw_layer_params *G, layer_act *A, int aux)
{
    const qw_ops *ops = m->ops;
    int N = m->N, H = m->H, E = m->E, k = m->k, Ie = m->Ie;
    const int32_t *off = A->offsets;
    ops->gather_rows(m->dyg, m->dx, A->rows, A->kept, H);
    /* down projection: da (still unweighted by w) and dW */
    experts_bwd(m, m->da, G->exp_down, m->dyg, A->aw, W->exp_down, off, H, Ie, 0);
    ops->zero(m->dw, (size_t)N * k * sizeof(float));
    ops->row_dot(m->dw, m->da, A->a, A->slots, A->kept, Ie);
    ops->scale_rows(m->da, m->da, A->w, A->slots, A->kept, Ie);
    ops->swiglu_bwd(m->da, m->du, m->da, A->g, A->u, (size_t)A->kept * Ie);
    /* gate and up projections, input gradient into dyg */
    experts_bwd(m, m->dyg, G->exp_gate, m->da, A->xg, W->exp_gate, off, Ie, H, 0);
    experts_bwd(m, m->dyg, G->exp_up, m->du, A->xg, W->exp_up, off, Ie, H, 1);
    ops->zero(m->dxn, (size_t)N * H * m->as);
    ops->scatter_add_rows(m->dxn, m->dyg, A->rows, A->kept, H);
    ops->moe_route_bwd(m->drl, m->dw, A->probs, A->sel, A->w, aux ? m->aux_dprobs : NULL, N, E, k,
                       m->c->norm_topk_prob);
    ops->to_act(m->drl_act, m->drl, (size_t)N * E);
    linear_bwd(m, m->dxn, G->router, m->drl_act, A->xn2, W->router, N, E, H, 1);
}

static void layer_backward(qw_model *m, qw_params *grads, int l, int aux)
{
    const qw_ops *ops = m->ops;
    const qw_layer_params *W = &m->P->layer[l];
    qw_layer_params *G = &grads->layer[l];
    layer_act *A = &m->act[l];
    int N = m->N, H = m->H, Q = m->Q, KV = m->KV, d = m->d;

    if (m->recompute) {   /* what the forward computed but did not keep */
        ops->rmsnorm_fwd(A->xn1, A->rstd1, m->x[l], W->input_norm, N, H, m->eps);
        ops->rmsnorm_fwd(A->xn2, A->rstd2, A->xm, W->post_norm, N, H, m->eps);
        if (!W->is_moe) qw_layer_mlp_in(&m->D, l, A, N);
    }

    /* m->dx holds ∂/∂(layer output); the MLP branch */
    if (W->is_moe) {
        moe_backward(m, W, G, A, aux);
    } else {
        int I = m->c->intermediate_size;
        linear_bwd(m, m->da, G->down, m->dx, A->a, W->down, N, H, I, 0);
        ops->swiglu_bwd(m->da, m->du, m->da, A->g, A->u, (size_t)N * I);
        linear_bwd(m, m->dxn, G->gate, m->da, A->xn2, W->gate, N, I, H, 0);
        linear_bwd(m, m->dxn, G->up, m->du, A->xn2, W->up, N, I, H, 1);
    }
    ops->rmsnorm_bwd(m->dx, G->post_norm, m->dxn, A->xm, W->post_norm, A->rstd2, N, H, 1);

    /* the attention branch */
    linear_bwd(m, m->dout, G->o, m->dx, A->o, W->o, N, H, Q, 0);
    ops->attn_bwd(m->dq, m->dk, m->dv, m->dout, A->q, A->k, A->v, A->o, A->lse, m->kvs,
                  m->B, m->T, m->nh, m->nkv, d, m->sm_scale, m->attn_ws, m->attn_ws_bytes);
    void *dqp = m->dout;   /* free again after attn_bwd */
    ops->qk_norm_rope_bwd(dqp, G->q_norm, m->dq, A->qp, W->q_norm, A->rq, m->cs, m->sn, N, m->nh, d);
    ops->qk_norm_rope_bwd(m->dkp, G->k_norm, m->dk, A->kp, W->k_norm, A->rk, m->cs, m->sn, N, m->nkv, d);
    linear_bwd(m, m->dxn, G->q, dqp, A->xn1, W->q, N, Q, H, 0);
    linear_bwd(m, m->dxn, G->k, m->dkp, A->xn1, W->k, N, KV, H, 1);
    linear_bwd(m, m->dxn, G->v, m->dv, A->xn1, W->v, N, KV, H, 1);
    ops->rmsnorm_bwd(m->dx, G->input_norm, m->dxn, m->x[l], W->input_norm, A->rstd1, N, H, 1);
}

static int check_grads(const qw_model *m, const qw_params *grads)
{
    if (grads->total != m->P->total || grads->ops != m->P->ops)
        return qw_error(QW_EXIT_FAIL, "model: gradient arena does not match the parameters");
    return 0;
}

/* Everything below the LM head, from ∂/∂hf in dxn. */
static void backward_body(qw_model *m, qw_params *grads, float aux_coef)
{
    const qw_ops *ops = m->ops;
    int N = m->N, H = m->H, E = m->E;
    ops->rmsnorm_bwd(m->dx, grads->final_norm, m->dxn, m->x[m->L], m->P->final_norm, m->rstd_f, N, H, 0);

    int aux = m->n_moe && aux_coef != 0;
    if (aux) {   /* ∂(aux_coef·aux)/∂probs[row][e] = aux_coef·E·f[e]/rows */
        double rows = (double)m->n_moe * N;
        float g[E];
        for (int e = 0; e < E; e++) g[e] = (float)(aux_coef * E * (m->h_count[e] / rows) / rows);
        ops->upload(m->aux_dprobs, g, E * sizeof *g);
    }
    for (int l = m->L - 1; l >= 0; l--) layer_backward(m, grads, l, aux);
    ops->embed_bwd(grads->embed, m->dx, m->ids, N, H);
}

int qw_model_set_temperature(qw_model *m, double temperature)
{
    if (!(temperature > 0) || !isfinite(temperature))
        return qw_error(QW_EXIT_USAGE, "model: temperature %g (need a finite value > 0)", temperature);
    m->inv_temp = temperature == 1 ? 1.0f : (float)(1 / temperature);
    m->have_forward = 0;
    return 0;
}

int qw_model_set_coef(qw_model *m, const float *coef)
{
    if (!m->have_forward) return qw_error(QW_EXIT_FAIL, "model: coefficients without a forward");
    memcpy(m->h_coef, coef, m->N * sizeof *m->h_coef);
    m->ops->upload(m->coef, m->h_coef, m->N * sizeof *m->coef);
    return 0;
}

int qw_model_backward(qw_model *m, qw_params *grads, float aux_coef)
{
    if (!m->have_forward) return qw_error(QW_EXIT_FAIL, "model: backward without a forward");
    int st = check_grads(m, grads);
    if (st) return st;
    /* LM head and cross-entropy, chunk by chunk, logits recomputed */
    for (int c0 = 0; c0 < m->N; c0 += m->chunk) {
        int rows = c0 + m->chunk < m->N ? m->chunk : m->N - c0;
        lm_head(m, c0, rows);
        head_backward(m, grads, c0, rows);
    }
    backward_body(m, grads, aux_coef);
    return 0;
}

int qw_model_step(qw_model *m, const qw_batch *b, qw_params *grads, float aux_coef, qw_model_out *out)
{
    int st = check_grads(m, grads);
    if (!st) st = forward(m, b, NULL, NULL, out, grads);
    if (st) return st;
    backward_body(m, grads, aux_coef);
    m->have_forward = 0;
    return 0;
}

double qw_model_matmul_flops(const qw_model *m)
{
    const qw_config *c = m->c;
    double per_tok = (double)m->V * m->H;   /* LM head */
    for (int l = 0; l < m->L; l++) {
        per_tok += (double)m->H * (2.0 * m->Q + 2.0 * m->KV);
        if (m->P->layer[l].is_moe) per_tok += (double)m->E * m->H + 3.0 * m->k * m->H * m->Ie;
        else per_tok += 3.0 * m->H * c->intermediate_size;
    }
    return 6 * per_tok * m->N + 12.0 * m->nh * m->d * m->L * m->pairs;
}
