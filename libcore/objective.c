/* objective.c — targets and per-token loss coefficients (qw/objective.h). */
#include "qw/objective.h"

#include <stddef.h>

int qw_objective_next_token(const int32_t *ids, const int32_t *seg, int B, int T, int32_t *targets)
{
    int n = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            size_t i = (size_t)b * T + t;
            int ok = t + 1 < T && (!seg || seg[i + 1] == seg[i]);
            targets[i] = ok ? ids[i + 1] : -1;
            n += ok;
        }
    return n;
}

int qw_objective_mean(const int32_t *targets, int n_tokens, float *coef)
{
    int n = 0;
    for (int i = 0; i < n_tokens; i++) n += targets[i] >= 0;
    for (int i = 0; i < n_tokens; i++) coef[i] = targets[i] >= 0 ? 1.0f / n : 0;
    return n;
}
