/* session: writing, parsing and comparing .xfs session files (format in
 * session.h). The parser treats the file as untrusted: every byte is
 * checked (UTF-8, control bytes) and every error names the file, the line
 * and the byte offset. */
#include "session.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- small helpers ---------------------------------------------------------- */

/* Grows *p (an array of elem-sized items, *cap of them) to hold n+1. */
static int grow(void **p, int *cap, int n, size_t elem)
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

static int push_str(char ***arr, int *n, int *cap, char *s)
{
    if (!s || grow((void **)arr, cap, *n, sizeof **arr) != 0) {
        free(s);
        return -1;
    }
    (*arr)[(*n)++] = s;
    return 0;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if invalid:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq(const unsigned char *p, size_t n)
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

char *session_escape(const char *s, size_t len)
{
    size_t cap;
    if (!xf_mul_size(len, 4, &cap) || !xf_add_size(cap, 1, &cap))
        return NULL;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(p + i, len - i);
        if (k == 0 || (k == 1 && ((p[i] < 0x20 && p[i] != '\t') || p[i] == 0x7F))) {
            o += (size_t)snprintf(out + o, cap - o, "\\x%02x", p[i]);
            i++;
        } else {
            memcpy(out + o, p + i, k);
            o += k;
            i += k;
        }
    }
    out[o] = '\0';
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
        if (push_str(&v, &n, &cap, session_escape(output + st, i - st)) != 0) {
            session_lines_free(v, n);
            return -1;
        }
        st = i + 1;
    }
    *lines = v;
    return n;
}

/* --- parsing ----------------------------------------------------------------- */

typedef struct parser {
    const char *name;
    const char *text;
    size_t len;
    xf_err *err;
    xf_session *s;
    int line_no;
    size_t line_off;       /* offset of the current line */
    int cap_entries, cap_out, cap_hc, cap_tc, cap_k;
    char **pending;        /* comments waiting for the next command */
    int n_pending, cap_pending;
    int model_line, path_line, backend_line, kernels_line, tol_line;
    bool in_header, ended;
    size_t header_end_off; /* where the header ended (for "no model line") */
    int header_end_line;
} parser;

