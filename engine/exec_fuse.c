/* exec_fuse: the op loop's fusions of a prefill run op by op (exec.c's
 * exec_run): where nothing looks between them, consecutive ops run as one
 * kernel call whose outputs are those of the ops run one by one.
 *   - a layer's kq, kq_soft and kqv as one fused attention (kq and kq_soft
 *     owed: computed when first read), exec.c's exec_attn_fuse_why;
 *   - a layer's matmuls that read the same input (gate and up; q, k and v)
 *     in one launch on cuda (kernels_cuda.h kern_cuda_matmul_multi), which
 *     gives each output the bits of opt's MATMUL alone (where it cannot, it
 *     declines and each runs alone).
 * A decode pass's fusions are exec_graph.c's. */
#include "exec_internal.h"

#include <stdio.h>
#include <string.h>

static bool fuse_attn_at(const xf_exec *ex, int i, xf_run_mode mode, bool watch)
{
    const xf_program *p = &ex->prog;
    if (p->n_tokens < 2 || i + 2 >= p->n_ops)
        return false;
    if (mode != XF_RUN_CONTINUE && mode != XF_RUN_FINISH)
        return false;
    const xf_op *o = &p->ops[i];
    if (o[0].kind != KERN_OP_KQ || o[1].kind != KERN_OP_SOFTMAX || o[2].kind != KERN_OP_KQV ||
        o[1].in0 != i || o[2].in0 != i + 1)
        return false;
    char why[96];
    if (exec_attn_fuse_why(ex, why, sizeof why))
        return false;
    /* a breakpoint on kq or kq_soft (or no cache of the matches: do not guess) */
    if (watch && ex->n_brk > 0 && (!ex->bany || ex->bmatch_ops != p->n_ops || ex->bany[i] || ex->bany[i + 1]))
        return false;
    return true;
}

/* runs ops i..i+2 fused; their outputs are then ready, kq and kq_soft
 * owed */
static int run_attn_fused(xf_exec *ex, int i, xf_err *err)
{
    kern_args kq, kqv;
    exec_op_args(ex, i, &kq);
    exec_op_args(ex, i + 2, &kqv);
    int rc;
#ifdef XF_HAVE_CUDA
    if (ex->backend == KERN_BACKEND_CUDA) {
        kern_args sm;
        exec_op_args(ex, i + 1, &sm);
        rc = kern_cuda_attn_prefill_fused(&ex->ctx, &kq, &sm, &kqv);
        if (rc == 1) { /* not its shape: the three ops, nothing owed */
            for (int k = 0; k < 3; k++) {
                if (exec_run_op(ex, i + k, err) != 0)
                    return -1;
                ex->ready[i + k] = true;
            }
            return 0;
        }
    } else
#endif
    {
        if (exec_scratch_grow(ex, kern_cpu_attn_fused_scratch(&ex->ctx, &kq), err) != 0)
            return -1;
        rc = kern_cpu_attn_fused(&ex->ctx, &kq, &kqv) != 0 ? -1 : 0;
    }
    if (rc < 0)
        return xf_err_set(err, "%s: the fused attention kernel failed", ex->prog.ops[i + 2].name);
    for (int k = 0; k < 3; k++)
        ex->ready[i + k] = true;
    exec_owe(ex, i, ex->sel[KERN_OP_KQ], false);
    exec_owe(ex, i + 1, ex->sel[KERN_OP_SOFTMAX], false);
    return 0;
}

const char *exec_mm_fuse_why(const xf_exec *ex, char *buf, size_t n)
{
    if (ex->backend != KERN_BACKEND_CUDA)
        return "the cpu backend runs each matmul alone";
#ifdef XF_HAVE_CUDA
    if (!kern_cuda_matmul_multi_on())
        return "off until timed on a GPU (XF_MM_MULTI=1 in the environment turns it on)";
    if (!kern_cuda_wgmma_available())
        return "it needs the wgmma product (an sm_90a build on a Hopper card, XF_NO_WGMMA unset)";
#endif
    const char *why = exec_looks_why(ex);
    if (why)
        return why;
    const kern_variant *v = ex->sel[KERN_OP_MATMUL];
    if (v->backend != KERN_BACKEND_CUDA || strcmp(v->name, "opt") != 0) {
        snprintf(buf, n, "the selected matmul %s is not opt, which the launch of several reproduces",
                 v->name);
        return buf;
    }
    return NULL;
}

