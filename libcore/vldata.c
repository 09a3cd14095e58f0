/* vldata.c — image-text samples: chat JSONL with image parts and
 * webdataset tars, their images as tower inputs, and the expansion of the
 * image pad tokens (qw/vldata.h). */
#include "qw/vldata.h"

#include <archive.h>
#include <archive_entry.h>
#include <cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "qw/chat.h"
#include "qw/cli.h"
#include "qw/file.h"
#include "qw/io.h"
#include "qw/mrope.h"

/* ---- images ---- */

void qw_vl_images_free(qw_vl_images *im)
{
    free(im->thw);
    free(im->start);
    free(im->pixels);
    memset(im, 0, sizeof *im);
}

void qw_vl_images_clear(qw_vl_images *im)
{
    im->n = 0;
    im->rows = 0;
}

static void reserve(qw_vl_images *im, int n, int64_t rows, int K)
{
    if (im->n + n > im->cap) {
        while (im->n + n > im->cap) im->cap = im->cap ? 2 * im->cap : 4;
        im->thw = qw_realloc(im->thw, (size_t)im->cap * 3 * sizeof *im->thw);
        im->start = qw_realloc(im->start, (size_t)im->cap * sizeof *im->start);
    }
    if (im->rows + rows > im->rows_cap) {
        while (im->rows + rows > im->rows_cap) im->rows_cap = im->rows_cap ? 2 * im->rows_cap : 256;
        im->pixels = qw_realloc(im->pixels, (size_t)im->rows_cap * K * sizeof *im->pixels);
    }
    im->K = K;
}

void qw_vl_images_append(qw_vl_images *im, const qw_vl_images *src, int i, int32_t start)
{
    int64_t first = 0;
    for (int k = 0; k < i; k++) first += (int64_t)src->thw[3 * k] * src->thw[3 * k + 1] * src->thw[3 * k + 2];
    int64_t rows = (int64_t)src->thw[3 * i] * src->thw[3 * i + 1] * src->thw[3 * i + 2];
    reserve(im, 1, rows, src->K);
    memcpy(im->thw + 3 * im->n, src->thw + 3 * i, 3 * sizeof *im->thw);
    im->start[im->n++] = start;
    memcpy(im->pixels + (size_t)im->rows * im->K, src->pixels + (size_t)first * src->K, (size_t)rows * src->K * sizeof(float));
    im->rows += rows;
}

int qw_vl_images_add(qw_vl_images *im, const qw_vision_prep *p, const void *data, size_t n, const char *name)
{
    qw_image img;
    float *px;
    int64_t rows, thw[3];
    int st = qw_image_decode(data, n, name, &img);
    if (!st) st = qw_vision_preprocess(p, &img, name, &px, &rows, thw);
    qw_image_free(&img);
    if (st) return st;
    int K = qw_vision_row_len(p);
    reserve(im, 1, rows, K);
    for (int k = 0; k < 3; k++) im->thw[3 * im->n + k] = (int32_t)thw[k];
    im->start[im->n++] = -1;
    memcpy(im->pixels + (size_t)im->rows * K, px, (size_t)rows * K * sizeof *px);
    im->rows += rows;
    free(px);
    return 0;
}

int qw_vl_images_load(qw_vl_images *im, const qw_vision_prep *p, const char *path)
{
    qw_buf b = {0};
    int found = 0, st = qw_read_file(path, &b, &found);
    if (!st && !found) st = qw_error(QW_EXIT_DATA, "'%s': no such file", path);
    if (!st) st = qw_vl_images_add(im, p, b.p, b.n, path);
    qw_buf_free(&b);
    return st;
}

int qw_vl_prep(const qw_config *c, const char *dir, qw_vision_prep *p)
{
    struct stat sb;
    int st = qw_vision_prep_load(p, dir && !stat(dir, &sb) && S_ISDIR(sb.st_mode) ? dir : NULL);
    if (st) return st;
    if (c->vision.depth > 0) {
        p->patch_size = c->vision.patch_size;
        p->temporal_patch_size = c->vision.temporal_patch_size;
        p->merge_size = c->vision.spatial_merge_size;
    }
    return 0;
}

