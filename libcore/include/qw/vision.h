/* qw/vision.h — the Qwen3-VL vision tower (CPU, fp32): forward and backward.
 *
 * Input: pixel_values [S, C·tp·p·p] (C·2·16·16 = 1536) and image_grid_thw
 * [n_images][3] as qw/image.h makes them (patches of each image in the
 * processor's order: frames, then 2×2 merge windows, row-major).  Each
 * image i has t·h·w patches (h, w even); S is their sum.
 *
 * Computation, as transformers' Qwen3VLVisionModel (fp32, eager):
 *   patch embedding   x = pixels·Wᵀ + b (the Conv3d with kernel = stride)
 *   position          + the learned pos_embed grid (side √num_position_
 *                     embeddings) interpolated bilinearly to h×w (torch's
 *                     linspace corners, four weighted rows summed in order)
 *   blocks (depth)    x += proj(attn(LN1(x)));  x += fc2(gelu_tanh(fc1(LN2(x))))
 *                     LayerNorm with bias, eps 1e-6; attention non-causal
 *                     within each frame of each image only, scale hd^-1/2;
 *                     2-D RoPE (rotate_half over hd; angles row·f, col·f for
 *                     the hd/4 frequencies 1/θ^(2k/(hd/2)), θ = rope_theta)
 *   merger            LN(Hv) per patch, 4 patches (one 2×2 window) → one
 *                     row of 4Hv, fc1, GELU (erf), fc2 → [S/4, out_hidden]
 *   DeepStack j       the output of block deepstack[j]: 4 patches → 4Hv,
 *                     LN(4Hv), fc1, GELU (erf), fc2 → [S/4, out_hidden]
 * The language model takes merged row r in place of the r-th image pad
 * token and adds DeepStack j's row r to it after decoder layer j
 * (qw/model.h: qw_batch_vision).
 *
 * Memory.  qw_vision_new sizes everything for one set of grids; the
 * forward keeps what the backward needs (every block's activations; the
 * attention probabilities are recomputed).  Parameters and gradients are
 * host arenas (qw/params.h) of a config with a vision tower; the tower
 * reads and writes them by name (model.visual.*).
 *
 * Errors: 0 or QW_EXIT_* with a message (qw/cli.h): a grid with a zero or
 * odd side, patches that do not add up, a model without a vision tower, a
 * device arena (the tower runs on the CPU only) are QW_EXIT_DATA /
 * QW_EXIT_FAIL.
 */
#ifndef QW_VISION_H
#define QW_VISION_H

#include <stdint.h>

#include "qw/params.h"

typedef struct qw_vision qw_vision;

/* For the images of grids thw[3·i + (0, 1, 2)] = (t, h, w), i < n.  `what`
 * names the input in messages. */
int qw_vision_new(const qw_params *P, int n, const int32_t *thw, const char *what, qw_vision **out);
void qw_vision_free(qw_vision *v);

int qw_vision_patches(const qw_vision *v);   /* S */
int qw_vision_merged_rows(const qw_vision *v);      /* S/4: merged rows = image pad tokens */

/* pixels [S, C·tp·p·p] (copied: it need not outlive the call). */
void qw_vision_forward(qw_vision *v, const float *pixels);
/* Results of the last forward, owned by v: the merger's output
 * [S/4, out_hidden]; DeepStack j's [S/4, out_hidden]; the embedded patches
 * (patch embedding + position) [S, Hv]. */
const float *qw_vision_merged(const qw_vision *v);
const float *qw_vision_deepstack(const qw_vision *v, int j);
const float *qw_vision_embedded(const qw_vision *v);

/* Backward of the last forward: given ∂/∂merged and ∂/∂deepstack j (each
 * [S/4, out_hidden]; a NULL entry counts as zero), ADD the gradient of
 * every model.visual.* tensor into G (P's layout). */
void qw_vision_backward(qw_vision *v, const float *d_merged, const float *const *d_deepstack, qw_params *G);

#endif
