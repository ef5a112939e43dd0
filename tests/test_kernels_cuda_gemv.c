/* test_kernels_cuda_gemv: the one-token CUDA MATMUL (kern_cuda_gemv, which
 * the opt variant runs for n == 1 and the block types; the old matrix-vector
 * kernel for float types) against the CUDA `ref` variant (f64 dot), for
 * every weight type xfdb loads, on the matrix shapes of the Qwen2.5 and
 * GPT-2 decode steps and odd ones around them.
 *
 * Inputs are fresh random numbers (never zero); every output is poisoned
 * with NaN before each run, so an unwritten element fails. Shapes are not
 * multiples of any tile (k = 896, 4864, 768, 3072; m = 1, 7, 897, 1500,
 * 2304, 50257, 151936) so that every rows-per-block choice of gemv.cu runs
 * (R = 1, 2, 4: 256, 128, 64 lanes per row; R >= 8: a warp per row) and
 * the weight buffers are allocated to the exact byte, some 2 bytes off
 * 16-byte alignment, so that the staging's edge pieces run and a read past
 * the matrix shows under compute-sanitizer.
 * Per case: opt within tolerance of ref (max |opt - ref| / max |ref| <=
 * 2e-5, the f32-accumulation bound of test_kernels_cuda.c); kern_cuda_gemv
 * (run directly on every block type, whichever kernel opt picked) within
 * tolerance, and opt's bits where opt picked it; a second run gives the
 * same bits; kern_cuda_matmul_gelu gives opt's y and the opt GELU's bits;
 * the old kernel (kern_cuda_matvec_mv4, bench_gemv_cuda's baseline) is
 * within tolerance too; the fused launches of the decode fast path
 * (fused_decode.cu: q/k/v in one launch, two weight types in one where
 * the pair has a kernel, gate/up/swiglu, rope + cache stores) give the
 * bits of the opt calls they replace.
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
#endif

#ifdef XF_HAVE_CUDA
#define TG_TOL 2e-5

static struct {
    const kern_mem_ops *mem;
    kern_ctx ctx;
    uint64_t rng;
    int cases, gemv_cases, fused_cases;
} tg;

/* host rows x k weights of type, quantized from random [-1, 1) rows */
static uint8_t *tg_weights(int type, int64_t rows, int64_t k, uint64_t *row_bytes)
{
    assert_true(quant_row_bytes(type, k, row_bytes));
    uint8_t *w = malloc((size_t)(*row_bytes * rows));
    float *src = malloc((size_t)k * sizeof *src);
    assert_non_null(w);
    assert_non_null(src);
    for (int64_t r = 0; r < rows; r++) {
        tu_fill_random(src, (size_t)k, &tg.rng, -1.0f, 1.0f);
        assert_int_equal(quant_quantize_row(type, src, w + r * *row_bytes, k), *row_bytes);
    }
    free(src);
    return w;
}

static void *tg_dev(size_t bytes, const void *host)
{
    void *d = tg.mem->alloc(bytes);
    assert_non_null(d);
    if (host)
        assert_int_equal(tg.mem->to_dev(&tg.ctx, d, host, bytes), 0);
    return d;
}

/* host copy of device y [m] */
static float *tg_host(const float *dy, int64_t m)
{
    float *h = malloc((size_t)m * sizeof *h);
    assert_non_null(h);
    assert_int_equal(tg.mem->to_host(&tg.ctx, h, dy, (size_t)m * sizeof(float)), 0);
    return h;
}

/* runs fn (a variant or a wrapper) into the NaN-poisoned device a->y
 * [count], returns y on the host */
static float *tg_run(int (*fn)(kern_ctx *, const kern_args *), const kern_args *a, float *nan, int64_t count,
                     const char *what)
{
    size_t by = (size_t)count * sizeof(float);
    assert_int_equal(tg.mem->to_dev(&tg.ctx, a->y, nan, by), 0);
    int rc = fn(&tg.ctx, a);
    if (rc != 0)
        fail_msg("%s: returned %d", what, rc);
    return tg_host(a->y, count);
}

