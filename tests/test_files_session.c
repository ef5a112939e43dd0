/* engine/session as a file format and a file writer (issue 14): the escape
 * round-trips every byte (item 14: a recorded 0xFF 0xFE replayed as a
 * different command), the recorder refuses devices, symlinks and read-only
 * targets (item 9), never follows a planted PATH.tmp (item 10), refuses a
 * second recorder of the same path (item 11), leaves nothing behind when the
 * rename fails (item 12), keeps the mode of the file it replaces, and a
 * FIFO given as a session does not block (item 15). */
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "session.h"
#include "sha256.h"
#include "testutil.h"

#define SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static const xf_session_header k_h = {.model_name = "m.gguf", .model_sha256 = SHA, .backend = "cpu",
                                      .tol_rel = 1e-5, .tol_abs = 1e-7};

static xf_session_writer *open_w(const char *path)
{
    xf_err err = {{0}};
    xf_session_writer *w = session_writer_open(path, &k_h, &err);
    if (!w)
        fail_msg("%s", err.msg);
    return w;
}

static void close_w(xf_session_writer *w)
{
    xf_err err = {{0}};
    if (session_writer_close(w, &err) != 0)
        fail_msg("%s", err.msg);
}

static xf_session *load(const char *path)
{
    xf_err err = {{0}};
    xf_session *s = session_load(path, &err);
    if (!s)
        fail_msg("%s", err.msg);
    return s;
}

/* --- the escape ---------------------------------------------------------------- */

static void expect_round_trip(const char *raw, size_t n)
{
    char *e = session_escape(raw, n);
    assert_non_null(e);
    size_t m;
    char *d = session_unescape(e, strlen(e), &m);
    assert_non_null(d);
    if (m != n || memcmp(d, raw, n) != 0) {
        char hx[400] = "";
        for (size_t i = 0, o = 0; i < n && o + 4 < sizeof hx; i++)
            o += (size_t)snprintf(hx + o, sizeof hx - o, "%02x ", (unsigned char)raw[i]);
        fail_msg("round trip of [%s] through '%s' gave %zu bytes", hx, e, m);
    }
    free(e);
    free(d);
}

/* every byte value alone, after a backslash, before one, and around an 'x'
 * and hex digits (the cases an escape could swallow) */
static void test_escape_all_bytes(void **state)
{
    (void)state;
    for (int b = 1; b < 256; b++) {
        char c = (char)b;
        char v[8][6] = {{c}, {'\\', c}, {c, '\\'}, {'\\', 'x', c}, {'\\', c, '4', '1'}, {c, 'x', '4', '1'},
                        {'\\', '\\', c}, {c, '\\', 'x', 'f', 'f'}};
        size_t len[8] = {1, 2, 2, 3, 4, 4, 3, 5};
        for (int k = 0; k < 8; k++)
            expect_round_trip(v[k], len[k]);
    }
    /* random strings over the alphabet that matters */
    static const char alpha[] = {'\\', 'x', '4', '1', 'f', 'F', (char)0xff, (char)0xfe, 0x01, 'a', (char)0xc3,
                                 (char)0xa9, '\t', 0x7f};
    uint64_t st = 0x1234567;
    for (int it = 0; it < 20000; it++) {
        char buf[16];
        size_t n = tu_rand_u64(&st) % sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = alpha[tu_rand_u64(&st) % sizeof alpha];
        expect_round_trip(buf, n);
    }
    /* escaping is stable through a read and a rewrite (--update) */
    const char raw[] = "a\\xff\\\\ \xff\xfe \\n";
    char *e1 = session_escape(raw, sizeof raw - 1);
    size_t m;
    char *d = session_unescape(e1, strlen(e1), &m);
    char *e2 = session_escape(d, m);
    assert_string_equal(e1, e2);
    free(e1);
    free(d);
    free(e2);
    /* readable where nothing is ambiguous: the \n of a command stays as typed */
    e1 = session_escape("run \"A\\nB\"", 10);
    assert_string_equal(e1, "run \"A\\nB\"");
    free(e1);
}

/* item 14: a command holding 0xFF 0xFE (or any control byte) replays as
 * recorded; every byte value through a real file */
