/* view: a tensor by name, resolved once. The kinds, tried in this order:
 * NAME@cpu (the cpu backend with ref kernels on the same tokens: a shadow
 * stepper that replays the context once per pass), NAME@ref (the loaded
 * dump), a GGUF weight (dequantized, whole), an activation or alias of this
 * pass (read in place with VIEW_IN_PLACE, else copied); NAME@pass-K, a
 * tensor that the pass K passes back kept (passes.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec.h"
#include "patch.h"
#include "print.h"
#include "quant.h"
#include "refdump.h"
#include "repl.h"
#include "view.h"

/* names in a view come from files: escape them once, where they are filled */
static void view_name(repl_view *v, const char *name, const char *suffix)
{
    char esc[128];
    pr_escape(esc, sizeof esc, name, strlen(name));
    snprintf(v->name, sizeof v->name, "%s%s", esc, suffix);
}

static int view_alloc(repl_view *v, xf_err *err)
{
    v->data = malloc((size_t)(v->numel ? v->numel : 1) * sizeof(float));
    return v->data ? 0 : xf_err_set(err, "out of memory for %lld floats", (long long)v->numel);
}

/* shape, name and the "backend:variant" label of op of ex: built here only */
static void view_of_op(repl_view *v, xf_exec *ex, int op)
{
    const xf_op *o = &exec_program(ex)->ops[op];
    v->ndim = o->ndim;
    memcpy(v->shape, o->shape, sizeof v->shape);
    v->numel = o->numel;
    v->per_pass = true;
    snprintf(v->name, sizeof v->name, "%s", o->name);
    const kern_variant *kv = exec_kernel_selected(ex, o->kind);
    snprintf(v->what, sizeof v->what, "%s:%s", kern_backend_name(exec_backend(ex)), kv ? kv->name : "?");
    v->owed = exec_tensor_owed(ex, op);
}

/* Brings the shadow to this pass: earlier positions as one prefill, then
 * this pass with the same shape, once per pass. */
static int shadow_sync(xf_repl *r, xf_err *err)
{
    xf_where w;
    exec_where(r->ex, &w);
    if (!r->shadow) {
        r->shadow = exec_new(r->model, KERN_BACKEND_CPU, r->n_threads, err);
        if (!r->shadow || exec_kernel_select(r->shadow, -1, "ref", err) != 0)
            return -1;
        r->shadow_pass = 0;
    }
    if (r->shadow_pass == w.pass_no)
        return 0;
    int nh;
    const int32_t *h = exec_history(r->ex, &nh);
    xf_stop why;
    int rc = 0;
    if (w.pos0 > 0)
        rc = exec_begin(r->shadow, h, w.pos0, false, err) || exec_run(r->shadow, XF_RUN_FINISH, 0, &why, err);
    if (rc == 0)
        rc = exec_begin(r->shadow, h + w.pos0, w.n_tokens, w.pos0 > 0, err) ||
             exec_run(r->shadow, XF_RUN_FINISH, 0, &why, err);
    if (rc != 0) {
        r->shadow_pass = 0;
        return -1;
    }
    r->shadow_pass = w.pass_no;
    return 0;
}

static int view_cpu(xf_repl *r, const char *base, repl_view *v, xf_err *err)
{
    if (!r->ex)
        return xf_err_set(err, "no model with weights loaded");
    int op = exec_tensor_find(r->ex, base, err);
    if (op < 0 || shadow_sync(r, err) != 0)
        return -1;
    view_of_op(v, r->shadow, op);
    if (view_alloc(v, err) != 0 || exec_tensor_read(r->shadow, op, v->data, err) != 0)
        return -1;
    snprintf(v->name, sizeof v->name, "%s@cpu", exec_program(r->shadow)->ops[op].name);
    snprintf(v->what, sizeof v->what, "cpu:ref");
    /* The shadow replays the tokens, not the writes (set/ablate/patch): in a
     * written pass every op after a write differs by the write, which a
     * diff would otherwise show as a kernel's error (an attack, session 26). */
    if (exec_pass_written(r->ex) || exec_context_written(r->ex)) {
        snprintf(v->what, sizeof v->what, "cpu:ref, unwritten");
        repl_out(r,
                 "note: %s lacks the writes into %s:\n  after a write it differs by the write, not by a "
                 "kernel\n",
                 v->name, exec_pass_written(r->ex) ? "this pass" : "an earlier pass");
    }
    return 0;
}

