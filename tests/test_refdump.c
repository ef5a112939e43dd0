/* test_refdump: the safetensors reader and writer: the real reference dump,
 * a file written by the Python library (read it, and write the same bytes),
 * round trips of every dtype and odd names, the exact error text of each
 * malformed header, every truncation of a valid file, byte mutations, and
 * the writer's never-a-partial-file promise. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cmocka.h>

#include "refdump.h"
#include "testutil.h"

/* ------------------------------------------------------------ helpers */

static uint8_t *read_whole(const char *path, size_t *size)
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

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* u64 length + json (len bytes) + data_size bytes of 0xab */
static uint8_t *mk_file(const char *json, size_t len, size_t data_size, size_t *size)
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

static void expect_error_n(const char *json, size_t len, size_t data_size, const char *want)
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

static void expect_error(const char *json, size_t data_size, const char *want)
{
    expect_error_n(json, strlen(json), data_size, want);
}

static void assert_floats(const refdump *r, const char *name, const float *want, size_t n)
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

/* ------------------------------------------------- the real reference dump */

static void test_real_dump(void **state)
{
    (void)state;
    char path[1024];
    tu_src_path(path, sizeof path, TU_MODEL_REF);
    xf_err err = {{0}};
    refdump *r = refdump_open(path, &err);
    if (!r)
        fail_msg("%s", err.msg);
    /* 73 JSON keys: 72 tensors and "__metadata__" (Python's safe_open lists 72) */
    assert_int_equal(refdump_count(r), 72);
    assert_string_equal(refdump_path(r), path);
    assert_string_equal(refdump_meta(r, "arch"), "gpt2");
    assert_string_equal(refdump_meta(r, "model"), "tiny-shakespeare-gpt2-f16.gguf");
    assert_null(refdump_meta(r, "nope"));

    const refdump_tensor *tok = refdump_find(r, "prompt.tokens");
    assert_non_null(tok);
    assert_int_equal(tok->dtype, REFDUMP_I32);
    assert_int_equal(tok->ndim, 1);
    assert_int_equal(tok->shape[0], 10);
    assert_int_equal(tok->nbytes, 40);
    const int32_t want_tok[10] = {33676, 4720, 25, 198, 2061, 1657, 832, 331, 8623, 4324};
    int32_t ids[11];
    ids[10] = -7;
    assert_int_equal(refdump_read_i32(r, tok, ids, &err), 0);
    assert_memory_equal(ids, want_tok, sizeof want_tok);
    assert_int_equal(ids[10], -7);
    float ftok[10];
    assert_int_equal(refdump_read_f32(r, tok, ftok, &err), 0);
    for (int i = 0; i < 10; i++)
        assert_true(ftok[i] == (float)want_tok[i]);

    const refdump_tensor *qkv = refdump_find(r, "blk.0.qkv");
    assert_non_null(qkv);
    assert_int_equal(qkv->dtype, REFDUMP_F32);
    assert_int_equal(qkv->ndim, 2);
    assert_int_equal(qkv->shape[0], 10);
    assert_int_equal(qkv->shape[1], 576);
    assert_int_equal(refdump_numel(qkv), 5760);
    assert_int_equal(qkv->nbytes, 23040);
    /* header of 6456 bytes, tensor at data offset 117600 (read with Python) */
    assert_int_equal(qkv->file_offset, 8 + 6456 + 117600);
    float *q = malloc(5760 * sizeof *q); /* [10, 576] */
    assert_non_null(q);
    tu_poison(q, 5760);
    assert_int_equal(refdump_read_f32(r, qkv, q, &err), 0);
    /* values as numpy reads them */
    assert_true(q[0] == 0x1.e4bad6p-2f);
    assert_true(q[1] == -0x1.139cp-3f);
    assert_true(q[2] == 0x1.0c0df8p-10f);
    assert_true(q[9 * 576 + 575] == -0x1.281e94p-7f);
    free(q);

    /* a float tensor is no integer tensor; the offset is that of its "dtype" value */
    char want[1200];
    snprintf(want, sizeof want, "%s: tensor \"blk.0.qkv\" dtype at byte 898: F32 is not an integer type",
             path);
    int32_t dummy[1];
    assert_int_equal(refdump_read_i32(r, qkv, dummy, &err), -1);
    assert_string_equal(err.msg, want);

    /* file order of data offsets; the Python writer leaves no gaps */
    size_t size;
    uint8_t *whole = read_whole(path, &size);
    uint64_t pos = refdump_at(r, 0)->file_offset;
    assert_int_equal(pos, 8 + 6456);
    for (size_t i = 0; i < refdump_count(r); i++) {
        const refdump_tensor *t = refdump_at(r, i);
        assert_int_equal(t->file_offset, pos);
        assert_ptr_equal(refdump_find(r, t->name), t);
        assert_memory_equal(t->data, whole + t->file_offset, t->nbytes);
        pos += t->nbytes;
    }
    assert_int_equal(pos, size);
    assert_null(refdump_at(r, 72));
    assert_null(refdump_find(r, "blk.0.qkv "));
    assert_null(refdump_find(r, "blk.0"));
    free(whole);
    refdump_close(r);
}

/* ------------------------------------- a file of the Python library */

/* the tensors of tests/fixtures/st/make_fixtures.py */
static const float PY_F32[6] = {1.5f, -2.25f, 0.125f, 1e30f, -0.0f, 7.0f};
static const uint16_t PY_F16[4] = {0x3c00, 0xc000, 0x7bff, 0x0001};
static const uint16_t PY_BF16[2] = {0x3f80, 0xc040};
static const double PY_F64[2] = {0.1, -1e300};
static const int32_t PY_I32[3] = {1, -2, 2147483647};
static const int64_t PY_I64[2] = {-5, 4000000000};
static const int8_t PY_I8[2] = {-128, 127};
static const uint8_t PY_U8[3] = {0, 200, 255};
static const uint8_t PY_BOOL[2] = {1, 0};
static const float PY_SCALAR[1] = {42.0f};
static const uint16_t PY_U16[1] = {65535};
static const uint32_t PY_U32[1] = {4294967295u};
static const uint64_t PY_U64[1] = {3};
static const int16_t PY_I16[2] = {-32768, 5};
static const uint8_t PY_E4M3[4] = {0x38, 0xc0, 0x7e, 0x01};
static const uint8_t PY_E5M2[2] = {0x3c, 0x7c};

static void add(refdump_writer *w, const char *name, int dtype, int ndim, const int64_t *shape,
                const void *data)
{
    xf_err err = {{0}};
    if (refdump_writer_add(w, name, dtype, ndim, shape, data, &err))
        fail_msg("%s", err.msg);
}

