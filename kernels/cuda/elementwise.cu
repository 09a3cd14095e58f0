/* elementwise.cu — conversions, the embedding, SwiGLU and the row moves of
 * MoE (gather, scatter-add, scale, dot), over activations of type T.
 *
 * Elementwise kernels move 16-byte vectors when the length and the
 * pointers allow it (qw_vec<T>() elements), else single elements.
 * Scatter-adds (embedding backward, MoE combine) use atomics, or with
 * set_deterministic(1) one thread per column walking the rows in order. */
#include "internal.cuh"

/* ---- conversions ---- */

template <typename D, typename S, int V>
__global__ void convert_kernel(D *dst, const S *src, size_t nv)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < nv; i += (size_t)gridDim.x * blockDim.x) {
        float f[V];
        qw_ldv<V>(f, src + i * V);
        qw_stv<V>(dst + i * V, f);
    }
}

static unsigned grid_for(size_t n) { size_t b = qw_blocks(n, TPB); return (unsigned)(b < 8192 ? (b ? b : 1) : 8192); }

template <typename D, typename S>
static void convert(D *dst, const S *src, size_t n, const char *what)
{
    if (!n) return;
    if (n % 4 == 0 && qw_aligned(16, dst, src))
        convert_kernel<D, S, 4><<<grid_for(n / 4), TPB>>>(dst, src, n / 4);
    else
        convert_kernel<D, S, 1><<<grid_for(n), TPB>>>(dst, src, n);
    QW_LAUNCHED(what);
}

template <typename T>
static void to_act(void *dst, const float *src, size_t n) { convert((T *)dst, src, n, "to_act"); }
template <typename T>
static void from_act(float *dst, const void *src, size_t n) { convert(dst, (const T *)src, n, "from_act"); }

/* ---- rows: gather, embedding forward ---- */

template <typename D, typename S, int V>
__global__ void gather_kernel(D *dst, const S *src, const int32_t *rows, int dim)
{
    const S *s = src + (size_t)rows[blockIdx.x] * dim;
    D *d = dst + (size_t)blockIdx.x * dim;
    for (int j = threadIdx.x * V; j < dim; j += blockDim.x * V) {
        float f[V];
        qw_ldv<V>(f, s + j);
        qw_stv<V>(d + j, f);
    }
}

template <typename D, typename S>
static void gather(D *dst, const S *src, const int32_t *rows, int n, int dim, const char *what)
{
    if (n <= 0) return;
    if (dim % 4 == 0 && qw_aligned(16, dst, src)) gather_kernel<D, S, 4><<<n, TPB>>>(dst, src, rows, dim);
    else gather_kernel<D, S, 1><<<n, TPB>>>(dst, src, rows, dim);
    QW_LAUNCHED(what);
}

template <typename T>
static void embed_fwd(void *y, const float *table, const int32_t *ids, int n, int H)
{
    gather((T *)y, table, ids, n, H, "embed forward");
}

template <typename T>
static void gather_rows(void *dst, const void *src, const int32_t *rows, int n, int dim)
{
    gather((T *)dst, (const T *)src, rows, n, dim, "gather_rows");
}

/* ---- rows: scatter-add (embedding backward, MoE combine) ---- */

template <typename D, typename S>
__global__ void scatter_atomic_kernel(D *dst, const S *src, const int32_t *rows, int dim)
{
    D *d = dst + (size_t)rows[blockIdx.x] * dim;
    const S *s = src + (size_t)blockIdx.x * dim;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) qw_atomic_add(d + j, qw_ld(s + j));
}

/* Deterministic: thread j owns column j and adds the rows in order. */
template <typename D, typename S>
__global__ void scatter_ordered_kernel(D *dst, const S *__restrict__ src, const int32_t *__restrict__ rows, int n,
                                       int dim)
{
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= dim) return;
    for (int a = 0; a < n; a++) {
        D *d = dst + (size_t)rows[a] * dim + j;
        qw_st(d, qw_ld(d) + qw_ld(src + (size_t)a * dim + j));
    }
}

template <typename D, typename S>
static void scatter_add(D *dst, const S *src, const int32_t *rows, int n, int dim, const char *what)
{
    if (n <= 0) return;
    if (qw_cuda_deterministic) scatter_ordered_kernel<D, S><<<qw_blocks(dim, 64), 64>>>(dst, src, rows, n, dim);
    else scatter_atomic_kernel<D, S><<<n, TPB>>>(dst, src, rows, dim);
    QW_LAUNCHED(what);
}

template <typename T>
static void embed_bwd(float *dtable, const void *dy, const int32_t *ids, int n, int H)
{
    scatter_add(dtable, (const T *)dy, ids, n, H, "embed backward");
}

template <typename T>
static void scatter_add_rows(void *dst, const void *src, const int32_t *rows, int n, int dim)
{
    scatter_add((T *)dst, (const T *)src, rows, n, dim, "scatter_add_rows");
}

/* ---- rows: scale, dot ---- */

