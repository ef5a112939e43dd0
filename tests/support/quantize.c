/* quantize: the quantizers of the block formats, for tests, benchmarks and
 * fixtures only (nothing in the product quantizes): see quantize.h.
 *
 * Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q8_1 Q8_K reproduce ggml's quantize_row_*_ref
 * formulas (Q8_0 bit-exact with ggml, tested against the gguf Python
 * package).  The other k-quants use a simpler deterministic method than
 * ggml's search (see kq_choose_asym / kq_choose_sym): scales are rounded UP
 * so the representable range always covers the sub-block, which bounds the
 * error by half a quantization step.  Blocks are written bytewise as
 * little-endian, as base/quant.c reads them. */
#include "quantize.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define QK 32   /* elements per block of the 32-element formats */
#define QKK 256 /* elements per super-block of the k-quants */

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

/* ggml's quantize_row_mxfp4_ref: e from the absmax's binary exponent (so
 * that absmax / 2^(e-127) lies in [4, 8): the largest code, 6, is 12 in the
 * doubled table), then each value to the nearest doubled E2M1 value times
 * the half scale, the lowest code on a tie (a strict < over codes 0..15). */
static int mxfp4_best(float x, float d)
{
    int best = 0;
    float best_err = fabsf((float)xf_mxfp4_kvalues[0] * d - x);
    for (int i = 1; i < 16; i++) {
        const float err = fabsf((float)xf_mxfp4_kvalues[i] * d - x);
        if (err < best_err) {
            best = i;
            best_err = err;
        }
    }
    return best;
}

static void mxfp4_quant(const float *x, uint8_t *b)
{
    float amax = 0.0f;
    for (int j = 0; j < QK; j++)
        if (amax < fabsf(x[j]))
            amax = fabsf(x[j]);
    /* ggml converts floorf(log2f(amax)) - 2 + 127 to uint8_t unchecked;
     * clamp so that tiny or huge blocks stay defined here (same bytes
     * wherever ggml's conversion is defined) */
    float ef = amax > 0.0f ? floorf(log2f(amax)) - 2 + 127 : 0.0f;
    const uint8_t e = (uint8_t)(ef < 0 ? 0 : ef > 255 ? 255 : ef);
    const float d = xf_e8m0_half(e);
    b[0] = e;
    for (int j = 0; j < QK / 2; j++)
        b[1 + j] = (uint8_t)(mxfp4_best(x[j], d) | (mxfp4_best(x[j + QK / 2], d) << 4));
}

/* ------------------------------------------------------------- dispatch */

typedef void (*quant_fn)(const float *x, uint8_t *b); /* one block */

static const quant_fn quant_table[XF_TYPE_COUNT] = {
    [XF_TYPE_Q4_0] = q4_0_quant, [XF_TYPE_Q4_1] = q4_1_quant, [XF_TYPE_Q5_0] = q5_0_quant,
    [XF_TYPE_Q5_1] = q5_1_quant, [XF_TYPE_Q8_0] = q8_0_quant, [XF_TYPE_Q8_1] = q8_1_quant,
    [XF_TYPE_Q2_K] = q2_k_quant, [XF_TYPE_Q3_K] = q3_k_quant, [XF_TYPE_Q4_K] = q4_k_quant,
    [XF_TYPE_Q5_K] = q5_k_quant, [XF_TYPE_Q6_K] = q6_k_quant, [XF_TYPE_Q8_K] = q8_k_quant,
    [XF_TYPE_MXFP4] = mxfp4_quant,
};

/* the block info of a type base/quant.c can decode, for a valid row length */
static const quant_type_info *row_type(int type, int64_t n)
{
    const quant_type_info *t = quant_type_get(type);
    if (!t || !t->supported || n < 0 || n % t->block_elems != 0)
        return NULL;
    return t;
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
        const int64_t nb = n / t->block_elems;
        for (int64_t i = 0; i < nb; i++)
            quant_table[type](src + i * t->block_elems, p + i * t->block_bytes);
    }
    return (size_t)bytes;
}

double quant_dot_ref(int type, const void *w, const float *x, int64_t n)
{
    const quant_type_info *t = row_type(type, n);
    const uint8_t *p = w;
    if (!t)
        return NAN;
    /* one block at a time (one element for F32/F16/BF16), never the whole row */
    float buf[QKK];
    const int be = t->block_elems, bb = t->block_bytes;
    double acc = 0;
    for (int64_t i = 0; i < n; i += be) {
        quant_dequant_row(type, p + i / be * bb, buf, be);
        for (int j = 0; j < be; j++)
            acc += (double)buf[j] * (double)x[i + j];
    }
    return acc;
}
