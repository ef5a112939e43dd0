/* Tests of the GGUF reader on hand-built corrupt files whose exact error
 * text (field and byte offset) is asserted: bad magic and versions, counts
 * past the end, strings, arrays, value types, keys, alignment, tensor infos,
 * names and offsets; truncation at every boundary and a header fuzzer.
 * Corrupt files are built byte by byte (gguf_bytes.h), not by the writer
 * under test, so the offsets the messages must name are known
 * independently. */
#include "gguf_bytes.h"

#include "gguf_writer.h"
#include "testutil.h"

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
