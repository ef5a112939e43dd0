/* q8_avx512: the AVX-512 VNNI path of the CPU `q8` matmul (q8_matmul.c):
 * x's layout for it (kern_cpu_q8z_quantize) and the row dots
 * (kern_cpu_q8z_rows), for Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q6_K weights.
 *
 * Why a layout of its own: one zmm holds 64 weights, two blocks of 32.
 * Unpacking two blocks of nibbles into one vector naturally gives the
 * order [blk0 0-15 | blk1 0-15 | blk0 16-31 | blk1 16-31] (16 bytes each,
 * the low nibbles of both blocks, then the high ones), and Q5_0's 64 high
 * bits become one byte mask. Rather than shuffle every weight vector into
 * element order (m rows, each unpacked), x, quantized once per op, is
 * stored in the weights' order, with its scales beside it, in a record of
 * Z_REC bytes per pair of blocks and token:
 *   u[64]  the int8 quants plus 128, as unsigned bytes (vpdpbusd
 *          multiplies unsigned by signed bytes: x is the unsigned side,
 *          the weights, unpacked to signed q - offset, the signed one;
 *          sum((x+128)*w) - 128*sum(w), and 128*sum(w) is the weights'
 *          alone, computed once per pair for all tokens of a tile);
 *   p[16]  x's block scale of each lane;
 * Decode (one token) is laid out the other way round, because there the
 * per-pair correction would be spent on a single token: x's quants are
 * stored signed, the weights unpacked unsigned (q), and the record slot
 * of token 1, unused, holds o[16] = -offset * (sum of each lane's 4
 * quants), the i32 start of the lane's dot (Q8_0: offset 128, its
 * weights xored with 0x80; Q4_0 8; Q5_0 16; Q6_K 32; else 0);
 * and beside the records, m[1 per block] = dx * sum(q), for the types with
 * an additive min (Q4_1, Q5_1, Q4_K). Tokens come in groups of Z_G = 8
 * (the tokens a weight pair is unpacked for, in prefill): the records of a
 * group are [pair][token], so that one pointer and constant offsets reach
 * the x of every token of a tile (no per-token pointers to keep in
 * registers or reload).
 * A dot of a pair is then one vpdpbusd (started from the weights' corr or
 * x's o), one convert, and one FMA with (weight scales . p): about half
 * the instructions per weight of the AVX-VNNI path, which is what bounds
 * it on Q5_0 and the K-quants (see scripts/cpu-notes.md). An odd last
 * block of a row is a pair whose second half has x's quants 0 and scale
 * 0, weight scale 0, and is never read from w.
 *
 * Q4_K and Q6_K prefill (n > 1) have a third layout, the K layout, because
 * their bodies below spent 3-4 vector operations per token and 64 weights (dpbusd,
 * convert, multiply, FMA against a scale per 32 x values), and on AMD Zen 4
 * (where the multiply-class ops, dpbusd, vpmaddwd, FMA, all share one
 * 1-per-cycle zmm slot) those conversions were half the work. x gets ONE
 * scale per 256 values (a super-block), as llama.cpp's Q8_K, so that the
 * integer sums of a super-block can be added before any conversion. Per
 * group of Z_G tokens (zk_group(k) bytes, fewer than the pair layout's):
 *   q[sb][token][256]  int8 quants, signed, element order;
 *   dx[sb][token]      f32 scale (amax/127 over the 256 values);
 *   bs[sb][token][16]  i16 sums of each 16 quants (Q6_K's offset -32);
 *   b32[sb][token][8]  i16 sums of each 32 (Q4_K's mins in its panels).
 * A Q4_K row: a pair of sub-blocks (64 weights) is one vpdpbusd
 * (unsigned nibbles times signed x, i32 lanes of 4 products, |.| <= 7620,
 * so two pairs pack to i16 with vpackssdw without saturating), then
 * vpmaddwd / vpdpwssd with the 6-bit sub-block scales as i16 lanes: the
 * super-block's integer dot per token; one convert and one FMA with d*dx
 * per super-block and token. A Q6_K row: the same with 6-bit quants
 * and 16 scales of 16 values. The accuracy cost: x's rounding step is
 * amax/127 over 256 values, not 32 (scripts/cpu-notes.md, session 6,
 * measures it on real activations).
 * q8_matmul.c runs every Q4_K and Q6_K prefill on this layout in panels
 * of 16 rows interleaved per super-block (q8_avx512_panel.c: about 6.8
 * and 9.7 cycles per 256 weights and token on Zen 4, against 12.4 and
 * 12.2 for the one-row bodies they replaced, which are gone).
 *
 * Accuracy otherwise is the q8 path's (the same rounding of x: q8_matmul.c). Built
 * only by GCC 11+ on x86-64 (target attributes); elsewhere the functions
 * say "not supported" and q8 keeps its other paths. */
#include "cpu/cpu.h"
#include "cpu/q8z_layout.h"

#include <math.h>
#include <string.h>

