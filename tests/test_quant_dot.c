/* test_quant_dot: the fused quantized dot products of kernels/cpu
 * (quant_dot.c) against dequantize-then-dot, exactly where every weight is
 * representable, within a bound on realistic rows, and with non-finite
 * scales. Numbering as in test_quant.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/quant_dot.h"
#include "quant.h"
#include "quant_util.h"
#include "quantize.h"
#include "testutil.h"

/* 3b. kern_cpu_quant_dot (fused kernels on CPUs with AVX2+FMA+F16C) and
 * kern_cpu_quant_dot_generic (the portable path), both checked, for every block
 * type. */
typedef float (*dot_f32_fn)(int type, const void *w, const float *x, int64_t n);
static const struct {
    dot_f32_fn fn;
    const char *name;
} DOT_F32[] = {{kern_cpu_quant_dot, "dot_f32"}, {kern_cpu_quant_dot_generic, "dot_f32_generic"}};

/* the f16/f32 scale fields of one block of type, at *offs (count returned) */
static int scale_offsets(int type, int offs[2])
{
    switch (type) {
    case XF_TYPE_Q4_0: case XF_TYPE_Q5_0: case XF_TYPE_Q8_0: case XF_TYPE_Q8_K:
        offs[0] = 0;
        return 1;
    case XF_TYPE_Q4_1: case XF_TYPE_Q5_1: case XF_TYPE_Q8_1: case XF_TYPE_Q4_K: case XF_TYPE_Q5_K:
        offs[0] = 0;
        offs[1] = 2;
        return 2;
    case XF_TYPE_Q2_K:
        offs[0] = 80;
        offs[1] = 82;
        return 2;
    case XF_TYPE_Q3_K:
        offs[0] = 108;
        return 1;
    case XF_TYPE_Q6_K:
        offs[0] = 208;
        return 1;
    default:
        return 0;
    }
}

/* Random blocks whose every weight is a multiple of 2^-6 of magnitude < 2^8:
 * random quant bytes, scales +-2^-k (k = 4..6), Q4_1/Q5_1 mins +-j*2^-5
 * (j < 64).  With small integer x every product and every partial sum of a
 * short row is then exact in f32, in any order. */
static void exact_blocks(int type, uint8_t *dst, int64_t nb, uint64_t *rng)
{
    const quant_type_info *t = quant_type_get(type);
    int offs[2];
    const int n_offs = scale_offsets(type, offs);
    for (int64_t i = 0; i < nb; i++) {
        uint8_t *b = dst + i * t->block_bytes;
        for (int j = 0; j < t->block_bytes; j++)
            b[j] = (uint8_t)tu_rand_u64(rng);
        for (int k = 0; k < n_offs; k++) {
            const uint64_t r = tu_rand_u64(rng);
            float v = ldexpf((r & 1) ? -1.0f : 1.0f, -4 - (int)((r >> 1) % 3));
            if (k == 1 && (type == XF_TYPE_Q4_1 || type == XF_TYPE_Q5_1))
                v = ldexpf((float)((int)((r >> 8) % 127) - 63), -5);
            if (type == XF_TYPE_Q8_K) {
                memcpy(b, &v, 4);
            } else {
                uint16_t h = xf_f32_to_f16(v);
                memcpy(b + offs[k], &h, 2);
            }
        }
    }
}

/* Every weight counts exactly: blocks from exact_blocks, x in +-{1,2}
 * (never zero), rows of up to 28 blocks or 3 super-blocks.  The true dot is
 * a multiple of 2^-6 below 2^18 in magnitude (asserted: sum|w*x| < 2^18), so
 * f32 holds it and every partial sum exactly, and both f32 dots must equal
 * quant_dot_ref bit for bit: any wrong quant, bit, scale, min or block
 * stride shows, whatever the summation order. */