static void tg_expect_close(const float *got, const float *ref, int64_t m, const char *what)
{
    for (int64_t i = 0; i < m; i++)
        if (isnan(got[i]) || isinf(got[i]))
            fail_msg("%s: y[%lld] = %g (unwritten or broken)", what, (long long)i, (double)got[i]);
    double err = tu_rel_max_err(got, ref, (size_t)m);
    if (!(err <= TG_TOL))
        fail_msg("%s: rel err %.3g > %.3g", what, err, TG_TOL);
}

static int tg_gemv_only(kern_ctx *ctx, const kern_args *a) { return kern_cuda_gemv(ctx, a, NULL); }

/* The fused launches of fused_decode.cu against the opt calls they stand
 * in for, bit for bit: a (whose opt output is yo) as three jobs of one
 * kern_cuda_matvec_multi (the second with the other bias: its own opt
 * output), and as gate and up of kern_cuda_matvec_swiglu against opt
 * matmul + opt swiglu. Outputs NaN-poisoned first. A shape neither
 * one-token plan takes must launch nothing and return 1. */
static void tg_fused(const kern_args *a, const float *yo, float *nan, const float *hb, const char *what)
{
    int64_t m = a->m;
    size_t by = (size_t)m * sizeof(float);
    const kern_variant *opt = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "opt");
    const kern_variant *sw = kern_find(KERN_OP_SWIGLU, KERN_BACKEND_CUDA, "opt");
    assert_non_null(opt);
    assert_non_null(sw);
    float *db2 = tg_dev(by, NULL);
    float *hb2 = malloc(by);
    assert_non_null(hb2);
    for (int64_t i = 0; i < m; i++)
        hb2[i] = -hb[i] * 0.5f + 0.25f;
    assert_int_equal(tg.mem->to_dev(&tg.ctx, db2, hb2, by), 0);
    float *y[3], *act = tg_dev(by, NULL);
    for (int j = 0; j < 3; j++)
        y[j] = tg_dev(by, NULL);
    kern_args j0 = *a, j1 = *a, j2 = *a;
    j0.y = y[0], j1.y = y[1], j1.b = db2, j2.y = y[2];
    float *y1 = tg_run(opt->fn, &j1, nan, m, what); /* opt's bits for the second bias, in y[1] */
    for (int j = 0; j < 3; j++)
        assert_int_equal(tg.mem->to_dev(&tg.ctx, y[j], nan, by), 0);
    const kern_args *jobs[3] = {&j0, &j1, &j2};
    int rc = kern_cuda_matvec_multi(&tg.ctx, jobs, 3);
    /* both plans need 8-element pieces (x is aligned here), the float types
     * 16-byte aligned rows */
    bool takes = a->k % 8 == 0 && (quant_type_get(a->w_type)->block_elems > 1 || ((uintptr_t)a->w & 15) == 0);
    if (rc != (takes ? 0 : 1))
        fail_msg("%s: kern_cuda_matvec_multi returned %d", what, rc);
    if (rc == 0) {
        for (int j = 0; j < 3; j++) {
            float *h = tg_host(y[j], m);
            if (memcmp(h, j == 1 ? y1 : yo, by) != 0)
                fail_msg("%s: kern_cuda_matvec_multi job %d differs from opt", what, j);
            free(h);
        }
        /* gate = a, up = a with the other bias: y[0], y[1] and act = opt swiglu's */
        kern_args s = {.x = y[0], .x2 = y[1], .y = act, .n = 1, .k = m};
        float *want = tg_run(sw->fn, &s, nan, m, what);
        for (int j = 0; j < 2; j++)
            assert_int_equal(tg.mem->to_dev(&tg.ctx, y[j], nan, by), 0);
        assert_int_equal(tg.mem->to_dev(&tg.ctx, act, nan, by), 0);
        if (kern_cuda_matvec_swiglu(&tg.ctx, &j0, &j1, &s) != 0)
            fail_msg("%s: kern_cuda_matvec_swiglu did not take it", what);
        float *g = tg_host(y[0], m), *u = tg_host(y[1], m), *h = tg_host(act, m);
        if (memcmp(g, yo, by) != 0 || memcmp(u, y1, by) != 0 || memcmp(h, want, by) != 0)
            fail_msg("%s: kern_cuda_matvec_swiglu differs from opt matmul + opt swiglu", what);
        free(g), free(u), free(h), free(want);
        tg.fused_cases++;
    }
    free(y1), free(hb2);
    tg.mem->free(db2), tg.mem->free(act);
    for (int j = 0; j < 3; j++)
        tg.mem->free(y[j]);
}

