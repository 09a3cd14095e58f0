/* infer.c — the generation engine (qw/infer.h): a paged K/V cache,
 * continuous batching, prefill and decode through the shared layer
 * forward (qw/layer.h), sampling through ops->sample. */
#define _GNU_SOURCE
#include "qw/infer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/kvcache.h"
#include "qw/layer.h"
#include "qw/model.h"
#include "qw/rng.h"
#include "qw/size.h"

const char qw_engine_think_stop[] =
    "\n\nConsidering the limited time by the user, I have to give the solution based on the thinking directly now.\n"
    "</think>\n\n";

struct qw_engine {
    const qw_ops *ops;
    const qw_params *P;
    qw_layer_dims D;
    qw_engine_opts o;
    int L, V, H, KV, d, bs, max_blocks, n_blocks;
    float rope_scale, sm_scale;
    char *cache;                      /* K and V pools of every layer */
    size_t cache_bytes;
    void **kc, **vc;                  /* [L] views */
    float *inv_freq;                  /* device [d/2] */
    qw_kv_pool pool;                  /* which blocks are free, shared, promised */

    /* the activation plan: R rows per step, B = max_batch sampled rows */
    int R;
    char *arena;
    size_t arena_bytes;
    qw_layer_act A;
    void *x, *xo, *hsel, *hn;
    float *rstd_f, *cs, *sn, *logits, *slog, *logp, *raw;
    int32_t *ids, *pos, *slots, *seq, *tables, *sel_rows, *tok, *forced, *kvs;
    double *u;
    void *attn_ws, *samp_ws, *fa_ws;
    size_t attn_ws_bytes, fa_ws_bytes;
    int32_t *h_offsets;

    /* decode steps as graphs (qw/infer.h, Graphs): per bucket of rows */
    int graphs, pad_block, n_buckets;
    int *bucket_rows, *tries;         /* [n_buckets]: rows; direct runs / recordings tried so far */
    void **graph;                     /* [n_buckets] */
};

void qw_engine_get_opts(const qw_engine *e, qw_engine_opts *o) { *o = e->o; }
size_t qw_engine_cache_bytes(const qw_engine *e) { return e->cache_bytes; }

static int ceil_div(long long a, long long b) { return (int)((a + b - 1) / b); }

int qw_engine_new(const qw_ops *ops, const qw_params *P, const qw_engine_opts *opts, qw_engine **out)
{
    const qw_config *c = &P->cfg;
    if (!P->lm_head)
        return qw_error(QW_EXIT_DATA, "a reward model (score.weight, no LM head) cannot generate text");
    if (!ops->kv_write || !ops->attn_paged || !ops->sample)
        return qw_error(QW_EXIT_FAIL, "the %s backend has no decode path yet", ops->name);
    if (opts && opts->batch_invariant && !ops->set_batch_invariant)
        return qw_error(QW_EXIT_FAIL, "the %s backend cannot compute rows independently of the batch", ops->name);
    if (P->ops ? P->ops != ops : strcmp(ops->name, "cpu"))
        return qw_error(QW_EXIT_FAIL, "engine: the parameters are in %s memory, not %s (qw_params_to_device)",
                        P->ops ? P->ops->name : "host", ops->name);
    if (c->head_dim % 2 || c->num_key_value_heads < 1 || c->num_attention_heads % c->num_key_value_heads)
        return qw_error(QW_EXIT_DATA, "model: head_dim %d must be even and num_attention_heads %d a multiple "
                        "of num_key_value_heads %d", c->head_dim, c->num_attention_heads, c->num_key_value_heads);
    qw_engine_opts o = opts ? *opts : (qw_engine_opts){0};
    if (o.max_batch <= 0) o.max_batch = 64;
    if (o.block_size <= 0) o.block_size = 16;
    if (o.max_context <= 0) o.max_context = c->max_position_embeddings;
    if (o.max_context < 2) return qw_error(QW_EXIT_USAGE, "engine: a context of %d tokens leaves no room to generate", o.max_context);
    if (o.cache_tokens <= 0) o.cache_tokens = (long long)o.max_batch * o.max_context;
    if (o.cache_tokens < o.block_size) o.cache_tokens = o.block_size;
    long long nb = (o.cache_tokens + o.block_size - 1) / o.block_size;
    if (nb > INT32_MAX / o.block_size) return qw_error(QW_EXIT_USAGE, "engine: a cache of %lld tokens is too large", o.cache_tokens);
    qw_engine *e = qw_calloc(1, sizeof *e);
    e->ops = ops, e->P = P, e->o = o;
    qw_layer_dims_init(&e->D, ops, P);
    e->L = c->num_hidden_layers, e->V = c->vocab_size, e->H = c->hidden_size, e->KV = e->D.KV, e->d = c->head_dim;
    e->bs = o.block_size, e->n_blocks = (int)nb, e->max_blocks = ceil_div(o.max_context, o.block_size);
    e->sm_scale = 1 / sqrtf((float)e->d);
    size_t pool, bytes;
    uint64_t phys = qw_phys_mem_bytes();
    /* one block more than the pool hands out: where the rows that pad a graph's bucket write */
    if (qw_mul_size((size_t)(nb + 1) * e->bs, (size_t)e->KV * ops->act_size, &pool) ||
        qw_mul_size(pool, (size_t)2 * e->L, &bytes) || (!strcmp(ops->name, "cpu") && phys && bytes > phys)) {
        free(e);
        return qw_error(QW_EXIT_FAIL, "engine: a K/V cache of %lld tokens needs more memory than the machine has",
                        o.cache_tokens);
    }
    e->cache_bytes = bytes;
    e->cache = ops->alloc(bytes);
    e->inv_freq = ops->alloc((size_t)e->d / 2 * sizeof(float));
    if (!e->cache || !e->inv_freq) {
        qw_engine_free(e);
        return qw_error(QW_EXIT_FAIL, "out of %s memory for a K/V cache of %zu bytes", ops->name, bytes);
    }
    e->kc = qw_calloc(e->L, sizeof *e->kc);
    e->vc = qw_calloc(e->L, sizeof *e->vc);
    for (int l = 0; l < e->L; l++) e->kc[l] = e->cache + 2 * l * pool, e->vc[l] = e->cache + (2 * l + 1) * pool;
    qw_kv_pool_init(&e->pool, e->n_blocks, e->bs);
    float inv[e->d / 2];
    qw_model_rope(c, inv, &e->rope_scale);
    ops->upload(e->inv_freq, inv, sizeof inv);
    e->h_offsets = qw_calloc(c->num_experts + 1, sizeof *e->h_offsets);
    e->pad_block = e->n_blocks;
    int moe = 0;
    for (int l = 0; l < e->L; l++) moe |= P->layer[l].is_moe;
    const char *env = getenv("QW_ENGINE_GRAPHS");
    e->graphs = ops->graph_begin && !o.no_graphs && !moe && !(env && !strcmp(env, "0"));
    if (e->graphs) {   /* buckets: 1, 2, 4, 8, then every multiple of 8, up to max_batch */
        e->bucket_rows = qw_calloc(o.max_batch / 8 + 4, sizeof *e->bucket_rows);
        for (int r = 1; r < o.max_batch; r = r < 8 ? 2 * r : r + 8) e->bucket_rows[e->n_buckets++] = r;
        e->bucket_rows[e->n_buckets++] = o.max_batch;
        e->tries = qw_calloc(e->n_buckets, sizeof *e->tries);
        e->graph = qw_calloc(e->n_buckets, sizeof *e->graph);
    }
    *out = e;
    return 0;
}

