/* tok.c — byte-level BPE tokenizers in HF's tokenizer.json format: loading,
 * identity, encoding (added tokens, NFC, pre-tokenizer, BPE) and decoding.
 * The HF tokenizers source this follows: tokenizer/added_vocabulary.rs,
 * models/bpe/{model,word}.rs, pre_tokenizers/byte_level.rs. */
#include "qw/tok.h"

#include <cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "qw/cli.h"
#include "qw/hash.h"
#include "tok_int.h"

/* Vocabulary ids are below 2^ID_BITS (checked when loading), so a pair of
 * them is one 64-bit key. */
#define ID_BITS 20
#define NO_PAIR UINT64_MAX

typedef struct {
    uint64_t pair;           /* left << ID_BITS | right; NO_PAIR: empty */
    uint32_t rank, id;       /* the merge's index, and the token it makes */
} merge_slot;

typedef struct {
    int32_t id;
    char *content;
    char *match;             /* content, NFC-normalised when `normalized` */
    size_t match_len;
    unsigned char single_word, lstrip, rstrip, normalized, special;
} added_token;

typedef struct {             /* added-token trie over bytes */
    struct trie_node { int32_t child, sibling, token; unsigned char byte; } *node;
    int n, cap;
    unsigned char first[256];
} trie;

#define MAX_STAGES 8

struct qw_tok {
    char *arena;             /* every token string, NUL-terminated */
    size_t arena_n, arena_cap;
    int32_t n_ids;           /* 1 + the largest id */
    int32_t ids_cap;
    uint32_t *str_off;       /* id -> arena offset (UINT32_MAX: no token) */
    uint32_t *str_len;
    unsigned char *special;  /* id -> 1 for an added token marked special */
    int32_t *vmap;           /* vocab hash: slot -> id, -1 empty */
    size_t vmask;
    size_t n_vocab;
    merge_slot *merges;      /* open addressing, linear probing */
    size_t mmask;
    int32_t byte_id[256];    /* ByteLevel character of each byte -> id, -1: none */
    int ignore_merges;
    added_token *added;
    int n_added;
    trie raw, norm;          /* added tokens matched before / after NFC */
    int nfc;
    qw_pretok_stage *stage[MAX_STAGES];
    int n_stages;
    char *dec;               /* id -> bytes the ByteLevel decoder gives */
    uint32_t *dec_off, *dec_len;
    uint64_t identity;
    uint64_t serial;         /* tells per-thread caches apart */
};

static atomic_uint_fast64_t tok_serial = 1;

/* ---- hashing ---- */

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static inline uint64_t hash_bytes(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ n;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ v) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
        p += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, p, n);
    return mix64(h ^ v);
}

/* ---- GPT-2 bytes_to_unicode ---- */

static uint32_t byte_char[256];
static int16_t char_byte[512];   /* code point < 512 -> byte, -1 */
static pthread_once_t bytes_once = PTHREAD_ONCE_INIT;

static void bytes_init(void)
{
    int n = 0;
    for (int c = 0; c < 512; c++) char_byte[c] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        byte_char[b] = printable ? (uint32_t)b : 256u + (uint32_t)n++;
        char_byte[byte_char[b]] = (int16_t)b;
    }
}

const uint32_t *qw_tok_byte_chars(void)
{
    pthread_once(&bytes_once, bytes_init);
    return byte_char;
}

void qw_tok_bytes_to_chars(const unsigned char *p, size_t n, qw_buf *out)
{
    qw_buf_reserve(out, 2 * n);
    for (size_t i = 0; i < n; i++) {
        uint32_t c = byte_char[p[i]];
        if (c < 0x80) out->p[out->n++] = (char)c;
        else { out->p[out->n++] = (char)(0xC0 | c >> 6); out->p[out->n++] = (char)(0x80 | (c & 0x3F)); }
    }
}

/* ---- strings and the vocabulary ---- */

static uint32_t arena_add(qw_tok *t, const char *s, size_t n)
{
    if (t->arena_n + n + 1 > t->arena_cap) {
        while (t->arena_n + n + 1 > t->arena_cap) t->arena_cap = t->arena_cap ? 2 * t->arena_cap : 1 << 20;
        t->arena = qw_realloc(t->arena, t->arena_cap);
    }
    uint32_t off = (uint32_t)t->arena_n;
    memcpy(t->arena + off, s, n);
    t->arena[off + n] = 0;
    t->arena_n += n + 1;
    return off;
}

static void ids_grow(qw_tok *t, int32_t id)
{
    if (id < t->n_ids) return;
    if (id >= t->ids_cap) {
        int32_t cap = t->ids_cap ? t->ids_cap : 256;
        while (cap <= id) cap = cap > INT32_MAX / 2 ? INT32_MAX : 2 * cap;
        t->str_off = qw_realloc(t->str_off, (size_t)cap * sizeof *t->str_off);
        t->str_len = qw_realloc(t->str_len, (size_t)cap * sizeof *t->str_len);
        t->special = qw_realloc(t->special, (size_t)cap);
        t->ids_cap = cap;
    }
    for (int32_t i = t->n_ids; i <= id; i++) { t->str_off[i] = UINT32_MAX; t->str_len[i] = 0; t->special[i] = 0; }
    t->n_ids = id + 1;
}

static int32_t vocab_find(const qw_tok *t, const char *s, size_t n)
{
    if (!t->vmap) return -1;
    for (size_t i = hash_bytes(s, n) & t->vmask;; i = (i + 1) & t->vmask) {
        int32_t id = t->vmap[i];
        if (id < 0) return -1;
        if (t->str_len[id] == n && !memcmp(t->arena + t->str_off[id], s, n)) return id;
    }
}

static inline uint64_t pair_key(uint32_t a, uint32_t b) { return (uint64_t)a << ID_BITS | b; }

