/* test_kernels_cuda_codes: the prefill product's codes kept on the device
 * (kernels/cuda/matmul_codes.cu, kern_cuda_codes_keep):
 * - for every block type the product takes, opt's MATMUL of 67 and 130
 *   tokens (rows past a tile, k cut into slices and not) gives the same
 *   bits with the weight's codes kept as without (outputs NaN-poisoned
 *   before each run), and stays within tolerance of the CPU ref;
 * - a second weight of the same type and shape at another address, with
 *   other values, is not given the first one's codes (its output is the
 *   same bits as before the first was kept);
 * - the product reads them: with the weight's blocks overwritten after
 *   keeping, its output keeps the kept codes' bits;
 * - keeping twice keeps once; F16 (no codes), k not a multiple of 32 and
 *   XF_CODES=0 keep none; kern_cuda_codes_free empties the table;
 * - the wgmma product's 128- and 192-row blocks give the same bits where
 *   they cut k alike (test_wgmma_rows);
 * - kern_cuda_matmul_multi: 2 or 3 products of one x in one launch, cut
 *   in k as each alone or not, the bits of each alone, and its refusals
 *   (test_matmul_multi);
 * - BF16 and F32 weights on the split product where kern_cuda_split_float
 *   turns them on: the same checks as the block types, weights of 70
 *   binades within a group of 32 within tolerance, an Inf and a NaN weight
 *   giving the ref's Inf and NaN, and nothing kept or taken while off
 *   (test_split_float);
 * - the K-quants' super-block fold (kern_cuda_kfold): the same checks in
 *   that form, within tolerance with it on and off, at 128 and 192 rows,
 *   k cut into whole super-blocks and not; codes kept in one form unused
 *   in the other; the launch of several (test_kfold).
 * Exit 77 (ctest: skipped) when no CUDA device answers. */
#include "kernels_cuda_util.h"

#ifdef XF_HAVE_CUDA
/* opt's MATMUL of x (device) by w (device) into got [n * m], poisoned first */
static void cc_run(kern_args *da, float *got, const float *nan, const char *what)
{
    const kern_variant *opt = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "opt");
    assert_non_null(opt);
    /* the split path's whole declaration fits the tests' scratch: it runs */
    size_t want = kern_variant_scratch(opt, da);
    assert_true(want > 0 && want <= tk.ctx.scratch_size);
    tk_run_cuda(opt, da, got, nan, (size_t)(da->n * da->m), what);
}

/* one product's operands: weights w [m, k] (wb bytes) and x [n, k] (taken;
 * NULL: random in [-1, 1)) on the device, the CPU ref's output yh [n, m],
 * a NaN pattern to poison outputs with before each run */
typedef struct cc_prod {
    kern_args da;
    float *x, *yh, *nan;
    size_t ny;
    tk_arena ar;
} cc_prod;

static void cc_prod_open(cc_prod *p, int type, const void *w, size_t wb, float *x, int64_t n, int64_t k, int64_t m)
{
    memset(p, 0, sizeof *p);
    p->ny = (size_t)(n * m);
    p->x = x ? x : tk_host_random((size_t)(n * k), -1.0f, 1.0f);
    p->yh = malloc(p->ny * sizeof *p->yh);
    p->nan = malloc(p->ny * sizeof *p->nan);
    assert_true(p->yh && p->nan);
    tu_poison(p->nan, p->ny);
    kern_args ha = {.x = p->x, .w = w, .w_type = type, .y = p->yh, .n = n, .k = k, .m = m};
    p->da = ha;
    p->da.x = tk_dev(&p->ar, p->x, (size_t)(n * k) * sizeof(float), 0);
    p->da.w = tk_dev(&p->ar, w, wb, 0);
    p->da.y = tk_dev(&p->ar, NULL, p->ny * sizeof(float), 0);
    kern_ctx cpu = {.n_threads = 1};
    assert_int_equal(kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "ref")->fn(&cpu, &ha), 0);
}

static void cc_prod_close(cc_prod *p)
{
    tk_arena_free(&p->ar);
    free(p->x);
    free(p->yh);
    free(p->nan);
}

