/* test_image.c — libcore/image.c: smart_resize on edge cases (expected
 * values from transformers 5's smart_resize formula, run in Python), the resize
 * weights against a pure-Python transcription of PyTorch's uint8 kernel,
 * decoding of every PNG layout (written here with libpng) and of JPEGs
 * (written here with libjpeg: grey, CMYK, EXIF orientation), the patch
 * order, preprocessor_config.json, and bad input. */
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h>

#include "qw/cli.h"
#include "qw/image.h"
#include "qwtest.h"

static char dir[256];

static const char *tpath(const char *name) { return qwtest_join(dir, name); }

/* A PNG of w×h with `ch` channels at `bd` bits, samples from f(x, y, c). */
static void write_png(const char *path, int w, int h, int ctype, int bd, unsigned (*f)(int, int, int),
                      const uint8_t *exif, int exif_n, const png_color *pal, int npal, const uint8_t *trns, int ntrns)
{
    FILE *fp = fopen(path, "wb");
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    png_init_io(png, fp);
    png_set_IHDR(png, info, w, h, bd, ctype, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (pal) png_set_PLTE(png, info, pal, npal);
    if (trns) png_set_tRNS(png, info, trns, ntrns, NULL);
#ifdef PNG_eXIf_SUPPORTED
    if (exif) png_set_eXIf_1(png, info, exif_n, (png_bytep)exif);
#endif
    png_write_info(png, info);
    int ch = ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_PALETTE ? 1
           : ctype == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : ctype == PNG_COLOR_TYPE_RGB ? 3 : 4;
    size_t rb = ((size_t)w * ch * bd + 7) / 8;
    uint8_t *row = calloc(rb, 1);
    for (int y = 0; y < h; y++) {
        memset(row, 0, rb);
        for (int x = 0; x < w; x++)
            for (int c = 0; c < ch; c++) {
                unsigned v = f(x, y, c);
                if (bd == 16) {
                    row[(x * ch + c) * 2] = v >> 8;
                    row[(x * ch + c) * 2 + 1] = v & 255;
                } else if (bd == 8) {
                    row[x * ch + c] = v;
                } else {   /* 1, 2, 4 bits, one channel */
                    int per = 8 / bd;
                    row[x / per] |= v << (8 - bd * (x % per + 1));
                }
            }
        png_write_row(png, row);
    }
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    free(row);
    fclose(fp);
}

static unsigned f_grad(int x, int y, int c) { return (x * 7 + y * 13 + c * 50) & 255; }
static unsigned f_g16(int x, int y, int c) { (void)c; return x == 0 ? 100 : x == 1 ? 255 : x == 2 ? 256 : 300 + 1000 * y; }
static unsigned f_g2(int x, int y, int c) { (void)y; (void)c; return x & 3; }
static unsigned f_rgb16(int x, int y, int c) { return (unsigned)((x * 7 + y * 13 + c * 50) & 255) * 256 + 0xAB; }
static unsigned f_pal(int x, int y, int c) { (void)y; (void)c; return x % 3; }
static unsigned f_pos(int x, int y, int c) { return c == 0 ? x & 255 : c == 1 ? y & 255 : (x >> 8) * 16 + (y >> 8); }

static const uint8_t *px(const qw_image *im, int x, int y) { return im->px + ((size_t)y * im->w + x) * 3; }

/* A TIFF block (as in EXIF) holding only Orientation = o. */
static int tiff_orientation(uint8_t *b, int o, int little)
{
    static const uint8_t le[] = { 'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
    static const uint8_t be[] = { 'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0 };
    memcpy(b, little ? le : be, sizeof le);
    if (little) b[18] = (uint8_t)o; else b[19] = (uint8_t)o;
    return (int)sizeof le;
}

/* A JPEG at quality 100: 1 (grey), 3 (RGB) or 4 (CMYK, Adobe-inverted as
 * Photoshop and PIL write it) components from f, with an optional EXIF
 * orientation. */
static void write_jpeg(const char *path, int w, int h, int comps, unsigned (*f)(int, int, int), int orient)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    FILE *fp = fopen(path, "wb");
    jpeg_stdio_dest(&c, fp);
    c.image_width = w;
    c.image_height = h;
    c.input_components = comps;
    c.in_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 100, TRUE);
    if (comps == 3) {   /* no chroma subsampling, so flat colours survive */
        c.comp_info[0].h_samp_factor = c.comp_info[0].v_samp_factor = 1;
    }
    jpeg_start_compress(&c, TRUE);
    if (orient) {
        uint8_t b[64] = "Exif\0\0";
        int n = tiff_orientation(b + 6, orient, orient % 2);
        jpeg_write_marker(&c, JPEG_APP0 + 1, b, (unsigned)(n + 6));
    }
    uint8_t *row = malloc((size_t)w * comps);
    while (c.next_scanline < c.image_height) {
        int y = (int)c.next_scanline;
        for (int x = 0; x < w; x++)
            for (int k = 0; k < comps; k++) row[x * comps + k] = (uint8_t)f(x, y, k);
        JSAMPROW r = row;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(fp);
    free(row);
}

/* ------------------------------------------------------------------ */

TEST(smart_resize_cases)
{
    /* {h, w, factor, min, max, expected h, expected w}: Python's
     * smart_resize (round half to even) evaluated by hand. */
    static const struct { int h, w, f; int64_t mn, mx; int eh, ew; } c[] = {
        { 48, 64, 32, 2048, 6144, 64, 64 },
        { 80, 48, 32, 1024, 1000000000, 64, 64 },    /* 2.5 → 2, 1.5 → 2 */
        { 80, 80, 32, 65536, 16777216, 256, 256 },    /* upscale */
        { 224, 224, 32, 65536, 16777216, 256, 256 },
        { 1080, 1920, 32, 65536, 16777216, 1088, 1920 },
        { 3000, 4000, 32, 65536, 16777216, 3008, 4000 },
        { 5000, 6000, 32, 65536, 16777216, 3712, 4480 },   /* downscale */
        { 150, 200, 32, 2048, 6144, 64, 64 },
        { 36, 40, 32, 2048, 6144, 64, 64 },
        { 32, 6400, 32, 65536, 16777216, 32, 6400 },       /* aspect exactly 200 */
        { 112, 112, 28, 3136, 1003520, 112, 112 },
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        int rh = -1, rw = -1;
        int rc = qw_smart_resize(c[i].h, c[i].w, c[i].f, c[i].mn, c[i].mx, &rh, &rw);
        CHECK_MSG(rc == 0 && rh == c[i].eh && rw == c[i].ew, "case %zu: %dx%d -> rc %d %dx%d, expected %dx%d", i,
                  c[i].h, c[i].w, rc, rh, rw, c[i].eh, c[i].ew);
    }
    int rh, rw;
    CHECK(qw_smart_resize(32, 6401, 32, 65536, 16777216, &rh, &rw) == QW_EXIT_DATA);
    CHECK(strstr(qw_error_msg(), "aspect ratio"));
    CHECK(qw_smart_resize(0, 5, 32, 65536, 16777216, &rh, &rw) == QW_EXIT_DATA);
    /* transformers 5's smart_resize: small images are enlarged (4.x refused
     * sides below 32), and a side that floors to 0 when shrinking is 32 */
    static const struct { int h, w; int64_t mn, mx; int eh, ew; } t5[] = {
        { 31, 100, 65536, 16777216, 160, 480 },
        { 100, 31, 65536, 16777216, 480, 160 },
        { 100, 31, 1, 1000000000, 96, 32 },
        { 1, 1, 2048, 6144, 64, 64 },
        { 1, 200, 2048, 6144, 32, 640 },       /* the enlarged size may pass max_pixels */
        { 40, 400, 2048, 6144, 32, 224 },      /* floor gives 0 → 32 */
    };
    for (size_t i = 0; i < sizeof t5 / sizeof t5[0]; i++) {
        rh = rw = -1;
        int rc = qw_smart_resize(t5[i].h, t5[i].w, 32, t5[i].mn, t5[i].mx, &rh, &rw);
        CHECK_MSG(rc == 0 && rh == t5[i].eh && rw == t5[i].ew, "%dx%d -> rc %d %dx%d, expected %dx%d", t5[i].h,
                  t5[i].w, rc, rh, rw, t5[i].eh, t5[i].ew);
    }
}

TEST(resize_matches_reference)
{
    /* One row of 10 samples, all three channels alike, resized in width only;
     * the expected rows come from a pure-Python transcription of PyTorch's
     * _compute_indices_min_size_weights_aa + int16 weights + rounding. */
    static const uint8_t src[10] = { 0, 255, 0, 255, 0, 0, 255, 255, 10, 200 };
    static const uint8_t e4[4] = { 115, 95, 145, 144 };
    static const uint8_t e7[7] = { 92, 117, 165, 0, 217, 156, 129 };
    static const uint8_t e23[23] = { 0, 28, 165, 255, 144, 8, 64, 218, 233, 97, 0, 0, 0, 86, 217, 255, 255, 237, 106,
                                     11, 73, 178, 218 };
    qw_image in = { 10, 1, malloc(30) };
    for (int x = 0; x < 10; x++) memset(in.px + 3 * x, src[x], 3);
    struct { int n; const uint8_t *e; } cs[] = { { 4, e4 }, { 7, e7 }, { 23, e23 } };
    for (int k = 0; k < 3; k++) {
        qw_image o;
        qw_image_resize(&in, 1, cs[k].n, &o);
        for (int x = 0; x < cs[k].n; x++)
            CHECK_MSG(px(&o, x, 0)[0] == cs[k].e[x] && px(&o, x, 0)[2] == cs[k].e[x], "width %d, x %d: %d, expected %d",
                      cs[k].n, x, px(&o, x, 0)[0], cs[k].e[x]);
        qw_image_free(&o);
    }
    /* the same as a column: the height pass uses the same weights */
    qw_image col = { 1, 10, malloc(30) };
    memcpy(col.px, in.px, 30);
    qw_image o;
    qw_image_resize(&col, 7, 1, &o);
    for (int y = 0; y < 7; y++) CHECK(px(&o, 0, y)[1] == e7[y]);
    qw_image_free(&o);
    qw_image_free(&col);
    qw_image_free(&in);
}

TEST(resize_constant_and_identity)
{
    qw_image in = { 37, 23, malloc(37 * 23 * 3) };
    for (int i = 0; i < 37 * 23; i++) in.px[3 * i] = 200, in.px[3 * i + 1] = 3, in.px[3 * i + 2] = 255;
    int sizes[][2] = { { 64, 96 }, { 5, 7 }, { 23, 37 }, { 100, 3 } };
    for (int k = 0; k < 4; k++) {
        qw_image o;
        qw_image_resize(&in, sizes[k][0], sizes[k][1], &o);
        int bad = 0;
        for (int i = 0; i < o.w * o.h; i++) bad += o.px[3 * i] != 200 || o.px[3 * i + 1] != 3 || o.px[3 * i + 2] != 255;
        CHECK_MSG(o.h == sizes[k][0] && o.w == sizes[k][1] && bad == 0, "%dx%d: %d pixels changed", o.w, o.h, bad);
        qw_image_free(&o);
    }
    for (int i = 0; i < 37 * 23 * 3; i++) in.px[i] = (uint8_t)(i * 31);
    qw_image o;
    qw_image_resize(&in, 23, 37, &o);
    CHECK(!memcmp(o.px, in.px, 37 * 23 * 3));
    qw_image_free(&o);
    qw_image_free(&in);
}

TEST(png_layouts)
{
    qw_image im;
    /* RGB 8 */
    write_png(tpath("rgb.png"), 5, 4, PNG_COLOR_TYPE_RGB, 8, f_grad, NULL, 0, NULL, 0, NULL, 0);
    CHECK(qw_image_load(tpath("rgb.png"), &im) == 0 && im.w == 5 && im.h == 4);
    CHECK(px(&im, 3, 2)[0] == f_grad(3, 2, 0) && px(&im, 3, 2)[2] == f_grad(3, 2, 2));
    qw_image_free(&im);
    /* RGBA: alpha dropped, not composited */
    write_png(tpath("rgba.png"), 5, 4, PNG_COLOR_TYPE_RGBA, 8, f_grad, NULL, 0, NULL, 0, NULL, 0);
    CHECK(qw_image_load(tpath("rgba.png"), &im) == 0);
    CHECK(px(&im, 4, 3)[0] == f_grad(4, 3, 0) && px(&im, 4, 3)[1] == f_grad(4, 3, 1) && px(&im, 4, 3)[2] == f_grad(4, 3, 2));
    qw_image_free(&im);
    /* grey + alpha */
    write_png(tpath("ga.png"), 5, 4, PNG_COLOR_TYPE_GRAY_ALPHA, 8, f_grad, NULL, 0, NULL, 0, NULL, 0);
    CHECK(qw_image_load(tpath("ga.png"), &im) == 0);
    CHECK(px(&im, 1, 1)[0] == f_grad(1, 1, 0) && px(&im, 1, 1)[2] == f_grad(1, 1, 0));
    qw_image_free(&im);
    /* 16-bit grey: PIL's I;16, clipped at 255 */
    write_png(tpath("g16.png"), 4, 2, PNG_COLOR_TYPE_GRAY, 16, f_g16, NULL, 0, NULL, 0, NULL, 0);
    CHECK(qw_image_load(tpath("g16.png"), &im) == 0);
    CHECK(px(&im, 0, 0)[0] == 100 && px(&im, 1, 0)[1] == 255 && px(&im, 2, 0)[2] == 255 && px(&im, 3, 1)[0] == 255);
    qw_image_free(&im);
    /* 16-bit RGB: the high byte */
    write_png(tpath("rgb16.png"), 3, 3, PNG_COLOR_TYPE_RGB, 16, f_rgb16, NULL, 0, NULL, 0, NULL, 0);
    CHECK(qw_image_load(tpath("rgb16.png"), &im) == 0);
    CHECK(px(&im, 2, 1)[1] == f_grad(2, 1, 1));
    qw_image_free(&im);
    /* 2-bit grey: scaled by 85 */
    write_png(tpath("g2.png"), 8, 2, PNG_COLOR_TYPE_GRAY, 2, f_g2, NULL, 0, NULL, 0, NULL, 0);
    CHECK(qw_image_load(tpath("g2.png"), &im) == 0);
    CHECK(px(&im, 0, 0)[0] == 0 && px(&im, 1, 0)[0] == 85 && px(&im, 2, 1)[1] == 170 && px(&im, 7, 1)[2] == 255);
    qw_image_free(&im);
    /* palette with transparency: the colours, transparency ignored */
    png_color pal[3] = { { 10, 20, 30 }, { 200, 100, 0 }, { 1, 2, 3 } };
    uint8_t trns[1] = { 0 };
    write_png(tpath("pal.png"), 6, 2, PNG_COLOR_TYPE_PALETTE, 8, f_pal, NULL, 0, pal, 3, trns, 1);
    CHECK(qw_image_load(tpath("pal.png"), &im) == 0);
    CHECK(px(&im, 0, 0)[0] == 10 && px(&im, 0, 0)[2] == 30 && px(&im, 4, 1)[0] == 200 && px(&im, 5, 0)[2] == 3);
    qw_image_free(&im);
#ifdef PNG_eXIf_SUPPORTED
    /* eXIf orientation 6: rotated 90° clockwise, (x, y) ← (y, H−1−x) */
    uint8_t t[32];
    int n = tiff_orientation(t, 6, 0);
    write_png(tpath("ex6.png"), 5, 3, PNG_COLOR_TYPE_RGB, 8, f_pos, t, n, NULL, 0, NULL, 0);
    CHECK(qw_image_load(tpath("ex6.png"), &im) == 0 && im.w == 3 && im.h == 5);
    CHECK(px(&im, 0, 0)[0] == 0 && px(&im, 0, 0)[1] == 2);   /* bottom-left of the original */
    CHECK(px(&im, 2, 4)[0] == 4 && px(&im, 2, 4)[1] == 0);   /* top-right */
    qw_image_free(&im);
#else
    CHECK(1);
#endif
}

static unsigned f_halves(int x, int y, int c) { (void)y; (void)c; return x < 8 ? 0 : 255; }
static unsigned f_flat(int x, int y, int c) { (void)x; (void)y; return c == 0 ? 60 : c == 1 ? 128 : c == 2 ? 0 : 40; }

TEST(jpeg_layouts)
{
    qw_image im;
    write_jpeg(tpath("g.jpg"), 16, 8, 1, f_halves, 0);
    CHECK(qw_image_load(tpath("g.jpg"), &im) == 0 && im.w == 16 && im.h == 8);
    CHECK(px(&im, 1, 1)[0] < 8 && px(&im, 14, 6)[2] > 247 && px(&im, 14, 6)[0] == px(&im, 14, 6)[1]);
    qw_image_free(&im);
    write_jpeg(tpath("rgb.jpg"), 16, 8, 3, f_flat, 0);
    CHECK(qw_image_load(tpath("rgb.jpg"), &im) == 0);
    CHECK(abs(px(&im, 5, 5)[0] - 60) <= 2 && abs(px(&im, 5, 5)[1] - 128) <= 2 && px(&im, 5, 5)[2] <= 2);
    qw_image_free(&im);
    /* CMYK stored inverted (Adobe): raw (60,128,0,40) means c = 195, m =
     * 127, y = 255, k = 215; nk = 40: r = 40 − 40·195/255 ≈ 9, g ≈ 20, b = 0 */
    write_jpeg(tpath("cmyk.jpg"), 16, 8, 4, f_flat, 0);
    CHECK(qw_image_load(tpath("cmyk.jpg"), &im) == 0);
    CHECK_MSG(abs(px(&im, 5, 5)[0] - 9) <= 1 && abs(px(&im, 5, 5)[1] - 20) <= 1 && px(&im, 5, 5)[2] <= 1,
              "cmyk -> %d %d %d", px(&im, 5, 5)[0], px(&im, 5, 5)[1], px(&im, 5, 5)[2]);
    qw_image_free(&im);
    /* EXIF 8 (rotate 90° counter-clockwise): the right half goes on top */
    write_jpeg(tpath("ex8.jpg"), 16, 8, 1, f_halves, 8);
    CHECK(qw_image_load(tpath("ex8.jpg"), &im) == 0 && im.w == 8 && im.h == 16);
    CHECK(px(&im, 3, 2)[0] > 247 && px(&im, 3, 13)[0] < 8);
    qw_image_free(&im);
    /* EXIF 3 (180°), big-endian TIFF */
    write_jpeg(tpath("ex3.jpg"), 16, 8, 1, f_halves, 3);
    CHECK(qw_image_load(tpath("ex3.jpg"), &im) == 0 && im.w == 16 && im.h == 8);
    CHECK(px(&im, 1, 1)[0] > 247 && px(&im, 14, 1)[0] < 8);
    qw_image_free(&im);
}

TEST(bad_input)
{
    qw_image im;
    write_png(tpath("ok.png"), 40, 40, PNG_COLOR_TYPE_RGB, 8, f_grad, NULL, 0, NULL, 0, NULL, 0);
    FILE *fp = fopen(tpath("ok.png"), "rb");
    static uint8_t buf[1 << 17];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    CHECK(qw_image_decode(buf, n / 2, "half.png", &im) == QW_EXIT_DATA && im.px == NULL);
    CHECK(strstr(qw_error_msg(), "'half.png'"));
    buf[n / 2] ^= 0x55;
    CHECK(qw_image_decode(buf, n, "bad.png", &im) == QW_EXIT_DATA);
    CHECK(qw_image_decode(buf, 0, "empty.png", &im) == QW_EXIT_DATA);
    CHECK(qw_image_decode("GIF89a....", 10, "x.gif", &im) == QW_EXIT_DATA && strstr(qw_error_msg(), "unsupported"));
    CHECK(qw_image_load(tpath("missing.png"), &im) == QW_EXIT_DATA && strstr(qw_error_msg(), "no such image"));
    write_jpeg(tpath("t.jpg"), 64, 64, 3, f_grad, 0);
    fp = fopen(tpath("t.jpg"), "rb");
    n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    CHECK(qw_image_decode(buf, n, "t.jpg", &im) == 0);
    qw_image_free(&im);
    CHECK(qw_image_decode(buf, n * 2 / 3, "t.jpg", &im) == QW_EXIT_DATA && strstr(qw_error_msg(), "truncated"));
    CHECK(qw_image_decode(buf, 40, "t.jpg", &im) == QW_EXIT_DATA);
    /* a decompression bomb: the frame header (SOF) declares 20000 × 20000
     * pixels, above PIL's limit: refused before decoding, naming the size */
    size_t sof = 0;
    for (size_t i = 2; i + 8 < n && !sof; i++)
        if (buf[i] == 0xFF && (buf[i + 1] == 0xC0 || buf[i + 1] == 0xC2)) sof = i;
    CHECK(sof > 0);
    buf[sof + 5] = buf[sof + 7] = 20000 >> 8;
    buf[sof + 6] = buf[sof + 8] = 20000 & 0xFF;
    CHECK(qw_image_decode(buf, n, "bomb.jpg", &im) == QW_EXIT_DATA && im.px == NULL);
    CHECK_MSG(strstr(qw_error_msg(), "'bomb.jpg'") && strstr(qw_error_msg(), "20000x20000") &&
                  strstr(qw_error_msg(), "decompression bomb"), "%s", qw_error_msg());
    /* below the limit the header is believed (9000 × 9000): what the data
     * holds is decoded, the rest filled as libjpeg (and PIL) fill it */
    buf[sof + 5] = buf[sof + 7] = 9000 >> 8;
    buf[sof + 6] = buf[sof + 8] = 9000 & 0xFF;
    int rc = qw_image_decode(buf, n, "big.jpg", &im);
    CHECK_MSG(rc == 0 && im.w == 9000 && im.h == 9000, "%d %s", rc, qw_error_msg());
    qw_image_free(&im);
}

TEST(patch_order)
{
    /* 128 × 64 with no resize and no normalisation: each value tells where
     * it came from; the row/column order is the processor's
     * reshape(1,2,3,gh/2,2,16,gw/2,2,16).permute(0,3,6,4,7,2,1,5,8). */
    qw_vision_prep p;
    qw_vision_prep_default(&p);
    p.min_pixels = 1;
    p.max_pixels = 1 << 30;
    p.do_rescale = p.do_normalize = 0;
    qw_image im = { 128, 64, malloc(128 * 64 * 3) };
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 128; x++) {
            uint8_t *q = im.px + ((size_t)y * 128 + x) * 3;
            q[0] = (uint8_t)x, q[1] = (uint8_t)y, q[2] = (uint8_t)(x ^ y);
        }
    float *v;
    int64_t rows, thw[3];
    CHECK(qw_vision_preprocess(&p, &im, "pos", &v, &rows, thw) == 0);
    CHECK(rows == 32 && thw[0] == 1 && thw[1] == 4 && thw[2] == 8);
    int gw = 8, bad = 0;
    for (int r = 0; r < 32; r++)
        for (int col = 0; col < 1536; col++) {
            int mw = r % 2, mh = r / 2 % 2, bw = r / 4 % (gw / 2), bh = r / 4 / (gw / 2);
            int px_ = col % 16, py = col / 16 % 16, c = col / 512;   /* t = col / 256 % 2: the same frame */
            int y = (bh * 2 + mh) * 16 + py, x = (bw * 2 + mw) * 16 + px_;
            float want = c == 0 ? x : c == 1 ? y : (x ^ y);
            bad += v[(size_t)r * 1536 + col] != want;
        }
    CHECK_MSG(bad == 0, "%d values out of place", bad);
    free(v);
    /* Qwen3-VL's normalisation: (v − 127.5) / 127.5 in float32 */
    qw_vision_prep_default(&p);
    p.min_pixels = 1;
    CHECK(qw_vision_preprocess(&p, &im, "pos", &v, &rows, thw) == 0);
    CHECK(v[0] == (0.0f - 127.5f) / 127.5f && v[1] == (1.0f - 127.5f) / 127.5f);
    free(v);
    free(im.px);
}

TEST(prep_config)
{
    qw_vision_prep p;
    CHECK(qw_vision_prep_load(&p, dir) == 0 && p.min_pixels == 65536 && p.max_pixels == 16777216 && p.patch_size == 16);
    FILE *fp = fopen(tpath("preprocessor_config.json"), "w");
    fputs("{\"size\": {\"shortest_edge\": 1000, \"longest_edge\": 5000}, \"max_pixels\": 7000, "
          "\"image_mean\": [0.1, 0.2, 0.3], \"image_std\": 0.25, \"patch_size\": 14}", fp);
    fclose(fp);
    CHECK(qw_vision_prep_load(&p, dir) == 0);
    CHECK(p.min_pixels == 1000 && p.max_pixels == 7000 && p.patch_size == 14 && p.mean[2] == 0.3 && p.std[1] == 0.25);
    fp = fopen(tpath("preprocessor_config.json"), "w");
    fputs("{\"image_std\": [0.5, 0, 0.5]}", fp);
    fclose(fp);
    CHECK(qw_vision_prep_load(&p, dir) == QW_EXIT_DATA);
    fp = fopen(tpath("preprocessor_config.json"), "w");
    fputs("{\"size\": ", fp);
    fclose(fp);
    CHECK(qw_vision_prep_load(&p, dir) == QW_EXIT_DATA);
    unlink(tpath("preprocessor_config.json"));
}

int main(void)
{
    PLAN(8);
    snprintf(dir, sizeof dir, "/tmp/qw_test_image_XXXXXX");
    if (!mkdtemp(dir)) return 1;
    RUN(smart_resize_cases);
    RUN(resize_matches_reference);
    RUN(resize_constant_and_identity);
    RUN(png_layouts);
    RUN(jpeg_layouts);
    RUN(bad_input);
    RUN(patch_order);
    RUN(prep_config);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) return 1;
    return qwtest_finish();
}
