/* qw/pack.h — packing documents into fixed-length rows (qw-pack(1)) and
 * writing them as a data directory of shards (qw-pack(5)).
 *
 * Documents are collected in memory (qw_docs: 4 bytes per token, plus one
 * byte per token when they carry loss masks), split into train and
 * validation sets by document, packed, shuffled by seed and written.
 *
 * Packing modes, for rows of L = T+1 tokens:
 *   pretrain  concatenate-and-split: the documents of a split are
 *             concatenated in order and row r is tokens [r*T, r*T + L) of
 *             the concatenation (stride T: the last token of a row is the
 *             first of the next, so every token but the first is a target
 *             exactly once).  The tail that does not fill a row is dropped
 *             (counted in the report).  Each piece of a document in a row is
 *             a segment.
 *   sft       best-fit-decreasing: documents are placed whole, longest
 *             first, into the row with the least room that still fits them
 *             (a new row when none does); the rest of a row is padding
 *             (pad_id, segment 0, loss 0).  A document longer than L is
 *             truncated to L tokens (QW_PACK_TRUNCATE) or cut into pieces of
 *             at most L tokens, each packed as its own document
 *             (QW_PACK_SPLIT).
 *
 * Randomness (the validation split and the row order of each split) comes
 * from qw/rng.h seeded by `seed`, one stream each: the same input and
 * options give the same bytes on every machine.
 *
 * Errors as in qw/cli.h: 0 or QW_EXIT_* after qw_error().
 */
#ifndef QW_PACK_H
#define QW_PACK_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "qw/buf.h"
#include "qw/shard.h"

/* Documents in memory.  Zero-initialise; free with qw_docs_free. */
typedef struct {
    qw_ids tokens;             /* every document's tokens, concatenated */
    qw_buf mask;               /* one byte (0/1) per token when has_mask */
    size_t *ends;              /* document d is tokens [ends[d-1], ends[d]) (ends[-1] = 0) */
    size_t n_docs, cap;
    int has_mask;              /* set by the first qw_docs_add; all documents agree */
    /* images (Qwen3-VL; qw_docs_add_images): image k belongs to the
     * document img_doc[k], its pad run starts at token img_at[k] of that
     * document, its grid is img_thw[3k..], its patches are rows
     * img_row[k] … of pixels (K floats each; 4·K bytes per patch row in
     * memory, so a data set with images is held whole in memory). */
    size_t n_img, img_cap;
    size_t *img_doc;
    uint32_t *img_at, *img_thw;
    uint64_t *img_row;
    float *pixels;
    uint64_t px_rows, px_cap;
    uint32_t K;
} qw_docs;

/* Append a document of n >= 1 tokens; `mask` (n bytes, 0/1: whether each
 * token is a target whose loss counts) or NULL for all 1.  Either every
 * document has a mask or none does (QW_EXIT_DATA otherwise). */
int qw_docs_add(qw_docs *d, const int32_t *ids, size_t n, const uint8_t *mask);
/* The same with the document's images (`im` may be NULL or hold none):
 * their starts are offsets into this document.  A document with images is
 * never cut: qw_pack_dataset refuses one longer than a row and packs
 * images only in sft mode (QW_EXIT_DATA / QW_EXIT_USAGE). */
int qw_docs_add_images(qw_docs *d, const int32_t *ids, size_t n, const uint8_t *mask, const qw_shard_images *im);
void qw_docs_free(qw_docs *d);

typedef enum { QW_PACK_PRETRAIN, QW_PACK_SFT } qw_pack_mode;
typedef enum { QW_PACK_TRUNCATE, QW_PACK_SPLIT } qw_pack_long;

typedef struct {
    const char *dir;           /* output directory (created if missing) */
    int seq_len;               /* T; rows hold T+1 tokens */
    qw_pack_mode mode;
    qw_pack_long long_docs;    /* sft: documents longer than T+1 */
    uint64_t seed;
    double val_frac;           /* fraction of documents for validation, [0, 1) */
    uint64_t shard_rows;       /* rows per shard file; 0: about 256 MiB of tokens */
    int zstd_level;            /* 0: none */
    uint32_t vocab_size;       /* every token must be below it */
    uint32_t pad_id;           /* padding token (sft) */
    uint64_t identity;         /* tokenizer identity recorded in every shard; 0: unknown */
    /* Called now and then with the rows written so far and the total. */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
} qw_pack_opts;

/* What one split became. */
typedef struct {
    uint64_t docs, tokens;     /* documents and tokens that went in */
    uint64_t rows, shards, bytes;
    uint64_t dropped;          /* tokens not in any row (pretrain tail, sft truncation) */
    uint64_t padding;          /* padding tokens */
} qw_pack_split_report;

typedef struct {
    qw_pack_split_report train, val;
} qw_pack_report;

/* Split, pack, shuffle and write `docs` into o->dir: train-NNNNN.qwp,
 * val-NNNNN.qwp and index.json.  An existing index.json is removed before
 * the first shard is written and the new one renamed into place last, so
 * an interrupted run leaves no index rather than a wrong one; shards the
 * new index does not list are left alone.  QW_EXIT_DATA
 * when there are no documents, a split yields no rows, or a token is
 * outside the vocabulary; QW_EXIT_USAGE for bad options. */
int qw_pack_dataset(const qw_docs *docs, const qw_pack_opts *o, qw_pack_report *rep);

#endif
