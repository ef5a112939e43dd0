/* Sandboxed Lua scripts trying every indirect route out of the sandbox
 * (issue 9): bytecode, files, the process, output to the terminal, the
 * garbage collector at close and time limits inside C functions; the host
 * must go on, whatever a script tries. */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "malformed.h"

static xf_strbuf g_out;

#define cmd tu_cmd

/* --- Lua: sandbox escape attempts ------------------------------------------------- */

/* A sandboxed script (the default: no --unsafe-lua) must not reach the file
 * system, the process, the debug library or bytecode, must not outlive its
 * time limit, and must not crash or corrupt the host, whatever it tries.
 * test_lua.c checks that each disabled function says so; these are the
 * indirect routes. Each case: Lua code, the status wanted, a substring of
 * the output wanted. */
typedef struct lua_case {
    const char *code;
    int rc;
    const char *want;
} lua_case;

static xf_repl *lua_repl(char *path, size_t size, double timeout)
{
    xf_repl *r = tiny_repl(path, size);
    r->unsafe_lua = false;
    r->lua_timeout = timeout;
    return r;
}

static void run_lua_cases(xf_repl *r, const lua_case *cases, size_t n)
{
    char line[2048];
    for (size_t i = 0; i < n; i++) {
        snprintf(line, sizeof line, "lua %s", cases[i].code);
        int rc = tu_repl_run(r, line, &g_out);
        const char *o = g_out.s ? g_out.s : "";
        if (rc != cases[i].rc || !strstr(o, cases[i].want))
            fail_msg("lua %s\nreturned %d (want %d), output:\n%s\nwant: %s", cases[i].code, rc, cases[i].rc,
                     o, cases[i].want);
        /* and the host goes on */
        assert_string_equal(cmd(r, "lua 6 * 7", 0), "42\n");
    }
}

static void test_lua_escape_routes(void **state)
{
    (void)state;
    char mp[1024];
    xf_repl *r = lua_repl(mp, sizeof mp, 5);
    static const lua_case cases[] = {
        /* bytecode: string.dump by every name it has, load by every route */
        {"return ('').dump(print)", 1, "string.dump is disabled"},
        {"return getmetatable('').__index.dump(print)", 1, "string.dump is disabled"},
        {"return coroutine.wrap(string.dump)(print)", 1, "string.dump is disabled"},
        {"print(pcall(string.dump, print))", 0, "false\t"},
        {"return rawget(_G, 'load')('return 1')", 1, "load is disabled"},
        {"return _ENV.load('return 1')", 1, "load is disabled"},
        {"print(select(2, pcall(load, 'return 1')))", 0, "load is disabled"},
        /* the disabled libraries: their real tables cannot be reached */
        {"local e = setmetatable({}, {__index = _G}) local _ENV = e return io.write", 1,
         "io.write is disabled"},
        {"print(getmetatable(io), getmetatable(os), getmetatable(debug), getmetatable(package))", 0,
         "false\tfalse\tfalse\tfalse\n"},
        {"setmetatable(io, nil)", 1, "cannot change a protected metatable"},
        {"return debug.sethook()", 1, "debug.sethook is disabled"},
        {"return debug.getupvalue(print, 1)", 1, "debug.getupvalue is disabled"},
        {"return package.loaded.io", 1, "package.loaded is disabled"},
        {"return package.searchers[2]('io')", 1, "package.searchers is disabled"},
        {"return require('debug')", 1, "require is disabled"},
        {"for k in pairs(io) do print(k) end print('none')", 0, "none\n"},
        /* the process and the file system through os */
        {"os.exit(3)", 1, "os.exit is disabled"},
        {"os.remove('/tmp/x')", 1, "os.remove is disabled"},
        {"os.rename('/tmp/x', '/tmp/y')", 1, "os.rename is disabled"},
        {"return os.tmpname()", 1, "os.tmpname is disabled"},
        {"return os.setlocale('C')", 1, "os.setlocale is disabled"},
        {"return os.getenv('HOME')", 1, "os.getenv is disabled"},
        {"collectgarbage('generational')", 1, "is disabled in the sandbox"},
        {"collectgarbage('step', 1e9)", 1, "is disabled in the sandbox"},
        /* io objects via the chunk's varargs: there are none */
        {"print(select('#', ...))", 0, "0\n"},
        /* deep recursion through C: an error, not a crash */
        {"local function f() return coroutine.wrap(f)() end f()", 1, "error: lua:1: "},
        {"local function f() return f() + 1 end f()", 1, "stack overflow"},
        {"function rec(n) local a, b = xf.cmd('lua rec(' .. n + 1 .. ')') return a or b end print(rec(1))", 0,
         "nested too deeply"},
        /* the handle's methods with a foreign self */
        {"return getmetatable(xf.tensor('token_embd.weight')).__index.values('x')", 1, "bad argument"},
        {"return getmetatable(xf.tensor('token_embd.weight')).__len(io)", 1, "bad argument"},
        /* files the engine refuses */
        {"return xf.load('/dev/zero')", 1, "not a regular file"},
        {"return xf.ref_load('/proc/self/mem')", 1, "error"},
        /* C library limits */
        {"return string.rep('ab', math.maxinteger)", 1, "resulting string too large"},
        {"return string.unpack('s8', string.pack('j', math.maxinteger))", 1, "data string too short"},
        {"return table.move({}, 1, math.maxinteger, 2)", 1, "destination wrap around"},
        {"return table.concat({}, '', 1, math.maxinteger)", 1, "at index 1 in table for 'concat'"},
        {"return string.format('%99999d', 1)", 1, "invalid conversion"},
        /* the shared string metatable: the script can only hurt itself */
        {"getmetatable('').__index = function() error('boom') end return ('x'):upper()", 1, "boom"},
        {"getmetatable('').__index = string print(('x'):upper())", 0, "X\n"},
    };
    run_lua_cases(r, cases, sizeof cases / sizeof cases[0]);
    /* tokenizing, a pass and printing still work after all that */
    cmd(r, "tokenize hello", 0);
    cmd(r, "run --tokens 1,2", 0);
    cmd(r, "continue", 0);
    repl_free(r);
    sb_free(&g_out);
    unlink(mp);
}

