/* tok_train.c — learning a byte-level BPE the way HF tokenizers' BpeTrainer
 * does, and writing it as a Qwen3-style tokenizer.json + tokenizer_config.json.
 *
 * Counting: each document is NFC-normalised and split by the Qwen pre-tokenizer
 * (qw_tok_nfc, qw_pretok_split); each piece's raw bytes are a word, counted in
 * a hash map.  Long documents are cut into chunks that are counted in parallel.
 *
 * Learning (finish): the state and its update rules are HF's, so the merges
 * come out the same: words as symbol arrays with counts; a pair table holding
 * each pair's count; a max-heap of (count, pair, list of word indices) entries
 * ordered by count, then by the smaller (left id, right id), checked lazily
 * against the pair table when popped.  Merging a pair updates the counts of
 * its neighbour pairs and pushes one entry per newly formed pair with the
 * words it was formed in.
 */
#define _GNU_SOURCE  /* qsort_r */
#include "qw/tok.h"

#include <cJSON.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qw/chat.h"
#include "qw/cli.h"
#include "qw/file.h"
#include "qw/hash.h"
#include "qw/st.h"
#include "tok_int.h"

/* ---- the ByteLevel alphabet ---------------------------------------------
 * Token ids 0..255 are the bytes in the code point order of their ByteLevel
 * characters (qw_tok_byte_chars), as HF's trainer sorts them: the printable
 * bytes (characters below U+0100) in byte order, then the others. */

static void bytelevel_ids(uint8_t byte_of_id[256], int32_t id_of_byte[256])
{
    const uint32_t *cp = qw_tok_byte_chars();
    int n = 0;
    for (int b = 0; b < 256; b++) if (cp[b] < 256) byte_of_id[n++] = (uint8_t)b;
    for (int b = 0; b < 256; b++) if (cp[b] >= 256) byte_of_id[n++] = (uint8_t)b;
    for (int i = 0; i < 256; i++) id_of_byte[byte_of_id[i]] = i;
}

/* ---- byte-string → count map (words while counting, tokens while learning) */

typedef struct {
    uint64_t h;       /* hash | 1 (0: empty slot) */
    uint64_t off;     /* key bytes in `keys` */
    uint64_t len;
    uint64_t val;
} sslot;

typedef struct {
    sslot *slot;
    size_t cap, n;
    qw_buf keys;
    qw_buf norm;      /* scratch: a normalised document */
    int busy;
} smap;

static uint64_t str_hash(const char *p, size_t n) { return qw_hash64(QW_HASH64_INIT, p, n) | 1; }

static sslot *smap_find(smap *m, const char *p, size_t n, uint64_t h)
{
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        sslot *s = &m->slot[i];
        if (!s->h || (s->h == h && s->len == n && !memcmp(m->keys.p + s->off, p, n))) return s;
    }
}

static void smap_grow(smap *m)
{
    size_t old = m->cap;
    sslot *os = m->slot;
    m->cap = old ? old * 2 : 1024;
    m->slot = qw_calloc(m->cap, sizeof *m->slot);
    for (size_t i = 0; i < old; i++) {
        if (!os[i].h) continue;
        size_t mask = m->cap - 1, j = os[i].h & mask;
        while (m->slot[j].h) j = (j + 1) & mask;
        m->slot[j] = os[i];
    }
    free(os);
}

/* The slot of key p[0..n), added with val 0 when new; *added says which. */
static sslot *smap_get(smap *m, const char *p, size_t n, int *added)
{
    if (2 * (m->n + 1) > m->cap) smap_grow(m);
    uint64_t h = str_hash(p, n);
    sslot *s = smap_find(m, p, n, h);
    *added = !s->h;
    if (!s->h) {
        s->h = h;
        s->off = m->keys.n;
        s->len = n;
        s->val = 0;
        qw_buf_add(&m->keys, p, n);
        m->n++;
    }
    return s;
}

static void smap_free(smap *m)
{
    free(m->slot);
    qw_buf_free(&m->keys);
    qw_buf_free(&m->norm);
    free(m);
}