/* the same tensors as the Python script, added in another order */
static refdump_writer *py_writer(void)
{
    refdump_writer *w = refdump_writer_new();
    assert_non_null(w);
    const int64_t s1[] = {1}, s2[] = {2}, s3[] = {3}, s4[] = {4}, s23[] = {2, 3}, s03[] = {0, 3};
    add(w, "q.f8e5m2", REFDUMP_F8_E5M2, 1, s2, PY_E5M2);
    add(w, "p.f8e4m3", REFDUMP_F8_E4M3, 1, s4, PY_E4M3);
    add(w, "o.i16", REFDUMP_I16, 1, s2, PY_I16);
    add(w, "n.u64", REFDUMP_U64, 1, s1, PY_U64);
    add(w, "m.u32", REFDUMP_U32, 1, s1, PY_U32);
    add(w, "l\nctl\x01", REFDUMP_U16, 1, s1, PY_U16);
    add(w, "k.empty", REFDUMP_F32, 2, s03, NULL);
    add(w, "j.scalar", REFDUMP_F32, 0, NULL, PY_SCALAR);
    add(w, "i.bool", REFDUMP_BOOL, 1, s2, PY_BOOL);
    add(w, "h.u8", REFDUMP_U8, 1, s3, PY_U8);
    add(w, "g.i8", REFDUMP_I8, 1, s2, PY_I8);
    add(w, "f.i64", REFDUMP_I64, 1, s2, PY_I64);
    add(w, "e.i32", REFDUMP_I32, 1, s3, PY_I32);
    add(w, "d.f64\xf0\x9f\x98\x80", REFDUMP_F64, 1, s2, PY_F64);
    add(w, "c.bf16\xc3\xa9", REFDUMP_BF16, 1, s2, PY_BF16);
    add(w, "b\"q\\uote", REFDUMP_F16, 1, s4, PY_F16);
    add(w, "a.f32", REFDUMP_F32, 2, s23, PY_F32);
    xf_err err = {{0}};
    assert_int_equal(refdump_writer_meta(w, "format", "pt", &err), 0);
    return w;
}

static void test_python_file(void **state)
{
    (void)state;
    char path[1024];
    tu_src_path(path, sizeof path, "tests/fixtures/st/py_mixed.safetensors");
    xf_err err = {{0}};
    refdump *r = refdump_open(path, &err);
    if (!r)
        fail_msg("%s", err.msg);
    assert_int_equal(refdump_count(r), 17);
    assert_string_equal(refdump_meta(r, "format"), "pt");

    const refdump_tensor *a = refdump_find(r, "a.f32");
    assert_non_null(a);
    assert_int_equal(a->ndim, 2);
    assert_int_equal(a->shape[0], 2);
    assert_int_equal(a->shape[1], 3);
    assert_floats(r, "a.f32", PY_F32, 6);
    assert_int_equal(refdump_find(r, "b\"q\\uote")->dtype, REFDUMP_F16);
    assert_floats(r, "b\"q\\uote", (const float[]){1.0f, -2.0f, 65504.0f, 0x1p-24f}, 4);
    assert_int_equal(refdump_find(r, "c.bf16\xc3\xa9")->dtype, REFDUMP_BF16);
    assert_floats(r, "c.bf16\xc3\xa9", (const float[]){1.0f, -3.0f}, 2);
    assert_floats(r, "d.f64\xf0\x9f\x98\x80", (const float[]){0.1f, -INFINITY}, 2);
    assert_floats(r, "e.i32", (const float[]){1.0f, -2.0f, 2147483648.0f}, 3);
    assert_floats(r, "f.i64", (const float[]){-5.0f, 4e9f}, 2);
    assert_floats(r, "g.i8", (const float[]){-128.0f, 127.0f}, 2);
    assert_floats(r, "h.u8", (const float[]){0.0f, 200.0f, 255.0f}, 3);
    assert_floats(r, "i.bool", (const float[]){1.0f, 0.0f}, 2);
    const refdump_tensor *sc = refdump_find(r, "j.scalar");
    assert_int_equal(sc->ndim, 0);
    assert_floats(r, "j.scalar", PY_SCALAR, 1);
    const refdump_tensor *em = refdump_find(r, "k.empty");
    assert_int_equal(em->ndim, 2);
    assert_int_equal(em->shape[0], 0);
    assert_int_equal(em->nbytes, 0);
    assert_floats(r, "k.empty", NULL, 0);
    assert_floats(r, "l\nctl\x01", (const float[]){65535.0f}, 1);
    assert_floats(r, "m.u32", (const float[]){4294967295.0f}, 1);
    assert_floats(r, "n.u64", (const float[]){3.0f}, 1);
    assert_floats(r, "o.i16", (const float[]){-32768.0f, 5.0f}, 2);
    assert_floats(r, "p.f8e4m3", (const float[]){1.0f, -2.0f, 448.0f, 0x1p-9f}, 4);
    assert_floats(r, "q.f8e5m2", (const float[]){1.0f, INFINITY}, 2);

    /* integers: exact where they fit, the offending element named where not */
    int32_t iv[4];
    assert_int_equal(refdump_read_i32(r, refdump_find(r, "e.i32"), iv, &err), 0);
    assert_memory_equal(iv, PY_I32, sizeof PY_I32);
    assert_int_equal(refdump_read_i32(r, refdump_find(r, "o.i16"), iv, &err), 0);
    assert_int_equal(iv[0], -32768);
    assert_int_equal(iv[1], 5);
    assert_int_equal(refdump_read_i32(r, refdump_find(r, "n.u64"), iv, &err), 0);
    assert_int_equal(iv[0], 3);
    assert_int_equal(refdump_read_i32(r, refdump_find(r, "i.bool"), iv, &err), 0);
    assert_int_equal(iv[0], 1);
    assert_int_equal(iv[1], 0);
    char want[1200];
    /* header 1088 bytes; f.i64 at data offset 8; element 1 eight bytes further */
    snprintf(want, sizeof want,
             "%s: tensor \"f.i64\" data at byte %d: element 1 is 4000000000, outside int32", path,
             8 + 1088 + 8 + 8);
    assert_int_equal(refdump_read_i32(r, refdump_find(r, "f.i64"), iv, &err), -1);
    assert_string_equal(err.msg, want);
    snprintf(want, sizeof want,
             "%s: tensor \"m.u32\" data at byte %d: element 0 is 4294967295, outside int32", path,
             8 + 1088 + 68);
    assert_int_equal(refdump_read_i32(r, refdump_find(r, "m.u32"), iv, &err), -1);
    assert_string_equal(err.msg, want);
    refdump_close(r);
}

