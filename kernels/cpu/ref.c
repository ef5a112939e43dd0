/* ref: the CPU reference kernels, the yardstick every other variant (cpu
 * opt, cuda) is checked against. Plain loops in the order the formula in
 * kernels.h reads, f32 storage, f64 in every dot product and reduction,
 * single-threaded (ctx is ignored). Speed is not a goal here; being
 * obviously right is. */
#include "cpu/cpu.h"

#include <math.h>
#include <stdlib.h>

/* EMBD: y[n,k] = deq(w row tok[i]) (+ deq(w2 row pos0+i)). */
int kern_cpu_ref_embd(kern_ctx *ctx, const kern_args *a)
{
    (void)ctx;
    if (kern_cpu_check(KERN_OP_EMBD, a))
        return -1;
    uint64_t rb = 0, rb2 = 0;
    quant_row_bytes(a->w_type, a->k, &rb);
    if (a->w2)
        quant_row_bytes(a->w2_type, a->k, &rb2);
    float *row = malloc(2 * (size_t)a->k * sizeof *row); /* [2, k]: token row, position row */
    if (!row)
        return -1;
    float *prow = row + a->k;
    for (int64_t i = 0; i < a->n; i++) {
        quant_dequant_row(a->w_type, (const uint8_t *)a->w + (uint64_t)a->tok[i] * rb, row, a->k);
        if (a->w2)
            quant_dequant_row(a->w2_type, (const uint8_t *)a->w2 + (uint64_t)(a->pos0 + i) * rb2, prow, a->k);
        for (int64_t j = 0; j < a->k; j++) {
            double v = row[j];
            if (a->w2)
                v += prow[j];
            a->y[i * a->k + j] = (float)v;
        }
    }
    free(row);
    return 0;
}

/* NORM (LayerNorm): biased variance (divide by k), eps inside the sqrt. */
int kern_cpu_ref_norm(kern_ctx *ctx, const kern_args *a)
{
    (void)ctx;
    if (kern_cpu_check(KERN_OP_NORM, a))
        return -1;
    const float *gamma = a->w; /* [k] */
    for (int64_t i = 0; i < a->n; i++) {
        const float *x = a->x + i * a->k;
        double sum = 0;
        for (int64_t j = 0; j < a->k; j++)
            sum += x[j];
        double mean = sum / (double)a->k;
        double var = 0;
        for (int64_t j = 0; j < a->k; j++)
            var += ((double)x[j] - mean) * ((double)x[j] - mean);
        var /= (double)a->k;
        double inv = 1.0 / sqrt(var + (double)a->eps);
        for (int64_t j = 0; j < a->k; j++) {
            double v = ((double)x[j] - mean) * inv * gamma[j];
            if (a->b)
                v += a->b[j];
            a->y[i * a->k + j] = (float)v;
        }
    }
    return 0;
}

/* RMSNORM: y = x / sqrt(mean(x^2) + eps) * w. */
int kern_cpu_ref_rmsnorm(kern_ctx *ctx, const kern_args *a)
{
    (void)ctx;
    if (kern_cpu_check(KERN_OP_RMSNORM, a))
        return -1;
    const float *gamma = a->w; /* [k] */
    for (int64_t i = 0; i < a->n; i++) {
        const float *x = a->x + i * a->k;
        double ss = 0;
        for (int64_t j = 0; j < a->k; j++)
            ss += (double)x[j] * x[j];
        double inv = 1.0 / sqrt(ss / (double)a->k + (double)a->eps);
        for (int64_t j = 0; j < a->k; j++)
            a->y[i * a->k + j] = (float)((double)x[j] * inv * gamma[j]);
    }
    return 0;
}

/* MATMUL: y[i,r] = sum_j x[i,j] * w[r,j] (+ b[r]). Weight row r starts at
 * byte r*row_bytes(w_type, k); one row is dequantized at a time, so the
 * memory used is k floats whatever the matrix size. */
