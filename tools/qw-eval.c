/* qw-eval — evaluate a model (qw-eval(1)).
 *
 *   qw-eval forward   one forward (and backward) pass (fp32 unless
 *                     --precision bf16); dumps logits, loss, aux_loss and
 *                     gradients for parity checks
 *   qw-eval bench     forward+backward throughput with random weights,
 *                     against the backend's own GEMM rate, and the peak
 *                     device memory
 *   qw-eval ppl       perplexity of documents (lm-eval's rolling windows)
 *   qw-eval mc        multiple-choice accuracy (lm-eval's acc, acc_norm)
 *   qw-eval gen       generative benchmarks (GSM8K, MATH, HumanEval) on the
 *                     generation engine, scored as lm-eval scores them
 *   qw-eval score     the same scoring of completions already made
 *   qw-eval plot      metrics JSONL → SVG (and PNG) figures
 *   qw-eval pixels    images → pixel_values and image_grid_thw, as the
 *                     Qwen3-VL image processor makes them
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <math.h>

#include "qw/backend.h"
#include "qw/buf.h"
#include "qw/chat.h"
#include "qw/cli.h"
#include "qw/config.h"
#include "qw/eval.h"
#include "qw/file.h"
#include "qw/infer.h"
#include "qw/image.h"
#include "qw/io.h"
#include "qw/model.h"
#include "qw/mrope.h"
#include "qw/ops.h"
#include "qw/metrics.h"
#include "qw/params.h"
#include "qw/plot.h"
#include "qw/reward.h"
#include "qw/rollout.h"
#include "qw/sandbox.h"
#include "qw/size.h"
#include "qw/st.h"
#include "qw/tokenize.h"
#include "qw/vision.h"
#include "qw/vldata.h"

static const char *o_model, *o_input, *o_output, *o_config, *o_precision;
static int o_grads, o_seq = -1, o_batch = -1, o_steps = -1, o_deterministic;
/* ppl, mc */
static const char *o_tokenizer, *o_field, *o_task, *o_tasks, *o_format, *o_fewshot_file, *o_delim, *o_per_item,
                  *o_markdown, *o_compare, *o_prefix_token;
static int o_jsonl, o_max_length = -1, o_batch_tokens = -1, o_num_fewshot;
/* gen, score */
static const char *o_completions, *o_ks, *o_thinking;
static int o_chat, o_samples = 1, o_max_new = 256, o_top_k, o_max_batch = 64, o_fewshot_first;
static double o_temperature, o_top_p = 1;
/* plot */
static const char *o_svg, *o_png, *o_keys, *o_title;

/* options of every command that computes */
#define COMPUTE_OPTS \
    { "precision", 0, QW_OPT_STR, &o_precision, "fp32|bf16", "activation precision (default: fp32 for forward; bf16 on cuda for bench, ppl, mc)" }, \
    { "deterministic", 0, QW_OPT_FLAG, &o_deterministic, NULL, "bit-identical results run to run (may be slower on cuda)" }

static const qw_opt forward_opts[] = {
    { "model", 'm', QW_OPT_STR, &o_model, "DIR", "model directory: config.json and safetensors" },
    { "input", 'i', QW_OPT_STR, &o_input, "FILE", "safetensors file holding input_ids (I64 or I32, [B,T]), optionally labels and position_ids" },
    { "output", 'o', QW_OPT_STR, &o_output, "FILE", "safetensors file to write (logits, loss, aux_loss, grad.*)" },
    { "grads", 0, QW_OPT_FLAG, &o_grads, NULL, "also write grad.<name> for every parameter" },
    COMPUTE_OPTS,
    QW_COMMON_BEGIN, QW_COMMON_DEVICE, QW_COMMON_THREADS, QW_COMMON_END,
    { 0 },
};

static const qw_opt bench_opts[] = {
    { "config", 0, QW_OPT_STR, &o_config, "FILE", "config.json of the model to time (random weights)" },
    { "seq-len", 'T', QW_OPT_INT, &o_seq, "T", "tokens per row (default 512)" },
    { "batch", 'B', QW_OPT_INT, &o_batch, "B", "rows per step (default 1)" },
    { "steps", 0, QW_OPT_INT, &o_steps, "N", "timed forward+backward steps (default 3)" },
    COMPUTE_OPTS,
    QW_COMMON_BEGIN, QW_COMMON_DEVICE, QW_COMMON_THREADS, QW_COMMON_SEED, QW_COMMON_END,
    { 0 },
};

/* options of the scoring commands */
#define SCORE_OPTS \
    { "model", 'm', QW_OPT_STR, &o_model, "DIR", "model directory: config.json, safetensors and (unless --tokenizer) tokenizer.json" }, \
    { "tokenizer", 't', QW_OPT_STR, &o_tokenizer, "FILE", "tokenizer.json (or a directory holding one)" }, \
    { "max-length", 0, QW_OPT_INT, &o_max_length, "N", "tokens the model sees at once (default: max_position_embeddings)" }, \
    { "batch-tokens", 0, QW_OPT_INT, &o_batch_tokens, "N", "token positions per forward, requests packed into rows (default 8192)" }, \
    { "prefix-token", 0, QW_OPT_STR, &o_prefix_token, "TOKEN", "token (or id) before documents and empty contexts (default: bos, else eos)" }, \
    { "task", 0, QW_OPT_STR, &o_task, "NAME", "the task's name in the results" }, \
    { "per-item", 0, QW_OPT_STR, &o_per_item, "FILE", "write one JSON line per item (document) to FILE" }, \
    { "markdown", 0, QW_OPT_STR, &o_markdown, "FILE", "write the results as a Markdown table to FILE ('-': stdout, instead of JSON)" }, \
    { "compare", 0, QW_OPT_STR, &o_compare, "DIR2", "score a second model too: both side by side, the difference and its stderr" }

static const qw_opt ppl_opts[] = {
    SCORE_OPTS,
    { "jsonl", 0, QW_OPT_FLAG, &o_jsonl, NULL, "each input line is a JSON record (else each file is a document)" },
    { "field", 0, QW_OPT_STR, &o_field, "NAME", "--jsonl: the record's text field (default: text)" },
    COMPUTE_OPTS,
    QW_COMMON_BEGIN, QW_COMMON_DEVICE, QW_COMMON_THREADS, QW_COMMON_QUIET, QW_COMMON_END,
    { 0 },
};

static const qw_opt mc_opts[] = {
    SCORE_OPTS,
    { "tasks", 0, QW_OPT_STR, &o_tasks, "FILE", "the items, one JSON object per line" },
    { "format", 0, QW_OPT_STR, &o_format, "NAME", "generic|hellaswag|arc|mmlu|piqa|winogrande: the items' layout (default generic)" },
    { "num-fewshot", 0, QW_OPT_INT, &o_num_fewshot, "N", "examples before each item (default 0)" },
    { "fewshot-file", 0, QW_OPT_STR, &o_fewshot_file, "FILE", "draw the examples from FILE (default: the other items of --tasks)" },
    { "target-delimiter", 0, QW_OPT_STR, &o_delim, "S", "between context and choice (default \" \")" },
    COMPUTE_OPTS,
    QW_COMMON_BEGIN, QW_COMMON_DEVICE, QW_COMMON_THREADS,
    { "seed", 0, QW_OPT_LONG, &qw_common_opts.seed, "N", "seed of the few-shot draws (default 1234, as lm-eval)" },
    QW_COMMON_QUIET, QW_COMMON_END,
    { 0 },
};

static const qw_opt gen_opts[] = {
    { "model", 'm', QW_OPT_STR, &o_model, "DIR", "model directory: config.json, safetensors and (unless --tokenizer) tokenizer.json" },
    { "tokenizer", 't', QW_OPT_STR, &o_tokenizer, "FILE", "tokenizer.json (or a directory holding one)" },
    { "task", 0, QW_OPT_STR, &o_task, "NAME", "gsm8k|gsm8k_cot|math|humaneval: prompts, stops, answers and metrics (qw-eval(5))" },
    { "tasks", 0, QW_OPT_STR, &o_tasks, "FILE", "the items, one JSON object per line" },
    { "num-fewshot", 0, QW_OPT_INT, &o_num_fewshot, "N", "examples before each item (default: the task's, 5 gsm8k, 8 gsm8k_cot, else 0)" },
    { "fewshot-file", 0, QW_OPT_STR, &o_fewshot_file, "FILE", "draw the examples from FILE, e.g. the train split (default: the other items of --tasks)" },
    { "fewshot-first", 0, QW_OPT_FLAG, &o_fewshot_first, NULL, "take the first N examples in order instead of drawing them" },
    { "chat", 0, QW_OPT_FLAG, &o_chat, NULL, "render each prompt as one user message with the chat template" },
    { "thinking", 0, QW_OPT_STR, &o_thinking, "on|off", "--chat: enable_thinking; the answer is read after </think> (default on)" },
    { "max-new-tokens", 0, QW_OPT_INT, &o_max_new, "N", "tokens per completion at most (default 256, lm-eval's max_gen_toks)" },
    { "max-length", 0, QW_OPT_INT, &o_max_length, "N", "prompt + completion tokens; longer prompts lose their start (default: max_position_embeddings)" },
    { "samples", 'n', QW_OPT_INT, &o_samples, "N", "completions per item (default 1)" },
    { "temperature", 0, QW_OPT_DOUBLE, &o_temperature, "X", "sampling temperature; 0 is greedy (default 0)" },
    { "top-p", 0, QW_OPT_DOUBLE, &o_top_p, "P", "nucleus: the most likely tokens of mass P (default 1: all)" },
    { "top-k", 0, QW_OPT_INT, &o_top_k, "K", "sample from the K most likely tokens (default 0: all)" },
    { "k", 0, QW_OPT_STR, &o_ks, "K1,K2,...", "humaneval: the k of pass@k (default 1; each at most -n)" },
    { "max-batch", 0, QW_OPT_INT, &o_max_batch, "N", "sequences decoded at once (default 64)" },
    { "completions", 0, QW_OPT_STR, &o_completions, "FILE", "write the completions as rollout records (qw-rollout(5)) for qw-eval score" },
    { "per-item", 0, QW_OPT_STR, &o_per_item, "FILE", "write one JSON line per item: completion, answers, verdicts" },
    { "markdown", 0, QW_OPT_STR, &o_markdown, "FILE", "write the results as a Markdown table to FILE ('-': stdout, instead of JSON)" },
    { "compare", 0, QW_OPT_STR, &o_compare, "DIR2", "generate with a second model too: both side by side, the difference and its stderr" },
    QW_COMMON_BEGIN, QW_COMMON_DEVICE, QW_COMMON_THREADS,
    { "seed", 0, QW_OPT_LONG, &qw_common_opts.seed, "N", "seed of the few-shot draws and of sampling (default 1234, as lm-eval)" },
    QW_COMMON_QUIET, QW_COMMON_END,
    { 0 },
};

static const qw_opt score_opts[] = {
    { "task", 0, QW_OPT_STR, &o_task, "NAME", "gsm8k|gsm8k_cot|math|humaneval: how completions are scored (qw-eval(5))" },
    { "thinking", 0, QW_OPT_STR, &o_thinking, "on|off", "on: the completions think; the answer is read after </think> (default off)" },
    { "k", 0, QW_OPT_STR, &o_ks, "K1,K2,...", "humaneval: the k of pass@k (default 1)" },
    { "num-fewshot", 0, QW_OPT_INT, &o_num_fewshot, "N", "the n-shot to report (default: the task's)" },
    { "per-item", 0, QW_OPT_STR, &o_per_item, "FILE", "write one JSON line per item: completion, answers, verdicts" },
    { "markdown", 0, QW_OPT_STR, &o_markdown, "FILE", "write the results as a Markdown table to FILE ('-': stdout, instead of JSON)" },
    QW_COMMON_BEGIN, QW_COMMON_THREADS, QW_COMMON_QUIET, QW_COMMON_END,
    { 0 },
};

static const qw_opt plot_opts[] = {
    { "output", 'o', QW_OPT_STR, &o_svg, "OUT.svg", "the SVG figure to write" },
    { "png", 0, QW_OPT_STR, &o_png, "OUT.png", "also draw it as a PNG" },
    { "keys", 0, QW_OPT_STR, &o_keys, "K1,K2,...", "one panel per key (default: every numeric key but step, tokens, val_tokens)" },
    { "title", 0, QW_OPT_STR, &o_title, "TEXT", "a title before the legend" },
    QW_COMMON_BEGIN, QW_COMMON_END,
    { 0 },
};

static const qw_opt pixels_opts[] = {
    { "model", 'm', QW_OPT_STR, &o_model, "DIR", "model directory: its preprocessor_config.json (Qwen3-VL's defaults without one)" },
    { "output", 'o', QW_OPT_STR, &o_output, "OUT.safetensors", "write pixel_values (F32 [N,1536]) and image_grid_thw (I64 [n,3])" },
    QW_COMMON_BEGIN, QW_COMMON_THREADS, QW_COMMON_QUIET, QW_COMMON_END,
    { 0 },
};

/* An optional [B,T] integer tensor of the input (labels, position_ids) as
 * int32; NULL when absent. */
