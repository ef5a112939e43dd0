/* dumps: safetensors in and out: dump, ref load, compare @ref. */
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
#include "patch.h"
#include "picture.h"
#include "print.h"
#include "refdump.h"
#include "repl.h"
#include "tensor.h"

/* Every NAME of dump names a tensor of the pass: a typo, `all` among names or a
 * slice (dump writes whole tensors) is an error naming it, before anything is
 * written, rather than a file that quietly lacks it. 0, or 1 said. */
static int dump_check_names(xf_repl *r, const xf_program *p, int n, char **names)
{
    for (int a = 0; a < n; a++) {
        if (strcmp(names[a], "all") == 0 && n > 1)
            return repl_errf(r, "dump: 'all' is every tensor and stands alone: dump all FILE");
        if (n == 1 && strcmp(names[a], "all") == 0)
            continue;
        bool any = false;
        for (int i = 0; i < p->n_ops && !any; i++)
            any = program_glob_match(names[a], p->ops[i].name);
        if (any)
            continue;
        const char *br = strchr(names[a], '[');
        char base[XF_NAME_MAX];
        if (br && (size_t)(br - names[a]) < sizeof base) {
            memcpy(base, names[a], (size_t)(br - names[a]));
            base[br - names[a]] = '\0';
            for (int i = 0; i < p->n_ops && !any; i++)
                any = program_glob_match(base, p->ops[i].name);
            if (any)
                return repl_errf(r, "dump: %s: dump writes whole tensors, not slices (dump %s FILE)",
                                 names[a], base);
        }
        return repl_errf(r, "dump: '%s' matches no tensor of this pass (`list all` names them)", names[a]);
    }
    return 0;
}

int cmd_dump(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    if (argc < 3)
        return repl_errf(r, "usage: dump NAMES|all FILE.safetensors");
    const char *path = args_path(argv[argc - 1]);
    const xf_program *p = exec_program(r->ex);
    xf_err err = {0};
    refdump_writer *w = refdump_writer_new();
    if (!w)
        return repl_errf(r, "out of memory");
    int rc = dump_check_names(r, p, argc - 2, argv + 1), count = 0;
    bool all = argc == 3 && strcmp(argv[1], "all") == 0;
    for (int i = 0; i < p->n_ops && rc == 0; i++) {
        bool want = all;
        for (int a = 1; a < argc - 1 && !want; a++)
            want = program_glob_match(argv[a], p->ops[i].name);
        if (!want)
            continue;
        if (!exec_tensor_ready(r->ex, i)) {
            if (all)
                continue;
            rc = repl_errf(r, "dump: %s is not computed yet in this pass", p->ops[i].name);
            break;
        }
        const xf_op *o = &p->ops[i];
        float *h = malloc((size_t)o->numel * sizeof(float));
        if (!h) {
            rc = repl_errf(r, "out of memory");
            break;
        }
        if (exec_tensor_read(r->ex, i, h, &err) != 0 ||
            refdump_writer_add(w, o->name, REFDUMP_F32, o->ndim, o->shape, h, &err) != 0)
            rc = repl_errf(r, "dump: %s", err.msg);
        free(h);
        count++;
    }
    if (rc == 0 && count == 0)
        rc = repl_errf(r, "dump: no computed tensor matches");
    if (rc == 0) {
        int nt;
        const int32_t *tk = exec_tokens(r->ex, &nt);
        int64_t sh[1] = {nt};
        char *iv = passes_iv_json(r); /* a written pass says so in the file */
        if (refdump_writer_add(w, "prompt.tokens", REFDUMP_I32, 1, sh, tk, &err) != 0 ||
            refdump_writer_meta(w, "producer", "xfdb", &err) != 0 ||
            (iv && refdump_writer_meta(w, "xfdb.interventions", iv, &err) != 0) ||
            refdump_writer_save(w, path, &err) != 0)
            rc = repl_errf(r, "dump: %s", err.msg);
        else {
            char esc[512];
            pr_escape(esc, sizeof esc, path, strlen(path));
            repl_out(r, "wrote %d tensors and prompt.tokens to %s\n", count, esc);
            if (iv)
                repl_out(r, "(a pass written into: its interventions are in the metadata, xfdb.interventions)\n");
        }
        free(iv);
    }
    refdump_writer_free(w);
    return rc;
}

