/* eval.c — lm-eval's scoring rules over the model forward (qw/eval.h). */
#include "qw/eval.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qw/cli.h"
#include "qw/model.h"
#include "qw/size.h"

/* ---- rolling windows ---- */

int64_t qw_eval_windows(int64_t n, int64_t L, qw_eval_window *w)
{
    if (n <= 0 || L < 1) return 0;
    int64_t first = n < L ? n : L, nw = 0;
    if (w) w[nw] = (qw_eval_window){-1, 0, first};
    nw++;
    for (int64_t done = first; done < n;) {
        int64_t len = n - done < L ? n - done : L, end = done + len;
        if (w) w[nw] = (qw_eval_window){end - L - 1, done, end};
        nw++;
        done = end;
    }
    return nw;
}

/* ---- text measures ---- */

int qw_eval_is_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* The code point at s[i] and its byte length (an invalid byte: itself, 1). */
static uint32_t decode(const unsigned char *s, size_t n, size_t i, int *len)
{
    unsigned c = s[i];
    int k = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (k <= 1 || i + k > n) { *len = 1; return c; }
    uint32_t cp = c & (0x7f >> k);
    for (int j = 1; j < k; j++) {
        if ((s[i + j] & 0xc0) != 0x80) { *len = 1; return c; }
        cp = cp << 6 | (s[i + j] & 0x3f);
    }
    *len = k;
    return cp;
}

size_t qw_eval_lstrip(const char *s, size_t n)
{
    size_t i = 0;
    int len;
    while (i < n && qw_eval_is_space(decode((const unsigned char *)s, n, i, &len))) i += len;
    return i;
}

size_t qw_eval_rstrip(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t keep = 0, i = 0;
    int len;
    while (i < n) {   /* forward, so multi-byte characters are read whole */
        uint32_t c = decode(u, n, i, &len);
        i += len;
        if (!qw_eval_is_space(c)) keep = i;
    }
    return keep;
}

int64_t qw_eval_words(const char *s, size_t n)
{
    int64_t runs = 0;
    int in_space = 0, len;
    for (size_t i = 0; i < n; i += len) {
        int sp = qw_eval_is_space(decode((const unsigned char *)s, n, i, &len));
        if (sp && !in_space) runs++;
        in_space = sp;
    }
    return runs + 1;
}

int64_t qw_eval_chars(const char *s, size_t n)
{
    int64_t k = 0;
    int len;
    for (size_t i = 0; i < n; i += len, k++) decode((const unsigned char *)s, n, i, &len);
    return k;
}

/* ---- the context/continuation split ---- */

int qw_eval_encode_pair(const qw_tok *tok, int32_t prefix, const char *context, size_t clen,
                        const char *cont, size_t tlen, qw_ids *seq, int *k)
{
    size_t keep = qw_eval_rstrip(context, clen);
    qw_buf whole = {0};
    qw_buf_add(&whole, context, clen);   /* context + continuation, the spaces moved along */
    qw_buf_add(&whole, cont, tlen);
    seq->n = 0;
    int rc;
    if (keep == 0) {   /* empty context: the prefix token, then the continuation alone */
        qw_ids_push(seq, prefix);
        rc = qw_tok_encode(tok, whole.p, whole.n, seq);
    } else {
        qw_ids c = {0};
        rc = qw_tok_encode(tok, context, keep, &c);
        if (!rc) rc = qw_tok_encode(tok, whole.p, whole.n, seq);
        if (!rc && seq->n < c.n)   /* cannot happen with BPE; guard the subtraction */
            rc = qw_error(QW_EXIT_DATA, "the context encodes to more tokens than context + continuation");
        if (!rc) {
            /* lm-eval takes whole[len(ctx):]: the context part is ctx's own encoding */
            memcpy(seq->v, c.v, c.n * sizeof *c.v);
            *k = (int)(seq->n - c.n);
        }
        qw_ids_free(&c);
        qw_buf_free(&whole);
        return rc;
    }
    if (!rc) *k = (int)(seq->n - 1);
    qw_buf_free(&whole);
    return rc;
}

/* ---- statistics ---- */

void qw_eval_mean_stderr(const double *x, int64_t n, double *mean, double *se)
{
    double m = 0, ss = 0;
    for (int64_t i = 0; i < n; i++) m += x[i];
    m = n ? m / n : NAN;
    for (int64_t i = 0; i < n; i++) ss += (x[i] - m) * (x[i] - m);
    *mean = m;
    *se = n >= 2 ? sqrt(ss / (n - 1)) / sqrt((double)n) : NAN;
}

