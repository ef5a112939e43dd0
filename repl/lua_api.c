/* lua_api: Lua 5.4 scripting. Owns the Lua state of a session (r->lua,
 * created on first use), the `xf` module over the same engine calls the
 * commands use, the sandbox (a reduced standard library, a memory cap, an
 * instruction-count hook that enforces the time limit and Ctrl-C), Lua
 * breakpoint conditions and the on-op hook, and tensor handles (userdata
 * holding a snapshot of one tensor, refused once their pass or model is gone).
 *
 * Every entry from C into Lua is a lua_pcall of a C function, so that no Lua
 * error (including "not enough memory" from the capped allocator) can
 * longjmp through engine code or reach the panic handler. Engine calls that
 * can call back into Lua (exec_run through breakpoint predicates and the
 * on-op hook) run with the thread that made them recorded in ctx->cur, and
 * callbacks may not start passes, step, load or change breakpoints: the
 * stepper is in the middle of an op loop. The API reference for users is
 * scripts/README.md. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "exec.h"
#include "lua_api.h"
#include "program.h"
#include "quant.h"
#include "refdump.h"
#include "repl.h"
#include "tensor.h"
#include "tokenizer.h"

#define LX_MEM_CAP ((size_t)256 << 20) /* bytes the Lua heap may hold, tensor snapshots included */
#define LX_HOOK_COUNT 1000             /* VM instructions between limit checks */
#define LX_MAX_DEPTH 16                /* nested `lua`/`source` through xf.cmd */
#define LX_MAX_DIMS 8                  /* refdump tensors may have up to 8 dims */
#define LX_TENSOR_MT "xf.tensor"
#define LX_BOX_MT "xf.box"

typedef struct lx_ctx {
    lua_State *L;   /* main thread */
    lua_State *cur; /* the thread whose Lua code is running now (a coroutine may drive the engine) */
    xf_repl *r;
    size_t mem_used, mem_cap;
    bool unsafe;
    int depth;       /* Lua entries in progress: commands, scripts, callbacks */
    int in_callback; /* breakpoint predicates / on-op hooks running inside exec_run */
    struct timespec start; /* of the outermost entry: the time limit counts from here */
    double limit;          /* seconds; <= 0: none */
    bool killed;           /* time limit or Ctrl-C: pcall may not swallow the error */
    char kill_msg[160];
    /* what tensor handles were taken from: bumped when the model or the pass changes */
    const void *seen_ex, *seen_model;
    int seen_pass;
    unsigned long load_gen, pass_gen;
    int hook_ref; /* xf.on_op function, LUA_NOREF if none */
    int show_ref; /* the value formatter (for `lua EXPR` results and xf.show) */
    bool closing;  /* lua_close is running finalizers: the xf module is gone */
    /* The watchdog: the count hook cannot stop code that runs no Lua
     * instructions (a backtracking string.find, any __gc finalizer, which Lua
     * runs with hooks off). A thread ends the process, with a message, when a
     * Lua entry outside the engine overruns its limit by LX_GRACE seconds, or
     * ignores a Ctrl-C that long; engine work stops at op boundaries itself. */
    pthread_t wd;
    bool wd_started;
    atomic_bool wd_stop;
    atomic_int active;        /* Lua entries in progress */
    atomic_int engine;        /* of those, inside an engine call (not a Lua callback) */
    atomic_llong start_ns;    /* of the outermost entry */
    atomic_llong limit_ns;    /* 0: none */
} lx_ctx;

/* A tensor handle: a snapshot of the values when xf.tensor() was called. */
typedef struct lx_tensor {
    unsigned long load_gen, pass_gen;
    bool per_pass; /* an activation: stale once the next pass starts */
    int pass_no;
    int op;        /* program op, -1 for NAME@ref and weights */
    int ndim;
    int64_t shape[LX_MAX_DIMS];
    int64_t numel;
    char name[160];
    char what[64];
    float data[]; /* [numel] */
} lx_tensor;

/* Host memory the engine hands back (malloc'd), owned by a userdata so a Lua
 * error between getting it and freeing it cannot leak it. */
typedef struct lx_box {
    void *p;
    xf_strbuf sb;
} lx_box;

typedef struct lx_cond {
    lx_ctx *c;
    int ref; /* predicate function in the registry */
} lx_cond;

enum { LX_JOB_CODE, LX_JOB_SCRIPT };

typedef struct lx_job {
    int kind;
    const char *code; /* LX_JOB_CODE */
    const char *path; /* LX_JOB_SCRIPT */
    int argc;
    char **argv;
    bool load_failed; /* report without a traceback */
} lx_job;

static lx_ctx *lx_get(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    lx_ctx *c = ud;
    if (c->closing)
        luaL_error(L, "xf is closed (the Lua state is closing)");
    return c;
}

#define LX_GRACE 1.0

static long long lx_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void *lx_watchdog(void *arg)
{
    lx_ctx *c = arg;
    long long int_since = 0;
    while (!atomic_load(&c->wd_stop)) {
        usleep(50000);
        long long now = lx_now_ns(), lim = atomic_load(&c->limit_ns);
        bool lua_running = atomic_load(&c->active) > 0 && atomic_load(&c->engine) == 0;
        int_since = lua_running && c->r->interrupt ? (int_since ? int_since : now) : 0;
        bool over = lua_running && lim > 0 && now - atomic_load(&c->start_ns) > lim + (long long)(LX_GRACE * 1e9);
        bool deaf = int_since && now - int_since > (long long)(2 * LX_GRACE * 1e9);
        if (over || deaf) {
            /* nothing else can stop it: a C library call or a finalizer runs no hooks */
            static const char msg[] = "xfdb: Lua code ran past its time limit (or ignored Ctrl-C) where it cannot be "
                                      "stopped (a C function such as string.find, or a __gc finalizer); exiting\n";
            ssize_t w = write(2, msg, sizeof msg - 1);
            (void)w;
            _exit(1);
        }
    }
    return NULL;
}

/* brackets around engine calls: the watchdog leaves engine work alone */
#define LX_ENGINE(c, stmt)                                                                                   \
    do {                                                                                                     \
        atomic_fetch_add(&(c)->engine, 1);                                                                   \
        stmt;                                                                                                \
        atomic_fetch_sub(&(c)->engine, 1);                                                                   \
    } while (0)

/* --- allocator, limits ------------------------------------------------------------ */

static void *lx_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    lx_ctx *c = ud;
    size_t old = ptr ? osize : 0; /* with ptr NULL, osize is a type tag */
    if (nsize == 0) {
        free(ptr);
        c->mem_used -= old;
        return NULL;
    }
    if (nsize > old && nsize - old > c->mem_cap - c->mem_used)
        return NULL; /* Lua raises "not enough memory" after an emergency collection */
    void *p = realloc(ptr, nsize);
    if (!p)
        return NULL;
    c->mem_used = c->mem_used - old + nsize;
    return p;
}

static double lx_elapsed(const lx_ctx *c)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - c->start.tv_sec) + 1e-9 * (double)(now.tv_nsec - c->start.tv_nsec);
}

static void lx_begin_outer(lx_ctx *c)
{
    clock_gettime(CLOCK_MONOTONIC, &c->start);
    c->limit = c->r->lua_timeout;
    c->killed = false;
    atomic_store(&c->start_ns, (long long)c->start.tv_sec * 1000000000LL + c->start.tv_nsec);
    atomic_store(&c->limit_ns, c->limit > 0 ? (long long)(c->limit * 1e9) : 0);
}

static int lx_raise_killed(lua_State *L, lx_ctx *c, int level)
{
    luaL_where(L, level);
    lua_pushstring(L, c->kill_msg);
    lua_concat(L, 2);
    return lua_error(L);
}

static void lx_count_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lx_ctx *c = lx_get(L);
    if (!c->killed) {
        if (c->r->interrupt) {
            c->killed = true;
            snprintf(c->kill_msg, sizeof c->kill_msg, "interrupted (Ctrl-C)");
        } else if (c->limit > 0 && lx_elapsed(c) > c->limit) {
            c->killed = true;
            snprintf(c->kill_msg, sizeof c->kill_msg, "time limit of %g s exceeded (raise it with --lua-timeout S)",
                     c->limit);
        }
    }
    if (c->killed)
        lx_raise_killed(L, c, 0); /* in a hook, level 0 is the Lua function that was running */
}

/* pcall, xpcall and coroutine.resume report errors as values; once the code
 * was stopped, the error goes on up so that a loop around pcall still ends. */
static int lx_protected_done(lua_State *L, int status, lua_KContext kctx)
{
    (void)status;
    (void)kctx;
    lx_ctx *c = lx_get(L);
    if (c->killed && lua_gettop(L) >= 1 && lua_isboolean(L, 1) && !lua_toboolean(L, 1)) {
        if (lua_gettop(L) >= 2)
            lua_pushvalue(L, 2);
        else
            lua_pushstring(L, c->kill_msg);
        return lua_error(L);
    }
    return lua_gettop(L);
}

