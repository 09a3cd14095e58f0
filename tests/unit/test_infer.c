/* test_infer.c — the paged K/V cache's bookkeeping (qw/kvcache.h), the
 * decoding ops of the CPU backend (paged attention against the training
 * attention; sampling: excluded tokens, frequencies, reproducibility), and
 * the engine (qw/infer.h) with a cache too small for everything at once. */
#include "qwtest.h"
#include "qw/cli.h"
#include "qw/config.h"
#include "qw/infer.h"
#include "qw/kvcache.h"
#include "qw/model.h"
#include "qw/ops.h"
#include "qw/params.h"
#include "qw/rng.h"

#include <stdint.h>

static const qw_ops *ops;
static uint64_t rng = 88172645463325252ULL;

static double urand(void)   /* uniform in [-1, 1) */
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (double)(rng >> 11) / 4503599627370496.0 - 1.0;
}

/* ---- the cache ---- */

TEST(cache_alloc_free)
{
    qw_kv_pool p;
    qw_kv_pool_init(&p, 8, 4);
    qw_kv_seq a;
    qw_kv_seq_init(&a, 8);
    CHECK(qw_kv_reserve(&p, &a, 3));
    CHECK(qw_kv_available(&p) == 5 && p.n_free == 8);
    int32_t f, t;
    for (int pos = 0; pos < 9; pos++) {   /* positions 0..8: three blocks */
        int32_t slot = qw_kv_seq_slot(&p, &a, pos, &f, &t);
        CHECK(f < 0 && t < 0);
        CHECK(slot == a.table[pos / 4] * 4 + pos % 4);
    }
    CHECK(a.nb == 3 && a.resv == 0 && p.n_free == 5 && p.promised == 0);
    CHECK(a.table[0] == 0 && a.table[1] == 1 && a.table[2] == 2);   /* lowest blocks first */
    for (int b = 0; b < 3; b++) CHECK(p.ref[a.table[b]] == 1);
    qw_kv_seq_release(&p, &a);
    CHECK(p.n_free == 8 && qw_kv_available(&p) == 8);
    for (int b = 0; b < 8; b++) CHECK(p.ref[b] == 0);
    qw_kv_pool_free(&p);
}

TEST(cache_sharing_and_copy_on_write)
{
    qw_kv_pool p;
    qw_kv_pool_init(&p, 16, 4);
    qw_kv_seq prompt, s1, s2;
    qw_kv_seq_init(&prompt, 8);
    CHECK(qw_kv_reserve(&p, &prompt, 2));
    qw_kv_seq_grow(&p, &prompt);
    qw_kv_seq_grow(&p, &prompt);   /* a prompt of 6 tokens: one full block, one partly filled */
    qw_kv_seq_init(&s1, 8);
    qw_kv_seq_init(&s2, 8);
    qw_kv_seq_share(&p, &s1, &prompt);
    qw_kv_seq_share(&p, &s2, &prompt);
    CHECK(qw_kv_reserve(&p, &s1, 2) && qw_kv_reserve(&p, &s2, 2));
    CHECK(p.ref[prompt.table[0]] == 3 && p.ref[prompt.table[1]] == 3);
    qw_kv_seq_release(&p, &prompt);   /* the prompt lets go once every sample holds its blocks */
    CHECK(p.ref[s1.table[0]] == 2 && p.ref[s1.table[1]] == 2);
    int32_t f, t, shared = s1.table[1];
    int32_t slot = qw_kv_seq_slot(&p, &s1, 6, &f, &t);   /* s1 writes position 6: copy first */
    CHECK(f == shared && t == s1.table[1] && t != shared);
    CHECK(slot == t * 4 + 2);
    CHECK(p.ref[shared] == 1 && p.ref[t] == 1 && s1.resv == 1);
    slot = qw_kv_seq_slot(&p, &s2, 6, &f, &t);   /* s2 is the last holder: writes in place */
    CHECK(f < 0 && slot == shared * 4 + 2 && s2.table[1] == shared && s2.resv == 2);
    slot = qw_kv_seq_slot(&p, &s2, 7, &f, &t);
    CHECK(f < 0 && slot == shared * 4 + 3);
    CHECK(s1.table[0] == s2.table[0] && p.ref[s1.table[0]] == 2);   /* the full block stays shared */
    qw_kv_seq_release(&p, &s1);
    qw_kv_seq_release(&p, &s2);
    CHECK(p.n_free == 16 && p.promised == 0);
    qw_kv_pool_free(&p);
}

