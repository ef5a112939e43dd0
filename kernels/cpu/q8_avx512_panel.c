/* q8_avx512_panel: Q4_K and Q6_K prefill of the AVX-512 q8 path
 * (q8_avx512.c) on panels of up to 16 rows at once (kern_cpu_q8z_panel), x
 * in the K layout. Q4_K first (Q6_K: zp_sb6 below).
 * The one-row body this replaced served one row per x load: per 256 weights and token it
 * spends 4 vpdpbusd on products and 3 more multiply-slot operations
 * (vpmaddwd, vpdpwssd, FMA) on the sub-block and super-block scales,
 * measured at 12.4 cycles on Zen 4. Here, as llama.cpp's repacked Q4_K
 * (an idea, not its code), each super-block of the panel's rows is
 * repacked once into an L1 buffer where one zmm holds 8 rows x 8
 * consecutive weights (unsigned nibbles), so that one vpdpbusd with 8
 * bytes of x broadcast (vpbroadcastq from memory; on Zen 4 not a mere
 * load: about 1 of the 6.8 cycles below, cpu-notes) serves 8 rows;
 * 4 of them cover a sub-block of 32 for 8 rows, each i32 lane then holds
 * 16 products, |.| <= 16*15*127 = 30480: the two halves (rows A, rows B)
 * pack to i16 with one vpackssdw and one vpdpwssd applies the 16 rows'
 * 6-bit sub-block scales; the mins are one vpdpwssd per pair of
 * sub-blocks, the rows' two mins (i16) times x's two sums of 32 (b32, a
 * broadcast dword); a convert, a multiply and two FMAs per super-block and
 * token finish 16 rows. Multiply-slot work per 256 weights, row and token:
 * (64 + 8 + 4 + 3) / 16 = 4.9 against 7.
 *
 * Row order: vpackssdw takes i32 lanes 4L..4L+3 of each source per 128
 * bits, i.e. qwords 2L and 2L+1, so the A half holds rows 4q' + {0, 1}
 * and the B half rows 4q' + {2, 3} (q' = qword / 2): the packed dword
 * lanes are then rows 0..15 in order, and so are the scale vectors, the
 * accumulators and the stores.
 *
 * The panel is repacked per super-block (Q4_K 4.6 KiB, Q6_K 5.1 KiB, on
 * the stack) and serves a pass of up to ZP_NT tokens before the next
 * super-block: no weight memory beyond the model's, and the repack (a
 * 64-bit transpose by vpermt2q and vshufi64x2, gathers for the scales of
 * 16 rows) is spread over up to ZP_NT = 128 tokens. Built only by GCC 11+ on x86-64
 * (target attributes), as q8_avx512.c. */
#include "cpu/cpu.h"
#include "cpu/q8z_layout.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#include <immintrin.h>

#define Z_TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c,fma,bmi2")))
#define Z_IN static inline __attribute__((always_inline)) Z_TGT
enum { Z_G = KERN_CPU_Q8Z_TILE };

enum { ZP_NT = 128 }; /* tokens per panel pass: their f32 sums (8 KiB) live in memory across super-blocks (64: 3% slower) */

typedef struct zp_sb {
    __m512i w[8][4][2]; /* [sub-block][8-weight chunk][half]: 8 rows x 8 bytes */
    __m512i sc[8];      /* [sub-block] the 16 rows' scale in both i16 of a lane */
    __m512i mn[4];      /* [sub-block pair] the 16 rows' two mins, i16 */
    __m512 d, dmin;
} zp_sb;

/* 8 rows' 32 bytes (at p[r]) to 4 zmm: qword j of rows 0..7 in zmm j */
Z_IN void zp_t8(const uint8_t *const *p, int64_t off, __m512i *o)
{
    __m512i z[4];
    for (int q = 0; q < 4; q++)
        z[q] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p[2 * q] + off))),
                                  _mm256_loadu_si256((const __m256i *)(p[2 * q + 1] + off)), 1);
    const __m512i lo = _mm512_setr_epi64(0, 4, 8, 12, 1, 5, 9, 13), hi = _mm512_setr_epi64(2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i a0 = _mm512_permutex2var_epi64(z[0], lo, z[1]), a1 = _mm512_permutex2var_epi64(z[0], hi, z[1]);
    const __m512i b0 = _mm512_permutex2var_epi64(z[2], lo, z[3]), b1 = _mm512_permutex2var_epi64(z[2], hi, z[3]);
    o[0] = _mm512_shuffle_i64x2(a0, b0, _MM_SHUFFLE(1, 0, 1, 0));
    o[1] = _mm512_shuffle_i64x2(a0, b0, _MM_SHUFFLE(3, 2, 3, 2));
    o[2] = _mm512_shuffle_i64x2(a1, b1, _MM_SHUFFLE(1, 0, 1, 0));
    o[3] = _mm512_shuffle_i64x2(a1, b1, _MM_SHUFFLE(3, 2, 3, 2));
}

