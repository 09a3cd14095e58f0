/* test_eval.c — lm-eval's scoring rules (qw/eval.h) on cases worked out by
 * hand: rolling windows below, at and across the window size (lm-eval's own
 * test case among them), word and character counts, the standard error,
 * acc against acc_norm, Python's random.sample draws, the
 * context/continuation split, and the multiple-choice layouts. */
#include <cJSON.h>
#include <unistd.h>

#include "qw/eval.h"
#include "qwtest.h"

static int windows_are(int64_t n, int64_t L, const int64_t *want, int64_t nw)
{
    qw_eval_window w[64];
    int64_t got = qw_eval_windows(n, L, NULL);
    if (got != nw || qw_eval_windows(n, L, w) != nw) {
        fprintf(stderr, "  n=%lld L=%lld: %lld windows, expected %lld\n", (long long)n, (long long)L, (long long)got,
                (long long)nw);
        return 0;
    }
    for (int64_t i = 0; i < nw; i++)
        if (w[i].ctx != want[3 * i] || w[i].start != want[3 * i + 1] || w[i].end != want[3 * i + 2]) {
            fprintf(stderr, "  n=%lld L=%lld: window %lld is (%lld, %lld, %lld), expected (%lld, %lld, %lld)\n",
                    (long long)n, (long long)L, (long long)i, (long long)w[i].ctx, (long long)w[i].start,
                    (long long)w[i].end, (long long)want[3 * i], (long long)want[3 * i + 1], (long long)want[3 * i + 2]);
            return 0;
        }
    return 1;
}
#define WINDOWS(n, L, ...) do { const int64_t w_[] = {__VA_ARGS__}; \
    CHECK(windows_are(n, L, w_, (int64_t)(sizeof w_ / sizeof *w_ / 3))); } while (0)

/* (context start, predicted start, predicted end); context start -1 is the prefix token */
TEST(windows_below_at_and_across)
{
    CHECK(qw_eval_windows(0, 8, NULL) == 0);      /* an empty document predicts nothing */
    WINDOWS(5, 8, -1, 0, 5);                      /* below: one window, prefix + t[0..4) */
    WINDOWS(8, 8, -1, 0, 8);                      /* at: still one */
    WINDOWS(9, 8, -1, 0, 8, 0, 8, 9);             /* one across: the last window's input is t[0..8) */
    WINDOWS(16, 8, -1, 0, 8, 7, 8, 16);           /* a full later window: one token of context */
    WINDOWS(20, 8, -1, 0, 8, 7, 8, 16, 11, 16, 20);
    WINDOWS(3, 1, -1, 0, 1, 0, 1, 2, 1, 2, 3);    /* L = 1: each token from the one before */
    /* lm-eval's test_get_rolling_token_windows_v1: 34 tokens, max_seq_len 10 */
    WINDOWS(34, 10, -1, 0, 10, 9, 10, 20, 19, 20, 30, 23, 30, 34);
    /* every window's input is at most L tokens and the predictions tile the document */
    qw_eval_window w[200];
    for (int64_t n = 1; n <= 60; n++)
        for (int64_t L = 1; L <= 12; L++) {
            int64_t nw = qw_eval_windows(n, L, w), next = 0;
            CHECK(nw == (n + L - 1) / L);
            for (int64_t i = 0; i < nw; i++) {
                CHECK(w[i].start == next);
                CHECK(w[i].end - 1 - w[i].ctx <= L);   /* input: ctx .. end-1 */
                CHECK(i == 0 ? w[i].ctx == -1 : w[i].end - 1 - w[i].ctx == L);
                next = w[i].end;
            }
            CHECK(next == n);
        }
}

