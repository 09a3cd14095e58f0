/* pack.c — documents into rows (concatenate-and-split, best-fit-decreasing),
 * the train/validation split, the seeded row shuffle, and the data
 * directory (shards + index.json). */
#include "qw/pack.h"

#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/file.h"
#include "qw/rng.h"
#include "qw/shard.h"

int qw_docs_add(qw_docs *d, const int32_t *ids, size_t n, const uint8_t *mask)
{
    if (n == 0) return qw_error(QW_EXIT_DATA, "document %zu: empty", d->n_docs);
    if (d->n_docs == 0) d->has_mask = mask != NULL;
    else if (d->has_mask != (mask != NULL))
        return qw_error(QW_EXIT_DATA, "document %zu: %s a loss mask, unlike the documents before it", d->n_docs,
                        mask ? "has" : "lacks");
    if (d->n_docs == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 1024;
        d->ends = qw_realloc(d->ends, d->cap * sizeof *d->ends);
    }
    qw_ids_reserve(&d->tokens, n);
    memcpy(d->tokens.v + d->tokens.n, ids, n * sizeof *ids);
    d->tokens.n += n;
    if (mask) qw_buf_add(&d->mask, mask, n);
    d->ends[d->n_docs++] = d->tokens.n;
    return 0;
}

int qw_docs_add_images(qw_docs *d, const int32_t *ids, size_t n, const uint8_t *mask, const qw_shard_images *im)
{
    int st = qw_docs_add(d, ids, n, mask);
    if (st || !im || !im->n) return st;
    if (d->n_img && im->K != d->K)
        return qw_error(QW_EXIT_DATA, "document %zu: patches of %u values, unlike the %u of the images before", d->n_docs - 1,
                        im->K, d->K);
    d->K = im->K;
    uint64_t rows = 0;
    for (uint32_t k = 0; k < im->n; k++) {
        if (im->start[k] >= n)
            return qw_error(QW_EXIT_DATA, "document %zu: image %u starts outside the document", d->n_docs - 1, k);
        if (d->n_img == d->img_cap) {
            d->img_cap = d->img_cap ? 2 * d->img_cap : 64;
            d->img_doc = qw_realloc(d->img_doc, d->img_cap * sizeof *d->img_doc);
            d->img_at = qw_realloc(d->img_at, d->img_cap * sizeof *d->img_at);
            d->img_thw = qw_realloc(d->img_thw, 3 * d->img_cap * sizeof *d->img_thw);
            d->img_row = qw_realloc(d->img_row, d->img_cap * sizeof *d->img_row);
        }
        size_t i = d->n_img++;
        d->img_doc[i] = d->n_docs - 1;
        d->img_at[i] = im->start[k];
        memcpy(d->img_thw + 3 * i, im->thw + 3 * k, 3 * sizeof *d->img_thw);
        d->img_row[i] = d->px_rows + rows;
        rows += (uint64_t)im->thw[3 * k] * im->thw[3 * k + 1] * im->thw[3 * k + 2];
    }
    if (d->px_rows + rows > d->px_cap) {
        while (d->px_rows + rows > d->px_cap) d->px_cap = d->px_cap ? 2 * d->px_cap : 1024;
        d->pixels = qw_realloc(d->pixels, d->px_cap * d->K * sizeof *d->pixels);
    }
    memcpy(d->pixels + d->px_rows * d->K, im->pixels, rows * d->K * sizeof *d->pixels);
    d->px_rows += rows;
    return 0;
}

void qw_docs_free(qw_docs *d)
{
    free(d->img_doc); free(d->img_at); free(d->img_thw); free(d->img_row); free(d->pixels);
    qw_ids_free(&d->tokens);
    qw_buf_free(&d->mask);
    free(d->ends);
    memset(d, 0, sizeof *d);
}

static size_t doc_start(const qw_docs *d, size_t i) { return i ? d->ends[i - 1] : 0; }
static size_t doc_len(const qw_docs *d, size_t i) { return d->ends[i] - doc_start(d, i); }

