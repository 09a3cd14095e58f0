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
 *   qw-eval plot      metrics JSONL → SVG (and PNG) figures
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
#include "qw/cli.h"
#include "qw/config.h"
#include "qw/eval.h"
#include "qw/file.h"
#include "qw/io.h"
#include "qw/model.h"
#include "qw/ops.h"
#include "qw/metrics.h"
#include "qw/params.h"
#include "qw/plot.h"
#include "qw/size.h"
#include "qw/st.h"
#include "qw/tokenize.h"

static const char *o_model, *o_input, *o_output, *o_config, *o_precision;
static int o_grads, o_seq = -1, o_batch = -1, o_steps = -1, o_deterministic;
/* ppl, mc */
static const char *o_tokenizer, *o_field, *o_task, *o_tasks, *o_format, *o_fewshot_file, *o_delim, *o_per_item,
                  *o_markdown, *o_compare, *o_prefix_token;
static int o_jsonl, o_max_length = -1, o_batch_tokens = -1, o_num_fewshot;
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

static const qw_opt plot_opts[] = {
    { "output", 'o', QW_OPT_STR, &o_svg, "OUT.svg", "the SVG figure to write" },
    { "png", 0, QW_OPT_STR, &o_png, "OUT.png", "also draw it as a PNG" },
    { "keys", 0, QW_OPT_STR, &o_keys, "K1,K2,...", "one panel per key (default: every numeric key but step, tokens, val_tokens)" },
    { "title", 0, QW_OPT_STR, &o_title, "TEXT", "a title before the legend" },
    QW_COMMON_BEGIN, QW_COMMON_END,
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
} fwd_input;

