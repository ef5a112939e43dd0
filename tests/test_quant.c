/* test_quant: element types and block formats against independent code.
 *
 * Fixtures (tests/fixtures/quant/, made by scripts/make_quant_fixtures.py):
 * random blocks of every type with their values dequantized by the gguf
 * Python package (numpy for Q8_1/Q8_K, which gguf cannot decode), gguf's
 * quantizations of fixed rows, and numpy's F16 conversions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/quant_dot.h"
#include "quant.h"
#include "quantize.h"
#include "testutil.h"

typedef struct type_case {
    int type;
    const char *file; /* fixture name below tests/fixtures/quant/ */
    int block_elems;  /* from ggml-common.h, written here independently of quant.c */
    int block_bytes;
} type_case;

static const type_case CASES[] = {
    {XF_TYPE_F32, "f32.bin", 1, 4},       {XF_TYPE_F16, "f16.bin", 1, 2},
    {XF_TYPE_BF16, "bf16.bin", 1, 2},     {XF_TYPE_Q4_0, "q4_0.bin", 32, 18},
    {XF_TYPE_Q4_1, "q4_1.bin", 32, 20},   {XF_TYPE_Q5_0, "q5_0.bin", 32, 22},
    {XF_TYPE_Q5_1, "q5_1.bin", 32, 24},   {XF_TYPE_Q8_0, "q8_0.bin", 32, 34},
    {XF_TYPE_Q8_1, "q8_1.bin", 32, 36},   {XF_TYPE_Q2_K, "q2_k.bin", 256, 84},
    {XF_TYPE_Q3_K, "q3_k.bin", 256, 110}, {XF_TYPE_Q4_K, "q4_k.bin", 256, 144},
    {XF_TYPE_Q5_K, "q5_k.bin", 256, 176}, {XF_TYPE_Q6_K, "q6_k.bin", 256, 210},
    {XF_TYPE_Q8_K, "q8_k.bin", 256, 292},
};
#define N_CASES (sizeof CASES / sizeof CASES[0])

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ------------------------------------------------------------- fixtures */

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

/* the record called name, or NULL; *n its byte count */
static const uint8_t *fx_find(const fixture *f, const char *name, size_t *n)
{
    size_t off = 8;
    *n = 0;
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
    return NULL;
}

static const uint8_t *fx_get(const fixture *f, const char *name, size_t *n)
{
    const uint8_t *p = fx_find(f, name, n);
    if (!p)
        fail_msg("fixture record '%s' missing", name);
    return p;
}

static void fx_free(fixture *f)
{
    free(f->data);
    f->data = NULL;
}

/* ------------------------------------------------------ random weights */

/* Random blocks of a type: random bytes for the quants, sane random scales
 * (uniform in [-1,1], never NaN/Inf) written over the scale fields. */
static void random_blocks(int type, uint8_t *dst, int64_t n_elems, uint64_t *rng)
{
    const quant_type_info *t = quant_type_get(type);
    assert_non_null(t);
    if (type == XF_TYPE_F32 || type == XF_TYPE_F16 || type == XF_TYPE_BF16) {
        for (int64_t i = 0; i < n_elems; i++) {
            float v = tu_rand_float(rng, -2, 2);
            if (type == XF_TYPE_F32) {
                memcpy(dst + 4 * i, &v, 4);
            } else {
                uint16_t h = type == XF_TYPE_F16 ? xf_f32_to_f16(v) : xf_f32_to_bf16(v);
                memcpy(dst + 2 * i, &h, 2);
            }
        }
        return;
    }
    int offs[2], n_offs = 0;
    switch (type) {
    case XF_TYPE_Q4_0: case XF_TYPE_Q5_0: case XF_TYPE_Q8_0:
        offs[n_offs++] = 0;
        break;
    case XF_TYPE_Q4_1: case XF_TYPE_Q5_1: case XF_TYPE_Q8_1: case XF_TYPE_Q4_K: case XF_TYPE_Q5_K:
        offs[n_offs++] = 0;
        offs[n_offs++] = 2;
        break;
    case XF_TYPE_Q2_K:
        offs[n_offs++] = 80;
        offs[n_offs++] = 82;
        break;
    case XF_TYPE_Q3_K:
        offs[n_offs++] = 108;
        break;
    case XF_TYPE_Q6_K:
        offs[n_offs++] = 208;
        break;
    case XF_TYPE_Q8_K:
        break;
    default:
        fail_msg("no random blocks for type %d", type);
    }
    int64_t nb = n_elems / t->block_elems;
    for (int64_t i = 0; i < nb; i++) {
        uint8_t *b = dst + i * t->block_bytes;
        for (int j = 0; j < t->block_bytes; j++)
            b[j] = (uint8_t)tu_rand_u64(rng);
        for (int k = 0; k < n_offs; k++) {
            uint16_t h = xf_f32_to_f16(tu_rand_float(rng, -1, 1));
            memcpy(b + offs[k], &h, 2);
        }
        if (type == XF_TYPE_Q8_K) {
            float d = tu_rand_float(rng, -1, 1);
            memcpy(b, &d, 4);
        }
    }
}

/* ================================================================ tests */

