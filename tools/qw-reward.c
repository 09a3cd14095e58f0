/* qw-reward — score completions: records in, the same records out with
 * `reward` added (qw-reward(1), qw-reward(5)); the verifiers are
 * libcore's (qw/reward.h, qw/sandbox.h). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "qw/backend.h"
#include "qw/buf.h"
#include "qw/chat.h"
#include "qw/ckpt.h"
#include "qw/cli.h"
#include "qw/config.h"
#include "qw/file.h"
#include "qw/json.h"
#include "qw/model.h"
#include "qw/params.h"
#include "qw/pref.h"
#include "qw/reward.h"
#include "qw/rm.h"
#include "qw/rng.h"
#include "qw/sandbox.h"
#include "qw/score.h"
#include "qw/signals.h"
#include "qw/st.h"
#include "qw/tok.h"
#include "qw/tokenize.h"
#include "qw/trainer.h"

static const char *o_verifier, *o_answer_field = "answer", *o_model, *o_cmd, *o_out, *o_sandbox, *o_python, *o_tok;
static int o_jobs, o_max_procs = 64, o_batch = 16;
static double o_timeout = -1;
static long long o_memory = 1LL << 30, o_max_output = 16 << 10;

static const qw_opt opts[] = {
    { "verifier", 0, QW_OPT_STR, &o_verifier, "V", "math, think, code, model or cmd; several as NAME:WEIGHT,… (weighted sum)" },
    { "answer-field", 0, QW_OPT_STR, &o_answer_field, "NAME", "math: the field of the gold answer (default answer)" },
    { "model", 0, QW_OPT_STR, &o_model, "DIR", "model: the reward model's directory (qw-reward train writes one)" },
    { "tokenizer", 't', QW_OPT_STR, &o_tok, "FILE", "model: tokenizer.json for records without ids (default: the model's)" },
    { "batch", 0, QW_OPT_INT, &o_batch, "N", "model: sequences per forward (default 16)" },
    { "cmd", 0, QW_OPT_STR, &o_cmd, "\"PROG ARGS\"", "cmd: the reward program, run by /bin/sh -c, one JSON line in and out per record" },
    { "output", 'o', QW_OPT_STR, &o_out, "OUT", "write the records here, atomically (default: stdout)" },
    { "jobs", 'j', QW_OPT_INT, &o_jobs, "N", "code: programs run at once (default: the cores)" },
    { "timeout", 0, QW_OPT_DOUBLE, &o_timeout, "S", "code: wall and CPU seconds per program (default 10); cmd: per reply (default 60)" },
    { "memory", 0, QW_OPT_LONG, &o_memory, "BYTES", "code: address space per process (default 1G)" },
    { "max-procs", 0, QW_OPT_INT, &o_max_procs, "N", "code: processes a program may have at once (default 64)" },
    { "max-output", 0, QW_OPT_LONG, &o_max_output, "BYTES", "code: output kept per program (default 16k; the rest is counted)" },
    { "sandbox", 0, QW_OPT_STR, &o_sandbox, "auto|namespaces|rlimits", "code: the isolation (default auto: namespaces when the kernel allows)" },
    { "python", 0, QW_OPT_STR, &o_python, "FILE", "code: the interpreter (default /usr/bin/python3, else python3 on PATH)" },
    QW_COMMON_BEGIN, QW_COMMON_DEVICE, QW_COMMON_THREADS, QW_COMMON_QUIET, QW_COMMON_END,
    { 0 },
};

static const qw_prog_info info = {
    "qw-reward",
    "--verifier math|think|code|model|cmd [--answer-field NAME] [--model DIR] [--cmd \"PROG ARGS\"] [-o OUT] "
    "[options] [FILE]\n"
    "       qw-reward train -m START -o OUT [options] PAIRS.jsonl",
    "Score completions: qw-rollout records in, the same records out with \"reward\" added.\n"
    "'qw-reward train' trains the reward model of --verifier model ('qw-reward train --help' shows its options).",
    opts,
};

/* ---- verifiers named by --verifier (qw/score.h) ---- */

static qw_scorer sc;
#define uses sc.uses

/* ---- records ---- */

typedef struct {
    long line;                /* from 1 */
    const char *text;         /* the line as read (into the input buffer), without its newline */
    size_t len;
    cJSON *rec;
    const char *completion;
    qw_score score;
    int32_t *ids;             /* model: prompt + completion tokens */
    int n_ids;
} item;

static int model_vocab;       /* model: the reward model's vocabulary */
static qw_tok *model_tok;     /* model: for records without ids (NULL: none) */

static const char *src_name(const char *path) { return path && strcmp(path, "-") ? path : "<stdin>"; }

