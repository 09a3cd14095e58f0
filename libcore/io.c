/* io.c — input documents from files, directories, compressed files and
 * archives (qw/io.h).  Files are read through libarchive: an outer reader
 * detects filters (compression) and the format (an archive or "raw"); the
 * members of an archive go through an inner raw reader so that they may be
 * compressed themselves. */
#define _GNU_SOURCE
#include "qw/io.h"

#include <archive.h>
#include <archive_entry.h>
#include <cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qw/buf.h"
#include "qw/chat.h"
#include "qw/cli.h"

enum { READ_BLOCK = 1 << 16, CHUNK = 1 << 18 };

struct qw_input {
    qw_input_opts o;
    char **files;               /* expanded paths; "-" is standard input */
    int nfiles, next_file;
    uint64_t total, done_before;

    /* the open file */
    const char *path;
    int fd, seekable;
    uint64_t fd_bytes;          /* bytes read from fd (a seekable file may be read out of order) */
    uint64_t fd_size;
    int read_errno;             /* a read(2) failure seen by a callback */
    char *block;                /* READ_BLOCK bytes for the file callbacks */
    struct archive *outer;      /* NULL for an empty file */

    /* the open entry (the file itself when raw, else a member) */
    int in_entry, entry_empty, entry_eof;
    struct archive *inner;      /* member reader; NULL when reading `outer` directly */
    uint64_t member_bytes;
    char member_err[256];       /* outer's message when a member read failed */
    char *mblock;               /* READ_BLOCK bytes for the member callback */
    qw_buf name;
    long line;

    /* line assembly and the current document */
    char *chunk;
    size_t cpos, clen;
    qw_buf doc;
    cJSON *rec;
    qw_buf chat, where;         /* chat mode: the rendered conversation; message prefix */
    qw_chat_spans turns;        /* chat mode: the assistant turns of the conversation */
    size_t *spans, spans_cap;   /* chat mode: the document's loss spans, as pairs */
    const char **images;        /* chat mode: the image parts' paths (NULL: none given) */
    size_t n_images, images_cap;
    size_t n_spans;
    long index, skipped;
    int done;
};

/* libarchive's messages start with a capital; they follow "corrupt input: " here. */
static const char *lower_first(const char *msg, char *buf, size_t size)
{
    snprintf(buf, size, "%s", msg ? msg : "unknown error");
    if (isupper((unsigned char)buf[0]) && islower((unsigned char)buf[1])) buf[0] = (char)tolower((unsigned char)buf[0]);
    return buf;
}

static int os_error(const char *path, const char *what, int err)
{
    return qw_error(QW_EXIT_FAIL, "'%s': %s%s", path, what, strerror(err));
}

/* ---- listing the paths ---- */

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct {
    struct { dev_t dev; ino_t ino; } *v;   /* the directories being listed, outermost first */
    int n;
} dir_stack;

static int push_dir(dir_stack *s, const struct stat *st)
{
    for (int k = 0; k < s->n; k++)
        if (s->v[k].dev == st->st_dev && s->v[k].ino == st->st_ino) return 0;
    s->v = qw_realloc(s->v, (s->n + 1) * sizeof *s->v);
    s->v[s->n].dev = st->st_dev;
    s->v[s->n].ino = st->st_ino;
    s->n++;
    return 1;
}

static void add_file(qw_input *in, char *path)
{
    in->files = qw_realloc(in->files, (in->nfiles + 1) * sizeof *in->files);
    in->files[in->nfiles++] = path;
}

