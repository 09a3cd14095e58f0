/* shard.c — packed shard files (qw-pack(5)): writer, validating reader,
 * and datasets of many shards with random access by row. */
#include "qw/shard.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#define ZSTD_STATIC_LINKING_ONLY   /* ZSTD_decompressBound (zstd >= 1.4.0) */
#include <zstd.h>

#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/file.h"
#include "qw/hash.h"

/* ---- little-endian fields ---- */

static void put16(unsigned char *p, uint32_t v) { p[0] = v; p[1] = v >> 8; }
static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = v >> (8 * i); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = v >> (8 * i); }
static uint32_t get16(const unsigned char *p) { return p[0] | (uint32_t)p[1] << 8; }
static uint32_t get32(const unsigned char *p)
{
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const unsigned char *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

static void buf_add32(qw_buf *b, uint32_t v)
{
    unsigned char t[4];
    put32(t, v);
    qw_buf_add(b, t, 4);
}

static uint32_t mask_bytes(uint32_t row_len) { return (row_len + 7) / 8; }

/* The reason a row is malformed, or NULL. */
static const char *row_problem(const qw_shard_row *row, uint32_t L, uint32_t vocab, uint32_t pad_id)
{
    if (row->n_valid < 1 || row->n_valid > L) return "valid token count out of range";
    if (row->n_segs < 1 || row->n_segs > row->n_valid) return "segment count out of range";
    if (row->starts[0] != 0) return "first segment does not start at 0";
    for (uint32_t k = 1; k < row->n_segs; k++)
        if (row->starts[k] <= row->starts[k - 1] || row->starts[k] >= row->n_valid)
            return "segment starts not increasing within the row";
    for (uint32_t i = 0; i < L; i++) {
        if (row->tokens[i] < 0 || (uint32_t)row->tokens[i] >= vocab) return "token id outside the vocabulary";
        if (i >= row->n_valid && (uint32_t)row->tokens[i] != pad_id) return "padding holds a token other than the pad id";
    }
    return NULL;
}

/* The reason a row's images are malformed, or NULL. */
static const char *images_problem(const qw_shard_images *im, uint32_t n_valid)
{
    if (!im || !im->n) return NULL;
    if (im->K < 1 || im->K > (1u << 20)) return "patch width out of range";
    for (uint32_t k = 0; k < im->n; k++) {
        if (im->start[k] >= n_valid) return "an image starts outside the row's tokens";
        if (k && im->start[k] <= im->start[k - 1]) return "image starts not increasing";
        for (int a = 0; a < 3; a++)
            if (im->thw[3 * k + a] < 1 || im->thw[3 * k + a] > (1u << 16)) return "an image grid side out of range";
    }
    return NULL;
}

static uint64_t images_rows(const qw_shard_images *im)
{
    uint64_t rows = 0;
    for (uint32_t k = 0; k < im->n; k++) rows += (uint64_t)im->thw[3 * k] * im->thw[3 * k + 1] * im->thw[3 * k + 2];
    return rows;
}

/* ---- header ---- */

static void header_encode(const qw_shard_header *h, uint32_t index_crc, unsigned char *p)
{
    memset(p, 0, QW_SHARD_HEADER_SIZE);
    memcpy(p, QW_SHARD_MAGIC, 4);
    put16(p + 4, h->version);
    put16(p + 6, h->flags);
    put32(p + 8, h->row_len);
    put32(p + 12, h->token_width);
    put64(p + 16, h->n_rows);
    put64(p + 24, h->identity);
    put32(p + 32, h->vocab_size);
    put32(p + 36, h->pad_id);
    put32(p + 40, h->rows_per_block);
    put32(p + 44, h->n_blocks);
    put64(p + 48, h->index_offset);
    put32(p + 56, index_crc);
    put32(p + 60, qw_crc32c(0, p, 60));
}

/* ---- writer ---- */

struct qw_shard_writer {
    char *path;
    qw_afile out;      /* written as PATH.tmp, renamed at close (qw/file.h) */
    qw_shard_header h;
    int zstd_level;
    ZSTD_CCtx *cctx;
    qw_buf block, packed, index;
    uint32_t block_rows;
    uint64_t offset;
};

int qw_shard_writer_open(const char *path, const qw_shard_params *p, qw_shard_writer **out)
{
    *out = NULL;
    if (p->row_len < 2 || p->row_len > QW_SHARD_MAX_ROW_LEN)
        return qw_error(QW_EXIT_USAGE, "'%s': row length %u is not in 2..%u", path, p->row_len, QW_SHARD_MAX_ROW_LEN);
    if (p->vocab_size < 1 || p->pad_id >= p->vocab_size)
        return qw_error(QW_EXIT_USAGE, "'%s': pad id %u outside a vocabulary of %u", path, p->pad_id, p->vocab_size);
    if (p->zstd_level < 0 || p->zstd_level > ZSTD_maxCLevel())
        return qw_error(QW_EXIT_USAGE, "'%s': zstd level %d out of range 0..%d", path, p->zstd_level, ZSTD_maxCLevel());
    qw_shard_writer *w = qw_calloc(1, sizeof *w);
    w->path = qw_strdup(path);
    int st = qw_afile_open(path, &w->out);
    if (st) {
        free(w->path); free(w);
        return st;
    }
    w->h.version = p->has_images ? QW_SHARD_VERSION_IMAGES : QW_SHARD_VERSION;
    w->h.flags = (p->has_mask ? QW_SHARD_MASK : 0) | (p->zstd_level > 0 ? QW_SHARD_ZSTD : 0) |
                 (p->has_images ? QW_SHARD_IMAGES : 0);
    w->h.row_len = p->row_len;
    w->h.token_width = p->vocab_size <= 65536 ? 2 : 4;
    w->h.identity = p->identity;
    w->h.vocab_size = p->vocab_size;
    w->h.pad_id = p->pad_id;
    w->h.rows_per_block = p->rows_per_block;
    if (!w->h.rows_per_block) {
        uint32_t per = p->row_len * w->h.token_width;
        w->h.rows_per_block = per >= (1u << 20) ? 1 : (1u << 20) / per;
        if (p->has_images && w->h.rows_per_block > 8) w->h.rows_per_block = 8;   /* patches are large */
    }
    w->zstd_level = p->zstd_level;
    if (w->zstd_level) w->cctx = ZSTD_createCCtx();
    unsigned char zero[QW_SHARD_HEADER_SIZE] = {0};
    fwrite(zero, 1, sizeof zero, w->out.f);
    w->offset = QW_SHARD_HEADER_SIZE;
    *out = w;
    return 0;
}

static int writer_flush_block(qw_shard_writer *w)
{
    if (!w->block_rows) return 0;
    const char *data = w->block.p;
    size_t n = w->block.n;
    if (w->cctx) {
        w->packed.n = 0;
        qw_buf_reserve(&w->packed, ZSTD_compressBound(w->block.n));
        size_t z = ZSTD_compressCCtx(w->cctx, w->packed.p, w->packed.cap, w->block.p, w->block.n, w->zstd_level);
        if (ZSTD_isError(z)) return qw_error(QW_EXIT_FAIL, "'%s': zstd: %s", w->path, ZSTD_getErrorName(z));
        data = w->packed.p;
        n = z;
    }
    if (n > UINT32_MAX || w->block.n > UINT32_MAX) return qw_error(QW_EXIT_FAIL, "'%s': block too large", w->path);
    if (fwrite(data, 1, n, w->out.f) != n) return qw_error(QW_EXIT_FAIL, "'%s': %s", w->out.tmp, strerror(errno));
    unsigned char e[QW_SHARD_INDEX_ENTRY_SIZE] = {0};
    put64(e, w->offset);
    put32(e + 8, (uint32_t)n);
    put32(e + 12, (uint32_t)w->block.n);
    put32(e + 16, qw_crc32c(0, data, n));
    qw_buf_add(&w->index, e, sizeof e);
    w->offset += n;
    w->h.n_blocks++;
    w->block.n = 0;
    w->block_rows = 0;
    return 0;
}

int qw_shard_writer_add(qw_shard_writer *w, const qw_shard_row *row)
{
    uint32_t L = w->h.row_len;
    const char *why = row_problem(row, L, w->h.vocab_size, w->h.pad_id);
    if (!why && row->images && row->images->n && !(w->h.flags & QW_SHARD_IMAGES)) why = "images in a shard without images";
    if (!why) why = images_problem(row->images, row->n_valid);
    if (why) return qw_error(QW_EXIT_DATA, "'%s': row %llu: %s", w->path, (unsigned long long)w->h.n_rows, why);
    buf_add32(&w->block, row->n_valid);
    buf_add32(&w->block, row->n_segs);
    for (uint32_t k = 0; k < row->n_segs; k++) buf_add32(&w->block, row->starts[k]);
    qw_buf_reserve(&w->block, (size_t)L * w->h.token_width + mask_bytes(L));
    unsigned char *p = (unsigned char *)w->block.p + w->block.n;
    for (uint32_t i = 0; i < L; i++) {
        if (w->h.token_width == 2) put16(p + 2 * i, (uint32_t)row->tokens[i]);
        else put32(p + 4 * i, (uint32_t)row->tokens[i]);
    }
    w->block.n += (size_t)L * w->h.token_width;
    if (w->h.flags & QW_SHARD_MASK) {
        unsigned char *m = (unsigned char *)w->block.p + w->block.n;
        memset(m, 0, mask_bytes(L));
        for (uint32_t i = 0; i < L; i++)
            if (i < row->n_valid && (!row->mask || row->mask[i])) m[i / 8] |= 1u << (i % 8);
        w->block.n += mask_bytes(L);
    }
    if (w->h.flags & QW_SHARD_IMAGES) {
        const qw_shard_images *im = row->images;
        uint32_t n = im ? im->n : 0;
        buf_add32(&w->block, n);
        buf_add32(&w->block, n ? im->K : 0);
        for (uint32_t k = 0; k < n; k++) {
            buf_add32(&w->block, im->start[k]);
            for (int a = 0; a < 3; a++) buf_add32(&w->block, im->thw[3 * k + a]);
        }
        uint64_t vals = n ? images_rows(im) * im->K : 0;
        for (uint64_t i = 0; i < vals; i++) {
            uint32_t u;
            memcpy(&u, im->pixels + i, 4);
            buf_add32(&w->block, u);
        }
    }
    w->h.n_rows++;
    if (++w->block_rows == w->h.rows_per_block) return writer_flush_block(w);
    return 0;
}

uint64_t qw_shard_writer_rows(const qw_shard_writer *w) { return w->h.n_rows; }
uint64_t qw_shard_writer_bytes(const qw_shard_writer *w) { return w->offset; }

static void writer_free(qw_shard_writer *w)
{
    ZSTD_freeCCtx(w->cctx);
    qw_buf_free(&w->block);
    qw_buf_free(&w->packed);
    qw_buf_free(&w->index);
    free(w->path);
    free(w);
}

void qw_shard_writer_abort(qw_shard_writer *w)
{
    if (!w) return;
    qw_afile_abort(&w->out);
    writer_free(w);
}

int qw_shard_writer_close(qw_shard_writer *w)
{
    int st = writer_flush_block(w);
    if (!st) {
        w->h.index_offset = w->offset;
        unsigned char hdr[QW_SHARD_HEADER_SIZE];
        header_encode(&w->h, qw_crc32c(0, w->index.p, w->index.n), hdr);
        FILE *f = w->out.f;
        if (fwrite(w->index.p, 1, w->index.n, f) != w->index.n || fseek(f, 0, SEEK_SET) ||
            fwrite(hdr, 1, sizeof hdr, f) != sizeof hdr)
            st = qw_error(QW_EXIT_FAIL, "'%s': %s", w->out.tmp, strerror(errno));
    }
    if (st) qw_shard_writer_abort(w);
    else {
        st = qw_afile_commit(&w->out);
        writer_free(w);
    }
    return st;
}

/* ---- reader ---- */

typedef struct {
    uint64_t offset;
    uint32_t stored, raw, crc;
} block_entry;

struct qw_shard {
    char *path;
    int fd;
    qw_shard_header h;
    block_entry *blocks;
    ZSTD_DCtx *dctx;
    int64_t cached;            /* block in `raw`, or -1 */
    qw_buf raw, stored;
    size_t *row_off;           /* [rows_per_block] offsets of the cached block's rows */
    uint32_t *img_meta;        /* the last row's images: starts, then grids */
    float *img_px;
    size_t img_meta_cap, img_px_cap;
};

static int read_at(qw_shard *s, void *p, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(s->fd, (char *)p + got, n - got, (off_t)(off + got));
        if (k < 0) {
            if (errno == EINTR) continue;
            return qw_error(QW_EXIT_FAIL, "'%s': %s", s->path, strerror(errno));
        }
        if (k == 0) return qw_error(QW_EXIT_DATA, "'%s': truncated file", s->path);
        got += (size_t)k;
    }
    return 0;
}