/* 4. sizes: the layouts of ggml-common.h, multiples, overflow, unknown ids */
static void test_row_bytes(void **state)
{
    (void)state;
    uint64_t b = 12345;
    for (size_t c = 0; c < N_CASES; c++) {
        const type_case *tc = &CASES[c];
        const quant_type_info *t = quant_type_get(tc->type);
        assert_non_null(t);
        assert_true(t->supported);
        assert_int_equal(t->block_elems, tc->block_elems);
        assert_int_equal(t->block_bytes, tc->block_bytes);
        assert_true(quant_row_bytes(tc->type, 0, &b));
        assert_int_equal(b, 0);
        assert_true(quant_row_bytes(tc->type, tc->block_elems, &b));
        assert_int_equal(b, tc->block_bytes);
        assert_true(quant_row_bytes(tc->type, 4096LL * tc->block_elems, &b));
        assert_int_equal(b, 4096ULL * (uint64_t)tc->block_bytes);
        assert_false(quant_row_bytes(tc->type, -tc->block_elems, &b));
        if (tc->block_elems > 1) {
            assert_false(quant_row_bytes(tc->type, tc->block_elems + 1, &b));
            assert_false(quant_row_bytes(tc->type, tc->block_elems - 1, &b));
            assert_false(quant_row_bytes(tc->type, 1, &b));
        }
        /* byte counts must fit int64: the last row length that does, and
         * the next block (where that length itself still fits int64) */
        const int64_t be = tc->block_elems, bb = tc->block_bytes;
        if (INT64_MAX / bb <= INT64_MAX / be) {
            int64_t n_last = INT64_MAX / bb * be;
            assert_true(quant_row_bytes(tc->type, n_last, &b));
            assert_int_equal(b, (uint64_t)(INT64_MAX / bb) * (uint64_t)bb);
            if (n_last <= INT64_MAX - be)
                assert_false(quant_row_bytes(tc->type, n_last + be, &b));
        } else { /* fewer bytes than elements: every whole-block row fits */
            int64_t big = INT64_MAX - INT64_MAX % be;
            assert_true(quant_row_bytes(tc->type, big, &b));
            assert_int_equal(b, (uint64_t)(big / be) * (uint64_t)bb);
        }
    }
    assert_string_equal(quant_type_name(XF_TYPE_Q4_K), "Q4_K");
    assert_string_equal(quant_type_name(XF_TYPE_BF16), "BF16");
    assert_string_equal(quant_type_name(XF_TYPE_Q8_K), "Q8_K");
    assert_true(quant_row_bytes(XF_TYPE_Q4_K, 512, &b));
    assert_int_equal(b, 288);
    assert_true(quant_row_bytes(XF_TYPE_F32, 3, &b));
    assert_int_equal(b, 12);
    assert_false(quant_row_bytes(XF_TYPE_Q4_0, 33, &b));
    assert_false(quant_row_bytes(XF_TYPE_Q6_K, 255, &b));
    assert_false(quant_row_bytes(XF_TYPE_Q6_K, 32, &b));
    /* F32: n*4 wraps uint64 */
    assert_false(quant_row_bytes(XF_TYPE_F32, INT64_MAX / 2 + 1, &b));
    assert_false(quant_row_bytes(XF_TYPE_F32, INT64_MAX, &b));
    /* the largest F16 row that fits int64 bytes and the first that does not */
    assert_true(quant_row_bytes(XF_TYPE_F16, INT64_MAX / 2, &b));
    assert_int_equal(b, (uint64_t)(INT64_MAX / 2) * 2);
    assert_false(quant_row_bytes(XF_TYPE_F16, INT64_MAX / 2 + 1, &b));
    /* unknown ids: the removed Q4_2/Q4_3, the removed repacked ids, out of range */
    static const int unknown[] = {-1, 4, 5, 31, 32, 33, 36, 37, 38, XF_TYPE_COUNT, 1000, INT32_MIN};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        assert_null(quant_type_get(unknown[i]));
        assert_string_equal(quant_type_name(unknown[i]), "?");
        b = 777;
        assert_false(quant_row_bytes(unknown[i], 256, &b));
        assert_int_equal(b, 777); /* untouched on failure */
    }
    /* known but not decodable: sizes still known so a GGUF reader can skip them */
    const quant_type_info *iq = quant_type_get(23);
    assert_non_null(iq);
    assert_string_equal(iq->name, "IQ4_XS");
    assert_false(iq->supported);
    assert_true(quant_row_bytes(23, 512, &b));
    assert_int_equal(b, 272);
    float out[256];
    uint8_t junk[136] = {0};
    tu_poison(out, 256);
    out[0] = 1;
    quant_dequant_row(23, junk, out, 256);
    assert_true(isnan(out[0])); /* unsupported: NaN rather than silent garbage */
    assert_true(isnan(quant_dot_ref(23, junk, out, 256)));
    assert_true(isnan(kern_cpu_quant_dot(23, junk, out, 256)));
    assert_int_equal(quant_quantize_row(23, out, junk, 256), 0);
    /* a row that is not a whole number of blocks is refused everywhere */
    float x[64];
    uint8_t q[64];
    uint64_t st = 7;
    tu_fill_random(x, 64, &st, -1, 1);
    assert_int_equal(quant_quantize_row(XF_TYPE_Q8_0, x, q, 31), 0);
    assert_true(isnan(quant_dot_ref(XF_TYPE_Q8_0, q, x, 31)));
    assert_true(isnan(kern_cpu_quant_dot(XF_TYPE_Q8_0, q, x, 31)));
    quant_dequant_row(XF_TYPE_Q8_0, q, x, 31);
    for (int i = 0; i < 31; i++)
        assert_true(isnan(x[i]));
}

/* 1. dequantization of random blocks equals the gguf package's, bit for bit.
 * Exact equality is right: gguf (numpy float32) and ggml apply the same
 * float32 operations in the same order (e.g. Q4_K: (d*sc)*q - dmin*m). */
