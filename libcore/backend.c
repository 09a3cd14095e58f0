/* backend.c — --device and --precision to op table. */
#include "qw/backend.h"

#include <string.h>

#include "qw/cli.h"
#include "qw/comm.h"
#ifdef QW_HAVE_CUDA
#include "../kernels/cuda/qwcuda.h"
#endif

static int share_gpus;

void qw_backend_share_gpus(int on) { share_gpus = on; }

int qw_backend_select(const char *device, const char *precision, int threads, int deterministic,
                      const qw_ops **out)
{
    if (device && strcmp(device, "cpu") && strcmp(device, "cuda"))
        return qw_error(QW_EXIT_USAGE, "--device: '%s' is not cpu or cuda", device);
    if (precision && strcmp(precision, "fp32") && strcmp(precision, "bf16"))
        return qw_error(QW_EXIT_USAGE, "--precision: '%s' is not fp32 or bf16", precision);
    int cuda = device && !strcmp(device, "cuda");
#ifdef QW_HAVE_CUDA
    /* one GPU per rank of the node, fixed before CUDA makes a context */
    int n_gpus = (!device || cuda) ? qw_cuda_device_count() : 0;
    if (n_gpus > 0) {
        qw_launch l;
        int dev;
        if (qw_launch_detect(&l) || qw_launch_gpu(&l, n_gpus, share_gpus, &dev)) return qw_error_status();
        if (qw_cuda_set_device(dev)) return qw_error(QW_EXIT_FAIL, "GPU %d: another GPU is already in use", dev);
    }
    if (!device) cuda = qw_ops_cuda() != NULL;
#endif
    int bf16 = precision ? !strcmp(precision, "bf16") : cuda;
    const qw_ops *ops;
    if (!cuda) {
        if (bf16) return qw_error(QW_EXIT_USAGE, "--precision bf16: the cpu backend computes in fp32");
        ops = qw_ops_cpu();
    } else {
#ifdef QW_HAVE_CUDA
        ops = bf16 ? qw_ops_cuda() : qw_ops_cuda_fp32();
        if (!ops) return qw_error(QW_EXIT_FAIL, "--device cuda: no usable GPU (%s)", qw_cuda_why());
#else
        return qw_error(QW_EXIT_FAIL, "--device cuda: this build has no CUDA backend; use --device cpu");
#endif
    }
    ops->set_threads(threads);
    ops->set_deterministic(deterministic);
    *out = ops;
    return 0;
}
