/* config.c — Hugging Face config.json for Qwen3, Qwen3-MoE and Qwen3-VL text. */
#include "qw/config.h"

#include <cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/file.h"
#include "qw/size.h"
#include "qw/st.h"

/* Where keys are looked up: the text part (text_config for VL, else the
 * root) first, then the root. */
typedef struct {
    const cJSON *text, *root;
    const char *file;
    const char *prefix;     /* "text_config." for VL, "" otherwise */
} src;

static const cJSON *item(const cJSON *o, const char *key)
{
    const cJSON *j = o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
    return cJSON_IsNull(j) ? NULL : j;
}

/* Look key up; *where gets the prefix for messages. */
static const cJSON *look(const src *s, const char *key, int root_first, const char **where)
{
    const cJSON *a = item(root_first ? s->root : s->text, key), *b = item(root_first ? s->text : s->root, key);
    const cJSON *j = a ? a : b;
    *where = j && j == item(s->text, key) && s->text != s->root ? s->prefix : "";
    return j;
}

static int missing(const src *s, const char *key)
{
    return qw_error(QW_EXIT_DATA, "'%s': missing key '%s%s'", s->file, s->prefix, key);
}

static int json_int(const cJSON *j, long long *v)
{
    if (!cJSON_IsNumber(j) || j->valuedouble != floor(j->valuedouble) || fabs(j->valuedouble) > 2147483647.0) return -1;
    *v = (long long)j->valuedouble;
    return 0;
}

/* An integer key >= lo; `required` or the default `def`. */
static int get_int(const src *s, const char *key, int required, int def, int lo, int *out)
{
    const char *w;
    const cJSON *j = look(s, key, 0, &w);
    long long v;
    if (!j) {
        if (required) return missing(s, key);
        *out = def;
        return 0;
    }
    if (json_int(j, &v)) return qw_error(QW_EXIT_DATA, "'%s': key '%s%s': expected an integer", s->file, w, key);
    if (v < lo) return qw_error(QW_EXIT_DATA, "'%s': key '%s%s': %lld is below %d", s->file, w, key, v, lo);
    *out = (int)v;
    return 0;
}

static int get_double(const src *s, const char *key, double def, double *out)
{
    const char *w;
    const cJSON *j = look(s, key, 0, &w);
    if (!j) { *out = def; return 0; }
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble))   /* 1e999 parses as inf, and cannot be written back */
        return qw_error(QW_EXIT_DATA, "'%s': key '%s%s': expected a finite number", s->file, w, key);
    *out = j->valuedouble;
    return 0;
}

static int get_bool(const src *s, const char *key, int root_first, int def, int *out)
{
    const char *w;
    const cJSON *j = look(s, key, root_first, &w);
    if (!j) { *out = def; return 0; }
    if (!cJSON_IsBool(j)) return qw_error(QW_EXIT_DATA, "'%s': key '%s%s': expected true or false", s->file, w, key);
    *out = cJSON_IsTrue(j);
    return 0;
}

/* A token id: integer, or a list of them (the first), or absent (-1). */
static int get_token(const src *s, const char *key, int root_first, int *out)
{
    const char *w;
    const cJSON *j = look(s, key, root_first, &w);
    long long v;
    *out = -1;
    if (!j) return 0;
    if (cJSON_IsArray(j)) j = cJSON_GetArrayItem(j, 0);
    if (!j) return 0;
    if (json_int(j, &v) || v < 0) return qw_error(QW_EXIT_DATA, "'%s': key '%s%s': expected a token id", s->file, w, key);
    *out = (int)v;
    return 0;
}

/* ---- RoPE ---- */

static int rope_num(const src *s, const cJSON *r, const char *rname, const char *key, double def, double *out)
{
    const cJSON *j = item(r, key);
    if (!j) { *out = def; return 0; }
    if (!cJSON_IsNumber(j) || !(j->valuedouble > 0) || !isfinite(j->valuedouble))
        return qw_error(QW_EXIT_DATA, "'%s': key '%s%s.%s': expected a finite positive number", s->file, s->prefix,
                        rname, key);
    *out = j->valuedouble;
    return 0;
}

