/* qw-reward — score completions: records in, the same records out with
 * `reward` added (qw-reward(1), qw-reward(5)); the verifiers are
 * libcore's (qw/reward.h, qw/sandbox.h). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "qw/buf.h"
#include "qw/chat.h"
#include "qw/cli.h"
#include "qw/file.h"
#include "qw/reward.h"
#include "qw/sandbox.h"
#include "qw/signals.h"

static const char *o_verifier, *o_answer_field = "answer", *o_model, *o_cmd, *o_out, *o_sandbox, *o_python;
static int o_jobs, o_max_procs = 64;
static double o_timeout = -1;
static long long o_memory = 1LL << 30, o_max_output = 16 << 10;

static const qw_opt opts[] = {
    { "verifier", 0, QW_OPT_STR, &o_verifier, "V", "math, think, code, model or cmd; several as NAME:WEIGHT,… (weighted sum)" },
    { "answer-field", 0, QW_OPT_STR, &o_answer_field, "NAME", "math: the field of the gold answer (default answer)" },
    { "model", 0, QW_OPT_STR, &o_model, "DIR", "model: the reward model's directory (not built yet)" },
    { "cmd", 0, QW_OPT_STR, &o_cmd, "\"PROG ARGS\"", "cmd: the reward program, run by /bin/sh -c, one JSON line in and out per record" },
    { "output", 'o', QW_OPT_STR, &o_out, "OUT", "write the records here, atomically (default: stdout)" },
    { "jobs", 'j', QW_OPT_INT, &o_jobs, "N", "code: programs run at once (default: the cores)" },
    { "timeout", 0, QW_OPT_DOUBLE, &o_timeout, "S", "code: wall and CPU seconds per program (default 10); cmd: per reply (default 60)" },
    { "memory", 0, QW_OPT_LONG, &o_memory, "BYTES", "code: address space per process (default 1G)" },
    { "max-procs", 0, QW_OPT_INT, &o_max_procs, "N", "code: processes a program may have at once (default 64)" },
    { "max-output", 0, QW_OPT_LONG, &o_max_output, "BYTES", "code: output kept per program (default 16k; the rest is counted)" },
    { "sandbox", 0, QW_OPT_STR, &o_sandbox, "auto|namespaces|rlimits", "code: the isolation (default auto: namespaces when the kernel allows)" },
    { "python", 0, QW_OPT_STR, &o_python, "FILE", "code: the interpreter (default /usr/bin/python3, else python3 on PATH)" },
    QW_COMMON_BEGIN, QW_COMMON_QUIET, QW_COMMON_END,
    { 0 },
};

static const qw_prog_info info = {
    "qw-reward",
    "--verifier math|think|code|model|cmd [--answer-field NAME] [--model DIR] [--cmd \"PROG ARGS\"] [-o OUT] "
    "[options] [FILE]",
    "Score completions: qw-rollout records in, the same records out with \"reward\" added.",
    opts,
};

/* ---- verifiers named by --verifier ---- */

enum { V_MATH, V_THINK, V_CODE, V_MODEL, V_CMD, N_KINDS };
static const char *const kind_names[N_KINDS] = { "math", "think", "code", "model", "cmd" };

typedef struct {
    int kind;
    double weight;
} verifier;

static verifier ver[N_KINDS];
static int n_ver, uses[N_KINDS];

static void parse_verifiers(const char *spec)
{
    char *s = qw_strdup(spec), *save = NULL;
    for (char *tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *colon = strchr(tok, ':');
        double w = 1;
        if (colon) {
            *colon = 0;
            char *end;
            w = strtod(colon + 1, &end);
            if (end == colon + 1 || *end || !isfinite(w)) qw_usage_error("--verifier: '%s' is not a weight", colon + 1);
        }
        int k = 0;
        while (k < N_KINDS && strcmp(tok, kind_names[k])) k++;
        if (k == N_KINDS) qw_usage_error("--verifier: '%s' is not math, think, code, model or cmd", tok);
        if (uses[k]) qw_usage_error("--verifier: '%s' is named twice", tok);
        uses[k] = 1;
        ver[n_ver++] = (verifier){ k, w };
    }
    free(s);
    if (!n_ver) qw_usage_error("--verifier: name at least one verifier");
}

/* ---- records ---- */

typedef struct {
    long line;                /* from 1 */
    const char *text;         /* the line as read (into the input buffer), without its newline */
    size_t len;
    cJSON *rec;
    const char *completion;
    double value[N_KINDS];
    char *extracted;          /* math: the answer found (NULL: none) */
    qw_code_result code;
    cJSON *reply;             /* cmd: the program's reply */
} item;