static int lx_protected_wrap(lua_State *L)
{
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1)); /* the original function */
    lua_insert(L, 1);
    lua_callk(L, n, LUA_MULTRET, 0, lx_protected_done);
    return lx_protected_done(L, LUA_OK, 0);
}

/* --- generations: when handles go stale ------------------------------------------ */

static void lx_gen_sync(lx_ctx *c)
{
    xf_repl *r = c->r;
    int pass = 0;
    if (r->ex) {
        xf_where w;
        exec_where(r->ex, &w);
        pass = w.pass_no;
    }
    if ((const void *)r->ex != c->seen_ex || (const void *)r->model != c->seen_model) {
        c->load_gen++;
        c->pass_gen++;
        /* the hook lived on the exec that is gone */
        if (c->hook_ref != LUA_NOREF) {
            luaL_unref(c->L, LUA_REGISTRYINDEX, c->hook_ref);
            c->hook_ref = LUA_NOREF;
        }
    } else if (pass != c->seen_pass)
        c->pass_gen++;
    c->seen_ex = r->ex;
    c->seen_model = r->model;
    c->seen_pass = pass;
}

/* --- output and capture ------------------------------------------------------------ */

typedef struct lx_cap {
    xf_strbuf *capture;
    bool quiet;
    FILE *errf;
    char last_step[sizeof ((xf_repl *)0)->last_step];
} lx_cap;

/* Output of the commands run below goes only to buf: not to the terminal,
 * and not to an outer capture (a recording sees what the terminal sees). */
static void lx_cap_begin(xf_repl *r, xf_strbuf *buf, lx_cap *s)
{
    s->capture = r->capture;
    s->quiet = r->quiet;
    s->errf = r->errf;
    memcpy(s->last_step, r->last_step, sizeof s->last_step);
    r->capture = buf;
    r->quiet = true;
    r->errf = NULL;
}

static void lx_cap_end(xf_repl *r, const lx_cap *s)
{
    r->capture = s->capture;
    r->quiet = s->quiet;
    r->errf = s->errf;
    memcpy(r->last_step, s->last_step, sizeof r->last_step); /* Enter repeats what the user typed */
}

/* The "error: " lines of captured output, prefix removed, pushed as one string. */
static void lx_push_errors(lua_State *L, const xf_strbuf *sb)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    bool any = false;
    const char *s = sb->s ? sb->s : "";
    while (*s) {
        const char *e = strchr(s, '\n');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n >= 7 && strncmp(s, "error: ", 7) == 0) {
            if (any)
                luaL_addchar(&b, '\n');
            luaL_addlstring(&b, s + 7, n - 7);
            any = true;
        }
        s += n + (e ? 1 : 0);
    }
    if (!any)
        luaL_addstring(&b, "failed");
    luaL_pushresult(&b);
}

/* Raises the captured errors as one Lua error. */
static int lx_error_from(lua_State *L, const char *what, const xf_strbuf *sb)
{
    luaL_where(L, 1);
    lua_pushfstring(L, "%s: ", what);
    lx_push_errors(L, sb);
    lua_concat(L, 3);
    return lua_error(L);
}

static int lx_box_gc(lua_State *L)
{
    lx_box *b = luaL_checkudata(L, 1, LX_BOX_MT);
    free(b->p);
    b->p = NULL;
    sb_free(&b->sb);
    return 0;
}

static lx_box *lx_new_box(lua_State *L)
{
    lx_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    luaL_setmetatable(L, LX_BOX_MT);
    return b;
}

/* one more line of an error block: escaped like repl_errf, to the same places */
static void lx_err_line(xf_repl *r, const char *s, size_t n)
{
    char esc[1024];
    tok_escape(s, n, esc, sizeof esc);
    if (r->capture)
        sb_printf(r->capture, "  %s\n", esc);
    if (r->errf) {
        fprintf(r->errf, "  %s\n", esc);
        fflush(r->errf);
    }
}

/* A Lua error as one block: the message through repl_errf, then the
 * traceback lines under it (without the frames of this file's runner). */
static void lx_report(xf_repl *r, const char *msg, bool traceback)
{
    const char *tb = strstr(msg, "\nstack traceback:");
    size_t head = tb ? (size_t)(tb - msg) : strlen(msg);
    /* the head may span lines (error("a\nb")): its first line is the error */
    const char *nl = memchr(msg, '\n', head);
    size_t first = nl ? (size_t)(nl - msg) : head;
    repl_errf(r, "%.*s", (int)first, msg);
    const char *p = nl ? nl + 1 : msg + head + (msg[head] == '\n');
    const char *end = traceback && tb ? msg + strlen(msg) : msg + head;
    /* the first nameless C frame is this file's runner: what lies below it is
     * the code around this entry (an outer `lua` that called xf.cmd) */
    const char *cut = tb ? strstr(tb, "\n\t[C]: in ?") : NULL;
    if (cut && cut < end && (cut[11] == '\n' || cut[11] == '\0'))
        end = cut;
    while (p < end) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        size_t n = e ? (size_t)(e - p) : (size_t)(end - p);
        const char *t = p;
        while (t < p + n && *t == '\t')
            t++;
        lx_err_line(r, t, n - (size_t)(t - p));
        p += n + (e ? 1 : 0);
    }
}

/* --- common checks ----------------------------------------------------------------- */

static void lx_no_callback(lua_State *L, lx_ctx *c, const char *fn)
{
    if (c->in_callback)
        luaL_error(L, "%s: not allowed inside a breakpoint condition or on_op hook (the stepper is running an op)",
                   fn);
}

static xf_exec *lx_need_weights(lua_State *L, lx_ctx *c, const char *fn)
{
    if (!c->r->model)
        luaL_error(L, "%s: no model loaded (xf.load(PATH))", fn);
    if (!c->r->ex)
        luaL_error(L, "%s: %s has no weights (vocabulary only): load a model", fn, c->r->model->path);
    return c->r->ex;
}

static xf_exec *lx_need_pass(lua_State *L, lx_ctx *c, const char *fn)
{
    xf_exec *ex = lx_need_weights(L, c, fn);
    xf_where w;
    exec_where(ex, &w);
    if (!w.active)
        luaL_error(L, "%s: no pass yet (start one with xf.run(TEXT) or xf.run({ids}))", fn);
    return ex;
}

static const xf_tokenizer *lx_need_tok(lua_State *L, lx_ctx *c, const char *fn)
{
    if (!c->r->model)
        luaL_error(L, "%s: no model loaded (xf.load(PATH))", fn);
    if (!c->r->model->tok)
        luaL_error(L, "%s: %s has no vocabulary", fn, c->r->model->path);
    return c->r->model->tok;
}

