/* print: owns where output goes and how numbers look. The output sink
 * (repl_write / repl_out / repl_errf) sends the same text to the terminal,
 * a recording and a Lua xf.cmd() capture; the pr_* formatters are the only
 * place that formats numbers, so that recordings, --raw output and tables
 * agree. This file calls nothing else in repl/. */
#ifndef XF_PRINT_H
#define XF_PRINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

typedef struct xf_repl xf_repl;

/* --- the output sink ------------------------------------------------------------ */
void repl_write(xf_repl *r, const char *s, size_t n);
void repl_out(xf_repl *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* one-line error; returns 1 so handlers can `return repl_errf(...)` */
int repl_errf(xf_repl *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* --- formatting ------------------------------------------------------------------ */
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
