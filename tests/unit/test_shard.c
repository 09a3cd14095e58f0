/* test_shard.c — packed shards (qw/shard.h) and packing (qw/pack.h):
 * round trips, random access, corruption, dataset checks, packing laws. */
#include "qwtest.h"
#include "qw/cli.h"
#include "qw/hash.h"
#include "qw/pack.h"
#include "qw/shard.h"

#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static const char *tpath(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static uint64_t rng_state = 1;
static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33) % n;
}

/* A random row: segments, padding, mask. */
static void make_row(qw_shard_row *row, uint32_t L, uint32_t vocab, uint32_t pad)
{
    row->n_valid = 1 + rnd(L);
    row->n_segs = 1;
    row->starts[0] = 0;
    for (uint32_t i = 1; i < row->n_valid; i++)
        if (rnd(5) == 0) row->starts[row->n_segs++] = i;
    for (uint32_t i = 0; i < L; i++) {
        row->tokens[i] = i < row->n_valid ? (int32_t)rnd(vocab) : (int32_t)pad;
        row->mask[i] = rnd(3) != 0;
    }
}

typedef struct {
    int32_t tokens[64];
    uint32_t starts[64];
    uint8_t mask[64];
    qw_shard_row row;
} row_store;

static void store_init(row_store *s) { s->row = (qw_shard_row){s->tokens, s->starts, 0, 0, s->mask, NULL}; }

static int write_shard(const char *path, uint32_t L, uint32_t vocab, int has_mask, int zstd, uint32_t per_block,
                       row_store *rows, int n, uint64_t identity)
{
    qw_shard_params p = {L, vocab, identity, 3, has_mask, zstd, per_block};
    qw_shard_writer *w;
    int st = qw_shard_writer_open(path, &p, &w);
    for (int i = 0; i < n && !st; i++) st = qw_shard_writer_add(w, &rows[i].row);
    return st ? st : qw_shard_writer_close(w);
}

static int rows_equal(const qw_shard_row *a, const qw_shard_row *b, uint32_t L, int masks)
{
    if (a->n_valid != b->n_valid || a->n_segs != b->n_segs) return 0;
    if (memcmp(a->starts, b->starts, a->n_segs * sizeof *a->starts)) return 0;
    if (memcmp(a->tokens, b->tokens, L * sizeof *a->tokens)) return 0;
    for (uint32_t i = 0; i < L; i++)
        if (b->mask[i] != (i >= a->n_valid ? 0 : masks ? a->mask[i] : 1)) return 0;
    return 1;
}

TEST(round_trip_random_access)
{
    enum { N = 37, L = 33 };
    static row_store rows[N];
    uint32_t vocabs[2] = {1000, 100000};
    for (int v = 0; v < 2; v++)
        for (int masks = 0; masks < 2; masks++)
            for (int z = 0; z < 2; z++) {
                for (int i = 0; i < N; i++) {
                    store_init(&rows[i]);
                    make_row(&rows[i].row, L, vocabs[v], 3);
                }
                const char *path = tpath("rt.qwp");
                CHECK(write_shard(path, L, vocabs[v], masks, z ? 3 : 0, 4, rows, N, 0xabcdef) == 0);
                CHECK(access(tpath("rt.qwp.tmp"), F_OK) != 0);
                qw_shard *s;
                CHECK(qw_shard_open(path, &s) == 0);
                if (!s) continue;
                const qw_shard_header *h = qw_shard_info(s);
                CHECK(h->n_rows == N && h->row_len == L && h->identity == 0xabcdef && h->rows_per_block == 4);
                CHECK(h->token_width == (v ? 4u : 2u));
                CHECK(h->flags == ((masks ? QW_SHARD_MASK : 0) | (z ? QW_SHARD_ZSTD : 0)));
                row_store got;
                store_init(&got);
                for (int k = 0; k < 3 * N; k++) {
                    int r = k < N ? N - 1 - k : (int)rnd(N);
                    CHECK(qw_shard_read_row(s, r, &got.row) == 0);
                    CHECK_MSG(rows_equal(&rows[r].row, &got.row, L, masks), "row %d v%d m%d z%d", r, v, masks, z);
                }
                CHECK(qw_shard_read_row(s, N, &got.row) == QW_EXIT_USAGE);
                qw_shard_close(s);
            }
}

