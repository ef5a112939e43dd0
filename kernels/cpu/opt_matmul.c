/* opt_matmul: the CPU optimized matmul, y[n,m] = x[n,k] . w[m,k]^T (+ b).
 *
 * n == 1 (decode) is bound by reading the weights once: output rows are
 * split over the threads and each row is one dot product (4 rows per pass
 * for f32 and f16 (f16.c) so that x is loaded once for four rows;
 * kern_cpu_quant_dot (quant_dot.c) for the block formats, whose fused AVX2 kernels
 * unpack each block in registers and never store a dequantized weight).
 *
 * n > 1 (prefill): threads own panels of 16 weight rows. A panel is taken
 * in chunks of MM_KC columns, converted to f32 once (f16, block formats)
 * and kept in L1, and every group of 4 tokens is multiplied with it two
 * rows at a time: 8 independent vector accumulators, each weight and x
 * vector loaded once per 4 (resp. 2) multiply-adds. Partial sums of a
 * chunk go to y, so f32 accumulation order differs from ref's f64 dot.
 *
 * F32 and F16 weights go to x512_matmul.c instead (decode, and prefill
 * from MM_X512_MIN_N tokens) where kern_cpu_isa() says AVX-512; the code
 * here is the AVX2 / portable path (XF_CPU_ISA=avx2 or portable forces it). */
#if defined(__GNUC__) && !defined(__clang__) /* clang has no GCC optimize pragma */
#pragma GCC optimize("fp-contract=fast") /* a*b+c -> FMA in the AVX2 clones */
#endif

#include "cpu/cpu.h"
#include "cpu/quant_dot.h"
#include "cpu/vec.h"

#include <stdlib.h>
#include <string.h>

#define MM_NR 16  /* weight rows per panel */
#define MM_KC 256 /* columns per chunk: a 16-row panel chunk is 16 KiB */
#define MM_TT 4   /* tokens per tile */
/* From this many tokens the AVX-512 GEMM (x512_matmul.c) pays for packing
 * each weight panel; below, the dot tiles here are as fast. */
#define MM_X512_MIN_N 8

typedef struct mm_job {
    const kern_args *a;
    uint64_t rb; /* bytes of one weight row */
    int64_t kc;  /* columns per chunk: a multiple of the type's block */
    uint64_t cb; /* bytes of kc columns of a weight row */
    float *buf;  /* [threads, MM_NR, kc] converted panel chunks; NULL for f32 */
    int nth;
} mm_job;

/* ------------------------------------------------------------ decode */

/* y[r] for four f32 rows sharing each x load */
VEC_INLINE void mm_dot4_f32(const float *w0, const float *w1, const float *w2, const float *w3,
                            const float *x, int64_t k, float out[4])
{
    v8f s0 = v8_splat(0), s1 = v8_splat(0), s2 = v8_splat(0), s3 = v8_splat(0);
    v8f t0 = v8_splat(0), t1 = v8_splat(0), t2 = v8_splat(0), t3 = v8_splat(0);
    int64_t j = 0;
    for (; j + 16 <= k; j += 16) { /* two accumulators per row: 8 FMA chains */
        v8f xv = v8_load(x + j), xw = v8_load(x + j + 8);
        s0 += xv * v8_load(w0 + j);
        s1 += xv * v8_load(w1 + j);
        s2 += xv * v8_load(w2 + j);
        s3 += xv * v8_load(w3 + j);
        t0 += xw * v8_load(w0 + j + 8);
        t1 += xw * v8_load(w1 + j + 8);
        t2 += xw * v8_load(w2 + j + 8);
        t3 += xw * v8_load(w3 + j + 8);
    }
    for (; j + 8 <= k; j += 8) {
        v8f xv = v8_load(x + j);
        s0 += xv * v8_load(w0 + j);
        s1 += xv * v8_load(w1 + j);
        s2 += xv * v8_load(w2 + j);
        s3 += xv * v8_load(w3 + j);
    }
    out[0] = v8_hsum(s0 + t0);
    out[1] = v8_hsum(s1 + t1);
    out[2] = v8_hsum(s2 + t2);
    out[3] = v8_hsum(s3 + t3);
    for (; j < k; j++) {
        out[0] += x[j] * w0[j];
        out[1] += x[j] * w1[j];
        out[2] += x[j] * w2[j];
        out[3] += x[j] * w3[j];
    }
}