static int perr(parser *p, size_t off, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int perr(parser *p, size_t off, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return xf_err_set(p->err, "%s: line %d at byte %zu: %s", p->name, p->line_no, off, msg);
}

static int oom(parser *p) { return perr(p, p->line_off, "out of memory"); }

/* Checks the bytes of one line: UTF-8, no control bytes but tab. */
static int check_bytes(parser *p, const char *l, size_t n)
{
    const unsigned char *u = (const unsigned char *)l;
    for (size_t i = 0; i < n;) {
        size_t off = (size_t)(l - p->text) + i;
        if (u[i] == 0)
            return perr(p, off, "NUL byte (a session is text)");
        if ((u[i] < 0x20 && u[i] != '\t') || u[i] == 0x7F)
            return perr(p, off, "control byte 0x%02x (a session stores it as \\x%02x)", u[i], u[i]);
        size_t k = utf8_seq(u + i, n - i);
        if (k == 0)
            return perr(p, off, "invalid UTF-8 (byte 0x%02x)", u[i]);
        i += k;
    }
    return 0;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

/* "# KEY: " at the start of l: the value's offset in l, or 0. */
static size_t header_key(const char *l, size_t n, const char *key)
{
    size_t k = strlen(key);
    if (n < k + 4 || l[0] != '#' || l[1] != ' ' || memcmp(l + 2, key, k) != 0 || l[2 + k] != ':')
        return 0;
    size_t v = 3 + k;
    while (v < n && is_blank(l[v]))
        v++;
    return v;
}

static int parse_model(parser *p, const char *l, size_t n, size_t v)
{
    xf_session *s = p->s;
    size_t voff = (size_t)(l - p->text) + v;
    /* NAME sha256 HEX: split from the right, the name may hold spaces */
    size_t e = n;
    while (e > v && is_blank(l[e - 1]))
        e--;
    size_t hs = e;
    while (hs > v && !is_blank(l[hs - 1]))
        hs--;
    size_t ke = hs;
    while (ke > v && is_blank(l[ke - 1]))
        ke--;
    size_t ks = ke;
    while (ks > v && !is_blank(l[ks - 1]))
        ks--;
    size_t ne = ks;
    while (ne > v && is_blank(l[ne - 1]))
        ne--;
    if (ne == v || ke - ks != 6 || memcmp(l + ks, "sha256", 6) != 0)
        return perr(p, voff, "model: expected 'FILE_NAME sha256 HEX'");
    if (e - hs != 64)
        return perr(p, (size_t)(l - p->text) + hs, "model: the sha256 must be 64 hex digits (got %zu characters)",
                    e - hs);
    for (size_t i = 0; i < 64; i++) {
        char c = l[hs + i];
        if (!isxdigit((unsigned char)c))
            return perr(p, (size_t)(l - p->text) + hs + i, "model: '%c' is not a hex digit", c);
        s->model_sha256[i] = (char)tolower((unsigned char)c);
    }
    s->model_sha256[64] = '\0';
    s->model_name = dup_n(l + v, ne - v);
    return s->model_name ? 0 : oom(p);
}

static int parse_number_field(parser *p, const char *l, size_t *i, size_t n, const char *what, double *out)
{
    while (*i < n && is_blank(l[*i]))
        (*i)++;
    size_t st = *i;
    while (*i < n && !is_blank(l[*i]))
        (*i)++;
    char buf[64];
    size_t off = (size_t)(l - p->text) + st;
    if (*i - st == 0 || *i - st >= sizeof buf)
        return perr(p, off, "tolerance: %s needs a number", what);
    memcpy(buf, l + st, *i - st);
    buf[*i - st] = '\0';
    char *end;
    errno = 0;
    double d = strtod(buf, &end);
    if (*end || errno || !isfinite(d) || d < 0)
        return perr(p, off, "tolerance: %s '%s' is not a number >= 0", what, buf);
    *out = d;
    return 0;
}

static int parse_tolerance(parser *p, const char *l, size_t n, size_t v)
{
    /* "rel X [abs Y]" */
    size_t i = v;
    bool have_rel = false;
    while (1) {
        while (i < n && is_blank(l[i]))
            i++;
        if (i >= n)
            break;
        size_t st = i;
        while (i < n && !is_blank(l[i]))
            i++;
        if (i - st == 3 && memcmp(l + st, "rel", 3) == 0) {
            if (parse_number_field(p, l, &i, n, "rel", &p->s->tol_rel))
                return -1;
            have_rel = true;
        } else if (i - st == 3 && memcmp(l + st, "abs", 3) == 0) {
            if (parse_number_field(p, l, &i, n, "abs", &p->s->tol_abs))
                return -1;
        } else
            return perr(p, (size_t)(l - p->text) + st, "tolerance: expected 'rel X abs Y', found '%.*s'",
                        (int)(i - st > 40 ? 40 : i - st), l + st);
    }
    if (!have_rel)
        return perr(p, (size_t)(l - p->text) + v, "tolerance: expected 'rel X abs Y'");
    return 0;
}

static int parse_kernels(parser *p, const char *l, size_t n, size_t v)
{
    xf_session *s = p->s;
    size_t i = v;
    while (1) {
        while (i < n && is_blank(l[i]))
            i++;
        if (i >= n)
            break;
        size_t st = i;
        while (i < n && !is_blank(l[i]))
            i++;
        const char *eq = memchr(l + st, '=', i - st);
        if (!eq || eq == l + st || eq == l + i - 1)
            return perr(p, (size_t)(l - p->text) + st, "kernels: expected OP=VARIANT, found '%.*s'",
                        (int)(i - st > 40 ? 40 : i - st), l + st);
        if (grow((void **)&s->kernels, &p->cap_k, s->n_kernels, sizeof *s->kernels) != 0)
            return oom(p);
        xf_session_kernel *k = &s->kernels[s->n_kernels];
        k->op = dup_n(l + st, (size_t)(eq - (l + st)));
        k->variant = dup_n(eq + 1, (size_t)(l + i - eq - 1));
        s->n_kernels++;
        if (!k->op || !k->variant)
            return oom(p);
    }
    return 0;
}

static int dup_key(parser *p, int *seen, const char *key)
{
    if (*seen)
        return perr(p, p->line_off, "a second '# %s:' line (the first is line %d)", key, *seen);
    *seen = p->line_no;
    return 0;
}

/* A `#` line of the header: a known key, or a comment. */
static int header_line(parser *p, const char *l, size_t n)
{
    xf_session *s = p->s;
    size_t v;
    if ((v = header_key(l, n, "model"))) {
        if (dup_key(p, &p->model_line, "model"))
            return -1;
        return parse_model(p, l, n, v);
    }
    if ((v = header_key(l, n, "model-path"))) {
        if (dup_key(p, &p->path_line, "model-path"))
            return -1;
        size_t e = n;
        while (e > v && is_blank(l[e - 1]))
            e--;
        if (e == v)
            return perr(p, (size_t)(l - p->text) + v, "model-path: empty");
        s->model_path = dup_n(l + v, e - v);
        return s->model_path ? 0 : oom(p);
    }
    if ((v = header_key(l, n, "backend"))) {
        if (dup_key(p, &p->backend_line, "backend"))
            return -1;
        size_t e = n;
        while (e > v && is_blank(l[e - 1]))
            e--;
        if (e == v)
            return perr(p, (size_t)(l - p->text) + v, "backend: empty");
        for (size_t i = v; i < e; i++)
            if (is_blank(l[i]))
                return perr(p, (size_t)(l - p->text) + i, "backend: one word expected (cpu, cuda)");
        free(s->backend);
        s->backend = dup_n(l + v, e - v);
        return s->backend ? 0 : oom(p);
    }
    if ((v = header_key(l, n, "kernels"))) {
        if (dup_key(p, &p->kernels_line, "kernels"))
            return -1;
        return parse_kernels(p, l, n, v);
    }
    if ((v = header_key(l, n, "tolerance"))) {
        if (dup_key(p, &p->tol_line, "tolerance"))
            return -1;
        return parse_tolerance(p, l, n, v);
    }
    return push_str(&s->header_comments, &s->n_header_comments, &p->cap_hc, dup_n(l, n)) ? oom(p) : 0;
}

static int end_header(parser *p)
{
    p->in_header = false;
    p->header_end_line = p->line_no;
    p->header_end_off = p->line_off;
    if (!p->model_line)
        return perr(p, p->line_off, "the header has no '# model: FILE_NAME sha256 HEX' line");
    return 0;
}

/* "# end: N commands" (or "command") */
static int end_line(parser *p, const char *l, size_t n)
{
    size_t i = 6;
    while (i < n && is_blank(l[i]))
        i++;
    size_t st = i;
    long long cnt = 0;
    while (i < n && isdigit((unsigned char)l[i]) && i - st < 10)
        cnt = cnt * 10 + (l[i++] - '0');
    size_t ds = i;
    while (i < n && is_blank(l[i]))
        i++;
    size_t e = n;
    while (e > i && is_blank(l[e - 1]))
        e--;
    bool word = (e - i == 8 && memcmp(l + i, "commands", 8) == 0) || (e - i == 7 && memcmp(l + i, "command", 7) == 0);
    if (ds == st || ds == i || !word)
        return perr(p, p->line_off, "bad end line: expected '# end: N commands'");
    if (cnt != p->s->n_entries)
        return perr(p, (size_t)(l - p->text) + st, "the end line counts %lld commands, the file has %d", cnt,
                    p->s->n_entries);
    p->ended = true;
    return 0;
}

static int body_line(parser *p, const char *l, size_t n)
{
    xf_session *s = p->s;
    size_t off = (size_t)(l - p->text);
    if (p->ended)
        return perr(p, off, "text after the end line");
    if (l[0] == '#') {
        if (n >= 6 && memcmp(l, "# end:", 6) == 0) {
            if (p->in_header && end_header(p))
                return -1;
            return end_line(p, l, n);
        }
        if (p->in_header)
            return header_line(p, l, n);
        return push_str(&p->pending, &p->n_pending, &p->cap_pending, dup_n(l, n)) ? oom(p) : 0;
    }
    if (l[0] == '>') {
        if (n < 2 || l[1] != ' ')
            return perr(p, off, n < 2 ? "empty command after '>'" : "expected a space after '>'");
        size_t e = n;
        while (e > 2 && is_blank(l[e - 1]))
            e--;
        size_t st = 2;
        while (st < e && is_blank(l[st]))
            st++;
        if (st == e)
            return perr(p, off, "empty command after '>'");
        if (p->in_header && end_header(p))
            return -1;
        if (grow((void **)&s->entries, &p->cap_entries, s->n_entries, sizeof *s->entries) != 0)
            return oom(p);
        xf_session_entry *en = &s->entries[s->n_entries++];
        memset(en, 0, sizeof *en);
        en->line_no = p->line_no;
        en->offset = off;
        en->cmd = dup_n(l + st, e - st);
        en->comments = p->pending;
        en->n_comments = p->n_pending;
        p->pending = NULL;
        p->n_pending = p->cap_pending = 0;
        p->cap_out = 0;
        return en->cmd ? 0 : oom(p);
    }
    if (l[0] == '<' || l[0] == '~') {
        if (s->n_entries == 0)
            return perr(p, off, "output line before any command");
        if (n >= 2 && l[1] != ' ')
            return perr(p, off, "expected a space after '%c'", l[0]);
        xf_session_entry *en = &s->entries[s->n_entries - 1];
        if (grow((void **)&en->out, &p->cap_out, en->n_out, sizeof *en->out) != 0)
            return oom(p);
        xf_session_line *ol = &en->out[en->n_out];
        ol->text = dup_n(n >= 2 ? l + 2 : "", n >= 2 ? n - 2 : 0);
        ol->skip = l[0] == '~';
        ol->line_no = p->line_no;
        if (!ol->text)
            return oom(p);
        en->n_out++;
        return 0;
    }
    return perr(p, off, "unexpected text: a line starts with '> ' (command), '< ' (output), '~ ' (output not "
                        "compared) or '#'");
}

void session_free(xf_session *s)
{
    if (!s)
        return;
    free(s->path);
    free(s->model_name);
    free(s->model_path);
    free(s->backend);
    for (int i = 0; i < s->n_kernels; i++) {
        free(s->kernels[i].op);
        free(s->kernels[i].variant);
    }
    free(s->kernels);
    session_lines_free(s->header_comments, s->n_header_comments);
    session_lines_free(s->tail_comments, s->n_tail_comments);
    for (int i = 0; i < s->n_entries; i++) {
        xf_session_entry *e = &s->entries[i];
        free(e->cmd);
        for (int j = 0; j < e->n_out; j++)
            free(e->out[j].text);
        free(e->out);
        session_lines_free(e->comments, e->n_comments);
    }
    free(s->entries);
    free(s);
}

xf_session *session_parse(const char *name, const char *text, size_t len, xf_err *err)
{
    parser p = {.name = name, .text = text, .len = len, .err = err, .in_header = true, .line_no = 1};
    if (len > SESSION_MAX_BYTES) {
        xf_err_set(err, "%s: line 1 at byte 0: %zu bytes is more than a session may hold (%u)", name, len,
                   SESSION_MAX_BYTES);
        return NULL;
    }
    xf_session *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(name)) || !(s->backend = strdup("cpu"))) {
        session_free(s);
        xf_err_set(err, "%s: out of memory", name);
        return NULL;
    }
    p.s = s;
    s->tol_rel = SESSION_DEFAULT_REL;
    s->tol_abs = SESSION_DEFAULT_ABS;
    s->n_bytes = len;
    size_t pos = 0;
    /* a byte order mark is tolerated, nothing else before the first line */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        pos = 3;
    if (pos == len) {
        perr(&p, pos, "empty file: not an xfdb session (the first line must be '# xfdb session %d')",
             SESSION_VERSION);
        goto fail;
    }
    for (bool first = true; pos < len; first = false) {
        const char *l = text + pos;
        const char *nl = memchr(l, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - l) : len - pos;
        p.line_off = pos;
        if (n && l[n - 1] == '\r')
            n--;
        if (check_bytes(&p, l, n))
            goto fail;
        if (first) {
            static const char magic[] = "# xfdb session ";
            size_t m = sizeof magic - 1;
            if (n < m || memcmp(l, magic, m) != 0) {
                perr(&p, pos, "not an xfdb session (the first line must be '# xfdb session %d')", SESSION_VERSION);
                goto fail;
            }
            size_t i = m;
            long v = 0;
            while (i < n && isdigit((unsigned char)l[i]) && v < 100000)
                v = v * 10 + (l[i++] - '0');
            if (i == m || i != n) {
                perr(&p, pos + m, "bad session version '%.*s'", (int)(n - m > 20 ? 20 : n - m), l + m);
                goto fail;
            }
            if (v != SESSION_VERSION) {
                perr(&p, pos + m, "unsupported session version %ld (this xfdb reads version %d)", v,
                     SESSION_VERSION);
                goto fail;
            }
            s->version = (int)v;
        } else {
            size_t b = 0;
            while (b < n && is_blank(l[b]))
                b++;
            if (b < n && body_line(&p, l, n) != 0)
                goto fail;
        }
        pos = nl ? (size_t)(nl - text) + 1 : len;
        if (pos < len)
            p.line_no++;
    }
    s->n_lines = p.line_no; /* the last line that holds a byte */
    if (p.in_header) {
        p.line_off = len;
        if (end_header(&p) != 0)
            goto fail;
    }
    s->tail_comments = p.pending;
    s->n_tail_comments = p.n_pending;
    p.pending = NULL;
    s->complete = p.ended;
    return s;
fail:
    session_lines_free(p.pending, p.n_pending);
    session_free(s);
    return NULL;
}

