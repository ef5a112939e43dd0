/* decode_mega.h: the decode megakernel's phases and its recorder, shared by
 * decode_mega.cu (the kernel, the recorder) and the launch functions that
 * record a phase instead of launching while a recording is on (opt.cu:
 * NORM and the residual + norm, the fused attention; fused_decode.cu: the
 * fused matrix-vector launches, the rotations and cache stores).
 *
 * A phase is one launch of one of those kernels, with the very arguments the
 * launch would have had, and the count of its blocks ("virtual blocks"):
 * the megakernel's blocks take a phase's virtual blocks in turn and run each
 * with the kernel's own body (opt_body.h, fm_body.h), then wait at a grid
 * barrier for the next phase. Included only by .cu files. */
#ifndef XF_DECODE_MEGA_H
#define XF_DECODE_MEGA_H

#include "cuda_internal.h"
#include "fm_body.h"

enum { MK_NORM = 1, MK_FM, MK_ROPE, MK_FA, MK_KQV };

/* opt_norm_kernel<add> of n rows: opt_norm_row's arguments */
typedef struct mk_norm {
    float *y, *sum;
    const float *x, *x2, *g, *b;
    int64_t k;
    float eps;
    int rms, vec, add, nt;
} mk_norm;

/* fr_kernel's arguments */
typedef struct mk_rope {
    float *qy, *ky, *kc, *vc;
    const float *qx, *kx, *v;
    const int32_t *step;
    int64_t qpairs, kpairs, vn, kvrow;
    double log_base;
    int qheads, kheads, hd, pos0, normal;
} mk_rope;

/* fa_kernel's arguments; gy: blocks a head */
typedef struct mk_fa {
    float *kq, *kq_soft, *kqv;
    const float *q, *kc, *vc;
    const int32_t *step;
    float2 *stats; /* [nh, cmax] the chunks' softmax pairs */
    float scale;
    int nh, nkv, hd, n_kv, pos0, vec, gy, cmax;
} mk_fa;

/* fa_kqv_kernel's arguments; gy: blocks a head */
typedef struct mk_kqv {
    float *y, *part, *p; /* p: the weights, written */
    const float *kq, *vc;
    const float2 *stats;
    const int32_t *step;
    int *cnt;
    int nh, nkv, hd, n_kv, cmax, gy;
} mk_kqv;

typedef struct mk_phase {
    int kind;      /* MK_* */
    int wt;        /* MK_FM: the jobs' weight type */
    unsigned nvb;  /* virtual blocks */
    unsigned smem; /* MK_FM: dynamic shared memory its staged plans need */
    union {
        fm_jobs fm;
        mk_norm norm;
        mk_rope rope;
        mk_fa fa;
        mk_kqv kqv;
    } u;
} mk_phase;

/* 1 while ctx records phases (kern_cuda_mega_begin .. _end) */
int kc_mega_on(const kern_ctx *ctx);
/* appends a phase (kind, nvb, smem, wt filled); 0, or -1 when full */
int kc_mega_add(kern_ctx *ctx, const mk_phase *ph);
/* launches the phases recorded since the last flush as one megakernel on
 * ctx's stream: a launch function that must launch a kernel of its own
 * while recording calls it first, so that the order of the pass holds */
int kc_mega_flush(kern_ctx *ctx);

#endif