/* our writer and the Python library make the same bytes from the same tensors */
static void test_writer_matches_python(void **state)
{
    (void)state;
    char path[1024], tmp[512];
    tu_src_path(path, sizeof path, "tests/fixtures/st/py_mixed.safetensors");
    size_t psize;
    uint8_t *py = read_whole(path, &psize);
    refdump_writer *w = py_writer();
    xf_err err = {{0}};
    uint8_t *mine;
    size_t msize;
    assert_int_equal(refdump_writer_to_mem(w, &mine, &msize, &err), 0);
    assert_int_equal(msize, psize);
    assert_memory_equal(mine, py, psize);
    free(mine);

    tu_tmp_path(tmp, sizeof tmp, ".safetensors");
    assert_int_equal(refdump_writer_save(w, tmp, &err), 0);
    size_t fsize;
    uint8_t *file = read_whole(tmp, &fsize);
    assert_int_equal(fsize, psize);
    assert_memory_equal(file, py, psize);
    char tmp2[600];
    snprintf(tmp2, sizeof tmp2, "%s.tmp", tmp);
    assert_false(file_exists(tmp2));
    free(file);
    unlink(tmp);
    refdump_writer_free(w);
    free(py);
}

/* ------------------------------------------------------- round trips */

static void test_round_trip(void **state)
{
    (void)state;
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    refdump_writer *w = refdump_writer_new();
    assert_non_null(w);
    xf_err err = {{0}};

    /* names that need escaping in JSON and in messages */
    const char *names[] = {
        "x\"q",      "back\\slash",    "unicode \xc3\xa9\xe6\xbc\xa2\xf0\x9f\x98\x80",
        "tab\there", "ctl\x1f\x7f",    "blk.0.kq_soft",
        "/slash/",   "{\"json\":[1]}",
    };
    enum { NN = sizeof names / sizeof names[0] };
    const int dtypes[NN] = {REFDUMP_F32, REFDUMP_F16, REFDUMP_BF16, REFDUMP_F64,
                            REFDUMP_I32, REFDUMP_I64, REFDUMP_I8,   REFDUMP_U8};
    int64_t shapes[NN][3] = {{3, 5, 7}, {2, 9, 1}, {4, 4, 4}, {1, 1, 13},
                             {7, 3, 1}, {2, 2, 3}, {5, 1, 3}, {1, 3, 3}};
    uint8_t *data[NN];
    size_t bytes[NN];
    for (int i = 0; i < NN; i++) {
        bytes[i] = (size_t)(shapes[i][0] * shapes[i][1] * shapes[i][2]) * refdump_dtype_size(dtypes[i]);
        data[i] = malloc(bytes[i]);
        assert_non_null(data[i]);
        for (size_t k = 0; k < bytes[i]; k++)
            data[i][k] = (uint8_t)tu_rand_u64(&rng);
        if (dtypes[i] == REFDUMP_F32) { /* f32 values the test can compare after conversion */
            float *f = (float *)data[i];
            tu_fill_random(f, bytes[i] / 4, &rng, -4.0f, 4.0f);
        }
        assert_int_equal(refdump_writer_add(w, names[i], dtypes[i], 3, shapes[i], data[i], &err), 0);
    }
    /* adding copies: scribbling on the caller's buffer afterwards changes nothing */
    uint8_t saved0 = data[0][0];
    data[0][0] ^= 0xff;
    assert_int_equal(refdump_writer_meta(w, "note", "line1\nline2 \"quoted\" \xe2\x9c\x93", &err), 0);
    assert_int_equal(refdump_writer_meta(w, "a", "first", &err), 0);
    assert_int_equal(refdump_writer_meta(w, "a", "replaced", &err), 0);

    char path[512];
    tu_tmp_path(path, sizeof path, ".safetensors");
    assert_int_equal(refdump_writer_save(w, path, &err), 0);
    data[0][0] = saved0;

    refdump *r = refdump_open(path, &err);
    if (!r)
        fail_msg("%s", err.msg);
    assert_int_equal(refdump_count(r), NN);
    assert_string_equal(refdump_meta(r, "note"), "line1\nline2 \"quoted\" \xe2\x9c\x93");
    assert_string_equal(refdump_meta(r, "a"), "replaced");
    /* the header is padded so that the data starts on 8 bytes */
    assert_int_equal(refdump_at(r, 0)->file_offset % 8, 0);
    for (int i = 0; i < NN; i++) {
        const refdump_tensor *t = refdump_find(r, names[i]);
        if (!t)
            fail_msg("tensor %d not found", i);
        assert_string_equal(t->name, names[i]);
        assert_int_equal(t->dtype, dtypes[i]);
        assert_int_equal(t->ndim, 3);
        for (int d = 0; d < 3; d++)
            assert_int_equal(t->shape[d], shapes[i][d]);
        assert_int_equal(t->nbytes, bytes[i]);
        assert_memory_equal(t->data, data[i], bytes[i]);
    }
    const refdump_tensor *t0 = refdump_find(r, names[0]);
    float got[105];
    tu_poison(got, 105);
    assert_int_equal(refdump_read_f32(r, t0, got, &err), 0);
    assert_memory_equal(got, data[0], 105 * 4);
    /* data order: the 8-byte dtypes first, then 4, 2, 1 (as the Python library) */
    const int want_order[NN] = {5, 3, 0, 4, 2, 1, 6, 7}; /* I64 F64 F32 I32 BF16 F16 I8 U8 */
    for (int i = 0; i < NN; i++)
        assert_string_equal(refdump_at(r, (size_t)i)->name, names[want_order[i]]);
    refdump_close(r);

    /* saving again replaces the file whole */
    const int64_t one[] = {1};
    const float v = 2.5f;
    refdump_writer *w2 = refdump_writer_new();
    add(w2, "only", REFDUMP_F32, 1, one, &v);
    assert_int_equal(refdump_writer_save(w2, path, &err), 0);
    r = refdump_open(path, &err);
    assert_non_null(r);
    assert_int_equal(refdump_count(r), 1);
    assert_null(refdump_meta(r, "note"));
    assert_floats(r, "only", &v, 1);
    refdump_close(r);
    refdump_writer_free(w2);

    /* an empty writer makes a valid empty file */
    refdump_writer *w3 = refdump_writer_new();
    uint8_t *buf;
    size_t size;
    assert_int_equal(refdump_writer_to_mem(w3, &buf, &size, &err), 0);
    assert_int_equal(size, 16);
    assert_memory_equal(buf, "\x08\0\0\0\0\0\0\0{}      ", 16);
    r = refdump_open_mem(buf, size, "empty.st", &err);
    assert_non_null(r);
    assert_int_equal(refdump_count(r), 0);
    assert_null(refdump_at(r, 0));
    assert_null(refdump_find(r, "x"));
    refdump_close(r);
    free(buf);
    refdump_writer_free(w3);

    unlink(path);
    for (int i = 0; i < NN; i++)
        free(data[i]);
    refdump_writer_free(w);
}

