/* sessions: owns the drivers of recorded sessions: a line run while a
 * recording is on (captured and handed to record.c), and --replay (run
 * every command of a file quietly and compare, or --update it). */
#ifndef XF_SESSIONS_H
#define XF_SESSIONS_H

#include <stdbool.h>

typedef struct xf_repl xf_repl;

/* runs one command line, recording it when a recording is on; 0 ok, 1 failed */
int session_record_line(xf_repl *r, const char *line);

typedef struct session_replay_opts {
    double tol;        /* relative tolerance; < 0: the file's */
    bool update;       /* write the new output instead of comparing */
    bool allow_writes; /* run commands that write files (CMD_WRITES_FILES); else refuse the file */
    bool report;       /* go on past a divergence; print the largest difference that matched */
} session_replay_opts;
/* --replay: 0 all matched, 1 diverged, refused or failed, 2 bad file */
int session_replay_main(xf_repl *r, const char *path, const session_replay_opts *o);

#endif
