/* kernels/cpu/cpu.h — internal: the fp32 CPU ops, one file per concern,
 * gathered into the table by cpu.c.  Semantics: qw/ops.h.  Activations
 * (`void *` in ops.h) are float here. */
#ifndef QW_KERNELS_CPU_H
#define QW_KERNELS_CPU_H

#include <stddef.h>
#include <stdint.h>
#include <math.h>

/* Elementwise and row ops run on one thread below this many elements: a
 * parallel region costs more than it saves (decoding one token at a time);
 * the results do not depend on it (rows are independent). */
#define QW_CPU_PAR_MIN 16384

void qw_cpu_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc);

size_t qw_cpu_attn_workspace(int B, int T, int nh, int d);
void qw_cpu_attn_fwd(void *o, float *lse, const void *q, const void *k, const void *v,
                     const int32_t *kv_start, int B, int T, int nh, int nkv, int d, float scale, void *ws,
                     size_t ws_bytes);
void qw_cpu_attn_bwd(void *dq, void *dk, void *dv, const void *dout, const void *q, const void *k,
                     const void *v, const void *o, const float *lse, const int32_t *kv_start,
                     int B, int T, int nh, int nkv, int d, float scale, void *ws,
                     size_t ws_bytes);

void qw_cpu_moe_route_fwd(float *probs, int32_t *sel, float *w, const float *logits, int n, int E, int k, int norm);
void qw_cpu_moe_route_bwd(float *dlogits, const float *dw, const float *probs, const int32_t *sel,
                          const float *w, const float *dprobs, int n, int E, int k, int norm);
void qw_cpu_moe_aux_stats(float *count, float *psum, const float *probs, const int32_t *sel, int n, int E, int k);
int qw_cpu_moe_dispatch(int32_t *offsets, int32_t *rows, int32_t *slots, const int32_t *sel,
                        int n, int E, int k, int capacity);

/* logsumexp of a row of fp32 logits: the max, then Σ expf(l − max) in
 * fp64 — one formula for the cross-entropy and the sampler's log-probs. */
static inline float qw_cpu_lse_row(const float *l, int V)
{
    float mx = -INFINITY;
    for (int v = 0; v < V; v++) mx = l[v] > mx ? l[v] : mx;
    double sum = 0;
    for (int v = 0; v < V; v++) sum += expf(l[v] - mx);
    return mx + (float)log(sum);
}

void qw_cpu_ce_fwd(float *lse, float *logp, const float *logits, const int32_t *targets, int n, int V);
void qw_cpu_ce_bwd(void *dlogits, const float *logits, const float *lse, const int32_t *targets, const float *coef, int n, int V);

size_t qw_cpu_attn_paged_workspace(int nh, int nkv, int max_ctx);
void qw_cpu_attn_paged(void *o, const void *q, const void *kc, const void *vc, const int32_t *tables, int max_blocks,
                       const int32_t *seq, const int32_t *pos, int n, int nh, int nkv, int d, int bs, float scale,
                       void *ws, size_t ws_bytes);
void qw_cpu_kv_write(void *kc, void *vc, const void *k, const void *v, const int32_t *slots, int n, int kv);
size_t qw_cpu_sample_workspace(int n, int V);
void qw_cpu_sample(int32_t *tok, float *logp, float *raw_logp, const float *logits, const double *u,
                   const int32_t *forced, int n, int V, float temperature, int top_k, float top_p, void *ws);

#endif
