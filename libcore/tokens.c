/* tokens.c — the qw-tokens(5) frame writer, validating reader and
 * inspector (qw/tokens.h). */
#include "qw/tokens.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/hash.h"

static void put16(unsigned char *p, uint32_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void put32(unsigned char *p, uint32_t v) { put16(p, v); put16(p + 2, v >> 16); }
static void put64(unsigned char *p, uint64_t v) { put32(p, (uint32_t)v); put32(p + 4, (uint32_t)(v >> 32)); }
static uint32_t get16(const unsigned char *p) { return p[0] | (uint32_t)p[1] << 8; }
static uint32_t get32(const unsigned char *p) { return get16(p) | get16(p + 2) << 16; }
static uint64_t get64(const unsigned char *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }

static int write_error(const char *name)
{
    return qw_error(QW_EXIT_FAIL, "'%s': write error: %s", name, strerror(errno));
}

/* ---- writer ---- */

struct qw_tokens_writer {
    FILE *f;
    const char *name;
    qw_tokens_writer_opts o;
    unsigned width;             /* bytes per id */
    qw_buf lens, ids, bits;     /* the pending payload's parts, little-endian; bits: masks */
    uint32_t n_docs;
    uint64_t n_tokens;
    qw_buf z;
    ZSTD_CCtx *cctx;
};

qw_tokens_writer *qw_tokens_writer_new(FILE *f, const char *name, const qw_tokens_writer_opts *opts)
{
    qw_tokens_writer *w = qw_calloc(1, sizeof *w);
    w->f = f;
    w->name = name;
    w->o = *opts;
    if (!w->o.frame_tokens) w->o.frame_tokens = QW_TOKENS_FRAME_TOKENS;
    w->width = w->o.vocab_size > 65536 ? 4 : 2;
    return w;
}

static uint64_t mask_bytes(uint64_t n_tokens) { return (n_tokens + 7) / 8; }

static uint64_t pending_bytes(const qw_tokens_writer *w)
{
    return w->lens.n + w->ids.n + (w->o.masks ? mask_bytes(w->n_tokens) : 0);
}

int qw_tokens_write_doc(qw_tokens_writer *w, const int32_t *ids, const uint8_t *mask, size_t n)
{
    if (!w->o.masks != !mask)
        return qw_error(QW_EXIT_USAGE, "'%s': a document %s a loss mask in a stream %s them", w->name,
                        mask ? "with" : "without", w->o.masks ? "of" : "without");
    uint64_t need = 4 + (uint64_t)n * w->width + (w->o.masks ? n / 8 + 1 : 0);
    if (need > QW_TOKENS_MAX_PAYLOAD)
        return qw_error(QW_EXIT_DATA, "'%s': a document of %zu tokens does not fit in a frame", w->name, n);
    if (pending_bytes(w) + need > QW_TOKENS_MAX_PAYLOAD) {
        int rc = qw_tokens_writer_flush(w);
        if (rc) return rc;
    }
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= w->o.vocab_size)
            return qw_error(QW_EXIT_DATA, "'%s': token id %d out of range (vocabulary %u)", w->name, ids[i],
                            w->o.vocab_size);
    unsigned char b[4];
    put32(b, (uint32_t)n);
    qw_buf_add(&w->lens, b, 4);
    qw_buf_reserve(&w->ids, n * w->width);
    unsigned char *p = (unsigned char *)w->ids.p + w->ids.n;
    for (size_t i = 0; i < n; i++, p += w->width) {
        if (w->width == 4) put32(p, (uint32_t)ids[i]);
        else put16(p, (uint32_t)ids[i]);
    }
    w->ids.n += n * w->width;
    if (mask) {
        qw_buf_reserve(&w->bits, mask_bytes(w->n_tokens + n) - w->bits.n);
        for (size_t i = 0; i < n; i++) {
            uint64_t k = w->n_tokens + i;
            if (k % 8 == 0) w->bits.p[w->bits.n++] = 0;
            if (mask[i]) w->bits.p[k / 8] |= (char)(1u << (k % 8));
        }
    }
    w->n_docs++;
    w->n_tokens += n;
    if (w->n_tokens + w->n_docs >= w->o.frame_tokens) return qw_tokens_writer_flush(w);
    return 0;
}

