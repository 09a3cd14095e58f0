/* qw/ops.h — the op table every compute backend implements.
 *
 * The model (qw/model.h) is written once, over this table: it owns the
 * parameter layout, the activation plan and the forward/backward schedule,
 * and calls these functions for every piece of arithmetic.  kernels/cpu is
 * the fp32 reference (OpenMP + OpenBLAS); kernels/cuda implements the same
 * table on the GPU twice: in fp32 (exactness against the CPU) and with bf16
 * activations (speed).  A backend is a `const qw_ops *`, never copied.
 *
 * Memory.  Every pointer an op takes is a *device* pointer of that backend,
 * allocated with ops->alloc (for the CPU backend device memory is host
 * memory).  Matrices are row-major and contiguous unless a leading
 * dimension is given.  Ops never allocate, never fail and never print: the
 * model validates shapes and inputs before it calls them, and scratch space
 * comes from the caller (see attn_workspace).
 *
 * Types.  Three kinds of storage appear below:
 *   - `void *` / `const void *`: ACTIVATIONS, in the backend's activation
 *     type: act_size bytes per element, fp32 (4) or bf16 (2).  Hidden
 *     states, projections, attention in/out, MLP values, their gradients,
 *     and the compute copy of the weights that the GEMMs read.
 *   - `float *`: fp32 always.  Master weights, gradient arenas, optimizer
 *     moments, RMSNorm weights (read from the master arena), the embedding
 *     table, saved statistics (rstd, lse), router logits/probabilities,
 *     RoPE tables, loss coefficients, and the LM-head logits of a chunk.
 *   - `int32_t *`: ids, positions, document starts, expert indices.
 * Arithmetic inside an op is fp32 whatever the storage; bf16 results are
 * rounded to nearest even.
 *
 * Output convention.  An output is overwritten unless its description says
 * "+=" (accumulated), so gradient arenas can collect contributions from
 * several ops and several batches.  Unless an op says otherwise, outputs
 * must not alias inputs.
 *
 * Determinism.  After set_deterministic(1) every op gives bit-identical
 * results for identical inputs on the same device and build (no
 * floating-point atomics whose order varies); otherwise a backend may use
 * faster, order-varying reductions.  The CPU backend is always
 * deterministic for a given thread count.
 *
 * Threads.  A backend is process-wide state, not an object: call it from
 * one host thread at a time.
 *   - CUDA ("cuda", "cuda-fp32"): global, unsynchronised state lives in
 *     kernels/cuda: the cuBLAS and cuBLASLt handles (qw_cuda_blas,
 *     qw_cuda_lt), the determinism flag (set_deterministic), the
 *     allocation map and the in_use/peak counters behind alloc, free and
 *     mem_stats (a std::unordered_map), the scratch buffer
 *     (qw_cuda_scratch), the bf16 GEMM's workspace and its plan cache (a
 *     std::map filled on first use of each shape), lazily computed
 *     occupancy values, and the one-time device check behind
 *     qw_ops_cuda/qw_ops_cuda_fp32.  Every op runs on the per-thread default
 *     stream (of the calling thread) of the process's device.  So no two calls into the CUDA tables may overlap: not
 *     two ops, not an op and alloc/free/mem_stats, not two qw_model
 *     instances on different threads; the first qw_ops_cuda* call must
 *     not race another.  Both CUDA tables share this state (using "cuda"
 *     and "cuda-fp32" from two threads is just as unsafe).  Ops are
 *     asynchronous with respect to the host until sync, download or a
 *     host-visible result (none besides those two).
 *   - CPU ("cpu"): its only global state is the live/peak byte counters,
 *     updated atomically, so alloc, free and mem_stats may run on any
 *     thread at any time.  Ops keep no state between calls (scratch comes
 *     from the caller) and parallelise inside with OpenMP and the BLAS;
 *     set_threads changes the process-wide OpenMP thread count
 *     (omp_set_num_threads).  Calling ops from several host threads at
 *     once (nested OpenMP regions, concurrent BLAS calls) is untested and
 *     not promised.
 * Callers (the model, the training loop, qw-eval) are single-threaded
 * around the table; the thread-safety of qw/cli.h's error state
 * (thread-local) does not extend to the backends.
 *
 * Shapes below: n = rows (tokens), H = hidden size, d = head dim,
 * nh / nkv = query / key-value heads, E = experts, k = experts per token,
 * V = vocabulary.
 */
