/* print: the output sink and number and table formatting. Every command
 * writes through repl_write / repl_out / repl_errf, and every number the
 * REPL shows goes through pr_*, so that recordings, --raw output and
 * tables agree. Calls nothing else in repl/. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "print.h"

/* The session's sink: the first member of struct xf_repl (C11 6.7.2.1: a
 * pointer to a struct, suitably converted, points to its first member). */
#define IO(r) ((repl_io *)(void *)(r))
#include "tokenizer.h"
#include "utf8.h"

/* --- the output sink ------------------------------------------------------------- */

void repl_write(xf_repl *r, const char *s, size_t n)
{
    repl_io *io = IO(r);
    if (io->capture)
        sb_append(io->capture, s, n);
    if (!io->quiet && io->out) {
        errno = 0;
        if ((fwrite(s, 1, n, io->out) != n || fflush(io->out) != 0) && !io->out_errno)
            io->out_errno = errno ? errno : EIO; /* what the exit status line says */
        if (io->out_errno == EPIPE) {
            /* nobody reads any more (xfdb ... | head -1; SIGPIPE is ignored,
             * main.c): stop what runs as a Ctrl-C does and quit, so that a
             * recording ends as at exit instead of dying with its .tmp */
            if (io->interrupt)
                *io->interrupt = 1;
            if (io->quit)
                *io->quit = true;
        }
    }
}

void repl_out(xf_repl *r, const char *fmt, ...)
{
    char tmp[2048];
    size_t n;
    va_list ap;
    va_start(ap, fmt);
    char *t = sb_vformat(tmp, sizeof tmp, &n, fmt, ap);
    va_end(ap);
    if (!t)
        return;
    repl_write(r, t, n);
    if (t != tmp)
        free(t);
}

/* pr_escape_controls, and a tab as \x09 too: an error is one line, and a
 * tab in it comes from what was typed or read (a name with a tab in a slice
 * reached the terminal raw: the fuzzer, session 26), never from layout */
static void err_escape(const char *msg, size_t len, char *esc, size_t cap)
{
    size_t j = 0, i = 0;
    while (i <= len && j + 5 < cap) {
        const char *tab = memchr(msg + i, '\t', len - i);
        size_t seg = tab ? (size_t)(tab - (msg + i)) : len - i;
        j += pr_escape_controls(msg + i, seg, esc + j, cap - j);
        if (!tab)
            break;
        if (j + 5 < cap)
            j += (size_t)snprintf(esc + j, cap - j, "\\x09");
        i += seg + 1;
    }
    esc[j < cap ? j : cap - 1] = '\0';
}

/* An error on a terminal, wrapped at width between words (a terminal cuts
 * a long line mid-word: "writin/g"), the lines after the first indented by
 * two; a newline in it stays one. A pipe or a script gets it on one line,
 * as written (for grep and for the tests). */
static void err_wrapped(FILE *f, bool color, const char *msg, int width)
{
    fprintf(f, "%serror:%s ", color ? "\033[1;31m" : "", color ? "\033[0m" : "");
    int col = 7;
    for (const char *p = msg; *p;) {
        if (*p == '\n') {
            fputc('\n', f);
            col = 0;
            p++;
            continue;
        }
        const char *w = p;
        while (*w == ' ')
            w++;
        const char *e = w;
        int wl = 0;
        for (; *e && *e != ' ' && *e != '\n'; e++)
            wl += ((unsigned char)*e & 0xc0) != 0x80; /* code points */
        int sp = (int)(w - p);
        if (col > 2 && wl > 0 && col + sp + wl > width) {
            fputs("\n  ", f);
            col = 2;
        } else {
            fwrite(p, 1, (size_t)sp, f);
            col += sp;
        }
        fwrite(w, 1, (size_t)(e - w), f);
        col += wl;
        p = e;
    }
    fputc('\n', f);
}

