/* cpu: internal header of the CPU backend (kernels/cpu/ *.c): the ref and
 * opt kernel functions that kern_cpu_variants[] lists, the argument check
 * that every CPU kernel shares, and small helpers for splitting work over
 * the thread pool. Not part of the public API: exec goes through the
 * registry (kernels.h). */
#ifndef XF_KERN_CPU_H
#define XF_KERN_CPU_H

#include "kernels.h"
#include "quant.h"

#include <stdint.h>


/* 0 if a is a well-formed argument set for op (the sizes and pointers that
 * op needs), else -1. Every CPU kernel calls it first, so ref and opt
 * accept and refuse exactly the same arguments. */
int kern_cpu_check(kern_op op, const kern_args *a);

/* f16.c. dst[0..n) = f16 src converted exactly (inf/NaN kept). */
void kern_cpu_f16_to_f32_row(const uint16_t *src, float *dst, int64_t n);
/* y[r] = sum_j w[r*k + j] * x[j] for r < rows: f16 rows [rows, k], f32 sums. */
void kern_cpu_f16_gemv(const uint16_t *w, int64_t rows, int64_t k, const float *x, float *y);
/* The portable implementations of the two above, which the dispatching
 * ones use on CPUs without F16C; exposed so tests cover them everywhere. */
void kern_cpu_f16_to_f32_row_generic(const uint16_t *src, float *dst, int64_t n);
void kern_cpu_f16_gemv_generic(const uint16_t *w, int64_t rows, int64_t k, const float *x, float *y);

/* Threads an opt kernel may use: the pool's size, capped by ctx->n_threads
 * when that is set (>0); 1 without a pool. */
static inline int kern_cpu_threads(const kern_ctx *ctx)
{
    if (!ctx || !ctx->pool)
        return 1;
    int n = kern_pool_threads(ctx->pool);
    if (ctx->n_threads > 0 && ctx->n_threads < n)
        n = ctx->n_threads;
    return n;
}

/* Parts a worker called as fn(arg, i, tn) splits the work into: the
 * threads planned (kern_cpu_threads), or 1 when kern_cpu_run ran it
 * inline. Indexes i >= the result have nothing to do. */
static inline int kern_cpu_parts(int planned, int tn)
{
    return tn < planned ? tn : planned;
}

/* Runs fn(arg, i, n) for every pool index (inline when there is no pool or
 * when `parallel` is false, i.e. the op is too small to be worth a wake-up).
 * fn splits its work into kern_cpu_parts(kern_cpu_threads(ctx), n) parts. */
static inline void kern_cpu_run(kern_ctx *ctx, int parallel, void (*fn)(void *, int, int), void *arg)
{
    if (parallel && ctx && ctx->pool && kern_cpu_threads(ctx) > 1)
        kern_pool_run(ctx->pool, fn, arg);
    else
        fn(arg, 0, 1);
}

/* [*lo, *hi) = part i of nparts of [0, total), boundaries rounded to a
 * multiple of align (so threads do not share cache lines of the output). */
static inline void kern_cpu_range(int64_t total, int i, int nparts, int64_t align, int64_t *lo, int64_t *hi)
{
    int64_t units = (total + align - 1) / align;
    int64_t a = units * i / nparts, b = units * (i + 1) / nparts;
    *lo = a * align < total ? a * align : total;
    *hi = b * align < total ? b * align : total;
}

/* ref.c: plain loops, f64 accumulation, single-threaded. */
int kern_cpu_ref_embd(kern_ctx *ctx, const kern_args *a);
int kern_cpu_ref_norm(kern_ctx *ctx, const kern_args *a);
int kern_cpu_ref_rmsnorm(kern_ctx *ctx, const kern_args *a);
int kern_cpu_ref_matmul(kern_ctx *ctx, const kern_args *a);
int kern_cpu_ref_view(kern_ctx *ctx, const kern_args *a);
int kern_cpu_ref_rope(kern_ctx *ctx, const kern_args *a);
int kern_cpu_ref_kq(kern_ctx *ctx, const kern_args *a);
int kern_cpu_ref_softmax(kern_ctx *ctx, const kern_args *a);
int kern_cpu_ref_kqv(kern_ctx *ctx, const kern_args *a);
int kern_cpu_ref_add(kern_ctx *ctx, const kern_args *a);
int kern_cpu_ref_gelu(kern_ctx *ctx, const kern_args *a);
int kern_cpu_ref_swiglu(kern_ctx *ctx, const kern_args *a);

/* opt.c, opt_matmul.c: threaded over ctx->pool, blocked, vectorized. */
int kern_cpu_opt_embd(kern_ctx *ctx, const kern_args *a);
int kern_cpu_opt_norm(kern_ctx *ctx, const kern_args *a);
int kern_cpu_opt_rmsnorm(kern_ctx *ctx, const kern_args *a);
int kern_cpu_opt_matmul(kern_ctx *ctx, const kern_args *a);
int kern_cpu_opt_view(kern_ctx *ctx, const kern_args *a);
int kern_cpu_opt_rope(kern_ctx *ctx, const kern_args *a);
int kern_cpu_opt_kq(kern_ctx *ctx, const kern_args *a);
int kern_cpu_opt_softmax(kern_ctx *ctx, const kern_args *a);
int kern_cpu_opt_kqv(kern_ctx *ctx, const kern_args *a);
int kern_cpu_opt_add(kern_ctx *ctx, const kern_args *a);
int kern_cpu_opt_gelu(kern_ctx *ctx, const kern_args *a);
int kern_cpu_opt_swiglu(kern_ctx *ctx, const kern_args *a);

