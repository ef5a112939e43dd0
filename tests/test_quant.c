/* test_quant: element types and block formats against independent code:
 * sizes, dequantization, quantization and the dot products.
 *
 * Fixtures (tests/fixtures/quant/, made by scripts/make_quant_fixtures.py):
 * random blocks of every type with their values dequantized by the gguf
 * Python package (numpy for Q8_1/Q8_K, which gguf cannot decode) and gguf's
 * quantizations of fixed rows. The fused CPU dots: test_quant_dot; F16 and
 * BF16 conversions: test_quant_half. */
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

/* ================================================================ tests */

/* 4. sizes: the layouts of ggml-common.h, multiples, overflow, unknown ids */
static void test_row_bytes(void **state)
{
    (void)state;
    uint64_t b = 12345;
    for (size_t c = 0; c < N_CASES; c++) {
        const type_case *tc = &CASES[c];
        const quant_type_info *t = quant_type_get(tc->type);
        assert_non_null(t);
        assert_true(t->supported);
        assert_int_equal(t->block_elems, tc->block_elems);
        assert_int_equal(t->block_bytes, tc->block_bytes);
        assert_true(quant_row_bytes(tc->type, 0, &b));
        assert_int_equal(b, 0);
        assert_true(quant_row_bytes(tc->type, tc->block_elems, &b));
        assert_int_equal(b, tc->block_bytes);
        assert_true(quant_row_bytes(tc->type, 4096LL * tc->block_elems, &b));
        assert_int_equal(b, 4096ULL * (uint64_t)tc->block_bytes);
        assert_false(quant_row_bytes(tc->type, -tc->block_elems, &b));
        if (tc->block_elems > 1) {
            assert_false(quant_row_bytes(tc->type, tc->block_elems + 1, &b));
            assert_false(quant_row_bytes(tc->type, tc->block_elems - 1, &b));
            assert_false(quant_row_bytes(tc->type, 1, &b));
        }
        /* byte counts must fit int64: the last row length that does, and
         * the next block (where that length itself still fits int64) */
        const int64_t be = tc->block_elems, bb = tc->block_bytes;
        if (INT64_MAX / bb <= INT64_MAX / be) {
            int64_t n_last = INT64_MAX / bb * be;
            assert_true(quant_row_bytes(tc->type, n_last, &b));
            assert_int_equal(b, (uint64_t)(INT64_MAX / bb) * (uint64_t)bb);
            if (n_last <= INT64_MAX - be)
                assert_false(quant_row_bytes(tc->type, n_last + be, &b));
        } else { /* fewer bytes than elements: every whole-block row fits */
            int64_t big = INT64_MAX - INT64_MAX % be;
            assert_true(quant_row_bytes(tc->type, big, &b));
            assert_int_equal(b, (uint64_t)(big / be) * (uint64_t)bb);
        }
    }
    assert_string_equal(quant_type_name(XF_TYPE_Q4_K), "Q4_K");
    assert_string_equal(quant_type_name(XF_TYPE_BF16), "BF16");
    assert_string_equal(quant_type_name(XF_TYPE_Q8_K), "Q8_K");
    assert_true(quant_row_bytes(XF_TYPE_Q4_K, 512, &b));
    assert_int_equal(b, 288);
    assert_true(quant_row_bytes(XF_TYPE_F32, 3, &b));
    assert_int_equal(b, 12);
    assert_false(quant_row_bytes(XF_TYPE_Q4_0, 33, &b));
    assert_false(quant_row_bytes(XF_TYPE_Q6_K, 255, &b));
    assert_false(quant_row_bytes(XF_TYPE_Q6_K, 32, &b));
    /* F32: n*4 wraps uint64 */
    assert_false(quant_row_bytes(XF_TYPE_F32, INT64_MAX / 2 + 1, &b));
    assert_false(quant_row_bytes(XF_TYPE_F32, INT64_MAX, &b));
    /* the largest F16 row that fits int64 bytes and the first that does not */
    assert_true(quant_row_bytes(XF_TYPE_F16, INT64_MAX / 2, &b));
    assert_int_equal(b, (uint64_t)(INT64_MAX / 2) * 2);
    assert_false(quant_row_bytes(XF_TYPE_F16, INT64_MAX / 2 + 1, &b));
    /* unknown ids: the removed Q4_2/Q4_3, the removed repacked ids, out of range */
    static const int unknown[] = {-1, 4, 5, 31, 32, 33, 36, 37, 38, XF_TYPE_COUNT, 1000, INT32_MIN};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        assert_null(quant_type_get(unknown[i]));
        assert_string_equal(quant_type_name(unknown[i]), "?");
        b = 777;
        assert_false(quant_row_bytes(unknown[i], 256, &b));
        assert_int_equal(b, 777); /* untouched on failure */
    }
    /* known but not decodable: sizes still known so a GGUF reader can skip them */
    const quant_type_info *iq = quant_type_get(23);
    assert_non_null(iq);
    assert_string_equal(iq->name, "IQ4_XS");
    assert_false(iq->supported);
    assert_true(quant_row_bytes(23, 512, &b));
    assert_int_equal(b, 272);
    float out[256];
    uint8_t junk[136] = {0};
    tu_poison(out, 256);
    out[0] = 1;
    quant_dequant_row(23, junk, out, 256);
    assert_true(isnan(out[0])); /* unsupported: NaN rather than silent garbage */
    assert_true(isnan(quant_dot_ref(23, junk, out, 256)));
    assert_true(isnan(kern_cpu_quant_dot(23, junk, out, 256)));
    assert_int_equal(quant_quantize_row(23, out, junk, 256), 0);
    /* a row that is not a whole number of blocks is refused everywhere */
    float x[64];
    uint8_t q[64];
    uint64_t st = 7;
    tu_fill_random(x, 64, &st, -1, 1);
    assert_int_equal(quant_quantize_row(XF_TYPE_Q8_0, x, q, 31), 0);
    assert_true(isnan(quant_dot_ref(XF_TYPE_Q8_0, q, x, 31)));
    assert_true(isnan(kern_cpu_quant_dot(XF_TYPE_Q8_0, q, x, 31)));
    quant_dequant_row(XF_TYPE_Q8_0, q, x, 31);
    for (int i = 0; i < 31; i++)
        assert_true(isnan(x[i]));
}

