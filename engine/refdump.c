#include "refdump.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "quant.h"

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
    return xf_f16_to_f32((uint16_t)(b << 8));
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
} rd_meta;

struct refdump {
    char *path;
    char shown[SHOW_BUF(PATH_SHOW_MAX)]; /* path as messages print it */
    const uint8_t *map;                  /* the whole file: our copy, or the caller's memory */
    size_t size;
    uint8_t *owned;   /* == map when refdump_open read the file */
    struct stat st;   /* the file as read: a value asked later checks it is still that file */
    uint64_t data_at; /* file offset of the data buffer: 8 + header length */
    rd_tensor *t;     /* [n] sorted by data offset */
    size_t n, cap;
    rd_tensor **by_name; /* [n] sorted by strcmp, for refdump_find */
    rd_meta *meta;       /* [nm] sorted by key */
    size_t nm, capm;
};

#define HDR 8 /* bytes before the JSON: its u64 length */

/* "FILE: FIELD at byte OFFSET: what"; at is an offset into the header */
__attribute__((format(printf, 5, 6))) static int rd_fail(const refdump *r, xf_err *err, const char *field,
                                                         size_t at, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return xf_err_set(err, "%s: %s at byte %zu: %s", r->shown, field, at + HDR, msg);
}

/* Where values are. jansson hands out values but not their positions, and
 * every message names a byte offset, so the header is walked a second time
 * here. jansson has accepted it as JSON by then: this walk only skips values,
 * it never judges them (every step is bounded by n all the same). */
static size_t js_ws(const uint8_t *h, size_t n, size_t p)
{
    while (p < n && (h[p] == ' ' || h[p] == '\t' || h[p] == '\n' || h[p] == '\r'))
        p++;
    return p;
}

/* the end of the value at p */
static size_t js_skip(const uint8_t *h, size_t n, size_t p)
{
    int depth = 0;
    do {
        p = js_ws(h, n, p);
        if (p >= n)
            return n;
        uint8_t c = h[p];
        if (c == '"') {
            for (p++; p < n && h[p] != '"'; p++)
                p += h[p] == '\\';
            p++;
        } else if (c == '{' || c == '[') {
            depth++, p++;
        } else if (c == '}' || c == ']') {
            depth--, p++;
        } else if (c == ',' || c == ':') {
            p++;
        } else {
            while (p < n && h[p] != ',' && h[p] != ']' && h[p] != '}' && h[p] != ' ' && h[p] != '\t' &&
                   h[p] != '\n' && h[p] != '\r')
                p++;
        }
    } while (depth > 0);
    return p < n ? p : n;
}

/* Steps *p from a container's opening bracket, or from the end of its
 * previous member, to the next member: the offsets of its key (objects
 * only) and of its value. jansson iterates objects in file order, so the
 * k-th call names the k-th value that jansson gives. */
static bool js_next(const uint8_t *h, size_t n, size_t *p, size_t *key_at, size_t *val_at)
{
    size_t q = js_ws(h, n, *p);
    if (q >= n || h[q] == '}' || h[q] == ']')
        return false;
    q = js_ws(h, n, q + 1); /* past '{', '[' or ',' */
    if (q >= n || h[q] == '}' || h[q] == ']')
        return false;
    if (key_at) {
        *key_at = q;
        q = js_ws(h, n, js_skip(h, n, q));
        q = js_ws(h, n, q + 1); /* past ':' */
    }
    *val_at = q;
    *p = js_skip(h, n, q);
    return true;
}

/* jansson reports some failed allocations as syntax errors ("invalid
 * token", or no text at all): its allocations go through these, and a
 * failure is recorded so that the message can say "out of memory". */
static _Thread_local bool js_oom;

static void *js_malloc(size_t n)
{
    void *p = malloc(n);
    js_oom |= !p;
    return p;
}

static pthread_once_t js_once = PTHREAD_ONCE_INIT;

static void js_init(void)
{
    json_set_alloc_funcs(js_malloc, free);
}

/* Why jansson refused the header, in words that quote nothing of the file:
 * its texts end in "near 'TOKEN'" (cut), and a few name a byte's value. */
static const char *js_reason(const json_error_t *e, char *buf, size_t cap)
{
    switch (json_error_code(e)) {
    case json_error_out_of_memory:
        return "out of memory";
    case json_error_stack_overflow:
        return "nested too deeply";
    case json_error_invalid_utf8:
        return "invalid UTF-8";
    case json_error_premature_end_of_input:
        return "the JSON ends before it is complete";
    case json_error_null_character:
    case json_error_null_byte_in_key:
        return "\\u0000 (NUL) is not allowed in a string";
    case json_error_duplicate_key:
        return "duplicate key";
    case json_error_numeric_overflow:
        return "number out of range (integers must be below 2^63)";
    default:
        break;
    }
    if (strncmp(e->text, "control character", 17) == 0 || strncmp(e->text, "unexpected newline", 18) == 0)
        return "control byte in a string (it must be escaped)";
    if (strncmp(e->text, "invalid Unicode", 15) == 0)
        return "unpaired surrogate in a \\u escape";
    snprintf(buf, cap, "%s", e->text);
    char *near = strstr(buf, " near ");
    if (near)
        *near = '\0';
    return buf;
}