/* escapes a reader must decode: \uXXXX, surrogate pairs, the short forms, whitespace */
static void test_json_escapes(void **state)
{
    (void)state;
    const char *json =
        "{ \"\\ud83d\\ude00\\u00e9\\/\\b\\f\\n\\r\\t\\\"\\\\\" :\n\t{\"shape\" : [ ] , \"dtype\":\"U8\","
        "\"data_offsets\":[ 0 , 1 ]} , \"__metadata__\" : { \"k\\u0041\" : \"\" } }   ";
    size_t size;
    uint8_t *b = mk_file(json, strlen(json), 1, &size);
    xf_err err = {{0}};
    refdump *r = refdump_open_mem(b, size, "esc.st", &err);
    if (!r)
        fail_msg("%s", err.msg);
    assert_int_equal(refdump_count(r), 1);
    assert_string_equal(refdump_at(r, 0)->name, "\xf0\x9f\x98\x80\xc3\xa9/\b\f\n\r\t\"\\");
    assert_int_equal(refdump_at(r, 0)->ndim, 0);
    assert_string_equal(refdump_meta(r, "kA"), "");
    int32_t v;
    assert_int_equal(refdump_read_i32(r, refdump_at(r, 0), &v, &err), 0);
    assert_int_equal(v, 0xab);
    refdump_close(r);
    free(b);
}

/* ------------------------------------------------------ malformed files */

static void test_malformed_length(void **state)
{
    (void)state;
    xf_err err = {{0}};
    /* empty file, in memory and on disk */
    refdump *r = refdump_open_mem(NULL, 0, "bad.st", &err);
    assert_null(r);
    assert_string_equal(
        err.msg,
        "bad.st: header length at byte 0: the file is 0 bytes, too short for the 8-byte header length");
    char path[512], want[1200];
    tu_tmp_path(path, sizeof path, ".st");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fclose(f);
    assert_null(refdump_open(path, &err));
    snprintf(want, sizeof want,
             "%s: header length at byte 0: the file is 0 bytes, too short for the 8-byte header length",
             path);
    assert_string_equal(err.msg, want);
    unlink(path);

    uint8_t b[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    assert_null(refdump_open_mem(b, 5, "bad.st", &err));
    assert_string_equal(
        err.msg,
        "bad.st: header length at byte 0: the file is 5 bytes, too short for the 8-byte header length");
    assert_null(refdump_open_mem(b, 10, "bad.st", &err));
    assert_string_equal(err.msg, "bad.st: header length at byte 0: not a safetensors file (header length 100 "
                                 "bytes is larger than the file)");
    uint64_t huge = 1ULL << 63;
    memcpy(b, &huge, 8);
    assert_null(refdump_open_mem(b, 10, "bad.st", &err));
    assert_string_equal(err.msg, "bad.st: header length at byte 0: not a safetensors file (header length "
                                 "9223372036854775808 bytes is larger than the file)");
    /* over the limit yet inside the file: 100 MB of untouched anonymous pages */
    size_t big = REFDUMP_MAX_HEADER + 16;
    uint8_t *m = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(m != MAP_FAILED);
    uint64_t over = REFDUMP_MAX_HEADER + 1ULL;
    memcpy(m, &over, 8);
    assert_null(refdump_open_mem(m, big, "bad.st", &err));
    assert_string_equal(err.msg,
                        "bad.st: header length at byte 0: 100000001 bytes is over the limit of 100000000");
    munmap(m, big);

    /* files that do not exist or are not files */
    assert_null(refdump_open("/nonexistent-xfdb-dir/x.safetensors", &err));
    assert_string_equal(err.msg,
                        "/nonexistent-xfdb-dir/x.safetensors: cannot open: No such file or directory");
    assert_null(refdump_open("/", &err));
    assert_string_equal(err.msg, "/: not a regular file");
}

/* issue 14 item 7, issue 15: a text file given as a reference is "not a
 * safetensors file", and no message quotes its bytes (before: "header length
 * at byte 0: 8031924123371070824 bytes is over the limit", and JSON errors
 * that echoed the text around them) */
static void test_not_safetensors(void **state)
{
    (void)state;
    static const char text[] = "This is a text file, not a safetensors file: s3cr3t\n";
    char path[512], want[1200];
    tu_tmp_path(path, sizeof path, ".txt");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    xf_err err = {{0}};
    assert_null(refdump_open(path, &err));
    uint64_t n;
    memcpy(&n, text, 8);
    snprintf(want, sizeof want,
             "%s: header length at byte 0: not a safetensors file (header length %" PRIu64
             " bytes is larger than the file)",
             path, n);
    assert_string_equal(err.msg, want);
    unlink(path);
    /* a JSON syntax error names the offset, not the text near it */
    static const char *bad[] = {"{\"a\" s3cr3t}", "{\"a\":{\"dtype\":s3cr3t}}", "{\"a\":\"b\"}s3cr3t",
                                "{\"s3cr3t\xff\":1}",
                                "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
                                "\"data_offsets\":[0,4],\"\\u00733cr3t\":[99999999999999999999]}}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t size;
        uint8_t *b = mk_file(bad[i], strlen(bad[i]), 4, &size);
        assert_null(refdump_open_mem(b, size, "bad.st", &err));
        if (strstr(err.msg, "3cr3t") || !strstr(err.msg, " at byte "))
            fail_msg("%s -> %s", bad[i], err.msg);
        free(b);
    }
}

static void test_malformed_json(void **state)
{
    (void)state;
    expect_error_n("", 0, 0, "bad.st: header at byte 8: not a JSON object (the first byte must be '{')");
    expect_error("[1,2]", 0, "bad.st: header at byte 8: not a JSON object (the first byte must be '{')");
    expect_error(" {}", 0, "bad.st: header at byte 8: not a JSON object (the first byte must be '{')");
    expect_error("\"a\"", 0, "bad.st: header at byte 8: not a JSON object (the first byte must be '{')");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]", 4,
                 "bad.st: header at byte 39: the JSON ends before it is complete");
    expect_error("{\"a\"", 4, "bad.st: header at byte 12: the JSON ends before it is complete");
    expect_error("{\"ab", 4, "bad.st: header at byte 12: the JSON ends before it is complete");
    expect_error("{}  x", 0, "bad.st: header at byte 12: only spaces may follow the JSON object");
    expect_error("{}\n", 0, "bad.st: header at byte 10: only spaces may follow the JSON object");
    expect_error("{}{}", 0, "bad.st: header at byte 10: only spaces may follow the JSON object");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},}", 4,
                 "bad.st: header at byte 63: string or '}' expected");
    expect_error("{\"a\":[1]}", 4, "bad.st: tensor \"a\" at byte 13: expected an object, found an array");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4,
                 "bad.st: tensor \"a\" at byte 13: missing field \"data_offsets\"");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 4,
                 "bad.st: tensor \"a\" at byte 61: unknown field \"extra\"");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                 "bad.st: tensor \"a\" at byte 40: duplicate field \"shape\" (first at byte 28)");
    expect_error("{\"a\":{\"dtype\":1,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                 "bad.st: tensor \"a\" dtype at byte 22: expected a string, found an integer");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,],\"data_offsets\":[0,4]}}", 4,
                 "bad.st: header at byte 40: unexpected token");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
                 "bad.st: tensor \"a\" shape at byte 37: expected an integer, found a fraction or exponent");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4,
                 "bad.st: header at byte 38: invalid token");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4,
                 "bad.st: tensor \"a\" data_offsets at byte 55: expected [begin, end], found 3 values");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,99999999999999999999]}}", 4,
                 "bad.st: header at byte 78: number out of range (integers must be below 2^63)");
    expect_error("{\"__metadata__\":{\"k\":1}}", 0,
                 "bad.st: __metadata__ \"k\" at byte 29: the value must be a string");
    expect_error("{\"__metadata__\":[]}", 0,
                 "bad.st: __metadata__ at byte 24: expected an object, found an array");
    expect_error("{\"__metadata__\":{\"k\":\"1\",\"j\":\"2\",\"k\":\"3\"}}", 0,
                 "bad.st: __metadata__ at byte 41: duplicate key \"k\" (first at byte 25)");
    expect_error("{\"__metadata__\":{},\"__metadata__\":{}}", 0,
                 "bad.st: header at byte 27: duplicate key \"__metadata__\" (first at byte 9)");
}