static inline size_t pair_slot(uint64_t k, size_t mask) { return (size_t)((k * 0x9E3779B97F4A7C15ULL) >> 40) & mask; }

static inline const merge_slot *merge_find(const qw_tok *t, uint32_t a, uint32_t b)
{
    uint64_t k = pair_key(a, b);
    for (size_t i = pair_slot(k, t->mmask);; i = (i + 1) & t->mmask) {
        const merge_slot *m = &t->merges[i];
        if (m->pair == k) return m;
        if (m->pair == NO_PAIR) return NULL;
    }
}

static size_t pow2_above(size_t n)
{
    size_t p = 16;
    while (p < 2 * n) p *= 2;
    return p;
}

/* ---- loading ---- */

static const char *json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int json_true(const cJSON *o, const char *key)
{
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, key));
}

static int is_null(const cJSON *v) { return !v || cJSON_IsNull(v); }

static int load_vocab(qw_tok *t, const char *path, const cJSON *vocab)
{
    if (!cJSON_IsObject(vocab)) return qw_error(QW_EXIT_DATA, "'%s': missing vocab", path);
    size_t n = (size_t)cJSON_GetArraySize(vocab);
    t->vmask = pow2_above(n) - 1;
    t->vmap = qw_malloc((t->vmask + 1) * sizeof *t->vmap);
    memset(t->vmap, 0xff, (t->vmask + 1) * sizeof *t->vmap);
    const cJSON *e;
    cJSON_ArrayForEach(e, vocab) {
        double d = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (d < 0 || d >= (1 << ID_BITS) || d != (double)(int32_t)d)
            return qw_error(QW_EXIT_DATA, "'%s': vocab entry '%s': id is not an integer in [0, %d)",
                            path, e->string, 1 << ID_BITS);
        int32_t id = (int32_t)d;
        size_t len = strlen(e->string);
        ids_grow(t, id);
        if (t->str_off[id] != UINT32_MAX)
            return qw_error(QW_EXIT_DATA, "'%s': vocab entries '%s' and '%s' share id %d",
                            path, t->arena + t->str_off[id], e->string, id);
        if (vocab_find(t, e->string, len) >= 0)
            return qw_error(QW_EXIT_DATA, "'%s': vocab entry '%s' appears twice", path, e->string);
        t->str_off[id] = arena_add(t, e->string, len);
        t->str_len[id] = (uint32_t)len;
        size_t i = hash_bytes(e->string, len) & t->vmask;
        while (t->vmap[i] >= 0) i = (i + 1) & t->vmask;
        t->vmap[i] = id;
    }
    t->n_vocab = n;
    return 0;
}

static int load_merges(qw_tok *t, const char *path, const cJSON *merges, qw_buf *canon)
{
    if (!cJSON_IsArray(merges)) return qw_error(QW_EXIT_DATA, "'%s': missing merges", path);
    size_t n = (size_t)cJSON_GetArraySize(merges);
    t->mmask = 15;
    while (t->mmask + 1 < n + n / 2) t->mmask = 2 * t->mmask + 1;   /* load below 2/3 */
    t->merges = qw_malloc((t->mmask + 1) * sizeof *t->merges);
    for (size_t i = 0; i <= t->mmask; i++) t->merges[i].pair = NO_PAIR;
    qw_buf both = {0};
    uint32_t rank = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, merges) {
        const char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        if (cJSON_IsString(e)) {
            if (!strncmp(e->valuestring, "#version", 8)) continue;   /* skipped by HF too */
            const char *sp = strchr(e->valuestring, ' ');
            if (sp && !strchr(sp + 1, ' ')) {
                a = e->valuestring; la = (size_t)(sp - a);
                b = sp + 1; lb = strlen(b);
            }
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 &&
                   cJSON_IsString(e->child) && cJSON_IsString(e->child->next)) {
            a = e->child->valuestring; la = strlen(a);
            b = e->child->next->valuestring; lb = strlen(b);
        }
        if (!a) { qw_buf_free(&both); return qw_error(QW_EXIT_DATA, "'%s': merge %u: not a pair of tokens", path, rank + 1); }
        int32_t ia = vocab_find(t, a, la), ib = vocab_find(t, b, lb);
        both.n = 0;
        qw_buf_add(&both, a, la);
        qw_buf_add(&both, b, lb);
        int32_t ic = vocab_find(t, both.p, both.n);
        const char *missing = ia < 0 ? a : ib < 0 ? b : ic < 0 ? qw_buf_cstr(&both) : NULL;
        if (missing) {
            int r = qw_error(QW_EXIT_DATA, "'%s': merge %u: '%.*s' is not in the vocabulary", path, rank + 1,
                             (int)(ia < 0 ? la : ib < 0 ? lb : both.n), missing);
            qw_buf_free(&both);
            return r;
        }
        uint64_t k = pair_key((uint32_t)ia, (uint32_t)ib);
        size_t i = pair_slot(k, t->mmask);
        while (t->merges[i].pair != NO_PAIR && t->merges[i].pair != k) i = (i + 1) & t->mmask;
        t->merges[i] = (merge_slot){k, rank, (uint32_t)ic};   /* a repeated pair keeps its last rank, as HF */
        uint32_t pair[2] = {(uint32_t)ia, (uint32_t)ib};
        qw_buf_add(canon, pair, sizeof pair);
        rank++;
    }
    qw_buf_free(&both);
    return 0;
}