xf_session *session_load(const char *path, xf_err *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        xf_err_set(err, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        xf_err_set(err, "%s: not a regular file", path);
        return NULL;
    }
    if ((uint64_t)st.st_size > SESSION_MAX_BYTES) {
        close(fd);
        xf_err_set(err, "%s: line 1 at byte 0: %lld bytes is more than a session may hold (%u)", path,
                   (long long)st.st_size, SESSION_MAX_BYTES);
        return NULL;
    }
    size_t len = (size_t)st.st_size;
    char *buf = malloc(len ? len : 1);
    if (!buf) {
        close(fd);
        xf_err_set(err, "%s: out of memory", path);
        return NULL;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t k = read(fd, buf + got, len - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    /* a file that shrank while being read is parsed as it was read */
    xf_session *s = session_parse(path, buf, got, err);
    free(buf);
    return s;
}

int session_check_complete(const xf_session *s, xf_err *err)
{
    if (s->complete)
        return 0;
    return xf_err_set(err,
                      "%s: line %d at byte %zu: incomplete: no '# end: N commands' line after %d command%s: the "
                      "recording did not end cleanly (xfdb was killed or crashed while recording); record it again",
                      s->path, s->n_lines, s->n_bytes, s->n_entries, s->n_entries == 1 ? "" : "s");
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
    if (is_blank(s[i])) {
        while (i < n && is_blank(s[i]))
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
            while (i < n && !is_blank(s[i]) && !number_at(s, i, n))
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
    while (n && is_blank(s[n - 1]))
        n--;
    return n;
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
            ok = te.len == tg.len && memcmp(expected + te.start, got + tg.start, te.len) == 0;
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

/* --- writing ------------------------------------------------------------------ */

struct xf_session_writer {
    FILE *f;
    char *path, *tmp;
    int n;
};

static int w_sync(xf_session_writer *w, xf_err *err)
{
    if (fflush(w->f) != 0 || ferror(w->f) || fsync(fileno(w->f)) != 0)
        return xf_err_set(err, "%s: write failed: %s", w->tmp, strerror(errno ? errno : EIO));
    return 0;
}

static int w_line(xf_session_writer *w, const char *prefix, const char *s, size_t len, xf_err *err)
{
    char *e = session_escape(s, len);
    if (!e)
        return xf_err_set(err, "%s: out of memory", w->tmp);
    /* an empty line is "<" alone: editors strip trailing blanks */
    int plen = (int)strlen(prefix);
    while (!*e && plen > 0 && prefix[plen - 1] == ' ')
        plen--;
    int rc = fprintf(w->f, "%.*s%s\n", plen, prefix, e);
    free(e);
    if (rc < 0)
        return xf_err_set(err, "%s: write failed: %s", w->tmp, strerror(errno ? errno : EIO));
    return 0;
}

xf_session_writer *session_writer_open(const char *path, const xf_session_header *h, xf_err *err)
{
    if (!h->model_name || !h->model_sha256 || strlen(h->model_sha256) != 64) {
        xf_err_set(err, "%s: a session needs the model's name and sha256", path);
        return NULL;
    }
    xf_session_writer *w = calloc(1, sizeof *w);
    size_t n = strlen(path);
    if (!w || !(w->path = strdup(path)) || !(w->tmp = malloc(n + 5))) {
        if (w)
            free(w->path);
        free(w);
        xf_err_set(err, "%s: out of memory", path);
        return NULL;
    }
    memcpy(w->tmp, path, n);
    memcpy(w->tmp + n, ".tmp", 5);
    w->f = fopen(w->tmp, "w");
    if (!w->f) {
        xf_err_set(err, "%s: cannot create: %s", w->tmp, strerror(errno));
        free(w->tmp);
        free(w->path);
        free(w);
        return NULL;
    }
    char *name = session_escape(h->model_name, strlen(h->model_name));
    char *mpath = h->model_path ? session_escape(h->model_path, strlen(h->model_path)) : NULL;
    int rc = name && (!h->model_path || mpath) ? 0 : -1;
    if (rc == 0) {
        fprintf(w->f, "# xfdb session %d\n# model: %s sha256 %s\n", SESSION_VERSION, name, h->model_sha256);
        if (mpath)
            fprintf(w->f, "# model-path: %s\n", mpath);
        fprintf(w->f, "# backend: %s\n", h->backend ? h->backend : "cpu");
        if (h->n_kernels > 0) {
            fprintf(w->f, "# kernels:");
            for (int i = 0; i < h->n_kernels; i++)
                fprintf(w->f, " %s=%s", h->kernels[i].op, h->kernels[i].variant);
            fprintf(w->f, "\n");
        }
        fprintf(w->f, "# tolerance: rel %.6g abs %.6g\n", h->tol_rel, h->tol_abs);
    }
    free(name);
    free(mpath);
    if (rc != 0)
        xf_err_set(err, "%s: out of memory", w->tmp);
    for (int i = 0; rc == 0 && i < h->n_comments; i++)
        rc = session_writer_comment(w, h->comments[i], err);
    if (rc == 0)
        rc = w_sync(w, err);
    if (rc != 0) {
        fclose(w->f);
        unlink(w->tmp);
        free(w->tmp);
        free(w->path);
        free(w);
        return NULL;
    }
    return w;
}

int session_writer_comment(xf_session_writer *w, const char *text, xf_err *err)
{
    size_t n = strcspn(text, "\n");
    if (text[0] != '#')
        return xf_err_set(err, "%s: a comment starts with '#'", w->tmp);
    /* a comment that would read as the end line, or (before the first
     * command) as a header line, gets a second blank after the '#' */
    bool lookalike = n >= 6 && memcmp(text, "# end:", 6) == 0;
    static const char *const keys[] = {"model", "model-path", "backend", "kernels", "tolerance"};
    for (size_t i = 0; w->n == 0 && i < sizeof keys / sizeof keys[0]; i++)
        lookalike |= header_key(text, n, keys[i]) != 0;
    if (lookalike)
        return w_line(w, "# ", text + 1, n - 1, err);
    return w_line(w, "", text, n, err);
}

int session_writer_entry(xf_session_writer *w, const char *cmd, const char *output, size_t len, const bool *skip,
                         int n_skip, bool skip_all, xf_err *err)
{
    if (w_line(w, "> ", cmd, strcspn(cmd, "\n"), err))
        return -1;
    size_t st = 0;
    int k = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && output[i] != '\n')
            continue;
        if (i == len && st == len)
            break;
        bool sk = skip_all || (skip && k < n_skip && skip[k]);
        if (w_line(w, sk ? "~ " : "< ", output + st, i - st, err))
            return -1;
        st = i + 1;
        k++;
    }
    if (w_sync(w, err))
        return -1;
    w->n++;
    return 0;
}

int session_writer_count(const xf_session_writer *w) { return w->n; }

const char *session_writer_path(const xf_session_writer *w) { return w->path; }

static void free_writer(xf_session_writer *w)
{
    free(w->tmp);
    free(w->path);
    free(w);
}

int session_writer_close(xf_session_writer *w, xf_err *err)
{
    int rc = 0;
    if (fprintf(w->f, "# end: %d commands\n", w->n) < 0)
        rc = xf_err_set(err, "%s: write failed: %s", w->tmp, strerror(errno ? errno : EIO));
    if (rc == 0)
        rc = w_sync(w, err);
    if (fclose(w->f) != 0 && rc == 0)
        rc = xf_err_set(err, "%s: write failed: %s", w->tmp, strerror(errno));
    if (rc == 0 && rename(w->tmp, w->path) != 0)
        rc = xf_err_set(err, "%s: cannot rename to %s: %s", w->tmp, w->path, strerror(errno));
    if (rc == 0) {
        /* the rename itself reaches the disk with its directory */
        char *dir = strdup(w->path);
        if (dir) {
            char *slash = strrchr(dir, '/');
            const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
            int fd = open(d, O_RDONLY | O_DIRECTORY);
            if (fd >= 0) {
                fsync(fd);
                close(fd);
            }
            free(dir);
        }
    }
    free_writer(w);
    return rc;
}

void session_writer_abandon(xf_session_writer *w)
{
    if (!w)
        return;
    fflush(w->f);
    fclose(w->f);
    free_writer(w);
}