/* The identity permutation of n, shuffled by Fisher-Yates on rng stream `stream`. */
static size_t *permutation(size_t n, uint64_t seed, uint64_t stream)
{
    size_t *p = qw_malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = i;
    qw_rng r;
    qw_rng_init(&r, seed, stream);
    qw_rng_shuffle(&r, p, n, sizeof *p);
    return p;
}

/* ---- plans: rows as lists of pieces of documents ---- */

typedef struct {
    size_t off;                /* into docs->tokens */
    uint32_t len;
} piece;

typedef struct {
    piece *p;
    size_t n, cap;
    size_t *first;             /* row r is pieces [first[r], first[r+1]) */
    size_t rows, rows_cap;
    uint64_t dropped, padding;
} plan;

static void plan_piece(plan *pl, size_t off, size_t len)
{
    if (pl->n == pl->cap) {
        pl->cap = pl->cap ? 2 * pl->cap : 1024;
        pl->p = qw_realloc(pl->p, pl->cap * sizeof *pl->p);
    }
    pl->p[pl->n++] = (piece){off, (uint32_t)len};
}

static void plan_row(plan *pl)   /* start a row at the next piece */
{
    if (pl->rows + 2 > pl->rows_cap) {
        pl->rows_cap = pl->rows_cap ? 2 * pl->rows_cap : 1024;
        pl->first = qw_realloc(pl->first, pl->rows_cap * sizeof *pl->first);
    }
    pl->first[pl->rows++] = pl->n;
    pl->first[pl->rows] = pl->n;
}

static void plan_free(plan *pl)
{
    free(pl->p);
    free(pl->first);
}

/* Concatenate-and-split over documents `ids` (in order). */
static void plan_concat(plan *pl, const qw_docs *d, const size_t *ids, size_t n, size_t L)
{
    size_t T = L - 1, total = 0;
    for (size_t k = 0; k < n; k++) total += doc_len(d, ids[k]);
    size_t rows = total >= L ? (total - 1) / T : 0;
    pl->dropped = total - (rows ? rows * T + 1 : 0);
    size_t k = 0, vstart = 0;  /* document ids[k] starts at vstart in the concatenation */
    for (size_t r = 0; r < rows; r++) {
        size_t s = r * T, e = s + L;
        while (vstart + doc_len(d, ids[k]) <= s) vstart += doc_len(d, ids[k++]);
        plan_row(pl);
        for (size_t j = k, v = vstart; v < e; v += doc_len(d, ids[j++])) {
            size_t a = v > s ? v : s, len = doc_len(d, ids[j]);
            size_t b = v + len < e ? v + len : e;
            plan_piece(pl, doc_start(d, ids[j]) + (a - v), b - a);
        }
        pl->first[pl->rows] = pl->n;
    }
}

typedef struct {
    size_t off, len, order;
} item;

