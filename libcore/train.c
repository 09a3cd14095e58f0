/* train.c — the data-parallel training loop (see qw/train.h). */
#include "qw/train.h"

#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "qw/ckpt.h"
#include "qw/cli.h"
#include "qw/comm.h"
#include "qw/config.h"
#include "qw/metrics.h"
#include "qw/model.h"
#include "qw/params.h"
#include "qw/shard.h"
#include "qw/signals.h"
#include "qw/size.h"
#include "qw/st.h"
#include "qw/tok.h"
#include "qw/tokenize.h"

void qw_train_defaults(qw_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->adamw = qw_adamw_defaults();
    o->sched.kind = QW_SCHED_COSINE;
    o->sched.lr = 3e-4;
    o->sched.min_lr_ratio = 0.1;
    o->sched.decay_frac = 0.2;
    o->sched.decay_shape = QW_DECAY_LINEAR;
    o->clip = 1.0;
    o->aux_coef = -1;
    o->keep_last = 3;
}

/* Everything one run holds; freed by run_free. */
typedef struct {
    const qw_train_opts *o;
    qw_comm *comm;
    int rank, size;
    int stopped;         /* ended early by SIGINT/SIGTERM (after saving) */
    qw_params P, G, M, V;      /* on the backend once set up (host until then) */
    int have_params;
    float *host_grads;         /* several ranks: the gradients staged for the allreduce */
    qw_model *model;
    qw_dataset *train, *val;
    qw_metrics *metrics;
    uint64_t identity;         /* tokenizer identity of the data */
    char *tokenizer_dir;       /* copied into checkpoints */
    char *model_dir;           /* --model, resolved to a step directory */
    int T, micro, R;           /* seq_len, rows per forward, global rows per step */
    int rows_local;            /* rows of each step this rank takes */
    int micro_global;          /* micro-batches per step over all ranks */
    float aux_coef;
    /* host staging for one micro-batch */
    int32_t *row, *seg_row, *pos_row;
    uint8_t *loss_row;
    int32_t *ids, *seg, *pos, *targets;
    float *coef;
    /* the local rows of the current step: [rows_local][T+1] */
    int32_t *step_tokens, *step_seg, *step_pos;
    uint8_t *step_loss;
} run;

static void run_free(run *r)
{
    qw_model_free(r->model);
    if (r->have_params) {
        qw_params_free(&r->P);
        qw_params_free(&r->G);
        qw_params_free(&r->M);
        qw_params_free(&r->V);
    }
    qw_dataset_close(r->train);
    qw_dataset_close(r->val);
    qw_metrics_close(r->metrics);
    free(r->host_grads);
    free(r->tokenizer_dir);
    free(r->model_dir);
    free(r->row); free(r->seg_row); free(r->pos_row); free(r->loss_row);
    free(r->ids); free(r->seg); free(r->pos); free(r->targets); free(r->coef);
    free(r->step_tokens); free(r->step_seg); free(r->step_pos); free(r->step_loss);
}