int qw_vl_expand(const qw_config *c, qw_vl_images *im, qw_ids *ids, qw_buf *mask, const char *what)
{
    int pad = c->image_token_id, m2 = c->vision.spatial_merge_size * c->vision.spatial_merge_size;
    size_t n_pad = 0, extra = 0;
    for (size_t i = 0; i < ids->n; i++)
        if (pad >= 0 && ids->v[i] == pad) {
            if (n_pad < (size_t)im->n) {
                const int32_t *g = im->thw + 3 * n_pad;
                extra += (size_t)g[0] * g[1] * g[2] / m2 - 1;
            }
            n_pad++;
        }
    if (n_pad != (size_t)im->n)
        return qw_error(QW_EXIT_DATA, "%s: %zu image pad tokens for %d image%s (text that spells the pad token?)", what,
                        n_pad, im->n, im->n == 1 ? "" : "s");
    if (!im->n) return 0;
    size_t n = ids->n, total = n + extra;
    int32_t *v = qw_malloc(total * sizeof *v);
    uint8_t *mk = mask ? qw_malloc(total) : NULL;
    size_t o = 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids->v[i] != pad) {
            if (mk) mk[o] = (uint8_t)mask->p[i];
            v[o++] = ids->v[i];
            continue;
        }
        const int32_t *g = im->thw + 3 * k;
        size_t run = (size_t)g[0] * g[1] * g[2] / m2;
        im->start[k++] = (int32_t)o;
        for (size_t j = 0; j < run; j++) {
            if (mk) mk[o] = 0;
            v[o++] = pad;
        }
    }
    ids->n = 0;
    qw_ids_reserve(ids, total);
    memcpy(ids->v, v, total * sizeof *v);
    ids->n = total;
    if (mask) {
        mask->n = 0;
        qw_buf_add(mask, mk, total);
    }
    free(v);
    free(mk);
    return 0;
}

/* ---- a batch with images ---- */

struct qw_vl_batch {
    qw_vision *v;
    int32_t *pos3, *rows;
    float *d_embeds, *d_ds[8];
    const void *ds[8];
    qw_batch_vision bv;
};

int qw_vl_batch_new(const qw_params *P, const int32_t *ids, const int32_t *seg, int B, int T, int n,
                    const int32_t *thw, const float *pixels, const char *what, qw_vl_batch **out)
{
    const qw_config *c = &P->cfg;
    *out = NULL;
    if (n > 0 && c->vision.depth <= 0)
        return qw_error(QW_EXIT_DATA, "%s: %d images, but the model (%s) has no vision tower", what, n, c->model_type);
    qw_vl_batch *b = qw_calloc(1, sizeof *b);
    size_t N = (size_t)B * T;
    b->pos3 = qw_malloc(3 * N * sizeof *b->pos3);
    /* the tower first: it checks the grids, which the rope index divides by the merge size */
    int st = n > 0 ? qw_vision_new(P, n, thw, what, &b->v) : 0;
    if (!st) st = qw_rope_index_docs(c, ids, seg, B, T, thw, n, what, b->pos3);
    if (st) {
        qw_vl_batch_free(b);
        return st;
    }
    *out = b;
    if (!n) return 0;
    qw_vision_forward(b->v, pixels);
    int R = qw_vision_merged_rows(b->v), H = c->hidden_size;
    b->rows = qw_malloc((size_t)R * sizeof *b->rows);
    int k = 0;
    for (size_t i = 0; i < N; i++)
        if (ids[i] == c->image_token_id) b->rows[k++] = (int32_t)i;   /* qw_rope_index_docs checked the count */
    b->d_embeds = qw_malloc((size_t)R * H * sizeof(float));
    for (int j = 0; j < c->vision.n_deepstack; j++) {
        b->d_ds[j] = qw_malloc((size_t)R * H * sizeof(float));
        b->ds[j] = qw_vision_deepstack(b->v, j);
    }
    b->bv = (qw_batch_vision){.n = R, .rows = b->rows, .embeds = qw_vision_merged(b->v), .n_deepstack = c->vision.n_deepstack,
                              .deepstack = b->ds, .d_embeds = b->d_embeds, .d_deepstack = (void *const *)b->d_ds};
    return 0;
}

