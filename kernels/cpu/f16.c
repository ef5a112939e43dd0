/* f16: f16 -> f32 rows and the f16 matrix-vector product of the CPU opt
 * kernels (the default model's weights are F16, and decode reads every
 * weight once per token, so this is the decode hot path).
 *
 * Two implementations each, chosen per call: x86 F16C (vcvtph2ps converts
 * 8 halves in one instruction; GCC will not emit it from portable code)
 * where the CPU has it, else portable vector code. Both are exact
 * conversions; the products differ from ref only by f32 rounding. */
#if defined(__GNUC__) && !defined(__clang__) /* clang has no GCC optimize pragma */
#pragma GCC optimize("fp-contract=fast")
#endif

#include "cpu/cpu.h"
#include "cpu/vec.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define F16_HAVE_X86 1
#include <immintrin.h>
#endif

/* ------------------------------------------------------------ portable */

KERN_CPU_CLONES
void kern_cpu_f16_to_f32_row_generic(const uint16_t *src, float *dst, int64_t n)
{
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        v8_store(dst + j, v8_from_f16(src + j));
    if (j < n) {
        uint16_t t[8] = {0};
        memcpy(t, src + j, (size_t)(n - j) * sizeof *t);
        v8_store_part(dst + j, v8_from_f16(t), (int)(n - j));
    }
}

/* y[r] = w_r . x for four rows sharing each x load */
VEC_INLINE void f16_dot4(const float *w0, const float *w1, const float *w2, const float *w3, const float *x,
                         int64_t k, float out[4])
{
    v8f s0 = v8_splat(0), s1 = v8_splat(0), s2 = v8_splat(0), s3 = v8_splat(0);
    int64_t j = 0;
    for (; j + 8 <= k; j += 8) {
        v8f xv = v8_load(x + j);
        s0 += xv * v8_load(w0 + j);
        s1 += xv * v8_load(w1 + j);
        s2 += xv * v8_load(w2 + j);
        s3 += xv * v8_load(w3 + j);
    }
    out[0] += v8_hsum(s0);
    out[1] += v8_hsum(s1);
    out[2] += v8_hsum(s2);
    out[3] += v8_hsum(s3);
    for (; j < k; j++) {
        out[0] += x[j] * w0[j];
        out[1] += x[j] * w1[j];
        out[2] += x[j] * w2[j];
        out[3] += x[j] * w3[j];
    }
}

#define F16_CHUNK 256

KERN_CPU_CLONES
void kern_cpu_f16_gemv_generic(const uint16_t *w, int64_t rows, int64_t k, const float *x, float *y)
{
    float cv[4][F16_CHUNK] __attribute__((aligned(64))); /* [4 rows, chunk] converted */
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        float out[4] = {0, 0, 0, 0};
        const uint16_t *w0 = w + r * k;
        for (int64_t c0 = 0; c0 < k; c0 += F16_CHUNK) {
            int64_t kl = k - c0 < F16_CHUNK ? k - c0 : F16_CHUNK;
            for (int q = 0; q < 4; q++)
                kern_cpu_f16_to_f32_row_generic(w0 + q * k + c0, cv[q], kl);
            f16_dot4(cv[0], cv[1], cv[2], cv[3], x + c0, kl, out);
        }
        memcpy(y + r, out, sizeof out);
    }
    for (; r < rows; r++) {
        float out = 0;
        for (int64_t c0 = 0; c0 < k; c0 += F16_CHUNK) {
            int64_t kl = k - c0 < F16_CHUNK ? k - c0 : F16_CHUNK;
            kern_cpu_f16_to_f32_row_generic(w + r * k + c0, cv[0], kl);
            for (int64_t j = 0; j < kl; j++)
                out += cv[0][j] * x[c0 + j];
        }
        y[r] = out;
    }
}

/* ---------------------------------------------------------------- F16C */

#ifdef F16_HAVE_X86
__attribute__((target("avx2,fma,f16c"))) static void f16_row_f16c(const uint16_t *src, float *dst, int64_t n)
{
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + j))));
    if (j < n)
        kern_cpu_f16_to_f32_row_generic(src + j, dst + j, n - j);
}

