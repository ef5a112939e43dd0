/* test_quant_half: the F16 and BF16 element conversions both ways, against
 * numpy's (tests/fixtures/quant/halfs.bin, made by
 * scripts/make_quant_fixtures.py) and against exact arithmetic,
 * exhaustively. Numbering as in test_quant.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "quant_util.h"
#include "quantize.h"
#include "testutil.h"

/* 5a. F16 -> F32: all 65536 halves against numpy, bit for bit, and against
 * the definition: (-1)^s * 2^(e-15) * (1 + m/1024), subnormals 2^-14 * m/1024 */
static void test_f16_to_f32_all(void **state)
{
    (void)state;
    fixture f;
    fx_load(&f, "halfs.bin");
    size_t n;
    const uint8_t *tab = fx_get(&f, "f16_to_f32", &n);
    assert_int_equal(n, 65536 * 4);
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t want;
        memcpy(&want, tab + 4 * h, 4);
        float got = xf_f16_to_f32((uint16_t)h);
        if (f2u(got) != want)
            fail_msg("f16 0x%04x: got 0x%08x, numpy 0x%08x", h, f2u(got), want);
        int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
        if (e == 31) {
            assert_true(m ? isnan(got) : isinf(got));
            assert_int_equal(signbit(got) != 0, s);
            if (m) /* payload kept: a NaN converts back to the same half */
                assert_int_equal(f2u(got) & 0x7fffff, (uint32_t)m << 13);
            continue;
        }
        double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
        if (s)
            v = -v;
        assert_true((double)got == v);
        assert_int_equal(signbit(got) != 0, s); /* -0 stays -0 */
    }
    fx_free(&f);
}

/* 5b. F32 -> F16 on the tricky values against numpy; F32 -> BF16 against gguf
 * (ggml's rounding); includes NaN payloads: numpy keeps the top payload bits */
static void test_f32_to_half_fixture(void **state)
{
    (void)state;
    fixture f;
    fx_load(&f, "halfs.bin");
    size_t n_in, n_h, n_b;
    const uint8_t *in = fx_get(&f, "f32_in", &n_in);
    const uint8_t *h16 = fx_get(&f, "f32_to_f16", &n_h);
    const uint8_t *hb = fx_get(&f, "f32_to_bf16", &n_b);
    const size_t n = n_in / 4;
    assert_true(n > 1000);
    assert_int_equal(n_h, 2 * n);
    assert_int_equal(n_b, 2 * n);
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        uint16_t w16, wb;
        memcpy(&u, in + 4 * i, 4);
        memcpy(&w16, h16 + 2 * i, 2);
        memcpy(&wb, hb + 2 * i, 2);
        uint16_t g16 = xf_f32_to_f16(u2f(u));
        uint16_t gb = xf_f32_to_bf16(u2f(u));
        if (g16 != w16)
            fail_msg("f32 0x%08x (%.9g) -> f16: got 0x%04x, numpy 0x%04x", u, u2f(u), g16, w16);
        if (gb != wb)
            fail_msg("f32 0x%08x (%.9g) -> bf16: got 0x%04x, gguf 0x%04x", u, u2f(u), gb, wb);
    }
    fx_free(&f);
}

/* 5c. F32 -> F16 rounding by exact arithmetic, exhaustively over the halves:
 * every half round-trips, every midpoint between neighbours goes to the even
 * one, and one f32 ulp either side of it goes to the nearer one */
