/* Issue 15: the pieces printing is made of, tested alone: display width of
 * UTF-8 (CJK takes two columns, so a column of pieces stays aligned),
 * pr_fit, quoting of pieces (' \n' and '\n' differ), the numpy-like cell
 * format, and multi-dimensional indices of flat ones (diff's [9, 0]). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "repl.h"
#include "tensor.h"

static void test_display_width(void **state)
{
    (void)state;
    assert_int_equal(pr_display_width("abc", 3), 3);
    const char *cjk = "\xe6\x97\xa5\xe6\x9c\xac"; /* 日本 */
    assert_int_equal(pr_display_width(cjk, strlen(cjk)), 4);
    const char *e = "e\xcc\x81"; /* e + combining acute */
    assert_int_equal(pr_display_width(e, strlen(e)), 1);
}

static void test_fit_keeps_columns(void **state)
{
    (void)state;
    char a[64], b[64];
    /* a CJK piece and an ASCII one padded to the same display width */
    pr_fit(a, sizeof a, "'\xe6\x97\xa5\xe6\x9c\xac'", 10, false);
    pr_fit(b, sizeof b, "' of'", 10, false);
    assert_int_equal(pr_display_width(a, strlen(a)), 10);
    assert_int_equal(pr_display_width(b, strlen(b)), 10);
    assert_string_equal(b, "' of'     ");
    /* cut with a mark, never inside a character */
    pr_fit(a, sizeof a, "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", 5, false);
    assert_string_equal(a, "\xe6\x97\xa5\xe6\x9c\xac~");
    pr_fit(a, sizeof a, "abcdefgh", 5, true);
    assert_string_equal(a, "abcd~");
    pr_fit(a, sizeof a, "ab", 5, true);
    assert_string_equal(a, "   ab");
}

static void test_quote(void **state)
{
    (void)state;
    char a[64], b[64], c[64];
    pr_quote(a, sizeof a, " \n", 2);
    pr_quote(b, sizeof b, "\n", 1);
    pr_quote(c, sizeof c, "it's\x1b", 5);
    assert_string_equal(a, "' \\n'");
    assert_string_equal(b, "'\\n'");
    assert_string_equal(c, "'it\\'s\\x1B'");
}

static void test_cells(void **state)
{
    (void)state;
    pr_cellfmt f;
    float v[] = {1.0f, 0.0824f, -0.5f, 0};
    pr_cellfmt_choose(&f, v, 4);
    char b[32];
    pr_cell(b, sizeof b, v[1], &f);
    assert_string_equal(b, "0.0824");
    assert_int_equal(f.width, 7);
    float w[] = {1e-6f, 2e-5f};
    pr_cellfmt_choose(&f, w, 2);
    pr_cell(b, sizeof b, w[0], &f);
    assert_string_equal(b, "1.000e-06");
    pr_cell(b, sizeof b, NAN, &f);
    assert_string_equal(b, "nan");
}

static void test_indices(void **state)
{
    (void)state;
    char b[64];
    int64_t sh[2] = {10, 192}, sh3[3] = {6, 10, 10};
    pr_index(b, sizeof b, 1728, 2, sh);
    assert_string_equal(b, "[9, 0]");
    pr_index(b, sizeof b, 599, 3, sh3);
    assert_string_equal(b, "[5, 9, 9]");
    /* the worst elements, largest first; a NaN mismatch above every number */
    float a[6] = {0, 1, 2, 3, 4, 5}, r[6] = {0, 1.5f, 2, 3.1f, NAN, 5};
    int64_t out[4];
    assert_int_equal(tensor_worst(a, r, 6, out, 4), 3);
    assert_int_equal(out[0], 4);
    assert_int_equal(out[1], 1);
    assert_int_equal(out[2], 3);
    xf_diff d;
    tensor_diff(a, r, 6, 0.2, &d);
    assert_int_equal(d.first_over, 1);
    assert_int_equal(d.worst, 4);
    float x[3] = {1, 2, 3};
    tensor_diff(x, x, 3, 0, &d);
    assert_int_equal(d.worst, -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_display_width), cmocka_unit_test(test_fit_keeps_columns),
        cmocka_unit_test(test_quote),         cmocka_unit_test(test_cells),
        cmocka_unit_test(test_indices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
