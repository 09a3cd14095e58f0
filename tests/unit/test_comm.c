/* test_comm.c — the collectives, checked against values each rank can work
 * out alone.  Run directly it tests the single-process communicator; under
 * `mpirun -np N` (tests/tools/test_comm_mpi.sh) every rank runs the same
 * cases on MPI and prints its own PASS/FAIL lines, preceded by a line
 * "comm <kind> <rank> <size>". */
#include "qwtest.h"
#include "qw/cli.h"
#include "qw/comm.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

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

    /* reduce to each root in turn: only the root's buffer changes */
    for (int root = 0; root < n; root++) {
        float x[K];
        for (int j = 0; j < K; j++) x[j] = (float)(r + 1) * (float)(j + 1);
        CHECK(qw_comm_reduce_f32(c, x, K, root) == 0);
        for (int j = 0; j < K; j++)
            CHECK(x[j] == (r == root ? (float)(n * (n + 1) / 2) * (float)(j + 1) : (float)(r + 1) * (float)(j + 1)));
    }
    /* a ring of point-to-point messages (sends before receives on even
     * ranks, the other way round on odd ones, so nothing waits forever) */
    if (n > 1) {
        unsigned char out[K + 3], in[K + 3];
        for (int i = 0; i < K + 3; i++) out[i] = (unsigned char)(r * 31 + i);
        int next = (r + 1) % n, prev = (r + n - 1) % n;
        if (r % 2 == 0) {
            CHECK(qw_comm_send(c, out, sizeof out, next, 7) == 0);
            CHECK(qw_comm_recv(c, in, sizeof in, prev, 7) == 0);
        } else {
            CHECK(qw_comm_recv(c, in, sizeof in, prev, 7) == 0);
            CHECK(qw_comm_send(c, out, sizeof out, next, 7) == 0);
        }
        for (int i = 0; i < K + 3; i++) CHECK(in[i] == (unsigned char)(prev * 31 + i));
    } else {
        unsigned char b1[2] = {0};
        CHECK(qw_comm_send(c, b1, 2, 0, 0) == QW_EXIT_USAGE);
    }
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
#ifndef QW_HAVE_NCCL
    CHECK(qw_comm_init_kind("nccl", &c) == QW_EXIT_USAGE && c == NULL);
    CHECK(strstr(qw_error_msg(), "this build has no NCCL") != NULL);
#endif
    CHECK(qw_comm_reduce_f32(world, (float *)b, 1, N) == QW_EXIT_USAGE);
    CHECK(qw_comm_init_kind("nccl2", &c) == QW_EXIT_USAGE && c == NULL);
    CHECK(strstr(qw_error_msg(), "'nccl2'") != NULL);
    /* alone: no launcher; under mpirun: MPI is already initialised */
    CHECK(qw_comm_init_kind("mpi", &c) == QW_EXIT_USAGE && c == NULL);
    CHECK(qw_comm_init_kind("single", &c) == 0);
    CHECK(qw_comm_size(c) == 1 && qw_comm_rank(c) == 0);
    CHECK(qw_comm_finalize(c) == 0);
}

/* The mesh: the sizes and the checks (plain arithmetic), then the
 * communicators of the world's own layout (dp = N, or tp 2 when N is even). */