static void drop_graphs(qw_engine *e)
{
    for (int b = 0; b < e->n_buckets; b++) {
        e->ops->graph_free(e->graph[b]);
        e->graph[b] = NULL, e->tries[b] = 0;
    }
}

void qw_engine_free(qw_engine *e)
{
    if (!e) return;
    if (e->cache) e->ops->free(e->cache);
    if (e->inv_freq) e->ops->free(e->inv_freq);
    if (e->arena) e->ops->free(e->arena);
    if (e->graphs) drop_graphs(e);
    free(e->bucket_rows); free(e->tries); free(e->graph);
    free(e->kc); free(e->vc); free(e->h_offsets);
    qw_kv_pool_free(&e->pool);
    free(e);
}

/* ---- the activation plan ---- */

typedef struct { char *base; size_t n; int over; } carver;

static void *carve(carver *c, size_t n, size_t size)
{
    size_t b;
    void *p = c->base ? c->base + c->n : NULL;
    if (qw_mul_size(n, size, &b) || b > SIZE_MAX / 2 || __builtin_add_overflow(c->n, (b + 63) / 64 * 64, &c->n)) c->over = 1;
    return p;
}

/* Carve every buffer for R rows; with base NULL only count. */
static void plan(qw_engine *e, carver *cv, int R)
{
    const qw_layer_dims *D = &e->D;
    size_t as = D->as, r = R, B = e->o.max_batch, V = e->V, H = e->H;
    int moe = 0;
    for (int l = 0; l < e->L; l++) moe |= e->P->layer[l].is_moe;
    size_t rk = moe ? r * D->k : 0, mlp = r * D->I;
    if (moe && rk * D->Ie > mlp) mlp = rk * D->Ie;
    qw_layer_act *A = &e->A;
    memset(A, 0, sizeof *A);
#define CA(n) carve(cv, (n), as)
#define CF(n) ((float *)carve(cv, (n), sizeof(float)))
#define CI(n) ((int32_t *)carve(cv, (n), sizeof(int32_t)))
    e->x = CA(r * H); e->xo = CA(r * H);
    A->xn1 = CA(r * H); A->rstd1 = CF(r);
    A->qp = CA(r * D->Q); A->kp = CA(r * D->KV); A->v = CA(r * D->KV);
    A->rq = CF(r * D->nh); A->rk = CF(r * D->nkv);
    A->q = CA(r * D->Q); A->k = CA(r * D->KV); A->o = CA(r * D->Q);
    A->xm = CA(r * H); A->xn2 = CA(r * H); A->rstd2 = CF(r);
    A->g = CA(mlp); A->u = CA(mlp); A->a = CA(mlp);
    if (moe) {
        A->aw = CA(rk * D->Ie); A->xg = CA(rk * H);
        A->probs = CF(r * D->E); A->w = CF(rk); A->sel = CI(rk); A->rows = CI(rk); A->slots = CI(rk);
        A->router_logits = CF(r * D->E); A->expert_out = CA(rk * H);
    }
    A->offsets = e->h_offsets;
    e->cs = CF(r * e->d / 2); e->sn = CF(r * e->d / 2);
    e->ids = CI(r); e->pos = CI(r); e->slots = CI(r); e->seq = CI(r);
    e->tables = CI(2 * B * e->max_blocks); e->sel_rows = CI(2 * B);
    e->hsel = CA(2 * B * H); e->hn = CA(2 * B * H); e->rstd_f = CF(2 * B);
    e->logits = CF(2 * B * V); e->slog = CF(B * V);
    e->tok = CI(B); e->forced = CI(B); e->logp = CF(B); e->raw = CF(B);
    e->u = carve(cv, B, sizeof(double));
    e->attn_ws_bytes = e->ops->attn_paged_workspace(D->nh, D->nkv, e->max_blocks * e->bs);
    e->attn_ws = carve(cv, e->attn_ws_bytes, 1);
    /* prefill: the training attention over the step's prompts packed as one row of documents */
    A->lse = CF(r * D->nh);
    e->kvs = CI(r);
    e->fa_ws_bytes = e->ops->attn_workspace(1, R, D->nh, e->d);
    e->fa_ws = carve(cv, e->fa_ws_bytes, 1);
    e->samp_ws = carve(cv, e->ops->sample_workspace((int)B, (int)V), 1);
#undef CA
#undef CF
#undef CI
}

