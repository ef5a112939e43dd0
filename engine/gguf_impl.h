/* gguf_impl: what the two halves of the reader share (gguf.c: the parser
 * and open; gguf_get.c: the typed getters). Private to engine/gguf*.c. */
#ifndef XF_GGUF_IMPL_H
#define XF_GGUF_IMPL_H

#include <stdint.h>
#include <string.h>

#include "gguf.h"

#define ESC_MAX 64 /* bytes of an untrusted string shown in a message */
#define ESC_BUF (4 * ESC_MAX + 4)

/* little-endian loads from validated bytes */
static inline uint32_t ld_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t ld_u64(const uint8_t *p)
{
    return (uint64_t)ld_u32(p) | (uint64_t)ld_u32(p + 4) << 32;
}

static inline uint16_t ld_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static inline float ld_f32(const uint8_t *p)
{
    uint32_t u = ld_u32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline double ld_f64(const uint8_t *p)
{
    uint64_t u = ld_u64(p);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

/* Bytes of one scalar of a value type; 0 for string, array and unknown. */
static inline int vtype_size(int t)
{
    switch (t) {
    case GGUF_VT_UINT8: case GGUF_VT_INT8: case GGUF_VT_BOOL: return 1;
    case GGUF_VT_UINT16: case GGUF_VT_INT16: return 2;
    case GGUF_VT_UINT32: case GGUF_VT_INT32: case GGUF_VT_FLOAT32: return 4;
    case GGUF_VT_UINT64: case GGUF_VT_INT64: case GGUF_VT_FLOAT64: return 8;
    default: return 0;
    }
}

/* Escapes an untrusted string for a one-line message: printable ASCII stays,
 * every other byte (and the backslash) becomes \xNN, and more than ESC_MAX
 * bytes are cut with "...", so no control byte ever reaches a terminal.
 * buf needs ESC_BUF bytes. */
const char *gguf_esc(char *buf, const char *s, uint64_t len);

#endif