static int parse_rope(const src *s, qw_config *c, double default_theta)
{
    const char *w;
    const cJSON *rp = look(s, "rope_parameters", 0, &w), *r = rp;
    const char *rname = "rope_parameters";
    if (rp && !cJSON_IsObject(rp))
        return qw_error(QW_EXIT_DATA, "'%s': key '%s%s': expected an object", s->file, w, rname);
    if (rp && item(rp, "full_attention")) r = item(rp, "full_attention");
    if (!r) {
        r = look(s, "rope_scaling", 0, &w);
        rname = "rope_scaling";
        if (r && !cJSON_IsObject(r)) return qw_error(QW_EXIT_DATA, "'%s': key '%s%s': expected an object", s->file, w, rname);
    }
    int rc;
    double top_theta;
    if ((rc = get_double(s, "rope_theta", default_theta, &top_theta))) return rc;
    if ((rc = rope_num(s, r, rname, "rope_theta", top_theta, &c->rope_theta))) return rc;
    if (!(c->rope_theta > 0)) return qw_error(QW_EXIT_DATA, "'%s': key 'rope_theta': must be positive", s->file);
    const cJSON *t = item(r, "rope_type");
    if (!t) t = item(r, "type");
    const char *type = cJSON_IsString(t) ? t->valuestring : t ? "?" : "default";
    c->yarn_beta_fast = 32;
    c->yarn_beta_slow = 1;
    c->yarn_truncate = 1;
    c->rope_factor = 1;
    if (!strcmp(type, "default") || !strcmp(type, "mrope")) {
        c->rope_type = QW_ROPE_DEFAULT;
    } else if (!strcmp(type, "yarn")) {
        c->rope_type = QW_ROPE_YARN;
        double orig_top, orig;
        if ((rc = get_double(s, "original_max_position_embeddings", c->max_position_embeddings, &orig_top)) ||
            (rc = rope_num(s, r, rname, "original_max_position_embeddings", orig_top, &orig)))
            return rc;
        if (orig != floor(orig) || orig > 2147483647.0)
            return qw_error(QW_EXIT_DATA, "'%s': key '%s%s.original_max_position_embeddings': expected an integer",
                            s->file, s->prefix, rname);
        c->rope_original_max_position = (int)orig;
        if ((rc = rope_num(s, r, rname, "factor", (double)c->max_position_embeddings / orig, &c->rope_factor)) ||
            (rc = rope_num(s, r, rname, "attention_factor", 0, &c->rope_attention_factor)) ||
            (rc = rope_num(s, r, rname, "beta_fast", 32, &c->yarn_beta_fast)) ||
            (rc = rope_num(s, r, rname, "beta_slow", 1, &c->yarn_beta_slow)) ||
            (rc = rope_num(s, r, rname, "mscale", 0, &c->yarn_mscale)) ||
            (rc = rope_num(s, r, rname, "mscale_all_dim", 0, &c->yarn_mscale_all_dim)))
            return rc;
        const cJSON *tr = item(r, "truncate");
        if (tr && !cJSON_IsBool(tr))
            return qw_error(QW_EXIT_DATA, "'%s': key '%s%s.truncate': expected true or false", s->file, s->prefix, rname);
        if (tr) c->yarn_truncate = cJSON_IsTrue(tr);
    } else {
        return qw_error(QW_EXIT_DATA, "'%s': key '%s%s.rope_type': '%s' is not supported (default or yarn)", s->file,
                        s->prefix, rname, type);
    }
    const cJSON *ms = item(r, "mrope_section");
    if (ms) {
        long long v;
        if (!cJSON_IsArray(ms) || cJSON_GetArraySize(ms) != 3)
            return qw_error(QW_EXIT_DATA, "'%s': key '%s%s.mrope_section': expected 3 integers", s->file, s->prefix, rname);
        for (int i = 0; i < 3; i++) {
            if (json_int(cJSON_GetArrayItem(ms, i), &v) || v < 0)
                return qw_error(QW_EXIT_DATA, "'%s': key '%s%s.mrope_section': expected 3 integers", s->file, s->prefix,
                                rname);
            c->mrope_section[i] = (int)v;
        }
    }
    const cJSON *mi = item(r, "mrope_interleaved");
    c->mrope_interleaved = cJSON_IsTrue(mi);
    return 0;
}

/* ---- the Qwen3-VL vision tower ---- */

