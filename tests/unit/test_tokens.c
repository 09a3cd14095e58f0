/* test_tokens.c — qw-tokens(5) frames: round trips (2- and 4-byte ids, zstd),
 * concatenation, and the reader's checks: every corrupted byte and every
 * truncation of a stream is an error, never a crash or a silent success. */
#include "qwtest.h"
#include "qw/cli.h"
#include "qw/hash.h"
#include "qw/tokens.h"

#include <stdint.h>

/* Deterministic documents: doc d has (d * 7) % 23 tokens (some empty). */
static size_t doc_len(int d) { return (size_t)(d * 7) % 23; }
static int32_t doc_id(int d, size_t i, uint32_t vocab) { return (int32_t)((d * 1000003u + i * 7919u) % vocab); }

typedef struct {
    char *p;
    size_t n;
} mem;

static mem write_stream(int ndocs, uint32_t vocab, uint64_t identity, int zstd, uint64_t frame_tokens)
{
    mem m = {0};
    FILE *f = open_memstream(&m.p, &m.n);
    qw_tokens_writer_opts o = {identity, vocab, zstd, frame_tokens, 0};
    qw_tokens_writer *w = qw_tokens_writer_new(f, "mem", &o);
    int32_t ids[32];
    for (int d = 0; d < ndocs; d++) {
        for (size_t i = 0; i < doc_len(d); i++) ids[i] = doc_id(d, i, vocab);
        CHECK(qw_tokens_write_doc(w, ids, NULL, doc_len(d)) == 0);
    }
    CHECK(qw_tokens_writer_flush(w) == 0);
    qw_tokens_writer_free(w);
    fclose(f);
    return m;
}

/* Read every document of a stream in memory; returns the reader's final
 * status (0 at a clean end) and the number of documents through *ndocs. */
static int read_all(const char *p, size_t n, int *ndocs, const uint64_t *expect)
{
    FILE *f = fmemopen((void *)p, n, "rb");
    qw_tokens_reader *r = qw_tokens_reader_new(f, "s.qwt");
    if (expect) qw_tokens_reader_expect(r, *expect);
    const int32_t *ids;
    size_t len;
    int rc, got;
    *ndocs = 0;
    while (!(rc = qw_tokens_read_doc(r, &ids, NULL, &len, &got)) && got) (*ndocs)++;
    qw_tokens_reader_free(r);
    fclose(f);
    return rc;
}

/* The documents of `m`, starting at document `first`, are the generated ones. */
static int check_docs(mem m, int first, int ndocs, uint32_t vocab)
{
    FILE *f = fmemopen(m.p, m.n, "rb");
    qw_tokens_reader *r = qw_tokens_reader_new(f, "s.qwt");
    const int32_t *ids;
    size_t len;
    int ok = 1, d = first, got;
    while (!qw_tokens_read_doc(r, &ids, NULL, &len, &got) && got) {
        int same = len == doc_len(d % ndocs);
        for (size_t i = 0; same && i < len; i++) same = ids[i] == doc_id(d % ndocs, i, vocab);
        ok &= same;
        d++;
    }
    ok &= qw_error_status() == 0;   /* a round trip ends at the end of the stream, never in an error */
    qw_tokens_reader_free(r);
    fclose(f);
    return ok ? d - first : -1;
}

TEST(round_trip_widths_and_compression)
{
    uint32_t vocabs[] = {1000, 65536, 65537, 151669};
    for (int v = 0; v < 4; v++)
        for (int z = 0; z <= 3; z += 3) {
            qw_error_clear();
            mem m = write_stream(200, vocabs[v], 0x1234, z, 100);
            CHECK_MSG(check_docs(m, 0, 200, vocabs[v]) == 200, "vocab %u zstd %d", vocabs[v], z);
            unsigned char flags = (unsigned char)m.p[5];
            CHECK(!!(flags & QW_TOKENS_IDS32) == (vocabs[v] > 65536));
            CHECK(!!(flags & QW_TOKENS_ZSTD) == (z > 0));
            free(m.p);
        }
}

