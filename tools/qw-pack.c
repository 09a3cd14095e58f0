/* qw-pack — token streams in, packed shards out (qw-pack(1), qw-pack(5)). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qw/cli.h"
#include "qw/io.h"
#include "qw/pack.h"
#include "qw/shard.h"
#include "qw/tok.h"
#include "qw/tokenize.h"
#include "qw/tokens.h"
#include "qw/vldata.h"

static int seq_len, zstd_level = 3, inspect, chat, skip_bad;
static long long shard_rows, pad_id;
static double val_frac;
static const char *out_dir, *mode = "pretrain", *long_docs = "truncate", *tokenizer, *model_dir, *config_path;

static const qw_opt opts[] = {
    {"seq-len", 'T', QW_OPT_INT, &seq_len, "SEQLEN", "tokens a trainer sees per row (rows hold SEQLEN+1)"},
    {"output", 'o', QW_OPT_STR, &out_dir, "DIR", "write shards and index.json into DIR"},
    {"mode", 0, QW_OPT_STR, &mode, "pretrain|sft", "concatenate-and-split, or best-fit-decreasing (default pretrain)"},
    {"long", 0, QW_OPT_STR, &long_docs, "truncate|split", "sft: documents longer than a row (default truncate)"},
    {"val-frac", 0, QW_OPT_DOUBLE, &val_frac, "F", "fraction of documents for validation (default 0)"},
    {"shard-rows", 0, QW_OPT_LONG, &shard_rows, "N", "rows per shard file (default: about 256 MiB)"},
    {"zstd", 0, QW_OPT_INT, &zstd_level, "LEVEL", "zstd level of the row blocks, 0 for none (default 3)"},
    {"pad-id", 0, QW_OPT_LONG, &pad_id, "ID", "padding token (default 0)"},
    {"tokenizer", 0, QW_OPT_STR, &tokenizer, "FILE", "check the streams were made by this tokenizer.json (or its directory)"},
    {"chat", 0, QW_OPT_FLAG, &chat, NULL, "FILEs are chat or prompt/completion JSONL: render, tokenize (needs --tokenizer), mask"},
    {"model", 0, QW_OPT_STR, &model_dir, "DIR", "--chat with images: a Qwen3-VL model (config.json, preprocessor_config.json)"},
    {"config", 0, QW_OPT_STR, &config_path, "FILE", "--chat with images: a Qwen3-VL config.json (default processor settings)"},
    {"skip-bad", 0, QW_OPT_FLAG, &skip_bad, NULL, "skip and count bad samples (records, images) instead of stopping"},
    {"inspect", 0, QW_OPT_FLAG, &inspect, NULL, "print the header and statistics of each shard or data DIR"},
    QW_COMMON_BEGIN, QW_COMMON_SEED, QW_COMMON_THREADS, QW_COMMON_QUIET, QW_COMMON_END,
    {0},
};

static const qw_prog_info info = {
    "qw-pack",
    "-T SEQLEN -o DIR [options] [FILE...]\n"
    "       qw-pack -T SEQLEN -o DIR --chat --tokenizer FILE [options] [FILE...]\n"
    "       qw-pack -T SEQLEN -o DIR --chat --tokenizer FILE --model DIR|--config FILE --mode sft [options] [FILE|TAR...]\n"
    "       qw-pack --inspect FILE|DIR...",
    "Pack qw-tokens(5) streams (standard input when no FILE), or chat and prompt/completion JSONL\n"
    "with --chat, into rows of SEQLEN+1 tokens with document boundaries and loss masks, shuffled\n"
    "and split, as qw-pack(5) shards.  With a Qwen3-VL --model or --config, conversations may hold\n"
    "images (JSONL image parts, webdataset tars): the shards carry their patches.",
    opts,
};

static uint64_t expect_identity;   /* of --tokenizer; 0 without */
static uint32_t expect_vocab;
static qw_tok *tok;                /* --tokenizer, kept for --chat */

static void load_tokenizer(void)
{
    if (qw_tok_load_arg(tokenizer, &tok)) qw_die_last();
    expect_identity = qw_tok_identity(tok);
    expect_vocab = (uint32_t)qw_tok_vocab_size(tok);
}

/* ---- reading token streams ---- */

