/* exec_codes: the prefill product's weight codes kept on the device for
 * every layer matrix (kernels_cuda.h kern_cuda_codes_keep), made once when
 * exec_new has copied the weights, and how many there are (`info`); and
 * which product a prefill's matmuls run (exec_mm_path, `graph`).
 * Why not the output head: a prefill multiplies only its last row (one
 * token: the decode kernels, which read the blocks themselves); the rows a
 * reader asks for later make their codes in that call, as before. */
#include "exec_internal.h"

#include <stdio.h>
#include <string.h>

#include "quant.h"

#ifdef XF_HAVE_CUDA
#define LAYER_MATS 8
/* a layer's matrices a prefill multiplies (NULL where the architecture has none) */
static void layer_mats(const xf_layer *L, const xf_weight *m[LAYER_MATS])
{
    const xf_weight *all[LAYER_MATS] = {L->qkv, L->q, L->k, L->v, L->attn_out, L->ffn_gate, L->ffn_up, L->ffn_down};
    memcpy(m, all, sizeof all);
}

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
        const xf_weight *mats[LAYER_MATS];
        layer_mats(&ex->m->layers[l], mats);
        for (int i = 0; i < LAYER_MATS; i++)
            if (codes_keep_one(ex, mats[i], err) != 0)
                return -1;
    }
#else
    (void)ex;
    (void)err;
#endif
    return 0;
}

const char *exec_mm_path(const xf_exec *ex, char *buf, size_t n)
{
    if (ex->backend != KERN_BACKEND_CUDA || n == 0)
        return NULL;
#ifdef XF_HAVE_CUDA
    const kern_variant *v = ex->sel[KERN_OP_MATMUL];
    if (v->backend != KERN_BACKEND_CUDA || strcmp(v->name, "opt") != 0) {
        snprintf(buf, n, "a prefill's matmuls run the selected variant %s", v->name);
        return buf;
    }
    /* the float types among the layer matrices: SGEMM unless XF_SPLIT_FLOAT */
    bool has[2] = {false, false}, kq = false;
    for (int l = 0; l < ex->m->n_layer; l++) {
        const xf_weight *mats[LAYER_MATS];
        layer_mats(&ex->m->layers[l], mats);
        for (int i = 0; i < LAYER_MATS; i++)
            if (mats[i]) {
                has[0] |= mats[i]->type == XF_TYPE_BF16;
                has[1] |= mats[i]->type == XF_TYPE_F32;
                kq |= mats[i]->type == XF_TYPE_Q4_K || mats[i]->type == XF_TYPE_Q5_K;
            }
    }
    int on = kern_cuda_split_float(-1);
    char fl[320] = "";
    for (int t = 0; t < 2; t++)
        if (has[t]) {
            size_t u = strlen(fl);
            snprintf(fl + u, sizeof fl - u, "; %s weights: %s", t ? "F32" : "BF16",
                     on & (1 << t) ? "on the tensor cores too (XF_SPLIT_FLOAT)"
                                   : t ? "cuBLAS SGEMM (XF_SPLIT_FLOAT=f32 or all: the tensor cores)"
                                       : "cuBLAS SGEMM (XF_SPLIT_FLOAT=bf16 or all: the tensor cores)");
        }
    if (kq && kern_cuda_kfold(-1) == 1) {
        size_t u = strlen(fl);
        snprintf(fl + u, sizeof fl - u, "; Q4_K and Q5_K codes in the super-block form (XF_MW_KFOLD: folded once a super-block on "
                 "wgmma's 128-row blocks, by group elsewhere)");
    }
    if (kern_cuda_wgmma_available())
        snprintf(buf, n, "a prefill's matmuls (opt) run on the tensor cores: wgmma, %d-row blocks%s", kern_cuda_wgmma_rows(0),
                 fl);
    else
        snprintf(buf, n,
                 "a prefill's matmuls (opt) run on the tensor cores: mma.sync (no wgmma: not an sm_90a build, "
                 "not a 9.0 card, or XF_NO_WGMMA)%s",
                 fl);
    return buf;
#else
    (void)buf;
    return NULL;
#endif
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