static int ensure_rows(qw_engine *e, int R)
{
    if (e->arena && e->R >= R) return 0;
    carver cv = {0};
    plan(e, &cv, R);
    uint64_t phys = qw_phys_mem_bytes();
    if (cv.over || (!strcmp(e->ops->name, "cpu") && phys && cv.n > phys))
        return qw_error(QW_EXIT_FAIL, "engine: %d rows per step need more memory than the machine has", R);
    if (e->arena) e->ops->free(e->arena);
    if (e->graphs) drop_graphs(e);   /* they recorded the old activations */
    e->arena = e->ops->alloc(cv.n);
    if (!e->arena) return qw_error(QW_EXIT_FAIL, "out of %s memory for the engine's activations (%zu bytes)", e->ops->name, cv.n);
    e->arena_bytes = cv.n;
    cv = (carver){e->arena, 0, 0};
    plan(e, &cv, R);
    e->R = R;
    return 0;
}

/* ---- generation state ---- */

typedef struct {
    const qw_gen_prompt *p;
    qw_kv_seq kv;                     /* the prompt's blocks, held while samples wait */
    int prefilled, holds, next, done, row, open_think;
    float *logits;                    /* host [V]: last-position logits while samples wait */
    qw_completion *c;                 /* [n] */
} group;

typedef struct {
    group *g;
    int j;
    qw_kv_seq kv;
    int len;
    int32_t pending;
    qw_completion c;
    int cap;
    int thinking, think_count, budget_used, forced_pos;
} seqn;

typedef struct {
    qw_engine *e;
    const qw_gen_opts *g;
    group *groups;
    int n_groups, cur, lo;            /* groups before lo have every sample started */
    seqn **run;
    int n_run;
    int32_t *think_ids;               /* the budget's text, tokenized */
    int n_think;
    int32_t think_open, think_close;
    size_t stop_max;                  /* longest stop string, bytes */
    qw_buf text;
    qw_gen_stats st;
} gen;

/* Blocks a sample may take beyond the prompt's: its copy of a partly filled
 * last prompt block and everything max_new_tokens can write. */
static int sample_need(const gen *G, int P)
{
    long long room = G->e->o.max_context - P, mn = G->g->max_new_tokens < room ? G->g->max_new_tokens : room;
    return ceil_div(P % G->e->bs + mn, G->e->bs);
}

static void seq_push(seqn *s, int32_t tok, float lp, float raw)
{
    if (s->c.n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->c.ids = qw_realloc(s->c.ids, s->cap * sizeof *s->c.ids);
        s->c.logprobs = qw_realloc(s->c.logprobs, s->cap * sizeof *s->c.logprobs);
        s->c.raw_logprobs = qw_realloc(s->c.raw_logprobs, s->cap * sizeof *s->c.raw_logprobs);
    }
    s->c.ids[s->c.n] = tok, s->c.logprobs[s->c.n] = lp, s->c.raw_logprobs[s->c.n] = raw;
    s->c.n++;
}

