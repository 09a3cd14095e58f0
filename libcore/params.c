/* params.c — the Qwen3 parameter layout, HF init, loading and saving. */
#include "qw/params.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/file.h"
#include "qw/hash.h"
#include "qw/rng.h"
#include "qw/size.h"

/* ---- layout ---- */

typedef struct {
    int *slot;      /* index + 1 into P->p, 0 empty */
    size_t nslot;
} name_index;

static size_t slot_of(const qw_params *P, const name_index *x, const char *name)
{
    size_t mask = x->nslot - 1, h = (size_t)qw_hash64(QW_HASH64_INIT, name, strlen(name)) & mask;
    while (x->slot[h] && strcmp(P->p[x->slot[h] - 1].name, name)) h = (h + 1) & mask;
    return h;
}

static void build_index(qw_params *P)
{
    name_index *x = qw_calloc(1, sizeof *x);
    x->nslot = 64;
    while (x->nslot < (size_t)P->n * 2) x->nslot *= 2;
    x->slot = qw_calloc(x->nslot, sizeof *x->slot);
    for (int i = 0; i < P->n; i++) x->slot[slot_of(P, x, P->p[i].name)] = i + 1;
    P->index = x;
}

static int find_index(const qw_params *P, const char *name)
{
    const name_index *x = P->index;
    int s = x->slot[slot_of(P, x, name)];
    return s - 1;
}

const qw_param *qw_params_find(const qw_params *P, const char *name)
{
    int i = find_index(P, name);
    return i >= 0 ? &P->p[i] : NULL;
}

static float *ptr_of(const qw_params *P, const char *fmt, int layer, int expert)
{
    char name[128];
    snprintf(name, sizeof name, fmt, layer, expert);
    const qw_param *p = qw_params_find(P, name);
    return p ? P->data + p->offset : NULL;
}

/* Qwen3-VL checkpoints keep the text model under model.language_model. */
static const char *prefix_of(const qw_config *c)
{
    return strncmp(c->model_type, "qwen3_vl", 8) ? "model." : "model.language_model.";
}

typedef struct {
    qw_params *P;
    int cap;
} builder;

static void __attribute__((format(printf, 7, 8)))
add(builder *b, int align, int nd, int64_t d0, int64_t d1, int no_decay, const char *fmt, ...)
{
    qw_params *P = b->P;
    if (P->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        P->p = qw_realloc(P->p, b->cap * sizeof *P->p);
    }
    qw_param *p = &P->p[P->n++];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->ndim = nd;
    p->shape[0] = d0;
    p->shape[1] = d1;
    p->numel = nd == 1 ? d0 : d0 * d1;
    for (int k = 2; k < QW_ST_MAX_DIMS; k++) p->shape[k] = 0;
    p->no_decay = no_decay;
    if (align) P->total = (P->total + 15) & ~(size_t)15;
    p->offset = P->total;
    P->total += (size_t)p->numel;
}