static int item_cmp(const void *a, const void *b)
{
    const item *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Best-fit-decreasing over documents `ids`. */
static void plan_bfd(plan *pl, const qw_docs *d, const size_t *ids, size_t n, size_t L, qw_pack_long long_docs)
{
    item *it = NULL;
    size_t ni = 0, cap = 0;
    for (size_t k = 0; k < n; k++) {
        size_t off = doc_start(d, ids[k]), len = doc_len(d, ids[k]);
        while (len) {
            size_t take = len < L ? len : L;
            if (ni == cap) it = qw_realloc(it, (cap = cap ? 2 * cap : 1024) * sizeof *it);
            it[ni] = (item){off, take, ni};
            ni++;
            off += take;
            len -= take;
            if (long_docs == QW_PACK_TRUNCATE) {
                pl->dropped += len;
                break;
            }
        }
    }
    if (ni) qsort(it, ni, sizeof *it, item_cmp);
    /* Bins by remaining room: head[c] is a stack of bins with room c (linked
     * through next[]); bit c of `used` says the stack is non-empty. */
    size_t words = (L + 64) / 64;
    uint64_t *used = qw_calloc(words, sizeof *used);
    size_t *head = qw_malloc((L + 1) * sizeof *head), *next = NULL, *room = NULL, *bin_of = qw_malloc(ni * sizeof *bin_of);
    size_t bins = 0, bcap = 0;
    for (size_t c = 0; c <= L; c++) head[c] = SIZE_MAX;
    for (size_t i = 0; i < ni; i++) {
        size_t c = it[i].len, b = SIZE_MAX;
        for (size_t w = c / 64; w < words; w++) {
            uint64_t bits = used[w] & (w == c / 64 ? ~0ull << (c % 64) : ~0ull);
            if (bits) {
                c = 64 * w + (size_t)__builtin_ctzll(bits);
                b = head[c];
                head[c] = next[b];
                if (head[c] == SIZE_MAX) used[c / 64] &= ~(1ull << (c % 64));
                break;
            }
        }
        if (b == SIZE_MAX) {
            if (bins == bcap) {
                bcap = bcap ? 2 * bcap : 1024;
                next = qw_realloc(next, bcap * sizeof *next);
                room = qw_realloc(room, bcap * sizeof *room);
            }
            b = bins++;
            room[b] = L;
        }
        bin_of[i] = b;
        room[b] -= it[i].len;
        next[b] = head[room[b]];
        head[room[b]] = b;
        used[room[b] / 64] |= 1ull << (room[b] % 64);
    }
    /* Rows in bin order, items in each row longest first. */
    size_t *count = qw_calloc(bins + 1, sizeof *count), *slot = qw_malloc(ni * sizeof *slot);
    for (size_t i = 0; i < ni; i++) count[bin_of[i] + 1]++;
    for (size_t b = 0; b < bins; b++) count[b + 1] += count[b];
    for (size_t i = 0; i < ni; i++) slot[count[bin_of[i]]++] = i;
    for (size_t i = 0, b = SIZE_MAX; i < ni; i++) {
        const item *x = &it[slot[i]];
        if (bin_of[slot[i]] != b) {
            b = bin_of[slot[i]];
            plan_row(pl);
            pl->padding += room[b];
        }
        plan_piece(pl, x->off, x->len);
        pl->first[pl->rows] = pl->n;
    }
    free(count); free(slot); free(used); free(head); free(next); free(room); free(bin_of); free(it);
}

/* Fill `row` (arrays of L) with row r of the plan. */
static void plan_fill(const plan *pl, const qw_docs *d, size_t r, size_t L, uint32_t pad_id, qw_shard_row *row)
{
    size_t at = 0;
    row->n_segs = 0;
    for (size_t k = pl->first[r]; k < pl->first[r + 1]; k++) {
        const piece *p = &pl->p[k];
        row->starts[row->n_segs++] = (uint32_t)at;
        memcpy(row->tokens + at, d->tokens.v + p->off, p->len * sizeof *row->tokens);
        if (d->has_mask) memcpy(row->mask + at, d->mask.p + p->off, p->len);
        at += p->len;
    }
    row->n_valid = (uint32_t)at;
    for (; at < L; at++) {
        row->tokens[at] = (int32_t)pad_id;
        row->mask[at] = 0;
    }
}

/* The images of a row: those of its documents, starts moved to the row. */
typedef struct {
    qw_shard_images im;
    uint32_t *start, *thw;
    float *px;
    size_t cap;
    uint64_t px_cap;
} row_images;

static void fill_images(row_images *ri, const plan *pl, const qw_docs *d, size_t r)
{
    ri->im = (qw_shard_images){0, d->K, NULL, NULL, NULL};
    uint64_t rows = 0;
    size_t at = 0;
    for (size_t k = pl->first[r]; k < pl->first[r + 1]; k++) {
        const piece *p = &pl->p[k];
        size_t lo = 0, hi = d->n_docs;   /* the document holding the piece */
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (d->ends[mid] <= p->off) lo = mid + 1;
            else hi = mid;
        }
        size_t a = 0, b = d->n_img;      /* its images: img_doc is sorted */
        while (a < b) {
            size_t mid = (a + b) / 2;
            if (d->img_doc[mid] < lo) a = mid + 1;
            else b = mid;
        }
        for (size_t i = a; i < d->n_img && d->img_doc[i] == lo; i++) {
            const uint32_t *g = d->img_thw + 3 * i;
            uint64_t n = (uint64_t)g[0] * g[1] * g[2];
            if (ri->im.n == ri->cap) {
                ri->cap = ri->cap ? 2 * ri->cap : 8;
                ri->start = qw_realloc(ri->start, ri->cap * sizeof *ri->start);
                ri->thw = qw_realloc(ri->thw, 3 * ri->cap * sizeof *ri->thw);
            }
            if (rows + n > ri->px_cap) {
                while (rows + n > ri->px_cap) ri->px_cap = ri->px_cap ? 2 * ri->px_cap : 256;
                ri->px = qw_realloc(ri->px, ri->px_cap * d->K * sizeof *ri->px);
            }
            ri->start[ri->im.n] = (uint32_t)(at + d->img_at[i]);
            memcpy(ri->thw + 3 * ri->im.n, g, 3 * sizeof *g);
            memcpy(ri->px + rows * d->K, d->pixels + d->img_row[i] * d->K, n * d->K * sizeof *ri->px);
            rows += n;
            ri->im.n++;
        }
        at += p->len;
    }
    ri->im.start = ri->start;
    ri->im.thw = ri->thw;
    ri->im.pixels = ri->px;
}

