/* rl.c — GRPO and DPO objectives as per-token coefficients (qw/rl.h). */
#include "qw/rl.h"

#include <math.h>
#include <stddef.h>

/* ---- GRPO: rewards to advantages ---- */

/* Mean and Bessel-corrected standard deviation of the non-NaN values of
 * x[0..n); the std is 0 with fewer than two.  Returns how many there are. */
static int nan_mean_std(const double *x, int n, double *mean, double *std)
{
    int k = 0;
    double s = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i])) s += x[i], k++;
    double m = k ? s / k : NAN, v = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i])) v += (x[i] - m) * (x[i] - m);
    *mean = m;
    *std = k > 1 ? sqrt(v / (k - 1)) : 0;
    return k;
}

void qw_grpo_advantages(const double *r, int n, int G, qw_scale_rewards scale, double eps, float *adv,
                        qw_grpo_reward_stats *stats)
{
    double batch_mean, batch_std;
    nan_mean_std(r, n, &batch_mean, &batch_std);
    int groups = G > 0 ? n / G : 0, zero_std = 0;
    double std_sum = 0;
    for (int g = 0; g < groups; g++) {
        const double *rg = r + (size_t)g * G;
        double mean, std;
        nan_mean_std(rg, G, &mean, &std);
        if (std <= 1e-8) zero_std++;
        std_sum += std;
        double div = scale == QW_SCALE_GROUP ? std + eps : scale == QW_SCALE_BATCH ? batch_std + eps : 1;
        for (int i = 0; i < G; i++) {
            double x = rg[i];
            adv[(size_t)g * G + i] = isnan(x) ? 0.0f : (float)((x - mean) / div);
        }
    }
    if (stats) {
        stats->reward_mean = batch_mean;
        stats->reward_std = scale == QW_SCALE_BATCH ? batch_std : groups ? std_sum / groups : 0;
        stats->frac_zero_std = groups ? (double)zero_std / groups : 0;
    }
}

int qw_grpo_mask(const int32_t *ids, int n, const int32_t *stop, int n_stop, int mask_truncated, uint8_t *mask)
{
    int end = n;   /* one past the first stop token, or n */
    int stopped = 0;
    for (int t = 0; t < n && !stopped; t++)
        for (int j = 0; j < n_stop; j++)
            if (ids[t] == stop[j]) {
                end = t + 1;
                stopped = 1;
                break;
            }
    if (mask_truncated && !stopped) end = 0;
    for (int t = 0; t < n; t++) mask[t] = t < end;
    return end;
}

/* ---- GRPO: the clipped surrogate ---- */

void qw_grpo_loss(const qw_grpo_cfg *c, const qw_grpo_batch *b, float *coef, qw_grpo_out *out)
{
    qw_grpo_out o = {0};
    double lo = 1 - c->eps_low, hi = 1 + c->eps_high;
    double mb_tokens = 0;
    for (int s = 0; s < b->S; s++)
        for (int64_t t = b->off[s]; t < b->off[s + 1]; t++) mb_tokens += b->mask[t] != 0;
    double n_micro = c->n_micro > 0 ? c->n_micro : 1;
    for (int s = 0; s < b->S; s++) {
        int64_t t0 = b->off[s], t1 = b->off[s + 1];
        double seq_tokens = 0;
        for (int64_t t = t0; t < t1; t++) seq_tokens += b->mask[t] != 0;
        /* d(loss)/d(L_t): the aggregation's weight of a masked token */
        double w;
        switch (c->loss_type) {
        case QW_GRPO_LOSS_GRPO: w = 1 / (n_micro * b->S * fmax(1, seq_tokens)); break;
        case QW_GRPO_LOSS_BNPO: w = 1 / (n_micro * fmax(1, mb_tokens)); break;
        case QW_GRPO_LOSS_DR_GRPO: w = 1 / (n_micro * (double)b->S * fmax(1, c->max_completion_length)); break;
        default: w = 1 / fmax(1, c->step_tokens); break;
        }
        double A = b->adv[s];
        for (int64_t t = t0; t < t1; t++) {
            if (!b->mask[t]) {
                coef[t] = 0;
                continue;
            }
            double lp = b->lp[t];
            double rho = b->old ? exp(lp - (double)b->old[t]) : 1.0;
            /* the unclipped term and its derivative in lp */
            double rho1 = rho, d1 = rho;
            if (c->delta > 0 && rho > c->delta) rho1 = c->delta, d1 = 0;
            double u = rho1 * A, du = d1 * A;
            /* the clipped term */
            double rc = rho < lo ? lo : rho > hi ? hi : rho;
            double v = rc * A, dv = rho >= lo && rho <= hi ? rho * A : 0;
            double m = u < v ? u : v;
            double dm = u < v ? du : v < u ? dv : 0.5 * (du + dv);
            double L = -m, dL = -dm;
            if (b->ref) {
                double x = (double)b->ref[t] - lp;
                double k3 = exp(x) - x - 1;
                o.kl_sum += k3;
                if (c->beta != 0) {
                    L += c->beta * k3;
                    dL += c->beta * (1 - exp(x));   /* d/dlp of e^(ref−lp) − (ref−lp) − 1 */
                }
            }
            o.loss += w * L;
            coef[t] = (float)(-w * dL);
            o.tokens += 1;
            o.ratio_sum += rho;
            o.clip_low_sum += rho < lo && A < 0;
            o.clip_high_sum += rho > hi && A > 0;
        }
    }
    if (out) *out = o;
}

/* ---- DPO ---- */

/* log(1 + e^x) without overflow */
static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
static double sigmoid(double x) { return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)); }

void qw_dpo_pair_loss(const qw_dpo_cfg *c, const qw_dpo_pair *p, qw_dpo_out *out)
{
    double beta = c->beta, eps = c->label_smoothing;
    double hc = p->lp_c - p->ref_c, hr = p->lp_r - p->ref_r;
    double l, dc, dr;   /* the pair's loss and its derivatives in lp_c, lp_r */
    if (c->type == QW_DPO_IPO) {
        double nc = fmax(1, p->n_c), nr = fmax(1, p->n_r);
        double e = hc / nc - hr / nr - 1 / (2 * beta);
        l = e * e;
        dc = 2 * e / nc;
        dr = -2 * e / nr;
    } else {
        double z = beta * (hc - hr), dz;   /* dz: dℓ/dz */
        switch (c->type) {
        case QW_DPO_HINGE:
            l = 1 - z > 0 ? 1 - z : 0;
            dz = 1 - z > 0 ? -1 : 0;
            break;
        case QW_DPO_ROBUST:
            /* −log σ(z) = softplus(−z); log σ(−z) = −softplus(z) */
            l = ((1 - eps) * softplus(-z) - eps * softplus(z)) / (1 - 2 * eps);
            dz = (-(1 - eps) * sigmoid(-z) - eps * sigmoid(z)) / (1 - 2 * eps);
            break;
        default:
            l = softplus(-z);
            dz = -sigmoid(-z);
            break;
        }
        dc = dz * beta;
        dr = -dz * beta;
    }
    double n = c->n_pairs > 0 ? c->n_pairs : 1;
    out->loss = l / n;
    out->d_lp_c = dc / n;
    out->d_lp_r = dr / n;
    out->reward_c = beta * hc;
    out->reward_r = beta * hr;
}
