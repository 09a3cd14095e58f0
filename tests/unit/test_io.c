/* test_io.c — input documents: directories in name order, text and JSONL
 * modes, compressed files and archives (fixtures made with libarchive),
 * bad records with and without skip_bad, truncated data, long lines. */
#include "qwtest.h"
#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/io.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static const char *at(const char *name)
{
    static char buf[8][256];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void put(const char *name, const char *data, size_t n)
{
    FILE *f = fopen(at(name), "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

typedef struct {
    const char *name, *data;
    size_t n;
} member;

/* An archive (format: ARCHIVE_FORMAT_*; RAW holds one member: a plain
 * compressed file) with a compression filter (ARCHIVE_FILTER_*). */
static void put_archive(const char *name, int format, int filter, const member *m, int nm)
{
    struct archive *a = archive_write_new();
    archive_write_set_format(a, format);
    archive_write_add_filter(a, filter);
    archive_write_open_filename(a, at(name));
    for (int i = 0; i < nm; i++) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, m[i].name);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, (la_int64_t)m[i].n);
        archive_write_header(a, e);
        archive_write_data(a, m[i].data, m[i].n);
        archive_entry_free(e);
    }
    archive_write_close(a);
    archive_write_free(a);
}

/* Bytes of a compressed file (for members that are compressed themselves). */
static size_t compressed(int filter, const char *data, size_t n, char *out, size_t cap)
{
    struct archive *a = archive_write_new();
    archive_write_set_format_raw(a);
    archive_write_add_filter(a, filter);
    archive_write_set_bytes_in_last_block(a, 1);
    size_t used = 0;
    archive_write_open_memory(a, out, cap, &used);
    struct archive_entry *e = archive_entry_new();
    archive_entry_set_pathname(e, "data");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_size(e, (la_int64_t)n);
    archive_write_header(a, e);
    archive_write_data(a, data, n);
    archive_entry_free(e);
    archive_write_close(a);
    archive_write_free(a);
    return used;
}

/* Read the whole input; documents are written to *log as
 * "name|line|text\n".  Returns the final status (0 at a clean end). */
static int slurp(const char *const *paths, int n, qw_input_mode mode, const char *field, int skip_bad, qw_buf *log,
                 long *skipped)
{
    qw_input_opts o = {mode, field, skip_bad};
    qw_input *in;
    log->n = 0;
    int rc = qw_input_open(paths, n, &o, &in);
    if (rc) return rc;
    qw_doc d;
    char head[512];
    while ((rc = qw_input_next(in, &d)) == 1) {
        snprintf(head, sizeof head, "%s|%ld|", d.name + (strncmp(d.name, dir, strlen(dir)) ? 0 : strlen(dir) + 1),
                 d.line);
        qw_buf_adds(log, head);
        qw_buf_add(log, d.text, d.len);
        qw_buf_addc(log, '\n');
    }
    if (skipped) *skipped = qw_input_skipped(in);
    qw_input_free(in);
    qw_buf_cstr(log);
    return rc;
}

static int slurp1(const char *path, qw_input_mode mode, qw_buf *log)
{
    const char *p[] = {path};
    return slurp(p, 1, mode, NULL, 0, log, NULL);
}

TEST(directory_in_name_order)
{
    mkdir(at("d"), 0777);
    mkdir(at("d/sub"), 0777);
    put("d/b.txt", "bee", 3);
    put("d/a.txt", "ay", 2);
    put("d/sub/c.txt", "sea", 3);
    put("d/.hidden", "no", 2);
    put("d/empty.txt", "", 0);
    qw_buf log = {0};
    CHECK(slurp1(at("d"), QW_INPUT_TEXT, &log) == 0);
    CHECK_STR(log.p, "d/a.txt|0|ay\nd/b.txt|0|bee\nd/empty.txt|0|\nd/sub/c.txt|0|sea\n");
    qw_buf_free(&log);
}

