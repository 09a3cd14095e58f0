/* test_rl.c — GRPO and DPO coefficients (libcore/rl.c): against PyTorch
 * autograd (tests/golden/rl/rl.json, made by tests/golden/make_rl_golden.py)
 * and against finite differences of the C loss itself. */
#include "qwtest.h"

#include <cjson/cJSON.h>

#include "qw/buf.h"
#include "qw/file.h"
#include "qw/rl.h"

static cJSON *golden;

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}
static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

/* |a − b| within 1e-5 relative to max(1e-2, |b|): log-probs enter as fp32 */
static int close_to(double a, double b) { return fabs(a - b) <= 1e-5 * fmax(1e-2, fabs(b)); }

static double worst_grpo, worst_dpo;

/* The flat arrays of one GRPO case. */
typedef struct {
    int S, n;
    int64_t off[16];
    float lp[256], old[256], ref[256], adv[16];
    int32_t ids[256];
    uint8_t mask[256];
    double r[16];
} flat;

static void flatten(const cJSON *c, flat *f)
{
    const cJSON *lp = get(c, "lp"), *old = get(c, "old"), *ref = get(c, "ref"), *ids = get(c, "ids");
    f->S = cJSON_GetArraySize(lp);
    f->n = 0;
    for (int s = 0; s < f->S; s++) {
        f->off[s] = f->n;
        const cJSON *row = cJSON_GetArrayItem(lp, s);
        for (int t = 0; t < cJSON_GetArraySize(row); t++) {
            f->lp[f->n] = (float)cJSON_GetArrayItem(row, t)->valuedouble;
            f->old[f->n] = cJSON_IsArray(old) ? (float)cJSON_GetArrayItem(cJSON_GetArrayItem(old, s), t)->valuedouble : 0;
            f->ref[f->n] = (float)cJSON_GetArrayItem(cJSON_GetArrayItem(ref, s), t)->valuedouble;
            f->ids[f->n] = cJSON_GetArrayItem(cJSON_GetArrayItem(ids, s), t)->valueint;
            f->n++;
        }
    }
    f->off[f->S] = f->n;
    const cJSON *r = get(c, "rewards");
    for (int s = 0; s < f->S; s++) {
        const cJSON *x = cJSON_GetArrayItem(r, s);
        f->r[s] = cJSON_IsNumber(x) ? x->valuedouble : NAN;
    }
}

static void cfg_of(const cJSON *cj, qw_grpo_cfg *c, qw_scale_rewards *scale)
{
    const char *lt = get(cj, "loss_type")->valuestring, *sc = get(cj, "scale")->valuestring;
    *c = (qw_grpo_cfg){.eps_low = num(cj, "eps_low"), .eps_high = num(cj, "eps_high"), .delta = num(cj, "delta"),
                       .beta = num(cj, "beta"), .max_completion_length = (int)num(cj, "max_completion_length"),
                       .n_micro = (int)num(cj, "n_micro"), .step_tokens = num(cj, "step_tokens")};
    c->loss_type = !strcmp(lt, "grpo") ? QW_GRPO_LOSS_GRPO : !strcmp(lt, "bnpo") ? QW_GRPO_LOSS_BNPO
                 : !strcmp(lt, "dr_grpo") ? QW_GRPO_LOSS_DR_GRPO : QW_GRPO_LOSS_DAPO;
    *scale = !strcmp(sc, "group") ? QW_SCALE_GROUP : !strcmp(sc, "batch") ? QW_SCALE_BATCH : QW_SCALE_NONE;
}

