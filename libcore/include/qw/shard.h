/* qw/shard.h — packed shards (qw-pack(5)): fixed-length rows of tokens with
 * document boundaries and optional loss masks, written by qw-pack and read
 * by the trainers.
 *
 * A row holds L = T+1 tokens (T = --seq-len).  A trainer feeds tokens
 * [0, T) as inputs and predicts tokens [1, L) as targets.  The tokens of a
 * row are divided into segments: each segment is (a piece of) one document,
 * and a row may end in padding.  man/man5/qw-pack.5 gives the byte layout;
 * this header gives the API.
 *
 * The conventions a trainer relies on (qw_dataset_read_row):
 *   seg[i]   segment id of token i: 1, 2, ... in row order; 0 for padding.
 *            Attention from token i may only see tokens j <= i with
 *            seg[j] == seg[i].
 *   pos[i]   position of token i within its segment (0 at each segment
 *            start, also when a document continues from the previous row);
 *            0 for padding.  These are the RoPE position ids.
 *   loss[i]  1 if token i counts as a target (predicted from token i-1),
 *            else 0.  loss[0] is always 0; loss[i] is 0 when token i starts
 *            a segment (never predict across a document boundary), when it
 *            is padding, and when the row's loss mask says so (e.g. the
 *            prompt of an SFT sample).
 *
 * Errors: functions returning int give 0 or QW_EXIT_* after qw_error()
 * (qw/cli.h).  Bad files are QW_EXIT_DATA with the file, the row or block,
 * and the reason; I/O failures are QW_EXIT_FAIL.
 *
 * Threads: a qw_shard or qw_dataset keeps a decoded-block cache and must be
 * used by one thread at a time; open one per thread (opening is cheap: the
 * header and block index only).
 */
#ifndef QW_SHARD_H
#define QW_SHARD_H

#include <stddef.h>
#include <stdint.h>

#define QW_SHARD_MAGIC   "QWPK"
#define QW_SHARD_VERSION 1        /* text rows */
#define QW_SHARD_VERSION_IMAGES 2 /* rows that may carry images (QW_SHARD_IMAGES) */
#define QW_SHARD_HEADER_SIZE 64
#define QW_SHARD_INDEX_ENTRY_SIZE 24
/* Longest row (L = T+1 tokens) a shard may have: readers allocate per-row
 * buffers of this many entries before reading a block. */
#define QW_SHARD_MAX_ROW_LEN (1u << 24)

/* Header flags. */
#define QW_SHARD_MASK 0x1u     /* rows carry a loss mask (one bit per token) */
#define QW_SHARD_ZSTD 0x2u     /* blocks are zstd frames */
#define QW_SHARD_IMAGES 0x4u   /* rows carry images (version 2 only) */

/* The decoded header of a shard file (all fields validated on open). */
typedef struct {
    uint32_t version;
    uint32_t flags;            /* QW_SHARD_MASK | QW_SHARD_ZSTD */
    uint32_t row_len;          /* L = T+1 tokens per row, >= 2 */
    uint32_t token_width;      /* bytes per stored token: 2 or 4 */
    uint64_t n_rows;
    uint64_t identity;         /* tokenizer identity (qw_tok_identity); 0: unknown */
    uint32_t vocab_size;       /* every stored token is < vocab_size */
    uint32_t pad_id;           /* token stored in padding positions */
    uint32_t rows_per_block;
    uint32_t n_blocks;
    uint64_t index_offset;     /* byte offset of the block index */
} qw_shard_header;

/* The images of a row (Qwen3-VL): image k's pad tokens start at token
 * start[k] of the row, its grid is thw[3k..3k+2] (t, h, w in patches), and
 * its t·h·w patch rows of K floats follow the previous image's in pixels
 * (fp32, exactly qw-eval pixels' pixel_values).  Given to a writer, read
 * from the caller's memory; filled by a reader, the arrays belong to the
 * reader and stay valid until its next read. */
typedef struct {
    uint32_t n;
    uint32_t K;
    const uint32_t *start;     /* [n] */
    const uint32_t *thw;       /* [n][3] */
    const float *pixels;       /* [Σ t·h·w][K] */
} qw_shard_images;

/* One row as stored: what the writer takes and qw_shard_read_row gives.
 * The caller owns the arrays; each must hold row_len entries (starts too). */
typedef struct {
    int32_t *tokens;           /* [L]; positions >= n_valid hold pad_id */
    uint32_t *starts;          /* [n_segs] segment start offsets: starts[0] == 0,
                                  strictly increasing, each < n_valid */
    uint32_t n_segs;           /* >= 1 */
    uint32_t n_valid;          /* tokens before the padding, 1..L */
    uint8_t *mask;             /* [L] 0/1 per token as a target, or NULL: all 1
                                  (ignored by a writer without QW_SHARD_MASK);
                                  padding reads back as 0 */
    qw_shard_images *images;   /* writer: the row's images (NULL: none; the shard
                                  must have has_images); reader: filled when not
                                  NULL (n = 0 for a shard without images) */
} qw_shard_row;

