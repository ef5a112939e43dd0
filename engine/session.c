/* session: the escape of the .xfs format and the comparison of output
 * lines (format in session.h). The parser is session_read.c, the recorder
 * session_write.c. */
#include "session.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "session_impl.h"

/* --- small helpers ---------------------------------------------------------- */

int sess_grow(void **p, int *cap, int n, size_t elem)
{
    if (n < *cap)
        return 0;
    if (*cap > INT_MAX / 2)
        return -1;
    int nc = *cap ? *cap * 2 : 8;
    size_t bytes;
    if (!xf_mul_size((size_t)nc, elem, &bytes))
        return -1;
    void *np = realloc(*p, bytes);
    if (!np)
        return -1;
    *p = np;
    *cap = nc;
    return 0;
}

int sess_push_str(char ***arr, int *n, int *cap, char *s)
{
    if (!s || sess_grow((void **)arr, cap, *n, sizeof **arr) != 0) {
        free(s);
        return -1;
    }
    (*arr)[(*n)++] = s;
    return 0;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if invalid:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
size_t sess_utf8_seq(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned cp, min;
    if ((c & 0xE0) == 0xC0) {
        len = 2;
        cp = c & 0x1F;
        min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3;
        cp = c & 0x0F;
        min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

char *sess_dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

size_t sess_header_key(const char *l, size_t n, const char *key)
{
    size_t k = strlen(key);
    if (n < k + 4 || l[0] != '#' || l[1] != ' ' || memcmp(l + 2, key, k) != 0 || l[2 + k] != ':')
        return 0;
    size_t v = 3 + k;
    while (v < n && sess_is_blank(l[v]))
        v++;
    return v;
}

/* --- the escape ---------------------------------------------------------------- */

/* An escaped backslash is needed only where the reader would otherwise see
 * an escape: before another backslash, before an 'x', or before a byte that
 * is itself written as \xNN. Elsewhere (the '\n' of `run "A\nB"`, which the
 * REPL's own parser reads) a backslash stays one, so that sessions stay
 * readable and files written before the escape existed read the same. */
static bool escaped_byte(const unsigned char *p, size_t n)
{
    size_t k = sess_utf8_seq(p, n);
    return k == 0 || (k == 1 && ((p[0] < 0x20 && p[0] != '\t') || p[0] == 0x7F));
}

char *session_escape(const char *s, size_t len)
{
    size_t cap;
    if (!xf_mul_size(len, 4, &cap) || !xf_add_size(cap, 1, &cap))
        return NULL;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (escaped_byte(p + i, len - i)) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[p[i] >> 4];
            out[o++] = hex[p[i] & 15];
            i++;
            continue;
        }
        if (p[i] == '\\' && i + 1 < len && (p[i + 1] == '\\' || p[i + 1] == 'x' || escaped_byte(p + i + 1, len - i - 1)))
            out[o++] = '\\';
        size_t k = sess_utf8_seq(p + i, len - i);
        memcpy(out + o, p + i, k);
        o += k;
        i += k;
    }
    out[o] = '\0';
    return out;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *session_unescape(const char *s, size_t len, size_t *out_len)
{
    /* a NUL decodes to U+FFFD (3 bytes) from 4 bytes of "\x00": never longer */
    char *out = malloc(len + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (s[i] == '\\' && i + 1 < len && s[i + 1] == '\\') {
            out[o++] = '\\';
            i += 2;
        } else if (s[i] == '\\' && i + 3 < len && s[i + 1] == 'x' && hexval(s[i + 2]) >= 0 &&
                   hexval(s[i + 3]) >= 0) {
            int b = hexval(s[i + 2]) << 4 | hexval(s[i + 3]);
            if (b == 0) {
                /* lines are C strings: a NUL would cut them; U+FFFD stands
                 * for it, as session_split_output does for a printed NUL */
                memcpy(out + o, "\xEF\xBF\xBD", 3);
                o += 3;
            } else
                out[o++] = (char)b;
            i += 4;
        } else
            out[o++] = s[i++];
    }
    out[o] = '\0';
    if (out_len)
        *out_len = o;
    return out;
}

void session_lines_free(char **lines, int n)
{
    if (!lines)
        return;
    for (int i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}

/* One printed line as a C string: a NUL byte becomes U+FFFD (see
 * session_unescape), everything else stays as printed. */
static char *raw_line(const char *s, size_t n)
{
    size_t nul = 0;
    for (size_t i = 0; i < n; i++)
        nul += s[i] == '\0';
    size_t cap;
    if (!xf_mul_size(nul, 2, &cap) || !xf_add_size(cap, n + 1, &cap))
        return NULL;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\0') {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
        } else
            out[o++] = s[i];
    }
    out[o] = '\0';
    return out;
}

int session_split_output(const char *output, size_t len, char ***lines)
{
    char **v = NULL;
    int n = 0, cap = 0;
    size_t st = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && output[i] != '\n')
            continue;
        if (i == len && st == len)
            break; /* the text ended with '\n' (or is empty): no partial last line */
        if (sess_push_str(&v, &n, &cap, raw_line(output + st, i - st)) != 0) {
            session_lines_free(v, n);
            return -1;
        }
        st = i + 1;
    }
    *lines = v;
    return n;
}

