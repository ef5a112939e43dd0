/* kern_cuda: what the CUDA backend offers beyond kernels.h. kernels.h names
 * the variant table, the memory ops and the availability probe; this header
 * adds the life cycle of the state that CUDA variants keep in a kern_ctx
 * (the cuBLAS handle in ctx->cublas) and the scratch that MATMUL wants, so
 * that exec can prepare a context before capturing a CUDA graph and free it
 * after. Declared only when the backend is compiled in (XF_HAVE_CUDA). */
#ifndef XF_KERN_CUDA_H
#define XF_KERN_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creates the cuBLAS handle (FP32 math, no TF32) in ctx->cublas if there is
 * none and binds it to ctx->stream. Variants that need it call this on first
 * use; call it yourself before a graph capture, since creating a handle
 * allocates. 0, or -1 if cuBLAS cannot start. */
int kern_cuda_ctx_prepare(kern_ctx *ctx);

/* Destroys what CUDA variants created in ctx (the cuBLAS handle) and sets
 * ctx->cublas to NULL; the stream and scratch stay the caller's. */
void kern_cuda_ctx_release(kern_ctx *ctx);

/* Bytes of ctx->scratch with which MATMUL `variant` ("opt", "tc") runs a
 * [n,k] x [m,k]^T product at full speed in one round (0: it needs none).
 * With less, opt decodes the weights in rounds of at least 32 rows and below
 * that falls back to a slower kernel; tc falls back to opt. Scratch must be
 * 16-byte aligned device memory. */
size_t kern_cuda_matmul_scratch(const char *variant, int64_t n, int64_t k, int64_t m, int w_type);

#ifdef __cplusplus
}
#endif
#endif
