/* test_kernels_cuda: every CUDA kernel variant of every op kind against the
 * CPU `ref` variant on the same inputs, plus the registry's CUDA entries, the
 * CUDA memory ops and malformed calls. Per-pass values read on the device,
 * the fast path's kernels and CUDA graph capture: test_kernels_cuda_graph.
 *
 * Inputs are random and never zero (tu_fill_random); device outputs are
 * poisoned with NaN before every run, so an element a kernel forgot to write
 * fails the comparison. Shapes are odd on purpose (k not a multiple of 8,
 * pointers 4 bytes off 16-byte alignment, n = 1 and n > 1, pos0 > 0, GQA with
 * n_head_kv < n_head and == 1) so that every fast path and every fallback of
 * the opt kernels runs. Weight types: F32 F16 BF16 and each block type that
 * quant_quantize_row can make.
 *
 * Tolerances (max |gpu - cpu| / max |cpu|, tk_tol below):
 *   ref variants 2e-6: the same f64 formulas as the CPU ref; only the last
 *     f32 rounding and a libm ulp may differ.
 *   opt: f32 accumulation instead of f64: a dot of length k carries about
 *     sqrt(k) * 6e-8 relative error, so 2e-5 for MATMUL/KQ/KQV/NORM (k up to
 *     4096), 1e-5 for SOFTMAX, 2e-6 for elementwise ops (accurate expf/tanhf,
 *     1-2 ulp) and ROPE (f64 angle), 8e-6 for GELU (its tail's
 *     conditioning: tk_tol), exact for VIEW.
 *   tc MATMUL: x and weights rounded to f16 (2^-11 relative each) before an
 *     f32-accumulated dot: about 3e-4 of max |y| on these inputs, so 4e-3.
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
#include "kernels_cuda_util.h"
#include "quant.h"
#include "quantize.h"
#include "testutil.h"

/* the weight types every op that reads weights runs over */
static const int tk_wtypes[] = {XF_TYPE_F32,  XF_TYPE_F16,  XF_TYPE_BF16, XF_TYPE_Q8_0,
                                XF_TYPE_Q4_0, XF_TYPE_Q4_1, XF_TYPE_Q5_0, XF_TYPE_Q5_1,
                                XF_TYPE_Q4_K, XF_TYPE_Q5_K, XF_TYPE_Q6_K};
#define TK_NTYPES (sizeof tk_wtypes / sizeof tk_wtypes[0])

/* ---- EMBD --------------------------------------------------------------- */

static void test_embd(void **state)
{
    (void)state;
    int skipped = 0;
    for (size_t t = 0; t < TK_NTYPES; t++) {
        int64_t ks[4];
        int nk = tk_klist(tk_wtypes[t], ks);
        for (int kk = 0; kk < nk; kk++) {
            for (int c = 0; c < 3; c++) {
                int64_t k = ks[kk], vocab = 13, n = c == 0 ? 1 : 5;
                int pos0 = c == 2 ? 9 : 0;
                int w2_type = c == 1 ? XF_TYPE_F16 : XF_TYPE_F32;
                size_t wb, w2b = 0;
                void *w = tk_weights(tk_wtypes[t], vocab, k, &wb);
                if (!w) {
                    skipped++;
                    continue;
                }
                int64_t n_ctx = pos0 + n + 2;
                void *w2 = c > 0 ? tk_weights(w2_type, n_ctx, k, &w2b) : NULL;
                int32_t tok[8];
                for (int i = 0; i < n; i++)
                    tok[i] = tk_rand_int(0, (int)vocab - 1);
                float *yh = malloc((size_t)(n * k) * sizeof *yh); /* [n, k] */
                tk_arena ar = {0};
                int skew = kk == 1 && c == 2;
                kern_args ha = {.w = w, .w_type = tk_wtypes[t], .w2 = w2, .w2_type = w2_type, .y = yh,
                                .tok = tok, .n = n, .k = k, .pos0 = pos0};
                kern_args da = ha;
                da.w = tk_dev(&ar, w, wb, skew);
                da.w2 = w2 ? tk_dev(&ar, w2, w2b, 0) : NULL;
                da.y = tk_dev(&ar, NULL, (size_t)(n * k) * sizeof(float), skew);
                char what[128];
                snprintf(what, sizeof what, "%s n=%lld k=%lld pos0=%d w2=%s skew=%d",
                         quant_type_name(tk_wtypes[t]), (long long)n, (long long)k, pos0,
                         w2 ? quant_type_name(w2_type) : "none", skew);
                tk_check(KERN_OP_EMBD, &ha, &da, (size_t)(n * k), what);
                tk_arena_free(&ar);
                free(yh);
                free(w);
                free(w2);
            }
        }
    }
    /* more tokens than one launch carries ids for */
    {
        int64_t n = 600, k = 24, vocab = 50;
        size_t wb;
        void *w = tk_weights(XF_TYPE_F32, vocab, k, &wb);
        int32_t *tok = malloc((size_t)n * sizeof *tok);
        for (int64_t i = 0; i < n; i++)
            tok[i] = tk_rand_int(0, (int)vocab - 1);
        float *yh = malloc((size_t)(n * k) * sizeof *yh);
        tk_arena ar = {0};
        kern_args ha = {.w = w, .w_type = XF_TYPE_F32, .y = yh, .tok = tok, .n = n, .k = k};
        kern_args da = ha;
        da.w = tk_dev(&ar, w, wb, 0);
        da.y = tk_dev(&ar, NULL, (size_t)(n * k) * sizeof(float), 0);
        tk_check(KERN_OP_EMBD, &ha, &da, (size_t)(n * k), "F32 n=600 (several id chunks)");
        tk_arena_free(&ar);
        free(yh);
        free(tok);
        free(w);
    }
    if (skipped)
        print_message("embd: %d cases skipped: quant_quantize_row cannot make their type\n", skipped);
}

