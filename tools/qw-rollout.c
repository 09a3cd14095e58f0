/* qw-rollout — sample completions of prompts from a model (qw-rollout(1),
 * formats in qw-rollout(5)); the engine is libcore's (qw/infer.h). */
#include <errno.h>
#include <limits.h>
#include <sys/stat.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "qw/backend.h"
#include "qw/buf.h"
#include "qw/chat.h"
#include "qw/cli.h"
#include "qw/config.h"
#include "qw/file.h"
#include "qw/infer.h"
#include "qw/params.h"
#include "qw/rollout.h"
#include "qw/signals.h"
#include "qw/st.h"
#include "qw/tok.h"
#include "qw/tokenize.h"

static const char *o_model, *o_prompts, *o_out, *o_tokenizer, *o_thinking;
static int o_n = 1, o_max_new = 256, o_top_k = 0, o_chat, o_budget = -1, o_max_batch = 64, o_resume, o_ignore_eos, o_deterministic;
static long long o_cache_tokens;
static double o_temperature = 1, o_top_p = 1;
static qw_strlist o_stop;

static const qw_opt opts[] = {
    { "model", 'm', QW_OPT_STR, &o_model, "DIR", "model directory: config.json, safetensors, tokenizer.json" },
    { "prompts", 'p', QW_OPT_STR, &o_prompts, "FILE", "prompts, one JSON record a line (- for stdin; qw-rollout(5))" },
    { "output", 'o', QW_OPT_STR, &o_out, "FILE", "write the rollouts here, atomically (default: stdout)" },
    { "samples", 'n', QW_OPT_INT, &o_n, "N", "samples per prompt (default 1)" },
    { "max-new-tokens", 0, QW_OPT_INT, &o_max_new, "M", "tokens per completion at most (default 256)" },
    { "temperature", 0, QW_OPT_DOUBLE, &o_temperature, "X", "sampling temperature; 0 is greedy (default 1)" },
    { "top-k", 0, QW_OPT_INT, &o_top_k, "K", "sample from the K most likely tokens (default 0: all)" },
    { "top-p", 0, QW_OPT_DOUBLE, &o_top_p, "P", "nucleus: the most likely tokens of mass P (default 1: all)" },
    { "stop", 0, QW_OPT_LIST, &o_stop, "STR", "end a completion at this text (repeatable)" },
    { "ignore-eos", 0, QW_OPT_FLAG, &o_ignore_eos, NULL, "do not stop at the model's EOS ids (benchmarks)" },
    { "chat", 0, QW_OPT_FLAG, &o_chat, NULL, "records hold messages: render them with the chat template" },
    { "thinking", 0, QW_OPT_STR, &o_thinking, "on|off", "--chat: enable_thinking of the template (default on)" },
    { "thinking-budget", 0, QW_OPT_INT, &o_budget, "N", "end the thinking after N tokens (Qwen3's early-stop text)" },
    { "tokenizer", 't', QW_OPT_STR, &o_tokenizer, "FILE", "tokenizer.json or its directory (default: the model's)" },
    { "max-batch", 0, QW_OPT_INT, &o_max_batch, "N", "sequences decoded at once (default 64)" },
    { "cache-tokens", 0, QW_OPT_LONG, &o_cache_tokens, "N", "K/V cache size in tokens (default: enough for max-batch)" },
    { "resume", 0, QW_OPT_FLAG, &o_resume, NULL, "keep the prompts already complete in -o FILE, do the rest" },
    { "deterministic", 0, QW_OPT_FLAG, &o_deterministic, NULL, "results that do not depend on --max-batch or the other prompts" },
    QW_COMMON_BEGIN, QW_COMMON_DEVICE, QW_COMMON_THREADS, QW_COMMON_SEED, QW_COMMON_QUIET, QW_COMMON_END,
    { 0 },
};

