/* attention.c — causal GQA attention with document segments, fp32.
 *
 * For each (row, query head) the queries are taken in blocks of QB; a block
 * attends to keys [kv_start of its first query, its last query], so scores
 * are one GEMM into a QB×T scratch, masked to each query's own range, and
 * the output one more GEMM.  The backward recomputes the probabilities from
 * the saved log-sum-exp (no T×T matrix is kept between passes). */
#include "cpu.h"

#include <math.h>
#include <string.h>

#define QB 128

size_t qw_cpu_attn_workspace(int T, int d)
{
    return (size_t)2 * QB * T * sizeof(float);
}

/* Turn row r of raw scores into probabilities: exp(s − lse) inside the
 * query's key range [lo, hi], 0 outside.  With lse NULL, compute it. */
static float probs_row(float *s, int nk, int lo, int hi, const float *lse)
{
    float l;
    if (lse) {
        l = *lse;
    } else {
        float mx = -INFINITY;
        for (int j = lo; j <= hi; j++) mx = s[j] > mx ? s[j] : mx;
        double sum = 0;
        for (int j = lo; j <= hi; j++) sum += expf(s[j] - mx);
        l = mx + (float)log(sum);
    }
    for (int j = 0; j < lo; j++) s[j] = 0;
    for (int j = lo; j <= hi; j++) s[j] = expf(s[j] - l);
    for (int j = hi + 1; j < nk; j++) s[j] = 0;
    return l;
}

void qw_cpu_attn_fwd(float *o, float *lse, const float *q, const float *k, const float *v,
                     const int32_t *kv_start, int B, int T, int nh, int nkv, int d, float scale, void *ws)
{
    float *S = ws;
    int ldq = nh * d, ldk = nkv * d, group = nh / nkv;
    for (int b = 0; b < B; b++) {
        const int32_t *ks = kv_start + (size_t)b * T;
        for (int h = 0; h < nh; h++) {
            const float *Q = q + (size_t)b * T * ldq + h * d;
            const float *K = k + (size_t)b * T * ldk + (h / group) * d;
            const float *Vh = v + (size_t)b * T * ldk + (h / group) * d;
            float *O = o + (size_t)b * T * ldq + h * d;
            for (int i0 = 0; i0 < T; i0 += QB) {
                int m = i0 + QB < T ? QB : T - i0;
                int j0 = ks[i0];
                for (int r = 1; r < m; r++) j0 = ks[i0 + r] < j0 ? ks[i0 + r] : j0;
                int nk = i0 + m - j0;
                qw_cpu_gemm(0, 1, m, nk, d, scale, Q + (size_t)i0 * ldq, ldq, K + (size_t)j0 * ldk, ldk,
                            0, S, nk);
                #pragma omp parallel for schedule(static)
                for (int r = 0; r < m; r++) {
                    int i = i0 + r;
                    lse[((size_t)b * T + i) * nh + h] = probs_row(S + (size_t)r * nk, nk, ks[i] - j0, i - j0, NULL);
                }
                qw_cpu_gemm(0, 0, m, d, nk, 1, S, nk, Vh + (size_t)j0 * ldk, ldk, 0, O + (size_t)i0 * ldq, ldq);
            }
        }
    }
}

void qw_cpu_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                     const float *v, const float *o, const float *lse, const int32_t *kv_start,
                     int B, int T, int nh, int nkv, int d, float scale, void *ws)
{
    float *P = ws, *dP = P + (size_t)QB * T;
    int ldq = nh * d, ldk = nkv * d, group = nh / nkv;
    memset(dk, 0, (size_t)B * T * ldk * sizeof *dk);
    memset(dv, 0, (size_t)B * T * ldk * sizeof *dv);
    for (int b = 0; b < B; b++) {
        const int32_t *ks = kv_start + (size_t)b * T;
        for (int h = 0; h < nh; h++) {
            size_t qo = (size_t)b * T * ldq + h * d, ko = (size_t)b * T * ldk + (h / group) * d;
            for (int i0 = 0; i0 < T; i0 += QB) {
                int m = i0 + QB < T ? QB : T - i0;
                int j0 = ks[i0];
                for (int r = 1; r < m; r++) j0 = ks[i0 + r] < j0 ? ks[i0 + r] : j0;
                int nk = i0 + m - j0;
                size_t qb = qo + (size_t)i0 * ldq, kb = ko + (size_t)j0 * ldk;
                qw_cpu_gemm(0, 1, m, nk, d, scale, q + qb, ldq, k + kb, ldk, 0, P, nk);
                #pragma omp parallel for schedule(static)
                for (int r = 0; r < m; r++) {
                    int i = i0 + r;
                    probs_row(P + (size_t)r * nk, nk, ks[i] - j0, i - j0, &lse[((size_t)b * T + i) * nh + h]);
                }
                qw_cpu_gemm(1, 0, nk, d, m, 1, P, nk, dout + qb, ldq, 1, dv + kb, ldk);
                qw_cpu_gemm(0, 1, m, nk, d, 1, dout + qb, ldq, v + kb, ldk, 0, dP, nk);
                #pragma omp parallel for schedule(static)
                for (int r = 0; r < m; r++) {
                    const float *gr = dout + qb + (size_t)r * ldq, *orow = o + qb + (size_t)r * ldq;
                    float D = 0;
                    for (int j = 0; j < d; j++) D += gr[j] * orow[j];
                    float *pr = P + (size_t)r * nk, *dr = dP + (size_t)r * nk;
                    for (int j = 0; j < nk; j++) dr[j] = pr[j] * (dr[j] - D) * scale;
                }
                qw_cpu_gemm(0, 0, m, d, nk, 1, dP, nk, k + kb, ldk, 0, dq + qb, ldq);
                qw_cpu_gemm(1, 0, nk, d, m, 1, dP, nk, q + qb, ldq, 1, dk + kb, ldk);
            }
        }
    }
}
