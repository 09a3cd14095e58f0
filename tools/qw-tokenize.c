/* qw-tokenize — text, JSONL and archives to token streams or id lines;
 * --decode, --inspect, --train.  See man/man1/qw-tokenize.1. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cJSON.h>

#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/file.h"
#include "qw/io.h"
#include "qw/tok.h"
#include "qw/tokenize.h"
#include "qw/tokens.h"

enum { UNSET = -1000 };

static struct {
    const char *tokenizer, *output, *field, *eos, *separator;
    int jsonl, chat, skip_bad, ids, add_eos, zstd, zstd_level, decode, skip_special, inspect, train;
    int vocab_size, min_frequency;
    long long frame_tokens;
} o = {.zstd_level = UNSET, .min_frequency = 2};

static const qw_opt opts[] = {
    {"tokenizer", 't', QW_OPT_STR, &o.tokenizer, "FILE", "tokenizer.json, or a model directory holding one"},
    {"output", 'o', QW_OPT_STR, &o.output, "FILE", "write to FILE (a directory with --train), not stdout"},
    {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Input:"},
    {"jsonl", 0, QW_OPT_FLAG, &o.jsonl, NULL, "each input line is a JSON record (else each file is a document)"},
    {"chat", 0, QW_OPT_FLAG, &o.chat, NULL, "each input line is a chat record, rendered with Qwen3's template"},
    {"field", 0, QW_OPT_STR, &o.field, "NAME", "the record's field (default: text, or messages with --chat)"},
    {"skip-bad", 0, QW_OPT_FLAG, &o.skip_bad, NULL, "skip bad records and invalid UTF-8, count them"},
    {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Encoding (the default mode):"},
    {"ids", 0, QW_OPT_FLAG, &o.ids, NULL, "write one line of decimal ids per document"},
    {"add-eos", 0, QW_OPT_FLAG, &o.add_eos, NULL, "append <|endoftext|> to every document"},
    {"eos", 0, QW_OPT_STR, &o.eos, "TOKEN", "append TOKEN instead (implies --add-eos)"},
    {"zstd", 0, QW_OPT_FLAG, &o.zstd, NULL, "compress the stream's frames (level 3)"},
    {"zstd-level", 0, QW_OPT_INT, &o.zstd_level, "N", "compress at zstd level N (1-19)"},
    {"frame-tokens", 0, QW_OPT_LONG, &o.frame_tokens, "N", "tokens per frame (default 1M)"},
    {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Other modes:"},
    {"decode", 'd', QW_OPT_FLAG, &o.decode, NULL, "token streams (or id lines with --ids) to text"},
    {"separator", 0, QW_OPT_STR, &o.separator, "STR", "--decode: written after each document (default \\n)"},
    {"skip-special", 0, QW_OPT_FLAG, &o.skip_special, NULL, "--decode: drop special tokens"},
    {"inspect", 0, QW_OPT_FLAG, &o.inspect, NULL, "validate and describe token streams"},
    {"train", 0, QW_OPT_FLAG, &o.train, NULL, "train a byte-level BPE tokenizer into the -o directory"},
    {"vocab-size", 0, QW_OPT_INT, &o.vocab_size, "N", "--train: vocabulary size, specials included"},
    {"min-frequency", 0, QW_OPT_INT, &o.min_frequency, "N", "--train: least count of a merged pair (default 2)"},
    QW_COMMON_BEGIN, QW_COMMON_THREADS, QW_COMMON_QUIET, QW_COMMON_END,
    {0},
};

static const qw_prog_info info = {
    "qw-tokenize",
    "-t TOKENIZER [--jsonl [--field NAME] | --chat] [--ids] [-o FILE] [options] [FILE...]\n"
    "       qw-tokenize -t TOKENIZER --decode [--ids | --jsonl] [options] [FILE...]\n"
    "       qw-tokenize --inspect [FILE...]\n"
    "       qw-tokenize --train --vocab-size N -o DIR [--jsonl] [FILE...]",
    "Tokenize text, JSONL, compressed files and archives into a token stream (qw-tokens(5)) or\n"
    "lines of ids; decode streams back to text; inspect streams; train a byte-level BPE.",
    opts,
};

static qw_afile out_file;      /* a regular -o FILE: written as FILE.tmp, renamed when complete */
static FILE *out;
static qw_progress prog;

