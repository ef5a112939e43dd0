/* quant: element types and ggml block formats (see quant.h).
 *
 * Every format is described once, by a "fill" function that unpacks the
 * integer quants of one block into floats (no scales applied); its dequant
 * applies the scales in exactly the order ggml's dequantize_row_* does, so the
 * results are bit-identical to ggml's reference code.  quant_dot_ref and the
 * generic quant_dot_f32 reuse the dequant one block (ref) or 256 elements
 * (f32) at a time, into a stack buffer; the fast quant_dot_f32 has fused
 * kernels that never store a weight (see "fused f32 dots").  The loops of
 * the portable code are shaped so gcc vectorizes them at -O2 without
 * -ffast-math and without intrinsics (fixed trip counts, restrict pointers,
 * lane accumulators, masks instead of branches).
 *
 * Blocks live at arbitrary byte offsets of a memory-mapped file (an 18-byte
 * Q4_0 block is not even 2-aligned), so every multi-byte field is read bytewise
 * as little-endian; nothing here casts a block pointer to a struct.
 *
 * Quantizers: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1 Q8_K reproduce ggml's
 * quantize_row_*_ref formulas (Q8_0 bit-exact with ggml, tested against the
 * gguf Python package).  The other k-quants use a simpler deterministic method
 * than ggml's search (see kq_choose_asym / kq_choose_sym): scales are rounded
 * UP so the representable range always covers the sub-block, which bounds the
 * error by half a quantization step. */
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
    [39] = {"MXFP4", 32, 17, false},
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
static inline void st_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void st_f32(uint8_t *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(u >> (8 * i));
}

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

static inline float clampf(float v, float lo, float hi)
{
    /* NaN goes to lo so a float->int conversion after it is always defined */
    return v >= lo ? (v <= hi ? v : hi) : lo;
}

/* nearest integer, ties to even (as ggml's nearest_int under the default rounding mode) */
static inline int nearest_even(float v, float lo, float hi)
{
    return (int)nearbyintf(clampf(v, lo, hi));
}

/* smallest f16 >= v (v >= 0): super-scales are rounded up so the range the
 * quantized sub-scales cover never shrinks below what was asked for */
static uint16_t f16_ceil(float v)
{
    uint16_t h = xf_f32_to_f16(v);
    if (xf_f16_to_f32(h) < v && h < 0x7c00u)
        h++;
    return h;
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

/* ---- quantizers: ggml's *_ref formulas (same float operations, same order) */

/* the value of largest magnitude, first one on ties (ggml keeps the sign) */
static float signed_absmax(const float *x, int n)
{
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void minmax(const float *x, int n, float *mn, float *mx)
{
    *mn = FLT_MAX;
    *mx = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < *mn)
            *mn = x[j];
        if (x[j] > *mx)
            *mx = x[j];
    }
}

static void q4_0_quant(const float *x, uint8_t *b)
{
    const float d = signed_absmax(x, QK) / -8;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    st_u16(b, xf_f32_to_f16(d));
    for (int j = 0; j < 16; j++) {
        /* truncation of v+8.5 is ggml's rounding; the clamp is its MIN(15, .) */
        int q0 = (int)clampf(x[j] * id + 8.5f, 0, 15);
        int q1 = (int)clampf(x[j + 16] * id + 8.5f, 0, 15);
        b[2 + j] = (uint8_t)(q0 | (q1 << 4));
    }
}

static void q4_1_quant(const float *x, uint8_t *b)
{
    float mn, mx;
    minmax(x, QK, &mn, &mx);
    const float d = (mx - mn) / 15;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    st_u16(b, xf_f32_to_f16(d));
    st_u16(b + 2, xf_f32_to_f16(mn));
    for (int j = 0; j < 16; j++) {
        int q0 = (int)clampf((x[j] - mn) * id + 0.5f, 0, 15);
        int q1 = (int)clampf((x[j + 16] - mn) * id + 0.5f, 0, 15);
        b[4 + j] = (uint8_t)(q0 | (q1 << 4));
    }
}

static void q5_pack(const int *q /* [32] */, uint8_t *qh_p, uint8_t *qs)
{
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0xf) | ((q[j + 16] & 0xf) << 4));
        qh |= (uint32_t)((q[j] >> 4) & 1) << j;
        qh |= (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    for (int i = 0; i < 4; i++)
        qh_p[i] = (uint8_t)(qh >> (8 * i));
}

