/* inspect: the commands that look at tensors: print, stats, diff, topk
 * (logits and the logit lens) and quant. Names resolve through view.c once
 * per argument. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "dumps.h"
#include "exec.h"
#include "inspect.h"
#include "lens.h"
#include "picture.h"
#include "print.h"
#include "shape.h"
#include "tokenizer.h"
#include "quant.h"
#include "repl.h"
#include "tensor.h"
#include "view.h"

/* splits "name[3, :8]" into the name (malloc'd, NULL when out of memory) and the slice text */
static char *split_slice(const char *arg, const char **slice)
{
    const char *b = strchr(arg, '[');
    *slice = b ? b : "";
    return strndup(arg, b ? (size_t)(b - arg) : strlen(arg));
}

/* the arguments of print */
typedef struct print_args {
    const char *arg;
    long n;      /* -n, or -1: the default for the shape */
    bool raw, heat;
} print_args;

static int print_parse(xf_repl *r, int argc, char **argv, print_args *a)
{
    const char *usage = "usage: print NAME[SLICE] [-n N] [--raw] [--heat]";
    memset(a, 0, sizeof *a);
    a->n = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--raw") == 0)
            a->raw = true;
        else if (strcmp(argv[i], "--heat") == 0)
            a->heat = true;
        else if (strcmp(argv[i], "-n") == 0) {
            if (i + 1 >= argc || !args_long(argv[i + 1], 1, 100000000, &a->n))
                return repl_errf(r, "print: -n needs a count of values (1 or more)");
            i++;
        } else if (!a->arg)
            a->arg = argv[i];
        else
            return repl_errf(r, "%s", usage);
    }
    return a->arg ? 0 : repl_errf(r, "%s", usage);
}

/* logits-like: [T, vocab] with more than one position. Its useful row is the
 * last one (what the next token comes from), not position 0. */
static bool logits_like(xf_repl *r, const repl_view *v)
{
    return v->ndim == 2 && v->shape[0] > 1 && r->model && v->shape[1] == r->model->n_vocab;
}

/* The token pieces on a kq/kq_soft heatmap's axes: rows are this pass's
 * positions, columns the keys. Only when the selection keeps both whole. */
static char **heat_labels(xf_repl *r, const repl_view *v, const xf_selection *sel, bool cols)
{
    if (!strstr(v->name, "kq") || v->ndim != 3 || !r->ex)
        return NULL;
    for (int d = 1; d < 3; d++)
        if (sel->start[d] != 0 || sel->step[d] != 1 || sel->cnt[d] != v->shape[d])
            return NULL;
    xf_where w;
    exec_where(r->ex, &w);
    int nh;
    const int32_t *h = exec_history(r->ex, &nh);
    int64_t n = v->shape[cols ? 2 : 1];
    char **l = calloc((size_t)n, sizeof *l);
    for (int64_t i = 0; l && i < n; i++) {
        int64_t pos = cols ? i : w.pos0 + i;
        size_t len = 0;
        const char *p = pos < nh && r->model->tok ? tok_piece(r->model->tok, h[pos], &len) : NULL;
        char q[160];
        pr_quote(q, sizeof q, p ? p : "?", p ? len : 1);
        l[i] = strdup(q);
    }
    return l;
}

static void free_labels(char **l, int64_t n)
{
    for (int64_t i = 0; l && i < n; i++)
        free(l[i]);
    free(l);
}

static int print_heat(xf_repl *r, const repl_view *v, const xf_selection *sel, const float *all)
{
    int nd = sel->out_ndim;
    if (nd < 2)
        return repl_errf(r, "print --heat: %s selects %d dimension(s); a heatmap needs a matrix", v->name, nd);
    int64_t R = sel->out_shape[nd - 2], C = sel->out_shape[nd - 1], B = R * C > 0 ? sel->count / (R * C) : 0;
    char **rows = heat_labels(r, v, sel, false), **cols = heat_labels(r, v, sel, true);
    char **titles = calloc((size_t)B, sizeof *titles);
    for (int64_t b = 0; titles && b < B; b++) {
        char t[64], ix[48];
        if (strstr(v->name, "kq") && v->ndim == 3) /* [H, n, n_kv]: the blocks are heads */
            snprintf(t, sizeof t, "head %lld", (long long)(sel->start[0] + b * sel->step[0]));
        else {
            pr_index(ix, sizeof ix, b, nd - 2, sel->out_shape);
            snprintf(t, sizeof t, "%s", nd > 2 ? ix : "");
        }
        titles[b] = strdup(t);
    }
    pic_heatmap(r, all, B, R, C, (const char *const *)titles, (const char *const *)rows, (const char *const *)cols);
    free_labels(rows, R);
    free_labels(cols, C);
    free_labels(titles, B);
    return 0;
}