TEST(frames_close_at_frame_tokens)
{
    mem m = write_stream(200, 1000, 7, 0, 100);
    FILE *f = fmemopen(m.p, m.n, "rb");
    qw_tokens_reader *r = qw_tokens_reader_new(f, "s.qwt");
    qw_tokens_frame fr;
    long frames = 0;
    uint64_t docs = 0, offset = 0;
    int got;
    while (!qw_tokens_read_frame(r, &fr, &got) && got) {
        CHECK(fr.index == frames);
        CHECK(fr.offset == offset);
        CHECK(fr.identity == 7 && fr.vocab_size == 1000);
        CHECK(fr.n_tokens + fr.n_docs >= 100 || docs + fr.n_docs == 200);
        CHECK(fr.n_tokens + fr.n_docs < 100 + 23);
        offset += QW_TOKENS_HEADER_SIZE + fr.payload_len;
        docs += fr.n_docs;
        frames++;
    }
    CHECK(qw_error_status() == 0);
    CHECK(docs == 200 && frames > 10);
    CHECK(offset == m.n && qw_tokens_reader_offset(r) == m.n);
    qw_tokens_reader_free(r);
    fclose(f);
    free(m.p);
}

TEST(concatenated_streams_are_a_stream)
{
    mem a = write_stream(50, 1000, 1, 0, 64), b = write_stream(50, 1000, 1, 5, 1 << 20);
    mem c = {malloc(a.n + b.n), a.n + b.n};
    memcpy(c.p, a.p, a.n);
    memcpy(c.p + a.n, b.p, b.n);
    qw_error_clear();
    CHECK(check_docs(c, 0, 50, 1000) == 100);
    int n;
    CHECK(read_all(c.p, c.n, &n, NULL) == 0 && n == 100);
    free(a.p);
    free(b.p);
    free(c.p);
}

TEST(empty_stream_has_no_documents)
{
    int n = -1;
    CHECK(read_all("", 0, &n, NULL) == 0 && n == 0);
}

/* Flip every byte of a small two-frame stream, in several ways, and cut it
 * at every length: each must end in QW_EXIT_DATA, never in success. */
static void corrupt_everywhere(int zstd)
{
    mem m = write_stream(6, 151669, 99, zstd, 20);
    int n0;
    CHECK(read_all(m.p, m.n, &n0, NULL) == 0 && n0 == 6);
    static const unsigned char flips[] = {0x01, 0x80, 0xff};
    int undetected = 0;
    for (size_t i = 0; i < m.n; i++)
        for (int k = 0; k < 3; k++) {
            m.p[i] ^= flips[k];
            int n;
            qw_error_clear();
            int rc = read_all(m.p, m.n, &n, NULL);
            if (rc != QW_EXIT_DATA) {
                undetected++;
                fprintf(stderr, "  byte %zu ^ %02x: status %d\n", i, flips[k], rc);
            }
            m.p[i] ^= flips[k];
        }
    CHECK(undetected == 0);
    int bad_cuts = 0;
    for (size_t len = 1; len < m.n; len++) {
        int n;
        int rc = read_all(m.p, len, &n, NULL);
        /* a cut exactly between frames is a valid shorter stream */
        int boundary = rc == 0 && n < 6;
        if (rc != QW_EXIT_DATA && !boundary) bad_cuts++;
    }
    CHECK(bad_cuts == 0);
    free(m.p);
}

TEST(every_corruption_is_detected) { corrupt_everywhere(0); }
TEST(every_corruption_is_detected_zstd) { corrupt_everywhere(3); }