static const char *str_field(cJSON *rec, const char *name, const char *where, int required)
{
    cJSON *f = cJSON_GetObjectItemCaseSensitive(rec, name);
    if (!f) {
        if (required) qw_die(QW_EXIT_DATA, "%s: no \"%s\" (needed by --verifier %s)", where, name, sc.spec);
        return NULL;
    }
    if (!cJSON_IsString(f)) qw_die(QW_EXIT_DATA, "%s: \"%s\" is not a string", where, name);
    return f->valuestring;
}

/* The ids an integer array field appends to *out (range-checked, qw/json.h). */
static void id_field(cJSON *a, const char *name, const char *where, qw_ids *out)
{
    if (qw_json_ids(a, name, where, model_vocab, 0, out)) qw_die_last();
}

/* --verifier model: the sequence to score, prompt_ids + completion_ids, or
 * prompt + completion text through the tokenizer. */
static void model_ids(item *it, const char *where)
{
    cJSON *pi = cJSON_GetObjectItemCaseSensitive(it->rec, "prompt_ids");
    cJSON *ci = cJSON_GetObjectItemCaseSensitive(it->rec, "completion_ids");
    qw_ids ids = {0};
    if (ci) {
        if (pi) id_field(pi, "prompt_ids", where, &ids);
        id_field(ci, "completion_ids", where, &ids);
    } else {
        if (!model_tok)
            qw_die(QW_EXIT_DATA, "%s: no \"completion_ids\", and no tokenizer for the text (-t FILE, or tokenizer.json in "
                   "--model)", where);
        const char *p = str_field(it->rec, "prompt", where, 0), *c = str_field(it->rec, "completion", where, 1);
        qw_buf s = {0};
        if (p) qw_buf_adds(&s, p);
        qw_buf_adds(&s, c);
        if (qw_tok_encode(model_tok, s.p ? s.p : "", s.n, &ids)) qw_die(QW_EXIT_DATA, "%s: %s", where, qw_error_msg());
        qw_buf_free(&s);
        for (size_t i = 0; i < ids.n; i++)
            if (ids.v[i] >= model_vocab)
                qw_die(QW_EXIT_DATA, "%s: token %d is outside the reward model's vocabulary (%d): another tokenizer?", where,
                       ids.v[i], model_vocab);
    }
    if (!ids.n) qw_die(QW_EXIT_DATA, "%s: nothing to score (no prompt or completion tokens)", where);
    it->ids = ids.v;
    it->n_ids = (int)ids.n;
}


static item *read_records(const qw_buf *b, const char *path, long *n_items)
{
    item *v = NULL;
    long n = 0, cap = 0, line = 0;
    char where[4200];
    for (size_t at = 0; at < b->n;) {
        const char *s = b->p + at, *nl = memchr(s, '\n', b->n - at);
        size_t len = nl ? (size_t)(nl - s) : b->n - at;
        at += len + (nl != NULL);
        line++;
        if (len && s[len - 1] == '\r') len--;
        snprintf(where, sizeof where, "'%s': line %ld", src_name(path), line);
        cJSON *rec = qw_chat_json_parse(s, len, where);
        if (!rec) qw_die_last();
        if (!cJSON_IsObject(rec)) qw_die(QW_EXIT_DATA, "%s: not a JSON object", where);
        if (n == cap) v = qw_realloc(v, (cap = cap ? 2 * cap : 64) * sizeof *v);
        item *it = &v[n++];
        memset(it, 0, sizeof *it);
        it->line = line, it->text = s, it->len = len, it->rec = rec;
        if (qw_scorer_check(&sc, rec, where, &it->completion)) qw_die_last();
        if (uses[QW_VER_MODEL]) model_ids(it, where);
    }
    *n_items = n;
    return v;
}

/* ---- scoring: math, think and code by the workers; cmd in order by the main thread ---- */

#define sbx sc.sandbox
static item *items;
static long n_items, next_item;
static char *done_flags;
static volatile int stop_all;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static int cancelled(void) { return stop_all || qw_signals_stop(); }

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        long i = cancelled() ? n_items : next_item++;
        pthread_mutex_unlock(&mu);
        if (i >= n_items) break;
        item *it = &items[i];
        if (qw_score_local(&sc, it->rec, it->completion, &it->score)) qw_die_last();
        pthread_mutex_lock(&mu);
        done_flags[i] = 1;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
    }
    return NULL;
}

/* Ask the reward program about one record; its reply must be an object with a number "reward". */
static int score_cmd(qw_coproc *cp, item *it, const char *path, double timeout)
{
    char where[4200];
    snprintf(where, sizeof where, "'%s': line %ld", src_name(path), it->line);
    return qw_score_cmd(cp, it->text, it->len, timeout, where, &it->score);
}