static int parse_vision(const cJSON *root, const char *name, qw_config *c)
{
    const cJSON *vc = item(root, "vision_config");
    if (vc && !cJSON_IsObject(vc)) return qw_error(QW_EXIT_DATA, "'%s': key 'vision_config': expected an object", name);
    if (!vc) return 0;   /* the language model alone: no vision tower */
    cJSON *empty = NULL;
    src s = {vc, vc, name, "vision_config."};
    int rc;
    typeof(c->vision) *v = &c->vision;
    if ((rc = get_int(&s, "depth", 0, 27, 1, &v->depth)) ||
        (rc = get_int(&s, "hidden_size", 0, 1152, 1, &v->hidden_size)) ||
        (rc = get_int(&s, "num_heads", 0, 16, 1, &v->num_heads)) ||
        (rc = get_int(&s, "intermediate_size", 0, 4304, 1, &v->intermediate_size)) ||
        (rc = get_int(&s, "out_hidden_size", 0, 3584, 1, &v->out_hidden_size)) ||
        (rc = get_int(&s, "in_channels", 0, 3, 1, &v->in_channels)) ||
        (rc = get_int(&s, "patch_size", 0, 16, 1, &v->patch_size)) ||
        (rc = get_int(&s, "temporal_patch_size", 0, 2, 1, &v->temporal_patch_size)) ||
        (rc = get_int(&s, "spatial_merge_size", 0, 2, 1, &v->spatial_merge_size)) ||
        (rc = get_int(&s, "num_position_embeddings", 0, 2304, 1, &v->num_position_embeddings)) ||
        (rc = get_double(&s, "initializer_range", 0.02, &v->initializer_range)))
        goto out;
    v->rope_theta = 10000;
    const cJSON *rp = item(vc, "rope_parameters");
    if (cJSON_IsObject(rp) && cJSON_IsNumber(item(rp, "rope_theta"))) v->rope_theta = item(rp, "rope_theta")->valuedouble;
    const cJSON *act = item(vc, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "gelu_pytorch_tanh"))) {
        rc = qw_error(QW_EXIT_DATA, "'%s': key 'vision_config.hidden_act': only gelu_pytorch_tanh is supported", name);
        goto out;
    }
    int hd = v->hidden_size / v->num_heads, side = (int)lround(sqrt((double)v->num_position_embeddings));
    if (v->hidden_size % v->num_heads || hd % 4) {
        rc = qw_error(QW_EXIT_DATA, "'%s': key 'vision_config.num_heads': hidden_size %d / %d heads must be a whole "
                      "multiple of 4 (2-D RoPE)", name, v->hidden_size, v->num_heads);
        goto out;
    }
    if (side * side != v->num_position_embeddings) {
        rc = qw_error(QW_EXIT_DATA, "'%s': key 'vision_config.num_position_embeddings': %d is not a square", name,
                      v->num_position_embeddings);
        goto out;
    }
    if (v->spatial_merge_size != 2) {
        rc = qw_error(QW_EXIT_DATA, "'%s': key 'vision_config.spatial_merge_size': only 2 is supported", name);
        goto out;
    }
    const cJSON *ds = item(vc, "deepstack_visual_indexes");
    if (!ds) {
        static const int def[3] = {8, 16, 24};
        v->n_deepstack = 3;
        memcpy(v->deepstack, def, sizeof def);
    } else {
        const cJSON *e;
        if (!cJSON_IsArray(ds)) {
            rc = qw_error(QW_EXIT_DATA, "'%s': key 'vision_config.deepstack_visual_indexes': expected a list", name);
            goto out;
        }
        cJSON_ArrayForEach(e, ds) {
            long long x;
            if (json_int(e, &x) || x < 0 || x >= v->depth || v->n_deepstack == 8 ||
                v->n_deepstack >= c->num_hidden_layers) {
                rc = qw_error(QW_EXIT_DATA, "'%s': key 'vision_config.deepstack_visual_indexes': expected at most 8 "
                              "block indices below depth %d (and no more than the %d decoder layers)", name, v->depth,
                              c->num_hidden_layers);
                goto out;
            }
            v->deepstack[v->n_deepstack++] = (int)x;
        }
    }
    int msum = c->mrope_section[0] + c->mrope_section[1] + c->mrope_section[2];
    if (msum && msum != c->head_dim / 2) {
        rc = qw_error(QW_EXIT_DATA, "'%s': key 'text_config.rope_scaling.mrope_section': %d + %d + %d is not head_dim/2 "
                      "= %d", name, c->mrope_section[0], c->mrope_section[1], c->mrope_section[2], c->head_dim / 2);
        goto out;
    }
    rc = 0;
out:
    cJSON_Delete(empty);
    return rc;
}

/* ---- parsing ---- */

typedef struct {
    const char *type;
    qw_arch arch;
    int vl;
    int head_dim_default_128;
    int max_pos;
    double theta;
} model_kind;

static const model_kind kinds[] = {
    {"qwen3", QW_ARCH_DENSE, 0, 1, 32768, 10000},
    {"qwen3_moe", QW_ARCH_MOE, 0, 0, 32768, 10000},
    {"qwen3_vl", QW_ARCH_DENSE, 1, 1, 128000, 500000},
    {"qwen3_vl_moe", QW_ARCH_MOE, 1, 0, 128000, 500000},
};

static int parse_moe(const src *s, qw_config *c, const model_kind *k)
{
    int rc;
    const char *w;
    const char *ekey = look(s, "num_experts", 0, &w) ? "num_experts" : "num_local_experts";
    if ((rc = get_int(s, ekey, 1, 0, 1, &c->num_experts)) ||
        (rc = get_int(s, "num_experts_per_tok", 1, 0, 1, &c->num_experts_per_tok)) ||
        (rc = get_int(s, "moe_intermediate_size", 1, 0, 1, &c->moe_intermediate_size)) ||
        (rc = get_int(s, "decoder_sparse_step", 0, 1, 1, &c->decoder_sparse_step)) ||
        (rc = get_bool(s, "norm_topk_prob", 0, 0, &c->norm_topk_prob)) ||
        (rc = get_double(s, "router_aux_loss_coef", 0.001, &c->router_aux_loss_coef)) ||
        (rc = get_bool(s, "output_router_logits", 0, 0, &c->output_router_logits)))
        return rc;
    if (k->vl) c->norm_topk_prob = 1;
    if (c->num_experts_per_tok > c->num_experts)
        return qw_error(QW_EXIT_DATA, "'%s': key '%snum_experts_per_tok': %d is more than the %d experts", s->file,
                        s->prefix, c->num_experts_per_tok, c->num_experts);
    const cJSON *m = look(s, "mlp_only_layers", 0, &w);
    if (m) {
        if (!cJSON_IsArray(m))
            return qw_error(QW_EXIT_DATA, "'%s': key '%smlp_only_layers': expected a list of layer indices", s->file, w);
        const cJSON *e;
        cJSON_ArrayForEach(e, m) {
            long long v;
            if (json_int(e, &v) || v < 0 || v >= c->num_hidden_layers)
                return qw_error(QW_EXIT_DATA, "'%s': key '%smlp_only_layers': not a layer index below %d", s->file, w,
                                c->num_hidden_layers);
            if (c->n_mlp_only_layers == QW_CONFIG_MAX_LAYERS)
                return qw_error(QW_EXIT_DATA, "'%s': key '%smlp_only_layers': too many entries", s->file, w);
            c->mlp_only_layers[c->n_mlp_only_layers++] = (int)v;
        }
    }
    return 0;
}