/* got and want [ny] the same bits */
static void cc_same_bits(const float *got, const float *want, size_t ny, const char *what)
{
    for (size_t i = 0; i < ny; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
            fail_msg("%s: y[%zu] = %.9g, expected the bits of %.9g", what, i, got[i], want[i]);
}

static void cc_case(int type, int64_t n, int64_t k, int64_t m)
{
    size_t wb, wb2;
    void *w = tk_weights(type, m, k, &wb), *w2 = tk_weights(type, m, k, &wb2);
    if (!w) {
        print_message("codes: %s cannot be made here: not tested\n", quant_type_name(type));
        return;
    }
    assert_non_null(w2);
    size_t ny = (size_t)(n * m);
    float *x = tk_host_random((size_t)(n * k), -1.0f, 1.0f), *yh = malloc(ny * sizeof *yh);
    float *before = malloc(ny * sizeof *before), *before2 = malloc(ny * sizeof *before2);
    float *got = malloc(ny * sizeof *got), *nan = malloc(ny * sizeof *nan);
    assert_true(yh && before && before2 && got && nan);
    tu_poison(nan, ny);
    char what[96];
    snprintf(what, sizeof what, "%s n=%lld k=%lld m=%lld", quant_type_name(type), (long long)n, (long long)k,
             (long long)m);
    tk_arena ar = {0};
    kern_args ha = {.x = x, .w = w, .w_type = type, .y = yh, .n = n, .k = k, .m = m};
    kern_args da = ha, da2;
    da.x = tk_dev(&ar, x, (size_t)(n * k) * sizeof(float), 0);
    da.w = tk_dev(&ar, w, wb, 0);
    da.y = tk_dev(&ar, NULL, ny * sizeof(float), 0);
    da2 = da;
    da2.w = tk_dev(&ar, w2, wb2, 0);
    kern_ctx cpu = {.n_threads = 1};
    assert_int_equal(kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "ref")->fn(&cpu, &ha), 0);

    cc_run(&da, before, nan, what);
    cc_run(&da2, before2, nan, what);
    assert_int_equal(kern_cuda_codes_keep(&tk.ctx, da.w, type, m, k), 0);
    assert_int_equal(kern_cuda_codes_keep(&tk.ctx, da.w, type, m, k), 0); /* kept once */
    int kept;
    size_t bytes;
    kern_cuda_codes_stats(&tk.ctx, &kept, &bytes);
    assert_int_equal(kept, 1);
    /* f16 codes and a float2 (a, b) per group of 32, or 16 for Q6_K; F32
     * two codes an element (hi, lo) */
    int64_t kp = type == XF_TYPE_F32 ? 2 * k : k;
    assert_int_equal(bytes, (size_t)(m * kp) * 2 + (size_t)(m * (kp / (type == XF_TYPE_Q6_K ? 16 : 32))) * 8);

    cc_run(&da, got, nan, what);
    for (size_t i = 0; i < ny; i++)
        if (memcmp(&got[i], &before[i], sizeof(float)) != 0)
            fail_msg("codes kept [%s]: y[%zu] = %.9g, made in the call %.9g", what, i, got[i], before[i]);
    double err = tu_rel_max_err(got, yh, ny);
    if (!(err <= 2e-5))
        fail_msg("codes kept [%s]: rel err %.3g against the cpu ref", what, err);
    /* the product reads the kept codes, not the blocks: with the blocks
     * overwritten by another weight's (what a loaded model never does), the
     * bits stay the first weight's (a product that ignored its kept codes
     * would give the second's, before2) */
    assert_int_equal(tk.mem->to_dev(&tk.ctx, (void *)da.w, w2, wb), 0);
    cc_run(&da, got, nan, what);
    for (size_t i = 0; i < ny; i++)
        if (memcmp(&got[i], &before[i], sizeof(float)) != 0)
            fail_msg("codes kept [%s]: blocks overwritten: y[%zu] = %.9g, the kept codes' %.9g", what, i,
                     got[i], before[i]);
    assert_int_equal(tk.mem->to_dev(&tk.ctx, (void *)da.w, w, wb), 0);
    cc_run(&da2, got, nan, what);
    for (size_t i = 0; i < ny; i++)
        if (memcmp(&got[i], &before2[i], sizeof(float)) != 0)
            fail_msg("codes kept [%s]: another weight of the shape: y[%zu] = %.9g, its own %.9g", what, i,
                     got[i], before2[i]);

    kern_cuda_codes_free(&tk.ctx);
    kern_cuda_codes_stats(&tk.ctx, &kept, &bytes);
    assert_int_equal(kept, 0);
    assert_int_equal(bytes, 0);
    assert_null(tk.ctx.codes);
    tk_arena_free(&ar);
    free(w);
    free(w2);
    free(x);
    free(yh);
    free(before);
    free(before2);
    free(got);
    free(nan);
}

static void test_codes_kept_same_bits(void **state)
{
    (void)state;
    static const int types[] = {XF_TYPE_Q8_0, XF_TYPE_Q4_0, XF_TYPE_Q4_1, XF_TYPE_Q5_0, XF_TYPE_Q5_1,
                                XF_TYPE_Q4_K, XF_TYPE_Q5_K, XF_TYPE_Q6_K, XF_TYPE_MXFP4};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        int64_t k = quant_type_get(types[i])->block_elems == 256 ? 512 : 96;
        cc_case(types[i], 67, k, 70 + tk_rand_int(0, 3));
        cc_case(types[i], 130, 2 * k, 131);
    }
}

