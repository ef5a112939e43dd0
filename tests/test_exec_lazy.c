/* test_exec_lazy: outputs a pass leaves owed (engine/exec.c). The logits
 * of a prefill (defer_rows): the pass computes their last row alone, and
 * the first reader of the tensor gets the other rows computed first, by the
 * variant that ran the pass. kq and kq_soft under the cpu's fused attention
 * (fuse_attn_at): computed when read, the same bits as the ops give, and
 * never fused where a breakpoint or stepping looks at them. Every reader is tried (read, gather, stats, write, check, a
 * breakpoint condition), each on a pass whose tokens differ from the pass
 * before, so that rows left over from that pass cannot pass for the owed
 * ones. The expected logits come from the same kernels with check mode on,
 * which runs the op whole. On cuda too when a GPU is there. */
#include <math.h>
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

#define TL_N 9 /* prompt tokens: not a multiple of any tile */

/* a cpu MATMUL variant that records the row counts it was called with */
static int64_t tl_last_n; /* rows of the last call */
static int tl_calls;

static int tl_matmul(kern_ctx *ctx, const kern_args *a)
{
    tl_last_n = a->n;
    tl_calls++;
    return kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "ref")->fn(ctx, a);
}

static const kern_variant tl_variant = {.op = KERN_OP_MATMUL,
                                        .backend = KERN_BACKEND_CPU,
                                        .name = "rowcount",
                                        .fn = tl_matmul,
                                        .doc = "ref matmul that records its row counts (test only)"};

typedef struct tl_fix {
    xf_model *m;
    kern_backend be;
} tl_fix;

static void tl_tokens(const xf_model *m, int seed, int32_t *tok)
{
    for (int i = 0; i < TL_N; i++)
        tok[i] = (int32_t)((seed * 131 + 1009 * i + 7) % m->n_vocab);
}

static xf_exec *tl_exec(tl_fix *f)
{
    xf_err err = {0};
    xf_exec *ex = exec_new(f->m, f->be, 2, &err);
    if (!ex)
        fail_msg("exec_new: %s", err.msg);
    return ex;
}

static int tl_logits_op(xf_exec *ex)
{
    xf_err err = {0};
    int li = exec_tensor_find(ex, "logits", &err);
    assert_true(li == exec_program(ex)->n_ops - 1);
    return li;
}

static void tl_pass(xf_exec *ex, const xf_model *m, int seed)
{
    xf_err err = {0};
    xf_stop why = XF_STOP_NONE; /* not END: the assert below must see exec_run set it */
    int32_t tok[TL_N];
    tl_tokens(m, seed, tok);
    if (exec_begin(ex, tok, TL_N, false, &err) != 0 || exec_run(ex, XF_RUN_FINISH, 0, &why, &err) != 0)
        fail_msg("pass: %s", err.msg);
    assert_int_equal(why, XF_STOP_END);
}

/* [TL_N, n_vocab] logits of the prompt `seed`, the op run whole (check on) */
static float *tl_want(tl_fix *f, int seed)
{
    xf_exec *ex = tl_exec(f);
    exec_check_set(ex, XF_CHECK_ON);
    tl_pass(ex, f->m, seed);
    int li = tl_logits_op(ex);
    assert_false(exec_tensor_deferred(ex, li));
    size_t n = (size_t)exec_program(ex)->ops[li].numel;
    float *w = malloc(n * sizeof *w);
    assert_non_null(w);
    xf_err err = {0};
    assert_int_equal(exec_tensor_read(ex, li, w, &err), 0);
    exec_free(ex);
    return w;
}

static void tl_close(const float *got, const float *want, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (isnan(got[i]))
            fail_msg("%s: logits[%zu] is NaN", what, i);
    double e = tu_rel_max_err(got, want, n);
    if (!(e < 1e-5))
        fail_msg("%s: logits %.3g away from the op run whole", what, e);
}

