/* The debugger: stepping, breakpoints, slices, the check mode that names
 * a deliberately wrong kernel, and every command's errors leaving the
 * session usable. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "exec.h"
#include "repl.h"
#include "commands.h"
#include "run.h"
#include "view.h"
#include "record.h"
#include "sessions.h"
#include "tensor.h"
#include "testutil.h"

/* A layernorm with the wrong epsilon: the kind of bug check mode exists for.
 * Compiled into this test only. */
static int wrong_eps_norm(kern_ctx *ctx, const kern_args *a)
{
    const kern_variant *ref = kern_find(KERN_OP_NORM, KERN_BACKEND_CPU, "ref");
    kern_args b = *a;
    b.eps = 0.5f;
    return ref->fn(ctx, &b);
}

static const kern_variant k_wrong = {.op = KERN_OP_NORM, .backend = KERN_BACKEND_CPU, .name = "wrong_eps",
                                     .fn = wrong_eps_norm,
                                     .doc = "layernorm with eps 0.5 (test only)"};

static xf_repl *new_repl(void)
{
    char mp[1024];
    xf_repl *r = tu_repl_new();
    assert_non_null(r);
    if (!getenv("XF_TEST_THREADS"))
        r->n_threads = 2;
    tu_repl_load(r, tu_src_path(mp, sizeof mp, TU_MODEL));
    return r;
}

/* runs a command and returns what it printed (the harness's buffer) */
#define cmd tu_cmd

static void test_check_names_wrong_variant(void **state)
{
    (void)state;
    xf_repl *r = new_repl();
    xf_err err = {0};
    assert_int_equal(exec_variant_add(r->ex, &k_wrong, &err), 0);
    cmd(r, "kernel norm wrong_eps", 0);
    cmd(r, "check break", 0);
    cmd(r, "run --tokens 33676,4720,25,198,2061,1657,832,331,8623,4324", 0);
    const char *o = cmd(r, "continue", 0);
    /* the first use of layernorm is blk.0.attn_norm: check must stop there and name the variant */
    assert_non_null(strstr(o, "check: blk.0.attn_norm (norm/cpu/wrong_eps) over tolerance"));
    xf_where w;
    exec_where(r->ex, &w);
    assert_string_equal(exec_program(r->ex)->ops[w.last].name, "blk.0.attn_norm");
    o = cmd(r, "check", 0);
    assert_non_null(strstr(o, "first op over tolerance: blk.0.attn_norm (kernel norm/cpu/wrong_eps)"));
    repl_free(r);
}

static void test_check_clean_pass(void **state)
{
    (void)state;
    xf_repl *r = new_repl();
    cmd(r, "check on", 0);
    cmd(r, "run --tokens 33676,4720,25,198,2061,1657,832,331,8623,4324", 0);
    cmd(r, "continue", 0);
    int n;
    const xf_check_row *rows = exec_check_rows(r->ex, &n);
    assert_int_equal(n, exec_program(r->ex)->n_ops);
    for (int i = 0; i < n; i++)
        if (rows[i].over)
            fail_msg("%s over tolerance with the opt kernels", exec_program(r->ex)->ops[rows[i].op].name);
    const char *o = cmd(r, "check", 0);
    assert_non_null(strstr(o, "93 ops checked, none over tolerance"));
    /* and the check row of a matmul really compared something */
    int qkv = program_find(exec_program(r->ex), "blk.0.qkv");
    assert_true(rows[qkv].diff.n == 10 * 576);
    assert_true(rows[qkv].diff.cosine > 0.999999);
    repl_free(r);
}

