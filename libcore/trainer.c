/* trainer.c — parameters, gradients, moments, reduction, the optimizer
 * step, metrics, checkpoints and signals under the training loops
 * (qw/trainer.h). */
#include "qw/trainer.h"

#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qw/ckpt.h"
#include "qw/cli.h"
#include "qw/comm.h"
#include "qw/config.h"
#include "qw/signals.h"
#include "qw/st.h"
#include "qw/tok.h"
#include "qw/tokenize.h"

struct qw_trainer {
    const qw_train_opts *o;
    qw_comm *comm;
    int rank, size;
    int stopped;               /* ended by SIGINT/SIGTERM (after saving) */
    qw_params P, G, M, V;      /* on the backend after begin (host until then) */
    int have_params, have_grads;
    float *host_grads;         /* several ranks: the gradients staged for the allreduce */
    qw_model *model;
    qw_metrics *metrics;
    uint64_t identity;         /* tokenizer identity of the data */
    char *tokenizer_dir;       /* copied into checkpoints */
    char *model_dir;           /* --model, resolved to a step directory */
    char *resume_dir;          /* --resume, resolved */
    qw_train_state state;      /* of the resumed checkpoint */
    long start;
    long long start_tokens;
    qw_trainer_batch b;
    float aux_coef;
    qw_progress prog;
};

int qw_trainer_rank(const qw_trainer *t) { return t->rank; }
int qw_trainer_size(const qw_trainer *t) { return t->size; }
const qw_params *qw_trainer_params(const qw_trainer *t) { return &t->P; }
uint64_t qw_trainer_identity(const qw_trainer *t) { return t->identity; }
long qw_trainer_start_step(const qw_trainer *t) { return t->start; }
long long qw_trainer_start_tokens(const qw_trainer *t) { return t->start_tokens; }
qw_model *qw_trainer_model(qw_trainer *t) { return t->model; }
float qw_trainer_aux_coef(const qw_trainer *t) { return t->aux_coef; }
float qw_trainer_aux_weight(const qw_trainer *t) { return t->aux_coef / t->b.micro_global; }

/* The data's tokenizer: --tokenizer, or the one of a checkpoint directory. */
static int open_tokenizer(qw_trainer *t, const char *arg)
{
    char *path = qw_tok_path(arg, &t->tokenizer_dir);
    qw_tok *tok;
    int rc = qw_tok_load(path, &tok);
    free(path);
    if (rc) return rc;
    t->identity = qw_tok_identity(tok);
    qw_tok_free(tok);
    return 0;
}

static int apply_overrides(const qw_train_opts *o, qw_config *c)
{
    if (o->rope_theta > 0) c->rope_theta = o->rope_theta;
    if (o->yarn_factor > 0) {
        c->rope_type = QW_ROPE_YARN;
        c->rope_factor = o->yarn_factor;
        c->rope_original_max_position = o->yarn_original_max > 0 ? o->yarn_original_max : c->max_position_embeddings;
        if (c->yarn_beta_fast == 0) c->yarn_beta_fast = 32;
        if (c->yarn_beta_slow == 0) c->yarn_beta_slow = 1;
        c->yarn_truncate = 1;
        double max_pos = c->rope_original_max_position * o->yarn_factor;
        if (!(max_pos < INT_MAX))
            return qw_error(QW_EXIT_USAGE, "--yarn-factor %g × %d original positions is more than %d positions",
                            o->yarn_factor, c->rope_original_max_position, INT_MAX);
        c->max_position_embeddings = (int)max_pos;
    }
    return 0;
}

/* Build P (and M, V) on the host from --config, --model or the checkpoint
 * to resume (whose values qw_ckpt_load fills in later). */
