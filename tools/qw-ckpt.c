/* qw-ckpt — inspect, export and verify Hugging Face model directories (qw-ckpt(1)). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qw/buf.h"
#include "qw/ckpt.h"
#include "qw/cli.h"
#include "qw/file.h"
#include "qw/config.h"
#include "qw/params.h"
#include "qw/st.h"

static const char *out_dir, *dtype_name;

static const qw_opt export_opts[] = {
    {"output", 'o', QW_OPT_STR, &out_dir, "DIR", "write the model directory DIR"},
    {"dtype", 0, QW_OPT_STR, &dtype_name, "bf16|f32", "weight dtype (default bf16)"},
    QW_COMMON_BEGIN, QW_COMMON_THREADS, QW_COMMON_END,
    {0},
};
static const qw_opt inspect_opts[] = { QW_COMMON_BEGIN, QW_COMMON_END, {0} };
static const qw_opt verify_opts[] = { QW_COMMON_BEGIN, QW_COMMON_THREADS, QW_COMMON_QUIET, QW_COMMON_END, {0} };

/* The one operand: a model directory, or a training output directory
 * whose 'latest' names a checkpoint. */
static char *model_dir(const char *cmd, int argc, char **argv)
{
    if (argc != 1) qw_usage_error("%s: expected one model DIR", cmd);
    char *dir;
    if (qw_ckpt_model_dir(argv[0], &dir)) qw_die_last();
    return dir;
}

static void open_model(const char *dir, qw_config *c, qw_st **st)
{
    if (qw_config_load(dir, c) || qw_st_open(dir, st)) qw_die_last();
}

static void layer_list(const qw_config *c, int moe, char *buf, size_t cap)
{
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < c->num_hidden_layers && k < cap; i++)
        if (qw_config_layer_is_moe(c, i) == moe) k += snprintf(buf + k, cap - k, "%s%d", k ? "," : "", i);
    if (!k) snprintf(buf, cap, "none");
}

static int inspect(int argc, char **argv)
{
    char *dir = model_dir("inspect", argc, argv);
    qw_config c;
    qw_st *st;
    open_model(dir, &c, &st);
    int64_t total, active, in_files = 0;
    size_t bytes = 0;
    int count[QW_DT_COUNT] = {0}, width = 4;
    qw_config_param_counts(&c, &total, &active);
    for (int i = 0; i < qw_st_count(st); i++) {
        const qw_st_tensor *t = qw_st_at(st, i);
        in_files += t->numel;
        bytes += t->nbytes;
        count[t->dtype]++;
        if ((int)strlen(t->name) > width) width = (int)strlen(t->name);
    }
    printf("model_type: %s\n", c.model_type);
    printf("vocab_size: %d\nhidden_size: %d\nlayers: %d\n", c.vocab_size, c.hidden_size, c.num_hidden_layers);
    printf("attention: %d heads, %d kv heads, head_dim %d\n", c.num_attention_heads, c.num_key_value_heads, c.head_dim);
    if (c.rope_type == QW_ROPE_YARN)
        printf("rope: theta %.10g, yarn factor %g over %d positions\n", c.rope_theta, c.rope_factor,
               c.rope_original_max_position);
    else
        printf("rope: theta %.10g\n", c.rope_theta);
    printf("max_position_embeddings: %d\ntied_embeddings: %s\n", c.max_position_embeddings,
           c.tie_word_embeddings ? "yes" : "no");
    if (c.score_head)
        printf("head: score [1, %d] (a reward model: Qwen3ForSequenceClassification, pooled at the last token that is "
               "not pad_token_id %d)\n", c.hidden_size, c.pad_token_id);
    else
        printf("head: lm_head [%d, %d]%s\n", c.vocab_size, c.hidden_size, c.tie_word_embeddings ? " (the embedding)" : "");
    char list[4096];
    if (c.arch == QW_ARCH_MOE) {
        printf("experts: %d, top-%d, width %d, norm_topk_prob %s, aux_loss_coef %g\n", c.num_experts,
               c.num_experts_per_tok, c.moe_intermediate_size, c.norm_topk_prob ? "yes" : "no", c.router_aux_loss_coef);
        layer_list(&c, 1, list, sizeof list);
        printf("moe_layers: %s\n", list);
        layer_list(&c, 0, list, sizeof list);
        printf("dense_layers: %s (width %d)\n", list, c.intermediate_size);
    } else {
        printf("mlp_width: %d\n", c.intermediate_size);
    }
    if (c.torch_dtype[0]) printf("torch_dtype: %s\n", c.torch_dtype);
    printf("parameters: %lld total, %lld active\n", (long long)total, (long long)active);
    printf("tensors: %d, %lld values, %zu bytes;", qw_st_count(st), (long long)in_files, bytes);
    for (int d = 0; d < QW_DT_COUNT; d++)
        if (count[d]) printf(" %s %d", qw_dtype_name((qw_dtype)d), count[d]);
    printf("\n\n");
    for (int i = 0; i < qw_st_count(st); i++) {
        const qw_st_tensor *t = qw_st_at(st, i);
        char s[160];
        qw_shape_str(t->ndim, t->shape, s, sizeof s);
        printf("%-*s  %-7s %s\n", width, t->name, qw_dtype_name(t->dtype), s);
    }
    qw_st_close(st);
    free(dir);
    return 0;
}

