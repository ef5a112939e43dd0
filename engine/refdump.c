#include "refdump.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "refdump reads little-endian data by memcpy: port the loads first"
#endif

/* ------------------------------------------------------------------ dtypes */

enum { KIND_FLOAT, KIND_SINT, KIND_UINT, KIND_BOOL };

typedef struct dtype_info {
    const char *name;
    uint8_t size;
    uint8_t kind;
    /* the position in the Rust safetensors Dtype enum (only the order
     * matters): its writer sorts by it, largest first, then by name */
    uint8_t py_rank;
} dtype_info;

static const dtype_info DTYPES[REFDUMP_DTYPE_COUNT] = {
    [REFDUMP_F32] = {"F32", 4, KIND_FLOAT, 12},
    [REFDUMP_F16] = {"F16", 2, KIND_FLOAT, 8},
    [REFDUMP_BF16] = {"BF16", 2, KIND_FLOAT, 9},
    [REFDUMP_F64] = {"F64", 8, KIND_FLOAT, 13},
    [REFDUMP_I32] = {"I32", 4, KIND_SINT, 10},
    [REFDUMP_I64] = {"I64", 8, KIND_SINT, 14},
    [REFDUMP_I16] = {"I16", 2, KIND_SINT, 6},
    [REFDUMP_I8] = {"I8", 1, KIND_SINT, 3},
    [REFDUMP_U8] = {"U8", 1, KIND_UINT, 2},
    [REFDUMP_U16] = {"U16", 2, KIND_UINT, 7},
    [REFDUMP_U32] = {"U32", 4, KIND_UINT, 11},
    [REFDUMP_U64] = {"U64", 8, KIND_UINT, 15},
    [REFDUMP_BOOL] = {"BOOL", 1, KIND_BOOL, 1},
    [REFDUMP_F8_E4M3] = {"F8_E4M3", 1, KIND_FLOAT, 5},
    [REFDUMP_F8_E5M2] = {"F8_E5M2", 1, KIND_FLOAT, 4},
};

static bool dtype_ok(int dtype)
{
    return dtype >= 0 && dtype < REFDUMP_DTYPE_COUNT;
}

const char *refdump_dtype_name(int dtype)
{
    return dtype_ok(dtype) ? DTYPES[dtype].name : "?";
}

size_t refdump_dtype_size(int dtype)
{
    return dtype_ok(dtype) ? DTYPES[dtype].size : 0;
}

static int dtype_lookup(const char *s, size_t len)
{
    for (int i = 0; i < REFDUMP_DTYPE_COUNT; i++)
        if (strlen(DTYPES[i].name) == len && memcmp(DTYPES[i].name, s, len) == 0)
            return i;
    return -1;
}

int refdump_dtype_from_name(const char *name)
{
    return name ? dtype_lookup(name, strlen(name)) : -1;
}

/* Kept here rather than taken from quant.h so that this leaf module (and its
 * fuzzing) depends on nothing but err.h. */
static float half_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {
        /* subnormal: mant * 2^-24, exact in f32 */
        float v = (float)mant * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* OCP FP8 E4M3 ("fn": no infinities, S.1111.111 is NaN), bias 7 */
static float f8e4m3_to_f32(uint8_t b)
{
    uint32_t sign = (uint32_t)(b & 0x80) << 24, exp = (b >> 3) & 0xf, mant = b & 7, bits;
    if (exp == 0xf && mant == 7) {
        bits = sign | 0x7fc00000u;
    } else if (exp != 0) {
        bits = sign | ((exp + 120) << 23) | (mant << 20);
    } else {
        float v = (float)mant * (1.0f / 512.0f); /* subnormal: mant * 2^-9 */
        return sign ? -v : v;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* E5M2 is the top byte of an IEEE half */
static float f8e5m2_to_f32(uint8_t b)
{
    return half_to_f32((uint16_t)(b << 8));
}

/* --------------------------------------------------- text for messages */

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if invalid:
 * no overlongs, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
    uint8_t c = s[0], lo = 0x80, hi = 0xbf;
    size_t len;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c == 0xe0)
        len = 3, lo = 0xa0;
    else if (c == 0xed)
        len = 3, hi = 0x9f;
    else if (c >= 0xe1 && c <= 0xef)
        len = 3;
    else if (c == 0xf0)
        len = 4, lo = 0x90;
    else if (c == 0xf4)
        len = 4, hi = 0x8f;
    else if (c >= 0xf1 && c <= 0xf3)
        len = 4;
    else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return len;
}

static bool utf8_valid(const char *s, size_t n)
{
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(u + i, n - i);
        if (!k)
            return false;
        i += k;
    }
    return true;
}

/* Names come from untrusted files and end up on a terminal: one line, no
 * control bytes, bounded length. */
#define NAME_SHOW_MAX 64
#define PATH_SHOW_MAX 160
#define SHOW_BUF(max) (4 * (max) + 4)

/* S[0..len) for a message: printable ASCII and valid UTF-8 kept, '"', '\\'
 * and every other byte as \xNN, cut after MAX input bytes with "...". */
static const char *show(char *buf, const char *s, size_t len, size_t max)
{
    const uint8_t *u = (const uint8_t *)s;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t k = u[i] >= 0x80 ? utf8_seq(u + i, len - i) : 1;
        if (k == 0)
            k = 1;
        if (i + k > max) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (k > 1) {
            memcpy(buf + o, s + i, k);
            o += k;
        } else if (u[i] >= 0x20 && u[i] < 0x7f && u[i] != '"' && u[i] != '\\') {
            buf[o++] = s[i];
        } else {
            snprintf(buf + o, 5, "\\x%02x", u[i]);
            o += 4;
        }
        i += k;
    }
    buf[o] = '\0';
    return buf;
}

static void show_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

/* ------------------------------------------------------------- reader */

typedef struct rd_tensor {
    refdump_tensor pub; /* first: refdump_at() hands out &pub and gets it back */
    uint64_t begin, end;
    /* file offsets of the JSON values, for messages about them later */
    uint64_t name_at, dtype_at, shape_at, offsets_at;
} rd_tensor;

