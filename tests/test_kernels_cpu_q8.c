/* test_kernels_cpu_q8: the CPU matmul variant `q8` (kernels/cpu/q8_matmul.c)
 * against ref, on every instruction-set path this CPU runs (portable
 * always; AVX2, AVX-VNNI and AVX-512 VNNI where cpuid has them, chosen by
 * XF_CPU_ISA),
 * every thread set-up of kernels_cpu_util.h, for the types it computes in
 * integers (Q4_1 and Q5_1 on the AVX-512 path only), on shapes that are
 * not multiples of its tiles (k = 7 blocks of 32: an odd last pair).
 *
 * Tolerance, derived: q8 rounds each block of 32 x values to dx*qx with
 * dx = max|x_block|/127, |x - dx*qx| <= dx/2; the weights are exactly
 * ref's (same blocks, integer quants). So |y - y_ref| <= B + R with
 * B = sum_j |w_j| * dx_j / 2 (x's rounding, at most) and R the f32
 * rounding of the block sums and scales, well under 1e-5 * S where
 * S = sum_j |w_j * x_j| + |b|. Each output is held to B*(1+1e-4) + 1e-5*S;
 * and, as a figure a reader can compare with opt's 4e-6, |y - y_ref| / S
 * must stay under 1e-2 (B/S is about 1/254 * mean|x|max / mean|x| ~ 0.4%
 * for uniform x). That worst-case bound is loose (errors of random sign
 * add like a random walk), so a second, tight check catches wrong scales:
 * ref on x rounded as q8 rounds it (q8t_round, the same f32 operations),
 * which must agree within 1e-5 * S (f32 sums and scale products only).
 * Q4_K and Q6_K prefill on AVX-512 round x in blocks of 256, not 32 (one scale
 * per super-block: kernels/cpu/q8_avx512.c's K layout): there B, the
 * rounded x and the 1e-2 figure are taken over blocks of 256. */
#include "kernels_cpu_util.h"

#include "quant.h"
#include "quantize.h"

static const char *const isa_names[] = {"portable", "avx2", "vnni", "avx512"};

/* rows of quantized random weights, NULL if the type does not quantize */
static void *q8t_weights(int type, int64_t m, int64_t k, uint64_t *rng, uint64_t *rb)
{
    assert_true(quant_row_bytes(type, k, rb));
    uint8_t *w = xmalloc((size_t)(*rb * (uint64_t)m));
    float *row = rand_floats((size_t)k, rng, -1, 1);
    for (int64_t r = 0; r < m; r++) {
        tu_fill_random(row, (size_t)k, rng, -1, 1);
        assert_int_equal(quant_quantize_row(type, row, w + (uint64_t)r * *rb, k), *rb);
    }
    free(row);
    return w;
}

/* the x block (elements per scale) of a path: 32, but 256 (one scale per
 * super-block, q8_avx512.c's K layout) for Q4_K and Q6_K prefill on AVX-512 */
static int q8t_xblock(int isa, int type, int64_t n)
{
    return isa == KERN_CPU_ISA_AVX512 && n > 1 && (type == XF_TYPE_Q4_K || type == XF_TYPE_Q6_K) ? 256 : 32;
}

/* x rounded to q8's blocks of bl: d = amax/127, q = lrintf(x * 127/amax),
 * as kernels/cpu/q8_matmul.c computes them, back to floats d*q */
static void q8t_round(const float *x, float *o, int64_t n, int bl)
{
    for (int64_t c = 0; c < n; c += bl) {
        float amax = 0;
        for (int j = 0; j < bl; j++)
            amax = fmaxf(amax, fabsf(x[c + j]));
        const float d = amax / 127.0f, id = d > 0 ? 127.0f / amax : 0.0f;
        for (int j = 0; j < bl; j++)
            o[c + j] = d * (float)lrintf(x[c + j] * id);
    }
}

/* the bound B and the scale S of the header for output (t, r), x blocks of bl */
static void q8t_bound(const float *wr, const float *x, float b, int64_t k, int bl, double *bound, double *scale)
{
    double B = 0, S = fabs((double)b);
    for (int64_t c = 0; c < k; c += bl) {
        double amax = 0, wsum = 0;
        for (int j = 0; j < bl; j++) {
            amax = fmax(amax, fabs((double)x[c + j]));
            wsum += fabs((double)wr[c + j]);
            S += fabs((double)wr[c + j] * x[c + j]);
        }
        B += wsum * amax / 127.0 / 2.0;
    }
    *bound = B;
    *scale = S;
}