int cmd_ref(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    if (argc != 3 || strcmp(argv[1], "load") != 0)
        return repl_errf(r, "usage: ref load FILE.safetensors");
    xf_err err = {0};
    if (exec_ref_load(r->ex, args_path(argv[2]), &err) != 0)
        return repl_errf(r, "%s", err.msg);
    char esc[512];
    pr_escape(esc, sizeof esc, argv[2], strlen(argv[2]));
    repl_out(r, "reference %s: %zu tensors\n", esc, refdump_count(exec_ref(r->ex)));
    return 0;
}

/* "5 tokens: 33676 4720 25 ...": six ids from the first one shown (from), "... " before
 * when that is not the first */
static void ids_text(char *buf, size_t size, const int32_t *ids, int n, int from)
{
    size_t j = (size_t)snprintf(buf, size, "%d token%s:%s", n, n == 1 ? "" : "s", from > 0 ? " ..." : "");
    for (int i = from; i < n && i < from + 6 && j < size; i++)
        j += (size_t)snprintf(buf + j, size - j, " %d", ids[i]);
    if (n > from + 6 && j < size)
        snprintf(buf + j, size - j, " ...");
}

/* the reference's prompt.tokens (integers read as such, each checked to fit
 * int32), malloc'd into *ids; -1 with err when they cannot be read */
static int ref_prompt_ids(const refdump *ref, const refdump_tensor *t, int32_t **ids, int *n, xf_err *err)
{
    int64_t k = refdump_numel(t);
    if (k > INT_MAX)
        return xf_err_set(err, "%lld tokens", (long long)k);
    *ids = malloc((size_t)(k ? k : 1) * sizeof **ids);
    if (!*ids)
        return xf_err_set(err, "out of memory");
    if (refdump_read_i32(ref, t, *ids, err) != 0) {
        free(*ids);
        *ids = NULL;
        return -1;
    }
    *n = (int)k;
    return 0;
}

bool dumps_warn_ref_prompt(xf_repl *r)
{
    const refdump *ref = r->ex ? exec_ref(r->ex) : NULL;
    const refdump_tensor *t = ref ? refdump_find(ref, "prompt.tokens") : NULL;
    if (!t)
        return false;
    int32_t *ids = NULL;
    int n = 0;
    xf_err err = {0};
    if (ref_prompt_ids(ref, t, &ids, &n, &err) != 0) {
        repl_out(r, "%swarning:%s the reference's prompt.tokens cannot be checked against this pass: %s\n",
                 pr_sgr(r, "bad"), pr_sgr(r, "reset"), err.msg);
        return false;
    }
    /* a dump of this pass holds its tokens; an HF dump the whole prompt */
    int nt, nh;
    const int32_t *tk = exec_tokens(r->ex, &nt), *h = exec_history(r->ex, &nh);
    bool same = (nt == n && (n == 0 || memcmp(tk, ids, (size_t)n * sizeof *ids) == 0)) ||
                (nh == n && (n == 0 || memcmp(h, ids, (size_t)n * sizeof *ids) == 0));
    if (!same) {
        /* shown beside the list of its length (the context's for an HF dump's whole prompt), from
         * two tokens before the first that differs */
        bool ctx = n != nt && n == nh;
        const int32_t *o = ctx ? h : tk;
        int no = ctx ? nh : nt, k = 0;
        while (k < n && k < no && ids[k] == o[k])
            k++;
        int from = k > 2 ? k - 2 : 0;
        char a[160], b[160];
        ids_text(a, sizeof a, ids, n, from);
        ids_text(b, sizeof b, o, no, from);
        repl_out(r, "%swarning:%s the reference was made from other tokens: every tensor will differ\n",
                 pr_sgr(r, "bad"), pr_sgr(r, "reset"));
        repl_out(r, "  reference prompt.tokens %s\n  %-24s %s\n  first difference at token %d\n", a,
                 ctx ? "the context" : "this pass", b, k);
    }
    free(ids);
    return !same;
}

typedef struct cmp_row {
    const char *name;
    xf_diff d;
    bool over, first;
} cmp_row;