static void fail(void) __attribute__((noreturn));
static void fail(void)
{
    qw_progress_end(&prog);
    qw_afile_abort(&out_file);
    qw_die_last();
}

/* "12,345" */
static const char *commas(unsigned long long v, char *buf)
{
    char t[32];
    int n = snprintf(t, sizeof t, "%llu", v), k = 0;
    for (int i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0) buf[k++] = ',';
        buf[k++] = t[i];
    }
    buf[k] = 0;
    return buf;
}

/* "12,345 documents, 4.5M tokens, 23.1 MB/s" (tokens < 0: not counted) */
static void summary(unsigned long long docs, long long tokens, double bytes, long skipped)
{
    qw_progress_end(&prog);
    if (qw_common_opts.quiet) return;
    char a[40], b[16];
    double dt = qw_now() - prog.t_start;
    fprintf(stderr, "%s: %s document%s", qw_prog, commas(docs, a), docs == 1 ? "" : "s");
    if (tokens >= 0) fprintf(stderr, ", %s tokens", qw_human((double)tokens, b));
    fprintf(stderr, ", %.1f MB/s", bytes / 1e6 / (dt > 1e-9 ? dt : 1e-9));
    if (skipped) fprintf(stderr, ", %ld bad record%s skipped", skipped, skipped == 1 ? "" : "s");
    fputc('\n', stderr);
}

static qw_tok *load_tokenizer(void)
{
    qw_tok *t;
    if (qw_tok_load_arg(o.tokenizer, &t)) fail();
    return t;
}

/* A regular -o FILE (or a new one) appears only when complete (qw/file.h);
 * devices and pipes (/dev/null, a FIFO) are written directly. */
static void open_output(void)
{
    out = stdout;
    if (!o.output) return;
    struct stat st;
    if (stat(o.output, &st) != 0 || S_ISREG(st.st_mode)) {
        if (qw_afile_open(o.output, &out_file)) fail();
        out = out_file.f;
    } else if (!(out = fopen(o.output, "wb"))) {
        qw_error(QW_EXIT_FAIL, "'%s': %s", o.output, strerror(errno));
        fail();
    }
}

static void close_output(void)
{
    if (out_file.f) {
        out = stdout;
        if (qw_afile_commit(&out_file)) fail();
    } else if (out != stdout) {
        int bad = fflush(out) != 0 || ferror(out);
        if (fclose(out) != 0) bad = 1;
        if (bad) bad = qw_error(QW_EXIT_FAIL, "'%s': write error: %s", o.output, strerror(errno));
        if (bad) fail();
    }
    qw_close_stdout();
}

static void progress(const qw_input *in, unsigned long long docs, unsigned long long tokens)
{
    if (!prog.enabled) return;
    uint64_t done, total;
    qw_input_progress(in, &done, &total);
    char a[16], b[16];
    double dt = qw_now() - prog.t_start;
    qw_progress_update(&prog, (double)done, (double)total, "%s docs, %s tokens, %.1f MB/s", qw_human((double)docs, a),
                       qw_human((double)tokens, b), done / 1e6 / (dt > 1e-9 ? dt : 1e-9));
}

/* ---- encoding ---- */

typedef struct {
    qw_input *in;
    qw_tokens_writer *w;    /* stream mode */
    qw_buf line;            /* --ids mode */
    unsigned long long docs, tokens;
} enc_ctx;

static int sink_stream(const qw_doc *doc, const int32_t *ids, const uint8_t *mask, size_t n, void *vc)
{
    enc_ctx *c = vc;
    progress(c->in, ++c->docs, c->tokens += n);
    return qw_tokens_write_doc(c->w, ids, mask, n);
}

static int sink_ids(const qw_doc *doc, const int32_t *ids, const uint8_t *mask, size_t n, void *vc)
{
    enc_ctx *c = vc;
    qw_buf *b = &c->line;
    b->n = 0;
    qw_buf_reserve(b, n * 12 + 1);
    for (size_t i = 0; i < n; i++) {
        char t[12];
        int k = 0;
        uint32_t v = (uint32_t)ids[i];
        do t[k++] = (char)('0' + v % 10);
        while ((v /= 10));
        if (i) b->p[b->n++] = ' ';
        while (k) b->p[b->n++] = t[--k];
    }
    b->p[b->n++] = '\n';
    progress(c->in, ++c->docs, c->tokens += n);
    if (fwrite(b->p, 1, b->n, out) != b->n) return qw_error(QW_EXIT_FAIL, "write error: %s", strerror(errno));
    return 0;
}