enum { Z_REC = 128, Z_G = 8 };
#define Z_K4_MAXSB 256 /* Q4_K super-blocks a row may have here (k <= 65536): their mins sit on the stack */

static int64_t q8z_pairs(int64_t k) { return (k / 32 + 1) / 2; }

/* bytes of a group's records, and of its mins */
static int64_t q8z_group_rec(int64_t k) { return q8z_pairs(k) * Z_G * Z_REC; }
static int64_t q8z_group_m(int64_t k) { return Z_G * 2 * q8z_pairs(k) * (int64_t)sizeof(float); }

int64_t kern_cpu_q8z_bytes(int64_t n, int64_t k)
{
    const int64_t groups = (n + Z_G - 1) / Z_G, per = q8z_group_rec(k) + q8z_group_m(k);
    int64_t r;
    if (n <= 0 || k <= 0 || __builtin_mul_overflow(groups, per, &r))
        return -1;
    return r;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#include <immintrin.h>

/* what a type's unsigned quants stand above zero (the decode layout's
 * per-lane offsets: w = q - offset) */
static inline int q8z_offset(int type)
{
    return type == XF_TYPE_Q8_0 ? 128 : type == XF_TYPE_Q4_0 ? 8 : type == XF_TYPE_Q5_0 ? 16 : type == XF_TYPE_Q6_K ? 32 : 0;
}

/* the order of x in a pair: natural (Q8_0 and the K-quants, whose
 * sub-block pairs unpack in element order) or split16 */
static inline int q8z_split(int type)
{
    return type == XF_TYPE_Q4_0 || type == XF_TYPE_Q4_1 || type == XF_TYPE_Q5_0 || type == XF_TYPE_Q5_1;
}


#define Z_TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma,bmi2")))
/* Weights are prefetched this many bytes ahead of the row being read.
 * Why: the hardware's L2 streamer stops at every 4 KiB page, so each row
 * stream restarts cold at page boundaries; a software prefetch one page
 * ahead keeps enough lines in flight. Measured on the 2-core Xeon (real
 * Qwen2.5-0.5B Q4_K_M, q8 decode, same run): none 30-41 ms/token, 1 KiB
 * 25-33, 2 KiB 20-40, 4 KiB 18.7-19.6 (scripts/cpu-notes.md). */
#ifndef Z_PREFETCH
#define Z_PREFETCH 4096
#endif
#define Z_IN static inline __attribute__((always_inline)) Z_TGT

int kern_cpu_q8z_supported(int type, int64_t k)
{
    if (k <= 0 || k % 32)
        return 0;
    switch (type) {
    case XF_TYPE_Q8_0:
    case XF_TYPE_Q4_0:
    case XF_TYPE_Q4_1:
    case XF_TYPE_Q5_0:
    case XF_TYPE_Q5_1: return 1;
    case XF_TYPE_Q4_K: return k % 256 == 0 && k / 256 <= Z_K4_MAXSB;
    case XF_TYPE_Q6_K: return k % 256 == 0;
    default: return 0;
    }
}

Z_IN float z_h(const uint8_t *p) { return _cvtsh_ss((unsigned short)(p[0] | (p[1] << 8))); }

Z_IN uint32_t z_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* x of a group of tokens: its records and its mins */
typedef struct z_x {
    const uint8_t *r;
    const float *m;
    int64_t mstride; /* floats between two tokens' mins */
} z_x;

Z_IN z_x z_xat(const uint8_t *zx, int64_t n, int64_t k, int64_t t0)
{
    const int64_t g = t0 / Z_G, groups = (n + Z_G - 1) / Z_G;
    z_x r;
    r.r = zx + g * q8z_group_rec(k);
    r.m = (const float *)(zx + groups * q8z_group_rec(k) + g * q8z_group_m(k));
    r.mstride = 2 * q8z_pairs(k);
    return r;
}

/* the i32 lane dots of weights wq with the x record at rec: prefill (x
 * plus 128, signed weights) from corr; decode (signed x, unsigned
 * weights) from the record's o, or 0 for a type without offset */
Z_IN __m512i z_dot(const int type, const int dec, __m512i wq, __m512i corr, const uint8_t *rec)
{
    if (!dec)
        return _mm512_dpbusd_epi32(corr, _mm512_loadu_si512(rec), wq);
    const __m512i o = q8z_offset(type) ? _mm512_loadu_si512(rec + Z_REC) : _mm512_setzero_si512();
    return _mm512_dpbusd_epi32(o, wq, _mm512_loadu_si512(rec));
}

/* -128 * (the sum of each lane's 4 signed weights): the i32 start of
 * every token's dot with this pair (x is stored plus 128) */
Z_IN __m512i z_corr(__m512i wq)
{
    return _mm512_sub_epi32(_mm512_setzero_si512(),
                            _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), wq));
}

/* acc += (sum over the lanes of (x+128) . wq - corr) * ws * p, for token
 * t of the pair whose token-0 record is at r */
