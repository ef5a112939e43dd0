/* The CPU kernels with MXFP4 weights: every CPU MATMUL variant (ref: f64
 * over quant_dequant_row; opt: the fused kern_cpu_quant_dot for one token,
 * dequantized chunks for prefill) and both EMBD variants against a float64
 * product written here over the dequantized weights. Shapes are not
 * multiples of the tiles (k = 32..4864 in whole 32-element blocks, odd m and
 * n), inputs random and never zero, outputs poisoned with NaN first; no pool
 * and pools of 1 and 2 threads. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels.h"
#include "quant.h"
#include "quantize.h"
#include "testutil.h"

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* [m, k] MXFP4 weights: quantized random rows, or (raw) random bytes with
 * scales 2^-4 .. 2^4, so that every code appears */
static uint8_t *make_w(int64_t m, int64_t k, int raw, uint64_t *rng)
{
    uint64_t rb;
    assert_true(quant_row_bytes(XF_TYPE_MXFP4, k, &rb));
    uint8_t *w = xmalloc((size_t)(rb * (uint64_t)m));
    float *src = xmalloc((size_t)k * sizeof *src);
    for (int64_t r = 0; r < m; r++) {
        uint8_t *row = w + (uint64_t)r * rb;
        if (raw) {
            for (uint64_t i = 0; i < rb; i++)
                row[i] = (uint8_t)tu_rand_u64(rng);
            for (int64_t b = 0; b < k / 32; b++)
                row[17 * b] = (uint8_t)(124 + tu_rand_u64(rng) % 9);
        } else {
            tu_fill_random(src, (size_t)k, rng, -2, 2);
            assert_int_equal(quant_quantize_row(XF_TYPE_MXFP4, src, row, k), rb);
        }
    }
    free(src);
    return w;
}

/* y[i,r] = sum_j x[i,j] * deq(w)[r,j] (+ b[r]) in f64, and mag[i,r] = the
 * sum of |terms| that bounds the f32 rounding of any order of summation */
static void ref_product(const uint8_t *w, const float *x, const float *b, int64_t n, int64_t k, int64_t m,
                        double *y, double *mag)
{
    uint64_t rb;
    quant_row_bytes(XF_TYPE_MXFP4, k, &rb);
    float *row = xmalloc((size_t)k * sizeof *row);
    for (int64_t r = 0; r < m; r++) {
        quant_dequant_row(XF_TYPE_MXFP4, w + (uint64_t)r * rb, row, k);
        for (int64_t i = 0; i < n; i++) {
            double s = b ? b[r] : 0.0, a = b ? fabs(b[r]) : 0.0;
            for (int64_t j = 0; j < k; j++) {
                s += (double)x[i * k + j] * row[j];
                a += fabs((double)x[i * k + j] * row[j]);
            }
            y[i * m + r] = s;
            mag[i * m + r] = a;
        }
    }
    free(row);
}