int kern_cpu_ref_matmul(kern_ctx *ctx, const kern_args *a)
{
    (void)ctx;
    if (kern_cpu_check(KERN_OP_MATMUL, a))
        return -1;
    uint64_t rb = 0;
    quant_row_bytes(a->w_type, a->k, &rb);
    float *wrow = malloc((size_t)a->k * sizeof *wrow); /* [k] */
    if (!wrow)
        return -1;
    for (int64_t r = 0; r < a->m; r++) {
        quant_dequant_row(a->w_type, (const uint8_t *)a->w + (uint64_t)r * rb, wrow, a->k);
        for (int64_t i = 0; i < a->n; i++) {
            const float *x = a->x + i * a->k;
            double s = 0;
            for (int64_t j = 0; j < a->k; j++)
                s += (double)x[j] * wrow[j];
            if (a->b)
                s += a->b[r];
            a->y[i * a->m + r] = (float)s;
        }
    }
    free(wrow);
    return 0;
}

/* VIEW: y[i,j] = x[i*x_stride + off + j]. */
int kern_cpu_ref_view(kern_ctx *ctx, const kern_args *a)
{
    (void)ctx;
    if (kern_cpu_check(KERN_OP_VIEW, a))
        return -1;
    for (int64_t i = 0; i < a->n; i++)
        for (int64_t j = 0; j < a->m; j++)
            a->y[i * a->m + j] = a->x[i * a->x_stride + a->off + j];
    return 0;
}

/* ROPE: within each head, pair d is (d, d + head_dim/2) in NeoX mode and
 * (2d, 2d+1) in normal mode; it turns by angle (pos0+i) * base^(-2d/head_dim). */
int kern_cpu_ref_rope(kern_ctx *ctx, const kern_args *a)
{
    (void)ctx;
    if (kern_cpu_check(KERN_OP_ROPE, a))
        return -1;
    int hd = a->head_dim, half = hd / 2;
    int step = a->rope_mode == KERN_ROPE_NORMAL ? 2 : 1, off = a->rope_mode == KERN_ROPE_NORMAL ? 1 : half;
    for (int64_t i = 0; i < a->n; i++) {
        double pos = (double)a->pos0 + (double)i;
        for (int h = 0; h < a->n_head; h++) {
            const float *x = a->x + (i * a->n_head + h) * hd; /* [head_dim] */
            float *y = a->y + (i * a->n_head + h) * hd;
            for (int d = 0; d < half; d++) {
                double theta = pos * pow((double)a->rope_base, -2.0 * d / hd);
                double c = cos(theta), s = sin(theta);
                int e = d * step; /* the pair (e, e + off) */
                double x0 = x[e], x1 = x[e + off];
                y[e] = (float)(x0 * c - x1 * s);
                y[e + off] = (float)(x0 * s + x1 * c);
            }
        }
    }
    return 0;
}

/* KQ: y[h,i,j] = scale * q[i,h,:] . kc[j,h/group,:], -INFINITY where
 * j > pos0+i (a key after the query's position). */
int kern_cpu_ref_kq(kern_ctx *ctx, const kern_args *a)
{
    (void)ctx;
    if (kern_cpu_check(KERN_OP_KQ, a))
        return -1;
    int hd = a->head_dim, group = a->n_head / a->n_head_kv;
    for (int h = 0; h < a->n_head; h++) {
        int hk = h / group;
        for (int64_t i = 0; i < a->n; i++) {
            const float *q = a->x + (i * a->n_head + h) * hd;    /* [head_dim] */
            float *y = a->y + ((int64_t)h * a->n + i) * a->n_kv; /* [n_kv] */
            for (int64_t j = 0; j < a->n_kv; j++) {
                if (j > a->pos0 + i) {
                    y[j] = -INFINITY;
                    continue;
                }
                const float *kv = a->kc + (j * a->n_head_kv + hk) * hd;
                double s = 0;
                for (int d = 0; d < hd; d++)
                    s += (double)q[d] * kv[d];
                y[j] = (float)((double)a->scale * s);
            }
        }
    }
    return 0;
}

