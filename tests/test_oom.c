/* Out-of-memory injection (issue 9): for every n, the n-th allocation of an
 * operation fails, and the operation must fail cleanly (an error message,
 * no crash), leak nothing, and leave the program usable: the same
 * operation then succeeds. Operations: GGUF open, tokenizer build, model
 * load (a tiny GPT-2 written here, and the default model), REPL start-up
 * (repl_new + repl_load), a forward pass, generation, tokenizing, `dump`
 * (the refdump writer) and reading a dump back, and parsing a session.
 *
 * malloc, calloc, realloc, free and the aligned allocators are interposed
 * here (this program's definitions win over libc's for every caller,
 * libc's own strdup, getline... included) and forward to glibc's
 * __libc_* functions, with a countdown that fails the n-th call while
 * armed and a count of live blocks that finds leaks (allocations minus
 * frees across the operation and its cleanup). ASan interposes the same
 * functions, so under -fsanitize=address this test reports itself skipped
 * (exit 77); the plain and UBSan builds run it.
 *
 * KNOWN BUGS this test fails on today (h9 report; fixes there):
 *   B7  model_load: empty error when strdup(path) fails      (model sweeps)
 *   B8  refdump writer: endless loop when the header OOMs    (test_dump: "hangs")
 *   B9  model_free: NULL weights array dereferenced          (model sweeps: SIGSEGV)
 *   B10 exec_free: NULL vcache dereferenced                  (test_repl_startup: SIGSEGV)
 *   B11 generate: no text and no error when tok_stream_new fails (test_pass_and_generate) */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fuzz/tinymodel.h"
#include "model.h"
#include "refdump.h"
#include "repl.h"
#include "commands.h"
#include "run.h"
#include "view.h"
#include "record.h"
#include "sessions.h"
#include "session.h"
#include "testutil.h"
#include "tokenizer.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define OOM_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define OOM_SANITIZED 1
#endif
#endif
#ifndef OOM_SANITIZED
#define OOM_SANITIZED 0
#endif

/* --- the interposer ---------------------------------------------------------------- */

/* Single-threaded by construction: every REPL here runs with one thread, so
 * plain counters are enough. */
static long g_calls;   /* allocation calls while armed */
static long g_fail_at; /* the armed call that fails (1-based); 0: none */
static bool g_armed;
static long g_live; /* blocks allocated and not freed, armed or not */

#if !OOM_SANITIZED
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);
extern void *__libc_memalign(size_t align, size_t n);

static bool oom_now(void)
{
    if (!g_armed)
        return false;
    if (++g_calls == g_fail_at) {
        errno = ENOMEM;
        return true;
    }
    return false;
}

void *malloc(size_t n)
{
    if (oom_now())
        return NULL;
    void *p = __libc_malloc(n);
    if (p)
        g_live++;
    return p;
}

void *calloc(size_t n, size_t size)
{
    if (oom_now())
        return NULL;
    void *p = __libc_calloc(n, size);
    if (p)
        g_live++;
    return p;
}

void *realloc(void *p, size_t n)
{
    if (oom_now())
        return NULL; /* p stays valid, as when a real realloc fails */
    void *q = __libc_realloc(p, n);
    if (!p && q)
        g_live++;
    else if (p && n == 0 && !q)
        g_live--; /* glibc frees on realloc(p, 0) */
    return q;
}

void free(void *p)
{
    if (p)
        g_live--;
    __libc_free(p);
}

void *memalign(size_t align, size_t n)
{
    if (oom_now())
        return NULL;
    void *p = __libc_memalign(align, n);
    if (p)
        g_live++;
    return p;
}

