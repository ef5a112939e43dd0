/* test_kernels_cuda: every CUDA kernel variant of every op kind against the
 * CPU `ref` variant on the same inputs, plus the CUDA memory ops and CUDA
 * graph capture of a decode-like sequence.
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
 *     1-2 ulp) and ROPE (f64 angle), exact for VIEW.
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
#include "quant.h"
#include "quantize.h"
#include "testutil.h"

#ifdef XF_HAVE_CUDA
#include <cuda_runtime.h>

#include "kernels_cuda.h"
#endif

#define TK_SCRATCH (8u << 20) /* bytes of device scratch the tests hand to variants */

typedef struct tk_state {
    const kern_mem_ops *mem;
    kern_ctx ctx;    /* cuda context: legacy default stream, scratch below */
    void *scratch;   /* device [TK_SCRATCH] bytes */
    uint64_t rng;
    int runs[KERN_OP_COUNT]; /* variant runs that passed, per op */
} tk_state;

static tk_state tk;

/* ---- device buffers of one case ---------------------------------------- */

typedef struct tk_arena {
    void *p[24];
    int n;
} tk_arena;

/* device copy of host[bytes]; skew puts it 4 bytes off 16-byte alignment */
static void *tk_dev(tk_arena *a, const void *host, size_t bytes, int skew)
{
    assert_true(a->n < 24);
    char *d = tk.mem->alloc(bytes + 16);
    assert_non_null(d);
    a->p[a->n++] = d;
    char *u = d + (skew ? 4 : 0);
    if (host && bytes)
        assert_int_equal(tk.mem->to_dev(&tk.ctx, u, host, bytes), 0);
    return u;
}

static void tk_arena_free(tk_arena *a)
{
    for (int i = 0; i < a->n; i++)
        tk.mem->free(a->p[i]);
    a->n = 0;
}

static float *tk_host_random(size_t n, float lo, float hi)
{
    float *h = malloc((n ? n : 1) * sizeof *h);
    assert_non_null(h);
    tu_fill_random(h, n, &tk.rng, lo, hi);
    return h;
}

static int tk_rand_int(int lo, int hi) /* in [lo, hi] */
{
    return lo + (int)(tu_rand_u64(&tk.rng) % (uint64_t)(hi - lo + 1));
}

static double tk_tol(kern_op op, const char *variant)
{
    if (strcmp(variant, "ref") == 0)
        return op == KERN_OP_VIEW ? 0.0 : 2e-6;
    if (strcmp(variant, "tc") == 0)
        return 4e-3;
    switch (op) {
    case KERN_OP_VIEW: return 0.0;
    case KERN_OP_EMBD:
    case KERN_OP_ADD:
    case KERN_OP_GELU:
    case KERN_OP_SWIGLU:
    case KERN_OP_ROPE: return 2e-6;
    case KERN_OP_SOFTMAX: return 1e-5;
    default: return 2e-5;
    }
}

/* Runs the CPU ref on ha (host inputs, ha->y host [ny]) and every CUDA
 * variant of op on da (device copies of the same inputs, da->y device [ny],
 * poisoned before each run); fails on a return code or an error over
 * tolerance, naming the variant and the case. */
static void tk_check(kern_op op, kern_args *ha, kern_args *da, size_t ny, const char *what)
{
    const kern_variant *ref = kern_find(op, KERN_BACKEND_CPU, "ref");
    assert_non_null(ref);
    kern_ctx cpu = {.n_threads = 1};
    assert_int_equal(ref->fn(&cpu, ha), 0);
    for (size_t i = 0; i < ny; i++)
        if (isnan(ha->y[i]))
            fail_msg("%s [%s]: the CPU ref gave NaN at %zu", kern_op_name(op), what, i);
    float *got = malloc((ny ? ny : 1) * sizeof *got), *nan = malloc((ny ? ny : 1) * sizeof *nan);
    assert_non_null(got);
    assert_non_null(nan);
    tu_poison(nan, ny);
    size_t nv;
    const kern_variant *v = kern_registry(&nv);
    int ran = 0;
    for (size_t i = 0; i < nv; i++) {
        if (v[i].op != op || v[i].backend != KERN_BACKEND_CUDA)
            continue;
        assert_int_equal(tk.mem->to_dev(&tk.ctx, da->y, nan, ny * sizeof(float)), 0);
        int rc = v[i].fn(&tk.ctx, da);
        if (rc != 0)
            fail_msg("%s/%s [%s]: returned %d", kern_op_name(op), v[i].name, what, rc);
        assert_int_equal(tk.mem->to_host(&tk.ctx, got, da->y, ny * sizeof(float)), 0);
        double err = tu_rel_max_err(got, ha->y, ny), tol = tk_tol(op, v[i].name);
        if (!(err <= tol)) {
            size_t bad = 0;
            double amax = 1e-30;
            for (size_t j = 0; j < ny; j++)
                amax = fmax(amax, fabs(ha->y[j]));
            for (bad = 0; bad < ny; bad++)
                if (isnan(got[bad]) || isinf(got[bad]) != isinf(ha->y[bad]) ||
                    (!isinf(got[bad]) && fabs((double)got[bad] - ha->y[bad]) > tol * amax))
                    break;
            fail_msg("%s/%s [%s]: rel err %.3g > %.3g; first bad y[%zu] = %.9g, cpu ref %.9g", kern_op_name(op),
                     v[i].name, what, err, tol, bad < ny ? bad : 0, bad < ny ? got[bad] : 0.0,
                     bad < ny ? ha->y[bad] : 0.0);
        }
        tk.runs[op]++;
        ran++;
    }
    assert_true(ran >= 2); /* at least ref and opt */
    free(got);
    free(nan);
}

/* ---- weights of any type ------------------------------------------------ */

