/* Lua binding tests, the limits: the time limit, Ctrl-C (in code, in
 * xf.generate and in xf.cmd("generate")) and the memory cap stop runaway
 * code and leave the shell usable; no control byte of Lua text reaches the
 * terminal; scripts that are FIFOs or not Lua neither hang nor have their
 * content printed. The fixture is tests/lua_util.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include "exec.h"
#include "lua_api.h"
#include "refdump.h"
#include "repl.h"
#include "commands.h"
#include "run.h"
#include "view.h"
#include "record.h"
#include "sessions.h"
#include "tensor.h"
#include "testutil.h"

#include "lua_util.h"

static void test_time_limit(void **state)
{
    tl *t = *state;
    t->r->lua_timeout = 0.5;
    double t0 = now_s();
    assert_has(cmd(t, 1, "lua while true do end"), "time limit of 0.5 s exceeded");
    double dt = now_s() - t0;
    assert_true(dt >= 0.45 && dt < 1.0);
    /* pcall cannot swallow it */
    t0 = now_s();
    assert_has(cmd(t, 1, "lua while true do pcall(function() while true do end end) end"), "time limit");
    assert_true(now_s() - t0 < 1.0);
    t0 = now_s();
    assert_has(cmd(t, 1, "lua while true do coroutine.resume(coroutine.create(function() while true do end end)) end"),
               "time limit");
    assert_true(now_s() - t0 < 1.0);
    /* a runaway breakpoint predicate, started from `continue` at the prompt */
    cmd(t, 0, "run " PROMPT);
    cmd(t, 0, "lua xf.brk('blk.0.attn_norm', function() while true do end end)");
    t0 = now_s();
    assert_has(cmd(t, 1, "continue"), "time limit");
    assert_true(now_s() - t0 < 1.0);
    cmd(t, 0, "delete");
    /* and an on_op hook started from Lua */
    cmd(t, 0, "run " PROMPT);
    t0 = now_s();
    assert_has(cmd(t, 1, "lua xf.on_op(function() while true do end end) xf.continue()"), "time limit");
    assert_true(now_s() - t0 < 1.0);
    cmd(t, 0, "lua xf.on_op(nil)");
    /* the shell goes on; each top-level call gets the full limit again */
    assert_string_equal(cmd(t, 0, "lua 6 * 7"), "42\n");
    /* a chunk's return prints too, as in lua(1) (it printed nothing, session 26) */
    assert_string_equal(cmd(t, 0, "lua local x = 6; return x * 7, 'y'"), "42\ty\n");
    assert_string_equal(cmd(t, 0, "lua local x = 6"), "");
    assert_has(cmd(t, 0, "where"), "pass 2");
}

static void *raise_interrupt(void *arg)
{
    xf_repl *r = arg;
    struct timespec d = {0, 200 * 1000 * 1000};
    nanosleep(&d, NULL);
    r->interrupt = 1;
    return NULL;
}

static void test_interrupt(void **state)
{
    tl *t = *state;
    t->r->lua_timeout = 30;
    pthread_t th;
    double t0 = now_s();
    assert_int_equal(pthread_create(&th, NULL, raise_interrupt, t->r), 0);
    assert_has(cmd(t, 1, "lua while true do end"), "interrupted (Ctrl-C)");
    double dt = now_s() - t0;
    pthread_join(th, NULL);
    assert_true(dt >= 0.15 && dt < 1.0);
    assert_int_equal(t->r->interrupt, 0);
    /* inside a predicate called from Lua */
    cmd(t, 0, "run " PROMPT);
    t0 = now_s();
    assert_int_equal(pthread_create(&th, NULL, raise_interrupt, t->r), 0);
    assert_has(cmd(t, 1, "lua xf.brk('embd', function() while true do end end) xf.continue()"), "interrupted");
    pthread_join(th, NULL);
    assert_true(now_s() - t0 < 1.0);
    assert_string_equal(cmd(t, 0, "lua 1 + 1"), "2\n");
}

/* issue 15: Ctrl-C in xf.generate stops the script as it does in
 * xf.continue; a pcall does not swallow it and the script does not go on */
static void test_interrupt_generate(void **state)
{
    tl *t = *state;
    t->r->lua_timeout = 30;
    cmd(t, 0, "kernel all ref"); /* slow: the interrupt comes mid-generation */
    cmd(t, 0, "run " PROMPT);
    pthread_t th;
    double t0 = now_s();
    assert_int_equal(pthread_create(&th, NULL, raise_interrupt, t->r), 0);
    const char *o = cmd(t, 1, "lua local ok = pcall(xf.generate, 100000); print('went on')");
    pthread_join(th, NULL);
    assert_has(o, "interrupted (Ctrl-C)");
    assert_null(strstr(o, "went on"));
    assert_true(now_s() - t0 < 5.0);
    cmd(t, 0, "kernel all opt");
    assert_has(cmd(t, 0, "lua local ids = xf.generate(2); print(#ids)"), "2");
}