typedef struct rd_meta {
    char *key, *val;
    uint64_t at;
} rd_meta;

struct refdump {
    char *path;
    char shown[SHOW_BUF(PATH_SHOW_MAX)]; /* path as messages print it */
    const uint8_t *map;
    size_t size;
    bool mapped;
    uint64_t data_at; /* file offset of the data buffer: 8 + header length */
    rd_tensor *t;     /* [n] sorted by data offset */
    size_t n, cap;
    rd_tensor **by_name; /* [n] sorted by strcmp, for refdump_find */
    rd_meta *meta;       /* [nm] sorted by key */
    size_t nm, capm;
};

/* The JSON parser: recursive descent over exactly the safetensors schema. */
typedef struct jp {
    const uint8_t *h; /* the header, not NUL terminated */
    size_t n;
    size_t pos;
    const char *file;
    char field[SHOW_BUF(NAME_SHOW_MAX) + 64]; /* what is being parsed */
    xf_err *err;
} jp;

#define HDR 8 /* bytes before the JSON: its u64 length */

__attribute__((format(printf, 3, 4))) static int jp_fail(jp *p, size_t at, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return xf_err_set(p->err, "%s: %s at byte %zu: %s", p->file, p->field, at + HDR, msg);
}

static int jp_peek(const jp *p)
{
    return p->pos < p->n ? p->h[p->pos] : -1;
}

static const char *jp_found(const jp *p, char *buf, size_t cap)
{
    int c = jp_peek(p);
    if (c < 0)
        snprintf(buf, cap, "the end of the header");
    else if (c >= 0x20 && c < 0x7f)
        snprintf(buf, cap, "'%c'", c);
    else
        snprintf(buf, cap, "byte 0x%02x", c);
    return buf;
}

static void jp_ws(jp *p)
{
    while (p->pos < p->n) {
        uint8_t c = p->h[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return;
        p->pos++;
    }
}

static int jp_expect(jp *p, int c, const char *what)
{
    char b[32];
    if (jp_peek(p) == c) {
        p->pos++;
        return 0;
    }
    return jp_fail(p, p->pos, "expected %s, found %s", what, jp_found(p, b, sizeof b));
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* the 4 hex digits of a \u escape starting at p->pos */
static int jp_hex4(jp *p, uint32_t *cp)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int d = jp_peek(p);
        int x = d < 0 ? -1 : hexval(d);
        if (x < 0) {
            char b[32];
            return jp_fail(p, p->pos, "bad \\u escape: expected a hex digit, found %s",
                           jp_found(p, b, sizeof b));
        }
        v = v * 16 + (uint32_t)x;
        p->pos++;
    }
    *cp = v;
    return 0;
}

static size_t utf8_put(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A JSON string into a malloc'd, NUL-terminated, valid UTF-8 copy. \u0000
 * is refused: every string here becomes a C string (a name, a key). */
static int jp_string(jp *p, char **out, size_t *outlen)
{
    char b[32];
    *out = NULL;
    if (jp_peek(p) != '"')
        return jp_fail(p, p->pos, "expected a string, found %s", jp_found(p, b, sizeof b));
    p->pos++;
    size_t cap = 32, o = 0;
    char *s = malloc(cap);
    if (!s)
        return jp_fail(p, p->pos, "out of memory");
    for (;;) {
        if (o + 4 >= cap) {
            char *g = realloc(s, cap * 2);
            if (!g) {
                free(s);
                return jp_fail(p, p->pos, "out of memory");
            }
            s = g;
            cap *= 2;
        }
        int c = jp_peek(p);
        if (c < 0) {
            free(s);
            return jp_fail(p, p->pos, "unterminated string: found the end of the header");
        }
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20) {
            free(s);
            return jp_fail(p, p->pos, "control byte 0x%02x in a string (it must be escaped)", c);
        }
        if (c >= 0x80) {
            size_t k = utf8_seq(p->h + p->pos, p->n - p->pos);
            if (!k) {
                free(s);
                return jp_fail(p, p->pos, "invalid UTF-8 in a string (byte 0x%02x)", c);
            }
            memcpy(s + o, p->h + p->pos, k);
            o += k;
            p->pos += k;
            continue;
        }
        if (c != '\\') {
            s[o++] = (char)c;
            p->pos++;
            continue;
        }
        size_t esc_at = p->pos++;
        int e = jp_peek(p);
        uint32_t cp;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            cp = (uint32_t)e;
            break;
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;
        case 'u':
            p->pos++;
            if (jp_hex4(p, &cp)) {
                free(s);
                return -1;
            }
            if (cp >= 0xd800 && cp <= 0xdbff) {
                uint32_t lo = 0;
                if (p->pos + 1 < p->n && p->h[p->pos] == '\\' && p->h[p->pos + 1] == 'u') {
                    p->pos += 2;
                    if (jp_hex4(p, &lo)) {
                        free(s);
                        return -1;
                    }
                }
                if (lo < 0xdc00 || lo > 0xdfff) {
                    free(s);
                    return jp_fail(p, esc_at, "unpaired surrogate \\u%04X in a string", (unsigned)cp);
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                free(s);
                return jp_fail(p, esc_at, "unpaired surrogate \\u%04X in a string", (unsigned)cp);
            } else if (cp == 0) {
                free(s);
                return jp_fail(p, esc_at, "\\u0000 (NUL) is not allowed in a string");
            }
            o += utf8_put(s + o, cp);
            continue;
        default:
            free(s);
            return jp_fail(p, p->pos, "bad escape: '\\' followed by %s", jp_found(p, b, sizeof b));
        }
        p->pos++;
        s[o++] = (char)cp;
    }
    s[o] = '\0';
    *out = s;
    if (outlen)
        *outlen = o;
    return 0;
}

