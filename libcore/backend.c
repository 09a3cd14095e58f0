/* backend.c — --device to op table. */
#include "qw/backend.h"

#include <string.h>

#include "qw/cli.h"

int qw_backend_select(const char *device, int threads, const qw_ops **out)
{
    if (device && !strcmp(device, "cuda"))
#ifdef QW_HAVE_CUDA
        return qw_error(QW_EXIT_FAIL, "--device cuda: the CUDA backend does not run models yet; use --device cpu");
#else
        return qw_error(QW_EXIT_FAIL, "--device cuda: not built with CUDA");
#endif
    if (device && strcmp(device, "cpu"))
        return qw_error(QW_EXIT_USAGE, "--device: '%s' is not cpu or cuda", device);
    const qw_ops *ops = qw_ops_cpu();
    ops->set_threads(threads);
    *out = ops;
    return 0;
}