static int model_options(qw_tok *t, const char *path, const cJSON *model)
{
    const char *type = json_str(model, "type");
    if (!cJSON_IsObject(model) || (type && strcmp(type, "BPE")))
        return qw_error(QW_EXIT_DATA, "'%s': not a byte-level BPE tokenizer (model type '%s')",
                        path, type ? type : "?");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(model, "dropout");
    if (!is_null(v) && !(cJSON_IsNumber(v) && v->valuedouble == 0))
        return qw_error(QW_EXIT_DATA, "'%s': BPE dropout is not supported", path);
    if (!is_null(cJSON_GetObjectItemCaseSensitive(model, "unk_token")))
        return qw_error(QW_EXIT_DATA, "'%s': BPE unk_token is not supported (byte-level models need none)", path);
    if (json_true(model, "byte_fallback"))
        return qw_error(QW_EXIT_DATA, "'%s': BPE byte_fallback is not supported", path);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        v = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
        if (!is_null(v) && !(cJSON_IsString(v) && !*v->valuestring))
            return qw_error(QW_EXIT_DATA, "'%s': BPE %s is not supported", path, affixes[i]);
    }
    t->ignore_merges = json_true(model, "ignore_merges");
    return 0;
}

static void trie_add(trie *tr, const char *s, size_t n, int32_t token)
{
    if (!tr->n) {
        tr->cap = 64;
        tr->node = qw_malloc((size_t)tr->cap * sizeof *tr->node);
        tr->node[tr->n++] = (struct trie_node){-1, -1, -1, 0};
    }
    int32_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        int32_t c = tr->node[cur].child;
        while (c >= 0 && tr->node[c].byte != b) c = tr->node[c].sibling;
        if (c < 0) {
            if (tr->n == tr->cap) { tr->cap *= 2; tr->node = qw_realloc(tr->node, (size_t)tr->cap * sizeof *tr->node); }
            c = tr->n++;
            tr->node[c] = (struct trie_node){-1, tr->node[cur].child, -1, b};
            tr->node[cur].child = c;
        }
        cur = c;
    }
    if (tr->node[cur].token < 0) tr->node[cur].token = token;
    tr->first[(unsigned char)s[0]] = 1;
}

static int nfc_append(const char *s, size_t n, qw_buf *out);

/* HF assigns added-token ids itself (AddedVocabulary::add_tokens): the
 * vocabulary's id for a content it has, else the next one counting up from
 * the number of vocabulary entries.  Refuse a file whose ids disagree,
 * rather than silently renumber. */
static int load_added(qw_tok *t, const char *path, const cJSON *arr, qw_buf *canon)
{
    if (is_null(arr)) return 0;
    if (!cJSON_IsArray(arr)) return qw_error(QW_EXIT_DATA, "'%s': added_tokens is not an array", path);
    int n = cJSON_GetArraySize(arr);
    t->added = qw_calloc((size_t)n + 1, sizeof *t->added);
    int32_t next_id = (int32_t)t->n_vocab;
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) {
        const char *content = json_str(e, "content");
        const cJSON *idv = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (!content || !cJSON_IsNumber(idv))
            return qw_error(QW_EXIT_DATA, "'%s': added token %d: needs content and id", path, t->n_added + 1);
        if (!*content) continue;
        for (int i = 0; i < t->n_added; i++)
            if (!strcmp(t->added[i].content, content))
                return qw_error(QW_EXIT_DATA, "'%s': added token '%s' appears twice", path, content);
        size_t len = strlen(content);
        int32_t id = vocab_find(t, content, len);
        if (id < 0) id = next_id++;
        if (idv->valuedouble != id)
            return qw_error(QW_EXIT_DATA, "'%s': added token '%s' has id %.0f, but HF tokenizers would give it %d",
                            path, content, idv->valuedouble, id);
        ids_grow(t, id);
        if (t->str_off[id] != UINT32_MAX && vocab_find(t, content, len) != id)
            return qw_error(QW_EXIT_DATA, "'%s': added token '%s' takes id %d from vocab entry '%s'",
                            path, content, id, t->arena + t->str_off[id]);
        added_token *a = &t->added[t->n_added++];
        a->id = id;
        a->content = qw_strdup(content);
        a->single_word = (unsigned char)json_true(e, "single_word");
        a->lstrip = (unsigned char)json_true(e, "lstrip");
        a->rstrip = (unsigned char)json_true(e, "rstrip");
        a->special = (unsigned char)json_true(e, "special");
        const cJSON *nv = cJSON_GetObjectItemCaseSensitive(e, "normalized");
        a->normalized = (unsigned char)(nv ? cJSON_IsTrue(nv) : !a->special);
        if (t->str_off[id] == UINT32_MAX) {
            t->str_off[id] = arena_add(t, content, len);
            t->str_len[id] = (uint32_t)len;
        }
        t->special[id] = a->special;
        unsigned char fl[5] = {a->single_word, a->lstrip, a->rstrip, a->normalized, a->special};
        qw_buf_add(canon, &id, sizeof id);
        qw_buf_add(canon, fl, sizeof fl);
        qw_buf_add(canon, content, len + 1);
    }
    /* The special tokens come first in HF's tries; only order among equal
     * contents would matter, and contents are unique. */
    for (int i = 0; i < t->n_added; i++) {
        added_token *a = &t->added[i];
        if (a->normalized && t->nfc) {
            qw_buf b = {0};
            if (nfc_append(a->content, strlen(a->content), &b)) {
                qw_buf_free(&b);
                return qw_error(QW_EXIT_DATA, "'%s': added_tokens: the content of id %d is not valid UTF-8", path, a->id);
            }
            a->match = qw_malloc(b.n + 1);
            memcpy(a->match, b.p, b.n);
            a->match[b.n] = 0;
            a->match_len = b.n;
            qw_buf_free(&b);
        } else {
            a->match = qw_strdup(a->content);
            a->match_len = strlen(a->content);
        }
        trie_add(a->normalized ? &t->norm : &t->raw, a->match, a->match_len, i);
    }
    return 0;
}