/* 1. dequantization of random blocks equals the gguf package's, bit for bit.
 * Exact equality is right: gguf (numpy float32) and ggml apply the same
 * float32 operations in the same order (e.g. Q4_K: (d*sc)*q - dmin*m). */
static void test_dequant_fixtures(void **state)
{
    (void)state;
    for (size_t c = 0; c < N_CASES; c++) {
        const type_case *tc = &CASES[c];
        fixture f;
        fx_load(&f, tc->file);
        size_t n_type, n_src, n_blocks, n_vals;
        const uint8_t *ty = fx_get(&f, "type", &n_type);
        const uint8_t *src = fx_get(&f, "source", &n_src);
        const uint8_t *blocks = fx_get(&f, "blocks", &n_blocks);
        const uint8_t *vals = fx_get(&f, "values", &n_vals);
        uint32_t type;
        assert_int_equal(n_type, 4);
        memcpy(&type, ty, 4);
        assert_int_equal(type, tc->type);
        assert_true(n_blocks > 0 && n_blocks % (size_t)tc->block_bytes == 0);
        const int64_t n = (int64_t)(n_blocks / (size_t)tc->block_bytes) * tc->block_elems;
        assert_int_equal(n_vals, (size_t)n * 4);
        uint64_t bytes;
        assert_true(quant_row_bytes(tc->type, n, &bytes));
        assert_int_equal(bytes, n_blocks);

        /* unaligned copy: blocks sit at any offset of an mmap'd file */
        uint8_t *una = malloc(n_blocks + 1);
        float *out = malloc(((size_t)n + 8) * sizeof(float)); /* [n + 8]: 8 guard values */
        float *want = malloc((size_t)n * sizeof(float));      /* [n] */
        assert_non_null(una);
        assert_non_null(out);
        assert_non_null(want);
        memcpy(una + 1, blocks, n_blocks);
        memcpy(want, vals, (size_t)n * 4);
        for (int pass = 0; pass < 2; pass++) {
            tu_poison(out, (size_t)n + 8);
            quant_dequant_row(tc->type, pass ? (const void *)(una + 1) : (const void *)blocks, out, n);
            for (int64_t i = 0; i < n; i++) {
                if (f2u(out[i]) != f2u(want[i]))
                    fail_msg("%s (%.*s): element %lld of block %lld: got %.9g (0x%08x), want %.9g (0x%08x)",
                             quant_type_name(tc->type), (int)n_src, (const char *)src, (long long)i,
                             (long long)(i / tc->block_elems), out[i], f2u(out[i]), want[i], f2u(want[i]));
            }
            for (int i = 0; i < 8; i++)
                assert_true(isnan(out[n + i])); /* nothing written past the row */
        }

        /* the reference dot on the same blocks: f64 sum in row order */
        {
            float *x = malloc((size_t)n * sizeof(float)); /* [n] */
            assert_non_null(x);
            uint64_t st = 1234 + c;
            tu_fill_random(x, (size_t)n, &st, -1, 1);
            double expect = 0, mag = 0;
            bool finite = true;
            for (int64_t i = 0; i < n; i++) {
                if (!isfinite(want[i]))
                    finite = false;
                expect += (double)want[i] * (double)x[i];
                mag += fabs((double)want[i] * (double)x[i]);
            }
            if (finite) { /* the F32 fixture holds inf/NaN on purpose */
                double r = quant_dot_ref(tc->type, una + 1, x, n);
                if (!(fabs(r - expect) <= 1e-12 * mag))
                    fail_msg("%s: dot_ref %.17g, want %.17g", quant_type_name(tc->type), r, expect);
                double r32 = kern_cpu_quant_dot(tc->type, una + 1, x, n);
                if (!(fabs(r32 - expect) <= 2e-6 * mag + 1e-30))
                    fail_msg("%s: dot_f32 %.9g, want %.9g (sum|wx| %.3g)", quant_type_name(tc->type), r32,
                             expect, mag);
            }
            free(x);
        }
        free(una);
        free(out);
        free(want);
        fx_free(&f);
    }
}