TEST(cache_exhaustion_waits)
{
    qw_kv_pool p;
    qw_kv_pool_init(&p, 5, 2);
    qw_kv_seq a, b;
    qw_kv_seq_init(&a, 8);
    qw_kv_seq_init(&b, 8);
    CHECK(qw_kv_reserve(&p, &a, 4));
    CHECK(!qw_kv_reserve(&p, &b, 2));   /* one block left: b waits, nothing changes */
    CHECK(b.resv == 0 && p.promised == 4 && qw_kv_available(&p) == 1);
    int32_t f, t;
    qw_kv_seq_slot(&p, &a, 0, &f, &t);
    CHECK(!qw_kv_reserve(&p, &b, 2));   /* taking from a reservation frees nothing */
    qw_kv_seq_release(&p, &a);   /* a finishes: its block and the unused reservation return */
    CHECK(qw_kv_reserve(&p, &b, 2));
    qw_kv_seq_release(&p, &b);
    CHECK(p.n_free == 5 && p.promised == 0);
    qw_kv_pool_free(&p);
}

/* ---- paged attention against the training attention ---- */

TEST(attn_paged_matches_attn_fwd)
{
    int T = 37, nh = 4, nkv = 2, d = 8, bs = 4, nblk = 16, mb = (T + bs - 1) / bs;
    size_t nq = (size_t)T * nh * d, nk = (size_t)T * nkv * d;
    float *q = qw_malloc(nq * 4), *k = qw_malloc(nk * 4), *v = qw_malloc(nk * 4);
    for (size_t i = 0; i < nq; i++) q[i] = (float)urand();
    for (size_t i = 0; i < nk; i++) k[i] = (float)urand(), v[i] = (float)urand();
    float *o = qw_malloc(nq * 4), *lse = qw_malloc((size_t)T * nh * 4), *o2 = qw_calloc(nq, 4);
    int32_t kvs[64] = {0};
    size_t ws_b = ops->attn_workspace(1, T, nh, d);
    void *ws = qw_malloc(ws_b);
    ops->attn_fwd(o, lse, q, k, v, kvs, 1, T, nh, nkv, d, 0.35f, ws, ws_b);
    /* the sequence's blocks scattered over the pool, written one position at a time */
    int32_t table[16], slots[64], seq[64], pos[64];
    for (int b = 0; b < mb; b++) table[b] = (7 * b + 3) % nblk;
    float *kc = qw_calloc((size_t)nblk * bs * nkv * d, 4), *vc = qw_calloc((size_t)nblk * bs * nkv * d, 4);
    for (int t = 0; t < T; t++) slots[t] = table[t / bs] * bs + t % bs, seq[t] = 0, pos[t] = t;
    ops->kv_write(kc, vc, k, v, slots, T, nkv * d);
    size_t pw = ops->attn_paged_workspace(nh, nkv, mb * bs);
    void *pws = qw_malloc(pw);
    ops->attn_paged(o2, q, kc, vc, table, mb, seq, pos, T, nh, nkv, d, bs, 0.35f, pws, pw);
    double m = 0;
    for (size_t i = 0; i < nq; i++) m = fmax(m, fabs(o[i] - o2[i]));
    CHECK_MSG(m < 1e-5, "max |paged - attn_fwd| = %g", m);
    free(q); free(k); free(v); free(o); free(o2); free(lse); free(ws); free(kc); free(vc); free(pws);
}

/* ---- sampling ---- */

enum { SV = 16 };

static void sample_n(int n, const float *logits, const double *u, float temp, int top_k, float top_p, int32_t *tok,
                     float *lp, float *raw)
{
    void *ws = qw_malloc(ops->sample_workspace(n, SV));
    ops->sample(tok, lp, raw, logits, u, NULL, n, SV, temp, top_k, top_p, ws);
    free(ws);
}

static void fill_logits(float *l, int rows)
{
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < SV; v++) l[r * SV + v] = (float)(1.5 * urand());
}

/* The probabilities after temperature, top-k, top-p, in double. */
static void ref_probs(const float *l, float temp, int top_k, double top_p, double *p)
{
    int idx[SV];
    for (int i = 0; i < SV; i++) idx[i] = i;
    for (int i = 0; i < SV; i++)   /* stable selection sort, decreasing */
        for (int j = i + 1; j < SV; j++)
            if (l[idx[j]] > l[idx[i]] || (l[idx[j]] == l[idx[i]] && idx[j] < idx[i])) { int t = idx[i]; idx[i] = idx[j]; idx[j] = t; }
    int n = top_k > 0 && top_k < SV ? top_k : SV;
    double s = 0, e[SV];
    for (int i = 0; i < n; i++) s += e[i] = exp((l[idx[i]] - l[idx[0]]) / temp);
    int keep = 0;
    double cum = 0;
    while (keep < n && cum < top_p * s) cum += e[keep++];
    for (int v = 0; v < SV; v++) p[v] = 0;
    for (int i = 0; i < keep; i++) p[idx[i]] = e[i] / cum;
}