static const char *src_name(const char *path) { return path && strcmp(path, "-") ? path : "<stdin>"; }

static const char *str_field(cJSON *rec, const char *name, const char *where, int required)
{
    cJSON *f = cJSON_GetObjectItemCaseSensitive(rec, name);
    if (!f) {
        if (required) qw_die(QW_EXIT_DATA, "%s: no \"%s\" (needed by --verifier %s)", where, name, o_verifier);
        return NULL;
    }
    if (!cJSON_IsString(f)) qw_die(QW_EXIT_DATA, "%s: \"%s\" is not a string", where, name);
    return f->valuestring;
}

static item *read_records(const qw_buf *b, const char *path, long *n_items)
{
    item *v = NULL;
    long n = 0, cap = 0, line = 0;
    char where[4200];
    for (size_t at = 0; at < b->n;) {
        const char *s = b->p + at, *nl = memchr(s, '\n', b->n - at);
        size_t len = nl ? (size_t)(nl - s) : b->n - at;
        at += len + (nl != NULL);
        line++;
        if (len && s[len - 1] == '\r') len--;
        snprintf(where, sizeof where, "'%s': line %ld", src_name(path), line);
        cJSON *rec = qw_chat_json_parse(s, len, where);
        if (!rec) qw_die_last();
        if (!cJSON_IsObject(rec)) qw_die(QW_EXIT_DATA, "%s: not a JSON object", where);
        if (n == cap) v = qw_realloc(v, (cap = cap ? 2 * cap : 64) * sizeof *v);
        item *it = &v[n++];
        memset(it, 0, sizeof *it);
        it->line = line, it->text = s, it->len = len, it->rec = rec;
        it->completion = str_field(rec, "completion", where, uses[V_MATH] || uses[V_THINK] || uses[V_CODE]);
        if (uses[V_MATH]) {
            cJSON *g = cJSON_GetObjectItemCaseSensitive(rec, o_answer_field);
            if (!g) qw_die(QW_EXIT_DATA, "%s: no \"%s\" (the gold answer of --verifier math; see --answer-field)", where, o_answer_field);
            if (!cJSON_IsString(g) && !cJSON_IsNumber(g))
                qw_die(QW_EXIT_DATA, "%s: \"%s\" is neither a string nor a number", where, o_answer_field);
        }
        if (uses[V_CODE]) {
            str_field(rec, "prompt", where, 1);
            str_field(rec, "test", where, 1);
            str_field(rec, "entry_point", where, 1);
        }
    }
    *n_items = n;
    return v;
}

/* ---- scoring: math, think and code by the workers; cmd in order by the main thread ---- */

static qw_sandbox_opts sbx;
static item *items;
static long n_items, next_item;
static char *done_flags;
static volatile int stop_all;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static int cancelled(void) { return stop_all || qw_signals_stop(); }

static void score_math(item *it)
{
    cJSON *g = cJSON_GetObjectItemCaseSensitive(it->rec, o_answer_field);
    qw_buf gold = {0}, got = {0};
    if (cJSON_IsString(g)) qw_math_gold(g->valuestring, strlen(g->valuestring), &gold);
    else if (g->valuestring) qw_buf_adds(&gold, g->valuestring);   /* the number's literal */
    else qw_chat_float(g->valuedouble, &gold);
    qw_math_form f = qw_math_extract(it->completion, strlen(it->completion), &got);
    it->value[V_MATH] = f != QW_MATH_NONE && qw_math_equal(got.p ? got.p : "", got.n, gold.p ? gold.p : "", gold.n);
    if (f != QW_MATH_NONE) it->extracted = qw_strdup(qw_buf_cstr(&got));
    qw_buf_free(&gold);
    qw_buf_free(&got);
}

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        long i = cancelled() ? n_items : next_item++;
        pthread_mutex_unlock(&mu);
        if (i >= n_items) break;
        item *it = &items[i];
        if (uses[V_MATH]) score_math(it);
        if (uses[V_THINK]) it->value[V_THINK] = qw_think_format(it->completion);
        if (uses[V_CODE]) {
            cJSON *r = it->rec;
            if (qw_code_run(&sbx, cJSON_GetObjectItemCaseSensitive(r, "prompt")->valuestring, it->completion,
                            cJSON_GetObjectItemCaseSensitive(r, "test")->valuestring,
                            cJSON_GetObjectItemCaseSensitive(r, "entry_point")->valuestring, &it->code))
                qw_die_last();
            it->value[V_CODE] = it->code.verdict == QW_CODE_PASSED;
        }
        pthread_mutex_lock(&mu);
        done_flags[i] = 1;
        pthread_cond_broadcast(&cv);
        pthread_mutex_unlock(&mu);
    }
    return NULL;
}

