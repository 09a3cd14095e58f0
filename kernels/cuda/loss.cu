/* loss.cu — cross-entropy over a chunk of fp32 logits, one block per row:
 * the forward in one pass (an online max and sum of exponentials per
 * thread, merged across the block), the backward written out of place into
 * an activation-typed gradient.  Rows are read as float4 when V allows. */
#include "internal.cuh"

/* (max, Σ exp(x − max)) of two parts. */
__device__ __forceinline__ void merge(float &m, float &s, float m2, float s2)
{
    if (m2 == -INFINITY) return;
    if (m == -INFINITY) { m = m2; s = s2; return; }
    float mx = fmaxf(m, m2);
    s = s * expf(m - mx) + s2 * expf(m2 - mx);
    m = mx;
}

__device__ __forceinline__ void add(float &m, float &s, float x)
{
    if (x > m) {
        s = s * expf(m - x) + 1.0f;   /* expf(−inf) = 0 on the first element */
        m = x;
    } else if (m > -INFINITY) {   /* x = m = −inf adds nothing */
        s += expf(x - m);
    }
}

template <int V>
__global__ void ce_fwd_kernel(float *lse, float *logp, const float *logits, const int32_t *targets, int nv)
{
    __shared__ float shm[32], shs[32];
    const float *l = logits + (size_t)blockIdx.x * nv;
    float m = -INFINITY, s = 0, f[V];
    for (int v = threadIdx.x * V; v < nv; v += blockDim.x * V) {
        qw_ldv<V>(f, l + v);
#pragma unroll
        for (int e = 0; e < V; e++) add(m, s, f[e]);
    }
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        merge(m, s, m2, s2);
    }
    if ((threadIdx.x & 31) == 0) { shm[threadIdx.x >> 5] = m; shs[threadIdx.x >> 5] = s; }
    __syncthreads();
    if (threadIdx.x == 0) {
        m = shm[0];
        s = shs[0];
        for (int w = 1; w < (int)(blockDim.x >> 5); w++) merge(m, s, shm[w], shs[w]);
        float L = m + logf(s);
        int t = targets[blockIdx.x];
        lse[blockIdx.x] = L;
        logp[blockIdx.x] = t >= 0 ? l[t] - L : 0;
    }
}

static void ce_fwd(float *lse, float *logp, const float *logits, const int32_t *targets, int n, int V)
{
    if (n <= 0) return;
    if (V % 4 == 0 && qw_aligned(16, logits)) ce_fwd_kernel<4><<<n, 512>>>(lse, logp, logits, targets, V);
    else ce_fwd_kernel<1><<<n, 512>>>(lse, logp, logits, targets, V);
    QW_LAUNCHED("ce forward");
}

template <typename T, int V>
__global__ void ce_bwd_kernel(T *dl, const float *logits, const float *lse, const int32_t *targets, const float *coef,
                              int nv)
{
    size_t o = (size_t)blockIdx.x * nv;
    int t = targets[blockIdx.x];
    float c = coef[blockIdx.x], m = lse[blockIdx.x], f[V];
    for (int v = threadIdx.x * V; v < nv; v += blockDim.x * V) {
        qw_ldv<V>(f, logits + o + v);
#pragma unroll
        for (int e = 0; e < V; e++) f[e] = t < 0 ? 0 : c * expf(f[e] - m) - (v + e == t ? c : 0);
        qw_stv<V>(dl + o + v, f);
    }
}

template <typename T>
static void ce_bwd(void *dlogits, const float *logits, const float *lse, const int32_t *targets, const float *coef,
                   int n, int V)
{
    if (n <= 0) return;
    if (V % 4 == 0 && qw_aligned(16, dlogits, logits))
        ce_bwd_kernel<T, 4><<<n, 512>>>((T *)dlogits, logits, lse, targets, coef, V);
    else
        ce_bwd_kernel<T, 1><<<n, 512>>>((T *)dlogits, logits, lse, targets, coef, V);
    QW_LAUNCHED("ce backward");
}

template <typename T>
static void fill(qw_ops *t)
{
    t->ce_fwd = ce_fwd;
    t->ce_bwd = ce_bwd<T>;
}

QW_FILL_BOTH(loss)
