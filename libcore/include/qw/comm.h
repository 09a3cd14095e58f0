/* qw/comm.h — collective communication between training ranks.
 *
 * One interface, several implementations chosen at init:
 *   single  one process: rank 0 of 1; collectives are copies or no-ops.
 *   mpi     MPI over CPU buffers (MPI_COMM_WORLD or a split of it).
 *   nccl    NCCL over GPU buffers (CUDA builds with nccl.h: QW_HAVE_NCCL;
 *           elsewhere asking for it is QW_EXIT_USAGE).  Every buffer of a
 *           collective or point-to-point call is a device pointer of the
 *           current GPU, except qw_comm_allreduce_f64's (host values: loss
 *           sums, counts), which go through MPI when there is MPI, else
 *           through NCCL staged.  Calls queue the work on the
 *           communicator's own CUDA stream, ordered after the work already
 *           queued on the default stream (where the CUDA backend computes)
 *           and before any queued after, and return without waiting;
 *           qw_comm_wait waits.  Bootstrap: under an MPI launcher, MPI
 *           starts (as for "mpi", which then serves the host-value calls
 *           and barrier) and rank 0's ncclUniqueId is broadcast over it;
 *           without MPI (one process per GPU from a job script, or srun
 *           without --mpi) the rank and count come from the launcher's
 *           environment (qw_launch_detect, including QW_RANK and
 *           QW_WORLD_SIZE) and rank 0 writes the id atomically into the
 *           file QW_NCCL_RENDEZVOUS names (a path every rank sees, new for
 *           each run), which the others read when it appears (waiting up
 *           to the watchdog's timeout).  QW_NCCL_RENDEZVOUS set also
 *           forces the file under an MPI launcher.  One rank needs neither.
 *
 * qw_comm_init picks mpi when the process was started by a launcher
 * (qw_launch_detect: Open MPI's mpirun, PMIx, or more than one rank by
 * MPICH/Hydra, srun) and single otherwise, so every program runs unchanged
 * alone or under mpirun.  If MPI then counts other ranks than the
 * launcher's environment says (a launcher that this build's MPI library
 * does not speak starts every process as rank 0 of 1, all writing the
 * same files), init stops with QW_EXIT_FAIL and a message naming both,
 * before the caller writes anything.  MPI is
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

/* Where the launcher put this process, read from the environment; the
 * first launcher found wins:
 *   Open MPI mpirun      OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE
 *   PMI (MPICH/Hydra mpiexec, Intel MPI, srun --mpi=pmi2)
 *                        PMI_RANK, PMI_SIZE
 *   PMIx (srun --mpi=pmix, prterun)
 *                        PMIX_RANK; the size from SLURM_NTASKS under srun,
 *                        else unknown (0)
 *   srun (any --mpi)     SLURM_PROCID, SLURM_NTASKS, when SLURM_STEP_ID is
 *                        set (a batch script outside srun runs alone)
 *   a job script         QW_RANK, QW_WORLD_SIZE (and QW_LOCAL_RANK,
 *                        QW_LOCAL_SIZE): processes started one per GPU
 *                        without a launcher; no MPI, only "nccl" joins them
 * The rank and count on this node come from the first of
 * OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID, PMIX_LOCAL_RANK,
 * SLURM_LOCALID, QW_LOCAL_RANK and of OMPI_COMM_WORLD_LOCAL_SIZE,
 * MPI_LOCALNRANKS, PMIX_LOCAL_SIZE, QW_LOCAL_SIZE,
 * SLURM_STEP_TASKS_PER_NODE at SLURM_NODEID.
 * No launcher: launcher NULL, rank 0 of 1, local rank 0 of 1.
 * Errors: QW_EXIT_FAIL for a value that is not a number or a rank out of
 * its range (the message names the variable). */
typedef struct {
    const char *launcher;      /* its name and the variables read; NULL: none */
    int rank, size;            /* size 0: not told */
    int local_rank;            /* on this node; -1: not told */
    int local_size;            /* ranks on this node; 0: not told */
} qw_launch;
int qw_launch_detect(qw_launch *out);

/* The GPU for a rank at l: device l->local_rank among the n_visible
 * devices CUDA sees.  CUDA has applied CUDA_VISIBLE_DEVICES to them
 * (device i is the i-th listed), so ranks on a node restricted to
 * CUDA_VISIBLE_DEVICES=2,3 use GPUs 2 and 3.  One GPU per rank: more ranks
 * on the node than visible devices (or an unknown place on the node) is
 * QW_EXIT_USAGE with a message naming both counts, unless share (the
 * --share-gpus option), which puts rank i on device i mod n_visible
 * (device 0 when the place is unknown).  No visible GPU: QW_EXIT_FAIL.
 * Plain C; the backend calls it and sets the device before any CUDA
 * allocation (qw_backend_select). */
int qw_launch_gpu(const qw_launch *l, int n_visible, int share, int *dev);

/* The world communicator: "mpi" under an MPI launcher, "nccl" for
 * several ranks of a job script (QW_RANK), else "single". */
int qw_comm_init(qw_comm **out);
/* The same with the implementation named: "auto" (as qw_comm_init),
 * "single" (even under mpirun: every rank works alone), "mpi" or "nccl"
 * (QW_EXIT_USAGE in a build without NCCL, and for several ranks without
 * MPI or QW_NCCL_RENDEZVOUS). */
