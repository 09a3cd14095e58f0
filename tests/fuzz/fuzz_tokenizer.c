/* fuzz_tokenizer.c — tokenizer.json (libcore/tok.c, tok_pretok.c), loaded
 * as --tokenizer loads it; a tokenizer that loads then encodes a fixed text
 * and the input itself, decodes what it made, and maps ids and tokens both
 * ways. */
#include "fuzz.h"

#include "qw/tok.h"

static char *path;

static const char sample[] =
    "Hello, world! It's 2026: 3.14159 <|im_start|>user\nnaïve café, cafe\u0301 日本語 🙂\t\r\n  "
    "<think>\nwhy?\n</think>\n<|endoftext|>  x<|im_end|>y's we'll DON'T\x7f";

static void encode_decode(const qw_tok *t, const char *text, size_t n)
{
    qw_ids ids = {0};
    qw_buf out = {0};
    int rc = qw_tok_encode(t, text, n, &ids);
    fz_expect(rc, FZ_DATA, NULL);
    for (size_t i = 0; i < ids.n; i++)
        if (ids.v[i] < 0 || ids.v[i] >= qw_tok_vocab_size(t)) fz_fatal("an id outside the vocabulary", 0);
    if (!rc) fz_expect(qw_tok_decode(t, ids.v, ids.n, 0, &out), FZ_DATA, NULL);
    qw_ids_free(&ids);
    qw_buf_free(&out);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    path = fz_path("tokenizer.json");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_write(path, data, size);
    qw_tok *t;
    int rc = qw_tok_load(path, &t);
    fz_expect(rc, FZ_DATA, path);
    if (rc) return 0;
    encode_decode(t, sample, sizeof sample - 1);
    encode_decode(t, (const char *)data, size < 4096 ? size : 4096);
    int32_t n = qw_tok_vocab_size(t);
    qw_buf out = {0};
    for (int32_t id = 0; id < n && id < FZ_MAX_ITEMS; id++) {
        const char *s = qw_tok_id_to_token(t, id);
        if (s && qw_tok_token_to_id(t, s) < 0) fz_fatal("a token without an id", 0);
        out.n = 0;
        fz_expect(qw_tok_decode(t, &id, 1, id & 1, &out), FZ_DATA, NULL);
    }
    qw_buf_free(&out);
    qw_tok_free(t);
    return 0;
}