/* The same through xf.cmd: the generation pauses at Ctrl-C ("stopped at
 * token K of N"), and the script stops too, as with xf.generate. */
static void test_interrupt_cmd_generate(void **state)
{
    tl *t = *state;
    t->r->lua_timeout = 30;
    cmd(t, 0, "kernel all ref");
    cmd(t, 0, "run " PROMPT);
    pthread_t th;
    double t0 = now_s();
    assert_int_equal(pthread_create(&th, NULL, raise_interrupt, t->r), 0);
    const char *o = cmd(t, 1, "lua xf.cmd('generate 100000 --ignore-eos'); print('went on')");
    pthread_join(th, NULL);
    assert_has(o, "interrupted (Ctrl-C)");
    assert_null(strstr(o, "went on"));
    assert_true(now_s() - t0 < 5.0);
    cmd(t, 0, "kernel all opt");
    assert_has(cmd(t, 0, "lua local ids = xf.generate(2); print(#ids)"), "2");
}

static void test_memory_cap(void **state)
{
    tl *t = *state;
    t->r->lua_timeout = 30;
    assert_has(cmd(t, 1, "lua local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1 << 20) .. i end"),
               "not enough memory");
    size_t cap, used = repl_lua_mem_used(t->r, &cap);
    assert_int_equal(cap, (size_t)256 << 20);
    assert_true(used > 0 && used <= cap);
    /* the shell survives, and so does the state */
    assert_string_equal(cmd(t, 0, "lua print(1 + 1)"), "2\n");
    cmd(t, 0, "run " PROMPT);
    assert_has(cmd(t, 0, "where"), "pass 1");
    assert_string_equal(cmd(t, 0, "lua #xf.tokenize('hello')"), "1\n");
    /* snapshots count against the cap */
    assert_has(cmd(t, 1, "lua xf.tensor('token_embd.weight'):values(1) local a = {} for i = 1, 40 do "
                         "a[i] = xf.tensor('token_embd.weight') end"),
               "not enough memory");
    assert_string_equal(cmd(t, 0, "lua 'alive'"), "alive\n");
}

/* --- 3. bisect.lua finds the wrong variant ------------------------------------------ */

/* fails unless out holds no ESC, no other C0 byte but \n and \t, and no C1
 * character (U+0080..U+009F, e.g. U+009B, the one-byte CSI) */
