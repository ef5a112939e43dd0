/* opt_attn: the CPU optimized attention ops, kq, softmax and kqv, and
 * their fused form for a prefill (kern_cpu_attn_fused).
 *
 * Each op is written as a function of one row (kq_row, softmax_row,
 * kqv_row), and the ops and the fused form call the same functions, so
 * that the fused form computes what the three ops compute, bit for bit:
 * the engine may then leave kq and kq_soft unwritten and compute them on
 * demand (engine/exec.c), and nobody can tell but by the clock.
 *
 * Why fuse: a prefill's kq and kq_soft are [heads, n, n_kv] each, 12 MB a
 * layer for GPT-2 at 512 tokens. Written by kq, read and written by
 * softmax, read by kqv, they go through the L3 four times and their masked
 * halves are written as -inf and 0; at 512 tokens that was 31% of a GPT-2
 * pass. The fused form keeps rows of scores in L1 (per thread scratch)
 * and goes from q to kqv's output two rows of a head at a time: the key
 * and value rows both rows read are loaded once for the two (kq_row2,
 * kqv_row2; a long prefill's attention is bound by those loads from L2,
 * not by its arithmetic: one layer of GPT-2 at 512 tokens went from ~1.55x
 * to ~1.95x faster than the three ops, session 7).
 *
 * kqv's masked columns: the probabilities past a row's causal end are 0,
 * and 0 * v adds nothing, unless v is Inf or NaN (then the op gives NaN,
 * as ref and HF's eager attention do). The fused form skips the columns
 * past a row's end only when no value row it skips is non-finite (it scans
 * the value rows of each KV head once), so a NaN in a later token's value
 * still turns earlier rows NaN, in both forms. A skipped term can change
 * only the sign of a zero sum (-0 + +0 = +0). */
/* fp-contract: as opt.c, a*b+c may become an FMA in the AVX2 clones.
 * no-tree-loop-vectorize: the hot loops here are written with vectors
 * already; what GCC's -O3 vectorizes on its own is the scalar tails (a
 * dot's last d < 8, kqv's columns past the last 8-wide block), and it does
 * them as in-order reductions whose products are not fused into the adds,
 * while the scalar epilogue and the loop in another inline context keep
 * their FMAs. A score then rounds by where it was computed, and the fused
 * form no longer gives the ops' bits (a Release build failed
 * test_kernels_cpu_attn's test_fused_same_bits at head_dim 17). */
#if defined(__GNUC__) && !defined(__clang__) /* clang has no GCC optimize pragma */
#pragma GCC optimize("fp-contract=fast", "no-tree-loop-vectorize")
#endif

#include "cpu/cpu.h"
#include "cpu/vec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Work split of attention ops: rows (h, i) flattened as h*n + i, the order
 * of kq's output, in contiguous ranges so a thread keeps to few heads and
 * their K/V rows stay in its cache. */
typedef struct attn_job {
    const kern_args *a;   /* kq's (fused: kq's) */
    const kern_args *kqv; /* fused: kqv's */
    float *rows;          /* fused: [threads][2][n_kv] scores of two rows */
    int nth;
} attn_job;

VEC_INLINE float opt_dot(const float *p, const float *q, int n)
{
    v8f s0 = v8_splat(0), s1 = v8_splat(0);
    int d = 0;
    for (; d + 16 <= n; d += 16) {
        s0 += v8_load(p + d) * v8_load(q + d);
        s1 += v8_load(p + d + 8) * v8_load(q + d + 8);
    }
    for (; d + 8 <= n; d += 8)
        s0 += v8_load(p + d) * v8_load(q + d);
    float s = v8_hsum(s0 + s1);
    for (; d < n; d++)
        s += p[d] * q[d];
    return s;
}

/* the end of row i's causal range: keys 0..jend-1 are attended to */
VEC_INLINE int64_t causal_end(const kern_args *a, int64_t i)
{
    return a->pos0 + i + 1 < a->n_kv ? a->pos0 + i + 1 : a->n_kv;
}

/* Value and key rows sit n_head_kv * head_dim floats apart: 3 KiB for
 * GPT-2, past the 2 KiB the L1's stride prefetcher follows, so the row
 * loops prefetch this many rows ahead themselves (the first two lines of
 * a row; the adjacent-line prefetcher brings their pairs). */