typedef struct {
    uint64_t identity;         /* expected identity; 0 until known */
    uint32_t vocab;
    int known;
    qw_progress prog;
    qw_docs *docs;
} reading;

static int read_stream(FILE *f, const char *name, reading *rd, qw_docs *docs)
{
    qw_tokens_reader *r = qw_tokens_reader_new(f, name);
    if (rd->known) qw_tokens_reader_expect(r, rd->identity);
    qw_tokens_frame fr;
    int st, got;
    char h1[16], h2[16];
    while (!(st = qw_tokens_read_frame(r, &fr, &got)) && got) {
        if (!rd->known) {
            rd->identity = fr.identity;
            rd->known = 1;
            qw_tokens_reader_expect(r, rd->identity);
        }
        if (fr.vocab_size > rd->vocab) rd->vocab = fr.vocab_size;
        size_t at = 0;
        for (uint32_t k = 0; k < fr.n_docs && !st; k++) {
            if (fr.doc_len[k] && (st = qw_docs_add(docs, fr.ids + at, fr.doc_len[k], fr.mask ? fr.mask + at : NULL)))
                st = qw_error(st, "'%s': frame %ld: %s (streams with and without loss masks do not mix)", name,
                              fr.index, qw_error_msg());
            at += fr.doc_len[k];
        }
        if (st) break;
        qw_progress_update(&rd->prog, 0, 0, "read %s docs, %s tokens", qw_human((double)docs->n_docs, h1),
                           qw_human((double)docs->tokens.n, h2));
    }
    qw_tokens_reader_free(r);
    return st;
}

/* ---- reading chat and prompt/completion JSONL (--chat) ---- */

static int sink_chat(const qw_doc *doc, const int32_t *ids, const uint8_t *mask, size_t n, void *vd)
{
    reading *rd = vd;
    char h1[16], h2[16];
    int st = n ? qw_docs_add(rd->docs, ids, n, mask) : 0;
    qw_progress_update(&rd->prog, 0, 0, "read %s docs, %s tokens", qw_human((double)rd->docs->n_docs, h1),
                       qw_human((double)rd->docs->tokens.n, h2));
    return st;
}

static int read_chat(char **files, int n, reading *rd)
{
    qw_input_opts io = {QW_INPUT_CHAT, NULL, 0};
    qw_input *in;
    int st = qw_input_open((const char *const *)files, n, &io, &in);
    if (st) return st;
    qw_tokenize_opts to = {.tok = tok, .threads = qw_common_opts.threads, .eos = -1};
    st = qw_tokenize(in, &to, sink_chat, rd, NULL);
    qw_input_free(in);
    return st;
}

/* ---- image-text samples (--chat with a vision model) ---- */

static qw_config vl_cfg;
static qw_vision_prep vl_prep;

static int read_vl(char **files, int n, reading *rd, long *bad)
{
    qw_vl_reader *r;
    int st = qw_vl_reader_open((const char *const *)files, n, skip_bad, &r);
    if (st) return st;
    qw_vl_images im = {0};
    qw_ids ids = {0};
    qw_buf mask = {0};
    char h1[16], h2[16];
    for (;;) {
        qw_vl_sample s;
        int got = qw_vl_reader_next(r, &s);
        if (got == 0) break;
        if (got == 1) {
            qw_vl_images_clear(&im);
            ids.n = mask.n = 0;
            for (int k = 0; k < s.n_images && !st; k++)
                if ((st = qw_vl_images_add(&im, &vl_prep, s.image_data[k], s.image_size[k], s.image_name[k])))
                    st = qw_error(st, "%s: image %d: %s", s.where, k, qw_error_msg());
            if (!st && (st = qw_tok_encode_mask(tok, s.text, s.len, s.spans, s.n_spans, &ids, &mask)))
                st = qw_error(st, "%s: %s", s.where, qw_error_msg());
            if (!st) st = qw_vl_expand(&vl_cfg, &im, &ids, &mask, s.where);
            if (!st && im.n && ids.n > (size_t)seq_len + 1)
                st = qw_error(QW_EXIT_DATA, "%s: %zu tokens with images do not fit a row of %d (a sample with images is "
                              "never cut)", s.where, ids.n, seq_len + 1);
            if (!st && ids.n) {
                qw_shard_images si = {(uint32_t)im.n, (uint32_t)im.K, (const uint32_t *)im.start,
                                      (const uint32_t *)im.thw, im.pixels};
                st = qw_docs_add_images(rd->docs, ids.v, ids.n, (const uint8_t *)mask.p, &si);
            }
        } else {
            st = got;
        }
        if (st == QW_EXIT_DATA && skip_bad) {
            qw_warn("skipped: %s", qw_error_msg());
            ++*bad;
            st = 0;
            continue;
        }
        if (st) break;
        qw_progress_update(&rd->prog, 0, 0, "read %s docs, %s tokens", qw_human((double)rd->docs->n_docs, h1),
                           qw_human((double)rd->docs->tokens.n, h2));
    }
    *bad += qw_vl_reader_skipped(r);
    qw_vl_reader_free(r);
    qw_vl_images_free(&im);
    qw_ids_free(&ids);
    qw_buf_free(&mask);
    return st;
}

