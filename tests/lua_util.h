/* lua_util: the fixture the Lua binding tests share (test_lua.c,
 * test_lua_limits.c): a session with its output captured, cmd() to run a
 * line, and the deliberately wrong kernel variants they register. */
#ifndef XF_TEST_LUA_UTIL_H
#define XF_TEST_LUA_UTIL_H

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

#define PROMPT "\"ROMEO:\\nWhat light through yonder window\""

typedef struct tl {
    xf_repl *r;
    xf_strbuf out;
} tl;

/* --- deliberately wrong variants (registered at runtime, never built into xfdb) --- */

static inline int wrong_norm(kern_ctx *ctx, const kern_args *a)
{
    const kern_variant *ref = kern_find(KERN_OP_NORM, KERN_BACKEND_CPU, "ref");
    kern_args b = *a;
    b.eps = a->eps * 1000.0f; /* 1e-5 -> 1e-2: a plausible typo, far over tolerance */
    return ref->fn(ctx, &b);
}

static inline int wrong_gelu(kern_ctx *ctx, const kern_args *a)
{
    const kern_variant *ref = kern_find(KERN_OP_GELU, KERN_BACKEND_CPU, "ref");
    int rc = ref->fn(ctx, a);
    for (int64_t i = 0; i < a->n * a->k; i++)
        a->y[i] *= 1.01f;
    return rc;
}

static const kern_variant k_wrong_norm = {.op = KERN_OP_NORM, .backend = KERN_BACKEND_CPU, .name = "wrong_eps",
                                          .fn = wrong_norm,
                                          .doc = "LayerNorm with eps x1000 (tests only)"};
static const kern_variant k_wrong_gelu = {.op = KERN_OP_GELU, .backend = KERN_BACKEND_CPU, .name = "wrong_scale",
                                          .fn = wrong_gelu,
                                          .doc = "GELU scaled by 1.01 (tests only)"};

/* --- fixture -------------------------------------------------------------------- */

static inline xf_repl *new_repl(tl *t, bool unsafe)
{
    xf_repl *r = tu_repl_new();
    assert_non_null(r);
    r->io.capture = &t->out; /* Lua's print and errors outside cmd() land here too */
    r->unsafe_lua = unsafe;
    char p[4096];
    tu_repl_load(r, tu_src_path(p, sizeof p, TU_MODEL));
    return r;
}

static inline int setup(void **state)
{
    tl *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    t->r = new_repl(t, false);
    *state = t;
    return 0;
}

static inline int teardown(void **state)
{
    tl *t = *state;
    repl_free(t->r);
    sb_free(&t->out);
    free(t);
    return 0;
}

static inline void clear(tl *t)
{
    t->out.len = 0;
    if (t->out.s)
        t->out.s[0] = '\0';
}

static inline const char *text(tl *t) { return t->out.s ? t->out.s : ""; }

/* Runs one command line; fails the test unless it returns want_rc. Returns its output. */
static inline const char *cmd(tl *t, int want_rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *line = NULL;
    int n = vasprintf(&line, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    int rc = tu_repl_run(t->r, line, &t->out);
    if (rc != want_rc)
        fail_msg("`%s` returned %d (want %d), output:\n%s", line, rc, want_rc, text(t));
    free(line);
    return text(t);
}

static inline void assert_has(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("expected '%s' in:\n%s", needle, hay);
}

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static inline int count_words(const char *s)
{
    int n = 0;
    bool in = false;
    for (; *s; s++) {
        bool sp = *s == ' ' || *s == '\n';
        if (!sp && !in)
            n++;
        in = !sp;
    }
    return n;
}

/* "run --tokens a,b,c" of the reference's prompt.tokens */
static inline void ref_prompt_cmd(char *buf, size_t size)
{
    char p[4096];
    tu_src_path(p, sizeof p, TU_MODEL_REF);
    xf_err err = {{0}};
    refdump *rd = refdump_open(p, &err);
    if (!rd)
        fail_msg("%s", err.msg);
    const refdump_tensor *pt = refdump_find(rd, "prompt.tokens");
    assert_non_null(pt);
    int64_t n = refdump_numel(pt);
    int32_t ids[256];
    assert_true(n > 0 && n <= 256);
    assert_int_equal(refdump_read_i32(rd, pt, ids, &err), 0);
    size_t w = (size_t)snprintf(buf, size, "run --tokens ");
    for (int64_t i = 0; i < n; i++)
        w += (size_t)snprintf(buf + w, size - w, i ? ",%d" : "%d", ids[i]);
    refdump_close(rd);
}

/* --- 1. the numbers of a handle are the numbers `print --raw` shows ---------------- */


#endif
