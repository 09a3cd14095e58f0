/* qw/plot.h — figures of training metrics, as SVG and PNG, with no
 * plotting library.
 *
 * A figure is a list of drawing items (lines, polylines, filled
 * rectangles, text) in pixel coordinates, origin top left.  The same list
 * is written as SVG text (qw_fig_svg) or rasterised into an RGB image and
 * written through libpng (qw_fig_png): lines by Bresenham's algorithm,
 * `width` pixels wide, and text in a built-in 3×5 bitmap font drawn at
 * twice its size (digits, letters as capitals, and . , - + _ : / ( ) % =
 * and space; other characters as a box).
 *
 * qw_plot_metrics lays out one panel per key (two columns when there are
 * several), step on x, the key's values on y, "nice" ticks (1, 2 or 5
 * times a power of ten) labelled on both axes, one polyline per run that
 * has values of the key (records without it are skipped), and a legend of
 * the runs' colours on top.
 *
 * Errors: 0 or QW_EXIT_FAIL naming the file (qw/cli.h).
 */
#ifndef QW_PLOT_H
#define QW_PLOT_H

#include <stdint.h>

typedef struct qw_fig qw_fig;

qw_fig *qw_fig_new(int width, int height);
void qw_fig_free(qw_fig *f);
/* colour 0xRRGGBB */
void qw_fig_line(qw_fig *f, double x1, double y1, double x2, double y2, uint32_t colour, int width);
void qw_fig_rect(qw_fig *f, double x, double y, double w, double h, uint32_t colour);
/* n points x[i], y[i] */
void qw_fig_polyline(qw_fig *f, const double *x, const double *y, int n, uint32_t colour, int width);
/* anchor: -1 start, 0 middle, 1 end; y is the text's baseline */
void qw_fig_text(qw_fig *f, double x, double y, const char *text, int anchor, uint32_t colour);
int qw_fig_svg(const qw_fig *f, const char *path);
int qw_fig_png(const qw_fig *f, const char *path);

/* A run: its legend label and its steps and values, per key. */
typedef struct {
    const char *label;
    int n;                  /* records */
    const double *step;     /* [n] */
    const double *const *val;   /* val[k][i]: key k of record i, NAN when absent */
} qw_plot_run;

/* Lay out the figure for keys[0..nkeys) over runs[0..nruns). */
qw_fig *qw_plot_metrics(const qw_plot_run *runs, int nruns, const char *const *keys, int nkeys, const char *title);

#endif