static void test_recorded_bytes_replay_as_recorded(void **state)
{
    (void)state;
    char path[256];
    tu_tmp_path(path, sizeof path, ".xfs");
    xf_session_writer *w = open_w(path);
    xf_err err = {{0}};
    char cmd[260], out[260];
    int nc = 0;
    for (int b = 1; b < 256; b++) {
        if (b == '\n')
            continue;
        /* "print " + the byte + a backslash and an x around it */
        int n = snprintf(cmd, sizeof cmd, "print \\%cx41\\", (char)b);
        assert_true(n > 0);
        memcpy(out, cmd, (size_t)n);
        out[n] = '\n';
        assert_int_equal(session_writer_entry(w, cmd, out, (size_t)n + 1, NULL, 0, false, &err), 0);
        nc++;
    }
    assert_int_equal(session_writer_entry(w, "echo \xff\xfe", "\xff\xfe\n", 3, NULL, 0, false, &err), 0);
    assert_int_equal(session_writer_entry(w, "nul", "a\0b\n", 4, NULL, 0, false, &err), 0);
    close_w(w);
    xf_session *s = load(path);
    assert_int_equal(s->n_entries, nc + 2);
    int k = 0;
    for (int b = 1; b < 256; b++) {
        if (b == '\n')
            continue;
        snprintf(cmd, sizeof cmd, "print \\%cx41\\", (char)b);
        const xf_session_entry *e = &s->entries[k++];
        /* the parser trims blanks at a command's ends: not part of this test */
        if (b == ' ' || b == '\t')
            continue;
        assert_string_equal(e->cmd, cmd);
        assert_int_equal(e->n_out, 1);
        assert_string_equal(e->out[0].text, cmd);
        /* what replay compares: the output as split, against the line as read */
        char **got;
        int n = session_split_output(cmd, strlen(cmd), &got);
        assert_int_equal(n, 1);
        assert_true(session_line_match(e->out[0].text, got[0], 1e-5, 1e-7, NULL));
        session_lines_free(got, n);
    }
    assert_string_equal(s->entries[nc].cmd, "echo \xff\xfe");
    assert_string_equal(s->entries[nc].out[0].text, "\xff\xfe");
    /* a NUL cannot live in a C string: it reads back, and splits, as U+FFFD */
    assert_string_equal(s->entries[nc + 1].out[0].text, "a\xef\xbf\xbd" "b");
    char **got;
    int n = session_split_output("a\0b\n", 4, &got);
    assert_string_equal(got[0], s->entries[nc + 1].out[0].text);
    session_lines_free(got, n);
    session_free(s);
    /* the file itself stays UTF-8 text with no control byte but '\n' */
    FILE *f = fopen(path, "rb");
    int c;
    while ((c = fgetc(f)) != EOF)
        assert_true(c == '\n' || c == '\t' || (c >= 0x20 && c != 0x7f && c != 0xff && c != 0xfe));
    fclose(f);
    unlink(path);
}

/* an escaped line end in a command is no recording: refused, with where */
static void test_command_line_end_refused(void **state)
{
    (void)state;
    const char text[] = "# xfdb session 1\n# model: m.gguf sha256 " SHA "\n> run a\\x0ab\n# end: 1 commands\n";
    xf_err err = {{0}};
    assert_null(session_parse("t.xfs", text, sizeof text - 1, &err));
    char want[200];
    snprintf(want, sizeof want, "t.xfs: line 3 at byte %zu: a command cannot hold a line end (\\x0a)",
             (size_t)(strstr(text, "run a") - text));
    assert_string_equal(err.msg, want);
}

/* --- the recorder as a file writer ------------------------------------------------ */

static void expect_open_refused(const char *path, const char *tail)
{
    xf_err err = {{0}};
    assert_null(session_writer_open(path, &k_h, &err));
    char want[700];
    snprintf(want, sizeof want, "%s: %s", path, tail);
    assert_string_equal(err.msg, want);
}

/* item 9: `--record /dev/full` replaced the device node with a file */
static void test_record_to_device_refused(void **state)
{
    (void)state;
    if (access("/dev/full", F_OK) == 0)
        expect_open_refused("/dev/full", "not a regular file: refusing to replace it");
    expect_open_refused("/dev/null", "not a regular file: refusing to replace it");
    struct stat st;
    assert_int_equal(stat("/dev/null", &st), 0);
    assert_true(S_ISCHR(st.st_mode));
    /* no lock file left beside the device either */
    assert_int_not_equal(access("/dev/null.lock", F_OK), 0);
}

static void test_record_symlink_and_readonly_refused(void **state)
{
    (void)state;
    char path[256], victim[256];
    tu_tmp_path(path, sizeof path, ".xfs");
    tu_tmp_path(victim, sizeof victim, ".victim");
    FILE *f = fopen(victim, "w");
    fputs("precious", f);
    fclose(f);
    assert_int_equal(symlink(victim, path), 0);
    expect_open_refused(path, "is a symbolic link: refusing to replace it (name the file it points to)");
    unlink(path);
    /* --replay --update of a 0444 session rewrote it as 0644 */
    f = fopen(path, "w");
    fputs("x", f);
    fclose(f);
    chmod(path, 0444);
    expect_open_refused(path, "read-only (mode 0444): refusing to replace it");
    chmod(path, 0644);
    unlink(path);
    unlink(victim);
}