static void completion_free(qw_completion *c)
{
    free(c->ids); free(c->logprobs); free(c->raw_logprobs);
    memset(c, 0, sizeof *c);
}

/* Whether the completion's decoded tail contains a stop string. */
static int hit_stop_string(gen *G, const seqn *s)
{
    if (!G->g->n_stop) return 0;
    int k = s->c.n < (int)G->stop_max ? s->c.n : (int)G->stop_max;
    G->text.n = 0;
    int32_t ids[k > 0 ? k : 1];
    int m = 0;
    for (int i = s->c.n - k; i < s->c.n; i++)   /* the model's padding ids have no text */
        if (qw_tok_id_to_token(G->g->tok, s->c.ids[i])) ids[m++] = s->c.ids[i];
    if (qw_tok_decode(G->g->tok, ids, m, 0, &G->text)) return 0;
    for (int i = 0; i < G->g->n_stop; i++)
        if (memmem(G->text.p, G->text.n, G->g->stop[i], strlen(G->g->stop[i]))) return 1;
    return 0;
}

static void release_seq(gen *G, seqn *s)
{
    qw_kv_seq_release(&G->e->pool, &s->kv);
}

/* A new token of sequence s: record it, follow the thinking state, decide
 * whether s ends.  Returns 1 when it does. */
static int apply_token(gen *G, seqn *s, int32_t tok, float lp, float raw)
{
    const qw_gen_opts *g = G->g;
    seq_push(s, tok, lp, raw);
    s->pending = tok;
    if (s->forced_pos >= 0 && ++s->forced_pos == G->n_think) s->forced_pos = -1;
    if (tok == G->think_open && G->think_open >= 0) s->thinking = 1, s->think_count = 0;
    else if (tok == G->think_close && G->think_close >= 0) s->thinking = 0;
    else if (s->thinking) s->think_count++;
    int fin = 0;
    for (int i = 0; i < g->n_stop_ids && !fin; i++) fin = tok == g->stop_ids[i];
    if (!fin && s->forced_pos < 0) fin = hit_stop_string(G, s);
    if (fin) s->c.finish = QW_FINISH_STOP;
    else if (s->c.n >= g->max_new_tokens || s->g->p->n + s->c.n >= G->e->o.max_context) fin = 1, s->c.finish = QW_FINISH_LENGTH;
    return fin;
}

/* Sequence s is done: free its blocks, hand its completion to its group,
 * and the group's to the caller when it is complete. */
static int finish_seq(gen *G, seqn *s, qw_gen_done_fn done, void *ctx)
{
    release_seq(G, s);
    group *gr = s->g;
    gr->c[s->j] = s->c;
    free(s);
    if (++gr->done < G->g->n) return 0;
    G->st.prompts_done++;
    int rc = done ? done(ctx, (int)(gr - G->groups), gr->c) : 0;
    for (int j = 0; j < G->g->n; j++) completion_free(&gr->c[j]);
    free(gr->c);
    gr->c = NULL;
    return rc;
}

/* The next token's forced value for s (the thinking budget), or −1. */
static int32_t forced_token(gen *G, seqn *s)
{
    int budget = G->g->thinking_budget;
    if (budget >= 0 && G->n_think && s->thinking && !s->budget_used && s->forced_pos < 0 && s->think_count >= budget) {
        s->budget_used = 1;
        s->forced_pos = 0;
        s->c.forced_at = s->c.n;
    }
    return s->forced_pos >= 0 ? G->think_ids[s->forced_pos] : -1;
}

static int check_opts(const qw_engine *e, const qw_gen_opts *g)
{
    if (g->n < 1) return qw_error(QW_EXIT_USAGE, "samples per prompt: %d, need at least 1", g->n);
    if (g->max_new_tokens < 1) return qw_error(QW_EXIT_USAGE, "max new tokens: %d, need at least 1", g->max_new_tokens);
    if (!(g->temperature >= 0) || !isfinite(g->temperature)) return qw_error(QW_EXIT_USAGE, "temperature %g: need a finite value >= 0", g->temperature);
    if (!(g->top_p > 0 && g->top_p <= 1)) return qw_error(QW_EXIT_USAGE, "top-p %g: need 0 < P <= 1", g->top_p);
    if ((g->n_stop || g->thinking_budget >= 0) && !g->tok)
        return qw_error(QW_EXIT_USAGE, "stop strings and a thinking budget need a tokenizer");
    for (int i = 0; i < g->n_stop; i++)
        if (!g->stop[i][0]) return qw_error(QW_EXIT_USAGE, "an empty stop string");
    for (int i = 0; i < g->n_stop_ids; i++)
        if (g->stop_ids[i] < 0 || g->stop_ids[i] >= e->V)
            return qw_error(QW_EXIT_USAGE, "stop id %d is outside the vocabulary (%d)", g->stop_ids[i], e->V);
    return 0;
}

/* Admit waiting samples while there is room; returns the number of new
 * sequences (their first token comes from their group's logits). */
