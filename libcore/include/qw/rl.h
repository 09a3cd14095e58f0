/* qw/rl.h — the objectives of reinforcement learning from rewards and
 * preferences (GRPO, DPO) as per-token coefficients on d(log p).
 *
 * doc/design.md, principle 3: the model computes loss = Σ_t c_t·(−log p_t)
 * and one backward (qw/model.h), so an objective only has to say, after a
 * forward has given the current log-probs lp_t, what c_t = −∂L/∂lp_t is.
 * These functions take host arrays of log-probs and return the objective's
 * value, its coefficients and the statistics a trainer logs; they know
 * nothing of models, devices or files.  The formulas are TRL's (GRPOTrainer
 * and DPOTrainer); qw-grpo(1) and qw-dpo(1) state them for users, and
 * tests/golden/make_rl_golden.py checks them against PyTorch autograd.
 *
 * Log-probs are of the completion tokens under the policy's distribution
 * as sampled: logits divided by the sampling temperature before the
 * log-softmax (the same temperature for the current, old and reference
 * policies).
 *
 * Sums over a step.  A trainer accumulates the gradients of several
 * micro-batches (and ranks) into one optimizer step and sums them; the
 * losses and coefficients here are per micro-batch, scaled so that their
 * sum over the step's micro-batches is the objective of the step (TRL's
 * averaging over gradient-accumulation steps and data-parallel processes,
 * written as one sum).
 *
 * Errors: none; the functions check nothing that the caller has not
 * already checked (lengths ≥ 0, G ≥ 1, finite log-probs).  NaN rewards are
 * meaningful (a reward function that gave no value).
 */
#ifndef QW_RL_H
#define QW_RL_H

#include <stdint.h>

/* ---- GRPO: rewards to advantages ---- */

typedef enum {
    QW_SCALE_GROUP,   /* divide by the group's standard deviation (TRL's default) */
    QW_SCALE_BATCH,   /* divide by the standard deviation of the whole batch */
    QW_SCALE_NONE     /* no division (Dr. GRPO) */
} qw_scale_rewards;

typedef struct {
    double reward_mean, reward_std;   /* over the batch's non-NaN rewards; std with Bessel's correction */
    double frac_zero_std;             /* groups whose rewards' std is 0 (no learning signal) */
} qw_grpo_reward_stats;

/* n = groups·G rewards, group g being r[g·G .. g·G+G).  For each group:
 * μ = mean of its non-NaN rewards, σ = their standard deviation with
 * Bessel's correction (0 for a group of one); A_i = (r_i − μ)/(σ + eps)
 * (σ of the group, or of the whole batch's non-NaN rewards for
 * QW_SCALE_BATCH; no division for QW_SCALE_NONE).  A NaN reward gets
 * A = 0.  TRL: eps = 1e-4.  `stats` may be NULL. */
void qw_grpo_advantages(const double *r, int n, int G, qw_scale_rewards scale, double eps, float *adv,
                        qw_grpo_reward_stats *stats);

/* The loss mask of a completion of n tokens: 1 up to and including the
 * first stop token (an id in stop[0..n_stop)), 0 after it.  With
 * mask_truncated, a completion without a stop token gets 0 everywhere.
 * Returns the number of 1s. */
int qw_grpo_mask(const int32_t *ids, int n, const int32_t *stop, int n_stop, int mask_truncated, uint8_t *mask);

/* ---- GRPO: the clipped surrogate ---- */

typedef enum {
    QW_GRPO_LOSS_GRPO,     /* per-sequence token mean, then the mean over sequences */
    QW_GRPO_LOSS_BNPO,     /* token mean over the micro-batch */
    QW_GRPO_LOSS_DR_GRPO,  /* token sum over (sequences · max_completion_length) */
    QW_GRPO_LOSS_DAPO      /* token mean over the whole step (TRL's default) */
} qw_grpo_loss_type;

