/* matmul_codes.cu: the prefill product's weight codes kept on the device
 * (ctx->codes), made once per weight instead of once per call.
 *
 * Why: matmul_split.cu multiplies a block-type weight as f16 integer codes
 * q [rows, k] and a per-group (a, b) [rows, k / GS], which ms_codes makes
 * from the stored blocks. Made in every call, a prefill pass reads every
 * layer matrix (0.56 bytes an element for Q4_K) and writes 2.25 bytes an
 * element of codes before the product reads them back: about 105 MB a
 * layer of the Qwen2.5-1.5B shape. The weights of a loaded model never
 * change (writes go to ops' outputs, DESIGN.md "Writing into the pass"),
 * so exec keeps each layer matrix's codes once, made by the same ms_codes
 * kernel (the same bits; the product then gives the same bits too).
 *
 * The table is keyed by the weight's device pointer, type, shape and the
 * codes' form (kc_kfold: kept in one form, not found in the other); its
 * buffers live until kern_cuda_codes_free (kern_cuda_ctx_release calls it),
 * so whoever keeps codes for a pointer must free the table before freeing
 * that weight (exec frees the context before its weights; a test frees it
 * at the end of the test). Codes are kept only while at least half of the
 * card's memory (and 1 GiB) stays free after them, so that a second
 * stepper of the model (bench's) still loads; never under XF_CODES=0.
 * Also here: the codes' form for Q4_K/Q5_K (kern_cuda_kfold, kc_kfold). */
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "kernels_cuda.h"

typedef struct kc_codes_entry {
    const void *w; /* the weight, device memory */
    int type;
    int form; /* kc_kfold's when made: a K-quant's super-block form or not */
    int64_t rows, k;
    void *codes; /* q [rows, k'] f16, then ab [rows, k' / GS] float2 (k' = k, F32's 2k) */
    size_t bytes;
} kc_codes_entry;

typedef struct kc_codes {
    int n, cap;
    size_t bytes; /* sum of the entries' */
    kc_codes_entry *e;
} kc_codes;

#define KC_CODES_MIN_FREE ((size_t)1 << 30)

/* the K-quants' super-block fold (kern_cuda_kfold): XF_MW_KFOLD=1 in the
 * environment at first use; -1 not yet read */
static int kc_kfold_on = -1;

extern "C" int kern_cuda_kfold(int on)
{
    if (kc_kfold_on < 0) {
        const char *e = getenv("XF_MW_KFOLD");
        kc_kfold_on = e && strcmp(e, "1") == 0;
    }
    int was = kc_kfold_on;
    if (on == 0 || on == 1)
        kc_kfold_on = on;
    return was;
}

int kc_kfold(int t)
{
    return (t == XF_TYPE_Q4_K || t == XF_TYPE_Q5_K) && kern_cuda_kfold(-1) == 1;
}

extern "C" int kern_cuda_codes_keep(kern_ctx *ctx, const void *w, int w_type, int64_t rows, int64_t k)
{
    if (!ctx || !w)
        return -1;
    const char *off = getenv("XF_CODES");
    if (off && off[0] == '0' && off[1] == '\0')
        return 1;
    size_t bytes = kc_split_codes_bytes(w_type, rows, k);
    if (bytes == 0)
        return 1;
    if (kc_codes_find(ctx, w, w_type, rows, k))
        return 0;
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    size_t keep_free = total_b / 2 > KC_CODES_MIN_FREE ? total_b / 2 : KC_CODES_MIN_FREE;
    if (free_b < keep_free || free_b - keep_free < bytes)
        return 1;
    kc_codes *t = (kc_codes *)ctx->codes;
    if (!t) {
        t = (kc_codes *)calloc(1, sizeof *t);
        if (!t)
            return -1;
        ctx->codes = t;
    }
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        kc_codes_entry *e = (kc_codes_entry *)realloc(t->e, (size_t)cap * sizeof *e);
        if (!e)
            return -1;
        t->e = e;
        t->cap = cap;
    }
    void *d = NULL;
    if (cudaMalloc(&d, bytes) != cudaSuccess) {
        cudaGetLastError();
        return 1; /* the card said it had room; another process may have taken it */
    }
    if (kc_split_codes_make(kc_stream(ctx), w_type, d, w, rows, k) != 0) {
        cudaFree(d);
        return -1;
    }
    kc_codes_entry *e = &t->e[t->n++];
    e->w = w;
    e->type = w_type;
    e->form = kc_kfold(w_type);
    e->rows = rows;
    e->k = k;
    e->codes = d;
    e->bytes = bytes;
    t->bytes += bytes;
    return 0;
}

extern "C" void kern_cuda_codes_stats(const kern_ctx *ctx, int *n, size_t *bytes)
{
    const kc_codes *t = ctx ? (const kc_codes *)ctx->codes : NULL;
    if (n)
        *n = t ? t->n : 0;
    if (bytes)
        *bytes = t ? t->bytes : 0;
}

extern "C" void kern_cuda_codes_free(kern_ctx *ctx)
{
    kc_codes *t = ctx ? (kc_codes *)ctx->codes : NULL;
    if (!t)
        return;
    /* a queued product may still read them */
    cudaStreamSynchronize(kc_stream(ctx));
    for (int i = 0; i < t->n; i++)
        cudaFree(t->e[i].codes);
    cudaGetLastError();
    free(t->e);
    free(t);
    ctx->codes = NULL;
}

const void *kc_codes_find(const kern_ctx *ctx, const void *w, int w_type, int64_t rows, int64_t k)
{
    const kc_codes *t = ctx ? (const kc_codes *)ctx->codes : NULL;
    if (!t)
        return NULL;
    for (int i = 0; i < t->n; i++) {
        const kc_codes_entry *e = &t->e[i];
        if (e->w == w && e->type == w_type && e->rows == rows && e->k == k && e->form == kc_kfold(w_type))
            return e->codes;
    }
    return NULL;
}