/* ---- NORM / RMSNORM ----------------------------------------------------- */

static void norm_cases(kern_op op)
{
    static const int64_t ks[] = {1, 7, 768, 1025, 4096};
    for (size_t kk = 0; kk < sizeof ks / sizeof ks[0]; kk++) {
        for (int c = 0; c < 3; c++) {
            int64_t k = ks[kk], n = c == 0 ? 1 : 3 + c;
            int skew = c == 2;
            float *x = tk_host_random((size_t)(n * k), -1.0f, 3.0f); /* mean far from 0 */
            float *g = tk_host_random((size_t)k, 0.5f, 1.5f), *b = tk_host_random((size_t)k, -0.5f, 0.5f);
            float *yh = malloc((size_t)(n * k) * sizeof *yh);
            tk_arena ar = {0};
            kern_args ha = {.x = x, .w = g, .w_type = XF_TYPE_F32, .b = op == KERN_OP_NORM && c != 1 ? b : NULL,
                            .y = yh, .n = n, .k = k, .eps = 1e-5f};
            kern_args da = ha;
            da.x = tk_dev(&ar, x, (size_t)(n * k) * sizeof(float), skew);
            da.w = tk_dev(&ar, g, (size_t)k * sizeof(float), 0);
            da.b = ha.b ? tk_dev(&ar, b, (size_t)k * sizeof(float), 0) : NULL;
            da.y = tk_dev(&ar, NULL, (size_t)(n * k) * sizeof(float), skew);
            char what[96];
            snprintf(what, sizeof what, "n=%lld k=%lld bias=%d skew=%d", (long long)n, (long long)k, ha.b != NULL,
                     skew);
            tk_check(op, &ha, &da, (size_t)(n * k), what);
            tk_arena_free(&ar);
            free(x);
            free(g);
            free(b);
            free(yh);
        }
    }
}

static void test_norm(void **state)
{
    (void)state;
    norm_cases(KERN_OP_NORM);
}

static void test_rmsnorm(void **state)
{
    (void)state;
    norm_cases(KERN_OP_RMSNORM);
}

/* ---- MATMUL ------------------------------------------------------------- */

typedef struct tk_mm_shape {
    int64_t n, m;
} tk_mm_shape;

static void test_matmul(void **state)
{
    (void)state;
    static const tk_mm_shape shapes[] = {{1, 37}, {3, 50}, {4, 33}, {9, 70}, {33, 129}, {130, 67}, {70, 131}};
    int skipped = 0;
    for (size_t t = 0; t < TK_NTYPES; t++) {
        int type = tk_wtypes[t];
        int64_t ks[4];
        int nk = tk_klist(type, ks);
        for (int kk = 0; kk < nk; kk++) {
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                int64_t n = shapes[s].n, m = shapes[s].m + tk_rand_int(0, 3), k = ks[kk];
                size_t wb;
                void *w = tk_weights(type, m, k, &wb);
                if (!w) {
                    skipped++;
                    continue;
                }
                float *x = tk_host_random((size_t)(n * k), -1.0f, 1.0f), *b = tk_host_random((size_t)m, -1.0f, 1.0f);
                float *yh = malloc((size_t)(n * m) * sizeof *yh); /* [n, m] */
                int skew = (s == 1 || s == 3 || s == 6) && kk == 1;
                /* scratch: all of it, room for 40 weight rows (decode in rounds), none (fallbacks) */
                int nscr = n > 4 ? 3 : 1;
                for (int sc = 0; sc < nscr; sc++) {
                    tk_arena ar = {0};
                    kern_args ha = {.x = x, .w = w, .w_type = type, .b = s % 2 ? b : NULL, .y = yh, .n = n,
                                    .k = k, .m = m};
                    kern_args da = ha;
                    da.x = tk_dev(&ar, x, (size_t)(n * k) * sizeof(float), skew);
                    da.w = tk_dev(&ar, w, wb, skew);
                    da.b = ha.b ? tk_dev(&ar, b, (size_t)m * sizeof(float), 0) : NULL;
                    da.y = tk_dev(&ar, NULL, (size_t)(n * m) * sizeof(float), 0);
                    size_t scr = sc == 0 ? TK_SCRATCH : sc == 1 ? (size_t)(40 * k) * sizeof(float) : 0;
                    tk.ctx.scratch = scr ? tk.scratch : NULL;
                    tk.ctx.scratch_size = scr;
                    char what[128];
                    snprintf(what, sizeof what, "%s n=%lld k=%lld m=%lld bias=%d skew=%d scratch=%zu",
                             quant_type_name(type), (long long)n, (long long)k, (long long)m, ha.b != NULL, skew,
                             scr);
                    tk_check(KERN_OP_MATMUL, &ha, &da, (size_t)(n * m), what);
                    tk_arena_free(&ar);
                }
                tk.ctx.scratch = tk.scratch;
                tk.ctx.scratch_size = TK_SCRATCH;
                free(w);
                free(x);
                free(b);
                free(yh);
            }
        }
    }
    if (skipped)
        print_message("matmul: %d cases skipped: quant_quantize_row cannot make their type\n", skipped);
}

/* matrices taller than MV_WARP_ROWS_MAX: the matrix-vector kernel gives
 * short rows 8 or 16 lanes there (below that, a warp each) */
