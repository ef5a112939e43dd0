/* quant_dot: the CPU opt kernels' dot product of a quantized weight row
 * with an f32 vector, f32 accumulation (see quant_dot.h): fused AVX2 kernels
 * for the block formats decode spends its time in, and a portable path
 * (dequantize 256 elements at a time, then a lane dot) for everything else.
 * The block layouts are base/quant.h's; these kernels read them bytewise as
 * little-endian, as quant.c does. */
#include "cpu/quant_dot.h"

#include <math.h>
#include <string.h>

#define QK 32   /* elements per block of the 32-element formats */
#define QKK 256 /* elements per super-block of the k-quants */

/* ------------------------------------------------------ vector primitives */

#define LANES 16

/* sum a[i]*b[i], n a multiple of LANES.  Independent lane accumulators: the
 * compiler may keep them in vector registers without reassociating (no
 * -ffast-math needed), and the pairwise final sum keeps the error small. */
static inline float dot_lanes(const float *restrict a, const float *restrict b, int n)
{
    float acc[LANES] = {0};
    for (int i = 0; i < n; i += LANES)
        for (int k = 0; k < LANES; k++)
            acc[k] += a[i + k] * b[i + k];
    for (int w = LANES / 2; w > 0; w /= 2)
        for (int k = 0; k < w; k++)
            acc[k] += acc[k + w];
    return acc[0];
}

/* MXFP4: 2^(e-128) as base/quant.c's xf_e8m0_half, inlined here */
static inline float mxfp4_d(uint8_t e)
{
    uint32_t u = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The portable fused MXFP4 dot: per block d * sum(kvalue[code] * x), the
 * codes looked up 32 at a time into a small stack buffer, one lane dot per
 * block (which the compiler vectorizes), the scale applied once per block:
 * the same weights as quant_dequant_row (kvalue * d is exact). */
static float mxfp4_dot_portable(const uint8_t *w, const float *x, int64_t n)
{
    float acc = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        const uint8_t *b = w + 17 * i;
        float q[QK];
        for (int j = 0; j < 16; j++) {
            q[j] = (float)xf_mxfp4_kvalues[b[1 + j] & 0xf];
            q[j + 16] = (float)xf_mxfp4_kvalues[b[1 + j] >> 4];
        }
        acc += dot_lanes(q, x + QK * i, QK) * mxfp4_d(b[0]);
    }
    return acc;
}

/* ======================================================= fused f32 dots
 *
 * kern_cpu_quant_dot for the block formats that decode spends its time in (the
 * weights of a Q4_K_M file: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K, and
 * Q8_1).  Decode reads every weight once per token, so this dot has to keep
 * up with memory; dequantizing into a buffer and reading it back (the
 * generic path below) costs 0.5-1 ns per weight, about ten times the memory
 * time.  These kernels never store a weight: 8 quants at a time are widened
 * from bytes to 32-bit lanes (vpmovzxbd: lane l gets byte l, so x is read
 * in its own order), their bits picked out with shifts, masks and compares,
 * converted to f32 and multiplied with x in f32 lanes.
 *
 * Symmetric formats (value d*q, q with an integer offset) apply the offset
 * in integers and the scale once per block or sub-block: (sum_j q_j*x_j)*d.
 * Formats with a min (q*d + m, or dl*q - ml) rebuild each weight in a
 * register with one FMA instead: d*sum(q*x) + m*sum(x) would cancel badly
 * where d*q is close to -m, which the rebuilt weight never does.  The
 * weights are those of quant_dequant_row (up to the one rounding an FMA
 * saves); only the f32 rounding of products and sums differs from
 * an f64 reference dot (tests/support/quantize.h quant_dot_ref).
 *
 * x86-64 with AVX2+FMA+F16C only, picked per call (as kernels/cpu/f16.c
 * does).  Written with intrinsics: GCC's portable vector extensions turn
 * the byte widening into scalar inserts, which cost more than the rest.
 * Other CPUs take the generic path. */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QD_X86 1
#include <immintrin.h>

/* little-endian loads of a block's fields (only the AVX2 kernels read them whole) */
static inline uint16_t ld_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static inline uint32_t ld_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