/* The Qwen3-VL vision tower, after the language model. */
static void add_vision(builder *b, const qw_config *c)
{
    int64_t Hv = c->vision.hidden_size, Iv = c->vision.intermediate_size, M = 4 * Hv, O = c->vision.out_hidden_size;
    int64_t C = c->vision.in_channels, tp = c->vision.temporal_patch_size, ps = c->vision.patch_size;
    const char *v = "model.visual.";
    add(b, 1, 2, Hv, C * tp * ps * ps, 0, "%spatch_embed.proj.weight", v);
    qw_param *pe = &b->P->p[b->P->n - 1];
    pe->ndim = 5;
    pe->shape[1] = C, pe->shape[2] = tp, pe->shape[3] = ps, pe->shape[4] = ps;
    add(b, 1, 1, Hv, 0, 1, "%spatch_embed.proj.bias", v);
    add(b, 1, 2, c->vision.num_position_embeddings, Hv, 1, "%spos_embed.weight", v);
    for (int i = 0; i < c->vision.depth; i++) {
        add(b, 1, 1, Hv, 0, 1, "%sblocks.%d.norm1.weight", v, i);
        add(b, 1, 1, Hv, 0, 1, "%sblocks.%d.norm1.bias", v, i);
        add(b, 1, 1, Hv, 0, 1, "%sblocks.%d.norm2.weight", v, i);
        add(b, 1, 1, Hv, 0, 1, "%sblocks.%d.norm2.bias", v, i);
        add(b, 1, 2, 3 * Hv, Hv, 0, "%sblocks.%d.attn.qkv.weight", v, i);
        add(b, 1, 1, 3 * Hv, 0, 1, "%sblocks.%d.attn.qkv.bias", v, i);
        add(b, 1, 2, Hv, Hv, 0, "%sblocks.%d.attn.proj.weight", v, i);
        add(b, 1, 1, Hv, 0, 1, "%sblocks.%d.attn.proj.bias", v, i);
        add(b, 1, 2, Iv, Hv, 0, "%sblocks.%d.mlp.linear_fc1.weight", v, i);
        add(b, 1, 1, Iv, 0, 1, "%sblocks.%d.mlp.linear_fc1.bias", v, i);
        add(b, 1, 2, Hv, Iv, 0, "%sblocks.%d.mlp.linear_fc2.weight", v, i);
        add(b, 1, 1, Hv, 0, 1, "%sblocks.%d.mlp.linear_fc2.bias", v, i);
    }
    for (int j = -1; j < c->vision.n_deepstack; j++) {   /* -1: the merger */
        char m[64];
        if (j < 0) snprintf(m, sizeof m, "merger");
        else snprintf(m, sizeof m, "deepstack_merger_list.%d", j);
        add(b, 1, 1, j < 0 ? Hv : M, 0, 1, "%s%s.norm.weight", v, m);
        add(b, 1, 1, j < 0 ? Hv : M, 0, 1, "%s%s.norm.bias", v, m);
        add(b, 1, 2, M, M, 0, "%s%s.linear_fc1.weight", v, m);
        add(b, 1, 1, M, 0, 1, "%s%s.linear_fc1.bias", v, m);
        add(b, 1, 2, O, M, 0, "%s%s.linear_fc2.weight", v, m);
        add(b, 1, 1, O, 0, 1, "%s%s.linear_fc2.bias", v, m);
    }
}

static void set_views(qw_params *P)
{
    const qw_config *c = &P->cfg;
    const char *pre = prefix_of(c);
    char f[160];
#define V(field, suffix, e) (snprintf(f, sizeof f, "%slayers.%%d.%s", pre, suffix), L->field = ptr_of(P, f, i, e))
    for (int i = 0; i < c->num_hidden_layers; i++) {
        qw_layer_params *L = &P->layer[i];
        memset(L, 0, sizeof *L);
        V(input_norm, "input_layernorm.weight", 0);
        V(q, "self_attn.q_proj.weight", 0);
        V(k, "self_attn.k_proj.weight", 0);
        V(v, "self_attn.v_proj.weight", 0);
        V(o, "self_attn.o_proj.weight", 0);
        V(q_norm, "self_attn.q_norm.weight", 0);
        V(k_norm, "self_attn.k_norm.weight", 0);
        V(post_norm, "post_attention_layernorm.weight", 0);
        L->is_moe = qw_config_layer_is_moe(c, i);
        if (L->is_moe) {
            V(router, "mlp.gate.weight", 0);
            V(exp_gate, "mlp.experts.%d.gate_proj.weight", 0);
            V(exp_up, "mlp.experts.%d.up_proj.weight", 0);
            V(exp_down, "mlp.experts.%d.down_proj.weight", 0);
        } else {
            V(gate, "mlp.gate_proj.weight", 0);
            V(up, "mlp.up_proj.weight", 0);
            V(down, "mlp.down_proj.weight", 0);
        }
    }
#undef V
    P->embed = P->data + P->p[0].offset;
    snprintf(f, sizeof f, "%snorm.weight", pre);
    P->final_norm = P->data + qw_params_find(P, f)->offset;
    const qw_param *head = qw_params_find(P, "lm_head.weight"), *score = qw_params_find(P, "score.weight");
    P->lm_head = head ? P->data + head->offset : c->score_head ? NULL : P->embed;
    P->score = score ? P->data + score->offset : NULL;
}