static int32_t *read_aux_ids(qw_st *in, const char *path, const char *name, int B, int T, int64_t lo, int64_t hi)
{
    const qw_st_tensor *t = qw_st_find(in, name);
    if (!t) return NULL;
    if (t->dtype != QW_DT_I64 && t->dtype != QW_DT_I32)
        qw_die(QW_EXIT_DATA, "'%s': %s: dtype %s, expected I64 or I32", path, name, qw_dtype_name(t->dtype));
    if (t->ndim != 2 || t->shape[0] != B || t->shape[1] != T)
        qw_die(QW_EXIT_DATA, "'%s': %s: shape must be [%d,%d], as input_ids", path, name, B, T);
    int64_t *v = qw_malloc(t->numel * sizeof *v);
    int32_t *out = qw_malloc(t->numel * sizeof *out);
    if (qw_st_to_i64(t, v)) qw_die_last();
    for (int64_t i = 0; i < t->numel; i++) {
        if (v[i] < lo || v[i] >= hi)
            qw_die(QW_EXIT_DATA, "'%s': %s[%lld][%lld] = %lld is out of range", path, name, (long long)(i / T),
                   (long long)(i % T), (long long)v[i]);
        out[i] = (int32_t)v[i];
    }
    free(v);
    return out;
}

/* The batch of IN: input_ids [B,T] as int32, validated against the
 * vocabulary; with `labels` the targets (labels[t+1] at position t, −100
 * ignored, as transformers shifts them); with `position_ids` the positions,
 * and a document starting at every position 0 (packed sequences, as
 * FlashAttention's varlen path and TRL's padding-free batches read them). */
typedef struct {
    int32_t *ids, *targets, *pos, *seg;
    float *coef;   /* with `coef` (F32 [B,T]): coef[t+1] weighs position t's term, as labels[t+1] names its target */
} fwd_input;

static void read_input(const char *path, int V, int *B, int *T, fwd_input *x)
{
    qw_st *in;
    if (qw_st_open(path, &in)) qw_die_last();
    const qw_st_tensor *t = qw_st_find(in, "input_ids");
    if (!t) qw_die(QW_EXIT_DATA, "'%s': no tensor 'input_ids'", path);
    if (t->dtype != QW_DT_I64 && t->dtype != QW_DT_I32)
        qw_die(QW_EXIT_DATA, "'%s': input_ids: dtype %s, expected I64 or I32", path, qw_dtype_name(t->dtype));
    if (t->ndim != 2 || t->shape[0] < 1 || t->shape[1] < 2)
        qw_die(QW_EXIT_DATA, "'%s': input_ids: shape must be [B,T] with B >= 1 and T >= 2", path);
    if (t->numel > INT_MAX / 64) qw_die(QW_EXIT_DATA, "'%s': input_ids: too many tokens (%lld)", path, (long long)t->numel);
    *B = (int)t->shape[0], *T = (int)t->shape[1];
    int64_t *v = qw_malloc(t->numel * sizeof *v);
    int32_t *ids = qw_malloc(t->numel * sizeof *ids);
    if (qw_st_to_i64(t, v)) qw_die_last();
    for (int64_t i = 0; i < t->numel; i++) {
        if (v[i] < 0 || v[i] >= V)
            qw_die(QW_EXIT_DATA, "'%s': input_ids[%lld][%lld] = %lld is outside the vocabulary (%d)", path,
                   (long long)(i / *T), (long long)(i % *T), (long long)v[i], V);
        ids[i] = (int32_t)v[i];
    }
    free(v);
    x->ids = ids;
    int32_t *labels = read_aux_ids(in, path, "labels", *B, *T, -100, V);
    x->pos = read_aux_ids(in, path, "position_ids", *B, *T, 0, INT32_MAX);
    size_t N = (size_t)*B * *T;
    x->coef = NULL;
    const qw_st_tensor *c = qw_st_find(in, "coef");
    if (c) {
        if (c->dtype != QW_DT_F32 || c->ndim != 2 || c->shape[0] != *B || c->shape[1] != *T)
            qw_die(QW_EXIT_DATA, "'%s': coef: must be F32 of input_ids' shape [%d,%d]", path, *B, *T);
        float *cv = qw_malloc(N * sizeof *cv);
        if (qw_st_to_f32(c, cv)) qw_die_last();
        x->coef = qw_malloc(N * sizeof *x->coef);
        for (size_t i = 0; i < N; i++) {
            if (!isfinite(cv[i])) qw_die(QW_EXIT_DATA, "'%s': coef[%zu][%zu] is not finite", path, i / *T, i % *T);
            x->coef[i] = (int)(i % *T) == *T - 1 ? 0 : cv[i + 1];
        }
        free(cv);
    }
    qw_st_close(in);
    x->targets = NULL;
    if (labels) {
        x->targets = qw_malloc(N * sizeof *x->targets);
        for (size_t i = 0; i < N; i++) {
            int last = (int)(i % *T) == *T - 1;
            if (!last && labels[i + 1] < 0 && labels[i + 1] != -100)
                qw_die(QW_EXIT_DATA, "'%s': labels[%zu][%zu] = %d: a label is a token id or -100", path, (i + 1) / *T,
                       (i + 1) % *T, labels[i + 1]);
            x->targets[i] = last || labels[i + 1] == -100 ? -1 : labels[i + 1];
        }
        free(labels);
    }
    x->seg = NULL;
    if (x->pos) {
        x->seg = qw_malloc(N * sizeof *x->seg);
        for (size_t i = 0, s = 0; i < N; i++) {
            if (i % *T == 0 || x->pos[i] == 0) s++;
            x->seg[i] = (int32_t)s;
        }
    }
}

/* The images of a Qwen3-VL forward: IN's pixel_values and image_grid_thw
 * through qw_vl_batch (the MRoPE position ids, the vision tower, the
 * buffers of the backward).  Without pixel_values (or for a text model)
 * only the position ids (text: every axis equal); NULL for a text model. */
static qw_vl_batch *read_vision(const char *path, const qw_params *P, const fwd_input *x, int B, int T)
{
    const qw_config *c = &P->cfg;
    qw_st *in;
    if (qw_st_open(path, &in)) qw_die_last();
    const qw_st_tensor *px = qw_st_find(in, "pixel_values"), *g = qw_st_find(in, "image_grid_thw");
    if (!px && !g && c->vision.depth <= 0) {
        qw_st_close(in);
        return NULL;
    }
    if (c->vision.depth <= 0)
        qw_die(QW_EXIT_DATA, "'%s': vision inputs (pixel_values, image_grid_thw), but the model (%s) has no vision "
               "tower", path, c->model_type);
    if (x->pos) qw_die(QW_EXIT_DATA, "'%s': position_ids: a Qwen3-VL model computes its own (MRoPE)", path);
    if (!px != !g) qw_die(QW_EXIT_DATA, "'%s': pixel_values and image_grid_thw come together", path);
    float *pix = NULL;
    int32_t *thw = NULL;
    int n_img = 0;
    if (g) {
        if ((g->dtype != QW_DT_I64 && g->dtype != QW_DT_I32) || g->ndim != 2 || g->shape[1] != 3 || g->shape[0] < 1 ||
            g->shape[0] > 1 << 20)
            qw_die(QW_EXIT_DATA, "'%s': image_grid_thw: must be I64 [n_images, 3]", path);
        n_img = (int)g->shape[0];
        int64_t *t = qw_malloc(g->numel * sizeof *t);
        if (qw_st_to_i64(g, t)) qw_die_last();
        thw = qw_malloc(g->numel * sizeof *thw);
        int64_t S = 0;
        for (int64_t i = 0; i < g->numel; i++) {
            if (t[i] < 0 || t[i] > INT32_MAX)
                qw_die(QW_EXIT_DATA, "'%s': image_grid_thw[%lld][%lld] = %lld is out of range", path, (long long)(i / 3),
                       (long long)(i % 3), (long long)t[i]);
            thw[i] = (int32_t)t[i];
        }
        for (int i = 0; i < n_img; i++) S += (int64_t)thw[3 * i] * thw[3 * i + 1] * thw[3 * i + 2];
        int K = c->vision.in_channels * c->vision.temporal_patch_size * c->vision.patch_size * c->vision.patch_size;
        if (px->ndim != 2 || px->shape[0] != S || px->shape[1] != K || !qw_dtype_is_float(px->dtype))
            qw_die(QW_EXIT_DATA, "'%s': pixel_values: must be float [%lld, %d] for these grids", path, (long long)S, K);
        pix = qw_malloc((size_t)px->numel * sizeof *pix);
        if (qw_st_to_f32(px, pix)) qw_die_last();
        free(t);
    }
    qw_st_close(in);
    qw_vl_batch *vb;
    if (qw_vl_batch_new(P, x->ids, NULL, B, T, n_img, thw, pix, path, &vb)) qw_die_last();
    free(pix);
    free(thw);
    return vb;
}

/* The backend of --device and --precision (default_precision when not given). */
static const qw_ops *backend(const char *default_precision)
{
    const qw_ops *ops;
    if (qw_backend_select(qw_common_opts.device, o_precision ? o_precision : default_precision,
                          qw_common_opts.threads, o_deterministic, &ops))
        qw_die_last();
    return ops;
}

static int cmd_forward(int argc, char **argv)
{
    if (argc > 0) qw_usage_error("unexpected argument '%s'", argv[0]);
    if (!o_model || !o_input || !o_output) qw_usage_error("forward needs --model, --input and --output");
    const qw_ops *ops = backend("fp32");   /* forward dumps are parity references */
    qw_config cfg;
    qw_params P;
    qw_st *mst;
    if (qw_config_load(o_model, &cfg) || qw_params_init(&P, &cfg) || qw_st_open(o_model, &mst) ||
        qw_params_load(&P, mst, 0))
        qw_die_last();
    qw_st_close(mst);
    if (qw_params_to_device(&P, ops)) qw_die_last();
    int B, T, V = cfg.vocab_size;
    fwd_input x;
    read_input(o_input, V, &B, &T, &x);
    if (cfg.vision.depth > 0 && strcmp(ops->name, "cpu"))
        qw_die(QW_EXIT_FAIL, "'%s': Qwen3-VL models run on the CPU only for now (--device cpu)", o_model);
    qw_vl_batch *vl = read_vision(o_input, &P, &x, B, T);
    const qw_vision *tower = vl ? qw_vl_batch_tower(vl) : NULL;

    qw_model *m;
    qw_model_out out;
    size_t lbytes;
    uint64_t mem = qw_phys_mem_bytes();
    if (qw_mul_size((size_t)B * T, (size_t)V * sizeof(float), &lbytes) || (mem && lbytes > mem))
        qw_die(QW_EXIT_DATA, "'%s': %d × %d tokens of logits over %d words need more bytes than the machine's memory (%llu)",
               o_input, B, T, V, (unsigned long long)mem);
    float *logits = qw_malloc(lbytes);
    qw_batch batch = {.ids = x.ids, .pos = x.pos, .seg = x.seg, .targets = x.targets, .coef = x.coef,
                      .mpos = vl ? qw_vl_batch_mpos(vl) : NULL, .vision = vl ? qw_vl_batch_vision(vl) : NULL};
    if (qw_model_new(ops, &P, B, T, NULL, &m) || qw_model_forward(m, &batch, logits, NULL, &out)) qw_die_last();
    int moe = cfg.arch == QW_ARCH_MOE;
    float aux_coef = moe && cfg.output_router_logits ? (float)cfg.router_aux_loss_coef : 0;
    float loss = (float)(out.loss + aux_coef * out.aux_loss), aux = (float)out.aux_loss;

    qw_st_writer *w = qw_st_writer_new();
    int64_t lshape[3] = {B, T, V}, one = 1;
    qw_st_writer_add(w, "logits", QW_DT_F32, 3, lshape, logits);
    qw_st_writer_add(w, "loss", QW_DT_F32, 1, &one, &loss);
    if (moe) qw_st_writer_add(w, "aux_loss", QW_DT_F32, 1, &one, &aux);
    int64_t *pos64 = NULL;
    if (vl) {   /* Qwen3-VL: the position ids and the vision tower's results */
        pos64 = qw_malloc(3 * (size_t)B * T * sizeof *pos64);
        for (size_t i = 0; i < 3 * (size_t)B * T; i++) pos64[i] = qw_vl_batch_mpos(vl)[i];
        int64_t pshape[3] = {3, B, T};
        qw_st_writer_add(w, "position_ids", QW_DT_I64, 3, pshape, pos64);
    }
    if (tower) {
        int64_t es[2] = {qw_vision_patches(tower), cfg.vision.hidden_size}, ms[2] = {qw_vision_merged_rows(tower), cfg.hidden_size};
        qw_st_writer_add(w, "vision.patch_embed", QW_DT_F32, 2, es, qw_vision_embedded(tower));
        qw_st_writer_add(w, "vision.merged", QW_DT_F32, 2, ms, qw_vision_merged(tower));
        for (int j = 0; j < cfg.vision.n_deepstack; j++) {
            char name[32];
            snprintf(name, sizeof name, "vision.deepstack.%d", j);
            qw_st_writer_add(w, name, QW_DT_F32, 2, ms, qw_vision_deepstack(tower, j));
        }
    }
    qw_params G;
    float *grads = NULL;   /* host copy of G */
    if (o_grads) {
        if (qw_params_alloc_like(&G, &P) || qw_model_backward(m, &G, aux_coef)) qw_die_last();
        if (vl) qw_vl_batch_backward(vl, &G);
        const float *g = qw_params_host(&G, &grads);
        for (int i = 0; i < G.n; i++) {
            char name[160];
            snprintf(name, sizeof name, "grad.%s", G.p[i].name);
            qw_st_writer_add(w, name, QW_DT_F32, G.p[i].ndim, G.p[i].shape, g + G.p[i].offset);
        }
    }
    if (qw_st_writer_write(w, o_output)) qw_die_last();
    qw_st_writer_free(w);
    free(grads);
    if (o_grads) qw_params_free(&G);
    qw_model_free(m);
    qw_params_free(&P);
    free(logits);
    free(x.ids); free(x.targets); free(x.pos); free(x.seg); free(x.coef);
    free(pos64);
    qw_vl_batch_free(vl);
    return 0;
}

