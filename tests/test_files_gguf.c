/* engine/gguf as a file reader (issue 14): tensor data ranges that overlap
 * (item 17), a model file truncated or rewritten after load (item 3: SIGBUS
 * through the old mmap; now a copy plus gguf_check_unchanged), and a FIFO
 * given as the model (item 15: the open blocked forever). */
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

#include "gguf.h"
#include "gguf_writer.h"
#include "model.h"
#include "quant.h"
#include "testutil.h"

/* two F32 tensors a [8] and b [8] */
static gguf_writer *two_tensors(void)
{
    gguf_writer *w = gguf_writer_new(3, 32);
    assert_non_null(w);
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t ne[1] = {8};
    assert_int_equal(gguf_writer_add_tensor(w, "a", XF_TYPE_F32, 1, ne, x, sizeof x), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "b", XF_TYPE_F32, 1, ne, x, sizeof x), 0);
    return w;
}

/* byte offset of the offset field of the tensor info named name (1-D) */
static size_t offset_field(const uint8_t *b, size_t n, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 8; i + len + 4 + 8 + 4 + 8 <= n; i++) {
        uint64_t l;
        memcpy(&l, b + i - 8, 8);
        if (l == len && memcmp(b + i, name, len) == 0)
            return i + len + 4 + 8 + 4;
    }
    fail_msg("tensor info '%s' not found", name);
    return 0;
}

static void expect_overlap(uint64_t b_off, const char *want_tail)
{
    gguf_writer *w = two_tensors();
    uint8_t *buf;
    size_t n;
    xf_err err = {{0}};
    assert_int_equal(gguf_writer_to_mem(w, &buf, &n, &err), 0);
    gguf_writer_free(w);
    size_t fo = offset_field(buf, n, "b");
    memcpy(buf + fo, &b_off, 8);
    gguf_file *f = gguf_open_mem(buf, n, "o.gguf", &err);
    if (!want_tail) {
        if (!f)
            fail_msg("%s", err.msg);
        gguf_close(f);
    } else {
        assert_null(f);
        char want[512];
        snprintf(want, sizeof want, "o.gguf: tensor_info[1].offset at byte %zu: %s", fo, want_tail);
        assert_string_equal(err.msg, want);
    }
    free(buf);
}

/* item 17: llama.cpp refuses overlapping data; so do we, naming both */
static void test_overlapping_tensors(void **state)
{
    (void)state;
    expect_overlap(0, "the data of 'b' [0, 32) overlaps that of tensor_info[0] 'a' [0, 32) (offsets in the data "
                      "section)");
    /* the alignment is 32: the next possible start is adjacent, which is fine */
    expect_overlap(32, NULL);
}

/* b before a, overlapping its start: the order in the table does not matter */
static void test_overlap_out_of_order(void **state)
{
    (void)state;
    gguf_writer *w = gguf_writer_new(3, 32);
    float x[16] = {0};
    int64_t ne16[1] = {16}, ne8[1] = {8};
    assert_int_equal(gguf_writer_add_tensor(w, "a", XF_TYPE_F32, 1, ne8, x, 32), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "b", XF_TYPE_F32, 1, ne16, x, 64), 0);
    uint8_t *buf;
    size_t n;
    xf_err err = {{0}};
    assert_int_equal(gguf_writer_to_mem(w, &buf, &n, &err), 0);
    gguf_writer_free(w);
    /* a moves to 32, inside b [32, 96) once b moves to 0... b at 0: [0, 64), a at 32: [32, 64) */
    size_t fa = offset_field(buf, n, "a"), fb = offset_field(buf, n, "b");
    uint64_t oa = 32, ob = 0;
    memcpy(buf + fa, &oa, 8);
    memcpy(buf + fb, &ob, 8);
    assert_null(gguf_open_mem(buf, n, "o.gguf", &err));
    char want[512];
    snprintf(want, sizeof want,
             "o.gguf: tensor_info[0].offset at byte %zu: the data of 'a' [32, 64) overlaps that of tensor_info[1] "
             "'b' [0, 64) (offsets in the data section)",
             fa);
    assert_string_equal(err.msg, want);
    free(buf);
}

static void save(gguf_writer *w, const char *path)
{
    xf_err err = {{0}};
    if (gguf_writer_save(w, path, &err) != 0)
        fail_msg("%s", err.msg);
    gguf_writer_free(w);
}

/* item 3: truncated on disk after open. With the map, the next read of a
 * weight was SIGBUS; now the data is ours and the change is reported. */
