/* test_sandbox: xf.cmd in the Lua sandbox judges the command that dispatch
 * runs (issue 14 items 6 and 7). Before the one line splitter, the sandbox
 * read the first word itself ("dump\rlogits F" was the word "dump\rlogits",
 * unknown to it, then dispatch split at \r and ran `dump`), and commands
 * that read files (`source`, `load`, `ref load`) were allowed, so a script
 * could run or print any file. Each case checks that no file was written
 * and that the refusal says why. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "repl.h"
#include "testutil.h"

static xf_repl *sandbox_repl(void)
{
    char mp[1024];
    xf_repl *r = tu_repl_new();
    assert_non_null(r);
    tu_repl_load(r, tu_src_path(mp, sizeof mp, TU_MODEL));
    tu_cmd(r, "run hello", 0);
    tu_cmd(r, "finish", 0);
    return r;
}

static bool exists(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0;
}

/* A Lua string literal for s: every byte as \ddd so that CR, LF and NUL
 * reach xf.cmd as themselves. */
static void lua_lit(char *buf, size_t size, const char *s, size_t n)
{
    size_t o = 0;
    buf[o++] = '"';
    for (size_t i = 0; i < n && o + 6 < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "\\%03u", (unsigned char)s[i]);
    buf[o++] = '"';
    buf[o] = '\0';
}

static void test_line_breaks_cannot_smuggle(void **state)
{
    (void)state;
    xf_repl *r = sandbox_repl();
    char out[1024], line[8192], cmdtext[1200], lit[6000];
    tu_tmp_path(out, sizeof out, ".safetensors");
    const char *forms[] = {"dump\rlogits %s", "\ndump all %s", "\nrecord %s", "dump logits %s\n", "print logits\ndump all %s",
                           "print logits\rrecord %s"};
    for (size_t k = 0; k < sizeof forms / sizeof forms[0]; k++) {
        int n = snprintf(cmdtext, sizeof cmdtext, forms[k], out);
        lua_lit(lit, sizeof lit, cmdtext, (size_t)n);
        snprintf(line, sizeof line, "lua print(xf.cmd(%s))", lit);
        const char *o = tu_cmd(r, line, 0);
        assert_non_null(strstr(o, "nil\txf.cmd: "));
        assert_false(exists(out));
    }
    /* a NUL inside the line ends nothing: the whole line is refused */
    int n = snprintf(cmdtext, sizeof cmdtext, "print logits%cdump all %s", 0, out);
    lua_lit(lit, sizeof lit, cmdtext, (size_t)n);
    snprintf(line, sizeof line, "lua print(xf.cmd(%s))", lit);
    assert_non_null(strstr(tu_cmd(r, line, 0), "nil\txf.cmd: "));
    assert_false(exists(out));
    repl_free(r);
    tu_cmd_free();
}

static void test_file_commands_refused(void **state)
{
    (void)state;
    xf_repl *r = sandbox_repl();
    char secret[1024], out[1024], line[4096];
    tu_tmp_path(secret, sizeof secret, ".env");
    FILE *f = fopen(secret, "w");
    assert_non_null(f);
    fputs("print('SECRET-CONTENT-1234')\n", f);
    fclose(f);
    tu_tmp_path(out, sizeof out, ".safetensors");
    const char *reads[] = {"source %s", "load %s", "ref load %s", "  source   %s"};
    for (size_t k = 0; k < sizeof reads / sizeof reads[0]; k++) {
        char c[1200];
        snprintf(c, sizeof c, reads[k], secret);
        snprintf(line, sizeof line, "lua print(xf.cmd('%s'))", c);
        const char *o = tu_cmd(r, line, 0);
        assert_non_null(strstr(o, "reads files and is disabled in the sandbox"));
        assert_null(strstr(o, "SECRET-CONTENT"));
    }
    const char *writes[] = {"dump logits %s", "dump all %s", "record %s"};
    for (size_t k = 0; k < sizeof writes / sizeof writes[0]; k++) {
        char c[1200];
        snprintf(c, sizeof c, writes[k], out);
        snprintf(line, sizeof line, "lua print(xf.cmd('%s'))", c);
        assert_non_null(strstr(tu_cmd(r, line, 0), "writes files and is disabled in the sandbox"));
        assert_false(exists(out));
    }
    /* commands that touch no file still run */
    assert_non_null(strstr(tu_cmd(r, "lua print(xf.cmd('stats logits'))", 0), "max"));
    repl_free(r);
    tu_cmd_free();
    unlink(secret);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_breaks_cannot_smuggle),
        cmocka_unit_test(test_file_commands_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
