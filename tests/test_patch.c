/* test_patch: writing into the forward pass (issue 18) on the default
 * model: `set` changes exactly the elements asked and the logits move as
 * a float64 numpy forward with the same write says
 * (scripts/make_patch_fixture.py -> tests/fixtures/patch), `ablate` of a
 * head is zeroing its slice of kqv, patching from a dump of the same
 * prompt changes nothing (bit-exact on the cpu), the refusals name what
 * is wrong, the pass is marked (where, prompt, dump metadata, passes), the
 * history (keep, NAME@pass-K, the cap) and Lua (xf.set, xf.ablate, xf.on).
 * tests/test_patch_cuda.c runs the same on the cuda backend (exit 77
 * without a GPU). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "exec.h"
#include "refdump.h"
#include "repl.h"
#include "strbuf.h"
#include "testutil.h"

#ifndef TP_CUDA
#define TP_BACKEND KERN_BACKEND_CPU
#define TP_NAME "test_patch"
#else
#define TP_BACKEND KERN_BACKEND_CUDA
#define TP_NAME "test_patch_cuda"
#endif

#define TOKENS "33676,4720,25,198,2061,1657,832,331,8623,4324"

static xf_repl *tp_repl(void)
{
    xf_repl *r = tu_repl_new();
    assert_non_null(r);
    r->backend = TP_BACKEND;
    char p[1024];
    tu_repl_load(r, tu_src_path(p, sizeof p, TU_MODEL));
    return r;
}

/* op's output, whole (malloc'd) */
static float *tp_read(xf_repl *r, const char *name, int64_t *n)
{
    xf_err err = {0};
    int op = exec_tensor_find(r->ex, name, &err);
    assert_true(op >= 0);
    const xf_op *o = &exec_program(r->ex)->ops[op];
    float *v = malloc((size_t)o->numel * sizeof *v);
    assert_non_null(v);
    assert_int_equal(exec_tensor_read(r->ex, op, v, &err), 0);
    if (n)
        *n = o->numel;
    return v;
}

static void test_set_matches_numpy(void **state)
{
    (void)state;
    xf_repl *r = tp_repl();
    tu_cmd(r, "run --tokens " TOKENS, 0);
    tu_cmd(r, "break blk.2.out", 0);
    tu_cmd(r, "continue", 0);
    int64_t n;
    float *before = tp_read(r, "blk.2.out", &n);
    const char *o = tu_cmd(r, "set blk.2.out[3, 0:8] = 0.5", 0);
    assert_non_null(strstr(o, "8 elements written"));
    float *after = tp_read(r, "blk.2.out", NULL);
    for (int64_t i = 0; i < n; i++) {
        bool asked = i / 192 == 3 && i % 192 < 8;
        if (asked)
            assert_true(after[i] == 0.5f);
        else
            assert_memory_equal(&after[i], &before[i], sizeof(float));
    }
    tu_cmd(r, "finish", 0);
    float *lg = tp_read(r, "logits", NULL);
    char p[1024];
    xf_err err = {0};
    refdump *d = refdump_open(tu_src_path(p, sizeof p, "tests/fixtures/patch/set_blk2_out.safetensors"), &err);
    assert_non_null(d);
    const refdump_tensor *t = refdump_find(d, "logits.set");
    assert_non_null(t);
    int64_t V = t->shape[1];
    float *want = malloc((size_t)(2 * V) * sizeof *want);
    assert_int_equal(refdump_read_f32(d, t, want, &err), 0);
    const int rows[2] = {3, 9};
    for (int k = 0; k < 2; k++) {
        double e = tu_rel_max_err(lg + (size_t)rows[k] * (size_t)V, want + (size_t)k * (size_t)V, (size_t)V);
        printf("%s: logits row %d vs numpy float64 with the same write: %.3g x max\n", TP_NAME, rows[k], e);
        assert_true(e < 1e-4);
    }
    refdump_close(d);
    free(want);
    free(lg);
    free(before);
    free(after);
    repl_free(r);
}