static int bad(const qw_shard *s, const char *why) { return qw_error(QW_EXIT_DATA, "'%s': %s", s->path, why); }

static int shard_validate(qw_shard *s, uint64_t file_size)
{
    unsigned char p[QW_SHARD_HEADER_SIZE];
    if (file_size < QW_SHARD_HEADER_SIZE) return bad(s, "truncated file (no complete header)");
    int st = read_at(s, p, sizeof p, 0);
    if (st) return st;
    if (memcmp(p, QW_SHARD_MAGIC, 4)) return bad(s, "not a qw-pack shard (bad magic)");
    if (get32(p + 60) != qw_crc32c(0, p, 60)) return bad(s, "header checksum mismatch");
    qw_shard_header *h = &s->h;
    h->version = get16(p + 4);
    h->flags = get16(p + 6);
    h->row_len = get32(p + 8);
    h->token_width = get32(p + 12);
    h->n_rows = get64(p + 16);
    h->identity = get64(p + 24);
    h->vocab_size = get32(p + 32);
    h->pad_id = get32(p + 36);
    h->rows_per_block = get32(p + 40);
    h->n_blocks = get32(p + 44);
    h->index_offset = get64(p + 48);
    if (h->version != QW_SHARD_VERSION && h->version != QW_SHARD_VERSION_IMAGES)
        return qw_error(QW_EXIT_DATA, "'%s': format version %u, this program reads %d and %d", s->path, h->version,
                        QW_SHARD_VERSION, QW_SHARD_VERSION_IMAGES);
    if (h->flags & ~(QW_SHARD_MASK | QW_SHARD_ZSTD | QW_SHARD_IMAGES)) return bad(s, "unknown header flags");
    if (!(h->flags & QW_SHARD_IMAGES) != (h->version == QW_SHARD_VERSION))
        return bad(s, "the images flag does not match the format version");
    if (h->row_len < 2) return bad(s, "row length less than 2");
    if (h->token_width != 2 && h->token_width != 4) return bad(s, "token width not 2 or 4");
    if (h->vocab_size < 1 || (h->token_width == 2 && h->vocab_size > 65536)) return bad(s, "vocabulary size does not fit the token width");
    if (h->pad_id >= h->vocab_size) return bad(s, "pad id outside the vocabulary");
    if (h->row_len > QW_SHARD_MAX_ROW_LEN)
        return qw_error(QW_EXIT_DATA, "'%s': row length %u is more than %u", s->path, h->row_len, QW_SHARD_MAX_ROW_LEN);
    if (h->rows_per_block < 1) return bad(s, "zero rows per block");
    if (h->n_blocks != h->n_rows / h->rows_per_block + (h->n_rows % h->rows_per_block != 0))
        return bad(s, "block count does not match the row count");
    uint64_t index_size = (uint64_t)h->n_blocks * QW_SHARD_INDEX_ENTRY_SIZE;
    if (h->index_offset < QW_SHARD_HEADER_SIZE || h->index_offset > file_size || file_size - h->index_offset != index_size)
        return bad(s, h->index_offset > file_size || file_size - h->index_offset < index_size
                          ? "truncated file" : "file size does not match the header");
    unsigned char *ix = qw_malloc(index_size);
    st = read_at(s, ix, index_size, h->index_offset);
    if (!st && get32(p + 56) != qw_crc32c(0, ix, index_size)) st = bad(s, "block index checksum mismatch");
    s->blocks = qw_calloc(h->n_blocks, sizeof *s->blocks);
    uint64_t expect = QW_SHARD_HEADER_SIZE;
    /* a row's bytes: its counts, 1..L segment starts, L tokens, the mask */
    uint64_t body = (uint64_t)h->row_len * h->token_width + (h->flags & QW_SHARD_MASK ? mask_bytes(h->row_len) : 0);
    int images = (h->flags & QW_SHARD_IMAGES) != 0;
    uint64_t row_min = 12 + body + 8 * images, row_max = images ? UINT32_MAX : 8 + 4 * (uint64_t)h->row_len + body;
    for (uint32_t b = 0; !st && b < h->n_blocks; b++) {
        block_entry *e = &s->blocks[b];
        const unsigned char *q = ix + (size_t)b * QW_SHARD_INDEX_ENTRY_SIZE;
        e->offset = get64(q);
        e->stored = get32(q + 8);
        e->raw = get32(q + 12);
        e->crc = get32(q + 16);
        uint64_t rows = b + 1 < h->n_blocks ? h->rows_per_block : h->n_rows - (uint64_t)b * h->rows_per_block;
        if (e->offset != expect || get32(q + 20) != 0 || e->raw < rows * row_min || e->raw > rows * row_max ||
            (!(h->flags & QW_SHARD_ZSTD) && e->stored != e->raw))
            st = qw_error(QW_EXIT_DATA, "'%s': block %u: bad index entry", s->path, b);
        expect += e->stored;
    }
    if (!st && expect != h->index_offset) st = bad(s, "blocks do not end at the block index");
    free(ix);
    return st;
}

