/* qw/tok.h — byte-level BPE tokenizers in the Hugging Face tokenizer.json
 * format (Qwen2/Qwen3 and anything built the same way), and their training.
 *
 * Encoding gives the ids HF tokenizers 0.22 gives (doc/model.md §6;
 * tests/tools/test_tok_parity.sh checks it):
 *   1. added tokens (special and non-special) whose "normalized" is false
 *      are found in the raw text, leftmost-longest, honouring each token's
 *      lstrip/rstrip/single_word flags;
 *   2. the text between them is NFC-normalised (when the normalizer says
 *      so), and added tokens with "normalized": true are found in that;
 *   3. the rest is split by the pre-tokenizer (the Qwen2/Qwen3 regex runs on
 *      a hand-written scanner; other Split regexes and ByteLevel's own GPT-2
 *      regex through PCRE2),
 *   4. mapped to ByteLevel characters (GPT-2 bytes_to_unicode),
 *   5. merged by BPE rank (HF's heap order, stale entries included).
 * No BOS/EOS is added (the post-processor is ignored).  Decoding maps ids
 * back to bytes (ByteLevel decoder) and replaces invalid UTF-8 by U+FFFD.
 *
 * Character classes (\p{L}, \p{N}, \s) are those of HF's Oniguruma
 * (Unicode 16), single_word's \w that of its Rust regex, and NFC leaves
 * alone the code points HF's older normaliser (Unicode 10) does not know;
 * these tables are read off HF by tests/tools/gen_tok_unicode.js.
 *
 * What loads: version "1.0"; model BPE without dropout, unk_token,
 * byte_fallback or subword affixes (ignore_merges is honoured), vocabulary
 * ids below 2^20, merges as "a b" or ["a", "b"]; normalizer null, NFC or a
 * Sequence of NFC; pre-tokenizer ByteLevel (add_prefix_space false), alone
 * or after Split(Regex, Isolated) stages; decoder ByteLevel; truncation and
 * padding null.  Added tokens must carry the ids HF would give them.
 * Anything else is refused with QW_EXIT_DATA and a message naming it.
 *
 * Errors: functions returning int give 0 or QW_EXIT_* with a message
 * recorded by qw_error() (see qw/cli.h).
 *
 * Thread safety: a loaded qw_tok is read-only; qw_tok_encode and
 * qw_tok_decode may be called from many threads at once.  Each thread that
 * encodes keeps a cache of recent pieces and scratch space (about 2 MB),
 * freed when the thread exits; it serves one tokenizer at a time (switching
 * tokenizers in a thread empties it).
 */
#ifndef QW_TOK_H
#define QW_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "qw/buf.h"

typedef struct qw_tok qw_tok;

/* Load a tokenizer.json.  Fails with QW_EXIT_DATA (message naming the file
 * and the reason) when the file is not JSON or not a byte-level BPE model
 * this code implements, QW_EXIT_FAIL when it cannot be read.  The caller
 * owns *out; free with qw_tok_free.  Qwen3's takes about 0.7 s and 80 MB at
 * the peak (the JSON tree), under 20 MB once loaded. */
int qw_tok_load(const char *path, qw_tok **out);
void qw_tok_free(qw_tok *t);

/* 1 + the largest id in the vocabulary or the added tokens. */
int32_t qw_tok_vocab_size(const qw_tok *t);
/* Token string of an id (ByteLevel characters for BPE entries, the literal
 * content for added tokens); NULL if no token has this id.  Owned by t. */
const char *qw_tok_id_to_token(const qw_tok *t, int32_t id);
/* Id of a token string (vocab entry or added token), or -1. */
int32_t qw_tok_token_to_id(const qw_tok *t, const char *token);
/* 1 if the id is an added token marked "special": true. */
int qw_tok_is_special(const qw_tok *t, int32_t id);

/* The tokenizer's identity: a 64-bit hash (qw_hash64) of a canonical form
 * of everything that decides the ids: the vocabulary by id, the merges in
 * rank order, ignore_merges, the added tokens with their ids and flags, the
 * normalizer and the pre-tokenizer regexes (ByteLevel's own counted as the
 * GPT-2 Split).  JSON formatting, key order and the merges' form do not
 * change it.  Token streams record it (qw-tokens(5)). */
uint64_t qw_tok_identity(const qw_tok *t);

/* Encode `len` bytes of UTF-8 text, appending ids to *out.  Invalid UTF-8
 * is QW_EXIT_DATA with the byte offset in the message ("invalid UTF-8 at
 * byte 1234"); the caller prefixes file and record. */
int qw_tok_encode(const qw_tok *t, const char *text, size_t len, qw_ids *out);

/* Encode as qw_tok_encode and mark the tokens that carry parts of given
 * byte spans of the text: spans[2k], spans[2k+1] is the half-open byte
 * range [start, end) of span k, in increasing, non-overlapping order.  For
 * each id appended to *ids one byte is appended to *mask: 1 when the
 * token's bytes overlap a span, else 0 — transformers' rule for assistant
 * and completion masks (every token from the one holding a span's first
 * byte to the one holding its last).  Offsets are those of the text as
 * given; with an NFC normalizer the pieces between span edges are
 * normalised one by one, which is exact when the character before an edge
 * does not compose with the one after it (as at the chat template's span
 * edges: a newline before each start, "<|im_end|>" before each end).
 * Errors as qw_tok_encode; a span outside the text or out of order is
 * QW_EXIT_DATA, and so is a tokenizer whose added tokens strip
 * whitespace (their bytes then differ from the text's). */
