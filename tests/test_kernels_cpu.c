/* test_kernels_cpu: every non-ref CPU variant of every op kind (kernels/cpu/)
 * against ref on random shapes (odd sizes, k not a multiple of 8, n = 1 and
 * n > 1, pos0 > 0, GQA) and random inputs that are never zero, outputs
 * poisoned with NaN first, with no pool and with pools of 1, 2 and 3
 * threads. ref itself: test_kernels_cpu_ref; argument checks, f16
 * conversion, the pool, the registry, memory ops: test_kernels_cpu_misc. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cpu/cpu.h"
#include "kernels.h"
#include "kernels_cpu_util.h"
#include "quant.h"
#include "quantize.h"
#include "testutil.h"

/* ------------------------------------------ variants against ref: ops */

static void test_embd(void **state)
{
    uint64_t rng = 0x1234567ULL;
    const int types[] = {XF_TYPE_F32, XF_TYPE_F16, XF_TYPE_Q8_0};
    const struct {
        int64_t n, k;
        int pos0;
    } shapes[] = {{1, 1, 0}, {5, 7, 3}, {33, 64, 0}, {4, 193, 11}, {40, 512, 2}};
    enum { VOCAB = 37 };
    int tested = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t n = shapes[s].n, k = shapes[s].k, nctx = shapes[s].pos0 + n + 3;
        float *tab = rand_floats((size_t)(VOCAB * k), &rng, -1, 1),
              *pos = rand_floats((size_t)(nctx * k), &rng, -1, 1);
        int32_t *tok = xmalloc((size_t)n * sizeof *tok);
        for (int64_t i = 0; i < n; i++)
            tok[i] = (int32_t)(tu_rand_u64(&rng) % VOCAB);
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            uint64_t rb;
            if (!quant_row_bytes(types[t], k, &rb))
                continue; /* k not a multiple of the block */
            uint8_t *w = xmalloc((size_t)(rb * VOCAB));
            if (quant_quantize_row(types[t], tab, w, k) == 0) {
                free(w);
                continue; /* type not implemented by quant.c */
            }
            for (int r = 0; r < VOCAB; r++)
                quant_quantize_row(types[t], tab + r * k, w + r * rb, k);
            for (int w2t = -1; w2t <= XF_TYPE_F16; w2t++) {
                uint16_t *posh = NULL;
                const void *w2 = NULL;
                if (w2t == XF_TYPE_F32) {
                    w2 = pos;
                } else if (w2t == XF_TYPE_F16) {
                    posh = xmalloc((size_t)(nctx * k) * sizeof *posh);
                    quant_quantize_row(XF_TYPE_F16, pos, posh, nctx * k);
                    w2 = posh;
                }
                kern_args a = {.w = w,
                               .w_type = types[t],
                               .w2 = w2,
                               .w2_type = w2t < 0 ? 0 : w2t,
                               .tok = tok,
                               .n = n,
                               .k = k,
                               .pos0 = shapes[s].pos0};
                char what[96];
                snprintf(what, sizeof what, "%s n=%lld k=%lld w2=%d", quant_type_name(types[t]), (long long)n,
                         (long long)k, w2t);
                /* a copy and an f32 add: exact */
                assert_int_equal(compare_variants(*state, KERN_OP_EMBD, &a, (size_t)(n * k), 0.0, what), 1);
                free(posh);
                tested++;
            }
            free(w);
        }
        free(tab);
        free(pos);
        free(tok);
    }
    assert_true(tested >= 2 * 3 * 5);
}

static void test_norm(void **state)
{
    uint64_t rng = 0xabcdefULL;
    const struct {
        int64_t n, k;
        float lo, hi;
    } shapes[] = {
        {1, 1, -1, 1},    {3, 5, -1, 1},      {17, 67, -2, 3}, {2, 768, -1, 1},
        {25, 896, -4, 4}, {4, 768, 100, 101}, /* |mean| >> std: tests the variance's cancellation */
    };
    for (int op = KERN_OP_NORM; op <= KERN_OP_RMSNORM; op++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int withb = 0; withb < 2; withb++) {
                int64_t n = shapes[s].n, k = shapes[s].k;
                float *x = rand_floats((size_t)(n * k), &rng, shapes[s].lo, shapes[s].hi);
                float *g = rand_floats((size_t)k, &rng, 0.5f, 1.5f), *b = rand_floats((size_t)k, &rng, -1, 1);
                kern_args a = {.x = x,
                               .w = g,
                               .w_type = XF_TYPE_F32,
                               .b = withb && op == KERN_OP_NORM ? b : NULL,
                               .n = n,
                               .k = k,
                               .eps = 1e-5f};
                char what[64];
                snprintf(what, sizeof what, "n=%lld k=%lld b=%d", (long long)n, (long long)k, withb);
                /* f32 sums of <= 896 terms and one rsqrt: observed <= 2e-7 */
                assert_int_equal(compare_variants(*state, (kern_op)op, &a, (size_t)(n * k), 2e-6, what), 1);
                free(x);
                free(g);
                free(b);
            }
}

