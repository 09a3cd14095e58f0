/* test_comm.c — the collectives, checked against values each rank can work
 * out alone.  Run directly it tests the single-process communicator; under
 * `mpirun -np N` (tests/tools/test_comm_mpi.sh) every rank runs the same
 * cases on MPI and prints its own PASS/FAIL lines, preceded by a line
 * "comm <kind> <rank> <size>". */
#include "qwtest.h"
#include "qw/cli.h"
#include "qw/comm.h"
#include "qw/optim.h"

#include <limits.h>

static qw_comm *world;
static int R, N;

static void collectives(qw_comm *c)
{
    int r = qw_comm_rank(c), n = qw_comm_size(c);
    enum { K = 10 };

    float f[K];
    double d[K];
    for (int i = 0; i < K; i++) f[i] = (float)r + 0.5f * (float)i, d[i] = 0.25 * r + 1e6 * i;   /* not exact in float */
    CHECK(qw_comm_allreduce_f32(c, f, K) == 0);
    CHECK(qw_comm_allreduce_f64(c, d, K) == 0);
    for (int i = 0; i < K; i++) {
        CHECK(f[i] == (float)(n * (n - 1) / 2) + 0.5f * (float)(n * i));
        CHECK(d[i] == 0.25 * (n * (n - 1) / 2) + 1e6 * n * i);
    }

    unsigned char b[K + 3];
    for (int i = 0; i < K + 3; i++) b[i] = r == n - 1 ? (unsigned char)(7 * i + 1) : 0;
    CHECK(qw_comm_bcast(c, b, sizeof b, n - 1) == 0);
    for (int i = 0; i < K + 3; i++) CHECK(b[i] == (unsigned char)(7 * i + 1));

    enum { B = 11 };   /* bytes per rank: not a multiple of the test chunk */
    unsigned char send[B], *all = calloc((size_t)n, B), *inplace = calloc((size_t)n, B);
    for (int i = 0; i < B; i++) send[i] = inplace[r * B + i] = (unsigned char)(r * 16 + i);
    CHECK(qw_comm_allgather(c, send, all, B) == 0);
    CHECK(qw_comm_allgather(c, inplace + r * B, inplace, B) == 0);
    for (int q = 0; q < n; q++)
        for (int i = 0; i < B; i++) {
            CHECK(all[q * B + i] == (unsigned char)(q * 16 + i));
            CHECK(inplace[q * B + i] == (unsigned char)(q * 16 + i));
        }
    free(all);
    free(inplace);

    /* rank q sends (q + 1)·(100·r + j) to rank r: rank r gets Σ(q+1)·(100·r + j) */
    float *rs = malloc((size_t)n * K * sizeof *rs), got[K];
    for (int q = 0; q < n; q++)
        for (int j = 0; j < K; j++) rs[q * K + j] = (float)(r + 1) * (float)(100 * q + j);
    CHECK(qw_comm_reduce_scatter_f32(c, rs, got, K) == 0);
    for (int j = 0; j < K; j++) CHECK(got[j] == (float)(n * (n + 1) / 2) * (float)(100 * r + j));
    free(rs);
    CHECK(qw_comm_barrier(c) == 0);
}

TEST(init_matches_launcher)
{
    const char *env = getenv("OMPI_COMM_WORLD_SIZE");
    CHECK_STR(qw_comm_kind(world), env ? "mpi" : "single");
    CHECK(N == (env ? atoi(env) : 1));
    CHECK(R >= 0 && R < N);
}

TEST(collectives_whole)
{
    collectives(world);
}

TEST(collectives_in_pieces)
{
    qw_comm_chunk = 3;
    collectives(world);
    qw_comm_chunk = INT_MAX;
}

TEST(split_by_parity)
{
    qw_comm *s;
    CHECK(qw_comm_split(world, R % 2, -R, &s) == 0);
    int want = N / 2 + (R % 2 == 0 ? N % 2 : 0);
    CHECK(qw_comm_size(s) == want);
    /* key −R orders the ranks of a color backwards */
    CHECK(qw_comm_rank(s) == (N - 1 - R) / 2);
    double one = 1;
    CHECK(qw_comm_allreduce_f64(s, &one, 1) == 0);
    CHECK(one == want);
    collectives(s);
    CHECK(qw_comm_finalize(s) == 0);
}