/* ---- writing a split ---- */

static const char *const split_name[2] = {"train", "val"};

typedef struct {
    const qw_pack_opts *o;
    const qw_docs *d;
    cJSON *shards;
    uint64_t done, total;
} writing;

static int write_split(writing *wr, int which, const plan *pl, qw_pack_split_report *rep)
{
    const qw_pack_opts *o = wr->o;
    size_t L = (size_t)o->seq_len + 1;
    uint32_t width = o->vocab_size <= 65536 ? 2 : 4;
    uint64_t per_shard = o->shard_rows ? o->shard_rows : ((256u << 20) / (L * width) ? (256u << 20) / (L * width) : 1);
    size_t *perm = permutation(pl->rows, o->seed, which ? 0x76616c69646174ull : 0x747261696e696eull);
    qw_shard_params sp = {
        .row_len = (uint32_t)L, .vocab_size = o->vocab_size, .identity = o->identity, .pad_id = o->pad_id,
        .has_mask = wr->d->has_mask, .zstd_level = o->zstd_level, .has_images = wr->d->n_img > 0,
    };
    qw_shard_row row = {
        .tokens = qw_malloc(L * sizeof *row.tokens), .starts = qw_malloc(L * sizeof *row.starts),
        .mask = qw_malloc(L),
    };
    row_images ri = {0};
    if (wr->d->n_img) row.images = &ri.im;
    char *path = qw_malloc(strlen(o->dir) + 32), name[32];
    qw_shard_writer *w = NULL;
    int st = 0;
    for (size_t i = 0; i < pl->rows && !st; i++) {
        if (!w) {
            snprintf(name, sizeof name, "%s-%05llu.qwp", split_name[which], (unsigned long long)rep->shards);
            sprintf(path, "%s/%s", o->dir, name);
            if ((st = qw_shard_writer_open(path, &sp, &w))) break;
        }
        plan_fill(pl, wr->d, perm[i], L, o->pad_id, &row);
        if (row.images) fill_images(&ri, pl, wr->d, perm[i]);
        st = qw_shard_writer_add(w, &row);
        if (!st && (qw_shard_writer_rows(w) == per_shard || i + 1 == pl->rows)) {
            uint64_t rows = qw_shard_writer_rows(w);
            st = qw_shard_writer_close(w);
            w = NULL;
            struct stat sb;
            if (!st && stat(path, &sb)) st = qw_error(QW_EXIT_FAIL, "'%s': %s", path, strerror(errno));
            if (st) break;
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "file", name);
            cJSON_AddStringToObject(e, "split", split_name[which]);
            cJSON_AddNumberToObject(e, "rows", (double)rows);
            cJSON_AddNumberToObject(e, "bytes", (double)sb.st_size);
            cJSON_AddItemToArray(wr->shards, e);
            rep->shards++;
            rep->bytes += (uint64_t)sb.st_size;
        }
        if (o->progress && (++wr->done % 1024 == 0 || wr->done == wr->total))
            o->progress(o->progress_ctx, wr->done, wr->total);
    }
    qw_shard_writer_abort(w);
    rep->rows = pl->rows;
    rep->dropped = pl->dropped;
    rep->padding = pl->padding;
    free(path); free(perm); free(row.tokens); free(row.starts); free(row.mask);
    free(ri.start); free(ri.thw); free(ri.px);
    return st;
}