/* The data's tokenizer: --tokenizer, or the one of a checkpoint directory. */
static int open_tokenizer(run *r, const char *arg)
{
    char *path = qw_tok_path(arg, &r->tokenizer_dir);
    qw_tok *t;
    int rc = qw_tok_load(path, &t);
    free(path);
    if (rc) return rc;
    r->identity = qw_tok_identity(t);
    qw_tok_free(t);
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
static int setup_params(run *r, const char *resume_dir)
{
    const qw_train_opts *o = r->o;
    qw_config cfg;
    if (o->model_dir && qw_ckpt_model_dir(o->model_dir, &r->model_dir)) return qw_error_status();
    const char *cfg_src = o->config_path ? o->config_path : r->model_dir ? r->model_dir : resume_dir;
    if (!cfg_src) return qw_error(QW_EXIT_USAGE, "give --config, --model or --resume");
    if (qw_config_load(cfg_src, &cfg)) return qw_error_status();
    if ((!resume_dir || o->config_path || o->model_dir) && apply_overrides(o, &cfg)) return qw_error_status();
    if (qw_params_init(&r->P, &cfg)) return qw_error_status();
    r->have_params = 1;
    if (qw_params_alloc_like(&r->M, &r->P) || qw_params_alloc_like(&r->V, &r->P)) return qw_error_status();
    if (r->model_dir && !resume_dir) {
        qw_st *st;
        if (qw_st_open(r->model_dir, &st)) return qw_error_status();
        int rc = qw_params_load(&r->P, st, 0);
        qw_st_close(st);
        if (rc) return rc;
    } else if (!resume_dir) {
        qw_params_init_random(&r->P, o->seed);
    }
    return 0;
}

/* The run's settings as JSON, stored in state.json and checked at resume. */
static cJSON *run_json(const run *r)
{
    cJSON *j = cJSON_CreateObject();
    char hex[24];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)r->identity);
    cJSON_AddStringToObject(j, "data_identity", hex);
    cJSON_AddNumberToObject(j, "seq_len", r->T);
    cJSON_AddNumberToObject(j, "batch_tokens", (double)r->o->batch_tokens);
    cJSON_AddNumberToObject(j, "steps", r->o->steps);
    cJSON_AddNumberToObject(j, "clip", r->o->clip);
    cJSON_AddNumberToObject(j, "ranks", r->size);
    return j;
}

/* The checkpoint's recorded data identity and batch must match this run's. */
static int check_resumed_run(const run *r, const qw_train_state *s, const char *dir)
{
    const cJSON *id = s->run ? cJSON_GetObjectItemCaseSensitive(s->run, "data_identity") : NULL;
    if (cJSON_IsString(id)) {
        unsigned long long want = strtoull(id->valuestring, NULL, 16);
        if (want != r->identity)
            return qw_error(QW_EXIT_DATA, "'%s': trained on data of tokenizer %016llx, but --data is of tokenizer %016llx",
                            dir, want, (unsigned long long)r->identity);
    }
    const cJSON *bt = s->run ? cJSON_GetObjectItemCaseSensitive(s->run, "batch_tokens") : NULL;
    const cJSON *sl = s->run ? cJSON_GetObjectItemCaseSensitive(s->run, "seq_len") : NULL;
    if ((cJSON_IsNumber(bt) && (long long)bt->valuedouble != r->o->batch_tokens) ||
        (cJSON_IsNumber(sl) && (int)sl->valuedouble != r->o->seq_len))
        return qw_error(QW_EXIT_DATA, "'%s': saved with --seq-len %d --batch-tokens %lld; resume with the same",
                        dir, cJSON_IsNumber(sl) ? (int)sl->valuedouble : r->o->seq_len,
                        cJSON_IsNumber(bt) ? (long long)bt->valuedouble : r->o->batch_tokens);
    return 0;
}

/* Read this rank's rows of step `step` and count its targets. */
static int load_step_rows(run *r, long step, long long *n_targets)
{
    uint64_t n_rows = qw_dataset_rows(r->train);
    int L = r->T + 1;
    long long count = 0;
    for (int i = 0; i < r->rows_local; i++) {
        uint64_t g = ((uint64_t)step * r->R + (uint64_t)i * r->size + r->rank) % n_rows;
        int32_t *tok = r->step_tokens + (size_t)i * L;
        uint8_t *loss = r->step_loss + (size_t)i * L;
        if (qw_dataset_read_row(r->train, g, tok, r->step_seg + (size_t)i * L, r->step_pos + (size_t)i * L, loss))
            return qw_error_status();
        for (int t = 1; t < L; t++) count += loss[t];
    }
    *n_targets = count;
    return 0;
}

/* Stage micro-batch rows [first, first+n) of the step's rows into the
 * model's [micro × T] arrays; missing rows (n < micro) get no targets. */