#define ATTN_PF_ROWS 8

VEC_INLINE void attn_prefetch_row(const float *row)
{
    __builtin_prefetch(row);
    __builtin_prefetch(row + 32);
}

/* kq, row i of head h: y[j0..jend) = scale * q . k_j, and -inf in
 * [jend, yend) (a = kq's args; the op: j0 = 0, yend = n_kv). j0 is 0 or a
 * multiple of 8 below jend - 7 (where kq_row2 stopped): a key's score
 * depends only on the block (8, 4 or 1 keys) that holds it, and resuming
 * there gives every key the block it gets from 0. */
VEC_INLINE void kq_row_from(const kern_args *a, int64_t h, int64_t i, float *y, int64_t j0, int64_t yend)
{
    int hd = a->head_dim, group = a->n_head / a->n_head_kv;
    int64_t kstride = (int64_t)a->n_head_kv * hd;
    const float *q = a->x + (i * a->n_head + h) * hd; /* [head_dim] */
    const float *kbase = a->kc + (h / group) * hd;    /* key j at kbase + j*kstride */
    int64_t jend = causal_end(a, i);
    int64_t j = j0;
    /* eight keys per pass: each q vector loaded once feeds eight dots, and
     * one shuffle tree (v8_hsum8_p) reduces all eight */
    for (; j + 8 <= jend; j += 8) {
        const float *k0 = kbase + j * kstride;
        for (int u = 0; u < 8; u++)
            attn_prefetch_row(k0 + (ATTN_PF_ROWS + u) * kstride);
        v8f s[8] = {v8_splat(0), v8_splat(0), v8_splat(0), v8_splat(0),
                    v8_splat(0), v8_splat(0), v8_splat(0), v8_splat(0)};
        int d = 0;
        for (; d + 8 <= hd; d += 8) {
            v8f qv = v8_load(q + d);
#pragma GCC unroll 8
            for (int u = 0; u < 8; u++)
                s[u] += qv * v8_load(k0 + u * kstride + d);
        }
        v8f r = v8_hsum8_p(s);
        for (; d < hd; d++)
            for (int u = 0; u < 8; u++)
                r[u] += q[d] * k0[u * kstride + d];
        v8_store(y + j, r * v8_splat(a->scale));
    }
    /* then four keys per pass */
    for (; j + 4 <= jend; j += 4) {
        const float *k0 = kbase + j * kstride, *k1 = k0 + kstride, *k2 = k1 + kstride, *k3 = k2 + kstride;
        v8f s0 = v8_splat(0), s1 = v8_splat(0), s2 = v8_splat(0), s3 = v8_splat(0);
        int d = 0;
        for (; d + 8 <= hd; d += 8) {
            v8f qv = v8_load(q + d);
            s0 += qv * v8_load(k0 + d);
            s1 += qv * v8_load(k1 + d);
            s2 += qv * v8_load(k2 + d);
            s3 += qv * v8_load(k3 + d);
        }
        float t0 = v8_hsum(s0), t1 = v8_hsum(s1), t2 = v8_hsum(s2), t3 = v8_hsum(s3);
        for (; d < hd; d++) {
            t0 += q[d] * k0[d];
            t1 += q[d] * k1[d];
            t2 += q[d] * k2[d];
            t3 += q[d] * k3[d];
        }
        y[j] = a->scale * t0;
        y[j + 1] = a->scale * t1;
        y[j + 2] = a->scale * t2;
        y[j + 3] = a->scale * t3;
    }
    for (; j < jend; j++)
        y[j] = a->scale * opt_dot(q, kbase + j * kstride, hd);
    for (; j < yend; j++)
        y[j] = -INFINITY;
}

VEC_INLINE void kq_row(const kern_args *a, int64_t h, int64_t i, float *y, int64_t yend)
{
    kq_row_from(a, h, i, y, 0, yend);
}

/* Rows i and i + 1 of head h at once (the fused form): each key row of the
 * 8-key blocks both rows take is loaded once for both, then each row
 * finishes alone (kq_row_from). Every score is the sum kq_row computes. */
