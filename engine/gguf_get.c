/* gguf_get: the typed getters of GGUF metadata (see gguf.h). Every value
 * was validated by gguf_open; a getter checks only the type and the range of
 * what is asked for, and names the file, the key and its byte offset. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "gguf_impl.h"

__attribute__((format(printf, 4, 5))) static int kv_err(const gguf_file *f, const gguf_kv *kv, xf_err *err,
                                                        const char *fmt, ...)
{
    char e[ESC_BUF], what[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return xf_err_set(err, "%s: kv[%td] '%s' at byte %" PRIu64 ": %s", f->path, kv - f->kv,
                      gguf_esc(e, kv->key.ptr, kv->key.len), kv->offset, what);
}

static const gguf_kv *get_kv(const gguf_file *f, const char *key, xf_err *err)
{
    if (!f || !key) {
        xf_err_set(err, "gguf: no file or no key");
        return NULL;
    }
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) {
        char e[ESC_BUF];
        xf_err_set(err, "%s: key '%s': not found", f->path, gguf_esc(e, key, strlen(key)));
    }
    return kv;
}

static bool vtype_is_int(int t)
{
    switch (t) {
    case GGUF_VT_UINT8: case GGUF_VT_INT8: case GGUF_VT_UINT16: case GGUF_VT_INT16:
    case GGUF_VT_UINT32: case GGUF_VT_INT32: case GGUF_VT_UINT64: case GGUF_VT_INT64:
        return true;
    default:
        return false;
    }
}

/* An integer value of any GGUF integer type: when neg, the value is s (< 0);
 * otherwise it is u, so that no width or sign is lost before a range check. */
typedef struct ival {
    bool neg;
    int64_t s;
    uint64_t u;
} ival;

static ival ld_int(int t, const uint8_t *p)
{
    ival v = {false, 0, 0};
    int64_t s = 0;
    switch (t) {
    case GGUF_VT_UINT8: v.u = p[0]; return v;
    case GGUF_VT_UINT16: v.u = ld_u16(p); return v;
    case GGUF_VT_UINT32: v.u = ld_u32(p); return v;
    case GGUF_VT_UINT64: v.u = ld_u64(p); return v;
    case GGUF_VT_INT8: s = (int8_t)p[0]; break;
    case GGUF_VT_INT16: s = (int16_t)ld_u16(p); break;
    case GGUF_VT_INT32: s = (int32_t)ld_u32(p); break;
    case GGUF_VT_INT64: {
        uint64_t u = ld_u64(p);
        s = u > (uint64_t)INT64_MAX ? -(int64_t)(~u) - 1 : (int64_t)u;
        break;
    }
    default: break;
    }
    v.neg = s < 0;
    v.s = s;
    v.u = s < 0 ? 0 : (uint64_t)s;
    return v;
}

static void ival_str(ival v, char *buf, size_t n)
{
    if (v.neg)
        snprintf(buf, n, "%" PRId64, v.s);
    else
        snprintf(buf, n, "%" PRIu64, v.u);
}

static int get_int(const gguf_file *f, const char *key, const char *want, bool is_signed, uint64_t umax, int64_t smin,
                   ival *out, xf_err *err)
{
    const gguf_kv *kv = get_kv(f, key, err);
    if (!kv)
        return -1;
    if (!vtype_is_int(kv->type))
        return kv_err(f, kv, err, "expected an integer (%s), got %s", want, gguf_vtype_name(kv->type));
    ival v = ld_int(kv->type, kv->data);
    if ((v.neg && (!is_signed || v.s < smin)) || (!v.neg && v.u > umax)) {
        char b[32];
        ival_str(v, b, sizeof b);
        return kv_err(f, kv, err, "value %s (%s) does not fit %s", b, gguf_vtype_name(kv->type), want);
    }
    *out = v;
    return 0;
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, xf_err *err)
{
    ival v = {false, 0, 0};
    if (get_int(f, key, "uint32", false, UINT32_MAX, 0, &v, err))
        return -1;
    *out = (uint32_t)v.u;
    return 0;
}

int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, xf_err *err)
{
    ival v = {false, 0, 0};
    if (get_int(f, key, "uint64", false, UINT64_MAX, 0, &v, err))
        return -1;
    *out = v.u;
    return 0;
}

int gguf_get_i32(const gguf_file *f, const char *key, int32_t *out, xf_err *err)
{
    ival v = {false, 0, 0};
    if (get_int(f, key, "int32", true, INT32_MAX, INT32_MIN, &v, err))
        return -1;
    *out = v.neg ? (int32_t)v.s : (int32_t)v.u;
    return 0;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out, xf_err *err)
{
    const gguf_kv *kv = get_kv(f, key, err);
    if (!kv)
        return -1;
    if (kv->type == GGUF_VT_FLOAT32)
        *out = ld_f32(kv->data);
    else if (kv->type == GGUF_VT_FLOAT64)
        *out = (float)ld_f64(kv->data);
    else
        return kv_err(f, kv, err, "expected float32 or float64, got %s", gguf_vtype_name(kv->type));
    return 0;
}

