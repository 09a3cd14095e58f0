/* optim.c — AdamW over parameter arenas (through the backend's ops), gradient
 * clipping, schedules. */
#include "qw/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qw/cli.h"

qw_adamw qw_adamw_defaults(void)
{
    return (qw_adamw){ .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1 };
}

/* Host arenas are stepped by the CPU backend's ops. */
static const qw_ops *ops_of(const qw_params *P) { return P->ops ? P->ops : qw_ops_cpu(); }

void qw_adamw_step(const qw_adamw *o, qw_params *P, const qw_params *G, qw_params *M, qw_params *V,
                   long step, double lr, double grad_scale)
{
    qw_adamw_step_shard(o, P, G, M->data, V->data, 0, P->total, step, lr, grad_scale);
}

void qw_adamw_step_shard(const qw_adamw *o, qw_params *P, const qw_params *G, float *m, float *v,
                         size_t lo, size_t hi, long step, double lr, double grad_scale)
{
    const qw_ops *ops = ops_of(P);
    qw_adamw_scalars s = {
        .beta1 = (float)o->beta1, .beta2 = (float)o->beta2, .eps = (float)o->eps, .grad_scale = (float)grad_scale,
        .step_size = (float)(lr / (1.0 - pow(o->beta1, (double)step))),
        .bc2_sqrt = (float)sqrt(1.0 - pow(o->beta2, (double)step)),
    };
    const float decay = (float)(1.0 - lr * o->weight_decay);
    char *act = P->compute != (void *)P->data ? P->compute : NULL;
    /* one op per run of tensors with the same decay and frozen flags (the
     * gaps between them are zero), cut to [lo, hi); frozen runs are skipped */
    for (int i = 0, j; i < P->n; i = j) {
        for (j = i + 1; j < P->n && P->p[j].no_decay == P->p[i].no_decay && P->p[j].frozen == P->p[i].frozen; j++) {}
        if (P->p[i].frozen) continue;
        size_t a = P->p[i].offset, b = P->p[j - 1].offset + (size_t)P->p[j - 1].numel;
        if (a < lo) a = lo;
        if (b > hi) b = hi;
        if (a >= b) continue;
        s.decay = P->p[i].no_decay ? 1.0f : decay;
        ops->adamw(P->data + a, act ? act + a * ops->act_size : NULL, G->data + a, m + (a - lo), v + (a - lo), b - a, &s);
    }
}

double qw_grad_sumsq(const qw_params *G) { return ops_of(G)->sumsq(G->data, G->total); }

double qw_clip_scale(double norm, double max_norm)
{
    if (max_norm <= 0) return 1.0;
    double c = max_norm / (norm + 1e-6);
    return c < 1.0 || !isfinite(c) ? c : 1.0;
}

double qw_sched_lr(const qw_sched *s, long step)
{
    if (step < s->warmup) return s->lr * (double)step / (double)s->warmup;
    double f = 1.0;
    if (step >= s->total) f = s->kind == QW_SCHED_CONSTANT ? 1.0 : 0.0;
    else if (s->kind == QW_SCHED_COSINE) {
        double x = (double)(step - s->warmup) / (double)(s->total - s->warmup);
        f = 0.5 * (1.0 + cos(M_PI * x));
    } else if (s->kind == QW_SCHED_WSD) {
        long d = lround(s->decay_frac * (double)s->total);
        long start = s->total - d;
        if (step >= start) {
            double x = (double)(step - start) / (double)d;
            f = s->decay_shape == QW_DECAY_SQRT ? 1.0 - sqrt(x) : 1.0 - x;
        }
    }
    return s->lr * (s->min_lr_ratio + (1.0 - s->min_lr_ratio) * f);
}

static const char *const kind_names[] = { "cosine", "wsd", "constant" };
static const char *const shape_names[] = { "linear", "sqrt" };

const char *qw_sched_kind_name(qw_sched_kind k) { return kind_names[k]; }
const char *qw_decay_shape_name(qw_decay_shape d) { return shape_names[d]; }

int qw_sched_kind_parse(const char *s, qw_sched_kind *k)
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, kind_names[i])) { *k = (qw_sched_kind)i; return 0; }
    return -1;
}

int qw_decay_shape_parse(const char *s, qw_decay_shape *d)
{
    for (int i = 0; i < 2; i++)
        if (!strcmp(s, shape_names[i])) { *d = (qw_decay_shape)i; return 0; }
    return -1;
}

int qw_sched_check(const qw_sched *s)
{
    if (!(s->lr >= 0)) return qw_error(QW_EXIT_USAGE, "'lr': %g: must be >= 0", s->lr);
    if (!(s->min_lr_ratio >= 0 && s->min_lr_ratio <= 1))
        return qw_error(QW_EXIT_USAGE, "'min-lr-ratio': %g: must be in [0, 1]", s->min_lr_ratio);
    if (s->total <= 0) return qw_error(QW_EXIT_USAGE, "'steps': %ld: must be > 0", s->total);
    if (s->warmup < 0 || s->warmup > s->total)
        return qw_error(QW_EXIT_USAGE, "'warmup': %ld: must be in [0, %ld]", s->warmup, s->total);
    if (s->kind == QW_SCHED_WSD) {
        if (!(s->decay_frac >= 0 && s->decay_frac <= 1))
            return qw_error(QW_EXIT_USAGE, "'decay-frac': %g: must be in [0, 1]", s->decay_frac);
        long d = lround(s->decay_frac * (double)s->total);
        if (s->warmup + d > s->total)
            return qw_error(QW_EXIT_USAGE, "'decay-frac': %g: warmup %ld plus %ld decay steps exceed %ld steps",
                            s->decay_frac, s->warmup, d, s->total);
    }
    return 0;
}
