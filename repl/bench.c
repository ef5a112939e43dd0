/* bench: profile and bench, the commands whose output is timings
 * (CMD_OUTPUT_VARIES: recorded as `~` lines, never compared). */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "bench.h"
#include "commands.h"
#include "exec.h"
#include "inspect.h"
#include "print.h"
#include "repl.h"
#include "run.h"

/* The rest of the pass op by op, each op timed; a Ctrl-C is noted for the repl. */
static int profile_finish(xf_repl *r, xf_stop *why, xf_err *err)
{
    exec_set_timing(r->ex, true);
    int rc = exec_run(r->ex, XF_RUN_FINISH, 0, why, err);
    exec_set_timing(r->ex, false);
    if (rc == 0 && *why == XF_STOP_INTERRUPT)
        r->stopped_by_interrupt = true;
    return rc;
}

int cmd_profile(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)argc;
    (void)argv;
    (void)rest;
    xf_where w;
    exec_where(r->ex, &w);
    if (!w.active)
        return repl_errf(r, "profile: no pass (run a prompt first)");
    /* re-run the current pass from its first op, timing every op */
    int n;
    const int32_t *tk0 = exec_tokens(r->ex, &n);
    int32_t *tk = malloc((size_t)n * sizeof *tk);
    if (!tk)
        return repl_errf(r, "out of memory");
    memcpy(tk, tk0, (size_t)n * sizeof *tk);
    xf_err err = {0};
    bool decode = w.pos0 > 0;
    if (decode && w.pc == w.n_ops) {
        free(tk);
        return repl_errf(r, "profile: run it on a pass that has not finished (as after `token`)");
    }
    if (!decode && exec_begin(r->ex, tk, n, false, &err) != 0) {
        free(tk);
        return repl_errf(r, "%s", err.msg);
    }
    /* cuda: the first op-by-op pass of a process also loads, at their first
     * launch, the kernels that graphs did not use (measured: a 512-token
     * pass's first op took 3.0 ms, 0.02 ms the next time, and the pass 4.7
     * ms more): a prefill runs once untimed first, so that the table shows
     * the kernels. Not where something looks at every op (a hook would see
     * each op twice, check would judge twice) nor for a decode pass, which
     * cannot run twice (it extends the KV cache). */
    const char *cold = NULL;
    if (exec_backend(r->ex) == KERN_BACKEND_CUDA) {
        cold = decode ? "a decode pass runs once" : exec_looks_why(r->ex);
        if (!cold) {
            xf_stop why0;
            int rc0 = profile_finish(r, &why0, &err);
            if (rc0 == 0 && why0 == XF_STOP_INTERRUPT) {
                free(tk);
                return repl_errf(r, "profile: interrupted (Ctrl-C) in its untimed run");
            }
            if (rc0 != 0 || exec_begin(r->ex, tk, n, false, &err) != 0) {
                free(tk);
                return repl_errf(r, "%s", err.msg);
            }
        }
    }
    free(tk);
    xf_stop why;
    if (profile_finish(r, &why, &err) != 0)
        return repl_errf(r, "%s", err.msg);
    if (why == XF_STOP_INTERRUPT) {
        /* a table of the ops that ran would read as the whole pass */
        exec_where(r->ex, &w);
        return repl_errf(r, "profile: interrupted (Ctrl-C) after op %d of %d; no table", w.pc, w.n_ops);
    }
    const xf_program *p = exec_program(r->ex);
    const double *ms = exec_op_ms(r->ex);
    double by_kind[KERN_OP_COUNT] = {0}, total = 0;
    for (int i = 0; i < p->n_ops; i++) {
        by_kind[p->ops[i].kind] += ms[i];
        total += ms[i];
    }
    repl_out(r, "%-9s %-8s %-10s %s\n", "op kind", "variant", "ms", "share");
    for (int k = 0; k < KERN_OP_COUNT; k++) {
        if (by_kind[k] == 0)
            continue;
        char a[32];
        pr_num(a, sizeof a, by_kind[k]);
        repl_out(r, "%-9s %-8s %-10s %.1f%%\n", kern_op_name((kern_op)k),
                 exec_kernel_selected(r->ex, (kern_op)k)->name, a, 100 * by_kind[k] / (total > 0 ? total : 1));
    }
    char t[32];
    pr_num(t, sizeof t, total);
    repl_out(r, "total %s ms for %d ops, %d token%s\n", t, p->n_ops, w.n_tokens, w.n_tokens == 1 ? "" : "s");
    /* timings vary: a recording keeps them as `~` lines, which replay does not compare */
    char note[512];
    if (exec_backend(r->ex) != KERN_BACKEND_CUDA)
        snprintf(note, sizeof note, "(wall clock per op)");
    else if (!cold)
        snprintf(note, sizeof note, "(CUDA events around each op, no sync between ops, after an untimed run of the pass)");
    else
        snprintf(note, sizeof note,
                 "(CUDA events around each op, no sync between ops; not warmed up: %s. A process's first op-by-op "
                 "pass also loads kernels: profile again for steady figures)",
                 cold);
    repl_wrap(r, note, strlen(note), 0, 1, repl_width(r));
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* one pass of n pseudo-random tokens (fixed seed: the same work every run),
 * run with `finish`, or with `continue` (breakpoints looked at) when watched */
