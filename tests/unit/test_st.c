/* test_st.c — safetensors reader validation, conversions, writer, shards, atomic writes. */
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>

#include "qwtest.h"
#include "qw/cli.h"
#include "qw/file.h"
#include "qw/st.h"

static char dir[256];

static const char *tpath(const char *name) { return qwtest_join(dir, name); }

/* A file of: 8-byte length `hlen` (or the header's), header, `ndata` bytes of data. */
static void write_raw(const char *path, const char *header, long long hlen, size_t ndata)
{
    FILE *f = fopen(path, "wb");
    uint64_t n = hlen >= 0 ? (uint64_t)hlen : strlen(header);
    for (int i = 0; i < 8; i++) fputc((int)(n >> (8 * i)) & 255, f);
    fputs(header, f);
    for (size_t i = 0; i < ndata; i++) fputc((int)i & 255, f);
    fclose(f);
}

/* Opening fails with QW_EXIT_DATA and the message contains `want` and the file name. */
static int bad(const char *header, long long hlen, size_t ndata, const char *want)
{
    const char *p = tpath("bad.safetensors");
    write_raw(p, header, hlen, ndata);
    qw_st *st = NULL;
    qw_error_clear();
    int rc = qw_st_open(p, &st);
    int ok = rc == QW_EXIT_DATA && !st && strstr(qw_error_msg(), want) && strstr(qw_error_msg(), "bad.safetensors");
    if (!ok) fprintf(stderr, "  rc %d, message '%s', wanted '%s'\n", rc, qw_error_msg(), want);
    return ok;
}

TEST(dtypes)
{
    qw_dtype d;
    CHECK(qw_dtype_parse("BF16", &d) == 0 && d == QW_DT_BF16);
    CHECK(qw_dtype_parse("F8_E4M3", &d) == 0 && d == QW_DT_F8_E4M3);
    CHECK(qw_dtype_parse("bf16", &d) == -1);
    CHECK(qw_dtype_size(QW_DT_I64) == 8 && qw_dtype_size(QW_DT_BOOL) == 1);
    CHECK_STR(qw_dtype_name(QW_DT_U16), "U16");
    CHECK(qw_dtype_is_float(QW_DT_F16) && !qw_dtype_is_float(QW_DT_I8));
}

