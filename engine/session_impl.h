/* session_impl: what the three parts of the session module share
 * (session.c: escaping and comparing; session_read.c: the parser;
 * session_write.c: the recorder). Private to engine/session*.c. */
#ifndef XF_SESSION_IMPL_H
#define XF_SESSION_IMPL_H

#include <stdbool.h>
#include <stddef.h>

/* Grows *p (an array of elem-sized items, *cap of them) to hold n+1. */
int sess_grow(void **p, int *cap, int n, size_t elem);
/* Appends s (owned; freed on failure) to *arr. */
int sess_push_str(char ***arr, int *n, int *cap, char *s);
/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if invalid. */
size_t sess_utf8_seq(const unsigned char *p, size_t n);
char *sess_dup_n(const char *s, size_t n);
static inline bool sess_is_blank(char c) { return c == ' ' || c == '\t'; }
/* "# KEY: " at the start of l: the value's offset in l, or 0. */
size_t sess_header_key(const char *l, size_t n, const char *key);

#endif
