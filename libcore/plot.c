/* plot.c — figures as SVG and PNG (qw/plot.h). */
#include "qw/plot.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qw/buf.h"
#include "qw/cli.h"
#include "qw/file.h"

enum { LINE, RECT, POLY, TEXT };

typedef struct {
    int kind, width, anchor, n;
    uint32_t colour;
    double x1, y1, x2, y2;   /* LINE ends; RECT x, y, w, h; TEXT x, y */
    double *px, *py;         /* POLY */
    char *text;
} item;

struct qw_fig {
    int w, h;
    item *it;
    int n, cap;
};

qw_fig *qw_fig_new(int width, int height)
{
    qw_fig *f = qw_calloc(1, sizeof *f);
    f->w = width, f->h = height;
    return f;
}

void qw_fig_free(qw_fig *f)
{
    if (!f) return;
    for (int i = 0; i < f->n; i++) free(f->it[i].px), free(f->it[i].py), free(f->it[i].text);
    free(f->it);
    free(f);
}

static item *add(qw_fig *f, int kind, uint32_t colour)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 64;
        f->it = qw_realloc(f->it, f->cap * sizeof *f->it);
    }
    item *it = &f->it[f->n++];
    memset(it, 0, sizeof *it);
    it->kind = kind, it->colour = colour;
    return it;
}

void qw_fig_line(qw_fig *f, double x1, double y1, double x2, double y2, uint32_t colour, int width)
{
    item *it = add(f, LINE, colour);
    it->x1 = x1, it->y1 = y1, it->x2 = x2, it->y2 = y2, it->width = width;
}

void qw_fig_rect(qw_fig *f, double x, double y, double w, double h, uint32_t colour)
{
    item *it = add(f, RECT, colour);
    it->x1 = x, it->y1 = y, it->x2 = w, it->y2 = h;
}

void qw_fig_polyline(qw_fig *f, const double *x, const double *y, int n, uint32_t colour, int width)
{
    item *it = add(f, POLY, colour);
    it->n = n, it->width = width;
    it->px = qw_malloc((n ? n : 1) * sizeof *it->px), it->py = qw_malloc((n ? n : 1) * sizeof *it->py);
    memcpy(it->px, x, n * sizeof *x), memcpy(it->py, y, n * sizeof *y);
}

void qw_fig_text(qw_fig *f, double x, double y, const char *text, int anchor, uint32_t colour)
{
    item *it = add(f, TEXT, colour);
    it->x1 = x, it->y1 = y, it->anchor = anchor, it->text = qw_strdup(text);
}

/* ---- SVG ---- */

static void xml_text(FILE *o, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", o); break;
        case '<': fputs("&lt;", o); break;
        case '>': fputs("&gt;", o); break;
        case '"': fputs("&quot;", o); break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t') fputc(*s, o);
        }
    }
}

int qw_fig_svg(const qw_fig *f, const char *path)
{
    qw_afile af;
    int rc = qw_afile_open(path, &af);
    if (rc) return rc;
    FILE *o = af.f;
    fprintf(o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n", f->w, f->h, f->w, f->h);
    fprintf(o, "<rect width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", f->w, f->h);
    for (int i = 0; i < f->n; i++) {
        const item *it = &f->it[i];
        switch (it->kind) {
        case LINE:
            fprintf(o, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#%06x\" stroke-width=\"%d\"/>\n",
                    it->x1, it->y1, it->x2, it->y2, it->colour, it->width);
            break;
        case RECT:
            fprintf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#%06x\"/>\n", it->x1, it->y1,
                    it->x2, it->y2, it->colour);
            break;
        case POLY:
            fputs("<polyline points=\"", o);
            for (int k = 0; k < it->n; k++) fprintf(o, "%s%.1f,%.1f", k ? " " : "", it->px[k], it->py[k]);
            fprintf(o, "\" fill=\"none\" stroke=\"#%06x\" stroke-width=\"%d\" stroke-linejoin=\"round\"/>\n", it->colour,
                    it->width);
            break;
        case TEXT:
            fprintf(o, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\" fill=\"#%06x\">", it->x1, it->y1,
                    it->anchor < 0 ? "start" : it->anchor ? "end" : "middle", it->colour);
            xml_text(o, it->text);
            fputs("</text>\n", o);
            break;
        }
    }
    fputs("</svg>\n", o);
    if (ferror(o)) {
        qw_afile_abort(&af);
        return qw_error(QW_EXIT_FAIL, "'%s': write error", path);
    }
    return qw_afile_commit(&af);
}

