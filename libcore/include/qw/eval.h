/* qw/eval.h — scoring text with a model the way lm-evaluation-harness
 * does: log-likelihoods of continuations, rolling windows for perplexity,
 * the context/continuation split, and the statistics of its reports.
 *
 * Log-likelihood of a request.  A request is a token sequence s[0..n] and a
 * count k: ll = Σ_{i=n−k+1..n} log p(s_i | s_0 … s_{i−1}), the sum of the
 * log-softmax of the last k tokens given everything before them.  The model
 * sees s[0..n−1] (the last token is only predicted); a sequence longer than
 * max_len + 1 tokens loses its oldest tokens first, as lm-eval's HF model
 * left-truncates (context + continuation)[−(max_len+1):].
 *
 * Batching.  qw_eval_score packs many requests into each forward: rows of
 * T tokens (T the longest request's input, at most max_len), B rows per
 * forward, requests placed first-fit in decreasing length.  Each request in
 * a row is its own document (qw/model.h: a segment id of its own, positions
 * from 0), so it attends only to its own tokens, exactly as if it ran alone;
 * unused positions are padding that predicts nothing.  The model's forward
 * (qw_model_forward) does the work on whatever backend it was built on.
 *
 * Errors: 0 or QW_EXIT_* with a message (qw/cli.h).
 */
#ifndef QW_EVAL_H
#define QW_EVAL_H

#include <stddef.h>
#include <stdint.h>

#include "qw/buf.h"
#include "qw/ops.h"
#include "qw/params.h"
#include "qw/tok.h"

/* ---- rolling windows (loglikelihood_rolling) ----
 * lm-eval's get_rolling_token_windows(tokens, prefix, max_len,
 * context_len=1) followed by make_disjoint_window, for a document of n
 * tokens t[0..n): the first window predicts t[0 .. min(n, L)) from the
 * prefix token and the tokens before each; every later window predicts the
 * next min(remaining, L) tokens, its input being the L tokens before its
 * last one: t[end−L−1 .. end−1).  So a full later window has one token of
 * extra context, and the last, partial window as many as it takes to make
 * its input L tokens long.  Each window is a request (context tokens +
 * predicted tokens, k = end − start); a document's log-likelihood is the
 * sum over its windows. */
typedef struct {
    int64_t ctx;      /* first context token: an index into t, or −1 for the prefix token */
    int64_t start;    /* predicted tokens t[start .. end) */
    int64_t end;
} qw_eval_window;

/* The windows of a document of n ≥ 0 tokens for max_len L ≥ 1, written to
 * w (when not NULL); returns their number (0 for n = 0, else ceil(n/L)). */
int64_t qw_eval_windows(int64_t n, int64_t max_len, qw_eval_window *w);

/* ---- the context/continuation split (lm-eval's _encode_pair) ----
 * Trailing whitespace of the context (Python's str.isspace characters) is
 * moved to the front of the continuation; then whole = enc(context +
 * continuation), ctx = enc(context) and the continuation's tokens are
 * whole[len(ctx):].  An empty context (after the move) gives ctx =
 * [prefix] and the continuation encoded alone.  On return *seq holds ctx
 * then the continuation's tokens and *k the continuation's count. */
int qw_eval_encode_pair(const qw_tok *tok, int32_t prefix, const char *context, size_t clen,
                        const char *cont, size_t tlen, qw_ids *seq, int *k);

/* ---- scoring ---- */
typedef struct {
    const int32_t *toks;   /* s[0..n] */
    int n1;                /* n + 1: the number of tokens (≥ 2 when k ≥ 1) */
    int k;                 /* tokens scored at the end, 0 ≤ k ≤ min(n, max_len) */
    double ll;             /* out: the log-likelihood (0 when k = 0) */
} qw_eval_req;

typedef struct qw_eval_scorer qw_eval_scorer;

/* A scorer over loaded parameters (on the backend's device) that packs
 * about batch_tokens tokens per forward.  Holds no model until the first
 * qw_eval_score, which sizes it. */
qw_eval_scorer *qw_eval_scorer_new(const qw_ops *ops, const qw_params *P, int max_len, int batch_tokens);
void qw_eval_scorer_free(qw_eval_scorer *s);
/* Fill r[i].ll for every request.  QW_EXIT_DATA for a request with k
 * outside its bounds (the message names it by index). */
