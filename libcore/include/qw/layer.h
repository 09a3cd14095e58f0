/* qw/layer.h — the forward of one Qwen3 decoder layer, written once for
 * both paths that run it: the training graph (qw/model.h) and the
 * inference engine (qw/infer.h).  "One model, two paths": neither has a
 * copy of the layer arithmetic, so they cannot drift apart.
 *
 * A layer is cut where the two paths differ, around the attention itself:
 *
 *   qw_layer_attn_in    input RMSNorm; q, k, v projections; per-head q/k
 *                       RMSNorm and RoPE (the caller's cos/sin table)
 *   (the caller)        attention: the training graph's causal attention
 *                       over the batch (ops->attn_fwd), or the engine's
 *                       K/V cache write and paged attention
 *   qw_layer_attn_out   o projection plus the residual; post-attention
 *                       RMSNorm; the dense SwiGLU MLP or the MoE block
 *                       (fp32 router, top-k, experts, weighted sum) plus
 *                       the residual
 *
 * Numerics are doc/model.md's, over the op table (qw/ops.h): the same ops
 * in the same order whichever path calls, so equal inputs give equal bits.
 *
 * Memory.  Every pointer in qw_layer_act is device memory of D->ops,
 * sized by the caller for the n rows it passes (the shapes below); the
 * functions allocate nothing and never fail (the caller validated
 * everything).  `offsets` is host memory [E+1].  Rows are tokens in any
 * order; the MoE dispatch keeps token order within each expert.
 */
#ifndef QW_LAYER_H
#define QW_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "qw/ops.h"
#include "qw/params.h"

/* The shapes of a model's layers and the backend that runs them. */
typedef struct {
    const qw_ops *ops;
    const qw_params *P;
    size_t as;                    /* ops->act_size */
    int H, Q, KV, nh, nkv, d;     /* Q = nh·d, KV = nkv·d */
    int I, E, k, Ie, norm_topk;   /* dense width; experts, per token, their width; norm_topk_prob */
    float eps;                    /* rms_norm_eps */
} qw_layer_dims;

void qw_layer_dims_init(qw_layer_dims *D, const qw_ops *ops, const qw_params *P);

/* One layer's activations for n rows (A: activation type; F: fp32; I: int32). */
typedef struct {
    void *xn1; float *rstd1;      /* input RMSNorm: A [n,H], F [n] */
    void *qp, *kp, *v;            /* projections before the q/k norm: A [n,Q], [n,KV], [n,KV] */
    float *rq, *rk;               /* q/k norm rstd: F [n·nh], [n·nkv] */
    void *q, *k;                  /* after norm and RoPE: A [n,Q], [n,KV] */
    void *o; float *lse;          /* attention output A [n,Q] (the caller fills it); lse F [n·nh] (training, the engine's prefill) */
    void *xm;                     /* residual after attention A [n,H] */
    void *xn2; float *rstd2;      /* post-attention RMSNorm: A [n,H], F [n] */
    void *g, *u, *a;              /* MLP: A [n,I] dense, [n·k,Ie] MoE (expert-grouped rows) */
    void *aw, *xg;                /* MoE: weighted a A [n·k,Ie], gathered input A [n·k,H] */
    float *probs, *w;             /* MoE: router softmax F [n,E], top-k weights F [n,k] */
    int32_t *sel, *rows, *slots;  /* MoE: top-k experts I [n,k]; dispatch rows, slots I [n·k] */
    int32_t *offsets;             /* MoE: HOST [E+1] */
    int kept;                     /* MoE: assignments kept by the dispatch (set by attn_out) */
    /* MoE scratch that need not survive the call (may be shared between layers) */
    float *router_logits;         /* F [n,E] */
    void *expert_out;             /* A [n·k,H] */
} qw_layer_act;

/* The compute copy of the weights that master pointer w (into P->data) views. */
static inline const void *qw_layer_cw(const qw_layer_dims *D, const float *w)
{
    return (const char *)D->P->compute + (size_t)(w - D->P->data) * D->as;
}

/* ops->gemm_grouped, or ops->gemm per group when the backend has none. */
void qw_layer_gemm_grouped(const qw_ops *ops, int ta, int tb, int G, const int *m, const int *n, const int *k,
                           float alpha, const void *const *A, int lda, const void *const *B, int ldb, float beta,
                           void *const *C, int ldc, int c_f32);

/* The experts of a MoE layer as one grouped product: expert e's rows
 * off[e] ≤ r < off[e+1] of x [·,in] times W_e [out,in] (W + e·out·in, a
 * master view read from the compute copy) into the same rows of y [·,out]:
 * y = x·W_eᵀ (+ y when acc). */
void qw_layer_experts_linear(const qw_layer_dims *D, void *y, const void *x, const float *W, const int32_t *off,
                             int out, int in, int acc);

/* y[n,out] = x[n,in]·Wᵀ (+ y when acc); W a master view, read from the compute copy. */
void qw_layer_linear(const qw_layer_dims *D, void *y, const void *x, const float *W, int n, int out, int in, int acc);

/* Layer l, rows x [n,H]: A->xn1, rstd1, qp, kp, v, rq, rk, q, k.  cs, sn:
 * the RoPE table of the rows' positions, F [n, d/2] each (ops->rope_table). */
void qw_layer_attn_in(const qw_layer_dims *D, int l, qw_layer_act *A, const void *x, const float *cs,
                      const float *sn, int n);

/* The dense MLP up to the down projection: A->g, u, a from A->xn2. */
void qw_layer_mlp_in(const qw_layer_dims *D, int l, qw_layer_act *A, int n);

/* Layer l after the attention (A->o filled): xo [n,H] = the layer's output
 * for input x.  MoE: each expert keeps at most `capacity` assignments
 * (≥ n·k keeps all); when aux_count is not NULL the load-balancing
 * statistics are added to aux_count, aux_psum (F [E]; ops->moe_aux_stats). */
void qw_layer_attn_out(const qw_layer_dims *D, int l, qw_layer_act *A, const void *x, void *xo, int n,
                       int capacity, float *aux_count, float *aux_psum);

#endif
