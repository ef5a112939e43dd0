/* session_read: the strict parser of untrusted .xfs files (format in
 * session.h). Every byte is checked (UTF-8, control bytes), the escape is
 * undone, and every error names the file, the line and the byte offset. */
#include "session.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "session_impl.h"
#include "xfile.h"

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
        size_t k = sess_utf8_seq(u + i, n - i);
        if (k == 0)
            return perr(p, off, "invalid UTF-8 (byte 0x%02x)", u[i]);
        i += k;
    }
    return 0;
}

/* Undoes the escape of the format (session_unescape). */
static char *dec(const char *s, size_t n) { return session_unescape(s, n, NULL); }

static int parse_model(parser *p, const char *l, size_t n, size_t v)
{
    xf_session *s = p->s;
    size_t voff = (size_t)(l - p->text) + v;
    /* NAME sha256 HEX: split from the right, the name may hold spaces */
    size_t e = n;
    while (e > v && sess_is_blank(l[e - 1]))
        e--;
    size_t hs = e;
    while (hs > v && !sess_is_blank(l[hs - 1]))
        hs--;
    size_t ke = hs;
    while (ke > v && sess_is_blank(l[ke - 1]))
        ke--;
    size_t ks = ke;
    while (ks > v && !sess_is_blank(l[ks - 1]))
        ks--;
    size_t ne = ks;
    while (ne > v && sess_is_blank(l[ne - 1]))
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
    s->model_name = dec(l + v, ne - v);
    return s->model_name ? 0 : oom(p);
}

static int parse_number_field(parser *p, const char *l, size_t *i, size_t n, const char *what, double *out)
{
    while (*i < n && sess_is_blank(l[*i]))
        (*i)++;
    size_t st = *i;
    while (*i < n && !sess_is_blank(l[*i]))
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
        while (i < n && sess_is_blank(l[i]))
            i++;
        if (i >= n)
            break;
        size_t st = i;
        while (i < n && !sess_is_blank(l[i]))
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
        while (i < n && sess_is_blank(l[i]))
            i++;
        if (i >= n)
            break;
        size_t st = i;
        while (i < n && !sess_is_blank(l[i]))
            i++;
        const char *eq = memchr(l + st, '=', i - st);
        if (!eq || eq == l + st || eq == l + i - 1)
            return perr(p, (size_t)(l - p->text) + st, "kernels: expected OP=VARIANT, found '%.*s'",
                        (int)(i - st > 40 ? 40 : i - st), l + st);
        if (sess_grow((void **)&s->kernels, &p->cap_k, s->n_kernels, sizeof *s->kernels) != 0)
            return oom(p);
        xf_session_kernel *k = &s->kernels[s->n_kernels];
        k->op = sess_dup_n(l + st, (size_t)(eq - (l + st)));
        k->variant = sess_dup_n(eq + 1, (size_t)(l + i - eq - 1));
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
    if ((v = sess_header_key(l, n, "model"))) {
        if (dup_key(p, &p->model_line, "model"))
            return -1;
        return parse_model(p, l, n, v);
    }
    if ((v = sess_header_key(l, n, "model-path"))) {
        if (dup_key(p, &p->path_line, "model-path"))
            return -1;
        size_t e = n;
        while (e > v && sess_is_blank(l[e - 1]))
            e--;
        if (e == v)
            return perr(p, (size_t)(l - p->text) + v, "model-path: empty");
        s->model_path = dec(l + v, e - v);
        return s->model_path ? 0 : oom(p);
    }
    if ((v = sess_header_key(l, n, "backend"))) {
        if (dup_key(p, &p->backend_line, "backend"))
            return -1;
        size_t e = n;
        while (e > v && sess_is_blank(l[e - 1]))
            e--;
        if (e == v)
            return perr(p, (size_t)(l - p->text) + v, "backend: empty");
        for (size_t i = v; i < e; i++)
            if (sess_is_blank(l[i]))
                return perr(p, (size_t)(l - p->text) + i, "backend: one word expected (cpu, cuda)");
        free(s->backend);
        s->backend = sess_dup_n(l + v, e - v);
        return s->backend ? 0 : oom(p);
    }
    if ((v = sess_header_key(l, n, "kernels"))) {
        if (dup_key(p, &p->kernels_line, "kernels"))
            return -1;
        return parse_kernels(p, l, n, v);
    }
    if ((v = sess_header_key(l, n, "tolerance"))) {
        if (dup_key(p, &p->tol_line, "tolerance"))
            return -1;
        return parse_tolerance(p, l, n, v);
    }
    return sess_push_str(&s->header_comments, &s->n_header_comments, &p->cap_hc, dec(l, n)) ? oom(p) : 0;
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
    while (i < n && sess_is_blank(l[i]))
        i++;
    size_t st = i;
    long long cnt = 0;
    while (i < n && isdigit((unsigned char)l[i]) && i - st < 10)
        cnt = cnt * 10 + (l[i++] - '0');
    size_t ds = i;
    while (i < n && sess_is_blank(l[i]))
        i++;
    size_t e = n;
    while (e > i && sess_is_blank(l[e - 1]))
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
        return sess_push_str(&p->pending, &p->n_pending, &p->cap_pending, dec(l, n)) ? oom(p) : 0;
    }
    if (l[0] == '>') {
        if (n < 2 || l[1] != ' ')
            return perr(p, off, n < 2 ? "empty command after '>'" : "expected a space after '>'");
        size_t e = n;
        while (e > 2 && sess_is_blank(l[e - 1]))
            e--;
        size_t st = 2;
        while (st < e && sess_is_blank(l[st]))
            st++;
        if (st == e)
            return perr(p, off, "empty command after '>'");
        if (p->in_header && end_header(p))
            return -1;
        if (sess_grow((void **)&s->entries, &p->cap_entries, s->n_entries, sizeof *s->entries) != 0)
            return oom(p);
        xf_session_entry *en = &s->entries[s->n_entries++];
        memset(en, 0, sizeof *en);
        en->line_no = p->line_no;
        en->offset = off;
        size_t clen;
        en->cmd = session_unescape(l + st, e - st, &clen);
        en->comments = p->pending;
        en->n_comments = p->n_pending;
        p->pending = NULL;
        p->n_pending = p->cap_pending = 0;
        p->cap_out = 0;
        if (!en->cmd)
            return oom(p);
        /* the recorder cuts a command at its line end: an escaped one in a
         * command is no recording, and would replay as two lines */
        if (memchr(en->cmd, '\n', clen))
            return perr(p, off + st, "a command cannot hold a line end (\\x0a)");
        return 0;
    }
    if (l[0] == '<' || l[0] == '~') {
        if (s->n_entries == 0)
            return perr(p, off, "output line before any command");
        if (n >= 2 && l[1] != ' ')
            return perr(p, off, "expected a space after '%c'", l[0]);
        xf_session_entry *en = &s->entries[s->n_entries - 1];
        if (sess_grow((void **)&en->out, &p->cap_out, en->n_out, sizeof *en->out) != 0)
            return oom(p);
        xf_session_line *ol = &en->out[en->n_out];
        ol->text = dec(n >= 2 ? l + 2 : "", n >= 2 ? n - 2 : 0);
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
            while (b < n && sess_is_blank(l[b]))
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
    /* through xfile: a FIFO given as the session must not block the open */
    int fd;
    struct stat st;
    if (xf_file_open_read(path, &fd, &st, err) != 0)
        return NULL;
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
    int rc = xf_file_pread(fd, buf, len, 0, path, err);
    close(fd);
    xf_session *s = rc == 0 ? session_parse(path, buf, len, err) : NULL;
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
