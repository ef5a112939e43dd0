/* test_exec_scratch: exec sizes the kernel scratch (kern_ctx.scratch) from
 * what the selected variants declare (kernels.h scratch_bytes): when a pass
 * begins, when the selection changes mid-pass, and before every op (a need
 * that grows between ops). No built-in CPU variant wants scratch, so the
 * test registers a MATMUL variant that does: it fails when handed less
 * than it declared and writes every byte it was promised (ASan sees an
 * overrun), then computes with the cpu ref. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "exec.h"
#include "testutil.h"

#define TS_PROMPT 5

static size_t ts_mult = 1; /* grows the declared need without a new selection */
static long ts_calls, ts_short;

static size_t ts_scratch(const kern_args *a)
{
    return ((size_t)a->n * (size_t)a->k + (size_t)a->m) * sizeof(float) * ts_mult;
}

static int ts_matmul(kern_ctx *ctx, const kern_args *a)
{
    size_t need = ts_scratch(a);
    ts_calls++;
    if (!ctx->scratch || ctx->scratch_size < need) {
        ts_short++;
        return -1;
    }
    memset(ctx->scratch, 0x5a, need);
    return kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "ref")->fn(ctx, a);
}

static const kern_variant ts_variant = {.op = KERN_OP_MATMUL,
                                        .backend = KERN_BACKEND_CPU,
                                        .name = "scratchy",
                                        .fn = ts_matmul,
                                        .doc = "ref matmul that wants scratch (test only)",
                                        .scratch_bytes = ts_scratch};

static xf_model *ts_model(void)
{
    char mp[1024];
    xf_err err = {0};
    xf_model *m = model_load(tu_src_path(mp, sizeof mp, TU_MODEL), &err);
    if (!m)
        fail_msg("%s", err.msg);
    return m;
}

static xf_exec *ts_exec(xf_model *m)
{
    xf_err err = {0};
    xf_exec *ex = exec_new(m, KERN_BACKEND_CPU, 2, &err);
    if (!ex)
        fail_msg("exec_new: %s", err.msg);
    assert_int_equal(exec_variant_add(ex, &ts_variant, &err), 0);
    char mp[64];
    assert_null(exec_mm_path(ex, mp, sizeof mp)); /* `graph` names no product on the cpu */
    return ex;
}

static void ts_prompt(const xf_model *m, int32_t *tok)
{
    for (int i = 0; i < TS_PROMPT; i++)
        tok[i] = (int32_t)((7 + 1009 * i) % m->n_vocab);
}

/* the logits of a whole prefill with the cpu ref kernels */
static float *ts_ref_logits(xf_model *m)
{
    xf_err err = {0};
    xf_exec *ex = ts_exec(m);
    assert_int_equal(exec_kernel_select(ex, -1, "ref", &err), 0);
    int32_t tok[TS_PROMPT];
    ts_prompt(m, tok);
    xf_stop why;
    assert_int_equal(exec_begin(ex, tok, TS_PROMPT, false, &err), 0);
    assert_int_equal(exec_run(ex, XF_RUN_FINISH, 0, &why, &err), 0);
    float *lg = malloc((size_t)m->n_vocab * sizeof *lg);
    assert_non_null(lg);
    assert_int_equal(exec_last_logits(ex, lg, &err), 0);
    exec_free(ex);
    return lg;
}

/* steps opt up to and past the first matmul, selects the scratch variant,
 * optionally raises its need (grow_mid), and continues to the end */
static void ts_midpass(bool grow_mid)
{
    xf_model *m = ts_model();
    float *want = ts_ref_logits(m);
    xf_exec *ex = ts_exec(m);
    xf_err err = {0};
    xf_stop why;
    int32_t tok[TS_PROMPT];
    ts_prompt(m, tok);
    ts_mult = 1;
    ts_calls = ts_short = 0;
    assert_int_equal(exec_begin(ex, tok, TS_PROMPT, false, &err), 0);
    const xf_program *p = exec_program(ex);
    int first_mm = 0;
    while (first_mm < p->n_ops && p->ops[first_mm].kind != KERN_OP_MATMUL)
        first_mm++;
    assert_true(first_mm < p->n_ops);
    assert_int_equal(exec_run(ex, XF_RUN_STEP, first_mm + 1, &why, &err), 0);
    assert_int_equal(why, XF_STOP_STEP);
    assert_int_equal(exec_kernel_select(ex, KERN_OP_MATMUL, "scratchy", &err), 0);
    if (grow_mid) {
        /* one more op with the first need, then a need the selection never saw */
        assert_int_equal(exec_run(ex, XF_RUN_STEP, 1, &why, &err), 0);
        ts_mult = 3;
    }
    if (exec_run(ex, XF_RUN_CONTINUE, 0, &why, &err) != 0)
        fail_msg("continue with the scratch variant: %s", err.msg);
    assert_int_equal(why, XF_STOP_END);
    assert_true(ts_calls > 0);
    assert_int_equal(ts_short, 0);
    float *got = malloc((size_t)m->n_vocab * sizeof *got);
    assert_non_null(got);
    assert_int_equal(exec_last_logits(ex, got, &err), 0);
    double e = tu_rel_max_err(got, want, (size_t)m->n_vocab);
    if (!(e < 1e-3))
        fail_msg("logits %.3g away from the all-ref run", e);
    /* the next pass starts with the grown scratch: no op is short either */
    int32_t next = 11;
    assert_int_equal(exec_begin(ex, &next, 1, true, &err), 0);
    assert_int_equal(exec_run(ex, XF_RUN_FINISH, 0, &why, &err), 0);
    assert_int_equal(ts_short, 0);
    free(got);
    free(want);
    exec_free(ex);
    model_free(m);
    ts_mult = 1;
}

static void test_select_midpass(void **state)
{
    (void)state;
    ts_midpass(false);
}

static void test_need_grows_between_ops(void **state)
{
    (void)state;
    ts_midpass(true);
}

/* selected before any pass: the first pass is sized from the declaration */
static void test_select_before_pass(void **state)
{
    (void)state;
    xf_model *m = ts_model();
    xf_exec *ex = ts_exec(m);
    xf_err err = {0};
    xf_stop why;
    ts_mult = 1;
    ts_calls = ts_short = 0;
    assert_int_equal(exec_kernel_select(ex, KERN_OP_MATMUL, "scratchy", &err), 0);
    int32_t tok[TS_PROMPT];
    ts_prompt(m, tok);
    assert_int_equal(exec_begin(ex, tok, TS_PROMPT, false, &err), 0);
    assert_int_equal(exec_run(ex, XF_RUN_FINISH, 0, &why, &err), 0);
    assert_true(ts_calls > 0);
    assert_int_equal(ts_short, 0);
    exec_free(ex);
    model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_select_before_pass),
        cmocka_unit_test(test_select_midpass),
        cmocka_unit_test(test_need_grows_between_ops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