static void q5_0_quant(const float *x, uint8_t *b)
{
    const float d = signed_absmax(x, QK) / -16;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    int q[QK];
    st_u16(b, xf_f32_to_f16(d));
    for (int j = 0; j < QK; j++)
        q[j] = (int)clampf(x[j] * id + 16.5f, 0, 31);
    q5_pack(q, b + 2, b + 6);
}

static void q5_1_quant(const float *x, uint8_t *b)
{
    float mn, mx;
    minmax(x, QK, &mn, &mx);
    const float d = (mx - mn) / 31;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    int q[QK];
    st_u16(b, xf_f32_to_f16(d));
    st_u16(b + 2, xf_f32_to_f16(mn));
    for (int j = 0; j < QK; j++)
        q[j] = (int)clampf((x[j] - mn) * id + 0.5f, 0, 31);
    q5_pack(q, b + 4, b + 8);
}

/* Q8_0/Q8_1: d = absmax/127 stored as f16, but the quants use 1/d of the
 * unrounded d, as ggml does (needed for bit-exactness) */
static int q8_quant(const float *x, int8_t *qs, float *d_out)
{
    float amax = 0;
    for (int j = 0; j < QK; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < QK; j++) {
        qs[j] = (int8_t)roundf(clampf(x[j] * id, -127, 127)); /* half away from zero, as roundf in ggml */
        sum += qs[j];
    }
    *d_out = d;
    return sum;
}

static void q8_0_quant(const float *x, uint8_t *b)
{
    int8_t qs[QK];
    float d;
    q8_quant(x, qs, &d);
    st_u16(b, xf_f32_to_f16(d));
    memcpy(b + 2, qs, QK);
}

static void q8_1_quant(const float *x, uint8_t *b)
{
    int8_t qs[QK];
    float d;
    int sum = q8_quant(x, qs, &d);
    st_u16(b, xf_f32_to_f16(d));
    st_u16(b + 2, xf_f32_to_f16((float)sum * d));
    memcpy(b + 4, qs, QK);
}

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
static void k4_scales(const uint8_t *s12, int *sc /* [8] */, int *mn /* [8] */)
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
    k4_scales(b + 4, sc, mn);
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

/* ---- k-quant quantizers (not ggml's search; see the file comment)
 *
 * Asymmetric (Q2_K, Q4_K, Q5_K): value = step_j*q - off_j with q in 0..nmax,
 * step_j = d*ls_j, off_j = dmin*lm_j, ls_j, lm_j in 0..smax.  Per sub-block j:
 * off_j must reach down to min(0, min x) and step_j*nmax up to max x.  Both
 * super-scales and both integer sub-scales are rounded UP, so every x lies in
 * [-off_j, step_j*nmax - off_j] and the error is at most step_j/2, with
 * step_j <= (range_j + dmin)/nmax + d (range_j = max(x,0) - min(x,0)). */
static void kq_choose_asym(const float *x, int nsub, int sublen, int nmax, int smax,
                           uint16_t *d_h, uint16_t *dmin_h, int *ls, int *lm, int *L)
{
    float hi[16], mn[16], s[16];
    float maxmn = 0, maxs = 0;
    for (int j = 0; j < nsub; j++) {
        float lo = 0, h = -FLT_MAX;
        for (int i = 0; i < sublen; i++) {
            lo = fminf(lo, x[sublen * j + i]);
            h = fmaxf(h, x[sublen * j + i]);
        }
        hi[j] = h;
        mn[j] = -lo;
        maxmn = fmaxf(maxmn, mn[j]);
    }
    *dmin_h = f16_ceil(maxmn / (float)smax);
    const float dmin = xf_f16_to_f32(*dmin_h);
    for (int j = 0; j < nsub; j++) {
        lm[j] = dmin > 0 ? (int)clampf(ceilf(mn[j] / dmin), 0, (float)smax) : 0;
        s[j] = fmaxf((hi[j] + dmin * (float)lm[j]) / (float)nmax, 0);
        maxs = fmaxf(maxs, s[j]);
    }
    *d_h = f16_ceil(maxs / (float)smax);
    const float d = xf_f16_to_f32(*d_h);
    for (int j = 0; j < nsub; j++) {
        ls[j] = d > 0 ? (int)clampf(ceilf(s[j] / d), 0, (float)smax) : 0;
        /* the same float products the dequantizer forms */
        const float step = d * (float)ls[j], off = dmin * (float)lm[j];
        for (int i = 0; i < sublen; i++) {
            const int e = sublen * j + i;
            L[e] = step > 0 ? nearest_even((x[e] + off) / step, 0, (float)nmax) : 0;
        }
    }
}