const int32_t *qw_vl_batch_mpos(const qw_vl_batch *b) { return b->pos3; }
const qw_batch_vision *qw_vl_batch_vision(const qw_vl_batch *b) { return b->v ? &b->bv : NULL; }
const qw_vision *qw_vl_batch_tower(const qw_vl_batch *b) { return b->v; }

void qw_vl_batch_backward(qw_vl_batch *b, qw_params *G)
{
    if (b->v) qw_vision_backward(b->v, b->d_embeds, (const float *const *)b->d_ds, G);
}

void qw_vl_batch_free(qw_vl_batch *b)
{
    if (!b) return;
    qw_vision_free(b->v);
    free(b->pos3);
    free(b->rows);
    free(b->d_embeds);
    for (int j = 0; j < 8; j++) free(b->d_ds[j]);
    free(b);
}

/* ---- reading samples ---- */

typedef struct {
    char *name;
    qw_buf data;
} member;

struct qw_vl_reader {
    const char *const *paths;
    int n_paths, next;
    int skip_bad;
    long skipped;
    /* the open source: a JSONL input, or a tar */
    qw_input *in;
    char *base;                /* the JSONL's directory, for relative image paths */
    struct archive *tar;
    const char *tar_path;
    int tar_done;
    member *held;              /* a member read ahead: the first of the next sample */
    /* the current sample */
    member *mem;
    int n_mem, cap_mem;
    qw_buf text, where;
    qw_chat_spans turns;
    size_t *spans;
    qw_buf *img;               /* image bytes (JSONL files) */
    int img_cap;
    const char **names;
    const unsigned char **data;
    size_t *sizes;
    char **owned_names;
    int n_owned;
};

static int is_tar(const char *p)
{
    static const char *const ext[] = {".tar", ".tar.gz", ".tgz", ".tar.zst", ".tar.xz", ".tar.bz2"};
    size_t n = strlen(p);
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++) {
        size_t k = strlen(ext[i]);
        if (n > k && !strcmp(p + n - k, ext[i])) return 1;
    }
    return 0;
}

int qw_vl_reader_open(const char *const *paths, int n, int skip_bad, qw_vl_reader **out)
{
    static const char *const stdin_path[] = {"-"};
    qw_vl_reader *r = qw_calloc(1, sizeof *r);
    r->paths = n ? paths : stdin_path;
    r->n_paths = n ? n : 1;
    r->skip_bad = skip_bad;
    for (int i = 0; i < r->n_paths; i++) {
        struct stat sb;
        if (strcmp(r->paths[i], "-") && stat(r->paths[i], &sb)) {
            int st = qw_error(QW_EXIT_FAIL, "'%s': %s", r->paths[i], strerror(errno));
            free(r);
            *out = NULL;
            return st;
        }
    }
    *out = r;
    return 0;
}

long qw_vl_reader_skipped(const qw_vl_reader *r) { return r->skipped + (r->in ? qw_input_skipped(r->in) : 0); }

static void member_free(member *m)
{
    if (!m) return;
    free(m->name);
    m->name = NULL;
    qw_buf_free(&m->data);
}

static void close_source(qw_vl_reader *r)
{
    if (r->in) r->skipped += qw_input_skipped(r->in);
    qw_input_free(r->in);
    r->in = NULL;
    free(r->base);
    r->base = NULL;
    if (r->tar) archive_read_free(r->tar);
    r->tar = NULL;
    if (r->held) member_free(r->held), free(r->held);
    r->held = NULL;
}