static void test_f32_to_f16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        /* the round trip is exact for every pattern, NaN payloads included */
        uint16_t back = xf_f32_to_f16(xf_f16_to_f32((uint16_t)h));
        if (back != h)
            fail_msg("f16 0x%04x -> f32 -> f16 gives 0x%04x", h, back);
    }
    for (uint32_t h = 0; h < 0x7c00; h++) {
        for (uint32_t sign = 0; sign <= 0x8000; sign += 0x8000) {
            double lo = xf_f16_to_f32((uint16_t)h);
            /* the next half up; above 65504 it is 65536, which rounds to inf */
            double hi = h == 0x7bff ? 65536.0 : (double)xf_f16_to_f32((uint16_t)(h + 1));
            uint16_t up = (uint16_t)(h + 1); /* 0x7c00 is inf */
            float mid = (float)((lo + hi) / 2); /* exact: 12 significant bits */
            assert_true((double)mid == (lo + hi) / 2);
            if (sign)
                mid = -mid;
            uint16_t even = (h & 1) ? up : (uint16_t)h;
            uint16_t g = xf_f32_to_f16(mid);
            if (g != (even | sign))
                fail_msg("midpoint %.9g above 0x%04x: got 0x%04x, want 0x%04x", mid, h | sign, g, even | sign);
            float below = nextafterf(mid, 0), above = nextafterf(mid, sign ? -INFINITY : INFINITY);
            assert_int_equal(xf_f32_to_f16(below), h | sign);
            assert_int_equal(xf_f32_to_f16(above), up | sign);
        }
    }
    /* specials */
    assert_int_equal(xf_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(xf_f32_to_f16(-INFINITY), 0xfc00);
    assert_int_equal(xf_f32_to_f16(1e30f), 0x7c00);
    assert_int_equal(xf_f32_to_f16(-65520.0f), 0xfc00);
    assert_int_equal(xf_f32_to_f16(65519.99f), 0x7bff);
    assert_int_equal(xf_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(xf_f32_to_f16(1e-30f), 0x0000);
    assert_int_equal(xf_f32_to_f16(ldexpf(1, -25)), 0x0000);                /* tie -> even 0 */
    assert_int_equal(xf_f32_to_f16(nextafterf(ldexpf(1, -25), 1)), 0x0001); /* just above */
    assert_int_equal(xf_f32_to_f16(ldexpf(3, -25)), 0x0002);                /* tie 1|2 -> 2 */
    uint16_t qn = xf_f32_to_f16(NAN);
    assert_true((qn & 0x7c00) == 0x7c00 && (qn & 0x3ff) != 0);
    assert_int_equal(xf_f32_to_f16(u2f(0x7f800001)) & 0x7fff, 0x7c01); /* payload lost: still NaN */
    assert_int_equal(xf_f32_to_f16(u2f(0xff800001)), 0xfc01);
}

static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

/* 5d. BF16 both ways over all 65536 patterns */
static void test_bf16_all(void **state)
{
    (void)state;
    fixture f;
    fx_load(&f, "halfs.bin");
    size_t n;
    const uint8_t *fnv = fx_get(&f, "bf16_to_f32_fnv", &n);
    assert_int_equal(n, 8);
    uint64_t want_hash, hash = 0xcbf29ce484222325ULL;
    memcpy(&want_hash, fnv, 8);
    for (uint32_t h = 0; h < 65536; h++) {
        float v = xf_bf16_to_f32((uint16_t)h);
        uint32_t u = f2u(v);
        uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
        hash = fnv1a(hash, le, 4);
        /* by definition: the f32 whose top half is h */
        int s = h >> 15, e = (h >> 7) & 255, m = h & 127;
        if (e == 255) {
            assert_true(m ? isnan(v) : isinf(v));
        } else {
            double x = e ? ldexp(128 + m, e - 134) : ldexp(m, -133);
            assert_true((double)v == (s ? -x : x));
        }
        assert_int_equal(signbit(v) != 0, s);
        /* back: exact, except that a signalling NaN comes back quiet */
        uint16_t back = xf_f32_to_bf16(v);
        if (e == 255 && m)
            assert_int_equal(back, h | 0x40);
        else
            assert_int_equal(back, h);
    }
    if (hash != want_hash)
        fail_msg("bf16 -> f32 over all patterns differs from gguf (hash %016llx, want %016llx)",
                 (unsigned long long)hash, (unsigned long long)want_hash);
    /* ties to even, and overflow to inf */
    assert_int_equal(xf_f32_to_bf16(u2f(0x3f808000)), 0x3f80);
    assert_int_equal(xf_f32_to_bf16(u2f(0x3f818000)), 0x3f82);
    assert_int_equal(xf_f32_to_bf16(u2f(0x3f808001)), 0x3f81);
    assert_int_equal(xf_f32_to_bf16(u2f(0x7f7fffff)), 0x7f80);
    assert_int_equal(xf_f32_to_bf16(u2f(0xff7fffff)), 0xff80);
    assert_int_equal(xf_f32_to_bf16(u2f(0x7f800001)), 0x7fc0);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_to_f32_all),
        cmocka_unit_test(test_f32_to_half_fixture),
        cmocka_unit_test(test_f32_to_f16_exhaustive),
        cmocka_unit_test(test_bf16_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