static int jp_uint(jp *p, uint64_t *v)
{
    char b[32];
    int c = jp_peek(p);
    if (c == '-')
        return jp_fail(p, p->pos, "negative number (only non-negative integers are allowed)");
    if (c < '0' || c > '9')
        return jp_fail(p, p->pos, "expected a non-negative integer, found %s", jp_found(p, b, sizeof b));
    size_t start = p->pos;
    uint64_t x = 0;
    while ((c = jp_peek(p)) >= '0' && c <= '9') {
        if (!xf_mul_u64(x, 10, &x) || !xf_add_u64(x, (uint64_t)(c - '0'), &x))
            return jp_fail(p, start, "integer too large for 64 bits");
        p->pos++;
    }
    if (p->h[start] == '0' && p->pos - start > 1)
        return jp_fail(p, start, "leading zero in a number");
    if (c == '.' || c == 'e' || c == 'E')
        return jp_fail(p, p->pos, "expected an integer, found a fraction or exponent");
    *v = x;
    return 0;
}

static int jp_shape(jp *p, rd_tensor *t)
{
    jp_ws(p);
    if (jp_expect(p, '[', "'['"))
        return -1;
    jp_ws(p);
    if (jp_peek(p) == ']') {
        p->pos++;
        return 0;
    }
    for (;;) {
        jp_ws(p);
        size_t at = p->pos;
        uint64_t d;
        if (t->pub.ndim == REFDUMP_MAX_DIMS)
            return jp_fail(p, at, "more than %d dimensions", REFDUMP_MAX_DIMS);
        if (jp_uint(p, &d))
            return -1;
        if (d > (uint64_t)INT64_MAX)
            return jp_fail(p, at, "dimension %" PRIu64 " is too large", d);
        t->pub.shape[t->pub.ndim++] = (int64_t)d;
        jp_ws(p);
        if (jp_peek(p) == ',') {
            p->pos++;
            continue;
        }
        return jp_expect(p, ']', "',' or ']'");
    }
}

static int jp_offsets(jp *p, rd_tensor *t)
{
    jp_ws(p);
    if (jp_expect(p, '[', "'['"))
        return -1;
    jp_ws(p);
    if (jp_uint(p, &t->begin))
        return -1;
    jp_ws(p);
    if (jp_expect(p, ',', "',' ([begin, end])"))
        return -1;
    jp_ws(p);
    if (jp_uint(p, &t->end))
        return -1;
    jp_ws(p);
    return jp_expect(p, ']', "']' ([begin, end])");
}

/* Grows an array of elem-sized items to hold one more. */
static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 16, bytes;
    if (!xf_mul_size(nc, elem, &bytes))
        return -1;
    void *g = realloc(*arr, bytes);
    if (!g)
        return -1;
    *arr = g;
    *cap = nc;
    return 0;
}

/* One tensor entry; takes ownership of name. */
static int jp_tensor(jp *p, refdump *r, char *name, size_t name_len, size_t name_at, uint64_t data_size)
{
    char nm[SHOW_BUF(NAME_SHOW_MAX)], b[96];
    show(nm, name, name_len, NAME_SHOW_MAX);
    if (grow((void **)&r->t, &r->cap, r->n, sizeof *r->t)) {
        free(name);
        return jp_fail(p, p->pos, "out of memory");
    }
    rd_tensor *t = &r->t[r->n++];
    memset(t, 0, sizeof *t);
    t->pub.name = name;
    t->pub.dtype = -1;
    t->name_at = name_at + HDR;

    snprintf(p->field, sizeof p->field, "tensor \"%s\"", nm);
    size_t entry_at = p->pos;
    if (jp_expect(p, '{', "'{'"))
        return -1;
    bool have_dtype = false, have_shape = false, have_offsets = false;
    jp_ws(p);
    if (jp_peek(p) == '}') {
        p->pos++;
    } else {
        for (;;) {
            jp_ws(p);
            size_t key_at = p->pos;
            char *key;
            size_t key_len;
            if (jp_string(p, &key, &key_len))
                return -1;
            jp_ws(p);
            if (jp_expect(p, ':', "':'")) {
                free(key);
                return -1;
            }
            jp_ws(p);
            bool *have;
            if (strcmp(key, "dtype") == 0)
                have = &have_dtype;
            else if (strcmp(key, "shape") == 0)
                have = &have_shape;
            else if (strcmp(key, "data_offsets") == 0)
                have = &have_offsets;
            else {
                jp_fail(p, key_at, "unknown field \"%s\"", show(b, key, key_len, 16));
                free(key);
                return -1;
            }
            if (*have) {
                jp_fail(p, key_at, "duplicate field \"%s\"", key);
                free(key);
                return -1;
            }
            *have = true;
            snprintf(p->field, sizeof p->field, "tensor \"%s\" %s", nm, key);
            free(key);
            size_t val_at = p->pos;
            if (have == &have_dtype) {
                char *dt;
                size_t dt_len;
                t->dtype_at = val_at + HDR;
                if (jp_string(p, &dt, &dt_len))
                    return -1;
                t->pub.dtype = dtype_lookup(dt, dt_len);
                if (t->pub.dtype < 0)
                    jp_fail(p, val_at, "unknown dtype \"%s\"", show(b, dt, dt_len, 16));
                free(dt);
                if (t->pub.dtype < 0)
                    return -1;
            } else if (have == &have_shape) {
                t->shape_at = val_at + HDR;
                if (jp_shape(p, t))
                    return -1;
            } else {
                t->offsets_at = val_at + HDR;
                if (jp_offsets(p, t))
                    return -1;
            }
            snprintf(p->field, sizeof p->field, "tensor \"%s\"", nm);
            jp_ws(p);
            if (jp_peek(p) == ',') {
                p->pos++;
                continue;
            }
            if (jp_expect(p, '}', "',' or '}'"))
                return -1;
            break;
        }
    }
    if (!have_dtype || !have_shape || !have_offsets)
        return jp_fail(p, entry_at, "missing field \"%s\"",
                       !have_dtype   ? "dtype"
                       : !have_shape ? "shape"
                                     : "data_offsets");

    /* sizes: every product checked, since the dims come from the file */
    uint64_t numel = 1, nbytes;
    for (int i = 0; i < t->pub.ndim; i++) {
        if (!xf_mul_u64(numel, (uint64_t)t->pub.shape[i], &numel)) {
            snprintf(p->field, sizeof p->field, "tensor \"%s\" shape", nm);
            return jp_fail(p, t->shape_at - HDR, "the element count overflows 64 bits");
        }
    }
    if (numel > (uint64_t)INT64_MAX || !xf_mul_u64(numel, DTYPES[t->pub.dtype].size, &nbytes)) {
        snprintf(p->field, sizeof p->field, "tensor \"%s\" shape", nm);
        return jp_fail(p, t->shape_at - HDR, "the size in bytes overflows 64 bits");
    }
    snprintf(p->field, sizeof p->field, "tensor \"%s\" data_offsets", nm);
    size_t off_at = t->offsets_at - HDR;
    if (t->begin > t->end)
        return jp_fail(p, off_at, "begin %" PRIu64 " > end %" PRIu64, t->begin, t->end);
    if (t->end > data_size)
        return jp_fail(p, off_at, "end %" PRIu64 " is past the end of the data (%" PRIu64 " bytes)", t->end,
                       data_size);
    if (t->end - t->begin != nbytes) {
        show_shape(b, sizeof b, t->pub.ndim, t->pub.shape);
        return jp_fail(p, off_at, "[%" PRIu64 ", %" PRIu64 "] is %" PRIu64 " bytes but %s %s needs %" PRIu64,
                       t->begin, t->end, t->end - t->begin, DTYPES[t->pub.dtype].name, b, nbytes);
    }
    t->pub.nbytes = nbytes;
    return 0;
}