/* The wgmma product's two block shapes (kern_cuda_wgmma_rows: 128 and 192
 * weight rows) on shapes where neither cuts k (as many blocks as the card
 * has SMs, or too few tiles to cut): the same bits, codes kept or not, F16
 * and the block types (both fold alike); and each shape within tolerance
 * of the CPU ref where they cut k (the 0.5B's 896-row q at 512 tokens:
 * 128-row blocks take 3 slices, 192-row 5). Where the device has no wgmma
 * both calls run mma.sync: equal, and said so. */
static void rows_case(int type, int64_t n, int64_t k, int64_t m, int same)
{
    size_t wb;
    void *w = tk_weights(type, m, k, &wb);
    if (!w) {
        print_message("wgmma rows: %s cannot be made here: not tested\n", quant_type_name(type));
        return;
    }
    size_t ny = (size_t)(n * m);
    float *x = tk_host_random((size_t)(n * k), -1.0f, 1.0f), *yh = malloc(ny * sizeof *yh);
    float *a = malloc(ny * sizeof *a), *b = malloc(ny * sizeof *b), *nan = malloc(ny * sizeof *nan);
    assert_true(yh && a && b && nan);
    tu_poison(nan, ny);
    tk_arena ar = {0};
    kern_args ha = {.x = x, .w = w, .w_type = type, .y = yh, .n = n, .k = k, .m = m};
    kern_args da = ha;
    da.x = tk_dev(&ar, x, (size_t)(n * k) * sizeof(float), 0);
    da.w = tk_dev(&ar, w, wb, 0);
    da.y = tk_dev(&ar, NULL, ny * sizeof(float), 0);
    kern_ctx cpu = {.n_threads = 1};
    assert_int_equal(kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "ref")->fn(&cpu, &ha), 0);
    char what[96];
    int was = kern_cuda_wgmma_rows(0);
    int was_kf = kern_cuda_kfold(0); /* the super-block fold runs at 128 rows only: other bits */
    for (int kept = 0; kept < 2; kept++) {
        if (kept && kern_cuda_codes_keep(&tk.ctx, da.w, type, m, k) != 0)
            break; /* F16: no codes */
        snprintf(what, sizeof what, "%s n=%lld k=%lld m=%lld%s, 128 rows", quant_type_name(type),
                 (long long)n, (long long)k, (long long)m, kept ? " kept" : "");
        kern_cuda_wgmma_rows(128);
        cc_run(&da, a, nan, what);
        what[strlen(what) - 8] = '\0';
        strcat(what, "192 rows");
        kern_cuda_wgmma_rows(192);
        cc_run(&da, b, nan, what);
        for (size_t i = 0; same && i < ny; i++)
            if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
                fail_msg("wgmma rows [%s]: y[%zu] = %.9g with 192-row blocks, %.9g with 128", what, i, b[i],
                         a[i]);
        double ea = tu_rel_max_err(a, yh, ny), eb = tu_rel_max_err(b, yh, ny);
        if (!(ea <= 2e-5) || !(eb <= 2e-5))
            fail_msg("wgmma rows [%s]: rel err %.3g (128 rows), %.3g (192) against the cpu ref", what, ea,
                     eb);
    }
    kern_cuda_wgmma_rows(was);
    kern_cuda_kfold(was_kf);
    kern_cuda_codes_free(&tk.ctx);
    tk_arena_free(&ar);
    free(w);
    free(x);
    free(yh);
    free(a);
    free(b);
    free(nan);
}

static void test_wgmma_rows(void **state)
{
    (void)state;
    static const int types[] = {XF_TYPE_F16, XF_TYPE_Q8_0, XF_TYPE_Q5_0, XF_TYPE_Q4_K, XF_TYPE_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        /* 1025 tokens (9 tiles of 128) x 2100 rows (past a tile of either):
         * 153 blocks of 128 rows, 99 of 192 (one slice on 132 SMs) */
        rows_case(types[i], 1025, 256, 2100, 1);
        /* sliced: the Qwen2.5-0.5B's q at 512 tokens (128-row blocks: 3
         * slices, 192: 5), the 1.5B's for the types of 256-element blocks
         * (2 and 4) */
        if (quant_type_get(types[i])->block_elems == 256)
            rows_case(types[i], 512, 1536, 1536, 0);
        else
            rows_case(types[i], 512, 896, 896, 0);
    }
}

