/* comm.c — collectives: single process and MPI (CPU buffers). */
#include "qw/comm.h"

#include <errno.h>
#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qw/cli.h"
#include "qw/file.h"
#ifdef QW_HAVE_NCCL
#include "../kernels/cuda/qwcuda.h"
#endif

typedef enum { K_SINGLE, K_MPI, K_NCCL } kind;

struct qw_comm {
    kind kind;
    int rank, size;
    int world;           /* owns MPI_Init: finalize on free */
    int has_mpi;         /* mc is an MPI communicator (mpi; nccl bootstrapped through MPI) */
    MPI_Comm mc;
#ifdef QW_HAVE_NCCL
    qw_nccl *nc;         /* nccl: the device collectives */
#endif
};

size_t qw_comm_chunk = INT_MAX;

static int mpi_fail(const char *op, int rc)
{
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(rc, s, &n);
    return qw_error(QW_EXIT_FAIL, "'%s': %s", op, s);
}

/* ---- the watchdog (qw/comm.h) ---- */

static double wd_timeout = 600;
static atomic_llong wd_deadline;          /* CLOCK_MONOTONIC ns; 0: no call in progress */
static const char *_Atomic wd_op;
static char wd_label[64];
static int wd_rank;
static pthread_t wd_thread;
static int wd_started;

static long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void qw_comm_set_timeout(double seconds) { wd_timeout = seconds > 0 ? seconds : 0; }
double qw_comm_timeout(void) { return wd_timeout; }
void qw_comm_set_label(const char *label) { snprintf(wd_label, sizeof wd_label, "%s", label ? label : ""); }

static void *wd_main(void *arg)
{
    (void)arg;
    for (;;) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        long long d = atomic_load(&wd_deadline);
        if (d && mono_ns() > d) {
            char line[320];
            int n = snprintf(line, sizeof line, "%s: rank %d: '%s'%s%s%s did not finish within %g s: another rank "
                             "died or hangs; stopping\n", qw_prog ? qw_prog : "qw", wd_rank, atomic_load(&wd_op),
                             wd_label[0] ? " (" : "", wd_label, wd_label[0] ? ")" : "", wd_timeout);
            if (n > (int)sizeof line - 1) n = (int)sizeof line - 1;
            if (write(2, line, (size_t)n) < 0) {}
            _exit(QW_EXIT_FAIL);
        }
    }
    return NULL;
}

static void wd_start(int rank)
{
    const char *e = getenv("QW_COMM_TIMEOUT");
    if (e && *e) {
        char *end;
        double v = strtod(e, &end);
        if (end != e && !*end && v >= 0) wd_timeout = v;
        else qw_warn("QW_COMM_TIMEOUT: '%s' is not a number of seconds; keeping %g", e, wd_timeout);
    }
    wd_rank = rank;
    if (wd_started) return;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&wd_thread, &a, wd_main, NULL) == 0) wd_started = 1;
    pthread_attr_destroy(&a);
}

/* around every blocking call of a communicator of several ranks */
static void wd_enter(const qw_comm *c, const char *op)
{
    if (!wd_started || c->size < 2 || wd_timeout <= 0) return;
    atomic_store(&wd_op, op);
    atomic_store(&wd_deadline, mono_ns() + (long long)(wd_timeout * 1e9));
}
static void wd_leave(void) { atomic_store(&wd_deadline, 0); }

static int mpi_call(const qw_comm *c, const char *op, int rc)
{
    (void)c;
    wd_leave();
    return rc == MPI_SUCCESS ? 0 : mpi_fail(op, rc);
}
#define MPI_TRY(op, call) do { wd_enter(c, op); int rc_ = mpi_call(c, op, (call)); if (rc_) return rc_; } while (0)

/* ---- the launcher's view, from the environment ---- */

/* *v ← the integer in variable name; 1 if set, 0 if unset, -1 (with an
 * error) if set but not an integer in [lo, INT_MAX] */
static int env_int(const char *name, int lo, int *v)
{
    const char *s = getenv(name);
    if (!s) return 0;
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (end == s || *end || errno || x < lo || x > INT_MAX) {
        qw_error(QW_EXIT_FAIL, "'%s': '%s' is not an integer of at least %d (launcher environment)", name, s, lo);
        return -1;
    }
    *v = (int)x;
    return 1;
}