static int list_dir(qw_input *in, const char *dir, dir_stack *stack)
{
    DIR *d = opendir(dir);
    if (!d) return os_error(dir, "", errno);
    char **names = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        names = qw_realloc(names, (n + 1) * sizeof *names);
        names[n++] = qw_strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_names);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(dir) + strlen(names[i]) + 2;
        char *p = qw_malloc(len);
        snprintf(p, len, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", names[i]);
        struct stat st;
        if (!rc && stat(p, &st) != 0) rc = os_error(p, "", errno);
        if (rc) {
            free(p);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            if (!push_dir(stack, &st)) rc = qw_error(QW_EXIT_FAIL, "'%s': directory loop", p);
            else {
                rc = list_dir(in, p, stack);
                stack->n--;
            }
            free(p);
        } else if (S_ISREG(st.st_mode)) {
            in->total += (uint64_t)st.st_size;
            add_file(in, p);
        } else {
            free(p);
        }
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

int qw_input_open(const char *const *paths, int n, const qw_input_opts *opts, qw_input **out)
{
    qw_input *in = qw_calloc(1, sizeof *in);
    if (opts) in->o = *opts;
    if (!in->o.field) in->o.field = in->o.mode == QW_INPUT_CHAT ? "messages" : "text";
    in->fd = -1;
    int known = 1, rc = 0;
    static const char *const dash[] = {"-"};
    if (n == 0) {
        paths = dash;
        n = 1;
    }
    for (int i = 0; i < n && !rc; i++) {
        struct stat st;
        if (!strcmp(paths[i], "-")) {
            known = 0;
            add_file(in, qw_strdup("-"));
        } else if (stat(paths[i], &st) != 0) {
            rc = os_error(paths[i], "", errno);
        } else if (S_ISDIR(st.st_mode)) {
            dir_stack stack = {0};
            push_dir(&stack, &st);
            rc = list_dir(in, paths[i], &stack);
            free(stack.v);
        } else {
            if (S_ISREG(st.st_mode)) in->total += (uint64_t)st.st_size;
            else known = 0;
            add_file(in, qw_strdup(paths[i]));
        }
    }
    if (!known) in->total = 0;
    if (rc) {
        qw_input_free(in);
        return rc;
    }
    in->block = qw_malloc(READ_BLOCK);
    in->mblock = qw_malloc(READ_BLOCK);
    in->chunk = qw_malloc(CHUNK);
    *out = in;
    return 0;
}

/* ---- libarchive callbacks ---- */

static la_ssize_t file_read(struct archive *a, void *ctx, const void **buf)
{
    qw_input *in = ctx;
    ssize_t n;
    do n = read(in->fd, in->block, READ_BLOCK);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        in->read_errno = errno;
        archive_set_error(a, errno, "read error");
        return -1;
    }
    in->fd_bytes += (uint64_t)n;
    *buf = in->block;
    return n;
}

static la_int64_t file_seek(struct archive *a, void *ctx, la_int64_t off, int whence)
{
    qw_input *in = ctx;
    off_t r = lseek(in->fd, off, whence);
    return r < 0 ? ARCHIVE_FATAL : r;
}

static la_int64_t file_skip(struct archive *a, void *ctx, la_int64_t n)
{
    qw_input *in = ctx;
    if (lseek(in->fd, n, SEEK_CUR) < 0) return 0;   /* libarchive reads instead */
    return n;
}

static la_ssize_t member_read(struct archive *a, void *ctx, const void **buf)
{
    qw_input *in = ctx;
    la_ssize_t n = archive_read_data(in->outer, in->mblock, READ_BLOCK);
    if (n < 0) {
        snprintf(in->member_err, sizeof in->member_err, "%s", archive_error_string(in->outer));
        archive_set_error(a, EILSEQ, "%s", in->member_err);
        return -1;
    }
    in->member_bytes += (uint64_t)n;
    *buf = in->mblock;
    return n;
}

/* The error of a failed libarchive call on `a`, for the entity `name`. */
static int archive_fail(qw_input *in, struct archive *a, const char *name)
{
    in->done = 1;
    if (in->read_errno) return os_error(in->path, "read error: ", in->read_errno);
    char b[256];
    const char *msg = in->member_err[0] ? in->member_err : archive_error_string(a);
    return qw_error(QW_EXIT_DATA, "'%s': corrupt input: %s", name, lower_first(msg, b, sizeof b));
}

/* ---- files and entries ---- */

static void close_entry(qw_input *in)
{
    if (in->inner) archive_read_free(in->inner);
    in->inner = NULL;
    in->in_entry = 0;
    in->cpos = in->clen = 0;
}