TEST(mesh)
{
    qw_mesh m;
    int want[QW_AXES] = {0};
    want[QW_AXIS_TP] = 2;
    want[QW_AXIS_PP] = 2;
    CHECK(qw_mesh_make(8, 5, want, &m) == 0);
    CHECK(m.size[QW_AXIS_DP] == 2 && m.size[QW_AXIS_TP] == 2 && m.size[QW_AXIS_PP] == 2);
    /* 5 = ((pp·dp + dp_i)·cp + cp_i)·tp + tp_i with tp innermost: tp 1, dp 0, pp 1 */
    CHECK(m.coord[QW_AXIS_TP] == 1 && m.coord[QW_AXIS_DP] == 0 && m.coord[QW_AXIS_PP] == 1 && m.coord[QW_AXIS_CP] == 0);
    CHECK(qw_mesh_rank_of(&m, m.coord) == 5);
    for (int r = 0; r < 8; r++) {
        CHECK(qw_mesh_make(8, r, want, &m) == 0);
        CHECK(qw_mesh_rank_of(&m, m.coord) == r);
    }
    want[QW_AXIS_DP] = 3;
    CHECK(qw_mesh_make(8, 0, want, &m) == QW_EXIT_USAGE);
    CHECK(strstr(qw_error_msg(), "--tp 2 × --pp 2 × --cp 1 × --dp 3 = 12 ranks, but 8 were started") != NULL);
    want[QW_AXIS_DP] = 0;
    CHECK(qw_mesh_make(6, 0, want, &m) == QW_EXIT_USAGE);
    CHECK(strstr(qw_error_msg(), "does not divide the 6 ranks") != NULL);
    int ep[QW_AXES] = {0};
    ep[QW_AXIS_EP] = 4;
    CHECK(qw_mesh_make(6, 0, ep, &m) == QW_EXIT_USAGE);
    CHECK(strstr(qw_error_msg(), "--ep 4 does not divide the data-parallel size 6") != NULL);
    ep[QW_AXIS_EP] = 2;
    CHECK(qw_mesh_make(6, 3, ep, &m) == 0 && m.coord[QW_AXIS_DP] == 3 && m.coord[QW_AXIS_EP] == 1);
    ep[QW_AXIS_TP] = -1;
    CHECK(qw_mesh_make(6, 0, ep, &m) == QW_EXIT_USAGE);

    /* the world's communicators per axis */
    int mine[QW_AXES] = {0};
    if (N % 2 == 0) mine[QW_AXIS_TP] = 2;
    CHECK(qw_mesh_make(N, R, mine, &m) == 0);
    qw_comm *ax[QW_AXES];
    CHECK(qw_mesh_comms(world, &m, ax) == 0);
    for (int a = 0; a < QW_AXES; a++) {
        CHECK(qw_comm_size(ax[a]) == m.size[a]);
        CHECK(qw_comm_rank(ax[a]) == m.coord[a]);
        /* the sum of the world ranks along the axis: the others differ by the axis's stride */
        double x = R;
        CHECK(qw_comm_allreduce_f64(ax[a], &x, 1) == 0);
        int stride = a == QW_AXIS_TP ? 1 : a == QW_AXIS_DP || a == QW_AXIS_EP ? m.size[QW_AXIS_TP] : 0;
        int k = m.size[a], first = R - m.coord[a] * stride;
        CHECK(x == (double)k * first + (double)stride * k * (k - 1) / 2);
    }
    for (int a = 0; a < QW_AXES; a++) CHECK(qw_comm_finalize(ax[a]) == 0);
}

/* ---- launcher detection: each launcher's environment, simulated ---- */

static const char *const launch_vars[] = {
    "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE",
    "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "PMIX_RANK", "PMIX_LOCAL_RANK",
    "PMIX_LOCAL_SIZE", "SLURM_STEP_ID", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID",
    "SLURM_STEP_TASKS_PER_NODE", "SLURM_NODEID", "QW_RANK", "QW_WORLD_SIZE", "QW_LOCAL_RANK", "QW_LOCAL_SIZE",
};
enum { NV = sizeof launch_vars / sizeof *launch_vars };
static char *saved[NV];

static void env_clear(void)
{
    for (int i = 0; i < NV; i++) unsetenv(launch_vars[i]);
}

/* env_set("A=1 B=2"): a clean launcher environment with these variables */
static void env_set(const char *assignments)
{
    env_clear();
    char buf[512];
    snprintf(buf, sizeof buf, "%s", assignments);
    for (char *t = strtok(buf, " "); t; t = strtok(NULL, " ")) {
        char *eq = strchr(t, '=');
        *eq = 0;
        setenv(t, eq + 1, 1);
    }
}

/* detect in environment `e`: 0 and the fields, or the error status */
static int detect(const char *e, qw_launch *l)
{
    env_set(e);
    return qw_launch_detect(l);
}

#define LAUNCH(e, name, r, n, lr, ln)                                                     \
    do {                                                                                   \
        qw_launch l_;                                                                      \
        CHECK(detect(e, &l_) == 0);                                                        \
        CHECK(l_.launcher != NULL && strstr(l_.launcher, name) != NULL);                   \
        CHECK(l_.rank == (r) && l_.size == (n) && l_.local_rank == (lr) && l_.local_size == (ln)); \
    } while (0)

