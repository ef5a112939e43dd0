/* shape: a selection printed by its shape (see shape.h). A matrix keeps
 * its rows: a 10x10 attention map reads as ten rows of ten, not as one
 * wrapped line of a hundred numbers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "print.h"
#include "repl.h"
#include "shape.h"
#include "view.h"

/* Head ... tail: the indices of 0..n-1 to show when at most keep fit, -1
 * where the rest are elided. out has room for keep + 1; returns the count. */
static int64_t pick(int64_t n, int64_t keep, int64_t *out)
{
    if (keep < 1)
        keep = 1;
    int64_t k = 0;
    if (n <= keep) {
        for (int64_t i = 0; i < n; i++)
            out[k++] = i;
        return k;
    }
    int64_t head = (keep + 1) / 2, tail = keep - head;
    for (int64_t i = 0; i < head; i++)
        out[k++] = i;
    out[k++] = -1;
    for (int64_t i = n - tail; i < n; i++)
        out[k++] = i;
    return k;
}

static int digits(int64_t v)
{
    int d = 1;
    while (v >= 10) {
        v /= 10;
        d++;
    }
    return d;
}

int shape_gather_all(xf_repl *r, const repl_view *v, const xf_selection *sel, float **out, xf_err *err)
{
    int64_t n = sel->count;
    float *vals = malloc((size_t)(n ? n : 1) * sizeof(float));
    int64_t *idx = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    int rc = -1;
    if (!vals || !idx)
        xf_err_set(err, "out of memory for %lld values", (long long)n);
    else {
        for (int64_t k = 0; k < n; k++)
            idx[k] = tensor_selection_index(sel, k);
        rc = view_gather(r, v, idx, n, vals, err);
    }
    free(idx);
    if (rc != 0) {
        free(vals);
        vals = NULL;
    }
    *out = vals;
    return rc;
}

/* the values at selection positions ks[0..n): from all, or gathered */
static float *values_at(xf_repl *r, const repl_view *v, const xf_selection *sel, const float *all,
                        const int64_t *ks, int64_t n, xf_err *err)
{
    float *vals = malloc((size_t)(n ? n : 1) * sizeof(float));
    int64_t *idx = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    int rc = -1;
    if (!vals || !idx)
        xf_err_set(err, "out of memory");
    else if (all) {
        for (int64_t i = 0; i < n; i++)
            vals[i] = all[ks[i]];
        rc = 0;
    } else {
        for (int64_t i = 0; i < n; i++)
            idx[i] = tensor_selection_index(sel, ks[i]);
        rc = view_gather(r, v, idx, n, vals, err);
    }
    free(idx);
    if (rc != 0) {
        free(vals);
        return NULL;
    }
    return vals;
}

/* a vector: the first n values, as it always printed, wrapped at the width */
static int print_vector(xf_repl *r, const repl_view *v, const xf_selection *sel, const float *all, long n,
                        xf_err *err)
{
    int64_t show = n < 0 ? 8 : n;
    if (show > sel->count)
        show = sel->count;
    int64_t *ks = malloc((size_t)(show ? show : 1) * sizeof(int64_t));
    if (!ks)
        return xf_err_set(err, "out of memory");
    for (int64_t i = 0; i < show; i++)
        ks[i] = i;
    float *vals = values_at(r, v, sel, all, ks, show, err);
    free(ks);
    if (!vals)
        return -1;
    if (show < sel->count)
        repl_out(r, "  first %lld of %lld:\n", (long long)show, (long long)sel->count);
    pr_values(r, vals, show, false);
    free(vals);
    return 0;
}

typedef struct grid {
    int64_t B, R, C;          /* blocks (leading dims flattened), rows, columns */
    int64_t *bs, *rs, *cs;    /* picks (-1: elided) */
    int64_t nb, nr, nc;
    int ew;                   /* the width of the elided column ("...", or "..191" with nothing after it) */
    float *vals;              /* [nb][nr][nc] of the picks (elided entries unset) */
    pr_cellfmt fmt;
} grid;

static void grid_free(grid *g)
{
    free(g->bs);
    free(g->rs);
    free(g->cs);
    free(g->vals);
}

/* the columns of data that fit the width at the chosen cell width: all
 * `shown` of them, or fit - 1 around the elision column */
static int64_t grid_columns_fit(xf_repl *r, const grid *g, int label, int64_t shown, int *cw)
{
    *cw = g->fmt.width > digits(g->C - 1) ? g->fmt.width : digits(g->C - 1);
    int64_t fit = (pr_width(r) - label) / (*cw + 1);
    if (shown <= fit)
        return shown;
    return fit - 1 < 1 ? 1 : fit - 1;
}

/* picks blocks, rows and columns for at most `cols` columns (n: the -n
 * budget or -1) and reads their values */
