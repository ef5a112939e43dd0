/* lua_sandbox: what the Lua sandbox leaves out, and why. Without
 * --unsafe-lua a script may compute, print and drive the debugger, but not
 * touch the machine: scripts and sessions are shared and replayed, so they
 * are untrusted input.
 *
 *   load, loadfile, dofile, require, string.dump
 *       compile or read code that bypasses the checked script loader
 *       (lua_file.c: regular files, text chunks only); precompiled
 *       bytecode can crash the VM
 *   io, package, debug
 *       files, native modules, and the debug library (which can remove the
 *       count hook that enforces the time limit, or reach any upvalue)
 *   os (all but clock, time, date)
 *       processes, environment, files (os.remove, os.execute, os.exit)
 *   collectgarbage (all but "count")
 *       "stop" would defeat the memory cap's emergency collection
 *   warn
 *       removed: it would write around the REPL's output
 *
 * A disabled name stays defined, as a function or table that raises
 * "NAME is disabled in the sandbox (start xfdb with --unsafe-lua to allow
 * it)", so a script learns why instead of seeing "attempt to call nil". */
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lua_internal.h"

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

void lx_sandbox_open(lua_State *L)
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

