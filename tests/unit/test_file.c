/* test_file.c — files that appear whole (qw/file.h), and that the writers
 * of data sets and checkpoints make durable: this program interposes fsync
 * to record which paths were synced. */
#define _GNU_SOURCE
#include "qwtest.h"
#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/file.h"
#include "qw/pack.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static char root[64];
static char synced[64][512];   /* paths fsync was called on, in order */
static int n_synced;

/* Overrides libc's fsync for this program (and libcore linked into it). */
int fsync(int fd)
{
    char link[64], path[512];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n > 0 && n_synced < 64) {
        path[n] = 0;
        snprintf(synced[n_synced++], sizeof synced[0], "%s", path);
    }
    return (int)syscall(SYS_fsync, fd);
}

/* The index of the first fsync of `path` (-1 if none). */
static int synced_at(const char *path)
{
    char real[512];
    if (!realpath(path, real)) snprintf(real, sizeof real, "%s", path);
    for (int i = 0; i < n_synced; i++)
        if (!strcmp(synced[i], real)) return i;
    return -1;
}

static const char *tpath(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", root, name);
    return buf[k];
}

static char *slurp(const char *path, size_t *n)
{
    qw_buf b = {0};
    int found;
    if (qw_read_file(path, &b, &found) || !found) { qw_buf_free(&b); return NULL; }
    *n = b.n;
    return (char *)qw_buf_cstr(&b);
}

TEST(write_replace_and_sync)
{
    const char *p = tpath("a.txt");
    n_synced = 0;
    CHECK(qw_write_file_atomic(p, "one\n", 4) == 0);
    CHECK(qw_write_file_atomic(p, "two!\n", 5) == 0);
    size_t n;
    char *t = slurp(p, &n);
    CHECK(t && n == 5 && !memcmp(t, "two!\n", 5));
    free(t);
    CHECK(access(tpath("a.txt.tmp"), F_OK) != 0);
    /* the temporary (now PATH) and the directory were synced */
    CHECK(n_synced >= 4 && synced_at(root) >= 0);
}

TEST(abort_keeps_old_file)
{
    const char *p = tpath("b.txt");
    CHECK(qw_write_file_atomic(p, "old\n", 4) == 0);
    qw_afile a;
    CHECK(qw_afile_open(p, &a) == 0);
    fputs("half", a.f);
    qw_afile_abort(&a);
    size_t n;
    char *t = slurp(p, &n);
    CHECK(t && n == 4 && !memcmp(t, "old\n", 4));
    free(t);
    CHECK(access(tpath("b.txt.tmp"), F_OK) != 0);
    CHECK(qw_write_file_atomic(tpath("no/such/dir/c.txt"), "x", 1) == QW_EXIT_FAIL &&
          strstr(qw_error_msg(), "c.txt"));
    int found = 1;
    qw_buf b = {0};
    CHECK(qw_read_file(tpath("missing"), &b, &found) == 0 && !found);
    CHECK(qw_read_file(tpath("missing"), &b, NULL) == QW_EXIT_FAIL);
    qw_buf_free(&b);
}

/* index.json is the commit point of a data set: it is synced (under its
 * temporary name, before the rename) and so is the directory after it. */
TEST(pack_index_is_durable)
{
    qw_docs d = {0};
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = i % 50;
    for (int k = 0; k < 8; k++) CHECK(qw_docs_add(&d, ids, 5 + (size_t)k * 4, NULL) == 0);
    qw_pack_opts o = {0};
    o.dir = tpath("ds");
    o.seq_len = 8;
    o.vocab_size = 64;
    qw_pack_report rep;
    n_synced = 0;
    CHECK_MSG(qw_pack_dataset(&d, &o, &rep) == 0, "%s", qw_error_msg());
    char dir[512], tmp[600];
    CHECK(realpath(tpath("ds"), dir) != NULL);
    snprintf(tmp, sizeof tmp, "%s/index.json.tmp", dir);
    int at = -1;
    for (int i = 0; i < n_synced; i++)
        if (!strcmp(synced[i], tmp)) at = i;
    CHECK_MSG(at >= 0, "index.json was not synced (%d fsyncs)", n_synced);
    int dir_after = 0;
    for (int i = at + 1; i < n_synced; i++) dir_after |= !strcmp(synced[i], dir);
    CHECK(dir_after);
    qw_docs_free(&d);
}

int main(void)
{
    PLAN(3);
    snprintf(root, sizeof root, "/tmp/qw-test-file-XXXXXX");
    if (!mkdtemp(root)) return 1;
    RUN(write_replace_and_sync);
    RUN(abort_keeps_old_file);
    RUN(pack_index_is_durable);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) return 1;
    return qwtest_finish();
}
