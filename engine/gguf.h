/* gguf: a bounds-checked reader for GGUF v2/v3 files (the writer of test
 * fixtures is tests/support/gguf_writer.h).
 * The file is read into memory at open (not mmapped: a file truncated on
 * disk would make a mapped access SIGBUS); every count, length and offset is checked
 * against the file size before use, so that a hostile file yields an error
 * naming the file, the field and the byte offset, never a read past the end.
 * Strings point into that copy ("the map") and are NOT NUL terminated
 * (gguf_str). */
#ifndef XF_GGUF_H
#define XF_GGUF_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "err.h"

enum gguf_vtype {
    GGUF_VT_UINT8 = 0, GGUF_VT_INT8 = 1, GGUF_VT_UINT16 = 2, GGUF_VT_INT16 = 3,
    GGUF_VT_UINT32 = 4, GGUF_VT_INT32 = 5, GGUF_VT_FLOAT32 = 6, GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8, GGUF_VT_ARRAY = 9, GGUF_VT_UINT64 = 10, GGUF_VT_INT64 = 11,
    GGUF_VT_FLOAT64 = 12, GGUF_VT_COUNT
};

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

typedef struct gguf_str {
    const char *ptr; /* into the map; not NUL terminated */
    uint64_t len;
} gguf_str;

typedef struct gguf_kv {
    gguf_str key;
    int type;             /* enum gguf_vtype */
    int arr_type;         /* element type when type == GGUF_VT_ARRAY */
    uint64_t arr_n;       /* element count when type == GGUF_VT_ARRAY */
    const uint8_t *data;  /* the value (for arrays: the first element), validated */
    uint64_t offset;      /* file offset of the value, for error messages */
} gguf_kv;

typedef struct gguf_tensor {
    gguf_str name;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ggml order: ne[0] is the innermost (row length); unused dims are 1 */
    int type;                  /* ggml type id (quant.h XF_TYPE_*) */
    uint64_t offset;           /* relative to the data section */
    uint64_t size;             /* bytes, from type and ne */
    const void *data;          /* into the map */
    uint64_t info_offset;      /* file offset of its tensor-info record */
} gguf_tensor;

typedef struct gguf_file {
    char *path;           /* as given to gguf_open (owned) */
    const uint8_t *map;
    uint64_t size;
    bool mapped;          /* true: map is our copy of the file (freed on close); false: caller memory */
    uint32_t version;
    uint64_t n_kv;
    gguf_kv *kv;
    uint64_t n_tensors;
    gguf_tensor *tensors;
    uint64_t alignment;
    uint64_t data_offset; /* file offset of the data section */
} gguf_file;

/* Opens and validates the whole header, the metadata and the tensor table.
 * Errors read "FILE: FIELD at byte OFFSET: what is wrong". */
gguf_file *gguf_open(const char *path, xf_err *err);
/* The same over caller memory (fuzzing, tests); buf must outlive the file. */
gguf_file *gguf_open_mem(const void *buf, size_t size, const char *name, xf_err *err);
void gguf_close(gguf_file *f);
/* 0 when the file at f->path is still the one read (same device, inode,
 * size and mtime; always 0 for gguf_open_mem); else -1 with "PATH: the file
 * changed on disk since it was loaded (...)". The weights in memory stay
 * valid either way (they are a copy); the engine calls this at the start of
 * each pass so that nobody debugs weights that are no longer in the file. */
int gguf_check_unchanged(const gguf_file *f, xf_err *err);

const char *gguf_vtype_name(int type);
const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);
bool gguf_str_eq(gguf_str s, const char *cstr);

/* Typed getters. Missing key or wrong type -> -1 with an error naming the
 * file, the key and the offset. Integer getters accept any integer type
 * whose value fits. */
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, xf_err *err);
int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, xf_err *err);
int gguf_get_i32(const gguf_file *f, const char *key, int32_t *out, xf_err *err);
int gguf_get_f32(const gguf_file *f, const char *key, float *out, xf_err *err); /* float32 or float64 */
int gguf_get_bool(const gguf_file *f, const char *key, bool *out, xf_err *err);
int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, xf_err *err);
/* Array of strings: *out is malloc'd (free() it), entries point into the map. */
int gguf_get_arr_str(const gguf_file *f, const char *key, gguf_str **out, uint64_t *n, xf_err *err);
/* Array of numbers converted to int32 / float32; *out is malloc'd. */
int gguf_get_arr_i32(const gguf_file *f, const char *key, int32_t **out, uint64_t *n, xf_err *err);
int gguf_get_arr_f32(const gguf_file *f, const char *key, float **out, uint64_t *n, xf_err *err);

#endif
