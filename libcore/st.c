/* st.c — safetensors: validating mmap reader, sharded index, atomic writer. */
#include "qw/st.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/file.h"
#include "qw/hash.h"

/* ---- dtypes ---- */

static const struct { const char *name; size_t size; } dtypes[QW_DT_COUNT] = {
    [QW_DT_F32] = {"F32", 4}, [QW_DT_F16] = {"F16", 2}, [QW_DT_BF16] = {"BF16", 2},
    [QW_DT_F64] = {"F64", 8}, [QW_DT_I64] = {"I64", 8}, [QW_DT_I32] = {"I32", 4},
    [QW_DT_I16] = {"I16", 2}, [QW_DT_I8] = {"I8", 1}, [QW_DT_U64] = {"U64", 8},
    [QW_DT_U32] = {"U32", 4}, [QW_DT_U16] = {"U16", 2}, [QW_DT_U8] = {"U8", 1},
    [QW_DT_BOOL] = {"BOOL", 1}, [QW_DT_F8_E4M3] = {"F8_E4M3", 1}, [QW_DT_F8_E5M2] = {"F8_E5M2", 1},
};

const char *qw_dtype_name(qw_dtype d) { return d < QW_DT_COUNT ? dtypes[d].name : "?"; }
size_t qw_dtype_size(qw_dtype d) { return d < QW_DT_COUNT ? dtypes[d].size : 0; }

int qw_dtype_parse(const char *s, qw_dtype *d)
{
    for (int i = 0; i < QW_DT_COUNT; i++)
        if (!strcmp(s, dtypes[i].name)) { *d = (qw_dtype)i; return 0; }
    return -1;
}

int qw_dtype_is_float(qw_dtype d)
{
    return d == QW_DT_F32 || d == QW_DT_F16 || d == QW_DT_BF16 || d == QW_DT_F64 ||
           d == QW_DT_F8_E4M3 || d == QW_DT_F8_E5M2;
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023;
    union { uint32_t u; float f; } x;
    if (e == 31) x.u = sign | 0x7f800000u | (m << 13);
    else if (e) x.u = sign | ((e + 112) << 23) | (m << 13);
    else {
        x.f = (float)m * 0x1p-24f;
        x.u |= sign;
    }
    return x.f;
}

static uint16_t f32_to_f16(float f)
{
    union { float f; uint32_t u; } x = { f };
    uint32_t sign = (x.u >> 16) & 0x8000, a = x.u & 0x7fffffff;
    if (a > 0x7f800000) return (uint16_t)(sign | 0x7e00);          /* NaN */
    if (a >= 0x477ff000) return (uint16_t)(sign | 0x7c00);         /* rounds past 65504: inf */
    if (a < 0x38800000) {                                           /* subnormal or zero */
        union { uint32_t u; float f; } y = { a };
        float s = y.f * 0x1p24f;                                    /* exact; rint rounds to even */
        return (uint16_t)(sign | (uint32_t)rintf(s));
    }
    uint32_t r = a + 0xfff + ((a >> 13) & 1);
    return (uint16_t)(sign | ((r - (112u << 23)) >> 13));
}

static float f8e4m3_to_f32(uint8_t b)
{
    int e = (b >> 3) & 15, m = b & 7;
    float v;
    if (e == 15 && m == 7) v = NAN;
    else if (e == 0) v = ldexpf((float)m, -9);
    else v = ldexpf((float)(8 + m), e - 10);
    return b & 0x80 ? -v : v;
}

#define LOAD(T, p, i) ({ T v_; memcpy(&v_, (const char *)(p) + (size_t)(i) * sizeof(T), sizeof(T)); v_; })

int qw_st_to_f32(const qw_st_tensor *t, float *dst) { return qw_st_to_f32_range(t, 0, t->numel, dst); }

