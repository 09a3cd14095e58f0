/* qw/ops.h — the op table every compute backend implements.
 *
 * The model (qw/model.h) is written once, over this table: it owns the
 * parameter layout, the activation plan and the forward/backward schedule,
 * and calls these functions for every piece of arithmetic.  kernels/cpu is
 * the fp32 reference (OpenMP + OpenBLAS); kernels/cuda implements the same
 * table on the GPU.  A backend is a `const qw_ops *`, never copied.
 *
 * Memory.  Every float / int32 pointer an op takes is a *device* pointer of
 * that backend, allocated with ops->alloc (for the CPU backend device
 * memory is host memory).  Matrices are row-major and contiguous unless a
 * leading dimension is given.  Ops never allocate, never fail and never
 * print: the model validates shapes and inputs before it calls them, and
 * scratch space comes from the caller (see attn_workspace).
 *
 * Output convention.  An output is overwritten unless its description says
 * "+=" (accumulated), so gradient arenas can collect contributions from
 * several ops and several batches.  Unless an op says otherwise, outputs
 * must not alias inputs.
 *
 * Shapes below: n = rows (tokens), H = hidden size, d = head dim,
 * nh / nkv = query / key-value heads, E = experts, k = experts per token,
 * V = vocabulary.
 */
#ifndef QW_OPS_H
#define QW_OPS_H

#include <stddef.h>
#include <stdint.h>