/* Seconds of CPU time the process has used (all threads). */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The backend's GEMM rate on an n×n×n product of activations, best of 3
 * after a warm-up: GFLOP per second of wall time, and per second of
 * process CPU time. */
static void gemm_rate(const qw_ops *ops, int n, double *wall_gflops, double *cpu_gflops)
{
    size_t nn = (size_t)n * n, bytes = nn * ops->act_size;
    void *a = ops->alloc(bytes), *b = ops->alloc(bytes), *c = ops->alloc(bytes);
    float *f = ops->alloc(nn * sizeof(float));
    if (!a || !b || !c || !f) qw_die(QW_EXIT_FAIL, "out of %s memory for the GEMM benchmark", ops->name);
    float *h = qw_malloc(nn * sizeof *h);
    for (size_t i = 0; i < nn; i++) h[i] = (float)((i * 2654435761u) % 1000) / 1000 - 0.5f;
    ops->upload(f, h, nn * sizeof *h);
    ops->to_act(a, f, nn);
    ops->to_act(b, f, nn);
    double flop = 2.0 * n * n * n;
    *wall_gflops = *cpu_gflops = 0;
    for (int r = 0; r < 4; r++) {
        ops->sync();
        double t0 = qw_now(), c0 = cpu_now();
        ops->gemm(0, 1, n, n, n, 1, a, n, b, n, 0, c, n, 0);
        ops->sync();
        double dt = qw_now() - t0, dc = cpu_now() - c0;
        if (r == 0) continue;
        if (flop / dt / 1e9 > *wall_gflops) *wall_gflops = flop / dt / 1e9;
        if (flop / dc / 1e9 > *cpu_gflops) *cpu_gflops = flop / dc / 1e9;
    }
    ops->free(a); ops->free(b); ops->free(c); ops->free(f);
    free(h);
}

/* The vision tower's seconds per 448×448 image (grid 1×28×28), forward
 * and forward+backward, best of `steps` after a warm-up. */
static void vision_rate(const qw_params *P, qw_params *G, int steps, double *fwd_s, double *fb_s, double *fwd_cpu_s)
{
    const qw_config *c = &P->cfg;
    int32_t thw[3] = {1, 448 / c->vision.patch_size, 448 / c->vision.patch_size};
    qw_vision *v;
    if (qw_vision_new(P, 1, thw, "bench", &v)) qw_die_last();
    int S = qw_vision_patches(v), R = qw_vision_merged_rows(v), O = c->vision.out_hidden_size;
    int K = c->vision.in_channels * c->vision.temporal_patch_size * c->vision.patch_size * c->vision.patch_size;
    float *pix = qw_malloc((size_t)S * K * sizeof *pix), *d = qw_malloc((size_t)R * O * sizeof *d);
    for (size_t i = 0; i < (size_t)S * K; i++) pix[i] = (float)((i * 2654435761u) % 1000) / 500 - 1;
    for (size_t i = 0; i < (size_t)R * O; i++) d[i] = (float)((i * 40503u) % 1000) / 1e6f;
    *fwd_s = *fb_s = *fwd_cpu_s = INFINITY;
    for (int r = 0; r <= steps; r++) {
        double t0 = qw_now(), c0 = cpu_now();
        qw_vision_forward(v, pix);
        double t1 = qw_now(), c1 = cpu_now();
        if (r > 0 && c1 - c0 < *fwd_cpu_s) *fwd_cpu_s = c1 - c0;
        qw_vision_backward(v, d, NULL, G);
        double t2 = qw_now();
        if (r == 0) continue;
        if (t1 - t0 < *fwd_s) *fwd_s = t1 - t0;
        if (t2 - t0 < *fb_s) *fb_s = t2 - t0;
    }
    qw_vision_free(v);
    free(pix);
    free(d);
}

static int cmd_bench(int argc, char **argv)
{
    if (argc > 0) qw_usage_error("unexpected argument '%s'", argv[0]);
    if (!o_config) qw_usage_error("bench needs --config");
    int T = o_seq < 0 ? 512 : o_seq, B = o_batch < 0 ? 1 : o_batch, steps = o_steps < 0 ? 3 : o_steps;
    if (T < 2 || B < 1 || steps < 1) qw_usage_error("--seq-len must be >= 2, --batch and --steps >= 1");
    int64_t BT;
    if (qw_mul_i64(B, T, &BT) || BT > INT_MAX)
        qw_usage_error("--batch %d × --seq-len %d is more than %d tokens per step", B, T, INT_MAX);
    const qw_ops *ops = backend(NULL);
    qw_config cfg;
    qw_params P, G;
    if (qw_config_load(o_config, &cfg) || qw_params_init(&P, &cfg)) qw_die_last();
    qw_params_init_random(&P, (uint64_t)qw_common_opts.seed);
    if (qw_params_to_device(&P, ops) || qw_params_alloc_like(&G, &P)) qw_die_last();
    qw_model *m;
    qw_model_out out;
    if (qw_model_new(ops, &P, B, T, NULL, &m)) qw_die_last();   /* first: it checks the batch's size */
    int N = (int)BT;
    int32_t *ids = qw_malloc((size_t)N * sizeof *ids);
    for (int i = 0; i < N; i++) ids[i] = (int32_t)(((uint64_t)i * 2654435761u + (uint64_t)qw_common_opts.seed) % cfg.vocab_size);
    float aux_coef = cfg.arch == QW_ARCH_MOE ? (float)cfg.router_aux_loss_coef : 0;
    double t0 = 0, c0 = 0;
    for (int s = 0; s <= steps; s++) {   /* step 0 warms up */
        if (s == 1) {   /* the clock starts once the warm-up step has finished on the device */
            ops->sync();
            t0 = qw_now(), c0 = cpu_now();
        }
        if (qw_model_step(m, &(qw_batch){.ids = ids}, &G, aux_coef, &out))
            qw_die_last();
    }
    ops->sync();
    double dt = (qw_now() - t0) / steps, dc = (cpu_now() - c0) / steps;
    size_t in_use, peak;
    ops->mem_stats(&in_use, &peak);   /* the model's; before the GEMM benchmark allocates */
    double flops = qw_model_matmul_flops(m), gemm, gemm_cpu;
    gemm_rate(ops, 2048, &gemm, &gemm_cpu);
    int64_t total, active;
    qw_config_param_counts(&cfg, &total, &active);
    if (cfg.vision.depth > 0 && !strcmp(ops->name, "cpu")) {   /* the vision tower: CPU only for now */
        double fs, fbs, fcs;
        vision_rate(&P, &G, steps, &fs, &fbs, &fcs);
        printf("{\"vision_image_px\":448,\"vision_fwd_s\":%.4f,\"vision_fwd_cpu_s\":%.4f,\"vision_images_per_s\":%.4f,"
               "\"vision_fwd_bwd_s\":%.4f,\"vision_train_images_per_s\":%.4f}\n", fs, fcs, 1 / fs, fbs, 1 / fbs);
    }
    printf("{\"device\":\"%s\",\"threads\":%d,\"params\":%lld,\"active_params\":%lld,\"batch\":%d,\"seq_len\":%d,"
           "\"steps\":%d,\"activation_bytes\":%zu,\"step_s\":%.4f,\"step_cpu_s\":%.4f,\"tokens_per_s\":%.1f,"
           "\"matmul_gflop_per_step\":%.3f,\"matmul_gflops\":%.2f,\"gemm_gflops\":%.2f,\"gemm_fraction\":%.3f,"
           "\"cpu_fraction\":%.3f,\"mem_peak_bytes\":%zu,\"loss\":%.5f}\n",
           ops->name, qw_thread_count(), (long long)total, (long long)active, B, T, steps,
           qw_model_plan_bytes(m), dt, dc, N / dt, flops / 1e9, flops / dt / 1e9, gemm, flops / dt / 1e9 / gemm,
           flops / dc / 1e9 / gemm_cpu, peak, out.loss);
    qw_model_free(m);
    qw_params_free(&P);
    qw_params_free(&G);
    free(ids);
    return 0;
}

/* ---- scoring: ppl and mc ---- */

/* A model to score with: parameters on the device, its tokenizer, the
 * prefix token and the window. */
typedef struct {
    const char *dir;
    qw_config cfg;
    qw_params P;
    qw_tok *tok;
    char *tok_path;
    int32_t prefix;
    int max_len;
} eval_model;

/* The token lm-eval puts before a document or an empty context: the id or
 * token string of --prefix-token; else tokenizer_config.json's bos_token,
 * else its eos_token; else <|endoftext|>. */
static int32_t prefix_token(const qw_tok *tok, const char *tokdir, const char *tok_path)
{
    const char *name = o_prefix_token;
    if (name && name[0] && strspn(name, "0123456789") == strlen(name)) {
        long v = atol(name);
        if (v >= qw_tok_vocab_size(tok) || !qw_tok_id_to_token(tok, (int32_t)v))
            qw_die(QW_EXIT_DATA, "--prefix-token %s: no such id in '%s'", name, tok_path);
        return (int32_t)v;
    }
    char *found = NULL;
    if (!name) {
        char *cfgpath = qw_path_join(tokdir, "tokenizer_config.json");
        qw_buf b = {0};
        int there = 0;
        if (qw_read_file(cfgpath, &b, &there)) qw_die_last();
        if (there) {
            cJSON *j = cJSON_ParseWithLength(b.p, b.n);
            if (!j) qw_die(QW_EXIT_DATA, "'%s': not JSON", cfgpath);
            for (int k = 0; k < 2 && !found; k++) {
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, k ? "eos_token" : "bos_token");
                if (cJSON_IsObject(t)) t = cJSON_GetObjectItemCaseSensitive(t, "content");
                if (cJSON_IsString(t)) found = qw_strdup(t->valuestring);
            }
            cJSON_Delete(j);
        }
        qw_buf_free(&b);
        free(cfgpath);
        name = found ? found : "<|endoftext|>";
    }
    int32_t id = qw_tok_token_to_id(tok, name);
    if (id < 0)
        qw_die(QW_EXIT_DATA, "'%s': no token '%s' to put before documents and empty contexts (give --prefix-token)",
               tok_path, name);
    free(found);
    return id;
}

static void eval_model_load(eval_model *m, const char *dir, const qw_ops *ops)
{
    memset(m, 0, sizeof *m);
    m->dir = dir;
    qw_st *mst;
    if (qw_config_load(dir, &m->cfg) || qw_params_init(&m->P, &m->cfg) || qw_st_open(dir, &mst) ||
        qw_params_load(&m->P, mst, 0))
        qw_die_last();
    qw_st_close(mst);
    if (qw_params_to_device(&m->P, ops)) qw_die_last();
    char *tokdir;
    m->tok_path = qw_tok_path(o_tokenizer ? o_tokenizer : dir, &tokdir);
    if (qw_tok_load(m->tok_path, &m->tok)) qw_die_last();
    int tv = qw_tok_vocab_size(m->tok);
    if (tv > m->cfg.vocab_size)
        qw_die(QW_EXIT_DATA, "'%s': the tokenizer has ids up to %d, beyond the vocabulary of the model in '%s' (%d)",
               m->tok_path, tv - 1, dir, m->cfg.vocab_size);
    m->prefix = prefix_token(m->tok, tokdir, m->tok_path);
    free(tokdir);
    m->max_len = o_max_length > 0 ? o_max_length : m->cfg.max_position_embeddings > 0 ? m->cfg.max_position_embeddings : 2048;
}

static void eval_model_free(eval_model *m)
{
    qw_params_free(&m->P);
    qw_tok_free(m->tok);
    free(m->tok_path);
}

/* Score requests with a model: ll filled in. */
static void score(eval_model *m, const qw_ops *ops, qw_eval_req *r, int n, long *forwards, long *positions)
{
    qw_eval_scorer *s = qw_eval_scorer_new(ops, &m->P, m->max_len, o_batch_tokens > 0 ? o_batch_tokens : 8192);
    if (qw_eval_score(s, r, n)) qw_die_last();
    qw_eval_scorer_stats(s, forwards, positions);
    qw_eval_scorer_free(s);
}