static int setup_params(qw_trainer *t)
{
    const qw_train_opts *o = t->o;
    const char *resume_dir = t->resume_dir;
    qw_config cfg;
    if (o->model_dir && qw_ckpt_model_dir(o->model_dir, &t->model_dir)) return qw_error_status();
    const char *cfg_src = o->config_path ? o->config_path : t->model_dir ? t->model_dir : resume_dir;
    if (!cfg_src) return qw_error(QW_EXIT_USAGE, "give --config, --model or --resume");
    if (qw_config_load(cfg_src, &cfg)) return qw_error_status();
    if ((!resume_dir || o->config_path || o->model_dir) && apply_overrides(o, &cfg)) return qw_error_status();
    if (qw_params_init(&t->P, &cfg)) return qw_error_status();
    t->have_params = 1;
    if (qw_params_alloc_like(&t->M, &t->P) || qw_params_alloc_like(&t->V, &t->P)) return qw_error_status();
    if (t->model_dir && !resume_dir) {
        qw_st *st;
        if (qw_st_open(t->model_dir, &st)) return qw_error_status();
        int rc = qw_params_load(&t->P, st, 0);
        qw_st_close(st);
        if (rc) return rc;
    } else if (!resume_dir) {
        qw_params_init_random(&t->P, o->seed);
    }
    return 0;
}

int qw_trainer_open(const qw_train_opts *o, qw_trainer **out)
{
    qw_trainer *t = qw_calloc(1, sizeof *t);
    *out = t;
    t->o = o;
    qw_progress_init(&t->prog);
    int rc = qw_comm_init(&t->comm);
    if (rc) return rc;
    t->rank = qw_comm_rank(t->comm);
    t->size = qw_comm_size(t->comm);
    if (t->rank != 0) t->prog.enabled = 0;
    if (o->batch_tokens / o->seq_len < t->size)
        return qw_error(QW_EXIT_USAGE, "--batch-tokens %lld gives %lld rows per step, fewer than the %d ranks",
                        o->batch_tokens, o->batch_tokens / o->seq_len, t->size);
    qw_signals_install();
    if (o->resume && (rc = qw_ckpt_resolve(o->resume, &t->resume_dir))) return rc;
    rc = setup_params(t);
    /* the data must come from the model's tokenizer: --tokenizer, else the
     * one saved with the checkpoint we start from */
    const char *from = t->model_dir ? t->model_dir : t->resume_dir;
    char *tj = from ? qw_tok_path(from, NULL) : NULL;
    struct stat sb;
    if (!rc && o->tokenizer) rc = open_tokenizer(t, o->tokenizer);
    else if (!rc && tj && stat(tj, &sb) == 0)
        rc = open_tokenizer(t, from);
    free(tj);
    if (!rc && t->resume_dir) rc = qw_ckpt_load(t->resume_dir, &t->P, &t->M, &t->V, &t->state);
    t->start = t->resume_dir ? t->state.step : 0;
    t->start_tokens = t->resume_dir ? t->state.tokens : 0;
    return rc;
}

/* The run's settings as JSON, stored in state.json and checked at resume. */
static cJSON *run_json(const qw_trainer *t)
{
    cJSON *j = cJSON_CreateObject();
    char hex[24];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)t->identity);
    cJSON_AddStringToObject(j, "data_identity", hex);
    cJSON_AddNumberToObject(j, "seq_len", t->b.seq_len);
    cJSON_AddNumberToObject(j, "batch_tokens", (double)t->b.batch_tokens);
    cJSON_AddNumberToObject(j, "steps", t->o->steps);
    cJSON_AddNumberToObject(j, "clip", t->o->clip);
    cJSON_AddNumberToObject(j, "ranks", t->size);
    return j;
}