int qw_shard_open(const char *path, qw_shard **out)
{
    *out = NULL;
    qw_shard *s = qw_calloc(1, sizeof *s);
    s->path = qw_strdup(path);
    s->cached = -1;
    s->fd = open(path, O_RDONLY);
    struct stat sb;
    int st = 0;
    if (s->fd < 0) st = qw_error(errno == ENOENT ? QW_EXIT_DATA : QW_EXIT_FAIL, "'%s': %s", path, strerror(errno));
    else if (fstat(s->fd, &sb)) st = qw_error(QW_EXIT_FAIL, "'%s': %s", path, strerror(errno));
    else if (!S_ISREG(sb.st_mode)) st = bad(s, "not a regular file");
    else st = shard_validate(s, (uint64_t)sb.st_size);
    if (st) {
        qw_shard_close(s);
        return st;
    }
    s->dctx = ZSTD_createDCtx();
    /* rows_per_block may exceed the rows there are (a writer's default) */
    s->row_off = qw_calloc(s->h.n_rows < s->h.rows_per_block ? s->h.n_rows + 1 : s->h.rows_per_block, sizeof *s->row_off);
    *out = s;
    return 0;
}

const qw_shard_header *qw_shard_info(const qw_shard *s) { return &s->h; }
const char *qw_shard_path(const qw_shard *s) { return s->path; }