static void test_malformed_strings(void **state)
{
    (void)state;
    expect_error("{\"a\\q\":{}}", 0, "bad.st: header at byte 13: invalid escape");
    expect_error("{\"\\u12G4\":{}}", 0, "bad.st: header at byte 15: invalid escape");
    expect_error("{\"x\\ud800y\":{}}", 0, "bad.st: header at byte 19: unpaired surrogate in a \\u escape");
    expect_error("{\"x\\udc00\":{}}", 0, "bad.st: header at byte 18: unpaired surrogate in a \\u escape");
    expect_error("{\"x\\ud800\\u0041\":{}}", 0,
                 "bad.st: header at byte 24: unpaired surrogate in a \\u escape");
    expect_error("{\"x\\u0000\":{}}", 0,
                 "bad.st: header at byte 18: \\u0000 (NUL) is not allowed in a string");
    expect_error("{\"a\tb\":{}}", 0,
                 "bad.st: header at byte 11: control byte in a string (it must be escaped)");
    expect_error_n("{\"a\0b\":{}}", 10, 0,
                   "bad.st: header at byte 11: control byte in a string (it must be escaped)");
    /* invalid UTF-8 in a name: a stray byte, an overlong, an encoded surrogate, a cut sequence */
    expect_error("{\"a\xff\":{}}", 0, "bad.st: header at byte 11: invalid UTF-8");
    expect_error("{\"a\xc0\xaf\":{}}", 0, "bad.st: header at byte 11: invalid UTF-8");
    expect_error("{\"a\xed\xa0\x80\":{}}", 0, "bad.st: header at byte 11: invalid UTF-8");
    expect_error("{\"a\xe2\x9c\":{}}", 0, "bad.st: header at byte 11: invalid UTF-8");
    expect_error("{\"a\xf4\x90\x80\x80\":{}}", 0, "bad.st: header at byte 11: invalid UTF-8");
    expect_error("{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                 "bad.st: tensor name at byte 9: empty name");

    /* an untrusted name in a message: control bytes escaped, quotes escaped, cut at 64 bytes */
    char json[512], want[512], name_shown[300];
    char longname[80];
    memset(longname, 'a', sizeof longname);
    longname[70] = '\0';
    snprintf(json, sizeof json, "{\"x\\n\\\"y%s\":{\"dtype\":\"F12\",\"shape\":[1],\"data_offsets\":[0,4]}}",
             longname);
    /* x \n " y then 60 a's make the first 64 bytes */
    snprintf(name_shown, sizeof name_shown, "x\\x0a\\x22y%.60s...", longname);
    snprintf(want, sizeof want, "bad.st: tensor \"%s\" dtype at byte %d: unknown dtype \"F12\"", name_shown,
             (int)(8 + (strstr(json, "\"F12\"") - json)));
    expect_error(json, 4, want);
    /* a hostile dtype string is escaped too */
    expect_error("{\"a\":{\"dtype\":\"F\\u001b[31m\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                 "bad.st: tensor \"a\" dtype at byte 22: unknown dtype \"F\\x1b[31m\"");
}

static void test_malformed_tensors(void **state)
{
    (void)state;
    expect_error("{\"a\":{\"dtype\":\"F12\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                 "bad.st: tensor \"a\" dtype at byte 22: unknown dtype \"F12\"");
    expect_error("{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                 "bad.st: tensor \"a\" dtype at byte 22: unknown dtype \"f32\"");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20,
                 "bad.st: tensor \"a\" data_offsets at byte 57: [0, 20] is 20 bytes but F32 [2, 3] needs 24");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4,
                 "bad.st: tensor \"a\" data_offsets at byte 55: end 8 is past the end of the data (4 bytes)");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
                 "bad.st: tensor \"a\" data_offsets at byte 55: begin 8 > end 4");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                 12, "bad.st: tensor name at byte 115: duplicate name \"a\" (first at byte 9)");
    expect_error(
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-3],\"data_offsets\":[0,4]}}", 4,
        "bad.st: tensor \"a\" shape at byte 39: negative number (only non-negative integers are allowed)");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-0,4]}}", 4,
                 "bad.st: tensor \"a\" data_offsets at byte 56: negative number (only non-negative integers "
                 "are allowed)");
    expect_error("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
                 "bad.st: tensor \"a\" shape at byte 35: the element count overflows 64 bits");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4]}}", 4,
                 "bad.st: tensor \"a\" shape at byte 36: the size in bytes overflows 64 bits");
    expect_error("{\"a\":{\"dtype\":\"U8\",\"shape\":[9223372036854775808],\"data_offsets\":[0,4]}}", 4,
                 "bad.st: header at byte 55: number out of range (integers must be below 2^63)");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                 "bad.st: tensor \"a\" shape at byte 53: more than 8 dimensions");
    /* a zero dim may not hide a huge other dim's bytes: [0, 2^62] F32 is 0 bytes, valid */
    size_t size;
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[0,4611686018427387904],\"data_offsets\":[0,0]}}";
    uint8_t *b = mk_file(ok, strlen(ok), 0, &size);
    xf_err err = {{0}};
    refdump *r = refdump_open_mem(b, size, "ok.st", &err);
    if (!r)
        fail_msg("%s", err.msg);
    assert_int_equal(refdump_numel(refdump_at(r, 0)), 0);
    refdump_close(r);
    free(b);
}

/* ------------------------------------------------- truncations, mutations */