/* One case: type, [m x k] weights 'skew' bytes into an exact allocation
 * (a multiple of the type's alignment: 2, or 4 for F32). */
static void tg_case(int type, int64_t k, int64_t m, int skew, int bias)
{
    char what[128];
    snprintf(what, sizeof what, "%s [%lld x %lld]%s%s", quant_type_name(type), (long long)m, (long long)k,
             skew ? " w+2" : "", bias ? " +b" : "");
    uint64_t rb;
    uint8_t *hw = tg_weights(type, m, k, &rb);
    float *hx = malloc((size_t)k * sizeof *hx), *hb = malloc((size_t)m * sizeof *hb);
    float *nan = malloc((size_t)m * sizeof *nan);
    assert_non_null(hx);
    assert_non_null(hb);
    assert_non_null(nan);
    tu_fill_random(hx, (size_t)k, &tg.rng, -1.0f, 1.0f);
    tu_fill_random(hb, (size_t)m, &tg.rng, -1.0f, 1.0f);
    tu_poison(nan, (size_t)m);
    size_t wbytes = (size_t)(rb * m);
    uint8_t *dwb = tg_dev(wbytes + (size_t)skew, NULL); /* exact: a read past the end is out of bounds */
    assert_int_equal(tg.mem->to_dev(&tg.ctx, dwb + skew, hw, wbytes), 0);
    float *dx = tg_dev((size_t)k * sizeof(float), hx);  /* [1, k] */
    float *db = tg_dev((size_t)m * sizeof(float), hb);  /* [m] */
    float *dy = tg_dev((size_t)m * sizeof(float), NULL); /* [1, m] */
    float *dact = tg_dev((size_t)m * sizeof(float), NULL); /* [1, m]: gelu(y) */
    kern_args a = {.x = dx, .w = dwb + skew, .w_type = type, .b = bias ? db : NULL, .y = dy, .n = 1, .k = k, .m = m};

    const kern_variant *ref = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "ref");
    const kern_variant *opt = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "opt");
    const kern_variant *gelu = kern_find(KERN_OP_GELU, KERN_BACKEND_CUDA, "opt");
    assert_non_null(ref);
    assert_non_null(opt);
    assert_non_null(gelu);
    float *yr = tg_run(ref->fn, &a, nan, m, what);
    float *yo = tg_run(opt->fn, &a, nan, m, what);
    tg_expect_close(yo, yr, m, what);
    float *yo2 = tg_run(opt->fn, &a, nan, m, what);
    if (memcmp(yo, yo2, (size_t)m * sizeof(float)) != 0)
        fail_msg("%s: two runs of opt differ", what);

    /* kern_cuda_gemv itself on every block type and shape, whichever kernel
     * opt picked (kern_cuda_gemv_prefer); where opt picked it, opt's bits */
    assert_int_equal(tg.mem->to_dev(&tg.ctx, dy, nan, (size_t)m * sizeof(float)), 0);
    int rc = kern_cuda_gemv(&tg.ctx, &a, NULL);
    int block = quant_type_get(type)->block_elems > 1;
    if (rc != (block ? 0 : 1))
        fail_msg("%s: kern_cuda_gemv returned %d", what, rc);
    if (block) {
        float *yg = tg_run(tg_gemv_only, &a, nan, m, what);
        tg_expect_close(yg, yr, m, what);
        float *yg2 = tg_run(tg_gemv_only, &a, nan, m, what);
        if (memcmp(yg, yg2, (size_t)m * sizeof(float)) != 0)
            fail_msg("%s: two runs of kern_cuda_gemv differ", what);
        if (kern_cuda_gemv_prefer(type, k, m) && memcmp(yg, yo, (size_t)m * sizeof(float)) != 0)
            fail_msg("%s: kern_cuda_gemv and opt differ", what);
        free(yg), free(yg2);
        tg.gemv_cases++;
    }

    /* the fused GELU epilogue: y and gelu(y) as the two opt calls give them */
    kern_args g = {.x = dy, .y = dact, .n = 1, .k = m};
    free(tg_run(opt->fn, &a, nan, m, what)); /* dy: opt's y again (the direct call above may have left NaN) */
    float *ga = tg_run(gelu->fn, &g, nan, m, what);
    assert_int_equal(tg.mem->to_dev(&tg.ctx, dy, nan, (size_t)m * sizeof(float)), 0);
    assert_int_equal(tg.mem->to_dev(&tg.ctx, dact, nan, (size_t)m * sizeof(float)), 0);
    assert_int_equal(kern_cuda_matmul_gelu(&tg.ctx, &a, &g), 0);
    float *fy = malloc((size_t)m * sizeof *fy), *fa = malloc((size_t)m * sizeof *fa);
    assert_non_null(fy);
    assert_non_null(fa);
    assert_int_equal(tg.mem->to_host(&tg.ctx, fy, dy, (size_t)m * sizeof(float)), 0);
    assert_int_equal(tg.mem->to_host(&tg.ctx, fa, dact, (size_t)m * sizeof(float)), 0);
    if (memcmp(fy, yo, (size_t)m * sizeof(float)) != 0 || memcmp(fa, ga, (size_t)m * sizeof(float)) != 0)
        fail_msg("%s: kern_cuda_matmul_gelu differs from opt matmul + opt gelu", what);

    tg_fused(&a, yo, nan, hb, what);

    float *ym = tg_run(kern_cuda_matvec_mv4, &a, nan, m, what);
    tg_expect_close(ym, yr, m, what);
    tg.cases++;

    free(yr), free(yo), free(yo2), free(ga), free(fy), free(fa), free(ym);
    tg.mem->free(dwb), tg.mem->free(dx), tg.mem->free(db), tg.mem->free(dy), tg.mem->free(dact);
    free(hw), free(hx), free(hb), free(nan);
}