void qw_shard_close(qw_shard *s)
{
    if (!s) return;
    if (s->fd >= 0) close(s->fd);
    ZSTD_freeDCtx(s->dctx);
    qw_buf_free(&s->raw);
    qw_buf_free(&s->stored);
    free(s->blocks);
    free(s->row_off);
    free(s->img_meta);
    free(s->img_px);
    free(s->path);
    free(s);
}

/* Decode the row at offset `off` of the n decoded bytes p into `row`
 * (starts go to `scratch_starts`, of row_len entries); returns the offset
 * after the row, or 0 when the bytes end early.  The row's contents are
 * checked by the caller (row_problem). */
static size_t row_decode(const qw_shard *s, const unsigned char *p, size_t n, size_t off, qw_shard_row *row,
                         uint32_t *scratch_starts)
{
    const qw_shard_header *h = &s->h;
    uint32_t L = h->row_len;
    if (n - off < 8) return 0;
    row->n_valid = get32(p + off);
    row->n_segs = get32(p + off + 4);
    off += 8;
    if (row->n_segs < 1 || row->n_segs > L || (n - off) / 4 < row->n_segs) return 0;
    row->starts = scratch_starts;
    for (uint32_t k = 0; k < row->n_segs; k++) row->starts[k] = get32(p + off + 4 * k);
    off += 4 * (size_t)row->n_segs;
    size_t body = (size_t)L * h->token_width + (h->flags & QW_SHARD_MASK ? mask_bytes(L) : 0);
    if (n - off < body) return 0;
    for (uint32_t i = 0; i < L; i++)
        row->tokens[i] = h->token_width == 2 ? (int32_t)get16(p + off + 2 * i) : (int32_t)get32(p + off + 4 * i);
    off += (size_t)L * h->token_width;
    if (row->mask) {
        for (uint32_t i = 0; i < L; i++)
            row->mask[i] = i < row->n_valid && (h->flags & QW_SHARD_MASK ? (p[off + i / 8] >> (i % 8)) & 1 : 1);
    }
    if (h->flags & QW_SHARD_MASK) off += mask_bytes(L);
    if (!(h->flags & QW_SHARD_IMAGES)) {
        if (row->images) row->images->n = 0;
        return off;
    }
    /* images: counts, (start, t, h, w) each, then the patches; checked here
     * (sizes) and by images_problem (values) */
    if (n - off < 8) return 0;
    uint32_t ni = get32(p + off), K = get32(p + off + 4);
    off += 8;
    if (ni > L || (n - off) / 16 < ni) return 0;
    uint64_t rows = 0;
    for (uint32_t k = 0; k < ni; k++) {
        const unsigned char *q = p + off + 16 * (size_t)k;
        uint64_t a = get32(q + 4), b = get32(q + 8), c = get32(q + 12);
        if (a > (1u << 16) || b > (1u << 16) || c > (1u << 16)) return 0;
        rows += a * b * c;
    }
    if (ni && (K < 1 || K > (1u << 20))) return 0;
    uint64_t vals = rows * K;
    if (vals > ((uint64_t)n - off - 16 * (uint64_t)ni) / 4) return 0;
    qw_shard *ms = (qw_shard *)s;
    if (row->images) {
        if (4 * (size_t)ni > ms->img_meta_cap) ms->img_meta = qw_realloc(ms->img_meta, (ms->img_meta_cap = 4 * (size_t)ni) * 4);
        if (vals > ms->img_px_cap) ms->img_px = qw_realloc(ms->img_px, (ms->img_px_cap = vals) * sizeof(float));
        for (uint32_t k = 0; k < ni; k++) {
            const unsigned char *q = p + off + 16 * (size_t)k;
            ms->img_meta[k] = get32(q);
            for (int a = 0; a < 3; a++) ms->img_meta[ni + 3 * k + a] = get32(q + 4 + 4 * a);
        }
        const unsigned char *q = p + off + 16 * (size_t)ni;
        for (uint64_t i = 0; i < vals; i++) {
            uint32_t u = get32(q + 4 * i);
            memcpy(ms->img_px + i, &u, 4);
        }
        *row->images = (qw_shard_images){ni, ni ? K : 0, ms->img_meta, ms->img_meta + ni, ms->img_px};
    } else {
        for (uint32_t k = 0; k < ni; k++) {   /* validation: starts and grids only */
            const unsigned char *q = p + off + 16 * (size_t)k;
            if (get32(q) >= row->n_valid || (k && get32(q) <= get32(q - 16)) || !get32(q + 4) || !get32(q + 8) ||
                !get32(q + 12))
                return 0;
        }
    }
    off += 16 * (size_t)ni + 4 * vals;
    return off;
}

