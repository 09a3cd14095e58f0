/* fuzz_tokens.c — qw-tokens(5) streams (libcore/tokens.c), read as the
 * programs read them: frame by frame into documents (qw-pack), document by
 * document and decoded (qw-tokenize --decode), and summarised
 * (qw-tokenize --inspect). */
#include "fuzz.h"

#include "qw/pack.h"
#include "qw/tokens.h"

#define NAME "fuzz.qwt"

/* qw-pack: frames, the identity fixed by the first, documents collected. */
static void read_frames(const uint8_t *data, size_t size)
{
    FILE *f = fz_memfile(data, size);
    qw_tokens_reader *r = qw_tokens_reader_new(f, NAME);
    qw_tokens_frame fr;
    qw_docs docs = {0};
    int st, got, known = 0;
    while (!(st = qw_tokens_read_frame(r, &fr, &got)) && got) {
        if (!known) qw_tokens_reader_expect(r, fr.identity), known = 1;
        const int32_t *ids = fr.ids;
        uint64_t sum = 0;
        for (uint32_t k = 0; k < fr.n_docs; k++) {
            if (fr.doc_len[k] && docs.tokens.n < (1u << 22)) fz_expect(qw_docs_add(&docs, ids, fr.doc_len[k], NULL), 0, NULL);
            for (uint32_t i = 0; i < fr.doc_len[k]; i++)
                if (ids[i] < 0 || (uint32_t)ids[i] >= fr.vocab_size) fz_fatal("an id outside the frame's vocabulary", 0);
            if (fr.doc_len[k]) ids += fr.doc_len[k];   /* ids is NULL in a frame without tokens */
            sum += fr.doc_len[k];
        }
        if (sum != fr.n_tokens) fz_fatal("document lengths do not sum to the frame's tokens", 0);
    }
    fz_expect(st, FZ_DATA, NAME);
    qw_docs_free(&docs);
    qw_tokens_reader_free(r);
    fclose(f);
}

/* qw-tokenize --decode (without --tokenizer's identity check, so that
 * decoding is reached): documents across frames, decoded. */
static void read_docs(const uint8_t *data, size_t size)
{
    FILE *f = fz_memfile(data, size);
    qw_tokens_reader *r = qw_tokens_reader_new(f, NAME);
    qw_buf text = {0};
    const int32_t *ids;
    const uint8_t *mask;
    size_t n;
    int st, got, docs = 0;
    while (!(st = qw_tokens_read_doc(r, &ids, &mask, &n, &got)) && got && docs++ < FZ_MAX_ITEMS) {
        for (size_t i = 0; mask && i < n; i++)
            if (mask[i] > 1) fz_fatal("a loss mask that is not 0/1", 0);
        text.n = 0;
        fz_expect(qw_tok_decode(fz_tokenizer(), ids, n, docs & 1, &text), FZ_DATA, NULL);
    }
    fz_expect(st, FZ_DATA, NAME);
    qw_buf_free(&text);
    qw_tokens_reader_free(r);
    fclose(f);
}

/* qw-tokenize --inspect. */
static int describe(const uint8_t *data, size_t size)
{
    FILE *f = fz_memfile(data, size), *out = fopen("/dev/null", "w");
    int st = qw_tokens_describe(f, NAME, out);
    fz_expect(st, FZ_DATA, NAME);
    fclose(out);
    fclose(f);
    return st;
}

/* Recompute every frame's checksums in place: a header whose magic is
 * right gets the payload CRC of the bytes it claims, then its own CRC. */
static void fix_checksums(uint8_t *p, size_t size)
{
    size_t off = 0;
    while (size - off >= QW_TOKENS_HEADER_SIZE && !memcmp(p + off, QW_TOKENS_MAGIC, 4)) {
        unsigned char *h = p + off;
        uint64_t len = fz_get64(h + 32), rest = size - off - QW_TOKENS_HEADER_SIZE;
        if (len > rest) len = rest;
        fz_put32(h + 40, qw_crc32c(0, h + QW_TOKENS_HEADER_SIZE, (size_t)len));
        fz_put32(h + 44, qw_crc32c(0, h, 44));
        off += QW_TOKENS_HEADER_SIZE + (size_t)len;
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_tokenizer();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    read_frames(data, size);
    read_docs(data, size);
    if (describe(data, size) && strstr(qw_error_msg(), "checksum")) {
        uint8_t *copy = qw_malloc(size);
        memcpy(copy, data, size);
        fix_checksums(copy, size);
        read_frames(copy, size);
        read_docs(copy, size);
        describe(copy, size);
        free(copy);
    }
    return 0;
}
