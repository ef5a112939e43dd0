/* Lua binding tests (repl/lua_*.c): tensor handles give the numbers
 * `print --raw` gives, Lua breakpoint predicates and `break ... if <lua>` stop
 * where the predicate first holds (found here independently from the engine),
 * the sandbox refuses io/os/load/require/debug, stale handles and wrong
 * arguments fail with clear errors, xf.cmd captures without leaking into an
 * outer capture, scripts/bisect.lua names a deliberately wrong kernel
 * variant registered only here. The limits (time, Ctrl-C, memory, escaping,
 * hostile scripts) are test_lua_limits.c; the fixture is lua_util.h. */
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

static void test_values_match_print(void **state)
{
    tl *t = *state;
    cmd(t, 0, "run " PROMPT);
    cmd(t, 0, "continue");
    char *want = strdup(cmd(t, 0, "print blk.1.attn_out -n 8 --raw"));
    assert_int_equal(count_words(want), 8);

    char script[4096];
    tu_src_path(script, sizeof script, "tests/fixtures/lua/values.lua");
    char a0[] = "blk.1.attn_out", a1[] = "8";
    char *argv[] = {a0, a1};
    clear(t);
    assert_int_equal(repl_run_script(t->r, script, 2, argv), 0);
    assert_string_equal(text(t), want);

    /* the same inline, and through `source` with arguments */
    assert_string_equal(cmd(t, 0, "lua local v = xf.tensor('blk.1.attn_out'):values(8) local s = {} "
                                  "for i = 1, #v do s[i] = string.format('%%.9g', v[i]) end print(table.concat(s, ' '))"),
                        want);
    assert_string_equal(cmd(t, 0, "source %s blk.1.attn_out 8", script), want);
    free(want);

    /* indexing: 0-based, negative from the end, as REPL slices */
    char *slice = strdup(cmd(t, 0, "print blk.1.attn_out[-1, 5] --raw"));
    assert_string_equal(cmd(t, 0, "lua print(xf.raw(xf.tensor('blk.1.attn_out'):get(-1, 5)))"), slice);
    free(slice);
    slice = strdup(cmd(t, 0, "print blk.2.kq_soft[1, 2, 0] --raw"));
    assert_string_equal(cmd(t, 0, "lua print(xf.raw(xf.tensor('kq_soft_max-2'):get(1, 2, 0)))"), slice);
    free(slice);

    /* NAME@cpu: the cpu reference of the same pass */
    char *cpu = strdup(cmd(t, 0, "print blk.1.attn_out@cpu -n 8 --raw"));
    assert_int_equal(count_words(cpu), 8);
    assert_string_equal(cmd(t, 0, "source %s blk.1.attn_out@cpu 8", script), cpu);
    free(cpu);
    assert_string_equal(cmd(t, 0, "lua local d = xf.diff('blk.1.attn_out', 'blk.1.attn_out@cpu') print(d.ok, d.n)"),
                        "true\t1920\n");

    /* shape, #, stats against the engine's own numbers */
    xf_err err = {{0}};
    int op = exec_tensor_find(t->r->ex, "blk.1.attn_out", &err);
    assert_true(op >= 0);
    const xf_op *o = &exec_program(t->r->ex)->ops[op];
    float *h = malloc((size_t)o->numel * sizeof(float));
    assert_int_equal(exec_tensor_read(t->r->ex, op, h, &err), 0);
    xf_stats s;
    tensor_stats(h, (size_t)o->numel, &s);
    free(h);
    char want2[256], a[32], b[32];
    pr_raw(a, sizeof a, s.absmax);
    pr_raw(b, sizeof b, s.std);
    snprintf(want2, sizeof want2, "%lld\t%lld\t%lld\t%s\t%s\t0\t0\n", (long long)o->shape[0], (long long)o->shape[1],
             (long long)o->numel, a, b);
    assert_string_equal(cmd(t, 0, "lua local t = xf.tensor('blk.1.attn_out') local s = t:stats() "
                                  "print(t:shape()[1], t:shape()[2], #t, xf.raw(s.absmax), xf.raw(s.std), s.nan, s.inf)"),
                        want2);
    /* tostring names the tensor, its variant and pass */
    assert_has(cmd(t, 0, "lua print(xf.tensor('blk.1.attn_out'))"), "tensor blk.1.attn_out [");
    assert_has(text(t), "(pass 1)");
}

