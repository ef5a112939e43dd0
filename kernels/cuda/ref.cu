/* ref.cu: the CUDA `ref` variant of every op kind. Obviously correct before
 * fast: one thread per output element, no library, f32 storage and double
 * arithmetic wherever the CPU ref accumulates in f64 (dot products,
 * reductions) or calls a transcendental function. Weights are decoded one
 * element at a time by xq_elem() (cuda_internal.h). Semantics: kernels.h. */
#include <math.h>

#include "cuda_internal.h"

#define REF_THREADS 128

/* one thread per output: the grid covers `total` exactly (a grid-stride loop
 * keeps huge sizes legal) */
#define REF_FOR(idx, total)                                                                              \
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < (total);                    \
         idx += (int64_t)gridDim.x * blockDim.x)

/* ---- EMBD --------------------------------------------------------------- */

__global__ void ref_embd_kernel(float *y, const uint8_t *w, int w_type, uint64_t w_row, const uint8_t *w2,
                                int w2_type, uint64_t w2_row, kc_tok_chunk tok, int n, int64_t k, int pos0)
{
    REF_FOR(o, (int64_t)n * k)
    {
        int i = (int)(o / k);
        int64_t j = o % k;
        /* y[i, j] = w[tok[i], j] (+ w2[pos0 + i, j]) */
        float v = xq_elem(w_type, w + (uint64_t)tok.id[i] * w_row, j);
        if (w2)
            v = __fadd_rn(v, xq_elem(w2_type, w2 + (uint64_t)(pos0 + i) * w2_row, j));
        y[o] = v;
    }
}

extern "C" int kc_ref_embd(kern_ctx *ctx, const kern_args *a)
{
    if (kc_embd_check(a))
        return -1;
    uint64_t w_row = kc_row_bytes(a->w_type, a->k), w2_row = a->w2 ? kc_row_bytes(a->w2_type, a->k) : 0;
    for (int64_t i0 = 0; i0 < a->n; i0 += KC_TOK_CHUNK) {
        int cnt = (int)(a->n - i0 < KC_TOK_CHUNK ? a->n - i0 : KC_TOK_CHUNK);
        kc_tok_chunk tok;
        for (int i = 0; i < cnt; i++)
            tok.id[i] = a->tok[i0 + i];
        ref_embd_kernel<<<kc_grid_1d((int64_t)cnt * a->k, REF_THREADS), REF_THREADS, 0, kc_stream(ctx)>>>(
            a->y + i0 * a->k, (const uint8_t *)a->w, a->w_type, w_row, (const uint8_t *)a->w2, a->w2_type, w2_row,
            tok, cnt, a->k, a->pos0 + (int)i0);
        if (kc_launch_ok())
            return -1;
    }
    return 0;
}

/* ---- NORM / RMSNORM: one thread per row ------------------------------- */

__global__ void ref_norm_kernel(float *y, const float *x, const float *g, const float *b, int64_t n, int64_t k,
                                float eps, int rms)
{
    REF_FOR(i, n)
    {
        const float *xr = x + i * k;
        double mean = 0, var = 0;
        if (!rms) {
            for (int64_t j = 0; j < k; j++)
                mean += xr[j];
            mean /= (double)k;
        }
        for (int64_t j = 0; j < k; j++) {
            double d = (double)xr[j] - mean;
            var += d * d;
        }
        var /= (double)k;
        double inv = 1.0 / sqrt(var + (double)eps);
        for (int64_t j = 0; j < k; j++) {
            double v = ((double)xr[j] - mean) * inv * (double)g[j];
            if (b)
                v += (double)b[j];
            y[i * k + j] = (float)v;
        }
    }
}

static int ref_norm_any(kern_ctx *ctx, const kern_args *a, int rms)
{
    if (a->n < 0 || a->k <= 0 || !a->x || !a->y || !a->w || a->w_type != XF_TYPE_F32)
        return -1;
    if (a->n == 0)
        return 0;
    ref_norm_kernel<<<kc_grid_1d(a->n, REF_THREADS), REF_THREADS, 0, kc_stream(ctx)>>>(
        a->y, a->x, (const float *)a->w, rms ? NULL : a->b, a->n, a->k, a->eps, rms);
    return kc_launch_ok();
}

extern "C" int kc_ref_norm(kern_ctx *ctx, const kern_args *a) { return ref_norm_any(ctx, a, 0); }
extern "C" int kc_ref_rmsnorm(kern_ctx *ctx, const kern_args *a) { return ref_norm_any(ctx, a, 1); }

/* ---- MATMUL: one thread per output, weights decoded element by element -- */

__global__ void ref_matmul_kernel(float *y, const float *x, const uint8_t *w, int w_type, uint64_t w_row,
                                  const float *b, int64_t n, int64_t k, int64_t m)
{
    REF_FOR(o, n * m)
    {
        int64_t i = o / m, r = o % m;
        const float *xr = x + i * k;
        const uint8_t *wr = w + (uint64_t)r * w_row;
        double acc = 0;
        for (int64_t j = 0; j < k; j++)
            acc += (double)xr[j] * (double)xq_elem(w_type, wr, j);
        if (b)
            acc += (double)b[r];
        y[o] = (float)acc;
    }
}