static void test_matmul_tall(void **state)
{
    (void)state;
    static const int types[] = {XF_TYPE_F16, XF_TYPE_Q8_0};
    static const int64_t ks[] = {64, 512};
    for (int ti = 0; ti < 2; ti++)
        for (int kk = 0; kk < 2; kk++)
            for (int64_t n = 1; n <= 3; n += 2) {
                int64_t k = ks[kk], m = 4100;
                size_t wb;
                void *w = tk_weights(types[ti], m, k, &wb);
                assert_non_null(w);
                float *x = tk_host_random((size_t)(n * k), -1, 1), *b = tk_host_random((size_t)m, -1, 1);
                float *yh = malloc((size_t)(n * m) * sizeof *yh);
                tk_arena ar = {0};
                kern_args ha = {.x = x, .w = w, .w_type = types[ti], .b = b, .y = yh, .n = n, .k = k, .m = m};
                kern_args da = ha;
                da.x = tk_dev(&ar, x, (size_t)(n * k) * 4, 0);
                da.w = tk_dev(&ar, w, wb, 0);
                da.b = tk_dev(&ar, b, (size_t)m * 4, 0);
                da.y = tk_dev(&ar, NULL, (size_t)(n * m) * 4, 0);
                char what[96];
                snprintf(what, sizeof what, "%s n=%lld k=%lld m=%lld", quant_type_name(types[ti]), (long long)n,
                         (long long)k, (long long)m);
                tk_check(KERN_OP_MATMUL, &ha, &da, (size_t)(n * m), what);
                tk_arena_free(&ar);
                free(w);
                free(x);
                free(b);
                free(yh);
            }
}

/* opt's prefill product on tensor cores (matmul_split.cu) against the CPU
 * ref, token by token: x rows scaled from 2^-80 to 2^80 (each token gets its
 * own power of two: an error measured over the whole output would not see the
 * small ones), shapes past the 64 x 64 tiles, k a multiple of 32 (what the
 * path takes); then Inf and NaN in x and an Inf weight, which the split form
 * alone would turn into NaN where the ref has Inf; and all-positive F16 sums
 * over k = 4096, where a sum left in the tensor cores' accumulator drifts. */
static void tk_split_case(int type, int64_t n, int64_t k, int64_t m, int special, double *worst)
{
    size_t wb;
    void *w = tk_weights(type, m, k, &wb);
    assert_non_null(w);
    float *x = tk_host_random((size_t)(n * k), -1.0f, 1.0f), *b = tk_host_random((size_t)m, -1.0f, 1.0f);
    for (int64_t t = 0; t < n; t++)
        for (int64_t j = 0; j < k; j++)
            x[t * k + j] = ldexpf(x[t * k + j], special ? 0 : (int)((t * 37) % 161) - 80);
    if (special == 2) {
        /* all terms positive: a sum whose rounding drifts one way if the
         * tensor cores' truncating accumulation ran over all of k */
        for (int64_t i = 0; i < n * k; i++)
            x[i] = 0.5f + 0.5f * fabsf(x[i]);
        for (int64_t i = 0; i < m * k; i++)
            ((uint16_t *)w)[i] = xf_f32_to_f16(0.5f + 0.5f * fabsf(xf_f16_to_f32(((uint16_t *)w)[i])));
    }
    if (special == 1) {
        x[2 * k + 5] = INFINITY;
        x[4 * k + 7] = -INFINITY;
        x[4 * k + 100] = INFINITY;
        x[6 * k + 3] = NAN;
        if (type == XF_TYPE_F16)
            ((uint16_t *)w)[3 * k + 10] = 0x7C00; /* +Inf at row 3, column 10 */
    }
    float *yh = malloc((size_t)(n * m) * sizeof *yh), *got = malloc((size_t)(n * m) * sizeof *got);
    float *nan = malloc((size_t)(n * m) * sizeof *nan);
    assert_true(yh && got && nan);
    tu_poison(nan, (size_t)(n * m));
    tk_arena ar = {0};
    /* a bias of ~1 would hide a token's error at 2^-80: only with the non-finite values */
    kern_args ha = {.x = x, .w = w, .w_type = type, .b = special == 1 ? b : NULL, .y = yh, .n = n, .k = k, .m = m};
    kern_args da = ha;
    da.x = tk_dev(&ar, x, (size_t)(n * k) * sizeof(float), 0);
    da.w = tk_dev(&ar, w, wb, 0);
    da.b = ha.b ? tk_dev(&ar, b, (size_t)m * sizeof(float), 0) : NULL;
    da.y = tk_dev(&ar, NULL, (size_t)(n * m) * sizeof(float), 0);
    kern_ctx cpu = {.n_threads = 1};
    assert_int_equal(kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "ref")->fn(&cpu, &ha), 0);
    const kern_variant *opt = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "opt");
    assert_non_null(opt);
    /* what the split path asks for fits the tests' scratch, so it is the
     * path that runs (with less, opt falls back to SGEMM) */
    size_t want = kern_variant_scratch(opt, &da);
    assert_true(want > 0 && want <= tk.ctx.scratch_size);
    char what[96];
    snprintf(what, sizeof what, "%s n=%lld k=%lld m=%lld special=%d", quant_type_name(type), (long long)n,
             (long long)k, (long long)m, special);
    tk_run_cuda(opt, &da, got, nan, (size_t)(n * m), what);
    /* the positive sums (H100): the kept path 9.4e-7 at worst, cuBLAS SGEMM
     * 5.2e-7; a mutant that leaves the sum in the MMA accumulator over all
     * of k, 3.1e-5 */
    double tol = special == 2 ? 4e-6 : 2e-5;
    int nonfinite = 0;
    for (int64_t t = 0; t < n; t++) {
        double err = tu_rel_max_err(got + t * m, yh + t * m, (size_t)m);
        if (!(err <= tol))
            for (int64_t r = 0; r < m; r++)
                if (!(got[t * m + r] == yh[t * m + r]) && !(isnan(got[t * m + r]) && isnan(yh[t * m + r])) &&
                    !(fabs((double)got[t * m + r] - yh[t * m + r]) <= tol * fabs(yh[t * m + r]) + 1e-30))
                    fail_msg("matmul/opt split [%s]: token %lld rel err %.3g; y[%lld] = %.9g, cpu ref %.9g", what,
                             (long long)t, err, (long long)r, got[t * m + r], yh[t * m + r]);
        if (err > *worst && err <= 1.0)
            *worst = err;
        for (int64_t r = 0; r < m; r++)
            nonfinite += !isfinite(yh[t * m + r]);
    }
    /* the special case must have reached both kinds of non-finite output */
    if (special == 1)
        assert_true(nonfinite >= m + 2);
    if (special == 2)
        print_message("matmul split: all-positive F16 k=%lld: worst rel err %.3g\n", (long long)k, *worst);
    tk_arena_free(&ar);
    free(w);
    free(x);
    free(b);
    free(yh);
    free(got);
    free(nan);
}