static int jp_meta(jp *p, refdump *r)
{
    char b[SHOW_BUF(NAME_SHOW_MAX)];
    if (jp_expect(p, '{', "'{'"))
        return -1;
    jp_ws(p);
    if (jp_peek(p) == '}') {
        p->pos++;
        return 0;
    }
    for (;;) {
        jp_ws(p);
        size_t key_at = p->pos;
        char *key, *val;
        size_t key_len;
        if (jp_string(p, &key, &key_len))
            return -1;
        if (grow((void **)&r->meta, &r->capm, r->nm, sizeof *r->meta)) {
            free(key);
            return jp_fail(p, key_at, "out of memory");
        }
        rd_meta *m = &r->meta[r->nm++];
        m->key = key;
        m->val = NULL;
        m->at = key_at + HDR;
        jp_ws(p);
        if (jp_expect(p, ':', "':'"))
            return -1;
        jp_ws(p);
        snprintf(p->field, sizeof p->field, "__metadata__ \"%s\"", show(b, key, key_len, NAME_SHOW_MAX));
        if (jp_peek(p) != '"')
            return jp_fail(p, p->pos, "the value must be a string");
        if (jp_string(p, &val, NULL))
            return -1;
        m->val = val;
        snprintf(p->field, sizeof p->field, "__metadata__");
        jp_ws(p);
        if (jp_peek(p) == ',') {
            p->pos++;
            continue;
        }
        return jp_expect(p, '}', "',' or '}'");
    }
}

static int jp_header(jp *p, refdump *r, uint64_t data_size)
{
    char b[32];
    bool have_meta = false;
    snprintf(p->field, sizeof p->field, "header");
    /* no leading whitespace: safetensors readers test the first byte */
    if (jp_peek(p) != '{')
        return jp_fail(p, 0, "expected '{' (the header is a JSON object), found %s",
                       jp_found(p, b, sizeof b));
    p->pos++;
    jp_ws(p);
    if (jp_peek(p) == '}') {
        p->pos++;
    } else {
        for (;;) {
            jp_ws(p);
            size_t key_at = p->pos;
            char *key;
            size_t key_len;
            if (jp_string(p, &key, &key_len))
                return -1;
            jp_ws(p);
            if (jp_expect(p, ':', "':'")) {
                free(key);
                return -1;
            }
            jp_ws(p);
            if (strcmp(key, "__metadata__") == 0) {
                free(key);
                if (have_meta)
                    return jp_fail(p, key_at, "duplicate \"__metadata__\"");
                have_meta = true;
                snprintf(p->field, sizeof p->field, "__metadata__");
                if (jp_meta(p, r))
                    return -1;
            } else if (key_len == 0) {
                free(key);
                snprintf(p->field, sizeof p->field, "tensor name");
                return jp_fail(p, key_at, "empty name");
            } else if (jp_tensor(p, r, key, key_len, key_at, data_size)) {
                return -1;
            }
            snprintf(p->field, sizeof p->field, "header");
            jp_ws(p);
            if (jp_peek(p) == ',') {
                p->pos++;
                continue;
            }
            if (jp_expect(p, '}', "',' or '}'"))
                return -1;
            break;
        }
    }
    /* writers pad the header to align the data: spaces only */
    for (; p->pos < p->n; p->pos++)
        if (p->h[p->pos] != ' ')
            return jp_fail(p, p->pos, "%s after the JSON object (only spaces may follow it)",
                           jp_found(p, b, sizeof b));
    return 0;
}

static int cmp_data_order(const void *a, const void *b)
{
    const rd_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->pub.name, y->pub.name);
}

static int cmp_name_ptr(const void *a, const void *b)
{
    const rd_tensor *x = *(rd_tensor *const *)a, *y = *(rd_tensor *const *)b;
    int c = strcmp(x->pub.name, y->pub.name);
    if (c)
        return c;
    return x->name_at < y->name_at ? -1 : x->name_at > y->name_at;
}

static int cmp_meta(const void *a, const void *b)
{
    const rd_meta *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c)
        return c;
    return x->at < y->at ? -1 : x->at > y->at;
}

/* Sorts, indexes and rejects duplicates. Found after the parse, by sorting,
 * so that a header of millions of names costs n log n; the duplicate reported
 * is the earliest second occurrence in the file. */
