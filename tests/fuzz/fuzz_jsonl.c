/* fuzz_jsonl.c — JSONL records (libcore/io.c, tokenize.c) as qw-tokenize
 * reads them: the input is a file given to qw_input (so libarchive also
 * sees it: a compressed file or an archive is opened as such), read as
 * --jsonl, as --jsonl --skip-bad and as --chat, and every document is
 * encoded by qw_tokenize. */
#include "fuzz.h"

#include "qw/io.h"
#include "qw/tokenize.h"

static char *path;

static int sink(const qw_doc *doc, const int32_t *ids, const uint8_t *mask, size_t n, void *ctx)
{
    if (!doc->name || !strstr(doc->name, path) || doc->line < 1) fz_fatal("a document without its file and line", 0);
    if (!mask != !doc->spans) fz_fatal("a chat document without a loss mask, or another with one", 0);
    for (size_t i = 0; mask && i < n; i++)
        if (mask[i] > 1) fz_fatal("a loss mask that is not 0/1", 0);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= qw_tok_vocab_size(fz_tokenizer())) fz_fatal("an id outside the vocabulary", 0);
    return ++*(long *)ctx < FZ_MAX_ITEMS ? 0 : qw_error(QW_EXIT_USAGE, "enough documents");
}

static void tokenize(qw_input_mode mode, int skip_bad)
{
    qw_input_opts io = {.mode = mode, .skip_bad = skip_bad};
    qw_input *in;
    const char *paths[1] = {path};
    fz_expect(qw_input_open(paths, 1, &io, &in), 0, NULL);
    qw_tokenize_opts to = {.tok = fz_tokenizer(), .threads = 1, .eos = skip_bad ? 0 : -1, .skip_bad = skip_bad};
    qw_tokenize_stats st;
    long docs = 0;
    int rc = qw_tokenize(in, &to, sink, &docs, &st);
    if (rc != QW_EXIT_USAGE) fz_expect(rc, FZ_DATA, path);
    if (st.docs != (uint64_t)docs) fz_fatal("documents given and counted differ", 0);
    qw_input_free(in);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    path = fz_path("fuzz.jsonl");
    fz_tokenizer();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_write(path, data, size);
    tokenize(QW_INPUT_JSONL, 0);
    tokenize(QW_INPUT_JSONL, 1);
    tokenize(QW_INPUT_CHAT, 0);
    return 0;
}
