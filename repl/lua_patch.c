/* lua_patch: writing into the forward pass from Lua (issue 18): xf.set
 * and xf.ablate (as `set` and `ablate`, through repl/patch.c) and xf.on,
 * a function called with an op's tensor right after the op runs that may
 * return new values for it. xf.on functions live in the registry table
 * "xf.on" ({pattern, fn} in the order given) and run through the engine's
 * write hook as callbacks (lx_run_callback): they may not drive the
 * stepper or run commands (xf.cmd), and while one is set every pass runs
 * op by op (no CUDA graphs). */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "exec.h"
#include "lua_internal.h"
#include "patch.h"
#include "program.h"
#include "repl.h"

#define ON_KEY "xf.on"
#define ON_EX_KEY "xf.on.ex"

/* --- values from Lua ----------------------------------------------------------------- */

typedef struct vals {
    float *v;
    int64_t n, cap;
} vals;

static void vals_push(lua_State *L, vals *a, double x)
{
    if (a->n == a->cap) {
        int64_t cap = a->cap ? 2 * a->cap : 64;
        float *nv = realloc(a->v, (size_t)cap * sizeof *nv);
        if (!nv)
            luaL_error(L, "out of memory");
        a->v = nv;
        a->cap = cap;
        lx_box *b = lua_touserdata(L, -1); /* the box on top owns the array */
        b->p = nv;
    }
    a->v[a->n++] = (float)x;
}

/* numbers of a table, nested tables row-major (depth-first) */
static void vals_table(lua_State *L, int idx, vals *a, int depth)
{
    if (depth > 8)
        luaL_error(L, "values nested more than 8 deep");
    lua_Integer n = luaL_len(L, idx);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, idx, i);
        if (lua_type(L, -1) == LUA_TTABLE) {
            lua_insert(L, -2); /* the box stays on top */
            vals_table(L, lua_gettop(L) - 1, a, depth + 1);
            lua_remove(L, -2);
            continue;
        }
        int isnum;
        double x = lua_tonumberx(L, -1, &isnum);
        if (!isnum)
            luaL_error(L, "value %d is a %s, not a number", (int)a->n + 1, luaL_typename(L, -1));
        lua_pop(L, 1);
        vals_push(L, a, x);
    }
}

/* The values at idx: a number, a table of numbers, a tensor handle.
 * Pushes a box that owns them. */
static void vals_get(lua_State *L, lx_ctx *c, int idx, vals *a)
{
    idx = lua_absindex(L, idx);
    lx_new_box(L);
    memset(a, 0, sizeof *a);
    if (lua_type(L, idx) == LUA_TNUMBER)
        vals_push(L, a, lua_tonumber(L, idx));
    else if (lua_type(L, idx) == LUA_TTABLE)
        vals_table(L, idx, a, 0);
    else if (luaL_testudata(L, idx, LX_TENSOR_MT)) {
        lx_tensor *t = lx_tensor_arg(L, c, idx);
        for (int64_t k = 0; k < t->numel; k++)
            vals_push(L, a, t->data[k]);
    } else
        luaL_error(L, "values: a number, a table of numbers or a tensor, not a %s", luaL_typename(L, idx));
}

/* --- xf.set, xf.ablate ----------------------------------------------------------------- */

static void need_pass(lua_State *L, lx_ctx *c, const char *fn)
{
    xf_exec *ex = lx_need_weights(L, c, fn);
    xf_where w;
    exec_where(ex, &w);
    if (!w.active)
        luaL_error(L, "%s: no pass yet (start one with xf.run(TEXT) or xf.run({ids}))", fn);
    lx_no_callback(L, c, fn);
}

/* xf.set(name, slice, value): value a number, a table, a tensor, or a name
 * as `set` takes it ("blk.2.out@pass-1[3]"). Returns the elements written. */
