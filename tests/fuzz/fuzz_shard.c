/* fuzz_shard.c — qw-pack(5) shard files (libcore/shard.c), read as the
 * programs read them: one shard row by row (qw-pack --inspect) and as a
 * dataset of one file with the trainer's view (qw-pretrain). */
#include "fuzz.h"

#include "qw/shard.h"

static char *path;

/* Every row of the shard, checked against the header it was opened with. */
static void read_shard(void)
{
    qw_shard *s;
    int st = qw_shard_open(path, &s);
    fz_expect(st, FZ_DATA, path);
    if (st) return;
    const qw_shard_header *h = qw_shard_info(s);
    uint32_t L = h->row_len;
    int32_t *tokens = qw_malloc((size_t)L * sizeof *tokens), *seg = qw_malloc((size_t)L * sizeof *seg),
            *pos = qw_malloc((size_t)L * sizeof *pos);
    uint32_t *starts = qw_malloc((size_t)L * sizeof *starts);
    uint8_t *mask = qw_malloc(L), *loss = qw_malloc(L);
    for (uint64_t r = 0; r < h->n_rows && r < FZ_MAX_ITEMS && !st; r++) {
        qw_shard_row row = {.tokens = tokens, .starts = starts, .mask = r & 1 ? mask : NULL};
        st = qw_shard_read_row(s, r, &row);
        fz_expect(st, FZ_DATA, path);
        if (st) break;
        if (row.n_valid < 1 || row.n_valid > L || row.n_segs < 1 || row.n_segs > row.n_valid)
            fz_fatal("a row read back outside its header's bounds", 0);
        for (uint32_t i = 0; i < L; i++)
            if (tokens[i] < 0 || (uint32_t)tokens[i] >= h->vocab_size) fz_fatal("a token outside the vocabulary", 0);
        qw_shard_row_view(&row, L, seg, pos, loss);
    }
    free(tokens); free(seg); free(pos); free(starts); free(mask); free(loss);
    qw_shard_close(s);
}

/* The trainer's way in: a dataset of this one file. */
static void read_dataset(void)
{
    qw_dataset *ds;
    const char *paths[1] = {path};
    int st = qw_dataset_open(paths, 1, "train", 0, 0, &ds);
    fz_expect(st, FZ_DATA, path);
    if (st) return;
    uint32_t L = qw_dataset_row_len(ds);
    int32_t *tokens = qw_malloc((size_t)L * sizeof *tokens), *seg = qw_malloc((size_t)L * sizeof *seg),
            *pos = qw_malloc((size_t)L * sizeof *pos);
    uint8_t *loss = qw_malloc(L);
    uint64_t n = qw_dataset_rows(ds);
    for (uint64_t r = n; r-- > 0 && n - r <= FZ_MAX_ITEMS && !st;) {   /* backwards: another block order */
        st = qw_dataset_read_row(ds, r, tokens, seg, pos, loss);
        fz_expect(st, FZ_DATA, path);
    }
    free(tokens); free(seg); free(pos); free(loss);
    qw_dataset_close(ds);
}

/* Recompute the checksums the header and index name, where they lie in the
 * file: each block's, the index's, the header's. */
static void fix_checksums(uint8_t *p, size_t size)
{
    if (size < QW_SHARD_HEADER_SIZE) return;
    uint64_t index = fz_get64(p + 48), n_blocks = fz_get32(p + 44);
    uint64_t index_size = n_blocks * QW_SHARD_INDEX_ENTRY_SIZE;
    if (index <= size && index_size <= size - index) {
        for (uint64_t b = 0; b < n_blocks; b++) {
            unsigned char *e = p + index + b * QW_SHARD_INDEX_ENTRY_SIZE;
            fz_put32(e + 16, fz_crc32c(p, size, fz_get64(e), fz_get32(e + 8)));
        }
        fz_put32(p + 56, fz_crc32c(p, size, index, index_size));
    }
    fz_put32(p + 60, qw_crc32c(0, p, 60));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    path = fz_path("shard.qwp");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_write(path, data, size);
    qw_error_clear();
    read_shard();
    int checksum = qw_error_status() && strstr(qw_error_msg(), "checksum");
    read_dataset();
    if (checksum) {
        uint8_t *copy = qw_malloc(size);
        memcpy(copy, data, size);
        fix_checksums(copy, size);
        fz_write(path, copy, size);
        free(copy);
        read_shard();
        read_dataset();
    }
    return 0;
}
