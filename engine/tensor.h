/* tensor: host-side views of activations and the numbers computed from
 * them: numpy-like slices, statistics, and the error metrics that compare a
 * tensor with a reference. Everything here works on f32 host arrays; exec
 * copies (or reduces) device data before calling it. */
#ifndef XF_TENSOR_H
#define XF_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define XF_MAX_DIMS 4

typedef struct xf_stats {
    double min, max, mean, std, absmax; /* over finite values */
    int64_t n, n_nan, n_inf;
} xf_stats;

/* max_abs, max_rel, nmse and cosine are of the pairs both finite, and NaN when
 * some pair is a non-finite mismatch (a NaN, an Inf against another value): the
 * counts say how many. tensor_diff_rel's tol is NaN when B has no finite value. */
typedef struct xf_diff {
    double max_abs;       /* max |a-b| over finite pairs */
    double max_rel;       /* max |a-b| / max(|b|, tiny) */
    double nmse;          /* sum (a-b)^2 / sum b^2 */
    double cosine;        /* a.b / (|a| |b|) */
    double ref_absmax;    /* max |b| */
    int64_t n, nan_a, nan_b, inf_a, inf_b;
    int64_t mismatch_nonfinite; /* positions where exactly one side is NaN/Inf or infinities differ */
    int64_t first_over;   /* first index with |a-b| > tol, -1 if none */
    int64_t worst;        /* index of the largest error (a NaN/Inf mismatch first), -1 if a == b */
    int64_t n_over;
    double tol;           /* absolute tolerance used for first_over */
} xf_diff;

void tensor_stats(const float *x, size_t n, xf_stats *s);
/* tol: absolute tolerance for first_over; pass tol_rel * ref absmax yourself, or
 * use tensor_diff_rel which does so. Equal infinities count as equal. */
void tensor_diff(const float *a, const float *b, size_t n, double tol, xf_diff *d);
void tensor_diff_rel(const float *a, const float *b, size_t n, double tol_rel, xf_diff *d);
/* fraction of rows (of length row) whose argmax agrees */
double tensor_top1_agree(const float *a, const float *b, size_t rows, size_t row);

/* A numpy-like slice: one entry per leading dimension; missing trailing
 * entries mean ':'. Index entries drop their dimension. */
typedef struct xf_slice_dim {
    bool is_index;
    int64_t start, stop, step; /* as written; resolved by tensor_slice_resolve */
    bool has_start, has_stop, has_step;
} xf_slice_dim;

typedef struct xf_slice {
    int ndim;
    xf_slice_dim d[XF_MAX_DIMS];
} xf_slice;

/* Parses "[3, :8]", "[-1]", "[:, 2, 0:4]", "[::2]". An empty string is no slice.
 * Errors name the position in the text. */
int tensor_slice_parse(const char *text, xf_slice *sl, xf_err *err);

/* The selected elements, as flat indices into the full tensor. */
typedef struct xf_selection {
    int out_ndim;
    int64_t out_shape[XF_MAX_DIMS];
    int64_t count;
    /* per input dim: resolved start, step and count */
    int64_t start[XF_MAX_DIMS], step[XF_MAX_DIMS], cnt[XF_MAX_DIMS];
    int ndim;
    int64_t shape[XF_MAX_DIMS];
} xf_selection;

int tensor_slice_resolve(const xf_slice *sl, int ndim, const int64_t *shape, xf_selection *sel, xf_err *err);
/* flat index of the k-th selected element (k in [0, count)) */
int64_t tensor_selection_index(const xf_selection *sel, int64_t k);
/* The multi-dimensional index of flat index i (row-major) into idx[ndim]:
 * people read [9, 0], not 1728. */
void tensor_unravel(int64_t flat, int ndim, const int64_t *shape, int64_t *idx);
/* the n elements with the largest |a-b| (NaN/Inf mismatches first), as
 * flat indices in out[0..k) from the largest; returns k (<= n) */
int64_t tensor_worst(const float *a, const float *b, int64_t count, int64_t *out, int64_t n);
/* "[10, 576]" */
void tensor_shape_str(int ndim, const int64_t *shape, char *buf, size_t size);
/* Whether two shapes are the same once their size-1 dimensions are dropped: an
 * HF dump's [1, 7, 96] is this pass's [7, 96] (the same elements in the same
 * order), a transposed [96, 7] is not, though it has as many elements. The one
 * rule of every comparison with a tensor from elsewhere (compare, diff, patch,
 * nmse(ref)). */
bool tensor_shape_same(int nda, const int64_t *a, int ndb, const int64_t *b);

#endif