static void test_stepping(void **state)
{
    (void)state;
    xf_repl *r = new_repl();
    const xf_program *p;
    xf_where w;
    cmd(r, "run --tokens 1,2,3", 0);
    p = exec_program(r->ex);
    exec_where(r->ex, &w);
    assert_int_equal(w.pc, 0);
    assert_int_equal(w.last, -1);
    cmd(r, "step", 0);
    exec_where(r->ex, &w);
    assert_string_equal(p->ops[w.last].name, "embd");
    cmd(r, "step 3", 0);
    exec_where(r->ex, &w);
    assert_string_equal(p->ops[w.last].name, "blk.0.q");
    /* next: to the end of layer 0 */
    cmd(r, "next", 0);
    exec_where(r->ex, &w);
    assert_string_equal(p->ops[w.last].name, "blk.0.out");
    cmd(r, "next", 0);
    exec_where(r->ex, &w);
    assert_string_equal(p->ops[w.last].name, "blk.1.out");
    /* a tensor not computed yet is an error, and the session goes on */
    const char *o = cmd(r, "print blk.3.kq", 1);
    assert_non_null(strstr(o, "not computed yet"));
    cmd(r, "break blk.*.kq_soft", 0);
    cmd(r, "continue", 0);
    exec_where(r->ex, &w);
    assert_string_equal(p->ops[w.last].name, "blk.2.kq_soft");
    /* finish ignores breakpoints */
    cmd(r, "finish", 0);
    exec_where(r->ex, &w);
    assert_int_equal(w.pc, w.n_ops);
    o = cmd(r, "info breaks", 0);
    assert_non_null(strstr(o, "blk.*.kq_soft"));
    /* decode: one token at position 3 */
    cmd(r, "token", 0);
    exec_where(r->ex, &w);
    assert_int_equal(w.pos0, 3);
    assert_int_equal(w.n_tokens, 1);
    o = cmd(r, "continue", 0);
    assert_non_null(strstr(o, "blk.0.kq_soft"));
    cmd(r, "print blk.0.kq_soft", 0);
    o = cmd(r, "print blk.0.kq_soft --raw -n 100", 0);
    /* 6 heads x 1 query x 4 keys, a softmax per head: the rows sum to 1 */
    float v[24];
    int k = 0;
    for (char *s = (char *)o, *e; k < 24; s = e, k++) {
        v[k] = strtof(s, &e);
        assert_true(e != s);
    }
    for (int h = 0; h < 6; h++)
        assert_float_equal(v[4 * h] + v[4 * h + 1] + v[4 * h + 2] + v[4 * h + 3], 1.0, 1e-5);
    cmd(r, "delete 1", 0);
    cmd(r, "delete 1", 1);
    repl_free(r);
}

static void test_break_conditions(void **state)
{
    (void)state;
    xf_repl *r = new_repl();
    xf_where w;
    cmd(r, "run --tokens 1,2,3", 0);
    cmd(r, "break blk.* if nan", 0);
    cmd(r, "break blk.*.ffn_up if absmax>2.5", 0);
    cmd(r, "continue", 0);
    exec_where(r->ex, &w);
    const char *name = exec_program(r->ex)->ops[w.last].name;
    /* the first ffn_up whose absmax exceeds 5, verified independently */
    float *buf = malloc((size_t)exec_program(r->ex)->ops[w.last].numel * sizeof(float));
    xf_err err = {0};
    assert_int_equal(exec_tensor_read(r->ex, w.last, buf, &err), 0);
    xf_stats s;
    tensor_stats(buf, (size_t)exec_program(r->ex)->ops[w.last].numel, &s);
    assert_true(s.absmax > 2.5);
    assert_string_equal(name, "blk.3.ffn_up"); /* 2.77; layers 0-2 stay below 2.5 */
    for (int i = 0; i < w.last; i++) {
        const xf_op *op = &exec_program(r->ex)->ops[i];
        if (strstr(op->name, "ffn_up")) {
            float *b2 = malloc((size_t)op->numel * sizeof(float));
            assert_int_equal(exec_tensor_read(r->ex, i, b2, &err), 0);
            tensor_stats(b2, (size_t)op->numel, &s);
            assert_true(s.absmax <= 2.5);
            free(b2);
        }
    }
    free(buf);
    cmd(r, "break blk.0.x if bogus", 1);
    cmd(r, "break nothing.matches", 1);
    cmd(r, "break blk.1.out if absmax>", 1);
    repl_free(r);
}