static const int tg_types[] = {XF_TYPE_F32,  XF_TYPE_F16,  XF_TYPE_BF16, XF_TYPE_Q8_0, XF_TYPE_Q4_0, XF_TYPE_Q4_1,
                               XF_TYPE_Q5_0, XF_TYPE_Q5_1, XF_TYPE_Q4_K, XF_TYPE_Q5_K, XF_TYPE_Q6_K};

/* {k, m}: decode shapes of Qwen2.5-0.5B (D 896, F 4864, KV rows 128),
 * 1.5B (D 1536) and GPT-2 (D 768, F 3072), with m off every tile */
static const int64_t tg_shapes32[][2] = {{896, 897}, {896, 2304}, {4864, 896}, {768, 1500}, {3072, 1},
                                         {896, 7},   {896, 128}};
static const int64_t tg_shapes256[][2] = {{4864, 896}, {768, 897}, {1536, 2304}, {3072, 1500}, {768, 7},
                                          {1536, 256}};

static void test_gemv_types(void **state)
{
    (void)state;
    for (size_t t = 0; t < sizeof tg_types / sizeof tg_types[0]; t++) {
        int type = tg_types[t];
        int k256 = quant_type_get(type)->block_elems == 256;
        size_t ns = k256 ? sizeof tg_shapes256 / sizeof tg_shapes256[0] : sizeof tg_shapes32 / sizeof tg_shapes32[0];
        for (size_t s = 0; s < ns; s++) {
            const int64_t *sh = k256 ? tg_shapes256[s] : tg_shapes32[s];
            /* odd cases: 2 bytes off (4 for F32, whose elements need it) */
            tg_case(type, sh[0], sh[1], (int)(s & 1) * (type == XF_TYPE_F32 ? 4 : 2), (int)(s % 3 == 0));
        }
    }
}