static const int tk_wtypes[] = {XF_TYPE_F32,  XF_TYPE_F16,  XF_TYPE_BF16, XF_TYPE_Q8_0,
                                XF_TYPE_Q4_0, XF_TYPE_Q4_1, XF_TYPE_Q5_0, XF_TYPE_Q5_1,
                                XF_TYPE_Q4_K, XF_TYPE_Q5_K, XF_TYPE_Q6_K};
#define TK_NTYPES (sizeof tk_wtypes / sizeof tk_wtypes[0])

/* rows x k random weights quantized to type; NULL (and a note) if
 * quant_quantize_row cannot make that type */
static void *tk_weights(int type, int64_t rows, int64_t k, size_t *bytes)
{
    uint64_t rb;
    if (!quant_row_bytes(type, k, &rb))
        return NULL;
    uint8_t *w = malloc((size_t)(rb * rows));
    assert_non_null(w);
    float *src = tk_host_random((size_t)k, -1.0f, 1.0f);
    for (int64_t r = 0; r < rows; r++) {
        tu_fill_random(src, (size_t)k, &tk.rng, -1.0f, 1.0f);
        if (quant_quantize_row(type, src, w + r * rb, k) != rb) {
            free(src);
            free(w);
            return NULL;
        }
    }
    free(src);
    *bytes = (size_t)(rb * rows);
    return w;
}

/* the row lengths to try for a type: odd ones only where the type allows */
static int tk_klist(int type, int64_t *ks)
{
    const quant_type_info *t = quant_type_get(type);
    int be = t ? t->block_elems : 1;
    /* opt's matrix-vector kernel gives a row 8, 16 or 32 lanes by k: cover each */
    if (be == 1) {
        ks[0] = 67, ks[1] = 64, ks[2] = 264, ks[3] = 1032;
        return 4;
    }
    if (be == 32) {
        ks[0] = 64, ks[1] = 96, ks[2] = 512, ks[3] = 1024;
        return 4;
    }
    ks[0] = 512, ks[1] = 768, ks[2] = 1280;
    return 3;
}

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
    static const tk_mm_shape shapes[] = {{1, 37}, {3, 50}, {4, 33}, {9, 70}, {33, 129}};
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
                int skew = (s == 1 || s == 3) && kk == 1;
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

/* ---- KQ / KQV ----------------------------------------------------------- */

typedef struct tk_attn {
    int n, pos0, nh, nkv, hd;
} tk_attn;

