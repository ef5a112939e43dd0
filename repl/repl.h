/* repl: owns the state of one user session. One xf_repl holds what a user
 * session has loaded (model, stepper, sampler settings, Lua state,
 * recorder) and where output goes; repl.c makes, frees and loads it. Only
 * repl/ prints; every command writes through repl_out / repl_errf (print.h)
 * so that the same text reaches the terminal, a recording and a Lua
 * xf.cmd() capture. */
#ifndef XF_REPL_H
#define XF_REPL_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "exec.h"
#include "model.h"
#include "print.h"
#include "strbuf.h"

typedef struct xf_repl xf_repl;

struct xf_repl {
    repl_io io;                 /* FIRST member: where output goes (print.h; print.c sees only this) */
    char *model_path;
    xf_model *model;
    xf_exec *ex;
    xf_exec *shadow;            /* cpu ref kernels on the same tokens, for NAME@cpu (lazy) */
    int shadow_pass;            /* pass_no of ex the shadow has replayed, 0 none */
    kern_backend backend;
    bool backend_forced;
    int n_threads;
    int ctx_limit;              /* --ctx N: use at most N positions (0: the model's context length) */
    int native_ctx;             /* the context length the loaded file declares */
    bool batch;
    bool interactive;
    volatile sig_atomic_t interrupt;
    /* a command stopped at a Ctrl-C: exec_run consumes `interrupt`, so this
     * is how a caller (Lua's xf.cmd) learns it, without reading the text */
    bool stopped_by_interrupt;
    bool quit;
    /* Lua (repl/lua_*.c) and recording (record.c) attach here */
    void *lua;
    void *rec;
    double lua_timeout;
    bool unsafe_lua;
    double replay_tolerance;
    bool chatting;              /* the context holds a chat: `chat` appends a turn */
    /* a generation paused at a stop, for `continue`: owned here, made and
     * read by generate.c, which leaves its destructor beside it */
    void *gen;
    void (*gen_free)(void *gen);
};

xf_repl *repl_new(void);
/* Frees the session: Lua state, stepper, shadow, model. */
void repl_free(xf_repl *r);
int repl_load(xf_repl *r, const char *path);
/* Frees a paused generation (nothing when there is none). */
void repl_drop_gen(xf_repl *r);
/* A new stepper for the loaded model, as a load makes it (passes count
 * from 1, no pass, breakpoints, check, reference or hooks) but with the
 * kernel choice and graph mode kept. 0 ok, 1 failed (said; nothing changed). */
int repl_fresh_stepper(xf_repl *r);
/* the prompt text for the current state */
void repl_prompt(xf_repl *r, char *buf, size_t size);
/* Runs one command line: repl_line_parse, then repl_exec_parsed
 * (cmdline.c). A line end at the very end (what a reader leaves: "\n",
 * "\r\n") is dropped first; one inside the line is an error. 0 ok, 1 the
 * line or its command failed (the message already written). */
int repl_exec_line(xf_repl *r, const char *line);
/* "context N positions (...)": what is used, the file's, what --ctx set */
void repl_ctx_str(const xf_repl *r, char *buf, size_t size);
/* The default thread count: the cores this process may run on. */
int repl_default_threads(void);


/* Lua (repl/lua_runtime.c, lua_cond.c; the rest of its face is lua_api.h) */
int cmd_lua(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_source(xf_repl *r, int argc, char **argv, const char *rest);
int repl_run_script(xf_repl *r, const char *path, int argc, char **argv); /* 0 ok, 1 failed */
/* A Lua expression as a breakpoint condition: returns the callback and its
 * state, or NULL with the reason in why. */
xf_cond_fn repl_lua_cond(xf_repl *r, const char *expr, void **ud, void (**ud_free)(void *), char *why,
                         size_t why_size);
void repl_lua_close(xf_repl *r); /* frees r->lua */

#endif