/* Symmetric (Q3_K, Q6_K): value = d*sc_j*q, sc_j in 0..smax, q in qlo..qhi.
 * step_j = d*sc_j >= absmax_j/qmax (rounded up as above), so |x|/step <= qmax
 * never clips and the error is at most step_j/2. */
static void kq_choose_sym(const float *x, int nsub, int sublen, int qmax, int qlo, int qhi,
                          int smax, uint16_t *d_h, int *sc, int *L)
{
    float s[16], maxs = 0;
    for (int j = 0; j < nsub; j++) {
        float a = 0;
        for (int i = 0; i < sublen; i++)
            a = fmaxf(a, fabsf(x[sublen * j + i]));
        s[j] = a / (float)qmax;
        maxs = fmaxf(maxs, s[j]);
    }
    *d_h = f16_ceil(maxs / (float)smax);
    const float d = xf_f16_to_f32(*d_h);
    for (int j = 0; j < nsub; j++) {
        sc[j] = d > 0 ? (int)clampf(ceilf(s[j] / d), 0, (float)smax) : 0;
        const float step = d * (float)sc[j];
        for (int i = 0; i < sublen; i++) {
            const int e = sublen * j + i;
            L[e] = step > 0 ? nearest_even(x[e] / step, (float)qlo, (float)qhi) : 0;
        }
    }
}

static void q2bits_pack(const int *L /* [256], 0..3 */, uint8_t *qs /* [64] */)
{
    memset(qs, 0, 64);
    for (int e = 0; e < QKK; e++)
        qs[32 * (e / 128) + e % 32] |= (uint8_t)(L[e] << (2 * ((e % 128) / 32)));
}

static void q2_k_quant(const float *x, uint8_t *b)
{
    int ls[16], lm[16], L[QKK];
    uint16_t d, dmin;
    kq_choose_asym(x, 16, 16, 3, 15, &d, &dmin, ls, lm, L);
    for (int s = 0; s < 16; s++)
        b[s] = (uint8_t)(ls[s] | (lm[s] << 4));
    q2bits_pack(L, b + 16);
    st_u16(b + 80, d);
    st_u16(b + 82, dmin);
}

static void q3_k_quant(const float *x, uint8_t *b)
{
    int sc[16], L[QKK];
    uint16_t d;
    /* only -3..3 is used (the -4 level is left out to keep the scale positive) */
    kq_choose_sym(x, 16, 16, 3, -4, 3, 31, &d, sc, L);
    memset(b, 0, 32);      /* hmask */
    memset(b + 96, 0, 12); /* scales */
    int low[QKK];
    for (int e = 0; e < QKK; e++) {
        int u = L[e] + 4; /* 0..7: bit 2 goes to hmask, where set means "no -4" */
        if (u & 4)
            b[e % 32] |= (uint8_t)(1u << (e / 32));
        low[e] = u & 3;
    }
    q2bits_pack(low, b + 32);
    for (int s = 0; s < 16; s++) {
        int v = sc[s] + 32;
        b[96 + s % 8] |= (uint8_t)((v & 0xf) << (s < 8 ? 0 : 4));
        b[96 + 8 + s % 4] |= (uint8_t)((v >> 4) << (2 * (s / 4)));
    }
    st_u16(b + 108, d);
}

static void k4_pack_scales(const int *ls, const int *lm, uint8_t *s12)
{
    for (int j = 0; j < 4; j++) {
        s12[j] = (uint8_t)(ls[j] | ((ls[j + 4] >> 4) << 6));
        s12[j + 4] = (uint8_t)(lm[j] | ((lm[j + 4] >> 4) << 6));
        s12[j + 8] = (uint8_t)((ls[j + 4] & 0xf) | ((lm[j + 4] & 0xf) << 4));
    }
}

