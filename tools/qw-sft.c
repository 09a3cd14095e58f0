/* qw-sft — supervised fine-tuning of a Qwen3 model on packed shards with
 * loss masks (qw/train.h): the loss is the mean over the global batch's
 * masked-in target tokens, as TRL's SFTTrainer computes it. */
#include "qw/cli.h"
#include "qw/train.h"

int main(int argc, char **argv)
{
    qw_set_prog(argv[0]);
    static const qw_train_program prog = {
        "qw-sft", "(--model DIR | --config FILE | --resume DIR) --data PATH -T T --batch-tokens N --steps N --out DIR [options]",
        "Fine-tune a Qwen3 model on conversations packed by qw-pack in sft mode: the loss is the mean\n"
        "cross-entropy over the tokens the shards' loss masks keep (the assistant turns or completions)\n"
        "in each global batch.  The machinery of qw-pretrain: AdamW, schedules, accumulation, clipping,\n"
        "validation, exact resume, metrics, mpirun data parallel.  SIGINT or SIGTERM saves a checkpoint\n"
        "and exits 130 or 143 (unfinished: continue with --resume).",
        QW_TRAIN_SFT,
    };
    qw_train_opts o;
    qw_train_parse(&prog, argc, argv, &o);
    if (qw_train_run(&o)) qw_die_last();
    qw_close_stdout();
    return 0;
}