/* The vision model of --model / --config, checked against the tokenizer. */
static void load_vision(void)
{
    if (model_dir && config_path) qw_usage_error("give --model or --config, not both");
    if (!chat) qw_usage_error("--%s: images are read with --chat", model_dir ? "model" : "config");
    if (qw_config_load(model_dir ? model_dir : config_path, &vl_cfg) || qw_vl_prep(&vl_cfg, model_dir, &vl_prep))
        qw_die_last();
    const char *what = model_dir ? model_dir : config_path;
    if (vl_cfg.vision.depth <= 0 || vl_cfg.image_token_id < 0)
        qw_die(QW_EXIT_USAGE, "'%s': not a Qwen3-VL model (no vision_config or image_token_id)", what);
    int32_t id = qw_tok_token_to_id(tok, "<|image_pad|>");
    if (id != vl_cfg.image_token_id)
        qw_die(QW_EXIT_USAGE, "'%s': image_token_id %d, but the tokenizer's <|image_pad|> is %d", what,
               vl_cfg.image_token_id, id);
}

static void show_progress(void *ctx, uint64_t done, uint64_t total)
{
    char h[16];
    qw_progress_update(ctx, (double)done, (double)total, "wrote %s rows", qw_human((double)done, h));
}

static void print_split(const char *name, const qw_pack_split_report *r)
{
    fprintf(stderr, "%s: %s: %llu documents, %llu tokens -> %llu rows in %llu shards, %llu bytes; "
            "%llu tokens dropped, %llu padding\n", qw_prog, name, (unsigned long long)r->docs,
            (unsigned long long)r->tokens, (unsigned long long)r->rows, (unsigned long long)r->shards,
            (unsigned long long)r->bytes, (unsigned long long)r->dropped, (unsigned long long)r->padding);
}