int qw_st_to_f32_range(const qw_st_tensor *t, int64_t first, int64_t n, float *dst)
{
    const void *p = (const char *)t->data + (size_t)first * qw_dtype_size(t->dtype);
    if (t->dtype == QW_DT_F32) { memcpy(dst, p, n * 4); return 0; }
    #pragma omp parallel for schedule(static) if (n > (1 << 20))
    for (int64_t i = 0; i < n; i++) {
        float v = 0;
        switch (t->dtype) {
        case QW_DT_F16: v = f16_to_f32(LOAD(uint16_t, p, i)); break;
        case QW_DT_BF16: v = qw_bf16_to_f32(LOAD(uint16_t, p, i)); break;
        case QW_DT_F64: v = (float)LOAD(double, p, i); break;
        case QW_DT_F8_E4M3: v = f8e4m3_to_f32(LOAD(uint8_t, p, i)); break;
        case QW_DT_F8_E5M2: v = f16_to_f32((uint16_t)(LOAD(uint8_t, p, i) << 8)); break;
        case QW_DT_I64: v = (float)LOAD(int64_t, p, i); break;
        case QW_DT_I32: v = (float)LOAD(int32_t, p, i); break;
        case QW_DT_I16: v = LOAD(int16_t, p, i); break;
        case QW_DT_I8: v = LOAD(int8_t, p, i); break;
        case QW_DT_U64: v = (float)LOAD(uint64_t, p, i); break;
        case QW_DT_U32: v = (float)LOAD(uint32_t, p, i); break;
        case QW_DT_U16: v = LOAD(uint16_t, p, i); break;
        case QW_DT_U8: v = LOAD(uint8_t, p, i); break;
        case QW_DT_BOOL: v = LOAD(uint8_t, p, i) != 0; break;
        default: break;
        }
        dst[i] = v;
    }
    return 0;
}

int qw_st_to_i64(const qw_st_tensor *t, int64_t *dst)
{
    const void *p = t->data;
    if (qw_dtype_is_float(t->dtype))
        return qw_error(QW_EXIT_DATA, "'%s': tensor '%s': dtype %s is not an integer type", t->file, t->name,
                        qw_dtype_name(t->dtype));
    for (int64_t i = 0; i < t->numel; i++) {
        switch (t->dtype) {
        case QW_DT_I64: dst[i] = LOAD(int64_t, p, i); break;
        case QW_DT_I32: dst[i] = LOAD(int32_t, p, i); break;
        case QW_DT_I16: dst[i] = LOAD(int16_t, p, i); break;
        case QW_DT_I8: dst[i] = LOAD(int8_t, p, i); break;
        case QW_DT_U64: {
            uint64_t v = LOAD(uint64_t, p, i);
            if (v > INT64_MAX)
                return qw_error(QW_EXIT_DATA, "'%s': tensor '%s': element %lld: %llu does not fit in int64", t->file,
                                t->name, (long long)i, (unsigned long long)v);
            dst[i] = (int64_t)v;
            break;
        }
        case QW_DT_U32: dst[i] = LOAD(uint32_t, p, i); break;
        case QW_DT_U16: dst[i] = LOAD(uint16_t, p, i); break;
        case QW_DT_U8: dst[i] = LOAD(uint8_t, p, i); break;
        case QW_DT_BOOL: dst[i] = LOAD(uint8_t, p, i) != 0; break;
        default: break;
        }
    }
    return 0;
}

/* ---- reading ---- */

typedef struct {
    char *path;
    unsigned char *map;
    size_t size;
} st_file;

struct qw_st {
    char *path;
    int n, cap;
    qw_st_tensor *t;
    int nfiles;
    st_file *files;
    int nmeta;
    char **meta_k, **meta_v;
    int *slot;          /* open addressing over t: index + 1, 0 empty */
    size_t nslot;       /* power of two */
};

const char *qw_st_path(const qw_st *st) { return st->path; }
int qw_st_count(const qw_st *st) { return st->n; }
const qw_st_tensor *qw_st_at(const qw_st *st, int i) { return i >= 0 && i < st->n ? &st->t[i] : NULL; }

const char *qw_st_metadata(const qw_st *st, const char *key)
{
    for (int i = 0; i < st->nmeta; i++)
        if (!strcmp(st->meta_k[i], key)) return st->meta_v[i];
    return NULL;
}

static size_t name_slot(const qw_st *st, const char *name)
{
    size_t mask = st->nslot - 1, h = (size_t)qw_hash64(QW_HASH64_INIT, name, strlen(name)) & mask;
    while (st->slot[h] && strcmp(st->t[st->slot[h] - 1].name, name)) h = (h + 1) & mask;
    return h;
}