extern "C" int kc_ref_matmul(kern_ctx *ctx, const kern_args *a)
{
    uint64_t w_row = kc_row_bytes(a->w_type, a->k);
    if (a->n < 0 || a->m <= 0 || w_row == 0 || !a->x || !a->w || !a->y)
        return -1;
    if (a->n == 0)
        return 0;
    ref_matmul_kernel<<<kc_grid_1d(a->n * a->m, REF_THREADS), REF_THREADS, 0, kc_stream(ctx)>>>(
        a->y, a->x, (const uint8_t *)a->w, a->w_type, w_row, a->b, a->n, a->k, a->m);
    return kc_launch_ok();
}

/* ---- VIEW --------------------------------------------------------------- */

__global__ void ref_view_kernel(float *y, const float *x, int64_t n, int64_t m, int64_t stride, int64_t off)
{
    REF_FOR(o, n * m)
    {
        int64_t i = o / m, j = o % m;
        y[o] = x[i * stride + off + j];
    }
}

extern "C" int kc_ref_view(kern_ctx *ctx, const kern_args *a)
{
    if (a->n < 0 || a->m <= 0 || a->off < 0 || a->off + a->m > a->x_stride || !a->x || !a->y)
        return -1;
    if (a->n == 0)
        return 0;
    ref_view_kernel<<<kc_grid_1d(a->n * a->m, REF_THREADS), REF_THREADS, 0, kc_stream(ctx)>>>(
        a->y, a->x, a->n, a->m, a->x_stride, a->off);
    return kc_launch_ok();
}

/* ---- ROPE: pair p is (p, p+half) (NeoX) or (2p, 2p+1) (normal), angle
 * (pos0+i) * base^(-2p/head_dim) ------------------------------------------ */

__global__ void ref_rope_kernel(float *y, const float *x, int64_t n, int n_head, int hd, int pos0,
                                double base, int normal)
{
    REF_FOR(o, n * n_head * hd)
    {
        int64_t i = o / ((int64_t)n_head * hd);
        int d = (int)(o % hd);
        int half = hd / 2;
        int p = normal ? d / 2 : d % half;                   /* the pair */
        int e = normal ? 2 * p : p, off = normal ? 1 : half; /* its elements e, e + off */
        bool first = normal ? d % 2 == 0 : d < half;
        const float *xr = x + (o - d); /* start of this (token, head) */
        double theta = (double)(pos0 + i) * pow(base, -2.0 * p / hd);
        double c = cos(theta), s = sin(theta);
        double v =
            first ? (double)xr[e] * c - (double)xr[e + off] * s : (double)xr[e] * s + (double)xr[e + off] * c;
        y[o] = (float)v;
    }
}

extern "C" int kc_ref_rope(kern_ctx *ctx, const kern_args *a)
{
    if (a->n < 0 || a->pos0 < 0 || a->n_head <= 0 || a->head_dim <= 0 || a->head_dim % 2 ||
        !(a->rope_base > 0) || !a->x || !a->y ||
        (a->rope_mode != KERN_ROPE_NEOX && a->rope_mode != KERN_ROPE_NORMAL))
        return -1;
    if (a->n == 0)
        return 0;
    int64_t total = a->n * a->n_head * a->head_dim;
    ref_rope_kernel<<<kc_grid_1d(total, REF_THREADS), REF_THREADS, 0, kc_stream(ctx)>>>(
        a->y, a->x, a->n, a->n_head, a->head_dim, a->pos0, (double)a->rope_base,
        a->rope_mode == KERN_ROPE_NORMAL);
    return kc_launch_ok();
}

/* ---- KQ: y[h, i, j] = scale * q[i, h, :] . kc[j, h/group, :] ------------ */

__global__ void ref_kq_kernel(float *y, const float *q, const float *kc, int64_t n, int nh, int nkv, int hd,
                              int n_kv, int pos0, float scale)
{
    REF_FOR(o, (int64_t)nh * n * n_kv)
    {
        int h = (int)(o / (n * n_kv));
        int64_t i = (o / n_kv) % n;
        int j = (int)(o % n_kv);
        if (j > pos0 + i) {
            y[o] = -INFINITY;
            continue;
        }
        const float *qr = q + (i * nh + h) * hd;
        const float *kr = kc + ((int64_t)j * nkv + h / (nh / nkv)) * hd;
        double acc = 0;
        for (int d = 0; d < hd; d++)
            acc += (double)qr[d] * (double)kr[d];
        y[o] = (float)(acc * (double)scale);
    }
}

