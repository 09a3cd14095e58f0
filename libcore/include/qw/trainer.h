/* qw/trainer.h — the trainer under every training program: parameters,
 * gradients, AdamW moments, gradient accumulation, the reduction over MPI
 * ranks, clipping, the optimizer step, metrics, checkpoints that resume
 * bit-exactly, and SIGINT/SIGTERM.  A program's loop (qw/train.h's shard
 * loop for qw-pretrain and qw-sft; qw-grpo's and qw-dpo's loops) owns its
 * data and its objective and drives the trainer step by step:
 *
 *     qw_trainer_open(o, &t)                 model, moments, resume state
 *     ... open the data, check it against qw_trainer_identity ...
 *     qw_trainer_begin(t, &b)                arenas to the backend, the model, metrics
 *     for step = qw_trainer_start_step(t) … o->steps − 1:
 *         qw_trainer_zero_grad(t)
 *         for each micro-batch:              coefficients known before the forward:
 *             qw_trainer_accumulate(t, batch, …)         fused forward + backward
 *         or:                                coefficients computed from the forward:
 *             qw_trainer_forward(t, batch, logp, …)      per-token log-probs
 *             … coef = f(logp) …
 *             qw_trainer_backward(t, coef, …)
 *         or, for a reward model (o->value_head; qw/rm.h):
 *             qw_trainer_forward_value(t, batch, idx, n, r)  a reward per pooled position
 *             … dr = ∂loss/∂r …
 *             qw_trainer_backward_value(t, dr)
 *         qw_trainer_reduce(t, sums, n)      sum gradients (and the loop's sums) over ranks
 *         qw_trainer_update(t, step, …)      clip, AdamW
 *         qw_trainer_log(t, step + 1, …)     metrics (rank 0)
 *         qw_trainer_end_step(t, step + 1, tokens)   signals, saving; stop when asked
 *     qw_trainer_close(t, status)
 *
 * The loss is Σ_t coef_t·(−log p(target_t)) (qw/objective.h): the loop
 * chooses the coefficients so that the sum over micro-batches and ranks is
 * the step's loss (e.g. 1/(targets of the global batch) for a token mean).
 *
 * Memory: weights, gradients and moments live on the backend (o->ops);
 * with several ranks on a GPU backend the gradients are staged through a
 * host buffer for the MPI collectives (the CPU backend's arenas are given
 * to MPI directly, and a GPU backend's to NCCL with --comm nccl).  Checkpoints are written by rank 0 from the device
 * arenas; a resumed run loads on the host, then moves.
 *
 * Layout (o->mesh, o->zero; qw/comm.h's mesh).  Only data parallel is
 * built: every rank holds the whole model and takes its share of the
 * batch; other axes larger than 1 are QW_EXIT_USAGE at open.
 *
 * ZeRO (o->zero; on one rank the one part is the whole arena).  The arena is cut into one
 * contiguous range per rank (about total / ranks elements, boundaries at
 * multiples of 16 floats, across tensor boundaries where they fall); rank
 * r owns range r's AdamW moments and updates only that range of the fp32
 * weights (qw_adamw_step_shard); then each range is broadcast from its
 * owner (the allgather of the parameters) and the compute copy refreshed.
 *   zero 1  the moments are sharded (2/ranks of the one-process optimizer
 *           memory); the gradient is summed over the ranks whole
 *           (allreduce), as without ZeRO, so the global norm is computed
 *           as there.
 *   zero 2  and the gradient is reduce-scattered: each range is summed on
 *           its owner only (one reduce per range, rooted at the owner),
 *           halving the traffic of the allreduce; the norm is the sum of
 *           the ranges' Σ g² over the ranks.  After qw_trainer_reduce only
 *           the rank's own range of qw_trainer_grads is the summed
 *           gradient.  The reduce runs after the whole backward (the model
 *           has no per-layer hook yet to start it bucket by bucket during
 *           the backward), and the backward still accumulates the rank's
 *           whole gradient arena, so the gradient memory is that of zero 1
 *           except for the staging of a GPU backend (one range instead of
 *           the whole arena).
 *   zero 3  (sharded parameters, gathered per layer ahead of use) is not
 *           built: it needs per-layer hooks in the model's forward and
 *           backward; QW_EXIT_USAGE.
 * Every element gets the arithmetic of the unsharded update, so losses
 * follow the one-process run within the reordering of the sums.
 * Checkpoints stay whole and keyed by name (qw/ckpt.h): rank 0 gathers
 * the moments' ranges from the other ranks (point to point, one range at a
 * time into whole host arenas), saves, and frees them; a resumed run loads
 * the whole checkpoint on every rank and keeps its range.  So a run saved
 * under one layout resumes under any other, or on one process.
 *
 * Collective calls (every rank calls them, in the same order): open,
 * begin, reduce, allreduce, update (under ZeRO), end_step, close.  Errors: 0 or QW_EXIT_* with
 * a message (qw/cli.h); bad checkpoints or data are QW_EXIT_DATA.
 */