/* ---- counting ---------------------------------------------------------- */

struct qw_tok_trainer {
    pthread_mutex_t lock;
    smap **maps;        /* one per concurrent feeder; summed at finish */
    int n_maps;
};

qw_tok_trainer *qw_tok_trainer_new(void)
{
    qw_tok_trainer *tr = qw_calloc(1, sizeof *tr);
    pthread_mutex_init(&tr->lock, NULL);
    return tr;
}

void qw_tok_trainer_free(qw_tok_trainer *tr)
{
    if (!tr) return;
    for (int i = 0; i < tr->n_maps; i++) smap_free(tr->maps[i]);
    free(tr->maps);
    pthread_mutex_destroy(&tr->lock);
    free(tr);
}

static smap *map_take(qw_tok_trainer *tr)
{
    pthread_mutex_lock(&tr->lock);
    smap *m = NULL;
    for (int i = 0; i < tr->n_maps && !m; i++)
        if (!tr->maps[i]->busy) m = tr->maps[i];
    if (!m) {
        m = qw_calloc(1, sizeof *m);
        tr->maps = qw_realloc(tr->maps, (size_t)(tr->n_maps + 1) * sizeof *tr->maps);
        tr->maps[tr->n_maps++] = m;
    }
    m->busy = 1;
    pthread_mutex_unlock(&tr->lock);
    return m;
}

static void map_give(qw_tok_trainer *tr, smap *m)
{
    pthread_mutex_lock(&tr->lock);
    m->busy = 0;
    pthread_mutex_unlock(&tr->lock);
}

static int count_piece(const char *piece, size_t n, void *ctx)
{
    int added;
    smap_get(ctx, piece, n, &added)->val++;
    return 0;
}

/* Documents longer than this are cut into chunks of about this size. */
#define CHUNK_BYTES (256u << 10)

static int ascii_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* The first cut point at or after `from`, or len.  A cut goes before an ASCII
 * letter that follows '\n', or before a space between two ASCII letters: no
 * piece of the Qwen split regex crosses these points and no character
 * composes across them under NFC, so the chunks normalise and split exactly
 * as the whole text does. */
static size_t next_cut(const char *t, size_t len, size_t from)
{
    for (size_t p = from < 1 ? 1 : from; p + 1 < len; p++) {
        if (t[p - 1] == '\n' && ascii_letter(t[p])) return p;
        if (t[p] == ' ' && ascii_letter(t[p - 1]) && ascii_letter(t[p + 1])) return p;
    }
    return len;
}

/* NFC into m->norm and count its pieces into m. */
static int count_text(smap *m, const char *text, size_t len)
{
    m->norm.n = 0;
    int rc = qw_tok_nfc(text, len, &m->norm);
    if (rc) return rc;
    return qw_pretok_split(m->norm.p, m->norm.n, count_piece, m);
}

int qw_tok_trainer_feed(qw_tok_trainer *tr, const char *text, size_t len)
{
    if (len < 2 * CHUNK_BYTES) {
        smap *m = map_take(tr);
        int rc = count_text(m, text, len);
        map_give(tr, m);
        return rc;
    }
    /* Check the whole document first, so that a bad one adds nothing and
     * the offset in the message is the document's. */
    size_t ok = qw_tok_utf8_valid(text, len);
    if (ok < len) return qw_error(QW_EXIT_DATA, "invalid UTF-8 at byte %zu", ok);
    size_t *cut = NULL, n_cut = 0, cap = 0;
    for (size_t p = 0; p < len; p = next_cut(text, len, p + CHUNK_BYTES)) {
        if (n_cut == cap) cut = qw_realloc(cut, (cap = cap ? 2 * cap : 64) * sizeof *cut);
        cut[n_cut++] = p;
    }
    int n = (int)n_cut;
#pragma omp parallel for schedule(dynamic, 1)
    for (int k = 0; k < n; k++) {
        size_t end = k + 1 < n ? cut[k + 1] : len;
        smap *m = map_take(tr);
        /* Cannot fail: NFC fails only on invalid UTF-8, and count_piece
         * never stops the split. */
        count_text(m, text + cut[k], end - cut[k]);
        map_give(tr, m);
    }
    free(cut);
    return 0;
}