static void test_dequant_fixtures(void **state)
{
    (void)state;
    for (size_t c = 0; c < N_CASES; c++) {
        const type_case *tc = &CASES[c];
        fixture f;
        fx_load(&f, tc->file);
        size_t n_type, n_src, n_blocks, n_vals;
        const uint8_t *ty = fx_get(&f, "type", &n_type);
        const uint8_t *src = fx_get(&f, "source", &n_src);
        const uint8_t *blocks = fx_get(&f, "blocks", &n_blocks);
        const uint8_t *vals = fx_get(&f, "values", &n_vals);
        uint32_t type;
        assert_int_equal(n_type, 4);
        memcpy(&type, ty, 4);
        assert_int_equal(type, tc->type);
        assert_true(n_blocks > 0 && n_blocks % (size_t)tc->block_bytes == 0);
        const int64_t n = (int64_t)(n_blocks / (size_t)tc->block_bytes) * tc->block_elems;
        assert_int_equal(n_vals, (size_t)n * 4);
        uint64_t bytes;
        assert_true(quant_row_bytes(tc->type, n, &bytes));
        assert_int_equal(bytes, n_blocks);

        /* unaligned copy: blocks sit at any offset of an mmap'd file */
        uint8_t *una = malloc(n_blocks + 1);
        float *out = malloc(((size_t)n + 8) * sizeof(float)); /* [n + 8]: 8 guard values */
        float *want = malloc((size_t)n * sizeof(float));      /* [n] */
        assert_non_null(una);
        assert_non_null(out);
        assert_non_null(want);
        memcpy(una + 1, blocks, n_blocks);
        memcpy(want, vals, (size_t)n * 4);
        for (int pass = 0; pass < 2; pass++) {
            tu_poison(out, (size_t)n + 8);
            quant_dequant_row(tc->type, pass ? (const void *)(una + 1) : (const void *)blocks, out, n);
            for (int64_t i = 0; i < n; i++) {
                if (f2u(out[i]) != f2u(want[i]))
                    fail_msg("%s (%.*s): element %lld of block %lld: got %.9g (0x%08x), want %.9g (0x%08x)",
                             quant_type_name(tc->type), (int)n_src, (const char *)src, (long long)i,
                             (long long)(i / tc->block_elems), out[i], f2u(out[i]), want[i], f2u(want[i]));
            }
            for (int i = 0; i < 8; i++)
                assert_true(isnan(out[n + i])); /* nothing written past the row */
        }

        /* the reference dot on the same blocks: f64 sum in row order */
        {
            float *x = malloc((size_t)n * sizeof(float)); /* [n] */
            assert_non_null(x);
            uint64_t st = 1234 + c;
            tu_fill_random(x, (size_t)n, &st, -1, 1);
            double expect = 0, mag = 0;
            bool finite = true;
            for (int64_t i = 0; i < n; i++) {
                if (!isfinite(want[i]))
                    finite = false;
                expect += (double)want[i] * (double)x[i];
                mag += fabs((double)want[i] * (double)x[i]);
            }
            if (finite) { /* the F32 fixture holds inf/NaN on purpose */
                double r = quant_dot_ref(tc->type, una + 1, x, n);
                if (!(fabs(r - expect) <= 1e-12 * mag))
                    fail_msg("%s: dot_ref %.17g, want %.17g", quant_type_name(tc->type), r, expect);
                double r32 = kern_cpu_quant_dot(tc->type, una + 1, x, n);
                if (!(fabs(r32 - expect) <= 2e-6 * mag + 1e-30))
                    fail_msg("%s: dot_f32 %.9g, want %.9g (sum|wx| %.3g)", quant_type_name(tc->type), r32,
                             expect, mag);
            }
            free(x);
        }
        free(una);
        free(out);
        free(want);
        fx_free(&f);
    }
}

/* 2a. the quantizers that follow ggml's *_ref formulas reproduce gguf's
 * quantizations byte for byte (gguf states its Q8_0 is bit-exact with ggml;
 * its Q4_0/Q4_1/Q5_0/Q5_1 use the same float32 formulas). */
static void test_quantize_vs_gguf(void **state)
{
    (void)state;
    static const int types[] = {XF_TYPE_Q4_0, XF_TYPE_Q4_1, XF_TYPE_Q5_0, XF_TYPE_Q5_1, XF_TYPE_Q8_0};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const type_case *tc = NULL;
        for (size_t c = 0; c < N_CASES; c++)
            if (CASES[c].type == types[k])
                tc = &CASES[c];
        assert_non_null(tc);
        fixture f;
        fx_load(&f, tc->file);
        size_t n_in, n_q;
        const uint8_t *in = fx_get(&f, "q_input", &n_in);
        const uint8_t *want = fx_get(&f, "q_blocks", &n_q);
        const int64_t n = (int64_t)(n_in / 4);
        float *x = malloc(n_in); /* [n] */
        uint8_t *got = malloc(n_q + 16);
        assert_non_null(x);
        assert_non_null(got);
        memcpy(x, in, n_in);
        memset(got, 0xa5, n_q + 16);
        assert_int_equal(quant_quantize_row(tc->type, x, got, n), n_q);
        for (size_t i = 0; i < n_q; i++) {
            if (got[i] != want[i])
                fail_msg("%s: block %zu byte %zu: got 0x%02x, gguf 0x%02x", quant_type_name(tc->type),
                         i / (size_t)tc->block_bytes, i % (size_t)tc->block_bytes, got[i], want[i]);
        }
        for (int i = 0; i < 16; i++)
            assert_int_equal(got[n_q + i], 0xa5); /* nothing written past the row */
        free(x);
        free(got);
        fx_free(&f);
    }
}

/* 2b. quantize -> dequantize round trip within a bound derived per format.
 * bound[i] for each element of one unit (a block; 32 elements for F16/BF16).
 * Notation: u = 2^-11, the relative error of rounding to f16 (to nearest);
 * rounding up (quant.c's k-quant super-scales) errs by at most 2u. */
