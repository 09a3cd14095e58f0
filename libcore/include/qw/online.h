/* qw/online.h — the sampling half of online RL, shared by qw-grpo
 * --online and qw-dpo --online: the prompt records, their options, the
 * generation of each step's completions from the policy being trained
 * (qw/policy.h) and their scoring by the verifiers (qw/score.h), giving
 * the step's scored rollout records (qw-reward(5) lines) to the program's
 * update.  One home for the command-line options of that half too
 * (QW_ONLINE_OPTS), so that both programs read them alike.
 *
 * A step s (0-based) of a run with P prompts a step (--prompts-per-step;
 * default all) takes prompts s·P … s·P + P − 1 of the file, cycling;
 * the caller's rank samples its share j0 … j1 − 1 of them, prompt j
 * being the record with "idx" j, each with n samples ("sample" 0 … n−1),
 * drawn with seed --seed + s (qw/infer.h: the numbers depend on the seed,
 * the prompt's index j in the step and the sample, so the step's records
 * are those of `qw-rollout --seed (seed + s)` on those P prompts).
 *
 * Ownership: qw_online_open reads and keeps the prompts, the tokenizer,
 * the reward program (a coprocess) and the --save-rollouts file (written
 * atomically: it appears at qw_online_close with status 0, never on
 * failure).  Errors: 0 or QW_EXIT_* with a message (qw/cli.h): a prompt
 * without a field the verifiers need, a reward program that dies or
 * replies garbage is QW_EXIT_DATA naming the record; bad option values are
 * usage errors (exit 2, from qw_online_check).
 */
#ifndef QW_ONLINE_H
#define QW_ONLINE_H

#include <stdint.h>

#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/policy.h"
#include "qw/score.h"
#include "qw/tok.h"

typedef struct {
    const char *prompts, *verifier, *answer_field, *cmd, *sandbox, *python, *save, *thinking;
    int online, steps, per_step, max_new, top_k, max_batch, chat, max_procs;
    double top_p, timeout;
    long long memory, max_output;
} qw_online_opts;

/* The defaults the help texts below state. */
#define QW_ONLINE_DEFAULTS                                                                                         \
    {.answer_field = "answer", .steps = 1, .max_new = 256, .top_p = 1, .max_batch = 64, .max_procs = 64,           \
     .timeout = -1, .memory = 1LL << 30, .max_output = 16 << 10}

/* The option-table rows of the online loop (qw/cli.h's qw_opt; `on` a
 * static qw_online_opts): the section header, --online, the prompts,
 * steps and sampling options, the verifier options of qw-reward(1) and
 * --save-rollouts.  The number of samples per prompt and the temperature
 * are the programs' own (their meaning for the update differs). */
#define QW_ONLINE_OPTS(on) QW_ONLINE_OPTS_HEAD(on), QW_ONLINE_OPTS_STEPS(on), QW_ONLINE_OPTS_REST(on)
/* The same in three parts, for a program whose --steps is its own (qw-dpo). */
#define QW_ONLINE_OPTS_HEAD(on)                                                                                    \
    {NULL, 0, QW_OPT_HEADER, NULL, NULL, "Online (rollout, reward and update in one process):"},                 \
    {"online", 0, QW_OPT_FLAG, &(on).online, NULL, "generate from the policy being trained, score, update; repeat"}, \
    {"prompts", 'p', QW_OPT_STR, &(on).prompts, "FILE", "prompt records (qw-rollout(5)'s input)"}