static void test_slices(void **state)
{
    (void)state;
    xf_slice sl;
    xf_selection sel;
    xf_err err = {0};
    int64_t shape[3] = {10, 6, 4};
    assert_int_equal(tensor_slice_parse("[3, :2]", &sl, &err), 0);
    assert_int_equal(tensor_slice_resolve(&sl, 3, shape, &sel, &err), 0);
    assert_int_equal(sel.count, 2 * 4);
    assert_int_equal(tensor_selection_index(&sel, 0), 3 * 24);
    assert_int_equal(tensor_selection_index(&sel, 5), 3 * 24 + 1 * 4 + 1);
    assert_int_equal(tensor_slice_parse("[-1]", &sl, &err), 0);
    assert_int_equal(tensor_slice_resolve(&sl, 3, shape, &sel, &err), 0);
    assert_int_equal(tensor_selection_index(&sel, 0), 9 * 24);
    assert_int_equal(tensor_slice_parse("[:, 2, 0:4:2]", &sl, &err), 0);
    assert_int_equal(tensor_slice_resolve(&sl, 3, shape, &sel, &err), 0);
    assert_int_equal(sel.count, 10 * 2);
    assert_int_equal(tensor_selection_index(&sel, 3), 1 * 24 + 2 * 4 + 2);
    assert_int_equal(tensor_slice_parse("[::-1]", &sl, &err), 0);
    assert_int_equal(tensor_slice_resolve(&sl, 3, shape, &sel, &err), 0);
    assert_int_equal(tensor_selection_index(&sel, 0), 9 * 24);
    assert_int_equal(tensor_slice_parse("[10]", &sl, &err), 0);
    assert_int_equal(tensor_slice_resolve(&sl, 3, shape, &sel, &err), -1);
    assert_non_null(strstr(err.msg, "index 10 out of range for dimension 0 of size 10"));
    assert_int_equal(tensor_slice_parse("[1,", &sl, &err), -1);
    assert_int_equal(tensor_slice_parse("[a]", &sl, &err), -1);
    assert_non_null(strstr(err.msg, "expected a number at column 2"));
    assert_int_equal(tensor_slice_parse("[::0]", &sl, &err), -1);
    assert_int_equal(tensor_slice_parse("[1,2,3,4,5]", &sl, &err), -1);
    assert_int_equal(tensor_slice_parse("[1]x", &sl, &err), -1);
    assert_int_equal(tensor_slice_parse("[0,0,0,0]", &sl, &err), 0);
    assert_int_equal(tensor_slice_resolve(&sl, 3, shape, &sel, &err), -1);
}

static void test_aliases_and_print(void **state)
{
    (void)state;
    xf_repl *r = new_repl();
    cmd(r, "run --tokens 1,2,3", 0);
    cmd(r, "finish", 0);
    const char *names[][2] = {{"l_out-3", "blk.3.out"},
                              {"kq_soft_max-2", "blk.2.kq_soft"},
                              {"transformer.h.3.ln_1", "blk.3.attn_norm"},
                              {"model.layers.1.mlp.down_proj", "blk.1.ffn_out"},
                              {"q3", "blk.3.q"},
                              {"result_norm", "out_norm"},
                              {"ffn_inp-0", "blk.0.ffn_inp"}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char a[64], b[64];
        snprintf(a, sizeof a, "print %s --raw -n 5", names[i][0]);
        snprintf(b, sizeof b, "print %s --raw -n 5", names[i][1]);
        char *x = strdup(cmd(r, a, 0));
        assert_string_equal(x, cmd(r, b, 0));
        free(x);
    }
    const char *o = cmd(r, "print blk.0.attn_qkv.weight[1, :3]", 0);
    assert_non_null(strstr(o, "weight F16"));
    o = cmd(r, "print logits[-1]", 0);
    assert_non_null(strstr(o, "[50257] of [3, 50257]"));
    /* errors, and the session stays usable */
    cmd(r, "print nosuch", 1);
    cmd(r, "print logits[5]", 1);
    cmd(r, "print logits[0, 1, 2]", 1);
    cmd(r, "print logits[", 1);
    cmd(r, "print", 1);
    cmd(r, "print logits -n", 1);
    cmd(r, "diff logits", 1);
    cmd(r, "diff logits blk.0.out", 1);
    cmd(r, "stats nosuch", 1);
    cmd(r, "kernel nosuch ref", 1);
    cmd(r, "kernel norm nosuch", 1);
    cmd(r, "check maybe", 1);
    cmd(r, "step 0", 1);
    cmd(r, "step", 1); /* the pass is complete */
    cmd(r, "frobnicate", 1);
    cmd(r, "generate x", 1);
    cmd(r, "run --tokens 1,99999999", 1);
    cmd(r, "run --tokens a,b", 1);
    cmd(r, "dump all", 1);
    cmd(r, "ref load /nonexistent.safetensors", 1);
    o = cmd(r, "print logits[-1, :2] --raw", 0);
    assert_true(strlen(o) > 3);
    repl_free(r);
}

