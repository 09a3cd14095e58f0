/* qwtest.h — the unit-test harness: one executable per tests/unit/test_*.c.
 *
 *   TEST(name) { CHECK(x == 1); CHECK_NEAR(a, b, 1e-6); }
 *   int main(void) { RUN(name); return qwtest_finish(); }
 *
 * Each TEST is one case; a case passes when none of its CHECKs failed.  The
 * program prints "PASS name" / "FAIL name" lines and exits non-zero if any
 * case failed.  tests/run.sh collects these lines into the suite's total.
 * QW_SRCDIR (set by tests/run.sh) is the repository root, for fixtures.
 */
#ifndef QWTEST_H
#define QWTEST_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int qwtest_case_failed, qwtest_passed, qwtest_failed;

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

static inline int qwtest_finish(void) { return qwtest_failed ? 1 : 0; }

/* Path of a file under the repository root. */
static inline const char *qwtest_path(const char *rel)
{
    static char buf[4096];
    const char *root = getenv("QW_SRCDIR");
    snprintf(buf, sizeof buf, "%s/%s", root ? root : ".", rel);
    return buf;
}
#endif