#define QD_TARGET __attribute__((target("avx2,fma,f16c")))
#define QD_INLINE static inline __attribute__((always_inline)) QD_TARGET

QD_INLINE __m256 qd_x(const float *p) { return _mm256_loadu_ps(p); }

/* bytes p[0..8) zero- or sign-extended to 8 i32 lanes */
QD_INLINE __m256i qd_u8(const uint8_t *p) { return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p)); }
QD_INLINE __m256i qd_s8(const uint8_t *p) { return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)); }

QD_INLINE __m256 qd_f(__m256i v) { return _mm256_cvtepi32_ps(v); }
QD_INLINE __m256i qd_k(int v) { return _mm256_set1_epi32(v); }
/* an f16 scale in all lanes, exactly: broadcast the half, convert 8 at once */
QD_INLINE __m256 qd_h(const uint8_t *p) { return _mm256_cvtph_ps(_mm_set1_epi16((short)ld_u16(p))); }

QD_INLINE float qd_hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* sum_k q_k * x[8k..8k+8) for four lane vectors: one product chain per block,
 * so consecutive blocks overlap */
QD_INLINE __m256 qd_dot4(__m256i q0, __m256i q1, __m256i q2, __m256i q3, const float *x)
{
    __m256 s = _mm256_mul_ps(qd_f(q0), qd_x(x));
    s = _mm256_fmadd_ps(qd_f(q1), qd_x(x + 8), s);
    s = _mm256_fmadd_ps(qd_f(q2), qd_x(x + 16), s);
    return _mm256_fmadd_ps(qd_f(q3), qd_x(x + 24), s);
}

/* the same with weights q*d + m rebuilt in f32 */
QD_INLINE __m256 qd_dot4_dm(__m256i q0, __m256i q1, __m256i q2, __m256i q3, __m256 d, __m256 m, const float *x)
{
    __m256 s = _mm256_mul_ps(_mm256_fmadd_ps(qd_f(q0), d, m), qd_x(x));
    s = _mm256_fmadd_ps(_mm256_fmadd_ps(qd_f(q1), d, m), qd_x(x + 8), s);
    s = _mm256_fmadd_ps(_mm256_fmadd_ps(qd_f(q2), d, m), qd_x(x + 16), s);
    return _mm256_fmadd_ps(_mm256_fmadd_ps(qd_f(q3), d, m), qd_x(x + 24), s);
}

/* The fifth bits of Q5_0/Q5_1: bit j of the u32 qh belongs to element j;
 * lane l of group g (element 8g + l) needs bit 8g + l.  Returns 16 where the
 * bit is clear (Q5_0 subtracts it: (q | h<<4) - 16 = q - 16*(1-h)) or set
 * (Q5_1 adds it), 0 elsewhere.  Groups 1-3 move their bit to position 4
 * with one per-lane shift; group 0 would need a left shift for some lanes
 * and a right one for others, so it tests a mask instead. */
QD_INLINE void qd_bit5(const uint8_t *qh, const int set, __m256i h16[4])
{
    const __m256i h = _mm256_set1_epi32((int)ld_u32(qh)), c16 = qd_k(16);
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    const __m256i is_set = _mm256_cmpeq_epi32(_mm256_and_si256(h, bit), bit);
    h16[0] = set ? _mm256_and_si256(is_set, c16) : _mm256_andnot_si256(is_set, c16);
#pragma GCC unroll 3
    for (int g = 1; g < 4; g++) {
        const __m256i sh = _mm256_srlv_epi32(h, _mm256_setr_epi32(8 * g - 4, 8 * g - 3, 8 * g - 2, 8 * g - 1, 8 * g,
                                                                 8 * g + 1, 8 * g + 2, 8 * g + 3));
        h16[g] = set ? _mm256_and_si256(sh, c16) : _mm256_andnot_si256(sh, c16);
    }
}

/* ---- 32-element blocks: each adds its share of the dot to 8 lanes of acc.
 * Q4/Q5 bytes 0-7 hold elements 0-7 (low nibbles) and 16-23 (high), bytes
 * 8-15 elements 8-15 and 24-31. */