Z_IN __m512 z_step(__m512 acc, __m512i wq, __m512i corr, __m512 ws, const uint8_t *r, const int t)
{
    const uint8_t *rec = r + t * Z_REC;
    const __m512i s = _mm512_dpbusd_epi32(corr, _mm512_loadu_si512(rec), wq);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(ws, _mm512_loadu_ps(rec + 64)), acc);
}

Z_IN uint32_t z_u16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }

/* the f16 values at a and b (b NULL: 0) as floats [a, b, 0, 0]: one
 * conversion for both, since shuffle-port uops (inserts, broadcasts) are
 * what bound the pair loop */
Z_IN __m128 z_h2(const uint8_t *a, const uint8_t *b)
{
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)(z_u16(a) | (b ? z_u16(b) << 16 : 0))));
}

/* the lanes of a pair's two scales d2 = [d0, d1, ..]: natural [d0 x8,
 * d1 x8] or split16 [d0 x4, d1 x4, d0 x4, d1 x4] */
Z_IN __m512 z_ws(__m128 d2, const int split)
{
    const __m512i idx = split ? _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1)
                              : _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(d2));
}

/* One block of 32 x values (16 and 16 at x) to int8 as q8_matmul.c's
 * q8_quantize does: d = amax/127, q = x*127/amax rounded to nearest even
 * (lrintf's rounding in the default mode, so the quants are the same);
 * NaN scale and zero quants for a block with a NaN or Inf. lo/hi get
 * elements 0-15 and 16-31; *sum the sum of the quants. */
Z_IN float z_qblock(const float *x, __m128i *lo, __m128i *hi, int *sum)
{
    const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
    const __mmask16 bad = _mm512_cmp_ps_mask(_mm512_sub_ps(a, a), _mm512_setzero_ps(), _CMP_NEQ_UQ) |
                          _mm512_cmp_ps_mask(_mm512_sub_ps(b, b), _mm512_setzero_ps(), _CMP_NEQ_UQ);
    if (bad) {
        *lo = *hi = _mm_setzero_si128();
        *sum = 0;
        return NAN;
    }
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
    const float d = amax / 127.0f, id = d > 0 ? 127.0f / amax : 0.0f;
    const __m512i lim = _mm512_set1_epi32(127);
    const __m512i qa = _mm512_max_epi32(_mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(a, _mm512_set1_ps(id))), lim),
                                        _mm512_sub_epi32(_mm512_setzero_si512(), lim));
    const __m512i qb = _mm512_max_epi32(_mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(b, _mm512_set1_ps(id))), lim),
                                        _mm512_sub_epi32(_mm512_setzero_si512(), lim));
    *lo = _mm512_cvtepi32_epi8(qa);
    *hi = _mm512_cvtepi32_epi8(qb);
    *sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
    return d;
}

/* token t's x into its records and mins (rec: the group's records plus
 * t*Z_REC, step Z_G*Z_REC between pairs; m: its 2*pairs floats) */
Z_IN void z_quantize_token(const int type, const int dec, const float *x, int64_t k, uint8_t *rec, float *m)
{
    const __m512i noff = _mm512_set1_epi32(-q8z_offset(type)), ones = _mm512_set1_epi8(1);
    const int64_t np = q8z_pairs(k), nb = k / 32;
    const int split = q8z_split(type);
    for (int64_t j = 0; j < np; j++, rec += Z_G * Z_REC) {
        __m128i c[4] = {_mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128(), _mm_setzero_si128()};
        float d[2] = {0, 0};
        for (int h = 0; h < 2 && 2 * j + h < nb; h++) {
            int sum;
            d[h] = z_qblock(x + 64 * j + 32 * h, &c[2 * h], &c[2 * h + 1], &sum);
            m[2 * j + h] = d[h] * (float)sum;
        }
        if (2 * j + 1 >= nb)
            m[2 * j + 1] = 0;
        /* natural: b0 lo, b0 hi, b1 lo, b1 hi; split16: b0 lo, b1 lo, b0 hi, b1 hi */
        const __m512i qv = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_set_m128i(split ? c[2] : c[1], c[0])),
            _mm256_set_m128i(c[3], split ? c[1] : c[2]), 1);
        _mm512_storeu_ps(rec + 64, z_ws(_mm_setr_ps(d[0], d[1], 0, 0), split));
        if (!dec) {
            _mm512_storeu_si512(rec, _mm512_xor_si512(qv, _mm512_set1_epi8((char)0x80)));
            continue;
        }
        _mm512_storeu_si512(rec, qv);
        _mm512_storeu_si512(rec + Z_REC, _mm512_mullo_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, qv), noff));
    }
}


/* 16 bytes of nibbles of two blocks at a and b (b NULL: zero) in split16
 * order: [a lo | b lo | a hi | b hi] */
Z_IN __m512i z_nib2(const uint8_t *a, const uint8_t *b)
{
    const __m128i va = _mm_loadu_si128((const __m128i *)a);
    const __m256i y =
        _mm256_inserti128_si256(_mm256_castsi128_si256(va), b ? _mm_loadu_si128((const __m128i *)b) : _mm_setzero_si128(), 1);
    return _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(y), _mm256_srli_epi16(y, 4), 1),
                            _mm512_set1_epi8(15));
}