TEST(header_validation)
{
    const char *t1 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    FILE *f = fopen(tpath("bad.safetensors"), "wb");
    fwrite("\x10\0\0\0\0", 1, 5, f);
    fclose(f);
    qw_st *st = NULL;
    CHECK(qw_st_open(tpath("bad.safetensors"), &st) == QW_EXIT_DATA && strstr(qw_error_msg(), "5 bytes, too short"));
    CHECK(bad(t1, 1000, 8, "runs past the end"));
    CHECK(bad("{\"a\":{\"dtype\":\"F32\",", -1, 8, "not valid JSON"));
    CHECK(bad("[1,2]", -1, 0, "not a JSON object"));
    CHECK(bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}xx", -1, 8, "after the JSON"));
    CHECK(bad("{\"w\":{\"dtype\":\"F17\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 8, "tensor 'w': unknown dtype 'F17'"));
    CHECK(bad("{\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 8, "tensor 'w': no dtype"));
    CHECK(bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", -1, 8, "tensor 'w': shape[0]"));
    CHECK(bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,8]}}", -1, 8, "tensor 'w': shape[0]"));
    CHECK(bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", -1, 8, "tensor 'w': data_offsets [0, 16] outside"));
    CHECK(bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", -1, 8, "tensor 'w': data_offsets"));
    CHECK(bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", -1, 8, "tensor 'w': data_offsets"));
    CHECK(bad("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", -1, 8, "tensor 'w': 8 bytes for F32 [3]"));
    CHECK(bad("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,4]}}", -1, 8, "tensor 'w': 4 bytes for BF16 [2,2]"));
    CHECK(bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", -1, 12, "tensors 'a' and 'b' overlap"));
    CHECK(bad("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", -1, 8, "tensor 'a' appears twice"));
    CHECK(bad("{\"__metadata__\":{\"format\":1}}", -1, 0, "__metadata__ 'format' is not a string"));
    CHECK(bad("{\"w\":[1]}", -1, 0, "tensor 'w': entry is not a JSON object"));
    /* valid: zero-size tensors, empty shape (scalar), unsorted offsets, padding spaces */
    const char *ok = "{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[4,8]},"
                     "\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                     "\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[8,8]}}   ";
    write_raw(tpath("ok.safetensors"), ok, -1, 8);
    CHECK(qw_st_open(tpath("ok.safetensors"), &st) == 0);
    if (!st) return;
    CHECK(qw_st_count(st) == 3);
    CHECK_STR(qw_st_at(st, 0)->name, "a");   /* data order */
    CHECK_STR(qw_st_at(st, 1)->name, "b");
    CHECK(qw_st_find(st, "b")->ndim == 0 && qw_st_find(st, "b")->numel == 1);
    CHECK(qw_st_find(st, "z")->numel == 0);
    CHECK(qw_st_find(st, "nope") == NULL);
    CHECK_STR(qw_st_metadata(st, "format"), "pt");
    int64_t v[4];
    CHECK(qw_st_to_i64(qw_st_find(st, "a"), v) == 0 && v[0] == 0 && v[3] == 3);
    CHECK(qw_st_to_i64(qw_st_find(st, "b"), v) == 0 && v[0] == 0x07060504);
    qw_st_close(st);
}

TEST(round_trip_and_conversions)
{
    float f[6] = {1.0f, -2.5f, 1.00390625f, 1.01171875f, 3.0e-8f, 65520.0f};
    int64_t ids[2][3] = {{1, 2, 3}, {-4, 5, 1LL << 40}};
    double dd[2] = {0.1, -7.0};
    uint16_t h16[4] = {0x3c00, 0x0001, 0x7c00, 0xc000};   /* 1, 2^-24, inf, -2 */
    uint8_t e4[3] = {0x38, 0x01, 0xb8}, e5[2] = {0x3c, 0xc0};
    int64_t s6[1] = {6}, s23[2] = {2, 3}, s4[1] = {4}, s3[1] = {3}, s2[1] = {2};
    qw_st_writer *w = qw_st_writer_new();
    qw_st_writer_add(w, "f32", QW_DT_F32, 1, s6, f);
    qw_st_writer_add_f32(w, "bf16", QW_DT_BF16, 1, s6, f);
    qw_st_writer_add_f32(w, "f16", QW_DT_F16, 1, s6, f);
    qw_st_writer_add(w, "ids", QW_DT_I64, 2, s23, ids);
    qw_st_writer_add(w, "f64", QW_DT_F64, 1, s2, dd);
    qw_st_writer_add(w, "h16", QW_DT_F16, 1, s4, h16);
    qw_st_writer_add(w, "e4", QW_DT_F8_E4M3, 1, s3, e4);
    qw_st_writer_add(w, "e5", QW_DT_F8_E5M2, 1, s2, e5);
    qw_st_writer_meta(w, "format", "pt");
    qw_st_writer_meta(w, "note", "a \"quoted\" value");
    CHECK(qw_st_writer_write(w, tpath("rt.safetensors")) == 0);
    qw_st_writer_free(w);

    qw_st *st = NULL;
    CHECK(qw_st_open(tpath("rt.safetensors"), &st) == 0);
    if (!st) return;
    CHECK(qw_st_count(st) == 8);
    CHECK_STR(qw_st_at(st, 0)->name, "f32");
    CHECK_STR(qw_st_metadata(st, "note"), "a \"quoted\" value");
    float g[6];
    CHECK(qw_st_to_f32(qw_st_find(st, "f32"), g) == 0 && !memcmp(g, f, sizeof f));
    const qw_st_tensor *b = qw_st_find(st, "bf16");
    CHECK(b->dtype == QW_DT_BF16 && b->nbytes == 12);
    qw_st_to_f32(b, g);
    CHECK(g[0] == 1.0f && g[1] == -2.5f);
    CHECK(g[2] == 1.0f);          /* halfway, rounds to even (down) */
    CHECK(g[3] == 1.015625f);     /* halfway, rounds to even (up) */
    float part[2];
    CHECK(qw_st_to_f32_range(b, 2, 2, part) == 0 && part[0] == g[2] && part[1] == g[3]);
    CHECK(qw_st_to_f32_range(qw_st_find(st, "f32"), 4, 2, part) == 0 && part[0] == f[4] && part[1] == f[5]);
    qw_st_to_f32(qw_st_find(st, "f16"), g);
    CHECK(g[0] == 1.0f && g[1] == -2.5f && g[2] == 1.00390625f);
    CHECK(g[4] == 0x1p-24f);      /* 3e-8 is 0.503 of the smallest subnormal half */
    CHECK(isinf(g[5]));           /* 65520 is halfway to 65536: rounds to inf */
    int64_t v[6];
    CHECK(qw_st_to_i64(qw_st_find(st, "ids"), v) == 0 && v[3] == -4 && v[5] == 1LL << 40);
    CHECK(qw_st_find(st, "ids")->shape[1] == 3);
    qw_error_clear();
    CHECK(qw_st_to_i64(qw_st_find(st, "f32"), v) == QW_EXIT_DATA && strstr(qw_error_msg(), "'f32': dtype F32"));
    qw_st_to_f32(qw_st_find(st, "f64"), g);
    CHECK(g[0] == 0.1f && g[1] == -7.0f);
    qw_st_to_f32(qw_st_find(st, "h16"), g);
    CHECK(g[0] == 1.0f && g[1] == 0x1p-24f && isinf(g[2]) && g[3] == -2.0f);
    qw_st_to_f32(qw_st_find(st, "e4"), g);
    CHECK(g[0] == 1.0f && g[1] == 0x1p-9f && g[2] == -1.0f);
    qw_st_to_f32(qw_st_find(st, "e5"), g);
    CHECK(g[0] == 1.0f && g[1] == -2.0f);
    qw_st_close(st);
}

TEST(writer_rejects)
{
    int64_t s[1] = {2};
    float x[2] = {0};
    qw_st_writer *w = qw_st_writer_new();
    qw_st_writer_add(w, "a", QW_DT_F32, 1, s, x);
    qw_st_writer_add(w, "a", QW_DT_F32, 1, s, x);
    CHECK(qw_st_writer_write(w, tpath("dup.safetensors")) == QW_EXIT_FAIL && strstr(qw_error_msg(), "'a' added twice"));
    qw_st_writer_free(w);
    w = qw_st_writer_new();
    qw_st_writer_add_f32(w, "a", QW_DT_I32, 1, s, x);
    CHECK(qw_st_writer_write(w, tpath("dup.safetensors")) == QW_EXIT_FAIL);
    qw_st_writer_free(w);
    CHECK(access(tpath("dup.safetensors"), F_OK) != 0);
    w = qw_st_writer_new();
    qw_st_writer_add(w, "a", QW_DT_F32, 1, s, x);
    CHECK(qw_st_writer_write(w, tpath("no/such/dir/x.safetensors")) == QW_EXIT_FAIL &&
          strstr(qw_error_msg(), "x.safetensors"));
    qw_st_writer_free(w);
}

static int count_tmp_files(void)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strstr(e->d_name, ".tmp") != NULL;
    closedir(d);
    return n;
}

TEST(full_disk_keeps_old_file)
{
    static float big[65536];
    int64_t s[1] = {65536}, s1[1] = {1};
    qw_st_writer *w = qw_st_writer_new();
    qw_st_writer_add(w, "old", QW_DT_F32, 1, s1, big);
    CHECK(qw_st_writer_write(w, tpath("full.safetensors")) == 0);
    qw_st_writer_free(w);

    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 16384;   /* a 16 KiB "disk" */
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    w = qw_st_writer_new();
    qw_st_writer_add(w, "big", QW_DT_F32, 1, s, big);
    qw_error_clear();
    int rc = qw_st_writer_write(w, tpath("full.safetensors"));
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    qw_st_writer_free(w);
    CHECK(rc == QW_EXIT_FAIL);
    CHECK_MSG(strstr(qw_error_msg(), "full.safetensors': write error: File too large"), "%s", qw_error_msg());
    CHECK(count_tmp_files() == 0);
    qw_st *st = NULL;
    CHECK(qw_st_open(tpath("full.safetensors"), &st) == 0 && qw_st_find(st, "old"));
    qw_st_close(st);
}

TEST(sharded_dir)
{
    static float a[100], b[300], c[50];
    for (int i = 0; i < 100; i++) a[i] = i;
    for (int i = 0; i < 300; i++) b[i] = -i;
    for (int i = 0; i < 50; i++) c[i] = 0.5f * i;
    int64_t sa[2] = {10, 10}, sb[1] = {300}, sc[1] = {50};
    char d[512];
    snprintf(d, sizeof d, "%s", tpath("sharded"));
    qw_st_writer *w = qw_st_writer_new();
    qw_st_writer_add(w, "layer.a", QW_DT_F32, 2, sa, a);
    qw_st_writer_add_f32(w, "layer.b", QW_DT_F32, 1, sb, b);
    qw_st_writer_add_f32(w, "layer.c", QW_DT_BF16, 1, sc, c);
    qw_st_writer_meta(w, "format", "pt");
    CHECK(qw_st_writer_write_dir(w, d, 1000) == 0);   /* a | b (alone, > max) | c */
    CHECK(access(tpath("sharded/model-00001-of-00003.safetensors"), F_OK) == 0);
    CHECK(access(tpath("sharded/model-00003-of-00003.safetensors"), F_OK) == 0);
    CHECK(access(tpath("sharded/model.safetensors"), F_OK) != 0);
    qw_st *st = NULL;
    CHECK(qw_st_open(d, &st) == 0);
    if (!st) return;
    CHECK(qw_st_count(st) == 3);
    CHECK_STR(qw_st_metadata(st, "format"), "pt");
    float g[300];
    qw_st_to_f32(qw_st_find(st, "layer.b"), g);
    CHECK(g[299] == -299.0f);
    CHECK(strstr(qw_st_find(st, "layer.b")->file, "model-00002-of-00003"));
    qw_st_to_f32(qw_st_find(st, "layer.c"), g);
    CHECK(g[49] == 24.5f);
    qw_st_close(st);
    FILE *f = fopen(tpath("sharded/model.safetensors.index.json"), "r");
    char text[4096] = {0};
    size_t k = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    CHECK(k > 0 && strstr(text, "\"total_size\": 1700"));

    /* the same writer to one file: the stale index goes away */
    CHECK_MSG(qw_st_writer_write_dir(w, d, 0) == 0, "%s", qw_error_msg());
    CHECK(access(tpath("sharded/model.safetensors.index.json"), F_OK) != 0);
    CHECK(qw_st_open(d, &st) == 0 && qw_st_count(st) == 3);
    qw_st_close(st);
    CHECK(qw_st_writer_write_dir(w, d, 1300) == 0);   /* a | b c */
    qw_st_writer_free(w);

    /* an index listing a name its shard lacks, and a shard tensor not listed */
    const char *idx = tpath("sharded/model.safetensors.index.json");
    f = fopen(idx, "w");
    fputs("{\"metadata\":{},\"weight_map\":{\"layer.a\":\"model-00001-of-00002.safetensors\","
          "\"layer.b\":\"model-00001-of-00002.safetensors\",\"layer.c\":\"model-00002-of-00002.safetensors\"}}", f);
    fclose(f);
    qw_error_clear();
    CHECK(qw_st_open(d, &st) == QW_EXIT_DATA && !st);
    CHECK_MSG(strstr(qw_error_msg(), "tensor 'layer.b' is listed in 'model-00001-of-00002.safetensors' but not there"),
              "%s", qw_error_msg());
    f = fopen(idx, "w");
    fputs("{\"weight_map\":{\"layer.a\":\"model-00001-of-00002.safetensors\","
          "\"layer.b\":\"model-00002-of-00002.safetensors\"}}", f);
    fclose(f);
    CHECK(qw_st_open(idx, &st) == QW_EXIT_DATA);
    CHECK_MSG(strstr(qw_error_msg(), "model-00002-of-00002.safetensors': tensor 'layer.c' is not in the weight_map"),
              "%s", qw_error_msg());
    f = fopen(idx, "w");
    fputs("{\"metadata\":{}}", f);
    fclose(f);
    CHECK(qw_st_open(idx, &st) == QW_EXIT_DATA && strstr(qw_error_msg(), "no weight_map"));
    unlink(idx);
    CHECK(qw_st_open(d, &st) == QW_EXIT_DATA && strstr(qw_error_msg(), "no model.safetensors"));
    CHECK(qw_st_open(tpath("missing.safetensors"), &st) == QW_EXIT_FAIL && strstr(qw_error_msg(), "missing.safetensors"));
}

TEST(atomic_small_file)
{
    const char *p = tpath("a/b/c.json");
    CHECK(qw_st_mkdirs(tpath("a/b")) == 0);
    CHECK(qw_write_file_atomic(p, "{}\n", 3) == 0);
    FILE *f = fopen(p, "r");
    char t[8] = {0};
    CHECK(f && fread(t, 1, 7, f) == 3 && !strcmp(t, "{}\n"));
    if (f) fclose(f);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/qw-test-st.XXXXXX");
    if (!mkdtemp(dir)) return 1;
    PLAN(7);
    RUN(dtypes);
    RUN(header_validation);
    RUN(round_trip_and_conversions);
    RUN(writer_rejects);
    RUN(full_disk_keeps_old_file);
    RUN(sharded_dir);
    RUN(atomic_small_file);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) return 1;
    return qwtest_finish();
}
