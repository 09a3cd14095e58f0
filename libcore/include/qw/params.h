/* qw/params.h — the parameter layout of a Qwen3 model (dense or MoE), one
 * contiguous fp32 arena, loading and saving Hugging Face checkpoints.
 *
 * Layout.  qw_params_init builds, from a config, the list of tensors in
 * the published (Hub) layout and names (doc/model.md §5): for MoE
 * layers the experts are per-expert tensors "model.layers.{i}.mlp.experts.
 * {j}.{gate,up,down}_proj.weight".  Within a layer, all experts' gate_proj
 * come first (one [E][Ie][H] block), then all up_proj ([E][Ie][H]), then all
 * down_proj ([E][H][Ie]), so the compute code indexes experts by offset.
 * Tied models have no lm_head tensor: lm_head points at embed_tokens.
 * A reward model (cfg.score_head: Qwen3ForSequenceClassification, one
 * label) has no LM head at all (lm_head NULL) but "score.weight" [1,H]
 * (score), the value head that qw/rm.h applies to the final hidden state.
 * Order in the arena: embedding; per layer input norm, q, k, v, o, q_norm,
 * k_norm, post norm, then the MLP (dense gate, up, down; or router and the
 * three expert blocks); final norm; lm_head (or score).  Every tensor (every expert
 * block) starts on a 64-byte boundary; the gaps stay zero.
 * Qwen3-VL configs name the text model "model.language_model.*" as the
 * published checkpoints do (lm_head stays "lm_head.weight"); with a vision
 * tower (cfg.vision.depth > 0) its tensors "model.visual.*" follow lm_head
 * in the arena, in the Hub's names and shapes (qw/vision.h lists them;
 * patch_embed.proj.weight keeps its 5-D shape [Hv, C, tp, p, p]).  Their
 * init: LayerNorm weights ones, biases zeros, the rest
 * normal(0, vision_config.initializer_range).
 *
 * The same layout serves weights, gradients and optimizer moments: make a
 * second qw_params with qw_params_alloc_like and index both the same way.
 *
 * Memory.  An arena lives in host memory (ops NULL: as qw_params_init
 * makes it) or in the device memory of a backend (ops set: after
 * qw_params_to_device, or alloc_like of such an arena); every view pointer
 * (data, embed, layer[i].q, …) is then a device pointer of that backend.
 * Initialising and loading (init_random, load) need a host arena: build,
 * fill, then move.  The qw_params owns its arena(s) either way:
 * qw_params_free releases them through ops->free or free().
 *
 * Compute copy.  The GEMMs read the weights in the backend's activation
 * type (qw/ops.h: act_size bytes per element): `compute` holds the arena
 * in that type at the same element offsets (tensor i at byte
 * p[i].offset·act_size).  When the activation type is fp32 (host arenas,
 * the CPU backend, cuda-fp32) compute == data, no copy; with bf16 it is a
 * second device allocation, refreshed by the optimizer (qw/optim.h) or by
 * qw_params_sync_compute.  Gradient and moment arenas have none (NULL).
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
#include "qw/ops.h"
#include "qw/st.h"

typedef struct {
    char name[128];          /* HF name, Hub layout */
    int ndim;
    int64_t shape[QW_ST_MAX_DIMS];   /* patch_embed.proj.weight has 5 dimensions */
    int64_t numel;
    size_t offset;           /* in floats, from the start of the arena */
    int no_decay;            /* norms, biases and embeddings: no weight decay */
    int frozen;              /* not trained: AdamW leaves it as it is (set by the trainer) */
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
    float *lm_head;          /* [V,H]; == embed when tied; NULL for a reward model */
    float *score;            /* [1,H]: a reward model's value head; NULL otherwise */
    qw_layer_params *layer;  /* [L], owned */
    void *index;             /* private: name lookup */
    const qw_ops *ops;       /* the backend whose memory holds the arena; NULL: host */
    void *compute;           /* weights in the activation type (see Compute copy); == data
                                when fp32; NULL in gradient and moment arenas; owned */
} qw_params;

/* Build the layout for a config and allocate a zeroed host arena
 * (compute == data).  QW_EXIT_FAIL when the arena cannot be allocated. */
