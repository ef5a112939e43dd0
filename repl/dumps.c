/* dumps: safetensors in and out: dump, ref load, compare @ref. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dumps.h"
#include "exec.h"
#include "print.h"
#include "refdump.h"
#include "repl.h"
#include "tensor.h"

int cmd_dump(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    if (argc < 3)
        return repl_errf(r, "usage: dump NAMES|all FILE.safetensors");
    const char *path = argv[argc - 1];
    const xf_program *p = exec_program(r->ex);
    xf_err err = {0};
    refdump_writer *w = refdump_writer_new();
    if (!w)
        return repl_errf(r, "out of memory");
    int rc = 0, count = 0;
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
        if (refdump_writer_add(w, "prompt.tokens", REFDUMP_I32, 1, sh, tk, &err) != 0 ||
            refdump_writer_meta(w, "producer", "xfdb", &err) != 0 || refdump_writer_save(w, path, &err) != 0)
            rc = repl_errf(r, "dump: %s", err.msg);
        else {
            char esc[512];
            pr_escape(esc, sizeof esc, path, strlen(path));
            repl_out(r, "wrote %d tensors and prompt.tokens to %s\n", count, esc);
        }
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
    if (exec_ref_load(r->ex, argv[2], &err) != 0)
        return repl_errf(r, "%s", err.msg);
    char esc[512];
    pr_escape(esc, sizeof esc, argv[2], strlen(argv[2]));
    repl_out(r, "reference %s: %zu tensors\n", esc, refdump_count(exec_ref(r->ex)));
    return 0;
}

int cmd_compare(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    if (argc > 2 || (argc == 2 && strcmp(argv[1], "@ref") != 0))
        return repl_errf(r, "usage: compare [@ref]");
    const refdump *ref = exec_ref(r->ex);
    if (!ref)
        return repl_errf(r, "no reference loaded: `ref load FILE.safetensors`");
    const xf_program *p = exec_program(r->ex);
    xf_err err = {0};
    int first = -1, compared = 0;
    repl_out(r, "%-20s %-12s %-12s %-12s %-10s %s\n", "tensor", "max_abs", "tol", "nmse", "cosine", "status");
    for (int i = 0; i < p->n_ops; i++) {
        const xf_op *o = &p->ops[i];
        const refdump_tensor *t = refdump_find(ref, o->name);
        if (!t || !exec_tensor_ready(r->ex, i))
            continue;
        if (refdump_numel(t) != o->numel) {
            repl_out(r, "%-20s shape differs from the reference (%lld vs %lld elements)\n", o->name,
                     (long long)o->numel, (long long)refdump_numel(t));
            if (first < 0)
                first = i;
            continue;
        }
        float *a = malloc((size_t)o->numel * sizeof(float)), *b = malloc((size_t)o->numel * sizeof(float));
        if (!a || !b || exec_tensor_read(r->ex, i, a, &err) != 0 || refdump_read_f32(ref, t, b, &err) != 0) {
            free(a);
            free(b);
            return repl_errf(r, "compare: %s", a && b ? err.msg : "out of memory");
        }
        xf_diff d;
        tensor_diff_rel(a, b, (size_t)o->numel, exec_tolerance(o->kind), &d);
        free(a);
        free(b);
        compared++;
        bool over = d.n_over > 0;
        if (over && first < 0)
            first = i;
        char x[32], y[32], z[32], c[32];
        pr_num(x, sizeof x, d.max_abs);
        pr_num(y, sizeof y, d.tol);
        pr_num(z, sizeof z, d.nmse);
        pr_num(c, sizeof c, d.cosine);
        repl_out(r, "%-20s %-12s %-12s %-12s %-10s %s\n", o->name, x, y, z, c,
                 over ? (first == i ? "OVER <- first" : "OVER") : "ok");
    }
    if (compared == 0)
        return repl_errf(r, "compare: no computed tensor of this pass is in the reference");
    if (first >= 0)
        repl_out(r, "first tensor over tolerance: %s\n", p->ops[first].name);
    else
        repl_out(r, "%d tensors compared, all within tolerance\n", compared);
    return 0;
}

