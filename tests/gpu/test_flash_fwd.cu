/* test_flash_fwd.cu — qw_cuda_flash_fwd (kernels/cuda/flash_fwd.cu) against
 * a host reference in double on the same bf16-rounded inputs, over head
 * dims 64 and 128, GQA ratios 1, 2 and 4, odd lengths and rows packed with
 * several documents (length-1 documents too).  Outputs are poisoned with
 * NaN before each call.  Pass: max |o − ref| ≤ 1e-2 · max |ref| and
 * max |lse − ref| ≤ 1e-3, every element written.
 *
 *   test_flash_fwd          correctness; "N passed, N failed", exit 1 on failure
 *   test_flash_fwd small    one small case only (for compute-sanitizer)
 *   test_flash_fwd bench    time B4 T4096 H16/8 D128, one and four documents a row
 *
 * Build: nvcc -O3 -gencode=arch=compute_90a,code=sm_90a -std=c++17 -Ikernels/cuda \
 *            -o test_flash_fwd tests/gpu/test_flash_fwd.cu kernels/cuda/flash_fwd.cu */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "internal.cuh"

void qw_cuda_fatal(const char *what, const char *reason)
{
    fprintf(stderr, "qw: cuda: %s: %s\n", what, reason);
    exit(1);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double urand(void) /* [0, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (rng >> 11) * (1.0 / 9007199254740992.0);
}

static uint16_t to_bf16(float f) /* round to nearest even */
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

static float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* kv_start for B rows of T tokens: one document a row, or random documents
 * (about a fifth of them of length 1). */
static std::vector<int32_t> segments(int B, int T, int docs)
{
    std::vector<int32_t> ks((size_t)B * T);
    for (int b = 0; b < B; b++)
        for (int p = 0; p < T;) {
            int len = docs == 1 ? T : urand() < 0.2 ? 1 : 1 + (int)(urand() * (T / 3 + 1));
            for (int i = p; i < p + len && i < T; i++) ks[(size_t)b * T + i] = p;
            p += len;
        }
    return ks;
}

static std::vector<uint16_t> randn_bf16(size_t n, double amp)
{
    std::vector<uint16_t> x(n);
    for (auto &e : x) e = to_bf16((float)((urand() * 2 - 1) * amp));
    return x;
}

template <typename X>
static X *upload(const std::vector<X> &h)
{
    X *d;
    QW_CU(cudaMalloc(&d, h.size() * sizeof(X)));
    QW_CU(cudaMemcpy(d, h.data(), h.size() * sizeof(X), cudaMemcpyHostToDevice));
    return d;
}

static int npass, nfail;

static void check(const char *name, int B, int T, int nh, int nkv, int d, int docs)
{
    size_t nq = (size_t)B * T * nh * d, nk = (size_t)B * T * nkv * d;
    std::vector<uint16_t> q = randn_bf16(nq, 2), k = randn_bf16(nk, 2), v = randn_bf16(nk, 1);
    std::vector<int32_t> ks = segments(B, T, docs);
    uint16_t *dq = upload(q), *dk = upload(k), *dv = upload(v), *dout;
    int32_t *dks = upload(ks);
    float *dlse, scale = 1.0f / sqrtf((float)d);
    QW_CU(cudaMalloc(&dout, nq * 2));
    QW_CU(cudaMalloc(&dlse, (size_t)B * T * nh * 4));
    QW_CU(cudaMemset(dout, 0xff, nq * 2)); /* NaN poison */
    QW_CU(cudaMemset(dlse, 0xff, (size_t)B * T * nh * 4));
    qw_cuda_flash_fwd(dout, dlse, dq, dk, dv, dks, B, T, nh, nkv, d, scale);
    QW_CU(cudaDeviceSynchronize());
    std::vector<uint16_t> o(nq);
    std::vector<float> lse((size_t)B * T * nh);
    QW_CU(cudaMemcpy(o.data(), dout, nq * 2, cudaMemcpyDeviceToHost));
    QW_CU(cudaMemcpy(lse.data(), dlse, lse.size() * 4, cudaMemcpyDeviceToHost));

    double omax = 0, oerr = 0, lerr = 0;
    int bad = 0;
    std::vector<double> s(T), acc(d);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++)
            for (int h = 0; h < nh; h++) {
                size_t row = (size_t)b * T + i;
                const uint16_t *qi = &q[(row * nh + h) * d];
                int kh = h / (nh / nkv), j0 = ks[row];
                double mx = -INFINITY, sum = 0;
                for (int j = j0; j <= i; j++) {
                    const uint16_t *kj = &k[(((size_t)b * T + j) * nkv + kh) * d];
                    double dot = 0;
                    for (int c = 0; c < d; c++) dot += (double)from_bf16(qi[c]) * from_bf16(kj[c]);
                    s[j] = dot * scale;
                    mx = std::max(mx, s[j]);
                }
                std::fill(acc.begin(), acc.end(), 0.0);
                for (int j = j0; j <= i; j++) {
                    double p = exp(s[j] - mx);
                    sum += p;
                    const uint16_t *vj = &v[(((size_t)b * T + j) * nkv + kh) * d];
                    for (int c = 0; c < d; c++) acc[c] += p * from_bf16(vj[c]);
                }
                double l = lse[row * nh + h];
                if (!(fabs(l - (mx + log(sum))) <= lerr)) lerr = fabs(l - (mx + log(sum)));
                if (isnan(l)) bad++;
                for (int c = 0; c < d; c++) {
                    double r = acc[c] / sum, got = from_bf16(o[(row * nh + h) * d + c]);
                    omax = std::max(omax, fabs(r));
                    if (isnan(got)) bad++;
                    else oerr = std::max(oerr, fabs(got - r));
                }
            }
    double rel = oerr / omax;
    char why[200];
    if (bad) snprintf(why, sizeof why, "%d NaN (unwritten) elements", bad);
    else if (!(rel <= 1e-2)) snprintf(why, sizeof why, "o max err %.3g of max |o| %.3g = %.3g", oerr, omax, rel);
    else if (!(lerr <= 1e-3)) snprintf(why, sizeof why, "lse max err %.3g", lerr);
    else why[0] = 0;
    if (why[0]) printf("FAIL %s (%s)\n", name, why), nfail++;
    else printf("PASS %s (o rel err %.2e, lse err %.2e)\n", name, rel, lerr), npass++;
    for (void *p : {(void *)dq, (void *)dk, (void *)dv, (void *)dks, (void *)dout, (void *)dlse}) QW_CU(cudaFree(p));
}

