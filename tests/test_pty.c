/* xfdb driven as a person drives it (issue 15): in a pseudo-terminal of
 * 80 columns (forkpty, TERM=xterm, no tmux), typing keys and reading the
 * screen. It types the README's tour as written there (the lines after
 * its prompts; Enter alone where a prompt has nothing after it) and checks
 * that the output lines the README shows appear, in order; Ctrl-C on a
 * typed line drops it; Enter after `run` repeats nothing; Ctrl-C in
 * `generate` says how far it got and the session goes on; Tab after
 * `kernel norm ` offers that op kind's variants, after NAME@ its sources,
 * and record, ablate, dump and patch their words and names; and no line that xfdb
 * printed during all this is wider than 80 columns. Every wait reads
 * until what it waits for shows up (the prompt, a word), with a deadline:
 * no sleep stands in for synchronization. */
#include <errno.h>
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "testutil.h"

#define WIDTH 80
#define WAIT_S 20.0 /* per wait: generous for a loaded CI machine; a pass takes ms */

typedef struct term {
    int fd;
    pid_t pid;
    char *scr;   /* what reached the screen, escape sequences and CRs removed */
    size_t len, cap;
    int esc;     /* escape-sequence state of the stripper */
    char dir[512];
} term;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void put(term *t, char c)
{
    if (t->len + 2 > t->cap) {
        t->cap = t->cap ? 2 * t->cap : 65536;
        t->scr = realloc(t->scr, t->cap);
        assert_non_null(t->scr);
    }
    t->scr[t->len++] = c;
    t->scr[t->len] = 0;
}

/* Keeps the text of the screen: drops CSI (ESC [ ... final), OSC (ESC ] ...
 * BEL or ST), two-byte escapes, CR, BEL and backspace. */
static void feed(term *t, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)b[i];
        switch (t->esc) {
        case 1: /* after ESC */
            t->esc = c == '[' ? 2 : c == ']' ? 3 : 0;
            continue;
        case 2: /* CSI: parameters until a final byte */
            if (c >= 0x40 && c <= 0x7e)
                t->esc = 0;
            continue;
        case 3: /* OSC: until BEL or ESC \ */
            if (c == 7)
                t->esc = 0;
            else if (c == 0x1b)
                t->esc = 1;
            continue;
        default:
            break;
        }
        if (c == 0x1b)
            t->esc = 1;
        else if (c != '\r' && c != 7 && c != 8)
            put(t, (char)c);
    }
}

/* Reads what is there within `wait` seconds (0: only what is ready now). */
static bool pump(term *t, double wait)
{
    struct pollfd p = {.fd = t->fd, .events = POLLIN};
    int rc = poll(&p, 1, (int)(wait * 1000));
    if (rc <= 0)
        return false;
    char b[4096];
    ssize_t n = read(t->fd, b, sizeof b);
    if (n <= 0)
        return false;
    feed(t, b, (size_t)n);
    return true;
}

/* the screen from `from` ends with a prompt "(xfdb...) " on a line of its own */
static bool ends_with_prompt(const term *t, size_t from)
{
    if (t->len < from + 2 || strcmp(t->scr + t->len - 2, ") ") != 0)
        return false;
    const char *nl = NULL;
    for (const char *p = t->scr + t->len; p > t->scr + from; p--)
        if (p[-1] == '\n') {
            nl = p;
            break;
        }
    if (!nl && (from == 0 || t->scr[from - 1] == '\n'))
        nl = t->scr + from; /* the prompt is the first thing after the mark */
    return nl && strncmp(nl, "(xfdb", 5) == 0;
}