static int tl_setup(void **state, kern_backend be)
{
    char why[256];
    if (!kern_backend_available(be, why, sizeof why))
        return 0;
    tl_fix *f = calloc(1, sizeof *f);
    char mp[1024];
    xf_err err = {0};
    f->m = model_load(tu_src_path(mp, sizeof mp, TU_MODEL), &err);
    if (!f->m)
        return -1;
    f->be = be;
    *state = f;
    return 0;
}
static int tl_setup_cpu(void **state) { return tl_setup(state, KERN_BACKEND_CPU); }
static int tl_setup_cuda(void **state) { return tl_setup(state, KERN_BACKEND_CUDA); }
static int tl_teardown(void **state)
{
    tl_fix *f = *state;
    if (f) {
        model_free(f->m);
        free(f);
    }
    return 0;
}
#define TL_FIX(state)                                                                                        \
    tl_fix *f = *(state);                                                                                    \
    if (!f)                                                                                                  \
        skip();

/* exec_tensor_read: every row, after the last row was read alone */
static void test_read(void **state)
{
    TL_FIX(state);
    float *w1 = tl_want(f, 1), *w2 = tl_want(f, 2);
    xf_exec *ex = tl_exec(f);
    int li = -1;
    xf_err err = {0};
    tl_pass(ex, f->m, 1);
    li = tl_logits_op(ex);
    size_t n = (size_t)exec_program(ex)->ops[li].numel, V = (size_t)f->m->n_vocab;
    float *got = malloc(n * sizeof *got);
    assert_non_null(got);
    assert_true(exec_tensor_deferred(ex, li));
    assert_int_equal(exec_last_logits(ex, got, &err), 0); /* the last row needs nothing owed */
    assert_true(exec_tensor_deferred(ex, li));
    tl_close(got, w1 + (TL_N - 1) * V, V, "last row");
    assert_int_equal(exec_tensor_read(ex, li, got, &err), 0);
    assert_false(exec_tensor_deferred(ex, li));
    tl_close(got, w1, n, "read, pass 1");
    /* the next pass: its buffer still holds pass 1's rows */
    tl_pass(ex, f->m, 2);
    assert_true(exec_tensor_deferred(ex, li));
    assert_int_equal(exec_tensor_read(ex, li, got, &err), 0);
    tl_close(got, w2, n, "read, pass 2");
    free(got);
    free(w1);
    free(w2);
    exec_free(ex);
}

/* gather (what `print` shows), stats, write */
static void test_gather_stats_write(void **state)
{
    TL_FIX(state);
    float *w2 = tl_want(f, 2), *w3 = tl_want(f, 3);
    xf_exec *ex = tl_exec(f);
    xf_err err = {0};
    tl_pass(ex, f->m, 1);
    int li = tl_logits_op(ex);
    size_t V = (size_t)f->m->n_vocab, n = TL_N * V;
    /* gather row 0 */
    tl_pass(ex, f->m, 2);
    int64_t idx[5] = {0, 1, 17, (int64_t)V - 1, (int64_t)V};
    float g[5];
    assert_int_equal(exec_tensor_gather(ex, li, idx, 5, g, &err), 0);
    for (int k = 0; k < 5; k++)
        assert_float_equal(g[k], w2[idx[k]], 1e-5 * fabs(w2[idx[k]]) + 1e-6);
    /* stats: over every row */
    tl_pass(ex, f->m, 3);
    xf_stats st, want;
    assert_int_equal(exec_tensor_stats(ex, li, &st, &err), 0);
    tensor_stats(w3, n, &want);
    assert_float_equal(st.mean, want.mean, 1e-4 * fabs(want.std));
    assert_float_equal(st.min, want.min, 1e-5 * fabs(want.min));
    assert_float_equal(st.max, want.max, 1e-5 * fabs(want.max));
    /* a write into row 0 is not overwritten by the owed rows */
    tl_pass(ex, f->m, 2);
    assert_true(exec_tensor_deferred(ex, li));
    int64_t at = 3;
    float v = 42.5f;
    if (exec_tensor_write(ex, li, &at, 1, &v, 1, &err) != 0)
        fail_msg("write: %s", err.msg);
    float *got = malloc(n * sizeof *got);
    assert_non_null(got);
    assert_int_equal(exec_tensor_read(ex, li, got, &err), 0);
    assert_float_equal(got[3], 42.5f, 0);
    got[3] = w2[3];
    tl_close(got, w2, n, "read after a write");
    free(got);
    free(w2);
    free(w3);
    exec_free(ex);
}