/* item 10: a symlink planted at PATH.tmp was followed (fopen "w") */
static void test_record_planted_tmp_not_followed(void **state)
{
    (void)state;
    char path[256], tmp[300], victim[256];
    tu_tmp_path(path, sizeof path, ".xfs");
    tu_tmp_path(victim, sizeof victim, ".victim");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(victim, "w");
    fputs("precious", f);
    fclose(f);
    assert_int_equal(symlink(victim, tmp), 0);
    xf_session_writer *w = open_w(path);
    xf_err err = {{0}};
    assert_int_equal(session_writer_entry(w, "run", "x\n", 2, NULL, 0, false, &err), 0);
    close_w(w);
    char buf[32] = "";
    f = fopen(victim, "r");
    assert_non_null(fgets(buf, sizeof buf, f));
    fclose(f);
    assert_string_equal(buf, "precious");
    xf_session *s = load(path);
    assert_int_equal(s->n_entries, 1);
    session_free(s);
    unlink(path);
    unlink(victim);
}

/* item 11: two recorders of one file interleaved into one that cannot replay */
static void test_record_twice_refused(void **state)
{
    (void)state;
    char path[256];
    tu_tmp_path(path, sizeof path, ".xfs");
    xf_session_writer *w = open_w(path);
    expect_open_refused(path, "another xfdb is recording to this file");
    xf_err err = {{0}};
    assert_int_equal(session_writer_entry(w, "run", "x\n", 2, NULL, 0, false, &err), 0);
    close_w(w);
    /* free again once the first is done */
    w = open_w(path);
    close_w(w);
    xf_session *s = load(path);
    assert_true(s->complete);
    session_free(s);
    unlink(path);
}

/* item 12: a failed rename left PATH.tmp complete, which the next replay
 * reported as a crashed recording */
static void test_record_rename_fails_leaves_nothing(void **state)
{
    (void)state;
    char path[256], tmp[300], lock[300], sub[300];
    tu_tmp_path(path, sizeof path, ".xfs");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    snprintf(lock, sizeof lock, "%s.lock", path);
    snprintf(sub, sizeof sub, "%s/x", path);
    xf_session_writer *w = open_w(path);
    /* the target becomes a non-empty directory: rename(2) must fail */
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(mkdir(sub, 0755), 0);
    xf_err err = {{0}};
    assert_int_equal(session_writer_close(w, &err), -1);
    assert_non_null(strstr(err.msg, ": cannot rename "));
    assert_int_not_equal(access(tmp, F_OK), 0);
    assert_int_not_equal(access(lock, F_OK), 0);
    rmdir(sub);
    rmdir(path);
}

static void test_record_keeps_mode(void **state)
{
    (void)state;
    char path[256];
    tu_tmp_path(path, sizeof path, ".xfs");
    close_w(open_w(path));
    assert_int_equal(chmod(path, 0640), 0);
    close_w(open_w(path));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    unlink(path);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "session_load blocked on a FIFO\n";
    if (write(2, m, sizeof m - 1) < 0) /* nothing more to do in a signal handler */
        _exit(124);
    _exit(1);
}

/* item 15: `--replay FIFO` blocked in open(2) */
static void test_load_fifo(void **state)
{
    (void)state;
    char path[256];
    tu_tmp_path(path, sizeof path, ".xfs");
    assert_int_equal(mkfifo(path, 0600), 0);
    signal(SIGALRM, on_alarm);
    alarm(5);
    xf_err err = {{0}};
    assert_null(session_load(path, &err));
    alarm(0);
    char want[300];
    snprintf(want, sizeof want, "%s: not a regular file", path);
    assert_string_equal(err.msg, want);
    /* the model's hash (record, replay) reads through the same door */
    char hex[65];
    alarm(5);
    assert_int_equal(sha256_file_hex(path, hex, &err), -1);
    alarm(0);
    assert_string_equal(err.msg, want);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_all_bytes),
        cmocka_unit_test(test_recorded_bytes_replay_as_recorded),
        cmocka_unit_test(test_command_line_end_refused),
        cmocka_unit_test(test_record_to_device_refused),
        cmocka_unit_test(test_record_symlink_and_readonly_refused),
        cmocka_unit_test(test_record_planted_tmp_not_followed),
        cmocka_unit_test(test_record_twice_refused),
        cmocka_unit_test(test_record_rename_fails_leaves_nothing),
        cmocka_unit_test(test_record_keeps_mode),
        cmocka_unit_test(test_load_fifo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