/* At op i: the count (2 or 3) of matmuls from op i that read the same
 * input in one layer of a prefill run by continue or finish on cuda with
 * opt's MATMUL selected and nothing looking at single ops (exec_looks_why),
 * no breakpoint on any but the last of them; else 0. */
#ifdef XF_HAVE_CUDA
/* how many matmuls from op i (a layer's matmul), at most 3, read op i's input */
static int mm_group(const xf_program *p, int i)
{
    const xf_op *o = &p->ops[i];
    int g = 1;
    while (g < 3 && i + g < p->n_ops && o[g].kind == KERN_OP_MATMUL && o[g].in0 == o->in0 &&
           o[g].layer == o->layer)
        g++;
    return g;
}

static int fuse_mm_at(const xf_exec *ex, int i, xf_run_mode mode, bool watch)
{
    const xf_program *p = &ex->prog;
    if (ex->backend != KERN_BACKEND_CUDA || p->n_tokens < 2 || i + 1 >= p->n_ops)
        return 0;
    if (mode != XF_RUN_CONTINUE && mode != XF_RUN_FINISH)
        return 0;
    const xf_op *o = &p->ops[i];
    char why[96];
    if (o->kind != KERN_OP_MATMUL || o->layer < 0 || exec_mm_fuse_why(ex, why, sizeof why))
        return 0;
    int g = mm_group(p, i);
    if (g < 2)
        return 0;
    if (watch && ex->n_brk > 0) {
        if (!ex->bany || ex->bmatch_ops != p->n_ops)
            return 0; /* no cache of the matches: do not guess */
        for (int k = 0; k + 1 < g; k++)
            if (ex->bany[i + k])
                return k + 1 >= 2 ? k + 1 : 0; /* the ones before the first watched */
    }
    return g;
}

/* runs ops i..i+g-1 (fuse_mm_at) in one launch where the kernel takes
 * them (the first 3 or 2 of them); the count run, 0 where it took none */
static int run_mm_fused(xf_exec *ex, int i, int g, xf_err *err)
{
    kern_args a[3];
    const kern_args *ap[3];
    for (int k = 0; k < g; k++) {
        exec_op_args(ex, i + k, &a[k]);
        ap[k] = &a[k];
        if (exec_scratch_grow(ex, kern_variant_scratch(ex->sel[KERN_OP_MATMUL], &a[k]), err) != 0)
            return -1;
    }
    for (; g >= 2; g--) {
        int rc = kern_cuda_matmul_multi(&ex->ctx, ap, g);
        if (rc < 0)
            return xf_err_set(err, "%s: kernel matmul/cuda/opt failed (%d products in one launch)",
                              ex->prog.ops[i].name, g);
        if (rc == 0)
            break;
    }
    if (g < 2)
        return 0;
    ex->gstats.mm_fused++;
    for (int k = 0; k < g; k++) {
        if (exec_cache_store(ex, i + k, err) != 0) /* as exec_run_op stores k and v */
            return -1;
        ex->ready[i + k] = true;
    }
    return g;
}
#endif

size_t exec_fuse_scratch(const xf_exec *ex)
{
    size_t need = 0;
#ifdef XF_HAVE_CUDA
    char why[96];
    const xf_program *p = &ex->prog;
    if (p->n_tokens < 2 || exec_mm_fuse_why(ex, why, sizeof why))
        return 0;
    for (int i = 0; i + 1 < p->n_ops; i++) {
        const xf_op *o = &p->ops[i];
        if (o->kind != KERN_OP_MATMUL || o->layer < 0)
            continue;
        int g = mm_group(p, i);
        /* the group and its first two (run_mm_fused tries both), and of
         * three the last two (k and v, where q ran alone: a breakpoint on
         * q, or the other two refused) */
        for (int from = 0; from + 2 <= g; from++)
            for (int h = g - from; h >= 2; h--) {
                const kern_args *a[3] = {&o[from].args, &o[from + 1].args, h > 2 ? &o[from + 2].args : NULL};
                size_t s = kern_cuda_matmul_multi_scratch(a, h);
                need = s > need ? s : need;
            }
        i += g - 1;
    }
#else
    (void)ex;
#endif
    return need;
}

int exec_fuse_run(xf_exec *ex, int i, xf_run_mode mode, bool watch, xf_err *err)
{
    if (fuse_attn_at(ex, i, mode, watch))
        return run_attn_fused(ex, i, err) != 0 ? -1 : 3;
#ifdef XF_HAVE_CUDA
    int g = fuse_mm_at(ex, i, mode, watch);
    if (g >= 2)
        return run_mm_fused(ex, i, g, err);
#endif
    return 0;
}
