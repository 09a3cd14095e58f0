/* cli.c — errors, options, progress and output checks shared by all programs. */
#include "qw/cli.h"

#include <errno.h>
#include <getopt.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *qw_prog = "qw";
qw_common qw_common_opts;
static const char *help_name;   /* "try 'X --help'": the program, or "program command" */

static _Thread_local char err_msg[1024];
static _Thread_local int err_status;

void qw_set_prog(const char *argv0)
{
    const char *slash = strrchr(argv0, '/');
    qw_prog = slash ? slash + 1 : argv0;
}

int qw_verror(int status, const char *fmt, va_list ap)
{
    char msg[sizeof err_msg];   /* the arguments may be qw_error_msg() itself */
    vsnprintf(msg, sizeof msg, fmt, ap);
    memcpy(err_msg, msg, sizeof msg);
    err_status = status;
    return status;
}

int qw_error(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qw_verror(status, fmt, ap);
    va_end(ap);
    return status;
}

const char *qw_error_msg(void) { return err_msg; }
int qw_error_status(void) { return err_status; }
void qw_error_clear(void) { err_msg[0] = 0; err_status = 0; }

void qw_warn(const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "%s: ", qw_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void qw_die(int status, const char *fmt, ...)
{
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "%s: ", qw_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(status);
}

void qw_die_last(void)
{
    qw_die(err_status ? err_status : QW_EXIT_FAIL, "%s", err_msg[0] ? err_msg : "unknown error");
}

void *qw_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) qw_die(QW_EXIT_FAIL, "out of memory (asked for %zu bytes)", n);
    return p;
}

void *qw_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) qw_die(QW_EXIT_FAIL, "out of memory (asked for %zu bytes)", n * size);
    return p;
}

void *qw_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) qw_die(QW_EXIT_FAIL, "out of memory (asked for %zu bytes)", n);
    return q;
}

char *qw_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(qw_malloc(n), s, n);
}

/* ---- options ---- */

void qw_usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", qw_prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\ntry '%s --help' for more information\n", help_name ? help_name : qw_prog);
    exit(QW_EXIT_USAGE);
}

static int is_end(const qw_opt *o) { return !o->name && o->kind != QW_OPT_HEADER; }

static void print_opt(const qw_opt *o, FILE *f)
{
    char left[96];
    int n = 0;
    if (o->short_name) n = snprintf(left, sizeof left, "  -%c, --%s", o->short_name, o->name);
    else n = snprintf(left, sizeof left, "      --%s", o->name);
    if (o->metavar && n < (int)sizeof left)
        snprintf(left + n, sizeof left - n, " %s", o->metavar);
    if (strlen(left) > 27) fprintf(f, "%s\n%28s%s\n", left, "", o->help);
    else fprintf(f, "%-28s%s\n", left, o->help);
}

static void print_opts(const qw_opt *opts, FILE *f)
{
    for (const qw_opt *o = opts; !is_end(o); o++) {
        if (o->kind == QW_OPT_HEADER) fprintf(f, "\n%s\n", o->help);
        else print_opt(o, f);
    }
}

void qw_print_help(const qw_prog_info *info, FILE *f)
{
    fprintf(f, "usage: %s %s\n", info->name, info->usage);
    if (info->summary) fprintf(f, "\n%s\n", info->summary);
    if (info->opts[0].kind != QW_OPT_HEADER) fputs("\nOptions:\n", f);
    print_opts(info->opts, f);
}

static long long parse_long(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);   /* allows 1e6 as well as suffixes */
    if (end == s || errno) qw_usage_error("--%s: '%s' is not a number", opt, s);
    switch (*end) {
    case 'k': case 'K': v *= 1024; end++; break;
    case 'M': v *= 1024.0 * 1024; end++; break;
    case 'G': v *= 1024.0 * 1024 * 1024; end++; break;
    }
    if (*end || v != (double)(long long)v) qw_usage_error("--%s: '%s' is not an integer", opt, s);
    return (long long)v;
}

