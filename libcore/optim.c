/* optim.c — AdamW over parameter arenas, gradient clipping, schedules. */
#include "qw/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "qw/cli.h"

qw_adamw qw_adamw_defaults(void)
{
    return (qw_adamw){ .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1 };
}

/* A piece of one tensor: arena elements [lo, hi) with one decay flag. */
typedef struct { size_t lo, hi; int decay; } piece;

enum { PIECE = 1 << 16 };

void qw_adamw_step_range(const qw_adamw *o, const qw_params *L, size_t lo, size_t hi,
                         float *p, const float *g, float *m, float *v,
                         long step, double lr, double grad_scale)
{
    size_t cap = 0, n = 0;
    for (int i = 0; i < L->n; i++) cap += (size_t)L->p[i].numel / PIECE + 1;
    piece *pc = qw_malloc((cap ? cap : 1) * sizeof *pc);
    for (int i = 0; i < L->n; i++) {
        size_t a = L->p[i].offset, b = a + (size_t)L->p[i].numel;
        if (a < lo) a = lo;
        if (b > hi) b = hi;
        for (; a < b; a += PIECE)
            pc[n++] = (piece){ a, a + PIECE < b ? a + PIECE : b, !L->p[i].no_decay };
    }
    const float b1 = (float)o->beta1, b2 = (float)o->beta2, eps = (float)o->eps, s = (float)grad_scale;
    const float step_size = (float)(lr / (1.0 - pow(o->beta1, (double)step)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow(o->beta2, (double)step));
    const float decay = (float)(1.0 - lr * o->weight_decay);
    #pragma omp parallel for schedule(dynamic, 4)
    for (size_t k = 0; k < n; k++) {
        const float d = pc[k].decay ? decay : 1.0f;
        #pragma omp simd
        for (size_t j = pc[k].lo - lo; j < pc[k].hi - lo; j++) {
            float gj = g[j] * s;
            float mj = b1 * m[j] + (1.0f - b1) * gj;
            float vj = b2 * v[j] + (1.0f - b2) * gj * gj;
            m[j] = mj;
            v[j] = vj;
            p[j] = p[j] * d - step_size * mj / (sqrtf(vj) / bc2_sqrt + eps);
        }
    }
    free(pc);
}

void qw_adamw_step(const qw_adamw *o, qw_params *P, const qw_params *G, qw_params *M, qw_params *V,
                   long step, double lr, double grad_scale)
{
    qw_adamw_step_range(o, P, 0, P->total, P->data, G->data, M->data, V->data, step, lr, grad_scale);
}

double qw_grad_sumsq(const float *g, size_t n)
{
    double s = 0;
    #pragma omp parallel for simd reduction(+ : s) schedule(static)
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    return s;
}

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