static void close_file(qw_input *in)
{
    close_entry(in);
    if (in->outer) archive_read_free(in->outer);
    in->outer = NULL;
    if (in->fd >= 0 && strcmp(in->path, "-")) close(in->fd);
    in->fd = -1;
    in->done_before += in->seekable ? in->fd_size : in->fd_bytes;
    in->fd_bytes = 0;
    in->path = NULL;
}

static struct archive *raw_reader(void)
{
    struct archive *a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_raw(a);
    return a;
}

/* Open the next file and set in->outer, left NULL for an empty file.
 * Returns 1, 0 when no files are left, or an error. */
static int open_file(qw_input *in)
{
    if (in->next_file >= in->nfiles) return 0;
    in->path = in->files[in->next_file++];
    in->read_errno = 0;
    if (!strcmp(in->path, "-")) in->fd = 0;
    else if ((in->fd = open(in->path, O_RDONLY)) < 0) {
        in->done = 1;
        return os_error(in->path, "", errno);
    }
    struct stat st;
    in->seekable = fstat(in->fd, &st) == 0 && S_ISREG(st.st_mode);
    in->fd_size = in->seekable ? (uint64_t)st.st_size : 0;
    struct archive *a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    archive_read_support_format_cpio(a);
    archive_read_support_format_zip(a);
    archive_read_support_format_7zip(a);
    archive_read_support_format_raw(a);
    archive_read_set_callback_data(a, in);
    archive_read_set_read_callback(a, file_read);
    if (in->seekable) {
        archive_read_set_seek_callback(a, file_seek);
        archive_read_set_skip_callback(a, file_skip);
    }
    in->outer = a;
    if (archive_read_open1(a) != ARCHIVE_OK) {
        if (in->fd_bytes || in->read_errno) return archive_fail(in, a, in->path);
        archive_read_free(a);   /* an empty file: libarchive has nothing to detect */
        in->outer = NULL;
    }
    return 1;
}

/* Advance to the next regular entry.  Returns 1, 0 at the end of the input,
 * or an error. */
static int next_entry(qw_input *in)
{
    in->entry_empty = 0;
    for (;;) {
        if (!in->path) {
            int r = open_file(in);
            if (r != 1) return r;
            if (!in->outer) {   /* an empty file: one empty entry */
                in->entry_empty = 1;
                break;
            }
        } else if (!in->outer) {
            close_file(in);
            continue;
        }
        struct archive_entry *e;
        int r = archive_read_next_header(in->outer, &e);
        if (r == ARCHIVE_EOF) {
            close_file(in);
            continue;
        }
        if (r < ARCHIVE_WARN) return archive_fail(in, in->outer, in->path);
        if (archive_entry_filetype(e) != AE_IFREG) continue;
        if (archive_format(in->outer) == ARCHIVE_FORMAT_RAW) break;
        in->name.n = 0;
        qw_buf_adds(&in->name, in->path);
        qw_buf_addc(&in->name, ':');
        qw_buf_adds(&in->name, archive_entry_pathname(e) ? archive_entry_pathname(e) : "?");
        qw_buf_cstr(&in->name);
        in->member_bytes = 0;
        in->member_err[0] = 0;
        in->inner = raw_reader();
        if (archive_read_open(in->inner, in, NULL, member_read, NULL) != ARCHIVE_OK) {
            if (in->member_bytes || in->member_err[0]) return archive_fail(in, in->inner, in->name.p);
            in->entry_empty = 1;   /* an empty member */
        } else if (archive_read_next_header(in->inner, &e) != ARCHIVE_OK) {
            return archive_fail(in, in->inner, in->name.p);
        }
        in->in_entry = 1;
        in->entry_eof = in->entry_empty;
        in->line = 0;
        return 1;
    }
    in->name.n = 0;
    qw_buf_adds(&in->name, in->path);
    qw_buf_cstr(&in->name);
    in->in_entry = 1;
    in->entry_eof = in->entry_empty;
    in->line = 0;
    return 1;
}

