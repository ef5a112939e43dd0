/* quant: element types and ggml block formats (see quant.h).
 *
 * Every format is described once, by a "fill" function that unpacks the
 * integer quants of one block into floats (no scales applied); its dequant
 * applies the scales in exactly the order ggml's dequantize_row_* does, so the
 * results are bit-identical to ggml's reference code.  The loops are shaped
 * so gcc vectorizes them at -O2 without -ffast-math and without intrinsics
 * (fixed trip counts, restrict pointers, masks instead of branches).  The
 * kernels' fused dot products live in kernels/cpu/quant_dot.c, the
 * quantizers (tests and fixtures only) in tests/support/quantize.c.
 *
 * Blocks live at arbitrary byte offsets of a memory-mapped file (an 18-byte
 * Q4_0 block is not even 2-aligned, a 17-byte MXFP4 block not at all), so every multi-byte field is read bytewise
 * as little-endian; nothing here casts a block pointer to a struct. */
#include "quant.h"

#include "err.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define QK 32   /* elements per block of the 32-element formats */
#define QKK 256 /* elements per super-block of the k-quants */

/* ------------------------------------------------------------------ types */

static const quant_type_info type_table[XF_TYPE_COUNT] = {
    [XF_TYPE_F32] = {"F32", 1, 4, true},
    [XF_TYPE_F16] = {"F16", 1, 2, true},
    [XF_TYPE_Q4_0] = {"Q4_0", 32, 18, true},
    [XF_TYPE_Q4_1] = {"Q4_1", 32, 20, true},
    [XF_TYPE_Q5_0] = {"Q5_0", 32, 22, true},
    [XF_TYPE_Q5_1] = {"Q5_1", 32, 24, true},
    [XF_TYPE_Q8_0] = {"Q8_0", 32, 34, true},
    [XF_TYPE_Q8_1] = {"Q8_1", 32, 36, true},
    [XF_TYPE_Q2_K] = {"Q2_K", 256, 84, true},
    [XF_TYPE_Q3_K] = {"Q3_K", 256, 110, true},
    [XF_TYPE_Q4_K] = {"Q4_K", 256, 144, true},
    [XF_TYPE_Q5_K] = {"Q5_K", 256, 176, true},
    [XF_TYPE_Q6_K] = {"Q6_K", 256, 210, true},
    [XF_TYPE_Q8_K] = {"Q8_K", 256, 292, true},
    /* Known to ggml but not decoded here: listed so that a GGUF reader can
     * still compute tensor sizes and name the type in its error message. */
    [16] = {"IQ2_XXS", 256, 66, false},
    [17] = {"IQ2_XS", 256, 74, false},
    [18] = {"IQ3_XXS", 256, 98, false},
    [19] = {"IQ1_S", 256, 50, false},
    [20] = {"IQ4_NL", 32, 18, false},
    [21] = {"IQ3_S", 256, 110, false},
    [22] = {"IQ2_S", 256, 82, false},
    [23] = {"IQ4_XS", 256, 136, false},
    [24] = {"I8", 1, 1, false},
    [25] = {"I16", 1, 2, false},
    [26] = {"I32", 1, 4, false},
    [27] = {"I64", 1, 8, false},
    [28] = {"F64", 1, 8, false},
    [29] = {"IQ1_M", 256, 56, false},
    [XF_TYPE_BF16] = {"BF16", 1, 2, true},
    [34] = {"TQ1_0", 256, 54, false},
    [35] = {"TQ2_0", 256, 66, false},
    /* decoded again */
    [XF_TYPE_MXFP4] = {"MXFP4", 32, 17, true},
};

const quant_type_info *quant_type_get(int type)
{
    if (type < 0 || type >= XF_TYPE_COUNT || !type_table[type].name)
        return NULL;
    return &type_table[type];
}

const char *quant_type_name(int type)
{
    const quant_type_info *t = quant_type_get(type);
    return t ? t->name : "?";
}

