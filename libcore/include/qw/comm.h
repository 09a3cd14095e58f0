/* qw/comm.h — collective communication between training ranks.
 *
 * One interface, several implementations chosen at init:
 *   single  one process: rank 0 of 1; collectives are copies or no-ops.
 *   mpi     Open MPI over CPU buffers (MPI_COMM_WORLD or a split of it).
 * (NCCL for GPU buffers will be a third, behind the same calls.)
 *
 * qw_comm_init picks mpi when the process was started by mpirun or srun
 * (OMPI_COMM_WORLD_SIZE or PMIX_RANK in the environment) and single
 * otherwise, so every program runs unchanged alone or under mpirun.  MPI is
 * initialised with MPI_THREAD_FUNNELED: only the thread that called
 * qw_comm_init may call the collectives (OpenMP regions inside a rank are
 * fine).
 *
 * Collectives are blocking, and every rank of the communicator must call
 * the same collective with the same sizes in the same order.  Buffers are
 * the caller's; nothing is retained after a call returns.  Sums of floats
 * are in the implementation's order (fixed for a given size and layout, so
 * a run is reproducible, but not bitwise equal to a serial sum).  Counts
 * are size_t: calls larger than MPI's int counts are split into pieces of
 * at most qw_comm_chunk elements.
 *
 * Errors: 0 or QW_EXIT_FAIL with a message naming the operation and the
 * MPI error string (qw/cli.h); QW_EXIT_USAGE for a bad argument (a root
 * out of range, "mpi" asked for without an MPI launcher).
 */
#ifndef QW_COMM_H
#define QW_COMM_H

#include <stddef.h>

typedef struct qw_comm qw_comm;

/* The world communicator: "mpi" under an MPI launcher, else "single". */
int qw_comm_init(qw_comm **out);
/* The same with the implementation named: "auto" (as qw_comm_init),
 * "single" (even under mpirun: every rank works alone) or "mpi". */
int qw_comm_init_kind(const char *kind, qw_comm **out);
/* Free a communicator; for the world communicator of "mpi" this also
 * finalizes MPI, so free split communicators first.  NULL is a no-op. */
int qw_comm_finalize(qw_comm *c);

int qw_comm_rank(const qw_comm *c);
int qw_comm_size(const qw_comm *c);
const char *qw_comm_kind(const qw_comm *c);    /* "single" or "mpi" */

/* Ranks with the same color form a new communicator, ordered by key (ties:
 * by rank here) — MPI_Comm_split; for mesh axes (dp, tp, pp …). */
int qw_comm_split(qw_comm *c, int color, int key, qw_comm **out);

int qw_comm_barrier(qw_comm *c);
/* In place: buf[i] ← Σ over ranks of buf[i]. */
int qw_comm_allreduce_f32(qw_comm *c, float *buf, size_t n);
int qw_comm_allreduce_f64(qw_comm *c, double *buf, size_t n);
/* `bytes` bytes from rank root's buf into every rank's buf. */
int qw_comm_bcast(qw_comm *c, void *buf, size_t bytes, int root);
/* recv (size · bytes) ← every rank's send (bytes each), in rank order.
 * send may be recv + rank · bytes (in place). */
int qw_comm_allgather(qw_comm *c, const void *send, void *recv, size_t bytes);
/* send holds size · n floats, block r for rank r; rank r's recv (n floats)
 * ← Σ over ranks of their block r.  send and recv must not overlap. */
int qw_comm_reduce_scatter_f32(qw_comm *c, const float *send, float *recv, size_t n);

/* The largest element count one MPI call is given (default INT_MAX);
 * larger collectives are split.  Tests lower it to exercise the split. */
extern size_t qw_comm_chunk;

#endif
