/* qw-grpo — GRPO, the policy-gradient update of TRL's GRPOTrainer.
 * Offline: from a file of scored rollouts (qw-rollout(5) records with
 * qw-reward's `reward`).  Online (--online): each step samples completions
 * from the weights being trained and scores them with the verifiers
 * (qw/online.h, shared with qw-dpo --online) and makes the same update.  The
 * objective is qw/rl.h's; the model, optimizer, checkpoint and metrics are
 * the trainer's (qw/trainer.h); this program reads and checks the
 * records, builds the rows (prompt + completion, targets on the completion
 * up to its first EOS), splits whole groups over the MPI ranks and drives
 * the split forward/backward: one optimizer step per pass (--epochs μ)
 * over a batch's completions.  Offline and online records go through the
 * same read_records → update. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "qw/backend.h"
#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/comm.h"
#include "qw/config.h"
#include "qw/file.h"
#include "qw/json.h"
#include "qw/model.h"
#include "qw/online.h"
#include "qw/params.h"
#include "qw/policy.h"
#include "qw/rl.h"
#include "qw/rollout.h"
#include "qw/signals.h"
#include "qw/st.h"
#include "qw/tok.h"
#include "qw/tokenize.h"
#include "qw/trainer.h"

typedef struct {
    long line;        /* 1-based line of the input */
    long idx;
    double reward;    /* NaN: null (no value) */
    int32_t *ids;     /* prompt then completion */
    int np, nc;
    float *logprobs;  /* the rollout's, nc of them (NULL when absent) */
} rec;

static const char *src;   /* the input's name for messages */