/* The sizes the values make, in one place: every product the parameter
 * layout and the model index with an int (heads × head_dim, the number of
 * tensors) must fit one, and the parameter count, in fp32 bytes, must fit
 * 64 bits.  Else QW_EXIT_DATA naming the file and the field. */
static int check_sizes(const qw_config *c, const char *name, const char *pre)
{
    int64_t H = c->hidden_size, d = c->head_dim, V = c->vocab_size, E = c->num_experts;
    int64_t q, kv, n;
    const char *too_big = "'%s': key '%s%s': %lld × %lld %s is more than %d";
    if (qw_mul_i64(c->num_attention_heads, d, &q) || q > INT_MAX)
        return qw_error(QW_EXIT_DATA, too_big, name, pre, "head_dim", (long long)d, (long long)c->num_attention_heads,
                        "attention heads", INT_MAX);
    if (qw_mul_i64(c->num_key_value_heads, d, &kv) || kv > INT_MAX)
        return qw_error(QW_EXIT_DATA, too_big, name, pre, "head_dim", (long long)d, (long long)c->num_key_value_heads,
                        "key-value heads", INT_MAX);
    /* tensors: embedding, norm, head; per layer 9, and 1 + 3E for an MoE block */
    if (qw_mul_i64(3, E, &n) || qw_add_i64(n, 10, &n) || qw_mul_i64(n, c->num_hidden_layers, &n) || n > INT_MAX - 3)
        return qw_error(QW_EXIT_DATA, "'%s': key '%snum_experts': %lld experts in %d layers are more tensors than %d",
                        name, pre, (long long)E, c->num_hidden_layers, INT_MAX);
    /* parameters (an upper bound: every layer counted with a dense MLP and an
     * MoE block), each term checked, naming the field that makes it large */
    int64_t embed, attn, mlp, experts, router, layer, total, bytes;
    const char *field = NULL;
    if (qw_mul_i64(V, H, &embed) || qw_mul_i64(embed, 2, &embed)) field = "vocab_size";
    else if (qw_mul_i64(H, q + kv, &attn) || qw_mul_i64(attn, 2, &attn)) field = "hidden_size";
    else if (qw_mul_i64(c->intermediate_size, H, &mlp) || qw_mul_i64(mlp, 3, &mlp)) field = "intermediate_size";
    else if (qw_mul_i64(c->moe_intermediate_size, H, &experts) || qw_mul_i64(experts, 3, &experts))
        field = "moe_intermediate_size";
    else if (qw_mul_i64(experts, E, &experts) || qw_mul_i64(E, H, &router)) field = "num_experts";
    else if (qw_add_i64(attn, mlp, &layer) || qw_add_i64(layer, experts, &layer) || qw_add_i64(layer, router, &layer) ||
             qw_mul_i64(layer, c->num_hidden_layers, &total) || qw_add_i64(total, embed, &total) ||
             qw_mul_i64(total, (int64_t)sizeof(float), &bytes)) {
        /* the sum overflows: name the field of its largest term */
        field = "vocab_size";
        int64_t big = embed;
        if (attn > big) big = attn, field = "hidden_size";
        if (mlp > big) big = mlp, field = "intermediate_size";
        if (experts > big) big = experts, field = "moe_intermediate_size";
    }
    if (field)
        return qw_error(QW_EXIT_DATA, "'%s': key '%s%s': the parameters' bytes overflow 64 bits", name, pre, field);
    return 0;
}

/* A sequence-classification architecture is a reward model when it has
 * one label; transformers counts the labels from id2label, else
 * num_labels, else 2 (PretrainedConfig's default). */
static int parse_head(const cJSON *root, const char *name, qw_config *c)
{
    const cJSON *a = item(root, "architectures");
    const cJSON *a0 = cJSON_IsArray(a) ? cJSON_GetArrayItem(a, 0) : NULL;
    if (!cJSON_IsString(a0) || !strstr(a0->valuestring, "ForSequenceClassification")) return 0;
    if (strncmp(c->model_type, "qwen3_vl", 8))
        c->score_head = 1;
    else
        return qw_error(QW_EXIT_DATA, "'%s': key 'architectures': %s: a Qwen3-VL reward model is not supported", name,
                        a0->valuestring);
    const cJSON *id2 = item(root, "id2label"), *nl = item(root, "num_labels");
    int labels = 2;
    const char *key = "num_labels";
    if (id2) {
        if (!cJSON_IsObject(id2)) return qw_error(QW_EXIT_DATA, "'%s': key 'id2label': expected an object", name);
        labels = cJSON_GetArraySize(id2);
        key = "id2label";
    } else if (nl) {
        if (!cJSON_IsNumber(nl)) return qw_error(QW_EXIT_DATA, "'%s': key 'num_labels': expected a number", name);
        labels = nl->valuedouble == 1 ? 1 : nl->valuedouble > 1 && nl->valuedouble < 1e6 ? (int)nl->valuedouble : 0;
    }
    if (labels != 1)
        return qw_error(QW_EXIT_DATA, "'%s': key '%s': %s with %d labels%s; a reward model has one (num_labels 1)", name,
                        key, a0->valuestring, labels, id2 || nl ? "" : " (the default without id2label)");
    return 0;
}