static void stage_micro(run *r, const int32_t *tokens, const int32_t *seg, const int32_t *pos,
                        const uint8_t *loss, int first, int n, double inv_targets)
{
    int T = r->T, L = T + 1;
    for (int b = 0; b < r->micro; b++) {
        int src = b < n ? first + b : first;   /* padding rows repeat a real row, weightless */
        const int32_t *tk = tokens + (size_t)src * L;
        const int32_t *sg = seg + (size_t)src * L;
        const int32_t *ps = pos + (size_t)src * L;
        const uint8_t *ls = loss + (size_t)src * L;
        for (int t = 0; t < T; t++) {
            size_t k = (size_t)b * T + t;
            r->ids[k] = tk[t];
            /* padding tokens (segment 0) form their own documents, one per token */
            r->seg[k] = sg[t] ? sg[t] : -1 - t;
            r->pos[k] = ps[t];
            int has = b < n && ls[t + 1];
            r->targets[k] = has ? tk[t + 1] : -1;
            r->coef[k] = has ? (float)inv_targets : 0.0f;
        }
    }
}

static int evaluate(run *r, double *val_loss, long long *val_tokens)
{
    uint64_t n_rows = qw_dataset_rows(r->val);
    if (r->o->eval_rows > 0 && (uint64_t)r->o->eval_rows < n_rows) n_rows = r->o->eval_rows;
    int L = r->T + 1;
    double sum = 0;
    long long count = 0;
    /* rank k evaluates rows k, k+N, …, micro rows at a time */
    uint64_t mine = n_rows > (uint64_t)r->rank ? (n_rows - r->rank + r->size - 1) / r->size : 0;
    int32_t *tok = qw_malloc((size_t)r->micro * L * sizeof *tok);
    int32_t *seg = qw_malloc((size_t)r->micro * L * sizeof *seg);
    int32_t *pos = qw_malloc((size_t)r->micro * L * sizeof *pos);
    uint8_t *loss = qw_malloc((size_t)r->micro * L);
    int rc = 0;
    for (uint64_t i = 0; i < mine && !rc; i += r->micro) {
        int n = (int)(mine - i < (uint64_t)r->micro ? mine - i : (uint64_t)r->micro);
        long long c = 0;
        for (int b = 0; b < n && !rc; b++) {
            uint64_t g = (i + b) * r->size + r->rank;
            rc = qw_dataset_read_row(r->val, g, tok + (size_t)b * L, seg + (size_t)b * L, pos + (size_t)b * L,
                                     loss + (size_t)b * L);
            for (int t = 1; t < L; t++) c += loss[(size_t)b * L + t];
        }
        if (rc) break;
        stage_micro(r, tok, seg, pos, loss, 0, n, 1.0);   /* coefficient 1: a sum of −log p */
        qw_model_out out;
        qw_batch batch = {r->ids, r->pos, r->seg, r->targets, r->coef};
        if ((rc = qw_model_forward(r->model, &batch, NULL, NULL, &out))) break;
        sum += out.loss;
        count += c;
    }
    free(tok); free(seg); free(pos); free(loss);
    double red[2] = {sum, (double)count};
    if (!rc) rc = qw_comm_allreduce_f64(r->comm, red, 2);
    if (rc) return rc;
    *val_loss = red[1] > 0 ? red[0] / red[1] : NAN;
    *val_tokens = (long long)red[1];
    return 0;
}