TEST(words_chars_strip)
{
    CHECK(qw_eval_words("", 0) == 1);   /* len(re.split(r"\s+", "")) */
    CHECK(qw_eval_words("a b", 3) == 2);
    CHECK(qw_eval_words(" a  b ", 6) == 4);   /* ['', 'a', 'b', ''] */
    CHECK(qw_eval_words("a\n\t b", 5) == 2);
    CHECK(qw_eval_words("a\xc2\xa0" "b\xe3\x80\x80" "c", 8) == 3);   /* NBSP and ideographic space */
    CHECK(qw_eval_chars("h\xc3\xa9llo", 6) == 5);
    CHECK(qw_eval_chars("\xff", 1) == 1);
    CHECK(qw_eval_rstrip("ab \n\xc2\xa0", 6) == 2);
    CHECK(qw_eval_rstrip("   ", 3) == 0);
    CHECK(qw_eval_lstrip(" \tab ", 5) == 2);
}

TEST(stderr_as_lm_eval)
{
    double m, se;
    const double x[] = {1, 0, 1, 1};   /* sample variance 0.25: se = 0.5 / 2 */
    qw_eval_mean_stderr(x, 4, &m, &se);
    CHECK_NEAR(m, 0.75, 1e-15);
    CHECK_NEAR(se, 0.25, 1e-15);
    const double y[] = {0, 1};         /* variance 0.5: se = sqrt(0.5/2) */
    qw_eval_mean_stderr(y, 2, &m, &se);
    CHECK_NEAR(se, 0.5, 1e-15);
    qw_eval_mean_stderr(x, 1, &m, &se);
    CHECK(m == 1 && isnan(se));        /* lm-eval: N/A */
}

TEST(acc_and_acc_norm_disagree)
{
    /* "cat" (3 chars) -9 vs "a big dog" (9 chars) -12: acc picks 0, acc_norm -3 < -1.33 picks 1 */
    const double ll[] = {-9, -12};
    const int64_t len[] = {3, 9};
    int p, pn;
    qw_eval_mc_pred(ll, len, 2, &p, &pn);
    CHECK(p == 0 && pn == 1);
    /* equal lengths: they agree; ties go to the first */
    const double ll2[] = {-4, -2, -2};
    const int64_t len2[] = {2, 2, 2};
    qw_eval_mc_pred(ll2, len2, 3, &p, &pn);
    CHECK(p == 1 && pn == 1);
}

/* random.Random(seed).sample(range(n), k) from CPython 3.11 */
TEST(python_random_sample)
{
    qw_pyrand r;
    qw_pyrand_seed(&r, 1234);
    CHECK(qw_pyrand_u32(&r) == 4150886329u && qw_pyrand_u32(&r) == 3342196574u);
    int64_t s[8];
    qw_pyrand_seed(&r, 1234);
    qw_pyrand_sample(&r, 10, 3, s);
    CHECK(s[0] == 7 && s[1] == 1 && s[2] == 0);
    qw_pyrand_sample(&r, 10, 3, s);
    CHECK(s[0] == 1 && s[1] == 0 && s[2] == 9);
    qw_pyrand_sample(&r, 100, 3, s);   /* n > 21: the set algorithm */
    CHECK(s[0] == 12 && s[1] == 98 && s[2] == 45);
    qw_pyrand_sample(&r, 1000, 8, s);
    const int64_t want[] = {242, 17, 31, 807, 16, 354, 663, 638};
    CHECK(!memcmp(s, want, sizeof want));
    qw_pyrand_seed(&r, 0);
    qw_pyrand_sample(&r, 5, 5, s);
    CHECK(s[0] == 3 && s[1] == 4 && s[2] == 0 && s[3] == 1 && s[4] == 2);
    qw_pyrand_seed(&r, (1ull << 40) + 7);   /* a seed of two 32-bit words */
    qw_pyrand_sample(&r, 50, 4, s);
    CHECK(s[0] == 39 && s[1] == 47 && s[2] == 40 && s[3] == 36);
}

