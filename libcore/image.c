/* image.c — PNG/JPEG decoding and Qwen3-VL's image preprocessing.
 * See qw/image.h for what is matched and why. */
#include "qw/image.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/file.h"

void qw_image_free(qw_image *im)
{
    if (!im) return;
    free(im->px);
    im->px = NULL;
    im->w = im->h = 0;
}

static void image_alloc(qw_image *im, int w, int h)
{
    im->w = w;
    im->h = h;
    im->px = qw_malloc((size_t)w * h * 3);
}

/* ---------------------------------------------------------------- EXIF */

static unsigned rd16(const uint8_t *p, int le) { return le ? p[0] | p[1] << 8 : p[0] << 8 | p[1]; }
static uint32_t rd32(const uint8_t *p, int le)
{
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* The Orientation tag (0x0112) of IFD0 in a TIFF-structured EXIF block;
 * 1 when absent or malformed (PIL then leaves the image alone too). */
static int exif_orientation(const uint8_t *t, size_t n)
{
    if (n < 8) return 1;
    int le;
    if (t[0] == 'I' && t[1] == 'I') le = 1;
    else if (t[0] == 'M' && t[1] == 'M') le = 0;
    else return 1;
    if (rd16(t + 2, le) != 42) return 1;
    uint32_t ifd = rd32(t + 4, le);
    if (ifd > n - 2) return 1;
    unsigned cnt = rd16(t + ifd, le);
    for (unsigned i = 0; i < cnt; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)i * 12;
        if (e + 12 > n) return 1;
        if (rd16(t + e, le) == 0x0112) {
            unsigned type = rd16(t + e + 2, le);
            unsigned v = type == 3 ? rd16(t + e + 8, le) : type == 4 ? rd32(t + e + 8, le) : 1;
            return v >= 1 && v <= 8 ? (int)v : 1;
        }
    }
    return 1;
}

/* PIL.ImageOps.exif_transpose: 2 mirror, 3 rotate 180, 4 flip, 5 transpose,
 * 6 rotate 90° clockwise, 7 transverse, 8 rotate 90° counter-clockwise. */
static void apply_orientation(qw_image *im, int o)
{
    if (o < 2 || o > 8) return;
    int W = im->w, H = im->h;
    int swap = o >= 5;
    qw_image out;
    image_alloc(&out, swap ? H : W, swap ? W : H);
    for (int y = 0; y < out.h; y++)
        for (int x = 0; x < out.w; x++) {
            int sx, sy;
            switch (o) {
            case 2: sx = W - 1 - x; sy = y; break;
            case 3: sx = W - 1 - x; sy = H - 1 - y; break;
            case 4: sx = x; sy = H - 1 - y; break;
            case 5: sx = y; sy = x; break;
            case 6: sx = y; sy = H - 1 - x; break;
            case 7: sx = W - 1 - y; sy = H - 1 - x; break;
            default: sx = W - 1 - y; sy = x; break;   /* 8 */
            }
            memcpy(out.px + ((size_t)y * out.w + x) * 3, im->px + ((size_t)sy * W + sx) * 3, 3);
        }
    qw_image_free(im);
    *im = out;
}

/* ----------------------------------------------------------------- PNG */

typedef struct {
    const uint8_t *p;
    size_t n, off;
    jmp_buf jb;
    char msg[160];
} png_src;

static void png_read_mem(png_structp png, png_bytep out, size_t len)
{
    png_src *s = png_get_io_ptr(png);
    if (len > s->n - s->off) png_error(png, "truncated file");
    memcpy(out, s->p + s->off, len);
    s->off += len;
}

static void png_err(png_structp png, png_const_charp msg)
{
    png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    longjmp(s->jb, 1);
}