/* super-block i of the 16 rows at p[0..15] (p: the rows' starts) into s */
Z_IN void zp_repack_q4_k(const uint8_t *const *p, __m512i vidx, int64_t i, zp_sb *s)
{
    const uint8_t *ha[8], *hb[8];
    for (int q = 0; q < 4; q++) {
        ha[2 * q] = p[4 * q] + 144 * i, ha[2 * q + 1] = p[4 * q + 1] + 144 * i;
        hb[2 * q] = p[4 * q + 2] + 144 * i, hb[2 * q + 1] = p[4 * q + 3] + 144 * i;
    }
    const __m512i m15 = _mm512_set1_epi8(15);
    for (int c = 0; c < 4; c++) {
        __m512i o[2][4];
        zp_t8(ha, 16 + 32 * c, o[0]);
        zp_t8(hb, 16 + 32 * c, o[1]);
        for (int j = 0; j < 4; j++)
            for (int h = 0; h < 2; h++) {
                s->w[2 * c][j][h] = _mm512_and_si512(o[h][j], m15);
                s->w[2 * c + 1][j][h] = _mm512_and_si512(_mm512_srli_epi16(o[h][j], 4), m15);
            }
    }
    /* the 12 scale bytes and d, dmin of the 16 rows (vidx: their offsets
     * from row 0), decoded as z_k4_scales does, 16 rows a lane each */
    const uint8_t *b = p[0] + 144 * i;
    const __m512i dd = _mm512_i32gather_epi32(vidx, b, 1), u0 = _mm512_i32gather_epi32(vidx, b + 4, 1);
    const __m512i u1 = _mm512_i32gather_epi32(vidx, b + 8, 1), u2 = _mm512_i32gather_epi32(vidx, b + 12, 1);
    s->d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dd));
    s->dmin = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16)));
    const __m512i lo6 = _mm512_set1_epi32(0x3f3f3f3f), lo4 = _mm512_set1_epi32(0x0f0f0f0f), lo2 = _mm512_set1_epi32(0x03030303);
    const __m512i sc03 = _mm512_and_si512(u0, lo6), mn03 = _mm512_and_si512(u1, lo6);
    const __m512i sc47 = _mm512_or_si512(_mm512_and_si512(u2, lo4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u0, 6), lo2), 4));
    const __m512i mn47 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), lo4),
                                         _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u1, 6), lo2), 4));
    const __m512i ff = _mm512_set1_epi32(0xff), dup = _mm512_set1_epi32(0x10001);
    for (int q = 0; q < 4; q++) {
        s->sc[q] = _mm512_mullo_epi32(_mm512_and_si512(_mm512_srli_epi32(sc03, 8 * q), ff), dup);
        s->sc[q + 4] = _mm512_mullo_epi32(_mm512_and_si512(_mm512_srli_epi32(sc47, 8 * q), ff), dup);
    }
    /* bytes b0 b1 b2 b3 of a lane to the i16 pairs (b0, b1) and (b2, b3) */
    const __m512i lo8 = _mm512_set1_epi32(0xff), b1 = _mm512_set1_epi32(0xff00);
    s->mn[0] = _mm512_or_si512(_mm512_and_si512(mn03, lo8), _mm512_slli_epi32(_mm512_and_si512(mn03, b1), 8));
    s->mn[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(mn03, 16), lo8), _mm512_slli_epi32(_mm512_srli_epi32(mn03, 24), 16));
    s->mn[2] = _mm512_or_si512(_mm512_and_si512(mn47, lo8), _mm512_slli_epi32(_mm512_and_si512(mn47, b1), 8));
    s->mn[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(mn47, 16), lo8), _mm512_slli_epi32(_mm512_srli_epi32(mn47, 24), 16));
}

/* NT tokens (x quants at xq, 256 apart; their 32-sums at bs, 8 apart;
 * scales dx) times the repacked super-block s: acc[t] (16 rows) += */
