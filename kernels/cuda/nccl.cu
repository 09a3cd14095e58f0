// nccl.cu — NCCL communicators for qw/comm.h's "nccl" kind (qwcuda.h,
// "NCCL").  Collectives run on the communicator's own non-blocking stream,
// ordered after the work queued so far on the default stream (where every
// op runs) by an event, and the default stream waits for them by another
// event: the host does not block, and compute queued before a collective
// overlaps the collective's launch.
#include <cuda_runtime.h>
#include <nccl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qwcuda.h"

struct qw_nccl {
    ncclComm_t comm;
    cudaStream_t stream;
    cudaEvent_t before, after;
    double *scratch;   // host f64 values staged here (allreduce_host_f64)
    size_t scratch_n;
    int rank, size;
};

static char why[256];
const char *qw_nccl_why(void) { return why; }

static int nccl_fail(const char *op, ncclResult_t r)
{
    snprintf(why, sizeof why, "'%s': %s", op, ncclGetErrorString(r));
    return -1;
}
static int cuda_fail(const char *op, cudaError_t e)
{
    snprintf(why, sizeof why, "'%s': %s", op, cudaGetErrorString(e));
    return -1;
}
#define NCCL_TRY(op, call) do { ncclResult_t r_ = (call); if (r_ != ncclSuccess) return nccl_fail(op, r_); } while (0)
#define CUDA_TRY(op, call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) return cuda_fail(op, e_); } while (0)

extern "C" size_t qw_nccl_id_bytes(void) { return sizeof(ncclUniqueId); }

extern "C" int qw_nccl_unique_id(void *id)
{
    ncclUniqueId u;
    NCCL_TRY("ncclGetUniqueId", ncclGetUniqueId(&u));
    memcpy(id, &u, sizeof u);
    return 0;
}

static int make(qw_nccl **out, ncclComm_t comm, int rank, int size)
{
    qw_nccl *c = (qw_nccl *)calloc(1, sizeof *c);
    if (!c) { snprintf(why, sizeof why, "out of memory"); return -1; }
    c->comm = comm;
    c->rank = rank;
    c->size = size;
    cudaError_t e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&c->before, cudaEventDisableTiming);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&c->after, cudaEventDisableTiming);
    if (e != cudaSuccess) { free(c); return cuda_fail("cudaStreamCreate", e); }
    *out = c;
    return 0;
}

extern "C" int qw_nccl_init(qw_nccl **out, const void *id, int size, int rank)
{
    *out = NULL;
    ncclUniqueId u;
    memcpy(&u, id, sizeof u);
    ncclComm_t comm;
    NCCL_TRY("ncclCommInitRank", ncclCommInitRank(&comm, size, u, rank));
    if (make(out, comm, rank, size)) { ncclCommDestroy(comm); return -1; }
    return 0;
}

extern "C" int qw_nccl_split(qw_nccl *c, int color, int key, qw_nccl **out)
{
    *out = NULL;
    ncclComm_t comm;
    NCCL_TRY("ncclCommSplit", ncclCommSplit(c->comm, color, key, &comm, NULL));
    int rank, size;
    NCCL_TRY("ncclCommUserRank", ncclCommUserRank(comm, &rank));
    NCCL_TRY("ncclCommCount", ncclCommCount(comm, &size));
    if (make(out, comm, rank, size)) { ncclCommDestroy(comm); return -1; }
    return 0;
}

extern "C" int qw_nccl_rank(const qw_nccl *c) { return c->rank; }
extern "C" int qw_nccl_size(const qw_nccl *c) { return c->size; }

extern "C" int qw_nccl_free(qw_nccl *c)
{
    if (!c) return 0;
    int st = 0;
    if (cudaStreamSynchronize(c->stream) != cudaSuccess) st = -1;
    ncclResult_t r = ncclCommDestroy(c->comm);
    if (r != ncclSuccess) st = nccl_fail("ncclCommDestroy", r);
    cudaEventDestroy(c->before);
    cudaEventDestroy(c->after);
    cudaStreamDestroy(c->stream);
    cudaFree(c->scratch);
    free(c);
    return st;
}

