/* qw-pretrain — train a Qwen3 model on packed shards (qw/train.h). */
#include "qw/cli.h"
#include "qw/train.h"

int main(int argc, char **argv)
{
    qw_set_prog(argv[0]);
    static const qw_train_program prog = {
        "qw-pretrain", "(--config FILE | --model DIR | --resume DIR) --data PATH -T T --batch-tokens N --steps N --out DIR [options]",
        "Train a Qwen3 model (dense or MoE) on packed shards from qw-pack: AdamW, warmup-cosine or WSD,\n"
        "gradient accumulation, clipping, validation, checkpoints that resume exactly.  Under mpirun,\n"
        "ranks split every global batch (data parallel).  SIGINT or SIGTERM saves a checkpoint and exits\n"
        "130 or 143 (unfinished: continue with --resume).",
        QW_TRAIN_PRETRAIN,
    };
    qw_train_opts o;
    qw_train_parse(&prog, argc, argv, &o);
    if (qw_train_run(&o)) qw_die_last();
    qw_close_stdout();
    return 0;
}