TEST(trainer_view)
{
    /* 10 tokens: doc A [0,4), doc B [4,7), padding [7,10); mask off at 5. */
    int32_t tok[10] = {5, 6, 7, 8, 9, 10, 11, 0, 0, 0};
    uint32_t starts[2] = {0, 4};
    uint8_t mask[10] = {1, 1, 1, 1, 1, 0, 1, 1, 1, 1};
    qw_shard_row row = {tok, starts, 2, 7, mask, NULL};
    int32_t seg[10], pos[10];
    uint8_t loss[10];
    qw_shard_row_view(&row, 10, seg, pos, loss);
    int32_t want_seg[10] = {1, 1, 1, 1, 2, 2, 2, 0, 0, 0}, want_pos[10] = {0, 1, 2, 3, 0, 1, 2, 0, 0, 0};
    uint8_t want_loss[10] = {0, 1, 1, 1, 0, 0, 1, 0, 0, 0};
    CHECK(!memcmp(seg, want_seg, sizeof seg));
    CHECK(!memcmp(pos, want_pos, sizeof pos));
    CHECK(!memcmp(loss, want_loss, sizeof loss));
}

TEST(writer_rejects_bad_rows)
{
    row_store r;
    store_init(&r);
    make_row(&r.row, 16, 50, 3);
    qw_shard_params p = {16, 50, 0, 3, 0, 0, 0};
    qw_shard_writer *w;
    CHECK(qw_shard_writer_open(tpath("bad.qwp"), &p, &w) == 0);
    r.row.tokens[0] = 50;
    CHECK(qw_shard_writer_add(w, &r.row) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "outside the vocabulary") != NULL);
    r.row.tokens[0] = 1;
    r.row.starts[0] = 1;
    CHECK(qw_shard_writer_add(w, &r.row) == QW_EXIT_DATA);
    qw_shard_writer_abort(w);
    CHECK(access(tpath("bad.qwp.tmp"), F_OK) != 0);
    p.pad_id = 50;
    CHECK(qw_shard_writer_open(tpath("bad.qwp"), &p, &w) == QW_EXIT_USAGE);
}

static long file_bytes(const char *path, unsigned char **out)
{
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    *out = malloc(n);
    if (fread(*out, 1, n, f) != (size_t)n) n = -1;
    fclose(f);
    return n;
}

static void put_file(const char *path, const unsigned char *p, long n)
{
    FILE *f = fopen(path, "wb");
    fwrite(p, 1, n, f);
    fclose(f);
}

/* 0 if the whole shard reads back; else the status of the first failure. */
static int read_all(const char *path)
{
    qw_shard *s;
    int st = qw_shard_open(path, &s);
    if (st) return st;
    row_store got;
    store_init(&got);
    for (uint64_t r = 0; r < qw_shard_info(s)->n_rows && !st; r++) st = qw_shard_read_row(s, r, &got.row);
    qw_shard_close(s);
    return st;
}

