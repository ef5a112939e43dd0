/* xfile: the one place xfdb opens files, so that every reader and writer of
 * a path given by a user (a model, a session, a script, a dump) gets the
 * same protections against what can sit at that path:
 *
 * - reading: a FIFO, a device or a directory is refused before anything
 *   blocks on it (open(2) of a FIFO without a writer blocks forever);
 * - replacing: a file is written to a fresh temporary beside it (mkstemp:
 *   O_EXCL, so a symlink planted at a predictable name is never followed),
 *   fsynced, renamed over the target, and its directory fsynced; a target
 *   that is a device, a FIFO, a directory or a symlink is refused (writing
 *   "through" /dev/full or a symlink would replace the device node or the
 *   link, never what the user meant), and so is a read-only one (its mode
 *   says "do not change me"; rename(2) would replace it anyway). An
 *   existing target keeps its permission bits; a new one gets 0666 less the
 *   umask, as fopen would. Every error removes the temporary and names the
 *   file; ENOSPC and EIO surface at write, fsync or close, never later.
 * - one writer per path: an advisory flock on the sidecar PATH.lock, so that
 *   a second xfdb writing the same file is refused instead of interleaving.
 *
 * Errors are one line: "PATH: what is wrong[: strerror]". */
#ifndef XF_XFILE_H
#define XF_XFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "err.h"

/* --- reading --------------------------------------------------------------- */

/* Opens path for reading: O_RDONLY|O_NONBLOCK|O_CLOEXEC (a FIFO does not
 * block the open), fstat, refuses what is not a regular file ("PATH: not a
 * regular file"), then clears O_NONBLOCK. *fd is the open file; st (may be
 * NULL) receives its fstat. */
int xf_file_open_read(const char *path, int *fd, struct stat *st, xf_err *err);
/* Reads exactly n bytes at offset off (pread, EINTR retried). A file that
 * ends early (it shrank since its fstat) is an error naming the offset. */
int xf_file_pread(int fd, void *buf, size_t n, uint64_t off, const char *path, xf_err *err);
/* A whole regular file into a malloc'd buffer (NUL-terminated, *len
 * without the NUL); refused beyond max bytes. */
int xf_file_read_all(const char *path, uint64_t max, char **buf, size_t *len, xf_err *err);

/* Whether path still names the file that at_load (the fstat taken when it
 * was read) describes: same device, inode, size and modification time. A
 * reader that keeps a copy in memory asks this before it hands out values,
 * so that a file replaced, truncated or rewritten since is said instead of
 * mixed with the user's idea of the new file. NULL when it is the same;
 * else why not, in words for a message: "it was removed", "another file is
 * at its path", "its size changed", "it was modified", or why stat failed. */
const char *xf_file_changed(const char *path, const struct stat *at_load);

/* --- replacing a file atomically -------------------------------------------- */

typedef struct xf_atomic {
    int fd;       /* the temporary, -1 when closed */
    char *path;   /* the target */
    char *tmp;    /* the temporary beside it */
    mode_t mode;  /* permission bits the file gets at commit */
    bool failed;  /* a write failed: commit refuses */
} xf_atomic;

/* Only the checks of the target (the refusals above), for a writer that
 * must take a lock before it opens (a lock file beside /dev/full is no
 * better than a temporary there). */
int xf_atomic_check(const char *path, xf_err *err);
/* Creates the temporary PATH.XXXXXX.tmp beside path (mkstemp), after
 * checking the target (see above). */
int xf_atomic_open(const char *path, xf_atomic *w, xf_err *err);
/* The same with the fixed temporary name PATH+suffix (e.g. ".tmp"), for a
 * writer whose temporary is evidence that must be found by name (a session
 * recording killed midway). Any old file at that name is unlinked first
 * (unlink removes a planted symlink, never its target) and the new one is
 * created O_CREAT|O_EXCL|O_NOFOLLOW: nothing planted there is followed or
 * reused. Call it only while holding xf_lock of path: two writers would
 * unlink each other's temporaries. */
int xf_atomic_open_named(const char *path, const char *suffix, xf_atomic *w, xf_err *err);
/* Writes all n bytes. On an error the writer is marked failed: later
 * writes and the commit refuse. */
int xf_atomic_write(xf_atomic *w, const void *p, size_t n, xf_err *err);
/* fsync of the temporary (a writer that must survive a crash per step). */
int xf_atomic_sync(xf_atomic *w, xf_err *err);
/* fchmod, fsync, close, rename over the target, fsync of the directory.
 * On any error the temporary is removed and the target is untouched. w is
 * finished either way (xf_atomic_abort after it is a no-op). */
int xf_atomic_commit(xf_atomic *w, xf_err *err);
/* Closes and removes the temporary; the target is untouched. Safe on a
 * zeroed, finished or never-opened writer. */
void xf_atomic_abort(xf_atomic *w);

/* --- one writer per path ----------------------------------------------------- */

typedef struct xf_lock {
    int fd;     /* -1 when not held */
    char *path; /* PATH.lock */
} xf_lock;

/* Takes an exclusive flock on PATH.lock (created, O_NOFOLLOW). Another
 * holder: -1 with "PATH: another xfdb is DOING this file" (doing: e.g.
 * "recording to"). The lock file is removed at release; a lock file left by
 * a killed process is not locked and is taken over. */
int xf_lock_acquire(const char *path, const char *doing, xf_lock *l, xf_err *err);
/* Replaces what the lock file says (who holds it; read by xf_lock_probe). */
int xf_lock_note(xf_lock *l, const char *text, xf_err *err);
void xf_lock_release(xf_lock *l);

typedef enum xf_lock_state {
    XF_LOCK_NONE = 0, /* no PATH.lock */
    XF_LOCK_HELD,     /* a live process holds it */
    XF_LOCK_STALE,    /* PATH.lock is there but nobody holds it: its writer died */
} xf_lock_state;
/* What PATH.lock says; note (may be NULL) receives its first line. */
xf_lock_state xf_lock_probe(const char *path, char *note, size_t note_size);

#endif
