/* test_kernels_cuda_mxfp4: the CUDA kernels with MXFP4 weights (17-byte
 * blocks: odd offsets, read bytewise) against the CPU float reference, a
 * float64 product over quant_dequant_row's weights computed here on the
 * host:
 * - MATMUL ref (f64, xq_elem), opt for n = 1 (kern_cuda_gemv's staged
 *   kernel or the matrix-vector one, as kern_cuda_gemv_prefer picks), n = 3
 *   (matrix-vector), n = 9 and 37 (decode to scratch + cuBLAS SGEMM, and
 *   without scratch the matrix-vector fallback), tc (f16 tensor cores);
 *   kern_cuda_gemv and kern_cuda_matvec_mv4 called directly;
 * - EMBD ref and opt: the dequantized rows, bit for bit.
 * Shapes are not multiples of any tile (k = 32..4864 in whole blocks, m odd),
 * weight buffers allocated to the exact byte and 1 byte off alignment in odd
 * cases, so that the staging's byte-wise edge pieces run; inputs random and
 * never zero; outputs poisoned with NaN before every run.
 * Exit 77 (ctest: skipped) when no CUDA device answers. */
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

#ifdef XF_HAVE_CUDA
#include "cuda/gemv.h"
#include "kernels_cuda.h"

static struct {
    const kern_mem_ops *mem;
    kern_ctx ctx;
    uint64_t rng;
    int cases;
} tm;

static void *tm_dev(size_t bytes, const void *host)
{
    void *d = tm.mem->alloc(bytes ? bytes : 1);
    assert_non_null(d);
    if (host)
        assert_int_equal(tm.mem->to_dev(&tm.ctx, d, host, bytes), 0);
    return d;
}

/* host [m, k] MXFP4: quantized random rows, every third row random bytes
 * with scales 2^-4 .. 2^4 (every code appears) */
static uint8_t *tm_weights(int64_t m, int64_t k, uint64_t *rb)
{
    assert_true(quant_row_bytes(XF_TYPE_MXFP4, k, rb));
    uint8_t *w = malloc((size_t)(*rb * (uint64_t)m));
    float *src = malloc((size_t)k * sizeof *src);
    assert_non_null(w);
    assert_non_null(src);
    for (int64_t r = 0; r < m; r++) {
        uint8_t *row = w + (uint64_t)r * *rb;
        if (r % 3 == 2) {
            for (uint64_t i = 0; i < *rb; i++)
                row[i] = (uint8_t)tu_rand_u64(&tm.rng);
            for (int64_t b = 0; b < k / 32; b++)
                row[17 * b] = (uint8_t)(124 + tu_rand_u64(&tm.rng) % 9);
        } else {
            tu_fill_random(src, (size_t)k, &tm.rng, -2.0f, 2.0f);
            assert_int_equal(quant_quantize_row(XF_TYPE_MXFP4, src, row, k), *rb);
        }
    }
    free(src);
    return w;
}

/* the CPU float reference: y[i,r] = x_i . deq(w_r) (+ b[r]) in f64 */
static float *tm_ref(const uint8_t *w, uint64_t rb, const float *x, const float *b, int64_t n, int64_t k, int64_t m)
{
    float *row = malloc((size_t)k * sizeof *row), *y = malloc((size_t)(n * m) * sizeof *y);
    assert_non_null(row);
    assert_non_null(y);
    for (int64_t r = 0; r < m; r++) {
        quant_dequant_row(XF_TYPE_MXFP4, w + (uint64_t)r * rb, row, k);
        for (int64_t i = 0; i < n; i++) {
            double s = b ? b[r] : 0.0;
            for (int64_t j = 0; j < k; j++)
                s += (double)x[i * k + j] * row[j];
            y[i * m + r] = (float)s;
        }
    }
    free(row);
    return y;
}

