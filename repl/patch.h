/* patch: owns writing into the forward pass from the REPL and Lua (issue
 * 18): `set`, `ablate`, `patch` (patch.c) and the pass history commands
 * `keep`, `passes` and NAME@pass-K (passes.c). The engine does the writing
 * (exec_tensor_write); here targets and values are resolved, the
 * intervention is noted on the pass as typed, and the result is said. */
#ifndef XF_PATCH_H
#define XF_PATCH_H

#include <stdint.h>

#include "err.h"

typedef struct xf_repl xf_repl;

/* Writes into target ("NAME" or "NAME[SLICE]", an activation of this
 * pass): the values of rhs (a number, or NAME2[SLICE] / NAME@ref /
 * NAME@cpu / NAME@pass-K) or, with rhs NULL, vals[nv] (nv 1: everywhere).
 * note: the intervention's text (NULL: "set TARGET = RHS"). *n_out: the
 * elements written. 0 ok, -1 with err. */
int patch_set(xf_repl *r, const char *target, const char *rhs, const float *vals, int64_t nv, const char *note,
              int64_t *n_out, xf_err *err);
/* `ablate blk.L.head H` (head < 0: `ablate blk.L.ffn`): the target it
 * zeroes into buf ("blk.L.kqv[:, a:b]"), then patch_set. */
int patch_ablate(xf_repl *r, const char *what, long head, char *target, size_t size, int64_t *n_out, xf_err *err);

int cmd_set(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_ablate(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_patch(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_keep(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_passes(xf_repl *r, int argc, char **argv, const char *rest);

/* NAME@pass-K for view.c: the tensor NAME of the pass K passes before this
 * one, copied into *data (malloc'd) with its shape. 0 ok, -1 with err. */
int passes_view(xf_repl *r, const char *base, const char *suffix, int *ndim, int64_t *shape, int64_t *numel,
                float **data, char *name, size_t name_size, xf_err *err);
/* the interventions of this pass as a JSON list of strings (malloc'd;
 * NULL when there are none): dump's "xfdb.interventions" metadata */
char *passes_iv_json(xf_repl *r);
/* "the pass was written into" lines for `where`, the marker of the prompt */
void passes_where(xf_repl *r);

#endif
