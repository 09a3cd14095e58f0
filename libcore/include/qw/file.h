/* qw/file.h — files that appear whole: write to a temporary, then rename.
 *
 * Every qw file that another program (or a resumed run) reads back is
 * written through this module, so that a reader sees either the previous
 * file or the complete new one, never a prefix, and a file reported written
 * survives a crash of the machine:
 *
 *   qw_afile_open     creates PATH.tmp beside PATH (same directory, so the
 *                     rename below is atomic), truncating a stale one;
 *   (the caller writes through a->f; seeking back is allowed)
 *   qw_afile_commit   flushes, fsyncs the file, closes it, renames it over
 *                     PATH, and fsyncs PATH's directory (the rename is then
 *                     durable: the commit point of the file);
 *   qw_afile_abort    closes and removes PATH.tmp (PATH is untouched).
 *
 * One writer per PATH at a time (the temporary's name is fixed, so a killed
 * writer's leftover is simply overwritten by the next one).
 *
 * Errors: 0, or QW_EXIT_FAIL with a message naming the file and the OS
 * reason (qw/cli.h).  After a failed commit the temporary is removed and
 * PATH is as it was.
 */
#ifndef QW_FILE_H
#define QW_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "qw/buf.h"

typedef struct {
    FILE *f;        /* write the content here */
    char *path;     /* the final name (owned) */
    char *tmp;      /* PATH.tmp (owned) */
} qw_afile;

int qw_afile_open(const char *path, qw_afile *a);
int qw_afile_commit(qw_afile *a);
void qw_afile_abort(qw_afile *a);

/* The whole of data[0..n) as PATH, through qw_afile. */
int qw_write_file_atomic(const char *path, const void *data, size_t n);

/* fsync a directory (after creating, renaming or removing names in it). */
int qw_fsync_dir(const char *dir);

/* Append the whole file to *b.  *found = 0 (and 0 returned) when it does
 * not exist (found may be NULL: then a missing file is QW_EXIT_FAIL). */
int qw_read_file(const char *path, qw_buf *b, int *found);
/* Append the whole input to *b: the file at path, or standard input when
 * path is "-" (or NULL).  A missing file or a read error is QW_EXIT_FAIL. */
int qw_read_input(const char *path, qw_buf *b);

#endif
