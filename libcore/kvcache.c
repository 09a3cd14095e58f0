/* kvcache.c — blocks, reference counts and reservations of a paged K/V
 * cache (qw/kvcache.h). */
#include "qw/kvcache.h"

#include <stdlib.h>
#include <string.h>

#include "qw/cli.h"

void qw_kv_pool_init(qw_kv_pool *p, int n_blocks, int bs)
{
    memset(p, 0, sizeof *p);
    p->n_blocks = n_blocks, p->bs = bs;
    p->ref = qw_calloc(n_blocks, sizeof *p->ref);
    p->free_list = qw_malloc((n_blocks ? n_blocks : 1) * sizeof *p->free_list);
    for (int b = 0; b < n_blocks; b++) p->free_list[b] = n_blocks - 1 - b;   /* block 0 is taken first */
    p->n_free = n_blocks;
}

void qw_kv_pool_free(qw_kv_pool *p)
{
    free(p->ref);
    free(p->free_list);
    memset(p, 0, sizeof *p);
}

int qw_kv_reserve(qw_kv_pool *p, qw_kv_seq *s, int n)
{
    if (qw_kv_available(p) < n) return 0;
    p->promised += n;
    s->resv += n;
    return 1;
}

int32_t qw_kv_take(qw_kv_pool *p, qw_kv_seq *s)
{
    if (s->resv <= 0 || p->n_free <= 0) abort();
    s->resv--, p->promised--;
    int32_t b = p->free_list[--p->n_free];
    p->ref[b] = 1;
    return b;
}

void qw_kv_drop(qw_kv_pool *p, int32_t b)
{
    if (p->ref[b] <= 0) abort();
    if (--p->ref[b] == 0) p->free_list[p->n_free++] = b;
}

void qw_kv_seq_init(qw_kv_seq *s, int max_blocks)
{
    s->table = qw_malloc((max_blocks ? max_blocks : 1) * sizeof *s->table);
    s->nb = 0, s->resv = 0;
}

void qw_kv_seq_share(qw_kv_pool *p, qw_kv_seq *dst, const qw_kv_seq *src)
{
    memcpy(dst->table, src->table, src->nb * sizeof *src->table);
    dst->nb = src->nb;
    for (int i = 0; i < src->nb; i++) p->ref[src->table[i]]++;
}

void qw_kv_seq_grow(qw_kv_pool *p, qw_kv_seq *s)
{
    s->table[s->nb++] = qw_kv_take(p, s);
}

int32_t qw_kv_seq_slot(qw_kv_pool *p, qw_kv_seq *s, int pos, int32_t *copy_from, int32_t *copy_to)
{
    int bi = pos / p->bs;
    *copy_from = *copy_to = -1;
    if (bi == s->nb) {
        qw_kv_seq_grow(p, s);
    } else if (p->ref[s->table[bi]] > 1) {
        int32_t old = s->table[bi];
        s->table[bi] = qw_kv_take(p, s);
        qw_kv_drop(p, old);
        *copy_from = old, *copy_to = s->table[bi];
    }
    return s->table[bi] * p->bs + pos % p->bs;
}

void qw_kv_seq_release(qw_kv_pool *p, qw_kv_seq *s)
{
    for (int i = 0; i < s->nb; i++) qw_kv_drop(p, s->table[i]);
    p->promised -= s->resv;
    s->nb = 0, s->resv = 0;
    free(s->table);
    s->table = NULL;
}
