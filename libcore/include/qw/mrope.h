/* qw/mrope.h — Qwen3-VL's multimodal rotary positions: the position ids of
 * mixed text and image sequences (transformers' get_rope_index) and the
 * interleaved MRoPE angle table built from them.
 *
 * Position ids.  Every token has three (t, h, w).  A row is read left to
 * right; `next` starts at 0.  A text token gets (next, next, next) and
 * next += 1.  A maximal run of image pad tokens (config image_token_id) is
 * the next image of image_grid_thw (images are taken in order over the
 * whole batch, row after row); with grid (t, h, w) and the 2×2 merge it
 * must be t·(h/2)·(w/2) tokens long, and its token k = (f, r, c) in
 * row-major order over (t, h/2, w/2) gets (next + f, next + r, next + c);
 * then next = 1 + the largest id given.  Without images every token gets
 * (i, i, i), as plain RoPE.
 *
 * Angles.  For head_dim d (half = d/2 frequencies inv_freq[j]) and
 * mrope_section (s_t, s_h, s_w), Σ = half: frequency j takes its position
 * from axis h when j % 3 == 1 and j < 3·s_h, from w when j % 3 == 2 and
 * j < 3·s_w, else from t (mrope_interleaved); without interleaving, the
 * first s_t frequencies from t, the next s_h from h, the rest from w.
 * cos = cos(fp32(pos·inv_freq[j]))·scale, likewise sin (qw/ops.h
 * rope_table's convention).
 *
 * Errors: QW_EXIT_DATA with a message naming `what`, the row and the
 * position: a run of pad tokens whose length does not match its grid, more
 * runs than images, images left over.
 */
#ifndef QW_MROPE_H
#define QW_MROPE_H

#include <stdint.h>

#include "qw/config.h"

/* pos3 [3][B·T] (t row, then h, then w) for ids [B·T]; thw [n][3]. */
int qw_rope_index(const qw_config *c, const int32_t *ids, int B, int T, const int32_t *thw, int n, const char *what,
                  int32_t *pos3);

/* The same for rows of packed documents: seg [B·T] gives each token's
 * document (a run of equal values within a row; NULL: one per row), and
 * `next` restarts at 0 at every document, so each document gets the ids
 * it would get alone (a pad run never spans two documents). */
int qw_rope_index_docs(const qw_config *c, const int32_t *ids, const int32_t *seg, int B, int T, const int32_t *thw,
                       int n, const char *what, int32_t *pos3);

/* cs, sn [N, d/2] from pos3 [3][N] (host memory). */
void qw_mrope_table(const qw_config *c, const int32_t *pos3, int N, const float *inv_freq, float scale, float *cs,
                    float *sn);

#endif
