/* kernels_cpu_util.h: what the test_kernels_cpu*.c programs share: the
 * thread set-ups every variant runs under, random inputs, and the run of
 * every CPU variant against ref. static inline, as tests/gguf_bytes.h: each
 * program uses a part, and unused ones must not warn. */
#ifndef XF_TESTS_KERNELS_CPU_UTIL_H
#define XF_TESTS_KERNELS_CPU_UTIL_H

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
#include "testutil.h"

/* ------------------------------------------------------------ fixtures */

/* Thread set-ups every variant runs under: no pool, pools of 1, 2, 3, and
 * a pool of 3 capped to 2 by ctx->n_threads. */
#define N_CFG 5
typedef struct test_state {
    kern_pool *pools[4]; /* [0] unused (no pool), then 1, 2, 3 threads */
} test_state;

static inline int group_setup(void **state)
{
    test_state *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    for (int t = 1; t <= 3; t++)
        if (!(s->pools[t] = kern_pool_new(t)))
            return -1;
    *state = s;
    return 0;
}

static inline int group_teardown(void **state)
{
    test_state *s = *state;
    for (int t = 1; t <= 3; t++)
        kern_pool_free(s->pools[t]);
    free(s);
    return 0;
}

static inline kern_ctx cfg_ctx(const test_state *s, int cfg)
{
    kern_ctx c = {0};
    switch (cfg) {
    case 0:
        c.n_threads = 1;
        break;
    case 1:
        c.n_threads = 1;
        c.pool = s->pools[1];
        break;
    case 2:
        c.n_threads = 2;
        c.pool = s->pools[2];
        break;
    case 3:
        c.n_threads = 3;
        c.pool = s->pools[3];
        break;
    default:
        c.n_threads = 2;
        c.pool = s->pools[3];
        break;
    }
    return c;
}

static inline void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

static inline float *rand_floats(size_t n, uint64_t *rng, float lo, float hi)
{
    float *p = xmalloc(n * sizeof *p);
    tu_fill_random(p, n, rng, lo, hi);
    return p;
}

static inline void assert_close(const float *got, const double *want, size_t n, double tol)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * fmax(1.0, fabs(want[i]))))
            fail_msg("element %zu: got %.9g, want %.9g", i, (double)got[i], want[i]);
}

/* Runs ref, then every non-ref CPU variant of op under every thread set-up,
 * each into a NaN-poisoned output, and compares with ref: max |a-b| over
 * max |ref| must stay within tol. Returns how many variants ran. */
static inline int compare_variants(const test_state *s, kern_op op, const kern_args *a0, size_t ny, double tol,
                            const char *what)
{
    const kern_variant *ref = kern_find(op, KERN_BACKEND_CPU, "ref");
    assert_non_null(ref);
    float *yref = xmalloc(ny * sizeof *yref), *y = xmalloc(ny * sizeof *y);
    kern_args a = *a0;
    tu_poison(yref, ny);
    a.y = yref;
    kern_ctx c0 = cfg_ctx(s, 0);
    assert_int_equal(ref->fn(&c0, &a), 0);
    for (size_t i = 0; i < ny; i++)
        if (isnan(yref[i]))
            fail_msg("%s %s: ref left element %zu unwritten (NaN)", kern_op_name(op), what, i);
    int ran = 0;
    for (size_t v = 0; v < kern_cpu_variant_count; v++) {
        const kern_variant *kv = &kern_cpu_variants[v];
        if (kv->op != op || strcmp(kv->name, "ref") == 0)
            continue;
        /* matmul/q8 and its one-path q8-* variants round x to int8: their own
         * bound, in test_kernels_cpu_q8.c */
        if (op == KERN_OP_MATMUL && strncmp(kv->name, "q8", 2) == 0)
            continue;
        ran++;
        for (int cfg = 0; cfg < N_CFG; cfg++) {
            kern_ctx c = cfg_ctx(s, cfg);
            tu_poison(y, ny);
            a.y = y;
            assert_int_equal(kv->fn(&c, &a), 0);
            double err = tu_rel_max_err(y, yref, ny);
            if (!(err <= tol)) {
                size_t bad = 0;
                double worst = -1;
                for (size_t i = 0; i < ny; i++) {
                    double d = isnan(y[i]) ? INFINITY : fabs((double)y[i] - yref[i]);
                    if (d > worst || (isinf(yref[i]) && y[i] != yref[i])) {
                        worst = d;
                        bad = i;
                    }
                }
                fail_msg("%s/%s %s, %d threads (cfg %d): rel err %.3g > %.3g (element %zu: %.9g vs ref %.9g)",
                         kern_op_name(op), kv->name, what, kern_cpu_threads(&c), cfg, err, tol, bad,
                         (double)y[bad], (double)yref[bad]);
            }
        }
    }
    free(yref);
    free(y);
    return ran;
}

/* ---------------------------------------------- ref on hand-made cases */

static inline int run_ref(kern_op op, kern_args *a)
{
    const kern_variant *v = kern_find(op, KERN_BACKEND_CPU, "ref");
    assert_non_null(v);
    kern_ctx c = {.n_threads = 1};
    return v->fn(&c, a);
}

#endif