static void test_matmul_split(void **state)
{
    (void)state;
    static const int types[] = {XF_TYPE_F16,  XF_TYPE_Q8_0, XF_TYPE_Q4_0, XF_TYPE_Q4_1, XF_TYPE_Q5_0,
                                XF_TYPE_Q5_1, XF_TYPE_Q4_K, XF_TYPE_Q5_K, XF_TYPE_Q6_K};
    double worst = 0.0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        int64_t k = quant_type_get(types[i])->block_elems == 256 ? 512 : 96;
        tk_split_case(types[i], 67, k, 70 + tk_rand_int(0, 3), 0, &worst);
        tk_split_case(types[i], 130, 2 * k, 131, 0, &worst);
        tk_split_case(types[i], 9, k, 70, 1, &worst);
    }
    /* k = 1920: 60 tiles of 32 in 7 slices of 9, an odd count that the
     * wgmma product (tiles of 64) rounds up to 10 (6 slices) */
    tk_split_case(XF_TYPE_Q8_0, 130, 1920, 131, 0, &worst);
    print_message("matmul split: worst per-token rel err %.3g\n", worst);
    worst = 0.0;
    /* 7 x 20 output tiles of 128 tokens x 128 rows (wgmma; mma.sync's 64
     * tokens make 14 x 20): as many blocks as an H100 or H200 has SMs or
     * more, so k is not cut into slices and one block sums all of it; x's
     * planes (14.7 MB) fit the scratch */
    tk_split_case(XF_TYPE_F16, 896, 4096, 2500, 2, &worst);
}

/* every variant refuses a type it cannot decode, and writes nothing */
static void test_matmul_unsupported_type(void **state)
{
    (void)state;
    int64_t n = 2, k = 256, m = 8;
    uint64_t rb;
    assert_true(quant_row_bytes(XF_TYPE_Q2_K, k, &rb));
    tk_arena ar = {0};
    float *x = tk_host_random((size_t)(n * k), -1, 1);
    kern_args da = {.w_type = XF_TYPE_Q2_K, .n = n, .k = k, .m = m};
    da.x = tk_dev(&ar, x, (size_t)(n * k) * sizeof(float), 0);
    da.w = tk_dev(&ar, NULL, (size_t)(rb * m), 0);
    da.y = tk_dev(&ar, NULL, (size_t)(n * m) * sizeof(float), 0);
    size_t nv;
    const kern_variant *v = kern_registry(&nv);
    for (size_t i = 0; i < nv; i++)
        if (v[i].op == KERN_OP_MATMUL && v[i].backend == KERN_BACKEND_CUDA)
            assert_int_equal(v[i].fn(&tk.ctx, &da), -1);
    tk_arena_free(&ar);
    free(x);
}

/* ---- VIEW --------------------------------------------------------------- */

static void test_view(void **state)
{
    (void)state;
    static const int64_t ds[] = {5, 64};
    for (size_t d = 0; d < 2; d++)
        for (int c = 0; c < 3; c++) {
            int64_t D = ds[d], n = c == 0 ? 1 : 6, stride = 3 * D, off = c * D, m = D;
            float *x = tk_host_random((size_t)(n * stride), -1, 1);
            float *yh = malloc((size_t)(n * m) * sizeof *yh);
            tk_arena ar = {0};
            kern_args ha = {.x = x, .y = yh, .n = n, .m = m, .x_stride = stride, .off = off};
            kern_args da = ha;
            da.x = tk_dev(&ar, x, (size_t)(n * stride) * sizeof(float), c == 2);
            da.y = tk_dev(&ar, NULL, (size_t)(n * m) * sizeof(float), 0);
            char what[64];
            snprintf(what, sizeof what, "n=%lld stride=%lld off=%lld", (long long)n, (long long)stride,
                     (long long)off);
            tk_check(KERN_OP_VIEW, &ha, &da, (size_t)(n * m), what);
            tk_arena_free(&ar);
            free(x);
            free(yh);
        }
}

/* ---- ROPE --------------------------------------------------------------- */

static void test_rope(void **state)
{
    (void)state;
    static const int hds[] = {2, 8, 64, 128};
    static const int pos[] = {0, 100, 2000};
    for (size_t h = 0; h < 4; h++)
        for (int c = 0; c < 3; c++) {
            int hd = hds[h], nh = c == 0 ? 1 : 3;
            int64_t n = c == 0 ? 1 : 5;
            size_t total = (size_t)(n * nh * hd);
            float *x = tk_host_random(total, -2, 2);
            float *yh = malloc(total * sizeof *yh);
            tk_arena ar = {0};
            kern_args ha = {.x = x, .y = yh, .n = n, .n_head = nh, .head_dim = hd, .pos0 = pos[c],
                            .rope_base = c == 2 ? 1e6f : 1e4f};
            kern_args da = ha;
            da.x = tk_dev(&ar, x, total * sizeof(float), 0);
            da.y = tk_dev(&ar, NULL, total * sizeof(float), 0);
            char what[64];
            snprintf(what, sizeof what, "n=%lld heads=%d hd=%d pos0=%d", (long long)n, nh, hd, pos[c]);
            tk_check(KERN_OP_ROPE, &ha, &da, total, what);
            tk_arena_free(&ar);
            free(x);
            free(yh);
        }
}