/* a breakpoint condition on logits reads the whole tensor; check mode runs
 * the op whole; an explicit check of the deferred op settles it first */
static void test_break_and_check(void **state)
{
    TL_FIX(state);
    float *w1 = tl_want(f, 1);
    xf_exec *ex = tl_exec(f);
    xf_err err = {0};
    xf_stop why;
    size_t V = (size_t)f->m->n_vocab, n = TL_N * V;
    /* absmax over every row: above row 0's and below the whole tensor's */
    double amax = 0, amax_last = 0;
    for (size_t i = 0; i < n; i++) {
        amax = fmax(amax, fabs(w1[i]));
        if (i >= (TL_N - 1) * V)
            amax_last = fmax(amax_last, fabs(w1[i]));
    }
    if (!(amax > amax_last * 1.0001)) /* the condition must see more than the last row */
        skip();
    char cond[64];
    snprintf(cond, sizeof cond, "absmax > %.9g", 0.5 * (amax + amax_last));
    assert_true(exec_break_add(ex, "logits", cond, NULL, NULL, NULL, &err) > 0);
    int32_t tok[TL_N];
    tl_tokens(f->m, 1, tok);
    assert_int_equal(exec_begin(ex, tok, TL_N, false, &err), 0);
    assert_int_equal(exec_run(ex, XF_RUN_CONTINUE, 0, &why, &err), 0);
    assert_int_equal(why, XF_STOP_BREAK);
    assert_int_equal(exec_break_delete(ex, -1, &err), 0);
    /* explicit check of the deferred op */
    tl_pass(ex, f->m, 2);
    int li = tl_logits_op(ex);
    assert_true(exec_tensor_deferred(ex, li));
    xf_check_row row;
    if (exec_check_op(ex, li, &row, &err) != 0)
        fail_msg("check: %s", err.msg);
    assert_false(row.over);
    assert_false(exec_tensor_deferred(ex, li));
    /* check on: nothing deferred */
    exec_check_set(ex, XF_CHECK_ON);
    tl_pass(ex, f->m, 1);
    assert_false(exec_tensor_deferred(ex, li));
    free(w1);
    exec_free(ex);
}

/* the owed rows run with the variant that ran the last row, even when the
 * selection changed in between, and only once */
static void test_same_variant(void **state)
{
    TL_FIX(state);
    if (f->be != KERN_BACKEND_CPU)
        skip();
    xf_exec *ex = tl_exec(f);
    xf_err err = {0};
    assert_int_equal(exec_variant_add(ex, &tl_variant, &err), 0);
    assert_int_equal(exec_kernel_select(ex, KERN_OP_MATMUL, "rowcount", &err), 0);
    tl_calls = 0;
    tl_pass(ex, f->m, 4);
    int li = tl_logits_op(ex);
    int before = tl_calls;
    assert_true(before >= 1);
    assert_int_equal(tl_last_n, 1); /* the logits: the last row alone */
    assert_int_equal(exec_kernel_select(ex, KERN_OP_MATMUL, "ref", &err), 0);
    float *got = malloc((size_t)TL_N * (size_t)f->m->n_vocab * sizeof *got);
    assert_non_null(got);
    assert_int_equal(exec_tensor_read(ex, li, got, &err), 0);
    assert_int_equal(tl_calls, before + 1);
    assert_int_equal(tl_last_n, TL_N - 1);
    assert_int_equal(exec_tensor_read(ex, li, got, &err), 0);
    assert_int_equal(tl_calls, before + 1); /* owed once */
    free(got);
    exec_free(ex);
}

