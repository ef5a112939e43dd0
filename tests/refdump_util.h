/* refdump_util.h: what the test_refdump*.c programs share: whole files
 * read and written, a header of given JSON over given data, the exact error
 * of opening it, float checks and a writer's add that fails the test.
 * static inline, as tests/fuzz/tinymodel.h: each program uses a part, and
 * unused ones must not warn. */
#ifndef XF_TESTS_REFDUMP_UTIL_H
#define XF_TESTS_REFDUMP_UTIL_H

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "refdump.h"
#include "testutil.h"

static inline uint8_t *read_whole(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return b;
}

static inline bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* u64 length + json (len bytes) + data_size bytes of 0xab */
static inline uint8_t *mk_file(const char *json, size_t len, size_t data_size, size_t *size)
{
    *size = 8 + len + data_size;
    uint8_t *b = malloc(*size);
    assert_non_null(b);
    uint64_t n = len;
    memcpy(b, &n, 8);
    memcpy(b + 8, json, len);
    memset(b + 8 + len, 0xab, data_size);
    return b;
}

static inline void expect_error_n(const char *json, size_t len, size_t data_size, const char *want)
{
    size_t size;
    uint8_t *b = mk_file(json, len, data_size, &size);
    xf_err err = {{0}};
    refdump *r = refdump_open_mem(b, size, "bad.st", &err);
    if (r || strcmp(err.msg, want) != 0)
        print_message("header: %.*s\n", (int)len, json);
    assert_null(r);
    assert_string_equal(err.msg, want);
    free(b);
}

static inline void expect_error(const char *json, size_t data_size, const char *want)
{
    expect_error_n(json, strlen(json), data_size, want);
}

static inline void assert_floats(const refdump *r, const char *name, const float *want, size_t n)
{
    const refdump_tensor *t = refdump_find(r, name);
    assert_non_null(t);
    assert_int_equal(refdump_numel(t), (int64_t)n);
    float got[16];
    assert_true(n <= 16);
    tu_poison(got, 16);
    xf_err err = {{0}};
    assert_int_equal(refdump_read_f32(r, t, got, &err), 0);
    for (size_t i = 0; i < n; i++) {
        if (isnan(want[i]))
            assert_true(isnan(got[i]));
        else if (memcmp(&got[i], &want[i], 4) != 0) /* bit-exact: -0.0 and inf included */
            fail_msg("%s[%zu]: got %.9g want %.9g", name, i, got[i], want[i]);
    }
    assert_true(isnan(got[n])); /* nothing written past numel */
}

static inline void add(refdump_writer *w, const char *name, int dtype, int ndim, const int64_t *shape,
                       const void *data)
{
    xf_err err = {{0}};
    if (refdump_writer_add(w, name, dtype, ndim, shape, data, &err))
        fail_msg("%s", err.msg);
}

/* the same tensors as the Python script, added in another order */

#endif
