/* attention.c — causal GQA attention with document segments, fp32.
 *
 * For each (row, query head) the queries are taken in blocks of QB; a block
 * attends to keys [kv_start of its first query, its last query], so scores
 * are one GEMM into a QB×T scratch, masked to each query's own range, and
 * the output one more GEMM.  The backward recomputes the probabilities from
 * the saved log-sum-exp (no T×T matrix is kept between passes).  Heads
 * are independent tasks spread over the OpenMP threads, each in its own
 * scratch slot, so a layer's attention synchronises the threads once. */
#include "cpu.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define QB 128

/* One scratch slot per thread: scores/probabilities and their gradient. */
static size_t slot_floats(int T) { return (size_t)2 * QB * T; }

size_t qw_cpu_attn_workspace(int B, int T, int nh, int d)
{
    return (size_t)omp_get_max_threads() * slot_floats(T) * sizeof(float);
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

/* The first key of a block of m queries starting at i0. */
static int block_start(const int32_t *ks, int i0, int m)
{
    int j0 = ks[i0];
    for (int r = 1; r < m; r++) j0 = ks[i0 + r] < j0 ? ks[i0 + r] : j0;
    return j0;
}

/* Independent tasks run on the OpenMP threads, each with its own scratch
 * slot (their GEMMs run whole: qw_cpu_gemm inside a parallel region). */
static int enter_tasks(size_t ws_bytes, int T)
{
    int slots = (int)(ws_bytes / (slot_floats(T) * sizeof(float)));
    int n = omp_get_max_threads() < slots ? omp_get_max_threads() : slots;
    return n < 1 ? 1 : n;
}

static void head_fwd(float *o, float *lse, const float *Q, const float *K, const float *Vh, const int32_t *ks,
                     int T, int ldq, int ldk, int ldl, int d, float scale, float *S)
{
    for (int i0 = 0; i0 < T; i0 += QB) {
        int m = i0 + QB < T ? QB : T - i0, j0 = block_start(ks, i0, m), nk = i0 + m - j0;
        qw_cpu_gemm(0, 1, m, nk, d, scale, Q + (size_t)i0 * ldq, ldq, K + (size_t)j0 * ldk, ldk, 0, S, nk);
        for (int r = 0; r < m; r++)
            lse[(size_t)(i0 + r) * ldl] = probs_row(S + (size_t)r * nk, nk, ks[i0 + r] - j0, i0 + r - j0, NULL);
        qw_cpu_gemm(0, 0, m, d, nk, 1, S, nk, Vh + (size_t)j0 * ldk, ldk, 0, o + (size_t)i0 * ldq, ldq);
    }
}

void qw_cpu_attn_fwd(void *vo, float *lse, const void *vq, const void *vk, const void *vv,
                     const int32_t *kv_start, int B, int T, int nh, int nkv, int d, float scale, void *ws,
                     size_t ws_bytes)
{
    float *o = vo;
    const float *q = vq, *k = vk, *v = vv;
    int ldq = nh * d, ldk = nkv * d, group = nh / nkv, nt = enter_tasks(ws_bytes, T);
    #pragma omp parallel for schedule(dynamic) num_threads(nt)
    for (int t = 0; t < B * nh; t++) {
        int b = t / nh, h = t % nh;
        float *S = (float *)ws + omp_get_thread_num() * slot_floats(T);
        size_t qo = (size_t)b * T * ldq + h * d, ko = (size_t)b * T * ldk + (h / group) * d;
        head_fwd(o + qo, lse + (size_t)b * T * nh + h, q + qo, k + ko, v + ko, kv_start + (size_t)b * T,
                 T, ldq, ldk, nh, d, scale, S);
    }
}

/* One query head's contribution: dq written, dk and dv accumulated. */
static void head_bwd(float *dq, float *dk, float *dv, const float *dout, const float *Q, const float *K,
                     const float *Vh, const float *o, const float *lse, const int32_t *ks,
                     int T, int ldq, int ldk, int ldl, int d, float scale, float *P)
{
    float *dP = P + (size_t)QB * T;
    for (int i0 = 0; i0 < T; i0 += QB) {
        int m = i0 + QB < T ? QB : T - i0, j0 = block_start(ks, i0, m), nk = i0 + m - j0;
        size_t qb = (size_t)i0 * ldq, kb = (size_t)j0 * ldk;
        qw_cpu_gemm(0, 1, m, nk, d, scale, Q + qb, ldq, K + kb, ldk, 0, P, nk);
        for (int r = 0; r < m; r++)
            probs_row(P + (size_t)r * nk, nk, ks[i0 + r] - j0, i0 + r - j0, &lse[(size_t)(i0 + r) * ldl]);
        qw_cpu_gemm(1, 0, nk, d, m, 1, P, nk, dout + qb, ldq, 1, dv + kb, ldk);
        qw_cpu_gemm(0, 1, m, nk, d, 1, dout + qb, ldq, Vh + kb, ldk, 0, dP, nk);
        for (int r = 0; r < m; r++) {
            const float *gr = dout + qb + (size_t)r * ldq, *orow = o + qb + (size_t)r * ldq;
            float D = 0;
            for (int j = 0; j < d; j++) D += gr[j] * orow[j];
            float *pr = P + (size_t)r * nk, *dr = dP + (size_t)r * nk;
            for (int j = 0; j < nk; j++) dr[j] = pr[j] * (dr[j] - D) * scale;
        }
        qw_cpu_gemm(0, 0, m, d, nk, 1, dP, nk, K + kb, ldk, 0, dq + qb, ldq);
        qw_cpu_gemm(1, 0, nk, d, m, 1, dP, nk, Q + qb, ldq, 1, dk + kb, ldk);
    }
}

void qw_cpu_attn_bwd(void *vdq, void *vdk, void *vdv, const void *vdout, const void *vq, const void *vk,
                     const void *vv, const void *vo, const float *lse, const int32_t *kv_start,
                     int B, int T, int nh, int nkv, int d, float scale, void *ws, size_t ws_bytes)
{
    float *dq = vdq, *dk = vdk, *dv = vdv;
    const float *dout = vdout, *q = vq, *k = vk, *v = vv, *o = vo;
    int ldq = nh * d, ldk = nkv * d, group = nh / nkv, nt = enter_tasks(ws_bytes, T);
    memset(dk, 0, (size_t)B * T * ldk * sizeof *dk);
    memset(dv, 0, (size_t)B * T * ldk * sizeof *dv);
    /* one task per (row, kv head): the query heads sharing dk, dv run in turn */
    #pragma omp parallel for schedule(dynamic) num_threads(nt)
    for (int t = 0; t < B * nkv; t++) {
        int b = t / nkv, kh = t % nkv;
        float *P = (float *)ws + omp_get_thread_num() * slot_floats(T);
        size_t ko = (size_t)b * T * ldk + kh * d;
        for (int h = kh * group; h < (kh + 1) * group; h++) {
            size_t qo = (size_t)b * T * ldq + h * d;
            head_bwd(dq + qo, dk + ko, dv + ko, dout + qo, q + qo, k + ko, v + ko, o + qo,
                     lse + (size_t)b * T * nh + h, kv_start + (size_t)b * T, T, ldq, ldk, nh, d, scale, P);
        }
    }
}
