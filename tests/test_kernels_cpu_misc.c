/* test_kernels_cpu_misc: what surrounds the CPU kernels: argument checks of
 * every variant, the f16 conversions and matrix-vector products, the thread
 * pool, the registry and the CPU memory ops. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <time.h>

#include <cmocka.h>

#include "cpu/cpu.h"
#include "kernels.h"
#include "kernels_cpu_util.h"
#include "cpu/quant_dot.h"
#include "quant.h"
#include "testutil.h"

/* ------------------------------------------------------ argument checks */

/* kv must refuse a: -1, named in the failure by what was wrong */
static void refuses(const kern_variant *kv, const kern_args *a, const char *what)
{
    kern_ctx c = {.n_threads = 1};
    if (kv->fn(&c, a) != -1)
        fail_msg("%s/%s accepted %s", kern_op_name(kv->op), kv->name, what);
}

/* The arguments only kv's op kind reads, each made wrong on its own. ok is
 * a valid set; wh an f16 weight buffer. */
static void refuses_op_args(const kern_variant *kv, const kern_args *ok, const uint16_t *wh)
{
    kern_args a = *ok;
    switch (kv->op) {
    case KERN_OP_EMBD:
        a.k = 0, refuses(kv, &a, "k = 0");
        a = *ok, a.tok = NULL, refuses(kv, &a, "no tokens");
        a = *ok, a.n = 2, refuses(kv, &a, "token -1"); /* tok[1] = -1 */
        a = *ok, a.w_type = 99, refuses(kv, &a, "type 99");
        break;
    case KERN_OP_NORM:
    case KERN_OP_RMSNORM:
        a.k = 0, refuses(kv, &a, "k = 0");
        a = *ok, a.w = NULL, refuses(kv, &a, "no gamma");
        a = *ok, a.w_type = XF_TYPE_F16, a.w = wh, refuses(kv, &a, "an f16 gamma"); /* gamma is always f32 */
        break;
    case KERN_OP_MATMUL:
        a.k = 0, refuses(kv, &a, "k = 0");
        a = *ok, a.m = 0, refuses(kv, &a, "m = 0");
        a = *ok, a.w_type = 99, refuses(kv, &a, "type 99");
        /* k = 4 is not a multiple of its 32-element block */
        a = *ok, a.w_type = XF_TYPE_Q8_0, refuses(kv, &a, "Q8_0 rows of 4");
        a = *ok, a.x = NULL, refuses(kv, &a, "no x");
        break;
    case KERN_OP_VIEW:
        a.off = -1, refuses(kv, &a, "off = -1");
        a = *ok, a.m = 0, refuses(kv, &a, "m = 0");
        break;
    case KERN_OP_ROPE:
        a.head_dim = 3, refuses(kv, &a, "an odd head_dim");
        a = *ok, a.rope_base = 0, refuses(kv, &a, "rope_base = 0");
        break;
    case KERN_OP_KQ:
    case KERN_OP_KQV:
        a.n_head = 3, a.n_head_kv = 2, refuses(kv, &a, "3 heads over 2 kv heads");
        a = *ok, a.n_head_kv = 0, refuses(kv, &a, "no kv heads");
        a = *ok, a.kc = NULL, a.vc = NULL, refuses(kv, &a, "no cache");
        break;
    case KERN_OP_SOFTMAX:
        a.m = 0, refuses(kv, &a, "m = 0");
        break;
    case KERN_OP_ADD:
    case KERN_OP_SWIGLU:
        a.x2 = NULL, refuses(kv, &a, "no x2");
        /* fall through */
    case KERN_OP_GELU:
        a = *ok, a.k = 0, refuses(kv, &a, "k = 0");
        break;
    case KERN_OP_COUNT:
        fail();
    }
}

/* Every CPU variant refuses obviously invalid arguments and accepts n = 0. */
static void test_invalid_args(void **state)
{
    (void)state;
    float x[64] = {1}, y[64];
    uint16_t wh[64] = {0};
    int32_t tok[2] = {0, -1};
    for (size_t v = 0; v < kern_cpu_variant_count; v++) {
        const kern_variant *kv = &kern_cpu_variants[v];
        kern_ctx c = {.n_threads = 1};
        /* a valid small argument set for every op */
        kern_args ok = {.x = x, .x2 = x, .w = x, .w_type = XF_TYPE_F32, .tok = tok, .kc = x, .vc = x, .y = y,
                        .n = 1, .k = 4, .m = 4, .x_stride = 4, .n_head = 2, .n_head_kv = 1, .head_dim = 2,
                        .n_kv = 1, .eps = 1e-5f, .scale = 1, .rope_base = 10000};
        assert_int_equal(kv->fn(&c, &ok), 0);
        kern_args a = ok;
        a.n = -1, refuses(kv, &a, "n = -1");
        a = ok, a.y = NULL, refuses(kv, &a, "no y");
        refuses(kv, NULL, "no arguments");
        a = ok;
        a.n = 0;
        tu_poison(y, 64);
        assert_int_equal(kv->fn(&c, &a), 0);
        for (int i = 0; i < 64; i++)
            assert_true(isnan(y[i])); /* nothing written */
        refuses_op_args(kv, &ok, wh);
    }
}

