/* patch: `set`, `ablate` and `patch` (patch.h). Each resolves its target
 * to an op of this pass and the flat indices of a numpy-like slice, the
 * values to write (a number everywhere, a tensor any view.c resolves, a
 * tensor of a safetensors dump), and hands both to exec_tensor_write; the
 * engine refuses an op that has not run or whose readers already ran. The
 * intervention is noted on the pass as typed: `where`, the prompt, `dump`
 * metadata and `passes` show it. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "exec.h"
#include "patch.h"
#include "print.h"
#include "refdump.h"
#include "repl.h"
#include "tensor.h"
#include "view.h"

/* a target or a source: "NAME" or "NAME[SLICE]", blanks around it dropped */
typedef struct spec {
    char *name;        /* malloc'd */
    const char *slice; /* into the text given, "" for none */
} spec;

static int spec_split(const char *text, size_t len, spec *s, char *slice_buf, size_t slice_size, xf_err *err)
{
    while (len && (*text == ' ' || *text == '\t'))
        text++, len--;
    while (len && (text[len - 1] == ' ' || text[len - 1] == '\t'))
        len--;
    if (len == 0)
        return xf_err_set(err, "a tensor name is missing");
    const char *b = memchr(text, '[', len);
    size_t nl = b ? (size_t)(b - text) : len;
    while (nl && text[nl - 1] == ' ')
        nl--;
    size_t sl = b ? len - (size_t)(b - text) : 0;
    if (sl >= slice_size)
        return xf_err_set(err, "the slice is too long");
    memcpy(slice_buf, b ? b : "", sl);
    slice_buf[sl] = '\0';
    s->slice = slice_buf;
    if (!(s->name = strndup(text, nl)))
        return xf_err_set(err, "out of memory");
    return 0;
}

/* the flat indices of slice in a tensor of this shape (malloc'd) */
static int select_idx(const char *what, const char *slice, int ndim, const int64_t *shape, int64_t **idx,
                      int64_t *n, xf_err *err)
{
    xf_slice sl;
    xf_selection sel;
    xf_err e = {0};
    if (tensor_slice_parse(slice, &sl, &e) != 0 || tensor_slice_resolve(&sl, ndim, shape, &sel, &e) != 0)
        return xf_err_set(err, "%s%s: %s", what, slice, e.msg);
    *n = sel.count;
    *idx = malloc((size_t)(sel.count ? sel.count : 1) * sizeof **idx);
    if (!*idx)
        return xf_err_set(err, "out of memory");
    for (int64_t k = 0; k < sel.count; k++)
        (*idx)[k] = tensor_selection_index(&sel, k);
    return 0;
}

static void shape_text(char *buf, size_t size, int ndim, const int64_t *shape)
{
    tensor_shape_str(ndim, shape, buf, size);
}

/* The values of rhs for a target of n elements (tshape, tidx: the target's
 * full shape and selection): a number (one value), or a tensor by name,
 * sliced as written, or else whole when its size is n, or else with the
 * target's slice when its shape is the target's. */
/* VALUE as a float32: 0 set, 1 not a number (a tensor name then), -1 a
 * number that float32 cannot hold (said in err). nan, inf and -inf are
 * values on purpose (planting a NaN is how one tries `break ... if nan`);
 * a finite number past float32's largest would silently become inf, so it
 * is refused; one too small rounds to 0 or a subnormal, as any f32 store. */
static int rhs_number(const char *rhs, float *out, xf_err *err)
{
    char *end;
    errno = 0;
    double d = strtod(rhs, &end);
    if (!*rhs || *end)
        return 1;
    bool overflow = (errno == ERANGE && fabs(d) > 1) || (isfinite(d) && fabs(d) > FLT_MAX);
    if (overflow)
        return xf_err_set(err, "%s is outside float32's range (largest %g; nan, inf and -inf are values too)",
                          rhs, (double)FLT_MAX);
    *out = (float)d;
    return 0;
}

