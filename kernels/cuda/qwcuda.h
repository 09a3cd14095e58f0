/* kernels/cuda/qwcuda.h — the CUDA backend beyond the op tables: device
 * status, the bf16 kernels that the "cuda" table is built from (tested
 * against the CPU ops by tests/gpu, timed by tests/bench/attn_cuda.*).
 *
 * The tables themselves are qw_ops_cuda() (bf16 activations) and
 * qw_ops_cuda_fp32() (qw/ops.h).  Every pointer here is
 * a device pointer unless said otherwise; bf16 buffers are `uint16_t` bit
 * patterns (__nv_bfloat16 on the device side) so that C code can hold them.
 *
 * Errors.  Like the table, these never return errors: a CUDA or cuBLAS
 * failure in the middle of a run prints "qw: cuda: WHAT: REASON" on stderr
 * and exits 1 (there is no sane way to continue with a broken device
 * context).  Only qw_ops_cuda() and qw_ops_cuda_fp32() report "no usable
 * GPU" softly: they return NULL and qw_cuda_why() says why.
 */
#ifndef QW_QWCUDA_H
#define QW_QWCUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Why qw_ops_cuda() returned NULL (static string; "" when it did not). */
const char *qw_cuda_why(void);

/* The number of GPUs this process sees (CUDA_VISIBLE_DEVICES applied;
 * 0 when there are none or the driver fails).  Makes no context. */
int qw_cuda_device_count(void);
/* Use visible device dev (default 0): call before the first
 * qw_ops_cuda() or qw_ops_cuda_fp32(), which make the context on it
 * (cudaSetDevice) before any allocation.  0, or -1 when the device is
 * already fixed to another.  qw_backend_select calls it with the rank's
 * GPU (qw_launch_gpu in qw/comm.h). */
int qw_cuda_set_device(int dev);

/* Grow the backend's scratch (per-block partial sums of some ops) to at
 * least `bytes` now.  Graphs recorded before a growth are stale
 * (qw_ops.graph_launch returns nonzero); reserving ahead avoids that. */
void qw_cuda_scratch_reserve(size_t bytes);

/* C = alpha·op(A)·op(B) + beta·C, row-major as qw_ops.gemm, with A and B
 * bf16, fp32 accumulation (cuBLASLt, tensor cores), and C fp32 when c_fp32
 * else bf16. */
void qw_cuda_gemm_bf16(int ta, int tb, int m, int n, int k, float alpha, const uint16_t *A, int lda,
                       const uint16_t *B, int ldb, float beta, void *C, int ldc, int c_fp32);

/* Flash attention on tensor cores (flash_fwd.cu, flash_bwd.cu): the
 * semantics of qw_ops.attn_fwd / attn_bwd (layouts, causal document
 * segments through kv_start, GQA, natural-log lse) with q, k, v, o, dout,
 * dq, dk, dv bf16, lse fp32, fp32 accumulation, head_dim d of 64 or 128.
 * The backward needs a workspace of qw_cuda_flash_workspace(B, T, nh, d)
 * bytes (fp32 dq accumulator and the row sums of dout·o); with
 * deterministic set it gives bit-identical results run to run (no
 * floating-point atomics), otherwise it may accumulate dq with atomics. */
size_t qw_cuda_flash_workspace(int B, int T, int nh, int d);
void qw_cuda_flash_fwd(uint16_t *o, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                       const int32_t *kv_start, int B, int T, int nh, int nkv, int d, float scale);
void qw_cuda_flash_bwd(uint16_t *dq, uint16_t *dk, uint16_t *dv, const uint16_t *dout, const uint16_t *q,
                       const uint16_t *k, const uint16_t *v, const uint16_t *o, const float *lse,
                       const int32_t *kv_start, int B, int T, int nh, int nkv, int d, float scale,
                       int deterministic, void *ws, size_t ws_bytes);

/* ---- NCCL (nccl.cu; built when nccl.h is found: QW_HAVE_NCCL) ----------
 * The device half of qw/comm.h's "nccl" communicators.  Buffers are device
 * pointers (allreduce_host_f64: host values, staged and waited for).  Each
 * communicator has its own non-blocking stream: a collective waits (by an
 * event) for the work queued so far on the default stream, where every op
 * runs, and the default stream's later work waits for the collective, so
 * the host never blocks on one (qw_nccl_wait does).  Errors: 0, or -1 with
 * the reason in qw_nccl_why(). */
typedef struct qw_nccl qw_nccl;
const char *qw_nccl_why(void);
size_t qw_nccl_id_bytes(void);                 /* sizeof(ncclUniqueId): 128 */
int qw_nccl_unique_id(void *id);
int qw_nccl_init(qw_nccl **out, const void *id, int size, int rank);   /* ncclCommInitRank */
int qw_nccl_split(qw_nccl *c, int color, int key, qw_nccl **out);     /* ncclCommSplit */
int qw_nccl_rank(const qw_nccl *c);
int qw_nccl_size(const qw_nccl *c);
int qw_nccl_free(qw_nccl *c);
int qw_nccl_allreduce_f32(qw_nccl *c, float *buf, size_t n);
int qw_nccl_reduce_f32(qw_nccl *c, float *buf, size_t n, int root);
int qw_nccl_bcast(qw_nccl *c, void *buf, size_t bytes, int root);
int qw_nccl_allgather(qw_nccl *c, const void *send, void *recv, size_t bytes);
int qw_nccl_reduce_scatter_f32(qw_nccl *c, const float *send, float *recv, size_t n);
int qw_nccl_send(qw_nccl *c, const void *buf, size_t bytes, int peer);
int qw_nccl_recv(qw_nccl *c, void *buf, size_t bytes, int peer);
int qw_nccl_allreduce_host_f64(qw_nccl *c, double *v, size_t n);
int qw_nccl_wait(qw_nccl *c);

#ifdef __cplusplus
}
#endif

#endif