static void q8t_case(const test_state *s, int type, int64_t n, int64_t k, int64_t m, uint64_t *rng)
{
    uint64_t rb;
    uint8_t *w = q8t_weights(type, m, k, rng, &rb);
    /* x: uniform in +-1 with a few tokens scaled, never zero */
    float *x = rand_floats((size_t)(n * k), rng, -1, 1), *b = rand_floats((size_t)m, rng, -1, 1);
    for (int64_t i = 0; i < n * k; i++)
        if (x[i] == 0.0f)
            x[i] = 0.5f;
    float *yref = xmalloc((size_t)(n * m) * sizeof *yref), *y = xmalloc((size_t)(n * m) * sizeof *y);
    float *wf = xmalloc((size_t)(m * k) * sizeof *wf);
    for (int64_t r = 0; r < m; r++)
        quant_dequant_row(type, w + (uint64_t)r * rb, wf + r * k, k);
    kern_args a = {.x = x, .w = w, .w_type = type, .b = (m % 2) ? b : NULL, .n = n, .k = k, .m = m};
    tu_poison(yref, (size_t)(n * m));
    a.y = yref;
    assert_int_equal(run_ref(KERN_OP_MATMUL, &a), 0);
    /* ref on x rounded as each x block size rounds it: [0] 32, [1] 256 */
    float *xr = xmalloc((size_t)(n * k) * sizeof *xr), *yqs[2];
    for (int i = 0; i < 2; i++) {
        yqs[i] = xmalloc((size_t)(n * m) * sizeof *yqs[i]);
        if (i && k % 256)
            continue;
        q8t_round(x, xr, n * k, i ? 256 : 32);
        kern_args aq = a;
        aq.x = xr;
        aq.y = yqs[i];
        assert_int_equal(run_ref(KERN_OP_MATMUL, &aq), 0);
    }
    const kern_variant *q8 = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "q8");
    assert_non_null(q8);
    for (int isa = KERN_CPU_ISA_PORTABLE; isa <= KERN_CPU_ISA_AVX512; isa++) {
        setenv("XF_CPU_ISA", isa_names[isa], 1);
        if (kern_cpu_q8_isa() != isa) {
            printf("# q8 %s: not on this CPU, skipped\n", isa_names[isa]);
            continue;
        }
        if ((type == XF_TYPE_Q4_1 || type == XF_TYPE_Q5_1) && isa < KERN_CPU_ISA_AVX512)
            continue; /* opt's below AVX-512 (test_q8_fallback) */
        const int bl = q8t_xblock(isa, type, n);
        const float *yq = yqs[bl == 256];
        /* the scratch the variant declares (its AVX-512 x layout), given on
         * every other set-up, and none on the rest: both must be right */
        const size_t sb = kern_variant_scratch(q8, &a);
        void *scratch = sb ? xmalloc(sb) : NULL;
        for (int cfg = 0; cfg < N_CFG; cfg++) {
            kern_ctx c = cfg_ctx(s, cfg);
            if (cfg % 2) {
                c.scratch = scratch;
                c.scratch_size = sb;
            }
            tu_poison(y, (size_t)(n * m));
            a.y = y;
            assert_int_equal(q8->fn(&c, &a), 0);
            for (int64_t t = 0; t < n; t++)
                for (int64_t r = 0; r < m; r++) {
                    double B, S;
                    q8t_bound(wf + r * k, x + t * k, a.b ? b[r] : 0.0f, k, bl, &B, &S);
                    const double got = y[t * m + r], want = yref[t * m + r], err = fabs(got - want);
                    const double eq = fabs(got - yq[t * m + r]);
                    if (!(err <= B * (1 + 1e-4) + 1e-5 * S) || !(err <= 1e-2 * S) || !(eq <= 1e-5 * S))
                        fail_msg("q8 %s %s x/%d n=%lld k=%lld m=%lld cfg %d: y[%lld,%lld] = %.9g, ref %.9g, "
                                 "err %.3g, bound %.3g, S %.3g, vs rounded x %.9g",
                                 isa_names[isa], quant_type_name(type), bl, (long long)n, (long long)k,
                                 (long long)m, cfg, (long long)t, (long long)r, got, want, err, B, S,
                                 (double)yq[t * m + r]);
                }
        }
        free(scratch);
    }
    unsetenv("XF_CPU_ISA");
    free(w);
    free(x);
    free(b);
    free(y);
    free(yref);
    free(wf);
    free(xr);
    free(yqs[0]);
    free(yqs[1]);
}