static int rd_index(refdump *r, xf_err *err)
{
    char b[SHOW_BUF(NAME_SHOW_MAX)];
    if (r->n)
        qsort(r->t, r->n, sizeof *r->t, cmp_data_order);
    r->by_name = malloc((r->n ? r->n : 1) * sizeof *r->by_name);
    if (!r->by_name)
        return xf_err_set(err, "%s: out of memory", r->shown);
    for (size_t i = 0; i < r->n; i++)
        r->by_name[i] = &r->t[i];
    if (r->n)
        qsort(r->by_name, r->n, sizeof *r->by_name, cmp_name_ptr);
    const rd_tensor *dup = NULL, *first = NULL, *group = NULL;
    for (size_t i = 0; i < r->n; i++) {
        if (i == 0 || strcmp(r->by_name[i]->pub.name, r->by_name[i - 1]->pub.name) != 0)
            group = r->by_name[i];
        else if (!dup || r->by_name[i]->name_at < dup->name_at)
            dup = r->by_name[i], first = group;
    }
    if (dup) {
        const char *nm = dup->pub.name;
        return xf_err_set(
            err, "%s: tensor name at byte %" PRIu64 ": duplicate name \"%s\" (first at byte %" PRIu64 ")",
            r->shown, dup->name_at, show(b, nm, strlen(nm), NAME_SHOW_MAX), first->name_at);
    }
    if (r->nm)
        qsort(r->meta, r->nm, sizeof *r->meta, cmp_meta);
    const rd_meta *mdup = NULL, *mfirst = NULL, *mgroup = NULL;
    for (size_t i = 0; i < r->nm; i++) {
        if (i == 0 || strcmp(r->meta[i].key, r->meta[i - 1].key) != 0)
            mgroup = &r->meta[i];
        else if (!mdup || r->meta[i].at < mdup->at)
            mdup = &r->meta[i], mfirst = mgroup;
    }
    if (mdup)
        return xf_err_set(
            err, "%s: __metadata__ at byte %" PRIu64 ": duplicate key \"%s\" (first at byte %" PRIu64 ")",
            r->shown, mdup->at, show(b, mdup->key, strlen(mdup->key), NAME_SHOW_MAX), mfirst->at);
    for (size_t i = 0; i < r->n; i++) {
        rd_tensor *t = &r->t[i];
        t->pub.file_offset = r->data_at + t->begin;
        t->pub.data = r->map + t->pub.file_offset;
    }
    return 0;
}

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static refdump *rd_parse(const uint8_t *buf, size_t size, const char *name, xf_err *err)
{
    refdump *r = calloc(1, sizeof *r);
    if (!r) {
        xf_err_set(err, "%s: out of memory", name);
        return NULL;
    }
    show(r->shown, name, strlen(name), PATH_SHOW_MAX);
    r->path = strdup(name);
    r->map = buf;
    r->size = size;
    if (!r->path) {
        xf_err_set(err, "%s: out of memory", r->shown);
        goto fail;
    }
    if (size < HDR) {
        xf_err_set(
            err, "%s: header length at byte 0: the file is %zu bytes, too short for the 8-byte header length",
            r->shown, size);
        goto fail;
    }
    uint64_t n = load_le64(buf);
    if (n > REFDUMP_MAX_HEADER) {
        xf_err_set(err, "%s: header length at byte 0: %" PRIu64 " bytes is over the limit of %u", r->shown, n,
                   REFDUMP_MAX_HEADER);
        goto fail;
    }
    if (n > size - HDR) {
        xf_err_set(err, "%s: header length at byte 0: %" PRIu64 " bytes but only %zu follow", r->shown, n,
                   size - HDR);
        goto fail;
    }
    r->data_at = HDR + n;
    jp p = {.h = buf + HDR, .n = (size_t)n, .file = r->shown, .err = err};
    if (jp_header(&p, r, size - r->data_at) || rd_index(r, err))
        goto fail;
    return r;
fail:
    refdump_close(r);
    return NULL;
}

refdump *refdump_open_mem(const void *buf, size_t size, const char *name, xf_err *err)
{
    if (!name)
        name = "(memory)";
    if (!buf && size) {
        xf_err_set(err, "%s: no buffer", name);
        return NULL;
    }
    return rd_parse(buf ? buf : "", size, name, err);
}

refdump *refdump_open(const char *path, xf_err *err)
{
    char shown[SHOW_BUF(PATH_SHOW_MAX)];
    if (!path) {
        xf_err_set(err, "refdump: no path");
        return NULL;
    }
    show(shown, path, strlen(path), PATH_SHOW_MAX);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        xf_err_set(err, "%s: cannot open: %s", shown, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        xf_err_set(err, "%s: cannot open: not a regular file", shown);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    const uint8_t *map = (const uint8_t *)"";
    if (size) {
        void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            xf_err_set(err, "%s: cannot map: %s", shown, strerror(errno));
            close(fd);
            return NULL;
        }
        map = m;
    }
    close(fd); /* the mapping keeps the file */
    refdump *r = rd_parse(map, size, path, err);
    if (!r) {
        if (size)
            munmap((void *)map, size);
        return NULL;
    }
    r->mapped = size != 0;
    return r;
}

void refdump_close(refdump *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        free(r->t[i].pub.name);
    for (size_t i = 0; i < r->nm; i++) {
        free(r->meta[i].key);
        free(r->meta[i].val);
    }
    free(r->t);
    free(r->by_name);
    free(r->meta);
    if (r->mapped)
        munmap((void *)r->map, r->size);
    free(r->path);
    free(r);
}

const char *refdump_path(const refdump *r)
{
    return r ? r->path : NULL;
}

size_t refdump_count(const refdump *r)
{
    return r ? r->n : 0;
}

const refdump_tensor *refdump_at(const refdump *r, size_t i)
{
    return r && i < r->n ? &r->t[i].pub : NULL;
}