#ifndef QW_OPS_H
#define QW_OPS_H

#include <stddef.h>
#include <stdint.h>

/* The scalars of one AdamW update (qw/optim.h computes them, in fp64, from
 * the settings, the step and the learning rate).  Per element, in fp32:
 *   g = grad·grad_scale;  m = beta1·m + (1−beta1)·g;  v = beta2·v + (1−beta2)·g²;
 *   p = p·decay − step_size·m / (sqrt(v)/bc2_sqrt + eps)
 * with step_size = lr/(1−beta1^t), bc2_sqrt = sqrt(1−beta2^t),
 * decay = 1 − lr·weight_decay (1 for tensors without decay). */
typedef struct {
    float beta1, beta2, eps, grad_scale, step_size, bc2_sqrt, decay;
} qw_adamw_scalars;

typedef struct qw_ops {
    const char *name;   /* "cpu", "cuda" (bf16 activations), "cuda-fp32" */
    size_t act_size;    /* bytes per activation element: 4 (fp32) or 2 (bf16) */
    /* How many fp32 LM-head logits the model should hold at once (a chunk
     * of rows × V): small on the CPU, where the chunk stays in cache; large
     * on a GPU, where the LM-head GEMM needs many rows to run well. */
    size_t lm_chunk_elems;

    /* ---- memory ---- */
    /* `bytes` zeroed bytes, 64-byte aligned; NULL when out of memory. */
    void *(*alloc)(size_t bytes);
    void (*free)(void *p);
    void (*zero)(void *p, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes);       /* device -> device */
    void (*upload)(void *dst, const void *src, size_t bytes);     /* host -> device */
    void (*download)(void *dst, const void *src, size_t bytes);   /* device -> host */
    /* Wait until queued work is done (timing; a no-op on the CPU). */
    void (*sync)(void);
    /* Use at most n threads (n <= 0: all cores).  Backends without threads ignore it. */
    void (*set_threads)(int n);
    /* 1: bit-identical results run to run (see Determinism above). */
    void (*set_deterministic)(int on);
    /* 1: batch invariance, on top of determinism: each row of a GEMM (op(A)
     * not transposed), of attn_paged and of sample is computed by the same
     * arithmetic whatever the other rows and however many there are (for
     * generation whose results do not depend on the batch: qw/infer.h).
     * Slower: on the CPU a product's rows go one at a time; on CUDA one GEMM
     * algorithm serves every row count and attention is not split over keys. */
    void (*set_batch_invariant)(int on);
    /* Device memory in use and the high-water mark since the backend started,
     * bytes (what ops->alloc handed out, plus library workspaces). */
    void (*mem_stats)(size_t *in_use, size_t *peak);

    /* ---- recorded op sequences (CUDA graphs); NULL on a backend without them ----
     * graph_begin: the ops called from now until graph_end are recorded,
     * not run; nonzero when recording cannot start.  What is recorded
     * must not copy, upload, download, sync, alloc or free, and nothing
     * may read its outputs before a launch.  Run the same ops once
     * directly first, with the same shapes, so that the backend's lazily
     * made state (GEMM plans, its scratch) exists before recording.
     * graph_end: the recording as a replayable graph, or NULL when none
     * could be made (then run the ops directly).
     * graph_launch: run the recorded ops again, on the pointers and sizes
     * they were recorded with, reading what those buffers hold now (so
     * the caller changes inputs by uploading into them); in order with
     * the ops around it.  Returns nonzero and runs nothing when the graph
     * is stale: the backend replaced a buffer of its own that the graph
     * uses (its scratch grew for some other op).  Free it and record
     * again.  graph_free releases a graph (NULL is fine). */
    int (*graph_begin)(void);
    void *(*graph_end)(void);
    int (*graph_launch)(void *graph);
    void (*graph_free)(void *graph);

    /* ---- conversions ---- */
    /* dst[i] = src[i] converted to / from the activation type (a copy when
     * act_size is 4).  Must not alias. */
    void (*to_act)(void *dst, const float *src, size_t n);
    void (*from_act)(float *dst, const void *src, size_t n);

    /* ---- dense algebra ---- */
    /* C = alpha·op(A)·op(B) + beta·C, row-major; op(X) = Xᵀ when tX.
     * op(A) is m×k, op(B) is k×n, C is m×n; lda/ldb/ldc are row strides.
     * A and B are activations; C is an activation, or fp32 when c_f32
     * (weight gradients into the fp32 gradient arena, LM-head logits,
     * router logits).  Accumulation is fp32.
     * A linear layer y = x·Wᵀ (W [out,in]) is gemm(0,1,…); its input
     * gradient dx = dy·W is gemm(0,0,…) and its weight gradient dW += dyᵀ·x
     * is gemm(1,0,…, beta=1, c_f32=1). */
    void (*gemm)(int ta, int tb, int m, int n, int k, float alpha, const void *A, int lda,
                 const void *B, int ldb, float beta, void *C, int ldc, int c_f32);
    /* G independent products C_g = alpha·op(A_g)·op(B_g) + beta·C_g with
     * gemm's rules, in one call (the experts of a MoE layer): sizes m[g],
     * n[g], k[g] and operand addresses A[g], B[g], C[g] in HOST arrays of
     * G; ta, tb, the row strides, alpha, beta and c_f32 shared.  A group
     * with m or n = 0 is skipped; k = 0 gives beta·C_g.  May be NULL:
     * qw_layer_gemm_grouped (qw/layer.h) then calls gemm per group. */
    void (*gemm_grouped)(int ta, int tb, int G, const int *m, const int *n, const int *k, float alpha,
                         const void *const *A, int lda, const void *const *B, int ldb, float beta, void *const *C,
                         int ldc, int c_f32);

    /* ---- embedding (the table is the fp32 master) ---- */
    void (*embed_fwd)(void *y, const float *table, const int32_t *ids, int n, int H);   /* y[i] = table[ids[i]] */
    void (*embed_bwd)(float *dtable, const void *dy, const int32_t *ids, int n, int H); /* dtable[ids[i]] += dy[i] */

    /* ---- RMSNorm over rows of `dim`: y = w ⊙ x / sqrt(mean(x²) + eps) ----
     * w fp32.  rstd[r] = 1/sqrt(mean(x_r²) + eps) is saved for the backward. */
    void (*rmsnorm_fwd)(void *y, float *rstd, const void *x, const float *w, int rows, int dim, float eps);
    /* dx = (acc ? dx + : ) ∂/∂x;  dw += ∂/∂w. */
    void (*rmsnorm_bwd)(void *dx, float *dw, const void *dy, const void *x, const float *w,
                        const float *rstd, int rows, int dim, int acc);

    /* ---- rotary position embedding (rotate_half convention) ----
     * rope_table: cos[i][j] = cos(pos[i]·inv_freq[j])·scale and likewise
     * sin, for j < half = d/2 (the angle is rounded to fp32 first, as torch
     * does).  Rotating x [n, heads, d] by the table:
     *   x1' = x1·cos − x2·sin,  x2' = x2·cos + x1·sin   (x1 = x[:d/2], x2 = x[d/2:]);
     * its backward is the transposed rotation (cos, −sin). */
    void (*rope_table)(float *cos, float *sin, const int32_t *pos, int n, const float *inv_freq,
                       int half, float scale);
    /* ---- Qwen3's q/k path, fused: per-head RMSNorm then RoPE ----
     * x [n, heads, d] → y = rope(rmsnorm(x, w)) with w [d];
     * rstd [n·heads] saved.  The backward takes dy = ∂/∂y and writes
     * dx = ∂/∂x (overwritten) and dw += ∂/∂w; it recomputes what it needs
     * from x and rstd. */
    void (*qk_norm_rope_fwd)(void *y, float *rstd, const void *x, const float *w, const float *cos,
                             const float *sin, int n, int heads, int d, float eps);
    void (*qk_norm_rope_bwd)(void *dx, float *dw, const void *dy, const void *x, const float *w,
                             const float *rstd, const float *cos, const float *sin, int n, int heads, int d);

    /* ---- causal attention with document segments (GQA) ----
     * q [B·T, nh, d], k and v [B·T, nkv, d], o [B·T, nh, d]; query head h
     * reads kv head h / (nh/nkv).  Token i of a row attends to keys
     * kv_start[i] ≤ j ≤ i of the same row (kv_start: the index within the
     * row where its document begins), with scores q·k·scale.  lse [B·T, nh]
     * (fp32) is the natural log-sum-exp of each query's scores, saved for
     * the backward.  ws: scratch of ws_bytes ≥ attn_workspace(B, T, nh, d)
     * bytes, asked for after set_threads (the CPU backend keeps one slot per
     * thread and uses no more threads than ws holds slots). */
    size_t (*attn_workspace)(int B, int T, int nh, int d);
    void (*attn_fwd)(void *o, float *lse, const void *q, const void *k, const void *v,
                     const int32_t *kv_start, int B, int T, int nh, int nkv, int d, float scale,
                     void *ws, size_t ws_bytes);
    /* dq, dk, dv overwritten (GQA: dk, dv summed over the query heads that share them). */
    void (*attn_bwd)(void *dq, void *dk, void *dv, const void *dout, const void *q, const void *k,
                     const void *v, const void *o, const float *lse, const int32_t *kv_start,
                     int B, int T, int nh, int nkv, int d, float scale, void *ws, size_t ws_bytes);

    /* ---- decoding: attention against a paged K/V cache (qw/infer.h) ----
     * A layer's cache is two pools kc, vc of n_slots rows of [nkv, d]
     * (activations): fixed-size blocks of bs consecutive slots.  A
     * sequence's block table lists its blocks in order: position p lives
     * in slot table[p / bs]·bs + p % bs.
     * kv_write: kc[slots[i]] = k[i] and vc[slots[i]] = v[i] for i < n
     * (rows of kv = nkv·d elements; the slots are distinct).
     * attn_paged: query i of q [n, nh, d] is at position pos[i] of the
     * sequence whose block table is tables[seq[i]·max_blocks …] (int32)
     * and attends to that sequence's keys at positions 0 … pos[i], which
     * must be in the cache; scores q·k·scale, an fp32 softmax, o [n, nh, d].
     * GQA as attn_fwd.  ws: scratch of ws_bytes ≥
     * attn_paged_workspace(nh, nkv, max_ctx) bytes (max_ctx ≥ every
     * pos[i] + 1), asked for after set_threads.  A backend without a
     * decode path leaves these three NULL. */
    void (*kv_write)(void *kc, void *vc, const void *k, const void *v, const int32_t *slots, int n, int kv);
    size_t (*attn_paged_workspace)(int nh, int nkv, int max_ctx);
    void (*attn_paged)(void *o, const void *q, const void *kc, const void *vc, const int32_t *tables,
                       int max_blocks, const int32_t *seq, const int32_t *pos, int n, int nh, int nkv, int d,
                       int bs, float scale, void *ws, size_t ws_bytes);

    /* ---- sampling from fp32 logits [n, V], one token per row ----
     * raw_logp[i] = logits[i][tok] − logsumexp(logits[i]) (temperature 1,
     * the whole vocabulary; computed as ce_fwd computes logp, bit for bit).
     * temperature ≤ 0 (greedy): tok = the argmax (the lowest id among
     * equal values), logp = raw_logp.  Otherwise, z = logits / temperature;
     * the candidates are the top_k largest z (top_k ≤ 0: all; equal
     * values: lower id first), then, by decreasing z, the shortest prefix
     * of them whose softmax mass (over the candidates) reaches top_p
     * (top_p ≥ 1: all) — as transformers' temperature, top-k and top-p
     * warpers do; p = the softmax of z over what is kept; tok = the first
     * kept token, in that order, at which the running sum of p exceeds
     * u[i] (a uniform in [0, 1), fp64); logp = log p(tok).
     * forced (may be NULL): where forced[i] ≥ 0, tok = forced[i] and logp
     * = log softmax(z)[tok] over the whole vocabulary (z = logits when
     * greedy): a token the caller inserts rather than samples.
     * ws: scratch of sample_workspace(n, V) bytes. */
    size_t (*sample_workspace)(int n, int V);
    void (*sample)(int32_t *tok, float *logp, float *raw_logp, const float *logits, const double *u,
                   const int32_t *forced, int n, int V, float temperature, int top_k, float top_p, void *ws);

    /* ---- SwiGLU: a = silu(g) ⊙ u over n elements ---- */
    void (*swiglu_fwd)(void *a, const void *g, const void *u, size_t n);
    /* dg, du from da (dg may alias da). */
    void (*swiglu_bwd)(void *dg, void *du, const void *da, const void *g, const void *u, size_t n);

    /* ---- Mixture of experts (router values fp32) ----
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

    /* ---- row movement (MoE gather/combine), activations ---- */
    void (*gather_rows)(void *dst, const void *src, const int32_t *rows, int n, int dim);   /* dst[a] = src[rows[a]] */
    /* dst[rows[a]] += src[a] for a < n.  Rows may repeat. */
    void (*scatter_add_rows)(void *dst, const void *src, const int32_t *rows, int n, int dim);
    /* dst[a] = w[slots[a]]·src[a] (dst may alias src). */
    void (*scale_rows)(void *dst, const void *src, const float *w, const int32_t *slots, int n, int dim);
    /* out[slots[a]] = dot(x[a], y[a]). */
    void (*row_dot)(float *out, const void *x, const void *y, const int32_t *slots, int n, int dim);

    /* ---- cross-entropy over the vocabulary, a chunk of fp32 logits ----
     * ce_fwd: lse[i] = logsumexp(logits[i]); logp[i] = logits[i][t_i] − lse[i],
     * or 0 where targets[i] < 0. */
    void (*ce_fwd)(float *lse, float *logp, const float *logits, const int32_t *targets, int n, int V);
    /* dlogits[i] = coef[i]·(softmax(logits[i]) − onehot(t_i)), the gradient
     * of coef[i]·(−logp[i]), as an activation; rows with targets[i] < 0
     * become 0.  logits is left as it was. */
    void (*ce_bwd)(void *dlogits, const float *logits, const float *lse, const int32_t *targets,
                   const float *coef, int n, int V);

    /* ---- optimizer, over fp32 arenas ---- */
    /* Σ x² over n floats, summed in a fixed order (fp64 where the backend
     * can), returned to the host. */
    double (*sumsq)(const float *x, size_t n);
    /* One AdamW update of n elements (qw_adamw_scalars).  When p_act is not
     * NULL it receives the updated p in the activation type (the compute
     * copy of the weights; NULL when act_size is 4). */
    void (*adamw)(float *p, void *p_act, const float *g, float *m, float *v, size_t n,
                  const qw_adamw_scalars *s);
} qw_ops;

/* The fp32 CPU backend (kernels/cpu). */
const qw_ops *qw_ops_cpu(void);

#ifdef QW_HAVE_CUDA
/* The CUDA backends (kernels/cuda) on the first GPU: bf16 activations
 * (cuBLASLt, tensor cores, flash attention), and fp32 throughout (cuBLAS
 * with TF32 off; checked against the CPU).  NULL when no usable GPU is
 * present (kernels/cuda/qwcuda.h: qw_cuda_why says why).  Their ops never
 * return errors: a CUDA failure in the middle of a run prints
 * "qw: cuda: ..." and exits 1.  alloc returns NULL when device memory runs
 * out.  Built only when nvcc is found. */
const qw_ops *qw_ops_cuda(void);
const qw_ops *qw_ops_cuda_fp32(void);
#endif

#endif