void qw_vl_reader_free(qw_vl_reader *r)
{
    if (!r) return;
    close_source(r);
    for (int i = 0; i < r->n_mem; i++) member_free(&r->mem[i]);
    free(r->mem);
    qw_buf_free(&r->text);
    qw_buf_free(&r->where);
    qw_chat_spans_free(&r->turns);
    free(r->spans);
    for (int i = 0; i < r->img_cap; i++) qw_buf_free(&r->img[i]);
    free(r->img);
    free(r->names); free(r->data); free(r->sizes);
    for (int i = 0; i < r->n_owned; i++) free(r->owned_names[i]);
    free(r->owned_names);
    free(r);
}

static void image_slots(qw_vl_reader *r, int n)
{
    if (n <= r->img_cap) return;
    r->img = qw_realloc(r->img, (size_t)n * sizeof *r->img);
    memset(r->img + r->img_cap, 0, (size_t)(n - r->img_cap) * sizeof *r->img);
    r->names = qw_realloc(r->names, (size_t)n * sizeof *r->names);
    r->data = qw_realloc(r->data, (size_t)n * sizeof *r->data);
    r->sizes = qw_realloc(r->sizes, (size_t)n * sizeof *r->sizes);
    r->img_cap = n;
}

static void drop_owned(qw_vl_reader *r)
{
    for (int i = 0; i < r->n_owned; i++) free(r->owned_names[i]);
    r->n_owned = 0;
}

static const char *own(qw_vl_reader *r, char *s)
{
    r->owned_names = qw_realloc(r->owned_names, (size_t)(r->n_owned + 1) * sizeof *r->owned_names);
    return r->owned_names[r->n_owned++] = s;
}

/* The directory that relative image paths of `path` start from. */
static char *base_dir(const char *path)
{
    if (!strcmp(path, "-")) return qw_strdup(".");
    const char *slash = strrchr(path, '/');
    if (!slash) return qw_strdup(".");
    size_t n = (size_t)(slash - path);
    char *d = qw_malloc(n + 2);
    memcpy(d, path, n ? n : 1);
    d[n ? n : 1] = 0;
    return d;
}

/* The next record of a JSONL source: 1, 0 at its end, or an error. */
static int next_jsonl(qw_vl_reader *r, qw_vl_sample *s)
{
    qw_doc d;
    int got = qw_input_next(r->in, &d);
    if (got != 1) return got;
    drop_owned(r);
    r->where.n = 0;
    qw_buf_reserve(&r->where, strlen(d.name) + 32);
    r->where.n = (size_t)snprintf(r->where.p, r->where.cap, "'%s': line %ld", d.name, d.line);
    *s = (qw_vl_sample){d.text, d.len, d.spans, d.n_spans, r->where.p, (int)d.n_images, NULL, NULL, NULL};
    image_slots(r, (int)d.n_images);
    for (size_t k = 0; k < d.n_images; k++) {
        const char *p = d.images[k];
        if (!p || !*p)
            return qw_error(QW_EXIT_DATA, "%s: image part %zu has no path ({\"type\": \"image\", \"image\": PATH})",
                            r->where.p, k);
        char *full, *dir = r->base ? r->base : base_dir(d.name);   /* a directory's files: each its own */
        if (p[0] == '/') full = qw_strdup(p);
        else {
            full = qw_malloc(strlen(dir) + strlen(p) + 2);
            sprintf(full, "%s/%s", dir, p);
        }
        if (dir != r->base) free(dir);
        r->names[k] = own(r, full);
        r->img[k].n = 0;
        int found = 0, st = qw_read_file(full, &r->img[k], &found);
        if (!st && !found) st = qw_error(QW_EXIT_DATA, "'%s': no such file", full);
        if (st) return qw_error(st, "%s: image %zu: %s", r->where.p, k, qw_error_msg());
        r->data[k] = (const unsigned char *)r->img[k].p;
        r->sizes[k] = r->img[k].n;
    }
    s->image_name = r->names;
    s->image_data = r->data;
    s->image_size = r->sizes;
    return 1;
}