static const tk_attn tk_attn_cases[] = {
    {1, 9, 4, 4, 64},  /* decode, MHA */
    {5, 0, 4, 2, 64},  /* prefill, GQA */
    {4, 3, 6, 1, 8},   /* prefill after a prefix, MQA */
    {3, 40, 4, 2, 5},  /* odd head_dim, several 32-wide tiles */
    {1, 70, 2, 1, 128},
    {2, 5, 2, 2, 256}, /* the widest head opt KQV takes */
    /* prefill tiles (attn_prefill.cu, 64 x 64): partial tiles, a KQ tile
     * wholly masked (keys 64.. against queries 0..63 of a 70-token pass
     * from 0), a partial second tile of dims (80), two of them (128) */
    {70, 0, 14, 2, 64},
    {70, 37, 14, 2, 64},
    {130, 3, 5, 1, 80},
    {65, 0, 4, 4, 128},
};

static void attn_case(kern_op op, const tk_attn *c)
{
    int n_kv = c->pos0 + c->n, n_ctx = n_kv + 2;
    size_t qn = (size_t)c->n * c->nh * c->hd, cn = (size_t)n_ctx * c->nkv * c->hd;
    size_t sn = (size_t)c->nh * c->n * n_kv; /* [H, n, n_kv] */
    float *cache = tk_host_random(cn, -1, 1);
    float *x = op == KERN_OP_KQ ? tk_host_random(qn, -1, 1) : tk_host_random(sn, 0.001f, 1.0f);
    size_t xn = op == KERN_OP_KQ ? qn : sn, ny = op == KERN_OP_KQ ? sn : qn;
    float *yh = malloc(ny * sizeof *yh);
    tk_arena ar = {0};
    kern_args ha = {.x = x, .y = yh, .n = c->n, .n_head = c->nh, .n_head_kv = c->nkv, .head_dim = c->hd,
                    .n_kv = n_kv, .pos0 = c->pos0, .scale = 1.0f / sqrtf((float)c->hd)};
    if (op == KERN_OP_KQ)
        ha.kc = cache;
    else
        ha.vc = cache;
    kern_args da = ha;
    da.x = tk_dev(&ar, x, xn * sizeof(float), 0);
    float *dc = tk_dev(&ar, cache, cn * sizeof(float), 0);
    if (op == KERN_OP_KQ)
        da.kc = dc;
    else
        da.vc = dc;
    da.y = tk_dev(&ar, NULL, ny * sizeof(float), 0);
    char what[96];
    snprintf(what, sizeof what, "n=%d pos0=%d heads=%d/%d hd=%d n_kv=%d", c->n, c->pos0, c->nh, c->nkv, c->hd,
             n_kv);
    tk_check(op, &ha, &da, ny, what);
    tk_arena_free(&ar);
    free(cache);
    free(x);
    free(yh);
}

static void test_kq(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof tk_attn_cases / sizeof tk_attn_cases[0]; i++)
        attn_case(KERN_OP_KQ, &tk_attn_cases[i]);
}

static void test_kqv(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof tk_attn_cases / sizeof tk_attn_cases[0]; i++)
        attn_case(KERN_OP_KQV, &tk_attn_cases[i]);
}

/* KQ with an Inf in q and a -Inf in a key row: the tensor-core split
 * turns an Inf into Inf + NaN, so opt computes such scores again as the
 * plain chain; every CUDA variant must give the CPU ref's Inf (its sign
 * included) or NaN where it does, and be within tolerance elsewhere. */
static void test_kq_inf(void **state)
{
    (void)state;
    const int H = 4, KV = 2, hd = 64, n = 70, pos0 = 3, n_kv = pos0 + n, n_ctx = n_kv + 2;
    size_t qn = (size_t)n * H * hd, cn = (size_t)n_ctx * KV * hd, sn = (size_t)H * n * n_kv;
    float *q = tk_host_random(qn, -1, 1), *k = tk_host_random(cn, -1, 1); /* [n, H, hd], [n_ctx, KV, hd] */
    q[((size_t)5 * H + 1) * hd + 7] = INFINITY;                           /* token 5, head 1 (kv head 0) */
    k[((size_t)40 * KV + 0) * hd + 9] = -INFINITY; /* key 40, kv head 0: heads 0 and 1 */
    float *want = malloc(sn * sizeof *want), *got = malloc(sn * sizeof *got), *nan = malloc(sn * sizeof *nan);
    assert_non_null(want);
    assert_non_null(got);
    assert_non_null(nan);
    tu_poison(nan, sn);
    kern_args ha = {.x = q,
                    .kc = k,
                    .y = want,
                    .n = n,
                    .n_head = H,
                    .n_head_kv = KV,
                    .head_dim = hd,
                    .n_kv = n_kv,
                    .pos0 = pos0,
                    .scale = 0.125f};
    kern_ctx cpu = {.n_threads = 1};
    assert_int_equal(kern_find(KERN_OP_KQ, KERN_BACKEND_CPU, "ref")->fn(&cpu, &ha), 0);
    tk_arena ar = {0};
    kern_args da = ha;
    da.x = tk_dev(&ar, q, qn * sizeof(float), 0);
    da.kc = tk_dev(&ar, k, cn * sizeof(float), 0);
    da.y = tk_dev(&ar, NULL, sn * sizeof(float), 0);
    double amax = 0;
    int infs = 0;
    for (size_t e = 0; e < sn; e++) {
        if (isfinite(want[e]))
            amax = fmax(amax, fabs(want[e]));
        infs += isinf(want[e]) && want[e] > 0;
    }
    assert_true(infs > 0); /* the case has +Inf scores to keep */
    size_t nv;
    const kern_variant *vv = kern_registry(&nv);
    int ran = 0;
    for (size_t v = 0; v < nv; v++) {
        if (vv[v].op != KERN_OP_KQ || vv[v].backend != KERN_BACKEND_CUDA)
            continue;
        tk_run_cuda(&vv[v], &da, got, nan, sn, "an Inf in q and in k");
        for (size_t e = 0; e < sn; e++) {
            bool ok = isnan(want[e]) ? isnan(got[e])
                      : isinf(want[e])
                          ? got[e] == want[e]
                          : fabs((double)got[e] - want[e]) <= tk_tol(KERN_OP_KQ, vv[v].name) * amax;
            if (!ok)
                fail_msg("kq/%s: score %zu = %.9g, the CPU ref %.9g", vv[v].name, e, got[e], want[e]);
        }
        ran++;
    }
    assert_true(ran >= 2);
    tk_arena_free(&ar);
    free(q);
    free(k);
    free(want);
    free(got);
    free(nan);
}

