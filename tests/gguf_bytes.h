/* gguf_bytes.h: what the test_gguf*.c programs share: a byte builder for
 * hand-made GGUF files (never the writer under test, so that the offsets
 * the messages must name are known independently), a small valid file
 * built with it, and opening an exact-size heap copy that must fail with
 * an exact message. static inline, as tests/fuzz/tinymodel.h: each program
 * uses a part, and unused ones must not warn. */
#ifndef XF_TESTS_GGUF_BYTES_H
#define XF_TESTS_GGUF_BYTES_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gguf.h"
#include "quant.h"

/* ------------------------------------------------------------------ */
/* a byte builder for hand-made files */

typedef struct tb {
    uint8_t *p;
    size_t n, cap;
} tb;

static inline size_t tb_put(tb *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    size_t at = b->n;
    if (n)
        memcpy(b->p + b->n, src, n);
    b->n += n;
    return at;
}

static inline size_t tb_u8(tb *b, uint8_t v) { return tb_put(b, &v, 1); }

static inline size_t tb_u16(tb *b, uint16_t v)
{
    uint8_t q[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    return tb_put(b, q, 2);
}

static inline size_t tb_u32(tb *b, uint32_t v)
{
    uint8_t q[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return tb_put(b, q, 4);
}

static inline size_t tb_u64(tb *b, uint64_t v)
{
    size_t at = tb_u32(b, (uint32_t)v);
    tb_u32(b, (uint32_t)(v >> 32));
    return at;
}

static inline size_t tb_f32(tb *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return tb_u32(b, u);
}

static inline size_t tb_f64(tb *b, double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return tb_u64(b, u);
}

/* a GGUF string: u64 length + bytes; returns the offset of the length */
static inline size_t tb_strn(tb *b, const char *s, size_t n)
{
    size_t at = tb_u64(b, n);
    tb_put(b, s, n);
    return at;
}

static inline size_t tb_str(tb *b, const char *s) { return tb_strn(b, s, strlen(s)); }

static inline void tb_hdr(tb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    tb_put(b, "GGUF", 4);
    tb_u32(b, version);
    tb_u64(b, n_tensors);
    tb_u64(b, n_kv);
}

static inline void tb_pad(tb *b, size_t align)
{
    while (b->n % align)
        tb_u8(b, 0);
}

static inline void tb_patch_u32(tb *b, size_t at, uint32_t v)
{
    uint8_t q[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    memcpy(b->p + at, q, 4);
}

static inline void tb_patch_u64(tb *b, size_t at, uint64_t v)
{
    tb_patch_u32(b, at, (uint32_t)v);
    tb_patch_u32(b, at + 4, (uint32_t)(v >> 32));
}

/* where the fields of one tensor-info record went */
typedef struct tb_ti {
    size_t start, n_dims, dims[GGUF_MAX_DIMS], type, offset;
} tb_ti;

static inline tb_ti tb_tinfo(tb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off)
{
    tb_ti r = {0};
    r.start = tb_str(b, name);
    r.n_dims = tb_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++)
        r.dims[d] = tb_u64(b, ne[d]);
    r.type = tb_u32(b, type);
    r.offset = tb_u64(b, off);
    return r;
}

/* key + value type; the caller appends the value */
static inline size_t tb_kv(tb *b, const char *key, uint32_t vtype)
{
    size_t at = tb_str(b, key);
    tb_u32(b, vtype);
    return at;
}

/* ------------------------------------------------------------------ */
/* opening helpers */

/* Opens an exact-size heap copy (so a read past the end is a heap overflow
 * that a sanitizer catches) and expects failure with exactly `want`. */
static inline void expect_err_buf(const uint8_t *p, size_t n, const char *want)
{
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    if (n)
        memcpy(copy, p, n);
    xf_err err = {{0}};
    gguf_file *f = gguf_open_mem(copy, n, "m.gguf", &err);
    if (f)
        gguf_close(f);
    assert_null(f);
    assert_string_equal(err.msg, want);
    free(copy);
}

__attribute__((format(printf, 2, 3))) static inline void expect_err(const tb *b, const char *fmt, ...)
{
    char want[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(want, sizeof want, fmt, ap);
    va_end(ap);
    expect_err_buf(b->p, b->n, want);
}

/* A small valid file: 2 kvs, 2 tensors (F32 [4,2] and Q8_0 [32]). */
typedef struct small {
    tb b;
    size_t kv_key[2], kv_val[2], hdr_end, data;
    tb_ti ti[2];
} small;

static inline void small_build(small *s)
{
    memset(s, 0, sizeof *s);
    tb *b = &s->b;
    tb_hdr(b, 3, 2, 2);
    s->kv_key[0] = tb_kv(b, "general.name", GGUF_VT_STRING);
    s->kv_val[0] = tb_str(b, "tiny");
    s->kv_key[1] = tb_kv(b, "a.arr", GGUF_VT_ARRAY);
    s->kv_val[1] = tb_u32(b, GGUF_VT_INT32);
    tb_u64(b, 3);
    tb_u32(b, 1);
    tb_u32(b, (uint32_t)-2);
    tb_u32(b, 3);
    uint64_t ne0[2] = {4, 2}, ne1[1] = {32};
    s->ti[0] = tb_tinfo(b, "t0", 2, ne0, XF_TYPE_F32, 0);
    s->ti[1] = tb_tinfo(b, "t1", 1, ne1, XF_TYPE_Q8_0, 32);
    s->hdr_end = b->n;
    tb_pad(b, 32);
    s->data = b->n;
    for (int i = 0; i < 32; i++) /* t0: 8 floats */
        tb_u8(b, (uint8_t)(i + 1));
    for (int i = 0; i < 34; i++) /* t1: one Q8_0 block */
        tb_u8(b, (uint8_t)(100 + i));
}

static inline gguf_file *open_tb(const tb *b, xf_err *err) { return gguf_open_mem(b->p, b->n, "m.gguf", err); }

/* Every value type by hand (22 kvs, version 2, no tensors). */
static inline void build_all_types(tb *b)
{
    tb_hdr(b, 2, 0, 22);
    tb_kv(b, "u8", GGUF_VT_UINT8), tb_u8(b, 200);
    tb_kv(b, "i8", GGUF_VT_INT8), tb_u8(b, (uint8_t)-5);
    tb_kv(b, "u16", GGUF_VT_UINT16), tb_u16(b, 60000);
    tb_kv(b, "i16", GGUF_VT_INT16), tb_u16(b, (uint16_t)-30000);
    tb_kv(b, "u32", GGUF_VT_UINT32), tb_u32(b, 3000000000u);
    tb_kv(b, "i32", GGUF_VT_INT32), tb_u32(b, (uint32_t)INT32_MIN);
    tb_kv(b, "f32", GGUF_VT_FLOAT32), tb_f32(b, 1.5f);
    tb_kv(b, "bool", GGUF_VT_BOOL), tb_u8(b, 1);
    tb_kv(b, "str", GGUF_VT_STRING), tb_str(b, "h\xc3\xa9llo");
    tb_kv(b, "u64", GGUF_VT_UINT64), tb_u64(b, 1ULL << 40);
    tb_kv(b, "i64", GGUF_VT_INT64), tb_u64(b, (uint64_t)-(1LL << 40));
    tb_kv(b, "f64", GGUF_VT_FLOAT64), tb_f64(b, 0.25);
    tb_kv(b, "arr.u8", GGUF_VT_ARRAY), tb_u32(b, GGUF_VT_UINT8), tb_u64(b, 3);
    tb_u8(b, 1), tb_u8(b, 2), tb_u8(b, 255);
    tb_kv(b, "arr.i8", GGUF_VT_ARRAY), tb_u32(b, GGUF_VT_INT8), tb_u64(b, 2);
    tb_u8(b, (uint8_t)-1), tb_u8(b, 2);
    tb_kv(b, "arr.i16", GGUF_VT_ARRAY), tb_u32(b, GGUF_VT_INT16), tb_u64(b, 2);
    tb_u16(b, (uint16_t)-300), tb_u16(b, 7);
    tb_kv(b, "arr.u64", GGUF_VT_ARRAY), tb_u32(b, GGUF_VT_UINT64), tb_u64(b, 2);
    tb_u64(b, 5), tb_u64(b, 1ULL << 31);
    tb_kv(b, "arr.f64", GGUF_VT_ARRAY), tb_u32(b, GGUF_VT_FLOAT64), tb_u64(b, 2);
    tb_f64(b, -0.5), tb_f64(b, 3.0);
    tb_kv(b, "arr.f32", GGUF_VT_ARRAY), tb_u32(b, GGUF_VT_FLOAT32), tb_u64(b, 3);
    tb_f32(b, 0.5f), tb_f32(b, -1.25f), tb_f32(b, 1e30f);
    tb_kv(b, "arr.bool", GGUF_VT_ARRAY), tb_u32(b, GGUF_VT_BOOL), tb_u64(b, 2);
    tb_u8(b, 0), tb_u8(b, 1);
    tb_kv(b, "arr.str", GGUF_VT_ARRAY), tb_u32(b, GGUF_VT_STRING), tb_u64(b, 3);
    tb_str(b, "a"), tb_str(b, ""), tb_strn(b, "x\0y", 3);
    tb_kv(b, "arr.empty", GGUF_VT_ARRAY), tb_u32(b, GGUF_VT_UINT32), tb_u64(b, 0);
    tb_kv(b, "arr.i64", GGUF_VT_ARRAY), tb_u32(b, GGUF_VT_INT64), tb_u64(b, 1);
    tb_u64(b, (uint64_t)-7);
}

#endif
