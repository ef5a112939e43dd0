/* The one line splitter (repl/cmdline.h) and the command table's flags
 * (issue 12): word rules, comments, CR/LF/NUL and open quotes as errors,
 * unknown commands with a suggestion, a parsed line runs what was checked,
 * no size limits (run --tokens with thousands of ids), and every property
 * of a command read from its table row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cmdline.h"
#include "commands.h"
#include "repl.h"
#include "commands.h"
#include "run.h"
#include "view.h"
#include "record.h"
#include "sessions.h"
#include "testutil.h"

static int parse(const char *line, size_t len, repl_line *l, char *why)
{
    return repl_line_parse(line, len, l, why, 256);
}

static void test_words(void **state)
{
    (void)state;
    repl_line l;
    char why[256];
    const char *line = "  print blk.2.ffn_act[3, :5] -n \"a b\"  ";
    assert_int_equal(parse(line, strlen(line), &l, why), 0);
    assert_non_null(l.cmd);
    assert_string_equal(l.cmd->name, "print");
    assert_int_equal(l.argc, 4);
    assert_string_equal(l.argv[0], "print");
    assert_string_equal(l.argv[1], "blk.2.ffn_act[3, :5]");
    assert_string_equal(l.argv[2], "-n");
    assert_string_equal(l.argv[3], "\"a b\""); /* quotes kept: TEXT arguments unescape them */
    assert_null(l.argv[4]);
    assert_string_equal(l.rest, " blk.2.ffn_act[3, :5] -n \"a b\"  ");
    repl_line_free(&l);
    /* an alias finds its command; an escaped quote stays inside the string */
    line = "p \"x\\\" y\"";
    assert_int_equal(parse(line, strlen(line), &l, why), 0);
    assert_string_equal(l.cmd->name, "print");
    assert_int_equal(l.argc, 2);
    repl_line_free(&l);
    /* blank and comment lines: nothing to run */
    assert_int_equal(parse(" \t", 2, &l, why), 0);
    assert_null(l.cmd);
    assert_int_equal(parse("# run it", 8, &l, why), 0);
    assert_null(l.cmd);
    repl_line_free(&l);
    /* only len bytes are read */
    assert_int_equal(parse("step 3 junk", 6, &l, why), 0);
    assert_int_equal(l.argc, 2);
    assert_string_equal(l.argv[1], "3");
    repl_line_free(&l);
}

static void test_errors(void **state)
{
    (void)state;
    repl_line l;
    char why[256];
    assert_int_equal(parse("dump all a\nrecord b", 19, &l, why), -1);
    assert_non_null(strstr(why, "line break"));
    assert_null(l.cmd);
    assert_int_equal(parse("step\r", 5, &l, why), -1);
    assert_int_equal(parse("tokenize a\0dump all x", 21, &l, why), -1);
    assert_non_null(strstr(why, "NUL"));
    assert_int_equal(parse("tokenize \"abc", 13, &l, why), -1);
    assert_non_null(strstr(why, "missing closing quote"));
    /* Lua code has quotes of its own: `lua` takes its rest as typed */
    assert_int_equal(parse("lua print('\"')", 14, &l, why), 0);
    assert_string_equal(l.cmd->name, "lua");
    assert_string_equal(l.rest, " print('\"')");
    repl_line_free(&l);
    assert_int_equal(parse("\"lua", 4, &l, why), -1); /* the command word itself must balance */
    assert_int_equal(parse("prnt x", 6, &l, why), -1);
    assert_string_equal(why, "unknown command 'prnt'; did you mean 'print'? (help lists commands)");
    assert_int_equal(parse("\x1b[2Jzz", 6, &l, why), -1);
    assert_null(strchr(why, '\x1b')); /* escaped for the terminal */
    repl_line_free(&l);                /* harmless after a failure */
}

