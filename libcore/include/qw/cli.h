/* qw/cli.h — what every qw program shares: exit codes, error reporting,
 * the option table, progress lines and output checks.
 *
 * Error model.  Library functions never exit and never print.  A function
 * that can fail returns 0 on success or one of QW_EXIT_* on failure, after
 * recording a message with qw_error().  The program decides what to do: most
 * call qw_die_last(), which prints "prog: message" to stderr and exits with
 * the recorded status.  Messages follow doc/design.md (Conventions): lowercase, the subject in
 * single quotes, no full stop, e.g.  'data/a.qwt': frame 12: bad checksum
 *
 * The recorded error is thread-local, so worker threads can fail
 * independently; only the most recent message per thread is kept.
 */
#ifndef QW_CLI_H
#define QW_CLI_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#define QW_VERSION "0.1.0"

enum {
    QW_EXIT_OK    = 0,   /* success */
    QW_EXIT_FAIL  = 1,   /* runtime failure: I/O error, out of memory, device */
    QW_EXIT_USAGE = 2,   /* bad command line */
    QW_EXIT_DATA  = 3,   /* bad input data: the message names file, record, reason */
};

/* The program name used as the prefix of every message ("qw-pack"). */
extern const char *qw_prog;
void qw_set_prog(const char *argv0);

/* Record an error for this thread and return `status`, so callers can write
 * `return qw_error(QW_EXIT_DATA, "'%s': line %ld: bad JSON", path, line);`
 * The arguments may include qw_error_msg(), to prefix the last message. */