TEST(sample_excludes_top_k_top_p)
{
    enum { N = 4000 };
    float *l = qw_malloc((size_t)N * SV * 4);
    double *u = qw_malloc(N * sizeof *u);
    fill_logits(l, 1);
    for (int r = 1; r < N; r++) memcpy(l + (size_t)r * SV, l, SV * 4);
    for (int r = 0; r < N; r++) u[r] = qw_rng_uniform_at(7, 1, r);
    int32_t tok[N];
    float lp[N], raw[N];
    struct { int k; float p; } cases[] = { {3, 1}, {0, 0.5f}, {5, 0.6f}, {1, 1} };
    for (int c = 0; c < 4; c++) {
        double p[SV];
        ref_probs(l, 0.8f, cases[c].k, cases[c].p, p);
        sample_n(N, l, u, 0.8f, cases[c].k, cases[c].p, tok, lp, raw);
        int bad = 0, seen[SV] = {0};
        for (int r = 0; r < N; r++) {
            if (p[tok[r]] == 0) bad++;
            seen[tok[r]] = 1;
            if (fabs(lp[r] - log(p[tok[r]])) > 1e-5) bad++;
        }
        int allowed = 0, hit = 0;
        for (int v = 0; v < SV; v++) allowed += p[v] > 0, hit += seen[v];
        CHECK_MSG(bad == 0, "case %d: %d draws outside the kept set or with a wrong log-prob", c, bad);
        CHECK_MSG(hit == allowed, "case %d: %d of %d kept tokens drawn", c, hit, allowed);
    }
    free(l); free(u);
}

TEST(sample_frequencies_chi_square)
{
    enum { N = 40000 };
    float *l = qw_malloc((size_t)N * SV * 4);
    double *u = qw_malloc(N * sizeof *u), p[SV];
    fill_logits(l, 1);
    for (int r = 1; r < N; r++) memcpy(l + (size_t)r * SV, l, SV * 4);
    for (int r = 0; r < N; r++) u[r] = qw_rng_uniform_at(1234, 42, r);
    int32_t *tok = qw_malloc(N * sizeof *tok);
    float *lp = qw_malloc(N * 4), *raw = qw_malloc(N * 4);
    sample_n(N, l, u, 0.7f, 0, 1, tok, lp, raw);
    ref_probs(l, 0.7f, 0, 1, p);
    long cnt[SV] = {0};
    for (int r = 0; r < N; r++) cnt[tok[r]]++;
    double chi = 0;
    for (int v = 0; v < SV; v++) chi += (cnt[v] - N * p[v]) * (cnt[v] - N * p[v]) / (N * p[v]);
    /* 15 degrees of freedom: P(chi² > 37.70) = 0.001 */
    CHECK_MSG(chi < 37.70, "chi-square %.2f over 15 degrees of freedom", chi);
    printf("NOTE chi-square %.2f (15 dof, limit 37.70)\n", chi);
    free(l); free(u); free(tok); free(lp); free(raw);
}

TEST(sample_same_at_batch_1_and_64)
{
    enum { N = 64 };
    float l[N * SV];
    double u[N];
    fill_logits(l, N);
    for (int r = 0; r < N; r++) u[r] = qw_rng_uniform_at(99, (uint64_t)r << 32, 5);
    int32_t tok[N], t1;
    float lp[N], raw[N], lp1, raw1;
    sample_n(N, l, u, 1.3f, 6, 0.9f, tok, lp, raw);
    int same = 1;
    for (int r = 0; r < N; r++) {
        sample_n(1, l + r * SV, u + r, 1.3f, 6, 0.9f, &t1, &lp1, &raw1);
        same &= t1 == tok[r] && lp1 == lp[r] && raw1 == raw[r];
    }
    CHECK(same);
}