static void lx_set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static void lx_set_num(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static void lx_set_str(lua_State *L, const char *k, const char *v)
{
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static void lx_set_bool(lua_State *L, const char *k, bool v)
{
    lua_pushboolean(L, v);
    lua_setfield(L, -2, k);
}

static void lx_push_shape(lua_State *L, int ndim, const int64_t *shape)
{
    lua_createtable(L, ndim, 0);
    for (int i = 0; i < ndim; i++) {
        lua_pushinteger(L, (lua_Integer)shape[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

/* --- tensors ---------------------------------------------------------------------- */

static lx_tensor *lx_new_tensor(lua_State *L, lx_ctx *c, int ndim, const int64_t *shape, int64_t numel)
{
    if (numel < 0 || (uint64_t)numel > (SIZE_MAX - sizeof(lx_tensor)) / sizeof(float))
        luaL_error(L, "tensor of %I elements is too large", (lua_Integer)numel);
    size_t bytes = sizeof(lx_tensor) + (size_t)numel * sizeof(float);
    if (bytes > c->mem_cap)
        luaL_error(L, "not enough memory: a snapshot of %I elements exceeds the Lua memory cap of %d MB",
                   (lua_Integer)numel, (int)(c->mem_cap >> 20));
    lx_tensor *t = lua_newuserdatauv(L, bytes, 0);
    memset(t, 0, sizeof *t);
    t->load_gen = c->load_gen;
    t->pass_gen = c->pass_gen;
    t->op = -1;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->numel = numel;
    luaL_setmetatable(L, LX_TENSOR_MT);
    return t;
}

/* The output of program op `op` of the current pass. */
static lx_tensor *lx_push_op_tensor(lua_State *L, lx_ctx *c, int op)
{
    xf_exec *ex = c->r->ex;
    const xf_program *p = exec_program(ex);
    const xf_op *o = &p->ops[op];
    xf_where w;
    exec_where(ex, &w);
    if (!exec_tensor_ready(ex, op))
        luaL_error(L, "%s is not computed yet in pass %d (next op: %s)", o->name, w.pass_no,
                   w.pc < w.n_ops ? p->ops[w.pc].name : "none");
    lx_tensor *t = lx_new_tensor(L, c, o->ndim, o->shape, o->numel);
    t->per_pass = true;
    t->pass_no = w.pass_no;
    t->op = op;
    snprintf(t->name, sizeof t->name, "%s", o->name);
    const kern_variant *kv = exec_kernel_selected(ex, o->kind);
    snprintf(t->what, sizeof t->what, "%s:%s", kern_backend_name(exec_backend(ex)), kv ? kv->name : "?");
    xf_err err = {0};
    if (exec_tensor_read(ex, op, t->data, &err) != 0)
        luaL_error(L, "%s", err.msg);
    return t;
}

/* A tensor by name as `print` takes it: activation (or alias), NAME@ref,
 * NAME@cpu, GGUF weight, through the same repl_view_load the commands use.
 * Names from files come back escaped, as `print` shows them. */
static lx_tensor *lx_push_named(lua_State *L, lx_ctx *c, const char *spec)
{
    /* the box owns the view's host copy until the snapshot is taken, so a Lua
     * error in between (the memory cap) cannot leak it */
    lx_box *b = lx_new_box(L);
    repl_view v;
    xf_err err = {0};
    int vrc;
    LX_ENGINE(c, vrc = repl_view_load(c->r, spec, &v, &err));
    if (vrc != 0)
        luaL_error(L, "%s", err.msg);
    b->p = v.data;
    lx_tensor *t = lx_new_tensor(L, c, v.ndim, v.shape, v.numel);
    if (v.per_pass) {
        xf_where w;
        exec_where(c->r->ex, &w);
        t->per_pass = true;
        t->pass_no = w.pass_no;
    }
    t->op = v.op;
    snprintf(t->name, sizeof t->name, "%s", v.name);
    snprintf(t->what, sizeof t->what, "%s", v.what);
    memcpy(t->data, v.data, (size_t)v.numel * sizeof(float));
    lua_remove(L, -2); /* the box; the snapshot stays on top */
    return t;
}

static bool lx_is_stale(lx_ctx *c, const lx_tensor *t)
{
    lx_gen_sync(c);
    return t->load_gen != c->load_gen || (t->per_pass && t->pass_gen != c->pass_gen);
}

static lx_tensor *lx_check_tensor(lua_State *L, int idx)
{
    lx_tensor *t = luaL_checkudata(L, idx, LX_TENSOR_MT);
    lx_ctx *c = lx_get(L);
    if (lx_is_stale(c, t)) {
        if (t->per_pass)
            luaL_error(L, "stale tensor handle: %s is from pass %d, and %s; take xf.tensor(\"%s\") again", t->name,
                       t->pass_no, t->load_gen != c->load_gen ? "the model was loaded again" : "a new pass started",
                       t->name);
        luaL_error(L, "stale tensor handle: %s is from a model that was unloaded; take xf.tensor(\"%s\") again",
                   t->name, t->name);
    }
    return t;
}

/* a tensor argument: a handle, or a name that is loaded now */
static lx_tensor *lx_tensor_arg(lua_State *L, lx_ctx *c, int idx)
{
    if (lua_type(L, idx) == LUA_TSTRING) {
        lx_tensor *t = lx_push_named(L, c, lua_tostring(L, idx));
        lua_replace(L, idx);
        return t;
    }
    if (!luaL_testudata(L, idx, LX_TENSOR_MT))
        luaL_typeerror(L, idx, "tensor name or xf.tensor handle");
    return lx_check_tensor(L, idx);
}

static int lt_shape(lua_State *L)
{
    lx_tensor *t = lx_check_tensor(L, 1);
    lx_push_shape(L, t->ndim, t->shape);
    return 1;
}

static int lt_name(lua_State *L)
{
    lx_tensor *t = lx_check_tensor(L, 1);
    lua_pushstring(L, t->name);
    return 1;
}

static int lt_get(lua_State *L)
{
    lx_tensor *t = lx_check_tensor(L, 1);
    int n = lua_gettop(L) - 1;
    if (n != t->ndim) {
        char sh[96];
        tensor_shape_str(t->ndim > 4 ? 4 : t->ndim, t->shape, sh, sizeof sh);
        return luaL_error(L, "t:get needs %d indices for %s %s, got %d", t->ndim, t->name, sh, n);
    }
    int64_t flat = 0;
    for (int d = 0; d < n; d++) {
        lua_Integer i = luaL_checkinteger(L, d + 2);
        lua_Integer len = (lua_Integer)t->shape[d];
        lua_Integer j = i < 0 ? i + len : i;
        if (j < 0 || j >= len)
            return luaL_error(L, "index %I out of range for dimension %d of %s (size %I)", i, d, t->name, len);
        flat = flat * t->shape[d] + j;
    }
    lua_pushnumber(L, (lua_Number)t->data[flat]);
    return 1;
}

static int lt_values(lua_State *L)
{
    lx_tensor *t = lx_check_tensor(L, 1);
    lua_Integer n = luaL_optinteger(L, 2, (lua_Integer)t->numel);
    luaL_argcheck(L, n >= 0, 2, "count must be >= 0");
    if (n > t->numel)
        n = (lua_Integer)t->numel;
    lua_createtable(L, n > INT32_MAX ? INT32_MAX : (int)n, 0);
    for (lua_Integer i = 0; i < n; i++) {
        lua_pushnumber(L, (lua_Number)t->data[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static void lx_push_stats(lua_State *L, const xf_stats *s)
{
    lua_createtable(L, 0, 8);
    lx_set_num(L, "min", s->min);
    lx_set_num(L, "max", s->max);
    lx_set_num(L, "mean", s->mean);
    lx_set_num(L, "std", s->std);
    lx_set_num(L, "absmax", s->absmax);
    lx_set_int(L, "nan", s->n_nan);
    lx_set_int(L, "inf", s->n_inf);
    lx_set_int(L, "n", s->n);
}

static int lt_stats(lua_State *L)
{
    lx_tensor *t = lx_check_tensor(L, 1);
    xf_stats s;
    tensor_stats(t->data, (size_t)t->numel, &s);
    lx_push_stats(L, &s);
    return 1;
}

static int lt_len(lua_State *L)
{
    lx_tensor *t = lx_check_tensor(L, 1);
    lua_pushinteger(L, (lua_Integer)t->numel);
    return 1;
}

static int lt_tostring(lua_State *L)
{
    lx_tensor *t = luaL_checkudata(L, 1, LX_TENSOR_MT);
    char sh[96];
    tensor_shape_str(t->ndim > 4 ? 4 : t->ndim, t->shape, sh, sizeof sh);
    if (lx_is_stale(lx_get(L), t))
        lua_pushfstring(L, "tensor %s %s (stale)", t->name, sh);
    else if (t->per_pass)
        lua_pushfstring(L, "tensor %s %s f32 %s (pass %d)", t->name, sh, t->what, t->pass_no);
    else
        lua_pushfstring(L, "tensor %s %s f32 %s", t->name, sh, t->what);
    return 1;
}

/* --- the xf module: state ------------------------------------------------------------ */

static const char *lx_stop_name(xf_stop why)
{
    switch (why) {
    case XF_STOP_STEP: return "step";
    case XF_STOP_BREAK: return "break";
    case XF_STOP_CHECK: return "check";
    case XF_STOP_HOOK: return "hook";
    case XF_STOP_END: return "end";
    case XF_STOP_INTERRUPT: return "interrupt";
    default: return NULL;
    }
}

static void lx_push_where(lua_State *L, lx_ctx *c, const char *stop)
{
    lua_createtable(L, 0, 14);
    xf_exec *ex = c->r->ex;
    xf_where w = {0};
    if (ex)
        exec_where(ex, &w);
    lx_set_bool(L, "active", w.active);
    lx_set_int(L, "pass", w.pass_no);
    if (stop)
        lx_set_str(L, "stop", stop);
    if (!w.active)
        return;
    const xf_program *p = exec_program(ex);
    lx_set_int(L, "pos", w.pos0);
    lx_set_int(L, "n_tokens", w.n_tokens);
    lx_set_int(L, "n_past", w.n_past);
    lx_set_int(L, "pc", w.pc);
    lx_set_int(L, "n_ops", w.n_ops);
    lx_set_int(L, "last", w.last);
    lx_set_str(L, "kind", w.pos0 == 0 ? "prefill" : "decode");
    lx_set_bool(L, "complete", w.pc >= w.n_ops);
    if (w.last >= 0) {
        const xf_op *o = &p->ops[w.last];
        lx_set_str(L, "op", o->name);
        lx_set_int(L, "layer", o->layer);
        lx_set_str(L, "op_kind", kern_op_name(o->kind));
    }
    if (w.pc < w.n_ops)
        lx_set_str(L, "next", p->ops[w.pc].name);
}

static void lx_push_model(lua_State *L, const xf_repl *r)
{
    const xf_model *m = r->model;
    lua_createtable(L, 0, 14);
    lx_set_str(L, "path", r->model_path ? r->model_path : m->path);
    lx_set_str(L, "name", m->name);
    lx_set_bool(L, "vocab_only", m->vocab_only);
    lx_set_int(L, "n_vocab", m->n_vocab);
    if (m->vocab_only)
        return;
    lx_set_str(L, "arch", model_arch_name(m->arch));
    lx_set_int(L, "n_layer", m->n_layer);
    lx_set_int(L, "n_embd", m->n_embd);
    lx_set_int(L, "n_head", m->n_head);
    lx_set_int(L, "n_head_kv", m->n_head_kv);
    lx_set_int(L, "head_dim", m->head_dim);
    lx_set_int(L, "n_ff", m->n_ff);
    lx_set_int(L, "n_ctx", m->n_ctx);
    lx_set_num(L, "eps", m->eps);
    if (r->ex)
        lx_set_str(L, "backend", kern_backend_name(exec_backend(r->ex)));
}

static int xl_load(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    const char *path = luaL_checkstring(L, 1);
    lx_no_callback(L, c, "xf.load");
    lx_box *b = lx_new_box(L);
    lx_cap s;
    lx_cap_begin(c->r, &b->sb, &s);
    int rc;
    LX_ENGINE(c, rc = repl_load(c->r, path));
    lx_cap_end(c->r, &s);
    if (rc == 0) {
        c->load_gen++; /* even when the allocator hands back the same addresses */
        c->pass_gen++;
    }
    lx_gen_sync(c);
    if (rc != 0)
        return lx_error_from(L, "xf.load", &b->sb);
    lx_push_model(L, c->r);
    return 1;
}

static int xl_model(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    if (!c->r->model)
        return 0;
    lx_push_model(L, c->r);
    return 1;
}

static int xl_where(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    lx_gen_sync(c);
    lx_push_where(L, c, NULL);
    return 1;
}

/* ids of a Lua array into Lua-owned memory (freed by the GC whatever happens) */
static int32_t *lx_ids_arg(lua_State *L, int idx, int *n_out)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if (n > INT32_MAX / 4)
        luaL_error(L, "too many ids (%I)", n);
    int32_t *ids = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *ids, 0);
    for (lua_Integer i = 0; i < n; i++) {
        lua_rawgeti(L, idx, i + 1);
        int ok;
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        if (!ok || v < 0 || v > INT32_MAX)
            luaL_error(L, "ids[%I] is not a token id (an integer >= 0)", i + 1);
        ids[i] = (int32_t)v;
        lua_pop(L, 1);
    }
    *n_out = (int)n;
    return ids;
}

static int xl_run(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    xf_exec *ex = lx_need_weights(L, c, "xf.run");
    lx_no_callback(L, c, "xf.run");
    int32_t *ids;
    int n;
    if (lua_type(L, 1) == LUA_TTABLE) {
        ids = lx_ids_arg(L, 1, &n);
    } else {
        size_t len;
        const char *text = luaL_checklstring(L, 1, &len);
        const xf_tokenizer *tok = lx_need_tok(L, c, "xf.run");
        lx_box *b = lx_new_box(L);
        size_t nn;
        xf_err err = {0};
        int32_t *tmp;
        if (tok_encode(tok, text, len, true, &tmp, &nn, &err) != 0)
            return luaL_error(L, "xf.run: %s", err.msg);
        b->p = tmp;
        ids = tmp;
        n = (int)nn;
    }
    if (n == 0)
        return luaL_error(L, "xf.run: the prompt has no tokens");
    xf_err err = {0};
    int rc;
    LX_ENGINE(c, rc = exec_begin(ex, ids, n, false, &err));
    lx_gen_sync(c);
    if (rc != 0)
        return luaL_error(L, "xf.run: %s", err.msg);
    lx_push_where(L, c, NULL);
    return 1;
}

static int lx_run_mode(lua_State *L, const char *fn, xf_run_mode mode, int count)
{
    lx_ctx *c = lx_get(L);
    xf_exec *ex = lx_need_pass(L, c, fn);
    lx_no_callback(L, c, fn);
    if (c->r->interrupt)
        return luaL_error(L, "%s: interrupted (Ctrl-C)", fn);
    xf_stop why;
    xf_err err = {0};
    lua_State *saved = c->cur;
    c->cur = L; /* callbacks run on this thread */
    int rc;
    LX_ENGINE(c, rc = exec_run(ex, mode, count, &why, &err));
    c->cur = saved;
    lx_gen_sync(c);
    if (rc != 0)
        return luaL_error(L, "%s: %s", fn, err.msg);
    if (why == XF_STOP_INTERRUPT) {
        c->killed = true; /* the whole script stops, as at the prompt */
        snprintf(c->kill_msg, sizeof c->kill_msg, "interrupted (Ctrl-C)");
        return lx_raise_killed(L, c, 1);
    }
    lx_push_where(L, c, lx_stop_name(why));
    if (why == XF_STOP_BREAK && exec_last_break(ex))
        lx_set_int(L, "break_id", exec_last_break(ex)->id);
    return 1;
}

static int xl_step(lua_State *L)
{
    lua_Integer n = luaL_optinteger(L, 1, 1);
    luaL_argcheck(L, n >= 1 && n <= 100000000, 1, "step count must be >= 1");
    return lx_run_mode(L, "xf.step", XF_RUN_STEP, (int)n);
}

static int xl_next(lua_State *L) { return lx_run_mode(L, "xf.next", XF_RUN_NEXT, 0); }
static int xl_finish(lua_State *L) { return lx_run_mode(L, "xf.finish", XF_RUN_FINISH, 0); }
static int xl_continue(lua_State *L) { return lx_run_mode(L, "xf.continue", XF_RUN_CONTINUE, 0); }

static int xl_ops(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    xf_exec *ex = lx_need_weights(L, c, "xf.ops");
    const xf_program *p = exec_program(ex);
    lua_createtable(L, p->n_ops, 0);
    for (int i = 0; i < p->n_ops; i++) {
        const xf_op *o = &p->ops[i];
        lua_createtable(L, 0, 7);
        lx_set_int(L, "index", i);
        lx_set_str(L, "name", o->name);
        lx_set_str(L, "kind", kern_op_name(o->kind));
        lx_set_int(L, "layer", o->layer);
        lx_push_shape(L, o->ndim, o->shape);
        lua_setfield(L, -2, "shape");
        lx_set_bool(L, "ready", exec_tensor_ready(ex, i));
        const kern_variant *v = exec_kernel_selected(ex, o->kind);
        lx_set_str(L, "variant", v ? v->name : "?");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* --- tensors, diff ----------------------------------------------------------------- */

static int xl_tensor(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    const char *name = luaL_checkstring(L, 1);
    lx_gen_sync(c);
    lx_push_named(L, c, name);
    return 1;
}

static int xl_diff(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    lx_gen_sync(c);
    lx_tensor *a = lx_tensor_arg(L, c, 1);
    lx_tensor *b = lx_tensor_arg(L, c, 2);
    if (a->numel != b->numel) {
        char s1[96], s2[96];
        tensor_shape_str(a->ndim > 4 ? 4 : a->ndim, a->shape, s1, sizeof s1);
        tensor_shape_str(b->ndim > 4 ? 4 : b->ndim, b->shape, s2, sizeof s2);
        return luaL_error(L, "xf.diff: %s %s and %s %s differ in size", a->name, s1, b->name, s2);
    }
    /* the same tolerance `diff` uses: the op kind's, else 1e-4 x max|B| */
    double tol = 1e-4;
    if (a->op >= 0 && c->r->ex && a->op < exec_program(c->r->ex)->n_ops)
        tol = exec_tolerance(exec_program(c->r->ex)->ops[a->op].kind);
    if (!lua_isnoneornil(L, 3)) {
        tol = luaL_checknumber(L, 3);
        luaL_argcheck(L, tol >= 0 && isfinite(tol), 3, "relative tolerance must be a number >= 0");
    }
    xf_diff d;
    tensor_diff_rel(a->data, b->data, (size_t)a->numel, tol, &d);
    lua_createtable(L, 0, 18);
    lx_set_num(L, "max_abs", d.max_abs);
    lx_set_num(L, "max_rel", d.max_rel);
    lx_set_num(L, "nmse", d.nmse);
    lx_set_num(L, "cosine", d.cosine);
    lx_set_num(L, "ref_absmax", d.ref_absmax);
    lx_set_int(L, "nan", d.nan_a + d.nan_b);
    lx_set_int(L, "inf", d.inf_a + d.inf_b);
    lx_set_int(L, "nan_a", d.nan_a);
    lx_set_int(L, "nan_b", d.nan_b);
    lx_set_int(L, "inf_a", d.inf_a);
    lx_set_int(L, "inf_b", d.inf_b);
    lx_set_int(L, "mismatch_nonfinite", d.mismatch_nonfinite);
    lx_set_int(L, "first_over", d.first_over);
    lx_set_int(L, "n_over", d.n_over);
    lx_set_int(L, "n", d.n);
    lx_set_num(L, "tol", d.tol);
    lx_set_num(L, "tol_rel", tol);
    lx_set_bool(L, "ok", d.n_over == 0);
    if (a->ndim == 2 && b->ndim == 2 && strcmp(a->name, "logits") == 0)
        lx_set_num(L, "top1", tensor_top1_agree(a->data, b->data, (size_t)a->shape[0], (size_t)a->shape[1]));
    return 1;
}

static int xl_ref_load(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    const char *path = luaL_checkstring(L, 1);
    xf_exec *ex = lx_need_weights(L, c, "xf.ref_load");
    lx_no_callback(L, c, "xf.ref_load");
    xf_err err = {0};
    int lrc;
    LX_ENGINE(c, lrc = exec_ref_load(ex, path, &err));
    if (lrc != 0)
        return luaL_error(L, "xf.ref_load: %s", err.msg);
    lua_pushinteger(L, (lua_Integer)refdump_count(exec_ref(ex)));
    return 1;
}

static int xl_ref_names(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    const refdump *ref = c->r->ex ? exec_ref(c->r->ex) : NULL;
    if (!ref)
        return luaL_error(L, "xf.ref_names: no reference loaded: xf.ref_load(FILE.safetensors)");
    size_t n = refdump_count(ref);
    lua_createtable(L, n > INT32_MAX ? 0 : (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, refdump_at(ref, i)->name);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* --- kernels ------------------------------------------------------------------------ */

static int xl_kernel(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    const char *op = luaL_checkstring(L, 1);
    const char *variant = luaL_checkstring(L, 2);
    xf_exec *ex = lx_need_weights(L, c, "xf.kernel");
    lx_no_callback(L, c, "xf.kernel");
    int k = strcmp(op, "all") == 0 ? -1 : kern_op_from_name(op);
    if (k < 0 && strcmp(op, "all") != 0)
        return luaL_error(L, "xf.kernel: unknown op kind '%s' (see xf.kernels())", op);
    xf_err err = {0};
    if (exec_kernel_select(ex, k, variant, &err) != 0)
        return luaL_error(L, "xf.kernel: %s", err.msg);
    return 0;
}

static int xl_kernels(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    xf_exec *ex = lx_need_weights(L, c, "xf.kernels");
    const kern_variant *vs[256];
    int n = exec_variants(ex, vs, 256);
    if (n > 256)
        n = 256;
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 5);
        lx_set_str(L, "op", kern_op_name(vs[i]->op));
        lx_set_str(L, "backend", kern_backend_name(vs[i]->backend));
        lx_set_str(L, "name", vs[i]->name);
        lx_set_bool(L, "selected", exec_kernel_selected(ex, vs[i]->op) == vs[i]);
        lx_set_str(L, "doc", vs[i]->doc ? vs[i]->doc : "");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* --- callbacks: breakpoint predicates and the on-op hook ---------------------------- */

typedef struct lx_cb_job {
    lx_ctx *c;
    int ref;
    int op;
    bool hook;
    bool result;
} lx_cb_job;

static int lx_cb_body(lua_State *L)
{
    lx_cb_job *j = lua_touserdata(L, 1);
    lx_ctx *c = j->c;
    lx_gen_sync(c);
    const xf_op *o = &exec_program(c->r->ex)->ops[j->op];
    lua_rawgeti(L, LUA_REGISTRYINDEX, j->ref);
    if (j->hook) {
        lua_pushstring(L, o->name);
        lua_pushinteger(L, j->op);
        lua_call(L, 2, 1);
    } else {
        lx_push_op_tensor(L, c, j->op);
        lua_pushstring(L, o->name);
        lua_pushinteger(L, j->op);
        lua_call(L, 3, 1);
    }
    j->result = lua_toboolean(L, -1);
    return 0;
}

/* 1 stop, 0 go on, -1 error (in err). Runs inside exec_run: nothing may longjmp out. */
static int lx_callback(lx_ctx *c, int ref, int op, bool hook, xf_err *err)
{
    bool outer = c->depth == 0;
    lua_State *L = outer ? c->L : c->cur;
    if (outer)
        lx_begin_outer(c); /* called from `continue` at the prompt: a top-level call of its own */
    if (!lua_checkstack(L, 4))
        return xf_err_set(err, "lua: stack overflow");
    lx_cb_job j = {.c = c, .ref = ref, .op = op, .hook = hook};
    lua_State *saved = c->cur;
    c->cur = L;
    c->depth++;
    c->in_callback++;
    int eng = atomic_exchange(&c->engine, 0); /* Lua code again: the watchdog watches it */
    atomic_fetch_add(&c->active, 1);
    lua_pushcfunction(L, lx_cb_body);
    lua_pushlightuserdata(L, &j);
    int st = lua_pcall(L, 1, 0, 0);
    atomic_fetch_sub(&c->active, 1);
    atomic_store(&c->engine, eng);
    c->in_callback--;
    c->depth--;
    c->cur = saved;
    if (st != LUA_OK) {
        const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(error object is not a string)";
        xf_err_set(err, "%s: %s", hook ? "lua on_op hook" : "lua breakpoint condition", m);
        lua_pop(L, 1);
        return -1;
    }
    return j.result ? 1 : 0;
}

static int lx_cond_call(void *ud, xf_exec *ex, int op, xf_err *err)
{
    (void)ex;
    lx_cond *k = ud;
    return lx_callback(k->c, k->ref, op, false, err);
}

static void lx_cond_free(void *ud)
{
    lx_cond *k = ud;
    if (!k)
        return;
    luaL_unref(k->c->L, LUA_REGISTRYINDEX, k->ref);
    free(k);
}

static int lx_hook_call(void *ud, xf_exec *ex, int op, xf_err *err)
{
    (void)ex;
    lx_ctx *c = ud;
    if (c->hook_ref == LUA_NOREF)
        return 0;
    return lx_callback(c, c->hook_ref, op, true, err);
}

static int xl_brk(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    const char *pattern = luaL_checkstring(L, 1);
    bool has_fn = !lua_isnoneornil(L, 2);
    if (has_fn)
        luaL_checktype(L, 2, LUA_TFUNCTION);
    xf_exec *ex = lx_need_weights(L, c, "xf.brk");
    lx_no_callback(L, c, "xf.brk");
    lx_cond *k = NULL;
    if (has_fn) {
        lua_pushvalue(L, 2);
        int ref = luaL_ref(L, LUA_REGISTRYINDEX);
        k = malloc(sizeof *k);
        if (!k) {
            luaL_unref(L, LUA_REGISTRYINDEX, ref);
            return luaL_error(L, "xf.brk: out of memory");
        }
        k->c = c;
        k->ref = ref;
    }
    xf_err err = {0};
    int id = exec_break_add(ex, pattern, k ? "<lua function>" : NULL, k ? lx_cond_call : NULL, k,
                            k ? lx_cond_free : NULL, &err);
    if (id < 0) {
        lx_cond_free(k);
        return luaL_error(L, "xf.brk: %s", err.msg);
    }
    lua_pushinteger(L, id);
    return 1;
}

static int xl_delete(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    lua_Integer id = luaL_optinteger(L, 1, -1);
    luaL_argcheck(L, id == -1 || (id >= 1 && id <= INT32_MAX), 1, "not a breakpoint number");
    xf_exec *ex = lx_need_weights(L, c, "xf.delete");
    lx_no_callback(L, c, "xf.delete");
    xf_err err = {0};
    if (exec_break_delete(ex, (int)id, &err) != 0)
        return luaL_error(L, "xf.delete: %s", err.msg);
    return 0;
}

static int xl_on_op(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    bool clear = lua_isnoneornil(L, 1);
    if (!clear)
        luaL_checktype(L, 1, LUA_TFUNCTION);
    xf_exec *ex = lx_need_weights(L, c, "xf.on_op");
    lx_no_callback(L, c, "xf.on_op");
    lx_gen_sync(c);
    int ref = LUA_NOREF;
    if (!clear) {
        lua_pushvalue(L, 1);
        ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    if (c->hook_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, c->hook_ref);
    c->hook_ref = ref;
    exec_set_hook(ex, clear ? NULL : lx_hook_call, clear ? NULL : c);
    return 0;
}

/* --- commands, generation, tokens ---------------------------------------------------- */

static int xl_cmd(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    const char *line = luaL_checkstring(L, 1);
    lx_no_callback(L, c, "xf.cmd");
    if (!c->unsafe) {
        /* "no io" holds for commands too: the ones that write files stay outside */
        char word[32];
        size_t k = 0;
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        while (*p && *p != ' ' && *p != '\t' && k + 1 < sizeof word)
            word[k++] = *p++;
        word[k] = '\0';
        const xf_command *cmd = commands_find(word);
        if (cmd && (strcmp(cmd->name, "dump") == 0 || strcmp(cmd->name, "record") == 0)) {
            lua_pushnil(L);
            lua_pushfstring(L, "xf.cmd: `%s` writes files and is disabled in the sandbox (start xfdb with "
                               "--unsafe-lua to allow it)", cmd->name);
            return 2;
        }
    }
    if (c->r->interrupt)
        return luaL_error(L, "xf.cmd: interrupted (Ctrl-C)");
    lx_box *b = lx_new_box(L);
    lx_cap s;
    lx_cap_begin(c->r, &b->sb, &s);
    lua_State *saved = c->cur;
    c->cur = L;
    int rc;
    LX_ENGINE(c, rc = repl_exec_line(c->r, line));
    c->cur = saved;
    lx_cap_end(c->r, &s);
    lx_gen_sync(c);
    const char *text = b->sb.s ? b->sb.s : "";
    /* exec_run consumed the Ctrl-C flag: its stop line is the only trace */
    if (strncmp(text, "interrupted after ", 18) == 0 || strstr(text, "\ninterrupted after ")) {
        c->killed = true;
        snprintf(c->kill_msg, sizeof c->kill_msg, "interrupted (Ctrl-C)");
        return lx_raise_killed(L, c, 1);
    }
    if (rc == 0) {
        lua_pushlstring(L, text, b->sb.len);
        return 1;
    }
    lua_pushnil(L);
    lx_push_errors(L, &b->sb);
    lua_pushlstring(L, text, b->sb.len);
    return 3;
}

static double lx_opt_field(lua_State *L, int t, const char *k, double def)
{
    if (lua_getfield(L, t, k) == LUA_TNIL) {
        lua_pop(L, 1);
        return def;
    }
    int ok;
    double v = lua_tonumberx(L, -1, &ok);
    if (!ok)
        luaL_error(L, "xf.generate: opts.%s must be a number", k);
    lua_pop(L, 1);
    return v;
}

static lua_Integer lx_opt_int_field(lua_State *L, int t, const char *k, lua_Integer def)
{
    if (lua_getfield(L, t, k) == LUA_TNIL) {
        lua_pop(L, 1);
        return def;
    }
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok)
        luaL_error(L, "xf.generate: opts.%s must be an integer", k);
    lua_pop(L, 1);
    return v;
}

static int xl_generate(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0 && n <= (1 << 20), 1, "token count must be in 0..1048576");
    xf_gen_opts o = {.n = (int)n, .temp = 0, .top_k = 0, .top_p = 1, .seed = 0, .quiet = true};
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        double temp = lx_opt_field(L, 2, "temp", 0), top_p = lx_opt_field(L, 2, "top_p", 1);
        lua_Integer top_k = lx_opt_int_field(L, 2, "top_k", 0), seed = lx_opt_int_field(L, 2, "seed", 0);
        if (!(temp >= 0) || !isfinite(temp))
            return luaL_error(L, "xf.generate: opts.temp must be >= 0");
        if (top_k < 0 || top_k > (1 << 24))
            return luaL_error(L, "xf.generate: opts.top_k must be an integer >= 0");
        if (!(top_p > 0 && top_p <= 1))
            return luaL_error(L, "xf.generate: opts.top_p must be in (0, 1]");
        if (seed < 0)
            return luaL_error(L, "xf.generate: opts.seed must be an integer >= 0");
        o.temp = (float)temp;
        o.top_k = (int)top_k;
        o.top_p = (float)top_p;
        o.seed = (unsigned long long)seed;
    }
    lx_need_pass(L, c, "xf.generate");
    lx_no_callback(L, c, "xf.generate");
    lx_box *b = lx_new_box(L);
    lx_box *tb = lx_new_box(L); /* both before the results, which must be the top two values */
    lx_cap s;
    lx_cap_begin(c->r, &b->sb, &s);
    lua_State *saved = c->cur;
    c->cur = L;
    int32_t *ids = NULL;
    int n_ids = 0;
    int rc;
    LX_ENGINE(c, rc = repl_generate(c->r, &o, &ids, &n_ids));
    c->cur = saved;
    lx_cap_end(c->r, &s);
    b->p = ids;
    lx_gen_sync(c);
    if (rc != 0)
        return lx_error_from(L, "xf.generate", &b->sb);
    lua_createtable(L, n_ids, 0);
    for (int i = 0; i < n_ids; i++) {
        lua_pushinteger(L, ids[i]);
        lua_rawseti(L, -2, i + 1);
    }
    if (c->r->model->tok) {
        char *txt = NULL;
        size_t len = 0;
        xf_err err = {0};
        if (tok_decode(c->r->model->tok, ids, (size_t)n_ids, &txt, &len, &err) != 0)
            return luaL_error(L, "xf.generate: %s", err.msg);
        tb->p = txt;
        lua_pushlstring(L, txt, len);
    } else
        lua_pushliteral(L, "");
    return 2;
}

/* xf.chat_format({{role=, content=}, ...} [, add_generation_prompt=true]) ->
 * the prompt text by the model's chat template (ChatML), to run with specials */
static int xl_chat_format(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    bool gen = lua_isnoneornil(L, 2) ? true : lua_toboolean(L, 2);
    const xf_tokenizer *tok = lx_need_tok(L, c, "xf.chat_format");
    lua_Integer n = luaL_len(L, 1);
    luaL_argcheck(L, n >= 1 && n <= 1024, 1, "1..1024 messages");
    lx_box *b = lx_new_box(L);
    tok_chat_msg *msgs = calloc((size_t)n, sizeof *msgs);
    if (!msgs)
        return luaL_error(L, "xf.chat_format: out of memory");
    b->p = msgs;
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_geti(L, 1, i) != LUA_TTABLE)
            return luaL_error(L, "xf.chat_format: message %d is not a table {role=, content=}", (int)i);
        if (lua_getfield(L, -1, "role") != LUA_TSTRING || lua_getfield(L, -2, "content") != LUA_TSTRING)
            return luaL_error(L, "xf.chat_format: message %d needs string fields role and content", (int)i);
        /* the strings stay referenced by the message tables in argument 1 */
        msgs[i - 1].content = lua_tostring(L, -1);
        msgs[i - 1].role = lua_tostring(L, -2);
        lua_pop(L, 3);
    }
    char *out = NULL;
    xf_err err = {0};
    if (tok_chat_format(tok, msgs, (size_t)n, gen, &out, &err) != 0)
        return luaL_error(L, "xf.chat_format: %s", err.msg);
    lua_pushstring(L, out);
    free(out);
    return 1;
}

static int xl_tokenize(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    bool special = lua_isnoneornil(L, 2) ? true : lua_toboolean(L, 2);
    const xf_tokenizer *tok = lx_need_tok(L, c, "xf.tokenize");
    lx_box *b = lx_new_box(L);
    int32_t *ids;
    size_t n;
    xf_err err = {0};
    if (tok_encode(tok, text, len, special, &ids, &n, &err) != 0)
        return luaL_error(L, "xf.tokenize: %s", err.msg);
    b->p = ids;
    lua_createtable(L, n > INT32_MAX ? 0 : (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushinteger(L, ids[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int xl_detokenize(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    const xf_tokenizer *tok = lx_need_tok(L, c, "xf.detokenize");
    int n;
    int32_t *ids = lx_ids_arg(L, 1, &n);
    lx_box *b = lx_new_box(L);
    char *out;
    size_t len;
    xf_err err = {0};
    if (tok_decode(tok, ids, (size_t)n, &out, &len, &err) != 0)
        return luaL_error(L, "xf.detokenize: %s", err.msg);
    b->p = out;
    lua_pushlstring(L, out, len);
    return 1;
}

static int xl_raw(lua_State *L)
{
    char buf[64];
    pr_raw(buf, sizeof buf, luaL_checknumber(L, 1));
    lua_pushstring(L, buf);
    return 1;
}

static int xl_show(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    int n = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->show_ref);
    lua_insert(L, 1);
    lua_call(L, n, 1);
    return 1;
}

static const luaL_Reg k_xf_funcs[] = {
    {"load", xl_load},         {"model", xl_model},
    {"run", xl_run},           {"step", xl_step},
    {"next", xl_next},         {"finish", xl_finish},
    {"continue", xl_continue}, {"where", xl_where},
    {"ops", xl_ops},           {"tensor", xl_tensor},
    {"diff", xl_diff},         {"ref_load", xl_ref_load},
    {"ref_names", xl_ref_names}, {"kernel", xl_kernel},
    {"kernels", xl_kernels},   {"brk", xl_brk},
    {"delete", xl_delete},     {"on_op", xl_on_op},
    {"cmd", xl_cmd},           {"generate", xl_generate}, {"chat_format", xl_chat_format},
    {"tokenize", xl_tokenize}, {"detokenize", xl_detokenize},
    {"raw", xl_raw},           {"show", xl_show},
    {NULL, NULL},
};

static const luaL_Reg k_tensor_methods[] = {
    {"shape", lt_shape}, {"get", lt_get}, {"values", lt_values}, {"stats", lt_stats}, {"name", lt_name}, {NULL, NULL},
};

/* --- the state: sandbox, print, formatter ------------------------------------------- */

static int lx_print(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_addchar(&b, '\n');
    luaL_pushresult(&b);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    /* scripts are untrusted: control bytes are escaped, tabs and newlines kept */
    size_t cap = 4 * len + 1;
    char *esc = malloc(cap);
    if (!esc)
        return luaL_error(L, "print: out of memory");
    size_t out = pr_escape_controls(s, len, esc, cap);
    repl_write(c->r, esc, out);
    free(esc);
    return 0;
}

static int lx_disabled_fn(lua_State *L)
{
    luaL_where(L, 1);
    lua_pushfstring(L, "%s is disabled in the sandbox (start xfdb with --unsafe-lua to allow it)",
                    lua_tostring(L, lua_upvalueindex(1)));
    lua_concat(L, 2);
    return lua_error(L);
}

static int lx_disabled_index(lua_State *L)
{
    luaL_where(L, 1);
    lua_pushfstring(L, "%s.%s is disabled in the sandbox (start xfdb with --unsafe-lua to allow it)",
                    lua_tostring(L, lua_upvalueindex(1)), luaL_tolstring(L, 2, NULL));
    lua_remove(L, -2);
    lua_concat(L, 2);
    return lua_error(L);
}

static void lx_set_disabled_fn(lua_State *L, int table, const char *field, const char *shown)
{
    table = lua_absindex(L, table);
    lua_pushstring(L, shown);
    lua_pushcclosure(L, lx_disabled_fn, 1);
    lua_setfield(L, table, field);
}

/* a table whose every missing field raises "LIB.FIELD is disabled" (table on the stack) */
static void lx_guard_table(lua_State *L, const char *lib)
{
    lua_createtable(L, 0, 2);
    lua_pushstring(L, lib);
    lua_pushcclosure(L, lx_disabled_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
}

static int lx_collectgarbage(lua_State *L)
{
    const char *opt = luaL_optstring(L, 1, "collect");
    if (strcmp(opt, "count") != 0) {
        luaL_where(L, 1);
        lua_pushfstring(L,
                        "collectgarbage(\"%s\") is disabled in the sandbox (only \"count\"; start xfdb with "
                        "--unsafe-lua to allow it)",
                        opt);
        lua_concat(L, 2);
        return lua_error(L);
    }
    lua_pushnumber(L, (lua_Number)lua_gc(L, LUA_GCCOUNT, 0) + (lua_Number)lua_gc(L, LUA_GCCOUNTB, 0) / 1024);
    return 1;
}

static void lx_sandbox(lua_State *L)
{
    static const struct {
        const char *name;
        lua_CFunction fn;
    } libs[] = {
        {LUA_GNAME, luaopen_base},     {LUA_STRLIBNAME, luaopen_string}, {LUA_TABLIBNAME, luaopen_table},
        {LUA_MATHLIBNAME, luaopen_math}, {LUA_UTF8LIBNAME, luaopen_utf8}, {LUA_COLIBNAME, luaopen_coroutine},
        {LUA_OSLIBNAME, luaopen_os},
    };
    for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
        luaL_requiref(L, libs[i].name, libs[i].fn, 1);
        lua_pop(L, 1);
    }
    lua_pushglobaltable(L);
    int g = lua_gettop(L);
    lx_set_disabled_fn(L, g, "load", "load");
    lx_set_disabled_fn(L, g, "loadfile", "loadfile");
    lx_set_disabled_fn(L, g, "dofile", "dofile");
    lx_set_disabled_fn(L, g, "require", "require");
    lua_pushcfunction(L, lx_collectgarbage);
    lua_setfield(L, g, "collectgarbage");
    lua_pushnil(L);
    lua_setfield(L, g, "warn");
    lua_getglobal(L, LUA_STRLIBNAME);
    lx_set_disabled_fn(L, -1, "dump", "string.dump");
    lua_pop(L, 1);
    /* os: the clock and dates only */
    lua_getglobal(L, LUA_OSLIBNAME);
    int os = lua_gettop(L);
    lua_createtable(L, 0, 3);
    const char *keep[] = {"clock", "time", "date"};
    for (int i = 0; i < 3; i++) {
        lua_getfield(L, os, keep[i]);
        lua_setfield(L, -2, keep[i]);
    }
    lx_guard_table(L, "os");
    lua_setfield(L, g, "os");
    lua_pop(L, 1);
    const char *gone[] = {"io", "debug", "package"};
    for (int i = 0; i < 3; i++) {
        lua_createtable(L, 0, 0);
        lx_guard_table(L, gone[i]);
        lua_setfield(L, g, gone[i]);
    }
    lua_pop(L, 1);
}

/* The formatter of `lua EXPR` results and xf.show: tables one or two levels
 * deep with sorted keys, so that the same value always prints the same. */
static const char k_show_src[] =
    "local type, tostring, rawget, next, getmetatable, select = type, tostring, rawget, next, getmetatable, select\n"
    "local fmt, concat, sort, mtype = string.format, table.concat, table.sort, math.type\n"
    "local function key_lt(a, b)\n"
    "  local ta, tb = type(a), type(b)\n"
    "  if ta ~= tb then return ta < tb end\n"
    "  if ta == 'number' or ta == 'string' then return a < b end\n"
    "  return tostring(a) < tostring(b)\n"
    "end\n"
    "local function show(v, depth, top)\n"
    "  local tv = type(v)\n"
    "  if tv == 'string' then return top and v or fmt('%q', v) end\n"
    "  if tv ~= 'table' then return tostring(v) end\n"
    "  local mt = getmetatable(v)\n"
    "  if type(mt) == 'table' and rawget(mt, '__tostring') then return tostring(v) end\n"
    "  if depth > 3 then return '{...}' end\n"
    "  local parts, n = {}, 0\n"
    "  while rawget(v, n + 1) ~= nil do n = n + 1 end\n"
    "  for i = 1, n do\n"
    "    if #parts >= 64 then parts[#parts + 1] = '...'; break end\n"
    "    parts[#parts + 1] = show(rawget(v, i), depth + 1)\n"
    "  end\n"
    "  local keys = {}\n"
    "  for k in next, v do\n"
    "    if not (mtype(k) == 'integer' and k >= 1 and k <= n) then keys[#keys + 1] = k end\n"
    "  end\n"
    "  sort(keys, key_lt)\n"
    "  for i, k in ipairs(keys) do\n"
    "    if i > 64 then parts[#parts + 1] = '...'; break end\n"
    "    local ks = (type(k) == 'string' and k:match('^[%a_][%w_]*$')) and k or ('[' .. show(k, depth + 1) .. ']')\n"
    "    parts[#parts + 1] = ks .. '=' .. show(rawget(v, k), depth + 1)\n"
    "  end\n"
    "  return '{' .. concat(parts, ', ') .. '}'\n"
    "end\n"
    "return function(...)\n"
    "  local out = {}\n"
    "  for i = 1, select('#', ...) do out[i] = show((select(i, ...)), 1, true) end\n"
    "  return concat(out, '\\t')\n"
    "end\n";

static void lx_wrap_protected(lua_State *L, int table, const char *field)
{
    table = lua_absindex(L, table);
    lua_getfield(L, table, field);
    lua_pushcclosure(L, lx_protected_wrap, 1);
    lua_setfield(L, table, field);
}

static int lx_init_body(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    if (c->unsafe)
        luaL_openlibs(L);
    else
        lx_sandbox(L);
    lua_pushglobaltable(L);
    int g = lua_gettop(L);
    lua_pushcfunction(L, lx_print);
    lua_setfield(L, g, "print");
    lx_wrap_protected(L, g, "pcall");
    lx_wrap_protected(L, g, "xpcall");
    lua_getglobal(L, LUA_COLIBNAME);
    lx_wrap_protected(L, -1, "resume");
    lua_pop(L, 1);

    luaL_newmetatable(L, LX_BOX_MT);
    lua_pushcfunction(L, lx_box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
    luaL_newmetatable(L, LX_TENSOR_MT);
    luaL_newlib(L, k_tensor_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, lt_len);
    lua_setfield(L, -2, "__len");
    lua_pushcfunction(L, lt_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "xf.tensor");
    lua_setfield(L, -2, "__name");
    lua_pop(L, 1);

    if (luaL_loadbufferx(L, k_show_src, sizeof k_show_src - 1, "=xf.show", "t") != LUA_OK)
        return lua_error(L);
    lua_call(L, 0, 1);
    c->show_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    luaL_newlib(L, k_xf_funcs);
    if (c->unsafe) {
        luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "xf"); /* require "xf" works too */
        lua_pop(L, 1);
    }
    lua_setfield(L, g, "xf");
    lua_pop(L, 1);
    return 0;
}

static int lx_panic(lua_State *L)
{
    /* every entry is protected: reaching this is a bug in this file */
    const char *m = lua_tostring(L, -1);
    fprintf(stderr, "xfdb: unprotected Lua error: %s\n", m ? m : "?");
    abort();
}

static lx_ctx *lx_ctx_get(xf_repl *r, char *why, size_t why_size)
{
    if (r->lua)
        return r->lua;
    lx_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(why, why_size, "out of memory");
        return NULL;
    }
    c->r = r;
    c->mem_cap = LX_MEM_CAP;
    c->unsafe = r->unsafe_lua;
    c->hook_ref = LUA_NOREF;
    c->show_ref = LUA_NOREF;
    c->load_gen = c->pass_gen = 1;
    lua_State *L = lua_newstate(lx_alloc, c);
    if (!L) {
        free(c);
        snprintf(why, why_size, "cannot create a Lua state (out of memory)");
        return NULL;
    }
    c->L = c->cur = L;
    lua_atpanic(L, lx_panic);
    lx_begin_outer(c);
    lua_pushcfunction(L, lx_init_body);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
        snprintf(why, why_size, "cannot set up Lua: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
        lua_close(L);
        free(c);
        return NULL;
    }
    /* threads created later inherit the hook */
    lua_sethook(L, lx_count_hook, LUA_MASKCOUNT, LX_HOOK_COUNT);
    c->wd_started = pthread_create(&c->wd, NULL, lx_watchdog, c) == 0;
    r->lua = c;
    lx_gen_sync(c);
    return c;
}

/* --- entries: lua, source, --script ------------------------------------------------ */

static int lx_msgh(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            msg = lua_tostring(L, -1);
        else
            msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static int lx_job_body(lua_State *L)
{
    lx_job *j = lua_touserdata(L, 1);
    lx_ctx *c = lx_get(L);
    lx_gen_sync(c);
    lua_settop(L, 0);
    if (j->kind == LX_JOB_CODE) {
        /* an expression prints its values, as the standalone interpreter does */
        size_t n = strlen(j->code);
        luaL_Buffer b;
        luaL_buffinit(L, &b);
        luaL_addstring(&b, "return ");
        luaL_addlstring(&b, j->code, n);
        luaL_pushresult(&b);
        size_t en;
        const char *e = lua_tolstring(L, -1, &en);
        bool expr = luaL_loadbufferx(L, e, en, "=lua", "t") == LUA_OK;
        if (!expr) {
            lua_settop(L, 0);
            if (luaL_loadbufferx(L, j->code, n, "=lua", "t") != LUA_OK) {
                j->load_failed = true;
                return lua_error(L);
            }
        } else
            lua_remove(L, 1);
        lua_call(L, 0, LUA_MULTRET);
        int nres = lua_gettop(L);
        if (expr && nres > 0) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, c->show_ref);
            lua_insert(L, 1);
            lua_call(L, nres, 1);
            size_t len;
            const char *s = lua_tolstring(L, -1, &len);
            if (s) {
                repl_write(c->r, s, len);
                repl_write(c->r, "\n", 1);
            }
        }
        return 0;
    }
    if (luaL_loadfilex(L, j->path, "t") != LUA_OK) {
        j->load_failed = true;
        return lua_error(L);
    }
    /* arg[0] is the script, arg[1..] its arguments; they are also the chunk's ... */
    lua_createtable(L, j->argc, 1);
    lua_pushstring(L, j->path);
    lua_rawseti(L, -2, 0);
    for (int i = 0; i < j->argc; i++) {
        lua_pushstring(L, j->argv[i]);
        lua_rawseti(L, -2, i + 1);
    }
    lua_setglobal(L, "arg");
    luaL_checkstack(L, j->argc + 2, "too many script arguments");
    for (int i = 0; i < j->argc; i++)
        lua_pushstring(L, j->argv[i]);
    lua_call(L, j->argc, 0);
    return 0;
}

static int lx_enter(xf_repl *r, lx_job *j)
{
    char why[512];
    lx_ctx *c = lx_ctx_get(r, why, sizeof why);
    if (!c)
        return repl_errf(r, "lua: %s", why);
    if (c->depth >= LX_MAX_DEPTH)
        return repl_errf(r, "lua: nested too deeply (%d levels of lua/source through xf.cmd)", LX_MAX_DEPTH);
    bool outer = c->depth == 0;
    lua_State *L = outer ? c->L : c->cur;
    if (outer)
        lx_begin_outer(c); /* a Ctrl-C that came before is not forgotten: the interactive loop clears it */
    if (!lua_checkstack(L, 4))
        return repl_errf(r, "lua: stack overflow");
    int top = lua_gettop(L);
    lua_State *saved = c->cur;
    c->cur = L;
    c->depth++;
    atomic_fetch_add(&c->active, 1);
    lua_pushcfunction(L, lx_msgh);
    lua_pushcfunction(L, lx_job_body);
    lua_pushlightuserdata(L, j);
    int st = lua_pcall(L, 1, 0, top + 1);
    atomic_fetch_sub(&c->active, 1);
    int rc = 0;
    if (st != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        lx_report(r, m ? m : "(error object is not a string)", !j->load_failed);
        rc = 1;
    }
    lua_settop(L, top);
    c->depth--;
    c->cur = saved;
    if (outer) {
        r->interrupt = 0; /* reported (or, if it came at the very end, dropped): the next command starts clean */
        c->killed = false;
    }
    return rc;
}

int cmd_lua(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)argc;
    (void)argv;
    while (*rest == ' ' || *rest == '\t')
        rest++;
    if (!*rest)
        return repl_errf(r, "usage: lua CODE");
    lx_job j = {.kind = LX_JOB_CODE, .code = rest};
    return lx_enter(r, &j);
}

/* "quoted" words keep their quotes in argv: a script gets the text inside */
static void lx_unquote(char *s)
{
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        memmove(s, s + 1, n - 2);
        s[n - 2] = '\0';
    }
}

int cmd_source(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    if (argc < 2)
        return repl_errf(r, "usage: source FILE.lua [ARGS]");
    for (int i = 1; i < argc; i++)
        lx_unquote(argv[i]);
    return repl_run_script(r, argv[1], argc - 2, argv + 2);
}

int repl_run_script(xf_repl *r, const char *path, int argc, char **argv)
{
    lx_job j = {.kind = LX_JOB_SCRIPT, .path = path, .argc = argc, .argv = argv};
    return lx_enter(r, &j) ? 1 : 0;
}

/* --- `break PATTERN if <lua expr>` ---------------------------------------------------- */

typedef struct lx_cond_job {
    const char *expr;
    int ref;
} lx_cond_job;

static int lx_cond_compile(lua_State *L)
{
    lx_cond_job *j = lua_touserdata(L, 1);
    lua_pushfstring(L, "local t, name, op = ... return (%s)", j->expr); /* one line: errors say condition:1 */
    size_t n;
    const char *src = lua_tolstring(L, -1, &n);
    if (luaL_loadbufferx(L, src, n, "=condition", "t") != LUA_OK)
        return lua_error(L);
    j->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

xf_cond_fn repl_lua_cond(xf_repl *r, const char *expr, void **ud, void (**ud_free)(void *), char *why,
                         size_t why_size)
{
    lx_ctx *c = lx_ctx_get(r, why, why_size);
    if (!c)
        return NULL;
    lua_State *L = c->depth ? c->cur : c->L;
    if (!lua_checkstack(L, 3)) {
        snprintf(why, why_size, "lua: stack overflow");
        return NULL;
    }
    lx_cond_job j = {.expr = expr, .ref = LUA_NOREF};
    lua_pushcfunction(L, lx_cond_compile);
    lua_pushlightuserdata(L, &j);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        const char *m = lua_tostring(L, -1);
        snprintf(why, why_size, "not a Lua expression: %s", m ? m : "?");
        lua_pop(L, 1);
        return NULL;
    }
    lx_cond *k = malloc(sizeof *k);
    if (!k) {
        luaL_unref(L, LUA_REGISTRYINDEX, j.ref);
        snprintf(why, why_size, "out of memory");
        return NULL;
    }
    k->c = c;
    k->ref = j.ref;
    *ud = k;
    *ud_free = lx_cond_free;
    return lx_cond_call;
}

size_t repl_lua_mem_used(const xf_repl *r, size_t *cap)
{
    const lx_ctx *c = r->lua;
    if (cap)
        *cap = c ? c->mem_cap : LX_MEM_CAP;
    return c ? c->mem_used : 0;
}

void repl_lua_close(xf_repl *r)
{
    lx_ctx *c = r->lua;
    if (!c)
        return;
    /* Lua breakpoints and the hook cannot outlive the state they call into */
    if (r->ex) {
        for (;;) {
            int n, id = -1;
            const xf_break *b = exec_breaks(r->ex, &n);
            for (int i = 0; i < n && id < 0; i++)
                if (b[i].ud_free == lx_cond_free)
                    id = b[i].id;
            if (id < 0)
                break;
            exec_break_delete(r->ex, id, NULL);
        }
        if (c->hook_ref != LUA_NOREF && (const void *)r->ex == c->seen_ex)
            exec_set_hook(r->ex, NULL, NULL);
    }
    /* __gc metamethods may run Lua code while closing: the xf module refuses
     * (lx_get), and the watchdog bounds the time (Lua runs finalizers with
     * hooks off, so nothing else can stop an endless one) */
    c->killed = true;
    snprintf(c->kill_msg, sizeof c->kill_msg, "the Lua state is closing");
    c->closing = true;
    lx_begin_outer(c);
    if (!(c->limit > 0))
        atomic_store(&c->limit_ns, (long long)(10 * 1e9));
    atomic_store(&c->engine, 0);
    atomic_fetch_add(&c->active, 1);
    lua_close(c->L);
    atomic_fetch_sub(&c->active, 1);
    if (c->wd_started) {
        atomic_store(&c->wd_stop, true);
        pthread_join(c->wd, NULL);
    }
    free(c);
    r->lua = NULL;
}