/* Fill the chunk buffer from the entry.  Returns bytes (0 at its end) or an error (negated). */
static long fill(qw_input *in)
{
    if (in->entry_eof) return 0;
    struct archive *a = in->inner ? in->inner : in->outer;
    la_ssize_t n = archive_read_data(a, in->chunk, CHUNK);
    if (n < 0) return -archive_fail(in, a, in->name.p);
    in->cpos = 0;
    in->clen = (size_t)n;
    if (n == 0) in->entry_eof = 1;
    return n;
}

/* Read the rest of the entry into in->doc. */
static int read_all(qw_input *in)
{
    in->doc.n = 0;
    for (;;) {
        qw_buf_add(&in->doc, in->chunk + in->cpos, in->clen - in->cpos);
        in->cpos = in->clen;
        long n = fill(in);
        if (n < 0) return (int)-n;
        if (n == 0) return 0;
    }
}

/* Read one line (without its '\n') into in->doc.  Returns 1, 0 at the end of
 * the entry, or an error. */
static int read_line(qw_input *in)
{
    in->doc.n = 0;
    int got = 0;
    for (;;) {
        if (in->cpos == in->clen) {
            long n = fill(in);
            if (n < 0) return (int)-n;
            if (n == 0) return got;
        }
        got = 1;
        char *s = in->chunk + in->cpos;
        char *nl = memchr(s, '\n', in->clen - in->cpos);
        size_t take = nl ? (size_t)(nl - s) : in->clen - in->cpos;
        qw_buf_add(&in->doc, s, take);
        in->cpos += take + (nl != NULL);
        if (nl) return 1;
    }
}

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)s[i])) return 0;
    return 1;
}

/* 1 if the JSON text has a "\u0000" escape, which cJSON would cut a string at. */
static int has_nul_escape(const char *s, size_t n)
{
    for (const char *p = s; (p = memmem(p, n - (size_t)(p - s), "u0000", 5)); p += 5) {
        size_t k = 0;
        while (p - k > s && p[-1 - (long)k] == '\\') k++;
        if (k % 2) return 1;
    }
    return 0;
}

static void add_span(qw_input *in, size_t start, size_t end)
{
    if (in->n_spans == in->spans_cap) {
        in->spans_cap = in->spans_cap ? 2 * in->spans_cap : 16;
        in->spans = qw_realloc(in->spans, 2 * in->spans_cap * sizeof *in->spans);
    }
    in->spans[2 * in->n_spans] = start;
    in->spans[2 * in->n_spans + 1] = end;
    in->n_spans++;
}

/* A prompt/completion record: two strings (the text is their
 * concatenation, the completion the span), or two lists of messages (the
 * conversation is rendered whole and the span runs from the first
 * completion turn's content to the end, as TRL's completion mask does). */
static int render_prompt_completion(qw_input *in, cJSON *prompt, cJSON *completion)
{
    const char *w = in->where.p;
    if (cJSON_IsString(prompt) && cJSON_IsString(completion)) {
        qw_buf_adds(&in->chat, prompt->valuestring);
        size_t start = in->chat.n;
        qw_buf_adds(&in->chat, completion->valuestring);
        add_span(in, start, in->chat.n);
        return 0;
    }
    if (!cJSON_IsArray(prompt) || !cJSON_IsArray(completion))
        return qw_error(QW_EXIT_DATA, "%s: 'prompt' and 'completion' must both be strings or both lists of messages", w);
    int n_asst = 0;
    const cJSON *first = cJSON_GetArrayItem(completion, 0), *m;
    const cJSON *role = cJSON_IsObject(first) ? cJSON_GetObjectItemCaseSensitive(first, "role") : NULL;
    if (!cJSON_IsString(role) || strcmp(role->valuestring, "assistant"))
        return qw_error(QW_EXIT_DATA, "%s: 'completion' must start with an assistant message", w);
    cJSON_ArrayForEach(m, prompt) {
        const cJSON *r = cJSON_IsObject(m) ? cJSON_GetObjectItemCaseSensitive(m, "role") : NULL;
        n_asst += cJSON_IsString(r) && !strcmp(r->valuestring, "assistant");
    }
    while (cJSON_GetArraySize(completion)) cJSON_AddItemToArray(prompt, cJSON_DetachItemFromArray(completion, 0));
    qw_chat_opts co = {0, 0, w};
    int rc = qw_chat_render(prompt, cJSON_GetObjectItemCaseSensitive(in->rec, "tools"), &co, &in->chat, &in->turns);
    if (rc) return rc;
    add_span(in, in->turns.v[n_asst].start, in->chat.n);
    return 0;
}