int qw_eval_score(qw_eval_scorer *s, qw_eval_req *r, int n);
/* Forwards run and token positions used (padding included) so far. */
void qw_eval_scorer_stats(const qw_eval_scorer *s, long *forwards, long *positions);

/* ---- text measures, as Python counts them ---- */
/* Whether the code point is whitespace for Python's str.isspace and re's \s. */
int qw_eval_is_space(uint32_t cp);
/* Bytes of s[0..n) once trailing whitespace is removed (str.rstrip()). */
size_t qw_eval_rstrip(const char *s, size_t n);
/* Bytes of leading whitespace (str.lstrip()). */
size_t qw_eval_lstrip(const char *s, size_t n);
/* len(re.split(r"\s+", s)): the runs of whitespace + 1 (so "" is 1 and a
 * leading or trailing run counts an empty word), lm-eval's word count. */
int64_t qw_eval_words(const char *s, size_t n);
/* Code points of valid UTF-8 (len() of the str); invalid bytes count one each. */
int64_t qw_eval_chars(const char *s, size_t n);

/* ---- statistics ---- */
/* Mean of x[0..n) and lm-eval's mean_stderr: the sample standard deviation
 * (n − 1 in the denominator) over sqrt(n); *se is NAN when n < 2. */
void qw_eval_mean_stderr(const double *x, int64_t n, double *mean, double *se);

/* The choice with the largest log-likelihood (*pred) and the largest
 * ll / len (*pred_norm; len the choice's length in characters, taken as 1
 * when 0), the first one on ties, as numpy's argmax: lm-eval's acc and
 * acc_norm predictions. */
void qw_eval_mc_pred(const double *ll, const int64_t *len, int n, int *pred, int *pred_norm);

/* ---- Python's random.Random, for lm-eval's few-shot draws ----
 * MT19937 seeded as random.Random(seed) seeds it (init_by_array over the
 * 32-bit words of |seed|), and random.sample's two algorithms (a pool for
 * small populations, a set of picks for large ones), so that
 * qw_pyrand_sample(r, n, k, out) gives the indices that
 * random.Random(seed).sample(range(n), k) gives, call after call. */
typedef struct {
    uint32_t mt[624];
    int i;
} qw_pyrand;
void qw_pyrand_seed(qw_pyrand *r, uint64_t seed);
uint32_t qw_pyrand_u32(qw_pyrand *r);
/* k ≤ n distinct indices in [0, n). */
void qw_pyrand_sample(qw_pyrand *r, int64_t n, int64_t k, int64_t *out);

/* ---- multiple-choice items (eval_tasks.c) ----
 * One JSON object per item, in one of these layouts (qw-eval(5)); each is
 * turned into lm-eval's doc_to_text / doc_to_choice / doc_to_target:
 *   generic     context, choices[], gold (index)
 *   hellaswag   activity_label, ctx_a, ctx_b (or ctx), endings[], label;
 *               lm-eval's preprocess on query and endings
 *   arc         question, choices{text[], label[]}, answerKey;
 *               "Question: {question}\nAnswer:"
 *   mmlu        question, choices[], answer (index or letter), subject
 *               (optional: the description line); the choices are
 *               listed as "A. …" and the continuations are the letters
 *   piqa        goal, sol1, sol2, label; "Question: {goal}\nAnswer:"
 *   winogrande  sentence (with one "_"), option1, option2, answer ("1"|"2"):
 *               partial scoring, multiple inputs: the contexts are
 *               sentence[:_] + option and the continuation, shared, is
 *               the rest of the sentence after "_", stripped
 * Requests of an item with context prefix P (few-shot examples and the
 * description) and target delimiter D: single input: (P + text, D +
 * choice_i); multiple input: (P + choice_i, D + target).  acc_norm divides
 * by len(choice_i) in characters, as lm-eval does for either kind. */
typedef enum { QW_MC_GENERIC, QW_MC_HELLASWAG, QW_MC_ARC, QW_MC_MMLU, QW_MC_PIQA, QW_MC_WINOGRANDE } qw_mc_format;