static int rhs_values(xf_repl *r, const char *rhs, const xf_op *t, const int64_t *tidx, int64_t n, float **vals,
                      int64_t *nv, xf_err *err)
{
    float f = 0;
    int num = rhs_number(rhs, &f, err);
    if (num < 0)
        return -1;
    if (num == 0) {
        if (!(*vals = malloc(sizeof **vals)))
            return xf_err_set(err, "out of memory");
        (*vals)[0] = f;
        *nv = 1;
        return 0;
    }
    spec s;
    char slice[256];
    if (spec_split(rhs, strlen(rhs), &s, slice, sizeof slice, err) != 0)
        return -1;
    repl_view v;
    int rc = view_resolve(r, s.name, 0, &v, err);
    free(s.name);
    if (rc != 0)
        return -1;
    int64_t *idx = NULL, m = v.numel;
    char a[64], b[64];
    shape_text(a, sizeof a, v.ndim, v.shape);
    shape_text(b, sizeof b, t->ndim, t->shape);
    if (*slice && select_idx(v.name, slice, v.ndim, v.shape, &idx, &m, err) != 0)
        rc = -1;
    else if (!*slice && m != n) {
        bool same = v.ndim == t->ndim && memcmp(v.shape, t->shape, (size_t)t->ndim * sizeof *v.shape) == 0;
        if (!same)
            rc = xf_err_set(err, "%s is %s: neither the %lld elements to write nor the shape of %s %s", v.name, a,
                            (long long)n, t->name, b);
        m = n;
    }
    if (rc == 0 && m != n)
        rc = xf_err_set(err, "%s%s has %lld elements, the target %lld", v.name, slice, (long long)m, (long long)n);
    if (rc == 0 && !(*vals = malloc((size_t)(n ? n : 1) * sizeof **vals)))
        rc = xf_err_set(err, "out of memory");
    for (int64_t k = 0; rc == 0 && k < n; k++)
        (*vals)[k] = v.data[idx ? idx[k] : (*slice || v.numel == n) ? k : tidx[k]];
    *nv = n;
    free(idx);
    repl_view_free(&v);
    return rc;
}

int patch_set(xf_repl *r, const char *target, const char *rhs, const float *vals, int64_t nv, const char *note,
              int64_t *n_out, xf_err *err)
{
    spec s;
    char slice[256];
    *n_out = 0;
    if (spec_split(target, strlen(target), &s, slice, sizeof slice, err) != 0)
        return -1;
    int op = exec_tensor_find(r->ex, s.name, err);
    free(s.name);
    if (op < 0)
        return -1;
    const xf_op *o = &exec_program(r->ex)->ops[op];
    int64_t *idx = NULL, n = 0;
    float *own = NULL;
    int rc = select_idx(o->name, slice, o->ndim, o->shape, &idx, &n, err);
    if (rc == 0 && rhs)
        rc = rhs_values(r, rhs, o, idx, n, &own, &nv, err);
    if (rc == 0 && n == 0)
        rc = xf_err_set(err, "%s%s selects no element", o->name, slice);
    if (rc == 0)
        rc = exec_tensor_write(r->ex, op, idx, n, own ? own : vals, nv, err);
    if (rc == 0) {
        char *text = NULL;
        if (!note && asprintf(&text, "set %s%s = %s", o->name, slice, rhs ? rhs : "{values}") < 0)
            text = NULL;
        rc = exec_note_intervention(r->ex, note ? note : text ? text : "set", err);
        free(text);
        *n_out = n;
    }
    free(idx);
    free(own);
    return rc;
}

/* "blk.L.WORD" exactly: L, or -1 */
static int layer_of(const char *what, const char *word, int n_layer)
{
    int l = -1, end = 0;
    char fmt[32];
    snprintf(fmt, sizeof fmt, "blk.%%d.%s%%n", word);
    if (sscanf(what, fmt, &l, &end) != 1 || what[end] || l < 0 || l >= n_layer)
        return -1;
    return l;
}

