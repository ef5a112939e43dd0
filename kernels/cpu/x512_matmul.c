/* x512_matmul: the AVX-512 paths of the opt matmul for f32 and f16
 * weights, y[n,m] = x[n,k] . w[m,k]^T (+ b), taken when kern_cpu_isa()
 * says avx512 (cpuid, capped by XF_CPU_ISA); opt_matmul.c keeps the AVX2
 * and portable paths.
 *
 * Prefill (n >= X5_MIN_N) is an outer-product GEMM: a panel of 64 weight
 * rows is taken X5_KC columns at a time, converted (f16) and transposed to
 * [X5_KC][64] f32 once (32 KiB: stays in L1), and reused by every group of
 * 6 tokens: per column, four zmm loads of the panel and six broadcasts of
 * x feed 24 FMAs into 24 accumulators, each holding 16 output rows of one
 * token. Accumulators map to contiguous outputs of y, so there is no
 * horizontal sum, and a chunk's partial sums are added into y with masked
 * vector stores. Threads own whole panels; each thread re-reads x (in L2)
 * per panel, the weights are read once.
 *
 * Decode (n == 1) is bound by reading the weights: four rows per x load,
 * 16-lane loads (f16 converted by vcvtph2ps), software prefetch ahead in
 * every row stream.
 *
 * Sums are f32 in a different order than ref's f64 dot: each output is one
 * sequential FMA chain per 128-column chunk, chunks added into y. Its
 * rounding error is ~2-3x the AVX2 path's 16-lane dots (GPT-2 tiny against
 * the f64 reference: NMSE ~3e-14 instead of ~1e-14, max error still ~500x
 * under the session tolerance), the price of having no horizontal sums.
 * That moves compare's err/tol bars by a cell, which session replay
 * forgives (engine/session.c: bars of one width match). */
#if defined(__GNUC__) && !defined(__clang__) /* clang has no GCC optimize pragma */
#pragma GCC optimize("fp-contract=fast")
#endif

#include "cpu/cpu.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define X5_ON 1
#include <immintrin.h>
#else
#define X5_ON 0
#endif

int kern_cpu_isa_ymm(void)
{
    int best = KERN_CPU_ISA_PORTABLE;
#if X5_ON
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
        best = KERN_CPU_ISA_AVX2;
        if (__builtin_cpu_supports("avxvnni"))
            best = KERN_CPU_ISA_VNNI;
    }
#endif
    return best;
}

int kern_cpu_isa(void)
{
    int best = kern_cpu_isa_ymm();
#if X5_ON
    if (best >= KERN_CPU_ISA_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        best = KERN_CPU_ISA_AVX512;
#endif
    const int want = kern_cpu_isa_cap();
    return want < best ? want : best;
}

int kern_cpu_isa_cap(void)
{
    const char *e = getenv("XF_CPU_ISA");
    if (e && strcmp(e, "portable") == 0)
        return KERN_CPU_ISA_PORTABLE;
    if (e && strcmp(e, "avx2") == 0)
        return KERN_CPU_ISA_AVX2;
    if (e && strcmp(e, "vnni") == 0)
        return KERN_CPU_ISA_VNNI;
    return KERN_CPU_ISA_AVX512;
}

#if X5_ON

#define X5_NR 64  /* weight rows per panel: four zmm of outputs per token */
#define X5_TT 6   /* tokens per tile: 6 x 4 = 24 accumulators of the 32 zmm */
#define X5_KC 128 /* columns per chunk: a packed panel chunk is 32 KiB */

#define X5_TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#define X5_INLINE X5_TGT static inline __attribute__((always_inline))

typedef struct x5_job {
    const kern_args *a;
    uint64_t rb; /* bytes of one weight row */
    float *buf;  /* [threads][X5_KC][X5_NR] packed panel chunks */
    int nth;
} x5_job;

/* ------------------------------------------------------------ packing */

/* In-register transpose of a 16x16 f32 block: r[i] lane j <- r[j] lane i.
 * unpack pairs rows, shuffle_ps makes 4-row groups per 128-bit lane, two
 * rounds of shuffle_f32x4 then transpose the 4x4 grid of lanes. */
X5_INLINE void x5_tr16(__m512 r[16])
{
    __m512 t[16], u[16];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) { /* u[4g+j] lane L = rows 4g..4g+3, column 4L+j */
        u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m512 v0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88), v1 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xDD);
        __m512 v2 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88),
               v3 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xDD);
        r[j] = _mm512_shuffle_f32x4(v0, v2, 0x88);
        r[8 + j] = _mm512_shuffle_f32x4(v0, v2, 0xDD);
        r[4 + j] = _mm512_shuffle_f32x4(v1, v3, 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(v1, v3, 0xDD);
    }
}

