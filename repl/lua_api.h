/* lua_api: internal interface of the Lua binding beyond what repl.h
 * declares (cmd_lua, cmd_source, repl_run_script, repl_lua_cond,
 * repl_lua_close). The user-facing reference of the `xf` module is
 * scripts/README.md. */
#ifndef XF_LUA_API_H
#define XF_LUA_API_H

#include <stddef.h>

#include "repl.h"

/* Bytes the session's Lua heap holds now (0 before Lua was first used), and
 * its cap in *cap if cap is not NULL. Tests also use it to link the binding
 * out of a static library, where the weak declarations of repl.h alone do
 * not pull it in. */
size_t repl_lua_mem_used(const xf_repl *r, size_t *cap);

#endif