#define QW_ONLINE_OPTS_STEPS(on) {"steps", 0, QW_OPT_INT, &(on).steps, "N", "generation steps (default 1)"}
#define QW_ONLINE_OPTS_REST(on)                                                                                    \
    {"prompts-per-step", 0, QW_OPT_INT, &(on).per_step, "P", "prompts a step, cycling through FILE (default: all)"}, \
    {"max-new-tokens", 0, QW_OPT_INT, &(on).max_new, "M", "tokens per completion at most (default 256)"},        \
    {"top-k", 0, QW_OPT_INT, &(on).top_k, "K", "sample from the K most likely tokens (default 0: all)"},          \
    {"top-p", 0, QW_OPT_DOUBLE, &(on).top_p, "P", "nucleus: the most likely tokens of mass P (default 1: all)"},   \
    {"max-batch", 0, QW_OPT_INT, &(on).max_batch, "N", "sequences decoded at once (default 64)"},                 \
    {"chat", 0, QW_OPT_FLAG, &(on).chat, NULL, "prompt records hold messages: render them with the chat template"}, \
    {"thinking", 0, QW_OPT_STR, &(on).thinking, "on|off", "--chat: enable_thinking of the template (default on)"}, \
    {"verifier", 0, QW_OPT_STR, &(on).verifier, "V", "math, think, code or cmd; several as NAME:WEIGHT,… (qw-reward(1))"}, \
    {"answer-field", 0, QW_OPT_STR, &(on).answer_field, "NAME", "math: the field of the gold answer (default answer)"}, \
    {"cmd", 0, QW_OPT_STR, &(on).cmd, "\"PROG ARGS\"", "cmd: the reward program (a coprocess, one JSON line in and out)"}, \
    {"timeout", 0, QW_OPT_DOUBLE, &(on).timeout, "S", "code: seconds per program (default 10); cmd: per reply (default 60)"}, \
    {"memory", 0, QW_OPT_LONG, &(on).memory, "BYTES", "code: address space per process (default 1G)"},           \
    {"max-procs", 0, QW_OPT_INT, &(on).max_procs, "N", "code: processes a program may have at once (default 64)"}, \
    {"max-output", 0, QW_OPT_LONG, &(on).max_output, "BYTES", "code: output kept per program (default 16k)"},     \
    {"sandbox", 0, QW_OPT_STR, &(on).sandbox, "auto|namespaces|rlimits", "code: the isolation (default auto)"},  \
    {"python", 0, QW_OPT_STR, &(on).python, "FILE", "code: the interpreter (default /usr/bin/python3)"},          \
    {"save-rollouts", 0, QW_OPT_STR, &(on).save, "FILE", "every step's scored rollouts (qw-reward(5) records), atomically"}

/* Check the values of an --online run (exits 2 with a message on a bad
 * one: no --prompts, no --verifier, a count below 1 …); nothing is read. */
void qw_online_check(const qw_online_opts *on);

typedef struct qw_online qw_online;

/* Read everything before anything is written: the tokenizer (`tokenizer`,
 * else model_dir's tokenizer.json when there is one), the prompts (each
 * checked for the fields the verifiers need), the sandbox (code) and the
 * reward program (cmd); open the --save-rollouts file.  vocab and
 * max_context are the policy's. */
int qw_online_open(const qw_online_opts *on, const char *model_dir, const char *tokenizer, int vocab, int max_context,
                   qw_online **out);
/* The prompts read, the tokenizer (NULL: none), and the longest row a
 * step can make: the longest prompt + --max-new-tokens, at most the
 * model's context. */
long qw_online_prompts(const qw_online *o);
const qw_tok *qw_online_tok(const qw_online *o);
int qw_online_seq_len(const qw_online *o);
/* The engine options for qw_policy_new: --max-batch sequences of
 * qw_online_seq_len tokens. */
qw_engine_opts qw_online_engine_opts(const qw_online *o);

typedef struct {
    double gen_s, reward_s;   /* generation and scoring, seconds */
} qw_online_times;

/* Step s for this rank's prompts j0 … j1 − 1 of the step's `per`: n
 * samples each at `temperature` from pol, scored; the scored records
 * (prompt j's n records, j in order) appended to *scored and to the
 * --save-rollouts file.  A SIGINT/SIGTERM during generation returns
 * 128 + the signal. */
int qw_online_step(qw_online *o, qw_policy *pol, long s, int per, int j0, int j1, int n, double temperature,
                   qw_buf *scored, qw_online_times *t);
/* Commit the --save-rollouts file when status is 0 (else drop it), end
 * the reward program, free; returns status, or the commit's error. */
int qw_online_close(qw_online *o, int status);

#endif
