/* utf8: strict UTF-8 (Unicode Table 3-7), one decoder step at a time, and
 * the encoder. A leaf of the bottom floor: the tokenizer, the reference
 * dumps and the REPL's escaping share it. */
#ifndef XF_UTF8_H
#define XF_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* One step of strict UTF-8 at p[0..n), n >= 1. Returns 1: a valid character
 * of *l bytes; 0: a valid but truncated prefix of *l == n bytes (more input
 * could complete it); -1: ill-formed, *l is the length of its maximal
 * subpart (the bytes one U+FFFD replaces). */
int utf8_step(const uint8_t *p, size_t n, size_t *l);
/* The code point of the valid character p[0..l) that utf8_step measured. */
uint32_t utf8_cp(const uint8_t *p, size_t l);
/* Writes cp (<= U+10FFFF, not a surrogate) to out (room for 4 bytes) and
 * returns the bytes written (1-4). */
size_t utf8_put(uint32_t cp, char *out);
/* Length of the longest prefix of s[0..len) that is valid UTF-8 made of
 * whole characters. */
size_t utf8_valid_prefix(const char *s, size_t len);

#endif