static const qw_prog_info info = {
    "qw-rollout",
    "--model DIR --prompts FILE.jsonl [-o OUT.jsonl] [-n N] [--max-new-tokens M] [--temperature X] "
    "[--top-k K] [--top-p P] [--seed S] [--stop STR]... [--chat] [--thinking on|off] [--thinking-budget N] "
    "[--device cpu|cuda] [options]",
    "Sample completions of prompts from a Qwen3 model: prompts JSONL in, one rollout record per sample out.",
    opts,
};

typedef qw_prompt_rec item;   /* one input record */

static const char *src_name(void) { return strcmp(o_prompts, "-") ? o_prompts : "<stdin>"; }


/* ---- output ---- */

typedef struct {
    item *items;
    long n_items, first;      /* items[first …] are generated (earlier ones were kept by --resume) */
    FILE *f;
    qw_afile af;              /* a regular -o FILE: written as FILE.tmp, renamed when done */
    int to_file;              /* -o given (af.f set when through af) */
    const qw_tok *tok;
    char **text;              /* per generated prompt: its records, until their turn */
    long next;                /* the next prompt to write (index into the generated ones) */
    long long written, gen_tokens;
    qw_progress pr;
    double t0;
} out_state;

static int on_done(void *ctx, int prompt, const qw_completion *c)
{
    out_state *o = ctx;
    qw_buf b = {0};
    for (int j = 0; j < o_n; j++) {
        const item *it = &o->items[o->first + prompt];
        if (qw_rollout_record(&b, it->line, j, it->prompt, it->ids.v, it->ids.n, o->tok, &c[j], it->rec)) return QW_EXIT_DATA;
        o->gen_tokens += c[j].n;
    }
    o->text[prompt] = (char *)qw_buf_cstr(&b);
    while (o->next < o->n_items - o->first && o->text[o->next]) {
        if (fputs(o->text[o->next], o->f) == EOF) return qw_error(QW_EXIT_FAIL, "write error on the output");
        if (!o->to_file) fflush(o->f);
        free(o->text[o->next]);
        o->text[o->next] = NULL;
        o->next++;
        o->written++;
    }
    return 0;
}

static int on_step(void *ctx, const qw_gen_stats *s)
{
    out_state *o = ctx;
    char a[16], r[16];
    double dt = qw_now() - o->t0;
    qw_progress_update(&o->pr, (double)s->prompts_done, (double)(o->n_items - o->first),
                       "%s/%ld prompts, %d running, %s tok/s", qw_human((double)s->prompts_done, a),
                       o->n_items - o->first, s->running, qw_human(dt > 0 ? s->generated_tokens / dt : 0, r));
    int sig = qw_signals_stop();
    return sig ? qw_signals_status(sig) : 0;
}

/* --resume: the prompts complete in the existing output (its first records,
 * in input order then sample order), copied to the new one; what follows
 * them (a partial record, a prompt with fewer than n samples) is cut. */
static long resume_prefix(const item *items, long n_items, FILE *dst)
{
    qw_buf b = {0};
    int found = 0;
    if (qw_read_file(o_out, &b, &found)) qw_die_last();
    long done = 0;
    size_t at = 0, keep = 0;
    int j = 0;
    while (at < b.n && done < n_items) {
        const char *s = b.p + at, *nl = memchr(s, '\n', b.n - at);
        if (!nl) break;   /* a partial last record */
        cJSON *r = cJSON_ParseWithLength(s, (size_t)(nl - s));
        cJSON *idx = r ? cJSON_GetObjectItemCaseSensitive(r, "idx") : NULL, *sm = r ? cJSON_GetObjectItemCaseSensitive(r, "sample") : NULL;
        int ok = cJSON_IsNumber(idx) && cJSON_IsNumber(sm) && (long)idx->valuedouble == items[done].line &&
                 (int)sm->valuedouble == j;
        cJSON_Delete(r);
        if (!ok) break;
        at = (size_t)(nl - b.p) + 1;
        if (++j == o_n) j = 0, done++, keep = at;
    }
    if (keep && fwrite(b.p, 1, keep, dst) != keep) qw_die(QW_EXIT_FAIL, "write error on '%s'", o_out);
    qw_buf_free(&b);
    return done;
}