static uint8_t *small_valid(size_t *size)
{
    refdump_writer *w = refdump_writer_new();
    assert_non_null(w);
    const int64_t s2[] = {2, 2}, s3[] = {3};
    const float f[4] = {1, 2, 3, 4};
    const int32_t i[3] = {7, 8, 9};
    const uint8_t u[3] = {1, 2, 3};
    add(w, "blk.0.q", REFDUMP_F32, 2, s2, f);
    add(w, "prompt.tokens", REFDUMP_I32, 1, s3, i);
    add(w, "n\xc3\xa9\\\"", REFDUMP_U8, 1, s3, u); /* last in data order, not empty */
    xf_err err = {{0}};
    assert_int_equal(refdump_writer_meta(w, "arch", "gpt2", &err), 0);
    uint8_t *buf;
    assert_int_equal(refdump_writer_to_mem(w, &buf, size, &err), 0);
    refdump_writer_free(w);
    return buf;
}

static void test_every_truncation(void **state)
{
    (void)state;
    size_t size;
    uint8_t *full = small_valid(&size);
    xf_err err = {{0}};
    refdump *r = refdump_open_mem(full, size, "trunc.st", &err);
    if (!r)
        fail_msg("%s", err.msg);
    assert_int_equal(refdump_count(r), 3);
    refdump_close(r);
    for (size_t len = 0; len < size; len++) {
        /* an exact-size copy, so that a sanitizer sees any read past it */
        uint8_t *cut = malloc(len ? len : 1);
        assert_non_null(cut);
        memcpy(cut, full, len);
        err.msg[0] = '\0';
        r = refdump_open_mem(len ? cut : NULL, len, "trunc.st", &err);
        if (r)
            fail_msg("truncation to %zu of %zu bytes was accepted", len, size);
        assert_int_equal(strncmp(err.msg, "trunc.st: ", 10), 0);
        assert_null(strchr(err.msg, '\n'));
        free(cut);
    }
    /* the JSON itself cut, its length field agreeing: none may open (where
     * only padding was cut the JSON is whole, but then the data is gone) */
    uint64_t n;
    memcpy(&n, full, 8);
    for (uint64_t k = 0; k < n; k++) {
        uint8_t *cut = malloc(8 + k ? 8 + k : 1);
        assert_non_null(cut);
        memcpy(cut, full, 8 + k);
        memcpy(cut, &k, 8);
        r = refdump_open_mem(cut, 8 + k, "trunc.st", &err);
        if (r)
            fail_msg("JSON cut to %" PRIu64 " bytes was accepted", k);
        assert_int_equal(strncmp(err.msg, "trunc.st: ", 10), 0);
        free(cut);
    }
    free(full);
}

/* Replaces bytes of a valid file; whatever opens must describe memory inside
 * the buffer, whatever fails must say why in one line. */
static void check_mutant(const uint8_t *buf, size_t size)
{
    xf_err err = {{0}};
    refdump *r = refdump_open_mem(buf, size, "mut.st", &err);
    if (!r) {
        assert_int_equal(strncmp(err.msg, "mut.st: ", 8), 0);
        assert_null(strchr(err.msg, '\n'));
        return;
    }
    for (size_t i = 0; i < refdump_count(r); i++) {
        const refdump_tensor *t = refdump_at(r, i);
        assert_true(t->file_offset <= size && t->nbytes <= size - t->file_offset);
        assert_int_equal((uint64_t)refdump_numel(t) * refdump_dtype_size(t->dtype), t->nbytes);
        assert_ptr_equal(refdump_find(r, t->name), t);
        float f[64];
        if (refdump_numel(t) <= 64)
            assert_int_equal(refdump_read_f32(r, t, f, &err), 0);
    }
    refdump_close(r);
}

static void test_mutations(void **state)
{
    (void)state;
    size_t size;
    uint8_t *full = small_valid(&size);
    uint8_t *m = malloc(size);
    assert_non_null(m);
    static const uint8_t subst[] = {0,   ' ', '"', '\\', '{', '}', '[',  ']',
                                    ',', ':', '0', '9',  '-', 'u', 0x80, 0xff};
    for (size_t pos = 0; pos < size; pos++) {
        for (size_t k = 0; k < sizeof subst; k++) {
            memcpy(m, full, size);
            m[pos] = subst[k];
            check_mutant(m, size);
        }
    }
    uint64_t rng = 0x1234567887654321ULL;
    for (int it = 0; it < 20000; it++) {
        memcpy(m, full, size);
        int nmut = 1 + (int)(tu_rand_u64(&rng) % 4);
        for (int j = 0; j < nmut; j++)
            m[8 + tu_rand_u64(&rng) % (size - 8)] = (uint8_t)tu_rand_u64(&rng);
        check_mutant(m, size);
    }
    free(m);
    free(full);
}

/* ------------------------------------------------- the file after `ref load` */

/* issue 14 item 3: the file truncated (or replaced) after it was loaded: a
 * read said "changed on disk" (before: SIGBUS through the mapping) */
static void test_file_changed(void **state)
{
    (void)state;
    /* a tensor past the first page: with the file mmapped, reading it after
     * the truncation was SIGBUS */
    refdump_writer *w = refdump_writer_new();
    static float big[8192];
    const int64_t s2[] = {2, 2}, sb[] = {8192};
    const float q[4] = {1, 2, 3, 4};
    const int32_t tok[3] = {7, 8, 9};
    big[8191] = 5.0f;
    add(w, "blk.0.q", REFDUMP_F32, 2, s2, q);
    add(w, "big", REFDUMP_F32, 1, sb, big);
    add(w, "prompt.tokens", REFDUMP_I32, 1, (const int64_t[]){3}, tok);
    size_t size;
    uint8_t *full;
    xf_err err = {{0}};
    assert_int_equal(refdump_writer_to_mem(w, &full, &size, &err), 0);
    refdump_writer_free(w);
    char path[512], other[600], want[1200];
    tu_tmp_path(path, sizeof path, ".safetensors");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(full, 1, size, f), size);
    fclose(f);
    refdump *r = refdump_open(path, &err);
    if (!r)
        fail_msg("%s", err.msg);
    const refdump_tensor *t = refdump_find(r, "big");
    static float got_big[8192];
    assert_int_equal(refdump_read_f32(r, t, got_big, &err), 0);
    assert_true(got_big[8191] == 5.0f);
    t = refdump_find(r, "blk.0.q");
    assert_non_null(t);
    float got[4];
    assert_int_equal(refdump_read_f32(r, t, got, &err), 0);
    assert_true(got[3] == 4.0f);

    assert_int_equal(truncate(path, 8), 0);
    snprintf(want, sizeof want, "%s: the file changed on disk since it was loaded", path);
    assert_int_equal(refdump_read_f32(r, refdump_find(r, "big"), got_big, &err), -1);
    assert_string_equal(err.msg, want);
    assert_int_equal(refdump_read_f32(r, t, got, &err), -1);
    assert_string_equal(err.msg, want);
    int32_t ids[3];
    assert_int_equal(refdump_read_i32(r, refdump_find(r, "prompt.tokens"), ids, &err), -1);
    assert_string_equal(err.msg, want);
    /* the bytes handed out stay readable: they are a copy */
    float v;
    memcpy(&v, (const uint8_t *)refdump_find(r, "big")->data + 4 * 8191, 4);
    assert_true(v == 5.0f);
    refdump_close(r);

    /* replaced by rename (same size, same bytes): another file all the same */
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(full, 1, size, f), size);
    fclose(f);
    r = refdump_open(path, &err);
    assert_non_null(r);
    snprintf(other, sizeof other, "%s.new", path);
    f = fopen(other, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(full, 1, size, f), size);
    fclose(f);
    assert_int_equal(rename(other, path), 0);
    assert_int_equal(refdump_read_f32(r, refdump_find(r, "blk.0.q"), got, &err), -1);
    assert_string_equal(err.msg, want);
    /* and gone */
    unlink(path);
    assert_int_equal(refdump_read_f32(r, refdump_find(r, "blk.0.q"), got, &err), -1);
    assert_string_equal(err.msg, want);
    refdump_close(r);
    free(full);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char m[] = "refdump_open blocked on a FIFO\n";
    ssize_t k = write(2, m, sizeof m - 1);
    (void)k;
    _exit(1);
}

