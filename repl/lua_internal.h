/* lua_internal: what the files of the Lua binding share, and nothing the
 * rest of repl/ may use (its public face is lua_api.h and repl.h). Owns the
 * session's Lua context (lx_ctx), the tensor handle layout, the limits, and
 * the declarations that cross between the binding's files:
 *
 *   lua_runtime.c  the state, allocator with heap cap, count hook, watchdog,
 *                  protected calls, entering/leaving a job; cmd_lua,
 *                  cmd_source, repl_run_script, repl_lua_close
 *   lua_file.c     reading script files: regular files only, bounded
 *                  error messages
 *   lua_output.c   every path by which Lua-produced text reaches the
 *                  terminal (print, expression results, error reports),
 *                  and the capture of command output for xf.cmd
 *   lua_sandbox.c  the reduced standard library, and why each part is gone
 *   lua_tensor.c   tensor handles (userdata lx_tensor), their methods, and
 *                  the generations that make them stale
 *   lua_xf.c       the xf.* functions, except breakpoints and hooks
 *   lua_cond.c     breakpoint conditions and the on-op hook as Lua
 *                  callbacks (xf.brk, xf.delete, xf.on_op, `break ... if`)
 *   lua_patch.c    writing into the pass: xf.set, xf.ablate, xf.on
 *
 * The rules every file keeps: every entry from C into Lua is a lua_pcall of
 * a C function, so that no Lua error (including "not enough memory" from the
 * capped allocator) can longjmp through engine code or reach the panic
 * handler; engine calls are bracketed with LX_ENGINE (the watchdog leaves
 * engine work alone); engine calls that can call back into Lua run with the
 * thread that made them recorded in ctx->cur; callbacks may not start passes,
 * step, load or change breakpoints (lx_no_callback). Host memory the engine
 * hands back is owned by an lx_box so a Lua error cannot leak it. */
#ifndef XF_LUA_INTERNAL_H
#define XF_LUA_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>

#include "exec.h"
#include "repl.h"

#define LX_MEM_CAP ((size_t)256 << 20) /* bytes the Lua heap may hold, tensor snapshots included */
#define LX_HOOK_COUNT 1000             /* VM instructions between limit checks */
#define LX_MAX_DEPTH 16                /* nested `lua`/`source` through xf.cmd */
#define LX_MAX_DIMS 8                  /* refdump tensors may have up to 8 dims */
#define LX_GRACE 1.0                   /* seconds the watchdog allows past the limit */
#define LX_WATCHDOG_MAX_S 3.15e7       /* a longer limit (a year) is no limit for the watchdog */
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

/* The REPL output state saved while xf.cmd (or xf.load, xf.generate) runs
 * commands whose output goes only to a buffer. */
typedef struct lx_cap {
    xf_strbuf *capture;
    bool quiet;
    FILE *errf;
} lx_cap;

/* brackets around engine calls: the watchdog leaves engine work alone */
#define LX_ENGINE(c, stmt)                                                                                   \
    do {                                                                                                     \
        atomic_fetch_add(&(c)->engine, 1);                                                                   \
        stmt;                                                                                                \
        atomic_fetch_sub(&(c)->engine, 1);                                                                   \
    } while (0)

/* --- lua_runtime.c ---------------------------------------------------------------- */

/* The context of the state L belongs to; raises once the state is closing. */
lx_ctx *lx_get(lua_State *L);
/* The session's context, creating the state on first use; NULL with why. */
lx_ctx *lx_ctx_get(xf_repl *r, char *why, size_t why_size);
/* Starts the clock of a top-level call (the time limit counts from here). */
void lx_begin_outer(lx_ctx *c);
/* Raises c->kill_msg at `level` (the time limit or Ctrl-C). */
int lx_raise_killed(lua_State *L, lx_ctx *c, int level);
/* A new lx_box on the stack (its memory freed by the GC). */
lx_box *lx_new_box(lua_State *L);

/* --- lua_file.c ------------------------------------------------------------------- */

/* 0 when path is a regular file (or cannot be opened: the caller's own open
 * reports that); 1 with "PATH: not a regular file" in why otherwise. Never
 * blocks on a FIFO. */