/* SOFTMAX over rows of length m. exp(-inf) = 0 gives -inf entries 0; a row
 * that is all -inf (nothing to attend to) gives all 0 rather than NaN. A
 * NaN anywhere in a row makes the whole row NaN, -inf entries too, as
 * torch's softmax: the max is NaN (a NaN is taken, never skipped: a row of
 * NaN and -inf is not one with nothing to attend to), so is every
 * exp(x - max) and the sum. */
int kern_cpu_ref_softmax(kern_ctx *ctx, const kern_args *a)
{
    (void)ctx;
    if (kern_cpu_check(KERN_OP_SOFTMAX, a))
        return -1;
    for (int64_t i = 0; i < a->n; i++) {
        const float *x = a->x + i * a->m;
        float *y = a->y + i * a->m;
        double mx = -INFINITY;
        for (int64_t j = 0; j < a->m; j++)
            if (x[j] > mx || isnan(x[j]))
                mx = x[j]; /* once NaN, stays NaN: x > NaN is false */
        if (mx == -INFINITY) {
            for (int64_t j = 0; j < a->m; j++)
                y[j] = 0.0f;
            continue;
        }
        double sum = 0;
        for (int64_t j = 0; j < a->m; j++)
            sum += exp((double)x[j] - mx);
        for (int64_t j = 0; j < a->m; j++)
            y[j] = (float)(exp((double)x[j] - mx) / sum);
    }
    return 0;
}

/* KQV: y[i, h*head_dim + d] = sum_j x[h,i,j] * vc[j, h/group, d], over all
 * j < n_kv (masked positions carry weight 0 from the softmax). */
int kern_cpu_ref_kqv(kern_ctx *ctx, const kern_args *a)
{
    (void)ctx;
    if (kern_cpu_check(KERN_OP_KQV, a))
        return -1;
    int hd = a->head_dim, group = a->n_head / a->n_head_kv;
    for (int h = 0; h < a->n_head; h++) {
        int hk = h / group;
        for (int64_t i = 0; i < a->n; i++) {
            const float *p = a->x + ((int64_t)h * a->n + i) * a->n_kv;       /* [n_kv] */
            float *y = a->y + i * (int64_t)a->n_head * hd + (int64_t)h * hd; /* [head_dim] */
            for (int d = 0; d < hd; d++) {
                double s = 0;
                for (int64_t j = 0; j < a->n_kv; j++)
                    s += (double)p[j] * a->vc[(j * a->n_head_kv + hk) * hd + d];
                y[d] = (float)s;
            }
        }
    }
    return 0;
}

int kern_cpu_ref_add(kern_ctx *ctx, const kern_args *a)
{
    (void)ctx;
    if (kern_cpu_check(KERN_OP_ADD, a))
        return -1;
    for (int64_t i = 0; i < a->n * a->k; i++)
        a->y[i] = (float)((double)a->x[i] + (double)a->x2[i]);
    return 0;
}

/* GELU, tanh form (GPT-2's gelu_new):
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
int kern_cpu_ref_gelu(kern_ctx *ctx, const kern_args *a)
{
    (void)ctx;
    if (kern_cpu_check(KERN_OP_GELU, a))
        return -1;
    const double c = sqrt(2.0 / M_PI);
    for (int64_t i = 0; i < a->n * a->k; i++) {
        double x = a->x[i];
        a->y[i] = (float)(0.5 * x * (1.0 + tanh(c * (x + 0.044715 * x * x * x))));
    }
    return 0;
}

/* SWIGLU: silu(gate) * up, silu(g) = g / (1 + exp(-g)). */
int kern_cpu_ref_swiglu(kern_ctx *ctx, const kern_args *a)
{
    (void)ctx;
    if (kern_cpu_check(KERN_OP_SWIGLU, a))
        return -1;
    for (int64_t i = 0; i < a->n * a->k; i++) {
        double g = a->x[i];
        a->y[i] = (float)(g / (1.0 + exp(-g)) * (double)a->x2[i]);
    }
    return 0;
}
