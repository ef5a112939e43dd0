/* quant_dot: sum_i w[i]*x[i] of a weight row w of any base/quant.h type
 * (n elements, a multiple of its block size) with an f32 vector x, f32
 * accumulation: the inner loop of the CPU opt MATMUL (opt_matmul.c). Part of
 * the kernels floor; tests and benchmarks call it directly. */
#ifndef XF_KERN_CPU_QUANT_DOT_H
#define XF_KERN_CPU_QUANT_DOT_H

#include <stdint.h>

#include "quant.h"

/* The fast path: fused AVX2+FMA+F16C kernels (picked per call) that never
 * store a weight, for Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1 Q4_K Q5_K Q6_K MXFP4;
 * for MXFP4 on other CPUs a portable fused dot (per block a lane dot of the
 * table values, times the scale); the generic path for every other type
 * and CPU. NaN for a type or length that
 * cannot be decoded. */
float kern_cpu_quant_dot(int type, const void *w, const float *x, int64_t n);
/* The portable implementation of kern_cpu_quant_dot (dequantize 256
 * elements at a time into a buffer, then a lane dot; MXFP4's fused portable
 * dot), which it uses for
 * every type on CPUs without AVX2+FMA+F16C and for the types with no fused
 * kernel (Q2_K, Q3_K, Q8_K, F32, F16, BF16); exposed so tests cover it
 * everywhere. Same weights and contract; f32 summation order differs. */
float kern_cpu_quant_dot_generic(int type, const void *w, const float *x, int64_t n);

#endif