/* Ask the reward program about one record; its reply must be an object with a number "reward". */
static int score_cmd(qw_coproc *cp, item *it, const char *path, double timeout)
{
    char where[4200];
    snprintf(where, sizeof where, "'%s': line %ld", src_name(path), it->line);
    qw_buf reply = {0};
    int rc = qw_coproc_ask(cp, it->text, it->len, timeout, where, &reply);
    if (rc) return rc;
    cJSON *j = qw_chat_json_parse(reply.p ? reply.p : "", reply.n, NULL);
    cJSON *r = cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "reward") : NULL;
    if (!cJSON_IsNumber(r)) {
        rc = qw_error(QW_EXIT_DATA, "%s: the reward program's reply is not a JSON object with a number \"reward\": '%.200s'",
                      where, qw_buf_cstr(&reply));
        cJSON_Delete(j);
    } else {
        it->reply = j;
        it->value[V_CMD] = r->valuedouble;
    }
    qw_buf_free(&reply);
    return rc;
}

/* ---- output: the line as read, with the new fields before its closing brace ---- */

typedef struct {
    const char *key;
    qw_buf val;
} field;

static void add_field(field *f, int *n, const char *key)
{
    f[*n].key = key;
    memset(&f[*n].val, 0, sizeof f[*n].val);
    (*n)++;
}

static void add_string(qw_buf *b, const char *s)
{
    cJSON *j = cJSON_CreateString(s);
    qw_chat_tojson(j, b);
    cJSON_Delete(j);
}

static void format_record(const item *it, qw_buf *b)
{
    field f[64];
    int nf = 0;
    double total = 0;
    for (int v = 0; v < n_ver; v++) total += ver[v].weight * it->value[ver[v].kind];
    if (n_ver == 1) total = it->value[ver[0].kind];
    add_field(f, &nf, "reward");
    qw_chat_float(total, &f[nf - 1].val);
    if (n_ver > 1) {
        add_field(f, &nf, "rewards");
        qw_buf *r = &f[nf - 1].val;
        qw_buf_addc(r, '{');
        for (int v = 0; v < n_ver; v++) {
            if (v) qw_buf_adds(r, ", ");
            add_string(r, kind_names[ver[v].kind]);
            qw_buf_adds(r, ": ");
            qw_chat_float(it->value[ver[v].kind], r);
        }
        qw_buf_addc(r, '}');
    }
    if (uses[V_MATH]) {
        add_field(f, &nf, "extracted");
        if (it->extracted) add_string(&f[nf - 1].val, it->extracted);
        else qw_buf_adds(&f[nf - 1].val, "null");
    }
    if (uses[V_CODE]) {
        add_field(f, &nf, "verdict");
        add_string(&f[nf - 1].val, qw_code_verdict_name(it->code.verdict));
        add_field(f, &nf, "output");
        add_string(&f[nf - 1].val, it->code.output ? it->code.output : "");
    }
    if (it->reply)   /* the reward program's other fields, unless ours carry the name */
        for (cJSON *x = it->reply->child; x && nf < 64; x = x->next) {
            int taken = 0;
            for (int k = 0; k < nf; k++) if (!strcmp(f[k].key, x->string)) taken = 1;
            if (taken) continue;
            add_field(f, &nf, x->string);
            qw_chat_tojson(x, &f[nf - 1].val);
        }
    int clash = 0;
    for (int k = 0; k < nf; k++) if (cJSON_GetObjectItemCaseSensitive(it->rec, f[k].key)) clash = 1;
    int first = 1;
    if (!clash) {   /* the record's own bytes, unchanged */
        size_t n = it->len;
        while (n && (it->text[n - 1] == ' ' || it->text[n - 1] == '\t' || it->text[n - 1] == '\r')) n--;
        qw_buf_add(b, it->text, n - 1);   /* without its '}' */
        first = it->rec->child == NULL;
    } else {        /* rebuilt: a field of ours replaces the record's in place, as a Python dict update does */
        qw_buf_addc(b, '{');
        for (cJSON *x = it->rec->child; x; x = x->next) {
            if (!first) qw_buf_adds(b, ", ");
            first = 0;
            add_string(b, x->string);
            qw_buf_adds(b, ": ");
            int k = 0;
            while (k < nf && (!f[k].key || strcmp(f[k].key, x->string))) k++;
            if (k < nf) {
                qw_buf_add(b, f[k].val.p, f[k].val.n);
                f[k].key = NULL;
            } else {
                qw_chat_tojson(x, b);
            }
        }
    }
    for (int k = 0; k < nf; k++) {
        if (f[k].key) {
            if (!first) qw_buf_adds(b, ", ");
            first = 0;
            add_string(b, f[k].key);
            qw_buf_adds(b, ": ");
            qw_buf_add(b, f[k].val.p, f[k].val.n);
        }
        qw_buf_free(&f[k].val);
    }
    qw_buf_adds(b, "}\n");
}

