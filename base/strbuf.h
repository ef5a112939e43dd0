/* strbuf: a growing NUL-terminated string. A leaf of the bottom floor: the
 * REPL collects its output in one (capture, recordings, Lua xf.cmd), the
 * tokenizer builds chat prompts in one. Appends are best effort: when an
 * allocation fails the text stays as it was and `oom` is set, so that a
 * caller for whom a truncated result is wrong can tell. */
#ifndef XF_STRBUF_H
#define XF_STRBUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct xf_strbuf {
    char *s;         /* NUL-terminated once anything was appended; NULL before */
    size_t len, cap;
    bool oom;        /* an append failed for want of memory */
} xf_strbuf;

void sb_append(xf_strbuf *b, const char *s, size_t n);
void sb_puts(xf_strbuf *b, const char *s);
void sb_printf(xf_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* printf into tmp[0..tmp_size) when the text fits, else into a malloc'd
 * buffer (the caller frees it when it is not tmp). NULL when vsnprintf fails
 * or memory ran out; *len: the text's length. The one place the "stack first,
 * heap for long text" formatting lives (sb_printf, the REPL's repl_out). */
char *sb_vformat(char *tmp, size_t tmp_size, size_t *len, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));
/* Frees the text and zeroes b (ready for reuse). */
void sb_free(xf_strbuf *b);

#endif
