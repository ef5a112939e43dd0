/* gguf_writer: the GGUF writer of tests and fixture makers (see
 * gguf_writer.h). Values are encoded as the reader expects them; tensor
 * data is padded to the alignment. */
#include "gguf_writer.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "xfile.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_NAME_MAX 256 /* as the reader: ggml allows 64 */

static bool is_pow2(uint64_t x) { return x && !(x & (x - 1)); }

static uint32_t ld_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t ld_u64(const uint8_t *p) { return (uint64_t)ld_u32(p) | (uint64_t)ld_u32(p + 4) << 32; }

/* Bytes of one scalar of a value type; 0 for string, array and unknown. */
static int vtype_size(int t)
{
    switch (t) {
    case GGUF_VT_UINT8: case GGUF_VT_INT8: case GGUF_VT_BOOL: return 1;
    case GGUF_VT_UINT16: case GGUF_VT_INT16: return 2;
    case GGUF_VT_UINT32: case GGUF_VT_INT32: case GGUF_VT_FLOAT32: return 4;
    case GGUF_VT_UINT64: case GGUF_VT_INT64: case GGUF_VT_FLOAT64: return 8;
    default: return 0;
    }
}

/* ------------------------------------------------------------------ */
/* writer */

typedef struct wbuf {
    uint8_t *p;
    size_t n, cap;
    bool oom;
} wbuf;

static void wb_put(wbuf *b, const void *src, size_t n)
{
    if (b->oom)
        return;
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 256;
        while (n > cap - b->n) {
            if (cap > SIZE_MAX / 2) {
                b->oom = true;
                return;
            }
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void wb_u32(wbuf *b, uint32_t v)
{
    uint8_t q[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    wb_put(b, q, 4);
}

static void wb_u64(wbuf *b, uint64_t v)
{
    wb_u32(b, (uint32_t)v);
    wb_u32(b, (uint32_t)(v >> 32));
}

static void wb_str(wbuf *b, const char *s, size_t n)
{
    wb_u64(b, n);
    wb_put(b, s, n);
}

static void wb_f32(wbuf *b, float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    wb_u32(b, u);
}

static void wb_zeros(wbuf *b, size_t n)
{
    static const uint8_t z[64];
    while (n) {
        size_t k = n < sizeof z ? n : sizeof z;
        wb_put(b, z, k);
        n -= k;
    }
}

typedef struct wkv {
    char *key;
    size_t key_len;
    uint8_t *val; /* u32 value type + the encoded value, as in the file */
    size_t val_len;
} wkv;

typedef struct wtensor {
    char *name;
    size_t name_len;
    int type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint8_t *data; /* [size] bytes */
    uint64_t size;
} wtensor;

struct gguf_writer {
    uint32_t version;
    uint64_t alignment;
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
};

void gguf_writer_free(gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->kv);
    free(w->t);
    free(w);
}

/* Takes ownership of the value in b (freed on failure too). A key set
 * again keeps its position and gets the new value, as ggml's gguf_set_*. */
static int w_set(gguf_writer *w, const char *key, size_t key_len, wbuf *b)
{
    if (!w || !key || key_len == 0 || memchr(key, '\0', key_len) || b->oom) {
        free(b->p);
        return -1;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (w->kv[i].key_len == key_len && memcmp(w->kv[i].key, key, key_len) == 0) {
            free(w->kv[i].val);
            w->kv[i].val = b->p;
            w->kv[i].val_len = b->n;
            return 0;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        wkv *kv = realloc(w->kv, cap * sizeof *kv);
        if (!kv) {
            free(b->p);
            return -1;
        }
        w->kv = kv;
        w->cap_kv = cap;
    }
    char *k = malloc(key_len + 1);
    if (!k) {
        free(b->p);
        return -1;
    }
    memcpy(k, key, key_len);
    k[key_len] = '\0';
    w->kv[w->n_kv++] = (wkv){k, key_len, b->p, b->n};
    return 0;
}

static int w_set_c(gguf_writer *w, const char *key, wbuf *b)
{
    return w_set(w, key, key ? strlen(key) : 0, b);
}

gguf_writer *gguf_writer_new(uint32_t version, uint64_t alignment)
{
    if ((version != 2 && version != 3) || !is_pow2(alignment) || alignment > UINT32_MAX)
        return NULL;
    gguf_writer *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->version = version;
    w->alignment = alignment;
    /* a reader only learns a non-default alignment from this key */
    if (alignment != GGUF_DEFAULT_ALIGNMENT && gguf_writer_set_u32(w, "general.alignment", (uint32_t)alignment)) {
        gguf_writer_free(w);
        return NULL;
    }
    return w;
}

int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v)
{
    wbuf b = {0};
    wb_u32(&b, GGUF_VT_UINT32);
    wb_u32(&b, v);
    return w_set_c(w, key, &b);
}

int gguf_writer_set_f32(gguf_writer *w, const char *key, float v)
{
    wbuf b = {0};
    wb_u32(&b, GGUF_VT_FLOAT32);
    wb_f32(&b, v);
    return w_set_c(w, key, &b);
}

int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v)
{
    wbuf b = {0};
    uint8_t c = v ? 1 : 0;
    wb_u32(&b, GGUF_VT_BOOL);
    wb_put(&b, &c, 1);
    return w_set_c(w, key, &b);
}

int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v)
{
    if (!v)
        return -1;
    wbuf b = {0};
    wb_u32(&b, GGUF_VT_STRING);
    wb_str(&b, v, strlen(v));
    return w_set_c(w, key, &b);
}