static int load_normalizer(qw_tok *t, const char *path, const cJSON *n)
{
    if (is_null(n)) return 0;
    const char *type = json_str(n, "type");
    if (type && !strcmp(type, "NFC")) { t->nfc = 1; return 0; }
    if (type && !strcmp(type, "Sequence")) {
        const cJSON *e, *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
        cJSON_ArrayForEach(e, list) {
            const char *et = json_str(e, "type");
            if (!et || strcmp(et, "NFC"))
                return qw_error(QW_EXIT_DATA, "'%s': normalizer '%s' is not supported (only NFC)", path, et ? et : "?");
            t->nfc = 1;
        }
        return 0;
    }
    return qw_error(QW_EXIT_DATA, "'%s': normalizer '%s' is not supported (only NFC)", path, type ? type : "?");
}

static int add_stage(qw_tok *t, const char *path, const char *pattern, qw_buf *canon)
{
    if (t->n_stages == MAX_STAGES) return qw_error(QW_EXIT_DATA, "'%s': too many pre-tokenizers", path);
    qw_pretok_stage *s = qw_pretok_stage_new(pattern, 0);
    if (!s) {
        char why[512];
        snprintf(why, sizeof why, "%s", qw_error_msg());
        return qw_error(QW_EXIT_DATA, "'%s': pre-tokenizer %s", path, why);
    }
    t->stage[t->n_stages++] = s;
    qw_buf_add(canon, pattern, strlen(pattern) + 1);
    return 0;
}

/* Sequence[Split(Regex, Isolated)..., ByteLevel], or ByteLevel alone. */
static int load_pretok(qw_tok *t, const char *path, const cJSON *p, qw_buf *canon)
{
    const char *type = json_str(p, "type");
    const cJSON *one[1] = {p}, **list = one;
    const cJSON *items[MAX_STAGES + 1];
    int n = 1;
    if (type && !strcmp(type, "Sequence")) {
        const cJSON *e, *arr = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
        n = 0;
        cJSON_ArrayForEach(e, arr) {
            if (n == MAX_STAGES + 1) return qw_error(QW_EXIT_DATA, "'%s': too many pre-tokenizers", path);
            items[n++] = e;
        }
        list = items;
    }
    for (int i = 0; i < n; i++) {
        const cJSON *e = list[i];
        const char *et = json_str(e, "type");
        if (et && !strcmp(et, "ByteLevel") && i == n - 1) {
            if (json_true(e, "add_prefix_space"))
                return qw_error(QW_EXIT_DATA, "'%s': ByteLevel add_prefix_space is not supported", path);
            const cJSON *ur = cJSON_GetObjectItemCaseSensitive(e, "use_regex");
            if (!ur || cJSON_IsTrue(ur)) return add_stage(t, path, QW_TOK_GPT2_REGEX, canon);
            return 0;
        }
        if (et && !strcmp(et, "Split")) {
            const cJSON *pat = cJSON_GetObjectItemCaseSensitive(e, "pattern");
            const char *re = json_str(pat, "Regex"), *beh = json_str(e, "behavior");
            if (!re) return qw_error(QW_EXIT_DATA, "'%s': Split needs a Regex pattern", path);
            if (!beh || strcmp(beh, "Isolated") || json_true(e, "invert"))
                return qw_error(QW_EXIT_DATA, "'%s': Split behavior '%s'%s is not supported (only Isolated)",
                                path, beh ? beh : "?", json_true(e, "invert") ? " inverted" : "");
            int r = add_stage(t, path, re, canon);
            if (r) return r;
            continue;
        }
        return qw_error(QW_EXIT_DATA, "'%s': pre-tokenizer '%s' is not supported (Split then ByteLevel)",
                        path, et ? et : "?");
    }
    return qw_error(QW_EXIT_DATA, "'%s': not a byte-level BPE tokenizer (the pre-tokenizer does not end in ByteLevel)", path);
}

/* The bytes the ByteLevel decoder makes of one token: its characters
 * mapped back to bytes, or its UTF-8 as is when one is not a byte char. */
static void decode_entry(const char *s, size_t n, qw_buf *out)
{
    size_t start = out->n;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        i += (size_t)qw_tok_utf8_next(p + i, n - i, &c);
        if (c >= 512 || char_byte[c] < 0) { out->n = start; qw_buf_add(out, s, n); return; }
        qw_buf_addc(out, (char)char_byte[c]);
    }
}

static void build_tables(qw_tok *t)
{
    for (int b = 0; b < 256; b++) {
        qw_buf s = {0};
        unsigned char byte = (unsigned char)b;
        qw_tok_bytes_to_chars(&byte, 1, &s);
        t->byte_id[b] = vocab_find(t, s.p, s.n);
        qw_buf_free(&s);
    }
    qw_buf dec = {0};
    t->dec_off = qw_malloc((size_t)t->n_ids * sizeof *t->dec_off);
    t->dec_len = qw_malloc((size_t)t->n_ids * sizeof *t->dec_len);
    for (int32_t id = 0; id < t->n_ids; id++) {
        t->dec_off[id] = (uint32_t)dec.n;
        if (t->str_off[id] != UINT32_MAX) decode_entry(t->arena + t->str_off[id], t->str_len[id], &dec);
        t->dec_len[id] = (uint32_t)(dec.n - t->dec_off[id]);
    }
    t->dec = dec.p;
}

