/* fuzz_image.c — a PNG or JPEG file (libcore/image.c): decoded from memory
 * as qw-eval pixels decodes a path (EXIF orientation included); an image
 * that decodes goes through the whole Qwen3-VL preprocessing with small
 * pixel bounds, and its rows and grid must agree. */
#include "fuzz.h"

#include "qw/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qw_image im;
    int rc = qw_image_decode(data, size, "image", &im);
    fz_expect(rc, FZ_DATA, "image");
    if (rc) {
        if (im.px) fz_fatal("a failed decode left pixels", rc);
        return 0;
    }
    if (im.w < 1 || im.h < 1 || !im.px) fz_fatal("a decoded image without pixels", 0);
    if ((int64_t)im.w * im.h <= (1 << 20)) {
        qw_vision_prep p;
        qw_vision_prep_default(&p);
        p.min_pixels = 1024;
        p.max_pixels = 4096;
        float *px;
        int64_t rows, thw[3];
        rc = qw_vision_preprocess(&p, &im, "image", &px, &rows, thw);
        fz_expect(rc, FZ_DATA, "image");   /* an aspect ratio above 200 */
        if (!rc) {
            if (thw[0] != 1 || thw[1] * thw[2] != rows || rows < 4 || thw[1] % 2 || thw[2] % 2)
                fz_fatal("rows and grid disagree", 0);
            for (int64_t i = 0; i < rows * qw_vision_row_len(&p); i++)
                if (!(px[i] >= -1.0f && px[i] <= 1.0f)) fz_fatal("a value outside [-1, 1]", 0);
            free(px);
        }
    }
    qw_image_free(&im);
    return 0;
}