/* 2a. the quantizers that follow ggml's *_ref formulas reproduce gguf's
 * quantizations byte for byte (gguf states its Q8_0 is bit-exact with ggml;
 * its Q4_0/Q4_1/Q5_0/Q5_1 use the same float32 formulas). */
static void test_quantize_vs_gguf(void **state)
{
    (void)state;
    static const int types[] = {XF_TYPE_Q4_0, XF_TYPE_Q4_1, XF_TYPE_Q5_0, XF_TYPE_Q5_1, XF_TYPE_Q8_0};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const type_case *tc = NULL;
        for (size_t c = 0; c < N_CASES; c++)
            if (CASES[c].type == types[k])
                tc = &CASES[c];
        assert_non_null(tc);
        fixture f;
        fx_load(&f, tc->file);
        size_t n_in, n_q;
        const uint8_t *in = fx_get(&f, "q_input", &n_in);
        const uint8_t *want = fx_get(&f, "q_blocks", &n_q);
        const int64_t n = (int64_t)(n_in / 4);
        float *x = malloc(n_in); /* [n] */
        uint8_t *got = malloc(n_q + 16);
        assert_non_null(x);
        assert_non_null(got);
        memcpy(x, in, n_in);
        memset(got, 0xa5, n_q + 16);
        assert_int_equal(quant_quantize_row(tc->type, x, got, n), n_q);
        for (size_t i = 0; i < n_q; i++) {
            if (got[i] != want[i])
                fail_msg("%s: block %zu byte %zu: got 0x%02x, gguf 0x%02x", quant_type_name(tc->type),
                         i / (size_t)tc->block_bytes, i % (size_t)tc->block_bytes, got[i], want[i]);
        }
        for (int i = 0; i < 16; i++)
            assert_int_equal(got[n_q + i], 0xa5); /* nothing written past the row */
        free(x);
        free(got);
        fx_free(&f);
    }
}