/* The JSON string token at h[at..) decoded (malloc'd), or NULL. */
static char *js_string(const uint8_t *h, size_t n, size_t at)
{
    json_t *v = json_loadb((const char *)h + at, js_skip(h, n, at) - at, JSON_DECODE_ANY, NULL);
    char *s = json_is_string(v) ? strdup(json_string_value(v)) : NULL;
    json_decref(v);
    return s;
}

/* jansson found a duplicate key whose token ends at p, and names neither it
 * nor its first occurrence: both are found here by walking down to the
 * object holding it (the header, __metadata__ or a tensor's entry; the
 * header is valid JSON up to p, which is all the walk reads). */
static int rd_duplicate(const refdump *r, xf_err *err, const uint8_t *h, size_t n, size_t p)
{
    char field[SHOW_BUF(NAME_SHOW_MAX) + 32] = "tensor name", shown[SHOW_BUF(NAME_SHOW_MAX)];
    const char *kind = "name";
    size_t obj = 0;
    for (int depth = 0; depth < 2; depth++) {
        size_t q = obj, k_at, v_at, q2 = obj, k2_at, v2_at;
        while (js_next(h, n, &q, &k_at, &v_at) && js_skip(h, n, k_at) != p && !(v_at <= p && p < q))
            ;
        char *key = q > p || js_skip(h, n, k_at) == p ? js_string(h, n, k_at) : NULL;
        if (!key)
            break;
        show(shown, key, strlen(key), NAME_SHOW_MAX);
        if (js_skip(h, n, k_at) != p) { /* p is inside this member's value: go down */
            if (strcmp(key, "__metadata__") == 0)
                snprintf(field, sizeof field, "__metadata__"), kind = "key";
            else
                snprintf(field, sizeof field, "tensor \"%s\"", shown), kind = "field";
            free(key);
            obj = v_at;
            continue;
        }
        if (depth == 0 && strcmp(key, "__metadata__") == 0)
            snprintf(field, sizeof field, "header"), kind = "key";
        bool same = false;
        while (!same && js_next(h, n, &q2, &k2_at, &v2_at) && k2_at < k_at) {
            char *k2 = js_string(h, n, k2_at);
            same = k2 && strcmp(k2, key) == 0;
            free(k2);
        }
        free(key);
        if (!same)
            break;
        return rd_fail(r, err, field, k_at, "duplicate %s \"%s\" (first at byte %zu)", kind, shown,
                       k2_at + HDR);
    }
    return rd_fail(r, err, "header", p, "duplicate key");
}

static const char *js_type(const json_t *v)
{
    static const char *const NAMES[] = {[JSON_OBJECT] = "an object",
                                        [JSON_ARRAY] = "an array",
                                        [JSON_STRING] = "a string",
                                        [JSON_INTEGER] = "an integer",
                                        [JSON_REAL] = "a fraction or exponent",
                                        [JSON_TRUE] = "true",
                                        [JSON_FALSE] = "false",
                                        [JSON_NULL] = "null"};
    return NAMES[json_typeof(v)];
}

/* The header being read: the JSON bytes (for positions) and the name of the
 * tensor at hand as messages show it. */
typedef struct rd_ctx {
    refdump *r;
    xf_err *err;
    const uint8_t *h;
    size_t n;
    char nm[SHOW_BUF(NAME_SHOW_MAX)];
    char field[SHOW_BUF(NAME_SHOW_MAX) + 32];
} rd_ctx;