/* A hand-made frame with correct checksums, to reach the checks behind them. */
static mem forge(uint32_t vocab, uint32_t ndocs, const uint32_t *lens, uint64_t ntok, const uint32_t *ids,
                 unsigned version, unsigned flags)
{
    mem m = {calloc(1, 48 + 4 * ndocs + 4 * ntok), 48 + 4 * ndocs + 4 * ntok};
    unsigned char *h = (unsigned char *)m.p;
    memcpy(h, "QWTK", 4);
    h[4] = (unsigned char)version;
    h[5] = (unsigned char)flags;
    memcpy(h + 16, &vocab, 4);
    memcpy(h + 20, &ndocs, 4);
    memcpy(h + 24, &ntok, 8);
    uint64_t plen = m.n - 48;
    memcpy(h + 32, &plen, 8);
    memcpy(h + 48, lens, 4 * ndocs);
    memcpy(h + 48 + 4 * ndocs, ids, 4 * ntok);
    uint32_t c = qw_crc32c(0, h + 48, plen);
    memcpy(h + 40, &c, 4);
    c = qw_crc32c(0, h, 44);
    memcpy(h + 44, &c, 4);
    return m;
}

static int expect_error(mem m, const char *fragment)
{
    int n;
    qw_error_clear();
    int rc = read_all(m.p, m.n, &n, NULL);
    int ok = rc == QW_EXIT_DATA && strstr(qw_error_msg(), fragment) && strstr(qw_error_msg(), "'s.qwt': frame 0 at byte 0: ");
    if (!ok) fprintf(stderr, "  status %d, message '%s', expected '%s'\n", rc, qw_error_msg(), fragment);
    free(m.p);
    return ok;
}

TEST(forged_frames_fail_validation)
{
    uint32_t lens[2] = {1, 2}, ids[3] = {5, 6, 7}, badlens[2] = {1, 1}, bigid[3] = {5, 6, 70000};
    mem ok = forge(100000, 2, lens, 3, ids, 1, QW_TOKENS_IDS32);
    int n;
    CHECK(read_all(ok.p, ok.n, &n, NULL) == 0 && n == 2);
    free(ok.p);
    CHECK(expect_error(forge(100000, 2, lens, 3, ids, 3, QW_TOKENS_IDS32), "unknown version 3"));
    CHECK(expect_error(forge(100000, 2, lens, 3, ids, 1, QW_TOKENS_IDS32 | 8), "unknown flags 0x0a"));
    /* the mask flag exists from version 2 on */
    CHECK(expect_error(forge(100000, 2, lens, 3, ids, 1, QW_TOKENS_IDS32 | QW_TOKENS_MASK), "unknown flags 0x06"));
    CHECK(expect_error(forge(100000, 2, lens, 3, ids, 2, QW_TOKENS_IDS32 | 8), "unknown flags 0x0a"));
    CHECK(expect_error(forge(100000, 2, badlens, 3, ids, 1, QW_TOKENS_IDS32), "document lengths sum to 2"));
    CHECK(expect_error(forge(65536, 2, lens, 3, bigid, 1, QW_TOKENS_IDS32), "token id 70000 out of range"));
    CHECK(expect_error(forge(100000, 2, lens, 3, ids, 1, 0), "vocabulary size 100000 with 2-byte ids"));
    CHECK(expect_error(forge(0, 2, lens, 3, ids, 1, QW_TOKENS_IDS32), "vocabulary size 0"));
    /* ids above 2^31 came out of the reader negative (found by fuzzing) */
    uint32_t hugeid[3] = {5, 6, 0x9f000000u};
    CHECK(expect_error(forge(0xfffffffdu, 2, lens, 3, hugeid, 1, QW_TOKENS_IDS32), "vocabulary size 4294967293 is more than 2^31"));
    CHECK(expect_error(forge(100000, 2, lens, 3, ids, 1, QW_TOKENS_IDS32 | QW_TOKENS_ZSTD), "bad zstd payload"));
}

/* Loss masks: version-2 frames with a bit per token, read back exactly;
 * streams without masks stay version 1 (what older readers accept). */
