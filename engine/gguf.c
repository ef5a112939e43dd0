/* gguf: the bounds-checked GGUF v2/v3 reader and the in-memory writer.
 * Reading goes through one cursor that checks the bytes left before every
 * read; every count is compared with the bytes left before anything is
 * allocated for it, and every derived size or offset uses the checked
 * arithmetic of err.h. Errors name the file, the field and its byte offset. */
#include "gguf.h"
#include "gguf_impl.h"

#include "quant.h"
#include "xfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_NAME_MAX 256 /* ggml allows 64; be lenient but bounded */

/* The smallest encodings, used to reject counts that cannot fit in the
 * bytes left: key (8 + 1) + type (4) + a 1-byte value; name (8 + 1) +
 * n_dims (4) + one dim (8) + type (4) + offset (8). */
#define KV_MIN_BYTES 14u
#define TINFO_MIN_BYTES 33u

/* The public struct comes first so a gguf_file * is also a gguf_impl *;
 * the hash tables make lookups and the duplicate checks at open O(1), so a
 * hostile file with a million names cannot make open quadratic. */
typedef struct gguf_impl {
    gguf_file f;
    size_t *kv_slots; /* index + 1 into f.kv, 0 = empty; capacity kv_cap (power of 2) */
    size_t kv_cap;
    size_t *t_slots; /* index + 1 into f.tensors */
    size_t t_cap;
    char *raw_path;  /* the path as given (f.path is escaped for messages): what the change check stats */
    bool from_file;  /* gguf_open: the identity of the file read, for gguf_check_unchanged */
    struct stat st;  /* its fstat when it was read */
} gguf_impl;

/* ------------------------------------------------------------------ */
/* small helpers */

const char *gguf_vtype_name(int type)
{
    static const char *const names[GGUF_VT_COUNT] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
        "bool", "string", "array", "uint64", "int64", "float64",
    };
    if (type < 0 || type >= GGUF_VT_COUNT)
        return "unknown";
    return names[type];
}

static bool is_pow2(uint64_t x) { return x && !(x & (x - 1)); }

/* The file name is given by the user, but may come from a script or a
 * session: control bytes are escaped, the rest (UTF-8 names) kept. */
static char *dup_path(const char *path)
{
    if (!path)
        path = "(null)";
    size_t n = strlen(path);
    char *r = malloc(4 * n + 1);
    if (!r)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c < 0x20 || c == 0x7f)
            o += (size_t)sprintf(r + o, "\\x%02x", c);
        else
            r[o++] = (char)c;
    }
    r[o] = '\0';
    return r;
}

/* Strict UTF-8 (no overlongs, no surrogates, at most U+10FFFF). */
static bool utf8_valid(const uint8_t *s, uint64_t n)
{
    uint64_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int k;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) { k = 1; cp = c & 0x1f; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { k = 2; cp = c & 0x0f; min = 0x800; }
        else if ((c & 0xf8) == 0xf0) { k = 3; cp = c & 0x07; min = 0x10000; }
        else return false;
        if ((uint64_t)k > n - i - 1)
            return false;
        for (int j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += (uint64_t)k + 1;
    }
    return true;
}