KERN_CPU_CLONES
static void mm_gemv_worker(void *arg, int ti, int tn)
{
    const mm_job *jb = arg;
    const kern_args *a = jb->a;
    int nth = kern_cpu_parts(jb->nth, tn);
    if (ti >= nth)
        return;
    const uint8_t *w = a->w;
    int64_t k = a->k, lo, hi;
    kern_cpu_range(a->m, ti, nth, 16, &lo, &hi);
    int64_t r = lo;
    if (a->w_type == XF_TYPE_F16) {
        kern_cpu_f16_gemv((const uint16_t *)(w + (uint64_t)lo * jb->rb), hi - lo, k, a->x, a->y + lo);
        if (a->b)
            for (r = lo; r < hi; r++)
                a->y[r] += a->b[r];
        return;
    }
    if (a->w_type == XF_TYPE_F32) {
        for (; r + 4 <= hi; r += 4) {
            const float *w0 = (const float *)(w + (uint64_t)r * jb->rb);
            float out[4];
            mm_dot4_f32(w0, w0 + k, w0 + 2 * k, w0 + 3 * k, a->x, k, out);
            for (int q = 0; q < 4; q++)
                a->y[r + q] = out[q] + (a->b ? a->b[r + q] : 0.0f);
        }
    }
    for (; r < hi; r++)
        a->y[r] = kern_cpu_quant_dot(a->w_type, w + (uint64_t)r * jb->rb, a->x, k) + (a->b ? a->b[r] : 0.0f);
}

/* ----------------------------------------------------------- prefill */

/* acc[t][r] = x_t . w_r over kl columns, NT tokens x NR rows, constants
 * after inlining so the accumulators live in registers. */
VEC_INLINE void mm_tile(const int NT, const int NR, const float *const *xr, const float *const *wr,
                        int64_t kl, float out[MM_TT][2])
{
    v8f acc[MM_TT][2];
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 2
        for (int r = 0; r < NR; r++)
            acc[t][r] = v8_splat(0);
    int64_t j = 0;
    for (; j + 8 <= kl; j += 8) {
        v8f wv[2];
#pragma GCC unroll 2
        for (int r = 0; r < NR; r++)
            wv[r] = v8_load(wr[r] + j);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++) {
            v8f xv = v8_load(xr[t] + j);
#pragma GCC unroll 2
            for (int r = 0; r < NR; r++)
                acc[t][r] += xv * wv[r];
        }
    }
    float sums[MM_TT * 2];
    if (NT == MM_TT && NR == 2) { /* the full tile: one vector reduction */
        v8f all = v8_hsum8_p(&acc[0][0]);
        v8_store(sums, all);
    } else {
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++)
#pragma GCC unroll 2
            for (int r = 0; r < NR; r++)
                sums[t * 2 + r] = v8_hsum(acc[t][r]);
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++)
#pragma GCC unroll 2
        for (int r = 0; r < NR; r++) {
            float s = sums[t * 2 + r];
            for (int64_t q = j; q < kl; q++)
                s += xr[t][q] * wr[r][q];
            out[t][r] = s;
        }
}

/* One tile of nt tokens x nr rows, dispatched to a specialized body. */
VEC_INLINE void mm_tile_any(int nt, int nr, const float *const *xr, const float *const *wr, int64_t kl,
                            float out[MM_TT][2])
{
    switch (nt * 2 + nr - 1) {
    case 2:
        mm_tile(1, 1, xr, wr, kl, out);
        break;
    case 3:
        mm_tile(1, 2, xr, wr, kl, out);
        break;
    case 4:
        mm_tile(2, 1, xr, wr, kl, out);
        break;
    case 5:
        mm_tile(2, 2, xr, wr, kl, out);
        break;
    case 6:
        mm_tile(3, 1, xr, wr, kl, out);
        break;
    case 7:
        mm_tile(3, 2, xr, wr, kl, out);
        break;
    case 8:
        mm_tile(4, 1, xr, wr, kl, out);
        break;
    default:
        mm_tile(4, 2, xr, wr, kl, out);
        break;
    }
}