/* [numel] of the tensor `name` after the prompt `seed`, every op run alone (check on) */
static float *tl_want_named(tl_fix *f, int seed, const char *name, size_t *numel)
{
    xf_exec *ex = tl_exec(f);
    exec_check_set(ex, XF_CHECK_ON);
    tl_pass(ex, f->m, seed);
    xf_err err = {0};
    int op = exec_tensor_find(ex, name, &err);
    assert_true(op >= 0);
    assert_false(exec_tensor_deferred(ex, op));
    *numel = (size_t)exec_program(ex)->ops[op].numel;
    float *w = malloc(*numel * sizeof *w);
    assert_non_null(w);
    assert_int_equal(exec_tensor_read(ex, op, w, &err), 0);
    exec_free(ex);
    return w;
}

static void tl_same_bits(const float *got, const float *want, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof *got) != 0 && !(got[i] == 0 && want[i] == 0))
            fail_msg("%s[%zu]: %.9g, run alone %.9g", what, i, got[i], want[i]);
}

/* The fused attention of a prefill: the same bits as every op run alone.
 * kq and kq_soft are owed (a breakpoint, stepping or a one-token pass keeps
 * a layer unfused): the cpu's fusion writes neither, the cuda's
 * (kern_cuda_attn_prefill_fused) only up to each query's position, and the
 * pass before left other values past it. */
static void test_fused_attention(void **state)
{
    TL_FIX(state);
    const char *names[] = {"blk.1.kq_soft", "blk.0.kq", "blk.1.kqv"};
    xf_exec *ex = tl_exec(f);
    xf_err err = {0};
    xf_stop why;
    tl_pass(ex, f->m, 1); /* a pass before: its buffers hold other values */
    tl_pass(ex, f->m, 5);
    int kq1 = exec_tensor_find(ex, "blk.1.kq", &err), sm1 = exec_tensor_find(ex, "blk.1.kq_soft", &err);
    int kqv1 = exec_tensor_find(ex, "blk.1.kqv", &err), kq0 = exec_tensor_find(ex, "blk.0.kq", &err);
    char wb[96];
    assert_null(exec_attn_fuse_why(ex, wb, sizeof wb)); /* the pass fused its attention */
    assert_true(exec_tensor_deferred(ex, kq1) && exec_tensor_deferred(ex, sm1) &&
                exec_tensor_deferred(ex, kq0));
    assert_false(exec_tensor_deferred(ex, kqv1));
    for (int k = 0; k < 3; k++) {
        size_t n;
        float *want = tl_want_named(f, 5, names[k], &n);
        int op = exec_tensor_find(ex, names[k], &err);
        float *got = malloc(n * sizeof *got);
        assert_non_null(got);
        assert_int_equal(exec_tensor_read(ex, op, got, &err), 0);
        tl_same_bits(got, want, n, names[k]);
        free(got);
        free(want);
    }
    /* kq_soft read: its input kq was computed first */
    assert_false(exec_tensor_deferred(ex, kq1) || exec_tensor_deferred(ex, sm1) ||
                 exec_tensor_deferred(ex, kq0));
    /* a breakpoint on layer 0's kq_soft: layer 0 runs op by op, layer 1 fused */
    assert_true(exec_break_add(ex, "blk.0.kq_soft", NULL, NULL, NULL, NULL, &err) > 0);
    int32_t tok[TL_N];
    tl_tokens(f->m, 6, tok);
    assert_int_equal(exec_begin(ex, tok, TL_N, false, &err), 0);
    assert_int_equal(exec_run(ex, XF_RUN_CONTINUE, 0, &why, &err), 0);
    assert_int_equal(why, XF_STOP_BREAK);
    assert_false(exec_tensor_deferred(ex, kq0));
    assert_int_equal(exec_run(ex, XF_RUN_CONTINUE, 0, &why, &err), 0);
    assert_int_equal(why, XF_STOP_END);
    assert_false(exec_tensor_deferred(ex, kq0));
    assert_true(exec_tensor_deferred(ex, kq1));
    assert_int_equal(exec_break_delete(ex, -1, &err), 0);
    /* stepping looks at every op */
    assert_int_equal(exec_begin(ex, tok, TL_N, false, &err), 0);
    assert_int_equal(exec_run(ex, XF_RUN_STEP, exec_program(ex)->n_ops - 1, &why, &err), 0);
    assert_false(exec_tensor_deferred(ex, kq0) || exec_tensor_deferred(ex, kq1));
    /* a one-token pass is not fused */
    assert_int_equal(exec_run(ex, XF_RUN_FINISH, 0, &why, &err), 0);
    int32_t one = 3;
    assert_int_equal(exec_begin(ex, &one, 1, true, &err), 0);
    assert_int_equal(exec_run(ex, XF_RUN_FINISH, 0, &why, &err), 0);
    assert_false(exec_tensor_deferred(ex, kq0));
    /* exec_attn_fuse_why (what `graph` says) agrees with what a pass does */
    assert_null(exec_attn_fuse_why(ex, wb, sizeof wb));
    exec_check_set(ex, XF_CHECK_ON);
    assert_non_null(strstr(exec_attn_fuse_why(ex, wb, sizeof wb), "check is on"));
    exec_check_set(ex, XF_CHECK_OFF);
    assert_int_equal(exec_kernel_select(ex, KERN_OP_SOFTMAX, "ref", &err), 0);
    assert_non_null(
        strstr(exec_attn_fuse_why(ex, wb, sizeof wb), "softmax ref is not one the fusion reproduces"));
    tl_pass(ex, f->m, 5);
    assert_false(exec_tensor_deferred(ex, kq0) || exec_tensor_deferred(ex, kq1)); /* not fused */
    assert_int_equal(exec_kernel_select(ex, KERN_OP_SOFTMAX, "opt", &err), 0);
    assert_null(exec_attn_fuse_why(ex, wb, sizeof wb));
    tl_pass(ex, f->m, 5);
    assert_true(exec_tensor_deferred(ex, kq0) && exec_tensor_deferred(ex, kq1)); /* fused again */
    exec_free(ex);
}

