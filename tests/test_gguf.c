/* Tests of the GGUF reader and writer: round trips of every value type,
 * the real default model, and hand-built corrupt files whose exact error
 * text (field and byte offset) is asserted. Corrupt files are built byte by
 * byte here (not by the writer under test) so the offsets the messages must
 * name are known independently. */
#include <setjmp.h>
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
#include "quant.h"
#include "testutil.h"

/* ------------------------------------------------------------------ */
/* a byte builder for hand-made files */

typedef struct tb {
    uint8_t *p;
    size_t n, cap;
} tb;

static size_t tb_put(tb *b, const void *src, size_t n)
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

static size_t tb_u8(tb *b, uint8_t v) { return tb_put(b, &v, 1); }

static size_t tb_u16(tb *b, uint16_t v)
{
    uint8_t q[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    return tb_put(b, q, 2);
}

static size_t tb_u32(tb *b, uint32_t v)
{
    uint8_t q[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return tb_put(b, q, 4);
}

static size_t tb_u64(tb *b, uint64_t v)
{
    size_t at = tb_u32(b, (uint32_t)v);
    tb_u32(b, (uint32_t)(v >> 32));
    return at;
}

static size_t tb_f32(tb *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return tb_u32(b, u);
}

static size_t tb_f64(tb *b, double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return tb_u64(b, u);
}

/* a GGUF string: u64 length + bytes; returns the offset of the length */
static size_t tb_strn(tb *b, const char *s, size_t n)
{
    size_t at = tb_u64(b, n);
    tb_put(b, s, n);
    return at;
}

static size_t tb_str(tb *b, const char *s) { return tb_strn(b, s, strlen(s)); }

static void tb_hdr(tb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    tb_put(b, "GGUF", 4);
    tb_u32(b, version);
    tb_u64(b, n_tensors);
    tb_u64(b, n_kv);
}

static void tb_pad(tb *b, size_t align)
{
    while (b->n % align)
        tb_u8(b, 0);
}

static void tb_patch_u32(tb *b, size_t at, uint32_t v)
{
    uint8_t q[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    memcpy(b->p + at, q, 4);
}

static void tb_patch_u64(tb *b, size_t at, uint64_t v)
{
    tb_patch_u32(b, at, (uint32_t)v);
    tb_patch_u32(b, at + 4, (uint32_t)(v >> 32));
}

/* where the fields of one tensor-info record went */
typedef struct tb_ti {
    size_t start, n_dims, dims[GGUF_MAX_DIMS], type, offset;
} tb_ti;

static tb_ti tb_tinfo(tb *b, const char *name, uint32_t n_dims, const uint64_t *ne, uint32_t type, uint64_t off)
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
static size_t tb_kv(tb *b, const char *key, uint32_t vtype)
{
    size_t at = tb_str(b, key);
    tb_u32(b, vtype);
    return at;
}

/* ------------------------------------------------------------------ */
/* opening helpers */

/* Opens an exact-size heap copy (so a read past the end is a heap overflow
 * that a sanitizer catches) and expects failure with exactly `want`. */
static void expect_err_buf(const uint8_t *p, size_t n, const char *want)
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

__attribute__((format(printf, 2, 3))) static void expect_err(const tb *b, const char *fmt, ...)
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

static void small_build(small *s)
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

static gguf_file *open_tb(const tb *b, xf_err *err) { return gguf_open_mem(b->p, b->n, "m.gguf", err); }

/* ------------------------------------------------------------------ */
/* valid files */

static void test_small_valid(void **state)
{
    (void)state;
    small s;
    small_build(&s);
    xf_err err = {{0}};
    gguf_file *f = open_tb(&s.b, &err);
    assert_non_null(f);
    assert_int_equal(f->version, 3);
    assert_int_equal(f->n_kv, 2);
    assert_int_equal(f->n_tensors, 2);
    assert_int_equal(f->alignment, 32);
    assert_int_equal(f->data_offset, s.data);
    assert_string_equal(f->path, "m.gguf");
    assert_false(f->mapped);

    gguf_str str;
    assert_int_equal(gguf_get_str(f, "general.name", &str, &err), 0);
    assert_int_equal(str.len, 4);
    assert_memory_equal(str.ptr, "tiny", 4);
    assert_true(gguf_str_eq(str, "tiny"));
    assert_false(gguf_str_eq(str, "tin"));
    assert_false(gguf_str_eq(str, "tinyy"));
    int32_t *a;
    uint64_t n;
    assert_int_equal(gguf_get_arr_i32(f, "a.arr", &a, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(a[0], 1);
    assert_int_equal(a[1], -2);
    assert_int_equal(a[2], 3);
    free(a);

    const gguf_kv *kv = gguf_find_kv(f, "a.arr");
    assert_ptr_equal(kv, &f->kv[1]);
    assert_int_equal(kv->type, GGUF_VT_ARRAY);
    assert_int_equal(kv->arr_type, GGUF_VT_INT32);
    assert_int_equal(kv->arr_n, 3);
    assert_int_equal(kv->offset, s.kv_val[1]);
    assert_null(gguf_find_kv(f, "a.ar"));
    assert_null(gguf_find_kv(f, "a.arr "));

    const gguf_tensor *t0 = gguf_find_tensor(f, "t0"), *t1 = gguf_find_tensor(f, "t1");
    assert_ptr_equal(t0, &f->tensors[0]);
    assert_ptr_equal(t1, &f->tensors[1]);
    assert_null(gguf_find_tensor(f, "t2"));
    assert_null(gguf_find_tensor(f, "t"));
    assert_int_equal(t0->n_dims, 2);
    assert_int_equal(t0->ne[0], 4);
    assert_int_equal(t0->ne[1], 2);
    assert_int_equal(t0->ne[2], 1);
    assert_int_equal(t0->ne[3], 1);
    assert_int_equal(t0->type, XF_TYPE_F32);
    assert_int_equal(t0->size, 32);
    assert_int_equal(t0->info_offset, s.ti[0].start);
    assert_ptr_equal(t0->data, s.b.p + s.data);
    assert_int_equal(t1->n_dims, 1);
    assert_int_equal(t1->ne[0], 32);
    assert_int_equal(t1->ne[1], 1);
    assert_int_equal(t1->type, XF_TYPE_Q8_0);
    assert_int_equal(t1->size, 34);
    assert_int_equal(t1->offset, 32);
    assert_ptr_equal(t1->data, s.b.p + s.data + 32);
    gguf_close(f);
    free(s.b.p);
}

/* Every value type by hand, then every kv copied through the writer. */
static void build_all_types(tb *b)
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

/* checks every value of build_all_types through the getters */
static void check_all_types(const gguf_file *f)
{
    xf_err err = {{0}};
    uint32_t u32;
    uint64_t u64, n;
    int32_t i32, *ai;
    float f32, *af;
    bool bo;
    gguf_str s, *as;

    assert_int_equal(f->n_kv, 22);
    assert_int_equal(gguf_get_u32(f, "u8", &u32, &err), 0);
    assert_int_equal(u32, 200);
    assert_int_equal(gguf_get_i32(f, "u8", &i32, &err), 0);
    assert_int_equal(i32, 200);
    assert_int_equal(gguf_get_i32(f, "i8", &i32, &err), 0);
    assert_int_equal(i32, -5);
    assert_int_equal(gguf_get_u32(f, "u16", &u32, &err), 0);
    assert_int_equal(u32, 60000);
    assert_int_equal(gguf_get_i32(f, "i16", &i32, &err), 0);
    assert_int_equal(i32, -30000);
    assert_int_equal(gguf_get_u32(f, "u32", &u32, &err), 0);
    assert_int_equal(u32, 3000000000u);
    assert_int_equal(gguf_get_u64(f, "u32", &u64, &err), 0);
    assert_int_equal(u64, 3000000000u);
    assert_int_equal(gguf_get_i32(f, "i32", &i32, &err), 0);
    assert_int_equal(i32, INT32_MIN);
    assert_int_equal(gguf_get_u64(f, "u64", &u64, &err), 0);
    assert_int_equal(u64, 1ULL << 40);
    assert_int_equal(gguf_get_f32(f, "f32", &f32, &err), 0);
    assert_true(f32 == 1.5f);
    assert_int_equal(gguf_get_f32(f, "f64", &f32, &err), 0);
    assert_true(f32 == 0.25f);
    assert_int_equal(gguf_get_bool(f, "bool", &bo, &err), 0);
    assert_true(bo);
    assert_int_equal(gguf_get_str(f, "str", &s, &err), 0);
    assert_int_equal(s.len, 6);
    assert_memory_equal(s.ptr, "h\xc3\xa9llo", 6);

    assert_int_equal(gguf_get_arr_i32(f, "arr.u8", &ai, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(ai[0], 1);
    assert_int_equal(ai[2], 255);
    free(ai);
    assert_int_equal(gguf_get_arr_i32(f, "arr.i8", &ai, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(ai[0], -1);
    assert_int_equal(ai[1], 2);
    free(ai);
    assert_int_equal(gguf_get_arr_i32(f, "arr.i16", &ai, &n, &err), 0);
    assert_int_equal(ai[0], -300);
    assert_int_equal(ai[1], 7);
    free(ai);
    assert_int_equal(gguf_get_arr_i32(f, "arr.i64", &ai, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ai[0], -7);
    free(ai);
    assert_int_equal(gguf_get_arr_f32(f, "arr.f32", &af, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_true(af[0] == 0.5f && af[1] == -1.25f && af[2] == 1e30f);
    free(af);
    assert_int_equal(gguf_get_arr_f32(f, "arr.f64", &af, &n, &err), 0);
    assert_true(af[0] == -0.5f && af[1] == 3.0f);
    free(af);
    assert_int_equal(gguf_get_arr_f32(f, "arr.i16", &af, &n, &err), 0);
    assert_true(af[0] == -300.0f && af[1] == 7.0f);
    free(af);
    assert_int_equal(gguf_get_arr_f32(f, "arr.u64", &af, &n, &err), 0);
    assert_true(af[0] == 5.0f && af[1] == 2147483648.0f);
    free(af);
    assert_int_equal(gguf_get_arr_str(f, "arr.str", &as, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_true(gguf_str_eq(as[0], "a"));
    assert_int_equal(as[1].len, 0);
    assert_int_equal(as[2].len, 3);
    assert_memory_equal(as[2].ptr, "x\0y", 3);
    free(as);
    ai = NULL;
    assert_int_equal(gguf_get_arr_i32(f, "arr.empty", &ai, &n, &err), 0);
    assert_int_equal(n, 0);
    free(ai);
    const gguf_kv *kv = gguf_find_kv(f, "arr.bool");
    assert_non_null(kv);
    assert_int_equal(kv->type, GGUF_VT_ARRAY);
    assert_int_equal(kv->arr_type, GGUF_VT_BOOL);
    assert_int_equal(kv->arr_n, 2);
    assert_int_equal(kv->data[0], 0);
    assert_int_equal(kv->data[1], 1);
}

static void test_all_value_types_and_copy(void **state)
{
    (void)state;
    tb b = {0};
    build_all_types(&b);
    xf_err err = {{0}};
    gguf_file *f = open_tb(&b, &err);
    assert_non_null(f);
    assert_int_equal(f->version, 2);
    check_all_types(f);

    /* copy every kv into a writer, reopen, compare values */
    gguf_writer *w = gguf_writer_new(3, 32);
    assert_non_null(w);
    for (uint64_t i = 0; i < f->n_kv; i++)
        assert_int_equal(gguf_writer_copy_kv(w, f, &f->kv[i]), 0);
    gguf_kv stranger = f->kv[0]; /* not a kv of f: refused */
    assert_int_equal(gguf_writer_copy_kv(w, f, &stranger), -1);
    uint8_t *mem;
    size_t size;
    assert_int_equal(gguf_writer_to_mem(w, &mem, &size, &err), 0);
    gguf_file *g = gguf_open_mem(mem, size, "copy.gguf", &err);
    assert_non_null(g);
    assert_int_equal(g->version, 3);
    check_all_types(g);
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *a = &f->kv[i], *c = &g->kv[i]; /* insertion order kept */
        assert_int_equal(a->key.len, c->key.len);
        assert_memory_equal(a->key.ptr, c->key.ptr, a->key.len);
        assert_int_equal(a->type, c->type);
        assert_int_equal(a->arr_type, c->arr_type);
        assert_int_equal(a->arr_n, c->arr_n);
    }
    /* the encoded kv section is byte-identical (both start at byte 24) */
    size_t kv_end = b.n;
    assert_true(size >= kv_end);
    assert_memory_equal(mem + 24, b.p + 24, kv_end - 24);
    gguf_close(g);
    free(mem);
    gguf_writer_free(w);
    gguf_close(f);
    free(b.p);
}

static void test_getter_errors(void **state)
{
    (void)state;
    tb b = {0};
    build_all_types(&b);
    xf_err err = {{0}};
    gguf_file *f = open_tb(&b, &err);
    assert_non_null(f);
    uint32_t u32;
    uint64_t u64, n;
    int32_t i32, *ai;
    float f32, *af;
    bool bo;
    gguf_str s, *as;
#define OFF(key) (gguf_find_kv(f, key)->offset)
    char want[512];

    assert_int_equal(gguf_get_u32(f, "nope", &u32, &err), -1);
    assert_string_equal(err.msg, "m.gguf: key 'nope': not found");
    assert_int_equal(gguf_get_u32(f, "i8", &u32, &err), -1);
    snprintf(want, sizeof want, "m.gguf: kv[1] 'i8' at byte %llu: value -5 (int8) does not fit uint32",
             (unsigned long long)OFF("i8"));
    assert_string_equal(err.msg, want);
    assert_int_equal(gguf_get_u32(f, "u64", &u32, &err), -1);
    snprintf(want, sizeof want, "m.gguf: kv[9] 'u64' at byte %llu: value 1099511627776 (uint64) does not fit uint32",
             (unsigned long long)OFF("u64"));
    assert_string_equal(err.msg, want);
    assert_int_equal(gguf_get_i32(f, "u32", &i32, &err), -1);
    snprintf(want, sizeof want, "m.gguf: kv[4] 'u32' at byte %llu: value 3000000000 (uint32) does not fit int32",
             (unsigned long long)OFF("u32"));
    assert_string_equal(err.msg, want);
    assert_int_equal(gguf_get_i32(f, "i64", &i32, &err), -1);
    snprintf(want, sizeof want, "m.gguf: kv[10] 'i64' at byte %llu: value -1099511627776 (int64) does not fit int32",
             (unsigned long long)OFF("i64"));
    assert_string_equal(err.msg, want);
    assert_int_equal(gguf_get_u64(f, "i64", &u64, &err), -1);
    assert_int_equal(gguf_get_u32(f, "str", &u32, &err), -1);
    snprintf(want, sizeof want, "m.gguf: kv[8] 'str' at byte %llu: expected an integer (uint32), got string",
             (unsigned long long)OFF("str"));
    assert_string_equal(err.msg, want);
    assert_int_equal(gguf_get_u32(f, "bool", &u32, &err), -1); /* bool is not an integer */
    assert_int_equal(gguf_get_f32(f, "u32", &f32, &err), -1);
    snprintf(want, sizeof want, "m.gguf: kv[4] 'u32' at byte %llu: expected float32 or float64, got uint32",
             (unsigned long long)OFF("u32"));
    assert_string_equal(err.msg, want);
    assert_int_equal(gguf_get_bool(f, "u8", &bo, &err), -1);
    snprintf(want, sizeof want, "m.gguf: kv[0] 'u8' at byte %llu: expected bool, got uint8",
             (unsigned long long)OFF("u8"));
    assert_string_equal(err.msg, want);
    assert_int_equal(gguf_get_str(f, "arr.str", &s, &err), -1);
    snprintf(want, sizeof want, "m.gguf: kv[19] 'arr.str' at byte %llu: expected string, got array",
             (unsigned long long)OFF("arr.str"));
    assert_string_equal(err.msg, want);
    assert_int_equal(gguf_get_arr_str(f, "arr.u8", &as, &n, &err), -1);
    snprintf(want, sizeof want, "m.gguf: kv[12] 'arr.u8' at byte %llu: expected array of string, got array of uint8",
             (unsigned long long)OFF("arr.u8"));
    assert_string_equal(err.msg, want);
    assert_int_equal(gguf_get_arr_i32(f, "str", &ai, &n, &err), -1);
    snprintf(want, sizeof want, "m.gguf: kv[8] 'str' at byte %llu: expected array of integers, got string",
             (unsigned long long)OFF("str"));
    assert_string_equal(err.msg, want);
    assert_int_equal(gguf_get_arr_i32(f, "arr.f32", &ai, &n, &err), -1);
    assert_int_equal(gguf_get_arr_i32(f, "arr.u64", &ai, &n, &err), -1);
    snprintf(want, sizeof want, "m.gguf: kv[15] 'arr.u64' at byte %llu: element 1 = 2147483648 does not fit int32",
             (unsigned long long)OFF("arr.u64"));
    assert_string_equal(err.msg, want);
    assert_int_equal(gguf_get_arr_f32(f, "arr.bool", &af, &n, &err), -1);
    snprintf(want, sizeof want, "m.gguf: kv[18] 'arr.bool' at byte %llu: expected array of numbers, got array of bool",
             (unsigned long long)OFF("arr.bool"));
    assert_string_equal(err.msg, want);
    assert_int_equal(gguf_get_arr_f32(f, "f32", &af, &n, &err), -1);
#undef OFF
    assert_string_equal(gguf_vtype_name(GGUF_VT_FLOAT64), "float64");
    assert_string_equal(gguf_vtype_name(GGUF_VT_UINT8), "uint8");
    assert_string_equal(gguf_vtype_name(13), "unknown");
    assert_string_equal(gguf_vtype_name(-1), "unknown");
    gguf_close(f);
    free(b.p);
}

/* writer -> file on disk -> reader, with tensors of several types */
static void roundtrip(uint64_t alignment)
{
    gguf_writer *w = gguf_writer_new(3, alignment);
    assert_non_null(w);
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "gpt2"), 0);
    assert_int_equal(gguf_writer_set_u32(w, "x.u32", 7), 0);
    assert_int_equal(gguf_writer_set_f32(w, "x.f32", -2.5f), 0);
    assert_int_equal(gguf_writer_set_bool(w, "x.bool", false), 0);
    const char *strs[] = {"hello", "", "\xe2\x80\x94 dash", "tab\there"};
    assert_int_equal(gguf_writer_set_arr_str(w, "x.strs", strs, 4), 0);
    int32_t ints[] = {0, -1, INT32_MAX, INT32_MIN, 42};
    assert_int_equal(gguf_writer_set_arr_i32(w, "x.ints", ints, 5), 0);
    float fl[] = {1.0f, -0.0f, 3.25f};
    assert_int_equal(gguf_writer_set_arr_f32(w, "x.floats", fl, 3), 0);
    assert_int_equal(gguf_writer_set_arr_f32(w, "x.none", NULL, 0), 0);
    /* setting a key again replaces the value in place (the type may change) */
    assert_int_equal(gguf_writer_set_u32(w, "x.u32", 8), 0);
    assert_int_equal(gguf_writer_set_u32(w, "x.bool", 1), 0);
    assert_int_equal(gguf_writer_set_bool(w, "x.bool", true), 0);
    assert_int_equal(gguf_writer_set_u32(w, "", 1), -1);
    assert_int_equal(gguf_writer_set_str(w, "x.null", NULL), -1);

    uint64_t st = 99;
    float a[3 * 5];
    tu_fill_random(a, 15, &st, -2, 2);
    int64_t ne_a[2] = {3, 5};
    assert_int_equal(gguf_writer_add_tensor(w, "a", XF_TYPE_F32, 2, ne_a, a, sizeof a), 0);
    uint16_t h[64];
    for (int i = 0; i < 64; i++)
        h[i] = (uint16_t)(0x3c00 + i);
    int64_t ne_h[3] = {4, 4, 4};
    assert_int_equal(gguf_writer_add_tensor(w, "blk.0.h", XF_TYPE_F16, 3, ne_h, h, sizeof h), 0);
    uint8_t q[2 * 34];
    for (int i = 0; i < 68; i++)
        q[i] = (uint8_t)(i * 7);
    int64_t ne_q[4] = {32, 1, 2, 1};
    assert_int_equal(gguf_writer_add_tensor(w, "q", XF_TYPE_Q8_0, 4, ne_q, q, sizeof q), 0);
    uint8_t k[144];
    memset(k, 0x5a, sizeof k);
    int64_t ne_k[1] = {256};
    assert_int_equal(gguf_writer_add_tensor(w, "k", XF_TYPE_Q4_K, 1, ne_k, k, sizeof k), 0);
    /* rejected: duplicate name, wrong size, bad dims, unknown type, ragged row */
    assert_int_equal(gguf_writer_add_tensor(w, "a", XF_TYPE_F32, 2, ne_a, a, sizeof a), -1);
    assert_int_equal(gguf_writer_add_tensor(w, "a2", XF_TYPE_F32, 2, ne_a, a, sizeof a - 4), -1);
    assert_int_equal(gguf_writer_add_tensor(w, "a3", XF_TYPE_F32, 0, ne_a, a, sizeof a), -1);
    assert_int_equal(gguf_writer_add_tensor(w, "a4", 99, 2, ne_a, a, sizeof a), -1);
    int64_t ne_bad[1] = {33};
    assert_int_equal(gguf_writer_add_tensor(w, "a5", XF_TYPE_Q8_0, 1, ne_bad, q, 34), -1);

    char path[256];
    tu_tmp_path(path, sizeof path, ".gguf");
    xf_err err = {{0}};
    assert_int_equal(gguf_writer_save(w, path, &err), 0);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1); /* renamed away */

    uint8_t *mem;
    size_t size;
    assert_int_equal(gguf_writer_to_mem(w, &mem, &size, &err), 0);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal((size_t)sb.st_size, size);
    assert_int_equal(size % alignment, 0);

    gguf_file *f = gguf_open(path, &err);
    assert_non_null(f);
    assert_true(f->mapped);
    assert_memory_equal(f->map, mem, size); /* save and to_mem agree */
    assert_int_equal(f->version, 3);
    assert_int_equal(f->alignment, alignment);
    assert_int_equal(f->data_offset % alignment, 0);
    uint64_t n_kv_want = alignment == GGUF_DEFAULT_ALIGNMENT ? 8 : 9;
    assert_int_equal(f->n_kv, n_kv_want);
    if (alignment != GGUF_DEFAULT_ALIGNMENT) {
        /* the writer records a non-default alignment first */
        assert_true(gguf_str_eq(f->kv[0].key, "general.alignment"));
        uint32_t al;
        assert_int_equal(gguf_get_u32(f, "general.alignment", &al, &err), 0);
        assert_int_equal(al, alignment);
    }
    gguf_str s;
    assert_int_equal(gguf_get_str(f, "general.architecture", &s, &err), 0);
    assert_true(gguf_str_eq(s, "gpt2"));
    uint32_t u;
    assert_int_equal(gguf_get_u32(f, "x.u32", &u, &err), 0);
    assert_int_equal(u, 8);
    float fv;
    assert_int_equal(gguf_get_f32(f, "x.f32", &fv, &err), 0);
    assert_true(fv == -2.5f);
    bool bv = false;
    assert_int_equal(gguf_get_bool(f, "x.bool", &bv, &err), 0);
    assert_true(bv);
    /* replaced keys kept their place */
    assert_true(gguf_str_eq(f->kv[n_kv_want - 8 + 1].key, "x.u32"));
    assert_true(gguf_str_eq(f->kv[n_kv_want - 8 + 3].key, "x.bool"));
    gguf_str *as;
    uint64_t n;
    assert_int_equal(gguf_get_arr_str(f, "x.strs", &as, &n, &err), 0);
    assert_int_equal(n, 4);
    for (int i = 0; i < 4; i++)
        assert_true(gguf_str_eq(as[i], strs[i]));
    free(as);
    int32_t *ai;
    assert_int_equal(gguf_get_arr_i32(f, "x.ints", &ai, &n, &err), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(ai, ints, sizeof ints);
    free(ai);
    float *af;
    assert_int_equal(gguf_get_arr_f32(f, "x.floats", &af, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(af, fl, sizeof fl);
    free(af);
    assert_int_equal(gguf_get_arr_f32(f, "x.none", &af, &n, &err), 0);
    assert_int_equal(n, 0);
    free(af);

    assert_int_equal(f->n_tensors, 4);
    const gguf_tensor *t = gguf_find_tensor(f, "a");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 3);
    assert_int_equal(t->ne[1], 5);
    assert_int_equal(t->type, XF_TYPE_F32);
    assert_int_equal(t->size, sizeof a);
    assert_memory_equal(t->data, a, sizeof a);
    const void *prev_end = (const uint8_t *)t->data + t->size;
    t = gguf_find_tensor(f, "blk.0.h");
    assert_int_equal(t->n_dims, 3);
    assert_int_equal(t->ne[2], 4);
    assert_int_equal(t->ne[3], 1);
    assert_int_equal(t->type, XF_TYPE_F16);
    assert_memory_equal(t->data, h, sizeof h);
    assert_true((const void *)t->data >= prev_end);
    t = gguf_find_tensor(f, "q");
    assert_int_equal(t->n_dims, 4);
    assert_int_equal(t->ne[2], 2);
    assert_int_equal(t->type, XF_TYPE_Q8_0);
    assert_int_equal(t->size, 68);
    assert_memory_equal(t->data, q, sizeof q);
    t = gguf_find_tensor(f, "k");
    assert_int_equal(t->type, XF_TYPE_Q4_K);
    assert_int_equal(t->size, 144);
    assert_memory_equal(t->data, k, sizeof k);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        assert_int_equal(f->tensors[i].offset % alignment, 0);
        assert_int_equal(((const uint8_t *)f->tensors[i].data - f->map) % alignment, 0);
    }
    gguf_close(f);
    free(mem);

    /* saving again over the file replaces it */
    assert_int_equal(gguf_writer_set_u32(w, "x.u32", 9), 0);
    assert_int_equal(gguf_writer_save(w, path, &err), 0);
    f = gguf_open(path, &err);
    assert_non_null(f);
    assert_int_equal(gguf_get_u32(f, "x.u32", &u, &err), 0);
    assert_int_equal(u, 9);
    gguf_close(f);
    unlink(path);
    gguf_writer_free(w);
}

static void test_roundtrip_default_alignment(void **state)
{
    (void)state;
    roundtrip(32);
}

static void test_roundtrip_alignment_64(void **state)
{
    (void)state;
    roundtrip(64);
}

static void test_writer_args(void **state)
{
    (void)state;
    assert_null(gguf_writer_new(1, 32));
    assert_null(gguf_writer_new(4, 32));
    assert_null(gguf_writer_new(3, 0));
    assert_null(gguf_writer_new(3, 48));
    gguf_writer *w = gguf_writer_new(2, 32);
    assert_non_null(w);
    char name[300];
    memset(name, 'n', 257);
    name[257] = '\0';
    float x[1] = {1};
    int64_t ne[1] = {1};
    assert_int_equal(gguf_writer_add_tensor(w, name, XF_TYPE_F32, 1, ne, x, 4), -1);
    name[256] = '\0';
    assert_int_equal(gguf_writer_add_tensor(w, name, XF_TYPE_F32, 1, ne, x, 4), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "", XF_TYPE_F32, 1, ne, x, 4), -1);

    xf_err err = {{0}};
    assert_int_equal(gguf_writer_save(w, "/nonexistent-xfdb-dir/m.gguf", &err), -1);
    assert_string_equal(err.msg, "/nonexistent-xfdb-dir/m.gguf: cannot create a temporary file beside it: No such file or directory");

    /* a vocabulary-only file (no tensors) is valid; a 256-byte name too */
    uint8_t *mem;
    size_t size;
    assert_int_equal(gguf_writer_to_mem(w, &mem, &size, &err), 0);
    gguf_file *f = gguf_open_mem(mem, size, "n.gguf", &err);
    assert_non_null(f);
    assert_int_equal(f->version, 2);
    assert_int_equal(f->n_tensors, 1);
    assert_non_null(gguf_find_tensor(f, name));
    gguf_close(f);
    free(mem);
    gguf_writer_free(w);

    w = gguf_writer_new(3, 32);
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "gpt2"), 0);
    assert_int_equal(gguf_writer_to_mem(w, &mem, &size, &err), 0);
    f = gguf_open_mem(mem, size, "v.gguf", &err);
    assert_non_null(f);
    assert_int_equal(f->n_tensors, 0);
    assert_int_equal(f->n_kv, 1);
    gguf_close(f);
    free(mem);
    gguf_writer_free(w);
}

static void test_real_model(void **state)
{
    (void)state;
    char path[1024];
    tu_src_path(path, sizeof path, TU_MODEL);
    xf_err err = {{0}};
    gguf_file *f = gguf_open(path, &err);
    if (!f)
        fail_msg("%s", err.msg);
    /* facts of the file, taken with the gguf Python package */
    assert_int_equal(f->version, 3);
    assert_int_equal(f->n_tensors, 76);
    assert_int_equal(f->n_kv, 17);
    assert_int_equal(f->data_offset, 1771136);
    gguf_str s;
    assert_int_equal(gguf_get_str(f, "general.architecture", &s, &err), 0);
    assert_true(gguf_str_eq(s, "gpt2"));
    uint32_t u;
    assert_int_equal(gguf_get_u32(f, "gpt2.block_count", &u, &err), 0);
    assert_int_equal(u, 6);
    assert_int_equal(gguf_get_u32(f, "gpt2.embedding_length", &u, &err), 0);
    assert_int_equal(u, 192);
    float eps;
    assert_int_equal(gguf_get_f32(f, "gpt2.attention.layer_norm_epsilon", &eps, &err), 0);
    assert_true(eps == 1e-5f);
    gguf_str *tok;
    uint64_t n;
    assert_int_equal(gguf_get_arr_str(f, "tokenizer.ggml.tokens", &tok, &n, &err), 0);
    assert_int_equal(n, 50257);
    assert_true(gguf_str_eq(tok[0], "!"));
    assert_true(gguf_str_eq(tok[50256], "<|endoftext|>"));
    free(tok);
    int32_t *tt;
    assert_int_equal(gguf_get_arr_i32(f, "tokenizer.ggml.token_type", &tt, &n, &err), 0);
    assert_int_equal(n, 50257);
    free(tt);

    const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 192);
    assert_int_equal(t->ne[1], 50257);
    assert_int_equal(t->type, XF_TYPE_F16);
    assert_int_equal(t->offset, 0);
    assert_int_equal(t->size, 192ull * 50257 * 2);
    t = gguf_find_tensor(f, "blk.0.attn_norm.bias");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 1);
    assert_int_equal(t->ne[0], 192);
    assert_int_equal(t->type, XF_TYPE_F32);
    assert_int_equal(f->data_offset + t->offset, 21168896);
    assert_ptr_equal(t->data, f->map + 21168896);

    /* an F32 rewrite keeps every kv through copy_kv (arrays of strings too) */
    gguf_writer *w = gguf_writer_new(3, f->alignment);
    for (uint64_t i = 0; i < f->n_kv; i++)
        assert_int_equal(gguf_writer_copy_kv(w, f, &f->kv[i]), 0);
    uint8_t *mem;
    size_t size;
    assert_int_equal(gguf_writer_to_mem(w, &mem, &size, &err), 0);
    gguf_file *g = gguf_open_mem(mem, size, "copy.gguf", &err);
    assert_non_null(g);
    assert_int_equal(g->n_kv, f->n_kv);
    /* the kv section is byte-identical to the original */
    assert_memory_equal(g->map + 24, f->map + 24, (size_t)(f->tensors[0].info_offset - 24));
    gguf_close(g);
    free(mem);
    gguf_writer_free(w);
    gguf_close(f);
}

static void test_open_errors(void **state)
{
    (void)state;
    xf_err err = {{0}};
    assert_null(gguf_open("/nonexistent-xfdb/m.gguf", &err));
    assert_string_equal(err.msg, "/nonexistent-xfdb/m.gguf: cannot open: No such file or directory");
    assert_null(gguf_open("/tmp", &err));
    assert_string_equal(err.msg, "/tmp: not a regular file");
    char path[256];
    tu_tmp_path(path, sizeof path, ".gguf");
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fclose(fp);
    char want[400];
    assert_null(gguf_open(path, &err));
    snprintf(want, sizeof want, "%s: magic at byte 0: not a GGUF file (0 bytes)", path);
    assert_string_equal(err.msg, want);
    unlink(path);
    expect_err_buf((const uint8_t *)"GG", 2, "m.gguf: magic at byte 0: not a GGUF file (2 bytes: 47 47)");
    /* a control byte in the file name is escaped too */
    assert_null(gguf_open_mem("GGUX", 4, "a\x1b[2Jb", &err));
    assert_string_equal(err.msg, "a\\x1b[2Jb: magic at byte 0: not a GGUF file (got 47 47 55 58)");
}

/* ------------------------------------------------------------------ */
/* corrupt headers */

static void test_bad_magic_and_version(void **state)
{
    (void)state;
    small s;
    small_build(&s);
    tb *b = &s.b;
    b->p[3] = 'G';
    expect_err(b, "m.gguf: magic at byte 0: not a GGUF file (got 47 47 55 47)");
    b->p[3] = 'F';
    tb_patch_u32(b, 4, 1);
    expect_err(b, "m.gguf: version at byte 4: GGUF version 1 is not supported (only 2 and 3)");
    tb_patch_u32(b, 4, 99);
    expect_err(b, "m.gguf: version at byte 4: unsupported GGUF version 99 (only 2 and 3)");
    tb_patch_u32(b, 4, 0);
    expect_err(b, "m.gguf: version at byte 4: unsupported GGUF version 0 (only 2 and 3)");
    tb_patch_u32(b, 4, 0x03000000u);
    expect_err(b, "m.gguf: version at byte 4: version 3 byte-swapped: a big-endian GGUF file, only little-endian is "
                  "supported");
    tb_patch_u32(b, 4, 2); /* v2 reads the same */
    xf_err err = {{0}};
    gguf_file *f = open_tb(b, &err);
    assert_non_null(f);
    assert_int_equal(f->version, 2);
    gguf_close(f);
    free(b->p);
}

static void test_counts_past_end(void **state)
{
    (void)state;
    small s;
    small_build(&s);
    tb *b = &s.b;
    uint64_t left = b->n - 24;
    tb_patch_u64(b, 16, 1ULL << 63);
    expect_err(b, "m.gguf: n_kv at byte 16: 9223372036854775808 key/values cannot fit in the %llu bytes left",
               (unsigned long long)left);
    tb_patch_u64(b, 16, UINT64_MAX);
    expect_err(b, "m.gguf: n_kv at byte 16: 18446744073709551615 key/values cannot fit in the %llu bytes left",
               (unsigned long long)left);
    tb_patch_u64(b, 16, 2);
    tb_patch_u64(b, 8, 1ULL << 63);
    expect_err(b, "m.gguf: n_tensors at byte 8: 9223372036854775808 tensor infos cannot fit in the %llu bytes left",
               (unsigned long long)left);
    /* fits the file, but not what the key/values leave */
    uint64_t after_kv = b->n - s.ti[0].start;
    uint64_t nt = after_kv / 33 + 1;
    tb_patch_u64(b, 8, nt);
    expect_err(b,
               "m.gguf: n_tensors at byte 8: %llu tensor infos cannot fit in the %llu bytes left after the key/values",
               (unsigned long long)nt, (unsigned long long)after_kv);
    /* one kv more than there is: tensor info "t0" reads as a key, its n_dims
     * (2) as type uint16, two bytes of ne[0] as the value; the tensor table
     * then starts 2 bytes into ne[0]: a name length of 2 << 48 */
    tb_patch_u64(b, 8, 2);
    tb_patch_u64(b, 16, 3);
    expect_err(b, "m.gguf: tensor_info[0].name at byte %zu: string length 562949953421312 past end of file",
               s.ti[0].dims[0] + 2);
    free(b->p);
}

static void test_string_lengths(void **state)
{
    (void)state;
    small s;
    small_build(&s);
    tb *b = &s.b;
    size_t vlen = s.kv_val[0];
    tb_patch_u64(b, vlen, 999999);
    expect_err(b, "m.gguf: kv[0] 'general.name' at byte %zu: string length 999999 past end of file", vlen);
    tb_patch_u64(b, vlen, UINT64_MAX);
    expect_err(b, "m.gguf: kv[0] 'general.name' at byte %zu: string length 18446744073709551615 past end of file",
               vlen);
    tb_patch_u64(b, vlen, 4);
    tb_patch_u64(b, 24, UINT64_MAX); /* key length */
    expect_err(b, "m.gguf: kv[0].key at byte 24: string length 18446744073709551615 past end of file");
    tb_patch_u64(b, 24, b->n - 32 + 1); /* one byte more than the file holds */
    expect_err(b, "m.gguf: kv[0].key at byte 24: string length %zu past end of file", b->n - 32 + 1);
    tb_patch_u64(b, 24, 12);
    tb_patch_u64(b, s.ti[1].start, 1ULL << 40); /* tensor name */
    expect_err(b, "m.gguf: tensor_info[1].name at byte %zu: string length 1099511627776 past end of file",
               s.ti[1].start);
    free(b->p);
}

static void test_arrays(void **state)
{
    (void)state;
    small s;
    small_build(&s);
    tb *b = &s.b;
    size_t et = s.kv_val[1], cnt = et + 4;
    uint64_t left = b->n - (cnt + 8);
    tb_patch_u32(b, et, GGUF_VT_UINT64);
    tb_patch_u64(b, cnt, 1ULL << 62); /* * 8 overflows */
    expect_err(b, "m.gguf: kv[1] 'a.arr' at byte %zu: array count 4611686018427387904 of uint64 overflows", cnt);
    tb_patch_u32(b, et, GGUF_VT_INT32);
    tb_patch_u64(b, cnt, 1ULL << 61); /* * 4 fits in u64, past the end */
    expect_err(b,
               "m.gguf: kv[1] 'a.arr' at byte %zu: array of 2305843009213693952 int32 (9223372036854775808 bytes) "
               "past end of file (%llu bytes left)",
               cnt, (unsigned long long)left);
    tb_patch_u64(b, cnt, 1000);
    expect_err(b, "m.gguf: kv[1] 'a.arr' at byte %zu: array of 1000 int32 (4000 bytes) past end of file (%llu bytes left)",
               cnt, (unsigned long long)left);
    tb_patch_u64(b, cnt, UINT64_MAX);
    tb_patch_u32(b, et, GGUF_VT_STRING);
    expect_err(b,
               "m.gguf: kv[1] 'a.arr' at byte %zu: array of 18446744073709551615 strings past end of file (%llu bytes "
               "left)",
               cnt, (unsigned long long)left);
    tb_patch_u64(b, cnt, 3);
    tb_patch_u32(b, et, GGUF_VT_ARRAY);
    expect_err(b, "m.gguf: kv[1] 'a.arr' at byte %zu: nested arrays are not supported", et);
    tb_patch_u32(b, et, 13);
    expect_err(b, "m.gguf: kv[1] 'a.arr' at byte %zu: unknown array element type 13", et);
    tb_patch_u32(b, et, 0xffffffffu);
    expect_err(b, "m.gguf: kv[1] 'a.arr' at byte %zu: unknown array element type 4294967295", et);
    free(b->p);

    /* a string element past the end names the element */
    tb c = {0};
    tb_hdr(&c, 3, 0, 1);
    tb_kv(&c, "tok", GGUF_VT_ARRAY);
    tb_u32(&c, GGUF_VT_STRING);
    tb_u64(&c, 3);
    tb_str(&c, "ab");
    size_t e1 = tb_str(&c, "cd");
    tb_str(&c, "ef");
    tb_patch_u64(&c, e1, 13);
    expect_err(&c, "m.gguf: kv[0] 'tok'[1] at byte %zu: string length 13 past end of file", e1);
    free(c.p);
}

static void test_value_types(void **state)
{
    (void)state;
    small s;
    small_build(&s);
    tb *b = &s.b;
    size_t vt = s.kv_val[0] - 4; /* the type before general.name's value */
    tb_patch_u32(b, vt, 13);
    expect_err(b, "m.gguf: kv[0] 'general.name' at byte %zu: unknown value type 13", vt);
    tb_patch_u32(b, vt, 0x80000000u);
    expect_err(b, "m.gguf: kv[0] 'general.name' at byte %zu: unknown value type 2147483648", vt);
    free(b->p);

    /* a scalar cut by the end of the file */
    tb c = {0};
    tb_hdr(&c, 3, 0, 1);
    tb_kv(&c, "abc", GGUF_VT_UINT64);
    size_t v = tb_u32(&c, 5);
    /* the file is 4 bytes short of the u64: 24 + 8 + 3 + 4 + 4 = 43 >= 24 + 14 */
    expect_err(&c, "m.gguf: kv[0] 'abc' at byte %zu: unexpected end of file (need 8 bytes, 4 left)", v);
    free(c.p);
}

static void test_keys(void **state)
{
    (void)state;
    small s;
    small_build(&s);
    tb *b = &s.b;
    /* duplicate key: patch one byte of the third of three equal-length keys */
    tb c = {0};
    tb_hdr(&c, 3, 0, 3);
    tb_kv(&c, "k.one", GGUF_VT_UINT8), tb_u8(&c, 1);
    tb_kv(&c, "k.two", GGUF_VT_UINT8), tb_u8(&c, 2);
    size_t k3 = tb_kv(&c, "k.tw0", GGUF_VT_UINT8);
    tb_u8(&c, 3);
    xf_err err = {{0}};
    gguf_file *f = open_tb(&c, &err);
    assert_non_null(f);
    gguf_close(f);
    c.p[k3 + 8 + 4] = 'o';
    expect_err(&c, "m.gguf: kv[2] 'k.two' at byte %zu: duplicate key (first at kv[1])", k3);
    c.p[k3 + 8 + 4] = '\0';
    expect_err(&c, "m.gguf: kv[2].key at byte %zu: key contains a NUL byte", k3);
    c.p[k3 + 8 + 4] = (char)0xff;
    expect_err(&c, "m.gguf: kv[2].key at byte %zu: key is not valid UTF-8", k3);
    c.p[k3 + 8 + 3] = (char)0xc0; /* overlong encoding of '/' */
    c.p[k3 + 8 + 4] = (char)0xaf;
    expect_err(&c, "m.gguf: kv[2].key at byte %zu: key is not valid UTF-8", k3);
    free(c.p);

    /* an empty key */
    tb_patch_u64(b, 24, 0);
    expect_err(b, "m.gguf: kv[0].key at byte 24: empty key");
    free(b->p);

    /* untrusted bytes in a key are escaped and cut in messages */
    tb d = {0};
    tb_hdr(&d, 3, 0, 1);
    char key[100];
    memset(key, 'k', sizeof key);
    memcpy(key, "\x1b[31m\\", 6);
    tb_strn(&d, key, sizeof key);
    size_t t = tb_u32(&d, 77);
    tb_u64(&d, 0);
    char want[512] = "m.gguf: kv[0] '\\x1b[31m\\x5c";
    for (int i = 6; i < 64; i++)
        strcat(want, "k");
    char tail[80];
    snprintf(tail, sizeof tail, "...' at byte %zu: unknown value type 77", t);
    strcat(want, tail);
    expect_err_buf(d.p, d.n, want);
    free(d.p);
}

static void test_alignment(void **state)
{
    (void)state;
    /* one tensor; general.alignment as the only kv */
    for (int variant = 0; variant < 5; variant++) {
        tb b = {0};
        tb_hdr(&b, 3, 1, 1);
        tb_kv(&b, "general.alignment", variant == 4 ? GGUF_VT_UINT64 : GGUF_VT_UINT32);
        size_t v = b.n;
        uint32_t al = variant == 0 ? 0 : variant == 1 ? 48 : variant == 2 ? 0x80000001u : 64;
        if (variant == 4)
            tb_u64(&b, 64);
        else
            tb_u32(&b, al);
        uint64_t ne[1] = {16};
        tb_tinfo(&b, "w", 1, ne, XF_TYPE_F32, 0);
        tb_pad(&b, 64);
        size_t data = b.n;
        for (int i = 0; i < 64; i++)
            tb_u8(&b, (uint8_t)i);
        switch (variant) {
        case 0:
            expect_err(&b, "m.gguf: kv[0] 'general.alignment' at byte %zu: alignment 0 is not a nonzero power of 2", v);
            break;
        case 1:
            expect_err(&b, "m.gguf: kv[0] 'general.alignment' at byte %zu: alignment 48 is not a nonzero power of 2", v);
            break;
        case 2:
            expect_err(&b,
                       "m.gguf: kv[0] 'general.alignment' at byte %zu: alignment 2147483649 is not a nonzero power of 2",
                       v);
            break;
        case 3: {
            xf_err err = {{0}};
            gguf_file *f = open_tb(&b, &err);
            assert_non_null(f);
            assert_int_equal(f->alignment, 64);
            assert_int_equal(f->data_offset, data);
            assert_ptr_equal(f->tensors[0].data, b.p + data);
            gguf_close(f);
            break;
        }
        case 4:
            expect_err(&b, "m.gguf: kv[0] 'general.alignment' at byte %zu: alignment must be of type uint32, got uint64",
                       v);
            break;
        }
        free(b.p);
    }
}

static void test_tensor_info_errors(void **state)
{
    (void)state;
    small s;
    small_build(&s);
    tb *b = &s.b;
    const tb_ti *t0 = &s.ti[0], *t1 = &s.ti[1];

    tb_patch_u32(b, t0->type, 99);
    expect_err(b, "m.gguf: tensor_info[0].type at byte %zu: unknown tensor type 99", t0->type);
    tb_patch_u32(b, t0->type, 0xffffffffu);
    expect_err(b, "m.gguf: tensor_info[0].type at byte %zu: unknown tensor type 4294967295", t0->type);
    tb_patch_u32(b, t0->type, XF_TYPE_F32);

    /* Q8_0 row of 33: patch t1's ne[0] */
    tb_patch_u64(b, t1->dims[0], 33);
    expect_err(b, "m.gguf: tensor_info[1].type at byte %zu: row length ne[0] = 33 is not a multiple of the Q8_0 block "
                  "size 32", t1->type);
    tb_patch_u64(b, t1->dims[0], 0);
    expect_err(b, "m.gguf: tensor_info[1].ne[0] at byte %zu: dimension 0 is not positive", t1->dims[0]);
    tb_patch_u64(b, t1->dims[0], UINT64_MAX);
    expect_err(b, "m.gguf: tensor_info[1].ne[0] at byte %zu: dimension -1 is not positive", t1->dims[0]);
    tb_patch_u64(b, t1->dims[0], 1ULL << 63);
    expect_err(b, "m.gguf: tensor_info[1].ne[0] at byte %zu: dimension -9223372036854775808 is not positive",
               t1->dims[0]);
    tb_patch_u64(b, t1->dims[0], 32);
    tb_patch_u64(b, t0->dims[0], 1ULL << 32);
    tb_patch_u64(b, t0->dims[1], 1ULL << 31);
    expect_err(b, "m.gguf: tensor_info[0].ne[1] at byte %zu: element count overflows int64", t0->dims[1]);
    /* 2^62 elements of F32 fit int64 but not the byte size */
    tb_patch_u64(b, t0->dims[1], 1ULL << 30);
    expect_err(b, "m.gguf: tensor_info[0].type at byte %zu: tensor size overflows", t0->type);
    tb_patch_u64(b, t0->dims[0], 4);
    tb_patch_u64(b, t0->dims[1], 2);

    tb_patch_u32(b, t0->n_dims, 0);
    expect_err(b, "m.gguf: tensor_info[0].n_dims at byte %zu: n_dims 0 out of range 1..4", t0->n_dims);
    tb_patch_u32(b, t0->n_dims, 5);
    expect_err(b, "m.gguf: tensor_info[0].n_dims at byte %zu: n_dims 5 out of range 1..4", t0->n_dims);
    tb_patch_u32(b, t0->n_dims, 2);

    /* duplicate tensor name */
    b->p[t1->start + 8 + 1] = '0';
    expect_err(b, "m.gguf: tensor_info[1].name at byte %zu: duplicate tensor name 't0' (first at tensor_info[0])",
               t1->start);
    b->p[t1->start + 8 + 1] = '1';
    xf_err err = {{0}};
    gguf_file *f = open_tb(b, &err); /* every patch undone: valid again */
    assert_non_null(f);
    gguf_close(f);
    free(b->p);
}

static void test_tensor_names(void **state)
{
    (void)state;
    small s;
    small_build(&s);
    tb *b = &s.b;
    tb_patch_u64(b, s.ti[1].start, 0);
    /* length 0 leaves "t1" to be read as n_dims: the name check comes first */
    expect_err(b, "m.gguf: tensor_info[1].name at byte %zu: empty tensor name", s.ti[1].start);
    free(b->p);

    for (int len = 256; len <= 257; len++) {
        tb c = {0};
        tb_hdr(&c, 3, 1, 0);
        char name[300];
        memset(name, 'x', sizeof name);
        uint64_t ne[1] = {8};
        size_t at = tb_strn(&c, name, (size_t)len);
        tb_u32(&c, 1);
        tb_u64(&c, ne[0]);
        tb_u32(&c, XF_TYPE_F32);
        tb_u64(&c, 0);
        tb_pad(&c, 32);
        for (int i = 0; i < 32; i++)
            tb_u8(&c, 1);
        if (len == 257) {
            expect_err(&c, "m.gguf: tensor_info[0].name at byte %zu: tensor name length 257 exceeds 256 bytes", at);
        } else {
            xf_err err = {{0}};
            gguf_file *f = open_tb(&c, &err);
            assert_non_null(f);
            assert_int_equal(f->tensors[0].name.len, 256);
            gguf_close(f);
        }
        free(c.p);
    }
}

static void test_tensor_offsets(void **state)
{
    (void)state;
    small s;
    small_build(&s);
    tb *b = &s.b;
    const tb_ti *t1 = &s.ti[1];
    unsigned long long D = s.data, Z = b->n;

    tb_patch_u64(b, t1->offset, 16);
    expect_err(b, "m.gguf: tensor_info[1].offset at byte %zu: offset 16 is not a multiple of the alignment 32",
               t1->offset);
    tb_patch_u64(b, t1->offset, 64);
    expect_err(b, "m.gguf: tensor_info[1].offset at byte %zu: data [%llu, %llu) past end of file (size %llu)",
               t1->offset, D + 64, D + 64 + 34, Z);
    /* one byte short: the file ends inside t1 */
    tb_patch_u64(b, t1->offset, 32);
    char want[300];
    snprintf(want, sizeof want, "m.gguf: tensor_info[1].offset at byte %zu: data [%llu, %llu) past end of file (size %llu)",
             t1->offset, D + 32, D + 66, Z - 1);
    expect_err_buf(b->p, b->n - 1, want);
    free(b->p);
}

static void test_tensor_offset_overflow(void **state)
{
    (void)state;
    small s;
    small_build(&s);
    tb *b = &s.b;
    const tb_ti *t0 = &s.ti[0];
    unsigned long long D = s.data;
    /* start = D + off overflows */
    uint64_t off = UINT64_MAX - 31; /* a multiple of 32 */
    tb_patch_u64(b, t0->offset, off);
    expect_err(b, "m.gguf: tensor_info[0].offset at byte %zu: offset %llu overflows (data section at %llu)", t0->offset,
               (unsigned long long)off, D);
    /* start fits, start + size (32) overflows */
    off = (uint64_t)0 - D - 32;
    tb_patch_u64(b, t0->offset, off);
    expect_err(b, "m.gguf: tensor_info[0].offset at byte %zu: data at %llu + size 32 overflows", t0->offset,
               (unsigned long long)(UINT64_MAX - 31));
    free(b->p);
}

/* ------------------------------------------------------------------ */
/* truncation and fuzzing */

/* Truncations at chosen field boundaries, with their exact messages. */
static void test_truncation_boundaries(void **state)
{
    (void)state;
    small s;
    small_build(&s);
    const uint8_t *p = s.b.p;
    char want[512];

    expect_err_buf(p, 0, "m.gguf: magic at byte 0: not a GGUF file (0 bytes)");
    expect_err_buf(p, 3, "m.gguf: magic at byte 0: not a GGUF file (3 bytes: 47 47 55)");
    expect_err_buf(p, 4, "m.gguf: version at byte 4: unexpected end of file (need 4 bytes, 0 left)");
    expect_err_buf(p, 7, "m.gguf: version at byte 4: unexpected end of file (need 4 bytes, 3 left)");
    expect_err_buf(p, 8, "m.gguf: n_tensors at byte 8: unexpected end of file (need 8 bytes, 0 left)");
    expect_err_buf(p, 16, "m.gguf: n_kv at byte 16: unexpected end of file (need 8 bytes, 0 left)");
    expect_err_buf(p, 23, "m.gguf: n_kv at byte 16: unexpected end of file (need 8 bytes, 7 left)");
    /* n_kv = 2 needs at least 28 bytes after the header */
    expect_err_buf(p, 24, "m.gguf: n_kv at byte 16: 2 key/values cannot fit in the 0 bytes left");
    expect_err_buf(p, 51, "m.gguf: n_kv at byte 16: 2 key/values cannot fit in the 27 bytes left");

    /* the two tensor infos need 66 bytes: that check comes first */
    expect_err_buf(p, 89, "m.gguf: n_tensors at byte 8: 2 tensor infos cannot fit in the 65 bytes left");
    /* after the kvs, n_tensors = 2 needs 66 bytes */
    size_t t = s.ti[0].start;
    snprintf(want, sizeof want,
             "m.gguf: n_tensors at byte 8: 2 tensor infos cannot fit in the 65 bytes left after the key/values");
    expect_err_buf(p, t + 65, want);
    /* within the second tensor info */
    const tb_ti *t1 = &s.ti[1];
    snprintf(want, sizeof want, "m.gguf: tensor_info[1].offset at byte %zu: unexpected end of file (need 8 bytes, 0 left)",
             t1->offset);
    expect_err_buf(p, t1->offset, want);
    snprintf(want, sizeof want, "m.gguf: tensor_info[1].type at byte %zu: unexpected end of file (need 4 bytes, 2 left)",
             t1->type);
    expect_err_buf(p, t1->type + 2, want);
    /* header complete, data of t0 cut */
    snprintf(want, sizeof want, "m.gguf: tensor_info[0].offset at byte %zu: data [%zu, %zu) past end of file (size %zu)",
             s.ti[0].offset, s.data, s.data + 32, s.hdr_end);
    expect_err_buf(p, s.hdr_end, want);
    /* the last byte of t1 missing */
    snprintf(want, sizeof want, "m.gguf: tensor_info[1].offset at byte %zu: data [%zu, %zu) past end of file (size %zu)",
             t1->offset, s.data + 32, s.data + 66, s.data + 65);
    expect_err_buf(p, s.data + 65, want);
    free(s.b.p);
}

/* Truncations inside key/values, in a file without tensors so that the
 * count checks leave them to the cursor. */
static void test_truncation_kvs(void **state)
{
    (void)state;
    tb b = {0};
    tb_hdr(&b, 3, 0, 2);
    tb_kv(&b, "name", GGUF_VT_STRING);
    size_t v0 = tb_str(&b, "tinyname");
    size_t k1 = tb_str(&b, "arr");
    size_t t1 = tb_u32(&b, GGUF_VT_ARRAY);
    tb_u32(&b, GGUF_VT_INT32);
    size_t cnt = tb_u64(&b, 3);
    tb_u32(&b, 1), tb_u32(&b, 2), tb_u32(&b, 3);
    char want[300];

    /* two kvs need 28 bytes */
    expect_err_buf(b.p, 51, "m.gguf: n_kv at byte 16: 2 key/values cannot fit in the 27 bytes left");
    assert_true(v0 + 8 + 4 >= 52);
    snprintf(want, sizeof want, "m.gguf: kv[0] 'name' at byte %zu: string length 8 past end of file", v0);
    expect_err_buf(b.p, v0 + 8 + 4, want);
    snprintf(want, sizeof want, "m.gguf: kv[1].key at byte %zu: unexpected end of file (need 8 bytes, 3 left)", k1);
    expect_err_buf(b.p, k1 + 3, want);
    snprintf(want, sizeof want, "m.gguf: kv[1].key at byte %zu: string length 3 past end of file", k1);
    expect_err_buf(b.p, k1 + 8 + 2, want);
    snprintf(want, sizeof want, "m.gguf: kv[1] 'arr' at byte %zu: unexpected end of file (need 4 bytes, 2 left)", t1);
    expect_err_buf(b.p, t1 + 2, want);
    snprintf(want, sizeof want, "m.gguf: kv[1] 'arr' at byte %zu: unexpected end of file (need 4 bytes, 0 left)", t1 + 4);
    expect_err_buf(b.p, t1 + 4, want);
    snprintf(want, sizeof want,
             "m.gguf: kv[1] 'arr' at byte %zu: array of 3 int32 (12 bytes) past end of file (4 bytes left)", cnt);
    expect_err_buf(b.p, cnt + 8 + 4, want);
    /* complete (no padding needed to open) */
    xf_err err = {{0}};
    gguf_file *f = open_tb(&b, &err);
    assert_non_null(f);
    assert_int_equal(f->data_offset, (b.n + 31) / 32 * 32);
    gguf_close(f);
    free(b.p);
}

/* Opens every prefix of a file: each must fail with one line naming the
 * file, or open with the same tables. Prefixes open exactly from min_ok on
 * (the end of the last tensor's data, or of the header without tensors):
 * only padding may be missing. */
static void check_all_prefixes(const uint8_t *p, size_t size, size_t min_ok)
{
    xf_err err = {{0}};
    gguf_file *full = gguf_open_mem(p, size, "full.gguf", &err);
    assert_non_null(full);
    for (size_t n = 0; n < size; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        assert_non_null(copy);
        memcpy(copy, p, n);
        xf_err e2 = {{0}};
        gguf_file *f = gguf_open_mem(copy, n, "cut.gguf", &e2);
        if (n >= min_ok) {
            if (!f)
                fail_msg("prefix %zu: %s", n, e2.msg);
            assert_int_equal(f->n_kv, full->n_kv);
            assert_int_equal(f->n_tensors, full->n_tensors);
            assert_int_equal(f->data_offset, full->data_offset);
            for (uint64_t i = 0; i < f->n_tensors; i++) {
                assert_int_equal(f->tensors[i].size, full->tensors[i].size);
                assert_int_equal(f->tensors[i].offset, full->tensors[i].offset);
                assert_memory_equal(f->tensors[i].data, full->tensors[i].data, (size_t)f->tensors[i].size);
            }
            gguf_close(f);
        } else {
            if (f)
                fail_msg("prefix %zu of %zu opened", n, size);
            assert_true(strncmp(e2.msg, "cut.gguf: ", 10) == 0);
            assert_null(strchr(e2.msg, '\n'));
            assert_non_null(strstr(e2.msg, " at byte "));
        }
        free(copy);
    }
    gguf_close(full);
}

static void test_every_truncation(void **state)
{
    (void)state;
    small s;
    small_build(&s);
    check_all_prefixes(s.b.p, s.b.n, s.b.n); /* no padding after the last tensor */
    free(s.b.p);

    tb b = {0};
    build_all_types(&b);
    size_t hdr_end = b.n;
    tb_pad(&b, 32);
    assert_true(b.n > hdr_end);
    check_all_prefixes(b.p, b.n, hdr_end);
    free(b.p);

    /* a written file */
    gguf_writer *w = gguf_writer_new(3, 32);
    const char *strs[] = {"a", "bc", ""};
    gguf_writer_set_arr_str(w, "s", strs, 3);
    gguf_writer_set_f32(w, "f", 1.0f);
    float x[12] = {0};
    int64_t ne[2] = {3, 4};
    assert_int_equal(gguf_writer_add_tensor(w, "x", XF_TYPE_F32, 2, ne, x, sizeof x), 0);
    int64_t ne2[1] = {5};
    assert_int_equal(gguf_writer_add_tensor(w, "y", XF_TYPE_F32, 1, ne2, x, 20), 0);
    uint8_t *mem;
    size_t size;
    xf_err err = {{0}};
    assert_int_equal(gguf_writer_to_mem(w, &mem, &size, &err), 0);
    /* y (20 bytes) is the last tensor, padded to 32 */
    assert_int_equal(size % 32, 0);
    check_all_prefixes(mem, size, size - 12);
    free(mem);
    gguf_writer_free(w);
}

/* Random byte changes in the header: open fails cleanly or succeeds, and a
 * file that opens has every tensor inside the buffer. */
static void test_fuzz_header(void **state)
{
    (void)state;
    small s;
    small_build(&s);
    uint64_t st = 12345;
    uint8_t *copy = malloc(s.b.n);
    int opened = 0, failed = 0;
    for (int it = 0; it < 20000; it++) {
        memcpy(copy, s.b.p, s.b.n);
        int flips = 1 + (int)(tu_rand_u64(&st) % 3);
        for (int k = 0; k < flips; k++) {
            size_t at = (size_t)(tu_rand_u64(&st) % s.hdr_end);
            uint64_t r = tu_rand_u64(&st);
            copy[at] = (r & 256) ? (uint8_t)r : (uint8_t)(copy[at] ^ (1u << (r % 8)));
        }
        xf_err err = {{0}};
        gguf_file *f = gguf_open_mem(copy, s.b.n, "fz.gguf", &err);
        if (f) {
            opened++;
            for (uint64_t i = 0; i < f->n_tensors; i++) {
                const uint8_t *d = f->tensors[i].data;
                assert_true(d >= copy && d + f->tensors[i].size <= copy + s.b.n);
            }
            gguf_close(f);
        } else {
            failed++;
            assert_true(strncmp(err.msg, "fz.gguf: ", 9) == 0);
            for (const char *c = err.msg; *c; c++)
                assert_true((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f);
        }
    }
    assert_true(opened > 0 && failed > 0);
    free(copy);
    free(s.b.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_valid),
        cmocka_unit_test(test_all_value_types_and_copy),
        cmocka_unit_test(test_getter_errors),
        cmocka_unit_test(test_roundtrip_default_alignment),
        cmocka_unit_test(test_roundtrip_alignment_64),
        cmocka_unit_test(test_writer_args),
        cmocka_unit_test(test_real_model),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_bad_magic_and_version),
        cmocka_unit_test(test_counts_past_end),
        cmocka_unit_test(test_string_lengths),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_value_types),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_alignment),
        cmocka_unit_test(test_tensor_info_errors),
        cmocka_unit_test(test_tensor_names),
        cmocka_unit_test(test_tensor_offsets),
        cmocka_unit_test(test_tensor_offset_overflow),
        cmocka_unit_test(test_truncation_boundaries),
        cmocka_unit_test(test_truncation_kvs),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_fuzz_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