static int save(run *r, long step, long long tokens)
{
    if (!r->o->out) return 0;
    int rc = 0;
    if (r->rank == 0) {
        qw_train_state s = {0};
        s.step = step;
        s.tokens = tokens;
        s.adamw = r->o->adamw;
        s.sched = r->o->sched;
        s.data = cJSON_CreateObject();
        cJSON_AddNumberToObject(s.data, "next_row", (double)((uint64_t)step * r->R % qw_dataset_rows(r->train)));
        cJSON_AddNumberToObject(s.data, "rows_per_step", r->R);
        s.rng = cJSON_CreateObject();
        char seed[24];
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)r->o->seed);
        cJSON_AddStringToObject(s.rng, "seed", seed);
        s.run = run_json(r);
        qw_ckpt_opts co = {r->o->out, r->o->keep_last, r->tokenizer_dir};
        char *dir = NULL;
        rc = qw_ckpt_save(&co, &r->P, &r->M, &r->V, &s, &dir);
        if (!rc && !r->o->quiet) qw_warn("saved '%s'", dir);
        free(dir);
        qw_train_state_free(&s);
    }
    /* every rank learns whether rank 0's save worked */
    double st = rc;
    if (qw_comm_allreduce_f64(r->comm, &st, 1)) return qw_error_status();
    if (st != 0 && !rc) return qw_error(QW_EXIT_FAIL, "checkpoint save failed on rank 0");
    return rc;
}

static int train_loop(run *r, long start_step, long long tokens)
{
    const qw_train_opts *o = r->o;
    int T = r->T;
    qw_progress prog;
    qw_progress_init(&prog);
    if (r->rank != 0) prog.enabled = 0;
    int rc = 0;
    /* a fresh run records where it starts from: step 0's validation loss */
    if (r->val && o->eval_every > 0 && start_step == 0) {
        double vl;
        long long vt;
        if ((rc = evaluate(r, &vl, &vt))) return rc;
        if (r->rank == 0) {
            qw_metric m[2] = {{"val_loss", vl}, {"val_tokens", (double)vt}};
            if (r->metrics && (rc = qw_metrics_write(r->metrics, 0, m, 2))) return rc;
            if (!o->quiet) qw_warn("step 0: val_loss %.4f", vl);
        }
    }
    long step;
    for (step = start_step; step < o->steps; step++) {
        double t0 = qw_now();
        long long n_local = 0;
        if ((rc = load_step_rows(r, step, &n_local))) break;
        double n_global = (double)n_local;
        if ((rc = qw_comm_allreduce_f64(r->comm, &n_global, 1))) break;
        double inv = n_global > 0 ? 1.0 / n_global : 0.0;
        o->ops->zero(r->G.data, r->G.total * sizeof(float));
        double loss_aux[2] = {0, 0};
        for (int first = 0; first < r->rows_local; first += r->micro) {
            int n = r->rows_local - first < r->micro ? r->rows_local - first : r->micro;
            stage_micro(r, r->step_tokens, r->step_seg, r->step_pos, r->step_loss, first, n, inv);
            qw_model_out out;
            qw_batch batch = {r->ids, r->pos, r->seg, r->targets, r->coef};
            if ((rc = qw_model_step(r->model, &batch, &r->G, r->aux_coef / r->micro_global, &out))) break;
            loss_aux[0] += out.loss;
            loss_aux[1] += out.aux_loss / r->micro_global;
        }
        if (rc) break;
        if (r->size > 1) {   /* MPI sums host buffers: stage the gradients through one */
            o->ops->download(r->host_grads, r->G.data, r->G.total * sizeof(float));
            if ((rc = qw_comm_allreduce_f32(r->comm, r->host_grads, r->G.total)) ||
                (rc = qw_comm_allreduce_f64(r->comm, loss_aux, 2)))
                break;
            o->ops->upload(r->G.data, r->host_grads, r->G.total * sizeof(float));
        }
        double norm = sqrt(qw_grad_sumsq(&r->G));
        double lr = qw_sched_lr(&o->sched, step);
        qw_adamw_step(&o->adamw, &r->P, &r->G, &r->M, &r->V, step + 1, lr, qw_clip_scale(norm, o->clip));
        tokens += (long long)r->R * T;
        o->ops->sync();   /* the clock stops once the step's device work (the update too) has finished */
        double dt = qw_now() - t0;
        size_t in_use, peak;
        o->ops->mem_stats(&in_use, &peak);
        if (r->rank == 0) {
            qw_metric m[9];
            int k = 0;
            m[k++] = (qw_metric){"loss", loss_aux[0] + r->aux_coef * loss_aux[1]};
            m[k++] = (qw_metric){"lr", lr};
            m[k++] = (qw_metric){"grad_norm", norm};
            m[k++] = (qw_metric){"tokens", (double)tokens};
            m[k++] = (qw_metric){"tok_per_s", r->R * (double)T / dt};
            m[k++] = (qw_metric){"mem_peak_bytes", (double)peak};
            if (r->P.cfg.arch == QW_ARCH_MOE) {
                m[k++] = (qw_metric){"aux_loss", loss_aux[1]};
                m[k++] = (qw_metric){"ce_loss", loss_aux[0]};
            }
            if (r->metrics && (rc = qw_metrics_write(r->metrics, step + 1, m, k))) break;
            qw_progress_update(&prog, step + 1 - start_step, o->steps - start_step,
                               "step %ld/%ld  loss %.4f  lr %.2e  %.0f tok/s", step + 1, o->steps,
                               m[0].value, lr, m[4].value);
        }
        if (!isfinite(loss_aux[0])) {
            qw_progress_end(&prog);
            rc = qw_error(QW_EXIT_FAIL, "step %ld: the loss is not finite (%g)", step + 1, loss_aux[0]);
            break;
        }
        int last = step + 1 == o->steps;
        if (r->val && o->eval_every > 0 && ((step + 1) % o->eval_every == 0 || last)) {
            double vl;
            long long vt;
            if ((rc = evaluate(r, &vl, &vt))) break;
            if (r->rank == 0) {
                qw_metric m[2] = {{"val_loss", vl}, {"val_tokens", (double)vt}};
                if (r->metrics && (rc = qw_metrics_write(r->metrics, step + 1, m, 2))) break;
                qw_progress_end(&prog);
                if (!o->quiet) qw_warn("step %ld: val_loss %.4f", step + 1, vl);
            }
        }
        double stop = qw_signals_stop() ? 1 : 0;
        if ((rc = qw_comm_allreduce_f64(r->comm, &stop, 1))) break;
        if (last || stop > 0 || (o->save_every > 0 && (step + 1) % o->save_every == 0)) {
            qw_progress_end(&prog);
            if ((rc = save(r, step + 1, tokens))) break;
        }
        if (stop > 0) {
            /* saved, but unfinished: exit as a killed program would, so
             * that make and job scripts do not take the run for done */
            int sig = qw_signals_stop() ? qw_signals_stop() : SIGTERM;
            r->stopped = 1;
            rc = qw_error(qw_signals_status(sig), "stopped by %s after step %ld of %ld; continue with --resume '%s'",
                          sig == SIGINT ? "SIGINT" : "SIGTERM", step + 1, o->steps, o->out ? o->out : "DIR");
            break;
        }
    }
    qw_progress_end(&prog);
    return rc;
}