/* A byte-level BPE with one merge, "Ġ w" (id 256). */
static qw_tok *space_w_tokenizer(void)
{
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *vocab = cJSON_CreateObject(),
          *merges = cJSON_CreateArray(), *pre = cJSON_CreateObject(), *dec = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddItemToObject(root, "added_tokens", cJSON_CreateArray());
    cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON_AddFalseToObject(pre, "add_prefix_space");
    cJSON_AddTrueToObject(pre, "use_regex");
    cJSON_AddItemToObject(root, "pre_tokenizer", pre);
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddItemToObject(root, "decoder", dec);
    cJSON_AddStringToObject(model, "type", "BPE");
    int extra = 0;
    for (int b = 0; b < 256; b++) {   /* GPT-2 bytes_to_unicode, ids in code point order of the characters */
        int cp = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174) ? b : 256 + extra++;
        char u[4] = {0};
        if (cp < 0x80) u[0] = (char)cp;
        else u[0] = (char)(0xc0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3f));
        cJSON_AddNumberToObject(vocab, u, b);
    }
    cJSON_AddNumberToObject(vocab, "\xc4\xa0w", 256);
    cJSON_AddItemToArray(merges, cJSON_CreateString("\xc4\xa0 w"));
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON_AddItemToObject(model, "merges", merges);
    cJSON_AddItemToObject(root, "model", model);
    char path[] = "/tmp/qw-test-eval-XXXXXX";
    int fd = mkstemp(path);
    char *text = cJSON_PrintUnformatted(root);
    FILE *f = fdopen(fd, "w");
    fputs(text, f);
    fclose(f);
    free(text);
    cJSON_Delete(root);
    qw_tok *t = NULL;
    if (qw_tok_load(path, &t)) fprintf(stderr, "  load: %s\n", qw_error_msg());
    unlink(path);
    return t;
}

TEST(context_continuation_split)
{
    qw_tok *t = space_w_tokenizer();
    CHECK(t != NULL);
    if (!t) return;
    qw_ids s = {0};
    int k = -1;
    /* the context's trailing space moves: "hello" | " world", so " w" merges into the continuation */
    CHECK(qw_eval_encode_pair(t, 0, "hello ", 6, "world", 5, &s, &k) == 0);
    const int32_t want[] = {'h', 'e', 'l', 'l', 'o', 256, 'o', 'r', 'l', 'd'};   /* a byte's id is its value */
    CHECK(k == 5 && s.n == 10 && !memcmp(s.v, want, sizeof want));
    /* the same pair with the space already on the continuation: identical */
    qw_ids s2 = {0};
    int k2 = -1;
    CHECK(qw_eval_encode_pair(t, 0, "hello", 5, " world", 6, &s2, &k2) == 0);
    CHECK(k2 == k && s2.n == s.n && !memcmp(s.v, s2.v, s.n * sizeof *s.v));
    /* an empty (or all-space) context: the prefix token, then the continuation alone */
    CHECK(qw_eval_encode_pair(t, 7, "  ", 2, "w", 1, &s, &k) == 0);
    CHECK(s.n == 3 && k == 2 && s.v[0] == 7 && s.v[1] == ' ' && s.v[2] == 256);   /* "  w": " ", " w" */
    qw_ids_free(&s), qw_ids_free(&s2);
    qw_tok_free(t);
}

static int parse(qw_mc_format f, const char *json, qw_mc_item *it)
{
    cJSON *j = cJSON_Parse(json);
    int rc = qw_mc_item_parse(f, j, it);
    cJSON_Delete(j);
    return rc;
}