static uint64_t hash_bytes(const char *s, uint64_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (uint64_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static bool str_eq_n(gguf_str s, const char *p, uint64_t n) { return s.len == n && memcmp(s.ptr, p, n) == 0; }

bool gguf_str_eq(gguf_str s, const char *cstr)
{
    return cstr && str_eq_n(s, cstr, strlen(cstr));
}

/* Capacity (a power of 2) for n entries at load <= 1/2; 0 if n is absurd. */
static size_t table_cap(uint64_t n)
{
    size_t cap = 16;
    while (cap / 2 < n) {
        if (cap > SIZE_MAX / 4)
            return 0;
        cap *= 2;
    }
    return cap;
}

/* ------------------------------------------------------------------ */
/* the parser: a cursor plus what it is reading, so that an error can name
 * the field without formatting a name before every read */

enum pctx { CTX_HEADER, CTX_KV_KEY, CTX_KV, CTX_KV_ELEM, CTX_TINFO, CTX_TINFO_DIM };

typedef struct parser {
    const uint8_t *b;
    uint64_t size;
    uint64_t pos;
    const char *name; /* escaped file name */
    xf_err *err;
    enum pctx ctx;
    const char *sub; /* header field / tensor-info field */
    uint64_t idx;    /* kv or tensor index */
    uint64_t elem;   /* array element or dimension */
    gguf_str key;    /* current key (CTX_KV, CTX_KV_ELEM) */
} parser;

static void field_name(const parser *p, char *out, size_t n)
{
    char e[ESC_BUF];
    switch (p->ctx) {
    case CTX_HEADER:
        snprintf(out, n, "%s", p->sub);
        break;
    case CTX_KV_KEY:
        snprintf(out, n, "kv[%" PRIu64 "].key", p->idx);
        break;
    case CTX_KV:
        snprintf(out, n, "kv[%" PRIu64 "] '%s'", p->idx, gguf_esc(e, p->key.ptr, p->key.len));
        break;
    case CTX_KV_ELEM:
        snprintf(out, n, "kv[%" PRIu64 "] '%s'[%" PRIu64 "]", p->idx, gguf_esc(e, p->key.ptr, p->key.len), p->elem);
        break;
    case CTX_TINFO:
        snprintf(out, n, "tensor_info[%" PRIu64 "].%s", p->idx, p->sub);
        break;
    case CTX_TINFO_DIM:
        snprintf(out, n, "tensor_info[%" PRIu64 "].ne[%" PRIu64 "]", p->idx, p->elem);
        break;
    }
}

__attribute__((format(printf, 3, 4))) static int perr(const parser *p, uint64_t off, const char *fmt, ...)
{
    char field[ESC_BUF + 64], what[400];
    field_name(p, field, sizeof field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return xf_err_set(p->err, "%s: %s at byte %" PRIu64 ": %s", p->name, field, off, what);
}

static uint64_t left(const parser *p) { return p->size - p->pos; }

/* Takes n bytes at the cursor or fails naming the current field. */
static int take(parser *p, uint64_t n, const uint8_t **out)
{
    if (n > left(p))
        return perr(p, p->pos, "unexpected end of file (need %" PRIu64 " bytes, %" PRIu64 " left)", n, left(p));
    *out = p->b + p->pos;
    p->pos += n;
    return 0;
}

static int rd_u32(parser *p, uint32_t *v)
{
    const uint8_t *q = NULL;
    if (take(p, 4, &q))
        return -1;
    *v = ld_u32(q);
    return 0;
}

static int rd_u64(parser *p, uint64_t *v)
{
    const uint8_t *q = NULL;
    if (take(p, 8, &q))
        return -1;
    *v = ld_u64(q);
    return 0;
}

static int rd_str(parser *p, gguf_str *s)
{
    uint64_t off = p->pos, len;
    if (rd_u64(p, &len))
        return -1;
    if (len > left(p))
        return perr(p, off, "string length %" PRIu64 " past end of file", len);
    s->ptr = (const char *)(p->b + p->pos);
    s->len = len;
    p->pos += len;
    return 0;
}

/* Keys and tensor names: non-empty, bounded, valid UTF-8 without NUL (a NUL
 * would make a name that no C-string lookup can find). */
static int check_name(parser *p, uint64_t off, gguf_str s, const char *what, uint64_t max)
{
    if (s.len == 0)
        return perr(p, off, "empty %s", what);
    if (max && s.len > max)
        return perr(p, off, "%s length %" PRIu64 " exceeds %" PRIu64 " bytes", what, s.len, max);
    if (memchr(s.ptr, '\0', s.len))
        return perr(p, off, "%s contains a NUL byte", what);
    if (!utf8_valid((const uint8_t *)s.ptr, s.len))
        return perr(p, off, "%s is not valid UTF-8", what);
    return 0;
}

/* Reads one value of type t (not an array) at the cursor. */
static int rd_scalar_or_str(parser *p, int t)
{
    if (t == GGUF_VT_STRING) {
        gguf_str s;
        return rd_str(p, &s);
    }
    const uint8_t *q = NULL;
    return take(p, (uint64_t)vtype_size(t), &q);
}

static int rd_value(parser *p, gguf_kv *kv)
{
    uint64_t toff = p->pos;
    uint32_t t;
    if (rd_u32(p, &t))
        return -1;
    if (t >= GGUF_VT_COUNT)
        return perr(p, toff, "unknown value type %" PRIu32, t);
    kv->type = (int)t;
    kv->offset = p->pos;
    kv->data = p->b + p->pos;
    if (t != GGUF_VT_ARRAY)
        return rd_scalar_or_str(p, (int)t);

    uint64_t eoff = p->pos;
    uint32_t et;
    uint64_t n;
    if (rd_u32(p, &et))
        return -1;
    if (et == GGUF_VT_ARRAY)
        return perr(p, eoff, "nested arrays are not supported");
    if (et >= GGUF_VT_COUNT)
        return perr(p, eoff, "unknown array element type %" PRIu32, et);
    uint64_t noff = p->pos;
    if (rd_u64(p, &n))
        return -1;
    kv->arr_type = (int)et;
    kv->arr_n = n;
    kv->data = p->b + p->pos;
    if (et == GGUF_VT_STRING) {
        /* each string takes at least its 8-byte length */
        if (n > left(p) / 8)
            return perr(p, noff, "array of %" PRIu64 " strings past end of file (%" PRIu64 " bytes left)", n, left(p));
        p->ctx = CTX_KV_ELEM;
        for (uint64_t i = 0; i < n; i++) {
            p->elem = i;
            gguf_str s;
            if (rd_str(p, &s))
                return -1;
        }
        p->ctx = CTX_KV;
        return 0;
    }
    uint64_t es = (uint64_t)vtype_size((int)et), bytes;
    if (!xf_mul_u64(n, es, &bytes))
        return perr(p, noff, "array count %" PRIu64 " of %s overflows", n, gguf_vtype_name((int)et));
    if (bytes > left(p))
        return perr(p, noff, "array of %" PRIu64 " %s (%" PRIu64 " bytes) past end of file (%" PRIu64 " bytes left)", n,
                    gguf_vtype_name((int)et), bytes, left(p));
    p->pos += bytes;
    return 0;
}

/* Inserts entry idx (name s) into a table; returns the index of an earlier
 * entry with the same name, or SIZE_MAX when s is new. */
static size_t table_insert(size_t *slots, size_t cap, gguf_str s, size_t idx, const gguf_str *(*name_of)(const void *, size_t),
                           const void *arr)
{
    size_t m = cap - 1, h = (size_t)hash_bytes(s.ptr, s.len) & m;
    while (slots[h]) {
        const gguf_str *o = name_of(arr, slots[h] - 1);
        if (o->len == s.len && memcmp(o->ptr, s.ptr, s.len) == 0)
            return slots[h] - 1;
        h = (h + 1) & m;
    }
    slots[h] = idx + 1;
    return SIZE_MAX;
}

static size_t table_find(const size_t *slots, size_t cap, const char *s, size_t n,
                         const gguf_str *(*name_of)(const void *, size_t), const void *arr)
{
    if (!cap)
        return SIZE_MAX;
    size_t m = cap - 1, h = (size_t)hash_bytes(s, n) & m;
    while (slots[h]) {
        const gguf_str *o = name_of(arr, slots[h] - 1);
        if (str_eq_n(*o, s, n))
            return slots[h] - 1;
        h = (h + 1) & m;
    }
    return SIZE_MAX;
}

static const gguf_str *kv_name(const void *a, size_t i) { return &((const gguf_kv *)a)[i].key; }
static const gguf_str *tensor_name(const void *a, size_t i) { return &((const gguf_tensor *)a)[i].name; }

static int parse_kvs(parser *p, gguf_impl *g)
{
    gguf_file *f = &g->f;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        p->ctx = CTX_KV_KEY;
        p->idx = i;
        uint64_t koff = p->pos;
        if (rd_str(p, &kv->key) || check_name(p, koff, kv->key, "key", 0))
            return -1;
        p->ctx = CTX_KV;
        p->key = kv->key;
        size_t first = table_insert(g->kv_slots, g->kv_cap, kv->key, i, kv_name, f->kv);
        if (first != SIZE_MAX)
            return perr(p, koff, "duplicate key (first at kv[%zu])", first);
        if (rd_value(p, kv))
            return -1;
    }
    return 0;
}

static int parse_alignment(parser *p, gguf_impl *g)
{
    gguf_file *f = &g->f;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = gguf_find_kv(f, "general.alignment");
    if (!kv)
        return 0;
    p->ctx = CTX_KV;
    p->idx = (uint64_t)(kv - f->kv);
    p->key = kv->key;
    if (kv->type != GGUF_VT_UINT32)
        return perr(p, kv->offset, "alignment must be of type uint32, got %s", gguf_vtype_name(kv->type));
    uint32_t a = ld_u32(kv->data);
    if (!is_pow2(a))
        return perr(p, kv->offset, "alignment %" PRIu32 " is not a nonzero power of 2", a);
    f->alignment = a;
    return 0;
}

static int parse_tensor_info(parser *p, gguf_impl *g, uint64_t i)
{
    gguf_file *f = &g->f;
    gguf_tensor *t = &f->tensors[i];
    p->idx = i;
    p->ctx = CTX_TINFO;
    p->sub = "name";
    t->info_offset = p->pos;
    if (rd_str(p, &t->name) || check_name(p, t->info_offset, t->name, "tensor name", GGUF_NAME_MAX))
        return -1;
    size_t first = table_insert(g->t_slots, g->t_cap, t->name, i, tensor_name, f->tensors);
    if (first != SIZE_MAX) {
        char e[ESC_BUF];
        return perr(p, t->info_offset, "duplicate tensor name '%s' (first at tensor_info[%zu])",
                    gguf_esc(e, t->name.ptr, t->name.len), first);
    }

    p->sub = "n_dims";
    uint64_t off = p->pos;
    uint32_t nd;
    if (rd_u32(p, &nd))
        return -1;
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        return perr(p, off, "n_dims %" PRIu32 " out of range 1..%d", nd, GGUF_MAX_DIMS);
    t->n_dims = (int)nd;

    int64_t nel = 1;
    p->ctx = CTX_TINFO_DIM;
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) {
        p->elem = d;
        off = p->pos;
        uint64_t u;
        if (rd_u64(p, &u))
            return -1;
        int64_t v = u > (uint64_t)INT64_MAX ? -(int64_t)(~u) - 1 : (int64_t)u; /* two's complement, no UB */
        if (v <= 0)
            return perr(p, off, "dimension %" PRId64 " is not positive", v);
        if (__builtin_mul_overflow(nel, v, &nel))
            return perr(p, off, "element count overflows int64");
        t->ne[d] = v;
    }

    p->ctx = CTX_TINFO;
    p->sub = "type";
    off = p->pos;
    uint32_t ty;
    if (rd_u32(p, &ty))
        return -1;
    const quant_type_info *qi = ty <= (uint32_t)INT32_MAX ? quant_type_get((int)ty) : NULL;
    if (!qi)
        return perr(p, off, "unknown tensor type %" PRIu32, ty);
    t->type = (int)ty;
    uint64_t row, size;
    if (!quant_row_bytes(t->type, t->ne[0], &row)) {
        if (t->ne[0] % qi->block_elems)
            return perr(p, off, "row length ne[0] = %" PRId64 " is not a multiple of the %s block size %d", t->ne[0],
                        qi->name, qi->block_elems);
        return perr(p, off, "row size of %" PRId64 " %s elements overflows", t->ne[0], qi->name);
    }
    /* nel / ne[0] is exact and cannot overflow: nel was checked above */
    if (!xf_mul_u64(row, (uint64_t)(nel / t->ne[0]), &size))
        return perr(p, off, "tensor size overflows");
    t->size = size;

    p->sub = "offset";
    off = p->pos;
    if (rd_u64(p, &t->offset))
        return -1;
    if (t->offset % f->alignment)
        return perr(p, off, "offset %" PRIu64 " is not a multiple of the alignment %" PRIu64, t->offset, f->alignment);
    return 0;
}

/* Data ranges can only be checked once the end of the tensor table (and so
 * the start of the data section) is known. */
static int check_tensor_data(parser *p, gguf_file *f, uint64_t i)
{
    gguf_tensor *t = &f->tensors[i];
    p->ctx = CTX_TINFO;
    p->idx = i;
    p->sub = "offset";
    /* the offset field follows name, n_dims, dims and type */
    uint64_t off = t->info_offset + 8 + t->name.len + 4 + 8 * (uint64_t)t->n_dims + 4;
    uint64_t start, end;
    if (!xf_add_u64(f->data_offset, t->offset, &start))
        return perr(p, off, "offset %" PRIu64 " overflows (data section at %" PRIu64 ")", t->offset, f->data_offset);
    if (!xf_add_u64(start, t->size, &end))
        return perr(p, off, "data at %" PRIu64 " + size %" PRIu64 " overflows", start, t->size);
    if (end > f->size)
        return perr(p, off, "data [%" PRIu64 ", %" PRIu64 ") past end of file (size %" PRIu64 ")", start, end, f->size);
    t->data = f->map + start;
    return 0;
}

typedef struct span {
    uint64_t start, end, idx;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Two tensors whose data ranges overlap: writing one (a fixture tool, a
 * future in-place edit) changes the other, and no converter makes such a
 * file; llama.cpp refuses it too. Sorted by start, each range must end
 * before the next starts. */
static int check_overlaps(parser *p, gguf_file *f)
{
    if (f->n_tensors < 2)
        return 0;
    span *v = malloc((size_t)f->n_tensors * sizeof *v);
    if (!v)
        return xf_err_set(p->err, "%s: out of memory for %" PRIu64 " tensors", p->name, f->n_tensors);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        v[i].start = f->tensors[i].offset;
        v[i].end = f->tensors[i].offset + f->tensors[i].size; /* checked in check_tensor_data */
        v[i].idx = i;
    }
    qsort(v, (size_t)f->n_tensors, sizeof *v, span_cmp);
    int rc = 0;
    for (uint64_t k = 1; k < f->n_tensors && rc == 0; k++) {
        if (v[k].start >= v[k - 1].end)
            continue;
        const gguf_tensor *a = &f->tensors[v[k - 1].idx], *b = &f->tensors[v[k].idx];
        char ea[ESC_BUF], eb[ESC_BUF];
        uint64_t off = b->info_offset + 8 + b->name.len + 4 + 8 * (uint64_t)b->n_dims + 4;
        rc = xf_err_set(p->err,
                        "%s: tensor_info[%" PRIu64 "].offset at byte %" PRIu64 ": the data of '%s' [%" PRIu64
                        ", %" PRIu64 ") overlaps that of tensor_info[%" PRIu64 "] '%s' [%" PRIu64 ", %" PRIu64
                        ") (offsets in the data section)",
                        p->name, v[k].idx, off, gguf_esc(eb, b->name.ptr, b->name.len), v[k].start, v[k].end,
                        v[k - 1].idx, gguf_esc(ea, a->name.ptr, a->name.len), v[k - 1].start, v[k - 1].end);
    }
    free(v);
    return rc;
}

static int parse(parser *p, gguf_impl *g)
{
    gguf_file *f = &g->f;
    p->ctx = CTX_HEADER;
    p->sub = "magic";
    if (p->size < 4) {
        char got[16] = "";
        size_t o = 0;
        for (uint64_t i = 0; i < p->size; i++)
            o += (size_t)snprintf(got + o, sizeof got - o, "%s%02x", i ? " " : "", p->b[i]);
        return perr(p, 0, "not a GGUF file (%" PRIu64 " bytes%s%s)", p->size, p->size ? ": " : "", got);
    }
    if (memcmp(p->b, GGUF_MAGIC, 4) != 0)
        return perr(p, 0, "not a GGUF file (got %02x %02x %02x %02x)", p->b[0], p->b[1], p->b[2], p->b[3]);
    p->pos = 4;

    p->sub = "version";
    if (rd_u32(p, &f->version))
        return -1;
    uint32_t v = f->version;
    if (v == 1)
        return perr(p, 4, "GGUF version 1 is not supported (only 2 and 3)");
    if (v == 0x02000000u || v == 0x03000000u)
        return perr(p, 4, "version %u byte-swapped: a big-endian GGUF file, only little-endian is supported", v >> 24);
    if (v != 2 && v != 3)
        return perr(p, 4, "unsupported GGUF version %" PRIu32 " (only 2 and 3)", v);

    p->sub = "n_tensors";
    if (rd_u64(p, &f->n_tensors))
        return -1;
    p->sub = "n_kv";
    if (rd_u64(p, &f->n_kv))
        return -1;
    if (f->n_kv > left(p) / KV_MIN_BYTES)
        return perr(p, 16, "%" PRIu64 " key/values cannot fit in the %" PRIu64 " bytes left", f->n_kv, left(p));
    p->sub = "n_tensors";
    if (f->n_tensors > left(p) / TINFO_MIN_BYTES)
        return perr(p, 8, "%" PRIu64 " tensor infos cannot fit in the %" PRIu64 " bytes left", f->n_tensors, left(p));

    g->kv_cap = table_cap(f->n_kv);
    f->kv = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
    g->kv_slots = g->kv_cap ? calloc(g->kv_cap, sizeof *g->kv_slots) : NULL;
    if (!f->kv || !g->kv_slots)
        return perr(p, 16, "out of memory for %" PRIu64 " key/values", f->n_kv);
    if (parse_kvs(p, g) || parse_alignment(p, g))
        return -1;

    /* the key/values used up bytes: re-check before allocating */
    p->ctx = CTX_HEADER;
    p->sub = "n_tensors";
    if (f->n_tensors > left(p) / TINFO_MIN_BYTES)
        return perr(p, 8, "%" PRIu64 " tensor infos cannot fit in the %" PRIu64 " bytes left after the key/values",
                    f->n_tensors, left(p));
    g->t_cap = table_cap(f->n_tensors);
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    g->t_slots = g->t_cap ? calloc(g->t_cap, sizeof *g->t_slots) : NULL;
    if (!f->tensors || !g->t_slots)
        return perr(p, 8, "out of memory for %" PRIu64 " tensor infos", f->n_tensors);
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (parse_tensor_info(p, g, i))
            return -1;

    /* p->pos <= size, alignment <= 2^31: cannot overflow */
    f->data_offset = (p->pos + f->alignment - 1) / f->alignment * f->alignment;
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (check_tensor_data(p, f, i))
            return -1;
    return check_overlaps(p, f);
}

static gguf_file *open_impl(const uint8_t *map, uint64_t size, bool mapped, const char *path, xf_err *err)
{
    gguf_impl *g = calloc(1, sizeof *g);
    char *name = dup_path(path);
    if (!g || !name) {
        free(g);
        free(name);
        if (mapped)
            free((void *)map);
        xf_err_set(err, "%s: out of memory", path ? path : "(null)");
        return NULL;
    }
    g->f.path = name;
    g->f.map = map;
    g->f.size = size;
    g->f.mapped = mapped;
    parser p = {.b = map, .size = size, .name = name, .err = err};
    if (parse(&p, g)) {
        gguf_close(&g->f);
        return NULL;
    }
    return &g->f;
}

gguf_file *gguf_open_mem(const void *buf, size_t size, const char *name, xf_err *err)
{
    if (!buf && size) {
        xf_err_set(err, "%s: no buffer", name ? name : "(null)");
        return NULL;
    }
    return open_impl(buf, size, false, name, err);
}

gguf_file *gguf_open(const char *path, xf_err *err)
{
    if (!path) {
        xf_err_set(err, "(null): no file name");
        return NULL;
    }
    int fd;
    struct stat st;
    if (xf_file_open_read(path, &fd, &st, err) != 0)
        return NULL;
    uint64_t size = (uint64_t)st.st_size;
    if (size >= SIZE_MAX) {
        xf_err_set(err, "%s: file too large to read (%" PRIu64 " bytes)", path, size);
        close(fd);
        return NULL;
    }
    /* Read, not mmap: a file truncated or rewritten on disk after load
     * would turn a later access to a mapped weight into SIGBUS (or silently
     * different weights). A copy costs the file's size in memory, which the
     * page cache of a map would hold anyway, and is immune to the file. */
    uint8_t *buf = malloc(size ? (size_t)size : 1);
    if (!buf) {
        xf_err_set(err, "%s: out of memory for %" PRIu64 " bytes", path, size);
        close(fd);
        return NULL;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    int rc = xf_file_pread(fd, buf, (size_t)size, 0, path, err);
    close(fd);
    if (rc != 0) {
        free(buf);
        return NULL;
    }
    gguf_file *f = open_impl(buf, size, true, path, err);
    if (f) {
        gguf_impl *g = (gguf_impl *)f;
        g->raw_path = strdup(path);
        if (!g->raw_path) {
            xf_err_set(err, "%s: out of memory", f->path);
            gguf_close(f);
            return NULL;
        }
        g->st = st;
        g->from_file = true;
    }
    return f;
}

int gguf_check_unchanged(const gguf_file *f, xf_err *err)
{
    const gguf_impl *g = (const gguf_impl *)f;
    if (!f || !g->from_file)
        return 0;
    const char *what = xf_file_changed(g->raw_path, &g->st);
    if (what)
        return xf_err_set(err, "%s: the file changed on disk since it was loaded (%s); load it again", f->path, what);
    return 0;
}

void gguf_close(gguf_file *f)
{
    if (!f)
        return;
    gguf_impl *g = (gguf_impl *)f;
    if (f->mapped)
        free((void *)f->map);
    free(f->kv);
    free(f->tensors);
    free(f->path);
    free(g->raw_path);
    free(g->kv_slots);
    free(g->t_slots);
    free(g);
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key)
{
    if (!f || !key)
        return NULL;
    const gguf_impl *g = (const gguf_impl *)f;
    size_t i = table_find(g->kv_slots, g->kv_cap, key, strlen(key), kv_name, f->kv);
    return i == SIZE_MAX ? NULL : &f->kv[i];
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    if (!f || !name)
        return NULL;
    const gguf_impl *g = (const gguf_impl *)f;
    size_t i = table_find(g->t_slots, g->t_cap, name, strlen(name), tensor_name, f->tensors);
    return i == SIZE_MAX ? NULL : &f->tensors[i];
}

/* Escapes an untrusted string for a one-line message: printable ASCII stays,
 * every other byte (and the backslash) becomes \xNN, and more than ESC_MAX
 * bytes are cut with "...", so no control byte ever reaches a terminal.
 * buf needs 4 * ESC_MAX + 4 bytes. */
const char *gguf_esc(char *buf, const char *s, uint64_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    uint64_t n = len > ESC_MAX ? ESC_MAX : len;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            buf[o++] = (char)c;
        } else {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[c >> 4];
            buf[o++] = hex[c & 15];
        }
    }
    if (len > n) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}
