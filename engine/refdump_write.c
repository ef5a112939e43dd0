/* refdump_write: the writer of safetensors dumps, byte-identical to the
 * Python safetensors library's files; the file is replaced atomically
 * through base/xfile (see refdump.h). */
#include "refdump_impl.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "xfile.h"

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
    rd_show(nm, name, len, NAME_SHOW_MAX);
    if (len == 0)
        return xf_err_set(err, "refdump writer: tensor \"\": empty name");
    if (!rd_utf8_valid(name, len))
        return xf_err_set(err, "refdump writer: tensor \"%s\": the name is not valid UTF-8", nm);
    if (strcmp(name, "__metadata__") == 0)
        return xf_err_set(err, "refdump writer: tensor \"%s\": the name is reserved", nm);
    if (!rd_dtype_ok(dtype))
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
    if (numel > (uint64_t)INT64_MAX || !xf_mul_u64(numel, rd_dtypes[dtype].size, &nbytes) || nbytes > SIZE_MAX)
        return xf_err_set(err, "refdump writer: tensor \"%s\": the size in bytes overflows", nm);
    if (nbytes && !data)
        return xf_err_set(err, "refdump writer: tensor \"%s\": no data", nm);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return xf_err_set(err, "refdump writer: tensor \"%s\": duplicate name", nm);
    if (rd_grow((void **)&w->t, &w->cap, w->n, sizeof *w->t))
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
    rd_show(k, key, strlen(key), NAME_SHOW_MAX);
    if (!rd_utf8_valid(key, strlen(key)) || !rd_utf8_valid(value, strlen(value)))
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
    if (!kc || rd_grow((void **)&w->m, &w->capm, w->nm, sizeof *w->m)) {
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
    int rx = rd_dtypes[x->dtype].py_rank, ry = rd_dtypes[y->dtype].py_rank;
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
    return json_pack("{s:s, s:o, s:[I, I]}", "dtype", rd_dtypes[t->dtype].name, "shape", shape, "data_offsets",
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


/* Through xfile's atomic writer: a temporary beside PATH (mkostemps: O_EXCL,
 * never through a symlink), fsynced and renamed over PATH with PATH's mode,
 * so a reader never sees a truncated file and a failure (a full disk
 * included) leaves PATH as it was and no temporary. A target that is a
 * device, a FIFO, a directory, a symlink or read-only is refused before
 * anything is created. */
int refdump_writer_save(refdump_writer *w, const char *path, xf_err *err)
{
    if (!w || !path)
        return xf_err_set(err, "refdump writer: no writer or no path");
    char shown[SHOW_BUF(PATH_SHOW_MAX)];
    rd_show(shown, path, strlen(path), PATH_SHOW_MAX);
    xf_atomic a;
    if (xf_atomic_open(path, &a, err) != 0) {
        rd_err_path(err, path, shown);
        return -1;
    }
    uint8_t *hdr = NULL;
    size_t hlen = 0;
    wr_tensor **order = NULL;
    uint64_t total;
    int rc = wr_header(w, &hdr, &hlen, &order, &total, err);
    if (rc == 0)
        rc = xf_atomic_write(&a, hdr, hlen, err);
    /* each tensor's nbytes fits a size_t: refdump_writer_add checked it */
    for (size_t i = 0; rc == 0 && i < w->n; i++)
        if (order[i]->nbytes)
            rc = xf_atomic_write(&a, order[i]->data, (size_t)order[i]->nbytes, err);
    if (rc == 0)
        rc = xf_atomic_commit(&a, err); /* removes the temporary on failure */
    else
        xf_atomic_abort(&a);
    if (rc != 0)
        rd_err_path(err, path, shown);
    free(hdr);
    free(order);
    return rc;
}