static void roundtrip_bounds(int type, const float *x, int be, double *bound)
{
    const double u = 1.0 / 2048;
    double amax = 0, mn = INFINITY, mx = -INFINITY;
    for (int i = 0; i < be; i++) {
        amax = fmax(amax, fabs((double)x[i]));
        mn = fmin(mn, x[i]);
        mx = fmax(mx, x[i]);
    }
    double b = 0; /* one bound for the whole unit, where the format has one */
    switch (type) {
    case XF_TYPE_F32:
        b = 0; /* exact */
        break;
    case XF_TYPE_F16:
        b = amax * u; /* half an ulp; the inputs are in the normal range */
        break;
    case XF_TYPE_BF16:
        b = amax / 256;
        break;
    case XF_TYPE_Q8_0:
    case XF_TYPE_Q8_1: {
        /* d = amax/127, q = round(x/d): |x - q*d| <= d/2; storing d as f16
         * adds |q|*|d - f16(d)| <= 127*d*u */
        double d = amax / 127;
        b = d / 2 + 127 * d * u;
        break;
    }
    case XF_TYPE_Q4_0:
    case XF_TYPE_Q5_0: {
        /* d = -max/2^(k-1) (max: the value of largest magnitude): the quant
         * round(x/d) + 2^(k-1) is clipped at 2^k - 1, so the values opposite
         * max, beyond -max + d/2, lose up to a full step d; f16(d) adds
         * 2^(k-1)*d*u */
        double half = type == XF_TYPE_Q4_0 ? 8 : 16;
        double d = amax / half;
        b = d + half * d * u;
        break;
    }
    case XF_TYPE_Q4_1:
    case XF_TYPE_Q5_1: {
        /* d = (max-min)/nmax, no clipping: d/2, plus nmax*d*u from f16(d) and
         * |min|*u from f16(min) */
        double nmax = type == XF_TYPE_Q4_1 ? 15 : 31;
        double d = (mx - mn) / nmax;
        b = d / 2 + nmax * d * u + fabs(mn) * u;
        break;
    }
    case XF_TYPE_Q8_K:
        b = amax / 127 / 2; /* d = 1/iscale stays f32: half a step */
        break;
    case XF_TYPE_Q2_K:
    case XF_TYPE_Q4_K:
    case XF_TYPE_Q5_K: {
        /* quant.c's asymmetric method, per sub-block j: span_j =
         * max(x,0) - min(x,0), R = max span_j, c = (1+2u)/smax.  The offset
         * M_j = dmin*lm_j <= -min(x,0) + dmin with dmin <= R*c; the step
         * d*ls_j <= s_j + d with s_j = (max x + M_j)/nmax <= (span_j + R*c)/nmax
         * and d <= c * max s <= c * R(1+c)/nmax.  Nothing clips (both are
         * rounded up), so the error is half a step. */
        const int sub = type == XF_TYPE_Q2_K ? 16 : 32;
        const double nmax = type == XF_TYPE_Q2_K ? 3 : type == XF_TYPE_Q4_K ? 15 : 31;
        const double c = (1 + 2 * u) / (type == XF_TYPE_Q2_K ? 15 : 63);
        double span[16], R = 0;
        for (int j = 0; j < be / sub; j++) {
            double lo = 0, hi = 0;
            for (int i = 0; i < sub; i++) {
                lo = fmin(lo, x[sub * j + i]);
                hi = fmax(hi, x[sub * j + i]);
            }
            span[j] = hi - lo;
            R = fmax(R, span[j]);
        }
        for (int i = 0; i < be; i++)
            bound[i] = ((span[i / sub] + R * c) / nmax + c * R * (1 + c) / nmax) / 2;
        goto margin;
    }
    case XF_TYPE_Q3_K:
    case XF_TYPE_Q6_K: {
        /* symmetric, per 16: step_j = d*sc_j <= a_j/qmax + d (a_j the
         * sub-block's absmax), d <= (amax/qmax)*c; |x|/step <= qmax never clips */
        const double qmax = type == XF_TYPE_Q3_K ? 3 : 31;
        const double c = (1 + 2 * u) / (type == XF_TYPE_Q3_K ? 31 : 127);
        for (int j = 0; j < be / 16; j++) {
            double a = 0;
            for (int i = 0; i < 16; i++)
                a = fmax(a, fabs((double)x[16 * j + i]));
            for (int i = 0; i < 16; i++)
                bound[16 * j + i] = (a + amax * c) / qmax / 2;
        }
        goto margin;
    }
    default:
        fail_msg("no bound for type %d", type);
    }
    for (int i = 0; i < be; i++)
        bound[i] = b;
margin:
    /* float rounding of the scale products and of the dequantized value
     * itself (2^-24 relative): a small relative and absolute margin */
    if (type != XF_TYPE_F32)
        for (int i = 0; i < be; i++)
            bound[i] = bound[i] * (1 + 1e-5) + amax * 1e-6;
}

static void test_roundtrip(void **state)
{
    (void)state;
    enum { N = 4096 };
    float *x = malloc(N * sizeof(float));    /* [N] input row */
    float *y = malloc(N * sizeof(float));    /* [N] dequantized */
    double *bd = malloc(N * sizeof(double)); /* [N] error bound per element */
    uint8_t *q = malloc(N * 4 + 64);         /* the quantized row */
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(bd);
    assert_non_null(q);
    for (size_t c = 0; c < N_CASES; c++) {
        const type_case *tc = &CASES[c];
        const int be = tc->block_elems == 1 ? 32 : tc->block_elems; /* the unit a bound is taken over */
        uint64_t st = 99 + c;
        tu_fill_random(x, N, &st, -1, 1);
        /* vary the magnitude per 16 elements (0.25x..4x): sub-blocks of one
         * super-block then get different scales, which exercises the scale
         * packing; small enough a range that f16 scales stay normal */
        for (int b = 0; b < N / 16; b++) {
            float m = powf(2.0f, tu_rand_float(&st, -2, 2));
            for (int i = 0; i < 16; i++)
                x[b * 16 + i] *= m;
        }
        uint64_t bytes;
        assert_true(quant_row_bytes(tc->type, N, &bytes));
        assert_int_equal(quant_quantize_row(tc->type, x, q, N), bytes);
        tu_poison(y, N);
        quant_dequant_row(tc->type, q, y, N);
        for (int b = 0; b < N / be; b++)
            roundtrip_bounds(tc->type, x + b * be, be, bd + b * be);
        double worst = 0; /* largest error / bound */
        double sq = 0, sx = 0;
        for (int i = 0; i < N; i++) {
            double e = fabs((double)y[i] - (double)x[i]);
            sq += e * e;
            sx += (double)x[i] * x[i];
            if (!(e <= bd[i]))
                fail_msg("%s: element %d: x %.9g -> %.9g, error %.3g > bound %.3g", quant_type_name(tc->type), i,
                         x[i], y[i], e, bd[i]);
            if (bd[i] > 0)
                worst = fmax(worst, e / bd[i]);
        }
        /* the bound must not be vacuous either: some element comes close */
        if (tc->type != XF_TYPE_F32 && !(worst > 0.3))
            fail_msg("%s: largest error only %.3f of the bound: bound too loose?", quant_type_name(tc->type), worst);
        print_message("  %-5s roundtrip: NMSE %.3g, max error %.4f of bound\n", quant_type_name(tc->type),
                      sq / sx, worst);
    }
    free(x);
    free(y);
    free(bd);
    free(q);
}

