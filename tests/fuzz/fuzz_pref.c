/* fuzz_pref.c — one preference record (libcore/pref.c), as qw-dpo and
 * qw-reward train read them: the ids form alone (no tokenizer), then
 * either form with a tokenizer (text pairs and chat messages through the
 * template, EOS appended to plain completions); a parsed pair holds ids
 * below the vocabulary and a non-empty completion on each side. */
#include "fuzz.h"

#include "qw/pref.h"

#define PATH "pairs.jsonl"

static void check_pair(const qw_pref_pair *p, int vocab)
{
    if (p->n_chosen < 1 || p->n_rejected < 1 || p->n_prompt < 0) fz_fatal("a pair with an empty side", 0);
    const int32_t *v[3] = {p->prompt, p->chosen, p->rejected};
    int n[3] = {p->n_prompt, p->n_chosen, p->n_rejected};
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < n[s]; i++)
            if (v[s][i] < 0 || v[s][i] >= vocab) fz_fatal("an id outside the vocabulary", v[s][i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qw_tok *tok = fz_tokenizer();
    int vocab = qw_tok_vocab_size(tok);
    char *text = strndup((const char *)data, size);   /* one line, up to the first NUL */
    if (!text) abort();
    qw_pref_pair p;
    int rc = qw_pref_parse(text, PATH, 1, vocab, NULL, &p);
    fz_expect(rc, FZ_DATA, PATH);
    if (!rc) check_pair(&p, vocab), qw_pref_pair_free(&p);
    qw_pref_text tx = {tok, qw_tok_token_to_id(tok, "<|im_end|>")};
    rc = qw_pref_parse(text, PATH, 1, vocab, &tx, &p);
    fz_expect(rc, FZ_DATA, PATH);
    if (!rc) check_pair(&p, vocab), qw_pref_pair_free(&p);
    free(text);
    return 0;
}
