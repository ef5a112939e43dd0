/* quantize: test support (library xftestsupport, never linked into the
 * product): the reference quantizers of the block formats that tests,
 * benchmarks and fixture writers use to make weights, and the f64 dot
 * product that checks the kernels' fused ones. Decoding lives in
 * base/quant.h. */
#ifndef XF_TEST_QUANTIZE_H
#define XF_TEST_QUANTIZE_H

#include <stddef.h>
#include <stdint.h>

#include "quant.h"

/* Reference quantizer (round to nearest as ggml's *_ref); returns bytes written, 0 if unsupported. */
size_t quant_quantize_row(int type, const float *src, void *dst, int64_t n);
/* sum_i w[i]*x[i] with w a quantized row: f64 accumulation, dequantizing block
 * by block (quant_dequant_row); NaN for a type or length that cannot be decoded. */
double quant_dot_ref(int type, const void *w, const float *x, int64_t n);

#endif