/* A shape dimension or a data offset: a non-negative integer. */
static int rd_uint(const rd_ctx *c, const char *field, size_t at, const json_t *v, uint64_t *out)
{
    const refdump *r = c->r;
    xf_err *err = c->err;
    if (json_is_real(v))
        return rd_fail(r, err, field, at, "expected an integer, found a fraction or exponent");
    if (!json_is_integer(v))
        return rd_fail(r, err, field, at, "expected a non-negative integer, found %s", js_type(v));
    json_int_t x = json_integer_value(v);
    if (x < 0 || (at < c->n && c->h[at] == '-')) /* "-0" too, as before jansson */
        return rd_fail(r, err, field, at, "negative number (only non-negative integers are allowed)");
    *out = (uint64_t)x;
    return 0;
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

static const char *rd_field(rd_ctx *c, const char *sub)
{
    snprintf(c->field, sizeof c->field, "tensor \"%s\"%s%s", c->nm, sub ? " " : "", sub ? sub : "");
    return c->field;
}

static int rd_dtype(rd_ctx *c, rd_tensor *t, const json_t *v, size_t at)
{
    char b[SHOW_BUF(16)];
    t->dtype_at = at + HDR;
    if (!json_is_string(v))
        return rd_fail(c->r, c->err, rd_field(c, "dtype"), at, "expected a string, found %s", js_type(v));
    t->pub.dtype = dtype_lookup(json_string_value(v), json_string_length(v));
    if (t->pub.dtype < 0)
        return rd_fail(c->r, c->err, rd_field(c, "dtype"), at, "unknown dtype \"%s\"",
                       show(b, json_string_value(v), json_string_length(v), 16));
    return 0;
}

static int rd_shape(rd_ctx *c, rd_tensor *t, const json_t *v, size_t at)
{
    t->shape_at = at + HDR;
    const char *field = rd_field(c, "shape");
    if (!json_is_array(v))
        return rd_fail(c->r, c->err, field, at, "expected an array, found %s", js_type(v));
    size_t p = at, el_at, i;
    json_t *d;
    json_array_foreach(v, i, d)
    {
        uint64_t x;
        js_next(c->h, c->n, &p, NULL, &el_at);
        if (i == REFDUMP_MAX_DIMS)
            return rd_fail(c->r, c->err, field, el_at, "more than %d dimensions", REFDUMP_MAX_DIMS);
        if (rd_uint(c, field, el_at, d, &x))
            return -1;
        t->pub.shape[t->pub.ndim++] = (int64_t)x;
    }
    return 0;
}

static int rd_offsets(rd_ctx *c, rd_tensor *t, const json_t *v, size_t at)
{
    t->offsets_at = at + HDR;
    const char *field = rd_field(c, "data_offsets");
    if (!json_is_array(v))
        return rd_fail(c->r, c->err, field, at, "expected [begin, end], found %s", js_type(v));
    if (json_array_size(v) != 2)
        return rd_fail(c->r, c->err, field, at, "expected [begin, end], found %zu values",
                       json_array_size(v));
    size_t p = at, b_at, e_at;
    js_next(c->h, c->n, &p, NULL, &b_at);
    js_next(c->h, c->n, &p, NULL, &e_at);
    if (rd_uint(c, field, b_at, json_array_get(v, 0), &t->begin) ||
        rd_uint(c, field, e_at, json_array_get(v, 1), &t->end))
        return -1;
    return 0;
}

/* sizes: every product checked, since the dims come from the file */
static int rd_sizes(rd_ctx *c, rd_tensor *t, uint64_t data_size)
{
    char b[96];
    uint64_t numel = 1, nbytes;
    size_t shape_at = (size_t)t->shape_at - HDR, off_at = (size_t)t->offsets_at - HDR;
    for (int i = 0; i < t->pub.ndim; i++)
        if (!xf_mul_u64(numel, (uint64_t)t->pub.shape[i], &numel))
            return rd_fail(c->r, c->err, rd_field(c, "shape"), shape_at,
                           "the element count overflows 64 bits");
    if (numel > (uint64_t)INT64_MAX || !xf_mul_u64(numel, DTYPES[t->pub.dtype].size, &nbytes))
        return rd_fail(c->r, c->err, rd_field(c, "shape"), shape_at, "the size in bytes overflows 64 bits");
    const char *field = rd_field(c, "data_offsets");
    if (t->begin > t->end)
        return rd_fail(c->r, c->err, field, off_at, "begin %" PRIu64 " > end %" PRIu64, t->begin, t->end);
    if (t->end > data_size)
        return rd_fail(c->r, c->err, field, off_at,
                       "end %" PRIu64 " is past the end of the data (%" PRIu64 " bytes)", t->end, data_size);
    if (t->end - t->begin != nbytes) {
        show_shape(b, sizeof b, t->pub.ndim, t->pub.shape);
        return rd_fail(c->r, c->err, field, off_at,
                       "[%" PRIu64 ", %" PRIu64 "] is %" PRIu64 " bytes but %s %s needs %" PRIu64, t->begin,
                       t->end, t->end - t->begin, DTYPES[t->pub.dtype].name, b, nbytes);
    }
    t->pub.nbytes = nbytes;
    return 0;
}

/* One tensor entry: NAME (at key_at) : V (at at). */
static int rd_entry(rd_ctx *c, const char *name, const json_t *v, size_t key_at, size_t at,
                    uint64_t data_size)
{
    static const char *const FIELDS[3] = {"dtype", "shape", "data_offsets"};
    refdump *r = c->r;
    size_t len = strlen(name); /* jansson refuses NUL in keys */
    show(c->nm, name, len, NAME_SHOW_MAX);
    if (len == 0)
        return rd_fail(r, c->err, "tensor name", key_at, "empty name");
    if (!json_is_object(v))
        return rd_fail(r, c->err, rd_field(c, NULL), at, "expected an object, found %s", js_type(v));
    if (grow((void **)&r->t, &r->cap, r->n, sizeof *r->t))
        return rd_fail(r, c->err, rd_field(c, NULL), at, "out of memory");
    rd_tensor *t = &r->t[r->n];
    memset(t, 0, sizeof *t);
    if (!(t->pub.name = strdup(name)))
        return rd_fail(r, c->err, rd_field(c, NULL), at, "out of memory");
    r->n++;
    t->pub.dtype = -1;
    t->name_at = key_at + HDR;

    const json_t *fv[3] = {NULL, NULL, NULL};
    size_t f_at[3] = {0, 0, 0}, p = at, k_at, v_at;
    const char *key;
    json_t *x;
    json_object_foreach((json_t *)v, key, x)
    {
        char b[SHOW_BUF(16)];
        js_next(c->h, c->n, &p, &k_at, &v_at);
        int f = 0;
        while (f < 3 && strcmp(key, FIELDS[f]) != 0)
            f++;
        if (f == 3)
            return rd_fail(r, c->err, rd_field(c, NULL), k_at, "unknown field \"%s\"",
                           show(b, key, strlen(key), 16));
        fv[f] = x;
        f_at[f] = v_at;
    }
    for (int f = 0; f < 3; f++)
        if (!fv[f])
            return rd_fail(r, c->err, rd_field(c, NULL), at, "missing field \"%s\"", FIELDS[f]);
    if (rd_dtype(c, t, fv[0], f_at[0]) || rd_shape(c, t, fv[1], f_at[1]) || rd_offsets(c, t, fv[2], f_at[2]))
        return -1;
    return rd_sizes(c, t, data_size);
}

static int rd_meta_obj(rd_ctx *c, const json_t *v, size_t at)
{
    char b[SHOW_BUF(NAME_SHOW_MAX) + 32];
    refdump *r = c->r;
    if (!json_is_object(v))
        return rd_fail(r, c->err, "__metadata__", at, "expected an object, found %s", js_type(v));
    size_t p = at, k_at, v_at;
    const char *key;
    json_t *x;
    json_object_foreach((json_t *)v, key, x)
    {
        js_next(c->h, c->n, &p, &k_at, &v_at);
        if (!json_is_string(x)) {
            char k[SHOW_BUF(NAME_SHOW_MAX)];
            snprintf(b, sizeof b, "__metadata__ \"%s\"", show(k, key, strlen(key), NAME_SHOW_MAX));
            return rd_fail(r, c->err, b, v_at, "the value must be a string");
        }
        if (grow((void **)&r->meta, &r->capm, r->nm, sizeof *r->meta))
            return rd_fail(r, c->err, "__metadata__", k_at, "out of memory");
        rd_meta *m = &r->meta[r->nm];
        m->key = strdup(key);
        m->val = strdup(json_string_value(x)); /* no NUL inside: JSON_ALLOW_NUL is not given */
        if (!m->key || !m->val) {
            free(m->key);
            free(m->val);
            return rd_fail(r, c->err, "__metadata__", k_at, "out of memory");
        }
        r->nm++;
    }
    return 0;
}

/* The header: h[0..n) is the JSON, data_size bytes follow it. */
static int rd_header(refdump *r, const uint8_t *h, size_t n, uint64_t data_size, xf_err *err)
{
    /* no leading whitespace: safetensors readers test the first byte */
    if (n == 0 || h[0] != '{')
        return rd_fail(r, err, "header", 0, "not a JSON object (the first byte must be '{')");
    json_error_t je;
    pthread_once(&js_once, js_init);
    js_oom = false;
    /* a duplicate key is an error, as in the safetensors reader, not "the
     * last one wins"; EOF_CHECK off so that the padding is judged below */
    json_t *root = json_loadb((const char *)h, n, JSON_REJECT_DUPLICATES | JSON_DISABLE_EOF_CHECK, &je);
    if (!root && js_oom)
        return rd_fail(r, err, "header", 0, "out of memory");
    if (!root && json_error_code(&je) == json_error_duplicate_key && je.position > 0)
        return rd_duplicate(r, err, h, n, (size_t)je.position);
    if (!root) {
        char b[JSON_ERROR_TEXT_LENGTH];
        return rd_fail(r, err, "header", je.position > 0 ? (size_t)je.position : 0, "%s",
                       js_reason(&je, b, sizeof b));
    }
    int rc = 0;
    /* writers pad the header to align the data: spaces only */
    for (size_t i = (size_t)je.position; i < n && rc == 0; i++)
        if (h[i] != ' ')
            rc = rd_fail(r, err, "header", i, "only spaces may follow the JSON object");
    rd_ctx c = {.r = r, .err = err, .h = h, .n = n};
    size_t p = 0, key_at, at;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (rc)
            break;
        js_next(h, n, &p, &key_at, &at);
        if (strcmp(key, "__metadata__") == 0)
            rc = rd_meta_obj(&c, v, at);
        else
            rc = rd_entry(&c, key, v, key_at, at, data_size);
    }
    json_decref(root);
    return rc;
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
    return strcmp((*(rd_tensor *const *)a)->pub.name, (*(rd_tensor *const *)b)->pub.name);
}

