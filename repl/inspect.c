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
#include "exec.h"
#include "inspect.h"
#include "print.h"
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

int cmd_print(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    const char *arg = NULL;
    long n = 8;
    bool raw = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--raw") == 0)
            raw = true;
        else if (strcmp(argv[i], "-n") == 0) {
            if (i + 1 >= argc || !args_long(argv[i + 1], 0, 100000000, &n))
                return repl_errf(r, "print: -n needs a count");
            i++;
        } else if (!arg)
            arg = argv[i];
        else
            return repl_errf(r, "usage: print NAME[SLICE] [-n N] [--raw]");
    }
    if (!arg)
        return repl_errf(r, "usage: print NAME[SLICE] [-n N] [--raw]");
    const char *slice;
    char *name = split_slice(arg, &slice);
    if (!name)
        return repl_errf(r, "out of memory");
    xf_slice sl;
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
    bool act = v.data == NULL;
    xf_selection sel;
    if (tensor_slice_resolve(&sl, v.ndim, v.shape, &sel, &err) != 0) {
        free(v.data);
        return repl_errf(r, "%s: %s", v.name, err.msg);
    }
    int64_t show = n < sel.count ? n : sel.count;
    int64_t need = (!raw && *slice) ? sel.count : show; /* a slice's stats need all of it */
    float *vals = malloc((size_t)(need ? need : 1) * sizeof(float));
    int64_t *idx = malloc((size_t)(need ? need : 1) * sizeof(int64_t));
    if (!vals || !idx) {
        free(vals);
        free(idx);
        free(v.data);
        return repl_errf(r, "out of memory");
    }
    for (int64_t k = 0; k < need; k++)
        idx[k] = tensor_selection_index(&sel, k);
    int rc = 0;
    if (act)
        rc = exec_tensor_gather(r->ex, v.op, idx, need, vals, &err);
    else
        for (int64_t k = 0; k < need; k++)
            vals[k] = v.data[idx[k]];
    xf_stats st;
    if (rc == 0 && !raw) {
        if (act && !*slice)
            rc = exec_tensor_stats(r->ex, v.op, &st, &err);
        else
            tensor_stats(vals, (size_t)need, &st);
    }
    free(idx);
    if (rc != 0) {
        free(vals);
        return repl_errf(r, "%s", err.msg);
    }
    if (raw) {
        pr_values(r, vals, show, true);
    } else {
        char sh[64], ssh[64];
        tensor_shape_str(v.ndim, v.shape, sh, sizeof sh);
        tensor_shape_str(sel.out_ndim, sel.out_shape, ssh, sizeof ssh);
        if (*slice)
            repl_out(r, "%s%s %s of %s f32 %s\n", v.name, slice, ssh, sh, v.what);
        else
            repl_out(r, "%s %s f32 %s\n", v.name, sh, v.what);
        pr_stats_line(r, &st);
        if (show < sel.count)
            repl_out(r, "  first %lld of %lld:\n", (long long)show, (long long)sel.count);
        pr_values(r, vals, show, false);
    }
    free(vals);
    free(v.data);
    return 0;
}

int cmd_stats(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    if (argc != 2)
        return repl_errf(r, "usage: stats NAME");
    repl_view v;
    xf_stats s;
    xf_err err = {0};
    if (view_load_or_say(r, argv[1], VIEW_IN_PLACE, &v))
        return 1;
    if (!v.data) {
        if (exec_tensor_stats(r->ex, v.op, &s, &err) != 0)
            return repl_errf(r, "%s", err.msg);
    } else
        tensor_stats(v.data, (size_t)v.numel, &s);
    char sh[64];
    tensor_shape_str(v.ndim, v.shape, sh, sizeof sh);
    repl_out(r, "%s %s f32 %s\n", v.name, sh, v.what);
    pr_stats_line(r, &s);
    free(v.data);
    return 0;
}