static int read_all(const char *path, qw_buf *b)
{
    if (path && strcmp(path, "-")) return qw_read_file(path, b, NULL);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) qw_buf_add(b, chunk, n);
    if (ferror(stdin)) return qw_error(QW_EXIT_FAIL, "standard input: read error");
    return 0;
}

int main(int argc, char **argv)
{
    qw_set_prog(argv[0]);
    if (argc == 1) {
        qw_print_help(&info, stderr);
        exit(QW_EXIT_USAGE);
    }
    int first = qw_parse_args(&info, argc, argv);
    if (argc - first > 1) qw_usage_error("unexpected argument '%s' (give one FILE)", argv[first + 1]);
    const char *path = first < argc ? argv[first] : NULL;
    if (!o_verifier) qw_usage_error("give --verifier");
    parse_verifiers(o_verifier);
    if (uses[V_MODEL])
        qw_usage_error("--verifier model: the reward model is not built yet (it needs the trainer; 'qw-reward train' is planned)");
    if (o_model) qw_usage_error("--model is for --verifier model, which is not built yet");
    if (uses[V_CMD] && !o_cmd) qw_usage_error("--verifier cmd needs --cmd \"PROG ARGS\"");
    if (o_cmd && !uses[V_CMD]) qw_usage_error("--cmd is for --verifier cmd");
    if (o_cmd && !o_cmd[0]) qw_usage_error("--cmd: an empty command");
    if (!o_answer_field[0]) qw_usage_error("--answer-field: an empty name");
    if (o_timeout != -1 && !(o_timeout > 0 && isfinite(o_timeout))) qw_usage_error("--timeout: need S > 0");
    if (o_jobs < 0) qw_usage_error("--jobs: need N >= 1");
    if (o_memory < (16LL << 20)) qw_usage_error("--memory: need at least 16M");
    if (o_max_procs < 1) qw_usage_error("--max-procs: need N >= 1");
    if (o_max_output < 0) qw_usage_error("--max-output: need BYTES >= 0");
    qw_sandbox_mode want = 0;
    if (o_sandbox) {
        if (!strcmp(o_sandbox, "namespaces")) want = QW_SANDBOX_NAMESPACES;
        else if (!strcmp(o_sandbox, "rlimits")) want = QW_SANDBOX_RLIMITS;
        else if (strcmp(o_sandbox, "auto")) qw_usage_error("--sandbox: '%s' is not auto, namespaces or rlimits", o_sandbox);
    }
    if (!path && isatty(STDIN_FILENO)) {
        qw_print_help(&info, stderr);
        exit(QW_EXIT_USAGE);
    }

    qw_buf in = {0};
    if (read_all(path, &in)) qw_die_last();
    items = read_records(&in, path, &n_items);

    if (uses[V_CODE]) {
        qw_sandbox_mode mode;
        if (qw_sandbox_probe(want, o_python, &mode)) qw_die_last();
        if (!qw_common_opts.quiet) fprintf(stderr, "%s: code runs in a sandbox: %s\n", qw_prog, qw_sandbox_mode_name(mode));
    }
    qw_sandbox_defaults(&sbx);
    if (o_timeout > 0) sbx.wall_s = sbx.cpu_s = o_timeout;
    sbx.mem_bytes = (size_t)o_memory;
    sbx.procs = o_max_procs;
    sbx.out_cap = (size_t)o_max_output;
    sbx.cancelled = cancelled;
    qw_coproc *cp = NULL;
    if (uses[V_CMD] && qw_coproc_start(o_cmd, &cp)) qw_die_last();

    /* output: a regular -o file appears when complete; devices and pipes directly */
    FILE *out = stdout;
    qw_afile af = { 0 };
    if (o_out) {
        struct stat sb;
        if (stat(o_out, &sb) != 0 || S_ISREG(sb.st_mode)) {
            if (qw_afile_open(o_out, &af)) qw_die_last();
            out = af.f;
        } else if (!(out = fopen(o_out, "w"))) {
            qw_die(QW_EXIT_FAIL, "'%s': %s", o_out, strerror(errno));
        }
    }

    qw_signals_install();
    done_flags = qw_calloc(n_items ? n_items : 1, 1);
    int jobs = o_jobs ? o_jobs : qw_thread_count();
    int n_threads = uses[V_CODE] ? jobs : 1;
    if (n_threads > n_items) n_threads = n_items ? (int)n_items : 1;
    pthread_t *th = qw_calloc(n_threads, sizeof *th);
    for (int t = 0; t < n_threads; t++)
        if (pthread_create(&th[t], NULL, worker, NULL)) qw_die(QW_EXIT_FAIL, "cannot start a thread");

    qw_progress pr;
    qw_progress_init(&pr);
    double t0 = qw_now(), sum = 0;
    long written = 0, verdicts[4] = { 0 };
    int rc = 0, sig = 0;
    double cmd_timeout = o_timeout > 0 ? o_timeout : 60;
    for (long i = 0; i < n_items; i++) {
        if ((sig = qw_signals_stop())) break;
        if (cp && (rc = score_cmd(cp, &items[i], path, cmd_timeout))) break;
        pthread_mutex_lock(&mu);
        while (!done_flags[i] && !qw_signals_stop()) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100000000;
            if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
            pthread_cond_timedwait(&cv, &mu, &ts);
        }
        int ready = done_flags[i];
        pthread_mutex_unlock(&mu);
        /* a record finished because the signal cancelled its program is not written */
        if (!ready || qw_signals_stop()) { sig = qw_signals_stop(); break; }
        qw_buf b = {0};
        format_record(&items[i], &b);
        if (fwrite(b.p, 1, b.n, out) != b.n) qw_die(QW_EXIT_FAIL, "write error on the output");
        if (!af.f) fflush(out);
        qw_buf_free(&b);
        double total = 0;
        for (int v = 0; v < n_ver; v++) total += ver[v].weight * items[i].value[ver[v].kind];
        sum += n_ver == 1 ? items[i].value[ver[0].kind] : total;
        if (uses[V_CODE]) verdicts[items[i].code.verdict]++;
        written++;
        char a[16];
        qw_progress_update(&pr, (double)written, (double)n_items, "%s/%ld records", qw_human((double)written, a), n_items);
    }
    qw_progress_end(&pr);
    stop_all = 1;
    for (int t = 0; t < n_threads; t++) pthread_join(th[t], NULL);
    qw_coproc_end(cp);
    if (rc) {
        if (af.f) qw_afile_abort(&af);
        qw_die_last();
    }
    if (af.f) {
        if (qw_afile_commit(&af)) qw_die_last();
    } else if (o_out) {
        int bad = fflush(out) != 0 || ferror(out);
        if (fclose(out) != 0) bad = 1;
        if (bad) qw_die(QW_EXIT_FAIL, "write error on '%s'", o_out);
    }
    if (!qw_common_opts.quiet) {
        double dt = qw_now() - t0;
        fprintf(stderr, "%s: %ld records, mean reward %.4f, %.1f s", qw_prog, written, written ? sum / written : 0.0, dt);
        if (uses[V_CODE])
            fprintf(stderr, " (passed %ld, failed %ld, timeout %ld, error %ld)", verdicts[0], verdicts[1], verdicts[2],
                    verdicts[3]);
        fputc('\n', stderr);
    }
    if (verdicts[QW_CODE_ERROR]) qw_warn("%ld programs could not be started in the sandbox (verdict \"error\")", verdicts[3]);
    for (long i = 0; i < n_items; i++) {
        cJSON_Delete(items[i].rec);
        cJSON_Delete(items[i].reply);
        free(items[i].extracted);
        qw_code_result_free(&items[i].code);
    }
    free(items);
    free(done_flags);
    free(th);
    qw_buf_free(&in);
    if (sig) {
        qw_warn("stopped by a signal: %ld of %ld records are written", written, n_items);
        fflush(stdout);
        exit(qw_signals_status(sig));
    }
    qw_close_stdout();
    return 0;
}