static size_t arena_bytes(const qw_params *P) { return (P->total ? P->total : 1) * sizeof(float); }

/* A zeroed arena for P's layout, on the host or from ops. */
static int alloc_arena(qw_params *P, const qw_ops *ops)
{
    P->layer = qw_calloc(P->cfg.num_hidden_layers, sizeof *P->layer);
    size_t bytes = arena_bytes(P);
    void *mem = NULL;
    uint64_t phys = qw_phys_mem_bytes();
    if (!ops && phys && bytes > phys) {   /* zeroing it would bring the out-of-memory killer */
        int64_t n = (int64_t)P->total;
        qw_params_free(P);
        return qw_error(QW_EXIT_FAIL, "%lld parameters need %zu bytes, more than the machine's memory (%llu bytes)",
                        (long long)n, bytes, (unsigned long long)phys);
    }
    if (ops) mem = ops->alloc(bytes);
    else if (!posix_memalign(&mem, 64, bytes)) memset(mem, 0, bytes);
    if (!mem) {
        int64_t n = (int64_t)P->total;
        qw_params_free(P);
        return qw_error(QW_EXIT_FAIL, "out of %s memory: %lld parameters (%zu bytes)", ops ? ops->name : "host",
                        (long long)n, bytes);
    }
    P->data = mem;
    P->ops = ops;
    set_views(P);
    return 0;
}

/* The tensor list, offsets and name index; no arena. */
static int build_layout(qw_params *P, const qw_config *c)
{
    memset(P, 0, sizeof *P);
    if (c->vocab_size <= 0 || c->hidden_size <= 0 || c->num_hidden_layers <= 0 ||
        c->num_hidden_layers > QW_CONFIG_MAX_LAYERS || c->num_attention_heads <= 0 || c->num_key_value_heads <= 0 ||
        c->head_dim <= 0 || (c->arch == QW_ARCH_MOE && (c->num_experts <= 0 || c->moe_intermediate_size <= 0)))
        return qw_error(QW_EXIT_DATA, "config '%s': sizes are not positive", c->model_type);
    P->cfg = *c;
    builder b = {P, 0};
    const char *pre = prefix_of(c);
    int64_t H = c->hidden_size, d = c->head_dim, qd = c->num_attention_heads * d, kd = c->num_key_value_heads * d;
    int64_t I = c->intermediate_size, E = c->num_experts, Ie = c->moe_intermediate_size;
    add(&b, 1, 2, c->vocab_size, H, 1, "%sembed_tokens.weight", pre);
    for (int i = 0; i < c->num_hidden_layers; i++) {
        add(&b, 1, 1, H, 0, 1, "%slayers.%d.input_layernorm.weight", pre, i);
        add(&b, 1, 2, qd, H, 0, "%slayers.%d.self_attn.q_proj.weight", pre, i);
        add(&b, 1, 2, kd, H, 0, "%slayers.%d.self_attn.k_proj.weight", pre, i);
        add(&b, 1, 2, kd, H, 0, "%slayers.%d.self_attn.v_proj.weight", pre, i);
        add(&b, 1, 2, H, qd, 0, "%slayers.%d.self_attn.o_proj.weight", pre, i);
        add(&b, 1, 1, d, 0, 1, "%slayers.%d.self_attn.q_norm.weight", pre, i);
        add(&b, 1, 1, d, 0, 1, "%slayers.%d.self_attn.k_norm.weight", pre, i);
        add(&b, 1, 1, H, 0, 1, "%slayers.%d.post_attention_layernorm.weight", pre, i);
        if (qw_config_layer_is_moe(c, i)) {
            add(&b, 1, 2, E, H, 0, "%slayers.%d.mlp.gate.weight", pre, i);
            for (int e = 0; e < E; e++) add(&b, e == 0, 2, Ie, H, 0, "%slayers.%d.mlp.experts.%d.gate_proj.weight", pre, i, e);
            for (int e = 0; e < E; e++) add(&b, e == 0, 2, Ie, H, 0, "%slayers.%d.mlp.experts.%d.up_proj.weight", pre, i, e);
            for (int e = 0; e < E; e++) add(&b, e == 0, 2, H, Ie, 0, "%slayers.%d.mlp.experts.%d.down_proj.weight", pre, i, e);
        } else {
            add(&b, 1, 2, I, H, 0, "%slayers.%d.mlp.gate_proj.weight", pre, i);
            add(&b, 1, 2, I, H, 0, "%slayers.%d.mlp.up_proj.weight", pre, i);
            add(&b, 1, 2, H, I, 0, "%slayers.%d.mlp.down_proj.weight", pre, i);
        }
    }
    add(&b, 1, 1, H, 0, 1, "%snorm.weight", pre);
    if (c->score_head) add(&b, 1, 2, 1, H, 0, "score.weight");
    else if (!c->tie_word_embeddings) add(&b, 1, 2, c->vocab_size, H, 0, "lm_head.weight");
    if (c->vision.depth > 0) add_vision(&b, c);
    build_index(P);
    return 0;
}