static int bench_pass_mode(xf_repl *r, int n, bool cont, uint64_t *seed, xf_run_mode mode, xf_err *err)
{
    int32_t *tk = malloc((size_t)n * sizeof *tk);
    if (!tk)
        return xf_err_set(err, "out of memory");
    for (int i = 0; i < n; i++) {
        *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
        tk[i] = (int32_t)((*seed >> 33) % (uint64_t)r->model->n_vocab);
    }
    int rc = exec_begin(r->ex, tk, n, cont, err);
    free(tk);
    xf_stop why;
    if (rc == 0)
        rc = exec_run(r->ex, mode, 0, &why, err);
    if (rc == 0 && why == XF_STOP_INTERRUPT)
        rc = xf_err_set(err, "interrupted (Ctrl-C, or the output was closed)");
    else if (rc == 0 && why != XF_STOP_END)
        rc = xf_err_set(err, "the pass stopped before its end (a breakpoint or check fired)");
    return rc;
}

static int bench_pass(xf_repl *r, int n, bool cont, uint64_t *seed, xf_err *err)
{
    return bench_pass_mode(r, n, cont, seed, XF_RUN_FINISH, err);
}

/* The floor of a pass of n tokens: the weight bytes it reads at the least
 * over the memory bandwidth, in ms (0 when the bandwidth is unknown). */
static double bench_floor_ms(xf_repl *r, double bw, int n)
{
    return bw > 0 ? 1e3 * (double)model_pass_weight_bytes(r->model, n) / bw : 0;
}

typedef struct bench_opts {
    long prefill[4], decode, reps, depth;
    int n_prefill;
    const char *variants[4];
    int n_var;
    bool step_only, overhead;
    double bw; /* measured memory bandwidth, bytes/s; 0 if it could not be */
} bench_opts;

/* Splits "a,b,c" in place into at most max entries: the count, or -1 for
 * an empty entry ("1,,2", ",") or more than max (never dropped silently). */
static int bench_list(char *s, char **out, int max)
{
    int n = 0;
    for (char *p = s;;) {
        char *c = strchr(p, ',');
        if (c)
            *c = '\0';
        if (!*p || n == max)
            return -1;
        out[n++] = p;
        if (!c)
            return n;
        p = c + 1;
    }
}

/* 0 ok, 1 bad arguments (said). The --prefill and --variants words are cut
 * in place: o->variants point into argv. */
