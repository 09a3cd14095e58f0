/* qw/backend.h — choosing the compute backend from --device, --precision,
 * --threads and --deterministic.
 *
 * device: "cpu" or "cuda" (NULL: cuda when this build has it and a usable
 * GPU is present, else cpu).  precision: "fp32" or "bf16"
 * activations (NULL: bf16 on cuda, fp32 on cpu); the CPU backend computes
 * in fp32 only.  cuda gives qw_ops_cuda() (bf16) or qw_ops_cuda_fp32().
 * threads (≤ 0: all cores) goes to the backend's set_threads,
 * deterministic (0 or 1) to its set_deterministic.
 *
 * GPU: with cuda (asked for, or chosen by default), each process takes the
 * GPU of its rank on the node before CUDA makes a context or allocates
 * anything: local rank i uses visible device i (qw_launch_gpu, qw/comm.h;
 * CUDA_VISIBLE_DEVICES honoured as CUDA applies it).  More ranks on the
 * node than visible GPUs is QW_EXIT_USAGE naming both counts, unless
 * qw_backend_share_gpus(1) was called first (--share-gpus).
 *
 * Errors: an unknown device or precision, or bf16 on the CPU, is
 * QW_EXIT_USAGE; cuda in a build without it, or with no usable GPU, is
 * QW_EXIT_FAIL with a message saying which.  *out is set only on success.
 */
#ifndef QW_BACKEND_H
#define QW_BACKEND_H

#include "qw/ops.h"

/* Allow several ranks of a node on one GPU (rank i on device i mod count);
 * off by default.  Call before qw_backend_select. */
void qw_backend_share_gpus(int on);
int qw_backend_select(const char *device, const char *precision, int threads, int deterministic,
                      const qw_ops **out);

#endif