int qw_params_init(qw_params *P, const qw_config *c)
{
    int rc = build_layout(P, c);
    if (!rc) rc = alloc_arena(P, NULL);
    if (!rc) P->compute = P->data;
    return rc;
}

int qw_params_alloc_like(qw_params *dst, const qw_params *src)
{
    memset(dst, 0, sizeof *dst);
    dst->cfg = src->cfg;
    dst->n = src->n;
    dst->p = qw_malloc(src->n * sizeof *src->p);
    memcpy(dst->p, src->p, src->n * sizeof *src->p);
    dst->total = src->total;
    build_index(dst);
    return alloc_arena(dst, src->ops);
}

int qw_params_to_device(qw_params *P, const qw_ops *ops)
{
    if (P->ops == ops) return 0;
    if (P->ops) return qw_error(QW_EXIT_FAIL, "parameters on the %s backend cannot move to %s", P->ops->name, ops->name);
    size_t bytes = arena_bytes(P), cbytes = P->compute && ops->act_size != sizeof(float) ? P->total * ops->act_size : 0;
    float *data = ops->alloc(bytes);
    void *compute = data && cbytes ? ops->alloc(cbytes) : NULL;
    if (!data || (cbytes && !compute)) {
        if (data) ops->free(data);
        return qw_error(QW_EXIT_FAIL, "out of %s memory: %lld parameters (%zu bytes, %zu more for the %zu-byte compute copy)",
                        ops->name, (long long)P->total, bytes, cbytes, ops->act_size);
    }
    ops->upload(data, P->data, bytes);
    if (compute) ops->to_act(compute, data, P->total);
    int has_compute = P->compute != NULL;
    free(P->data);
    P->data = data;
    P->compute = compute ? compute : has_compute ? data : NULL;
    P->ops = ops;
    set_views(P);
    return 0;
}

void qw_params_sync_compute(qw_params *P)
{
    if (P->compute && P->compute != (void *)P->data) P->ops->to_act(P->compute, P->data, P->total);
}

const float *qw_params_host(const qw_params *P, float **owned)
{
    *owned = NULL;
    if (!P->ops) return P->data;
    *owned = qw_malloc(P->total * sizeof(float));
    P->ops->download(*owned, P->data, P->total * sizeof(float));
    return *owned;
}

void qw_params_free(qw_params *P)
{
    name_index *x = P->index;
    if (x) free(x->slot);
    free(x);
    free(P->p);
    if (P->ops) {
        if (P->compute && P->compute != (void *)P->data) P->ops->free(P->compute);
        if (P->data) P->ops->free(P->data);
    } else {
        free(P->data);
    }
    free(P->layer);
    memset(P, 0, sizeof *P);
}