/* --- 1b. Lua breakpoint predicates stop where they first hold ---------------------- */

/* The op of blk.3 after which `absmax > x` first holds, x = absmax of blk.3's first op. */
static int expected_stop(tl *t, double *x)
{
    cmd(t, 0, "run " PROMPT);
    cmd(t, 0, "finish");
    const xf_program *p = exec_program(t->r->ex);
    xf_err err = {{0}};
    int first = -1, hit = -1;
    for (int i = 0; i < p->n_ops && hit < 0; i++) {
        if (strncmp(p->ops[i].name, "blk.3.", 6) != 0)
            continue;
        float *h = malloc((size_t)p->ops[i].numel * sizeof(float));
        assert_non_null(h);
        assert_int_equal(exec_tensor_read(t->r->ex, i, h, &err), 0);
        xf_stats s;
        tensor_stats(h, (size_t)p->ops[i].numel, &s);
        free(h);
        if (first < 0) {
            first = i;
            *x = s.absmax;
        } else if (s.absmax > *x)
            hit = i;
    }
    assert_true(first >= 0 && hit > first);
    /* an earlier layer passes the threshold too: a predicate that ignored the name would stop there */
    bool earlier = false;
    for (int i = 0; i < first && !earlier; i++) {
        float *h = malloc((size_t)p->ops[i].numel * sizeof(float));
        assert_int_equal(exec_tensor_read(t->r->ex, i, h, &err), 0);
        xf_stats s;
        tensor_stats(h, (size_t)p->ops[i].numel, &s);
        free(h);
        earlier = s.absmax > *x;
    }
    assert_true(earlier);
    return hit;
}

static void test_brk_predicate(void **state)
{
    tl *t = *state;
    double x;
    int hit = expected_stop(t, &x);
    char want[XF_NAME_MAX]; /* the program goes with the next pass */
    snprintf(want, sizeof want, "%s", exec_program(t->r->ex)->ops[hit].name);
    char wantline[128];

    /* xf.brk with a Lua function */
    cmd(t, 0, "run " PROMPT);
    assert_string_equal(cmd(t, 0, "lua xf.brk('blk.*', function(t, name) "
                                  "return name:find('^blk%%.3%%.') ~= nil and t:stats().absmax > %.17g end)",
                            x),
                        "1\n");
    snprintf(wantline, sizeof wantline, "breakpoint 1 (blk.*) hit after %s\n", want);
    assert_has(cmd(t, 0, "continue"), wantline);
    xf_where w;
    exec_where(t->r->ex, &w);
    assert_int_equal(w.last, hit);
    assert_has(cmd(t, 0, "info breaks"), "<lua function>");

    /* the same from Lua: xf.continue reports the stop */
    cmd(t, 0, "run " PROMPT);
    snprintf(wantline, sizeof wantline, "break\t%s\t1\n", want);
    assert_string_equal(cmd(t, 0, "lua local w = xf.continue() print(w.stop, w.op, w.break_id)"), wantline);
    exec_where(t->r->ex, &w);
    assert_int_equal(w.last, hit);

    /* break PATTERN if <lua expr>: t, name and op are bound */
    cmd(t, 0, "delete");
    cmd(t, 0, "run " PROMPT);
    cmd(t, 0, "break blk.3.* if t:stats().absmax > %.17g and name == xf.ops()[op + 1].name", x);
    snprintf(wantline, sizeof wantline, "hit after %s\n", want);
    assert_has(cmd(t, 0, "continue"), wantline);
    exec_where(t->r->ex, &w);
    assert_int_equal(w.last, hit);
    snprintf(wantline, sizeof wantline, "%s\n", want);
    assert_string_equal(cmd(t, 0, "lua xf.where().op"), wantline);

    /* a predicate that is never true lets the pass end */
    cmd(t, 0, "delete");
    cmd(t, 0, "run " PROMPT);
    cmd(t, 0, "lua xf.brk('blk.*', function() return false end)");
    assert_has(cmd(t, 0, "continue"), "complete");

    /* not an expression: the break command says so */
    assert_has(cmd(t, 1, "break embd if t:stats("), "not a Lua expression");
}

