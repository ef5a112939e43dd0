/* session_write: the recorder of .xfs files (format in session.h).
 *
 * A recording holds the lock PATH.lock (base/xfile: a second xfdb
 * recording to the same PATH is refused instead of interleaving), writes
 * PATH.tmp (created O_EXCL|O_NOFOLLOW after removing whatever was at that
 * name: a planted symlink is never followed), syncs it after every command,
 * and at the end writes the end line, syncs, renames it over PATH and syncs
 * the directory. A killed recording leaves PATH.tmp without an end line
 * (the crash evidence replay reports) and PATH untouched; every error path
 * (a failed write, sync or rename, an abandoned recording) removes PATH.tmp
 * and the lock, so that nothing is left that the next replay could take
 * for a crashed recording. */
#include "session.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "session_impl.h"
#include "xfile.h"

struct xf_session_writer {
    xf_atomic a;  /* PATH.tmp -> PATH */
    xf_lock lock; /* PATH.lock */
    char *path;
    char *buf; /* the lines of one step, written at once */
    size_t len, cap;
    bool oom;
    int n;
};

static void put(xf_session_writer *w, const char *s, size_t n)
{
    if (w->oom)
        return;
    if (n > w->cap - w->len) {
        size_t cap = w->cap ? w->cap : 1024;
        while (n > cap - w->len) {
            if (cap > SIZE_MAX / 2) {
                w->oom = true;
                return;
            }
            cap *= 2;
        }
        char *b = realloc(w->buf, cap);
        if (!b) {
            w->oom = true;
            return;
        }
        w->buf = b;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static void putf(xf_session_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(xf_session_writer *w, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof tmp)
        w->oom = true; /* only short fixed-format lines go through here */
    else
        put(w, tmp, (size_t)k);
}

/* One line: prefix, the escaped text, '\n'. An empty line is the prefix
 * without its blank ("<" alone): editors strip trailing blanks. */
static void put_line(xf_session_writer *w, const char *prefix, const char *s, size_t len)
{
    char *e = session_escape(s, len);
    if (!e) {
        w->oom = true;
        return;
    }
    size_t plen = strlen(prefix);
    while (!*e && plen > 0 && prefix[plen - 1] == ' ')
        plen--;
    put(w, prefix, plen);
    put(w, e, strlen(e));
    put(w, "\n", 1);
    free(e);
}

/* Writes and syncs what is buffered: one step reaches the disk whole. */
static int flush(xf_session_writer *w, xf_err *err)
{
    if (w->oom) {
        w->len = 0;
        w->oom = false;
        return xf_err_set(err, "%s: out of memory", w->path);
    }
    int rc = xf_atomic_write(&w->a, w->buf, w->len, err);
    w->len = 0;
    return rc == 0 ? xf_atomic_sync(&w->a, err) : -1;
}

static void free_writer(xf_session_writer *w)
{
    xf_atomic_abort(&w->a); /* no-op after a commit */
    xf_lock_release(&w->lock);
    free(w->buf);
    free(w->path);
    free(w);
}

static void put_header(xf_session_writer *w, const xf_session_header *h)
{
    putf(w, "# xfdb session %d\n", SESSION_VERSION);
    put_line(w, "# model: ", h->model_name, strlen(h->model_name));
    if (!w->oom)
        w->len--; /* the sha256 goes on the same line */
    putf(w, " sha256 %s\n", h->model_sha256);
    if (h->model_path)
        put_line(w, "# model-path: ", h->model_path, strlen(h->model_path));
    putf(w, "# backend: %s\n", h->backend ? h->backend : "cpu");
    if (h->n_kernels > 0) {
        put(w, "# kernels:", 10);
        for (int i = 0; i < h->n_kernels; i++) {
            put(w, " ", 1);
            put(w, h->kernels[i].op, strlen(h->kernels[i].op));
            put(w, "=", 1);
            put(w, h->kernels[i].variant, strlen(h->kernels[i].variant));
        }
        put(w, "\n", 1);
    }
    putf(w, "# tolerance: rel %.6g abs %.6g\n", h->tol_rel, h->tol_abs);
}

xf_session_writer *session_writer_open(const char *path, const xf_session_header *h, xf_err *err)
{
    if (!h->model_name || !*h->model_name || !h->model_sha256 || strlen(h->model_sha256) != 64) {
        xf_err_set(err, "%s: a session needs the model's name and sha256", path);
        return NULL;
    }
    xf_session_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        xf_err_set(err, "%s: out of memory", path);
        return NULL;
    }
    w->a.fd = w->lock.fd = -1;
    char note[64];
    snprintf(note, sizeof note, "xfdb pid %ld\n", (long)getpid());
    if (xf_atomic_check(path, err) != 0 || xf_lock_acquire(path, "recording to", &w->lock, err) != 0 || xf_lock_note(&w->lock, note, err) != 0 ||
        xf_atomic_open_named(path, ".tmp", &w->a, err) != 0) {
        free_writer(w);
        return NULL;
    }
    put_header(w, h);
    int rc = 0;
    for (int i = 0; rc == 0 && i < h->n_comments; i++)
        rc = session_writer_comment(w, h->comments[i], err);
    if (rc == 0)
        rc = flush(w, err);
    if (rc != 0) {
        free_writer(w);
        return NULL;
    }
    return w;
}

int session_writer_comment(xf_session_writer *w, const char *text, xf_err *err)
{
    size_t n = strcspn(text, "\n");
    if (text[0] != '#')
        return xf_err_set(err, "%s: a comment starts with '#'", w->path);
    /* a comment that would read as the end line, or (before the first
     * command) as a header line, gets a second blank after the '#' */
    bool lookalike = n >= 6 && memcmp(text, "# end:", 6) == 0;
    static const char *const keys[] = {"model", "model-path", "backend", "kernels", "tolerance"};
    for (size_t i = 0; w->n == 0 && i < sizeof keys / sizeof keys[0]; i++)
        lookalike |= sess_header_key(text, n, keys[i]) != 0;
    if (lookalike)
        put_line(w, "# ", text + 1, n - 1);
    else
        put_line(w, "", text, n);
    /* reaches the disk with the next command (or the end line) */
    return w->oom ? flush(w, err) : 0;
}

int session_writer_entry(xf_session_writer *w, const char *cmd, const char *output, size_t len, const bool *skip,
                         int n_skip, bool skip_all, xf_err *err)
{
    put_line(w, "> ", cmd, strcspn(cmd, "\n"));
    size_t st = 0;
    int k = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && output[i] != '\n')
            continue;
        if (i == len && st == len)
            break;
        bool sk = skip_all || (skip && k < n_skip && skip[k]);
        put_line(w, sk ? "~ " : "< ", output + st, i - st);
        st = i + 1;
        k++;
    }
    if (flush(w, err))
        return -1;
    w->n++;
    return 0;
}

int session_writer_count(const xf_session_writer *w) { return w->n; }

const char *session_writer_path(const xf_session_writer *w) { return w->path; }

int session_writer_close(xf_session_writer *w, xf_err *err)
{
    putf(w, "# end: %d commands\n", w->n);
    int rc = flush(w, err);
    if (rc == 0)
        rc = xf_atomic_commit(&w->a, err);
    free_writer(w); /* removes PATH.tmp if anything failed, and the lock */
    return rc;
}

void session_writer_abandon(xf_session_writer *w)
{
    if (w)
        free_writer(w);
}