extern "C" int kc_ref_kq(kern_ctx *ctx, const kern_args *a)
{
    if (kc_attn_check(a) || !a->kc)
        return -1;
    if (a->n == 0 || a->n_kv == 0)
        return 0;
    ref_kq_kernel<<<kc_grid_1d(a->n_head * a->n * a->n_kv, REF_THREADS), REF_THREADS, 0, kc_stream(ctx)>>>(
        a->y, a->x, a->kc, a->n, a->n_head, a->n_head_kv, a->head_dim, a->n_kv, a->pos0, a->scale);
    return kc_launch_ok();
}

/* ---- SOFTMAX: one thread per row ---------------------------------------- */

__global__ void ref_softmax_kernel(float *y, const float *x, int64_t n, int64_t m)
{
    REF_FOR(i, n)
    {
        const float *xr = x + i * m;
        float *yr = y + i * m;
        double mx = -INFINITY, sum = 0;
        /* a NaN is taken, never skipped: it makes the whole row NaN as in
         * torch (the CPU ref's rule), not a row with nothing to attend to */
        for (int64_t j = 0; j < m; j++)
            if (xr[j] > mx || isnan(xr[j]))
                mx = xr[j];
        if (mx == -INFINITY) { /* nothing to attend to: all weights 0 */
            for (int64_t j = 0; j < m; j++)
                yr[j] = 0.0f;
            continue;
        }
        for (int64_t j = 0; j < m; j++)
            sum += exp((double)xr[j] - mx);
        for (int64_t j = 0; j < m; j++)
            yr[j] = (float)(exp((double)xr[j] - mx) / sum);
    }
}

extern "C" int kc_ref_softmax(kern_ctx *ctx, const kern_args *a)
{
    if (a->n < 0 || a->m <= 0 || !a->x || !a->y)
        return -1;
    if (a->n == 0)
        return 0;
    ref_softmax_kernel<<<kc_grid_1d(a->n, REF_THREADS), REF_THREADS, 0, kc_stream(ctx)>>>(a->y, a->x, a->n,
                                                                                        a->m);
    return kc_launch_ok();
}

/* ---- KQV: y[i, h*hd + d] = sum_j p[h, i, j] * vc[j, h/group, d] --------- */

__global__ void ref_kqv_kernel(float *y, const float *p, const float *vc, int64_t n, int nh, int nkv, int hd,
                               int n_kv)
{
    REF_FOR(o, n * nh * hd)
    {
        int64_t i = o / ((int64_t)nh * hd);
        int h = (int)((o / hd) % nh), d = (int)(o % hd);
        const float *pr = p + ((int64_t)h * n + i) * n_kv;
        const float *vr = vc + (int64_t)(h / (nh / nkv)) * hd + d;
        double acc = 0;
        for (int j = 0; j < n_kv; j++)
            acc += (double)pr[j] * (double)vr[(int64_t)j * nkv * hd];
        y[o] = (float)acc;
    }
}

extern "C" int kc_ref_kqv(kern_ctx *ctx, const kern_args *a)
{
    if (kc_attn_check(a) || !a->vc)
        return -1;
    if (a->n == 0)
        return 0;
    ref_kqv_kernel<<<kc_grid_1d(a->n * a->n_head * a->head_dim, REF_THREADS), REF_THREADS, 0, kc_stream(ctx)>>>(
        a->y, a->x, a->vc, a->n, a->n_head, a->n_head_kv, a->head_dim, a->n_kv);
    return kc_launch_ok();
}

/* ---- ADD / GELU / SWIGLU: elementwise over n*k -------------------------- */

#define REF_GELU_C 0.7978845608028654 /* sqrt(2/pi) */

__global__ void ref_elem_kernel(float *y, const float *x, const float *x2, int64_t total, kern_op op)
{
    REF_FOR(o, total)
    {
        double v = x[o], r;
        if (op == KERN_OP_ADD)
            r = v + (double)x2[o];
        else if (op == KERN_OP_GELU)
            r = 0.5 * v * (1.0 + tanh(REF_GELU_C * (v + 0.044715 * v * v * v)));
        else
            r = v / (1.0 + exp(-v)) * (double)x2[o];
        y[o] = (float)r;
    }
}

static int ref_elem(kern_ctx *ctx, const kern_args *a, kern_op op)
{
    if (a->n < 0 || a->k < 0 || !a->x || !a->y || (op != KERN_OP_GELU && !a->x2))
        return -1;
    int64_t total = a->n * a->k;
    if (total == 0)
        return 0;
    ref_elem_kernel<<<kc_grid_1d(total, REF_THREADS), REF_THREADS, 0, kc_stream(ctx)>>>(a->y, a->x, a->x2, total,
                                                                                      op);
    return kc_launch_ok();
}

extern "C" int kc_ref_add(kern_ctx *ctx, const kern_args *a) { return ref_elem(ctx, a, KERN_OP_ADD); }
extern "C" int kc_ref_gelu(kern_ctx *ctx, const kern_args *a) { return ref_elem(ctx, a, KERN_OP_GELU); }
extern "C" int kc_ref_swiglu(kern_ctx *ctx, const kern_args *a) { return ref_elem(ctx, a, KERN_OP_SWIGLU); }