static int load_block(qw_shard *s, uint32_t b)
{
    if (s->cached == b) return 0;
    s->cached = -1;
    const block_entry *e = &s->blocks[b];
    const qw_shard_header *h = &s->h;
    s->stored.n = 0;
    qw_buf_reserve(&s->stored, e->stored);
    int st = read_at(s, s->stored.p, e->stored, e->offset);
    if (st) return st;
    if (qw_crc32c(0, s->stored.p, e->stored) != e->crc)
        return qw_error(QW_EXIT_DATA, "'%s': block %u: checksum mismatch", s->path, b);
    s->raw.n = 0;
    if (h->flags & QW_SHARD_ZSTD) {   /* the index's size, before it is allocated, against what the frame can hold */
        unsigned long long most = ZSTD_decompressBound(s->stored.p, e->stored);
        if (most == ZSTD_CONTENTSIZE_ERROR || most < e->raw)
            return qw_error(QW_EXIT_DATA, "'%s': block %u: bad zstd data", s->path, b);
    }
    qw_buf_reserve(&s->raw, e->raw);
    if (h->flags & QW_SHARD_ZSTD) {
        size_t z = ZSTD_decompressDCtx(s->dctx, s->raw.p, e->raw, s->stored.p, e->stored);
        if (ZSTD_isError(z) || z != e->raw)
            return qw_error(QW_EXIT_DATA, "'%s': block %u: bad zstd data", s->path, b);
    } else {
        memcpy(s->raw.p, s->stored.p, e->raw);
    }
    s->raw.n = e->raw;
    uint64_t first = (uint64_t)b * h->rows_per_block;
    uint64_t rows = h->n_rows - first < h->rows_per_block ? h->n_rows - first : h->rows_per_block;
    int32_t *tokens = qw_malloc((size_t)h->row_len * sizeof *tokens);
    uint32_t *starts = qw_malloc((size_t)h->row_len * sizeof *starts);
    size_t off = 0;
    for (uint64_t k = 0; k < rows && !st; k++) {
        qw_shard_row row = {.tokens = tokens};
        s->row_off[k] = off;
        off = row_decode(s, (unsigned char *)s->raw.p, s->raw.n, off, &row, starts);
        const char *why = off ? row_problem(&row, h->row_len, h->vocab_size, h->pad_id) : "truncated row";
        if (why) st = qw_error(QW_EXIT_DATA, "'%s': row %llu: %s", s->path, (unsigned long long)(first + k), why);
    }
    if (!st && off != s->raw.n) st = qw_error(QW_EXIT_DATA, "'%s': block %u: trailing bytes", s->path, b);
    free(tokens);
    free(starts);
    if (!st) s->cached = b;
    return st;
}

