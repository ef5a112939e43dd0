/* program: the forward pass of one pass (n tokens at positions pos0..) as an
 * ordered list of named ops. Every op produces exactly one tensor, whose
 * canonical name (DESIGN.md) is the op's name; op i's output is tensor i.
 * Also resolves the aliases users type (llama.cpp graph names, HF module
 * paths, short forms) to canonical names. */
#ifndef XF_PROGRAM_H
#define XF_PROGRAM_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "kernels.h"
#include "model.h"

#define XF_NAME_MAX 48

enum { XF_CACHE_NONE = 0, XF_CACHE_K = 1, XF_CACHE_V = 2 };

typedef struct xf_op {
    char name[XF_NAME_MAX];  /* canonical: "blk.3.kq_soft" */
    const char *short_name;  /* "kq_soft" (static) */
    kern_op kind;
    int layer;               /* -1 outside blocks */
    int in0, in1;            /* ops whose outputs are read; -1 none; in0 = -1 for embd (tokens) */
    const xf_weight *w, *w2, *b;
    int ndim;
    int64_t shape[4];        /* output shape, row-major */
    int64_t numel;
    kern_args args;          /* sizes and parameters; pointers are filled by exec */
    int cache;               /* XF_CACHE_*: the output is also stored in the layer's K or V cache */
} xf_op;

typedef struct xf_program {
    xf_op *ops;
    int n_ops;
    int n_tokens, pos0, n_kv;
} xf_program;

/* Builds the program of a pass of n tokens starting at pos0 (n_kv = pos0+n <= n_ctx). */
int program_build(const xf_model *m, int n_tokens, int pos0, xf_program *p, xf_err *err);
void program_free(xf_program *p);
/* Index of the op with this canonical name, or -1. */
int program_find(const xf_program *p, const char *name);

/* Canonical names of every tensor a program of this model has, in program
 * order (independent of n): for completion, globbing and `compare`. */
int program_names(const xf_model *m, char ***names, int *n, xf_err *err);
void program_names_free(char **names, int n);

/* Maps an alias to a canonical name (copied into out, XF_NAME_MAX). Returns 1 if
 * it was an alias or already canonical-looking, 0 if unknown. */
int program_resolve_alias(const char *name, char *out, size_t out_size);

/* fnmatch-style glob over a canonical name; the pattern may also be an alias glob. */
bool program_glob_match(const char *pattern, const char *canonical);

#endif