int xl_set(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    const char *name = luaL_checkstring(L, 1);
    const char *slice = luaL_optstring(L, 2, "");
    luaL_checkany(L, 3);
    need_pass(L, c, "xf.set");
    lx_gen_sync(c);
    lua_pushfstring(L, "%s%s", name, slice);
    const char *target = lua_tostring(L, -1);
    const char *rhs = lua_type(L, 3) == LUA_TSTRING ? lua_tostring(L, 3) : NULL;
    vals a = {0};
    if (!rhs)
        vals_get(L, c, 3, &a);
    if (lua_type(L, 3) == LUA_TNUMBER)
        lua_pushfstring(L, "set %s = %s", target, luaL_tolstring(L, 3, NULL));
    else if (rhs)
        lua_pushfstring(L, "set %s = %s", target, rhs);
    else
        lua_pushfstring(L, "xf.set %s = {%I values}", target, (lua_Integer)a.n);
    const char *note = lua_tostring(L, -1);
    xf_err err = {0};
    int64_t n = 0;
    int rc;
    LX_ENGINE(c, rc = patch_set(c->r, target, rhs, a.v, a.n, note, &n, &err));
    if (rc != 0)
        return luaL_error(L, "xf.set: %s", err.msg);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* xf.ablate("blk.L.head", H) | xf.ablate("blk.L.ffn"): the elements zeroed */
int xl_ablate(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    const char *what = luaL_checkstring(L, 1);
    lua_Integer head = luaL_optinteger(L, 2, -1);
    need_pass(L, c, "xf.ablate");
    if (lua_isnoneornil(L, 2) && strstr(what, ".head"))
        return luaL_error(L, "xf.ablate: blk.L.head needs a head number: xf.ablate(\"%s\", H)", what);
    if (!lua_isnoneornil(L, 2) && (head < 0 || head > (1 << 20)))
        return luaL_error(L, "xf.ablate: head %I is not a head number", (LUAI_UACINT)head);
    char target[128];
    xf_err err = {0};
    int64_t n = 0;
    int rc;
    LX_ENGINE(c, rc = patch_ablate(c->r, what, (long)head, target, sizeof target, &n, &err));
    if (rc != 0)
        return luaL_error(L, "%s%s", strncmp(err.msg, "ablate", 6) ? "xf.ablate: " : "xf.", err.msg);
    lua_pushinteger(L, (lua_Integer)n);
    return 1;
}

/* --- xf.on ------------------------------------------------------------------------------ */

typedef struct on_job {
    lx_ctx *c;
    int op;
} on_job;

/* one op: every {pattern, fn} that matches its name, in order */
static int on_body(lua_State *L)
{
    on_job *j = lua_touserdata(L, 1);
    lx_ctx *c = j->c;
    lx_gen_sync(c);
    xf_exec *ex = c->r->ex;
    const xf_op *o = &exec_program(ex)->ops[j->op];
    if (lua_getfield(L, LUA_REGISTRYINDEX, ON_KEY) != LUA_TTABLE)
        return 0;
    int tbl = lua_gettop(L);
    lua_Integer n = luaL_len(L, tbl);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, tbl, i);
        lua_geti(L, -1, 1);
        const char *pat = lua_tostring(L, -1);
        if (!pat || !program_glob_match(pat, o->name)) {
            lua_pop(L, 2);
            continue;
        }
        lua_geti(L, -2, 2);
        lx_push_op_tensor(L, c, j->op);
        lua_pushstring(L, o->name);
        lua_pushinteger(L, j->op);
        lua_call(L, 3, 1);
        if (lua_isnil(L, -1) || (lua_isboolean(L, -1) && !lua_toboolean(L, -1))) {
            lua_pop(L, 3);
            continue;
        }
        vals a;
        vals_get(L, c, -1, &a);
        if (a.n != o->numel)
            return luaL_error(L, "xf.on %s: %s has %I elements, the function returned %I", pat, o->name,
                              (lua_Integer)o->numel, (lua_Integer)a.n);
        int64_t *idx = malloc((size_t)(a.n ? a.n : 1) * sizeof *idx);
        if (!idx)
            return luaL_error(L, "out of memory");
        for (int64_t k = 0; k < a.n; k++)
            idx[k] = k;
        xf_err err = {0};
        char note[300];
        snprintf(note, sizeof note, "xf.on %s", pat);
        int rc = exec_tensor_write(ex, j->op, idx, a.n, a.v, a.n, &err);
        free(idx);
        if (rc == 0)
            rc = exec_note_intervention(ex, note, &err);
        if (rc != 0)
            return luaL_error(L, "xf.on %s: %s", pat, err.msg);
        lua_pop(L, 4); /* box, value, pattern, entry */
    }
    return 0;
}

static int on_hook(void *ud, xf_exec *ex, int op, xf_err *err)
{
    (void)ex;
    on_job j = {.c = ud, .op = op};
    return lx_run_callback(j.c, on_body, &j, "lua xf.on function", err);
}

/* xf.on(pattern, fn): fn(t, name, op) after every op whose name matches;
 * it returns nil (no change) or the op's new values (a table of numel
 * numbers, nested tables row-major, or a tensor). xf.on(pattern, nil)
 * removes that pattern's function, xf.on() every one. */
int xl_on(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    const char *pat = luaL_optstring(L, 1, NULL);
    bool clear = lua_isnoneornil(L, 2);
    if (!clear)
        luaL_checktype(L, 2, LUA_TFUNCTION);
    xf_exec *ex = lx_need_weights(L, c, "xf.on");
    lx_no_callback(L, c, "xf.on");
    /* functions set on another stepper (before a load) are gone with it */
    lua_getfield(L, LUA_REGISTRYINDEX, ON_EX_KEY);
    bool same = lua_touserdata(L, -1) == (void *)ex && exec_write_hooked(ex);
    lua_pop(L, 1);
    if (!same || !pat) {
        lua_newtable(L);
        lua_setfield(L, LUA_REGISTRYINDEX, ON_KEY);
    }
    lua_pushlightuserdata(L, ex);
    lua_setfield(L, LUA_REGISTRYINDEX, ON_EX_KEY);
    lua_getfield(L, LUA_REGISTRYINDEX, ON_KEY);
    int tbl = lua_gettop(L);
    lua_Integer n = luaL_len(L, tbl);
    /* the list without pat, then {pat, fn} at its end */
    lua_newtable(L);
    lua_Integer k = 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_geti(L, tbl, i);
        lua_geti(L, -1, 1);
        bool drop = pat && lua_tostring(L, -1) && strcmp(lua_tostring(L, -1), pat) == 0;
        lua_pop(L, 1);
        if (drop)
            lua_pop(L, 1);
        else
            lua_seti(L, -2, ++k);
    }
    if (pat && !clear) {
        lua_createtable(L, 2, 0);
        lua_pushstring(L, pat);
        lua_rawseti(L, -2, 1);
        lua_pushvalue(L, 2);
        lua_rawseti(L, -2, 2);
        lua_seti(L, -2, ++k);
    }
    lua_setfield(L, LUA_REGISTRYINDEX, ON_KEY);
    exec_set_write_hook(ex, k ? on_hook : NULL, k ? c : NULL);
    lua_pushinteger(L, k);
    return 1;
}