int repl_errf(xf_repl *r, const char *fmt, ...)
{
    /* Short errors (all but a few) use the stack, so that an error still
     * shows whole when memory ran out; a longer one (quoting a long
     * argument) is allocated, and shown cut only if that fails too. */
    char tmp[1024], esc_tmp[4 * sizeof tmp + 6];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    char *msg = tmp, *esc = esc_tmp;
    size_t len = n < 0 ? 0 : (size_t)n;
    if (len >= sizeof tmp) {
        char *big = malloc(len + 1), *big_esc = malloc(4 * len + 6);
        if (big && big_esc) {
            va_start(ap, fmt);
            vsnprintf(big, len + 1, fmt, ap);
            va_end(ap);
            msg = big;
            esc = big_esc;
        } else {
            free(big);
            free(big_esc);
            len = sizeof tmp - 1;
        }
    }
    /* errors may quote file content: keep control bytes off the terminal. The
     * modules already escape what they quote, so backslashes stay as they are;
     * only control characters (C0, DEL, C1) and invalid UTF-8 are rewritten
     * (at most 4 bytes each). */
    err_escape(msg, len, esc, 4 * len + 6);
    if (IO(r)->capture)
        sb_printf(IO(r)->capture, "error: %s\n", esc);
    if (IO(r)->errf) {
        bool c = IO(r)->color;
        /* after the "^C" the terminal echoed, not glued to it */
        if (IO(r)->ctrl_c_echoed && isatty(fileno(IO(r)->errf))) {
            IO(r)->ctrl_c_echoed = 0;
            fputc('\n', IO(r)->errf);
        }
        if (isatty(fileno(IO(r)->errf)))
            err_wrapped(IO(r)->errf, c, esc, pr_width(r));
        else
            fprintf(IO(r)->errf, "%serror:%s %s\n", c ? "\033[1;31m" : "", c ? "\033[0m" : "", esc);
        fflush(IO(r)->errf);
    }
    if (msg != tmp) {
        free(msg);
        free(esc);
    }
    return 1;
}

/* --- formatting ------------------------------------------------------------------ */

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

/* the widest one-line stats: 5 numbers of 12 characters, two 20-digit counts */
#define PR_STATS_ONE_LINE 130

void pr_stats_line(xf_repl *r, const xf_stats *s)
{
    char a[5][32], head[160], tail[96];
    pr_num(a[0], 32, s->min);
    pr_num(a[1], 32, s->max);
    pr_num(a[2], 32, s->mean);
    pr_num(a[3], 32, s->std);
    pr_num(a[4], 32, s->absmax);
    snprintf(head, sizeof head, "  min %s  max %s  mean %s  std %s", a[0], a[1], a[2], a[3]);
    snprintf(tail, sizeof tail, "absmax %s  nan %lld  inf %lld", a[4], (long long)s->n_nan, (long long)s->n_inf);
    /* One line when the longest numbers (12 characters each, -1.23457e-05)
     * would still fit the terminal, else two at every value: the choice
     * depends on the width alone, never on the numbers, so that a session
     * recorded on one backend lays out the same on another (recordings and
     * captures are 80 columns: two lines). */
    if (pr_width(r) >= PR_STATS_ONE_LINE)
        repl_out(r, "%s  %s\n", head, tail);
    else
        repl_out(r, "%s\n  %s\n", head, tail);
}

void pr_diff(xf_repl *r, const xf_diff *d) { pr_diff_shaped(r, d, 0, NULL); }

void pr_diff_shaped(xf_repl *r, const xf_diff *d, int ndim, const int64_t *shape)
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
    if (d->first_over >= 0 && ndim > 0) {
        char at[96];
        pr_index(at, sizeof at, d->first_over, ndim, shape);
        repl_out(r, ", first at %s\n", at);
    } else if (d->first_over >= 0)
        repl_out(r, ", first at flat index %lld\n", (long long)d->first_over);
    else
        repl_out(r, "\n");
    if (d->worst >= 0 && ndim > 0) {
        char at[96], e[32];
        pr_index(at, sizeof at, d->worst, ndim, shape);
        pr_num(e, sizeof e, d->max_abs);
        repl_out(r, "  worst at %s (|A-B| %s)\n", at, d->mismatch_nonfinite ? "nan/inf" : e);
    }
}