static void bench(int B, int T, int nh, int nkv, int d, int docs)
{
    size_t nq = (size_t)B * T * nh * d, nk = (size_t)B * T * nkv * d;
    std::vector<int32_t> ks((size_t)B * T);
    double pairs = 0;
    for (size_t r = 0; r < ks.size(); r++) {
        int i = (int)(r % T), len = T / docs;
        ks[r] = std::min(i / len, docs - 1) * len;
        pairs += i - ks[r] + 1;
    }
    uint16_t *dq = upload(randn_bf16(nq, 2)), *dk = upload(randn_bf16(nk, 2)), *dv = upload(randn_bf16(nk, 1));
    uint16_t *dout;
    int32_t *dks = upload(ks);
    float *dlse, scale = 1.0f / sqrtf((float)d);
    QW_CU(cudaMalloc(&dout, nq * 2));
    QW_CU(cudaMalloc(&dlse, (size_t)B * T * nh * 4));
    for (int i = 0; i < 5; i++) qw_cuda_flash_fwd(dout, dlse, dq, dk, dv, dks, B, T, nh, nkv, d, scale);
    cudaEvent_t e0, e1;
    QW_CU(cudaEventCreate(&e0));
    QW_CU(cudaEventCreate(&e1));
    std::vector<float> ms;
    for (int it = 0; it < 30; it++) {
        QW_CU(cudaEventRecord(e0));
        qw_cuda_flash_fwd(dout, dlse, dq, dk, dv, dks, B, T, nh, nkv, d, scale);
        QW_CU(cudaEventRecord(e1));
        QW_CU(cudaEventSynchronize(e1));
        float t;
        QW_CU(cudaEventElapsedTime(&t, e0, e1));
        ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    double t = ms[ms.size() / 2], flops = 4.0 * nh * d * pairs; /* pairs: over all B rows */
    printf("fwd B%d T%d H%d/%d D%d docs%d %.3f ms %.1f TFLOP/s\n", B, T, nh, nkv, d, docs, t, flops / (t * 1e-3) / 1e12);
    for (void *p : {(void *)dq, (void *)dk, (void *)dv, (void *)dks, (void *)dout, (void *)dlse}) QW_CU(cudaFree(p));
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "bench")) {
        bench(4, 4096, 16, 8, 128, 1);
        bench(4, 4096, 16, 8, 128, 4);
        bench(4, 4096, 16, 8, 64, 1);
        return 0;
    }
    if (argc > 1 && !strcmp(argv[1], "small")) {
        check("small_d64_T37_gqa2_docs", 2, 37, 4, 2, 64, 0);
        check("small_d128_T130_gqa1_docs", 1, 130, 2, 2, 128, 0);
    } else {
        check("d64_T1_gqa1", 1, 1, 4, 4, 64, 1);
        check("d128_T1_gqa2_B3", 3, 1, 4, 2, 128, 1);
        check("d128_T37_gqa2_docs", 2, 37, 8, 4, 128, 0);
        check("d64_T37_gqa2_B3", 3, 37, 4, 2, 64, 1);
        check("d64_T128_gqa4_docs_B3", 3, 128, 8, 2, 64, 0);
        check("d128_T128_gqa1", 1, 128, 2, 2, 128, 1);
        check("d128_T300_gqa4", 2, 300, 4, 1, 128, 1);
        check("d128_T300_gqa1_docs", 2, 300, 2, 2, 128, 0);
        check("d64_T300_gqa2_docs", 1, 300, 4, 2, 64, 0);
        check("d128_T1024_gqa2_docs", 2, 1024, 4, 2, 128, 0);
        check("d128_T1024_gqa2", 1, 1024, 4, 2, 128, 1);
        check("d64_T1024_gqa1_docs", 1, 1024, 4, 4, 64, 0);
        check("d64_T1024_gqa4", 2, 1024, 4, 1, 64, 1);
    }
    printf("%d passed, %d failed\n", npass, nfail);
    return nfail ? 1 : 0;
}