void *aligned_alloc(size_t align, size_t n)
{
    return memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    void *p = memalign(align, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}
#endif

/* --- the sweep ----------------------------------------------------------------------- */

#define MSG_MAX 24

typedef struct oom_case {
    const char *what;
    void *ctx;
    /* runs the operation (armed around the part under test) and cleans up
     * everything; returns 0 when it succeeded, -1 when it failed, with the
     * error text in msg */
    int (*op)(void *ctx, char *msg, size_t cap);
    long max_sites; /* sweep at most this many (0: all) */
} oom_case;

static long g_total_sites;

/* The sweep sets the failing call; each operation arms the counter only
 * around the part under test (its own setup and checks run unarmed), and
 * the armed calls of all its segments add up. */
static long g_cur_fail; /* 0: no failure */

static void arm(void)
{
    g_fail_at = g_cur_fail;
    g_armed = true;
}

static void disarm(void)
{
    g_armed = false;
}

#define HANG_SECONDS 5
static sigjmp_buf g_hang_jmp;

static void on_alarm(int sig)
{
    (void)sig;
    siglongjmp(g_hang_jmp, 1);
}

/* An allocation failure must be reported as one: the text says memory. */
static bool says_memory(const char *m)
{
    return strstr(m, "memory") != NULL;
}

static void sweep(oom_case *c)
{
#if OOM_SANITIZED
    (void)c;
#else
    char msg[1024];
    /* once unarmed: lazy one-time allocations (stdio, locale) happen here */
    if (c->op(c->ctx, msg, sizeof msg) != 0)
        fail_msg("%s: fails without any injected failure: %s", c->what, msg);
    long clean_calls = 0;
    {
        long live0 = g_live;
        g_cur_fail = 0;
        g_calls = 0;
        int rc = c->op(c->ctx, msg, sizeof msg);
        clean_calls = g_calls;
        assert_int_equal(rc, 0);
        if (g_live != live0)
            fail_msg("%s: leaks %ld blocks without any failure", c->what, g_live - live0);
    }
    long last = c->max_sites && c->max_sites < clean_calls ? c->max_sites : clean_calls;
    volatile long failed = 0, tolerated = 0;
    char seen[MSG_MAX][160];
    volatile int n_seen = 0;
    /* problems are collected so that one sweep reports every bad site */
    static char problems[4096];
    volatile size_t np = 0;
    volatile int n_problems = 0;
#define PROBLEM(...)                                                                                         \
    do {                                                                                                     \
        if (np < sizeof problems - 1)                                                                        \
            np += (size_t)snprintf(problems + np, sizeof problems - np, __VA_ARGS__);                        \
        if (np > sizeof problems - 1)                                                                        \
            np = sizeof problems - 1;                                                                        \
        n_problems++;                                                                                        \
    } while (0)
    problems[0] = 0;
    for (volatile long n = 1; n <= last; n++) {
        long live0 = g_live;
        msg[0] = 0;
        g_cur_fail = n;
        g_calls = 0;
        /* an operation that never returns is a failure too, not a hung ctest */
        if (sigsetjmp(g_hang_jmp, 1) != 0) {
            g_armed = false;
            g_cur_fail = 0;
            PROBLEM("\n  failing allocation %ld hangs (no return within %d s)", n, HANG_SECONDS);
            break;
        }
        alarm(HANG_SECONDS);
        int rc = c->op(c->ctx, msg, sizeof msg);
        alarm(0);
        long calls = g_calls;
        g_cur_fail = 0;
        if (g_live != live0)
            PROBLEM("\n  failing allocation %ld of %ld leaks %ld blocks (%s)", n, calls, g_live - live0,
                    rc ? msg : "it succeeded");
        if (rc == -2) { /* survived, with a wrong result */
            PROBLEM("\n  %s", msg);
            continue;
        }
        if (rc == 0) {
            tolerated++; /* a failure the operation may survive (a cache, a retry) */
            continue;
        }
        failed++;
        if (!msg[0] || strchr(msg, '\n'))
            PROBLEM("\n  failing allocation %ld of %ld: the error is not one line: \"%s\"", n, calls, msg);
        else if (!says_memory(msg))
            PROBLEM("\n  failing allocation %ld of %ld is reported as \"%s\"", n, calls, msg);
        bool dup = false;
        for (int k = 0; k < n_seen; k++)
            dup |= strncmp(seen[k], msg, sizeof seen[k] - 1) == 0;
        if (!dup && n_seen < MSG_MAX)
            snprintf(seen[n_seen++], sizeof seen[0], "%.150s", msg);
        /* and it works again */
        if (c->op(c->ctx, msg, sizeof msg) != 0)
            PROBLEM("\n  after failing allocation %ld, it fails again without one: %s", n, msg);
    }
#undef PROBLEM
    g_total_sites += last;
    printf("# %-34s %5ld allocation sites swept%s, %ld failed cleanly, %ld survived\n", c->what, last,
           last < clean_calls ? " (capped)" : "", failed, tolerated);
    for (int k = 0; k < n_seen; k++)
        printf("#     %s\n", seen[k]);
    if (n_problems)
        fail_msg("%s: %d problem(s):%s", c->what, n_problems, problems);
#endif
}

/* --- fixtures ------------------------------------------------------------------------- */

static char g_tiny[1024], g_dump[1024], g_model[1024];

static int setup(void **state)
{
    (void)state;
    tiny_spec s;
    tiny_spec_default(&s);
    s.name = "tiny";
    tu_tmp_path(g_tiny, sizeof g_tiny, ".gguf");
    tu_tmp_path(g_dump, sizeof g_dump, ".safetensors");
    tu_src_path(g_model, sizeof g_model, TU_MODEL);
    printf("# allocation failure injection\n"); /* stdout's buffer, before any sweep */
    return tiny_save(&s, g_tiny);
}

static int teardown(void **state)
{
    (void)state;
    unlink(g_tiny);
    unlink(g_dump);
    printf("# %ld allocation sites swept in all\n", g_total_sites);
    return 0;
}

static void copy_msg(char *msg, size_t cap, const char *m)
{
    snprintf(msg, cap, "%s", m);
}

/* --- the operations --------------------------------------------------------------------- */

static int op_gguf_open(void *ctx, char *msg, size_t cap)
{
    xf_err err = {{0}};
    arm();
    gguf_file *g = gguf_open((const char *)ctx, &err);
    gguf_close(g);
    disarm();
    copy_msg(msg, cap, err.msg);
    return g ? 0 : -1;
}

static int op_model_load(void *ctx, char *msg, size_t cap)
{
    xf_err err = {{0}};
    arm();
    xf_model *m = model_load((const char *)ctx, &err);
    model_free(m);
    disarm();
    copy_msg(msg, cap, err.msg);
    return m ? 0 : -1;
}

static int op_tokenizer(void *ctx, char *msg, size_t cap)
{
    xf_err err = {{0}};
    gguf_file *g = gguf_open((const char *)ctx, &err);
    assert_non_null(g);
    arm();
    xf_tokenizer *t = tok_new_from_gguf(g, &err);
    int rc = t ? 0 : -1;
    int32_t *ids = NULL;
    size_t n = 0;
    if (t && tok_encode(t, "hello the world <|endoftext|>", 29, true, &ids, &n, &err) != 0)
        rc = -1;
    char *text = NULL;
    size_t tl;
    if (rc == 0 && tok_decode(t, ids, n, &text, &tl, &err) != 0)
        rc = -1;
    disarm();
    if (rc == 0 && (tl != 29 || memcmp(text, "hello the world <|endoftext|>", 29) != 0)) {
        snprintf(err.msg, sizeof err.msg, "survived allocation %ld but decodes to \"%.*s\"", g_cur_fail,
                 (int)tl, text);
        rc = -2;
    }
    free(text);
    free(ids);
    tok_free(t);
    gguf_close(g);
    copy_msg(msg, cap, err.msg);
    return rc;
}

static xf_repl *quiet_repl(void)
{
    xf_repl *r = tu_repl_new();
    if (!r)
        return NULL;
    r->batch = true;
    r->n_threads = 1;
    return r;
}

/* runs a command capturing its output; an error line goes to msg. The
 * capture buffer is reserved beforehand (unarmed) so that capturing never
 * allocates while armed: a failure injected there would be the test's own. */
static int run_cmd_into(xf_repl *r, const char *line, char *msg, size_t cap, xf_strbuf *all)
{
    bool was_armed = g_armed;
    disarm();
    xf_strbuf out = {0};
    out.cap = 1 << 16;
    out.s = malloc(out.cap);
    assert_non_null(out.s);
    out.s[0] = 0;
    if (was_armed)
        arm();
    int rc = tu_repl_run(r, line, &out);
    disarm();
    if (rc != 0) {
        const char *e = strstr(out.s, "error: ");
        snprintf(msg, cap, "%s", e ? e + 7 : "(a command failed without an error line)");
        char *nl = strchr(msg, '\n');
        if (nl)
            *nl = 0;
    }
    if (all && out.len)
        sb_append(all, out.s, out.len);
    sb_free(&out);
    if (was_armed)
        arm();
    return rc ? -1 : 0;
}

static int run_cmd(xf_repl *r, const char *line, char *msg, size_t cap)
{
    return run_cmd_into(r, line, msg, cap, NULL);
}

/* repl_new + repl_load as main() does; then the REPL must still work */
static int op_repl_startup(void *ctx, char *msg, size_t cap)
{
    const char *path = ctx;
    arm();
    xf_repl *r = quiet_repl();
    int rc = -1;
    if (!r) {
        disarm();
        copy_msg(msg, cap, "out of memory (repl_new)");
        return -1;
    }
    xf_strbuf out = {0};
    r->io.capture = &out;
    rc = repl_load(r, path) == 0 ? 0 : -1;
    r->io.capture = NULL;
    disarm();
    if (rc != 0) {
        const char *e = out.s ? strstr(out.s, "error: ") : NULL;
        snprintf(msg, cap, "%s", e ? e + 7 : "(repl_load failed without an error line)");
        char *nl = strchr(msg, '\n');
        if (nl)
            *nl = 0;
        /* the REPL is usable: nothing loaded, and a load now works */
        assert_null(r->model);
        char line[1100], m2[256];
        snprintf(line, sizeof line, "load %s", path);
        if (run_cmd(r, line, m2, sizeof m2) != 0 || run_cmd(r, "tokenize --ids the", m2, sizeof m2) != 0)
            fail_msg("the REPL is not usable after a failed start-up: %s", m2);
    }
    sb_free(&out);
    repl_free(r);
    return rc;
}

/* a REPL with the tiny model, set up unarmed; `lines` run armed; then the
 * REPL must still run a pass */
typedef struct cmd_ctx {
    const char *setup[4];
    const char *lines[4];
    const char *check_file; /* must exist (or not, with no .tmp left) afterwards */
    xf_strbuf clean;        /* what the lines print without a failure */
} cmd_ctx;

static int op_commands(void *ctx, char *msg, size_t cap)
{
    cmd_ctx *c = ctx;
    xf_repl *r = quiet_repl();
    assert_non_null(r);
    char m2[512];
    assert_int_equal(repl_load(r, g_tiny), 0);
    for (int i = 0; i < 4 && c->setup[i]; i++)
        if (run_cmd(r, c->setup[i], m2, sizeof m2) != 0)
            fail_msg("setup '%s': %s", c->setup[i], m2);
    if (c->check_file)
        unlink(c->check_file);
    int rc = 0;
    xf_strbuf all = {0};
    arm();
    for (int i = 0; i < 4 && c->lines[i] && rc == 0; i++)
        rc = run_cmd_into(r, c->lines[i], msg, cap, &all);
    disarm();
    /* a failure the commands survived must not change what they print */
    if (rc == 0 && !c->clean.s)
        sb_append(&c->clean, all.s ? all.s : "", all.len);
    else if (rc == 0 && (all.len != c->clean.len || memcmp(all.s, c->clean.s, all.len) != 0)) {
        size_t d = 0;
        while (d < all.len && d < c->clean.len && all.s[d] == c->clean.s[d])
            d++;
        size_t from = d > 40 ? d - 40 : 0;
        snprintf(msg, cap, "survived allocation %ld but printed \"...%.80s\" where it prints \"...%.80s\"",
                 g_cur_fail, all.s ? all.s + from : "", c->clean.s + from);
        rc = -2;
    }
    sb_free(&all);
    if (c->check_file) {
        char tmp[1100];
        snprintf(tmp, sizeof tmp, "%s.tmp", c->check_file);
        struct stat st;
        if (stat(tmp, &st) == 0)
            fail_msg("%s left behind after: %s", tmp, rc ? msg : "success");
        if ((stat(c->check_file, &st) == 0) != (rc == 0))
            fail_msg("%s %s although the command %s", c->check_file, rc ? "exists" : "is missing",
                     rc ? "failed" : "succeeded");
    }
    if (run_cmd(r, "run --tokens 3,4", m2, sizeof m2) != 0 || run_cmd(r, "continue", m2, sizeof m2) != 0)
        fail_msg("the REPL cannot run a pass after '%s' failed: %s", c->lines[0], m2);
    repl_free(r);
    return rc;
}

static int op_read_dump(void *ctx, char *msg, size_t cap)
{
    xf_err err = {{0}};
    arm();
    refdump *d = refdump_open((const char *)ctx, &err);
    int rc = d ? 0 : -1;
    for (size_t i = 0; d && i < refdump_count(d) && rc == 0; i++) {
        const refdump_tensor *t = refdump_at(d, i);
        float *f = malloc((size_t)(refdump_numel(t) ? refdump_numel(t) : 1) * sizeof *f);
        if (!f) {
            xf_err_set(&err, "out of memory (test)");
            rc = -1;
        } else if (refdump_read_f32(d, t, f, &err) != 0)
            rc = -1;
        free(f);
    }
    disarm();
    refdump_close(d);
    copy_msg(msg, cap, err.msg);
    return rc;
}

static int op_session_parse(void *ctx, char *msg, size_t cap)
{
    (void)ctx;
    static const char text[] =
        "# xfdb session 1\n"
        "# model: tiny.gguf sha256 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"
        "# kernels: embd=opt norm=ref\n# a comment\n"
        "> run --tokens 1,2\n< pass 1: 2 tokens\n~ skipped\n"
        "> print embd -n 2\n< embd [2, 8]\n<   0.5 -0.25\n# end: 2 commands\n";
    xf_err err = {{0}};
    arm();
    xf_session *s = session_parse("s.xfs", text, sizeof text - 1, &err);
    char *e = s ? session_escape("a\x1b"
                                 "b",
                                 3)
                : NULL;
    disarm();
    int rc = s && e ? 0 : -1;
    if (s && !e)
        snprintf(err.msg, sizeof err.msg, "out of memory (session_escape)");
    free(e);
    session_free(s);
    copy_msg(msg, cap, err.msg);
    return rc;
}

static void sweep_op(const char *what, int (*op)(void *, char *, size_t), void *ctx, long max_sites)
{
    oom_case c = {what, ctx, op, max_sites};
    sweep(&c);
}

/* --- tests ------------------------------------------------------------------------------- */

static void skip_if_sanitized(void)
{
#if OOM_SANITIZED
    printf("# built with a sanitizer that owns malloc: the OOM sweep needs the plain or UBSan build\n");
    exit(77);
#endif
}

static void test_gguf_open(void **state)
{
    (void)state;
    sweep_op("gguf_open (tiny)", op_gguf_open, g_tiny, 0);
}

static void test_tokenizer(void **state)
{
    (void)state;
    sweep_op("tokenizer build+encode+decode", op_tokenizer, g_tiny, 0);
}

static void test_model_load_tiny(void **state)
{
    (void)state;
    sweep_op("model_load (tiny gpt2)", op_model_load, g_tiny, 0);
}

static void test_model_load_default(void **state)
{
    (void)state;
    sweep_op("model_load (default model)", op_model_load, g_model, 0);
}

static void test_repl_startup(void **state)
{
    (void)state;
    sweep_op("repl_new + repl_load (tiny)", op_repl_startup, g_tiny, 0);
}

static void test_pass_and_generate(void **state)
{
    (void)state;
    cmd_ctx c = {.lines = {"run \"hello the\"", "step 5", "continue", "generate 3"}};
    sweep_op("run + step + continue + generate", op_commands, &c, 0);
    sb_free(&c.clean);
    cmd_ctx t = {
        .lines = {"tokenize \"the\\n<|endoftext|> he\"", "print blk.0.attn_norm.weight[::2]", "info"}};
    sweep_op("tokenize + print + info", op_commands, &t, 0);
    sb_free(&t.clean);
}

static void test_dump(void **state)
{
    (void)state;
    static char line[1200];
    snprintf(line, sizeof line, "dump all %s", g_dump);
    cmd_ctx c = {.setup = {"run --tokens 1,2,3", "continue"}, .lines = {line}, .check_file = g_dump};
    sweep_op("dump all (refdump writer)", op_commands, &c, 0);
    sb_free(&c.clean);
    /* and the dump it wrote, read back */
    xf_repl *r = quiet_repl();
    char m[256];
    assert_int_equal(repl_load(r, g_tiny), 0);
    assert_int_equal(run_cmd(r, "run --tokens 1,2,3", m, sizeof m), 0);
    assert_int_equal(run_cmd(r, "continue", m, sizeof m), 0);
    assert_int_equal(run_cmd(r, line, m, sizeof m), 0);
    repl_free(r);
    sweep_op("refdump_open + read_f32 (dump)", op_read_dump, g_dump, 0);
}

static void test_session_parse(void **state)
{
    (void)state;
    sweep_op("session_parse + session_escape", op_session_parse, NULL, 0);
}

int main(void)
{
    skip_if_sanitized();
    signal(SIGALRM, on_alarm);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_open),
        cmocka_unit_test(test_tokenizer),
        cmocka_unit_test(test_model_load_tiny),
        cmocka_unit_test(test_model_load_default),
        cmocka_unit_test(test_repl_startup),
        cmocka_unit_test(test_pass_and_generate),
        cmocka_unit_test(test_dump),
        cmocka_unit_test(test_session_parse),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
