/* qw/train.h — the shard loop shared by qw-pretrain and qw-sft:
 * data-parallel next-token training over packed shards with AdamW,
 * gradient accumulation, clipping, validation, metrics and checkpoints
 * that resume bit-exactly.  The loop owns the data and the objective; the
 * trainer under it (qw/trainer.h) owns parameters, moments, reduction, the
 * optimizer step, checkpoints and signals.
 *
 * Targets.  Token i+1 of a row is the target of position i when the
 * shard's loss view allows it (qw/shard.h: same document, not padding, loss
 * mask 1), so with the masks of SFT shards only the assistant turns (or
 * completions) are learned.
 *
 * Batches.  A step consumes R = batch_tokens / seq_len rows of the train
 * split: rows step·R … step·R + R − 1 (modulo the number of rows, so the
 * data wraps into a new epoch).  Rank r of N takes the rows j ≡ r (mod N) of
 * those R and runs them through the model micro_batch rows at a time,
 * adding gradients; the ranks' gradients are then summed (MPI allreduce).
 * Every target token of the global batch has the coefficient 1/(targets in
 * the global batch), so the loss and the gradient are those of one big
 * batch whatever N and micro_batch are (doc/design.md, Distributed).  MoE runs
 * add aux_coef times the mean over micro-batches of the load-balancing
 * loss.
 *
 * Positions and documents come from the shards (qw/shard.h): no token
 * attends across a document boundary or is predicted across one.
 *
 * Images (Qwen3-VL, shards of version 2).  Each micro-batch runs the
 * vision tower on the images of its rows (qw_vl_batch, CPU only): the
 * merged features replace the image pad tokens, DeepStack adds its
 * features after the first decoder layers, and the MRoPE position ids are
 * those transformers' get_rope_index gives each packed document alone
 * (they restart at every document, as the shards' positions do); the
 * tower's gradient joins the step's unless the tower is frozen
 * (freeze_vision, or data without images: a tower nothing trains is
 * neither updated nor decayed).
 *
 * Memory.  The weights, gradients and AdamW moments live on the backend
 * (o->ops, qw_params_to_device); with several ranks on a GPU the gradients
 * are downloaded into a host buffer for the MPI collectives and uploaded
 * back; --zero shards the moments (qw/trainer.h, ZeRO).  Checkpoints are
 * written from the device arenas; a resumed run loads on the host, then
 * moves.  Every step record of the metrics carries mem_peak_bytes, the
 * backend's memory high-water mark (ops->mem_stats), and rank 0's
 * mem_params_bytes, mem_grads_bytes and mem_optim_bytes
 * (qw_trainer_memory).
 *
 * Resume.  The data position is a function of the step, the schedule a
 * function of the step, and the arithmetic is deterministic for a given
 * thread count and rank count, so N steps + resume + M steps reproduces
 * one run of N + M steps bit for bit on the CPU.
 *
 * Errors: 0 or QW_EXIT_* with a message (qw/cli.h); 128 + signal after a
 * stop by SIGINT or SIGTERM (below).  Bad data (shards of
 * another tokenizer, a row length other than seq_len, a corrupt shard, a
 * checkpoint whose config differs from the run's) is QW_EXIT_DATA.
 */
#ifndef QW_TRAIN_H
#define QW_TRAIN_H

#include <stdint.h>

#include "qw/comm.h"
#include "qw/ops.h"
#include "qw/optim.h"

typedef struct {
    /* model: one of config_path (random init) or model_dir (weights), or
     * neither when resuming (the checkpoint's config is used) */
    const char *config_path;
    const char *model_dir;
    double rope_theta;         /* > 0: override rope_theta (ABF between stages) */
    double yarn_factor;        /* > 0: switch RoPE to YaRN with this factor */
    int yarn_original_max;     /* YaRN original_max_position_embeddings (0: the config's max) */
    double capacity_factor;    /* MoE expert capacity (0: none) */
    int recompute;             /* activation recomputation (qw_model_opts.recompute) */
    double aux_coef;           /* < 0: router_aux_loss_coef of the config */
    int freeze_vision;         /* Qwen3-VL: leave every model.visual.* tensor as it is (no gradient, no update,
                                  no weight decay); implied when the data has no images */
    int value_head;            /* a reward model (qw/rm.h): a causal LM start loses its LM head and gets a new
                                  score.weight (qw_params_init_head, seed); a reward-model start keeps its own.
                                  0: a reward model is refused (it has no LM head) */

    /* data */
    const char *const *data;   /* shard files or qw-pack directories */
    int n_data;
    const char *tokenizer;     /* tokenizer.json (or a dir holding it): identity checked, copied into checkpoints */
    int require_mask;          /* every shard must carry loss masks (SFT), else QW_EXIT_DATA */
    int seq_len;               /* T */
    long long batch_tokens;    /* global batch, tokens (a multiple of T) */
    int micro_batch;           /* rows per forward/backward (0: min(rows per rank, 8)) */

    /* optimisation */
    qw_adamw adamw;
    qw_sched sched;            /* sched.total is set from steps */
    double clip;               /* max global grad norm (≤ 0: no clipping) */
    long steps;                /* total optimizer steps of the run (a resumed run continues up to it) */
    uint64_t seed;

    /* evaluation, output */
    long eval_every;           /* validation loss every N steps (0: never) */
    long eval_rows;            /* rows of the val split per evaluation (0: all) */
    const char *out;           /* checkpoint directory */
    long save_every;           /* 0: only at the end (and on SIGINT/SIGTERM) */
    int keep_last;
    const char *resume;        /* a step directory or an OUT directory */
    const char *log;           /* metrics JSONL (NULL: none) */
    const char *tb_dir;        /* TensorBoard directory (NULL: none) */
    const char *dump_grads;    /* the first step's summed gradient, before clipping (qw_trainer_dump_grads); NULL: none */
    int quiet;

    /* parallel layout (qw/comm.h's mesh; doc/design.md, Distributed) */
    int mesh[QW_AXES];         /* --dp --tp --pp --ep --cp, indexed by QW_AXIS_* (0: default; dp 0: inferred) */
    int zero;                  /* --zero: 0 (replicated optimizer state), 1 or 2 (qw/trainer.h, ZeRO) */
    const char *comm;          /* --comm: "auto", "mpi" or "single" (NULL: auto) */

    const qw_ops *ops;
} qw_train_opts;