/* wp[c][q] = w[r0+q][c0+c] as f32 for c < kl, q < X5_NR; rows past m are 0 */
X5_TGT static void x5_pack(const x5_job *jb, int64_t r0, int nr, int64_t c0, int64_t kl, float *wp)
{
    const uint8_t *w = jb->a->w;
    const int f16 = jb->a->w_type == XF_TYPE_F16;
    for (int64_t cb = 0; cb < kl; cb += 16) {
        const int nc = kl - cb < 16 ? (int)(kl - cb) : 16;
        const __mmask16 mk = (__mmask16)((1u << nc) - 1);
        for (int g = 0; g < X5_NR / 16; g++) {
            __m512 r[16];
#pragma GCC unroll 16
            for (int q = 0; q < 16; q++) {
                const int row = g * 16 + q;
                const uint8_t *p = w + (uint64_t)(r0 + row) * jb->rb;
                if (row >= nr)
                    r[q] = _mm512_setzero_ps();
                else if (f16)
                    r[q] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, (const uint16_t *)p + c0 + cb));
                else
                    r[q] = _mm512_maskz_loadu_ps(mk, (const float *)p + c0 + cb);
            }
            x5_tr16(r);
            for (int j = 0; j < nc; j++)
                _mm512_store_ps(wp + (cb + j) * X5_NR + g * 16, r[j]);
        }
    }
}

/* --------------------------------------------------------------- GEMM */

/* y[t][0..64) (+)= sum_c wp[c][.] * x[t][c] for NT tokens (NT constant
 * after inlining, so acc stays in registers). first: y is written, with
 * the bias if any; else added to. mk: valid rows of each 16-row quarter. */
X5_INLINE void x5_tile(const int NT, const float *wp, const float *x, int64_t xs, int64_t kl, float *y,
                       int64_t ys, const __mmask16 mk[4], const float *bias, int first)
{
    __m512 acc[X5_TT][4];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++)
            acc[t][i] = _mm512_setzero_ps();
    for (int64_t c = 0; c < kl; c++) {
        const float *wc = wp + c * X5_NR;
        __m512 w0 = _mm512_load_ps(wc), w1 = _mm512_load_ps(wc + 16), w2 = _mm512_load_ps(wc + 32),
               w3 = _mm512_load_ps(wc + 48);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            __m512 xb = _mm512_set1_ps(x[t * xs + c]);
            acc[t][0] = _mm512_fmadd_ps(w0, xb, acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(w1, xb, acc[t][1]);
            acc[t][2] = _mm512_fmadd_ps(w2, xb, acc[t][2]);
            acc[t][3] = _mm512_fmadd_ps(w3, xb, acc[t][3]);
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++)
        for (int i = 0; i < 4; i++) {
            float *yp = y + t * ys + i * 16;
            __m512 v = acc[t][i];
            if (!first)
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk[i], yp));
            else if (bias)
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk[i], bias + i * 16));
            _mm512_mask_storeu_ps(yp, mk[i], v);
        }
}

X5_TGT static void x5_tile_any(int nt, const float *wp, const float *x, int64_t xs, int64_t kl, float *y,
                               int64_t ys, const __mmask16 mk[4], const float *bias, int first)
{
    switch (nt) {
    case 1:
        x5_tile(1, wp, x, xs, kl, y, ys, mk, bias, first);
        break;
    case 2:
        x5_tile(2, wp, x, xs, kl, y, ys, mk, bias, first);
        break;
    case 3:
        x5_tile(3, wp, x, xs, kl, y, ys, mk, bias, first);
        break;
    case 4:
        x5_tile(4, wp, x, xs, kl, y, ys, mk, bias, first);
        break;
    case 5:
        x5_tile(5, wp, x, xs, kl, y, ys, mk, bias, first);
        break;
    default:
        x5_tile(X5_TT, wp, x, xs, kl, y, ys, mk, bias, first);
        break;
    }
}