void qw_eval_mc_pred(const double *ll, const int64_t *len, int n, int *pred, int *pred_norm)
{
    double best = -INFINITY, bestn = -INFINITY;
    *pred = *pred_norm = 0;
    for (int c = 0; c < n; c++) {
        double vn = ll[c] / (double)(len[c] > 0 ? len[c] : 1);
        if (ll[c] > best) best = ll[c], *pred = c;
        if (vn > bestn) bestn = vn, *pred_norm = c;
    }
}

/* ---- Python's random ---- */

static void mt_init(qw_pyrand *r, uint32_t s)
{
    r->mt[0] = s;
    for (int i = 1; i < 624; i++) r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
    r->i = 624;
}

void qw_pyrand_seed(qw_pyrand *r, uint64_t seed)
{
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    int klen = key[1] ? 2 : 1;
    mt_init(r, 19650218u);
    int i = 1, j = 0;
    for (int k = 624 > klen ? 624 : klen; k; k--) {
        r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1664525u)) + key[j] + (uint32_t)j;
        i++, j++;
        if (i >= 624) { r->mt[0] = r->mt[623]; i = 1; }
        if (j >= klen) j = 0;
    }
    for (int k = 623; k; k--) {
        r->mt[i] = (r->mt[i] ^ ((r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) * 1566083941u)) - (uint32_t)i;
        i++;
        if (i >= 624) { r->mt[0] = r->mt[623]; i = 1; }
    }
    r->mt[0] = 0x80000000u;
    r->i = 624;
}

