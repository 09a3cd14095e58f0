/* qw-grpo — GRPO, the policy-gradient update of TRL's GRPOTrainer.
 * Offline: from a file of scored rollouts (qw-rollout(5) records with
 * qw-reward's `reward`).  Online (--online): each step samples completions
 * from the weights being trained (qw/policy.h), scores them with the
 * verifiers (qw/score.h: qw-reward's code) and makes the same update.  The
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
#include "qw/chat.h"
#include "qw/cli.h"
#include "qw/comm.h"
#include "qw/config.h"
#include "qw/file.h"
#include "qw/model.h"
#include "qw/params.h"
#include "qw/policy.h"
#include "qw/rl.h"
#include "qw/rollout.h"
#include "qw/score.h"
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
    cJSON *a = cJSON_GetObjectItemCaseSensitive(r, name), *x;
    if (!cJSON_IsArray(a)) qw_die(QW_EXIT_DATA, "%s: record %ld: no \"%s\" array", src, line, name);
    int k = cJSON_GetArraySize(a), i = 0;
    int32_t *v = qw_malloc((k ? k : 1) * sizeof *v);
    cJSON_ArrayForEach(x, a) {
        if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble))
            qw_die(QW_EXIT_DATA, "%s: record %ld: %s[%d] is not an integer", src, line, name, i);
        if (x->valuedouble < 0 || x->valuedouble >= V)
            qw_die(QW_EXIT_DATA, "%s: record %ld: %s[%d] = %.0f is outside the model's vocabulary (%d): another tokenizer?",
                   src, line, name, i, x->valuedouble, V);
        v[i++] = (int32_t)x->valuedouble;
    }
    *n = k;
    return v;
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

static int read_input(const char *path, qw_buf *in)
{
    if (strcmp(path, "-")) return qw_read_file(path, in, NULL);
    char tmp[65536];
    size_t k;
    while ((k = fread(tmp, 1, sizeof tmp, stdin)) > 0) qw_buf_add(in, tmp, k);
    if (ferror(stdin)) return qw_error(QW_EXIT_FAIL, "<stdin>: read error");
    return 0;
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
    if (read_input(path, &in)) qw_die_last();
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

/* ---- online: rollout → reward → update, step after step ---- */

static struct {
    const char *prompts, *verifier, *answer_field, *cmd, *sandbox, *python, *save, *thinking;
    int online, steps, per_step, max_new, top_k, max_batch, chat, max_procs;
    double top_p, timeout;
    long long memory, max_output;
} on = {.answer_field = "answer", .steps = 1, .max_new = 256, .top_p = 1, .max_batch = 64, .max_procs = 64,
        .timeout = -1, .memory = 1LL << 30, .max_output = 16 << 10};

typedef struct {
    const qw_prompt_rec *const *chunk;   /* this rank's prompts of the step */
    const qw_tok *tok;
    int G, j0;                            /* j0: the first one's number in the step */
    char **text;                          /* per prompt: its G records (qw-rollout(5)) */
} gen_ctx;

static int on_done(void *ctx, int prompt, const qw_completion *c)
{
    gen_ctx *x = ctx;
    qw_buf b = {0};
    const qw_prompt_rec *it = x->chunk[prompt];
    for (int j = 0; j < x->G; j++)
        if (qw_rollout_record(&b, x->j0 + prompt, j, it->prompt, it->ids.v, it->ids.n, x->tok, &c[j], it->rec)) return QW_EXIT_DATA;
    x->text[prompt] = (char *)qw_buf_cstr(&b);
    return 0;
}

static int on_gen_step(void *ctx, const qw_gen_stats *s)
{
    int sig = qw_signals_stop();
    return sig ? qw_signals_status(sig) : 0;
}

/* Score the rollouts of one step (lines of `in`) into `out` as qw-reward
 * writes them. */
static int score_step(const qw_scorer *sc, qw_coproc *cp, long step, const qw_buf *in, qw_buf *out)
{
    char where[200];
    long line = 0;
    double cmd_timeout = on.timeout > 0 ? on.timeout : 60;
    for (size_t at = 0; at < in->n;) {
        const char *s = in->p + at, *nl = memchr(s, '\n', in->n - at);
        size_t len = nl ? (size_t)(nl - s) : in->n - at;
        at += len + (nl != NULL);
        line++;
        snprintf(where, sizeof where, "step %ld: rollout record %ld", step, line);
        cJSON *rec = qw_chat_json_parse(s, len, where);
        if (!rec) return qw_error_status();
        const char *completion;
        qw_score score = {0};
        int rc = qw_scorer_check(sc, rec, where, &completion);
        if (!rc) rc = qw_score_local(sc, rec, completion, &score);
        if (!rc && cp) rc = qw_score_cmd(cp, s, len, cmd_timeout, where, &score);
        if (!rc) qw_score_format(sc, &score, rec, s, len, out);
        qw_score_free(&score);
        cJSON_Delete(rec);
        if (rc) return rc;
    }
    return 0;
}