static int admit(gen *G, seqn **fresh, group **pre, int *n_pre, int *pre_rows, int cap_rows)
{
    qw_engine *e = G->e;
    int nf = 0;
    while (G->n_run + nf < e->o.max_batch && G->cur < G->n_groups) {
        group *gr = &G->groups[G->cur];
        if (gr->next == G->g->n) { G->cur++; continue; }
        int P = gr->p->n, need = sample_need(G, P);
        if (!gr->prefilled) {
            int np = ceil_div(P, e->bs);
            if (*pre_rows + P > cap_rows || qw_kv_available(&e->pool) < np + need) break;
            qw_kv_seq_init(&gr->kv, e->max_blocks);
            qw_kv_reserve(&e->pool, &gr->kv, np);
            for (int b = 0; b < np; b++) qw_kv_seq_grow(&e->pool, &gr->kv);
            gr->prefilled = 1, gr->holds = 1, gr->row = *n_pre;
            pre[(*n_pre)++] = gr;
            *pre_rows += P;
            gr->c = qw_calloc(G->g->n, sizeof *gr->c);
        } else if (qw_kv_available(&e->pool) < need) {
            break;
        }
        seqn *s = qw_calloc(1, sizeof *s);
        s->g = gr, s->j = gr->next++;
        qw_kv_seq_init(&s->kv, e->max_blocks);
        qw_kv_seq_share(&e->pool, &s->kv, &gr->kv);
        qw_kv_reserve(&e->pool, &s->kv, need);
        s->len = P;
        s->thinking = gr->open_think, s->forced_pos = -1, s->c.forced_at = -1;
        fresh[nf++] = s;
    }
    return nf;
}

/* The slot where s writes its pending token, taking or copying a block
 * first when needed. */
static int32_t decode_slot(qw_engine *e, seqn *s)
{
    int32_t from, to, slot = qw_kv_seq_slot(&e->pool, &s->kv, s->len, &from, &to);
    if (from >= 0) {   /* a shared, partly filled block: copy on write */
        size_t bb = (size_t)e->bs * e->KV * e->ops->act_size;
        for (int l = 0; l < e->L; l++) {
            e->ops->copy((char *)e->kc[l] + to * bb, (char *)e->kc[l] + from * bb, bb);
            e->ops->copy((char *)e->vc[l] + to * bb, (char *)e->vc[l] + from * bb, bb);
        }
    }
    return slot;
}

/* One forward over n rows (host arrays uploaded by the caller): rows
 * [0, nd) decode one token each through the paged attention; rows [nd, n)
 * are whole prompts, which attend only to themselves: the training
 * attention (ops->attn_fwd, flash attention on a GPU) over them packed as
 * one row of documents (kv_start in e->kvs).  Every row's K/V goes into
 * the cache first.  The final hidden states of rows sel[0..m) go through
 * the LM head into e->logits. */
static void forward_rows(qw_engine *e, int n, int nd, int m)
{
    const qw_ops *ops = e->ops;
    const qw_params *P = e->P;
    const qw_layer_dims *D = &e->D;
    if (e->o.batch_invariant) nd = n;   /* every row through the paged attention */
    ops->embed_fwd(e->x, P->embed, e->ids, n, e->H);
    ops->rope_table(e->cs, e->sn, e->pos, n, e->inv_freq, e->d / 2, e->rope_scale);
    void *x = e->x, *xo = e->xo;
    for (int l = 0; l < e->L; l++) {
        qw_layer_attn_in(D, l, &e->A, x, e->cs, e->sn, n);
        ops->kv_write(e->kc[l], e->vc[l], e->A.k, e->A.v, e->slots, n, e->KV);
        if (nd)
            ops->attn_paged(e->A.o, e->A.q, e->kc[l], e->vc[l], e->tables, e->max_blocks, e->seq, e->pos, nd, D->nh,
                            D->nkv, e->d, e->bs, e->sm_scale, e->attn_ws, e->attn_ws_bytes);
        if (n > nd) {
            size_t as = D->as;
            ops->attn_fwd((char *)e->A.o + (size_t)nd * D->Q * as, e->A.lse, (char *)e->A.q + (size_t)nd * D->Q * as,
                          (char *)e->A.k + (size_t)nd * D->KV * as, (char *)e->A.v + (size_t)nd * D->KV * as, e->kvs,
                          1, n - nd, D->nh, D->nkv, e->d, e->sm_scale, e->fa_ws, e->fa_ws_bytes);
        }
        qw_layer_attn_out(D, l, &e->A, x, xo, n, n, NULL, NULL);
        void *t = x; x = xo; xo = t;
    }
    ops->gather_rows(e->hsel, x, e->sel_rows, m, e->H);
    ops->rmsnorm_fwd(e->hn, e->rstd_f, e->hsel, P->final_norm, m, e->H, D->eps);
    ops->gemm(0, 1, m, e->V, e->H, 1, e->hn, e->H, qw_layer_cw(D, P->lm_head), e->H, 0, e->logits, e->V, 1);
}