/* KQV of a prefill with the weights a causal softmax leaves (zeros past each
 * query's position): attn_prefill.cu skips a 32-key step whose weights are
 * all zero for a block's rows (64), and only where its values are finite.
 * Here keys 96..127 are zero for queries 0..63, so the skip runs; then one
 * value is made +Inf there, and every CUDA variant must give what the f64
 * sum over all keys gives: 0 * Inf = NaN where the weight is 0, +Inf where
 * it is not (the weights are positive; opt's tensor-core split alone would
 * give NaN there: such outputs are computed again as the plain chain). */
static void test_kqv_causal_zeros(void **state)
{
    (void)state;
    const int H = 4, KV = 2, hd = 64, n = 140, pos0 = 5, n_kv = pos0 + n, n_ctx = n_kv + 2, jinf = 100,
              dinf = 3;
    size_t pn = (size_t)H * n * n_kv, cn = (size_t)n_ctx * KV * hd, yn = (size_t)n * H * hd;
    float *p = tk_host_random(pn, 0.001f, 1.0f); /* [H, n, n_kv] */
    float *v = tk_host_random(cn, -1, 1);        /* [n_ctx, KV, hd] */
    for (int h = 0; h < H; h++)
        for (int i = 0; i < n; i++)
            for (int j = pos0 + i + 1; j < n_kv; j++)
                p[((size_t)h * n + i) * n_kv + j] = 0.0f;
    float *yh = malloc(yn * sizeof *yh), *got = malloc(yn * sizeof *got), *nan = malloc(yn * sizeof *nan);
    assert_non_null(yh);
    assert_non_null(got);
    assert_non_null(nan);
    tu_poison(nan, yn);
    for (int inf = 0; inf < 2; inf++) {
        if (inf)
            v[((size_t)jinf * KV + 0) * hd + dinf] = INFINITY; /* kv head 0: heads 0 and 1 */
        tk_arena ar = {0};
        kern_args ha = {.x = p, .vc = v, .y = yh, .n = n, .n_head = H, .n_head_kv = KV, .head_dim = hd,
                        .n_kv = n_kv, .pos0 = pos0};
        kern_args da = ha;
        da.x = tk_dev(&ar, p, pn * sizeof(float), 0);
        da.vc = tk_dev(&ar, v, cn * sizeof(float), 0);
        da.y = tk_dev(&ar, NULL, yn * sizeof(float), 0);
        if (!inf) {
            tk_check(KERN_OP_KQV, &ha, &da, yn, "causal zeros");
        } else {
            size_t nv;
            const kern_variant *vv = kern_registry(&nv);
            int ran = 0;
            for (size_t k = 0; k < nv; k++) {
                if (vv[k].op != KERN_OP_KQV || vv[k].backend != KERN_BACKEND_CUDA)
                    continue;
                tk_run_cuda(&vv[k], &da, got, nan, yn, "causal zeros, an Inf value");
                for (int i = 0; i < n; i++)
                    for (int h = 0; h < H; h++)
                        for (int d = 0; d < hd; d++) {
                            float g = got[((size_t)i * H + h) * hd + d];
                            if (h < 2 && d == dinf) {
                                if (pos0 + i < jinf ? !isnan(g) : g != INFINITY)
                                    fail_msg("kqv/%s: token %d head %d dim %d = %g; the f64 sum gives %s", vv[k].name,
                                             i, h, d, g, pos0 + i < jinf ? "NaN (0 * Inf)" : "+Inf");
                            } else if (!isfinite(g)) {
                                fail_msg("kqv/%s: token %d head %d dim %d = %g, away from the Inf", vv[k].name, i, h,
                                         d, g);
                            }
                        }
                ran++;
            }
            assert_true(ran >= 2);
        }
        tk_arena_free(&ar);
    }
    free(p);
    free(v);
    free(yh);
    free(got);
    free(nan);
}

/* ---- SOFTMAX ------------------------------------------------------------ */

