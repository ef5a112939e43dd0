/* Terminal safety (issue 9): text that comes from files or scripts (model
 * names, token pieces, tensor names, file names, error messages, generated
 * text) is escaped before it is printed, so that no control byte (C0 but
 * '\n', DEL, or a C1 character U+0080..U+009F, which terminals also obey)
 * reaches the terminal. An evil tiny GPT-2 carries general.name =
 * "\x1b[2J\x1b]0;pwned\x07", user-defined tokens made of control bytes, a
 * tensor whose name holds an escape sequence, and weights that make greedy
 * decoding pick a control-byte token; it is loaded from a file whose name
 * holds an escape sequence too. Every command's captured output is checked,
 * and that the escaped text is still there to read. With XFDB set (ctest),
 * the program's own stdout and stderr are checked the same way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fuzz/tinymodel.h"
#include "refdump.h"
#include "repl.h"
#include "commands.h"
#include "run.h"
#include "view.h"
#include "record.h"
#include "sessions.h"
#include "testutil.h"

#define EVIL_NAME "\x1b[2J\x1b]0;pwned\x07"
#define EVIL_TENSOR "evil\x1b]0;x\x07.weight"

static const char *const k_extra[] = {"\x1b]0;pwned\x07", "\x1b[2J",
                                      ("\xc2\x9b" /* C1 CSI, then text that must not join it */
                                       "31m"),
                                      "bell\x07\x08\x7f"};
#define N_EXTRA 4
#define EVIL_TOKEN (TINY_N_BASE_VOCAB + 0) /* what greedy decoding picks */

static char g_dir[512], g_model[1024], g_extra[1024]; /* g_extra: g_model plus a weight named EVIL_TENSOR */
static xf_strbuf g_out;

/* offset of the first control byte (C0 but '\n', DEL, C1 as UTF-8), or -1 */
static long first_control(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n; i++) {
        if ((u[i] < 0x20 && u[i] != '\n') || u[i] == 0x7f)
            return (long)i;
        if (u[i] == 0xc2 && i + 1 < n && u[i + 1] >= 0x80 && u[i + 1] <= 0x9f)
            return (long)i;
    }
    return -1;
}

static void assert_clean(const char *what, const char *s, size_t n)
{
    long at = first_control(s, n);
    if (at >= 0) {
        long a = at > 50 ? at - 50 : 0;
        fail_msg("%s: control byte 0x%02x at %ld, after \"%.*s\"", what, (unsigned char)s[at], at,
                 (int)(at - a), s + a);
    }
}

/* runs a command, checks its whole output (errors included) */
static const char *cmd(xf_repl *r, const char *line, int want_rc)
{
    const char *o = tu_cmd(r, line, want_rc);
    assert_clean(line, o, tu_cmd_out()->len);
    return o;
}

/* the same for a command whose success does not matter here */
static void cmd_any(xf_repl *r, const char *line)
{
    tu_repl_run(r, line, &g_out);
    assert_clean(line, g_out.s ? g_out.s : "", g_out.len);
}

static int setup(void **state)
{
    (void)state;
    const char *t = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/xfterm-%ld", t, (long)getpid());
    if (mkdir(g_dir, 0700) != 0)
        return -1;
    /* the file name itself is an escape sequence */
    snprintf(g_model, sizeof g_model, "%s/m\x1b[2J\x07.gguf", g_dir);
    tiny_spec s;
    tiny_spec_default(&s);
    s.name = EVIL_NAME;
    s.extra = k_extra;
    s.n_extra = N_EXTRA;
    s.favor = EVIL_TOKEN;
    if (tiny_save(&s, g_model) != 0)
        return -1;
    /* a tensor the architecture does not use: model_load refuses the file,
     * and its error names the tensor (escaped when printed) */
    snprintf(g_extra, sizeof g_extra, "%s/extra\x1b[2J.gguf", g_dir);
    gguf_writer *w = tiny_writer(&s);
    if (!w)
        return -1;
    static float f[8];
    int64_t ne[1] = {8};
    xf_err err = {{0}};
    if (gguf_writer_add_tensor(w, EVIL_TENSOR, XF_TYPE_F32, 1, ne, f, sizeof f) != 0 ||
        gguf_writer_save(w, g_extra, &err) != 0)
        return -1;
    gguf_writer_free(w);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(g_model);
    unlink(g_extra);
    rmdir(g_dir);
    sb_free(&g_out);
    return 0;
}

