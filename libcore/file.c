/* file.c — atomic file replacement and small file helpers (qw/file.h). */
#define _GNU_SOURCE
#include "qw/file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qw/cli.h"

static int os_fail(const char *path, int e) { return qw_error(QW_EXIT_FAIL, "'%s': %s", path, strerror(e)); }

int qw_afile_open(const char *path, qw_afile *a)
{
    memset(a, 0, sizeof *a);
    size_t n = strlen(path) + 5;
    char *tmp = qw_malloc(n);
    snprintf(tmp, n, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int st = os_fail(tmp, errno);
        free(tmp);
        return st;
    }
    a->f = f;
    a->tmp = tmp;
    a->path = qw_strdup(path);
    return 0;
}

static void afile_release(qw_afile *a)
{
    free(a->path);
    free(a->tmp);
    memset(a, 0, sizeof *a);
}

void qw_afile_abort(qw_afile *a)
{
    if (!a->tmp) return;
    if (a->f) fclose(a->f);
    unlink(a->tmp);
    afile_release(a);
}

int qw_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return os_fail(dir, errno);
    int st = 0;
    /* some file systems cannot sync a directory: the rename is as durable as they make it */
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) st = os_fail(dir, errno);
    close(fd);
    return st;
}

int qw_afile_commit(qw_afile *a)
{
    int e = 0;
    if (ferror(a->f)) e = errno ? errno : EIO;
    if (!e && fflush(a->f) != 0) e = errno;
    if (!e && fsync(fileno(a->f)) != 0) e = errno;
    if (fclose(a->f) != 0 && !e) e = errno;
    a->f = NULL;
    if (e) {
        int st = qw_error(QW_EXIT_FAIL, "'%s': write error: %s", a->path, strerror(e));
        qw_afile_abort(a);
        return st;
    }
    if (rename(a->tmp, a->path) != 0) {
        int st = os_fail(a->path, errno);
        qw_afile_abort(a);
        return st;
    }
    char *d = qw_strdup(a->path);
    int st = qw_fsync_dir(dirname(d));
    free(d);
    afile_release(a);
    return st;
}

int qw_write_file_atomic(const char *path, const void *data, size_t n)
{
    qw_afile a;
    int st = qw_afile_open(path, &a);
    if (st) return st;
    if (n && fwrite(data, 1, n, a.f) != n) {
        st = qw_error(QW_EXIT_FAIL, "'%s': write error: %s", path, strerror(errno));
        qw_afile_abort(&a);
        return st;
    }
    return qw_afile_commit(&a);
}

int qw_read_file(const char *path, qw_buf *b, int *found)
{
    FILE *f = fopen(path, "rb");
    if (found) *found = f != NULL;
    if (!f) return found && errno == ENOENT ? 0 : os_fail(path, errno);
    char tmp[65536];
    size_t k;
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0) qw_buf_add(b, tmp, k);
    int st = ferror(f) ? os_fail(path, errno ? errno : EIO) : 0;
    fclose(f);
    return st;
}

int qw_read_input(const char *path, qw_buf *b)
{
    if (path && strcmp(path, "-")) return qw_read_file(path, b, NULL);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) qw_buf_add(b, chunk, n);
    if (ferror(stdin)) return qw_error(QW_EXIT_FAIL, "standard input: read error");
    return 0;
}