/* Compress lens||ids into w->z as one zstd frame that records its size. */
static int compress_payload(qw_tokens_writer *w)
{
    if (!w->cctx) {
        w->cctx = ZSTD_createCCtx();
        if (!w->cctx) return qw_error(QW_EXIT_FAIL, "out of memory (zstd)");
    }
    ZSTD_CCtx_reset(w->cctx, ZSTD_reset_session_only);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, w->o.zstd_level);
    ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_contentSizeFlag, 1);
    ZSTD_CCtx_setPledgedSrcSize(w->cctx, pending_bytes(w));
    w->z.n = 0;
    qw_buf_reserve(&w->z, ZSTD_compressBound(pending_bytes(w)));
    ZSTD_outBuffer out = {w->z.p, w->z.cap, 0};
    ZSTD_inBuffer a = {w->lens.p, w->lens.n, 0}, b = {w->ids.p, w->ids.n, 0}, c = {w->bits.p, w->bits.n, 0};
    size_t r = ZSTD_compressStream2(w->cctx, &out, &a, ZSTD_e_continue);
    if (!ZSTD_isError(r)) r = ZSTD_compressStream2(w->cctx, &out, &b, ZSTD_e_continue);
    while (!ZSTD_isError(r) && (r = ZSTD_compressStream2(w->cctx, &out, &c, ZSTD_e_end)) != 0 && !ZSTD_isError(r)) {}
    if (ZSTD_isError(r)) return qw_error(QW_EXIT_FAIL, "'%s': zstd: %s", w->name, ZSTD_getErrorName(r));
    w->z.n = out.pos;
    return 0;
}

int qw_tokens_writer_flush(qw_tokens_writer *w)
{
    if (!w->n_docs) return 0;
    unsigned flags = (w->width == 4 ? QW_TOKENS_IDS32 : 0) | (w->o.masks ? QW_TOKENS_MASK : 0);
    const void *parts[3] = {w->lens.p, w->ids.p, w->bits.p};
    size_t sizes[3] = {w->lens.n, w->ids.n, w->bits.n};
    int nparts = w->o.masks ? 3 : 2;
    if (w->o.zstd_level > 0) {
        int rc = compress_payload(w);
        if (rc) return rc;
        flags |= QW_TOKENS_ZSTD;
        parts[0] = w->z.p;
        sizes[0] = w->z.n;
        nparts = 1;
    }
    uint32_t crc = 0;
    uint64_t stored = 0;
    for (int i = 0; i < nparts; i++) {
        crc = qw_crc32c(crc, parts[i], sizes[i]);
        stored += sizes[i];
    }
    unsigned char h[QW_TOKENS_HEADER_SIZE] = {0};
    memcpy(h, QW_TOKENS_MAGIC, 4);
    h[4] = w->o.masks ? QW_TOKENS_VERSION_MASK : QW_TOKENS_VERSION;
    h[5] = (unsigned char)flags;
    put64(h + 8, w->o.identity);
    put32(h + 16, w->o.vocab_size);
    put32(h + 20, w->n_docs);
    put64(h + 24, w->n_tokens);
    put64(h + 32, stored);
    put32(h + 40, crc);
    put32(h + 44, qw_crc32c(0, h, 44));
    if (fwrite(h, 1, sizeof h, w->f) != sizeof h) return write_error(w->name);
    for (int i = 0; i < nparts; i++)
        if (sizes[i] && fwrite(parts[i], 1, sizes[i], w->f) != sizes[i]) return write_error(w->name);
    w->lens.n = w->ids.n = w->bits.n = 0;
    w->n_docs = 0;
    w->n_tokens = 0;
    return 0;
}

void qw_tokens_writer_free(qw_tokens_writer *w)
{
    if (!w) return;
    qw_buf_free(&w->lens);
    qw_buf_free(&w->ids);
    qw_buf_free(&w->bits);
    qw_buf_free(&w->z);
    ZSTD_freeCCtx(w->cctx);
    free(w);
}

/* ---- reader ---- */

struct qw_tokens_reader {
    FILE *f;
    const char *name;
    int expect;
    uint64_t identity;
    uint64_t off;               /* bytes consumed */
    long index;                 /* frames read */
    int failed;                 /* the error already reported, repeated on later calls */
    qw_buf stored, raw;
    uint32_t *lens;
    int32_t *ids;
    uint8_t *mask;
    size_t lens_cap, ids_cap;
    ZSTD_DCtx *dctx;
    qw_tokens_frame cur;        /* for qw_tokens_read_doc */
    uint32_t doc;
    uint64_t pos;
    int have;
};

