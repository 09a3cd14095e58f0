/* qw/rm.h — the reward model: a Qwen3 backbone with a scalar value head,
 * as transformers' Qwen3ForSequenceClassification with num_labels 1, and
 * the Bradley–Terry objective of TRL's RewardTrainer.
 *
 * Model.  The parameters carry "score.weight" [1,H] instead of an LM head
 * (qw/params.h, cfg.score_head).  The reward of a sequence is
 * score·h_t, h_t the final RMSNorm's output at ONE position t: the last
 * position whose token is not pad_token_id (transformers' pooling rule for
 * sequence classification; with no pad_token_id, the last position).  A
 * sequence is run unpadded, so a trailing token equal to pad_token_id is
 * skipped exactly as transformers skips it in a padded batch.  The
 * backbone runs through qw_model_forward_hidden/backward_hidden
 * (qw/model.h); the head is a dot product of H values, done on the host.
 *
 * Objective (per pair p of a step of P pairs, rewards c_p, r_p, margin
 * m_p, 0 without --margin-field):
 *     loss = (1/P) Σ_p [ −log σ(c_p − r_p − m_p) + center·(c_p + r_p)² ]
 * i.e. TRL's mean over the batch of −logsigmoid(chosen − rejected −
 * margin) plus center_rewards_coefficient · mean((chosen + rejected)²).
 *
 * Memory: the head's weight and gradient live where the arenas live
 * (host or device); these functions move the H values they need.
 * Errors: 0 or QW_EXIT_* with a message (qw/cli.h).
 */
#ifndef QW_RM_H
#define QW_RM_H

#include <stdint.h>

#include "qw/model.h"
#include "qw/params.h"

/* The pooled position of a sequence of n ≥ 1 tokens: the last index whose
 * id is not pad (pad < 0: none), else 0 (transformers' argmax of an
 * all-zero mask). */
int qw_rm_pool(const int32_t *ids, int n, int pad);

/* r[i] = score·h[i] for n rows h (host fp32 [n·H]); P a reward model. */
int qw_rm_head_forward(const qw_params *P, const float *h, int n, float *r);
/* The head's backward for dr = ∂loss/∂r (host [n]): adds Σ_i dr[i]·h[i] to
 * G's score.weight and writes dh[i] = dr[i]·score (host [n·H]). */
int qw_rm_head_backward(const qw_params *P, qw_params *G, const float *h, const float *dr, int n, float *dh);

/* The forward of a batch to rewards: the backbone (qw_model_forward_hidden
 * at idx), the head; h is the caller's scratch of n·H floats (keep it for
 * qw_rm_head_backward). */
int qw_rm_forward(qw_model *m, const qw_params *P, const qw_batch *b, const int32_t *idx, int n, float *h, float *r);

typedef struct {
    double loss;        /* Σ_p loss_p / P (this call's part of the step's loss) */
    double correct;     /* pairs with c > r */
    double margin;      /* Σ (c − r) */
    double chosen;      /* Σ c */
    double rejected;    /* Σ r */
} qw_rm_sums;

/* The Bradley–Terry loss of n pairs (rewards c, r; margin may be NULL),
 * of a step of P pairs in all: ∂loss/∂c and ∂loss/∂r into dc, dr (host
 * [n]); the sums ADDED to *s (in fp64).  center ≥ 0. */
void qw_rm_bt_loss(const float *c, const float *r, const float *margin, int n, long P, double center, float *dc,
                   float *dr, qw_rm_sums *s);

#endif
