/* picture: heatmaps, histograms, sparklines and error bars (picture.h).
 * Shades are drawn from a table per mode, so that the ASCII form (the one
 * tests and recordings see) says the same thing as the Unicode one. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "picture.h"
#include "print.h"
#include "repl.h"

/* ten ASCII levels read as darker to the eye; five Unicode blocks */
static const char *const k_ascii[] = {" ", ".", ":", "-", "=", "+", "*", "#", "%", "@"};
static const char *const k_shade[] = {" ", "\u2591", "\u2592", "\u2593", "\u2588"};
static const char *const k_spark_u[] = {"\u2581", "\u2582", "\u2583", "\u2584",
                                        "\u2585", "\u2586", "\u2587", "\u2588"};
static const char *const k_spark_a[] = {"_", ".", "-", ":", "=", "+", "*", "#"};

/* the level of |x| / mx in 0..levels-1 */
static int level(double x, double mx, int levels)
{
    if (!isfinite(x) || mx <= 0)
        return 0;
    int l = (int)(fabs(x) / mx * (levels - 1) + 0.5);
    return l < 0 ? 0 : (l >= levels ? levels - 1 : l);
}

/* one cell, cw columns, appended to line at *j */
static void cell(pr_mode mode, double x, double mx, int cw, char *line, size_t size, size_t *j)
{
    for (int k = 0; k < cw && *j + 24 < size; k++) {
        if (isnan(x))
            *j += (size_t)snprintf(line + *j, size - *j, "!");
        else if (mode == PR_COLOR) {
            /* the grayscale ramp of the 256-color palette, 232 (dark) .. 255 */
            int g = 232 + level(x, mx, 24);
            *j += (size_t)snprintf(line + *j, size - *j, "\033[48;5;%dm \033[0m", g);
        } else if (mode == PR_UNICODE)
            *j += (size_t)snprintf(line + *j, size - *j, "%s", k_shade[level(x, mx, 5)]);
        else
            *j += (size_t)snprintf(line + *j, size - *j, "%s", k_ascii[level(x, mx, 10)]);
    }
}

typedef struct heat {
    const float *v;
    int64_t B, R, C, cshow;
    int cw, lw, labw, per_band;
    const char *const *titles, *const *rows;
} heat;

static void heat_band(xf_repl *r, const heat *h, int64_t b0, int64_t b1, double mx, pr_mode mode)
{
    char line[8192], tmp[256];
    int panel = (int)h->cshow * h->cw;
    size_t j = (size_t)snprintf(line, sizeof line, "%*s", h->lw, "");
    for (int64_t b = b0; b < b1; b++) {
        j += (size_t)snprintf(line + j, sizeof line - j, " ");
        j += (size_t)snprintf(line + j, sizeof line - j, "%s",
                              pr_fit(tmp, sizeof tmp, h->titles ? h->titles[b] : "", panel + 2, false));
    }
    while (j > 0 && line[j - 1] == ' ')
        line[--j] = '\0';
    repl_out(r, "%s\n", line);
    j = (size_t)snprintf(line, sizeof line, "%*s", h->lw, "");
    for (int64_t b = b0; b < b1 && j + 200 < sizeof line; b++) {
        j += (size_t)snprintf(line + j, sizeof line - j, "  ");
        for (int64_t c = 0; c < h->cshow && j + 8 < sizeof line; c++)
            j += (size_t)snprintf(line + j, sizeof line - j, "%-*d", h->cw, (int)(c % 10));
        j += (size_t)snprintf(line + j, sizeof line - j, " ");
    }
    while (j > 0 && line[j - 1] == ' ')
        line[--j] = '\0';
    repl_out(r, "%s\n", line);
    for (int64_t i = 0; i < h->R; i++) {
        char lab[64];
        snprintf(tmp, sizeof tmp, "%*lld", h->lw - h->labw - (h->labw ? 1 : 0), (long long)i);
        j = (size_t)snprintf(line, sizeof line, "%s", tmp);
        if (h->labw)
            j += (size_t)snprintf(line + j, sizeof line - j, " %s", pr_fit(lab, sizeof lab, h->rows[i], h->labw, false));
        for (int64_t b = b0; b < b1 && j + 64 < sizeof line; b++) {
            j += (size_t)snprintf(line + j, sizeof line - j, " |");
            for (int64_t c = 0; c < h->cshow; c++)
                cell(mode, h->v[(b * h->R + i) * h->C + c], mx, h->cw, line, sizeof line, &j);
            j += (size_t)snprintf(line + j, sizeof line - j, "|");
        }
        repl_out(r, "%s\n", line);
    }
}