TEST(formats)
{
    qw_mc_item it;
    qw_mc_format f;
    CHECK(qw_mc_format_parse("hellaswag", &f) == 0 && f == QW_MC_HELLASWAG);
    CHECK(qw_mc_format_parse("boolq", &f) == -1);
    /* HellaSwag: label ": " ctx_a " " capitalize(ctx_b); [title] and [tags] handled; "  " once */
    CHECK(parse(QW_MC_HELLASWAG, "{\"activity_label\":\"Baking\",\"ctx_a\":\" A man [title] mixes\","
                "\"ctx_b\":\"tHE Flour\",\"endings\":[\"and [step] bakes  it.\",\" stops\"],\"label\":\"1\"}", &it) == 0);
    CHECK_STR(it.text, "Baking: A man. mixes The flour");
    CHECK_STR(it.choice[0], "and bakes it.");
    CHECK_STR(it.choice[1], "stops");
    CHECK(it.gold == 1 && it.n == 2 && !it.target);
    qw_mc_item_free(&it);
    /* ARC: the gold index from answerKey among the labels */
    CHECK(parse(QW_MC_ARC, "{\"question\":\"Why?\",\"choices\":{\"text\":[\"x\",\"y\",\"z\"],\"label\":[\"1\",\"2\",\"3\"]},"
                "\"answerKey\":\"3\"}", &it) == 0);
    CHECK_STR(it.text, "Question: Why?\nAnswer:");
    CHECK(it.gold == 2 && it.n == 3);
    qw_mc_item_free(&it);
    /* MMLU: the lettered prompt, letters as choices, the subject line */
    CHECK(parse(QW_MC_MMLU, "{\"question\":\" 1+1? \",\"choices\":[\"1\",\"2\"],\"answer\":1,\"subject\":\"high_school_math\"}",
                &it) == 0);
    CHECK_STR(it.text, "1+1?\nA. 1\nB. 2\nAnswer:");
    CHECK_STR(it.choice[1], "B");
    CHECK_STR(it.description, "The following are multiple choice questions (with answers) about high school math.\n\n");
    qw_mc_item_free(&it);
    /* PIQA */
    CHECK(parse(QW_MC_PIQA, "{\"goal\":\"g\",\"sol1\":\"a\",\"sol2\":\"b\",\"label\":0}", &it) == 0);
    CHECK_STR(it.text, "Question: g\nAnswer:");
    qw_mc_item_free(&it);
    /* WinoGrande: partial scoring, the contexts differ and the continuation is shared */
    CHECK(parse(QW_MC_WINOGRANDE, "{\"sentence\":\"Tom gave _ a book. \",\"option1\":\"Ann\",\"option2\":\"Bob\","
                "\"answer\":\"2\"}", &it) == 0);
    CHECK(!it.text && it.n == 2 && it.gold == 1);
    CHECK_STR(it.choice[0], "Tom gave Ann");
    CHECK_STR(it.target, "a book.");
    qw_buf b = {0};
    qw_mc_item_example(&it, " ", &b);
    CHECK_STR(qw_buf_cstr(&b), "Tom gave Bob a book.");
    qw_buf_free(&b);
    qw_mc_item_free(&it);
    /* bad items */
    CHECK(parse(QW_MC_GENERIC, "{\"context\":\"c\",\"choices\":[],\"gold\":0}", &it) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "no choices") != NULL);
    CHECK(parse(QW_MC_GENERIC, "{\"context\":\"c\",\"choices\":[\"a\",\"b\"],\"gold\":2}", &it) == QW_EXIT_DATA);
    CHECK_STR(qw_error_msg(), "gold 2 is out of range (2 choices)");
    CHECK(parse(QW_MC_GENERIC, "{\"context\":\"c\",\"choices\":[\"a\"]}", &it) == QW_EXIT_DATA);
    CHECK_STR(qw_error_msg(), "missing field 'gold'");
    CHECK(parse(QW_MC_HELLASWAG, "{\"activity_label\":\"x\",\"ctx\":\"y\",\"endings\":[\"a\"],\"label\":\"\"}", &it) ==
          QW_EXIT_DATA);
    CHECK(parse(QW_MC_WINOGRANDE, "{\"sentence\":\"no blank\",\"option1\":\"a\",\"option2\":\"b\",\"answer\":\"1\"}", &it) ==
          QW_EXIT_DATA);
}

int main(void)
{
    PLAN(7);
    RUN(windows_below_at_and_across);
    RUN(words_chars_strip);
    RUN(stderr_as_lm_eval);
    RUN(acc_and_acc_norm_disagree);
    RUN(python_random_sample);
    RUN(context_continuation_split);
    RUN(formats);
    return qwtest_finish();
}