/* Waits until the screen after `from` holds `what` (NULL: a new prompt). */
static void wait_for(term *t, size_t from, const char *what)
{
    double end = now_s() + WAIT_S;
    while (!(what ? strstr(t->scr ? t->scr + from : "", what) != NULL : ends_with_prompt(t, from))) {
        if (now_s() > end)
            fail_msg("waited %.0f s for %s; the screen after the mark:\n%s", WAIT_S,
                     what ? what : "a prompt", t->scr ? t->scr + from : "");
        pump(t, 0.2);
    }
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

/* Types a line and Enter; waits for the next prompt. The screen offset
 * where the line's output starts (after its echo). */
/* types line and Enter, and returns where its output starts, without
 * waiting for the command to end (a test that presses Ctrl-C mid-command) */
static size_t type_start(term *t, const char *line)
{
    size_t mark = t->len;
    keys(t, line);
    keys(t, "\r");
    /* the echo ends with the line break Enter gives */
    wait_for(t, mark, "\n");
    return (size_t)(strchr(t->scr + mark, '\n') - t->scr) + 1;
}

static size_t type_line(term *t, const char *line)
{
    size_t out = type_start(t, line);
    wait_for(t, out, NULL);
    return out;
}

static void term_start(term *t)
{
    memset(t, 0, sizeof *t);
    const char *xfdb = getenv("XFDB");
    if (!xfdb) {
        printf("# XFDB is not set (ctest sets it): skipped\n");
        exit(77);
    }
    snprintf(t->dir, sizeof t->dir, "%s/xfdb-pty-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(t->dir));
    char inputrc[600];
    snprintf(inputrc, sizeof inputrc, "%s/inputrc", t->dir);
    FILE *f = fopen(inputrc, "w");
    assert_non_null(f);
    /* no bracketed paste: the keys typed here are keys, and the screen stays plain */
    fputs("set enable-bracketed-paste off\nset bell-style none\n", f);
    fclose(f);
    struct winsize ws = {.ws_row = 40, .ws_col = WIDTH};
    t->pid = forkpty(&t->fd, NULL, NULL, &ws);
    assert_true(t->pid >= 0);
    if (t->pid == 0) {
        if (chdir(XF_SOURCE_DIR) != 0)
            _exit(126);
        /* as a shell starts a program: no signal blocked or ignored (cmocka's may be) */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGINT, SIG_DFL);
        setenv("TERM", "xterm", 1);
        setenv("COLUMNS", "80", 1);
        setenv("LINES", "40", 1);
        setenv("NO_COLOR", "1", 1);
        setenv("HOME", t->dir, 1); /* the history file goes there */
        setenv("INPUTRC", inputrc, 1);
        unsetenv("XFDB_MODEL");
        execl(xfdb, xfdb, "--backend", "cpu", "--threads", "1", (char *)NULL);
        _exit(127);
    }
    wait_for(t, 0, NULL);
}

static void term_stop(term *t)
{
    keys(t, "quit\r");
    double end = now_s() + WAIT_S;
    int st = 0;
    while (waitpid(t->pid, &st, WNOHANG) == 0) {
        if (now_s() > end) {
            kill(t->pid, SIGKILL);
            waitpid(t->pid, &st, 0);
            fail_msg("xfdb did not quit");
        }
        pump(t, 0.1);
    }
    close(t->fd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->dir);
    assert_int_equal(system(cmd), 0);
    free(t->scr);
}

/* No line xfdb printed is wider than the terminal. Lines that start with
 * the prompt hold what was typed (the terminal wraps those, as any shell's). */
static void check_width(const term *t)
{
    const char *s = t->scr;
    while (s && *s) {
        const char *e = strchr(s, '\n');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        size_t cols = 0;
        for (size_t i = 0; i < n; i++)
            cols += ((unsigned char)s[i] & 0xc0) != 0x80; /* code points */
        if (strncmp(s, "(xfdb", 5) != 0 && cols > WIDTH)
            fail_msg("a line of %zu columns at %d:\n%.*s", cols, WIDTH, (int)n, s);
        s = e ? e + 1 : NULL;
    }
}

/* --- the README tour ------------------------------------------------------------- */

typedef struct tour_line {
    char *typed;  /* what follows the prompt ("" for Enter alone), or NULL for output */
    char *text;
} tour_line;

/* The indented block under "## A short tour": prompt lines are typed, the
 * others are output that must appear; the `$` line starts xfdb. */
static int read_tour(tour_line *lines, int cap)
{
    char path[1024];
    FILE *f = fopen(tu_src_path(path, sizeof path, "README.md"), "r");
    assert_non_null(f);
    char buf[1024];
    bool in = false;
    int n = 0;
    while (fgets(buf, sizeof buf, f)) {
        buf[strcspn(buf, "\n")] = 0;
        if (strncmp(buf, "## ", 3) == 0)
            in = strcmp(buf, "## A short tour") == 0;
        if (!in || strncmp(buf, "    ", 4) != 0 || strncmp(buf + 4, "$ ", 2) == 0)
            continue;
        assert_true(n < cap);
        const char *s = buf + 4;
        if (strncmp(s, "(xfdb", 5) == 0 && s[strlen(s) - 1] == ')') {
            lines[n].typed = strdup(""); /* a prompt and nothing typed: Enter */
            lines[n].text = strdup(s);
        } else if (strncmp(s, "(xfdb", 5) == 0) {
            const char *p = strstr(s, ") ");
            assert_non_null(p);
            lines[n].typed = strdup(p + 2);
            lines[n].text = strdup(s);
        } else {
            lines[n].typed = NULL;
            lines[n].text = strdup(s);
        }
        n++;
    }
    fclose(f);
    return n;
}

static void test_readme_tour(void **state)
{
    (void)state;
    tour_line lines[128];
    int n = read_tour(lines, 128);
    assert_true(n > 10);
    term t;
    term_start(&t);
    size_t out = t.len, seen = 0;
    for (int i = 0; i < n; i++) {
        if (lines[i].typed) {
            /* the prompt the README shows is the one on the screen */
            char want[256];
            snprintf(want, sizeof want, "%.*s", (int)(strstr(lines[i].text, ")") - lines[i].text + 1),
                     lines[i].text);
            const char *last = strrchr(t.scr, '\n');
            if (!last || strncmp(last + 1, want, strlen(want)) != 0)
                fail_msg("before typing '%s' the README shows the prompt %s, the screen:\n%s", lines[i].typed,
                         want, t.scr + out);
            out = type_line(&t, lines[i].typed);
            seen = out;
        } else {
            /* an output line the README shows: there, in order, since the line typed before it */
            char *at = strstr(t.scr + seen, lines[i].text);
            if (!at)
                fail_msg("the README shows '%s'; the screen after its command:\n%s", lines[i].text, t.scr + out);
            seen = (size_t)(at - t.scr) + strlen(lines[i].text);
        }
        free(lines[i].typed);
        free(lines[i].text);
    }
    check_width(&t);
    term_stop(&t);
}

/* --- keys ------------------------------------------------------------------------- */

static void test_ctrl_c_drops_the_line(void **state)
{
    (void)state;
    term t;
    term_start(&t);
    type_line(&t, "run \"ROMEO:\"");
    type_line(&t, "step");
    /* typed, not entered, then Ctrl-C: ^C, a new line, a new prompt, and the line is gone */
    size_t mark = t.len;
    keys(&t, "step 7");
    wait_for(&t, mark, "step 7");
    keys(&t, "\x03");
    wait_for(&t, mark, "^C\n");
    wait_for(&t, mark, NULL);
    /* Enter now runs nothing: neither the dropped line nor the step before it */
    size_t o = type_line(&t, "");
    const char *after = t.scr + o;
    if (strstr(after, "at op"))
        fail_msg("Enter after Ctrl-C ran a command:\n%s", after);
    o = type_line(&t, "where");
    assert_non_null(strstr(t.scr + o, "at op 1/93 embd"));
    check_width(&t);
    term_stop(&t);
}

static void test_enter_after_run(void **state)
{
    (void)state;
    term t;
    term_start(&t);
    type_line(&t, "run \"ROMEO:\"");
    type_line(&t, "continue");
    size_t o = type_line(&t, "run \"ROMEO: What\"");
    assert_non_null(strstr(t.scr + o, "pass 2: "));
    /* Enter repeats only step/next/continue/token right after themselves: not across run */
    o = type_line(&t, "");
    if (strstr(t.scr + o, "pass 2 complete") || strstr(t.scr + o, "breakpoint"))
        fail_msg("Enter after run repeated the continue typed before it:\n%s", t.scr + o);
    assert_true(ends_with_prompt(&t, o));
    assert_non_null(strstr(t.scr + o, "(xfdb before embd) "));
    /* and right after step it does repeat */
    type_line(&t, "step");
    o = type_line(&t, "");
    assert_non_null(strstr(t.scr + o, "at op 2/93"));
    term_stop(&t);
}

static void test_ctrl_c_in_generate(void **state)
{
    (void)state;
    term t;
    term_start(&t);
    type_line(&t, "kernel all ref"); /* slow kernels: time to press Ctrl-C mid-generation */
    type_line(&t, "run \"ROMEO:\"");
    size_t out = type_start(&t, "generate 200 --ignore-eos --ids");
    /* some ids have come: it is generating */
    wait_for(&t, out, " ");
    keys(&t, "\x03");
    wait_for(&t, out, NULL);
    const char *s = t.scr + out;
    if (!strstr(s, "stopped at token ") || !strstr(s, " of 200 (Ctrl-C)"))
        fail_msg("Ctrl-C in generate 200 said:\n%s", s);
    if (strstr(s, "after nothing"))
        fail_msg("'interrupted after nothing':\n%s", s);
    /* the session goes on: another generate works */
    type_line(&t, "kernel all opt");
    size_t o = type_line(&t, "generate 3 --ids");
    int a, b, c;
    assert_int_equal(sscanf(t.scr + o, "%d %d %d", &a, &b, &c), 3);
    check_width(&t);
    term_stop(&t);
}

/* Ctrl-C during profile: an error naming where the pass stopped, never a
 * table of part of the pass (it would read as the whole pass's times) */
static void test_ctrl_c_in_profile(void **state)
{
    (void)state;
    term t;
    term_start(&t);
    type_line(&t, "kernel all ref"); /* slow kernels: profile runs for seconds */
    char run[1200] = "run --tokens ";
    for (int i = 0; i < 200; i++)
        snprintf(run + strlen(run), sizeof run - strlen(run), "%s%d", i ? "," : "", 10 + i % 50);
    type_line(&t, run);
    size_t out = type_start(&t, "profile");
    pump(&t, 0.3); /* into the pass */
    keys(&t, "\x03");
    wait_for(&t, out, NULL);
    const char *s = t.scr + out;
    if (!strstr(s, "profile: interrupted (Ctrl-C) after op ") || !strstr(s, "; no table"))
        fail_msg("Ctrl-C in profile said:\n%s", s);
    /* the error on a line of its own, not glued to the "^C" the terminal echoed */
    if (!strstr(s, "\nerror: profile: interrupted"))
        fail_msg("the error does not start a line after Ctrl-C:\n%s", s);
    if (strstr(s, "op kind"))
        fail_msg("a table of part of the pass:\n%s", s);
    /* the pass stands where it stopped (`finish` would go on from there) */
    size_t o = type_line(&t, "where");
    if (!strstr(t.scr + o, "at op "))
        fail_msg("where after the interrupted profile said:\n%s", t.scr + o);
    check_width(&t);
    term_stop(&t);
}

static void test_tab_completion(void **state)
{
    (void)state;
    term t;
    term_start(&t);
    /* `kernel norm <TAB><TAB>` lists the variants of norm, not op kinds */
    size_t mark = t.len;
    keys(&t, "kernel norm \t\t");
    wait_for(&t, mark, "ref");
    pump(&t, 0.2);
    if (!strstr(t.scr + mark, "opt") || strstr(t.scr + mark, "matmul"))
        fail_msg("kernel norm <TAB><TAB> offered:\n%s", t.scr + mark);
    keys(&t, "\x03");
    wait_for(&t, mark, NULL);
    /* a unique variant completes; the command then runs */
    size_t o = type_line(&t, "kernel norm r\t");
    assert_non_null(strstr(t.scr + o, "norm -> ref"));
    /* an alias completes as a command, and info's sub-words complete */
    o = type_line(&t, "inf\t br\t");
    assert_non_null(strstr(t.scr + o, "no breakpoints"));
    term_stop(&t);
}

/* attack26 T9: NAME@ is one word to readline (its sources complete);
 * `record` offers `stop` beside the files; ablate, dump and patch complete
 * their tensor names (and patch its `from`). Each line runs after Tab. */
static void test_tab_sources_and_names(void **state)
{
    (void)state;
    term t;
    term_start(&t);
    type_line(&t, "run \"ROMEO:\"");
    type_line(&t, "finish");
    size_t o = type_line(&t, "print blk.2.out@c\t");
    if (!strstr(t.scr + o, "blk.2.out@cpu ["))
        fail_msg("print blk.2.out@c<TAB> ran:\n%s", t.scr + o);
    size_t mark = t.len;
    keys(&t, "record \t\t");
    wait_for(&t, mark, "stop");
    wait_for(&t, mark, "sessions");
    keys(&t, "\x03");
    wait_for(&t, mark, NULL);
    o = type_line(&t, "record st\t");
    assert_non_null(strstr(t.scr + o, "record: not recording"));
    o = type_line(&t, "ablate blk.2.f\t");
    if (!strstr(t.scr + o, "ablate: blk.2.ffn_out was already read"))
        fail_msg("ablate blk.2.f<TAB> ran:\n%s", t.scr + o);
    char line[800];
    snprintf(line, sizeof line, "dump blk.2.ou\t %s/x.safetensors", t.dir);
    o = type_line(&t, line);
    if (!strstr(t.scr + o, "wrote 1 tensors"))
        fail_msg("dump blk.2.ou<TAB> ran:\n%s", t.scr + o);
    snprintf(line, sizeof line, "patch blk.2.ou\t fr\t %s/x.safetensors", t.dir);
    o = type_line(&t, line);
    if (!strstr(t.scr + o, "patch: blk.2.out was already read"))
        fail_msg("patch blk.2.ou<TAB> fr<TAB> ran:\n%s", t.scr + o);
    check_width(&t); /* the long ablate/patch refusals wrap on a terminal (session 26) */
    term_stop(&t);
}

/* generate ends with a tokens/s line at the prompt; a recording made at
 * the prompt does not hold it, and replays */
static void test_rate_not_recorded(void **state)
{
    (void)state;
    term t;
    term_start(&t);
    char xfs[700], cmd[800];
    snprintf(xfs, sizeof xfs, "%s/rate.xfs", t.dir);
    snprintf(cmd, sizeof cmd, "record %s", xfs);
    type_line(&t, cmd);
    type_line(&t, "run \"ROMEO:\"");
    size_t o = type_line(&t, "generate 4");
    assert_non_null(strstr(t.scr + o, "[4 tokens in "));
    assert_non_null(strstr(t.scr + o, " tokens/s]"));
    type_line(&t, "record stop");
    FILE *f = fopen(xfs, "r");
    assert_non_null(f);
    char line[512];
    bool has_generate = false;
    while (fgets(line, sizeof line, f)) {
        has_generate |= strncmp(line, "> generate 4", 12) == 0;
        if (strstr(line, "tokens/s"))
            fail_msg("the recording holds the rate: %s", line);
    }
    fclose(f);
    assert_true(has_generate);
    /* from the source tree, where the recorded model path (models/...) is */
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' --replay '%s' >/dev/null 2>&1", XF_SOURCE_DIR, getenv("XFDB"), xfs);
    assert_int_equal(system(cmd), 0);
    term_stop(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_readme_tour),           cmocka_unit_test(test_ctrl_c_drops_the_line),
        cmocka_unit_test(test_enter_after_run),       cmocka_unit_test(test_ctrl_c_in_generate),
        cmocka_unit_test(test_ctrl_c_in_profile),     cmocka_unit_test(test_tab_completion),
        cmocka_unit_test(test_tab_sources_and_names), cmocka_unit_test(test_rate_not_recorded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
