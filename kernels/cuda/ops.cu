/* ops.cu — the two CUDA op tables: "cuda" (bf16 activations, cuBLASLt
 * GEMMs on tensor cores) and "cuda-fp32" (fp32 throughout, cuBLAS with
 * TF32 off).  This file holds the device check, memory (counted for
 * mem_stats), the GEMM dispatch and the tables; the other files fill in
 * the ops, each written once over the activation type.
 *
 * Everything runs on the per-thread default stream (the build's
 * --default-stream per-thread; the libraries are handed
 * cudaStreamPerThread) in issue order, which CUDA graphs can record. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unordered_map>

#include "internal.cuh"

cublasHandle_t qw_cuda_blas;
cublasLtHandle_t qw_cuda_lt;
int qw_cuda_deterministic;
int qw_cuda_batch_invariant;
static const char *why = "";

void qw_cuda_fatal(const char *what, const char *reason)
{
    fprintf(stderr, "qw: cuda: %s: %s\n", what, reason);
    exit(1);
}

static void blas_check(cublasStatus_t st, const char *what)
{
    if (st != CUBLAS_STATUS_SUCCESS) qw_cuda_fatal(what, cublasGetStatusString(st));
}

extern "C" const char *qw_cuda_why(void) { return why; }
static void cu_sync(void) { QW_CU(cudaDeviceSynchronize()); }

/* ---- memory: every cudaMalloc is counted (in use, peak) ---- */

static std::unordered_map<void *, size_t> sizes;
static size_t in_use, peak;

static void *tracked_malloc(size_t bytes)
{
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 64) != cudaSuccess) {
        cudaGetLastError();   /* clear the error: the context is fine */
        return NULL;
    }
    sizes[p] = bytes;
    in_use += bytes;
    if (in_use > peak) peak = in_use;
    return p;
}

void *qw_cuda_malloc(size_t bytes)
{
    void *p = tracked_malloc(bytes);
    if (!p) qw_cuda_fatal("workspace", "out of device memory");
    return p;
}

void qw_cuda_release(void *p)
{
    if (!p) return;
    auto it = sizes.find(p);
    if (it == sizes.end()) qw_cuda_fatal("free", "pointer not allocated by this backend");
    in_use -= it->second;
    sizes.erase(it);
    QW_CU(cudaFree(p));
}

unsigned long long qw_cuda_scratch_epoch;

void *qw_cuda_scratch(size_t bytes)
{
    static void *buf;
    static size_t cap;
    if (bytes > cap) {
        qw_cuda_scratch_epoch++;   /* graphs that recorded the old buffer are stale */
        qw_cuda_release(buf);
        cap = bytes > 2 * cap ? bytes : 2 * cap;
        buf = qw_cuda_malloc(cap);
    }
    return buf;
}

extern "C" void qw_cuda_scratch_reserve(size_t bytes) { qw_cuda_scratch(bytes); }

static void *cu_alloc(size_t bytes)
{
    void *p = tracked_malloc(bytes);
    if (p) QW_CU(cudaMemset(p, 0, bytes));
    return p;
}

/* zero and copy are in stream order without a host wait (as cudaMemset and a
 * device-to-device cudaMemcpy are), and the Async forms can be recorded */
static void cu_zero(void *p, size_t bytes) { QW_CU(cudaMemsetAsync(p, 0, bytes, cudaStreamPerThread)); }
static void cu_copy(void *dst, const void *src, size_t bytes)
{
    QW_CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cudaStreamPerThread));
}
static void cu_upload(void *dst, const void *src, size_t bytes) { QW_CU(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice)); }
static void cu_download(void *dst, const void *src, size_t bytes) { QW_CU(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost)); }
static void cu_set_threads(int n) {}
static void cu_set_deterministic(int on) { qw_cuda_deterministic = on != 0; }
static void cu_set_batch_invariant(int on) { qw_cuda_batch_invariant = on != 0; }

/* ---- graphs: the ops between graph_begin and graph_end recorded from the
 * per-thread stream; stale once the scratch they recorded is replaced ---- */

