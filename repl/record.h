/* record: owns the `record` command, the recording it keeps in r->rec
 * (engine/session_write.c writes the file) and session_record_line, which
 * runs a line the user typed (or -x, --batch) and, while a recording is on,
 * records it with its captured output. It runs command lines (the preamble
 * of a recording started mid-session too), so it and dispatch depend on each
 * other, as Lua does: the commands that run commands. */
#ifndef XF_RECORD_H
#define XF_RECORD_H

#include <stdbool.h>
#include <stddef.h>

typedef struct xf_repl xf_repl;

int cmd_record(xf_repl *r, int argc, char **argv, const char *rest);
/* runs one command line, recording it when a recording is on; 0 ok, 1 failed */
int session_record_line(xf_repl *r, const char *line);
/* --record FILE: 0 ok, 1 failed (said) */
int session_record_start(xf_repl *r, const char *path);
/* Ends the recording (renames FILE.tmp) if one is on: 0 ok (or none on),
 * 1 it could not be written (said; the exit status is 1) */
int session_record_stop(xf_repl *r);

/* true while a recording is on */
bool record_active(const xf_repl *r);
/* Appends a comment line, or one command and its output (varies: recorded
 * as `~` lines). A write error stops the recording (said); 0 ok, 1 failed. */
int record_comment(xf_repl *r, const char *text);
int record_entry(xf_repl *r, const char *cmd, const char *out, size_t len, bool varies);
/* While a session replays, `record` is refused: begin returns what to hand
 * back to end. */
void *record_replay_begin(xf_repl *r);
void record_replay_end(xf_repl *r, void *outer);

#endif