static int cmp_meta(const void *a, const void *b)
{
    return strcmp(((const rd_meta *)a)->key, ((const rd_meta *)b)->key);
}

/* Sorts and indexes; names and keys are unique (JSON_REJECT_DUPLICATES). */
static int rd_index(refdump *r, xf_err *err)
{
    if (r->n)
        qsort(r->t, r->n, sizeof *r->t, cmp_data_order);
    r->by_name = malloc((r->n ? r->n : 1) * sizeof *r->by_name);
    if (!r->by_name)
        return xf_err_set(err, "%s: out of memory", r->shown);
    for (size_t i = 0; i < r->n; i++)
        r->by_name[i] = &r->t[i];
    if (r->n)
        qsort(r->by_name, r->n, sizeof *r->by_name, cmp_name_ptr);
    if (r->nm)
        qsort(r->meta, r->nm, sizeof *r->meta, cmp_meta);
    for (size_t i = 0; i < r->n; i++) {
        rd_tensor *t = &r->t[i];
        t->pub.file_offset = r->data_at + t->begin;
        t->pub.data = r->map + t->pub.file_offset;
    }
    return 0;
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
    uint64_t n;
    memcpy(&n, buf, 8);
    /* a file of another kind lands here: its first 8 bytes make a huge
     * number, which says nothing to the user (and is not echoed as text) */
    if (n > size - HDR) {
        xf_err_set(err,
                   "%s: header length at byte 0: not a safetensors file (header length %" PRIu64
                   " bytes is larger than the file)",
                   r->shown, n);
        goto fail;
    }
    if (n > REFDUMP_MAX_HEADER) {
        xf_err_set(err, "%s: header length at byte 0: %" PRIu64 " bytes is over the limit of %u", r->shown, n,
                   REFDUMP_MAX_HEADER);
        goto fail;
    }
    r->data_at = HDR + n;
    if (rd_header(r, buf + HDR, (size_t)n, size - r->data_at, err) || rd_index(r, err))
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

static bool same_version(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* The whole file into memory, not mmapped: a file truncated after `ref
 * load` would turn a later read of the mapping into SIGBUS. A reference dump
 * is small (activations of one pass). */
static uint8_t *rd_slurp(int fd, const char *shown, struct stat *st, xf_err *err)
{
    if ((uint64_t)st->st_size > SIZE_MAX / 2)
        return xf_err_set(err, "%s: cannot read: the file is too large", shown), NULL;
    size_t size = (size_t)st->st_size, got = 0;
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return xf_err_set(err, "%s: out of memory for the %zu-byte file", shown, size), NULL;
    while (got < size) {
        ssize_t k = pread(fd, buf + got, size - got, (off_t)got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            xf_err_set(err, "%s: cannot read: %s", shown, strerror(errno));
            free(buf);
            return NULL;
        }
        if (k == 0)
            break;
        got += (size_t)k;
    }
    struct stat now;
    if (got != size || fstat(fd, &now) != 0 || !same_version(st, &now)) {
        xf_err_set(err, "%s: the file changed while it was read", shown);
        free(buf);
        return NULL;
    }
    return buf;
}

refdump *refdump_open(const char *path, xf_err *err)
{
    char shown[SHOW_BUF(PATH_SHOW_MAX)];
    if (!path) {
        xf_err_set(err, "refdump: no path");
        return NULL;
    }
    show(shown, path, strlen(path), PATH_SHOW_MAX);
    /* O_NONBLOCK: opening a FIFO must not wait for a writer (forever); the
     * type is checked before anything is read */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        xf_err_set(err, "%s: cannot open: %s", shown, strerror(errno));
        return NULL;
    }
    struct stat st;
    uint8_t *buf = NULL;
    int fl;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        xf_err_set(err, "%s: cannot open: not a regular file", shown);
    else if ((fl = fcntl(fd, F_GETFL)) < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0)
        xf_err_set(err, "%s: cannot open: %s", shown, strerror(errno));
    else
        buf = rd_slurp(fd, shown, &st, err);
    close(fd);
    if (!buf)
        return NULL;
    refdump *r = rd_parse(buf, (size_t)st.st_size, path, err);
    if (!r) {
        free(buf);
        return NULL;
    }
    r->owned = buf;
    r->st = st;
    return r;
}

/* A value asked of a file that was replaced, truncated or rewritten since it
 * was loaded would mix the old copy with the user's idea of the new file:
 * said instead. */
static int rd_unchanged(const refdump *r, xf_err *err)
{
    struct stat now;
    if (r->owned && (stat(r->path, &now) != 0 || !same_version(&r->st, &now)))
        return xf_err_set(err, "%s: the file changed on disk since it was loaded", r->shown);
    return 0;
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
    free(r->owned);
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

/* An integer or bool element, widened; a U64 above INT64_MAX saturates
 * (the readers that care look at *u, the raw 64 bits). */
static int64_t ld_int(int dtype, const uint8_t *e, uint64_t *u)
{
    union {
        int8_t i8;
        int16_t i16;
        int32_t i32;
        int64_t i64;
        uint16_t u16;
        uint32_t u32;
        uint64_t u64;
    } x = {.u64 = 0};
    memcpy(&x, e, DTYPES[dtype].size);
    *u = x.u64;
    switch (dtype) {
    case REFDUMP_I8:
        return x.i8;
    case REFDUMP_I16:
        return x.i16;
    case REFDUMP_I32:
        return x.i32;
    case REFDUMP_I64:
        return x.i64;
    case REFDUMP_U16:
        return x.u16;
    case REFDUMP_U32:
        return x.u32;
    case REFDUMP_U64:
        return x.u64 > INT64_MAX ? INT64_MAX : (int64_t)x.u64;
    case REFDUMP_BOOL:
        return e[0] != 0;
    default: /* U8 */
        return e[0];
    }
}

static float ld_float(int dtype, const uint8_t *e)
{
    uint16_t h;
    float f;
    double d;
    switch (dtype) {
    case REFDUMP_F32:
        memcpy(&f, e, 4);
        return f;
    case REFDUMP_F64:
        memcpy(&d, e, 8);
        return (float)d;
    case REFDUMP_F8_E4M3:
        return f8e4m3_to_f32(e[0]);
    case REFDUMP_F8_E5M2:
        return f8e5m2_to_f32(e[0]);
    }
    memcpy(&h, e, 2);
    return dtype == REFDUMP_BF16 ? xf_bf16_to_f32(h) : xf_f16_to_f32(h);
}

/* What both readers check first: the tensor is r's, r's file unchanged, a
 * destination given. nm gets the name as messages show it. */
static const rd_tensor *rd_prep(const refdump *r, const refdump_tensor *t, const void *dst, char *nm,
                                xf_err *err)
{
    const rd_tensor *rt = rd_own(r, t);
    if (!rt)
        return xf_err_set(err, "%s: a tensor that is not from this file", r ? r->shown : "refdump"), NULL;
    if (rd_unchanged(r, err))
        return NULL;
    show(nm, t->name, strlen(t->name), NAME_SHOW_MAX);
    if (refdump_numel(t) && !dst)
        return xf_err_set(err, "%s: tensor \"%s\": no destination", r->shown, nm), NULL;
    return rt;
}

int refdump_read_f32(const refdump *r, const refdump_tensor *t, float *dst, xf_err *err)
{
    char nm[SHOW_BUF(NAME_SHOW_MAX)];
    if (!rd_prep(r, t, dst, nm, err))
        return -1;
    size_t n = (size_t)refdump_numel(t), es = DTYPES[t->dtype].size;
    const uint8_t *s = t->data;
    if (t->dtype == REFDUMP_F32) {
        memcpy(dst, s, n * 4);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t u;
        if (DTYPES[t->dtype].kind == KIND_FLOAT)
            dst[i] = ld_float(t->dtype, s + i * es);
        else if (t->dtype == REFDUMP_U64)
            dst[i] = (ld_int(t->dtype, s + i * es, &u), (float)u);
        else
            dst[i] = (float)ld_int(t->dtype, s + i * es, &u);
    }
    return 0;
}

int refdump_read_i32(const refdump *r, const refdump_tensor *t, int32_t *dst, xf_err *err)
{
    char nm[SHOW_BUF(NAME_SHOW_MAX)];
    const rd_tensor *rt = rd_prep(r, t, dst, nm, err);
    if (!rt)
        return -1;
    const dtype_info *d = &DTYPES[t->dtype];
    if (d->kind == KIND_FLOAT)
        return xf_err_set(err, "%s: tensor \"%s\" dtype at byte %" PRIu64 ": %s is not an integer type",
                          r->shown, nm, rt->dtype_at, d->name);
    size_t n = (size_t)refdump_numel(t);
    for (size_t i = 0; i < n; i++) {
        uint64_t u;
        int64_t v = ld_int(t->dtype, (const uint8_t *)t->data + i * d->size, &u);
        char val[24];
        if (t->dtype == REFDUMP_U64)
            snprintf(val, sizeof val, "%" PRIu64, u);
        else
            snprintf(val, sizeof val, "%" PRId64, v);
        if (v < INT32_MIN || v > INT32_MAX)
            return xf_err_set(err,
                              "%s: tensor \"%s\" data at byte %" PRIu64 ": element %zu is %s, outside int32",
                              r->shown, nm, t->file_offset + i * d->size, i, val);
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

/* {"dtype":..,"shape":[..],"data_offsets":[off,off+nbytes]}, members in the
 * order the Python library writes them; NULL when out of memory */
static json_t *wr_entry(const wr_tensor *t, uint64_t off)
{
    json_t *shape = json_array();
    for (int d = 0; shape && d < t->ndim; d++) {
        if (json_array_append_new(shape, json_integer((json_int_t)t->shape[d])) != 0) {
            json_decref(shape);
            shape = NULL;
        }
    }
    /* "o" steals the reference, also when json_pack fails (a NULL included) */
    return json_pack("{s:s, s:o, s:[I, I]}", "dtype", DTYPES[t->dtype].name, "shape", shape, "data_offsets",
                     (json_int_t)off, (json_int_t)(off + t->nbytes));
}

/* The JSON of the header: metadata first, then the tensors in data order
 * (*order, malloc'd, gets that order); *data_size the bytes after it. */
static json_t *wr_json(refdump_writer *w, wr_tensor ***order, uint64_t *data_size, xf_err *err)
{
    *order = malloc((w->n ? w->n : 1) * sizeof **order);
    json_t *root = json_object();
    if (!*order || !root) {
        json_decref(root);
        return xf_err_set(err, "refdump writer: out of memory"), NULL;
    }
    for (size_t i = 0; i < w->n; i++)
        (*order)[i] = &w->t[i];
    if (w->n)
        qsort(*order, w->n, sizeof **order, cmp_write_order);
    /* the Python library's metadata is a hash map (no fixed order): sorted keys
     * keep our output deterministic */
    if (w->nm)
        qsort(w->m, w->nm, sizeof *w->m, cmp_wmeta);
    bool ok = true;
    if (w->nm) {
        json_t *meta = json_object();
        for (size_t i = 0; meta && i < w->nm; i++) {
            if (json_object_set_new(meta, w->m[i].key, json_string(w->m[i].val)) != 0) {
                json_decref(meta);
                meta = NULL;
            }
        }
        ok = json_object_set_new(root, "__metadata__", meta) == 0; /* takes meta, NULL fails */
    }
    uint64_t off = 0;
    for (size_t i = 0; ok && i < w->n; i++) {
        const wr_tensor *t = (*order)[i];
        if (!xf_add_u64(off, t->nbytes, &off) || off > (uint64_t)INT64_MAX) {
            json_decref(root);
            return xf_err_set(err, "refdump writer: the data size overflows"), NULL;
        }
        ok = json_object_set_new(root, t->name, wr_entry(t, off - t->nbytes)) == 0;
    }
    if (!ok) {
        json_decref(root);
        return xf_err_set(err, "refdump writer: out of memory"), NULL;
    }
    *data_size = off;
    return root;
}

/* The 8-byte length and the JSON padded with spaces to a multiple of 8 into
 * *hdr (malloc'd); *order gets the tensors in data order (malloc'd, free both). */
static int wr_header(refdump_writer *w, uint8_t **hdr, size_t *hlen, wr_tensor ***order, uint64_t *total,
                     xf_err *err)
{
    uint64_t data_size;
    *hdr = NULL;
    json_t *root = wr_json(w, order, &data_size, err);
    if (!root)
        return -1;
    /* compact (no spaces), members in insertion order: the Python library's bytes */
    char *js = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    size_t n = js ? strlen(js) : 0, padded = (n + 7) / 8 * 8;
    *hdr = js ? malloc(HDR + padded) : NULL;
    if (!*hdr) {
        free(js);
        return xf_err_set(err, "refdump writer: out of memory");
    }
    uint64_t len = padded;
    memcpy(*hdr, &len, 8);
    memcpy(*hdr + HDR, js, n);
    memset(*hdr + HDR + n, ' ', padded - n);
    free(js);
    /* serde_json (the Python library) writes \u001f where jansson writes
     * \u001F: lower-case the hex digits of every \u escape */
    for (size_t i = HDR; i + 1 < HDR + n; i++) {
        if ((*hdr)[i] != '\\')
            continue;
        if ((*hdr)[++i] == 'u')
            for (size_t k = i + 1; k < i + 5 && k < HDR + n; k++)
                (*hdr)[k] = (uint8_t)tolower((*hdr)[k]);
    }
    *hlen = HDR + padded;
    if (!xf_add_u64(*hlen, data_size, total))
        return xf_err_set(err, "refdump writer: the file size overflows");
    return 0;
}

int refdump_writer_to_mem(refdump_writer *w, uint8_t **buf, size_t *size, xf_err *err)
{
    if (!w || !buf || !size)
        return xf_err_set(err, "refdump writer: no writer or no output");
    *buf = NULL;
    *size = 0;
    uint8_t *hdr = NULL;
    size_t hlen = 0;
    wr_tensor **order = NULL;
    uint64_t total;
    int rc = wr_header(w, &hdr, &hlen, &order, &total, err);
    if (rc == 0 && total > SIZE_MAX)
        rc = xf_err_set(err, "refdump writer: the file size overflows");
    uint8_t *out = rc == 0 ? malloc(total ? (size_t)total : 1) : NULL;
    if (rc == 0 && !out)
        rc = xf_err_set(err, "refdump writer: out of memory");
    if (rc == 0) {
        memcpy(out, hdr, hlen);
        size_t o = hlen;
        for (size_t i = 0; i < w->n; i++) {
            if (order[i]->nbytes)
                memcpy(out + o, order[i]->data, (size_t)order[i]->nbytes);
            o += (size_t)order[i]->nbytes;
        }
        *buf = out;
        *size = (size_t)total;
    }
    free(hdr);
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

/* A temporary file next to PATH: mkostemps creates it with O_EXCL, so a
 * symlink or anything else planted at that name is never written through.
 * It gets the mode of the file it replaces, or 0644 less the umask. */
static int wr_tmpfile(const char *path, const char *shown, const struct stat *old, char **tmp, xf_err *err)
{
    size_t plen = strlen(path);
    *tmp = malloc(plen + sizeof ".XXXXXX.tmp");
    if (!*tmp)
        return xf_err_set(err, "%s: out of memory", shown);
    memcpy(*tmp, path, plen);
    memcpy(*tmp + plen, ".XXXXXX.tmp", sizeof ".XXXXXX.tmp");
    int fd = mkostemps(*tmp, 4, O_CLOEXEC);
    if (fd < 0) {
        xf_err_set(err, "%s: cannot create a temporary file next to it: %s", shown, strerror(errno));
        free(*tmp);
        *tmp = NULL;
        return -1;
    }
    mode_t mode = old ? old->st_mode & 07777 : 0644;
    if (!old) { /* the umask can only be read by setting it: set it back at once */
        mode_t mask = umask(022);
        umask(mask);
        mode &= ~mask;
    }
    if (fchmod(fd, mode) != 0) {
        xf_err_set(err, "%s: cannot set the mode of the temporary file: %s", shown, strerror(errno));
        close(fd);
        unlink(*tmp);
        free(*tmp);
        *tmp = NULL;
        return -1;
    }
    return fd;
}

/* Writes the whole file into fd and closes it; errno-based message on failure
 * (a full disk shows as ENOSPC from write, fsync or close). */
static int wr_fill(int fd, const uint8_t *hdr, size_t hlen, wr_tensor **order, size_t n, const char *shown,
                   xf_err *err)
{
    int rc = write_all(fd, hdr, hlen);
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (order[i]->nbytes)
            rc = write_all(fd, order[i]->data, order[i]->nbytes);
    if (rc == 0 && fsync(fd) != 0)
        rc = -1;
    int e = errno;
    if (close(fd) != 0 && rc == 0)
        rc = -1, e = errno;
    return rc ? xf_err_set(err, "%s: cannot write: %s", shown, strerror(e)) : 0;
}

int refdump_writer_save(refdump_writer *w, const char *path, xf_err *err)
{
    if (!w || !path)
        return xf_err_set(err, "refdump writer: no writer or no path");
    char shown[SHOW_BUF(PATH_SHOW_MAX)];
    show(shown, path, strlen(path), PATH_SHOW_MAX);
    /* only a regular file is replaced: the rename would turn a device node
     * (/dev/null) into a regular file, a symlink into a file beside its target */
    struct stat st;
    bool exists = lstat(path, &st) == 0;
    if (!exists && errno != ENOENT)
        return xf_err_set(err, "%s: cannot write: %s", shown, strerror(errno));
    if (exists && !S_ISREG(st.st_mode))
        return xf_err_set(err, "%s: cannot write: not a regular file (left as it is)", shown);
    uint8_t *hdr = NULL;
    size_t hlen = 0;
    wr_tensor **order = NULL;
    uint64_t total;
    char *tmp = NULL;
    int rc = wr_header(w, &hdr, &hlen, &order, &total, err), fd = -1;
    if (rc == 0 && (fd = wr_tmpfile(path, shown, exists ? &st : NULL, &tmp, err)) < 0)
        rc = -1;
    if (rc == 0)
        rc = wr_fill(fd, hdr, hlen, order, w->n, shown, err);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = xf_err_set(err, "%s: cannot replace it: %s", shown, strerror(errno));
    if (rc == 0)
        fsync_dir_of(path);
    else if (tmp)
        unlink(tmp); /* ours: created by mkostemps above */
    free(tmp);
    free(hdr);
    free(order);
    return rc;
}