static void png_warn(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static int decode_png(const uint8_t *data, size_t n, const char *name, qw_image *out)
{
    png_src s = { .p = data, .n = n };
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &s, png_err, png_warn);
    if (!png) return qw_error(QW_EXIT_FAIL, "'%s': out of memory", name);
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile raw = NULL;
    png_bytep *volatile rows = NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return qw_error(QW_EXIT_FAIL, "'%s': out of memory", name);
    }
    if (setjmp(s.jb)) {
        free(raw);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        qw_image_free(out);
        return qw_error(QW_EXIT_DATA, "'%s': corrupt or truncated PNG: %s", name, s.msg);
    }
    png_set_read_fn(png, &s, png_read_mem);
    png_set_user_limits(png, 1u << 16, 1u << 16);
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, ctype;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, NULL, NULL, NULL);
    if ((uint64_t)w * h > QW_IMAGE_MAX_PIXELS) png_error(png, "image too large (a decompression bomb?)");
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    else if ((ctype == PNG_COLOR_TYPE_GRAY) && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int ch = png_get_channels(png, info);
    int bd = png_get_bit_depth(png, info);
    size_t rb = png_get_rowbytes(png, info);
    if ((bd != 8 && bd != 16) || ch < 1 || ch > 4 || rb < (size_t)w * ch * (bd / 8))
        png_error(png, "unsupported pixel layout");
    raw = qw_malloc(rb * h);
    rows = qw_malloc(sizeof(png_bytep) * h);
    for (png_uint_32 y = 0; y < h; y++) rows[y] = raw + rb * y;
    png_read_image(png, rows);
    png_read_end(png, info);
    int orient = 1;
#ifdef PNG_eXIf_SUPPORTED
    {
        png_uint_32 en = 0;
        png_bytep ex = NULL;
        if (png_get_eXIf_1(png, info, &en, &ex) && ex) orient = exif_orientation(ex, en);
    }
#endif
    image_alloc(out, (int)w, (int)h);
    /* PIL's convert("RGB"): alpha dropped; 16-bit grey clipped at 255
     * (mode I;16), every other 16-bit layout read by its high byte. */
    for (png_uint_32 y = 0; y < h; y++) {
        const uint8_t *r = rows[y];
        uint8_t *o = out->px + (size_t)y * w * 3;
        for (png_uint_32 x = 0; x < w; x++) {
            uint8_t v[4];
            for (int c = 0; c < ch; c++) {
                if (bd == 8) v[c] = r[x * ch + c];
                else {
                    const uint8_t *q = r + (size_t)(x * ch + c) * 2;
                    v[c] = ch == 1 ? (q[0] ? 255 : q[1]) : q[0];
                }
            }
            if (ch <= 2) o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = v[0];
            else memcpy(o + 3 * x, v, 3);
        }
    }
    free(raw);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    apply_orientation(out, orient);
    return 0;
}

/* ---------------------------------------------------------------- JPEG */

typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    int truncated;
} jpeg_err;

static void jpeg_err_exit(j_common_ptr c)
{
    jpeg_err *e = (jpeg_err *)c->err;
    (*c->err->format_message)(c, e->msg);
    longjmp(e->jb, 1);
}

static void jpeg_emit(j_common_ptr c, int level)
{
    /* Warnings are ignored as PIL ignores them, except the end of data
     * before the end of the image, which PIL refuses ("truncated"). */
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) ((jpeg_err *)c->err)->truncated = 1;
}

