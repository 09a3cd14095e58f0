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
#include "qw/rm.h"
#include "qw/signals.h"
#include "qw/st.h"
#include "qw/tok.h"
#include "qw/tokenize.h"
#include "qw/vldata.h"

struct qw_trainer {
    const qw_train_opts *o;
    qw_comm *comm;
    int rank, size;
    int stopped;               /* ended by SIGINT/SIGTERM (after saving) */
    qw_params P, G, M, V;      /* on the backend after begin (host until then) */
    int have_params, have_grads;
    float *host_grads;         /* several ranks, arenas the communicator cannot reach: the gradients staged */
    qw_mesh mesh;              /* the layout (data parallel only so far) */
    long cur_step;             /* the step being taken (for the watchdog's messages) */
    /* ZeRO (zero > 0; one part on one rank): this rank owns the elements
     * [shard[rank], shard[rank + 1]) of every arena; M and V are freed
     * and its moments live in m_sh, v_sh (backend memory) */
    int zero;
    size_t *shard;             /* [size + 1] */
    float *m_sh, *v_sh;
    float *stage;              /* staged collectives: host staging of one shard (the largest) */
    size_t stage_n;
    float *dev_stage;          /* NCCL, rank 0: device staging of one shard, for saves */
    qw_model *model;
    float *vh;                 /* the value path: the hidden rows of the last forward_value */
    int vn, vcap;
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
    int backbone = o->value_head && !cfg.score_head;   /* a causal LM becomes a reward model */
    if (backbone) cfg.score_head = 1;
    if (!o->value_head && cfg.score_head)
        return qw_error(QW_EXIT_DATA, "'%s' is a reward model (score.weight, no LM head): 'qw-reward train' trains it",
                        cfg_src);
    if ((!resume_dir || o->config_path || o->model_dir) && apply_overrides(o, &cfg)) return qw_error_status();
    if (qw_params_init(&t->P, &cfg)) return qw_error_status();
    t->have_params = 1;
    if (qw_params_alloc_like(&t->M, &t->P) || qw_params_alloc_like(&t->V, &t->P)) return qw_error_status();
    if (t->model_dir && !resume_dir) {
        qw_st *st;
        if (qw_st_open(t->model_dir, &st)) return qw_error_status();
        int rc = backbone ? qw_params_load_backbone(&t->P, st) : qw_params_load(&t->P, st, 0);
        qw_st_close(st);
        if (rc) return rc;
        if (backbone) qw_params_init_head(&t->P, o->seed);
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
    int rc = qw_comm_init_kind(o->comm ? o->comm : "auto", &t->comm);
    if (rc) return rc;
    t->rank = qw_comm_rank(t->comm);
    t->size = qw_comm_size(t->comm);
    if ((rc = qw_train_check_layout(o, t->size)) || (rc = qw_mesh_make(t->size, t->rank, o->mesh, &t->mesh))) return rc;
    t->zero = o->zero;   /* on one rank too: one part, the same arithmetic (and NCCL's calls exercised on one GPU) */
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
    cJSON_AddNumberToObject(j, "zero", t->zero);
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

/* The backend's memory is host memory. */
static int host_memory(const qw_ops *ops) { return !strcmp(ops->name, "cpu"); }
/* The communicator reads and writes the arenas where they are: host
 * memory for MPI, device memory for NCCL; else they are staged. */
static int direct(const qw_trainer *t) { return host_memory(t->o->ops) != qw_comm_device(t->comm); }

/* ---- ZeRO over data parallel (qw/trainer.h) ---- */

/* Shards: [shard[r], shard[r + 1]) for rank r, contiguous ranges of the
 * arena of about total / size elements, cut at multiples of 16 floats (64
 * bytes, as the tensors start) wherever they fall; moments of this rank's
 * range move to the backend and the whole M, V are freed. */
static int zero_setup(qw_trainer *t)
{
    const qw_ops *ops = t->o->ops;
    size_t total = t->P.total, n = (size_t)t->size;
    t->shard = qw_malloc((n + 1) * sizeof *t->shard);
    size_t most = 0;
    for (size_t r = 0; r <= n; r++) t->shard[r] = r == n ? total : (size_t)((double)total * r / n) / 16 * 16;
    for (size_t r = 0; r < n; r++)
        if (t->shard[r + 1] - t->shard[r] > most) most = t->shard[r + 1] - t->shard[r];
    size_t lo = t->shard[t->rank], k = t->shard[t->rank + 1] - lo;
    size_t bytes = (k ? k : 1) * sizeof(float);
    t->m_sh = ops->alloc(bytes);
    t->v_sh = ops->alloc(bytes);
    if (!t->m_sh || !t->v_sh) return qw_error(QW_EXIT_FAIL, "out of memory for 2 × %zu bytes of AdamW moments", bytes);
    if (k) {
        ops->upload(t->m_sh, t->M.data + lo, k * sizeof(float));
        ops->upload(t->v_sh, t->V.data + lo, k * sizeof(float));
    }
    qw_params_free(&t->M);
    qw_params_free(&t->V);
    memset(&t->M, 0, sizeof t->M);
    memset(&t->V, 0, sizeof t->V);
    if (!direct(t)) {
        t->stage_n = most ? most : 1;
        t->stage = qw_malloc(t->stage_n * sizeof(float));
    }
    if (qw_comm_device(t->comm) && t->rank == 0) {   /* where the other ranks' moments land at a save */
        t->dev_stage = ops->alloc((most ? most : 1) * sizeof(float));
        if (!t->dev_stage) return qw_error(QW_EXIT_FAIL, "out of memory for %zu bytes of staging", most * sizeof(float));
    }
    return 0;
}

/* ZeRO-1: the whole gradient summed on every rank (allreduce); ZeRO-2:
 * each shard summed on its owner only (a reduce per shard, rooted at the
 * owner: the reduce-scatter), the rest of the rank's gradient arena left
 * as its own backward made it. */
static int zero_reduce(qw_trainer *t)
{
    const qw_ops *ops = t->o->ops;
    float *g = t->G.data;
    if (t->zero == 1 && direct(t)) return qw_comm_allreduce_f32(t->comm, g, t->G.total);
    for (int r = 0; r < t->size; r++) {
        size_t lo = t->shard[r], k = t->shard[r + 1] - lo;
        int rc;
        if (direct(t)) {
            rc = qw_comm_reduce_f32(t->comm, g + lo, k, r);
        } else {
            ops->download(t->stage, g + lo, k * sizeof(float));
            rc = t->zero == 1 ? qw_comm_allreduce_f32(t->comm, t->stage, k) : qw_comm_reduce_f32(t->comm, t->stage, k, r);
            if (!rc && (t->zero == 1 || r == t->rank)) ops->upload(g + lo, t->stage, k * sizeof(float));
        }
        if (rc) return rc;
    }
    return 0;
}

/* Every rank's updated shard of the fp32 weights to every rank (a
 * broadcast per shard from its owner: the allgather), then the compute
 * copy refreshed. */
static int zero_gather_params(qw_trainer *t)
{
    const qw_ops *ops = t->o->ops;
    for (int r = 0; r < t->size; r++) {
        size_t lo = t->shard[r], k = t->shard[r + 1] - lo;
        int rc;
        if (direct(t)) {
            rc = qw_comm_bcast(t->comm, t->P.data + lo, k * sizeof(float), r);
        } else {
            if (r == t->rank) ops->download(t->stage, t->P.data + lo, k * sizeof(float));
            rc = qw_comm_bcast(t->comm, t->stage, k * sizeof(float), r);
            if (!rc && r != t->rank) ops->upload(t->P.data + lo, t->stage, k * sizeof(float));
        }
        if (rc) return rc;
    }
    qw_params_sync_compute(&t->P);
    return 0;
}

static void zero_update(qw_trainer *t, long step, double *norm, double *lr)
{
    const qw_train_opts *o = t->o;
    size_t lo = t->shard[t->rank], hi = t->shard[t->rank + 1];
    double ss;
    if (t->zero == 1) {
        ss = qw_grad_sumsq(&t->G);   /* the whole summed gradient is here: as without ZeRO */
    } else {
        ss = hi > lo ? o->ops->sumsq(t->G.data + lo, hi - lo) : 0;
        if (qw_comm_allreduce_f64(t->comm, &ss, 1)) qw_die_last();
    }
    *norm = sqrt(ss);
    *lr = qw_sched_lr(&o->sched, step);
    qw_adamw_step_shard(&o->adamw, &t->P, &t->G, t->m_sh, t->v_sh, lo, hi, step + 1, *lr, qw_clip_scale(*norm, o->clip));
    if (zero_gather_params(t)) qw_die_last();
}

/* For a checkpoint: rank 0 gathers the moments of every shard into whole
 * host arenas *M, *V (its own, then each other rank's in turn, point to
 * point); the other ranks send theirs.  Collective. */
static int zero_gather_moments(qw_trainer *t, qw_params *M, qw_params *V)
{
    const qw_ops *ops = t->o->ops;
    int rc = 0;
    if (t->rank == 0) {
        if ((rc = qw_params_init(M, &t->P.cfg))) return rc;
        if ((rc = qw_params_init(V, &t->P.cfg))) return rc;
    }
    for (int w = 0; w < 2 && !rc; w++) {
        float *mine = w ? t->v_sh : t->m_sh;
        size_t lo = t->shard[t->rank], k = t->shard[t->rank + 1] - lo;
        if (t->rank == 0) {
            float *dst = w ? V->data : M->data;
            if (k) ops->download(dst + lo, mine, k * sizeof(float));
            for (int r = 1; r < t->size && !rc; r++) {
                size_t kr = t->shard[r + 1] - t->shard[r];
                if (!qw_comm_device(t->comm)) {
                    rc = qw_comm_recv(t->comm, dst + t->shard[r], kr * sizeof(float), r, 1 + w);
                    continue;
                }
                rc = qw_comm_recv(t->comm, t->dev_stage, kr * sizeof(float), r, 1 + w);
                if (!rc) rc = qw_comm_wait(t->comm);
                if (!rc) ops->download(dst + t->shard[r], t->dev_stage, kr * sizeof(float));
            }
        } else {
            const float *src = mine;
            if (!direct(t)) {
                if (k) ops->download(t->stage, mine, k * sizeof(float));
                src = t->stage;
            }
            rc = qw_comm_send(t->comm, src, k * sizeof(float), 0, 1 + w);
            if (!rc) rc = qw_comm_wait(t->comm);
        }
    }
    return rc;
}

void qw_trainer_memory(const qw_trainer *t, double *params, double *grads, double *optim)
{
    const qw_ops *ops = t->o->ops;
    double n = (double)t->P.total;
    size_t k = t->zero ? t->shard[t->rank + 1] - t->shard[t->rank] : t->P.total;
    *params = n * 4 + (t->P.compute && t->P.compute != (void *)t->P.data ? n * ops->act_size : 0);
    *grads = n * 4 + (t->host_grads ? n * 4 : 0) + (double)t->stage_n * 4;
    *optim = 2.0 * (double)k * 4;
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
    if (b->freeze_vision)
        for (int i = 0; i < t->P.n; i++) t->P.p[i].frozen = !strncmp(t->P.p[i].name, "model.visual.", 13);
    if ((rc = qw_params_to_device(&t->P, o->ops))) return rc;
    if (t->zero) rc = zero_setup(t);
    else if (!(rc = qw_params_to_device(&t->M, o->ops))) rc = qw_params_to_device(&t->V, o->ops);
    if (rc || (rc = qw_params_alloc_like(&t->G, &t->P))) return rc;
    t->have_grads = 1;
    t->cur_step = t->start;
    if (t->size > 1 && !t->zero && !direct(t)) t->host_grads = qw_malloc(t->G.total * sizeof(float));
    qw_model_opts mo = {.capacity_factor = o->capacity_factor, .recompute = o->recompute};
    if ((rc = qw_model_new(o->ops, &t->P, b->micro_rows, b->seq_len, &mo, &t->model))) return rc;
    if (t->rank == 0 && o->log && t->start > 0 && (rc = qw_metrics_truncate(o->log, t->start))) return rc;
    if (t->rank == 0 && (o->log || o->tb_dir) && (rc = qw_metrics_open(&t->metrics, o->log, o->tb_dir))) return rc;
    return 0;
}

const qw_params *qw_trainer_grads(const qw_trainer *t) { return &t->G; }

void qw_trainer_zero_grad(qw_trainer *t)
{
    char label[32];
    snprintf(label, sizeof label, "step %ld", ++t->cur_step);
    qw_comm_set_label(label);
    t->o->ops->zero(t->G.data, t->G.total * sizeof(float));
}

int qw_trainer_accumulate(qw_trainer *t, const qw_batch *b, qw_model_out *out)
{
    return qw_model_step(t->model, b, &t->G, qw_trainer_aux_weight(t), out);
}

int qw_trainer_vision_backward(qw_trainer *t, struct qw_vl_batch *vb)
{
    if (t->b.freeze_vision) return 0;
    if (t->G.ops && strcmp(t->G.ops->name, "cpu"))
        return qw_error(QW_EXIT_FAIL, "the vision tower trains on the CPU only for now (--device cpu)");
    qw_vl_batch_backward(vb, &t->G);
    return 0;
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

int qw_trainer_forward_value(qw_trainer *t, const qw_batch *b, const int32_t *idx, int n, float *r)
{
    size_t need = (size_t)n * t->P.cfg.hidden_size;
    if (n > t->vcap) {
        free(t->vh);
        t->vh = qw_malloc(need * sizeof *t->vh);
        t->vcap = n;
    }
    t->vn = 0;
    int rc = qw_rm_forward(t->model, &t->P, b, idx, n, t->vh, r);
    if (!rc) t->vn = n;
    return rc;
}

int qw_trainer_backward_value(qw_trainer *t, const float *dr)
{
    if (!t->vn) return qw_error(QW_EXIT_FAIL, "trainer: backward_value without forward_value");
    float *dh = qw_malloc((size_t)t->vn * t->P.cfg.hidden_size * sizeof *dh);
    int rc = qw_rm_head_backward(&t->P, &t->G, t->vh, dr, t->vn, dh);
    if (!rc) rc = qw_model_backward_hidden(t->model, &t->G, dh);
    free(dh);
    t->vn = 0;
    return rc;
}

int qw_trainer_reduce(qw_trainer *t, double *sums, int n)
{
    if (t->size <= 1) return 0;
    int rc;
    if (t->zero) {
        rc = zero_reduce(t);
        return !rc && n ? qw_comm_allreduce_f64(t->comm, sums, n) : rc;
    }
    /* MPI sums host buffers, NCCL device ones: arenas elsewhere are staged */
    const qw_ops *ops = t->o->ops;
    float *g = t->host_grads ? t->host_grads : t->G.data;
    if (t->host_grads) ops->download(t->host_grads, t->G.data, t->G.total * sizeof(float));
    rc = qw_comm_allreduce_f32(t->comm, g, t->G.total);
    if (!rc && n) rc = qw_comm_allreduce_f64(t->comm, sums, n);
    if (rc) return rc;
    if (t->host_grads) ops->upload(t->G.data, t->host_grads, t->G.total * sizeof(float));
    return 0;
}

int qw_trainer_allreduce(qw_trainer *t, double *v, int n) { return qw_comm_allreduce_f64(t->comm, v, n); }

void qw_trainer_update(qw_trainer *t, long step, double *norm, double *lr)
{
    const qw_train_opts *o = t->o;
    if (t->zero) {
        zero_update(t, step, norm, lr);
    } else {
        *norm = sqrt(qw_grad_sumsq(&t->G));
        *lr = qw_sched_lr(&o->sched, step);
        qw_adamw_step(&o->adamw, &t->P, &t->G, &t->M, &t->V, step + 1, *lr, qw_clip_scale(*norm, o->clip));
    }
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
    qw_params Mz = {0}, Vz = {0};
    if (t->zero && (rc = zero_gather_moments(t, &Mz, &Vz))) {
        qw_params_free(&Mz);
        qw_params_free(&Vz);
        return rc;
    }
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
        rc = qw_ckpt_save(&co, &t->P, t->zero ? &Mz : &t->M, t->zero ? &Vz : &t->V, &s, &dir);
        if (!rc && !o->quiet) qw_warn("saved '%s'", dir);
        free(dir);
        qw_train_state_free(&s);
    }
    qw_params_free(&Mz);
    qw_params_free(&Vz);
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
    if (t->m_sh) t->o->ops->free(t->m_sh);
    if (t->v_sh) t->o->ops->free(t->v_sh);
    free(t->shard);
    free(t->stage);
    if (t->dev_stage) t->o->ops->free(t->dev_stage);
    qw_metrics_close(t->metrics);
    qw_train_state_free(&t->state);
    free(t->host_grads);
    free(t->vh);
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

qw_model *qw_frozen_model(qw_frozen *f) { return f->m; }

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
