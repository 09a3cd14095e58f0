/* qw/st.h — safetensors files and sharded checkpoints.
 *
 * Reading: qw_st_open maps one .safetensors file, or a model directory
 * (model.safetensors, or shards listed by model.safetensors.index.json),
 * validates every header fully (header length inside the file, JSON,
 * offsets inside the data area and non-overlapping, dtype × shape = byte
 * size, known dtype) and exposes the tensors read-only.  Tensor data stays
 * in the mapping; it is valid until qw_st_close.
 *
 * Writing: collect tensors in a qw_st_writer (it copies nothing: the data
 * pointers must stay valid until the write), then write one file or shards.
 * Files are written to a temporary name, fsync'ed and renamed, so a crash
 * or a full disk never leaves a half-written file under the final name.
 *
 * Errors: 0 or QW_EXIT_* with a message naming the file and tensor
 * (qw/cli.h).  Bad files are QW_EXIT_DATA; I/O failures QW_EXIT_FAIL.
 */
#ifndef QW_ST_H
#define QW_ST_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    QW_DT_F32, QW_DT_F16, QW_DT_BF16, QW_DT_F64,
    QW_DT_I64, QW_DT_I32, QW_DT_I16, QW_DT_I8,
    QW_DT_U64, QW_DT_U32, QW_DT_U16, QW_DT_U8,
    QW_DT_BOOL, QW_DT_F8_E4M3, QW_DT_F8_E5M2,
    QW_DT_COUNT
} qw_dtype;

const char *qw_dtype_name(qw_dtype d);          /* "F32", "BF16" … as in the spec */
int qw_dtype_parse(const char *s, qw_dtype *d);  /* 0, or -1 if unknown */
size_t qw_dtype_size(qw_dtype d);                /* bytes per element */

#define QW_ST_MAX_DIMS 8

typedef struct {
    const char *name;
    qw_dtype dtype;
    int ndim;
    int64_t shape[QW_ST_MAX_DIMS];
    int64_t numel;
    const void *data;       /* inside the mapping */
    size_t nbytes;
    const char *file;       /* the file it lives in (for messages) */
} qw_st_tensor;

typedef struct qw_st qw_st;

/* path: a .safetensors file, an index .json, or a directory holding either
 * (model.safetensors.index.json is preferred over model.safetensors).  An
 * index names its shards by weight_map; each shard is opened once, a name
 * listed but absent from its shard, or a shard tensor the index does not
 * list, is QW_EXIT_DATA.  A file that cannot be opened is QW_EXIT_FAIL.
 * On failure *out is NULL. */
int qw_st_open(const char *path, qw_st **out);
void qw_st_close(qw_st *st);
/* The path given to qw_st_open (for messages). */
const char *qw_st_path(const qw_st *st);
int qw_st_count(const qw_st *st);
/* In data order: shards by file name, tensors by offset within a file.
 * `data` may be unaligned: read it with memcpy or the converters below. */
const qw_st_tensor *qw_st_at(const qw_st *st, int i);
const qw_st_tensor *qw_st_find(const qw_st *st, const char *name);  /* NULL if absent */
/* The "__metadata__" value for key, or NULL. */
const char *qw_st_metadata(const qw_st *st, const char *key);

/* Convert a tensor of any float dtype (F32, F16, BF16, F64, F8_E4M3,
 * F8_E5M2) or integer/BOOL dtype to float32 into dst (numel floats).
 * Never fails (returns 0); kept int for symmetry. */
int qw_st_to_f32(const qw_st_tensor *t, float *dst);
/* The same for elements [first, first + n) of the flattened tensor (the
 * caller keeps the range inside numel): for streaming large tensors. */
int qw_st_to_f32_range(const qw_st_tensor *t, int64_t first, int64_t n, float *dst);
/* Integer and BOOL tensors to int64; a float dtype, or a U64 value above
 * INT64_MAX, is QW_EXIT_DATA naming the file and tensor. */
int qw_st_to_i64(const qw_st_tensor *t, int64_t *dst);
/* 1 for F32, F16, BF16, F64 and the F8 types. */
int qw_dtype_is_float(qw_dtype d);

/* ---- writing ---- */
typedef struct qw_st_writer qw_st_writer;

qw_st_writer *qw_st_writer_new(void);
/* Add a tensor; name is copied, data is not. */
void qw_st_writer_add(qw_st_writer *w, const char *name, qw_dtype dtype, int ndim,
                      const int64_t *shape, const void *data);
/* Add float32 data to be stored as `dtype` (F32, BF16 with round-to-nearest-
 * even, or F16); converted at write time. */
void qw_st_writer_add_f32(qw_st_writer *w, const char *name, qw_dtype dtype, int ndim,
                          const int64_t *shape, const float *data);
void qw_st_writer_meta(qw_st_writer *w, const char *key, const char *value);
/* Write one file.  A bad shape or dtype (add_f32 with a dtype other than
 * F32/BF16/F16), or a name added twice, is QW_EXIT_FAIL before anything is
 * written; a write error (full disk …) is QW_EXIT_FAIL naming the file and
 * strerror, with the temporary file removed and any old file kept. */
int qw_st_writer_write(qw_st_writer *w, const char *path);
/* Write `dir`/model.safetensors, or shards model-0000i-of-0000N.safetensors
 * of at most max_shard_bytes each (a larger tensor gets a shard of its own)
 * plus model.safetensors.index.json ({"metadata": {"total_size": bytes},
 * "weight_map": {name: shard}}) when the total is larger (max_shard_bytes
 * 0: never shard).  Creates dir (and parents); removes the index or the
 * single file left by an earlier save of the other kind.  Every shard
 * carries the writer's metadata.  Tensors are written in the order added. */
int qw_st_writer_write_dir(qw_st_writer *w, const char *dir, size_t max_shard_bytes);
void qw_st_writer_free(qw_st_writer *w);

/* ---- files ---- */
/* "[2,3,4]": a shape as messages and listings print it, in buf (of cap
 * bytes; cut short when too small); returns buf. */
const char *qw_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap);
/* mkdir -p; QW_EXIT_FAIL with strerror on failure. */
int qw_st_mkdirs(const char *dir);

/* bf16 <-> f32 (round to nearest even), shared by every backend. */
static inline float qw_bf16_to_f32(uint16_t h)
{
    union { uint32_t u; float f; } x = { (uint32_t)h << 16 };
    return x.f;
}
static inline uint16_t qw_f32_to_bf16(float f)
{
    union { float f; uint32_t u; } x = { f };
    if ((x.u & 0x7fffffff) > 0x7f800000) return (uint16_t)((x.u >> 16) | 0x40);  /* NaN stays NaN */
    return (uint16_t)((x.u + 0x7fff + ((x.u >> 16) & 1)) >> 16);
}

#endif