const qw_st_tensor *qw_st_find(const qw_st *st, const char *name)
{
    if (!st->nslot) return NULL;
    size_t h = name_slot(st, name);
    return st->slot[h] ? &st->t[st->slot[h] - 1] : NULL;
}

/* Index tensors [from, n) by name; a name seen before is an error. */
static int index_names(qw_st *st, int from)
{
    if ((size_t)st->n * 2 > st->nslot) {
        size_t ns = 64;
        while (ns < (size_t)st->n * 2) ns *= 2;
        free(st->slot);
        st->slot = qw_calloc(ns, sizeof *st->slot);
        st->nslot = ns;
        from = 0;
    }
    for (int i = from; i < st->n; i++) {
        size_t h = name_slot(st, st->t[i].name);
        if (st->slot[h]) {
            const qw_st_tensor *o = &st->t[st->slot[h] - 1];
            if (o->file == st->t[i].file)
                return qw_error(QW_EXIT_DATA, "'%s': tensor '%s' appears twice", st->t[i].file, st->t[i].name);
            return qw_error(QW_EXIT_DATA, "'%s': tensor '%s' is also in '%s'", st->t[i].file, st->t[i].name, o->file);
        }
        st->slot[h] = i + 1;
    }
    return 0;
}

/* A JSON number that is a non-negative integer below 2^53. */
static int json_count(const cJSON *j, int64_t *v)
{
    if (!cJSON_IsNumber(j)) return -1;
    double d = j->valuedouble;
    if (!(d >= 0 && d < 9007199254740992.0) || d != floor(d)) return -1;
    *v = (int64_t)d;
    return 0;
}

typedef struct { int64_t begin, end; int idx; } span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : x->idx - y->idx;
}

const char *qw_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap)
{
    size_t k = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && k < cap; d++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%lld", d ? "," : "", (long long)shape[d]);
    if (k < cap) snprintf(buf + k, cap - k, "]");
    return buf;
}