/* ---- PNG ---- */

/* 3×5 glyphs, rows top to bottom, '#' set */
static const struct { char c; const char *rows; } font[] = {
    {'0', "####.##.##.####"}, {'1', ".#.##..#..#.###"}, {'2', "###..#####..###"}, {'3', "###..####..####"},
    {'4', "#.##.####..#..#"}, {'5', "####..###..####"}, {'6', "####..####.####"}, {'7', "###..#..#.#..#."},
    {'8', "####.#####.####"}, {'9', "####.####..####"},
    {'A', ".#.#.#####.##.#"}, {'B', "##.#.###.#.###."}, {'C', ".###..#..#...##"}, {'D', "##.#.##.##.###."},
    {'E', "####..##.#..###"}, {'F', "####..##.#..#.."}, {'G', ".###..#.##.#.##"}, {'H', "#.##.#####.##.#"},
    {'I', "###.#..#..#.###"}, {'J', "..#..#..##.#.#."}, {'K', "#.##.###.#.##.#"}, {'L', "#..#..#..#..###"},
    {'M', "#.########.##.#"}, {'N', "##.#.##.##.##.#"}, {'O', ".#.#.##.##.#.#."}, {'P', "##.#.###.#..#.."},
    {'Q', ".#.#.##.###..##"}, {'R', "##.#.###.#.##.#"}, {'S', ".###...#...###."}, {'T', "###.#..#..#..#."},
    {'U', "#.##.##.##.####"}, {'V', "#.##.##.##.#.#."}, {'W', "#.##.########.#"}, {'X', "#.##.#.#.#.##.#"},
    {'Y', "#.##.#.#..#..#."}, {'Z', "###..#.#.#..###"},
    {'.', ".............#."}, {',', "..........#.#.."}, {'-', "......###......"}, {'+', "....#.###.#...."},
    {'_', "............###"}, {':', "....#.....#...."}, {'/', "..#..#.#.#..#.."}, {'(', ".#.#..#..#...#."},
    {')', ".#...#..#..#.#."}, {'%', "#.#..#.#.#..#.#"}, {'=', "...###...###..."}, {' ', "..............."},
};

static const char *glyph(char c)
{
    if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
    for (size_t i = 0; i < sizeof font / sizeof *font; i++)
        if (font[i].c == c) return font[i].rows;
    return "###############";
}

enum { SCALE = 2, ADVANCE = 4 * SCALE };

typedef struct {
    unsigned char *px;
    int w, h;
} canvas;

static void dot(canvas *c, int x, int y, uint32_t col)
{
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    unsigned char *p = c->px + ((size_t)y * c->w + x) * 3;
    p[0] = (unsigned char)(col >> 16), p[1] = (unsigned char)(col >> 8), p[2] = (unsigned char)col;
}

static void fill(canvas *c, double x, double y, double w, double h, uint32_t col)
{
    for (int j = (int)lround(y); j < (int)lround(y + h); j++)
        for (int i = (int)lround(x); i < (int)lround(x + w); i++) dot(c, i, j, col);
}

static void segment(canvas *c, double fx1, double fy1, double fx2, double fy2, uint32_t col, int width)
{
    int x1 = (int)lround(fx1), y1 = (int)lround(fy1), x2 = (int)lround(fx2), y2 = (int)lround(fy2);
    int dx = abs(x2 - x1), dy = -abs(y2 - y1), sx = x1 < x2 ? 1 : -1, sy = y1 < y2 ? 1 : -1, err = dx + dy;
    int lo = -(width - 1) / 2, hi = width / 2;
    for (;;) {
        for (int a = lo; a <= hi; a++)
            for (int b = lo; b <= hi; b++) dot(c, x1 + a, y1 + b, col);
        if (x1 == x2 && y1 == y2) break;
        int e2 = 2 * err;
        if (e2 >= dy) err += dy, x1 += sx;
        if (e2 <= dx) err += dx, y1 += sy;
    }
}

