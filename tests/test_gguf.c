/* Tests of the GGUF reader and writer on valid files: round trips of every
 * value type, the writer's checks, the real default model, and errors of
 * opening. Hand-built corrupt files are test_gguf_corrupt.c. */
#include "gguf_bytes.h"

#include <sys/stat.h>
#include <unistd.h>

#include "gguf_writer.h"
#include "testutil.h"

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

/* --- writer -> file on disk -> reader, with tensors of several types ----- */

static const char *const RT_STRS[] = {"hello", "", "\xe2\x80\x94 dash", "tab\there"};
static const int32_t RT_INTS[] = {0, -1, INT32_MAX, INT32_MIN, 42};
static const float RT_FLOATS[] = {1.0f, -0.0f, 3.25f};

/* the tensors of the round trip: F32 [3,5], F16 [4,4,4], Q8_0 [32,1,2,1], Q4_K [256] */
typedef struct rt_data {
    float a[3 * 5];
    uint16_t h[64];
    uint8_t q[2 * 34];
    uint8_t k[144];
} rt_data;

static void rt_fill(rt_data *d)
{
    uint64_t st = 99;
    tu_fill_random(d->a, 15, &st, -2, 2);
    for (int i = 0; i < 64; i++)
        d->h[i] = (uint16_t)(0x3c00 + i);
    for (int i = 0; i < 68; i++)
        d->q[i] = (uint8_t)(i * 7);
    memset(d->k, 0x5a, sizeof d->k);
}

static void rt_set_kvs(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "gpt2"), 0);
    assert_int_equal(gguf_writer_set_u32(w, "x.u32", 7), 0);
    assert_int_equal(gguf_writer_set_f32(w, "x.f32", -2.5f), 0);
    assert_int_equal(gguf_writer_set_bool(w, "x.bool", false), 0);
    assert_int_equal(gguf_writer_set_arr_str(w, "x.strs", RT_STRS, 4), 0);
    assert_int_equal(gguf_writer_set_arr_i32(w, "x.ints", RT_INTS, 5), 0);
    assert_int_equal(gguf_writer_set_arr_f32(w, "x.floats", RT_FLOATS, 3), 0);
    assert_int_equal(gguf_writer_set_arr_f32(w, "x.none", NULL, 0), 0);
    /* setting a key again replaces the value in place (the type may change) */
    assert_int_equal(gguf_writer_set_u32(w, "x.u32", 8), 0);
    assert_int_equal(gguf_writer_set_u32(w, "x.bool", 1), 0);
    assert_int_equal(gguf_writer_set_bool(w, "x.bool", true), 0);
    assert_int_equal(gguf_writer_set_u32(w, "", 1), -1);
    assert_int_equal(gguf_writer_set_str(w, "x.null", NULL), -1);
}

static void rt_add_tensors(gguf_writer *w, const rt_data *d)
{
    int64_t ne_a[2] = {3, 5}, ne_h[3] = {4, 4, 4}, ne_q[4] = {32, 1, 2, 1}, ne_k[1] = {256};
    assert_int_equal(gguf_writer_add_tensor(w, "a", XF_TYPE_F32, 2, ne_a, d->a, sizeof d->a), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "blk.0.h", XF_TYPE_F16, 3, ne_h, d->h, sizeof d->h), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "q", XF_TYPE_Q8_0, 4, ne_q, d->q, sizeof d->q), 0);
    assert_int_equal(gguf_writer_add_tensor(w, "k", XF_TYPE_Q4_K, 1, ne_k, d->k, sizeof d->k), 0);
    /* rejected: duplicate name, wrong size, bad dims, unknown type, ragged row */
    assert_int_equal(gguf_writer_add_tensor(w, "a", XF_TYPE_F32, 2, ne_a, d->a, sizeof d->a), -1);
    assert_int_equal(gguf_writer_add_tensor(w, "a2", XF_TYPE_F32, 2, ne_a, d->a, sizeof d->a - 4), -1);
    assert_int_equal(gguf_writer_add_tensor(w, "a3", XF_TYPE_F32, 0, ne_a, d->a, sizeof d->a), -1);
    assert_int_equal(gguf_writer_add_tensor(w, "a4", 99, 2, ne_a, d->a, sizeof d->a), -1);
    int64_t ne_bad[1] = {33};
    assert_int_equal(gguf_writer_add_tensor(w, "a5", XF_TYPE_Q8_0, 1, ne_bad, d->q, 34), -1);
}

/* the kvs as rt_set_kvs left them; a non-default alignment adds one */
static void rt_check_kvs(const gguf_file *f, uint64_t alignment)
{
    xf_err err = {{0}};
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
        assert_true(gguf_str_eq(as[i], RT_STRS[i]));
    free(as);
    int32_t *ai;
    assert_int_equal(gguf_get_arr_i32(f, "x.ints", &ai, &n, &err), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(ai, RT_INTS, sizeof RT_INTS);
    free(ai);
    float *af;
    assert_int_equal(gguf_get_arr_f32(f, "x.floats", &af, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(af, RT_FLOATS, sizeof RT_FLOATS);
    free(af);
    assert_int_equal(gguf_get_arr_f32(f, "x.none", &af, &n, &err), 0);
    assert_int_equal(n, 0);
    free(af);
}

/* the tensors as rt_add_tensors gave them, in order, each aligned */
static void rt_check_tensors(const gguf_file *f, const rt_data *d, uint64_t alignment)
{
    assert_int_equal(f->n_tensors, 4);
    const gguf_tensor *t = gguf_find_tensor(f, "a");
    assert_non_null(t);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 3);
    assert_int_equal(t->ne[1], 5);
    assert_int_equal(t->type, XF_TYPE_F32);
    assert_int_equal(t->size, sizeof d->a);
    assert_memory_equal(t->data, d->a, sizeof d->a);
    const void *prev_end = (const uint8_t *)t->data + t->size;
    t = gguf_find_tensor(f, "blk.0.h");
    assert_int_equal(t->n_dims, 3);
    assert_int_equal(t->ne[2], 4);
    assert_int_equal(t->ne[3], 1);
    assert_int_equal(t->type, XF_TYPE_F16);
    assert_memory_equal(t->data, d->h, sizeof d->h);
    assert_true((const void *)t->data >= prev_end);
    t = gguf_find_tensor(f, "q");
    assert_int_equal(t->n_dims, 4);
    assert_int_equal(t->ne[2], 2);
    assert_int_equal(t->type, XF_TYPE_Q8_0);
    assert_int_equal(t->size, 68);
    assert_memory_equal(t->data, d->q, sizeof d->q);
    t = gguf_find_tensor(f, "k");
    assert_int_equal(t->type, XF_TYPE_Q4_K);
    assert_int_equal(t->size, 144);
    assert_memory_equal(t->data, d->k, sizeof d->k);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        assert_int_equal(f->tensors[i].offset % alignment, 0);
        assert_int_equal(((const uint8_t *)f->tensors[i].data - f->map) % alignment, 0);
    }
}

static void roundtrip(uint64_t alignment)
{
    gguf_writer *w = gguf_writer_new(3, alignment);
    assert_non_null(w);
    rt_data d;
    rt_fill(&d);
    rt_set_kvs(w);
    rt_add_tensors(w, &d);

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
    rt_check_kvs(f, alignment);
    rt_check_tensors(f, &d, alignment);
    gguf_close(f);
    free(mem);

    /* saving again over the file replaces it */
    uint32_t u;
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
