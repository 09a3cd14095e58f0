/* qw/optim.h — AdamW, global gradient-norm clipping and learning-rate
 * schedules, shared by qw-pretrain, qw-sft, qw-grpo and qw-dpo.
 *
 * Storage.  Parameters, gradients and the two moments are arenas of one
 * layout and one memory (qw/params.h: make G, M, V with
 * qw_params_alloc_like from P and index them the same way).  The
 * arithmetic runs on the backend that holds them (qw_params.ops; host
 * arenas on the CPU backend), through its adamw and sumsq ops.
 *
 * AdamW, exactly as torch.optim.AdamW (decoupled weight decay, bias
 * correction, eps outside the square root).  At update t = 1, 2, … with
 * learning rate lr, for every element, with g already scaled by the clip
 * factor s (g = s · grad):
 *
 *     p ← p · (1 − lr · wd)           wd = weight_decay, or 0 for no_decay tensors
 *     m ← β1 · m + (1 − β1) · g
 *     v ← β2 · v + (1 − β2) · g²
 *     p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + eps)
 *
 * Defaults: β1 0.9, β2 0.95, eps 1e-8, weight_decay 0.1.  Tensors whose
 * qw_param.no_decay is set (RMSNorm weights, biases, the embedding) take no
 * decay; tensors whose qw_param.frozen is set are not touched at all.  Element arithmetic is fp32 (as torch's fp32 AdamW); the scalar
 * factors are computed in fp64 (qw_adamw_scalars, qw/ops.h).
 *
 * Clipping, as torch.nn.utils.clip_grad_norm_: the global norm is the
 * 2-norm over every gradient element (summed in fp64), and
 *
 *     scale = min(1, max_norm / (norm + 1e-6))
 *
 * multiplies every gradient.  max_norm ≤ 0 means no clipping (scale 1).
 * Across ranks the gradients are summed first (allreduce), then
 * norm = √qw_grad_sumsq.
 *
 * Nothing here fails: these functions have no error return.
 */
#ifndef QW_OPTIM_H
#define QW_OPTIM_H

#include <stddef.h>

#include "qw/params.h"

typedef struct {
    double beta1, beta2, eps;
    double weight_decay;
} qw_adamw;

/* β1 0.9, β2 0.95, eps 1e-8, weight decay 0.1. */
qw_adamw qw_adamw_defaults(void);

/* One AdamW update of every tensor of P.  G, M, V have P's layout and
 * memory; step is the 1-based update count t (after this update), lr the
 * rate for this update (qw_sched_lr), grad_scale the clip factor s (1 for
 * none).  G is read, not modified.  P's compute copy, when it has one of
 * its own (bf16), is refreshed in the same pass.  One ops->adamw call per
 * run of consecutive tensors with the same decay flag. */
void qw_adamw_step(const qw_adamw *o, qw_params *P, const qw_params *G, qw_params *M, qw_params *V,
                   long step, double lr, double grad_scale);

/* The same update for the elements [lo, hi) of the arena only (ZeRO: a
 * rank's shard; qw/trainer.h): m and v hold the moments of those elements
 * alone (m[0] is element lo's), G must hold the gradient there.  Each
 * element gets exactly the arithmetic of qw_adamw_step (which is this with
 * lo 0, hi P->total), so a sharded run updates as an unsharded one. */
void qw_adamw_step_shard(const qw_adamw *o, qw_params *P, const qw_params *G, float *m, float *v,
                         size_t lo, size_t hi, long step, double lr, double grad_scale);

/* Σ g² over the whole arena, accumulated in fp64 in a fixed order
 * (ops->sumsq; the gaps between tensors are zero). */
double qw_grad_sumsq(const qw_params *G);
/* The clip factor for a global norm: min(1, max_norm / (norm + 1e-6)); 1 when
 * max_norm ≤ 0.  A non-finite norm gives a non-finite scale, so a NaN
 * gradient poisons the update visibly instead of being hidden. */
double qw_clip_scale(double norm, double max_norm);

/* ---- learning-rate schedules ----------------------------------------------
 * lr(step) is a pure function of the 0-based index of the update being
 * taken and the settings, so a resumed run continues exactly.  With
 * W = warmup steps, N = total steps, r = min_lr_ratio, f = the factor below,
 * lr(step) = lr · (r + (1 − r) · f) after warmup, and during warmup
 * (step < W) lr · step / W (linear from 0, as transformers'
 * get_*_schedule_with_warmup).  Steps ≥ N keep the final value lr · r.
 *
 *   cosine: f = ½ (1 + cos(π · (step − W) / (N − W)))
 *   wsd:    D = round(decay_frac · N) decay steps at the end, S = N − W − D
 *           stable steps (f = 1); in the decay, with x = (step − W − S) / D,
 *           f = 1 − x (linear) or 1 − √x (sqrt, "1-sqrt")
 *   constant: f = 1 (still with warmup)
 */
typedef enum { QW_SCHED_COSINE, QW_SCHED_WSD, QW_SCHED_CONSTANT } qw_sched_kind;
typedef enum { QW_DECAY_LINEAR, QW_DECAY_SQRT } qw_decay_shape;

typedef struct {
    qw_sched_kind kind;
    double lr;               /* peak learning rate */
    double min_lr_ratio;     /* r: final lr = lr · r */
    long warmup;             /* W */
    long total;              /* N */
    double decay_frac;       /* wsd: fraction of N spent decaying, in [0, 1] */
    qw_decay_shape decay_shape;   /* wsd */
} qw_sched;

double qw_sched_lr(const qw_sched *s, long step);
/* Names as used on command lines and in trainer state: "cosine", "wsd",
 * "constant"; "linear", "sqrt".  Parse returns 0, or -1 if unknown. */
const char *qw_sched_kind_name(qw_sched_kind k);
int qw_sched_kind_parse(const char *s, qw_sched_kind *k);
const char *qw_decay_shape_name(qw_decay_shape d);
int qw_decay_shape_parse(const char *s, qw_decay_shape *d);
/* Check the settings: lr ≥ 0, 0 ≤ min_lr_ratio ≤ 1, 0 ≤ warmup ≤ total,
 * total > 0, 0 ≤ decay_frac ≤ 1 and warmup + decay steps ≤ total.
 * QW_EXIT_USAGE with a message naming the setting. */
int qw_sched_check(const qw_sched *s);

#endif
