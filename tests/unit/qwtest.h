/* qwtest.h — the unit-test harness: one executable per tests/unit/test_*.c.
 *
 *   TEST(name) { CHECK(x == 1); CHECK_NEAR(a, b, 1e-6); }
 *   int main(void) { PLAN(1); RUN(name); return qwtest_finish(); }
 *
 * Each TEST is one case; a case passes when none of its CHECKs failed.  The
 * program prints "PASS name" / "FAIL name" lines and exits non-zero if any
 * case failed.  tests/run.sh collects these lines into the suite's total.
 *
 * PLAN(n), first in main(), declares how many cases the program runs (a
 * number written there: raise it when you add a RUN).  It prints "PLAN n";
 * tests/run.sh fails the program unless exactly n PASS/FAIL lines follow, and
 * qwtest_finish() returns 1 when the count differs or PLAN is missing, so a
 * RUN skipped by a condition or a program that stops early cannot pass.
 * QW_SRCDIR (set by tests/run.sh) is the repository root, for fixtures.
 */
#ifndef QWTEST_H
#define QWTEST_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int qwtest_case_failed, qwtest_passed, qwtest_failed, qwtest_planned = -1;

#define TEST(name) static void test_##name(void)
#define CHECK(cond) do { if (!(cond)) { \
    fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
    qwtest_case_failed = 1; } } while (0)
#define CHECK_MSG(cond, ...) do { if (!(cond)) { \
    fprintf(stderr, "  %s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); qwtest_case_failed = 1; } } while (0)
#define CHECK_NEAR(a, b, tol) do { double qa_ = (a), qb_ = (b); \
    if (!(fabs(qa_ - qb_) <= (tol))) { \
    fprintf(stderr, "  %s:%d: %s = %.9g, %s = %.9g, |diff| > %g\n", __FILE__, __LINE__, #a, qa_, #b, qb_, (double)(tol)); \
    qwtest_case_failed = 1; } } while (0)
#define CHECK_STR(a, b) do { const char *sa_ = (a), *sb_ = (b); \
    if (!sa_ || !sb_ || strcmp(sa_, sb_)) { \
    fprintf(stderr, "  %s:%d: %s = \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)"); \
    qwtest_case_failed = 1; } } while (0)
#define RUN(name) do { qwtest_case_failed = 0; test_##name(); \
    if (qwtest_case_failed) { qwtest_failed++; printf("FAIL %s\n", #name); } \
    else { qwtest_passed++; printf("PASS %s\n", #name); } fflush(stdout); } while (0)

#define PLAN(n) do { qwtest_planned = (n); printf("PLAN %d\n", qwtest_planned); fflush(stdout); } while (0)

static inline int qwtest_finish(void)
{
    int ran = qwtest_passed + qwtest_failed;
    if (qwtest_planned <= 0) {
        fprintf(stderr, "qwtest: no PLAN(n) in main: declare the number of cases\n");
        return 1;
    }
    if (ran != qwtest_planned) {
        fprintf(stderr, "qwtest: planned %d cases, ran %d\n", qwtest_planned, ran);
        return 1;
    }
    return qwtest_failed ? 1 : 0;
}

/* Path of a file under the repository root. */
static inline const char *qwtest_path(const char *rel)
{
    static char buf[4096];
    const char *root = getenv("QW_SRCDIR");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : ".", rel);
    return buf;
}
/* dir/name in one of four rotating buffers: the last four results stay
 * valid (a test may hold a few paths at once). */
static inline const char *qwtest_join(const char *dir, const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}
#endif