static qw_input *open_input(char **files, int nfiles, qw_input_mode mode)
{
    qw_input_opts io = {mode, o.field, o.skip_bad};
    qw_input *in;
    if (qw_input_open((const char *const *)files, nfiles, &io, &in)) fail();
    return in;
}

static void run_encode(char **files, int nfiles)
{
    qw_tok *tok = load_tokenizer();
    int32_t eos = -1;
    if (o.add_eos) {
        const char *name = o.eos ? o.eos : "<|endoftext|>";
        if ((eos = qw_tok_token_to_id(tok, name)) < 0)
            qw_usage_error("the tokenizer has no token '%s' (choose one with --eos)", name);
    }
    qw_input *in = open_input(files, nfiles, o.chat ? QW_INPUT_CHAT : o.jsonl ? QW_INPUT_JSONL : QW_INPUT_TEXT);
    open_output();
    enc_ctx c = {.in = in};
    if (!o.ids) {
        qw_tokens_writer_opts wo = {qw_tok_identity(tok), (uint32_t)qw_tok_vocab_size(tok),
                                    o.zstd_level > 0 ? o.zstd_level : o.zstd ? 3 : 0, (uint64_t)o.frame_tokens, o.chat};
        c.w = qw_tokens_writer_new(out, o.output ? o.output : "-", &wo);
    }
    qw_progress_init(&prog);
    qw_tokenize_opts to = {.tok = tok, .threads = qw_common_opts.threads, .eos = eos, .skip_bad = o.skip_bad};
    qw_tokenize_stats st;
    if (qw_tokenize(in, &to, o.ids ? sink_ids : sink_stream, &c, &st) || (c.w && qw_tokens_writer_flush(c.w))) fail();
    summary(st.docs, (long long)st.tokens, (double)st.bytes, st.skipped + qw_input_skipped(in));
    qw_tokens_writer_free(c.w);
    qw_buf_free(&c.line);
    qw_input_free(in);
    qw_tok_free(tok);
    close_output();
}

/* ---- decoding ---- */

/* The separator with \n \t \r \0 \\ escapes resolved. */
static void unescape(const char *s, qw_buf *b)
{
    static const char from[] = "ntr0\\", to[] = "\n\t\r\0\\";
    for (; *s; s++) {
        const char *k = s[0] == '\\' && s[1] ? strchr(from, s[1]) : NULL;
        if (k) {
            qw_buf_addc(b, to[k - from]);
            s++;
        } else {
            qw_buf_addc(b, *s);
        }
    }
}

typedef struct {
    const qw_tok *tok;
    qw_buf text, sep;
    unsigned long long docs, tokens, bytes;
} dec_ctx;

/* Decode one document and write it as text + separator, or as a JSONL record. */
static int put_doc(dec_ctx *c, const int32_t *ids, size_t n)
{
    c->text.n = 0;
    int rc = qw_tok_decode(c->tok, ids, n, o.skip_special, &c->text);
    if (rc) return rc;
    c->docs++;
    c->tokens += n;
    c->bytes += c->text.n;
    if (o.jsonl) {
        cJSON *rec = cJSON_CreateObject();
        cJSON *s = cJSON_CreateString(qw_buf_cstr(&c->text));
        if (!rec || !s) qw_die(QW_EXIT_FAIL, "out of memory");
        cJSON_AddItemToObject(rec, o.field ? o.field : "text", s);
        char *js = cJSON_PrintUnformatted(rec);
        if (!js) qw_die(QW_EXIT_FAIL, "out of memory");
        fputs(js, out);
        fputc('\n', out);
        free(js);
        cJSON_Delete(rec);
    } else {
        fwrite(c->text.p, 1, c->text.n, out);
        fwrite(c->sep.p, 1, c->sep.n, out);
    }
    if (ferror(out)) return qw_error(QW_EXIT_FAIL, "write error: %s", strerror(errno));
    return 0;
}