static const tk_attn tk_attn_cases[] = {
    {1, 9, 4, 4, 64},  /* decode, MHA */
    {5, 0, 4, 2, 64},  /* prefill, GQA */
    {4, 3, 6, 1, 8},   /* prefill after a prefix, MQA */
    {3, 40, 4, 2, 5},  /* odd head_dim, several 32-wide tiles */
    {1, 70, 2, 1, 128},
    {2, 5, 2, 2, 256}, /* the widest head opt KQV takes */
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

/* ---- SOFTMAX ------------------------------------------------------------ */

static void test_softmax(void **state)
{
    (void)state;
    static const int64_t ms[] = {1, 7, 300, 2500};
    for (size_t mm = 0; mm < 4; mm++)
        for (int c = 0; c < 2; c++) {
            int64_t m = ms[mm], n = c == 0 ? 1 : 6;
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
            tk_arena_free(&ar);
            free(x);
            free(yh);
        }
}

/* ---- ADD / GELU / SWIGLU ------------------------------------------------ */

static void elem_cases(kern_op op)
{
    static const int64_t ts[] = {1, 7, 4096, 4099};
    for (size_t t = 0; t < 4; t++)
        for (int skew = 0; skew < 2; skew++) {
            int64_t n = t == 2 ? 4 : 1, k = ts[t] / n;
            size_t total = (size_t)(n * k);
            float *x = tk_host_random(total, -6, 6), *x2 = tk_host_random(total, -2, 2);
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

#ifdef XF_HAVE_CUDA
/* ---- CUDA graph capture: no allocation, sync or host read inside a call -- */

typedef struct tk_graph_case {
    kern_args embd, norm, mm, gelu, kq, soft;
} tk_graph_case;

static int tk_run_seq(kern_ctx *ctx, const tk_graph_case *g, const char *variant, int with_gemm)
{
    const kern_args *seq[6] = {&g->embd, &g->norm, &g->mm, &g->gelu, &g->kq, &g->soft};
    const kern_op ops[6] = {KERN_OP_EMBD, KERN_OP_NORM, KERN_OP_MATMUL, KERN_OP_GELU, KERN_OP_KQ, KERN_OP_SOFTMAX};
    for (int i = 0; i < 6; i++) {
        if (ops[i] == KERN_OP_MATMUL && !with_gemm && seq[i]->n > 4)
            continue;
        const kern_variant *v = kern_find(ops[i], KERN_BACKEND_CUDA, variant);
        if (!v || v->fn(ctx, seq[i]))
            return -1;
    }
    return 0;
}

static void graph_capture(int64_t n_tok, int with_gemm)
{
    int64_t D = 256, F = 520, V = 40, H = 4, hd = D / H, n_kv = 5 + n_tok;
    tk_arena ar = {0};
    cudaStream_t st;
    assert_int_equal(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), cudaSuccess);
    kern_ctx ctx = {.stream = st, .scratch = tk.scratch, .scratch_size = TK_SCRATCH};
    assert_int_equal(kern_cuda_ctx_prepare(&ctx), 0);
    size_t wb, w2b, mb;
    void *wte = tk_weights(XF_TYPE_F16, V, D, &wb), *wpe = tk_weights(XF_TYPE_F32, n_kv, D, &w2b);
    void *wmm = tk_weights(XF_TYPE_F16, F, D, &mb);
    float *g = tk_host_random((size_t)D, 0.5f, 1.5f), *b = tk_host_random((size_t)D, -0.5f, 0.5f);
    float *cache = tk_host_random((size_t)(n_kv * H * hd), -1, 1);
    int32_t tok[8];
    for (int i = 0; i < n_tok; i++)
        tok[i] = tk_rand_int(0, (int)V - 1);
    tk_graph_case gc;
    float *e = tk_dev(&ar, NULL, (size_t)(n_tok * D) * 4, 0), *nrm = tk_dev(&ar, NULL, (size_t)(n_tok * D) * 4, 0);
    float *h = tk_dev(&ar, NULL, (size_t)(n_tok * F) * 4, 0), *a = tk_dev(&ar, NULL, (size_t)(n_tok * F) * 4, 0);
    float *s = tk_dev(&ar, NULL, (size_t)(H * n_tok * n_kv) * 4, 0), *p = tk_dev(&ar, NULL, (size_t)(H * n_tok * n_kv) * 4, 0);
    gc.embd = (kern_args){.w = tk_dev(&ar, wte, wb, 0), .w_type = XF_TYPE_F16, .w2 = tk_dev(&ar, wpe, w2b, 0),
                          .w2_type = XF_TYPE_F32, .y = e, .tok = tok, .n = n_tok, .k = D, .pos0 = (int)(n_kv - n_tok)};
    gc.norm = (kern_args){.x = e, .w = tk_dev(&ar, g, (size_t)D * 4, 0), .w_type = XF_TYPE_F32,
                          .b = tk_dev(&ar, b, (size_t)D * 4, 0), .y = nrm, .n = n_tok, .k = D, .eps = 1e-5f};
    gc.mm = (kern_args){.x = nrm, .w = tk_dev(&ar, wmm, mb, 0), .w_type = XF_TYPE_F16, .y = h, .n = n_tok, .k = D,
                        .m = F};
    gc.gelu = (kern_args){.x = h, .y = a, .n = n_tok, .k = F};
    /* the normed activations as q of H heads against a random cache */
    gc.kq = (kern_args){.x = nrm, .kc = tk_dev(&ar, cache, (size_t)(n_kv * H * hd) * 4, 0), .y = s, .n = n_tok,
                        .n_head = (int)H, .n_head_kv = (int)H, .head_dim = (int)hd, .n_kv = (int)n_kv,
                        .pos0 = (int)(n_kv - n_tok), .scale = 0.125f};
    gc.soft = (kern_args){.x = s, .y = p, .n = H * n_tok, .m = n_kv};
    float *outs[3] = {nrm, a, p};
    size_t nouts[3] = {(size_t)(n_tok * D), (size_t)(n_tok * F), (size_t)(H * n_tok * n_kv)};
    /* eager run: the expected outputs */
    assert_int_equal(tk_run_seq(&ctx, &gc, "opt", with_gemm), 0);
    size_t most = nouts[0] + nouts[1] + nouts[2];
    float *want[3], *got = malloc(most * 4);
    for (int i = 0; i < 3; i++) {
        want[i] = malloc(nouts[i] * 4);
        assert_int_equal(tk.mem->to_host(&ctx, want[i], outs[i], nouts[i] * 4), 0);
    }
    /* capture in global mode: an allocation or sync anywhere would end it */
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    assert_int_equal(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal), cudaSuccess);
    int rc = tk_run_seq(&ctx, &gc, "opt", with_gemm);
    cudaError_t ce = cudaStreamEndCapture(st, &graph);
    if (rc || ce != cudaSuccess)
        fail_msg("capture failed: kernels rc=%d, end capture: %s", rc, cudaGetErrorString(ce));
    assert_int_equal(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    float *nan = malloc(most * 4);
    tu_poison(nan, most);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tk.mem->to_dev(&ctx, outs[i], nan, nouts[i] * 4), 0);
    assert_int_equal(cudaGraphLaunch(exec, st), cudaSuccess);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tk.mem->to_host(&ctx, got, outs[i], nouts[i] * 4), 0);
        /* the same kernels on the same inputs: bit-identical */
        assert_memory_equal(got, want[i], nouts[i] * 4);
        free(want[i]);
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    kern_cuda_ctx_release(&ctx);
    assert_null(ctx.cublas);
    cudaStreamDestroy(st);
    tk_arena_free(&ar);
    free(nan);
    free(got);
    free(wte);
    free(wpe);
    free(wmm);
    free(g);
    free(b);
    free(cache);
}

/* ---- dev_step: per-pass values read on the device -------------------------- */

/* device {pos0, n_kv, tok...} */
static int32_t *tk_step(tk_arena *ar, int pos0, int n_kv, const int32_t *tok, int n)
{
    int32_t h[16] = {pos0, n_kv};
    assert_true(n <= 14);
    for (int i = 0; i < n; i++)
        h[KERN_STEP_TOK + i] = tok[i];
    return tk_dev(ar, h, sizeof h, 0);
}

/* opt on a (values on the host) and on b (dev_step, launch sized for a
 * bound): the first ny outputs bit-identical, b's output past ny (up to
 * ny_cap, the bound's size) never written */