/* Q8_0 (quants at 2) and Q8_1 (at 4): d*sum(q*x) */
QD_INLINE __m256 qd_q8_blk(const uint8_t *p, const float *x, int qoff, __m256 acc)
{
    const uint8_t *q = p + qoff;
    return _mm256_fmadd_ps(qd_dot4(qd_s8(q), qd_s8(q + 8), qd_s8(q + 16), qd_s8(q + 24), x), qd_h(p), acc);
}

/* Q4_0: d*sum((nibble - 8)*x) */
QD_INLINE __m256 qd_q4_0_blk(const uint8_t *p, const float *x, __m256 acc)
{
    const __m256i a = qd_u8(p + 2), b = qd_u8(p + 10), m = qd_k(15), o = qd_k(8);
    const __m256i q0 = _mm256_sub_epi32(_mm256_and_si256(a, m), o);
    const __m256i q1 = _mm256_sub_epi32(_mm256_and_si256(b, m), o);
    const __m256i q2 = _mm256_sub_epi32(_mm256_srli_epi32(a, 4), o);
    const __m256i q3 = _mm256_sub_epi32(_mm256_srli_epi32(b, 4), o);
    return _mm256_fmadd_ps(qd_dot4(q0, q1, q2, q3, x), qd_h(p), acc);
}

/* Q5_0: d*sum(((nibble | h<<4) - 16)*x) */
QD_INLINE __m256 qd_q5_0_blk(const uint8_t *p, const float *x, __m256 acc)
{
    __m256i h[4];
    qd_bit5(p + 2, 0, h);
    const __m256i a = qd_u8(p + 6), b = qd_u8(p + 14), m = qd_k(15);
    const __m256i q0 = _mm256_sub_epi32(_mm256_and_si256(a, m), h[0]);
    const __m256i q1 = _mm256_sub_epi32(_mm256_and_si256(b, m), h[1]);
    const __m256i q2 = _mm256_sub_epi32(_mm256_srli_epi32(a, 4), h[2]);
    const __m256i q3 = _mm256_sub_epi32(_mm256_srli_epi32(b, 4), h[3]);
    return _mm256_fmadd_ps(qd_dot4(q0, q1, q2, q3, x), qd_h(p), acc);
}

/* Q4_1: sum((nibble*d + m)*x) */
QD_INLINE __m256 qd_q4_1_blk(const uint8_t *p, const float *x, __m256 acc)
{
    const __m256i a = qd_u8(p + 4), b = qd_u8(p + 12), m = qd_k(15);
    return _mm256_add_ps(acc, qd_dot4_dm(_mm256_and_si256(a, m), _mm256_and_si256(b, m), _mm256_srli_epi32(a, 4),
                                         _mm256_srli_epi32(b, 4), qd_h(p), qd_h(p + 2), x));
}

/* Q5_1: sum(((nibble | h<<4)*d + m)*x) */
QD_INLINE __m256 qd_q5_1_blk(const uint8_t *p, const float *x, __m256 acc)
{
    __m256i h[4];
    qd_bit5(p + 4, 1, h);
    const __m256i a = qd_u8(p + 8), b = qd_u8(p + 16), m = qd_k(15);
    return _mm256_add_ps(acc, qd_dot4_dm(_mm256_or_si256(_mm256_and_si256(a, m), h[0]),
                                         _mm256_or_si256(_mm256_and_si256(b, m), h[1]),
                                         _mm256_or_si256(_mm256_srli_epi32(a, 4), h[2]),
                                         _mm256_or_si256(_mm256_srli_epi32(b, 4), h[3]), qd_h(p), qd_h(p + 2), x));
}

/* MXFP4: d*sum(kvalue[code]*x).  The 16 code bytes are looked up in the
 * doubled E2M1 table with one byte shuffle per nibble half (bytes 0-7 of the
 * low nibbles are elements 0-7, bytes 8-15 elements 8-15, the high nibbles
 * 16-31), then sign-extended to 32-bit lanes. */