/* Parse a line of decimal ids separated by blanks. */
static int parse_ids(const qw_doc *d, qw_ids *ids)
{
    ids->n = 0;
    const char *s = d->text, *end = d->text + d->len;
    while (s < end) {
        if (*s == ' ' || *s == '\t' || *s == '\r') {
            s++;
            continue;
        }
        const char *t = s;
        unsigned long long v = 0;
        while (s < end && *s >= '0' && *s <= '9' && v <= INT32_MAX) v = v * 10 + (unsigned)(*s++ - '0');
        if (s == t || v > INT32_MAX || (s < end && *s != ' ' && *s != '\t' && *s != '\r')) {
            while (s < end && *s != ' ' && *s != '\t') s++;
            return qw_error(QW_EXIT_DATA, "'%s': line %ld: bad token id '%.*s'", d->name, d->line,
                            (int)(s - t > 40 ? 40 : s - t), t);
        }
        qw_ids_push(ids, (int32_t)v);
    }
    return 0;
}

static void run_decode(char **files, int nfiles)
{
    qw_tok *tok = load_tokenizer();
    dec_ctx c = {.tok = tok};
    unescape(o.separator ? o.separator : "\\n", &c.sep);
    open_output();
    qw_progress_init(&prog);
    if (o.ids) {
        qw_input *in = open_input(files, nfiles, QW_INPUT_LINES);
        qw_ids ids = {0};
        qw_doc d;
        int r;
        while ((r = qw_input_next(in, &d)) == 1) {
            if (parse_ids(&d, &ids)) fail();
            if (put_doc(&c, ids.v, ids.n)) {
                qw_error(qw_error_status(), "'%s': line %ld: %s", d.name, d.line, qw_error_msg());
                fail();
            }
            progress(in, c.docs, c.tokens);
        }
        if (r) fail();
        qw_ids_free(&ids);
        qw_input_free(in);
    } else {
        static char *dash[] = {"-"};
        if (!nfiles) {
            files = dash;
            nfiles = 1;
        }
        for (int i = 0; i < nfiles; i++) {
            FILE *f = strcmp(files[i], "-") ? fopen(files[i], "rb") : stdin;
            if (!f) {
                qw_error(QW_EXIT_FAIL, "'%s': %s", files[i], strerror(errno));
                fail();
            }
            qw_tokens_reader *r = qw_tokens_reader_new(f, files[i]);
            qw_tokens_reader_expect(r, qw_tok_identity(tok));
            const int32_t *ids;
            size_t n;
            int rc, got;
            while (!(rc = qw_tokens_read_doc(r, &ids, NULL, &n, &got)) && got) {
                if (put_doc(&c, ids, n)) {
                    qw_error(qw_error_status(), "'%s': document %llu: %s", files[i], c.docs, qw_error_msg());
                    fail();
                }
                if (prog.enabled)
                    qw_progress_update(&prog, 0, 0, "%llu docs, %llu tokens", c.docs, c.tokens);
            }
            if (rc) fail();
            qw_tokens_reader_free(r);
            if (f != stdin) fclose(f);
        }
    }
    summary(c.docs, (long long)c.tokens, (double)c.bytes, 0);
    qw_buf_free(&c.text);
    qw_buf_free(&c.sep);
    qw_tok_free(tok);
    close_output();
}

/* ---- inspecting ---- */

static void run_inspect(char **files, int nfiles)
{
    static char *dash[] = {"-"};
    if (!nfiles) {
        files = dash;
        nfiles = 1;
    }
    open_output();
    for (int i = 0; i < nfiles; i++) {
        FILE *f = strcmp(files[i], "-") ? fopen(files[i], "rb") : stdin;
        if (!f) {
            qw_error(QW_EXIT_FAIL, "'%s': %s", files[i], strerror(errno));
            fail();
        }
        if (i) fputc('\n', out);
        if (qw_tokens_describe(f, files[i], out)) fail();
        if (f != stdin) fclose(f);
    }
    close_output();
}

/* ---- training ---- */

static int feed(const char *text, size_t len, qw_ids *ids, void *tr)
{
    return qw_tok_trainer_feed(tr, text, len);
}