/* --verifier model: every record's reward, o_batch sequences per forward. */
static void score_model(const qw_config *c)
{
    const qw_ops *ops;
    if (qw_backend_select(qw_common_opts.device, NULL, qw_common_opts.threads, 0, &ops)) qw_die_last();
    qw_params P;
    qw_st *st;
    if (qw_params_init(&P, c) || qw_st_open(o_model, &st) || qw_params_load(&P, st, 0)) qw_die_last();
    qw_st_close(st);
    if (qw_params_to_device(&P, ops)) qw_die_last();
    int T = 1, B = o_batch < n_items ? o_batch : (int)n_items;
    for (long i = 0; i < n_items; i++) T = items[i].n_ids > T ? items[i].n_ids : T;
    if (B < 1) B = 1;
    qw_model *m;
    if (qw_model_new(ops, &P, B, T, NULL, &m)) qw_die_last();
    int32_t *ids = qw_malloc((size_t)B * T * sizeof *ids), *idx = qw_malloc((size_t)B * sizeof *idx);
    float *h = qw_malloc((size_t)B * c->hidden_size * sizeof *h), *r = qw_malloc((size_t)B * sizeof *r);
    int pad = c->pad_token_id;
    for (long i0 = 0; i0 < n_items && !qw_signals_stop(); i0 += B) {
        int n = n_items - i0 < B ? (int)(n_items - i0) : B;
        for (size_t k = 0; k < (size_t)B * T; k++) ids[k] = pad >= 0 ? pad : 0;
        for (int j = 0; j < n; j++) {
            const item *it = &items[i0 + j];
            memcpy(ids + (size_t)j * T, it->ids, (size_t)it->n_ids * sizeof *ids);
            idx[j] = j * T + qw_rm_pool(it->ids, it->n_ids, pad);
        }
        qw_batch b = {.ids = ids};
        if (qw_rm_forward(m, &P, &b, idx, n, h, r)) qw_die_last();
        for (int j = 0; j < n; j++) items[i0 + j].score.value[QW_VER_MODEL] = r[j];
    }
    free(ids), free(idx), free(h), free(r);
    qw_model_free(m);
    qw_params_free(&P);
}

/* ---- qw-reward train: a reward model by the Bradley–Terry loss (qw/rm.h) ---- */

typedef struct {
    int32_t *seq[2];   /* prompt + chosen, prompt + rejected */
    int n[2];
    float margin;
} rm_pair;

static const char *pairs_src;

/* One pair from a line: the ids form (qw/pref.h) or, with a tokenizer, the
 * text form "prompt" (optional), "chosen", "rejected"; the margin from
 * margin_field when given. */
static void parse_pair(char *text, long line, int V, const qw_tok *tok, const char *margin_field, rm_pair *out)
{
    cJSON *o = cJSON_Parse(text);
    if (!cJSON_IsObject(o)) qw_die(QW_EXIT_DATA, "'%s': line %ld: not a JSON object", pairs_src, line);
    memset(out, 0, sizeof *out);
    if (cJSON_GetObjectItemCaseSensitive(o, "chosen_ids") || !cJSON_GetObjectItemCaseSensitive(o, "chosen")) {
        qw_pref_pair p;
        if (qw_pref_parse_ids(text, pairs_src, line, V, &p)) qw_die_last();
        const int32_t *c[2] = {p.chosen, p.rejected};
        int nc[2] = {p.n_chosen, p.n_rejected};
        for (int k = 0; k < 2; k++) {
            out->n[k] = p.n_prompt + nc[k];
            out->seq[k] = qw_malloc((size_t)out->n[k] * sizeof(int32_t));
            memcpy(out->seq[k], p.prompt, (size_t)p.n_prompt * sizeof(int32_t));
            memcpy(out->seq[k] + p.n_prompt, c[k], (size_t)nc[k] * sizeof(int32_t));
        }
        qw_pref_pair_free(&p);
    } else {
        if (!tok)
            qw_die(QW_EXIT_DATA, "'%s': line %ld: a text pair (\"chosen\", \"rejected\") needs the tokenizer (-t FILE)",
                   pairs_src, line);
        cJSON *pr = cJSON_GetObjectItemCaseSensitive(o, "prompt");
        if (pr && !cJSON_IsString(pr)) qw_die(QW_EXIT_DATA, "'%s': line %ld: \"prompt\" is not a string", pairs_src, line);
        const char *names[2] = {"chosen", "rejected"};
        for (int k = 0; k < 2; k++) {
            cJSON *x = cJSON_GetObjectItemCaseSensitive(o, names[k]);
            if (!cJSON_IsString(x)) qw_die(QW_EXIT_DATA, "'%s': line %ld: \"%s\" is not a string", pairs_src, line, names[k]);
            qw_buf s = {0};
            if (pr) qw_buf_adds(&s, pr->valuestring);
            qw_buf_adds(&s, x->valuestring);
            qw_ids ids = {0};
            if (qw_tok_encode(tok, s.p ? s.p : "", s.n, &ids))
                qw_die(QW_EXIT_DATA, "'%s': line %ld: \"%s\": %s", pairs_src, line, names[k], qw_error_msg());
            if (!ids.n) qw_die(QW_EXIT_DATA, "'%s': line %ld: \"%s\" gives no tokens", pairs_src, line, names[k]);
            for (size_t i = 0; i < ids.n; i++)
                if (ids.v[i] >= V)
                    qw_die(QW_EXIT_DATA, "'%s': line %ld: token %d is outside the model's vocabulary (%d): another tokenizer?",
                           pairs_src, line, ids.v[i], V);
            out->seq[k] = ids.v;
            out->n[k] = (int)ids.n;
            qw_buf_free(&s);
        }
    }
    if (margin_field) {
        cJSON *m = cJSON_GetObjectItemCaseSensitive(o, margin_field);
        if (!cJSON_IsNumber(m) || !isfinite(m->valuedouble))
            qw_die(QW_EXIT_DATA, "'%s': line %ld: no number \"%s\" (--margin-field)", pairs_src, line, margin_field);
        out->margin = (float)m->valuedouble;
    }
    cJSON_Delete(o);
}