static void text(canvas *c, const item *it)
{
    int len = (int)strlen(it->text), w = len * ADVANCE - SCALE;
    double x = it->x1 - (it->anchor < 0 ? 0 : it->anchor ? w : w / 2.0);
    int x0 = (int)lround(x), y0 = (int)lround(it->y1) - 5 * SCALE + 1;
    for (int k = 0; k < len; k++) {
        const char *g = glyph(it->text[k]);
        for (int r = 0; r < 5; r++)
            for (int q = 0; q < 3; q++)
                if (g[r * 3 + q] == '#') fill(c, x0 + k * ADVANCE + q * SCALE, y0 + r * SCALE, SCALE, SCALE, it->colour);
    }
}

int qw_fig_png(const qw_fig *f, const char *path)
{
    canvas c = {qw_malloc((size_t)f->w * f->h * 3), f->w, f->h};
    memset(c.px, 0xff, (size_t)f->w * f->h * 3);
    for (int i = 0; i < f->n; i++) {
        const item *it = &f->it[i];
        switch (it->kind) {
        case LINE: segment(&c, it->x1, it->y1, it->x2, it->y2, it->colour, it->width); break;
        case RECT: fill(&c, it->x1, it->y1, it->x2, it->y2, it->colour); break;
        case POLY:
            for (int k = 0; k + 1 < it->n; k++)
                segment(&c, it->px[k], it->py[k], it->px[k + 1], it->py[k + 1], it->colour, it->width);
            if (it->n == 1) segment(&c, it->px[0], it->py[0], it->px[0], it->py[0], it->colour, it->width + 2);
            break;
        case TEXT: text(&c, it); break;
        }
    }
    qw_afile af;
    int rc = qw_afile_open(path, &af);
    if (rc) { free(c.px); return rc; }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_bytep *rows = qw_malloc((size_t)f->h * sizeof *rows);
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(rows), free(c.px);
        qw_afile_abort(&af);
        return qw_error(QW_EXIT_FAIL, "'%s': cannot write the PNG", path);
    }
    png_init_io(png, af.f);
    png_set_IHDR(png, info, (png_uint_32)f->w, (png_uint_32)f->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    for (int y = 0; y < f->h; y++) rows[y] = c.px + (size_t)y * f->w * 3;
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows), free(c.px);
    return qw_afile_commit(&af);
}

/* ---- metrics figures ---- */

static const uint32_t palette[] = {0x1f77b4, 0xd62728, 0x2ca02c, 0xff7f0e, 0x9467bd, 0x8c564b, 0xe377c2, 0x17becf};