/* the 64 fifth bits of a Q5 pair in split16 order: a's bits 0-15, b's
 * 0-15, a's 16-31, b's 16-31 (a delta swap of the middle 16-bit fields) */
Z_IN __mmask64 z_qh2(uint32_t a, uint32_t b)
{
    uint64_t t = (uint64_t)a | (uint64_t)b << 32;
    const uint64_t m = ((t >> 16) ^ t) & 0x00000000ffff0000ull;
    t ^= m ^ (m << 16);
    return (__mmask64)t;
}

/* One weight pair of a 32-block type: its signed quants (q - offset), lane scales
 * and (Q4_1, Q5_1) the two mins [m0, m1, 0, 0]. p0 the first block, last:
 * no second. */
Z_IN void z_pair(const int type, const int dec, const uint8_t *p0, const int last, __m512i *wq, __m512 *ws,
                 __m128 *mn)
{
    const int bb = type == XF_TYPE_Q8_0 ? 34 : type == XF_TYPE_Q4_0 ? 18 : type == XF_TYPE_Q4_1 ? 20
                   : type == XF_TYPE_Q5_0 ? 22 : 24;
    const uint8_t *p1 = last ? NULL : p0 + bb;
    *ws = z_ws(z_h2(p0, p1), type != XF_TYPE_Q8_0);
    *mn = _mm_setzero_ps();
    if (type == XF_TYPE_Q8_0) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)(p0 + 2));
        const __m256i b = p1 ? _mm256_loadu_si256((const __m256i *)(p1 + 2)) : _mm256_setzero_si256();
        *wq = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
        if (dec)
            *wq = _mm512_xor_si512(*wq, _mm512_set1_epi8((char)0x80));
        return;
    }
    if (type == XF_TYPE_Q4_0) {
        *wq = z_nib2(p0 + 2, p1 ? p1 + 2 : NULL);
        if (!dec)
            *wq = _mm512_sub_epi8(*wq, _mm512_set1_epi8(8));
        return;
    }
    if (type == XF_TYPE_Q4_1) {
        *wq = z_nib2(p0 + 4, p1 ? p1 + 4 : NULL);
        *mn = z_h2(p0 + 2, p1 ? p1 + 2 : NULL);
        return;
    }
    const int qo = type == XF_TYPE_Q5_0 ? 2 : 4; /* Q5_1: d, m, qh */
    const __m512i nib = z_nib2(p0 + qo + 4, p1 ? p1 + qo + 4 : NULL);
    const __mmask64 hb = z_qh2(z_u32(p0 + qo), p1 ? z_u32(p1 + qo) : 0);
    if (type == XF_TYPE_Q5_0 && !dec) /* q - 16: the nibble where the fifth bit is set, nibble - 16 elsewhere */
        *wq = _mm512_mask_sub_epi8(nib, ~hb, nib, _mm512_set1_epi8(16));
    else
        *wq = _mm512_mask_add_epi8(nib, hb, nib, _mm512_set1_epi8(16));
    if (type == XF_TYPE_Q5_1)
        *mn = z_h2(p0 + 2, p1 ? p1 + 2 : NULL);
}

Z_IN float z_hsum128(__m128 h)
{
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* Q4_K's twelve bytes of 6-bit scales and mins (base/quant.c's
 * quant_k4_scales) as bytes sc[0..7] then mn[0..7], in registers: bytes
 * s0-3 hold sc0-3 (and the top bits of sc4-7), s4-7 mn0-3 (and the top of
 * mn4-7), s8-11 the low nibbles of sc4-7 and mn4-7. A scalar decode into
 * arrays read back as vectors stalls on store forwarding. */
Z_IN __m128i z_k4_scales(const uint8_t *s)
{
    const uint32_t u0 = z_u32(s), u1 = z_u32(s + 4), u2 = z_u32(s + 8);
    const uint32_t lo6 = 0x3f3f3f3fu, lo4 = 0x0f0f0f0fu, lo2 = 0x03030303u;
    const uint32_t sc03 = u0 & lo6, mn03 = u1 & lo6;
    const uint32_t sc47 = (u2 & lo4) | (((u0 >> 6) & lo2) << 4);
    const uint32_t mn47 = ((u2 >> 4) & lo4) | (((u1 >> 6) & lo2) << 4);
    return _mm_setr_epi32((int)sc03, (int)sc47, (int)mn03, (int)mn47);
}

/* The row bodies compute R (1 or 2) rows at once: each x record loaded
 * serves both rows, which halves the x traffic from L1/L2 that bounds
 * prefill tiles (8 tokens x 128 bytes a pair). out[r*Z_G + t] = row r .
 * x_t0+t. The rows are w and w + rb. */

/* the pair at block b (last: b is the row's odd last block) of R rows,
 * for every token; the mins (Q4_1, Q5_1: R is 1) in a vector beside */