VEC_INLINE void kq_row2(const kern_args *a, int64_t h, int64_t i, float *y0, float *y1)
{
    int hd = a->head_dim, group = a->n_head / a->n_head_kv;
    int64_t kstride = (int64_t)a->n_head_kv * hd;
    const float *q0 = a->x + (i * a->n_head + h) * hd, *q1 = q0 + (int64_t)a->n_head * hd; /* [head_dim] each */
    const float *kbase = a->kc + (h / group) * hd;
    int64_t jend = causal_end(a, i); /* row i + 1 ends at or after it */
    int64_t j = 0;
    if (hd % 8 == 0) /* else the blocks' tails differ from kq_row's order below */
        for (; j + 8 <= jend; j += 8) {
            const float *k0 = kbase + j * kstride;
            for (int u = 0; u < 8; u++)
                attn_prefetch_row(k0 + (ATTN_PF_ROWS + u) * kstride);
            v8f s0[8], s1[8];
            for (int u = 0; u < 8; u++)
                s0[u] = s1[u] = v8_splat(0);
            for (int d = 0; d < hd; d += 8) {
                v8f qa = v8_load(q0 + d), qb = v8_load(q1 + d);
#pragma GCC unroll 8
                for (int u = 0; u < 8; u++) {
                    v8f kv = v8_load(k0 + u * kstride + d);
                    s0[u] += qa * kv;
                    s1[u] += qb * kv;
                }
            }
            v8_store(y0 + j, v8_hsum8_p(s0) * v8_splat(a->scale));
            v8_store(y1 + j, v8_hsum8_p(s1) * v8_splat(a->scale));
        }
    kq_row_from(a, h, i, y0, j, jend);
    kq_row_from(a, h, i + 1, y1, j, causal_end(a, i + 1));
}

/* softmax of one row of m: y may be x */
VEC_INLINE void softmax_row(const float *x, float *y, int64_t m_all)
{
    /* A causal row ends in -inf (kq's mask): those give exactly 0
     * (exp(-inf) = 0 adds nothing to the sum), so they are written as
     * 0 and skipped, which halves a prefill's exponentials. */
    int64_t m = m_all;
    while (m > 0 && x[m - 1] == -INFINITY)
        m--;
    memset(y + m, 0, (size_t)(m_all - m) * sizeof *y);
    /* max: NaN compares false and is skipped here; a NaN then makes the
     * whole row NaN as in ref (and torch), through one of the two checks
     * below */
    v8f mv = v8_splat(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= m; j += 8) {
        v8f v = v8_load(x + j);
        mv = v8_select(v > mv, v, mv);
    }
    float mx = -INFINITY;
    for (int l = 0; l < 8; l++)
        if (mv[l] > mx)
            mx = mv[l];
    for (; j < m; j++)
        if (x[j] > mx)
            mx = x[j];
    if (mx == -INFINITY) {
        /* nothing but -inf and NaN. x[m - 1] is not -inf (trimmed above),
         * so m > 0 means a NaN: the whole row NaN, as ref. m == 0: all
         * -inf, nothing to attend to, all 0 as ref (the memset above) */
        for (j = 0; m > 0 && j < m_all; j++)
            y[j] = NAN;
        return;
    }
    v8f vmx = v8_splat(mx), s0 = v8_splat(0);
    for (j = 0; j + 8 <= m; j += 8) {
        v8f e = v8_exp(v8_load(x + j) - vmx);
        v8_store(y + j, e);
        s0 += e;
    }
    if (j < m) {
        /* padding lanes are -inf: exp gives 0, the sum is untouched */
        v8f e = v8_exp(v8_load_part(x + j, (int)(m - j), -INFINITY) - vmx);
        v8_store_part(y + j, e, (int)(m - j));
        s0 += e;
    }
    float is = 1.0f / v8_hsum(s0);
    /* a NaN among numbers (or +inf - +inf): the whole row NaN, the trimmed -inf too, as ref */
    if (isnan(is)) {
        for (j = 0; j < m_all; j++)
            y[j] = NAN;
        return;
    }
    v8f inv = v8_splat(is);
    for (j = 0; j + 8 <= m; j += 8)
        v8_store(y + j, v8_load(y + j) * inv);
    for (; j < m; j++)
        y[j] *= inv[0];
}