/* runs fn into the NaN-poisoned device a->y and checks it against want */
static void tm_check(int (*fn)(kern_ctx *, const kern_args *), const kern_args *a, const float *want, double tol,
                     const char *what, const char *how)
{
    int64_t cnt = a->n * a->m;
    size_t by = (size_t)cnt * sizeof(float);
    float *h = malloc(by);
    assert_non_null(h);
    tu_poison(h, (size_t)cnt);
    assert_int_equal(tm.mem->to_dev(&tm.ctx, a->y, h, by), 0);
    int rc = fn(&tm.ctx, a);
    if (rc != 0)
        fail_msg("%s %s: returned %d", what, how, rc);
    assert_int_equal(tm.mem->to_host(&tm.ctx, h, a->y, by), 0);
    for (int64_t i = 0; i < cnt; i++)
        if (isnan(h[i]) || isinf(h[i]))
            fail_msg("%s %s: y[%lld] = %g (unwritten or broken)", what, how, (long long)i, (double)h[i]);
    double err = tu_rel_max_err(h, want, (size_t)cnt);
    if (!(err <= tol))
        fail_msg("%s %s: max |y - ref| = %.3g x max|ref| > %.3g", what, how, err, tol);
    free(h);
}

static int tm_gemv(kern_ctx *ctx, const kern_args *a) { return kern_cuda_gemv(ctx, a, NULL); }

static void tm_case(int64_t n, int64_t k, int64_t m, int skew, int bias)
{
    char what[128];
    snprintf(what, sizeof what, "MXFP4 n=%lld [%lld x %lld]%s%s", (long long)n, (long long)m, (long long)k,
             skew ? " w+1" : "", bias ? " +b" : "");
    uint64_t rb;
    uint8_t *hw = tm_weights(m, k, &rb);
    float *hx = malloc((size_t)(n * k) * sizeof *hx), *hb = malloc((size_t)m * sizeof *hb);
    assert_non_null(hx);
    assert_non_null(hb);
    tu_fill_random(hx, (size_t)(n * k), &tm.rng, -1.0f, 1.0f);
    tu_fill_random(hb, (size_t)m, &tm.rng, -1.0f, 1.0f);
    float *want = tm_ref(hw, rb, hx, bias ? hb : NULL, n, k, m);
    size_t wbytes = (size_t)(rb * (uint64_t)m);
    uint8_t *dwb = tm_dev(wbytes + (size_t)skew, NULL); /* exact: a read past the end is out of bounds */
    assert_int_equal(tm.mem->to_dev(&tm.ctx, dwb + skew, hw, wbytes), 0);
    float *dx = tm_dev((size_t)(n * k) * sizeof(float), hx);
    float *db = tm_dev((size_t)m * sizeof(float), hb);
    float *dy = tm_dev((size_t)(n * m) * sizeof(float), NULL);
    kern_args a = {.x = dx, .w = dwb + skew, .w_type = XF_TYPE_MXFP4, .b = bias ? db : NULL, .y = dy,
                   .n = n, .k = k, .m = m};

    const kern_variant *ref = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "ref");
    const kern_variant *opt = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "opt");
    const kern_variant *tc = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "tc");
    assert_non_null(ref);
    assert_non_null(opt);
    tm_check(ref->fn, &a, want, 1e-6, what, "ref");
    /* opt without scratch (prefill: the matrix-vector fallback), then with
     * the scratch it declares (decode to f32 + cuBLAS) */
    tm.ctx.scratch = NULL, tm.ctx.scratch_size = 0;
    tm_check(opt->fn, &a, want, 2e-5, what, "opt (no scratch)");
    size_t sb = kern_variant_scratch(opt, &a);
    if (tc && kern_variant_scratch(tc, &a) > sb)
        sb = kern_variant_scratch(tc, &a);
    void *scratch = sb ? tm_dev(sb, NULL) : NULL;
    tm.ctx.scratch = scratch, tm.ctx.scratch_size = sb;
    tm_check(opt->fn, &a, want, 2e-5, what, "opt");
    if (tc) /* x and the weights rounded to f16: ~3e-4 (matmul.cu) */
        tm_check(tc->fn, &a, want, n > 4 ? 2e-3 : 2e-5, what, "tc");
    tm.ctx.scratch = NULL, tm.ctx.scratch_size = 0;
    if (n == 1) {
        tm_check(tm_gemv, &a, want, 2e-5, what, "kern_cuda_gemv");
    }
    if (n <= 4)
        tm_check(kern_cuda_matvec_mv4, &a, want, 2e-5, what, "matvec_mv4");
    tm.cases++;
    if (scratch)
        tm.mem->free(scratch);
    tm.mem->free(dwb), tm.mem->free(dx), tm.mem->free(db), tm.mem->free(dy);
    free(hw), free(hx), free(hb), free(want);
}