/* The checkpoint's recorded data identity and batch must match this run's. */
static int check_resumed_run(const qw_trainer *t)
{
    const qw_train_state *s = &t->state;
    const char *dir = t->resume_dir;
    const cJSON *id = s->run ? cJSON_GetObjectItemCaseSensitive(s->run, "data_identity") : NULL;
    if (cJSON_IsString(id)) {
        unsigned long long want = strtoull(id->valuestring, NULL, 16);
        if (want != t->identity)
            return qw_error(QW_EXIT_DATA, "'%s': trained on data of tokenizer %016llx, but --data is of tokenizer %016llx",
                            dir, want, (unsigned long long)t->identity);
    }
    const cJSON *bt = s->run ? cJSON_GetObjectItemCaseSensitive(s->run, "batch_tokens") : NULL;
    const cJSON *sl = s->run ? cJSON_GetObjectItemCaseSensitive(s->run, "seq_len") : NULL;
    /* compared as doubles: the file's numbers may be anything, no cast of them is safe */
    if ((cJSON_IsNumber(bt) && bt->valuedouble != (double)t->b.batch_tokens) ||
        (cJSON_IsNumber(sl) && sl->valuedouble != (double)t->b.seq_len))
        return qw_error(QW_EXIT_DATA, "'%s': saved with --seq-len %.15g --batch-tokens %.15g; resume with the same",
                        dir, cJSON_IsNumber(sl) ? sl->valuedouble : t->b.seq_len,
                        cJSON_IsNumber(bt) ? bt->valuedouble : (double)t->b.batch_tokens);
    return 0;
}

int qw_trainer_begin(qw_trainer *t, const qw_trainer_batch *b)
{
    const qw_train_opts *o = t->o;
    t->b = *b;
    int rc = 0;
    if (!t->identity) t->identity = b->data_identity;
    if (t->resume_dir && (rc = check_resumed_run(t))) return rc;
    if (!t->tokenizer_dir && t->resume_dir) t->tokenizer_dir = qw_strdup(t->resume_dir);
    if (!t->tokenizer_dir && t->model_dir) t->tokenizer_dir = qw_strdup(t->model_dir);
    qw_train_state_free(&t->state);
    if (t->start > o->steps)
        return qw_error(QW_EXIT_USAGE, "'%s' is at step %ld, past --steps %ld", t->resume_dir, t->start, o->steps);
    t->aux_coef = (float)(o->aux_coef >= 0 ? o->aux_coef
                          : t->P.cfg.arch == QW_ARCH_MOE ? t->P.cfg.router_aux_loss_coef : 0);
    /* the run's arenas live on the backend from here on */
    if ((rc = qw_params_to_device(&t->P, o->ops)) || (rc = qw_params_to_device(&t->M, o->ops)) ||
        (rc = qw_params_to_device(&t->V, o->ops)) || (rc = qw_params_alloc_like(&t->G, &t->P)))
        return rc;
    t->have_grads = 1;
    if (t->size > 1) t->host_grads = qw_malloc(t->G.total * sizeof(float));
    qw_model_opts mo = {.capacity_factor = o->capacity_factor, .recompute = o->recompute};
    if ((rc = qw_model_new(o->ops, &t->P, b->micro_rows, b->seq_len, &mo, &t->model))) return rc;
    if (t->rank == 0 && o->log && t->start > 0 && (rc = qw_metrics_truncate(o->log, t->start))) return rc;
    if (t->rank == 0 && (o->log || o->tb_dir) && (rc = qw_metrics_open(&t->metrics, o->log, o->tb_dir))) return rc;
    return 0;
}

const qw_params *qw_trainer_grads(const qw_trainer *t) { return &t->G; }

void qw_trainer_zero_grad(qw_trainer *t) { t->o->ops->zero(t->G.data, t->G.total * sizeof(float)); }

int qw_trainer_accumulate(qw_trainer *t, const qw_batch *b, qw_model_out *out)
{
    return qw_model_step(t->model, b, &t->G, qw_trainer_aux_weight(t), out);
}

int qw_trainer_forward(qw_trainer *t, const qw_batch *b, float *logp, qw_model_out *out)
{
    return qw_model_forward(t->model, b, NULL, logp, out);
}