/* ---- init ---- */

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

void qw_params_init_random(qw_params *P, uint64_t seed)
{
    float std = (float)P->cfg.initializer_range;
    for (int i = 0; i < P->n; i++) {
        const qw_param *p = &P->p[i];
        float *x = P->data + p->offset;
        int visual = !strncmp(p->name, "model.visual.", 13);
        if (ends_with(p->name, "norm.weight") || (visual && (ends_with(p->name, "norm1.weight") ||
                                                              ends_with(p->name, "norm2.weight")))) {
            for (int64_t j = 0; j < p->numel; j++) x[j] = 1.0f;
        } else if (ends_with(p->name, ".bias")) {
            for (int64_t j = 0; j < p->numel; j++) x[j] = 0.0f;
        } else {
            qw_rng_fill_normal(x, (size_t)p->numel, seed, qw_hash64(QW_HASH64_INIT, p->name, strlen(p->name)), 0.0f,
                               visual ? (float)P->cfg.vision.initializer_range : std);
        }
    }
}

void qw_params_init_head(qw_params *P, uint64_t seed)
{
    const qw_param *p = qw_params_find(P, "score.weight");
    if (p)
        qw_rng_fill_normal(P->data + p->offset, (size_t)p->numel, seed, qw_hash64(QW_HASH64_INIT, p->name, strlen(p->name)),
                           0.0f, (float)P->cfg.initializer_range);
}

/* ---- loading ---- */

static int check_tensor(const qw_st_tensor *t, int nd, const int64_t *want)
{
    int ok = t->ndim == nd;
    for (int d = 0; ok && d < nd; d++) ok = t->shape[d] == want[d];
    if (!ok) {
        char got[128], exp[128];
        qw_shape_str(t->ndim, t->shape, got, sizeof got);
        qw_shape_str(nd, want, exp, sizeof exp);
        return qw_error(QW_EXIT_DATA, "'%s': tensor '%s': shape %s does not match the config (%s)", t->file, t->name,
                        got, exp);
    }
    if (!qw_dtype_is_float(t->dtype))
        return qw_error(QW_EXIT_DATA, "'%s': tensor '%s': dtype %s is not a float type", t->file, t->name,
                        qw_dtype_name(t->dtype));
    return 0;
}

/* Mark tensor `name` loaded; a second time is an error. */
static int mark(const qw_params *P, char *got, const qw_st_tensor *t, const char *name)
{
    int i = find_index(P, name);
    if (got[i]) return qw_error(QW_EXIT_DATA, "'%s': tensor '%s' is given twice (by '%s')", t->file, name, t->name);
    got[i] = 1;
    return 0;
}

static void scatter_fused(const qw_params *P, const qw_st_tensor *t, int layer, int gate_up, int transposed);

