/* print: number and table formatting. Every number the REPL shows goes
 * through here so that recordings, --raw output and tables agree. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repl.h"
#include "tokenizer.h"

void pr_num(char *buf, size_t size, double v)
{
    if (isnan(v))
        snprintf(buf, size, "nan");
    else if (isinf(v))
        snprintf(buf, size, v > 0 ? "inf" : "-inf");
    else
        snprintf(buf, size, "%.6g", v);
}

void pr_raw(char *buf, size_t size, double v)
{
    if (isnan(v))
        snprintf(buf, size, "nan");
    else if (isinf(v))
        snprintf(buf, size, v > 0 ? "inf" : "-inf");
    else
        snprintf(buf, size, "%.9g", v);
}

void pr_bytes(char *buf, size_t size, double b)
{
    const char *u[] = {"B", "KB", "MB", "GB", "TB"};
    int i = 0;
    while (b >= 1000 && i < 4) {
        b /= 1000;
        i++;
    }
    snprintf(buf, size, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

void pr_stats_line(xf_repl *r, const xf_stats *s)
{
    char a[6][32];
    pr_num(a[0], 32, s->min);
    pr_num(a[1], 32, s->max);
    pr_num(a[2], 32, s->mean);
    pr_num(a[3], 32, s->std);
    pr_num(a[4], 32, s->absmax);
    repl_out(r, "  min %s  max %s  mean %s  std %s  absmax %s  nan %lld  inf %lld\n", a[0], a[1], a[2], a[3], a[4],
             (long long)s->n_nan, (long long)s->n_inf);
}

void pr_diff(xf_repl *r, const xf_diff *d)
{
    char a[5][32];
    pr_num(a[0], 32, d->max_abs);
    pr_num(a[1], 32, d->max_rel);
    pr_num(a[2], 32, d->nmse);
    pr_num(a[3], 32, d->cosine);
    pr_num(a[4], 32, d->tol);
    repl_out(r, "  max_abs %s  max_rel %s  nmse %s  cosine %s\n", a[0], a[1], a[2], a[3]);
    repl_out(r, "  nan %lld/%lld  inf %lld/%lld  over tol (%s): %lld", (long long)d->nan_a, (long long)d->nan_b,
             (long long)d->inf_a, (long long)d->inf_b, a[4], (long long)d->n_over);
    if (d->first_over >= 0)
        repl_out(r, ", first at flat index %lld\n", (long long)d->first_over);
    else
        repl_out(r, "\n");
}

void pr_values(xf_repl *r, const float *v, int64_t n, bool raw)
{
    char b[32];
    for (int64_t i = 0; i < n; i++) {
        if (raw)
            pr_raw(b, sizeof b, v[i]);
        else
            pr_num(b, sizeof b, v[i]);
        repl_out(r, "%s%s", i ? " " : (raw ? "" : "  "), b);
    }
    repl_out(r, "\n");
}

void pr_escape(char *buf, size_t size, const char *s, size_t len) { tok_escape(s, len, buf, size); }

size_t pr_escape_controls(const char *s, size_t len, char *buf, size_t cap)
{
    /* C0 controls but tab and newline, DEL, C1 (U+0080..U+009F) and invalid
     * UTF-8 become \xNN; everything else, backslashes included, stays */
    size_t j = 0, valid = tok_utf8_valid_prefix(s, len);
    for (size_t i = 0; i < len && j + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        bool c1 = c == 0xc2 && i + 1 < valid && (unsigned char)s[i + 1] >= 0x80 && (unsigned char)s[i + 1] <= 0x9f;
        if (i >= valid && c >= 0x80) {
            /* past the valid prefix, resynchronize on the next valid character */
            size_t k = tok_utf8_valid_prefix(s + i, len - i);
            if (k > 0) {
                valid = i + k;
                i--;
                continue;
            }
            j += (size_t)snprintf(buf + j, cap - j, "\\x%02x", c);
        } else if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f || c1) {
            unsigned v = c1 ? (unsigned char)s[++i] : c;
            j += (size_t)snprintf(buf + j, cap - j, "\\x%02x", v);
        } else
            buf[j++] = (char)c;
    }
    if (cap)
        buf[j < cap ? j : cap - 1] = '\0';
    return j;
}
