/* test_quant_mxfp4: the MXFP4 block format (ggml type 39) against code
 * that is not xfdb's.
 *
 * - tests/fixtures/quant/mxfp4.bin (scripts/make_quant_fixtures.py): random
 *   blocks (every edge exponent: 0, 1, 2, 127, 254, 255) and their values as
 *   the gguf Python package dequantizes them, bit for bit; gguf's
 *   quantization of fixed rows (ties between codes, -0, tiny and huge
 *   blocks) against tests/support's quantizer, byte for byte;
 * - the OCP MX definition written out here (E2M1 magnitudes 0 .5 1 1.5 2 3
 *   4 6, sign in bit 3, scale 2^(e-127)), which ggml's doubled table with
 *   its half scale must equal exactly;
 * - the fields `quant` shows, the fused CPU dots against the f64 dot, and
 *   the GGUF reader's one-line error for a row that is not whole blocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/quant_dot.h"
#include "gguf_bytes.h"
#include "quant.h"
#include "quantize.h"
#include "testutil.h"

/* ------------------------------------------------------------- fixture */

typedef struct fixture {
    uint8_t *data;
    size_t size;
} fixture;

static void fx_load(fixture *f, const char *name)
{
    char rel[256], path[1024];
    snprintf(rel, sizeof rel, "tests/fixtures/quant/%s", name);
    tu_src_path(path, sizeof path, rel);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        fail_msg("cannot open %s (run scripts/make_quant_fixtures.py)", path);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long sz = ftell(fp);
    assert_true(sz >= 8);
    rewind(fp);
    f->data = malloc((size_t)sz);
    assert_non_null(f->data);
    assert_int_equal(fread(f->data, 1, (size_t)sz, fp), (size_t)sz);
    fclose(fp);
    f->size = (size_t)sz;
    assert_memory_equal(f->data, "XFQFIX01", 8);
}

/* the record called name (fails if missing); *n its byte count */
static const uint8_t *fx_get(const fixture *f, const char *name, size_t *n)
{
    size_t off = 8;
    while (off + 32 <= f->size) {
        uint64_t len;
        memcpy(&len, f->data + off + 24, sizeof len);
        if (len > f->size - off - 32)
            fail_msg("fixture record at byte %zu overruns the file", off);
        if (strncmp((const char *)f->data + off, name, 24) == 0) {
            *n = (size_t)len;
            return f->data + off + 32;
        }
        off += 32 + (size_t)len;
    }
    fail_msg("fixture record '%s' missing", name);
    return NULL;
}

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* The OCP Microscaling definition of one element, in double: E2M1 code c
 * (sign bit 3, exponent bits 2-1, mantissa bit 0; exponent 0 is the
 * subnormal 0.5*m) times the E8M0 scale 2^(e-127). */
static double mx_ref(uint8_t e, int c)
{
    int ex = (c >> 1) & 3, m = c & 1;
    double mag = ex == 0 ? 0.5 * m : ldexp(1.0 + 0.5 * m, ex - 1);
    double v = ((c & 8) ? -mag : mag) * ldexp(1.0, e - 127);
    /* ggml multiplies in f32: past the f32 range (3 x 2^126 and up, only
     * for e >= 253) the product is an infinity */
    return fabs(v) > FLT_MAX ? copysign(INFINITY, v) : v;
}

/* ================================================================ tests */

static void test_type_and_sizes(void **state)
{
    (void)state;
    const quant_type_info *t = quant_type_get(XF_TYPE_MXFP4);
    assert_non_null(t);
    assert_int_equal(XF_TYPE_MXFP4, 39);
    assert_string_equal(t->name, "MXFP4");
    assert_int_equal(t->block_elems, 32);
    assert_int_equal(t->block_bytes, 17);
    assert_true(t->supported);
    uint64_t b = 0;
    assert_true(quant_row_bytes(XF_TYPE_MXFP4, 32, &b));
    assert_int_equal(b, 17);
    assert_true(quant_row_bytes(XF_TYPE_MXFP4, 896, &b));
    assert_int_equal(b, 28 * 17);
    b = 777;
    assert_false(quant_row_bytes(XF_TYPE_MXFP4, 48, &b));
    assert_false(quant_row_bytes(XF_TYPE_MXFP4, 1, &b));
    assert_int_equal(b, 777);
    /* a row that is not whole blocks decodes to NaN, never garbage */
    float out[48];
    uint8_t junk[51] = {0};
    tu_poison(out, 48);
    out[0] = 1;
    quant_dequant_row(XF_TYPE_MXFP4, junk, out, 48);
    assert_true(isnan(out[0]));
}

/* every scale byte and every code: ggml's half scale times its doubled
 * table is the OCP value, exactly (no rounding happens anywhere) */
