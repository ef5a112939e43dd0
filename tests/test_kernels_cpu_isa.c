/* test_kernels_cpu_isa: the opt matmul of f32 and f16 weights on every
 * instruction-set path this CPU runs (kern_cpu_isa: portable, AVX2,
 * AVX-512 by cpuid, each forced through XF_CPU_ISA), against ref, on every
 * thread set-up of kernels_cpu_util.h, outputs poisoned with NaN first.
 * Shapes are chosen around the AVX-512 GEMM's tiles (x512_matmul.c: 64-row
 * panels, 6-token tiles, 128-column chunks, 16-column transposes) and
 * never multiples of them: tails in rows, tokens and columns, several
 * chunks, n on both sides of the GEMM's threshold, n == 1 (decode).
 * Tolerance as test_kernels_cpu's matmul (4e-6 relative): f32 sums in
 * another order than ref's f64. */
#include "kernels_cpu_util.h"

#include "quant.h"
#include "quantize.h"

static const char *const isa_names[] = {"portable", "avx2", "vnni", "avx512"};

static void test_isa_matmul(void **state)
{
    uint64_t rng = 0x15a5eedULL;
    const int types[] = {XF_TYPE_F32, XF_TYPE_F16};
    const struct {
        int64_t n, k, m;
    } shapes[] = {
        {1, 7, 5},     {1, 300, 70},   {1, 768, 129},  {2, 33, 17},   {7, 129, 65},  {8, 16, 64},
        {9, 17, 65},   {13, 129, 100}, {37, 300, 130}, {64, 128, 64}, {11, 1, 3},    {8, 255, 1},
        {20, 513, 47}, {130, 64, 200},
    };
    for (int isa = KERN_CPU_ISA_PORTABLE; isa <= KERN_CPU_ISA_AVX512; isa++) {
        setenv("XF_CPU_ISA", isa_names[isa], 1);
        if (kern_cpu_isa() != isa) {
            printf("# opt matmul %s: not on this CPU, skipped\n", isa_names[isa]);
            continue;
        }
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                const int64_t n = shapes[s].n, k = shapes[s].k, m = shapes[s].m;
                uint64_t rb;
                assert_true(quant_row_bytes(types[t], k, &rb));
                uint8_t *w = xmalloc((size_t)(rb * (uint64_t)m));
                float *row = rand_floats((size_t)k, &rng, -1, 1);
                for (int64_t r = 0; r < m; r++) {
                    tu_fill_random(row, (size_t)k, &rng, -1, 1);
                    assert_int_equal(quant_quantize_row(types[t], row, w + (uint64_t)r * rb, k), rb);
                }
                float *x = rand_floats((size_t)(n * k), &rng, -1, 1), *b = rand_floats((size_t)m, &rng, -1, 1);
                for (int bias = 0; bias < 2; bias++) {
                    kern_args a = {
                        .x = x, .w = w, .w_type = types[t], .b = bias ? b : NULL, .n = n, .k = k, .m = m};
                    char what[96];
                    snprintf(what, sizeof what, "%s %s n=%lld k=%lld m=%lld b=%d", isa_names[isa],
                             quant_type_name(types[t]), (long long)n, (long long)k, (long long)m, bias);
                    assert_int_equal(compare_variants(*state, KERN_OP_MATMUL, &a, (size_t)(n * m), 4e-6, what),
                                     1);
                }
                free(row);
                free(w);
                free(x);
                free(b);
            }
    }
    unsetenv("XF_CPU_ISA");
}

/* A NaN or Inf in x reaches exactly the outputs of its token, on every path. */
static void test_isa_nonfinite(void **state)
{
    uint64_t rng = 0x77a1ULL;
    const int64_t n = 9, k = 150, m = 70;
    for (int isa = KERN_CPU_ISA_PORTABLE; isa <= KERN_CPU_ISA_AVX512; isa++) {
        setenv("XF_CPU_ISA", isa_names[isa], 1);
        if (kern_cpu_isa() != isa)
            continue;
        for (int f16 = 0; f16 < 2; f16++) {
            const int type = f16 ? XF_TYPE_F16 : XF_TYPE_F32;
            uint64_t rb;
            assert_true(quant_row_bytes(type, k, &rb));
            float *wf = rand_floats((size_t)(m * k), &rng, -1, 1);
            uint8_t *w = xmalloc((size_t)(rb * (uint64_t)m));
            for (int64_t r = 0; r < m; r++)
                quant_quantize_row(type, wf + r * k, w + (uint64_t)r * rb, k);
            float *x = rand_floats((size_t)(n * k), &rng, -1, 1), *y = xmalloc((size_t)(n * m) * sizeof *y);
            x[2 * k + 140] = NAN;
            x[7 * k + 3] = INFINITY;
            const kern_variant *opt = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "opt");
            kern_ctx c = cfg_ctx(*state, 2);
            kern_args a = {.x = x, .w = w, .w_type = type, .n = n, .k = k, .m = m, .y = y};
            tu_poison(y, (size_t)(n * m));
            assert_int_equal(opt->fn(&c, &a), 0);
            for (int64_t t = 0; t < n; t++)
                for (int64_t r = 0; r < m; r++) {
                    const float v = y[t * m + r];
                    if (t == 2 || t == 7)
                        assert_false(isfinite(v));
                    else
                        assert_true(isfinite(v));
                }
            free(wf);
            free(w);
            free(x);
            free(y);
        }
    }
    unsetenv("XF_CPU_ISA");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_isa_matmul),
        cmocka_unit_test(test_isa_nonfinite),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
