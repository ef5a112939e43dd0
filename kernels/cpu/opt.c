/* opt: the CPU optimized kernels except matmul (opt_matmul.c). Each splits
 * its rows (or elements) over ctx->pool, works in 8-wide f32 vectors with
 * f32 accumulation in several partial sums, and runs inline when the op is
 * too small to repay waking the workers. Results differ from ref only by
 * f32 rounding; tests/test_kernels_cpu.c holds the bounds. */
#if defined(__GNUC__) && !defined(__clang__) /* clang has no GCC optimize pragma */
#pragma GCC optimize("fp-contract=fast") /* let a*b+c become an FMA in the AVX2 clones */
#endif

#include "cpu/cpu.h"
#include "cpu/vec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* dst[0..n) += src[0..n) */
VEC_INLINE void opt_acc_row(float *dst, const float *src, int64_t n)
{
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        v8_store(dst + j, v8_load(dst + j) + v8_load(src + j));
    for (; j < n; j++)
        dst[j] += src[j];
}

/* ----------------------------------------------------------------- embd */

typedef struct embd_job {
    const kern_args *a;
    uint64_t rb, rb2; /* row bytes of w, w2 */
    float *tmp;       /* [threads, k] position rows that need dequantizing */
    int nth;
} embd_job;

/* dst[0..k) = row of `type` converted to f32 */
static void opt_row_f32(int type, const void *row, float *dst, int64_t k)
{
    if (type == XF_TYPE_F32)
        memcpy(dst, row, (size_t)k * sizeof *dst);
    else if (type == XF_TYPE_F16)
        kern_cpu_f16_to_f32_row(row, dst, k);
    else
        quant_dequant_row(type, row, dst, k);
}

static void embd_worker(void *arg, int ti, int tn)
{
    const embd_job *jb = arg;
    const kern_args *a = jb->a;
    int nth = kern_cpu_parts(jb->nth, tn);
    if (ti >= nth)
        return;
    int64_t lo, hi;
    kern_cpu_range(a->n, ti, nth, 1, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        float *y = a->y + i * a->k;
        opt_row_f32(a->w_type, (const uint8_t *)a->w + (uint64_t)a->tok[i] * jb->rb, y, a->k);
        if (!a->w2)
            continue;
        const uint8_t *prow = (const uint8_t *)a->w2 + (uint64_t)(a->pos0 + i) * jb->rb2;
        if (a->w2_type == XF_TYPE_F32) {
            opt_acc_row(y, (const float *)prow, a->k);
        } else {
            float *t = jb->tmp + (int64_t)ti * a->k;
            opt_row_f32(a->w2_type, prow, t, a->k);
            opt_acc_row(y, t, a->k);
        }
    }
}

int kern_cpu_opt_embd(kern_ctx *ctx, const kern_args *a)
{
    if (kern_cpu_check(KERN_OP_EMBD, a))
        return -1;
    embd_job jb = {.a = a, .nth = kern_cpu_threads(ctx)};
    quant_row_bytes(a->w_type, a->k, &jb.rb);
    if (a->w2) {
        quant_row_bytes(a->w2_type, a->k, &jb.rb2);
        if (a->w2_type != XF_TYPE_F32) {
            jb.tmp = malloc((size_t)jb.nth * (size_t)a->k * sizeof *jb.tmp);
            if (!jb.tmp)
                return -1;
        }
    }
    kern_cpu_run(ctx, a->n * a->k >= OPT_PAR_MIN, embd_worker, &jb);
    free(jb.tmp);
    return 0;
}

/* ------------------------------------------------------- norm, rmsnorm */

typedef struct rows_job {
    const kern_args *a;
    int nth;
} rows_job;