/* 2b. quantize -> dequantize round trip within a bound derived per format.
 * bound[i] for each element of one unit (a block; 32 elements for F16/BF16).
 * Notation: u = 2^-11, the relative error of rounding to f16 (to nearest);
 * rounding up (quant.c's k-quant super-scales) errs by at most 2u. */
static void roundtrip_bounds(int type, const float *x, int be, double *bound)
{
    const double u = 1.0 / 2048;
    double amax = 0, mn = INFINITY, mx = -INFINITY;
    for (int i = 0; i < be; i++) {
        amax = fmax(amax, fabs((double)x[i]));
        mn = fmin(mn, x[i]);
        mx = fmax(mx, x[i]);
    }
    double b = 0; /* one bound for the whole unit, where the format has one */
    switch (type) {
    case XF_TYPE_F32:
        b = 0; /* exact */
        break;
    case XF_TYPE_F16:
        b = amax * u; /* half an ulp; the inputs are in the normal range */
        break;
    case XF_TYPE_BF16:
        b = amax / 256;
        break;
    case XF_TYPE_Q8_0:
    case XF_TYPE_Q8_1: {
        /* d = amax/127, q = round(x/d): |x - q*d| <= d/2; storing d as f16
         * adds |q|*|d - f16(d)| <= 127*d*u */
        double d = amax / 127;
        b = d / 2 + 127 * d * u;
        break;
    }
    case XF_TYPE_Q4_0:
    case XF_TYPE_Q5_0: {
        /* d = -max/2^(k-1) (max: the value of largest magnitude): the quant
         * round(x/d) + 2^(k-1) is clipped at 2^k - 1, so the values opposite
         * max, beyond -max + d/2, lose up to a full step d; f16(d) adds
         * 2^(k-1)*d*u */
        double half = type == XF_TYPE_Q4_0 ? 8 : 16;
        double d = amax / half;
        b = d + half * d * u;
        break;
    }
    case XF_TYPE_Q4_1:
    case XF_TYPE_Q5_1: {
        /* d = (max-min)/nmax, no clipping: d/2, plus nmax*d*u from f16(d) and
         * |min|*u from f16(min) */
        double nmax = type == XF_TYPE_Q4_1 ? 15 : 31;
        double d = (mx - mn) / nmax;
        b = d / 2 + nmax * d * u + fabs(mn) * u;
        break;
    }
    case XF_TYPE_Q8_K:
        b = amax / 127 / 2; /* d = 1/iscale stays f32: half a step */
        break;
    case XF_TYPE_Q2_K:
    case XF_TYPE_Q4_K:
    case XF_TYPE_Q5_K: {
        /* quant.c's asymmetric method, per sub-block j: span_j =
         * max(x,0) - min(x,0), R = max span_j, c = (1+2u)/smax.  The offset
         * M_j = dmin*lm_j <= -min(x,0) + dmin with dmin <= R*c; the step
         * d*ls_j <= s_j + d with s_j = (max x + M_j)/nmax <= (span_j + R*c)/nmax
         * and d <= c * max s <= c * R(1+c)/nmax.  Nothing clips (both are
         * rounded up), so the error is half a step. */
        const int sub = type == XF_TYPE_Q2_K ? 16 : 32;
        const double nmax = type == XF_TYPE_Q2_K ? 3 : type == XF_TYPE_Q4_K ? 15 : 31;
        const double c = (1 + 2 * u) / (type == XF_TYPE_Q2_K ? 15 : 63);
        double span[16], R = 0;
        for (int j = 0; j < be / sub; j++) {
            double lo = 0, hi = 0;
            for (int i = 0; i < sub; i++) {
                lo = fmin(lo, x[sub * j + i]);
                hi = fmax(hi, x[sub * j + i]);
            }
            span[j] = hi - lo;
            R = fmax(R, span[j]);
        }
        for (int i = 0; i < be; i++)
            bound[i] = ((span[i / sub] + R * c) / nmax + c * R * (1 + c) / nmax) / 2;
        goto margin;
    }
    case XF_TYPE_Q3_K:
    case XF_TYPE_Q6_K: {
        /* symmetric, per 16: step_j = d*sc_j <= a_j/qmax + d (a_j the
         * sub-block's absmax), d <= (amax/qmax)*c; |x|/step <= qmax never clips */
        const double qmax = type == XF_TYPE_Q3_K ? 3 : 31;
        const double c = (1 + 2 * u) / (type == XF_TYPE_Q3_K ? 31 : 127);
        for (int j = 0; j < be / 16; j++) {
            double a = 0;
            for (int i = 0; i < 16; i++)
                a = fmax(a, fabs((double)x[16 * j + i]));
            for (int i = 0; i < 16; i++)
                bound[16 * j + i] = (a + amax * c) / qmax / 2;
        }
        goto margin;
    }
    default:
        fail_msg("no bound for type %d", type);
    }
    for (int i = 0; i < be; i++)
        bound[i] = b;
margin:
    /* float rounding of the scale products and of the dequantized value
     * itself (2^-24 relative): a small relative and absolute margin */
    if (type != XF_TYPE_F32)
        for (int i = 0; i < be; i++)
            bound[i] = bound[i] * (1 + 1e-5) + amax * 1e-6;
}

