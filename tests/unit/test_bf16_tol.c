/* test_bf16_tol.c — the bf16 tolerance of tests/gpu/test_ops.c
 * (tests/gpu/bf16_tol.h), on the CPU: it accepts a correct bf16 result
 * (computed exactly, rounded once) of the CPU's RMSNorm backward, and
 * rejects one whose dx is off by 0.6% or 0.4% (an RMSNorm-backward bug);
 * the former tolerance, max|gpu − cpu| / max|cpu| ≤ 1e-2, let the 0.4% one
 * through. */
#include <stdint.h>

#include "qwtest.h"
#include "qw/ops.h"
#include "../gpu/bf16_tol.h"

enum { ROWS = 130, DIM = 1024, N = ROWS * DIM };
static float x[N], dy[N], w[DIM], rs[ROWS], y[N], dx[N], dw[DIM], good[N];
static unsigned long long rng = 12345;

static float urand(float lo, float hi)
{
    rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return lo + (hi - lo) * (float)((rng >> 11) * (1.0 / 9007199254740992.0));
}

/* dx in double from the same inputs, rounded once to bf16: what a correct
 * kernel that computes in fp32 and stores bf16 approximates best.  bug
 * scales it by 1 + bug first. */
static void exact_dx(float *out, double bug)
{
    for (int r = 0; r < ROWS; r++) {
        const float *xr = x + (size_t)r * DIM, *gr = dy + (size_t)r * DIM;
        double ss = 0, dot = 0;
        for (int j = 0; j < DIM; j++) ss += (double)xr[j] * xr[j];
        double rstd = 1 / sqrt(ss / DIM + 1e-6);
        for (int j = 0; j < DIM; j++) dot += (double)gr[j] * w[j] * xr[j];
        double c = rstd * rstd * dot / DIM;
        for (int j = 0; j < DIM; j++) out[(size_t)r * DIM + j] = (float)(rstd * (gr[j] * w[j] - xr[j] * c) * (1 + bug));
    }
    round_bf16(out, N);
}

static double old_err(const float *ref, const float *got)
{
    double mx = 0, e = 0;
    float r[1];
    for (size_t i = 0; i < N; i++) {
        r[0] = ref[i];
        round_bf16(r, 1);
        mx = fmax(mx, fabs(r[0]));
        e = fmax(e, fabs((double)r[0] - got[i]));
    }
    return e / mx;
}

TEST(rmsnorm_bwd_tolerance)
{
    const qw_ops *C = qw_ops_cpu();
    for (size_t i = 0; i < N; i++) x[i] = urand(-2, 2), dy[i] = urand(-1, 1);
    for (int j = 0; j < DIM; j++) w[j] = urand(0.5f, 1.5f);
    round_bf16(x, N);   /* the inputs as the GPU reads them */
    round_bf16(dy, N);
    C->rmsnorm_fwd(y, rs, x, w, ROWS, DIM, 1e-6f);
    C->rmsnorm_bwd(dx, dw, dy, x, w, rs, ROWS, DIM, 0);   /* the reference, fp32 */
    double ulps, abs_ = DIM * 0x1p-22;   /* test_ops' allowance for rmsnorm_bwd dx */
    exact_dx(good, 0);
    double e = bf16_err(dx, good, N, 1, 0, abs_, &ulps);
    CHECK_MSG(e <= 1, "a correct result: %.3g of the allowance (%.2f ulps)", e, ulps);
    CHECK_MSG(ulps <= 0.55, "a correct result is within about half an ulp: %.2f", ulps);
    for (int k = 0; k < 2; k++) {
        double bug = k ? 0.004 : 0.006;
        exact_dx(good, bug);
        e = bf16_err(dx, good, N, 1, 0, abs_, &ulps);
        CHECK_MSG(e > 1, "dx off by %g: %.3g of the allowance, accepted", bug, e);
        if (getenv("QW_TEST_VERBOSE"))
            printf("# dx off by %g: %.3g of the allowance (%.2f ulps), former measure %.3g\n", bug, e, ulps,
                   old_err(dx, good));
    }
    CHECK_MSG(old_err(dx, good) <= 1e-2, "the former tolerance took dx off by 0.4%%: %.3g", old_err(dx, good));
    float nan_[1] = {NAN}, one[1] = {1};
    CHECK(bf16_err(one, nan_, 1, 1, 0, 0, &ulps) > 1);   /* NaN never passes */
    CHECK(ulp_bf16(1.0) == 0x1p-7 && ulp_bf16(1.99) == 0x1p-7 && ulp_bf16(2.0) == 0x1p-6 && ulp_bf16(0) == 0);
}

int main(void)
{
    PLAN(1);
    RUN(rmsnorm_bwd_tolerance);
    return qwtest_finish();
}