/* the pass history keeps what a pass owed, computed before the next pass
 * reuses the buffers */
static void test_history_keeps_owed(void **state)
{
    TL_FIX(state);
    xf_exec *ex = tl_exec(f);
    xf_err err = {0};
    char *pats[] = {"logits", "blk.1.kq_soft"};
    assert_int_equal(exec_keep_set(ex, pats, 2, 2, (size_t)1 << 26, &err), 0);
    tl_pass(ex, f->m, 7);
    int li = tl_logits_op(ex);
    assert_true(exec_tensor_deferred(ex, li));
    tl_pass(ex, f->m, 8); /* keeps pass 7 */
    const xf_kept_pass *kp = exec_kept(ex, 1);
    assert_non_null(kp);
    for (int k = 0; k < 2; k++) {
        size_t n;
        float *want = tl_want_named(f, 7, pats[k], &n);
        const xf_kept_tensor *t = exec_kept_find(kp, pats[k]);
        if (!t)
            fail_msg("%s not kept", pats[k]);
        assert_int_equal((size_t)t->numel, n);
        if (k == 0)
            tl_close(t->data, want, n, "kept logits");
        else
            tl_same_bits(t->data, want, n, "kept kq_soft");
        free(want);
    }
    exec_free(ex);
}

int main(void)
{
    const struct CMUnitTest cpu[] = {
        cmocka_unit_test(test_read),
        cmocka_unit_test(test_gather_stats_write),
        cmocka_unit_test(test_break_and_check),
        cmocka_unit_test(test_same_variant),
        cmocka_unit_test(test_fused_attention),
        cmocka_unit_test(test_history_keeps_owed),
    };
    const struct CMUnitTest cuda[] = {
        cmocka_unit_test(test_history_keeps_owed), cmocka_unit_test(test_read),
        cmocka_unit_test(test_gather_stats_write), cmocka_unit_test(test_break_and_check),
        cmocka_unit_test(test_fused_attention),
    };
    tu_filter_from_env();
    int rc = cmocka_run_group_tests_name("cpu", cpu, tl_setup_cpu, tl_teardown);
    rc |= cmocka_run_group_tests_name("cuda", cuda, tl_setup_cuda, tl_teardown);
    return rc;
}