Z_IN void z_pair_step(const int type, const int dec, const int R, const uint8_t *p0, int64_t rb, const int last,
                      const z_x *x, const uint8_t *r, const int nt, int64_t b, __m512 (*acc)[Z_G], __m128 *macc)
{
    __m512i wq[2], corr[2];
    __m512 ws[2];
    __m128 mv[2];
    for (int q = 0; q < R; q++) {
        z_pair(type, dec, p0 + q * rb, last, &wq[q], &ws[q], &mv[q]);
        corr[q] = dec ? _mm512_setzero_si512() : z_corr(wq[q]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < nt; t++) {
        const uint8_t *rec = r + t * Z_REC;
        const __m512 xp = _mm512_loadu_ps(rec + 64);
        for (int q = 0; q < R; q++)
            acc[q][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(z_dot(type, dec, wq[q], corr[q], rec)),
                                        _mm512_mul_ps(ws[q], xp), acc[q][t]);
        if (type == XF_TYPE_Q4_1 || type == XF_TYPE_Q5_1)
            macc[t] = _mm_fmadd_ps(mv[0], _mm_castpd_ps(_mm_load_sd((const double *)(x->m + t * x->mstride + b))),
                                   macc[t]);
    }
}

Z_IN void z_rows_b32(const int type, const int dec, const int R, const uint8_t *w, int64_t rb, const uint8_t *zx, int64_t n,
                     int64_t k, int64_t t0, const int nt, float *out)
{
    const int bb = type == XF_TYPE_Q8_0 ? 34 : type == XF_TYPE_Q4_0 ? 18 : type == XF_TYPE_Q4_1 ? 20
                   : type == XF_TYPE_Q5_0 ? 22 : 24;
    const int64_t nb = k / 32;
    const z_x x = z_xat(zx, n, k, t0);
    __m512 acc[2][Z_G];
    __m128 macc[Z_G];
    for (int t = 0; t < nt; t++) {
        for (int q = 0; q < R; q++)
            acc[q][t] = _mm512_setzero_ps();
        macc[t] = _mm_setzero_ps();
    }
    int64_t b = 0;
    const uint8_t *r = x.r;
    for (; b + 2 <= nb; b += 2, r += Z_G * Z_REC) {
        for (int q = 0; q < R; q++)
            _mm_prefetch((const char *)(w + q * rb + bb * b) + Z_PREFETCH, _MM_HINT_T0);
        z_pair_step(type, dec, R, w + bb * b, rb, 0, &x, r, nt, b, acc, macc);
    }
    if (b < nb) /* an odd last block */
        z_pair_step(type, dec, R, w + bb * b, rb, 1, &x, r, nt, b, acc, macc);
    for (int q = 0; q < R; q++)
        for (int t = 0; t < nt; t++)
            out[q * Z_G + t] = _mm512_reduce_add_ps(acc[q][t]) + z_hsum128(macc[t]);
}

/* Q4_K: sub-block pair c of super-block i is x pair 4i+c, natural order.
 * The mins term, -sum over sub-blocks s of dmin*mn_s * dx_s*sum(x_s), is
 * a dot of k/32 numbers per row and token: the row's are kept (mr) while
 * the pairs run and dotted with x's after, so that no per-token
 * accumulator besides acc occupies a register in the loop. */
Z_IN void z_rows_q4_k(const int dec, const int R, const uint8_t *w, int64_t rb, const uint8_t *zx, int64_t n, int64_t k,
                      int64_t t0, const int nt, float *out)
{
    const z_x x = z_xat(zx, n, k, t0);
    __m512 acc[2][Z_G];
    float mr[2][8 * Z_K4_MAXSB];
    for (int q = 0; q < R; q++)
        for (int t = 0; t < nt; t++)
            acc[q][t] = _mm512_setzero_ps();
    const __m512i m15 = _mm512_set1_epi8(15);
    /* lanes of sub-block pair c: [2c x8, 2c+1 x8] of the 8 scales */
    const __m512i idx[4] = {_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                            _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3),
                            _mm512_setr_epi32(4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5),
                            _mm512_setr_epi32(6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7)};
    for (int64_t i = 0; i < k / 256; i++) {
        __m512 scv[2];
        for (int q = 0; q < R; q++) {
            const uint8_t *p = w + q * rb + 144 * i;
            _mm_prefetch((const char *)p + Z_PREFETCH, _MM_HINT_T0);
            _mm_prefetch((const char *)p + Z_PREFETCH + 64, _MM_HINT_T0);
            _mm_prefetch((const char *)p + Z_PREFETCH + 128, _MM_HINT_T0);
            const __m128i sm = z_k4_scales(p + 4);
            scv[q] = _mm512_castps256_ps512(
                _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sm)), _mm256_set1_ps(z_h(p))));
            _mm256_storeu_ps(mr[q] + 8 * i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8))),
                                                         _mm256_set1_ps(z_h(p + 2))));
        }
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m512i wq[2], corr[2];
            __m512 ws[2];
            for (int q = 0; q < R; q++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(w + q * rb + 144 * i + 16 + 32 * c));
                wq[q] = _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1), m15);
                corr[q] = dec ? _mm512_setzero_si512() : z_corr(wq[q]);
                ws[q] = _mm512_permutexvar_ps(idx[c], scv[q]);
            }
            const uint8_t *r = x.r + (4 * i + c) * Z_G * Z_REC;