/* ---- learning ---------------------------------------------------------- */

/* Pair table: count of every pair ever seen (kept at 0 when gone). */
typedef struct {
    uint64_t key;        /* left << 32 | right; PAIR_EMPTY: free slot */
    int64_t count;
    int32_t fresh;       /* index in the step's new-pair lists, or -1 */
    int32_t last_merge;  /* rank of this pair's last merge, or -1 */
} pslot;
#define PAIR_EMPTY UINT64_MAX

/* A heap entry: a pair, the count it had when pushed, and the words it
 * (may) occur in. */
typedef struct {
    uint64_t count;
    uint32_t a, b;
    uint32_t *pos;
    uint32_t n_pos;
} hent;

typedef struct {
    uint64_t key;
    uint32_t *v;
    uint32_t n, cap;
} plist;

typedef struct {
    /* words */
    int32_t *sym;        /* all words' symbols, word w at sym[woff[w]] */
    uint64_t *woff, *wcount;
    uint32_t *wlen;
    size_t n_words;
    /* tokens: id → bytes, bytes → id */
    qw_buf tbytes;
    uint64_t *toff;
    uint32_t *tlen;
    size_t n_tok, tok_cap;
    smap tmap;
    /* pairs */
    pslot *pair;
    size_t pcap, pn;
    plist *fresh;        /* pairs formed in this step, with their words */
    size_t n_fresh, fresh_cap;
    hent *heap;
    size_t hn, hcap;
    /* merges in order */
    uint32_t *ma, *mb;
    size_t n_merges, merge_cap;
} learner;

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33; x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static void pair_grow(learner *L)
{
    size_t old = L->pcap;
    pslot *os = L->pair;
    L->pcap = old ? 2 * old : 1 << 16;
    L->pair = qw_malloc(L->pcap * sizeof *L->pair);
    for (size_t i = 0; i < L->pcap; i++) L->pair[i].key = PAIR_EMPTY;
    for (size_t i = 0; i < old; i++) {
        if (os[i].key == PAIR_EMPTY) continue;
        size_t mask = L->pcap - 1, j = mix64(os[i].key) & mask;
        while (L->pair[j].key != PAIR_EMPTY) j = (j + 1) & mask;
        L->pair[j] = os[i];
    }
    free(os);
}

static pslot *pair_find(const learner *L, uint64_t key)
{
    size_t mask = L->pcap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask)
        if (L->pair[i].key == key || L->pair[i].key == PAIR_EMPTY) return &L->pair[i];
}

/* The pair's slot, created with count 0 if new.  Valid until the next call. */
static pslot *pair_get(learner *L, uint64_t key)
{
    if (2 * (L->pn + 1) > L->pcap) pair_grow(L);
    pslot *s = pair_find(L, key);
    if (s->key == PAIR_EMPTY) {
        *s = (pslot){ key, 0, -1, -1 };
        L->pn++;
    }
    return s;
}

static uint64_t pair_key(uint32_t a, uint32_t b) { return (uint64_t)a << 32 | b; }

/* Add delta to a pair's count; a pair formed (delta > 0) in word w records w
 * for the entry pushed at the end of the step. */
static void pair_change(learner *L, uint32_t a, uint32_t b, int64_t delta, uint32_t w)
{
    pslot *s = pair_get(L, pair_key(a, b));
    s->count += delta;
    if (delta <= 0) return;
    if (s->fresh < 0) {
        if (L->n_fresh == L->fresh_cap) {
            L->fresh_cap = L->fresh_cap ? 2 * L->fresh_cap : 1024;
            L->fresh = qw_realloc(L->fresh, L->fresh_cap * sizeof *L->fresh);
        }
        s->fresh = (int32_t)L->n_fresh;
        L->fresh[L->n_fresh++] = (plist){ s->key, NULL, 0, 0 };
    }
    plist *p = &L->fresh[s->fresh];
    if (p->n && p->v[p->n - 1] == w) return;
    if (p->n == p->cap) p->v = qw_realloc(p->v, (p->cap = p->cap ? 2 * p->cap : 4) * sizeof *p->v);
    p->v[p->n++] = w;
}