const refdump_tensor *refdump_find(const refdump *r, const char *name)
{
    if (!r || !name)
        return NULL;
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r->by_name[mid]->pub.name, name);
        if (c == 0)
            return &r->by_name[mid]->pub;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int64_t refdump_numel(const refdump_tensor *t)
{
    if (!t)
        return 0;
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

const char *refdump_meta(const refdump *r, const char *key)
{
    if (!r || !key)
        return NULL;
    size_t lo = 0, hi = r->nm;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r->meta[mid].key, key);
        if (c == 0)
            return r->meta[mid].val;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* t as an entry of r, or NULL: the readers trust only tensors of r */
static const rd_tensor *rd_own(const refdump *r, const refdump_tensor *t)
{
    if (!r || !t || !r->n)
        return NULL;
    uintptr_t a = (uintptr_t)t, lo = (uintptr_t)r->t, hi = (uintptr_t)(r->t + r->n);
    if (a < lo || a >= hi || (a - lo) % sizeof *r->t)
        return NULL;
    return (const rd_tensor *)t;
}

int refdump_read_f32(const refdump *r, const refdump_tensor *t, float *dst, xf_err *err)
{
    char nm[SHOW_BUF(NAME_SHOW_MAX)];
    if (!rd_own(r, t))
        return xf_err_set(err, "%s: a tensor that is not from this file", r ? r->shown : "refdump");
    show(nm, t->name, strlen(t->name), NAME_SHOW_MAX);
    size_t n = (size_t)refdump_numel(t);
    if (n && !dst)
        return xf_err_set(err, "%s: tensor \"%s\": no destination", r->shown, nm);
    const uint8_t *s = t->data;
    switch (t->dtype) {
    case REFDUMP_F32:
        memcpy(dst, s, n * 4);
        break;
#define CONVERT(T, EXPR)                                                                                     \
    for (size_t i = 0; i < n; i++) {                                                                         \
        T v;                                                                                                 \
        memcpy(&v, s + i * sizeof v, sizeof v);                                                              \
        dst[i] = (EXPR);                                                                                     \
    }                                                                                                        \
    break;
    case REFDUMP_F16:
        CONVERT(uint16_t, half_to_f32(v))
    case REFDUMP_BF16:
        CONVERT(uint16_t, bf16_to_f32(v))
    case REFDUMP_F64:
        CONVERT(double, (float)v)
    case REFDUMP_I32:
        CONVERT(int32_t, (float)v)
    case REFDUMP_I64:
        CONVERT(int64_t, (float)v)
    case REFDUMP_I16:
        CONVERT(int16_t, (float)v)
    case REFDUMP_I8:
        CONVERT(int8_t, (float)v)
    case REFDUMP_U8:
        CONVERT(uint8_t, (float)v)
    case REFDUMP_U16:
        CONVERT(uint16_t, (float)v)
    case REFDUMP_U32:
        CONVERT(uint32_t, (float)v)
    case REFDUMP_U64:
        CONVERT(uint64_t, (float)v)
    case REFDUMP_BOOL:
        CONVERT(uint8_t, v ? 1.0f : 0.0f)
    case REFDUMP_F8_E4M3:
        CONVERT(uint8_t, f8e4m3_to_f32(v))
    case REFDUMP_F8_E5M2:
        CONVERT(uint8_t, f8e5m2_to_f32(v))
#undef CONVERT
    default:
        return xf_err_set(err, "%s: tensor \"%s\": unknown dtype %d", r->shown, nm, t->dtype);
    }
    return 0;
}

int refdump_read_i32(const refdump *r, const refdump_tensor *t, int32_t *dst, xf_err *err)
{
    char nm[SHOW_BUF(NAME_SHOW_MAX)];
    const rd_tensor *rt = rd_own(r, t);
    if (!rt)
        return xf_err_set(err, "%s: a tensor that is not from this file", r ? r->shown : "refdump");
    show(nm, t->name, strlen(t->name), NAME_SHOW_MAX);
    size_t n = (size_t)refdump_numel(t);
    if (n && !dst)
        return xf_err_set(err, "%s: tensor \"%s\": no destination", r->shown, nm);
    const dtype_info *d = &DTYPES[t->dtype];
    if (d->kind == KIND_FLOAT)
        return xf_err_set(err, "%s: tensor \"%s\" dtype at byte %" PRIu64 ": %s is not an integer type",
                          r->shown, nm, rt->dtype_at, d->name);
    const uint8_t *s = t->data;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *e = s + i * d->size;
        int64_t v = 0;
        bool ok = true;
        switch (t->dtype) {
        case REFDUMP_I8: {
            int8_t x;
            memcpy(&x, e, 1);
            v = x;
            break;
        }
        case REFDUMP_I16: {
            int16_t x;
            memcpy(&x, e, 2);
            v = x;
            break;
        }
        case REFDUMP_I32: {
            int32_t x;
            memcpy(&x, e, 4);
            v = x;
            break;
        }
        case REFDUMP_I64: {
            memcpy(&v, e, 8);
            break;
        }
        case REFDUMP_U8:
            v = e[0];
            break;
        case REFDUMP_BOOL:
            v = e[0] != 0;
            break;
        case REFDUMP_U16: {
            uint16_t x;
            memcpy(&x, e, 2);
            v = x;
            break;
        }
        case REFDUMP_U32: {
            uint32_t x;
            memcpy(&x, e, 4);
            v = x;
            break;
        }
        case REFDUMP_U64: {
            uint64_t x;
            memcpy(&x, e, 8);
            if (x > INT32_MAX)
                return xf_err_set(err,
                                  "%s: tensor \"%s\" data at byte %" PRIu64 ": element %zu is %" PRIu64
                                  ", outside int32",
                                  r->shown, nm, t->file_offset + i * 8, i, x);
            v = (int64_t)x;
            break;
        }
        default:
            ok = false;
        }
        if (!ok)
            return xf_err_set(err, "%s: tensor \"%s\": unknown dtype %d", r->shown, nm, t->dtype);
        if (v < INT32_MIN || v > INT32_MAX)
            return xf_err_set(
                err, "%s: tensor \"%s\" data at byte %" PRIu64 ": element %zu is %" PRId64 ", outside int32",
                r->shown, nm, t->file_offset + i * d->size, i, v);
        dst[i] = (int32_t)v;
    }
    return 0;
}

/* ------------------------------------------------------------- writer */

typedef struct wr_tensor {
    char *name;
    int dtype;
    int ndim;
    int64_t shape[REFDUMP_MAX_DIMS];
    uint8_t *data; /* [nbytes], owned */
    uint64_t nbytes;
} wr_tensor;

typedef struct wr_meta {
    char *key, *val;
} wr_meta;

struct refdump_writer {
    wr_tensor *t;
    size_t n, cap;
    wr_meta *m;
    size_t nm, capm;
};