#pragma GCC unroll 8
            for (int t = 0; t < nt; t++) {
                const __m512 xp = _mm512_loadu_ps(r + t * Z_REC + 64);
                for (int q = 0; q < R; q++)
                    acc[q][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(z_dot(XF_TYPE_Q4_K, dec, wq[q], corr[q], r + t * Z_REC)),
                                                _mm512_mul_ps(ws[q], xp), acc[q][t]);
            }
        }
    }
    for (int q = 0; q < R; q++)
        for (int t = 0; t < nt; t++) {
            const float *m = x.m + t * x.mstride;
            __m256 s = _mm256_setzero_ps();
            for (int64_t j = 0; j < k / 32; j += 8)
                s = _mm256_fmadd_ps(_mm256_loadu_ps(mr[q] + j), _mm256_loadu_ps(m + j), s);
            const __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
            out[q * Z_G + t] = _mm512_reduce_add_ps(acc[q][t]) - z_hsum128(h);
        }
}

/* Q6_K: half h of super-block i unpacks to elements 0-63 (x pair 4i+2h)
 * and 64-127 (4i+2h+1), natural order; 16 scales of 16 elements */
Z_IN void z_rows_q6_k(const int dec, const int R, const uint8_t *w, int64_t rb, const uint8_t *zx, int64_t n, int64_t k,
                      int64_t t0, const int nt, float *out)
{
    const z_x x = z_xat(zx, n, k, t0);
    __m512 acc[2][Z_G];
    for (int q = 0; q < R; q++)
        for (int t = 0; t < nt; t++)
            acc[q][t] = _mm512_setzero_ps();
    const __m512i m15 = _mm512_set1_epi8(15), m3 = _mm512_set1_epi8(3), m30 = _mm512_set1_epi8(0x30);
    const __m512i m32 = _mm512_set1_epi8(dec ? 0 : 32); /* decode: unsigned q, offset in x's o */
    const __m512i quad = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    for (int64_t i = 0; i < k / 256; i++) {
        __m512 scv[2];
        for (int q = 0; q < R; q++) {
            const uint8_t *p = w + q * rb + 210 * i;
            for (int l = 0; l < 4; l++)
                _mm_prefetch((const char *)p + Z_PREFETCH + 64 * l, _MM_HINT_T0);
            scv[q] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(p + 192)))),
                                   _mm512_set1_ps(z_h(p + 208)));
        }
        for (int h = 0; h < 2; h++) {
            __m512i qv[2][2], cv[2][2];
            __m512 wsv[2][2];
            for (int q = 0; q < R; q++) {
                const uint8_t *p = w + q * rb + 210 * i;
                const __m512i ab = _mm512_loadu_si512(p + 64 * h);
                const __m256i hv = _mm256_loadu_si256((const __m256i *)(p + 128 + 32 * h));
                const __m512i hh = _mm512_inserti64x4(_mm512_castsi256_si512(hv), _mm256_srli_epi16(hv, 2), 1);
                qv[q][0] = _mm512_sub_epi8(
                    _mm512_or_si512(_mm512_and_si512(ab, m15), _mm512_slli_epi16(_mm512_and_si512(hh, m3), 4)), m32);
                qv[q][1] = _mm512_sub_epi8(
                    _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ab, 4), m15), _mm512_and_si512(hh, m30)), m32);
                for (int e = 0; e < 2; e++) {
                    cv[q][e] = dec ? _mm512_setzero_si512() : z_corr(qv[q][e]);
                    wsv[q][e] = _mm512_permutexvar_ps(_mm512_add_epi32(quad, _mm512_set1_epi32(8 * h + 4 * e)), scv[q]);
                }
            }
            for (int e = 0; e < 2; e++) {
                const uint8_t *r = x.r + (4 * i + 2 * h + e) * Z_G * Z_REC;
#pragma GCC unroll 8
                for (int t = 0; t < nt; t++) {
                    const __m512 xp = _mm512_loadu_ps(r + t * Z_REC + 64);
                    for (int q = 0; q < R; q++)
                        acc[q][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(z_dot(XF_TYPE_Q6_K, dec, qv[q][e], cv[q][e],
                                                                             r + t * Z_REC)),
                                                    _mm512_mul_ps(wsv[q][e], xp), acc[q][t]);
                }
            }
        }
    }
    for (int q = 0; q < R; q++)
        for (int t = 0; t < nt; t++)
            out[q * Z_G + t] = _mm512_reduce_add_ps(acc[q][t]);
}

/* ----------------------------------------------- K-quant prefill layout */