static int hent_above(const hent *x, const hent *y)
{
    if (x->count != y->count) return x->count > y->count;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

static void heap_push(learner *L, hent e)
{
    if (L->hn == L->hcap) L->heap = qw_realloc(L->heap, (L->hcap = L->hcap ? 2 * L->hcap : 1024) * sizeof *L->heap);
    size_t i = L->hn++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!hent_above(&e, &L->heap[up])) break;
        L->heap[i] = L->heap[up];
        i = up;
    }
    L->heap[i] = e;
}

static hent heap_pop(learner *L)
{
    hent top = L->heap[0], e = L->heap[--L->hn];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= L->hn) break;
        if (c + 1 < L->hn && hent_above(&L->heap[c + 1], &L->heap[c])) c++;
        if (!hent_above(&L->heap[c], &e)) break;
        L->heap[i] = L->heap[c];
        i = c;
    }
    if (L->hn) L->heap[i] = e;
    return top;
}

/* End of a step: push one entry per pair formed, if its count is positive. */
static void push_fresh(learner *L)
{
    for (size_t i = 0; i < L->n_fresh; i++) {
        plist *p = &L->fresh[i];
        pslot *s = pair_get(L, p->key);
        s->fresh = -1;
        if (s->count > 0)
            heap_push(L, (hent){ (uint64_t)s->count, (uint32_t)(p->key >> 32), (uint32_t)p->key,
                                 p->v, p->n });
        else
            free(p->v);
    }
    L->n_fresh = 0;
}

static uint32_t token_add(learner *L, const char *p, size_t n)
{
    int added;
    sslot *s = smap_get(&L->tmap, p, n, &added);
    if (!added) return (uint32_t)s->val;
    if (L->n_tok == L->tok_cap) {
        L->tok_cap = L->tok_cap ? 2 * L->tok_cap : 1024;
        L->toff = qw_realloc(L->toff, L->tok_cap * sizeof *L->toff);
        L->tlen = qw_realloc(L->tlen, L->tok_cap * sizeof *L->tlen);
    }
    L->toff[L->n_tok] = L->tbytes.n;
    L->tlen[L->n_tok] = (uint32_t)n;
    qw_buf_add(&L->tbytes, p, n);
    s->val = L->n_tok;
    return (uint32_t)L->n_tok++;
}

/* Replace every non-overlapping (a, b), left to right, in word w by t. */
static void merge_word(learner *L, uint32_t w, uint32_t a, uint32_t b, uint32_t t)
{
    int32_t *s = L->sym + L->woff[w];
    uint32_t n = L->wlen[w], j = 0;
    int64_t c = (int64_t)L->wcount[w];
    for (uint32_t i = 0; i < n;) {
        if (i + 1 < n && (uint32_t)s[i] == a && (uint32_t)s[i + 1] == b) {
            if (j > 0) {
                pair_change(L, (uint32_t)s[j - 1], a, -c, w);
                pair_change(L, (uint32_t)s[j - 1], t, c, w);
            }
            if (i + 2 < n) {
                pair_change(L, b, (uint32_t)s[i + 2], -c, w);
                pair_change(L, t, (uint32_t)s[i + 2], c, w);
            }
            s[j++] = (int32_t)t;
            i += 2;
        } else {
            s[j++] = s[i++];
        }
    }
    L->wlen[w] = j;
}

static int cmp_words(const void *x, const void *y, void *keys)
{
    const sslot *a = *(sslot *const *)x, *b = *(sslot *const *)y;
    const char *k = keys;
    int r = memcmp(k + a->off, k + b->off, a->len < b->len ? a->len : b->len);
    return r ? r : (a->len > b->len) - (a->len < b->len);
}

