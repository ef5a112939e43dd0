/* complete: owns what a word of a command line completes to (commands and
 * aliases, sub-words and flags from the command table, the loaded model's
 * names, op kinds and variants). readline is main.c's; this is testable
 * without a terminal. */
#ifndef XF_COMPLETE_H
#define XF_COMPLETE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct xf_repl xf_repl;

/* Where a word to complete starts: readline's default breaks less `@`, so
 * that NAME@ is one word (its sources complete: NAME@ref, NAME@cpu). */
#define COMPLETE_WORD_BREAKS " \t\n\"\\'`$><=;|&{("

/* The candidates for `text`, the word that starts at byte `start` of line:
 * a NULL-terminated malloc'd list (free with complete_free), NULL for none.
 * *files: file names complete the word too (beside the candidates). */
char **complete_line(xf_repl *r, const char *line, size_t start, const char *text, bool *files);
void complete_free(char **v);

#endif