static void test_roundtrip(void **state)
{
    (void)state;
    enum { N = 4096 };
    float *x = malloc(N * sizeof(float));    /* [N] input row */
    float *y = malloc(N * sizeof(float));    /* [N] dequantized */
    double *bd = malloc(N * sizeof(double)); /* [N] error bound per element */
    uint8_t *q = malloc(N * 4 + 64);         /* the quantized row */
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(bd);
    assert_non_null(q);
    for (size_t c = 0; c < N_CASES; c++) {
        const type_case *tc = &CASES[c];
        const int be = tc->block_elems == 1 ? 32 : tc->block_elems; /* the unit a bound is taken over */
        uint64_t st = 99 + c;
        tu_fill_random(x, N, &st, -1, 1);
        /* vary the magnitude per 16 elements (0.25x..4x): sub-blocks of one
         * super-block then get different scales, which exercises the scale
         * packing; small enough a range that f16 scales stay normal */
        for (int b = 0; b < N / 16; b++) {
            float m = powf(2.0f, tu_rand_float(&st, -2, 2));
            for (int i = 0; i < 16; i++)
                x[b * 16 + i] *= m;
        }
        uint64_t bytes;
        assert_true(quant_row_bytes(tc->type, N, &bytes));
        assert_int_equal(quant_quantize_row(tc->type, x, q, N), bytes);
        tu_poison(y, N);
        quant_dequant_row(tc->type, q, y, N);
        for (int b = 0; b < N / be; b++)
            roundtrip_bounds(tc->type, x + b * be, be, bd + b * be);
        double worst = 0; /* largest error / bound */
        double sq = 0, sx = 0;
        for (int i = 0; i < N; i++) {
            double e = fabs((double)y[i] - (double)x[i]);
            sq += e * e;
            sx += (double)x[i] * x[i];
            if (!(e <= bd[i]))
                fail_msg("%s: element %d: x %.9g -> %.9g, error %.3g > bound %.3g", quant_type_name(tc->type), i,
                         x[i], y[i], e, bd[i]);
            if (bd[i] > 0)
                worst = fmax(worst, e / bd[i]);
        }
        /* the bound must not be vacuous either: some element comes close */
        if (tc->type != XF_TYPE_F32 && !(worst > 0.3))
            fail_msg("%s: largest error only %.3f of the bound: bound too loose?", quant_type_name(tc->type), worst);
        print_message("  %-5s roundtrip: NMSE %.3g, max error %.4f of bound\n", quant_type_name(tc->type),
                      sq / sx, worst);
    }
    free(x);
    free(y);
    free(bd);
    free(q);
}