TEST(launchers_detected)
{
    for (int i = 0; i < NV; i++) saved[i] = getenv(launch_vars[i]) ? strdup(getenv(launch_vars[i])) : NULL;
    qw_launch l;
    CHECK(detect("", &l) == 0);
    CHECK(l.launcher == NULL && l.rank == 0 && l.size == 1 && l.local_rank == 0 && l.local_size == 1);
    LAUNCH("OMPI_COMM_WORLD_RANK=3 OMPI_COMM_WORLD_SIZE=4 OMPI_COMM_WORLD_LOCAL_RANK=1 OMPI_COMM_WORLD_LOCAL_SIZE=2 "
           "PMIX_RANK=3", "Open MPI", 3, 4, 1, 2);
    /* MPICH / Hydra */
    LAUNCH("PMI_RANK=5 PMI_SIZE=8 MPI_LOCALRANKID=1 MPI_LOCALNRANKS=4", "PMI", 5, 8, 1, 4);
    /* srun --mpi=pmi2: PMI_* and Slurm's own, per-node counts "3(x2),2" */
    LAUNCH("PMI_RANK=7 PMI_SIZE=8 SLURM_STEP_ID=0 SLURM_PROCID=7 SLURM_NTASKS=8 SLURM_LOCALID=1 "
           "SLURM_STEP_TASKS_PER_NODE=3(x2),2 SLURM_NODEID=2", "PMI", 7, 8, 1, 2);
    LAUNCH("SLURM_STEP_ID=0 SLURM_PROCID=4 SLURM_NTASKS=6 SLURM_LOCALID=1 SLURM_STEP_TASKS_PER_NODE=3(x2) "
           "SLURM_NODEID=1", "srun", 4, 6, 1, 3);
    LAUNCH("SLURM_STEP_ID=0 SLURM_PROCID=2 SLURM_NTASKS=3 SLURM_LOCALID=0 SLURM_STEP_TASKS_PER_NODE=1,2 "
           "SLURM_NODEID=1 PMIX_RANK=2", "PMIx", 2, 3, 0, 2);
    /* PMIx alone: no size in the environment */
    LAUNCH("PMIX_RANK=1", "PMIx", 1, 0, -1, 0);
    /* a batch script outside srun is not a launch */
    CHECK(detect("SLURM_PROCID=0 SLURM_NTASKS=4", &l) == 0 && l.launcher == NULL && l.size == 1);
    /* malformed or out of range: the message names the variable */
    CHECK(detect("PMI_RANK=0 PMI_SIZE=two", &l) == QW_EXIT_FAIL);
    CHECK(strstr(qw_error_msg(), "'PMI_SIZE'") != NULL);
    CHECK(detect("PMI_RANK=2 PMI_SIZE=2", &l) == QW_EXIT_FAIL);
    CHECK(detect("OMPI_COMM_WORLD_RANK=-1 OMPI_COMM_WORLD_SIZE=2", &l) == QW_EXIT_FAIL);
    CHECK(detect("PMI_RANK=1 PMI_SIZE=2 MPI_LOCALRANKID=2 MPI_LOCALNRANKS=2", &l) == QW_EXIT_FAIL);
    CHECK(strstr(qw_error_msg(), "local rank 2 of 2") != NULL);
    env_clear();
    for (int i = 0; i < NV; i++)
        if (saved[i]) setenv(launch_vars[i], saved[i], 1), free(saved[i]);
}

/* the GPU of a rank: its local rank among the visible devices, one GPU per
 * rank unless shared */
