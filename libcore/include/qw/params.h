/* qw/params.h — the parameter layout of a Qwen3 model (dense or MoE), one
 * contiguous fp32 arena, loading and saving Hugging Face checkpoints.
 *
 * Layout.  qw_params_init builds, from a config, the list of tensors in
 * the published (Hub) layout and names (reference/qwen3.md §4): for MoE
 * layers the experts are per-expert tensors "model.layers.{i}.mlp.experts.
 * {j}.{gate,up,down}_proj.weight".  Within a layer, all experts' gate_proj
 * come first (one [E][Ie][H] block), then all up_proj ([E][Ie][H]), then all
 * down_proj ([E][H][Ie]), so the compute code indexes experts by offset.
 * Tied models have no lm_head tensor: lm_head points at embed_tokens.
 * Order in the arena: embedding; per layer input norm, q, k, v, o, q_norm,
 * k_norm, post norm, then the MLP (dense gate, up, down; or router and the
 * three expert blocks); final norm; lm_head.  Every tensor (every expert
 * block) starts on a 64-byte boundary; the gaps stay zero.
 * Qwen3-VL configs name the text model "model.language_model.*" as the
 * published checkpoints do (lm_head stays "lm_head.weight").
 *
 * The same layout serves weights, gradients and optimizer moments: make a
 * second qw_params with qw_params_alloc_like and index both the same way.
 *
 * Errors: 0 or QW_EXIT_* with a message (qw/cli.h).  Loading names the
 * file and the tensor: a missing tensor, an unexpected one, a shape that
 * does not match the config are QW_EXIT_DATA.
 */
#ifndef QW_PARAMS_H
#define QW_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "qw/config.h"
#include "qw/st.h"

typedef struct {
    char name[128];          /* HF name, Hub layout */
    int ndim;
    int64_t shape[3];
    int64_t numel;
    size_t offset;           /* in floats, from the start of the arena */
    int no_decay;            /* norms, biases and embeddings: no weight decay */
} qw_param;

typedef struct {
    /* views into the arena; NULL where the layer lacks them */
    float *input_norm;       /* [H] */
    float *q, *k, *v, *o;    /* [nh·d,H] [nkv·d,H] [nkv·d,H] [H,nh·d] */
    float *q_norm, *k_norm;  /* [d] */
    float *post_norm;        /* [H] */
    float *gate, *up, *down; /* dense MLP: [I,H] [I,H] [H,I] */
    float *router;           /* MoE: [E,H] */
    float *exp_gate, *exp_up, *exp_down;  /* MoE: [E,Ie,H] [E,Ie,H] [E,H,Ie] */
    int is_moe;
} qw_layer_params;

typedef struct {
    qw_config cfg;
    int n;                   /* number of tensors */
    qw_param *p;             /* owned */
    float *data;             /* the arena, `total` floats, 64-byte aligned, owned */
    size_t total;
    float *embed;            /* [V,H] */
    float *final_norm;       /* [H] */
    float *lm_head;          /* [V,H]; == embed when tied */
    qw_layer_params *layer;  /* [L], owned */
    void *index;             /* private: name lookup */
} qw_params;

/* Build the layout for a config and allocate a zeroed arena.  QW_EXIT_FAIL
 * when the arena cannot be allocated. */
int qw_params_init(qw_params *P, const qw_config *c);
/* Same layout as src, new zeroed arena (for gradients, moments). */
int qw_params_alloc_like(qw_params *dst, const qw_params *src);
void qw_params_free(qw_params *P);
/* The tensor of that name, or NULL. */
const qw_param *qw_params_find(const qw_params *P, const char *name);
static inline float *qw_params_ptr(const qw_params *P, const qw_param *p) { return P->data + p->offset; }

/* Initialise as HF does: normal(0, initializer_range) for every linear and
 * the embedding, ones for every RMSNorm weight.  Deterministic in seed:
 * each tensor draws from its own qw_rng stream (the FNV-1a hash of its
 * name), so a tensor's values do not depend on the rest of the layout. */
void qw_params_init_random(qw_params *P, uint64_t seed);

/* Load from an open checkpoint.  Accepts the Hub per-expert layout and the
 * fused expert layout of transformers 5.x ("mlp.experts.gate_up_proj"
 * [E,2·Ie,H] gate rows first, "mlp.experts.down_proj" [E,H,Ie]; for
 * qwen3_vl_moe the transposed Hub form [E,H,2·Ie] / [E,Ie,H]), any float
 * dtype.  With tied embeddings an lm_head.weight in the file is ignored.
 * Every tensor of the layout must be present; tensors the model does not
 * use are an error unless allow_extra.  A tensor given twice (per-expert
 * and fused) or of a non-float dtype is QW_EXIT_DATA. */
int qw_params_load(qw_params *P, const qw_st *st, int allow_extra);

/* The checks of qw_params_load (names, shapes, float dtypes, both expert
 * layouts, nothing missing or unexpected) without allocating an arena or
 * reading any values: for checkpoints larger than memory. */
int qw_params_check(const qw_config *c, const qw_st *st, int allow_extra);

/* Write `dir`/model.safetensors (Hub layout, dtype F32 or BF16, metadata
 * format "pt" as transformers requires; shards of at most 5 GB with an
 * index beyond that), `dir`/config.json (torch_dtype set to the dtype
 * written) and `dir`/generation_config.json (bos/eos ids).  Creates dir.
 * Atomic per file (qw/st.h).  Other dtypes are QW_EXIT_FAIL. */
int qw_params_save(const qw_params *P, const char *dir, qw_dtype dtype);

#endif