/* Free the decoded-block cache (a dataset moving on to another shard). */
static void shard_drop_cache(qw_shard *s)
{
    s->cached = -1;
    qw_buf_free(&s->raw);
    qw_buf_free(&s->stored);
}

int qw_shard_read_row(qw_shard *s, uint64_t r, qw_shard_row *out)
{
    if (r >= s->h.n_rows)
        return qw_error(QW_EXIT_USAGE, "'%s': row %llu out of range (%llu rows)", s->path,
                        (unsigned long long)r, (unsigned long long)s->h.n_rows);
    uint32_t b = (uint32_t)(r / s->h.rows_per_block);
    int st = load_block(s, b);
    if (st) return st;
    uint32_t *starts = out->starts;
    row_decode(s, (unsigned char *)s->raw.p, s->raw.n, s->row_off[r % s->h.rows_per_block], out, starts);
    const char *why = out->images ? images_problem(out->images, out->n_valid) : NULL;
    if (why) return qw_error(QW_EXIT_DATA, "'%s': row %llu: %s", s->path, (unsigned long long)r, why);
    return 0;
}

void qw_shard_row_view(const qw_shard_row *row, uint32_t row_len, int32_t *seg, int32_t *pos, uint8_t *loss)
{
    uint32_t k = 0, start = 0;
    for (uint32_t i = 0; i < row_len; i++) {
        int pad = i >= row->n_valid;
        int begins = !pad && k < row->n_segs && row->starts[k] == i;
        if (begins) start = i, k++;
        if (seg) seg[i] = pad ? 0 : (int32_t)k;
        if (pos) pos[i] = pad ? 0 : (int32_t)(i - start);
        if (loss) loss[i] = !pad && !begins && (!row->mask || row->mask[i]);
    }
}