static void k45_quant(const float *x, uint8_t *b, int nmax)
{
    int ls[8], lm[8], L[QKK];
    uint16_t d, dmin;
    kq_choose_asym(x, 8, 32, nmax, 63, &d, &dmin, ls, lm, L);
    st_u16(b, d);
    st_u16(b + 2, dmin);
    k4_pack_scales(ls, lm, b + 4);
    uint8_t *qs = nmax == 15 ? b + 16 : b + 48;
    if (nmax == 31) {
        uint8_t *qh = b + 16;
        memset(qh, 0, 32);
        for (int e = 0; e < QKK; e++)
            qh[e % 32] |= (uint8_t)(((L[e] >> 4) & 1) << (e / 32));
    }
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            qs[32 * c + l] = (uint8_t)((L[64 * c + l] & 0xf) | ((L[64 * c + 32 + l] & 0xf) << 4));
}

static void q4_k_quant(const float *x, uint8_t *b) { k45_quant(x, b, 15); }
static void q5_k_quant(const float *x, uint8_t *b) { k45_quant(x, b, 31); }

static void q6_k_quant(const float *x, uint8_t *b)
{
    int sc[16], L[QKK];
    uint16_t d;
    kq_choose_sym(x, 16, 16, 31, -32, 31, 127, &d, sc, L);
    uint8_t *ql = b, *qh = b + 128;
    memset(b, 0, 192);
    for (int e = 0; e < QKK; e++) {
        int u = L[e] + 32; /* 0..63 */
        int n = e / 128, k = (e % 128) / 32, l = e % 32;
        ql[64 * n + 32 * (k & 1) + l] |= (uint8_t)((u & 0xf) << (k < 2 ? 0 : 4));
        qh[32 * n + l] |= (uint8_t)((u >> 4) << (2 * k));
    }
    for (int s = 0; s < 16; s++)
        b[192 + s] = (uint8_t)(int8_t)sc[s];
    st_u16(b + 208, d);
}

/* ggml's quantize_row_q8_K_ref: scale from the signed absmax, ties to even */
static void q8_k_quant(const float *x, uint8_t *b)
{
    const float max = signed_absmax(x, QKK);
    memset(b, 0, 292);
    if (max == 0)
        return; /* d = 0.0f and all quants 0: every field is zero bytes */
    const float iscale = -127.f / max;
    for (int s = 0; s < 16; s++) {
        int sum = 0;
        for (int l = 0; l < 16; l++) {
            const int v = nearest_even(iscale * x[16 * s + l], -128, 127);
            b[4 + 16 * s + l] = (uint8_t)(int8_t)v;
            sum += v;
        }
        st_u16(b + 260 + 2 * s, (uint16_t)(int16_t)sum);
    }
    st_f32(b, 1 / iscale);
}

/* ------------------------------------------------------------- dispatch */

typedef struct quant_ops {
    void (*deq)(const uint8_t *b, float *y);   /* one block */
    void (*quant)(const float *x, uint8_t *b); /* one block */
} quant_ops;

