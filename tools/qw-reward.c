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
#include "qw/score.h"
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

/* ---- verifiers named by --verifier (qw/score.h) ---- */

static qw_scorer sc;
#define uses sc.uses

/* ---- records ---- */

typedef struct {
    long line;                /* from 1 */
    const char *text;         /* the line as read (into the input buffer), without its newline */
    size_t len;
    cJSON *rec;
    const char *completion;
    qw_score score;
} item;

static const char *src_name(const char *path) { return path && strcmp(path, "-") ? path : "<stdin>"; }

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
        if (qw_scorer_check(&sc, rec, where, &it->completion)) qw_die_last();
    }
    *n_items = n;
    return v;
}

/* ---- scoring: math, think and code by the workers; cmd in order by the main thread ---- */

#define sbx sc.sandbox
static item *items;
static long n_items, next_item;
static char *done_flags;
static volatile int stop_all;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static int cancelled(void) { return stop_all || qw_signals_stop(); }

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        long i = cancelled() ? n_items : next_item++;
        pthread_mutex_unlock(&mu);
        if (i >= n_items) break;
        item *it = &items[i];
        if (qw_score_local(&sc, it->rec, it->completion, &it->score)) qw_die_last();
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
    return qw_score_cmd(cp, it->text, it->len, timeout, where, &it->score);
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
    if (qw_scorer_parse(o_verifier, &sc)) qw_usage_error("%s", qw_error_msg());
    sc.answer_field = o_answer_field;
    if (uses[QW_VER_MODEL])
        qw_usage_error("--verifier model: the reward model is not built yet (it needs the trainer; 'qw-reward train' is planned)");
    if (o_model) qw_usage_error("--model is for --verifier model, which is not built yet");
    if (uses[QW_VER_CMD] && !o_cmd) qw_usage_error("--verifier cmd needs --cmd \"PROG ARGS\"");
    if (o_cmd && !uses[QW_VER_CMD]) qw_usage_error("--cmd is for --verifier cmd");
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

    if (uses[QW_VER_CODE]) {
        qw_sandbox_mode mode;
        if (qw_sandbox_probe(want, o_python, &mode)) qw_die_last();
        if (!qw_common_opts.quiet) fprintf(stderr, "%s: code runs in a sandbox: %s\n", qw_prog, qw_sandbox_mode_name(mode));
    }
    if (o_timeout > 0) sbx.wall_s = sbx.cpu_s = o_timeout;
    sbx.mem_bytes = (size_t)o_memory;
    sbx.procs = o_max_procs;
    sbx.out_cap = (size_t)o_max_output;
    sbx.cancelled = cancelled;
    qw_coproc *cp = NULL;
    if (uses[QW_VER_CMD] && qw_coproc_start(o_cmd, &cp)) qw_die_last();

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
    int n_threads = uses[QW_VER_CODE] ? jobs : 1;
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
        qw_score_format(&sc, &items[i].score, items[i].rec, items[i].text, items[i].len, &b);
        if (fwrite(b.p, 1, b.n, out) != b.n) qw_die(QW_EXIT_FAIL, "write error on the output");
        if (!af.f) fflush(out);
        qw_buf_free(&b);
        sum += qw_score_total(&sc, &items[i].score);
        if (uses[QW_VER_CODE]) verdicts[items[i].score.code.verdict]++;
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
        if (uses[QW_VER_CODE])
            fprintf(stderr, " (passed %ld, failed %ld, timeout %ld, error %ld)", verdicts[0], verdicts[1], verdicts[2],
                    verdicts[3]);
        fputc('\n', stderr);
    }
    if (verdicts[QW_CODE_ERROR]) qw_warn("%ld programs could not be started in the sandbox (verdict \"error\")", verdicts[3]);
    for (long i = 0; i < n_items; i++) {
        cJSON_Delete(items[i].rec);
        qw_score_free(&items[i].score);
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