static int view_ref(xf_repl *r, const char *base, repl_view *v, xf_err *err)
{
    const refdump *ref = r->ex ? exec_ref(r->ex) : NULL;
    if (!ref)
        return xf_err_set(err, "no reference loaded: `ref load FILE.safetensors`");
    char canon[XF_NAME_MAX];
    program_resolve_alias(base, canon, sizeof canon);
    const refdump_tensor *t = refdump_find(ref, canon);
    if (!t)
        t = refdump_find(ref, base);
    if (!t)
        return xf_err_set(err, "the reference has no tensor '%s'", base);
    if (t->ndim > 4)
        return xf_err_set(err, "'%s' has %d dimensions (at most 4)", base, t->ndim);
    v->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++)
        v->shape[i] = t->shape[i];
    v->numel = refdump_numel(t);
    if (view_alloc(v, err) != 0 || refdump_read_f32(ref, t, v->data, err) != 0)
        return -1;
    view_name(v, t->name, "@ref");
    snprintf(v->what, sizeof v->what, "ref %s", refdump_dtype_name(t->dtype));
    return 0;
}

static int view_weight(xf_repl *r, const char *base, const xf_weight *w, repl_view *v, xf_err *err)
{
    if ((uint64_t)w->rows * (uint64_t)w->cols > (1ull << 28))
        return xf_err_set(err, "%s has %lld elements: too large to load whole (print a slice of rows with "
                               "`quant`)", base, (long long)(w->rows * w->cols));
    v->ndim = w->rows == 1 ? 1 : 2;
    v->shape[0] = w->rows == 1 ? w->cols : w->rows;
    v->shape[1] = w->cols;
    v->numel = w->rows * w->cols;
    if (view_alloc(v, err) != 0)
        return -1;
    for (int64_t i = 0; i < w->rows; i++)
        if (model_weight_row(w, i, v->data + i * w->cols, err) != 0)
            return -1;
    view_name(v, w->name, "");
    const gguf_tensor *gt = gguf_find_tensor(r->model->gguf, w->name);
    snprintf(v->what, sizeof v->what, "weight %s", quant_type_name(gt ? gt->type : w->type));
    return 0;
}

static int view_any(xf_repl *r, const char *spec, unsigned flags, repl_view *v, xf_err *err)
{
    const char *at = strchr(spec, '@');
    if (at == spec)
        return xf_err_set(err, "'%s' names no tensor: write NAME%s (diff A B accepts `diff A %s`)", spec, spec, spec);
    /* the name before any @: any length (a long name is reported whole) */
    char *base = strndup(spec, at ? (size_t)(at - spec) : strlen(spec));
    if (!base)
        return xf_err_set(err, "out of memory");
    int rc;
    if (at && strcmp(at, "@cpu") == 0)
        rc = view_cpu(r, base, v, err);
    else if (at && strncmp(at, "@pass", 5) == 0)
        rc = !r->ex ? xf_err_set(err, "no model with weights loaded")
                    : passes_view(r, base, at, &v->ndim, v->shape, &v->numel, &v->data, v->name, sizeof v->name, err);
    else if (at && strcmp(at, "@ref") != 0)
        rc = xf_err_set(err, "'%s': NAME@ref (a dump loaded with `ref load`), NAME@cpu (the cpu reference) or "
                        "NAME@pass-K (a kept pass)",
                        spec);
    else if (at)
        rc = view_ref(r, base, v, err);
    else if (!r->model || r->model->vocab_only || !r->ex)
        rc = xf_err_set(err, "no model with weights loaded");
    else {
        const xf_weight *w = model_find_weight(r->model, base);
        if (w)
            rc = view_weight(r, base, w, v, err);
        else {
            int op = exec_tensor_find(r->ex, base, err);
            rc = -1;
            if (op >= 0) {
                view_of_op(v, r->ex, op);
                v->op = op;
                /* not computed yet: the read below says so */
                if ((flags & VIEW_IN_PLACE) && exec_tensor_ready(r->ex, op))
                    rc = 0;
                else if (view_alloc(v, err) == 0 && exec_tensor_read(r->ex, op, v->data, err) == 0)
                    rc = 0;
            }
        }
    }
    free(base);
    return rc;
}

