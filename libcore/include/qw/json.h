/* qw/json.h — reading the token-id arrays of JSON records: one home for
 * the checks that every record reader of ids makes (qw-grpo's scored
 * rollouts, qw-dpo's pairs (qw/pref.h), qw-reward's records, qw-rollout's
 * prompts (qw/rollout.h)).
 *
 * qw_json_ids appends the elements of `a`, the field `name` of a record,
 * to *out; each must be an integer in [0, vocab).  `where` starts each
 * message and names the input and the record ("'pairs.jsonl': line 4").
 * Errors (QW_EXIT_DATA, qw/cli.h; *out may hold a prefix of the ids):
 *     WHERE: missing "NAME"                          a is NULL
 *     WHERE: "NAME" is not an array of token ids
 *     WHERE: "NAME" is empty                         with QW_JSON_IDS_NONEMPTY
 *     WHERE: "NAME"[I] is not an integer token id    (a string, a fraction …)
 *     WHERE: "NAME"[I] = X is outside the model's vocabulary (V): another tokenizer?
 */
#ifndef QW_JSON_H
#define QW_JSON_H

#include <cJSON.h>

#include "qw/buf.h"

enum { QW_JSON_IDS_NONEMPTY = 1 };

int qw_json_ids(const cJSON *a, const char *name, const char *where, int vocab, int flags, qw_ids *out);

#endif