/* One metric of a task: value, standard error (NAN: "N/A"). */
typedef struct {
    char name[32];
    const char *filter;   /* lm-eval's filter: "none", "strict-match" … */
    double value, se;
    int higher_better;
} metric;

typedef struct {
    const char *task;
    metric m[8];
    int nm;
    long n;
    int nshot;
} task_result;

static void add_metric(task_result *t, const char *name, const char *filter, double v, double se, int hib)
{
    metric *m = &t->m[t->nm++];
    snprintf(m->name, sizeof m->name, "%s", name);
    m->filter = filter, m->value = v, m->se = se, m->higher_better = hib;
}

/* results / n-shot / higher_is_better / n-samples, lm-eval's layout */
static cJSON *results_json(const task_result *t)
{
    cJSON *res = cJSON_CreateObject(), *task = cJSON_CreateObject();
    cJSON_AddStringToObject(task, "alias", t->task);
    for (int i = 0; i < t->nm; i++) {
        char key[96];
        snprintf(key, sizeof key, "%s,%s", t->m[i].name, t->m[i].filter);
        cJSON_AddNumberToObject(task, key, t->m[i].value);
        snprintf(key, sizeof key, "%s_stderr,%s", t->m[i].name, t->m[i].filter);
        if (isnan(t->m[i].se)) cJSON_AddStringToObject(task, key, "N/A");
        else cJSON_AddNumberToObject(task, key, t->m[i].se);
    }
    cJSON_AddItemToObject(res, t->task, task);
    return res;
}

/* gen and score: their settings, added to the report's config */
static cJSON *gen_config;

static cJSON *report_json(const task_result *t, const char *model_dir, const eval_model *m, const qw_ops *ops,
                          double seconds)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "results", results_json(t));
    cJSON *ns = cJSON_CreateObject(), *hib = cJSON_CreateObject(), *hb = cJSON_CreateObject(),
          *samples = cJSON_CreateObject(), *sm = cJSON_CreateObject();
    cJSON_AddNumberToObject(ns, t->task, t->nshot);
    for (int i = 0; i < t->nm; i++)
        if (!cJSON_GetObjectItemCaseSensitive(hb, t->m[i].name)) cJSON_AddBoolToObject(hb, t->m[i].name, t->m[i].higher_better);
    cJSON_AddItemToObject(hib, t->task, hb);
    cJSON_AddNumberToObject(sm, "original", (double)t->n);
    cJSON_AddNumberToObject(sm, "effective", (double)t->n);
    cJSON_AddItemToObject(samples, t->task, sm);
    cJSON_AddItemToObject(j, "n-shot", ns);
    cJSON_AddItemToObject(j, "higher_is_better", hib);
    cJSON_AddItemToObject(j, "n-samples", samples);
    cJSON *cfg = cJSON_CreateObject();
    char args[4200];
    if (m) {
        snprintf(args, sizeof args, "pretrained=%s", model_dir);
        cJSON_AddStringToObject(cfg, "model", "qw");
        cJSON_AddStringToObject(cfg, "model_args", args);
        cJSON_AddStringToObject(cfg, "tokenizer", m->tok_path);
        if (!gen_config) cJSON_AddStringToObject(cfg, "prefix_token", qw_tok_id_to_token(m->tok, m->prefix));
        cJSON_AddNumberToObject(cfg, "max_length", m->max_len);
        if (!gen_config) cJSON_AddNumberToObject(cfg, "batch_tokens", o_batch_tokens > 0 ? o_batch_tokens : 8192);
    }
    if (ops) cJSON_AddStringToObject(cfg, "device", ops->name);
    while (gen_config && gen_config->child) {
        cJSON *x = cJSON_DetachItemViaPointer(gen_config, gen_config->child);
        char *key = qw_strdup(x->string);
        cJSON_AddItemToObject(cfg, key, x);
        free(key);
    }
    cJSON_AddItemToObject(j, "config", cfg);
    char secs[32];
    snprintf(secs, sizeof secs, "%.3f", seconds);
    cJSON_AddStringToObject(j, "total_evaluation_time_seconds", secs);
    return j;
}

/* With --compare: both models' values, the difference B − A, the combined
 * standard error sqrt(se_A² + se_B²) and whether |diff| exceeds it. */
static cJSON *compare_json(const task_result *a, const task_result *b, const char *dir2)
{
    cJSON *c = cJSON_CreateObject(), *d = cJSON_CreateObject(), *dt = cJSON_CreateObject();
    char args[4200];
    snprintf(args, sizeof args, "pretrained=%s", dir2);
    cJSON_AddStringToObject(c, "model_args", args);
    cJSON_AddItemToObject(c, "results", results_json(b));
    for (int i = 0; i < a->nm; i++) {
        cJSON *e = cJSON_CreateObject();
        double diff = b->m[i].value - a->m[i].value, se = sqrt(a->m[i].se * a->m[i].se + b->m[i].se * b->m[i].se);
        cJSON_AddNumberToObject(e, "diff", diff);
        if (isnan(se)) {
            cJSON_AddStringToObject(e, "stderr", "N/A");
            cJSON_AddNullToObject(e, "exceeds_stderr");
        } else {
            cJSON_AddNumberToObject(e, "stderr", se);
            cJSON_AddBoolToObject(e, "exceeds_stderr", fabs(diff) > se);
        }
        char key[96];
        snprintf(key, sizeof key, "%s,%s", a->m[i].name, a->m[i].filter);
        cJSON_AddItemToObject(dt, key, e);
    }
    cJSON_AddItemToObject(d, a->task, dt);
    cJSON_AddItemToObject(c, "diff", d);
    return c;
}

static void fmt_value(char *buf, size_t n, double v)
{
    if (isnan(v)) snprintf(buf, n, "N/A");
    else snprintf(buf, n, "%.4f", v);
}

/* lm-eval's table (make_table), or with b the comparison. */
static void markdown(FILE *f, const task_result *a, const task_result *b, const char *dir_a, const char *dir_b)
{
    char v[32], s[32], v2[32], s2[32], d[32], cs[32];
    if (!b) {
        fputs("|Tasks|Filter|n-shot|Metric| |Value| |Stderr|\n|---|---|---:|---|---|---:|---|---:|\n", f);
        for (int i = 0; i < a->nm; i++) {
            fmt_value(v, sizeof v, a->m[i].value), fmt_value(s, sizeof s, a->m[i].se);
            fprintf(f, "|%s|%s|%d|%s|%s|%s|±|%s|\n", i ? "" : a->task, a->m[i].filter, a->nshot, a->m[i].name,
                    a->m[i].higher_better ? "↑" : "↓", v, s);
        }
        return;
    }
    fprintf(f, "|Tasks|Filter|Metric|%s|Stderr|%s|Stderr|Diff|Combined stderr|Diff > stderr|\n", dir_a, dir_b);
    fputs("|---|---|---|---:|---:|---:|---:|---:|---:|---|\n", f);
    for (int i = 0; i < a->nm; i++) {
        double diff = b->m[i].value - a->m[i].value, se = sqrt(a->m[i].se * a->m[i].se + b->m[i].se * b->m[i].se);
        fmt_value(v, sizeof v, a->m[i].value), fmt_value(s, sizeof s, a->m[i].se);
        fmt_value(v2, sizeof v2, b->m[i].value), fmt_value(s2, sizeof s2, b->m[i].se);
        snprintf(d, sizeof d, "%+.4f", diff);
        fmt_value(cs, sizeof cs, se);
        fprintf(f, "|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", i ? "" : a->task, a->m[i].filter, a->m[i].name, v, s, v2, s2, d, cs,
                isnan(se) ? "n/a" : fabs(diff) > se ? "yes" : "no");
    }
}

/* Print the JSON report (and the Markdown table where --markdown says). */
static void emit(const task_result *a, const task_result *b, const eval_model *ma, const qw_ops *ops, double secs)
{
    if (o_markdown && strcmp(o_markdown, "-")) {
        qw_afile af;
        if (qw_afile_open(o_markdown, &af)) qw_die_last();
        markdown(af.f, a, b, ma ? ma->dir : "", o_compare);
        if (qw_afile_commit(&af)) qw_die_last();
    }
    if (o_markdown && !strcmp(o_markdown, "-")) {
        markdown(stdout, a, b, ma ? ma->dir : "", o_compare);
        return;
    }
    cJSON *j = report_json(a, ma ? ma->dir : NULL, ma, ops, secs);
    if (b) cJSON_AddItemToObject(j, "compare", compare_json(a, b, o_compare));
    char *text = cJSON_Print(j);
    puts(text);
    free(text);
    cJSON_Delete(j);
}

typedef struct {
    long nreq, forwards, positions, used;
} run_stats;

static void summary(const char *what, long n, const run_stats *st, double secs)
{
    if (qw_common_opts.quiet) return;
    fprintf(stderr, "%s: %ld %s, %ld requests in %ld forwards (%.0f%% of positions used), %.2f s, %.1f %s/s\n", qw_prog,
            n, what, st->nreq, st->forwards, st->positions ? 100.0 * st->used / st->positions : 0, secs,
            secs > 0 ? n / secs : 0, what);
}

/* ---- ppl ---- */

typedef struct {
    char *name;
    long line;
    size_t off;        /* its text in the texts buffer */
    int64_t words, bytes;
    qw_ids toks;       /* under the model being scored */
    int first, nwin;   /* its requests */
} ppl_doc;

typedef struct {
    ppl_doc *d;
    int n;
    qw_buf texts;
} ppl_docs;

/* Encode every document with m's tokenizer, make its windows, score them:
 * ll[i] the document's log-likelihood. */
static void ppl_run(ppl_docs *docs, eval_model *m, const qw_ops *ops, double *ll, run_stats *st)
{
    int failed = -1;
    char err[1024] = "";
#pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < docs->n; i++) {
        docs->d[i].toks.n = 0;
        if (qw_tok_encode(m->tok, docs->texts.p + docs->d[i].off, (size_t)docs->d[i].bytes, &docs->d[i].toks)) {
#pragma omp critical
            if (failed < 0 || i < failed) failed = i, snprintf(err, sizeof err, "%s", qw_error_msg());
        }
    }
    if (failed >= 0) {
        const ppl_doc *d = &docs->d[failed];
        if (d->line) qw_die(QW_EXIT_DATA, "'%s': line %ld: %s", d->name, d->line, err);
        qw_die(QW_EXIT_DATA, "'%s': %s", d->name, err);
    }
    int nr = 0;
    for (int i = 0; i < docs->n; i++) nr += (int)qw_eval_windows((int64_t)docs->d[i].toks.n, m->max_len, NULL);
    qw_eval_req *r = qw_calloc(nr ? nr : 1, sizeof *r);
    qw_eval_window *w = qw_malloc(((size_t)nr + 1) * sizeof *w);
    int q = 0;
    st->used = 0;
    for (int i = 0; i < docs->n; i++) {
        ppl_doc *d = &docs->d[i];
        int nw = (int)qw_eval_windows((int64_t)d->toks.n, m->max_len, w);
        d->first = q, d->nwin = nw;
        for (int k = 0; k < nw; k++, q++) {
            int64_t len = w[k].end - w[k].ctx;   /* context + predicted tokens (the prefix counts one) */
            int32_t *t = qw_malloc((size_t)len * sizeof *t);
            for (int64_t p = 0; p < len; p++) t[p] = w[k].ctx + p < 0 ? m->prefix : d->toks.v[w[k].ctx + p];
            r[q] = (qw_eval_req){t, (int)len, (int)(w[k].end - w[k].start), 0};
            st->used += len - 1;
        }
    }
    score(m, ops, r, nr, &st->forwards, &st->positions);
    for (int i = 0; i < docs->n; i++) {
        ll[i] = 0;
        for (int k = 0; k < docs->d[i].nwin; k++) ll[i] += r[docs->d[i].first + k].ll;
    }
    for (int k = 0; k < nr; k++) free((void *)r[k].toks);
    free(r), free(w);
    st->nreq = nr;
}

/* lm-eval's weighted perplexities over the documents (no standard errors:
 * lm-eval reports N/A for them), and the per-token perplexity. */
static void ppl_metrics(const ppl_docs *docs, const double *ll, task_result *t)
{
    double sll = 0, words = 0, bytes = 0, toks = 0;
    for (int i = 0; i < docs->n; i++)
        sll += ll[i], words += (double)docs->d[i].words, bytes += (double)docs->d[i].bytes, toks += (double)docs->d[i].toks.n;
    t->nm = 0;
    add_metric(t, "word_perplexity", "none", exp(-sll / words), NAN, 0);
    add_metric(t, "byte_perplexity", "none", bytes > 0 ? exp(-sll / bytes) : NAN, NAN, 0);
    add_metric(t, "bits_per_byte", "none", bytes > 0 ? -sll / bytes / log(2) : NAN, NAN, 0);
    add_metric(t, "token_perplexity", "none", toks > 0 ? exp(-sll / toks) : NAN, NAN, 0);
    t->n = docs->n;
    t->nshot = 0;
}

