/* test_refdump_malformed: the exact error text (file, field, byte offset)
 * of each malformed safetensors header, every truncation of a valid file,
 * and byte mutations that must fail cleanly or read in bounds. */
#include "refdump_util.h"

#include <sys/mman.h>

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
    /* xfile names the path as given; ours escapes it (one line, no control
     * bytes on the terminal) */
    assert_null(refdump_open("/nonexistent-xfdb-dir/a\nb\x1b[2J", &err));
    assert_string_equal(err.msg, "/nonexistent-xfdb-dir/a\\x0ab\\x1b[2J: cannot open: No such file or directory");
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
                                ("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
                                 "\"data_offsets\":[0,4],\"\\u00733cr3t\":[99999999999999999999]}}")};
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
    /* data that overlap (an empty tensor overlaps nothing); the format forbids it, the GGUF
     * reader refuses it too (session 26) */
    expect_error(
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
        "\"c\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
        8, "bad.st: tensor \"b\" data_offsets at byte 108: [4, 8] overlaps the data of tensor \"a\" [0, 8]");
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_malformed_length),
        cmocka_unit_test(test_not_safetensors),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_malformed_strings),
        cmocka_unit_test(test_malformed_tensors),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
