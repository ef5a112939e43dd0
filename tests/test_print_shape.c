/* Issue 15, the seeing half, through the commands as a user types them:
 * matrices print as rows, logits default to the last position, diff names
 * its first and worst elements by [i, j] and lists the worst, empty slices
 * and huge -n, quant on F16, quoted topk pieces, the messages of `topk 0`,
 * `diff A @cpu`, misspelled names and layers out of range, the warning of a
 * reference made from other tokens, and every table within 80 columns. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "repl.h"
#include "testutil.h"

#define PROMPT "run --tokens 33676,4720,25,198,2061,1657,832,331,8623,4324"

static xf_repl *ready(void)
{
    char mp[1024];
    xf_repl *r = tu_repl_new();
    assert_non_null(r);
    tu_repl_load(r, tu_src_path(mp, sizeof mp, TU_MODEL));
    tu_cmd(r, PROMPT, 0);
    tu_cmd(r, "finish", 0);
    return r;
}

static int count_lines(const char *s, const char *prefix)
{
    int n = 0;
    for (const char *p = s; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        n += strncmp(p, prefix, strlen(prefix)) == 0;
    return n;
}

/* display columns of the widest line: UTF-8 continuation bytes take none,
 * and the tables here hold no wide characters (they are checked elsewhere).
 * The stats line ("  min ... inf 0") is the one line of its old format
 * that recorded sessions hold, and is not a table: it is skipped. */
static int widest(const char *s)
{
    int w = 0, best = 0;
    bool skip = strncmp(s, "  min ", 6) == 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\n') {
            best = w > best && !skip ? w : best;
            w = 0;
            skip = strncmp((const char *)p + 1, "  min ", 6) == 0;
        } else if ((*p & 0xc0) != 0x80)
            w++;
    }
    return w > best && !skip ? w : best;
}

static void test_matrix_rows(void **state)
{
    (void)state;
    xf_repl *r = ready();
    const char *o = tu_cmd(r, "print blk.2.kq_soft[0] -n 100", 0);
    /* ten rows of ten, labelled, not one wrapped line of a hundred */
    for (int i = 0; i < 10; i++) {
        char row[16];
        snprintf(row, sizeof row, "  [%d] ", i);
        assert_int_equal(count_lines(o, row), 1);
    }
    assert_non_null(strstr(o, "  [0] 1.0000 0.0000"));
    /* a 3-D tensor: one matrix a head, with its leading index */
    o = tu_cmd(r, "print blk.2.kq_soft", 0);
    assert_non_null(strstr(o, "  [0, :, :]\n"));
    assert_non_null(strstr(o, "  [5, :, :]\n"));
    /* a 1-D slice prints as it always did */
    o = tu_cmd(r, "print blk.4.kq_soft[0, -1]", 0);
    /* six digits: the last bits follow the kernels' summation order */
    assert_non_null(strstr(o, "  first 8 of 10:\n  0.082355 0.07980"));
    repl_free(r);
}

/* attack26 T3: -n N bounds the values of a matrix, its rows counted from
 * the columns the width shows (not from the N columns asked for), and
 * every elision says what it stands for */
static void test_matrix_n_budget(void **state)
{
    (void)state;
    xf_repl *r = ready();
    /* [10, 192] at 80 columns shows 8 columns: -n 30 is three rows of them */
    const char *o = tu_cmd(r, "print blk.2.out -n 30", 0);
    assert_int_equal(count_lines(o, "  ["), 3);
    assert_non_null(strstr(o, "  [0]  0.0245"));
    assert_non_null(strstr(o, "  [9] "));
    assert_non_null(strstr(o, "  ... (rows 2..8 not shown)\n"));
    /* the README's example: one row of four, the rows and heads it leaves out named */
    o = tu_cmd(r, "print blk.2.kq_soft -n 4", 0);
    assert_non_null(strstr(o, "  [0] 1.0000 0.0000 ... 0.0000 0.0000\n"));
    assert_non_null(strstr(o, "  ... (rows 1..9 not shown)\n"));
    assert_non_null(strstr(o, "  ... ([1, :, :] .. [5, :, :] not shown)\n"));
    assert_null(strstr(o, "  ...\n"));
    /* the default too: no bare elision */
    o = tu_cmd(r, "print blk.2.kq_soft", 0);
    assert_non_null(strstr(o, "  ... ([2, :, :] .. [3, :, :] not shown)\n"));
    assert_null(strstr(o, "  ...\n"));
    /* one value: the column it ends at is named */
    o = tu_cmd(r, "print blk.2.out -n 1", 0);
    assert_non_null(strstr(o, " 0 ..191\n"));
    assert_true(widest(o) <= 80);
    /* more than the default: all ten rows */
    o = tu_cmd(r, "print blk.2.out -n 200", 0);
    assert_int_equal(count_lines(o, "  ["), 10);
    o = tu_cmd(r, "print blk.2.out -n 0", 1);
    assert_non_null(strstr(o, "-n needs a count of values (1 or more)"));
    repl_free(r);
}