int qw_error(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int qw_verror(int status, const char *fmt, va_list ap);
/* The last recorded message ("" if none) and status (0 if none). */
const char *qw_error_msg(void);
int qw_error_status(void);
void qw_error_clear(void);

/* Print "prog: message" to stderr.  qw_die exits with `status`;
 * qw_die_last exits with the recorded error (status 1 if none recorded). */
void qw_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void qw_die(int status, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
void qw_die_last(void) __attribute__((noreturn));

/* Allocation that dies with status 1 and the size asked for on failure. */
void *qw_malloc(size_t n);
void *qw_calloc(size_t n, size_t size);
void *qw_realloc(void *p, size_t n);
char *qw_strdup(const char *s);

/* ---- Options -------------------------------------------------------------
 * A program describes its options once, in a table; the same table drives
 * parsing, --help, and (through tests/tools/test_manpages.sh) the check that
 * the man page documents every option.
 */
typedef enum {
    QW_OPT_FLAG,     /* int *: set to 1 */
    QW_OPT_INT,      /* int * */
    QW_OPT_LONG,     /* long long * (accepts k/M/G suffixes: 4k = 4096) */
    QW_OPT_DOUBLE,   /* double * */
    QW_OPT_STR,      /* const char ** (points into argv) */
    QW_OPT_LIST,     /* qw_strlist *: repeatable, each use appends */
    QW_OPT_HEADER,   /* not an option: a section heading in --help */
} qw_opt_kind;

typedef struct {
    const char **items;
    int n;
} qw_strlist;

typedef struct {
    const char *name;      /* long name without dashes, e.g. "seq-len" */
    char short_name;       /* 0 if none */
    qw_opt_kind kind;
    void *dest;
    const char *metavar;   /* "N", "FILE" … (NULL for flags) */
    const char *help;      /* one line */
} qw_opt;

/* The common options, filled by qw_parse_args.  Same spelling everywhere;
 * a program offers only those it uses. */
typedef struct {
    int quiet;             /* -q: no progress line */
    int threads;           /* --threads N (0: all cores) */
    long long seed;        /* --seed N */
    const char *device;    /* --device cpu|cuda (NULL: default) */
} qw_common;
extern qw_common qw_common_opts;

/* The common rows.  A program's table ends with QW_COMMON_BEGIN, the rows
 * of the common options it uses, then QW_COMMON_END (--help, --version):
 *   static const qw_opt opts[] = { {...}, QW_COMMON_BEGIN, QW_COMMON_THREADS,
 *                                  QW_COMMON_QUIET, QW_COMMON_END, {0} };
 * An option a program does not list is refused as unrecognized. */
#define QW_COMMON_BEGIN { NULL, 0, QW_OPT_HEADER, NULL, NULL, "Common options:" }
#define QW_COMMON_DEVICE \
    { "device", 0, QW_OPT_STR, &qw_common_opts.device, "cpu|cuda", "compute device (default: cuda when built and present)" }
#define QW_COMMON_THREADS { "threads", 0, QW_OPT_INT, &qw_common_opts.threads, "N", "worker threads (default: all cores)" }
#define QW_COMMON_SEED { "seed", 0, QW_OPT_LONG, &qw_common_opts.seed, "N", "random seed (default 0)" }
#define QW_COMMON_QUIET { "quiet", 'q', QW_OPT_FLAG, &qw_common_opts.quiet, NULL, "no progress line" }
#define QW_COMMON_END \
    { "help", 'h', QW_OPT_FLAG, NULL, NULL, "show this help and exit" }, \
    { "version", 'V', QW_OPT_FLAG, NULL, NULL, "show the version and exit" }
/* All of them, for a program that uses every one. */
#define QW_COMMON_OPTS \
    QW_COMMON_BEGIN, QW_COMMON_DEVICE, QW_COMMON_THREADS, QW_COMMON_SEED, QW_COMMON_QUIET, QW_COMMON_END

typedef struct {
    const char *name;      /* "qw-tokenize" */
    const char *usage;     /* "[options] [FILE...]" (one line; may hold \n for more) */
    const char *summary;   /* one sentence for --help */
    const qw_opt *opts;    /* terminated by an all-zero row */
} qw_prog_info;

/* Parse argv against info->opts.  Handles --help (usage to stdout, exit 0),
 * --version, and usage errors (message + hint to stderr, exit 2).  Returns
 * the index of the first operand; operands are moved to the end of argv. */
int qw_parse_args(const qw_prog_info *info, int argc, char **argv);
void qw_print_help(const qw_prog_info *info, FILE *f);
/* ---- Subcommands ---------------------------------------------------------
 * A program with subcommands (qw-eval forward|bench, qw-ckpt inspect|…)
 * describes each once, in a table, as git does its cmd_* table: name,
 * function, a one-line summary, the usage line, and the command's own
 * option table, which ends with the common rows the command uses
 * (QW_COMMON_BEGIN … QW_COMMON_END, as a program's table does).
 *
 *   PROG --help          the usage lines of all commands (one each: the
 *                        text the man page's SYNOPSIS repeats), the
 *                        summary, the commands with their summaries, each
 *                        command's own options, and the common options of
 *                        all commands once (which commands take which:
 *                        PROG CMD --help)
 *   PROG CMD --help      CMD's usage line, summary and options only
 *   PROG CMD [args]      CMD's options are parsed (as qw_parse_args, usage
 *                        errors naming 'PROG CMD --help'), then run() gets
 *                        the operands
 *   PROG, PROG BAD       usage error (exit 2) naming the commands
 */
typedef struct {
    const char *name;                       /* "bench" */
    int (*run)(int argc, char **argv);      /* the operands (argv[0] is the first); returns the exit status */
    const char *usage;                      /* after "PROG CMD ": "--config FILE [--steps N] [options]" */
    const char *summary;                    /* one line */
    const qw_opt *opts;                     /* terminated by an all-zero row */
} qw_cmd;

typedef struct {
    const char *name;       /* "qw-eval" */
    const char *summary;    /* one or more sentences for PROG --help */
    const qw_cmd *cmds;     /* terminated by an all-zero row */
} qw_cmd_prog;

/* Dispatch argv to its command as above; returns what run() returns. */
int qw_cmd_main(const qw_cmd_prog *p, int argc, char **argv);
void qw_cmd_print_help(const qw_cmd_prog *p, FILE *f);

/* Print a usage error ("prog: msg" + "try 'prog --help'") and exit 2. */
void qw_usage_error(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* Number of worker threads: --threads if given, else the cores available. */
int qw_thread_count(void);

/* ---- Output checks ------------------------------------------------------ */

/* Exit 2 with a message if stdout is a terminal (for binary output). */
void qw_refuse_binary_tty(void);
/* Flush and close stdout; on error (full disk, EPIPE ignored by SIGPIPE
 * default) print the reason and exit 1.  Call at the end of main. */
void qw_close_stdout(void);

/* ---- Progress ----------------------------------------------------------- */

typedef struct {
    int enabled;           /* stderr is a terminal and not -q */
    double t_start, t_last;
    int printed;           /* a line is on screen and needs clearing */
} qw_progress;

/* Seconds since an arbitrary fixed point (monotonic). */
double qw_now(void);
void qw_progress_init(qw_progress *p);
/* Redraw the line at most ~5 times a second.  `done`/`total` (total 0 =
 * unknown) drive the ETA; `what` is printed as given (e.g. "12.3k docs"). */
void qw_progress_update(qw_progress *p, double done, double total, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Clear the line (before a final summary or an error). */
void qw_progress_end(qw_progress *p);

/* Human-readable count: 1234567 -> "1.23M" (buf of >= 16 bytes). */
const char *qw_human(double x, char *buf);

#endif
