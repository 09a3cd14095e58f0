/* test_optim.c — AdamW against hand-computed updates, clipping, schedules. */
#include "qwtest.h"
#include "qw/cli.h"
#include "qw/optim.h"

/* A two-tensor layout built by hand: "w" (decayed, 3 floats at offset 0) and
 * "norm" (no_decay, 2 floats at offset 4; offset 3 is padding). */
static qw_param two[2] = {
    { .name = "w", .ndim = 1, .shape = {3}, .numel = 3, .offset = 0, .no_decay = 0 },
    { .name = "norm", .ndim = 1, .shape = {2}, .numel = 2, .offset = 4, .no_decay = 1 },
};
static qw_params arena(float *data) { return (qw_params){ .n = 2, .p = two, .data = data, .total = 6 }; }

/* p = 1, g = 0.5 then g = −1; lr 0.1 then 0.05; wd 0.1; β (0.9, 0.95).
 *  t=1: decay p = 1·(1 − 0.01) = 0.99; m = 0.05; v = 0.05·0.25 = 0.0125;
 *       step size 0.1/(1 − 0.9) = 1; √v/√(1 − 0.95) = 0.1118034/0.2236068 = 0.5;
 *       p = 0.99 − 1·0.05/(0.5 + 1e-8) = 0.890000002
 *  t=2: decay p = 0.890000002·(1 − 0.005) = 0.885550002; m = 0.045 − 0.1 = −0.055;
 *       v = 0.011875 + 0.05 = 0.061875; step size 0.05/0.19 = 0.2631579;
 *       √v/√(1 − 0.9025) = 0.2487469/0.3122499 = 0.7966275;
 *       p = 0.885550002 + 0.2631579·0.055/0.7966275 = 0.9037187
 * Without decay (the "norm" tensor): 0.900000002, then 0.9181687. */
TEST(adamw_matches_hand_computed_steps)
{
    float p[6], g[6], m[6] = {0}, v[6] = {0};
    for (int i = 0; i < 6; i++) p[i] = 1.0f, g[i] = 0.5f;
    qw_params P = arena(p), G = arena(g), M = arena(m), V = arena(v);
    qw_adamw o = qw_adamw_defaults();
    CHECK(o.beta1 == 0.9 && o.beta2 == 0.95 && o.eps == 1e-8 && o.weight_decay == 0.1);
    qw_adamw_step(&o, &P, &G, &M, &V, 1, 0.1, 1.0);
    CHECK_NEAR(p[0], 0.890000002, 1e-7);
    CHECK_NEAR(p[4], 0.900000002, 1e-7);
    CHECK_NEAR(m[1], 0.05, 1e-7);
    CHECK_NEAR(v[2], 0.0125, 1e-8);
    CHECK(p[3] == 1.0f && m[3] == 0.0f);   /* padding is no tensor: untouched */
    for (int i = 0; i < 6; i++) g[i] = -1.0f;
    qw_adamw_step(&o, &P, &G, &M, &V, 2, 0.05, 1.0);
    CHECK_NEAR(p[2], 0.9037187, 2e-7);
    CHECK_NEAR(p[5], 0.9181687, 2e-7);
    CHECK_NEAR(m[0], -0.055, 1e-7);
    CHECK_NEAR(v[4], 0.061875, 1e-7);
}

/* A gradient of 2 scaled by 0.25 must act as a gradient of 0.5. */
TEST(adamw_grad_scale_applies_before_moments)
{
    float p[6], g[6], m[6] = {0}, v[6] = {0};
    for (int i = 0; i < 6; i++) p[i] = 1.0f, g[i] = 2.0f;
    qw_params P = arena(p), G = arena(g), M = arena(m), V = arena(v);
    qw_adamw o = qw_adamw_defaults();
    qw_adamw_step(&o, &P, &G, &M, &V, 1, 0.1, 0.25);
    CHECK_NEAR(p[1], 0.890000002, 1e-7);
    CHECK_NEAR(m[1], 0.05, 1e-7);
    CHECK(g[1] == 2.0f);
}

/* Consecutive tensors with the same decay flag are stepped as one run,
 * the gap between them included (zero in real arenas); a tensor without
 * decay is a run of its own. */
TEST(adamw_runs_follow_decay_flags)
{
    static qw_param three[3] = {
        { .name = "a", .ndim = 1, .shape = {2}, .numel = 2, .offset = 0, .no_decay = 0 },
        { .name = "b", .ndim = 1, .shape = {2}, .numel = 2, .offset = 16, .no_decay = 0 },
        { .name = "n", .ndim = 1, .shape = {1}, .numel = 1, .offset = 32, .no_decay = 1 },
    };
    float p[49], g[49], m[49] = {0}, v[49] = {0};
    for (int i = 0; i < 49; i++) p[i] = 1.0f, g[i] = 0.5f;
    qw_params P = { .n = 3, .p = three, .data = p, .total = 33 }, G = P, M = P, V = P;
    G.data = g, M.data = m, V.data = v;
    qw_adamw o = qw_adamw_defaults();
    qw_adamw_step(&o, &P, &G, &M, &V, 1, 0.1, 1.0);
    CHECK_NEAR(p[1], 0.890000002, 1e-7);
    CHECK(p[17] == p[1]);                 /* the run spans the gap between a and b */
    CHECK_NEAR(p[32], 0.900000002, 1e-7);
    CHECK(p[33] == 1.0f && m[40] == 0);   /* past the arena: untouched */
}

