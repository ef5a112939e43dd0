/* sha256: the SHA-256 digest (FIPS 180-4) of bytes and of files. Sessions
 * name the model they were recorded with by this hash, so that a replay
 * against other weights is refused before anything runs. */
#ifndef XF_SHA256_H
#define XF_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct xf_sha256 {
    uint32_t h[8];
    uint64_t n_bytes;  /* message length so far */
    uint8_t block[64]; /* a partial block waiting for more bytes */
    size_t n_block;
} xf_sha256;

void sha256_init(xf_sha256 *s);
void sha256_update(xf_sha256 *s, const void *data, size_t n);
/* digest[32]; s must be re-initialized before reuse */
void sha256_final(xf_sha256 *s, uint8_t digest[32]);
/* the digest of data as 64 lowercase hex digits + NUL */
void sha256_hex(const void *data, size_t n, char hex[65]);
/* the digest of a whole file as hex; -1 with "PATH: ..." in err */
int sha256_file_hex(const char *path, char hex[65], xf_err *err);

#endif
