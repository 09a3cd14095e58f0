/* test_cli.c — error recording, human counts, option parsing. */
#include "qwtest.h"
#include "qw/buf.h"
#include "qw/cli.h"

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
    PLAN(4);
    RUN(error_records_status_and_message);
    RUN(human_counts);
    RUN(parse_args);
    RUN(buffers);
    return qwtest_finish();
}