static void test_matmul(void **state)
{
    (void)state;
    const struct {
        int64_t n, k, m;
    } shapes[] = {
        {1, 32, 1},   {1, 96, 37},   {2, 64, 17},   {3, 160, 33},   {5, 288, 16},  {7, 896, 35},
        {17, 512, 33}, {1, 896, 67}, {1, 4864, 21}, {33, 192, 70},  {4, 1024, 19},
    };
    const char *variants[] = {"ref", "opt"};
    kern_pool *pools[3] = {NULL, kern_pool_new(1), kern_pool_new(2)};
    assert_non_null(pools[1]);
    assert_non_null(pools[2]);
    uint64_t rng = 0x3939ULL;
    int ran = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int raw = 0; raw < 2; raw++) {
            int64_t n = shapes[s].n, k = shapes[s].k, m = shapes[s].m;
            uint8_t *w = make_w(m, k, raw, &rng);
            float *x = xmalloc((size_t)(n * k) * sizeof *x), *b = xmalloc((size_t)m * sizeof *b);
            tu_fill_random(x, (size_t)(n * k), &rng, -1, 1);
            tu_fill_random(b, (size_t)m, &rng, -1, 1);
            double *yr = xmalloc((size_t)(n * m) * sizeof *yr), *mag = xmalloc((size_t)(n * m) * sizeof *mag);
            int withb = (int)(s % 2);
            ref_product(w, x, withb ? b : NULL, n, k, m, yr, mag);
            float *y = xmalloc((size_t)(n * m) * sizeof *y);
            for (size_t v = 0; v < 2; v++)
                for (int p = 0; p < 3; p++) {
                    const kern_variant *kv = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, variants[v]);
                    assert_non_null(kv);
                    kern_ctx c = {.n_threads = p == 0 ? 1 : p, .pool = pools[p]};
                    kern_args a = {.x = x, .w = w, .w_type = XF_TYPE_MXFP4, .b = withb ? b : NULL, .y = y,
                                   .n = n, .k = k, .m = m};
                    tu_poison(y, (size_t)(n * m));
                    assert_int_equal(kv->fn(&c, &a), 0);
                    for (int64_t i = 0; i < n * m; i++) {
                        /* ref: f64 sums rounded once; opt: f32 sums of at
                         * most 4864 terms (see test_quant.c test_dot) */
                        double tol = v == 0 ? 1e-7 * fabs(yr[i]) + 1e-30 : 2e-6 * mag[i];
                        if (!(fabs((double)y[i] - yr[i]) <= tol))
                            fail_msg("matmul %s MXFP4 n=%lld k=%lld m=%lld raw=%d pool=%d: y[%lld] = %.9g, f64 %.9g",
                                     variants[v], (long long)n, (long long)k, (long long)m, raw, p, (long long)i,
                                     (double)y[i], yr[i]);
                    }
                    ran++;
                }
            free(w);
            free(x);
            free(b);
            free(yr);
            free(mag);
            free(y);
        }
    assert_int_equal(ran, 11 * 2 * 2 * 3);
    /* k not whole blocks: refused, the output untouched */
    float x[48] = {1}, y[2];
    uint8_t w[64] = {0};
    for (size_t v = 0; v < 2; v++) {
        kern_args a = {.x = x, .w = w, .w_type = XF_TYPE_MXFP4, .y = y, .n = 1, .k = 48, .m = 1};
        kern_ctx c = {.n_threads = 1};
        tu_poison(y, 2);
        assert_int_equal(kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, variants[v])->fn(&c, &a), -1);
        assert_true(isnan(y[0]));
    }
    kern_pool_free(pools[1]);
    kern_pool_free(pools[2]);
}

/* EMBD from an MXFP4 table: the dequantized rows, exactly */
static void test_embd(void **state)
{
    (void)state;
    uint64_t rng = 0x4e4dULL;
    const int64_t V = 37, k = 160, n = 5;
    uint8_t *w = make_w(V, k, 1, &rng);
    int32_t tok[5] = {0, 36, 7, 7, 20};
    float *y = xmalloc((size_t)(n * k) * sizeof *y), *want = xmalloc((size_t)k * sizeof *want);
    uint64_t rb;
    quant_row_bytes(XF_TYPE_MXFP4, k, &rb);
    const char *variants[] = {"ref", "opt"};
    for (size_t v = 0; v < 2; v++) {
        const kern_variant *kv = kern_find(KERN_OP_EMBD, KERN_BACKEND_CPU, variants[v]);
        assert_non_null(kv);
        kern_ctx c = {.n_threads = 1};
        kern_args a = {.w = w, .w_type = XF_TYPE_MXFP4, .y = y, .tok = tok, .n = n, .k = k};
        tu_poison(y, (size_t)(n * k));
        assert_int_equal(kv->fn(&c, &a), 0);
        for (int64_t i = 0; i < n; i++) {
            quant_dequant_row(XF_TYPE_MXFP4, w + (uint64_t)tok[i] * rb, want, k);
            assert_memory_equal(y + i * k, want, (size_t)k * sizeof *want);
        }
    }
    free(w);
    free(y);
    free(want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_embd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
