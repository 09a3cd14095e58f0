/* loss.c — cross-entropy over the vocabulary (fp32 log-softmax), forward
 * and backward, for a chunk of rows of logits. */
#include "cpu.h"

#include <math.h>
#include <string.h>

void qw_cpu_ce_fwd(float *lse, float *logp, const float *logits, const int32_t *targets, int n, int V)
{
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *l = logits + (size_t)i * V;
        lse[i] = qw_cpu_lse_row(l, V);
        logp[i] = targets[i] >= 0 ? l[targets[i]] - lse[i] : 0;
    }
}

void qw_cpu_ce_bwd(void *dlogits, const float *logits, const float *lse, const int32_t *targets, const float *coef,
                   int n, int V)
{
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *l = logits + (size_t)i * V;
        float *dl = (float *)dlogits + (size_t)i * V;
        if (targets[i] < 0) {
            memset(dl, 0, V * sizeof *dl);
            continue;
        }
        float c = coef[i], m = lse[i];
        for (int v = 0; v < V; v++) dl[v] = c * expf(l[v] - m);
        dl[targets[i]] -= c;
    }
}
