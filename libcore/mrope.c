/* mrope.c — Qwen3-VL position ids and interleaved MRoPE (qw/mrope.h). */
#include "qw/mrope.h"

#include <math.h>

#include "qw/cli.h"

int qw_rope_index(const qw_config *c, const int32_t *ids, int B, int T, const int32_t *thw, int n, const char *what,
                  int32_t *pos3)
{
    return qw_rope_index_docs(c, ids, NULL, B, T, thw, n, what, pos3);
}

int qw_rope_index_docs(const qw_config *c, const int32_t *ids, const int32_t *seg, int B, int T, const int32_t *thw,
                       int n, const char *what, int32_t *pos3)
{
    size_t N = (size_t)B * T;
    int img = 0, pad = c->image_token_id;
    for (int r = 0; r < B; r++) {
        int64_t next = 0;
        for (int t = 0; t < T;) {
            size_t i = (size_t)r * T + t;
            if (seg && t > 0 && seg[i] != seg[i - 1]) next = 0;   /* a new document */
            if (pad < 0 || ids[i] != pad) {
                pos3[i] = pos3[N + i] = pos3[2 * N + i] = (int32_t)next++;
                t++;
                continue;
            }
            int run = 0;
            while (t + run < T && ids[i + run] == pad && (!seg || !run || seg[i + run] == seg[i])) run++;
            if (img == n)
                return qw_error(QW_EXIT_DATA, "%s: row %d, position %d: image pad tokens, but the %d images of "
                                "image_grid_thw are used up", what, r, t, n);
            int gt = thw[3 * img], gh = thw[3 * img + 1] / 2, gw = thw[3 * img + 2] / 2;
            int64_t want = (int64_t)gt * gh * gw;
            if (run != want)
                return qw_error(QW_EXIT_DATA, "%s: row %d, position %d: %d image pad tokens, but image %d (grid %d×%d×%d) "
                                "makes %lld", what, r, t, run, img, gt, 2 * gh, 2 * gw, (long long)want);
            int64_t mx = 0;
            for (int k = 0; k < run; k++) {
                int f = k / (gh * gw), rr = k / gw % gh, cc = k % gw;
                pos3[i + k] = (int32_t)(next + f);
                pos3[N + i + k] = (int32_t)(next + rr);
                pos3[2 * N + i + k] = (int32_t)(next + cc);
                int64_t m = f > rr ? f : rr;
                if (cc > m) m = cc;
                if (m > mx) mx = m;
            }
            next += mx + 1;
            t += run;
            img++;
        }
    }
    if (img != n)
        return qw_error(QW_EXIT_DATA, "%s: %d images in image_grid_thw, but %d runs of image pad tokens", what, n, img);
    return 0;
}

void qw_mrope_table(const qw_config *c, const int32_t *pos3, int N, const float *inv_freq, float scale, float *cs,
                    float *sn)
{
    int half = c->head_dim / 2, st = c->mrope_section[0], sh = c->mrope_section[1], sw = c->mrope_section[2];
    int axis[half];
    for (int j = 0; j < half; j++) {
        if (c->mrope_interleaved) axis[j] = j % 3 == 1 && j < 3 * sh ? 1 : j % 3 == 2 && j < 3 * sw ? 2 : 0;
        else axis[j] = j < st ? 0 : j < st + sh ? 1 : 2;
        if (st + sh + sw == 0) axis[j] = 0;
    }
    for (int i = 0; i < N; i++)
        for (int j = 0; j < half; j++) {
            float ang = (float)pos3[(size_t)axis[j] * N + i] * inv_freq[j];
            cs[(size_t)i * half + j] = cosf(ang) * scale;
            sn[(size_t)i * half + j] = sinf(ang) * scale;
        }
}