Z_IN void zp_body_q4_k(const zp_sb *s, const int8_t *xq, const int16_t *bs, const float *dx, const int NT, float *acc)
{
    __m512i ia[4], im[4];
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
        ia[t] = im[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int b = 0; b < 8; b++) {
        __m512i w[4][2];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            w[j][0] = _mm512_load_si512(&s->w[b][j][0]), w[j][1] = _mm512_load_si512(&s->w[b][j][1]);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const int8_t *xt = xq + 256 * t + 32 * b;
            __m512i A = _mm512_setzero_si512(), B = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                int64_t v;
                memcpy(&v, xt + 8 * j, 8);
                const __m512i xb = _mm512_set1_epi64(v);
                A = _mm512_dpbusd_epi32(A, w[j][0], xb);
                B = _mm512_dpbusd_epi32(B, w[j][1], xb);
            }
            ia[t] = _mm512_dpwssd_epi32(ia[t], _mm512_packs_epi32(A, B), s->sc[b]);
            if (b % 2) {
                int32_t bp;
                memcpy(&bp, bs + 8 * t + b - 1, 4);
                im[t] = _mm512_dpwssd_epi32(im[t], s->mn[b / 2], _mm512_set1_epi32(bp));
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) {
        const __m512 f = _mm512_fmsub_ps(_mm512_cvtepi32_ps(ia[t]), s->d, _mm512_mul_ps(_mm512_cvtepi32_ps(im[t]), s->dmin));
        _mm512_store_ps(acc + 16 * t, _mm512_fmadd_ps(f, _mm512_set1_ps(dx[t]), _mm512_load_ps(acc + 16 * t)));
    }
}

/* Q6_K in the same panels. Its 6-bit quants (0..63) fill an i32 lane to
 * 4*63*127 = 32004 in one vpdpbusd, so each 8 weights pack to i16 at once:
 * per 16-value sub-block and token, 4 vpdpbusd, 2 vpackssdw and 2
 * vpdpwssd with the rows' signed scales (both i16 of a lane); the -32 of
 * every quant is one vpdpwssd per pair of sub-blocks, -32 * the rows' two
 * scales times x's two 16-sums (bs), into the same i32 sum; one convert,
 * a multiply and an FMA per super-block and token. Zen 4, one thread,
 * k 1536, 128 tokens: 9.7 cycles per 256 weights and token against
 * the one-row body's 12.2 in the same run. */
typedef struct zp_sb6 {
    __m512i w[32][2]; /* [8-weight chunk][half]: 8 rows x 8 bytes */
    __m512i sc[16];   /* [sub-block] the rows' scale in both i16 of a lane */
    __m512i off[8];   /* [sub-block pair] -32 * the rows' two scales, i16 */
    __m512 d;
} zp_sb6;

Z_IN void zp_repack_q6_k(const uint8_t *const *p, __m512i vidx, int64_t i, zp_sb6 *s)
{
    const uint8_t *hr[2][8];
    for (int q = 0; q < 4; q++) {
        hr[0][2 * q] = p[4 * q] + 210 * i, hr[0][2 * q + 1] = p[4 * q + 1] + 210 * i;
        hr[1][2 * q] = p[4 * q + 2] + 210 * i, hr[1][2 * q + 1] = p[4 * q + 3] + 210 * i;
    }
    const __m512i m15 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
    for (int h = 0; h < 2; h++)
        for (int n = 0; n < 2; n++) { /* elements 128n..: ql at 64n, qh at 128 + 32n */
            __m512i ql[8], qh[4];
            zp_t8(hr[h], 64 * n, ql);
            zp_t8(hr[h], 64 * n + 32, ql + 4);
            zp_t8(hr[h], 128 + 32 * n, qh);
            for (int j = 0; j < 4; j++) { /* element 128n + 32g + 8j is chunk 16n + 4g + j */
                s->w[16 * n + j][h] = _mm512_or_si512(_mm512_and_si512(ql[j], m15), _mm512_and_si512(_mm512_slli_epi16(qh[j], 4), m30));
                s->w[16 * n + 4 + j][h] =
                    _mm512_or_si512(_mm512_and_si512(ql[j + 4], m15), _mm512_and_si512(_mm512_slli_epi16(qh[j], 2), m30));
                s->w[16 * n + 8 + j][h] =
                    _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql[j], 4), m15), _mm512_and_si512(qh[j], m30));
                s->w[16 * n + 12 + j][h] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql[j + 4], 4), m15),
                                                           _mm512_and_si512(_mm512_srli_epi16(qh[j], 2), m30));
            }
        }
    const uint8_t *b = p[0] + 210 * i;
    /* d: bytes 208-209, the top of the dword at 206 (the block's last bytes; 208 would read past it) */
    s->d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_i32gather_epi32(vidx, b + 206, 1), 16)));
    const __m512i lo16 = _mm512_set1_epi32(0xffff), m32 = _mm512_set1_epi16(-32);
    for (int q = 0; q < 4; q++) {
        const __m512i u = _mm512_i32gather_epi32(vidx, b + 192 + 4 * q, 1); /* scales 4q..4q+3, signed bytes */
        __m512i v[4];
        for (int l = 0; l < 4; l++) { /* byte l sign-extended to i16 in both halves */
            const __m512i e = _mm512_and_si512(_mm512_srai_epi32(_mm512_slli_epi32(u, 24 - 8 * l), 24), lo16);
            v[l] = _mm512_or_si512(e, _mm512_slli_epi32(e, 16));
            s->sc[4 * q + l] = v[l];
        }
        s->off[2 * q] = _mm512_mullo_epi16(_mm512_mask_blend_epi16(0xaaaaaaaa, v[0], v[1]), m32);
        s->off[2 * q + 1] = _mm512_mullo_epi16(_mm512_mask_blend_epi16(0xaaaaaaaa, v[2], v[3]), m32);
    }
}