/* 3. the dot products agree with dequantize-then-dot, for quantized rows and
 * for random blocks that reach every quant value */
static void test_dot(void **state)
{
    (void)state;
    static const int64_t lens_blocks[] = {1, 3, 16};
    static const int64_t lens_elems[] = {1, 7, 15, 16, 17, 255, 256, 257, 1000, 4096};
    float *x = malloc(4096 * 32 * sizeof(float)); /* [n] activations */
    float *w = malloc(4096 * 32 * sizeof(float)); /* [n] dequantized weights */
    uint8_t *q = malloc(4096 * 32 * 4 + 1);       /* the row, +1 for misalignment */
    assert_non_null(x);
    assert_non_null(w);
    assert_non_null(q);
    uint64_t st = 4242;
    for (size_t c = 0; c < N_CASES; c++) {
        const type_case *tc = &CASES[c];
        const bool elem = tc->block_elems == 1;
        const size_t n_lens = elem ? sizeof lens_elems / sizeof lens_elems[0] : sizeof lens_blocks / sizeof lens_blocks[0];
        for (size_t li = 0; li < n_lens; li++) {
            int64_t n = elem ? lens_elems[li] : lens_blocks[li] * tc->block_elems;
            for (int kind = 0; kind < 2; kind++) {
                uint8_t *row = q + 1; /* misaligned on purpose */
                tu_fill_random(x, (size_t)n, &st, -1, 1);
                if (kind == 0) {
                    tu_fill_random(w, (size_t)n, &st, -1, 1);
                    quant_quantize_row(tc->type, w, row, n);
                } else {
                    random_blocks(tc->type, row, n, &st);
                }
                tu_poison(w, (size_t)n);
                quant_dequant_row(tc->type, row, w, n);
                double expect = 0, mag = 0;
                for (int64_t i = 0; i < n; i++) {
                    expect += (double)w[i] * (double)x[i];
                    mag += fabs((double)w[i] * (double)x[i]);
                }
                assert_true(isfinite(expect) && mag > 0);
                double r = quant_dot_ref(tc->type, row, x, n);
                if (!(fabs(r - expect) <= 1e-12 * mag))
                    fail_msg("%s n=%lld kind=%d: dot_ref %.17g, want %.17g", quant_type_name(tc->type),
                             (long long)n, kind, r, expect);
                /* f32 accumulation of at most 4096 terms in 16 lanes: the
                 * worst case is ~(n/16 + 8)*2^-24*sum|wx| = 1.6e-5; random
                 * signs give ~1e-8 (measured up to n = 16384), so 2e-6 is a
                 * wide margin that still catches any wrong weight */
                double r32 = kern_cpu_quant_dot(tc->type, row, x, n);
                if (!(fabs(r32 - expect) <= 2e-6 * mag))
                    fail_msg("%s n=%lld kind=%d: dot_f32 %.9g, want %.9g (rel to sum|wx| %.3g)",
                             quant_type_name(tc->type), (long long)n, kind, r32, expect,
                             fabs(r32 - expect) / mag);
            }
        }
    }
    free(x);
    free(w);
    free(q);
}

/* 3b. kern_cpu_quant_dot (fused kernels on CPUs with AVX2+FMA+F16C) and
 * kern_cpu_quant_dot_generic (the portable path), both checked, for every block
 * type. */
typedef float (*dot_f32_fn)(int type, const void *w, const float *x, int64_t n);
static const struct {
    dot_f32_fn fn;
    const char *name;
} DOT_F32[] = {{kern_cpu_quant_dot, "dot_f32"}, {kern_cpu_quant_dot_generic, "dot_f32_generic"}};

/* the f16/f32 scale fields of one block of type, at *offs (count returned) */
static int scale_offsets(int type, int offs[2])
{
    switch (type) {
    case XF_TYPE_Q4_0: case XF_TYPE_Q5_0: case XF_TYPE_Q8_0: case XF_TYPE_Q8_K:
        offs[0] = 0;
        return 1;
    case XF_TYPE_Q4_1: case XF_TYPE_Q5_1: case XF_TYPE_Q8_1: case XF_TYPE_Q4_K: case XF_TYPE_Q5_K:
        offs[0] = 0;
        offs[1] = 2;
        return 2;
    case XF_TYPE_Q2_K:
        offs[0] = 80;
        offs[1] = 82;
        return 2;
    case XF_TYPE_Q3_K:
        offs[0] = 108;
        return 1;
    case XF_TYPE_Q6_K:
        offs[0] = 208;
        return 1;
    default:
        return 0;
    }
}

/* Random blocks whose every weight is a multiple of 2^-6 of magnitude < 2^8:
 * random quant bytes, scales +-2^-k (k = 4..6), Q4_1/Q5_1 mins +-j*2^-5
 * (j < 64).  With small integer x every product and every partial sum of a
 * short row is then exact in f32, in any order. */
static void exact_blocks(int type, uint8_t *dst, int64_t nb, uint64_t *rng)
{
    const quant_type_info *t = quant_type_get(type);
    int offs[2];
    const int n_offs = scale_offsets(type, offs);
    for (int64_t i = 0; i < nb; i++) {
        uint8_t *b = dst + i * t->block_bytes;
        for (int j = 0; j < t->block_bytes; j++)
            b[j] = (uint8_t)tu_rand_u64(rng);
        for (int k = 0; k < n_offs; k++) {
            const uint64_t r = tu_rand_u64(rng);
            float v = ldexpf((r & 1) ? -1.0f : 1.0f, -4 - (int)((r >> 1) % 3));
            if (k == 1 && (type == XF_TYPE_Q4_1 || type == XF_TYPE_Q5_1))
                v = ldexpf((float)((int)((r >> 8) % 127) - 63), -5);
            if (type == XF_TYPE_Q8_K) {
                memcpy(b, &v, 4);
            } else {
                uint16_t h = xf_f32_to_f16(v);
                memcpy(b + offs[k], &h, 2);
            }
        }
    }
}

