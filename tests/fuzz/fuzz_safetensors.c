/* fuzz_safetensors: libFuzzer harness for the safetensors reader (refdump).
 * refdump_open_mem over the input; on success every tensor is found by its
 * name, its bytes lie inside the input and match numel * element size, it
 * converts to f32 (and to i32 where the dtype is an integer), and the whole
 * file survives a round trip through the writer: what the writer makes of
 * the accepted tensors reads back with the same names, dtypes, shapes and
 * bytes. An error is one non-empty line naming the file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refdump.h"

#define NAME "fuzz.safetensors"

static volatile unsigned g_sink;

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "fuzz_safetensors: invariant broken: %s: \"%s\"\n", what, msg ? msg : "(null)");
    abort();
}

static void check_err(const xf_err *err, const char *file)
{
    if (!err->msg[0])
        die("empty error message", err->msg);
    if (strchr(err->msg, '\n'))
        die("error message of several lines", err->msg);
    if (file && strncmp(err->msg, file, strlen(file)) != 0)
        die("error message does not name the file", err->msg);
}

static bool is_int_dtype(int d)
{
    switch (d) {
    case REFDUMP_I32:
    case REFDUMP_I64:
    case REFDUMP_I16:
    case REFDUMP_I8:
    case REFDUMP_U8:
    case REFDUMP_U16:
    case REFDUMP_U32:
    case REFDUMP_U64:
    case REFDUMP_BOOL:
        return true;
    default:
        return false;
    }
}

static void round_trip(const refdump *r)
{
    xf_err err = {{0}};
    refdump_writer *w = refdump_writer_new();
    if (!w)
        return;
    size_t n = refdump_count(r);
    for (size_t i = 0; i < n; i++) {
        const refdump_tensor *t = refdump_at(r, i);
        if (refdump_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data, &err) != 0)
            die("the writer refuses a tensor the reader accepted", err.msg);
    }
    const char *producer = refdump_meta(r, "producer");
    if (producer && refdump_writer_meta(w, "producer", producer, &err) != 0)
        die("the writer refuses metadata the reader accepted", err.msg);
    uint8_t *buf = NULL;
    size_t size = 0;
    if (refdump_writer_to_mem(w, &buf, &size, &err) != 0)
        die("refdump_writer_to_mem failed", err.msg);
    refdump_writer_free(w);
    refdump *r2 = refdump_open_mem(buf, size, "round-trip", &err);
    if (!r2)
        die("the writer's output does not read back", err.msg);
    if (refdump_count(r2) != n)
        die("round trip changed the tensor count", "");
    for (size_t i = 0; i < n; i++) {
        const refdump_tensor *a = refdump_at(r, i), *b = refdump_find(r2, a->name);
        if (!b || b->dtype != a->dtype || b->ndim != a->ndim || b->nbytes != a->nbytes ||
            memcmp(a->shape, b->shape, sizeof a->shape) != 0 ||
            (a->nbytes && memcmp(a->data, b->data, a->nbytes)))
            die("round trip changed a tensor", a->name);
    }
    const char *p2 = refdump_meta(r2, "producer");
    if ((producer == NULL) != (p2 == NULL) || (producer && strcmp(producer, p2) != 0))
        die("round trip changed the metadata", producer);
    refdump_close(r2);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xf_err err = {{0}};
    refdump *r = refdump_open_mem(data, size, NAME, &err);
    if (!r) {
        check_err(&err, NAME);
        return 0;
    }
    size_t n = refdump_count(r);
    for (size_t i = 0; i < n; i++) {
        const refdump_tensor *t = refdump_at(r, i);
        if (!t)
            die("refdump_at of an index below the count is NULL", "");
        if (refdump_find(r, t->name) != t)
            die("refdump_find does not find its own tensor", t->name);
        int64_t numel = refdump_numel(t);
        size_t es = refdump_dtype_size(t->dtype);
        if (numel < 0 || !es || (uint64_t)numel * es != t->nbytes)
            die("nbytes is not numel * element size", t->name);
        const uint8_t *p = t->data;
        if (t->nbytes &&
            (p < data || t->nbytes > (uint64_t)(data + size - p) || t->file_offset != (uint64_t)(p - data)))
            die("tensor data outside the file", t->name);
        if (numel > (1 << 24))
            continue;
        float *f = malloc((size_t)(numel ? numel : 1) * sizeof *f);
        int32_t *k = malloc((size_t)(numel ? numel : 1) * sizeof *k);
        if (f && refdump_read_f32(r, t, f, &err) != 0)
            die("refdump_read_f32 failed on an accepted tensor", err.msg);
        if (k && refdump_read_i32(r, t, k, &err) != 0) {
            check_err(&err, NAME);
            /* only a float dtype or a value beyond int32 may fail */
            if (is_int_dtype(t->dtype) && !strstr(err.msg, "at byte"))
                die("refdump_read_i32 failed on an integer tensor without naming the element", err.msg);
        }
        if (numel && f)
            g_sink += (unsigned)(f[0] == f[numel - 1]);
        free(f);
        free(k);
    }
    if (refdump_meta(r, "producer"))
        g_sink += (unsigned)strlen(refdump_meta(r, "producer"));
    if (refdump_find(r, "") || refdump_find(r, "__metadata__"))
        die("found a tensor with an impossible name", "");
    if (size <= (1u << 20))
        round_trip(r);
    refdump_close(r);
    return 0;
}