static void test_dot_f32_exact(void **state)
{
    (void)state;
    static const int64_t blocks32[] = {1, 2, 3, 5, 28}, blocks256[] = {1, 2, 3};
    float x[28 * 32 + 1], w[28 * 32];
    uint8_t q[28 * 36 + 1];
    uint64_t st = 99;
    int checked = 0;
    for (size_t c = 0; c < N_CASES; c++) {
        const type_case *tc = &CASES[c];
        if (tc->block_elems == 1)
            continue;
        const bool k = tc->block_elems == 256;
        const size_t nl = k ? sizeof blocks256 / sizeof blocks256[0] : sizeof blocks32 / sizeof blocks32[0];
        for (size_t li = 0; li < nl; li++) {
            const int64_t nb = k ? blocks256[li] : blocks32[li], n = nb * tc->block_elems;
            for (int rep = 0; rep < 8; rep++) {
                uint8_t *row = q + (rep & 1); /* odd addresses too */
                float *xv = x + ((rep >> 1) & 1); /* x not 32-byte aligned */
                exact_blocks(tc->type, row, nb, &st);
                for (int64_t i = 0; i < n; i++) {
                    const uint64_t r = tu_rand_u64(&st);
                    xv[i] = (float)(1 + (int)((r >> 1) & 1)) * ((r & 1) ? -1.0f : 1.0f);
                }
                tu_poison(w, (size_t)n);
                quant_dequant_row(tc->type, row, w, n);
                double mag = 0;
                for (int64_t i = 0; i < n; i++) {
                    assert_true(ldexp(w[i], 6) == nearbyint(ldexp(w[i], 6))); /* a multiple of 2^-6 */
                    mag += fabs((double)w[i] * xv[i]);
                }
                assert_true(mag < 262144.0);
                const double ref = quant_dot_ref(tc->type, row, xv, n);
                for (size_t f = 0; f < sizeof DOT_F32 / sizeof DOT_F32[0]; f++) {
                    const float r = DOT_F32[f].fn(tc->type, row, xv, n);
                    if ((double)r != ref)
                        fail_msg("%s %s n=%lld rep %d: %.9g, exact %.17g", DOT_F32[f].name,
                                 quant_type_name(tc->type), (long long)n, rep, (double)r, ref);
                }
                checked++;
            }
        }
    }
    assert_int_equal(checked, 8 * (6 * 5 + 6 * 3)); /* 6 small-block and 6 super-block types */
}

/* Realistic rows: quantized random rows and random blocks (every quant
 * value, random f16 scales), on the shapes of Qwen2.5-0.5B (k = 896 for the
 * 32-element formats, 4864 for the k-quants) and a single block.  Bound:
 * each product and each add rounds once in f32 (2^-24 relative); a lane
 * sums a block (<= 4 terms), the block scale multiplies, and <= 2 block
 * accumulators per lane take nb/2 or 4*nb/2 adds before an 8-lane tree, so
 * with random signs the error is ~2^-24*sqrt(terms) of sum|w*x|, a few 1e-8
 * here.  2e-6 of sum|w*x| (as test_dot) is 20x over the largest seen and
 * still 1/10 of one quant step of one weight of 4864. */
static void test_dot_f32_rows(void **state)
{
    (void)state;
    float *x = malloc((4864 + 1) * sizeof(float)); /* [n + 1]: x read from x + 1 */
    float *w = malloc(4864 * sizeof(float));       /* [n] dequantized weights */
    uint8_t *q = malloc(4864 * 2 + 1);             /* the row (<= 292/256 bytes per element), +1 for misalignment */
    assert_non_null(x);
    assert_non_null(w);
    assert_non_null(q);
    uint64_t st = 31337;
    double worst[2] = {0, 0};
    for (size_t c = 0; c < N_CASES; c++) {
        const type_case *tc = &CASES[c];
        if (tc->block_elems == 1)
            continue;
        const int64_t lens[] = {tc->block_elems, tc->block_elems == 256 ? 4864 : 896};
        for (size_t li = 0; li < 2; li++)
            for (int kind = 0; kind < 2; kind++) {
                const int64_t n = lens[li];
                uint8_t *row = q + 1;
                float *xv = x + 1;
                tu_fill_random(xv, (size_t)n, &st, -1, 1);
                if (kind == 0) {
                    tu_fill_random(w, (size_t)n, &st, -1, 1);
                    assert_true(quant_quantize_row(tc->type, w, row, n) > 0);
                } else {
                    random_blocks(tc->type, row, n, &st);
                }
                tu_poison(w, (size_t)n);
                quant_dequant_row(tc->type, row, w, n);
                double expect = 0, mag = 0;
                for (int64_t i = 0; i < n; i++) {
                    expect += (double)w[i] * (double)xv[i];
                    mag += fabs((double)w[i] * (double)xv[i]);
                }
                assert_true(isfinite(expect) && mag > 0);
                for (size_t f = 0; f < sizeof DOT_F32 / sizeof DOT_F32[0]; f++) {
                    const double r = DOT_F32[f].fn(tc->type, row, xv, n), e = fabs(r - expect) / mag;
                    if (!(e <= 2e-6))
                        fail_msg("%s %s n=%lld kind=%d: %.9g, want %.9g (error %.3g of sum|wx|)", DOT_F32[f].name,
                                 quant_type_name(tc->type), (long long)n, kind, r, expect, e);
                    worst[f] = fmax(worst[f], e);
                }
            }
    }
    print_message("  largest error of sum|w*x|: dot_f32 %.3g, dot_f32_generic %.3g\n", worst[0], worst[1]);
    free(x);
    free(w);
    free(q);
}