static void read_input(const char *path, int V, int *B, int *T, fwd_input *x)
{
    qw_st *in;
    if (qw_st_open(path, &in)) qw_die_last();
    if (qw_st_find(in, "pixel_values") || qw_st_find(in, "image_grid_thw"))
        qw_die(QW_EXIT_FAIL, "'%s': vision inputs (pixel_values, image_grid_thw) are not supported yet", path);
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
    qw_st_close(in);
    size_t N = (size_t)*B * *T;
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

    qw_model *m;
    qw_model_out out;
    size_t lbytes;
    uint64_t mem = qw_phys_mem_bytes();
    if (qw_mul_size((size_t)B * T, (size_t)V * sizeof(float), &lbytes) || (mem && lbytes > mem))
        qw_die(QW_EXIT_DATA, "'%s': %d × %d tokens of logits over %d words need more bytes than the machine's memory (%llu)",
               o_input, B, T, V, (unsigned long long)mem);
    float *logits = qw_malloc(lbytes);
    qw_batch batch = {.ids = x.ids, .pos = x.pos, .seg = x.seg, .targets = x.targets};
    if (qw_model_new(ops, &P, B, T, NULL, &m) || qw_model_forward(m, &batch, logits, NULL, &out)) qw_die_last();
    int moe = cfg.arch == QW_ARCH_MOE;
    float aux_coef = moe && cfg.output_router_logits ? (float)cfg.router_aux_loss_coef : 0;
    float loss = (float)(out.loss + aux_coef * out.aux_loss), aux = (float)out.aux_loss;

    qw_st_writer *w = qw_st_writer_new();
    int64_t lshape[3] = {B, T, V}, one = 1;
    qw_st_writer_add(w, "logits", QW_DT_F32, 3, lshape, logits);
    qw_st_writer_add(w, "loss", QW_DT_F32, 1, &one, &loss);
    if (moe) qw_st_writer_add(w, "aux_loss", QW_DT_F32, 1, &one, &aux);
    qw_params G;
    float *grads = NULL;   /* host copy of G */
    if (o_grads) {
        if (qw_params_alloc_like(&G, &P) || qw_model_backward(m, &G, aux_coef)) qw_die_last();
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
    free(x.ids); free(x.targets); free(x.pos); free(x.seg);
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
    const char *name;
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

static void add_metric(task_result *t, const char *name, double v, double se, int hib)
{
    t->m[t->nm++] = (metric){name, v, se, hib};
}

/* results / n-shot / higher_is_better / n-samples, lm-eval's layout */
static cJSON *results_json(const task_result *t)
{
    cJSON *res = cJSON_CreateObject(), *task = cJSON_CreateObject();
    cJSON_AddStringToObject(task, "alias", t->task);
    for (int i = 0; i < t->nm; i++) {
        char key[96];
        snprintf(key, sizeof key, "%s,none", t->m[i].name);
        cJSON_AddNumberToObject(task, key, t->m[i].value);
        snprintf(key, sizeof key, "%s_stderr,none", t->m[i].name);
        if (isnan(t->m[i].se)) cJSON_AddStringToObject(task, key, "N/A");
        else cJSON_AddNumberToObject(task, key, t->m[i].se);
    }
    cJSON_AddItemToObject(res, t->task, task);
    return res;
}

static cJSON *report_json(const task_result *t, const char *model_dir, const eval_model *m, const qw_ops *ops,
                          double seconds)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "results", results_json(t));
    cJSON *ns = cJSON_CreateObject(), *hib = cJSON_CreateObject(), *hb = cJSON_CreateObject(),
          *samples = cJSON_CreateObject(), *sm = cJSON_CreateObject();
    cJSON_AddNumberToObject(ns, t->task, t->nshot);
    for (int i = 0; i < t->nm; i++) cJSON_AddBoolToObject(hb, t->m[i].name, t->m[i].higher_better);
    cJSON_AddItemToObject(hib, t->task, hb);
    cJSON_AddNumberToObject(sm, "original", (double)t->n);
    cJSON_AddNumberToObject(sm, "effective", (double)t->n);
    cJSON_AddItemToObject(samples, t->task, sm);
    cJSON_AddItemToObject(j, "n-shot", ns);
    cJSON_AddItemToObject(j, "higher_is_better", hib);
    cJSON_AddItemToObject(j, "n-samples", samples);
    cJSON *cfg = cJSON_CreateObject();
    char args[4200];
    snprintf(args, sizeof args, "pretrained=%s", model_dir);
    cJSON_AddStringToObject(cfg, "model", "qw");
    cJSON_AddStringToObject(cfg, "model_args", args);
    cJSON_AddStringToObject(cfg, "tokenizer", m->tok_path);
    cJSON_AddStringToObject(cfg, "prefix_token", qw_tok_id_to_token(m->tok, m->prefix));
    cJSON_AddNumberToObject(cfg, "max_length", m->max_len);
    cJSON_AddNumberToObject(cfg, "batch_tokens", o_batch_tokens > 0 ? o_batch_tokens : 8192);
    cJSON_AddStringToObject(cfg, "device", ops->name);
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
        snprintf(key, sizeof key, "%s,none", a->m[i].name);
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
            fprintf(f, "|%s|none|%d|%s|%s|%s|±|%s|\n", i ? "" : a->task, a->nshot, a->m[i].name,
                    a->m[i].higher_better ? "↑" : "↓", v, s);
        }
        return;
    }
    fprintf(f, "|Tasks|Metric|%s|Stderr|%s|Stderr|Diff|Combined stderr|Diff > stderr|\n", dir_a, dir_b);
    fputs("|---|---|---:|---:|---:|---:|---:|---:|---|\n", f);
    for (int i = 0; i < a->nm; i++) {
        double diff = b->m[i].value - a->m[i].value, se = sqrt(a->m[i].se * a->m[i].se + b->m[i].se * b->m[i].se);
        fmt_value(v, sizeof v, a->m[i].value), fmt_value(s, sizeof s, a->m[i].se);
        fmt_value(v2, sizeof v2, b->m[i].value), fmt_value(s2, sizeof s2, b->m[i].se);
        snprintf(d, sizeof d, "%+.4f", diff);
        fmt_value(cs, sizeof cs, se);
        fprintf(f, "|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", i ? "" : a->task, a->m[i].name, v, s, v2, s2, d, cs,
                isnan(se) ? "n/a" : fabs(diff) > se ? "yes" : "no");
    }
}

/* Print the JSON report (and the Markdown table where --markdown says). */
static void emit(const task_result *a, const task_result *b, const eval_model *ma, const qw_ops *ops, double secs)
{
    if (o_markdown && strcmp(o_markdown, "-")) {
        qw_afile af;
        if (qw_afile_open(o_markdown, &af)) qw_die_last();
        markdown(af.f, a, b, ma->dir, o_compare);
        if (qw_afile_commit(&af)) qw_die_last();
    }
    if (o_markdown && !strcmp(o_markdown, "-")) {
        markdown(stdout, a, b, ma->dir, o_compare);
        return;
    }
    cJSON *j = report_json(a, ma->dir, ma, ops, secs);
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
    add_metric(t, "word_perplexity", exp(-sll / words), NAN, 0);
    add_metric(t, "byte_perplexity", bytes > 0 ? exp(-sll / bytes) : NAN, NAN, 0);
    add_metric(t, "bits_per_byte", bytes > 0 ? -sll / bytes / log(2) : NAN, NAN, 0);
    add_metric(t, "token_perplexity", toks > 0 ? exp(-sll / toks) : NAN, NAN, 0);
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

/* The items of a JSONL file (blank lines skipped); errors name the line. */
static mc_item *mc_read(const char *path, qw_mc_format f, int *n)
{
    qw_buf b = {0};
    if (qw_read_file(path, &b, NULL)) qw_die_last();
    mc_item *items = NULL;
    int cap = 0;
    *n = 0;
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
            if (*n == cap) {
                cap = cap ? 2 * cap : 64;
                items = qw_realloc(items, cap * sizeof *items);
            }
            if (qw_mc_item_parse(f, j, &items[*n].it))
                qw_die(QW_EXIT_DATA, "'%s': line %ld: item %d: %s", path, line, *n + 1, qw_error_msg());
            items[(*n)++].line = line;
            cJSON_Delete(j);
        }
        p = e + 1;
    }
    qw_buf_free(&b);
    if (*n == 0) qw_die(QW_EXIT_DATA, "'%s': no items", path);
    return items;
}