static int parse_entry(st_file *f, const cJSON *e, size_t data_size, qw_st_tensor *t, span *sp)
{
    const char *name = e->string;
    if (!cJSON_IsObject(e)) return qw_error(QW_EXIT_DATA, "'%s': tensor '%s': entry is not a JSON object", f->path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return qw_error(QW_EXIT_DATA, "'%s': tensor '%s': no dtype string", f->path, name);
    if (qw_dtype_parse(dt->valuestring, &t->dtype))
        return qw_error(QW_EXIT_DATA, "'%s': tensor '%s': unknown dtype '%s'", f->path, name, dt->valuestring);
    if (!cJSON_IsArray(sh)) return qw_error(QW_EXIT_DATA, "'%s': tensor '%s': no shape array", f->path, name);
    int nd = cJSON_GetArraySize(sh);
    if (nd > QW_ST_MAX_DIMS)
        return qw_error(QW_EXIT_DATA, "'%s': tensor '%s': %d dimensions (at most %d)", f->path, name, nd, QW_ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    int overflow = 0;
    for (int d = 0; d < nd; d++) {
        if (json_count(cJSON_GetArrayItem(sh, d), &t->shape[d]))
            return qw_error(QW_EXIT_DATA, "'%s': tensor '%s': shape[%d] is not a non-negative integer", f->path, name, d);
        overflow |= __builtin_mul_overflow(numel, (uint64_t)t->shape[d], &numel);
    }
    uint64_t nbytes;
    overflow |= __builtin_mul_overflow(numel, (uint64_t)qw_dtype_size(t->dtype), &nbytes);
    int64_t b, en;
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || json_count(cJSON_GetArrayItem(off, 0), &b) ||
        json_count(cJSON_GetArrayItem(off, 1), &en))
        return qw_error(QW_EXIT_DATA, "'%s': tensor '%s': data_offsets is not [begin, end]", f->path, name);
    if (b > en || (uint64_t)en > data_size)
        return qw_error(QW_EXIT_DATA, "'%s': tensor '%s': data_offsets [%lld, %lld] outside the data area (%zu bytes)",
                        f->path, name, (long long)b, (long long)en, data_size);
    if (overflow || (uint64_t)(en - b) != nbytes) {
        char s[256];
        qw_shape_str(t->ndim, t->shape, s, sizeof s);
        return qw_error(QW_EXIT_DATA, "'%s': tensor '%s': %lld bytes for %s %s", f->path, name, (long long)(en - b),
                        dt->valuestring, s);
    }
    t->numel = (int64_t)numel;
    t->nbytes = (size_t)nbytes;
    t->data = f->map + 8 + (f->size - 8 - data_size) + b;
    t->file = f->path;
    t->name = qw_strdup(name);
    sp->begin = b;
    sp->end = en;
    return 0;
}

static void add_meta(qw_st *st, const char *k, const char *v)
{
    if (qw_st_metadata(st, k)) return;   /* first shard wins */
    st->meta_k = qw_realloc(st->meta_k, (st->nmeta + 1) * sizeof *st->meta_k);
    st->meta_v = qw_realloc(st->meta_v, (st->nmeta + 1) * sizeof *st->meta_v);
    st->meta_k[st->nmeta] = qw_strdup(k);
    st->meta_v[st->nmeta++] = qw_strdup(v);
}

/* Map one file, validate its header, append its tensors in data order. */
static int add_file(qw_st *st, const char *path)
{
    st->files = qw_realloc(st->files, (st->nfiles + 1) * sizeof *st->files);
    st_file *f = &st->files[st->nfiles++];
    memset(f, 0, sizeof *f);
    f->path = qw_strdup(path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return qw_error(QW_EXIT_FAIL, "'%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb)) {
        int e = errno;
        close(fd);
        return qw_error(QW_EXIT_FAIL, "'%s': %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return qw_error(QW_EXIT_FAIL, "'%s': not a regular file", path);
    }
    f->size = (size_t)sb.st_size;
    if (f->size < 8) {
        close(fd);
        return qw_error(QW_EXIT_DATA, "'%s': %zu bytes, too short for a safetensors header", path, f->size);
    }
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        return qw_error(QW_EXIT_FAIL, "'%s': mmap: %s", path, strerror(errno));
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | f->map[i];
    if (hlen > f->size - 8)
        return qw_error(QW_EXIT_DATA, "'%s': header length %llu runs past the end of the file (%zu bytes)", path,
                        (unsigned long long)hlen, f->size);
    const char *end = NULL;
    cJSON *h = cJSON_ParseWithLengthOpts((const char *)f->map + 8, hlen, &end, 0);
    if (!h) return qw_error(QW_EXIT_DATA, "'%s': header is not valid JSON", path);
    for (const char *p = end; p < (const char *)f->map + 8 + hlen; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            cJSON_Delete(h);
            return qw_error(QW_EXIT_DATA, "'%s': header has bytes after the JSON object", path);
        }
    if (!cJSON_IsObject(h)) {
        cJSON_Delete(h);
        return qw_error(QW_EXIT_DATA, "'%s': header is not a JSON object", path);
    }
    size_t data_size = f->size - 8 - hlen;
    int first = st->n, rc = 0, nspan = 0;
    span *sp = qw_malloc((cJSON_GetArraySize(h) + 1) * sizeof *sp);
    const cJSON *e;
    cJSON_ArrayForEach(e, h) {
        if (!strcmp(e->string, "__metadata__")) {
            if (!cJSON_IsObject(e)) { rc = qw_error(QW_EXIT_DATA, "'%s': __metadata__ is not an object", path); break; }
            const cJSON *m;
            cJSON_ArrayForEach(m, e) {
                if (!cJSON_IsString(m)) {
                    rc = qw_error(QW_EXIT_DATA, "'%s': __metadata__ '%s' is not a string", path, m->string);
                    break;
                }
                add_meta(st, m->string, m->valuestring);
            }
            if (rc) break;
            continue;
        }
        qw_st_tensor t = {0};
        if ((rc = parse_entry(f, e, data_size, &t, &sp[nspan]))) break;
        if (st->n == st->cap) {
            st->cap = st->cap ? 2 * st->cap : 64;
            st->t = qw_realloc(st->t, st->cap * sizeof *st->t);
        }
        sp[nspan].idx = st->n;
        st->t[st->n++] = t;
        nspan++;
    }
    cJSON_Delete(h);
    if (!rc) {
        qsort(sp, nspan, sizeof *sp, span_cmp);
        int64_t prev_end = 0, prev = -1;
        for (int i = 0; i < nspan && !rc; i++) {
            if (sp[i].begin == sp[i].end) continue;
            if (prev >= 0 && sp[i].begin < prev_end)
                rc = qw_error(QW_EXIT_DATA, "'%s': tensors '%s' and '%s' overlap", path, st->t[prev].name,
                              st->t[sp[i].idx].name);
            prev_end = sp[i].end;
            prev = sp[i].idx;
        }
    }
    if (!rc) {   /* reorder this file's tensors by offset */
        qw_st_tensor *tmp = qw_malloc((nspan + 1) * sizeof *tmp);
        for (int i = 0; i < nspan; i++) tmp[i] = st->t[sp[i].idx];
        memcpy(st->t + first, tmp, nspan * sizeof *tmp);
        free(tmp);
        rc = index_names(st, first);
    }
    free(sp);
    return rc;
}

static int read_small_file(const char *path, qw_buf *b)
{
    FILE *f = fopen(path, "rb");
    if (!f) return qw_error(QW_EXIT_FAIL, "'%s': %s", path, strerror(errno));
    char tmp[65536];
    size_t k;
    while ((k = fread(tmp, 1, sizeof tmp, f)) > 0) qw_buf_add(b, tmp, k);
    int bad = ferror(f);
    fclose(f);
    if (bad) return qw_error(QW_EXIT_FAIL, "'%s': read error", path);
    qw_buf_cstr(b);
    return 0;
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int open_index(qw_st *st, const char *path)
{
    qw_buf b = {0};
    int rc = read_small_file(path, &b);
    if (rc) return rc;
    cJSON *j = cJSON_ParseWithLength(b.p, b.n);
    qw_buf_free(&b);
    if (!j) return qw_error(QW_EXIT_DATA, "'%s': not valid JSON", path);
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(j, "weight_map");
    if (!cJSON_IsObject(wm)) {
        cJSON_Delete(j);
        return qw_error(QW_EXIT_DATA, "'%s': no weight_map object", path);
    }
    int n = cJSON_GetArraySize(wm), nu = 0;
    char **shards = qw_malloc((n + 1) * sizeof *shards);
    const cJSON *e;
    cJSON_ArrayForEach(e, wm) {
        if (!cJSON_IsString(e) || !*e->valuestring) {
            rc = qw_error(QW_EXIT_DATA, "'%s': weight_map: '%s' does not name a file", path, e->string);
            break;
        }
        shards[nu++] = e->valuestring;
    }
    if (!rc) {
        qsort(shards, nu, sizeof *shards, str_cmp);
        int k = 0;
        for (int i = 0; i < nu; i++)
            if (!k || strcmp(shards[k - 1], shards[i])) shards[k++] = shards[i];
        nu = k;
        char *dcopy = qw_strdup(path);
        const char *dir = dirname(dcopy);
        for (int i = 0; i < nu && !rc; i++) {
            qw_buf p = {0};
            if (shards[i][0] != '/') { qw_buf_adds(&p, dir); qw_buf_addc(&p, '/'); }
            qw_buf_adds(&p, shards[i]);
            rc = add_file(st, qw_buf_cstr(&p));
            qw_buf_free(&p);
        }
        free(dcopy);
    }
    /* every listed name is in its shard; every shard tensor is listed */
    char *listed = qw_calloc(st->n + 1, 1);
    for (e = wm->child; e && !rc; e = e->next) {
        const qw_st_tensor *t = qw_st_find(st, e->string);
        size_t ls = strlen(e->valuestring), lf = t ? strlen(t->file) : 0;
        if (!t || lf < ls || strcmp(t->file + lf - ls, e->valuestring) || (lf > ls && t->file[lf - ls - 1] != '/'))
            rc = qw_error(QW_EXIT_DATA, "'%s': tensor '%s' is listed in '%s' but not there", path, e->string,
                          e->valuestring);
        else listed[t - st->t] = 1;
    }
    for (int i = 0; i < st->n && !rc; i++)
        if (!listed[i])
            rc = qw_error(QW_EXIT_DATA, "'%s': tensor '%s' is not in the weight_map of '%s'", st->t[i].file,
                          st->t[i].name, path);
    free(listed);
    free(shards);
    cJSON_Delete(j);
    return rc;
}

static int is_file(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

int qw_st_open(const char *path, qw_st **out)
{
    qw_st *st = qw_calloc(1, sizeof *st);
    st->path = qw_strdup(path);
    struct stat sb;
    int rc;
    size_t len = strlen(path);
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        qw_buf idx = {0}, one = {0};
        qw_buf_adds(&idx, path);
        qw_buf_adds(&idx, "/model.safetensors.index.json");
        qw_buf_adds(&one, path);
        qw_buf_adds(&one, "/model.safetensors");
        if (is_file(qw_buf_cstr(&idx))) rc = open_index(st, idx.p);
        else if (is_file(qw_buf_cstr(&one))) rc = add_file(st, one.p);
        else rc = qw_error(QW_EXIT_DATA, "'%s': no model.safetensors or model.safetensors.index.json", path);
        qw_buf_free(&idx);
        qw_buf_free(&one);
    } else if (len >= 5 && !strcmp(path + len - 5, ".json")) {
        rc = open_index(st, path);
    } else {
        rc = add_file(st, path);
    }
    if (rc) {
        qw_st_close(st);
        *out = NULL;
        return rc;
    }
    *out = st;
    return 0;
}

void qw_st_close(qw_st *st)
{
    if (!st) return;
    for (int i = 0; i < st->n; i++) free((char *)st->t[i].name);
    for (int i = 0; i < st->nfiles; i++) {
        if (st->files[i].map) munmap(st->files[i].map, st->files[i].size);
        free(st->files[i].path);
    }
    for (int i = 0; i < st->nmeta; i++) { free(st->meta_k[i]); free(st->meta_v[i]); }
    free(st->meta_k);
    free(st->meta_v);
    free(st->files);
    free(st->t);
    free(st->slot);
    free(st->path);
    free(st);
}

/* ---- files ---- */

/* The content goes to a qw_afile; the first write error is kept. */
typedef struct {
    FILE *f;
    int err;        /* errno of the first failure */
} wfile;

static void wf_write(wfile *w, const void *p, size_t n)
{
    if (!w->err && n && fwrite(p, 1, n, w->f) != n) w->err = errno ? errno : EIO;
}

int qw_st_mkdirs(const char *dir)
{
    char *p = qw_strdup(dir);
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s) continue;
        char c = *s;
        *s = 0;
        if (mkdir(p, 0777) && errno != EEXIST) {
            rc = qw_error(QW_EXIT_FAIL, "'%s': %s", p, strerror(errno));
            break;
        }
        *s = c;
        if (!c) break;
    }
    free(p);
    return rc;
}

/* Write path atomically (qw/file.h); `fill` writes the content. */
static int write_atomic(const char *path, void (*fill)(wfile *, void *), void *arg)
{
    qw_afile a;
    int rc = qw_afile_open(path, &a);
    if (rc) return rc;
    setvbuf(a.f, NULL, _IOFBF, 1 << 20);
    wfile w = {a.f, 0};
    fill(&w, arg);
    if (w.err) {
        qw_afile_abort(&a);
        return qw_error(QW_EXIT_FAIL, "'%s': write error: %s", path, strerror(w.err));
    }
    return qw_afile_commit(&a);
}

/* ---- writing ---- */

typedef struct {
    char *name;
    qw_dtype dtype;
    int ndim;
    int64_t shape[QW_ST_MAX_DIMS];
    const void *data;
    int from_f32;
    size_t nbytes;
} wtensor;

struct qw_st_writer {
    int n, cap;
    wtensor *t;
    int nmeta;
    char **mk, **mv;
};

qw_st_writer *qw_st_writer_new(void) { return qw_calloc(1, sizeof(qw_st_writer)); }

static void writer_push(qw_st_writer *w, const char *name, qw_dtype dtype, int ndim, const int64_t *shape,
                        const void *data, int from_f32)
{
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->t = qw_realloc(w->t, w->cap * sizeof *w->t);
    }
    wtensor *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    t->name = qw_strdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim && d < QW_ST_MAX_DIMS; d++) t->shape[d] = shape[d];
    t->data = data;
    t->from_f32 = from_f32;
}

