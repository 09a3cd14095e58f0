/* moe.c — Mixture-of-experts routing on the CPU: fp32 softmax router,
 * top-k, renormalisation and their backward; load-balancing statistics;
 * grouping the token-expert assignments by expert. */
#include "cpu.h"
#include "../route.h"

#include <math.h>
#include <string.h>

void qw_cpu_moe_route_fwd(float *probs, int32_t *sel, float *w, const float *logits, int n, int E, int k, int norm)
{
    #pragma omp parallel for schedule(static) if((size_t)n * E >= QW_CPU_PAR_MIN)
    for (int i = 0; i < n; i++)
        qw_route_row(probs + (size_t)i * E, sel + (size_t)i * k, w + (size_t)i * k, logits + (size_t)i * E, E, k, norm);
}

void qw_cpu_moe_route_bwd(float *dlogits, const float *dw, const float *probs, const int32_t *sel,
                          const float *w, const float *dprobs, int n, int E, int k, int norm)
{
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++)
        qw_route_row_bwd(dlogits + (size_t)i * E, dw + (size_t)i * k, probs + (size_t)i * E, sel + (size_t)i * k,
                         w + (size_t)i * k, dprobs, E, k, norm);
}

void qw_cpu_moe_aux_stats(float *count, float *psum, const float *probs, const int32_t *sel, int n, int E, int k)
{
    #pragma omp parallel for schedule(static)
    for (int e = 0; e < E; e++) {
        double ps = 0;
        long c = 0;
        for (int i = 0; i < n; i++) {
            ps += probs[(size_t)i * E + e];
            for (int j = 0; j < k; j++) c += sel[(size_t)i * k + j] == e;
        }
        count[e] += (float)c;
        psum[e] += (float)ps;
    }
}

int qw_cpu_moe_dispatch(int32_t *offsets, int32_t *rows, int32_t *slots, const int32_t *sel,
                        int n, int E, int k, int capacity)
{
    int32_t seen[E], cur[E];
    memset(seen, 0, sizeof seen);
    memset(offsets, 0, (E + 1) * sizeof *offsets);
    for (int a = 0; a < n * k; a++)
        if (seen[sel[a]]++ < capacity) offsets[sel[a] + 1]++;
    for (int e = 0; e < E; e++) offsets[e + 1] += offsets[e];
    memcpy(cur, offsets, sizeof cur);
    memset(seen, 0, sizeof seen);
    for (int a = 0; a < n * k; a++) {
        int e = sel[a];
        if (seen[e]++ >= capacity) continue;
        rows[cur[e]] = a / k;
        slots[cur[e]++] = a;
    }
    return offsets[E];
}