/* Non-finite scales reach the result as in quant_dot_ref: a NaN scale (or
 * min) anywhere in the row gives NaN, an infinite one a non-finite result
 * (ref: NaN from inf*0 where a quant is 0; f32: inf or NaN), a zero scale
 * block adds nothing. */
static void test_dot_f32_special(void **state)
{
    (void)state;
    uint8_t q[8 * 292];
    float x[8 * 256], w[8 * 256];
    uint64_t st = 4711;
    for (size_t c = 0; c < N_CASES; c++) {
        const type_case *tc = &CASES[c];
        int offs[2];
        const int n_offs = scale_offsets(tc->type, offs);
        if (tc->block_elems == 1 || n_offs == 0)
            continue;
        const int64_t nb = tc->block_elems == 256 ? 3 : 8, n = nb * tc->block_elems;
        tu_fill_random(x, (size_t)n, &st, -1, 1);
        for (int field = 0; field < n_offs; field++)
            for (int what = 0; what < 3; what++) { /* NaN, +inf, 0 */
                if (tc->type == XF_TYPE_Q8_1 && field == 1)
                    continue; /* Q8_1's second field is the sum, unused by the dot */
                random_blocks(tc->type, q, n, &st);
                uint8_t *b = q + (nb / 2) * tc->block_bytes; /* a block in the middle */
                if (tc->type == XF_TYPE_Q8_K) {
                    const float v = what == 0 ? NAN : what == 1 ? INFINITY : 0.0f;
                    memcpy(b, &v, 4);
                } else {
                    const uint16_t h = what == 0 ? 0x7e00u : what == 1 ? 0x7c00u : 0x0000u;
                    memcpy(b + offs[field], &h, 2);
                }
                const double ref = quant_dot_ref(tc->type, q, x, n);
                for (size_t f = 0; f < sizeof DOT_F32 / sizeof DOT_F32[0]; f++) {
                    const float r = DOT_F32[f].fn(tc->type, q, x, n);
                    const char *tn = quant_type_name(tc->type);
                    if (what == 0) {
                        if (!isnan(r))
                            fail_msg("%s %s: NaN in field %d gave %.9g", DOT_F32[f].name, tn, field, (double)r);
                    } else if (what == 1) {
                        if (isfinite(r) || isfinite(ref))
                            fail_msg("%s %s: inf in field %d gave %.9g (ref %.9g)", DOT_F32[f].name, tn, field,
                                     (double)r, ref);
                    } else {
                        quant_dequant_row(tc->type, q, w, n);
                        double mag = 0;
                        for (int64_t i = 0; i < n; i++)
                            mag += fabs((double)w[i] * x[i]);
                        if (!(fabs(r - ref) <= 2e-6 * mag))
                            fail_msg("%s %s: zero field %d gave %.9g, ref %.9g", DOT_F32[f].name, tn, field,
                                     (double)r, ref);
                    }
                }
            }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dot_f32_exact),
        cmocka_unit_test(test_dot_f32_rows),
        cmocka_unit_test(test_dot_f32_special),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