/* --- comparing ---------------------------------------------------------------- */

typedef enum tk_kind { TK_END, TK_WS, TK_NUM, TK_TEXT } tk_kind;

typedef struct tk {
    tk_kind kind;
    size_t start, len;
} tk;

static bool word_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* The length of a number at s[i] (0 if none starts there), n: line length. */
static size_t number_at(const char *s, size_t i, size_t n)
{
    if (i > 0 && (word_char(s[i - 1]) || s[i - 1] == '.'))
        return 0;
    size_t j = i;
    if (j < n && (s[j] == '+' || s[j] == '-'))
        j++;
    if (j + 3 <= n && (strncasecmp(s + j, "nan", 3) == 0 || strncasecmp(s + j, "inf", 3) == 0) &&
        (j + 3 == n || !word_char(s[j + 3])))
        return j + 3 - i;
    size_t d = j;
    while (j < n && isdigit((unsigned char)s[j]))
        j++;
    bool digits = j > d;
    if (j + 1 < n && s[j] == '.' && isdigit((unsigned char)s[j + 1])) {
        j++;
        while (j < n && isdigit((unsigned char)s[j]))
            j++;
        digits = true;
    }
    if (!digits)
        return 0;
    if (j < n && (s[j] == 'e' || s[j] == 'E')) {
        size_t k = j + 1;
        if (k < n && (s[k] == '+' || s[k] == '-'))
            k++;
        if (k < n && isdigit((unsigned char)s[k])) {
            while (k < n && isdigit((unsigned char)s[k]))
                k++;
            j = k;
        }
    }
    return j - i;
}

static tk next_tok(const char *s, size_t n, size_t *pos)
{
    tk t = {TK_END, *pos, 0};
    size_t i = *pos;
    if (i >= n)
        return t;
    if (sess_is_blank(s[i])) {
        while (i < n && sess_is_blank(s[i]))
            i++;
        t.kind = TK_WS;
    } else {
        size_t k = number_at(s, i, n);
        if (k) {
            t.kind = TK_NUM;
            i += k;
        } else {
            t.kind = TK_TEXT;
            i++;
            while (i < n && !sess_is_blank(s[i]) && !number_at(s, i, n))
                i++;
        }
    }
    t.len = i - *pos;
    *pos = i;
    return t;
}

static void tok_copy(char *dst, size_t size, const char *s, tk t)
{
    size_t n = t.len < size - 1 ? t.len : size - 1;
    memcpy(dst, s + t.start, n);
    dst[n] = '\0';
}