void qw_st_writer_add(qw_st_writer *w, const char *name, qw_dtype dtype, int ndim, const int64_t *shape,
                      const void *data)
{
    writer_push(w, name, dtype, ndim, shape, data, 0);
}

void qw_st_writer_add_f32(qw_st_writer *w, const char *name, qw_dtype dtype, int ndim, const int64_t *shape,
                          const float *data)
{
    writer_push(w, name, dtype, ndim, shape, data, 1);
}

void qw_st_writer_meta(qw_st_writer *w, const char *key, const char *value)
{
    for (int i = 0; i < w->nmeta; i++)
        if (!strcmp(w->mk[i], key)) {
            free(w->mv[i]);
            w->mv[i] = qw_strdup(value);
            return;
        }
    w->mk = qw_realloc(w->mk, (w->nmeta + 1) * sizeof *w->mk);
    w->mv = qw_realloc(w->mv, (w->nmeta + 1) * sizeof *w->mv);
    w->mk[w->nmeta] = qw_strdup(key);
    w->mv[w->nmeta++] = qw_strdup(value);
}

void qw_st_writer_free(qw_st_writer *w)
{
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->t[i].name);
    for (int i = 0; i < w->nmeta; i++) { free(w->mk[i]); free(w->mv[i]); }
    free(w->t);
    free(w->mk);
    free(w->mv);
    free(w);
}