KERN_CPU_CLONES
static void norm_worker(void *arg, int ti, int tn)
{
    const rows_job *jb = arg;
    const kern_args *a = jb->a;
    int nth = kern_cpu_parts(jb->nth, tn);
    if (ti >= nth)
        return;
    const float *g = a->w; /* [k] */
    int64_t k = a->k, lo, hi;
    kern_cpu_range(a->n, ti, nth, 1, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        const float *x = a->x + i * k;
        float *y = a->y + i * k;
        /* Two passes (mean, then squared deviations) rather than one pass
         * of sum and sum of squares: the latter cancels catastrophically in
         * f32 when |mean| >> std. The second pass also sums the deviations,
         * c, which would be 0 with an exact mean: mean + c/k and
         * (sum d^2 - c^2/k)/k correct the f32 rounding of the first pass
         * (the corrected two-pass algorithm of Chan, Golub and LeVeque). */
        v8f s0 = v8_splat(0), s1 = v8_splat(0);
        int64_t j = 0;
        for (; j + 16 <= k; j += 16) {
            s0 += v8_load(x + j);
            s1 += v8_load(x + j + 8);
        }
        for (; j + 8 <= k; j += 8)
            s0 += v8_load(x + j);
        float sum = v8_hsum(s0 + s1);
        for (; j < k; j++)
            sum += x[j];
        float mean0 = sum / (float)k;
        v8f vm = v8_splat(mean0), c0 = v8_splat(0), c1 = v8_splat(0);
        s0 = v8_splat(0);
        s1 = v8_splat(0);
        for (j = 0; j + 16 <= k; j += 16) {
            v8f d0 = v8_load(x + j) - vm, d1 = v8_load(x + j + 8) - vm;
            c0 += d0;
            c1 += d1;
            s0 += d0 * d0;
            s1 += d1 * d1;
        }
        for (; j + 8 <= k; j += 8) {
            v8f d0 = v8_load(x + j) - vm;
            c0 += d0;
            s0 += d0 * d0;
        }
        float c = v8_hsum(c0 + c1), ss = v8_hsum(s0 + s1);
        for (; j < k; j++) {
            float d = x[j] - mean0;
            c += d;
            ss += d * d;
        }
        /* x - mean as (x - mean0) - corr: the first difference is exact
         * for x near mean0, so no rounding of |mean| enters the output */
        float corr = c / (float)k;
        float var = (ss - c * corr) / (float)k;
        if (var < 0) /* rounding when all x are equal */
            var = 0;
        v8f vc = v8_splat(corr);
        float inv = (float)(1.0 / sqrt((double)var + (double)a->eps));
        v8f vi = v8_splat(inv);
        for (j = 0; j + 8 <= k; j += 8) {
            v8f v = (v8_load(x + j) - vm - vc) * vi * v8_load(g + j);
            if (a->b)
                v += v8_load(a->b + j);
            v8_store(y + j, v);
        }
        for (; j < k; j++)
            y[j] = (x[j] - mean0 - corr) * inv * g[j] + (a->b ? a->b[j] : 0.0f);
    }
}

int kern_cpu_opt_norm(kern_ctx *ctx, const kern_args *a)
{
    if (kern_cpu_check(KERN_OP_NORM, a))
        return -1;
    rows_job jb = {a, kern_cpu_threads(ctx)};
    kern_cpu_run(ctx, a->n * a->k >= OPT_PAR_MIN, norm_worker, &jb);
    return 0;
}

KERN_CPU_CLONES
static void rmsnorm_worker(void *arg, int ti, int tn)
{
    const rows_job *jb = arg;
    const kern_args *a = jb->a;
    int nth = kern_cpu_parts(jb->nth, tn);
    if (ti >= nth)
        return;
    const float *g = a->w; /* [k] */
    int64_t k = a->k, lo, hi;
    kern_cpu_range(a->n, ti, nth, 1, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        const float *x = a->x + i * k;
        float *y = a->y + i * k;
        v8f s0 = v8_splat(0), s1 = v8_splat(0);
        int64_t j = 0;
        for (; j + 16 <= k; j += 16) {
            v8f x0 = v8_load(x + j), x1 = v8_load(x + j + 8);
            s0 += x0 * x0;
            s1 += x1 * x1;
        }
        for (; j + 8 <= k; j += 8) {
            v8f x0 = v8_load(x + j);
            s0 += x0 * x0;
        }
        float ss = v8_hsum(s0 + s1);
        for (; j < k; j++)
            ss += x[j] * x[j];
        float inv = (float)(1.0 / sqrt((double)ss / (double)k + (double)a->eps));
        v8f vi = v8_splat(inv);
        for (j = 0; j + 8 <= k; j += 8)
            v8_store(y + j, v8_load(x + j) * vi * v8_load(g + j));
        for (; j < k; j++)
            y[j] = x[j] * inv * g[j];
    }
}

int kern_cpu_opt_rmsnorm(kern_ctx *ctx, const kern_args *a)
{
    if (kern_cpu_check(KERN_OP_RMSNORM, a))
        return -1;
    rows_job jb = {a, kern_cpu_threads(ctx)};
    kern_cpu_run(ctx, a->n * a->k >= OPT_PAR_MIN, rmsnorm_worker, &jb);
    return 0;
}

/* ----------------------------------------------------------------- view */

