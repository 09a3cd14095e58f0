/* train_cli.c — the command line shared by the training programs
 * (qw-pretrain, qw-sft): one option table, checks and backend selection
 * (qw/train.h, qw_train_parse). */
#include "qw/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qw/backend.h"
#include "qw/cli.h"

void qw_train_parse(const qw_train_program *p, int argc, char **argv, qw_train_opts *o)
{
    qw_train_defaults(o);
    int sft = p->kind == QW_TRAIN_SFT;
    if (sft) {   /* TRL's SFTConfig: lr 2e-5, no weight decay, Adam's beta2, decay to 0 */
        o->sched.lr = 2e-5;
        o->sched.min_lr_ratio = 0;
        o->adamw.weight_decay = 0;
        o->adamw.beta2 = 0.999;
        o->require_mask = 1;
    }
    static qw_strlist data;
    static const char *schedule = "cosine", *decay_shape = "linear", *precision;
    static long long steps, warmup, save_every, eval_every, eval_rows, batch_tokens;
    static int seq_len, deterministic, share_gpus, all_tokens;
    static double lr;
    lr = o->sched.lr;
    qw_opt table[80];
    int n = 0;
#define OPT(...) (table[n++] = (qw_opt){__VA_ARGS__})
    OPT(NULL, 0, QW_OPT_HEADER, NULL, NULL, "Model:");
    OPT("config", 0, QW_OPT_STR, &o->config_path, "FILE", "config.json of a new model (random initialisation)");
    OPT("model", 'm', QW_OPT_STR, &o->model_dir, "DIR", "start from the weights of this checkpoint (a new optimizer)");
    OPT("resume", 0, QW_OPT_STR, &o->resume, "DIR", "continue a run: a step directory, or --out of a run (its latest)");
    OPT("rope-theta", 0, QW_OPT_DOUBLE, &o->rope_theta, "X", "set the RoPE base (raise it for long context: ABF)");
    OPT("yarn-factor", 0, QW_OPT_DOUBLE, &o->yarn_factor, "F", "switch RoPE to YaRN with this factor");
    OPT("yarn-original-max", 0, QW_OPT_INT, &o->yarn_original_max, "N", "YaRN original_max_position_embeddings (default: the config's)");
    OPT("aux-coef", 0, QW_OPT_DOUBLE, &o->aux_coef, "X", "MoE load-balancing loss weight (default: the config's)");
    OPT("capacity-factor", 0, QW_OPT_DOUBLE, &o->capacity_factor, "X", "MoE expert capacity factor (default: none)");
    OPT("freeze-vision", 0, QW_OPT_FLAG, &o->freeze_vision, NULL, "Qwen3-VL: train the language model only (the vision tower is fixed)");
    OPT(NULL, 0, QW_OPT_HEADER, NULL, NULL, "Data:");
    OPT("data", 'd', QW_OPT_LIST, &data, "PATH", "packed shards: a qw-pack directory or shard files (repeatable)");
    OPT("tokenizer", 't', QW_OPT_STR, &o->tokenizer, "FILE", "tokenizer.json (or its directory): the data must match it");
    OPT("seq-len", 'T', QW_OPT_INT, &seq_len, "T", "tokens per row (the shards' row length minus one)");
    OPT("batch-tokens", 0, QW_OPT_LONG, &batch_tokens, "N", "global batch in tokens, a multiple of T (e.g. 64k)");
    OPT("micro-batch", 0, QW_OPT_INT, &o->micro_batch, "B", "rows per forward/backward (default: up to 8)");
    if (sft) OPT("all-tokens", 0, QW_OPT_FLAG, &all_tokens, NULL, "accept shards without loss masks: learn every token");
    OPT(NULL, 0, QW_OPT_HEADER, NULL, NULL, "Optimisation:");
    OPT("steps", 0, QW_OPT_LONG, &steps, "N", "total optimizer steps of the run (a resumed run continues up to it)");
    OPT("lr", 0, QW_OPT_DOUBLE, &lr, "X", sft ? "peak learning rate (default 2e-5)" : "peak learning rate (default 3e-4)");
    OPT("min-lr-ratio", 0, QW_OPT_DOUBLE, &o->sched.min_lr_ratio, "R",
        sft ? "final lr = R·lr (default 0)" : "final lr = R·lr (default 0.1)");
    OPT("warmup", 0, QW_OPT_LONG, &warmup, "N", "linear warmup steps (default 0)");
    OPT("schedule", 0, QW_OPT_STR, &schedule, "KIND", "cosine, wsd (warmup-stable-decay) or constant (default cosine)");
    OPT("decay-frac", 0, QW_OPT_DOUBLE, &o->sched.decay_frac, "F", "wsd: fraction of the steps spent decaying (default 0.2)");
    OPT("decay-shape", 0, QW_OPT_STR, &decay_shape, "SHAPE", "wsd: linear or sqrt (default linear)");
    OPT("weight-decay", 0, QW_OPT_DOUBLE, &o->adamw.weight_decay, "X",
        sft ? "AdamW weight decay (default 0; none on norms and embeddings)"
            : "AdamW weight decay (default 0.1; none on norms and embeddings)");
    OPT("beta1", 0, QW_OPT_DOUBLE, &o->adamw.beta1, "X", "AdamW beta1 (default 0.9)");
    OPT("beta2", 0, QW_OPT_DOUBLE, &o->adamw.beta2, "X", sft ? "AdamW beta2 (default 0.999)" : "AdamW beta2 (default 0.95)");
    OPT("clip", 0, QW_OPT_DOUBLE, &o->clip, "X", "clip the global gradient norm at X (default 1.0; 0: off)");
    OPT(NULL, 0, QW_OPT_HEADER, NULL, NULL, "Output:");
    OPT("out", 'o', QW_OPT_STR, &o->out, "DIR", "checkpoints: DIR/step-NNNNNN/ and DIR/latest");
    OPT("save-every", 0, QW_OPT_LONG, &save_every, "N", "save every N steps (default: at the end only)");
    OPT("keep-last", 0, QW_OPT_INT, &o->keep_last, "K", "keep the newest K checkpoints (default 3; 0: all)");
    OPT("eval-every", 0, QW_OPT_LONG, &eval_every, "N", "validation loss every N steps and at the end (needs a val split)");
    OPT("eval-rows", 0, QW_OPT_LONG, &eval_rows, "N", "validation rows per evaluation (default: all)");
    OPT("log", 0, QW_OPT_STR, &o->log, "FILE", "metrics as JSONL, one object per step");
    OPT("tensorboard", 0, QW_OPT_STR, &o->tb_dir, "DIR", "TensorBoard event file in DIR");
    OPT("dump-grads", 0, QW_OPT_STR, &o->dump_grads, "FILE", "the first step's gradient as safetensors (grad.NAME), for checks");
    OPT(NULL, 0, QW_OPT_HEADER, NULL, NULL, "Compute:");
    OPT("precision", 0, QW_OPT_STR, &precision, "fp32|bf16", "activation precision (default: bf16 on cuda, fp32 on cpu)");
    OPT("deterministic", 0, QW_OPT_FLAG, &deterministic, NULL, "bit-identical results run to run (may be slower on cuda)");
    OPT("recompute", 0, QW_OPT_FLAG, &o->recompute, NULL, "recompute norms and dense-MLP activations in the backward (less memory)");
    OPT("share-gpus", 0, QW_OPT_FLAG, &share_gpus, NULL, "let ranks of a node share GPUs (default: one GPU per rank, the node-local rank's)");
    OPT(NULL, 0, QW_OPT_HEADER, NULL, NULL, "Parallel layout (under mpirun or srun):");
    OPT("dp", 0, QW_OPT_INT, &o->mesh[QW_AXIS_DP], "D", "data-parallel ranks (default: the ranks started / (tp·pp·cp))");
    OPT("tp", 0, QW_OPT_INT, &o->mesh[QW_AXIS_TP], "T", "tensor-parallel ranks (default 1; more: not implemented yet)");
    OPT("pp", 0, QW_OPT_INT, &o->mesh[QW_AXIS_PP], "P", "pipeline stages (default 1; more: not implemented yet)");
    OPT("ep", 0, QW_OPT_INT, &o->mesh[QW_AXIS_EP], "E", "expert-parallel ranks, within dp (default 1; more: not implemented yet)");
    OPT("cp", 0, QW_OPT_INT, &o->mesh[QW_AXIS_CP], "C", "context-parallel ranks (default 1; more: not implemented yet)");
    OPT("zero", 0, QW_OPT_INT, &o->zero, "Z", "ZeRO stage over data parallel: 0, 1 (sharded moments), 2 (and gradients) (default 0)");
    OPT("comm", 0, QW_OPT_STR, &o->comm, "KIND", "collectives: auto, mpi, nccl (GPU buffers) or single (default auto)");
    static const qw_opt common[] = {QW_COMMON_OPTS, {0}};
    for (size_t i = 0; i < sizeof common / sizeof *common; i++) table[n++] = common[i];
#undef OPT
    const qw_prog_info info = {p->name, p->usage, p->description, table};
    if (argc == 1) {   /* nothing asked: the usage, as every program without input does */
        qw_print_help(&info, stderr);
        exit(QW_EXIT_USAGE);
    }
    int first = qw_parse_args(&info, argc, argv);
    if (first < argc) qw_usage_error("unexpected argument '%s'", argv[first]);
    if (!o->config_path && !o->model_dir && !o->resume) qw_usage_error("give --config, --model or --resume");
    if (o->config_path && o->model_dir) qw_usage_error("--config and --model exclude each other");
    if (!data.n) qw_usage_error("give --data");
    if (seq_len <= 0) qw_usage_error("give --seq-len (-T)");
    if (batch_tokens <= 0) qw_usage_error("give --batch-tokens");
    if (steps <= 0) qw_usage_error("give --steps");
    if (!o->out) qw_usage_error("give --out");
    if (qw_sched_kind_parse(schedule, &o->sched.kind)) qw_usage_error("--schedule: '%s' is not cosine, wsd or constant", schedule);
    if (qw_decay_shape_parse(decay_shape, &o->sched.decay_shape)) qw_usage_error("--decay-shape: '%s' is not linear or sqrt", decay_shape);
    o->data = data.items;
    o->n_data = data.n;
    o->seq_len = seq_len;
    o->batch_tokens = batch_tokens;
    o->steps = steps;
    o->sched.lr = lr;
    o->sched.warmup = warmup;
    o->sched.total = steps;
    o->save_every = save_every;
    o->eval_every = eval_every;
    o->eval_rows = eval_rows;
    o->seed = (uint64_t)qw_common_opts.seed;
    o->quiet = qw_common_opts.quiet;
    if (all_tokens) o->require_mask = 0;
    if (qw_sched_check(&o->sched)) qw_die_last();
    qw_backend_share_gpus(share_gpus);
    if (qw_backend_select(qw_common_opts.device, precision, qw_common_opts.threads, deterministic, &o->ops)) qw_die_last();
    /* the layout against the launcher's rank count, before MPI starts */
    qw_launch l;
    if (qw_launch_detect(&l)) qw_die_last();
    if (qw_train_check_layout(o, l.launcher ? l.size : 1)) qw_usage_error("%s", qw_error_msg());
}