static void test_q8_types(void **state)
{
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    const int types[] = {XF_TYPE_Q8_0, XF_TYPE_Q4_0, XF_TYPE_Q5_0, XF_TYPE_Q4_K, XF_TYPE_Q6_K, XF_TYPE_Q4_1, XF_TYPE_Q5_1};
    const int64_t ms[] = {37, 129}, ns[] = {1, 3, 17};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        const int64_t k = quant_type_get(types[t])->block_elems == 256 ? 256 * 3 : 32 * 7;
        for (size_t i = 0; i < 2; i++)
            for (size_t j = 0; j < 3; j++)
                q8t_case(*state, types[t], ns[j], k, ms[i], &rng);
    }
    /* the K layout (Q4_K, Q6_K prefill on AVX-512): 5 super-blocks a row, a
     * whole group of 8 tokens, one token over, and 2 tokens of one block */
    const int ktypes[] = {XF_TYPE_Q4_K, XF_TYPE_Q6_K};
    const int64_t kn[][2] = {{8, 256 * 5}, {9, 256 * 5}, {2, 256}, {23, 256 * 2}};
    for (size_t t = 0; t < 2; t++)
        for (size_t j = 0; j < sizeof kn / sizeof kn[0]; j++)
            q8t_case(*state, ktypes[t], kn[j][0], kn[j][1], 19, &rng);
    /* Q4_K and Q6_K prefill on AVX-512 run panels of 16 interleaved rows
     * over passes of 128 tokens, 4 at a time (q8_avx512_panel.c): a
     * 4-token tail of 2, short last panels (35 = 16+16+3, 50, 17),
     * exactly one panel, a 4-token step and 1 over, a pass and 1 over */
    const int64_t pn[][3] = {{70, 512, 35}, {5, 768, 16}, {66, 256, 50}, {129, 256, 17}};
    for (size_t t = 0; t < 2; t++)
        for (size_t j = 0; j < sizeof pn / sizeof pn[0]; j++)
            q8t_case(*state, ktypes[t], pn[j][0], pn[j][1], pn[j][2], &rng);
}

/* Other types are opt's: the same bits as opt. */
static void test_q8_fallback(void **state)
{
    uint64_t rng = 42, rb;
    const int types[] = {XF_TYPE_F32, XF_TYPE_F16, XF_TYPE_Q5_K, XF_TYPE_Q8_1};
    const kern_variant *q8 = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "q8");
    const kern_variant *opt = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "opt");
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        const int64_t n = 3, k = 256, m = 37;
        uint8_t *w = q8t_weights(types[t], m, k, &rng, &rb);
        float *x = rand_floats((size_t)(n * k), &rng, -1, 1);
        float *y1 = xmalloc((size_t)(n * m) * sizeof *y1), *y2 = xmalloc((size_t)(n * m) * sizeof *y2);
        kern_ctx c = cfg_ctx(*state, 2);
        kern_args a = {.x = x, .w = w, .w_type = types[t], .n = n, .k = k, .m = m, .y = y1};
        tu_poison(y1, (size_t)(n * m));
        tu_poison(y2, (size_t)(n * m));
        assert_int_equal(q8->fn(&c, &a), 0);
        a.y = y2;
        assert_int_equal(opt->fn(&c, &a), 0);
        assert_memory_equal(y1, y2, (size_t)(n * m) * sizeof *y1);
        free(w);
        free(x);
        free(y1);
        free(y2);
    }
}

/* A NaN or Inf in x gives NaN where it is read (as opt), never a number;
 * malformed arguments are refused as every CPU kernel refuses them. */
