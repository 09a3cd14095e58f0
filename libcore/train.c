/* train.c — the shard loop of qw-pretrain and qw-sft over the trainer
 * (qw/train.h, qw/trainer.h): rows of packed shards, next-token targets
 * where the loss mask allows, the mean over the global batch's targets. */
#include "qw/train.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "qw/cli.h"
#include "qw/config.h"
#include "qw/metrics.h"
#include "qw/model.h"
#include "qw/params.h"
#include "qw/shard.h"
#include "qw/size.h"
#include "qw/trainer.h"
#include "qw/vldata.h"

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

/* What the shard loop holds besides the trainer; freed by run_free. */
typedef struct {
    const qw_train_opts *o;
    qw_trainer *t;
    int rank, size;
    qw_model *model;
    qw_dataset *train, *val;
    int T, micro, R;           /* seq_len, rows per forward, global rows per step */
    int rows_local;            /* rows of each step this rank takes */
    int micro_global;          /* micro-batches per step over all ranks */
    /* host staging for one micro-batch */
    int32_t *ids, *seg, *pos, *targets;
    float *coef;
    /* the local rows of the current step: [rows_local][T+1] */
    int32_t *step_tokens, *step_seg, *step_pos;
    uint8_t *step_loss;
    /* Qwen3-VL: the data has images; each step row's images; a micro-batch's */
    int images;
    qw_vl_images *step_img;    /* [rows_local] */
    qw_vl_images micro_img;
} run;

static void run_free(run *r)
{
    qw_dataset_close(r->train);
    qw_dataset_close(r->val);
    free(r->ids); free(r->seg); free(r->pos); free(r->targets); free(r->coef);
    free(r->step_tokens); free(r->step_seg); free(r->step_pos); free(r->step_loss);
    for (int i = 0; r->step_img && i < (r->rows_local ? r->rows_local : 1); i++) qw_vl_images_free(&r->step_img[i]);
    free(r->step_img);
    qw_vl_images_free(&r->micro_img);
}

/* A row's images (shard view) into im. */
static void keep_images(qw_vl_images *im, const qw_shard_images *si)
{
    qw_vl_images_clear(im);
    qw_vl_images one = {.n = (int)si->n, .thw = (int32_t *)si->thw, .start = (int32_t *)si->start,
                        .pixels = (float *)si->pixels, .K = (int)si->K};
    for (uint32_t k = 0; k < si->n; k++) qw_vl_images_append(im, &one, (int)k, (int32_t)si->start[k]);
}

/* Read row g of ds, keeping its images in *im when the data has them. */
static int read_row(run *r, qw_dataset *ds, uint64_t g, int32_t *tok, int32_t *seg, int32_t *pos, uint8_t *loss,
                    qw_vl_images *im)
{
    if (!r->images) return qw_dataset_read_row(ds, g, tok, seg, pos, loss);
    qw_shard_images si;
    int st = qw_dataset_read_row_images(ds, g, tok, seg, pos, loss, &si);
    if (!st) keep_images(im, &si);
    return st;
}

/* The vision inputs of the staged micro-batch whose row b came from
 * rows[src(b)] (stage_micro's choice): the images in row order, and the
 * tower run on them.  NULL without images in the data. */
static int stage_vision(run *r, const qw_vl_images *rows, int first, int n, qw_vl_batch **vb)
{
    *vb = NULL;
    if (!r->images) return 0;
    qw_vl_images *im = &r->micro_img;
    qw_vl_images_clear(im);
    for (int b = 0; b < r->micro; b++) {
        const qw_vl_images *src = &rows[b < n ? first + b : first];
        for (int k = 0; k < src->n; k++) qw_vl_images_append(im, src, k, src->start[k] + b * r->T);
    }
    return qw_vl_batch_new(qw_trainer_params(r->t), r->ids, r->seg, r->micro, r->T, im->n, im->thw, im->pixels,
                           "vision batch", vb);
}

/* The data position a checkpoint records (informative: the position is a
 * function of the step). */
