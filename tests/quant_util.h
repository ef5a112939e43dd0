/* quant_util.h: what the test_quant*.c programs share: the types with
 * their block layouts written independently of quant.c, bit casts, the
 * fixtures of tests/fixtures/quant/ (made by scripts/make_quant_fixtures.py)
 * and random blocks of any type. static inline, as tests/gguf_bytes.h: each
 * program uses a part, and unused ones must not warn. */
#ifndef XF_TESTS_QUANT_UTIL_H
#define XF_TESTS_QUANT_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

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

static inline uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float u2f(uint32_t u)
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

static inline void fx_load(fixture *f, const char *name)
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
static inline const uint8_t *fx_find(const fixture *f, const char *name, size_t *n)
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

static inline const uint8_t *fx_get(const fixture *f, const char *name, size_t *n)
{
    const uint8_t *p = fx_find(f, name, n);
    if (!p)
        fail_msg("fixture record '%s' missing", name);
    return p;
}

static inline void fx_free(fixture *f)
{
    free(f->data);
    f->data = NULL;
}

/* ------------------------------------------------------ random weights */

/* Random blocks of a type: random bytes for the quants, sane random scales
 * (uniform in [-1,1], never NaN/Inf) written over the scale fields. */
static inline void random_blocks(int type, uint8_t *dst, int64_t n_elems, uint64_t *rng)
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

#endif