TEST(every_corruption_detected)
{
    enum { N = 7, L = 9 };
    row_store rows[N];
    for (int i = 0; i < N; i++) {
        store_init(&rows[i]);
        make_row(&rows[i].row, L, 300, 3);
    }
    for (int z = 0; z < 2; z++) {
        const char *good = tpath("good.qwp"), *bad = tpath("corrupt.qwp");
        CHECK(write_shard(good, L, 300, 1, z ? 5 : 0, 3, rows, N, 42) == 0);
        CHECK(read_all(good) == 0);
        unsigned char *p;
        long n = file_bytes(good, &p);
        int missed = 0;
        for (long i = 0; i < n; i++)
            for (int bit = 0; bit < 8; bit += 3) {
                p[i] ^= 1u << bit;
                put_file(bad, p, n);
                if (read_all(bad) != QW_EXIT_DATA) missed++;
                p[i] ^= 1u << bit;
            }
        CHECK_MSG(missed == 0, "%d single-bit flips went unnoticed (zstd %d)", missed, z);
        for (long k = 0; k < n; k++) {
            put_file(bad, p, k);
            if (read_all(bad) != QW_EXIT_DATA) missed++;
        }
        CHECK_MSG(missed == 0, "%d truncations went unnoticed", missed);
        unsigned char *longer = malloc(n + 1);
        memcpy(longer, p, n);
        longer[n] = 0;
        put_file(bad, longer, n + 1);
        CHECK(read_all(bad) == QW_EXIT_DATA);
        memcpy(longer, "QWPX", 4);
        put_file(bad, longer, n);
        CHECK(read_all(bad) == QW_EXIT_DATA);
        CHECK(strstr(qw_error_msg(), "bad magic") != NULL);
        free(longer);
        free(p);
    }
    CHECK(read_all(tpath("missing.qwp")) == QW_EXIT_DATA);
}

static void set32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void set64(unsigned char *p, uint64_t v) { set32(p, (uint32_t)v); set32(p + 4, (uint32_t)(v >> 32)); }

/* Headers with valid checksums whose sizes would make a reader allocate
 * without bound or index past its block table (found by tests/fuzz). */
TEST(hostile_headers_refused)
{
    unsigned char h[QW_SHARD_HEADER_SIZE];
    struct { uint32_t row_len; uint64_t n_rows; uint32_t per_block, n_blocks; uint64_t index_offset; const char *why; } cases[] = {
        {0xda000051u, 0, 1, 0, QW_SHARD_HEADER_SIZE, "row length 3657433169 is more than 16777216"},
        {9, UINT64_MAX, 2, 0, QW_SHARD_HEADER_SIZE, "block count does not match the row count"},
        {9, UINT32_MAX, 1, UINT32_MAX, QW_SHARD_HEADER_SIZE - 24ull * UINT32_MAX, "truncated file"},
    };
    for (int i = 0; i < 3; i++) {
        memset(h, 0, sizeof h);
        memcpy(h, QW_SHARD_MAGIC, 4);
        h[4] = QW_SHARD_VERSION;
        set32(h + 8, cases[i].row_len);
        set32(h + 12, 2);
        set64(h + 16, cases[i].n_rows);
        set32(h + 32, 300);
        set32(h + 40, cases[i].per_block);
        set32(h + 44, cases[i].n_blocks);
        set64(h + 48, cases[i].index_offset);
        set32(h + 56, qw_crc32c(0, "", 0));
        set32(h + 60, qw_crc32c(0, h, 60));
        put_file(tpath("hostile.qwp"), h, sizeof h);
        qw_shard *s = NULL;
        CHECK_MSG(qw_shard_open(tpath("hostile.qwp"), &s) == QW_EXIT_DATA && strstr(qw_error_msg(), cases[i].why),
                  "case %d: %s", i, qw_error_msg());
        qw_shard_close(s);
    }
    /* a writer refuses such rows up front; a rows_per_block beyond the rows
     * there are reads back (it sizes nothing) */
    qw_shard_params p = {QW_SHARD_MAX_ROW_LEN + 1, 50, 0, 3, 0, 0, 0};
    qw_shard_writer *w;
    CHECK(qw_shard_writer_open(tpath("long.qwp"), &p, &w) == QW_EXIT_USAGE);
    row_store rows[3];
    for (int i = 0; i < 3; i++) {
        store_init(&rows[i]);
        make_row(&rows[i].row, 9, 300, 3);
    }
    CHECK(write_shard(tpath("wide.qwp"), 9, 300, 1, 3, UINT32_MAX, rows, 3, 0) == 0);
    CHECK(read_all(tpath("wide.qwp")) == 0);
}