static int decode_jpeg(const uint8_t *data, size_t n, const char *name, qw_image *out)
{
    struct jpeg_decompress_struct ci;
    jpeg_err e;
    uint8_t *volatile row = NULL;
    memset(&e, 0, sizeof e);
    ci.err = jpeg_std_error(&e.mgr);
    e.mgr.error_exit = jpeg_err_exit;
    e.mgr.emit_message = jpeg_emit;
    if (setjmp(e.jb)) {
        free(row);
        jpeg_destroy_decompress(&ci);
        qw_image_free(out);
        return qw_error(QW_EXIT_DATA, "'%s': corrupt JPEG: %s", name, e.msg);
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, data, (unsigned long)n);
    jpeg_save_markers(&ci, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&ci, TRUE);
    if (e.truncated) {
        jpeg_destroy_decompress(&ci);
        return qw_error(QW_EXIT_DATA, "'%s': truncated JPEG", name);
    }
    int orient = 1;
    for (jpeg_saved_marker_ptr m = ci.marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 1 && m->data_length > 6 && !memcmp(m->data, "Exif\0\0", 6)) {
            orient = exif_orientation(m->data + 6, m->data_length - 6);
            break;   /* PIL keeps the first Exif block */
        }
    int cmyk = 0;
    switch (ci.jpeg_color_space) {
    case JCS_GRAYSCALE: ci.out_color_space = JCS_GRAYSCALE; break;
    case JCS_CMYK:
    case JCS_YCCK: ci.out_color_space = JCS_CMYK; cmyk = 1; break;
    default: ci.out_color_space = JCS_RGB; break;
    }
    ci.dct_method = JDCT_ISLOW;
    if ((uint64_t)ci.image_width * ci.image_height > QW_IMAGE_MAX_PIXELS) {
        jpeg_destroy_decompress(&ci);
        return qw_error(QW_EXIT_DATA, "'%s': image too large (%ux%u pixels, above %lld: a decompression bomb?)", name,
                        ci.image_width, ci.image_height, (long long)QW_IMAGE_MAX_PIXELS);
    }
    jpeg_start_decompress(&ci);
    int W = (int)ci.output_width, H = (int)ci.output_height, C = ci.output_components;
    image_alloc(out, W, H);
    row = qw_malloc((size_t)W * C);
    while (ci.output_scanline < ci.output_height && !e.truncated) {
        int y = (int)ci.output_scanline;
        JSAMPROW rp = row;
        jpeg_read_scanlines(&ci, &rp, 1);
        uint8_t *o = out->px + (size_t)y * W * 3;
        for (int x = 0; x < W; x++) {
            const uint8_t *p = row + (size_t)x * C;
            if (C == 1) o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = p[0];
            else if (!cmyk) memcpy(o + 3 * x, p, 3);
            else {
                /* PIL reads CMYK JPEGs as Adobe-inverted ("CMYK;I") and
                 * converts with nk − nk·c/255, nk = 255 − k, rounded as
                 * its MULDIV255. */
                int nk = 255 - (255 - p[3]);
                for (int c = 0; c < 3; c++) {
                    int cc = 255 - p[c];
                    int t = cc * nk + 128;
                    int v = nk - (((t >> 8) + t) >> 8);
                    o[3 * x + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
            }
        }
    }
    if (e.truncated) {
        free(row);
        jpeg_destroy_decompress(&ci);
        qw_image_free(out);
        return qw_error(QW_EXIT_DATA, "'%s': truncated JPEG", name);
    }
    jpeg_finish_decompress(&ci);
    free(row);
    jpeg_destroy_decompress(&ci);
    apply_orientation(out, orient);
    return 0;
}

int qw_image_decode(const void *data, size_t n, const char *name, qw_image *out)
{
    const uint8_t *p = data;
    memset(out, 0, sizeof *out);
    if (n >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8)) return decode_png(p, n, name, out);
    if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return decode_jpeg(p, n, name, out);
    if (n == 0) return qw_error(QW_EXIT_DATA, "'%s': empty file", name);
    return qw_error(QW_EXIT_DATA, "'%s': unsupported image format (not PNG or JPEG)", name);
}

int qw_image_load(const char *path, qw_image *out)
{
    qw_buf b = {0};
    int found = 0;
    memset(out, 0, sizeof *out);
    int rc = qw_read_file(path, &b, &found);
    if (rc) return rc;
    if (!found) return qw_error(QW_EXIT_DATA, "'%s': no such image", path);
    rc = qw_image_decode(b.p, b.n, path, out);
    qw_buf_free(&b);
    return rc;
}

/* ------------------------------------------------------------ settings */

void qw_vision_prep_default(qw_vision_prep *p)
{
    memset(p, 0, sizeof *p);
    p->patch_size = 16;
    p->merge_size = 2;
    p->temporal_patch_size = 2;
    p->min_pixels = 65536;
    p->max_pixels = 16777216;
    p->rescale_factor = 1.0 / 255.0;
    for (int c = 0; c < 3; c++) p->mean[c] = p->std[c] = 0.5;
    p->do_resize = p->do_rescale = p->do_normalize = 1;
}

static int json_num(const cJSON *o, const char *key, double lo, double hi, double *v, const char *path)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!j || cJSON_IsNull(j)) return 0;
    if (!cJSON_IsNumber(j) || !(j->valuedouble >= lo && j->valuedouble <= hi))
        return qw_error(QW_EXIT_DATA, "'%s': \"%s\" must be a number in [%g, %g]", path, key, lo, hi);
    *v = j->valuedouble;
    return 0;
}