/* Weight matrix [m, k] of `type` from random f32; NULL if quant.c cannot
 * make that type (or k is not a multiple of its block). */
static void *make_weights(int type, int64_t m, int64_t k, uint64_t *rng)
{
    uint64_t rb;
    if (!quant_row_bytes(type, k, &rb))
        return NULL;
    float *src = rand_floats((size_t)k, rng, -1, 1);
    uint8_t *w = xmalloc((size_t)(rb * (uint64_t)m));
    for (int64_t r = 0; r < m; r++) {
        tu_fill_random(src, (size_t)k, rng, -1, 1);
        if (quant_quantize_row(type, src, w + (uint64_t)r * rb, k) == 0) {
            free(src);
            free(w);
            return NULL;
        }
    }
    free(src);
    return w;
}

static void test_matmul(void **state)
{
    uint64_t rng = 0x5eed5ULL;
    /* every block format a Q4_K_M file holds (opt's decode takes the fused
     * kern_cpu_quant_dot kernels for them), plus Q8_1/Q2_K/Q3_K on the generic path */
    const int types[] = {XF_TYPE_F32,  XF_TYPE_F16,  XF_TYPE_Q8_0, XF_TYPE_Q4_K, XF_TYPE_Q4_0,
                         XF_TYPE_Q4_1, XF_TYPE_Q5_0, XF_TYPE_Q5_1, XF_TYPE_Q8_1, XF_TYPE_Q5_K,
                         XF_TYPE_Q6_K, XF_TYPE_Q2_K, XF_TYPE_Q3_K};
    enum { N_TYPES = sizeof types / sizeof types[0] };
    const struct {
        int64_t n, k, m;
    } shapes[] = {
        {1, 7, 5},    {1, 192, 576}, {1, 256, 37},  {2, 33, 17},   {3, 64, 31},    {5, 100, 16},
        {7, 257, 35}, {6, 16, 48},   {17, 512, 33}, {4, 1024, 19}, {128, 192, 40}, {9, 768, 70},
        /* decode on Qwen2.5-0.5B widths: rows split unevenly over threads */
        {1, 896, 67}, {1, 4864, 21},
    };
    enum { N_SHAPES = sizeof shapes / sizeof shapes[0] };
    int ran[N_TYPES] = {0};
    for (size_t t = 0; t < N_TYPES; t++)
        for (size_t s = 0; s < N_SHAPES; s++) {
            int64_t n = shapes[s].n, k = shapes[s].k, m = shapes[s].m;
            if (k > 1024 && types[t] != XF_TYPE_Q4_K && types[t] != XF_TYPE_Q6_K)
                continue; /* the long rows only for the k-quants Qwen uses there: keep the test fast */
            void *w = make_weights(types[t], m, k, &rng);
            if (!w)
                continue;
            float *x = rand_floats((size_t)(n * k), &rng, -1, 1), *b = rand_floats((size_t)m, &rng, -1, 1);
            kern_args a = {
                .x = x, .w = w, .w_type = types[t], .b = (s % 2) ? b : NULL, .n = n, .k = k, .m = m};
            char what[96];
            snprintf(what, sizeof what, "%s n=%lld k=%lld m=%lld", quant_type_name(types[t]), (long long)n,
                     (long long)k, (long long)m);
            /* Looser than the other ops: opt accumulates the k products
             * in f32 (8-lane partial sums, 256-column chunks added into y;
             * block formats sum q*x per block or sub-block, then scale, in
             * kern_cpu_quant_dot). The rounding error of such sums grows with k,
             * like eps*sqrt(k/8) relative to |y| for random signs (worst
             * case eps*k). Observed <= 2e-7 for k <= 1024; 4e-6 keeps 20x
             * margin for other rounding (no FMA on the baseline clone). */
            assert_int_equal(compare_variants(*state, KERN_OP_MATMUL, &a, (size_t)(n * m), 4e-6, what), 1);
            ran[t]++;
            free(w);
            free(x);
            free(b);
        }
    /* every shape whose k is a whole number of blocks ran (all of them for F32, F16) */
    for (size_t t = 0; t < N_TYPES; t++) {
        const int be = quant_type_get(types[t])->block_elems;
        int want = 0;
        for (size_t s = 0; s < N_SHAPES; s++)
            want += shapes[s].k % be == 0 && (shapes[s].k <= 1024 || types[t] == XF_TYPE_Q4_K ||
                                              types[t] == XF_TYPE_Q6_K);
        if (ran[t] != want)
            fail_msg("matmul %s ran %d shapes, want %d", quant_type_name(types[t]), ran[t], want);
    }
}