TEST(dataset_many_shards)
{
    enum { L = 17 };
    static row_store rows[3][10];
    int counts[3] = {10, 1, 6};
    const char *paths[3] = {tpath("d0.qwp"), tpath("d1.qwp"), tpath("d2.qwp")};
    for (int f = 0; f < 3; f++) {
        for (int i = 0; i < counts[f]; i++) {
            store_init(&rows[f][i]);
            make_row(&rows[f][i].row, L, 500, 3);
        }
        CHECK(write_shard(paths[f], L, 500, 1, 1, 3, rows[f], counts[f], 77) == 0);
    }
    qw_dataset *ds;
    CHECK(qw_dataset_open(paths, 3, "train", L - 1, 77, &ds) == 0);
    if (ds) {
        CHECK(qw_dataset_rows(ds) == 17 && qw_dataset_row_len(ds) == L && qw_dataset_identity(ds) == 77);
        int32_t tok[L], seg[L], pos[L], want_seg[L], want_pos[L];
        uint8_t loss[L], want_loss[L];
        for (int k = 0; k < 60; k++) {
            uint64_t r = k < 17 ? (uint64_t)(16 - k) : rnd(17);
            int f = r < 10 ? 0 : r < 11 ? 1 : 2, i = (int)(r < 10 ? r : r < 11 ? r - 10 : r - 11);
            CHECK(qw_dataset_read_row(ds, r, tok, seg, pos, loss) == 0);
            qw_shard_row_view(&rows[f][i].row, L, want_seg, want_pos, want_loss);
            CHECK(!memcmp(tok, rows[f][i].tokens, sizeof tok));
            CHECK(!memcmp(seg, want_seg, sizeof seg) && !memcmp(pos, want_pos, sizeof pos) &&
                  !memcmp(loss, want_loss, sizeof loss));
        }
        CHECK(qw_dataset_read_row(ds, 17, tok, NULL, NULL, NULL) == QW_EXIT_USAGE);
        qw_dataset_close(ds);
    }
    CHECK(qw_dataset_open(paths, 3, "train", L, 77, &ds) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "expected seq-len 17") != NULL);
    CHECK(qw_dataset_open(paths, 3, "train", L - 1, 78, &ds) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "tokenizer identity") != NULL);
    CHECK(write_shard(paths[1], L, 500, 1, 1, 3, rows[1], counts[1], 99) == 0);
    CHECK(qw_dataset_open(paths, 3, "train", 0, 0, &ds) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "differs") != NULL);
    mkdir(tpath("empty"), 0777);
    const char *e = tpath("empty");
    CHECK(qw_dataset_open(&e, 1, "train", 0, 0, &ds) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "index.json") != NULL);
}

/* ---- packing ---- */

/* Documents whose tokens are their global positions: unique, so a row
 * tells where it came from.  Lengths cycle through `lens`. */
static void make_docs(qw_docs *d, int n_docs, const int *lens, int n_lens)
{
    int32_t buf[1000];
    int32_t next = 0;
    for (int i = 0; i < n_docs; i++) {
        int len = lens[i % n_lens];
        for (int k = 0; k < len; k++) buf[k] = next++;
        qw_docs_add(d, buf, len, NULL);
    }
}

static qw_pack_opts popts(const char *out, int T, qw_pack_mode mode, uint64_t seed, double val)
{
    qw_pack_opts o = {0};
    o.dir = out;
    o.seq_len = T;
    o.mode = mode;
    o.seed = seed;
    o.val_frac = val;
    o.shard_rows = 5;
    o.zstd_level = 1;
    o.vocab_size = 100000;
    o.pad_id = 99999;
    o.identity = 0x1234;
    return o;
}

/* Document of each token value for make_docs' documents. */
static int doc_of(const qw_docs *d, int32_t t)
{
    size_t lo = 0, hi = d->n_docs - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (d->ends[mid] > (size_t)t) hi = mid;
        else lo = mid + 1;
    }
    return (int)lo;
}

