/* fuzz_prompts.c — prompt records (libcore/rollout.c qw_prompts_read), as
 * qw-rollout and qw-grpo --online read them: the input as JSONL, without a
 * tokenizer (prompt_ids only), with one (text prompts), and as chat
 * messages with thinking on and off; every prompt read is non-empty, within
 * the vocabulary and shorter than the context. */
#include "fuzz.h"

#include "qw/rollout.h"

#define SRC "prompts.jsonl"
#define CONTEXT 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qw_tok *tok = fz_tokenizer();
    int vocab = qw_tok_vocab_size(tok);
    qw_buf b = {0};
    qw_buf_add(&b, data, size);
    for (int k = 0; k < 4; k++) {
        qw_prompt_opts o = {SRC, k ? tok : NULL, k >= 2, k == 3, vocab, CONTEXT};
        qw_prompt_rec *v = NULL;
        long n = 0;
        int rc = qw_prompts_read(&b, &o, &v, &n);
        fz_expect(rc, FZ_DATA | FZ_USAGE, SRC);
        for (long i = 0; !rc && i < n; i++) {
            if (v[i].ids.n < 1 || v[i].ids.n >= CONTEXT) fz_fatal("a prompt that is empty or fills the context", (int)v[i].ids.n);
            for (size_t t = 0; t < v[i].ids.n; t++)
                if (v[i].ids.v[t] < 0 || v[i].ids.v[t] >= vocab) fz_fatal("an id outside the vocabulary", v[i].ids.v[t]);
        }
        if (!rc) qw_prompts_free(v, n);
    }
    qw_buf_free(&b);
    return 0;
}