QD_INLINE __m256 qd_mxfp4_blk(const uint8_t *p, const float *x, __m256 acc)
{
    const __m128i tbl = _mm_loadu_si128((const __m128i *)xf_mxfp4_kvalues), m = _mm_set1_epi8(15);
    const __m128i q = _mm_loadu_si128((const __m128i *)(p + 1));
    const __m128i lo = _mm_shuffle_epi8(tbl, _mm_and_si128(q, m));
    const __m128i hi = _mm_shuffle_epi8(tbl, _mm_and_si128(_mm_srli_epi16(q, 4), m));
    const __m256 s = qd_dot4(_mm256_cvtepi8_epi32(lo), _mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)),
                             _mm256_cvtepi8_epi32(hi), _mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)), x);
    return _mm256_fmadd_ps(s, _mm256_set1_ps(mxfp4_d(p[0])), acc);
}

QD_INLINE __m256 qd_blk32(int type, const uint8_t *p, const float *x, __m256 acc)
{
    switch (type) {
    case XF_TYPE_MXFP4: return qd_mxfp4_blk(p, x, acc);
    case XF_TYPE_Q4_0: return qd_q4_0_blk(p, x, acc);
    case XF_TYPE_Q4_1: return qd_q4_1_blk(p, x, acc);
    case XF_TYPE_Q5_0: return qd_q5_0_blk(p, x, acc);
    case XF_TYPE_Q5_1: return qd_q5_1_blk(p, x, acc);
    case XF_TYPE_Q8_0: return qd_q8_blk(p, x, 2, acc);
    default: return qd_q8_blk(p, x, 4, acc); /* Q8_1 */
    }
}

/* a row of nb blocks of bb bytes, two accumulators */
QD_INLINE float qd_row32(int type, int bb, const uint8_t *w, const float *x, int64_t nb)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        a0 = qd_blk32(type, w + i * bb, x + QK * i, a0);
        a1 = qd_blk32(type, w + (i + 1) * bb, x + QK * (i + 1), a1);
    }
    if (i < nb)
        a0 = qd_blk32(type, w + i * bb, x + QK * i, a0);
    return qd_hsum(_mm256_add_ps(a0, a1));
}

/* ---- super-blocks of 256 */

/* Q4_K (five = 0) and Q5_K (five = 1): weight dl*q - ml per sub-block of 32
 * rebuilt with one FMA.  Bytes qs[32c + l] hold elements 64c + l (low
 * nibble, sub-block 2c) and 64c + 32 + l (high, 2c+1); Q5_K's fifth bits
 * are bits 2c and 2c+1 of qh[l]. */
QD_INLINE float qd_k45_row(const uint8_t *w, const float *x, int64_t nb, const int five)
{
    const int bb = five ? 176 : 144;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *p = w + i * bb, *qh = p + 16, *qs = p + (five ? 48 : 16);
        const float *xs = x + QKK * i;
        /* the 8 six-bit scales and mins (see k4_scales), unpacked four at a
         * time in u32 arithmetic: bytes j of sc03/mn03 are sub-blocks 0-3,
         * of sc47/mn47 sub-blocks 4-7 */
        const uint32_t u0 = ld_u32(p + 4), u1 = ld_u32(p + 8), u2 = ld_u32(p + 12);
        const uint32_t sc03 = u0 & 0x3f3f3f3fu, mn03 = u1 & 0x3f3f3f3fu;
        const uint32_t sc47 = (u2 & 0x0f0f0f0fu) | (((u0 >> 6) & 0x03030303u) << 4);
        const uint32_t mn47 = ((u2 >> 4) & 0x0f0f0f0fu) | (((u1 >> 6) & 0x03030303u) << 4);
        /* dl = d*sc and -ml = -(dmin*m) per sub-block, rounded as the
         * dequantizer rounds them */
        const __m256 dl = _mm256_mul_ps(
            qd_f(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)(sc03 | (uint64_t)sc47 << 32)))), qd_h(p));
        const __m256 ml = _mm256_xor_ps(
            _mm256_mul_ps(qd_f(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long)(mn03 | (uint64_t)mn47 << 32)))),
                          qd_h(p + 2)),
            _mm256_set1_ps(-0.0f));
        __m256i hb[4];
        if (five)
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++)
                hb[g] = _mm256_slli_epi32(qd_u8(qh + 8 * g), 4); /* bit b of qh[l] at bit 4 + b */
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i lo[4], hi[4];
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                const __m256i v = qd_u8(qs + 32 * c + 8 * g);
                lo[g] = _mm256_and_si256(v, qd_k(15));
                hi[g] = _mm256_srli_epi32(v, 4);
                if (five) {
                    lo[g] = _mm256_or_si256(lo[g], _mm256_and_si256(_mm256_srli_epi32(hb[g], 2 * c), qd_k(16)));
                    hi[g] = _mm256_or_si256(hi[g], _mm256_and_si256(_mm256_srli_epi32(hb[g], 2 * c + 1), qd_k(16)));
                }
            }
            const __m256i s0 = qd_k(2 * c), s1 = qd_k(2 * c + 1); /* lane broadcasts */
            a0 = _mm256_add_ps(a0, qd_dot4_dm(lo[0], lo[1], lo[2], lo[3], _mm256_permutevar8x32_ps(dl, s0),
                                              _mm256_permutevar8x32_ps(ml, s0), xs + 64 * c));
            a1 = _mm256_add_ps(a1, qd_dot4_dm(hi[0], hi[1], hi[2], hi[3], _mm256_permutevar8x32_ps(dl, s1),
                                              _mm256_permutevar8x32_ps(ml, s1), xs + 64 * c + 32));
        }
    }
    return qd_hsum(_mm256_add_ps(a0, a1));
}