/* Ticks 1, 2 or 5 × 10^k apart, about five over [lo, hi], the range widened to whole ticks. */
static double nice_step(double *lo, double *hi)
{
    if (!(*hi > *lo)) {
        double d = *lo ? fabs(*lo) * 0.1 : 1;
        *lo -= d, *hi += d;
    }
    double raw = (*hi - *lo) / 5, p = pow(10, floor(log10(raw))), m = raw / p;
    double step = (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
    *lo = floor(*lo / step + 1e-9) * step, *hi = ceil(*hi / step - 1e-9) * step;
    return step;
}

static void tick_label(char *buf, size_t n, double v, double step)
{
    if (fabs(v) < step * 1e-6) v = 0;
    double a = fabs(v) > step ? fabs(v) : step;
    if (a >= 1e6 || step < 1e-4) snprintf(buf, n, "%.3g", v);
    else {
        int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        snprintf(buf, n, "%.*f", dec, v);
    }
}

enum { PW = 440, PH = 260, ML = 66, MR = 16, MT = 30, MB = 36, TOP = 40 };

qw_fig *qw_plot_metrics(const qw_plot_run *runs, int nruns, const char *const *keys, int nkeys, const char *title)
{
    int cols = nkeys > 1 ? 2 : 1, rows = (nkeys + cols - 1) / cols;
    qw_fig *f = qw_fig_new(cols * PW, TOP + rows * PH);
    /* title and legend */
    double lx = 12;
    if (title) {
        qw_fig_text(f, 12, 22, title, -1, 0x000000);
        lx += 8 * (double)strlen(title) + 24;
    }
    for (int r = 0; r < nruns; r++) {
        uint32_t col = palette[r % 8];
        qw_fig_line(f, lx, 17, lx + 22, 17, col, 3);
        qw_fig_text(f, lx + 28, 22, runs[r].label, -1, 0x000000);
        lx += 28 + 8 * (double)strlen(runs[r].label) + 20;
    }
    double *px = NULL, *py = NULL;
    int pcap = 0;
    for (int k = 0; k < nkeys; k++) {
        double ox = (k % cols) * PW, oy = TOP + (k / cols) * PH;
        double x0 = ox + ML, x1 = ox + PW - MR, y0 = oy + MT, y1 = oy + PH - MB;
        /* data ranges */
        double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
        for (int r = 0; r < nruns; r++)
            for (int i = 0; i < runs[r].n; i++) {
                double v = runs[r].val[k][i];
                if (isnan(v)) continue;
                xlo = fmin(xlo, runs[r].step[i]), xhi = fmax(xhi, runs[r].step[i]);
                ylo = fmin(ylo, v), yhi = fmax(yhi, v);
            }
        qw_fig_text(f, (x0 + x1) / 2, oy + 20, keys[k], 0, 0x000000);
        if (xlo > xhi) {   /* no values: an empty frame */
            xlo = 0, xhi = 1, ylo = 0, yhi = 1;
        }
        double xs = nice_step(&xlo, &xhi), ys = nice_step(&ylo, &yhi);
        char lab[48];
        for (double t = ylo; t <= yhi + ys * 1e-6; t += ys) {
            double y = y1 - (t - ylo) / (yhi - ylo) * (y1 - y0);
            qw_fig_line(f, x0, y, x1, y, 0xe6e6e6, 1);
            qw_fig_line(f, x0 - 4, y, x0, y, 0x000000, 1);
            tick_label(lab, sizeof lab, t, ys);
            qw_fig_text(f, x0 - 7, y + 4, lab, 1, 0x333333);
        }
        for (double t = xlo; t <= xhi + xs * 1e-6; t += xs) {
            double x = x0 + (t - xlo) / (xhi - xlo) * (x1 - x0);
            qw_fig_line(f, x, y1, x, y1 + 4, 0x000000, 1);
            tick_label(lab, sizeof lab, t, xs);
            qw_fig_text(f, x, y1 + 17, lab, 0, 0x333333);
        }
        qw_fig_text(f, x1, y1 + 31, "step", 1, 0x555555);
        qw_fig_line(f, x0, y0, x0, y1, 0x000000, 1);
        qw_fig_line(f, x0, y1, x1, y1, 0x000000, 1);
        for (int r = 0; r < nruns; r++) {
            int n = 0;
            if (runs[r].n > pcap) {
                pcap = runs[r].n;
                px = qw_realloc(px, pcap * sizeof *px), py = qw_realloc(py, pcap * sizeof *py);
            }
            for (int i = 0; i < runs[r].n; i++) {
                double v = runs[r].val[k][i];
                if (isnan(v)) continue;
                px[n] = x0 + (runs[r].step[i] - xlo) / (xhi - xlo) * (x1 - x0);
                py[n] = y1 - (v - ylo) / (yhi - ylo) * (y1 - y0);
                n++;
            }
            if (n) qw_fig_polyline(f, px, py, n, palette[r % 8], 2);
        }
    }
    free(px), free(py);
    return f;
}