void pr_values(xf_repl *r, const float *v, int64_t n, bool raw)
{
    /* raw: one line for machines, byte for byte as it always was; human:
     * wrapped at the terminal's width, two blanks in */
    char b[32];
    int width = raw ? 0 : pr_width(r), col = 0;
    for (int64_t i = 0; i < n; i++) {
        if (raw)
            pr_raw(b, sizeof b, v[i]);
        else
            pr_num(b, sizeof b, v[i]);
        int len = (int)strlen(b);
        if (raw)
            repl_out(r, "%s%s", i ? " " : "", b);
        else if (i == 0 || col + 1 + len > width) {
            repl_out(r, "%s  %s", i ? "\n" : "", b);
            col = 2 + len;
        } else {
            repl_out(r, " %s", b);
            col += 1 + len;
        }
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

/* --- an escaping stream ------------------------------------------------------------ */

typedef struct esc_cookie {
    FILE *to;
    char carry[4]; /* the start of a UTF-8 character the last write cut */
    size_t n_carry;
} esc_cookie;

static void esc_emit(esc_cookie *k, const char *s, size_t n)
{
    if (!n)
        return;
    char stack[4 * 600 + 8], *buf = n <= 600 ? stack : malloc(4 * n + 8);
    if (!buf)
        return;
    size_t m = pr_escape_controls(s, n, buf, 4 * n + 8);
    fwrite(buf, 1, m, k->to);
    if (buf != stack)
        free(buf);
}

/* Escapes whole characters only: a character that stdio cut between two
 * writes waits in carry for its end, so valid text is never escaped for
 * being cut and a cut C1 pair is still seen as one. */
static ssize_t esc_write(void *cookie, const char *s, size_t n)
{
    esc_cookie *k = cookie;
    size_t len = k->n_carry + n;
    char *all = malloc(len ? len : 1);
    if (!all)
        return -1;
    memcpy(all, k->carry, k->n_carry);
    memcpy(all + k->n_carry, s, n);
    size_t i = 0, from = 0;
    while (i < len) {
        size_t l = 1;
        if (utf8_step((const uint8_t *)all + i, len - i, &l) == 0)
            break; /* a prefix cut at the end: the next write completes it */
        i += l ? l : 1;
        if (i - from >= 512) {
            esc_emit(k, all + from, i - from);
            from = i;
        }
    }
    esc_emit(k, all + from, i - from);
    k->n_carry = len - i;
    memcpy(k->carry, all + i, k->n_carry);
    free(all);
    fflush(k->to);
    return (ssize_t)n;
}

static int esc_close(void *cookie)
{
    esc_cookie *k = cookie;
    esc_emit(k, k->carry, k->n_carry);
    fflush(k->to);
    free(k);
    return 0;
}

FILE *pr_escaping_stream(FILE *to)
{
    esc_cookie *k = calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->to = to;
    FILE *f = fopencookie(k, "w", (cookie_io_functions_t){.write = esc_write, .close = esc_close});
    if (!f) {
        free(k);
        return NULL;
    }
    setvbuf(f, NULL, _IOLBF, 0);
    return f;
}

/* --- the terminal ------------------------------------------------------------------ */

int pr_width(xf_repl *r)
{
    if (IO(r)->capture || !IO(r)->out)
        return 80;
    const char *c = getenv("COLUMNS");
    char *end;
    long w = c ? strtol(c, &end, 10) : 0;
    if (c && *c && !*end && w >= 20 && w <= 1000)
        return (int)w;
    struct winsize ws;
    int fd = fileno(IO(r)->out);
    if (fd >= 0 && isatty(fd) && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col > 1000 ? 1000 : ws.ws_col;
    return 80;
}

/* TERM=dumb: a terminal that shows escape sequences as text */
static bool term_dumb(void)
{
    const char *term = getenv("TERM");
    return term && strcmp(term, "dumb") == 0;
}

bool pr_color(xf_repl *r)
{
    const char *nc = getenv("NO_COLOR");
    if (!IO(r)->color || IO(r)->capture || !IO(r)->out || (nc && *nc) || term_dumb())
        return false;
    int fd = fileno(IO(r)->out);
    return fd >= 0 && isatty(fd);
}

/* "UTF-8" or "utf8" anywhere in v, any case */
static bool names_utf8(const char *v)
{
    for (; *v; v++) {
        if (tolower((unsigned char)v[0]) != 'u' || tolower((unsigned char)v[1]) != 't' ||
            tolower((unsigned char)v[2]) != 'f')
            continue;
        const char *p = v + 3 + (v[3] == '-');
        if (*p == '8')
            return true;
    }
    return false;
}

static bool utf8_locale(void)
{
    const char *names[] = {"LC_ALL", "LC_CTYPE", "LANG"};
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(names[i]);
        if (v && *v)
            return names_utf8(v);
    }
    return false;
}

pr_mode pr_picture_mode(xf_repl *r)
{
    const char *nc = getenv("NO_COLOR");
    /* captured text (a recording, replay, xf.cmd) is plain ASCII, as it is
     * 80 columns wide: a session replays the same under any terminal; so is
     * a locale that is not UTF-8, color or not (the color mode's bars and
     * sparklines are Unicode too) */
    if (IO(r)->capture || (nc && *nc) || term_dumb() || !utf8_locale())
        return PR_ASCII;
    return pr_color(r) ? PR_COLOR : PR_UNICODE;
}

const char *pr_sgr(xf_repl *r, const char *what)
{
    if (!pr_color(r))
        return "";
    if (strcmp(what, "bad") == 0)
        return "\033[1;31m";
    if (strcmp(what, "good") == 0)
        return "\033[32m";
    if (strcmp(what, "dim") == 0)
        return "\033[2m";
    if (strcmp(what, "bold") == 0)
        return "\033[1m";
    return "\033[0m";
}

/* --- text width ------------------------------------------------------------------ */

/* one UTF-8 character at s: its code point (or -1 for an invalid byte) and length */
static long utf8_char(const unsigned char *s, size_t len, size_t *l)
{
    size_t n = s[0] < 0x80 ? 1 : (s[0] >> 5) == 6 ? 2 : (s[0] >> 4) == 14 ? 3 : (s[0] >> 3) == 30 ? 4 : 0;
    *l = 1;
    if (n == 0 || n > len)
        return -1;
    long c = n == 1 ? s[0] : s[0] & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return -1;
        c = (c << 6) | (s[i] & 0x3f);
    }
    *l = n;
    return c;
}

static int char_width(long c)
{
    if (c < 0)
        return 1;
    if ((c >= 0x300 && c <= 0x36f) || (c >= 0x200b && c <= 0x200f) || (c >= 0xfe00 && c <= 0xfe0f))
        return 0; /* combining marks and zero-width characters */
    /* East Asian Wide and Fullwidth, and the emoji blocks: two columns */
    static const long wide[][2] = {{0x1100, 0x115f}, {0x2e80, 0x303e}, {0x3041, 0x33ff}, {0x3400, 0x4dbf},
                                   {0x4e00, 0x9fff}, {0xa000, 0xa4cf}, {0xac00, 0xd7a3}, {0xf900, 0xfaff},
                                   {0xfe30, 0xfe4f}, {0xff00, 0xff60}, {0xffe0, 0xffe6}, {0x1f300, 0x1f64f},
                                   {0x1f900, 0x1f9ff}, {0x20000, 0x3fffd}};
    for (size_t i = 0; i < sizeof wide / sizeof wide[0]; i++)
        if (c >= wide[i][0] && c <= wide[i][1])
            return 2;
    return 1;
}

int pr_display_width(const char *s, size_t len)
{
    int w = 0;
    size_t l;
    for (size_t i = 0; i < len; i += l)
        w += char_width(utf8_char((const unsigned char *)s + i, len - i, &l));
    return w;
}

char *pr_fit(char *buf, size_t size, const char *s, int width, bool right)
{
    size_t len = strlen(s), cut = 0, l;
    int w = pr_display_width(s, len), used = 0;
    bool cutting = w > width;
    /* keep whole characters within width (one column less for the "~" when cut) */
    while (cut < len) {
        int cw = char_width(utf8_char((const unsigned char *)s + cut, len - cut, &l));
        if (used + cw > width - (cutting ? 1 : 0))
            break;
        used += cw;
        cut += l;
    }
    int pad = width - used - (cutting ? 1 : 0);
    if (pad < 0)
        pad = 0;
    size_t j = 0;
    if (size == 0)
        return buf;
    for (int i = 0; right && i < pad && j + 1 < size; i++)
        buf[j++] = ' ';
    for (size_t i = 0; i < cut && j + 1 < size; i++)
        buf[j++] = s[i];
    if (cutting && j + 1 < size)
        buf[j++] = '~';
    for (int i = 0; !right && i < pad && j + 1 < size; i++)
        buf[j++] = ' ';
    buf[j] = '\0';
    return buf;
}

void pr_quote(char *buf, size_t size, const char *s, size_t len)
{
    char tmp[512];
    tok_escape(s, len, tmp, sizeof tmp);
    size_t j = 0;
    if (size < 3) {
        if (size)
            buf[0] = '\0';
        return;
    }
    buf[j++] = '\'';
    for (const char *p = tmp; *p && j + 3 < size; p++) {
        if (*p == '\'')
            buf[j++] = '\\';
        buf[j++] = *p;
    }
    buf[j++] = '\'';
    buf[j] = '\0';
}

/* --- numbers in columns ------------------------------------------------------------ */

void pr_cellfmt_choose(pr_cellfmt *f, const float *v, int64_t n)
{
    double mx = 0;
    for (int64_t i = 0; i < n; i++)
        if (isfinite(v[i]) && fabs(v[i]) > mx)
            mx = fabs(v[i]);
    /* fixed point reads best; it is kept while the largest value has 4
     * significant digits in it and fits the column (tiny values print 0.0000,
     * as numpy's suppress: --raw has every digit) */
    f->sci = mx >= 1e5 || (mx > 0 && mx < 1e-3);
    f->width = 1;
    for (int64_t i = 0; i < n; i++) {
        char b[48];
        pr_cell(b, sizeof b, v[i], f);
        int w = (int)strlen(b);
        if (w > f->width)
            f->width = w;
    }
}

void pr_cell(char *buf, size_t size, double v, const pr_cellfmt *f)
{
    if (isnan(v))
        snprintf(buf, size, "nan");
    else if (isinf(v))
        snprintf(buf, size, v > 0 ? "inf" : "-inf");
    else
        snprintf(buf, size, f->sci ? "%.3e" : "%.4f", v);
}

void pr_index(char *buf, size_t size, int64_t flat, int ndim, const int64_t *shape)
{
    int64_t idx[XF_MAX_DIMS];
    tensor_unravel(flat, ndim, shape, idx);
    tensor_shape_str(ndim, idx, buf, size);
}

void pr_short(char *buf, size_t size, double v)
{
    if (isnan(v))
        snprintf(buf, size, "nan");
    else if (isinf(v))
        snprintf(buf, size, v > 0 ? "inf" : "-inf");
    else
        snprintf(buf, size, "%.3g", v);
}

void pr_prob(char *buf, size_t size, double p) { snprintf(buf, size, "%.2f", p); }

void pr_bench_row(xf_repl *r, const char *variant, const char *run, const char *ms, const char *per_s,
                  const char *floor, const char *ratio, const char *note)
{
    if (note)
        repl_out(r, "%-8s %-14s %-10s %-10s %-10s %-8s %s\n", variant, run, ms, per_s, floor, ratio, note);
    else
        repl_out(r, "%-8s %-14s %-10s %-10s %-10s %s\n", variant, run, ms, per_s, floor, ratio);
}

void pr_floor(char *floor, char *ratio, size_t size, double ms, double floor_ms)
{
    if (!(floor_ms > 0) || !isfinite(floor_ms) || !isfinite(ms)) {
        snprintf(floor, size, "-");
        snprintf(ratio, size, "-");
        return;
    }
    /* three digits, trailing zeros kept so that a column reads alike: 15.0, 0.780, 270 */
    snprintf(floor, size, floor_ms >= 100 ? "%.0f ms" : "%#.3g ms", floor_ms);
    double x = ms / floor_ms;
    snprintf(ratio, size, x < 10 ? "%.2fx" : x < 100 ? "%.1fx" : "%.0fx", x);
}

void pr_rate(char *buf, size_t size, double bytes_per_s)
{
    char b[32];
    pr_bytes(b, sizeof b, bytes_per_s);
    snprintf(buf, size, "%s/s", b);
}
