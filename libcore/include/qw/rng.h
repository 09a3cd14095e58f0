/* qw/rng.h — counter-based random numbers (Philox4x32-10).
 *
 * Every value is a pure function of (seed, stream, counter): the same seed
 * gives the same numbers on every machine, thread count and parallel
 * layout.  Use one stream per consumer (a tensor: qw_hash64 of its name; a
 * data loader; a sampler) so that consumers never share numbers and adding
 * one does not shift the others.
 *
 * Two ways to draw:
 *   - sequential: a qw_rng generator (plain data, no pointers: save it
 *     bytewise in a checkpoint and restore it to resume the sequence);
 *   - bulk: qw_rng_fill_* fill an array where element i depends only on
 *     (seed, stream, i), in parallel with OpenMP.
 *
 * Normals use Box-Muller on 24-bit uniforms in (0,1], so |x| < 5.8.
 * Nothing here fails or allocates.
 */
#ifndef QW_RNG_H
#define QW_RNG_H

#include <stddef.h>
#include <stdint.h>

/* The Philox4x32-10 block function (Salmon et al., SC'11; Random123's
 * known-answer vectors hold): 4 counter words, 2 key words -> 4 words. */
void qw_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

typedef struct {
    uint64_t seed;       /* the key */
    uint64_t stream;     /* counter words 2-3 */
    uint64_t counter;    /* the next block, counter words 0-1 */
    uint32_t buf[4];     /* the current block */
    int used;            /* words of buf already returned (4: none left) */
    int has_spare;       /* Box-Muller's second normal is in spare */
    double spare;
} qw_rng;

void qw_rng_init(qw_rng *r, uint64_t seed, uint64_t stream);
uint32_t qw_rng_u32(qw_rng *r);
uint64_t qw_rng_u64(qw_rng *r);
/* Uniform in [0,1), 53 random bits. */
double qw_rng_uniform(qw_rng *r);
/* Standard normal (Box-Muller, in double). */
double qw_rng_normal(qw_rng *r);
/* Uniform integer in [0, n), unbiased (n > 0). */
uint64_t qw_rng_below(qw_rng *r, uint64_t n);
/* Fisher-Yates shuffle of n elements of `size` bytes each. */
void qw_rng_shuffle(qw_rng *r, void *base, size_t n, size_t size);

/* Element k of an endless stream of epochs over n items, each epoch e =
 * k / n a permutation of 0 … n−1 shuffled by a generator of (seed,
 * stream + e) (as a seeded data sampler reshuffles every epoch): a pure
 * function of (k, n, seed, stream), so a resumed run sees what the whole
 * run would have.  *perm (n longs, allocated on first use; free it) and
 * *perm_epoch (start at −1) cache the current epoch's permutation. */
long qw_rng_epoch_item(long k, long n, uint64_t seed, uint64_t stream, long **perm, long *perm_epoch);

/* One uniform in [0,1) (53 bits) that depends only on (seed, stream,
 * counter): the first two words of the Philox block at that counter, the
 * same bits the sequential generator would draw first from that block.
 * The sampler (qw/infer.h) draws each token this way. */
double qw_rng_uniform_at(uint64_t seed, uint64_t stream, uint64_t counter);

/* Bulk, counter-based: x[i] = mean + std * N_i or lo + (hi - lo) * U_i,
 * where N_i, U_i depend only on (seed, stream, i); U_i in [0,1). */
void qw_rng_fill_normal(float *x, size_t n, uint64_t seed, uint64_t stream, float mean, float std);
void qw_rng_fill_uniform(float *x, size_t n, uint64_t seed, uint64_t stream, float lo, float hi);

#endif
