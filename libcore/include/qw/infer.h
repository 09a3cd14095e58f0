/* qw/infer.h — the generation engine: completions of prompts from a model
 * in memory, with a paged K/V cache and continuous batching.
 *
 * One model, two paths (doc/design.md): the engine runs the same layer
 * forward as the training graph (qw/layer.h) over the same op table, with
 * a plan of its own — no gradients, no stored activations, one set of
 * activation buffers reused by every layer, and a K/V cache.
 *
 * The cache.  Each layer has a K pool and a V pool of `blocks` blocks of
 * `block_size` token slots (activations, [slot, nkv, d]).  A sequence owns
 * a block table (its blocks in order) and the blocks' reference counts
 * say who shares them.  The n samples of one prompt share the prompt's
 * blocks: the prompt is prefilled once; a sample that must write into a
 * shared, partly filled last block copies it first (copy on write).
 * Blocks come from a free list and return to it when their last reference
 * goes, so sequences of any length share one pool without fragmentation.
 *
 * Scheduling (continuous batching).  Each step runs one forward over a set
 * of rows: the whole prompts of the groups that start in this step
 * (prefill: the training attention, ops->attn_fwd, over the step's
 * prompts packed as documents of one row) and one token of each running
 * sequence (decode: ops->attn_paged over the cache).  Samples
 * join in input order (prompt by prompt, sample by sample) while there is
 * room: at most max_batch running sequences, and cache blocks for the
 * prompt plus the sample's worst case (its partly filled prompt block and
 * max_new_tokens) — reserved when it joins, so a running sequence never
 * waits for memory and none is ever preempted.  What does not fit waits;
 * a finished sequence leaves at once and frees its blocks and its place.
 *
 * Graphs.  On a backend with graph ops (CUDA) and a dense model, a step
 * that only decodes runs its forward as a recorded graph: the rows are
 * padded to a bucket (1, 2, 4, 8, then multiples of 8, at most max_batch)
 * with rows that decode token 0 at position 0 into a block of their own
 * outside the pool; a bucket's forward runs directly the first time and
 * is recorded the second, then replayed (one launch instead of a few
 * hundred).  MoE models route on the host and are not recorded.
 *
 * Batch invariance.  With batch_invariant, generate turns the backend's
 * set_batch_invariant on while it runs (and off before it returns) and
 * prefills prompts through the paged decode attention rather than the
 * training attention, so that every row of a step is computed by the same
 * arithmetic whatever the other rows are: a completion and its log-probs
 * depend only on its prompt, the seed and the options, not on max_batch
 * or on the prompts beside it.  Slower (qw/ops.h says where).
 *
 * Sampling (ops->sample): greedy (temperature 0), temperature, top-k,
 * top-p.  Sample j of prompt p draws its t-th token (t from 0) with the
 * uniform qw_rng_uniform_at(seed, p.index·2^32 + j, t) — a pure function
 * of those numbers, so completions do not depend on max_batch, on the
 * other prompts, on the order in which sequences run or on the thread
 * count.  A sequence ends ("stop") at a stop id (included in its ids) or
 * when its text, decoded, contains a stop string (the token that completes
 * it is included); or ("length") after max_new_tokens tokens, or when
 * prompt + completion fill max_context.
 *
 * Log-probs, per completion token, fp32: `logprobs` under the distribution
 * the token was drawn from (after temperature, top-k and top-p; greedy:
 * temperature 1, the full softmax), `raw_logprobs` under temperature 1
 * and the full softmax — what the training forward computes for the same
 * tokens.  A token inserted by the thinking budget has, as logprob, its
 * log-prob under the temperature-scaled full softmax (it was not drawn).
 *
 * Thinking budget (Qwen3): with thinking_budget ≥ 0, a sequence that is
 * thinking — its prompt ends inside an open <think> block, or it generated
 * <think> — and has made thinking_budget tokens since without </think>
 * gets qw_engine_think_stop, tokenized, as its next tokens (then it
 * continues with the answer).  Needs `tok` and a vocabulary with <think>
 * and </think>.
 *
 * Memory: the engine borrows the qw_params (they must outlive it, on the
 * engine's backend: qw_params_to_device) and allocates the cache at
 * creation and its activations on the first generate (grown when a later
 * call needs more rows), in ops memory.  Completion arrays passed to the
 * callback belong to the engine and are valid during the call only.
 *
 * Errors: 0 or QW_EXIT_* with a message (qw/cli.h).  Bad options are
 * QW_EXIT_USAGE; a prompt that is empty, holds an id outside the
 * vocabulary, or leaves no room to generate in max_context is
 * QW_EXIT_DATA naming the prompt ("prompt 3: …"); a backend without the
 * decode ops or out of memory is QW_EXIT_FAIL.  Not thread-safe: one
 * generate at a time per engine, and the backend's rules (qw/ops.h).
 */