/* Sum the feeders' maps into one (emptying the others) and lay the words
 * out in byte order of their text, so the result does not depend on thread
 * scheduling. */
static void load_words(qw_tok_trainer *tr, learner *L, const int32_t id_of_byte[256])
{
    smap *all = map_take(tr);
    for (int i = 0; i < tr->n_maps; i++) {
        smap *m = tr->maps[i];
        if (m == all) continue;
        for (size_t j = 0; j < m->cap; j++) {
            if (!m->slot[j].h) continue;
            int added;
            smap_get(all, m->keys.p + m->slot[j].off, m->slot[j].len, &added)->val += m->slot[j].val;
        }
        free(m->slot);
        qw_buf_free(&m->keys);
        m->slot = NULL;
        m->cap = m->n = 0;
    }
    sslot **order = qw_malloc((all->n ? all->n : 1) * sizeof *order);
    size_t n = 0, total = 0;
    for (size_t j = 0; j < all->cap; j++)
        if (all->slot[j].h) { order[n++] = &all->slot[j]; total += all->slot[j].len; }
    qsort_r(order, n, sizeof *order, cmp_words, all->keys.p);
    L->n_words = n;
    L->sym = qw_malloc((total ? total : 1) * sizeof *L->sym);
    L->woff = qw_malloc((n ? n : 1) * sizeof *L->woff);
    L->wcount = qw_malloc((n ? n : 1) * sizeof *L->wcount);
    L->wlen = qw_malloc((n ? n : 1) * sizeof *L->wlen);
    uint64_t off = 0;
    for (size_t w = 0; w < n; w++) {
        const unsigned char *k = (const unsigned char *)all->keys.p + order[w]->off;
        L->woff[w] = off;
        L->wlen[w] = (uint32_t)order[w]->len;
        L->wcount[w] = order[w]->val;
        for (uint64_t i = 0; i < order[w]->len; i++) L->sym[off++] = id_of_byte[k[i]];
    }
    free(order);
    map_give(tr, all);
}

/* Learn merges until the vocabulary (with n_reserved more ids) reaches
 * vocab_size, no pair is left, or the best pair is seen fewer than
 * min_frequency times. */
static void learn(learner *L, const uint8_t byte_of_id[256], long vocab_size, long n_reserved, uint64_t min_frequency)
{
    for (int i = 0; i < 256; i++) token_add(L, (const char *)&byte_of_id[i], 1);
    for (size_t w = 0; w < L->n_words; w++) {
        const int32_t *s = L->sym + L->woff[w];
        for (uint32_t i = 0; i + 1 < L->wlen[w]; i++)
            pair_change(L, (uint32_t)s[i], (uint32_t)s[i + 1], (int64_t)L->wcount[w], (uint32_t)w);
    }
    push_fresh(L);
    qw_buf tok = {0};
    while ((long)L->n_tok + n_reserved < vocab_size && L->hn) {
        hent top = heap_pop(L);
        pslot *s = pair_get(L, pair_key(top.a, top.b));
        if (top.count != (uint64_t)s->count) {
            top.count = (uint64_t)s->count;
            heap_push(L, top);
            continue;
        }
        if (top.count < 1 || top.count < min_frequency) {
            free(top.pos);
            break;
        }
        s->last_merge = (int32_t)L->n_merges;
        if (L->n_merges == L->merge_cap) {
            L->merge_cap = L->merge_cap ? 2 * L->merge_cap : 1024;
            L->ma = qw_realloc(L->ma, L->merge_cap * sizeof *L->ma);
            L->mb = qw_realloc(L->mb, L->merge_cap * sizeof *L->mb);
        }
        L->ma[L->n_merges] = top.a;
        L->mb[L->n_merges++] = top.b;
        tok.n = 0;
        qw_buf_add(&tok, L->tbytes.p + L->toff[top.a], L->tlen[top.a]);
        qw_buf_add(&tok, L->tbytes.p + L->toff[top.b], L->tlen[top.b]);
        uint32_t t = token_add(L, tok.p, tok.n);
        for (uint32_t i = 0; i < top.n_pos; i++) merge_word(L, top.pos[i], top.a, top.b, t);
        free(top.pos);
        push_fresh(L);
    }
    qw_buf_free(&tok);
}