/* One super-block of 256 x values to int8 with one scale, the rounding of
 * z_qblock over 256 instead of 32 (d = amax/127, q = x*127/amax to
 * nearest even; NaN scale and zero quants where a value is NaN or Inf):
 * q[256], bs[16] the sums of each 16 quants, b32[8] of each 32; returns d. */
Z_IN float zk_qsb(const float *x, int8_t *q, int16_t *bs, int16_t *b32)
{
    __m512 v[16];
    __m512 amax = _mm512_setzero_ps();
    __mmask16 bad = 0;
    for (int j = 0; j < 16; j++) {
        v[j] = _mm512_loadu_ps(x + 16 * j);
        bad |= _mm512_cmp_ps_mask(_mm512_sub_ps(v[j], v[j]), _mm512_setzero_ps(), _CMP_NEQ_UQ);
        amax = _mm512_max_ps(amax, _mm512_abs_ps(v[j]));
    }
    if (bad) {
        memset(q, 0, 256);
        memset(bs, 0, 16 * sizeof *bs);
        memset(b32, 0, 8 * sizeof *b32);
        return NAN;
    }
    const float am = _mm512_reduce_max_ps(amax);
    const float d = am / 127.0f, id = d > 0 ? 127.0f / am : 0.0f;
    const __m512i lim = _mm512_set1_epi32(127), nlim = _mm512_set1_epi32(-127);
    int sum[16];
    for (int j = 0; j < 16; j++) {
        const __m512i qi =
            _mm512_max_epi32(_mm512_min_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v[j], _mm512_set1_ps(id))), lim), nlim);
        _mm_storeu_si128((__m128i *)(q + 16 * j), _mm512_cvtepi32_epi8(qi));
        sum[j] = _mm512_reduce_add_epi32(qi);
        bs[j] = (int16_t)sum[j];
    }
    for (int s = 0; s < 8; s++)
        b32[s] = (int16_t)(sum[2 * s] + sum[2 * s + 1]);
    return d;
}

/* token t (of its group) into the K layout of the group at g */
Z_IN void zk_quantize_token(const float *x, int64_t k, uint8_t *g, int t)
{
    int8_t *q = (int8_t *)g;
    float *dx = (float *)(g + zk_q(k));
    int16_t *bs = (int16_t *)(g + zk_q(k) + zk_dx(k));
    int16_t *b32 = (int16_t *)(g + zk_q(k) + zk_dx(k) + zk_bs(k));
    for (int64_t i = 0; i < k / 256; i++)
        dx[i * Z_G + t] = zk_qsb(x + 256 * i, q + (i * Z_G + t) * 256, bs + (i * Z_G + t) * 16, b32 + (i * Z_G + t) * 8);
}

/* the K layout serves prefill of the K-quants */
static int zk_layout(int type, int64_t n) { return n > 1 && (type == XF_TYPE_Q4_K || type == XF_TYPE_Q6_K); }

Z_TGT void kern_cpu_q8z_quantize(int type, const float *x, int64_t n, int64_t k, int64_t t0, int64_t t1, void *dst)
{
    uint8_t *base = dst;
    const int64_t gr = q8z_group_rec(k), gm = q8z_group_m(k), groups = (n + Z_G - 1) / Z_G;
    if (zk_layout(type, n)) {
        for (int64_t t = t0; t < t1; t++)
            zk_quantize_token(x + t * k, k, base + t / Z_G * zk_group(k), (int)(t % Z_G));
        return;
    }
    for (int64_t t = t0; t < t1; t++) {
        const int64_t g = t / Z_G;
        float *m = (float *)(base + groups * gr + g * gm) + (t % Z_G) * 2 * q8z_pairs(k);
        z_quantize_token(type, n == 1, x + t * k, k, base + g * gr + (t % Z_G) * Z_REC, m);
    }
}

/* one body per type, row count and token count, the counts constants
 * after inlining */
#define Z_NT(call, R)                                                                                         \
    switch (nt) {                                                                                             \
    case 1: call(0, 0, R, 1); break;                                                                          \
    case 2: call(0, 0, R, 2); break;                                                                          \
    case 3: call(0, 0, R, 3); break;                                                                          \
    case 4: call(0, 0, R, 4); break;                                                                          \
    case 5: call(0, 0, R, 5); break;                                                                          \
    case 6: call(0, 0, R, 6); break;                                                                          \
    case 7: call(0, 0, R, 7); break;                                                                          \
    default: call(0, 0, R, 8); break;                                                                         \
    }
#define Z_BY(name, call)                                                                                      \
    Z_TGT static void name(int R, const uint8_t *w, int64_t rb, const uint8_t *zx, int64_t n, int64_t k,      \
                           int64_t t0, int nt, float *out)                                                    \
    {                                                                                                         \
        if (n == 1)                                                                                           \
            call(0, 1, 1, 1); /* decode: its own layout, one row */                                           \
        else if (R == 2) {                                                                                    \
            Z_NT(call, 2)                                                                                     \
        } else {                                                                                              \
            Z_NT(call, 1)                                                                                     \
        }                                                                                                     \
    }
