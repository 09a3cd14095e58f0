/* qw-eval — evaluate a model (qw-eval(1)).
 *
 *   qw-eval forward   one forward (and backward) pass (fp32 unless
 *                     --precision bf16); dumps logits, loss, aux_loss and
 *                     gradients for parity checks
 *   qw-eval bench     forward+backward throughput with random weights,
 *                     against the backend's own GEMM rate, and the peak
 *                     device memory
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qw/backend.h"
#include "qw/cli.h"
#include "qw/config.h"
#include "qw/model.h"
#include "qw/ops.h"
#include "qw/params.h"
#include "qw/size.h"
#include "qw/st.h"

static const char *o_model, *o_input, *o_output, *o_config, *o_precision;
static int o_grads, o_seq = -1, o_batch = -1, o_steps = -1, o_deterministic;

/* options of every command that computes */
#define COMPUTE_OPTS \
    { "precision", 0, QW_OPT_STR, &o_precision, "fp32|bf16", "activation precision (default: fp32 for forward; bench: bf16 on cuda)" }, \
    { "deterministic", 0, QW_OPT_FLAG, &o_deterministic, NULL, "bit-identical results run to run (may be slower on cuda)" }

static const qw_opt forward_opts[] = {
    { "model", 'm', QW_OPT_STR, &o_model, "DIR", "model directory: config.json and safetensors" },
    { "input", 'i', QW_OPT_STR, &o_input, "FILE", "safetensors file holding input_ids (I64 or I32, [B,T])" },
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

/* input_ids [B,T] as int32, validated against the vocabulary. */
static int32_t *read_ids(const char *path, int V, int *B, int *T)
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
    qw_st_close(in);
    return ids;
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
    int32_t *ids = read_ids(o_input, V, &B, &T);

    qw_model *m;
    qw_model_out out;
    size_t lbytes;
    uint64_t mem = qw_phys_mem_bytes();
    if (qw_mul_size((size_t)B * T, (size_t)V * sizeof(float), &lbytes) || (mem && lbytes > mem))
        qw_die(QW_EXIT_DATA, "'%s': %d × %d tokens of logits over %d words need more bytes than the machine's memory (%llu)",
               o_input, B, T, V, (unsigned long long)mem);
    float *logits = qw_malloc(lbytes);
    if (qw_model_new(ops, &P, B, T, NULL, &m) || qw_model_forward(m, &(qw_batch){.ids = ids}, logits, NULL, &out))
        qw_die_last();
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
    free(ids);
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

static const qw_cmd cmds[] = {
    { "forward", cmd_forward, "--model DIR --input IN.safetensors --output OUT.safetensors [--grads] [options]",
      "one forward (and backward) pass, dumped for parity checks (fp32 unless --precision bf16)", forward_opts },
    { "bench", cmd_bench, "--config FILE [--seq-len T] [--batch B] [--steps N] [options]",
      "time forward+backward steps with random weights, against the backend's GEMM rate", bench_opts },
    { 0 },
};

static const qw_cmd_prog prog = {
    "qw-eval",
    "Evaluate a Qwen3 model: dump one forward (and backward) pass, or time training steps.",
    cmds,
};

int main(int argc, char **argv)
{
    qw_set_prog(argv[0]);
    int rc = qw_cmd_main(&prog, argc, argv);
    qw_close_stdout();
    return rc;
}
