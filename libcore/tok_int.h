/* tok_int.h — shared inside the tokenizer (tok.c, tok_pretok.c,
 * tok_unicode.c); not a public interface. */
#ifndef QW_TOK_INT_H
#define QW_TOK_INT_H

#include <stddef.h>
#include <stdint.h>

#include "qw/tok.h"

/* Character classes as HF's regex engines and normaliser see them
 * (tok_unicode.c, generated): inclusive code-point ranges. */
extern const uint32_t qw_tok_uc_letter[][2], qw_tok_uc_number[][2], qw_tok_uc_space[][2],
                      qw_tok_uc_nfc_opaque[][2], qw_tok_uc_word[][2];
extern const int qw_tok_uc_letter_n, qw_tok_uc_number_n, qw_tok_uc_space_n,
                 qw_tok_uc_nfc_opaque_n, qw_tok_uc_word_n;

/* Per-code-point class byte (tok_pretok.c). */
enum {
    QW_UC_OTHER = 0, QW_UC_LETTER = 1, QW_UC_NUMBER = 2, QW_UC_SPACE = 3,
    QW_UC_KIND = 3,
    QW_UC_NFC_UNSAFE = 4,   /* NFC may change text around this code point */
    QW_UC_NFC_OPAQUE = 8,   /* HF's NFC does not know it: an inert starter */
    QW_UC_WORD = 16,        /* Rust regex \w (added-token single_word) */
};
extern const uint8_t *qw_tok_uc_stage1[0x1100];
void qw_tok_uc_init(void);          /* idempotent, thread-safe */
static inline unsigned qw_tok_uclass(uint32_t c) { return qw_tok_uc_stage1[c >> 8][c & 255]; }

/* Decode one code point of valid UTF-8 at p (n bytes left, n >= 1);
 * returns its length. */
static inline int qw_tok_utf8_next(const unsigned char *p, size_t n, uint32_t *cp)
{
    unsigned b = p[0];
    if (b < 0x80 || n < 2) { *cp = b; return 1; }
    if (b < 0xE0) { *cp = (b & 0x1F) << 6 | (p[1] & 0x3F); return 2; }
    if (b < 0xF0 || n < 4) {
        *cp = (b & 0x0F) << 12 | (p[1] & 0x3F) << 6 | (p[2] & 0x3F); return 3;
    }
    *cp = (b & 0x07) << 18 | (p[1] & 0x3F) << 12 | (p[2] & 0x3F) << 6 | (p[3] & 0x3F);
    return 4;
}

/* GPT-2's bytes_to_unicode (tok.c): the ByteLevel character of each byte.
 * Printable bytes stand for themselves; the other 68 take U+0100 onwards in
 * byte order.  The table is static and built on first use (thread-safe). */
const uint32_t *qw_tok_byte_chars(void);
/* Append the ByteLevel characters of bytes p[0..n) to out as UTF-8. */
void qw_tok_bytes_to_chars(const unsigned char *p, size_t n, qw_buf *out);

/* Length of the valid UTF-8 prefix of s (== n when all valid). */
size_t qw_tok_utf8_valid(const char *s, size_t n);

/* ---- pre-tokenizer stages (tok_pretok.c) ---- */
typedef struct qw_pretok_stage qw_pretok_stage;
/* Compile a Split regex (HF/Oniguruma syntax).  The Qwen2/Qwen3 pattern
 * runs on a hand-written scanner unless force_pcre2; others through PCRE2
 * with \p{L}, \p{N} and \s replaced by the classes above.  NULL with
 * qw_error set ("regex '...': reason") when the pattern uses what is not
 * supported. */
qw_pretok_stage *qw_pretok_stage_new(const char *pattern, int force_pcre2);
void qw_pretok_stage_free(qw_pretok_stage *s);
/* Split text into the matches and the gaps between them (HF's
 * SplitDelimiterBehavior::Isolated), in order, skipping empty pieces. */
int qw_pretok_stage_split(const qw_pretok_stage *s, const char *text, size_t len,
                          qw_pretok_fn fn, void *ctx);

/* The GPT-2 pattern HF's ByteLevel pre-tokenizer uses with use_regex. */
#define QW_TOK_GPT2_REGEX \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
/* The Qwen2/Qwen3 Split pattern. */
#define QW_TOK_QWEN_REGEX \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

#endif