static int bench_parse(xf_repl *r, int argc, char **argv, bench_opts *o)
{
    *o = (bench_opts){.prefill = {128, 512, 0, 0}, .decode = 128, .reps = 5, .n_prefill = 2,
                      .variants = {"opt", "ref"}, .n_var = 2};
    for (int i = 1; i < argc; i++) {
        bool has = i + 1 < argc;
        if (strcmp(argv[i], "--prefill") == 0 && has) {
            char *w[4];
            int n = bench_list(argv[++i], w, 4);
            o->n_prefill = n < 0 ? 0 : n;
            for (int k = 0; k < o->n_prefill; k++)
                if (!args_long(w[k], 1, 1 << 20, &o->prefill[k]))
                    n = -1;
            if (n < 0)
                return repl_errf(r, "bench: --prefill takes 1 to 4 token counts, e.g. 128,512");
        } else if (strcmp(argv[i], "--decode") == 0 && has) {
            if (!args_long(argv[++i], 0, 1 << 20, &o->decode))
                return repl_errf(r, "bench: --decode takes a token count");
        } else if (strcmp(argv[i], "--depth") == 0 && has) {
            if (!args_long(argv[++i], 0, 1 << 24, &o->depth))
                return repl_errf(r, "bench: --depth takes a position (the tokens before the first decoded one)");
        } else if (strcmp(argv[i], "--reps") == 0 && has) {
            if (!args_long(argv[++i], 1, 1000, &o->reps))
                return repl_errf(r, "bench: --reps takes a count >= 1");
        } else if (strcmp(argv[i], "--variants") == 0 && has) {
            int n = bench_list(argv[++i], (char **)o->variants, 4);
            if (n < 0)
                return repl_errf(r, "bench: --variants takes 1 to 4 variant names, e.g. opt,ref");
            o->n_var = n;
        } else if (strcmp(argv[i], "step") == 0)
            o->step_only = true;
        else if (strcmp(argv[i], "--overhead") == 0)
            o->overhead = true;
        else
            return repl_errf(r, "bench: no argument '%s' (help bench)", argv[i]);
    }
    return 0;
}

/* The interactive loop: one `step` plus an 8-value print, timed around the
 * two handlers (output captured and dropped). 0 ok, 1 failed (said). */
static int bench_step(xf_repl *r)
{
    xf_err err = {0};
    uint64_t seed = 42;
    if (bench_pass(r, 10, false, &seed, &err) != 0)
        return repl_errf(r, "bench: %s", err.msg);
    xf_strbuf sink = {0};
    xf_strbuf *cap = r->io.capture;
    bool q = r->io.quiet;
    int nt, rc = 0, samples = 0;
    const int32_t *tk0 = exec_tokens(r->ex, &nt);
    int32_t tk[10];
    memcpy(tk, tk0, sizeof tk);
    double *st = calloc(200, sizeof *st);
    for (int rep = 0; rep < 3 && st && rc == 0; rep++) {
        exec_begin(r->ex, tk, 10, false, &err);
        xf_where w;
        exec_where(r->ex, &w);
        for (int i = 0; i < w.n_ops - 1 && samples < 200; i++) {
            char *step_argv[] = {"step", NULL};
            char *print_argv[] = {"print", (char *)exec_program(r->ex)->ops[i].name, "-n", "8", NULL};
            r->io.capture = &sink;
            r->io.quiet = true;
            double t0 = now_ms();
            int a = cmd_step(r, 1, step_argv, "");
            int b = cmd_print(r, 4, print_argv, "");
            double dt = now_ms() - t0;
            r->io.capture = cap;
            r->io.quiet = q;
            sink.len = 0;
            if (a || b) {
                rc = repl_errf(r, "bench step: a command failed");
                break;
            }
            if (rep > 0)
                st[samples++] = dt;
        }
    }
    sb_free(&sink);
    if (st && samples) {
        char m[32], mx[32];
        double worst = 0;
        for (int i = 0; i < samples; i++)
            worst = st[i] > worst ? st[i] : worst;
        pr_num(m, sizeof m, median(st, samples));
        pr_num(mx, sizeof mx, worst);
        repl_out(r, "step + print -n 8: median %s ms, max %s ms\n", m, mx);
        repl_out(r, "(over %d ops of a 10-token pass)\n", samples);
    } else if (st && rc == 0)
        repl_out(r, "step + print -n 8: nothing could be timed (no op to step to)\n");
    free(st);
    return rc;
}

/* The price of watching: decode with nothing watched, with breakpoints
 * that never fire (on the logits; on every layer's output, issue 13's
 * measure), and with check on. */