static int print_selection(xf_repl *r, const repl_view *v, const char *slice, const xf_selection *sel,
                           const print_args *a, const char *note)
{
    xf_err err = {0};
    char sh[64], ssh[64];
    tensor_shape_str(v->ndim, v->shape, sh, sizeof sh);
    tensor_shape_str(sel->out_ndim, sel->out_shape, ssh, sizeof ssh);
    if (a->raw) {
        /* machines parse this: the first n values, one line, as it always was */
        int64_t show = a->n < 0 ? 8 : a->n;
        xf_selection s1 = *sel;
        float *vals = NULL;
        s1.count = show < sel->count ? show : sel->count;
        if (shape_gather_all(r, v, &s1, &vals, &err) != 0)
            return repl_errf(r, "%s", err.msg);
        pr_values(r, vals, s1.count, true);
        free(vals);
        return 0;
    }
    /* values the pass left owed (a prefill's fused attention; the logits
     * rows before the last) are computed by this read: say so, where the
     * selection reaches them */
    bool last_row_only = v->ndim >= 2 && sel->cnt[0] == 1 && sel->start[0] == v->shape[0] - 1;
    const char *re = v->owed == XF_OWED_ALL || (v->owed == XF_OWED_ROWS && !last_row_only)
                         ? " (recomputed on this read)" : "";
    if (*slice)
        repl_out(r, "%s%s %s of %s f32 %s%s%s\n", v->name, slice, ssh, sh, v->what, re, note);
    else
        repl_out(r, "%s %s f32 %s%s\n", v->name, sh, v->what, re);
    if (sel->count == 0) {
        repl_out(r, "  (empty: the slice selects no elements)\n");
        return 0;
    }
    /* a slice's stats (and a heatmap) need all of it; a whole activation's
     * stats are reduced where it lives */
    float *all = NULL;
    xf_stats st;
    int rc = 0;
    if (*slice || a->heat || v->data)
        rc = shape_gather_all(r, v, sel, &all, &err);
    if (rc == 0 && all)
        tensor_stats(all, (size_t)sel->count, &st);
    else if (rc == 0)
        rc = exec_tensor_stats(r->ex, v->op, &st, &err);
    if (rc == 0) {
        pr_stats_line(r, &st);
        rc = a->heat ? print_heat(r, v, sel, all) : (shape_print(r, v, sel, all, a->n, &err) ? -1 : 0);
    }
    free(all);
    return rc < 0 ? repl_errf(r, "%s", err.msg) : rc;
}

int cmd_print(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    print_args a;
    if (print_parse(r, argc, argv, &a))
        return 1;
    const char *slice;
    char *name = split_slice(a.arg, &slice);
    if (!name)
        return repl_errf(r, "out of memory");
    xf_slice sl;
    xf_selection sel;
    xf_err err = {0};
    if (tensor_slice_parse(slice, &sl, &err) != 0) {
        free(name);
        return repl_errf(r, "%s", err.msg);
    }
    /* resolved once; an activation of this pass is read where it lives: only
     * the values shown cross from the device, and its stats are reduced there */
    repl_view v;
    int vrc = view_load_or_say(r, name, VIEW_IN_PLACE, &v);
    free(name);
    if (vrc)
        return 1;
    const char *note = "";
    if (!*slice && !a.raw && !a.heat && logits_like(r, &v)) {
        slice = "[-1]";
        note = " (the last position)";
        tensor_slice_parse(slice, &sl, &err);
    }
    if (tensor_slice_resolve(&sl, v.ndim, v.shape, &sel, &err) != 0) {
        free(v.data);
        return repl_errf(r, "%s: %s", v.name, err.msg);
    }
    int rc = print_selection(r, &v, slice, &sel, &a, note);
    free(v.data);
    return rc;
}
int cmd_stats(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    const char *name = NULL;
    bool hist = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--hist") == 0)
            hist = true;
        else if (!name)
            name = argv[i];
        else
            return repl_errf(r, "usage: stats NAME [--hist]");
    }
    if (!name)
        return repl_errf(r, "usage: stats NAME [--hist]");
    repl_view v;
    xf_stats s;
    xf_err err = {0};
    /* a histogram needs every value on the host; plain stats are reduced in place */
    if (view_load_or_say(r, name, hist ? 0 : VIEW_IN_PLACE, &v))
        return 1;
    if (!v.data) {
        if (exec_tensor_stats(r->ex, v.op, &s, &err) != 0)
            return repl_errf(r, "%s", err.msg);
    } else
        tensor_stats(v.data, (size_t)v.numel, &s);
    char sh[64];
    tensor_shape_str(v.ndim, v.shape, sh, sizeof sh);
    repl_out(r, "%s %s f32 %s\n", v.name, sh, v.what);
    if (v.numel == 0)
        repl_out(r, "  (empty: no elements)\n");
    else
        pr_stats_line(r, &s);
    if (hist && v.numel > 0)
        pic_hist(r, v.data, v.numel);
    free(v.data);
    return 0;
}