typedef struct qw_ops {
    const char *name;   /* "cpu", "cuda" */

    /* ---- memory ---- */
    /* `bytes` zeroed bytes, 64-byte aligned; NULL when out of memory. */
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
    void (*zero)(void *p, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes);       /* device -> device */
    void (*upload)(void *dst, const void *src, size_t bytes);     /* host -> device */
    void (*download)(void *dst, const void *src, size_t bytes);   /* device -> host */
    /* Use at most n threads (n <= 0: all cores).  Backends without threads ignore it. */
    void (*set_threads)(int n);

    /* ---- dense algebra ---- */
    /* C = alpha·op(A)·op(B) + beta·C, row-major; op(X) = Xᵀ when tX.
     * op(A) is m×k, op(B) is k×n, C is m×n; lda/ldb/ldc are row strides.
     * A linear layer y = x·Wᵀ (W [out,in]) is gemm(0,1,…); its input
     * gradient dx = dy·W is gemm(0,0,…) and its weight gradient dW += dyᵀ·x
     * is gemm(1,0,…, beta=1). */
    void (*gemm)(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc);

    /* ---- embedding ---- */
    void (*embed_fwd)(float *y, const float *table, const int32_t *ids, int n, int H);   /* y[i] = table[ids[i]] */
    void (*embed_bwd)(float *dtable, const float *dy, const int32_t *ids, int n, int H); /* dtable[ids[i]] += dy[i] */

    /* ---- RMSNorm over rows of `dim`: y = w ⊙ x / sqrt(mean(x²) + eps) ----
     * rstd[r] = 1/sqrt(mean(x_r²) + eps) is saved for the backward.  The
     * per-head q/k norm is the same op over n·heads rows of d. */
    void (*rmsnorm_fwd)(float *y, float *rstd, const float *x, const float *w, int rows, int dim, float eps);
    /* dx = (acc ? dx + : ) ∂/∂x;  dw += ∂/∂w. */
    void (*rmsnorm_bwd)(float *dx, float *dw, const float *dy, const float *x, const float *w,
                        const float *rstd, int rows, int dim, int acc);

    /* ---- rotary position embedding (rotate_half convention) ----
     * rope_table: cos[i][j] = cos(pos[i]·inv_freq[j])·scale and likewise
     * sin, for j < half = d/2 (the angle is rounded to fp32 first, as torch
     * does).  rope: in place on x [n, heads, d],
     *   x1' = x1·cos − x2·sin,  x2' = x2·cos + x1·sin   (x1 = x[:d/2], x2 = x[d/2:]);
     * with inverse set it applies the transposed rotation (cos, −sin), which
     * is the backward of the forward. */
    void (*rope_table)(float *cos, float *sin, const int32_t *pos, int n, const float *inv_freq,
                       int half, float scale);
    void (*rope)(float *x, const float *cos, const float *sin, int n, int heads, int d, int inverse);

    /* ---- causal attention with document segments (GQA) ----
     * q [B·T, nh, d], k and v [B·T, nkv, d], o [B·T, nh, d]; query head h
     * reads kv head h / (nh/nkv).  Token i of a row attends to keys
     * kv_start[i] ≤ j ≤ i of the same row (kv_start: the index within the
     * row where its document begins), with scores q·k·scale.  lse [B·T, nh]
     * is the log-sum-exp of each query's scores, saved for the backward.
     * ws: scratch of ws_bytes ≥ attn_workspace(T, d) bytes, asked for after
     * set_threads (the CPU backend keeps one slot per thread and uses no
     * more threads than ws holds slots). */
    size_t (*attn_workspace)(int T, int d);
    void (*attn_fwd)(float *o, float *lse, const float *q, const float *k, const float *v,
                     const int32_t *kv_start, int B, int T, int nh, int nkv, int d, float scale,
                     void *ws, size_t ws_bytes);
    /* dq, dk, dv overwritten (GQA: dk, dv summed over the query heads that share them). */
    void (*attn_bwd)(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                     const float *v, const float *o, const float *lse, const int32_t *kv_start,
                     int B, int T, int nh, int nkv, int d, float scale, void *ws, size_t ws_bytes);

    /* ---- SwiGLU: a = silu(g) ⊙ u over n elements ---- */
    void (*swiglu_fwd)(float *a, const float *g, const float *u, size_t n);
    /* dg, du from da (dg may alias da). */
    void (*swiglu_bwd)(float *dg, float *du, const float *da, const float *g, const float *u, size_t n);

    /* ---- Mixture of experts ----
     * moe_route_fwd: probs [n,E] = softmax(logits) in fp32; sel [n,k] the
     * top-k experts by probability, largest first (equal values: lower
     * index first); w [n,k] their probabilities, divided by their sum when
     * norm (norm_topk_prob). */
    void (*moe_route_fwd)(float *probs, int32_t *sel, float *w, const float *logits, int n, int E, int k, int norm);
    /* dlogits [n,E] from dw [n,k] (gradient on w) plus, when dprobs is not
     * NULL, dprobs[e] added to ∂/∂probs[i][e] of every row (the load-balancing
     * loss is linear in probs). */
    void (*moe_route_bwd)(float *dlogits, const float *dw, const float *probs, const int32_t *sel,
                          const float *w, const float *dprobs, int n, int E, int k, int norm);
    /* Load-balancing statistics: count[e] += number of rows whose top-k
     * holds e; psum[e] += Σ_i probs[i][e]. */
    void (*moe_aux_stats)(float *count, float *psum, const float *probs, const int32_t *sel, int n, int E, int k);
    /* Group the n·k assignments by expert.  Within an expert, assignments
     * keep token order; an expert keeps at most `capacity` of them (the
     * rest are dropped; capacity ≥ n keeps all).  On return offsets[0..E]
     * (HOST memory) delimit expert e's kept assignments
     * offsets[e] ≤ a < offsets[e+1]; rows[a] is the token and slots[a] the
     * assignment index i·k + j of each.  Returns the number kept. */
    int (*moe_dispatch)(int32_t *offsets, int32_t *rows, int32_t *slots, const int32_t *sel,
                        int n, int E, int k, int capacity);

    /* ---- row movement (MoE gather/combine) ---- */
    void (*gather_rows)(float *dst, const float *src, const int32_t *rows, int n, int dim);   /* dst[a] = src[rows[a]] */
    /* dst[rows[a]] += src[a] for a < n.  Rows may repeat. */
    void (*scatter_add_rows)(float *dst, const float *src, const int32_t *rows, int n, int dim);
    /* dst[a] = w[slots[a]]·src[a] (dst may alias src). */
    void (*scale_rows)(float *dst, const float *src, const float *w, const int32_t *slots, int n, int dim);
    /* out[slots[a]] = dot(x[a], y[a]). */
    void (*row_dot)(float *out, const float *x, const float *y, const int32_t *slots, int n, int dim);

    /* ---- cross-entropy over the vocabulary, a chunk of rows at a time ----
     * ce_fwd: lse[i] = logsumexp(logits[i]); logp[i] = logits[i][t_i] − lse[i],
     * or 0 where targets[i] < 0. */
    void (*ce_fwd)(float *lse, float *logp, const float *logits, const int32_t *targets, int n, int V);
    /* In place: logits[i] := coef[i]·(softmax(logits[i]) − onehot(t_i)), the
     * gradient of coef[i]·(−logp[i]); rows with targets[i] < 0 become 0. */
    void (*ce_bwd)(float *logits, const float *lse, const int32_t *targets, const float *coef, int n, int V);
} qw_ops;

/* The fp32 CPU backend (kernels/cpu). */
const qw_ops *qw_ops_cpu(void);

#ifdef QW_HAVE_CUDA
/* The CUDA backend (kernels/cuda, fp32 on the first GPU; cuBLAS with TF32
 * off).  NULL when no usable GPU is present (kernels/cuda/qwcuda.h:
 * qw_cuda_why says why).  Its ops never return errors: a CUDA failure in
 * the middle of a run prints "qw: cuda: ..." and exits 1.  alloc returns
 * NULL when device memory runs out.  Built only when nvcc is found. */
const qw_ops *qw_ops_cuda(void);
#endif

#endif
