/* xfile: opening, replacing and locking files (see xfile.h for the rules). */
#include "xfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- reading ------------------------------------------------------------------ */

int xf_file_open_read(const char *path, int *fd, struct stat *st, xf_err *err)
{
    *fd = -1;
    if (!path || !*path)
        return xf_err_set(err, "(no file name): cannot open");
    /* O_NONBLOCK: opening a FIFO with no writer would otherwise block
     * forever, before fstat could tell what it is */
    int f = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (f < 0)
        return xf_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat s;
    if (fstat(f, &s) != 0) {
        int e = errno;
        close(f);
        return xf_err_set(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(s.st_mode)) {
        close(f);
        return xf_err_set(err, "%s: not a regular file", path);
    }
    /* reads of a regular file never return EAGAIN, but clear the flag so
     * that the descriptor behaves as any other */
    int fl = fcntl(f, F_GETFL);
    if (fl < 0 || fcntl(f, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(f);
        return xf_err_set(err, "%s: cannot open: %s", path, strerror(e));
    }
    if (st)
        *st = s;
    *fd = f;
    return 0;
}

int xf_file_pread(int fd, void *buf, size_t n, uint64_t off, const char *path, xf_err *err)
{
    uint8_t *p = buf;
    size_t got = 0;
    while (got < n) {
        size_t chunk = n - got > (1u << 30) ? (1u << 30) : n - got;
        ssize_t k = pread(fd, p + got, chunk, (off_t)(off + got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return xf_err_set(err, "%s: read failed at byte %llu: %s", path, (unsigned long long)(off + got),
                              strerror(errno));
        if (k == 0)
            return xf_err_set(err, "%s: the file ends at byte %llu while reading it (it changed on disk)", path,
                              (unsigned long long)(off + got));
        got += (size_t)k;
    }
    return 0;
}

int xf_file_read_all(const char *path, uint64_t max, char **buf, size_t *len, xf_err *err)
{
    *buf = NULL;
    *len = 0;
    int fd;
    struct stat st = {0}; /* xf_file_open_read fills it; GCC -O3 cannot see that */
    if (xf_file_open_read(path, &fd, &st, err) != 0)
        return -1;
    if ((uint64_t)st.st_size > max || (uint64_t)st.st_size >= SIZE_MAX) {
        close(fd);
        return xf_err_set(err, "%s: %lld bytes is more than this file may hold (%llu)", path, (long long)st.st_size,
                          (unsigned long long)max);
    }
    size_t n = (size_t)st.st_size;
    char *b = malloc(n + 1);
    if (!b) {
        close(fd);
        return xf_err_set(err, "%s: out of memory for %zu bytes", path, n);
    }
    int rc = xf_file_pread(fd, b, n, 0, path, err);
    close(fd);
    if (rc != 0) {
        free(b);
        return -1;
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
}

const char *xf_file_changed(const char *path, const struct stat *at_load)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return errno == ENOENT ? "it was removed" : strerror(errno);
    if (st.st_dev != at_load->st_dev || st.st_ino != at_load->st_ino)
        return "another file is at its path";
    if (st.st_size != at_load->st_size)
        return "its size changed";
    /* mtime to the nanosecond: a rewrite of the same size in the same
     * second still differs there on file systems that keep nanoseconds */
    if (st.st_mtim.tv_sec != at_load->st_mtim.tv_sec || st.st_mtim.tv_nsec != at_load->st_mtim.tv_nsec)
        return "it was modified";
    return NULL;
}

/* --- replacing ------------------------------------------------------------------ */

/* The directory of path ("." when it has none), malloc'd. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

static mode_t new_file_mode(void)
{
    /* umask cannot be read without setting it; xfdb creates files from one
     * thread, so the moment it is 0 harms nobody */
    mode_t m = umask(0);
    umask(m);
    return 0666 & ~m;
}

/* The checks of the target shared by both ways to open: fills w->mode. */
static int check_target(const char *path, xf_atomic *w, xf_err *err)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno != ENOENT)
            return xf_err_set(err, "%s: cannot stat: %s", path, strerror(errno));
        w->mode = new_file_mode();
        return 0;
    }
    /* replacing a symlink would replace the link, not the file it names:
     * surprising either way, so refuse and let the user name the file */
    if (S_ISLNK(st.st_mode))
        return xf_err_set(err, "%s: is a symbolic link: refusing to replace it (name the file it points to)", path);
    if (!S_ISREG(st.st_mode))
        return xf_err_set(err, "%s: not a regular file: refusing to replace it", path);
    /* rename(2) replaces a read-only file as easily as any other; its mode
     * says it must not change (root passes access(), hence the mode bits) */
    if ((st.st_mode & 0222) == 0 || access(path, W_OK) != 0)
        return xf_err_set(err, "%s: read-only (mode %04o): refusing to replace it", path,
                          (unsigned)(st.st_mode & 07777));
    w->mode = st.st_mode & 07777;
    return 0;
}

