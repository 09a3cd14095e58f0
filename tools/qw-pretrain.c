/* qw-pretrain — train a Qwen3 model on packed shards (qw/train.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qw/backend.h"
#include "qw/cli.h"
#include "qw/train.h"

int main(int argc, char **argv)
{
    qw_set_prog(argv[0]);
    qw_train_opts o;
    qw_train_defaults(&o);
    qw_strlist data = {0};
    const char *schedule = "cosine", *decay_shape = "linear";
    long long steps = 0, warmup = 0, save_every = 0, eval_every = 0, eval_rows = 0, batch_tokens = 0;
    int seq_len = 0, deterministic = 0, share_gpus = 0;
    const char *precision = NULL;
    double lr = o.sched.lr;
    const qw_opt opts[] = {
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Model:"},
        {"config", 0, QW_OPT_STR, &o.config_path, "FILE", "config.json of a new model (random initialisation)"},
        {"model", 'm', QW_OPT_STR, &o.model_dir, "DIR", "start from the weights of this checkpoint (a new optimizer)"},
        {"resume", 0, QW_OPT_STR, &o.resume, "DIR", "continue a run: a step directory, or --out of a run (its latest)"},
        {"rope-theta", 0, QW_OPT_DOUBLE, &o.rope_theta, "X", "set the RoPE base (raise it for long context: ABF)"},
        {"yarn-factor", 0, QW_OPT_DOUBLE, &o.yarn_factor, "F", "switch RoPE to YaRN with this factor"},
        {"yarn-original-max", 0, QW_OPT_INT, &o.yarn_original_max, "N", "YaRN original_max_position_embeddings (default: the config's)"},
        {"aux-coef", 0, QW_OPT_DOUBLE, &o.aux_coef, "X", "MoE load-balancing loss weight (default: the config's)"},
        {"capacity-factor", 0, QW_OPT_DOUBLE, &o.capacity_factor, "X", "MoE expert capacity factor (default: none)"},
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Data:"},
        {"data", 'd', QW_OPT_LIST, &data, "PATH", "packed shards: a qw-pack directory or shard files (repeatable)"},
        {"tokenizer", 't', QW_OPT_STR, &o.tokenizer, "FILE", "tokenizer.json (or its directory): the data must match it"},
        {"seq-len", 'T', QW_OPT_INT, &seq_len, "T", "tokens per row (the shards' row length minus one)"},
        {"batch-tokens", 0, QW_OPT_LONG, &batch_tokens, "N", "global batch in tokens, a multiple of T (e.g. 64k)"},
        {"micro-batch", 0, QW_OPT_INT, &o.micro_batch, "B", "rows per forward/backward (default: up to 8)"},
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Optimisation:"},
        {"steps", 0, QW_OPT_LONG, &steps, "N", "total optimizer steps of the run (a resumed run continues up to it)"},
        {"lr", 0, QW_OPT_DOUBLE, &lr, "X", "peak learning rate (default 3e-4)"},
        {"min-lr-ratio", 0, QW_OPT_DOUBLE, &o.sched.min_lr_ratio, "R", "final lr = R·lr (default 0.1)"},
        {"warmup", 0, QW_OPT_LONG, &warmup, "N", "linear warmup steps (default 0)"},
        {"schedule", 0, QW_OPT_STR, &schedule, "KIND", "cosine, wsd (warmup-stable-decay) or constant (default cosine)"},
        {"decay-frac", 0, QW_OPT_DOUBLE, &o.sched.decay_frac, "F", "wsd: fraction of the steps spent decaying (default 0.2)"},
        {"decay-shape", 0, QW_OPT_STR, &decay_shape, "SHAPE", "wsd: linear or sqrt (default linear)"},
        {"weight-decay", 0, QW_OPT_DOUBLE, &o.adamw.weight_decay, "X", "AdamW weight decay (default 0.1; none on norms and embeddings)"},
        {"beta1", 0, QW_OPT_DOUBLE, &o.adamw.beta1, "X", "AdamW beta1 (default 0.9)"},
        {"beta2", 0, QW_OPT_DOUBLE, &o.adamw.beta2, "X", "AdamW beta2 (default 0.95)"},
        {"clip", 0, QW_OPT_DOUBLE, &o.clip, "X", "clip the global gradient norm at X (default 1.0; 0: off)"},
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Output:"},
        {"out", 'o', QW_OPT_STR, &o.out, "DIR", "checkpoints: DIR/step-NNNNNN/ and DIR/latest"},
        {"save-every", 0, QW_OPT_LONG, &save_every, "N", "save every N steps (default: at the end only)"},
        {"keep-last", 0, QW_OPT_INT, &o.keep_last, "K", "keep the newest K checkpoints (default 3; 0: all)"},
        {"eval-every", 0, QW_OPT_LONG, &eval_every, "N", "validation loss every N steps and at the end (needs a val split)"},
        {"eval-rows", 0, QW_OPT_LONG, &eval_rows, "N", "validation rows per evaluation (default: all)"},
        {"log", 0, QW_OPT_STR, &o.log, "FILE", "metrics as JSONL, one object per step"},
        {"tensorboard", 0, QW_OPT_STR, &o.tb_dir, "DIR", "TensorBoard event file in DIR"},
        {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Compute:"},
        {"precision", 0, QW_OPT_STR, &precision, "fp32|bf16", "activation precision (default: bf16 on cuda, fp32 on cpu)"},
        {"deterministic", 0, QW_OPT_FLAG, &deterministic, NULL, "bit-identical results run to run (may be slower on cuda)"},
        {"recompute", 0, QW_OPT_FLAG, &o.recompute, NULL, "recompute norms and dense-MLP activations in the backward (less memory)"},
        {"share-gpus", 0, QW_OPT_FLAG, &share_gpus, NULL, "let ranks of a node share GPUs (default: one GPU per rank, the node-local rank's)"},
        QW_COMMON_OPTS,
        {0},
    };
    const qw_prog_info info = {
        "qw-pretrain", "(--config FILE | --model DIR | --resume DIR) --data PATH -T T --batch-tokens N --steps N --out DIR [options]",
        "Train a Qwen3 model (dense or MoE) on packed shards from qw-pack: AdamW, warmup-cosine or WSD,\n"
        "gradient accumulation, clipping, validation, checkpoints that resume exactly.  Under mpirun,\n"
        "ranks split every global batch (data parallel).  SIGINT or SIGTERM saves a checkpoint and exits\n"
        "130 or 143 (unfinished: continue with --resume).",
        opts,
    };
    if (argc == 1) {   /* nothing asked: the usage, as every program without input does */
        qw_print_help(&info, stderr);
        exit(QW_EXIT_USAGE);
    }
    int first = qw_parse_args(&info, argc, argv);
    if (first < argc) qw_usage_error("unexpected argument '%s'", argv[first]);
    if (!o.config_path && !o.model_dir && !o.resume) qw_usage_error("give --config, --model or --resume");
    if (o.config_path && o.model_dir) qw_usage_error("--config and --model exclude each other");
    if (!data.n) qw_usage_error("give --data");
    if (seq_len <= 0) qw_usage_error("give --seq-len (-T)");
    if (batch_tokens <= 0) qw_usage_error("give --batch-tokens");
    if (steps <= 0) qw_usage_error("give --steps");
    if (!o.out) qw_usage_error("give --out");
    if (qw_sched_kind_parse(schedule, &o.sched.kind)) qw_usage_error("--schedule: '%s' is not cosine, wsd or constant", schedule);
    if (qw_decay_shape_parse(decay_shape, &o.sched.decay_shape)) qw_usage_error("--decay-shape: '%s' is not linear or sqrt", decay_shape);
    o.data = data.items;
    o.n_data = data.n;
    o.seq_len = seq_len;
    o.batch_tokens = batch_tokens;
    o.steps = steps;
    o.sched.lr = lr;
    o.sched.warmup = warmup;
    o.sched.total = steps;
    o.save_every = save_every;
    o.eval_every = eval_every;
    o.eval_rows = eval_rows;
    o.seed = (uint64_t)qw_common_opts.seed;
    o.quiet = qw_common_opts.quiet;
    if (qw_sched_check(&o.sched)) qw_die_last();
    qw_backend_share_gpus(share_gpus);
    if (qw_backend_select(qw_common_opts.device, precision, qw_common_opts.threads, deterministic, &o.ops)) qw_die_last();
    if (qw_train_run(&o)) qw_die_last();
    free(data.items);
    qw_close_stdout();
    return 0;
}