Z_IN void zp_body_q6_k(const zp_sb6 *s, const int8_t *xq, const int16_t *bs, const float *dx, const int NT, float *acc)
{
    __m512i ia[4];
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) {
        ia[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) {
            int32_t bp;
            memcpy(&bp, bs + 16 * t + 2 * u, 4);
            ia[t] = _mm512_dpwssd_epi32(ia[t], s->off[u], _mm512_set1_epi32(bp));
        }
    }
#pragma GCC unroll 16
    for (int b = 0; b < 16; b++) {
        __m512i w[2][2];
#pragma GCC unroll 2
        for (int j = 0; j < 2; j++)
            w[j][0] = _mm512_load_si512(&s->w[2 * b + j][0]), w[j][1] = _mm512_load_si512(&s->w[2 * b + j][1]);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            const int8_t *xt = xq + 256 * t + 16 * b;
#pragma GCC unroll 2
            for (int j = 0; j < 2; j++) {
                int64_t v;
                memcpy(&v, xt + 8 * j, 8);
                const __m512i xb = _mm512_set1_epi64(v), z = _mm512_setzero_si512();
                const __m512i pk = _mm512_packs_epi32(_mm512_dpbusd_epi32(z, w[j][0], xb), _mm512_dpbusd_epi32(z, w[j][1], xb));
                ia[t] = _mm512_dpwssd_epi32(ia[t], pk, s->sc[b]);
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
        _mm512_store_ps(acc + 16 * t, _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(ia[t]), s->d), _mm512_set1_ps(dx[t]),
                                                      _mm512_load_ps(acc + 16 * t)));
}

/* rows (<= 16) rows at w (rb bytes apart) times tokens t0..t1-1 (t0 a
 * multiple of Z_G, t1 - t0 <= ZP_NT): y[t*ys + r] = . + (bias ? bias[r] : 0) */