static cJSON *data_state(void *ctx, long step)
{
    run *r = ctx;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "next_row", (double)((uint64_t)step * r->R % qw_dataset_rows(r->train)));
    cJSON_AddNumberToObject(d, "rows_per_step", r->R);
    return d;
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
        if (read_row(r, r->train, g, tok, r->step_seg + (size_t)i * L, r->step_pos + (size_t)i * L, loss,
                     r->images ? &r->step_img[i] : NULL))
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
    qw_vl_images *img = r->images ? qw_calloc(r->micro, sizeof *img) : NULL;
    int rc = 0;
    for (uint64_t i = 0; i < mine && !rc; i += r->micro) {
        int n = (int)(mine - i < (uint64_t)r->micro ? mine - i : (uint64_t)r->micro);
        long long c = 0;
        for (int b = 0; b < n && !rc; b++) {
            uint64_t g = (i + b) * r->size + r->rank;
            rc = read_row(r, r->val, g, tok + (size_t)b * L, seg + (size_t)b * L, pos + (size_t)b * L,
                          loss + (size_t)b * L, img ? &img[b] : NULL);
            for (int t = 1; t < L; t++) c += loss[(size_t)b * L + t];
        }
        if (rc) break;
        stage_micro(r, tok, seg, pos, loss, 0, n, 1.0);   /* coefficient 1: a sum of −log p */
        qw_model_out out;
        qw_vl_batch *vb;
        if ((rc = stage_vision(r, img, 0, n, &vb))) break;
        qw_batch batch = {.ids = r->ids, .pos = r->pos, .seg = r->seg, .targets = r->targets, .coef = r->coef,
                          .mpos = vb ? qw_vl_batch_mpos(vb) : NULL, .vision = vb ? qw_vl_batch_vision(vb) : NULL};
        rc = qw_model_forward(r->model, &batch, NULL, NULL, &out);
        qw_vl_batch_free(vb);
        if (rc) break;
        sum += out.loss;
        count += c;
    }
    free(tok); free(seg); free(pos); free(loss);
    for (int b = 0; img && b < r->micro; b++) qw_vl_images_free(&img[b]);
    free(img);
    double red[2] = {sum, (double)count};
    if (!rc) rc = qw_trainer_allreduce(r->t, red, 2);
    if (rc) return rc;
    *val_loss = red[1] > 0 ? red[0] / red[1] : NAN;
    *val_tokens = (long long)red[1];
    return 0;
}

static int validate(run *r, long step)
{
    double vl;
    long long vt;
    int rc = evaluate(r, &vl, &vt);
    if (rc) return rc;
    qw_metric m[2] = {{"val_loss", vl}, {"val_tokens", (double)vt}};
    if ((rc = qw_trainer_log(r->t, step, m, 2))) return rc;
    qw_trainer_say(r->t, "step %ld: val_loss %.4f", step, vl);
    return 0;
}

static int train_loop(run *r, long start_step, long long tokens)
{
    const qw_train_opts *o = r->o;
    qw_trainer *t = r->t;
    int T = r->T, rc = 0;
    /* a fresh run records where it starts from: step 0's validation loss */
    if (r->val && o->eval_every > 0 && start_step == 0 && (rc = validate(r, 0))) return rc;
    for (long step = start_step; step < o->steps; step++) {
        double t0 = qw_now();
        long long n_local = 0;
        if ((rc = load_step_rows(r, step, &n_local))) break;
        double n_global = (double)n_local;
        if ((rc = qw_trainer_allreduce(t, &n_global, 1))) break;
        double inv = n_global > 0 ? 1.0 / n_global : 0.0;
        qw_trainer_zero_grad(t);
        double loss_aux[2] = {0, 0};
        for (int first = 0; first < r->rows_local; first += r->micro) {
            int n = r->rows_local - first < r->micro ? r->rows_local - first : r->micro;
            stage_micro(r, r->step_tokens, r->step_seg, r->step_pos, r->step_loss, first, n, inv);
            qw_model_out out;
            qw_vl_batch *vb;
            if ((rc = stage_vision(r, r->step_img, first, n, &vb))) break;
            qw_batch batch = {.ids = r->ids, .pos = r->pos, .seg = r->seg, .targets = r->targets, .coef = r->coef,
                              .mpos = vb ? qw_vl_batch_mpos(vb) : NULL, .vision = vb ? qw_vl_batch_vision(vb) : NULL};
            rc = qw_trainer_accumulate(t, &batch, &out);
            if (!rc && vb) rc = qw_trainer_vision_backward(t, vb);
            qw_vl_batch_free(vb);
            if (rc) break;
            loss_aux[0] += out.loss;
            loss_aux[1] += out.aux_loss / r->micro_global;
        }
        if (rc || (rc = qw_trainer_reduce(t, loss_aux, 2))) break;
        if (step == start_step && o->dump_grads && (rc = qw_trainer_dump_grads(t, o->dump_grads))) break;
        double norm, lr;
        qw_trainer_update(t, step, &norm, &lr);
        tokens += (long long)r->R * T;
        double dt = qw_now() - t0;
        size_t in_use, peak;
        o->ops->mem_stats(&in_use, &peak);
        const qw_params *P = qw_trainer_params(t);
        float aux_coef = qw_trainer_aux_coef(t);
        qw_metric m[12];
        int k = 0;
        m[k++] = (qw_metric){"loss", loss_aux[0] + aux_coef * loss_aux[1]};
        m[k++] = (qw_metric){"lr", lr};
        m[k++] = (qw_metric){"grad_norm", norm};
        m[k++] = (qw_metric){"tokens", (double)tokens};
        m[k++] = (qw_metric){"tok_per_s", r->R * (double)T / dt};
        m[k++] = (qw_metric){"mem_peak_bytes", (double)peak};
        double mp, mg, mo;
        qw_trainer_memory(t, &mp, &mg, &mo);
        m[k++] = (qw_metric){"mem_params_bytes", mp};
        m[k++] = (qw_metric){"mem_grads_bytes", mg};
        m[k++] = (qw_metric){"mem_optim_bytes", mo};
        if (P->cfg.arch == QW_ARCH_MOE) {
            m[k++] = (qw_metric){"aux_loss", loss_aux[1]};
            m[k++] = (qw_metric){"ce_loss", loss_aux[0]};
        }
        if ((rc = qw_trainer_log(t, step + 1, m, k))) break;
        qw_trainer_progress(t, step + 1, "step %ld/%ld  loss %.4f  lr %.2e  %.0f tok/s", step + 1, o->steps,
                            m[0].value, lr, m[4].value);
        if (!isfinite(loss_aux[0])) {
            rc = qw_error(QW_EXIT_FAIL, "step %ld: the loss is not finite (%g)", step + 1, loss_aux[0]);
            break;
        }
        int last = step + 1 == o->steps;
        if (r->val && o->eval_every > 0 && ((step + 1) % o->eval_every == 0 || last) && (rc = validate(r, step + 1)))
            break;
        if ((rc = qw_trainer_end_step(t, step + 1, tokens))) break;
    }
    return rc;
}