int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *v, uint64_t n)
{
    if (n && !v)
        return -1;
    wbuf b = {0};
    wb_u32(&b, GGUF_VT_ARRAY);
    wb_u32(&b, GGUF_VT_STRING);
    wb_u64(&b, n);
    for (uint64_t i = 0; i < n; i++) {
        if (!v[i]) {
            free(b.p);
            return -1;
        }
        wb_str(&b, v[i], strlen(v[i]));
    }
    return w_set_c(w, key, &b);
}

int gguf_writer_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n)
{
    if (n && !v)
        return -1;
    wbuf b = {0};
    wb_u32(&b, GGUF_VT_ARRAY);
    wb_u32(&b, GGUF_VT_INT32);
    wb_u64(&b, n);
    for (uint64_t i = 0; i < n; i++)
        wb_u32(&b, (uint32_t)v[i]);
    return w_set_c(w, key, &b);
}

int gguf_writer_set_arr_f32(gguf_writer *w, const char *key, const float *v, uint64_t n)
{
    if (n && !v)
        return -1;
    wbuf b = {0};
    wb_u32(&b, GGUF_VT_ARRAY);
    wb_u32(&b, GGUF_VT_FLOAT32);
    wb_u64(&b, n);
    for (uint64_t i = 0; i < n; i++)
        wb_f32(&b, v[i]);
    return w_set_c(w, key, &b);
}

/* Encoded bytes of a value that gguf_open validated: p points at the value
 * of type t (for an array: at its element type). */
static uint64_t value_bytes(const uint8_t *p, int t)
{
    if (t == GGUF_VT_STRING)
        return 8 + ld_u64(p);
    if (t != GGUF_VT_ARRAY)
        return (uint64_t)vtype_size(t);
    int et = (int)ld_u32(p);
    uint64_t n = ld_u64(p + 4), len = 12;
    if (et != GGUF_VT_STRING)
        return len + n * (uint64_t)vtype_size(et);
    for (uint64_t i = 0; i < n; i++)
        len += 8 + ld_u64(p + len);
    return len;
}

int gguf_writer_copy_kv(gguf_writer *w, const gguf_file *src, const gguf_kv *kv)
{
    /* only a kv of src is known to be validated and to lie in its map */
    if (!w || !src || !kv || kv < src->kv || kv >= src->kv + src->n_kv)
        return -1;
    const uint8_t *v = src->map + kv->offset;
    uint64_t n = value_bytes(v, kv->type);
    wbuf b = {0};
    wb_u32(&b, (uint32_t)kv->type);
    wb_put(&b, v, (size_t)n);
    return w_set(w, kv->key.ptr, (size_t)kv->key.len, &b);
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne,
                           const void *data, uint64_t size)
{
    if (!w || !name || !ne || (!data && size) || n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return -1;
    size_t nl = strlen(name);
    if (nl == 0 || nl > GGUF_NAME_MAX)
        return -1;
    for (size_t i = 0; i < w->n_t; i++)
        if (w->t[i].name_len == nl && memcmp(w->t[i].name, name, nl) == 0)
            return -1;
    int64_t nel = 1;
    for (int d = 0; d < n_dims; d++)
        if (ne[d] <= 0 || __builtin_mul_overflow(nel, ne[d], &nel))
            return -1;
    uint64_t row, want;
    if (!quant_row_bytes(type, ne[0], &row) || !xf_mul_u64(row, (uint64_t)(nel / ne[0]), &want) || want != size ||
        size > SIZE_MAX)
        return -1;
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 16;
        wtensor *t = realloc(w->t, cap * sizeof *t);
        if (!t)
            return -1;
        w->t = t;
        w->cap_t = cap;
    }
    wtensor t = {.type = type, .n_dims = n_dims, .size = size, .name_len = nl};
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        t.ne[d] = d < n_dims ? ne[d] : 1;
    t.name = malloc(nl + 1);
    t.data = malloc(size ? (size_t)size : 1);
    if (!t.name || !t.data) {
        free(t.name);
        free(t.data);
        return -1;
    }
    memcpy(t.name, name, nl + 1);
    memcpy(t.data, data, (size_t)size);
    w->t[w->n_t++] = t;
    return 0;
}

