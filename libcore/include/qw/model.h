/* qw/model.h — the Qwen3 decoder (dense and MoE): activation plan, forward
 * and backward schedule over a backend's op table (qw/ops.h).
 *
 * A qw_model is built for one parameter set and one batch shape (B rows of
 * T tokens).  Every activation and scratch buffer is sized and allocated
 * once, up front (the "activation plan"); forward and backward allocate
 * nothing.  The model never owns the parameters: `P` (and the gradient
 * arena given to the backward) must outlive it, and their arenas must be
 * device memory of the backend (qw_params_to_device; host arenas serve the
 * CPU backend as they are).
 *
 * Precision.  Activations are in the backend's activation type (qw/ops.h:
 * fp32 on the CPU, bf16 on cuda): the GEMMs read the weights from
 * P->compute; RMSNorm weights and the embedding table are read from the
 * fp32 master arena; weight gradients are accumulated in fp32 (gemm
 * c_f32) into the fp32 gradient arena; the router logits and the LM-head
 * logits (one chunk at a time) are fp32, and so are the loss, log-probs
 * and softmax statistics.
 *
 * Numerics are those of HF transformers in fp32 (doc/model.md §1-3):
 * RMSNorm with eps inside the sqrt; q/k RMSNorm per head before RoPE;
 * RoPE in the rotate_half convention, YaRN as after transformers PR #40320;
 * causal GQA attention with scores scaled by d^-1/2; SwiGLU; MoE with an
 * fp32 softmax router, top-k (ties: lower expert id first), renormalised
 * when norm_topk_prob, experts summed in fp32; final RMSNorm and the LM
 * head (tied to the embedding when tie_word_embeddings).
 *
 * Documents.  Each token carries a position id and a document (segment)
 * id.  Tokens attend only to earlier tokens of the same row *and* the same
 * document; a document is a run of equal segment ids within a row.  With
 * no segment ids a row is one document; with no position ids positions
 * count from 0 at the start of each document.
 *
 * Objective (doc/design.md, principle 3).  The loss is Σ_t c_t·(−log p(y_t)) over
 * tokens t with a target y_t, for per-token coefficients c_t supplied by
 * the caller (qw/objective.h builds the usual ones: mean next-token CE,
 * SFT masks; RL objectives pass their own).  The LM head and the
 * cross-entropy run over chunks of rows, so the full [B·T, V] logits exist
 * only when the caller asks for them; the backward recomputes each chunk's
 * logits instead of keeping them.
 *
 * MoE load balancing.  aux_loss is HF's load_balancing_loss_func over the
 * router logits of the MoE layers only, concatenated (no padding mask):
 * with N = (MoE layers)·B·T rows, f[e] = (number of rows whose top-k holds
 * e)/N, p[e] = (Σ_rows softmax(logits)[e])/N, aux = E·Σ_e f[e]·p[e].  It is
 * reported by the forward; the backward adds aux_coef·∂aux (through p;
 * the top-k selection has no gradient).
 *
 * Capacity (optional, off by default).  With capacity_factor c > 0, each
 * expert of each layer processes at most ceil(c·B·T·k/E) token
 * assignments: the first ones in token order (row-major over B, T); the
 * rest are dropped: they add nothing to the output and get no gradient,
 * and the remaining weights of that token are not renormalised.  The aux
 * loss counts the top-k selection before dropping, as HF does.
 *
 * Errors: 0 or QW_EXIT_* with a message (qw/cli.h): bad shapes, token ids
 * outside the vocabulary, bad targets or positions are QW_EXIT_DATA; out
 * of device memory is QW_EXIT_FAIL.
 */
#ifndef QW_MODEL_H
#define QW_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "qw/config.h"
#include "qw/ops.h"
#include "qw/params.h"

typedef struct {
    double capacity_factor;   /* MoE: 0 = no limit (every assignment kept) */
    /* Activation recomputation: keep only one layer's RMSNorm outputs and
     * dense-MLP activations (gate, up, SwiGLU), and recompute them from the
     * saved residual stream and rstd at the start of each layer's backward
     * (two RMSNorms, the gate and up GEMMs and SwiGLU per layer).  Same
     * results bit for bit; about 2·H + 3·I fewer activations per token and
     * layer for one more forward of those parts. */
    int recompute;
} qw_model_opts;

