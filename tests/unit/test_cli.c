/* test_cli.c — error recording, human counts, option parsing, subcommand
 * tables, shapes as text and the --tokenizer rule. */
#include "qwtest.h"
#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/st.h"
#include "qw/tokenize.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

TEST(error_records_status_and_message)
{
    qw_error_clear();
    int st = qw_error(QW_EXIT_DATA, "'%s': frame %d: bad checksum", "a.qwt", 12);
    CHECK(st == QW_EXIT_DATA);
    CHECK(qw_error_status() == QW_EXIT_DATA);
    CHECK_STR(qw_error_msg(), "'a.qwt': frame 12: bad checksum");
}

TEST(human_counts)
{
    char b[16];
    CHECK_STR(qw_human(999, b), "999");
    CHECK_STR(qw_human(1234567, b), "1.23M");
}

TEST(parse_args)
{
    int flag = 0, n = 0;
    long long big = 0;
    const char *s = NULL;
    qw_strlist l = {0};
    const qw_opt opts[] = {
        {"flag", 'f', QW_OPT_FLAG, &flag, NULL, "a flag"},
        {"num", 'n', QW_OPT_INT, &n, "N", "a number"},
        {"big", 0, QW_OPT_LONG, &big, "N", "a big number"},
        {"str", 0, QW_OPT_STR, &s, "S", "a string"},
        {"item", 0, QW_OPT_LIST, &l, "X", "repeatable"},
        QW_COMMON_OPTS,
        {0},
    };
    qw_prog_info info = {"qw-test", "[options]", "test", opts};
    char *argv[] = {"qw-test", "-f", "in1", "--num", "7", "--big=4k", "--str", "x", "--item", "a",
                    "--item", "b", "in2", "--seed", "9", NULL};
    int argc = 15;
    int first = qw_parse_args(&info, argc, argv);
    CHECK(flag == 1 && n == 7 && big == 4096);
    CHECK_STR(s, "x");
    CHECK(l.n == 2);
    CHECK(qw_common_opts.seed == 9);
    CHECK(argc - first == 2);
    CHECK_STR(argv[first], "in1");
    CHECK_STR(argv[first + 1], "in2");
    free(l.items);
}

/* ---- subcommands ---- */

static int o_level = -1;
static const char *o_name;
static int ran_argc;
static const char *ran_first;

static int cmd_go(int argc, char **argv)
{
    ran_argc = argc;
    ran_first = argc ? argv[0] : NULL;
    return 7;
}

static int cmd_stop(int argc, char **argv) { (void)argc, (void)argv; return 0; }

static const qw_opt go_opts[] = {
    {"level", 'l', QW_OPT_INT, &o_level, "N", "how far"},
    QW_COMMON_OPTS,
    {0},
};
static const qw_opt stop_opts[] = {
    {"name", 0, QW_OPT_STR, &o_name, "S", "who stops"},
    QW_COMMON_BEGIN, QW_COMMON_END,
    {0},
};
static const qw_cmd cmds[] = {
    {"go", cmd_go, "[-l N] FILE [options]", "go somewhere", go_opts},
    {"stop", cmd_stop, "[--name S] [options]", "stop", stop_opts},
    {0},
};
static const qw_cmd_prog prog = {"qw-test", "A program with commands.", cmds};

/* Run qw_cmd_main in a child: its exit status (the return value of run(),
 * or exit's), and its stdout and stderr in out/err. */