static xf_repl *evil_repl(void)
{
    xf_repl *r = tu_repl_new();
    assert_non_null(r);
    char line[1200];
    snprintf(line, sizeof line, "load %s", g_model);
    const char *o = cmd(r, line, 0);
    /* the name and the path are shown, escaped */
    assert_non_null(strstr(o, "x1B[2J"));
    assert_non_null(strstr(o, "0;pwned"));
    return r;
}

static void test_load_and_info(void **state)
{
    (void)state;
    xf_repl *r = evil_repl();
    const char *o = cmd(r, "info", 0);
    assert_non_null(strstr(o, "model: \\x1B[2J\\x1B]0;pwned\\x07\n"));
    assert_non_null(strstr(o, "x1B[2J"));
    /* the startup load of the program path (repl_load) is the same code */
    assert_int_equal(repl_load(r, g_model), 0);
    repl_free(r);
}

static void test_tokenize_control_pieces(void **state)
{
    (void)state;
    xf_repl *r = evil_repl();
    /* byte tokens for ESC, BEL, BS, DEL, CR; the user-defined control tokens
     * as single specials; a C1 character */
    const char *o =
        cmd(r, "tokenize \"\\e[2J \\a\\b\\x7f\\r\\x1b]0;pwned\\x07 \\u009b31m bell\\x07\\x08\\x7f\"", 0);
    assert_non_null(strstr(o, "\\x1B"));
    assert_non_null(strstr(o, "\\x07"));
    assert_non_null(strstr(o, "\\x7F"));
    cmd(r, "tokenize --no-special \"\\e]0;pwned\\a\"", 0);
    cmd(r, "tokenize --ids \"\\e[2J\"", 0);
    repl_free(r);
}

static void test_generate_control_tokens(void **state)
{
    (void)state;
    xf_repl *r = evil_repl();
    cmd(r, "run --tokens 1,2", 0);
    /* the weights make every greedy step pick the ESC ] 0 ; pwned BEL token */
    const char *o = cmd(r, "generate 4", 0);
    assert_non_null(strstr(o, "\\x1B]0;pwned\\x07\\x1B]0;pwned\\x07"));
    o = cmd(r, "generate 3 --ids", 0);
    char want[64];
    snprintf(want, sizeof want, "%d %d %d\n", EVIL_TOKEN, EVIL_TOKEN, EVIL_TOKEN);
    assert_string_equal(o, want);
    cmd(r, "topk 5", 0);
    cmd(r, "token", 0);
    cmd(r, "where", 0);
    cmd(r, "list", 0);
    repl_free(r);
}

/* B6 regression (fixed in 66c15e2): tensor names come from the file (GGUF weights,
 * safetensors tensors) but `print`, `stats`, `diff` and `quant` print them
 * raw in their header line (tview.name). Fix in repl/commands.c: pr_escape
 * v->name (load_view / load_cpu_view) or escape where the header is printed. */
static void test_bug_b6_tensor_names(void **state)
{
    (void)state;
    xf_repl *r = evil_repl();
    /* a weight whose GGUF name holds an escape sequence: no architecture
     * uses such a tensor, so the file is refused (session 26), and the
     * error that names it is escaped */
    char line[1200];
    snprintf(line, sizeof line, "load %s", g_extra);
    const char *o = cmd(r, line, 1);
    assert_non_null(strstr(o, "tensor 'evil\\x1b]0;x\\x07.weight' at byte "));
    assert_non_null(strstr(o, "not used by a gpt2 model of 1 layer (block_count)"));
    cmd(r, "print " EVIL_TENSOR, 1);
    cmd(r, "stats " EVIL_TENSOR, 1);
    cmd(r, "print nosuch\x1b[2J", 1);
    cmd(r, "print token_embd.weight[\x1b[2J]", 1);
    cmd_any(r, "quant " EVIL_TENSOR " 0");
    cmd_any(r, "quant token_embd.weight 259");
    repl_free(r);
}