/* Slurm's per-node task counts, "2(x3),1": the count of node `node` */
static int slurm_node_tasks(const char *s, int node)
{
    int at = 0;
    while (*s) {
        char *end;
        long n = strtol(s, &end, 10), k = 1;
        if (end == s || n < 0) return 0;
        s = end;
        if (!strncmp(s, "(x", 2)) {
            k = strtol(s + 2, &end, 10);
            if (end == s + 2 || *end != ')' || k < 1) return 0;
            s = end + 1;
        }
        if (node < at + k) return n > INT_MAX ? 0 : (int)n;
        at += (int)k;
        if (*s == ',') s++;
        else if (*s) return 0;
    }
    return 0;
}

int qw_launch_detect(qw_launch *l)
{
    memset(l, 0, sizeof *l);
    l->local_rank = -1;
    int r = 0, n = 0, a, b;
    const char *srun = getenv("SLURM_STEP_ID") ? "SLURM_NTASKS" : NULL;   /* inside srun, not a batch script */
    if ((a = env_int("OMPI_COMM_WORLD_RANK", 0, &r)) < 0 || (b = env_int("OMPI_COMM_WORLD_SIZE", 1, &n)) < 0) return QW_EXIT_FAIL;
    if (a && b) l->launcher = "Open MPI (OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE)";
    if (!l->launcher) {
        if ((a = env_int("PMI_RANK", 0, &r)) < 0 || (b = env_int("PMI_SIZE", 1, &n)) < 0) return QW_EXIT_FAIL;
        if (a && b) l->launcher = "PMI (MPICH, Intel MPI or srun --mpi=pmi2: PMI_RANK, PMI_SIZE)";
    }
    if (!l->launcher) {
        if ((a = env_int("PMIX_RANK", 0, &r)) < 0 || (srun && env_int(srun, 1, &n) < 0)) return QW_EXIT_FAIL;
        if (a) l->launcher = srun ? "PMIx (PMIX_RANK, SLURM_NTASKS)" : "PMIx (PMIX_RANK)";
        if (a && !srun) n = 0;   /* PMIx does not put the size in the environment */
    }
    if (!l->launcher && srun) {
        if ((a = env_int("SLURM_PROCID", 0, &r)) < 0 || (b = env_int(srun, 1, &n)) < 0) return QW_EXIT_FAIL;
        if (a && b) l->launcher = "srun (SLURM_PROCID, SLURM_NTASKS)";
    }
    if (!l->launcher) {   /* a job script's own processes, one per GPU: no MPI */
        if ((a = env_int("QW_RANK", 0, &r)) < 0 || (b = env_int("QW_WORLD_SIZE", 1, &n)) < 0) return QW_EXIT_FAIL;
        if (a && b) l->launcher = "a job script (QW_RANK, QW_WORLD_SIZE)";
    }
    if (!l->launcher) {
        l->size = 1;
        l->local_rank = 0;
        l->local_size = 1;
        return 0;
    }
    if (n && r >= n)
        return qw_error(QW_EXIT_FAIL, "launcher environment: rank %d of %d ranks (%s)", r, n, l->launcher);
    l->rank = r;
    l->size = n;
    /* the rank and the count on this node, from whichever launcher says */
    static const char *const lr[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMIX_LOCAL_RANK", "SLURM_LOCALID",
                                     "QW_LOCAL_RANK"};
    static const char *const ls[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMIX_LOCAL_SIZE", "QW_LOCAL_SIZE"};
    for (size_t i = 0; i < sizeof lr / sizeof *lr && l->local_rank < 0; i++)
        if ((a = env_int(lr[i], 0, &l->local_rank)) < 0) return QW_EXIT_FAIL;
    for (size_t i = 0; i < sizeof ls / sizeof *ls && !l->local_size; i++)
        if ((a = env_int(ls[i], 1, &l->local_size)) < 0) return QW_EXIT_FAIL;
    const char *per_node = getenv("SLURM_STEP_TASKS_PER_NODE");
    int node;
    if (!l->local_size && srun && per_node && env_int("SLURM_NODEID", 0, &node) > 0)
        l->local_size = slurm_node_tasks(per_node, node);
    if (l->local_rank < 0 && l->size == 1) l->local_rank = 0;
    if (!l->local_size && l->size == 1) l->local_size = 1;
    if (l->local_size && l->local_rank >= l->local_size)
        return qw_error(QW_EXIT_FAIL, "launcher environment: local rank %d of %d ranks on this node (%s)",
                        l->local_rank, l->local_size, l->launcher);
    return 0;
}

int qw_launch_gpu(const qw_launch *l, int n_visible, int share, int *dev)
{
    *dev = 0;
    if (n_visible < 1) return qw_error(QW_EXIT_FAIL, "no GPU visible");
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    char vis[160];
    snprintf(vis, sizeof vis, "%d GPU%s visible%s%.100s%s", n_visible, n_visible > 1 ? "s" : "",
             cvd ? " (CUDA_VISIBLE_DEVICES=" : "", cvd ? cvd : "", cvd ? ")" : "");
    if (l->local_rank < 0) {
        if (share) return 0;
        return qw_error(QW_EXIT_USAGE, "rank %d: its place on this node is unknown (%s sets none of "
                        "OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID, PMIX_LOCAL_RANK, SLURM_LOCALID), so no GPU "
                        "of the %s can be chosen for it; give --share-gpus to put every rank on GPU 0",
                        l->rank, l->launcher ? l->launcher : "the launcher", vis);
    }
    int ranks = l->local_size > l->local_rank ? l->local_size : l->local_rank + 1;
    if (ranks > n_visible && !share) {
        if (l->local_size)
            return qw_error(QW_EXIT_USAGE, "%d ranks on this node but %s: one GPU per rank; start at most %d "
                            "ranks per node, or give --share-gpus to let ranks share GPUs",
                            l->local_size, vis, n_visible);
        return qw_error(QW_EXIT_USAGE, "local rank %d (at least %d ranks on this node) but %s: one GPU per rank; "
                        "start at most %d ranks per node, or give --share-gpus to let ranks share GPUs",
                        l->local_rank, ranks, vis, n_visible);
    }
    *dev = l->local_rank % n_visible;
    return 0;
}

/* MPI for Open MPI and PMIx (as before, even for one rank), and for any
 * launcher of more than one rank */
static int use_mpi(const qw_launch *l)
{
    return l->launcher && strncmp(l->launcher, "a job script", 12) && (!strncmp(l->launcher, "Open MPI", 8) || !strncmp(l->launcher, "PMIx", 4) || l->size > 1);
}

int qw_comm_init(qw_comm **out) { return qw_comm_init_kind("auto", out); }

/* MPI_COMM_WORLD into c, checked against the launcher's view */
static int mpi_world(qw_comm *c, const qw_launch *l)
{
    int have;
    MPI_Initialized(&have);
    if (have) return qw_error(QW_EXIT_USAGE, "'mpi': already initialised");
    int provided;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return qw_error(QW_EXIT_FAIL, "'MPI_Init_thread': failed");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    c->world = 1;
    c->has_mpi = 1;
    c->mc = MPI_COMM_WORLD;
    MPI_Comm_rank(c->mc, &c->rank);
    MPI_Comm_size(c->mc, &c->size);
    if (c->size > 1) wd_start(c->rank);
    /* a launcher this MPI does not speak starts every process as rank
     * 0 of 1: N copies of one run writing the same files */
    int rank = c->rank, size = c->size;
    if ((l->size && size != l->size) || rank != l->rank) {
        MPI_Finalize();
        c->has_mpi = 0;
        return qw_error(QW_EXIT_FAIL,
                        "started as rank %d of %d by %s, but MPI counts rank %d of %d: this program's MPI "
                        "library does not speak that launcher; start it with the mpirun of the MPI it was "
                        "built with (or srun --mpi=pmix)",
                        l->rank, l->size ? l->size : size, l->launcher, rank, size);
    }
    return 0;
}

#ifdef QW_HAVE_NCCL
/* The NCCL unique id from rank 0: through MPI when there is MPI, else
 * through the file QW_NCCL_RENDEZVOUS names (rank 0 writes it atomically,
 * the others wait for it up to the watchdog's timeout). */
static int nccl_world(qw_comm *c, const qw_launch *l)
{
    char id[512];
    size_t idn = qw_nccl_id_bytes();
    if (idn > sizeof id) return qw_error(QW_EXIT_FAIL, "NCCL's unique id is %zu bytes", idn);
    const char *rv = getenv("QW_NCCL_RENDEZVOUS");
    if (use_mpi(l) && !(rv && *rv)) {
        int rc = mpi_world(c, l);
        if (rc) return rc;
        if (c->rank == 0 && qw_nccl_unique_id(id)) return qw_error(QW_EXIT_FAIL, "%s", qw_nccl_why());
        wd_enter(c, "MPI_Bcast");
        rc = MPI_Bcast(id, (int)idn, MPI_BYTE, 0, c->mc);
        wd_leave();
        if (rc != MPI_SUCCESS) return mpi_fail("MPI_Bcast", rc);
    } else {
        c->rank = l->launcher ? l->rank : 0;
        c->size = l->launcher ? l->size : 1;
        if (c->size < 1)
            return qw_error(QW_EXIT_USAGE, "'nccl': %s does not say how many ranks there are", l->launcher);
        if (c->size > 1) wd_start(c->rank);
        if (c->size > 1 && !(rv && *rv))
            return qw_error(QW_EXIT_USAGE, "'nccl': rank %d of %d without MPI: set QW_NCCL_RENDEZVOUS to a file "
                            "path all ranks see, new for each run", c->rank, c->size);
        if (c->rank == 0) {
            if (qw_nccl_unique_id(id)) return qw_error(QW_EXIT_FAIL, "%s", qw_nccl_why());
            if (c->size > 1 && qw_write_file_atomic(rv, id, idn)) return qw_error_status();
        } else {
            long long until = mono_ns() + (long long)((wd_timeout > 0 ? wd_timeout : 600) * 1e9);
            for (;;) {
                qw_buf b = {0};
                int found = 0;
                if (qw_read_file(rv, &b, &found)) return qw_error_status();
                size_t got = b.n;
                if (found && got == idn) memcpy(id, b.p, idn);
                qw_buf_free(&b);
                if (found && got == idn) break;
                if (found) return qw_error(QW_EXIT_DATA, "'%s': %zu bytes, not an NCCL unique id", rv, got);
                if (mono_ns() > until)
                    return qw_error(QW_EXIT_FAIL, "'%s': rank 0 did not write it within %g s (QW_NCCL_RENDEZVOUS)",
                                    rv, wd_timeout > 0 ? wd_timeout : 600);
                struct timespec ts = {0, 100 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
        }
    }
    wd_enter(c, "ncclCommInitRank");
    int rc = qw_nccl_init(&c->nc, id, c->size, c->rank);
    wd_leave();
    if (rc) return qw_error(QW_EXIT_FAIL, "%s", qw_nccl_why());
    c->kind = K_NCCL;
    return 0;
}
#endif

int qw_comm_init_kind(const char *k, qw_comm **out)
{
    *out = NULL;
    qw_launch l;
    if (strcmp(k, "auto") && strcmp(k, "single") && strcmp(k, "mpi") && strcmp(k, "nccl"))
        return qw_error(QW_EXIT_USAGE, "'%s': unknown communicator (single, mpi, nccl, auto)", k);
#ifndef QW_HAVE_NCCL
    if (!strcmp(k, "nccl")) return qw_error(QW_EXIT_USAGE, "'nccl': this build has no NCCL (a CUDA build with nccl.h has)");
#endif
    if (strcmp(k, "single") && qw_launch_detect(&l)) return qw_error_status();
    if (!strcmp(k, "mpi") && (!l.launcher || !strncmp(l.launcher, "a job script", 12))) return qw_error(QW_EXIT_USAGE, "'mpi': not started by mpirun or srun");
    qw_comm *c = qw_calloc(1, sizeof *c);
    c->size = 1;
    int rc = 0;
    if (!strcmp(k, "nccl")) {
#ifdef QW_HAVE_NCCL
        rc = nccl_world(c, &l);
#endif
    } else if (!strcmp(k, "auto") && l.launcher && !use_mpi(&l) && l.size != 1) {
        /* processes a job script started itself: only NCCL's rendezvous joins them */
#ifdef QW_HAVE_NCCL
        rc = nccl_world(c, &l);
#else
        rc = qw_error(QW_EXIT_USAGE, "started as rank %d of %d by %s, which only NCCL can join, and this build has "
                      "no NCCL; start the ranks with mpirun or srun", l.rank, l.size, l.launcher);
#endif
    } else if (!strcmp(k, "mpi") || (!strcmp(k, "auto") && use_mpi(&l))) {
        c->kind = K_MPI;
        rc = mpi_world(c, &l);
    }
    if (rc) {
        if (c->has_mpi) MPI_Finalize();
        free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int qw_comm_device(const qw_comm *c) { return c->kind == K_NCCL; }

int qw_comm_finalize(qw_comm *c)
{
    if (!c) return 0;
    int st = 0;
#ifdef QW_HAVE_NCCL
    if (c->nc && qw_nccl_free(c->nc)) st = qw_error(QW_EXIT_FAIL, "%s", qw_nccl_why());
#endif
    if (c->has_mpi) {
        int rc = c->world ? MPI_Finalize() : MPI_Comm_free(&c->mc);
        if (rc != MPI_SUCCESS) st = mpi_fail(c->world ? "MPI_Finalize" : "MPI_Comm_free", rc);
    }
    free(c);
    return st;
}

int qw_comm_rank(const qw_comm *c) { return c->rank; }
int qw_comm_size(const qw_comm *c) { return c->size; }
const char *qw_comm_kind(const qw_comm *c) { return c->kind == K_MPI ? "mpi" : c->kind == K_NCCL ? "nccl" : "single"; }

#ifdef QW_HAVE_NCCL
/* a device collective queued (the deadline covers the queueing; the
 * waiting happens in qw_comm_wait and the host-value collectives) */
#define NCCL_DO(op, call) do { wd_enter(c, op); int r_ = (call); wd_leave(); \
        return r_ ? qw_error(QW_EXIT_FAIL, "%s", qw_nccl_why()) : 0; } while (0)
#endif

int qw_comm_split(qw_comm *c, int color, int key, qw_comm **out)
{
    *out = NULL;
    qw_comm *s = qw_calloc(1, sizeof *s);
    s->kind = c->kind;
    s->size = 1;
#ifdef QW_HAVE_NCCL
    if (c->kind == K_NCCL) {
        wd_enter(c, "ncclCommSplit");
        int rc = qw_nccl_split(c->nc, color, key, &s->nc);
        wd_leave();
        if (rc) { free(s); return qw_error(QW_EXIT_FAIL, "%s", qw_nccl_why()); }
        s->rank = qw_nccl_rank(s->nc);
        s->size = qw_nccl_size(s->nc);
    }
#endif
    if (c->has_mpi) {
        s->has_mpi = 1;
        wd_enter(c, "MPI_Comm_split");
        int rc = MPI_Comm_split(c->mc, color, key, &s->mc);
        wd_leave();
        if (rc != MPI_SUCCESS) { free(s); return mpi_fail("MPI_Comm_split", rc); }
        MPI_Comm_set_errhandler(s->mc, MPI_ERRORS_RETURN);
        MPI_Comm_rank(s->mc, &s->rank);
        MPI_Comm_size(s->mc, &s->size);
    }
    *out = s;
    return 0;
}

int qw_comm_barrier(qw_comm *c)
{
#ifdef QW_HAVE_NCCL
    if (c->kind == K_NCCL) {
        int rc = qw_comm_wait(c);
        double one = 1;
        if (!rc && !c->has_mpi) rc = qw_comm_allreduce_f64(c, &one, 1);
        if (rc || !c->has_mpi) return rc;
    }
#endif
    if (c->has_mpi) MPI_TRY("MPI_Barrier", MPI_Barrier(c->mc));
    return 0;
}

int qw_comm_wait(qw_comm *c)
{
#ifdef QW_HAVE_NCCL
    if (c->kind == K_NCCL) {
        wd_enter(c, "NCCL stream");
        int rc = qw_nccl_wait(c->nc);
        wd_leave();
        if (rc) return qw_error(QW_EXIT_FAIL, "%s", qw_nccl_why());
    }
#endif
    return 0;
}

static int allreduce(qw_comm *c, void *buf, size_t n, size_t elem, MPI_Datatype t)
{
    if (!c->has_mpi) return 0;
    for (size_t off = 0; off < n; off += qw_comm_chunk) {
        size_t k = n - off < qw_comm_chunk ? n - off : qw_comm_chunk;
        MPI_TRY("MPI_Allreduce", MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * elem, (int)k, t, MPI_SUM, c->mc));
    }
    return 0;
}

int qw_comm_allreduce_f32(qw_comm *c, float *buf, size_t n)
{
#ifdef QW_HAVE_NCCL
    if (c->kind == K_NCCL) NCCL_DO("ncclAllReduce", qw_nccl_allreduce_f32(c->nc, buf, n));
#endif
    return allreduce(c, buf, n, sizeof *buf, MPI_FLOAT);
}

int qw_comm_allreduce_f64(qw_comm *c, double *buf, size_t n)
{
#ifdef QW_HAVE_NCCL
    if (c->kind == K_NCCL && !c->has_mpi) NCCL_DO("ncclAllReduce (host values)", qw_nccl_allreduce_host_f64(c->nc, buf, n));
#endif
    return allreduce(c, buf, n, sizeof *buf, MPI_DOUBLE);
}

int qw_comm_bcast(qw_comm *c, void *buf, size_t bytes, int root)
{
    if (root < 0 || root >= c->size) return qw_error(QW_EXIT_USAGE, "'bcast': root %d of %d ranks", root, c->size);
#ifdef QW_HAVE_NCCL
    if (c->kind == K_NCCL) NCCL_DO("ncclBroadcast", qw_nccl_bcast(c->nc, buf, bytes, root));
#endif
    if (c->kind != K_MPI) return 0;
    for (size_t off = 0; off < bytes; off += qw_comm_chunk) {
        size_t k = bytes - off < qw_comm_chunk ? bytes - off : qw_comm_chunk;
        MPI_TRY("MPI_Bcast", MPI_Bcast((char *)buf + off, (int)k, MPI_BYTE, root, c->mc));
    }
    return 0;
}

int qw_comm_allgather(qw_comm *c, const void *send, void *recv, size_t bytes)
{
#ifdef QW_HAVE_NCCL
    if (c->kind == K_NCCL) NCCL_DO("ncclAllGather", qw_nccl_allgather(c->nc, send, recv, bytes));
#endif
    char *mine = (char *)recv + (size_t)c->rank * bytes;
    if (c->kind != K_MPI) {
        if (send != mine) memmove(mine, send, bytes);
        return 0;
    }
    /* each piece: `k` bytes at offset off of every rank's block; the
     * receive type strides by a whole block */
    for (size_t off = 0; off < bytes; off += qw_comm_chunk) {
        size_t k = bytes - off < qw_comm_chunk ? bytes - off : qw_comm_chunk;
        MPI_Datatype piece, block;
        MPI_Type_contiguous((int)k, MPI_BYTE, &piece);
        MPI_Type_create_resized(piece, 0, (MPI_Aint)bytes, &block);
        MPI_Type_commit(&block);
        const void *s = send == mine ? MPI_IN_PLACE : (const char *)send + off;
        wd_enter(c, "MPI_Allgather");
        int rc = MPI_Allgather(s, (int)k, MPI_BYTE, (char *)recv + off, 1, block, c->mc);
        wd_leave();
        MPI_Type_free(&block);
        MPI_Type_free(&piece);
        if (rc != MPI_SUCCESS) return mpi_fail("MPI_Allgather", rc);
    }
    return 0;
}

int qw_comm_reduce_scatter_f32(qw_comm *c, const float *send, float *recv, size_t n)
{
#ifdef QW_HAVE_NCCL
    if (c->kind == K_NCCL) NCCL_DO("ncclReduceScatter", qw_nccl_reduce_scatter_f32(c->nc, send, recv, n));
#endif
    if (c->kind != K_MPI) {
        memcpy(recv, send, n * sizeof *recv);
        return 0;
    }
    if (n <= qw_comm_chunk) {
        MPI_TRY("MPI_Reduce_scatter_block",
                MPI_Reduce_scatter_block(send, recv, (int)n, MPI_FLOAT, MPI_SUM, c->mc));
        return 0;
    }
    /* pack piece [off, off + k) of every block contiguously, then reduce */
    float *tmp = qw_malloc(qw_comm_chunk * (size_t)c->size * sizeof *tmp);
    int st = 0;
    for (size_t off = 0; off < n && !st; off += qw_comm_chunk) {
        size_t k = n - off < qw_comm_chunk ? n - off : qw_comm_chunk;
        for (int r = 0; r < c->size; r++) memcpy(tmp + (size_t)r * k, send + (size_t)r * n + off, k * sizeof *tmp);
        wd_enter(c, "MPI_Reduce_scatter_block");
        int rc = MPI_Reduce_scatter_block(tmp, recv + off, (int)k, MPI_FLOAT, MPI_SUM, c->mc);
        wd_leave();
        if (rc != MPI_SUCCESS) st = mpi_fail("MPI_Reduce_scatter_block", rc);
    }
    free(tmp);
    return st;
}

int qw_comm_reduce_f32(qw_comm *c, float *buf, size_t n, int root)
{
    if (root < 0 || root >= c->size) return qw_error(QW_EXIT_USAGE, "'reduce': root %d of %d ranks", root, c->size);
#ifdef QW_HAVE_NCCL
    if (c->kind == K_NCCL) NCCL_DO("ncclReduce", qw_nccl_reduce_f32(c->nc, buf, n, root));
#endif
    if (c->kind != K_MPI) return 0;
    for (size_t off = 0; off < n; off += qw_comm_chunk) {
        size_t k = n - off < qw_comm_chunk ? n - off : qw_comm_chunk;
        float *b = buf + off;
        MPI_TRY("MPI_Reduce", MPI_Reduce(c->rank == root ? MPI_IN_PLACE : b, b, (int)k, MPI_FLOAT, MPI_SUM, root, c->mc));
    }
    return 0;
}

static int p2p_check(const qw_comm *c, const char *op, int peer, int tag)
{
    if (c->kind == K_SINGLE || peer < 0 || peer >= c->size || peer == c->rank || tag < 0 || tag > 32767)
        return qw_error(QW_EXIT_USAGE, "'%s': peer %d, tag %d: not another rank of these %d (%s)", op, peer, tag,
                        c->size, qw_comm_kind(c));
    return 0;
}

int qw_comm_send(qw_comm *c, const void *buf, size_t bytes, int peer, int tag)
{
    if (p2p_check(c, "send", peer, tag)) return qw_error_status();
#ifdef QW_HAVE_NCCL
    if (c->kind == K_NCCL) NCCL_DO("ncclSend", qw_nccl_send(c->nc, buf, bytes, peer));
#endif
    for (size_t off = 0; off < bytes || off == 0; off += qw_comm_chunk) {
        size_t k = bytes - off < qw_comm_chunk ? bytes - off : qw_comm_chunk;
        MPI_TRY("MPI_Send", MPI_Send((const char *)buf + off, (int)k, MPI_BYTE, peer, tag, c->mc));
        if (!bytes) break;
    }
    return 0;
}

int qw_comm_recv(qw_comm *c, void *buf, size_t bytes, int peer, int tag)
{
    if (p2p_check(c, "recv", peer, tag)) return qw_error_status();
#ifdef QW_HAVE_NCCL
    if (c->kind == K_NCCL) NCCL_DO("ncclRecv", qw_nccl_recv(c->nc, buf, bytes, peer));
#endif
    for (size_t off = 0; off < bytes || off == 0; off += qw_comm_chunk) {
        size_t k = bytes - off < qw_comm_chunk ? bytes - off : qw_comm_chunk;
        MPI_TRY("MPI_Recv", MPI_Recv((char *)buf + off, (int)k, MPI_BYTE, peer, tag, c->mc, MPI_STATUS_IGNORE));
        if (!bytes) break;
    }
    return 0;
}

/* ---- the device mesh ---- */

const char *const qw_axis_names[QW_AXES] = {"dp", "tp", "pp", "ep", "cp"};

int qw_mesh_make(int ranks, int rank, const int want[QW_AXES], qw_mesh *m)
{
    memset(m, 0, sizeof *m);
    for (int a = 0; a < QW_AXES; a++)
        if (want[a] < 0) return qw_error(QW_EXIT_USAGE, "--%s %d: must be at least 1", qw_axis_names[a], want[a]);
    long long tp = want[QW_AXIS_TP] ? want[QW_AXIS_TP] : 1, pp = want[QW_AXIS_PP] ? want[QW_AXIS_PP] : 1;
    long long cp = want[QW_AXIS_CP] ? want[QW_AXIS_CP] : 1, ep = want[QW_AXIS_EP] ? want[QW_AXIS_EP] : 1;
    long long model = tp * pp * cp, dp = want[QW_AXIS_DP];
    if (!dp) {
        if (ranks % model)
            return qw_error(QW_EXIT_USAGE, "--tp %lld × --pp %lld × --cp %lld = %lld ranks per data-parallel replica, "
                            "which does not divide the %d ranks started", tp, pp, cp, model, ranks);
        dp = ranks / model;
    }
    if (dp * model != ranks)
        return qw_error(QW_EXIT_USAGE, "--tp %lld × --pp %lld × --cp %lld × --dp %lld = %lld ranks, but %d %s started",
                        tp, pp, cp, dp, dp * model, ranks, ranks == 1 ? "was" : "were");
    if (dp % ep)
        return qw_error(QW_EXIT_USAGE, "--ep %lld does not divide the data-parallel size %lld (expert parallel is "
                        "carved out of data parallel)", ep, dp);
    m->ranks = ranks;
    m->rank = rank;
    m->size[QW_AXIS_DP] = (int)dp;
    m->size[QW_AXIS_TP] = (int)tp;
    m->size[QW_AXIS_PP] = (int)pp;
    m->size[QW_AXIS_CP] = (int)cp;
    m->size[QW_AXIS_EP] = (int)ep;
    int r = rank;
    m->coord[QW_AXIS_TP] = r % (int)tp; r /= (int)tp;
    m->coord[QW_AXIS_CP] = r % (int)cp; r /= (int)cp;
    m->coord[QW_AXIS_DP] = r % (int)dp; r /= (int)dp;
    m->coord[QW_AXIS_PP] = r;
    m->coord[QW_AXIS_EP] = m->coord[QW_AXIS_DP] % (int)ep;
    return 0;
}

int qw_mesh_rank_of(const qw_mesh *m, const int coord[QW_AXES])
{
    return ((coord[QW_AXIS_PP] * m->size[QW_AXIS_DP] + coord[QW_AXIS_DP]) * m->size[QW_AXIS_CP] + coord[QW_AXIS_CP]) *
               m->size[QW_AXIS_TP] + coord[QW_AXIS_TP];
}

int qw_mesh_comms(qw_comm *world, const qw_mesh *m, qw_comm *axis[QW_AXES])
{
    for (int a = 0; a < QW_AXES; a++) axis[a] = NULL;
    for (int a = 0; a < QW_AXES; a++) {
        /* color: the world rank with this axis's coordinate set to 0 (for
         * ep: the first rank of the expert group), so ranks that differ
         * only along the axis share it */
        int c[QW_AXES];
        memcpy(c, m->coord, sizeof c);
        if (a == QW_AXIS_EP) c[QW_AXIS_DP] -= m->coord[QW_AXIS_EP];
        else c[a] = 0;
        int rc = qw_comm_split(world, qw_mesh_rank_of(m, c), m->coord[a], &axis[a]);
        if (rc) {
            for (int b = 0; b < a; b++) { qw_comm_finalize(axis[b]); axis[b] = NULL; }
            return rc;
        }
    }
    return 0;
}