/* the build and the device have Hopper's wgmma (matmul_wgmma.cu ms_wgmma) */
static bool cc_has_wgmma(void)
{
#ifdef XF_CUDA_WGMMA
    int dev = 0, major = 0, minor = 0;
    return cudaGetDevice(&dev) == cudaSuccess &&
           cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess &&
           cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) == cudaSuccess &&
           major == 9 && minor == 0 && !getenv("XF_NO_WGMMA");
#else
    return false;
#endif
}

/* kern_cuda_matmul_multi: nw weights of one type read by one x (distinct
 * row counts, past a tile) against opt's MATMUL of each alone, bit for bit,
 * outputs NaN-poisoned, under both block shapes, with and without biases,
 * each alone cut in k or not; and what it must refuse (1, no output
 * written): codes not kept, two types, two inputs, one token, one weight
 * (and, test_matmul_multi, a scratch too small for every product's
 * partial sums at once). */
static void multi_case(int type, int64_t n, int64_t k, int nw, bool bias)
{
    static const int64_t rows[3] = {2100, 1900, 1500};
    tk_arena ar = {0};
    size_t wb[3];
    void *w[3] = {NULL, NULL, NULL};
    kern_args da[3];
    const kern_args *dp[3];
    float *x = tk_host_random((size_t)(n * k), -1.0f, 1.0f), *alone[3] = {NULL, NULL, NULL}, *got = NULL,
          *nan = NULL;
    float *dx = tk_dev(&ar, x, (size_t)(n * k) * sizeof(float), 0);
    size_t most = 0;
    for (int i = 0; i < nw; i++) {
        w[i] = tk_weights(type, rows[i], k, &wb[i]);
        if (!w[i]) {
            print_message("matmul multi: %s cannot be made here: not tested\n", quant_type_name(type));
            goto out;
        }
        float *b = bias ? tk_host_random((size_t)rows[i], -1.0f, 1.0f) : NULL;
        da[i] = (kern_args){
            .x = dx, .w = tk_dev(&ar, w[i], wb[i], 0), .w_type = type, .n = n, .k = k, .m = rows[i]};
        da[i].b = b ? tk_dev(&ar, b, (size_t)rows[i] * sizeof(float), 0) : NULL;
        da[i].y = tk_dev(&ar, NULL, (size_t)(n * rows[i]) * sizeof(float), 0);
        free(b);
        dp[i] = &da[i];
        most = (size_t)(n * rows[i]) > most ? (size_t)(n * rows[i]) : most;
        alone[i] = malloc((size_t)(n * rows[i]) * sizeof(float));
        assert_non_null(alone[i]);
    }
    got = malloc(most * sizeof *got), nan = malloc(most * sizeof *nan);
    assert_true(got && nan);
    tu_poison(nan, most);
    int was = kern_cuda_wgmma_rows(0);
    for (int shape = 128; shape <= 192; shape += 64) {
        kern_cuda_wgmma_rows(shape);
        char what[96];
        if (type != XF_TYPE_F16) /* codes not kept: refused */
            assert_int_equal(kern_cuda_matmul_multi(&tk.ctx, dp, nw), 1);
        for (int i = 0; i < nw; i++) {
            snprintf(what, sizeof what, "%s n=%lld k=%lld weight %d alone, %d rows", quant_type_name(type),
                     (long long)n, (long long)k, i, shape);
            cc_run(&da[i], alone[i], nan, what);
            if (type != XF_TYPE_F16)
                assert_int_equal(kern_cuda_codes_keep(&tk.ctx, da[i].w, type, rows[i], k), 0);
        }
        for (int i = 0; i < nw; i++)
            assert_int_equal(tk.mem->to_dev(&tk.ctx, da[i].y, nan, (size_t)(n * rows[i]) * sizeof(float)), 0);
        int rc = kern_cuda_matmul_multi(&tk.ctx, dp, nw);
        if (rc == 1) { /* no wgmma here: nothing written */
            if (cc_has_wgmma())
                fail_msg("matmul multi [%s]: refused on a device with wgmma", quant_type_name(type));
            print_message("matmul multi: not taken on this device (no wgmma)\n");
            for (int i = 0; i < nw; i++) {
                assert_int_equal(
                    tk.mem->to_host(&tk.ctx, got, da[i].y, (size_t)(n * rows[i]) * sizeof(float)), 0);
                assert_int_equal(memcmp(got, nan, (size_t)(n * rows[i]) * sizeof(float)), 0);
            }
            kern_cuda_codes_free(&tk.ctx);
            break;
        }
        assert_int_equal(rc, 0);
        for (int i = 0; i < nw; i++) {
            size_t ny = (size_t)(n * rows[i]);
            assert_int_equal(tk.mem->to_host(&tk.ctx, got, da[i].y, ny * sizeof(float)), 0);
            for (size_t j = 0; j < ny; j++)
                if (memcmp(&got[j], &alone[i][j], sizeof(float)) != 0)
                    fail_msg("matmul multi [%s n=%lld k=%lld, %d weights, %d rows]: weight %d y[%zu] = %.9g, "
                             "alone %.9g",
                             quant_type_name(type), (long long)n, (long long)k, nw, shape, i, j, got[j],
                             alone[i][j]);
        }
        /* refused: one token's worth of rows (the matrix-vector kernels), two
         * inputs, two types */
        kern_args one = da[0], other = da[1];
        const kern_args *op[3] = {&one, dp[1], nw > 2 ? dp[2] : NULL};
        one.n = 1;
        assert_int_equal(kern_cuda_matmul_multi(&tk.ctx, op, nw), 1);
        op[0] = dp[0], op[1] = &other;
        other.x = (float *)da[0].y;
        assert_int_equal(kern_cuda_matmul_multi(&tk.ctx, op, nw), 1);
        other = da[1];
        other.w_type = type == XF_TYPE_F16 ? XF_TYPE_Q8_0 : XF_TYPE_F16;
        assert_int_equal(kern_cuda_matmul_multi(&tk.ctx, op, nw), 1);
        assert_int_equal(kern_cuda_matmul_multi(&tk.ctx, dp, 1), 1);
        kern_cuda_codes_free(&tk.ctx);
    }
    kern_cuda_wgmma_rows(was);
out:
    for (int i = 0; i < nw; i++) {
        free(alone[i]);
        free(w[i]);
    }
    free(x);
    free(got);
    free(nan);
    tk_arena_free(&ar);
}

