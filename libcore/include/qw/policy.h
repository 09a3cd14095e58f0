/* qw/policy.h — sampling from the policy a trainer is training: the
 * generation engine (qw/infer.h) over the trainer's parameters, in memory,
 * for online RL (qw-grpo --online; online DPO).
 *
 * No copy, no checkpoint round trip: the engine borrows the trainer's
 * parameter arena (qw_trainer_params) as the trainer's own model does —
 * the fp32 master weights for the embedding and the norms, the compute
 * copy for the GEMMs (== the master on the CPU and cuda-fp32; the bf16
 * copy that qw_adamw_step refreshes after every update on cuda).  So a
 * generate after qw_trainer_update samples from the updated weights with
 * nothing to re-sync.  Memory on top of the trainer's: the engine's K/V
 * cache (layers · 2 · cache_tokens · nkv · d activations) and its decode
 * activations (qw_engine_cache_bytes; qw-grpo(1) gives the sizes).
 *
 * Create after qw_trainer_begin (the arena is on the backend then);
 * free before qw_trainer_close.  Generation and training share the backend:
 * call them one after the other, never at once (qw/ops.h's threads rule).
 *
 * Errors: as qw_engine_new and qw_engine_generate.
 */
#ifndef QW_POLICY_H
#define QW_POLICY_H

#include "qw/infer.h"
#include "qw/trainer.h"

typedef struct qw_policy qw_policy;

/* An engine over t's parameters; opts as qw_engine_new's (NULL: defaults). */
int qw_policy_new(qw_trainer *t, const qw_engine_opts *opts, qw_policy **out);
/* qw_engine_generate with the trainer's current weights. */
int qw_policy_generate(qw_policy *p, const qw_gen_prompt *prompts, int n_prompts, const qw_gen_opts *g,
                       qw_gen_done_fn done, qw_gen_step_fn step, void *ctx);
qw_engine *qw_policy_engine(qw_policy *p);
void qw_policy_free(qw_policy *p);

#endif