static int bench_overhead(xf_repl *r, long decode, double bw)
{
    enum { N_MODES = 4 };
    static const char *const modes[N_MODES] = {"nothing watched", "break logits if nan", "break blk.*.out if nan",
                                               "check on"};
    static const char *const pats[N_MODES] = {NULL, "logits", "blk.*.out", NULL};
    long nd = decode < r->model->n_ctx - 6 ? decode : r->model->n_ctx - 6; /* + prefill + warm-up */
    if (nd <= 0) {
        repl_out(r, "decode overhead: nothing could be timed (the context, %d positions,\n", r->model->n_ctx);
        repl_out(r, "leaves no room after the prefill and warm-up; --decode %ld)\n", decode);
        return 0;
    }
    double *dt = malloc((size_t)nd * sizeof *dt);
    if (!dt)
        return repl_errf(r, "out of memory");
    xf_err err = {0};
    int rc = 0;
    for (int mode = 0; mode < N_MODES && rc == 0; mode++) {
        int bid = -1;
        if (pats[mode] && (bid = exec_break_add(r->ex, pats[mode], "nan", NULL, NULL, NULL, &err)) < 0) {
            rc = repl_errf(r, "bench: %s", err.msg);
            break;
        }
        xf_check_mode cm = exec_check_get(r->ex);
        if (mode == N_MODES - 1)
            exec_check_set(r->ex, XF_CHECK_ON);
        uint64_t seed = 7;
        rc = bench_pass(r, 1, false, &seed, &err);
        /* warm-up: the first passes of a mode pay for allocation and graph capture */
        for (long i = 0; i < 4 && rc == 0; i++)
            rc = bench_pass_mode(r, 1, true, &seed, XF_RUN_CONTINUE, &err);
        for (long i = 0; i < nd && rc == 0; i++) {
            double t0 = now_ms();
            rc = bench_pass_mode(r, 1, true, &seed, XF_RUN_CONTINUE, &err);
            dt[i] = now_ms() - t0;
        }
        exec_check_set(r->ex, cm);
        if (bid > 0)
            exec_break_delete(r->ex, bid, NULL);
        if (rc != 0) {
            rc = repl_errf(r, "bench: %s", err.msg);
            break;
        }
        char a[32], f[32], x[32];
        double md = median(dt, (int)nd);
        pr_num(a, sizeof a, md);
        pr_floor(f, x, sizeof f, md, bench_floor_ms(r, bw, 1));
        repl_out(r, "decode, %-22s %s ms/token  floor %s  %s (median of %ld tokens)\n", modes[mode], a, f, x, nd);
    }
    free(dt);
    return rc;
}

/* prefill of n tokens, reps times after a warm-up, into t[reps] */
static int bench_prefill(xf_repl *r, const bench_opts *o, const char *variant, long n, double *t)
{
    if (n > r->model->n_ctx) {
        repl_out(r, "%-8s prefill %-6ld skipped: the context is %d tokens\n", variant, n, r->model->n_ctx);
        return 0;
    }
    xf_err err = {0};
    uint64_t seed = 1;
    for (long i = 0; i <= o->reps; i++) {
        double t0 = now_ms();
        if (bench_pass(r, (int)n, false, &seed, &err) != 0)
            return repl_errf(r, "bench: %s", err.msg);
        if (i > 0)
            t[i - 1] = now_ms() - t0;
    }
    double md = median(t, (int)o->reps);
    char a[32], b[32], label[32], f[32], x[32];
    pr_num(a, sizeof a, md);
    pr_num(b, sizeof b, 1000.0 * (double)n / md);
    pr_floor(f, x, sizeof f, md, bench_floor_ms(r, o->bw, (int)n));
    snprintf(label, sizeof label, "prefill %ld", n);
    pr_bench_row(r, variant, label, a, b, f, x, NULL);
    return 0;
}

/* one decode token after another from a prefill of max(depth, 1) tokens (the
 * first decoded token at position depth), as many as the context holds */