/* The text before each item's own: its description, then --num-fewshot
 * examples drawn as lm-eval's default sampler draws them (random.Random(seed)
 * .sample of the few-shot items, once per item in order; one more when the
 * few-shot items are the evaluated ones, dropping the item itself), each
 * followed by "\n\n". */
static char **mc_prefixes(const mc_item *items, int n, const char *tasks, qw_mc_format f)
{
    char **pre = qw_calloc(n, sizeof *pre);
    const mc_item *fs = items;
    int nfs = n, same = 1;
    if (o_num_fewshot > 0 && o_fewshot_file) {
        char *a = realpath(tasks, NULL), *b = realpath(o_fewshot_file, NULL);
        same = a && b && !strcmp(a, b);
        free(a), free(b);
        if (!same) fs = mc_read(o_fewshot_file, f, &nfs);
    }
    int k = o_num_fewshot + same;
    if (o_num_fewshot > 0 && k > nfs)
        qw_usage_error("--num-fewshot %d: '%s' has %d items%s", o_num_fewshot, same ? tasks : o_fewshot_file, nfs,
                       same ? " (the item itself is never its own example)" : "");
    qw_pyrand r;
    qw_pyrand_seed(&r, (uint64_t)(qw_common_opts.seed < 0 ? -qw_common_opts.seed : qw_common_opts.seed));
    int64_t *pick = qw_malloc((size_t)(k > 0 ? k : 1) * sizeof *pick);
    for (int i = 0; i < n; i++) {
        qw_buf b = {0};
        if (items[i].it.description) qw_buf_adds(&b, items[i].it.description);
        if (o_num_fewshot > 0) {
            qw_pyrand_sample(&r, nfs, k, pick);
            for (int j = 0, used = 0; j < k && used < o_num_fewshot; j++) {
                if (same && pick[j] == i) continue;
                qw_mc_item_example(&fs[pick[j]].it, o_delim ? o_delim : " ", &b);
                qw_buf_adds(&b, "\n\n");
                used++;
            }
        }
        pre[i] = (char *)qw_buf_cstr(&b);
    }
    free(pick);
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
    add_metric(t, "acc", m, se, 1);
    if (qw_mc_format_has_norm(f)) {
        qw_eval_mean_stderr(accn, n, &m, &se);
        add_metric(t, "acc_norm", m, se, 1);
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

static const qw_cmd cmds[] = {
    { "forward", cmd_forward, "--model DIR --input IN.safetensors --output OUT.safetensors [--grads] [options]",
      "one forward (and backward) pass, dumped for parity checks (fp32 unless --precision bf16)", forward_opts },
    { "bench", cmd_bench, "--config FILE [--seq-len T] [--batch B] [--steps N] [options]",
      "time forward+backward steps with random weights, against the backend's GEMM rate", bench_opts },
    { "ppl", cmd_ppl, "--model DIR [--max-length N] [--jsonl [--field NAME]] [options] [FILE...]",
      "perplexity of documents: word, byte and token perplexity, bits per byte (lm-eval's rolling windows)", ppl_opts },
    { "mc", cmd_mc, "--model DIR --tasks FILE.jsonl [--format NAME] [--num-fewshot N [--fewshot-file F]] [options]",
      "multiple-choice accuracy: acc and acc_norm with standard errors, as lm-eval scores them", mc_opts },
    { "plot", cmd_plot, "METRICS.jsonl... -o OUT.svg [--png OUT.png] [--keys K1,K2,...] [options]",
      "draw training metrics (qw-metrics(5)) as SVG and PNG: a panel per key, step on x, runs overlaid", plot_opts },
    { 0 },
};

static const qw_cmd_prog prog = {
    "qw-eval",
    "Evaluate a Qwen3 model: dump one forward (and backward) pass, time training steps, measure perplexity\n"
    "and multiple-choice accuracy as lm-evaluation-harness does, or plot training metrics.",
    cmds,
};

int main(int argc, char **argv)
{
    qw_set_prog(argv[0]);
    if (argc > 1 && !strcmp(argv[1], "mc")) qw_common_opts.seed = 1234;   /* lm-eval's few-shot seed */
    int rc = qw_cmd_main(&prog, argc, argv);
    qw_close_stdout();
    return rc;
}