/* Q6_K: d*sc_s*sum((q-32)*x) per sub-block s of 16.  In half n of the
 * super-block, with l < 32: ql[64n + l] holds elements 128n + l (low
 * nibble) and 128n + 64 + l (high), ql[64n + 32 + l] elements 128n + 32 + l
 * and 128n + 96 + l, and qh[32n + l] the top two bits of all four (bits
 * 0-1, 2-3, 4-5, 6-7 for the elements at +0, +32, +64, +96). */
QD_INLINE float qd_q6_k_row(const uint8_t *w, const float *x, int64_t nb)
{
    __m256 acc[4];
    for (int k = 0; k < 4; k++)
        acc[k] = _mm256_setzero_ps();
    const __m256i m15 = qd_k(15), m48 = qd_k(48), o = qd_k(32);
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *p = w + i * 210;
        /* d*sc for the 16 sub-blocks, rounded as the dequantizer rounds them */
        float dsc[16];
        const __m256 d = qd_h(p + 208);
        _mm256_storeu_ps(dsc, _mm256_mul_ps(_mm256_cvtepi32_ps(qd_s8(p + 192)), d));
        _mm256_storeu_ps(dsc + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(qd_s8(p + 200)), d));
#pragma GCC unroll 2
        for (int n = 0; n < 2; n++) {
            const uint8_t *ql = p + 64 * n, *qh = p + 128 + 32 * n;
            const float *xn = x + QKK * i + 128 * n;
#pragma GCC unroll 2
            for (int half = 0; half < 2; half++) { /* l in [16 half, 16 half + 16): one sub-block per k */
                __m256 s[4];
#pragma GCC unroll 2
                for (int g = 2 * half; g < 2 * half + 2; g++) {
                    const __m256i a = qd_u8(ql + 8 * g), b = qd_u8(ql + 32 + 8 * g), h = qd_u8(qh + 8 * g);
                    __m256i q[4];
                    q[0] = _mm256_or_si256(_mm256_and_si256(a, m15), _mm256_and_si256(_mm256_slli_epi32(h, 4), m48));
                    q[1] = _mm256_or_si256(_mm256_and_si256(b, m15), _mm256_and_si256(_mm256_slli_epi32(h, 2), m48));
                    q[2] = _mm256_or_si256(_mm256_srli_epi32(a, 4), _mm256_and_si256(h, m48));
                    q[3] = _mm256_or_si256(_mm256_srli_epi32(b, 4), _mm256_and_si256(_mm256_srli_epi32(h, 2), m48));
#pragma GCC unroll 4
                    for (int k = 0; k < 4; k++) {
                        const __m256 qf = qd_f(_mm256_sub_epi32(q[k], o)), xv = qd_x(xn + 32 * k + 8 * g);
                        s[k] = g == 2 * half ? _mm256_mul_ps(qf, xv) : _mm256_fmadd_ps(qf, xv, s[k]);
                    }
                }
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) /* sub-block (128n + 32k + 16 half) / 16 */
                    acc[k] = _mm256_fmadd_ps(s[k], _mm256_broadcast_ss(&dsc[8 * n + 2 * k + half]), acc[k]);
            }
        }
    }
    return qd_hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
}