/* A step that only decodes n rows, padded to the smallest bucket that holds
 * them (the caller uploaded the padded rows' inputs): the bucket's graph,
 * made on its second use; directly when no graph can be made. */
static int bucket_of(const qw_engine *e, int n)
{
    int b = 0;
    while (e->bucket_rows[b] < n) b++;
    return b;
}

static void decode_rows(qw_engine *e, int nb)
{
    const qw_ops *ops = e->ops;
    int b = bucket_of(e, nb);
    if (e->graph[b]) {
        if (!ops->graph_launch(e->graph[b])) return;
        ops->graph_free(e->graph[b]);   /* stale: record it again */
        e->graph[b] = NULL, e->tries[b] = 1;
    }
    /* tries: 0 never run; 1 run directly; 2, 3 recording failed once, twice (then directly from now on) */
    if (e->tries[b] >= 1 && e->tries[b] <= 2 && !ops->graph_begin()) {
        forward_rows(e, nb, nb, nb);
        if ((e->graph[b] = ops->graph_end()) && !ops->graph_launch(e->graph[b])) return;
        ops->graph_free(e->graph[b]);
        e->graph[b] = NULL;
    }
    e->tries[b]++;
    forward_rows(e, nb, nb, nb);
}

static void gen_free(gen *G)
{
    for (int i = 0; i < G->n_run; i++) {
        release_seq(G, G->run[i]);
        completion_free(&G->run[i]->c);
        free(G->run[i]);
    }
    for (int i = 0; i < G->n_groups; i++) {
        group *gr = &G->groups[i];
        if (gr->holds) qw_kv_seq_release(&G->e->pool, &gr->kv);
        if (gr->c)
            for (int j = 0; j < G->g->n; j++) completion_free(&gr->c[j]);
        free(gr->c); free(gr->logits);
    }
    free(G->groups); free(G->run); free(G->think_ids);
    qw_buf_free(&G->text);
}

