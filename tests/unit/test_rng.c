/* test_rng.c — Philox4x32-10 known answers, draws, bulk fills. */
#include <omp.h>
#include <stdint.h>

#include "qwtest.h"
#include "qw/rng.h"

TEST(philox_known_answers)
{
    /* Random123 kat_vectors: counter, key -> output */
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {~0u, ~0u, ~0u, ~0u, ~0u, ~0u, 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
         0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
    };
    for (int i = 0; i < 3; i++) {
        uint32_t out[4];
        qw_philox4x32(kat[i], kat[i] + 4, out);
        CHECK(!memcmp(out, kat[i] + 6, sizeof out));
    }
}

TEST(sequential)
{
    qw_rng a, b, c;
    qw_rng_init(&a, 42, 1);
    qw_rng_init(&b, 42, 1);
    qw_rng_init(&c, 42, 2);
    int same = 1, differ = 0;
    for (int i = 0; i < 100; i++) {
        uint32_t x = qw_rng_u32(&a);
        same &= x == qw_rng_u32(&b);
        differ |= x != qw_rng_u32(&c);
    }
    CHECK(same && differ);
    /* a saved state resumes the same sequence */
    qw_rng saved = a;
    double u = qw_rng_normal(&a), v = qw_rng_normal(&saved);
    CHECK(u == v);
    double s = 0, s2 = 0, umin = 1, umax = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        double z = qw_rng_normal(&a), w = qw_rng_uniform(&b);
        s += z;
        s2 += z * z;
        umin = w < umin ? w : umin;
        umax = w > umax ? w : umax;
    }
    CHECK_NEAR(s / n, 0.0, 0.01);
    CHECK_NEAR(s2 / n, 1.0, 0.01);
    CHECK(umin >= 0 && umin < 1e-4 && umax < 1 && umax > 1 - 1e-4);
    int hist[7] = {0};
    for (int i = 0; i < 70000; i++) hist[qw_rng_below(&c, 7)]++;
    for (int k = 0; k < 7; k++) CHECK(hist[k] > 9500 && hist[k] < 10500);
}

TEST(shuffle_is_a_permutation)
{
    int v[1000], seen[1000] = {0}, moved = 0;
    for (int i = 0; i < 1000; i++) v[i] = i;
    qw_rng r;
    qw_rng_init(&r, 5, 0);
    qw_rng_shuffle(&r, v, 1000, sizeof *v);
    for (int i = 0; i < 1000; i++) { seen[v[i]]++; moved += v[i] != i; }
    int ok = 1;
    for (int i = 0; i < 1000; i++) ok &= seen[i] == 1;
    CHECK(ok && moved > 900);
}

TEST(bulk_fills)
{
    enum { N = 300001 };
    static float a[N], b[N], c[5];
    omp_set_num_threads(1);
    qw_rng_fill_normal(a, N, 9, 77, 0.5f, 2.0f);
    omp_set_num_threads(2);
    qw_rng_fill_normal(b, N, 9, 77, 0.5f, 2.0f);
    CHECK(!memcmp(a, b, sizeof a));               /* independent of the thread count */
    qw_rng_fill_normal(c, 5, 9, 77, 0.5f, 2.0f);
    CHECK(!memcmp(a, c, sizeof c));               /* element i depends only on i */
    double s = 0, s2 = 0;
    for (int i = 0; i < N; i++) { s += a[i]; s2 += (a[i] - 0.5) * (a[i] - 0.5); }
    CHECK_NEAR(s / N, 0.5, 0.02);
    CHECK_NEAR(sqrt(s2 / N), 2.0, 0.02);
    qw_rng_fill_uniform(b, N, 9, 78, -1.0f, 3.0f);
    float lo = 9, hi = -9;
    for (int i = 0; i < N; i++) { lo = b[i] < lo ? b[i] : lo; hi = b[i] > hi ? b[i] : hi; }
    CHECK(lo >= -1.0f && lo < -0.99f && hi < 3.0f && hi > 2.99f);
}

int main(void)
{
    PLAN(4);
    RUN(philox_known_answers);
    RUN(sequential);
    RUN(shuffle_is_a_permutation);
    RUN(bulk_fills);
    return qwtest_finish();
}