static void ppl_per_item(const ppl_docs *docs, const double *ll)
{
    qw_afile af;
    if (qw_afile_open(o_per_item, &af)) qw_die_last();
    for (int i = 0; i < docs->n; i++) {
        const ppl_doc *d = &docs->d[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "idx", i);
        cJSON_AddStringToObject(j, "name", d->name);
        if (d->line) cJSON_AddNumberToObject(j, "line", (double)d->line);
        cJSON_AddNumberToObject(j, "loglikelihood", ll[i]);
        cJSON_AddNumberToObject(j, "tokens", (double)d->toks.n);
        cJSON_AddNumberToObject(j, "words", (double)d->words);
        cJSON_AddNumberToObject(j, "bytes", (double)d->bytes);
        cJSON_AddNumberToObject(j, "windows", d->nwin);
        char *line = cJSON_PrintUnformatted(j);
        fprintf(af.f, "%s\n", line);
        free(line);
        cJSON_Delete(j);
    }
    if (qw_afile_commit(&af)) qw_die_last();
}

static void check_eval_opts(void)
{
    if (o_max_length != -1 && o_max_length < 1) qw_usage_error("--max-length must be >= 1");
    if (o_batch_tokens != -1 && o_batch_tokens < 1) qw_usage_error("--batch-tokens must be >= 1");
}

static int cmd_ppl(int argc, char **argv)
{
    if (!o_model) qw_usage_error("ppl needs --model");
    if (argc == 0 && isatty(STDIN_FILENO)) qw_usage_error("ppl: no FILE and standard input is a terminal");
    if (o_field && !o_jsonl) qw_usage_error("--field needs --jsonl");
    check_eval_opts();
    double t0 = qw_now();
    const qw_ops *ops = backend(NULL);
    eval_model ma;
    eval_model_load(&ma, o_model, ops);

    /* the documents, with their words and bytes as lm-eval counts them */
    qw_input *in;
    qw_input_opts io = {o_jsonl ? QW_INPUT_JSONL : QW_INPUT_TEXT, o_field, 0};
    if (qw_input_open((const char *const *)argv, argc, &io, &in)) qw_die_last();
    ppl_docs docs = {0};
    int cap = 0;
    for (;;) {
        qw_doc d;
        int r = qw_input_next(in, &d);
        if (r == 0) break;
        if (r != 1) qw_die_last();
        if (docs.n == cap) {
            cap = cap ? 2 * cap : 64;
            docs.d = qw_realloc(docs.d, cap * sizeof *docs.d);
        }
        docs.d[docs.n++] = (ppl_doc){qw_strdup(d.name), d.line, docs.texts.n, qw_eval_words(d.text, d.len),
                                     (int64_t)d.len, {0}, 0, 0};
        qw_buf_add(&docs.texts, d.text, d.len);
    }
    qw_input_free(in);
    if (docs.n == 0 || docs.texts.n == 0)
        qw_die(QW_EXIT_DATA, "'%s': no text to score", argc == 1 ? argv[0] : argc ? "the input files" : "-");

    double *ll = qw_malloc(docs.n * sizeof *ll);
    task_result ta = {.task = o_task ? o_task : "ppl"}, tb = ta;
    run_stats st;
    double ts = qw_now();
    ppl_run(&docs, &ma, ops, ll, &st);
    double secs = qw_now() - ts;
    ppl_metrics(&docs, ll, &ta);
    summary("documents", docs.n, &st, secs);
    if (o_per_item) ppl_per_item(&docs, ll);
    if (o_compare) {   /* word and byte perplexities compare across tokenizers; token perplexity does not */
        eval_model mb;
        eval_model_load(&mb, o_compare, ops);
        ppl_run(&docs, &mb, ops, ll, &st);
        ppl_metrics(&docs, ll, &tb);
        eval_model_free(&mb);
    }
    emit(&ta, o_compare ? &tb : NULL, &ma, ops, qw_now() - t0);
    for (int i = 0; i < docs.n; i++) free(docs.d[i].name), qw_ids_free(&docs.d[i].toks);
    free(docs.d), free(ll);
    qw_buf_free(&docs.texts);
    eval_model_free(&ma);
    return 0;
}

/* ---- mc ---- */

typedef struct {
    qw_mc_item it;
    long line;
} mc_item;

/* lines of a JSONL file as parsed records (blank lines skipped); a line
 * that is not a JSON object dies naming it */
typedef int (*rec_fn)(void *ctx, cJSON *rec, long line);
static void each_record(const char *path, rec_fn fn, void *ctx)
{
    qw_buf b = {0};
    if (qw_read_file(path, &b, NULL)) qw_die_last();
    long line = 0;
    for (size_t p = 0; p < b.n;) {
        size_t e = p;
        while (e < b.n && b.p[e] != '\n') e++;
        line++;
        size_t a = p;
        while (a < e && (b.p[a] == ' ' || b.p[a] == '\t' || b.p[a] == '\r')) a++;
        if (a < e) {
            cJSON *j = cJSON_ParseWithLength(b.p + p, e - p);
            if (!j) qw_die(QW_EXIT_DATA, "'%s': line %ld: not JSON", path, line);
            if (!cJSON_IsObject(j)) qw_die(QW_EXIT_DATA, "'%s': line %ld: not a JSON object", path, line);
            if (fn(ctx, j, line)) cJSON_Delete(j);
        }
        p = e + 1;
    }
    qw_buf_free(&b);
}

typedef struct {
    const char *path;
    qw_mc_format f;
    mc_item *items;
    int n, cap;
} mc_reading;

static int mc_add(void *ctx, cJSON *j, long line)
{
    mc_reading *r = ctx;
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        r->items = qw_realloc(r->items, r->cap * sizeof *r->items);
    }
    if (qw_mc_item_parse(r->f, j, &r->items[r->n].it))
        qw_die(QW_EXIT_DATA, "'%s': line %ld: item %d: %s", r->path, line, r->n + 1, qw_error_msg());
    r->items[r->n++].line = line;
    return 1;   /* the item holds no reference into j */
}

/* The items of a JSONL file (blank lines skipped); errors name the line. */
static mc_item *mc_read(const char *path, qw_mc_format f, int *n)
{
    mc_reading r = {.path = path, .f = f};
    each_record(path, mc_add, &r);
    if (r.n == 0) qw_die(QW_EXIT_DATA, "'%s': no items", path);
    *n = r.n;
    return r.items;
}

/* The text before each of n items' own: desc[i] (when desc and desc[i]
 * are not NULL), then k examples from ex[0..nex), each followed by lm-eval's
 * few-shot delimiter "\n\n".  The draw is lm-eval's: first_n takes the
 * first k of the pool (FirstNSampler); otherwise random.Random(seed).sample
 * of the pool, once per item in order.  When the pool is the evaluated
 * items themselves (same), an item is never its own example: one more is
 * drawn and the item dropped (first_n: the item skipped).  pool names the
 * pool's file in the error for a pool smaller than k. */
static char **fewshot_prefixes(int n, char *const *desc, char *const *ex, int nex, int same, int k, int first_n,
                               const char *pool)
{
    char **pre = qw_calloc(n, sizeof *pre);
    int draw = k + same;
    if (k > 0 && draw > nex)
        qw_usage_error("--num-fewshot %d: '%s' has %d items%s", k, pool, nex,
                       same ? " (the item itself is never its own example)" : "");
    qw_pyrand r;
    qw_pyrand_seed(&r, (uint64_t)(qw_common_opts.seed < 0 ? -qw_common_opts.seed : qw_common_opts.seed));
    int64_t *pick = qw_malloc((size_t)(draw > 0 ? draw : 1) * sizeof *pick);
    for (int i = 0; i < n; i++) {
        qw_buf b = {0};
        if (desc && desc[i]) qw_buf_adds(&b, desc[i]);
        if (k > 0) {
            if (first_n)
                for (int j = 0; j < draw; j++) pick[j] = j;
            else
                qw_pyrand_sample(&r, nex, draw, pick);
            for (int j = 0, used = 0; j < draw && used < k; j++) {
                if (same && pick[j] == i) continue;
                qw_buf_adds(&b, ex[pick[j]]);
                qw_buf_adds(&b, "\n\n");
                used++;
            }
        }
        qw_buf_adds(&b, "");
        pre[i] = (char *)qw_buf_cstr(&b);
    }
    free(pick);
    return pre;
}

/* Whether two paths name the same file. */
static int same_file(const char *a, const char *b)
{
    char *x = realpath(a, NULL), *y = realpath(b, NULL);
    int same = x && y && !strcmp(x, y);
    free(x), free(y);
    return same;
}

/* mc's prefixes: each item's description and its examples (qw_mc_item_example),
 * from --fewshot-file or the items themselves. */
static char **mc_prefixes(const mc_item *items, int n, const char *tasks, qw_mc_format f)
{
    const mc_item *fs = items;
    int nfs = n, same = !o_fewshot_file || same_file(tasks, o_fewshot_file);
    if (o_num_fewshot > 0 && !same) fs = mc_read(o_fewshot_file, f, &nfs);
    char **ex = qw_calloc(nfs, sizeof *ex), **desc = qw_calloc(n, sizeof *desc);
    for (int j = 0; j < nfs && o_num_fewshot > 0; j++) {
        qw_buf b = {0};
        qw_mc_item_example(&fs[j].it, o_delim ? o_delim : " ", &b);
        ex[j] = (char *)qw_buf_cstr(&b);
    }
    for (int i = 0; i < n; i++) desc[i] = items[i].it.description;
    char **pre = fewshot_prefixes(n, desc, ex, nfs, same, o_num_fewshot, 0, same ? tasks : o_fewshot_file);
    for (int j = 0; j < nfs; j++) free(ex[j]);
    free(ex), free(desc);
    if (fs != items) {
        for (int i = 0; i < nfs; i++) qw_mc_item_free((qw_mc_item *)&fs[i].it);
        free((void *)fs);
    }
    return pre;
}

/* Log-likelihood of every choice of every item under m: ll[first[i] + c]. */
static void mc_run(const mc_item *items, int n, char **pre, const int *first, int nreq, eval_model *m,
                   const qw_ops *ops, double *ll, run_stats *st)
{
    const char *delim = o_delim ? o_delim : " ";
    qw_eval_req *r = qw_calloc(nreq, sizeof *r);
    qw_ids *seq = qw_calloc(nreq, sizeof *seq);
    int failed = -1;
    char err[1024] = "";
#pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < n; i++) {
        const qw_mc_item *it = &items[i].it;
        qw_buf ctx = {0}, cont = {0};
        for (int c = 0; c < it->n; c++) {
            ctx.n = cont.n = 0;
            qw_buf_adds(&ctx, pre[i]);
            qw_buf_adds(&ctx, it->text ? it->text : it->choice[c]);
            qw_buf_adds(&cont, delim);
            qw_buf_adds(&cont, it->text ? it->choice[c] : it->target);
            int q = first[i] + c, k = 0;
            if (qw_eval_encode_pair(m->tok, m->prefix, ctx.p, ctx.n, cont.p ? cont.p : "", cont.n, &seq[q], &k)) {
#pragma omp critical
                if (failed < 0 || i < failed) failed = i, snprintf(err, sizeof err, "%s", qw_error_msg());
                break;
            }
            r[q] = (qw_eval_req){seq[q].v, (int)seq[q].n, k, 0};
        }
        qw_buf_free(&ctx), qw_buf_free(&cont);
    }
    if (failed >= 0) qw_die(QW_EXIT_DATA, "'%s': line %ld: item %d: %s", o_tasks, items[failed].line, failed + 1, err);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < items[i].it.n; c++) {
            const qw_eval_req *e = &r[first[i] + c];
            int in = e->n1 - 1 > m->max_len ? m->max_len : e->n1 - 1;
            if (e->k > in)
                qw_die(QW_EXIT_DATA, "'%s': line %ld: item %d: choice %d: the continuation has %d tokens, more than "
                       "--max-length %d", o_tasks, items[i].line, i + 1, c, e->k, m->max_len);
        }
    st->used = 0;
    for (int q = 0; q < nreq; q++) st->used += (r[q].n1 - 1 > m->max_len ? m->max_len : r[q].n1 - 1);
    score(m, ops, r, nreq, &st->forwards, &st->positions);
    for (int q = 0; q < nreq; q++) ll[q] = r[q].ll, qw_ids_free(&seq[q]);
    st->nreq = nreq;
    free(r), free(seq);
}

/* acc and acc_norm per item (argmax, first maximum wins as numpy's). */
static void mc_metrics(const mc_item *items, int n, const int *first, const double *ll, qw_mc_format f,
                       task_result *t, int *pred, int *pred_norm)
{
    double *acc = qw_malloc(n * sizeof *acc), *accn = qw_malloc(n * sizeof *accn);
    for (int i = 0; i < n; i++) {
        const qw_mc_item *it = &items[i].it;
        int p, pn;
        int64_t *len = qw_malloc(it->n * sizeof *len);
        for (int c = 0; c < it->n; c++) len[c] = qw_eval_chars(it->choice[c], strlen(it->choice[c]));
        qw_eval_mc_pred(ll + first[i], len, it->n, &p, &pn);
        free(len);
        pred[i] = p, pred_norm[i] = pn;
        acc[i] = p == it->gold, accn[i] = pn == it->gold;
    }
    double m, se;
    t->nm = 0;
    qw_eval_mean_stderr(acc, n, &m, &se);
    add_metric(t, "acc", "none", m, se, 1);
    if (qw_mc_format_has_norm(f)) {
        qw_eval_mean_stderr(accn, n, &m, &se);
        add_metric(t, "acc_norm", "none", m, se, 1);
    }
    t->n = n;
    t->nshot = o_num_fewshot > 0 ? o_num_fewshot : 0;
    free(acc), free(accn);
}