static void learner_free(learner *L)
{
    free(L->sym); free(L->woff); free(L->wcount); free(L->wlen);
    qw_buf_free(&L->tbytes); free(L->toff); free(L->tlen);
    free(L->tmap.slot); qw_buf_free(&L->tmap.keys);
    free(L->pair);
    for (size_t i = 0; i < L->hn; i++) free(L->heap[i].pos);
    free(L->heap);
    free(L->fresh);
    free(L->ma); free(L->mb);
}

/* ---- writing ----------------------------------------------------------- */

/* Qwen3's added tokens, in id order, with their "special" flags. */
static const struct { const char *content; int special; } qwen_added[] = {
    { "<|endoftext|>", 1 }, { "<|im_start|>", 1 }, { "<|im_end|>", 1 },
    { "<|object_ref_start|>", 1 }, { "<|object_ref_end|>", 1 }, { "<|box_start|>", 1 },
    { "<|box_end|>", 1 }, { "<|quad_start|>", 1 }, { "<|quad_end|>", 1 },
    { "<|vision_start|>", 1 }, { "<|vision_end|>", 1 }, { "<|vision_pad|>", 1 },
    { "<|image_pad|>", 1 }, { "<|video_pad|>", 1 },
    { "<tool_call>", 0 }, { "</tool_call>", 0 }, { "<|fim_prefix|>", 0 },
    { "<|fim_middle|>", 0 }, { "<|fim_suffix|>", 0 }, { "<|fim_pad|>", 0 },
    { "<|repo_name|>", 0 }, { "<|file_sep|>", 0 }, { "<tool_response>", 0 },
    { "</tool_response>", 0 }, { "<think>", 0 }, { "</think>", 0 },
};
#define N_QWEN_ADDED ((int)(sizeof qwen_added / sizeof qwen_added[0]))
#define QWEN_EOS "<|im_end|>"
#define QWEN_PAD "<|endoftext|>"

/* Qwen's flag for a token it has, else 1. */
static int added_is_special(const char *content)
{
    for (int i = 0; i < N_QWEN_ADDED; i++)
        if (!strcmp(qwen_added[i].content, content)) return qwen_added[i].special;
    return 1;
}

static void bytelevel_str(qw_buf *out, const char *p, size_t n)
{
    out->n = 0;
    qw_tok_bytes_to_chars((const unsigned char *)p, n, out);
    qw_buf_cstr(out);
}

static cJSON *bytelevel_json(void)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "ByteLevel");
    cJSON_AddFalseToObject(o, "add_prefix_space");
    cJSON_AddFalseToObject(o, "trim_offsets");
    cJSON_AddFalseToObject(o, "use_regex");
    return o;
}

static cJSON *added_token_json(const char *content, int special, int with_id, long id)
{
    cJSON *o = cJSON_CreateObject();
    if (with_id) cJSON_AddNumberToObject(o, "id", (double)id);
    cJSON_AddStringToObject(o, "content", content);
    cJSON_AddFalseToObject(o, "single_word");
    cJSON_AddFalseToObject(o, "lstrip");
    cJSON_AddFalseToObject(o, "rstrip");
    cJSON_AddFalseToObject(o, "normalized");
    cJSON_AddBoolToObject(o, "special", special);
    return o;
}

/* tokenizer.json, or NULL with an error when a special token is also a
 * learned token (its id would be ambiguous). */