/* Every GRPO case: advantages, masks, loss, coefficients and statistics. */
TEST(grpo_against_torch)
{
    const cJSON *cases = get(golden, "grpo"), *c;
    CHECK(cJSON_GetArraySize(cases) == 36);
    cJSON_ArrayForEach(c, cases) {
        flat f;
        flatten(c, &f);
        qw_grpo_cfg cfg;
        qw_scale_rewards scale;
        cfg_of(get(c, "cfg"), &cfg, &scale);
        const cJSON *e = get(c, "expected");
        qw_grpo_advantages(f.r, f.S, (int)num(c, "G"), scale, 1e-4, f.adv, NULL);
        for (int s = 0; s < f.S; s++) {
            double want = cJSON_GetArrayItem(get(e, "advantages"), s)->valuedouble;
            CHECK_MSG(close_to(f.adv[s], want), "advantage %d: %.9g, torch %.9g", s, f.adv[s], want);
        }
        int32_t stop = 2;
        for (int s = 0; s < f.S; s++) {
            int n = (int)(f.off[s + 1] - f.off[s]);
            qw_grpo_mask(f.ids + f.off[s], n, &stop, 1, 0, f.mask + f.off[s]);
            for (int t = 0; t < n; t++)
                CHECK(f.mask[f.off[s] + t] == cJSON_GetArrayItem(cJSON_GetArrayItem(get(e, "mask"), s), t)->valueint);
        }
        float coef[256];
        qw_grpo_batch b = {.S = f.S, .off = f.off, .lp = f.lp, .old = cJSON_IsArray(get(c, "old")) ? f.old : NULL,
                           .ref = f.ref, .adv = f.adv, .mask = f.mask};
        qw_grpo_out o;
        qw_grpo_loss(&cfg, &b, coef, &o);
        double want = num(e, "loss");
        CHECK_MSG(close_to(o.loss, want), "loss %.12g, torch %.12g", o.loss, want);
        worst_grpo = fmax(worst_grpo, fabs(o.loss - want) / fmax(1e-2, fabs(want)));
        for (int s = 0; s < f.S; s++)
            for (int64_t t = f.off[s]; t < f.off[s + 1]; t++) {
                double g = cJSON_GetArrayItem(cJSON_GetArrayItem(get(e, "grad"), s), (int)(t - f.off[s]))->valuedouble;
                /* coef = −∂loss/∂lp; coefficients are of the size 1/tokens */
                CHECK_MSG(fabs(coef[t] + g) <= 1e-5 * fmax(1e-3, fabs(g)), "coef[%d][%d] %.9g, −grad %.9g", s,
                          (int)(t - f.off[s]), coef[t], -g);
                worst_grpo = fmax(worst_grpo, fabs(coef[t] + g) / fmax(1e-3, fabs(g)));
            }
        CHECK(o.tokens == num(e, "tokens"));
        CHECK(close_to(o.kl_sum, num(e, "kl_sum")));
        CHECK(o.clip_low_sum == num(e, "clip_low_sum") && o.clip_high_sum == num(e, "clip_high_sum"));
    }
}

/* The fixture exercises what it is meant to: clipping on both sides, a
 * zero-std group, a NaN reward, masked tokens after a stop. */
TEST(grpo_cases_cover)
{
    double low = 0, high = 0;
    int masked_out = 0, nan_reward = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, get(golden, "grpo")) {
        low += num(get(c, "expected"), "clip_low_sum");
        high += num(get(c, "expected"), "clip_high_sum");
        const cJSON *row, *m;
        cJSON_ArrayForEach(row, get(get(c, "expected"), "mask")) cJSON_ArrayForEach(m, row) masked_out += m->valueint == 0;
        cJSON_ArrayForEach(m, get(c, "rewards")) nan_reward += cJSON_IsNull(m);
    }
    printf("NOTE GRPO cases: %g low-clipped and %g high-clipped tokens, %d masked out, %d NaN rewards\n", low, high,
           masked_out, nan_reward);
    CHECK(low > 0 && high > 0 && masked_out > 0 && nan_reward > 0);
}