/* 0 and *f for a format name, or -1 for a name that is none of them. */
int qw_mc_format_parse(const char *name, qw_mc_format *f);
const char *qw_mc_format_name(qw_mc_format f);
/* Whether lm-eval's task reports acc_norm (hellaswag, arc, piqa, generic). */
int qw_mc_format_has_norm(qw_mc_format f);

typedef struct {
    int n;               /* choices, ≥ 1 */
    char **choice;       /* n strings: doc_to_choice */
    char *text;          /* single input: doc_to_text; NULL for multiple input */
    char *target;        /* multiple input: the shared continuation; else NULL */
    char *description;   /* text before everything (mmlu's subject line), or NULL */
    int gold;            /* 0 ≤ gold < n */
} qw_mc_item;

/* Parse one record (a cJSON object) in format f.  QW_EXIT_DATA with a
 * message that names the field ("no choices", "gold 4 is out of range (4
 * choices)", "missing field 'endings'"), without file or line. */
struct cJSON;
int qw_mc_item_parse(qw_mc_format f, const struct cJSON *rec, qw_mc_item *it);
void qw_mc_item_free(qw_mc_item *it);
/* A few-shot example as lm-eval writes it: text + D + choice[gold] (single
 * input) or choice[gold] + D + target (multiple input), appended to *b. */
void qw_mc_item_example(const qw_mc_item *it, const char *delim, qw_buf *b);

/* ---- generative tasks (eval_gen.c) ----
 * lm-evaluation-harness's generate_until tasks: the prompt of an item, its
 * stop strings, how a completion becomes an answer and how the answer is
 * judged.  One JSON object per item (qw-eval(5)):
 *   gsm8k      question, answer (GSM8K as published: the worked solution
 *              ending "#### N").  Prompt "Question: {question}\nAnswer:";
 *              a few-shot example adds " {answer}" (the whole solution);
 *              stop strings "Question:", "</s>", "<|im_end|>".  Filters
 *              strict-match (the first match of "#### (\-?[0-9\.\,]+)")
 *              and flexible-extract (the last match of
 *              "(-?[$0-9.,]{2,})|(-?[0-9]+)", its first non-empty group),
 *              "[invalid]" when nothing matches; exact_match against the
 *              answer field.
 *   gsm8k_cot  question, answer.  Prompt "Q: {question}\nA:"; examples
 *              are lm-eval's eight fixed exemplars (qw_gen_cot_examples),
 *              first K; stop strings "Q:", "</s>", "<|im_end|>"; strict-match
 *              "The answer is (\-?[0-9\.\,]+)." (first), flexible-extract as
 *              gsm8k; the reference is the text after the last "####",
 *              stripped.
 *   math       problem, and solution (the reference is the content of its
 *              last \boxed{}) or answer.  Prompt "Problem: {problem}\nAnswer:",
 *              an example adds " {solution}" (or " {answer}"); stop string
 *              "Problem:".  Filter none: the answer is the content of the
 *              completion's last \boxed{} (lm-eval's last_boxed_only_string
 *              and remove_boxed, Hendrycks MATH); exact_match when both,
 *              normalised by lm-eval's strip_string, are equal strings.
 *   humaneval  task_id, prompt, test, entry_point.  Prompt {prompt}; stop
 *              strings "\nclass", "\ndef", "\n#", "\nif", "\nprint"; the
 *              program prompt + completion + test + check(entry_point) is
 *              run by the caller (qw/reward.h's qw_code_run); pass@k.
 * exact_match (lm-eval's exact_match with regexes_to_ignore ",", "\$",
 * "(?s).*#### ", "\.$" removed from both sides in that order, then
 * lower-cased, ignore_case) compares the extracted answer with the
 * reference.  The regexes are lm-eval's own, run by PCRE2.
 *
 * The response: lm-eval cuts a generation at the first occurrence of each
 * stop string in turn (text.split(term)[0]); then, when the model thinks,
 * the answer is read from the text after the last "</think>" — with
 * thinking on, a completion with no "</think>" has an empty answer; with
 * thinking off, the whole response when it has no "</think>". */
typedef enum { QW_GEN_GSM8K, QW_GEN_GSM8K_COT, QW_GEN_MATH, QW_GEN_HUMANEVAL } qw_gen_task;