/* the logits matrices: the tied Qwen2.5-0.5B head in Q8_0 (the Q4_K_M
 * mix's, k = 896 not being a multiple of 256) and GPT-2's in the types a
 * head comes in */
static void test_gemv_heads(void **state)
{
    (void)state;
    tg_case(XF_TYPE_Q8_0, 896, 151936, 2, 0);
    tg_case(XF_TYPE_Q6_K, 768, 50257, 0, 0);
    tg_case(XF_TYPE_Q4_K, 768, 50257, 2, 0);
    tg_case(XF_TYPE_Q5_0, 768, 50257, 0, 1);
    tg_case(XF_TYPE_F16, 768, 50257, 0, 0);
}

/* device [m x k] weights of type and their opt output for x (kern_args in *a) */
static void tg_matrix(kern_args *a, int type, int64_t k, int64_t m, float *dx, float *nan, float **yo)
{
    uint64_t rb;
    uint8_t *hw = tg_weights(type, m, k, &rb);
    *a = (kern_args){.x = dx, .w = tg_dev((size_t)(rb * m), hw), .w_type = type, .y = tg_dev((size_t)m * 4, NULL),
                     .n = 1, .k = k, .m = m};
    free(hw);
    *yo = tg_run(kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "opt")->fn, a, nan, m, "opt");
}

/* q, k, v of one x in kern_cuda_matvec_multi, with weights of two or three
 * types, against the opt MATMUL of each, bit for bit (outputs NaN-poisoned
 * first), run eagerly and then captured: the graph's node count is the
 * launches it made, 1 for a pair that kern_cuda_matvec_pair_fused names,
 * else one per type. */
static void tg_mixed(const int types[3], const int64_t ms[3], int64_t k, int launches, const char *what)
{
    if (launches == 1)
        assert_int_equal(kern_cuda_matvec_pair_fused(types[0], types[2]), 1);
    float *hx = malloc((size_t)k * 4), *nan = malloc((size_t)ms[0] * 4);
    assert_non_null(hx);
    assert_non_null(nan);
    tu_fill_random(hx, (size_t)k, &tg.rng, -1.0f, 1.0f);
    tu_poison(nan, (size_t)ms[0]);
    float *dx = tg_dev((size_t)k * 4, hx);
    kern_args a[3];
    float *yo[3];
    for (int j = 0; j < 3; j++)
        tg_matrix(&a[j], types[j], k, ms[j], dx, nan, &yo[j]);
    kern_ctx c = {.n_threads = 1};
    assert_int_equal(kern_cuda_stream_new(&c), 0);
    for (int pass = 0; pass < 2; pass++) {
        for (int j = 0; j < 3; j++)
            assert_int_equal(tg.mem->to_dev(&tg.ctx, a[j].y, nan, (size_t)ms[j] * 4), 0);
        assert_int_equal(tg.mem->sync(&tg.ctx), 0); /* c's stream does not wait for tg.ctx's */
        const kern_args *jobs[3] = {&a[0], &a[1], &a[2]};
        if (pass == 0) {
            assert_int_equal(kern_cuda_matvec_multi(&c, jobs, 3), 0);
        } else {
            assert_int_equal(kern_cuda_capture_begin(&c), 0);
            int rc = kern_cuda_matvec_multi(&c, jobs, 3);
            kern_cuda_graph *g = kern_cuda_capture_end(&c, rc == 0);
            assert_int_equal(rc, 0);
            assert_non_null(g);
            if ((int)kern_cuda_graph_nodes(g) != launches)
                fail_msg("%s: %d launches, want %d", what, (int)kern_cuda_graph_nodes(g), launches);
            assert_int_equal(kern_cuda_graph_launch(g, &c), 0);
            kern_cuda_graph_free(g);
        }
        assert_int_equal(tg.mem->sync(&c), 0);
        for (int j = 0; j < 3; j++) {
            float *h = tg_host(a[j].y, ms[j]);
            if (memcmp(h, yo[j], (size_t)ms[j] * 4) != 0)
                fail_msg("%s (%s): job %d differs from opt", what, pass ? "graph" : "eager", j);
            free(h);
        }
    }
    kern_cuda_stream_free(&c);
    for (int j = 0; j < 3; j++) {
        free(yo[j]);
        tg.mem->free((void *)a[j].w), tg.mem->free(a[j].y);
    }
    tg.fused_cases++;
    tg.mem->free(dx);
    free(hx), free(nan);
}

