/* kernels/route.h — the MoE router of one token, shared by the CPU backend
 * (kernels/cpu/moe.c) and the CUDA backend (kernels/cuda/moe.cu), so both
 * compute it with the same operations in the same order (qw/ops.h,
 * moe_route_fwd): p = softmax(l) over E experts in fp32, the k largest
 * probabilities in sel (largest first, ties to the lower expert), their
 * values in w, divided by their sum when norm. */
#ifndef QW_KERNELS_ROUTE_H
#define QW_KERNELS_ROUTE_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define QW_HOST_DEVICE __host__ __device__
#else
#define QW_HOST_DEVICE
#endif

QW_HOST_DEVICE static inline void qw_route_row(float *p, int32_t *sel, float *w, const float *l, int E, int k,
                                               int norm)
{
    float mx = -INFINITY, sum = 0, tot = 0;
    for (int e = 0; e < E; e++) mx = l[e] > mx ? l[e] : mx;
    for (int e = 0; e < E; e++) sum += p[e] = expf(l[e] - mx);
    for (int e = 0; e < E; e++) p[e] /= sum;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            int taken = 0;
            for (int t = 0; t < j; t++) taken |= sel[t] == e;
            if (!taken && (best < 0 || p[e] > p[best])) best = e;
        }
        sel[j] = best;
        tot += w[j] = p[best];
    }
    if (norm)
        for (int j = 0; j < k; j++) w[j] /= tot;
}

#endif