static int load_json(qw_tok *t, const char *path, const cJSON *root)
{
    if (!cJSON_IsObject(root)) return qw_error(QW_EXIT_DATA, "'%s': not a tokenizer.json (not an object)", path);
    const char *version = json_str(root, "version");
    if (version && strcmp(version, "1.0"))
        return qw_error(QW_EXIT_DATA, "'%s': tokenizer.json version '%s' is not supported", path, version);
    if (!is_null(cJSON_GetObjectItemCaseSensitive(root, "truncation")) ||
        !is_null(cJSON_GetObjectItemCaseSensitive(root, "padding")))
        return qw_error(QW_EXIT_DATA, "'%s': truncation and padding are not supported", path);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    int r;
    if ((r = model_options(t, path, model))) return r;
    if (is_null(pre))
        return qw_error(QW_EXIT_DATA, "'%s': not a byte-level BPE tokenizer (no pre-tokenizer)", path);
    const char *dt = json_str(dec, "type");
    if (!dt || strcmp(dt, "ByteLevel"))
        return qw_error(QW_EXIT_DATA, "'%s': decoder '%s' is not supported (only ByteLevel)", path, dt ? dt : "null");
    /* The canonical form the identity hashes: every part that decides ids. */
    qw_buf canon = {0};
    qw_buf_adds(&canon, "qw-tok-identity-1");
    if (!(r = load_vocab(t, path, cJSON_GetObjectItemCaseSensitive(model, "vocab")))) {
        for (int32_t id = 0; id < t->n_ids; id++) {
            if (t->str_off[id] == UINT32_MAX) continue;
            qw_buf_add(&canon, &id, sizeof id);
            qw_buf_add(&canon, t->arena + t->str_off[id], t->str_len[id] + 1);
        }
        qw_buf_adds(&canon, t->ignore_merges ? "\nmerges ignore\n" : "\nmerges\n");
        r = load_merges(t, path, cJSON_GetObjectItemCaseSensitive(model, "merges"), &canon);
    }
    if (!r) r = load_normalizer(t, path, cJSON_GetObjectItemCaseSensitive(root, "normalizer"));
    if (!r) {
        qw_buf_adds(&canon, t->nfc ? "\nadded nfc\n" : "\nadded\n");
        r = load_added(t, path, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), &canon);
    }
    if (!r) {
        qw_buf_adds(&canon, "\npre\n");
        r = load_pretok(t, path, pre, &canon);
    }
    if (!r) {
        t->identity = qw_hash64(QW_HASH64_INIT, canon.p, canon.n);
        build_tables(t);
    }
    qw_buf_free(&canon);
    return r;
}

int qw_tok_load(const char *path, qw_tok **out)
{
    *out = NULL;
    pthread_once(&bytes_once, bytes_init);
    qw_tok_uc_init();
    FILE *f = fopen(path, "rb");
    if (!f) return qw_error(QW_EXIT_FAIL, "'%s': %s", path, strerror(errno));
    qw_buf text = {0};
    char chunk[1 << 16];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) qw_buf_add(&text, chunk, got);
    int rerr = ferror(f);
    fclose(f);
    if (rerr) { qw_buf_free(&text); return qw_error(QW_EXIT_FAIL, "'%s': read error", path); }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text.p ? text.p : "", text.n, &end, 0);
    if (!root) {
        long line = 1;
        for (const char *p = text.p; p && end && p < end; p++) line += *p == '\n';
        qw_buf_free(&text);
        return qw_error(QW_EXIT_DATA, "'%s': line %ld: not valid JSON", path, line);
    }
    qw_buf_free(&text);
    qw_tok *t = qw_calloc(1, sizeof *t);
    t->serial = atomic_fetch_add(&tok_serial, 1);
    int r = load_json(t, path, root);
    cJSON_Delete(root);
    if (r) { qw_tok_free(t); return r; }
    *out = t;
    return 0;
}

void qw_tok_free(qw_tok *t)
{
    if (!t) return;
    for (int i = 0; i < t->n_added; i++) { free(t->added[i].content); free(t->added[i].match); }
    for (int i = 0; i < t->n_stages; i++) qw_pretok_stage_free(t->stage[i]);
    free(t->added);
    free(t->raw.node);
    free(t->norm.node);
    free(t->arena);
    free(t->str_off);
    free(t->str_len);
    free(t->special);
    free(t->vmap);
    free(t->merges);
    free(t->dec);
    free(t->dec_off);
    free(t->dec_len);
    free(t);
}

/* ---- accessors ---- */

int32_t qw_tok_vocab_size(const qw_tok *t) { return t->n_ids; }
uint64_t qw_tok_identity(const qw_tok *t) { return t->identity; }

const char *qw_tok_id_to_token(const qw_tok *t, int32_t id)
{
    if (id < 0 || id >= t->n_ids || t->str_off[id] == UINT32_MAX) return NULL;
    return t->arena + t->str_off[id];
}

int32_t qw_tok_token_to_id(const qw_tok *t, const char *token)
{
    for (int i = 0; i < t->n_added; i++)
        if (!strcmp(t->added[i].content, token)) return t->added[i].id;
    return vocab_find(t, token, strlen(token));
}

int qw_tok_is_special(const qw_tok *t, int32_t id)
{
    return id >= 0 && id < t->n_ids && t->special[id];
}

/* ---- NFC as HF's normaliser does it ----
 * A code point that is not NFC_UNSAFE leaves what is around it alone, so
 * only the stretches of unsafe ones, with the character before them (a
 * starter they may compose with), go through utf8proc; the code points
 * HF's tables do not know pass through as inert starters. */

static void nfc_utf8proc(const unsigned char *s, size_t n, qw_buf *out)
{
    utf8proc_int32_t stack[256], *buf = stack;
    utf8proc_ssize_t cap = 256;
    const int opt = UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    utf8proc_ssize_t m = utf8proc_decompose(s, (utf8proc_ssize_t)n, buf, cap, opt);
    if (m > cap) {
        buf = qw_malloc((size_t)m * sizeof *buf);
        m = utf8proc_decompose(s, (utf8proc_ssize_t)n, buf, m, opt);
    }
    m = utf8proc_normalize_utf32(buf, m, opt);
    qw_buf_reserve(out, 4 * (size_t)m);
    for (utf8proc_ssize_t i = 0; i < m; i++)
        out->n += (size_t)utf8proc_encode_char(buf[i], (utf8proc_uint8_t *)out->p + out->n);
    if (buf != stack) free(buf);
}

