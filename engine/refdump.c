/* refdump: the dtypes, text for messages, opening a dump (read whole into
 * memory through base/xfile), lookup by name and the readers that convert
 * elements (see refdump.h; the header parser is refdump_header.c, the
 * writer refdump_write.c). */
#include "refdump_impl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quant.h"
#include "xfile.h"

/* ------------------------------------------------------------------ dtypes */

const rd_dtype_info rd_dtypes[REFDUMP_DTYPE_COUNT] = {
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

const char *refdump_dtype_name(int dtype)
{
    return rd_dtype_ok(dtype) ? rd_dtypes[dtype].name : "?";
}

size_t refdump_dtype_size(int dtype)
{
    return rd_dtype_ok(dtype) ? rd_dtypes[dtype].size : 0;
}

int rd_dtype_lookup(const char *s, size_t len)
{
    for (int i = 0; i < REFDUMP_DTYPE_COUNT; i++)
        if (strlen(rd_dtypes[i].name) == len && memcmp(rd_dtypes[i].name, s, len) == 0)
            return i;
    return -1;
}

int refdump_dtype_from_name(const char *name)
{
    return name ? rd_dtype_lookup(name, strlen(name)) : -1;
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

size_t rd_utf8_seq(const uint8_t *s, size_t n)
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

bool rd_utf8_valid(const char *s, size_t n)
{
    const uint8_t *u = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        size_t k = rd_utf8_seq(u + i, n - i);
        if (!k)
            return false;
        i += k;
    }
    return true;
}

const char *rd_show(char *buf, const char *s, size_t len, size_t max)
{
    const uint8_t *u = (const uint8_t *)s;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t k = u[i] >= 0x80 ? rd_utf8_seq(u + i, len - i) : 1;
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

void rd_show_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

void rd_err_path(xf_err *err, const char *path, const char *shown)
{
    size_t n = strlen(path);
    if (!err || strcmp(path, shown) == 0 || strncmp(err->msg, path, n) != 0 || err->msg[n] != ':')
        return;
    char rest[sizeof err->msg];
    snprintf(rest, sizeof rest, "%s", err->msg + n);
    xf_err_set(err, "%s%s", shown, rest);
}

int rd_grow(void **arr, size_t *cap, size_t n, size_t elem)
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
    rd_show(r->shown, name, strlen(name), PATH_SHOW_MAX);
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

/* The whole file into memory, not mmapped: a file truncated after `ref
 * load` would turn a later read of the mapping into SIGBUS. A reference dump
 * is small (activations of one pass). xfile refuses a FIFO, a device or a
 * directory before anything blocks on it. */
static uint8_t *rd_slurp(const char *path, const char *shown, struct stat *st, xf_err *err)
{
    int fd;
    if (xf_file_open_read(path, &fd, st, err) != 0) {
        rd_err_path(err, path, shown);
        return NULL;
    }
    uint8_t *buf = NULL;
    size_t size = (size_t)st->st_size;
    if ((uint64_t)st->st_size > SIZE_MAX / 2) {
        xf_err_set(err, "%s: cannot read: the file is too large", shown);
    } else if (!(buf = malloc(size ? size : 1))) {
        xf_err_set(err, "%s: out of memory for the %zu-byte file", shown, size);
    } else if (xf_file_pread(fd, buf, size, 0, path, err) != 0) {
        rd_err_path(err, path, shown);
        free(buf);
        buf = NULL;
    }
    close(fd);
    /* rewritten (or grown) while it was read: the copy may mix two versions */
    if (buf && xf_file_changed(path, st)) {
        xf_err_set(err, "%s: the file changed while it was read", shown);
        free(buf);
        buf = NULL;
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
    rd_show(shown, path, strlen(path), PATH_SHOW_MAX);
    struct stat st;
    uint8_t *buf = rd_slurp(path, shown, &st, err);
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
    if (r->owned && xf_file_changed(r->path, &r->st))
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
    memcpy(&x, e, rd_dtypes[dtype].size);
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
    rd_show(nm, t->name, strlen(t->name), NAME_SHOW_MAX);
    if (refdump_numel(t) && !dst)
        return xf_err_set(err, "%s: tensor \"%s\": no destination", r->shown, nm), NULL;
    return rt;
}

int refdump_read_f32(const refdump *r, const refdump_tensor *t, float *dst, xf_err *err)
{
    char nm[SHOW_BUF(NAME_SHOW_MAX)];
    if (!rd_prep(r, t, dst, nm, err))
        return -1;
    size_t n = (size_t)refdump_numel(t), es = rd_dtypes[t->dtype].size;
    const uint8_t *s = t->data;
    if (t->dtype == REFDUMP_F32) {
        memcpy(dst, s, n * 4);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t u;
        if (rd_dtypes[t->dtype].kind == KIND_FLOAT)
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
    const rd_dtype_info *d = &rd_dtypes[t->dtype];
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