static void test_view(void **state)
{
    uint64_t rng = 0x77ULL;
    const struct {
        int64_t n, stride, off, m;
    } shapes[] = {
        {1, 9, 0, 3}, {4, 9, 3, 3}, {5, 9, 6, 3}, {3, 10, 1, 4}, {7, 2304, 768, 768}, {40, 2304, 1536, 768},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        float *x = rand_floats((size_t)(shapes[s].n * shapes[s].stride), &rng, -1, 1);
        kern_args a = {
            .x = x, .n = shapes[s].n, .m = shapes[s].m, .x_stride = shapes[s].stride, .off = shapes[s].off};
        assert_int_equal(compare_variants(*state, KERN_OP_VIEW, &a, (size_t)(a.n * a.m), 0.0, "view"), 1);
        free(x);
    }
}

static void test_rope(void **state)
{
    uint64_t rng = 0x40be;
    const struct {
        int64_t n;
        int heads, hd, pos0;
        float base;
    } shapes[] = {
        {1, 1, 2, 0, 10000},  {3, 2, 6, 5, 10000},     {4, 3, 64, 0, 10000},  {2, 14, 64, 1000, 1e6f},
        {5, 2, 18, 7, 10000}, {1, 1, 128, 4095, 1e6f}, {40, 14, 64, 3, 1e6f},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t ny = (size_t)(shapes[s].n * shapes[s].heads * shapes[s].hd);
        float *x = rand_floats(ny, &rng, -2, 2);
        kern_args a = {.x = x,
                       .n = shapes[s].n,
                       .k = shapes[s].heads * shapes[s].hd,
                       .n_head = shapes[s].heads,
                       .head_dim = shapes[s].hd,
                       .pos0 = shapes[s].pos0,
                       .rope_base = shapes[s].base};
        char what[64];
        snprintf(what, sizeof what, "n=%lld heads=%d hd=%d pos0=%d", (long long)a.n, a.n_head, a.head_dim,
                 a.pos0);
        /* same f64 angles as ref, then f32 products: a few ulp */
        assert_int_equal(compare_variants(*state, KERN_OP_ROPE, &a, ny, 1e-6, what), 1);
        free(x);
    }
}

static const struct attn_shape {
    int64_t n;
    int heads, kv, hd, pos0;
} attn_shapes[] = {
    {1, 2, 2, 5, 0},   {4, 4, 2, 8, 3},    {7, 6, 1, 64, 10},  {3, 3, 3, 17, 0},
    {5, 14, 2, 64, 2}, {1, 14, 2, 64, 40}, {1, 12, 12, 64, 0}, {33, 4, 1, 13, 5},
};

static void test_kq(void **state)
{
    uint64_t rng = 0x6b71;
    for (size_t s = 0; s < sizeof attn_shapes / sizeof attn_shapes[0]; s++) {
        const struct attn_shape *sh = &attn_shapes[s];
        int n_kv = sh->pos0 + (int)sh->n;
        float *q = rand_floats((size_t)(sh->n * sh->heads * sh->hd), &rng, -1, 1);
        float *kc = rand_floats((size_t)n_kv * sh->kv * sh->hd, &rng, -1, 1);
        kern_args a = {.x = q,
                       .kc = kc,
                       .n = sh->n,
                       .n_head = sh->heads,
                       .n_head_kv = sh->kv,
                       .head_dim = sh->hd,
                       .n_kv = n_kv,
                       .pos0 = sh->pos0,
                       .scale = 1.0f / sqrtf((float)sh->hd)};
        char what[80];
        snprintf(what, sizeof what, "n=%lld H=%d KV=%d hd=%d pos0=%d", (long long)sh->n, sh->heads, sh->kv,
                 sh->hd, sh->pos0);
        /* f32 dots of <= 64 terms (observed <= 1.2e-7); the -inf pattern
         * must match exactly */
        assert_int_equal(
            compare_variants(*state, KERN_OP_KQ, &a, (size_t)sh->heads * sh->n * n_kv, 2e-6, what), 1);
        free(q);
        free(kc);
    }
}