/* Every weight counts exactly: blocks from exact_blocks, x in +-{1,2}
 * (never zero), rows of up to 28 blocks or 3 super-blocks.  The true dot is
 * a multiple of 2^-6 below 2^18 in magnitude (asserted: sum|w*x| < 2^18), so
 * f32 holds it and every partial sum exactly, and both f32 dots must equal
 * quant_dot_ref bit for bit: any wrong quant, bit, scale, min or block
 * stride shows, whatever the summation order. */
static void test_dot_f32_exact(void **state)
{
    (void)state;
    static const int64_t blocks32[] = {1, 2, 3, 5, 28}, blocks256[] = {1, 2, 3};
    float x[28 * 32 + 1], w[28 * 32];
    uint8_t q[28 * 36 + 1];
    uint64_t st = 99;
    int checked = 0;
    for (size_t c = 0; c < N_CASES; c++) {
        const type_case *tc = &CASES[c];
        if (tc->block_elems == 1)
            continue;
        const bool k = tc->block_elems == 256;
        const size_t nl = k ? sizeof blocks256 / sizeof blocks256[0] : sizeof blocks32 / sizeof blocks32[0];
        for (size_t li = 0; li < nl; li++) {
            const int64_t nb = k ? blocks256[li] : blocks32[li], n = nb * tc->block_elems;
            for (int rep = 0; rep < 8; rep++) {
                uint8_t *row = q + (rep & 1); /* odd addresses too */
                float *xv = x + ((rep >> 1) & 1); /* x not 32-byte aligned */
                exact_blocks(tc->type, row, nb, &st);
                for (int64_t i = 0; i < n; i++) {
                    const uint64_t r = tu_rand_u64(&st);
                    xv[i] = (float)(1 + (int)((r >> 1) & 1)) * ((r & 1) ? -1.0f : 1.0f);
                }
                tu_poison(w, (size_t)n);
                quant_dequant_row(tc->type, row, w, n);
                double mag = 0;
                for (int64_t i = 0; i < n; i++) {
                    assert_true(ldexp(w[i], 6) == nearbyint(ldexp(w[i], 6))); /* a multiple of 2^-6 */
                    mag += fabs((double)w[i] * xv[i]);
                }
                assert_true(mag < 262144.0);
                const double ref = quant_dot_ref(tc->type, row, xv, n);
                for (size_t f = 0; f < sizeof DOT_F32 / sizeof DOT_F32[0]; f++) {
                    const float r = DOT_F32[f].fn(tc->type, row, xv, n);
                    if ((double)r != ref)
                        fail_msg("%s %s n=%lld rep %d: %.9g, exact %.17g", DOT_F32[f].name,
                                 quant_type_name(tc->type), (long long)n, rep, (double)r, ref);
                }
                checked++;
            }
        }
    }
    assert_int_equal(checked, 8 * (6 * 5 + 6 * 3)); /* 6 small-block and 6 super-block types */
}

/* Realistic rows: quantized random rows and random blocks (every quant
 * value, random f16 scales), on the shapes of Qwen2.5-0.5B (k = 896 for the
 * 32-element formats, 4864 for the k-quants) and a single block.  Bound:
 * each product and each add rounds once in f32 (2^-24 relative); a lane
 * sums a block (<= 4 terms), the block scale multiplies, and <= 2 block
 * accumulators per lane take nb/2 or 4*nb/2 adds before an 8-lane tree, so
 * with random signs the error is ~2^-24*sqrt(terms) of sum|w*x|, a few 1e-8
 * here.  2e-6 of sum|w*x| (as test_dot) is 20x over the largest seen and
 * still 1/10 of one quant step of one weight of 4864. */
static void test_dot_f32_rows(void **state)
{
    (void)state;
    float *x = malloc((4864 + 1) * sizeof(float)); /* [n + 1]: x read from x + 1 */
    float *w = malloc(4864 * sizeof(float));       /* [n] dequantized weights */
    uint8_t *q = malloc(4864 * 2 + 1);             /* the row (<= 292/256 bytes per element), +1 for misalignment */
    assert_non_null(x);
    assert_non_null(w);
    assert_non_null(q);
    uint64_t st = 31337;
    double worst[2] = {0, 0};
    for (size_t c = 0; c < N_CASES; c++) {
        const type_case *tc = &CASES[c];
        if (tc->block_elems == 1)
            continue;
        const int64_t lens[] = {tc->block_elems, tc->block_elems == 256 ? 4864 : 896};
        for (size_t li = 0; li < 2; li++)
            for (int kind = 0; kind < 2; kind++) {
                const int64_t n = lens[li];
                uint8_t *row = q + 1;
                float *xv = x + 1;
                tu_fill_random(xv, (size_t)n, &st, -1, 1);
                if (kind == 0) {
                    tu_fill_random(w, (size_t)n, &st, -1, 1);
                    assert_true(quant_quantize_row(tc->type, w, row, n) > 0);
                } else {
                    random_blocks(tc->type, row, n, &st);
                }
                tu_poison(w, (size_t)n);
                quant_dequant_row(tc->type, row, w, n);
                double expect = 0, mag = 0;
                for (int64_t i = 0; i < n; i++) {
                    expect += (double)w[i] * (double)xv[i];
                    mag += fabs((double)w[i] * (double)xv[i]);
                }
                assert_true(isfinite(expect) && mag > 0);
                for (size_t f = 0; f < sizeof DOT_F32 / sizeof DOT_F32[0]; f++) {
                    const double r = DOT_F32[f].fn(tc->type, row, xv, n), e = fabs(r - expect) / mag;
                    if (!(e <= 2e-6))
                        fail_msg("%s %s n=%lld kind=%d: %.9g, want %.9g (error %.3g of sum|wx|)", DOT_F32[f].name,
                                 quant_type_name(tc->type), (long long)n, kind, r, expect, e);
                    worst[f] = fmax(worst[f], e);
                }
            }
    }
    print_message("  largest error of sum|w*x|: dot_f32 %.3g, dot_f32_generic %.3g\n", worst[0], worst[1]);
    free(x);
    free(w);
    free(q);
}

