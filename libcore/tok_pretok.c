/* tok_pretok.c — character classes, the Qwen pre-tokenizer scanner, and
 * Split regexes through PCRE2. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "qw/buf.h"
#include "qw/cli.h"
#include "tok_int.h"

/* ---- the class table: 0x1100 blocks of 256 class bytes ---- */

const uint8_t *qw_tok_uc_stage1[0x1100];
static pthread_once_t uc_once = PTHREAD_ONCE_INIT;

static void set_ranges(uint8_t *cls, const uint32_t (*r)[2], int n, uint8_t bits, int kind)
{
    for (int i = 0; i < n; i++)
        for (uint32_t c = r[i][0]; c <= r[i][1]; c++)
            cls[c] = kind ? (uint8_t)((cls[c] & ~QW_UC_KIND) | bits) : (uint8_t)(cls[c] | bits);
}

static void uc_build(void)
{
    uint8_t *cls = qw_calloc(0x110000, 1);
    set_ranges(cls, qw_tok_uc_letter, qw_tok_uc_letter_n, QW_UC_LETTER, 1);
    set_ranges(cls, qw_tok_uc_number, qw_tok_uc_number_n, QW_UC_NUMBER, 1);
    set_ranges(cls, qw_tok_uc_space, qw_tok_uc_space_n, QW_UC_SPACE, 1);
    set_ranges(cls, qw_tok_uc_nfc_opaque, qw_tok_uc_nfc_opaque_n, QW_UC_NFC_OPAQUE | QW_UC_NFC_UNSAFE, 0);
    set_ranges(cls, qw_tok_uc_word, qw_tok_uc_word_n, QW_UC_WORD, 0);
    /* NFC leaves a string alone when none of its code points decomposes,
     * has a nonzero combining class, or can be the second of a composition
     * (a later part of some canonical decomposition, or a Hangul V/T jamo). */
    for (uint32_t c = 0; c < 0x110000; c++) {
        if (c >= 0xD800 && c <= 0xDFFF) continue;
        const utf8proc_property_t *pr = utf8proc_get_property((utf8proc_int32_t)c);
        if (pr->combining_class) cls[c] |= QW_UC_NFC_UNSAFE;
        if (pr->decomp_type == 0 && pr->decomp_seqindex != UINT16_MAX) {
            utf8proc_int32_t d[8];
            int last;
            utf8proc_ssize_t n = utf8proc_decompose_char((utf8proc_int32_t)c, d, 8, UTF8PROC_DECOMPOSE, &last);
            cls[c] |= QW_UC_NFC_UNSAFE;
            for (utf8proc_ssize_t i = 1; i < n && i < 8; i++) cls[d[i]] |= QW_UC_NFC_UNSAFE;
        }
    }
    for (uint32_t c = 0x1160; c <= 0x11FF; c++) cls[c] |= QW_UC_NFC_UNSAFE;
    /* Share the blocks that hold one value throughout. */
    static uint8_t uniform[256][256];
    static int have_uniform[256];
    for (int b = 0; b < 0x1100; b++) {
        const uint8_t *blk = cls + ((size_t)b << 8);
        int same = 1;
        for (int i = 1; i < 256 && same; i++) same = blk[i] == blk[0];
        if (same) {
            if (!have_uniform[blk[0]]) { memset(uniform[blk[0]], blk[0], 256); have_uniform[blk[0]] = 1; }
            qw_tok_uc_stage1[b] = uniform[blk[0]];
        } else {
            uint8_t *own = qw_malloc(256);
            memcpy(own, blk, 256);
            qw_tok_uc_stage1[b] = own;
        }
    }
    free(cls);
}

void qw_tok_uc_init(void) { pthread_once(&uc_once, uc_build); }

size_t qw_tok_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (!(w & 0x8080808080808080ULL)) { i += 8; continue; }
        }
        unsigned b = p[i];
        if (b < 0x80) { i++; continue; }
        size_t need;
        unsigned lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) need = 1;
        else if (b >= 0xE0 && b <= 0xEF) { need = 2; if (b == 0xE0) lo = 0xA0; if (b == 0xED) hi = 0x9F; }
        else if (b >= 0xF0 && b <= 0xF4) { need = 3; if (b == 0xF0) lo = 0x90; if (b == 0xF4) hi = 0x8F; }
        else return i;
        if (i + need >= n) return i;
        if (p[i + 1] < lo || p[i + 1] > hi) return i;
        for (size_t k = 2; k <= need; k++)
            if ((p[i + k] & 0xC0) != 0x80) return i;
        i += need + 1;
    }
    return n;
}