refdump_writer *refdump_writer_new(void)
{
    return calloc(1, sizeof(refdump_writer));
}

void refdump_writer_free(refdump_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    for (size_t i = 0; i < w->nm; i++) {
        free(w->m[i].key);
        free(w->m[i].val);
    }
    free(w->t);
    free(w->m);
    free(w);
}

int refdump_writer_add(refdump_writer *w, const char *name, int dtype, int ndim, const int64_t *shape,
                       const void *data, xf_err *err)
{
    char nm[SHOW_BUF(NAME_SHOW_MAX)];
    if (!w || !name)
        return xf_err_set(err, "refdump writer: no writer or no name");
    size_t len = strlen(name);
    show(nm, name, len, NAME_SHOW_MAX);
    if (len == 0)
        return xf_err_set(err, "refdump writer: tensor \"\": empty name");
    if (!utf8_valid(name, len))
        return xf_err_set(err, "refdump writer: tensor \"%s\": the name is not valid UTF-8", nm);
    if (strcmp(name, "__metadata__") == 0)
        return xf_err_set(err, "refdump writer: tensor \"%s\": the name is reserved", nm);
    if (!dtype_ok(dtype))
        return xf_err_set(err, "refdump writer: tensor \"%s\": unknown dtype %d", nm, dtype);
    if (ndim < 0 || ndim > REFDUMP_MAX_DIMS || (ndim > 0 && !shape))
        return xf_err_set(err, "refdump writer: tensor \"%s\": %d dimensions (0..%d allowed)", nm, ndim,
                          REFDUMP_MAX_DIMS);
    uint64_t numel = 1, nbytes;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return xf_err_set(err, "refdump writer: tensor \"%s\": dimension %d is negative (%" PRId64 ")",
                              nm, i, shape[i]);
        if (!xf_mul_u64(numel, (uint64_t)shape[i], &numel))
            return xf_err_set(err, "refdump writer: tensor \"%s\": the element count overflows", nm);
    }
    if (numel > (uint64_t)INT64_MAX || !xf_mul_u64(numel, DTYPES[dtype].size, &nbytes) || nbytes > SIZE_MAX)
        return xf_err_set(err, "refdump writer: tensor \"%s\": the size in bytes overflows", nm);
    if (nbytes && !data)
        return xf_err_set(err, "refdump writer: tensor \"%s\": no data", nm);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return xf_err_set(err, "refdump writer: tensor \"%s\": duplicate name", nm);
    if (grow((void **)&w->t, &w->cap, w->n, sizeof *w->t))
        return xf_err_set(err, "refdump writer: tensor \"%s\": out of memory", nm);
    wr_tensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->data = nbytes ? malloc((size_t)nbytes) : NULL;
    if (!t->name || (nbytes && !t->data)) {
        free(t->name);
        free(t->data);
        return xf_err_set(err, "refdump writer: tensor \"%s\": out of memory", nm);
    }
    if (nbytes)
        memcpy(t->data, data, (size_t)nbytes);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->nbytes = nbytes;
    w->n++;
    return 0;
}

int refdump_writer_meta(refdump_writer *w, const char *key, const char *value, xf_err *err)
{
    char k[SHOW_BUF(NAME_SHOW_MAX)];
    if (!w || !key || !value)
        return xf_err_set(err, "refdump writer: no writer, key or value");
    show(k, key, strlen(key), NAME_SHOW_MAX);
    if (!utf8_valid(key, strlen(key)) || !utf8_valid(value, strlen(value)))
        return xf_err_set(err, "refdump writer: __metadata__ \"%s\": not valid UTF-8", k);
    char *v = strdup(value);
    if (!v)
        return xf_err_set(err, "refdump writer: __metadata__ \"%s\": out of memory", k);
    for (size_t i = 0; i < w->nm; i++) {
        if (strcmp(w->m[i].key, key) == 0) {
            free(w->m[i].val);
            w->m[i].val = v;
            return 0;
        }
    }
    char *kc = strdup(key);
    if (!kc || grow((void **)&w->m, &w->capm, w->nm, sizeof *w->m)) {
        free(kc);
        free(v);
        return xf_err_set(err, "refdump writer: __metadata__ \"%s\": out of memory", k);
    }
    w->m[w->nm].key = kc;
    w->m[w->nm].val = v;
    w->nm++;
    return 0;
}

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t len)
{
    if (b->oom)
        return;
    if (b->n + len + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + len + 1)
            nc *= 2;
        char *g = realloc(b->p, nc);
        if (!g) {
            b->oom = true;
            return;
        }
        b->p = g;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}

