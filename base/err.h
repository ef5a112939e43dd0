/* err: the error text every engine call fills in, and checked size arithmetic.
 * The engine never prints or exits; a failing call returns -1 (or NULL) and
 * leaves one line in an xf_err that only repl/ shows to the user. */
#ifndef XF_ERR_H
#define XF_ERR_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

typedef struct xf_err {
    char msg[512];
} xf_err;

/* printf-style; always returns -1 so callers can `return xf_err_set(...)`.
 * A NULL err is allowed (the message is dropped). */
int xf_err_set(xf_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Checked arithmetic for every size or offset that comes from a file. */
static inline bool xf_add_u64(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_add_overflow(a, b, r); }
static inline bool xf_mul_u64(uint64_t a, uint64_t b, uint64_t *r) { return !__builtin_mul_overflow(a, b, r); }
static inline bool xf_mul_size(size_t a, size_t b, size_t *r) { return !__builtin_mul_overflow(a, b, r); }
static inline bool xf_add_size(size_t a, size_t b, size_t *r) { return !__builtin_add_overflow(a, b, r); }

#endif