static void tk_same_bits(kern_op op, const kern_args *a, const kern_args *b, size_t ny, size_t ny_cap,
                         const char *what)
{
    const kern_variant *v = kern_find(op, KERN_BACKEND_CUDA, "opt");
    assert_non_null(v);
    float *nan = malloc(ny_cap * sizeof *nan), *ya = malloc(ny * sizeof *ya), *yb = malloc(ny_cap * sizeof *yb);
    assert_non_null(nan);
    assert_non_null(ya);
    assert_non_null(yb);
    tu_poison(nan, ny_cap);
    assert_int_equal(tk.mem->to_dev(&tk.ctx, a->y, nan, ny * sizeof(float)), 0);
    assert_int_equal(tk.mem->to_dev(&tk.ctx, b->y, nan, ny_cap * sizeof(float)), 0);
    if (v->fn(&tk.ctx, a) != 0 || v->fn(&tk.ctx, b) != 0)
        fail_msg("%s/opt [%s]: a call failed", kern_op_name(op), what);
    assert_int_equal(tk.mem->to_host(&tk.ctx, ya, a->y, ny * sizeof(float)), 0);
    assert_int_equal(tk.mem->to_host(&tk.ctx, yb, b->y, ny_cap * sizeof(float)), 0);
    for (size_t i = 0; i < ny; i++) {
        if (isnan(ya[i]))
            fail_msg("%s/opt [%s]: y[%zu] not written", kern_op_name(op), what, i);
        if (memcmp(&ya[i], &yb[i], sizeof ya[i]) != 0)
            fail_msg("%s/opt [%s]: y[%zu] = %.9g with dev_step, %.9g without", kern_op_name(op), what, i, yb[i],
                     ya[i]);
    }
    for (size_t i = ny; i < ny_cap; i++)
        if (!isnan(yb[i]))
            fail_msg("%s/opt [%s]: y[%zu] written past n_kv with dev_step", kern_op_name(op), what, i);
    free(nan);
    free(ya);
    free(yb);
}

static void test_step_values(void **state)
{
    (void)state;
    /* EMBD: ids and position row from the device */
    for (int c = 0; c < 4; c++) {
        int64_t k = c % 2 ? 67 : 64, vocab = 13, n = c < 2 ? 1 : 3, n_ctx = 20;
        int wt = c % 2 ? XF_TYPE_F32 : XF_TYPE_F16, pos0 = 9;
        size_t wb, w2b;
        void *w = tk_weights(wt, vocab, k, &wb), *w2 = tk_weights(XF_TYPE_F32, n_ctx, k, &w2b);
        int32_t tok[3] = {4, 12, 0};
        tk_arena ar = {0};
        kern_args a = {.w = tk_dev(&ar, w, wb, 0), .w_type = wt, .w2 = tk_dev(&ar, w2, w2b, 0),
                       .w2_type = XF_TYPE_F32, .tok = tok, .n = n, .k = k, .pos0 = pos0};
        a.y = tk_dev(&ar, NULL, (size_t)(n * k) * 4, 0);
        kern_args b = a;
        b.y = tk_dev(&ar, NULL, (size_t)(n * k) * 4, 0);
        b.tok = NULL;
        b.pos0 = 0;
        b.dev_step = tk_step(&ar, pos0, pos0 + (int)n, tok, (int)n);
        tk_same_bits(KERN_OP_EMBD, &a, &b, (size_t)(n * k), (size_t)(n * k), c % 2 ? "F32 k=67" : "F16 k=64");
        tk_arena_free(&ar);
        free(w);
        free(w2);
    }
    /* ROPE: the position from the device */
    {
        int64_t n = 2;
        int nh = 3, hd = 64, pos0 = 100;
        size_t total = (size_t)(n * nh * hd);
        float *x = tk_host_random(total, -2, 2);
        tk_arena ar = {0};
        kern_args a = {.x = tk_dev(&ar, x, total * 4, 0), .n = n, .n_head = nh, .head_dim = hd, .pos0 = pos0,
                       .rope_base = 1e4f};
        a.y = tk_dev(&ar, NULL, total * 4, 0);
        kern_args b = a;
        b.y = tk_dev(&ar, NULL, total * 4, 0);
        b.pos0 = 0;
        b.dev_step = tk_step(&ar, pos0, pos0 + (int)n, NULL, 0);
        tk_same_bits(KERN_OP_ROPE, &a, &b, total, total, "n=2 pos0=100");
        tk_arena_free(&ar);
        free(x);
    }
    /* KQ, SOFTMAX, KQV: n_kv from the device, launches sized for a bound */
    static const tk_attn cases[] = {{1, 40, 4, 2, 64}, {1, 0, 2, 2, 64}, {3, 10, 4, 4, 5}, {1, 300, 2, 1, 32}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const tk_attn *c = &cases[ci];
        int n_kv = c->pos0 + c->n, bound = n_kv + 97;
        size_t qn = (size_t)c->n * c->nh * c->hd, cn = (size_t)bound * c->nkv * c->hd;
        size_t sn = (size_t)c->nh * c->n * n_kv, sn_cap = (size_t)c->nh * c->n * bound;
        float *q = tk_host_random(qn, -1, 1), *cache = tk_host_random(cn, -1, 1);
        tk_arena ar = {0};
        int32_t *step = tk_step(&ar, c->pos0, n_kv, NULL, 0);
        char what[96];
        snprintf(what, sizeof what, "n=%d pos0=%d heads=%d/%d hd=%d bound=%d", c->n, c->pos0, c->nh, c->nkv, c->hd,
                 bound);
        kern_args a = {.x = tk_dev(&ar, q, qn * 4, 0), .kc = tk_dev(&ar, cache, cn * 4, 0), .n = c->n,
                       .n_head = c->nh, .n_head_kv = c->nkv, .head_dim = c->hd, .n_kv = n_kv, .pos0 = c->pos0,
                       .scale = 0.125f};
        a.y = tk_dev(&ar, NULL, sn * 4, 0);
        kern_args b = a;
        b.y = tk_dev(&ar, NULL, sn_cap * 4, 0);
        b.n_kv = bound;
        b.pos0 = 0;
        b.dev_step = step;
        tk_same_bits(KERN_OP_KQ, &a, &b, sn, sn_cap, what);
        /* softmax of those scores (causal -inf included) */
        kern_args sa = {.x = a.y, .n = (int64_t)c->nh * c->n, .m = n_kv};
        sa.y = tk_dev(&ar, NULL, sn * 4, 0);
        kern_args sb = sa;
        sb.y = tk_dev(&ar, NULL, sn_cap * 4, 0);
        sb.m = bound + 2000; /* a bound that takes more threads than n_kv */
        sb.dev_step = step;
        size_t sb_cap = (size_t)sb.n * (size_t)sb.m;
        float *big = tk_dev(&ar, NULL, sb_cap * 4, 0);
        sb.y = big;
        tk_same_bits(KERN_OP_SOFTMAX, &sa, &sb, sn, sb_cap, what);
        /* kqv of the probabilities */
        kern_args va = {.x = sa.y, .vc = a.kc, .n = c->n, .n_head = c->nh, .n_head_kv = c->nkv, .head_dim = c->hd,
                        .n_kv = n_kv, .pos0 = c->pos0};
        va.y = tk_dev(&ar, NULL, qn * 4, 0);
        kern_args vb = va;
        vb.y = tk_dev(&ar, NULL, qn * 4, 0);
        vb.n_kv = bound;
        vb.dev_step = step;
        tk_same_bits(KERN_OP_KQV, &va, &vb, qn, qn, what);
        tk_arena_free(&ar);
        free(q);
        free(cache);
    }
    /* a softmax row with nothing to attend to */
    {
        int64_t m = 37;
        float x[37];
        for (int j = 0; j < m; j++)
            x[j] = -INFINITY;
        tk_arena ar = {0};
        int32_t *step = tk_step(&ar, 0, (int)m, NULL, 0);
        kern_args a = {.x = tk_dev(&ar, x, sizeof x, 0), .n = 1, .m = m};
        a.y = tk_dev(&ar, NULL, sizeof x, 0);
        kern_args b = a;
        b.m = 4096;
        b.y = tk_dev(&ar, NULL, 4096 * 4, 0);
        b.dev_step = step;
        tk_same_bits(KERN_OP_SOFTMAX, &a, &b, (size_t)m, 4096, "all -inf");
        float back[37];
        assert_int_equal(tk.mem->to_host(&tk.ctx, back, b.y, sizeof back), 0);
        for (int j = 0; j < m; j++)
            assert_true(back[j] == 0.0f);
        tk_arena_free(&ar);
    }
}