int patch_ablate(xf_repl *r, const char *what, long head, char *target, size_t size, int64_t *n_out, xf_err *err)
{
    const xf_model *m = r->model;
    int l;
    char note[128];
    float zero = 0;
    if (head >= 0) {
        if ((l = layer_of(what, "head", m->n_layer)) < 0)
            return xf_err_set(err, "ablate: '%s' is not blk.L.head with L in 0..%d", what, m->n_layer - 1);
        if (head >= m->n_head)
            return xf_err_set(err, "ablate: head %ld: this model has heads 0..%d", head, m->n_head - 1);
        int dh = m->head_dim;
        snprintf(target, size, "blk.%d.kqv[:, %ld:%ld]", l, head * dh, (head + 1) * dh);
        snprintf(note, sizeof note, "ablate blk.%d.head %ld", l, head);
    } else {
        if ((l = layer_of(what, "ffn", m->n_layer)) < 0)
            return xf_err_set(err, "ablate: '%s' is not blk.L.ffn or blk.L.head H (L in 0..%d)", what,
                              m->n_layer - 1);
        snprintf(target, size, "blk.%d.ffn_out", l);
        snprintf(note, sizeof note, "ablate blk.%d.ffn", l);
    }
    return patch_set(r, target, NULL, &zero, 1, note, n_out, err);
}

/* "blk.2.out[3, 0:8]: 8 of 1920 elements written" */
static void say_written(xf_repl *r, const char *target, int64_t n)
{
    char esc[300];
    pr_escape(esc, sizeof esc, target, strlen(target));
    xf_where w;
    exec_where(r->ex, &w);
    repl_out(r, "%s: %lld element%s written; pass %d is marked written (`where`)\n", esc, (long long)n,
             n == 1 ? "" : "s", w.pass_no);
}

int cmd_set(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)argc;
    (void)argv;
    const char *eq = strchr(rest, '=');
    if (!eq || !eq[1])
        return repl_errf(r, "usage: set NAME[SLICE] = VALUE | NAME2[SLICE] | NAME@ref | NAME@cpu | NAME@pass-K");
    while (*rest == ' ' || *rest == '\t')
        rest++;
    size_t tl = (size_t)(eq - rest);
    while (tl && (rest[tl - 1] == ' ' || rest[tl - 1] == '\t'))
        tl--;
    char *target = strndup(rest, tl);
    const char *rhs = eq + 1;
    while (*rhs == ' ' || *rhs == '\t')
        rhs++;
    char *rhs_t = strdup(rhs);
    if (!target || !rhs_t) {
        free(target);
        free(rhs_t);
        return repl_errf(r, "out of memory");
    }
    for (size_t n = strlen(rhs_t); n && (rhs_t[n - 1] == ' ' || rhs_t[n - 1] == '\t');)
        rhs_t[--n] = '\0';
    xf_err err = {0};
    int64_t n = 0;
    int rc = patch_set(r, target, rhs_t, NULL, 0, NULL, &n, &err);
    if (rc == 0)
        say_written(r, target, n);
    free(target);
    free(rhs_t);
    return rc ? repl_errf(r, "set: %s", err.msg) : 0;
}

int cmd_ablate(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    long head = -1;
    if (argc == 3 && !args_long(argv[2], 0, 1 << 20, &head))
        return repl_errf(r, "ablate: '%s' is not a head number", argv[2]);
    if (argc != 2 && argc != 3)
        return repl_errf(r, "usage: ablate blk.L.head H | ablate blk.L.ffn");
    if (argc == 2 && strstr(argv[1], ".head"))
        return repl_errf(r, "usage: ablate blk.L.head H (which head?)");
    char target[128];
    int64_t n = 0;
    xf_err err = {0};
    if (patch_ablate(r, argv[1], head, target, sizeof target, &n, &err) != 0)
        return repl_errf(r, "%s%s", strncmp(err.msg, "ablate", 6) ? "ablate: " : "", err.msg);
    say_written(r, target, n);
    return 0;
}

