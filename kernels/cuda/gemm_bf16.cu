/* gemm_bf16.cu — bf16 GEMM with fp32 accumulation through cuBLASLt
 * (row-major as qw_ops.gemm: the column-major product Cᵀ = op(B)ᵀ·op(A)ᵀ).
 *
 * A plan (descriptors and the heuristic's algorithm) is made once per
 * shape, leading dimensions, output type and pointer alignment, and kept:
 * a training step repeats a few dozen shapes.  The heuristic is told each
 * pointer's actual alignment (it assumes 256 bytes otherwise).  Shapes
 * cuBLASLt has no kernel for go through cublasGemmEx with the same types.
 *
 * Batch invariance (set_batch_invariant(1)): the heuristic's choice
 * depends on the row count m, and so, through tile shapes and split-K,
 * does the order in which a row's products are added.  Deterministic
 * plans take the algorithm chosen for DET_M rows, split-K off, for every
 * m (checked against each m's layouts), so a row's result is the same
 * whatever rows share the product — what the generation engine needs for
 * completions that do not depend on the batch.  Small products run slower
 * that way (fewer, larger tiles). */
#include <map>
#include <tuple>

#include "internal.cuh"

#define LT_WS_BYTES ((size_t)32 << 20)
#define DET_M 1024

static void lt_check(cublasStatus_t st, const char *what)
{
    if (st != CUBLAS_STATUS_SUCCESS) qw_cuda_fatal(what, cublasGetStatusString(st));
}

static cublasLtMatrixLayout_t layout(cudaDataType_t t, int rows, int cols, int ld)
{
    cublasLtMatrixLayout_t l;
    lt_check(cublasLtMatrixLayoutCreate(&l, t, rows, cols, ld), "cublasLtMatrixLayoutCreate");
    return l;
}

/* The largest power of two ≤ 256 that divides the address. */
static uint32_t alignment(const void *p)
{
    uint32_t a = 256;
    while (a > 1 && ((uintptr_t)p & (a - 1))) a >>= 1;
    return a;
}

struct plan {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
    bool lt;   /* false: cublasGemmEx */
};

typedef std::tuple<int, int, int, int, int, int, int, int, int, uint32_t, uint32_t, uint32_t, int> plan_key;

static plan make_plan(int ta, int tb, int m, int n, int k, int lda, int ldb, int ldc, int c_fp32, uint32_t al_a,
                      uint32_t al_b, uint32_t al_c)
{
    plan p;
    lt_check(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    cublasOperation_t oa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, ob = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    lt_check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &oa, sizeof oa), "TRANSA");
    lt_check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &ob, sizeof ob), "TRANSB");
    /* column-major: first operand is B (n×k after op), second A (k×m after op) */
    p.lb = tb ? layout(CUDA_R_16BF, k, n, ldb) : layout(CUDA_R_16BF, n, k, ldb);
    p.la = ta ? layout(CUDA_R_16BF, m, k, lda) : layout(CUDA_R_16BF, k, m, lda);
    p.lc = layout(c_fp32 ? CUDA_R_32F : CUDA_R_16BF, n, m, ldc);
    cublasLtMatmulPreference_t pref;
    lt_check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    size_t wsb = LT_WS_BYTES;
    lt_check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb),
             "MAX_WORKSPACE_BYTES");
    /* the first operand of the column-major product is B */
    lt_check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_b, 4), "ALIGN_A");
    lt_check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_a, 4), "ALIGN_B");
    lt_check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, 4), "ALIGN_C");
    lt_check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, 4), "ALIGN_D");
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    p.lt = cublasLtMatmulAlgoGetHeuristic(qw_cuda_lt, p.op, p.lb, p.la, p.lc, p.lc, pref, 1, &heur, &found) ==
               CUBLAS_STATUS_SUCCESS && found;
    if (p.lt) p.algo = heur.algo;
    cublasLtMatmulPreferenceDestroy(pref);
    return p;
}

/* The deterministic plan of an m-row product: m's layouts, the algorithm of
 * the DET_M-row product of the same kind without split-K. */
static plan make_det_plan(int ta, int tb, int m, int n, int k, int lda, int ldb, int ldc, int c_fp32, uint32_t al_a,
                          uint32_t al_b, uint32_t al_c)
{
    plan p = make_plan(ta, tb, m, n, k, lda, ldb, ldc, c_fp32, al_a, al_b, al_c);
    if (ta) return p;   /* op(A) = Aᵀ: m is a leading dimension (weight gradients), not a batch of rows */
    plan c = make_plan(ta, tb, DET_M, n, k, lda, ldb, ldc, c_fp32, al_a, al_b, al_c);
    if (c.lt) {
        int one = 1;
        uint32_t none = CUBLASLT_REDUCTION_SCHEME_NONE;
        cublasLtMatmulAlgoConfigSetAttribute(&c.algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &one, sizeof one);
        cublasLtMatmulAlgoConfigSetAttribute(&c.algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &none, sizeof none);
        cublasLtMatmulHeuristicResult_t chk;
        if (cublasLtMatmulAlgoCheck(qw_cuda_lt, p.op, p.lb, p.la, p.lc, p.lc, &c.algo, &chk) == CUBLAS_STATUS_SUCCESS &&
            chk.workspaceSize <= LT_WS_BYTES)
            p.algo = c.algo, p.lt = true;
    }
    cublasLtMatmulDescDestroy(c.op);
    cublasLtMatrixLayoutDestroy(c.la);
    cublasLtMatrixLayoutDestroy(c.lb);
    cublasLtMatrixLayoutDestroy(c.lc);
    return p;
}

extern "C" void qw_cuda_gemm_bf16(int ta, int tb, int m, int n, int k, float alpha, const uint16_t *A, int lda,
                                  const uint16_t *B, int ldb, float beta, void *C, int ldc, int c_fp32)
{
    static void *ws;
    static std::map<plan_key, plan> plans;
    if (m <= 0 || n <= 0 || k <= 0) qw_cuda_fatal("gemm_bf16", "empty product");
    if (!ws) ws = qw_cuda_malloc(LT_WS_BYTES);
    uint32_t al_a = alignment(A), al_b = alignment(B), al_c = alignment(C);
    int det = qw_cuda_batch_invariant;
    plan_key key(ta, tb, m, n, k, lda, ldb, ldc, c_fp32, al_a, al_b, al_c, det);
    auto it = plans.find(key);
    if (it == plans.end())
        it = plans.emplace(key, det ? make_det_plan(ta, tb, m, n, k, lda, ldb, ldc, c_fp32, al_a, al_b, al_c)
                                    : make_plan(ta, tb, m, n, k, lda, ldb, ldc, c_fp32, al_a, al_b, al_c)).first;
    const plan &p = it->second;
    if (p.lt)
        lt_check(cublasLtMatmul(qw_cuda_lt, p.op, &alpha, B, p.lb, A, p.la, &beta, C, p.lc, C, p.lc, &p.algo, ws,
                                LT_WS_BYTES, cudaStreamPerThread), "cublasLtMatmul");
    else
        lt_check(cublasGemmEx(qw_cuda_blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k,
                              &alpha, B, CUDA_R_16BF, ldb, A, CUDA_R_16BF, lda, &beta, C,
                              c_fp32 ? CUDA_R_32F : CUDA_R_16BF, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx");
}