TEST(dpo_against_torch)
{
    const cJSON *cases = get(golden, "dpo"), *c;
    CHECK(cJSON_GetArraySize(cases) == 8);
    cJSON_ArrayForEach(c, cases) {
        const cJSON *cj = get(c, "cfg"), *e = get(c, "expected");
        const char *t = get(cj, "type")->valuestring;
        qw_dpo_cfg cfg = {.type = !strcmp(t, "sigmoid") ? QW_DPO_SIGMOID : !strcmp(t, "hinge") ? QW_DPO_HINGE
                                : !strcmp(t, "ipo") ? QW_DPO_IPO : QW_DPO_ROBUST,
                          .beta = num(cj, "beta"), .label_smoothing = num(cj, "label_smoothing"),
                          .n_pairs = num(cj, "n_pairs")};
        double loss = 0;
        int i = 0;
        const cJSON *p;
        cJSON_ArrayForEach(p, get(c, "pairs")) {
            qw_dpo_pair pr = {num(p, "lp_c"), num(p, "lp_r"), num(p, "ref_c"), num(p, "ref_r"), num(p, "n_c"), num(p, "n_r")};
            qw_dpo_out o;
            qw_dpo_pair_loss(&cfg, &pr, &o);
            loss += o.loss;
            double gc = cJSON_GetArrayItem(get(e, "d_lp_c"), i)->valuedouble;
            double gr = cJSON_GetArrayItem(get(e, "d_lp_r"), i)->valuedouble;
            CHECK_MSG(fabs(o.d_lp_c - gc) <= 1e-10 * fmax(1, fabs(gc)) && fabs(o.d_lp_r - gr) <= 1e-10 * fmax(1, fabs(gr)),
                      "%s pair %d: d %.12g %.12g, torch %.12g %.12g", t, i, o.d_lp_c, o.d_lp_r, gc, gr);
            CHECK(fabs(o.reward_c - cJSON_GetArrayItem(get(e, "reward_c"), i)->valuedouble) <= 1e-10);
            CHECK(fabs(o.reward_r - cJSON_GetArrayItem(get(e, "reward_r"), i)->valuedouble) <= 1e-10);
            worst_dpo = fmax(worst_dpo, fmax(fabs(o.d_lp_c - gc), fabs(o.d_lp_r - gr)));
            i++;
        }
        CHECK_MSG(fabs(loss - num(e, "loss")) <= 1e-10 * fmax(1, fabs(num(e, "loss"))), "%s loss %.12g, torch %.12g",
                  t, loss, num(e, "loss"));
    }
}

/* Coefficients are −∂loss/∂lp: central differences of the C loss itself,
 * on inputs of its own (no golden file), every loss type, with clipping. */
TEST(grpo_finite_differences)
{
    enum { S = 4, N = 20 };
    int64_t off[S + 1] = {0, 3, 9, 14, 20};
    float lp[N], old[N], ref[N], adv[S] = {1.2f, -0.7f, 0.4f, -1.5f}, coef[N], c2[N];
    uint8_t mask[N];
    for (int t = 0; t < N; t++) {
        lp[t] = -0.3f - 0.17f * (t % 7);
        old[t] = lp[t] + 0.35f * (float)sin(3.1 * t);   /* ratios from e^-0.35 to e^0.35: both clips */
        ref[t] = lp[t] - 0.2f * (float)cos(1.7 * t);
        mask[t] = t != 8 && t != 13;
    }
    double worst = 0;
    for (int lt = QW_GRPO_LOSS_GRPO; lt <= QW_GRPO_LOSS_DAPO; lt++) {
        qw_grpo_cfg cfg = {.eps_low = 0.2, .eps_high = 0.28, .delta = 1.3, .beta = 0.04, .loss_type = lt,
                           .max_completion_length = 6, .n_micro = 3, .step_tokens = 40};
        qw_grpo_batch b = {.S = S, .off = off, .lp = lp, .old = old, .ref = ref, .adv = adv, .mask = mask};
        qw_grpo_loss(&cfg, &b, coef, NULL);
        for (int t = 0; t < N; t++) {
            float keep = lp[t];
            double h = 1e-3, lo_, hi_;
            qw_grpo_out o;
            lp[t] = keep + (float)h;
            qw_grpo_loss(&cfg, &b, c2, &o);
            hi_ = o.loss;
            lp[t] = keep - (float)h;
            qw_grpo_loss(&cfg, &b, c2, &o);
            lo_ = o.loss;
            lp[t] = keep;
            double fd = -(hi_ - lo_) / ((double)(keep + (float)h) - (double)(keep - (float)h));
            /* a kink within ±h (a clip bound) makes the difference one-sided: skip those */
            double r = exp((double)keep - old[t]);
            if (fabs(r - 0.8) < 2e-3 || fabs(r - 1.28) < 2e-3 || fabs(r - 1.3) < 2e-3) continue;
            worst = fmax(worst, fabs(fd - coef[t]));
            CHECK_MSG(fabs(fd - coef[t]) <= 1e-5, "loss type %d token %d: coef %.8g, finite difference %.8g", lt, t,
                      coef[t], fd);
        }
    }
    printf("NOTE GRPO coefficients against central differences: worst |diff| %.2g\n", worst);
}

