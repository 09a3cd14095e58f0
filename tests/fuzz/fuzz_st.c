/* fuzz_st.c — safetensors files (libcore/st.c): the header is validated on
 * open, then every tensor is looked up by name and converted, as qw-ckpt,
 * qw-eval forward (its input ids) and checkpoint loading do. */
#include "fuzz.h"

#include "qw/st.h"

static char *path;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    path = fz_path("model.safetensors");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_write(path, data, size);
    qw_st *st;
    int rc = qw_st_open(path, &st);
    fz_expect(rc, FZ_DATA, path);
    if (rc) return 0;
    qw_st_metadata(st, "format");
    for (int i = 0; i < qw_st_count(st) && i < FZ_MAX_ITEMS; i++) {
        const qw_st_tensor *t = qw_st_at(st, i);
        if (qw_st_find(st, t->name) != t) fz_fatal("a tensor not found by its name", 0);
        if ((size_t)t->numel * qw_dtype_size(t->dtype) != t->nbytes) fz_fatal("numel and bytes disagree", 0);
        char shape[64];
        qw_shape_str(t->ndim, t->shape, shape, sizeof shape);
        float *f = qw_malloc((size_t)t->numel * sizeof *f + 1);
        qw_st_to_f32(t, f);
        if (t->numel > 2) qw_st_to_f32_range(t, 1, t->numel - 2, f);
        free(f);
        if (!qw_dtype_is_float(t->dtype)) {
            int64_t *v = qw_malloc((size_t)t->numel * sizeof *v + 1);
            fz_expect(qw_st_to_i64(t, v), FZ_DATA, path);
            free(v);
        }
    }
    qw_st_close(st);
    return 0;
}