static void test_truncated_after_open(void **state)
{
    (void)state;
    char p[512];
    tu_tmp_path(p, sizeof p, ".gguf");
    save(two_tensors(), p);
    xf_err err = {{0}};
    gguf_file *f = gguf_open(p, &err);
    assert_non_null(f);
    assert_int_equal(gguf_check_unchanged(f, &err), 0);
    assert_int_equal(truncate(p, 0), 0);
    const gguf_tensor *t = gguf_find_tensor(f, "b");
    assert_non_null(t);
    float v[8];
    memcpy(v, t->data, sizeof v); /* SIGBUS here before */
    assert_true(v[7] == 8.0f);
    assert_int_equal(gguf_check_unchanged(f, &err), -1);
    char want[700];
    snprintf(want, sizeof want, "%s: the file changed on disk since it was loaded (its size changed); load it again",
             p);
    assert_string_equal(err.msg, want);
    gguf_close(f);
    unlink(p);
}

static void test_changed_after_open(void **state)
{
    (void)state;
    char p[512], q[600], want[800];
    tu_tmp_path(p, sizeof p, ".gguf");
    save(two_tensors(), p);
    xf_err err = {{0}};
    gguf_file *f = gguf_open(p, &err);
    assert_non_null(f);
    /* same size, rewritten in place: the mtime tells */
    struct timespec ts[2] = {{0, UTIME_OMIT}, {12345, 0}};
    assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    assert_int_equal(gguf_check_unchanged(f, &err), -1);
    snprintf(want, sizeof want, "%s: the file changed on disk since it was loaded (it was modified); load it again", p);
    assert_string_equal(err.msg, want);
    gguf_close(f);
    /* another file renamed over it */
    f = gguf_open(p, &err);
    assert_non_null(f);
    snprintf(q, sizeof q, "%s.new", p);
    save(two_tensors(), q);
    assert_int_equal(rename(q, p), 0);
    assert_int_equal(gguf_check_unchanged(f, &err), -1);
    snprintf(want, sizeof want,
             "%s: the file changed on disk since it was loaded (another file is at its path); load it again", p);
    assert_string_equal(err.msg, want);
    unlink(p);
    assert_int_equal(gguf_check_unchanged(f, &err), -1);
    snprintf(want, sizeof want, "%s: the file changed on disk since it was loaded (it was removed); load it again", p);
    assert_string_equal(err.msg, want);
    gguf_close(f);
    /* memory files have no disk to change */
    gguf_writer *w = two_tensors();
    uint8_t *buf;
    size_t n;
    assert_int_equal(gguf_writer_to_mem(w, &buf, &n, &err), 0);
    gguf_writer_free(w);
    f = gguf_open_mem(buf, n, "m.gguf", &err);
    assert_int_equal(gguf_check_unchanged(f, &err), 0);
    gguf_close(f);
    free(buf);
}

/* the model's view of the same check, on the default model */
static void test_model_check_unchanged(void **state)
{
    (void)state;
    char src[1024], p[512], cmd[1600];
    tu_src_path(src, sizeof src, TU_MODEL);
    tu_tmp_path(p, sizeof p, ".gguf");
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", src, p);
    assert_int_equal(system(cmd), 0);
    xf_err err = {{0}};
    xf_model *m = model_load(p, &err);
    if (!m)
        fail_msg("%s", err.msg);
    assert_int_equal(model_check_unchanged(m, &err), 0);
    assert_int_equal(truncate(p, 100), 0);
    assert_int_equal(model_check_unchanged(m, &err), -1);
    assert_non_null(strstr(err.msg, "the file changed on disk since it was loaded (its size changed)"));
    /* every weight is still readable: no map to fault on */
    float row[1024];
    for (int i = 0; i < m->n_weights; i++)
        if (m->weights[i].cols <= 1024)
            assert_int_equal(model_weight_row(&m->weights[i], m->weights[i].rows - 1, row, &err), 0);
    model_free(m);
    unlink(p);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "gguf_open blocked on a FIFO\n";
    if (write(2, m, sizeof m - 1) < 0) /* nothing more to do in a signal handler */
        _exit(124);
    _exit(1);
}

/* item 15: `xfdb FIFO` and `load FIFO` blocked forever in open(2) */
static void test_fifo_model(void **state)
{
    (void)state;
    char p[512];
    tu_tmp_path(p, sizeof p, ".gguf");
    assert_int_equal(mkfifo(p, 0600), 0);
    signal(SIGALRM, on_alarm);
    alarm(5);
    xf_err err = {{0}};
    assert_null(gguf_open(p, &err));
    assert_null(model_load(p, &err));
    alarm(0);
    assert_int_equal(model_check_unchanged(NULL, &err), 0);
    char want[600];
    snprintf(want, sizeof want, "%s: not a regular file", p);
    assert_string_equal(err.msg, want);
    unlink(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overlapping_tensors),
        cmocka_unit_test(test_overlap_out_of_order),
        cmocka_unit_test(test_truncated_after_open),
        cmocka_unit_test(test_changed_after_open),
        cmocka_unit_test(test_model_check_unchanged),
        cmocka_unit_test(test_fifo_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