static void test_every_code_and_scale(void **state)
{
    (void)state;
    for (int e = 0; e < 256; e++) {
        assert_true((double)xf_e8m0_half((uint8_t)e) == ldexp(1.0, e - 128));
        uint8_t blk[17];
        blk[0] = (uint8_t)e;
        for (int j = 0; j < 16; j++) /* element j: code j; element 16+j: code 15-j */
            blk[1 + j] = (uint8_t)(j | ((15 - j) << 4));
        float y[32];
        tu_poison(y, 32);
        quant_dequant_row(XF_TYPE_MXFP4, blk, y, 32);
        for (int j = 0; j < 16; j++) {
            if ((double)y[j] != mx_ref((uint8_t)e, j) || (double)y[16 + j] != mx_ref((uint8_t)e, 15 - j))
                fail_msg("e=%d code %d: %g (want %g), code %d: %g (want %g)", e, j, (double)y[j],
                         mx_ref((uint8_t)e, j), 15 - j, (double)y[16 + j], mx_ref((uint8_t)e, 15 - j));
        }
        /* -0 (code 8) decodes to +0 as in ggml (int8 0 times d) */
        assert_int_equal(f2u(y[8]), 0);
    }
}

static void test_dequant_vs_gguf(void **state)
{
    (void)state;
    fixture f;
    fx_load(&f, "mxfp4.bin");
    size_t n_ty, n_src, n_blk, n_val;
    const uint8_t *ty = fx_get(&f, "type", &n_ty);
    assert_int_equal(n_ty, 4);
    uint32_t type;
    memcpy(&type, ty, 4);
    assert_int_equal(type, XF_TYPE_MXFP4);
    const uint8_t *src = fx_get(&f, "source", &n_src);
    assert_true(n_src == 4 && memcmp(src, "gguf", 4) == 0); /* decoded by gguf, not by numpy here */
    const uint8_t *blk = fx_get(&f, "blocks", &n_blk);
    const uint8_t *val = fx_get(&f, "values", &n_val);
    assert_int_equal(n_blk % 17, 0);
    size_t n = n_blk / 17 * 32;
    assert_int_equal(n_val, n * 4);
    assert_true(n >= 32 * 6);
    /* the first six blocks hold the edge exponents */
    static const uint8_t edges[6] = {0, 1, 2, 127, 254, 255};
    for (int i = 0; i < 6; i++)
        assert_int_equal(blk[17 * i], edges[i]);
    float *y = malloc(n * sizeof *y);
    assert_non_null(y);
    tu_poison(y, n);
    quant_dequant_row(XF_TYPE_MXFP4, blk, y, (int64_t)n);
    for (size_t i = 0; i < n; i++) {
        uint32_t want;
        memcpy(&want, val + 4 * i, 4);
        if (f2u(y[i]) != want)
            fail_msg("MXFP4 element %zu (block %zu, e %u): %08x, gguf %08x", i, i / 32, blk[17 * (i / 32)],
                     f2u(y[i]), want);
    }
    free(y);
    free(f.data);
}

static void test_quantize_vs_gguf(void **state)
{
    (void)state;
    fixture f;
    fx_load(&f, "mxfp4.bin");
    size_t n_in, n_q;
    const uint8_t *in = fx_get(&f, "q_input", &n_in);
    const uint8_t *want = fx_get(&f, "q_blocks", &n_q);
    int64_t n = (int64_t)(n_in / 4);
    assert_int_equal(n % 32, 0);
    assert_int_equal(n_q, (size_t)(n / 32 * 17));
    float *x = malloc((size_t)n_in);
    uint8_t *got = malloc(n_q);
    assert_non_null(x);
    assert_non_null(got);
    memcpy(x, in, n_in);
    assert_int_equal(quant_quantize_row(XF_TYPE_MXFP4, x, got, n), n_q);
    for (size_t i = 0; i < n_q; i++)
        if (got[i] != want[i])
            fail_msg("MXFP4 quantization, block %zu byte %zu: %02x, gguf %02x", i / 17, i % 17, got[i], want[i]);
    /* and it round-trips: every value of the grid survives */
    float y[32], r[32];
    uint8_t b[17];
    for (int j = 0; j < 32; j++)
        y[j] = (float)mx_ref(130, j % 16);
    y[7] = 6 * 8.0f; /* the top code at this scale: absmax 48 gives e = 130 */
    quant_quantize_row(XF_TYPE_MXFP4, y, b, 32);
    assert_int_equal(b[0], 130);
    quant_dequant_row(XF_TYPE_MXFP4, b, r, 32);
    for (int j = 0; j < 32; j++)
        assert_true(r[j] == y[j]);
    free(x);
    free(got);
    free(f.data);
}