static void mc_per_item(const mc_item *items, int n, const int *first, const double *ll, const int *pred,
                        const int *pred_norm)
{
    qw_afile af;
    if (qw_afile_open(o_per_item, &af)) qw_die_last();
    for (int i = 0; i < n; i++) {
        const qw_mc_item *it = &items[i].it;
        cJSON *j = cJSON_CreateObject(), *a = cJSON_CreateArray();
        cJSON_AddNumberToObject(j, "idx", i);
        cJSON_AddNumberToObject(j, "line", (double)items[i].line);
        for (int c = 0; c < it->n; c++) cJSON_AddItemToArray(a, cJSON_CreateNumber(ll[first[i] + c]));
        cJSON_AddItemToObject(j, "loglikelihoods", a);
        cJSON_AddNumberToObject(j, "pred", pred[i]);
        cJSON_AddNumberToObject(j, "pred_norm", pred_norm[i]);
        cJSON_AddNumberToObject(j, "gold", it->gold);
        cJSON_AddNumberToObject(j, "acc", pred[i] == it->gold);
        cJSON_AddNumberToObject(j, "acc_norm", pred_norm[i] == it->gold);
        char *line = cJSON_PrintUnformatted(j);
        fprintf(af.f, "%s\n", line);
        free(line);
        cJSON_Delete(j);
    }
    if (qw_afile_commit(&af)) qw_die_last();
}

static int cmd_mc(int argc, char **argv)
{
    if (argc > 0) qw_usage_error("unexpected argument '%s'", argv[0]);
    if (!o_model || !o_tasks) qw_usage_error("mc needs --model and --tasks");
    qw_mc_format f = QW_MC_GENERIC;
    if (o_format && qw_mc_format_parse(o_format, &f))
        qw_usage_error("--format: '%s' is not generic, hellaswag, arc, mmlu, piqa or winogrande", o_format);
    if (o_num_fewshot < 0) qw_usage_error("--num-fewshot must be >= 0");
    if (o_fewshot_file && o_num_fewshot <= 0) qw_usage_error("--fewshot-file needs --num-fewshot N (N >= 1)");
    check_eval_opts();
    double t0 = qw_now();
    int n;
    mc_item *items = mc_read(o_tasks, f, &n);   /* bad items fail before the model loads */
    char **pre = mc_prefixes(items, n, o_tasks, f);
    const qw_ops *ops = backend(NULL);
    eval_model ma;
    eval_model_load(&ma, o_model, ops);

    int *first = qw_malloc(n * sizeof *first), nreq = 0;
    for (int i = 0; i < n; i++) first[i] = nreq, nreq += items[i].it.n;
    double *ll = qw_malloc(nreq * sizeof *ll);
    int *pred = qw_malloc(n * sizeof *pred), *pred_norm = qw_malloc(n * sizeof *pred_norm);
    char stem[256];
    const char *base = strrchr(o_tasks, '/') ? strrchr(o_tasks, '/') + 1 : o_tasks;
    snprintf(stem, sizeof stem, "%s", base);
    if (strchr(stem, '.')) *strchr(stem, '.') = 0;
    const char *name = o_task ? o_task : f == QW_MC_GENERIC ? stem : qw_mc_format_name(f);
    task_result ta = {.task = name}, tb = ta;
    run_stats st;
    double ts = qw_now();
    mc_run(items, n, pre, first, nreq, &ma, ops, ll, &st);
    double secs = qw_now() - ts;
    mc_metrics(items, n, first, ll, f, &ta, pred, pred_norm);
    summary("items", n, &st, secs);
    if (o_per_item) mc_per_item(items, n, first, ll, pred, pred_norm);
    if (o_compare) {
        eval_model mb;
        eval_model_load(&mb, o_compare, ops);
        mc_run(items, n, pre, first, nreq, &mb, ops, ll, &st);
        mc_metrics(items, n, first, ll, f, &tb, pred, pred_norm);
        eval_model_free(&mb);
    }
    emit(&ta, o_compare ? &tb : NULL, &ma, ops, qw_now() - t0);
    for (int i = 0; i < n; i++) qw_mc_item_free(&items[i].it), free(pre[i]);
    free(items), free(pre), free(first), free(ll), free(pred), free(pred_norm);
    eval_model_free(&ma);
    return 0;
}

/* ---- gen and score ---- */

/* One generative item: its record, its task fields, its completions. */
typedef struct {
    cJSON *rec;
    long line;             /* in its file, from 1 */
    qw_gen_item it;
    char *prompt;          /* gen: the text given to the model */
    qw_ids ids;            /* gen: its tokens, left-truncated */
    char **comp;           /* ns completions (text) */
    int ns;
    char *records;         /* gen: its rollout records */
} gen_item;


typedef struct {
    const char *path;
    qw_gen_task task;
    gen_item *v;
    int n, cap;
    int rollouts;          /* score: records grouped by idx, each with a completion */
} gen_set;

static int gen_add(void *ctx, cJSON *rec, long line)
{
    gen_set *s = ctx;
    if (s->rollouts) {   /* a record with the idx of the item before it is another sample of it */
        const cJSON *idx = cJSON_GetObjectItemCaseSensitive(rec, "idx"), *c = cJSON_GetObjectItemCaseSensitive(rec, "completion");
        if (!c) qw_die(QW_EXIT_DATA, "'%s': line %ld: missing field 'completion'", s->path, line);
        if (!cJSON_IsString(c)) qw_die(QW_EXIT_DATA, "'%s': line %ld: field 'completion' is not a string", s->path, line);
        if (s->n && cJSON_IsNumber(idx)) {
            gen_item *last = &s->v[s->n - 1];
            const cJSON *li = cJSON_GetObjectItemCaseSensitive(last->rec, "idx");
            if (cJSON_IsNumber(li) && li->valuedouble == idx->valuedouble) {
                last->comp = qw_realloc(last->comp, (last->ns + 1) * sizeof *last->comp);
                last->comp[last->ns++] = qw_strdup(c->valuestring);
                return 1;
            }
        }
    }
    if (s->n == s->cap) s->v = qw_realloc(s->v, (s->cap = s->cap ? 2 * s->cap : 64) * sizeof *s->v);
    gen_item *g = &s->v[s->n];
    memset(g, 0, sizeof *g);
    if (qw_gen_item_parse(s->task, rec, &g->it))
        qw_die(QW_EXIT_DATA, "'%s': line %ld: item %d: %s", s->path, line, s->n + 1, qw_error_msg());
    g->rec = rec, g->line = line;
    if (s->rollouts) {
        g->comp = qw_malloc(sizeof *g->comp);
        g->comp[0] = qw_strdup(cJSON_GetObjectItemCaseSensitive(rec, "completion")->valuestring);
        g->ns = 1;
    }
    s->n++;
    return 0;
}

static gen_set gen_read(const char *path, qw_gen_task t, int rollouts)
{
    gen_set s = {path, t, NULL, 0, 0, rollouts};
    each_record(path, gen_add, &s);
    if (s.n == 0) qw_die(QW_EXIT_DATA, "'%s': no items", path);
    return s;
}

static void gen_free(gen_set *s)
{
    for (int i = 0; i < s->n; i++) {
        gen_item *g = &s->v[i];
        for (int j = 0; j < g->ns; j++) free(g->comp[j]);
        free(g->comp), free(g->prompt), free(g->records);
        qw_ids_free(&g->ids);
        qw_gen_item_free(&g->it);
        cJSON_Delete(g->rec);
    }
    free(s->v);
}

/* --k: the k of pass@k, ascending, each ≥ 1 */
static int parse_ks(int *ks)
{
    int n = 0;
    const char *p = o_ks ? o_ks : "1";
    while (*p) {
        char *e;
        long k = strtol(p, &e, 10);
        if (e == p || k < 1 || k > 1000000 || (*e && *e != ',') || n == 8)
            qw_usage_error("--k: '%s' is not a list of up to 8 numbers >= 1 (e.g. 1,10)", o_ks);
        ks[n++] = (int)k;
        p = *e ? e + 1 : e;
    }
    return n;
}

/* The answer of sample j of an item and whether it is right, per filter;
 * humaneval verdicts come from the sandbox. */
typedef struct {
    char *pred[QW_GEN_MAX_FILTERS];
    int ok[QW_GEN_MAX_FILTERS];
    size_t start, len;     /* the response within the completion */
} gen_score_one;

static int thinking_on(void) { return o_thinking ? !strcmp(o_thinking, "on") : 0; }

/* Run every program of a humaneval set in the sandbox: verdict[i][j]. */
static qw_code_verdict **humaneval_run(gen_set *s)
{
    qw_sandbox_mode mode;
    if (qw_sandbox_probe(0, NULL, &mode)) qw_die_last();
    if (!qw_common_opts.quiet) fprintf(stderr, "%s: code runs in a sandbox: %s\n", qw_prog, qw_sandbox_mode_name(mode));
    qw_sandbox_opts so;
    qw_sandbox_defaults(&so);
    long total = 0;
    for (int i = 0; i < s->n; i++) total += s->v[i].ns;
    int *who = qw_malloc((size_t)(total ? total : 1) * 2 * sizeof *who);
    qw_code_verdict **v = qw_calloc(s->n, sizeof *v);
    long q = 0;
    for (int i = 0; i < s->n; i++) {
        v[i] = qw_calloc(s->v[i].ns ? s->v[i].ns : 1, sizeof **v);
        for (int j = 0; j < s->v[i].ns; j++) who[2 * q] = i, who[2 * q + 1] = j, q++;
    }
    int failed = 0;
    char err[1024] = "";
#pragma omp parallel for schedule(dynamic)
    for (long p = 0; p < total; p++) {
        gen_item *g = &s->v[who[2 * p]];
        const char *c = g->comp[who[2 * p + 1]];
        size_t a, n;
        qw_gen_response(QW_GEN_HUMANEVAL, c, thinking_on(), &a, &n);
        char *resp = strndup(c + a, n);
        qw_code_result r;
        if (!resp || qw_code_run(&so, g->it.prompt, resp, g->it.test, g->it.entry_point, &r)) {
#pragma omp critical
            if (!failed) failed = 1, snprintf(err, sizeof err, "%s", resp ? qw_error_msg() : "out of memory");
        } else {
            v[who[2 * p]][who[2 * p + 1]] = r.verdict;
            qw_code_result_free(&r);
        }
        free(resp);
    }
    if (failed) qw_die(QW_EXIT_FAIL, "humaneval: %s", err);
    free(who);
    return v;
}