TEST(jsonl_fields_lines_and_blanks)
{
    const char *j = "{\"text\": \"one\", \"t2\": \"x\"}\n\n  \n{\"text\":\"two\\nlines \\u00e9\"}\r\n{\"text\":\"last\"}";
    put("a.jsonl", j, strlen(j));
    qw_buf log = {0};
    CHECK(slurp1(at("a.jsonl"), QW_INPUT_JSONL, &log) == 0);
    CHECK_STR(log.p, "a.jsonl|1|one\na.jsonl|4|two\nlines \xc3\xa9\na.jsonl|5|last\n");
    const char *p[] = {at("a.jsonl")};
    CHECK(slurp(p, 1, QW_INPUT_JSONL, "t2", 0, &log, NULL) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "a.jsonl': line 4: missing field 't2'"));
    CHECK(slurp1(at("a.jsonl"), QW_INPUT_LINES, &log) == 0);
    CHECK(strstr(log.p, "a.jsonl|2|\na.jsonl|3|  \n"));
    qw_buf_free(&log);
}

TEST(bad_records_fail_or_are_skipped)
{
    struct {
        const char *line, *msg;
    } cases[] = {
        {"{\"text\": 5}", "line 2: field 'text' is not a string"},
        {"[1, 2]", "line 2: not a JSON object"},
        {"{\"body\": \"x\"}", "line 2: missing field 'text'"},
        {"{\"text\": \"x\"", "line 2: bad JSON near column"},
        {"{\"text\": \"x\"} junk", "line 2: bad JSON at column 15 (text after the value)"},
    };
    qw_buf log = {0};
    for (int i = 0; i < 5; i++) {
        char buf[256];
        int n = snprintf(buf, sizeof buf, "{\"text\":\"ok\"}\n%s\n{\"text\":\"after\"}\n", cases[i].line);
        put("bad.jsonl", buf, (size_t)n);
        qw_error_clear();
        CHECK(slurp1(at("bad.jsonl"), QW_INPUT_JSONL, &log) == QW_EXIT_DATA);
        CHECK_MSG(strstr(qw_error_msg(), cases[i].msg) && strstr(qw_error_msg(), "bad.jsonl'"), "%s", qw_error_msg());
        CHECK_STR(log.p, "bad.jsonl|1|ok\n");
        const char *p[] = {at("bad.jsonl")};
        long skipped = 0;
        CHECK(slurp(p, 1, QW_INPUT_JSONL, NULL, 1, &log, &skipped) == 0);
        CHECK(skipped == 1);
        CHECK_STR(log.p, "bad.jsonl|1|ok\nbad.jsonl|3|after\n");
    }
    qw_buf_free(&log);
}

TEST(nul_escapes_are_refused)
{
    const char *j = "{\"text\": \"a\\\\u0000b\"}\n{\"text\": \"a\\u0000b\"}\n";
    put("nul.jsonl", j, strlen(j));
    qw_buf log = {0};
    CHECK(slurp1(at("nul.jsonl"), QW_INPUT_JSONL, &log) == QW_EXIT_DATA);
    CHECK_STR(log.p, "nul.jsonl|1|a\\u0000b\n");
    CHECK(strstr(qw_error_msg(), "nul.jsonl': line 2: '\\u0000' in a string is not supported"));
    qw_buf_free(&log);
}

TEST(nul_bytes_are_refused)
{
    /* a raw NUL inside a string used to cut the document short, silently */
    const char j[] = "{\"text\": \"ab\"}\n{\"text\": \"ab\0cd\"}\n";
    put("nulbyte.jsonl", j, sizeof j - 1);
    qw_buf log = {0};
    CHECK(slurp1(at("nulbyte.jsonl"), QW_INPUT_JSONL, &log) == QW_EXIT_DATA);
    CHECK_STR(log.p, "nulbyte.jsonl|1|ab\n");
    CHECK_MSG(strstr(qw_error_msg(), "nulbyte.jsonl': line 2: a NUL byte at column 13 is not supported"), "%s",
              qw_error_msg());
    qw_buf_free(&log);
}