int qw_comm_init_kind(const char *kind, qw_comm **out);
/* Free a communicator; for the world communicator of "mpi" this also
 * finalizes MPI, so free split communicators first.  NULL is a no-op. */
int qw_comm_finalize(qw_comm *c);

int qw_comm_rank(const qw_comm *c);
int qw_comm_size(const qw_comm *c);
const char *qw_comm_kind(const qw_comm *c);    /* "single", "mpi" or "nccl" */
/* 1 when the buffers of the collectives are device pointers (nccl). */
int qw_comm_device(const qw_comm *c);
/* Wait until every collective queued on c has finished (nccl; a no-op
 * for the others, whose calls are blocking). */
int qw_comm_wait(qw_comm *c);

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

/* rank root's buf ← Σ over ranks of buf (n floats); the other ranks'
 * buf is only read.  For ZeRO's reduce-scatter of unequal shards. */
int qw_comm_reduce_f32(qw_comm *c, float *buf, size_t n, int root);
/* Point to point: `bytes` bytes to / from rank peer, with a tag in
 * [0, 32767]; blocking, matched in order.  A single communicator has no
 * peer: QW_EXIT_USAGE. */
int qw_comm_send(qw_comm *c, const void *buf, size_t bytes, int peer, int tag);
int qw_comm_recv(qw_comm *c, void *buf, size_t bytes, int peer, int tag);

/* ---- the watchdog ------------------------------------------------------
 * A rank that dies is usually noticed by the launcher (Open MPI's mpirun
 * ends the whole job within seconds of a rank killed by a signal), but a
 * rank that hangs (stopped, deadlocked, a stuck device, a launcher that
 * does not watch its processes) would leave the others waiting in a
 * collective forever.  So every collective and point-to-point call of a
 * communicator with more than one rank runs under a deadline: when it has
 * not returned after the timeout, a watchdog thread prints
 *     PROG: rank R: 'MPI_Allreduce' (step S) did not finish within T s: another rank died or hangs; stopping
 * and ends the process with QW_EXIT_FAIL (_exit: no MPI call from the
 * watchdog), which makes the launcher end the job.  The timeout is the
 * environment variable QW_COMM_TIMEOUT in seconds (read by init; default
 * 600, 0 turns the watchdog off), or qw_comm_set_timeout.  The label (the
 * "step S" above) is the caller's: qw_comm_set_label, e.g. the step being
 * taken.  Nothing of this changes what a collective computes. */
void qw_comm_set_timeout(double seconds);
double qw_comm_timeout(void);
void qw_comm_set_label(const char *label);

/* ---- the device mesh ---------------------------------------------------
 * The ranks form a grid dp × tp × pp × cp (expert parallel is carved out
 * of data parallel, as Megatron-LM does: ep divides dp, and the ep ranks of
 * an expert group are consecutive data-parallel ranks).  Rank → coordinates
 * follow Megatron-LM's default order, tensor parallel innermost (adjacent
 * ranks, the same node, share the busiest links) and pipeline parallel
 * outermost:
 *     rank = ((pp_i · dp + dp_i) · cp + cp_i) · tp + tp_i
 *     ep_i = dp_i mod ep
 * Every axis has a communicator of the ranks that differ only along it
 * (for ep: the ranks of one expert group, i.e. the same dp_i div ep); its
 * rank is the coordinate. */
enum { QW_AXIS_DP, QW_AXIS_TP, QW_AXIS_PP, QW_AXIS_EP, QW_AXIS_CP, QW_AXES };
extern const char *const qw_axis_names[QW_AXES];   /* "dp", "tp", "pp", "ep", "cp" */

typedef struct {
    int size[QW_AXES];         /* ≥ 1 each; dp · tp · pp · cp = the rank count */
    int coord[QW_AXES];        /* this rank's place */
    int rank, ranks;           /* in the world */
} qw_mesh;

/* The mesh for `ranks` ranks from the sizes asked for (want[a] ≤ 0: 1,
 * except dp: inferred as ranks / (tp · pp · cp)).  A product that is not
 * the rank count, a dp not divisible by ep, or a size < 0 is QW_EXIT_USAGE
 * naming the flags and the rank count (e.g. "--tp 2 × --pp 2 × --cp 1 ×
 * --dp 3 = 12 ranks, but 8 were started").  Plain arithmetic: no
 * communication, callable before MPI starts (qw_launch_detect's size). */
int qw_mesh_make(int ranks, int rank, const int want[QW_AXES], qw_mesh *m);
/* The world rank of the given coordinates (ep ignored: it is within dp). */
int qw_mesh_rank_of(const qw_mesh *m, const int coord[QW_AXES]);
/* A communicator per axis, split from `world` (whose rank and size the
 * mesh was made for): axis[a] for every a; free them with
 * qw_comm_finalize before the world. Collective over world. */
int qw_mesh_comms(qw_comm *world, const qw_mesh *m, qw_comm *axis[QW_AXES]);

/* The largest element count one MPI call is given (default INT_MAX);
 * larger collectives are split.  Tests lower it to exercise the split. */
extern size_t qw_comm_chunk;

#endif
