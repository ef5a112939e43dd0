/* `check break` names a planted wrong variant of each op issue 17 added:
 * - qwen3's per-head norms (blk.L.q_norm / k_norm) run the RMSNORM kernels:
 *   a variant wrong only on rows as short as a head (eps 0.5 where k < 64)
 *   passes every attn_norm and must be caught at blk.0.q_norm;
 * - MXFP4 matmuls: a variant that reads the E8M0 scale as 2^(e-127), the
 *   OCP convention, on top of ggml's doubled E2M1 table (the mix-up
 *   quant.h warns of: every product twice its size) must be caught at the
 *   first MXFP4 matmul, blk.0.q.
 * Both variants are compiled into this test only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "exec.h"
#include "program.h"
#include "quant.h"
#include "repl.h"
#include "testutil.h"

static int short_row_eps_rmsnorm(kern_ctx *ctx, const kern_args *a)
{
    const kern_variant *ref = kern_find(KERN_OP_RMSNORM, KERN_BACKEND_CPU, "ref");
    kern_args b = *a;
    if (b.k < 64)
        b.eps = 0.5f;
    return ref->fn(ctx, &b);
}

static const kern_variant k_wrong_head_norm = {
    .op = KERN_OP_RMSNORM, .backend = KERN_BACKEND_CPU, .name = "short_row_eps", .fn = short_row_eps_rmsnorm,
    .doc = "rmsnorm with eps 0.5 on rows shorter than 64 (test only)"};

/* MXFP4 with the full E8M0 scale: y = 2 * (x . w^T) + b */
static int full_scale_matmul(kern_ctx *ctx, const kern_args *a)
{
    const kern_variant *ref = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "ref");
    if (a->w_type != XF_TYPE_MXFP4)
        return ref->fn(ctx, a);
    kern_args b = *a;
    b.b = NULL;
    if (ref->fn(ctx, &b) != 0)
        return -1;
    for (int64_t i = 0; i < a->n; i++)
        for (int64_t r = 0; r < a->m; r++)
            a->y[i * a->m + r] = 2.0f * a->y[i * a->m + r] + (a->b ? a->b[r] : 0.0f);
    return 0;
}

static const kern_variant k_wrong_mxfp4 = {
    .op = KERN_OP_MATMUL, .backend = KERN_BACKEND_CPU, .name = "mxfp4_full_scale", .fn = full_scale_matmul,
    .doc = "MXFP4 read with the scale 2^(e-127) (test only)"};

static xf_repl *load(const char *rel)
{
    char mp[1024];
    xf_repl *r = tu_repl_new();
    assert_non_null(r);
    r->n_threads = 1;
    tu_repl_load(r, tu_src_path(mp, sizeof mp, rel));
    return r;
}

static void expect_caught(xf_repl *r, const kern_variant *v, const char *op_kind, const char *at)
{
    xf_err err = {0};
    char sel[96], want[160];
    assert_int_equal(exec_variant_add(r->ex, v, &err), 0);
    snprintf(sel, sizeof sel, "kernel %s %s", op_kind, v->name);
    tu_cmd(r, sel, 0);
    tu_cmd(r, "check break", 0);
    tu_cmd(r, "run --tokens 17,400,3,99,256,5,300", 0);
    const char *o = tu_cmd(r, "continue", 0);
    snprintf(want, sizeof want, "check: %s (%s/cpu/%s) over tolerance", at, op_kind, v->name);
    if (!strstr(o, want))
        fail_msg("continue said:\n%s\nwanted: %s", o, want);
    xf_where w;
    exec_where(r->ex, &w);
    assert_string_equal(exec_program(r->ex)->ops[w.last].name, at);
    o = tu_cmd(r, "check", 0);
    snprintf(want, sizeof want, "first op over tolerance: %s (kernel %s/cpu/%s)", at, op_kind, v->name);
    if (!strstr(o, want))
        fail_msg("check said:\n%s\nwanted: %s", o, want);
}

static void test_head_norm_caught(void **state)
{
    (void)state;
    xf_repl *r = load("tests/fixtures/qwen3/qwen3-gqa-f32.gguf");
    expect_caught(r, &k_wrong_head_norm, "rmsnorm", "blk.0.q_norm");
    repl_free(r);
}

static void test_mxfp4_matmul_caught(void **state)
{
    (void)state;
    xf_repl *r = load("tests/fixtures/qwen2/qwen2-gqa-mxfp4.gguf");
    expect_caught(r, &k_wrong_mxfp4, "matmul", "blk.0.q");
    repl_free(r);
}

/* and with the right kernels the same passes are clean */
static void test_clean(void **state)
{
    (void)state;
    static const char *const files[] = {"tests/fixtures/qwen3/qwen3-gqa-f32.gguf",
                                        "tests/fixtures/qwen2/qwen2-gqa-mxfp4.gguf"};
    for (int f = 0; f < 2; f++) {
        xf_repl *r = load(files[f]);
        tu_cmd(r, "check on", 0);
        tu_cmd(r, "run --tokens 17,400,3,99,256,5,300", 0);
        tu_cmd(r, "continue", 0);
        const char *o = tu_cmd(r, "check", 0);
        if (!strstr(o, "none over tolerance"))
            fail_msg("%s: check said:\n%s", files[f], o);
        repl_free(r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_norm_caught),
        cmocka_unit_test(test_mxfp4_matmul_caught),
        cmocka_unit_test(test_clean),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tu_cmd_free();
    return rc;
}
