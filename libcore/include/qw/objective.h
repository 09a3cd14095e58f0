/* qw/objective.h — training objectives as per-token coefficients.
 *
 * doc/design.md, principle 3: every objective is a weight on d(log p).  The model
 * (qw/model.h) computes loss = Σ_t coef_t·(−log p(target_t)) and its one
 * backward; an objective only chooses the targets and the coefficients.
 * These helpers build the usual ones on host arrays of B·T tokens.
 */
#ifndef QW_OBJECTIVE_H
#define QW_OBJECTIVE_H

#include <stdint.h>

/* Next-token targets: targets[t] = ids[t+1] when t+1 is in the same row
 * and, if seg is not NULL, in the same document (equal segment id);
 * otherwise −1.  With seg NULL every row has T−1 targets (HF's
 * labels = input_ids).  Returns the number of targets. */
int qw_objective_next_token(const int32_t *ids, const int32_t *seg, int B, int T, int32_t *targets);

/* The mean over targets: coef[t] = 1/n where targets[t] ≥ 0 (n of them),
 * 0 elsewhere.  Returns n (all coefficients 0 when n is 0). */
int qw_objective_mean(const int32_t *targets, int n_tokens, float *coef);

#endif