static void json_str(qw_buf *b, const char *s)
{
    qw_buf_addc(b, '"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { qw_buf_addc(b, '\\'); qw_buf_addc(b, (char)c); }
        else if (c < 0x20) {
            char e[8];
            snprintf(e, sizeof e, "\\u%04x", c);
            qw_buf_adds(b, e);
        } else qw_buf_addc(b, (char)c);
    }
    qw_buf_addc(b, '"');
}

/* Shapes, dtypes, unique names; sets nbytes. */
static int writer_check(qw_st_writer *w)
{
    for (int i = 0; i < w->n; i++) {
        wtensor *t = &w->t[i];
        if (t->dtype >= QW_DT_COUNT || t->ndim < 0 || t->ndim > QW_ST_MAX_DIMS ||
            (t->from_f32 && t->dtype != QW_DT_F32 && t->dtype != QW_DT_BF16 && t->dtype != QW_DT_F16))
            return qw_error(QW_EXIT_FAIL, "tensor '%s': bad dtype or rank for writing", t->name);
        uint64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0 || __builtin_mul_overflow(numel, (uint64_t)t->shape[d], &numel))
                return qw_error(QW_EXIT_FAIL, "tensor '%s': bad shape for writing", t->name);
        }
        t->nbytes = (size_t)numel * qw_dtype_size(t->dtype);
        for (int j = 0; j < i; j++)
            if (!strcmp(w->t[j].name, t->name)) return qw_error(QW_EXIT_FAIL, "tensor '%s' added twice", t->name);
    }
    return 0;
}

