/* base/xfile (issue 14, items 9-12 and 15): every branch of the one place
 * files are opened. Each test names what it guards against; the ones that
 * would hang before the fix (a FIFO) run under alarm(). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "xfile.h"

static char g_dir[256];

static int setup(void **state)
{
    (void)state;
    const char *t = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/xfile.XXXXXX", t && *t ? t : "/tmp");
    /* 0755: the child that drops to nobody must reach the files */
    return mkdtemp(g_dir) && chmod(g_dir, 0755) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "chmod -R u+w '%s' 2>/dev/null; rm -rf '%s'", g_dir, g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *in_dir(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", g_dir, name);
    return buf;
}

static void put_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static char *slurp(const char *path)
{
    char *b;
    size_t n;
    xf_err err = {{0}};
    if (xf_file_read_all(path, 1 << 20, &b, &n, &err) != 0)
        fail_msg("%s", err.msg);
    return b;
}

/* files in g_dir whose name starts with prefix (temporaries left behind) */
static int count_prefix(const char *prefix)
{
    DIR *d = opendir(g_dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static void expect_err(const xf_err *err, const char *path, const char *tail)
{
    char want[1024];
    snprintf(want, sizeof want, "%s: %s", path, tail);
    assert_string_equal(err->msg, want);
}

/* --- reading ---------------------------------------------------------------- */

static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "xf_file_open_read blocked on a FIFO\n";
    if (write(2, m, sizeof m - 1) < 0) /* nothing more to do in a signal handler */
        _exit(124);
    _exit(1);
}

/* item 15: open(2) of a FIFO without a writer blocks forever */
static void test_read_fifo_refused(void **state)
{
    (void)state;
    char p[512];
    in_dir(p, sizeof p, "fifo");
    assert_int_equal(mkfifo(p, 0600), 0);
    signal(SIGALRM, on_alarm);
    alarm(5);
    int fd = 123;
    xf_err err = {{0}};
    assert_int_equal(xf_file_open_read(p, &fd, NULL, &err), -1);
    alarm(0);
    assert_int_equal(fd, -1);
    expect_err(&err, p, "not a regular file");
    char *b = (char *)1;
    size_t n;
    alarm(5);
    assert_int_equal(xf_file_read_all(p, 100, &b, &n, &err), -1);
    alarm(0);
    assert_null(b);
    unlink(p);
}

static void test_read_dir_and_device_refused(void **state)
{
    (void)state;
    int fd;
    xf_err err = {{0}};
    assert_int_equal(xf_file_open_read(g_dir, &fd, NULL, &err), -1);
    expect_err(&err, g_dir, "not a regular file");
    assert_int_equal(xf_file_open_read("/dev/null", &fd, NULL, &err), -1);
    expect_err(&err, "/dev/null", "not a regular file");
    char p[512];
    assert_int_equal(xf_file_open_read(in_dir(p, sizeof p, "none"), &fd, NULL, &err), -1);
    expect_err(&err, p, "cannot open: No such file or directory");
}

static void test_read_regular(void **state)
{
    (void)state;
    char p[512];
    in_dir(p, sizeof p, "r.txt");
    put_file(p, "hello", 0644);
    int fd;
    struct stat st;
    xf_err err = {{0}};
    assert_int_equal(xf_file_open_read(p, &fd, &st, &err), 0);
    assert_int_equal(st.st_size, 5);
    assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
    char b[8];
    assert_int_equal(xf_file_pread(fd, b, 5, 0, p, &err), 0);
    assert_memory_equal(b, "hello", 5);
    /* a file shorter than what is asked: it changed under the reader */
    assert_int_equal(xf_file_pread(fd, b, 4, 3, p, &err), -1);
    expect_err(&err, p, "the file ends at byte 5 while reading it (it changed on disk)");
    close(fd);
    char *s = slurp(p);
    assert_string_equal(s, "hello");
    free(s);
    size_t n;
    assert_int_equal(xf_file_read_all(p, 4, &s, &n, &err), -1);
    expect_err(&err, p, "5 bytes is more than this file may hold (4)");
    unlink(p);
}

/* --- replacing -------------------------------------------------------------- */

static void write_commit(const char *p, const char *text)
{
    xf_atomic w;
    xf_err err = {{0}};
    if (xf_atomic_open(p, &w, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(xf_atomic_write(&w, text, strlen(text), &err), 0);
    if (xf_atomic_commit(&w, &err) != 0)
        fail_msg("%s", err.msg);
}

static void test_atomic_new_and_replace(void **state)
{
    (void)state;
    char p[512];
    in_dir(p, sizeof p, "a.txt");
    mode_t um = umask(022);
    write_commit(p, "one");
    umask(um);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644); /* as fopen would, not mkstemp's 0600 */
    char *s = slurp(p);
    assert_string_equal(s, "one");
    free(s);
    /* an existing file keeps its mode */
    assert_int_equal(chmod(p, 0640), 0);
    write_commit(p, "two");
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    s = slurp(p);
    assert_string_equal(s, "two");
    free(s);
    assert_int_equal(count_prefix("a.txt."), 0);
    unlink(p);
}

/* item 9: `--record /dev/full` turned the device into a regular file */
static void test_atomic_device_target_refused(void **state)
{
    (void)state;
    xf_atomic w;
    xf_err err = {{0}};
    assert_int_equal(xf_atomic_open("/dev/null", &w, &err), -1);
    expect_err(&err, "/dev/null", "not a regular file: refusing to replace it");
    struct stat st;
    assert_int_equal(stat("/dev/null", &st), 0);
    assert_true(S_ISCHR(st.st_mode));
    char p[512];
    in_dir(p, sizeof p, "f2");
    assert_int_equal(mkfifo(p, 0600), 0);
    assert_int_equal(xf_atomic_open(p, &w, &err), -1);
    expect_err(&err, p, "not a regular file: refusing to replace it");
    unlink(p);
    assert_int_equal(xf_atomic_open(g_dir, &w, &err), -1);
    expect_err(&err, g_dir, "not a regular file: refusing to replace it");
    xf_atomic_abort(&w); /* safe on a writer that never opened */
}

static void test_atomic_symlink_target_refused(void **state)
{
    (void)state;
    char p[512], v[512];
    in_dir(v, sizeof v, "victim");
    put_file(v, "precious", 0644);
    in_dir(p, sizeof p, "link.xfs");
    assert_int_equal(symlink(v, p), 0);
    xf_atomic w;
    xf_err err = {{0}};
    assert_int_equal(xf_atomic_open(p, &w, &err), -1);
    expect_err(&err, p, "is a symbolic link: refusing to replace it (name the file it points to)");
    char *s = slurp(v);
    assert_string_equal(s, "precious");
    free(s);
    unlink(p);
    unlink(v);
}

/* item 10: a symlink planted at the fixed temporary name is never followed */
static void test_atomic_named_planted_symlink(void **state)
{
    (void)state;
    char p[512], v[512], t[600];
    in_dir(v, sizeof v, "victim2");
    put_file(v, "precious", 0644);
    in_dir(p, sizeof p, "s.xfs");
    snprintf(t, sizeof t, "%s.tmp", p);
    assert_int_equal(symlink(v, t), 0);
    xf_atomic w;
    xf_err err = {{0}};
    if (xf_atomic_open_named(p, ".tmp", &w, &err) != 0)
        fail_msg("%s", err.msg);
    struct stat st;
    assert_int_equal(lstat(t, &st), 0);
    assert_true(S_ISREG(st.st_mode)); /* a fresh file, not the link */
    assert_int_equal(xf_atomic_write(&w, "new", 3, &err), 0);
    assert_int_equal(xf_atomic_commit(&w, &err), 0);
    char *s = slurp(v);
    assert_string_equal(s, "precious");
    free(s);
    s = slurp(p);
    assert_string_equal(s, "new");
    free(s);
    assert_int_equal(lstat(t, &st), -1);
    unlink(p);
    unlink(v);
}

/* the mkstemp temporaries: a fresh name each time, never an existing file */
static void test_atomic_temp_is_fresh(void **state)
{
    (void)state;
    char p[512];
    in_dir(p, sizeof p, "b.txt");
    xf_atomic w1, w2;
    xf_err err = {{0}};
    assert_int_equal(xf_atomic_open(p, &w1, &err), 0);
    assert_int_equal(xf_atomic_open(p, &w2, &err), 0);
    assert_string_not_equal(w1.tmp, w2.tmp);
    assert_int_equal(count_prefix("b.txt."), 2);
    xf_atomic_abort(&w1);
    xf_atomic_abort(&w2);
    xf_atomic_abort(&w2); /* twice: a no-op */
    assert_int_equal(count_prefix("b.txt."), 0);
    assert_int_equal(access(p, F_OK), -1);
}

/* --replay --update on a 0444 file left it 0644: read-only is refused */
static void test_atomic_readonly_target_refused(void **state)
{
    (void)state;
    char p[512];
    in_dir(p, sizeof p, "ro.xfs");
    put_file(p, "keep", 0444);
    xf_atomic w;
    xf_err err = {{0}};
    assert_int_equal(xf_atomic_open(p, &w, &err), -1);
    expect_err(&err, p, "read-only (mode 0444): refusing to replace it");
    char *s = slurp(p);
    assert_string_equal(s, "keep");
    free(s);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0444);
    assert_int_equal(count_prefix("ro.xfs."), 0);
    chmod(p, 0644);
    unlink(p);
}

/* a directory where the temporary cannot be created; as root (which
 * ignores modes) the check runs in a child that drops to nobody */
static void test_atomic_readonly_dir(void **state)
{
    (void)state;
    char d[512], p[600];
    in_dir(d, sizeof d, "rodir");
    assert_int_equal(mkdir(d, 0555), 0);
    assert_int_equal(chmod(d, 0555), 0);
    snprintf(p, sizeof p, "%s/x.txt", d);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(3);
        xf_atomic w;
        xf_err err = {{0}};
        if (xf_atomic_open(p, &w, &err) != -1)
            _exit(4);
        char want[700];
        snprintf(want, sizeof want, "%s: cannot create a temporary file beside it: Permission denied", p);
        _exit(strcmp(err.msg, want) == 0 ? 0 : 5);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    rmdir(d);
}

/* ENOSPC/EIO at write: provoked with RLIMIT_FSIZE (EFBIG) in a child; the
 * error names the file, the temporary is removed, the target untouched */
static void test_atomic_write_error(void **state)
{
    (void)state;
    char p[512];
    in_dir(p, sizeof p, "big.bin");
    put_file(p, "old", 0644);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl = {4096, 4096};
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
            _exit(3);
        xf_atomic w;
        xf_err err = {{0}};
        if (xf_atomic_open(p, &w, &err) != 0)
            _exit(4);
        static char buf[8192];
        if (xf_atomic_write(&w, buf, sizeof buf, &err) != -1)
            _exit(5);
        char want[700];
        snprintf(want, sizeof want, "%s: write failed: File too large", p);
        if (strcmp(err.msg, want) != 0)
            _exit(6);
        if (xf_atomic_write(&w, "x", 1, &err) != -1 || xf_atomic_commit(&w, &err) != -1)
            _exit(7);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(count_prefix("big.bin."), 0);
    char *s = slurp(p);
    assert_string_equal(s, "old");
    free(s);
    unlink(p);
}

/* the rename fails (the target became a directory): temporary removed */
static void test_atomic_rename_error(void **state)
{
    (void)state;
    char p[512];
    in_dir(p, sizeof p, "later_dir");
    xf_atomic w;
    xf_err err = {{0}};
    assert_int_equal(xf_atomic_open(p, &w, &err), 0);
    assert_int_equal(xf_atomic_write(&w, "x", 1, &err), 0);
    assert_int_equal(mkdir(p, 0755), 0);
    assert_int_equal(mkdir(in_dir((char[600]){0}, 600, "later_dir/sub"), 0755), 0);
    assert_int_equal(xf_atomic_commit(&w, &err), -1);
    assert_non_null(strstr(err.msg, ": cannot rename "));
    assert_int_equal(count_prefix("later_dir."), 0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    assert_int_equal(system(cmd), 0);
}

/* --- locking ----------------------------------------------------------------- */

/* item 11: two writers of one path */
static void test_lock_two_lockers(void **state)
{
    (void)state;
    char p[512];
    in_dir(p, sizeof p, "rec.xfs");
    xf_lock a, b;
    xf_err err = {{0}};
    assert_int_equal(xf_lock_probe(p, NULL, 0), XF_LOCK_NONE);
    assert_int_equal(xf_lock_acquire(p, "recording to", &a, &err), 0);
    assert_int_equal(xf_lock_note(&a, "pid 1 writes rec.xfs.tmp\n", &err), 0);
    /* flock conflicts between two open files, even in one process */
    assert_int_equal(xf_lock_acquire(p, "recording to", &b, &err), -1);
    expect_err(&err, p, "another xfdb is recording to this file");
    assert_int_equal(b.fd, -1);
    char note[64];
    assert_int_equal(xf_lock_probe(p, note, sizeof note), XF_LOCK_HELD);
    assert_string_equal(note, "pid 1 writes rec.xfs.tmp");
    xf_lock_release(&a);
    assert_int_equal(xf_lock_probe(p, NULL, 0), XF_LOCK_NONE);
    assert_int_equal(xf_lock_acquire(p, "recording to", &b, &err), 0);
    xf_lock_release(&b);
    xf_lock_release(&b); /* twice: a no-op */
}

/* a holder killed without release leaves a stale lock file: the next
 * writer takes it over; the probe tells it from a live one */
static void test_lock_stale(void **state)
{
    (void)state;
    char p[512];
    in_dir(p, sizeof p, "dead.xfs");
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        xf_lock l;
        xf_err err = {{0}};
        _exit(xf_lock_acquire(p, "recording to", &l, &err) == 0 && xf_lock_note(&l, "gone\n", &err) == 0 ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(WEXITSTATUS(status), 0);
    char note[64];
    assert_int_equal(xf_lock_probe(p, note, sizeof note), XF_LOCK_STALE);
    assert_string_equal(note, "gone");
    xf_lock l;
    xf_err err = {{0}};
    assert_int_equal(xf_lock_acquire(p, "recording to", &l, &err), 0);
    xf_lock_release(&l);
    assert_int_equal(xf_lock_probe(p, NULL, 0), XF_LOCK_NONE);
}

static void test_lock_symlink_refused(void **state)
{
    (void)state;
    char p[512], lp[600], v[512];
    in_dir(p, sizeof p, "l.xfs");
    in_dir(v, sizeof v, "victim3");
    put_file(v, "precious", 0644);
    snprintf(lp, sizeof lp, "%s.lock", p);
    assert_int_equal(symlink(v, lp), 0);
    xf_lock l;
    xf_err err = {{0}};
    assert_int_equal(xf_lock_acquire(p, "recording to", &l, &err), -1);
    assert_non_null(strstr(err.msg, "cannot create the lock file"));
    char *s = slurp(v);
    assert_string_equal(s, "precious");
    free(s);
    unlink(lp);
    unlink(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_fifo_refused),
        cmocka_unit_test(test_read_dir_and_device_refused),
        cmocka_unit_test(test_read_regular),
        cmocka_unit_test(test_atomic_new_and_replace),
        cmocka_unit_test(test_atomic_device_target_refused),
        cmocka_unit_test(test_atomic_symlink_target_refused),
        cmocka_unit_test(test_atomic_named_planted_symlink),
        cmocka_unit_test(test_atomic_temp_is_fresh),
        cmocka_unit_test(test_atomic_readonly_target_refused),
        cmocka_unit_test(test_atomic_readonly_dir),
        cmocka_unit_test(test_atomic_write_error),
        cmocka_unit_test(test_atomic_rename_error),
        cmocka_unit_test(test_lock_two_lockers),
        cmocka_unit_test(test_lock_stale),
        cmocka_unit_test(test_lock_symlink_refused),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