bool quant_row_bytes(int type, int64_t n, uint64_t *bytes)
{
    const quant_type_info *t = quant_type_get(type);
    if (!t || n < 0 || n % t->block_elems != 0)
        return false;
    uint64_t r;
    if (!xf_mul_u64((uint64_t)(n / t->block_elems), (uint64_t)t->block_bytes, &r))
        return false;
    /* callers add this to signed file offsets: keep it representable there */
    if (r > (uint64_t)INT64_MAX)
        return false;
    if (bytes)
        *bytes = r;
    return true;
}

/* ------------------------------------------------------ scalar conversions */

typedef union f32_bits {
    float f;
    uint32_t u;
} f32_bits;

/* Branch-free (all three encodings computed, then selected with masks) so
 * that loops of it vectorize.  No f32 subnormal is ever an operand, so the
 * result stays exact even with denormals-are-zero set. */
static inline float f16_to_f32_inline(uint32_t h)
{
    const uint32_t em = (h & 0x7fffu) << 13;  /* exponent+mantissa at f32 position */
    const uint32_t e = h & 0x7c00u;
    const uint32_t normal = em + (112u << 23); /* rebias 15 -> 127 */
    const uint32_t infnan = em | 0x7f800000u;  /* exponent 31 -> 255, payload kept */
    f32_bits sub;
    sub.f = (float)(int32_t)(h & 0x3ffu) * 0x1p-24f; /* exact: 10 bits times a power of two */
    const uint32_t m_inf = 0u - (uint32_t)(e == 0x7c00u);
    const uint32_t m_sub = 0u - (uint32_t)(e == 0);
    f32_bits r;
    r.u = (m_inf & infnan) | (m_sub & sub.u) | (~(m_inf | m_sub) & normal) | ((h & 0x8000u) << 16);
    return r.f;
}

float xf_f16_to_f32(uint16_t h) { return f16_to_f32_inline(h); }

uint16_t xf_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t a = x & 0x7fffffffu;
    if (a > 0x7f800000u) {
        /* NaN: keep the top payload bits (as numpy does); a payload that
         * would truncate to zero must not turn the NaN into an infinity */
        uint16_t m = (uint16_t)((a >> 13) & 0x3ffu);
        return (uint16_t)(sign | 0x7c00u | (m ? m : 1u));
    }
    if (a >= 0x477ff000u) /* >= 65520, the midpoint past 65504: rounds to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a >= 0x38800000u) { /* a normal half (>= 2^-14) */
        uint32_t r = (a >> 13) - (112u << 10);
        uint32_t rem = a & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (r & 1u)))
            r++; /* a carry into the exponent is the right answer */
        return (uint16_t)(sign | r);
    }
    if (a <= 0x33000000u) /* <= 2^-25: at most half the smallest subnormal; the tie goes to 0 (even) */
        return sign;
    /* subnormal half: round(|f| * 2^24) to nearest even; the exponent is 102..112 here */
    uint32_t e = a >> 23;
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e; /* 14..24 */
    uint32_t r = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u)))
        r++; /* may become 0x400, the smallest normal: correct */
    return (uint16_t)(sign | r);
}

float xf_bf16_to_f32(uint16_t h)
{
    uint32_t r = (uint32_t)h << 16;
    float f;
    memcpy(&f, &r, sizeof f);
    return f;
}

uint16_t xf_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u) /* NaN: truncate, force quiet so it stays NaN (as ggml) */
        return (uint16_t)((x >> 16) | 0x40u);
    /* round to nearest even; no u32 overflow since only NaNs lie above -inf */
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* ------------------------------------------------------------ byte access */

