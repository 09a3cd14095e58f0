/* qw/buf.h — growable byte and id buffers, used across libcore.
 *
 * A zero-initialised struct is an empty buffer.  The buffer owns `p`/`v`;
 * free with qw_buf_free / qw_ids_free.  Growth dies (exit 1) on out of
 * memory, through qw_realloc.
 */
#ifndef QW_BUF_H
#define QW_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "qw/cli.h"

typedef struct {
    char *p;        /* bytes; not NUL-terminated unless qw_buf_cstr is called */
    size_t n, cap;
} qw_buf;

typedef struct {
    int32_t *v;     /* token ids */
    size_t n, cap;
} qw_ids;

static inline void qw_buf_reserve(qw_buf *b, size_t extra)
{
    if (b->n + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + extra) cap *= 2;
    b->p = (char *)qw_realloc(b->p, cap);
    b->cap = cap;
}
static inline void qw_buf_add(qw_buf *b, const void *p, size_t n)
{
    if (!n) return;   /* b->p may be NULL: no pointer arithmetic on it */
    qw_buf_reserve(b, n);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static inline void qw_buf_addc(qw_buf *b, char c) { qw_buf_reserve(b, 1); b->p[b->n++] = c; }
static inline void qw_buf_adds(qw_buf *b, const char *s) { qw_buf_add(b, s, strlen(s)); }
/* NUL-terminate (not counted in n) and return the string. */
static inline const char *qw_buf_cstr(qw_buf *b) { qw_buf_reserve(b, 1); b->p[b->n] = 0; return b->p; }
static inline void qw_buf_free(qw_buf *b) { free(b->p); b->p = NULL; b->n = b->cap = 0; }

/* "dir/name" in a new string (the caller frees it). */
static inline char *qw_path_join(const char *dir, const char *name)
{
    qw_buf b = {0};
    qw_buf_adds(&b, dir);
    qw_buf_addc(&b, '/');
    qw_buf_adds(&b, name);
    return (char *)qw_buf_cstr(&b);
}

static inline void qw_ids_reserve(qw_ids *x, size_t extra)
{
    if (x->n + extra <= x->cap) return;
    size_t cap = x->cap ? x->cap : 64;
    while (cap < x->n + extra) cap *= 2;
    x->v = (int32_t *)qw_realloc(x->v, cap * sizeof *x->v);
    x->cap = cap;
}
static inline void qw_ids_push(qw_ids *x, int32_t id) { qw_ids_reserve(x, 1); x->v[x->n++] = id; }
static inline void qw_ids_free(qw_ids *x) { free(x->v); x->v = NULL; x->n = x->cap = 0; }

#endif