/* the tensor of the dump for op o, read whole into *vals; errors name the file and both shapes */
static int dump_values(xf_repl *r, const char *path, const xf_op *o, float **vals, xf_err *err)
{
    char esc[300];
    pr_escape(esc, sizeof esc, path, strlen(path));
    xf_err e = {0};
    refdump *d = refdump_open(path, &e);
    if (!d)
        return xf_err_set(err, "%s", e.msg);
    const refdump_tensor *t = refdump_find(d, o->name);
    int rc = 0;
    char a[64], b[64];
    if (!t)
        rc = xf_err_set(err, "%s has no tensor %s", esc, o->name);
    else {
        int64_t sh[8];
        int nd = t->ndim < 8 ? t->ndim : 8;
        for (int i = 0; i < nd; i++)
            sh[i] = t->shape[i];
        bool same = tensor_shape_same(nd, sh, o->ndim, o->shape);
        shape_text(a, sizeof a, nd > 4 ? 4 : nd, sh);
        shape_text(b, sizeof b, o->ndim, o->shape);
        if (!same)
            rc = xf_err_set(err, "%s: %s is %s there and %s in this pass", esc, o->name, a, b);
    }
    if (rc == 0 && !(*vals = malloc((size_t)o->numel * sizeof **vals)))
        rc = xf_err_set(err, "out of memory");
    if (rc == 0 && refdump_read_f32(d, t, *vals, &e) != 0)
        rc = xf_err_set(err, "%s", e.msg);
    /* an F64 value past float32's range would be written as inf, as `set`
     * refuses a number past it (a NaN or an inf stored as such is written) */
    for (int64_t i = 0; rc == 0 && t->dtype == REFDUMP_F64 && i < o->numel; i++) {
        double v;
        memcpy(&v, (const uint8_t *)t->data + 8 * i, sizeof v);
        if (isfinite(v) && fabs(v) > FLT_MAX)
            rc = xf_err_set(err, "%s: %s element %lld (F64 at byte %llu) is %g, outside float32's range", esc,
                            o->name, (long long)i, (unsigned long long)(t->file_offset + 8 * (uint64_t)i), v);
    }
    (void)r;
    refdump_close(d);
    return rc;
}

int cmd_patch(xf_repl *r, int argc, char **argv, const char *rest)
{
    const char *usage = "usage: patch NAME[SLICE] from FILE.safetensors";
    const char *from = strstr(rest, " from ");
    /* FILE is the last word, "quoted" when it holds blanks (args_path) */
    if (!from || argc < 4 || strcmp(argv[argc - 2], "from") != 0)
        return repl_errf(r, "%s", usage);
    const char *path = args_path(argv[argc - 1]);
    spec s;
    char slice[256];
    xf_err err = {0};
    if (spec_split(rest, (size_t)(from - rest), &s, slice, sizeof slice, &err) != 0)
        return repl_errf(r, "patch: %s", err.msg);
    int op = exec_tensor_find(r->ex, s.name, &err);
    free(s.name);
    if (op < 0)
        return repl_errf(r, "patch: %s", err.msg);
    const xf_op *o = &exec_program(r->ex)->ops[op];
    float *all = NULL, *vals = NULL;
    int64_t *idx = NULL, n = 0;
    int rc = dump_values(r, path, o, &all, &err);
    if (rc == 0)
        rc = select_idx(o->name, slice, o->ndim, o->shape, &idx, &n, &err);
    if (rc == 0 && !(vals = malloc((size_t)(n ? n : 1) * sizeof *vals)))
        rc = xf_err_set(&err, "out of memory");
    for (int64_t k = 0; rc == 0 && k < n; k++)
        vals[k] = all[idx[k]];
    char *note = NULL, target[XF_NAME_MAX + 256];
    snprintf(target, sizeof target, "%s%s", o->name, slice);
    if (rc == 0 && asprintf(&note, "patch %s from %s", target, path) < 0)
        rc = xf_err_set(&err, "out of memory");
    int64_t done = 0;
    if (rc == 0)
        rc = patch_set(r, target, NULL, vals, n, note, &done, &err);
    free(note);
    free(all);
    free(vals);
    free(idx);
    if (rc != 0)
        return repl_errf(r, "patch: %s", err.msg);
    say_written(r, target, done);
    return 0;
}