/* Prefetches into L2 part i of nparts (split by rows) of the weights that
 * chunk (panel p, columns from c0) will pack: spread over the tiles of the
 * chunk before, so that the pack finds them in cache instead of waiting on
 * 64 short row streams that the hardware prefetcher does not follow. */
X5_TGT static void x5_prefetch(const x5_job *jb, int64_t p, int64_t c0, int64_t i, int64_t nparts)
{
    const kern_args *a = jb->a;
    const int64_t r0 = p * X5_NR, nr = a->m - r0 < X5_NR ? a->m - r0 : X5_NR;
    const int64_t q0 = nr * i / nparts, q1 = nr * (i + 1) / nparts;
    const int64_t es = a->w_type == XF_TYPE_F16 ? 2 : 4;
    const int64_t b0 = c0 * es, b1 = (c0 + X5_KC < a->k ? c0 + X5_KC : a->k) * es;
    for (int64_t q = q0; q < q1; q++) {
        const char *row = (const char *)a->w + (uint64_t)(r0 + q) * jb->rb;
        for (int64_t b = b0; b < b1; b += 64)
            _mm_prefetch(row + b, _MM_HINT_T1);
    }
}

X5_TGT static void x5_gemm_worker(void *arg, int ti, int tn)
{
    const x5_job *jb = arg;
    const kern_args *a = jb->a;
    int nth = kern_cpu_parts(jb->nth, tn);
    if (ti >= nth)
        return;
    const int64_t n = a->n, k = a->k, m = a->m;
    float *wp = jb->buf + (int64_t)ti * X5_KC * X5_NR;
    int64_t p0, p1;
    kern_cpu_range((m + X5_NR - 1) / X5_NR, ti, nth, 1, &p0, &p1);
    for (int64_t p = p0; p < p1; p++) {
        const int64_t r0 = p * X5_NR;
        const int nr = m - r0 < X5_NR ? (int)(m - r0) : X5_NR;
        __mmask16 mk[4];
        for (int i = 0; i < 4; i++) {
            int v = nr - i * 16;
            mk[i] = (__mmask16)(v >= 16 ? 0xffffu : v <= 0 ? 0u : (1u << v) - 1);
        }
        for (int64_t c0 = 0; c0 < k; c0 += X5_KC) {
            const int64_t kl = k - c0 < X5_KC ? k - c0 : X5_KC;
            x5_pack(jb, r0, nr, c0, kl, wp);
            /* the chunk packed next: this panel's next columns, or the next panel's first */
            const int64_t pn = c0 + X5_KC < k ? p : p + 1, cn = c0 + X5_KC < k ? c0 + X5_KC : 0;
            const int64_t ntiles = (n + X5_TT - 1) / X5_TT;
            for (int64_t t0 = 0; t0 < n; t0 += X5_TT) {
                const int nt = n - t0 < X5_TT ? (int)(n - t0) : X5_TT;
                if (pn < p1)
                    x5_prefetch(jb, pn, cn, t0 / X5_TT, ntiles);
                x5_tile_any(nt, wp, a->x + t0 * k + c0, k, kl, a->y + t0 * m + r0, m, mk,
                            a->b ? a->b + r0 : NULL, c0 == 0);
            }
        }
    }
}

/* ------------------------------------------------------------- decode */

/* 16 weights from column j of row p (f16 or f32), mk selecting the lanes */
X5_INLINE __m512 x5_w16(int f16, const uint8_t *p, int64_t j, __mmask16 mk)
{
    if (f16)
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, (const uint16_t *)p + j));
    return _mm512_maskz_loadu_ps(mk, (const float *)p + j);
}