static void test_matmul(void **state)
{
    (void)state;
    /* {n, k, m}: Qwen2.5-0.5B widths (896, 4864), odd m, the staged
     * kernel's rows-per-block choices (m = 7, 128, 897, 2304), prefill */
    static const int64_t shapes[][3] = {
        {1, 896, 897}, {1, 896, 7},  {1, 4864, 896}, {1, 32, 1},    {1, 896, 128}, {1, 2048, 2304},
        {1, 96, 5000}, {3, 896, 67}, {2, 160, 33},   {9, 288, 131}, {37, 896, 70}, {5, 4864, 19},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        tm_case(shapes[s][0], shapes[s][1], shapes[s][2], (int)(s & 1), (int)(s % 3 == 0));
}

/* EMBD from an MXFP4 table: the dequantized rows, exactly */
static void test_embd(void **state)
{
    (void)state;
    const int64_t V = 41, k = 896, n = 6;
    uint64_t rb;
    uint8_t *hw = tm_weights(V, k, &rb);
    int32_t tok[6] = {0, 40, 7, 7, 19, 3};
    uint8_t *dw = tm_dev((size_t)(rb * V) + 1, NULL);
    assert_int_equal(tm.mem->to_dev(&tm.ctx, dw + 1, hw, (size_t)(rb * V)), 0);
    float *dy = tm_dev((size_t)(n * k) * sizeof(float), NULL);
    float *y = malloc((size_t)(n * k) * sizeof *y), *want = malloc((size_t)k * sizeof *want);
    assert_non_null(y);
    assert_non_null(want);
    static const char *const vars[] = {"ref", "opt"};
    for (int v = 0; v < 2; v++) {
        const kern_variant *kv = kern_find(KERN_OP_EMBD, KERN_BACKEND_CUDA, vars[v]);
        assert_non_null(kv);
        kern_args a = {.w = dw + 1, .w_type = XF_TYPE_MXFP4, .y = dy, .tok = tok, .n = n, .k = k};
        tu_poison(y, (size_t)(n * k));
        assert_int_equal(tm.mem->to_dev(&tm.ctx, dy, y, (size_t)(n * k) * sizeof(float)), 0);
        assert_int_equal(kv->fn(&tm.ctx, &a), 0);
        assert_int_equal(tm.mem->to_host(&tm.ctx, y, dy, (size_t)(n * k) * sizeof(float)), 0);
        for (int64_t i = 0; i < n; i++) {
            quant_dequant_row(XF_TYPE_MXFP4, hw + (uint64_t)tok[i] * rb, want, k);
            if (memcmp(y + i * k, want, (size_t)k * sizeof *want) != 0)
                fail_msg("embd %s MXFP4: row %lld differs from quant_dequant_row", vars[v], (long long)i);
        }
    }
    tm.mem->free(dw), tm.mem->free(dy);
    free(hw), free(y), free(want);
}

static int tm_setup(void **state)
{
    (void)state;
    tm.rng = 0x39D1B54A32D192EDULL;
    tm.mem = kern_backend_mem(KERN_BACKEND_CUDA);
    tm.ctx = (kern_ctx){.n_threads = 1};
    return tm.mem ? 0 : -1;
}

static int tm_teardown(void **state)
{
    (void)state;
    print_message("%d MXFP4 matmul cases checked\n", tm.cases);
    kern_cuda_ctx_release(&tm.ctx);
    return 0;
}
#endif

int main(void)
{
#ifdef XF_HAVE_CUDA
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_embd),
    };
    char why[256];
    if (!kern_backend_available(KERN_BACKEND_CUDA, why, sizeof why)) {
        printf("test_kernels_cuda_mxfp4: skipped: %s\n", why);
        return 77;
    }
    tu_filter_from_env();
    return cmocka_run_group_tests(tests, tm_setup, tm_teardown);
#else
    printf("test_kernels_cuda_mxfp4: skipped: built without CUDA\n");
    return 77;
#endif
}