int qw_parse_args(const qw_prog_info *info, int argc, char **argv)
{
    int nopt = 0;
    help_name = info->name;
    for (const qw_opt *o = info->opts; !is_end(o); o++) nopt++;
    struct option *lo = qw_calloc(nopt + 1, sizeof *lo);
    char shortopts[256];
    int ns = 0, nl = 0;
    for (int i = 0; i < nopt; i++) {
        const qw_opt *o = &info->opts[i];
        if (o->kind == QW_OPT_HEADER) continue;
        int has_arg = o->kind == QW_OPT_FLAG ? no_argument : required_argument;
        lo[nl].name = o->name;
        lo[nl].has_arg = has_arg;
        lo[nl].flag = NULL;
        lo[nl].val = 256 + i;
        nl++;
        if (o->short_name) {
            shortopts[ns++] = o->short_name;
            if (has_arg) shortopts[ns++] = ':';
        }
    }
    shortopts[ns] = 0;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, shortopts, lo, NULL)) != -1) {
        const qw_opt *o = NULL;
        if (c >= 256) o = &info->opts[c - 256];
        else if (c != '?' && c != ':') {
            for (int i = 0; i < nopt; i++)
                if (info->opts[i].kind != QW_OPT_HEADER && info->opts[i].short_name == c) o = &info->opts[i];
        }
        if (!o) {
            const char *bad = argv[optind - 1];
            if (optopt && optopt < 256) qw_usage_error("invalid option '-%c'", optopt);
            qw_usage_error("unrecognized option '%s'", bad ? bad : "?");
        }
        if (!strcmp(o->name, "help")) {
            qw_print_help(info, stdout);
            qw_close_stdout();
            exit(0);
        }
        if (!strcmp(o->name, "version")) {
            printf("%s (qw) %s\n", info->name, QW_VERSION);
            qw_close_stdout();
            exit(0);
        }
        switch (o->kind) {
        case QW_OPT_FLAG: *(int *)o->dest = 1; break;
        case QW_OPT_INT: {
            long long v = parse_long(o->name, optarg);
            if (v < -2147483647LL || v > 2147483647LL) qw_usage_error("--%s: '%s' is out of range", o->name, optarg);
            *(int *)o->dest = (int)v;
            break;
        }
        case QW_OPT_LONG: *(long long *)o->dest = parse_long(o->name, optarg); break;
        case QW_OPT_DOUBLE: {
            char *end;
            errno = 0;
            double v = strtod(optarg, &end);
            if (end == optarg || *end || errno) qw_usage_error("--%s: '%s' is not a number", o->name, optarg);
            *(double *)o->dest = v;
            break;
        }
        case QW_OPT_STR: *(const char **)o->dest = optarg; break;
        case QW_OPT_LIST: {
            qw_strlist *l = o->dest;
            l->items = qw_realloc(l->items, (l->n + 1) * sizeof *l->items);
            l->items[l->n++] = optarg;
            break;
        }
        case QW_OPT_HEADER: break;
        }
    }
    free(lo);
    if (qw_common_opts.threads < 0) qw_usage_error("--threads: must be >= 0");
    if (qw_common_opts.device && strcmp(qw_common_opts.device, "cpu") && strcmp(qw_common_opts.device, "cuda"))
        qw_usage_error("--device: '%s' is not cpu or cuda", qw_common_opts.device);
    if (qw_common_opts.threads > 0) omp_set_num_threads(qw_common_opts.threads);
    return optind;
}

/* ---- subcommands ---- */

/* The common rows begin at the "Common options:" heading (QW_COMMON_BEGIN). */
static int is_common_begin(const qw_opt *o)
{
    return o->kind == QW_OPT_HEADER && !strcmp(o->help, "Common options:");
}

/* Whether a command before c lists the option `name` among its common rows. */
static int common_listed_before(const qw_cmd_prog *p, const qw_cmd *c, const char *name)
{
    for (const qw_cmd *e = p->cmds; e < c; e++) {
        const qw_opt *o = e->opts;
        while (!is_end(o) && !is_common_begin(o)) o++;
        for (; !is_end(o); o++)
            if (o->name && !strcmp(o->name, name)) return 1;
    }
    return 0;
}

void qw_cmd_print_help(const qw_cmd_prog *p, FILE *f)
{
    for (const qw_cmd *c = p->cmds; c->name; c++)
        fprintf(f, "%s %s %s %s\n", c == p->cmds ? "usage:" : "      ", p->name, c->name, c->usage);
    if (p->summary) fprintf(f, "\n%s\n", p->summary);
    fputs("\nCommands:\n", f);
    for (const qw_cmd *c = p->cmds; c->name; c++) fprintf(f, "  %-12s%s\n", c->name, c->summary);
    /* each command's own options */
    for (const qw_cmd *c = p->cmds; c->name; c++) {
        const qw_opt *o = c->opts;
        if (is_end(o) || is_common_begin(o)) continue;
        fprintf(f, "\nOptions of %s:\n", c->name);
        for (; !is_end(o) && !is_common_begin(o); o++) {
            if (o->kind == QW_OPT_HEADER) fprintf(f, "\n%s\n", o->help);
            else print_opt(o, f);
        }
    }
    /* the common options of all commands, each once, --help and --version last */
    fputs("\nCommon options:\n", f);
    for (int last = 0; last < 2; last++)
        for (const qw_cmd *c = p->cmds; c->name; c++) {
            const qw_opt *o = c->opts;
            while (!is_end(o) && !is_common_begin(o)) o++;
            for (; !is_end(o); o++)
                if (o->kind != QW_OPT_HEADER && (!strcmp(o->name, "help") || !strcmp(o->name, "version")) == last &&
                    !common_listed_before(p, c, o->name))
                    print_opt(o, f);
        }
    fprintf(f, "\n'%s COMMAND --help' shows one command's usage and options.\n", p->name);
}