/* A member's key (the name up to the first '.' of its last component) and
 * extension (after that '.', "" without one). */
static size_t key_len(const char *name)
{
    const char *last = strrchr(name, '/');
    last = last ? last + 1 : name;
    const char *dot = strchr(last, '.');
    return dot ? (size_t)(dot - name) : strlen(name);
}

static const char *ext_of(const char *name)
{
    size_t k = key_len(name);
    return name[k] ? name + k + 1 : "";
}

/* Read the next regular member of the tar into a new member; 1, 0 at the
 * end, or an error. */
static int read_member(qw_vl_reader *r, member **out)
{
    struct archive_entry *e;
    for (;;) {
        int rc = archive_read_next_header(r->tar, &e);
        if (rc == ARCHIVE_EOF) return 0;
        if (rc < ARCHIVE_WARN) {
            r->tar_done = 1;
            return qw_error(QW_EXIT_DATA, "'%s': %s", r->tar_path, archive_error_string(r->tar));
        }
        if (archive_entry_filetype(e) == AE_IFREG) break;
    }
    member *m = qw_calloc(1, sizeof *m);
    m->name = qw_strdup(archive_entry_pathname(e));
    char buf[65536];
    la_ssize_t k;
    while ((k = archive_read_data(r->tar, buf, sizeof buf)) > 0) qw_buf_add(&m->data, buf, (size_t)k);
    if (k < 0) {
        r->tar_done = 1;
        int st = qw_error(QW_EXIT_DATA, "'%s': member '%s': %s", r->tar_path, m->name, archive_error_string(r->tar));
        member_free(m);
        free(m);
        return st;
    }
    *out = m;
    return 1;
}

