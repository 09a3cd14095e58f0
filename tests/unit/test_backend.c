/* test_backend.c — choosing the backend from --device and --precision. */
#include "qwtest.h"
#include "qw/backend.h"
#include "qw/cli.h"

/* No --device: the GPU (bf16) when built and present, else the CPU (fp32). */
TEST(default_device)
{
    const qw_ops *o = NULL;
    CHECK(qw_backend_select(NULL, NULL, 1, 0, &o) == 0 && o);
#ifdef QW_HAVE_CUDA
    if (qw_ops_cuda()) {
        CHECK(o == qw_ops_cuda() && o->act_size == 2);
        return;
    }
#endif
    CHECK(o == qw_ops_cpu());
    CHECK_STR(o->name, "cpu");
    CHECK(o->act_size == 4);
}

TEST(cpu_is_fp32)
{
    const qw_ops *o = NULL;
    CHECK(qw_backend_select("cpu", "fp32", 0, 1, &o) == 0 && o == qw_ops_cpu());
}

TEST(usage_errors)
{
    const qw_ops *o = NULL;
    CHECK(qw_backend_select("cpu", "bf16", 1, 0, &o) == QW_EXIT_USAGE && o == NULL);
    CHECK_STR(qw_error_msg(), "--precision bf16: the cpu backend computes in fp32");
    CHECK(qw_backend_select("cpu", "fp16", 1, 0, &o) == QW_EXIT_USAGE && o == NULL);
    CHECK_STR(qw_error_msg(), "--precision: 'fp16' is not fp32 or bf16");
    CHECK(qw_backend_select("gpu", NULL, 1, 0, &o) == QW_EXIT_USAGE && o == NULL);
    CHECK_STR(qw_error_msg(), "--device: 'gpu' is not cpu or cuda");
}

TEST(cuda)
{
    const qw_ops *o = NULL;
    int st = qw_backend_select("cuda", NULL, 1, 0, &o);
#ifdef QW_HAVE_CUDA
    /* on a machine without a GPU it says why; with one it is the bf16 table */
    CHECK((st == QW_EXIT_FAIL && o == NULL && strstr(qw_error_msg(), "no usable GPU")) ||
          (st == 0 && o->act_size == 2));
#else
    CHECK(st == QW_EXIT_FAIL && o == NULL);
    CHECK(strstr(qw_error_msg(), "this build has no CUDA backend") != NULL);
    CHECK(qw_backend_select("cuda", "fp32", 1, 0, &o) == QW_EXIT_FAIL && o == NULL);
#endif
}

int main(void)
{
    PLAN(4);
    RUN(default_device);
    RUN(cpu_is_fp32);
    RUN(usage_errors);
    RUN(cuda);
    return qwtest_finish();
}
