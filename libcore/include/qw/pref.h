/* qw/pref.h — preference pairs for DPO (qw-dpo(1), qw-dpo(5)).  One JSON
 * object per line, in token-id form with
 *     "prompt_ids":   [ids…]   (may be empty)
 *     "chosen_ids":   [ids…]   (at least one token)
 *     "rejected_ids": [ids…]   (at least one token)
 * and optionally both "ref_chosen_logp" and "ref_rejected_logp" (numbers:
 * the reference model's summed completion log-probs, precomputed).  Ids
 * are 0 ≤ id < vocab.  Blank lines are skipped.
 *
 * Text form (read with a tokenizer, qw_pref_text), as TRL's DPOTrainer
 * tokenizes it: "prompt", "chosen" and "rejected" either
 *   - strings: prompt ids = the prompt's tokens; each completion's ids =
 *     its tokens followed by the EOS id (tx->eos); or
 *   - conversational, lists of messages (qw/chat.h): P = the prompt
 *     rendered with the chat template and the generation prompt; each
 *     completion's text = the rendering of prompt + completion messages
 *     minus its prefix P (which it must start with), tokenized alone; no
 *     EOS is appended (the template ends the turn).
 * Texts are tokenized without special tokens added; every id must be
 * below vocab (a tokenizer bigger than the model's vocabulary: another
 * tokenizer).  The ref fields are read as in the id form.
 *
 * Ownership: qw_pref_parse_ids fills *out with arrays it allocates (free
 * with qw_pref_pair_free); qw_pref_read_ids owns all pairs of the set
 * (free with qw_pref_free).
 * Errors: QW_EXIT_DATA with a message naming the file, the line and the
 * reason (bad JSON, a missing or non-array field, a non-integer or
 * out-of-range id, an empty completion, only one of the ref fields);
 * QW_EXIT_FAIL when the file cannot be read.  Nothing is kept on failure. */
#ifndef QW_PREF_H
#define QW_PREF_H

#include <stdint.h>

typedef struct {
    int32_t *prompt, *chosen, *rejected;
    int n_prompt, n_chosen, n_rejected;
    int has_ref;               /* ref_c, ref_r were given */
    double ref_c, ref_r;       /* summed reference log-probs of each completion */
    long line;                 /* the record's 1-based line in its input */
} qw_pref_pair;

typedef struct {
    qw_pref_pair *pairs;
    long n;
} qw_pref_set;

int qw_pref_parse_ids(const char *text, const char *path, long line, int vocab, qw_pref_pair *out);

struct qw_tok;
typedef struct {
    const struct qw_tok *tok;  /* the tokenizer of the text form; NULL: ids only (a text record is QW_EXIT_DATA) */
    int32_t eos;               /* appended to plain-text completions */
} qw_pref_text;

/* One record of either form (ids when it has "prompt_ids", else text);
 * tx may be NULL (ids only).  `path` names the input in messages ("-" is
 * written <stdin>). */
int qw_pref_parse(const char *text, const char *path, long line, int vocab, const qw_pref_text *tx, qw_pref_pair *out);
/* Every record of a file ("-": stdin), of either form. */
int qw_pref_read(const char *path, int vocab, const qw_pref_text *tx, qw_pref_set *out);
void qw_pref_pair_free(qw_pref_pair *p);
int qw_pref_read_ids(const char *path, int vocab, qw_pref_set *out);
void qw_pref_free(qw_pref_set *s);

#endif
