/* complete_line (issue 15): what Tab offers for each kind of word, without
 * a terminal (tests/test_pty.c presses Tab in one). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "complete.h"
#include "repl.h"
#include "testutil.h"

static xf_repl *g_r;

/* the candidates for the last word of line, joined by blanks */
static const char *cands(const char *line, bool *files)
{
    static char out[8192];
    const char *sp = strrchr(line, ' ');
    size_t start = sp ? (size_t)(sp - line + 1) : 0;
    bool f = false;
    char **v = complete_line(g_r, line, start, line + start, &f);
    out[0] = 0;
    for (int i = 0; v && v[i]; i++) {
        strncat(out, v[i], sizeof out - strlen(out) - 2);
        strcat(out, " ");
    }
    complete_free(v);
    if (files)
        *files = f;
    return out;
}

static bool has(const char *list, const char *w)
{
    char pat[256];
    snprintf(pat, sizeof pat, " %s ", w);
    char buf[8200];
    snprintf(buf, sizeof buf, " %s", list);
    return strstr(buf, pat) != NULL;
}

static void test_kernel_variants(void **state)
{
    (void)state;
    const char *c = cands("kernel norm ", NULL);
    assert_true(has(c, "ref") && has(c, "opt"));
    assert_false(has(c, "matmul"));
    c = cands("kernel ", NULL);
    assert_true(has(c, "matmul") && has(c, "all"));
    assert_true(has(cands("kernel all ", NULL), "ref"));
}

static void test_sub_words_and_aliases(void **state)
{
    (void)state;
    const char *c = cands("info ", NULL);
    assert_true(has(c, "model") && has(c, "breaks"));
    c = cands("check ", NULL);
    assert_true(has(c, "on") && has(c, "off") && has(c, "break") && has(c, "pass"));
    c = cands("gen", NULL);
    assert_true(has(c, "generate") && has(c, "gen"));
    assert_true(has(cands("con", NULL), "cont"));
    assert_true(has(cands("help ge", NULL), "gen"));
    c = cands("generate 5 --t", NULL);
    assert_true(has(c, "--temp") && has(c, "--top-k") && has(c, "--top-p"));
    bool files = false;
    assert_true(has(cands("ref ", &files), "load"));
    assert_false(files);
    cands("ref load ", &files);
    assert_true(files);
}

static void test_break_offers_activations(void **state)
{
    (void)state;
    const char *c = cands("break blk.1.", NULL);
    assert_true(has(c, "blk.1.ffn_act"));
    assert_null(strstr(c, ".weight"));
    /* print takes weights too */
    assert_non_null(strstr(cands("print blk.1.", NULL), "blk.1.attn_qkv.weight"));
    c = cands("quant blk.1.", NULL);
    assert_non_null(strstr(c, ".weight"));
    assert_false(has(c, "blk.1.ffn_act"));
}

/* attack26 T9: NAME@ completes to where a name can be read from */
static void test_at_sources(void **state)
{
    (void)state;
    char path[1024], line[1200];
    const char *c = cands("print blk.2.out@", NULL);
    assert_true(has(c, "blk.2.out@cpu"));
    assert_false(has(c, "blk.2.out@ref")); /* no reference loaded */
    assert_null(strstr(c, "blk.1."));
    snprintf(line, sizeof line, "ref load %s", tu_src_path(path, sizeof path, TU_MODEL_REF));
    tu_cmd(g_r, line, 0);
    tu_cmd(g_r, "keep blk.*.out", 0);
    tu_cmd(g_r, "run --tokens 1,2", 0);
    tu_cmd(g_r, "finish", 0);
    tu_cmd(g_r, "run --tokens 1,2", 0);
    c = cands("diff blk.2.out blk.2.out@", NULL);
    assert_true(has(c, "blk.2.out@ref") && has(c, "blk.2.out@cpu") && has(c, "blk.2.out@pass-1"));
    assert_true(has(cands("print blk.2.out@p", NULL), "blk.2.out@pass-1"));
    assert_string_equal(cands("print blk.2.out@r", NULL), "blk.2.out@ref ");
    /* diff's B alone: @ref or @cpu (A's); nowhere else */
    c = cands("diff blk.2.out @", NULL);
    assert_true(has(c, "@ref") && has(c, "@cpu"));
    assert_false(has(c, "@pass-1"));
    assert_string_equal(cands("print @", NULL), "");
    /* sources only after a name of the pass: not after a typo or a weight; an alias takes them */
    assert_string_equal(cands("print blk.2.ou@", NULL), "");
    assert_string_equal(cands("print blk.1.attn_qkv.weight@", NULL), "");
    assert_true(has(cands("print l_out-2@", NULL), "l_out-2@cpu"));
    /* set NAME <Tab>: the `=`, then names again (it offered names where `=` goes) */
    assert_string_equal(cands("set blk.2.out ", NULL), "= ");
    assert_true(has(cands("set blk.2.out = blk.2.o", NULL), "blk.2.out"));
}

/* attack26 T9: record's `stop`, and the commands that take tensor names */
static void test_files_and_names(void **state)
{
    (void)state;
    bool files = false;
    assert_true(has(cands("record ", &files), "stop"));
    assert_true(files);
    cands("record stop ", &files);
    assert_false(files);
    const char *c = cands("ablate blk.2.", NULL);
    assert_true(has(c, "blk.2.head") && has(c, "blk.2.ffn"));
    c = cands("ablate blk.2.head ", NULL);
    assert_true(has(c, "0") && has(c, "5"));
    assert_string_equal(cands("ablate blk.2.ffn ", NULL), "");
    assert_true(has(cands("patch blk.2.o", &files), "blk.2.out"));
    assert_false(files);
    assert_string_equal(cands("patch blk.2.out ", &files), "from ");
    assert_false(files);
    cands("patch blk.2.out from ", &files);
    assert_true(files);
    c = cands("dump ", &files);
    assert_true(has(c, "all") && has(c, "blk.2.out"));
    assert_null(strstr(c, ".weight"));
    assert_false(files);
    assert_true(has(cands("dump blk.2.out blk.3.o", &files), "blk.3.out"));
    assert_true(files); /* the last word may be the file */
    assert_string_equal(cands("dump all ", &files), "");
    assert_true(files);
}

int main(void)
{
    char path[1024];
    g_r = tu_repl_new();
    tu_repl_load(g_r, tu_src_path(path, sizeof path, TU_MODEL));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_variants),          cmocka_unit_test(test_sub_words_and_aliases),
        cmocka_unit_test(test_break_offers_activations), cmocka_unit_test(test_at_sources),
        cmocka_unit_test(test_files_and_names),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    repl_free(g_r);
    tu_cmd_free();
    return rc;
}
