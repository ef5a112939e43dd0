/* quant: the tensor element types of GGUF (ggml type ids) and their block
 * layouts: sizes, dequantization of rows, the fields of a block. (The CPU
 * kernels' fused dot products are kernels/cpu/quant_dot.h; the quantizers,
 * for tests and fixtures only, tests/support/quantize.h.)
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
    XF_TYPE_Q6_K = 14, XF_TYPE_Q8_K = 15, XF_TYPE_BF16 = 30, XF_TYPE_MXFP4 = 39,
    XF_TYPE_COUNT = 40
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
/* The 12 scale bytes of a Q4_K/Q5_K super-block unpacked: 8 six-bit
 * scales and 8 six-bit mins, one pair per 32 elements. */
void quant_k4_scales(const uint8_t *s12, int *sc /* [8] */, int *mn /* [8] */);

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
/* MXFP4 (ggml type 39): ggml stores the E2M1 values doubled (kvalues
 * {0,1,2,3,4,6,8,12, 0,-1,...,-12}) and halves the E8M0 scale instead:
 * value = kvalue[code] * 2^(e-128) (ggml_e8m0_to_fp32_half, exact for
 * every e; e = 255 gives 2^127, not NaN). */
extern const int8_t xf_mxfp4_kvalues[16];
float xf_e8m0_half(uint8_t e);
uint16_t xf_f32_to_bf16(float f);

#endif
