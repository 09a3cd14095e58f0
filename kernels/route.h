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

/* Its backward (moe_route_bwd) for one token: dl [E] = ∂/∂logits from dw
 * [k] (the gradient on w) plus, when dprobs is not NULL, dprobs[e] on
 * every probability (the load-balancing loss). */
QW_HOST_DEVICE static inline void qw_route_row_bwd(float *dl, const float *dw, const float *p, const int32_t *sel,
                                                   const float *w, const float *dprobs, int E, int k, int norm)
{
    for (int e = 0; e < E; e++) dl[e] = dprobs ? dprobs[e] : 0;   /* ∂/∂probs first */
    if (norm) {
        float tot = 0, t = 0;
        for (int j = 0; j < k; j++) { tot += p[sel[j]]; t += dw[j] * w[j]; }
        for (int j = 0; j < k; j++) dl[sel[j]] += (dw[j] - t) / tot;
    } else {
        for (int j = 0; j < k; j++) dl[sel[j]] += dw[j];
    }
    float dot = 0;   /* then through the softmax */
    for (int e = 0; e < E; e++) dot += p[e] * dl[e];
    for (int e = 0; e < E; e++) dl[e] = p[e] * (dl[e] - dot);
}

#endif