/* ---- the Qwen2/Qwen3 pattern, by hand ----
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}
 *   | ?[^\s\p{L}\p{N}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
 * Every position matches one alternative, so the pieces tile the text. */

static inline unsigned kind_at(const unsigned char *p, size_t n, uint32_t *c, int *l)
{
    *l = qw_tok_utf8_next(p, n, c);
    return qw_tok_uclass(*c) & QW_UC_KIND;
}

static size_t run_of(const unsigned char *p, size_t n, unsigned kind)
{
    size_t j = 0;
    while (j < n) {
        if (p[j] < 0x80) {
            if ((qw_tok_uc_stage1[0][p[j]] & QW_UC_KIND) != kind) break;
            j++;
            continue;
        }
        uint32_t c;
        int l;
        if (kind_at(p + j, n - j, &c, &l) != kind) break;
        j += (size_t)l;
    }
    return j;
}

static size_t others_then_newlines(const unsigned char *p, size_t n)
{
    size_t j = run_of(p, n, QW_UC_OTHER);
    while (j < n && (p[j] == '\r' || p[j] == '\n')) j++;
    return j;
}

static inline int lower_ascii(uint32_t c) { return c < 0x80 && c >= 'A' && c <= 'Z' ? (int)c + 32 : (int)c; }

static size_t qwen_piece(const unsigned char *p, size_t n)
{
    uint32_t c0, c1 = 0;
    int l0, l1 = 0;
    unsigned k0 = kind_at(p, n, &c0, &l0), k1 = 4;
    if ((size_t)l0 < n) k1 = kind_at(p + l0, n - l0, &c1, &l1);
    if (c0 == '\'' && l1) {
        int a = lower_ascii(c1);
        if (a == 's' || a == 't' || a == 'm' || a == 'd' || c1 == 0x17F) return 1 + (size_t)l1;
        if ((a == 'r' || a == 'v' || a == 'l') && n >= 3) {
            int b = lower_ascii(p[2]);
            if (b == (a == 'l' ? 'l' : 'e')) return 3;
        }
    }
    if (k0 == QW_UC_LETTER) return (size_t)l0 + run_of(p + l0, n - l0, QW_UC_LETTER);
    if (k0 != QW_UC_NUMBER && c0 != '\r' && c0 != '\n' && k1 == QW_UC_LETTER)
        return (size_t)(l0 + l1) + run_of(p + l0 + l1, n - l0 - l1, QW_UC_LETTER);
    if (k0 == QW_UC_NUMBER) return (size_t)l0;
    if (k0 == QW_UC_OTHER) return (size_t)l0 + others_then_newlines(p + l0, n - l0);
    if (c0 == ' ' && k1 == QW_UC_OTHER) return (size_t)(l0 + l1) + others_then_newlines(p + l0 + l1, n - l0 - l1);
    size_t j = 0, last_start = 0, after_newline = 0;
    while (j < n) {
        uint32_t c;
        int l;
        if (kind_at(p + j, n - j, &c, &l) != QW_UC_SPACE) break;
        last_start = j;
        j += (size_t)l;
        if (c == '\r' || c == '\n') after_newline = j;
    }
    if (after_newline) return after_newline;        /* \s*[\r\n]+ */
    if (j == n || last_start == 0) return j;        /* \s+(?!\S) at the end, or \s+ */
    return last_start;                              /* \s+(?!\S) leaves the last space */
}

int qw_pretok_split(const char *text, size_t len, qw_pretok_fn fn, void *ctx)
{
    qw_tok_uc_init();
    const unsigned char *p = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        size_t m = qwen_piece(p + i, len - i);
        int r = fn(text + i, m, ctx);
        if (r) return r;
        i += m;
    }
    return 0;
}

/* ---- Split stages ---- */

struct qw_pretok_stage {
    pcre2_code *re;          /* NULL: the Qwen scanner */
    int jit;
};

static void add_ranges(qw_buf *b, const uint32_t (*r)[2], int n)
{
    char s[40];
    for (int i = 0; i < n; i++) {
        snprintf(s, sizeof s, "\\x{%X}-\\x{%X}", r[i][0], r[i][1]);
        qw_buf_adds(b, s);
    }
}