__attribute__((target("avx2,fma,f16c"))) static inline float f16_hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#define F16_LD(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))

__attribute__((target("avx2,fma,f16c"))) static void f16_gemv_f16c(const uint16_t *w, int64_t rows, int64_t k,
                                                                   const float *x, float *y)
{
    int64_t r = 0;
    /* four rows, two accumulators each: eight independent FMA chains hide
     * the FMA latency; each x vector is loaded once for four rows */
    for (; r + 4 <= rows; r += 4) {
        const uint16_t *w0 = w + r * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        int64_t j = 0;
        for (; j + 16 <= k; j += 16) {
            __m256 xa = _mm256_loadu_ps(x + j), xb = _mm256_loadu_ps(x + j + 8);
            a0 = _mm256_fmadd_ps(F16_LD(w0 + j), xa, a0);
            a1 = _mm256_fmadd_ps(F16_LD(w1 + j), xa, a1);
            a2 = _mm256_fmadd_ps(F16_LD(w2 + j), xa, a2);
            a3 = _mm256_fmadd_ps(F16_LD(w3 + j), xa, a3);
            b0 = _mm256_fmadd_ps(F16_LD(w0 + j + 8), xb, b0);
            b1 = _mm256_fmadd_ps(F16_LD(w1 + j + 8), xb, b1);
            b2 = _mm256_fmadd_ps(F16_LD(w2 + j + 8), xb, b2);
            b3 = _mm256_fmadd_ps(F16_LD(w3 + j + 8), xb, b3);
        }
        for (; j + 8 <= k; j += 8) {
            __m256 xa = _mm256_loadu_ps(x + j);
            a0 = _mm256_fmadd_ps(F16_LD(w0 + j), xa, a0);
            a1 = _mm256_fmadd_ps(F16_LD(w1 + j), xa, a1);
            a2 = _mm256_fmadd_ps(F16_LD(w2 + j), xa, a2);
            a3 = _mm256_fmadd_ps(F16_LD(w3 + j), xa, a3);
        }
        float o0 = f16_hsum256(_mm256_add_ps(a0, b0)), o1 = f16_hsum256(_mm256_add_ps(a1, b1));
        float o2 = f16_hsum256(_mm256_add_ps(a2, b2)), o3 = f16_hsum256(_mm256_add_ps(a3, b3));
        for (; j < k; j++) { /* fewer than 8 left: one at a time */
            o0 += _cvtsh_ss(w0[j]) * x[j];
            o1 += _cvtsh_ss(w1[j]) * x[j];
            o2 += _cvtsh_ss(w2[j]) * x[j];
            o3 += _cvtsh_ss(w3[j]) * x[j];
        }
        y[r] = o0;
        y[r + 1] = o1;
        y[r + 2] = o2;
        y[r + 3] = o3;
    }
    for (; r < rows; r++) {
        const uint16_t *w0 = w + r * k;
        __m256 a0 = _mm256_setzero_ps();
        int64_t j = 0;
        for (; j + 8 <= k; j += 8)
            a0 = _mm256_fmadd_ps(F16_LD(w0 + j), _mm256_loadu_ps(x + j), a0);
        float o0 = f16_hsum256(a0);
        for (; j < k; j++)
            o0 += _cvtsh_ss(w0[j]) * x[j];
        y[r] = o0;
    }
}

static int f16_have_f16c(void)
{
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}
#endif

/* ------------------------------------------------------------ dispatch */

void kern_cpu_f16_to_f32_row(const uint16_t *src, float *dst, int64_t n)
{
#ifdef F16_HAVE_X86
    if (f16_have_f16c()) {
        f16_row_f16c(src, dst, n);
        return;
    }
#endif
    kern_cpu_f16_to_f32_row_generic(src, dst, n);
}

void kern_cpu_f16_gemv(const uint16_t *w, int64_t rows, int64_t k, const float *x, float *y)
{
#ifdef F16_HAVE_X86
    if (f16_have_f16c()) {
        f16_gemv_f16c(w, rows, k, x, y);
        return;
    }
#endif
    kern_cpu_f16_gemv_generic(w, rows, k, x, y);
}
