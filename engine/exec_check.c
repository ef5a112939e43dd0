/* exec_check: check mode: the cpu ref kernel of an op run on copies of the
 * inputs that op actually got, compared with its output; and the one table
 * of default tolerances that check and compare share. */
#include "exec_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static const double k_tol[KERN_OP_COUNT] = {
    /* One table of default tolerances, relative to max|ref|. 1e-4 is the
     * contract with the HF float64 dumps; f32 storage and f32-accumulating
     * optimized kernels stay far below it on these sizes. */
    [KERN_OP_EMBD] = 1e-4,   [KERN_OP_NORM] = 1e-4, [KERN_OP_RMSNORM] = 1e-4, [KERN_OP_MATMUL] = 1e-4,
    [KERN_OP_VIEW] = 1e-4,   [KERN_OP_ROPE] = 1e-4, [KERN_OP_KQ] = 1e-4,      [KERN_OP_SOFTMAX] = 1e-4,
    [KERN_OP_KQV] = 1e-4,    [KERN_OP_ADD] = 1e-4,  [KERN_OP_GELU] = 1e-4,    [KERN_OP_SWIGLU] = 1e-4,
};

double exec_tolerance(kern_op kind) { return (int)kind >= 0 && kind < KERN_OP_COUNT ? k_tol[kind] : 1e-4; }

/* --- check ------------------------------------------------------------------- */

static float *host_copy(xf_exec *ex, const void *src, size_t floats, xf_err *err)
{
    float *h = malloc((floats ? floats : 1) * sizeof(float));
    if (!h) {
        xf_err_set(err, "out of memory");
        return NULL;
    }
    if (floats && ex->mem->to_host(&ex->ctx, h, src, floats * sizeof(float)) != 0) {
        free(h);
        xf_err_set(err, "copying from the device failed");
        return NULL;
    }
    return h;
}

int exec_check_op(xf_exec *ex, int i, xf_check_row *row, xf_err *err)
{
    if (!exec_tensor_ready(ex, i))
        return xf_err_set(err, "op %d is not computed in this pass", i);
    if (exec_lazy_settle(ex, i, err) != 0)
        return -1;
    const xf_op *op = &ex->prog.ops[i];
    const kern_variant *ref = kern_find(op->kind, KERN_BACKEND_CPU, "ref");
    if (!ref)
        return xf_err_set(err, "no cpu ref kernel for %s", kern_op_name(op->kind));
    kern_args a = op->args;
    a.tok = ex->tokens;
    /* the ref reads host memory: copy this op's inputs, never the ops before it,
     * so that each kernel is judged alone on the inputs it actually got */
    float *x = NULL, *x2 = NULL, *kc = NULL, *vc = NULL, *y = NULL, *got = NULL;
    int rc = -1;
    size_t row_kv = (size_t)ex->m->n_head_kv * (size_t)ex->m->head_dim;
    if (op->in0 >= 0 && !(x = host_copy(ex, ex->buf[op->in0], (size_t)ex->prog.ops[op->in0].numel, err)))
        goto out;
    if (op->in1 >= 0 && !(x2 = host_copy(ex, ex->buf[op->in1], (size_t)ex->prog.ops[op->in1].numel, err)))
        goto out;
    if (op->kind == KERN_OP_KQ && !(kc = host_copy(ex, ex->kcache[op->layer], (size_t)a.n_kv * row_kv, err)))
        goto out;
    if (op->kind == KERN_OP_KQV && !(vc = host_copy(ex, ex->vcache[op->layer], (size_t)a.n_kv * row_kv, err)))
        goto out;
    y = malloc((size_t)op->numel * sizeof(float));
    got = host_copy(ex, ex->buf[i], (size_t)op->numel, err);
    if (!y || !got) {
        if (!y)
            xf_err_set(err, "out of memory");
        goto out;
    }
    a.x = x;
    a.x2 = x2;
    a.kc = kc;
    a.vc = vc;
    a.w = op->w ? op->w->data : NULL;
    a.w2 = op->w2 ? op->w2->data : NULL;
    a.b = op->b ? (const float *)op->b->data : NULL;
    a.y = y;
    if (ref->fn(&ex->host_ctx, &a) != 0) {
        xf_err_set(err, "%s: cpu ref kernel failed", op->name);
        goto out;
    }
    row->op = i;
    row->variant = ex->sel[op->kind]->name;
    row->tol_rel = exec_tolerance(op->kind);
    tensor_diff_rel(got, y, (size_t)op->numel, row->tol_rel, &row->diff);
    row->over = row->diff.n_over > 0;
    rc = 0;
out:
    free(x);
    free(x2);
    free(kc);
    free(vc);
    free(y);
    free(got);
    return rc;
}

