/* bf16_tol.h — the element-by-element bf16 tolerance of tests/gpu/test_ops.c
 * (its top comment derives it), in a header so that a CPU unit test
 * (tests/unit/test_bf16_tol.c) can show what it accepts and rejects.
 * Static functions; include once per program, after <math.h>, <stdint.h>
 * and <string.h>. */
#ifndef QW_BF16_TOL_H
#define QW_BF16_TOL_H

/* Round to bf16 (nearest even) in place, as the device conversion does. */
static void round_bf16(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u;
        memcpy(&x[i], &u, 4);
    }
}

/* bf16's spacing at |r|: 2^(⌊log2 |r|⌋ − 7); 0 for 0. */
static double ulp_bf16(double r)
{
    int e;
    if (r == 0) return 0;
    frexp(r, &e);   /* |r| = m·2^e, m in [0.5, 1) */
    return ldexp(1.0, e - 8);
}

/* The largest |got − ref| / (u·ulp(ref) + rel·|ref| + abs·max|ref|) over
 * the n elements (NaN counts as infinite; pass: ≤ 1), and in *ulps the
 * largest |got − ref| / ulp(ref) alone. */
static double bf16_err(const float *ref, const float *got, size_t n, double u, double rel, double abs_, double *ulps)
{
    double mx = 0, worst = 0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs(ref[i]));
    *ulps = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]), ul = ulp_bf16(fabs(ref[i]));
        double allow = u * ul + rel * fabs(ref[i]) + abs_ * mx;
        double e = isnan(d) ? INFINITY : d == 0 ? 0 : allow > 0 ? d / allow : INFINITY;
        if (e > worst) worst = e;
        if (ul > 0 && !(d / ul <= *ulps)) *ulps = isnan(d) ? INFINITY : d / ul;
    }
    return worst;
}

#endif