static int json_bool(const cJSON *o, const char *key, int *v, const char *path)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!j || cJSON_IsNull(j)) return 0;
    if (!cJSON_IsBool(j)) return qw_error(QW_EXIT_DATA, "'%s': \"%s\" must be true or false", path, key);
    *v = cJSON_IsTrue(j);
    return 0;
}

static int json_triple(const cJSON *o, const char *key, double v[3], int positive, const char *path)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!j || cJSON_IsNull(j)) return 0;
    if (cJSON_IsNumber(j)) {
        v[0] = v[1] = v[2] = j->valuedouble;
    } else if (cJSON_IsArray(j) && cJSON_GetArraySize(j) == 3) {
        for (int c = 0; c < 3; c++) {
            const cJSON *e = cJSON_GetArrayItem(j, c);
            if (!cJSON_IsNumber(e)) goto bad;
            v[c] = e->valuedouble;
        }
    } else goto bad;
    for (int c = 0; c < 3; c++)
        if (!isfinite(v[c]) || (positive && !(v[c] > 0))) goto bad;
    return 0;
bad:
    return qw_error(QW_EXIT_DATA, "'%s': \"%s\" must be a number or 3 numbers%s", path, key,
                    positive ? " > 0" : "");
}

int qw_vision_prep_load(qw_vision_prep *p, const char *model_dir)
{
    qw_vision_prep_default(p);
    if (!model_dir) return 0;
    size_t L = strlen(model_dir) + 32;
    char *path = qw_malloc(L);
    snprintf(path, L, "%s/preprocessor_config.json", model_dir);
    qw_buf b = {0};
    int found = 0;
    int rc = qw_read_file(path, &b, &found);
    if (rc || !found) {
        free(path);
        return rc;
    }
    qw_buf_reserve(&b, 1);
    b.p[b.n] = 0;
    cJSON *root = cJSON_ParseWithLength(b.p, b.n);
    qw_buf_free(&b);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        rc = qw_error(QW_EXIT_DATA, "'%s': not a JSON object", path);
        free(path);
        return rc;
    }
    double v;
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(root, "size");
    if (size && cJSON_IsObject(size)) {
        v = (double)p->min_pixels;
        if ((rc = json_num(size, "shortest_edge", 1, 1e12, &v, path))) goto out;
        p->min_pixels = (int64_t)v;
        v = (double)p->max_pixels;
        if ((rc = json_num(size, "longest_edge", 1, 1e12, &v, path))) goto out;
        p->max_pixels = (int64_t)v;
    }
    v = (double)p->min_pixels;
    if ((rc = json_num(root, "min_pixels", 1, 1e12, &v, path))) goto out;
    p->min_pixels = (int64_t)v;
    v = (double)p->max_pixels;
    if ((rc = json_num(root, "max_pixels", 1, 1e12, &v, path))) goto out;
    p->max_pixels = (int64_t)v;
    v = p->patch_size;
    if ((rc = json_num(root, "patch_size", 1, 1024, &v, path))) goto out;
    p->patch_size = (int)v;
    v = p->merge_size;
    if ((rc = json_num(root, "merge_size", 1, 64, &v, path))) goto out;
    p->merge_size = (int)v;
    v = p->temporal_patch_size;
    if ((rc = json_num(root, "temporal_patch_size", 1, 64, &v, path))) goto out;
    p->temporal_patch_size = (int)v;
    v = p->rescale_factor;
    if ((rc = json_num(root, "rescale_factor", 1e-12, 1e12, &v, path))) goto out;
    p->rescale_factor = v;
    if ((rc = json_triple(root, "image_mean", p->mean, 0, path))) goto out;
    if ((rc = json_triple(root, "image_std", p->std, 1, path))) goto out;
    if ((rc = json_bool(root, "do_resize", &p->do_resize, path))) goto out;
    if ((rc = json_bool(root, "do_rescale", &p->do_rescale, path))) goto out;
    if ((rc = json_bool(root, "do_normalize", &p->do_normalize, path))) goto out;