uint32_t qw_pyrand_u32(qw_pyrand *r)
{
    if (r->i >= 624) {
        for (int k = 0; k < 624; k++) {
            uint32_t y = (r->mt[k] & 0x80000000u) | (r->mt[(k + 1) % 624] & 0x7fffffffu);
            r->mt[k] = r->mt[(k + 397) % 624] ^ (y >> 1) ^ (y & 1 ? 0x9908b0dfu : 0);
        }
        r->i = 0;
    }
    uint32_t y = r->mt[r->i++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
}

/* getrandbits(k) for 1 ≤ k ≤ 64: 32-bit words, least significant first. */
static uint64_t getrandbits(qw_pyrand *r, int k)
{
    if (k <= 32) return qw_pyrand_u32(r) >> (32 - k);
    uint64_t lo = qw_pyrand_u32(r), hi = qw_pyrand_u32(r) >> (64 - k);
    return lo | hi << 32;
}

/* _randbelow_with_getrandbits(n), n ≥ 1 */
static int64_t randbelow(qw_pyrand *r, int64_t n)
{
    int k = 64 - __builtin_clzll((uint64_t)n);
    uint64_t x;
    do x = getrandbits(r, k); while (x >= (uint64_t)n);
    return (int64_t)x;
}

void qw_pyrand_sample(qw_pyrand *r, int64_t n, int64_t k, int64_t *out)
{
    int64_t setsize = 21;
    if (k > 5) {   /* 4 ** ceil(log(3k, 4)), computed as Python does, in doubles */
        setsize += (int64_t)pow(4, ceil(log((double)(3 * k)) / log(4)));
    }
    if (n <= setsize) {
        int64_t *pool = qw_malloc((size_t)(n ? n : 1) * sizeof *pool);
        for (int64_t i = 0; i < n; i++) pool[i] = i;
        for (int64_t i = 0; i < k; i++) {
            int64_t j = randbelow(r, n - i);
            out[i] = pool[j];
            pool[j] = pool[n - i - 1];
        }
        free(pool);
    } else {
        for (int64_t i = 0; i < k; i++) {
            int64_t j;
            int seen;
            do {
                j = randbelow(r, n);
                seen = 0;
                for (int64_t q = 0; q < i && !seen; q++) seen = out[q] == j;
            } while (seen);
            out[i] = j;
        }
    }
}

/* ---- scoring ---- */

struct qw_eval_scorer {
    const qw_ops *ops;
    const qw_params *P;
    int max_len, batch_tokens;
    qw_model *m;
    int B, T;
    long forwards, positions;
};

qw_eval_scorer *qw_eval_scorer_new(const qw_ops *ops, const qw_params *P, int max_len, int batch_tokens)
{
    qw_eval_scorer *s = qw_calloc(1, sizeof *s);
    s->ops = ops, s->P = P, s->max_len = max_len, s->batch_tokens = batch_tokens;
    return s;
}

void qw_eval_scorer_free(qw_eval_scorer *s)
{
    if (!s) return;
    qw_model_free(s->m);
    free(s);
}

void qw_eval_scorer_stats(const qw_eval_scorer *s, long *forwards, long *positions)
{
    *forwards = s->forwards, *positions = s->positions;
}

/* The model input of a request: its last min(n1, max_len+1) tokens but the last. */
static int input_len(const qw_eval_scorer *s, const qw_eval_req *r)
{
    int n1 = r->n1 > s->max_len + 1 ? s->max_len + 1 : r->n1;
    return n1 - 1;
}

typedef struct { int len, idx; } by_len;

static int cmp_len(const void *a, const void *b)
{
    const by_len *x = a, *y = b;
    return x->len != y->len ? y->len - x->len : x->idx - y->idx;
}

int qw_eval_score(qw_eval_scorer *s, qw_eval_req *r, int n)
{
    by_len *order = qw_malloc((size_t)(n ? n : 1) * sizeof *order);
    int nw = 0, longest = 1;
    for (int i = 0; i < n; i++) {
        r[i].ll = 0;
        if (r[i].k == 0) continue;
        int len = r[i].n1 >= 1 ? input_len(s, &r[i]) : 0;
        if (r[i].k < 0 || r[i].k > len) {
            free(order);
            return qw_error(QW_EXIT_DATA, "request %d: %d tokens to score with %d tokens of input (max length %d)", i,
                            r[i].k, len, s->max_len);
        }
        order[nw++] = (by_len){len, i};
        if (len > longest) longest = len;
    }
    qsort(order, nw, sizeof *order, cmp_len);
    /* one model for the largest shape asked: rows of the longest input, about batch_tokens per forward */
    int T = longest > s->T ? longest : s->T, B = s->batch_tokens / T;
    if (B < 1) B = 1;
    if (B > nw) B = nw ? nw : 1;
    if (!s->m || T > s->T || B > s->B) {
        qw_model_free(s->m);
        s->m = NULL;
        int rc = qw_model_new(s->ops, s->P, B, T, NULL, &s->m);
        if (rc) { free(order); return rc; }
        s->B = B, s->T = T;
    }
    B = s->B, T = s->T;
    size_t N = (size_t)B * T;
    int32_t *ids = qw_malloc(N * sizeof *ids), *seg = qw_malloc(N * sizeof *seg), *tgt = qw_malloc(N * sizeof *tgt);
    float *coef = qw_malloc(N * sizeof *coef), *logp = qw_malloc(N * sizeof *logp);
    /* first fit, decreasing: rows filled one forward's worth at a time */
    int *fill = qw_malloc((size_t)B * sizeof *fill);
    int *row_of = qw_malloc((size_t)(nw ? nw : 1) * sizeof *row_of), *at = qw_malloc((size_t)(nw ? nw : 1) * sizeof *at);
    char *placed = qw_calloc(nw ? nw : 1, 1);
    int left = nw, rc = 0;
    while (left > 0 && !rc) {
        for (int b = 0; b < B; b++) fill[b] = 0;
        int first = -1;
        for (int q = 0; q < nw; q++) {
            if (placed[q]) continue;
            for (int b = 0; b < B; b++)
                if (fill[b] + order[q].len <= T) {
                    row_of[q] = b, at[q] = fill[b];
                    fill[b] += order[q].len;
                    placed[q] = 2;   /* in this forward */
                    left--;
                    if (first < 0) first = q;
                    break;
                }
        }
        for (size_t i = 0; i < N; i++) ids[i] = 0, seg[i] = -1 - (int32_t)(i % T), tgt[i] = -1, coef[i] = 0;
        for (int q = first; q < nw; q++) {
            if (placed[q] != 2) continue;
            const qw_eval_req *e = &r[order[q].idx];
            int len = order[q].len, off = e->n1 - 1 - len;   /* left truncation */
            size_t base = (size_t)row_of[q] * T + at[q];
            for (int t = 0; t < len; t++) {
                ids[base + t] = e->toks[off + t];
                seg[base + t] = q;
                if (t >= len - e->k) tgt[base + t] = e->toks[off + t + 1], coef[base + t] = 1;
            }
        }
        qw_model_out out;
        rc = qw_model_forward(s->m, &(qw_batch){.ids = ids, .seg = seg, .targets = tgt, .coef = coef}, NULL, logp, &out);
        s->forwards++;
        s->positions += (long)N;
        for (int q = first; q < nw && !rc; q++) {
            if (placed[q] != 2) continue;
            qw_eval_req *e = &r[order[q].idx];
            size_t base = (size_t)row_of[q] * T + at[q];
            double ll = 0;
            for (int t = order[q].len - e->k; t < order[q].len; t++) ll += logp[base + t];
            e->ll = ll;
            placed[q] = 1;
        }
    }
    free(ids), free(seg), free(tgt), free(coef), free(logp), free(fill), free(row_of), free(at), free(placed), free(order);
    return rc;
}