TEST(pretrain_concat_and_split)
{
    qw_docs d = {0};
    int lens[] = {1, 7, 30, 3, 12, 64, 5};
    make_docs(&d, 40, lens, 7);
    enum { T = 16, L = 17 };
    const char *out = tpath("pre");
    qw_pack_opts o = popts(out, T, QW_PACK_PRETRAIN, 7, 0);
    qw_pack_report rep;
    CHECK(qw_pack_dataset(&d, &o, &rep) == 0);
    size_t N = d.tokens.n, rows = (N - 1) / T;
    CHECK(rep.train.rows == rows && rep.val.rows == 0 && rep.train.dropped == N - (rows * T + 1));
    CHECK(rep.train.shards == (rows + 4) / 5);
    qw_dataset *ds;
    CHECK(qw_dataset_open(&out, 1, "train", T, 0x1234, &ds) == 0);
    if (!ds) return;
    CHECK(qw_dataset_rows(ds) == rows);
    char *seen = calloc(rows, 1);
    int32_t tok[L], seg[L], pos[L];
    uint8_t loss[L];
    int ok = 1, in_order = 1;
    for (size_t r = 0; r < rows; r++) {
        CHECK(qw_dataset_read_row(ds, r, tok, seg, pos, loss) == 0);
        size_t at = (size_t)tok[0];
        ok &= at % T == 0 && !seen[at / T];
        seen[at / T] = 1;
        in_order &= at / T == r;
        for (int i = 0; i < L; i++) {
            ok &= tok[i] == (int32_t)(at + i);
            int starts = i == 0 || doc_of(&d, tok[i]) != doc_of(&d, tok[i - 1]);
            ok &= loss[i] == !starts;
            ok &= i == 0 || (seg[i] == seg[i - 1] + starts && pos[i] == (starts ? 0 : pos[i - 1] + 1));
        }
    }
    CHECK_MSG(ok, "rows are not the stride-T cuts of the concatenation with document segments");
    CHECK_MSG(!in_order, "rows were not shuffled");
    free(seen);
    qw_dataset_close(ds);
    qw_docs_free(&d);
}

static long read_whole(const char *path, unsigned char **p) { return file_bytes(path, p); }

TEST(deterministic_by_seed)
{
    qw_docs d = {0};
    int lens[] = {9, 4, 20};
    make_docs(&d, 30, lens, 3);
    qw_pack_report rep;
    const char *names[3] = {"s1", "s2", "s3"};
    uint64_t seeds[3] = {5, 5, 6};
    for (int k = 0; k < 3; k++) {
        qw_pack_opts o = popts(tpath(names[k]), 8, QW_PACK_PRETRAIN, seeds[k], 0.2);
        CHECK(qw_pack_dataset(&d, &o, &rep) == 0);
    }
    const char *files[] = {"train-00000.qwp", "val-00000.qwp", "index.json"};
    for (int f = 0; f < 3; f++) {
        char a[256], b[256], c[256];
        snprintf(a, sizeof a, "%s/%s", tpath("s1"), files[f]);
        snprintf(b, sizeof b, "%s/%s", tpath("s2"), files[f]);
        snprintf(c, sizeof c, "%s/%s", tpath("s3"), files[f]);
        unsigned char *pa, *pb, *pc;
        long na = read_whole(a, &pa), nb = read_whole(b, &pb), nc = read_whole(c, &pc);
        CHECK_MSG(na == nb && !memcmp(pa, pb, na), "%s differs with the same seed", files[f]);
        if (f < 2) CHECK_MSG(na != nc || memcmp(pa, pc, na), "%s same with another seed", files[f]);
        free(pa); free(pb); free(pc);
    }
    qw_docs_free(&d);
}

