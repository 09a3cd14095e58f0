/* kernels/cpu/cpu.h — internal: the fp32 CPU ops, one file per concern,
 * gathered into the table by cpu.c.  Semantics: qw/ops.h.  Activations
 * (`void *` in ops.h) are float here. */
#ifndef QW_KERNELS_CPU_H
#define QW_KERNELS_CPU_H

#include <stddef.h>
#include <stdint.h>

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

void qw_cpu_ce_fwd(float *lse, float *logp, const float *logits, const int32_t *targets, int n, int V);
void qw_cpu_ce_bwd(void *dlogits, const float *logits, const float *lse, const int32_t *targets, const float *coef, int n, int V);

#endif