static void test_kqv(void **state)
{
    uint64_t rng = 0x6b7176;
    for (size_t s = 0; s < sizeof attn_shapes / sizeof attn_shapes[0]; s++) {
        const struct attn_shape *sh = &attn_shapes[s];
        int n_kv = sh->pos0 + (int)sh->n;
        float *p = rand_floats((size_t)sh->heads * sh->n * n_kv, &rng, 0, 1);
        float *vc = rand_floats((size_t)n_kv * sh->kv * sh->hd, &rng, -1, 1);
        kern_args a = {.x = p,
                       .vc = vc,
                       .n = sh->n,
                       .n_head = sh->heads,
                       .n_head_kv = sh->kv,
                       .head_dim = sh->hd,
                       .n_kv = n_kv,
                       .pos0 = sh->pos0};
        char what[80];
        snprintf(what, sizeof what, "n=%lld H=%d KV=%d hd=%d pos0=%d", (long long)sh->n, sh->heads, sh->kv,
                 sh->hd, sh->pos0);
        /* f32 sums of <= 41 terms (observed <= 3e-7) */
        assert_int_equal(
            compare_variants(*state, KERN_OP_KQV, &a, (size_t)(sh->n * sh->heads * sh->hd), 2e-6, what), 1);
        free(p);
        free(vc);
    }
}

static void test_softmax(void **state)
{
    uint64_t rng = 0x50f7;
    const struct {
        int64_t n, m;
        int mask;
    } shapes[] = {
        {1, 1, 0}, {5, 3, 0}, {4, 17, 0}, {3, 130, 0}, {70, 9, 1}, {14, 41, 1}, {200, 300, 1},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t n = shapes[s].n, m = shapes[s].m;
        float *x = rand_floats((size_t)(n * m), &rng, -10, 10);
        if (shapes[s].mask) {
            /* a causal-looking pattern: row i keeps i % m + 1 entries, and
             * row 1 is all -inf */
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = i % m + 1; j < m; j++)
                    x[i * m + j] = -INFINITY;
            for (int64_t j = 0; j < m; j++)
                x[1 * m + j] = -INFINITY;
        }
        kern_args a = {.x = x, .n = n, .m = m};
        char what[64];
        snprintf(what, sizeof what, "n=%lld m=%lld mask=%d", (long long)n, (long long)m, shapes[s].mask);
        /* polynomial expf within ~2 ulp, f32 sum of <= 300 terms
         * (observed <= 2e-7) */
        assert_int_equal(compare_variants(*state, KERN_OP_SOFTMAX, &a, (size_t)(n * m), 2e-6, what), 1);
        free(x);
    }
}

/* NaN in a row of scores: every variant makes the whole row NaN, as ref
 * and torch do (attack 26, F1: a row of NaN and -inf came out all 0, so a
 * NaN in q vanished at kq_soft); a row all -inf still gives 0. Rows of
 * every length class (one vector, the scalar tail, several vectors), the
 * NaN in a vector and in the tail, many rows (the threaded split). */