static void nfc_stretch(const unsigned char *s, size_t n, qw_buf *out)
{
    size_t from = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c;
        int l = qw_tok_utf8_next(s + i, n - i, &c);
        if (qw_tok_uclass(c) & QW_UC_NFC_OPAQUE) {
            if (i > from) nfc_utf8proc(s + from, i - from, out);
            qw_buf_add(out, s + i, (size_t)l);
            from = i + (size_t)l;
        }
        i += (size_t)l;
    }
    if (n > from) nfc_utf8proc(s + from, n - from, out);
}

static void nfc_valid(const char *text, size_t n, qw_buf *out)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t done = 0, prev = 0, i = 0;   /* prev: start of the character before i */
    while (i < n) {
        if (s[i] < 0x80) { prev = i++; continue; }
        uint32_t c;
        int l = qw_tok_utf8_next(s + i, n - i, &c);
        if (!(qw_tok_uclass(c) & QW_UC_NFC_UNSAFE)) { prev = i; i += (size_t)l; continue; }
        size_t a = i > done ? prev : done, e = i;
        while (e < n) {
            int le = qw_tok_utf8_next(s + e, n - e, &c);
            if (!(qw_tok_uclass(c) & QW_UC_NFC_UNSAFE)) break;
            e += (size_t)le;
        }
        qw_buf_add(out, s + done, a - done);
        nfc_stretch(s + a, e - a, out);
        done = e;
        i = e;
    }
    qw_buf_add(out, s + done, n - done);
}

static int nfc_append(const char *s, size_t n, qw_buf *out)
{
    size_t ok = qw_tok_utf8_valid(s, n);
    if (ok < n) return qw_error(QW_EXIT_DATA, "invalid UTF-8 at byte %zu", ok);
    nfc_valid(s, n, out);
    return 0;
}

int qw_tok_nfc(const char *text, size_t len, qw_buf *out)
{
    qw_tok_uc_init();
    return nfc_append(text, len, out);
}

/* ---- BPE with a per-thread cache of piece -> ids ---- */

#define CACHE_BITS 15
#define CACHE_KEY 22
#define CACHE_IDS 8

typedef struct {
    uint64_t h;
    unsigned char klen, nids;
    char key[CACHE_KEY];
    int32_t ids[CACHE_IDS];
} cache_slot;

typedef struct {
    uint64_t key;            /* rank << 32 | position of the left symbol */
    uint32_t id;             /* the token the pair merges into */
    uint32_t len;            /* the pair's length in bytes when pushed */
} heap_item;
typedef struct { int32_t c, prev, next, len; } symbol;

/* What each thread keeps: the piece -> ids cache of one tokenizer, and
 * scratch space for BPE and NFC. */
typedef struct {
    uint64_t serial;
    cache_slot slot[1 << CACHE_BITS];
    symbol *sym;
    heap_item *heap;
    size_t cap;
    qw_buf nfc;
} tok_thread;

static pthread_key_t thread_key;
static pthread_once_t thread_once = PTHREAD_ONCE_INIT;

static void thread_free(void *p)
{
    tok_thread *th = p;
    free(th->sym);
    free(th->heap);
    qw_buf_free(&th->nfc);
    free(th);
}

static void thread_key_init(void) { pthread_key_create(&thread_key, thread_free); }

static tok_thread *this_thread(const qw_tok *t)
{
    pthread_once(&thread_once, thread_key_init);
    tok_thread *th = pthread_getspecific(thread_key);
    if (!th) {
        th = qw_calloc(1, sizeof *th);
        pthread_setspecific(thread_key, th);
    }
    if (th->serial != t->serial) {
        memset(th->slot, 0, sizeof th->slot);
        th->serial = t->serial;
    }
    return th;
}

static void heap_push(heap_item *h, size_t *n, heap_item x)
{
    size_t i = (*n)++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (h[p].key <= x.key) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static heap_item heap_pop(heap_item *h, size_t *n)
{
    heap_item top = h[0], x = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && h[c + 1].key < h[c].key) c++;
        if (x.key <= h[c].key) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
    return top;
}

static inline void push_pair(const qw_tok *t, heap_item *heap, size_t *nh, const symbol *sym, int32_t pos)
{
    const merge_slot *m = merge_find(t, (uint32_t)sym[pos].c, (uint32_t)sym[sym[pos].next].c);
    if (m)
        heap_push(heap, nh, (heap_item){(uint64_t)m->rank << 32 | (uint32_t)pos, m->id,
                                         (uint32_t)(sym[pos].len + sym[sym[pos].next].len)});
}

/* HF's Word::merge_all: a min-heap of (rank, position); an entry is stale
 * when the pair now at its position no longer merges into its token.  As
 * symbols only grow and a merge's token is the concatenation of the pair,
 * that is when the pair has grown since the entry was pushed. */
