/* decode.c — the decoding ops on the CPU: K/V cache writes, attention of
 * new queries against a paged cache, and sampling with log-probs
 * (semantics: qw/ops.h). */
#define _GNU_SOURCE
#include "cpu.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

void qw_cpu_kv_write(void *kc, void *vc, const void *k, const void *v, const int32_t *slots, int n, int kv)
{
    float *K = kc, *Vc = vc;
    const float *ks = k, *vs = v;
    #pragma omp parallel for schedule(static) if((size_t)n * kv >= QW_CPU_PAR_MIN)
    for (int i = 0; i < n; i++) {
        memcpy(K + (size_t)slots[i] * kv, ks + (size_t)i * kv, kv * sizeof *K);
        memcpy(Vc + (size_t)slots[i] * kv, vs + (size_t)i * kv, kv * sizeof *Vc);
    }
}

/* One slot per thread: the scores of the query heads of one kv head. */
size_t qw_cpu_attn_paged_workspace(int nh, int nkv, int max_ctx)
{
    return (size_t)omp_get_max_threads() * (nh / nkv) * (size_t)max_ctx * sizeof(float);
}

/* A task is one (query, kv head): its group of query heads read the same
 * keys and values.  Scores, then softmax statistics as the training
 * attention takes them (max, Σ expf in fp64, log), then the weighted sum
 * of the values. */
void qw_cpu_attn_paged(void *vo, const void *vq, const void *kc, const void *vc, const int32_t *tables, int max_blocks,
                       const int32_t *seq, const int32_t *pos, int n, int nh, int nkv, int d, int bs, float scale,
                       void *ws, size_t ws_bytes)
{
    float *o = vo;
    const float *q = vq, *K = kc, *V = vc;
    int group = nh / nkv, kv = nkv * d, max_ctx = max_blocks * bs;
    size_t slot = (size_t)group * max_ctx;
    int slots = (int)(ws_bytes / (slot * sizeof(float)));
    int nt = omp_get_max_threads() < slots ? omp_get_max_threads() : slots;
    if (nt < 1) nt = 1;
    #pragma omp parallel for schedule(dynamic) num_threads(nt) if(n >= 4)
    for (long t = 0; t < (long)n * nkv; t++) {
        int i = (int)(t / nkv), kh = (int)(t % nkv), len = pos[i] + 1;
        const int32_t *table = tables + (size_t)seq[i] * max_blocks;
        float *S = (float *)ws + (size_t)omp_get_thread_num() * slot;
        for (int g = 0; g < group; g++) {
            const float *qh = q + (size_t)i * nh * d + (size_t)(kh * group + g) * d;
            float *s = S + (size_t)g * max_ctx;
            for (int p = 0; p < len; p++) {
                const float *kr = K + ((size_t)table[p / bs] * bs + p % bs) * kv + (size_t)kh * d;
                float dot = 0;
                #pragma omp simd reduction(+:dot)
                for (int j = 0; j < d; j++) dot += qh[j] * kr[j];
                s[p] = dot * scale;
            }
            float mx = -INFINITY;
            for (int p = 0; p < len; p++) mx = s[p] > mx ? s[p] : mx;
            double sum = 0;
            for (int p = 0; p < len; p++) sum += expf(s[p] - mx);
            float l = mx + (float)log(sum);
            for (int p = 0; p < len; p++) s[p] = expf(s[p] - l);
            float *oh = o + (size_t)i * nh * d + (size_t)(kh * group + g) * d;
            memset(oh, 0, d * sizeof *oh);
            for (int p = 0; p < len; p++) {
                const float *vr = V + ((size_t)table[p / bs] * bs + p % bs) * kv + (size_t)kh * d;
                float w = s[p];
                #pragma omp simd
                for (int j = 0; j < d; j++) oh[j] += w * vr[j];
            }
        }
    }
}

/* ---- sampling ---- */

size_t qw_cpu_sample_workspace(int n, int V) { return (size_t)n * V * (sizeof(float) + sizeof(int32_t)); }

/* Candidates in decreasing z, equal values by increasing id. */
static int by_z_desc(const void *a, const void *b, void *zp)
{
    const float *z = zp;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float x = z[i], y = z[j];
    if (x != y) return x > y ? -1 : 1;
    return (i > j) - (i < j);
}