static void test_softmax_nan(void **state)
{
    enum { KINDS = 7, REPS = 60 };
    static const int64_t ms[] = {1, 3, 8, 13, 40};
    uint64_t rng = 0x5a4e;
    for (size_t s = 0; s < sizeof ms / sizeof ms[0]; s++) {
        int64_t m = ms[s], n = KINDS * REPS;
        float *x = rand_floats((size_t)(n * m), &rng, -10, 10), *y = xmalloc((size_t)(n * m) * sizeof *y);
        for (int64_t i = 0; i < n; i++) {
            float *r = x + i * m;
            switch (i % KINDS) {
            case 0: /* all NaN */
                for (int64_t j = 0; j < m; j++)
                    r[j] = NAN;
                break;
            case 1: /* NaN, then the causal mask: kq of a query row that is NaN */
                for (int64_t j = 0; j < m; j++)
                    r[j] = j <= m / 2 ? NAN : -INFINITY;
                break;
            case 2: /* one NaN in the first vector, masked tail */
                r[0] = NAN;
                for (int64_t j = m - m / 3; j < m && j > 0; j++)
                    r[j] = -INFINITY;
                break;
            case 3: /* one NaN at the end (the scalar tail where m % 8 != 0) */
                r[m - 1] = NAN;
                break;
            case 4: /* nothing to attend to: all 0 */
                for (int64_t j = 0; j < m; j++)
                    r[j] = -INFINITY;
                break;
            case 5: /* NaN and -inf interleaved */
                for (int64_t j = 0; j < m; j++)
                    r[j] = j % 2 ? NAN : -INFINITY;
                if (m == 1)
                    r[0] = NAN;
                break;
            default: /* numbers: a row as usual */
                break;
            }
        }
        kern_args a = {.x = x, .n = n, .m = m};
        for (size_t v = 0; v < kern_cpu_variant_count; v++) {
            const kern_variant *kv = &kern_cpu_variants[v];
            if (kv->op != KERN_OP_SOFTMAX)
                continue;
            for (int cfg = 0; cfg < N_CFG; cfg++) {
                kern_ctx c = cfg_ctx(*state, cfg);
                for (int64_t i = 0; i < n * m; i++)
                    y[i] = 12345.0f; /* not NaN: the NaN must be the kernel's */
                a.y = y;
                assert_int_equal(kv->fn(&c, &a), 0);
                for (int64_t i = 0; i < n; i++)
                    for (int64_t j = 0; j < m; j++) {
                        float got = y[i * m + j];
                        int kind = (int)(i % KINDS);
                        int ok = kind == 4 ? got == 0.0f : kind == 6 ? isfinite(got) : isnan(got);
                        if (!ok)
                            fail_msg("softmax/%s m=%lld cfg %d: row %lld (kind %d) y[%lld] = %.9g", kv->name,
                                     (long long)m, cfg, (long long)i, kind, (long long)j, (double)got);
                    }
            }
        }
        free(x);
        free(y);
    }
}

static void test_eltwise(void **state)
{
    uint64_t rng = 0xe1e;
    const struct {
        int64_t n, k;
        float lo, hi;
    } shapes[] = {
        {1, 1, -8, 8},     {1, 7, -8, 8},    {3, 1000, -8, 8},
        {2, 40000, -8, 8}, {5, 4864, -6, 6}, {2, 333, -100, 100}, /* tails of gelu and silu, exp overflow */
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t n = shapes[s].n, k = shapes[s].k;
        float *x = rand_floats((size_t)(n * k), &rng, shapes[s].lo, shapes[s].hi);
        float *x2 = rand_floats((size_t)(n * k), &rng, -2, 2);
        kern_args a = {.x = x, .x2 = x2, .n = n, .k = k};
        char what[64];
        snprintf(what, sizeof what, "n=%lld k=%lld", (long long)n, (long long)k);
        assert_int_equal(compare_variants(*state, KERN_OP_ADD, &a, (size_t)(n * k), 0.0, what), 1);
        /* the exp form of gelu and silu against f64 tanh/exp: a few ulp */
        assert_int_equal(compare_variants(*state, KERN_OP_GELU, &a, (size_t)(n * k), 1e-6, what), 1);
        assert_int_equal(compare_variants(*state, KERN_OP_SWIGLU, &a, (size_t)(n * k), 1e-6, what), 1);
        free(x);
        free(x2);
    }
    /* near the ends of exp's range: -x/e^88 must come out as the tiny
     * number it is, not NaN or garbage */
    float ex1[8] = {-1e4f, -88.5f, -13, 88.5f, 20, -20, -87, -90};
    /* huge and infinite: the limits, no NaN, inf where ref has inf */
    float ex2[8] = {1e30f, -1e30f, INFINITY, 1e4f, -1e4f, 3e38f, -3e38f, 50};
    float up[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    kern_args e = {.x = ex1, .x2 = up, .n = 1, .k = 8};
    assert_int_equal(compare_variants(*state, KERN_OP_GELU, &e, 8, 1e-6, "near exp limits"), 1);
    assert_int_equal(compare_variants(*state, KERN_OP_SWIGLU, &e, 8, 1e-6, "near exp limits"), 1);
    e.x = ex2;
    assert_int_equal(compare_variants(*state, KERN_OP_GELU, &e, 8, 1e-6, "huge"), 1);
    assert_int_equal(compare_variants(*state, KERN_OP_SWIGLU, &e, 8, 1e-6, "huge"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embd),    cmocka_unit_test(test_norm),    cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_view),    cmocka_unit_test(test_rope),    cmocka_unit_test(test_kq),
        cmocka_unit_test(test_kqv),     cmocka_unit_test(test_softmax), cmocka_unit_test(test_softmax_nan),
        cmocka_unit_test(test_eltwise),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
