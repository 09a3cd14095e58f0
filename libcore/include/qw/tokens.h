/* qw/tokens.h — token streams (qw-tokens(5)): documents of token ids,
 * written as a sequence of self-contained, checksummed frames.
 *
 * The byte layout is specified in man/man5/qw-tokens.5.  In short: each
 * frame is a 48-byte little-endian header (magic "QWTK", version 1 or 2,
 * flags, tokenizer identity, vocabulary size, document and token counts,
 * payload length, CRC-32C of the payload and of the header) followed by the
 * payload: the token count of every document, then all the ids (2 or 4
 * bytes each), then in frames with a loss mask (version 2, flag MASK) one
 * bit per token, optionally compressed as one zstd frame.  Frames without
 * masks are written as version 1, so readers from before masks still read
 * them, and refuse masked frames by their version.  Documents never span
 * frames.
 * A stream is zero or more frames, so the concatenation of two streams
 * (`cat a b`) is a stream.
 *
 * Errors: functions returning int give 0 (or 1, see below) on success, or
 * QW_EXIT_* with a message recorded by qw_error().  A reader reports bad
 * data as QW_EXIT_DATA naming the stream, the 0-based frame index and the
 * frame's byte offset:  'a.qwt': frame 3 at byte 4194352: bad payload checksum
 * Read and write failures of the FILE are QW_EXIT_FAIL.
 */
#ifndef QW_TOKENS_H
#define QW_TOKENS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define QW_TOKENS_MAGIC "QWTK"
#define QW_TOKENS_VERSION 1        /* frames without loss masks */
#define QW_TOKENS_VERSION_MASK 2   /* frames that may carry them (the newest version) */
#define QW_TOKENS_HEADER_SIZE 48
enum {
    QW_TOKENS_ZSTD  = 1u << 0,   /* flags: the payload is one zstd frame */
    QW_TOKENS_IDS32 = 1u << 1,   /* flags: ids are 4 bytes wide (else 2) */
    QW_TOKENS_MASK  = 1u << 2,   /* flags (version 2): a loss-mask bit per token follows the ids */
};
/* Default frame size: a frame is closed once it holds this many tokens plus
 * documents. */
#define QW_TOKENS_FRAME_TOKENS (1u << 20)
/* Largest uncompressed payload a frame may have (bytes); a reader rejects
 * larger frames, a writer refuses a document that would not fit. */
#define QW_TOKENS_MAX_PAYLOAD (1ull << 30)

/* ---- writing ---- */

typedef struct {
    uint64_t identity;        /* qw_tok_identity() of the tokenizer */
    uint32_t vocab_size;      /* qw_tok_vocab_size(); ids must be below it; > 65536 selects 4-byte ids */
    int zstd_level;           /* 0: payload stored as is; 1..22: zstd level */
    uint64_t frame_tokens;    /* 0: QW_TOKENS_FRAME_TOKENS */
    int masks;                /* every document comes with a loss mask (version-2 frames) */
} qw_tokens_writer_opts;

typedef struct qw_tokens_writer qw_tokens_writer;

/* A writer appending frames to `f` (not owned; `name` is for messages and
 * must outlive the writer). */
qw_tokens_writer *qw_tokens_writer_new(FILE *f, const char *name, const qw_tokens_writer_opts *opts);
/* Add one document; `mask` is n bytes (nonzero: the token is a target whose
 * loss counts) when the writer has `masks`, and NULL otherwise (anything
 * else is QW_EXIT_USAGE).  An id outside [0, vocab_size) is QW_EXIT_DATA;
 * a frame that fills up is written (QW_EXIT_FAIL on a write error). */
int qw_tokens_write_doc(qw_tokens_writer *w, const int32_t *ids, const uint8_t *mask, size_t n);
/* Write the pending documents as a frame, if any (does not fflush `f`). */
int qw_tokens_writer_flush(qw_tokens_writer *w);
/* Free without writing what is pending: call qw_tokens_writer_flush first. */
void qw_tokens_writer_free(qw_tokens_writer *w);

/* ---- reading ---- */

/* One frame, as qw_tokens_read_frame returns it.  The arrays are owned by
 * the reader and valid until its next call. */
typedef struct {
    long index;               /* 0-based frame number in the stream */
    uint64_t offset;          /* byte offset of the frame's header */
    unsigned version;         /* 1 or 2 */
    unsigned flags;           /* QW_TOKENS_ZSTD | QW_TOKENS_IDS32 | QW_TOKENS_MASK */
    uint64_t identity;
    uint32_t vocab_size;
    uint32_t n_docs;
    uint64_t n_tokens;
    uint64_t payload_len;     /* payload bytes as stored (compressed size with zstd) */
    const uint32_t *doc_len;  /* n_docs token counts, summing to n_tokens */
    const int32_t *ids;       /* n_tokens ids, each below vocab_size */
    const uint8_t *mask;      /* n_tokens bytes, 0 or 1, with QW_TOKENS_MASK; else NULL */
} qw_tokens_frame;

typedef struct qw_tokens_reader qw_tokens_reader;

/* A validating reader of the stream `f` (not owned; `name` for messages,
 * must outlive the reader). */
qw_tokens_reader *qw_tokens_reader_new(FILE *f, const char *name);
/* Require every frame to carry this tokenizer identity: a frame with
 * another is QW_EXIT_DATA ("tokenizer identity X, expected Y"). */
void qw_tokens_reader_expect(qw_tokens_reader *r, uint64_t identity);
/* Read and check the next frame.  Returns 0 with *got = 1 and *fr filled,
 * 0 with *got = 0 at the clean end of the stream, or QW_EXIT_DATA (bad
 * magic, unknown version, bad header or payload checksum, truncated frame,
 * inconsistent counts, an id out of range, wrong identity) / QW_EXIT_FAIL
 * (read error) with *got = 0. */
int qw_tokens_read_frame(qw_tokens_reader *r, qw_tokens_frame *fr, int *got);
/* The next document across frames: returns 0 with *got = 1 and *ids / *n
 * and, when `mask` is not NULL, *mask (n bytes 0/1, or NULL for a frame
 * without masks) — owned by the reader, valid until its next call — 0 with
 * *got = 0 at the end, or an error as above.  Do not mix with
 * qw_tokens_read_frame on one reader. */
int qw_tokens_read_doc(qw_tokens_reader *r, const int32_t **ids, const uint8_t **mask, size_t *n, int *got);
/* Bytes consumed from `f` so far. */
uint64_t qw_tokens_reader_offset(const qw_tokens_reader *r);
void qw_tokens_reader_free(qw_tokens_reader *r);

/* ---- inspecting ---- */

/* Read the whole stream `f`, validating every frame, and write a summary
 * to `out` as "key: value" lines: file, bytes, frames, documents, tokens,
 * identity (with vocabulary size; each distinct one), ids (16-bit, 32-bit
 * or mixed), loss mask (none, or the targets among the tokens of masked
 * frames, and mixed when some frames have none), compression (none, zstd with stored/raw sizes, or mixed) and
 * tokens per document (min, mean, max).  Returns 0 or a reader error. */
int qw_tokens_describe(FILE *f, const char *name, FILE *out);

#endif