/* The mixes of real files: the Qwen2.5-0.5B Q4_K_M (q [896 x 896] Q5_0,
 * the direct plan; k [128 x 896] Q5_0 and v Q8_0, staged) and the 1.5B's
 * (Q4_K q [1536 x 1536], k and v [256 x 1536], v Q6_K): one launch. A pair
 * with no fused kernel (Q4_0 + Q8_0), and three types: one launch each. */
static void test_fused_mixed(void **state)
{
    (void)state;
    static const int t05[3] = {XF_TYPE_Q5_0, XF_TYPE_Q5_0, XF_TYPE_Q8_0};
    static const int64_t m05[3] = {896, 128, 128};
    tg_mixed(t05, m05, 896, 1, "0.5B Q5_0 q/k + Q8_0 v");
    static const int t15[3] = {XF_TYPE_Q4_K, XF_TYPE_Q4_K, XF_TYPE_Q6_K};
    static const int64_t m15[3] = {1536, 256, 256};
    tg_mixed(t15, m15, 1536, 1, "1.5B Q4_K q/k + Q6_K v");
    static const int t5k[3] = {XF_TYPE_Q5_K, XF_TYPE_Q5_K, XF_TYPE_Q6_K};
    static const int64_t m5k[3] = {1000, 200, 200};
    tg_mixed(t5k, m5k, 768, 1, "Q5_K q/k + Q6_K v, 1000 rows");
    static const int t51[3] = {XF_TYPE_Q5_1, XF_TYPE_Q5_1, XF_TYPE_Q8_0};
    tg_mixed(t51, m05, 896, 1, "Q5_1 q/k + Q8_0 v");
    static const int t40[3] = {XF_TYPE_Q4_0, XF_TYPE_Q4_0, XF_TYPE_Q8_0};
    assert_int_equal(kern_cuda_matvec_pair_fused(XF_TYPE_Q4_0, XF_TYPE_Q8_0), 0);
    tg_mixed(t40, m05, 896, 2, "Q4_0 q/k + Q8_0 v (no pair kernel)");
    static const int t3[3] = {XF_TYPE_Q5_0, XF_TYPE_Q4_0, XF_TYPE_Q8_0};
    tg_mixed(t3, m05, 896, 3, "three types");
}

/* kern_cuda_rope_store against opt ROPE of q and k and two
 * kern_cuda_rows_store: q_rope, k_rope and both whole caches bit for bit
 * (NaN-poisoned first), both rope modes, position from the host and from
 * dev_step */