static void test_q8_nonfinite_and_args(void **state)
{
    uint64_t rng = 7, rb;
    const int64_t n = 2, k = 256, m = 20;
    uint8_t *w = q8t_weights(XF_TYPE_Q4_K, m, k, &rng, &rb);
    float *x = rand_floats((size_t)(n * k), &rng, -1, 1), *y = xmalloc((size_t)(n * m) * sizeof *y);
    x[5] = NAN;
    x[k + 100] = INFINITY;
    const kern_variant *q8 = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "q8");
    for (int isa = KERN_CPU_ISA_PORTABLE; isa <= KERN_CPU_ISA_AVX512; isa++) {
        setenv("XF_CPU_ISA", isa_names[isa], 1);
        kern_ctx c = cfg_ctx(*state, 3);
        kern_args a = {.x = x, .w = w, .w_type = XF_TYPE_Q4_K, .n = n, .k = k, .m = m, .y = y};
        /* a number, not the usual NaN poison: the NaN must come from the kernel */
        for (int64_t i = 0; i < n * m; i++)
            y[i] = 1.0f;
        assert_int_equal(q8->fn(&c, &a), 0);
        for (int64_t i = 0; i < n * m; i++)
            assert_true(isnan(y[i]));
        /* one token (decode: its own layout on AVX-512), each weight type */
        const int types[] = {XF_TYPE_Q8_0, XF_TYPE_Q4_0, XF_TYPE_Q5_0, XF_TYPE_Q6_K, XF_TYPE_Q4_K};
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            uint64_t rb1;
            uint8_t *w1 = q8t_weights(types[ti], m, k, &rng, &rb1);
            kern_args a1 = {.x = x, .w = w1, .w_type = types[ti], .n = 1, .k = k, .m = m, .y = y};
            for (int64_t i = 0; i < m; i++)
                y[i] = 1.0f;
            assert_int_equal(q8->fn(&c, &a1), 0);
            for (int64_t i = 0; i < m; i++)
                assert_true(isnan(y[i]));
            free(w1);
        }
        a.k = 100; /* not a whole number of Q4_K blocks */
        assert_int_equal(q8->fn(&c, &a), -1);
        a.k = k;
        a.x = NULL;
        assert_int_equal(q8->fn(&c, &a), -1);
    }
    unsetenv("XF_CPU_ISA");
    free(w);
    free(x);
    free(y);
}

/* Each `q8-*` variant is q8 on one path: the same bits as q8 with
 * XF_CPU_ISA capped there (where this CPU has the path) */
static void test_q8_path_variants(void **state)
{
    static const char *const names[] = {"q8-c", "q8-avx2", "q8-vnni", "q8-avx512"};
    uint64_t rng = 99, rb;
    const int types[] = {XF_TYPE_Q5_0, XF_TYPE_Q4_K};
    const kern_variant *q8 = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "q8");
    for (size_t ti = 0; ti < 2; ti++)
        for (int64_t n = 1; n <= 9; n += 8) {
            const int64_t k = 512, m = 41;
            uint8_t *w = q8t_weights(types[ti], m, k, &rng, &rb);
            float *x = rand_floats((size_t)(n * k), &rng, -1, 1);
            float *y1 = xmalloc((size_t)(n * m) * sizeof *y1), *y2 = xmalloc((size_t)(n * m) * sizeof *y2);
            for (int isa = KERN_CPU_ISA_PORTABLE; isa <= KERN_CPU_ISA_AVX512; isa++) {
                const kern_variant *v = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, names[isa]);
                assert_non_null(v);
                kern_ctx c = cfg_ctx(*state, 2);
                kern_args a = {.x = x, .w = w, .w_type = types[ti], .n = n, .k = k, .m = m, .y = y1};
                tu_poison(y1, (size_t)(n * m));
                assert_int_equal(v->fn(&c, &a), 0);
                setenv("XF_CPU_ISA", isa_names[isa], 1);
                a.y = y2;
                tu_poison(y2, (size_t)(n * m));
                assert_int_equal(q8->fn(&c, &a), 0);
                unsetenv("XF_CPU_ISA");
                assert_memory_equal(y1, y2, (size_t)(n * m) * sizeof *y1);
            }
            free(w);
            free(x);
            free(y1);
            free(y2);
        }
}

