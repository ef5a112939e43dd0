/* lua_cond: Lua functions called by the stepper in the middle of an op
 * loop: breakpoint conditions (xf.brk(pattern, fn), `break PATTERN if
 * EXPR`) and the on-op hook (xf.on_op); xf.delete. A callback runs inside
 * exec_run, so it is a protected call that reports errors as xf_err, and it
 * may not drive the stepper (lx_no_callback). Called from a command at the
 * prompt, a callback is a top-level call with its own time limit. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>

#include "exec.h"
#include "lua_internal.h"
#include "program.h"
#include "repl.h"

/* the state of one Lua breakpoint condition, handed to exec_break_add as its ud */
typedef struct lx_cond {
    lx_ctx *c;
    int ref; /* predicate function in the registry */
} lx_cond;

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

/* Runs body (a C function given ud as its light userdata argument) as a
 * callback inside exec_run: 0 done, -1 error (in err, after label). Nothing
 * may longjmp out. */
int lx_run_callback(lx_ctx *c, lua_CFunction body, void *ud, const char *label, xf_err *err)
{
    bool outer = c->depth == 0;
    lua_State *L = outer ? c->L : c->cur;
    if (outer)
        lx_begin_outer(c); /* called from `continue` at the prompt: a top-level call of its own */
    if (!lua_checkstack(L, 4))
        return xf_err_set(err, "lua: stack overflow");
    lua_State *saved = c->cur;
    c->cur = L;
    c->depth++;
    c->in_callback++;
    int eng = atomic_exchange(&c->engine, 0); /* Lua code again: the watchdog watches it */
    atomic_fetch_add(&c->active, 1);
    lua_pushcfunction(L, body);
    lua_pushlightuserdata(L, ud);
    int st = lua_pcall(L, 1, 0, 0);
    atomic_fetch_sub(&c->active, 1);
    atomic_store(&c->engine, eng);
    c->in_callback--;
    c->depth--;
    c->cur = saved;
    if (st != LUA_OK) {
        const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(error object is not a string)";
        xf_err_set(err, "%s: %s", label, m);
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

/* 1 stop, 0 go on, -1 error (in err). */
static int lx_callback(lx_ctx *c, int ref, int op, bool hook, xf_err *err)
{
    lx_cb_job j = {.c = c, .ref = ref, .op = op, .hook = hook};
    if (lx_run_callback(c, lx_cb_body, &j, hook ? "lua on_op hook" : "lua breakpoint condition", err) != 0)
        return -1;
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

int xl_brk(lua_State *L)
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

int xl_delete(lua_State *L)
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

int xl_on_op(lua_State *L)
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


void lx_cond_detach(lx_ctx *c)
{
    xf_repl *r = c->r;
    if (!r->ex)
        return;
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
    /* xf.on writers (lua_patch.c) are only Lua's */
    exec_set_write_hook(r->ex, NULL, NULL);
    /* the hook is only ours on the exec it was set on */
    if (c->hook_ref != LUA_NOREF && (const void *)r->ex == c->seen_ex)
        exec_set_hook(r->ex, NULL, NULL);
}
