/* view: owns name -> tensor resolution, for the commands and Lua alike. A
 * name is resolved ONCE into a repl_view: an activation (or alias) of this
 * pass, NAME@ref (the loaded dump), NAME@cpu (the cpu ref shadow on the same
 * tokens) or a GGUF weight (dequantized), with its shape, its op and the
 * label of what produced it ("cpu:opt", "ref F32", "weight Q4_K"). */
#ifndef XF_VIEW_H
#define XF_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct xf_repl xf_repl;

typedef struct repl_view {
    char name[160];   /* canonical, escaped for the terminal */
    char what[64];    /* "cpu:opt", "ref F32", "weight Q4_K" */
    int ndim;
    int64_t shape[4];
    int64_t numel;
    float *data;      /* [numel], malloc'd; NULL for an in-place activation (VIEW_IN_PLACE) */
    int op;           /* program op of an activation of this pass, else -1 */
    bool per_pass;    /* stale once the next pass starts (activations, NAME@cpu) */
    int owed;         /* exec_tensor_owed when resolved: reading computes what the pass left owed */
} repl_view;

enum {
    /* An activation computed in this pass is not copied: data stays NULL and
     * the caller reads it where it lives (exec_tensor_gather, exec_tensor_stats
     * with v->op), so that only the values shown cross from the GPU. Other
     * kinds are host copies whatever the flag. */
    VIEW_IN_PLACE = 1 << 0,
};

/* Resolves spec (flags: VIEW_*); -1 with the reason in err (v freed). */
int view_resolve(xf_repl *r, const char *spec, unsigned flags, repl_view *v, xf_err *err);
/* view_resolve with a host copy of every kind (the form Lua takes). */
int repl_view_load(xf_repl *r, const char *spec, repl_view *v, xf_err *err);
void repl_view_free(repl_view *v);
/* The elements at flat indices idx[0..n) of v, wherever it lives (in place
 * on the device, or the host copy). 0 ok, -1 with err. */
int view_gather(xf_repl *r, const repl_view *v, const int64_t *idx, int64_t n, float *dst, xf_err *err);
/* A hint for a name that resolves to nothing, into buf ("" if none): the
 * nearest tensor or weight name (a typo), or the layers the model has
 * (blk.7.out on a 6-layer model). */
void view_suggest(xf_repl *r, const char *name, char *buf, size_t size);
/* view_resolve with the error said to the user: 0 ok, 1 failed. */
int view_load_or_say(xf_repl *r, const char *spec, unsigned flags, repl_view *v);

#endif