/* Render a chat record's conversation into in->chat, with its loss spans:
 * the assistant turns of `messages`, or the completion. */
static int render_chat(qw_input *in, qw_doc *doc)
{
    const char *w = in->where.p;
    cJSON *msgs = cJSON_GetObjectItemCaseSensitive(in->rec, in->o.field);
    cJSON *prompt = cJSON_GetObjectItemCaseSensitive(in->rec, "prompt");
    cJSON *completion = cJSON_GetObjectItemCaseSensitive(in->rec, "completion");
    in->chat.n = 0;
    in->turns.n = 0;
    in->n_spans = 0;
    if (!in->spans) in->spans = qw_malloc(2 * (in->spans_cap = 16) * sizeof *in->spans);
    int rc;
    if (!msgs && prompt && completion) {
        rc = render_prompt_completion(in, prompt, completion);
    } else if (!msgs) {
        return qw_error(QW_EXIT_DATA, "%s: missing field '%s' (or 'prompt' and 'completion')", w, in->o.field);
    } else if (!cJSON_IsArray(msgs)) {
        return qw_error(QW_EXIT_DATA, "%s: field '%s' is not an array", w, in->o.field);
    } else {
        qw_chat_opts co = {0, 0, w};
        rc = qw_chat_render(msgs, cJSON_GetObjectItemCaseSensitive(in->rec, "tools"), &co, &in->chat, &in->turns);
        for (size_t k = 0; !rc && k < in->turns.n; k++) add_span(in, in->turns.v[k].start, in->turns.v[k].end);
    }
    if (rc) return rc;
    const cJSON *conv = msgs ? msgs : prompt;   /* a prompt/completion's turns were moved into prompt */
    size_t k = qw_chat_images(conv, NULL, 0);
    if (k > in->images_cap) {
        in->images_cap = k;
        in->images = qw_realloc(in->images, k * sizeof *in->images);
    }
    const cJSON **parts = qw_malloc((k ? k : 1) * sizeof *parts);
    in->n_images = qw_chat_images(conv, parts, k);
    for (size_t j = 0; j < k; j++) in->images[j] = qw_chat_part_image(parts[j]);
    free(parts);
    doc->images = in->images;
    doc->n_images = in->n_images;
    doc->text = in->chat.p ? in->chat.p : "";
    doc->len = in->chat.n;
    doc->spans = in->spans;
    doc->n_spans = in->n_spans;
    return 0;
}