/* Open the data (checked against the model and its tokenizer), size the
 * steps, and train. */
static int setup_and_train(run *r)
{
    const qw_train_opts *o = r->o;
    qw_trainer *t = r->t;
    uint64_t identity = qw_trainer_identity(t);
    int rc = qw_dataset_open(o->data, o->n_data, "train", o->seq_len, identity, &r->train);
    if (!rc && !identity) identity = qw_dataset_identity(r->train);
    if (!rc && o->require_mask && qw_dataset_unmasked(r->train))
        rc = qw_error(QW_EXIT_DATA, "'%s': shards without loss masks (pack conversations with qw-tokenize --chat or "
                      "qw-pack --chat; --all-tokens learns every token)", qw_dataset_unmasked(r->train));

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
    r->images = !rc && qw_dataset_has_images(r->train);
    const qw_params *P0 = qw_trainer_params(t);
    if (!rc && r->images && P0->cfg.vision.depth <= 0)
        rc = qw_error(QW_EXIT_DATA, "the data has images, but the model (%s) has no vision tower", P0->cfg.model_type);
    if (!rc && r->images && strcmp(o->ops->name, "cpu"))
        rc = qw_error(QW_EXIT_FAIL, "training with images runs on the CPU only for now (--device cpu)");
    qw_trainer_batch tb = {identity, r->T, o->batch_tokens, r->micro, r->micro_global, data_state, r,
                           o->freeze_vision || !r->images};
    if (!rc && o->eval_every > 0)
        rc = qw_dataset_open(o->data, o->n_data, "val", o->seq_len, identity, &r->val);
    if (!rc && r->val && o->require_mask && qw_dataset_unmasked(r->val))
        rc = qw_error(QW_EXIT_DATA, "'%s': shards without loss masks", qw_dataset_unmasked(r->val));
    const qw_params *P = qw_trainer_params(t);
    if (!rc && (int)qw_dataset_vocab_size(r->train) > P->cfg.vocab_size)
        rc = qw_error(QW_EXIT_DATA, "the data's vocabulary (%u tokens) is larger than the model's (%d)",
                      qw_dataset_vocab_size(r->train), P->cfg.vocab_size);
    if (!rc) rc = qw_trainer_begin(t, &tb);
    if (rc) return rc;
    r->model = qw_trainer_model(t);
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
    if (r->images) r->step_img = qw_calloc(r->rows_local ? r->rows_local : 1, sizeof *r->step_img);

    long start = qw_trainer_start_step(t);
    if (r->rank == 0 && !o->quiet) {
        int64_t total, active;
        qw_config_param_counts(&P->cfg, &total, &active);
        char a[16], b[16], c[16];
        qw_warn("%s model, %s parameters (%s active), %d rank%s, %d rows × %d tokens per step "
                "(%d per forward), %s train rows, steps %ld..%ld",
                P->cfg.arch == QW_ARCH_MOE ? "MoE" : "dense", qw_human((double)total, a),
                qw_human((double)active, b), r->size, r->size > 1 ? "s" : "", r->R, r->T, r->micro,
                qw_human((double)qw_dataset_rows(r->train), c), start, o->steps);
    }
    return train_loop(r, start, qw_trainer_start_tokens(t));
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
    int rc = qw_trainer_open(o, &r.t);
    r.rank = qw_trainer_rank(r.t);
    r.size = qw_trainer_size(r.t);
    if (!rc) rc = check_step_size(o, r.size);
    if (!rc) rc = setup_and_train(&r);
    run_free(&r);
    return qw_trainer_close(r.t, rc);
}