/* 3. the dot products agree with dequantize-then-dot, for quantized rows and
 * for random blocks that reach every quant value */
static void test_dot(void **state)
{
    (void)state;
    static const int64_t lens_blocks[] = {1, 3, 16};
    static const int64_t lens_elems[] = {1, 7, 15, 16, 17, 255, 256, 257, 1000, 4096};
    float *x = malloc(4096 * 32 * sizeof(float)); /* [n] activations */
    float *w = malloc(4096 * 32 * sizeof(float)); /* [n] dequantized weights */
    uint8_t *q = malloc(4096 * 32 * 4 + 1);       /* the row, +1 for misalignment */
    assert_non_null(x);
    assert_non_null(w);
    assert_non_null(q);
    uint64_t st = 4242;
    for (size_t c = 0; c < N_CASES; c++) {
        const type_case *tc = &CASES[c];
        const bool elem = tc->block_elems == 1;
        const size_t n_lens = elem ? sizeof lens_elems / sizeof lens_elems[0] : sizeof lens_blocks / sizeof lens_blocks[0];
        for (size_t li = 0; li < n_lens; li++) {
            int64_t n = elem ? lens_elems[li] : lens_blocks[li] * tc->block_elems;
            for (int kind = 0; kind < 2; kind++) {
                uint8_t *row = q + 1; /* misaligned on purpose */
                tu_fill_random(x, (size_t)n, &st, -1, 1);
                if (kind == 0) {
                    tu_fill_random(w, (size_t)n, &st, -1, 1);
                    quant_quantize_row(tc->type, w, row, n);
                } else {
                    random_blocks(tc->type, row, n, &st);
                }
                tu_poison(w, (size_t)n);
                quant_dequant_row(tc->type, row, w, n);
                double expect = 0, mag = 0;
                for (int64_t i = 0; i < n; i++) {
                    expect += (double)w[i] * (double)x[i];
                    mag += fabs((double)w[i] * (double)x[i]);
                }
                assert_true(isfinite(expect) && mag > 0);
                double r = quant_dot_ref(tc->type, row, x, n);
                if (!(fabs(r - expect) <= 1e-12 * mag))
                    fail_msg("%s n=%lld kind=%d: dot_ref %.17g, want %.17g", quant_type_name(tc->type),
                             (long long)n, kind, r, expect);
                /* f32 accumulation of at most 4096 terms in 16 lanes: the
                 * worst case is ~(n/16 + 8)*2^-24*sum|wx| = 1.6e-5; random
                 * signs give ~1e-8 (measured up to n = 16384), so 2e-6 is a
                 * wide margin that still catches any wrong weight */
                double r32 = kern_cpu_quant_dot(tc->type, row, x, n);
                if (!(fabs(r32 - expect) <= 2e-6 * mag))
                    fail_msg("%s n=%lld kind=%d: dot_f32 %.9g, want %.9g (rel to sum|wx| %.3g)",
                             quant_type_name(tc->type), (long long)n, kind, r32, expect,
                             fabs(r32 - expect) / mag);
            }
        }
    }
    free(x);
    free(w);
    free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row_bytes),
        cmocka_unit_test(test_dequant_fixtures),
        cmocka_unit_test(test_quantize_vs_gguf),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_dot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