static int verify(int argc, char **argv)
{
    char *dir = model_dir("verify", argc, argv);
    qw_config c;
    qw_st *st;
    open_model(dir, &c, &st);
    if (qw_params_check(&c, st, 0)) qw_die_last();
    enum { CHUNK = 1 << 20 };
    float *buf = qw_malloc(CHUNK * sizeof *buf);
    int64_t values = 0;
    qw_progress prog;
    qw_progress_init(&prog);
    for (int i = 0; i < qw_st_count(st); i++) {
        const qw_st_tensor *t = qw_st_at(st, i);
        for (int64_t off = 0; off < t->numel; off += CHUNK) {
            int64_t n = t->numel - off < CHUNK ? t->numel - off : CHUNK;
            qw_st_to_f32_range(t, off, n, buf);
            for (int64_t j = 0; j < n; j++) {
                if (isfinite(buf[j])) continue;
                int64_t flat = off + j, idx[QW_ST_MAX_DIMS], rest = flat;
                for (int d = t->ndim - 1; d >= 0; d--) {
                    idx[d] = t->shape[d] ? rest % t->shape[d] : 0;
                    rest = t->shape[d] ? rest / t->shape[d] : 0;
                }
                char s[160];
                qw_shape_str(t->ndim, idx, s, sizeof s);
                qw_progress_end(&prog);
                qw_die(QW_EXIT_DATA, "'%s': tensor '%s': element %lld %s is %s", t->file, t->name, (long long)flat, s,
                       isnan(buf[j]) ? "nan" : "inf");
            }
            values += n;
            char h[16];
            qw_progress_update(&prog, (double)i, (double)qw_st_count(st), "%s values", qw_human((double)values, h));
        }
    }
    qw_progress_end(&prog);
    free(buf);
    printf("%s: ok: %d tensors, %lld values, all finite\n", dir, qw_st_count(st), (long long)values);
    qw_st_close(st);
    free(dir);
    return 0;
}

static int export(int argc, char **argv)
{
    if (!out_dir) qw_usage_error("export: -o/--output OUT is required");
    qw_dtype dt = QW_DT_BF16;
    if (dtype_name && !strcmp(dtype_name, "f32")) dt = QW_DT_F32;
    else if (dtype_name && strcmp(dtype_name, "bf16")) qw_usage_error("--dtype: '%s' is not bf16 or f32", dtype_name);
    char *dir = model_dir("export", argc, argv);
    qw_config c;
    qw_st *st;
    open_model(dir, &c, &st);
    qw_params P;
    if (qw_params_init(&P, &c) || qw_params_load(&P, st, 0)) qw_die_last();
    qw_st_close(st);
    if (qw_params_save(&P, out_dir, dt)) qw_die_last();
    qw_params_free(&P);
    for (int i = 0; qw_ckpt_tokenizer_files[i]; i++) {
        char *src = qw_path_join(dir, qw_ckpt_tokenizer_files[i]), *dst = qw_path_join(out_dir, qw_ckpt_tokenizer_files[i]);
        qw_buf b = {0};
        int found;
        if (qw_read_file(src, &b, &found) || (found && qw_write_file_atomic(dst, b.p, b.n))) qw_die_last();
        qw_buf_free(&b);
        free(src);
        free(dst);
    }
    free(dir);
    return 0;
}

static const qw_cmd cmds[] = {
    {"inspect", inspect, "DIR [options]", "print the config summary and the tensor list", inspect_opts},
    {"export", export, "DIR -o OUT [--dtype bf16|f32] [options]",
     "write a clean Hub directory: weights in one dtype, config.json, tokenizer files", export_opts},
    {"verify", verify, "DIR [options]", "check every tensor against the config and that every value is finite", verify_opts},
    {0},
};

static const qw_cmd_prog prog = {
    "qw-ckpt",
    "Inspect, export or verify a Hugging Face model directory (config.json + safetensors).\n"
    "DIR may also be a training output directory whose 'latest' names a checkpoint.",
    cmds,
};

int main(int argc, char **argv)
{
    qw_set_prog(argv[0]);
    int rc = qw_cmd_main(&prog, argc, argv);
    qw_close_stdout();
    return rc;
}