/* ---- the kernels only the fast path launches ------------------------------ */

static void test_fast_path_kernels(void **state)
{
    (void)state;
    /* KV-cache rows at a position from the host or the device */
    for (int c = 0; c < 4; c++) {
        int64_t row = c < 2 ? 64 : 5, n = c % 2 ? 2 : 1, n_ctx = 12;
        int pos0 = 7;
        size_t cn = (size_t)(n_ctx * row), sn = (size_t)(n * row);
        float *cache = tk_host_random(cn, -1, 1), *src = tk_host_random(sn, -1, 1), *got = malloc(cn * 4);
        tk_arena ar = {0};
        float *dc = tk_dev(&ar, cache, cn * 4, 0), *ds = tk_dev(&ar, src, sn * 4, 0);
        for (int dev = 0; dev < 2; dev++) {
            assert_int_equal(tk.mem->to_dev(&tk.ctx, dc, cache, cn * 4), 0);
            const int32_t *step = dev ? tk_step(&ar, pos0, pos0 + (int)n, NULL, 0) : NULL;
            assert_int_equal(kern_cuda_rows_store(&tk.ctx, dc, ds, row, n, dev ? 0 : pos0, step), 0);
            assert_int_equal(tk.mem->to_host(&tk.ctx, got, dc, cn * 4), 0);
            memcpy(cache + (size_t)pos0 * row, src, sn * 4); /* what it must be */
            assert_memory_equal(got, cache, cn * 4);
        }
        assert_int_equal(kern_cuda_rows_store(&tk.ctx, dc, ds, 0, n, pos0, NULL), -1);
        tk_arena_free(&ar);
        free(cache);
        free(src);
        free(got);
    }
    /* GPT-2's q/k/v split with the cache stores = 3 VIEWs + 2 stores */
    for (int c = 0; c < 4; c++) {
        int64_t d = c < 2 ? 64 : 5, n = c % 2 ? 3 : 1, n_ctx = 9;
        int pos0 = 4;
        size_t qn = (size_t)(n * 3 * d), on = (size_t)(n * d), cn = (size_t)(n_ctx * d);
        float *qkv = tk_host_random(qn, -1, 1), *kc = tk_host_random(cn, -1, 1), *vc = tk_host_random(cn, -1, 1);
        float *got = malloc(cn * 4), *want = malloc(on * 4);
        tk_arena ar = {0};
        float *dq = tk_dev(&ar, qkv, qn * 4, 0), *o[3], *dkc = tk_dev(&ar, kc, cn * 4, 0),
              *dvc = tk_dev(&ar, vc, cn * 4, 0);
        for (int j = 0; j < 3; j++)
            o[j] = tk_dev(&ar, NULL, on * 4, 0);
        int32_t *step = tk_step(&ar, pos0, pos0 + (int)n, NULL, 0);
        assert_int_equal(kern_cuda_qkv_split(&tk.ctx, dq, o[0], o[1], o[2], dkc, dvc, n, d, 0, step), 0);
        for (int j = 0; j < 3; j++) {
            for (int64_t i = 0; i < n; i++)
                memcpy(want + i * d, qkv + i * 3 * d + j * d, (size_t)d * 4);
            assert_int_equal(tk.mem->to_host(&tk.ctx, got, o[j], on * 4), 0);
            assert_memory_equal(got, want, on * 4);
            if (j == 0)
                continue;
            float *hc = j == 1 ? kc : vc;
            memcpy(hc + (size_t)pos0 * d, want, on * 4);
            assert_int_equal(tk.mem->to_host(&tk.ctx, got, j == 1 ? dkc : dvc, cn * 4), 0);
            assert_memory_equal(got, hc, cn * 4);
        }
        tk_arena_free(&ar);
        free(qkv);
        free(kc);
        free(vc);
        free(got);
        free(want);
    }
    /* residual + norm in one launch = opt ADD then opt NORM / RMSNORM, bit for bit */
    for (int c = 0; c < 8; c++) {
        int rms = c & 1, skew = (c >> 1) & 1;
        int64_t k = c & 4 ? 7 : 768, n = 2;
        size_t t = (size_t)(n * k);
        float *x = tk_host_random(t, -1, 3), *x2 = tk_host_random(t, -1, 1);
        float *g = tk_host_random((size_t)k, 0.5f, 1.5f), *bb = tk_host_random((size_t)k, -0.5f, 0.5f);
        float *s1 = malloc(t * 4), *s2 = malloc(t * 4), *y1 = malloc(t * 4), *y2 = malloc(t * 4);
        tk_arena ar = {0};
        kern_args add = {.x = tk_dev(&ar, x, t * 4, 0), .x2 = tk_dev(&ar, x2, t * 4, skew), .n = n, .k = k};
        add.y = tk_dev(&ar, NULL, t * 4, 0);
        kern_args nrm = {.x = add.y, .w = tk_dev(&ar, g, (size_t)k * 4, 0), .w_type = XF_TYPE_F32,
                         .b = rms ? NULL : tk_dev(&ar, bb, (size_t)k * 4, 0), .n = n, .k = k, .eps = 1e-5f};
        nrm.y = tk_dev(&ar, NULL, t * 4, 0);
        const kern_variant *va = kern_find(KERN_OP_ADD, KERN_BACKEND_CUDA, "opt");
        const kern_variant *vn = kern_find(rms ? KERN_OP_RMSNORM : KERN_OP_NORM, KERN_BACKEND_CUDA, "opt");
        assert_int_equal(va->fn(&tk.ctx, &add), 0);
        assert_int_equal(vn->fn(&tk.ctx, &nrm), 0);
        assert_int_equal(tk.mem->to_host(&tk.ctx, s1, add.y, t * 4), 0);
        assert_int_equal(tk.mem->to_host(&tk.ctx, y1, nrm.y, t * 4), 0);
        float *nan = malloc(t * 4);
        tu_poison(nan, t);
        assert_int_equal(tk.mem->to_dev(&tk.ctx, add.y, nan, t * 4), 0);
        assert_int_equal(tk.mem->to_dev(&tk.ctx, nrm.y, nan, t * 4), 0);
        assert_int_equal(kern_cuda_add_norm(&tk.ctx, &add, &nrm, rms), 0);
        assert_int_equal(tk.mem->to_host(&tk.ctx, s2, add.y, t * 4), 0);
        assert_int_equal(tk.mem->to_host(&tk.ctx, y2, nrm.y, t * 4), 0);
        if (memcmp(s1, s2, t * 4) || memcmp(y1, y2, t * 4))
            fail_msg("add_norm rms=%d k=%lld skew=%d: not the bits of add then norm", rms, (long long)k, skew);
        for (size_t i = 0; i < t; i++)
            assert_false(isnan(y2[i]));
        /* norm must read what add writes */
        kern_args wrong = nrm;
        wrong.x = add.x;
        assert_int_equal(kern_cuda_add_norm(&tk.ctx, &add, &wrong, rms), -1);
        tk_arena_free(&ar);
        free(x);
        free(x2);
        free(g);
        free(bb);
        free(s1);
        free(s2);
        free(y1);
        free(y2);
        free(nan);
    }
}