/* diff's B: NAME, NAME@ref, NAME@cpu, or just @ref / @cpu for A's own name there */
static char *diff_b_name(const char *a, const char *b)
{
    if (b[0] != '@')
        return strdup(b);
    const char *at = strchr(a, '@');
    size_t n = at ? (size_t)(at - a) : strlen(a);
    char *s = malloc(n + strlen(b) + 1);
    if (s) {
        memcpy(s, a, n);
        strcpy(s + n, b);
    }
    return s;
}

/* the N elements with the largest error, with their indices */
static void diff_worst(xf_repl *r, const repl_view *va, const repl_view *vb, long n)
{
    int64_t *w = malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    int64_t k = w ? tensor_worst(va->data, vb->data, va->numel, w, n) : 0;
    /* the column as wide as the last index: the same whichever elements are worst */
    char ix[96];
    pr_index(ix, sizeof ix, va->numel - 1, va->ndim, va->shape);
    int iw = (int)strlen(ix) > 5 ? (int)strlen(ix) : 5;
    if (k > 0)
        repl_out(r, "  the %lld largest |A-B|:\n  %-*s %-14s %-14s %s\n", (long long)k, iw, "index", "A", "B",
                 "|A-B|");
    else if (n > 0)
        repl_out(r, "  A and B are identical\n");
    for (int64_t i = 0; i < k; i++) {
        char x[32], y[32], z[32];
        int64_t e = w[i];
        pr_index(ix, sizeof ix, e, va->ndim, va->shape);
        pr_num(x, sizeof x, va->data[e]);
        pr_num(y, sizeof y, vb->data[e]);
        pr_num(z, sizeof z, fabs((double)va->data[e] - (double)vb->data[e]));
        repl_out(r, "  %-*s %-14s %-14s %s\n", iw, ix, x, y, z);
    }
    free(w);
}

static void diff_report(xf_repl *r, const repl_view *va, const repl_view *vb, long n)
{
    xf_diff d;
    double tol = va->op >= 0 ? exec_tolerance(exec_program(r->ex)->ops[va->op].kind) : 1e-4;
    tensor_diff_rel(va->data, vb->data, (size_t)va->numel, tol, &d);
    char sh[64];
    tensor_shape_str(va->ndim, va->shape, sh, sizeof sh);
    repl_out(r, "diff %s vs %s %s (tolerance %g x max|B|)\n", va->name, vb->name, sh, tol);
    pr_diff_shaped(r, &d, va->ndim, va->shape);
    if (va->ndim == 2 && strcmp(va->name, "logits") == 0)
        repl_out(r, "  top-1 agreement %.0f%%\n",
                 100 * tensor_top1_agree(va->data, vb->data, (size_t)va->shape[0], (size_t)va->shape[1]));
    diff_worst(r, va, vb, n);
}