int qw_trainer_backward(qw_trainer *t, const float *coef)
{
    int rc = qw_model_set_coef(t->model, coef);
    return rc ? rc : qw_model_backward(t->model, &t->G, qw_trainer_aux_weight(t));
}

int qw_trainer_reduce(qw_trainer *t, double *sums, int n)
{
    if (t->size <= 1) return 0;
    /* MPI sums host buffers: stage the gradients through one */
    const qw_ops *ops = t->o->ops;
    ops->download(t->host_grads, t->G.data, t->G.total * sizeof(float));
    int rc = qw_comm_allreduce_f32(t->comm, t->host_grads, t->G.total);
    if (!rc && n) rc = qw_comm_allreduce_f64(t->comm, sums, n);
    if (rc) return rc;
    ops->upload(t->G.data, t->host_grads, t->G.total * sizeof(float));
    return 0;
}

int qw_trainer_allreduce(qw_trainer *t, double *v, int n) { return qw_comm_allreduce_f64(t->comm, v, n); }

void qw_trainer_update(qw_trainer *t, long step, double *norm, double *lr)
{
    const qw_train_opts *o = t->o;
    *norm = sqrt(qw_grad_sumsq(&t->G));
    *lr = qw_sched_lr(&o->sched, step);
    qw_adamw_step(&o->adamw, &t->P, &t->G, &t->M, &t->V, step + 1, *lr, qw_clip_scale(*norm, o->clip));
    o->ops->sync();   /* the clock stops once the step's device work (the update too) has finished */
}

int qw_trainer_log(qw_trainer *t, long step, const qw_metric *m, int n)
{
    return t->rank == 0 && t->metrics ? qw_metrics_write(t->metrics, step, m, n) : 0;
}

void qw_trainer_progress(qw_trainer *t, long step, const char *fmt, ...)
{
    if (!t->prog.enabled) return;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    qw_progress_update(&t->prog, step - t->start, t->o->steps - t->start, "%s", line);
}

void qw_trainer_say(qw_trainer *t, const char *fmt, ...)
{
    if (t->rank != 0) return;
    qw_progress_end(&t->prog);
    if (t->o->quiet) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    qw_warn("%s", line);
}

static int save(qw_trainer *t, long step, long long tokens)
{
    const qw_train_opts *o = t->o;
    if (!o->out) return 0;
    int rc = 0;
    if (t->rank == 0) {
        qw_train_state s = {0};
        s.step = step;
        s.tokens = tokens;
        s.adamw = o->adamw;
        s.sched = o->sched;
        s.data = t->b.data_state ? t->b.data_state(t->b.ctx, step) : NULL;
        s.rng = cJSON_CreateObject();
        char seed[24];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
        cJSON_AddStringToObject(s.rng, "seed", seed);
        s.run = run_json(t);
        qw_ckpt_opts co = {o->out, o->keep_last, t->tokenizer_dir};
        char *dir = NULL;
        rc = qw_ckpt_save(&co, &t->P, &t->M, &t->V, &s, &dir);
        if (!rc && !o->quiet) qw_warn("saved '%s'", dir);
        free(dir);
        qw_train_state_free(&s);
    }
    /* every rank learns whether rank 0's save worked */
    double st = rc;
    if (qw_comm_allreduce_f64(t->comm, &st, 1)) return qw_error_status();
    if (st != 0 && !rc) return qw_error(QW_EXIT_FAIL, "checkpoint save failed on rank 0");
    return rc;
}

int qw_trainer_end_step(qw_trainer *t, long step, long long tokens)
{
    const qw_train_opts *o = t->o;
    double stop = qw_signals_stop() ? 1 : 0;
    int rc = qw_comm_allreduce_f64(t->comm, &stop, 1);
    if (rc) return rc;
    if (step == o->steps || stop > 0 || (o->save_every > 0 && step % o->save_every == 0)) {
        qw_progress_end(&t->prog);
        if ((rc = save(t, step, tokens))) return rc;
    }
    if (stop > 0) {
        /* saved, but unfinished: exit as a killed program would, so that
         * make and job scripts do not take the run for done */
        int sig = qw_signals_stop() ? qw_signals_stop() : SIGTERM;
        t->stopped = 1;
        return qw_error(qw_signals_status(sig), "stopped by %s after step %ld of %ld; continue with --resume '%s'",
                        sig == SIGINT ? "SIGINT" : "SIGTERM", step, o->steps, o->out ? o->out : "DIR");
    }
    return 0;
}