// the collective's stream waits for the default stream's work so far
static int enter(qw_nccl *c)
{
    CUDA_TRY("cudaEventRecord", cudaEventRecord(c->before, 0));
    CUDA_TRY("cudaStreamWaitEvent", cudaStreamWaitEvent(c->stream, c->before, 0));
    return 0;
}
// and the default stream's later work waits for the collective
static int leave(qw_nccl *c)
{
    CUDA_TRY("cudaEventRecord", cudaEventRecord(c->after, c->stream));
    CUDA_TRY("cudaStreamWaitEvent", cudaStreamWaitEvent(0, c->after, 0));
    return 0;
}

extern "C" int qw_nccl_allreduce_f32(qw_nccl *c, float *buf, size_t n)
{
    if (enter(c)) return -1;
    NCCL_TRY("ncclAllReduce", ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, c->comm, c->stream));
    return leave(c);
}

extern "C" int qw_nccl_reduce_f32(qw_nccl *c, float *buf, size_t n, int root)
{
    if (enter(c)) return -1;
    NCCL_TRY("ncclReduce", ncclReduce(buf, buf, n, ncclFloat32, ncclSum, root, c->comm, c->stream));
    return leave(c);
}

extern "C" int qw_nccl_bcast(qw_nccl *c, void *buf, size_t bytes, int root)
{
    if (enter(c)) return -1;
    NCCL_TRY("ncclBroadcast", ncclBroadcast(buf, buf, bytes, ncclUint8, root, c->comm, c->stream));
    return leave(c);
}

extern "C" int qw_nccl_allgather(qw_nccl *c, const void *send, void *recv, size_t bytes)
{
    if (enter(c)) return -1;
    NCCL_TRY("ncclAllGather", ncclAllGather(send, recv, bytes, ncclUint8, c->comm, c->stream));
    return leave(c);
}

extern "C" int qw_nccl_reduce_scatter_f32(qw_nccl *c, const float *send, float *recv, size_t n)
{
    if (enter(c)) return -1;
    NCCL_TRY("ncclReduceScatter", ncclReduceScatter(send, recv, n, ncclFloat32, ncclSum, c->comm, c->stream));
    return leave(c);
}

extern "C" int qw_nccl_send(qw_nccl *c, const void *buf, size_t bytes, int peer)
{
    if (enter(c)) return -1;
    NCCL_TRY("ncclSend", ncclSend(buf, bytes, ncclUint8, peer, c->comm, c->stream));
    return leave(c);
}

extern "C" int qw_nccl_recv(qw_nccl *c, void *buf, size_t bytes, int peer)
{
    if (enter(c)) return -1;
    NCCL_TRY("ncclRecv", ncclRecv(buf, bytes, ncclUint8, peer, c->comm, c->stream));
    return leave(c);
}

// host values: staged through device scratch, waited for
extern "C" int qw_nccl_allreduce_host_f64(qw_nccl *c, double *v, size_t n)
{
    if (n > c->scratch_n) {
        cudaFree(c->scratch);
        c->scratch = NULL;
        c->scratch_n = 0;
        CUDA_TRY("cudaMalloc", cudaMalloc((void **)&c->scratch, n * sizeof(double)));
        c->scratch_n = n;
    }
    CUDA_TRY("cudaMemcpyAsync", cudaMemcpyAsync(c->scratch, v, n * sizeof(double), cudaMemcpyHostToDevice, c->stream));
    NCCL_TRY("ncclAllReduce", ncclAllReduce(c->scratch, c->scratch, n, ncclFloat64, ncclSum, c->comm, c->stream));
    CUDA_TRY("cudaMemcpyAsync", cudaMemcpyAsync(v, c->scratch, n * sizeof(double), cudaMemcpyDeviceToHost, c->stream));
    CUDA_TRY("cudaStreamSynchronize", cudaStreamSynchronize(c->stream));
    return 0;
}

extern "C" int qw_nccl_wait(qw_nccl *c)
{
    CUDA_TRY("cudaStreamSynchronize", cudaStreamSynchronize(c->stream));
    ncclResult_t async;
    NCCL_TRY("ncclCommGetAsyncError", ncclCommGetAsyncError(c->comm, &async));
    if (async != ncclSuccess) return nccl_fail("NCCL (asynchronous)", async);
    return 0;
}