static void test_softmax(void **state)
{
    (void)state;
    /* 8192: the longest row of the warp-a-row kernel (a chunk a lane) */
    static const int64_t ms[] = {1, 7, 300, 2500, 8192};
    for (size_t mm = 0; mm < sizeof ms / sizeof *ms; mm++)
        for (int c = 0; c < 3; c++) {
            /* 1030 rows: opt's warp-a-row kernel (n >= 1024) */
            int64_t m = ms[mm], n = c == 0 ? 1 : c == 1 ? 6 : 1030;
            float *x = tk_host_random((size_t)(n * m), -8, 8);
            /* masked scores as KQ makes them, never a whole row but in the last row */
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 1; j < m; j++)
                    if (tu_rand_u64(&tk.rng) % 5 == 0)
                        x[i * m + j] = -INFINITY;
            if (n > 1)
                for (int64_t j = 0; j < m; j++)
                    x[(n - 1) * m + j] = -INFINITY;
            float *yh = malloc((size_t)(n * m) * sizeof *yh);
            tk_arena ar = {0};
            kern_args ha = {.x = x, .y = yh, .n = n, .m = m};
            kern_args da = ha;
            da.x = tk_dev(&ar, x, (size_t)(n * m) * sizeof(float), 0);
            da.y = tk_dev(&ar, NULL, (size_t)(n * m) * sizeof(float), 0);
            char what[64];
            snprintf(what, sizeof what, "n=%lld m=%lld", (long long)n, (long long)m);
            tk_check(KERN_OP_SOFTMAX, &ha, &da, (size_t)(n * m), what);
            if (n >= 1024) {
                /* the same bits as one block a row (1000 rows take that kernel) */
                const kern_variant *opt = kern_find(KERN_OP_SOFTMAX, KERN_BACKEND_CUDA, "opt");
                assert_non_null(opt);
                size_t nb = (size_t)(1000 * m);
                kern_args db = da;
                db.n = 1000;
                db.y = tk_dev(&ar, NULL, nb * sizeof(float), 0);
                assert_int_equal(opt->fn(&tk.ctx, &da), 0);
                assert_int_equal(opt->fn(&tk.ctx, &db), 0);
                float *ga = malloc(nb * sizeof *ga), *gb = malloc(nb * sizeof *gb);
                assert_non_null(ga);
                assert_non_null(gb);
                assert_int_equal(tk.mem->to_host(&tk.ctx, ga, da.y, nb * sizeof(float)), 0);
                assert_int_equal(tk.mem->to_host(&tk.ctx, gb, db.y, nb * sizeof(float)), 0);
                for (size_t i = 0; i < nb; i++)
                    if (memcmp(&ga[i], &gb[i], sizeof(float)) != 0)
                        fail_msg("softmax/opt [%s]: y[%zu] = %.9g a warp a row, %.9g a block a row", what, i, ga[i],
                                 gb[i]);
                free(ga);
                free(gb);
            }
            tk_arena_free(&ar);
            free(x);
            free(yh);
        }
}

/* NaN in a row of scores: every CUDA softmax makes the whole row NaN, as
 * the CPU ref and torch do (attack 26, F1: a maximum that skipped NaN took
 * a row of NaN and -inf for one with nothing to attend to, all weights 0);
 * a row all -inf is still all 0, and rows of numbers are as usual. Rows of
 * one chunk and of several (the chunks' pairs combined), a block a row
 * (6 rows) and a warp a row (1030). */
static void test_softmax_nan(void **state)
{
    (void)state;
    enum { KINDS = 6 };
    static const int64_t ms[] = {7, 300, 2500};
    for (size_t mm = 0; mm < sizeof ms / sizeof *ms; mm++)
        for (int c = 0; c < 2; c++) {
            int64_t m = ms[mm], n = c == 0 ? 6 : 1030;
            float *x = tk_host_random((size_t)(n * m), -8, 8);
            for (int64_t i = 0; i < n; i++) {
                float *r = x + i * m;
                for (int64_t j = 0; j < m; j++)
                    switch (i % KINDS) {
                    case 0: /* all NaN */
                        r[j] = NAN;
                        break;
                    case 1: /* a NaN query's kq row */
                        r[j] = j <= m / 2 ? NAN : -INFINITY;
                        break;
                    case 2: /* one NaN, in the last chunk */
                        r[j] = j == m - 1 ? NAN : r[j];
                        break;
                    case 3: /* nothing to attend to */
                        r[j] = -INFINITY;
                        break;
                    case 4: /* NaN and -inf */
                        r[j] = j % 3 == 1 ? NAN : -INFINITY;
                        break;
                    default: /* numbers */
                        break;
                    }
            }
            float *y = malloc((size_t)(n * m) * sizeof *y),
                  *poison = malloc((size_t)(n * m) * sizeof *poison);
            assert_non_null(y);
            assert_non_null(poison);
            for (int64_t i = 0; i < n * m; i++)
                poison[i] = 12345.0f; /* not NaN: the NaN must be the kernel's */
            tk_arena ar = {0};
            kern_args da = {.n = n, .m = m};
            da.x = tk_dev(&ar, x, (size_t)(n * m) * sizeof(float), 0);
            da.y = tk_dev(&ar, NULL, (size_t)(n * m) * sizeof(float), 0);
            size_t nv;
            const kern_variant *v = kern_registry(&nv);
            for (size_t k = 0; k < nv; k++) {
                if (v[k].op != KERN_OP_SOFTMAX || v[k].backend != KERN_BACKEND_CUDA)
                    continue;
                char what[64];
                snprintf(what, sizeof what, "n=%lld m=%lld", (long long)n, (long long)m);
                tk_run_cuda(&v[k], &da, y, poison, (size_t)(n * m), what);
                for (int64_t i = 0; i < n; i++)
                    for (int64_t j = 0; j < m; j++) {
                        float got = y[i * m + j];
                        int kind = (int)(i % KINDS);
                        int ok = kind == 3 ? got == 0.0f : kind == 5 ? isfinite(got) : isnan(got);
                        if (!ok)
                            fail_msg("softmax/%s [%s]: row %lld (kind %d) y[%lld] = %.9g", v[k].name, what,
                                     (long long)i, kind, (long long)j, (double)got);
                    }
            }
            tk_arena_free(&ar);
            free(x);
            free(y);
            free(poison);
        }
}

/* ---- ADD / GELU / SWIGLU ------------------------------------------------ */

