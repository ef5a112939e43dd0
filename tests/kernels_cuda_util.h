/* kernels_cuda_util.h: what the test_kernels_cuda*.c programs share: the
 * CUDA context and scratch of the group, device buffers of one case, random
 * inputs and weights of any type, the tolerances, and the check of every
 * CUDA variant against the CPU ref (tolerances: test_kernels_cuda.c's head).
 * static inline, as tests/gguf_bytes.h: each program uses a part, and
 * unused ones must not warn. */
#ifndef XF_TESTS_KERNELS_CUDA_UTIL_H
#define XF_TESTS_KERNELS_CUDA_UTIL_H

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

#define TK_SCRATCH (24u << 20) /* bytes of device scratch the tests hand to variants */

typedef struct tk_state {
    const kern_mem_ops *mem;
    kern_ctx ctx;    /* cuda context: legacy default stream, scratch below */
    void *scratch;   /* device [TK_SCRATCH] bytes */
    uint64_t rng;
    int runs[KERN_OP_COUNT]; /* variant runs that passed, per op */
} tk_state;

static tk_state tk; /* one per program: each is one translation unit */

/* ---- device buffers of one case ---------------------------------------- */

typedef struct tk_arena {
    void *p[24];
    int n;
} tk_arena;

/* device copy of host[bytes]; skew puts it 4 bytes off 16-byte alignment */
static inline void *tk_dev(tk_arena *a, const void *host, size_t bytes, int skew)
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

static inline void tk_arena_free(tk_arena *a)
{
    for (int i = 0; i < a->n; i++)
        tk.mem->free(a->p[i]);
    a->n = 0;
}

/* ---- helpers of the dev_step and fused-attention tests ------------------- */

/* device {pos0, n_kv, tok...} */
static inline int32_t *tk_step(tk_arena *ar, int pos0, int n_kv, const int32_t *tok, int n)
{
    int32_t h[16] = {pos0, n_kv};
    assert_true(n <= 14);
    for (int i = 0; i < n; i++)
        h[KERN_STEP_TOK + i] = tok[i];
    return tk_dev(ar, h, sizeof h, 0);
}

/* device floats at d [n] into a new host array */
static inline float *tk_fetch(const void *d, size_t n)
{
    float *h = malloc((n ? n : 1) * sizeof *h);
    assert_non_null(h);
    assert_int_equal(tk.mem->to_host(&tk.ctx, h, d, n * sizeof(float)), 0);
    return h;
}

/* the fusion's kq, kq_soft and kqv at outs (device; kq and kq_soft sized
 * for sn_cap) = the opt ops' want (host), bit for bit, and still NaN past
 * the row's sn */
static inline void tk_same_as(const void *const outs[3], float *const want[3], size_t sn, size_t sn_cap,
                              size_t qn, const char *what)
{
    static const char *const names[3] = {"kq", "kq_soft", "kqv"};
    for (int o = 0; o < 3; o++) {
        size_t n = o == 2 ? qn : sn, cap = o == 2 ? qn : sn_cap;
        float *got = tk_fetch(outs[o], cap);
        for (size_t i = 0; i < n; i++)
            if (memcmp(&got[i], &want[o][i], sizeof(float)) != 0)
                fail_msg("attn_fused %s: %s[%zu] = %.9g, opt %.9g", what, names[o], i, got[i], want[o][i]);
        for (size_t i = n; i < cap; i++)
            if (!isnan(got[i]))
                fail_msg("attn_fused %s: %s[%zu] written past the row", what, names[o], i);
        free(got);
    }
}

static inline float *tk_host_random(size_t n, float lo, float hi)
{
    float *h = malloc((n ? n : 1) * sizeof *h);
    assert_non_null(h);
    tu_fill_random(h, n, &tk.rng, lo, hi);
    return h;
}

static inline int tk_rand_int(int lo, int hi) /* in [lo, hi] */
{
    return lo + (int)(tu_rand_u64(&tk.rng) % (uint64_t)(hi - lo + 1));
}

static inline double tk_tol(kern_op op, const char *variant)
{
    if (strcmp(variant, "ref") == 0)
        return op == KERN_OP_VIEW ? 0.0 : 2e-6;
    if (strcmp(variant, "tc") == 0)
        return 4e-3;
    switch (op) {
    case KERN_OP_VIEW: return 0.0;
    case KERN_OP_EMBD:
    case KERN_OP_ADD:
    case KERN_OP_SWIGLU:
    case KERN_OP_ROPE: return 2e-6;
    /* GELU's tail: y = x / (1 + e^(2u)) with 2u up to ~25 at x = -6, so the
     * few ulps of u's f32 rounding (x + 0.044715 x^3) come out ~25x larger
     * in y; a one-element tensor there is judged against itself (H100,
     * session 27: 2.56e-6 at x ~ -6, y = -1.9e-10, with 2e-6 allowed) */
    case KERN_OP_GELU: return 8e-6;
    case KERN_OP_SOFTMAX: return 1e-5;
    default: return 2e-5;
    }
}

/* Runs CUDA variant v on da with da->y [ny] poisoned from nan first, and
 * brings the output to got; fails on a non-zero return, naming the case. */
static inline void tk_run_cuda(const kern_variant *v, kern_args *da, float *got, const float *nan, size_t ny,
                               const char *what)
{
    assert_int_equal(tk.mem->to_dev(&tk.ctx, da->y, nan, ny * sizeof(float)), 0);
    int rc = v->fn(&tk.ctx, da);
    if (rc != 0)
        fail_msg("%s/%s [%s]: returned %d", kern_op_name(v->op), v->name, what, rc);
    assert_int_equal(tk.mem->to_host(&tk.ctx, got, da->y, ny * sizeof(float)), 0);
}

/* Runs the CPU ref on ha (host inputs, ha->y host [ny]) and every CUDA
 * variant of op on da (device copies of the same inputs, da->y device [ny],
 * poisoned before each run); fails on a return code or an error over
 * tolerance, naming the variant and the case. */
static inline void tk_check(kern_op op, kern_args *ha, kern_args *da, size_t ny, const char *what)
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
        tk_run_cuda(&v[i], da, got, nan, ny, what);
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

/* rows x k random weights quantized to type; NULL (and a note) if
 * quant_quantize_row cannot make that type */
static inline void *tk_weights(int type, int64_t rows, int64_t k, size_t *bytes)
{
    uint64_t rb;
    *bytes = 0; /* set on failure too: inlined into callers, gcc cannot see they check the NULL first */
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
static inline int tk_klist(int type, int64_t *ks)
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

typedef struct tk_attn {
    int n, pos0, nh, nkv, hd;
} tk_attn;

/* ---- the group: one CUDA context and its scratch ------------------------ */

static inline int tk_setup(void **state)
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

static inline int tk_teardown(void **state)
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

/* the start of main: no CUDA device answers (printed, with why): the
 * program exits 77, which ctest counts as skipped */
static inline int tk_no_device(const char *prog, size_t n_tests)
{
    char why[256];
    if (kern_backend_available(KERN_BACKEND_CUDA, why, sizeof why))
        return 0;
    printf("%s: skipped all %zu tests: %s\n", prog, n_tests, why);
    return 1;
}

#endif
