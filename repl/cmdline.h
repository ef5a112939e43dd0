/* cmdline: the ONE place a command line is split into its command and words.
 * Dispatch, the Lua sandbox (xf.cmd), recording, replay and completion all
 * ask repl_line_parse, so that what is checked is what runs. A line that
 * holds CR, LF or NUL inside it is an error, never two commands. */
#ifndef XF_CMDLINE_H
#define XF_CMDLINE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct xf_command xf_command;

typedef struct repl_line {
    const xf_command *cmd; /* NULL: a blank or comment line (nothing to run) */
    int argc;
    char **argv;           /* argv[0] is the command word as typed */
    const char *rest;      /* the raw text after the command word (TEXT arguments) */
    char *buf;             /* owned storage for argv and rest */
} repl_line;

/* Splits line[0..len) into its command and words. 0 ok (cmd may be NULL for
 * a blank or comment line); -1 with a one-line reason in why: an unknown
 * command (with "did you mean"), CR/LF/NUL inside the line, unbalanced
 * quotes, out of memory. The reason is escaped for the terminal. */
int repl_line_parse(const char *line, size_t len, repl_line *out, char *why, size_t why_size);
void repl_line_free(repl_line *l);

typedef struct xf_repl xf_repl;
/* Runs a line repl_line_parse split: the command's preconditions (a model,
 * weights, a pass), then its handler. A NULL cmd (blank, comment) does
 * nothing. 0 ok, 1 failed (the message already written). A caller that
 * checked l->cmd (the Lua sandbox, replay) runs exactly what it checked. */
int repl_exec_parsed(xf_repl *r, const repl_line *l);

#endif