typedef struct { qw_st_writer *w; int from, to; } wrange;

static void fill_tensors(wfile *f, void *arg)
{
    wrange *r = arg;
    qw_st_writer *w = r->w;
    qw_buf h = {0};
    qw_buf_addc(&h, '{');
    if (w->nmeta) {
        qw_buf_adds(&h, "\"__metadata__\":{");
        for (int i = 0; i < w->nmeta; i++) {
            if (i) qw_buf_addc(&h, ',');
            json_str(&h, w->mk[i]);
            qw_buf_addc(&h, ':');
            json_str(&h, w->mv[i]);
        }
        qw_buf_addc(&h, '}');
    }
    size_t off = 0;
    char num[64];
    for (int i = r->from; i < r->to; i++) {
        wtensor *t = &w->t[i];
        if (i > r->from || w->nmeta) qw_buf_addc(&h, ',');
        json_str(&h, t->name);
        qw_buf_adds(&h, ":{\"dtype\":");
        json_str(&h, qw_dtype_name(t->dtype));
        qw_buf_adds(&h, ",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)t->shape[d]);
            qw_buf_adds(&h, num);
        }
        snprintf(num, sizeof num, "],\"data_offsets\":[%zu,%zu]}", off, off + t->nbytes);
        qw_buf_adds(&h, num);
        off += t->nbytes;
    }
    qw_buf_addc(&h, '}');
    while (h.n % 8) qw_buf_addc(&h, ' ');
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    wf_write(f, len, 8);
    wf_write(f, h.p, h.n);
    qw_buf_free(&h);
    enum { CHUNK = 65536 };
    uint16_t *cv = qw_malloc(CHUNK * sizeof *cv);
    for (int i = r->from; i < r->to && !f->err; i++) {
        wtensor *t = &w->t[i];
        if (!t->from_f32 || t->dtype == QW_DT_F32) {
            wf_write(f, t->data, t->nbytes);
            continue;
        }
        const float *x = t->data;
        size_t n = t->nbytes / 2;
        for (size_t s = 0; s < n && !f->err; s += CHUNK) {
            size_t k = n - s < CHUNK ? n - s : CHUNK;
            for (size_t j = 0; j < k; j++)
                cv[j] = t->dtype == QW_DT_BF16 ? qw_f32_to_bf16(x[s + j]) : f32_to_f16(x[s + j]);
            wf_write(f, cv, k * 2);
        }
    }
    free(cv);
}

