/* layer.c — one decoder layer's forward, shared by the training graph and
 * the inference engine (qw/layer.h). */
#include "qw/layer.h"

#include <stdlib.h>

#include "qw/cli.h"

static inline void *at(const qw_layer_dims *D, const void *p, size_t i) { return (char *)p + i * D->as; }

void qw_layer_dims_init(qw_layer_dims *D, const qw_ops *ops, const qw_params *P)
{
    const qw_config *c = &P->cfg;
    D->ops = ops, D->P = P, D->as = ops->act_size;
    D->H = c->hidden_size, D->nh = c->num_attention_heads, D->nkv = c->num_key_value_heads, D->d = c->head_dim;
    D->Q = D->nh * D->d, D->KV = D->nkv * D->d;
    D->I = c->intermediate_size, D->E = c->num_experts, D->k = c->num_experts_per_tok, D->Ie = c->moe_intermediate_size;
    D->norm_topk = c->norm_topk_prob;
    D->eps = (float)c->rms_norm_eps;
}

void qw_layer_linear(const qw_layer_dims *D, void *y, const void *x, const float *W, int n, int out, int in, int acc)
{
    D->ops->gemm(0, 1, n, out, in, 1, x, in, qw_layer_cw(D, W), in, acc ? 1 : 0, y, out, 0);
}

void qw_layer_attn_in(const qw_layer_dims *D, int l, qw_layer_act *A, const void *x, const float *cs,
                      const float *sn, int n)
{
    const qw_ops *ops = D->ops;
    const qw_layer_params *W = &D->P->layer[l];
    int H = D->H, Q = D->Q, KV = D->KV;
    ops->rmsnorm_fwd(A->xn1, A->rstd1, x, W->input_norm, n, H, D->eps);
    qw_layer_linear(D, A->qp, A->xn1, W->q, n, Q, H, 0);
    qw_layer_linear(D, A->kp, A->xn1, W->k, n, KV, H, 0);
    qw_layer_linear(D, A->v, A->xn1, W->v, n, KV, H, 0);
    ops->qk_norm_rope_fwd(A->q, A->rq, A->qp, W->q_norm, cs, sn, n, D->nh, D->d, D->eps);
    ops->qk_norm_rope_fwd(A->k, A->rk, A->kp, W->k_norm, cs, sn, n, D->nkv, D->d, D->eps);
}

void qw_layer_mlp_in(const qw_layer_dims *D, int l, qw_layer_act *A, int n)
{
    const qw_layer_params *W = &D->P->layer[l];
    int H = D->H, I = D->I;
    qw_layer_linear(D, A->g, A->xn2, W->gate, n, I, H, 0);
    qw_layer_linear(D, A->u, A->xn2, W->up, n, I, H, 0);
    D->ops->swiglu_fwd(A->a, A->g, A->u, (size_t)n * I);
}

void qw_layer_gemm_grouped(const qw_ops *ops, int ta, int tb, int G, const int *m, const int *n, const int *k,
                           float alpha, const void *const *A, int lda, const void *const *B, int ldb, float beta,
                           void *const *C, int ldc, int c_f32)
{
    if (ops->gemm_grouped) {
        ops->gemm_grouped(ta, tb, G, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, c_f32);
        return;
    }
    for (int g = 0; g < G; g++)
        if (m[g] > 0 && n[g] > 0) ops->gemm(ta, tb, m[g], n[g], k[g], alpha, A[g], lda, B[g], ldb, beta, C[g], ldc, c_f32);
}

void qw_layer_experts_linear(const qw_layer_dims *D, void *y, const void *x, const float *W, const int32_t *off,
                             int out, int in, int acc)
{
    int E = D->E;
    int *dims = qw_malloc(3 * (size_t)E * sizeof *dims);
    const void **ptr = qw_malloc(3 * (size_t)E * sizeof *ptr);
    int *m = dims, *n = dims + E, *k = dims + 2 * E;
    for (int e = 0; e < E; e++) {
        m[e] = off[e + 1] - off[e], n[e] = out, k[e] = in;
        ptr[e] = at(D, x, (size_t)off[e] * in);
        ptr[E + e] = qw_layer_cw(D, W + (size_t)e * out * in);
        ptr[2 * E + e] = at(D, y, (size_t)off[e] * out);
    }
    qw_layer_gemm_grouped(D->ops, 0, 1, E, m, n, k, 1, ptr, in, ptr + E, in, acc ? 1 : 0, (void *const *)(ptr + 2 * E),
                          out, 0);
    free(ptr);
    free(dims);
}

static void moe_forward(const qw_layer_dims *D, const qw_layer_params *W, qw_layer_act *A, void *xo, int n,
                        int capacity, float *aux_count, float *aux_psum)
{
    const qw_ops *ops = D->ops;
    int H = D->H, E = D->E, k = D->k, Ie = D->Ie;
    ops->gemm(0, 1, n, E, H, 1, A->xn2, H, qw_layer_cw(D, W->router), H, 0, A->router_logits, E, 1);   /* fp32 */
    ops->moe_route_fwd(A->probs, A->sel, A->w, A->router_logits, n, E, k, D->norm_topk);
    if (aux_count) ops->moe_aux_stats(aux_count, aux_psum, A->probs, A->sel, n, E, k);
    A->kept = ops->moe_dispatch(A->offsets, A->rows, A->slots, A->sel, n, E, k, capacity);
    ops->gather_rows(A->xg, A->xn2, A->rows, A->kept, H);
    qw_layer_experts_linear(D, A->g, A->xg, W->exp_gate, A->offsets, Ie, H, 0);
    qw_layer_experts_linear(D, A->u, A->xg, W->exp_up, A->offsets, Ie, H, 0);
    ops->swiglu_fwd(A->a, A->g, A->u, (size_t)A->kept * Ie);
    ops->scale_rows(A->aw, A->a, A->w, A->slots, A->kept, Ie);
    qw_layer_experts_linear(D, A->expert_out, A->aw, W->exp_down, A->offsets, H, Ie, 0);
    ops->scatter_add_rows(xo, A->expert_out, A->rows, A->kept, H);
}

void qw_layer_attn_out(const qw_layer_dims *D, int l, qw_layer_act *A, const void *x, void *xo, int n,
                       int capacity, float *aux_count, float *aux_psum)
{
    const qw_ops *ops = D->ops;
    const qw_layer_params *W = &D->P->layer[l];
    int H = D->H;
    ops->copy(A->xm, x, (size_t)n * H * D->as);
    qw_layer_linear(D, A->xm, A->o, W->o, n, H, D->Q, 1);
    ops->rmsnorm_fwd(A->xn2, A->rstd2, A->xm, W->post_norm, n, H, D->eps);
    ops->copy(xo, A->xm, (size_t)n * H * D->as);
    if (W->is_moe) {
        moe_forward(D, W, A, xo, n, capacity, aux_count, aux_psum);
    } else {
        qw_layer_mlp_in(D, l, A, n);
        qw_layer_linear(D, xo, A->a, W->down, n, H, D->I, 1);
    }
}