static void test_matmul_multi(void **state)
{
    (void)state;
    /* rows 2100, 1900, 1500. 1025 tokens: 9 token tiles, 72-153 blocks
     * each, none cut in k alone on 132 SMs */
    multi_case(XF_TYPE_F16, 1025, 256, 2, false);
    multi_case(XF_TYPE_Q5_0, 1025, 256, 3, true);
    multi_case(XF_TYPE_Q4_K, 1025, 512, 2, false);
    multi_case(XF_TYPE_Q6_K, 1025, 256, 3, true);
    multi_case(XF_TYPE_Q8_0, 1025, 256, 2, true);
    /* 100 tokens, k 1024: one token tile, so each alone cuts k (8 slices of
     * 192-row blocks, 4 of 128): each its own slices and partial sums in
     * the launch, and its own reduce */
    multi_case(XF_TYPE_F16, 100, 1024, 3, true);
    multi_case(XF_TYPE_Q4_K, 100, 1024, 2, false);
    multi_case(XF_TYPE_Q8_0, 100, 1024, 3, false);
    /* a scratch that holds one product's partial sums but not three:
     * refused, nothing written */
    tk_arena ar = {0};
    size_t wb;
    void *w = tk_weights(XF_TYPE_F16, 2100, 1024, &wb);
    assert_non_null(w);
    float *x = tk_host_random((size_t)100 * 1024, -1.0f, 1.0f);
    kern_args a[3];
    const kern_args *ap[3];
    a[0] = (kern_args){.x = tk_dev(&ar, x, (size_t)100 * 1024 * sizeof(float), 0),
                       .w = tk_dev(&ar, w, wb, 0),
                       .w_type = XF_TYPE_F16,
                       .n = 100,
                       .k = 1024,
                       .m = 2100};
    size_t ny = (size_t)100 * 2100;
    float *nan = malloc(ny * sizeof *nan), *got = malloc(ny * sizeof *got);
    assert_true(nan && got);
    tu_poison(nan, ny);
    for (int i = 0; i < 3; i++) {
        if (i)
            a[i] = a[0];
        a[i].y = tk_dev(&ar, nan, ny * sizeof(float), 0);
        ap[i] = &a[i];
    }
    const kern_variant *opt = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "opt");
    size_t keep = tk.ctx.scratch_size, one = kern_variant_scratch(opt, &a[0]);
    assert_true(one > 0 && one <= keep);
    tk.ctx.scratch_size = one;
    assert_int_equal(kern_cuda_matmul_multi(&tk.ctx, ap, 3), 1);
    tk.ctx.scratch_size = keep;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tk.mem->to_host(&tk.ctx, got, a[i].y, ny * sizeof(float)), 0);
        assert_int_equal(memcmp(got, nan, ny * sizeof(float)), 0);
    }
    free(nan);
    free(got);
    free(w);
    free(x);
    tk_arena_free(&ar);
}

/* The K-quants' super-block fold (kern_cuda_kfold) on one shape: with it
 * off and on, 128- and 192-row blocks, each within tolerance of the CPU
 * ref; then codes kept while it was off are not used while it is on (the
 * output keeps the bits of codes made in the call in the new form), and
 * keeping again keeps the new form beside the old. */