/* ---- writer ---- */

typedef struct {
    uint32_t row_len;          /* L = T+1 */
    uint32_t vocab_size;       /* tokens must be < vocab_size */
    uint64_t identity;         /* tokenizer identity, 0 if unknown */
    uint32_t pad_id;           /* < vocab_size */
    int has_mask;              /* store the rows' loss masks */
    int zstd_level;            /* 0: store blocks raw; 1..22: zstd level */
    uint32_t rows_per_block;   /* 0: about 1 MiB of tokens per block (at most 8 rows with images) */
    int has_images;            /* rows may carry images: version 2, QW_SHARD_IMAGES */
} qw_shard_params;

typedef struct qw_shard_writer qw_shard_writer;

/* Create `path`.  Data goes to "path.tmp", renamed to `path` by a successful
 * qw_shard_writer_close; token width is 2 bytes when vocab_size <= 65536. */
int qw_shard_writer_open(const char *path, const qw_shard_params *p, qw_shard_writer **out);
/* Append one row (checked: QW_EXIT_DATA names the row and reason when a
 * token is out of the vocabulary or the segments are malformed). */
int qw_shard_writer_add(qw_shard_writer *w, const qw_shard_row *row);
/* Rows written so far, and bytes written so far (blocks flushed). */
uint64_t qw_shard_writer_rows(const qw_shard_writer *w);
uint64_t qw_shard_writer_bytes(const qw_shard_writer *w);
/* Flush, write the index and header, rename into place, free w.  On
 * failure the temporary file is removed. */
int qw_shard_writer_close(qw_shard_writer *w);
/* Remove the temporary file and free w (after an error elsewhere). */
void qw_shard_writer_abort(qw_shard_writer *w);

/* ---- reader: one file ---- */

typedef struct qw_shard qw_shard;

/* Open and validate the header and block index (magic, version, flags,
 * sizes, CRC-32C of header and index, block layout).  Blocks are checked
 * (CRC, decompression, every row's structure) when first read. */
int qw_shard_open(const char *path, qw_shard **out);
const qw_shard_header *qw_shard_info(const qw_shard *s);
const char *qw_shard_path(const qw_shard *s);
/* Read row r (< n_rows) into caller arrays of row_len entries; out->mask
 * may be NULL to skip the mask (a shard without masks gives 1 for every
 * token before the padding). */
int qw_shard_read_row(qw_shard *s, uint64_t r, qw_shard_row *out);
void qw_shard_close(qw_shard *s);

/* Fill the trainer view (seg, pos, loss as described at the top; any may
 * be NULL) from a stored row. */
void qw_shard_row_view(const qw_shard_row *row, uint32_t row_len,
                       int32_t *seg, int32_t *pos, uint8_t *loss);

/* ---- reader: a dataset of many shards ---- */

typedef struct qw_dataset qw_dataset;

/* Open the rows of a dataset, numbered across its shards in order.
 * `paths` are shard files or directories written by qw-pack; a directory
 * contributes the shards its index.json lists for `split` ("train" or
 * "val"), and the listed row counts, row length and identity are checked
 * against each shard.  Every shard must have row_len == seq_len + 1 (when
 * seq_len > 0) and identity == `identity` (when nonzero), and all shards
 * must agree with each other.  No shard at all is QW_EXIT_DATA.  The
 * dataset keeps one open file per shard and the decoded block of the shard
 * read last (about 1 MiB). */
int qw_dataset_open(const char *const *paths, int n_paths, const char *split,
                    int seq_len, uint64_t identity, qw_dataset **out);
uint64_t qw_dataset_rows(const qw_dataset *ds);
uint32_t qw_dataset_row_len(const qw_dataset *ds);
uint64_t qw_dataset_identity(const qw_dataset *ds);
uint32_t qw_dataset_vocab_size(const qw_dataset *ds);
/* The path of the first shard without loss masks (QW_SHARD_MASK), or NULL
 * when every shard has them (owned by the dataset). */
const char *qw_dataset_unmasked(const qw_dataset *ds);
/* Read row r (< qw_dataset_rows) into tokens[L] and the trainer view
 * seg[L], pos[L], loss[L] (any of the three may be NULL). */
int qw_dataset_read_row(qw_dataset *ds, uint64_t r, int32_t *tokens,
                        int32_t *seg, int32_t *pos, uint8_t *loss);
/* The same, and the row's images into *images (owned by the dataset, valid
 * until its next read; n = 0 for rows without images). */
int qw_dataset_read_row_images(qw_dataset *ds, uint64_t r, int32_t *tokens, int32_t *seg, int32_t *pos,
                               uint8_t *loss, qw_shard_images *images);
/* Whether any shard carries images (QW_SHARD_IMAGES). */
int qw_dataset_has_images(const qw_dataset *ds);
void qw_dataset_close(qw_dataset *ds);

#endif