TEST(bad_arguments)
{
    char b[4];
    CHECK(qw_comm_bcast(world, b, 4, N) == QW_EXIT_USAGE);
    CHECK(strstr(qw_error_msg(), "root") != NULL);
    CHECK(qw_comm_bcast(world, b, 4, -1) == QW_EXIT_USAGE);
    qw_comm *c;
    CHECK(qw_comm_init_kind("nccl2", &c) == QW_EXIT_USAGE && c == NULL);
    CHECK(strstr(qw_error_msg(), "'nccl2'") != NULL);
    /* alone: no launcher; under mpirun: MPI is already initialised */
    CHECK(qw_comm_init_kind("mpi", &c) == QW_EXIT_USAGE && c == NULL);
    CHECK(qw_comm_init_kind("single", &c) == 0);
    CHECK(qw_comm_size(c) == 1 && qw_comm_rank(c) == 0);
    CHECK(qw_comm_finalize(c) == 0);
}

/* ZeRO-1 arithmetic: reduce-scatter the gradients, step only this rank's
 * shard of the arena with qw_adamw_step_range, all-gather the parameters.
 * It must equal the replicated step (all-reduce, full qw_adamw_step)
 * bitwise: gradients are small multiples of 1/8, so every sum is exact in
 * any order, and the tensors straddle shard boundaries. */
TEST(zero1_step_equals_replicated)
{
    static qw_param t[3] = {
        { .name = "a", .ndim = 1, .shape = {13}, .numel = 13, .offset = 0, .no_decay = 0 },
        { .name = "b", .ndim = 1, .shape = {5}, .numel = 5, .offset = 13, .no_decay = 1 },
        { .name = "c", .ndim = 2, .shape = {4, 5}, .numel = 20, .offset = 18, .no_decay = 0 },
    };
    size_t shard = (38 + (size_t)N - 1) / (size_t)N, total = shard * (size_t)N;
    float *p1 = calloc(total, 4), *p2 = calloc(total, 4), *g = calloc(total, 4), *gs = calloc(shard, 4);
    float *m1 = calloc(total, 4), *v1 = calloc(total, 4), *m2 = calloc(shard, 4), *v2 = calloc(shard, 4);
    qw_params P = { .n = 3, .p = t, .data = p1, .total = total }, G = P, M = P, V = P;
    G.data = g, M.data = m1, V.data = v1;
    for (size_t i = 0; i < total; i++) p1[i] = p2[i] = 0.01f * (float)i - 0.1f;
    qw_adamw o = qw_adamw_defaults();
    for (long step = 1; step <= 3; step++) {
        for (size_t i = 0; i < total; i++) g[i] = 0.125f * (float)(((size_t)R * 7 + i * 3 + (size_t)step) % 11) - 0.5f;
        CHECK(qw_comm_reduce_scatter_f32(world, g, gs, shard) == 0);
        CHECK(qw_comm_allreduce_f32(world, g, total) == 0);
        qw_adamw_step(&o, &P, &G, &M, &V, step, 1e-2, 1.0 / N);
        size_t lo = shard * (size_t)R;
        qw_adamw_step_range(&o, &P, lo, lo + shard, p2 + lo, gs, m2, v2, step, 1e-2, 1.0 / N);
        CHECK(qw_comm_allgather(world, p2 + lo, p2, shard * sizeof(float)) == 0);
    }
    CHECK(memcmp(p1, p2, total * sizeof(float)) == 0);
    CHECK(p1[0] != -0.1f);
    free(p1), free(p2), free(g), free(gs), free(m1), free(v1), free(m2), free(v2);
}

int main(void)
{
    if (qw_comm_init(&world) != 0) {
        printf("FAIL init: %s\n", qw_error_msg());
        return 1;
    }
    R = qw_comm_rank(world);
    N = qw_comm_size(world);
    printf("comm %s %d %d\n", qw_comm_kind(world), R, N);
    RUN(init_matches_launcher);
    RUN(collectives_whole);
    RUN(collectives_in_pieces);
    RUN(split_by_parity);
    RUN(zero1_step_equals_replicated);
    RUN(bad_arguments);
    int st = qwtest_finish();
    if (qw_comm_finalize(world) != 0) st = 1;
    return st;
}
