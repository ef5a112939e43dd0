/* refdump: reference dumps of named tensors in the safetensors format
 * (a u64 little-endian header length N, N bytes of JSON, then the data).
 * The header is parsed by jansson (duplicate keys refused); this module owns
 * the validation of every dtype, shape and data offset against the file, the
 * conversion of stored elements to f32/i32, and a writer whose files are
 * byte-identical to those of the Python safetensors library (so numpy/torch
 * read them without xfdb). A file is read whole into memory at open (never
 * mmapped: a file truncated later cannot fault); a hostile file yields an
 * error "FILE: FIELD at byte OFFSET: what is wrong" that quotes no bytes of
 * the file except names, escaped, and never a read out of bounds.
 * Assumes a little-endian host, as the format does. */
#ifndef XF_REFDUMP_H
#define XF_REFDUMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Element types, named in files as refdump_dtype_name() spells them. */
typedef enum refdump_dtype {
    REFDUMP_F32,
    REFDUMP_F16,
    REFDUMP_BF16,
    REFDUMP_F64,
    REFDUMP_I32,
    REFDUMP_I64,
    REFDUMP_I16,
    REFDUMP_I8,
    REFDUMP_U8,
    REFDUMP_U16,
    REFDUMP_U32,
    REFDUMP_U64,
    REFDUMP_BOOL,
    REFDUMP_F8_E4M3,
    REFDUMP_F8_E5M2,
    REFDUMP_DTYPE_COUNT
} refdump_dtype;

#define REFDUMP_MAX_DIMS 8
/* Headers larger than this are refused before anything is allocated. */
#define REFDUMP_MAX_HEADER 100000000u

typedef struct refdump_tensor {
    char *name;                      /* NUL-terminated, valid UTF-8, owned by the refdump */
    int dtype;                       /* refdump_dtype */
    int ndim;                        /* 0 (a scalar) .. REFDUMP_MAX_DIMS */
    int64_t shape[REFDUMP_MAX_DIMS]; /* row-major, outermost first; unused dims are 0 */
    const void *data;     /* into the file; NOT necessarily aligned: memcpy, or use refdump_read_* */
    uint64_t nbytes;      /* numel * element size, validated against the file */
    uint64_t file_offset; /* file offset of the first data byte */
} refdump_tensor;

/* An opened file (a private copy) or caller memory. */
typedef struct refdump refdump;

/* "F32", "I64", ...; "?" for an unknown id. */
const char *refdump_dtype_name(int dtype);
/* Bytes per element, 0 for an unknown id. */
size_t refdump_dtype_size(int dtype);
/* The dtype named NAME, or -1. */
int refdump_dtype_from_name(const char *name);

/* Opens (regular files only: a FIFO is refused, not waited on), reads the
 * file and validates the whole header. */
refdump *refdump_open(const char *path, xf_err *err);
/* The same over caller memory (fuzzing, tests); buf must outlive the refdump.
 * NAME stands for the file in error messages. */
refdump *refdump_open_mem(const void *buf, size_t size, const char *name, xf_err *err);
void refdump_close(refdump *r);

/* The path (or NAME) the refdump was opened with. */
const char *refdump_path(const refdump *r);
size_t refdump_count(const refdump *r);
/* Tensors in file order of their data offsets (ties by name); NULL past the end. */
const refdump_tensor *refdump_at(const refdump *r, size_t i);
/* Exact byte-wise match; NULL if absent. */
const refdump_tensor *refdump_find(const refdump *r, const char *name);
/* Product of the dims (1 for a scalar); never overflows for a tensor of an open refdump. */
int64_t refdump_numel(const refdump_tensor *t);

/* Both readers fail with "FILE: the file changed on disk since it was loaded"
 * when the path no longer names the file (device, inode, size, mtime) that
 * refdump_open read.
 * Converts any float, integer or bool dtype to f32 into dst (numel floats).
 * t must come from r. I64/U64/I32 values beyond 2^24 round, as a cast does. */
int refdump_read_f32(const refdump *r, const refdump_tensor *t, float *dst, xf_err *err);
/* Integer and bool dtypes into dst (numel values); values outside int32 are
 * an error naming the file offset of the element. Float dtypes are refused. */
int refdump_read_i32(const refdump *r, const refdump_tensor *t, int32_t *dst, xf_err *err);
/* The "__metadata__" value of KEY, or NULL; the NUL-terminated copy is owned by r. */
const char *refdump_meta(const refdump *r, const char *key);

/* Writer. Tensors are laid out as the Python safetensors library does:
 * by element size (largest first, exactly its dtype order) then by name,
 * the JSON in data order, the header padded with spaces to a multiple of 8
 * so the data starts aligned. For a dump of one dtype that is name order. */
typedef struct refdump_writer refdump_writer;

refdump_writer *refdump_writer_new(void); /* NULL when out of memory */
/* Copies name, shape and data (numel * element size bytes; data may be NULL
 * only when that is 0). Rejects duplicate, empty and non-UTF-8 names, the name
 * "__metadata__", unknown dtypes, ndim outside 0..8 and negative dims. */
int refdump_writer_add(refdump_writer *w, const char *name, int dtype, int ndim, const int64_t *shape,
                       const void *data, xf_err *err);
/* Sets (or replaces) a "__metadata__" entry; key and value must be UTF-8. */
int refdump_writer_meta(refdump_writer *w, const char *key, const char *value, xf_err *err);
/* Through base/xfile's atomic writer: a temporary PATH.XXXXXX.tmp
 * (mkostemps: O_EXCL, never through a symlink), fsynced and renamed over
 * PATH, keeping PATH's mode (a new file: 0666 less the umask): a reader
 * never sees a truncated file, and a failure (a full disk included) leaves
 * PATH as it was and no temporary. A PATH that exists and is not a regular
 * file (a device, a FIFO, a symlink, a directory) or is read-only is
 * refused. */
int refdump_writer_save(refdump_writer *w, const char *path, xf_err *err);
/* The same bytes into a malloc'd buffer (tests that corrupt files). */
int refdump_writer_to_mem(refdump_writer *w, uint8_t **buf, size_t *size, xf_err *err);
void refdump_writer_free(refdump_writer *w);

#endif