int cmd_diff(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    long n = 8;
    const char *a = NULL, *b = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0) {
            if (i + 1 >= argc || !args_long(argv[i + 1], 0, 1000, &n))
                return repl_errf(r, "diff: -n needs a count (0..1000)");
            i++;
        } else if (!a)
            a = argv[i];
        else if (!b)
            b = argv[i];
        else
            return repl_errf(r, "usage: diff A B [-n N]");
    }
    if (!a || !b)
        return repl_errf(r, "usage: diff A B [-n N]   (B may be NAME@ref, NAME@cpu, or @ref / @cpu for A's)");
    char *bn = diff_b_name(a, b);
    if (!bn)
        return repl_errf(r, "out of memory");
    if (strstr(a, "@ref") || strstr(bn, "@ref"))
        dumps_warn_ref_prompt(r);
    repl_view va, vb;
    int rc = 0;
    if (view_load_or_say(r, a, 0, &va)) {
        free(bn);
        return 1;
    }
    if (view_load_or_say(r, bn, 0, &vb)) {
        free(bn);
        free(va.data);
        return 1;
    }
    free(bn);
    if (!tensor_shape_same(va.ndim, va.shape, vb.ndim, vb.shape)) {
        char s1[96], s2[96];
        tensor_shape_str(va.ndim, va.shape, s1, sizeof s1);
        tensor_shape_str(vb.ndim, vb.shape, s2, sizeof s2);
        rc = repl_errf(r, "diff: %s %s and %s %s differ in %s", va.name, s1, vb.name, s2,
                       va.numel != vb.numel ? "size" : "shape");
    } else
        diff_report(r, &va, &vb, n);
    free(va.data);
    free(vb.data);
    return rc;
}

int cmd_topk(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    long k = 10;
    const char *name = NULL;
    for (int i = 1; i < argc; i++) {
        bool num;
        if (args_count(r, "topk", argv[i], 1000, &k, &num))
            return 1;
        if (num)
            continue;
        if (name)
            return repl_errf(r, "usage: topk [K] [NAME]");
        name = argv[i];
    }
    int V = r->model->n_vocab;
    float *lg = malloc((size_t)V * sizeof(float));
    if (!lg)
        return repl_errf(r, "out of memory");
    xf_err err = {0};
    const char *label = "logits";
    if (!name || strcmp(name, "logits") == 0) {
        if (exec_last_logits(r->ex, lg, &err) != 0) {
            free(lg);
            return repl_errf(r, "%s", err.msg);
        }
    } else {
        /* logit lens: final norm then unembedding of the last row of a residual */
        repl_view v;
        if (view_load_or_say(r, name, 0, &v)) {
            free(lg);
            return 1;
        }
        int D = r->model->n_embd;
        if (v.numel % D != 0 || v.shape[v.ndim - 1] != D) {
            free(v.data);
            free(lg);
            return repl_errf(r, "topk: %s is not a residual of width %d", v.name, D);
        }
        int bad = exec_logit_lens(r->ex, v.data + (v.numel / D - 1) * D, lg, &err);
        free(v.data);
        if (bad) {
            free(lg);
            return repl_errf(r, "topk: %s", err.msg);
        }
        label = "logit lens";
    }
    char en[160];
    pr_escape(en, sizeof en, name ? name : "", name ? strlen(name) : 0);
    repl_out(r, "top %ld tokens (%s%s%s):\n", k, label, name ? " of " : "", en);
    lens_top *top = malloc((size_t)k * sizeof *top);
    int got = top ? lens_topk(lg, V, (int)k, top) : 0;
    for (int j = 0; j < got; j++) {
        char p[160], q[64], l[32], pp[32];
        lens_piece(r, top[j].id, p, sizeof p);
        pr_num(l, sizeof l, top[j].logit);
        pr_num(pp, sizeof pp, top[j].p);
        /* pieces are quoted and padded by display width, so CJK keeps the columns */
        repl_out(r, "  %2d %8d %s logit %-10s p %s\n", j + 1, top[j].id, pr_fit(q, sizeof q, p, 20, false), l, pp);
    }
    free(top);
    free(lg);
    return 0;
}

/* F32/F16/BF16 have no blocks: a "block" is a run of 32 elements, shown
 * with its bytes and values, and said to be so */