static int run_online(void)
{
    if (!on.prompts) qw_usage_error("--online needs --prompts FILE");
    if (!on.verifier) qw_usage_error("--online needs --verifier");
    if (!g.G_opt) qw_usage_error("--online needs -G (completions per prompt)");
    if (on.steps < 1) qw_usage_error("--steps: need at least 1");
    if (on.per_step < 0) qw_usage_error("--prompts-per-step: need at least 1");
    if (on.max_new < 1) qw_usage_error("--max-new-tokens: need at least 1");
    if (on.top_k < 0) qw_usage_error("--top-k: need K >= 0");
    if (!(on.top_p > 0 && on.top_p <= 1)) qw_usage_error("--top-p: need 0 < P <= 1");
    if (on.max_batch < 1) qw_usage_error("--max-batch: need at least 1");
    if (on.thinking && strcmp(on.thinking, "on") && strcmp(on.thinking, "off")) qw_usage_error("--thinking: '%s' is not on or off", on.thinking);
    if (on.thinking && !on.chat) qw_usage_error("--thinking needs --chat");
    if (g.old_from_rollout) qw_usage_error("--old-from-rollout is for rollouts from a file (online, the sampler's log-probs are the policy's)");
    qw_scorer sc;
    if (qw_scorer_parse(on.verifier, &sc)) qw_usage_error("%s", qw_error_msg());
    sc.answer_field = on.answer_field;
    if (sc.uses[QW_VER_MODEL]) qw_usage_error("--verifier model: the reward model is not built yet");
    if (sc.uses[QW_VER_CMD] && !on.cmd) qw_usage_error("--verifier cmd needs --cmd \"PROG ARGS\"");
    if (on.cmd && !sc.uses[QW_VER_CMD]) qw_usage_error("--cmd is for --verifier cmd");
    if (!on.answer_field[0]) qw_usage_error("--answer-field: an empty name");
    if (on.timeout != -1 && !(on.timeout > 0 && isfinite(on.timeout))) qw_usage_error("--timeout: need S > 0");
    if (on.memory < (16LL << 20)) qw_usage_error("--memory: need at least 16M");
    qw_sandbox_mode want = 0;
    if (on.sandbox) {
        if (!strcmp(on.sandbox, "namespaces")) want = QW_SANDBOX_NAMESPACES;
        else if (!strcmp(on.sandbox, "rlimits")) want = QW_SANDBOX_RLIMITS;
        else if (strcmp(on.sandbox, "auto")) qw_usage_error("--sandbox: '%s' is not auto, namespaces or rlimits", on.sandbox);
    }
    if (on.timeout > 0) sc.sandbox.wall_s = sc.sandbox.cpu_s = on.timeout;
    sc.sandbox.mem_bytes = (size_t)on.memory;
    sc.sandbox.procs = on.max_procs;
    sc.sandbox.out_cap = (size_t)on.max_output;

    /* the tokenizer: --tokenizer, else the model directory's when it has one (as qw-rollout) */
    qw_config cfg;
    if (qw_config_load(g.o.model_dir, &cfg)) qw_die_last();
    qw_tok *tok = NULL;
    char *tok_path = qw_tok_path(g.o.tokenizer ? g.o.tokenizer : g.o.model_dir, NULL);
    FILE *probe = g.o.tokenizer ? NULL : fopen(tok_path, "r");
    if (g.o.tokenizer || probe) {
        if (probe) fclose(probe);
        if (qw_tok_load(tok_path, &tok)) qw_die_last();
        if (qw_tok_vocab_size(tok) > cfg.vocab_size)
            qw_die(QW_EXIT_DATA, "'%s': the tokenizer has %d tokens, more than the model's vocabulary (%d): not this model's tokenizer",
                   tok_path, qw_tok_vocab_size(tok), cfg.vocab_size);
    }
    if (!tok && on.chat) qw_usage_error("--chat needs a tokenizer: '%s' has none (give --tokenizer)", g.o.model_dir);

    /* the prompts, and the fields the verifiers need, before anything is written */
    const char *psrc = strcmp(on.prompts, "-") ? on.prompts : "<stdin>";
    qw_buf in = {0};
    if (read_input(on.prompts, &in)) qw_die_last();
    int max_context = cfg.max_position_embeddings;
    qw_prompt_opts po = {.src = psrc, .tok = tok, .chat = on.chat, .thinking_off = on.thinking && !strcmp(on.thinking, "off"),
                         .vocab_size = cfg.vocab_size, .max_context = max_context};
    qw_prompt_rec *P;
    long np;
    if (qw_prompts_read(&in, &po, &P, &np)) qw_die_last();
    qw_buf_free(&in);
    if (!np) qw_die(QW_EXIT_DATA, "%s: no prompts", psrc);
    for (long i = 0; i < np; i++) {   /* a rollout record holds the prompt record's fields, and a completion */
        char where[4200];
        snprintf(where, sizeof where, "'%s': line %ld", psrc, P[i].line + 1);
        cJSON *r = cJSON_Duplicate(P[i].rec, 1);
        if (!cJSON_GetObjectItemCaseSensitive(r, "completion")) cJSON_AddStringToObject(r, "completion", "");
        if (sc.uses[QW_VER_CODE] && !cJSON_GetObjectItemCaseSensitive(r, "prompt") && P[i].prompt)
            cJSON_AddStringToObject(r, "prompt", P[i].prompt);
        const char *c;
        if (qw_scorer_check(&sc, r, where, &c)) qw_die_last();
        cJSON_Delete(r);
    }
    int per = on.per_step ? on.per_step : (int)np;
    int G = g.G_opt;
    size_t longest = 1;
    for (long i = 0; i < np; i++) if (P[i].ids.n > longest) longest = P[i].ids.n;
    long long per_seq = (long long)longest + on.max_new;
    if (per_seq > max_context) per_seq = max_context;
    qw_ids stop_ids = {0};
    if (qw_rollout_eos_ids(g.o.model_dir, &cfg, &stop_ids)) qw_die_last();

    if (sc.uses[QW_VER_CODE]) {
        qw_sandbox_mode mode;
        if (qw_sandbox_probe(want, on.python, &mode)) qw_die_last();
        if (!qw_common_opts.quiet) fprintf(stderr, "%s: code runs in a sandbox: %s\n", qw_prog, qw_sandbox_mode_name(mode));
    }
    qw_afile save = {0};
    if (on.save && qw_afile_open(on.save, &save)) qw_die_last();
    qw_coproc *cp = NULL;
    if (sc.uses[QW_VER_CMD] && qw_coproc_start(on.cmd, &cp)) qw_die_last();

    g.o.steps = (long)on.steps * g.epochs;
    g.o.sched.total = g.o.steps;
    g.G = G;
    int rc = setup((int)per_seq, per * G);
    int size = rc ? 1 : qw_trainer_size(g.t), rank = rc ? 0 : qw_trainer_rank(g.t);
    if (!rc && size > 1 && on.save) rc = qw_error(QW_EXIT_USAGE, "--save-rollouts: one rank only for now");
    int j0 = (int)share(per, rank, size), j1 = (int)share(per, rank + 1, size);   /* this rank's prompts of a step */
    qw_policy *pol = NULL;
    qw_engine_opts eo = {.max_batch = on.max_batch, .max_context = (int)per_seq,
                         .cache_tokens = (long long)on.max_batch * (per_seq + 16)};
    if (!rc) rc = qw_policy_new(g.t, &eo, &pol);
    if (!rc && !qw_common_opts.quiet)
        qw_trainer_say(g.t, "online: %ld prompts, %d a step × %d completions, %d steps; engine cache %.1f MiB", np, per, G,
                       on.steps, qw_engine_cache_bytes(qw_policy_engine(pol)) / 1048576.0);
    const qw_prompt_rec **chunk = qw_malloc(per * sizeof *chunk);
    qw_gen_prompt *gp = qw_malloc(per * sizeof *gp);
    char **text = qw_calloc(per, sizeof *text);
    for (long s = 0; s < on.steps && !rc; s++) {
        for (int j = j0; j < j1; j++) {
            const qw_prompt_rec *it = &P[(s * per + j) % np];
            chunk[j - j0] = it;
            gp[j - j0] = (qw_gen_prompt){it->ids.v, (int)it->ids.n, (uint64_t)j};
        }
        qw_gen_opts go = {.n = G, .max_new_tokens = on.max_new, .temperature = g.temperature, .top_k = on.top_k,
                          .top_p = on.top_p, .seed = (uint64_t)qw_common_opts.seed + (uint64_t)s,
                          .stop_ids = stop_ids.v, .n_stop_ids = (int)stop_ids.n, .thinking_budget = -1, .tok = tok};
        gen_ctx gc = {chunk, tok, G, j0, text};
        double t0 = qw_now();
        if ((rc = qw_policy_generate(pol, gp, j1 - j0, &go, on_done, on_gen_step, &gc))) break;
        double t1 = qw_now();
        qw_buf roll = {0}, scored = {0};
        for (int j = 0; j < j1 - j0; j++) {
            qw_buf_adds(&roll, text[j]);
            free(text[j]);
            text[j] = NULL;
        }
        rc = score_step(&sc, cp, s + 1, &roll, &scored);
        double t2 = qw_now();
        if (!rc && save.f && fwrite(scored.p, 1, scored.n, save.f) != scored.n)
            rc = qw_error(QW_EXIT_FAIL, "write error on '%s'", on.save);
        if (!rc) {
            char name[64];
            snprintf(name, sizeof name, "step %ld's scored rollouts", s + 1);
            src = name;
            long n = 0;
            rec *R = scored.n ? read_records(&scored, g.V, 0, &n) : NULL;
            if (n) group_records(R, n);
            step_times st = {1, t1 - t0, t2 - t1};
            rc = update(R, n, (long)j0 * G, (long)per * G, G, &st);
            free_records(R, n);
        }
        qw_buf_free(&roll);
        qw_buf_free(&scored);
    }
    qw_policy_free(pol);
    teardown();
    qw_coproc_end(cp);
    if (save.f) {
        if (rc) qw_afile_abort(&save);
        else if (qw_afile_commit(&save)) rc = qw_error_status();
    }
    free(chunk), free(gp), free(text), free(tok_path);
    qw_ids_free(&stop_ids);
    qw_prompts_free(P, np);
    qw_tok_free(tok);
    return rc;
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
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Online (rollout, reward and update in one process):"},
        {"online", 0, QW_OPT_FLAG, &on.online, NULL, "generate from the policy being trained, score, update; repeat"},
        {"prompts", 'p', QW_OPT_STR, &on.prompts, "FILE", "prompt records (qw-rollout(5)'s input)"},
        {"steps", 0, QW_OPT_INT, &on.steps, "N", "generation steps (default 1)"},
        {"prompts-per-step", 0, QW_OPT_INT, &on.per_step, "P", "prompts a step, cycling through FILE (default: all)"},
        {"max-new-tokens", 0, QW_OPT_INT, &on.max_new, "M", "tokens per completion at most (default 256)"},
        {"top-k", 0, QW_OPT_INT, &on.top_k, "K", "sample from the K most likely tokens (default 0: all)"},
        {"top-p", 0, QW_OPT_DOUBLE, &on.top_p, "P", "nucleus: the most likely tokens of mass P (default 1: all)"},
        {"max-batch", 0, QW_OPT_INT, &on.max_batch, "N", "sequences decoded at once (default 64)"},
        {"chat", 0, QW_OPT_FLAG, &on.chat, NULL, "prompt records hold messages: render them with the chat template"},
        {"thinking", 0, QW_OPT_STR, &on.thinking, "on|off", "--chat: enable_thinking of the template (default on)"},
        {"verifier", 0, QW_OPT_STR, &on.verifier, "V", "math, think, code or cmd; several as NAME:WEIGHT,… (qw-reward(1))"},
        {"answer-field", 0, QW_OPT_STR, &on.answer_field, "NAME", "math: the field of the gold answer (default answer)"},
        {"cmd", 0, QW_OPT_STR, &on.cmd, "\"PROG ARGS\"", "cmd: the reward program (a coprocess, one JSON line in and out)"},
        {"timeout", 0, QW_OPT_DOUBLE, &on.timeout, "S", "code: seconds per program (default 10); cmd: per reply (default 60)"},
        {"memory", 0, QW_OPT_LONG, &on.memory, "BYTES", "code: address space per process (default 1G)"},
        {"max-procs", 0, QW_OPT_INT, &on.max_procs, "N", "code: processes a program may have at once (default 64)"},
        {"max-output", 0, QW_OPT_LONG, &on.max_output, "BYTES", "code: output kept per program (default 16k)"},
        {"sandbox", 0, QW_OPT_STR, &on.sandbox, "auto|namespaces|rlimits", "code: the isolation (default auto)"},
        {"python", 0, QW_OPT_STR, &on.python, "FILE", "code: the interpreter (default /usr/bin/python3)"},
        {"save-rollouts", 0, QW_OPT_STR, &on.save, "FILE", "every step's scored rollouts (qw-reward(5) records), atomically"},
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