/* issue 14 item 15: a FIFO given as the file is refused at once (before:
 * open() waited for a writer forever) */
static void test_fifo(void **state)
{
    (void)state;
    char path[512], want[1200];
    tu_tmp_path(path, sizeof path, ".fifo");
    assert_int_equal(mkfifo(path, 0600), 0);
    signal(SIGALRM, on_alarm);
    alarm(10);
    xf_err err = {{0}};
    assert_null(refdump_open(path, &err));
    alarm(0);
    signal(SIGALRM, SIG_DFL);
    snprintf(want, sizeof want, "%s: not a regular file", path);
    assert_string_equal(err.msg, want);
    unlink(path);
}

/* ------------------------------------------------------------- writer */

static void test_writer_errors(void **state)
{
    (void)state;
    refdump_writer *w = refdump_writer_new();
    assert_non_null(w);
    xf_err err = {{0}};
    const int64_t s[] = {2}, neg[] = {2, -1}, big[] = {INT64_MAX, INT64_MAX};
    const float v[2] = {1, 2};
    add(w, "x", REFDUMP_F32, 1, s, v);
    assert_int_equal(refdump_writer_add(w, "x", REFDUMP_F32, 1, s, v, &err), -1);
    assert_string_equal(err.msg, "refdump writer: tensor \"x\": duplicate name");
    assert_int_equal(refdump_writer_add(w, "", REFDUMP_F32, 1, s, v, &err), -1);
    assert_string_equal(err.msg, "refdump writer: tensor \"\": empty name");
    assert_int_equal(refdump_writer_add(w, "__metadata__", REFDUMP_F32, 1, s, v, &err), -1);
    assert_string_equal(err.msg, "refdump writer: tensor \"__metadata__\": the name is reserved");
    assert_int_equal(refdump_writer_add(w, "bad\xff\n", REFDUMP_F32, 1, s, v, &err), -1);
    assert_string_equal(err.msg, "refdump writer: tensor \"bad\\xff\\x0a\": the name is not valid UTF-8");
    assert_int_equal(refdump_writer_add(w, "y", 99, 1, s, v, &err), -1);
    assert_string_equal(err.msg, "refdump writer: tensor \"y\": unknown dtype 99");
    assert_int_equal(refdump_writer_add(w, "y", REFDUMP_F32, 9, s, v, &err), -1);
    assert_string_equal(err.msg, "refdump writer: tensor \"y\": 9 dimensions (0..8 allowed)");
    assert_int_equal(refdump_writer_add(w, "y", REFDUMP_F32, 2, neg, v, &err), -1);
    assert_string_equal(err.msg, "refdump writer: tensor \"y\": dimension 1 is negative (-1)");
    assert_int_equal(refdump_writer_add(w, "y", REFDUMP_F32, 2, big, v, &err), -1);
    assert_string_equal(err.msg, "refdump writer: tensor \"y\": the element count overflows");
    assert_int_equal(refdump_writer_add(w, "y", REFDUMP_F32, 1, s, NULL, &err), -1);
    assert_string_equal(err.msg, "refdump writer: tensor \"y\": no data");
    assert_int_equal(refdump_writer_meta(w, "k", "\xc3", &err), -1);
    assert_string_equal(err.msg, "refdump writer: __metadata__ \"k\": not valid UTF-8");
    /* the failed adds left nothing behind */
    uint8_t *buf;
    size_t size;
    assert_int_equal(refdump_writer_to_mem(w, &buf, &size, &err), 0);
    refdump *r = refdump_open_mem(buf, size, "w.st", &err);
    assert_non_null(r);
    assert_int_equal(refdump_count(r), 1);
    refdump_close(r);
    free(buf);
    refdump_writer_free(w);
    refdump_writer_free(NULL);
    refdump_close(NULL);
}

/* Files in the directory of PATH named PATH.*.tmp: temporaries left behind. */
static int tmp_leftovers(const char *path)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    assert_non_null(slash);
    *slash = '\0';
    const char *base = slash + 1;
    size_t blen = strlen(base);
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        n += len > blen + 4 && strncmp(e->d_name, base, blen) == 0 && e->d_name[blen] == '.' &&
             strcmp(e->d_name + len - 4, ".tmp") == 0;
    }
    closedir(d);
    return n;
}

static void save_fails(refdump_writer *w, const char *path, const char *why)
{
    char want[1200];
    xf_err err = {{0}};
    snprintf(want, sizeof want, "%s: %s", path, why);
    assert_int_equal(refdump_writer_save(w, path, &err), -1);
    assert_string_equal(err.msg, want);
}