static cJSON *tokenizer_json(const learner *L, const char *const *specials,
                             int n_specials, const smap *special_set)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int i = 0; i < n_specials; i++)
        cJSON_AddItemToArray(added, added_token_json(specials[i], added_is_special(specials[i]), 1,
                                                     (long)L->n_tok + i));
    cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "normalizer"), "type", "NFC");
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "Sequence");
    cJSON *seq = cJSON_AddArrayToObject(pre, "pretokenizers");
    cJSON *split = cJSON_CreateObject();
    cJSON_AddStringToObject(split, "type", "Split");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(split, "pattern"), "Regex", QW_TOK_QWEN_REGEX);
    cJSON_AddStringToObject(split, "behavior", "Isolated");
    cJSON_AddFalseToObject(split, "invert");
    cJSON_AddItemToArray(seq, split);
    cJSON_AddItemToArray(seq, bytelevel_json());
    cJSON_AddItemToObject(root, "post_processor", bytelevel_json());
    cJSON_AddItemToObject(root, "decoder", bytelevel_json());
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddStringToObject(model, "continuing_subword_prefix", "");
    cJSON_AddStringToObject(model, "end_of_word_suffix", "");
    cJSON_AddFalseToObject(model, "fuse_unk");
    cJSON_AddFalseToObject(model, "byte_fallback");
    cJSON_AddFalseToObject(model, "ignore_merges");
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    qw_buf s = {0};
    for (size_t id = 0; id < L->n_tok; id++) {
        bytelevel_str(&s, L->tbytes.p + L->toff[id], L->tlen[id]);
        if (special_set->n && smap_find((smap *)special_set, s.p, s.n, str_hash(s.p, s.n))->h) {
            qw_error(QW_EXIT_USAGE, "special token '%s' is also a learned token", s.p);
            qw_buf_free(&s);
            cJSON_Delete(root);
            return NULL;
        }
        cJSON_AddNumberToObject(vocab, s.p, (double)id);
    }
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    for (size_t r = 0; r < L->n_merges; r++) {
        /* A pair merged twice keeps its last rank, as in HF's files. */
        if (pair_find(L, pair_key(L->ma[r], L->mb[r]))->last_merge != (int32_t)r) continue;
        cJSON *m = cJSON_CreateArray();
        for (int side = 0; side < 2; side++) {
            uint32_t id = side ? L->mb[r] : L->ma[r];
            bytelevel_str(&s, L->tbytes.p + L->toff[id], L->tlen[id]);
            cJSON_AddItemToArray(m, cJSON_CreateString(s.p));
        }
        cJSON_AddItemToArray(merges, m);
    }
    qw_buf_free(&s);
    return root;
}

static int has_special(const smap *set, const char *s)
{
    return set->n && smap_find((smap *)set, s, strlen(s), str_hash(s, strlen(s)))->h;
}

/* tokenizer_config.json, keyed as Qwen3's. */
static cJSON *config_json(long first_id, const char *const *specials, int n_specials, const smap *special_set)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddFalseToObject(root, "add_bos_token");
    cJSON_AddFalseToObject(root, "add_prefix_space");
    cJSON *dec = cJSON_AddObjectToObject(root, "added_tokens_decoder");
    cJSON *extra = cJSON_CreateArray();
    char key[32];
    for (int i = 0; i < n_specials; i++) {
        int special = added_is_special(specials[i]);
        snprintf(key, sizeof key, "%ld", first_id + i);
        cJSON_AddItemToObject(dec, key, added_token_json(specials[i], special, 0, 0));
        if (special && strcmp(specials[i], QWEN_PAD))
            cJSON_AddItemToArray(extra, cJSON_CreateString(specials[i]));
    }
    cJSON_AddItemToObject(root, "additional_special_tokens", extra);
    cJSON_AddNullToObject(root, "bos_token");
    cJSON_AddStringToObject(root, "chat_template", qw_chat_qwen3_template);
    cJSON_AddFalseToObject(root, "clean_up_tokenization_spaces");
    if (has_special(special_set, QWEN_EOS)) cJSON_AddStringToObject(root, "eos_token", QWEN_EOS);
    else cJSON_AddNullToObject(root, "eos_token");
    cJSON_AddStringToObject(root, "errors", "replace");
    cJSON_AddNumberToObject(root, "model_max_length", 131072);
    if (has_special(special_set, QWEN_PAD)) cJSON_AddStringToObject(root, "pad_token", QWEN_PAD);
    else cJSON_AddNullToObject(root, "pad_token");
    cJSON_AddFalseToObject(root, "split_special_tokens");
    cJSON_AddStringToObject(root, "tokenizer_class", "Qwen2Tokenizer");
    cJSON_AddNullToObject(root, "unk_token");
    return root;
}

