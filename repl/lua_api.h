/* lua_api: the public face of the Lua binding for the rest of repl/, beyond
 * the entries repl.h declares (cmd_lua, cmd_source, repl_run_script,
 * repl_lua_cond, repl_lua_close). The binding lives in repl/lua_*.c; what
 * its files share is repl/lua_internal.h, which nothing else includes. The
 * user-facing reference of the `xf` module is scripts/README.md. */
#ifndef XF_LUA_API_H
#define XF_LUA_API_H

#include <stddef.h>

#include "repl.h"

/* Bytes the session's Lua heap holds now (0 before Lua was first used), and
 * its cap in *cap if cap is not NULL (the tests check the cap with it). */
size_t repl_lua_mem_used(const xf_repl *r, size_t *cap);

#endif