TEST(advantages_and_masks)
{
    /* groups of 4: one ordinary, one with equal rewards, one with NaNs */
    double r[12] = {0, 1, 1, 0, 2, 2, 2, 2, NAN, 3, NAN, 1};
    float a[12];
    qw_grpo_reward_stats st;
    qw_grpo_advantages(r, 12, 4, QW_SCALE_GROUP, 1e-4, a, &st);
    double sd = sqrt(1.0 / 3);   /* Bessel: Σ(x−½)² = 1, over 3 */
    CHECK_NEAR(a[1], 0.5 / (sd + 1e-4), 1e-6);
    CHECK_NEAR(a[0], -0.5 / (sd + 1e-4), 1e-6);
    CHECK(a[4] == 0 && a[7] == 0);
    CHECK(a[8] == 0 && a[10] == 0);
    CHECK_NEAR(a[9], 1 / (sqrt(2.0) + 1e-4), 1e-6);
    CHECK_NEAR(st.frac_zero_std, 1.0 / 3, 1e-12);
    CHECK_NEAR(st.reward_mean, 14.0 / 10, 1e-12);
    qw_grpo_advantages(r, 12, 4, QW_SCALE_NONE, 1e-4, a, NULL);
    CHECK_NEAR(a[9], 1, 1e-6);
    int32_t ids[6] = {5, 7, 2, 9, 2, 4}, stop[2] = {3, 2};
    uint8_t m[6];
    CHECK(qw_grpo_mask(ids, 6, stop, 2, 0, m) == 3);
    CHECK(m[2] == 1 && m[3] == 0 && m[5] == 0);
    CHECK(qw_grpo_mask(ids, 2, stop, 2, 0, m) == 2 && m[0] && m[1]);
    CHECK(qw_grpo_mask(ids, 2, stop, 2, 1, m) == 0 && !m[0] && !m[1]);
}

/* A policy equal to its reference: DPO's loss is ln 2 per pair, margins 0. */
TEST(dpo_at_start)
{
    qw_dpo_cfg cfg = {.type = QW_DPO_SIGMOID, .beta = 0.1, .n_pairs = 1};
    qw_dpo_pair p = {-12, -9, -12, -9, 4, 3};
    qw_dpo_out o;
    qw_dpo_pair_loss(&cfg, &p, &o);
    CHECK_NEAR(o.loss, log(2.0), 1e-15);
    CHECK_NEAR(o.d_lp_c, -0.05, 1e-15);
    CHECK_NEAR(o.d_lp_r, 0.05, 1e-15);
    CHECK(o.reward_c == 0 && o.reward_r == 0);
}

int main(void)
{
    PLAN(6);
    qw_buf b = {0};
    int found = 0;
    if (qw_read_file(qwtest_path("tests/golden/rl/rl.json"), &b, &found) == 0 && found)
        golden = cJSON_ParseWithLength(b.p, b.n);
    if (!golden) fprintf(stderr, "test_rl: tests/golden/rl/rl.json is missing or unreadable (make_rl_golden.py writes it)\n");
    static cJSON empty_obj;
    if (!golden) golden = &empty_obj;
    RUN(grpo_against_torch);
    RUN(grpo_cases_cover);
    RUN(dpo_against_torch);
    RUN(grpo_finite_differences);
    RUN(advantages_and_masks);
    RUN(dpo_at_start);
    printf("NOTE worst relative difference to torch: GRPO %.2g, DPO (absolute) %.2g\n", worst_grpo, worst_dpo);
    qw_buf_free(&b);
    return qwtest_finish();
}