static void masked_round_trip(int zstd)
{
    mem m = {0};
    FILE *f = open_memstream(&m.p, &m.n);
    qw_tokens_writer_opts o = {7, 1000, zstd, 40, 1};
    qw_tokens_writer *w = qw_tokens_writer_new(f, "mem", &o);
    int32_t ids[32];
    uint8_t mask[32];
    for (int d = 0; d < 30; d++) {
        for (size_t i = 0; i < doc_len(d); i++) {
            ids[i] = doc_id(d, i, 1000);
            mask[i] = (uint8_t)((i * 7 + (size_t)d) % 3 == 0);
        }
        CHECK(qw_tokens_write_doc(w, ids, mask, doc_len(d)) == 0);
    }
    CHECK(qw_tokens_write_doc(w, ids, NULL, 2) == QW_EXIT_USAGE);
    qw_error_clear();
    CHECK(qw_tokens_writer_flush(w) == 0);
    qw_tokens_writer_free(w);
    fclose(f);
    f = fmemopen(m.p, m.n, "rb");
    qw_tokens_reader *r = qw_tokens_reader_new(f, "s.qwt");
    const int32_t *rid;
    const uint8_t *rmask;
    size_t len;
    int got, d = 0, ok = 1;
    while (!qw_tokens_read_doc(r, &rid, &rmask, &len, &got) && got) {
        ok &= rmask != NULL && len == doc_len(d);
        for (size_t i = 0; ok && i < len; i++)
            ok &= rid[i] == doc_id(d, i, 1000) && rmask[i] == ((i * 7 + (size_t)d) % 3 == 0);
        d++;
    }
    CHECK(ok && d == 30 && qw_error_status() == 0);
    qw_tokens_reader_free(r);
    fclose(f);
    CHECK(m.p[4] == QW_TOKENS_VERSION_MASK && (m.p[5] & QW_TOKENS_MASK));
    /* a set bit past the last token is bad data */
    if (!zstd) {
        uint32_t lens[1] = {3}, tok3[3] = {5, 6, 7};
        mem g = forge(100000, 1, lens, 3, tok3, 2, QW_TOKENS_IDS32 | QW_TOKENS_MASK);
        g.p = realloc(g.p, g.n + 1);
        g.p[g.n++] = (char)0x0d;   /* tokens 0 and 2, and a stray bit 3 */
        unsigned char *h = (unsigned char *)g.p;
        uint64_t plen = g.n - 48;
        memcpy(h + 32, &plen, 8);
        uint32_t c = qw_crc32c(0, h + 48, plen);
        memcpy(h + 40, &c, 4);
        c = qw_crc32c(0, h, 44);
        memcpy(h + 44, &c, 4);
        CHECK(expect_error(g, "loss-mask bits past the last token are not zero"));
    }
    free(m.p);
    mem plain = write_stream(3, 1000, 7, zstd, 0);
    CHECK(plain.p[4] == QW_TOKENS_VERSION);
    free(plain.p);
}

TEST(masks_round_trip) { masked_round_trip(0); }
TEST(masks_round_trip_zstd) { masked_round_trip(3); }

TEST(messages_name_the_frame)
{
    mem m = write_stream(40, 1000, 5, 0, 50);
    FILE *f = fmemopen(m.p, m.n, "rb");
    qw_tokens_reader *r = qw_tokens_reader_new(f, "s.qwt");
    qw_tokens_frame fr;
    int got;
    CHECK(qw_tokens_read_frame(r, &fr, &got) == 0 && got);
    uint64_t second = fr.offset + QW_TOKENS_HEADER_SIZE + fr.payload_len;
    qw_tokens_reader_free(r);
    fclose(f);

    char want[128];
    m.p[second + QW_TOKENS_HEADER_SIZE + 3] ^= 1;
    int n;
    CHECK(read_all(m.p, m.n, &n, NULL) == QW_EXIT_DATA);
    snprintf(want, sizeof want, "'s.qwt': frame 1 at byte %llu: bad payload checksum", (unsigned long long)second);
    CHECK_STR(qw_error_msg(), want);
    m.p[second + QW_TOKENS_HEADER_SIZE + 3] ^= 1;

    m.p[second + 9] ^= 1;
    CHECK(read_all(m.p, m.n, &n, NULL) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "frame 1") && strstr(qw_error_msg(), "bad header checksum"));
    m.p[second + 9] ^= 1;

    m.p[second] = 'X';
    CHECK(read_all(m.p, m.n, &n, NULL) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "frame 1") && strstr(qw_error_msg(), "bad magic"));
    m.p[second] = 'Q';

    CHECK(read_all(m.p, second + 20, &n, NULL) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "truncated header (20 of 48 bytes)"));
    CHECK(read_all(m.p, second + 50, &n, NULL) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "truncated payload (2 of"));
    free(m.p);
}

