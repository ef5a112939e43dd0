/* shape: owns printing a selection by its shape, as numpy does: a vector
 * as a line of values (wrapped at the terminal's width), a matrix as
 * aligned rows with head ... tail elision of rows and columns, a 3-D (or
 * 4-D) selection as one such matrix per leading index. The numbers come
 * from print.c (pr_cell); the values from view_gather, only those shown. */
#ifndef XF_SHAPE_H
#define XF_SHAPE_H

#include <stdint.h>

#include "err.h"
#include "tensor.h"

typedef struct xf_repl xf_repl;
typedef struct repl_view repl_view;

/* At most this many values for a person: past it, `--raw` or `dump`. */
#define SHAPE_MAX_SHOWN 2000

/* Prints the values of sel (of v) by shape. all: the whole selection's
 * values in selection order when the caller has them, else NULL (then only
 * the values shown are gathered). n: the -n budget (at most n values; a
 * matrix's rows are what n leaves after the columns the width shows), or -1
 * for the default (8 values of a vector; a screenful of a matrix). 0 ok, -1
 * with err. */
int shape_print(xf_repl *r, const repl_view *v, const xf_selection *sel, const float *all, long n, xf_err *err);

/* The values of the whole selection, in selection order (malloc'd into *out). */
int shape_gather_all(xf_repl *r, const repl_view *v, const xf_selection *sel, float **out, xf_err *err);

#endif