/* If t is a fused expert tensor of an MoE layer, load it: 1 done, 0 not fused, or an error. */
static int load_fused(const qw_params *P, char *got, const qw_st_tensor *t)
{
    const qw_config *c = &P->cfg;
    const char *pre = prefix_of(c);
    char want[160];
    int layer = -1, n = 0;
    size_t lp = strlen(pre);
    if (strncmp(t->name, pre, lp) || sscanf(t->name + lp, "layers.%d.mlp.experts.%n", &layer, &n) != 1 || !n ||
        layer < 0 || layer >= c->num_hidden_layers || !qw_config_layer_is_moe(c, layer))
        return 0;
    const char *what = t->name + lp + n;
    int gate_up = !strcmp(what, "gate_up_proj"), down = !strcmp(what, "down_proj");
    snprintf(want, sizeof want, "%slayers.%d.mlp.experts.%s", pre, layer, what);
    if ((!gate_up && !down) || strcmp(want, t->name)) return 0;
    int64_t E = c->num_experts, Ie = c->moe_intermediate_size, H = c->hidden_size;
    /* Qwen3-VL-MoE: the Hub form is transposed ([E,H,2·Ie], [E,Ie,H]);
     * transformers 5.x writes the plain form; the shape tells them apart
     * (the Hub form when both fit: H = 2·Ie, or H = Ie for down_proj) */
    int transposed = !strcmp(c->model_type, "qwen3_vl_moe");
    if (transposed && t->ndim == 3 && t->shape[0] == E &&
        !(t->shape[1] == (gate_up ? H : Ie) && t->shape[2] == (gate_up ? 2 * Ie : H)) &&
        t->shape[1] == (gate_up ? 2 * Ie : H) && t->shape[2] == (gate_up ? H : Ie))
        transposed = 0;
    int64_t shape[3] = {E, gate_up ? (transposed ? H : 2 * Ie) : (transposed ? Ie : H),
                        gate_up ? (transposed ? 2 * Ie : H) : (transposed ? H : Ie)};
    int rc = check_tensor(t, 3, shape);
    if (rc) return rc;
    if (P->data) scatter_fused(P, t, layer, gate_up, transposed);
    for (int e = 0; e < E && !rc; e++) {
        const char *parts[2] = {gate_up ? "gate_proj" : "down_proj", gate_up ? "up_proj" : NULL};
        for (int k = 0; k < 2 && parts[k] && !rc; k++) {
            snprintf(want, sizeof want, "%slayers.%d.mlp.experts.%d.%s.weight", pre, layer, e, parts[k]);
            rc = mark(P, got, t, want);
        }
    }
    return rc ? rc : 1;
}

/* Copy a fused expert tensor into the per-expert blocks of `layer`. */
static void scatter_fused(const qw_params *P, const qw_st_tensor *t, int layer, int gate_up, int transposed)
{
    const qw_config *c = &P->cfg;
    int64_t E = c->num_experts, Ie = c->moe_intermediate_size, H = c->hidden_size;
    const qw_layer_params *L = &P->layer[layer];
    int64_t per = Ie * H;
    float *tmp = qw_malloc((size_t)t->numel * sizeof *tmp);
    qw_st_to_f32(t, tmp);
    for (int64_t e = 0; e < E; e++) {
        const float *src = tmp + e * (gate_up ? 2 * per : per);
        if (gate_up && !transposed) {
            memcpy(L->exp_gate + e * per, src, per * sizeof *src);
            memcpy(L->exp_up + e * per, src + per, per * sizeof *src);
        } else if (gate_up) {                      /* [H][2Ie] */
            for (int64_t h = 0; h < H; h++)
                for (int64_t j = 0; j < Ie; j++) {
                    L->exp_gate[e * per + j * H + h] = src[h * 2 * Ie + j];
                    L->exp_up[e * per + j * H + h] = src[h * 2 * Ie + Ie + j];
                }
        } else if (!transposed) {
            memcpy(L->exp_down + e * per, src, per * sizeof *src);
        } else {                                   /* [Ie][H] */
            for (int64_t j = 0; j < Ie; j++)
                for (int64_t h = 0; h < H; h++) L->exp_down[e * per + h * Ie + j] = src[j * H + h];
        }
    }
    free(tmp);
}

/* Match every tensor of st against the layout; copy the values when P has
 * an arena.  backbone: the file is a causal LM loaded into a reward
 * model's layout: its lm_head.weight is skipped, score.weight not needed. */
static int walk(qw_params *P, const qw_st *st, int allow_extra, int backbone)
{
    char *got = qw_calloc(P->n + 1, 1);
    int rc = 0;
    for (int i = 0; i < qw_st_count(st) && !rc; i++) {
        const qw_st_tensor *t = qw_st_at(st, i);
        int k = find_index(P, t->name);
        if (k >= 0) {
            const qw_param *p = &P->p[k];
            if (!(rc = check_tensor(t, p->ndim, p->shape)) && !(rc = mark(P, got, t, t->name)) && P->data)
                qw_st_to_f32(t, P->data + p->offset);
            continue;
        }
        int f = load_fused(P, got, t);
        if (f) {
            rc = f == 1 ? 0 : f;
            continue;
        }
        if ((P->cfg.tie_word_embeddings || backbone) && !strcmp(t->name, "lm_head.weight")) continue;
        if (!allow_extra) rc = qw_error(QW_EXIT_DATA, "'%s': unexpected tensor '%s'", t->file, t->name);
    }
    for (int i = 0; i < P->n && !rc; i++)
        if (!got[i] && !(backbone && !strcmp(P->p[i].name, "score.weight"))) rc = qw_error(QW_EXIT_DATA, "'%s': missing tensor '%s'", qw_st_path(st), P->p[i].name);
    free(got);
    return rc;
}