static int setup_and_train(run *r)
{
    const qw_train_opts *o = r->o;
    char *resume_dir = NULL;
    qw_train_state state = {0};
    int rc = 0;
    if (o->resume && (rc = qw_ckpt_resolve(o->resume, &resume_dir))) return rc;
    rc = setup_params(r, resume_dir);
    /* the data must come from the model's tokenizer: --tokenizer, else the
     * one saved with the checkpoint we start from */
    const char *from = r->model_dir ? r->model_dir : resume_dir;
    char *tj = from ? qw_tok_path(from, NULL) : NULL;
    struct stat sb;
    if (!rc && o->tokenizer) rc = open_tokenizer(r, o->tokenizer);
    else if (!rc && tj && stat(tj, &sb) == 0)
        rc = open_tokenizer(r, from);
    free(tj);
    if (!rc && resume_dir) rc = qw_ckpt_load(resume_dir, &r->P, &r->M, &r->V, &state);
    if (!rc) rc = qw_dataset_open(o->data, o->n_data, "train", o->seq_len, r->identity, &r->train);
    if (!rc && !r->identity) r->identity = qw_dataset_identity(r->train);
    if (!rc && o->require_mask && qw_dataset_unmasked(r->train))
        rc = qw_error(QW_EXIT_DATA, "'%s': shards without loss masks (pack conversations with qw-tokenize --chat or "
                      "qw-pack --chat; --all-tokens learns every token)", qw_dataset_unmasked(r->train));
    if (!rc && resume_dir) rc = check_resumed_run(r, &state, resume_dir);
    if (!rc && !r->tokenizer_dir && resume_dir) r->tokenizer_dir = qw_strdup(resume_dir);
    if (!rc && !r->tokenizer_dir && r->model_dir) r->tokenizer_dir = qw_strdup(r->model_dir);
    if (!rc && o->eval_every > 0)
        rc = qw_dataset_open(o->data, o->n_data, "val", o->seq_len, r->identity, &r->val);
    if (!rc && r->val && o->require_mask && qw_dataset_unmasked(r->val))
        rc = qw_error(QW_EXIT_DATA, "'%s': shards without loss masks", qw_dataset_unmasked(r->val));
    if (!rc && (int)qw_dataset_vocab_size(r->train) > r->P.cfg.vocab_size)
        rc = qw_error(QW_EXIT_DATA, "the data's vocabulary (%u tokens) is larger than the model's (%d)",
                      qw_dataset_vocab_size(r->train), r->P.cfg.vocab_size);
    long start = resume_dir ? state.step : 0;
    long long tokens = resume_dir ? state.tokens : 0;
    qw_train_state_free(&state);
    if (!rc && start > o->steps)
        rc = qw_error(QW_EXIT_USAGE, "'%s' is at step %ld, past --steps %ld", resume_dir, start, o->steps);
    free(resume_dir);
    if (rc) return rc;

    r->T = o->seq_len;
    r->R = (int)(o->batch_tokens / o->seq_len);
    r->rows_local = r->R / r->size + (r->rank < r->R % r->size);
    int max_local = r->R / r->size + (r->R % r->size != 0);
    r->micro = o->micro_batch > 0 ? o->micro_batch : (max_local < 8 ? max_local : 8);
    if (r->micro > max_local) r->micro = max_local;
    r->micro_global = 0;
    for (int k = 0; k < r->size; k++) {
        int rows = r->R / r->size + (k < r->R % r->size);
        r->micro_global += (rows + r->micro - 1) / r->micro;
    }
    r->aux_coef = (float)(o->aux_coef >= 0 ? o->aux_coef
                          : r->P.cfg.arch == QW_ARCH_MOE ? r->P.cfg.router_aux_loss_coef : 0);

    /* the run's arenas live on the backend from here on */
    if ((rc = qw_params_to_device(&r->P, o->ops)) || (rc = qw_params_to_device(&r->M, o->ops)) ||
        (rc = qw_params_to_device(&r->V, o->ops)) || (rc = qw_params_alloc_like(&r->G, &r->P)))
        return rc;
    if (r->size > 1) r->host_grads = qw_malloc(r->G.total * sizeof(float));
    qw_model_opts mo = {.capacity_factor = o->capacity_factor, .recompute = o->recompute};
    if ((rc = qw_model_new(o->ops, &r->P, r->micro, r->T, &mo, &r->model))) return rc;
    size_t BT = (size_t)r->micro * r->T, L = r->T + 1;
    r->ids = qw_malloc(BT * sizeof *r->ids);
    r->seg = qw_malloc(BT * sizeof *r->seg);
    r->pos = qw_malloc(BT * sizeof *r->pos);
    r->targets = qw_malloc(BT * sizeof *r->targets);
    r->coef = qw_malloc(BT * sizeof *r->coef);
    size_t rowsL = (size_t)(r->rows_local ? r->rows_local : 1) * L;
    r->step_tokens = qw_malloc(rowsL * sizeof(int32_t));
    r->step_seg = qw_malloc(rowsL * sizeof(int32_t));
    r->step_pos = qw_malloc(rowsL * sizeof(int32_t));
    r->step_loss = qw_malloc(rowsL);

    if (r->rank == 0 && o->log && start > 0 && (rc = qw_metrics_truncate(o->log, start))) return rc;
    if (r->rank == 0 && (o->log || o->tb_dir) && (rc = qw_metrics_open(&r->metrics, o->log, o->tb_dir))) return rc;
    if (r->rank == 0 && !o->quiet) {
        int64_t total, active;
        qw_config_param_counts(&r->P.cfg, &total, &active);
        char a[16], b[16], c[16];
        qw_warn("%s model, %s parameters (%s active), %d rank%s, %d rows × %d tokens per step "
                "(%d per forward), %s train rows, steps %ld..%ld",
                r->P.cfg.arch == QW_ARCH_MOE ? "MoE" : "dense", qw_human((double)total, a),
                qw_human((double)active, b), r->size, r->size > 1 ? "s" : "", r->R, r->T, r->micro,
                qw_human((double)qw_dataset_rows(r->train), c), start, o->steps);
    }
    return train_loop(r, start, tokens);
}

