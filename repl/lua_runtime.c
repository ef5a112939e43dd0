/* lua_runtime: the session's Lua state (r->lua, created on first use) and
 * how code enters it. Owns the allocator with its heap cap, the count hook
 * that enforces --lua-timeout and Ctrl-C, the watchdog for what the hook
 * cannot stop, the pcall/xpcall/coroutine.resume wrappers that keep those
 * errors from being swallowed, entering and leaving a job (a `lua` line, a
 * script), and the entries repl.h declares: cmd_lua, cmd_source,
 * repl_run_script, repl_lua_close; repl_lua_mem_used (lua_api.h).
 * The file layout of the binding is in lua_internal.h. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "args.h"
#include "exec.h"
#include "lua_api.h"
#include "lua_internal.h"
#include "repl.h"

/* the context rides on the allocator's user data: every thread of the state reaches it */
lx_ctx *lx_get(lua_State *L)
{
    void *ud;
    lua_getallocf(L, &ud);
    lx_ctx *c = ud;
    if (c->closing)
        luaL_error(L, "xf is closed (the Lua state is closing)");
    return c;
}

/* --- the watchdog ------------------------------------------------------------------ */

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

void lx_begin_outer(lx_ctx *c)
{
    clock_gettime(CLOCK_MONOTONIC, &c->start);
    c->limit = c->r->lua_timeout;
    c->killed = false;
    atomic_store(&c->start_ns, (long long)c->start.tv_sec * 1000000000LL + c->start.tv_nsec);
    /* a limit past a year (--lua-timeout inf, 1e300) is no limit for the
     * watchdog: its nanoseconds, plus the grace, must fit a long long */
    atomic_store(&c->limit_ns, c->limit > 0 && c->limit < LX_WATCHDOG_MAX_S ? (long long)(c->limit * 1e9) : 0);
}

int lx_raise_killed(lua_State *L, lx_ctx *c, int level)
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

/* --- boxes: engine memory owned by the GC ------------------------------------------ */

static int lx_box_gc(lua_State *L)
{
    lx_box *b = luaL_checkudata(L, 1, LX_BOX_MT);
    free(b->p);
    b->p = NULL;
    sb_free(&b->sb);
    return 0;
}

lx_box *lx_new_box(lua_State *L)
{
    lx_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    memset(b, 0, sizeof *b);
    luaL_setmetatable(L, LX_BOX_MT);
    return b;
}

/* --- the state -------------------------------------------------------------------- */

static void lx_wrap_protected(lua_State *L, int table, const char *field)
{
    table = lua_absindex(L, table);
    lua_getfield(L, table, field);
    lua_pushcclosure(L, lx_protected_wrap, 1);
    lua_setfield(L, table, field);
}

/* The globals every state has: the libraries (all with --unsafe-lua, else
 * the sandbox's), print through the REPL, the protected-call wrappers, the
 * metatables, the formatter and the xf module. */
static int lx_init_body(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    if (c->unsafe)
        luaL_openlibs(L);
    else
        lx_sandbox_open(L);
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
    lx_tensor_open(L);
    c->show_ref = lx_show_open(L);

    lx_xf_open(L);
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
    /* every entry is protected: reaching this is a bug in the binding */
    const char *m = lua_tostring(L, -1);
    char esc[1024];
    pr_escape_controls(m ? m : "?", m ? strlen(m) : 1, esc, sizeof esc); /* Lua text, like every other */
    fprintf(stderr, "xfdb: unprotected Lua error: %s\n", esc);
    abort();
}

lx_ctx *lx_ctx_get(xf_repl *r, char *why, size_t why_size)
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

/* One entry from the REPL: a `lua` line or a script, run by lx_enter. */
enum { LX_JOB_CODE, LX_JOB_SCRIPT };

typedef struct lx_job {
    int kind;
    const char *code; /* LX_JOB_CODE */
    const char *path; /* LX_JOB_SCRIPT */
    int argc;
    char **argv;
    bool load_failed; /* report without a traceback */
} lx_job;

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

/* `lua CODE`: an expression prints its values, and so does a chunk's
 * `return`, as in the standalone interpreter */
static int lx_run_code(lua_State *L, lx_ctx *c, lx_job *j)
{
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
    /* what the chunk returned: an expression's values, or a `return`'s */
    if (lua_gettop(L) > 0)
        lx_write_values(c, L);
    return 0;
}

/* `source FILE ARGS`, `--script FILE ARGS` */
static int lx_run_script(lua_State *L, lx_ctx *c, lx_job *j)
{
    if (lx_load_script(L, c, j->path) != LUA_OK) {
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

static int lx_job_body(lua_State *L)
{
    lx_job *j = lua_touserdata(L, 1);
    lx_ctx *c = lx_get(L);
    lx_gen_sync(c);
    lua_settop(L, 0);
    return j->kind == LX_JOB_CODE ? lx_run_code(L, c, j) : lx_run_script(L, c, j);
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
int cmd_source(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    if (argc < 2)
        return repl_errf(r, "usage: source FILE.lua [ARGS]");
    for (int i = 1; i < argc; i++)
        args_path(argv[i]);
    return repl_run_script(r, argv[1], argc - 2, argv + 2);
}

int repl_run_script(xf_repl *r, const char *path, int argc, char **argv)
{
    lx_job j = {.kind = LX_JOB_SCRIPT, .path = path, .argc = argc, .argv = argv};
    return lx_enter(r, &j) ? 1 : 0;
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
    lx_cond_detach(c); /* Lua breakpoints and the hook cannot outlive the state they call into */
    /* __gc metamethods may run Lua code while closing: the xf module refuses
     * (lx_get), and the watchdog bounds the time (Lua runs finalizers with
     * hooks off, so nothing else can stop an endless one) */
    c->killed = true;
    snprintf(c->kill_msg, sizeof c->kill_msg, "the Lua state is closing");
    c->closing = true;
    lx_begin_outer(c);
    if (atomic_load(&c->limit_ns) <= 0)
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