static uint64_t pad_to(uint64_t x, uint64_t a) { return (a - x % a) % a; }

/* Everything before the data section, padded to the alignment; *total gets
 * the size of the whole file. */
static int w_header(const gguf_writer *w, wbuf *b, uint64_t *total, xf_err *err)
{
    wb_put(b, GGUF_MAGIC, 4);
    wb_u32(b, w->version);
    wb_u64(b, w->n_t);
    wb_u64(b, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        wb_str(b, w->kv[i].key, w->kv[i].key_len);
        wb_put(b, w->kv[i].val, w->kv[i].val_len);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        wb_str(b, t->name, t->name_len);
        wb_u32(b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++)
            wb_u64(b, (uint64_t)t->ne[d]);
        wb_u32(b, (uint32_t)t->type);
        wb_u64(b, off);
        if (!xf_add_u64(off, t->size + pad_to(t->size, w->alignment), &off))
            return xf_err_set(err, "gguf writer: tensor data too large");
    }
    wb_zeros(b, (size_t)pad_to(b->n, w->alignment));
    if (b->oom)
        return xf_err_set(err, "gguf writer: out of memory");
    if (!xf_add_u64(b->n, off, total) || *total > SIZE_MAX)
        return xf_err_set(err, "gguf writer: file too large");
    return 0;
}

int gguf_writer_to_mem(gguf_writer *w, uint8_t **buf, size_t *size, xf_err *err)
{
    if (!w || !buf || !size)
        return xf_err_set(err, "gguf writer: bad arguments");
    wbuf b = {0};
    uint64_t total;
    if (w_header(w, &b, &total, err)) {
        free(b.p);
        return -1;
    }
    for (size_t i = 0; i < w->n_t; i++) {
        wb_put(&b, w->t[i].data, (size_t)w->t[i].size);
        wb_zeros(&b, (size_t)pad_to(w->t[i].size, w->alignment));
    }
    if (b.oom) {
        free(b.p);
        return xf_err_set(err, "gguf writer: out of memory for %" PRIu64 " bytes", total);
    }
    *buf = b.p ? b.p : malloc(1);
    *size = b.n;
    return 0;
}

int gguf_writer_save(gguf_writer *w, const char *path, xf_err *err)
{
    if (!w || !path)
        return xf_err_set(err, "gguf writer: bad arguments");
    wbuf b = {0};
    uint64_t total;
    if (w_header(w, &b, &total, err)) {
        free(b.p);
        return -1;
    }
    /* a failure never leaves a truncated file under the real name */
    xf_atomic a;
    if (xf_atomic_open(path, &a, err) != 0) {
        free(b.p);
        return -1;
    }
    static const uint8_t zeros[256];
    int rc = xf_atomic_write(&a, b.p, b.n, err);
    for (size_t i = 0; i < w->n_t && rc == 0; i++) {
        rc = xf_atomic_write(&a, w->t[i].data, (size_t)w->t[i].size, err);
        uint64_t pad = pad_to(w->t[i].size, w->alignment);
        while (rc == 0 && pad) {
            size_t k = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
            rc = xf_atomic_write(&a, zeros, k, err);
            pad -= k;
        }
    }
    free(b.p);
    if (rc != 0) {
        xf_atomic_abort(&a);
        return -1;
    }
    return xf_atomic_commit(&a, err);
}