/* The sizes the options make: rows per step must fit an int, and this
 * rank's staging of a step (tokens, segments, positions: 4 bytes each, and
 * a loss-mask byte per token of its rows) must fit in memory. */
static int check_step_size(const qw_train_opts *o, int ranks)
{
    long long rows = o->batch_tokens / o->seq_len;
    if (o->seq_len >= INT_MAX || rows > INT_MAX)
        return qw_error(QW_EXIT_USAGE, "--batch-tokens %lld: %lld rows of %d tokens per step, more than %d",
                        o->batch_tokens, rows, o->seq_len, INT_MAX);
    size_t local = (size_t)(rows / ranks + (rows % ranks != 0)), bytes;
    uint64_t mem = qw_phys_mem_bytes();
    if (qw_mul_size(local, (size_t)o->seq_len + 1, &bytes) || qw_mul_size(bytes, 3 * sizeof(int32_t) + 1, &bytes) ||
        (mem && bytes > mem))
        return qw_error(QW_EXIT_USAGE, "--batch-tokens %lld: staging %zu rows of %d tokens per step needs %.0f bytes, "
                        "more than the machine's memory (%llu bytes)", o->batch_tokens, local, o->seq_len + 1,
                        (double)local * (o->seq_len + 1) * (3 * sizeof(int32_t) + 1), (unsigned long long)mem);
    return 0;
}