static void assert_no_controls(const char *what, const char *out)
{
    for (const unsigned char *p = (const unsigned char *)out; *p; p++) {
        bool c0 = (*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f;
        bool c1 = *p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f;
        if (c0 || c1)
            fail_msg("`%s`: raw control byte 0x%02x at offset %d of:\n%s", what, c1 ? p[1] : *p,
                     (int)((const char *)p - out), out);
    }
}

static void test_escape_controls(void **state)
{
    tl *t = *state;
    static const struct {
        int rc;
        const char *line;
        const char *want; /* in the output, escaped */
    } k[] = {
        /* values of expressions: a string, a string in a table, xf.show, tostring */
        {0, "lua \"\\27[31mX\"", "\\x1b[31mX"},
        {0, "lua 'a', '\\27]0;title\\7'", "\\x1b]0;title\\x07"},
        {0, "lua {'\\u{9b}31m', k = '\\27[2J'}", "\\x9b31m"},
        {0, "lua xf.show('\\27[31m', 1)", "\\x1b[31m\t1"},
        {0, "lua tostring(setmetatable({}, {__tostring = function() return '\\27[5m' end}))", "\\x1b[5m"},
        {0, "lua ('\\128\\27'):rep(2)", "\\x80\\x1b\\x80\\x1b"},
        {0, "lua xf.cmd('lua \"\\\\27[31m\"')", "\\x1b[31m"},
        /* print, as before */
        {0, "lua print('\\27[31m', {})", "\\x1b[31m\ttable: "},
        /* error messages, multi-line ones, error objects, traceback lines */
        {1, "lua error('\\27[31mboom')", "boom"},
        {1, "lua error('a\\n\\27[31mb\\n\\27[0m')", "\\x1b[31mb"},
        {1, "lua error(setmetatable({}, {__tostring = function() return '\\27[2J' end}))", "\\x1b[2J"},
        {1, "lua local t = {} t['\\27[31m'] = function() error('x') end t['\\27[31m']()", "in field '\\x1b[31m'"},
        {1, "lua x = '\\27[31m' +", "error: lua:1: unexpected symbol near <eof>"},
        /* a breakpoint condition that fails, and one that does not compile */
        {0, "lua xf.run('hi') xf.brk('embd', function() error('\\27[31mcond') end)", ""},
        {1, "continue", "lua breakpoint condition: "},
        {1, "break embd if \"\\27[31m\" ..", "not a Lua expression"},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        const char *o = cmd(t, k[i].rc, "%s", k[i].line);
        assert_no_controls(k[i].line, o);
        assert_has(o, k[i].want);
    }
    /* the model's own name (a GGUF string), as a script would show it */
    assert_no_controls("xf.model().name", cmd(t, 0, "lua xf.model().name .. '\\27'"));
}

/* --- 6. script files: FIFOs refused, errors never echo the file (issue 14 items 15, 7) */

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* the longest run of c in s */
static size_t longest_run(const char *s, char c)
{
    size_t best = 0, n = 0;
    for (; *s; s++) {
        n = *s == c ? n + 1 : 0;
        best = n > best ? n : best;
    }
    return best;
}

static void test_script_not_regular(void **state)
{
    tl *t = *state;
    char fifo[1024];
    tu_tmp_path(fifo, sizeof fifo, ".lua");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    alarm(20); /* a blocking open or read ends the test process instead of hanging ctest */
    const char *o = cmd(t, 1, "source %s", fifo);
    assert_has(o, fifo);
    assert_has(o, "not a regular file");
    assert_int_equal(count_lines(o), 1);
    assert_has(cmd(t, 1, "lua xf.load('%s')", fifo), "not a regular file");
    assert_has(cmd(t, 1, "lua xf.ref_load('%s')", fifo), "not a regular file");
    clear(t);
    assert_int_equal(repl_run_script(t->r, fifo, 0, NULL), 1);
    assert_has(text(t), "not a regular file");
    /* a directory is no script either */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", fifo);
    *strrchr(dir, '/') = '\0';
    assert_has(cmd(t, 1, "source %s", dir), "not a regular file");
    alarm(0);
    unlink(fifo);
    /* the model is still there */
    assert_string_equal(cmd(t, 0, "lua xf.model().arch"), "gpt2\n");
}

static void test_script_errors_bounded(void **state)
{
    tl *t = *state;
    char p[1024], big[4096];
    tu_tmp_path(p, sizeof p, ".txt");
    /* text that is not Lua: one short message naming file and line */
    const char passwd[] = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n";
    write_file(p, passwd, sizeof passwd - 1);
    const char *o = cmd(t, 1, "source %s", p);
    assert_int_equal(count_lines(o), 1);
    assert_has(o, ":1: ");
    assert_true(strstr(o, "/bin/bash") == NULL && strstr(o, "daemon") == NULL);
    /* an unfinished string: Lua quotes the rest of the line */
    size_t n = (size_t)snprintf(big, sizeof big, "x = \"");
    memset(big + n, 'a', 3000);
    memcpy(big + n + 3000, "\nsecond line\n", 13);
    write_file(p, big, n + 3013);
    o = cmd(t, 1, "source %s", p);
    assert_has(o, "unfinished string near '\"aaa");
    assert_true(longest_run(o, 'a') <= 32);
    assert_true(strstr(o, "second line") == NULL);
    /* a long numeral, a long name */
    n = (size_t)snprintf(big, sizeof big, "x = 1 ");
    memset(big + n, '7', 3000);
    write_file(p, big, n + 3000);
    o = cmd(t, 1, "source %s", p);
    assert_has(o, ":1: unexpected symbol near '777");
    assert_true(longest_run(o, '7') <= 32);
    n = (size_t)snprintf(big, sizeof big, "local x <");
    memset(big + n, 'b', 3000);
    memcpy(big + n + 3000, "> = 1", 5);
    write_file(p, big, n + 3005);
    o = cmd(t, 1, "source %s", p);
    assert_has(o, ":1: unknown attribute 'bbb");
    assert_true(longest_run(o, 'b') <= 128);
    /* what luaL_loadfile did stays: a #! line is skipped, line numbers kept; no bytecode */
    const char sheb[] = "#!/usr/bin/env xfdb --script\nprint(arg[1])\nerror('at three')\n";
    write_file(p, sheb, sizeof sheb - 1);
    o = cmd(t, 1, "source %s hi", p);
    assert_true(strncmp(o, "hi\nerror: ", 10) == 0);
    assert_has(o, ":3: at three");
    write_file(p, "\xEF\xBB\xBFprint('bom')\n", 16);
    assert_string_equal(cmd(t, 0, "source %s", p), "bom\n");
    write_file(p, "\x1bLua\x54\x00", 6);
    assert_has(cmd(t, 1, "source %s", p), "attempt to load a binary chunk (mode is 't')");
    write_file(p, "", 0);
    assert_string_equal(cmd(t, 0, "source %s", p), "");
    unlink(p);
    /* code typed at `lua` is quoted as Lua quotes it */
    assert_has(cmd(t, 1, "lua x = 1 %.*s", 40, "7777777777777777777777777777777777777777777777"),
               "near '7777777777777777777777777777777777777777'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_time_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupt_generate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupt_cmd_generate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escape_controls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_script_not_regular, setup, teardown),
        cmocka_unit_test_setup_teardown(test_script_errors_bounded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