static void kf_case(int type, int64_t n, int64_t k, int64_t m)
{
    size_t wb;
    void *w = tk_weights(type, m, k, &wb);
    assert_non_null(w);
    cc_prod p;
    cc_prod_open(&p, type, w, wb, NULL, n, k, m);
    float *made = malloc(p.ny * sizeof *made), *got = malloc(p.ny * sizeof *got);
    assert_true(made && got);
    char what[128];
    int was_rows = kern_cuda_wgmma_rows(0), was_kf = kern_cuda_kfold(-1);
    for (int kf = 0; kf < 2; kf++)
        for (int rows = 128; rows <= 192; rows += 64) {
            kern_cuda_kfold(kf);
            kern_cuda_wgmma_rows(rows);
            snprintf(what, sizeof what, "%s n=%lld k=%lld m=%lld, kfold %d, %d rows", quant_type_name(type),
                     (long long)n, (long long)k, (long long)m, kf, rows);
            float *y = kf && rows == 128 ? made : got;
            cc_run(&p.da, y, p.nan, what);
            double err = tu_rel_max_err(y, p.yh, p.ny);
            print_message("kfold [%s]: rel err %.3g against the cpu ref\n", what, err);
            if (!(err <= 2e-5))
                fail_msg("kfold [%s]: rel err %.3g against the cpu ref", what, err);
            /* the fold ran: its sums of 256 give other bits than the same
             * codes folded by group at 192 rows (wgmma only) */
            if (kf && rows == 192 && cc_has_wgmma()) {
                size_t differ = 0;
                for (size_t i = 0; i < p.ny; i++)
                    differ += memcmp(&got[i], &made[i], sizeof(float)) != 0;
                if (differ == 0)
                    fail_msg("kfold [%s]: the same bits at 128 rows as at 192: the fold did not run",
                             quant_type_name(type));
            }
        }
    kern_cuda_wgmma_rows(128);
    kern_cuda_kfold(0);
    assert_int_equal(kern_cuda_codes_keep(&tk.ctx, p.da.w, type, m, k), 0);
    kern_cuda_kfold(1);
    snprintf(what, sizeof what, "kfold %s: on, codes kept while off (the made-in-call bits)",
             quant_type_name(type));
    cc_run(&p.da, got, p.nan, what);
    cc_same_bits(got, made, p.ny, what);
    assert_int_equal(kern_cuda_codes_keep(&tk.ctx, p.da.w, type, m, k), 0);
    int kept;
    size_t bytes;
    kern_cuda_codes_stats(&tk.ctx, &kept, &bytes);
    assert_int_equal(kept, 2);
    snprintf(what, sizeof what, "kfold %s: on, codes kept in both forms", quant_type_name(type));
    cc_run(&p.da, got, p.nan, what);
    cc_same_bits(got, made, p.ny, what);
    kern_cuda_codes_free(&tk.ctx);
    kern_cuda_kfold(was_kf);
    kern_cuda_wgmma_rows(was_rows);
    cc_prod_close(&p);
    free(w);
    free(made);
    free(got);
}

static void test_kfold(void **state)
{
    (void)state;
    int was = kern_cuda_kfold(1);
    /* cc_case's checks in the super-block form (rows past a tile, k cut and not) */
    cc_case(XF_TYPE_Q4_K, 67, 512, 70 + tk_rand_int(0, 3));
    cc_case(XF_TYPE_Q5_K, 130, 1024, 131);
    /* uncut (1025 tokens x 2100 rows); the 1.5B's q at 512 tokens (k in 4
     * slices of 192-row blocks, 2 of 128, whole super-blocks); a k of the
     * 1.5B's down on 384 rows and 128 tokens (35 super-blocks: 7 slices of
     * 5 on 132 SMs, within the tests' scratch) */
    kf_case(XF_TYPE_Q4_K, 1025, 256, 2100);
    kf_case(XF_TYPE_Q5_K, 512, 1536, 1536);
    kf_case(XF_TYPE_Q4_K, 128, 8960, 384);
    /* the launch of several: each product's bits as alone, in the new form */
    kern_cuda_kfold(1);
    multi_case(XF_TYPE_Q4_K, 1025, 512, 2, false);
    multi_case(XF_TYPE_Q5_K, 100, 1024, 3, true);
    kern_cuda_kfold(was);
}

/* BF16 or F32 weights [m, k] whose elements spread over 70 binades (each
 * w = +-u 2^e, u in [1, 2), e in [-60, 10]), with row 3's element 5 +Inf
 * and row 5's element 9 NaN where `nonfinite` */