static int parse(const cJSON *root, const char *name, qw_config *c)
{
    memset(c, 0, sizeof *c);
    src s = {root, root, name, ""};
    if (!cJSON_IsObject(root)) return qw_error(QW_EXIT_DATA, "'%s': not a JSON object", name);
    const cJSON *mt = item(root, "model_type");
    if (!mt) return missing(&s, "model_type");
    if (!cJSON_IsString(mt)) return qw_error(QW_EXIT_DATA, "'%s': key 'model_type': expected a string", name);
    const model_kind *k = NULL;
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        if (!strcmp(mt->valuestring, kinds[i].type)) k = &kinds[i];
    if (!k)
        return qw_error(QW_EXIT_DATA, "'%s': key 'model_type': '%s' is not a Qwen3 model (qwen3, qwen3_moe, qwen3_vl, "
                        "qwen3_vl_moe)", name, mt->valuestring);
    snprintf(c->model_type, sizeof c->model_type, "%s", k->type);
    c->arch = k->arch;
    if (k->vl) {
        s.text = item(root, "text_config");
        s.prefix = "text_config.";
        if (!s.text) return qw_error(QW_EXIT_DATA, "'%s': missing key 'text_config'", name);
        if (!cJSON_IsObject(s.text)) return qw_error(QW_EXIT_DATA, "'%s': key 'text_config': expected an object", name);
    }
    int rc, sliding;
    if ((rc = get_int(&s, "vocab_size", 1, 0, 1, &c->vocab_size)) ||
        (rc = get_int(&s, "hidden_size", 1, 0, 1, &c->hidden_size)) ||
        (rc = get_int(&s, "num_hidden_layers", 1, 0, 1, &c->num_hidden_layers)) ||
        (rc = get_int(&s, "num_attention_heads", 1, 0, 1, &c->num_attention_heads)) ||
        (rc = get_int(&s, "num_key_value_heads", 0, c->num_attention_heads, 1, &c->num_key_value_heads)) ||
        (rc = get_int(&s, "head_dim", 0, k->head_dim_default_128 ? 128 : c->hidden_size / c->num_attention_heads, 2,
                      &c->head_dim)) ||
        (rc = get_int(&s, "max_position_embeddings", 0, k->max_pos, 1, &c->max_position_embeddings)) ||
        (rc = get_double(&s, "rms_norm_eps", 1e-6, &c->rms_norm_eps)) ||
        (rc = get_double(&s, "initializer_range", 0.02, &c->initializer_range)) ||
        (rc = get_bool(&s, "tie_word_embeddings", 1, 0, &c->tie_word_embeddings)) ||
        (rc = get_bool(&s, "attention_bias", 0, 0, &c->attention_bias)) ||
        (rc = get_bool(&s, "use_sliding_window", 0, 0, &sliding)) ||
        (rc = get_token(&s, "bos_token_id", 0, &c->bos_token_id)) ||
        (rc = get_token(&s, "eos_token_id", 0, &c->eos_token_id)) ||
        (rc = get_token(&s, "pad_token_id", 0, &c->pad_token_id)) ||
        (rc = get_token(&s, "image_token_id", 1, &c->image_token_id)) ||
        (rc = get_token(&s, "video_token_id", 1, &c->video_token_id)) ||
        (rc = get_token(&s, "vision_start_token_id", 1, &c->vision_start_token_id)) ||
        (rc = get_token(&s, "vision_end_token_id", 1, &c->vision_end_token_id)))
        return rc;
    const char *w;
    if (c->num_hidden_layers > QW_CONFIG_MAX_LAYERS)
        return qw_error(QW_EXIT_DATA, "'%s': key '%snum_hidden_layers': %d is more than %d", name, s.prefix,
                        c->num_hidden_layers, QW_CONFIG_MAX_LAYERS);
    if (c->num_attention_heads % c->num_key_value_heads)
        return qw_error(QW_EXIT_DATA, "'%s': key '%snum_key_value_heads': %d does not divide the %d attention heads",
                        name, s.prefix, c->num_key_value_heads, c->num_attention_heads);
    if (c->head_dim < 2)   /* only the default can be: hidden_size / num_attention_heads */
        return qw_error(QW_EXIT_DATA, "'%s': key '%shead_dim' is missing and hidden_size %d / num_attention_heads %d "
                        "is %d, below 2", name, s.prefix, c->hidden_size, c->num_attention_heads, c->head_dim);
    if (c->head_dim % 2)
        return qw_error(QW_EXIT_DATA, "'%s': key '%shead_dim': %d is odd (RoPE needs pairs)", name, s.prefix, c->head_dim);
    if (!(c->rms_norm_eps > 0))
        return qw_error(QW_EXIT_DATA, "'%s': key '%srms_norm_eps': must be positive", name, s.prefix);
    if (sliding)
        return qw_error(QW_EXIT_DATA, "'%s': key '%suse_sliding_window': sliding-window attention is not supported",
                        name, s.prefix);
    if (c->attention_bias)
        return qw_error(QW_EXIT_DATA, "'%s': key '%sattention_bias': attention biases are not supported", name, s.prefix);
    const cJSON *act = look(&s, "hidden_act", 0, &w);
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu")))
        return qw_error(QW_EXIT_DATA, "'%s': key '%shidden_act': only silu is supported", name, w);
    const cJSON *dt = look(&s, "torch_dtype", 1, &w);
    if (!dt) dt = look(&s, "dtype", 1, &w);
    if (cJSON_IsString(dt)) snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", dt->valuestring);
    if (c->arch == QW_ARCH_MOE && (rc = parse_moe(&s, c, k))) return rc;
    int any_dense = c->arch == QW_ARCH_DENSE;
    for (int i = 0; i < c->num_hidden_layers && !any_dense; i++) any_dense = !qw_config_layer_is_moe(c, i);
    if ((rc = get_int(&s, "intermediate_size", any_dense, 0, any_dense, &c->intermediate_size))) return rc;
    if ((rc = check_sizes(c, name, s.prefix))) return rc;
    if ((rc = parse_head(root, name, c))) return rc;
    if ((rc = parse_rope(&s, c, k->theta))) return rc;
    return k->vl ? parse_vision(root, name, c) : 0;
}