static void pack(char **files, int n)
{
    if (!n && isatty(STDIN_FILENO)) {
        qw_print_help(&info, stderr);
        exit(QW_EXIT_USAGE);
    }
    if (seq_len < 1) qw_usage_error("-T/--seq-len is required and must be at least 1");
    if (!out_dir) qw_usage_error("-o/--output DIR is required");
    qw_pack_opts o = {.dir = out_dir, .seq_len = seq_len, .seed = (uint64_t)qw_common_opts.seed,
                      .val_frac = val_frac, .zstd_level = zstd_level};
    if (!strcmp(mode, "sft")) o.mode = QW_PACK_SFT;
    else if (strcmp(mode, "pretrain")) qw_usage_error("--mode: '%s' is not pretrain or sft", mode);
    if (!strcmp(long_docs, "split")) o.long_docs = QW_PACK_SPLIT;
    else if (strcmp(long_docs, "truncate")) qw_usage_error("--long: '%s' is not truncate or split", long_docs);
    if (!(val_frac >= 0 && val_frac < 1)) qw_usage_error("--val-frac: %g is not in [0, 1)", val_frac);
    if (shard_rows < 0) qw_usage_error("--shard-rows: must be >= 0");
    if (zstd_level < 0 || zstd_level > 22) qw_usage_error("--zstd: %d is not in 0..22", zstd_level);
    if (pad_id < 0 || pad_id > UINT32_MAX) qw_usage_error("--pad-id: %lld is out of range", pad_id);
    o.shard_rows = (uint64_t)shard_rows;
    o.pad_id = (uint32_t)pad_id;

    if (chat && !tokenizer) qw_usage_error("--chat needs --tokenizer FILE");
    qw_docs docs = {0};
    reading rd = {.identity = expect_identity, .vocab = expect_vocab, .known = tokenizer != NULL, .docs = &docs};
    qw_progress_init(&rd.prog);
    long bad = 0;
    int vl = model_dir || config_path;
    if (vl) load_vision();
    if (vl && o.mode != QW_PACK_SFT) qw_usage_error("samples with images are packed whole: --mode sft");
    if (skip_bad && !vl) qw_usage_error("--skip-bad: only with images (--model or --config)");
    if (chat && (vl ? read_vl(files, n, &rd, &bad) : read_chat(files, n, &rd))) {
        qw_progress_end(&rd.prog);
        qw_die_last();
    }
    for (int i = 0; !chat && i < (n ? n : 1); i++) {
        const char *name = n && strcmp(files[i], "-") ? files[i] : "-";
        FILE *f = strcmp(name, "-") ? fopen(name, "rb") : stdin;
        if (!f) qw_die(QW_EXIT_FAIL, "'%s': %s", name, strerror(errno));
        int st = read_stream(f, name, &rd, &docs);
        if (f != stdin) fclose(f);
        if (st) {
            qw_progress_end(&rd.prog);
            qw_die_last();
        }
    }
    qw_progress_end(&rd.prog);
    if (!docs.n_docs) qw_die(QW_EXIT_DATA, "'%s': no documents in the input", n ? files[0] : "-");
    o.identity = rd.identity;
    o.vocab_size = rd.vocab;
    if (o.pad_id >= o.vocab_size) qw_usage_error("--pad-id: %u is outside the vocabulary of %u", o.pad_id, o.vocab_size);

    qw_progress prog;
    qw_progress_init(&prog);
    o.progress = show_progress;
    o.progress_ctx = &prog;
    qw_pack_report rep;
    int st = qw_pack_dataset(&docs, &o, &rep);
    qw_progress_end(&prog);
    size_t n_img = docs.n_img;
    uint64_t px_rows = docs.px_rows;
    uint32_t K = docs.K;
    qw_docs_free(&docs);
    if (st) qw_die_last();
    if (!qw_common_opts.quiet) {
        if (vl) fprintf(stderr, "%s: %zu images, %llu patch rows of %u; %ld bad samples skipped\n", qw_prog, n_img,
                        (unsigned long long)px_rows, K, bad);
        print_split("train", &rep.train);
        if (rep.val.docs) print_split("val", &rep.val);
    }
}

/* ---- --inspect ---- */

typedef struct {
    uint64_t rows, tokens, padding, segments, starts, targets, masked;
    uint32_t seg_min, seg_max;
    int images;                /* the data carries images: count them */
    uint64_t n_images, patch_rows;
} stats;

static int dataset_stats(qw_dataset *ds, stats *s)
{
    uint32_t L = qw_dataset_row_len(ds);
    int32_t *tok = qw_malloc(L * sizeof *tok), *seg = qw_malloc(L * sizeof *seg), *pos = qw_malloc(L * sizeof *pos);
    uint8_t *loss = qw_malloc(L);
    memset(s, 0, sizeof *s);
    s->seg_min = UINT32_MAX;
    s->images = qw_dataset_has_images(ds);
    int st = 0;
    for (uint64_t r = 0; r < qw_dataset_rows(ds) && !st; r++) {
        qw_shard_images im;
        if ((st = qw_dataset_read_row_images(ds, r, tok, seg, pos, loss, &im))) break;
        s->n_images += im.n;
        for (uint32_t k = 0; k < im.n; k++) s->patch_rows += (uint64_t)im.thw[3 * k] * im.thw[3 * k + 1] * im.thw[3 * k + 2];
        uint32_t nseg = 0;
        for (uint32_t i = 0; i < L; i++) {
            if (!seg[i]) { s->padding++; continue; }
            s->tokens++;
            if ((uint32_t)seg[i] > nseg) nseg = (uint32_t)seg[i];
            if (pos[i] == 0) s->starts++;
            else if (loss[i]) s->targets++;
            else s->masked++;
        }
        s->rows++;
        s->segments += nseg;
        if (nseg < s->seg_min) s->seg_min = nseg;
        if (nseg > s->seg_max) s->seg_max = nseg;
    }
    free(tok); free(seg); free(pos); free(loss);
    return st;
}

