/* qw/backend.h — choosing the compute backend from --device.
 *
 * qw_backend_select returns the op table for "cpu" or "cuda"; NULL device
 * means the default (cuda when built with CUDA and a GPU is present, else
 * cpu).  Asking for cuda in a build without it, or without a GPU, is
 * QW_EXIT_FAIL with a message saying which.  `threads` (≤ 0: all cores)
 * is passed to the backend's set_threads.
 */
#ifndef QW_BACKEND_H
#define QW_BACKEND_H

#include "qw/ops.h"

int qw_backend_select(const char *device, int threads, const qw_ops **out);

#endif