#define Z_Q8_0(U, D, R, N) z_rows_b32(XF_TYPE_Q8_0, D, R, w, rb, zx, n, k, t0, N, out)
#define Z_Q4_0(U, D, R, N) z_rows_b32(XF_TYPE_Q4_0, D, R, w, rb, zx, n, k, t0, N, out)
#define Z_Q4_1(U, D, R, N) z_rows_b32(XF_TYPE_Q4_1, D, 1, w, rb, zx, n, k, t0, N, out)
#define Z_Q5_0(U, D, R, N) z_rows_b32(XF_TYPE_Q5_0, D, R, w, rb, zx, n, k, t0, N, out)
#define Z_Q5_1(U, D, R, N) z_rows_b32(XF_TYPE_Q5_1, D, 1, w, rb, zx, n, k, t0, N, out)
/* K-quant prefill (n > 1) has x in the K layout and runs on panels
 * (kern_cpu_q8z_panel, which q8_matmul.c's worker calls for every such
 * op); a call here with it would read that layout as another: NaN, never
 * a wrong number */
Z_IN void zk_not_here(const int R, const int nt, float *out)
{
    for (int q = 0; q < R; q++)
        for (int t = 0; t < nt; t++)
            out[q * Z_G + t] = NAN;
}
/* a K-quant's decode rows (D), or NaN where prefill asks (the panels' job) */
#define Z_KQ(F, D, R, N)                                                                                      \
    do {                                                                                                      \
        if (D)                                                                                                \
            F(D, R, w, rb, zx, n, k, t0, N, out);                                                             \
        else                                                                                                  \
            zk_not_here(R, N, out);                                                                           \
    } while (0)
#define Z_Q4_K(U, D, R, N) Z_KQ(z_rows_q4_k, D, R, N)
#define Z_Q6_K(U, D, R, N) Z_KQ(z_rows_q6_k, D, R, N)
Z_BY(z_by_q8_0, Z_Q8_0)
Z_BY(z_by_q4_0, Z_Q4_0)
Z_BY(z_by_q4_1, Z_Q4_1)
Z_BY(z_by_q5_0, Z_Q5_0)
Z_BY(z_by_q5_1, Z_Q5_1)
Z_BY(z_by_q4_k, Z_Q4_K)
Z_BY(z_by_q6_k, Z_Q6_K)

int kern_cpu_q8z_rows_max(int type, int64_t k)
{
    if (type == XF_TYPE_Q4_1 || type == XF_TYPE_Q5_1)
        return 1; /* their mins keep a vector per token beside the accumulators */
    if (type == XF_TYPE_Q4_K && k / 256 > Z_K4_MAXSB)
        return 0;
    return 2;
}

void kern_cpu_q8z_rows(int type, int R, const uint8_t *w, int64_t rb, const void *zx, int64_t n, int64_t k,
                       int64_t t0, int nt, float *out)
{
    switch (type) {
    case XF_TYPE_Q8_0: z_by_q8_0(R, w, rb, zx, n, k, t0, nt, out); break;
    case XF_TYPE_Q4_0: z_by_q4_0(R, w, rb, zx, n, k, t0, nt, out); break;
    case XF_TYPE_Q4_1: z_by_q4_1(R, w, rb, zx, n, k, t0, nt, out); break;
    case XF_TYPE_Q5_0: z_by_q5_0(R, w, rb, zx, n, k, t0, nt, out); break;
    case XF_TYPE_Q5_1: z_by_q5_1(R, w, rb, zx, n, k, t0, nt, out); break;
    case XF_TYPE_Q4_K: z_by_q4_k(R, w, rb, zx, n, k, t0, nt, out); break;
    default: z_by_q6_k(R, w, rb, zx, n, k, t0, nt, out); break;
    }
}

int kern_cpu_q8z_cpu(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("bmi2");
}

#else

int kern_cpu_q8z_supported(int type, int64_t k)
{
    (void)type;
    (void)k;
    return 0;
}

int kern_cpu_q8z_rows_max(int type, int64_t k)
{
    (void)type, (void)k;
    return 0;
}

void kern_cpu_q8z_rows(int type, int R, const uint8_t *w, int64_t rb, const void *zx, int64_t n, int64_t k,
                       int64_t t0, int nt, float *out)
{
    (void)type, (void)w, (void)rb, (void)zx, (void)n, (void)k, (void)t0;
    for (int q = 0; q < R; q++)
        for (int t = 0; t < nt; t++)
            out[q * 8 + t] = NAN;
}

int kern_cpu_q8z_cpu(void) { return 0; }

/* never called: kern_cpu_q8z_supported is 0 here, so q8_matmul.c takes its
 * portable path before it would quantize x for these kernels */
void kern_cpu_q8z_quantize(int type, const float *x, int64_t n, int64_t k, int64_t t0, int64_t t1, void *dst)
{
    (void)type, (void)x, (void)n, (void)k, (void)t0, (void)t1, (void)dst;
}

#endif

_Static_assert((int)Z_G == (int)KERN_CPU_Q8Z_TILE, "the worker's token tile is the layout's group");