struct cu_graph {
    cudaGraphExec_t exec;
    unsigned long long epoch;
};
static unsigned long long capture_epoch;

static int cu_graph_begin(void)
{
    capture_epoch = qw_cuda_scratch_epoch;
    if (cudaStreamBeginCapture(cudaStreamPerThread, cudaStreamCaptureModeRelaxed) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    return 0;
}

static void *cu_graph_end(void)
{
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(cudaStreamPerThread, &g);
    if (e != cudaSuccess || !g) {
        cudaGetLastError();
        return NULL;
    }
    cudaGraphExec_t x;
    e = cudaGraphInstantiate(&x, g, 0);
    cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    if (capture_epoch != qw_cuda_scratch_epoch) {   /* the scratch moved while recording */
        cudaGraphExecDestroy(x);
        return NULL;
    }
    cu_graph *r = (cu_graph *)malloc(sizeof *r);
    if (!r) qw_cuda_fatal("graph", "out of host memory");
    r->exec = x, r->epoch = capture_epoch;
    return r;
}

static int cu_graph_launch(void *graph)
{
    cu_graph *g = (cu_graph *)graph;
    if (g->epoch != qw_cuda_scratch_epoch) return 1;
    QW_CU(cudaGraphLaunch(g->exec, cudaStreamPerThread));
    return 0;
}

static void cu_graph_free(void *graph)
{
    cu_graph *g = (cu_graph *)graph;
    if (!g) return;
    cudaGraphExecDestroy(g->exec);
    free(g);
}

static void cu_mem_stats(size_t *use, size_t *pk)
{
    *use = in_use;
    *pk = peak;
}

/* ---- GEMM: row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ ---- */

template <typename C>
__global__ void scale_matrix(C *c, int m, int n, int ldc, float beta)
{
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)m * n) return;
    C *p = c + (idx / n) * ldc + idx % n;
    qw_st(p, beta == 0 ? 0 : beta * qw_ld(p));
}

/* k = 0: the empty sum, C = beta·C (the BLAS libraries reject k = 0). */
static bool empty_product(int m, int n, int k, float beta, void *C, int ldc, int c_f32)
{
    if (m <= 0 || n <= 0) return true;
    if (k > 0) return false;
    unsigned g = qw_blocks((size_t)m * n, TPB);
    if (c_f32) scale_matrix<float><<<g, TPB>>>((float *)C, m, n, ldc, beta);
    else scale_matrix<bf16><<<g, TPB>>>((bf16 *)C, m, n, ldc, beta);
    QW_LAUNCHED("gemm (k = 0)");
    return true;
}

static void gemm_f32(int ta, int tb, int m, int n, int k, float alpha, const void *A, int lda, const void *B,
                     int ldb, float beta, void *C, int ldc, int c_f32)
{
    if (empty_product(m, n, k, beta, C, ldc, 1)) return;
    blas_check(cublasSgemm(qw_cuda_blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha,
                           (const float *)B, ldb, (const float *)A, lda, &beta, (float *)C, ldc), "cublasSgemm");
}

static void gemm_bf16(int ta, int tb, int m, int n, int k, float alpha, const void *A, int lda, const void *B,
                      int ldb, float beta, void *C, int ldc, int c_f32)
{
    if (empty_product(m, n, k, beta, C, ldc, c_f32)) return;
    qw_cuda_gemm_bf16(ta, tb, m, n, k, alpha, (const uint16_t *)A, lda, (const uint16_t *)B, ldb, beta, C, ldc,
                      c_f32);
}

/* ---- grouped GEMM (MoE experts): one cublasGemmGroupedBatchedEx call ----
 * cuBLAS wants the operand addresses in device arrays.  They are written by
 * a one-block kernel that gets them as its parameters (copied at launch,
 * in stream order), so there is no host-side copy to wait for and the
 * arrays can be reused by the next call: it is ordered after this one's
 * GEMMs on the same stream. */

#define GROUP_CHUNK 1024   /* groups per call: 3·1024 addresses = 24 KiB of kernel parameters */