static void test_block_fields(void **state)
{
    (void)state;
    uint8_t b[17] = {131};
    for (int j = 0; j < 16; j++)
        b[1 + j] = (uint8_t)(j | ((15 - j) << 4));
    quant_field fl[4];
    int nf = quant_block_fields(XF_TYPE_MXFP4, b, fl, 4);
    assert_int_equal(nf, 3);
    assert_string_equal(fl[0].name, "e");
    assert_true(fl[0].count == 1 && fl[0].v[0] == 131.0f);
    assert_string_equal(fl[1].name, "d");
    assert_true(fl[1].v[0] == 8.0f); /* 2^(131-128) */
    assert_string_equal(fl[2].name, "q");
    assert_int_equal(fl[2].count, 32);
    for (int j = 0; j < 16; j++) {
        assert_true(fl[2].v[j] == (float)xf_mxfp4_kvalues[j]);
        assert_true(fl[2].v[16 + j] == (float)xf_mxfp4_kvalues[15 - j]);
    }
}

/* the fused dots (AVX2 where the CPU has it, else the portable one) and the
 * generic path against the f64 dot of the same weights */
static void test_dot(void **state)
{
    (void)state;
    static const int64_t lens[] = {32, 64, 96, 288, 896, 4864};
    float *x = malloc(4864 * sizeof *x), *w = malloc(4864 * sizeof *w);
    uint8_t *q = malloc(4864 / 32 * 17 + 1);
    assert_true(x && w && q);
    uint64_t st = 39;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        int64_t n = lens[li];
        for (int kind = 0; kind < 2; kind++) {
            uint8_t *row = q + 1; /* misaligned on purpose (blocks of 17 bytes are anyway) */
            tu_fill_random(x, (size_t)n, &st, -1, 1);
            if (kind == 0) {
                tu_fill_random(w, (size_t)n, &st, -3, 3);
                quant_quantize_row(XF_TYPE_MXFP4, w, row, n);
            } else {
                for (int64_t i = 0; i < n / 32 * 17; i++)
                    row[i] = (uint8_t)tu_rand_u64(&st);
                for (int64_t b = 0; b < n / 32; b++) /* scales 2^-8 .. 2^8 */
                    row[17 * b] = (uint8_t)(120 + tu_rand_u64(&st) % 17);
            }
            double mag = 0;
            tu_poison(w, (size_t)n);
            quant_dequant_row(XF_TYPE_MXFP4, row, w, n);
            for (int64_t i = 0; i < n; i++)
                mag += fabs((double)w[i] * (double)x[i]);
            double ref = quant_dot_ref(XF_TYPE_MXFP4, row, x, n);
            assert_true(isfinite(ref) && mag > 0);
            float fused = kern_cpu_quant_dot(XF_TYPE_MXFP4, row, x, n);
            float gen = kern_cpu_quant_dot_generic(XF_TYPE_MXFP4, row, x, n);
            /* f32 sums of at most 4864 terms: see test_quant.c test_dot */
            if (!(fabs(fused - ref) <= 2e-6 * mag) || !(fabs(gen - ref) <= 2e-6 * mag))
                fail_msg("MXFP4 n=%lld kind=%d: fused %.9g generic %.9g, f64 %.9g (sum|wx| %g)", (long long)n,
                         kind, (double)fused, (double)gen, ref, mag);
        }
    }
    /* a length that is not whole blocks: NaN */
    assert_true(isnan(kern_cpu_quant_dot(XF_TYPE_MXFP4, q, x, 48)));
    assert_true(isnan(kern_cpu_quant_dot_generic(XF_TYPE_MXFP4, q, x, 48)));
    free(x);
    free(w);
    free(q);
}

/* GGUF: an MXFP4 tensor whose rows are not whole blocks is refused with one
 * line naming the file, the field and its byte offset; whole blocks load */
static void test_gguf_row_length(void **state)
{
    (void)state;
    small s;
    small_build(&s);
    tb *b = &s.b;
    const tb_ti *t1 = &s.ti[1];
    tb_patch_u32(b, t1->type, XF_TYPE_MXFP4);
    tb_patch_u64(b, t1->dims[0], 48);
    char want[256];
    snprintf(want, sizeof want,
             "m.gguf: tensor_info[1].type at byte %zu: row length ne[0] = 48 is not a multiple of the MXFP4 "
             "block size 32",
             t1->type);
    expect_err_buf(b->p, b->n, want);
    tb_patch_u64(b, t1->dims[0], 32);
    xf_err err = {0};
    gguf_file *g = open_tb(b, &err);
    if (!g)
        fail_msg("%s", err.msg);
    const gguf_tensor *t = gguf_find_tensor(g, "t1");
    assert_non_null(t);
    assert_int_equal(t->type, XF_TYPE_MXFP4);
    assert_int_equal(t->size, 17);
    gguf_close(g);
    free(b->p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_and_sizes),
        cmocka_unit_test(test_every_code_and_scale),
        cmocka_unit_test(test_dequant_vs_gguf),
        cmocka_unit_test(test_quantize_vs_gguf),
        cmocka_unit_test(test_block_fields),
        cmocka_unit_test(test_dot),
        cmocka_unit_test(test_gguf_row_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