/* Score a set: the metrics into t, one line per item into --per-item. */
static void gen_score(gen_set *s, const int *ks, int nk, task_result *t)
{
    const char *const *fnames;
    int nf = qw_gen_task_filters(s->task, &fnames);
    int he = s->task == QW_GEN_HUMANEVAL;
    qw_code_verdict **verdict = he ? humaneval_run(s) : NULL;
    double *x = qw_malloc((size_t)s->n * (he ? nk : nf) * sizeof *x);
    qw_afile af;
    if (o_per_item && qw_afile_open(o_per_item, &af)) qw_die_last();
    for (int i = 0; i < s->n; i++) {
        gen_item *g = &s->v[i];
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "idx", i);
        cJSON_AddNumberToObject(j, "line", (double)g->line);
        if (he) {
            if (g->ns < ks[nk - 1])
                qw_die(QW_EXIT_DATA, "'%s': line %ld: item %d has %d samples; pass@%d needs at least %d", s->path,
                       g->line, i + 1, g->ns, ks[nk - 1], ks[nk - 1]);
            int c = 0;
            cJSON *vs = cJSON_CreateArray(), *rs = cJSON_CreateArray(), *pk = cJSON_CreateObject();
            for (int k = 0; k < g->ns; k++) {
                c += verdict[i][k] == QW_CODE_PASSED;
                cJSON_AddItemToArray(vs, cJSON_CreateString(qw_code_verdict_name(verdict[i][k])));
                size_t a, n;
                qw_gen_response(s->task, g->comp[k], thinking_on(), &a, &n);
                char *resp = strndup(g->comp[k] + a, n);
                if (!resp) qw_die(QW_EXIT_FAIL, "out of memory");
                cJSON_AddItemToArray(rs, cJSON_CreateString(resp));
                free(resp);
            }
            cJSON_AddNumberToObject(j, "n", g->ns);
            cJSON_AddNumberToObject(j, "correct", c);
            cJSON_AddItemToObject(j, "responses", rs);
            cJSON_AddItemToObject(j, "verdicts", vs);
            for (int k = 0; k < nk; k++) {
                char key[32];
                snprintf(key, sizeof key, "pass@%d", ks[k]);
                x[(size_t)k * s->n + i] = qw_eval_pass_at_k(g->ns, c, ks[k]);
                cJSON_AddNumberToObject(pk, key, x[(size_t)k * s->n + i]);
            }
            cJSON_AddItemToObject(j, "pass@k", pk);
            free(verdict[i]);
        } else {   /* lm-eval's take_first: the first sample is scored */
            const char *c = g->comp[0];
            size_t a, n;
            qw_gen_response(s->task, c, thinking_on(), &a, &n);
            cJSON *ans = cJSON_CreateObject(), *em = cJSON_CreateObject();
            for (int f = 0; f < nf; f++) {
                char *pred = qw_gen_extract(s->task, f, c + a, n);
                int ok = qw_gen_correct(s->task, &g->it, pred);
                x[(size_t)f * s->n + i] = ok;
                cJSON_AddItemToObject(ans, fnames[f], pred ? cJSON_CreateString(pred) : cJSON_CreateNull());
                cJSON_AddNumberToObject(em, fnames[f], ok);
                free(pred);
            }
            char *resp = strndup(c + a, n);
            if (!resp) qw_die(QW_EXIT_FAIL, "out of memory");
            cJSON_AddStringToObject(j, "completion", c);
            cJSON_AddStringToObject(j, "response", resp);
            cJSON_AddStringToObject(j, "gold", g->it.gold);
            cJSON_AddItemToObject(j, "answer", ans);
            cJSON_AddItemToObject(j, "exact_match", em);
            free(resp);
        }
        if (o_per_item) {
            char *line = cJSON_PrintUnformatted(j);
            fprintf(af.f, "%s\n", line);
            free(line);
        }
        cJSON_Delete(j);
    }
    if (o_per_item && qw_afile_commit(&af)) qw_die_last();
    t->nm = 0;
    for (int m = 0; m < (he ? nk : nf); m++) {
        double v, se;
        qw_eval_mean_stderr(x + (size_t)m * s->n, s->n, &v, &se);
        char name[32];
        snprintf(name, sizeof name, "pass@%d", he ? ks[m] : 0);
        add_metric(t, he ? name : "exact_match", he ? "none" : fnames[m], v, se, 1);
    }
    t->n = s->n;
    free(x), free(verdict);
}

/* ---- gen: generate, then score ---- */

typedef struct {
    gen_set *s;
    const qw_tok *tok;
    qw_progress pr;
    double t0;
    long long tokens;
} gen_ctx;

static int gen_done(void *ctx, int p, const qw_completion *c)
{
    gen_ctx *x = ctx;
    gen_item *g = &x->s->v[p];
    qw_buf b = {0};
    g->comp = qw_calloc(o_samples, sizeof *g->comp);
    g->ns = o_samples;
    for (int j = 0; j < o_samples; j++) {
        qw_buf t = {0};
        if (qw_rollout_text(x->tok, &c[j], &t) ||
            qw_rollout_record(&b, p, j, g->prompt, g->ids.v, g->ids.n, x->tok, &c[j], g->rec))
            return QW_EXIT_DATA;
        g->comp[j] = (char *)qw_buf_cstr(&t);
        x->tokens += c[j].n;
    }
    g->records = (char *)qw_buf_cstr(&b);
    return 0;
}

static int gen_step(void *ctx, const qw_gen_stats *st)
{
    gen_ctx *x = ctx;
    char a[16], r[16];
    double dt = qw_now() - x->t0;
    qw_progress_update(&x->pr, (double)st->prompts_done, (double)x->s->n, "%s/%d items, %d running, %s tok/s",
                       qw_human((double)st->prompts_done, a), x->s->n, st->running,
                       qw_human(dt > 0 ? st->generated_tokens / dt : 0, r));
    return 0;
}

/* Prompts (chat template when asked), tokens (left-truncated to leave
 * max_new tokens in max_len, as lm-eval does), completions of model m. */
static void gen_run(gen_set *s, char **pre, eval_model *m, const qw_ops *ops)
{
    int keep = m->max_len - o_max_new;
    if (keep < 1) qw_usage_error("--max-new-tokens %d leaves no room for a prompt in --max-length %d", o_max_new, m->max_len);
    size_t longest = 1;
    for (int i = 0; i < s->n; i++) {
        gen_item *g = &s->v[i];
        for (int j = 0; j < g->ns; j++) free(g->comp[j]);
        free(g->comp), free(g->prompt), free(g->records);
        g->comp = NULL, g->ns = 0, g->records = NULL;
        qw_buf text = {0};
        qw_buf_adds(&text, pre[i]);
        qw_buf_adds(&text, g->it.text);
        if (o_chat) {   /* lm-eval's single-turn chat: the whole prompt as one user message */
            cJSON *msgs = cJSON_CreateArray(), *u = cJSON_CreateObject();
            cJSON_AddStringToObject(u, "role", "user");
            cJSON_AddStringToObject(u, "content", qw_buf_cstr(&text));
            cJSON_AddItemToArray(msgs, u);
            qw_buf r = {0};
            qw_chat_opts co = { .add_generation_prompt = 1, .thinking_off = !thinking_on() };
            if (qw_chat_render(msgs, NULL, &co, &r, NULL)) qw_die_last();
            cJSON_Delete(msgs);
            qw_buf_free(&text);
            text = r;
        }
        g->prompt = qw_strdup(qw_buf_cstr(&text));
        g->ids.n = 0;
        if (qw_tok_encode(m->tok, text.p ? text.p : "", text.n, &g->ids))
            qw_die(QW_EXIT_DATA, "'%s': line %ld: %s", o_tasks, g->line, qw_error_msg());
        qw_buf_free(&text);
        if (g->ids.n > (size_t)keep) {
            memmove(g->ids.v, g->ids.v + g->ids.n - keep, (size_t)keep * sizeof *g->ids.v);
            g->ids.n = (size_t)keep;
        }
        if (!g->ids.n) qw_die(QW_EXIT_DATA, "'%s': line %ld: the prompt is empty", o_tasks, g->line);
        if (g->ids.n > longest) longest = g->ids.n;
    }
    qw_ids stop_ids = {0};
    if (qw_rollout_eos_ids(m->dir, &m->cfg, &stop_ids)) qw_die_last();
    qw_gen_prompt *pr = qw_calloc(s->n, sizeof *pr);
    for (int i = 0; i < s->n; i++) pr[i] = (qw_gen_prompt){ s->v[i].ids.v, (int)s->v[i].ids.n, (uint64_t)i };
    long long per_seq = (long long)longest + o_max_new;
    qw_engine_opts eo = { .max_batch = o_max_batch, .max_context = m->max_len,
                          .cache_tokens = (long long)o_max_batch * (per_seq + 16) };
    qw_engine *e;
    if (qw_engine_new(ops, &m->P, &eo, &e)) qw_die_last();
    const char *const *until = qw_gen_task_until(s->task);
    int nu = 0;
    while (until[nu]) nu++;
    qw_gen_opts go = { .n = o_samples, .max_new_tokens = o_max_new, .temperature = o_temperature, .top_k = o_top_k,
                       .top_p = o_top_p, .seed = (uint64_t)qw_common_opts.seed, .stop_ids = stop_ids.v,
                       .n_stop_ids = (int)stop_ids.n, .stop = until, .n_stop = nu, .thinking_budget = -1,
                       .tok = m->tok };
    gen_ctx x = { .s = s, .tok = m->tok };
    if (!qw_common_opts.quiet) qw_progress_init(&x.pr);
    x.t0 = qw_now();
    if (qw_engine_generate(e, pr, s->n, &go, gen_done, qw_common_opts.quiet ? NULL : gen_step, &x)) qw_die_last();
    if (!qw_common_opts.quiet) {
        qw_progress_end(&x.pr);
        double dt = qw_now() - x.t0;
        fprintf(stderr, "%s: '%s': %d items × %d samples, %lld tokens generated in %.1f s (%.1f tok/s)\n", qw_prog,
                m->dir, s->n, o_samples, x.tokens, dt, dt > 0 ? x.tokens / dt : 0);
    }
    qw_engine_free(e);
    qw_ids_free(&stop_ids);
    free(pr);
}

static void gen_check_sampling(void)
{
    if (o_samples < 1) qw_usage_error("-n: %d samples per item; need at least 1", o_samples);
    if (o_max_new < 1) qw_usage_error("--max-new-tokens: need at least 1");
    if (!(o_temperature >= 0) || !isfinite(o_temperature)) qw_usage_error("--temperature: need a finite value >= 0");
    if (o_top_k < 0) qw_usage_error("--top-k: need K >= 0");
    if (!(o_top_p > 0 && o_top_p <= 1)) qw_usage_error("--top-p: need 0 < P <= 1");
    if (o_max_batch < 1) qw_usage_error("--max-batch: need at least 1");
}

static qw_gen_task gen_task(void)
{
    qw_gen_task t;
    if (!o_task) qw_usage_error("give --task gsm8k|gsm8k_cot|math|humaneval");
    if (qw_gen_task_parse(o_task, &t)) qw_usage_error("--task: '%s' is not gsm8k, gsm8k_cot, math or humaneval", o_task);
    if (o_thinking && strcmp(o_thinking, "on") && strcmp(o_thinking, "off"))
        qw_usage_error("--thinking: '%s' is not on or off", o_thinking);
    if (o_ks && t != QW_GEN_HUMANEVAL) qw_usage_error("--k is for --task humaneval (pass@k)");
    return t;
}

static int cmd_gen(int argc, char **argv)
{
    if (argc > 0) qw_usage_error("unexpected argument '%s'", argv[0]);
    if (!o_model || !o_tasks) qw_usage_error("gen needs --model, --task and --tasks");
    qw_gen_task task = gen_task();
    int ks[8], nk = parse_ks(ks);
    gen_check_sampling();
    if (task == QW_GEN_HUMANEVAL && ks[nk - 1] > o_samples)
        qw_usage_error("--k %d needs at least %d samples per item (-n)", ks[nk - 1], ks[nk - 1]);
    if (o_thinking && !o_chat) qw_usage_error("--thinking needs --chat");
    if (o_chat && !o_thinking) o_thinking = "on";   /* the template's default: enable_thinking */
    if (o_num_fewshot < -1) qw_usage_error("--num-fewshot must be >= 0");
    int shots = o_num_fewshot >= 0 ? o_num_fewshot : qw_gen_task_shots(task);
    if (task == QW_GEN_HUMANEVAL && shots) qw_usage_error("--task humaneval has no few-shot examples");
    if (task == QW_GEN_HUMANEVAL && o_chat) qw_usage_error("--task humaneval continues the prompt's code: no --chat");
    if (task == QW_GEN_GSM8K_COT && o_fewshot_file)
        qw_usage_error("--task gsm8k_cot takes its examples from lm-eval's eight exemplars, not --fewshot-file");
    if (task == QW_GEN_GSM8K_COT && shots > 8) qw_usage_error("--num-fewshot %d: gsm8k_cot has 8 exemplars", shots);
    if (o_max_length != -1 && o_max_length < 2) qw_usage_error("--max-length must be >= 2");
    if (qw_common_opts.device && !strcmp(qw_common_opts.device, "cuda"))
        qw_die(QW_EXIT_USAGE, "--device cuda: the CUDA decode path is not built yet");
    double t0 = qw_now();
    gen_set s = gen_read(o_tasks, task, 0);   /* bad items fail before the model loads */

    /* the few-shot examples: the pool's example texts, drawn as mc draws them */
    gen_set fs = {0};
    char **ex = NULL;
    int nex = 0, same = 0;
    if (shots > 0 && task == QW_GEN_GSM8K_COT) {
        qw_gen_item *c = qw_gen_cot_examples(&nex);
        ex = qw_calloc(nex, sizeof *ex);
        for (int j = 0; j < nex; j++) {
            qw_buf b = {0};
            qw_gen_item_example(&c[j], &b);
            ex[j] = (char *)qw_buf_cstr(&b);
            qw_gen_item_free(&c[j]);
        }
        free(c);
    } else if (shots > 0) {
        same = !o_fewshot_file || same_file(o_tasks, o_fewshot_file);
        if (!same) fs = gen_read(o_fewshot_file, task, 0);
        gen_set *pool = same ? &s : &fs;
        nex = pool->n;
        ex = qw_calloc(nex, sizeof *ex);
        for (int j = 0; j < nex; j++) {
            qw_buf b = {0};
            qw_gen_item_example(&pool->v[j].it, &b);
            ex[j] = (char *)qw_buf_cstr(&b);
        }
    }
    char **pre = fewshot_prefixes(s.n, NULL, ex, nex, same, shots, o_fewshot_first || task == QW_GEN_GSM8K_COT,
                                  task == QW_GEN_GSM8K_COT ? "gsm8k-cot.yaml" : same ? o_tasks : o_fewshot_file);
    for (int j = 0; j < nex; j++) free(ex[j]);
    free(ex);
    if (fs.n) gen_free(&fs);

    const qw_ops *ops;
    if (qw_backend_select(qw_common_opts.device ? qw_common_opts.device : "cpu", NULL, qw_common_opts.threads, 0, &ops))
        qw_die_last();
    eval_model ma;
    eval_model_load(&ma, o_model, ops);
    gen_run(&s, pre, &ma, ops);
    if (o_completions) {
        qw_afile af;
        if (qw_afile_open(o_completions, &af)) qw_die_last();
        for (int i = 0; i < s.n; i++) fputs(s.v[i].records, af.f);
        if (qw_afile_commit(&af)) qw_die_last();
    }
    task_result ta = {.task = qw_gen_task_name(task), .nshot = shots}, tb = ta;
    gen_score(&s, ks, nk, &ta);
    if (o_compare) {
        eval_model mb;
        eval_model_load(&mb, o_compare, ops);
        const char *keep = o_per_item;
        o_per_item = NULL;
        gen_run(&s, pre, &mb, ops);
        gen_score(&s, ks, nk, &tb);
        o_per_item = keep;
        eval_model_free(&mb);
    }
    gen_config = cJSON_CreateObject();
    cJSON *gk = cJSON_CreateObject(), *until = cJSON_CreateArray();
    for (const char *const *u = qw_gen_task_until(task); *u; u++) cJSON_AddItemToArray(until, cJSON_CreateString(*u));
    cJSON_AddItemToObject(gk, "until", until);
    cJSON_AddNumberToObject(gk, "max_gen_toks", o_max_new);
    cJSON_AddBoolToObject(gk, "do_sample", o_temperature > 0);
    cJSON_AddNumberToObject(gk, "temperature", o_temperature);
    if (o_top_p < 1) cJSON_AddNumberToObject(gk, "top_p", o_top_p);
    if (o_top_k > 0) cJSON_AddNumberToObject(gk, "top_k", o_top_k);
    cJSON_AddItemToObject(gen_config, "generation_kwargs", gk);
    cJSON_AddNumberToObject(gen_config, "repeats", o_samples);
    cJSON_AddBoolToObject(gen_config, "apply_chat_template", o_chat);
    cJSON_AddStringToObject(gen_config, "thinking", thinking_on() ? "on" : "off");
    cJSON_AddNumberToObject(gen_config, "seed", (double)qw_common_opts.seed);
    emit(&ta, o_compare ? &tb : NULL, &ma, ops, qw_now() - t0);
    cJSON_Delete(gen_config);
    for (int i = 0; i < s.n; i++) free(pre[i]);
    free(pre);
    gen_free(&s);
    eval_model_free(&ma);
    return 0;
}

