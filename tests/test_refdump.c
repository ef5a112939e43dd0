/* test_refdump: the safetensors reader and writer: the real reference dump,
 * a file written by the Python library (read it, and write the same bytes),
 * round trips of every dtype and odd names, the writer's argument checks
 * and the dtype names. Malformed files are test_refdump_malformed.c; the
 * file on disk (changed after loading, a FIFO, the writer's targets and its
 * never-a-partial-file promise) test_refdump_files.c. */
#include "refdump_util.h"

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
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_dtype_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
