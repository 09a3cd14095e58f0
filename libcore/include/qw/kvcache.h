/* qw/kvcache.h — the bookkeeping of a paged K/V cache: which blocks are
 * free, who shares them, what is promised to whom.  Host memory only; the
 * K/V values themselves live in the backend's memory, laid out by the
 * engine (qw/infer.h) and moved by its ops.
 *
 * Blocks.  A pool of n_blocks blocks of bs token slots each; block b holds
 * slots b·bs … b·bs + bs − 1.  Each block has a reference count: 0 = on
 * the free list.  A sequence's block table lists its blocks in order:
 * position p is in slot table[p / bs]·bs + p % bs.
 *
 * Reservations.  A sequence that joins the batch reserves the blocks it
 * may ever take (qw_kv_reserve), so once running it never waits for
 * memory and nothing has to be preempted: blocks are taken only out of a
 * reservation (qw_kv_take), and a finished sequence gives back its blocks
 * and what it did not use of its reservation.  qw_kv_reserve fails (the
 * caller waits) when the free blocks not yet promised are too few.
 *
 * Sharing.  The n samples of a prompt start from the prompt's table
 * (qw_kv_seq_share: the same blocks, each reference count raised).  A
 * sequence about to write into a block that others also hold gets a
 * private copy first (copy on write): qw_kv_seq_slot takes a new block
 * and tells the caller which block to copy from.  Full shared blocks are
 * never written (a sequence only writes at its end), so only a partly
 * filled last prompt block is ever copied.
 *
 * Nothing here fails except as said; misuse (taking beyond a reservation,
 * dropping a free block) is a bug and aborts.
 */
#ifndef QW_KVCACHE_H
#define QW_KVCACHE_H

#include <stdint.h>

typedef struct {
    int n_blocks, bs;
    int32_t *ref;             /* [n_blocks] reference counts */
    int32_t *free_list;       /* [n_blocks]: its first n_free entries are free */
    int n_free;
    long long promised;       /* reserved and not yet taken */
} qw_kv_pool;

typedef struct {
    int32_t *table;           /* [max_blocks] (owned) */
    int nb;                   /* blocks in the table */
    int resv;                 /* reserved blocks not yet taken */
} qw_kv_seq;

void qw_kv_pool_init(qw_kv_pool *p, int n_blocks, int bs);
void qw_kv_pool_free(qw_kv_pool *p);
/* Free blocks not promised to anyone. */
static inline long long qw_kv_available(const qw_kv_pool *p) { return p->n_free - p->promised; }

/* Reserve n blocks for s: 1 on success, 0 (nothing changed) when fewer
 * than n are available. */
int qw_kv_reserve(qw_kv_pool *p, qw_kv_seq *s, int n);
/* A block out of s's reservation, reference count 1. */
int32_t qw_kv_take(qw_kv_pool *p, qw_kv_seq *s);
/* Drop one reference to block b (back to the free list at 0). */
void qw_kv_drop(qw_kv_pool *p, int32_t b);

/* A new sequence with room for max_blocks blocks, empty. */
void qw_kv_seq_init(qw_kv_seq *s, int max_blocks);
/* dst (empty) shares src's blocks. */
void qw_kv_seq_share(qw_kv_pool *p, qw_kv_seq *dst, const qw_kv_seq *src);
/* Append a block taken from s's reservation. */
void qw_kv_seq_grow(qw_kv_pool *p, qw_kv_seq *s);
/* The slot where s writes position pos (pos ≤ its length: the next
 * position, or one inside its last block).  A new block is taken when pos
 * starts one; when the block is shared it is replaced by a private one
 * and *copy_from is set to the block whose contents the caller must copy
 * into it (*copy_to); otherwise both are −1. */
int32_t qw_kv_seq_slot(qw_kv_pool *p, qw_kv_seq *s, int pos, int32_t *copy_from, int32_t *copy_to);
/* Give back s's blocks and what is left of its reservation. */
void qw_kv_seq_release(qw_kv_pool *p, qw_kv_seq *s);

#endif
