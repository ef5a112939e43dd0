/* quant: the tensor element types of GGUF (ggml type ids) and their block
 * layouts: sizes, dequantization of rows, quantization (for tests and
 * fixtures) and dot products of a quantized row with an f32 vector.
 * A leaf module: it knows nothing of models, so kernels/ may use it too.
 * Layouts follow ggml exactly (ggml-common.h / ggml-quants.c). */
#ifndef XF_QUANT_H
#define XF_QUANT_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

enum xf_type {
    XF_TYPE_F32 = 0, XF_TYPE_F16 = 1, XF_TYPE_Q4_0 = 2, XF_TYPE_Q4_1 = 3,
    XF_TYPE_Q5_0 = 6, XF_TYPE_Q5_1 = 7, XF_TYPE_Q8_0 = 8, XF_TYPE_Q8_1 = 9,
    XF_TYPE_Q2_K = 10, XF_TYPE_Q3_K = 11, XF_TYPE_Q4_K = 12, XF_TYPE_Q5_K = 13,
    XF_TYPE_Q6_K = 14, XF_TYPE_Q8_K = 15, XF_TYPE_BF16 = 30, XF_TYPE_COUNT = 40
};

typedef struct quant_type_info {
    const char *name;   /* "F32", "Q4_K", ... */
    int block_elems;    /* elements per block (1 for F32/F16/BF16) */
    int block_bytes;    /* bytes per block */
    bool supported;     /* dequantization implemented */
} quant_type_info;

/* NULL for an id that is not a known ggml type. */
const quant_type_info *quant_type_get(int type);
const char *quant_type_name(int type); /* "?" when unknown */

/* Bytes of a row of n elements; false if unknown type, n not a multiple of
 * the block size, or overflow. */
bool quant_row_bytes(int type, int64_t n, uint64_t *bytes);

/* dst[0..n) = dequantized src; n a multiple of the block size. */
void quant_dequant_row(int type, const void *src, float *dst, int64_t n);
/* Reference quantizer (round to nearest as ggml's *_ref); returns bytes written, 0 if unsupported. */
size_t quant_quantize_row(int type, const float *src, void *dst, int64_t n);
/* sum_i w[i]*x[i] with w a quantized row: f64 accumulation, dequantizing block by block. */
double quant_dot_ref(int type, const void *w, const float *x, int64_t n);

/* f32 accumulation, fast path for the opt kernels: sum_i w[i]*x[i], w a row of `type`, n elements */
float quant_dot_f32(int type, const void *w, const float *x, int64_t n);
/* The portable implementation of quant_dot_f32 (dequantize 256 elements at
 * a time into a buffer, then a lane dot), which it uses for every type on
 * CPUs without AVX2+FMA+F16C and for the types with no fused kernel
 * (Q2_K, Q3_K, Q8_K, F32, F16, BF16); exposed so tests cover it everywhere.
 * Same weights and contract as quant_dot_f32; f32 summation order differs. */
float quant_dot_f32_generic(int type, const void *w, const float *x, int64_t n);

/* The fields of one raw block, for `quant NAME ROW`: scales and mins as
 * floats (f16 scales converted, packed 6-bit K-quant scales unpacked), the
 * quants as small integers. Returns the number of fields filled (<= max). */
typedef struct quant_field {
    const char *name;  /* "d", "dmin", "scales", "mins", "q" ... */
    int count;
    float v[256];
} quant_field;
int quant_block_fields(int type, const void *block, quant_field *out, int max);

float xf_f16_to_f32(uint16_t h);
uint16_t xf_f32_to_f16(float f); /* round to nearest even */
float xf_bf16_to_f32(uint16_t h);
uint16_t xf_f32_to_bf16(float f);

#endif