struct group_ptrs {
    const void *p[3 * GROUP_CHUNK];
};

__global__ void store_group_ptrs(const void **dst, const group_ptrs src, int n)
{
    for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src.p[i];
}

static void gemm_grouped_bf16(int ta, int tb, int G, const int *m, const int *n, const int *k, float alpha,
                              const void *const *A, int lda, const void *const *B, int ldb, float beta, void *const *C,
                              int ldc, int c_f32)
{
    static const void **dev;
    static group_ptrs *hp;
    static int *hi;
    static float *hf;
    static cublasOperation_t *hop;
    if (!dev) {
        dev = (const void **)qw_cuda_malloc(3 * GROUP_CHUNK * sizeof *dev);
        hp = (group_ptrs *)malloc(sizeof *hp);
        hi = (int *)malloc(7 * GROUP_CHUNK * sizeof *hi);
        hf = (float *)malloc(2 * GROUP_CHUNK * sizeof *hf);
        hop = (cublasOperation_t *)malloc(2 * GROUP_CHUNK * sizeof *hop);
        if (!hp || !hi || !hf || !hop) qw_cuda_fatal("gemm_grouped", "out of host memory");
    }
    int *gm = hi, *gn = hi + GROUP_CHUNK, *gk = hi + 2 * GROUP_CHUNK, *glda = hi + 3 * GROUP_CHUNK,
        *gldb = hi + 4 * GROUP_CHUNK, *gldc = hi + 5 * GROUP_CHUNK, *gsize = hi + 6 * GROUP_CHUNK;
    float *galpha = hf, *gbeta = hf + GROUP_CHUNK;
    cublasOperation_t *opa = hop, *opb = hop + GROUP_CHUNK;
    if (c_f32) {
        /* cuBLAS has no grouped product with bf16 inputs and an fp32 C (the
         * weight gradients): one cublasGemmEx per group, which keeps no plan
         * per shape (the experts' row counts change every step) */
        for (int i = 0; i < G; i++) {
            if (empty_product(m[i], n[i], k[i], beta, C[i], ldc, 1)) continue;
            blas_check(cublasGemmEx(qw_cuda_blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                                    n[i], m[i], k[i], &alpha, B[i], CUDA_R_16BF, ldb, A[i], CUDA_R_16BF, lda, &beta,
                                    C[i], CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                       "cublasGemmEx");
        }
        return;
    }
    int g = 0;
    while (g < G) {
        int c = 0;
        for (; g < G && c < GROUP_CHUNK; g++) {
            if (empty_product(m[g], n[g], k[g], beta, C[g], ldc, c_f32)) continue;
            /* row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ */
            opa[c] = tb ? CUBLAS_OP_T : CUBLAS_OP_N, opb[c] = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
            gm[c] = n[g], gn[c] = m[g], gk[c] = k[g];
            glda[c] = ldb, gldb[c] = lda, gldc[c] = ldc, gsize[c] = 1;
            galpha[c] = alpha, gbeta[c] = beta;
            hp->p[c] = B[g], hp->p[GROUP_CHUNK + c] = A[g], hp->p[2 * GROUP_CHUNK + c] = C[g];
            c++;
        }
        if (!c) continue;
        store_group_ptrs<<<1, 256>>>(dev, *hp, 3 * GROUP_CHUNK);
        QW_LAUNCHED("gemm_grouped addresses");
        blas_check(cublasGemmGroupedBatchedEx(qw_cuda_blas, opa, opb, gm, gn, gk, galpha, dev, CUDA_R_16BF, glda,
                                              dev + GROUP_CHUNK, CUDA_R_16BF, gldb, gbeta,
                                              (void *const *)(dev + 2 * GROUP_CHUNK), CUDA_R_16BF, gldc, c, gsize,
                                              CUBLAS_COMPUTE_32F),
                   "cublasGemmGroupedBatchedEx");
    }
}

/* ---- the tables ---- */

static qw_ops tables[2];   /* [0] bf16 activations, [1] fp32 */

static void fill(qw_ops *t, const char *name, size_t act_size)
{
    t->name = name;
    t->act_size = act_size;
    t->lm_chunk_elems = (size_t)1 << 28;   /* 1 GiB of fp32 logits: about 1700 rows of Qwen3's vocabulary */
    t->alloc = cu_alloc;
    t->free = qw_cuda_release;
    t->zero = cu_zero;
    t->copy = cu_copy;
    t->upload = cu_upload;
    t->download = cu_download;
    t->sync = cu_sync;
    t->set_threads = cu_set_threads;
    t->set_deterministic = cu_set_deterministic;
    t->set_batch_invariant = act_size == 2 ? cu_set_batch_invariant : NULL;   /* fp32: cuBLAS picks by row count */
    t->mem_stats = cu_mem_stats;
    t->graph_begin = cu_graph_begin;
    t->graph_end = cu_graph_end;
    t->graph_launch = cu_graph_launch;
    t->graph_free = cu_graph_free;
    t->gemm = act_size == 2 ? gemm_bf16 : gemm_f32;
    /* fp32: gemm per group; QW_CUDA_GROUPED_GEMM=0 (for comparisons) the same on bf16 */
    const char *gg = getenv("QW_CUDA_GROUPED_GEMM");
    t->gemm_grouped = act_size == 2 && !(gg && !strcmp(gg, "0")) ? gemm_grouped_bf16 : NULL;
    qw_cuda_fill_elementwise(t);
    qw_cuda_fill_norm(t);
    qw_cuda_fill_attention(t);
    qw_cuda_fill_moe(t);
    qw_cuda_fill_loss(t);
    qw_cuda_fill_optim(t);
    qw_cuda_fill_decode(t);
}

/* ---- the device: chosen (qw_cuda_set_device) before anything touches it ---- */

static int device;     /* the process's GPU, an index among the visible ones */
static int state;      /* 0 untried, 1 ready, -1 unusable */

extern "C" int qw_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" int qw_cuda_set_device(int dev)
{
    if (state) return dev == device ? 0 : -1;   /* too late: the context exists */
    device = dev;
    return 0;
}

/* The chosen GPU (default 0), checked once: present, sm_90 (what this
 * build targets), cuBLAS usable.  cudaSetDevice comes before the first
 * allocation and the cuBLAS handles, so the context is made on it. */
static bool ready(void)
{
    static char reason[512];
    if (state) return state > 0;
    state = -1;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        why = e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device found";
        cudaGetLastError();
        return false;
    }
    if (device >= n || cudaSetDevice(device) != cudaSuccess) {
        snprintf(reason, sizeof reason, "cannot use GPU %d of the %d visible", device, n);
        why = reason;
        cudaGetLastError();
        return false;
    }
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, device) != cudaSuccess) {
        snprintf(reason, sizeof reason, "cannot read the properties of GPU %d", device);
        why = reason;
        cudaGetLastError();
        return false;
    }
    if (p.major != 9 || p.minor != 0) {
        snprintf(reason, sizeof reason, "GPU %d ('%s') is sm_%d%d; this build supports sm_90 (Hopper) only", device,
                 p.name, p.major, p.minor);
        why = reason;
        return false;
    }
    if (cublasCreate(&qw_cuda_blas) != CUBLAS_STATUS_SUCCESS || cublasLtCreate(&qw_cuda_lt) != CUBLAS_STATUS_SUCCESS) {
        why = "cuBLAS could not be initialised";
        return false;
    }
    /* fp32 GEMMs in full fp32: no TF32 (parity with the CPU reference). */
    blas_check(cublasSetMathMode(qw_cuda_blas, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode");
    blas_check(cublasSetStream(qw_cuda_blas, cudaStreamPerThread), "cublasSetStream");
    fill(&tables[0], "cuda", 2);
    fill(&tables[1], "cuda-fp32", 4);
    state = 1;
    return true;
}

extern "C" const qw_ops *qw_ops_cuda(void) { return ready() ? &tables[0] : NULL; }
extern "C" const qw_ops *qw_ops_cuda_fp32(void) { return ready() ? &tables[1] : NULL; }
