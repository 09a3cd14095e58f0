/* backend.c — --device to op table. */
#include "qw/backend.h"

#include <string.h>

#include "qw/cli.h"
#ifdef QW_HAVE_CUDA
#include "../kernels/cuda/qwcuda.h"
#endif

int qw_backend_select(const char *device, int threads, const qw_ops **out)
{
    if (device && strcmp(device, "cpu") && strcmp(device, "cuda"))
        return qw_error(QW_EXIT_USAGE, "--device: '%s' is not cpu or cuda", device);
    if (device && !strcmp(device, "cuda")) {
#ifdef QW_HAVE_CUDA
        if (!qw_ops_cuda()) return qw_error(QW_EXIT_FAIL, "--device cuda: no usable GPU (%s)", qw_cuda_why());
        /* The op table runs on the GPU (make test-gpu), but the model keeps
         * its parameters and gradients in host arenas (qw_params). */
        return qw_error(QW_EXIT_FAIL, "--device cuda: the model cannot run on the GPU yet (its parameters live in host memory); use --device cpu");
#else
        return qw_error(QW_EXIT_FAIL, "--device cuda: this build has no CUDA backend; use --device cpu");
#endif
    }
    const qw_ops *ops = qw_ops_cpu();
    ops->set_threads(threads);
    *out = ops;
    return 0;
}