/* kqv, row i of head h: y[0..head_dim) = sum over j < jlim of p[j] * v_j
 * (a = kqv's args), each output a sequential sum over j in registers (64
 * outputs a pass over the value rows). jlim is n_kv, or a point past which
 * every p is 0 and every value row finite: those terms add +-0, which
 * leaves a sum unchanged but for the sign of a zero. */
VEC_INLINE void kqv_row_from(const kern_args *a, int64_t h, const float *p, int64_t jlim, float *y, int dstart)
{
    int hd = a->head_dim, group = a->n_head / a->n_head_kv;
    int64_t vstride = (int64_t)a->n_head_kv * hd;
    const float *vbase = a->vc + (h / group) * hd; /* value j at vbase + j*vstride */
    int d0 = dstart;
    for (; d0 + 64 <= hd; d0 += 64) {
        v8f acc[8] = {v8_splat(0), v8_splat(0), v8_splat(0), v8_splat(0),
                      v8_splat(0), v8_splat(0), v8_splat(0), v8_splat(0)};
        for (int64_t j = 0; j < jlim; j++) {
            v8f pj = v8_splat(p[j]);
            const float *v = vbase + j * vstride + d0;
            attn_prefetch_row(v + ATTN_PF_ROWS * vstride);
#pragma GCC unroll 8
            for (int c = 0; c < 8; c++)
                acc[c] += pj * v8_load(v + 8 * c);
        }
        for (int c = 0; c < 8; c++)
            v8_store(y + d0 + 8 * c, acc[c]);
    }
    for (; d0 + 8 <= hd; d0 += 8) {
        v8f acc = v8_splat(0);
        for (int64_t j = 0; j < jlim; j++)
            acc += v8_splat(p[j]) * v8_load(vbase + j * vstride + d0);
        v8_store(y + d0, acc);
    }
    for (; d0 < hd; d0++) {
        float acc = 0;
        for (int64_t j = 0; j < jlim; j++)
            acc += p[j] * vbase[j * vstride + d0];
        y[d0] = acc;
    }
}

VEC_INLINE void kqv_row(const kern_args *a, int64_t h, const float *p, int64_t jlim, float *y)
{
    kqv_row_from(a, h, p, jlim, y, 0);
}

/* Two rows of head h at once (the fused form): the 64-wide column blocks
 * load each value row once for both, each output still the sum over j in
 * order (the rows' common j first, then the longer row's rest); the
 * columns past the last 64-wide block are kqv_row's, row by row. */
VEC_INLINE void kqv_row2(const kern_args *a, int64_t h, const float *p0, int64_t jl0, const float *p1, int64_t jl1,
                         float *y0, float *y1)
{
    int hd = a->head_dim, group = a->n_head / a->n_head_kv;
    int64_t vstride = (int64_t)a->n_head_kv * hd, jmin = jl0 < jl1 ? jl0 : jl1;
    const float *vbase = a->vc + (h / group) * hd;
    int d0 = 0;
    for (; d0 + 64 <= hd; d0 += 64) {
        v8f acc0[8], acc1[8];
        for (int c = 0; c < 8; c++)
            acc0[c] = acc1[c] = v8_splat(0);
        int64_t j = 0;
        for (; j < jmin; j++) {
            v8f pa = v8_splat(p0[j]), pb = v8_splat(p1[j]);
            const float *v = vbase + j * vstride + d0;
            attn_prefetch_row(v + ATTN_PF_ROWS * vstride);
#pragma GCC unroll 8
            for (int c = 0; c < 8; c++) {
                v8f vv = v8_load(v + 8 * c);
                acc0[c] += pa * vv;
                acc1[c] += pb * vv;
            }
        }
        for (int64_t k = j; k < jl0; k++) {
            v8f pa = v8_splat(p0[k]);
            const float *v = vbase + k * vstride + d0;
            for (int c = 0; c < 8; c++)
                acc0[c] += pa * v8_load(v + 8 * c);
        }
        for (int64_t k = j; k < jl1; k++) {
            v8f pb = v8_splat(p1[k]);
            const float *v = vbase + k * vstride + d0;
            for (int c = 0; c < 8; c++)
                acc1[c] += pb * v8_load(v + 8 * c);
        }
        for (int c = 0; c < 8; c++) {
            v8_store(y0 + d0 + 8 * c, acc0[c]);
            v8_store(y1 + d0 + 8 * c, acc1[c]);
        }
    }
    kqv_row_from(a, h, p0, jl0, y0, d0);
    kqv_row_from(a, h, p1, jl1, y1, d0);
}