int qw_config_parse(const char *json, const char *name, qw_config *c)
{
    cJSON *root = cJSON_Parse(json);
    if (!root) {
        memset(c, 0, sizeof *c);
        return qw_error(QW_EXIT_DATA, "'%s': not valid JSON", name);
    }
    int rc = parse(root, name, c);
    cJSON_Delete(root);
    return rc;
}

static char *config_path(const char *path)
{
    struct stat sb;
    qw_buf b = {0};
    qw_buf_adds(&b, path);
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) qw_buf_adds(&b, "/config.json");
    return (char *)qw_buf_cstr(&b);
}

int qw_config_load(const char *path, qw_config *c)
{
    char *p = config_path(path);
    qw_buf b = {0};
    int rc = qw_read_file(p, &b, NULL);
    if (!rc) rc = qw_config_parse(qw_buf_cstr(&b), p, c);
    qw_buf_free(&b);
    free(p);
    return rc;
}

int qw_config_layer_is_moe(const qw_config *c, int layer)
{
    if (c->arch != QW_ARCH_MOE || c->num_experts <= 0 || c->decoder_sparse_step <= 0) return 0;
    for (int i = 0; i < c->n_mlp_only_layers; i++)
        if (c->mlp_only_layers[i] == layer) return 0;
    return (layer + 1) % c->decoder_sparse_step == 0;
}

void qw_config_param_counts(const qw_config *c, int64_t *total, int64_t *active)
{
    int64_t H = c->hidden_size, d = c->head_dim, V = c->vocab_size;
    int64_t attn = 2 * H + (int64_t)c->num_attention_heads * d * H * 2 + (int64_t)c->num_key_value_heads * d * H * 2 + 2 * d;
    int64_t t = V * H * (c->score_head || c->tie_word_embeddings ? 1 : 2) + H + (c->score_head ? H : 0), a = t;
    for (int i = 0; i < c->num_hidden_layers; i++) {
        t += attn;
        a += attn;
        if (qw_config_layer_is_moe(c, i)) {
            int64_t expert = 3 * (int64_t)c->moe_intermediate_size * H;
            t += c->num_experts * H + c->num_experts * expert;
            a += c->num_experts * H + c->num_experts_per_tok * expert;
        } else {
            t += 3 * (int64_t)c->intermediate_size * H;
            a += 3 * (int64_t)c->intermediate_size * H;
        }
    }
    if (c->vision.depth > 0) {   /* the vision tower: every image token uses all of it */
        int64_t Hv = c->vision.hidden_size, Iv = c->vision.intermediate_size, M = 4 * Hv, O = c->vision.out_hidden_size;
        int64_t K = (int64_t)c->vision.in_channels * c->vision.temporal_patch_size * c->vision.patch_size *
                    c->vision.patch_size;
        int64_t blk = 4 * Hv + 3 * Hv * Hv + 3 * Hv + Hv * Hv + Hv + Iv * Hv + Iv + Hv * Iv + Hv;
        int64_t mrg = M * M + M + O * M + O;
        int64_t vis = Hv * K + Hv + (int64_t)c->vision.num_position_embeddings * Hv + c->vision.depth * blk +
                      2 * Hv + mrg + c->vision.n_deepstack * (2 * M + mrg);
        t += vis, a += vis;
    }
    if (total) *total = t;
    if (active) *active = a;
}

/* ---- writing ---- */

/* A float as Python's repr writes it: shortest round trip, ".0" if integral. */
static cJSON *num(double v)
{
    char s[64];
    int p;
    for (p = 1; p < 17; p++) {
        snprintf(s, sizeof s, "%.*g", p, v);
        if (strtod(s, NULL) == v) break;
    }
    snprintf(s, sizeof s, "%.*g", p, v);
    double a = fabs(v);
    if (strchr(s, 'e') && a >= 1e-4 && a < 1e16) {
        int exp10 = (int)floor(log10(a));
        snprintf(s, sizeof s, "%.*f", p - 1 - exp10 > 0 ? p - 1 - exp10 : 0, v);
    }
    if (!strpbrk(s, ".e")) strcat(s, ".0");
    return cJSON_CreateRaw(s);
}