/* Check a layout the way the trainer will (sizes, the product against the
 * rank count, the layouts built so far: data parallel, with --zero 0, 1 or
 * 2); ranks 0 when not known yet (only the sizes are checked then).
 * QW_EXIT_USAGE with a message naming the flags. */
int qw_train_check_layout(const qw_train_opts *o, int ranks);

/* Fill defaults: AdamW(0.9, 0.95, 1e-8, wd 0.1), cosine schedule with
 * min_lr_ratio 0.1, lr 3e-4, clip 1.0, aux_coef −1, keep_last 3. */
void qw_train_defaults(qw_train_opts *o);

/* The command line of a training program: one option table for all of
 * them (the model, data, optimisation, output and compute options of
 * qw-pretrain(1)), with a program's own defaults and extras. */
typedef enum {
    QW_TRAIN_PRETRAIN,         /* qw_train_defaults */
    QW_TRAIN_SFT,              /* TRL's SFTConfig defaults: lr 2e-5, min_lr_ratio 0, weight decay 0,
                                  beta2 0.999; require_mask, and --all-tokens to lift it */
} qw_train_kind;

typedef struct {
    const char *name, *usage, *description;   /* as in qw_prog_info */
    qw_train_kind kind;
} qw_train_program;

/* Fill *o from argv (defaults first), select the backend (o->ops) and
 * check everything; prints the usage and exits 2 on a usage error, exits
 * on a backend failure.  The strings o points at live until exit. */
void qw_train_parse(const qw_train_program *p, int argc, char **argv, qw_train_opts *o);

/* Option-table entries that the post-training programs (qw-grpo, qw-dpo,
 * qw-reward train), whose command lines are their own, share; for their
 * static tables (qw/cli.h's qw_opt, the arguments static storage):
 *   QW_TRAIN_ADAMW_OPTS(o)       --weight-decay --beta1 --beta2 --clip into
 *                                qw_train_opts o, documented with TRL's
 *                                defaults (0, 0.9, 0.999, clip 1.0) that
 *                                those programs set;
 *   QW_TRAIN_DUMP_GRADS_OPT(f)   --dump-grads FILE (qw_trainer_dump_grads);
 *   QW_TRAIN_COMPUTE_OPTS(p, d)  the "Compute:" header, --precision and
 *                                --deterministic: the strings to hand to
 *                                qw_backend_select. */
#define QW_TRAIN_ADAMW_OPTS(o)                                                                                     \
    {"weight-decay", 0, QW_OPT_DOUBLE, &(o).adamw.weight_decay, "X", "AdamW weight decay (default 0)"},             \
    {"beta1", 0, QW_OPT_DOUBLE, &(o).adamw.beta1, "X", "AdamW beta1 (default 0.9)"},                                \
    {"beta2", 0, QW_OPT_DOUBLE, &(o).adamw.beta2, "X", "AdamW beta2 (default 0.999)"},                              \
    {"clip", 0, QW_OPT_DOUBLE, &(o).clip, "X", "clip the global gradient norm at X (default 1.0; 0: off)"}
#define QW_TRAIN_DUMP_GRADS_OPT(file)                                                                              \
    {"dump-grads", 0, QW_OPT_STR, &(file), "FILE", "the first step's gradient as safetensors (grad.NAME), for checks"}
#define QW_TRAIN_COMPUTE_OPTS(precision, deterministic)                                                            \
    {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Compute:"},                                                              \
    {"precision", 0, QW_OPT_STR, &(precision), "fp32|bf16", "activation precision (default: bf16 on cuda, fp32 on cpu)"}, \
    {"deterministic", 0, QW_OPT_FLAG, &(deterministic), NULL, "bit-identical results run to run"}

/* Run the loop to o->steps and return 0.  On SIGINT/SIGTERM it saves a
 * checkpoint and returns qw_signals_status(sig) (130 or 143; qw/signals.h)
 * with a message naming the step: the run is unfinished and resumes with
 * --resume.  Collective: every MPI rank calls it. */
int qw_train_run(const qw_train_opts *o);

#endif