static void test_logits_last_position(void **state)
{
    (void)state;
    xf_repl *r = ready();
    char want[256];
    const char *o = tu_cmd(r, "print logits[-1, :3] --raw", 0);
    snprintf(want, sizeof want, "%s", o);
    o = tu_cmd(r, "print logits", 0);
    assert_non_null(strstr(o, "logits[-1] [50257] of [10, 50257]"));
    /* the values shown are the last position's: 7.49784 -13.7783 ... */
    assert_non_null(strstr(o, "\n  7.49784 -13.7783 -13.0981"));
    assert_non_null(strstr(want, "7.49"));
    /* --raw is for machines: unchanged (position 0's first values) */
    o = tu_cmd(r, "print logits -n 2 --raw", 0);
    assert_null(strstr(o, "7.49"));
    repl_free(r);
}

/* a layernorm with a wrong epsilon: diff against the cpu reference finds it */
static int wrong_eps_norm(kern_ctx *ctx, const kern_args *a)
{
    kern_args b = *a;
    b.eps = 0.5f;
    return kern_find(KERN_OP_NORM, KERN_BACKEND_CPU, "ref")->fn(ctx, &b);
}

static const kern_variant k_wrong = {
    .op = KERN_OP_NORM, .backend = KERN_BACKEND_CPU, .name = "wrong_eps", .fn = wrong_eps_norm, .doc = "test only"};

static void test_diff_indices(void **state)
{
    (void)state;
    char mp[1024];
    xf_repl *r = tu_repl_new();
    tu_repl_load(r, tu_src_path(mp, sizeof mp, TU_MODEL));
    xf_err err = {0};
    assert_int_equal(exec_variant_add(r->ex, &k_wrong, &err), 0);
    tu_cmd(r, "kernel norm wrong_eps", 0);
    tu_cmd(r, PROMPT, 0);
    tu_cmd(r, "finish", 0);
    /* B alone as @cpu means A's name there (was: no tensor named '') */
    const char *o = tu_cmd(r, "diff blk.0.attn_norm @cpu -n 3", 0);
    assert_non_null(strstr(o, "diff blk.0.attn_norm vs blk.0.attn_norm@cpu [10, 192]"));
    assert_null(strstr(o, "flat index"));
    assert_non_null(strstr(o, ", first at [0, 0]\n"));
    assert_non_null(strstr(o, "  worst at ["));
    assert_non_null(strstr(o, "  the 3 largest |A-B|:\n"));
    /* the list starts at the worst element: the same index as the line above */
    const char *w = strstr(o, "worst at ") + 9;
    char idx[32];
    size_t n = strcspn(w, "(") - 1;
    memcpy(idx, w, n);
    idx[n] = '\0';
    const char *list = strstr(o, "|A-B|\n") + 6;
    assert_int_equal(strncmp(list + 2, idx, n), 0);
    repl_free(r);
}

static void test_empty_and_huge(void **state)
{
    (void)state;
    xf_repl *r = ready();
    const char *o = tu_cmd(r, "print embd[0, 5:5]", 0);
    assert_non_null(strstr(o, "(empty"));
    assert_null(strstr(o, "nan"));
    o = tu_cmd(r, "print logits[-1] -n 1000000", 0);
    assert_non_null(strstr(o, "showing 2000"));
    assert_true(strlen(o) < 40000);
    assert_true(widest(o) <= 80);
    repl_free(r);
}

static void test_quant_f16(void **state)
{
    (void)state;
    xf_repl *r = ready();
    const char *o = tu_cmd(r, "quant blk.0.attn_qkv.weight 0", 0);
    assert_null(strstr(o, "1 elements in 2 bytes"));
    assert_non_null(strstr(o, "elements 0..31 of 192:\n  F16, 2 bytes an element (not a block format)"));
    /* 32 values, as the bytes say (64 of them) */
    const char *f = strstr(o, "floats:\n");
    assert_non_null(f);
    int vals = 0;
    for (const char *p = f + 8; *p; p++)
        vals += (*p != ' ' && *p != '\n') && (p[-1] == ' ' || p[-1] == '\n');
    assert_int_equal(vals, 32);
    tu_cmd(r, "quant blk.0.attn_qkv.weight 0 6", 1);
    repl_free(r);
}