static rm_pair *read_pairs(const char *path, int V, const qw_tok *tok, const char *margin_field, long *n_out)
{
    qw_buf in = {0};
    if (qw_read_input(path, &in)) qw_die_last();
    qw_buf_addc(&in, 0);
    rm_pair *v = NULL;
    long n = 0, cap = 0, line = 0;
    for (char *s = in.p, *end = in.p + in.n - 1; s < end;) {
        char *nl = memchr(s, '\n', (size_t)(end - s)), *e = nl ? nl : end;
        line++;
        *e = 0;
        char *p = s;
        s = nl ? nl + 1 : end;
        while (*p == ' ' || *p == '\t' || *p == '\r') p++;
        if (!*p) continue;
        if (n == cap) v = qw_realloc(v, (cap = cap ? 2 * cap : 64) * sizeof *v);
        parse_pair(p, line, V, tok, margin_field, &v[n++]);
    }
    qw_buf_free(&in);
    if (!n) qw_die(QW_EXIT_DATA, "'%s': no preference pairs", pairs_src);
    *n_out = n;
    return v;
}

/* Pair k of the stream of pairs the steps take: epochs shuffled by
 * (seed, epoch), qw_rng_epoch_item. */
static long pair_at(long k, long n, uint64_t seed, long **perm, long *perm_epoch)
{
    return qw_rng_epoch_item(k, n, seed, 0x72657761726400ULL, perm, perm_epoch);
}