static cJSON *split_json(const qw_pack_split_report *r)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "docs", (double)r->docs);
    cJSON_AddNumberToObject(j, "tokens", (double)r->tokens);
    cJSON_AddNumberToObject(j, "rows", (double)r->rows);
    cJSON_AddNumberToObject(j, "dropped", (double)r->dropped);
    cJSON_AddNumberToObject(j, "padding", (double)r->padding);
    return j;
}

static int write_index(const qw_pack_opts *o, int has_mask, int has_images, cJSON *shards, const qw_pack_report *rep)
{
    cJSON *j = cJSON_CreateObject();
    char hex[24];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)o->identity);
    cJSON_AddStringToObject(j, "format", "qw-pack");
    cJSON_AddNumberToObject(j, "version", has_images ? QW_SHARD_VERSION_IMAGES : QW_SHARD_VERSION);
    if (has_images) cJSON_AddBoolToObject(j, "images", 1);
    cJSON_AddNumberToObject(j, "seq_len", o->seq_len);
    cJSON_AddNumberToObject(j, "row_len", o->seq_len + 1);
    cJSON_AddStringToObject(j, "tokenizer_identity", hex);
    cJSON_AddNumberToObject(j, "vocab_size", o->vocab_size);
    cJSON_AddNumberToObject(j, "pad_id", o->pad_id);
    cJSON_AddBoolToObject(j, "loss_mask", has_mask);
    cJSON_AddStringToObject(j, "mode", o->mode == QW_PACK_SFT ? "sft" : "pretrain");
    cJSON_AddStringToObject(j, "long", o->long_docs == QW_PACK_SPLIT ? "split" : "truncate");
    cJSON_AddNumberToObject(j, "seed", (double)o->seed);
    cJSON_AddNumberToObject(j, "val_frac", o->val_frac);
    cJSON_AddNumberToObject(j, "zstd", o->zstd_level);
    cJSON_AddItemToObject(j, "shards", shards);
    cJSON *splits = cJSON_AddObjectToObject(j, "splits");
    cJSON_AddItemToObject(splits, "train", split_json(&rep->train));
    cJSON_AddItemToObject(splits, "val", split_json(&rep->val));
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    /* index.json is the commit point of the data set: durable once renamed */
    qw_buf b = {0};
    qw_buf_adds(&b, text);
    qw_buf_addc(&b, '\n');
    char *path = qw_path_join(o->dir, "index.json");
    int st = qw_write_file_atomic(path, b.p, b.n);
    qw_buf_free(&b);
    free(text); free(path);
    return st;
}

