/* picture: owns the pictures drawn in the terminal: the heatmap of a
 * matrix (attention: one head, or every head as a grid), the histogram and
 * sparkline of a tensor's values, and the error bar of a `compare` row.
 * Three modes (print.h pr_picture_mode): plain ASCII (NO_COLOR, TERM=dumb,
 * a non-UTF-8 locale; what tests and recordings see), Unicode shades, and
 * 256-color cells on a terminal. Every picture fits pr_width columns. */
#ifndef XF_PICTURE_H
#define XF_PICTURE_H

#include <stddef.h>
#include <stdint.h>

typedef struct xf_repl xf_repl;

/* A heatmap of B matrices [R, C] (v holds B*R*C values), side by side as
 * many as fit, titled block_title(b) ("head 3"). row_labels[R] and
 * col_labels[C] (already escaped text, e.g. quoted token pieces) may be
 * NULL: then indices. Shade = value / the largest value shown (negative
 * values by magnitude). */
void pic_heatmap(xf_repl *r, const float *v, int64_t B, int64_t R, int64_t C, const char *const *block_titles,
                 const char *const *row_labels, const char *const *col_labels);
/* The histogram of the finite values of v[n] in bins, then a sparkline. */
void pic_hist(xf_repl *r, const float *v, int64_t n);
/* A bar of width columns for err/tol on a log scale (1e-5 .. 10), with the
 * tolerance marked: the chart column of `compare`. */
void pic_err_bar(xf_repl *r, char *buf, size_t size, double err, double tol, int width);

#endif
