/* policy.c — the generation engine over a trainer's parameters (qw/policy.h). */
#include "qw/policy.h"

#include <stdlib.h>

#include "qw/cli.h"

struct qw_policy {
    qw_trainer *t;
    qw_engine *e;
};

int qw_policy_new(qw_trainer *t, const qw_engine_opts *opts, qw_policy **out)
{
    const qw_params *P = qw_trainer_params(t);
    *out = NULL;
    if (!P->ops) return qw_error(QW_EXIT_FAIL, "policy: the trainer's parameters are not on the backend yet (qw_trainer_begin)");
    qw_policy *p = qw_calloc(1, sizeof *p);
    p->t = t;
    int rc = qw_engine_new(P->ops, P, opts, &p->e);
    if (rc) {
        free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int qw_policy_generate(qw_policy *p, const qw_gen_prompt *prompts, int n_prompts, const qw_gen_opts *g,
                       qw_gen_done_fn done, qw_gen_step_fn step, void *ctx)
{
    /* the weights are the trainer's arena itself: nothing to copy (the
     * optimizer keeps the compute copy current) */
    return qw_engine_generate(p->e, prompts, n_prompts, g, done, step, ctx);
}

qw_engine *qw_policy_engine(qw_policy *p) { return p->e; }

void qw_policy_free(qw_policy *p)
{
    if (!p) return;
    qw_engine_free(p->e);
    free(p);
}