static void print_stats(const stats *s, uint32_t L)
{
    double cells = (double)s->rows * L, within = (double)(s->targets + s->masked);
    printf("rows: %llu\n", (unsigned long long)s->rows);
    printf("tokens: %llu\n", (unsigned long long)s->tokens);
    printf("targets: %llu\n", (unsigned long long)s->targets);
    printf("documents per row: min %u, mean %.2f, max %u\n", s->rows ? s->seg_min : 0,
           s->rows ? (double)s->segments / s->rows : 0.0, s->seg_max);
    printf("padding: %.4f\n", cells ? s->padding / cells : 0.0);
    printf("masked: %.4f\n", within ? s->masked / within : 0.0);
    if (s->images)
        printf("images: %llu (%llu patch rows)\n", (unsigned long long)s->n_images, (unsigned long long)s->patch_rows);
}

static void inspect_file(const char *path)
{
    qw_dataset *ds;
    qw_shard *sh;
    stats s;
    if (qw_dataset_open(&path, 1, "train", seq_len, expect_identity, &ds) || dataset_stats(ds, &s) ||
        qw_shard_open(path, &sh))
        qw_die_last();
    const qw_shard_header *h = qw_shard_info(sh);
    struct stat sb;
    stat(path, &sb);
    printf("file: %s\n", path);
    printf("format: qw-pack %u\n", h->version);
    printf("seq_len: %u (rows of %u tokens)\n", h->row_len - 1, h->row_len);
    printf("identity: %016llx\n", (unsigned long long)h->identity);
    printf("vocab_size: %u (%u-byte tokens)\n", h->vocab_size, h->token_width);
    printf("pad_id: %u\n", h->pad_id);
    printf("loss_mask: %s\n", h->flags & QW_SHARD_MASK ? "yes" : "no");
    printf("compression: %s\n", h->flags & QW_SHARD_ZSTD ? "zstd" : "none");
    printf("blocks: %u of %u rows\n", h->n_blocks, h->rows_per_block);
    printf("bytes: %lld\n", (long long)sb.st_size);
    print_stats(&s, h->row_len);
    qw_shard_close(sh);
    qw_dataset_close(ds);
}

static void inspect_dir(const char *dir)
{
    static const char *const splits[2] = {"train", "val"};
    for (int v = 0; v < 2; v++) {
        qw_dataset *ds;
        stats s;
        int st = qw_dataset_open(&dir, 1, splits[v], seq_len, expect_identity, &ds);
        if (st && v == 1 && strstr(qw_error_msg(), "no val shards")) break;
        if (st || dataset_stats(ds, &s)) qw_die_last();
        if (v == 0) {
            printf("directory: %s\n", dir);
            printf("seq_len: %u (rows of %u tokens)\n", qw_dataset_row_len(ds) - 1, qw_dataset_row_len(ds));
            printf("identity: %016llx\n", (unsigned long long)qw_dataset_identity(ds));
            printf("vocab_size: %u\n", qw_dataset_vocab_size(ds));
        }
        printf("split: %s\n", splits[v]);
        print_stats(&s, qw_dataset_row_len(ds));
        qw_dataset_close(ds);
    }
}

int main(int argc, char **argv)
{
    qw_set_prog(argv[0]);
    int first = qw_parse_args(&info, argc, argv);
    if (seq_len < 0) qw_usage_error("-T/--seq-len: must be at least 1");
    if (tokenizer) load_tokenizer();
    if (inspect && chat) qw_usage_error("--chat makes no sense with --inspect");
    if (inspect) {
        if (first == argc) qw_usage_error("--inspect needs a shard FILE or a data DIR");
        for (int i = first; i < argc; i++) {
            struct stat sb;
            if (i > first) putchar('\n');
            if (!stat(argv[i], &sb) && S_ISDIR(sb.st_mode)) inspect_dir(argv[i]);
            else inspect_file(argv[i]);
        }
    } else {
        pack(argv + first, argc - first);
    }
    qw_tok_free(tok);
    qw_close_stdout();
    return 0;
}