/* ------------------------------------------------------------------- kq */

KERN_CPU_CLONES_V4
static void kq_worker(void *arg, int ti, int tn)
{
    const attn_job *jb = arg;
    const kern_args *a = jb->a;
    int nth = kern_cpu_parts(jb->nth, tn);
    if (ti >= nth)
        return;
    int64_t lo, hi;
    kern_cpu_range((int64_t)a->n_head * a->n, ti, nth, 1, &lo, &hi);
    for (int64_t row = lo; row < hi; row++)
        kq_row(a, row / a->n, row % a->n, a->y + row * a->n_kv, a->n_kv);
}

int kern_cpu_opt_kq(kern_ctx *ctx, const kern_args *a)
{
    if (kern_cpu_check(KERN_OP_KQ, a))
        return -1;
    attn_job jb = {.a = a, .nth = kern_cpu_threads(ctx)};
    double work = (double)a->n_head * (double)a->n * (double)a->n_kv * (double)a->head_dim;
    kern_cpu_run(ctx, work >= 4 * OPT_PAR_MIN, kq_worker, &jb);
    return 0;
}

/* -------------------------------------------------------------- softmax */

KERN_CPU_CLONES_V4
static void softmax_worker(void *arg, int ti, int tn)
{
    const attn_job *jb = arg;
    const kern_args *a = jb->a;
    int nth = kern_cpu_parts(jb->nth, tn);
    if (ti >= nth)
        return;
    int64_t lo, hi;
    kern_cpu_range(a->n, ti, nth, 1, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        softmax_row(a->x + i * a->m, a->y + i * a->m, a->m);
}

int kern_cpu_opt_softmax(kern_ctx *ctx, const kern_args *a)
{
    if (kern_cpu_check(KERN_OP_SOFTMAX, a))
        return -1;
    attn_job jb = {.a = a, .nth = kern_cpu_threads(ctx)};
    kern_cpu_run(ctx, a->n * a->m >= OPT_PAR_MIN / 4, softmax_worker, &jb);
    return 0;
}

/* ------------------------------------------------------------------ kqv */

KERN_CPU_CLONES_V4
static void kqv_worker(void *arg, int ti, int tn)
{
    const attn_job *jb = arg;
    const kern_args *a = jb->a;
    int nth = kern_cpu_parts(jb->nth, tn);
    if (ti >= nth)
        return;
    int64_t lo, hi;
    kern_cpu_range((int64_t)a->n_head * a->n, ti, nth, 1, &lo, &hi);
    for (int64_t row = lo; row < hi; row++) {
        int64_t h = row / a->n, i = row % a->n;
        kqv_row(a, h, a->x + row * a->n_kv, a->n_kv, a->y + i * (int64_t)a->n_head * a->head_dim + h * a->head_dim);
    }
}

int kern_cpu_opt_kqv(kern_ctx *ctx, const kern_args *a)
{
    if (kern_cpu_check(KERN_OP_KQV, a))
        return -1;
    attn_job jb = {.a = a, .nth = kern_cpu_threads(ctx)};
    double work = (double)a->n_head * (double)a->n * (double)a->n_kv * (double)a->head_dim;
    kern_cpu_run(ctx, work >= 4 * OPT_PAR_MIN, kqv_worker, &jb);
    return 0;
}

/* ---------------------------------------------------------------- fused */

/* the last value row of KV head g that has a NaN or Inf, -1 if none (only
 * rows from `from` on: the ones some row of the pass may skip) */
static int64_t last_bad_value(const kern_args *a, int g, int64_t from)
{
    int hd = a->head_dim;
    int64_t vstride = (int64_t)a->n_head_kv * hd;
    for (int64_t j = a->n_kv - 1; j >= from; j--) {
        const float *v = a->vc + j * vstride + (int64_t)g * hd;
        for (int d = 0; d < hd; d++)
            if (!isfinite(v[d]))
                return j;
    }
    return -1;
}

KERN_CPU_CLONES_V4
static void fused_worker(void *arg, int ti, int tn)
{
    const attn_job *jb = arg;
    const kern_args *a = jb->a, *av = jb->kqv;
    int nth = kern_cpu_parts(jb->nth, tn);
    if (ti >= nth)
        return;
    float *s = jb->rows + (size_t)ti * 2 * (size_t)a->n_kv; /* [2, n_kv]: one or two rows' scores */
    int group = a->n_head / a->n_head_kv;
    int64_t lo, hi, g_seen = -1, bad = -1;
    kern_cpu_range((int64_t)a->n_head * a->n, ti, nth, 1, &lo, &hi);
    for (int64_t row = lo; row < hi;) {
        int64_t h = row / a->n, i = row % a->n;
        if (h / group != g_seen) { /* a new KV head: its non-finite value rows */
            g_seen = h / group;
            bad = last_bad_value(av, (int)g_seen, a->pos0 + 1);
        }
        /* the op's row is these scores and -inf to n_kv, which softmax_row
         * trims off again: the same numbers without the -inf */
        int64_t jend = causal_end(a, i), jlim = bad >= jend ? a->n_kv : jend;
        float *y = av->y + i * (int64_t)av->n_head * av->head_dim + h * av->head_dim;
        if (row + 1 < hi && i + 1 < a->n) {
            /* rows i and i + 1 of head h together: the key and value rows
             * both read are loaded once (L2 traffic, not arithmetic, bounds
             * a long prefill's attention) */
            float *s1 = s + a->n_kv;
            int64_t jend1 = causal_end(a, i + 1), jlim1 = bad >= jend1 ? a->n_kv : jend1;
            kq_row2(a, h, i, s, s1);
            softmax_row(s, s, jend);
            softmax_row(s1, s1, jend1);
            memset(s + jend, 0, (size_t)(jlim - jend) * sizeof *s);
            memset(s1 + jend1, 0, (size_t)(jlim1 - jend1) * sizeof *s1);
            kqv_row2(av, h, s, jlim, s1, jlim1, y, y + (int64_t)av->n_head * av->head_dim);
            row += 2;
            continue;
        }
        kq_row(a, h, i, s, jend);
        softmax_row(s, s, jend);
        memset(s + jend, 0, (size_t)(jlim - jend) * sizeof *s); /* softmax's zeros, where they are read */
        kqv_row(av, h, s, jlim, y);
        row++;
    }
}

size_t kern_cpu_attn_fused_scratch(const kern_ctx *ctx, const kern_args *kq)
{
    /* two rows of scores per thread (the rows it takes in pairs) */
    return (size_t)kern_cpu_threads(ctx) * 2 * (size_t)(kq->n_kv > 0 ? kq->n_kv : 0) * sizeof(float);
}

int kern_cpu_attn_fused(kern_ctx *ctx, const kern_args *kq, const kern_args *kqv)
{
    /* kq's output and kqv's input are the tensors never written or read:
     * they may be NULL, which the op checks would refuse */
    kern_args ck = *kq, cv = *kqv;
    ck.y = kqv->y;
    cv.x = kq->x;
    if (kern_cpu_check(KERN_OP_KQ, &ck) || kern_cpu_check(KERN_OP_KQV, &cv))
        return -1;
    if (kq->n != kqv->n || kq->n_kv != kqv->n_kv || kq->pos0 != kqv->pos0 || kq->n_head != kqv->n_head ||
        kq->n_head_kv != kqv->n_head_kv || kq->head_dim != kqv->head_dim)
        return -1;
    if (!ctx || ctx->scratch_size < kern_cpu_attn_fused_scratch(ctx, kq))
        return -1;
    attn_job jb = {.a = kq, .kqv = kqv, .rows = ctx->scratch, .nth = kern_cpu_threads(ctx)};
    double work = (double)kq->n_head * (double)kq->n * (double)kq->n_kv * (double)kq->head_dim;
    kern_cpu_run(ctx, work >= 4 * OPT_PAR_MIN, fused_worker, &jb);
    return 0;
}
