/* strbuf: a growing NUL-terminated string (see strbuf.h). */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sb_append(xf_strbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = true; /* best effort: the text stays as it was */
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void sb_puts(xf_strbuf *b, const char *s) { sb_append(b, s, strlen(s)); }

char *sb_vformat(char *tmp, size_t tmp_size, size_t *len, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(tmp, tmp_size, fmt, ap);
    if (n < 0) {
        va_end(ap2);
        return NULL;
    }
    *len = (size_t)n;
    if ((size_t)n < tmp_size) {
        va_end(ap2);
        return tmp;
    }
    char *big = malloc((size_t)n + 1);
    if (big)
        vsnprintf(big, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return big;
}

void sb_printf(xf_strbuf *b, const char *fmt, ...)
{
    char tmp[1024];
    size_t n;
    va_list ap;
    va_start(ap, fmt);
    char *t = sb_vformat(tmp, sizeof tmp, &n, fmt, ap);
    va_end(ap);
    if (!t) {
        b->oom = true;
        return;
    }
    sb_append(b, t, n);
    if (t != tmp)
        free(t);
}

void sb_free(xf_strbuf *b)
{
    free(b->s);
    memset(b, 0, sizeof *b);
}