qw_tokens_reader *qw_tokens_reader_new(FILE *f, const char *name)
{
    qw_tokens_reader *r = qw_calloc(1, sizeof *r);
    r->f = f;
    r->name = name;
    return r;
}

void qw_tokens_reader_expect(qw_tokens_reader *r, uint64_t identity)
{
    r->expect = 1;
    r->identity = identity;
}

uint64_t qw_tokens_reader_offset(const qw_tokens_reader *r) { return r->off; }

static int bad(qw_tokens_reader *r, uint64_t at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(qw_tokens_reader *r, uint64_t at, const char *fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    r->failed = qw_error(QW_EXIT_DATA, "'%s': frame %ld at byte %llu: %s", r->name, r->index,
                         (unsigned long long)at, why);
    return r->failed;
}

/* Read up to n bytes; a short count means the end of the file. */
static int read_bytes(qw_tokens_reader *r, void *p, size_t n, size_t *got)
{
    *got = fread(p, 1, n, r->f);
    if (*got < n && ferror(r->f)) {
        r->failed = qw_error(QW_EXIT_FAIL, "'%s': read error: %s", r->name, strerror(errno));
        return r->failed;
    }
    return 0;
}

/* Read the stored payload in pieces, so that a header claiming a huge
 * payload on a short file fails as truncated without a huge allocation. */
static int read_payload(qw_tokens_reader *r, uint64_t at, uint64_t len)
{
    r->stored.n = 0;
    while (r->stored.n < len) {
        size_t want = len - r->stored.n < (1u << 22) ? (size_t)(len - r->stored.n) : (1u << 22), got;
        qw_buf_reserve(&r->stored, want);
        int rc = read_bytes(r, r->stored.p + r->stored.n, want, &got);
        if (rc) return rc;
        r->stored.n += got;
        if (got < want)
            return bad(r, at, "truncated payload (%zu of %llu bytes)", r->stored.n, (unsigned long long)len);
    }
    return 0;
}

int qw_tokens_read_frame(qw_tokens_reader *r, qw_tokens_frame *fr, int *got)
{
    *got = 0;
    if (r->failed) return r->failed;
    uint64_t at = r->off;
    unsigned char h[QW_TOKENS_HEADER_SIZE];
    size_t nread;
    int rc = read_bytes(r, h, sizeof h, &nread);
    if (rc) return rc;
    if (nread == 0) return 0;
    if (memcmp(h, QW_TOKENS_MAGIC, nread < 4 ? nread : 4)) return bad(r, at, "bad magic (not a qw-tokens stream)");
    if (nread < sizeof h) return bad(r, at, "truncated header (%zu of %d bytes)", nread, QW_TOKENS_HEADER_SIZE);
    if (h[4] != QW_TOKENS_VERSION && h[4] != QW_TOKENS_VERSION_MASK) return bad(r, at, "unknown version %u", h[4]);
    if (get32(h + 44) != qw_crc32c(0, h, 44)) return bad(r, at, "bad header checksum");
    unsigned flags = h[5], known = QW_TOKENS_ZSTD | QW_TOKENS_IDS32 | (h[4] >= QW_TOKENS_VERSION_MASK ? QW_TOKENS_MASK : 0);
    if (flags & ~known) return bad(r, at, "unknown flags 0x%02x", flags);
    if (h[6] || h[7]) return bad(r, at, "reserved bytes are not zero");
    qw_tokens_frame f = {
        .index = r->index, .offset = at, .version = h[4], .flags = flags, .identity = get64(h + 8), .vocab_size = get32(h + 16),
        .n_docs = get32(h + 20), .n_tokens = get64(h + 24), .payload_len = get64(h + 32),
    };
    unsigned width = flags & QW_TOKENS_IDS32 ? 4 : 2;
    int masked = !!(flags & QW_TOKENS_MASK);
    if (f.vocab_size == 0) return bad(r, at, "vocabulary size 0");
    if (f.vocab_size > 0x80000000u)   /* ids are handed out as int32 */
        return bad(r, at, "vocabulary size %u is more than 2^31", f.vocab_size);
    if (width == 2 && f.vocab_size > 65536) return bad(r, at, "vocabulary size %u with 2-byte ids", f.vocab_size);
    if (f.n_tokens > QW_TOKENS_MAX_PAYLOAD ||
        4ull * f.n_docs + width * f.n_tokens + (masked ? mask_bytes(f.n_tokens) : 0) > QW_TOKENS_MAX_PAYLOAD)
        return bad(r, at, "frame too large (%u documents, %llu tokens)", f.n_docs, (unsigned long long)f.n_tokens);
    uint64_t raw_len = 4ull * f.n_docs + width * f.n_tokens + (masked ? mask_bytes(f.n_tokens) : 0);
    if (flags & QW_TOKENS_ZSTD ? f.payload_len > ZSTD_compressBound(raw_len) : f.payload_len != raw_len)
        return bad(r, at, "payload length %llu does not fit %u documents of %llu tokens",
                   (unsigned long long)f.payload_len, f.n_docs, (unsigned long long)f.n_tokens);
    if (r->expect && f.identity != r->identity)
        return bad(r, at, "tokenizer identity %016llx, expected %016llx (a stream from another tokenizer)",
                   (unsigned long long)f.identity, (unsigned long long)r->identity);
    if ((rc = read_payload(r, at, f.payload_len))) return rc;
    if (get32(h + 40) != qw_crc32c(0, r->stored.p, r->stored.n)) return bad(r, at, "bad payload checksum");

    const unsigned char *raw = (const unsigned char *)r->stored.p;
    if (flags & QW_TOKENS_ZSTD) {
        if (!r->dctx && !(r->dctx = ZSTD_createDCtx())) return qw_error(QW_EXIT_FAIL, "out of memory (zstd)");
        if (ZSTD_findFrameCompressedSize(r->stored.p, r->stored.n) != r->stored.n ||
            ZSTD_getFrameContentSize(r->stored.p, r->stored.n) != raw_len)
            return bad(r, at, "bad zstd payload (not one frame of %llu bytes)", (unsigned long long)raw_len);
        r->raw.n = 0;
        qw_buf_reserve(&r->raw, raw_len);
        size_t n = ZSTD_decompressDCtx(r->dctx, r->raw.p, raw_len, r->stored.p, r->stored.n);
        if (ZSTD_isError(n)) return bad(r, at, "bad zstd payload: %s", ZSTD_getErrorName(n));
        if (n != raw_len) return bad(r, at, "bad zstd payload (%zu bytes, expected %llu)", n, (unsigned long long)raw_len);
        raw = (const unsigned char *)r->raw.p;
    }
    if (f.n_docs > r->lens_cap) {
        r->lens_cap = f.n_docs;
        r->lens = qw_realloc(r->lens, r->lens_cap * sizeof *r->lens);
    }
    if (f.n_tokens > r->ids_cap) {
        r->ids_cap = f.n_tokens;
        r->ids = qw_realloc(r->ids, r->ids_cap * sizeof *r->ids);
        r->mask = qw_realloc(r->mask, r->ids_cap);
    }
    uint64_t sum = 0;
    for (uint32_t i = 0; i < f.n_docs; i++) sum += r->lens[i] = get32(raw + 4ull * i);
    if (sum != f.n_tokens)
        return bad(r, at, "document lengths sum to %llu, header says %llu tokens", (unsigned long long)sum,
                   (unsigned long long)f.n_tokens);
    for (uint64_t i = 0; i < f.n_tokens; i++) {   /* (raw is NULL when the frame is empty) */
        const unsigned char *p = raw + 4ull * f.n_docs + width * i;
        uint32_t id = width == 4 ? get32(p) : get16(p);
        if (id >= f.vocab_size)
            return bad(r, at, "token id %u out of range (vocabulary %u)", id, f.vocab_size);
        r->ids[i] = (int32_t)id;
    }
    if (masked && f.n_tokens) {
        const unsigned char *bits = raw + 4ull * f.n_docs + (uint64_t)width * f.n_tokens;
        for (uint64_t i = 0; i < f.n_tokens; i++) r->mask[i] = (bits[i / 8] >> (i % 8)) & 1;
        if (f.n_tokens % 8 && bits[f.n_tokens / 8] >> (f.n_tokens % 8))
            return bad(r, at, "loss-mask bits past the last token are not zero");
    }
    f.doc_len = r->lens;
    f.ids = r->ids;
    f.mask = masked ? (r->mask ? r->mask : (const uint8_t *)"") : NULL;
    r->off += QW_TOKENS_HEADER_SIZE + f.payload_len;
    r->index++;
    *fr = f;
    *got = 1;
    return 0;
}

int qw_tokens_read_doc(qw_tokens_reader *r, const int32_t **ids, const uint8_t **mask, size_t *n, int *got)
{
    *got = 0;
    while (!r->have || r->doc == r->cur.n_docs) {
        int rc = qw_tokens_read_frame(r, &r->cur, got);
        if (rc || !*got) return rc;
        r->have = 1;
        r->doc = 0;
        r->pos = 0;
    }
    *ids = r->cur.ids ? r->cur.ids + r->pos : NULL;   /* NULL: a frame whose documents are all empty */
    if (mask) *mask = r->cur.mask ? r->cur.mask + r->pos : NULL;
    *n = r->cur.doc_len[r->doc];
    r->pos += *n;
    r->doc++;
    *got = 1;
    return 0;
}

void qw_tokens_reader_free(qw_tokens_reader *r)
{
    if (!r) return;
    qw_buf_free(&r->stored);
    qw_buf_free(&r->raw);
    free(r->lens);
    free(r->ids);
    free(r->mask);
    ZSTD_freeDCtx(r->dctx);
    free(r);
}

/* ---- inspector ---- */

int qw_tokens_describe(FILE *f, const char *name, FILE *out)
{
    enum { MAX_IDS = 8 };
    struct ident { uint64_t identity; uint32_t vocab; } idents[MAX_IDS];
    int n_idents = 0, more_idents = 0;
    uint64_t docs = 0, tokens = 0, stored = 0, raw = 0, zframes = 0, wide = 0, mframes = 0, mtokens = 0, targets = 0;
    uint64_t dmin = UINT64_MAX, dmax = 0;
    qw_tokens_reader *r = qw_tokens_reader_new(f, name);
    qw_tokens_frame fr;
    int rc, got;
    while (!(rc = qw_tokens_read_frame(r, &fr, &got)) && got) {
        int seen = 0;
        for (int i = 0; i < n_idents; i++) seen |= idents[i].identity == fr.identity && idents[i].vocab == fr.vocab_size;
        if (!seen && n_idents < MAX_IDS) idents[n_idents++] = (struct ident){fr.identity, fr.vocab_size};
        else if (!seen) more_idents = 1;
        docs += fr.n_docs;
        tokens += fr.n_tokens;
        stored += fr.payload_len;
        raw += 4ull * fr.n_docs + (fr.flags & QW_TOKENS_IDS32 ? 4 : 2) * fr.n_tokens +
               (fr.mask ? mask_bytes(fr.n_tokens) : 0);
        if (fr.mask) {
            mframes++;
            mtokens += fr.n_tokens;
            for (uint64_t i = 0; i < fr.n_tokens; i++) targets += fr.mask[i];
        }
        zframes += !!(fr.flags & QW_TOKENS_ZSTD);
        wide += !!(fr.flags & QW_TOKENS_IDS32);
        for (uint32_t i = 0; i < fr.n_docs; i++) {
            if (fr.doc_len[i] < dmin) dmin = fr.doc_len[i];
            if (fr.doc_len[i] > dmax) dmax = fr.doc_len[i];
        }
    }
    long frames = r->index;
    uint64_t bytes = qw_tokens_reader_offset(r);
    qw_tokens_reader_free(r);
    if (rc) return rc;
    fprintf(out, "file: %s\nbytes: %llu\nframes: %ld\ndocuments: %llu\ntokens: %llu\n", name,
            (unsigned long long)bytes, frames, (unsigned long long)docs, (unsigned long long)tokens);
    fputs("identity:", out);
    for (int i = 0; i < n_idents; i++)
        fprintf(out, "%s %016llx (vocabulary %u)", i ? "," : "", (unsigned long long)idents[i].identity, idents[i].vocab);
    fprintf(out, "%s%s\n", more_idents ? ", …" : "", n_idents ? "" : " none");
    fprintf(out, "ids: %s\n", !frames ? "none" : wide == (uint64_t)frames ? "32-bit" : wide ? "mixed" : "16-bit");
    if (!mframes) fputs("loss mask: none\n", out);
    else
        fprintf(out, "loss mask: %s, %llu of %llu tokens are targets\n", mframes == (uint64_t)frames ? "yes" : "mixed",
                (unsigned long long)targets, (unsigned long long)mtokens);
    if (!zframes) fputs("compression: none\n", out);
    else
        fprintf(out, "compression: %s, payload %llu bytes stored, %llu raw\n", zframes == (uint64_t)frames ? "zstd" : "mixed",
                (unsigned long long)stored, (unsigned long long)raw);
    if (docs)
        fprintf(out, "tokens per document: min %llu, mean %.1f, max %llu\n", (unsigned long long)dmin,
                (double)tokens / (double)docs, (unsigned long long)dmax);
    return 0;
}
