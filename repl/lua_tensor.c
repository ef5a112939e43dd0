/* lua_tensor: tensor handles. xf.tensor() returns a userdata (lx_tensor)
 * holding a snapshot of one tensor's values, taken through the same
 * repl_view_load the commands use; its methods (shape, get, values, stats,
 * name, #, tostring); and the generations (load_gen, pass_gen) that make a
 * handle stale once its model or its pass is gone. Handles hold copies, so
 * a stale one never reads freed memory: staleness is about meaning. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "exec.h"
#include "lua_internal.h"
#include "view.h"
#include "program.h"
#include "repl.h"
#include "tensor.h"

/* --- generations: when handles go stale ------------------------------------------ */

void lx_gen_sync(lx_ctx *c)
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
lx_tensor *lx_push_op_tensor(lua_State *L, lx_ctx *c, int op)
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
lx_tensor *lx_push_named(lua_State *L, lx_ctx *c, const char *spec)
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
lx_tensor *lx_tensor_arg(lua_State *L, lx_ctx *c, int idx)
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

static const luaL_Reg k_tensor_methods[] = {
    {"shape", lt_shape}, {"get", lt_get}, {"values", lt_values}, {"stats", lt_stats}, {"name", lt_name}, {NULL, NULL},
};


void lx_tensor_open(lua_State *L)
{
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
}
