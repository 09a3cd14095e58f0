/* qw-grpo — offline GRPO: the policy-gradient update of TRL's GRPOTrainer
 * from a file of scored rollouts (qw-rollout(5) records with qw-reward's
 * `reward`).  The objective is qw/rl.h's; the model, optimizer, checkpoint
 * and metrics are the trainer's (qw/trainer.h); this program reads and
 * checks the records, builds the rows (prompt + completion, targets on the
 * completion up to its first EOS) and drives the split forward/backward:
 * one optimizer step per pass (--epochs μ) over all the completions. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "qw/backend.h"
#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/config.h"
#include "qw/file.h"
#include "qw/model.h"
#include "qw/params.h"
#include "qw/rl.h"
#include "qw/rollout.h"
#include "qw/st.h"
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

int main(int argc, char **argv)
{
    qw_set_prog(argv[0]);
    static qw_train_opts o;
    qw_train_defaults(&o);
    /* TRL's GRPOConfig / TrainingArguments: lr 1e-6 constant, AdamW (0.9, 0.999, 1e-8), no weight decay, clip 1 */
    o.sched.lr = 1e-6;
    o.sched.kind = QW_SCHED_CONSTANT;
    o.sched.min_lr_ratio = 1;
    o.adamw.beta2 = 0.999;
    o.adamw.weight_decay = 0;
    static const char *loss_type = "dapo", *scale = "group", *precision, *ref_dir, *dump;
    static int G_opt, epochs = 1, mask_truncated, old_from_rollout, deterministic, max_len;
    static long long mbt = 8192;
    static double beta = 0, eps_low = 0.2, eps_high = -1, delta = 0, temperature = 1;
    static const qw_opt table[] = {
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Model and data:"},
        {"model", 'm', QW_OPT_STR, &o.model_dir, "DIR", "the policy: the checkpoint the rollouts were sampled from"},
        {"out", 'o', QW_OPT_STR, &o.out, "DIR", "the updated model: DIR/step-NNNNNN/ and DIR/latest"},
        {"ref", 0, QW_OPT_STR, &ref_dir, "DIR", "reference model of the KL term (default: --model; read only with --beta > 0)"},
        {"tokenizer", 't', QW_OPT_STR, &o.tokenizer, "FILE", "tokenizer.json to record in the checkpoint"},
        {"num-generations", 'G', QW_OPT_INT, &G_opt, "G", "completions per prompt (default: the number per idx found)"},
        {"mask-truncated", 0, QW_OPT_FLAG, &mask_truncated, NULL, "no loss on completions without EOS (finish_reason length)"},
        {"temperature", 0, QW_OPT_DOUBLE, &temperature, "T", "the sampling temperature (only 1 for now)"},
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Objective:"},
        {"loss-type", 0, QW_OPT_STR, &loss_type, "TYPE", "grpo, bnpo, dr_grpo or dapo (default dapo)"},
        {"scale-rewards", 0, QW_OPT_STR, &scale, "HOW", "advantage scaling: group, batch or none (default group)"},
        {"beta", 0, QW_OPT_DOUBLE, &beta, "X", "KL coefficient (default 0: no reference model)"},
        {"epsilon", 0, QW_OPT_DOUBLE, &eps_low, "X", "clip the ratio below at 1 - X (default 0.2)"},
        {"epsilon-high", 0, QW_OPT_DOUBLE, &eps_high, "X", "clip the ratio above at 1 + X (default: --epsilon)"},
        {"delta", 0, QW_OPT_DOUBLE, &delta, "X", "cap the unclipped ratio at X (two-sided clipping; default 0: off)"},
        {"max-completion-length", 0, QW_OPT_INT, &max_len, "L", "dr_grpo's normaliser (default: the longest completion)"},
        {"epochs", 0, QW_OPT_INT, &epochs, "MU", "optimizer steps over the same completions (default 1)"},
        {"old-from-rollout", 0, QW_OPT_FLAG, &old_from_rollout, NULL, "old log-probs from the records' logprobs"},
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Optimisation:"},
        {"lr", 0, QW_OPT_DOUBLE, &o.sched.lr, "X", "learning rate, constant (default 1e-6)"},
        {"weight-decay", 0, QW_OPT_DOUBLE, &o.adamw.weight_decay, "X", "AdamW weight decay (default 0)"},
        {"beta1", 0, QW_OPT_DOUBLE, &o.adamw.beta1, "X", "AdamW beta1 (default 0.9)"},
        {"beta2", 0, QW_OPT_DOUBLE, &o.adamw.beta2, "X", "AdamW beta2 (default 0.999)"},
        {"clip", 0, QW_OPT_DOUBLE, &o.clip, "X", "clip the global gradient norm at X (default 1.0; 0: off)"},
        {"micro-batch-tokens", 0, QW_OPT_LONG, &mbt, "N", "token positions per forward/backward (default 8192)"},
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Output:"},
        {"log", 0, QW_OPT_STR, &o.log, "FILE", "metrics as JSONL, one object per step"},
        {"tensorboard", 0, QW_OPT_STR, &o.tb_dir, "DIR", "TensorBoard event file in DIR"},
        {"dump-grads", 0, QW_OPT_STR, &dump, "FILE", "the first step's gradient as safetensors (grad.NAME), for checks"},
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Compute:"},
        {"precision", 0, QW_OPT_STR, &precision, "fp32|bf16", "activation precision (default: bf16 on cuda, fp32 on cpu)"},
        {"deterministic", 0, QW_OPT_FLAG, &deterministic, NULL, "bit-identical results run to run"},
        QW_COMMON_OPTS,
        {0},
    };
    const qw_prog_info info = {
        "qw-grpo", "--model DIR --out DIR [options] [ROLLOUTS.jsonl]",
        "One GRPO update (TRL's GRPOTrainer) from scored rollouts (qw-rollout | qw-reward; stdin without a file):\n"
        "group-normalised advantages of `reward` per idx, the clipped surrogate on the completion tokens up to\n"
        "EOS, --epochs optimizer steps; writes the updated model and metrics.",
        table};
    if (argc == 1) {
        qw_print_help(&info, stderr);
        return QW_EXIT_USAGE;
    }
    int first = qw_parse_args(&info, argc, argv);
    if (argc - first > 1) qw_usage_error("unexpected argument '%s'", argv[first + 1]);
    const char *path = first < argc ? argv[first] : "-";
    src = strcmp(path, "-") ? path : "<stdin>";
    if (!o.model_dir) qw_usage_error("give --model");
    if (!o.out) qw_usage_error("give --out");
    qw_grpo_cfg cfg = {0};
    if (!strcmp(loss_type, "grpo")) cfg.loss_type = QW_GRPO_LOSS_GRPO;
    else if (!strcmp(loss_type, "bnpo")) cfg.loss_type = QW_GRPO_LOSS_BNPO;
    else if (!strcmp(loss_type, "dr_grpo")) cfg.loss_type = QW_GRPO_LOSS_DR_GRPO;
    else if (!strcmp(loss_type, "dapo")) cfg.loss_type = QW_GRPO_LOSS_DAPO;
    else qw_usage_error("--loss-type: '%s' is not grpo, bnpo, dr_grpo or dapo", loss_type);
    qw_scale_rewards sc;
    if (!strcmp(scale, "group")) sc = QW_SCALE_GROUP;
    else if (!strcmp(scale, "batch")) sc = QW_SCALE_BATCH;
    else if (!strcmp(scale, "none")) sc = QW_SCALE_NONE;
    else qw_usage_error("--scale-rewards: '%s' is not group, batch or none", scale);
    if (temperature != 1)
        qw_usage_error("--temperature %g: only 1 for now (the training forward has no temperature; sample at 1)", temperature);
    if (epochs < 1) qw_usage_error("--epochs must be at least 1");
    if (G_opt < 0) qw_usage_error("--num-generations must be at least 1");
    if (eps_low < 0 || eps_low >= 1) qw_usage_error("--epsilon must be in [0, 1)");
    if (eps_high < 0) eps_high = eps_low;
    if (beta < 0 || delta < 0) qw_usage_error("--beta and --delta must be at least 0");
    if (mbt < 1) qw_usage_error("--micro-batch-tokens must be at least 1");
    cfg.eps_low = eps_low, cfg.eps_high = eps_high, cfg.delta = delta, cfg.beta = beta;
    o.steps = epochs;
    o.sched.total = epochs;
    o.seed = (uint64_t)qw_common_opts.seed;
    o.quiet = qw_common_opts.quiet;
    if (qw_sched_check(&o.sched)) qw_die_last();

    /* read and check everything before anything is written */
    qw_config mc;
    if (qw_config_load(o.model_dir, &mc)) qw_die_last();
    int V = mc.vocab_size;
    qw_buf in = {0};
    if (strcmp(path, "-")) {
        if (qw_read_file(path, &in, NULL)) qw_die_last();
    } else {
        char tmp[65536];
        size_t k;
        while ((k = fread(tmp, 1, sizeof tmp, stdin)) > 0) qw_buf_add(&in, tmp, k);
        if (ferror(stdin)) qw_die(QW_EXIT_FAIL, "<stdin>: read error");
    }
    long n;
    rec *R = read_records(&in, V, old_from_rollout, &n);
    qw_buf_free(&in);
    qsort(R, n, sizeof *R, cmp_rec);
    long gs = 0;
    while (gs < n && R[gs].idx == R[0].idx) gs++;
    int G = G_opt ? G_opt : (int)gs;
    for (long s = 0; s < n;) {
        long e = s;
        while (e < n && R[e].idx == R[s].idx) e++;
        if (e - s != G)
            qw_die(QW_EXIT_DATA, "%s: record %ld: idx %ld has %ld completions, expected %d (groups must be of equal size)",
                   src, R[s].line, R[s].idx, e - s, G);
        s = e;
    }
    if (beta > 0 && ref_dir) {   /* the reference's vocabulary, before anything is written */
        qw_config rc0;
        if (qw_config_load(ref_dir, &rc0)) qw_die_last();
        if (rc0.vocab_size != V)
            qw_die(QW_EXIT_DATA, "'%s': vocabulary %d, the policy's is %d (another model?)", ref_dir, rc0.vocab_size, V);
    }
    qw_ids eos = {0};
    if (qw_rollout_eos_ids(o.model_dir, &mc, &eos)) qw_die_last();
    int T = 2, maxc = 0;
    long long ntok = 0;
    for (long i = 0; i < n; i++) {
        if (R[i].np + R[i].nc > T) T = R[i].np + R[i].nc;
        if (R[i].nc > maxc) maxc = R[i].nc;
        ntok += R[i].nc;
    }
    cfg.max_completion_length = max_len > 0 ? max_len : maxc;

    /* advantages and masks (fixed over the epochs) */
    double *rw = qw_malloc(n * sizeof *rw);
    float *adv = qw_malloc(n * sizeof *adv);
    for (long i = 0; i < n; i++) rw[i] = R[i].reward;
    qw_grpo_reward_stats rs;
    qw_grpo_advantages(rw, (int)n, G, sc, 1e-4, adv, &rs);
    int64_t *off = qw_malloc((n + 1) * sizeof *off);   /* completion token offsets into the flat arrays */
    off[0] = 0;
    for (long i = 0; i < n; i++) off[i + 1] = off[i] + R[i].nc;
    uint8_t *mask = qw_malloc(ntok ? ntok : 1);
    double step_tokens = 0, len_sum = 0;
    for (long i = 0; i < n; i++) {
        step_tokens += qw_grpo_mask(R[i].ids + R[i].np, R[i].nc, eos.v, (int)eos.n, mask_truncated, mask + off[i]);
        len_sum += R[i].nc;
    }
    cfg.step_tokens = step_tokens;

    o.seq_len = T;
    o.batch_tokens = (long long)n * T;
    qw_backend_share_gpus(0);
    if (qw_backend_select(qw_common_opts.device, precision, qw_common_opts.threads, deterministic, &o.ops)) qw_die_last();
    qw_trainer *t;
    int rc = qw_trainer_open(&o, &t);
    if (!rc && qw_trainer_size(t) > 1) rc = qw_error(QW_EXIT_USAGE, "one MPI rank only for now");
    if (!rc && qw_trainer_params(t)->cfg.vocab_size != V) rc = qw_error(QW_EXIT_DATA, "'%s': the vocabulary changed", o.model_dir);
    int B = (int)(mbt / T);
    if (B < 1) B = 1;
    if (B > n) B = (int)n;
    int n_micro = (int)((n + B - 1) / B);
    cfg.n_micro = n_micro;
    qw_trainer_batch tb = {qw_trainer_identity(t), T, (long long)n * T, B, n_micro, NULL, NULL};
    if (!rc) rc = qw_trainer_begin(t, &tb);
    if (rc) return qw_trainer_close(t, rc);

    size_t BT = (size_t)B * T;
    int32_t *ids = qw_malloc(BT * sizeof *ids), *tg = qw_malloc(BT * sizeof *tg);
    float *logp = qw_malloc(BT * sizeof *logp), *coefBT = qw_malloc(BT * sizeof *coefBT);
    float *lp = qw_malloc((ntok ? ntok : 1) * sizeof *lp), *coef = qw_malloc((ntok ? ntok : 1) * sizeof *coef);
    float *old = NULL, *ref = NULL;
    if (old_from_rollout) {
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
    if (beta > 0) {   /* reference log-probs, once */
        qw_frozen *rm;
        if (qw_frozen_open(ref_dir ? ref_dir : o.model_dir, o.ops, V, B, T, &rm)) return qw_trainer_close(t, qw_error_status());
        ref = qw_malloc((ntok ? ntok : 1) * sizeof *ref);
        for (int m = 0; m < n_micro; m++) {
            FILL(m);
            qw_batch b = {.ids = ids, .targets = tg};
            if (qw_frozen_forward(rm, &b, logp)) return qw_trainer_close(t, qw_error_status());
            for (int r = 0; r < B && (long)m * B + r < n; r++) {
                const rec *x = &R[(long)m * B + r];
                memcpy(ref + off[(long)m * B + r], logp + (size_t)r * T + x->np - 1, x->nc * sizeof *ref);
            }
        }
        qw_frozen_free(rm);
    }

    long long tokens = 0;
    for (long step = 0; step < epochs && !rc; step++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        qw_trainer_zero_grad(t);
        double sums[6] = {0};   /* loss, kl, clip low, clip high, ratio, tokens */
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
            for (size_t k = 0; k < BT; k++) coefBT[k] = 0;
            for (int r = 0; r < S; r++) {
                const rec *x = &R[s0 + r];
                memcpy(coefBT + (size_t)r * T + x->np - 1, coef + off[s0 + r], x->nc * sizeof *coef);
            }
            rc = qw_trainer_backward(t, coefBT);
        }
        if (rc || (rc = qw_trainer_reduce(t, sums, 6))) break;
        if (step == 0 && dump && (rc = qw_trainer_dump_grads(t, dump))) break;
        double norm, lr;
        qw_trainer_update(t, step, &norm, &lr);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        tokens += (long long)step_tokens;
        double tk = sums[5] > 0 ? sums[5] : 1;
        qw_metric mt[24];
        int k = 0;
        mt[k++] = (qw_metric){"loss", sums[0]};
        mt[k++] = (qw_metric){"lr", lr};
        mt[k++] = (qw_metric){"grad_norm", norm};
        mt[k++] = (qw_metric){"tokens", (double)tokens};
        mt[k++] = (qw_metric){"tok_per_s", n * (double)T / ((t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec))};
        mt[k++] = (qw_metric){"reward_mean", rs.reward_mean};
        mt[k++] = (qw_metric){"reward_std", rs.reward_std};
        mt[k++] = (qw_metric){"frac_reward_zero_std", rs.frac_zero_std};
        mt[k++] = (qw_metric){"completion_length", len_sum / n};
        mt[k++] = (qw_metric){"completion_tokens", step_tokens};
        if (ref) mt[k++] = (qw_metric){"kl", sums[1] / tk};
        mt[k++] = (qw_metric){"clip_ratio_low", sums[2] / tk};
        mt[k++] = (qw_metric){"clip_ratio_high", sums[3] / tk};
        mt[k++] = (qw_metric){"clip_ratio", (sums[2] + sums[3]) / tk};
        if (step == 0 && R[0].logprobs) {   /* the training forward against the sampler, before any update */
            float *q = qw_malloc((step_tokens ? (size_t)step_tokens : 1) * sizeof *q);
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
        if ((rc = qw_trainer_log(t, step + 1, mt, k))) break;
        qw_trainer_say(t, "step %ld/%d: loss %.6g  grad_norm %.4g  reward %.4g ± %.4g  clip %.4g", step + 1, epochs,
                       sums[0], norm, rs.reward_mean, rs.reward_std, (sums[2] + sums[3]) / tk);
        if (step == 0 && !old && epochs > 1) {   /* the old policy of the later passes: this pass's forward */
            old = qw_malloc((ntok ? ntok : 1) * sizeof *old);
            memcpy(old, lp, (ntok ? ntok : 1) * sizeof *old);
        }
        rc = qw_trainer_end_step(t, step + 1, tokens);
    }
    #undef FILL
    free(ids), free(tg), free(logp), free(coefBT), free(lp), free(coef), free(old), free(ref);
    free(rw), free(adv), free(off), free(mask), free(eos.v);
    for (long i = 0; i < n; i++) free(R[i].ids), free(R[i].logprobs);
    free(R);
    rc = qw_trainer_close(t, rc);
    if (rc) qw_die_last();
    qw_close_stdout();
    return 0;
}
