/* qw/image.h — images for the vision model: decoding, Qwen3-VL's resize,
 * normalisation and patch flattening.
 *
 * The goal is the bytes transformers produces: an image path loaded as its
 * chat pipeline loads one (transformers.image_utils.load_image: EXIF
 * orientation applied, then PIL's convert("RGB")) and given to the image
 * processor AutoImageProcessor returns for a Qwen3-VL checkpoint
 * (Qwen2VLImageProcessorFast, the torchvision one): smart_resize to a
 * multiple of patch·merge, an antialiased bicubic resize of the uint8
 * image (PyTorch's CPU uint8 kernel: Keys cubic a = −0.5, PIL's support
 * and centring, int16 fixed-point weights, width pass then height pass,
 * each rounded and clamped to uint8), then (x − 255·mean) / (255·std) in
 * float32 and the patch order of the processor.
 *
 * Decoding (PIL's convert("RGB") semantics):
 *   PNG  grey 1/2/4/8 bit (scaled to 0..255), grey 16 bit (PIL's I;16:
 *        the value clipped to 255, not scaled), grey+alpha, palette (a
 *        tRNS chunk ignored), RGB and RGBA at 8 bit, 16-bit RGB/RGBA/LA
 *        (the high byte, as PIL reads them); alpha is DROPPED, never
 *        composited; an eXIf chunk's orientation is applied.
 *   JPEG grey, YCbCr/RGB, CMYK and YCCK (Adobe-inverted CMYK as PIL reads
 *        it; CMYK→RGB as PIL: nk − nk·c/255 with nk = 255 − k), baseline
 *        and progressive, libjpeg's default (ISLOW) IDCT and fancy
 *        upsampling; the EXIF orientation (APP1) applied as
 *        PIL.ImageOps.exif_transpose does.
 * Anything else (other signatures, truncated or corrupt data) is an error.
 *
 * Ownership: qw_image owns `px`; free it with qw_image_free.  Sizes are in
 * pixels; `px` is RGB8 interleaved, row-major, h·w·3 bytes.
 *
 * Errors: 0 or QW_EXIT_* (qw/cli.h) with a message naming the file:
 * QW_EXIT_DATA for a missing file, an unreadable, truncated or corrupt
 * image (a PNG or JPEG header with a zero side is corrupt), an unsupported
 * format, an aspect ratio above 200, or more than QW_IMAGE_MAX_PIXELS
 * pixels declared in the header (refused before any pixel is decoded); QW_EXIT_FAIL for I/O errors other
 * than a missing file.  There is no lower bound on the size: as in
 * transformers 5, a small image is enlarged to min_pixels (transformers 4
 * refused sides below patch·merge).
 */
#ifndef QW_IMAGE_H
#define QW_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* The most pixels (width · height) an image may declare: PIL's
 * decompression-bomb limit, twice Image.MAX_IMAGE_PIXELS (89,478,485), above
 * which Image.open raises DecompressionBombError.  A header that declares
 * more is refused before decoding, so a few bytes cannot claim gigabytes. */
#define QW_IMAGE_MAX_PIXELS 178956970LL

typedef struct {
    int w, h;          /* pixels */
    uint8_t *px;       /* RGB8, h·w·3, owned */
} qw_image;

void qw_image_free(qw_image *im);

/* Decode the PNG or JPEG file at path (chosen by its signature, not its
 * name) into RGB8 with the EXIF orientation applied.  On failure *out is
 * zeroed. */
int qw_image_load(const char *path, qw_image *out);
/* The same from memory; `name` is only used in messages. */
int qw_image_decode(const void *data, size_t n, const char *name, qw_image *out);

/* The processor's settings (a model directory's preprocessor_config.json). */
typedef struct {
    int patch_size;            /* 16 */
    int merge_size;            /* 2 */
    int temporal_patch_size;   /* 2 */
    int64_t min_pixels;        /* size.shortest_edge (or min_pixels): 65536 */
    int64_t max_pixels;        /* size.longest_edge (or max_pixels): 16777216 */
    double rescale_factor;     /* 1/255 */
    double mean[3], std[3];    /* 0.5 each */
    int do_resize, do_rescale, do_normalize;   /* 1 */
} qw_vision_prep;

/* Qwen3-VL's defaults (above). */
void qw_vision_prep_default(qw_vision_prep *p);
/* Defaults, then the keys of DIR/preprocessor_config.json when the file
 * exists ("size" {shortest_edge, longest_edge} first, then the older
 * top-level min_pixels / max_pixels, which override it, as the processor
 * does).  A file that is not valid JSON, or a value of the wrong type or
 * out of range, is QW_EXIT_DATA. */
int qw_vision_prep_load(qw_vision_prep *p, const char *model_dir);

/* transformers' smart_resize: (h, w) → (*rh, *rw), multiples of `factor`
 * with rh·rw within [min_pixels, max_pixels] where possible, rounding as
 * Python does (round half to even, then floor/ceil after rescaling).
 * When shrinking, a side that rounds down to 0 becomes `factor` (as
 * transformers 5 does).  Errors (QW_EXIT_DATA, message without a file
 * name — the caller adds it): a side < 1, max/min side > 200 ("aspect
 * ratio"), or a result side above 2^20. */
int qw_smart_resize(int h, int w, int factor, int64_t min_pixels, int64_t max_pixels,
                    int *rh, int *rw);

/* The antialiased bicubic resize of `in` to oh × ow (above); out is
 * allocated.  Equal sizes copy. */
void qw_image_resize(const qw_image *in, int oh, int ow, qw_image *out);

/* Rows of one image's patches: (h/patch)·(w/patch) (one temporal group). */
int64_t qw_vision_rows(const qw_vision_prep *p, int h, int w);
/* Values per row: 3 · temporal · patch² (1536 for Qwen3-VL). */
int qw_vision_row_len(const qw_vision_prep *p);

/* The whole processor for one decoded image: smart_resize, resize,
 * normalise, flatten.  *pixels is allocated (rows × row_len floats);
 * grid_thw receives {1, h/patch, w/patch}.  `name` is used in messages. */
int qw_vision_preprocess(const qw_vision_prep *p, const qw_image *im, const char *name,
                         float **pixels, int64_t *rows, int64_t grid_thw[3]);

#endif