static int quant_plain(xf_repl *r, const xf_weight *w, const gguf_tensor *gt, const quant_type_info *qi, long row,
                       long blk)
{
    enum { RUN = 32 };
    int64_t nrun = (w->cols + RUN - 1) / RUN;
    if (blk >= nrun)
        return repl_errf(r, "quant: block %ld out of range [0, %lld) (runs of %d elements)", blk, (long long)nrun,
                         RUN);
    int64_t e0 = blk * RUN, n = w->cols - e0 < RUN ? w->cols - e0 : RUN;
    int es = qi->block_bytes; /* bytes per element */
    uint64_t rb;
    quant_row_bytes(gt->type, w->cols, &rb);
    const uint8_t *b = (const uint8_t *)gt->data + (uint64_t)row * rb + (uint64_t)e0 * (uint64_t)es;
    char wn[160];
    pr_escape(wn, sizeof wn, w->name, strlen(w->name));
    repl_out(r, "%s row %ld elements %lld..%lld of %lld:\n  %s, %d bytes an element (not a block format), at "
                "file byte %llu\n",
             wn, row, (long long)e0, (long long)(e0 + n - 1), (long long)w->cols, qi->name, es,
             (unsigned long long)(r->model->gguf->data_offset + gt->offset + (uint64_t)row * rb +
                                  (uint64_t)e0 * (uint64_t)es));
    /* 16 bytes a line and the values wrapped: within 80 columns */
    for (int64_t i = 0; i < n * es; i++)
        repl_out(r, "%s %02x%s", i % 16 ? "" : "  bytes", b[i], i % 16 == 15 || i + 1 == n * es ? "\n" : "");
    float vals[RUN];
    quant_dequant_row(gt->type, b, vals, n);
    repl_out(r, "  floats:\n");
    pr_values(r, vals, n, false);
    return 0;
}

int cmd_quant(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    long row = 0, blk = 0;
    if (argc < 3 || argc > 4 || !args_long(argv[2], 0, LONG_MAX, &row) ||
        (argc == 4 && !args_long(argv[3], 0, LONG_MAX, &blk)))
        return repl_errf(r, "usage: quant WEIGHT ROW [BLOCK]");
    const xf_weight *w = model_find_weight(r->model, argv[1]);
    if (!w) {
        char hint[200];
        view_suggest(r, argv[1], hint, sizeof hint);
        char en[160];
        pr_escape(en, sizeof en, argv[1], strlen(argv[1]));
        return repl_errf(r, "quant: no weight named '%s' (GGUF names, e.g. blk.0.attn_norm.weight)%s", en,
                         hint);
    }
    const gguf_tensor *gt = gguf_find_tensor(r->model->gguf, w->name);
    int type = gt->type; /* the file's type: vectors were converted to f32 at load */
    const quant_type_info *qi = quant_type_get(type);
    if (row >= w->rows)
        return repl_errf(r, "quant: row %ld out of range [0, %lld)", row, (long long)w->rows);
    if (qi->block_elems == 1)
        return quant_plain(r, w, gt, qi, row, blk);
    int64_t nblk = w->cols / qi->block_elems;
    if (blk >= nblk)
        return repl_errf(r, "quant: block %ld out of range [0, %lld)", blk, (long long)nblk);
    uint64_t rb;
    quant_row_bytes(type, w->cols, &rb);
    const uint8_t *b = (const uint8_t *)gt->data + (uint64_t)row * rb + (uint64_t)blk * (uint64_t)qi->block_bytes;
    char wn[160];
    pr_escape(wn, sizeof wn, w->name, strlen(w->name));
    repl_out(r, "%s row %ld block %ld of %lld: %s, %d elements in %d bytes at file byte %llu\n", wn, row, blk,
             (long long)nblk, qi->name, qi->block_elems, qi->block_bytes,
             (unsigned long long)(r->model->gguf->data_offset + gt->offset + (uint64_t)row * rb +
                                  (uint64_t)blk * (uint64_t)qi->block_bytes));
    repl_out(r, "  bytes:");
    for (int i = 0; i < qi->block_bytes && i < 64; i++)
        repl_out(r, " %02x", b[i]);
    repl_out(r, qi->block_bytes > 64 ? " ...\n" : "\n");
    static quant_field f[6]; /* 6 KB: keep it off the stack */
    int nf = quant_block_fields(type, b, f, 6);
    for (int i = 0; i < nf; i++) {
        repl_out(r, "  %-6s", f[i].name);
        int show = f[i].count > 32 ? 32 : f[i].count;
        char v[32];
        for (int j = 0; j < show; j++) {
            pr_num(v, sizeof v, f[i].v[j]);
            repl_out(r, " %s", v);
        }
        repl_out(r, f[i].count > show ? " ... (%d)\n" : "\n", f[i].count);
    }
    int n = qi->block_elems;
    float vals[256];
    quant_dequant_row(type, b, vals, n);
    repl_out(r, "  floats");
    char v[32];
    for (int j = 0; j < n && j < 32; j++) {
        pr_num(v, sizeof v, vals[j]);
        repl_out(r, " %s", v);
    }
    repl_out(r, n > 32 ? " ... (%d)\n" : "\n", n);
    return 0;
}