/* ---- datasets ---- */

struct qw_dataset {
    qw_shard **shards;
    uint64_t *first;           /* [n + 1] first row of each shard, then the total */
    int n;
    int last;                  /* shard of the last read */
    uint32_t *starts;
    uint8_t *mask;
};

static int read_text(const char *path, qw_buf *b)
{
    FILE *f = fopen(path, "rb");
    if (!f) return qw_error(errno == ENOENT ? QW_EXIT_DATA : QW_EXIT_FAIL, "'%s': %s", path, strerror(errno));
    char tmp[65536];
    size_t k;
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0) qw_buf_add(b, tmp, k);
    int err = ferror(f);
    fclose(f);
    if (err) return qw_error(QW_EXIT_FAIL, "'%s': read error", path);
    qw_buf_cstr(b);
    return 0;
}

static void dataset_add(qw_dataset *ds, qw_shard *s)
{
    ds->shards = qw_realloc(ds->shards, (ds->n + 1) * sizeof *ds->shards);
    ds->shards[ds->n++] = s;
}

/* The shards that DIR/index.json lists for `split`, checked against it. */
static int dataset_add_dir(qw_dataset *ds, const char *dir, const char *split)
{
    char *ixpath = qw_malloc(strlen(dir) + 16);
    sprintf(ixpath, "%s/index.json", dir);
    qw_buf text = {0};
    int st = read_text(ixpath, &text);
    if (st) {
        if (qw_error_status() == QW_EXIT_DATA)
            st = qw_error(QW_EXIT_DATA, "'%s': no index.json (not a qw-pack data directory)", dir);
        free(ixpath);
        qw_buf_free(&text);
        return st;
    }
    cJSON *j = cJSON_Parse(text.p);
    qw_buf_free(&text);
    const cJSON *shards = cJSON_GetObjectItemCaseSensitive(j, "shards");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "format");
    const cJSON *idj = cJSON_GetObjectItemCaseSensitive(j, "tokenizer_identity");
    const cJSON *rlj = cJSON_GetObjectItemCaseSensitive(j, "row_len");
    if (!j || !cJSON_IsArray(shards) || !cJSON_IsString(fmt) || strcmp(fmt->valuestring, "qw-pack") ||
        !cJSON_IsString(idj) || !cJSON_IsNumber(rlj)) {
        st = qw_error(QW_EXIT_DATA, "'%s': not a qw-pack index", ixpath);
        goto out;
    }
    uint64_t identity = strtoull(idj->valuestring, NULL, 16);
    const cJSON *e;
    cJSON_ArrayForEach(e, shards) {
        const cJSON *file = cJSON_GetObjectItemCaseSensitive(e, "file");
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(e, "split");
        const cJSON *rows = cJSON_GetObjectItemCaseSensitive(e, "rows");
        if (!cJSON_IsString(file) || !cJSON_IsString(sp) || !cJSON_IsNumber(rows) || strchr(file->valuestring, '/')) {
            st = qw_error(QW_EXIT_DATA, "'%s': bad shard entry", ixpath);
            goto out;
        }
        if (strcmp(sp->valuestring, split)) continue;
        char *fp = qw_malloc(strlen(dir) + strlen(file->valuestring) + 2);
        sprintf(fp, "%s/%s", dir, file->valuestring);
        qw_shard *s;
        st = qw_shard_open(fp, &s);
        free(fp);
        if (st) goto out;
        const qw_shard_header *h = qw_shard_info(s);
        if ((double)h->n_rows != rows->valuedouble || h->identity != identity || (double)h->row_len != rlj->valuedouble) {
            st = qw_error(QW_EXIT_DATA, "'%s': does not match '%s' (rows, row length or tokenizer identity)",
                          qw_shard_path(s), ixpath);
            qw_shard_close(s);
            goto out;
        }
        dataset_add(ds, s);
    }
out:
    cJSON_Delete(j);
    free(ixpath);
    return st;
}