/* The K layout's x scale covers 256 values: a token with one value far
 * over the rest of its 256 (Qwen2.5's massive activations) would leave the
 * other sub-blocks a few levels each, so q8 computes such a token's row
 * again in float (q8_matmul.c q8_outlier_token). Planted: token 2 of 6 has
 * x = 300 at one place (the rest uniform in +-1), token 4 a value 12x its
 * block's (under the 48x of the rule: stays q8). On the AVX-512 path,
 * token 2 must be as close to ref as opt is (1e-5 of S), where x rounded
 * per 256 is ~100x further; every other token keeps q8's bounds. */
static void test_q8_outlier_tokens(void **state)
{
    setenv("XF_CPU_ISA", "avx512", 1);
    if (kern_cpu_q8_isa() != KERN_CPU_ISA_AVX512) {
        unsetenv("XF_CPU_ISA");
        printf("# q8 outlier tokens: no AVX-512 VNNI path on this CPU, skipped\n");
        return;
    }
    uint64_t rng = 0x0771e7;
    const int types[] = {XF_TYPE_Q4_K, XF_TYPE_Q6_K};
    const int64_t n = 6, k = 512, m = 35;
    const kern_variant *q8 = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "q8");
    for (size_t ti = 0; ti < 2; ti++) {
        uint64_t rb;
        uint8_t *w = q8t_weights(types[ti], m, k, &rng, &rb);
        float *x = rand_floats((size_t)(n * k), &rng, -1, 1), *wf = xmalloc((size_t)(m * k) * sizeof *wf);
        x[2 * k + 300] = 300.0f;
        x[4 * k + 40] = 12.0f;
        for (int64_t r = 0; r < m; r++)
            quant_dequant_row(types[ti], w + (uint64_t)r * rb, wf + r * k, k);
        float *yref = xmalloc((size_t)(n * m) * sizeof *yref), *y = xmalloc((size_t)(n * m) * sizeof *y);
        float *xr = xmalloc((size_t)(n * k) * sizeof *xr), *yq = xmalloc((size_t)(n * m) * sizeof *yq);
        kern_args a = {.x = x, .w = w, .w_type = types[ti], .n = n, .k = k, .m = m, .y = yref};
        assert_int_equal(run_ref(KERN_OP_MATMUL, &a), 0);
        q8t_round(x, xr, n * k, 256);
        kern_args aq = a;
        aq.x = xr;
        aq.y = yq;
        assert_int_equal(run_ref(KERN_OP_MATMUL, &aq), 0);
        for (int cfg = 0; cfg < N_CFG; cfg++) {
            kern_ctx c = cfg_ctx(*state, cfg);
            tu_poison(y, (size_t)(n * m));
            a.y = y;
            assert_int_equal(q8->fn(&c, &a), 0);
            double worst256 = 0, worst2 = 0;
            for (int64_t t = 0; t < n; t++)
                for (int64_t r = 0; r < m; r++) {
                    double B, S;
                    q8t_bound(wf + r * k, x + t * k, 0.0f, k, 256, &B, &S);
                    const double err = fabs((double)y[t * m + r] - yref[t * m + r]);
                    if (t == 2) {
                        worst2 = fmax(worst2, err / S);
                        worst256 = fmax(worst256, fabs((double)yq[t * m + r] - yref[t * m + r]) / S);
                        continue;
                    }
                    if (!(err <= B * (1 + 1e-4) + 1e-5 * S) || !(fabs((double)y[t * m + r] - yq[t * m + r]) <= 1e-5 * S))
                        fail_msg("%s cfg %d: token %lld row %lld: %.9g, ref %.9g, rounded x %.9g",
                                 quant_type_name(types[ti]), cfg, (long long)t, (long long)r, y[t * m + r],
                                 yref[t * m + r], yq[t * m + r]);
                }
            if (!(worst2 <= 1e-5) || !(worst256 > 100 * worst2))
                fail_msg("%s cfg %d: the outlier token's worst error %.3g of S (x per 256: %.3g)",
                         quant_type_name(types[ti]), cfg, worst2, worst256);
        }
        free(w), free(x), free(wf), free(yref), free(y), free(xr), free(yq);
    }
    unsetenv("XF_CPU_ISA");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q8_types),
        cmocka_unit_test(test_q8_fallback),
        cmocka_unit_test(test_q8_nonfinite_and_args),
        cmocka_unit_test(test_q8_path_variants),
        cmocka_unit_test(test_q8_outlier_tokens),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