static int run_child(char **argv, int argc, char *out, size_t nout, char *err, size_t nerr)
{
    char po[] = "/tmp/qw-test-cli-XXXXXX", pe[] = "/tmp/qw-test-cli-XXXXXX";
    int fo = mkstemp(po), fe = mkstemp(pe);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fo, 1);
        dup2(fe, 2);
        int rc = qw_cmd_main(&prog, argc, argv);
        fflush(stdout);
        _exit(rc);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ssize_t k = pread(fo, out, nout - 1, 0);
    out[k > 0 ? k : 0] = 0;
    k = pread(fe, err, nerr - 1, 0);
    err[k > 0 ? k : 0] = 0;
    close(fo), close(fe), unlink(po), unlink(pe);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(subcommand_table)
{
    qw_set_prog("qw-test");
    char *argv[] = {"qw-test", "go", "in1", "-l", "3", "--seed", "5", NULL};
    CHECK(qw_cmd_main(&prog, 7, argv) == 7);
    CHECK(o_level == 3 && qw_common_opts.seed == 5 && ran_argc == 1);
    CHECK_STR(ran_first, "in1");

    char out[4096], err[4096];
    char *help[] = {"qw-test", "--help", NULL};
    CHECK(run_child(help, 2, out, sizeof out, err, sizeof err) == 0);
    CHECK_MSG(strstr(out, "usage: qw-test go [-l N] FILE [options]\n       qw-test stop [--name S] [options]\n") &&
              strstr(out, "  go          go somewhere\n") && strstr(out, "--level") && strstr(out, "--name") &&
              strstr(out, "--threads"), "%s", out);
    char *go_help[] = {"qw-test", "go", "--help", NULL};
    CHECK(run_child(go_help, 3, out, sizeof out, err, sizeof err) == 0);
    CHECK_MSG(!strncmp(out, "usage: qw-test go [-l N] FILE [options]\n", 40) && strstr(out, "--level") &&
              !strstr(out, "--name") && !strstr(out, "stop") && strstr(out, "--threads"), "%s", out);
    char *other[] = {"qw-test", "go", "--name", "x", NULL};
    CHECK(run_child(other, 4, out, sizeof out, err, sizeof err) == QW_EXIT_USAGE);
    CHECK_MSG(strstr(err, "qw-test: unrecognized option '--name'") && strstr(err, "try 'qw-test go --help'"), "%s", err);
    char *none[] = {"qw-test", NULL};
    CHECK(run_child(none, 1, out, sizeof out, err, sizeof err) == QW_EXIT_USAGE);
    CHECK_MSG(strstr(err, "missing command: go, stop"), "%s", err);
    char *bad[] = {"qw-test", "fly", NULL};
    CHECK(run_child(bad, 2, out, sizeof out, err, sizeof err) == QW_EXIT_USAGE);
    CHECK_MSG(strstr(err, "unknown command 'fly' (go, stop)"), "%s", err);
}

TEST(shape_str)
{
    int64_t s[3] = {2, 30, 400};
    char b[32], tiny[6];
    CHECK_STR(qw_shape_str(3, s, b, sizeof b), "[2,30,400]");
    CHECK_STR(qw_shape_str(0, s, b, sizeof b), "[]");
    CHECK_STR(qw_shape_str(3, s, tiny, sizeof tiny), "[2,30");   /* cut short, still terminated */
}

TEST(tokenizer_path)
{
    char dir[] = "/tmp/qw-test-tok-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char *d = NULL, *p = qw_tok_path(dir, &d), want[64];
    snprintf(want, sizeof want, "%s/tokenizer.json", dir);
    CHECK_STR(p, want);
    CHECK_STR(d, dir);
    free(p), free(d);
    p = qw_tok_path("models/x/tok.json", &d);
    CHECK_STR(p, "models/x/tok.json");
    CHECK_STR(d, "models/x");
    free(p), free(d);
    p = qw_tok_path("tok.json", &d);
    CHECK_STR(d, ".");
    free(p), free(d);
    rmdir(dir);
}

TEST(buffers)
{
    qw_buf b = {0};
    for (int i = 0; i < 1000; i++) qw_buf_addc(&b, 'a' + i % 26);
    CHECK(b.n == 1000 && b.p[27] == 'b');
    qw_ids x = {0};
    for (int i = 0; i < 1000; i++) qw_ids_push(&x, i);
    CHECK(x.n == 1000 && x.v[999] == 999);
    qw_buf_free(&b);
    qw_ids_free(&x);
}

int main(void)
{
    PLAN(7);
    RUN(error_records_status_and_message);
    RUN(human_counts);
    RUN(parse_args);
    RUN(buffers);
    RUN(subcommand_table);
    RUN(shape_str);
    RUN(tokenizer_path);
    return qwtest_finish();
}