out:
    cJSON_Delete(root);
    free(path);
    return rc;
}

/* -------------------------------------------------------- smart_resize */

int qw_smart_resize(int h, int w, int factor, int64_t min_pixels, int64_t max_pixels, int *rh, int *rw)
{
    /* transformers 5: no lower bound on the sides (4.x refused sides below
     * `factor`); a side that floors to 0 when shrinking becomes `factor`. */
    if (h < 1 || w < 1) return qw_error(QW_EXIT_DATA, "image too small: %dx%d (width x height)", w, h);
    double hd = h, wd = w;
    if ((h > w ? hd / wd : wd / hd) > 200)
        return qw_error(QW_EXIT_DATA, "aspect ratio of %dx%d (width x height) exceeds 200", w, h);
    /* Python's round() rounds half to even, as rint() does by default. */
    double hb = rint(hd / factor) * factor, wb = rint(wd / factor) * factor;
    if (hb * wb > (double)max_pixels) {
        double beta = sqrt(hd * wd / (double)max_pixels);
        hb = fmax(factor, floor(hd / beta / factor) * factor);
        wb = fmax(factor, floor(wd / beta / factor) * factor);
    } else if (hb * wb < (double)min_pixels) {
        double beta = sqrt((double)min_pixels / (hd * wd));
        hb = ceil(hd * beta / factor) * factor;
        wb = ceil(wd * beta / factor) * factor;
    }
    if (hb < factor || wb < factor || hb > 1 << 20 || wb > 1 << 20)
        return qw_error(QW_EXIT_DATA, "%dx%d (width x height) resizes to %.0fx%.0f, outside the model's range",
                        w, h, wb, hb);
    *rh = (int)hb;
    *rw = (int)wb;
    return 0;
}

/* -------------------------------------------------------------- resize */

/* Keys' cubic with a = −0.5, in PyTorch's evaluation order
 * (cubic_convolution1/2 of ATen's UpSample.h). */
static double aa_cubic(double x)
{
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0) return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2.0) return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    return 0.0;
}

typedef struct {
    int taps;          /* weights per output sample (row stride of w) */
    int prec;          /* fixed-point bits */
    int *xmin, *xsize;
    int32_t *w;        /* [out][taps], int16 range */
} aa_axis;

/* One axis's sample ranges and int16 weights, as PyTorch computes them for
 * an antialiased uint8 resize (_compute_indices_min_size_weights_aa and
 * _compute_index_ranges_int16_weights): PIL's support (2·scale when
 * downscaling) and pixel centres, weights normalised in double, scaled by
 * the largest power of two under which the axis's largest weight stays
 * below 2^15, rounded half away from zero. */