static void test_writer_no_partial_file(void **state)
{
    (void)state;
    refdump_writer *w = refdump_writer_new();
    const int64_t s[] = {2};
    const float v[2] = {1, 2};
    add(w, "x", REFDUMP_F32, 1, s, v);
    xf_err err = {{0}};

    /* into a directory that does not exist: a clean error naming the path */
    char dir[512], path[700];
    tu_tmp_path(dir, sizeof dir, "-nodir");
    snprintf(path, sizeof path, "%s/out.safetensors", dir);
    save_fails(w, path, "cannot create a temporary file beside it: No such file or directory");
    assert_false(file_exists(path));

    /* the target is a directory: refused, nothing left, the target untouched */
    tu_tmp_path(dir, sizeof dir, "-isdir");
    assert_int_equal(mkdir(dir, 0755), 0);
    save_fails(w, dir, "not a regular file: refusing to replace it");
    assert_int_equal(tmp_leftovers(dir), 0);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    rmdir(dir);

    /* a failed write over a good file (here the file size limit, as a full
     * disk would) leaves the good file and no temporary */
    char good[512];
    tu_tmp_path(good, sizeof good, ".safetensors");
    assert_int_equal(refdump_writer_save(w, good, &err), 0);
    refdump_writer *w2 = refdump_writer_new();
    static float big[4096];
    const int64_t sb[] = {4096};
    add(w2, "other", REFDUMP_F32, 1, sb, big);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 1000;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int rc = refdump_writer_save(w2, good, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    assert_int_equal(rc, -1);
    char want[1200];
    snprintf(want, sizeof want, "%s: write failed: File too large", good);
    assert_string_equal(err.msg, want);
    assert_int_equal(tmp_leftovers(good), 0);
    refdump *r = refdump_open(good, &err);
    assert_non_null(r);
    assert_non_null(refdump_find(r, "x"));
    assert_null(refdump_find(r, "other"));
    refdump_close(r);
    unlink(good);
    refdump_writer_free(w2);
    refdump_writer_free(w);
}

/* issue 14 items 9/10: what sits at the target or at the old temporary name
 * is never written through or turned into a file */
static void test_writer_targets(void **state)
{
    (void)state;
    refdump_writer *w = refdump_writer_new();
    const int64_t s[] = {2};
    const float v[2] = {1, 2};
    add(w, "x", REFDUMP_F32, 1, s, v);
    xf_err err = {{0}};
    struct stat st;

    /* a device node: refused before anything is written (before: /dev/null.tmp
     * was written and renamed over /dev/null). A node of our own in a
     * temporary directory (root only: mknod), never one of /dev: that is
     * shared with whatever else runs on the machine. */
    char node[512], nodetmp[600];
    tu_tmp_path(node, sizeof node, ".chr");
    if (mknod(node, S_IFCHR | 0600, makedev(1, 3)) == 0) {
        save_fails(w, node, "not a regular file: refusing to replace it");
        assert_int_equal(lstat(node, &st), 0);
        assert_true(S_ISCHR(st.st_mode));
        snprintf(nodetmp, sizeof nodetmp, "%s.tmp", node);
        assert_int_equal(lstat(nodetmp, &st), -1);
        assert_int_equal(tmp_leftovers(node), 0);
        unlink(node);
    }
    /* a FIFO of ours stays one */
    char fifo[512];
    tu_tmp_path(fifo, sizeof fifo, ".fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    save_fails(w, fifo, "not a regular file: refusing to replace it");
    assert_int_equal(lstat(fifo, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    unlink(fifo);

    /* a symlink planted at the old temporary name PATH.tmp: the file it
     * points to keeps its bytes, the link stays a link */
    char path[512], link[600], victim[512];
    tu_tmp_path(path, sizeof path, ".safetensors");
    tu_tmp_path(victim, sizeof victim, ".victim");
    FILE *f = fopen(victim, "wb");
    assert_non_null(f);
    fputs("precious", f);
    fclose(f);
    snprintf(link, sizeof link, "%s.tmp", path);
    assert_int_equal(symlink(victim, link), 0);
    assert_int_equal(refdump_writer_save(w, path, &err), 0);
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(stat(victim, &st), 0);
    assert_int_equal(st.st_size, 8);
    refdump *r = refdump_open(path, &err);
    assert_non_null(r);
    refdump_close(r);
    /* a symlink as the target: refused, the link and its file untouched */
    unlink(path);
    assert_int_equal(symlink(victim, path), 0);
    save_fails(w, path, "is a symbolic link: refusing to replace it (name the file it points to)");
    assert_int_equal(stat(victim, &st), 0);
    assert_int_equal(st.st_size, 8);
    unlink(path);
    unlink(link);
    unlink(victim);

    /* the mode of a file replaced is kept; a new one is 0666 less the umask,
     * as fopen makes it (xfile's rule for every file xfdb writes) */
    assert_int_equal(refdump_writer_save(w, path, &err), 0);
    mode_t mask = umask(022);
    umask(mask);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0666 & ~mask);
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(refdump_writer_save(w, path, &err), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    /* a read-only file says "do not change me": refused, as rename(2)
     * would replace it all the same */
    assert_int_equal(chmod(path, 0444), 0);
    save_fails(w, path, "read-only (mode 0444): refusing to replace it");
    assert_int_equal(tmp_leftovers(path), 0);
    unlink(path);

    /* a directory where no temporary can be made: read-only to us, or
     * /proc for root (who ignores the mode) */
    char dir[512], in[700];
    tu_tmp_path(dir, sizeof dir, "-ro");
    assert_int_equal(mkdir(dir, 0555), 0);
    snprintf(in, sizeof in, "%s/out.safetensors", dir);
    if (geteuid() != 0)
        save_fails(w, in, "cannot create a temporary file beside it: Permission denied");
    else
        save_fails(w, "/proc/xfdb-out.safetensors",
                   "cannot create a temporary file beside it: No such file or directory");
    assert_false(file_exists(in));
    rmdir(dir);
    refdump_writer_free(w);
}

static void test_dtype_names(void **state)
{
    (void)state;
    const char *want[REFDUMP_DTYPE_COUNT] = {"F32", "F16", "BF16", "F64", "I32",  "I64",     "I16",    "I8",
                                             "U8",  "U16", "U32",  "U64", "BOOL", "F8_E4M3", "F8_E5M2"};
    const size_t sizes[REFDUMP_DTYPE_COUNT] = {4, 2, 2, 8, 4, 8, 2, 1, 1, 2, 4, 8, 1, 1, 1};
    for (int i = 0; i < REFDUMP_DTYPE_COUNT; i++) {
        assert_string_equal(refdump_dtype_name(i), want[i]);
        assert_int_equal(refdump_dtype_size(i), sizes[i]);
        assert_int_equal(refdump_dtype_from_name(want[i]), i);
    }
    assert_string_equal(refdump_dtype_name(-1), "?");
    assert_string_equal(refdump_dtype_name(REFDUMP_DTYPE_COUNT), "?");
    assert_int_equal(refdump_dtype_size(REFDUMP_DTYPE_COUNT), 0);
    assert_int_equal(refdump_dtype_from_name("F3"), -1);
    assert_int_equal(refdump_dtype_from_name("F322"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_dump),
        cmocka_unit_test(test_python_file),
        cmocka_unit_test(test_writer_matches_python),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_json_escapes),
        cmocka_unit_test(test_malformed_length),
        cmocka_unit_test(test_not_safetensors),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_malformed_strings),
        cmocka_unit_test(test_malformed_tensors),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_file_changed),
        cmocka_unit_test(test_fifo),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_writer_no_partial_file),
        cmocka_unit_test(test_writer_targets),
        cmocka_unit_test(test_dtype_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