TEST(grad_norm_and_clip)
{
    float g[2] = {3.0f, 4.0f};
    qw_params G = { .data = g, .total = 2 };
    double norm = sqrt(qw_grad_sumsq(&G));
    CHECK_NEAR(norm, 5.0, 1e-12);
    CHECK_NEAR(qw_clip_scale(norm, 1.0), 1.0 / (5.0 + 1e-6), 1e-15);
    CHECK(qw_clip_scale(norm, 10.0) == 1.0);
    CHECK(qw_clip_scale(norm, 0.0) == 1.0);
    CHECK(isnan(qw_clip_scale(NAN, 1.0)));
}

TEST(cosine_schedule)
{
    qw_sched s = { .kind = QW_SCHED_COSINE, .lr = 2.0, .min_lr_ratio = 0.1, .warmup = 10, .total = 110 };
    CHECK(qw_sched_check(&s) == 0);
    CHECK(qw_sched_lr(&s, 0) == 0.0);
    CHECK_NEAR(qw_sched_lr(&s, 5), 1.0, 1e-15);
    CHECK_NEAR(qw_sched_lr(&s, 10), 2.0, 1e-15);
    CHECK_NEAR(qw_sched_lr(&s, 60), 2.0 * (0.1 + 0.9 * 0.5), 1e-12);     /* halfway: cos = 0 */
    CHECK_NEAR(qw_sched_lr(&s, 35), 2.0 * (0.1 + 0.9 * 0.5 * (1 + sqrt(0.5))), 1e-12);
    CHECK_NEAR(qw_sched_lr(&s, 110), 0.2, 1e-15);
    CHECK_NEAR(qw_sched_lr(&s, 500), 0.2, 1e-15);
}

TEST(wsd_schedule)
{
    qw_sched s = { .kind = QW_SCHED_WSD, .lr = 1.0, .min_lr_ratio = 0.0, .warmup = 10, .total = 100,
                   .decay_frac = 0.2, .decay_shape = QW_DECAY_LINEAR };
    CHECK(qw_sched_check(&s) == 0);
    CHECK_NEAR(qw_sched_lr(&s, 1), 0.1, 1e-15);
    CHECK(qw_sched_lr(&s, 10) == 1.0 && qw_sched_lr(&s, 79) == 1.0 && qw_sched_lr(&s, 80) == 1.0);
    CHECK_NEAR(qw_sched_lr(&s, 90), 0.5, 1e-15);
    CHECK_NEAR(qw_sched_lr(&s, 95), 0.25, 1e-15);
    s.decay_shape = QW_DECAY_SQRT;
    s.min_lr_ratio = 0.1;
    CHECK_NEAR(qw_sched_lr(&s, 95), 0.1 + 0.9 * (1 - sqrt(0.75)), 1e-15);
    CHECK_NEAR(qw_sched_lr(&s, 100), 0.1, 1e-15);
    s.kind = QW_SCHED_CONSTANT;
    CHECK(qw_sched_lr(&s, 95) == 1.0 && qw_sched_lr(&s, 1000) == 1.0);
}

TEST(sched_names_and_checks)
{
    qw_sched_kind k;
    qw_decay_shape d;
    CHECK(qw_sched_kind_parse("wsd", &k) == 0 && k == QW_SCHED_WSD);
    CHECK(qw_sched_kind_parse("linear", &k) == -1);
    CHECK(qw_decay_shape_parse("sqrt", &d) == 0 && d == QW_DECAY_SQRT);
    CHECK_STR(qw_sched_kind_name(QW_SCHED_COSINE), "cosine");
    CHECK_STR(qw_decay_shape_name(QW_DECAY_LINEAR), "linear");
    qw_sched s = { .kind = QW_SCHED_WSD, .lr = 1.0, .warmup = 90, .total = 100, .decay_frac = 0.2 };
    CHECK(qw_sched_check(&s) == QW_EXIT_USAGE);
    CHECK(strstr(qw_error_msg(), "'decay-frac'") != NULL);
    s.warmup = 101;
    CHECK(qw_sched_check(&s) == QW_EXIT_USAGE);
    s = (qw_sched){ .kind = QW_SCHED_COSINE, .lr = 1.0, .min_lr_ratio = 1.5, .total = 10 };
    CHECK(qw_sched_check(&s) == QW_EXIT_USAGE);
}

int main(void)
{
    PLAN(7);
    RUN(adamw_matches_hand_computed_steps);
    RUN(adamw_grad_scale_applies_before_moments);
    RUN(adamw_runs_follow_decay_flags);
    RUN(grad_norm_and_clip);
    RUN(cosine_schedule);
    RUN(wsd_schedule);
    RUN(sched_names_and_checks);
    return qwtest_finish();
}
