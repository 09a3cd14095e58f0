/* qw-dpo — Direct Preference Optimization (TRL's DPOTrainer) on
 * preference pairs (qw/pref.h, qw-dpo(5)).  The objective is qw/rl.h's
 * qw_dpo_pair_loss; the model, optimizer, checkpoints and metrics are the
 * trainer's (qw/trainer.h); the reference model is a qw_frozen.  This
 * program reads and checks the pairs, builds two rows per pair (prompt +
 * chosen, prompt + rejected; targets on the completion), and per
 * micro-batch runs the forward, sums each side's completion log-probs,
 * turns the pair losses into per-token coefficients and runs the backward. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qw/backend.h"
#include "qw/ckpt.h"
#include "qw/cli.h"
#include "qw/config.h"
#include "qw/file.h"
#include "qw/json.h"
#include "qw/model.h"
#include "qw/online.h"
#include "qw/policy.h"
#include "qw/pref.h"
#include "qw/rl.h"
#include "qw/rng.h"
#include "qw/rollout.h"
#include "qw/tok.h"
#include "qw/tokenize.h"
#include "qw/trainer.h"

/* One row: prompt then completion, after truncation; the completion starts at c0. */
typedef struct {
    int32_t *ids;
    int len, c0;
    int scored;     /* completion tokens with a target: positions max(c0, 1) … len − 1 */
} row;

typedef struct {
    row side[2];    /* chosen, rejected */
    int has_ref;
    double ref[2];
    long line;      /* 1-based line of the input, for messages */
} pair;

enum { TRUNC_REFUSE, TRUNC_KEEP_START, TRUNC_KEEP_END };

static const char *src;   /* the input's name in messages */

/* The row prompt + completion cut to max_len (0: no limit) as `mode` says. */
static void make_row(const int32_t *p, int np, const int32_t *c, int nc, int max_len, int mode, long line,
                     const char *side, row *r)
{
    int n = np + nc, from = 0, to = n;
    if (max_len > 0 && n > max_len) {
        if (mode == TRUNC_REFUSE)
            qw_die(QW_EXIT_DATA, "'%s': line %ld: prompt + %s is %d tokens, over --max-length %d "
                   "(use --truncation keep-start or keep-end to cut it)", src, line, side, n, max_len);
        if (mode == TRUNC_KEEP_START) to = max_len;
        else from = n - max_len;
    }
    r->len = to - from;
    r->ids = qw_malloc((size_t)r->len * sizeof *r->ids);
    for (int i = from; i < to; i++) r->ids[i - from] = i < np ? p[i] : c[i - np];
    r->c0 = np - from > 0 ? np - from : 0;
    int first = r->c0 > 1 ? r->c0 : 1;
    r->scored = r->len - first > 0 ? r->len - first : 0;
    if (r->scored == 0)
        qw_die(QW_EXIT_DATA, "'%s': line %ld: no %s token is left to score (%s)", src, line, side,
               r->c0 >= r->len ? "the truncation left the completion empty" : "a one-token completion needs a prompt token before it");
}

static void write_ref(const char *path, const qw_pref_set *in, const pair *P, long n)
{
    qw_afile a;
    if (qw_afile_open(path, &a)) qw_die_last();
    for (long i = 0; i < n; i++) {
        const qw_pref_pair *q = &in->pairs[i];
        const int32_t *v[3] = {q->prompt, q->chosen, q->rejected};
        const int k[3] = {q->n_prompt, q->n_chosen, q->n_rejected};
        static const char *const key[3] = {"prompt_ids", "chosen_ids", "rejected_ids"};
        fputc('{', a.f);
        for (int j = 0; j < 3; j++) {
            fprintf(a.f, "%s\"%s\": [", j ? ", " : "", key[j]);
            for (int t = 0; t < k[j]; t++) fprintf(a.f, t ? ", %d" : "%d", v[j][t]);
            fputc(']', a.f);
        }
        fprintf(a.f, ", \"ref_chosen_logp\": %.17g, \"ref_rejected_logp\": %.17g}\n", P[i].ref[0], P[i].ref[1]);
    }
    if (ferror(a.f)) {
        qw_afile_abort(&a);
        qw_die(QW_EXIT_FAIL, "'%s': write error", path);
    }
    if (qw_afile_commit(&a)) qw_die_last();
}

/* The rows of a micro-batch: pairs idx[0..k), chosen in rows 0..P−1,
 * rejected in rows P..2P−1; targets on the scored completion tokens. */
static void fill(const pair *R, const long *idx, int k, int P, int T, int32_t *ids, int32_t *tg)
{
    size_t BT = (size_t)2 * P * T;
    for (size_t j = 0; j < BT; j++) ids[j] = 0, tg[j] = -1;
    for (int i = 0; i < k; i++)
        for (int s = 0; s < 2; s++) {
            const row *r = &R[idx[i]].side[s];
            size_t o = (size_t)(s * P + i) * T;
            memcpy(ids + o, r->ids, (size_t)r->len * sizeof *ids);
            for (int j = r->c0 > 1 ? r->c0 : 1; j < r->len; j++) tg[o + j - 1] = r->ids[j];
        }
}