/* The opt kernels also run with no ctx at all (single-threaded). */
static void test_null_ctx(void **state)
{
    (void)state;
    float x[6] = {1, 2, 3, 4, 5, 6}, y[6];
    const kern_variant *v = kern_find(KERN_OP_ADD, KERN_BACKEND_CPU, "opt");
    assert_non_null(v);
    kern_args a = {.x = x, .x2 = x, .y = y, .n = 2, .k = 3};
    tu_poison(y, 6);
    assert_int_equal(v->fn(NULL, &a), 0);
    for (int i = 0; i < 6; i++)
        assert_true(y[i] == 2 * x[i]);
}

/* ------------------------------------------------------- f16 conversion */

static void test_f16_row_exhaustive(void **state)
{
    (void)state;
    enum { N = 65536 + 5 }; /* every half, and a tail that is not a multiple of 8 */
    uint16_t *h = xmalloc(N * sizeof *h);
    float *f = xmalloc(N * sizeof *f);
    for (int i = 0; i < N; i++)
        h[i] = (uint16_t)(i * 40503u); /* a permutation mod 2^16: neighbours differ */
    /* the dispatching conversion (F16C here when the CPU has it) and the
     * portable one that other CPUs get */
    void (*const conv[2])(const uint16_t *, float *, int64_t) = {kern_cpu_f16_to_f32_row,
                                                                 kern_cpu_f16_to_f32_row_generic};
    for (int c = 0; c < 2; c++) {
        tu_poison(f, N);
        conv[c](h, f, N);
        for (int i = 0; i < N; i++) {
            float want = xf_f16_to_f32(h[i]);
            if (isnan(want)) {
                assert_true(isnan(f[i]));
            } else if (memcmp(&want, &f[i], sizeof want) != 0) {
                fail_msg("conversion %d, half 0x%04x: got %.9g want %.9g", c, h[i], (double)f[i],
                         (double)want);
            }
        }
    }
    free(h);
    free(f);
}

/* Both f16 matrix-vector products against an f64 sum (the portable one
 * does not run inside matmul/opt on a CPU with F16C). */
static void test_f16_gemv(void **state)
{
    (void)state;
    uint64_t rng = 0xf16f16;
    const int64_t rows_s[] = {1, 3, 4, 7, 37}, k_s[] = {1, 7, 16, 33, 300, 600};
    void (*const gemv[2])(const uint16_t *, int64_t, int64_t, const float *,
                          float *) = {kern_cpu_f16_gemv, kern_cpu_f16_gemv_generic};
    for (size_t ri = 0; ri < 5; ri++)
        for (size_t ki = 0; ki < 6; ki++) {
            int64_t rows = rows_s[ri], k = k_s[ki];
            float *wf = rand_floats((size_t)(rows * k), &rng, -1, 1),
                  *x = rand_floats((size_t)k, &rng, -1, 1);
            uint16_t *w = xmalloc((size_t)(rows * k) * sizeof *w);
            float *y = xmalloc((size_t)rows * sizeof *y), *want = xmalloc((size_t)rows * sizeof *want);
            for (int64_t i = 0; i < rows * k; i++)
                w[i] = xf_f32_to_f16(wf[i]);
            for (int64_t r = 0; r < rows; r++) {
                double acc = 0;
                for (int64_t j = 0; j < k; j++)
                    acc += (double)xf_f16_to_f32(w[r * k + j]) * x[j];
                want[r] = (float)acc;
            }
            for (int g = 0; g < 2; g++) {
                tu_poison(y, (size_t)rows);
                gemv[g](w, rows, k, x, y);
                double err = tu_rel_max_err(y, want, (size_t)rows);
                if (!(err <= 5e-5))
                    fail_msg("f16 gemv %d rows=%lld k=%lld: rel err %.3g", g, (long long)rows, (long long)k,
                             err);
            }
            free(wf);
            free(x);
            free(w);
            free(y);
            free(want);
        }
}

/* ----------------------------------------------------------------- pool */

typedef struct pool_probe {
    atomic_int calls[8];
    atomic_int bad_n;
    int want_n;
} pool_probe;

static void pool_probe_fn(void *arg, int i, int n)
{
    pool_probe *p = arg;
    if (n != p->want_n || i < 0 || i >= 8)
        atomic_fetch_add(&p->bad_n, 1);
    else
        atomic_fetch_add(&p->calls[i], 1);
}

static void test_pool(void **state)
{
    (void)state;
    assert_null(kern_pool_new(0));
    assert_null(kern_pool_new(-3));
    kern_pool_free(NULL);
    assert_int_equal(kern_pool_threads(NULL), 1);
    for (int t = 1; t <= 4; t++) {
        kern_pool *p = kern_pool_new(t);
        assert_non_null(p);
        assert_int_equal(kern_pool_threads(p), t);
        pool_probe pr = {.want_n = t};
        enum { RUNS = 3000 };
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int r = 0; r < RUNS; r++)
            kern_pool_run(p, pool_probe_fn, &pr);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_int_equal(atomic_load(&pr.bad_n), 0);
        for (int i = 0; i < 8; i++)
            assert_int_equal(atomic_load(&pr.calls[i]), i < t ? RUNS : 0);
        double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3 / RUNS;
        print_message("pool of %d: %.2f us per empty run (cores shared, indicative only)\n", t, us);
        kern_pool_free(p);
    }
    /* a pool can be made and dropped without ever running */
    kern_pool_free(kern_pool_new(3));
}