/* --- 2. the sandbox ---------------------------------------------------------------- */

static void test_sandbox(void **state)
{
    tl *t = *state;
    const char *refused[][2] = {
        {"io.open('/etc/passwd')", "io.open is disabled in the sandbox"},
        {"os.execute('true')", "os.execute is disabled in the sandbox"},
        {"os.getenv('HOME')", "os.getenv is disabled in the sandbox"},
        {"require('os')", "require is disabled in the sandbox"},
        {"load('return 1')", "load is disabled in the sandbox"},
        {"loadfile('x.lua')", "loadfile is disabled in the sandbox"},
        {"dofile('x.lua')", "dofile is disabled in the sandbox"},
        {"debug.getregistry()", "debug.getregistry is disabled in the sandbox"},
        {"string.dump(print)", "string.dump is disabled in the sandbox"},
        {"package.loadlib('x', 'y')", "package.loadlib is disabled in the sandbox"},
        {"collectgarbage('stop')", "collectgarbage(\"stop\") is disabled in the sandbox"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        assert_has(cmd(t, 1, "lua %s", refused[i][0]), refused[i][1]);
        assert_has(text(t), "--unsafe-lua");
    }
    /* what stays */
    assert_string_equal(cmd(t, 0, "lua collectgarbage('count') > 0"), "true\n");
    assert_string_equal(cmd(t, 0, "lua type(os.clock()) .. type(os.time()) .. type(os.date('%%Y'))"),
                        "numbernumberstring\n");
    assert_string_equal(cmd(t, 0, "lua string.format('%%5.2f', math.pi) .. utf8.char(72) .. #table.pack(1, 2)"),
                        " 3.14H2\n");
    assert_string_equal(cmd(t, 0, "lua coroutine.wrap(function() coroutine.yield(7) end)()"), "7\n");

    /* --unsafe-lua: the full library */
    tl u = {0};
    u.r = new_repl(&u, true);
    assert_string_equal(cmd(&u, 0, "lua type(io.open) .. type(os.execute) .. type(debug.getregistry())"),
                        "functionfunctiontable\n");
    assert_string_equal(cmd(&u, 0, "lua require('xf') == xf"), "true\n");
    repl_free(u.r);
    sb_free(&u.out);
}

static void bisect(tl *t, const char *extra, int want_rc)
{
    char script[4096], ref[4096];
    tu_src_path(script, sizeof script, "scripts/bisect.lua");
    tu_src_path(ref, sizeof ref, TU_MODEL_REF);
    char e[64];
    snprintf(e, sizeof e, "%s", extra ? extra : "");
    char *argv[] = {ref, e};
    clear(t);
    /* ten passes or more: under sanitizers that takes longer than the default limit */
    t->r->lua_timeout = 600;
    int rc = repl_run_script(t->r, script, extra ? 2 : 1, argv);
    if (rc != want_rc) {
        size_t n = strlen(text(t));
        fail_msg("bisect.lua returned %d; output ends:\n%s", rc, text(t) + (n > 800 ? n - 800 : 0));
    }
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static void test_bisect(void **state)
{
    tl *t = *state;
    xf_err err = {{0}};
    /* with the built-in kernels there is nothing to find */
    bisect(t, NULL, 0);
    assert_has(text(t), "nothing to bisect");

    assert_int_equal(exec_variant_add(t->r->ex, &k_wrong_norm, &err), 0);
    assert_int_equal(exec_variant_add(t->r->ex, &k_wrong_gelu, &err), 0);
    assert_has(cmd(t, 0, "lua for _, k in ipairs(xf.kernels()) do if k.name == 'wrong_eps' then "
                         "print(k.op, k.backend, k.selected, k.doc) end end"),
               "norm\tcpu\tfalse\tLayerNorm with eps x1000 (tests only)\n");
    assert_int_equal(exec_kernel_select(t->r->ex, KERN_OP_NORM, "wrong_eps", &err), 0);

    /* the variant is really wrong: the first tensor over tolerance is a norm */
    char run[4096];
    ref_prompt_cmd(run, sizeof run);
    char refp[4096];
    tu_src_path(refp, sizeof refp, TU_MODEL_REF);
    cmd(t, 0, "ref load %s", refp);
    cmd(t, 0, "%s", run);
    cmd(t, 0, "finish");
    assert_has(cmd(t, 0, "compare"), "first tensor over tolerance: blk.0.attn_norm");

    bisect(t, NULL, 0);
    assert_has(text(t), "baseline: blk.0.attn_norm (norm/wrong_eps) over tolerance");
    assert_has(text(t), "culprit: op kind norm, variant wrong_eps (backend cpu)");
    assert_int_equal(count_of(text(t), "culprit:"), 1);
    /* the selection is left as it was */
    assert_string_equal(exec_kernel_selected(t->r->ex, KERN_OP_NORM)->name, "wrong_eps");
    assert_string_equal(exec_kernel_selected(t->r->ex, KERN_OP_MATMUL)->name, "opt");

    bisect(t, "--logits", 0);
    assert_has(text(t), "judging the logits");
    assert_has(text(t), "culprit: op kind norm, variant wrong_eps (backend cpu)");

    /* another kind, so the answer is not always the same */
    assert_int_equal(exec_kernel_select(t->r->ex, KERN_OP_NORM, "opt", &err), 0);
    assert_int_equal(exec_kernel_select(t->r->ex, KERN_OP_GELU, "wrong_scale", &err), 0);
    bisect(t, NULL, 0);
    assert_has(text(t), "culprit: op kind gelu, variant wrong_scale (backend cpu)");
    assert_int_equal(count_of(text(t), "culprit:"), 1);

    /* two wrong kinds: neither alone fixes the pass; the cumulative pass names both, and only them */
    assert_int_equal(exec_kernel_select(t->r->ex, KERN_OP_NORM, "wrong_eps", &err), 0);
    bisect(t, NULL, 0);
    assert_has(text(t), "culprit: op kind norm, variant wrong_eps (backend cpu); only together with the others: "
                        "norm/wrong_eps, gelu/wrong_scale\n");
    assert_has(text(t), "culprit: op kind gelu, variant wrong_scale (backend cpu); only together");
    assert_int_equal(count_of(text(t), "culprit:"), 2);
    assert_string_equal(exec_kernel_selected(t->r->ex, KERN_OP_NORM)->name, "wrong_eps");
    assert_string_equal(exec_kernel_selected(t->r->ex, KERN_OP_GELU)->name, "wrong_scale");
}

/* --- 4. the binding: handles, errors, capture, generation ---------------------------- */

static void test_stale_handles(void **state)
{
    tl *t = *state;
    char refp[4096];
    tu_src_path(refp, sizeof refp, TU_MODEL_REF);
    cmd(t, 0, "ref load %s", refp);
    cmd(t, 0, "run " PROMPT);
    cmd(t, 0, "step 2");
    cmd(t, 0, "lua e = xf.tensor('embd') r = xf.tensor('logits@ref') w = xf.tensor('blk.0.attn_norm.weight')");
    assert_has(cmd(t, 0, "lua #e"), "\n");
    /* stepping within the pass keeps handles valid */
    cmd(t, 0, "step");
    cmd(t, 0, "lua e:values(1)");
    /* a new pass from Lua */
    cmd(t, 0, "lua xf.run('hello')");
    assert_has(cmd(t, 1, "lua e:values(1)"), "stale tensor handle: embd is from pass 1, and a new pass started");
    assert_has(cmd(t, 0, "lua tostring(e)"), "(stale)");
    /* references and weights do not depend on the pass */
    cmd(t, 0, "lua r:get(0, 0) w:get(0)");
    /* a new pass from the prompt */
    cmd(t, 0, "lua xf.step() e = xf.tensor('embd')");
    cmd(t, 0, "run " PROMPT);
    assert_has(cmd(t, 1, "lua e:get(0, 0)"), "stale tensor handle");
    assert_has(cmd(t, 1, "lua xf.diff(e, 'embd@ref')"), "stale tensor handle");
    /* a reload makes every handle stale */
    char model[4096];
    tu_src_path(model, sizeof model, TU_MODEL);
    cmd(t, 0, "lua xf.step() e = xf.tensor('embd') m = xf.load('%s')", model);
    assert_string_equal(cmd(t, 0, "lua m.arch .. ' ' .. m.n_layer .. ' ' .. xf.model().n_vocab"), "gpt2 6 50257\n");
    assert_has(cmd(t, 1, "lua #e"), "the model was loaded again");
    assert_has(cmd(t, 1, "lua w:shape()"), "stale tensor handle: blk.0.attn_norm.weight is from a model that was unloaded");
    assert_has(cmd(t, 1, "lua r:stats()"), "stale tensor handle");
    /* and so does `load` at the prompt */
    cmd(t, 0, "run " PROMPT);
    cmd(t, 0, "lua xf.step() e = xf.tensor('embd')");
    cmd(t, 0, "load %s", model);
    assert_has(cmd(t, 1, "lua e:values()"), "stale tensor handle");
    /* a failed load leaves the model, and the handles */
    cmd(t, 0, "run " PROMPT);
    cmd(t, 0, "lua xf.step() e = xf.tensor('embd')");
    assert_has(cmd(t, 1, "lua xf.load('/nonexistent/model.gguf')"), "xf.load: ");
    cmd(t, 0, "lua e:values(1)");
}

static void test_errors(void **state)
{
    tl *t = *state;
    /* before a pass */
    assert_has(cmd(t, 1, "lua xf.step()"), "xf.step: no pass yet");
    assert_has(cmd(t, 1, "lua xf.tensor('embd')"), "no pass");
    /* wrong types */
    assert_has(cmd(t, 1, "lua xf.tensor({})"), "bad argument #1 to 'tensor' (string expected, got table)");
    assert_has(cmd(t, 1, "lua xf.step('x')"), "bad argument #1 to 'step' (number expected, got string)");
    assert_has(cmd(t, 1, "lua xf.step(0)"), "bad argument #1 to 'step' (step count must be >= 1)");
    assert_has(cmd(t, 1, "lua xf.brk('embd', 5)"), "bad argument #2 to 'brk' (function expected, got number)");
    assert_has(cmd(t, 1, "lua xf.on_op('x')"), "bad argument #1 to 'on_op' (function expected, got string)");
    assert_has(cmd(t, 1, "lua xf.run('')"), "xf.run: the prompt has no tokens");
    assert_has(cmd(t, 1, "lua xf.run(true)"), "bad argument #1 to 'run' (string expected, got boolean)");
    assert_has(cmd(t, 1, "lua xf.run({1, 'x'})"), "ids[2] is not a token id");
    assert_has(cmd(t, 1, "lua xf.run({99999999})"), "outside the vocabulary");
    assert_has(cmd(t, 1, "lua xf.diff(1, 2)"), "bad argument #1 to 'diff' (tensor name or xf.tensor handle expected");
    assert_has(cmd(t, 1, "lua xf.generate('x')"), "bad argument #1 to 'generate'");
    assert_has(cmd(t, 1, "lua xf.detokenize({-1})"), "ids[1] is not a token id");
    assert_has(cmd(t, 1, "lua xf.kernel('nope', 'ref')"), "xf.kernel: unknown op kind 'nope'");
    assert_has(cmd(t, 1, "lua xf.kernel('norm', 'nope')"), "xf.kernel: ");
    assert_has(cmd(t, 1, "lua xf.brk('no.such.*')"), "matches no op");
    assert_has(cmd(t, 1, "lua xf.ref_names()"), "no reference loaded");
    assert_has(cmd(t, 1, "lua xf.tensor('x@gpu')"), "NAME@ref (a dump loaded with");
    /* handles */
    cmd(t, 0, "run " PROMPT);
    assert_has(cmd(t, 1, "lua xf.tensor('blk.0.out')"), "blk.0.out is not computed yet in this pass (next op: embd)");
    cmd(t, 0, "step");
    cmd(t, 0, "lua e = xf.tensor('embd')");
    assert_has(cmd(t, 1, "lua e:get(0)"), "t:get needs 2 indices for embd [");
    assert_has(cmd(t, 1, "lua e:get(0, 192)"), "index 192 out of range for dimension 1 of embd (size 192)");
    assert_has(cmd(t, 1, "lua e:get(-11, 0)"), "out of range for dimension 0");
    assert_has(cmd(t, 1, "lua e:get(0, 1.5)"), "number has no integer representation");
    assert_has(cmd(t, 1, "lua e:values(-1)"), "count must be >= 0");
    assert_has(cmd(t, 1, "lua e.get(42, 0, 0)"), "xf.tensor expected");
    assert_has(cmd(t, 1, "lua xf.diff('embd', 'blk.0.attn_norm.weight')"), "differ in size");
    assert_has(cmd(t, 1, "lua xf.generate(1, {temp = -1})"), "opts.temp must be >= 0");
    assert_has(cmd(t, 1, "lua xf.generate(1, {seed = 1.5})"), "opts.seed must be an integer");
    /* callbacks may not drive the stepper */
    cmd(t, 0, "lua xf.brk('blk.0.attn_norm', function() xf.step() return true end)");
    assert_has(cmd(t, 1, "continue"), "xf.step: not allowed inside a breakpoint condition or on_op hook");
    cmd(t, 0, "delete");
    cmd(t, 0, "lua xf.on_op(function() xf.cmd('where') end)");
    assert_has(cmd(t, 1, "lua xf.continue()"), "xf.cmd: not allowed inside");
    cmd(t, 0, "lua xf.on_op(nil)");
    /* a Lua error: the message, then the traceback */
    const char *o = cmd(t, 1, "lua local function f() error('boom') end f()");
    assert_true(strncmp(o, "error: lua:1: boom\n  stack traceback:\n", 38) == 0);
    assert_has(o, "in local 'f'");
    assert_has(cmd(t, 1, "lua x = = 1"), "error: lua:1: unexpected symbol near '='");
    assert_has(cmd(t, 1, "source /nonexistent.lua"), "cannot open /nonexistent.lua");
    assert_has(cmd(t, 1, "lua"), "usage: lua CODE");
    assert_has(cmd(t, 1, "source"), "usage: source FILE.lua");
    /* after all that, the shell works */
    assert_has(cmd(t, 0, "where"), "at op 3/93 blk.0.qkv");
}

static void test_cmd_capture(void **state)
{
    tl *t = *state;
    cmd(t, 0, "run " PROMPT);
    cmd(t, 0, "step 3");
    char *where = strdup(cmd(t, 0, "where"));
    /* nothing reaches the outer capture but what print writes */
    assert_string_equal(cmd(t, 0, "lua s = xf.cmd('where')"), "");
    char want[1024];
    snprintf(want, sizeof want, "%s\n", where);
    assert_string_equal(cmd(t, 0, "lua print(s)"), want);
    free(where);
    /* failures: nil, the error text, the whole output */
    char *err = strdup(cmd(t, 1, "print no.such"));
    assert_true(strncmp(err, "error: ", 7) == 0);
    snprintf(want, sizeof want, "true\t%.*s\n", (int)strlen(err) - 8, err + 7);
    assert_string_equal(cmd(t, 0, "lua local a, b, c = xf.cmd('print no.such') print(a == nil, b)"), want);
    snprintf(want, sizeof want, "%s\n", err);
    assert_string_equal(cmd(t, 0, "lua print(select(3, xf.cmd('print no.such')))"), want);
    free(err);
    /* nested: a lua command inside xf.cmd, and its error */
    assert_string_equal(cmd(t, 0, "lua print(xf.cmd('lua print(40 + 2)'))"), "42\n\n");
    assert_string_equal(cmd(t, 0, "lua print((select(2, xf.cmd('lua error(\"inner\")'))))"), "lua:1: inner\n");
    /* stepping through xf.cmd is what the commands do (Enter-repeat lives in
     * the interactive loop, which only sees typed lines) */
    assert_has(cmd(t, 0, "lua print(xf.cmd('next'))"), "at op");
    /* a handle taken before a new pass made by xf.cmd is stale */
    cmd(t, 0, "lua e = xf.tensor('embd') xf.cmd('run hi')");
    assert_has(cmd(t, 1, "lua #e"), "stale tensor handle");
}

static void test_generate_tokenize(void **state)
{
    tl *t = *state;
    cmd(t, 0, "run " PROMPT);
    char *want = strdup(cmd(t, 0, "generate 6 --ids"));
    assert_int_equal(count_words(want), 6);
    cmd(t, 0, "run " PROMPT);
    assert_string_equal(cmd(t, 0, "lua ids, text = xf.generate(6)"), "");
    assert_string_equal(cmd(t, 0, "lua print(table.concat(ids, ' '))"), want);
    assert_string_equal(cmd(t, 0, "lua text == xf.detokenize(ids) and #text > 0"), "true\n");
    free(want);
    /* seeded sampling reproduces */
    cmd(t, 0, "run " PROMPT);
    want = strdup(cmd(t, 0, "generate 5 --temp 0.8 --top-k 40 --top-p 0.9 --seed 7 --ids"));
    cmd(t, 0, "run " PROMPT);
    assert_string_equal(cmd(t, 0, "lua print(table.concat(xf.generate(5, {temp = 0.8, top_k = 40, top_p = 0.9, "
                                  "seed = 7}), ' '))"),
                        want);
    free(want);
    /* tokenize / detokenize */
    want = strdup(cmd(t, 0, "tokenize --ids \"Hello, world<|endoftext|>\""));
    assert_string_equal(cmd(t, 0, "lua print(table.concat(xf.tokenize('Hello, world<|endoftext|>'), ' '))"), want);
    free(want);
    want = strdup(cmd(t, 0, "tokenize --ids --no-special \"a<|endoftext|>\""));
    assert_string_equal(cmd(t, 0, "lua print(table.concat(xf.tokenize('a<|endoftext|>', false), ' '))"), want);
    free(want);
    assert_string_equal(cmd(t, 0, "lua xf.detokenize(xf.tokenize('caf\\u{e9} \\n ok'))"), "caf\xc3\xa9 \n ok\n");
}

static void test_on_op_and_run(void **state)
{
    tl *t = *state;
    xf_err err = {{0}};
    cmd(t, 0, "run " PROMPT);
    int target = exec_tensor_find(t->r->ex, "blk.2.out", &err);
    assert_true(target > 0);
    char want[256];
    snprintf(want, sizeof want, "hook\tblk.2.out\t%d\t%d\n", target + 1, target);
    assert_string_equal(cmd(t, 0, "lua n = 0 xf.on_op(function(name, op) n = n + 1 return name == 'blk.2.out' end) "
                                  "local w = xf.continue() print(w.stop, w.op, n, w.last)"),
                        want);
    assert_has(cmd(t, 0, "where"), "blk.2.out");
    cmd(t, 0, "lua xf.on_op(nil)");
    assert_string_equal(cmd(t, 0, "lua xf.continue().stop"), "end\n");
    /* run from ids; step / next / finish report where they stopped */
    char run[4096];
    ref_prompt_cmd(run, sizeof run);
    const char *ids = run + strlen("run --tokens ");
    assert_string_equal(cmd(t, 0, "lua local w = xf.run({%s}) print(w.pass, w.pc, w.n_tokens, w.next, w.op)", ids),
                        "2\t0\t10\tembd\tnil\n");
    assert_string_equal(cmd(t, 0, "lua local w = xf.step(2) print(w.stop, w.op, w.layer, w.pc)"),
                        "step\tblk.0.attn_norm\t0\t2\n");
    assert_string_equal(cmd(t, 0, "lua local w = xf.next() print(w.stop, w.layer, w.next)"), "step\t0\tblk.1.attn_norm\n");
    assert_string_equal(cmd(t, 0, "lua local w = xf.finish() print(w.stop, w.op, w.complete)"), "end\tlogits\ttrue\n");
    /* xf.ops lists the program */
    assert_string_equal(cmd(t, 0, "lua local o = xf.ops() print(#o, o[1].name, o[1].kind, o[#o].name, o[2].shape[2])"),
                        "93\tembd\tembd\tlogits\t192\n");
}

static void test_diff_and_kernels(void **state)
{
    tl *t = *state;
    char refp[4096], run[4096];
    tu_src_path(refp, sizeof refp, TU_MODEL_REF);
    ref_prompt_cmd(run, sizeof run);
    assert_string_equal(cmd(t, 0, "lua xf.ref_load('%s')", refp), "72\n");
    cmd(t, 0, "%s", run);
    cmd(t, 0, "finish");
    /* the metrics the engine computes on the same data */
    xf_err err = {{0}};
    int op = exec_tensor_find(t->r->ex, "logits", &err);
    const xf_op *o = &exec_program(t->r->ex)->ops[op];
    float *a = malloc((size_t)o->numel * sizeof(float)), *b = malloc((size_t)o->numel * sizeof(float));
    assert_int_equal(exec_tensor_read(t->r->ex, op, a, &err), 0);
    const refdump *rd = exec_ref(t->r->ex);
    const refdump_tensor *rt = refdump_find(rd, "logits");
    assert_non_null(rt);
    assert_int_equal(refdump_read_f32(rd, rt, b, &err), 0);
    xf_diff d;
    tensor_diff_rel(a, b, (size_t)o->numel, exec_tolerance(o->kind), &d);
    free(a);
    free(b);
    char x[4][32], want[256];
    pr_raw(x[0], 32, d.max_abs);
    pr_raw(x[1], 32, d.nmse);
    pr_raw(x[2], 32, d.cosine);
    pr_raw(x[3], 32, d.tol);
    snprintf(want, sizeof want, "%s %s %s %s %lld %lld true 1.0\n", x[0], x[1], x[2], x[3], (long long)d.n_over,
             (long long)d.first_over);
    assert_string_equal(cmd(t, 0, "lua local d = xf.diff('logits', 'result_output@ref') "
                                  "print(xf.raw(d.max_abs) .. ' ' .. xf.raw(d.nmse) .. ' ' .. xf.raw(d.cosine) .. ' ' "
                                  ".. xf.raw(d.tol) .. ' ' .. d.n_over .. ' ' .. d.first_over .. ' ' .. tostring(d.ok) "
                                  ".. ' ' .. d.top1)"),
                        want);
    /* handles and a tolerance of 0: every differing element is over */
    assert_string_equal(cmd(t, 0, "lua local d = xf.diff(xf.tensor('embd'), xf.tensor('embd'), 0) "
                                  "print(d.max_abs, d.n_over, d.cosine, d.ok)"),
                        "0.0\t0\t1.0\ttrue\n");
    assert_string_equal(cmd(t, 0, "lua local d = xf.diff('blk.0.attn_norm', 'blk.0.attn_norm@ref', 0) "
                                  "print(d.n_over > 0, d.ok, d.first_over >= 0)"),
                        "true\tfalse\ttrue\n");

    /* kernels: the registry as exec lists it */
    const kern_variant *vs[256];
    int n = exec_variants(t->r->ex, vs, 256);
    snprintf(want, sizeof want, "%d\n", n);
    assert_string_equal(cmd(t, 0, "lua #xf.kernels()"), want);
    assert_string_equal(cmd(t, 0, "lua xf.kernel('norm', 'ref')"), "");
    assert_string_equal(exec_kernel_selected(t->r->ex, KERN_OP_NORM)->name, "ref");
    assert_string_equal(cmd(t, 0, "lua for _, k in ipairs(xf.kernels()) do if k.selected and k.op == 'norm' then "
                                  "print(k.name, k.backend) end end"),
                        "ref\tcpu\n");
    cmd(t, 0, "lua xf.kernel('all', 'ref')");
    assert_string_equal(exec_kernel_selected(t->r->ex, KERN_OP_MATMUL)->name, "ref");
    /* expressions print their values; tables with sorted keys */
    assert_string_equal(cmd(t, 0, "lua xf.show({b = 1, a = {2, 3}, 'x'})"), "{\"x\", a={2, 3}, b=1}\n");
    assert_string_equal(cmd(t, 0, "lua 1, 'two', nil"), "1\ttwo\tnil\n");
    assert_string_equal(cmd(t, 0, "lua x = 5"), "");
}

/* --- 5. no control byte from Lua reaches the terminal (issue 14 item 8) ------------ */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_values_match_print, setup, teardown),
        cmocka_unit_test_setup_teardown(test_brk_predicate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sandbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bisect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_handles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cmd_capture, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generate_tokenize, setup, teardown),
        cmocka_unit_test_setup_teardown(test_on_op_and_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_diff_and_kernels, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