int lx_file_check_regular(const char *path, char *why, size_t why_size);
/* Loads the script at path as a text chunk named "@PATH": pushes the
 * function and returns LUA_OK, or pushes a one-line message and returns the
 * error status. */
int lx_load_script(lua_State *L, lx_ctx *c, const char *path);

/* --- lua_output.c ----------------------------------------------------------------- */

/* Writes Lua-produced text through repl_write with control bytes escaped
 * (pr_escape_controls: tabs and newlines kept). */
void lx_write_escaped(xf_repl *r, const char *s, size_t len);
int lx_print(lua_State *L);
/* Writes the values on L's stack (a `lua EXPR` result) through the formatter,
 * escaped, and a newline. */
void lx_write_values(lx_ctx *c, lua_State *L);
/* Compiles the value formatter and returns its registry reference. */
int lx_show_open(lua_State *L);
void lx_cap_begin(xf_repl *r, xf_strbuf *buf, lx_cap *s);
void lx_cap_end(xf_repl *r, const lx_cap *s);
void lx_push_errors(lua_State *L, const xf_strbuf *sb);
int lx_error_from(lua_State *L, const char *what, const xf_strbuf *sb);
/* A Lua error as one block: the message through repl_errf, then the
 * traceback lines under it when traceback is set. */
void lx_report(xf_repl *r, const char *msg, bool traceback);

/* --- lua_sandbox.c ---------------------------------------------------------------- */

/* Opens the reduced standard library in L (instead of luaL_openlibs). */
void lx_sandbox_open(lua_State *L);

/* --- lua_tensor.c ----------------------------------------------------------------- */

/* Bumps the generations when the model or the pass changed since last seen. */
void lx_gen_sync(lx_ctx *c);
/* Registers the tensor metatable. */
void lx_tensor_open(lua_State *L);
lx_tensor *lx_push_op_tensor(lua_State *L, lx_ctx *c, int op);
lx_tensor *lx_push_named(lua_State *L, lx_ctx *c, const char *spec);
lx_tensor *lx_tensor_arg(lua_State *L, lx_ctx *c, int idx);

/* --- lua_xf.c --------------------------------------------------------------------- */

/* Pushes the xf module table. */
void lx_xf_open(lua_State *L);
void lx_no_callback(lua_State *L, lx_ctx *c, const char *fn);
xf_exec *lx_need_weights(lua_State *L, lx_ctx *c, const char *fn);

/* --- lua_cond.c ------------------------------------------------------------------- */

int xl_brk(lua_State *L);
int xl_delete(lua_State *L);
int xl_on_op(lua_State *L);

/* --- lua_patch.c ------------------------------------------------------------------ */

int xl_set(lua_State *L);
int xl_ablate(lua_State *L);
int xl_on(lua_State *L);
/* Runs body(ud) as a callback inside exec_run (in_callback set, its own
 * time limit at the prompt): 0 done, -1 with "LABEL: message" in err. */
int lx_run_callback(lx_ctx *c, lua_CFunction body, void *ud, const char *label, xf_err *err);
/* Before the state closes: deletes the Lua breakpoints and the hook of r->ex. */
void lx_cond_detach(lx_ctx *c);

/* --- small helpers for building result tables ------------------------------------- */

static inline void lx_set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static inline void lx_set_num(lua_State *L, const char *k, double v)
{
    lua_pushnumber(L, v);
    lua_setfield(L, -2, k);
}

static inline void lx_set_str(lua_State *L, const char *k, const char *v)
{
    lua_pushstring(L, v);
    lua_setfield(L, -2, k);
}

static inline void lx_set_bool(lua_State *L, const char *k, bool v)
{
    lua_pushboolean(L, v);
    lua_setfield(L, -2, k);
}

static inline void lx_push_shape(lua_State *L, int ndim, const int64_t *shape)
{
    lua_createtable(L, ndim, 0);
    for (int i = 0; i < ndim; i++) {
        lua_pushinteger(L, (lua_Integer)shape[i]);
        lua_rawseti(L, -2, i + 1);
    }
}

#endif
