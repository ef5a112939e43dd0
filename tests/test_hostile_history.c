/* Issue 14, round three (files): the readline history, ~/.xfdb_history, is
 * a path xfdb reads at start and writes at exit. Before: a FIFO there blocked
 * the start forever (readline opens it without O_NONBLOCK: no prompt ever);
 * a symlink there was followed and its target rewritten with the commands
 * typed; and with HOME unset the history went to ./.xfdb_history in the
 * current directory (someone else's checkout). Now the history is kept only
 * in a regular file (or none yet) under an absolute HOME, anything else is
 * said once and left alone. Driven in a pseudo-terminal as a person uses it. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#define WAIT_S 20.0

typedef struct term {
    int fd;
    pid_t pid;
    char scr[1 << 16];
    size_t len;
} term;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void pump(term *t, double wait)
{
    struct pollfd p = {.fd = t->fd, .events = POLLIN};
    if (poll(&p, 1, (int)(wait * 1000)) <= 0)
        return;
    char b[4096];
    ssize_t n = read(t->fd, b, sizeof b);
    if (n <= 0)
        return;
    size_t room = sizeof t->scr - 1 - t->len;
    size_t k = (size_t)n < room ? (size_t)n : room;
    memcpy(t->scr + t->len, b, k);
    t->len += k;
    t->scr[t->len] = 0;
}

/* waits until the screen after `from` holds `what`; false at the deadline */
static bool wait_for(term *t, size_t from, const char *what)
{
    double end = now_s() + WAIT_S;
    while (!strstr(t->scr + from, what)) {
        if (now_s() > end)
            return false;
        pump(t, 0.2);
    }
    return true;
}

static void keys(term *t, const char *s)
{
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(t->fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        assert_true(w > 0);
        s += w;
        n -= (size_t)w;
    }
}

/* xfdb in a pseudo-terminal, in dir, with HOME (NULL: unset) */
static void start(term *t, const char *dir, const char *home)
{
    memset(t, 0, sizeof *t);
    const char *xfdb = getenv("XFDB");
    if (!xfdb) {
        printf("# XFDB is not set (ctest sets it): skipped\n");
        exit(77);
    }
    char model[1024], inputrc[1024];
    tu_src_path(model, sizeof model, TU_MODEL);
    snprintf(inputrc, sizeof inputrc, "%s/inputrc", dir);
    FILE *f = fopen(inputrc, "w");
    assert_non_null(f);
    fputs("set enable-bracketed-paste off\nset bell-style none\n", f);
    fclose(f);
    struct winsize ws = {.ws_row = 40, .ws_col = 80};
    t->pid = forkpty(&t->fd, NULL, NULL, &ws);
    assert_true(t->pid >= 0);
    if (t->pid == 0) {
        if (chdir(dir) != 0)
            _exit(126);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGINT, SIG_DFL);
        setenv("TERM", "xterm", 1);
        setenv("NO_COLOR", "1", 1);
        setenv("INPUTRC", inputrc, 1);
        if (home)
            setenv("HOME", home, 1);
        else
            unsetenv("HOME");
        execl(xfdb, xfdb, model, "--backend", "cpu", "--threads", "1", (char *)NULL);
        _exit(127);
    }
}

/* the prompt comes, a command runs, quit ends it with status 0 */
static void session(term *t)
{
    bool prompt = wait_for(t, 0, "(xfdb");
    if (!prompt) {
        kill(t->pid, SIGKILL);
        waitpid(t->pid, NULL, 0);
        close(t->fd);
        fail_msg("no prompt in %.0f s (blocked on the history file?); the screen:\n%s", WAIT_S, t->scr);
    }
    size_t mark = t->len;
    keys(t, "tokenize hi\r");
    assert_true(wait_for(t, mark, "'hi'"));
    keys(t, "quit\r");
    double end = now_s() + WAIT_S;
    int st = 0;
    while (waitpid(t->pid, &st, WNOHANG) == 0) {
        if (now_s() > end) {
            kill(t->pid, SIGKILL);
            waitpid(t->pid, &st, 0);
            fail_msg("xfdb did not quit; the screen:\n%s", t->scr);
        }
        pump(t, 0.1);
    }
    pump(t, 0.1);
    close(t->fd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void mkdir_tmp(char *dir, size_t size)
{
    snprintf(dir, size, "%s/xfdb-hist-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(dir));
}

static void rm_rf(const char *dir)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static char *slurp(const char *path)
{
    static char buf[4096];
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return buf;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

static void test_history_fifo(void **state)
{
    (void)state;
    char dir[512], h[600];
    mkdir_tmp(dir, sizeof dir);
    snprintf(h, sizeof h, "%s/.xfdb_history", dir);
    assert_int_equal(mkfifo(h, 0600), 0);
    term t;
    start(&t, dir, dir);
    session(&t);
    struct stat st;
    assert_int_equal(lstat(h, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    assert_non_null(strstr(t.scr, "not a regular file: command history is not kept"));
    rm_rf(dir);
}

static void test_history_symlink(void **state)
{
    (void)state;
    char dir[512], h[600], victim[600];
    mkdir_tmp(dir, sizeof dir);
    snprintf(h, sizeof h, "%s/.xfdb_history", dir);
    snprintf(victim, sizeof victim, "%s/victim", dir);
    FILE *f = fopen(victim, "w");
    assert_non_null(f);
    fputs("precious\n", f);
    fclose(f);
    assert_int_equal(symlink(victim, h), 0);
    term t;
    start(&t, dir, dir);
    session(&t);
    assert_string_equal(slurp(victim), "precious\n");
    struct stat st;
    assert_int_equal(lstat(h, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_non_null(strstr(t.scr, "a symbolic link: command history is not kept"));
    rm_rf(dir);
}

static void test_history_no_home(void **state)
{
    (void)state;
    char dir[512], h[600];
    mkdir_tmp(dir, sizeof dir);
    snprintf(h, sizeof h, "%s/.xfdb_history", dir);
    term t;
    start(&t, dir, NULL);
    session(&t);
    assert_int_equal(access(h, F_OK), -1); /* not in the current directory */
    start(&t, dir, "relative/home");
    session(&t);
    assert_int_equal(access(h, F_OK), -1);
    rm_rf(dir);
}

static void test_history_regular_kept(void **state)
{
    (void)state;
    char dir[512], h[600];
    mkdir_tmp(dir, sizeof dir);
    snprintf(h, sizeof h, "%s/.xfdb_history", dir);
    term t;
    start(&t, dir, dir);
    session(&t);
    assert_non_null(strstr(slurp(h), "tokenize hi"));
    assert_null(strstr(t.scr, "history is not kept"));
    rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_history_fifo),
        cmocka_unit_test(test_history_symlink),
        cmocka_unit_test(test_history_no_home),
        cmocka_unit_test(test_history_regular_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