/* Summed completion log-probs of each side of pairs 0..k) of a micro-batch. */
static void side_sums(const pair *R, const long *idx, int k, int P, int T, const float *logp, double (*out)[2])
{
    for (int i = 0; i < k; i++)
        for (int s = 0; s < 2; s++) {
            const row *r = &R[idx[i]].side[s];
            const float *l = logp + (size_t)(s * P + i) * T;
            double sum = 0;
            for (int j = r->c0 > 1 ? r->c0 : 1; j < r->len; j++) sum += l[j - 1];
            out[i][s] = sum;
        }
}

/* ---- online: sample, score, pair, update (qw/online.h) ---- */

static qw_online_opts on = QW_ONLINE_DEFAULTS;

/* The pairs of one online step from its scored records (n per prompt, in
 * order): per prompt the first sample of the highest reward (chosen) and
 * the first of the lowest (rejected), after subtracting `eos_penalty` from
 * samples that ended without EOS (finish_reason "length"); null rewards
 * take no part; no spread, no pair.  R gets the rows; counts into st[]:
 * groups without spread, samples, reward sum, reward-margin sum, samples
 * with EOS.  The pairs are appended to *pairs_out (qw-dpo(5) lines) when
 * it is not NULL. */
static long make_pairs(const qw_buf *scored, int n, long step, double eos_penalty, pair *R, double *st, qw_buf *pairs_out)
{
    long np = 0, line = 0;
    char where[200];
    snprintf(where, sizeof where, "step %ld's scored rollouts", step + 1);
    cJSON **grp = qw_calloc((size_t)n, sizeof *grp);
    double *rw = qw_malloc((size_t)n * sizeof *rw);
    int k = 0;
    for (size_t at = 0; at < scored->n;) {
        const char *s = scored->p + at, *nl = memchr(s, '\n', scored->n - at);
        size_t len = nl ? (size_t)(nl - s) : scored->n - at;
        at += len + (nl != NULL);
        line++;
        cJSON *r = cJSON_ParseWithLength(s, len);
        if (!cJSON_IsObject(r)) qw_die(QW_EXIT_DATA, "%s: record %ld: not a JSON object", where, line);
        cJSON *f = cJSON_GetObjectItemCaseSensitive(r, "reward"), *fr = cJSON_GetObjectItemCaseSensitive(r, "finish_reason");
        int eos = !(cJSON_IsString(fr) && !strcmp(fr->valuestring, "length"));
        rw[k] = cJSON_IsNumber(f) ? f->valuedouble - (eos ? 0 : eos_penalty) : NAN;
        if (!cJSON_IsNumber(f) && !cJSON_IsNull(f)) qw_die(QW_EXIT_DATA, "%s: record %ld: no numeric \"reward\"", where, line);
        st[1] += 1, st[4] += eos;
        if (isfinite(rw[k])) st[2] += rw[k];
        grp[k++] = r;
        if (k < n) continue;
        int best = -1, worst = -1;
        for (int j = 0; j < n; j++) {
            if (!isfinite(rw[j])) continue;
            if (best < 0 || rw[j] > rw[best]) best = j;
            if (worst < 0 || rw[j] < rw[worst]) worst = j;
        }
        if (best < 0 || rw[best] == rw[worst]) {
            st[0] += 1;
        } else {
            char w2[300];
            snprintf(w2, sizeof w2, "%s: record %ld", where, line - n + 1);
            qw_ids p = {0}, c = {0}, x = {0};
            if (qw_json_ids(cJSON_GetObjectItemCaseSensitive(grp[best], "prompt_ids"), "prompt_ids", w2, 1 << 30, 0, &p) ||
                qw_json_ids(cJSON_GetObjectItemCaseSensitive(grp[best], "completion_ids"), "completion_ids", w2, 1 << 30,
                            QW_JSON_IDS_NONEMPTY, &c) ||
                qw_json_ids(cJSON_GetObjectItemCaseSensitive(grp[worst], "completion_ids"), "completion_ids", w2, 1 << 30,
                            QW_JSON_IDS_NONEMPTY, &x))
                qw_die_last();
            pair *q = &R[np++];
            memset(q, 0, sizeof *q);
            q->line = line - n + 1;
            make_row(p.v, (int)p.n, c.v, (int)c.n, 0, TRUNC_REFUSE, q->line, "chosen", &q->side[0]);
            make_row(p.v, (int)p.n, x.v, (int)x.n, 0, TRUNC_REFUSE, q->line, "rejected", &q->side[1]);
            st[3] += rw[best] - rw[worst];
            if (pairs_out) {
                const qw_ids *v[3] = {&p, &c, &x};
                static const char *const key[3] = {"prompt_ids", "chosen_ids", "rejected_ids"};
                char num[64];
                cJSON *ix = cJSON_GetObjectItemCaseSensitive(grp[best], "idx");
                snprintf(num, sizeof num, "{\"step\": %ld, \"idx\": %ld", step + 1, cJSON_IsNumber(ix) ? (long)ix->valuedouble : -1L);
                qw_buf_adds(pairs_out, num);
                for (int j = 0; j < 3; j++) {
                    snprintf(num, sizeof num, ", \"%s\": [", key[j]);
                    qw_buf_adds(pairs_out, num);
                    for (size_t t = 0; t < v[j]->n; t++) {
                        snprintf(num, sizeof num, t ? ", %d" : "%d", v[j]->v[t]);
                        qw_buf_adds(pairs_out, num);
                    }
                    qw_buf_adds(pairs_out, "]");
                }
                snprintf(num, sizeof num, ", \"chosen_reward\": %.17g", rw[best]);
                qw_buf_adds(pairs_out, num);
                snprintf(num, sizeof num, ", \"rejected_reward\": %.17g}\n", rw[worst]);
                qw_buf_adds(pairs_out, num);
            }
            qw_ids_free(&p), qw_ids_free(&c), qw_ids_free(&x);
        }
        for (int j = 0; j < n; j++) cJSON_Delete(grp[j]);
        k = 0;
    }
    if (k) qw_die(QW_EXIT_FAIL, "%s: %d records left over (not a multiple of %d)", where, k, n);
    free(grp), free(rw);
    return np;
}

