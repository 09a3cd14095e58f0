/* test_comm.c — the collectives, checked against values each rank can work
 * out alone.  Run directly it tests the single-process communicator; under
 * `mpirun -np N` (tests/tools/test_comm_mpi.sh) every rank runs the same
 * cases on MPI and prints its own PASS/FAIL lines, preceded by a line
 * "comm <kind> <rank> <size>". */
#include "qwtest.h"
#include "qw/cli.h"
#include "qw/comm.h"

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

int main(void)
{
    if (qw_comm_init(&world) != 0) {
        printf("FAIL init: %s\n", qw_error_msg());
        return 1;
    }
    R = qw_comm_rank(world);
    N = qw_comm_size(world);
    printf("comm %s %d %d\n", qw_comm_kind(world), R, N);
    PLAN(5);
    RUN(init_matches_launcher);
    RUN(collectives_whole);
    RUN(collectives_in_pieces);
    RUN(split_by_parity);
    RUN(bad_arguments);
    int st = qwtest_finish();
    if (qw_comm_finalize(world) != 0) st = 1;
    return st;
}