static inline uint16_t ld_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t ld_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline float ld_f16(const uint8_t *p) { return xf_f16_to_f32(ld_u16(p)); }
static inline float ld_f32(const uint8_t *p)
{
    uint32_t u = ld_u32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
/* ============================================================ 32-element */

/* Q4_0, 18 bytes: f16 d | qs[16]; element j<16 is the low nibble of qs[j],
 * element j+16 the high nibble; value (q-8)*d */
static void q4_0_fill(const uint8_t *restrict b, float *restrict q /* [32] */)
{
    const uint8_t *restrict qs = b + 2;
    for (int j = 0; j < 16; j++)
        q[j] = (float)((qs[j] & 0xf) - 8);
    for (int j = 0; j < 16; j++)
        q[j + 16] = (float)((qs[j] >> 4) - 8);
}

/* Q4_1, 20 bytes: f16 d | f16 m | qs[16]; value q*d + m */
static void q4_1_fill(const uint8_t *restrict b, float *restrict q /* [32] */)
{
    const uint8_t *restrict qs = b + 4;
    for (int j = 0; j < 16; j++)
        q[j] = (float)(qs[j] & 0xf);
    for (int j = 0; j < 16; j++)
        q[j + 16] = (float)(qs[j] >> 4);
}

/* The 5-bit formats: 4 bytes qh (u32 LE: bit j is the 5th bit of element j)
 * then the nibbles as in Q4_0.  Q5_0, 22 bytes: f16 d | qh | qs[16]; value
 * (q-16)*d.  Q5_1, 24 bytes: f16 d | f16 m | qh | qs[16]; value q*d + m */
static void q5_fill(const uint8_t *restrict qh, const uint8_t *restrict qs, int offset,
                    float *restrict q /* [32] */)
{
    uint8_t t[32]; /* [32] the 5-bit quants */
    /* spread each qh byte to 8 bytes of 0/1 without per-bit shifts (SSE2 has
     * no per-lane variable shift): after the multiply every byte holds the
     * whole byte, the mask keeps bit i in byte i, +0x7f moves "nonzero" to
     * each byte's top bit without carries between bytes */
    for (int k = 0; k < 4; k++) {
        uint64_t x = (qh[k] * 0x0101010101010101ull) & 0x8040201008040201ull;
        x = ((x + 0x7f7f7f7f7f7f7f7full) >> 7) & 0x0101010101010101ull;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        x = __builtin_bswap64(x); /* byte i of the value must land in t[8k + i] */
#endif
        memcpy(t + 8 * k, &x, 8);
    }
    for (int j = 0; j < 16; j++)
        t[j] = (uint8_t)((t[j] << 4) | (qs[j] & 0xf));
    for (int j = 0; j < 16; j++)
        t[j + 16] = (uint8_t)((t[j + 16] << 4) | (qs[j] >> 4));
    for (int j = 0; j < 32; j++)
        q[j] = (float)(t[j] - offset);
}
static void q5_0_fill(const uint8_t *restrict b, float *restrict q) { q5_fill(b + 2, b + 6, 16, q); }
static void q5_1_fill(const uint8_t *restrict b, float *restrict q) { q5_fill(b + 4, b + 8, 0, q); }

/* Q8_0, 34 bytes: f16 d | int8 qs[32]; value q*d */
static void q8_0_fill(const uint8_t *restrict b, float *restrict q /* [32] */)
{
    for (int j = 0; j < 32; j++)
        q[j] = (float)(int8_t)b[2 + j];
}
/* Q8_1, 36 bytes: f16 d | f16 s (= d*sum q, unused here) | int8 qs[32]; value q*d */
static void q8_1_fill(const uint8_t *restrict b, float *restrict q /* [32] */)
{
    for (int j = 0; j < 32; j++)
        q[j] = (float)(int8_t)b[4 + j];
}

/* MXFP4, 17 bytes: u8 e (E8M0) | qs[16]: element j<16 is the low nibble of
 * qs[j], j+16 the high nibble, each an E2M1 code; value kvalue[code] *
 * 2^(e-128), as ggml's dequantize_row_mxfp4 (see xf_e8m0_half). */
const int8_t xf_mxfp4_kvalues[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

float xf_e8m0_half(uint8_t e)
{
    /* 2^(e-128): e >= 2 a normal float with exponent field e-1, e = 1 and
     * e = 0 the subnormals 2^-127 and 2^-128 (ggml's bit patterns) */
    f32_bits r;
    r.u = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    return r.f;
}

static void mxfp4_fill(const uint8_t *restrict b, float *restrict q /* [32] */)
{
    const uint8_t *restrict qs = b + 1;
    for (int j = 0; j < 16; j++)
        q[j] = (float)xf_mxfp4_kvalues[qs[j] & 0xf];
    for (int j = 0; j < 16; j++)
        q[j + 16] = (float)xf_mxfp4_kvalues[qs[j] >> 4];
}

static void mxfp4_deq(const uint8_t *b, float *y)
{
    float q[QK];
    mxfp4_fill(b, q);
    const float d = xf_e8m0_half(b[0]);
    for (int j = 0; j < QK; j++)
        y[j] = q[j] * d;
}

/* Formats with one scale (and maybe a min) per 32 elements share their
 * dequant: the scale at byte 0, the min (if any) at byte 2. */
typedef void (*fill_fn)(const uint8_t *restrict b, float *restrict q);

static inline void deq32(const uint8_t *b, float *y, fill_fn fill, bool has_min)
{
    float q[QK];
    fill(b, q);
    const float d = ld_f16(b);
    if (has_min) {
        const float m = ld_f16(b + 2);
        for (int j = 0; j < QK; j++)
            y[j] = q[j] * d + m;
    } else {
        for (int j = 0; j < QK; j++)
            y[j] = q[j] * d;
    }
}

static void q4_0_deq(const uint8_t *b, float *y) { deq32(b, y, q4_0_fill, false); }
static void q4_1_deq(const uint8_t *b, float *y) { deq32(b, y, q4_1_fill, true); }
static void q5_0_deq(const uint8_t *b, float *y) { deq32(b, y, q5_0_fill, false); }
static void q5_1_deq(const uint8_t *b, float *y) { deq32(b, y, q5_1_fill, true); }
static void q8_0_deq(const uint8_t *b, float *y) { deq32(b, y, q8_0_fill, false); }
static void q8_1_deq(const uint8_t *b, float *y) { deq32(b, y, q8_1_fill, false); }

/* ============================================================== k-quants */

/* The 2-bit fields of Q2_K and Q3_K: element e is in byte qs[32*(e/128) + e%32]
 * at bit 2*((e%128)/32), i.e. each 128-element half is four 32-element
 * layers of the same 32 bytes. */
static void q2bits_bytes(const uint8_t *restrict qs, uint8_t *restrict t /* [256] */)
{
    for (int n = 0; n < 2; n++)
        for (int k = 0; k < 4; k++) {
            const int sh = 2 * k;
            for (int l = 0; l < 32; l++)
                t[128 * n + 32 * k + l] = (uint8_t)((qs[32 * n + l] >> sh) & 3);
        }
}

static void q2bits_fill(const uint8_t *restrict qs, float *restrict q /* [256] */)
{
    uint8_t t[QKK]; /* [256] */
    q2bits_bytes(qs, t);
    for (int e = 0; e < QKK; e++)
        q[e] = (float)t[e];
}

/* Q2_K, 84 bytes: scales[16] (low nibble scale, high nibble min, per 16
 * elements) | qs[64] | f16 d | f16 dmin; value d*sc*q - dmin*m */
static void q2_k_deq(const uint8_t *b, float *y)
{
    float q[QKK];
    q2bits_fill(b + 16, q);
    const float d = ld_f16(b + 80), dmin = ld_f16(b + 82);
    for (int s = 0; s < 16; s++) {
        const float dl = d * (float)(b[s] & 0xf), ml = dmin * (float)(b[s] >> 4);
        for (int l = 0; l < 16; l++)
            y[16 * s + l] = dl * q[16 * s + l] - ml;
    }
}

/* Q3_K, 110 bytes: hmask[32] | qs[64] | scales[12] | f16 d.  Element e: the
 * 2 low bits as in Q2_K, the third bit is hmask[e%32] bit e/32, and the quant
 * is low - (hbit ? 0 : 4), in -4..3.  16 six-bit scales, stored +32: low 4 bits
 * of scale s in byte s%8 (low nibble for s<8, high for s>=8), the top 2 bits
 * in byte 8 + s%4 at bit 2*(s/4). */
static void q3_k_fill(const uint8_t *restrict b, float *restrict q /* [256] */)
{
    const uint8_t *restrict hm = b;
    uint8_t t[QKK]; /* [256] the 3-bit quants + 4 */
    q2bits_bytes(b + 32, t);
    for (int k = 0; k < 8; k++)
        for (int l = 0; l < 32; l++)
            t[32 * k + l] |= (uint8_t)(((hm[l] >> k) & 1) << 2);
    for (int e = 0; e < QKK; e++)
        q[e] = (float)(t[e] - 4);
}

static void q3_k_scales(const uint8_t *sc12, int *sc /* [16], -32..31 */)
{
    for (int s = 0; s < 16; s++) {
        int lo = s < 8 ? (sc12[s] & 0xf) : (sc12[s - 8] >> 4);
        int hi = (sc12[8 + s % 4] >> (2 * (s / 4))) & 3;
        sc[s] = (lo | (hi << 4)) - 32;
    }
}

static void q3_k_deq(const uint8_t *b, float *y)
{
    float q[QKK];
    int sc[16];
    q3_k_fill(b, q);
    q3_k_scales(b + 96, sc);
    const float d = ld_f16(b + 108);
    for (int s = 0; s < 16; s++) {
        const float dl = d * (float)sc[s];
        for (int l = 0; l < 16; l++)
            y[16 * s + l] = dl * q[16 * s + l];
    }
}

/* The 12 scale bytes of Q4_K/Q5_K hold 8 six-bit scales and 8 six-bit mins
 * (one pair per 32 elements): for j<4, scale j is bytes[j]&63 and min j is
 * bytes[j+4]&63; for j>=4 the low 4 bits come from bytes[j+4] (scale in the
 * low nibble, min in the high) and the top 2 bits from the spare top bits of
 * bytes[j-4] (scale) and bytes[j] (min). */
void quant_k4_scales(const uint8_t *s12, int *sc /* [8] */, int *mn /* [8] */)
{
    for (int j = 0; j < 4; j++) {
        sc[j] = s12[j] & 63;
        mn[j] = s12[j + 4] & 63;
        sc[j + 4] = (s12[j + 8] & 0xf) | ((s12[j] >> 6) << 4);
        mn[j + 4] = (s12[j + 8] >> 4) | ((s12[j + 4] >> 6) << 4);
    }
}

/* Q4_K, 144 bytes: f16 d | f16 dmin | scales[12] | qs[128].  Element e: byte
 * qs[32*(e/64) + e%32], low nibble if e%64 < 32 else high; value
 * d*sc*q - dmin*m with (sc, m) of sub-block e/32 */
static void q4_k_fill(const uint8_t *restrict b, float *restrict q /* [256] */)
{
    const uint8_t *restrict qs = b + 16;
    for (int c = 0; c < 4; c++) {
        for (int l = 0; l < 32; l++)
            q[64 * c + l] = (float)(qs[32 * c + l] & 0xf);
        for (int l = 0; l < 32; l++)
            q[64 * c + 32 + l] = (float)(qs[32 * c + l] >> 4);
    }
}

/* Q5_K, 176 bytes: f16 d | f16 dmin | scales[12] | qh[32] | qs[128]: as Q4_K
 * plus a fifth bit, qh[e%32] bit e/32 */
static void q5_k_fill(const uint8_t *restrict b, float *restrict q /* [256] */)
{
    const uint8_t *restrict qh = b + 16, *restrict qs = b + 48;
    for (int c = 0; c < 4; c++) {
        const int s0 = 2 * c, s1 = 2 * c + 1;
        for (int l = 0; l < 32; l++)
            q[64 * c + l] = (float)((qs[32 * c + l] & 0xf) | (((qh[l] >> s0) & 1) << 4));
        for (int l = 0; l < 32; l++)
            q[64 * c + 32 + l] = (float)((qs[32 * c + l] >> 4) | (((qh[l] >> s1) & 1) << 4));
    }
}

static inline void k45_deq(const uint8_t *b, float *y, fill_fn fill)
{
    float q[QKK];
    int sc[8], mn[8];
    fill(b, q);
    quant_k4_scales(b + 4, sc, mn);
    const float d = ld_f16(b), dmin = ld_f16(b + 2);
    for (int s = 0; s < 8; s++) {
        const float dl = d * (float)sc[s], ml = dmin * (float)mn[s];
        for (int l = 0; l < 32; l++)
            y[32 * s + l] = dl * q[32 * s + l] - ml;
    }
}

static void q4_k_deq(const uint8_t *b, float *y) { k45_deq(b, y, q4_k_fill); }
static void q5_k_deq(const uint8_t *b, float *y) { k45_deq(b, y, q5_k_fill); }

/* Q6_K, 210 bytes: ql[128] | qh[64] | int8 scales[16] | f16 d.  Element e,
 * with n = e/128, k = (e%128)/32, l = e%32: low 4 bits are the nibble of
 * ql[64n + 32*(k&1) + l] (low nibble for k<2, high for k>=2), the top 2 bits
 * are qh[32n + l] >> 2k; quant - 32; scale scales[e/16]; value d*sc*q */
static void q6_k_fill(const uint8_t *restrict b, float *restrict q /* [256] */)
{
    const uint8_t *restrict ql = b, *restrict qh = b + 128;
    for (int n = 0; n < 2; n++)
        for (int k = 0; k < 4; k++) {
            const uint8_t *restrict lo = ql + 64 * n + 32 * (k & 1);
            const int lsh = k < 2 ? 0 : 4, hsh = 2 * k;
            for (int l = 0; l < 32; l++)
                q[128 * n + 32 * k + l] =
                    (float)((((lo[l] >> lsh) & 0xf) | (((qh[32 * n + l] >> hsh) & 3) << 4)) - 32);
        }
}

static void q6_k_deq(const uint8_t *b, float *y)
{
    float q[QKK];
    q6_k_fill(b, q);
    const float d = ld_f16(b + 208);
    for (int s = 0; s < 16; s++) {
        const float dl = d * (float)(int8_t)b[192 + s];
        for (int l = 0; l < 16; l++)
            y[16 * s + l] = dl * q[16 * s + l];
    }
}

/* Q8_K, 292 bytes: f32 d | int8 qs[256] | int16 bsums[16] (sums of 16 quants,
 * for ggml's dot products; not needed to dequantize); value d*q */
static void q8_k_fill(const uint8_t *restrict b, float *restrict q /* [256] */)
{
    for (int j = 0; j < QKK; j++)
        q[j] = (float)(int8_t)b[4 + j];
}

static void q8_k_deq(const uint8_t *b, float *y)
{
    float q[QKK];
    q8_k_fill(b, q);
    const float d = ld_f32(b);
    for (int j = 0; j < QKK; j++)
        y[j] = d * q[j];
}

/* ------------------------------------------------------------- dispatch */

typedef struct quant_ops {
    void (*deq)(const uint8_t *b, float *y); /* one block */
} quant_ops;

static const quant_ops ops_table[XF_TYPE_COUNT] = {
    [XF_TYPE_Q4_0] = {q4_0_deq},
    [XF_TYPE_Q4_1] = {q4_1_deq},
    [XF_TYPE_Q5_0] = {q5_0_deq},
    [XF_TYPE_Q5_1] = {q5_1_deq},
    [XF_TYPE_Q8_0] = {q8_0_deq},
    [XF_TYPE_Q8_1] = {q8_1_deq},
    [XF_TYPE_Q2_K] = {q2_k_deq},
    [XF_TYPE_Q3_K] = {q3_k_deq},
    [XF_TYPE_Q4_K] = {q4_k_deq},
    [XF_TYPE_Q5_K] = {q5_k_deq},
    [XF_TYPE_Q6_K] = {q6_k_deq},
    [XF_TYPE_Q8_K] = {q8_k_deq},
    [XF_TYPE_MXFP4] = {mxfp4_deq},
};

static bool is_elem_type(int type)
{
    return type == XF_TYPE_F32 || type == XF_TYPE_F16 || type == XF_TYPE_BF16;
}

/* the block info of a type this file can decode, for a valid row length */
static const quant_type_info *row_type(int type, int64_t n)
{
    const quant_type_info *t = quant_type_get(type);
    if (!t || !t->supported || n < 0 || n % t->block_elems != 0)
        return NULL;
    return t;
}

/* 256 elements of an F16 or BF16 row to f32: fixed-length simple loops
 * (bytes to u16, u16 to f32) that gcc vectorizes */
static void half_row256(int type, const uint8_t *restrict p, float *restrict out /* [256] */)
{
    uint16_t hb[QKK]; /* [256] */
    for (int i = 0; i < QKK; i++)
        hb[i] = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
    if (type == XF_TYPE_F16) {
        for (int i = 0; i < QKK; i++)
            out[i] = f16_to_f32_inline(hb[i]);
    } else {
        for (int i = 0; i < QKK; i++) {
            f32_bits r;
            r.u = (uint32_t)hb[i] << 16;
            out[i] = r.f;
        }
    }
}

/* element i of an F32/F16/BF16 row */
static inline float elem_get(int type, const uint8_t *p, int64_t i)
{
    if (type == XF_TYPE_F32)
        return ld_f32(p + 4 * i);
    if (type == XF_TYPE_F16)
        return xf_f16_to_f32(ld_u16(p + 2 * i));
    return xf_bf16_to_f32(ld_u16(p + 2 * i));
}

void quant_dequant_row(int type, const void *src, float *dst, int64_t n)
{
    const quant_type_info *t = row_type(type, n);
    const uint8_t *p = src;
    if (!t) {
        /* no way to report an error here: make the misuse visible instead */
        for (int64_t i = 0; i < n; i++)
            dst[i] = NAN;
        return;
    }
    if (type == XF_TYPE_F32) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    }
    if (is_elem_type(type)) {
        int64_t i = 0;
        for (; i + QKK <= n; i += QKK)
            half_row256(type, p + 2 * i, dst + i);
        for (; i < n; i++)
            dst[i] = elem_get(type, p, i);
        return;
    }
    const quant_ops *o = &ops_table[type];
    const int64_t nb = n / t->block_elems;
    for (int64_t i = 0; i < nb; i++)
        o->deq(p + i * t->block_bytes, dst + i * t->block_elems);
}

/* ============================================================ introspection */

static int field(quant_field *out, int k, int max, const char *name, const float *v, int n)
{
    if (k >= max)
        return k;
    out[k].name = name;
    out[k].count = n;
    memcpy(out[k].v, v, (size_t)n * sizeof *v);
    return k + 1;
}

static int field1(quant_field *out, int k, int max, const char *name, float v) { return field(out, k, max, name, &v, 1); }

int quant_block_fields(int type, const void *block, quant_field *out, int max)
{
    const uint8_t *b = block;
    float q[QKK], s[16], m[16];
    int sc[16], mn[16], k = 0;
    switch (type) {
    case XF_TYPE_Q4_0: q4_0_fill(b, q); k = field1(out, k, max, "d", ld_f16(b)); return field(out, k, max, "q", q, QK);
    case XF_TYPE_Q4_1:
        q4_1_fill(b, q);
        k = field1(out, k, max, "d", ld_f16(b));
        k = field1(out, k, max, "m", ld_f16(b + 2));
        return field(out, k, max, "q", q, QK);
    case XF_TYPE_Q5_0: q5_0_fill(b, q); k = field1(out, k, max, "d", ld_f16(b)); return field(out, k, max, "q", q, QK);
    case XF_TYPE_Q5_1:
        q5_1_fill(b, q);
        k = field1(out, k, max, "d", ld_f16(b));
        k = field1(out, k, max, "m", ld_f16(b + 2));
        return field(out, k, max, "q", q, QK);
    case XF_TYPE_Q8_0: q8_0_fill(b, q); k = field1(out, k, max, "d", ld_f16(b)); return field(out, k, max, "q", q, QK);
    case XF_TYPE_Q8_1:
        q8_1_fill(b, q);
        k = field1(out, k, max, "d", ld_f16(b));
        k = field1(out, k, max, "s", ld_f16(b + 2));
        return field(out, k, max, "q", q, QK);
    case XF_TYPE_Q2_K:
        q2bits_fill(b + 16, q);
        for (int i = 0; i < 16; i++) {
            s[i] = (float)(b[i] & 0xf);
            m[i] = (float)(b[i] >> 4);
        }
        k = field1(out, k, max, "d", ld_f16(b + 80));
        k = field1(out, k, max, "dmin", ld_f16(b + 82));
        k = field(out, k, max, "scales", s, 16);
        k = field(out, k, max, "mins", m, 16);
        return field(out, k, max, "q", q, QKK);
    case XF_TYPE_Q3_K:
        q3_k_fill(b, q);
        q3_k_scales(b + 96, sc);
        for (int i = 0; i < 16; i++)
            s[i] = (float)sc[i];
        k = field1(out, k, max, "d", ld_f16(b + 108));
        k = field(out, k, max, "scales", s, 16);
        return field(out, k, max, "q", q, QKK);
    case XF_TYPE_Q4_K:
    case XF_TYPE_Q5_K:
        if (type == XF_TYPE_Q4_K)
            q4_k_fill(b, q);
        else
            q5_k_fill(b, q);
        quant_k4_scales(b + 4, sc, mn);
        for (int i = 0; i < 8; i++) {
            s[i] = (float)sc[i];
            m[i] = (float)mn[i];
        }
        k = field1(out, k, max, "d", ld_f16(b));
        k = field1(out, k, max, "dmin", ld_f16(b + 2));
        k = field(out, k, max, "scales", s, 8);
        k = field(out, k, max, "mins", m, 8);
        return field(out, k, max, "q", q, QKK);
    case XF_TYPE_Q6_K:
        q6_k_fill(b, q);
        for (int i = 0; i < 16; i++)
            s[i] = (float)(int8_t)b[192 + i];
        k = field1(out, k, max, "d", ld_f16(b + 208));
        k = field(out, k, max, "scales", s, 16);
        return field(out, k, max, "q", q, QKK);
    case XF_TYPE_Q8_K: q8_k_fill(b, q); k = field1(out, k, max, "d", ld_f32(b)); return field(out, k, max, "q", q, QKK);
    case XF_TYPE_MXFP4:
        /* e as stored, d = 2^(e-128) the factor applied, q the doubled E2M1 values */
        mxfp4_fill(b, q);
        k = field1(out, k, max, "e", (float)b[0]);
        k = field1(out, k, max, "d", xf_e8m0_half(b[0]));
        return field(out, k, max, "q", q, QK);
    default: return 0;
    }
}