/* the table is the one source of what a command is */
static void test_flags(void **state)
{
    (void)state;
    struct {
        const char *name;
        unsigned want, not;
    } cases[] = {
        {"dump", CMD_WRITES_FILES, CMD_NOT_RECORDED},
        {"record", CMD_WRITES_FILES | CMD_NOT_RECORDED, 0},
        {"quit", CMD_NOT_RECORDED, CMD_WRITES_FILES},
        {"load", CMD_READS_FILES, CMD_WRITES_FILES},
        {"ref", CMD_READS_FILES, CMD_WRITES_FILES},
        {"source", CMD_READS_FILES, CMD_WRITES_FILES},
        {"profile", CMD_OUTPUT_VARIES, 0},
        {"bench", CMD_OUTPUT_VARIES, 0},
        {"print", 0, CMD_OUTPUT_VARIES | CMD_WRITES_FILES | CMD_READS_FILES | CMD_NOT_RECORDED},
        {"step", CMD_REPEATS, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const xf_command *c = commands_find(cases[i].name);
        assert_non_null(c);
        if ((c->flags & cases[i].want) != cases[i].want || (c->flags & cases[i].not))
            fail_msg("%s: flags 0x%x", cases[i].name, c->flags);
    }
    size_t n;
    const xf_command *t = commands_table(&n);
    for (size_t i = 0; i < n; i++)
        assert_non_null(t[i].fn); /* every command is part of every build */
}

/* repl_exec_parsed runs exactly the line that was checked; a line with a
 * line break in it runs nothing */
static void test_exec(void **state)
{
    (void)state;
    char mp[1024];
    xf_repl *r = tu_repl_new();
    assert_non_null(r);
    tu_repl_load(r, tu_src_path(mp, sizeof mp, TU_MODEL));
    repl_line l;
    char why[256];
    assert_int_equal(parse("tokenize --ids hi", 17, &l, why), 0);
    assert_false(l.cmd->flags & CMD_WRITES_FILES);
    xf_strbuf out = {0};
    r->io.capture = &out;
    assert_int_equal(repl_exec_parsed(r, &l), 0);
    r->io.capture = NULL;
    assert_string_equal(out.s, "5303\n");
    repl_line_free(&l);
    sb_free(&out);
    const char *o = tu_cmd(r, "tokenize --ids hi\ntokenize --ids ho", 1);
    assert_null(strstr(o, "5303"));
    assert_non_null(strstr(o, "line break"));
    /* a line end at the very end is what a reader leaves: it runs */
    assert_string_equal(tu_cmd(r, "tokenize --ids hi\r\n", 0), "5303\n");
    repl_free(r);
    tu_cmd_free();
}

/* no fixed-size buffers: 256 ids written with leading zeros (more than the
 * 4096 bytes that used to cut the list) run; 5000 ids all reach the engine */
static void test_long_lines(void **state)
{
    (void)state;
    char mp[1024];
    xf_repl *r = tu_repl_new();
    assert_non_null(r);
    tu_repl_load(r, tu_src_path(mp, sizeof mp, TU_MODEL));
    xf_strbuf line = {0};
    sb_printf(&line, "run --tokens");
    for (int i = 0; i < 256; i++)
        sb_printf(&line, " %020d", 100 + i);
    assert_true(line.len > 5000);
    const char *o = tu_cmd(r, line.s, 0);
    assert_non_null(strstr(o, "256 tokens at position 0"));
    sb_free(&line);
    sb_printf(&line, "run --tokens ");
    for (int i = 0; i < 5000; i++)
        sb_printf(&line, "%s%d", i ? "," : "", i % 50000);
    o = tu_cmd(r, line.s, 1); /* the context has 256 positions */
    assert_non_null(strstr(o, "5000"));
    sb_free(&line);
    /* a breakpoint condition of any length reaches the engine whole: cut
     * anywhere (it used to be at 511 bytes), this Lua expression does not parse */
    sb_printf(&line, "break logits if 0");
    for (int i = 0; i < 300; i++)
        sb_printf(&line, " + 0");
    sb_printf(&line, " == 1");
    tu_cmd(r, line.s, 0);
    sb_free(&line);
    repl_free(r);
    tu_cmd_free();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_words),  cmocka_unit_test(test_errors),     cmocka_unit_test(test_flags),
        cmocka_unit_test(test_exec),   cmocka_unit_test(test_long_lines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