/* B4 regression (fixed in 66c15e2): `ref load FILE` and `dump NAMES FILE` print the
 * file name as typed ("reference %s", "wrote ... to %s"): a name with an
 * escape sequence reaches the terminal raw. Fix in repl/commands.c
 * cmd_ref / cmd_dump: pr_escape the path as repl_load does. */
static void test_bug_b4_file_names(void **state)
{
    (void)state;
    xf_repl *r = evil_repl();
    char path[1200], line[1300];
    snprintf(path, sizeof path, "%s/d\x1b[2J\x07.safetensors", g_dir);
    cmd(r, "run --tokens 1,2", 0);
    cmd(r, "continue", 0);
    snprintf(line, sizeof line, "dump embd %s", path);
    cmd(r, line, 0);
    snprintf(line, sizeof line, "ref load %s", path);
    cmd(r, line, 0);
    unlink(path);
    repl_free(r);
}

/* B5 regression (fixed in 66c15e2): `break` and `info breaks` print the pattern
 * (and condition) as typed; a script or a session (untrusted input) can put
 * an escape sequence there (a glob bracket set still matches). Fix in
 * repl/commands.c cmd_break and info_breaks: pr_escape pattern and cond. */
static void test_bug_b5_break_patterns(void **state)
{
    (void)state;
    xf_repl *r = evil_repl();
    /* a pattern must match an op: a bracket set of fnmatch can hold anything */
    cmd(r, "break emb[d\x1b[2J\x07]", 0);
    cmd(r, "info breaks", 0);
    repl_free(r);
}

static void test_errors_escaped(void **state)
{
    (void)state;
    xf_repl *r = evil_repl();
    char line[1200];
    cmd(r, "\x1b[2J\x07", 1);
    cmd(r, "load /nonexistent/\x1b[2J.gguf", 1);
    snprintf(line, sizeof line, "ref load %s", g_model); /* a GGUF is not a safetensors file */
    cmd(r, line, 1);
    cmd(r, "tokenize \"\\xff\"", 1);
    cmd(r, "help \x1b[2J", 1);
    cmd(r, "run --tokens 1,\x1b", 1);
    cmd(r, "kernel \x1b[2J \x07", 1);
    /* a tab inside a slice keeps the word whole, and its error quoted it raw (the fuzzer, session 26) */
    cmd(r, "run --tokens 1,2", 0);
    cmd(r, "stats nosuch[0,\t1", 1);
    repl_free(r);
}

/* the program itself: stdout and stderr of a batch run */
static void test_cli(void **state)
{
    (void)state;
    const char *x = getenv("XFDB");
    if (!x) {
        printf("# XFDB not set: CLI check skipped\n");
        return;
    }
    char sh[4096], outp[1100], errp[1100];
    snprintf(outp, sizeof outp, "%s/out", g_dir);
    snprintf(errp, sizeof errp, "%s/err", g_dir);
    /* the model path goes through the shell: pass it by environment */
    setenv("XF_EVIL_MODEL", g_model, 1);
    snprintf(sh, sizeof sh,
             "\"%s\" \"$XF_EVIL_MODEL\" --batch -x info -x 'tokenize \"\\e[2J\\a\"' -x 'run --tokens 1,2' "
             "-x 'generate 3' -x 'print nosuch\x1b[2J' >%s 2>%s",
             x, outp, errp);
    int rc = system(sh);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 1); /* the last command fails */
    const char *files[2] = {outp, errp};
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(files[i], "rb");
        assert_non_null(f);
        char buf[65536];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        assert_true(n > 0);
        assert_clean(i ? "xfdb stderr" : "xfdb stdout", buf, n);
        unlink(files[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_and_info),           cmocka_unit_test(test_tokenize_control_pieces),
        cmocka_unit_test(test_generate_control_tokens), cmocka_unit_test(test_bug_b6_tensor_names),
        cmocka_unit_test(test_bug_b4_file_names),       cmocka_unit_test(test_bug_b5_break_patterns),
        cmocka_unit_test(test_errors_escaped),          cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