typedef struct { const char *key; cJSON *val; } kv;

static int kv_cmp(const void *a, const void *b) { return strcmp(((const kv *)a)->key, ((const kv *)b)->key); }

static void add_sorted(cJSON *obj, kv *items, int n)
{
    qsort(items, n, sizeof *items, kv_cmp);
    for (int i = 0; i < n; i++) cJSON_AddItemToObject(obj, items[i].key, items[i].val);
}

int qw_config_save(const qw_config *c, const char *path)
{
    int moe = c->arch == QW_ARCH_MOE, vl = !strncmp(c->model_type, "qwen3_vl", 8);
    if (strcmp(c->model_type, moe ? "qwen3_moe" : "qwen3") && strcmp(c->model_type, moe ? "qwen3_vl_moe" : "qwen3_vl"))
        return qw_error(QW_EXIT_FAIL, "'%s': cannot write a %s config", path, c->model_type);
    kv it[48];
    int n = 0;
#define PUT(k, v) (it[n].key = (k), it[n++].val = (v))
    cJSON *arch = cJSON_CreateArray();
    cJSON_AddItemToArray(arch, cJSON_CreateString(vl ? (moe ? "Qwen3VLMoeForConditionalGeneration" : "Qwen3VLForConditionalGeneration")
                                                     : c->score_head ? (moe ? "Qwen3MoeForSequenceClassification"
                                                                            : "Qwen3ForSequenceClassification")
                                                     : moe ? "Qwen3MoeForCausalLM" : "Qwen3ForCausalLM"));
    if (!vl) PUT("architectures", arch);
    if (c->score_head) {   /* one label, as transformers writes it */
        cJSON *id2 = cJSON_CreateObject(), *l2id = cJSON_CreateObject();
        cJSON_AddStringToObject(id2, "0", "LABEL_0");
        cJSON_AddNumberToObject(l2id, "LABEL_0", 0);
        PUT("id2label", id2);
        PUT("label2id", l2id);
    }
    PUT("attention_bias", cJSON_CreateBool(c->attention_bias));
    PUT("attention_dropout", num(0.0));
    if (c->bos_token_id >= 0) PUT("bos_token_id", cJSON_CreateNumber(c->bos_token_id));
    if (c->eos_token_id >= 0) PUT("eos_token_id", cJSON_CreateNumber(c->eos_token_id));
    if (c->pad_token_id >= 0) PUT("pad_token_id", cJSON_CreateNumber(c->pad_token_id));
    PUT("head_dim", cJSON_CreateNumber(c->head_dim));
    PUT("hidden_act", cJSON_CreateString("silu"));
    PUT("hidden_size", cJSON_CreateNumber(c->hidden_size));
    PUT("initializer_range", num(c->initializer_range));
    PUT("intermediate_size", cJSON_CreateNumber(c->intermediate_size));
    PUT("max_position_embeddings", cJSON_CreateNumber(c->max_position_embeddings));
    if (!vl) PUT("max_window_layers", cJSON_CreateNumber(c->num_hidden_layers));
    PUT("model_type", cJSON_CreateString(!vl ? c->model_type : moe ? "qwen3_vl_moe_text" : "qwen3_vl_text"));
    PUT("num_attention_heads", cJSON_CreateNumber(c->num_attention_heads));
    PUT("num_hidden_layers", cJSON_CreateNumber(c->num_hidden_layers));
    PUT("num_key_value_heads", cJSON_CreateNumber(c->num_key_value_heads));
    PUT("rms_norm_eps", num(c->rms_norm_eps));
    PUT("rope_theta", num(c->rope_theta));
    if (c->rope_type == QW_ROPE_YARN) {
        kv r[10];
        int m = 0;
        cJSON *rs = cJSON_CreateObject();
        r[m++] = (kv){"rope_type", cJSON_CreateString("yarn")};
        r[m++] = (kv){"factor", num(c->rope_factor)};
        r[m++] = (kv){"original_max_position_embeddings", cJSON_CreateNumber(c->rope_original_max_position)};
        if (c->rope_attention_factor > 0) r[m++] = (kv){"attention_factor", num(c->rope_attention_factor)};
        if (c->yarn_beta_fast != 32) r[m++] = (kv){"beta_fast", num(c->yarn_beta_fast)};
        if (c->yarn_beta_slow != 1) r[m++] = (kv){"beta_slow", num(c->yarn_beta_slow)};
        if (c->yarn_mscale > 0) r[m++] = (kv){"mscale", num(c->yarn_mscale)};
        if (c->yarn_mscale_all_dim > 0) r[m++] = (kv){"mscale_all_dim", num(c->yarn_mscale_all_dim)};
        if (!c->yarn_truncate) r[m++] = (kv){"truncate", cJSON_CreateFalse()};
        add_sorted(rs, r, m);
        PUT("rope_scaling", rs);
    } else if (vl && c->mrope_section[0] + c->mrope_section[1] + c->mrope_section[2] > 0) {
        kv r[3];
        cJSON *rs = cJSON_CreateObject(), *sec = cJSON_CreateArray();
        for (int i = 0; i < 3; i++) cJSON_AddItemToArray(sec, cJSON_CreateNumber(c->mrope_section[i]));
        r[0] = (kv){"rope_type", cJSON_CreateString("default")};
        r[1] = (kv){"mrope_section", sec};
        r[2] = (kv){"mrope_interleaved", cJSON_CreateBool(c->mrope_interleaved)};
        add_sorted(rs, r, 3);
        PUT("rope_scaling", rs);
    } else {
        PUT("rope_scaling", cJSON_CreateNull());
    }
    if (!vl) {
        PUT("sliding_window", cJSON_CreateNull());
        PUT("use_sliding_window", cJSON_CreateFalse());
    }
    PUT("tie_word_embeddings", cJSON_CreateBool(c->tie_word_embeddings));
    if (c->torch_dtype[0] && !vl) PUT("torch_dtype", cJSON_CreateString(c->torch_dtype));
    if (!vl) PUT("transformers_version", cJSON_CreateString("4.51.0"));
    PUT("use_cache", cJSON_CreateTrue());
    PUT("vocab_size", cJSON_CreateNumber(c->vocab_size));
    if (moe) {
        cJSON *mlp = cJSON_CreateArray();
        for (int i = 0; i < c->n_mlp_only_layers; i++) cJSON_AddItemToArray(mlp, cJSON_CreateNumber(c->mlp_only_layers[i]));
        PUT("decoder_sparse_step", cJSON_CreateNumber(c->decoder_sparse_step));
        PUT("mlp_only_layers", mlp);
        PUT("moe_intermediate_size", cJSON_CreateNumber(c->moe_intermediate_size));
        PUT("norm_topk_prob", cJSON_CreateBool(c->norm_topk_prob));
        PUT("num_experts", cJSON_CreateNumber(c->num_experts));
        PUT("num_experts_per_tok", cJSON_CreateNumber(c->num_experts_per_tok));
        PUT("output_router_logits", cJSON_CreateBool(c->output_router_logits));
        PUT("router_aux_loss_coef", num(c->router_aux_loss_coef));
    }
    cJSON *root = cJSON_CreateObject();
    if (vl) {   /* the nested Qwen3-VL form: the text keys above go to text_config */
        cJSON *text = cJSON_CreateObject();
        add_sorted(text, it, n);
        n = 0;
        PUT("architectures", arch);
        PUT("model_type", cJSON_CreateString(c->model_type));
        PUT("text_config", text);
        PUT("tie_word_embeddings", cJSON_CreateBool(c->tie_word_embeddings));
        if (c->torch_dtype[0]) PUT("torch_dtype", cJSON_CreateString(c->torch_dtype));
        PUT("transformers_version", cJSON_CreateString("4.57.0"));
        if (c->image_token_id >= 0) PUT("image_token_id", cJSON_CreateNumber(c->image_token_id));
        if (c->video_token_id >= 0) PUT("video_token_id", cJSON_CreateNumber(c->video_token_id));
        if (c->vision_start_token_id >= 0) PUT("vision_start_token_id", cJSON_CreateNumber(c->vision_start_token_id));
        if (c->vision_end_token_id >= 0) PUT("vision_end_token_id", cJSON_CreateNumber(c->vision_end_token_id));
        if (c->vision.depth > 0) {
            const typeof(c->vision) *v = &c->vision;
            kv r[16];
            int m = 0;
            cJSON *vc = cJSON_CreateObject(), *ds = cJSON_CreateArray();
            for (int i = 0; i < v->n_deepstack; i++) cJSON_AddItemToArray(ds, cJSON_CreateNumber(v->deepstack[i]));
            r[m++] = (kv){"deepstack_visual_indexes", ds};
            r[m++] = (kv){"depth", cJSON_CreateNumber(v->depth)};
            r[m++] = (kv){"hidden_act", cJSON_CreateString("gelu_pytorch_tanh")};
            r[m++] = (kv){"hidden_size", cJSON_CreateNumber(v->hidden_size)};
            r[m++] = (kv){"in_channels", cJSON_CreateNumber(v->in_channels)};
            r[m++] = (kv){"initializer_range", num(v->initializer_range)};
            r[m++] = (kv){"intermediate_size", cJSON_CreateNumber(v->intermediate_size)};
            r[m++] = (kv){"model_type", cJSON_CreateString(c->model_type)};
            r[m++] = (kv){"num_heads", cJSON_CreateNumber(v->num_heads)};
            r[m++] = (kv){"num_position_embeddings", cJSON_CreateNumber(v->num_position_embeddings)};
            r[m++] = (kv){"out_hidden_size", cJSON_CreateNumber(v->out_hidden_size)};
            r[m++] = (kv){"patch_size", cJSON_CreateNumber(v->patch_size)};
            r[m++] = (kv){"spatial_merge_size", cJSON_CreateNumber(v->spatial_merge_size)};
            r[m++] = (kv){"temporal_patch_size", cJSON_CreateNumber(v->temporal_patch_size)};
            add_sorted(vc, r, m);
            PUT("vision_config", vc);
        }
    }
#undef PUT
    add_sorted(root, it, n);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    qw_buf b = {0};
    qw_buf_adds(&b, text);
    qw_buf_addc(&b, '\n');
    free(text);
    char *p = config_path(path);
    int rc = qw_write_file_atomic(p, b.p, b.n);
    free(p);
    qw_buf_free(&b);
    return rc;
}