static int sink_train(const qw_doc *doc, const int32_t *ids, const uint8_t *mask, size_t n, void *vc)
{
    enc_ctx *c = vc;
    progress(c->in, ++c->docs, 0);
    return 0;
}

static void run_train(char **files, int nfiles)
{
    qw_input *in = open_input(files, nfiles, o.chat ? QW_INPUT_CHAT : o.jsonl ? QW_INPUT_JSONL : QW_INPUT_TEXT);
    qw_tok_trainer *tr = qw_tok_trainer_new();
    qw_progress_init(&prog);
    enc_ctx c = {.in = in};
    qw_tokenize_opts to = {.threads = qw_common_opts.threads, .eos = -1, .skip_bad = o.skip_bad, .work = feed, .work_ctx = tr};
    qw_tokenize_stats st;
    if (qw_tokenize(in, &to, sink_train, &c, &st)) fail();
    qw_tok_train_opts tro = {o.vocab_size, o.min_frequency, NULL, 0};
    if (qw_tok_trainer_finish(tr, &tro, o.output)) fail();
    summary(st.docs, -1, (double)st.bytes, st.skipped + qw_input_skipped(in));
    qw_tok_trainer_free(tr);
    qw_input_free(in);
    qw_close_stdout();
}

int main(int argc, char **argv)
{
    qw_set_prog(argv[0]);
    int first = qw_parse_args(&info, argc, argv);
    char **files = argv + first;
    int nfiles = argc - first;
    if (nfiles == 0 && isatty(STDIN_FILENO)) {
        qw_print_help(&info, stderr);
        exit(QW_EXIT_USAGE);
    }

    if (o.decode + o.inspect + o.train > 1) qw_usage_error("--decode, --inspect and --train exclude each other");
    int encode = !o.decode && !o.inspect && !o.train;
    if (!o.inspect && !o.tokenizer && !o.train) qw_usage_error("--tokenizer FILE is required");
    if ((o.inspect || o.train) && o.tokenizer) qw_usage_error("--tokenizer makes no sense with %s", o.train ? "--train" : "--inspect");
    if (o.train && (!o.output || o.vocab_size <= 0)) qw_usage_error("--train needs --vocab-size N and -o DIR");
    if (!o.train && (o.vocab_size || o.min_frequency != 2)) qw_usage_error("--vocab-size and --min-frequency need --train");
    if (o.min_frequency < 1) qw_usage_error("--min-frequency: must be at least 1");
    if (o.chat && (o.jsonl || o.decode || o.inspect)) qw_usage_error("--chat reads records itself; it excludes --jsonl, --decode and --inspect");
    if (o.field && !o.jsonl && !o.chat) qw_usage_error("--field needs --jsonl or --chat");
    if (o.jsonl && o.inspect) qw_usage_error("--jsonl makes no sense with --inspect");
    if (o.skip_bad && (o.decode || o.inspect)) qw_usage_error("--skip-bad applies to encoding and training only");
    if (o.ids && (o.inspect || o.train)) qw_usage_error("--ids makes no sense with --inspect or --train");
    if (o.jsonl && o.decode && o.ids) qw_usage_error("--decode reads either --ids lines or a stream; --jsonl picks its output");
    if (o.eos) o.add_eos = 1;
    if (o.add_eos && !encode) qw_usage_error("--add-eos and --eos apply to encoding only");
    if ((o.zstd || o.zstd_level != UNSET || o.frame_tokens) && !(encode && !o.ids))
        qw_usage_error("--zstd, --zstd-level and --frame-tokens apply to stream output only");
    if (o.zstd_level != UNSET && (o.zstd_level < 1 || o.zstd_level > 19)) qw_usage_error("--zstd-level: %d is not in 1-19", o.zstd_level);
    if (o.frame_tokens < 0) qw_usage_error("--frame-tokens: must be positive");
    if ((o.separator || o.skip_special) && !o.decode) qw_usage_error("--separator and --skip-special need --decode");
    if (encode && !o.ids && !o.output) qw_refuse_binary_tty();

    if (o.inspect) run_inspect(files, nfiles);
    else if (o.train) run_train(files, nfiles);
    else if (o.decode) run_decode(files, nfiles);
    else run_encode(files, nfiles);
    return 0;
}