static void *sf_weights(int type, int64_t m, int64_t k, bool nonfinite, size_t *wb)
{
    uint64_t rb;
    assert_true(quant_row_bytes(type, k, &rb));
    uint8_t *w = malloc((size_t)(rb * m));
    float *src = malloc((size_t)k * sizeof *src);
    assert_true(w && src);
    for (int64_t r = 0; r < m; r++) {
        for (int64_t j = 0; j < k; j++) {
            float u = 1.0f + (float)tk_rand_int(0, 1 << 20) / (float)(1 << 20);
            src[j] = ldexpf(tk_rand_int(0, 1) ? -u : u, tk_rand_int(-60, 10));
        }
        if (nonfinite && r == 3)
            src[5] = INFINITY;
        if (nonfinite && r == 5)
            src[9] = NAN;
        assert_int_equal(quant_quantize_row(type, src, w + r * rb, k), rb);
    }
    free(src);
    *wb = (size_t)(rb * m);
    return w;
}

static void sf_spread_case(int type, int64_t n, int64_t k, int64_t m)
{
    size_t wb;
    void *w = sf_weights(type, m, k, true, &wb);
    cc_prod p;
    cc_prod_open(&p, type, w, wb, NULL, n, k, m);
    size_t ny = p.ny;
    const float *yh = p.yh;
    float *got = malloc(ny * sizeof *got);
    assert_non_null(got);
    for (int kept = 0; kept < 2; kept++) {
        if (kept)
            assert_int_equal(kern_cuda_codes_keep(&tk.ctx, p.da.w, type, m, k), 0);
        cc_run(&p.da, got, p.nan, quant_type_name(type));
        /* rows 3 (an Inf weight) and 5 (a NaN) as the ref's, bit for bit
         * in class: +-Inf with its sign, NaN; the rest within tolerance */
        double big = 0.0, worst = 0.0;
        for (size_t i = 0; i < ny; i++) {
            int64_t r = (int64_t)i % m;
            if (r == 3 || r == 5) {
                if (isnan(yh[i]) ? !isnan(got[i]) : got[i] != yh[i])
                    fail_msg("split %s kept %d: y[%zu] (row %lld) = %g, ref %g", quant_type_name(type), kept,
                             i, (long long)r, got[i], yh[i]);
                continue;
            }
            big = fmax(big, fabs(yh[i]));
        }
        for (size_t i = 0; i < ny; i++) {
            int64_t r = (int64_t)i % m;
            if (r != 3 && r != 5)
                worst = fmax(worst, fabs((double)got[i] - yh[i]) / big);
        }
        print_message("split %s, 70 binades a group, kept %d: worst %.3g of the largest output\n",
                      quant_type_name(type), kept, worst);
        if (!(worst <= 2e-5))
            fail_msg("split %s kept %d: worst %.3g > 2e-5", quant_type_name(type), kept, worst);
        kern_cuda_codes_free(&tk.ctx);
    }
    cc_prod_close(&p);
    free(w);
    free(got);
}

/* weights in [2^110, 2^111) and x in [0.5, 1): a group's scaled sums
 * (2^96 * ~2^34) overflow f32 where y (~2^119) does not, so every output
 * is computed again the plain way (ms_exact), over x's k (F32's product
 * runs over 2k: a plain dot over that would read past the row) */
static void sf_huge_case(int type, int64_t n, int64_t k, int64_t m)
{
    uint64_t rb;
    assert_true(quant_row_bytes(type, k, &rb));
    size_t wb = (size_t)(rb * m);
    uint8_t *w = malloc(wb);
    float *src = malloc((size_t)k * sizeof *src), *x = malloc((size_t)(n * k) * sizeof *x);
    assert_true(w && src && x);
    for (int64_t r = 0; r < m; r++) {
        for (int64_t j = 0; j < k; j++)
            src[j] = ldexpf(1.0f + (float)tk_rand_int(0, 1023) / 1024.0f, 110);
        assert_int_equal(quant_quantize_row(type, src, w + r * rb, k), rb);
    }
    for (int64_t i = 0; i < n * k; i++)
        x[i] = 0.5f + (float)tk_rand_int(0, 1023) / 2048.0f;
    cc_prod p;
    cc_prod_open(&p, type, w, wb, x, n, k, m);
    float *got = malloc(p.ny * sizeof *got);
    assert_non_null(got);
    cc_run(&p.da, got, p.nan, "split, huge weights");
    for (size_t i = 0; i < p.ny; i++)
        if (!isfinite(p.yh[i]) || !isfinite(got[i]) || fabs((double)got[i] - p.yh[i]) > 2e-5 * fabs(p.yh[i]))
            fail_msg("split %s, weights ~2^110: y[%zu] = %g, ref %g", quant_type_name(type), i, got[i], p.yh[i]);
    cc_prod_close(&p);
    free(w);
    free(src);
    free(got);
}