static void test_every_command_has_help(void **state)
{
    (void)state;
    size_t n;
    const xf_command *t = commands_table(&n);
    xf_repl *r = new_repl();
    for (size_t i = 0; i < n; i++) {
        assert_true(strlen(t[i].synopsis) > 0);
        assert_true(strlen(t[i].help) > 10);
        char line[64];
        snprintf(line, sizeof line, "help %s", t[i].name);
        const char *o = cmd(r, line, 0);
        /* help wraps to 80 columns: the synopsis is there with its blanks as line breaks */
        char *flat = strdup(o);
        for (char *p = flat; *p; p++)
            if (*p == '\n')
                *p = ' ';
        char *sp;
        while ((sp = strstr(flat, "  ")) != NULL)
            memmove(sp, sp + 1, strlen(sp));
        assert_non_null(strstr(flat, t[i].synopsis));
        free(flat);
    }
    const char *o = cmd(r, "frobnicate", 1);
    (void)o;
    o = cmd(r, "contineu", 1);
    assert_non_null(strstr(o, "did you mean 'continue'"));
    repl_free(r);
}

/* the commands the other tests do not reach: quant, list, topk and its logit
 * lens, chat's error without a chat vocabulary, bench, graph, load, quit */
static void test_more_commands(void **state)
{
    (void)state;
    xf_repl *r = new_repl();
    char path[1024], line[1200];
    /* quant: the block's floats are d * q, and agree with print of the same slice */
    snprintf(line, sizeof line, "load %s", tu_src_path(path, sizeof path, "tests/fixtures/qwen2/qwen2-gqa-q8_0.gguf"));
    cmd(r, line, 0);
    const char *o = cmd(r, "quant blk.0.attn_q.weight 2 1", 0);
    assert_non_null(strstr(o, "Q8_0, 32 elements in 34 bytes"));
    double d = strtod(strstr(o, "  d ") + 4, NULL);
    double q0 = strtod(strstr(o, "  q ") + 4, NULL);
    double f0 = strtod(strstr(o, "  floats ") + 9, NULL);
    assert_true(d != 0 && q0 != 0);
    assert_float_equal(d * q0, f0, 1e-6 * fabs(f0));
    o = cmd(r, "print blk.0.attn_q.weight[2, 32:33] --raw", 0);
    assert_float_equal(strtod(o, NULL), f0, 1e-6 * fabs(f0));
    cmd(r, "quant blk.0.attn_q.weight 999", 1);
    cmd(r, "quant blk.0.attn_q.weight 0 99", 1);
    cmd(r, "quant no.such.weight 0", 1);
    /* list marks the next op */
    cmd(r, "run --tokens 1,2,3", 0);
    o = cmd(r, "list 1", 0);
    assert_non_null(strstr(o, "=>    0 embd"));
    assert_null(strstr(o, "blk.0.q "));
    cmd(r, "list x", 1);
    cmd(r, "continue", 0);
    /* the logit lens of the last residual is the logits themselves: the same
     * ids, and logits within rounding (the lens runs the cpu ref kernels, the
     * pass the selected variant) */
    char *a = strdup(cmd(r, "topk 3", 0));
    o = cmd(r, "topk 3 blk.1.out", 0);
    const char *pa = strchr(a, '\n'), *po = strchr(o, '\n');
    for (int k = 0; k < 3; k++) {
        long ia, io;
        assert_int_equal(sscanf(pa, " %*d %ld", &ia), 1);
        assert_int_equal(sscanf(po, " %*d %ld", &io), 1);
        assert_int_equal(ia, io);
        pa = strstr(pa, "logit ");
        po = strstr(po, "logit ");
        assert_non_null(pa);
        assert_non_null(po);
        double la = strtod(pa + 6, NULL), lo = strtod(po + 6, NULL);
        assert_float_equal(la, lo, 1e-4 * fabs(la));
        pa = strchr(pa, '\n');
        po = strchr(po, '\n');
        assert_non_null(pa);
        assert_non_null(po);
    }
    free(a);
    cmd(r, "topk 3 blk.0.kq", 1); /* not a residual */
    o = cmd(r, "chat hello", 1);
    assert_non_null(strstr(o, "no vocabulary"));
    o = cmd(r, "bench --prefill 4 --decode 2 --reps 1 --variants opt", 0);
    assert_non_null(strstr(o, "opt      prefill 4"));
    assert_non_null(strstr(o, "opt      decode 2"));
    cmd(r, "bench --prefill x", 1);
    /* decode after a 6-token prefill: the first decoded token at position 6 */
    o = cmd(r, "bench --prefill 4 --decode 2 --depth 6 --reps 1 --variants opt", 0);
    assert_non_null(strstr(o, "opt      decode 2 @6"));
    o = cmd(r, "bench --depth -1", 1);
    assert_non_null(strstr(o, "--depth takes a position"));
    o = cmd(r, "graph", 0);
    assert_non_null(strstr(o, "(cpu backend)"));
    assert_non_null(strstr(o, "a decode pass runs op by op: the cpu backend has no graphs"));
    assert_non_null(strstr(o, "a prefill run by continue or finish runs each layer's kq"));
    assert_non_null(strstr(o, "computed when first read"));
    cmd(r, "check on", 0);
    o = cmd(r, "graph", 0);
    assert_non_null(strstr(o, "a prefill's attention runs op by op: check is on"));
    cmd(r, "check off", 0);
    cmd(r, "graph sideways", 1);
    /* back to GPT-2: chat needs <|im_start|>, which it has not */
    snprintf(line, sizeof line, "load %s", tu_src_path(path, sizeof path, TU_MODEL));
    cmd(r, line, 0);
    o = cmd(r, "chat hello", 1);
    assert_non_null(strstr(o, "no chat format"));
    cmd(r, "load /nonexistent.gguf", 1);
    o = cmd(r, "info", 0); /* the failed load kept the model */
    assert_non_null(strstr(o, "architecture: gpt2"));
    cmd(r, "quit", 0);
    assert_true(r->quit);
    repl_free(r);
}