static void bpe(const qw_tok *t, tok_thread *th, const unsigned char *p, size_t n, qw_ids *out)
{
    if (n > th->cap) {
        th->cap = n < 256 ? 256 : 2 * n;
        th->sym = qw_realloc(th->sym, th->cap * sizeof *th->sym);
        th->heap = qw_realloc(th->heap, 3 * th->cap * sizeof *th->heap);
    }
    symbol *sym = th->sym;
    heap_item *heap = th->heap;
    int32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[p[i]];
        if (id < 0) continue;   /* no token for this byte and no unk: dropped, as HF */
        sym[m] = (symbol){id, m - 1, m + 1, 1};
        m++;
    }
    if (!m) return;
    sym[m - 1].next = -1;
    for (int32_t i = 0; i + 1 < m; i++)   /* let the table's cache misses overlap */
        __builtin_prefetch(&t->merges[pair_slot(pair_key((uint32_t)sym[i].c, (uint32_t)sym[i + 1].c), t->mmask)]);
    size_t nh = 0;
    for (int32_t i = 0; i + 1 < m; i++) push_pair(t, heap, &nh, sym, i);
    while (nh) {
        heap_item top = heap_pop(heap, &nh);
        int32_t pos = (int32_t)(uint32_t)top.key, nx = sym[pos].next;
        if (!sym[pos].len || nx < 0 || (uint32_t)(sym[pos].len + sym[nx].len) != top.len) continue;
        sym[pos].c = (int32_t)top.id;
        sym[pos].len += sym[nx].len;
        sym[pos].next = sym[nx].next;
        sym[nx].len = 0;
        if (sym[pos].next >= 0) sym[sym[pos].next].prev = pos;
        if (sym[pos].prev >= 0) push_pair(t, heap, &nh, sym, sym[pos].prev);
        if (sym[pos].next >= 0) push_pair(t, heap, &nh, sym, pos);
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next) qw_ids_push(out, sym[i].c);
}

typedef struct {
    const qw_tok *t;
    tok_thread *th;
    qw_ids *out;
    qw_buf scratch;
} enc_ctx;

static void encode_piece(enc_ctx *e, const char *s, size_t n)
{
    const qw_tok *t = e->t;
    if (t->ignore_merges) {
        e->scratch.n = 0;
        qw_tok_bytes_to_chars((const unsigned char *)s, n, &e->scratch);
        int32_t id = vocab_find(t, e->scratch.p, e->scratch.n);
        if (id >= 0) { qw_ids_push(e->out, id); return; }
    }
    if (n > CACHE_KEY) { bpe(t, e->th, (const unsigned char *)s, n, e->out); return; }
    uint64_t h = hash_bytes(s, n);
    cache_slot *c = &e->th->slot[h & ((1u << CACHE_BITS) - 1)];
    if (c->h == h && c->klen == n && !memcmp(c->key, s, n)) {
        qw_ids_reserve(e->out, c->nids);
        memcpy(e->out->v + e->out->n, c->ids, c->nids * sizeof *c->ids);
        e->out->n += c->nids;
        return;
    }
    size_t before = e->out->n;
    bpe(t, e->th, (const unsigned char *)s, n, e->out);
    size_t k = e->out->n - before;
    if (k > CACHE_IDS) return;
    c->h = h;
    c->klen = (unsigned char)n;
    c->nids = (unsigned char)k;
    memcpy(c->key, s, n);
    memcpy(c->ids, e->out->v + before, k * sizeof *c->ids);
}

typedef struct { enc_ctx *e; int stage; } stage_ctx;

static int run_stages(enc_ctx *e, int k, const char *s, size_t n);

static int stage_piece(const char *piece, size_t n, void *vctx)
{
    stage_ctx *sc = vctx;
    return run_stages(sc->e, sc->stage + 1, piece, n);
}

static int run_stages(enc_ctx *e, int k, const char *s, size_t n)
{
    if (k == e->t->n_stages) { encode_piece(e, s, n); return 0; }
    stage_ctx sc = {e, k};
    return qw_pretok_stage_split(e->t->stage[k], s, n, stage_piece, &sc);
}

/* ---- added tokens (AddedVocabulary::find_matches) ---- */

static int word_before(const unsigned char *s, size_t at)
{
    if (!at) return 0;
    size_t i = at - 1;
    while (i > 0 && (s[i] & 0xC0) == 0x80) i--;
    uint32_t c;
    qw_tok_utf8_next(s + i, at - i, &c);
    return (qw_tok_uclass(c) & QW_UC_WORD) != 0;
}

static int word_after(const unsigned char *s, size_t at, size_t n)
{
    if (at >= n) return 0;
    uint32_t c;
    qw_tok_utf8_next(s + at, n - at, &c);
    return (qw_tok_uclass(c) & QW_UC_WORD) != 0;
}

static size_t spaces_back(const unsigned char *s, size_t at)
{
    while (at > 0) {
        size_t i = at - 1;
        while (i > 0 && (s[i] & 0xC0) == 0x80) i--;
        uint32_t c;
        qw_tok_utf8_next(s + i, at - i, &c);
        if ((qw_tok_uclass(c) & QW_UC_KIND) != QW_UC_SPACE) break;
        at = i;
    }
    return at;
}

static size_t spaces_forward(const unsigned char *s, size_t at, size_t n)
{
    while (at < n) {
        uint32_t c;
        int l = qw_tok_utf8_next(s + at, n - at, &c);
        if ((qw_tok_uclass(c) & QW_UC_KIND) != QW_UC_SPACE) break;
        at += (size_t)l;
    }
    return at;
}

/* The leftmost-longest match at or after `from`: its token index, or -1. */
static int trie_find(const trie *tr, const unsigned char *s, size_t n, size_t from, size_t *a, size_t *e)
{
    for (size_t i = from; i < n; i++) {
        if (!tr->first[s[i]]) continue;
        int best = -1;
        int32_t cur = 0;
        for (size_t j = i; j < n; j++) {
            int32_t c = tr->node[cur].child;
            while (c >= 0 && tr->node[c].byte != s[j]) c = tr->node[c].sibling;
            if (c < 0) break;
            cur = c;
            if (tr->node[cur].token >= 0) { best = tr->node[cur].token; *e = j + 1; }
        }
        if (best >= 0) { *a = i; return best; }
    }
    return -1;
}

typedef int (*segment_fn)(enc_ctx *e, const char *s, size_t n);