/* precompiled Lua (the binary chunk of `return 1`) in a file, made with a
 * separate plain Lua state */
static int write_chunk(lua_State *L, const void *p, size_t n, void *ud)
{
    (void)L;
    return fwrite(p, 1, n, (FILE *)ud) == n ? 0 : 1;
}

static void test_lua_no_bytecode_by_source(void **state)
{
    (void)state;
    char mp[1024], bc[1024], line[1200];
    tu_tmp_path(bc, sizeof bc, ".lua");
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    assert_int_equal(luaL_loadstring(L, "print('bytecode ran') return 1"), LUA_OK);
    FILE *f = fopen(bc, "wb");
    assert_non_null(f);
    assert_int_equal(lua_dump(L, write_chunk, f, 0), 0);
    fclose(f);
    lua_close(L);
    xf_repl *r = lua_repl(mp, sizeof mp, 5);
    snprintf(line, sizeof line, "source %s", bc);
    const char *o = cmd(r, line, 1);
    assert_non_null(strstr(o, "attempt to load a binary chunk"));
    assert_null(strstr(o, "bytecode ran"));
    /* from Lua, `source` reads a file: refused in the sandbox (issue 14 item 7) */
    snprintf(line, sizeof line, "lua print(xf.cmd('source %s'))", bc);
    o = cmd(r, line, 0);
    assert_non_null(strstr(o, "reads files and is disabled in the sandbox"));
    assert_null(strstr(o, "bytecode ran"));
    repl_free(r);
    sb_free(&g_out);
    unlink(bc);
    unlink(mp);
}

/* KNOWN BUG B12 (h9 report): xf.cmd runs any REPL command, so a sandboxed
 * script writes files anywhere with `dump` and `record` ("no io" broken).
 * Fix in repl/lua_api.c xl_cmd: unless --unsafe-lua, refuse the commands
 * that write files (dump, record) with "... is disabled in the sandbox". */
static void test_bug_b12_lua_writes_files(void **state)
{
    (void)state;
    char mp[1024], out[1024], line[1400];
    xf_repl *r = lua_repl(mp, sizeof mp, 5);
    cmd(r, "run --tokens 1,2", 0);
    cmd(r, "continue", 0);
    const char *verbs[2][2] = {{"dump all", ".safetensors"}, {"record", ".xfs"}};
    for (int i = 0; i < 2; i++) {
        tu_tmp_path(out, sizeof out, verbs[i][1]);
        snprintf(line, sizeof line, "lua print(xf.cmd('%s %s'))", verbs[i][0], out);
        const char *o = cmd(r, line, 0);
        bool written = access(out, F_OK) == 0;
        unlink(out);
        if (written || !strstr(o, "disabled in the sandbox"))
            fail_msg("a sandboxed script ran `%s FILE`: %s; output: %s", verbs[i][0],
                     written ? "the file was written" : "not refused", o);
    }
    tu_repl_run(r, "record stop", &g_out); /* in case it started */
    repl_free(r);
    sb_free(&g_out);
    unlink(mp);
}

/* KNOWN BUG B13 (h9 report): print() from Lua writes its bytes raw, so a
 * script puts escape sequences on the terminal (scripts are untrusted,
 * DESIGN.md). Fix in repl/lua_api.c lx_print: escape control bytes but
 * '\t' and '\n' (tok_escape per line, as repl_generate does). */