#ifndef QW_TRAINER_H
#define QW_TRAINER_H

#include <stdint.h>

#include <cJSON.h>

#include "qw/metrics.h"
#include "qw/model.h"
#include "qw/params.h"
#include "qw/train.h"

typedef struct qw_trainer qw_trainer;

/* Start MPI (qw/comm.h), install the signal handlers, and build the
 * parameters from o->config_path (random init by o->seed), o->model_dir or
 * o->resume (weights, moments and state loaded); the model overrides
 * (rope_theta, YaRN) apply unless resuming alone.  With o->value_head a
 * causal-LM start becomes a reward model (its LM head dropped, a new
 * score.weight drawn from o->seed); without it a reward model is
 * QW_EXIT_DATA.  The tokenizer identity
 * comes from o->tokenizer, else from the checkpoint started from, else
 * stays 0 (unknown).  `o` must outlive the trainer.  On failure *out is
 * still set (pass it to qw_trainer_close with the status). */
int qw_trainer_open(const qw_train_opts *o, qw_trainer **out);

int qw_trainer_rank(const qw_trainer *t);
int qw_trainer_size(const qw_trainer *t);
/* The parameters (their config: vocabulary, architecture …); on the host
 * until qw_trainer_begin, on the backend after. */
const qw_params *qw_trainer_params(const qw_trainer *t);
/* The tokenizer identity the data must have (0: unknown yet). */
uint64_t qw_trainer_identity(const qw_trainer *t);
/* The resumed step (0 for a new run) and the tokens trained so far. */
long qw_trainer_start_step(const qw_trainer *t);
long long qw_trainer_start_tokens(const qw_trainer *t);

/* What the loop tells the trainer before the first step. */
typedef struct {
    uint64_t data_identity;    /* the data's tokenizer identity (recorded; a resumed run must match) */
    int seq_len;               /* T of the model's batches */
    long long batch_tokens;    /* recorded; a resumed run must match */
    int micro_rows;            /* B of the model's batches */
    int micro_global;          /* micro-batches per step over all ranks (the aux loss's mean) */
    /* The data position to store in a checkpoint saved after `step` steps
     * (a new JSON object, owned by the trainer; NULL: none). */
    cJSON *(*data_state)(void *ctx, long step);
    void *ctx;
    /* Qwen3-VL: the vision tower (model.visual.*) is fixed: AdamW skips
     * its tensors (no update, no weight decay); qw_trainer_vision_backward
     * adds nothing.  Programs that train without images set it. */
    int freeze_vision;
} qw_trainer_batch;

/* Check a resumed run against the data (identity, batch, seq_len), move
 * the arenas to the backend, build the model for micro_rows × seq_len and
 * open the metrics (truncating a resumed log after the resumed step). */
int qw_trainer_begin(qw_trainer *t, const qw_trainer_batch *b);
qw_model *qw_trainer_model(qw_trainer *t);
/* The MoE load-balancing coefficient (o->aux_coef, or the config's when
 * that is negative; 0 for dense models), and the weight each micro-batch's
 * aux loss gets in the backward: aux_coef / micro_global. */
float qw_trainer_aux_coef(const qw_trainer *t);
float qw_trainer_aux_weight(const qw_trainer *t);

void qw_trainer_zero_grad(qw_trainer *t);
/* Forward and backward of one micro-batch whose coefficients are in the
 * batch (qw_model_step): the gradient is added to the step's. */
int qw_trainer_accumulate(qw_trainer *t, const qw_batch *b, qw_model_out *out);
/* After qw_trainer_accumulate of a batch with images (qw/vldata.h): the
 * vision tower's gradient added to the step's (nothing when the tower is
 * frozen; the CPU backend only: QW_EXIT_FAIL otherwise). */
struct qw_vl_batch;
int qw_trainer_vision_backward(qw_trainer *t, struct qw_vl_batch *vb);
/* The split path, for objectives whose coefficients depend on the
 * forward: the forward (logp, host [B·T], gets log p(target) per token;
 * b->coef may be NULL here), then the backward with coefficients given
 * now (host [B·T]); the gradient is added to the step's. */