int cmd_diff(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    long n = 8;
    const char *a = NULL, *b = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0) {
            if (i + 1 >= argc || !args_long(argv[i + 1], 0, 1000000, &n))
                return repl_errf(r, "diff: -n needs a count");
            i++;
        } else if (!a)
            a = argv[i];
        else if (!b)
            b = argv[i];
        else
            return repl_errf(r, "usage: diff A B [-n N]");
    }
    if (!a || !b)
        return repl_errf(r, "usage: diff A B [-n N]   (B may be NAME@ref)");
    repl_view va, vb;
    if (view_load_or_say(r, a, 0, &va))
        return 1;
    if (view_load_or_say(r, b, 0, &vb)) {
        free(va.data);
        return 1;
    }
    int rc = 0;
    if (va.numel != vb.numel) {
        char s1[64], s2[64];
        tensor_shape_str(va.ndim, va.shape, s1, sizeof s1);
        tensor_shape_str(vb.ndim, vb.shape, s2, sizeof s2);
        rc = repl_errf(r, "diff: %s %s and %s %s differ in size", va.name, s1, vb.name, s2);
    } else {
        xf_diff d;
        double tol = va.op >= 0 ? exec_tolerance(exec_program(r->ex)->ops[va.op].kind) : 1e-4;
        tensor_diff_rel(va.data, vb.data, (size_t)va.numel, tol, &d);
        char sh[64];
        tensor_shape_str(va.ndim, va.shape, sh, sizeof sh);
        repl_out(r, "diff %s vs %s %s (tolerance %g x max|B|)\n", va.name, vb.name, sh, tol);
        pr_diff(r, &d);
        if (va.ndim == 2 && strcmp(va.name, "logits") == 0)
            repl_out(r, "  top-1 agreement %.0f%%\n",
                     100 * tensor_top1_agree(va.data, vb.data, (size_t)va.shape[0], (size_t)va.shape[1]));
        int64_t start = d.first_over >= 0 ? d.first_over : 0;
        int64_t end = start + n < va.numel ? start + n : va.numel;
        if (end > start)
            repl_out(r, "  %-10s %-14s %-14s %s\n", "index", "A", "B", "|A-B|");
        for (int64_t i = start; i < end; i++) {
            char x[32], y[32], z[32];
            pr_num(x, sizeof x, va.data[i]);
            pr_num(y, sizeof y, vb.data[i]);
            pr_num(z, sizeof z, fabs((double)va.data[i] - (double)vb.data[i]));
            repl_out(r, "  %-10lld %-14s %-14s %s\n", (long long)i, x, y, z);
        }
    }
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
        long v;
        if (args_long(argv[i], 1, 1000, &v))
            k = v;
        else if (!name)
            name = argv[i];
        else
            return repl_errf(r, "usage: topk [K] [NAME]");
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
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++)
        if (lg[i] > mx)
            mx = lg[i];
    for (int i = 0; i < V; i++)
        sum += exp((double)lg[i] - mx);
    repl_out(r, "top %ld tokens (%s%s%s):\n", k, label, name ? " of " : "", name ? name : "");
    bool *used = calloc((size_t)V, 1);
    for (long j = 0; j < k && j < V && used; j++) {
        int best = -1;
        for (int i = 0; i < V; i++)
            if (!used[i] && (best < 0 || lg[i] > lg[best]))
                best = i;
        used[best] = 1;
        char p[128], l[32], pp[32];
        args_piece(r, best, p, sizeof p);
        pr_num(l, sizeof l, lg[best]);
        pr_num(pp, sizeof pp, exp((double)lg[best] - mx) / sum);
        repl_out(r, "  %2ld %8d %-20s logit %-10s p %s\n", j + 1, best, p, l, pp);
    }
    free(used);
    free(lg);
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
    if (!w)
        return repl_errf(r, "quant: no weight named '%s' (GGUF names, e.g. blk.0.attn_q.weight)", argv[1]);
    const gguf_tensor *gt = gguf_find_tensor(r->model->gguf, w->name);
    int type = gt->type; /* the file's type: vectors were converted to f32 at load */
    const quant_type_info *qi = quant_type_get(type);
    if (row >= w->rows)
        return repl_errf(r, "quant: row %ld out of range [0, %lld)", row, (long long)w->rows);
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
    if (nf == 0)
        repl_out(r, "  (%s is not a block format: one value per element)\n", qi->name);
    int n = qi->block_elems > 1 ? qi->block_elems : 8;
    if (n > w->cols - blk * qi->block_elems)
        n = (int)(w->cols - blk * qi->block_elems);
    float vals[256];
    quant_dequant_row(type, b, vals, qi->block_elems > 1 ? qi->block_elems : n);
    repl_out(r, "  floats");
    char v[32];
    for (int j = 0; j < n && j < 32; j++) {
        pr_num(v, sizeof v, vals[j]);
        repl_out(r, " %s", v);
    }
    repl_out(r, n > 32 ? " ... (%d)\n" : "\n", n);
    return 0;
}

