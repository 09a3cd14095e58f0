/* rng.c — Philox4x32-10, sequential and counter-based draws. */
#include "qw/rng.h"
#include "qw/cli.h"

#include <math.h>
#include <string.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void qw_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < 10; round++) {
        if (round) { k0 += PHILOX_W0; k1 += PHILOX_W1; }
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1, n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

static void block(uint64_t seed, uint64_t stream, uint64_t counter, uint32_t out[4])
{
    uint32_t ctr[4] = {(uint32_t)counter, (uint32_t)(counter >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    qw_philox4x32(ctr, key, out);
}

double qw_rng_uniform_at(uint64_t seed, uint64_t stream, uint64_t counter)
{
    uint32_t o[4];
    block(seed, stream, counter, o);
    return (double)(((uint64_t)o[0] << 32 | o[1]) >> 11) * 0x1p-53;
}

void qw_rng_init(qw_rng *r, uint64_t seed, uint64_t stream)
{
    memset(r, 0, sizeof *r);
    r->seed = seed;
    r->stream = stream;
    r->used = 4;
}

uint32_t qw_rng_u32(qw_rng *r)
{
    if (r->used == 4) {
        block(r->seed, r->stream, r->counter++, r->buf);
        r->used = 0;
    }
    return r->buf[r->used++];
}

uint64_t qw_rng_u64(qw_rng *r)
{
    uint64_t hi = qw_rng_u32(r);
    return hi << 32 | qw_rng_u32(r);
}

double qw_rng_uniform(qw_rng *r)
{
    return (double)(qw_rng_u64(r) >> 11) * 0x1p-53;
}

double qw_rng_normal(qw_rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return r->spare;
    }
    double u1 = 1.0 - qw_rng_uniform(r), u2 = qw_rng_uniform(r);
    double rad = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
    r->spare = rad * sin(th);
    r->has_spare = 1;
    return rad * cos(th);
}

uint64_t qw_rng_below(qw_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;   /* reject the uneven tail */
    uint64_t x;
    do x = qw_rng_u64(r); while (x >= limit);
    return x % n;
}

void qw_rng_shuffle(qw_rng *r, void *base, size_t n, size_t size)
{
    unsigned char *b = base, tmp[256];
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)qw_rng_below(r, i);
        if (j == i - 1) continue;
        unsigned char *x = b + (i - 1) * size, *y = b + j * size;
        for (size_t off = 0; off < size; off += sizeof tmp) {
            size_t k = size - off < sizeof tmp ? size - off : sizeof tmp;
            memcpy(tmp, x + off, k);
            memcpy(x + off, y + off, k);
            memcpy(y + off, tmp, k);
        }
    }
}

/* Element i of a bulk fill comes from word i%4 of block i/4. */
void qw_rng_fill_normal(float *x, size_t n, uint64_t seed, uint64_t stream, float mean, float std)
{
    size_t nb = (n + 3) / 4;
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t b = 0; b < nb; b++) {
        uint32_t w[4];
        block(seed, stream, b, w);
        for (int j = 0; j < 4; j += 2) {
            double u1 = ((w[j] >> 8) + 1) * 0x1p-24, u2 = (w[j + 1] >> 8) * 0x1p-24;
            double rad = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
            size_t i = 4 * b + j;
            if (i < n) x[i] = mean + std * (float)(rad * cos(th));
            if (i + 1 < n) x[i + 1] = mean + std * (float)(rad * sin(th));
        }
    }
}

void qw_rng_fill_uniform(float *x, size_t n, uint64_t seed, uint64_t stream, float lo, float hi)
{
    size_t nb = (n + 3) / 4;
    #pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t b = 0; b < nb; b++) {
        uint32_t w[4];
        block(seed, stream, b, w);
        for (int j = 0; j < 4 && 4 * b + j < n; j++) {
            float u = (float)((w[j] >> 8) * 0x1p-24);
            float v = lo + (hi - lo) * u;
            x[4 * b + j] = v < hi ? v : nextafterf(hi, lo);   /* rounding can reach hi */
        }
    }
}

long qw_rng_epoch_item(long k, long n, uint64_t seed, uint64_t stream, long **perm, long *perm_epoch)
{
    long epoch = k / n;
    if (!*perm || *perm_epoch != epoch) {
        if (!*perm) *perm = qw_malloc((size_t)n * sizeof **perm);
        for (long i = 0; i < n; i++) (*perm)[i] = i;
        qw_rng r;
        qw_rng_init(&r, seed, stream + (uint64_t)epoch);
        qw_rng_shuffle(&r, *perm, (size_t)n, sizeof **perm);
        *perm_epoch = epoch;
    }
    return (*perm)[k % n];
}