static int train_main(int argc, char **argv)
{
    static qw_train_opts o;
    qw_train_defaults(&o);
    /* TRL's RewardConfig / TrainingArguments: AdamW (0.9, 0.999, 1e-8), no weight decay, clip 1; lr constant here */
    o.sched.lr = 1e-5;
    o.sched.kind = QW_SCHED_CONSTANT;
    o.sched.min_lr_ratio = 1;
    o.adamw.beta2 = 0.999;
    o.adamw.weight_decay = 0;
    o.value_head = 1;
    static const char *margin_field, *precision, *dump, *tok_path;
    static int batch_pairs = 8, micro_pairs, deterministic;
    static long long steps_opt;
    static double epochs_opt, center = 0;
    static const qw_opt table[] = {
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Model and data:"},
        {"model", 'm', QW_OPT_STR, &o.model_dir, "START", "the model to start from: a causal LM (its LM head is replaced) or a reward model"},
        {"out", 'o', QW_OPT_STR, &o.out, "OUT", "checkpoints: OUT/step-NNNNNN/ and OUT/latest"},
        {"tokenizer", 't', QW_OPT_STR, &tok_path, "FILE", "tokenizer.json: for text pairs; recorded in the checkpoints"},
        {"margin-field", 0, QW_OPT_STR, &margin_field, "NAME", "subtract each pair's number NAME from its reward difference"},
        {"center-rewards", 0, QW_OPT_DOUBLE, &center, "X", "add X times the mean of (chosen + rejected)^2 (default 0)"},
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Optimisation:"},
        {"steps", 0, QW_OPT_LONG, &steps_opt, "N", "optimizer steps (default: one epoch)"},
        {"epochs", 0, QW_OPT_DOUBLE, &epochs_opt, "E", "passes over the pairs instead of --steps"},
        {"batch-pairs", 0, QW_OPT_INT, &batch_pairs, "N", "pairs per optimizer step (default 8)"},
        {"micro-pairs", 0, QW_OPT_INT, &micro_pairs, "N", "pairs per forward/backward (default: --batch-pairs)"},
        {"lr", 0, QW_OPT_DOUBLE, &o.sched.lr, "X", "learning rate, constant (default 1e-5)"},
        QW_TRAIN_ADAMW_OPTS(o),
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Checkpoints and output:"},
        {"save-every", 0, QW_OPT_LONG, &o.save_every, "N", "save every N steps (default: at the end)"},
        {"keep-last", 0, QW_OPT_INT, &o.keep_last, "N", "keep the newest N checkpoints (default 3)"},
        {"resume", 0, QW_OPT_STR, &o.resume, "DIR", "continue a run from its checkpoint (a step directory or OUT)"},
        {"log", 0, QW_OPT_STR, &o.log, "FILE", "metrics as JSONL, one object per step"},
        {"tensorboard", 0, QW_OPT_STR, &o.tb_dir, "DIR", "TensorBoard event file in DIR"},
        QW_TRAIN_DUMP_GRADS_OPT(dump),
        QW_TRAIN_COMPUTE_OPTS(precision, deterministic),
        QW_COMMON_OPTS,
        {0},
    };
    const qw_prog_info tinfo = {
        "qw-reward train", "-m START -o OUT [options] PAIRS.jsonl",
        "Train a reward model (TRL's RewardTrainer): the Bradley-Terry loss -log sigmoid(r_chosen - r_rejected)\n"
        "on preference pairs, the reward being a scalar head on the last token's hidden state.",
        table};
    if (argc == 1) {
        qw_print_help(&tinfo, stderr);
        return QW_EXIT_USAGE;
    }
    int first = qw_parse_args(&tinfo, argc, argv);
    if (argc - first > 1) qw_usage_error("unexpected argument '%s'", argv[first + 1]);
    if (argc - first < 1) qw_usage_error("give PAIRS.jsonl ('-': standard input)");
    const char *path = argv[first];
    pairs_src = strcmp(path, "-") ? path : "<stdin>";
    if (!o.model_dir && !o.resume) qw_usage_error("give -m START (or --resume)");
    if (!o.out) qw_usage_error("give -o OUT");
    if (batch_pairs < 1) qw_usage_error("--batch-pairs must be at least 1");
    if (micro_pairs < 0) qw_usage_error("--micro-pairs must be at least 1");
    if (!micro_pairs || micro_pairs > batch_pairs) micro_pairs = batch_pairs;
    if (!(center >= 0) || !isfinite(center)) qw_usage_error("--center-rewards must be at least 0");
    if (steps_opt && epochs_opt) qw_usage_error("give --steps or --epochs, not both");
    if (steps_opt < 0 || epochs_opt < 0) qw_usage_error("--steps and --epochs must be positive");
    if (margin_field && !margin_field[0]) qw_usage_error("--margin-field: an empty name");
    o.tokenizer = tok_path;
    o.seed = (uint64_t)qw_common_opts.seed;
    o.quiet = qw_common_opts.quiet;

    /* read and check the pairs before anything is written */
    qw_config mc;
    if (qw_config_load(o.model_dir ? o.model_dir : o.resume, &mc)) {
        char *dir = NULL;   /* --resume OUT: the config of its latest step */
        if (o.model_dir || qw_ckpt_resolve(o.resume, &dir) || qw_config_load(dir, &mc)) qw_die_last();
        free(dir);
    }
    qw_tok *tok = NULL;
    if (tok_path) {
        char *tp = qw_tok_path(tok_path, NULL);
        if (qw_tok_load(tp, &tok)) qw_die_last();
        free(tp);
    }
    long n;
    rm_pair *R = read_pairs(path, mc.vocab_size, tok, margin_field, &n);
    qw_tok_free(tok);
    int T = 1;
    for (long i = 0; i < n; i++)
        for (int k = 0; k < 2; k++) T = R[i].n[k] > T ? R[i].n[k] : T;
    long steps = steps_opt ? (long)steps_opt : (long)ceil((epochs_opt ? epochs_opt : 1) * n / batch_pairs);
    if (steps < 1) steps = 1;
    o.steps = steps;
    o.sched.total = steps;
    o.seq_len = T;
    o.batch_tokens = (long long)batch_pairs * 2 * T;
    if (qw_sched_check(&o.sched)) qw_die_last();
    if (qw_backend_select(qw_common_opts.device, precision, qw_common_opts.threads, deterministic, &o.ops)) qw_die_last();

    qw_trainer *t;
    int rc = qw_trainer_open(&o, &t);
    if (!rc && qw_trainer_size(t) > 1) rc = qw_error(QW_EXIT_USAGE, "one MPI rank only for now");
    int pad = rc ? -1 : qw_trainer_params(t)->cfg.pad_token_id;
    int B = 2 * micro_pairs, n_micro = (batch_pairs + micro_pairs - 1) / micro_pairs;
    qw_trainer_batch tb = {qw_trainer_identity(t), T, o.batch_tokens, B, n_micro, NULL, NULL, 1};
    if (!rc) rc = qw_trainer_begin(t, &tb);
    if (rc) return qw_trainer_close(t, rc);

    size_t BT = (size_t)B * T;
    int32_t *ids = qw_malloc(BT * sizeof *ids), *idx = qw_malloc((size_t)B * sizeof *idx);
    float *r = qw_malloc((size_t)B * sizeof *r), *dr = qw_malloc((size_t)B * sizeof *dr);
    float *mg = qw_malloc((size_t)micro_pairs * sizeof *mg);
    long *perm = NULL, perm_epoch = -1;
    long long tokens = qw_trainer_start_tokens(t);
    for (long step = qw_trainer_start_step(t); step < steps && !rc; step++) {
        double t0 = qw_now();
        qw_trainer_zero_grad(t);
        qw_rm_sums s = {0};
        long long step_tokens = 0;
        for (int m = 0; m < n_micro && !rc; m++) {
            int S = batch_pairs - m * micro_pairs < micro_pairs ? batch_pairs - m * micro_pairs : micro_pairs;
            for (size_t k = 0; k < BT; k++) ids[k] = pad >= 0 ? pad : 0;
            for (int p = 0; p < S; p++) {
                const rm_pair *x = &R[pair_at((long)step * batch_pairs + m * micro_pairs + p, n, o.seed, &perm, &perm_epoch)];
                for (int k = 0; k < 2; k++) {   /* chosen rows first, then rejected */
                    int row = k * S + p;
                    memcpy(ids + (size_t)row * T, x->seq[k], (size_t)x->n[k] * sizeof *ids);
                    idx[row] = row * T + qw_rm_pool(x->seq[k], x->n[k], pad);
                    step_tokens += x->n[k];
                }
                mg[p] = x->margin;
            }
            qw_batch b = {.ids = ids};
            if ((rc = qw_trainer_forward_value(t, &b, idx, 2 * S, r))) break;
            qw_rm_bt_loss(r, r + S, margin_field ? mg : NULL, S, batch_pairs, center, dr, dr + S, &s);
            rc = qw_trainer_backward_value(t, dr);
        }
        double sums[5] = {s.loss, s.correct, s.margin, s.chosen, s.rejected};
        if (rc || (rc = qw_trainer_reduce(t, sums, 5))) break;
        if (step == qw_trainer_start_step(t) && dump && qw_trainer_dump_grads(t, dump)) qw_die_last();
        double norm, lr;
        qw_trainer_update(t, step, &norm, &lr);
        tokens += step_tokens;
        double dt = qw_now() - t0;
        qw_metric mt[] = {
            {"loss", sums[0]}, {"accuracy", sums[1] / batch_pairs}, {"margin", sums[2] / batch_pairs},
            {"rewards_chosen", sums[3] / batch_pairs}, {"rewards_rejected", sums[4] / batch_pairs},
            {"lr", lr}, {"grad_norm", norm}, {"tokens", (double)tokens}, {"pairs_per_s", batch_pairs / (dt > 0 ? dt : 1e-9)},
        };
        if ((rc = qw_trainer_log(t, step + 1, mt, (int)(sizeof mt / sizeof *mt)))) break;
        qw_trainer_progress(t, step + 1, "step %ld/%ld  loss %.4f  accuracy %.3f", step + 1, steps, sums[0],
                            sums[1] / batch_pairs);
        if (step + 1 == steps || !qw_common_opts.quiet)
            qw_trainer_say(t, "step %ld/%ld: loss %.6g  accuracy %.4g  margin %.4g  grad_norm %.4g", step + 1, steps,
                           sums[0], sums[1] / batch_pairs, sums[2] / batch_pairs, norm);
        rc = qw_trainer_end_step(t, step + 1, tokens);
    }
    free(ids), free(idx), free(r), free(dr), free(mg), free(perm);
    for (long i = 0; i < n; i++) free(R[i].seq[0]), free(R[i].seq[1]);
    free(R);
    rc = qw_trainer_close(t, rc);
    if (rc) qw_die_last();
    qw_close_stdout();
    return 0;
}