TEST(sample_greedy_and_forced)
{
    float l[2 * SV];
    fill_logits(l, 2);
    l[5] = 9, l[SV + 2] = 9, l[SV + 7] = 9;   /* a tie in row 1: the lower id */
    double u[2] = {0.3, 0.9};
    int32_t tok[2], forced[2] = {-1, 11};
    float lp[2], raw[2];
    void *ws = qw_malloc(ops->sample_workspace(2, SV));
    ops->sample(tok, lp, raw, l, u, NULL, 2, SV, 0, 0, 1, ws);
    CHECK(tok[0] == 5 && tok[1] == 2);
    CHECK(lp[0] == raw[0] && lp[1] == raw[1]);
    double s = 0;
    for (int v = 0; v < SV; v++) s += exp(l[v]);
    CHECK_NEAR(raw[0], l[5] - log(s), 1e-6);
    ops->sample(tok, lp, raw, l, u, forced, 2, SV, 0.5f, 2, 1, ws);   /* forced: outside the top 2 */
    CHECK(tok[1] == 11);
    s = 0;
    for (int v = 0; v < SV; v++) s += exp((l[SV + v] - 9) / 0.5);
    CHECK_NEAR(lp[1], (l[SV + 11] - 9) / 0.5 - log(s), 1e-5);
    free(ws);
}

/* ---- the engine, with a cache that holds two sequences at a time ---- */

typedef struct { qw_completion c[8][3]; int got; } sink;

static int keep(void *ctx, int prompt, const qw_completion *c)
{
    sink *s = ctx;
    for (int j = 0; j < 3; j++) {
        qw_completion *d = &s->c[prompt][j];
        *d = c[j];
        d->ids = qw_malloc(c[j].n * sizeof *d->ids);
        memcpy(d->ids, c[j].ids, c[j].n * sizeof *d->ids);
        d->logprobs = d->raw_logprobs = NULL;
    }
    s->got++;
    return 0;
}

TEST(engine_small_cache_waits)
{
    qw_config c;
    qw_params P;
    CHECK(qw_config_load(qwtest_path("tests/golden/moe/model"), &c) == 0);
    CHECK(qw_params_init(&P, &c) == 0);
    qw_params_init_random(&P, 5);
    int32_t ids[8][20];
    qw_gen_prompt pr[8];
    for (int i = 0; i < 8; i++) {
        for (int t = 0; t < 20; t++) ids[i][t] = (int32_t)((i * 37 + t * 11) % 256);
        pr[i] = (qw_gen_prompt){ ids[i], 3 + 2 * i, (uint64_t)i };
    }
    qw_gen_opts g = { .n = 3, .max_new_tokens = 12, .temperature = 0.9, .top_k = 20, .top_p = 0.95, .seed = 3,
                      .thinking_budget = -1 };
    sink *a = qw_calloc(1, sizeof *a), *b = qw_calloc(1, sizeof *b);
    qw_engine *e;
    /* roomy: everything at once */
    CHECK(qw_engine_new(ops, &P, &(qw_engine_opts){ .max_batch = 64, .block_size = 4, .max_context = 64 }, &e) == 0);
    CHECK(qw_engine_generate(e, pr, 8, &g, keep, NULL, a) == 0);
    qw_engine_free(e);
    /* 12 blocks of 4: the longest prompt needs 5 + 4 per sample; batch of 2 */
    CHECK(qw_engine_new(ops, &P, &(qw_engine_opts){ .max_batch = 2, .block_size = 4, .max_context = 64,
                                                    .cache_tokens = 48 }, &e) == 0);
    CHECK(qw_engine_generate(e, pr, 8, &g, keep, NULL, b) == 0);
    qw_engine_free(e);
    CHECK(a->got == 8 && b->got == 8);
    int same = 1;
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 3; j++) {
            same &= a->c[i][j].n == b->c[i][j].n && a->c[i][j].n == 12;
            if (a->c[i][j].n == b->c[i][j].n) same &= !memcmp(a->c[i][j].ids, b->c[i][j].ids, a->c[i][j].n * 4);
            free(a->c[i][j].ids); free(b->c[i][j].ids);
        }
    CHECK(same);
    /* a prompt that cannot fit the cache at all is refused before any work */
    CHECK(qw_engine_new(ops, &P, &(qw_engine_opts){ .max_batch = 2, .block_size = 4, .max_context = 64,
                                                    .cache_tokens = 8 }, &e) == 0);
    CHECK(qw_engine_generate(e, pr, 8, &g, keep, NULL, b) == QW_EXIT_USAGE);
    qw_engine_free(e);
    free(a); free(b);
    qw_params_free(&P);
}

int main(void)
{
    PLAN(9);
    ops = qw_ops_cpu();
    ops->set_threads(2);
    RUN(cache_alloc_free);
    RUN(cache_sharing_and_copy_on_write);
    RUN(cache_exhaustion_waits);
    RUN(attn_paged_matches_attn_fwd);
    RUN(sample_excludes_top_k_top_p);
    RUN(sample_frequencies_chi_square);
    RUN(sample_same_at_batch_1_and_64);
    RUN(sample_greedy_and_forced);
    RUN(engine_small_cache_waits);
    return qwtest_finish();
}