int view_resolve(xf_repl *r, const char *spec, unsigned flags, repl_view *v, xf_err *err)
{
    memset(v, 0, sizeof *v);
    v->op = -1;
    if (view_any(r, spec, flags, v, err) != 0) {
        repl_view_free(v);
        return -1;
    }
    return 0;
}

int repl_view_load(xf_repl *r, const char *spec, repl_view *v, xf_err *err)
{
    return view_resolve(r, spec, 0, v, err);
}

void repl_view_free(repl_view *v)
{
    free(v->data);
    v->data = NULL;
}

int view_gather(xf_repl *r, const repl_view *v, const int64_t *idx, int64_t n, float *dst, xf_err *err)
{
    if (!v->data)
        return exec_tensor_gather(r->ex, v->op, idx, n, dst, err);
    for (int64_t k = 0; k < n; k++)
        dst[k] = v->data[idx[k]];
    return 0;
}

/* Levenshtein distance, capped: names are short, and past the cap nothing is suggested */
static int edit_distance(const char *a, const char *b, int cap)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63 || (la > lb ? la - lb : lb - la) > (size_t)cap)
        return cap + 1;
    int d[64][64];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            int x = d[i - 1][j] + 1, y = d[i][j - 1] + 1;
            d[i][j] = c < x ? (c < y ? c : y) : (x < y ? x : y);
        }
    return d[la][lb];
}

/* the candidate names: this pass's ops (canonical), then the file's weights */
static const char *candidate(xf_repl *r, int i)
{
    const xf_program *p = r->ex ? exec_program(r->ex) : NULL;
    int n_ops = p && p->ops ? p->n_ops : 0;
    if (i < n_ops)
        return p->ops[i].name;
    i -= n_ops;
    return r->model && i < r->model->n_weights ? r->model->weights[i].name : NULL;
}

void view_suggest(xf_repl *r, const char *name, char *buf, size_t size)
{
    buf[0] = '\0';
    if (!r->model)
        return;
    int layer = -1, n = 0;
    if (sscanf(name, "blk.%d.%n", &layer, &n) == 1 && n > 0 && (layer < 0 || layer >= r->model->n_layer)) {
        snprintf(buf, size, "; this model has layers 0..%d", r->model->n_layer - 1);
        return;
    }
    /* one edit for short names, two for longer ones: more suggests nonsense */
    int cap = strlen(name) < 8 ? 1 : 2, best = cap + 1;
    const char *pick = NULL;
    for (int i = 0; candidate(r, i); i++) {
        int d = edit_distance(name, candidate(r, i), cap);
        if (d == 0)
            return; /* it exists, only not where it was looked for: "did you mean" itself misleads */
        if (d < best) {
            best = d;
            pick = candidate(r, i);
        }
    }
    if (pick) {
        char esc[160];
        pr_escape(esc, sizeof esc, pick, strlen(pick));
        snprintf(buf, size, "; did you mean %s?", esc);
    }
}

int view_load_or_say(xf_repl *r, const char *spec, unsigned flags, repl_view *v)
{
    xf_err err = {0};
    if (view_resolve(r, spec, flags, v, &err) == 0)
        return 0;
    char hint[200] = "";
    if (strstr(err.msg, "no tensor named") || strstr(err.msg, "the reference has no tensor")) {
        const char *at = strchr(spec, '@');
        char *base = strndup(spec, at ? (size_t)(at - spec) : strlen(spec));
        if (base)
            view_suggest(r, base, hint, sizeof hint);
        free(base);
    }
    return repl_errf(r, "%s%s", err.msg, hint);
}