int qw_params_init(qw_params *P, const qw_config *c);
/* Same layout as src, new zeroed arena in the same memory (host, or src's
 * backend), without a compute copy (for gradients, moments).
 * QW_EXIT_FAIL, naming the bytes, when it cannot be allocated. */
int qw_params_alloc_like(qw_params *dst, const qw_params *src);
/* Move a host arena into the device memory of `ops`: allocate with
 * ops->alloc, upload, free the host arena, rebase every view; make the
 * compute copy (ops->to_act) when ops->act_size is not 4.  An arena
 * without a compute copy (alloc_like) gets none.  Already on `ops`: a
 * no-op.  On another backend: QW_EXIT_FAIL.  Out of device memory:
 * QW_EXIT_FAIL naming the bytes, and P is left as it was (on the host). */
int qw_params_to_device(qw_params *P, const qw_ops *ops);
/* Refresh the compute copy from the fp32 weights, after they changed
 * other than through qw_adamw_step (which refreshes it itself).  A no-op
 * when compute == data or there is none. */
void qw_params_sync_compute(qw_params *P);
/* The arena's values in host memory: P->data itself for a host arena
 * (*owned = NULL), else a copy downloaded into *owned, which the caller
 * frees.  For writing checkpoints from a device arena. */
const float *qw_params_host(const qw_params *P, float **owned);
void qw_params_free(qw_params *P);
/* The tensor of that name, or NULL. */
const qw_param *qw_params_find(const qw_params *P, const char *name);
static inline float *qw_params_ptr(const qw_params *P, const qw_param *p) { return P->data + p->offset; }

/* Initialise as HF does: normal(0, initializer_range) for every linear and
 * the embedding, ones for every RMSNorm weight.  Deterministic in seed:
 * each tensor draws from its own qw_rng stream (the FNV-1a hash of its
 * name), so a tensor's values do not depend on the rest of the layout. */
void qw_params_init_random(qw_params *P, uint64_t seed);

/* Draw a reward model's score.weight as transformers initialises a new
 * head: normal(0, initializer_range), from its own stream of seed (as
 * qw_params_init_random would draw it).  A no-op without one. */
void qw_params_init_head(qw_params *P, uint64_t seed);

/* Load from an open checkpoint into a host arena (QW_EXIT_FAIL on a
 * device arena).  Accepts the Hub per-expert layout and the
 * fused expert layout of transformers 5.x ("mlp.experts.gate_up_proj"
 * [E,2·Ie,H] gate rows first, "mlp.experts.down_proj" [E,H,Ie]; for
 * qwen3_vl_moe also the transposed Hub form [E,H,2·Ie] / [E,Ie,H], told
 * apart by shape, the Hub form where both fit), any float
 * dtype.  With tied embeddings an lm_head.weight in the file is ignored.
 * Every tensor of the layout must be present; tensors the model does not
 * use are an error unless allow_extra.  A tensor given twice (per-expert
 * and fused) or of a non-float dtype is QW_EXIT_DATA. */
int qw_params_load(qw_params *P, const qw_st *st, int allow_extra);

/* Start a reward model (cfg.score_head) from a causal LM's checkpoint:
 * load the backbone as qw_params_load does, skip the file's
 * lm_head.weight and leave score.weight as it is (qw_params_init_head
 * draws it).  A reward-model file works too (its score.weight is loaded).
 * Errors as qw_params_load; QW_EXIT_FAIL on a layout without score. */
int qw_params_load_backbone(qw_params *P, const qw_st *st);

/* The checks of qw_params_load (names, shapes, float dtypes, both expert
 * layouts, nothing missing or unexpected) without allocating an arena or
 * reading any values: for checkpoints larger than memory. */
int qw_params_check(const qw_config *c, const qw_st *st, int allow_extra);

/* Write `dir`/model.safetensors (Hub layout, dtype F32 or BF16, metadata
 * format "pt" as transformers requires; shards of at most 5 GB with an
 * index beyond that), `dir`/config.json (torch_dtype set to the dtype
 * written) and `dir`/generation_config.json (bos/eos ids).  Creates dir.
 * Atomic per file (qw/st.h).  Other dtypes are QW_EXIT_FAIL.  A device
 * arena is downloaded first (qw_params_host). */
int qw_params_save(const qw_params *P, const char *dir, qw_dtype dtype);

#endif