static void aa_axis_build(aa_axis *a, int in, int out)
{
    double scale = (double)in / out;
    double support = scale >= 1.0 ? 2.0 * scale : 2.0;
    int taps = (int)ceil(support) * 2 + 1;
    double inv = scale >= 1.0 ? 1.0 / scale : 1.0;
    double *wf = qw_calloc((size_t)out * taps, sizeof(double));
    a->taps = taps;
    a->xmin = qw_malloc(sizeof(int) * out);
    a->xsize = qw_malloc(sizeof(int) * out);
    a->w = qw_calloc((size_t)out * taps, sizeof(int32_t));
    double wt_max = 0;
    for (int i = 0; i < out; i++) {
        double center = scale * (i + 0.5);
        long xmin = (long)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        long xmax = (long)(center + support + 0.5);
        if (xmax > in) xmax = in;
        long xs = xmax - xmin;
        if (xs < 0) xs = 0;
        if (xs > taps) xs = taps;
        double *ww = wf + (size_t)i * taps, total = 0;
        for (long j = 0; j < xs; j++) {
            ww[j] = aa_cubic((j + xmin - center + 0.5) * inv);
            total += ww[j];
        }
        if (total != 0.0)
            for (long j = 0; j < xs; j++) {
                ww[j] /= total;
                if (ww[j] > wt_max) wt_max = ww[j];
            }
        a->xmin[i] = (int)xmin;
        a->xsize[i] = (int)xs;
    }
    int prec;
    for (prec = 0; prec < 22; prec++) {
        int next = (int)(0.5 + wt_max * (1 << (prec + 1)));
        if (next >= (1 << 15)) break;
    }
    a->prec = prec;
    for (size_t k = 0; k < (size_t)out * taps; k++) {
        double v = wf[k] * (1 << prec);
        a->w[k] = (int16_t)(v < 0 ? (int)(-0.5 + v) : (int)(0.5 + v));
    }
    free(wf);
}

static void aa_axis_free(aa_axis *a)
{
    free(a->xmin);
    free(a->xsize);
    free(a->w);
}

