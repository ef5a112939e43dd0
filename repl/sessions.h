/* sessions: owns --replay: run every command of a recorded file quietly and
 * compare its output, or --update it. (Recording is record.c.) */
#ifndef XF_SESSIONS_H
#define XF_SESSIONS_H

#include <stdbool.h>

typedef struct xf_repl xf_repl;

typedef struct session_replay_opts {
    double tol;        /* relative tolerance; < 0: the file's */
    bool update;       /* write the new output instead of comparing */
    bool allow_writes; /* run commands that write files (CMD_WRITES_FILES); else refuse the file */
    bool report;       /* go on past a divergence; print the largest difference that matched */
} session_replay_opts;
/* --replay: 0 all matched, 1 diverged, refused or failed, 2 bad file */
int session_replay_main(xf_repl *r, const char *path, const session_replay_opts *o);

#endif