static void test_rope_store(void **state)
{
    (void)state;
    enum { HD = 64, QH = 14, KH = 2, NCTX = 50, POS = 37 };
    const size_t qn = QH * HD, kn = KH * HD, cn = (size_t)NCTX * kn;
    float *h = malloc((qn + 2 * kn) * 4), *nan = malloc(cn * 4);
    assert_non_null(h);
    assert_non_null(nan);
    tu_fill_random(h, qn + 2 * kn, &tg.rng, -2.0f, 2.0f);
    tu_poison(nan, cn);
    float *dq = tg_dev(qn * 4, h), *dk = tg_dev(kn * 4, h + qn), *dv = tg_dev(kn * 4, h + qn + kn);
    int32_t hs[3] = {POS, POS + 1, 0};
    int32_t *ds = tg_dev(sizeof hs, hs);
    const kern_variant *rope = kern_find(KERN_OP_ROPE, KERN_BACKEND_CUDA, "opt");
    assert_non_null(rope);
    float *out[2][4]; /* [ref, fused][q_rope, k_rope, kc, vc] */
    for (int mode = 0; mode < 2; mode++)
        for (int st = 0; st < 2; st++) {
            for (int f = 0; f < 2; f++) {
                size_t n4[4] = {qn, kn, cn, cn};
                for (int i = 0; i < 4; i++) {
                    out[f][i] = tg_dev(n4[i] * 4, nan);
                }
                kern_args q = {.x = dq, .y = out[f][0], .n = 1, .n_head = QH, .head_dim = HD, .pos0 = st ? 0 : POS,
                               .rope_base = 1e6f, .rope_mode = mode, .dev_step = st ? ds : NULL};
                kern_args k = q;
                k.x = dk, k.y = out[f][1], k.n_head = KH;
                if (f == 0) {
                    assert_int_equal(rope->fn(&tg.ctx, &q), 0);
                    assert_int_equal(rope->fn(&tg.ctx, &k), 0);
                    assert_int_equal(kern_cuda_rows_store(&tg.ctx, out[f][2], out[f][1], kn, 1, q.pos0, q.dev_step), 0);
                    assert_int_equal(kern_cuda_rows_store(&tg.ctx, out[f][3], dv, kn, 1, q.pos0, q.dev_step), 0);
                } else {
                    assert_int_equal(kern_cuda_rope_store(&tg.ctx, &q, &k, out[f][2], dv, (int64_t)kn, out[f][3]), 0);
                }
            }
            size_t n4[4] = {qn, kn, cn, cn};
            for (int i = 0; i < 4; i++) {
                float *r = tg_host(out[0][i], (int64_t)n4[i]), *g = tg_host(out[1][i], (int64_t)n4[i]);
                if (memcmp(r, g, n4[i] * 4) != 0)
                    fail_msg("rope_store mode %d step %d: output %d differs from opt rope + rows_store", mode, st, i);
                if (i < 2)
                    for (size_t e = 0; e < n4[i]; e++)
                        if (isnan(g[e]))
                            fail_msg("rope_store: output %d [%zu] unwritten", i, e);
                free(r), free(g);
                tg.mem->free(out[0][i]), tg.mem->free(out[1][i]);
            }
            tg.fused_cases++;
        }
    /* a v row that is not a k row: nothing launched */
    kern_args q = {.x = dq, .y = dq, .n = 1, .n_head = QH, .head_dim = HD, .pos0 = 1, .rope_base = 1e4f};
    kern_args k = q;
    k.n_head = KH;
    assert_int_equal(kern_cuda_rope_store(&tg.ctx, &q, &k, dv, dv, (int64_t)kn + 1, dv), 1);
    tg.mem->free(dq), tg.mem->free(dk), tg.mem->free(dv), tg.mem->free(ds);
    free(h), free(nan);
}

static int tg_setup(void **state)
{
    (void)state;
    tg.rng = 0xD1B54A32D192ED03ULL;
    tg.mem = kern_backend_mem(KERN_BACKEND_CUDA);
    tg.ctx = (kern_ctx){.n_threads = 1};
    return tg.mem ? 0 : -1;
}

static int tg_teardown(void **state)
{
    (void)state;
    print_message("%d cases checked, %d of them through kern_cuda_gemv, %d through the fused launches\n", tg.cases,
                  tg.gemv_cases, tg.fused_cases);
#ifdef XF_HAVE_CUDA
    kern_cuda_ctx_release(&tg.ctx);
#endif
    return 0;
}

#endif

int main(void)
{
#ifdef XF_HAVE_CUDA
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemv_types),
        cmocka_unit_test(test_gemv_heads),
        cmocka_unit_test(test_fused_mixed),
        cmocka_unit_test(test_rope_store),
    };
    char why[256];
    if (!kern_backend_available(KERN_BACKEND_CUDA, why, sizeof why)) {
        printf("test_kernels_cuda_gemv: skipped: %s\n", why);
        return 77;
    }
    tu_filter_from_env();
    return cmocka_run_group_tests(tests, tg_setup, tg_teardown);
#else
    printf("test_kernels_cuda_gemv: built without CUDA: skipped\n");
    return 77;
#endif
}