static void sb_puts(sbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_u64(sbuf *b, uint64_t v)
{
    char t[24];
    sb_put(b, t, (size_t)snprintf(t, sizeof t, "%" PRIu64, v));
}

/* Escapes as serde_json does (what the Python library writes), so that our
 * files and its files are the same bytes. */
static void sb_json_str(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const char *c = s; *c; c++) {
        unsigned char u = (unsigned char)*c;
        char t[8];
        switch (u) {
        case '"':
            sb_put(b, "\\\"", 2);
            break;
        case '\\':
            sb_put(b, "\\\\", 2);
            break;
        case '\b':
            sb_put(b, "\\b", 2);
            break;
        case '\f':
            sb_put(b, "\\f", 2);
            break;
        case '\n':
            sb_put(b, "\\n", 2);
            break;
        case '\r':
            sb_put(b, "\\r", 2);
            break;
        case '\t':
            sb_put(b, "\\t", 2);
            break;
        default:
            if (u < 0x20)
                sb_put(b, t, (size_t)snprintf(t, sizeof t, "\\u%04x", u));
            else
                sb_put(b, c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int cmp_write_order(const void *a, const void *b)
{
    const wr_tensor *x = *(const wr_tensor *const *)a, *y = *(const wr_tensor *const *)b;
    int rx = DTYPES[x->dtype].py_rank, ry = DTYPES[y->dtype].py_rank;
    if (rx != ry)
        return ry - rx;
    return strcmp(x->name, y->name);
}

static int cmp_wmeta(const void *a, const void *b)
{
    return strcmp(((const wr_meta *)a)->key, ((const wr_meta *)b)->key);
}

/* The 8-byte length and the padded JSON into *hdr; *order gets the tensors in
 * data order (malloc'd, free both). */
static int wr_header(refdump_writer *w, sbuf *hdr, wr_tensor ***order, uint64_t *total, xf_err *err)
{
    *order = malloc((w->n ? w->n : 1) * sizeof **order);
    if (!*order)
        return xf_err_set(err, "refdump writer: out of memory");
    for (size_t i = 0; i < w->n; i++)
        (*order)[i] = &w->t[i];
    if (w->n)
        qsort(*order, w->n, sizeof **order, cmp_write_order);
    /* the Python library's metadata is a hash map (no fixed order): sorted keys
     * keep our output deterministic */
    if (w->nm)
        qsort(w->m, w->nm, sizeof *w->m, cmp_wmeta);
    sb_put(hdr, "\0\0\0\0\0\0\0\0", 8);
    sb_puts(hdr, "{");
    if (w->nm) {
        sb_puts(hdr, "\"__metadata__\":{");
        for (size_t i = 0; i < w->nm; i++) {
            if (i)
                sb_puts(hdr, ",");
            sb_json_str(hdr, w->m[i].key);
            sb_puts(hdr, ":");
            sb_json_str(hdr, w->m[i].val);
        }
        sb_puts(hdr, "}");
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        const wr_tensor *t = (*order)[i];
        if (i || w->nm)
            sb_puts(hdr, ",");
        sb_json_str(hdr, t->name);
        sb_puts(hdr, ":{\"dtype\":\"");
        sb_puts(hdr, DTYPES[t->dtype].name);
        sb_puts(hdr, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d)
                sb_puts(hdr, ",");
            sb_u64(hdr, (uint64_t)t->shape[d]);
        }
        sb_puts(hdr, "],\"data_offsets\":[");
        sb_u64(hdr, off);
        sb_puts(hdr, ",");
        if (!xf_add_u64(off, t->nbytes, &off))
            return xf_err_set(err, "refdump writer: the data size overflows");
        sb_u64(hdr, off);
        sb_puts(hdr, "]}");
    }
    sb_puts(hdr, "}");
    while (!hdr->oom && hdr->n % 8)
        sb_puts(hdr, " ");
    if (hdr->oom)
        return xf_err_set(err, "refdump writer: out of memory");
    uint64_t hlen = hdr->n - 8;
    memcpy(hdr->p, &hlen, 8);
    if (!xf_add_u64(hdr->n, off, total))
        return xf_err_set(err, "refdump writer: the file size overflows");
    return 0;
}

int refdump_writer_to_mem(refdump_writer *w, uint8_t **buf, size_t *size, xf_err *err)
{
    if (!w || !buf || !size)
        return xf_err_set(err, "refdump writer: no writer or no output");
    *buf = NULL;
    *size = 0;
    sbuf hdr = {0};
    wr_tensor **order = NULL;
    uint64_t total;
    int rc = wr_header(w, &hdr, &order, &total, err);
    if (rc == 0 && total > SIZE_MAX)
        rc = xf_err_set(err, "refdump writer: the file size overflows");
    uint8_t *out = rc == 0 ? malloc(total ? (size_t)total : 1) : NULL;
    if (rc == 0 && !out)
        rc = xf_err_set(err, "refdump writer: out of memory");
    if (rc == 0) {
        memcpy(out, hdr.p, hdr.n);
        size_t o = hdr.n;
        for (size_t i = 0; i < w->n; i++) {
            if (order[i]->nbytes)
                memcpy(out + o, order[i]->data, (size_t)order[i]->nbytes);
            o += (size_t)order[i]->nbytes;
        }
        *buf = out;
        *size = (size_t)total;
    }
    free(hdr.p);
    free(order);
    return rc;
}

static int write_all(int fd, const void *p, uint64_t n)
{
    const uint8_t *s = p;
    while (n) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t k = write(fd, s, chunk);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        s += k;
        n -= (uint64_t)k;
    }
    return 0;
}

/* rename() is only durable once the directory entry is on disk too */
static void fsync_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd); /* best effort: some file systems refuse it on directories */
        close(fd);
    }
    free(dir);
}

int refdump_writer_save(refdump_writer *w, const char *path, xf_err *err)
{
    if (!w || !path)
        return xf_err_set(err, "refdump writer: no writer or no path");
    char shown[SHOW_BUF(PATH_SHOW_MAX)], tshown[SHOW_BUF(PATH_SHOW_MAX)];
    show(shown, path, strlen(path), PATH_SHOW_MAX);
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp)
        return xf_err_set(err, "%s: out of memory", shown);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    show(tshown, tmp, plen + 4, PATH_SHOW_MAX);

    sbuf hdr = {0};
    wr_tensor **order = NULL;
    uint64_t total;
    int rc = wr_header(w, &hdr, &order, &total, err);
    int fd = -1;
    if (rc == 0) {
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
            rc = xf_err_set(err, "%s: cannot create %s: %s", shown, tshown, strerror(errno));
    }
    if (rc == 0 && write_all(fd, hdr.p, hdr.n))
        rc = xf_err_set(err, "%s: cannot write %s: %s", shown, tshown, strerror(errno));
    for (size_t i = 0; rc == 0 && i < w->n; i++)
        if (order[i]->nbytes && write_all(fd, order[i]->data, order[i]->nbytes))
            rc = xf_err_set(err, "%s: cannot write %s: %s", shown, tshown, strerror(errno));
    if (rc == 0 && fsync(fd) != 0)
        rc = xf_err_set(err, "%s: cannot sync %s: %s", shown, tshown, strerror(errno));
    if (fd >= 0 && close(fd) != 0 && rc == 0)
        rc = xf_err_set(err, "%s: cannot close %s: %s", shown, tshown, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = xf_err_set(err, "%s: cannot rename %s to it: %s", shown, tshown, strerror(errno));
    if (rc == 0)
        fsync_dir_of(path);
    else if (fd >= 0)
        unlink(tmp); /* ours: created above */
    free(tmp);
    free(hdr.p);
    free(order);
    return rc;
}