/* the dot for a type qd_has covers; n a multiple of its block */
QD_TARGET static float qd_dot_avx2(int type, const uint8_t *w, const float *x, int64_t n)
{
    switch (type) {
    case XF_TYPE_Q4_0: return qd_row32(XF_TYPE_Q4_0, 18, w, x, n / QK);
    case XF_TYPE_Q4_1: return qd_row32(XF_TYPE_Q4_1, 20, w, x, n / QK);
    case XF_TYPE_Q5_0: return qd_row32(XF_TYPE_Q5_0, 22, w, x, n / QK);
    case XF_TYPE_Q5_1: return qd_row32(XF_TYPE_Q5_1, 24, w, x, n / QK);
    case XF_TYPE_Q8_0: return qd_row32(XF_TYPE_Q8_0, 34, w, x, n / QK);
    case XF_TYPE_Q8_1: return qd_row32(XF_TYPE_Q8_1, 36, w, x, n / QK);
    case XF_TYPE_MXFP4: return qd_row32(XF_TYPE_MXFP4, 17, w, x, n / QK);
    case XF_TYPE_Q4_K: return qd_k45_row(w, x, n / QKK, 0);
    case XF_TYPE_Q5_K: return qd_k45_row(w, x, n / QKK, 1);
    case XF_TYPE_Q6_K: return qd_q6_k_row(w, x, n / QKK);
    default: return NAN;
    }
}

static bool qd_has(int type)
{
    switch (type) {
    case XF_TYPE_Q4_0: case XF_TYPE_Q4_1: case XF_TYPE_Q5_0: case XF_TYPE_Q5_1: case XF_TYPE_Q8_0:
    case XF_TYPE_Q8_1: case XF_TYPE_Q4_K: case XF_TYPE_Q5_K: case XF_TYPE_Q6_K: case XF_TYPE_MXFP4:
        return true;
    default:
        return false;
    }
}

static bool qd_cpu_ok(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
#else
#define QD_X86 0
#endif

/* The portable path: dequantize 256 elements at a time (one super-block or
 * eight small blocks) into a stack buffer, then one lane dot over it; the
 * weights used are exactly those of quant_dequant_row. */
float kern_cpu_quant_dot_generic(int type, const void *w, const float *x, int64_t n)
{
    const quant_type_info *t = quant_type_get(type);
    const uint8_t *p = w;
    if (!t || !t->supported || n < 0 || n % t->block_elems != 0)
        return NAN;
    if (type == XF_TYPE_MXFP4)
        return mxfp4_dot_portable(p, x, n);
    const int be = t->block_elems, bb = t->block_bytes;
    float buf[QKK]; /* [256] the weights of the current chunk */
    float acc = 0;
    int64_t i = 0;
    for (; i + QKK <= n; i += QKK) {
        /* whole blocks only: n is a multiple of be, and be divides 256 */
        quant_dequant_row(type, p + i / be * bb, buf, QKK);
        acc += dot_lanes(buf, x + i, QKK);
    }
    if (i == n)
        return acc;
    if (be == 1) {
        /* F32/F16/BF16: the tail element by element, summed on its own */
        float tail = 0;
        for (; i < n; i++) {
            float v;
            quant_dequant_row(type, p + i * bb, &v, 1);
            tail += v * x[i];
        }
        return acc + tail;
    }
    /* 32-element blocks: the last chunk is a multiple of LANES */
    quant_dequant_row(type, p + i / be * bb, buf, n - i);
    return acc + dot_lanes(buf, x + i, (int)(n - i));
}

/* the fused kernels where the type has one and the CPU runs them, else the
 * generic path (which also answers NaN for a bad type or length) */
float kern_cpu_quant_dot(int type, const void *w, const float *x, int64_t n)
{
#if QD_X86
    const quant_type_info *t = quant_type_get(type);
    if (qd_has(type) && t && t->supported && n >= 0 && n % t->block_elems == 0 && qd_cpu_ok())
        return qd_dot_avx2(type, w, x, n);
#endif
    return kern_cpu_quant_dot_generic(type, w, x, n);
}
