/* test_reward.c — the math verifier's extraction and normalisation, and
 * the think format (qw/reward.h). */
#include "qwtest.h"

#include "qw/reward.h"

static qw_math_form extract(const char *s, char *got, size_t n)
{
    qw_buf b = {0};
    qw_math_form f = qw_math_extract(s, strlen(s), &b);
    snprintf(got, n, "%s", b.n ? qw_buf_cstr(&b) : "");
    qw_buf_free(&b);
    return f;
}

static int norm(const char *s, char *got, size_t n)
{
    qw_buf b = {0};
    int num = qw_math_normalize(s, strlen(s), &b);
    snprintf(got, n, "%s", b.n ? qw_buf_cstr(&b) : "");
    qw_buf_free(&b);
    return num;
}

static int eq(const char *a, const char *b) { return qw_math_equal(a, strlen(a), b, strlen(b)); }

TEST(extract_forms)
{
    char g[256];
    CHECK(extract("so \\boxed{42} and then \\boxed{\\frac{1}{2}}.", g, sizeof g) == QW_MATH_BOXED);
    CHECK_STR(g, "\\frac{1}{2}");
    CHECK(extract("x \\boxed{\\text{a}{b{c}}} y", g, sizeof g) == QW_MATH_BOXED);
    CHECK_STR(g, "\\text{a}{b{c}}");
    CHECK(extract("\\fbox{7} then 9", g, sizeof g) == QW_MATH_BOXED);
    CHECK_STR(g, "7");
    CHECK(extract("unbalanced \\boxed{3 ... but \\boxed{5} earlier? no: \\boxed{6", g, sizeof g) == QW_MATH_BOXED);
    CHECK_STR(g, "5");
    CHECK(extract("\\boxed 12 apples", g, sizeof g) == QW_MATH_BOXED);
    CHECK_STR(g, "12");
    CHECK(extract("3 + 4 = 7\n#### 1,234 dollars\nlater 99", g, sizeof g) == QW_MATH_HASHES);
    CHECK_STR(g, "1,234");
    CHECK(extract("#### $18.50", g, sizeof g) == QW_MATH_HASHES);
    CHECK_STR(g, "$18.50");
    CHECK(extract("#### eighteen, so The Answer Is: **-3** and 5", g, sizeof g) == QW_MATH_ANSWER_IS);
    CHECK_STR(g, "-3");
    CHECK(extract("the answer is 50% of 10", g, sizeof g) == QW_MATH_ANSWER_IS);
    CHECK_STR(g, "50%");
    CHECK(extract("we get 3-2 = 1 and then 2/3 remains.", g, sizeof g) == QW_MATH_LAST_NUMBER);
    CHECK_STR(g, "2/3");
    CHECK(extract("costs -$5 in total", g, sizeof g) == QW_MATH_LAST_NUMBER);
    CHECK_STR(g, "-$5");
    CHECK(extract("x = \\frac{3}{4}", g, sizeof g) == QW_MATH_LAST_NUMBER);
    CHECK_STR(g, "\\frac{3}{4}");
    CHECK(extract("1.5 then 2.25.", g, sizeof g) == QW_MATH_LAST_NUMBER);
    CHECK_STR(g, "2.25");
    CHECK(extract("no numbers here", g, sizeof g) == QW_MATH_NONE);
    CHECK_STR(g, "");
}

TEST(gold)
{
    qw_buf b = {0};
    const char *gsm = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n#### 18";
    qw_math_gold(gsm, strlen(gsm), &b);
    CHECK_STR(qw_buf_cstr(&b), "18");
    qw_buf_free(&b);
    const char *math = "so it is $\\boxed{\\dfrac{1}{3}}$";
    qw_math_gold(math, strlen(math), &b);
    CHECK_STR(qw_buf_cstr(&b), "\\dfrac{1}{3}");
    qw_buf_free(&b);
    qw_math_gold("  70,000 ", 9, &b);
    CHECK_STR(qw_buf_cstr(&b), "70,000");
    qw_buf_free(&b);
}

TEST(normalize)
{
    char g[256];
    CHECK(norm("1,234,567", g, sizeof g) && !strcmp(g, "1234567"));
    CHECK(norm("$18.00", g, sizeof g) && !strcmp(g, "18"));
    CHECK(norm("0.50", g, sizeof g) && !strcmp(g, "1/2"));
    CHECK(norm("\\frac{2}{4}", g, sizeof g) && !strcmp(g, "1/2"));
    CHECK(norm("\\dfrac{6}{3}", g, sizeof g) && !strcmp(g, "2"));
    CHECK(norm("-3/6", g, sizeof g) && !strcmp(g, "-1/2"));
    CHECK(norm("\xe2\x88\x92" "7", g, sizeof g) && !strcmp(g, "-7"));
    CHECK(norm("50\\%", g, sizeof g) && !strcmp(g, "50"));
    CHECK(norm("x = 5.", g, sizeof g) && !strcmp(g, "5"));
    CHECK(norm("12 \\text{ dollars}", g, sizeof g) && !strcmp(g, "12"));
    CHECK(norm("90^\\circ", g, sizeof g) && !strcmp(g, "90"));
    CHECK(norm("$-0$", g, sizeof g) && !strcmp(g, "0"));
    CHECK(norm("123456789012345678901234567890123456789.500", g, sizeof g) &&
          !strcmp(g, "123456789012345678901234567890123456789.5"));
    CHECK(!norm("1,2", g, sizeof g) && !strcmp(g, "1,2"));
    CHECK(!norm("\\sqrt{2} ", g, sizeof g) && !strcmp(g, "\\sqrt{2}"));
    CHECK(!norm("\\text{yes}", g, sizeof g) && !strcmp(g, "yes"));
    CHECK(!norm("3/0", g, sizeof g));
}

TEST(equal)
{
    CHECK(eq("18", "18.0"));
    CHECK(eq("1,000", "1000"));
    CHECK(eq("$5", "5"));
    CHECK(eq("\\frac{1}{2}", "0.5"));
    CHECK(eq("2/4", "\\frac{1}{2}"));
    CHECK(eq("\\left( \\sqrt{2} \\right)", "(\\sqrt{2})"));
    CHECK(!eq("18", "19"));
    CHECK(!eq("0.5", "5"));
    CHECK(!eq("-2", "2"));
    CHECK(!eq("", "0"));
}

TEST(think)
{
    CHECK(qw_think_format("<think>\nreasoning\n</think>\n\nThe answer is 4.") == 1);
    CHECK(qw_think_format("<think></think>4") == 1);
    CHECK(qw_think_format("<think>a</think>") == 1);
    CHECK(qw_think_format(" <think>a</think>4") == 0);
    CHECK(qw_think_format("The answer <think>a</think>") == 0);
    CHECK(qw_think_format("<think>a <think> b</think>4") == 0);
    CHECK(qw_think_format("<think>never closed") == 0);
    CHECK(qw_think_format("") == 0);
}

int main(void)
{
    PLAN(5);
    RUN(extract_forms);
    RUN(gold);
    RUN(normalize);
    RUN(equal);
    RUN(think);
    return qwtest_finish();
}