int qw_pack_dataset(const qw_docs *d, const qw_pack_opts *o, qw_pack_report *rep)
{
    memset(rep, 0, sizeof *rep);
    size_t L = (size_t)o->seq_len + 1;
    if (o->seq_len < 1) return qw_error(QW_EXIT_USAGE, "seq-len %d is less than 1", o->seq_len);
    if (!(o->val_frac >= 0 && o->val_frac < 1)) return qw_error(QW_EXIT_USAGE, "val-frac %g is not in [0, 1)", o->val_frac);
    if (o->vocab_size < 1 || o->pad_id >= o->vocab_size)
        return qw_error(QW_EXIT_USAGE, "pad id %u outside the vocabulary of %u", o->pad_id, o->vocab_size);
    if (!d->n_docs) return qw_error(QW_EXIT_DATA, "no documents in the input");
    if (d->n_img && o->mode != QW_PACK_SFT)
        return qw_error(QW_EXIT_USAGE, "documents with images are packed whole: --mode sft");
    for (size_t k = 0; k < d->n_img; k++)
        if (doc_len(d, d->img_doc[k]) > L)
            return qw_error(QW_EXIT_DATA, "document %zu: %zu tokens with an image do not fit a row of %zu (a sample "
                            "with images is never cut)", d->img_doc[k], doc_len(d, d->img_doc[k]), L);
    for (size_t i = 0, k = 0; i < d->tokens.n; i++) {
        while (d->ends[k] <= i) k++;
        if (d->tokens.v[i] < 0 || (uint32_t)d->tokens.v[i] >= o->vocab_size)
            return qw_error(QW_EXIT_DATA, "document %zu: token id %d outside the vocabulary of %u", k,
                            d->tokens.v[i], o->vocab_size);
    }
    /* The validation documents: the first n_val of a seeded permutation. */
    size_t n_val = (size_t)(o->val_frac * (double)d->n_docs + 0.5);
    if (o->val_frac > 0 && n_val == 0) n_val = 1;
    if (n_val >= d->n_docs)
        return qw_error(QW_EXIT_DATA, "%zu documents are too few for a validation fraction of %g", d->n_docs, o->val_frac);
    size_t *perm = permutation(d->n_docs, o->seed, 0x73706c6974ull);
    char *is_val = qw_calloc(d->n_docs, 1);
    for (size_t i = 0; i < n_val; i++) is_val[perm[i]] = 1;
    size_t *ids[2] = {qw_malloc(d->n_docs * sizeof(size_t)), qw_malloc(d->n_docs * sizeof(size_t))}, n_ids[2] = {0, 0};
    qw_pack_split_report *sr[2] = {&rep->train, &rep->val};
    for (size_t i = 0; i < d->n_docs; i++) {
        int v = is_val[i];
        ids[v][n_ids[v]++] = i;
        sr[v]->docs++;
        sr[v]->tokens += doc_len(d, i);
    }
    free(perm);
    free(is_val);
    plan pl[2] = {{0}, {0}};
    int st = 0;
    for (int v = 0; v < 2 && !st; v++) {
        if (o->mode == QW_PACK_SFT) plan_bfd(&pl[v], d, ids[v], n_ids[v], L, o->long_docs);
        else plan_concat(&pl[v], d, ids[v], n_ids[v], L);
        if (!pl[v].rows && (v == 0 || n_val))
            st = qw_error(QW_EXIT_DATA, "%s split: %llu tokens in %llu documents do not fill a row of %zu tokens",
                          split_name[v], (unsigned long long)sr[v]->tokens, (unsigned long long)sr[v]->docs, L);
    }
    if (!st && mkdir(o->dir, 0777) && errno != EEXIST) st = qw_error(QW_EXIT_FAIL, "'%s': %s", o->dir, strerror(errno));
    /* An index of an earlier run goes first: until the new one is in place,
     * the directory is no dataset rather than a mix of two. */
    char *old_index = qw_malloc(strlen(o->dir) + 16);
    sprintf(old_index, "%s/index.json", o->dir);
    if (!st && unlink(old_index) && errno != ENOENT) st = qw_error(QW_EXIT_FAIL, "'%s': %s", old_index, strerror(errno));
    free(old_index);
    writing wr = {o, d, cJSON_CreateArray(), 0, pl[0].rows + pl[1].rows};
    for (int v = 0; v < 2 && !st; v++) st = write_split(&wr, v, &pl[v], sr[v]);
    if (!st) st = write_index(o, d->has_mask, d->n_img > 0, wr.shards, rep);
    else cJSON_Delete(wr.shards);
    for (int v = 0; v < 2; v++) {
        plan_free(&pl[v]);
        free(ids[v]);
    }
    return st;
}