int qw_tok_encode_mask(const qw_tok *t, const char *text, size_t len, const size_t *spans, size_t n_spans,
                       qw_ids *ids, qw_buf *mask);
/* Decode ids, appending UTF-8 bytes to *out.  skip_special drops added
 * tokens marked special.  An id outside the vocabulary is QW_EXIT_DATA.
 * Byte sequences that are not valid UTF-8 on their own (a token split in
 * the middle of a character) are written as U+FFFD, as HF does. */
int qw_tok_decode(const qw_tok *t, const int32_t *ids, size_t n, int skip_special, qw_buf *out);

/* ---- pieces shared with training ---- */

/* NFC-normalise UTF-8 text, appending to *out.  QW_EXIT_DATA on invalid
 * UTF-8 (offset in the message). */
int qw_tok_nfc(const char *text, size_t len, qw_buf *out);

/* Split (already normalised, valid UTF-8: not checked) text into pre-tokens
 * with the Qwen2/Qwen3 Split regex (doc/model.md §6), calling
 * fn(piece, n, ctx) for each, in order; pieces tile the input exactly.  fn
 * returns 0 to go on; a nonzero return stops the split and is returned. */
typedef int (*qw_pretok_fn)(const char *piece, size_t n, void *ctx);
int qw_pretok_split(const char *text, size_t len, qw_pretok_fn fn, void *ctx);

/* ---- training (tok_train.c) ----
 * Learn a byte-level BPE with the same normalizer and pre-tokenizer, the way
 * HF tokenizers' BpeTrainer does, so that the same corpus gives the same
 * merges:
 *   - each document is NFC-normalised and split by the Qwen regex; each piece
 *     is a word, counted (added-token strings in the text are plain text);
 *   - the alphabet is all 256 ByteLevel characters, ids 0..255 in code point
 *     order of the characters ('!' is 0, as in Qwen's vocabulary);
 *   - repeatedly the most frequent adjacent pair is merged everywhere; the new
 *     token gets the next id (or keeps its id when the same string was made
 *     before from another pair).  Ties go to the pair with the smaller left
 *     id, then the smaller right id.  Counts are HF's, including its quirk
 *     that a merged pair's own count is not reduced: a pair formed again
 *     afterwards (only possible when a merge re-makes an existing string) is
 *     merged a second time, and tokenizer.json lists it at its last rank;
 *   - learning stops when the vocabulary (BPE tokens + specials) reaches
 *     vocab_size, no pair is left, or the best pair is seen fewer than
 *     min_frequency times.
 * The special tokens take the ids right after the BPE tokens.
 *
 * Output is deterministic: the same documents (in any order, fed by any
 * number of threads) give byte-identical files. */
typedef struct qw_tok_trainer qw_tok_trainer;

typedef struct {
    int vocab_size;          /* total, including the 256 byte tokens and the specials */
    int min_frequency;       /* merges of pairs seen fewer times are not made; 0: the
                                default, 2 (1 merges every pair seen at all) */
    const char **specials;   /* added tokens to reserve after the BPE ids, in order;
                                NULL: Qwen3's 26 (<|endoftext|> … </think>) with
                                Qwen3's "special" flags.  A token Qwen3 has keeps its
                                flag; any other is special. */
    int n_specials;
} qw_tok_train_opts;

qw_tok_trainer *qw_tok_trainer_new(void);
/* Count the pre-tokens of one document (NFC applied inside).  Thread-safe:
 * several threads may feed one trainer at once.  A long document is cut
 * into chunks counted in parallel (OpenMP).  Invalid UTF-8 is QW_EXIT_DATA
 * ("invalid UTF-8 at byte N"; the caller prefixes file and record) and
 * counts nothing of that document, so the caller may skip it and go on. */
int qw_tok_trainer_feed(qw_tok_trainer *tr, const char *text, size_t len);
/* Learn the merges and write `dir`/tokenizer.json (the structure of Qwen3's:
 * NFC, Split + ByteLevel pre-tokenizer, ByteLevel post-processor and
 * decoder, BPE vocab and merges, added tokens) and `dir`/tokenizer_config.json
 * (Qwen2Tokenizer, the Qwen3 chat template, eos <|im_end|> and pad
 * <|endoftext|> when among the specials).  `dir` is created if missing
 * (with its parents); each file is written atomically (qw/file.h).
 * Errors: QW_EXIT_USAGE for bad options (vocab_size below 256 + specials,
 * negative min_frequency, an empty or repeated special, a special that is
 * also a learned token), QW_EXIT_FAIL for I/O.  The trainer keeps its counts:
 * finish may be called again, e.g. with another vocab_size. */
int qw_tok_trainer_finish(qw_tok_trainer *tr, const qw_tok_train_opts *opts, const char *dir);
void qw_tok_trainer_free(qw_tok_trainer *tr);

#endif