/* matmul with its GELU in the epilogue = opt MATMUL then opt GELU, bit for bit */
static void test_matmul_gelu(void **state)
{
    (void)state;
    static const int types[] = {XF_TYPE_F16, XF_TYPE_F32, XF_TYPE_Q8_0};
    for (int ti = 0; ti < 3; ti++)
        for (int c = 0; c < 4; c++) {
            int type = types[ti];
            /* k = 67: the element-wise kernel (F32 only); n = 9: cuBLAS, then the GELU kernel */
            int64_t k = c == 3 && type == XF_TYPE_F32 ? 67 : 256, n = c == 0 ? 1 : c == 1 ? 3 : c == 2 ? 9 : 1,
                    m = 70;
            size_t wb;
            void *w = tk_weights(type, m, k, &wb);
            assert_non_null(w);
            float *x = tk_host_random((size_t)(n * k), -1, 1), *b = tk_host_random((size_t)m, -1, 1);
            size_t t = (size_t)(n * m);
            float *y1 = malloc(t * 4), *y2 = malloc(t * 4), *g1 = malloc(t * 4), *g2 = malloc(t * 4),
                  *nan = malloc(t * 4);
            tu_poison(nan, t);
            tk_arena ar = {0};
            kern_args mm = {.x = tk_dev(&ar, x, (size_t)(n * k) * 4, 0), .w = tk_dev(&ar, w, wb, 0), .w_type = type,
                            .b = tk_dev(&ar, b, (size_t)m * 4, 0), .n = n, .k = k, .m = m};
            mm.y = tk_dev(&ar, NULL, t * 4, 0);
            kern_args ge = {.x = mm.y, .n = n, .k = m};
            ge.y = tk_dev(&ar, NULL, t * 4, 0);
            assert_int_equal(kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "opt")->fn(&tk.ctx, &mm), 0);
            assert_int_equal(kern_find(KERN_OP_GELU, KERN_BACKEND_CUDA, "opt")->fn(&tk.ctx, &ge), 0);
            assert_int_equal(tk.mem->to_host(&tk.ctx, y1, mm.y, t * 4), 0);
            assert_int_equal(tk.mem->to_host(&tk.ctx, g1, ge.y, t * 4), 0);
            assert_int_equal(tk.mem->to_dev(&tk.ctx, mm.y, nan, t * 4), 0);
            assert_int_equal(tk.mem->to_dev(&tk.ctx, ge.y, nan, t * 4), 0);
            assert_int_equal(kern_cuda_matmul_gelu(&tk.ctx, &mm, &ge), 0);
            assert_int_equal(tk.mem->to_host(&tk.ctx, y2, mm.y, t * 4), 0);
            assert_int_equal(tk.mem->to_host(&tk.ctx, g2, ge.y, t * 4), 0);
            for (size_t i = 0; i < t; i++)
                assert_false(isnan(g2[i]));
            if (memcmp(y1, y2, t * 4) || memcmp(g1, g2, t * 4))
                fail_msg("matmul_gelu %s n=%lld k=%lld: not the bits of matmul then gelu", quant_type_name(type),
                         (long long)n, (long long)k);
            kern_args wrong = ge;
            wrong.x = mm.x;
            assert_int_equal(kern_cuda_matmul_gelu(&tk.ctx, &mm, &wrong), -1);
            tk_arena_free(&ar);
            free(w);
            free(x);
            free(b);
            free(y1);
            free(y2);
            free(g1);
            free(g2);
            free(nan);
        }
}