TEST(validation_split_disjoint)
{
    qw_docs d = {0};
    int lens[] = {11, 25, 6, 40};
    make_docs(&d, 50, lens, 4);
    const char *out = tpath("split");
    qw_pack_opts o = popts(out, 8, QW_PACK_PRETRAIN, 3, 0.2);
    qw_pack_report rep;
    CHECK(qw_pack_dataset(&d, &o, &rep) == 0);
    CHECK(rep.val.docs == 10 && rep.train.docs == 40 && rep.val.tokens + rep.train.tokens == d.tokens.n);
    char *split_of = calloc(d.n_docs, 1);
    const char *which[2] = {"train", "val"};
    int ok = 1;
    for (int v = 0; v < 2; v++) {
        qw_dataset *ds;
        CHECK(qw_dataset_open(&out, 1, which[v], 8, 0, &ds) == 0);
        if (!ds) continue;
        CHECK(qw_dataset_rows(ds) == (v ? rep.val.rows : rep.train.rows) && qw_dataset_rows(ds) > 0);
        int32_t tok[9];
        for (uint64_t r = 0; r < qw_dataset_rows(ds); r++) {
            CHECK(qw_dataset_read_row(ds, r, tok, NULL, NULL, NULL) == 0);
            for (int i = 0; i < 9; i++) {
                int doc = doc_of(&d, tok[i]);
                ok &= split_of[doc] == 0 || split_of[doc] == v + 1;
                split_of[doc] = v + 1;
            }
        }
        qw_dataset_close(ds);
    }
    CHECK_MSG(ok, "a document is in both splits");
    free(split_of);
    qw_docs_free(&d);
}

TEST(sft_best_fit_decreasing)
{
    enum { T = 15, L = 16 };
    /* Lengths 16, 15, 8, 8, 1, 20 (too long): best fit gives rows
     * {16}, {15, 1}, {8, 8}, and the long one truncated to {16}. */
    int lens[] = {16, 15, 8, 8, 1, 20};
    for (int split = 0; split < 2; split++) {
        qw_docs d = {0};
        make_docs(&d, 6, lens, 6);
        const char *out = tpath(split ? "sft-split" : "sft-trunc");
        qw_pack_opts o = popts(out, T, QW_PACK_SFT, 1, 0);
        o.long_docs = split ? QW_PACK_SPLIT : QW_PACK_TRUNCATE;
        qw_pack_report rep;
        CHECK(qw_pack_dataset(&d, &o, &rep) == 0);
        CHECK(rep.train.rows == (split ? 5u : 4u));
        CHECK(rep.train.dropped == (split ? 0u : 4u));
        CHECK(rep.train.padding == (split ? 12u : 0u));
        qw_dataset *ds;
        CHECK(qw_dataset_open(&out, 1, "train", T, 0x1234, &ds) == 0);
        if (!ds) continue;
        int32_t tok[L], seg[L], pos[L];
        uint8_t loss[L];
        int whole = 1, seen_tokens = 0;
        for (uint64_t r = 0; r < qw_dataset_rows(ds); r++) {
            CHECK(qw_dataset_read_row(ds, r, tok, seg, pos, loss) == 0);
            for (int i = 0; i < L; i++) {
                if (seg[i] == 0) {
                    whole &= tok[i] == 99999 && loss[i] == 0;
                    continue;
                }
                seen_tokens++;
                /* a segment is a run of consecutive tokens of one document */
                int starts = i == 0 || seg[i] != seg[i - 1];
                if (!starts) whole &= tok[i] == tok[i - 1] + 1 && loss[i] == 1;
                else whole &= pos[i] == 0 && loss[i] == 0;
            }
        }
        CHECK_MSG(whole, "segments are not whole documents with padding after them");
        CHECK(seen_tokens == (int)d.tokens.n - (split ? 0 : 4));
        qw_dataset_close(ds);
        qw_docs_free(&d);
    }
}