/* y[r] = w_r . x (+ b) for rows [lo, hi): four rows per x load, and a
 * prefetch of the next four rows at the same column, one 64-byte line per
 * row and 64 bytes consumed. Rows are contiguous, so that stays one group
 * (4 rows, ~6 KiB of GPT-2 f16) ahead of the loads: enough to cover DRAM
 * latency, where the hardware prefetcher restarts on every short row.
 * f32 prefetches into L2 only: measured faster there (twice the lines per
 * FMA would crowd L1), f16 into L1. */
X5_INLINE void x5_gemv_rows(const int f16, const kern_args *a, uint64_t rb, int64_t lo, int64_t hi)
{
    const int64_t k = a->k, step = f16 ? 32 : 16; /* columns per 64-byte line */
    const uint8_t *w = a->w;
    for (int64_t r = lo; r < hi; r += 4) {
        const int nr = hi - r < 4 ? (int)(hi - r) : 4;
        const uint8_t *p[4], *pf[4];
        for (int q = 0; q < 4; q++) {
            p[q] = w + (uint64_t)(r + (q < nr ? q : 0)) * rb; /* missing rows repeat row r, unstored */
            pf[q] = p[q] + 4 * rb;
        }
        __m512 acc[4][2];
        for (int q = 0; q < 4; q++)
            acc[q][0] = acc[q][1] = _mm512_setzero_ps();
        for (int64_t j = 0; j < k; j += step) {
            const int64_t left = k - j;
            const __mmask16 m0 = left >= 16 ? 0xffff : (__mmask16)((1u << left) - 1);
            const __mmask16 m1 = !f16 || left <= 16 ? 0 : left >= 32 ? 0xffff : (__mmask16)((1u << (left - 16)) - 1);
            if (r + 4 < hi)
                for (int q = 0; q < 4; q++)
                    _mm_prefetch((const char *)pf[q] + j * (f16 ? 2 : 4), f16 ? _MM_HINT_T0 : _MM_HINT_T1);
            __m512 x0 = _mm512_maskz_loadu_ps(m0, a->x + j);
            for (int q = 0; q < 4; q++)
                acc[q][0] = _mm512_fmadd_ps(x5_w16(f16, p[q], j, m0), x0, acc[q][0]);
            if (f16 && m1) {
                __m512 x1 = _mm512_maskz_loadu_ps(m1, a->x + j + 16);
                for (int q = 0; q < 4; q++)
                    acc[q][1] = _mm512_fmadd_ps(x5_w16(f16, p[q], j + 16, m1), x1, acc[q][1]);
            }
        }
        for (int q = 0; q < nr; q++)
            a->y[r + q] = _mm512_reduce_add_ps(_mm512_add_ps(acc[q][0], acc[q][1])) + (a->b ? a->b[r + q] : 0.0f);
    }
}

X5_TGT static void x5_gemv_worker(void *arg, int ti, int tn)
{
    const x5_job *jb = arg;
    int nth = kern_cpu_parts(jb->nth, tn);
    if (ti >= nth)
        return;
    int64_t lo, hi;
    kern_cpu_range(jb->a->m, ti, nth, 16, &lo, &hi);
    if (jb->a->w_type == XF_TYPE_F16)
        x5_gemv_rows(1, jb->a, jb->rb, lo, hi);
    else
        x5_gemv_rows(0, jb->a, jb->rb, lo, hi);
}

int kern_cpu_x512_gemm(kern_ctx *ctx, const kern_args *a)
{
    x5_job jb = {.a = a, .nth = kern_cpu_threads(ctx)};
    quant_row_bytes(a->w_type, a->k, &jb.rb);
    double work = (double)a->n * (double)a->m * (double)a->k;
    if (a->n == 1) {
        kern_cpu_run(ctx, work >= 65536, x5_gemv_worker, &jb);
        return 0;
    }
    jb.buf = aligned_alloc(64, (size_t)jb.nth * X5_KC * X5_NR * sizeof(float));
    if (!jb.buf)
        return -1;
    kern_cpu_run(ctx, work >= 65536, x5_gemm_worker, &jb);
    free(jb.buf);
    return 0;
}

#else

int kern_cpu_x512_gemm(kern_ctx *ctx, const kern_args *a)
{
    (void)ctx;
    (void)a;
    return -1; /* never called: kern_cpu_isa() is below avx512 here */
}

#endif
