/* args: owns what handlers share to read their arguments: numbers, "quoted
 * TEXT" with C escapes, token id lists, words joined back, and the checks
 * and piece text of the vocabulary. Errors go to the user (repl_errf). */
#ifndef XF_ARGS_H
#define XF_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct xf_repl xf_repl;

/* s is a whole decimal integer in [lo, hi] */
bool args_long(const char *s, long lo, long hi, long *out);
/* s is a whole finite number */
bool args_double(const char *s, double *out);
/* TEXT: "quoted with C escapes" or the rest of the line as typed; *out
 * malloc'd. 0 ok, 1 failed (said). */
int args_text(xf_repl *r, const char *rest, char **out, size_t *len);
/* "1,2,3" or "1 2 3" (any length); *ids malloc'd. 0 ok, 1 failed (said). */
int args_ids(xf_repl *r, const char *s, int32_t **ids, int *n);
/* argv[0..argc) joined by single blanks (and one after the last word when
 * trailing_blank), malloc'd; NULL when out of memory */
char *args_join(int argc, char **argv, bool trailing_blank);
/* 0 when the model has a vocabulary, else 1 (said) */
int args_need_vocab(xf_repl *r);
/* token id's piece, escaped for the terminal ("?" when unknown) */
void args_piece(xf_repl *r, int32_t id, char *buf, size_t size);

/* K of topk/lens: s is a count in 1..hi (*is_count, *k set), or a word that
 * is no number (*is_count false: a name). A number out of range is an
 * error (said, 1), never a tensor name. */
int args_count(xf_repl *r, const char *cmd, const char *s, long hi, long *k, bool *is_count);

/* A FILE argument as every command takes it: a word as typed, or "quoted"
 * (for names with blanks) with \" and \\ inside; unquoted in place and
 * returned. (load, ref load, dump, record, patch ... from, source.) */
char *args_path(char *word);
/* The word args_path turns back into path: as is when it has no blank,
 * quote or backslash, else "quoted" with \" and \\ (malloc'd; NULL when
 * out of memory). For lines xfdb writes itself (a recording's preamble). */
char *args_quote_path(const char *path);

#endif