/* the logits of a pass over TOKENS with cmd typed right after the op `at` */
static float *tp_logits_with(xf_repl *r, const char *at, const char *cmd)
{
    tu_cmd(r, "delete", 0);
    tu_cmd(r, "run --tokens " TOKENS, 0);
    char b[128];
    snprintf(b, sizeof b, "break %s", at);
    tu_cmd(r, b, 0);
    tu_cmd(r, "continue", 0);
    tu_cmd(r, cmd, 0);
    tu_cmd(r, "finish", 0);
    return tp_read(r, "logits", NULL);
}

static void test_ablate_is_zeroing_the_head(void **state)
{
    (void)state;
    xf_repl *r = tp_repl();
    int64_t n;
    tu_cmd(r, "run --tokens " TOKENS, 0);
    tu_cmd(r, "finish", 0);
    float *clean = tp_read(r, "logits", &n);
    float *a = tp_logits_with(r, "blk.1.kqv", "ablate blk.1.head 2");
    float *s = tp_logits_with(r, "blk.1.kqv", "set blk.1.kqv[:, 64:96] = 0");
    assert_memory_equal(a, s, (size_t)n * sizeof *a);
    assert_true(tu_rel_max_err(a, clean, (size_t)n) > 1e-3); /* it did something */
    float *f = tp_logits_with(r, "blk.3.ffn_out", "ablate blk.3.ffn");
    float *z = tp_logits_with(r, "blk.3.ffn_out", "set blk.3.ffn_out = 0");
    assert_memory_equal(f, z, (size_t)n * sizeof *f);
    /* xf.on doing the same from Lua: the same logits */
    tu_cmd(r, "delete", 0);
    tu_cmd(r, "lua xf.on('blk.3.ffn_out', function(t) local v = t:values(); for i = 1, #v do v[i] = 0 end; "
              "return v end)", 0);
    tu_cmd(r, "run --tokens " TOKENS, 0);
    tu_cmd(r, "finish", 0);
    float *l = tp_read(r, "logits", NULL);
    assert_memory_equal(l, z, (size_t)n * sizeof *l);
    assert_non_null(strstr(tu_cmd(r, "where", 0), "xf.on blk.3.ffn_out"));
    tu_cmd(r, "lua xf.on()", 0);
    free(clean);
    free(a);
    free(s);
    free(f);
    free(z);
    free(l);
    repl_free(r);
}

static void test_patch_same_prompt_changes_nothing(void **state)
{
    (void)state;
    xf_repl *r = tp_repl();
    char path[512], cmd[700];
    tu_tmp_path(path, sizeof path, ".safetensors");
    tu_cmd(r, "run --tokens " TOKENS, 0);
    tu_cmd(r, "finish", 0);
    snprintf(cmd, sizeof cmd, "dump all %s", path);
    tu_cmd(r, cmd, 0);
    tu_cmd(r, "run --tokens " TOKENS, 0);
    tu_cmd(r, "break blk.2.out", 0);
    tu_cmd(r, "continue", 0);
    snprintf(cmd, sizeof cmd, "patch blk.2.out from %s", path);
    tu_cmd(r, cmd, 0);
    tu_cmd(r, "finish", 0);
    xf_err err = {0};
    refdump *d = refdump_open(path, &err);
    assert_non_null(d);
    const xf_program *p = exec_program(r->ex);
    for (int i = 0; i < p->n_ops; i++) {
        const refdump_tensor *t = refdump_find(d, p->ops[i].name);
        assert_non_null(t);
        float *got = tp_read(r, p->ops[i].name, NULL), *want = malloc((size_t)p->ops[i].numel * sizeof *want);
        assert_int_equal(refdump_read_f32(d, t, want, &err), 0);
        if (TP_BACKEND == KERN_BACKEND_CPU)
            assert_memory_equal(got, want, (size_t)p->ops[i].numel * sizeof *got);
        else /* cuBLAS may not be run-to-run bit-exact */
            assert_true(tu_rel_max_err(got, want, (size_t)p->ops[i].numel) < 1e-5);
        free(got);
        free(want);
    }
    refdump_close(d);
    /* a dump of another prompt length: the file and both shapes are named */
    tu_cmd(r, "run --tokens 33676,4720,25", 0);
    tu_cmd(r, "continue", 0);
    snprintf(cmd, sizeof cmd, "patch blk.2.out from %s", path);
    const char *o = tu_cmd(r, cmd, 1);
    assert_non_null(strstr(o, path));
    assert_non_null(strstr(o, "[10, 192] there and [3, 192] in this pass"));
    unlink(path);
    repl_free(r);
}