int qw_st_writer_write(qw_st_writer *w, const char *path)
{
    int rc = writer_check(w);
    if (rc) return rc;
    wrange r = {w, 0, w->n};
    return write_atomic(path, fill_tensors, &r);
}

typedef struct { const char *name, *file; } wm_entry;

static int wm_cmp(const void *a, const void *b) { return strcmp(((const wm_entry *)a)->name, ((const wm_entry *)b)->name); }

int qw_st_writer_write_dir(qw_st_writer *w, const char *dir, size_t max_shard_bytes)
{
    int rc = writer_check(w);
    if (!rc) rc = qw_st_mkdirs(dir);
    if (rc) return rc;
    size_t total = 0;
    for (int i = 0; i < w->n; i++) total += w->t[i].nbytes;
    char *single = qw_path_join(dir, "model.safetensors"), *index = qw_path_join(dir, "model.safetensors.index.json");
    if (!max_shard_bytes || total <= max_shard_bytes) {
        wrange r = {w, 0, w->n};
        rc = write_atomic(single, fill_tensors, &r);
        if (!rc) unlink(index);
        free(single);
        free(index);
        return rc;
    }
    int *start = qw_malloc((w->n + 2) * sizeof *start), ns = 0;
    size_t acc = 0;
    for (int i = 0; i < w->n; i++) {
        if (i == 0 || (acc + w->t[i].nbytes > max_shard_bytes && acc > 0)) { start[ns++] = i; acc = 0; }
        acc += w->t[i].nbytes;
    }
    start[ns] = w->n;
    wm_entry *wm = qw_malloc((w->n + 1) * sizeof *wm);
    char **names = qw_calloc(ns, sizeof *names);
    for (int s = 0; s < ns && !rc; s++) {
        char fn[64];
        snprintf(fn, sizeof fn, "model-%05d-of-%05d.safetensors", s + 1, ns);
        names[s] = qw_strdup(fn);
        char *p = qw_path_join(dir, fn);
        wrange r = {w, start[s], start[s + 1]};
        rc = write_atomic(p, fill_tensors, &r);
        free(p);
        for (int i = start[s]; i < start[s + 1]; i++) wm[i] = (wm_entry){w->t[i].name, names[s]};
    }
    if (!rc) {
        qsort(wm, w->n, sizeof *wm, wm_cmp);
        qw_buf j = {0};
        char num[64];
        snprintf(num, sizeof num, "{\n  \"metadata\": {\n    \"total_size\": %zu\n  },\n", total);
        qw_buf_adds(&j, num);
        qw_buf_adds(&j, "  \"weight_map\": {\n");
        for (int i = 0; i < w->n; i++) {
            qw_buf_adds(&j, "    ");
            json_str(&j, wm[i].name);
            qw_buf_adds(&j, ": ");
            json_str(&j, wm[i].file);
            qw_buf_adds(&j, i + 1 < w->n ? ",\n" : "\n");
        }
        qw_buf_adds(&j, "  }\n}\n");
        rc = qw_write_file_atomic(index, j.p, j.n);
        qw_buf_free(&j);
        if (!rc) unlink(single);
    }
    for (int s = 0; s < ns; s++) free(names[s]);
    free(names);
    free(wm);
    free(start);
    free(single);
    free(index);
    return rc;
}