static int bench_decode(xf_repl *r, const char *variant, long decode, long depth, double bw)
{
    long pre = depth > 1 ? depth : 1;
    long room = r->model->n_ctx - pre;
    long nd = decode < room ? decode : room;
    if (nd <= 0) {
        /* the context holds the prefill and nothing after it */
        repl_out(r, "%-8s decode: nothing could be timed (%d position%s, prefill %ld: no room)\n", variant,
                 r->model->n_ctx, r->model->n_ctx == 1 ? "" : "s", pre);
        return 0;
    }
    xf_err err = {0};
    double *dt = malloc((size_t)nd * sizeof *dt);
    uint64_t seed = 7;
    if (!dt || bench_pass(r, (int)pre, false, &seed, &err) != 0) {
        free(dt);
        return repl_errf(r, "bench: %s", dt ? err.msg : "out of memory");
    }
    int rc = 0;
    for (long i = 0; i < nd && rc == 0; i++) {
        double t0 = now_ms();
        if (bench_pass(r, 1, true, &seed, &err) != 0)
            rc = repl_errf(r, "bench: %s", err.msg);
        dt[i] = now_ms() - t0;
    }
    if (rc == 0) {
        double md = median(dt, (int)nd);
        char a[32], b[32], label[64], f[32], x[32];
        pr_num(a, sizeof a, md);
        pr_num(b, sizeof b, 1000.0 / md);
        pr_floor(f, x, sizeof f, md, bench_floor_ms(r, bw, 1));
        if (depth > 1)
            snprintf(label, sizeof label, "decode %ld @%ld", nd, pre);
        else
            snprintf(label, sizeof label, "decode %ld", nd);
        pr_bench_row(r, variant, label, a, b, f, x, "(ms per token)");
    }
    free(dt);
    return rc;
}

/* Selects variant `name` for every op that has it and opt for the others
 * (a variant such as cpu matmul's q8 exists for one op kind only); -1 with
 * err said when no op has it. */
static int bench_select(xf_repl *r, const char *name, xf_err *err)
{
    if (exec_kernel_select(r->ex, -1, name, err) == 0)
        return 0;
    xf_err first = *err;
    int any = 0;
    for (int k = 0; k < KERN_OP_COUNT; k++)
        if (exec_kernel_select(r->ex, k, name, NULL) == 0)
            any = 1;
        else
            exec_kernel_select(r->ex, k, "opt", NULL);
    *err = first;
    return any ? 0 : -1;
}

/* every variant set: its prefills and decode, then one pass op by op with
 * the user's kernel choice (restored by the caller first) */
static int bench_variants(xf_repl *r, const bench_opts *o, const kern_variant *const *saved)
{
    xf_err err = {0};
    int rc = 0;
    double *t = calloc((size_t)o->reps + 1, sizeof *t);
    if (!t)
        return repl_errf(r, "out of memory");
    pr_bench_row(r, "variant", "run", "ms", "tokens/s", "floor", "x floor", NULL);
    for (int v = 0; v < o->n_var && rc == 0; v++) {
        if (bench_select(r, o->variants[v], &err) != 0) {
            rc = repl_errf(r, "bench: %s", err.msg);
            break;
        }
        for (int p = 0; p < o->n_prefill && rc == 0; p++)
            rc = bench_prefill(r, o, o->variants[v], o->prefill[p], t);
        if (o->decode > 0 && rc == 0)
            rc = bench_decode(r, o->variants[v], o->decode, o->depth, o->bw);
    }
    free(t);
    for (int k = 0; k < KERN_OP_COUNT; k++)
        exec_kernel_select(r->ex, k, saved[k]->name, NULL);
    if (rc == 0 && o->n_prefill > 0) {
        /* one pass op by op with the user's kernel choice: where the time goes */
        uint64_t seed = 1;
        long n = o->prefill[0] < r->model->n_ctx ? o->prefill[0] : r->model->n_ctx;
        repl_out(r, "per op kind, one %ld-token pass:\n", n);
        if (bench_pass(r, (int)n, false, &seed, &err) != 0)
            rc = repl_errf(r, "bench: %s", err.msg);
        else
            rc = cmd_profile(r, 1, NULL, "");
    }
    return rc;
}

