/* tokenize.c — parallel, order-preserving encoding of an input (qw/tokenize.h). */
#include "qw/tokenize.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qw/buf.h"
#include "qw/cli.h"

enum { BATCH_DOCS = 4096 };

typedef struct {
    size_t off, len;            /* text in batch.text */
    size_t name;                /* offset of the NUL-terminated name in batch.names */
    size_t span0, n_spans;      /* the loss spans in batch.spans, when has_mask */
    int has_mask;
    long line, index;
    int status;                 /* encoding result */
    char *err;                  /* its message, when status != 0 */
} item;

typedef struct {
    qw_buf text, names;
    size_t *spans, n_spans, spans_cap;   /* pairs */
    item *items;
    qw_ids *ids;                /* one per item, reused from batch to batch */
    qw_buf *mask;               /* one per item: a byte per id, for documents with loss spans */
    int n, cap;
    int eof;                    /* the input ended (or failed) after these documents */
    int read_status;            /* the input's error after these documents, if any */
    char *read_err;
} batch;

static void fill(batch *b, qw_input *in, size_t max_bytes)
{
    b->n = 0;
    b->text.n = b->names.n = 0;
    b->n_spans = 0;
    size_t last_name = 0;
    while (!b->eof && b->n < BATCH_DOCS && (b->n == 0 || b->text.n < max_bytes)) {
        qw_doc d;
        int r = qw_input_next(in, &d);
        if (r != 1) {
            b->eof = 1;
            if (r) {
                b->read_status = r;
                b->read_err = qw_strdup(qw_error_msg());
            }
            break;
        }
        if (d.n_images) {   /* the pad token alone would stand for an image: refused here */
            b->eof = 1;
            b->read_status = QW_EXIT_DATA;
            qw_error(QW_EXIT_DATA, "'%s': line %ld: %zu image part%s: images are packed by qw-pack --chat with --model "
                     "or --config of a vision model", d.name, d.line, d.n_images, d.n_images == 1 ? "" : "s");
            b->read_err = qw_strdup(qw_error_msg());
            break;
        }
        if (b->n == b->cap) {
            b->cap = b->cap ? 2 * b->cap : 256;
            b->items = qw_realloc(b->items, b->cap * sizeof *b->items);
            b->ids = qw_realloc(b->ids, b->cap * sizeof *b->ids);
            memset(b->ids + b->n, 0, (b->cap - b->n) * sizeof *b->ids);
            b->mask = qw_realloc(b->mask, b->cap * sizeof *b->mask);
            memset(b->mask + b->n, 0, (b->cap - b->n) * sizeof *b->mask);
        }
        if (b->names.n == 0 || strcmp(b->names.p + last_name, d.name)) {
            last_name = b->names.n;
            qw_buf_add(&b->names, d.name, strlen(d.name) + 1);
        }
        if (b->n_spans + d.n_spans > b->spans_cap) {
            while (b->n_spans + d.n_spans > b->spans_cap) b->spans_cap = b->spans_cap ? 2 * b->spans_cap : 256;
            b->spans = qw_realloc(b->spans, 2 * b->spans_cap * sizeof *b->spans);
        }
        if (d.n_spans) memcpy(b->spans + 2 * b->n_spans, d.spans, 2 * d.n_spans * sizeof *b->spans);
        b->items[b->n] = (item){b->text.n, d.len, last_name, b->n_spans, d.n_spans, d.spans != NULL,
                                d.line, d.index, 0, NULL};
        b->n_spans += d.n_spans;
        qw_buf_add(&b->text, d.text, d.len);
        b->n++;
    }
}

/* An item's text (b->text.p is NULL while every document is empty). */
static const char *item_text(const batch *b, const item *it) { return it->len ? b->text.p + it->off : ""; }

/* An item's loss spans (never NULL: a document of chat mode has them, maybe none). */
static const size_t *item_spans(const batch *b, const item *it)
{
    static const size_t none[2];
    return it->n_spans ? b->spans + 2 * it->span0 : none;
}

