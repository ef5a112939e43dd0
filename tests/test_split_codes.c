/* test_split_codes: the codes that put BF16 and F32 weights on the prefill
 * product's tensor cores (kernels/cuda/split_float.h), made on the host by
 * the device's own code (kern_cuda_split_codes_host), so they are checked
 * where there is no GPU (CI): for groups of 32 whose values are ordinary,
 * spread over 70 binades, all zero, subnormal, near the type's largest, or
 * hold +-Inf and NaN:
 * - each group's scale is 2^s with s = floor(log2(largest finite |w|)) - 14
 *   (at least -126, F32 -115), derived here independently;
 * - a BF16 code times its scale is the weight exactly wherever the weight
 *   is within 2^31 of its group's largest, and within 2^-39 of that
 *   largest elsewhere; F32's hi + lo within 2^-22 of the weight (or
 *   2^(s - 36) absolute); every code of a finite weight is finite;
 * - Inf and NaN keep themselves (F32's lo 0), in the layout the product
 *   reads (F32: a group's 32 hi codes, then its 32 lo codes);
 * - a row's dot with x from the codes is the f64 dot of the weights within
 *   2^-21 of the sum of |w x|;
 * - other types, k not a multiple of 32 and NULL are refused.
 * Built without CUDA: skipped (exit 77). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quant.h"
#include "testutil.h"

#ifdef XF_HAVE_CUDA
#include "kernels_cuda.h"

#define SC_GROUPS 8
#define SC_K (32 * SC_GROUPS)

static uint64_t sc_rng = 0x9e3779b97f4a7c15ull;

static uint32_t sc_rand(void)
{
    sc_rng ^= sc_rng << 13;
    sc_rng ^= sc_rng >> 7;
    sc_rng ^= sc_rng << 17;
    return (uint32_t)(sc_rng >> 16);
}

static float sc_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* f32 bits for element i of group g of a row: each group a kind of values */
static uint32_t sc_value(int g, int i, bool bf16)
{
    uint32_t sign = (sc_rand() & 1u) << 31, mant = sc_rand() & 0x7FFFFFu;
    if (bf16)
        mant &= 0x7F0000u; /* 7 stored bits */
    switch (g) {
    case 0: /* ordinary: |w| in [2^-8, 2^0) */
        return sign | ((uint32_t)(127 - 8 + (int)(sc_rand() % 8)) << 23) | mant;
    case 1: /* 70 binades: 2^-60 .. 2^10 */
        return sign | ((uint32_t)(127 - 60 + (int)(sc_rand() % 71)) << 23) | mant;
    case 2: /* zeros, one negative */
        return i == 7 ? 0x80000000u : 0u;
    case 3: /* subnormals only */
        return sign | (mant ? mant : 1u);
    case 4: /* near the largest finite */
        return sign | (254u << 23) | mant;
    case 5: /* +Inf, -Inf and NaN among ordinary values */
        if (i == 1)
            return 0x7F800000u;
        if (i == 17)
            return 0xFF800000u;
        if (i == 30)
            return 0x7FC00000u;
        return sign | ((uint32_t)(127 + (int)(sc_rand() % 4)) << 23) | mant;
    case 6: /* tiny: every value under 2^-110 (the scale's floor) */
        return sign | ((uint32_t)(1 + (int)(sc_rand() % 16)) << 23) | mant;
    default: /* one large value among small ones: 2^20 and 2^-30 .. 2^-20 */
        if (i == 13)
            return (uint32_t)(127 + 20) << 23 | mant;
        return sign | ((uint32_t)(127 - 30 + (int)(sc_rand() % 10)) << 23) | mant;
    }
}

/* the group's scale exponent as the contract says it */
static int sc_expect_s(const float *w, bool bf16)
{
    double big = 0.0;
    for (int i = 0; i < 32; i++)
        if (isfinite(w[i]))
            big = fmax(big, fabs((double)w[i]));
    int s = -200;
    if (big >= ldexp(1.0, -126)) {
        int e;
        frexp(big, &e); /* big = f 2^e, f in [0.5, 1): floor(log2 big) = e - 1 */
        s = e - 1 - 14;
    }
    int least = bf16 ? -126 : -115;
    return s < least ? least : s;
}