/* the key legend ("0 'ROM'  1 'EO' ...") wrapped at the width */
static void heat_legend(xf_repl *r, const char *const *cols, int64_t n, int width)
{
    char line[1024], item[200];
    size_t j = (size_t)snprintf(line, sizeof line, "  keys:");
    int col = 7;
    for (int64_t c = 0; c < n; c++) {
        snprintf(item, sizeof item, " %lld %s", (long long)c, cols[c]);
        int w = pr_display_width(item, strlen(item));
        if (col + w > width) {
            repl_out(r, "%s\n", line);
            j = (size_t)snprintf(line, sizeof line, "        ");
            col = 8;
        }
        if (j + strlen(item) + 1 < sizeof line)
            j += (size_t)snprintf(line + j, sizeof line - j, "%s", item);
        col += w;
    }
    repl_out(r, "%s\n", line);
}

void pic_heatmap(xf_repl *r, const float *v, int64_t B, int64_t R, int64_t C, const char *const *block_titles,
                 const char *const *row_labels, const char *const *col_labels)
{
    pr_mode mode = pr_picture_mode(r);
    int width = pr_width(r);
    heat h = {.v = v, .B = B, .R = R, .C = C, .titles = block_titles, .rows = row_labels};
    for (int64_t i = 0; row_labels && i < R; i++) {
        int w = pr_display_width(row_labels[i], strlen(row_labels[i]));
        h.labw = w > h.labw ? w : h.labw;
    }
    h.labw = h.labw > 12 ? 12 : h.labw;
    int idx = snprintf(NULL, 0, "%lld", (long long)(R > 0 ? R - 1 : 0));
    h.lw = 2 + idx + (h.labw ? 1 + h.labw : 0); /* two blanks in, as every table */
    /* square-ish cells (two columns) when a head fits so, else one */
    h.cw = h.lw + 1 + 2 * C + 2 <= width ? 2 : 1;
    h.cshow = C;
    if (h.lw + 1 + h.cw * C + 2 > width)
        h.cshow = (width - h.lw - 3) / h.cw > 1 ? (width - h.lw - 3) / h.cw : 1;
    h.per_band = (int)((width - h.lw) / (h.cshow * h.cw + 3));
    if (h.per_band < 1)
        h.per_band = 1;
    double mx = 0;
    for (int64_t i = 0; i < B * R * C; i++)
        if (isfinite(v[i]) && fabs(v[i]) > mx)
            mx = fabs(v[i]);
    for (int64_t b = 0; b < B; b += h.per_band) {
        heat_band(r, &h, b, b + h.per_band < B ? b + h.per_band : B, mx, mode);
        if (b + h.per_band < B)
            repl_out(r, "\n");
    }
    if (h.cshow < C)
        repl_out(r, "  columns %lld..%lld not shown (%d columns wide)\n", (long long)h.cshow, (long long)(C - 1), width);
    if (col_labels)
        heat_legend(r, col_labels, C, width);
    char m[32];
    pr_num(m, sizeof m, mx);
    if (mode == PR_ASCII)
        repl_out(r, "  shade: ' ' 0  . : - = + * # %% @ %s (|value| / the largest shown)\n", m);
    else if (mode == PR_UNICODE)
        repl_out(r, "  shade: ' ' 0  \u2591 \u2592 \u2593 \u2588 %s (|value| / the largest shown)\n", m);
    else
        repl_out(r, "  shade: dark 0 .. bright %s (|value| / the largest shown)\n", m);
}