/* A stepper of its own for the benchmarks: the user's pass, KV cache,
 * breakpoints, check mode and hooks stay as they were (a user breakpoint
 * must not stop a timed pass, nor `bench step` leave the session inside a
 * pass it made), and "nothing watched" means nothing. It has the user's
 * kernel choice and graph mode, and reads the user's weights on the device
 * (a copy would double the card's memory and take seconds a bench for a
 * large model). NULL with the reason said. */
static xf_exec *bench_scratch(xf_repl *r, const kern_variant *const *saved)
{
    xf_err err = {0};
    xf_exec *ex = exec_new_beside(r->ex, r->n_threads, &err);
    if (!ex) {
        repl_errf(r, "bench: %s", err.msg);
        return NULL;
    }
    exec_set_interrupt(ex, &r->interrupt);
    exec_set_graph_mode(ex, exec_graph_mode(r->ex));
    /* a variant a test registered exists only in the user's stepper: that op keeps the default */
    for (int k = 0; k < KERN_OP_COUNT; k++)
        exec_kernel_select(ex, k, saved[k]->name, NULL);
    return ex;
}

/* The header's memory lines: the bandwidth (measured once per process) and
 * what the floor means. The bandwidth, or 0 when it could not be measured
 * (said; the floor columns then read "-"). */
static double bench_bandwidth(xf_repl *r, xf_exec *ex)
{
    kern_membw bw;
    xf_err err = {0};
    if (exec_mem_bandwidth(ex, &bw, &err) != 0) {
        repl_out(r, "no memory floor: %s\n", err.msg);
        return 0;
    }
    char rate[32], dec[32], cache[32];
    uint64_t wb = model_pass_weight_bytes(r->model, 1);
    pr_rate(rate, sizeof rate, bw.bytes_per_s);
    pr_bytes(dec, sizeof dec, (double)wb);
    /* prose, wrapped to the terminal (80 columns when not one) */
    char t[512];
    int w = repl_width(r);
    snprintf(t, sizeof t, "memory bandwidth %s: %s", rate, bw.how);
    repl_wrap(r, t, strlen(t), 0, 2, w);
    snprintf(t, sizeof t,
             "floor: weight bytes a pass reads / bandwidth (decode: %s a token, KV cache not counted; prefill: the "
             "weights once per pass, a bound that compute-limited prefill stays far above); x floor: the time over "
             "its floor (1.00x: as fast as memory allows)",
             dec);
    repl_wrap(r, t, strlen(t), 0, 2, w);
    if (bw.cache_bytes && wb <= bw.cache_bytes) {
        pr_bytes(cache, sizeof cache, (double)bw.cache_bytes);
        snprintf(t, sizeof t, "the weights (%s) fit in the %s %s: a warm pass may run below its floor", dec, cache,
                 exec_backend(ex) == KERN_BACKEND_CUDA ? "L2" : "L3");
        repl_wrap(r, t, strlen(t), 0, 2, w);
    }
    return bw.bytes_per_s;
}

int cmd_bench(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    bench_opts o;
    if (bench_parse(r, argc, argv, &o))
        return 1;
    const kern_variant *saved[KERN_OP_COUNT];
    for (int k = 0; k < KERN_OP_COUNT; k++)
        saved[k] = exec_kernel_selected(r->ex, (kern_op)k);
    xf_exec *user = r->ex, *scratch = bench_scratch(r, saved);
    if (!scratch)
        return 1;
    char name[128];
    pr_escape(name, sizeof name, r->model->name, strlen(r->model->name));
    repl_out(r, "bench on %s, backend %s, %d thread%s;\n", name, kern_backend_name(exec_backend(user)),
             r->n_threads, r->n_threads == 1 ? "" : "s");
    repl_out(r, "medians of %ld runs after a warm-up, on a stepper of its own\n", o.reps);
    if (!o.step_only)
        o.bw = bench_bandwidth(r, scratch);
    r->ex = scratch;
    int rc;
    if (o.step_only)
        rc = bench_step(r);
    else if (o.overhead)
        rc = bench_overhead(r, o.decode, o.bw);
    else
        rc = bench_variants(r, &o, saved);
    r->ex = user;
    exec_free(scratch);
    return rc;
}