static inline uint8_t clip_u8(int32_t v, int prec)
{
    v >>= prec;   /* arithmetic shift, as the SIMD kernels do */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

void qw_image_resize(const qw_image *in, int oh, int ow, qw_image *out)
{
    image_alloc(out, ow, oh);
    if (oh == in->h && ow == in->w) {
        memcpy(out->px, in->px, (size_t)ow * oh * 3);
        return;
    }
    /* Width first (into h × ow), then height, each pass rounded and
     * clamped to uint8, as PyTorch's separable uint8 kernel (and PIL). */
    qw_image mid = *in;
    int own_mid = 0;
    if (ow != in->w) {
        aa_axis ax;
        aa_axis_build(&ax, in->w, ow);
        image_alloc(&mid, ow, in->h);
        own_mid = 1;
        int32_t half = ax.prec > 0 ? 1 << (ax.prec - 1) : 0;
#pragma omp parallel for schedule(static)
        for (int y = 0; y < in->h; y++) {
            const uint8_t *r = in->px + (size_t)y * in->w * 3;
            uint8_t *o = mid.px + (size_t)y * ow * 3;
            for (int x = 0; x < ow; x++) {
                const int32_t *k = ax.w + (size_t)x * ax.taps;
                int32_t s0 = half, s1 = half, s2 = half;
                const uint8_t *q = r + (size_t)ax.xmin[x] * 3;
                for (int j = 0; j < ax.xsize[x]; j++) {
                    s0 += q[3 * j] * k[j];
                    s1 += q[3 * j + 1] * k[j];
                    s2 += q[3 * j + 2] * k[j];
                }
                o[3 * x] = clip_u8(s0, ax.prec);
                o[3 * x + 1] = clip_u8(s1, ax.prec);
                o[3 * x + 2] = clip_u8(s2, ax.prec);
            }
        }
        aa_axis_free(&ax);
    }
    if (oh != mid.h) {
        aa_axis ay;
        aa_axis_build(&ay, mid.h, oh);
        int32_t half = ay.prec > 0 ? 1 << (ay.prec - 1) : 0;
        size_t rowb = (size_t)ow * 3;
#pragma omp parallel for schedule(static)
        for (int y = 0; y < oh; y++) {
            const int32_t *k = ay.w + (size_t)y * ay.taps;
            uint8_t *o = out->px + (size_t)y * rowb;
            for (size_t x = 0; x < rowb; x++) {
                int32_t s = half;
                const uint8_t *q = mid.px + (size_t)ay.xmin[y] * rowb + x;
                for (int j = 0; j < ay.xsize[y]; j++) s += q[(size_t)j * rowb] * k[j];
                o[x] = clip_u8(s, ay.prec);
            }
        }
        aa_axis_free(&ay);
    } else {
        memcpy(out->px, mid.px, (size_t)ow * oh * 3);
    }
    if (own_mid) qw_image_free(&mid);
}

/* ------------------------------------------------------------- patches */

int64_t qw_vision_rows(const qw_vision_prep *p, int h, int w)
{
    return (int64_t)(h / p->patch_size) * (w / p->patch_size);
}

int qw_vision_row_len(const qw_vision_prep *p)
{
    return 3 * p->temporal_patch_size * p->patch_size * p->patch_size;
}

int qw_vision_preprocess(const qw_vision_prep *p, const qw_image *im, const char *name,
                         float **pixels, int64_t *rows, int64_t grid_thw[3])
{
    *pixels = NULL;
    *rows = 0;
    int factor = p->patch_size * p->merge_size;
    int rh = im->h, rw = im->w;
    if (p->do_resize) {
        if (qw_smart_resize(im->h, im->w, factor, p->min_pixels, p->max_pixels, &rh, &rw))
            return qw_error(QW_EXIT_DATA, "'%s': %s", name, qw_error_msg());
    } else if (rh % factor || rw % factor) {
        return qw_error(QW_EXIT_DATA, "'%s': %dx%d is not a multiple of %d and do_resize is false",
                        name, rw, rh, factor);
    }
    qw_image r;
    qw_image_resize(im, rh, rw, &r);

    /* The fast processor fuses rescale and normalise: mean and std are
     * float32 tensors multiplied by 1/rescale_factor in float32, then
     * (x − mean) / std in float32. */
    float mean[3], std[3];
    float inv = (float)(1.0 / p->rescale_factor);
    for (int c = 0; c < 3; c++) {
        if (p->do_rescale && p->do_normalize) {
            mean[c] = (float)p->mean[c] * inv;
            std[c] = (float)p->std[c] * inv;
        } else if (p->do_normalize) {
            mean[c] = (float)p->mean[c];
            std[c] = (float)p->std[c];
        } else {
            mean[c] = 0;
            std[c] = 1;
        }
    }
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            float x = (float)v;
            if (p->do_rescale && !p->do_normalize) x = x * (float)p->rescale_factor;
            lut[c][v] = (x - mean[c]) / std[c];
        }

    /* [gt=1, T, C, gh/m, m, P, gw/m, m, P] permuted (0,3,6,4,7,2,1,5,8):
     * rows ordered (bh, bw, mh, mw), each row (c, t, py, px); the image is
     * repeated across the T temporal slots. */
    const int P = p->patch_size, M = p->merge_size, T = p->temporal_patch_size;
    int gh = rh / P, gw = rw / P;
    int64_t n = (int64_t)gh * gw;
    int L = qw_vision_row_len(p);
    float *out = qw_malloc((size_t)n * L * sizeof(float));
    int64_t row = 0;
    for (int bh = 0; bh < gh / M; bh++)
        for (int bw = 0; bw < gw / M; bw++)
            for (int mh = 0; mh < M; mh++)
                for (int mw = 0; mw < M; mw++, row++) {
                    float *o = out + (size_t)row * L;
                    int y0 = (bh * M + mh) * P, x0 = (bw * M + mw) * P;
                    for (int c = 0; c < 3; c++)
                        for (int t = 0; t < T; t++)
                            for (int py = 0; py < P; py++) {
                                const uint8_t *s = r.px + ((size_t)(y0 + py) * rw + x0) * 3 + c;
                                for (int px = 0; px < P; px++) *o++ = lut[c][s[3 * px]];
                            }
                }
    qw_image_free(&r);
    *pixels = out;
    *rows = n;
    grid_thw[0] = 1;
    grid_thw[1] = gh;
    grid_thw[2] = gw;
    return 0;
}
