/* test_metrics.c — JSONL lines exactly; the TensorBoard event file read back
 * by an independent stdlib Python reader (tests/tools/tfevents.py) that
 * checks framing, both CRCs, tags, steps and values. */
#include "qwtest.h"
#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/metrics.h"

#include <unistd.h>

static char dir[64];

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    qw_buf b = {0};
    char tmp[4096];
    size_t k;
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0) qw_buf_add(&b, tmp, k);
    fclose(f);
    if (n) *n = b.n;
    qw_buf_cstr(&b);
    return b.p;
}

/* Run the Python reader on `path`; its stdout into *out, its exit status returned. */
static int read_events(const char *path, qw_buf *out)
{
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "python3 '%s' '%s' 2>/dev/null", qwtest_path("tests/tools/tfevents.py"), path);
    FILE *p = popen(cmd, "r");
    char tmp[4096];
    size_t k;
    while ((k = fread(tmp, 1, sizeof tmp, p)) > 0) qw_buf_add(out, tmp, k);
    qw_buf_cstr(out);
    return pclose(p);
}

static const qw_metric train[] = {
    {"loss", 2.5}, {"lr", 3e-4}, {"grad_norm", 1.25}, {"tokens", 4096},
    {"tok_per_s", 1234.5678}, {"aux_loss", NAN},
};
static const qw_metric val[] = { {"val_loss", 2.75}, {"tokens", 1099511627776.0} };

TEST(jsonl_and_tensorboard_round_trip)
{
    char jsonl[128], tbdir[128];
    snprintf(jsonl, sizeof jsonl, "%s/m.jsonl", dir);
    snprintf(tbdir, sizeof tbdir, "%s/tb", dir);
    qw_metrics *m;
    CHECK(qw_metrics_open(&m, jsonl, tbdir) == 0);
    CHECK(qw_metrics_write(m, 1, train, 6) == 0);
    CHECK(qw_metrics_write(m, 2, train, 2) == 0);
    CHECK(qw_metrics_write(m, 10, val, 2) == 0);
    char tb[256];
    snprintf(tb, sizeof tb, "%s", qw_metrics_tb_path(m));
    CHECK(strncmp(tb, tbdir, strlen(tbdir)) == 0 && strstr(tb, "/events.out.tfevents.") != NULL);
    CHECK(qw_metrics_close(m) == 0);

    char *text = slurp(jsonl, NULL);
    CHECK_STR(text,
        "{\"step\":1,\"loss\":2.5,\"lr\":0.0003,\"grad_norm\":1.25,\"tokens\":4096,"
        "\"tok_per_s\":1234.5678,\"aux_loss\":null}\n"
        "{\"step\":2,\"loss\":2.5,\"lr\":0.0003}\n"
        "{\"step\":10,\"val_loss\":2.75,\"tokens\":1099511627776}\n");
    free(text);

    qw_buf want = {0}, got = {0};
    char line[128];
    qw_buf_adds(&want, "version brain.Event:2\n");
    const struct { long step; const qw_metric *v; int n; } recs[] = { {1, train, 6}, {2, train, 2}, {10, val, 2} };
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < recs[r].n; i++) {
            snprintf(line, sizeof line, "%ld %s %.9g\n", recs[r].step, recs[r].v[i].key, (double)(float)recs[r].v[i].value);
            qw_buf_adds(&want, line);
        }
    CHECK(read_events(tb, &got) == 0);
    CHECK_STR(qw_buf_cstr(&got), qw_buf_cstr(&want));

    /* flip one byte in the last record's data: the reader must notice */
    size_t n;
    char *bytes = slurp(tb, &n);
    bytes[n - 10] ^= 0x20;
    FILE *f = fopen(tb, "wb");
    fwrite(bytes, 1, n, f);
    fclose(f);
    free(bytes);
    got.n = 0;
    CHECK(read_events(tb, &got) != 0);
    qw_buf_free(&want);
    qw_buf_free(&got);
}

TEST(jsonl_appends_on_reopen)
{
    char jsonl[128];
    snprintf(jsonl, sizeof jsonl, "%s/a.jsonl", dir);
    for (int k = 0; k < 2; k++) {
        qw_metrics *m;
        CHECK(qw_metrics_open(&m, jsonl, NULL) == 0);
        CHECK(qw_metrics_tb_path(m) == NULL);
        qw_metric v = {"loss", 1.0 + k};
        CHECK(qw_metrics_write(m, k, &v, 1) == 0);
        CHECK(qw_metrics_close(m) == 0);
    }
    char *text = slurp(jsonl, NULL);
    CHECK_STR(text, "{\"step\":0,\"loss\":1}\n{\"step\":1,\"loss\":2}\n");
    free(text);
}

TEST(bad_keys_and_paths)
{
    qw_metrics *m;
    char jsonl[128];
    snprintf(jsonl, sizeof jsonl, "%s/b.jsonl", dir);
    CHECK(qw_metrics_open(&m, jsonl, NULL) == 0);
    const char *bad[] = { "", "step", "a\"b", "a b", "x\n" };
    for (int i = 0; i < 5; i++) {
        qw_metric v = {bad[i], 1};
        CHECK(qw_metrics_write(m, 0, &v, 1) == QW_EXIT_USAGE);
    }
    CHECK(strstr(qw_error_msg(), "bad metric name") != NULL);
    qw_metric ok[] = { {"train/loss-1.x", 1}, {"a", 2} };
    CHECK(qw_metrics_write(m, 0, ok, 2) == 0);
    CHECK(qw_metrics_close(m) == 0);
    char *text = slurp(jsonl, NULL);
    CHECK_STR(text, "{\"step\":0,\"train/loss-1.x\":1,\"a\":2}\n");   /* nothing from the rejected writes */
    free(text);

    CHECK(qw_metrics_open(&m, "/dev/null/x.jsonl", NULL) == QW_EXIT_FAIL);
    CHECK(strstr(qw_error_msg(), "'/dev/null/x.jsonl'") != NULL);
    CHECK(qw_metrics_open(&m, NULL, "/dev/null/tb") == QW_EXIT_FAIL);
    CHECK(strstr(qw_error_msg(), "'/dev/null/tb'") != NULL);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/qw-test-metrics-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    PLAN(3);
    RUN(jsonl_and_tensorboard_round_trip);
    RUN(jsonl_appends_on_reopen);
    RUN(bad_keys_and_paths);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    return qwtest_finish();
}