static int split_added(enc_ctx *e, const trie *tr, const char *text, size_t n, segment_fn seg)
{
    if (!tr->n) return seg(e, text, n);
    const unsigned char *s = (const unsigned char *)text;
    size_t start = 0, at = 0, a, end;
    int k, r;
    while (at < n && (k = trie_find(tr, s, n, at, &a, &end)) >= 0) {
        const added_token *tk = &e->t->added[k];
        at = end;
        if (tk->single_word && (word_before(s, a) || word_after(s, end, n))) continue;
        if (tk->lstrip) { size_t b = spaces_back(s, a); a = b > start ? b : start; }
        if (tk->rstrip) end = spaces_forward(s, end, n);
        if (start < a && (r = seg(e, text + start, a - start))) return r;
        qw_ids_push(e->out, tk->id);
        start = end;
    }
    return start < n ? seg(e, text + start, n - start) : 0;
}

static int normalized_segment(enc_ctx *e, const char *s, size_t n)
{
    return run_stages(e, 0, s, n);
}

static int raw_segment(enc_ctx *e, const char *s, size_t n)
{
    if (!e->t->nfc) return split_added(e, &e->t->norm, s, n, normalized_segment);
    qw_buf *nb = &e->th->nfc;
    nb->n = 0;
    nfc_valid(s, n, nb);
    return split_added(e, &e->t->norm, nb->p, nb->n, normalized_segment);
}

int qw_tok_encode(const qw_tok *t, const char *text, size_t len, qw_ids *out)
{
    size_t ok = qw_tok_utf8_valid(text, len);
    if (ok < len) return qw_error(QW_EXIT_DATA, "invalid UTF-8 at byte %zu", ok);
    enc_ctx e = {t, this_thread(t), out, {0}};
    int r = split_added(&e, &t->raw, text, len, raw_segment);
    qw_buf_free(&e.scratch);
    return r;
}

int qw_tok_encode_mask(const qw_tok *t, const char *text, size_t len, const size_t *spans, size_t n_spans,
                       qw_ids *ids, qw_buf *mask)
{
    for (size_t k = 0; k < n_spans; k++)
        if (spans[2 * k] > spans[2 * k + 1] || spans[2 * k + 1] > len || (k && spans[2 * k] < spans[2 * k - 1]))
            return qw_error(QW_EXIT_DATA, "span %zu [%zu, %zu) is out of order or outside the text of %zu bytes", k,
                            spans[2 * k], spans[2 * k + 1], len);
    size_t n0 = ids->n;
    int rc = qw_tok_encode(t, text, len, ids);
    if (rc) return rc;
    /* the span edges as offsets into the text the tokens spell */
    size_t *edge = qw_malloc((2 * n_spans + 1) * sizeof *edge), total = len;
    if (t->nfc) {
        qw_buf b = {0};
        size_t from = 0;
        for (size_t k = 0; k < 2 * n_spans; k++) {
            nfc_valid(text + from, spans[k] - from, &b);
            edge[k] = b.n;
            from = spans[k];
        }
        nfc_valid(text + from, len - from, &b);
        total = b.n;
        qw_buf_free(&b);
    } else {
        if (n_spans) memcpy(edge, spans, 2 * n_spans * sizeof *edge);
    }
    size_t n = ids->n - n0, at = 0, k = 0;
    qw_buf_reserve(mask, n);
    for (size_t i = 0; i < n; i++) {
        size_t a = at, e = at + t->dec_len[ids->v[n0 + i]];
        while (k < n_spans && edge[2 * k + 1] <= a) k++;
        mask->p[mask->n + i] = k < n_spans && edge[2 * k] < e && a < edge[2 * k + 1];
        at = e;
    }
    free(edge);
    if (at != total) {
        ids->n = n0;
        return qw_error(QW_EXIT_DATA, "the tokens spell %zu bytes, the text has %zu: cannot place the loss mask", at, total);
    }
    mask->n += n;
    return 0;
}

/* ---- decoding: ByteLevel, then String::from_utf8_lossy ---- */

static void append_lossy(const unsigned char *s, size_t n, qw_buf *out)
{
    static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    size_t i = 0;
    while (i < n) {
        size_t ok = qw_tok_utf8_valid((const char *)s + i, n - i);
        qw_buf_add(out, s + i, ok);
        i += ok;
        if (i >= n) break;
        /* the invalid sequence: a lead byte and the continuation bytes that
         * could still have completed it (Unicode's maximal subpart) */
        unsigned b = s[i];
        size_t need = 0;
        unsigned lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) need = 1;
        else if (b >= 0xE0 && b <= 0xEF) { need = 2; if (b == 0xE0) lo = 0xA0; if (b == 0xED) hi = 0x9F; }
        else if (b >= 0xF0 && b <= 0xF4) { need = 3; if (b == 0xF0) lo = 0x90; if (b == 0xF4) hi = 0x8F; }
        size_t k = 1;
        if (need && i + 1 < n && s[i + 1] >= lo && s[i + 1] <= hi) {
            k = 2;
            while (k <= need && i + k < n && (s[i + k] & 0xC0) == 0x80) k++;
        }
        qw_buf_add(out, fffd, 3);
        i += k;
    }
}

int qw_tok_decode(const qw_tok *t, const int32_t *ids, size_t n, int skip_special, qw_buf *out)
{
    qw_buf raw = {0};
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_ids || t->str_off[id] == UINT32_MAX) {
            qw_buf_free(&raw);
            return qw_error(QW_EXIT_DATA, "token id %d is not in the vocabulary (size %d)", id, t->n_ids);
        }
        if (skip_special && t->special[id]) continue;
        qw_buf_add(&raw, t->dec + t->dec_off[id], t->dec_len[id]);
    }
    append_lossy((const unsigned char *)raw.p, raw.n, out);
    qw_buf_free(&raw);
    return 0;
}