static void test_refusals_and_marks(void **state)
{
    (void)state;
    xf_repl *r = tp_repl();
    char path[512], cmd[700];
    tu_tmp_path(path, sizeof path, ".safetensors");
    tu_cmd(r, "run --tokens " TOKENS, 0);
    assert_non_null(strstr(tu_cmd(r, "set blk.2.out = 1", 1), "has not run yet"));
    tu_cmd(r, "step 48", 0);
    assert_non_null(strstr(tu_cmd(r, "set blk.2.out = 1", 1), "already read by blk.3.attn_norm: "));
    assert_non_null(strstr(tu_cmd(r, "set blk.3.qkv[0] = blk.3.qkv[0, 0:5]", 1), "5 elements, the target 576"));
    assert_non_null(strstr(tu_cmd(r, "ablate blk.9.ffn", 1), "L in 0..5"));
    assert_non_null(strstr(tu_cmd(r, "ablate blk.1.head 6", 1), "heads 0..5"));
    char prompt[128];
    repl_prompt(r, prompt, sizeof prompt);
    assert_string_equal(prompt, "(xfdb blk.3.qkv) ");
    tu_cmd(r, "set blk.3.qkv[-1, 0] = -2.5", 0);
    repl_prompt(r, prompt, sizeof prompt);
    assert_string_equal(prompt, "(xfdb* blk.3.qkv) ");
    assert_non_null(strstr(tu_cmd(r, "where", 0), "* set blk.3.qkv[-1, 0] = -2.5"));
    tu_cmd(r, "finish", 0);
    snprintf(cmd, sizeof cmd, "dump logits %s", path);
    tu_cmd(r, cmd, 0);
    xf_err err = {0};
    refdump *d = refdump_open(path, &err);
    assert_non_null(d);
    const char *m = refdump_meta(d, "xfdb.interventions");
    assert_non_null(m);
    assert_string_equal(m, "[\"set blk.3.qkv[-1, 0] = -2.5\"]");
    refdump_close(d);
    unlink(path);
    /* `run` starts clean */
    tu_cmd(r, "run --tokens " TOKENS, 0);
    tu_cmd(r, "step", 0);
    repl_prompt(r, prompt, sizeof prompt);
    assert_string_equal(prompt, "(xfdb embd) ");
    assert_null(strstr(tu_cmd(r, "where", 0), "written"));
    tu_cmd(r, "step 47", 0);
    assert_null(strstr(tu_cmd(r, "diff blk.3.qkv blk.3.qkv@cpu", 0), "note:"));
    /* a number float32 cannot hold is refused, never stored as inf; nan, inf and -inf
     * are values (not "no tensor named 'nan'", session 26) */
    assert_non_null(strstr(tu_cmd(r, "set blk.3.qkv[0, 0] = 1e39", 1), "1e39 is outside float32's range"));
    assert_non_null(
        strstr(tu_cmd(r, "set blk.3.qkv[0, 0] = -1e999", 1), "-1e999 is outside float32's range"));
    tu_cmd(r, "set blk.3.qkv[0, 0] = nan", 0);
    tu_cmd(r, "set blk.3.qkv[0, 1] = -inf", 0);
    assert_string_equal(tu_cmd(r, "print blk.3.qkv[0, 0:2] --raw", 0), "nan -inf\n");
    /* X@cpu replays the tokens, not the writes: a written pass says so where it is used */
    assert_non_null(
        strstr(tu_cmd(r, "diff blk.3.qkv blk.3.qkv@cpu", 0),
               "note: blk.3.qkv@cpu lacks the writes into this pass:\n  after a write it differs by the "
               "write, not by a kernel\n"));
    repl_free(r);
}

