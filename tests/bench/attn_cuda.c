/* attn_cuda.c — time qw's CUDA attention (bf16 storage) forward and
 * backward, and the GEMMs, on random data; prints one line per kernel:
 *   qw NAME SHAPE ms TFLOP/s
 * FLOPs: causal attention forward 2·2·B·nh·T²·d / 2, backward 2.5× that
 * (the FlashAttention convention); GEMM 2·m·n·k.
 *
 *   attn_cuda [B T nh nkv d [gemm_size]]   (default 4 4096 16 8 128 8192)
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "qw/ops.h"
#include "qwcuda.h"

static const qw_ops *G;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *drand_bf16(size_t n)
{
    float *h = malloc(n * 4), *d = G->alloc(n * 4);
    uint16_t *b = G->alloc(n * 2);
    if (!h || !d || !b) { fprintf(stderr, "attn_cuda: out of memory (%zu elements)\n", n); exit(1); }
    for (size_t i = 0; i < n; i++) h[i] = (float)rand() / RAND_MAX * 2 - 1;
    G->upload(d, h, n * 4);
    qw_cuda_to_bf16(b, d, n);
    G->free(d);
    free(h);
    return b;
}

#define TIME(iters, body) ({ body; qw_cuda_sync(); double t0_ = now(); \
    for (int it_ = 0; it_ < (iters); it_++) { body; } qw_cuda_sync(); (now() - t0_) / (iters); })

int main(int argc, char **argv)
{
    int B = 4, T = 4096, nh = 16, nkv = 8, d = 128, S = 8192;
    if (argc >= 6) { B = atoi(argv[1]); T = atoi(argv[2]); nh = atoi(argv[3]); nkv = atoi(argv[4]); d = atoi(argv[5]); }
    if (argc >= 7) S = atoi(argv[6]);
    G = qw_ops_cuda();
    if (!G) { fprintf(stderr, "attn_cuda: no usable GPU: %s\n", qw_cuda_why()); return 1; }
    size_t nq = (size_t)B * T * nh * d, nk = (size_t)B * T * nkv * d;
    uint16_t *q = drand_bf16(nq), *k = drand_bf16(nk), *v = drand_bf16(nk), *g = drand_bf16(nq);
    uint16_t *o = G->alloc(nq * 2), *dq = G->alloc(nq * 2), *dk = G->alloc(nk * 2), *dv = G->alloc(nk * 2);
    float *lse = G->alloc((size_t)B * T * nh * 4);
    int32_t *ks = G->alloc((size_t)B * T * 4);   /* zeros: one document per row, plain causal */
    float sc = 1 / sqrtf((float)d);
    double f = 4.0 * B * nh * (double)T * T * d / 2;
    double tf = TIME(2, qw_cuda_attn_fwd_bf16(o, lse, q, k, v, ks, B, T, nh, nkv, d, sc));
    printf("qw attn_fwd_bf16 B%d T%d H%d/%d D%d causal %.3f ms %.2f TFLOP/s\n", B, T, nh, nkv, d, tf * 1e3, f / tf / 1e12);
    double tb = TIME(1, qw_cuda_attn_bwd_bf16(dq, dk, dv, g, q, k, v, o, lse, ks, B, T, nh, nkv, d, sc));
    printf("qw attn_bwd_bf16 B%d T%d H%d/%d D%d causal %.3f ms %.2f TFLOP/s\n", B, T, nh, nkv, d, tb * 1e3,
           2.5 * f / tb / 1e12);

    size_t nm = (size_t)S * S;
    uint16_t *A = drand_bf16(nm), *Bm = drand_bf16(nm);
    float *C = G->alloc(nm * 4);
    uint16_t *C16 = G->alloc(nm * 2);
    double fg = 2.0 * S * (double)S * S;
    double t = TIME(10, qw_cuda_gemm_bf16(0, 1, S, S, S, 1, A, S, Bm, S, 0, C16, S, 0));
    printf("qw gemm_bf16 %d^3 (bf16 out, x·Wᵀ) %.3f ms %.1f TFLOP/s\n", S, t * 1e3, fg / t / 1e12);
    t = TIME(10, qw_cuda_gemm_bf16(0, 0, S, S, S, 1, A, S, Bm, S, 0, C, S, 1));
    printf("qw gemm_bf16 %d^3 (fp32 out) %.3f ms %.1f TFLOP/s\n", S, t * 1e3, fg / t / 1e12);
    float *Af = G->alloc(nm * 4), *Bf = G->alloc(nm * 4);
    qw_cuda_from_bf16(Af, A, nm);
    qw_cuda_from_bf16(Bf, Bm, nm);
    t = TIME(3, G->gemm(0, 1, S, S, S, 1, Af, S, Bf, S, 0, C, S));
    printf("qw gemm_fp32 %d^3 (table op, TF32 off) %.3f ms %.1f TFLOP/s\n", S, t * 1e3, fg / t / 1e12);
    return 0;
}