template <typename T, int V>
__global__ void scale_rows_kernel(T *dst, const T *src, const float *w, const int32_t *slots, int dim)
{
    float s = w[slots[blockIdx.x]];
    for (int j = threadIdx.x * V; j < dim; j += blockDim.x * V) {
        float f[V];
        qw_ldv<V>(f, src + (size_t)blockIdx.x * dim + j);
#pragma unroll
        for (int i = 0; i < V; i++) f[i] *= s;
        qw_stv<V>(dst + (size_t)blockIdx.x * dim + j, f);
    }
}

template <typename T>
static void scale_rows(void *dst, const void *src, const float *w, const int32_t *slots, int n, int dim)
{
    if (n <= 0) return;
    constexpr int V = qw_vec<T>();
    if (dim % V == 0 && qw_aligned(16, dst, src))
        scale_rows_kernel<T, V><<<n, TPB>>>((T *)dst, (const T *)src, w, slots, dim);
    else
        scale_rows_kernel<T, 1><<<n, TPB>>>((T *)dst, (const T *)src, w, slots, dim);
    QW_LAUNCHED("scale_rows");
}

template <typename T>
__global__ void row_dot_kernel(float *out, const T *x, const T *y, const int32_t *slots, int n, int dim)
{
    int a = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (a >= n) return;
    float s = 0;
    for (int j = lane; j < dim; j += 32) s += qw_ld(x + (size_t)a * dim + j) * qw_ld(y + (size_t)a * dim + j);
    s = qw_warp_sum(s);
    if (lane == 0) out[slots[a]] = s;
}

template <typename T>
static void row_dot(float *out, const void *x, const void *y, const int32_t *slots, int n, int dim)
{
    if (n <= 0) return;
    row_dot_kernel<T><<<qw_blocks(n, TPB / 32), TPB>>>(out, (const T *)x, (const T *)y, slots, n, dim);
    QW_LAUNCHED("row_dot");
}

/* ---- SwiGLU ---- */

template <typename T, int V>
__global__ void swiglu_fwd_kernel(T *a, const T *g, const T *u, size_t nv)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < nv; i += (size_t)gridDim.x * blockDim.x) {
        float gf[V], uf[V], af[V];
        qw_ldv<V>(gf, g + i * V);
        qw_ldv<V>(uf, u + i * V);
#pragma unroll
        for (int e = 0; e < V; e++) af[e] = gf[e] / (1.0f + expf(-gf[e])) * uf[e];
        qw_stv<V>(a + i * V, af);
    }
}

template <typename T>
static void swiglu_fwd(void *a, const void *g, const void *u, size_t n)
{
    if (!n) return;
    constexpr int V = qw_vec<T>();
    if (n % V == 0 && qw_aligned(16, a, g, u))
        swiglu_fwd_kernel<T, V><<<grid_for(n / V), TPB>>>((T *)a, (const T *)g, (const T *)u, n / V);
    else
        swiglu_fwd_kernel<T, 1><<<grid_for(n), TPB>>>((T *)a, (const T *)g, (const T *)u, n);
    QW_LAUNCHED("swiglu forward");
}

/* dg may alias da: each element is read before it is written, by one thread. */
template <typename T, int V>
__global__ void swiglu_bwd_kernel(T *dg, T *du, const T *da, const T *g, const T *u, size_t nv)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < nv; i += (size_t)gridDim.x * blockDim.x) {
        float gf[V], uf[V], df[V], dgf[V], duf[V];
        qw_ldv<V>(gf, g + i * V);
        qw_ldv<V>(uf, u + i * V);
        qw_ldv<V>(df, da + i * V);
#pragma unroll
        for (int e = 0; e < V; e++) {
            float s = 1.0f / (1.0f + expf(-gf[e]));
            duf[e] = df[e] * gf[e] * s;
            dgf[e] = df[e] * uf[e] * s * (1.0f + gf[e] * (1.0f - s));
        }
        qw_stv<V>(du + i * V, duf);
        qw_stv<V>(dg + i * V, dgf);
    }
}

template <typename T>
static void swiglu_bwd(void *dg, void *du, const void *da, const void *g, const void *u, size_t n)
{
    if (!n) return;
    constexpr int V = qw_vec<T>();
    if (n % V == 0 && qw_aligned(16, dg, du, da) && qw_aligned(16, g, u))
        swiglu_bwd_kernel<T, V><<<grid_for(n / V), TPB>>>((T *)dg, (T *)du, (const T *)da, (const T *)g,
                                                           (const T *)u, n / V);
    else
        swiglu_bwd_kernel<T, 1><<<grid_for(n), TPB>>>((T *)dg, (T *)du, (const T *)da, (const T *)g, (const T *)u, n);
    QW_LAUNCHED("swiglu backward");
}

template <typename T>
static void fill(qw_ops *t)
{
    t->to_act = to_act<T>;
    t->from_act = from_act<T>;
    t->embed_fwd = embed_fwd<T>;
    t->embed_bwd = embed_bwd<T>;
    t->swiglu_fwd = swiglu_fwd<T>;
    t->swiglu_bwd = swiglu_bwd<T>;
    t->gather_rows = gather_rows<T>;
    t->scatter_add_rows = scatter_add_rows<T>;
    t->scale_rows = scale_rows<T>;
    t->row_dot = row_dot<T>;
}

QW_FILL_BOTH(elementwise)