static void test_history(void **state)
{
    (void)state;
    xf_repl *r = tp_repl();
    tu_cmd(r, "run --tokens " TOKENS, 0);
    /* 10 tokens x 192 x 4 bytes x 6 tensors = 46.1 KB a pass */
    assert_non_null(strstr(tu_cmd(r, "keep blk.*.out --passes 4 --mem 100KB", 1), "over the cap of 100.0 KB"));
    tu_cmd(r, "keep blk.*.out --passes 4 --mem 1MB", 0);
    tu_cmd(r, "finish", 0);
    tu_cmd(r, "run --tokens " TOKENS, 0);
    tu_cmd(r, "break blk.2.out", 0);
    tu_cmd(r, "continue", 0);
    tu_cmd(r, "set blk.2.out[3] = blk.2.out@pass-1[4]", 0);
    tu_cmd(r, "finish", 0);
    const char *o = tu_cmd(r, "diff blk.1.out blk.1.out@pass-1", 0);
    assert_non_null(strstr(o, "identical"));
    o = tu_cmd(r, "diff blk.3.out blk.3.out@pass-1", 0);
    assert_non_null(strstr(o, "first at [3, "));
    tu_cmd(r, "run \"ROMEO:\"", 0);
    o = tu_cmd(r, "passes", 0);
    assert_non_null(strstr(o, "pass 1 (@pass-2): 10 tokens at position 0; 6 tensors kept (46.1 KB)"));
    assert_non_null(strstr(o, "pass 2 (@pass-1): 10 tokens at position 0, written; 6 tensors kept"));
    assert_non_null(strstr(o, "* set blk.2.out[3] = blk.2.out@pass-1[4]"));
    assert_non_null(strstr(o, "'ROM' 'EO' ':' '\\n' 'What'"));
    assert_non_null(strstr(tu_cmd(r, "print blk.0.out@pass-9", 1), "nothing kept as @pass-9 (2 passes kept"));
    assert_non_null(strstr(tu_cmd(r, "print logits@pass-1", 1), "kept no tensor 'logits'"));
    repl_free(r);
}

static void test_lua_set_rules(void **state)
{
    (void)state;
    xf_repl *r = tp_repl();
    tu_cmd(r, "run --tokens " TOKENS, 0);
    tu_cmd(r, "step 3", 0);
    assert_non_null(strstr(tu_cmd(r, "lua print(xf.set('blk.0.qkv', '[0, 0:3]', {1, 2, 3}))", 0), "3"));
    assert_non_null(strstr(tu_cmd(r, "lua print(xf.set('blk.0.qkv', '[1, 0:3]', {1, 2}))", 1), "2 values for 3"));
    const char *o = tu_cmd(r, "print blk.0.qkv[0, :4] --raw", 0);
    assert_non_null(strstr(o, "1 2 3 "));
    /* an xf.on function may not run commands or drive the stepper */
    tu_cmd(r, "lua xf.on('blk.0.q', function(t) xf.cmd('where') end)", 0);
    assert_non_null(strstr(tu_cmd(r, "step", 1), "not allowed inside"));
    tu_cmd(r, "lua xf.on()", 0);
    repl_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_matches_numpy),
        cmocka_unit_test(test_ablate_is_zeroing_the_head),
        cmocka_unit_test(test_patch_same_prompt_changes_nothing),
        cmocka_unit_test(test_refusals_and_marks),
        cmocka_unit_test(test_history),
        cmocka_unit_test(test_lua_set_rules),
    };
    char why[256];
    if (!kern_backend_available(TP_BACKEND, why, sizeof why)) {
        printf("%s: skipped all %zu tests: %s\n", TP_NAME, sizeof tests / sizeof tests[0], why);
        return 77;
    }
    tu_filter_from_env(); /* scripts/gpu-sanitize.sh runs test_patch_cuda a test at a time */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