int qw_dataset_open(const char *const *paths, int n_paths, const char *split, int seq_len, uint64_t identity,
                    qw_dataset **out)
{
    *out = NULL;
    qw_dataset *ds = qw_calloc(1, sizeof *ds);
    int st = 0;
    for (int i = 0; i < n_paths && !st; i++) {
        struct stat sb;
        if (stat(paths[i], &sb)) {
            st = qw_error(errno == ENOENT ? QW_EXIT_DATA : QW_EXIT_FAIL, "'%s': %s", paths[i], strerror(errno));
        } else if (S_ISDIR(sb.st_mode)) {
            st = dataset_add_dir(ds, paths[i], split);
        } else {
            qw_shard *s;
            st = qw_shard_open(paths[i], &s);
            if (!st) dataset_add(ds, s);
        }
    }
    if (!st && !ds->n)
        st = qw_error(QW_EXIT_DATA, "'%s': no %s shards", n_paths ? paths[0] : "", split);
    ds->first = qw_calloc(ds->n + 1, sizeof *ds->first);
    for (int i = 0; i < ds->n && !st; i++) {
        const qw_shard_header *h = qw_shard_info(ds->shards[i]), *h0 = qw_shard_info(ds->shards[0]);
        const char *p = qw_shard_path(ds->shards[i]);
        if (seq_len > 0 && h->row_len != (uint32_t)seq_len + 1)
            st = qw_error(QW_EXIT_DATA, "'%s': rows of %u tokens (seq-len %u), expected seq-len %d", p, h->row_len,
                          h->row_len - 1, seq_len);
        else if (identity && h->identity != identity)
            st = qw_error(QW_EXIT_DATA, "'%s': tokenizer identity %016llx, expected %016llx", p,
                          (unsigned long long)h->identity, (unsigned long long)identity);
        else if (h->row_len != h0->row_len || h->identity != h0->identity || h->vocab_size != h0->vocab_size)
            st = qw_error(QW_EXIT_DATA, "'%s': row length, tokenizer or vocabulary differs from '%s'", p,
                          qw_shard_path(ds->shards[0]));
        ds->first[i + 1] = ds->first[i] + h->n_rows;
    }
    if (st) {
        qw_dataset_close(ds);
        return st;
    }
    uint32_t L = qw_shard_info(ds->shards[0])->row_len;
    ds->starts = qw_malloc(L * sizeof *ds->starts);
    ds->mask = qw_malloc(L);
    *out = ds;
    return 0;
}

uint64_t qw_dataset_rows(const qw_dataset *ds) { return ds->first[ds->n]; }
uint32_t qw_dataset_row_len(const qw_dataset *ds) { return qw_shard_info(ds->shards[0])->row_len; }
uint64_t qw_dataset_identity(const qw_dataset *ds) { return qw_shard_info(ds->shards[0])->identity; }
uint32_t qw_dataset_vocab_size(const qw_dataset *ds) { return qw_shard_info(ds->shards[0])->vocab_size; }

const char *qw_dataset_unmasked(const qw_dataset *ds)
{
    for (int i = 0; i < ds->n; i++)
        if (!(qw_shard_info(ds->shards[i])->flags & QW_SHARD_MASK)) return qw_shard_path(ds->shards[i]);
    return NULL;
}

int qw_dataset_has_images(const qw_dataset *ds)
{
    for (int i = 0; i < ds->n; i++)
        if (qw_shard_info(ds->shards[i])->flags & QW_SHARD_IMAGES) return 1;
    return 0;
}

int qw_dataset_read_row(qw_dataset *ds, uint64_t r, int32_t *tokens, int32_t *seg, int32_t *pos, uint8_t *loss)
{
    return qw_dataset_read_row_images(ds, r, tokens, seg, pos, loss, NULL);
}

int qw_dataset_read_row_images(qw_dataset *ds, uint64_t r, int32_t *tokens, int32_t *seg, int32_t *pos,
                               uint8_t *loss, qw_shard_images *images)
{
    if (r >= qw_dataset_rows(ds))
        return qw_error(QW_EXIT_USAGE, "row %llu out of range (%llu rows)", (unsigned long long)r,
                        (unsigned long long)qw_dataset_rows(ds));
    int i = ds->last;
    if (r < ds->first[i] || r >= ds->first[i + 1]) {
        int lo = 0, hi = ds->n - 1;    /* the last shard whose first row is <= r */
        while (lo < hi) {
            int mid = (lo + hi + 1) / 2;
            if (ds->first[mid] <= r) lo = mid;
            else hi = mid - 1;
        }
        shard_drop_cache(ds->shards[ds->last]);
        i = ds->last = lo;
    }
    qw_shard_row row = {.tokens = tokens, .starts = ds->starts, .mask = ds->mask, .images = images};
    int st = qw_shard_read_row(ds->shards[i], r - ds->first[i], &row);
    if (!st) qw_shard_row_view(&row, qw_dataset_row_len(ds), seg, pos, loss);
    return st;
}

void qw_dataset_close(qw_dataset *ds)
{
    if (!ds) return;
    for (int i = 0; i < ds->n; i++) qw_shard_close(ds->shards[i]);
    free(ds->shards);
    free(ds->first);
    free(ds->starts);
    free(ds->mask);
    free(ds);
}
