/* refdump_impl: what the parts of the refdump module share (refdump.c: the
 * dtypes, text for messages, opening, lookup and the readers;
 * refdump_header.c: parsing and validating the JSON header with byte
 * offsets; refdump_write.c: the writer). Private to engine/refdump*.c. */
#ifndef XF_REFDUMP_IMPL_H
#define XF_REFDUMP_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "refdump.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "refdump reads little-endian data by memcpy: port the loads first"
#endif

/* ------------------------------------------------------------------ dtypes */

enum { KIND_FLOAT, KIND_SINT, KIND_UINT, KIND_BOOL };

typedef struct rd_dtype_info {
    const char *name;
    uint8_t size;
    uint8_t kind;
    /* the position in the Rust safetensors Dtype enum (only the order
     * matters): its writer sorts by it, largest first, then by name */
    uint8_t py_rank;
} rd_dtype_info;

extern const rd_dtype_info rd_dtypes[REFDUMP_DTYPE_COUNT];

static inline bool rd_dtype_ok(int dtype)
{
    return dtype >= 0 && dtype < REFDUMP_DTYPE_COUNT;
}

/* The dtype spelled s[0..len), or -1. */
int rd_dtype_lookup(const char *s, size_t len);

/* --------------------------------------------------- text for messages */

/* Names come from untrusted files and end up on a terminal: one line, no
 * control bytes, bounded length. */
#define NAME_SHOW_MAX 64
#define PATH_SHOW_MAX 160
#define SHOW_BUF(max) (4 * (max) + 4)

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if invalid:
 * no overlongs, no surrogates, nothing above U+10FFFF. */
size_t rd_utf8_seq(const uint8_t *s, size_t n);
bool rd_utf8_valid(const char *s, size_t n);
/* S[0..len) for a message into buf (SHOW_BUF(max) bytes): printable ASCII
 * and valid UTF-8 kept, '"', '\\' and every other byte as \xNN, cut after
 * MAX input bytes with "...". Returns buf. */
const char *rd_show(char *buf, const char *s, size_t len, size_t max);
/* "[2, 3]" */
void rd_show_shape(char *buf, size_t cap, int ndim, const int64_t *shape);
/* xfile names the path as given; a message of ours shows it as rd_show
 * does: the leading PATH of err's text becomes SHOWN. */
void rd_err_path(xf_err *err, const char *path, const char *shown);

/* Grows an array of elem-sized items to hold one more. */
int rd_grow(void **arr, size_t *cap, size_t n, size_t elem);

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

/* The header: h[0..n) is the JSON, data_size bytes follow it. Fills r->t
 * (in file order of the entries) and r->meta; refdump_header.c. */
int rd_header(refdump *r, const uint8_t *h, size_t n, uint64_t data_size, xf_err *err);

#endif
