/* malformed.h: what the test_malformed_*.c programs share (hostile input
 * across modules, issue 9): a GGUF file in memory and on disk (blob), byte
 * offsets found by searching the file's bytes (never by asking the reader
 * under test), model_load's exact error, the two tiny architectures and a
 * REPL over a tiny model. static inline, as tests/fuzz/tinymodel.h: each
 * program uses a part, and unused ones must not warn. */
#ifndef XF_TESTS_MALFORMED_H
#define XF_TESTS_MALFORMED_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fuzz/tinymodel.h"
#include "model.h"
#include "refdump.h"
#include "repl.h"
#include "testutil.h"

typedef struct blob {
    uint8_t *b;
    size_t n;
    char path[1024];
} blob;

static inline void blob_write(blob *x)
{
    FILE *f = fopen(x->path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(x->b, 1, x->n, f), x->n);
    assert_int_equal(fclose(f), 0);
}

/* serializes w (and frees it) into x and a fresh temp file */
static inline void blob_from(blob *x, gguf_writer *w)
{
    assert_non_null(w);
    xf_err err = {{0}};
    if (gguf_writer_to_mem(w, &x->b, &x->n, &err) != 0)
        fail_msg("%s", err.msg);
    gguf_writer_free(w);
    tu_tmp_path(x->path, sizeof x->path, ".gguf");
    blob_write(x);
}

static inline void blob_free(blob *x)
{
    unlink(x->path);
    free(x->b);
    x->b = NULL;
}

static inline gguf_writer *spec_writer(const tiny_spec *s)
{
    gguf_writer *w = tiny_writer(s);
    assert_non_null(w);
    return w;
}

static inline void expect_model_error(const blob *x, const char *want)
{
    xf_err err = {{0}};
    xf_model *m = model_load(x->path, &err);
    if (m) {
        model_free(m);
        fail_msg("model_load accepted a file it must refuse; wanted: %s", want);
    }
    if (strcmp(err.msg, want) != 0)
        fail_msg("model_load error\n got: %s\nwant: %s", err.msg, want);
}

static inline long long kv_off(const blob *x, const char *key)
{
    long long o = tiny_kv_value_offset(x->b, x->n, key);
    assert_true(o > 0);
    return o;
}

static inline long long tinfo_off(const blob *x, const char *name)
{
    long long o = tiny_tensor_info_offset(x->b, x->n, name);
    assert_true(o > 0);
    return o;
}

/* index of KEY in the file's kv table */
static inline int kv_index(const blob *x, const char *key)
{
    xf_err err = {{0}};
    gguf_file *g = gguf_open_mem(x->b, x->n, "x", &err);
    assert_non_null(g);
    const gguf_kv *kv = gguf_find_kv(g, key);
    assert_non_null(kv);
    int i = (int)(kv - g->kv);
    gguf_close(g);
    return i;
}

/* a NaN with a payload no random weight has, so its bytes can be found */
static inline float marked_nan(void)
{
    uint32_t u = 0x7fc0beefu;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline long long find_bytes(const blob *x, const void *pat, size_t n)
{
    for (size_t i = 0; i + n <= x->n; i++)
        if (memcmp(x->b + i, pat, n) == 0)
            return (long long)i;
    fail_msg("pattern not in file");
    return -1;
}

static inline void gpt2(tiny_spec *s)
{
    tiny_spec_default(s);
}

static inline void qwen2(tiny_spec *s)
{
    tiny_spec_default(s);
    s->qwen2 = true;
    s->n_embd = 16;
    s->n_head = 4;
    s->n_head_kv = 2;
}

static inline void mk_spec(blob *x, const tiny_spec *s, void (*edit)(gguf_writer *))
{
    gguf_writer *w = spec_writer(s);
    if (edit)
        edit(w);
    blob_from(x, w);
}

/* w saved (and freed) to a fresh temp .safetensors path */
static inline void st_save(refdump_writer *w, char *path, size_t size)
{
    xf_err err = {{0}};
    tu_tmp_path(path, size, ".safetensors");
    if (refdump_writer_save(w, path, &err) != 0)
        fail_msg("%s", err.msg);
    refdump_writer_free(w);
}

/* --- a REPL over a tiny model ------------------------------------------------------- */

static inline int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static inline xf_repl *tiny_repl(char *path, size_t size)
{
    tiny_spec s;
    gpt2(&s);
    s.name = "tiny";
    tu_tmp_path(path, size, ".gguf");
    assert_int_equal(tiny_save(&s, path), 0);
    xf_repl *r = tu_repl_new();
    assert_non_null(r);
    tu_repl_load(r, path);
    return r;
}

#endif
