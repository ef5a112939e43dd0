/* split_float.h: BF16 and F32 weights as the split product's exact f16
 * codes (matmul_split.cu), on the device (ms_codes) and, the same code, on
 * the host (kern_cuda_split_codes_host, which the tests check without a
 * GPU). Internal to kernels/cuda.
 *
 * Why codes at all: the split product multiplies f16 codes by x's two f16
 * planes and folds each group of 32 as acc = fma(a, c, acc). An f16 holds a
 * bf16's 8-bit mantissa, not its exponent range; so a group of 32 gets a
 * power-of-two scale a = 2^s that puts its largest finite |w| in [2^14,
 * 2^15), and the code w * 2^-s is then exact for every element within 2^31
 * of that largest (f16's subnormals keep 8 bits down to 2^-17). An element
 * further below rounds at 2^-39 of the group's largest, under f32's own
 * rounding of the sum. F32 keeps 24 bits: two codes a weight, hi = f16(w *
 * 2^-s) and lo = f16((w * 2^-s - hi) * 2^11) (scale 2^(s - 11)), 22 bits of
 * it, the same class as x's two planes. The F32 product therefore runs
 * over k' = 2k: its codes [rows, 2k] hold each group's 32 hi codes, then
 * its 32 lo codes, and x's planes repeat each group of 32 (ms_x_split's
 * dup), so the tensor cores and the fold are the block types' unchanged.
 * Inf and NaN weights keep themselves as hi (lo 0): their outputs come out
 * non-finite and are computed again the plain way (ms_exact). */
#ifndef XF_SPLIT_FLOAT_H
#define XF_SPLIT_FLOAT_H

#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MSF_LO_SHIFT 11 /* lo's scale below hi's: hi keeps 11 bits */

/* f32 bits of element j of a BF16 or F32 row (on the device a row is as
 * aligned as its type: kc_split_matmul takes 16-byte aligned weights) */
__host__ __device__ inline uint32_t msf_bits(const uint8_t *row, int64_t j, bool bf16)
{
#ifdef __CUDA_ARCH__
    return bf16 ? (uint32_t)((const unsigned short *)row)[j] << 16 : ((const uint32_t *)row)[j];
#else
    if (bf16) {
        uint16_t h;
        memcpy(&h, row + 2 * j, 2);
        return (uint32_t)h << 16;
    }
    uint32_t u;
    memcpy(&u, row + 4 * j, 4);
    return u;
#endif
}

__host__ __device__ inline float msf_float(uint32_t u)
{
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

/* s of group g (elements [32 g, 32 g + 32)): 2^s puts the largest finite
 * |w| in [2^14, 2^15); at least -126 (a = 2^s a normal f32), for F32 at
 * least -115 (lo's 2^(s - 11) too). A group of zeros, Infs and NaNs takes
 * the least. */
__host__ __device__ inline int msf_group_s(const uint8_t *row, int64_t g, bool bf16)
{
    uint32_t big = 0; /* the largest biased exponent of a finite element */
    for (int i = 0; i < 32; i++) {
        uint32_t e = (msf_bits(row, g * 32 + i, bf16) >> 23) & 0xFFu;
        if (e != 0xFFu && e > big)
            big = e;
    }
    /* |w| in [2^(big - 127), 2^(big - 126)); a subnormal's (big 0) is below 2^-126 */
    int s = (int)big - 127 - 14, least = bf16 ? -126 : -115;
    return s < least ? least : s;
}

/* the code of a BF16 element, or F32's hi and lo, under group scale s */
__host__ __device__ inline void msf_code(uint32_t u, int s, __half *hi, __half *lo)
{
    float v = ldexpf(msf_float(u), -s); /* exact: a power of two (or under 2^-149 of the largest: 0) */
    __half h = __float2half_rn(v);
    float hf = __half2float(h);
    *hi = h;
    if (lo)
        *lo = __float2half_rn(isfinite(hf) ? ldexpf(v - hf, MSF_LO_SHIFT) : 0.0f);
}

/* codes of elements [e0, e0 + 8) of a row (e0 a multiple of 8): BF16 into
 * q[0..8); F32 hi into q[0..8) and lo into q2[0..8). a: the group's scale(s),
 * set where e0 opens a group (a[0]: hi or BF16, a[1]: F32's lo) */
__host__ __device__ inline void msf_code8(const uint8_t *row, int64_t e0, bool bf16, __half *q, __half *q2,
                                          float *a)
{
    int s = msf_group_s(row, e0 / 32, bf16);
    for (int i = 0; i < 8; i++)
        msf_code(msf_bits(row, e0 + i, bf16), s, &q[i], bf16 ? (__half *)0 : &q2[i]);
    if (e0 % 32 == 0) {
        a[0] = ldexpf(1.0f, s);
        a[1] = bf16 ? 0.0f : ldexpf(1.0f, s - MSF_LO_SHIFT);
    }
}

/* the product's k for a row of k weights: F32's two codes an element */
__host__ __device__ inline int64_t msf_kp(bool f32, int64_t k)
{
    return f32 ? 2 * k : k;
}

/* where element e of a true row of k lands in the F32 codes' row of 2k:
 * its group's hi half (lo: 32 further) */
__host__ __device__ inline int64_t msf_f32_at(int64_t e)
{
    return (e / 32) * 64 + e % 32;
}

#endif
