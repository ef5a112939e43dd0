/* repl: the user-facing side. One xf_repl holds what a user session has
 * loaded (model, stepper, sampler settings, Lua state, recorder) and where
 * output goes. Only repl/ prints; every command writes through repl_out /
 * repl_errf so that the same text reaches the terminal, a recording and a
 * Lua xf.cmd() capture. */
#ifndef XF_REPL_H
#define XF_REPL_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "exec.h"
#include "model.h"
#include "strbuf.h"


typedef struct xf_repl xf_repl;

typedef int (*xf_cmd_fn)(xf_repl *r, int argc, char **argv, const char *rest);

enum {
    CMD_REPEATS = 1 << 0,       /* Enter on an empty line repeats it */
    CMD_NEEDS_MODEL = 1 << 1,   /* any loaded file */
    CMD_NEEDS_WEIGHTS = 1 << 2, /* a model with weights */
    CMD_NEEDS_PASS = 1 << 3,    /* a pass was started */
};

enum { COMPLETE_NONE = 0, COMPLETE_TENSOR, COMPLETE_FILE, COMPLETE_COMMAND, COMPLETE_OPKIND };

typedef struct xf_command {
    const char *name;
    const char *aliases;  /* space separated, or NULL */
    const char *synopsis;
    const char *help;     /* lines after the synopsis */
    xf_cmd_fn fn;
    unsigned flags;
    int complete;         /* what the arguments complete to */
} xf_command;

const xf_command *commands_table(size_t *n);
const xf_command *commands_find(const char *name);

struct xf_repl {
    char *model_path;
    xf_model *model;
    xf_exec *ex;
    xf_exec *shadow;            /* cpu ref kernels on the same tokens, for NAME@cpu (lazy) */
    int shadow_pass;            /* pass_no of ex the shadow has replayed, 0 none */
    kern_backend backend;
    bool backend_forced;
    int n_threads;
    int ctx_limit;              /* --ctx N: use at most N positions (0: the model's context length) */
    FILE *out;                  /* normal output (stdout) */
    FILE *errf;                 /* errors (stderr) */
    xf_strbuf *capture;         /* when set, output (and errors) are appended here too */
    bool quiet;                 /* do not write to out (capture only) */
    bool color;
    bool batch;
    bool interactive;
    char last_step[256];
    volatile sig_atomic_t interrupt;
    bool quit;
    /* Lua (lua_api.c) and recording (session.c) attach here */
    void *lua;
    void *rec;
    double lua_timeout;
    bool unsafe_lua;
    double replay_tolerance;
    bool chatting;              /* the context holds a chat: `chat` appends a turn */
};

xf_repl *repl_new(void);
void repl_free(xf_repl *r);
/* Runs one command line: 0 ok, 1 the command failed (its message already written). */
int repl_exec_line(xf_repl *r, const char *line);
int repl_load(xf_repl *r, const char *path);
void repl_out(xf_repl *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void repl_write(xf_repl *r, const char *s, size_t n);
/* one-line error; returns 1 so handlers can `return repl_errf(...)` */
int repl_errf(xf_repl *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* the prompt text for the current state */
void repl_prompt(xf_repl *r, char *buf, size_t size);
/* A tensor by name as `print` takes it: an activation (or alias) of this pass,
 * NAME@ref (the loaded dump), NAME@cpu (the cpu ref shadow on the same
 * tokens) or a GGUF weight (dequantized). The values are a host copy. */
typedef struct repl_view {
    char name[160];   /* canonical, escaped for the terminal */
    char what[64];    /* "cpu:opt", "ref F32", "weight Q4_K" */
    int ndim;
    int64_t shape[4];
    int64_t numel;
    float *data;      /* [numel], malloc'd */
    int op;           /* program op of an activation of this pass, else -1 */
    bool per_pass;    /* stale once the next pass starts (activations, NAME@cpu) */
} repl_view;
int repl_view_load(xf_repl *r, const char *spec, repl_view *v, xf_err *err);
void repl_view_free(repl_view *v);

/* generation shared by the `generate` command and Lua */
typedef struct xf_gen_opts {
    int n;
    float temp;
    int top_k;
    float top_p;
    unsigned long long seed;
    bool ids;        /* print ids instead of text */
    bool quiet;      /* print nothing */
    bool ignore_eos; /* go on past end-of-generation tokens */
} xf_gen_opts;
int repl_generate(xf_repl *r, const xf_gen_opts *o, int32_t **ids_out, int *n_out);

/* Lua (repl/lua_api.c) and sessions (repl/record.c). Declared weak so that
 * the table links while a module is being written; both are part of every
 * released build. */
#define XF_WEAK __attribute__((weak))
XF_WEAK int cmd_lua(xf_repl *r, int argc, char **argv, const char *rest);
XF_WEAK int cmd_source(xf_repl *r, int argc, char **argv, const char *rest);
XF_WEAK int repl_run_script(xf_repl *r, const char *path, int argc, char **argv); /* 0 ok, 1 failed */
/* A Lua expression as a breakpoint condition: returns the callback and its
 * state, or NULL with the reason in why. */
XF_WEAK xf_cond_fn repl_lua_cond(xf_repl *r, const char *expr, void **ud, void (**ud_free)(void *), char *why,
                                 size_t why_size);
XF_WEAK void repl_lua_close(xf_repl *r); /* frees r->lua */
XF_WEAK int cmd_record(xf_repl *r, int argc, char **argv, const char *rest);
XF_WEAK int session_record_start(xf_repl *r, const char *path);
XF_WEAK void session_record_stop(xf_repl *r);
/* runs one command line, recording it when a recording is on; 0 ok, 1 failed */
XF_WEAK int session_record_line(xf_repl *r, const char *line);
/* --replay: 0 all matched, 1 diverged or failed, 2 bad file */
XF_WEAK int session_replay_main(xf_repl *r, const char *path, double tol, bool update);

/* print.c: the only place that formats numbers */
void pr_num(char *buf, size_t size, double v);       /* human: %.6g, nan/inf spelled */
void pr_raw(char *buf, size_t size, double v);       /* machine: %.9g */
void pr_stats_line(xf_repl *r, const xf_stats *s);
void pr_diff(xf_repl *r, const xf_diff *d);
void pr_values(xf_repl *r, const float *v, int64_t n, bool raw);
void pr_bytes(char *buf, size_t size, double bytes); /* "26.5 MB" */
/* control bytes (but \n and \t), DEL, C1 and invalid UTF-8 as \xNN; returns the length written */
size_t pr_escape_controls(const char *s, size_t len, char *buf, size_t cap);
/* escape untrusted text for the terminal */
void pr_escape(char *buf, size_t size, const char *s, size_t len);

#endif
