/* moe.cu — Mixture-of-experts routing (router values fp32 in both tables):
 * softmax + top-k + renormalisation and their backward, one thread per
 * token (E and k are small); load-balancing statistics, one block per
 * expert (fixed-order sums); the grouping of assignments by expert. */
#include <stdlib.h>
#include <string.h>

#include "internal.cuh"
#include "../route.h"

__global__ void route_fwd_kernel(float *probs, int32_t *sel, float *w, const float *logits, int n, int E, int k,
                                 int norm)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    qw_route_row(probs + (size_t)i * E, sel + (size_t)i * k, w + (size_t)i * k, logits + (size_t)i * E, E, k, norm);
}

static void moe_route_fwd(float *probs, int32_t *sel, float *w, const float *logits, int n, int E, int k, int norm)
{
    if (n <= 0) return;
    route_fwd_kernel<<<qw_blocks(n, 128), 128>>>(probs, sel, w, logits, n, E, k, norm);
    QW_LAUNCHED("moe_route forward");
}

__global__ void route_bwd_kernel(float *dlogits, const float *dw, const float *probs, const int32_t *sel,
                                 const float *w, const float *dprobs, int n, int E, int k, int norm)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    qw_route_row_bwd(dlogits + (size_t)i * E, dw + (size_t)i * k, probs + (size_t)i * E, sel + (size_t)i * k,
                     w + (size_t)i * k, dprobs, E, k, norm);
}

static void moe_route_bwd(float *dlogits, const float *dw, const float *probs, const int32_t *sel, const float *w,
                          const float *dprobs, int n, int E, int k, int norm)
{
    if (n <= 0) return;
    route_bwd_kernel<<<qw_blocks(n, 128), 128>>>(dlogits, dw, probs, sel, w, dprobs, n, E, k, norm);
    QW_LAUNCHED("moe_route backward");
}

/* One block per expert: sums over the rows. */
__global__ void aux_stats_kernel(float *count, float *psum, const float *probs, const int32_t *sel, int n, int E, int k)
{
    __shared__ float sh[32];
    int e = blockIdx.x;
    float ps = 0, c = 0;
    for (int i = threadIdx.x; i < n; i += TPB) {
        ps += probs[(size_t)i * E + e];
        for (int j = 0; j < k; j++) c += sel[(size_t)i * k + j] == e;
    }
    ps = qw_block_sum(ps, sh);
    c = qw_block_sum(c, sh);
    if (threadIdx.x == 0) { count[e] += c; psum[e] += ps; }
}

static void moe_aux_stats(float *count, float *psum, const float *probs, const int32_t *sel, int n, int E, int k)
{
    if (E <= 0) return;
    aux_stats_kernel<<<E, TPB>>>(count, psum, probs, sel, n, E, k);
    QW_LAUNCHED("moe_aux_stats");
}

/* The grouping is a counting sort whose offsets the caller wants on the
 * host anyway: done on the host over a downloaded sel. */
static int moe_dispatch(int32_t *offsets, int32_t *rows, int32_t *slots, const int32_t *sel, int n, int E, int k,
                        int capacity)
{
    size_t na = (size_t)n * k;
    int32_t *h = (int32_t *)malloc((3 * na + 2 * (size_t)E + 1) * sizeof *h);
    if (!h) qw_cuda_fatal("moe_dispatch", "out of host memory");
    int32_t *hr = h + na, *hs = hr + na, *seen = hs + na, *cur = seen + E;
    QW_CU(cudaMemcpy(h, sel, na * sizeof *h, cudaMemcpyDeviceToHost));
    memset(seen, 0, E * sizeof *seen);
    memset(offsets, 0, (E + 1) * sizeof *offsets);
    for (size_t a = 0; a < na; a++)
        if (seen[h[a]]++ < capacity) offsets[h[a] + 1]++;
    for (int e = 0; e < E; e++) offsets[e + 1] += offsets[e];
    memcpy(cur, offsets, E * sizeof *cur);
    memset(seen, 0, E * sizeof *seen);
    for (size_t a = 0; a < na; a++) {
        int e = h[a];
        if (seen[e]++ >= capacity) continue;
        hr[cur[e]] = (int32_t)(a / k);
        hs[cur[e]++] = (int32_t)a;
    }
    int kept = offsets[E];
    if (kept) {
        QW_CU(cudaMemcpy(rows, hr, kept * sizeof *hr, cudaMemcpyHostToDevice));
        QW_CU(cudaMemcpy(slots, hs, kept * sizeof *hs, cudaMemcpyHostToDevice));
    }
    free(h);
    return kept;
}

void qw_cuda_fill_moe(qw_ops *t)
{
    t->moe_route_fwd = moe_route_fwd;
    t->moe_route_bwd = moe_route_bwd;
    t->moe_aux_stats = moe_aux_stats;
    t->moe_dispatch = moe_dispatch;
}