int qw_train_run(const qw_train_opts *o)
{
    if (o->seq_len <= 0 || o->batch_tokens <= 0 || o->batch_tokens % o->seq_len)
        return qw_error(QW_EXIT_USAGE, "--batch-tokens (%lld) must be a positive multiple of --seq-len (%d)",
                        o->batch_tokens, o->seq_len);
    if (o->steps <= 0) return qw_error(QW_EXIT_USAGE, "--steps must be positive");
    if (o->n_data <= 0) return qw_error(QW_EXIT_USAGE, "give --data");
    run r = {0};
    r.o = o;
    int rc = qw_comm_init(&r.comm);
    if (rc) return rc;
    r.rank = qw_comm_rank(r.comm);
    r.size = qw_comm_size(r.comm);
    if (o->batch_tokens / o->seq_len < r.size)
        rc = qw_error(QW_EXIT_USAGE, "--batch-tokens %lld gives %lld rows per step, fewer than the %d ranks",
                      o->batch_tokens, o->batch_tokens / o->seq_len, r.size);
    if (!rc) rc = check_step_size(o, r.size);
    if (!rc) {
        qw_signals_install();
        rc = setup_and_train(&r);
    }
    run_free(&r);
    /* A failure on one rank must not leave the others waiting in a
     * collective: exit without finalizing, which makes mpirun end the job. */
    if (rc && r.size > 1 && !r.stopped) {
        qw_warn("rank %d: %s", r.rank, qw_error_msg());
        exit(rc);
    }
    qw_comm_finalize(r.comm);
    return rc;
}