static int cmp_rec(const void *a, const void *b)
{
    const rec *x = a, *y = b;
    if (x->idx != y->idx) return x->idx < y->idx ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

static int32_t *int_array(cJSON *r, const char *name, long line, int V, int *n)
{
    char where[300];
    snprintf(where, sizeof where, "%s: record %ld", src, line);
    qw_ids v = {0};
    if (qw_json_ids(cJSON_GetObjectItemCaseSensitive(r, name), name, where, V, 0, &v)) qw_die_last();
    *n = (int)v.n;
    return v.v;
}

static rec *read_records(const qw_buf *b, int V, int need_logprobs, long *n_out)
{
    rec *v = NULL;
    long n = 0, cap = 0, line = 0;
    const char *p = b->p, *end = b->p + b->n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        line++;
        const char *s = p;
        p = nl ? nl + 1 : end;
        while (s < e && (*s == ' ' || *s == '\t' || *s == '\r')) s++;
        if (s == e) continue;
        cJSON *r = cJSON_ParseWithLength(s, (size_t)(e - s));
        if (!cJSON_IsObject(r)) qw_die(QW_EXIT_DATA, "%s: record %ld: not a JSON object", src, line);
        if (n == cap) v = qw_realloc(v, (cap = cap ? 2 * cap : 64) * sizeof *v);
        rec *x = &v[n++];
        x->line = line;
        cJSON *f = cJSON_GetObjectItemCaseSensitive(r, "idx");
        if (!cJSON_IsNumber(f)) qw_die(QW_EXIT_DATA, "%s: record %ld: no numeric \"idx\"", src, line);
        x->idx = (long)f->valuedouble;
        f = cJSON_GetObjectItemCaseSensitive(r, "reward");
        if (cJSON_IsNull(f)) x->reward = NAN;
        else if (cJSON_IsNumber(f)) x->reward = f->valuedouble;
        else qw_die(QW_EXIT_DATA, "%s: record %ld: no numeric \"reward\" (score the rollouts with qw-reward)", src, line);
        int np, nc;
        int32_t *pi = int_array(r, "prompt_ids", line, V, &np), *ci = int_array(r, "completion_ids", line, V, &nc);
        if (np < 1) qw_die(QW_EXIT_DATA, "%s: record %ld: empty \"prompt_ids\"", src, line);
        x->ids = qw_malloc((size_t)(np + nc) * sizeof *x->ids);
        memcpy(x->ids, pi, np * sizeof *pi);
        memcpy(x->ids + np, ci, nc * sizeof *ci);
        free(pi), free(ci);
        x->np = np, x->nc = nc;
        x->logprobs = NULL;
        f = cJSON_GetObjectItemCaseSensitive(r, "logprobs");
        if (f || need_logprobs) {
            if (!cJSON_IsArray(f) || cJSON_GetArraySize(f) != nc)
                qw_die(QW_EXIT_DATA, "%s: record %ld: \"logprobs\" is not an array of %d numbers (one per completion token)",
                       src, line, nc);
            x->logprobs = qw_malloc((nc ? nc : 1) * sizeof *x->logprobs);
            cJSON *y;
            int i = 0;
            cJSON_ArrayForEach(y, f) {
                if (!cJSON_IsNumber(y) || !isfinite(y->valuedouble))
                    qw_die(QW_EXIT_DATA, "%s: record %ld: logprobs[%d] is not a finite number", src, line, i);
                x->logprobs[i++] = (float)y->valuedouble;
            }
        }
        cJSON_Delete(r);
    }
    if (!n) qw_die(QW_EXIT_DATA, "%s: no records", src);
    *n_out = n;
    return v;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The q-quantile of sorted v[0..n) by linear interpolation (numpy's default). */
static double quantile(const float *v, long n, double q)
{
    double h = q * (n - 1);
    long i = (long)floor(h);
    if (i >= n - 1) return v[n - 1];
    return v[i] + (h - i) * (v[i + 1] - v[i]);
}

/* ---- the update: records → rows → μ optimizer steps (offline and online alike) ---- */

static struct {
    qw_train_opts o;
    qw_grpo_cfg cfg;
    qw_scale_rewards scale;
    int epochs, mask_truncated, old_from_rollout, max_len, G_opt;
    long long mbt;            /* --micro-batch-tokens */
    double temperature;
    const char *ref_dir, *dump;
    /* runtime */
    qw_trainer *t;
    qw_frozen *rm;            /* the reference model (beta > 0), B × T like the trainer's */
    int V, T, B, n_rows, n_micro;
    qw_ids eos;
    int G;                    /* completions per prompt */
    long step;                /* optimizer steps done */
    long long tokens;
} g;

/* Times of one generation step (online), logged with its updates. */
typedef struct {
    int online;
    double gen_s, reward_s;
} step_times;

/* Sort the records by idx and check that the groups have G each (G: -G,
 * else the size of the first group); returns G. */
static int group_records(rec *R, long n)
{
    qsort(R, n, sizeof *R, cmp_rec);
    long gs = 0;
    while (gs < n && R[gs].idx == R[0].idx) gs++;
    int G = g.G_opt ? g.G_opt : (int)gs;
    for (long s = 0; s < n;) {
        long e = s;
        while (e < n && R[e].idx == R[s].idx) e++;
        if (e - s != G)
            qw_die(QW_EXIT_DATA, "%s: record %ld: idx %ld has %ld completions, expected %d (groups must be of equal size)",
                   src, R[s].line, R[s].idx, e - s, G);
        s = e;
    }
    return G;
}

static void free_records(rec *R, long n)
{
    for (long i = 0; i < n; i++) free(R[i].ids), free(R[i].logprobs);
    free(R);
}

/* The first group of rank r's share of ng groups (whole groups per rank). */
static long share(long ng, int r, int size) { return ng * r / size; }

/* μ (--epochs) optimizer steps on one batch of n_glob grouped records (G
 * per group) of which this rank holds rows lo … lo+n−1 in R (rows of at
 * most g.T tokens, n ≤ g.n_rows).  The batch's rewards, completion lengths
 * and masked counts are summed over the ranks first, so advantages,
 * reward statistics and the loss's normalisers (dapo's token count,
 * dr_grpo's length, the micro-batches of the step) are the global batch's
 * on every rank. */
static int update(rec *R, long n, long lo, long n_glob, int G, const step_times *st)
{
    qw_trainer *t = g.t;
    qw_grpo_cfg cfg = g.cfg;
    int T = g.T, B = g.B, size = qw_trainer_size(t), rank = qw_trainer_rank(t);
    long long ntok = 0;
    for (long i = 0; i < n; i++) ntok += R[i].nc;
    int64_t *off = qw_malloc((n + 1) * sizeof *off);   /* completion token offsets into the flat arrays */
    off[0] = 0;
    for (long i = 0; i < n; i++) off[i + 1] = off[i] + R[i].nc;
    uint8_t *mask = qw_malloc(ntok ? ntok : 1);
    double *glob = qw_calloc(3 * n_glob, sizeof *glob);   /* reward, length, masked tokens of every record */
    for (long i = 0; i < n; i++) {
        glob[lo + i] = R[i].reward;
        glob[n_glob + lo + i] = R[i].nc;
        glob[2 * n_glob + lo + i] =
            qw_grpo_mask(R[i].ids + R[i].np, R[i].nc, g.eos.v, (int)g.eos.n, g.mask_truncated, mask + off[i]);
    }
    int rc = size > 1 ? qw_trainer_allreduce(t, glob, (int)(3 * n_glob)) : 0;
    int maxc = 0;
    double step_tokens = 0, len_sum = 0;
    for (long i = 0; i < n_glob; i++) {
        if (glob[n_glob + i] > maxc) maxc = (int)glob[n_glob + i];
        len_sum += glob[n_glob + i];
        step_tokens += glob[2 * n_glob + i];
    }
    cfg.max_completion_length = g.max_len > 0 ? g.max_len : maxc;
    cfg.step_tokens = step_tokens;
    int n_micro = (int)((n + B - 1) / B);
    cfg.n_micro = 0;
    for (int r = 0; r < size; r++) {
        long rows = (share(n_glob / G, r + 1, size) - share(n_glob / G, r, size)) * G;
        cfg.n_micro += (int)((rows + B - 1) / B);
    }

    /* advantages (fixed over the epochs), of the whole batch */
    float *adv_glob = qw_malloc((n_glob ? n_glob : 1) * sizeof *adv_glob);
    qw_grpo_reward_stats rs;
    qw_grpo_advantages(glob, (int)n_glob, G, g.scale, 1e-4, adv_glob, &rs);
    float *adv = adv_glob + lo;

    size_t BT = (size_t)B * T;
    int32_t *ids = qw_malloc(BT * sizeof *ids), *tg = qw_malloc(BT * sizeof *tg);
    float *logp = qw_malloc(BT * sizeof *logp), *coefBT = qw_malloc(BT * sizeof *coefBT);
    float *lp = qw_malloc((ntok ? ntok : 1) * sizeof *lp), *coef = qw_malloc((ntok ? ntok : 1) * sizeof *coef);
    float *old = NULL, *ref = NULL;
    if (g.old_from_rollout) {
        old = qw_malloc((ntok ? ntok : 1) * sizeof *old);
        for (long i = 0; i < n; i++) memcpy(old + off[i], R[i].logprobs, R[i].nc * sizeof *old);
    }
    /* the rows of micro-batch m: completions m·B … ; padding rows and positions have no target */
    #define FILL(m)                                                                          \
        do {                                                                                 \
            for (size_t k = 0; k < BT; k++) ids[k] = 0, tg[k] = -1;                          \
            for (int r = 0; r < B && (long)(m) * B + r < n; r++) {                           \
                const rec *x = &R[(long)(m) * B + r];                                        \
                memcpy(ids + (size_t)r * T, x->ids, (size_t)(x->np + x->nc) * sizeof *ids);  \
                for (int k = 0; k < x->nc; k++) tg[(size_t)r * T + x->np - 1 + k] = x->ids[x->np + k]; \
            }                                                                                \
        } while (0)
    if (g.rm) {   /* reference log-probs, once per batch */
        ref = qw_malloc((ntok ? ntok : 1) * sizeof *ref);
        for (int m = 0; m < n_micro && !rc; m++) {
            FILL(m);
            qw_batch b = {.ids = ids, .targets = tg};
            if ((rc = qw_frozen_forward(g.rm, &b, logp))) break;
            for (int r = 0; r < B && (long)m * B + r < n; r++) {
                const rec *x = &R[(long)m * B + r];
                memcpy(ref + off[(long)m * B + r], logp + (size_t)r * T + x->np - 1, x->nc * sizeof *ref);
            }
        }
    }

    for (int e = 0; e < g.epochs && !rc; e++) {
        long step = g.step;
        double t0 = qw_now();
        qw_trainer_zero_grad(t);
        double sums[7] = {0};   /* loss, kl, clip low, clip high, ratio, tokens, −log p */
        for (int m = 0; m < n_micro && !rc; m++) {
            FILL(m);
            qw_batch b = {.ids = ids, .targets = tg};
            qw_model_out mo;
            if ((rc = qw_trainer_forward(t, &b, logp, &mo))) break;
            long s0 = (long)m * B;
            int S = (int)(n - s0 < B ? n - s0 : B);
            for (int r = 0; r < S; r++) {
                const rec *x = &R[s0 + r];
                memcpy(lp + off[s0 + r], logp + (size_t)r * T + x->np - 1, x->nc * sizeof *lp);
            }
            int64_t moff[B + 1];
            for (int r = 0; r <= S; r++) moff[r] = off[s0 + r] - off[s0];
            qw_grpo_batch gb = {S, moff, lp + off[s0], old ? old + off[s0] : NULL,
                                ref ? ref + off[s0] : NULL, adv + s0, mask + off[s0]};
            qw_grpo_out go;
            qw_grpo_loss(&cfg, &gb, coef + off[s0], &go);
            sums[0] += go.loss, sums[1] += go.kl_sum, sums[2] += go.clip_low_sum, sums[3] += go.clip_high_sum;
            sums[4] += go.ratio_sum, sums[5] += go.tokens;
            for (int r = 0; r < S; r++)
                for (int j = 0; j < R[s0 + r].nc; j++) if (mask[off[s0 + r] + j]) sums[6] -= lp[off[s0 + r] + j];
            for (size_t k = 0; k < BT; k++) coefBT[k] = 0;
            for (int r = 0; r < S; r++) {
                const rec *x = &R[s0 + r];
                memcpy(coefBT + (size_t)r * T + x->np - 1, coef + off[s0 + r], x->nc * sizeof *coef);
            }
            rc = qw_trainer_backward(t, coefBT);
        }
        if (rc || (rc = qw_trainer_reduce(t, sums, 7))) break;
        if (step == 0 && g.dump && rank == 0 && qw_trainer_dump_grads(t, g.dump)) qw_die_last();
        double norm, lr;
        qw_trainer_update(t, step, &norm, &lr);
        double train_s = qw_now() - t0;
        g.tokens += (long long)step_tokens;
        double tk = sums[5] > 0 ? sums[5] : 1;
        qw_metric mt[40];
        int k = 0;
        mt[k++] = (qw_metric){"loss", sums[0]};
        mt[k++] = (qw_metric){"lr", lr};
        mt[k++] = (qw_metric){"grad_norm", norm};
        mt[k++] = (qw_metric){"tokens", (double)g.tokens};
        mt[k++] = (qw_metric){"tok_per_s", n_glob * (double)T / (train_s > 0 ? train_s : 1e-9)};
        mt[k++] = (qw_metric){"reward_mean", rs.reward_mean};
        mt[k++] = (qw_metric){"reward_std", rs.reward_std};
        mt[k++] = (qw_metric){"frac_reward_zero_std", rs.frac_zero_std};
        mt[k++] = (qw_metric){"completion_length", len_sum / n_glob};
        mt[k++] = (qw_metric){"completion_length_max", maxc};
        mt[k++] = (qw_metric){"completion_tokens", step_tokens};
        if (ref) mt[k++] = (qw_metric){"kl", sums[1] / tk};
        mt[k++] = (qw_metric){"clip_ratio_low", sums[2] / tk};
        mt[k++] = (qw_metric){"clip_ratio_high", sums[3] / tk};
        mt[k++] = (qw_metric){"clip_ratio", (sums[2] + sums[3]) / tk};
        /* entropy, estimated: the mean of −log p over the sampled completion tokens */
        if (e == 0) mt[k++] = (qw_metric){"entropy", step_tokens > 0 ? sums[6] / step_tokens : 0};
        if (e == 0 && n && R[0].logprobs) {   /* the training forward against the sampler, before any update
                                                 (several ranks: rank 0's rows) */
            float *q = qw_malloc((ntok ? (size_t)ntok : 1) * sizeof *q);
            long nq = 0, out = 0;
            for (long i = 0; i < n; i++)
                for (int j = 0; R[i].logprobs && j < R[i].nc; j++)
                    if (mask[off[i] + j]) {
                        float rho = expf(lp[off[i] + j] - R[i].logprobs[j]);
                        out += rho < 0.9f || rho > 1.1f;
                        q[nq++] = rho;
                    }
            if (nq) {
                qsort(q, nq, sizeof *q, cmp_float);
                mt[k++] = (qw_metric){"rollout_ratio_min", q[0]};
                mt[k++] = (qw_metric){"rollout_ratio_p1", quantile(q, nq, 0.01)};
                mt[k++] = (qw_metric){"rollout_ratio_median", quantile(q, nq, 0.5)};
                mt[k++] = (qw_metric){"rollout_ratio_p99", quantile(q, nq, 0.99)};
                mt[k++] = (qw_metric){"rollout_ratio_max", q[nq - 1]};
                mt[k++] = (qw_metric){"rollout_ratio_frac_outside", (double)out / nq};
            }
            free(q);
        }
        if (st->online) {   /* the generation step's time split (with this update's training time) */
            double tr = train_s, all = st->gen_s + st->reward_s + tr;
            mt[k++] = (qw_metric){"gen_s", st->gen_s};
            mt[k++] = (qw_metric){"reward_s", st->reward_s};
            mt[k++] = (qw_metric){"train_s", tr};
            mt[k++] = (qw_metric){"gen_frac", all > 0 ? st->gen_s / all : 0};
            mt[k++] = (qw_metric){"reward_frac", all > 0 ? st->reward_s / all : 0};
            mt[k++] = (qw_metric){"train_frac", all > 0 ? tr / all : 0};
        } else {
            mt[k++] = (qw_metric){"train_s", train_s};
        }
        if ((rc = qw_trainer_log(t, step + 1, mt, k))) break;
        if (st->online)
            qw_trainer_say(t, "step %ld/%ld: loss %.6g  grad_norm %.4g  reward %.4g ± %.4g  clip %.4g  len %.1f  "
                           "gen %.2fs reward %.2fs train %.2fs", step + 1, g.o.steps, sums[0], norm, rs.reward_mean,
                           rs.reward_std, (sums[2] + sums[3]) / tk, len_sum / n_glob, st->gen_s, st->reward_s, train_s);
        else
            qw_trainer_say(t, "step %ld/%ld: loss %.6g  grad_norm %.4g  reward %.4g ± %.4g  clip %.4g", step + 1,
                           g.o.steps, sums[0], norm, rs.reward_mean, rs.reward_std, (sums[2] + sums[3]) / tk);
        if (e == 0 && !old && g.epochs > 1) {   /* the old policy of the later passes: this pass's forward */
            old = qw_malloc((ntok ? ntok : 1) * sizeof *old);
            memcpy(old, lp, (ntok ? ntok : 1) * sizeof *old);
        }
        g.step++;
        rc = qw_trainer_end_step(t, g.step, g.tokens);
    }
    #undef FILL
    free(ids), free(tg), free(logp), free(coefBT), free(lp), free(coef), free(old), free(ref);
    free(glob), free(adv_glob), free(off), free(mask);
    return rc;
}

/* Open the trainer (and the reference model) for batches of n_rows rows
 * of T tokens.  Nothing is written before this. */
static int setup(int T, int n_rows)
{
    g.o.seq_len = T;
    g.o.batch_tokens = (long long)n_rows * T;
    int rc = qw_trainer_open(&g.o, &g.t);
    qw_trainer *t = g.t;
    if (!rc && qw_trainer_params(t)->cfg.vocab_size != g.V) rc = qw_error(QW_EXIT_DATA, "'%s': the vocabulary changed", g.o.model_dir);
    if (rc) return rc;
    g.T = T, g.n_rows = n_rows;
    g.B = (int)(g.mbt / T);
    if (g.B < 1) g.B = 1;
    int size = qw_trainer_size(t), most = 0;   /* rows of the rank with the most */
    for (int r = 0; r < size; r++) {
        long rows = (share(n_rows / g.G, r + 1, size) - share(n_rows / g.G, r, size)) * g.G;
        if (rows > most) most = (int)rows;
    }
    if (g.B > most) g.B = most > 0 ? most : 1;
    g.n_micro = 0;
    for (int r = 0; r < size; r++) {
        long rows = (share(n_rows / g.G, r + 1, size) - share(n_rows / g.G, r, size)) * g.G;
        g.n_micro += (int)((rows + g.B - 1) / g.B);
    }
    qw_trainer_batch tb = {qw_trainer_identity(t), T, (long long)n_rows * T, g.B, g.n_micro, NULL, NULL, 1};
    if ((rc = qw_trainer_begin(t, &tb)) || (rc = qw_model_set_temperature(qw_trainer_model(t), g.temperature))) return rc;
    if (g.cfg.beta > 0) {
        const char *rd = g.ref_dir ? g.ref_dir : g.o.model_dir;
        if ((rc = qw_frozen_open(rd, g.o.ops, g.V, g.B, T, &g.rm)) ||
            (rc = qw_model_set_temperature(qw_frozen_model(g.rm), g.temperature)))
            return rc;
    }
    return 0;
}

static void teardown(void)
{
    qw_frozen_free(g.rm);
    g.rm = NULL;
}


/* ---- offline: one batch from a file ---- */

static int run_offline(const char *path)
{
    src = strcmp(path, "-") ? path : "<stdin>";
    qw_launch l;
    if (qw_launch_detect(&l)) qw_die_last();
    if (l.size > 1 && !strcmp(path, "-"))
        qw_usage_error("several ranks read the rollouts from a FILE (standard input reaches rank 0 only)");
    qw_buf in = {0};
    if (qw_read_input(path, &in)) qw_die_last();
    long n;
    rec *R = read_records(&in, g.V, g.old_from_rollout, &n);
    qw_buf_free(&in);
    int G = g.G = group_records(R, n);
    int T = 2;
    for (long i = 0; i < n; i++) if (R[i].np + R[i].nc > T) T = R[i].np + R[i].nc;
    g.o.steps = g.epochs;
    g.o.sched.total = g.epochs;
    int rc = setup(T, (int)n);
    step_times st = {0};
    if (!rc) {   /* this rank's groups */
        int size = qw_trainer_size(g.t), r = qw_trainer_rank(g.t);
        long lo = share(n / G, r, size) * G, hi = share(n / G, r + 1, size) * G;
        rc = update(R + lo, hi - lo, lo, n, G, &st);
    }
    teardown();
    free_records(R, n);
    return rc;
}

/* ---- online: rollout → reward → update, step after step (qw/online.h) ---- */

static qw_online_opts on = QW_ONLINE_DEFAULTS;

static int run_online(void)
{
    qw_online_check(&on);
    if (!g.G_opt) qw_usage_error("--online needs -G (completions per prompt)");
    if (g.old_from_rollout) qw_usage_error("--old-from-rollout is for rollouts from a file (online, the sampler's log-probs are the policy's)");
    qw_config cfg;
    if (qw_config_load(g.o.model_dir, &cfg)) qw_die_last();
    qw_online *ol;
    int rc = qw_online_open(&on, g.o.model_dir, g.o.tokenizer, cfg.vocab_size, cfg.max_position_embeddings, &ol);
    if (rc) qw_die_last();
    long np = qw_online_prompts(ol);
    int per = on.per_step ? on.per_step : (int)np;
    int G = g.G_opt;

    g.o.steps = (long)on.steps * g.epochs;
    g.o.sched.total = g.o.steps;
    g.G = G;
    rc = setup(qw_online_seq_len(ol), per * G);
    int size = rc ? 1 : qw_trainer_size(g.t), rank = rc ? 0 : qw_trainer_rank(g.t);
    if (!rc && size > 1 && on.save) rc = qw_error(QW_EXIT_USAGE, "--save-rollouts: one rank only for now");
    int j0 = (int)share(per, rank, size), j1 = (int)share(per, rank + 1, size);   /* this rank's prompts of a step */
    qw_policy *pol = NULL;
    qw_engine_opts eo = qw_online_engine_opts(ol);
    if (!rc) rc = qw_policy_new(g.t, &eo, &pol);
    if (!rc && !qw_common_opts.quiet)
        qw_trainer_say(g.t, "online: %ld prompts, %d a step × %d completions, %d steps; engine cache %.1f MiB", np, per, G,
                       on.steps, qw_engine_cache_bytes(qw_policy_engine(pol)) / 1048576.0);
    for (long s = 0; s < on.steps && !rc; s++) {
        qw_buf scored = {0};
        qw_online_times tm;
        rc = qw_online_step(ol, pol, s, per, j0, j1, G, g.temperature, &scored, &tm);
        if (!rc) {
            char name[64];
            snprintf(name, sizeof name, "step %ld's scored rollouts", s + 1);
            src = name;
            long n = 0;
            rec *R = scored.n ? read_records(&scored, g.V, 0, &n) : NULL;
            if (n) group_records(R, n);
            step_times st = {1, tm.gen_s, tm.reward_s};
            rc = update(R, n, (long)j0 * G, (long)per * G, G, &st);
            free_records(R, n);
        }
        qw_buf_free(&scored);
    }
    qw_policy_free(pol);
    teardown();
    return qw_online_close(ol, rc);
}

int main(int argc, char **argv)
{
    qw_set_prog(argv[0]);
    qw_train_opts *o = &g.o;
    qw_train_defaults(o);
    /* TRL's GRPOConfig / TrainingArguments: lr 1e-6 constant, AdamW (0.9, 0.999, 1e-8), no weight decay, clip 1 */
    o->sched.lr = 1e-6;
    o->sched.kind = QW_SCHED_CONSTANT;
    o->sched.min_lr_ratio = 1;
    o->adamw.beta2 = 0.999;
    o->adamw.weight_decay = 0;
    static const char *loss_type = "dapo", *scale = "group", *precision;
    static int deterministic;
    static long long mbt = 8192;
    static double beta = 0, eps_low = 0.2, eps_high = -1, delta = 0;
    g.epochs = 1, g.temperature = 1;
    static const qw_opt table[] = {
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Model and data:"},
        {"model", 'm', QW_OPT_STR, &g.o.model_dir, "DIR", "the policy: the checkpoint the rollouts were sampled from"},
        {"out", 'o', QW_OPT_STR, &g.o.out, "DIR", "the updated model: DIR/step-NNNNNN/ and DIR/latest"},
        {"ref", 0, QW_OPT_STR, &g.ref_dir, "DIR", "reference model of the KL term (default: --model; read only with --beta > 0)"},
        {"tokenizer", 't', QW_OPT_STR, &g.o.tokenizer, "FILE", "tokenizer.json (checkpoint; online: prompts and completions)"},
        {"num-generations", 'G', QW_OPT_INT, &g.G_opt, "G", "completions per prompt (default: the number per idx found)"},
        {"mask-truncated", 0, QW_OPT_FLAG, &g.mask_truncated, NULL, "no loss on completions without EOS (finish_reason length)"},
        {"temperature", 0, QW_OPT_DOUBLE, &g.temperature, "T", "sampling temperature: log-probs of logits/T (default 1)"},
        QW_ONLINE_OPTS(on),
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Objective:"},
        {"loss-type", 0, QW_OPT_STR, &loss_type, "TYPE", "grpo, bnpo, dr_grpo or dapo (default dapo)"},
        {"scale-rewards", 0, QW_OPT_STR, &scale, "HOW", "advantage scaling: group, batch or none (default group)"},
        {"beta", 0, QW_OPT_DOUBLE, &beta, "X", "KL coefficient (default 0: no reference model)"},
        {"epsilon", 0, QW_OPT_DOUBLE, &eps_low, "X", "clip the ratio below at 1 - X (default 0.2)"},
        {"epsilon-high", 0, QW_OPT_DOUBLE, &eps_high, "X", "clip the ratio above at 1 + X (default: --epsilon)"},
        {"delta", 0, QW_OPT_DOUBLE, &delta, "X", "cap the unclipped ratio at X (two-sided clipping; default 0: off)"},
        {"max-completion-length", 0, QW_OPT_INT, &g.max_len, "L", "dr_grpo's normaliser (default: the longest completion)"},
        {"epochs", 0, QW_OPT_INT, &g.epochs, "MU", "optimizer steps over the same completions (default 1)"},
        {"old-from-rollout", 0, QW_OPT_FLAG, &g.old_from_rollout, NULL, "old log-probs from the records' logprobs"},
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Optimisation:"},
        {"lr", 0, QW_OPT_DOUBLE, &g.o.sched.lr, "X", "learning rate, constant (default 1e-6)"},
        QW_TRAIN_ADAMW_OPTS(g.o),
        {"micro-batch-tokens", 0, QW_OPT_LONG, &mbt, "N", "token positions per forward/backward (default 8192)"},
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Output:"},
        {"log", 0, QW_OPT_STR, &g.o.log, "FILE", "metrics as JSONL, one object per step"},
        {"tensorboard", 0, QW_OPT_STR, &g.o.tb_dir, "DIR", "TensorBoard event file in DIR"},
        {"save-every", 0, QW_OPT_LONG, &g.o.save_every, "N", "a checkpoint every N steps (default: at the end)"},
        QW_TRAIN_DUMP_GRADS_OPT(g.dump),
        QW_TRAIN_COMPUTE_OPTS(precision, deterministic),
        QW_COMMON_OPTS,
        {0},
    };
    const qw_prog_info info = {
        "qw-grpo",
        "--model DIR --out DIR [options] [ROLLOUTS.jsonl]\n"
        "       qw-grpo --online --model DIR --out DIR --prompts FILE -G G --verifier V [--steps N] [--prompts-per-step P] [options]",
        "GRPO (TRL's GRPOTrainer).  Offline: one update from scored rollouts (qw-rollout | qw-reward; stdin without\n"
        "a file): group-normalised advantages of `reward` per idx, the clipped surrogate on the completion tokens up\n"
        "to EOS, --epochs optimizer steps.  Online: each step samples G completions of the next P prompts from the\n"
        "policy being trained (in memory), scores them with the verifiers and makes the same update.",
        table};
    if (argc == 1) {
        qw_print_help(&info, stderr);
        return QW_EXIT_USAGE;
    }
    int first = qw_parse_args(&info, argc, argv);
    if (argc - first > 1) qw_usage_error("unexpected argument '%s'", argv[first + 1]);
    if (on.online && first < argc) qw_usage_error("--online reads --prompts, not '%s'", argv[first]);
    if (!on.online && (on.prompts || on.verifier || on.save))
        qw_usage_error("--prompts, --verifier and --save-rollouts are for --online");
    if (!o->model_dir) qw_usage_error("give --model");
    if (!o->out) qw_usage_error("give --out");
    if (!strcmp(loss_type, "grpo")) g.cfg.loss_type = QW_GRPO_LOSS_GRPO;
    else if (!strcmp(loss_type, "bnpo")) g.cfg.loss_type = QW_GRPO_LOSS_BNPO;
    else if (!strcmp(loss_type, "dr_grpo")) g.cfg.loss_type = QW_GRPO_LOSS_DR_GRPO;
    else if (!strcmp(loss_type, "dapo")) g.cfg.loss_type = QW_GRPO_LOSS_DAPO;
    else qw_usage_error("--loss-type: '%s' is not grpo, bnpo, dr_grpo or dapo", loss_type);
    if (!strcmp(scale, "group")) g.scale = QW_SCALE_GROUP;
    else if (!strcmp(scale, "batch")) g.scale = QW_SCALE_BATCH;
    else if (!strcmp(scale, "none")) g.scale = QW_SCALE_NONE;
    else qw_usage_error("--scale-rewards: '%s' is not group, batch or none", scale);
    if (!(g.temperature > 0) || !isfinite(g.temperature)) qw_usage_error("--temperature: need a finite value > 0");
    if (g.epochs < 1) qw_usage_error("--epochs must be at least 1");
    if (g.G_opt < 0) qw_usage_error("--num-generations must be at least 1");
    if (eps_low < 0 || eps_low >= 1) qw_usage_error("--epsilon must be in [0, 1)");
    if (eps_high < 0) eps_high = eps_low;
    if (beta < 0 || delta < 0) qw_usage_error("--beta and --delta must be at least 0");
    if (mbt < 1) qw_usage_error("--micro-batch-tokens must be at least 1");
    if (o->save_every < 0) qw_usage_error("--save-every: need N >= 0");
    g.cfg.eps_low = eps_low, g.cfg.eps_high = eps_high, g.cfg.delta = delta, g.cfg.beta = beta;
    o->seed = (uint64_t)qw_common_opts.seed;
    o->quiet = qw_common_opts.quiet;
    g.mbt = mbt;
    o->sched.total = (long)g.epochs * (on.online && on.steps > 0 ? on.steps : 1);
    if (qw_sched_check(&o->sched)) qw_die_last();

    qw_config mc;
    if (qw_config_load(o->model_dir, &mc)) qw_die_last();
    g.V = mc.vocab_size;
    if (beta > 0 && g.ref_dir) {   /* the reference's vocabulary, before anything is written */
        qw_config rc0;
        if (qw_config_load(g.ref_dir, &rc0)) qw_die_last();
        if (rc0.vocab_size != g.V)
            qw_die(QW_EXIT_DATA, "'%s': vocabulary %d, the policy's is %d (another model?)", g.ref_dir, rc0.vocab_size, g.V);
    }
    if (qw_rollout_eos_ids(o->model_dir, &mc, &g.eos)) qw_die_last();
    qw_backend_share_gpus(0);
    if (qw_backend_select(qw_common_opts.device, precision, qw_common_opts.threads, deterministic, &o->ops)) qw_die_last();
    if (on.online) qw_signals_install();
    int rc = on.online ? run_online() : run_offline(first < argc ? argv[first] : "-");
    if (g.t) rc = qw_trainer_close(g.t, rc);
    free(g.eos.v);
    if (rc) qw_die_last();
    qw_close_stdout();
    return 0;
}
