/* qw/score.h — scoring rollout records with the verifiers of a
 * --verifier spec: what qw-reward(1) does to each record, as a library,
 * so that qw-reward and qw-grpo --online score with the same code.
 *
 * A spec names verifiers (qw/reward.h states their rules): "math",
 * "think", "code", "model", "cmd", or several as NAME:WEIGHT,… whose
 * weighted sum is the reward.  Scoring a record:
 *   1. qw_scorer_check: the fields the verifiers need are there
 *      (`completion` for math, think and code; the gold answer field for
 *      math; `prompt`, `test`, `entry_point` for code);
 *   2. qw_score_local: math, think and code (thread-safe: qw-reward runs
 *      code in parallel); qw_score_cmd: the reward program, one record at
 *      a time, in order (the coprocess is one pipe);
 *   3. qw_score_format: the record's line with `reward` added (and
 *      `rewards` per verifier when several, `extracted` for math,
 *      `verdict` and `output` for code, the reward program's other
 *      fields) — the line qw-reward writes (qw-reward(5)).
 * The "model" verifier is parsed but scored by no one here (qw-reward
 * refuses it until the reward model exists).
 *
 * Errors: 0 or QW_EXIT_* with a message (qw/cli.h): a bad spec is
 * QW_EXIT_USAGE; a missing or mistyped field, a reward program that
 * dies, hangs or replies garbage is QW_EXIT_DATA naming `where`.
 */
#ifndef QW_SCORE_H
#define QW_SCORE_H

#include <stddef.h>

#include <cJSON.h>

#include "qw/buf.h"
#include "qw/reward.h"
#include "qw/sandbox.h"

enum { QW_VER_MATH, QW_VER_THINK, QW_VER_CODE, QW_VER_MODEL, QW_VER_CMD, QW_VER_KINDS };
extern const char *const qw_verifier_names[QW_VER_KINDS];   /* "math" … "cmd" */

typedef struct {
    int n;                               /* verifiers named */
    int kind[QW_VER_KINDS];              /* in the order named */
    double weight[QW_VER_KINDS];
    int uses[QW_VER_KINDS];              /* by kind: named or not */
    const char *spec;                    /* as given (messages) */
    const char *answer_field;            /* math: the gold answer's field (qw_scorer_parse sets "answer") */
    qw_sandbox_opts sandbox;             /* code (qw_scorer_parse sets qw_sandbox_defaults) */
} qw_scorer;

/* Parse a spec (QW_EXIT_USAGE: an unknown name, a bad weight, a name
 * given twice, none). */
int qw_scorer_parse(const char *spec, qw_scorer *s);

/* The fields the verifiers need, in a parsed record; *completion gets
 * its "completion" (NULL when absent and not needed). */
int qw_scorer_check(const qw_scorer *s, const cJSON *rec, const char *where, const char **completion);

/* What the verifiers found for one record. */
typedef struct {
    double value[QW_VER_KINDS];
    char *extracted;                     /* math: the answer found (NULL: none); owned */
    qw_code_result code;                 /* code */
    cJSON *reply;                        /* cmd: the program's reply; owned */
} qw_score;

/* math, think and code for a checked record (code needs qw_sandbox_probe
 * first).  QW_EXIT_FAIL when the code harness cannot run (qw_code_run). */
int qw_score_local(const qw_scorer *s, const cJSON *rec, const char *completion, qw_score *out);
/* cmd: ask the program about the record's line (line, len: as read). */
int qw_score_cmd(qw_coproc *cp, const char *line, size_t len, double timeout_s, const char *where, qw_score *out);
/* The reward: the one verifier's value, or the weighted sum. */
double qw_score_total(const qw_scorer *s, const qw_score *sc);
/* Append the scored record and its newline to *b: the line as read (line,
 * len) with the new fields before its closing brace; when the record
 * already has a field of that name, the record rebuilt with ours in its
 * place (a Python dict update). */
void qw_score_format(const qw_scorer *s, const qw_score *sc, const cJSON *rec, const char *line, size_t len, qw_buf *b);
void qw_score_free(qw_score *sc);

#endif
