/* exec_break: breakpoints of exec: their patterns (checked against the
 * model's op names when set), their conditions (parsed and validated when
 * set), the cache of which breakpoint matches which op, and their
 * evaluation right after an op has run. */
#include "exec_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COND_ACCEPTED                                                                                        \
    "nan, inf, absmax>X or nmse(ref)>X (X a finite number >= 0), or a Lua expression of t, name and op"

static const char *skip_ws(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

static bool word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* "> X" to the end of the text: X finite and >= 0, since absmax and NMSE
 * are never negative (a negative X would always stop, inf or NaN never) */
static int parse_threshold(const char *s, const char *cond, double *x, xf_err *err)
{
    s = skip_ws(s);
    if (*s != '>')
        return xf_err_set(err, "bad condition '%s': expected '>' and a number; accepted: " COND_ACCEPTED, cond);
    s = skip_ws(s + 1);
    char *end;
    double v = strtod(s, &end);
    if (end == s || *skip_ws(end) != '\0')
        return xf_err_set(err, "bad condition '%s': expected one number after '>'; accepted: " COND_ACCEPTED,
                          cond);
    if (!isfinite(v) || v < 0)
        return xf_err_set(err, "bad condition '%s': the threshold must be a finite number >= 0", cond);
    *x = v;
    return 0;
}

/* The built-in conditions. 0 parsed (kind, x); 1 not built-in: the caller
 * may take it as an expression of its own (Lua); -1 refused (err says what
 * is accepted): text that starts like a built-in condition but is not one,
 * or a single word (a typo of one, or a Lua global that is nil and would
 * never stop), is refused when set rather than never firing. */
static int parse_cond(const char *cond, xf_cond_kind *kind, double *x, xf_err *err)
{
    const char *c = skip_ws(cond), *w = c;
    while (word_char(*w))
        w++;
    size_t wl = (size_t)(w - c);
    const char *rest = skip_ws(w);
    if ((wl == 3 && strncmp(c, "nan", 3) == 0) || (wl == 3 && strncmp(c, "inf", 3) == 0)) {
        if (*rest != '\0')
            return xf_err_set(err, "bad condition '%s': nothing may follow '%.3s'; accepted: " COND_ACCEPTED, cond,
                              c);
        *kind = c[0] == 'n' ? XF_COND_NAN : XF_COND_INF;
        return 0;
    }
    if (wl == 6 && strncmp(c, "absmax", 6) == 0) {
        *kind = XF_COND_ABSMAX_GT;
        return parse_threshold(w, cond, x, err);
    }
    if (wl == 4 && strncmp(c, "nmse", 4) == 0) {
        const char *r = skip_ws(w);
        if (strncmp(r, "(ref)", 5) != 0)
            return xf_err_set(err, "bad condition '%s': the NMSE compares with the reference: nmse(ref)>X", cond);
        *kind = XF_COND_NMSE_REF_GT;
        return parse_threshold(r + 5, cond, x, err);
    }
    if (wl > 0 && *rest == '\0')
        return xf_err_set(err, "bad condition '%s'; accepted: " COND_ACCEPTED, cond);
    return 1;
}

/* nmse(ref)>X needs a reference now, with a tensor for some op the pattern
 * matches: else it could never stop (break_hits finds nothing to compare). */
static int check_ref_cond(const xf_exec *ex, const char *pattern, const char *cond, char **names, int nn,
                          xf_err *err)
{
    if (!ex->ref)
        return xf_err_set(err, "condition '%s': load a reference first: ref load FILE", cond);
    for (int i = 0; i < nn; i++)
        if (program_glob_match(pattern, names[i]) && refdump_find(ex->ref, names[i]))
            return 0;
    return xf_err_set(err, "condition '%s': the reference has no tensor for the ops that '%s' matches", cond,
                      pattern);
}

int exec_break_add(xf_exec *ex, const char *pattern, const char *cond, xf_cond_fn fn, void *ud,
                   void (*ud_free)(void *), xf_err *err)
{
    xf_cond_kind kind = XF_COND_ALWAYS;
    double x = 0;
    if (!pattern || !*pattern)
        return xf_err_set(err, "break needs a pattern (e.g. blk.*.kq_soft)");
    int pc = cond && *cond ? parse_cond(cond, &kind, &x, err) : 0;
    if (pc < 0)
        return -1;
    if (pc > 0) {
        /* "unknown condition": the caller may offer it again as an expression (fn) */
        if (!fn)
            return xf_err_set(err, "unknown condition '%s' (accepted: " COND_ACCEPTED ")", cond);
        kind = XF_COND_FN;
    }
    if (!cond && fn)
        kind = XF_COND_FN;
    /* a pattern that matches nothing is almost always a typo: say so now */
    char **names;
    int nn;
    if (program_names(ex->m, &names, &nn, err) != 0)
        return -1;
    bool any = false;
    for (int i = 0; i < nn && !any; i++)
        any = program_glob_match(pattern, names[i]);
    int rc = !any ? xf_err_set(err, "pattern '%s' matches no op of this model", pattern)
             : kind == XF_COND_NMSE_REF_GT ? check_ref_cond(ex, pattern, cond, names, nn, err)
                                           : 0;
    program_names_free(names, nn);
    if (rc != 0)
        return -1;
    if (ex->n_brk == ex->brk_cap) {
        int cap = ex->brk_cap ? 2 * ex->brk_cap : 8;
        xf_break *nb = realloc(ex->brk, (size_t)cap * sizeof *nb);
        if (!nb)
            return xf_err_set(err, "out of memory");
        ex->brk = nb;
        ex->brk_cap = cap;
    }
    xf_break *b = &ex->brk[ex->n_brk];
    memset(b, 0, sizeof *b);
    b->pattern = strdup(pattern);
    b->cond_text = cond && *cond ? strdup(cond) : NULL;
    if (!b->pattern || (cond && *cond && !b->cond_text)) {
        free(b->pattern);
        free(b->cond_text);
        return xf_err_set(err, "out of memory");
    }
    b->id = ex->next_brk_id++;
    b->cond = kind;
    b->x = x;
    b->fn = kind == XF_COND_FN ? fn : NULL;
    b->ud = ud;
    b->ud_free = ud_free;
    ex->n_brk++;
    ex->last_brk = NULL;
    ex->bmatch_ops = -1;
    ex->brk_gen++;
    return b->id;
}

int exec_break_delete(xf_exec *ex, int id, xf_err *err)
{
    int w = 0;
    bool found = false;
    for (int i = 0; i < ex->n_brk; i++) {
        xf_break *b = &ex->brk[i];
        if (id == -1 || b->id == id) {
            found = true;
            free(b->pattern);
            free(b->cond_text);
            if (b->ud_free)
                b->ud_free(b->ud);
            continue;
        }
        ex->brk[w++] = *b;
    }
    ex->n_brk = w;
    ex->last_brk = NULL;
    ex->bmatch_ops = -1;
    ex->brk_gen++;
    if (!found && id != -1)
        return xf_err_set(err, "no breakpoint %d (see `info breaks`)", id);
    return 0;
}

const xf_break *exec_breaks(const xf_exec *ex, int *n)
{
    *n = ex->n_brk;
    return ex->brk;
}

/* Which breakpoints match which ops, computed once per change of the
 * breakpoints: globbing every pattern against every op name on every op
 * would cost more than a decode step's kernels. */
int exec_brk_cache(xf_exec *ex, xf_err *err)
{
    int n = ex->prog.n_ops;
    if (ex->bmatch_ops == n)
        return 0;
    size_t cells = (size_t)(ex->n_brk > 0 ? ex->n_brk : 1) * (size_t)n;
    unsigned char *m = realloc(ex->bmatch, cells);
    if (m)
        ex->bmatch = m;
    bool *any = realloc(ex->bany, (size_t)n * sizeof *any);
    if (any)
        ex->bany = any;
    bool *host = realloc(ex->bhost, (size_t)n * sizeof *host);
    if (host)
        ex->bhost = host;
    bool *dev = realloc(ex->bdev, (size_t)n * sizeof *dev);
    if (dev)
        ex->bdev = dev;
    if (!m || !any || !host || !dev)
        return xf_err_set(err, "out of memory");
    for (int i = 0; i < n; i++) {
        any[i] = host[i] = dev[i] = false;
        for (int k = 0; k < ex->n_brk; k++) {
            bool hit = program_glob_match(ex->brk[k].pattern, ex->prog.ops[i].name);
            m[(size_t)k * (size_t)n + (size_t)i] = hit;
            if (!hit)
                continue;
            any[i] = true;
            if (exec_cond_on_device(ex->brk[k].cond))
                dev[i] = true;
            else
                host[i] = true;
        }
    }
    ex->bmatch_ops = n;
    return 0;
}

bool exec_cond_on_device(xf_cond_kind c) { return c == XF_COND_NAN || c == XF_COND_INF || c == XF_COND_ABSMAX_GT; }

/* 1 if breakpoint k stops after op i (exec_brk_cache is current) */
static int break_hits(xf_exec *ex, int k, int i, xf_err *err)
{
    xf_break *b = &ex->brk[k];
    const xf_op *op = &ex->prog.ops[i];
    if (!ex->bmatch[(size_t)k * (size_t)ex->bmatch_ops + (size_t)i])
        return 0;
    if (b->cond == XF_COND_ALWAYS)
        return 1;
    if (b->cond == XF_COND_FN)
        return b->fn(b->ud, ex, i, err);
    if (b->cond != XF_COND_NMSE_REF_GT) {
        /* reduced where the tensor lives: on the GPU 8 numbers come back, not the tensor */
        xf_stats s;
        if (exec_tensor_stats(ex, i, &s, err) != 0)
            return -1;
        return b->cond == XF_COND_NAN ? s.n_nan > 0 : b->cond == XF_COND_INF ? s.n_inf > 0 : s.absmax > b->x;
    }
    float *h = malloc((size_t)op->numel * sizeof(float));
    if (!h)
        return xf_err_set(err, "out of memory");
    int r = -1;
    if (exec_tensor_read(ex, i, h, err) != 0)
        goto out;
    if (b->cond == XF_COND_NMSE_REF_GT) {
        const refdump_tensor *t = ex->ref ? refdump_find(ex->ref, op->name) : NULL;
        if (!t) {
            r = 0; /* nothing to compare with: the condition cannot hold */
            goto out;
        }
        if (!tensor_shape_same(t->ndim, t->shape, op->ndim, op->shape)) {
            char a[96], c[96];
            tensor_shape_str(t->ndim, t->shape, a, sizeof a);
            tensor_shape_str(op->ndim, op->shape, c, sizeof c);
            xf_err_set(err, "%s: nmse(ref): the reference is %s, the tensor %s", op->name, a, c);
            goto out;
        }
        float *rv = malloc((size_t)op->numel * sizeof(float));
        if (!rv || refdump_read_f32(ex->ref, t, rv, err) != 0) {
            if (!rv)
                xf_err_set(err, "out of memory");
            free(rv);
            goto out;
        }
        xf_diff d;
        tensor_diff(h, rv, (size_t)op->numel, INFINITY, &d);
        free(rv);
        /* NaN: a NaN or Inf the reference does not have, which is over any X */
        r = isnan(d.nmse) || d.nmse > b->x;
        goto out;
    }
out:
    free(h);
    return r;
}

/* The breakpoints after op i (just run): 1 if one stopped (why set), 0 if
 * none, -1 on error. */
int exec_breaks_after(xf_exec *ex, int i, xf_stop *why, xf_err *err)
{
    if (!ex->bany[i])
        return 0;
    for (int k = 0; k < ex->n_brk; k++) {
        int h = break_hits(ex, k, i, err);
        if (h < 0)
            return -1;
        if (h > 0) {
            ex->brk[k].hits++;
            ex->last_brk = &ex->brk[k];
            if (ex->pc >= ex->prog.n_ops)
                ex->n_past = ex->prog.pos0 + ex->prog.n_tokens;
            *why = XF_STOP_BREAK;
            return 1;
        }
    }
    return 0;
}