static bool is_integer(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        i++;
    if (i == n)
        return false;
    for (; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* Two integers as written, compared exactly whatever their size. */
static bool integers_equal(const char *a, size_t na, const char *b, size_t nb)
{
    bool neg_a = false, neg_b = false;
    if (*a == '+' || *a == '-') {
        neg_a = *a == '-';
        a++;
        na--;
    }
    if (*b == '+' || *b == '-') {
        neg_b = *b == '-';
        b++;
        nb--;
    }
    while (na > 1 && *a == '0') {
        a++;
        na--;
    }
    while (nb > 1 && *b == '0') {
        b++;
        nb--;
    }
    bool zero_a = na == 1 && *a == '0', zero_b = nb == 1 && *b == '0';
    if (zero_a || zero_b)
        return zero_a && zero_b; /* -0 == 0 */
    return neg_a == neg_b && na == nb && memcmp(a, b, na) == 0;
}

static double to_double(const char *s, size_t n)
{
    char buf[128];
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return strtod(buf, NULL);
}

static bool numbers_match(const char *e, size_t ne, const char *g, size_t ng, double rel, double abs,
                          xf_line_diff *d)
{
    double a = to_double(e, ne), b = to_double(g, ng);
    d->expected = a;
    d->got = b;
    d->exact = false;
    if (isnan(a) || isnan(b)) {
        d->abs_diff = d->rel_diff = NAN;
        if (isnan(a) && isnan(b))
            d->abs_diff = d->rel_diff = 0;
        return isnan(a) && isnan(b);
    }
    if (isinf(a) || isinf(b)) {
        d->abs_diff = a == b ? 0 : INFINITY;
        d->rel_diff = a == b ? 0 : INFINITY;
        return a == b;
    }
    double diff = fabs(a - b), m = fmax(fabs(a), fabs(b));
    d->abs_diff = diff;
    d->rel_diff = m > 0 ? diff / m : 0;
    if (is_integer(e, ne) && is_integer(g, ng)) {
        d->exact = true;
        return integers_equal(e, ne, g, ng);
    }
    return diff <= fmax(abs, rel * m);
}

bool session_number_match(const char *expected, const char *got, double rel, double abs, xf_line_diff *d)
{
    xf_line_diff tmp;
    if (!d)
        d = &tmp;
    memset(d, 0, sizeof *d);
    size_t ne = strlen(expected), ng = strlen(got);
    snprintf(d->tok_expected, sizeof d->tok_expected, "%s", expected);
    snprintf(d->tok_got, sizeof d->tok_got, "%s", got);
    d->number_no = 1;
    if (number_at(expected, 0, ne) != ne || number_at(got, 0, ng) != ng || ne == 0 || ng == 0) {
        d->kind = SESSION_DIFF_TEXT;
        return false;
    }
    if (numbers_match(expected, ne, got, ng, rel, abs, d))
        return true;
    d->kind = SESSION_DIFF_NUMBER;
    return false;
}

static size_t trimmed_len(const char *s)
{
    size_t n = strlen(s);
    while (n && sess_is_blank(s[n - 1]))
        n--;
    return n;
}

/* a number matched: how much of its tolerance it used (--replay --report) */
static void note_worst(xf_line_diff *d, double rel, double abs)
{
    if (d->exact || !isfinite(d->abs_diff) || d->abs_diff == 0)
        return;
    double m = fmax(fabs(d->expected), fabs(d->got)), tol = fmax(abs, rel * m);
    double ratio = tol > 0 ? d->abs_diff / tol : 0;
    if (ratio > d->worst_ratio) {
        d->worst_ratio = ratio;
        d->worst_rel = d->rel_diff;
        d->worst_expected = d->expected;
        d->worst_got = d->got;
    }
}

/* The glyphs of a picture of numbers that lie on the same line: compare's
 * err/tol bar (repl/picture.c, pic_err_bar: '#' or U+2588 filled, '.' or
 * U+00B7 empty, '|' the tolerance). The number of glyphs when s[0..n) is
 * such a bar of at least 8, else 0. */
static size_t bar_glyphs(const char *s, size_t n)
{
    size_t i = 0, g = 0;
    while (i < n) {
        if (s[i] == '#' || s[i] == '.' || s[i] == '|')
            i++;
        else if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x88", 3) == 0)
            i += 3;
        else if (i + 2 <= n && memcmp(s + i, "\xc2\xb7", 2) == 0)
            i += 2;
        else
            return 0;
        g++;
    }
    return g >= 8 ? g : 0;
}

/* Two text tokens match when equal, or when both are bars of the same
 * width: a bar draws numbers of its line (max_abs over tol), which are
 * compared within the tolerance themselves, and the status word beside it
 * carries the verdict; its cells move with the last bits of an error far
 * below the tolerance (f32 sums in another order on another instruction
 * set), which is no difference. */
static bool text_match(const char *e, size_t ne, const char *g, size_t ng)
{
    if (ne == ng && memcmp(e, g, ne) == 0)
        return true;
    const size_t be = bar_glyphs(e, ne);
    return be && be == bar_glyphs(g, ng);
}

bool session_line_match(const char *expected, const char *got, double rel, double abs, xf_line_diff *d)
{
    xf_line_diff tmp;
    if (!d)
        d = &tmp;
    memset(d, 0, sizeof *d);
    size_t ne = trimmed_len(expected), ng = trimmed_len(got);
    size_t pe = 0, pg = 0;
    tk_kind prev = TK_END;
    int num_no = 0;
    while (1) {
        tk te = next_tok(expected, ne, &pe), tg = next_tok(got, ng, &pg);
        if (te.kind == TK_END && tg.kind == TK_END)
            return true;
        bool ok;
        if (te.kind != tg.kind)
            ok = false;
        else if (te.kind == TK_TEXT)
            ok = text_match(expected + te.start, te.len, got + tg.start, tg.len);
        else if (te.kind == TK_WS) {
            ok = te.len == tg.len && memcmp(expected + te.start, got + tg.start, te.len) == 0;
            if (!ok) {
                /* padding around a number that changed width */
                size_t pp = pe;
                tk after = next_tok(expected, ne, &pp);
                ok = prev == TK_NUM || after.kind == TK_NUM;
            }
        } else {
            num_no++;
            ok = numbers_match(expected + te.start, te.len, got + tg.start, tg.len, rel, abs, d);
            if (!ok)
                d->kind = SESSION_DIFF_NUMBER;
            else
                note_worst(d, rel, abs);
        }
        if (!ok) {
            if (d->kind != SESSION_DIFF_NUMBER) {
                d->kind = SESSION_DIFF_TEXT;
                d->abs_diff = d->rel_diff = 0;
            } else
                d->number_no = num_no;
            d->col_expected = te.start;
            d->col_got = tg.start;
            tok_copy(d->tok_expected, sizeof d->tok_expected, expected, te);
            tok_copy(d->tok_got, sizeof d->tok_got, got, tg);
            return false;
        }
        prev = te.kind;
    }
}