int xf_atomic_check(const char *path, xf_err *err)
{
    xf_atomic w;
    if (!path || !*path)
        return xf_err_set(err, "(no file name): cannot write");
    return check_target(path, &w, err);
}

static int atomic_start(const char *path, xf_atomic *w, xf_err *err)
{
    memset(w, 0, sizeof *w);
    w->fd = -1;
    if (!path || !*path)
        return xf_err_set(err, "(no file name): cannot write");
    if (check_target(path, w, err) != 0)
        return -1;
    w->path = strdup(path);
    if (!w->path)
        return xf_err_set(err, "%s: out of memory", path);
    return 0;
}

int xf_atomic_open(const char *path, xf_atomic *w, xf_err *err)
{
    if (atomic_start(path, w, err) != 0)
        return -1;
    if (asprintf(&w->tmp, "%s.XXXXXX.tmp", path) < 0) {
        w->tmp = NULL;
        xf_atomic_abort(w);
        return xf_err_set(err, "%s: out of memory", path);
    }
    w->fd = mkostemps(w->tmp, 4, O_CLOEXEC);
    if (w->fd < 0) {
        int e = errno;
        free(w->tmp);
        w->tmp = NULL; /* nothing to remove */
        xf_atomic_abort(w);
        return xf_err_set(err, "%s: cannot create a temporary file beside it: %s", path, strerror(e));
    }
    return 0;
}

int xf_atomic_open_named(const char *path, const char *suffix, xf_atomic *w, xf_err *err)
{
    if (atomic_start(path, w, err) != 0)
        return -1;
    if (asprintf(&w->tmp, "%s%s", path, suffix) < 0) {
        w->tmp = NULL;
        xf_atomic_abort(w);
        return xf_err_set(err, "%s: out of memory", path);
    }
    /* whatever is at the name (an old temporary, a planted symlink) goes;
     * O_EXCL|O_NOFOLLOW then refuses anything planted again meanwhile */
    if (unlink(w->tmp) != 0 && errno != ENOENT) {
        int e = errno;
        free(w->tmp);
        w->tmp = NULL;
        xf_atomic_abort(w);
        return xf_err_set(err, "%s%s: cannot remove the old temporary file: %s", path, suffix, strerror(e));
    }
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (w->fd < 0) {
        int e = errno;
        free(w->tmp);
        w->tmp = NULL; /* not ours: never remove it */
        xf_atomic_abort(w);
        return xf_err_set(err, "%s%s: cannot create: %s", path, suffix, strerror(e));
    }
    return 0;
}

static int atomic_fail(xf_atomic *w, const char *what, int e, xf_err *err)
{
    w->failed = true;
    return xf_err_set(err, "%s: %s failed: %s", w->path ? w->path : "?", what, strerror(e ? e : EIO));
}