int qw_train_check_layout(const qw_train_opts *o, int ranks)
{
    if (o->zero < 0 || o->zero > 3) return qw_error(QW_EXIT_USAGE, "--zero %d: must be 0, 1, 2 or 3", o->zero);
    if (o->zero == 3)
        return qw_error(QW_EXIT_USAGE, "--zero 3 (sharded parameters): not implemented yet; --zero 1 or 2 shard the "
                        "optimizer state and gradients");
    if (o->comm && strcmp(o->comm, "auto") && strcmp(o->comm, "mpi") && strcmp(o->comm, "single") &&
        strcmp(o->comm, "nccl"))
        return qw_error(QW_EXIT_USAGE, "--comm '%s': not auto, mpi, nccl or single", o->comm);
#ifndef QW_HAVE_NCCL
    if (o->comm && !strcmp(o->comm, "nccl"))
        return qw_error(QW_EXIT_USAGE, "--comm nccl: this build has no NCCL (a CUDA build with nccl.h has)");
#endif
    if (o->comm && !strcmp(o->comm, "nccl") && o->ops && !strcmp(o->ops->name, "cpu"))
        return qw_error(QW_EXIT_USAGE, "--comm nccl: needs --device cuda (NCCL sums GPU buffers)");
    for (int a = 0; a < QW_AXES; a++)
        if (o->mesh[a] < 0) return qw_error(QW_EXIT_USAGE, "--%s %d: must be at least 1", qw_axis_names[a], o->mesh[a]);
    for (int a = 0; a < QW_AXES; a++)
        if (a != QW_AXIS_DP && o->mesh[a] > 1)
            return qw_error(QW_EXIT_USAGE, "--%s %d: %s parallel is not implemented yet (data parallel with --zero is)",
                            qw_axis_names[a], o->mesh[a],
                            a == QW_AXIS_TP ? "tensor" : a == QW_AXIS_PP ? "pipeline" : a == QW_AXIS_EP ? "expert" : "context");
    if (ranks <= 0) return 0;
    qw_mesh m;
    return qw_mesh_make(ranks, 0, o->mesh, &m);
}