/* Write dir/name: the JSON text and a newline, atomically. */
static int write_json(const char *dir, const char *name, cJSON *root)
{
    qw_buf path = {0}, text = {0};
    qw_buf_adds(&path, dir);
    qw_buf_addc(&path, '/');
    qw_buf_adds(&path, name);
    char *s = cJSON_Print(root);
    int rc = s ? 0 : qw_error(QW_EXIT_FAIL, "'%s': out of memory formatting JSON", qw_buf_cstr(&path));
    if (s) {
        qw_buf_adds(&text, s);
        qw_buf_addc(&text, '\n');
        cJSON_free(s);
        rc = qw_write_file_atomic(qw_buf_cstr(&path), text.p, text.n);
    }
    qw_buf_free(&path);
    qw_buf_free(&text);
    return rc;
}

static int check_opts(const qw_tok_train_opts *o, const char *const *specials, int n_specials, smap *set)
{
    if (o->vocab_size <= 0) return qw_error(QW_EXIT_USAGE, "vocab size %d is not positive", o->vocab_size);
    if (o->min_frequency < 0)
        return qw_error(QW_EXIT_USAGE, "min frequency %d is negative", o->min_frequency);
    if (n_specials < 0) return qw_error(QW_EXIT_USAGE, "negative number of special tokens");
    for (int i = 0; i < n_specials; i++) {
        if (!specials[i] || !specials[i][0]) return qw_error(QW_EXIT_USAGE, "special token %d is empty", i + 1);
        int added;
        smap_get(set, specials[i], strlen(specials[i]), &added);
        if (!added) return qw_error(QW_EXIT_USAGE, "special token '%s' is given twice", specials[i]);
    }
    if ((long)o->vocab_size < 256L + n_specials)
        return qw_error(QW_EXIT_USAGE, "vocab size %d is less than the 256 byte tokens and %d special tokens",
                        o->vocab_size, n_specials);
    return 0;
}

int qw_tok_trainer_finish(qw_tok_trainer *tr, const qw_tok_train_opts *opts, const char *dir)
{
    const char *qwen[N_QWEN_ADDED];
    for (int i = 0; i < N_QWEN_ADDED; i++) qwen[i] = qwen_added[i].content;
    const char *const *specials = opts->specials ? opts->specials : qwen;
    int n_specials = opts->specials ? opts->n_specials : N_QWEN_ADDED;
    smap set = {0};
    int rc = check_opts(opts, specials, n_specials, &set);
    if (!rc) rc = qw_st_mkdirs(dir);
    if (rc) {
        free(set.slot);
        qw_buf_free(&set.keys);
        return rc;
    }
    uint8_t byte_of_id[256];
    int32_t id_of_byte[256];
    bytelevel_ids(byte_of_id, id_of_byte);
    learner L = {0};
    load_words(tr, &L, id_of_byte);
    learn(&L, byte_of_id, opts->vocab_size, n_specials,
          (uint64_t)(opts->min_frequency ? opts->min_frequency : 2));
    cJSON *tj = tokenizer_json(&L, specials, n_specials, &set);
    rc = tj ? write_json(dir, "tokenizer.json", tj) : qw_error_status();
    if (!rc) {
        cJSON *cj = config_json((long)L.n_tok, specials, n_specials, &set);
        rc = write_json(dir, "tokenizer_config.json", cj);
        cJSON_Delete(cj);
    }
    cJSON_Delete(tj);
    learner_free(&L);
    free(set.slot);
    qw_buf_free(&set.keys);
    return rc;
}