static const quant_ops ops_table[XF_TYPE_COUNT] = {
    [XF_TYPE_Q4_0] = {q4_0_deq, q4_0_quant},
    [XF_TYPE_Q4_1] = {q4_1_deq, q4_1_quant},
    [XF_TYPE_Q5_0] = {q5_0_deq, q5_0_quant},
    [XF_TYPE_Q5_1] = {q5_1_deq, q5_1_quant},
    [XF_TYPE_Q8_0] = {q8_0_deq, q8_0_quant},
    [XF_TYPE_Q8_1] = {q8_1_deq, q8_1_quant},
    [XF_TYPE_Q2_K] = {q2_k_deq, q2_k_quant},
    [XF_TYPE_Q3_K] = {q3_k_deq, q3_k_quant},
    [XF_TYPE_Q4_K] = {q4_k_deq, q4_k_quant},
    [XF_TYPE_Q5_K] = {q5_k_deq, q5_k_quant},
    [XF_TYPE_Q6_K] = {q6_k_deq, q6_k_quant},
    [XF_TYPE_Q8_K] = {q8_k_deq, q8_k_quant},
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

size_t quant_quantize_row(int type, const float *src, void *dst, int64_t n)
{
    const quant_type_info *t = row_type(type, n);
    uint64_t bytes;
    if (!t || !quant_row_bytes(type, n, &bytes))
        return 0;
    uint8_t *p = dst;
    if (type == XF_TYPE_F32) {
        memcpy(dst, src, (size_t)bytes);
    } else if (type == XF_TYPE_F16 || type == XF_TYPE_BF16) {
        for (int64_t i = 0; i < n; i++)
            st_u16(p + 2 * i, type == XF_TYPE_F16 ? xf_f32_to_f16(src[i]) : xf_f32_to_bf16(src[i]));
    } else {
        const quant_ops *o = &ops_table[type];
        const int64_t nb = n / t->block_elems;
        for (int64_t i = 0; i < nb; i++)
            o->quant(src + i * t->block_elems, p + i * t->block_bytes);
    }
    return (size_t)bytes;
}

double quant_dot_ref(int type, const void *w, const float *x, int64_t n)
{
    const quant_type_info *t = row_type(type, n);
    const uint8_t *p = w;
    if (!t)
        return NAN;
    double acc = 0;
    if (is_elem_type(type)) {
        for (int64_t i = 0; i < n; i++)
            acc += (double)elem_get(type, p, i) * (double)x[i];
        return acc;
    }
    float buf[QKK]; /* [block_elems]: one block at a time, never the whole row */
    const quant_ops *o = &ops_table[type];
    const int64_t nb = n / t->block_elems;
    for (int64_t i = 0; i < nb; i++) {
        o->deq(p + i * t->block_bytes, buf);
        const float *xb = x + i * t->block_elems;
        for (int j = 0; j < t->block_elems; j++)
            acc += (double)buf[j] * (double)xb[j];
    }
    return acc;
}

/* ======================================================= fused f32 dots
 *
 * quant_dot_f32 for the block formats that decode spends its time in (the
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
 * quant_dot_ref.
 *
 * x86-64 with AVX2+FMA+F16C only, picked per call (as kernels/cpu/f16.c
 * does).  Written with intrinsics: GCC's portable vector extensions turn
 * the byte widening into scalar inserts, which cost more than the rest.
 * Other CPUs take the generic path. */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QD_X86 1
#include <immintrin.h>

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

QD_INLINE __m256 qd_blk32(int type, const uint8_t *p, const float *x, __m256 acc)
{
    switch (type) {
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
    case XF_TYPE_Q8_1: case XF_TYPE_Q4_K: case XF_TYPE_Q5_K: case XF_TYPE_Q6_K:
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
float quant_dot_f32_generic(int type, const void *w, const float *x, int64_t n)
{
    const quant_type_info *t = row_type(type, n);
    const uint8_t *p = w;
    if (!t)
        return NAN;
    float buf[QKK]; /* [256] the weights of the current chunk */
    float acc = 0;
    int64_t i = 0;
    if (is_elem_type(type)) {
        for (; i + QKK <= n; i += QKK) {
            if (type == XF_TYPE_F32)
                memcpy(buf, p + 4 * i, sizeof buf); /* rows may be unaligned */
            else
                half_row256(type, p + 2 * i, buf);
            acc += dot_lanes(buf, x + i, QKK);
        }
        float tail = 0;
        for (; i < n; i++)
            tail += elem_get(type, p, i) * x[i];
        return acc + tail;
    }
    const quant_ops *o = &ops_table[type];
    const int be = t->block_elems, bb = t->block_bytes;
    while (i < n) {
        /* whole blocks only: n is a multiple of be, and be divides 256 */
        const int chunk = n - i < QKK ? (int)(n - i) : QKK;
        for (int j = 0; j < chunk; j += be)
            o->deq(p + (i + j) / be * bb, buf + j);
        acc += dot_lanes(buf, x + i, chunk);
        i += chunk;
    }
    return acc;
}

/* the fused kernels where the type has one and the CPU runs them, else the
 * generic path (which also answers NaN for a bad type or length) */
float quant_dot_f32(int type, const void *w, const float *x, int64_t n)
{
#if QD_X86
    if (qd_has(type) && row_type(type, n) && qd_cpu_ok())
        return qd_dot_avx2(type, w, x, n);
#endif
    return quant_dot_f32_generic(type, w, x, n);
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
        k4_scales(b + 4, sc, mn);
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
    default: return 0;
    }
}
