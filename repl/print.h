/* print: owns where output goes and how numbers look. The output sink
 * (repl_write / repl_out / repl_errf) sends the same text to the terminal,
 * a recording and a Lua xf.cmd() capture; the pr_* formatters are the only
 * place that formats numbers, so that recordings, --raw output and tables
 * agree. This file calls nothing else in repl/ and sees nothing of the
 * session but its sink: repl_io is the first member of struct xf_repl
 * (repl.h), so print.c reaches it through the session pointer alone. */
#ifndef XF_PRINT_H
#define XF_PRINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>

#include "strbuf.h"
#include "tensor.h"

typedef struct xf_repl xf_repl;

/* Where a session's output goes. */
typedef struct repl_io {
    FILE *out;          /* normal output (stdout) */
    FILE *errf;         /* errors (stderr) */
    xf_strbuf *capture; /* when set, output (and errors) are appended here too */
    bool quiet;         /* do not write to out (capture only) */
    bool color;
    /* what a closed stdout (EPIPE) raises: the session's Ctrl-C flag and its
     * quit flag (repl_new points them into the session) */
    volatile sig_atomic_t *interrupt;
    bool *quit;
    int out_errno;      /* the errno of the first failed write to out (0: none) */
    /* a Ctrl-C came while a command ran: the terminal echoed "^C" and its
     * cursor is not at the start of a line (repl_errf starts a new one;
     * main.c's SIGINT handler sets it, its prompt clears it) */
    volatile sig_atomic_t ctrl_c_echoed;
} repl_io;

/* --- the output sink ------------------------------------------------------------ */
void repl_write(xf_repl *r, const char *s, size_t n);
void repl_out(xf_repl *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* one-line error; returns 1 so handlers can `return repl_errf(...)` */
int repl_errf(xf_repl *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --- formatting ------------------------------------------------------------------ */
void pr_num(char *buf, size_t size, double v);       /* human: %.6g, nan/inf spelled */
void pr_raw(char *buf, size_t size, double v);       /* machine: %.9g */
void pr_stats_line(xf_repl *r, const xf_stats *s);
void pr_diff(xf_repl *r, const xf_diff *d); /* flat indices: pr_diff_shaped where the shape is known */
/* the metrics, with the first and the worst element as [i, j] indices of shape */
void pr_diff_shaped(xf_repl *r, const xf_diff *d, int ndim, const int64_t *shape);
void pr_values(xf_repl *r, const float *v, int64_t n, bool raw);
void pr_bytes(char *buf, size_t size, double bytes); /* "26.5 MB" */
/* control bytes (but \n and \t), DEL, C1 and invalid UTF-8 as \xNN; returns the length written */
size_t pr_escape_controls(const char *s, size_t len, char *buf, size_t cap);
/* escape untrusted text for the terminal */
void pr_escape(char *buf, size_t size, const char *s, size_t len);
/* A stream that writes to `to` with pr_escape_controls applied (newlines and
 * tabs pass): for reports that quote untrusted text in many places (a
 * replay's errors quote the session's lines, model name and paths), so that
 * no single fprintf can forget to escape. fclose it (`to` stays open); NULL
 * when out of memory. */
#include <stdio.h>
FILE *pr_escaping_stream(FILE *to);


/* --- the terminal ------------------------------------------------------------------ */
/* Columns to lay tables out in: 80 for captured output (recordings, replay,
 * xf.cmd: the same text anywhere), else $COLUMNS, else the terminal's
 * (TIOCGWINSZ), else 80 (piped). */
int pr_width(xf_repl *r);
/* ANSI color on: a terminal, colors wanted (r->color: no NO_COLOR), not captured */
bool pr_color(xf_repl *r);
/* how pictures are drawn: ASCII for captured output (recordings, replay,
 * xf.cmd) and with NO_COLOR, TERM=dumb or a non-UTF-8 locale; Unicode
 * shades otherwise; 256-color cells where pr_color */
typedef enum { PR_ASCII, PR_UNICODE, PR_COLOR } pr_mode;
pr_mode pr_picture_mode(xf_repl *r);
/* SGR sequences for meaning, "" unless pr_color: bad (red), good (green), dim, reset */
const char *pr_sgr(xf_repl *r, const char *what);

/* --- text width ----------------------------------------------------------------- */
/* display columns of UTF-8 text (East Asian wide = 2, combining = 0) */
int pr_display_width(const char *s, size_t len);
/* s cut to at most width columns (cut text ends in "~") and padded with
 * blanks to exactly width, left-aligned unless right; returns buf */
char *pr_fit(char *buf, size_t size, const char *s, int width, bool right);
/* a token piece or name quoted for the terminal: 'text' with \n, \t, \',
 * \\ and control bytes escaped, so that ' \n' and '\n' look different */
void pr_quote(char *buf, size_t size, const char *s, size_t len);

/* --- numbers in columns ------------------------------------------------------------ */
/* One format for a table of values, as numpy picks one: fixed with 4
 * decimals when the finite values are within 1e-4..1e5 in magnitude, else
 * %.3e. Every cell of a matrix uses the same one, so columns align. */
typedef struct pr_cellfmt {
    bool sci;
    int width; /* widest cell */
} pr_cellfmt;
void pr_cellfmt_choose(pr_cellfmt *f, const float *v, int64_t n);
void pr_cell(char *buf, size_t size, double v, const pr_cellfmt *f);
/* "[9, 0]": the multi-dimensional index of flat index i in shape */
void pr_index(char *buf, size_t size, int64_t flat, int ndim, const int64_t *shape);
/* a probability in a table: "0.70" */
void pr_prob(char *buf, size_t size, double p);
/* short form for tables (%.3g), nan/inf spelled */
void pr_short(char *buf, size_t size, double v);

/* --- bench's table: the one place its layout lives ----------------------------------- */
/* A row of the table (and its heading): variant, run, ms, tokens/s, floor,
 * x floor, then note (may be NULL), each column as wide as the heading's. */
void pr_bench_row(xf_repl *r, const char *variant, const char *run, const char *ms, const char *per_s,
                  const char *floor, const char *ratio, const char *note);
/* The floor cells of a time ms against a floor of floor_ms: "15.9 ms" and
 * "2.09x" (ms / floor_ms); "-" for both when the floor is unknown (<= 0). */
void pr_floor(char *floor, char *ratio, size_t size, double ms, double floor_ms);
/* "45.2 GB/s" */
void pr_rate(char *buf, size_t size, double bytes_per_s);

#endif
