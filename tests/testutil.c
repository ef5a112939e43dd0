#include "testutil.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "repl.h"
#include "commands.h"
#include "run.h"
#include "view.h"
#include "record.h"
#include "sessions.h"

uint64_t tu_rand_u64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

float tu_rand_float(uint64_t *s, float lo, float hi)
{
    for (;;) {
        double u = (double)(tu_rand_u64(s) >> 11) / (double)(1ULL << 53);
        float v = (float)(lo + (hi - lo) * u);
        if (fabsf(v) >= 1e-3f)
            return v;
    }
}

void tu_fill_random(float *x, size_t n, uint64_t *s, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = tu_rand_float(s, lo, hi);
}

void tu_poison(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = NAN;
}

double tu_rel_max_err(const float *a, const float *b, size_t n)
{
    double amax = 0, bmax = 1e-30;
    for (size_t i = 0; i < n; i++) {
        if (isnan(a[i]) != isnan(b[i]))
            return INFINITY;
        if (isinf(a[i]) || isinf(b[i])) {
            if (a[i] != b[i])
                return INFINITY;
            continue;
        }
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > amax)
            amax = d;
        if (fabs((double)b[i]) > bmax)
            bmax = fabs((double)b[i]);
    }
    return amax / bmax;
}

const char *tu_src_path(char *buf, size_t size, const char *rel)
{
    const char *root = getenv("XF_SOURCE_DIR");
#ifdef XF_SOURCE_DIR
    if (!root)
        root = XF_SOURCE_DIR;
#endif
    if (!root)
        root = ".";
    snprintf(buf, size, "%s/%s", root, rel);
    return buf;
}

const char *tu_tmp_path(char *buf, size_t size, const char *suffix)
{
    static unsigned counter; /* test programs are single-threaded */
    const char *dir = getenv("TMPDIR");
    if (!dir)
        dir = "/tmp";
    snprintf(buf, size, "%s/xftest-%ld-%u%s", dir, (long)getpid(), counter++, suffix);
    return buf;
}

/* --- a REPL for tests --------------------------------------------------------------- */

xf_repl *tu_repl_new(void)
{
    xf_repl *r = repl_new();
    if (!r)
        return NULL;
    r->io.quiet = true;
    r->io.out = NULL;
    r->io.errf = NULL;
    r->backend_forced = true;
    r->backend = KERN_BACKEND_CPU;
    const char *t = getenv("XF_TEST_THREADS");
    r->n_threads = t && atoi(t) > 0 ? atoi(t) : 1;
    return r;
}

void tu_repl_load(xf_repl *r, const char *path)
{
    xf_strbuf out = {0};
    xf_strbuf *outer = r->io.capture;
    r->io.capture = &out;
    int rc = repl_load(r, path);
    r->io.capture = outer;
    if (rc != 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", out.s ? out.s : "");
        sb_free(&out);
        fail_msg("load %s: %s", path, msg);
    }
    sb_free(&out);
}

int tu_repl_run(xf_repl *r, const char *line, xf_strbuf *out)
{
    out->len = 0;
    if (out->s)
        out->s[0] = '\0';
    xf_strbuf *outer = r->io.capture;
    r->io.capture = out;
    int rc = repl_exec_line(r, line);
    r->io.capture = outer;
    return rc;
}

static xf_strbuf g_tu_out;

xf_strbuf *tu_cmd_out(void) { return &g_tu_out; }

void tu_cmd_free(void) { sb_free(&g_tu_out); }

const char *tu_cmd(xf_repl *r, const char *line, int want_rc)
{
    int rc = tu_repl_run(r, line, &g_tu_out);
    const char *o = g_tu_out.s ? g_tu_out.s : "";
    if (rc != want_rc)
        fail_msg("'%s' returned %d, wanted %d; output:\n%s", line, rc, want_rc, o);
    return o;
}

void tu_filter_from_env(void)
{
    const char *filter = getenv("XF_TEST_FILTER");
    if (filter && *filter)
        cmocka_set_test_filter(filter);
}