static void view_worker(void *arg, int ti, int tn)
{
    const rows_job *jb = arg;
    const kern_args *a = jb->a;
    int nth = kern_cpu_parts(jb->nth, tn);
    if (ti >= nth)
        return;
    int64_t lo, hi;
    kern_cpu_range(a->n, ti, nth, 1, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        memcpy(a->y + i * a->m, a->x + i * a->x_stride + a->off, (size_t)a->m * sizeof *a->y);
}

int kern_cpu_opt_view(kern_ctx *ctx, const kern_args *a)
{
    if (kern_cpu_check(KERN_OP_VIEW, a))
        return -1;
    rows_job jb = {a, kern_cpu_threads(ctx)};
    /* a copy is memory-bound: only large ones gain from a second core */
    kern_cpu_run(ctx, a->n * a->m >= 4 * OPT_PAR_MIN, view_worker, &jb);
    return 0;
}

/* ----------------------------------------------------------------- rope */

typedef struct rope_job {
    const kern_args *a;
    const double *inv_freq; /* [head_dim/2] base^(-2d/head_dim) */
    float *cs;              /* [threads, head_dim]: cos then sin of one token */
    int nth;
} rope_job;

KERN_CPU_CLONES
static void rope_worker(void *arg, int ti, int tn)
{
    const rope_job *jb = arg;
    const kern_args *a = jb->a;
    int nth = kern_cpu_parts(jb->nth, tn);
    if (ti >= nth)
        return;
    int hd = a->head_dim, half = hd / 2;
    float *c = jb->cs + (int64_t)ti * hd, *s = c + half; /* [half], [half] */
    int64_t lo, hi;
    kern_cpu_range(a->n, ti, nth, 1, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) {
        /* The same angles as ref, in f64: an f32 angle is off by ~pos*6e-8
         * rad, visible at long positions. One table serves every head. */
        double pos = (double)a->pos0 + (double)i;
        for (int d = 0; d < half; d++) {
            double th = pos * jb->inv_freq[d];
            c[d] = (float)cos(th);
            s[d] = (float)sin(th);
        }
        for (int h = 0; h < a->n_head; h++) {
            const float *x = a->x + (i * a->n_head + h) * hd; /* [head_dim] */
            float *y = a->y + (i * a->n_head + h) * hd;
            if (a->rope_mode == KERN_ROPE_NORMAL) { /* adjacent pairs */
                for (int d = 0; d < half; d++) {
                    float x0 = x[2 * d], x1 = x[2 * d + 1];
                    y[2 * d] = x0 * c[d] - x1 * s[d];
                    y[2 * d + 1] = x0 * s[d] + x1 * c[d];
                }
                continue;
            }
            int d = 0;
            for (; d + 8 <= half; d += 8) {
                v8f x0 = v8_load(x + d), x1 = v8_load(x + d + half);
                v8f vc = v8_load(c + d), vs = v8_load(s + d);
                v8_store(y + d, x0 * vc - x1 * vs);
                v8_store(y + d + half, x0 * vs + x1 * vc);
            }
            for (; d < half; d++) {
                float x0 = x[d], x1 = x[d + half];
                y[d] = x0 * c[d] - x1 * s[d];
                y[d + half] = x0 * s[d] + x1 * c[d];
            }
        }
    }
}

int kern_cpu_opt_rope(kern_ctx *ctx, const kern_args *a)
{
    if (kern_cpu_check(KERN_OP_ROPE, a))
        return -1;
    int hd = a->head_dim, half = hd / 2;
    rope_job jb = {.a = a, .nth = kern_cpu_threads(ctx)};
    double *inv_freq = malloc((size_t)half * sizeof *inv_freq);
    jb.cs = malloc((size_t)jb.nth * (size_t)hd * sizeof *jb.cs);
    if (!inv_freq || !jb.cs) {
        free(inv_freq);
        free(jb.cs);
        return -1;
    }
    for (int d = 0; d < half; d++)
        inv_freq[d] = pow((double)a->rope_base, -2.0 * d / hd);
    jb.inv_freq = inv_freq;
    kern_cpu_run(ctx, a->n * a->n_head * (int64_t)hd >= OPT_PAR_MIN / 4, rope_worker, &jb);
    free(inv_freq);
    free(jb.cs);
    return 0;
}

/* ------------------------------------------------ add, gelu, swiglu */

/* Element ranges are cut at multiples of 16 floats (one cache line), so no
 * two threads write the same line. */
#define OPT_ELEM_ALIGN 16

KERN_CPU_CLONES
static void add_worker(void *arg, int ti, int tn)
{
    const rows_job *jb = arg;
    const kern_args *a = jb->a;
    int nth = kern_cpu_parts(jb->nth, tn);
    if (ti >= nth)
        return;
    int64_t lo, hi;
    kern_cpu_range(a->n * a->k, ti, nth, OPT_ELEM_ALIGN, &lo, &hi);
    int64_t j = lo;
    for (; j + 8 <= hi; j += 8)
        v8_store(a->y + j, v8_load(a->x + j) + v8_load(a->x2 + j));
    for (; j < hi; j++)
        a->y[j] = a->x[j] + a->x2[j];
}

int kern_cpu_opt_add(kern_ctx *ctx, const kern_args *a)
{
    if (kern_cpu_check(KERN_OP_ADD, a))
        return -1;
    rows_job jb = {a, kern_cpu_threads(ctx)};
    kern_cpu_run(ctx, a->n * a->k >= 4 * OPT_PAR_MIN, add_worker, &jb);
    return 0;
}

/* gelu_tanh(x) = 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)),
 * u = sqrt(2/pi) (x + 0.044715 x^3): one exp instead of a tanh. Large |x|
 * is safe: exp(-2u) = inf gives -0 and x^3 = inf gives exp(-inf) = 0, x. */
VEC_INLINE v8f opt_gelu8(const v8f *xp)
{
    v8f x = *xp;
    const v8f c2 = v8_splat(-2.0f * 0.7978845608028654f);
    v8f u2 = c2 * (x + v8_splat(0.044715f) * x * x * x);
    return x / (v8_splat(1.0f) + v8_exp(u2));
}

KERN_CPU_CLONES
static void gelu_worker(void *arg, int ti, int tn)
{
    const rows_job *jb = arg;
    const kern_args *a = jb->a;
    int nth = kern_cpu_parts(jb->nth, tn);
    if (ti >= nth)
        return;
    int64_t lo, hi;
    kern_cpu_range(a->n * a->k, ti, nth, OPT_ELEM_ALIGN, &lo, &hi);
    int64_t j = lo;
    for (; j + 8 <= hi; j += 8) {
        v8f x = v8_load(a->x + j);
        v8_store(a->y + j, opt_gelu8(&x));
    }
    if (j < hi) {
        v8f x = v8_load_part(a->x + j, (int)(hi - j), 1.0f);
        v8_store_part(a->y + j, opt_gelu8(&x), (int)(hi - j));
    }
}

int kern_cpu_opt_gelu(kern_ctx *ctx, const kern_args *a)
{
    if (kern_cpu_check(KERN_OP_GELU, a))
        return -1;
    rows_job jb = {a, kern_cpu_threads(ctx)};
    kern_cpu_run(ctx, a->n * a->k >= OPT_PAR_MIN / 2, gelu_worker, &jb);
    return 0;
}

/* silu(g) * up = g / (1 + exp(-g)) * up, in ref's order (g * up first
 * could overflow where ref does not) */
VEC_INLINE v8f opt_swiglu8(const v8f *gp, const v8f *upp)
{
    v8f g = *gp, up = *upp;
    return g / (v8_splat(1.0f) + v8_exp(-g)) * up;
}

KERN_CPU_CLONES
static void swiglu_worker(void *arg, int ti, int tn)
{
    const rows_job *jb = arg;
    const kern_args *a = jb->a;
    int nth = kern_cpu_parts(jb->nth, tn);
    if (ti >= nth)
        return;
    int64_t lo, hi;
    kern_cpu_range(a->n * a->k, ti, nth, OPT_ELEM_ALIGN, &lo, &hi);
    int64_t j = lo;
    for (; j + 8 <= hi; j += 8) {
        v8f g = v8_load(a->x + j), up = v8_load(a->x2 + j);
        v8_store(a->y + j, opt_swiglu8(&g, &up));
    }
    if (j < hi) {
        int r = (int)(hi - j);
        v8f g = v8_load_part(a->x + j, r, 1.0f), up = v8_load_part(a->x2 + j, r, 1.0f);
        v8_store_part(a->y + j, opt_swiglu8(&g, &up), r);
    }
}

int kern_cpu_opt_swiglu(kern_ctx *ctx, const kern_args *a)
{
    if (kern_cpu_check(KERN_OP_SWIGLU, a))
        return -1;
    rows_job jb = {a, kern_cpu_threads(ctx)};
    kern_cpu_run(ctx, a->n * a->k >= OPT_PAR_MIN / 2, swiglu_worker, &jb);
    return 0;
}