/* q8_matmul.c: x quantized to int8 blocks once per op, integer block dots
 * for Q8_0 Q4_0 Q5_0 Q4_K Q6_K weights (other types: opt). */
int kern_cpu_q8_matmul(kern_ctx *ctx, const kern_args *a);
/* q8 on one path each (at most the named one this CPU runs; XF_CPU_ISA
 * caps it further): AVX-512 VNNI, AVX-VNNI, AVX2, portable C */
int kern_cpu_q8_matmul_avx512(kern_ctx *ctx, const kern_args *a);
int kern_cpu_q8_matmul_vnni(kern_ctx *ctx, const kern_args *a);
int kern_cpu_q8_matmul_avx2(kern_ctx *ctx, const kern_args *a);
int kern_cpu_q8_matmul_c(kern_ctx *ctx, const kern_args *a);
/* the scratch q8 runs a with at full speed (its AVX-512 x layout) */
size_t kern_cpu_q8_scratch_bytes(const kern_args *a);
/* The instruction set q8 uses now: the best of portable < AVX2 < AVX-VNNI
 * that the CPU runs (cpuid), capped by the environment variable
 * XF_CPU_ISA=portable|avx2|vnni (read at every call). */
enum { KERN_CPU_ISA_PORTABLE = 0, KERN_CPU_ISA_AVX2 = 1, KERN_CPU_ISA_VNNI = 2, KERN_CPU_ISA_AVX512 = 3 };
int kern_cpu_q8_isa(void);

/* q8_avx512.c: the AVX-512 VNNI path of q8 (KERN_CPU_ISA_AVX512). x[n,k]
 * (tokens t0..t1-1 per call of quantize, so that threads share the work)
 * is quantized into a layout of its own (kern_cpu_q8z_bytes(n, k) bytes,
 * -1 if that overflows; 64-byte aligned); rows computes out[t] = w . x_t0+t
 * for t < nt <= KERN_CPU_Q8Z_TILE, t0 a multiple of it. supported: the type and k it
 * computes (Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q6_K); cpu: whether this CPU
 * runs it. */
enum { KERN_CPU_Q8Z_TILE = 8 };
int kern_cpu_q8z_supported(int type, int64_t k);
int kern_cpu_q8z_cpu(void);
int64_t kern_cpu_q8z_bytes(int64_t n, int64_t k);
void kern_cpu_q8z_quantize(int type, const float *x, int64_t n, int64_t k, int64_t t0, int64_t t1, void *dst);
/* rows: R (1 or 2, at most rows_max(type, k); 0 there: Q4_K rows too
 * long, the AVX-512 path does not take them) rows w and w + rb, out[r*8 + t]
 * = row r . x_t0+t */
int kern_cpu_q8z_rows_max(int type, int64_t k);
void kern_cpu_q8z_rows(int type, int R, const uint8_t *w, int64_t rb, const void *zx, int64_t n, int64_t k,
                       int64_t t0, int nt, float *out);
/* panel: rows (<= 16) rows at w, rb bytes apart, times tokens t0..t1-1
 * (t0 a multiple of KERN_CPU_Q8Z_TILE): y[t*ys + r] = row r . x_t (+ bias[r]),
 * where panel_ok (Q4_K and Q6_K prefill: rows interleaved per super-block) */
int kern_cpu_q8z_panel_ok(int type, int64_t n, int64_t k);
void kern_cpu_q8z_panel(int type, const uint8_t *w, int64_t rb, int rows, const void *zx, int64_t n, int64_t k,
                        int64_t t0, int64_t t1, float *y, int64_t ys, const float *bias);
/* x512_matmul.c. The instruction set the opt matmul uses for f32 and f16
 * weights: the best of portable < AVX2 < AVX-VNNI < AVX-512 (F, BW, VL,
 * DQ) by cpuid, capped by XF_CPU_ISA=portable|avx2|vnni|avx512 (read at
 * every call; vnni means the AVX2 path here). */
int kern_cpu_isa(void);
/* the best 256-bit level this CPU runs (portable, AVX2, AVX-VNNI), by
 * cpuid alone: what both opt and q8 build on */
int kern_cpu_isa_ymm(void);
/* the level XF_CPU_ISA asks for (KERN_CPU_ISA_AVX512 when unset or
 * unknown): the one parser of that variable */
int kern_cpu_isa_cap(void);
/* The AVX-512 GEMM of f32/f16 weights (n > 1) and the gemv (n == 1); only
 * when kern_cpu_isa() is KERN_CPU_ISA_AVX512. Arguments already checked. */
int kern_cpu_x512_gemm(kern_ctx *ctx, const kern_args *a);

#endif