/* The next sample of a tar source: 1, 0 at its end, or an error. */
static int next_tar(qw_vl_reader *r, qw_vl_sample *s)
{
    for (int i = 0; i < r->n_mem; i++) member_free(&r->mem[i]);
    r->n_mem = 0;
    drop_owned(r);
    member *m = r->held;
    r->held = NULL;
    int rc = 0;
    if (!m && !r->tar_done && (rc = read_member(r, &m)) < 0) return rc;
    if (!m) {
        if (rc < 0) return rc;
        r->tar_done = 1;
        return 0;
    }
    size_t kl = key_len(m->name);
    for (;;) {
        if (r->n_mem == r->cap_mem) {
            r->cap_mem = r->cap_mem ? 2 * r->cap_mem : 4;
            r->mem = qw_realloc(r->mem, (size_t)r->cap_mem * sizeof *r->mem);
        }
        r->mem[r->n_mem++] = *m;
        free(m);
        m = NULL;
        int got = read_member(r, &m);
        if (got < 0) return got;
        if (!got) {
            r->tar_done = 1;
            break;
        }
        if (key_len(m->name) != kl || memcmp(m->name, r->mem[0].name, kl)) {
            r->held = m;
            break;
        }
    }
    r->where.n = 0;
    qw_buf_reserve(&r->where, strlen(r->tar_path) + kl + 32);
    r->where.n = (size_t)snprintf(r->where.p, r->where.cap, "'%s': sample '%.*s'", r->tar_path, (int)kl, r->mem[0].name);
    const char *w = r->where.p;
    member *json = NULL;
    int n_img = 0;
    for (int i = 0; i < r->n_mem; i++) {
        const char *x = ext_of(r->mem[i].name);
        if (!strcmp(x, "json")) json = &r->mem[i];
        else if (!strcmp(x, "png") || !strcmp(x, "jpg") || !strcmp(x, "jpeg")) n_img++;
    }
    if (!json) return qw_error(QW_EXIT_DATA, "%s: no .json member (the sample's conversation)", w);
    cJSON *rec = qw_chat_json_parse(json->data.p ? json->data.p : "", json->data.n, w);
    if (!rec) return qw_error_status();
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(rec, "messages");
    r->text.n = 0;
    r->turns.n = 0;
    qw_chat_opts co = {0, 0, w};
    int st = !cJSON_IsObject(rec) ? qw_error(QW_EXIT_DATA, "%s: the .json member is not a JSON object", w)
             : !cJSON_IsArray(msgs) ? qw_error(QW_EXIT_DATA, "%s: the .json member has no 'messages' array", w)
             : qw_chat_render(msgs, cJSON_GetObjectItemCaseSensitive(rec, "tools"), &co, &r->text, &r->turns);
    size_t k = st ? 0 : qw_chat_images(msgs, NULL, 0);
    const cJSON **parts = qw_malloc((k ? k : 1) * sizeof *parts);
    if (!st) qw_chat_images(msgs, parts, k);
    image_slots(r, (int)k);
    for (size_t j = 0; j < k && !st; j++) {
        const char *want = qw_chat_part_image(parts[j]);
        member *hit = NULL;
        for (int i = 0; i < r->n_mem && !hit; i++) {
            const char *x = ext_of(r->mem[i].name), *base = strrchr(r->mem[i].name, '/');
            base = base ? base + 1 : r->mem[i].name;
            int is_img = !strcmp(x, "png") || !strcmp(x, "jpg") || !strcmp(x, "jpeg");
            if (!is_img) continue;
            if (want && *want ? !strcmp(want, x) || !strcmp(want, base) || !strcmp(want, r->mem[i].name) : n_img == 1)
                hit = &r->mem[i];
        }
        if (!hit)
            st = want && *want ? qw_error(QW_EXIT_DATA, "%s: image part %zu names '%s', which the sample lacks", w, j, want)
                               : qw_error(QW_EXIT_DATA, "%s: image part %zu names no member and the sample has %d "
                                          "images", w, j, n_img);
        else {
            char *nm = qw_malloc(strlen(r->tar_path) + strlen(hit->name) + 2);
            sprintf(nm, "%s:%s", r->tar_path, hit->name);
            r->names[j] = own(r, nm);
            r->data[j] = (const unsigned char *)hit->data.p;
            r->sizes[j] = hit->data.n;
        }
    }
    free(parts);
    cJSON_Delete(rec);
    if (st) return st;
    r->spans = qw_realloc(r->spans, (2 * r->turns.n + 1) * sizeof *r->spans);
    for (size_t t = 0; t < r->turns.n; t++) {
        r->spans[2 * t] = r->turns.v[t].start;
        r->spans[2 * t + 1] = r->turns.v[t].end;
    }
    *s = (qw_vl_sample){r->text.p ? r->text.p : "", r->text.n, r->spans, r->turns.n, w, (int)k,
                        r->names, r->data, r->sizes};
    return 1;
}

int qw_vl_reader_next(qw_vl_reader *r, qw_vl_sample *s)
{
    for (;;) {
        if (!r->in && !r->tar) {
            if (r->next == r->n_paths) return 0;
            const char *p = r->paths[r->next++];
            if (strcmp(p, "-") && is_tar(p)) {
                r->tar = archive_read_new();
                archive_read_support_filter_all(r->tar);
                archive_read_support_format_tar(r->tar);
                r->tar_path = p;
                r->tar_done = 0;
                if (archive_read_open_filename(r->tar, p, 1 << 16) != ARCHIVE_OK) {
                    int st = qw_error(QW_EXIT_DATA, "'%s': %s", p, archive_error_string(r->tar));
                    close_source(r);
                    return st;
                }
            } else {
                qw_input_opts io = {QW_INPUT_CHAT, NULL, r->skip_bad};
                const char *one[1] = {p};
                int st = qw_input_open(one, 1, &io, &r->in);
                if (st) return st;
                struct stat sb;
                r->base = strcmp(p, "-") && !stat(p, &sb) && S_ISDIR(sb.st_mode) ? NULL : base_dir(p);
            }
        }
        int got = r->in ? next_jsonl(r, s) : next_tar(r, s);
        if (got == 0) {
            close_source(r);
            continue;
        }
        return got;
    }
}