static void encode(batch *b, int i, const qw_tokenize_opts *o)
{
    item *it = &b->items[i];
    qw_ids *ids = &b->ids[i];
    ids->n = 0;
    b->mask[i].n = 0;
    if (o->work) {
        it->status = o->work(item_text(b, it), it->len, ids, o->work_ctx);
    } else if (it->has_mask) {
        it->status = qw_tok_encode_mask(o->tok, item_text(b, it), it->len, item_spans(b, it), it->n_spans,
                                        ids, &b->mask[i]);
        if (!it->status && o->eos >= 0) {
            qw_ids_push(ids, o->eos);
            qw_buf_addc(&b->mask[i], 1);
        }
    } else {
        it->status = qw_tok_encode(o->tok, item_text(b, it), it->len, ids);
        if (!it->status && o->eos >= 0) qw_ids_push(ids, o->eos);
    }
    if (it->status) it->err = qw_strdup(qw_error_msg());
}

/* Give the batch's documents to the sink, in order. */
static int emit(batch *b, const qw_tokenize_opts *o, qw_tokenize_sink sink, void *ctx, qw_tokenize_stats *st)
{
    int rc = 0;
    for (int i = 0; i < b->n && !rc; i++) {
        item *it = &b->items[i];
        const char *name = b->names.p + it->name;
        if (it->status && o->skip_bad && it->status == QW_EXIT_DATA) {
            st->skipped++;
        } else if (it->status && it->line) {
            rc = qw_error(it->status, "'%s': line %ld: %s", name, it->line, it->err);
        } else if (it->status) {
            rc = qw_error(it->status, "'%s': %s", name, it->err);
        } else {
            qw_doc d = {item_text(b, it), it->len, name, it->line, it->index,
                        it->has_mask ? item_spans(b, it) : NULL, it->n_spans, NULL, 0};
            const uint8_t *mask = it->has_mask && !o->work ? (const uint8_t *)(b->mask[i].p ? b->mask[i].p : "") : NULL;
            rc = sink(&d, b->ids[i].v, mask, b->ids[i].n, ctx);
            st->docs++;
            st->tokens += b->ids[i].n;
            st->bytes += it->len;
        }
    }
    for (int i = 0; i < b->n; i++) {
        free(b->items[i].err);
        b->items[i].err = NULL;
    }
    if (!rc && b->read_status) rc = qw_error(b->read_status, "%s", b->read_err);
    b->read_status = 0;
    free(b->read_err);
    b->read_err = NULL;
    return rc;
}

static void batch_free(batch *b)
{
    for (int i = 0; i < b->cap; i++) {
        qw_ids_free(&b->ids[i]);
        qw_buf_free(&b->mask[i]);
    }
    free(b->ids);
    free(b->mask);
    free(b->spans);
    free(b->items);
    free(b->read_err);
    qw_buf_free(&b->text);
    qw_buf_free(&b->names);
}

int qw_tokenize(qw_input *in, const qw_tokenize_opts *opts, qw_tokenize_sink sink, void *ctx,
                qw_tokenize_stats *stats)
{
    qw_tokenize_stats st = {0};
    size_t max_bytes = opts->batch_bytes ? opts->batch_bytes : (size_t)1 << 20;
    int threads = opts->threads > 0 ? opts->threads : qw_thread_count();
    batch bufs[2] = {0}, *cur = &bufs[0], *next = &bufs[1];
    fill(cur, in, max_bytes);
    int rc = 0;
    while (!rc && (cur->n || cur->read_status)) {
        next->eof = cur->eof;
        #pragma omp parallel num_threads(threads)
        {
            #pragma omp single nowait
            fill(next, in, max_bytes);
            #pragma omp for schedule(dynamic, 1)
            for (int i = 0; i < cur->n; i++) encode(cur, i, opts);
        }
        rc = emit(cur, opts, sink, ctx, &st);
        batch *t = cur;
        cur = next;
        next = t;
    }
    batch_free(&bufs[0]);
    batch_free(&bufs[1]);
    if (stats) *stats = st;
    return rc;
}

char *qw_tok_path(const char *arg, char **dir)
{
    struct stat sb;
    if (stat(arg, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (dir) *dir = qw_strdup(arg);
        return qw_path_join(arg, "tokenizer.json");
    }
    if (dir) {
        const char *slash = strrchr(arg, '/');
        *dir = slash ? strndup(arg, (size_t)(slash - arg + (slash == arg))) : qw_strdup(".");
        if (!*dir) qw_die(QW_EXIT_FAIL, "out of memory");
    }
    return qw_strdup(arg);
}

int qw_tok_load_arg(const char *arg, qw_tok **t)
{
    char *path = qw_tok_path(arg, NULL);
    int rc = qw_tok_load(path, t);
    free(path);
    return rc;
}