static int cmd_score(int argc, char **argv)
{
    if (argc == 0) qw_usage_error("score needs a rollouts FILE");
    if (argc > 1) qw_usage_error("unexpected argument '%s'", argv[1]);
    qw_gen_task task = gen_task();
    int ks[8], nk = parse_ks(ks);
    double t0 = qw_now();
    o_tasks = argv[0];
    gen_set s = gen_read(argv[0], task, 1);
    if (o_num_fewshot < -1) qw_usage_error("--num-fewshot must be >= 0");
    task_result t = {.task = qw_gen_task_name(task)};
    t.nshot = o_num_fewshot >= 0 ? o_num_fewshot : qw_gen_task_shots(task);
    gen_score(&s, ks, nk, &t);
    gen_config = cJSON_CreateObject();
    cJSON_AddStringToObject(gen_config, "completions", argv[0]);
    cJSON_AddStringToObject(gen_config, "thinking", thinking_on() ? "on" : "off");
    emit(&t, NULL, NULL, NULL, qw_now() - t0);
    cJSON_Delete(gen_config);
    gen_free(&s);
    return 0;
}

/* ---- plot ---- */

/* One run: LABEL=FILE[,FILE...] (stages joined, each file's steps after the
 * previous file's last) or FILE (labelled by its name without .jsonl). */
typedef struct {
    char *label;
    qw_metrics_log log;   /* the files joined; steps offset */
} plot_run;

static void plot_load(const char *arg, plot_run *r)
{
    const char *eq = strchr(arg, '=');
    char *files;
    if (eq && eq != arg) {
        r->label = strndup(arg, (size_t)(eq - arg));
        files = qw_strdup(eq + 1);
    } else {
        const char *base = strrchr(arg, '/') ? strrchr(arg, '/') + 1 : arg;
        size_t n = strlen(base);
        if (n > 6 && !strcmp(base + n - 6, ".jsonl")) n -= 6;
        r->label = strndup(base, n);
        files = qw_strdup(arg);
    }
    if (!r->label) qw_die(QW_EXIT_FAIL, "out of memory");
    memset(&r->log, 0, sizeof r->log);
    double offset = 0;
    char *save = NULL;
    for (char *p = strtok_r(files, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        qw_metrics_log l;
        if (qw_metrics_read(p, &l)) qw_die_last();
        double last = offset;
        for (int i = 0; i < l.nrec; i++)
            if (offset + l.step[i] > last) last = offset + l.step[i];
        qw_metrics_log_append(&r->log, &l, offset);
        offset = last;
        qw_metrics_log_free(&l);
    }
    free(files);
}

static int cmd_plot(int argc, char **argv)
{
    if (argc < 1) qw_usage_error("plot needs at least one METRICS.jsonl");
    if (!o_svg) qw_usage_error("plot needs -o OUT.svg");
    plot_run *runs = qw_calloc(argc, sizeof *runs);
    for (int i = 0; i < argc; i++) plot_load(argv[i], &runs[i]);
    /* the keys: asked for, or every numeric key in first-seen order */
    const char **keys = NULL;
    int nk = 0;
    char *klist = o_keys ? qw_strdup(o_keys) : NULL;
    if (klist) {
        char *save = NULL;
        for (char *k = strtok_r(klist, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
            keys = qw_realloc(keys, (nk + 1) * sizeof *keys);
            keys[nk++] = k;
        }
        if (!nk) qw_usage_error("--keys: no key given");
    } else {
        for (int r = 0; r < argc; r++)
            for (int k = 0; k < runs[r].log.nkeys; k++) {
                const char *key = runs[r].log.keys[k];
                int seen = !strcmp(key, "tokens") || !strcmp(key, "val_tokens");
                for (int j = 0; j < nk && !seen; j++) seen = !strcmp(keys[j], key);
                if (seen) continue;
                keys = qw_realloc(keys, (nk + 1) * sizeof *keys);
                keys[nk++] = key;
            }
        if (!nk) qw_die(QW_EXIT_DATA, "'%s': no numeric values to plot", argv[0]);
    }
    /* each key must have a value somewhere */
    for (int j = 0; j < nk; j++) {
        int found = 0;
        for (int r = 0; r < argc && !found; r++) {
            int c = qw_metrics_log_key(&runs[r].log, keys[j]);
            for (int i = 0; c >= 0 && i < runs[r].log.nrec && !found; i++)
                found = !isnan(runs[r].log.val[(size_t)i * runs[r].log.nkeys + c]);
        }
        if (!found) qw_die(QW_EXIT_DATA, "no values of '%s' in %s", keys[j], argc == 1 ? argv[0] : "any of the files");
    }
    /* columns per key */
    qw_plot_run *pr = qw_calloc(argc, sizeof *pr);
    double **cols = qw_calloc((size_t)argc * nk, sizeof *cols);
    for (int r = 0; r < argc; r++) {
        const qw_metrics_log *l = &runs[r].log;
        for (int j = 0; j < nk; j++) {
            double *c = cols[(size_t)r * nk + j] = qw_malloc(((size_t)l->nrec + 1) * sizeof *c);
            int k = qw_metrics_log_key(l, keys[j]);
            for (int i = 0; i < l->nrec; i++) c[i] = k < 0 ? NAN : l->val[(size_t)i * l->nkeys + k];
        }
        pr[r] = (qw_plot_run){runs[r].label, l->nrec, l->step, (const double *const *)&cols[(size_t)r * nk]};
    }
    qw_fig *f = qw_plot_metrics(pr, argc, keys, nk, o_title);
    if (qw_fig_svg(f, o_svg) || (o_png && qw_fig_png(f, o_png))) qw_die_last();
    qw_fig_free(f);
    for (size_t i = 0; i < (size_t)argc * nk; i++) free(cols[i]);
    for (int r = 0; r < argc; r++) free(runs[r].label), qw_metrics_log_free(&runs[r].log);
    free(cols), free(pr), free(runs), free(keys), free(klist);
    return 0;
}

/* pixels: every image through qw_vision_preprocess, rows concatenated in
 * the order given, as one processor call on the list does. */
static int cmd_pixels(int argc, char **argv)
{
    if (!o_model || !o_output) qw_usage_error("pixels needs --model and --output");
    if (argc < 1) qw_usage_error("pixels needs at least one IMAGE");
    qw_vision_prep p;
    if (qw_vision_prep_load(&p, o_model)) qw_die_last();
    int L = qw_vision_row_len(&p);
    float *all = NULL;
    int64_t total = 0;
    int64_t *thw = qw_malloc(sizeof(int64_t) * 3 * (size_t)argc);
    for (int i = 0; i < argc; i++) {
        qw_image im;
        float *px;
        int64_t rows;
        if (qw_image_load(argv[i], &im) || qw_vision_preprocess(&p, &im, argv[i], &px, &rows, thw + 3 * i))
            qw_die_last();
        all = qw_realloc(all, (size_t)(total + rows) * L * sizeof(float));
        memcpy(all + (size_t)total * L, px, (size_t)rows * L * sizeof(float));
        total += rows;
        free(px);
        qw_image_free(&im);
    }
    qw_st_writer *w = qw_st_writer_new();
    int64_t s1[2] = { total, L }, s2[2] = { argc, 3 };
    qw_st_writer_add(w, "pixel_values", QW_DT_F32, 2, s1, all);
    qw_st_writer_add(w, "image_grid_thw", QW_DT_I64, 2, s2, thw);
    if (qw_st_writer_write(w, o_output)) qw_die_last();
    qw_st_writer_free(w);
    if (!qw_common_opts.quiet)
        fprintf(stderr, "%s: pixels: %d image%s, %lld patch rows of %d -> '%s'\n", qw_prog, argc, argc == 1 ? "" : "s",
                (long long)total, L, o_output);
    free(all);
    free(thw);
    return 0;
}

static const qw_cmd cmds[] = {
    { "forward", cmd_forward, "--model DIR --input IN.safetensors --output OUT.safetensors [--grads] [options]",
      "one forward (and backward) pass, dumped for parity checks (fp32 unless --precision bf16)", forward_opts },
    { "bench", cmd_bench, "--config FILE [--seq-len T] [--batch B] [--steps N] [options]",
      "time forward+backward steps with random weights, against the backend's GEMM rate", bench_opts },
    { "ppl", cmd_ppl, "--model DIR [--max-length N] [--jsonl [--field NAME]] [options] [FILE...]",
      "perplexity of documents: word, byte and token perplexity, bits per byte (lm-eval's rolling windows)", ppl_opts },
    { "mc", cmd_mc, "--model DIR --tasks FILE.jsonl [--format NAME] [--num-fewshot N [--fewshot-file F]] [options]",
      "multiple-choice accuracy: acc and acc_norm with standard errors, as lm-eval scores them", mc_opts },
    { "gen", cmd_gen, "--model DIR --task NAME --tasks FILE.jsonl [--num-fewshot N [--fewshot-file F]] [--chat [--thinking on|off]] [-n N] [--completions OUT.jsonl] [options]",
      "generative benchmarks as lm-eval defines them: GSM8K (exact match), MATH (boxed answers), HumanEval (pass@k)", gen_opts },
    { "score", cmd_score, "--task NAME [--thinking on|off] [--k K1,K2,...] [options] ROLLOUTS.jsonl",
      "score completions already generated (qw-eval gen --completions, qw-rollout or another engine) as gen does", score_opts },
    { "plot", cmd_plot, "METRICS.jsonl... -o OUT.svg [--png OUT.png] [--keys K1,K2,...] [options]",
      "draw training metrics (qw-metrics(5)) as SVG and PNG: a panel per key, step on x, runs overlaid", plot_opts },
    { "pixels", cmd_pixels, "--model DIR --output OUT.safetensors [options] IMAGE...",
      "PNG/JPEG images to pixel_values and image_grid_thw exactly as the Qwen3-VL image processor makes them", pixels_opts },
    { 0 },
};

static const qw_cmd_prog prog = {
    "qw-eval",
    "Evaluate a Qwen3 model: dump one forward (and backward) pass, time training steps, measure perplexity,\n"
    "multiple-choice accuracy and generative benchmarks as lm-evaluation-harness does, plot training metrics,\n"
    "or turn images into a vision model's pixel inputs.",
    cmds,
};

int main(int argc, char **argv)
{
    qw_set_prog(argv[0]);
    if (argc > 1 && (!strcmp(argv[1], "mc") || !strcmp(argv[1], "gen")))
        qw_common_opts.seed = 1234;   /* lm-eval's few-shot seed */
    if (argc > 1 && (!strcmp(argv[1], "gen") || !strcmp(argv[1], "score"))) o_num_fewshot = -1;   /* the task's */
    int rc = qw_cmd_main(&prog, argc, argv);
    qw_close_stdout();
    return rc;
}