/* Non-finite scales reach the result as in quant_dot_ref: a NaN scale (or
 * min) anywhere in the row gives NaN, an infinite one a non-finite result
 * (ref: NaN from inf*0 where a quant is 0; f32: inf or NaN), a zero scale
 * block adds nothing. */
static void test_dot_f32_special(void **state)
{
    (void)state;
    uint8_t q[8 * 292];
    float x[8 * 256], w[8 * 256];
    uint64_t st = 4711;
    for (size_t c = 0; c < N_CASES; c++) {
        const type_case *tc = &CASES[c];
        int offs[2];
        const int n_offs = scale_offsets(tc->type, offs);
        if (tc->block_elems == 1 || n_offs == 0)
            continue;
        const int64_t nb = tc->block_elems == 256 ? 3 : 8, n = nb * tc->block_elems;
        tu_fill_random(x, (size_t)n, &st, -1, 1);
        for (int field = 0; field < n_offs; field++)
            for (int what = 0; what < 3; what++) { /* NaN, +inf, 0 */
                if (tc->type == XF_TYPE_Q8_1 && field == 1)
                    continue; /* Q8_1's second field is the sum, unused by the dot */
                random_blocks(tc->type, q, n, &st);
                uint8_t *b = q + (nb / 2) * tc->block_bytes; /* a block in the middle */
                if (tc->type == XF_TYPE_Q8_K) {
                    const float v = what == 0 ? NAN : what == 1 ? INFINITY : 0.0f;
                    memcpy(b, &v, 4);
                } else {
                    const uint16_t h = what == 0 ? 0x7e00u : what == 1 ? 0x7c00u : 0x0000u;
                    memcpy(b + offs[field], &h, 2);
                }
                const double ref = quant_dot_ref(tc->type, q, x, n);
                for (size_t f = 0; f < sizeof DOT_F32 / sizeof DOT_F32[0]; f++) {
                    const float r = DOT_F32[f].fn(tc->type, q, x, n);
                    const char *tn = quant_type_name(tc->type);
                    if (what == 0) {
                        if (!isnan(r))
                            fail_msg("%s %s: NaN in field %d gave %.9g", DOT_F32[f].name, tn, field, (double)r);
                    } else if (what == 1) {
                        if (isfinite(r) || isfinite(ref))
                            fail_msg("%s %s: inf in field %d gave %.9g (ref %.9g)", DOT_F32[f].name, tn, field,
                                     (double)r, ref);
                    } else {
                        quant_dequant_row(tc->type, q, w, n);
                        double mag = 0;
                        for (int64_t i = 0; i < n; i++)
                            mag += fabs((double)w[i] * x[i]);
                        if (!(fabs(r - ref) <= 2e-6 * mag))
                            fail_msg("%s %s: zero field %d gave %.9g, ref %.9g", DOT_F32[f].name, tn, field,
                                     (double)r, ref);
                    }
                }
            }
    }
}

/* 5a. F16 -> F32: all 65536 halves against numpy, bit for bit, and against
 * the definition: (-1)^s * 2^(e-15) * (1 + m/1024), subnormals 2^-14 * m/1024 */
static void test_f16_to_f32_all(void **state)
{
    (void)state;
    fixture f;
    fx_load(&f, "halfs.bin");
    size_t n;
    const uint8_t *tab = fx_get(&f, "f16_to_f32", &n);
    assert_int_equal(n, 65536 * 4);
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t want;
        memcpy(&want, tab + 4 * h, 4);
        float got = xf_f16_to_f32((uint16_t)h);
        if (f2u(got) != want)
            fail_msg("f16 0x%04x: got 0x%08x, numpy 0x%08x", h, f2u(got), want);
        int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
        if (e == 31) {
            assert_true(m ? isnan(got) : isinf(got));
            assert_int_equal(signbit(got) != 0, s);
            if (m) /* payload kept: a NaN converts back to the same half */
                assert_int_equal(f2u(got) & 0x7fffff, (uint32_t)m << 13);
            continue;
        }
        double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
        if (s)
            v = -v;
        assert_true((double)got == v);
        assert_int_equal(signbit(got) != 0, s); /* -0 stays -0 */
    }
    fx_free(&f);
}

/* 5b. F32 -> F16 on the tricky values against numpy; F32 -> BF16 against gguf
 * (ggml's rounding); includes NaN payloads: numpy keeps the top payload bits */
static void test_f32_to_half_fixture(void **state)
{
    (void)state;
    fixture f;
    fx_load(&f, "halfs.bin");
    size_t n_in, n_h, n_b;
    const uint8_t *in = fx_get(&f, "f32_in", &n_in);
    const uint8_t *h16 = fx_get(&f, "f32_to_f16", &n_h);
    const uint8_t *hb = fx_get(&f, "f32_to_bf16", &n_b);
    const size_t n = n_in / 4;
    assert_true(n > 1000);
    assert_int_equal(n_h, 2 * n);
    assert_int_equal(n_b, 2 * n);
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        uint16_t w16, wb;
        memcpy(&u, in + 4 * i, 4);
        memcpy(&w16, h16 + 2 * i, 2);
        memcpy(&wb, hb + 2 * i, 2);
        uint16_t g16 = xf_f32_to_f16(u2f(u));
        uint16_t gb = xf_f32_to_bf16(u2f(u));
        if (g16 != w16)
            fail_msg("f32 0x%08x (%.9g) -> f16: got 0x%04x, numpy 0x%04x", u, u2f(u), g16, w16);
        if (gb != wb)
            fail_msg("f32 0x%08x (%.9g) -> bf16: got 0x%04x, gguf 0x%04x", u, u2f(u), gb, wb);
    }
    fx_free(&f);
}

