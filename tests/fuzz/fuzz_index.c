/* fuzz_index.c — the index.json of a qw-pack(5) data directory
 * (libcore/shard.c), read as the trainers read it: the input replaces the
 * index of a real data directory (packed once at start-up by
 * qw_pack_dataset), whose train and val splits are then opened and read. */
#include "fuzz.h"

#include "qw/pack.h"
#include "qw/shard.h"

#define SEQ_LEN 7
#define IDENTITY 0x0123456789abcdefull

static char *dir, *index_path;

/* What qw-pack would make of 24 short documents, in shards of 2 rows. */
static void pack(void)
{
    qw_docs docs = {0};
    int32_t ids[40];
    uint8_t mask[40];
    for (int d = 0; d < 24; d++) {
        int n = 3 + (d * 7) % 17;
        for (int i = 0; i < n; i++) ids[i] = (d * 31 + i * 7) % 300, mask[i] = (i + d) % 3 != 0;
        fz_expect(qw_docs_add(&docs, ids, (size_t)n, mask), 0, NULL);
    }
    qw_pack_opts o = {.dir = dir, .seq_len = SEQ_LEN, .mode = QW_PACK_SFT, .long_docs = QW_PACK_SPLIT,
                      .seed = 7, .val_frac = 0.25, .shard_rows = 2, .zstd_level = 3, .vocab_size = 300,
                      .pad_id = 0, .identity = IDENTITY};
    qw_pack_report rep;
    fz_expect(qw_pack_dataset(&docs, &o, &rep), 0, NULL);
    qw_docs_free(&docs);
}

static void read_split(const char *split, int seq_len, uint64_t identity)
{
    qw_dataset *ds;
    int st = qw_dataset_open((const char *const *)&dir, 1, split, seq_len, identity, &ds);
    fz_expect(st, FZ_DATA, dir);
    if (st) return;
    uint32_t L = qw_dataset_row_len(ds);
    int32_t *tokens = qw_malloc((size_t)L * sizeof *tokens), *seg = qw_malloc((size_t)L * sizeof *seg),
            *pos = qw_malloc((size_t)L * sizeof *pos);
    uint8_t *loss = qw_malloc(L);
    for (uint64_t r = 0; r < qw_dataset_rows(ds) && r < FZ_MAX_ITEMS && !st; r++) {
        st = qw_dataset_read_row(ds, r, tokens, seg, pos, loss);
        fz_expect(st, FZ_DATA, dir);
    }
    free(tokens); free(seg); free(pos); free(loss);
    qw_dataset_close(ds);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    dir = fz_path("data");
    index_path = qw_path_join(dir, "index.json");
    pack();
    fz_save_seed(index_path);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_write(index_path, data, size);
    read_split("train", 0, 0);
    read_split("val", SEQ_LEN, IDENTITY);
    return 0;
}