int gguf_get_bool(const gguf_file *f, const char *key, bool *out, xf_err *err)
{
    const gguf_kv *kv = get_kv(f, key, err);
    if (!kv)
        return -1;
    if (kv->type != GGUF_VT_BOOL)
        return kv_err(f, kv, err, "expected bool, got %s", gguf_vtype_name(kv->type));
    *out = kv->data[0] != 0;
    return 0;
}

int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, xf_err *err)
{
    const gguf_kv *kv = get_kv(f, key, err);
    if (!kv)
        return -1;
    if (kv->type != GGUF_VT_STRING)
        return kv_err(f, kv, err, "expected string, got %s", gguf_vtype_name(kv->type));
    out->len = ld_u64(kv->data);
    out->ptr = (const char *)kv->data + 8;
    return 0;
}

static const char *arr_type_name(const gguf_kv *kv, char *buf, size_t n)
{
    if (kv->type == GGUF_VT_ARRAY)
        snprintf(buf, n, "array of %s", gguf_vtype_name(kv->arr_type));
    else
        snprintf(buf, n, "%s", gguf_vtype_name(kv->type));
    return buf;
}

int gguf_get_arr_str(const gguf_file *f, const char *key, gguf_str **out, uint64_t *n, xf_err *err)
{
    const gguf_kv *kv = get_kv(f, key, err);
    if (!kv)
        return -1;
    char tn[40];
    if (kv->type != GGUF_VT_ARRAY || kv->arr_type != GGUF_VT_STRING)
        return kv_err(f, kv, err, "expected array of string, got %s", arr_type_name(kv, tn, sizeof tn));
    /* validated at open: arr_n strings lie within the map, arr_n <= size / 8 */
    gguf_str *s = malloc((size_t)(kv->arr_n ? kv->arr_n : 1) * sizeof *s);
    if (!s)
        return kv_err(f, kv, err, "out of memory for %" PRIu64 " strings", kv->arr_n);
    const uint8_t *q = kv->data;
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        s[i].len = ld_u64(q);
        s[i].ptr = (const char *)q + 8;
        q += 8 + s[i].len;
    }
    *out = s;
    *n = kv->arr_n;
    return 0;
}

int gguf_get_arr_i32(const gguf_file *f, const char *key, int32_t **out, uint64_t *n, xf_err *err)
{
    const gguf_kv *kv = get_kv(f, key, err);
    if (!kv)
        return -1;
    char tn[40];
    if (kv->type != GGUF_VT_ARRAY || !vtype_is_int(kv->arr_type))
        return kv_err(f, kv, err, "expected array of integers, got %s", arr_type_name(kv, tn, sizeof tn));
    int32_t *a = malloc((size_t)(kv->arr_n ? kv->arr_n : 1) * sizeof *a);
    if (!a)
        return kv_err(f, kv, err, "out of memory for %" PRIu64 " integers", kv->arr_n);
    int es = vtype_size(kv->arr_type);
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        ival v = ld_int(kv->arr_type, kv->data + i * (uint64_t)es);
        if ((v.neg && v.s < INT32_MIN) || (!v.neg && v.u > INT32_MAX)) {
            char b[32];
            ival_str(v, b, sizeof b);
            free(a);
            return kv_err(f, kv, err, "element %" PRIu64 " = %s does not fit int32", i, b);
        }
        a[i] = v.neg ? (int32_t)v.s : (int32_t)v.u;
    }
    *out = a;
    *n = kv->arr_n;
    return 0;
}

int gguf_get_arr_f32(const gguf_file *f, const char *key, float **out, uint64_t *n, xf_err *err)
{
    const gguf_kv *kv = get_kv(f, key, err);
    if (!kv)
        return -1;
    char tn[40];
    int et = kv->arr_type;
    if (kv->type != GGUF_VT_ARRAY || !(et == GGUF_VT_FLOAT32 || et == GGUF_VT_FLOAT64 || vtype_is_int(et)))
        return kv_err(f, kv, err, "expected array of numbers, got %s", arr_type_name(kv, tn, sizeof tn));
    float *a = malloc((size_t)(kv->arr_n ? kv->arr_n : 1) * sizeof *a);
    if (!a)
        return kv_err(f, kv, err, "out of memory for %" PRIu64 " numbers", kv->arr_n);
    int es = vtype_size(et);
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        const uint8_t *q = kv->data + i * (uint64_t)es;
        if (et == GGUF_VT_FLOAT32) {
            a[i] = ld_f32(q);
        } else if (et == GGUF_VT_FLOAT64) {
            a[i] = (float)ld_f64(q);
        } else {
            ival v = ld_int(et, q);
            a[i] = v.neg ? (float)v.s : (float)v.u;
        }
    }
    *out = a;
    *n = kv->arr_n;
    return 0;
}