TEST(sft_bfd_random_and_masks)
{
    /* 2000 documents of random length 1..L with masks that hide their first
     * half: every token lands once, inside its whole document, and the
     * masked half carries no loss.  BFD uses at most 11/9 OPT + 1 rows. */
    enum { T = 63, L = 64, N = 2000 };
    qw_docs d = {0};
    int32_t ids[L];
    uint8_t mask[L];
    int32_t next = 0;
    for (int i = 0; i < N; i++) {
        int len = 1 + (int)rnd(L);
        for (int k = 0; k < len; k++) {
            ids[k] = next++;
            mask[k] = k >= len / 2;
        }
        CHECK(qw_docs_add(&d, ids, len, mask) == 0);
    }
    const char *out = tpath("sft-rand");
    qw_pack_opts o = popts(out, T, QW_PACK_SFT, 9, 0);
    o.shard_rows = 0;
    qw_pack_report rep;
    CHECK(qw_pack_dataset(&d, &o, &rep) == 0);
    size_t lower = (d.tokens.n + L - 1) / L;
    CHECK_MSG(rep.train.rows * 9 <= lower * 11 + 9, "%llu rows for a lower bound of %zu",
              (unsigned long long)rep.train.rows, lower);
    CHECK(rep.train.padding == rep.train.rows * L - d.tokens.n && rep.train.dropped == 0);
    qw_dataset *ds;
    CHECK(qw_dataset_open(&out, 1, "train", T, 0, &ds) == 0);
    if (ds) {
        char *seen = calloc(d.tokens.n, 1);
        int32_t tok[L], seg[L], pos[L];
        uint8_t loss[L];
        int ok = 1;
        for (uint64_t r = 0; r < qw_dataset_rows(ds); r++) {
            CHECK(qw_dataset_read_row(ds, r, tok, seg, pos, loss) == 0);
            for (int i = 0; i < L; i++) {
                if (!seg[i]) continue;
                int doc = doc_of(&d, tok[i]);
                size_t start = doc ? d.ends[doc - 1] : 0, len = d.ends[doc] - start;
                ok &= !seen[tok[i]] && (size_t)pos[i] == (size_t)tok[i] - start;   /* whole, in order */
                ok &= loss[i] == (pos[i] > 0 && (size_t)pos[i] >= len / 2);
                seen[tok[i]] = 1;
            }
        }
        for (size_t t = 0; t < d.tokens.n; t++) ok &= seen[t];
        CHECK_MSG(ok, "documents not placed whole and once, or masks not applied");
        free(seen);
        qw_dataset_close(ds);
    }
    qw_docs_free(&d);
}

TEST(pack_rejects_bad_input)
{
    qw_docs d = {0};
    qw_pack_report rep;
    qw_pack_opts o = popts(tpath("bad"), 8, QW_PACK_PRETRAIN, 1, 0);
    CHECK(qw_pack_dataset(&d, &o, &rep) == QW_EXIT_DATA);
    int32_t few[3] = {1, 2, 3};
    CHECK(qw_docs_add(&d, few, 0, NULL) == QW_EXIT_DATA);
    qw_docs_add(&d, few, 3, NULL);
    CHECK(qw_pack_dataset(&d, &o, &rep) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "do not fill a row") != NULL);
    uint8_t m[3] = {1, 1, 1};
    CHECK(qw_docs_add(&d, few, 3, m) == QW_EXIT_DATA);
    o.vocab_size = 3;
    o.pad_id = 0;
    o.seq_len = 2;
    CHECK(qw_pack_dataset(&d, &o, &rep) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "outside the vocabulary") != NULL);
    qw_docs_free(&d);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/qw-test-shard-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    PLAN(12);
    RUN(round_trip_random_access);
    RUN(trainer_view);
    RUN(writer_rejects_bad_rows);
    RUN(every_corruption_detected);
    RUN(hostile_headers_refused);
    RUN(dataset_many_shards);
    RUN(pretrain_concat_and_split);
    RUN(deterministic_by_seed);
    RUN(validation_split_disjoint);
    RUN(sft_best_fit_decreasing);
    RUN(sft_bfd_random_and_masks);
    RUN(pack_rejects_bad_input);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) return 1;
    return qwtest_finish();
}