static void elem_cases(kern_op op)
{
    static const int64_t ts[] = {1, 7, 4096, 4099, 64};
    for (size_t t = 0; t < 5; t++)
        for (int skew = 0; skew < 2; skew++) {
            int64_t n = t == 2 ? 4 : 1, k = ts[t] / n;
            size_t total = (size_t)(n * k);
            /* the last case only below -2: GELU's tail, where 1 + tanh(u)
             * would cancel (kc_gelu); there max |y| is small too */
            float *x = tk_host_random(total, -6, t == 4 ? -2 : 6), *x2 = tk_host_random(total, -2, 2);
            float *yh = malloc(total * sizeof *yh);
            tk_arena ar = {0};
            kern_args ha = {.x = x, .x2 = op == KERN_OP_GELU ? NULL : x2, .y = yh, .n = n, .k = k};
            kern_args da = ha;
            da.x = tk_dev(&ar, x, total * sizeof(float), skew);
            da.x2 = ha.x2 ? tk_dev(&ar, x2, total * sizeof(float), 0) : NULL;
            da.y = tk_dev(&ar, NULL, total * sizeof(float), 0);
            char what[64];
            snprintf(what, sizeof what, "n=%lld k=%lld skew=%d", (long long)n, (long long)k, skew);
            tk_check(op, &ha, &da, total, what);
            tk_arena_free(&ar);
            free(x);
            free(x2);
            free(yh);
        }
}

static void test_add(void **state)
{
    (void)state;
    elem_cases(KERN_OP_ADD);
}

static void test_gelu(void **state)
{
    (void)state;
    elem_cases(KERN_OP_GELU);
}

static void test_swiglu(void **state)
{
    (void)state;
    elem_cases(KERN_OP_SWIGLU);
}

/* ---- the table, memory ops, error paths --------------------------------- */

/* every op kind has a CUDA ref and opt, names unique per op */
static void test_registry_covers_ops(void **state)
{
    (void)state;
    size_t nv;
    const kern_variant *v = kern_registry(&nv);
    for (int op = 0; op < KERN_OP_COUNT; op++) {
        assert_non_null(kern_find((kern_op)op, KERN_BACKEND_CUDA, "ref"));
        assert_non_null(kern_find((kern_op)op, KERN_BACKEND_CUDA, "opt"));
        for (size_t i = 0; i < nv; i++)
            for (size_t j = i + 1; j < nv; j++)
                if (v[i].op == (kern_op)op && v[j].op == (kern_op)op && v[i].backend == v[j].backend)
                    assert_string_not_equal(v[i].name, v[j].name);
    }
}

static void test_mem_ops(void **state)
{
    (void)state;
    const kern_mem_ops *m = kern_backend_mem(KERN_BACKEND_CUDA);
    assert_non_null(m);
    float *h = tk_host_random(1000, -1, 1), back[1000];
    float *a = m->alloc(1000 * sizeof(float)), *b = m->alloc(1000 * sizeof(float));
    assert_non_null(a);
    assert_non_null(b);
    void *z = m->alloc(0);
    assert_non_null(z); /* NULL means failure, so 0 bytes still gets a pointer */
    assert_int_equal(m->to_dev(&tk.ctx, a, h, 1000 * sizeof(float)), 0);
    assert_int_equal(m->copy(&tk.ctx, b + 1, a, 999 * sizeof(float)), 0);
    assert_int_equal(m->copy(&tk.ctx, b, a + 999, sizeof(float)), 0);
    tu_poison(back, 1000);
    assert_int_equal(m->to_host(&tk.ctx, back, b, 1000 * sizeof(float)), 0);
    assert_memory_equal(back + 1, h, 999 * sizeof(float));
    assert_memory_equal(back, h + 999, sizeof(float));
    assert_int_equal(m->to_dev(&tk.ctx, a, h, 0), 0);
    assert_int_equal(m->sync(&tk.ctx), 0);
    assert_int_equal(m->copy(&tk.ctx, a, NULL, 64), -1);
    m->free(a);
    m->free(b);
    m->free(z);
    m->free(NULL);
    free(h);
}

/* malformed calls return -1 before launching anything */
static void test_bad_args(void **state)
{
    (void)state;
    int32_t tok[2] = {1, -1};
    float dummy = 1.0f;
    size_t nv;
    const kern_variant *v = kern_registry(&nv);
    for (size_t i = 0; i < nv; i++) {
        if (v[i].backend != KERN_BACKEND_CUDA)
            continue;
        kern_args a = {.x = &dummy, .x2 = &dummy, .w = &dummy, .w_type = XF_TYPE_F32, .y = &dummy,
                       .tok = tok, .kc = &dummy, .vc = &dummy, .n = 2, .k = -1, .m = -1, .x_stride = 1,
                       .n_head = 3, .n_head_kv = 2, .head_dim = 3, .n_kv = 1, .rope_base = 1e4f};
        /* each field above is wrong for some op: k, m < 0, negative token,
         * 3 heads over 2 kv heads, odd head_dim for ROPE */
        assert_int_equal(v[i].fn(&tk.ctx, &a), -1);
    }
}

/* ---- main ---------------------------------------------------------------- */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_covers_ops),
        cmocka_unit_test(test_mem_ops),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_embd),
        cmocka_unit_test(test_norm),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_matmul_tall),
        cmocka_unit_test(test_matmul_split),
        cmocka_unit_test(test_matmul_unsupported_type),
        cmocka_unit_test(test_view),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_kq),
        cmocka_unit_test(test_kq_inf),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_softmax_nan),
        cmocka_unit_test(test_kqv),
        cmocka_unit_test(test_kqv_causal_zeros),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_swiglu),
    };
    if (tk_no_device("test_kernels_cuda", sizeof tests / sizeof tests[0]))
        return 77;
    tu_filter_from_env();
    return cmocka_run_group_tests(tests, tk_setup, tk_teardown);
}