int qw_engine_generate(qw_engine *e, const qw_gen_prompt *prompts, int n_prompts, const qw_gen_opts *g,
                       qw_gen_done_fn done, qw_gen_step_fn step, void *ctx)
{
    int st = check_opts(e, g);
    if (st) return st;
    const qw_ops *ops = e->ops;
    int B = e->o.max_batch, V = e->V, maxP = 1;
    for (int i = 0; i < n_prompts; i++) {
        const qw_gen_prompt *p = &prompts[i];
        if (p->n < 1) return qw_error(QW_EXIT_DATA, "prompt %d: no tokens", i);
        if (p->n >= e->o.max_context)
            return qw_error(QW_EXIT_DATA, "prompt %d: %d tokens leave no room to generate in a context of %d",
                            i, p->n, e->o.max_context);
        for (int t = 0; t < p->n; t++)
            if (p->ids[t] < 0 || p->ids[t] >= V)
                return qw_error(QW_EXIT_DATA, "prompt %d: token %d is %d, outside the vocabulary (%d)", i, t, p->ids[t], V);
        if (p->index > UINT32_MAX) return qw_error(QW_EXIT_USAGE, "prompt %d: index %llu is 2^32 or more", i,
                                                   (unsigned long long)p->index);
        maxP = p->n > maxP ? p->n : maxP;
    }
    gen G = {.e = e, .g = g, .n_groups = n_prompts, .think_open = -1, .think_close = -1};
    for (int i = 0; i < n_prompts; i++) {
        int need = ceil_div(prompts[i].n, e->bs) + sample_need(&G, prompts[i].n);
        if (need > e->n_blocks)
            return qw_error(QW_EXIT_USAGE, "prompt %d: %d tokens and %d new ones need %d cache blocks of %d tokens; the "
                            "cache has %d", i, prompts[i].n, g->max_new_tokens, need, e->bs, e->n_blocks);
    }
    int pf = e->o.prefill_tokens > 0 ? e->o.prefill_tokens : strcmp(ops->name, "cpu") ? 8192 : maxP;
    if ((st = ensure_rows(e, B + (pf > maxP ? pf : maxP)))) return st;
    if (g->tok) {
        G.think_open = qw_tok_token_to_id(g->tok, "<think>");
        G.think_close = qw_tok_token_to_id(g->tok, "</think>");
        if (G.think_open >= V) G.think_open = -1;
        if (G.think_close >= V) G.think_close = -1;
        for (int i = 0; i < g->n_stop; i++) {
            size_t n = strlen(g->stop[i]);
            G.stop_max = n > G.stop_max ? n : G.stop_max;
        }
        if (g->thinking_budget >= 0) {
            if (G.think_open < 0 || G.think_close < 0)
                return qw_error(QW_EXIT_DATA, "a thinking budget needs <think> and </think> in the vocabulary");
            qw_ids ids = {0};
            if ((st = qw_tok_encode(g->tok, qw_engine_think_stop, strlen(qw_engine_think_stop), &ids))) return st;
            G.think_ids = ids.v, G.n_think = (int)ids.n;
            for (int i = 0; i < G.n_think; i++)
                if (G.think_ids[i] >= V) {
                    free(G.think_ids);
                    return qw_error(QW_EXIT_DATA, "the thinking budget's text has token %d, outside the model's vocabulary (%d)",
                                    G.think_ids[i], V);
                }
        }
    }
    G.groups = qw_calloc(n_prompts ? n_prompts : 1, sizeof *G.groups);
    for (int i = 0; i < n_prompts; i++) {
        group *gr = &G.groups[i];
        gr->p = &prompts[i];
        int last_open = -1, last_close = -1;
        for (int t = 0; t < gr->p->n; t++) {
            if (gr->p->ids[t] == G.think_open) last_open = t;
            if (gr->p->ids[t] == G.think_close) last_close = t;
        }
        gr->open_think = G.think_open >= 0 && last_open > last_close;
    }
    G.run = qw_calloc(B, sizeof *G.run);
    G.st.waiting = n_prompts * g->n;

    seqn **fresh = qw_malloc(B * sizeof *fresh);
    group **pre = qw_malloc(B * sizeof *pre);
    int32_t *h_ids = qw_malloc((size_t)e->R * sizeof *h_ids), *h_pos = qw_malloc((size_t)e->R * sizeof *h_pos);
    int32_t *h_slots = qw_malloc((size_t)e->R * sizeof *h_slots), *h_seq = qw_malloc((size_t)e->R * sizeof *h_seq);
    int32_t *h_kvs = qw_malloc((size_t)e->R * sizeof *h_kvs);
    int32_t *h_tables = qw_malloc((size_t)2 * B * e->max_blocks * sizeof *h_tables);
    int32_t *h_sel = qw_malloc(2 * B * sizeof *h_sel), *h_tok = qw_malloc(B * sizeof *h_tok);
    int32_t *h_forced = qw_malloc(B * sizeof *h_forced);
    float *h_lp = qw_malloc(B * sizeof *h_lp), *h_raw = qw_malloc(B * sizeof *h_raw);
    double *h_u = qw_malloc(B * sizeof *h_u);
    float temp = (float)g->temperature, top_p = (float)g->top_p;
    int rc = 0;

    if (e->o.batch_invariant) ops->set_batch_invariant(1);
    /* QW_ENGINE_PROFILE=1: where the time goes (a sync after each phase; stderr at the end) */
    const char *prof_env = getenv("QW_ENGINE_PROFILE");
    int prof = prof_env && strcmp(prof_env, "0");
    double t_host = 0, t_fwd = 0, t_samp = 0, t_mark = prof ? qw_now() : 0;
    long long decode_steps = 0, graph_rows = 0, real_rows = 0;
#define PROF_MARK(acc) do { if (prof) { ops->sync(); double t_ = qw_now(); acc += t_ - t_mark; t_mark = t_; } } while (0)
    while (rc == 0 && G.st.prompts_done < n_prompts) {
        int n_pre = 0, pre_rows = 0;
        int nf = admit(&G, fresh, pre, &n_pre, &pre_rows, e->R - B);
        G.st.waiting -= nf;
        /* rows: one per running sequence, then the prompts that start */
        int n = 0, m = 0, nd = G.n_run;
        for (int i = 0; i < nd; i++) {
            seqn *s = G.run[i];
            h_ids[n] = s->pending, h_pos[n] = s->len, h_seq[n] = i, h_slots[n] = decode_slot(e, s);
            memcpy(h_tables + (size_t)i * e->max_blocks, s->kv.table, s->kv.nb * sizeof *s->kv.table);
            h_sel[m++] = n++;
        }
        for (int k = 0; k < n_pre; k++) {
            group *gr = pre[k];
            memcpy(h_tables + (size_t)(B + k) * e->max_blocks, gr->kv.table, gr->kv.nb * sizeof *gr->kv.table);
            for (int t = 0; t < gr->p->n; t++) {
                h_kvs[n - nd] = n - nd - t;   /* where this prompt starts in the packed prefill rows */
                h_ids[n] = gr->p->ids[t], h_pos[n] = t, h_seq[n] = B + k;
                h_slots[n++] = gr->kv.table[t / e->bs] * e->bs + t % e->bs;
            }
            h_sel[m++] = n - 1;
            G.st.prompt_tokens += gr->p->n;
        }
        /* a step that only decodes, padded to its graph's bucket */
        int padded = e->graphs && n && !n_pre ? e->bucket_rows[bucket_of(e, n)] : 0;
        for (int i = n; i < padded; i++) {
            h_ids[i] = 0, h_pos[i] = 0, h_seq[i] = i, h_sel[i] = i;
            h_slots[i] = e->pad_block * e->bs;   /* the same slot for all: they write equal values */
            h_tables[(size_t)i * e->max_blocks] = e->pad_block;
        }
        if (padded) n = nd = m = padded;
        if (n) {
            ops->upload(e->ids, h_ids, n * sizeof *h_ids);
            ops->upload(e->pos, h_pos, n * sizeof *h_pos);
            ops->upload(e->slots, h_slots, n * sizeof *h_slots);
            ops->upload(e->seq, h_seq, n * sizeof *h_seq);
            size_t tb = (size_t)e->max_blocks * sizeof *h_tables;   /* the rows in use: running, then starting */
            if (nd) ops->upload(e->tables, h_tables, nd * tb);
            if (n_pre) ops->upload((char *)e->tables + B * tb, (char *)h_tables + B * tb, n_pre * tb);
            ops->upload(e->sel_rows, h_sel, m * sizeof *h_sel);
            if (n > nd) ops->upload(e->kvs, h_kvs, (n - nd) * sizeof *h_kvs);
            PROF_MARK(t_host);
            if (padded) decode_rows(e, n);
            else forward_rows(e, n, nd, m);
            PROF_MARK(t_fwd);
            if (!n_pre) decode_steps++, graph_rows += padded, real_rows += G.n_run;
            nd = G.n_run;
        }
        /* a group whose samples are not all running keeps its logits */
        for (int k = 0; k < n_pre; k++)
            if (pre[k]->next < g->n) {
                pre[k]->logits = qw_malloc((size_t)V * sizeof(float));
                ops->download(pre[k]->logits, e->logits + (size_t)(nd + k) * V, (size_t)V * sizeof(float));
            }
        /* sample: the running sequences from their rows, the new ones from their prompt's */
        for (int pass = 0; pass < 2; pass++) {
            int cnt = pass ? nf : nd;
            if (!cnt) continue;
            for (int i = 0; i < cnt; i++) {
                seqn *s = pass ? fresh[i] : G.run[i];
                h_u[i] = qw_rng_uniform_at(g->seed, s->g->p->index << 32 | (uint32_t)s->j, (uint64_t)s->c.n);
                h_forced[i] = forced_token(&G, s);
                if (pass) {
                    float *dst = e->slog + (size_t)i * V;
                    if (s->g->logits) ops->upload(dst, s->g->logits, (size_t)V * sizeof(float));
                    else ops->copy(dst, e->logits + (size_t)(nd + s->g->row) * V, (size_t)V * sizeof(float));
                }
            }
            ops->upload(e->u, h_u, cnt * sizeof *h_u);
            ops->upload(e->forced, h_forced, cnt * sizeof *h_forced);
            ops->sample(e->tok, e->logp, e->raw, pass ? e->slog : e->logits, e->u, e->forced, cnt, V, temp, g->top_k,
                        top_p, e->samp_ws);
            ops->download(h_tok, e->tok, cnt * sizeof *h_tok);
            ops->download(h_lp, e->logp, cnt * sizeof *h_lp);
            ops->download(h_raw, e->raw, cnt * sizeof *h_raw);
            PROF_MARK(t_samp);
            for (int i = 0; i < cnt; i++) {
                seqn *s = pass ? fresh[i] : G.run[i];
                if (!pass) s->len++;   /* its pending token is in the cache now */
                G.st.generated_tokens++;
                if (apply_token(&G, s, h_tok[i], h_lp[i], h_raw[i])) {
                    if (pass) fresh[i] = NULL; else G.run[i] = NULL;
                    int r = finish_seq(&G, s, done, ctx);
                    if (r && !rc) rc = r;
                }
            }
        }
        for (int i = G.lo; i < G.n_groups && i <= G.cur; i++) {   /* every sample has the prompt's blocks and logits */
            group *gr = &G.groups[i];
            if (gr->next < g->n) break;
            if (gr->holds) qw_kv_seq_release(&e->pool, &gr->kv), gr->holds = 0;
            free(gr->logits);
            gr->logits = NULL;
            G.lo = i + 1;
        }
        /* compact: running ones keep their order, the new ones follow */
        int w = 0;
        for (int i = 0; i < nd; i++) if (G.run[i]) G.run[w++] = G.run[i];
        for (int i = 0; i < nf; i++) if (fresh[i]) G.run[w++] = fresh[i];
        G.n_run = w;
        G.st.steps++;
        G.st.running = G.n_run;
        if (!rc && step) rc = step(ctx, &G.st);
    }
    free(fresh); free(pre); free(h_kvs); free(h_ids); free(h_pos); free(h_slots); free(h_seq); free(h_tables); free(h_sel);
    PROF_MARK(t_host);
#undef PROF_MARK
    if (prof)
        fprintf(stderr, "engine profile: %lld steps (%lld decode only, %lld rows padded to %lld for graphs); host %.3f s, "
                "forward %.3f s, sampling %.3f s\n", G.st.steps, decode_steps, real_rows, graph_rows, t_host, t_fwd, t_samp);
    free(h_tok); free(h_forced); free(h_lp); free(h_raw); free(h_u);
    gen_free(&G);
    if (e->o.batch_invariant) ops->set_batch_invariant(0);
    return rc;
}