TEST(chat_records_are_rendered)
{
    const char *j = "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n"
                    "{\"conv\": [{\"role\": \"user\", \"content\": \"x\"}]}\n"
                    "{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}\n";
    put("chat.jsonl", j, strlen(j));
    qw_buf log = {0};
    CHECK(slurp1(at("chat.jsonl"), QW_INPUT_CHAT, &log) == QW_EXIT_DATA);
    CHECK_STR(log.p, "chat.jsonl|1|<|im_start|>user\nhi<|im_end|>\n\n");
    CHECK(strstr(qw_error_msg(), "chat.jsonl': line 2: missing field 'messages'"));
    const char *p[] = {at("chat.jsonl")};
    long skipped = 0;
    CHECK(slurp(p, 1, QW_INPUT_CHAT, NULL, 1, &log, &skipped) == 0 && skipped == 2);
    CHECK(slurp(p, 1, QW_INPUT_CHAT, "conv", 1, &log, &skipped) == 0 && skipped == 2);
    CHECK_STR(log.p, "chat.jsonl|2|<|im_start|>user\nx<|im_end|>\n\n");
    qw_buf_free(&log);
}

TEST(compressed_files_and_archives)
{
    const char *j = "{\"text\":\"alpha\"}\n{\"text\":\"beta\"}\n";
    static char z[4096];
    size_t zn = compressed(ARCHIVE_FILTER_GZIP, j, strlen(j), z, sizeof z);
    member ms[] = {{"x/one.txt", "plain", 5}, {"two.jsonl.gz", z, zn}, {"empty", "", 0}};
    put_archive("a.tar.zst", ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, ARCHIVE_FILTER_ZSTD, ms, 3);
    put_archive("a.zip", ARCHIVE_FORMAT_ZIP, ARCHIVE_FILTER_NONE, ms, 3);
    member raw[] = {{"data", j, strlen(j)}};
    put_archive("c.jsonl.xz", ARCHIVE_FORMAT_RAW, ARCHIVE_FILTER_XZ, raw, 1);
    put_archive("c.jsonl.bz2", ARCHIVE_FORMAT_RAW, ARCHIVE_FILTER_BZIP2, raw, 1);
    qw_buf log = {0};
    CHECK(slurp1(at("a.tar.zst"), QW_INPUT_TEXT, &log) == 0);
    CHECK_STR(log.p, "a.tar.zst:x/one.txt|0|plain\na.tar.zst:two.jsonl.gz|0|{\"text\":\"alpha\"}\n{\"text\":\"beta\"}\n\n"
                     "a.tar.zst:empty|0|\n");
    CHECK(slurp1(at("a.zip"), QW_INPUT_TEXT, &log) == 0);
    CHECK(strstr(log.p, "a.zip:two.jsonl.gz|0|{\"text\":\"alpha\"}"));
    const char *p[] = {at("c.jsonl.xz"), at("c.jsonl.bz2")};
    CHECK(slurp(p, 2, QW_INPUT_JSONL, NULL, 0, &log, NULL) == 0);
    CHECK_STR(log.p, "c.jsonl.xz|1|alpha\nc.jsonl.xz|2|beta\nc.jsonl.bz2|1|alpha\nc.jsonl.bz2|2|beta\n");
    /* JSONL inside a tar: the member's bad line is named with the archive */
    member bad[] = {{"m.jsonl", "{\"text\":\"a\"}\n{oops}\n", 20}};
    put_archive("b.tar", ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, ARCHIVE_FILTER_NONE, bad, 1);
    CHECK(slurp1(at("b.tar"), QW_INPUT_JSONL, &log) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "b.tar:m.jsonl': line 2: bad JSON near column"));
    qw_buf_free(&log);
}