/* A decode-like sequence captured once with dev_step, replayed for several
 * steps: each replay gives the bits of calls with the values on the host. */
static void test_step_graph_replay(void **state)
{
    (void)state;
    int64_t D = 128, V = 30, H = 4, hd = D / H, n_ctx = 64;
    kern_ctx ctx = {.scratch = tk.scratch, .scratch_size = TK_SCRATCH};
    assert_int_equal(kern_cuda_stream_new(&ctx), 0);
    assert_non_null(ctx.stream);
    assert_int_equal(kern_cuda_stream_new(&ctx), -1); /* one already */
    size_t wb, w2b;
    void *wte = tk_weights(XF_TYPE_F16, V, D, &wb), *wpe = tk_weights(XF_TYPE_F32, n_ctx, D, &w2b);
    float *cache = tk_host_random((size_t)(n_ctx * D), -1, 1);
    tk_arena ar = {0};
    int32_t *pin = kern_cuda_host_alloc(16 * sizeof(int32_t));
    assert_non_null(pin);
    int32_t *dstep = tk_dev(&ar, NULL, 16 * sizeof(int32_t), 0);
    float *e = tk_dev(&ar, NULL, (size_t)D * 4, 0), *s = tk_dev(&ar, NULL, (size_t)(H * n_ctx) * 4, 0);
    float *p = tk_dev(&ar, NULL, (size_t)(H * n_ctx) * 4, 0), *o = tk_dev(&ar, NULL, (size_t)D * 4, 0);
    float *kc = tk_dev(&ar, cache, (size_t)(n_ctx * D) * 4, 0), *kc2 = tk_dev(&ar, NULL, (size_t)(n_ctx * D) * 4, 0);
    kern_args embd = {.w = tk_dev(&ar, wte, wb, 0), .w_type = XF_TYPE_F16, .w2 = tk_dev(&ar, wpe, w2b, 0),
                      .w2_type = XF_TYPE_F32, .y = e, .n = 1, .k = D};
    /* the embedding as q of H heads against the cache, then softmax, kqv */
    kern_args kq = {.x = e, .kc = kc, .y = s, .n = 1, .n_head = (int)H, .n_head_kv = (int)H, .head_dim = (int)hd,
                    .scale = 0.17f};
    kern_args sm = {.x = s, .y = p, .n = H};
    kern_args kqv = {.x = p, .vc = kc, .y = o, .n = 1, .n_head = (int)H, .n_head_kv = (int)H, .head_dim = (int)hd};
    kern_op ops[4] = {KERN_OP_EMBD, KERN_OP_KQ, KERN_OP_SOFTMAX, KERN_OP_KQV};
    kern_args *seq[4] = {&embd, &kq, &sm, &kqv};
    /* capture: the step copy first, then the calls with dev_step and bounds */
    assert_int_equal(kern_cuda_capture_begin(&ctx), 0);
    int rc = tk.mem->to_dev(&ctx, dstep, pin, 16 * sizeof(int32_t));
    for (int i = 0; i < 4 && rc == 0; i++) {
        kern_args a = *seq[i];
        a.dev_step = dstep;
        a.n_kv = (int)n_ctx;
        if (ops[i] == KERN_OP_SOFTMAX)
            a.m = n_ctx;
        rc = kern_find(ops[i], KERN_BACKEND_CUDA, "opt")->fn(&ctx, &a);
    }
    if (rc == 0)
        rc = kern_cuda_rows_store(&ctx, kc2, o, D, 1, 0, dstep);
    kern_cuda_graph *g = kern_cuda_capture_end(&ctx, rc == 0);
    assert_int_equal(rc, 0);
    assert_non_null(g);
    assert_int_equal((int)kern_cuda_graph_nodes(g), 6);
    float *want = malloc((size_t)D * 4), *got = malloc((size_t)D * 4), *row = malloc((size_t)D * 4);
    static const int pos[] = {0, 5, 31, 63, 6};
    for (int t = 0; t < 5; t++) {
        int pos0 = pos[t];
        int32_t tok = (int32_t)((pos0 * 7 + 3) % V);
        /* values on the host, op by op */
        embd.tok = &tok;
        embd.pos0 = pos0;
        kq.pos0 = pos0;
        kq.n_kv = kqv.n_kv = pos0 + 1;
        sm.m = pos0 + 1;
        for (int i = 0; i < 4; i++)
            assert_int_equal(kern_find(ops[i], KERN_BACKEND_CUDA, "opt")->fn(&ctx, seq[i]), 0);
        assert_int_equal(tk.mem->to_host(&ctx, want, o, (size_t)D * 4), 0);
        float *nan = malloc((size_t)D * 4);
        tu_poison(nan, (size_t)D);
        assert_int_equal(tk.mem->to_dev(&ctx, o, nan, (size_t)D * 4), 0);
        free(nan);
        /* the graph, told only through the pinned step */
        pin[KERN_STEP_POS0] = pos0;
        pin[KERN_STEP_NKV] = pos0 + 1;
        pin[KERN_STEP_TOK] = tok;
        assert_int_equal(kern_cuda_graph_launch(g, &ctx), 0);
        assert_int_equal(tk.mem->to_host(&ctx, got, o, (size_t)D * 4), 0);
        if (memcmp(got, want, (size_t)D * 4) != 0)
            fail_msg("replay at pos0 %d: not the bits of the calls with host values", pos0);
        assert_int_equal(tk.mem->to_host(&ctx, row, kc2 + (size_t)pos0 * D, (size_t)D * 4), 0);
        assert_memory_equal(row, want, (size_t)D * 4);
    }
    kern_cuda_graph_free(g);
    kern_cuda_graph_free(NULL);
    /* a failed call inside a capture: nothing kept, the stream usable after */
    assert_int_equal(kern_cuda_capture_begin(&ctx), 0);
    kern_args bad = sm;
    bad.m = -1;
    assert_int_equal(kern_find(KERN_OP_SOFTMAX, KERN_BACKEND_CUDA, "opt")->fn(&ctx, &bad), -1);
    assert_null(kern_cuda_capture_end(&ctx, 0));
    assert_int_equal(kern_find(KERN_OP_SOFTMAX, KERN_BACKEND_CUDA, "opt")->fn(&ctx, &sm), 0);
    assert_int_equal(tk.mem->sync(&ctx), 0);
    /* the legacy stream cannot capture */
    kern_ctx legacy = {0};
    assert_int_equal(kern_cuda_capture_begin(&legacy), -1);
    /* what the variants declare (kernels.h KERN_VF_*), not their names */
    assert_true(kern_find(KERN_OP_KQ, KERN_BACKEND_CUDA, "opt")->flags & KERN_VF_CAPTURABLE);
    assert_true(kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "tc")->flags & KERN_VF_CAPTURABLE);
    assert_false(kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "tc")->flags & KERN_VF_FUSE_EXACT);
    assert_true(kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "opt")->flags & KERN_VF_FUSE_EXACT);
    assert_false(kern_find(KERN_OP_KQ, KERN_BACKEND_CUDA, "ref")->flags & KERN_VF_CAPTURABLE);
    assert_false(kern_find(KERN_OP_KQ, KERN_BACKEND_CPU, "opt")->flags & KERN_VF_CAPTURABLE);
    kern_cuda_ctx_release(&ctx);
    kern_cuda_stream_free(&ctx);
    assert_null(ctx.stream);
    kern_cuda_host_free(pin);
    tk_arena_free(&ar);
    free(want);
    free(got);
    free(row);
    free(wte);
    free(wpe);
    free(cache);
}