int xf_atomic_write(xf_atomic *w, const void *p, size_t n, xf_err *err)
{
    if (w->fd < 0 || w->failed)
        return xf_err_set(err, "%s: write failed: an earlier write failed", w->path ? w->path : "?");
    const uint8_t *q = p;
    while (n) {
        ssize_t k = write(w->fd, q, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return atomic_fail(w, "write", k < 0 ? errno : ENOSPC, err);
        q += k;
        n -= (size_t)k;
    }
    return 0;
}

int xf_atomic_sync(xf_atomic *w, xf_err *err)
{
    if (w->fd < 0 || w->failed)
        return xf_err_set(err, "%s: write failed: an earlier write failed", w->path ? w->path : "?");
    if (fsync(w->fd) != 0)
        return atomic_fail(w, "fsync", errno, err);
    return 0;
}

/* The rename reaches the disk with its directory entry. EINVAL: a file
 * system whose directories cannot be synced (nothing to do there). dir is
 * named before the rename, so that nothing after it can fail for memory. */
static int sync_dir(const char *path, const char *dir, xf_err *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;
    if (fd >= 0) {
        if (fsync(fd) != 0 && errno != EINVAL)
            rc = xf_err_set(err, "%s: written, but syncing its directory %s failed: %s", path, dir, strerror(errno));
        close(fd);
    }
    return rc;
}

int xf_atomic_commit(xf_atomic *w, xf_err *err)
{
    int rc = 0;
    /* an error after the rename would report a failure while the new file
     * is in place: what can fail for memory is done before it */
    char *dir = w->path ? dir_of(w->path) : NULL;
    if (w->fd < 0 || w->failed)
        rc = xf_err_set(err, "%s: not written: an earlier write failed", w->path ? w->path : "?");
    else if (!dir)
        rc = xf_err_set(err, "%s: out of memory", w->path);
    else if (fchmod(w->fd, w->mode) != 0)
        rc = atomic_fail(w, "chmod", errno, err);
    else if (fsync(w->fd) != 0)
        rc = atomic_fail(w, "fsync", errno, err);
    if (w->fd >= 0) {
        int cr = close(w->fd);
        int e = errno;
        w->fd = -1;
        if (cr != 0 && rc == 0)
            rc = atomic_fail(w, "close", e, err);
    }
    if (rc == 0 && rename(w->tmp, w->path) != 0)
        rc = xf_err_set(err, "%s: cannot rename %s over it: %s", w->path, w->tmp, strerror(errno));
    if (rc != 0) {
        free(dir);
        xf_atomic_abort(w);
        return -1;
    }
    free(w->tmp);
    w->tmp = NULL; /* renamed: nothing to remove */
    rc = sync_dir(w->path, dir, err);
    free(dir);
    xf_atomic_abort(w);
    return rc;
}

void xf_atomic_abort(xf_atomic *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    if (w->tmp)
        unlink(w->tmp);
    free(w->tmp);
    free(w->path);
    w->tmp = w->path = NULL;
}

/* --- locking --------------------------------------------------------------------- */

int xf_lock_acquire(const char *path, const char *doing, xf_lock *l, xf_err *err)
{
    l->fd = -1;
    l->path = NULL;
    if (asprintf(&l->path, "%s.lock", path) < 0) {
        l->path = NULL;
        return xf_err_set(err, "%s: out of memory", path);
    }
    /* the holder removes the lock file at release: a file we locked may be
     * unlinked by then, so retry until the locked file is the one at the name */
    for (int tries = 0; tries < 100; tries++) {
        int fd = open(l->path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0666);
        if (fd < 0) {
            int e = errno;
            xf_err_set(err, "%s: cannot create the lock file %s: %s", path, l->path, strerror(e));
            break;
        }
        struct stat a, b;
        if (fstat(fd, &a) != 0 || !S_ISREG(a.st_mode)) {
            close(fd);
            xf_err_set(err, "%s: the lock file %s is not a regular file", path, l->path);
            break;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            close(fd);
            if (e == EWOULDBLOCK)
                xf_err_set(err, "%s: another xfdb is %s this file", path, doing);
            else
                xf_err_set(err, "%s: cannot lock %s: %s", path, l->path, strerror(e));
            break;
        }
        if (stat(l->path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            l->fd = fd;
            return 0;
        }
        close(fd); /* released and removed meanwhile: take the new one */
    }
    if (l->fd < 0 && err && !err->msg[0])
        xf_err_set(err, "%s: cannot lock %s: it keeps changing", path, l->path);
    free(l->path);
    l->path = NULL;
    return -1;
}

int xf_lock_note(xf_lock *l, const char *text, xf_err *err)
{
    size_t n = strlen(text);
    if (l->fd < 0 || ftruncate(l->fd, 0) != 0 || pwrite(l->fd, text, n, 0) != (ssize_t)n)
        return xf_err_set(err, "%s: write failed: %s", l->path ? l->path : "?", strerror(errno ? errno : EIO));
    return 0;
}

void xf_lock_release(xf_lock *l)
{
    if (!l)
        return;
    if (l->fd >= 0) {
        /* unlinked while still locked: a waiter that opened it re-checks
         * the name after its flock and starts over */
        unlink(l->path);
        close(l->fd);
    }
    l->fd = -1;
    free(l->path);
    l->path = NULL;
}

xf_lock_state xf_lock_probe(const char *path, char *note, size_t note_size)
{
    if (note && note_size)
        note[0] = '\0';
    char *lp = NULL;
    if (asprintf(&lp, "%s.lock", path) < 0)
        return XF_LOCK_NONE;
    int fd = open(lp, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    free(lp);
    if (fd < 0)
        return XF_LOCK_NONE;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return XF_LOCK_NONE;
    }
    xf_lock_state s = XF_LOCK_STALE;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0)
        s = XF_LOCK_HELD;
    else
        flock(fd, LOCK_UN);
    if (note && note_size > 1) {
        ssize_t k = pread(fd, note, note_size - 1, 0);
        note[k > 0 ? k : 0] = '\0';
        note[strcspn(note, "\n")] = '\0';
    }
    close(fd);
    return s;
}