static void test_topk_quoted(void **state)
{
    (void)state;
    xf_repl *r = ready();
    const char *o = tu_cmd(r, "topk 3", 0);
    assert_non_null(strstr(o, "      286 ' of'                logit 11.3785"));
    assert_non_null(strstr(o, "       11 ','                  logit"));
    o = tu_cmd(r, "topk 0", 1);
    assert_non_null(strstr(o, "topk: K must be 1..1000 (got 0)"));
    assert_null(strstr(o, "no tensor named"));
    repl_free(r);
}

static void test_names(void **state)
{
    (void)state;
    xf_repl *r = ready();
    const char *o = tu_cmd(r, "print blk.2.fnn_act", 1);
    assert_non_null(strstr(o, "did you mean blk.2.ffn_act?"));
    o = tu_cmd(r, "print blk.7.out", 1);
    assert_non_null(strstr(o, "this model has layers 0..5"));
    o = tu_cmd(r, "stats blk.0.attn_qkv.weigth", 1);
    assert_non_null(strstr(o, "did you mean blk.0.attn_qkv.weight?"));
    o = tu_cmd(r, "print @cpu", 1);
    assert_non_null(strstr(o, "names no tensor"));
    repl_free(r);
}

static void test_ref_other_prompt(void **state)
{
    (void)state;
    char mp[1024], rp[1024], line[1200];
    xf_repl *r = tu_repl_new();
    tu_repl_load(r, tu_src_path(mp, sizeof mp, TU_MODEL));
    snprintf(line, sizeof line, "ref load %s", tu_src_path(rp, sizeof rp, TU_MODEL_REF));
    tu_cmd(r, line, 0);
    /* as long as the reference's prompt, two tokens differ */
    tu_cmd(r, "run --tokens 15496,612,25,198,2061,1657,832,331,8623,4324", 0);
    tu_cmd(r, "finish", 0);
    const char *o = tu_cmd(r, "compare", 0);
    /* the warning comes first, before any row blames embd */
    assert_non_null(strstr(o, "warning: the reference was made from other tokens"));
    assert_true(strstr(o, "warning:") < strstr(o, "embd"));
    assert_non_null(strstr(o, "this pass                10 tokens: 15496 612 25"));
    o = tu_cmd(r, "diff embd @ref", 0);
    assert_non_null(strstr(o, "warning: the reference was made from other tokens"));
    /* the same prompt: no warning */
    tu_cmd(r, PROMPT, 0);
    tu_cmd(r, "finish", 0);
    o = tu_cmd(r, "compare", 0);
    assert_null(strstr(o, "warning"));
    repl_free(r);
}

static void test_tables_80_columns(void **state)
{
    (void)state;
    char mp[1024], rp[1024], line[1200];
    xf_repl *r = ready();
    snprintf(line, sizeof line, "ref load %s", tu_src_path(rp, sizeof rp, TU_MODEL_REF));
    (void)mp;
    tu_cmd(r, line, 0);
    const char *cmds[] = {"compare",
                          "lens",
                          "lens 10 3",
                          "topk 10",
                          "stats blk.3.out --hist",
                          "print blk.2.kq_soft --heat",
                          "print blk.2.kq_soft[1] --heat",
                          "print blk.0.ffn_up",
                          "print blk.0.q",
                          "print logits",
                          "diff logits @ref",
                          "quant blk.0.attn_qkv.weight 3 1"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        const char *o = tu_cmd(r, cmds[i], 0);
        if (widest(o) > 80)
            fail_msg("'%s' is %d columns wide:\n%s", cmds[i], widest(o), o);
    }
    repl_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matrix_rows),          cmocka_unit_test(test_matrix_n_budget),
        cmocka_unit_test(test_logits_last_position), cmocka_unit_test(test_diff_indices),
        cmocka_unit_test(test_empty_and_huge),       cmocka_unit_test(test_quant_f16),
        cmocka_unit_test(test_topk_quoted),          cmocka_unit_test(test_names),
        cmocka_unit_test(test_ref_other_prompt),     cmocka_unit_test(test_tables_80_columns),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    tu_cmd_free();
    return rc;
}