/* one row: 16 + 4 x 10 + 13 + 11 columns, within 80 */
static void compare_row(xf_repl *r, const cmp_row *c)
{
    char x[32], y[32], z[32], k[32], bar[128], nm[64];
    pr_short(x, sizeof x, c->d.max_abs);
    pr_short(y, sizeof y, c->d.tol);
    pr_short(z, sizeof z, c->d.nmse);
    pr_num(k, sizeof k, c->d.cosine);
    if (strlen(k) > 9)
        pr_short(k, sizeof k, c->d.cosine);
    double err = c->d.mismatch_nonfinite ? INFINITY : c->d.max_abs;
    pic_err_bar(r, bar, sizeof bar, err, c->d.tol, 12);
    const char *st = c->over ? (c->first ? "OVER first" : "OVER") : "ok";
    repl_out(r, "%s %-9s %-9s %-9s %-9s %s %s%s%s\n", pr_fit(nm, sizeof nm, c->name, 16, false), x, y, z, k, bar,
             c->over ? pr_sgr(r, "bad") : "", st, c->over ? pr_sgr(r, "reset") : "");
}

/* the diff of op i against its reference tensor t; 0 ok, -1 with err */
static int compare_one(xf_repl *r, int i, const refdump_tensor *t, xf_diff *d, xf_err *err)
{
    const xf_op *o = &exec_program(r->ex)->ops[i];
    float *a = malloc((size_t)o->numel * sizeof(float)), *b = malloc((size_t)o->numel * sizeof(float));
    int rc = -1;
    if (!a || !b)
        xf_err_set(err, "out of memory");
    else if (exec_tensor_read(r->ex, i, a, err) == 0 && refdump_read_f32(exec_ref(r->ex), t, b, err) == 0) {
        tensor_diff_rel(a, b, (size_t)o->numel, exec_tolerance(o->kind), d);
        rc = 0;
    }
    free(a);
    free(b);
    return rc;
}

int cmd_compare(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    if (argc > 2 || (argc == 2 && strcmp(argv[1], "@ref") != 0))
        return repl_errf(r, "usage: compare [@ref]");
    const refdump *ref = exec_ref(r->ex);
    if (!ref)
        return repl_errf(r, "no reference loaded: `ref load FILE.safetensors`");
    bool other = dumps_warn_ref_prompt(r);
    const xf_program *p = exec_program(r->ex);
    xf_err err = {0};
    int first = -1, compared = 0, shaped = 0;
    /* the bar: max_abs / tol from 1e-5 to 10 on a log scale, | the tolerance */
    repl_out(r, "%-16s %-9s %-9s %-9s %-9s %-12s %s\n", "tensor", "max_abs", "tol", "nmse", "cosine",
             "err/tol log", "status");
    for (int i = 0; i < p->n_ops; i++) {
        const xf_op *o = &p->ops[i];
        const refdump_tensor *t = refdump_find(ref, o->name);
        if (!t || !exec_tensor_ready(r->ex, i))
            continue;
        if (!tensor_shape_same(t->ndim, t->shape, o->ndim, o->shape)) {
            char a[96], b[96];
            tensor_shape_str(o->ndim, o->shape, a, sizeof a);
            tensor_shape_str(t->ndim, t->shape, b, sizeof b);
            repl_out(r, "%-16s shape %s differs from the reference's %s\n", o->name, a, b);
            shaped++;
            if (first < 0)
                first = i;
            continue;
        }
        cmp_row c = {.name = o->name};
        if (compare_one(r, i, t, &c.d, &err) != 0)
            return repl_errf(r, "compare: %s", err.msg);
        compared++;
        c.over = c.d.n_over > 0;
        if (c.over && first < 0)
            first = i;
        c.first = c.over && first == i;
        compare_row(r, &c);
    }
    if (compared == 0 && shaped > 0)
        return repl_errf(
            r,
            "compare: none compared: the %d tensor%s of this pass in the reference %s other shapes "
            "there%s",
            shaped, shaped == 1 ? "" : "s", shaped == 1 ? "has" : "have",
            other ? " (it is of other tokens: see the warning above)" : "");
    if (compared == 0)
        return repl_errf(r, "compare: no computed tensor of this pass is in the reference");
    if (first >= 0)
        repl_out(r, "first tensor over tolerance: %s%s\n", p->ops[first].name,
                 other ? " (the reference is of other tokens: see the warning above)" : "");
    else
        repl_out(r, "%d tensors compared, all within tolerance\n", compared);
    return 0;
}