#ifndef QW_INFER_H
#define QW_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "qw/ops.h"
#include "qw/params.h"
#include "qw/tok.h"

typedef struct {
    int max_batch;            /* running sequences at most (default 64) */
    int block_size;           /* token slots per cache block (default 16) */
    long long cache_tokens;   /* cache capacity in tokens, rounded up to blocks
                                 (default: max_batch · max_context) */
    int max_context;          /* longest prompt + completion (default: the config's
                                 max_position_embeddings) */
    int prefill_tokens;       /* prompt tokens prefilled in one step at most, raised to
                                 the longest prompt of a generate (0: the longest prompt
                                 on the CPU, where a step's rows should stay few; 8192
                                 on a GPU, where many rows keep it busy) */
    int batch_invariant;      /* 1: a sequence's tokens and log-probs do not depend on
                                 the other sequences of its steps (below) */
    int no_graphs;            /* 1: never record decode steps as graphs (below) */
} qw_engine_opts;

typedef struct {
    int n;                            /* samples per prompt, ≥ 1 */
    int max_new_tokens;               /* ≥ 1 */
    double temperature;               /* 0: greedy */
    int top_k;                        /* ≤ 0: off */
    double top_p;                     /* in (0, 1]; 1: off */
    uint64_t seed;
    const int32_t *stop_ids;          /* tokens that end a sequence */
    int n_stop_ids;
    const char *const *stop;          /* stop strings (need tok) */
    int n_stop;
    int thinking_budget;              /* < 0: none (needs tok) */
    const qw_tok *tok;                /* for stop strings and the thinking budget; may be NULL otherwise */
} qw_gen_opts;

typedef struct {
    const int32_t *ids;               /* the prompt, n ≥ 1 tokens */
    int n;
    uint64_t index;                   /* its number in the random streams (< 2^32; e.g. its input line) */
} qw_gen_prompt;

enum { QW_FINISH_STOP = 1, QW_FINISH_LENGTH = 2 };

typedef struct {
    int32_t *ids;                     /* the completion's tokens */
    float *logprobs, *raw_logprobs;   /* one per token (above) */
    int n;
    int finish;                       /* QW_FINISH_STOP or QW_FINISH_LENGTH */
    int forced_at;                    /* thinking budget: ids[forced_at …] begin the inserted text; −1: none */
} qw_completion;

typedef struct {
    long long steps, prompt_tokens, generated_tokens;   /* so far in this generate */
    int running, waiting;             /* sequences running; samples not started */
    int prompts_done;
} qw_gen_stats;

/* All n samples of prompts[prompt] are done: c[0..n) in sample order.
 * Return 0 to go on; anything else stops generate, which returns it. */
typedef int (*qw_gen_done_fn)(void *ctx, int prompt, const qw_completion *c);
/* After every step (progress; polling for a stop).  Same return rule. */
typedef int (*qw_gen_step_fn)(void *ctx, const qw_gen_stats *s);

typedef struct qw_engine qw_engine;

/* The early-stop text of the thinking budget, after the Qwen3 report. */
extern const char qw_engine_think_stop[];

/* opts may be NULL (all defaults).  The backend must implement the decode
 * ops (kv_write, attn_paged, sample). */
int qw_engine_new(const qw_ops *ops, const qw_params *P, const qw_engine_opts *opts, qw_engine **out);
void qw_engine_free(qw_engine *e);
/* The settings in force (defaults filled in), and the cache's bytes. */
void qw_engine_get_opts(const qw_engine *e, qw_engine_opts *opts);
size_t qw_engine_cache_bytes(const qw_engine *e);

/* Generate g->n completions of each prompt; done() gets each prompt's
 * as soon as they are all finished (not necessarily in prompt order);
 * step() (may be NULL) after every step.  Returns 0 when every prompt is
 * done, a callback's non-zero return, or an error (above) before any
 * work. */
int qw_engine_generate(qw_engine *e, const qw_gen_prompt *prompts, int n_prompts, const qw_gen_opts *g,
                       qw_gen_done_fn done, qw_gen_step_fn step, void *ctx);

#endif