/* print and stats read activations where they live: the gathered values and
 * the stats reduced in place (on the GPU: by a kernel) equal those of a full
 * copy, on every backend this machine has */
/* What a prefill's fast path left owed (the cpu's fused attention: kq and
 * kq_soft; the logits rows before the last) is computed by the first read,
 * and print says so there, and only there: not on the next read, not for a
 * slice of the last logits row (computed by the pass), not for a tensor the
 * pass kept. */
static void test_print_recomputed(void **state)
{
    (void)state;
    xf_repl *r = new_repl();
    cmd(r, "run --tokens 1,2,3,4,5", 0);
    cmd(r, "finish", 0);
    const char *o = cmd(r, "print blk.1.kq_soft[0, -1]", 0);
    assert_non_null(strstr(o, "cpu:opt (recomputed on this read)"));
    o = cmd(r, "print blk.1.kq_soft[0, -1]", 0);
    assert_null(strstr(o, "recomputed"));
    o = cmd(r, "print blk.1.out[0, :3]", 0);
    assert_null(strstr(o, "recomputed"));
    o = cmd(r, "print logits[-1, :3]", 0);
    assert_null(strstr(o, "recomputed"));
    cmd(r, "run --tokens 1,2,3,4,5", 0);
    cmd(r, "finish", 0);
    o = cmd(r, "print logits[0, :3]", 0);
    assert_non_null(strstr(o, "(recomputed on this read)"));
    o = cmd(r, "print blk.2.kq", 0);
    assert_non_null(strstr(o, "(recomputed on this read)"));
    /* a breakpoint on kq_soft keeps the layer's attention unfused: kept, not owed */
    cmd(r, "break blk.3.kq_soft", 0);
    cmd(r, "run --tokens 1,2,3,4,5", 0);
    cmd(r, "continue", 0);
    o = cmd(r, "print blk.3.kq_soft[0, -1]", 0);
    assert_null(strstr(o, "recomputed"));
    repl_free(r);
}