/* One batch, in host memory, each array [B·T] row-major. */
typedef struct {
    const int32_t *ids;       /* token ids, 0 ≤ id < V (required) */
    const int32_t *pos;       /* position ids ≥ 0, or NULL (count from each document's start) */
    const int32_t *seg;       /* document ids, or NULL (one document per row) */
    const int32_t *targets;   /* the token to predict at each position, −1 = none;
                                 NULL: the next token of the row (all B·(T−1) positions) */
    const float *coef;        /* loss coefficient per token; NULL: 1/(number of targets) */
} qw_batch;

typedef struct {
    double loss;              /* Σ_t coef_t·(−log p(target_t)) */
    double aux_loss;          /* MoE load-balancing loss; 0 for dense models */
    int n_targets;            /* tokens with a target */
} qw_model_out;

typedef struct qw_model qw_model;

/* Build the model and its activation plan for batches of B×T tokens. */
int qw_model_new(const qw_ops *ops, const qw_params *P, int B, int T, const qw_model_opts *opts,
                 qw_model **out);
void qw_model_free(qw_model *m);
/* Bytes of device memory the activation plan holds. */
size_t qw_model_plan_bytes(const qw_model *m);

/* Forward pass.  `logits` (host, [B·T, V]) and `logp` (host, [B·T]: log
 * p(target) per token, 0 where there is no target) are written when not
 * NULL.  Keeps what the backward needs; the batch arrays need not outlive
 * the call. */
int qw_model_forward(qw_model *m, const qw_batch *b, float *logits, float *logp, qw_model_out *out);

/* Backward pass of the last forward: the gradient of
 * loss + aux_coef·aux_loss with respect to every parameter is ADDED to
 * `grads` (same layout as P: qw_params_alloc_like).  For tied models the
 * LM-head gradient lands in the embedding's. */
int qw_model_backward(qw_model *m, qw_params *grads, float aux_coef);

/* Replace the coefficients of the last forward's batch (host, [B·T])
 * before qw_model_backward: for objectives that compute them from the
 * forward's log-probs (GRPO's clipped ratio, DPO's margins).  The loss the
 * forward reported is not recomputed.  QW_EXIT_FAIL without a forward. */
int qw_model_set_coef(qw_model *m, const float *coef);

/* The temperature T of the LM head: from now on the logits are z/T (z =
 * the LM head's output), so log-probs, loss and gradients are those of
 * log_softmax(z/T) — the distribution a sampler at temperature T draws
 * from (TRL divides the logits by the temperature in GRPO's forward).  The
 * 1/T is the LM-head GEMM's alpha (forward and backward), nothing else
 * changes; `logits` returned by the forward are z/T.  T = 1 (the default)
 * is bit for bit the model without it.  QW_EXIT_USAGE unless T is finite
 * and > 0.  Forgets the last forward. */
int qw_model_set_temperature(qw_model *m, double temperature);

/* Forward and backward of one batch, for training: `out` as the forward
 * gives it, and the gradient ADDED to `grads` as the backward does, with
 * the same values.  The LM head's gradient is taken while each chunk's
 * logits are in hand, so they are not computed twice (one LM-head GEMM
 * fewer than forward + backward).  A qw_model_backward after it is an
 * error (the batch is consumed). */
int qw_model_step(qw_model *m, const qw_batch *b, qw_params *grads, float aux_coef, qw_model_out *out);

/* Useful matmul FLOPs of one forward + backward of the last batch:
 * 6·(matmul parameters a token uses: attention and MLP projections, the
 * router and k experts for MoE, the LM head)·B·T, plus 12·nh·d per
 * attended (query, key) pair.  Excludes the LM-head logits the backward
 * recomputes and the masked half-blocks of attention. */
double qw_model_matmul_flops(const qw_model *m);

/* RoPE tables for a config: inv_freq[d/2] and the cos/sin scale
 * (doc/model.md §2: 1 for the default rope, YaRN's attention factor). */
void qw_model_rope(const qw_config *c, float *inv_freq, float *attention_scaling);

#endif
