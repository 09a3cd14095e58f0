/* comm.c — collectives: single process and MPI (CPU buffers). */
#include "qw/comm.h"

#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "qw/cli.h"

typedef enum { K_SINGLE, K_MPI } kind;

struct qw_comm {
    kind kind;
    int rank, size;
    int world;           /* owns MPI_Init: finalize on free */
    MPI_Comm mc;
};

size_t qw_comm_chunk = INT_MAX;

static int mpi_fail(const char *op, int rc)
{
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    MPI_Error_string(rc, s, &n);
    return qw_error(QW_EXIT_FAIL, "'%s': %s", op, s);
}
#define MPI_TRY(op, call) do { int rc_ = (call); if (rc_ != MPI_SUCCESS) return mpi_fail(op, rc_); } while (0)

static int launched_by_mpi(void) { return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK"); }

int qw_comm_init(qw_comm **out) { return qw_comm_init_kind("auto", out); }

int qw_comm_init_kind(const char *k, qw_comm **out)
{
    *out = NULL;
    int mpi;
    if (!strcmp(k, "auto")) mpi = launched_by_mpi();
    else if (!strcmp(k, "single")) mpi = 0;
    else if (!strcmp(k, "mpi")) {
        if (!launched_by_mpi()) return qw_error(QW_EXIT_USAGE, "'mpi': not started by mpirun or srun");
        mpi = 1;
    } else return qw_error(QW_EXIT_USAGE, "'%s': unknown communicator (single, mpi, auto)", k);
    qw_comm *c = qw_calloc(1, sizeof *c);
    c->size = 1;
    if (mpi) {
        int have;
        MPI_Initialized(&have);
        if (have) { free(c); return qw_error(QW_EXIT_USAGE, "'mpi': already initialised"); }
        int provided;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            free(c);
            return qw_error(QW_EXIT_FAIL, "'MPI_Init_thread': failed");
        }
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        c->kind = K_MPI;
        c->world = 1;
        c->mc = MPI_COMM_WORLD;
        MPI_Comm_rank(c->mc, &c->rank);
        MPI_Comm_size(c->mc, &c->size);
    }
    *out = c;
    return 0;
}

int qw_comm_finalize(qw_comm *c)
{
    if (!c) return 0;
    int st = 0;
    if (c->kind == K_MPI) {
        int rc = c->world ? MPI_Finalize() : MPI_Comm_free(&c->mc);
        if (rc != MPI_SUCCESS) st = mpi_fail(c->world ? "MPI_Finalize" : "MPI_Comm_free", rc);
    }
    free(c);
    return st;
}

int qw_comm_rank(const qw_comm *c) { return c->rank; }
int qw_comm_size(const qw_comm *c) { return c->size; }
const char *qw_comm_kind(const qw_comm *c) { return c->kind == K_MPI ? "mpi" : "single"; }

int qw_comm_split(qw_comm *c, int color, int key, qw_comm **out)
{
    *out = NULL;
    qw_comm *s = qw_calloc(1, sizeof *s);
    s->kind = c->kind;
    s->size = 1;
    if (c->kind == K_MPI) {
        int rc = MPI_Comm_split(c->mc, color, key, &s->mc);
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
    if (c->kind == K_MPI) MPI_TRY("MPI_Barrier", MPI_Barrier(c->mc));
    return 0;
}

static int allreduce(qw_comm *c, void *buf, size_t n, size_t elem, MPI_Datatype t)
{
    if (c->kind != K_MPI) return 0;
    for (size_t off = 0; off < n; off += qw_comm_chunk) {
        size_t k = n - off < qw_comm_chunk ? n - off : qw_comm_chunk;
        MPI_TRY("MPI_Allreduce", MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * elem, (int)k, t, MPI_SUM, c->mc));
    }
    return 0;
}

int qw_comm_allreduce_f32(qw_comm *c, float *buf, size_t n) { return allreduce(c, buf, n, sizeof *buf, MPI_FLOAT); }
int qw_comm_allreduce_f64(qw_comm *c, double *buf, size_t n) { return allreduce(c, buf, n, sizeof *buf, MPI_DOUBLE); }

int qw_comm_bcast(qw_comm *c, void *buf, size_t bytes, int root)
{
    if (root < 0 || root >= c->size) return qw_error(QW_EXIT_USAGE, "'bcast': root %d of %d ranks", root, c->size);
    if (c->kind != K_MPI) return 0;
    for (size_t off = 0; off < bytes; off += qw_comm_chunk) {
        size_t k = bytes - off < qw_comm_chunk ? bytes - off : qw_comm_chunk;
        MPI_TRY("MPI_Bcast", MPI_Bcast((char *)buf + off, (int)k, MPI_BYTE, root, c->mc));
    }
    return 0;
}

int qw_comm_allgather(qw_comm *c, const void *send, void *recv, size_t bytes)
{
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
        int rc = MPI_Allgather(s, (int)k, MPI_BYTE, (char *)recv + off, 1, block, c->mc);
        MPI_Type_free(&block);
        MPI_Type_free(&piece);
        if (rc != MPI_SUCCESS) return mpi_fail("MPI_Allgather", rc);
    }
    return 0;
}

int qw_comm_reduce_scatter_f32(qw_comm *c, const float *send, float *recv, size_t n)
{
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
        int rc = MPI_Reduce_scatter_block(tmp, recv + off, (int)k, MPI_FLOAT, MPI_SUM, c->mc);
        if (rc != MPI_SUCCESS) st = mpi_fail("MPI_Reduce_scatter_block", rc);
    }
    free(tmp);
    return st;
}