static void test_split_float(void **state)
{
    (void)state;
    int was = kern_cuda_split_float(3);
    static const int types[] = {XF_TYPE_BF16, XF_TYPE_F32};
    for (int i = 0; i < 2; i++) {
        cc_case(types[i], 67, 96, 70 + tk_rand_int(0, 3));
        cc_case(types[i], 130, 1024, 131);
        sf_spread_case(types[i], 100, 320, 77);
        sf_huge_case(types[i], 40, 320, 20);
    }
    /* off: nothing kept; the product is SGEMM's (it reads the weights: the
     * same output as the ref's within SGEMM's tolerance, not the codes') */
    kern_cuda_split_float(0);
    tk_arena ar = {0};
    size_t wb;
    void *w = tk_weights(XF_TYPE_BF16, 16, 256, &wb);
    assert_non_null(w);
    void *dw = tk_dev(&ar, w, wb, 0);
    assert_int_equal(kern_cuda_codes_keep(&tk.ctx, dw, XF_TYPE_BF16, 16, 256), 1);
    kern_cuda_split_float(1);
    assert_int_equal(kern_cuda_codes_keep(&tk.ctx, dw, XF_TYPE_F32, 8, 256), 1); /* F32 still off */
    assert_int_equal(kern_cuda_codes_keep(&tk.ctx, dw, XF_TYPE_BF16, 16, 256), 0);
    kern_cuda_codes_free(&tk.ctx);
    kern_cuda_split_float(was);
    tk_arena_free(&ar);
    free(w);
}

static void test_codes_not_kept(void **state)
{
    (void)state;
    int was = kern_cuda_split_float(0); /* F32 below: not a type with codes while off */
    tk_arena ar = {0};
    size_t wb;
    void *w = tk_weights(XF_TYPE_Q4_K, 16, 256, &wb);
    assert_non_null(w);
    void *dw = tk_dev(&ar, w, wb, 0);
    int kept;
    size_t bytes;
    /* F16 is its own code; k % 32; XF_CODES=0 */
    assert_int_equal(kern_cuda_codes_keep(&tk.ctx, dw, XF_TYPE_F16, 16, 256), 1);
    assert_int_equal(kern_cuda_codes_keep(&tk.ctx, dw, XF_TYPE_Q8_0, 16, 48), 1);
    assert_int_equal(kern_cuda_codes_keep(&tk.ctx, dw, XF_TYPE_F32, 16, 256), 1);
    assert_int_equal(setenv("XF_CODES", "0", 1), 0);
    assert_int_equal(kern_cuda_codes_keep(&tk.ctx, dw, XF_TYPE_Q4_K, 16, 256), 1);
    assert_int_equal(unsetenv("XF_CODES"), 0);
    kern_cuda_codes_stats(&tk.ctx, &kept, &bytes);
    assert_int_equal(kept, 0);
    assert_int_equal(kern_cuda_codes_keep(NULL, dw, XF_TYPE_Q4_K, 16, 256), -1);
    assert_int_equal(kern_cuda_codes_keep(&tk.ctx, NULL, XF_TYPE_Q4_K, 16, 256), -1);
    /* XF_CODES other than 0 keeps */
    assert_int_equal(setenv("XF_CODES", "1", 1), 0);
    assert_int_equal(kern_cuda_codes_keep(&tk.ctx, dw, XF_TYPE_Q4_K, 16, 256), 0);
    assert_int_equal(unsetenv("XF_CODES"), 0);
    kern_cuda_codes_stats(&tk.ctx, &kept, &bytes);
    assert_int_equal(kept, 1);
    kern_cuda_codes_free(&tk.ctx);
    kern_cuda_codes_free(&tk.ctx); /* twice: nothing left to free */
    assert_null(tk.ctx.codes);
    kern_cuda_split_float(was);
    tk_arena_free(&ar);
    free(w);
}
#endif

int main(void)
{
#ifdef XF_HAVE_CUDA
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codes_kept_same_bits), cmocka_unit_test(test_codes_not_kept),
        cmocka_unit_test(test_wgmma_rows),           cmocka_unit_test(test_matmul_multi),
        cmocka_unit_test(test_split_float),
        cmocka_unit_test(test_kfold),
    };
    if (tk_no_device("test_kernels_cuda_codes", sizeof tests / sizeof tests[0]))
        return 77;
    tu_filter_from_env();
    return cmocka_run_group_tests(tests, tk_setup, tk_teardown);
#else
    printf("test_kernels_cuda_codes: built without CUDA: skipped\n");
    return 77;
#endif
}
