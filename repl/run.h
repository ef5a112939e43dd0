/* run: owns the commands that move the stepper: start a pass (run, token,
 * chat), step through it (step, next, finish, continue), say where it
 * stands (where, list), and generation (generate, and repl_generate that
 * Lua shares). */
#ifndef XF_RUN_H
#define XF_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "exec.h"

typedef struct xf_repl xf_repl;

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
/* Drops a paused generation; true while one is paused in the current pass */
void gen_drop(xf_repl *r);
bool gen_paused(xf_repl *r);
/* `continue` while a generation is paused: resumes it (0 ok, 1 failed) */
int gen_resume(xf_repl *r);
/* the stop line and where it stands (run.c) */
void run_show_stop(xf_repl *r, xf_stop why);

int cmd_run(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_token(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_step(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_next(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_finish(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_continue(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_where(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_list(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_generate(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_chat(xf_repl *r, int argc, char **argv, const char *rest);

#endif