static int grid_pick(xf_repl *r, const repl_view *v, const xf_selection *sel, const float *all, long n,
                     int64_t cols, grid *g, xf_err *err)
{
    int64_t shown_c = cols < g->C ? cols : g->C;
    int64_t rows = n > 0 ? n / shown_c : (g->R <= 12 ? g->R : 10);
    int64_t nshow_r = rows < g->R ? rows : g->R;
    int64_t blocks = n > 0 ? n / (shown_c * (nshow_r ? nshow_r : 1)) : 4;
    g->bs = malloc((size_t)(blocks + 2) * sizeof(int64_t));
    g->rs = malloc((size_t)(rows + 2) * sizeof(int64_t));
    g->cs = malloc((size_t)(cols + 2) * sizeof(int64_t));
    if (!g->bs || !g->rs || !g->cs)
        return xf_err_set(err, "out of memory");
    g->nb = pick(g->B, blocks, g->bs);
    g->nr = pick(g->R, rows, g->rs);
    g->nc = pick(g->C, cols, g->cs);
    int64_t cells = g->nb * g->nr * g->nc, k = 0;
    int64_t *ks = malloc((size_t)(cells ? cells : 1) * sizeof(int64_t));
    if (!ks)
        return xf_err_set(err, "out of memory");
    for (int64_t b = 0; b < g->nb; b++)
        for (int64_t i = 0; i < g->nr; i++)
            for (int64_t j = 0; j < g->nc; j++) {
                int64_t bb = g->bs[b] < 0 ? 0 : g->bs[b], ii = g->rs[i] < 0 ? 0 : g->rs[i];
                int64_t jj = g->cs[j] < 0 ? 0 : g->cs[j];
                ks[k++] = (bb * g->R + ii) * g->C + jj;
            }
    g->vals = values_at(r, v, sel, all, ks, cells, err);
    free(ks);
    if (!g->vals)
        return -1;
    pr_cellfmt_choose(&g->fmt, g->vals, cells);
    return 0;
}

/* chooses the blocks, rows and columns to show and reads their values. With
 * -n N at most N values: the rows (and blocks) are what N leaves after the
 * columns the width shows, so the columns are planned again once the cell
 * width is known (the values decide it) when fewer fit than were asked. */
static int grid_plan(xf_repl *r, const repl_view *v, const xf_selection *sel, const float *all, long n,
                     grid *g, xf_err *err)
{
    int nd = sel->out_ndim;
    g->B = 1;
    for (int i = 0; i < nd - 2; i++)
        g->B *= sel->out_shape[i];
    g->R = sel->out_shape[nd - 2];
    g->C = sel->out_shape[nd - 1];
    int label = 2 + digits(g->R > 0 ? g->R - 1 : 0) + 2, cw;
    /* at most as many columns as the narrowest cells (1 wide + a blank) fit */
    int64_t cols = (pr_width(r) - label) / 2;
    if (cols < 1)
        cols = 1;
    if (n > 0 && cols > n)
        cols = n;
    for (int round = 0;; round++) {
        if (grid_pick(r, v, sel, all, n, cols, g, err) != 0)
            return -1;
        int64_t shown = cols < g->C ? cols : g->C;
        int64_t fit = grid_columns_fit(r, g, label, shown, &cw);
        if (n <= 0 || fit >= shown || round == 2)
            return 0;
        grid_free(g);
        g->bs = g->rs = g->cs = NULL;
        g->vals = NULL;
        cols = fit;
    }
}

/* keeps the columns that fit the width at the chosen cell width: the first
 * and last of the picks, around one elision column */
static void grid_fit_columns(xf_repl *r, grid *g, int label, int *cw)
{
    int64_t shown = 0;
    for (int64_t j = 0; j < g->nc; j++)
        shown += g->cs[j] >= 0;
    int64_t keep = grid_columns_fit(r, g, label, shown, cw);
    if (keep >= shown)
        return;
    int64_t head = (keep + 1) / 2, tail = keep - head;
    int64_t *cs = malloc((size_t)(keep + 1) * sizeof(int64_t)), k = 0;
    float *vals = malloc((size_t)(g->nb * g->nr * (keep + 1)) * sizeof(float));
    if (!cs || !vals) {
        free(cs);
        free(vals);
        return; /* best effort: the wider rows still say everything */
    }
    int64_t *from = malloc((size_t)(keep + 1) * sizeof(int64_t));
    if (!from) {
        free(cs);
        free(vals);
        return;
    }
    for (int64_t j = 0; j < head; j++)
        from[k] = j, cs[k++] = g->cs[j];
    from[k] = -1, cs[k++] = -1;
    for (int64_t j = g->nc - tail; j < g->nc; j++)
        from[k] = j, cs[k++] = g->cs[j];
    for (int64_t bi = 0; bi < g->nb * g->nr; bi++)
        for (int64_t j = 0; j < k; j++)
            vals[bi * k + j] = from[j] >= 0 ? g->vals[bi * g->nc + from[j]] : 0;
    free(from);
    free(g->cs);
    free(g->vals);
    g->cs = cs;
    g->vals = vals;
    g->nc = k;
}

/* "[2]" or "[0, 3]": the leading indices of block b of the output shape */
static void block_label(const xf_selection *sel, int64_t b, char *buf, size_t size)
{
    int lead = sel->out_ndim - 2;
    pr_index(buf, size, b, lead, sel->out_shape);
}