static void test_bug_b13_lua_print_escaped(void **state)
{
    (void)state;
    char mp[1024];
    xf_repl *r = lua_repl(mp, sizeof mp, 5);
    const char *o = cmd(r, "lua print('a\\27[2Jb\\7c', '\\u{9b}31m')", 0);
    for (const char *c = o; *c; c++)
        if (((unsigned char)*c < 0x20 && *c != '\n' && *c != '\t') || *c == 0x7f ||
            ((unsigned char)c[0] == 0xc2 && (unsigned char)c[1] >= 0x80 && (unsigned char)c[1] <= 0x9f))
            fail_msg("lua print wrote control byte 0x%02x raw: %s", (unsigned char)*c, o);
    repl_free(r);
    sb_free(&g_out);
    unlink(mp);
}

/* KNOWN BUG B14 (h9 report): a __gc finalizer runs the xf module while the
 * Lua state is being closed (repl_free); what it runs leaks its output
 * buffers, and the REPL is half torn down. Fix in repl/lua_api.c: mark the
 * context closing in repl_lua_close before lua_close and make every xf
 * function refuse then. */
static void test_bug_b14_lua_gc_at_close(void **state)
{
    (void)state;
    char mp[1024];
    xf_repl *r = lua_repl(mp, sizeof mp, 5);
    cmd(r, "lua setmetatable({}, {__gc = function() print(xf.cmd('info') and 'xf ran at close') end})", 0);
    sb_free(&g_out);
    r->io.capture = &g_out;
    repl_free(r); /* the finalizer runs here */
    const char *o = g_out.s ? g_out.s : "";
    if (strstr(o, "xf ran at close"))
        fail_msg("a finalizer ran xf.cmd while the state was being closed: %s", o);
    sb_free(&g_out);
    unlink(mp);
}

/* runs `lua CODE` in a child with lua_timeout 0.5 s; how long it took, or
 * -1 when it was still running after `limit` seconds (then it is killed) */
static double lua_child_seconds(const char *code, int limit)
{
    char mp[1024], line[2048];
    tiny_spec s;
    gpt2(&s);
    tu_tmp_path(mp, sizeof mp, ".gguf");
    assert_int_equal(tiny_save(&s, mp), 0);
    snprintf(line, sizeof line, "lua %s", code);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm((unsigned)limit); /* the default action ends the child */
        xf_repl *r = repl_new();
        r->io.quiet = true;
        r->io.errf = NULL;
        r->io.out = NULL;
        r->lua_timeout = 0.5;
        r->backend_forced = true; /* cpu: starting CUDA would count against the time measured */
        if (repl_load(r, mp) != 0)
            _exit(2);
        repl_exec_line(r, line);
        repl_free(r);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    unlink(mp);
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
        return -1;
    /* 0: the time limit stopped it; 1: the watchdog ended a process that Lua
     * could not stop (a C function or a finalizer), with a message */
    assert_true(WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 1));
    return (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
}

/* KNOWN BUG B16 (h9 report): repl_lua_close runs lua_close with the time
 * limit of the last command long expired or switched off, and an endless
 * __gc finalizer keeps the program from ever exiting. Fix in
 * repl/lua_api.c repl_lua_close: restart the clock (lx_begin_outer) with
 * the hook in place before lua_close, so the finalizer is stopped too. */
static void test_bug_b16_lua_gc_loop_at_close(void **state)
{
    (void)state;
    /* a finalizer that never ends, run when the state closes after the
     * command's time limit has been reset */
    double dt = lua_child_seconds("setmetatable({}, {__gc = function() while true do end end})", 3);
    if (dt < 0)
        fail_msg("an endless __gc finalizer hangs the program at exit (still running after 3 s)");
}

/* KNOWN BUG B15 (h9 report): the time limit (and Ctrl-C) is enforced by a
 * count hook, which never runs inside a C function: a backtracking pattern
 * keeps string.find busy for hours. Fix in repl/lua_api.c: in the sandbox,
 * wrap string.find/match/gmatch/gsub with a work bound (e.g. refuse a
 * subject longer than a few KB with more than two `-`/`*` repetitions), or
 * run Lua under a watchdog that ends a call stuck in C. */
static void test_bug_b15_lua_time_limit_in_c(void **state)
{
    (void)state;
    const char *code[] = {
        "return string.rep('a', 3000):find('.-.-.-.-b')",
        "return string.rep('x', 1e6):find('.-y')",
    };
    for (int i = 0; i < 2; i++) {
        double dt = lua_child_seconds(code[i], 3);
        if (dt < 0 || dt > 2)
            fail_msg("lua %s: the 0.5 s time limit did not stop it (%s)", code[i],
                     dt < 0 ? "still running after 3 s" : "it took over 2 s");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lua_escape_routes),
        cmocka_unit_test(test_lua_no_bytecode_by_source),
        cmocka_unit_test(test_bug_b12_lua_writes_files),
        cmocka_unit_test(test_bug_b13_lua_print_escaped),
        cmocka_unit_test(test_bug_b14_lua_gc_at_close),
        cmocka_unit_test(test_bug_b16_lua_gc_loop_at_close),
        cmocka_unit_test(test_bug_b15_lua_time_limit_in_c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
