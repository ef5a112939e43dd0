/* exec_tensor: access to the activations of the current pass where they
 * live: read whole, gather the shown elements, statistics, find by name or
 * alias, the last logits. */
#include "exec_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool exec_tensor_ready(const xf_exec *ex, int op)
{
    return ex->active && op >= 0 && op < ex->prog.n_ops && ex->ready[op];
}

int exec_tensor_read(xf_exec *ex, int op, float *dst, xf_err *err)
{
    if (!ex->active)
        return xf_err_set(err, "no pass yet (start one with `run TEXT` or `run --tokens 1,2,3`)");
    if (op < 0 || op >= ex->prog.n_ops)
        return xf_err_set(err, "no op %d", op);
    if (!ex->ready[op])
        return xf_err_set(err, "%s is not computed yet in this pass (next op: %s)", ex->prog.ops[op].name,
                          ex->pc < ex->prog.n_ops ? ex->prog.ops[ex->pc].name : "none");
    if (exec_lazy_settle(ex, op, err) != 0)
        return -1;
    if (ex->mem->to_host(&ex->ctx, dst, ex->buf[op], (size_t)ex->prog.ops[op].numel * sizeof(float)) != 0)
        return xf_err_set(err, "%s: copying from the device failed", ex->prog.ops[op].name);
    return 0;
}

/* also computes what op still owes (exec_lazy_settle) */
static int ready_or_err(xf_exec *ex, int op, xf_err *err)
{
    if (!ex->active)
        return xf_err_set(err, "no pass yet (start one with `run TEXT` or `run --tokens 1,2,3`)");
    if (op < 0 || op >= ex->prog.n_ops)
        return xf_err_set(err, "no op %d", op);
    if (!ex->ready[op])
        return xf_err_set(err, "%s is not computed yet in this pass (next op: %s)", ex->prog.ops[op].name,
                          ex->pc < ex->prog.n_ops ? ex->prog.ops[ex->pc].name : "none");
    return exec_lazy_settle(ex, op, err);
}

int exec_tensor_gather(xf_exec *ex, int op, const int64_t *idx, int64_t n, float *dst, xf_err *err)
{
    if (ready_or_err(ex, op, err) != 0)
        return -1;
    if (n <= 0)
        return 0;
    int64_t lo = idx[0], hi = idx[0], numel = ex->prog.ops[op].numel;
    for (int64_t k = 1; k < n; k++) {
        lo = idx[k] < lo ? idx[k] : lo;
        hi = idx[k] > hi ? idx[k] : hi;
    }
    if (lo < 0 || hi >= numel)
        return xf_err_set(err, "%s: index out of range", ex->prog.ops[op].name);
    /* one copy of the span the indices lie in, wherever the memory is */
    const float *src = (const float *)ex->buf[op];
    size_t span = (size_t)(hi - lo + 1);
    float *h = malloc(span * sizeof(float));
    if (!h)
        return xf_err_set(err, "out of memory");
    int rc = ex->mem->to_host(&ex->ctx, h, src + lo, span * sizeof(float));
    if (rc == 0)
        for (int64_t k = 0; k < n; k++)
            dst[k] = h[idx[k] - lo];
    free(h);
    return rc == 0 ? 0 : xf_err_set(err, "%s: copying from the device failed", ex->prog.ops[op].name);
}

int exec_tensor_stats(xf_exec *ex, int op, xf_stats *st, xf_err *err)
{
    if (ready_or_err(ex, op, err) != 0)
        return -1;
    const xf_op *o = &ex->prog.ops[op];
    if (!ex->mem->stats) {
        tensor_stats((const float *)ex->buf[op], (size_t)o->numel, st);
        return 0;
    }
    double v[8];
    if (ex->mem->stats(&ex->ctx, (const float *)ex->buf[op], o->numel, v) != 0)
        return xf_err_set(err, "%s: statistics on the %s device failed", o->name, kern_backend_name(ex->backend));
    memset(st, 0, sizeof *st);
    st->n = (int64_t)v[5];
    st->n_nan = (int64_t)v[6];
    st->n_inf = (int64_t)v[7];
    if (st->n == st->n_nan + st->n_inf) { /* no finite value: as tensor_stats */
        st->min = st->max = st->mean = st->std = NAN;
        return 0;
    }
    st->min = v[0];
    st->max = v[1];
    st->mean = v[2];
    st->std = v[3];
    st->absmax = v[4];
    return 0;
}

int exec_tensor_find(const xf_exec *ex, const char *name, xf_err *err)
{
    if (!ex->active)
        return xf_err_set(err, "no pass yet (start one with `run TEXT` or `run --tokens 1,2,3`)");
    int i = program_find(&ex->prog, name);
    if (i >= 0)
        return i;
    char canon[XF_NAME_MAX];
    program_resolve_alias(name, canon, sizeof canon);
    i = program_find(&ex->prog, canon);
    if (i >= 0)
        return i;
    return xf_err_set(err, "no tensor named '%s' in this pass (try `list` or tab completion)", name);
}

int exec_last_logits(xf_exec *ex, float *dst, xf_err *err)
{
    if (!ex->active || ex->pc < ex->prog.n_ops)
        return xf_err_set(err, "no complete pass: logits are not computed yet");
    int li = ex->prog.n_ops - 1;
    const xf_op *op = &ex->prog.ops[li];
    size_t V = (size_t)op->shape[1];
    const float *src = (const float *)ex->buf[li] + (size_t)(op->shape[0] - 1) * V;
    if (ex->mem->to_host(&ex->ctx, dst, src, V * sizeof(float)) != 0)
        return xf_err_set(err, "logits: copying from the device failed");
    return 0;
}