/* ------------------------------------------------------------- registry */

static void test_registry(void **state)
{
    (void)state;
    static const char *const names[KERN_OP_COUNT] = {
        "embd", "norm", "rmsnorm", "matmul", "view", "rope", "kq", "softmax", "kqv", "add", "gelu", "swiglu"};
    for (int op = 0; op < KERN_OP_COUNT; op++) {
        assert_string_equal(kern_op_name((kern_op)op), names[op]);
        assert_int_equal(kern_op_from_name(names[op]), op);
    }
    assert_int_equal(kern_op_from_name("matmu"), -1);
    assert_int_equal(kern_op_from_name(""), -1);
    assert_int_equal(kern_op_from_name(NULL), -1);
    assert_string_equal(kern_op_name(KERN_OP_COUNT), "?");
    assert_string_equal(kern_backend_name(KERN_BACKEND_CPU), "cpu");
    assert_string_equal(kern_backend_name(KERN_BACKEND_CUDA), "cuda");

    size_t n = 0;
    const kern_variant *all = kern_registry(&n);
    assert_non_null(all);
    assert_true(n >= kern_cpu_variant_count);
    assert_ptr_equal(kern_registry(NULL), all); /* one table for every caller */
    /* cpu variants first, in their table's order */
    for (size_t i = 0; i < kern_cpu_variant_count; i++) {
        assert_int_equal(all[i].backend, KERN_BACKEND_CPU);
        assert_ptr_equal(all[i].fn, kern_cpu_variants[i].fn);
    }
    for (size_t i = 0; i < n; i++) {
        assert_true(all[i].op >= 0 && all[i].op < KERN_OP_COUNT);
        assert_non_null(all[i].fn);
        assert_non_null(all[i].name);
        assert_true(all[i].doc && all[i].doc[0]);
        /* (op, backend, name) is unique, and kern_find finds this entry */
        for (size_t j = i + 1; j < n; j++)
            assert_false(all[i].op == all[j].op && all[i].backend == all[j].backend &&
                         strcmp(all[i].name, all[j].name) == 0);
        assert_ptr_equal(kern_find(all[i].op, all[i].backend, all[i].name), &all[i]);
    }
    for (int op = 0; op < KERN_OP_COUNT; op++) {
        assert_non_null(kern_find((kern_op)op, KERN_BACKEND_CPU, "ref"));
        assert_non_null(kern_find((kern_op)op, KERN_BACKEND_CPU, "opt"));
    }
    assert_null(kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "nope"));
    assert_null(kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, NULL));

    char why[128] = "x";
    assert_int_equal(kern_backend_available(KERN_BACKEND_CPU, why, sizeof why), 1);
#ifdef XF_HAVE_CUDA
    assert_non_null(kern_backend_mem(KERN_BACKEND_CUDA));
#else
    assert_null(kern_backend_mem(KERN_BACKEND_CUDA));
    assert_int_equal(kern_backend_available(KERN_BACKEND_CUDA, why, sizeof why), 0);
    assert_string_equal(why, "built without CUDA");
#endif
    assert_int_equal(kern_backend_available(KERN_BACKEND_COUNT, why, sizeof why), 0);
    assert_null(kern_backend_mem(KERN_BACKEND_COUNT));
}

static void test_cpu_mem(void **state)
{
    (void)state;
    const kern_mem_ops *mo = kern_backend_mem(KERN_BACKEND_CPU);
    assert_non_null(mo);
    kern_ctx c = {.n_threads = 1};
    const size_t sizes[] = {1, 3, 64, 100, 4097};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t nb = sizes[s];
        uint8_t *a = mo->alloc(nb), *b = mo->alloc(nb), *src = xmalloc(nb);
        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal((uintptr_t)a % 64, 0);
        assert_int_equal((uintptr_t)b % 64, 0);
        for (size_t i = 0; i < nb; i++)
            src[i] = (uint8_t)(i * 7 + 1);
        assert_int_equal(mo->to_dev(&c, a, src, nb), 0);
        assert_int_equal(mo->copy(&c, b, a, nb), 0);
        memset(src, 0, nb);
        assert_int_equal(mo->to_host(&c, src, b, nb), 0);
        assert_int_equal(mo->sync(&c), 0);
        for (size_t i = 0; i < nb; i++)
            assert_int_equal(src[i], (uint8_t)(i * 7 + 1));
        mo->free(a);
        mo->free(b);
        free(src);
    }
    mo->free(NULL);
    assert_int_equal(mo->copy(&c, NULL, NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_args),
        cmocka_unit_test(test_null_ctx),
        cmocka_unit_test(test_f16_row_exhaustive),
        cmocka_unit_test(test_f16_gemv),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_cpu_mem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
