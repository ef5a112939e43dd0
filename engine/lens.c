/* lens: the logit lens. The model's final norm and output projection
 * applied to one row of a residual, so that a layer's output can be read as
 * next-token logits. The arguments come from the program's own out_norm and
 * logits ops (one source of shapes, eps and weight types, norm or rmsnorm
 * by architecture); the kernels are the cpu references, as check mode runs
 * them: they read the weights' host copies on every backend, and their f64
 * accumulation gives the same digits for one row as the logits of a whole
 * pass (an optimized matvec for one row and a gemm for n rows round apart). */
#include <stdlib.h>
#include <string.h>

#include "exec.h"

static const kern_variant *lens_kernel(const xf_exec *ex, kern_op op)
{
    (void)ex;
    return kern_find(op, KERN_BACKEND_CPU, "ref");
}

int exec_logit_lens(xf_exec *ex, const float *x, float *logits, xf_err *err)
{
    const xf_program *p = exec_program(ex);
    xf_err ignore = {0};
    int on = exec_tensor_find(ex, "out_norm", &ignore), lo = exec_tensor_find(ex, "logits", &ignore);
    if (on < 0 || lo < 0 || !p->ops)
        return xf_err_set(err, "logit lens: no pass yet (run a prompt first)");
    const xf_op *no = &p->ops[on], *mo = &p->ops[lo];
    const kern_variant *nv = lens_kernel(ex, no->kind), *mv = lens_kernel(ex, mo->kind);
    if (!nv || !mv)
        return xf_err_set(err, "logit lens: no cpu kernel for %s", kern_op_name(nv ? mo->kind : no->kind));
    float *h = malloc((size_t)no->args.k * sizeof(float));
    if (!h)
        return xf_err_set(err, "out of memory");
    kern_ctx c = {.n_threads = 1};
    kern_args a = no->args;
    a.n = 1;
    a.x = x;
    a.y = h;
    a.w = no->w ? no->w->data : NULL;
    a.b = no->b ? (const float *)no->b->data : NULL;
    int rc = nv->fn(&c, &a);
    if (rc == 0) {
        kern_args b = mo->args;
        b.n = 1;
        b.x = h;
        b.y = logits;
        b.w = mo->w->data;
        b.b = mo->b ? (const float *)mo->b->data : NULL;
        rc = mv->fn(&c, &b);
    }
    free(h);
    return rc == 0 ? 0 : xf_err_set(err, "logit lens: kernel %s/%s failed", nv->name, mv->name);
}