int main(int argc, char **argv)
{
    qw_set_prog(argv[0]);
    if (argc > 1 && !strcmp(argv[1], "train")) return train_main(argc - 1, argv + 1);
    if (argc == 1) {
        qw_print_help(&info, stderr);
        exit(QW_EXIT_USAGE);
    }
    int first = qw_parse_args(&info, argc, argv);
    if (argc - first > 1) qw_usage_error("unexpected argument '%s' (give one FILE)", argv[first + 1]);
    const char *path = first < argc ? argv[first] : NULL;
    if (!o_verifier) qw_usage_error("give --verifier");
    if (qw_scorer_parse(o_verifier, &sc)) qw_usage_error("%s", qw_error_msg());
    sc.answer_field = o_answer_field;
    if (uses[QW_VER_MODEL] && !o_model) qw_usage_error("--verifier model needs --model DIR");
    if (o_model && !uses[QW_VER_MODEL]) qw_usage_error("--model is for --verifier model");
    if (o_tok && !uses[QW_VER_MODEL]) qw_usage_error("--tokenizer is for --verifier model");
    if (o_batch < 1) qw_usage_error("--batch: need N >= 1");
    if (uses[QW_VER_CMD] && !o_cmd) qw_usage_error("--verifier cmd needs --cmd \"PROG ARGS\"");
    if (o_cmd && !uses[QW_VER_CMD]) qw_usage_error("--cmd is for --verifier cmd");
    if (o_cmd && !o_cmd[0]) qw_usage_error("--cmd: an empty command");
    if (!o_answer_field[0]) qw_usage_error("--answer-field: an empty name");
    if (o_timeout != -1 && !(o_timeout > 0 && isfinite(o_timeout))) qw_usage_error("--timeout: need S > 0");
    if (o_jobs < 0) qw_usage_error("--jobs: need N >= 1");
    if (o_memory < (16LL << 20)) qw_usage_error("--memory: need at least 16M");
    if (o_max_procs < 1) qw_usage_error("--max-procs: need N >= 1");
    if (o_max_output < 0) qw_usage_error("--max-output: need BYTES >= 0");
    qw_sandbox_mode want = 0;
    if (o_sandbox) {
        if (!strcmp(o_sandbox, "namespaces")) want = QW_SANDBOX_NAMESPACES;
        else if (!strcmp(o_sandbox, "rlimits")) want = QW_SANDBOX_RLIMITS;
        else if (strcmp(o_sandbox, "auto")) qw_usage_error("--sandbox: '%s' is not auto, namespaces or rlimits", o_sandbox);
    }
    if (!path && isatty(STDIN_FILENO)) {
        qw_print_help(&info, stderr);
        exit(QW_EXIT_USAGE);
    }

    qw_config rm_cfg;
    char *rm_dir = NULL;
    if (uses[QW_VER_MODEL]) {   /* the reward model's config and tokenizer, to check the records against */
        if (qw_ckpt_model_dir(o_model, &rm_dir) || qw_config_load(rm_dir, &rm_cfg)) qw_die_last();
        if (!rm_cfg.score_head)
            qw_die(QW_EXIT_DATA, "'%s': not a reward model (architectures Qwen3ForSequenceClassification with one label and "
                   "score.weight); 'qw-reward train' makes one", o_model);
        model_vocab = rm_cfg.vocab_size;
        char *tp = qw_tok_path(o_tok ? o_tok : rm_dir, NULL);
        struct stat tsb;
        if ((o_tok || stat(tp, &tsb) == 0) && qw_tok_load(tp, &model_tok)) qw_die_last();
        free(tp);
        o_model = rm_dir;
    }
    qw_buf in = {0};
    if (qw_read_input(path, &in)) qw_die_last();
    items = read_records(&in, path, &n_items);
    if (uses[QW_VER_MODEL]) {
        qw_signals_install();
        if (n_items) score_model(&rm_cfg);
        if (qw_signals_stop()) {
            qw_warn("stopped by a signal before any record was written");
            exit(qw_signals_status(qw_signals_stop()));
        }
    }


    if (uses[QW_VER_CODE]) {
        qw_sandbox_mode mode;
        if (qw_sandbox_probe(want, o_python, &mode)) qw_die_last();
        if (!qw_common_opts.quiet) fprintf(stderr, "%s: code runs in a sandbox: %s\n", qw_prog, qw_sandbox_mode_name(mode));
    }
    if (o_timeout > 0) sbx.wall_s = sbx.cpu_s = o_timeout;
    sbx.mem_bytes = (size_t)o_memory;
    sbx.procs = o_max_procs;
    sbx.out_cap = (size_t)o_max_output;
    sbx.cancelled = cancelled;
    qw_coproc *cp = NULL;
    if (uses[QW_VER_CMD] && qw_coproc_start(o_cmd, &cp)) qw_die_last();

    /* output: a regular -o file appears when complete; devices and pipes directly */
    FILE *out = stdout;
    qw_afile af = { 0 };
    if (o_out) {
        struct stat sb;
        if (stat(o_out, &sb) != 0 || S_ISREG(sb.st_mode)) {
            if (qw_afile_open(o_out, &af)) qw_die_last();
            out = af.f;
        } else if (!(out = fopen(o_out, "w"))) {
            qw_die(QW_EXIT_FAIL, "'%s': %s", o_out, strerror(errno));
        }
    }

    qw_signals_install();
    done_flags = qw_calloc(n_items ? n_items : 1, 1);
    int jobs = o_jobs ? o_jobs : qw_thread_count();
    int n_threads = uses[QW_VER_CODE] ? jobs : 1;
    if (n_threads > n_items) n_threads = n_items ? (int)n_items : 1;
    pthread_t *th = qw_calloc(n_threads, sizeof *th);
    for (int t = 0; t < n_threads; t++)
        if (pthread_create(&th[t], NULL, worker, NULL)) qw_die(QW_EXIT_FAIL, "cannot start a thread");

    qw_progress pr;
    qw_progress_init(&pr);
    double t0 = qw_now(), sum = 0;
    long written = 0, verdicts[4] = { 0 };
    int rc = 0, sig = 0;
    double cmd_timeout = o_timeout > 0 ? o_timeout : 60;
    for (long i = 0; i < n_items; i++) {
        if ((sig = qw_signals_stop())) break;
        if (cp && (rc = score_cmd(cp, &items[i], path, cmd_timeout))) break;
        pthread_mutex_lock(&mu);
        while (!done_flags[i] && !qw_signals_stop()) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100000000;
            if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
            pthread_cond_timedwait(&cv, &mu, &ts);
        }
        int ready = done_flags[i];
        pthread_mutex_unlock(&mu);
        /* a record finished because the signal cancelled its program is not written */
        if (!ready || qw_signals_stop()) { sig = qw_signals_stop(); break; }
        qw_buf b = {0};
        qw_score_format(&sc, &items[i].score, items[i].rec, items[i].text, items[i].len, &b);
        if (fwrite(b.p, 1, b.n, out) != b.n) qw_die(QW_EXIT_FAIL, "write error on the output");
        if (!af.f) fflush(out);
        qw_buf_free(&b);
        sum += qw_score_total(&sc, &items[i].score);
        if (uses[QW_VER_CODE]) verdicts[items[i].score.code.verdict]++;
        written++;
        char a[16];
        qw_progress_update(&pr, (double)written, (double)n_items, "%s/%ld records", qw_human((double)written, a), n_items);
    }
    qw_progress_end(&pr);
    stop_all = 1;
    for (int t = 0; t < n_threads; t++) pthread_join(th[t], NULL);
    qw_coproc_end(cp);
    if (rc) {
        if (af.f) qw_afile_abort(&af);
        qw_die_last();
    }
    if (af.f) {
        if (qw_afile_commit(&af)) qw_die_last();
    } else if (o_out) {
        int bad = fflush(out) != 0 || ferror(out);
        if (fclose(out) != 0) bad = 1;
        if (bad) qw_die(QW_EXIT_FAIL, "write error on '%s'", o_out);
    }
    if (!qw_common_opts.quiet) {
        double dt = qw_now() - t0;
        fprintf(stderr, "%s: %ld records, mean reward %.4f, %.1f s", qw_prog, written, written ? sum / written : 0.0, dt);
        if (uses[QW_VER_CODE])
            fprintf(stderr, " (passed %ld, failed %ld, timeout %ld, error %ld)", verdicts[0], verdicts[1], verdicts[2],
                    verdicts[3]);
        fputc('\n', stderr);
    }
    if (verdicts[QW_CODE_ERROR]) qw_warn("%ld programs could not be started in the sandbox (verdict \"error\")", verdicts[3]);
    for (long i = 0; i < n_items; i++) {
        cJSON_Delete(items[i].rec);
        qw_score_free(&items[i].score);
        free(items[i].ids);
    }
    free(items);
    free(rm_dir);
    qw_tok_free(model_tok);
    free(done_flags);
    free(th);
    qw_buf_free(&in);
    if (sig) {
        qw_warn("stopped by a signal: %ld of %ld records are written", written, n_items);
        fflush(stdout);
        exit(qw_signals_status(sig));
    }
    qw_close_stdout();
    return 0;
}