static void test_graph_capture_decode(void **state)
{
    (void)state;
    graph_capture(1, 0);
}

static void test_graph_capture_gemm(void **state)
{
    (void)state;
    graph_capture(7, 1);
}
#endif

/* ---- main ---------------------------------------------------------------- */

static int tk_setup(void **state)
{
    (void)state;
    tk.rng = 0x9E3779B97F4A7C15ULL;
    tk.mem = kern_backend_mem(KERN_BACKEND_CUDA);
    if (!tk.mem)
        return -1;
    tk.scratch = tk.mem->alloc(TK_SCRATCH);
    if (!tk.scratch)
        return -1;
    tk.ctx = (kern_ctx){.n_threads = 1, .scratch = tk.scratch, .scratch_size = TK_SCRATCH};
    return 0;
}

static int tk_teardown(void **state)
{
    (void)state;
    for (int op = 0; op < KERN_OP_COUNT; op++)
        print_message("%-8s %4d variant runs checked\n", kern_op_name((kern_op)op), tk.runs[op]);
#ifdef XF_HAVE_CUDA
    kern_cuda_ctx_release(&tk.ctx);
#endif
    if (tk.mem)
        tk.mem->free(tk.scratch);
    return 0;
}

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
        cmocka_unit_test(test_matmul_unsupported_type),
        cmocka_unit_test(test_view),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_kq),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_kqv),
        cmocka_unit_test(test_add),
        cmocka_unit_test(test_gelu),
        cmocka_unit_test(test_swiglu),
#ifdef XF_HAVE_CUDA
        cmocka_unit_test(test_step_values),
        cmocka_unit_test(test_fast_path_kernels),
        cmocka_unit_test(test_matmul_gelu),
        cmocka_unit_test(test_step_graph_replay),
        cmocka_unit_test(test_graph_capture_decode),
        cmocka_unit_test(test_graph_capture_gemm),
#endif
    };
    char why[256];
    if (!kern_backend_available(KERN_BACKEND_CUDA, why, sizeof why)) {
        printf("test_kernels_cuda: skipped all %zu tests: %s\n", sizeof tests / sizeof tests[0], why);
        return 77;
    }
    return cmocka_run_group_tests(tests, tk_setup, tk_teardown);
}