/* 5c. F32 -> F16 rounding by exact arithmetic, exhaustively over the halves:
 * every half round-trips, every midpoint between neighbours goes to the even
 * one, and one f32 ulp either side of it goes to the nearer one */
static void test_f32_to_f16_exhaustive(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        /* the round trip is exact for every pattern, NaN payloads included */
        uint16_t back = xf_f32_to_f16(xf_f16_to_f32((uint16_t)h));
        if (back != h)
            fail_msg("f16 0x%04x -> f32 -> f16 gives 0x%04x", h, back);
    }
    for (uint32_t h = 0; h < 0x7c00; h++) {
        for (uint32_t sign = 0; sign <= 0x8000; sign += 0x8000) {
            double lo = xf_f16_to_f32((uint16_t)h);
            /* the next half up; above 65504 it is 65536, which rounds to inf */
            double hi = h == 0x7bff ? 65536.0 : (double)xf_f16_to_f32((uint16_t)(h + 1));
            uint16_t up = (uint16_t)(h + 1); /* 0x7c00 is inf */
            float mid = (float)((lo + hi) / 2); /* exact: 12 significant bits */
            assert_true((double)mid == (lo + hi) / 2);
            if (sign)
                mid = -mid;
            uint16_t even = (h & 1) ? up : (uint16_t)h;
            uint16_t g = xf_f32_to_f16(mid);
            if (g != (even | sign))
                fail_msg("midpoint %.9g above 0x%04x: got 0x%04x, want 0x%04x", mid, h | sign, g, even | sign);
            float below = nextafterf(mid, 0), above = nextafterf(mid, sign ? -INFINITY : INFINITY);
            assert_int_equal(xf_f32_to_f16(below), h | sign);
            assert_int_equal(xf_f32_to_f16(above), up | sign);
        }
    }
    /* specials */
    assert_int_equal(xf_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(xf_f32_to_f16(-INFINITY), 0xfc00);
    assert_int_equal(xf_f32_to_f16(1e30f), 0x7c00);
    assert_int_equal(xf_f32_to_f16(-65520.0f), 0xfc00);
    assert_int_equal(xf_f32_to_f16(65519.99f), 0x7bff);
    assert_int_equal(xf_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(xf_f32_to_f16(1e-30f), 0x0000);
    assert_int_equal(xf_f32_to_f16(ldexpf(1, -25)), 0x0000);                /* tie -> even 0 */
    assert_int_equal(xf_f32_to_f16(nextafterf(ldexpf(1, -25), 1)), 0x0001); /* just above */
    assert_int_equal(xf_f32_to_f16(ldexpf(3, -25)), 0x0002);                /* tie 1|2 -> 2 */
    uint16_t qn = xf_f32_to_f16(NAN);
    assert_true((qn & 0x7c00) == 0x7c00 && (qn & 0x3ff) != 0);
    assert_int_equal(xf_f32_to_f16(u2f(0x7f800001)) & 0x7fff, 0x7c01); /* payload lost: still NaN */
    assert_int_equal(xf_f32_to_f16(u2f(0xff800001)), 0xfc01);
}

static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

/* 5d. BF16 both ways over all 65536 patterns */
static void test_bf16_all(void **state)
{
    (void)state;
    fixture f;
    fx_load(&f, "halfs.bin");
    size_t n;
    const uint8_t *fnv = fx_get(&f, "bf16_to_f32_fnv", &n);
    assert_int_equal(n, 8);
    uint64_t want_hash, hash = 0xcbf29ce484222325ULL;
    memcpy(&want_hash, fnv, 8);
    for (uint32_t h = 0; h < 65536; h++) {
        float v = xf_bf16_to_f32((uint16_t)h);
        uint32_t u = f2u(v);
        uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
        hash = fnv1a(hash, le, 4);
        /* by definition: the f32 whose top half is h */
        int s = h >> 15, e = (h >> 7) & 255, m = h & 127;
        if (e == 255) {
            assert_true(m ? isnan(v) : isinf(v));
        } else {
            double x = e ? ldexp(128 + m, e - 134) : ldexp(m, -133);
            assert_true((double)v == (s ? -x : x));
        }
        assert_int_equal(signbit(v) != 0, s);
        /* back: exact, except that a signalling NaN comes back quiet */
        uint16_t back = xf_f32_to_bf16(v);
        if (e == 255 && m)
            assert_int_equal(back, h | 0x40);
        else
            assert_int_equal(back, h);
    }
    if (hash != want_hash)
        fail_msg("bf16 -> f32 over all patterns differs from gguf (hash %016llx, want %016llx)",
                 (unsigned long long)hash, (unsigned long long)want_hash);
    /* ties to even, and overflow to inf */
    assert_int_equal(xf_f32_to_bf16(u2f(0x3f808000)), 0x3f80);
    assert_int_equal(xf_f32_to_bf16(u2f(0x3f818000)), 0x3f82);
    assert_int_equal(xf_f32_to_bf16(u2f(0x3f808001)), 0x3f81);
    assert_int_equal(xf_f32_to_bf16(u2f(0x7f7fffff)), 0x7f80);
    assert_int_equal(xf_f32_to_bf16(u2f(0xff7fffff)), 0xff80);
    assert_int_equal(xf_f32_to_bf16(u2f(0x7f800001)), 0x7fc0);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row_bytes),
        cmocka_unit_test(test_dequant_fixtures),
        cmocka_unit_test(test_quantize_vs_gguf),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_dot),
        cmocka_unit_test(test_dot_f32_exact),
        cmocka_unit_test(test_dot_f32_rows),
        cmocka_unit_test(test_dot_f32_special),
        cmocka_unit_test(test_f16_to_f32_all),
        cmocka_unit_test(test_f32_to_half_fixture),
        cmocka_unit_test(test_f32_to_f16_exhaustive),
        cmocka_unit_test(test_bf16_all),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