static double sc_half(uint16_t h)
{
    int e = (h >> 10) & 0x1F, m = h & 0x3FF;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

static void sc_check(int type)
{
    bool bf16 = type == XF_TYPE_BF16;
    const int rows = 5, kp = bf16 ? SC_K : 2 * SC_K, gp = kp / 32;
    size_t eb = bf16 ? 2 : 4;
    uint8_t *w = malloc((size_t)rows * SC_K * eb);
    float *wf = malloc((size_t)rows * SC_K * sizeof *wf), *a = malloc((size_t)rows * gp * sizeof *a);
    uint16_t *q = malloc((size_t)rows * kp * sizeof *q);
    assert_true(w && wf && a && q);
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < SC_K; j++) {
            uint32_t u = sc_value((j / 32 + r) % SC_GROUPS, j % 32, bf16);
            if (bf16) {
                uint16_t h = (uint16_t)(u >> 16);
                memcpy(w + ((size_t)r * SC_K + j) * 2, &h, 2);
                u = (uint32_t)h << 16;
            } else {
                memcpy(w + ((size_t)r * SC_K + j) * 4, &u, 4);
            }
            wf[(size_t)r * SC_K + j] = sc_from_bits(u);
        }
    memset(q, 0xFF, (size_t)rows * kp * sizeof *q); /* NaN codes: every one must be written */
    for (int i = 0; i < rows * gp; i++)
        a[i] = NAN;
    assert_int_equal(kern_cuda_split_codes_host(type, w, rows, SC_K, q, a), 0);

    for (int r = 0; r < rows; r++) {
        double dot = 0.0, dotq = 0.0, mag = 0.0;
        for (int g = 0; g < SC_GROUPS; g++) {
            const float *wg = wf + (size_t)r * SC_K + g * 32;
            int s = sc_expect_s(wg, bf16);
            double ahi = a[r * gp + (bf16 ? g : 2 * g)], alo = bf16 ? 0.0 : a[r * gp + 2 * g + 1];
            if (ahi != ldexp(1.0, s) || (!bf16 && alo != ldexp(1.0, s - 11)))
                fail_msg("%s row %d group %d: scales %g, %g; expected 2^%d", bf16 ? "bf16" : "f32", r, g, ahi,
                         alo, s);
            double most = 0.0;
            for (int i = 0; i < 32; i++) {
                double v = wg[i];
                int at = r * kp + (bf16 ? g * 32 + i : g * 64 + i);
                double hi = sc_half(q[at]), lo = bf16 ? 0.0 : sc_half(q[at + 32]);
                if (!isfinite(v)) {
                    if (isnan(v) ? !isnan(hi) : hi != v * 1.0 || lo != 0.0)
                        fail_msg("%s row %d group %d [%d]: %g coded as %g + %g", bf16 ? "bf16" : "f32", r, g,
                                 i, v, hi, lo);
                    continue;
                }
                if (!isfinite(hi) || !isfinite(lo))
                    fail_msg("%s row %d group %d [%d]: finite %g coded non-finite", bf16 ? "bf16" : "f32", r,
                             g, i, v);
                most = fmax(most, fabs(hi));
                double back = ahi * hi + alo * lo, err = fabs(back - v);
                double tol = bf16 ? (fabs(v) >= ldexp(1.0, s - 17) ? 0.0 : ldexp(1.0, s - 25))
                                  : fabs(v) * ldexp(1.0, -22) + ldexp(1.0, s - 36);
                if (err > tol)
                    fail_msg("%s row %d group %d [%d]: %.17g comes back %.17g (err %.3g > %.3g, s %d)",
                             bf16 ? "bf16" : "f32", r, g, i, v, back, err, tol, s);
                double x = (double)(int)(sc_rand() % 2001 - 1000) / 1000.0;
                dot += v * x;
                dotq += back * x;
                mag += fabs(v * x);
            }
            /* the largest finite code in [2^14, 2^15) where the scale is not at its floor */
            if (s > (bf16 ? -126 : -115) && !(most >= 16384.0 && most < 32768.0))
                fail_msg("%s row %d group %d: largest code %g", bf16 ? "bf16" : "f32", r, g, most);
        }
        if (fabs(dotq - dot) > ldexp(mag, -21))
            fail_msg("%s row %d: dot %.17g from the codes, %.17g from the weights", bf16 ? "bf16" : "f32", r,
                     dotq, dot);
    }
    free(w);
    free(wf);
    free(a);
    free(q);
}

static void test_bf16_codes(void **state)
{
    (void)state;
    sc_check(XF_TYPE_BF16);
}

static void test_f32_codes(void **state)
{
    (void)state;
    sc_check(XF_TYPE_F32);
}

static void test_refused(void **state)
{
    (void)state;
    uint16_t q[64];
    float a[2], w[64] = {1.0f};
    assert_int_equal(kern_cuda_split_codes_host(XF_TYPE_F16, w, 1, 32, q, a), -1);
    assert_int_equal(kern_cuda_split_codes_host(XF_TYPE_Q8_0, w, 1, 32, q, a), -1);
    assert_int_equal(kern_cuda_split_codes_host(XF_TYPE_BF16, w, 1, 48, q, a), -1);
    assert_int_equal(kern_cuda_split_codes_host(XF_TYPE_F32, w, 0, 32, q, a), -1);
    assert_int_equal(kern_cuda_split_codes_host(XF_TYPE_F32, NULL, 1, 32, q, a), -1);
    assert_int_equal(kern_cuda_split_codes_host(XF_TYPE_F32, w, 1, 32, NULL, a), -1);
    assert_int_equal(kern_cuda_split_codes_host(XF_TYPE_F32, w, 1, 32, q, NULL), -1);
    /* and a row of 32 F32 ones: hi 2^14 under 2^-14, lo 0 */
    for (int i = 0; i < 32; i++)
        w[i] = 1.0f;
    assert_int_equal(kern_cuda_split_codes_host(XF_TYPE_F32, w, 1, 32, q, a), 0);
    assert_int_equal(q[0], 0x7400); /* 16384 in f16 */
    assert_int_equal(q[32], 0);
    assert_true(a[0] == ldexpf(1.0f, -14) && a[1] == ldexpf(1.0f, -25));
}
#endif

int main(void)
{
#ifdef XF_HAVE_CUDA
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bf16_codes),
        cmocka_unit_test(test_f32_codes),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
#else
    printf("test_split_codes: built without CUDA: skipped\n");
    return 77;
#endif
}
