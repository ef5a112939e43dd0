/* gemv: the CUDA matrix-vector products of one token (MATMUL with n == 1)
 * for the ggml block types, and the kernel they replaced, kept beside them
 * as the fallback and the yardstick of bench_gemv_cuda.
 * Declared only when the backend is compiled in (XF_HAVE_CUDA). */
#ifndef XF_GEMV_H
#define XF_GEMV_H

#include <stdint.h>

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y[1,m] = x[1,k] . w[m,k]^T (+ b[m]) for w of a block type (Q8_0 Q4_0 Q4_1
 * Q5_0 Q5_1 Q4_K Q5_K Q6_K): a block of 256 threads stages the raw bytes of
 * R consecutive weight rows in shared memory with 16-byte asynchronous
 * copies (cp.async; rows of most block types are not 16-byte aligned, the
 * span of R rows is, give or take its ends), then decodes them there, in
 * registers, with no int-to-float conversion instruction (exponent tricks).
 * R is picked per shape so that the grid fills the chip several times over:
 * a short-and-wide matrix ([896 x 4864]) gets one row per block, split over
 * 8 warps (a split-K inside the block, combined in a fixed order).
 * act: also act[r] = gelu(y[r]) (the fast path's fused GELU), or NULL.
 * Deterministic: the same bits on every call, in or out of a CUDA graph.
 * Returns 0, -1 on a CUDA error, or 1 if the call is not one it takes (n !=
 * 1, a float type, x not 16-byte aligned, a row over 48 KB): the caller then
 * runs another kernel. No scratch, no library: capturable. */
int kern_cuda_gemv(kern_ctx *ctx, const kern_args *a, float *act);

/* 1 if kern_cuda_gemv is expected faster than kern_cuda_matvec_mv4 for a
 * [m, k] matrix of w_type (measured per shape class, gemv.cu says which):
 * what the opt MATMUL asks before taking it for one token. */
int kern_cuda_gemv_prefer(int w_type, int64_t k, int64_t m);

/* The matrix-vector kernel of matmul.cu (one lane group per weight row,
 * 16-bit loads of the blocks straight from global memory) for n <= 4 rows
 * of x, any weight type: what the opt MATMUL ran for one token before
 * kern_cuda_gemv, and still runs for float types and n = 2..4. 0 or -1. */
int kern_cuda_matvec_mv4(kern_ctx *ctx, const kern_args *a);

#ifdef __cplusplus
}
#endif
#endif
