/* exec_codes: the prefill product's weight codes kept on the device for
 * every layer matrix (kernels_cuda.h kern_cuda_codes_keep), made once when
 * exec_new has copied the weights, and how many there are (`info`).
 * Why not the output head: a prefill multiplies only its last row (one
 * token: the decode kernels, which read the blocks themselves); the rows a
 * reader asks for later make their codes in that call, as before. */
#include "exec_internal.h"

#ifdef XF_HAVE_CUDA
static int codes_keep_one(xf_exec *ex, const xf_weight *w, xf_err *err)
{
    if (!w)
        return 0;
    if (kern_cuda_codes_keep(&ex->ctx, ex->wdev[w->id], w->type, w->rows, w->cols) < 0)
        return xf_err_set(err, "cannot make the prefill codes of %s on the cuda device", w->name);
    return 0;
}
#endif

int exec_codes_keep(xf_exec *ex, xf_err *err)
{
#ifdef XF_HAVE_CUDA
    if (ex->backend != KERN_BACKEND_CUDA)
        return 0;
    for (int l = 0; l < ex->m->n_layer; l++) {
        const xf_layer *L = &ex->m->layers[l];
        const xf_weight *mats[] = {L->qkv,      L->q,        L->k,      L->v,
                                   L->attn_out, L->ffn_gate, L->ffn_up, L->ffn_down};
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++)
            if (codes_keep_one(ex, mats[i], err) != 0)
                return -1;
    }
#else
    (void)ex;
    (void)err;
#endif
    return 0;
}

void exec_codes_kept(const xf_exec *ex, int *n, size_t *bytes)
{
    *n = 0;
    *bytes = 0;
#ifdef XF_HAVE_CUDA
    if (ex->backend == KERN_BACKEND_CUDA)
        kern_cuda_codes_stats(&ex->ctx, n, bytes);
#else
    (void)ex;
#endif
}
