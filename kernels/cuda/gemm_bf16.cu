/* gemm_bf16.cu — bf16 GEMM with fp32 accumulation through cuBLASLt
 * (row-major as qw_ops.gemm: the column-major product Cᵀ = op(B)ᵀ·op(A)ᵀ). */
#include "internal.cuh"

#define LT_WS_BYTES ((size_t)32 << 20)

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

extern "C" void qw_cuda_gemm_bf16(int ta, int tb, int m, int n, int k, float alpha, const uint16_t *A, int lda,
                                  const uint16_t *B, int ldb, float beta, void *C, int ldc, int c_fp32)
{
    static void *ws;
    if (m <= 0 || n <= 0 || k <= 0) qw_cuda_fatal("gemm_bf16", "empty product");
    if (!ws) QW_CU(cudaMalloc(&ws, LT_WS_BYTES));
    cublasLtMatmulDesc_t op;
    lt_check(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    cublasOperation_t oa = tb ? CUBLAS_OP_T : CUBLAS_OP_N, ob = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    lt_check(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &oa, sizeof oa), "TRANSA");
    lt_check(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &ob, sizeof ob), "TRANSB");
    /* column-major: first operand is B (n×k after op), second A (k×m after op) */
    cublasLtMatrixLayout_t lb = tb ? layout(CUDA_R_16BF, k, n, ldb) : layout(CUDA_R_16BF, n, k, ldb);
    cublasLtMatrixLayout_t la = ta ? layout(CUDA_R_16BF, m, k, lda) : layout(CUDA_R_16BF, k, m, lda);
    cublasLtMatrixLayout_t lc = layout(c_fp32 ? CUDA_R_32F : CUDA_R_16BF, n, m, ldc);
    cublasLtMatmulPreference_t pref;
    lt_check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    size_t wsb = LT_WS_BYTES;
    lt_check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb),
             "MAX_WORKSPACE_BYTES");
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    lt_check(cublasLtMatmulAlgoGetHeuristic(qw_cuda_lt, op, lb, la, lc, lc, pref, 1, &heur, &found),
             "cublasLtMatmulAlgoGetHeuristic");
    if (!found) qw_cuda_fatal("gemm_bf16", "cuBLASLt has no algorithm for this shape");
    lt_check(cublasLtMatmul(qw_cuda_lt, op, &alpha, B, lb, A, la, &beta, C, lc, C, lc, &heur.algo, ws, wsb, 0),
             "cublasLtMatmul");
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatmulDescDestroy(op);
}