int main(int argc, char **argv)
{
    qw_set_prog(argv[0]);
    if (argc == 1) {
        qw_print_help(&info, stderr);
        exit(QW_EXIT_USAGE);
    }
    int first = qw_parse_args(&info, argc, argv);
    if (first < argc) qw_usage_error("unexpected argument '%s'", argv[first]);
    if (!o_model || !o_prompts) qw_usage_error("give --model and --prompts");
    if (o_n < 1) qw_usage_error("-n: %d samples per prompt; need at least 1", o_n);
    if (o_max_new < 1) qw_usage_error("--max-new-tokens: need at least 1");
    if (!(o_temperature >= 0) || !isfinite(o_temperature)) qw_usage_error("--temperature: need a finite value >= 0");
    if (o_top_k < 0) qw_usage_error("--top-k: need K >= 0");
    if (!(o_top_p > 0 && o_top_p <= 1)) qw_usage_error("--top-p: need 0 < P <= 1");
    if (o_max_batch < 1) qw_usage_error("--max-batch: need at least 1");
    if (o_cache_tokens < 0) qw_usage_error("--cache-tokens: need N >= 0");
    if (o_thinking && strcmp(o_thinking, "on") && strcmp(o_thinking, "off")) qw_usage_error("--thinking: '%s' is not on or off", o_thinking);
    if (o_thinking && !o_chat) qw_usage_error("--thinking needs --chat");
    if (o_budget < -1) qw_usage_error("--thinking-budget: need N >= 0");
    for (int i = 0; i < o_stop.n; i++) if (!o_stop.items[i][0]) qw_usage_error("--stop: an empty string");
    if (o_resume && !o_out) qw_usage_error("--resume needs -o FILE");

    const qw_ops *ops;
    if (qw_backend_select(qw_common_opts.device ? qw_common_opts.device : "cpu", NULL, qw_common_opts.threads, o_deterministic, &ops))
        qw_die_last();
    qw_config cfg;
    if (qw_config_load(o_model, &cfg)) qw_die_last();

    /* the tokenizer: --tokenizer, else the model directory's when it has one */
    qw_tok *tok = NULL;
    char *tok_path = qw_tok_path(o_tokenizer ? o_tokenizer : o_model, NULL);
    FILE *probe = o_tokenizer ? NULL : fopen(tok_path, "r");
    if (o_tokenizer || probe) {
        if (probe) fclose(probe);
        if (qw_tok_load(tok_path, &tok)) qw_die_last();
        if (qw_tok_vocab_size(tok) > cfg.vocab_size)
            qw_die(QW_EXIT_DATA, "'%s': the tokenizer has %d tokens, more than the model's vocabulary (%d in '%s'): "
                   "not this model's tokenizer", tok_path, qw_tok_vocab_size(tok), cfg.vocab_size, o_model);
    }
    if (!tok && (o_chat || o_stop.n || o_budget >= 0))
        qw_usage_error("--chat, --stop and --thinking-budget need a tokenizer: '%s' has none (give --tokenizer)", o_model);

    qw_buf in = {0};
    if (qw_read_input(o_prompts, &in)) qw_die_last();
    long n_items;
    int max_context = cfg.max_position_embeddings;
    qw_prompt_opts po = { .src = src_name(), .tok = tok, .chat = o_chat, .thinking_off = o_thinking && !strcmp(o_thinking, "off"),
                          .vocab_size = cfg.vocab_size, .max_context = max_context };
    item *items;
    if (qw_prompts_read(&in, &po, &items, &n_items)) qw_die_last();
    qw_buf_free(&in);
    qw_ids stop_ids = {0};
    if (!o_ignore_eos && qw_rollout_eos_ids(o_model, &cfg, &stop_ids)) qw_die_last();

    out_state os = { .items = items, .n_items = n_items, .tok = tok, .f = stdout };
    if (o_out) {   /* a regular file (or a new one) appears only when complete; devices and pipes directly */
        struct stat sb;
        int regular = stat(o_out, &sb) != 0 || S_ISREG(sb.st_mode);
        if (o_resume && !regular) qw_usage_error("--resume: '%s' is not a regular file", o_out);
        if (regular) {
            if (qw_afile_open(o_out, &os.af)) qw_die_last();
            os.f = os.af.f;
        } else if (!(os.f = fopen(o_out, "w"))) {
            qw_die(QW_EXIT_FAIL, "'%s': %s", o_out, strerror(errno));
        }
        os.to_file = 1;
    }
    if (o_resume) os.first = resume_prefix(items, n_items, os.f);

    qw_params P;
    qw_st *st;
    if (qw_params_init(&P, &cfg) || qw_st_open(o_model, &st) || qw_params_load(&P, st, 0)) qw_die_last();
    qw_st_close(st);
    if (qw_params_to_device(&P, ops)) qw_die_last();

    long todo = n_items - os.first;
    qw_gen_prompt *pr = qw_calloc(todo ? todo : 1, sizeof *pr);
    size_t longest = 1;
    for (long i = 0; i < todo; i++) {
        item *it = &items[os.first + i];
        pr[i] = (qw_gen_prompt){ it->ids.v, (int)it->ids.n, (uint64_t)it->line };
        if (it->ids.n > longest) longest = it->ids.n;
    }
    long long per_seq = (long long)longest + o_max_new;
    if (per_seq > max_context) per_seq = max_context;
    /* the engine's context: what the longest record can use (block tables sized to it, not to the model's) */
    qw_engine_opts eo = { .max_batch = o_max_batch, .max_context = (int)per_seq, .batch_invariant = o_deterministic,
                          .cache_tokens = o_cache_tokens ? o_cache_tokens : (long long)o_max_batch * (per_seq + 16) };
    qw_engine *e;
    if (qw_engine_new(ops, &P, &eo, &e)) qw_die_last();
    qw_gen_opts g = { .n = o_n, .max_new_tokens = o_max_new, .temperature = o_temperature, .top_k = o_top_k,
                      .top_p = o_top_p, .seed = (uint64_t)qw_common_opts.seed, .stop_ids = stop_ids.v,
                      .n_stop_ids = (int)stop_ids.n, .stop = o_stop.items, .n_stop = o_stop.n,
                      .thinking_budget = o_budget, .tok = tok };
    os.text = qw_calloc(todo ? todo : 1, sizeof *os.text);
    qw_signals_install();
    qw_progress_init(&os.pr);
    os.t0 = qw_now();
    int rc = qw_engine_generate(e, pr, (int)todo, &g, on_done, on_step, &os);
    qw_progress_end(&os.pr);
    double dt = qw_now() - os.t0;
    int stopped = rc > 128;
    if (rc && !stopped) {
        if (os.af.f) qw_afile_abort(&os.af);
        qw_die_last();
    }
    if (os.af.f) {
        if (qw_afile_commit(&os.af)) qw_die_last();
    } else if (os.to_file) {
        int bad = fflush(os.f) != 0 || ferror(os.f);
        if (fclose(os.f) != 0) bad = 1;
        if (bad) qw_die(QW_EXIT_FAIL, "write error on '%s'", o_out);
    }
    if (!qw_common_opts.quiet)
        fprintf(stderr, "%s: %ld prompts × %d samples, %lld tokens generated in %.2f s (%.1f tok/s)%s\n", qw_prog,
                os.next, o_n, os.gen_tokens, dt, dt > 0 ? os.gen_tokens / dt : 0, o_resume && os.first ? ", resumed" : "");
    if (stopped)
        qw_warn("stopped by a signal: %ld of %ld prompts are written%s", os.first + os.next, n_items,
                o_out ? "; continue with --resume" : "");
    qw_engine_free(e);
    qw_params_free(&P);
    qw_prompts_free(items, n_items);
    for (long i = 0; i < todo; i++) free(os.text[i]);
    free(pr); free(os.text); free(tok_path); free(o_stop.items);
    qw_ids_free(&stop_ids);
    qw_tok_free(tok);
    if (stopped) { fflush(stdout); exit(rc); }
    qw_close_stdout();
    return 0;
}