static void test_stats_in_place(void **state)
{
    (void)state;
    char mp[1024];
    xf_err err = {0};
    xf_model *m = model_load(tu_src_path(mp, sizeof mp, TU_MODEL), &err);
    assert_non_null(m);
    int checked = 0;
    for (int b = 0; b < KERN_BACKEND_COUNT; b++) {
        char why[128];
        if (!kern_backend_available((kern_backend)b, why, sizeof why))
            continue;
        xf_exec *ex = exec_new(m, (kern_backend)b, 1, &err);
        assert_non_null(ex);
        int32_t tk[5] = {33676, 4720, 25, 198, 2061};
        assert_int_equal(exec_begin(ex, tk, 5, false, &err), 0);
        xf_stop why_stop;
        assert_int_equal(exec_run(ex, XF_RUN_FINISH, 0, &why_stop, &err), 0);
        const xf_program *p = exec_program(ex);
        for (int i = 0; i < p->n_ops; i += 7) {
            size_t n = (size_t)p->ops[i].numel;
            float *all = malloc(n * sizeof(float));
            assert_int_equal(exec_tensor_read(ex, i, all, &err), 0);
            xf_stats a, d;
            tensor_stats(all, n, &a);
            assert_int_equal(exec_tensor_stats(ex, i, &d, &err), 0);
            assert_int_equal(a.n, d.n);
            assert_int_equal(a.n_nan, d.n_nan);
            assert_int_equal(a.n_inf, d.n_inf); /* kq has -inf where masked */
            assert_true(a.min == d.min && a.max == d.max && a.absmax == d.absmax);
            assert_float_equal(a.mean, d.mean, 1e-12 * (fabs(a.mean) + a.absmax));
            assert_float_equal(a.std, d.std, 1e-9 * (a.std + 1e-30));
            int64_t idx[4] = {(int64_t)n - 1, 0, (int64_t)n / 2, 1};
            float g[4];
            assert_int_equal(exec_tensor_gather(ex, i, idx, 4, g, &err), 0);
            for (int k = 0; k < 4; k++)
                assert_true(memcmp(&g[k], &all[idx[k]], sizeof(float)) == 0);
            free(all);
            checked++;
        }
        exec_free(ex);
    }
    assert_true(checked > 0);
    model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_names_wrong_variant),
        cmocka_unit_test(test_check_clean_pass),
        cmocka_unit_test(test_stepping),
        cmocka_unit_test(test_break_conditions),
        cmocka_unit_test(test_slices),
        cmocka_unit_test(test_aliases_and_print),
        cmocka_unit_test(test_every_command_has_help),
        cmocka_unit_test(test_more_commands),
        cmocka_unit_test(test_stats_in_place),
        cmocka_unit_test(test_print_recomputed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