Z_IN void zp_run(const int type, const uint8_t *w, int64_t rb, int rows, const uint8_t *zx, int64_t k, int64_t t0,
                 int64_t t1, float *y, int64_t ys, const float *bias)
{
    _Alignas(64) zp_sb s;
    _Alignas(64) zp_sb6 s6;
    const int bb = type == XF_TYPE_Q4_K ? 144 : 210;
    _Alignas(64) float acc[ZP_NT * 16];
    const uint8_t *p[16];
    for (int r = 0; r < 16; r++)
        p[r] = w + (r < rows ? r : rows - 1) * rb; /* a short panel repeats its last row, not stored */
    const __m512i vidx = _mm512_mullo_epi32(
        _mm512_min_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(rows - 1)),
        _mm512_set1_epi32((int)rb));
    memset(acc, 0, sizeof acc);
    const int64_t gb = zk_group(k);
    for (int64_t i = 0; i < k / 256; i++) {
        if (type == XF_TYPE_Q4_K)
            zp_repack_q4_k(p, vidx, i, &s);
        else
            zp_repack_q6_k(p, vidx, i, &s6);
        if (i + 1 < k / 256) /* the next super-block of each row (bb bytes), while this one's tokens run */
            for (int r = 0; r < 16; r++)
                for (int l = 0; l < 5; l++) /* bytes 0, 64, 128, 192, bb - 1: every line they touch */
                    _mm_prefetch((const char *)p[r] + bb * (i + 1) + (64 * l < bb ? 64 * l : bb - 1), _MM_HINT_T0);
        for (int64_t t = t0; t < t1; t += 4) {
            const uint8_t *g = zx + t / Z_G * gb;
            const int64_t o = i * Z_G + t % Z_G;
            const int8_t *xq = (const int8_t *)g + o * 256;
            const int16_t *bs = type == XF_TYPE_Q4_K ? (const int16_t *)(g + zk_q(k) + zk_dx(k) + zk_bs(k)) + o * 8
                                                     : (const int16_t *)(g + zk_q(k) + zk_dx(k)) + o * 16;
            const float *dx = (const float *)(g + zk_q(k)) + o;
            float *a = acc + 16 * (t - t0);
            const int nt = t1 - t < 4 ? (int)(t1 - t) : 4;
            if (type == XF_TYPE_Q4_K)
                switch (nt) {
                case 1: zp_body_q4_k(&s, xq, bs, dx, 1, a); break;
                case 2: zp_body_q4_k(&s, xq, bs, dx, 2, a); break;
                case 3: zp_body_q4_k(&s, xq, bs, dx, 3, a); break;
                default: zp_body_q4_k(&s, xq, bs, dx, 4, a); break;
                }
            else
                switch (nt) {
                case 1: zp_body_q6_k(&s6, xq, bs, dx, 1, a); break;
                case 2: zp_body_q6_k(&s6, xq, bs, dx, 2, a); break;
                case 3: zp_body_q6_k(&s6, xq, bs, dx, 3, a); break;
                default: zp_body_q6_k(&s6, xq, bs, dx, 4, a); break;
                }
        }
    }
    const __mmask16 mk = (__mmask16)((1u << rows) - 1);
    const __m512 bv = bias ? _mm512_maskz_loadu_ps(mk, bias) : _mm512_setzero_ps();
    for (int64_t t = t0; t < t1; t++)
        _mm512_mask_storeu_ps(y + t * ys, mk, _mm512_add_ps(_mm512_load_ps(acc + 16 * (t - t0)), bv));
}

Z_TGT static void zp_q4_k(const uint8_t *w, int64_t rb, int rows, const uint8_t *zx, int64_t k, int64_t t0, int64_t t1,
                          float *y, int64_t ys, const float *bias)
{
    zp_run(XF_TYPE_Q4_K, w, rb, rows, zx, k, t0, t1, y, ys, bias);
}

Z_TGT static void zp_q6_k(const uint8_t *w, int64_t rb, int rows, const uint8_t *zx, int64_t k, int64_t t0, int64_t t1,
                          float *y, int64_t ys, const float *bias)
{
    zp_run(XF_TYPE_Q6_K, w, rb, rows, zx, k, t0, t1, y, ys, bias);
}

int kern_cpu_q8z_panel_ok(int type, int64_t n, int64_t k)
{
    /* every K-quant prefill that q8's AVX-512 path takes (kern_cpu_q8z_supported):
     * the worker runs them all here, none one row at a time */
    return (type == XF_TYPE_Q4_K || type == XF_TYPE_Q6_K) && n > 1 && kern_cpu_q8z_supported(type, k);
}

void kern_cpu_q8z_panel(int type, const uint8_t *w, int64_t rb, int rows, const void *zx, int64_t n, int64_t k,
                        int64_t t0, int64_t t1, float *y, int64_t ys, const float *bias)
{
    (void)n;
    for (int64_t t = t0; t < t1; t += ZP_NT)
        (type == XF_TYPE_Q4_K ? zp_q4_k : zp_q6_k)(w, rb, rows, zx, k, t, t1 - t < ZP_NT ? t1 : t + ZP_NT, y, ys, bias);
}

#else

int kern_cpu_q8z_panel_ok(int type, int64_t n, int64_t k)
{
    (void)type, (void)n, (void)k;
    return 0;
}

void kern_cpu_q8z_panel(int type, const uint8_t *w, int64_t rb, int rows, const void *zx, int64_t n, int64_t k,
                        int64_t t0, int64_t t1, float *y, int64_t ys, const float *bias)
{
    (void)type, (void)w, (void)rb, (void)rows, (void)zx, (void)n, (void)k, (void)t0, (void)t1, (void)y, (void)ys, (void)bias;
}

#endif
