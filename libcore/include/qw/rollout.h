/* qw/rollout.h — rollout records (qw-rollout(5)): what the generation
 * engine's completions become on disk, for qw-rollout and qw-eval gen.
 *
 * A record is one JSON line: idx, sample, prompt (when known), prompt_ids,
 * completion (when a tokenizer is given), completion_ids, logprobs,
 * raw_logprobs, finish_reason, forced_at (only when the thinking budget
 * inserted text), then every other field of the input record in its order
 * (the fields above are not copied from it).  Strings and copied values
 * are written as transformers' tojson writes them (qw/chat.h); log-probs
 * with 9 significant digits, null for a non-finite one.
 *
 * Errors: 0 or QW_EXIT_* with a message (qw/cli.h).
 */
#ifndef QW_ROLLOUT_H
#define QW_ROLLOUT_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "qw/buf.h"
#include "qw/config.h"
#include "qw/infer.h"
#include "qw/tok.h"

/* The ids that end a completion: generation_config.json's eos_token_id in
 * `dir` (a number or a list), else config.json's (c).  QW_EXIT_DATA for an
 * id outside the vocabulary. */
int qw_rollout_eos_ids(const char *dir, const qw_config *c, qw_ids *out);

/* The completion's text: its ids decoded, special tokens skipped (as
 * transformers' skip_special_tokens); ids the tokenizer does not have (the embedding's padding rows) are left out.
 * Appended to *out. */
int qw_rollout_text(const qw_tok *tok, const qw_completion *c, qw_buf *out);

/* Append one record and its newline to *b.  prompt may be NULL (not
 * written), tok may be NULL (no completion text), rec may be NULL (no
 * other fields). */
int qw_rollout_record(qw_buf *b, long idx, int sample, const char *prompt, const int32_t *prompt_ids,
                      size_t n_prompt, const qw_tok *tok, const qw_completion *c, const cJSON *rec);

/* ---- prompts (qw-rollout(5)'s input) ---- */

/* One prompt record: `prompt` (text), `prompt_ids`, or with chat set
 * `messages` (and `tools`) rendered by the chat template with the
 * generation prompt. */
typedef struct {
    long line;                /* from 0: its line in the input */
    cJSON *rec;               /* the record, owned */
    char *prompt;             /* the text given to the model (NULL: ids given, no tokenizer) */
    qw_ids ids;
} qw_prompt_rec;

typedef struct {
    const char *src;          /* the input's name, for messages */
    const qw_tok *tok;        /* NULL: prompt_ids only (QW_EXIT_USAGE for text) */
    int chat;                 /* records hold messages */
    int thinking_off;         /* chat: enable_thinking false */
    int vocab_size;           /* ids must be below it */
    int max_context;          /* a prompt must leave room: fewer tokens than this */
} qw_prompt_opts;

/* Parse and tokenize every line of b.  QW_EXIT_DATA naming the source and
 * line for a bad record, an empty prompt or one that fills max_context. */
int qw_prompts_read(const qw_buf *b, const qw_prompt_opts *o, qw_prompt_rec **out, long *n_out);
void qw_prompts_free(qw_prompt_rec *v, long n);

#endif
