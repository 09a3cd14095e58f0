/* qw/pref.h — preference pairs for DPO (qw-dpo, in progress), token-id
 * form: one JSON object per line with
 *     "prompt_ids":   [ids…]   (may be empty)
 *     "chosen_ids":   [ids…]   (at least one token)
 *     "rejected_ids": [ids…]   (at least one token)
 * and optionally both "ref_chosen_logp" and "ref_rejected_logp" (numbers:
 * the reference model's summed completion log-probs, precomputed).  Ids
 * are 0 ≤ id < vocab.  Blank lines are skipped.
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
} qw_pref_pair;

typedef struct {
    qw_pref_pair *pairs;
    long n;
} qw_pref_set;

int qw_pref_parse_ids(const char *text, const char *path, long line, int vocab, qw_pref_pair *out);
void qw_pref_pair_free(qw_pref_pair *p);
int qw_pref_read_ids(const char *path, int vocab, qw_pref_set *out);
void qw_pref_free(qw_pref_set *s);

#endif