KERN_CPU_CLONES
static void mm_gemm_worker(void *arg, int ti, int tn)
{
    const mm_job *jb = arg;
    const kern_args *a = jb->a;
    int nth = kern_cpu_parts(jb->nth, tn);
    if (ti >= nth)
        return;
    const uint8_t *w = a->w;
    int64_t n = a->n, k = a->k, m = a->m, kc = jb->kc;
    float *buf = jb->buf ? jb->buf + (int64_t)ti * MM_NR * kc : NULL; /* [MM_NR, kc] */
    int64_t p0, p1;
    kern_cpu_range((m + MM_NR - 1) / MM_NR, ti, nth, 1, &p0, &p1);
    for (int64_t p = p0; p < p1; p++) {
        int64_t r0 = p * MM_NR;
        int nr = m - r0 < MM_NR ? (int)(m - r0) : MM_NR;
        for (int64_t c0 = 0; c0 < k; c0 += kc) {
            int64_t kl = k - c0 < kc ? k - c0 : kc;
            const float *wr[MM_NR]; /* rows of this panel chunk, f32 */
            for (int q = 0; q < nr; q++) {
                const uint8_t *row = w + (uint64_t)(r0 + q) * jb->rb;
                if (a->w_type == XF_TYPE_F32) {
                    wr[q] = (const float *)row + c0;
                    continue;
                }
                float *dst = buf + q * kc;
                if (a->w_type == XF_TYPE_F16)
                    kern_cpu_f16_to_f32_row((const uint16_t *)row + c0, dst, kl);
                else
                    quant_dequant_row(a->w_type, row + (uint64_t)(c0 / kc) * jb->cb, dst, kl);
                wr[q] = dst;
            }
            for (int64_t t0 = 0; t0 < n; t0 += MM_TT) {
                int nt = n - t0 < MM_TT ? (int)(n - t0) : MM_TT;
                const float *xr[MM_TT];
                for (int t = 0; t < nt; t++)
                    xr[t] = a->x + (t0 + t) * k + c0;
                for (int q = 0; q < nr; q += 2) {
                    int nq = nr - q < 2 ? nr - q : 2;
                    float out[MM_TT][2];
                    mm_tile_any(nt, nq, xr, wr + q, kl, out);
                    for (int t = 0; t < nt; t++)
                        for (int r = 0; r < nq; r++) {
                            float *y = a->y + (t0 + t) * m + r0 + q + r;
                            *y = c0 == 0 ? out[t][r] + (a->b ? a->b[r0 + q + r] : 0.0f) : *y + out[t][r];
                        }
                }
            }
        }
    }
}

int kern_cpu_opt_matmul(kern_ctx *ctx, const kern_args *a)
{
    if (kern_cpu_check(KERN_OP_MATMUL, a))
        return -1;
    if ((a->w_type == XF_TYPE_F32 || a->w_type == XF_TYPE_F16) && (a->n == 1 || a->n >= MM_X512_MIN_N) &&
        kern_cpu_isa() == KERN_CPU_ISA_AVX512)
        return kern_cpu_x512_gemm(ctx, a);
    mm_job jb = {.a = a, .nth = kern_cpu_threads(ctx)};
    quant_row_bytes(a->w_type, a->k, &jb.rb);
    double work = (double)a->n * (double)a->m * (double)a->k; /* multiply-adds */
    if (a->n == 1) {
        kern_cpu_run(ctx, work >= 65536, mm_gemv_worker, &jb);
        return 0;
    }
    /* Chunks must hold whole blocks of the weight type. */
    int64_t be = quant_type_get(a->w_type)->block_elems;
    jb.kc = be >= MM_KC ? be : MM_KC / be * be;
    if (jb.kc > a->k)
        jb.kc = a->k;
    quant_row_bytes(a->w_type, jb.kc, &jb.cb);
    if (a->w_type != XF_TYPE_F32) {
        jb.buf = aligned_alloc(64, ((size_t)jb.nth * MM_NR * (size_t)jb.kc * sizeof(float) + 63) / 64 * 64);
        if (!jb.buf)
            return -1;
    }
    kern_cpu_run(ctx, work >= 65536, mm_gemm_worker, &jb);
    free(jb.buf);
    return 0;
}