/* Parse the current line as a record; on success point doc at its text. */
static int parse_record(qw_input *in, qw_doc *doc)
{
    const char *s = in->doc.p;
    size_t n = in->doc.n;
    if (in->line == 1 && n >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) {   /* a UTF-8 byte order mark */
        s += 3;
        n -= 3;
    }
    in->where.n = 0;
    qw_buf_reserve(&in->where, strlen(in->name.p) + 32);
    in->where.n = (size_t)snprintf(in->where.p, in->where.cap, "'%s': line %ld", in->name.p, in->line);
    if (in->o.mode == QW_INPUT_CHAT) {
        if (!(in->rec = qw_chat_json_parse(s, n, in->where.p))) return qw_error_status();
    } else {
        const char *end = NULL, *nul = memchr(s, 0, n);
        if (nul)   /* cJSON would end the string there: the rest of the text lost */
            return qw_error(QW_EXIT_DATA, "%s: a NUL byte at column %ld is not supported", in->where.p,
                            (long)(nul - s) + 1);
        if (!(in->rec = cJSON_ParseWithLengthOpts(s, n, &end, 0)))
            return qw_error(QW_EXIT_DATA, "%s: bad JSON near column %ld", in->where.p, end ? (long)(end - s) + 1 : 1L);
        while (end < s + n && isspace((unsigned char)*end)) end++;
        if (end < s + n)
            return qw_error(QW_EXIT_DATA, "%s: bad JSON at column %ld (text after the value)", in->where.p,
                            (long)(end - s) + 1);
        if (has_nul_escape(s, n))
            return qw_error(QW_EXIT_DATA, "%s: '\\u0000' in a string is not supported", in->where.p);
    }
    if (!cJSON_IsObject(in->rec)) return qw_error(QW_EXIT_DATA, "%s: not a JSON object", in->where.p);
    if (in->o.mode == QW_INPUT_CHAT) return render_chat(in, doc);
    cJSON *f = cJSON_GetObjectItemCaseSensitive(in->rec, in->o.field);
    if (!f) return qw_error(QW_EXIT_DATA, "%s: missing field '%s'", in->where.p, in->o.field);
    if (!cJSON_IsString(f)) return qw_error(QW_EXIT_DATA, "%s: field '%s' is not a string", in->where.p, in->o.field);
    doc->text = f->valuestring;
    doc->len = strlen(f->valuestring);
    return 0;
}

int qw_input_next(qw_input *in, qw_doc *doc)
{
    if (in->rec) cJSON_Delete(in->rec);
    in->rec = NULL;
    doc->spans = NULL;
    doc->n_spans = 0;
    doc->images = NULL;
    doc->n_images = 0;
    while (!in->done) {
        if (!in->in_entry) {
            int r = next_entry(in);
            if (r == 0) break;
            if (r != 1) return r;
        }
        if (in->o.mode == QW_INPUT_TEXT) {
            int r = read_all(in);
            if (r) return r;
            close_entry(in);
            doc->text = in->doc.p ? in->doc.p : "";
            doc->len = in->doc.n;
        } else {
            int r = read_line(in);
            if (r == 0) {   /* the entry's end: free its member reader before the next */
                close_entry(in);
                continue;
            }
            if (r != 1) return r;
            in->line++;
            if (in->o.mode == QW_INPUT_LINES) {
                doc->text = qw_buf_cstr(&in->doc);
                doc->len = in->doc.n;
            } else if (blank(in->doc.p, in->doc.n)) {
                continue;
            } else if ((r = parse_record(in, doc))) {
                if (!in->o.skip_bad) {
                    in->done = 1;
                    return r;
                }
                qw_error_clear();
                in->skipped++;
                if (in->rec) cJSON_Delete(in->rec);
                in->rec = NULL;
                continue;
            }
        }
        doc->name = in->name.p;
        doc->line = in->o.mode == QW_INPUT_TEXT ? 0 : in->line;
        doc->index = in->index++;
        return 1;
    }
    in->done = 1;
    return 0;
}

long qw_input_skipped(const qw_input *in) { return in->skipped; }

void qw_input_progress(const qw_input *in, uint64_t *done, uint64_t *total)
{
    off_t pos = in->seekable ? lseek(in->fd, 0, SEEK_CUR) : -1;
    *done = in->done_before + (pos >= 0 ? (uint64_t)pos : in->fd_bytes);
    *total = in->total;
}

void qw_input_free(qw_input *in)
{
    if (!in) return;
    close_file(in);
    if (in->rec) cJSON_Delete(in->rec);
    for (int i = 0; i < in->nfiles; i++) free(in->files[i]);
    free(in->files);
    free(in->block);
    free(in->mblock);
    free(in->chunk);
    qw_buf_free(&in->doc);
    qw_buf_free(&in->name);
    qw_buf_free(&in->chat);
    qw_chat_spans_free(&in->turns);
    free(in->spans);
    free(in->images);
    qw_buf_free(&in->where);
    free(in);
}