static void spark(xf_repl *r, const int64_t *count, int bins, int64_t top, pr_mode mode)
{
    char line[512];
    size_t j = (size_t)snprintf(line, sizeof line, "  spark |");
    for (int b = 0; b < bins && j + 8 < sizeof line; b++) {
        int l = top ? (int)((double)count[b] / (double)top * 7 + 0.5) : 0;
        if (count[b] == 0)
            j += (size_t)snprintf(line + j, sizeof line - j, " ");
        else
            j += (size_t)snprintf(line + j, sizeof line - j, "%s", mode == PR_ASCII ? k_spark_a[l] : k_spark_u[l]);
    }
    repl_out(r, "%s|\n", line);
}

void pic_hist(xf_repl *r, const float *v, int64_t n)
{
    enum { BINS = 16 };
    double lo = INFINITY, hi = -INFINITY;
    int64_t count[BINS] = {0}, n_nan = 0, n_inf = 0, top = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isfinite(v[i])) {
            lo = v[i] < lo ? v[i] : lo;
            hi = v[i] > hi ? v[i] : hi;
        } else if (isnan(v[i]))
            n_nan++;
        else
            n_inf++;
    }
    if (!(lo <= hi)) {
        repl_out(r, "  histogram: no finite values (nan %lld, inf %lld)\n", (long long)n_nan, (long long)n_inf);
        return;
    }
    double step = (hi - lo) / BINS;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(v[i]))
            continue;
        int b = step > 0 ? (int)((v[i] - lo) / step) : 0;
        count[b >= BINS ? BINS - 1 : b]++;
    }
    for (int b = 0; b < BINS; b++)
        top = count[b] > top ? count[b] : top;
    pr_mode mode = pr_picture_mode(r);
    int bar = pr_width(r) - 40;
    bar = bar < 8 ? 8 : (bar > 100 ? 100 : bar);
    repl_out(r, "  histogram of %lld finite values, %d bins:\n", (long long)(n - n_nan - n_inf), BINS);
    for (int b = 0; b < BINS; b++) {
        char a[32], z[32], line[1024];
        pr_short(a, sizeof a, lo + b * step);
        pr_short(z, sizeof z, b == BINS - 1 ? hi : lo + (b + 1) * step);
        int len = top ? (int)((double)count[b] / (double)top * bar + 0.5) : 0;
        if (count[b] > 0 && len == 0)
            len = 1; /* a bin that holds anything shows */
        size_t j = 0;
        for (int k = 0; k < len && j + 4 < sizeof line; k++)
            j += (size_t)snprintf(line + j, sizeof line - j, "%s", mode == PR_ASCII ? "#" : "\u2588");
        line[j] = '\0';
        repl_out(r, "  %10s .. %-10s %9lld %s\n", a, z, (long long)count[b], line);
    }
    spark(r, count, BINS, top, mode);
    if (n_nan || n_inf)
        repl_out(r, "  not shown: nan %lld, inf %lld\n", (long long)n_nan, (long long)n_inf);
}

void pic_err_bar(xf_repl *r, char *buf, size_t size, double err, double tol, int width)
{
    pr_mode mode = pr_picture_mode(r);
    /* six decades, 1e-5 .. 10 times the tolerance; the tolerance at 5/6 */
    int mark = width * 5 / 6, fill = 0;
    if (!isfinite(err))
        fill = width;
    else if (err > 0 && tol > 0) {
        double f = (log10(err / tol) + 5) / 6 * width;
        fill = f < 1 ? 1 : (f > width ? width : (int)(f + 0.5));
    } else if (err > 0)
        fill = width;
    size_t j = 0;
    const char *full = mode == PR_ASCII ? "#" : "\u2588";
    for (int k = 0; k < width && j + 4 < size; k++) {
        const char *c = k < fill ? full : (k == mark ? "|" : (mode == PR_ASCII ? "." : "\u00b7"));
        j += (size_t)snprintf(buf + j, size - j, "%s", c);
    }
    if (size)
        buf[j < size ? j : size - 1] = '\0';
}