int qw_params_load(qw_params *P, const qw_st *st, int allow_extra)
{
    if (P->ops) return qw_error(QW_EXIT_FAIL, "'%s': parameters on the %s backend are loaded on the host first",
                                qw_st_path(st), P->ops->name);
    return walk(P, st, allow_extra, 0);
}

int qw_params_load_backbone(qw_params *P, const qw_st *st)
{
    if (P->ops) return qw_error(QW_EXIT_FAIL, "'%s': parameters on the %s backend are loaded on the host first",
                                qw_st_path(st), P->ops->name);
    if (!P->cfg.score_head) return qw_error(QW_EXIT_FAIL, "'%s': loading a backbone needs a reward model's layout", qw_st_path(st));
    return walk(P, st, 0, 1);
}

int qw_params_check(const qw_config *c, const qw_st *st, int allow_extra)
{
    qw_params P;
    int rc = build_layout(&P, c);
    if (!rc) rc = walk(&P, st, allow_extra, 0);
    qw_params_free(&P);
    return rc;
}

/* ---- saving ---- */

int qw_params_save(const qw_params *P, const char *dir, qw_dtype dtype)
{
    if (dtype != QW_DT_F32 && dtype != QW_DT_BF16)
        return qw_error(QW_EXIT_FAIL, "'%s': parameters are saved as F32 or BF16, not %s", dir, qw_dtype_name(dtype));
    float *owned;
    const float *data = qw_params_host(P, &owned);
    qw_st_writer *w = qw_st_writer_new();
    for (int i = 0; i < P->n; i++) {
        const qw_param *p = &P->p[i];
        qw_st_writer_add_f32(w, p->name, dtype, p->ndim, p->shape, data + p->offset);
    }
    qw_st_writer_meta(w, "format", "pt");
    int rc = qw_st_writer_write_dir(w, dir, (size_t)5000000000ULL);
    qw_st_writer_free(w);
    free(owned);
    if (rc) return rc;
    qw_config c = P->cfg;
    snprintf(c.torch_dtype, sizeof c.torch_dtype, "%s", dtype == QW_DT_BF16 ? "bfloat16" : "float32");
    qw_buf path = {0};
    qw_buf_adds(&path, dir);
    qw_buf_adds(&path, "/config.json");
    rc = qw_config_save(&c, qw_buf_cstr(&path));
    if (!rc) {
        qw_buf g = {0};
        char line[64];
        qw_buf_adds(&g, "{\n");
        if (c.bos_token_id >= 0) { snprintf(line, sizeof line, "  \"bos_token_id\": %d,\n", c.bos_token_id); qw_buf_adds(&g, line); }
        if (c.eos_token_id >= 0) { snprintf(line, sizeof line, "  \"eos_token_id\": %d,\n", c.eos_token_id); qw_buf_adds(&g, line); }
        if (c.pad_token_id >= 0) { snprintf(line, sizeof line, "  \"pad_token_id\": %d,\n", c.pad_token_id); qw_buf_adds(&g, line); }
        qw_buf_adds(&g, "  \"transformers_version\": \"4.51.0\"\n}\n");
        path.n = 0;
        qw_buf_adds(&path, dir);
        qw_buf_adds(&path, "/generation_config.json");
        rc = qw_write_file_atomic(qw_buf_cstr(&path), g.p, g.n);
        qw_buf_free(&g);
    }
    qw_buf_free(&path);
    return rc;
}