typedef struct {
    double eps_low, eps_high;   /* ratio clipped to [1 − eps_low, 1 + eps_high] (TRL: 0.2, 0.2) */
    double delta;               /* > 0: the unclipped ratio capped at delta (TRL's two-sided clip); 0: off */
    double beta;                /* coefficient of the k3 KL to the reference policy; 0: off */
    qw_grpo_loss_type loss_type;
    int max_completion_length;  /* dr_grpo's L */
    int n_micro;                /* micro-batches summed into the step (accumulation × ranks) */
    double step_tokens;         /* dapo: mask 1s in the whole step (all micro-batches, all ranks) */
} qw_grpo_cfg;

/* One micro-batch of S completions, completion s holding tokens
 * [off[s], off[s+1]) of the flat arrays (off has S+1 entries). */
typedef struct {
    int S;
    const int64_t *off;
    const float *lp;       /* current log-probs */
    const float *old;      /* the policy's log-probs when the completions were sampled;
                              NULL: lp (one update per generation: ratio 1, no clipping) */
    const float *ref;      /* reference log-probs; read only when beta ≠ 0 */
    const float *adv;      /* one advantage per completion */
    const uint8_t *mask;   /* loss mask per token */
} qw_grpo_batch;

typedef struct {
    double loss;                      /* this micro-batch's share of the step's loss */
    double tokens;                    /* mask 1s */
    /* sums over masked tokens, to be divided by `tokens` summed over the step: */
    double kl_sum;                    /* of k3 (computed even when beta = 0 if ref is given) */
    double clip_low_sum, clip_high_sum;   /* tokens with ρ < 1−ε_low and A < 0; ρ > 1+ε_high and A > 0 */
    double ratio_sum;                 /* of ρ */
} qw_grpo_out;

/* Per token: ρ = exp(lp − old), ρ₁ = min(ρ, delta) when delta > 0,
 * L_t = −min(ρ₁·A, clip(ρ, 1−ε_low, 1+ε_high)·A) + β·(e^(ref−lp) − (ref−lp) − 1),
 * aggregated by loss_type into this micro-batch's loss (see qw-grpo(1)).
 * Writes coef[t] = −∂loss/∂lp_t for every token (0 off the mask), with
 * PyTorch's conventions at the kinks: where the two terms of the min are
 * equal each takes half of the gradient; the clamp passes the gradient at
 * its bounds. `out` may be NULL. */
void qw_grpo_loss(const qw_grpo_cfg *c, const qw_grpo_batch *b, float *coef, qw_grpo_out *out);

/* ---- DPO ---- */

typedef enum {
    QW_DPO_SIGMOID,   /* −log σ(βΔ) */
    QW_DPO_HINGE,     /* relu(1 − βΔ) */
    QW_DPO_IPO,       /* (Δ̄ − 1/(2β))², Δ̄ of per-token mean log-ratios */
    QW_DPO_ROBUST     /* (−(1−ε) log σ(βΔ) + ε log σ(−βΔ)) / (1 − 2ε) */
} qw_dpo_loss_type;

typedef struct {
    qw_dpo_loss_type type;
    double beta;               /* TRL: 0.1 */
    double label_smoothing;    /* ε of robust, in [0, 0.5) */
    double n_pairs;            /* pairs in the whole step (the loss is their mean) */
} qw_dpo_cfg;

/* One pair: summed completion log-probs of the chosen (c) and rejected (r)
 * answers under the policy and the reference, and their token counts. */
typedef struct {
    double lp_c, lp_r, ref_c, ref_r;
    double n_c, n_r;
} qw_dpo_pair;

typedef struct {
    double loss;                     /* this pair's share of the step's loss: ℓ/n_pairs */
    double d_lp_c, d_lp_r;           /* ∂loss/∂(summed log-prob) of each side: every completion
                                        token of that side gets coefficient −d */
    double reward_c, reward_r;       /* β·(lp − ref) of each side */
} qw_dpo_out;

/* Δ = (lp_c − ref_c) − (lp_r − ref_r) (for IPO each side's difference is
 * divided by its token count). */
void qw_dpo_pair_loss(const qw_dpo_cfg *c, const qw_dpo_pair *p, qw_dpo_out *out);

#endif