TEST(gpu_per_local_rank)
{
    char *cvd = getenv("CUDA_VISIBLE_DEVICES") ? strdup(getenv("CUDA_VISIBLE_DEVICES")) : NULL;
    unsetenv("CUDA_VISIBLE_DEVICES");
    int dev = -1;
    qw_launch alone = {NULL, 0, 1, 0, 1};
    CHECK(qw_launch_gpu(&alone, 8, 0, &dev) == 0 && dev == 0);
    /* 4 ranks on each node of a 2-node run, on 4 or 8 visible GPUs */
    for (int i = 0; i < 4; i++) {
        qw_launch l = {"Open MPI", 4 + i, 8, i, 4};
        CHECK(qw_launch_gpu(&l, 4, 0, &dev) == 0 && dev == i);
        CHECK(qw_launch_gpu(&l, 8, 0, &dev) == 0 && dev == i);
    }
    /* 4 ranks on 2 GPUs: refused on every rank, naming both counts */
    for (int i = 0; i < 4; i++) {
        qw_launch l = {"Open MPI", i, 4, i, 4};
        CHECK(qw_launch_gpu(&l, 2, 0, &dev) == QW_EXIT_USAGE);
        CHECK(strstr(qw_error_msg(), "4 ranks on this node but 2 GPUs visible") != NULL);
        CHECK(strstr(qw_error_msg(), "--share-gpus") != NULL);
        /* shared: round robin */
        CHECK(qw_launch_gpu(&l, 2, 1, &dev) == 0 && dev == i % 2);
    }
    /* the count on the node unknown: refused where the local rank has no GPU */
    qw_launch third = {"PMIx (PMIX_RANK)", 2, 0, 2, 0};
    CHECK(qw_launch_gpu(&third, 3, 0, &dev) == 0 && dev == 2);
    CHECK(qw_launch_gpu(&third, 2, 0, &dev) == QW_EXIT_USAGE);
    CHECK(strstr(qw_error_msg(), "local rank 2 (at least 3 ranks on this node) but 2 GPUs visible") != NULL);
    /* the place on the node unknown */
    qw_launch lost = {"PMIx (PMIX_RANK)", 1, 0, -1, 0};
    CHECK(qw_launch_gpu(&lost, 2, 0, &dev) == QW_EXIT_USAGE);
    CHECK(strstr(qw_error_msg(), "place on this node is unknown") != NULL);
    CHECK(qw_launch_gpu(&lost, 2, 1, &dev) == 0 && dev == 0);
    /* CUDA_VISIBLE_DEVICES has already narrowed the count; the message shows it */
    setenv("CUDA_VISIBLE_DEVICES", "2,3", 1);
    qw_launch l3 = {"PMI", 2, 3, 2, 3};
    CHECK(qw_launch_gpu(&l3, 2, 0, &dev) == QW_EXIT_USAGE);
    CHECK(strstr(qw_error_msg(), "3 ranks on this node but 2 GPUs visible (CUDA_VISIBLE_DEVICES=2,3)") != NULL);
    qw_launch l1 = {"PMI", 1, 3, 1, 2};
    CHECK(qw_launch_gpu(&l1, 2, 0, &dev) == 0 && dev == 1);
    CHECK(qw_launch_gpu(&l1, 0, 1, &dev) == QW_EXIT_FAIL);
    if (cvd) setenv("CUDA_VISIBLE_DEVICES", cvd, 1), free(cvd);
    else unsetenv("CUDA_VISIBLE_DEVICES");
}

/* detection and choice together: Hydra's rank 1 of 2 on a node with 2 GPUs */
TEST(gpu_from_launcher_environment)
{
    for (int i = 0; i < NV; i++) saved[i] = getenv(launch_vars[i]) ? strdup(getenv(launch_vars[i])) : NULL;
    qw_launch l;
    int dev = -1;
    CHECK(detect("PMI_RANK=3 PMI_SIZE=4 MPI_LOCALRANKID=1 MPI_LOCALNRANKS=2", &l) == 0);
    CHECK(qw_launch_gpu(&l, 2, 0, &dev) == 0 && dev == 1);
    CHECK(detect("SLURM_STEP_ID=0 SLURM_PROCID=5 SLURM_NTASKS=6 SLURM_LOCALID=2 SLURM_STEP_TASKS_PER_NODE=3(x2) "
                 "SLURM_NODEID=1", &l) == 0);
    CHECK(qw_launch_gpu(&l, 2, 0, &dev) == QW_EXIT_USAGE);
    CHECK(strstr(qw_error_msg(), "3 ranks on this node but 2 GPUs visible") != NULL);
    CHECK(qw_launch_gpu(&l, 4, 0, &dev) == 0 && dev == 2);
    env_clear();
    for (int i = 0; i < NV; i++)
        if (saved[i]) setenv(launch_vars[i], saved[i], 1), free(saved[i]);
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
    PLAN(9);
    RUN(init_matches_launcher);
    RUN(collectives_whole);
    RUN(collectives_in_pieces);
    RUN(split_by_parity);
    RUN(bad_arguments);
    RUN(mesh);
    RUN(launchers_detected);
    RUN(gpu_per_local_rank);
    RUN(gpu_from_launcher_environment);
    int st = qwtest_finish();
    if (qw_comm_finalize(world) != 0) st = 1;
    return st;
}