TEST(identity_is_checked_when_expected)
{
    mem m = write_stream(10, 1000, 0xabcdef, 0, 0);
    uint64_t good = 0xabcdef, other = 0x1111;
    int n;
    CHECK(read_all(m.p, m.n, &n, &good) == 0 && n == 10);
    CHECK(read_all(m.p, m.n, &n, &other) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "tokenizer identity 0000000000abcdef, expected 0000000000001111"));
    free(m.p);
}

TEST(writer_refuses_ids_out_of_range)
{
    mem m = {0};
    FILE *f = open_memstream(&m.p, &m.n);
    qw_tokens_writer_opts o = {1, 10, 0, 0, 0};
    qw_tokens_writer *w = qw_tokens_writer_new(f, "out.qwt", &o);
    int32_t ids[] = {1, 10};
    CHECK(qw_tokens_write_doc(w, ids, NULL, 2) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "token id 10 out of range (vocabulary 10)"));
    ids[1] = -1;
    CHECK(qw_tokens_write_doc(w, ids, NULL, 2) == QW_EXIT_DATA);
    qw_tokens_writer_free(w);
    fclose(f);
    free(m.p);
}

TEST(describe_summarises)
{
    mem a = write_stream(30, 151669, 0x42, 3, 100), b = write_stream(5, 500, 0x43, 0, 0);
    mem c = {malloc(a.n + b.n), a.n + b.n};
    memcpy(c.p, a.p, a.n);
    memcpy(c.p + a.n, b.p, b.n);
    FILE *f = fmemopen(c.p, c.n, "rb");
    char *text = NULL;
    size_t tn = 0;
    FILE *out = open_memstream(&text, &tn);
    CHECK(qw_tokens_describe(f, "c.qwt", out) == 0);
    fclose(out);
    fclose(f);
    uint64_t tokens = 0, frames = 0;
    for (int d = 0; d < 30; d++) tokens += doc_len(d);
    for (int d = 0; d < 5; d++) tokens += doc_len(d);
    FILE *fa = fmemopen(a.p, a.n, "rb");
    qw_tokens_reader *r = qw_tokens_reader_new(fa, "a");
    qw_tokens_frame fr;
    int got;
    while (!qw_tokens_read_frame(r, &fr, &got) && got) frames++;
    qw_tokens_reader_free(r);
    fclose(fa);
    char want[256];
    snprintf(want, sizeof want, "file: c.qwt\nbytes: %zu\nframes: %llu\ndocuments: 35\ntokens: %llu\n", c.n,
             (unsigned long long)frames + 1, (unsigned long long)tokens);
    CHECK_MSG(!strncmp(text, want, strlen(want)), "%s", text);
    CHECK(strstr(text, "identity: 0000000000000042 (vocabulary 151669), 0000000000000043 (vocabulary 500)\n"));
    CHECK(strstr(text, "ids: mixed\n"));
    CHECK(strstr(text, "compression: mixed, payload "));
    CHECK(strstr(text, "tokens per document: min 0, mean "));
    free(text);
    free(a.p);
    free(b.p);
    free(c.p);
}

int main(void)
{
    PLAN(13);
    RUN(round_trip_widths_and_compression);
    RUN(frames_close_at_frame_tokens);
    RUN(concatenated_streams_are_a_stream);
    RUN(empty_stream_has_no_documents);
    RUN(every_corruption_is_detected);
    RUN(every_corruption_is_detected_zstd);
    RUN(forged_frames_fail_validation);
    RUN(masks_round_trip);
    RUN(masks_round_trip_zstd);
    RUN(messages_name_the_frame);
    RUN(identity_is_checked_when_expected);
    RUN(writer_refuses_ids_out_of_range);
    RUN(describe_summarises);
    return qwtest_finish();
}