/* Rewrite the Oniguruma pattern for PCRE2 with the class tables. */
static int translate(const char *pat, qw_buf *out)
{
    int in_class = 0;
    for (const char *s = pat; *s; s++) {
        if (*s == '[' && !in_class) {
            in_class = 1;
            qw_buf_addc(out, '[');
            if (s[1] == '^') qw_buf_addc(out, *++s);
            if (s[1] == ']') qw_buf_addc(out, *++s);
            continue;
        }
        if (*s == ']' && in_class) { in_class = 0; qw_buf_addc(out, ']'); continue; }
        if (*s != '\\') { qw_buf_addc(out, *s); continue; }
        char e = s[1];
        const uint32_t (*r)[2] = NULL;
        int n = 0, neg = 0;
        if ((e == 'p' || e == 'P') && (!strncmp(s + 2, "{L}", 3) || !strncmp(s + 2, "{N}", 3))) {
            r = s[3] == 'L' ? qw_tok_uc_letter : qw_tok_uc_number;
            n = s[3] == 'L' ? qw_tok_uc_letter_n : qw_tok_uc_number_n;
            neg = e == 'P';
            s += 4;
        } else if (e == 's' || e == 'S') {
            r = qw_tok_uc_space;
            n = qw_tok_uc_space_n;
            neg = e == 'S';
            s += 1;
        } else if (e && strchr("pPdDwWhHbBXRkgNKG", e)) {
            return qw_error(QW_EXIT_DATA, "regex '%s': '\\%c' is not supported", pat, e);
        } else {
            qw_buf_addc(out, '\\');
            if (e) qw_buf_addc(out, *++s);
            continue;
        }
        if (in_class && neg)
            return qw_error(QW_EXIT_DATA, "regex '%s': a negated class escape inside [...] is not supported", pat);
        if (!in_class) qw_buf_adds(out, neg ? "[^" : "[");
        add_ranges(out, r, n);
        if (!in_class) qw_buf_addc(out, ']');
    }
    return 0;
}

qw_pretok_stage *qw_pretok_stage_new(const char *pattern, int force_pcre2)
{
    qw_tok_uc_init();
    qw_pretok_stage *st = qw_calloc(1, sizeof *st);
    if (!force_pcre2 && !strcmp(pattern, QW_TOK_QWEN_REGEX)) return st;
    qw_buf b = {0};
    if (translate(pattern, &b)) { qw_buf_free(&b); free(st); return NULL; }
    int err;
    PCRE2_SIZE off;
    st->re = pcre2_compile((PCRE2_SPTR)b.p, b.n, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
    qw_buf_free(&b);
    if (!st->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        qw_error(QW_EXIT_DATA, "regex '%s': %s", pattern, (char *)msg);
        free(st);
        return NULL;
    }
    st->jit = pcre2_jit_compile(st->re, PCRE2_JIT_COMPLETE) == 0;
    return st;
}

void qw_pretok_stage_free(qw_pretok_stage *s)
{
    if (!s) return;
    pcre2_code_free(s->re);
    free(s);
}

int qw_pretok_stage_split(const qw_pretok_stage *s, const char *text, size_t len,
                          qw_pretok_fn fn, void *ctx)
{
    if (!s->re) return qw_pretok_split(text, len, fn, ctx);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(s->re, NULL);
    size_t prev = 0, at = 0;
    int r = 0;
    while (at <= len && !r) {
        int rc = s->jit
            ? pcre2_jit_match(s->re, (PCRE2_SPTR)text, len, at, 0, md, NULL)
            : pcre2_match(s->re, (PCRE2_SPTR)text, len, at, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            r = qw_error(QW_EXIT_FAIL, "pre-tokenizer regex: %s", (char *)msg);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t a = ov[0], e = ov[1];
        if (a > prev) r = fn(text + prev, a - prev, ctx);
        if (!r && e > a) r = fn(text + a, e - a, ctx);
        prev = e;
        if (e > a) { at = e; continue; }
        if (e >= len) break;
        uint32_t c;   /* an empty match: go on after the next character */
        at = e + (size_t)qw_tok_utf8_next((const unsigned char *)text + e, len - e, &c);
    }
    if (!r && prev < len) r = fn(text + prev, len - prev, ctx);
    pcre2_match_data_free(md);
    return r;
}