static void print_row(xf_repl *r, const grid *g, int64_t b, int64_t i, int lw, int cw)
{
    char line[4096], cell[64], lab[32];
    size_t j = 0;
    snprintf(lab, sizeof lab, "[%lld]", (long long)g->rs[i]);
    j += (size_t)snprintf(line + j, sizeof line - j, "  %*s", lw, lab);
    for (int64_t c = 0; c < g->nc && j < sizeof line - 80; c++) {
        if (g->cs[c] < 0)
            snprintf(cell, sizeof cell, "...");
        else
            pr_cell(cell, sizeof cell, g->vals[(b * g->nr + i) * g->nc + c], &g->fmt);
        j += (size_t)snprintf(line + j, sizeof line - j, " %*s", g->cs[c] < 0 ? g->ew : cw, cell);
    }
    repl_out(r, "%s\n", line);
}

/* the first and last index that the elision at picks[k] stands for */
static void elided(const int64_t *picks, int64_t np, int64_t k, int64_t count, int64_t *lo, int64_t *hi)
{
    *lo = k > 0 ? picks[k - 1] + 1 : 0;
    *hi = k + 1 < np ? picks[k + 1] - 1 : count - 1;
}

/* "  ... (rows 1..9 not shown)" under the rows' labels */
static void say_rows_elided(xf_repl *r, const grid *g, int64_t i, int lw)
{
    int64_t lo, hi;
    elided(g->rs, g->nr, i, g->R, &lo, &hi);
    if (lo == hi)
        repl_out(r, "  %*s (row %lld not shown)\n", lw, "...", (long long)lo);
    else
        repl_out(r, "  %*s (rows %lld..%lld not shown)\n", lw, "...", (long long)lo, (long long)hi);
}

/* "  ... ([1, :, :] .. [4, :, :] not shown)" */
static void say_blocks_elided(xf_repl *r, const grid *g, const xf_selection *sel, int64_t b)
{
    int64_t lo, hi;
    char a[64], z[64];
    elided(g->bs, g->nb, b, g->B, &lo, &hi);
    block_label(sel, lo, a, sizeof a);
    block_label(sel, hi, z, sizeof z);
    a[strlen(a) - 1] = z[strlen(z) - 1] = '\0';
    if (lo == hi)
        repl_out(r, "  ... (%s, :, :] not shown)\n", a);
    else
        repl_out(r, "  ... (%s, :, :] .. %s, :, :] not shown)\n", a, z);
}

/* the column numbers; over an elision with nothing after it, the last
 * column it stands for ("..191") */
static void column_header(const grid *g, int lw, int cw, char *line, size_t size)
{
    char num[32];
    size_t j = (size_t)snprintf(line, size, "  %*s", lw, "");
    for (int64_t c = 0; c < g->nc && j < size - 80; c++) {
        if (g->cs[c] >= 0)
            snprintf(num, sizeof num, "%lld", (long long)g->cs[c]);
        else if (c + 1 < g->nc)
            num[0] = '\0';
        else
            snprintf(num, sizeof num, "..%lld", (long long)g->C - 1);
        j += (size_t)snprintf(line + j, size - j, " %*s", g->cs[c] < 0 ? g->ew : cw, num);
    }
}

static int print_grid(xf_repl *r, const repl_view *v, const xf_selection *sel, const float *all, long n,
                      xf_err *err)
{
    grid g = {0};
    if (grid_plan(r, v, sel, all, n, &g, err) != 0) {
        grid_free(&g);
        return -1;
    }
    int lw = digits(g.R > 0 ? g.R - 1 : 0) + 2, cw;
    grid_fit_columns(r, &g, 2 + lw, &cw);
    g.ew = g.nc && g.cs[g.nc - 1] < 0 ? 2 + digits(g.C - 1) : 3;
    if (g.ew < 3)
        g.ew = 3;
    char line[4096];
    column_header(&g, lw, cw, line, sizeof line);
    for (int64_t b = 0; b < g.nb; b++) {
        if (g.bs[b] < 0) {
            say_blocks_elided(r, &g, sel, b);
            continue;
        }
        if (sel->out_ndim > 2) {
            char bl[64];
            block_label(sel, g.bs[b], bl, sizeof bl);
            bl[strlen(bl) - 1] = '\0';
            repl_out(r, "  %s, :, :]\n", bl);
        }
        repl_out(r, "%s\n", line);
        for (int64_t i = 0; i < g.nr; i++) {
            if (g.rs[i] < 0)
                say_rows_elided(r, &g, i, lw);
            else
                print_row(r, &g, b, i, lw, cw);
        }
    }
    grid_free(&g);
    return 0;
}

int shape_print(xf_repl *r, const repl_view *v, const xf_selection *sel, const float *all, long n, xf_err *err)
{
    if (n > SHAPE_MAX_SHOWN) {
        repl_out(r, "  (-n %ld: showing %d; `print ... --raw` or `dump` for all)\n", n, SHAPE_MAX_SHOWN);
        n = SHAPE_MAX_SHOWN;
    }
    if (sel->out_ndim <= 1)
        return print_vector(r, v, sel, all, n, err);
    return print_grid(r, v, sel, all, n, err);
}
