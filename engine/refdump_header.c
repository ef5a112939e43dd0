/* refdump_header: the JSON header of a safetensors file, parsed by jansson
 * and validated entry by entry; every message names the field and the byte
 * offset in the file where it is wrong (see refdump_impl.h). */
#include "refdump_impl.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

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
        rd_show(shown, key, strlen(key), NAME_SHOW_MAX);
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
    t->pub.dtype = rd_dtype_lookup(json_string_value(v), json_string_length(v));
    if (t->pub.dtype < 0)
        return rd_fail(c->r, c->err, rd_field(c, "dtype"), at, "unknown dtype \"%s\"",
                       rd_show(b, json_string_value(v), json_string_length(v), 16));
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
    if (numel > (uint64_t)INT64_MAX || !xf_mul_u64(numel, rd_dtypes[t->pub.dtype].size, &nbytes))
        return rd_fail(c->r, c->err, rd_field(c, "shape"), shape_at, "the size in bytes overflows 64 bits");
    const char *field = rd_field(c, "data_offsets");
    if (t->begin > t->end)
        return rd_fail(c->r, c->err, field, off_at, "begin %" PRIu64 " > end %" PRIu64, t->begin, t->end);
    if (t->end > data_size)
        return rd_fail(c->r, c->err, field, off_at,
                       "end %" PRIu64 " is past the end of the data (%" PRIu64 " bytes)", t->end, data_size);
    if (t->end - t->begin != nbytes) {
        rd_show_shape(b, sizeof b, t->pub.ndim, t->pub.shape);
        return rd_fail(c->r, c->err, field, off_at,
                       "[%" PRIu64 ", %" PRIu64 "] is %" PRIu64 " bytes but %s %s needs %" PRIu64, t->begin,
                       t->end, t->end - t->begin, rd_dtypes[t->pub.dtype].name, b, nbytes);
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
    rd_show(c->nm, name, len, NAME_SHOW_MAX);
    if (len == 0)
        return rd_fail(r, c->err, "tensor name", key_at, "empty name");
    if (!json_is_object(v))
        return rd_fail(r, c->err, rd_field(c, NULL), at, "expected an object, found %s", js_type(v));
    if (rd_grow((void **)&r->t, &r->cap, r->n, sizeof *r->t))
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
                           rd_show(b, key, strlen(key), 16));
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
            snprintf(b, sizeof b, "__metadata__ \"%s\"", rd_show(k, key, strlen(key), NAME_SHOW_MAX));
            return rd_fail(r, c->err, b, v_at, "the value must be a string");
        }
        if (rd_grow((void **)&r->meta, &r->capm, r->nm, sizeof *r->meta))
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

/* Two tensors whose data overlap: the safetensors format forbids it, and
 * writing one (patch's source, a fixture tool) would change the other; the
 * GGUF reader refuses the same (an attack found it accepted here, session
 * 26). Sorted by begin, each non-empty range must end before the next
 * begins. */
static int rd_span_cmp(const void *a, const void *b)
{
    const rd_tensor *x = *(rd_tensor *const *)a, *y = *(rd_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int rd_overlaps(rd_ctx *c)
{
    refdump *r = c->r;
    if (r->n < 2)
        return 0;
    rd_tensor **v = malloc(r->n * sizeof *v);
    if (!v)
        return rd_fail(r, c->err, "header", 0, "out of memory");
    size_t m = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->t[i].end > r->t[i].begin)
            v[m++] = &r->t[i];
    qsort(v, m, sizeof *v, rd_span_cmp);
    int rc = 0;
    for (size_t k = 1; k < m && rc == 0; k++) {
        const rd_tensor *a = v[k - 1], *b = v[k];
        if (b->begin >= a->end)
            continue;
        char other[SHOW_BUF(NAME_SHOW_MAX)];
        rd_show(other, a->pub.name, strlen(a->pub.name), NAME_SHOW_MAX);
        rd_show(c->nm, b->pub.name, strlen(b->pub.name), NAME_SHOW_MAX);
        rc = rd_fail(r, c->err, rd_field(c, "data_offsets"), (size_t)(b->offsets_at - HDR),
                     "[%" PRIu64 ", %" PRIu64 "] overlaps the data of tensor \"%s\" [%" PRIu64 ", %" PRIu64
                     "]",
                     b->begin, b->end, other, a->begin, a->end);
    }
    free(v);
    return rc;
}

/* The header: h[0..n) is the JSON, data_size bytes follow it. */
int rd_header(refdump *r, const uint8_t *h, size_t n, uint64_t data_size, xf_err *err)
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
    if (rc == 0)
        rc = rd_overlaps(&c);
    return rc;
}