int qw_trainer_close(qw_trainer *t, int status)
{
    qw_progress_end(&t->prog);
    qw_model_free(t->model);
    if (t->have_params) {
        qw_params_free(&t->P);
        qw_params_free(&t->M);
        qw_params_free(&t->V);
    }
    if (t->have_grads) qw_params_free(&t->G);
    qw_metrics_close(t->metrics);
    qw_train_state_free(&t->state);
    free(t->host_grads);
    free(t->tokenizer_dir);
    free(t->model_dir);
    free(t->resume_dir);
    int size = t->size, rank = t->rank, stopped = t->stopped;
    qw_comm *comm = t->comm;
    free(t);
    if (!comm) return status;
    /* A failure on one rank must not leave the others waiting in a
     * collective: exit without finalizing, which makes mpirun end the job. */
    if (status && size > 1 && !stopped) {
        qw_warn("rank %d: %s", rank, qw_error_msg());
        exit(status);
    }
    qw_comm_finalize(comm);
    return status;
}

int qw_trainer_dump_grads(const qw_trainer *t, const char *path)
{
    if (t->rank != 0) return 0;
    const qw_params *G = &t->G;
    float *owned = NULL;
    const float *g = qw_params_host(G, &owned);
    qw_st_writer *w = qw_st_writer_new();
    for (int i = 0; i < G->n; i++) {
        char name[160];
        snprintf(name, sizeof name, "grad.%s", G->p[i].name);
        qw_st_writer_add(w, name, QW_DT_F32, G->p[i].ndim, G->p[i].shape, g + G->p[i].offset);
    }
    int rc = qw_st_writer_write(w, path);
    qw_st_writer_free(w);
    free(owned);
    return rc;
}

struct qw_frozen {
    qw_params P;
    qw_model *m;
};

int qw_frozen_open(const char *dir, const qw_ops *ops, int vocab, int rows, int seq_len, qw_frozen **out)
{
    *out = NULL;
    char *md = NULL;
    if (qw_ckpt_model_dir(dir, &md)) return qw_error_status();
    qw_frozen *f = qw_calloc(1, sizeof *f);
    qw_config c;
    qw_st *st = NULL;
    int rc = qw_config_load(md, &c);
    if (!rc && c.vocab_size != vocab)
        rc = qw_error(QW_EXIT_DATA, "'%s': vocabulary %d, the policy's is %d (another model?)", dir, c.vocab_size, vocab);
    int have = 0;
    if (!rc && !(rc = qw_params_init(&f->P, &c))) have = 1;
    if (!rc) rc = qw_st_open(md, &st);
    if (!rc) rc = qw_params_load(&f->P, st, 0);
    if (st) qw_st_close(st);
    free(md);
    if (!rc) rc = qw_params_to_device(&f->P, ops);
    if (!rc) rc = qw_model_new(ops, &f->P, rows, seq_len, NULL, &f->m);
    if (rc) {
        if (have) qw_params_free(&f->P);
        free(f);
        return rc;
    }
    *out = f;
    return 0;
}

int qw_frozen_forward(qw_frozen *f, const qw_batch *b, float *logp)
{
    qw_model_out mo;
    return qw_model_forward(f->m, b, NULL, logp, &mo);
}

void qw_frozen_free(qw_frozen *f)
{
    if (!f) return;
    qw_model_free(f->m);
    qw_params_free(&f->P);
    free(f);
}