/* 0 and *t for a task name, or -1 for a name that is none of them. */
int qw_gen_task_parse(const char *name, qw_gen_task *t);
const char *qw_gen_task_name(qw_gen_task t);
/* lm-eval's num_fewshot for the task (5, 8, 0, 0). */
int qw_gen_task_shots(qw_gen_task t);
/* The stop strings, NULL-terminated. */
const char *const *qw_gen_task_until(qw_gen_task t);
/* The filters whose answers are scored: {"strict-match",
 * "flexible-extract"} for the GSM8K tasks, {"none"} otherwise; returns
 * their number (at most QW_GEN_MAX_FILTERS). */
#define QW_GEN_MAX_FILTERS 2
int qw_gen_task_filters(qw_gen_task t, const char *const **names);

typedef struct {
    char *text;         /* doc_to_text: the item's own prompt */
    char *target;       /* doc_to_target of a few-shot example (NULL: cannot be one) */
    char *gold;         /* the reference the answer is compared with (math, gsm8k) */
    char *prompt, *test, *entry_point;   /* humaneval */
} qw_gen_item;

/* Parse one record (a cJSON object) for task t.  QW_EXIT_DATA with a
 * message naming the field ("missing field 'answer'", "no \boxed{} answer
 * in 'solution'"), without file or line. */
int qw_gen_item_parse(qw_gen_task t, const struct cJSON *rec, qw_gen_item *it);
void qw_gen_item_free(qw_gen_item *it);
/* A few-shot example: text + " " + target, appended to *b. */
void qw_gen_item_example(const qw_gen_item *it, qw_buf *b);
/* gsm8k_cot's eight exemplars (gsm8k-cot.yaml), in order, as items with
 * text and target; *n = 8.  The caller frees each and the array. */
qw_gen_item *qw_gen_cot_examples(int *n);

/* The answer text of a completion (above): its start and length within
 * `completion` (a NUL-terminated string). */
void qw_gen_response(qw_gen_task t, const char *completion, int thinking, size_t *start, size_t *len);

/* Extract the answer of filter f (index into qw_gen_task_filters) from the
 * response resp[0..n): a new string (the caller frees it), or NULL for
 * math when the response has no \boxed{} answer.  Not for humaneval. */
char *qw_gen_extract(qw_gen_task t, int f, const char *resp, size_t n);
/* 1 when the extracted answer (NULL: none) is right for the item. */
int qw_gen_correct(qw_gen_task t, const qw_gen_item *it, const char *pred);

/* The building blocks, exposed for tests and other callers.
 * lm-eval's RegexFilter on text: findall of the pattern, the match at
 * `select` (0 first, −1 last), a tuple's first non-empty group, stripped,
 * else `fallback`; a new string.  QW_EXIT_USAGE for a pattern PCRE2
 * refuses (*out NULL). */
int qw_gen_regex_filter(const char *pattern, const char *text, size_t n, int select, const char *fallback, char **out);
/* lm-eval's exact_match with gsm8k's regexes_to_ignore and ignore_case. */
int qw_gen_exact_match(const char *pred, const char *ref);
/* Hendrycks MATH (lm-eval hendrycks_math/utils.py): the last \boxed{…}
 * (or "\boxed " …, or \fbox{…}) with its braces matched, or NULL; its
 * content (remove_boxed), or NULL where remove_boxed would fail; and
 * is_equiv: strip_string of both compared, or the raw strings when
 * strip_string would raise (Python's exceptions reproduced). */
char *qw_hendrycks_last_boxed(const char *s);
char *qw_hendrycks_remove_boxed(const char *s);
int qw_hendrycks_is_equiv(const char *a, const char *b);
/* strip_string: 0 and *out (a new string), or -1 where Python raises. */
int qw_hendrycks_strip_string(const char *s, char **out);

/* The unbiased pass@k estimator of n samples with c correct (Chen et al.,
 * as code_eval computes it): 1 when n − c < k, else 1 − Π_{i=n−c+1..n}
 * (1 − k/i).  Needs 0 ≤ c ≤ n and 1 ≤ k ≤ n. */
double qw_eval_pass_at_k(int64_t n, int64_t c, int64_t k);

#endif