int main(int argc, char **argv)
{
    qw_set_prog(argv[0]);
    static qw_train_opts o;
    qw_train_defaults(&o);
    /* TRL's DPOConfig / TrainingArguments: lr 1e-6 decaying linearly to 0, AdamW (0.9, 0.999, 1e-8), no weight decay, clip 1 */
    o.sched.lr = 1e-6;
    o.sched.min_lr_ratio = 0;
    o.adamw.beta2 = 0.999;
    o.adamw.weight_decay = 0;
    static const char *loss_type = "sigmoid", *trunc = "refuse", *schedule = "linear", *precision, *ref_dir, *dump,
                      *save_ref;
    static int batch_pairs = 8, micro_pairs, epochs = 1, max_len, precompute, deterministic;
    static long long steps, warmup, save_every, mbt = 8192;
    static int n_samples = 2, no_shuffle;
    static double temperature = 1, eos_penalty = 0;
    static const char *pairs_out;
    static double beta = 0.1, smoothing = 0;
    static const qw_opt table[] = {
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Model and data:"},
        {"model", 'm', QW_OPT_STR, &o.model_dir, "DIR", "the policy to train (and the reference, unless --ref)"},
        {"out", 'o', QW_OPT_STR, &o.out, "DIR", "checkpoints: DIR/step-NNNNNN/ and DIR/latest"},
        {"ref", 0, QW_OPT_STR, &ref_dir, "DIR", "the frozen reference model (default: --model as it starts)"},
        {"resume", 0, QW_OPT_STR, &o.resume, "DIR", "continue a run: a step directory, or --out of a run (its latest)"},
        {"tokenizer", 't', QW_OPT_STR, &o.tokenizer, "FILE", "tokenizer.json (or its directory): for text pairs; recorded in checkpoints"},
        {"max-length", 0, QW_OPT_INT, &max_len, "N", "longest row, prompt + completion (default: no limit)"},
        {"truncation", 0, QW_OPT_STR, &trunc, "MODE", "a longer row: refuse (exit 3), keep-start or keep-end (default refuse)"},
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Objective:"},
        {"loss-type", 0, QW_OPT_STR, &loss_type, "TYPE", "sigmoid, hinge, ipo or robust (default sigmoid)"},
        {"beta", 0, QW_OPT_DOUBLE, &beta, "X", "the inverse temperature beta (IPO's tau) (default 0.1)"},
        {"label-smoothing", 0, QW_OPT_DOUBLE, &smoothing, "X", "robust: the assumed fraction of flipped labels, in [0, 0.5) (default 0)"},
        {"precompute-ref", 0, QW_OPT_FLAG, &precompute, NULL, "reference log-probs in a first pass, then free the reference model"},
        {"save-ref", 0, QW_OPT_STR, &save_ref, "FILE", "write the pairs with their reference log-probs to FILE (implies --precompute-ref)"},
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Optimisation:"},
        {"batch-pairs", 0, QW_OPT_INT, &batch_pairs, "B", "pairs per optimizer step, over all ranks (default 8)"},
        {"micro-batch-pairs", 0, QW_OPT_INT, &micro_pairs, "P", "pairs per forward/backward (default: as --micro-batch-tokens allows)"},
        {"micro-batch-tokens", 0, QW_OPT_LONG, &mbt, "N", "token positions per forward/backward, both rows of a pair counted (default 8192)"},
        {"epochs", 0, QW_OPT_INT, &epochs, "E", "passes over the pairs (default 1)"},
        {"no-shuffle", 0, QW_OPT_FLAG, &no_shuffle, NULL, "take the pairs in file order (default: each epoch shuffled by --seed, as TRL)"},
        {"steps", 0, QW_OPT_LONG, &steps, "N", "optimizer steps of the run (default: --epochs passes; --online: 1)"},
        {"lr", 0, QW_OPT_DOUBLE, &o.sched.lr, "X", "peak learning rate (default 1e-6)"},
        {"schedule", 0, QW_OPT_STR, &schedule, "KIND", "linear (to 0), cosine or constant (default linear)"},
        {"warmup", 0, QW_OPT_LONG, &warmup, "N", "linear warmup steps (default 0)"},
        QW_TRAIN_ADAMW_OPTS(o),
        QW_ONLINE_OPTS_HEAD(on),
        QW_ONLINE_OPTS_REST(on),
        {"num-samples", 'n', QW_OPT_INT, &n_samples, "N", "--online: completions per prompt; best vs worst by reward (default 2)"},
        {"temperature", 0, QW_OPT_DOUBLE, &temperature, "T", "--online: sampling temperature (default 1)"},
        {"missing-eos-penalty", 0, QW_OPT_DOUBLE, &eos_penalty, "X", "--online: subtract X from the reward of a completion without EOS"},
        {"pairs-out", 0, QW_OPT_STR, &pairs_out, "FILE", "--online: every step's pairs (qw-dpo(5), with step and rewards), atomically"},
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Output:"},
        {"save-every", 0, QW_OPT_LONG, &save_every, "N", "save every N steps (default: at the end only)"},
        {"keep-last", 0, QW_OPT_INT, &o.keep_last, "K", "keep the newest K checkpoints (default 3; 0: all)"},
        {"log", 0, QW_OPT_STR, &o.log, "FILE", "metrics as JSONL, one object per step"},
        {"tensorboard", 0, QW_OPT_STR, &o.tb_dir, "DIR", "TensorBoard event file in DIR"},
        QW_TRAIN_DUMP_GRADS_OPT(dump),
        QW_TRAIN_COMPUTE_OPTS(precision, deterministic),
        QW_COMMON_OPTS,
        {0},
    };
    const qw_prog_info info = {
        "qw-dpo",
        "--model DIR --out DIR [--ref DIR] [options] [PAIRS.jsonl]\n"
        "       qw-dpo --online --model DIR --out DIR --prompts FILE --verifier V [-n N] [--steps N] [--prompts-per-step P] [options]",
        "Direct Preference Optimization (TRL's DPOTrainer) on preference pairs (qw-dpo(5); stdin without a\n"
        "file): the sigmoid, hinge, IPO or robust loss of the policy's and a frozen reference model's summed\n"
        "completion log-probs; AdamW, checkpoints that resume, metrics, mpirun data parallel.  Online (--online):\n"
        "each step samples N completions of the next P prompts from the policy being trained (in memory), scores\n"
        "them with the verifiers, pairs the best with the worst of each prompt and makes the same update.",
        table};
    if (argc == 1) {
        qw_print_help(&info, stderr);
        return QW_EXIT_USAGE;
    }
    int first = qw_parse_args(&info, argc, argv);
    if (argc - first > 1) qw_usage_error("unexpected argument '%s'", argv[first + 1]);
    const char *path = first < argc ? argv[first] : "-";
    if (on.online) {
        if (first < argc) qw_usage_error("--online reads --prompts, not '%s'", argv[first]);
        qw_online_check(&on);
        if (n_samples < 2) qw_usage_error("-n: need at least 2 samples per prompt (a pair)");
        if (!(temperature > 0) || !isfinite(temperature)) qw_usage_error("--temperature: need a finite value > 0");
        if (!isfinite(eos_penalty)) qw_usage_error("--missing-eos-penalty: need a finite value");
        if (precompute || save_ref || max_len) qw_usage_error("--precompute-ref, --save-ref and --max-length are for pairs from a file");
        if (epochs != 1) qw_usage_error("--online: give --steps of generation, not --epochs (each step's pairs make one update)");
        on.steps = steps ? (int)steps : 1;
        if (no_shuffle) qw_usage_error("--no-shuffle is for pairs from a file");
    } else if (on.prompts || on.verifier || on.save || pairs_out || n_samples != 2) {
        qw_usage_error("--prompts, --verifier, -n, --save-rollouts and --pairs-out are for --online");
    }
    src = strcmp(path, "-") ? path : "<stdin>";
    if (!o.model_dir) qw_usage_error("give --model (with --resume too: it is the default reference)");
    if (!o.out) qw_usage_error("give --out");
    qw_dpo_cfg cfg = {.beta = beta, .label_smoothing = smoothing};
    if (!strcmp(loss_type, "sigmoid")) cfg.type = QW_DPO_SIGMOID;
    else if (!strcmp(loss_type, "hinge")) cfg.type = QW_DPO_HINGE;
    else if (!strcmp(loss_type, "ipo")) cfg.type = QW_DPO_IPO;
    else if (!strcmp(loss_type, "robust")) cfg.type = QW_DPO_ROBUST;
    else qw_usage_error("--loss-type: '%s' is not sigmoid, hinge, ipo or robust", loss_type);
    int mode;
    if (!strcmp(trunc, "refuse")) mode = TRUNC_REFUSE;
    else if (!strcmp(trunc, "keep-start") || !strcmp(trunc, "keep_start")) mode = TRUNC_KEEP_START;
    else if (!strcmp(trunc, "keep-end") || !strcmp(trunc, "keep_end")) mode = TRUNC_KEEP_END;
    else qw_usage_error("--truncation: '%s' is not refuse, keep-start or keep-end", trunc);
    if (!(beta > 0)) qw_usage_error("--beta must be above 0");
    if (!(smoothing >= 0 && smoothing < 0.5)) qw_usage_error("--label-smoothing must be in [0, 0.5)");
    if (smoothing > 0 && cfg.type != QW_DPO_ROBUST) qw_usage_error("--label-smoothing applies to --loss-type robust only");
    if (batch_pairs < 1) qw_usage_error("--batch-pairs must be at least 1");
    if (micro_pairs < 0) qw_usage_error("--micro-batch-pairs must be at least 1");
    if (mbt < 1) qw_usage_error("--micro-batch-tokens must be at least 1");
    if (epochs < 1) qw_usage_error("--epochs must be at least 1");
    if (steps < 0 || warmup < 0 || save_every < 0) qw_usage_error("--steps, --warmup and --save-every must be at least 0");
    if (max_len < 0) qw_usage_error("--max-length must be at least 1");
    if (save_ref) precompute = 1;
    if (!strcmp(schedule, "linear")) o.sched.kind = QW_SCHED_WSD, o.sched.decay_shape = QW_DECAY_LINEAR;
    else if (!strcmp(schedule, "cosine")) o.sched.kind = QW_SCHED_COSINE;
    else if (!strcmp(schedule, "constant")) o.sched.kind = QW_SCHED_CONSTANT;
    else qw_usage_error("--schedule: '%s' is not linear, cosine or constant", schedule);
    o.seed = (uint64_t)qw_common_opts.seed;
    o.quiet = qw_common_opts.quiet;
    o.save_every = save_every;

    /* read and check everything before anything is written */
    char *md = NULL;
    if (qw_ckpt_model_dir(o.model_dir, &md)) qw_die_last();
    qw_config mc;
    if (qw_config_load(md, &mc)) qw_die_last();
    int V = mc.vocab_size;
    qw_tok *tok = NULL;
    qw_pref_text tx = {NULL, -1};
    if (o.tokenizer) {
        if (qw_tok_load_arg(o.tokenizer, &tok)) qw_die_last();
        char *mt = qw_tok_path(md, NULL);
        FILE *f = fopen(mt, "r");
        if (f) {   /* the model's own tokenizer: the pairs must be of it */
            fclose(f);
            qw_tok *m2;
            if (qw_tok_load(mt, &m2)) qw_die_last();
            if (qw_tok_identity(m2) != qw_tok_identity(tok))
                qw_die(QW_EXIT_DATA, "'%s' is not the tokenizer of '%s' (%s): another tokenizer", o.tokenizer, md, mt);
            qw_tok_free(m2);
        }
        free(mt);
        qw_ids eos = {0};
        if (qw_rollout_eos_ids(md, &mc, &eos)) qw_die_last();
        if (!eos.n) qw_die(QW_EXIT_DATA, "'%s': no eos_token_id (text pairs end each completion with it)", md);
        tx.tok = tok, tx.eos = eos.v[0];
        qw_ids_free(&eos);
    }
    qw_pref_set in = {0};
    qw_online *ol = NULL;
    int per = 0;
    if (on.online) {
        if (qw_online_open(&on, md, o.tokenizer, V, mc.max_position_embeddings, &ol)) qw_die_last();
        per = on.per_step ? on.per_step : (int)qw_online_prompts(ol);
        batch_pairs = per;
        steps = on.steps;
    } else if (qw_pref_read(path, V, &tx, &in)) {
        qw_die_last();
    }
    long n = on.online ? per : in.n;
    pair *R = qw_calloc((size_t)n, sizeof *R);
    int T = on.online ? qw_online_seq_len(ol) : 2;
    long with_ref = 0;
    double ntok_c = 0, ntok_r = 0;
    for (long i = 0; i < in.n; i++) {
        const qw_pref_pair *q = &in.pairs[i];
        R[i].line = q->line;
        make_row(q->prompt, q->n_prompt, q->chosen, q->n_chosen, max_len, mode, q->line, "chosen", &R[i].side[0]);
        make_row(q->prompt, q->n_prompt, q->rejected, q->n_rejected, max_len, mode, q->line, "rejected", &R[i].side[1]);
        for (int s = 0; s < 2; s++)
            if (R[i].side[s].len > T) T = R[i].side[s].len;
        R[i].has_ref = q->has_ref, R[i].ref[0] = q->ref_c, R[i].ref[1] = q->ref_r;
        with_ref += q->has_ref;
        ntok_c += R[i].side[0].scored, ntok_r += R[i].side[1].scored;
    }
    if (with_ref && with_ref < in.n)
        qw_die(QW_EXIT_DATA, "'%s': %ld of %ld pairs carry ref_chosen_logp/ref_rejected_logp: give them for every pair or none",
               src, with_ref, n);
    int have_ref = !on.online && with_ref == n;
    if (have_ref && (ref_dir || precompute))
        qw_usage_error("the pairs carry reference log-probs: --ref, --precompute-ref and --save-ref do not apply");
    if (ref_dir) {
        char *rd;
        qw_config rc0;
        if (qw_ckpt_model_dir(ref_dir, &rd) || qw_config_load(rd, &rc0)) qw_die_last();
        if (rc0.vocab_size != V) qw_die(QW_EXIT_DATA, "'%s': vocabulary %d, the policy's is %d (another model?)", ref_dir, rc0.vocab_size, V);
        free(rd);
    }
    if (T > mc.max_position_embeddings)
        qw_die(QW_EXIT_DATA, "'%s': the longest row is %d tokens, over the model's %d positions (give --max-length)", src, T,
               mc.max_position_embeddings);
    if (batch_pairs > n) batch_pairs = (int)n;
    long per_epoch = (n + batch_pairs - 1) / batch_pairs;
    if (!steps) steps = per_epoch * epochs;
    o.steps = steps;
    o.sched.total = steps;
    o.sched.warmup = warmup;
    if (o.sched.kind == QW_SCHED_WSD) o.sched.decay_frac = (double)(steps - warmup) / (double)steps;
    if (qw_sched_check(&o.sched)) qw_die_last();
    o.seq_len = T;
    o.batch_tokens = (long long)batch_pairs * 2 * T;

    qw_backend_share_gpus(0);
    if (qw_backend_select(qw_common_opts.device, precision, qw_common_opts.threads, deterministic, &o.ops)) qw_die_last();
    qw_trainer *t;
    int rc = qw_trainer_open(&o, &t);
    if (rc) return qw_trainer_close(t, rc);
    int rank = qw_trainer_rank(t), size = qw_trainer_size(t);
    if (on.online && size > 1) return qw_trainer_close(t, qw_error(QW_EXIT_USAGE, "--online: one rank only for now"));
    if (qw_trainer_params(t)->cfg.vocab_size != V) return qw_trainer_close(t, qw_error(QW_EXIT_DATA, "'%s': the vocabulary changed", md));
    int mine_max = (batch_pairs + size - 1) / size;   /* pairs of a step on rank 0, the most of any rank */
    int P = micro_pairs ? micro_pairs : (int)(mbt / (2LL * T));
    if (P < 1) P = 1;
    if (P > mine_max) P = mine_max;
    int micro_global = 0;
    for (int r = 0; r < size; r++) {
        int k = batch_pairs / size + (r < batch_pairs % size);
        micro_global += (k + P - 1) / P;
    }
    qw_trainer_batch tb = {qw_trainer_identity(t), T, o.batch_tokens, 2 * P, micro_global ? micro_global : 1, NULL, NULL, 1};
    if ((rc = qw_trainer_begin(t, &tb))) return qw_trainer_close(t, rc);

    size_t BT = (size_t)2 * P * T;
    int32_t *ids = qw_malloc(BT * sizeof *ids), *tg = qw_malloc(BT * sizeof *tg);
    float *logp = qw_malloc(BT * sizeof *logp), *coef = qw_malloc(BT * sizeof *coef), *rlogp = qw_malloc(BT * sizeof *rlogp);
    long *idx = qw_malloc((size_t)(mine_max > n ? mine_max : n) * sizeof *idx);
    double (*lp)[2] = qw_malloc((size_t)P * sizeof *lp), (*rl)[2] = qw_malloc((size_t)P * sizeof *rl);
    qw_frozen *ref = NULL;
    if (!have_ref) {
        if ((rc = qw_frozen_open(ref_dir ? ref_dir : md, o.ops, V, 2 * P, T, &ref))) return qw_trainer_close(t, rc);
        if (precompute) {   /* a first pass over every pair (each rank computes all: the pass is cheap) */
            for (long s = 0; s < n && !rc; s += P) {
                int k = (int)(n - s < P ? n - s : P);
                for (int i = 0; i < k; i++) idx[i] = s + i;
                fill(R, idx, k, P, T, ids, tg);
                qw_batch b = {.ids = ids, .targets = tg};
                if ((rc = qw_frozen_forward(ref, &b, logp))) break;
                side_sums(R, idx, k, P, T, logp, rl);
                for (int i = 0; i < k; i++) R[s + i].ref[0] = rl[i][0], R[s + i].ref[1] = rl[i][1], R[s + i].has_ref = 1;
            }
            qw_frozen_free(ref);
            ref = NULL;
            if (rc) return qw_trainer_close(t, rc);
            if (save_ref && rank == 0) write_ref(save_ref, &in, R, n);
            qw_trainer_say(t, "reference log-probs of %ld pairs computed%s%s", n, save_ref ? ", written to " : "",
                           save_ref ? save_ref : "");
        }
    }
    qw_pref_free(&in);
    cfg.n_pairs = batch_pairs;
    qw_policy *pol = NULL;
    qw_buf pbuf = {0};
    qw_afile pfile = {0};
    if (ol) {   /* the engine over the weights being trained */
        qw_engine_opts eo = qw_online_engine_opts(ol);
        if (!rc) rc = qw_policy_new(t, &eo, &pol);
        if (!rc && pairs_out) rc = qw_afile_open(pairs_out, &pfile);
        if (!rc && !o.quiet)
            qw_trainer_say(t, "online: %ld prompts, %d a step × %d completions, %lld steps; engine cache %.1f MiB",
                           qw_online_prompts(ol), per, n_samples, steps, qw_engine_cache_bytes(qw_policy_engine(pol)) / 1048576.0);
    }

    long long tokens = qw_trainer_start_tokens(t);
    long long step_tokens = 0;
    long *perm = NULL, perm_epoch = -1;
    for (long step = qw_trainer_start_step(t); step < steps && !rc; step++) {
        struct timespec t0, t1;
        int mine = 0;
        double np_ = batch_pairs, ost[5] = {0};
        qw_online_times tm = {0};
        if (ol) {   /* sample from the current policy, score, pair; seed --seed + step */
            qw_buf scored = {0};
            if ((rc = qw_online_step(ol, pol, step, per, 0, per, n_samples, temperature, &scored, &tm))) break;
            for (long i = 0; i < n; i++) free(R[i].side[0].ids), free(R[i].side[1].ids), R[i].side[0].ids = R[i].side[1].ids = NULL;
            size_t from = pbuf.n;
            mine = (int)make_pairs(&scored, n_samples, step, eos_penalty, R, ost, pfile.f ? &pbuf : NULL);
            qw_buf_free(&scored);
            if (pfile.f && fwrite(pbuf.p + from, 1, pbuf.n - from, pfile.f) != pbuf.n - from) {
                rc = qw_error(QW_EXIT_FAIL, "write error on '%s'", pairs_out);
                break;
            }
            for (int i = 0; i < mine; i++) idx[i] = i;
            np_ = mine;
        }
        clock_gettime(CLOCK_MONOTONIC, &t0);
        qw_trainer_zero_grad(t);
        /* this rank's pairs of the step: j ≡ rank (mod size) of step·B … step·B + B − 1 of the stream of
           epochs, each shuffled by (--seed, epoch) unless --no-shuffle (qw_rng_epoch_item) */
        if (!ol)
            for (int j = rank; j < batch_pairs; j += size) {
                long k = (long)(step * (long long)batch_pairs + j);
                idx[mine++] = no_shuffle ? k % n : qw_rng_epoch_item(k, n, o.seed, 0x64706f00ULL << 16, &perm, &perm_epoch);
            }
        cfg.n_pairs = np_;
        /* loss, rewards c/r, margins, accuracies, logps c/r, scored tokens */
        double sums[8] = {0};
        for (int m0 = 0; m0 < mine && !rc; m0 += P) {
            int k = mine - m0 < P ? mine - m0 : P;
            const long *x = idx + m0;
            fill(R, x, k, P, T, ids, tg);
            qw_batch b = {.ids = ids, .targets = tg};
            qw_model_out mo;
            if ((rc = qw_trainer_forward(t, &b, logp, &mo))) break;
            side_sums(R, x, k, P, T, logp, lp);
            if (ref) {   /* its own model: the policy's activations for the backward stay */
                if ((rc = qw_frozen_forward(ref, &b, rlogp))) break;
                side_sums(R, x, k, P, T, rlogp, rl);
            } else {
                for (int i = 0; i < k; i++) rl[i][0] = R[x[i]].ref[0], rl[i][1] = R[x[i]].ref[1];
            }
            for (size_t j = 0; j < BT; j++) coef[j] = 0;
            for (int i = 0; i < k; i++) {
                const pair *q = &R[x[i]];
                qw_dpo_pair dp = {lp[i][0], lp[i][1], rl[i][0], rl[i][1], q->side[0].scored, q->side[1].scored};
                qw_dpo_out d;
                qw_dpo_pair_loss(&cfg, &dp, &d);
                sums[0] += d.loss;
                sums[1] += d.reward_c, sums[2] += d.reward_r, sums[3] += d.reward_c - d.reward_r;
                sums[4] += d.reward_c > d.reward_r;
                sums[5] += lp[i][0], sums[6] += lp[i][1];
                sums[7] += q->side[0].scored + q->side[1].scored;
                /* loss = Σ coef·(−log p): coef = −∂loss/∂(summed log-prob) on each scored token */
                for (int s = 0; s < 2; s++) {
                    const row *r = &q->side[s];
                    float c = (float)-(s ? d.d_lp_r : d.d_lp_c);
                    size_t o0 = (size_t)(s * P + i) * T;
                    for (int j = r->c0 > 1 ? r->c0 : 1; j < r->len; j++) coef[o0 + j - 1] = c;
                }
            }
            rc = qw_trainer_backward(t, coef);
        }
        if (rc) break;
        double norm = 0, lr = qw_sched_lr(&o.sched, step);
        if (np_ > 0) {   /* a step without pairs (online) makes no update */
            if ((rc = qw_trainer_reduce(t, sums, 8))) break;
            if (step == 0 && dump && (rc = qw_trainer_dump_grads(t, dump))) break;
            qw_trainer_update(t, step, &norm, &lr);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        step_tokens = (long long)sums[7];
        tokens += step_tokens;
        double dt = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
        qw_metric mt[32];
        int k = 0;
        if (np_ > 0) {
        mt[k++] = (qw_metric){"loss", sums[0]};
        mt[k++] = (qw_metric){"rewards/chosen", sums[1] / np_};
        mt[k++] = (qw_metric){"rewards/rejected", sums[2] / np_};
        mt[k++] = (qw_metric){"rewards/margins", sums[3] / np_};
        mt[k++] = (qw_metric){"rewards/accuracies", sums[4] / np_};
        mt[k++] = (qw_metric){"logps/chosen", sums[5] / np_};
        mt[k++] = (qw_metric){"logps/rejected", sums[6] / np_};
        }
        mt[k++] = (qw_metric){"grad_norm", norm};
        mt[k++] = (qw_metric){"lr", lr};
        mt[k++] = (qw_metric){"pairs", np_};
        mt[k++] = (qw_metric){"tokens", (double)tokens};
        mt[k++] = (qw_metric){"tok_per_s", 2 * np_ * T / (dt > 0 ? dt : 1e-9)};
        if (ol) {   /* the generation step: pairs made, groups without spread, the rewards, the time split */
            double all = tm.gen_s + tm.reward_s + dt;
            mt[k++] = (qw_metric){"groups_without_spread", ost[0]};
            mt[k++] = (qw_metric){"reward_mean", ost[1] > 0 ? ost[2] / ost[1] : 0};
            mt[k++] = (qw_metric){"reward_margin", np_ > 0 ? ost[3] / np_ : 0};
            mt[k++] = (qw_metric){"contain_eos", ost[1] > 0 ? ost[4] / ost[1] : 0};
            mt[k++] = (qw_metric){"gen_s", tm.gen_s};
            mt[k++] = (qw_metric){"reward_s", tm.reward_s};
            mt[k++] = (qw_metric){"train_s", dt};
            mt[k++] = (qw_metric){"gen_frac", all > 0 ? tm.gen_s / all : 0};
        }
        if ((rc = qw_trainer_log(t, step + 1, mt, k))) break;
        if (np_ <= 0) np_ = 1;
        qw_trainer_progress(t, step + 1, "loss %.4f  margin %.4g  acc %.2f", sums[0], sums[3] / np_, sums[4] / np_);
        if (!o.quiet && (step + 1 == steps || (step + 1) % 10 == 0))
            qw_trainer_say(t, "step %ld/%lld: loss %.6g  margin %.4g  accuracy %.3g  grad_norm %.4g", step + 1, steps, sums[0],
                           sums[3] / np_, sums[4] / np_, norm);
        rc = qw_trainer_end_step(t, step + 1, tokens);
    }
    free(ids), free(tg), free(logp), free(coef), free(rlogp), free(idx), free(lp), free(rl);
    qw_frozen_free(ref);
    qw_policy_free(pol);
    free(perm);
    if (pfile.f) {
        if (rc) qw_afile_abort(&pfile);
        else if (qw_afile_commit(&pfile)) rc = qw_error_status();
    }
    qw_buf_free(&pbuf);
    rc = qw_online_close(ol, rc);
    for (long i = 0; i < n; i++) free(R[i].side[0].ids), free(R[i].side[1].ids);
    free(R);
    free(md);
    qw_tok_free(tok);
    rc = qw_trainer_close(t, rc);
    if (rc) qw_die_last();
    qw_close_stdout();
    return 0;
}
