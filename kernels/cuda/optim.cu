/* optim.cu — the optimizer ops over fp32 arenas: Σx² in a fixed order
 * (a fixed grid of blocks, each summing a grid-strided part in fp64, then
 * one block adding the partials in order: deterministic), and AdamW in one
 * launch, in the operation order of qw/ops.h without fused multiply-adds
 * (so it rounds as the CPU op does), writing the activation-typed copy of
 * the weights when asked. */
#include "internal.cuh"

#define SUMSQ_BLOCKS 1024

__global__ void sumsq_partial_kernel(double *part, const float *x, size_t n)
{
    __shared__ double sh[TPB];
    double s = 0;
    for (size_t i = blockIdx.x * (size_t)TPB + threadIdx.x; i < n; i += (size_t)SUMSQ_BLOCKS * TPB)
        s += (double)x[i] * x[i];
    sh[threadIdx.x] = s;
    __syncthreads();
    for (int w = TPB / 2; w > 0; w >>= 1) {
        if (threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) part[blockIdx.x] = sh[0];
}

__global__ void sumsq_final_kernel(double *part)
{
    __shared__ double sh[SUMSQ_BLOCKS];
    for (int i = threadIdx.x; i < SUMSQ_BLOCKS; i += blockDim.x) sh[i] = part[i];
    __syncthreads();
    for (int w = SUMSQ_BLOCKS / 2; w > 0; w >>= 1) {
        for (int i = threadIdx.x; i < w; i += blockDim.x) sh[i] += sh[i + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) part[0] = sh[0];
}

static double sumsq(const float *x, size_t n)
{
    if (!n) return 0;
    double *part = (double *)qw_cuda_scratch(SUMSQ_BLOCKS * sizeof(double)), r;
    sumsq_partial_kernel<<<SUMSQ_BLOCKS, TPB>>>(part, x, n);
    QW_LAUNCHED("sumsq");
    sumsq_final_kernel<<<1, TPB>>>(part);
    QW_LAUNCHED("sumsq (final)");
    QW_CU(cudaMemcpy(&r, part, sizeof r, cudaMemcpyDeviceToHost));
    return r;
}

template <typename T>
__global__ void adamw_kernel(float *p, T *p_act, const float *g, float *m, float *v, size_t n, qw_adamw_scalars s)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float gi = __fmul_rn(g[i], s.grad_scale);
        float mi = __fadd_rn(__fmul_rn(s.beta1, m[i]), __fmul_rn(1.0f - s.beta1, gi));
        float vi = __fadd_rn(__fmul_rn(s.beta2, v[i]), __fmul_rn(__fmul_rn(1.0f - s.beta2, gi), gi));
        float den = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), s.bc2_sqrt), s.eps);
        float pi = __fsub_rn(__fmul_rn(p[i], s.decay), __fdiv_rn(__fmul_rn(s.step_size, mi), den));
        m[i] = mi;
        v[i] = vi;
        p[i] = pi;
        if (p_act) qw_st(p_act + i, pi);
    }
}

template <typename T>
static void adamw(float *p, void *p_act, const float *g, float *m, float *v, size_t n, const qw_adamw_scalars *s)
{
    if (!n) return;
    size_t b = qw_blocks(n, TPB);
    adamw_kernel<T><<<(unsigned)(b < 16384 ? b : 16384), TPB>>>(p, (T *)p_act, g, m, v, n, *s);
    QW_LAUNCHED("adamw");
}

template <typename T>
static void fill(qw_ops *t)
{
    t->sumsq = sumsq;
    t->adamw = adamw<T>;
}

QW_FILL_BOTH(optim)