int qw_trainer_forward(qw_trainer *t, const qw_batch *b, float *logp, qw_model_out *out);
int qw_trainer_backward(qw_trainer *t, const float *coef);
/* The value path of a reward model (o->value_head): the forward of a
 * batch to the rewards r (host [n]) at the n flat positions idx (host,
 * r·T + t; qw_rm_pool chooses them), then the backward for dr =
 * ∂loss/∂r (host [n]): the score head's and the backbone's gradients are
 * added to the step's.  The trainer keeps the n hidden rows in between
 * (n·H floats of host memory).  Errors: as qw_model_forward_hidden; a
 * model without score.weight is QW_EXIT_DATA; backward_value without
 * forward_value is QW_EXIT_FAIL. */
int qw_trainer_forward_value(qw_trainer *t, const qw_batch *b, const int32_t *idx, int n, float *r);
int qw_trainer_backward_value(qw_trainer *t, const float *dr);
/* The step's gradient (on the backend; after qw_trainer_reduce it is the
 * sum over ranks), e.g. to dump it for a check (qw_params_host). */
const qw_params *qw_trainer_grads(const qw_trainer *t);

/* Write the step's gradient (as it is now: call it after qw_trainer_reduce
 * for the global one) to `path` as safetensors, one F32 tensor grad.NAME
 * per parameter (rank 0 writes; others do nothing).  For checks against an
 * independent reference (qw-grpo, qw-dpo --dump-grads). */
int qw_trainer_dump_grads(const qw_trainer *t, const char *path);

/* Sum the step's gradients over the ranks, and the loop's n sums (losses,
 * counts) with them; nothing to do on one rank. */
int qw_trainer_reduce(qw_trainer *t, double *sums, int n);
/* Sum n values over the ranks (e.g. the targets of the global batch). */
int qw_trainer_allreduce(qw_trainer *t, double *v, int n);
/* The optimizer step `step` (0-based): the global gradient norm (before
 * clipping) into *norm, the schedule's learning rate into *lr, clipping to
 * o->clip, AdamW.  Waits for the backend, so the caller's clock includes it. */
void qw_trainer_update(qw_trainer *t, long step, double *norm, double *lr);

/* This rank's bytes of the weights (fp32 master and the compute copy),
 * the gradients (the arena and any host staging) and the optimizer state
 * (AdamW's two moments: all of them, or the shard under ZeRO). */
void qw_trainer_memory(const qw_trainer *t, double *params, double *grads, double *optim);

/* Write metrics for `step` (rank 0; nothing without --log/--tensorboard). */
int qw_trainer_log(qw_trainer *t, long step, const qw_metric *m, int n);
/* The progress line (rank 0, a terminal, not quiet), and a message after
 * it (rank 0, not quiet). */
void qw_trainer_progress(qw_trainer *t, long step, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void qw_trainer_say(qw_trainer *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* After `step` steps, `tokens` trained: save a checkpoint when it is due
 * (every o->save_every, the last step, a stop), and stop when SIGINT or
 * SIGTERM arrived on any rank: then the status is 128 + the signal, with a
 * message naming the step and how to continue. */
int qw_trainer_end_step(qw_trainer *t, long step, long long tokens);

/* Free everything and finalize MPI; returns `status`.  A failure on one of
 * several ranks exits the process (MPI not finalized, so mpirun ends the
 * job) instead of leaving the other ranks waiting in a collective. */
int qw_trainer_close(qw_trainer *t, int status);

/* A frozen model: a reference policy (the KL of GRPO, DPO's reference
 * log-probs).  Weights only (the arena and its compute copy, qw/params.h),
 * on the backend: no gradients, no moments; forward only.  `dir` is a model directory or a training --out
 * directory (its latest step; qw_ckpt_model_dir).  Its vocabulary must be
 * `vocab` (else QW_EXIT_DATA naming dir: another model); it runs batches of
 * `rows` × `seq_len`.  Errors: 0 or QW_EXIT_* with a message; *out is NULL
 * on failure. */
typedef struct qw_frozen qw_frozen;
int qw_frozen_open(const char *dir, const qw_ops *ops, int vocab, int rows, int seq_len, qw_frozen **out);
/* log p(target) per token of b (host [rows·seq_len]; 0 where no target). */
int qw_frozen_forward(qw_frozen *f, const qw_batch *b, float *logp);
/* Its model, e.g. to set the sampling temperature (qw_model_set_temperature). */
qw_model *qw_frozen_model(qw_frozen *f);
void qw_frozen_free(qw_frozen *f);

#endif