/* Sift down in a min-heap (by z, then larger id counts as smaller) of n ids. */
static int heap_less(const float *z, int32_t a, int32_t b) { return z[a] < z[b] || (z[a] == z[b] && a > b); }
static void sift(int32_t *h, int n, int r, const float *z)
{
    for (;;) {
        int c = 2 * r + 1;
        if (c >= n) return;
        if (c + 1 < n && heap_less(z, h[c + 1], h[c])) c++;
        if (!heap_less(z, h[c], h[r])) return;
        int32_t t = h[c]; h[c] = h[r]; h[r] = t;
        r = c;
    }
}

/* The top k of z (ids), sorted as by_z_desc; returns k. */
static int top_k_ids(const float *z, int V, int k, int32_t *out)
{
    if (k >= V / 4) {   /* a sort is as cheap */
        for (int v = 0; v < V; v++) out[v] = v;
        qsort_r(out, V, sizeof *out, by_z_desc, (void *)z);
        return k < V ? k : V;
    }
    for (int v = 0; v < k; v++) out[v] = v;
    for (int r = k / 2 - 1; r >= 0; r--) sift(out, k, r, z);
    for (int v = k; v < V; v++)
        if (heap_less(z, out[0], v)) { out[0] = v; sift(out, k, 0, z); }
    qsort_r(out, k, sizeof *out, by_z_desc, (void *)z);
    return k;
}

static void sample_row(int32_t *tok, float *logp, float *raw_logp, const float *l, double u, int forced, int V,
                       float temperature, int top_k, float top_p, float *z, int32_t *ids)
{
    float lse = qw_cpu_lse_row(l, V);
    int t;
    if (temperature <= 0) {
        if (forced >= 0) t = forced;
        else {
            t = 0;
            for (int v = 1; v < V; v++) if (l[v] > l[t]) t = v;
        }
        *tok = t;
        *logp = *raw_logp = l[t] - lse;
        return;
    }
    for (int v = 0; v < V; v++) z[v] = l[v] / temperature;
    if (forced >= 0) {
        *tok = forced;
        *raw_logp = l[forced] - lse;
        *logp = z[forced] - qw_cpu_lse_row(z, V);
        return;
    }
    int n;   /* kept candidates: ids[0..n) in decreasing z, or all of the vocabulary in id order */
    int sorted = top_k > 0 || top_p < 1;
    if (!sorted) n = V;
    else n = top_k_ids(z, V, top_k > 0 && top_k < V ? top_k : V, ids);
    float zmax = -INFINITY;
    for (int j = 0; j < n; j++) {
        float zj = z[sorted ? ids[j] : j];
        zmax = zj > zmax ? zj : zmax;
    }
    double total = 0;
    for (int j = 0; j < n; j++) total += expf(z[sorted ? ids[j] : j] - zmax);
    if (top_p < 1) {   /* the shortest prefix whose mass reaches top_p */
        double cum = 0;
        int keep = 0;
        while (keep < n && cum < top_p * total) cum += expf(z[ids[keep++]] - zmax);
        n = keep, total = cum;
    }
    double target = u * total, cum = 0;
    t = sorted ? ids[n - 1] : n - 1;
    for (int j = 0; j < n; j++) {
        int id = sorted ? ids[j] : j;
        cum += expf(z[id] - zmax);
        if (cum > target) { t = id; break; }
    }
    *tok = t;
    *raw_logp = l[t] - lse;
    *logp = (z[t] - zmax) - (float)log(total);
}

void qw_cpu_sample(int32_t *tok, float *logp, float *raw_logp, const float *logits, const double *u,
                   const int32_t *forced, int n, int V, float temperature, int top_k, float top_p, void *ws)
{
    float *zs = ws;
    int32_t *idss = (int32_t *)(zs + (size_t)n * V);
    #pragma omp parallel for schedule(static) if(n > 1)
    for (int i = 0; i < n; i++)
        sample_row(tok + i, logp + i, raw_logp + i, logits + (size_t)i * V, u[i], forced ? forced[i] : -1, V,
                   temperature, top_k, top_p, zs + (size_t)i * V, idss + (size_t)i * V);
}
