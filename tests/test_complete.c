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

int main(void)
{
    char path[1024];
    g_r = tu_repl_new();
    tu_repl_load(g_r, tu_src_path(path, sizeof path, TU_MODEL));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_variants),
        cmocka_unit_test(test_sub_words_and_aliases),
        cmocka_unit_test(test_break_offers_activations),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    repl_free(g_r);
    tu_cmd_free();
    return rc;
}