TEST(truncated_data_is_an_error)
{
    static char big[200000], z[300000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)('a' + (i * 7 + i / 13) % 26);
    size_t zn = compressed(ARCHIVE_FILTER_ZSTD, big, sizeof big, z, sizeof z);
    put("t.zst", z, zn / 2);
    qw_buf log = {0};
    CHECK(slurp1(at("t.zst"), QW_INPUT_TEXT, &log) == QW_EXIT_DATA);
    CHECK_MSG(strstr(qw_error_msg(), "'") && strstr(qw_error_msg(), "t.zst': corrupt input: "), "%s", qw_error_msg());
    zn = compressed(ARCHIVE_FILTER_GZIP, big, sizeof big, z, sizeof z);
    put("t.gz", z, zn - 10);
    CHECK(slurp1(at("t.gz"), QW_INPUT_TEXT, &log) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "t.gz': corrupt input: "));
    member ms[] = {{"a.txt", "first", 5}, {"b.txt", big, sizeof big}};
    put_archive("t.tar", ARCHIVE_FORMAT_TAR_PAX_RESTRICTED, ARCHIVE_FILTER_NONE, ms, 2);
    FILE *f = fopen(at("t.tar"), "rb");
    size_t n = fread(z, 1, sizeof z, f);
    fclose(f);
    put("t.tar", z, n / 2);
    CHECK(slurp1(at("t.tar"), QW_INPUT_TEXT, &log) == QW_EXIT_DATA);
    CHECK_MSG(strstr(qw_error_msg(), "t.tar:b.txt': corrupt input: truncated"), "%s", qw_error_msg());
    CHECK_STR(log.p, "t.tar:a.txt|0|first\n");
    qw_buf_free(&log);
}

TEST(long_lines_stream_whole)
{
    size_t n = 3u << 20;
    char *j = malloc(n + 64);
    int k = sprintf(j, "{\"text\":\"");
    for (size_t i = 0; i < n; i++) j[k + i] = (char)('a' + i % 26);
    k += (int)n;
    k += sprintf(j + k, "\"}\n{\"text\":\"next\"}\n");
    put("long.jsonl", j, (size_t)k);
    qw_input_opts o = {QW_INPUT_JSONL, NULL, 0};
    const char *p[] = {at("long.jsonl")};
    qw_input *in;
    CHECK(qw_input_open(p, 1, &o, &in) == 0);
    qw_doc d;
    CHECK(qw_input_next(in, &d) == 1);
    CHECK(d.len == n && !memcmp(d.text, j + 9, n) && d.line == 1 && d.index == 0);
    CHECK(qw_input_next(in, &d) == 1);
    CHECK(d.len == 4 && !memcmp(d.text, "next", 4) && d.line == 2 && d.index == 1);
    CHECK(qw_input_next(in, &d) == 0);
    uint64_t done, total;
    qw_input_progress(in, &done, &total);
    CHECK_MSG(done == (uint64_t)k && total == (uint64_t)k, "done %llu total %llu size %d", (unsigned long long)done,
              (unsigned long long)total, k);
    qw_input_free(in);
    free(j);
}

TEST(missing_paths_fail_up_front)
{
    const char *p[] = {at("a.jsonl"), at("nope")};
    qw_input *in;
    qw_input_opts o = {QW_INPUT_TEXT, NULL, 0};
    CHECK(qw_input_open(p, 2, &o, &in) == QW_EXIT_FAIL);
    CHECK(strstr(qw_error_msg(), "nope': No such file or directory"));
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/qw-test-io.XXXXXX");
    if (!mkdtemp(dir)) return 1;
    PLAN(10);
    RUN(directory_in_name_order);
    RUN(jsonl_fields_lines_and_blanks);
    RUN(bad_records_fail_or_are_skipped);
    RUN(nul_escapes_are_refused);
    RUN(nul_bytes_are_refused);
    RUN(chat_records_are_rendered);
    RUN(compressed_files_and_archives);
    RUN(truncated_data_is_an_error);
    RUN(long_lines_stream_whole);
    RUN(missing_paths_fail_up_front);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) return 1;
    return qwtest_finish();
}