int qw_cmd_main(const qw_cmd_prog *p, int argc, char **argv)
{
    help_name = p->name;
    char names[256];
    size_t k = 0;
    names[0] = 0;
    for (const qw_cmd *c = p->cmds; c->name && k < sizeof names; c++)
        k += (size_t)snprintf(names + k, sizeof names - k, "%s%s", c == p->cmds ? "" : ", ", c->name);
    if (argc < 2) qw_usage_error("missing command: %s", names);
    const char *a = argv[1];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
        qw_cmd_print_help(p, stdout);
        qw_close_stdout();
        exit(0);
    }
    if (!strcmp(a, "--version") || !strcmp(a, "-V")) {
        printf("%s (qw) %s\n", p->name, QW_VERSION);
        qw_close_stdout();
        exit(0);
    }
    const qw_cmd *cmd = NULL;
    for (const qw_cmd *c = p->cmds; c->name && !cmd; c++)
        if (!strcmp(c->name, a)) cmd = c;
    if (!cmd) {
        if (a[0] == '-') qw_usage_error("'%s' before the command: give the command first (%s)", a, names);
        qw_usage_error("unknown command '%s' (%s)", a, names);
    }
    size_t len = strlen(p->name) + strlen(cmd->name) + 2;
    char *name = qw_malloc(len);
    snprintf(name, len, "%s %s", p->name, cmd->name);
    qw_prog_info info = { name, cmd->usage, cmd->summary, cmd->opts };
    int first = qw_parse_args(&info, argc - 1, argv + 1);
    return cmd->run(argc - 1 - first, argv + 1 + first);   /* `name` stays: usage errors in run() name it */
}

int qw_thread_count(void)
{
    if (qw_common_opts.threads > 0) return qw_common_opts.threads;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* ---- output checks ---- */

void qw_refuse_binary_tty(void)
{
    if (isatty(STDOUT_FILENO))
        qw_die(QW_EXIT_USAGE, "refusing to write binary data to a terminal (use -o FILE or a pipe)");
}

void qw_close_stdout(void)
{
    int bad = ferror(stdout);
    if (fflush(stdout) != 0) bad = 1;
    int saved = errno;
    if (fclose(stdout) != 0 && !bad) { bad = 1; saved = errno; }
    if (bad) {
        fprintf(stderr, "%s: write error on standard output: %s\n", qw_prog, strerror(saved));
        _exit(QW_EXIT_FAIL);
    }
}

/* ---- progress ---- */

double qw_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void qw_progress_init(qw_progress *p)
{
    p->enabled = !qw_common_opts.quiet && isatty(STDERR_FILENO);
    p->t_start = p->t_last = qw_now();
    p->printed = 0;
}

void qw_progress_update(qw_progress *p, double done, double total, const char *fmt, ...)
{
    if (!p->enabled) return;
    double t = qw_now();
    if (p->printed && t - p->t_last < 0.2) return;
    p->t_last = t;
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    double el = t - p->t_start;
    if (total > 0 && done > 0) {
        double eta = el * (total - done) / done;
        fprintf(stderr, "\r\033[K%s: %s  %.0f%%  eta %dm%02ds", qw_prog, line, 100 * done / total,
                (int)(eta / 60), (int)eta % 60);
    } else {
        fprintf(stderr, "\r\033[K%s: %s  %dm%02ds", qw_prog, line, (int)(el / 60), (int)el % 60);
    }
    p->printed = 1;
}

void qw_progress_end(qw_progress *p)
{
    if (p->enabled && p->printed) fputs("\r\033[K", stderr);
    p->printed = 0;
}

const char *qw_human(double x, char *buf)
{
    const char *suf = "";
    if (x >= 1e12) { x /= 1e12; suf = "T"; }
    else if (x >= 1e9) { x /= 1e9; suf = "G"; }
    else if (x >= 1e6) { x /= 1e6; suf = "M"; }
    else if (x >= 1e3) { x /= 1e3; suf = "k"; }
    if (*suf) snprintf(buf, 16, "%.3g%s", x, suf);
    else snprintf(buf, 16, "%.0f", x);
    return buf;
}
