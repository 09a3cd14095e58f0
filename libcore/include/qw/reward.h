/* qw/reward.h — verifiers: the rewards of completions (qw-reward(1)).
 *
 * Each verifier scores one record; qw-reward reads the records, runs the
 * verifiers named by --verifier and writes the records back with `reward`
 * added.  The rules (which qw-reward(1) states for users):
 *
 * math — the gold answer is the text after the last "####" (GSM8K's
 *   answer field), else the content of the last \boxed{…}, else the whole
 *   field.  The completion's answer is, in this order of preference, the
 *   content of the last \boxed{…} or \fbox{…} (braces nested), the number
 *   after the last "####", the number after the last "the answer is"
 *   (any case), else the last number in the text.  Both are normalised
 *   (qw_math_normalize) and compared as strings; reward 1 when equal, else
 *   0 (also when nothing is found).
 *
 * think — TRL's think_format_reward: 1 when the completion begins with
 *   "<think>", holds no other "<think>" and holds a "</think>" after it
 *   (the regex ^<think>(?!.*<think>)(.*?)</think>.*$ with DOTALL), else 0.
 *
 * code — HumanEval's program, prompt + completion + "\n" + test + "\n" +
 *   "check(" + entry_point + ")", followed by a line the harness adds that
 *   writes a random 128-bit nonce to a descriptor number chosen at random
 *   (3 to 252), run by python3 in the sandbox (qw/sandbox.h).  Verdict
 *   `passed` only when the interpreter exits 0 and the nonce arrived on
 *   that descriptor — so check() returned: an exception before or inside
 *   check, a syntax error, exit(0), sys.exit() or os._exit(0) before check
 *   returns all fail, and a completion's own `check` is replaced by the
 *   test's, which is defined after it.  `timeout` at the wall or CPU
 *   limit, `failed` otherwise, `error` when the sandbox could not start the
 *   interpreter.  Reward 1 only for `passed`.  What this does not stop: a
 *   completion that searches its own process (e.g. the module's code
 *   object) for the nonce, or that returns objects whose == is always true,
 *   can pass; the sandbox still contains what it does.
 *
 * cmd — an external program, started once with /bin/sh -c, kept running:
 *   for each record it reads the record's line on its standard input and
 *   writes one line, a JSON object with a number `reward`, on its standard
 *   output (qw_coproc below).
 *
 * Errors: functions returning int give 0 or a QW_EXIT_* status with a
 * message (qw/cli.h).
 */
#ifndef QW_REWARD_H
#define QW_REWARD_H

#include <stddef.h>
#include <stdint.h>

#include "qw/buf.h"
#include "qw/sandbox.h"

/* ---- math ---- */

typedef enum {
    QW_MATH_NONE = 0,         /* nothing found */
    QW_MATH_BOXED,            /* \boxed{…} or \fbox{…} */
    QW_MATH_HASHES,           /* #### N */
    QW_MATH_ANSWER_IS,        /* the answer is N */
    QW_MATH_LAST_NUMBER,      /* the last number */
} qw_math_form;

/* The completion's answer: appends the text found (as written, e.g.
 * "$1,234", "\frac{1}{2}") to *out and returns its form. */
qw_math_form qw_math_extract(const char *text, size_t len, qw_buf *out);

/* The gold answer of a data set's answer field, as above, appended to *out. */
void qw_math_gold(const char *text, size_t len, qw_buf *out);

/* Normalise an answer and append the result to *out; returns 1 when it is
 * a number.  Removed: white space, $ and \$, % and \%, math delimiters
 * ($…$, \(…\), \[…\]), \left and \right, thin spaces (\, \! \; \:),
 * a trailing \text{…} or \mbox{…} unit, ^\circ, a trailing full stop, and
 * a short "x =" in front; \dfrac and \tfrac read as \frac; U+2212 reads as
 * "-".  A number — an optional sign, digits with or without thousands
 * separators (1,234,567: commas only between groups of three), an
 * optional decimal part, and optionally "/" or \frac{…}{…} with a second
 * such number — becomes its exact value as a reduced fraction "N" or
 * "N/D" (so 18.00, 18 and 36/2 agree, and 0.5 equals \frac{1}{2});
 * numbers beyond 10^36 keep their digits with trailing zeros of the
 * decimal part removed.  Anything else is compared as the text left. */
int qw_math_normalize(const char *s, size_t n, qw_buf *out);

/* 1 when the normalised answers are equal. */
int qw_math_equal(const char *a, size_t na, const char *b, size_t nb);

/* ---- think ---- */

/* 1 or 0 by the rule above. */
int qw_think_format(const char *completion);

/* ---- code ---- */

typedef enum {
    QW_CODE_PASSED = 0,
    QW_CODE_FAILED,
    QW_CODE_TIMEOUT,
    QW_CODE_ERROR,
} qw_code_verdict;

const char *qw_code_verdict_name(qw_code_verdict v);   /* "passed" … */

typedef struct {
    qw_code_verdict verdict;
    char *output;             /* the program's output, cut at the sandbox's out_cap, with a note when cut (owned) */
    double wall;              /* seconds */
} qw_code_result;

/* Build and run the program of one HumanEval-style record (see above).
 * Needs qw_sandbox_probe first.  Returns 0 (the verdict says how it
 * went), or QW_EXIT_FAIL when no random nonce can be had. */
int qw_code_run(const qw_sandbox_opts *o, const char *prompt, const char *completion, const char *test,
                const char *entry_point, qw_code_result *r);
void qw_code_result_free(qw_code_result *r);

/* ---- cmd: a reward program as a coprocess ---- */

typedef struct qw_coproc qw_coproc;

/* Start `/bin/sh -c cmd` with pipes to its standard input and output (its
 * standard error is qw's), in a process group of its own so that a
 * terminal's ^C reaches qw, not it. */
int qw_coproc_start(const char *cmd, qw_coproc **out);

/* Send one line (`len` bytes; a newline is added) and read one line back
 * into *reply (without its newline), waiting at most timeout_s seconds.
 * Errors (QW_EXIT_DATA, the message prefixed by `where`): the program has
 * ended ("the reward program ended (exit status 1) before replying"), did
 * not reply in time (it is then killed), or closed its output. */
int qw_coproc_ask(qw_coproc *c, const char *line, size_t len, double timeout_s, const char *where, qw_buf *reply);

/* Close its input, give it 5 seconds to exit, then kill its group. */
void qw_coproc_end(qw_coproc *c);

#endif
