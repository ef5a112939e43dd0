/* q8_matmul: the CPU `q8` matmul variant, y[n,m] = x[n,k] . w[m,k]^T (+ b),
 * for Q8_0, Q4_0, Q5_0, Q4_K and Q6_K weights (the types of a Q4_K_M file,
 * whose rows that are not whole 256-blocks fall back to Q5_0/Q8_0; every
 * other type goes to opt, kern_cpu_opt_matmul).
 *
 * As llama.cpp does: each x row is quantized once per op to blocks of 32
 * int8 with an f32 scale (and the block's sum of quants, which Q4_K's mins
 * and the Q4_0/Q6_K offsets need), and each weight block is multiplied with
 * them in integers: u8 x s8 products summed four at a time (AVX2 maddubs +
 * madd, or one AVX-VNNI dpbusd), then scaled once per block in f32. Half the
 * x bytes to read, no weight converted to float, four times the products
 * per instruction of opt's f32 dots.
 *
 * The price is x's rounding: |x - dx*qx| <= dx/2 with dx = max|x_block|/127,
 * so the result differs from ref's by at most sum_j |w_j| * dx_j/2 (plus f32
 * rounding): close to 0.4% of sum|w*x| for smooth x, which is why `q8` is
 * not the default (`check` shows it; tests/test_kernels_cpu_q8.c proves the
 * bound).
 *
 * Paths: portable C always; AVX2 and AVX-VNNI (q8_body.h, compiled twice
 * under target attributes) where cpuid says the CPU has them. XF_CPU_ISA =
 * portable|avx2|vnni caps the choice (tests run every path; a request the
 * CPU cannot run falls to the best it can). Threads split output rows as
 * opt does. */
#include "cpu/cpu.h"

#include <math.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

typedef struct q8_blk {
    float d;      /* scale: x ~ d*q */
    int32_t sum;  /* sum of q */
    /* sums of q[4l..4l+3]: the i32 lanes of an x86 block dot, so that a
     * quant offset o (Q4_0 8, Q5_0 16, Q6_K 32) costs a shift and a
     * subtraction, sum((q-o)*x) = dot(q, x) - o*ls, not a second dot */
    int32_t ls[8];
    int8_t q[32]; /* quants, |q| <= 127 */
} q8_blk;

static inline float q8_h(const uint8_t *p) { return xf_f16_to_f32((uint16_t)(p[0] | (p[1] << 8))); }

/* one row of k (a multiple of 32) floats into k/32 blocks. A block with a
 * NaN or Inf gets scale NaN, so that the dot is NaN as opt's would be. */
static void q8_quantize(const float *x, q8_blk *o, int64_t k)
{
    for (int64_t b = 0; b < k / 32; b++, x += 32, o++) {
        float amax = 0;
        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        int32_t sum = 0;
        if (!isfinite(amax) || isnan(amax)) {
            memset(o->q, 0, sizeof o->q);
            memset(o->ls, 0, sizeof o->ls);
            o->d = NAN;
        } else {
            const float d = amax / 127.0f, id = d > 0 ? 127.0f / amax : 0.0f;
            for (int j = 0; j < 32; j++) {
                const int v = (int)lrintf(x[j] * id);
                o->q[j] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
                sum += o->q[j];
                o->ls[j / 4] = (j % 4 ? o->ls[j / 4] : 0) + o->q[j];
            }
            o->d = d;
        }
        for (int j = 0; j < 32; j++)
            if (!isfinite(x[j]))
                o->d = NAN; /* fmaxf drops NaN */
        o->sum = sum;
    }
}

/* ------------------------------------------------------------ portable */

static int32_t q8_idot(const int8_t *a, const int8_t *b, int n)
{
    int32_t s = 0;
    for (int j = 0; j < n; j++)
        s += a[j] * b[j];
    return s;
}

static float q8_row_portable(int type, const uint8_t *w, const q8_blk *x, int64_t k)
{
    float acc = 0;
    int8_t q[256];
    if (type == XF_TYPE_Q8_0 || type == XF_TYPE_Q4_0 || type == XF_TYPE_Q5_0) {
        const int bb = type == XF_TYPE_Q8_0 ? 34 : type == XF_TYPE_Q4_0 ? 18 : 22;
        for (int64_t i = 0; i < k / 32; i++) {
            const uint8_t *p = w + bb * i;
            if (type == XF_TYPE_Q8_0)
                memcpy(q, p + 2, 32);
            else if (type == XF_TYPE_Q5_0) {
                const uint32_t qh = (uint32_t)p[2] | (uint32_t)p[3] << 8 | (uint32_t)p[4] << 16 | (uint32_t)p[5] << 24;
                for (int j = 0; j < 16; j++) {
                    q[j] = (int8_t)(((p[6 + j] & 15) | ((qh >> j & 1) << 4)) - 16);
                    q[j + 16] = (int8_t)(((p[6 + j] >> 4) | ((qh >> (j + 16) & 1) << 4)) - 16);
                }
            } else
                for (int j = 0; j < 16; j++) {
                    q[j] = (int8_t)((p[2 + j] & 15) - 8);
                    q[j + 16] = (int8_t)((p[2 + j] >> 4) - 8);
                }
            acc += (float)q8_idot(q, x[i].q, 32) * (q8_h(p) * x[i].d);
        }
        return acc;
    }
    for (int64_t i = 0; i < k / 256; i++) {
        const q8_blk *xb = x + 8 * i;
        if (type == XF_TYPE_Q4_K) {
            const uint8_t *p = w + 144 * i;
            int sc[8], mn[8];
            quant_k4_scales(p + 4, sc, mn);
            const float d = q8_h(p), dmin = q8_h(p + 2);
            for (int s = 0; s < 8; s++) {
                for (int l = 0; l < 32; l++)
                    q[l] = (int8_t)(s % 2 ? p[16 + 32 * (s / 2) + l] >> 4 : p[16 + 32 * (s / 2) + l] & 15);
                acc += (float)q8_idot(q, xb[s].q, 32) * (d * (float)sc[s] * xb[s].d) -
                       dmin * (float)mn[s] * xb[s].d * (float)xb[s].sum;
            }
            continue;
        }
        /* Q6_K, as base/quant.c dequantizes it: q[e] for element e */
        const uint8_t *p = w + 210 * i;
        const int8_t *sc = (const int8_t *)(p + 192);
        const float d = q8_h(p + 208);
        for (int n = 0; n < 2; n++) {
            const uint8_t *ql = p + 64 * n, *qh = p + 128 + 32 * n;
            for (int l = 0; l < 32; l++) {
                q[128 * n + l] = (int8_t)(((ql[l] & 15) | ((qh[l] & 3) << 4)) - 32);
                q[128 * n + l + 32] = (int8_t)(((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32);
                q[128 * n + l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                q[128 * n + l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        for (int s = 0; s < 16; s++) /* sub-blocks of 16: half of x block s/2 */
            acc += (float)q8_idot(q + 16 * s, xb[s / 2].q + 16 * (s % 2), 16) * (d * (float)sc[s] * xb[s / 2].d);
    }
    return acc;
}

/* ----------------------------------------------------------------- x86 */

#define Q8_NT 4 /* tokens per weight-row pass (prefill): each block unpacked once for 4 */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
#define Q8_X86 1
#include <immintrin.h>

#define Q8_ISA_VNNI 0
#define Q8_SFX(f) q8_avx2_##f
#define Q8_TGT __attribute__((target("avx2,fma,f16c")))
#include "cpu/q8_body.h"
#undef Q8_ISA_VNNI
#undef Q8_SFX
#undef Q8_TGT

#define Q8_ISA_VNNI 1
#define Q8_SFX(f) q8_vnni_##f
#define Q8_TGT __attribute__((target("avx2,fma,f16c,avxvnni")))
#include "cpu/q8_body.h"
#undef Q8_ISA_VNNI
#undef Q8_SFX
#undef Q8_TGT
#else
#define Q8_X86 0
#endif

/* the best of the 256-bit paths (portable, AVX2, AVX-VNNI) this build has */
static int q8_isa_ymm(void)
{
#if Q8_X86
    return kern_cpu_isa_ymm();
#else
    return KERN_CPU_ISA_PORTABLE;
#endif
}

/* The best path this CPU runs, capped by XF_CPU_ISA (read per op, so that
 * tests may switch it between calls). */
int kern_cpu_q8_isa(void)
{
    int best = q8_isa_ymm();
    if (best >= KERN_CPU_ISA_AVX2 && kern_cpu_q8z_cpu())
        best = KERN_CPU_ISA_AVX512; /* an AVX-512 CPU without AVX-VNNI (Ice Lake) falls to AVX2 below it */
    const int want = kern_cpu_isa_cap();
    if (want >= best)
        return best;
    /* below AVX-512, the best 256-bit path at or under the cap: a CPU with
     * AVX-512 VNNI need not have AVX-VNNI (AMD Zen 4, Cascade Lake), and
     * XF_CPU_ISA=vnni there must not run VEX vpdpbusd (SIGILL) */
    const int ymm = q8_isa_ymm();
    return want < ymm ? want : ymm;
}

/* out[t] = w . x_t for t < nt <= Q8_NT tokens, x_t = x + t*xs blocks */
static void q8_rows(int isa, int type, const uint8_t *w, const q8_blk *x, int64_t xs, int64_t k, int nt, float *out)
{
#if Q8_X86
    if (isa == KERN_CPU_ISA_VNNI) {
        q8_vnni_rows(type, w, x, xs, k, nt, out);
        return;
    }
    if (isa == KERN_CPU_ISA_AVX2) {
        q8_avx2_rows(type, w, x, xs, k, nt, out);
        return;
    }
#endif
    (void)isa;
    for (int t = 0; t < nt; t++)
        out[t] = q8_row_portable(type, w, x + t * xs, k);
}

/* ------------------------------------------------------------- the op */

#define Q8_RB 16 /* weight rows per panel in prefill: kept in L1/L2 across tokens */

typedef struct q8_job {
    const kern_args *a;
    const q8_blk *xq; /* [n, k/32], or NULL on the AVX-512 path */
    const uint8_t *zx; /* x in q8_avx512.c's layout, or NULL */
    int zrows;         /* weight rows its kernels take at once */
    int panel;         /* x in the K layout, Q8_RB rows a call (kern_cpu_q8z_panel) */
    uint64_t rb;      /* bytes of one weight row */
    int nth, isa;
    uint8_t *redo; /* [n] K layout: tokens opt computes again (q8_outlier_token), or NULL */
} q8_job;

static void q8_worker(void *arg, int ti, int tn)
{
    const q8_job *jb = arg;
    const kern_args *a = jb->a;
    const int nth = kern_cpu_parts(jb->nth, tn);
    if (ti >= nth)
        return;
    int64_t lo, hi;
    const int64_t nbx = a->k / 32;
    kern_cpu_range(a->m, ti, nth, 16, &lo, &hi);
    for (int64_t r0 = lo; r0 < hi; r0 += Q8_RB) {
        const int64_t r1 = r0 + Q8_RB < hi ? r0 + Q8_RB : hi;
        if (jb->panel) {
            kern_cpu_q8z_panel(a->w_type, (const uint8_t *)a->w + (uint64_t)r0 * jb->rb, (int64_t)jb->rb, (int)(r1 - r0),
                               jb->zx, a->n, a->k, 0, a->n, a->y + r0, a->m, a->b ? a->b + r0 : NULL);
            continue;
        }
        const int tile = jb->zx ? KERN_CPU_Q8Z_TILE : Q8_NT;
        for (int64_t t0 = 0; t0 < a->n; t0 += tile) {
            const int nt = a->n - t0 < tile ? (int)(a->n - t0) : tile;
            for (int64_t r = r0; r < r1;) {
                float out[2 * KERN_CPU_Q8Z_TILE];
                const uint8_t *wr = (const uint8_t *)a->w + (uint64_t)r * jb->rb;
                int rows = 1;
                if (jb->zx) {
                    rows = r + 1 < r1 ? jb->zrows : 1;
                    kern_cpu_q8z_rows(a->w_type, rows, wr, (int64_t)jb->rb, jb->zx, a->n, a->k, t0, nt, out);
                } else
                    q8_rows(jb->isa, a->w_type, wr, jb->xq + t0 * nbx, nbx, a->k, nt, out);
                for (int q = 0; q < rows; q++)
                    for (int t = 0; t < nt; t++)
                        a->y[(t0 + t) * a->m + r + q] = out[q * KERN_CPU_Q8Z_TILE + t] + (a->b ? a->b[r + q] : 0.0f);
                r += rows;
            }
        }
    }
}

/* The K layout scales x per 256 values, as llama.cpp's Q8_K. A token of
 * Qwen2.5 with a "massive activation" (one channel ~100x the rest, in a
 * few layers' ffn_down input) then leaves every other 32-value sub-block
 * of that 256 a handful of levels: on the Qwen2.5-Coder-1.5B chat prompt,
 * blk.26.ffn_out came out 539 off and the logits at nmse 0.02 against HF
 * (session 7), where x scaled per 32 gave 7e-4. Such a token: a 256-block
 * whose largest |x| is over Q8_OUTLIER times the median of its eight
 * sub-block maxima (the median sub-block keeps under 3 levels of its 127).
 * 48, not 16: on the 1.5B, 16 redid 1 token in 3 of some ffn_down ops and
 * cost 28% of q8 prefill; 48 costs ~8% and keeps the logits at nmse 4.6e-4
 * against HF (16: 3.2e-4; none: 0.0203).
 * The pass computes it anyway; opt then computes its row again, in float. */
#define Q8_OUTLIER 48.0f

static int q8_outlier_token(const float *x, int64_t k)
{
    for (int64_t i = 0; i + 256 <= k; i += 256) {
        float mb[8], m = 0.0f;
        for (int b = 0; b < 8; b++) {
            float v = 0.0f;
            for (int e = 0; e < 32; e++) {
                float a = fabsf(x[i + 32 * b + e]);
                v = a > v ? a : v;
            }
            mb[b] = v;
            m = v > m ? v : m;
        }
        for (int b = 1; b < 8; b++) /* insertion sort of 8 */
            for (int c = b; c > 0 && mb[c - 1] > mb[c]; c--) {
                float t = mb[c];
                mb[c] = mb[c - 1];
                mb[c - 1] = t;
            }
        /* an infinite x stays q8's (its output is NaN, as q8 promises) */
        if (m > Q8_OUTLIER * 0.5f * (mb[3] + mb[4]) && isfinite(m))
            return 1;
    }
    return 0;
}

/* y's rows of the tokens marked in redo, again by opt in float: the rows
 * gathered into one matmul (opt's GEMM for several, its gemv for one),
 * then put back; 0, or -1 when out of memory or opt fails */
static int q8_redo_rows(kern_ctx *ctx, const kern_args *a, const uint8_t *redo)
{
    int64_t c = 0;
    for (int64_t t = 0; t < a->n; t++)
        c += redo[t];
    if (c == 0)
        return 0;
    float *xs = malloc((size_t)c * (size_t)(a->k + a->m) * sizeof *xs); /* [c, k] then [c, m] */
    if (!xs)
        return -1;
    float *ys = xs + c * a->k;
    for (int64_t t = 0, i = 0; t < a->n; t++)
        if (redo[t])
            memcpy(xs + i++ * a->k, a->x + t * a->k, (size_t)a->k * sizeof *xs);
    kern_args g = *a;
    g.n = c;
    g.x = xs;
    g.y = ys;
    int rc = kern_cpu_opt_matmul(ctx, &g);
    for (int64_t t = 0, i = 0; rc == 0 && t < a->n; t++)
        if (redo[t])
            memcpy(a->y + t * a->m, ys + i++ * a->m, (size_t)a->m * sizeof *ys);
    free(xs);
    return rc;
}

static void q8_zquant_worker(void *arg, int ti, int tn)
{
    const q8_job *jb = arg;
    const int nth = kern_cpu_parts(jb->nth, tn);
    if (ti >= nth)
        return;
    int64_t lo, hi;
    kern_cpu_range(jb->a->n, ti, nth, 1, &lo, &hi);
    kern_cpu_q8z_quantize(jb->a->w_type, jb->a->x, jb->a->n, jb->a->k, lo, hi, (void *)jb->zx);
    if (jb->redo)
        for (int64_t t = lo; t < hi; t++)
            jb->redo[t] = (uint8_t)q8_outlier_token(jb->a->x + t * jb->a->k, jb->a->k);
}

/* bytes of x in q8_avx512.c's layout, plus room to align it to a cache
 * line; 0 when the AVX-512 path will not run a (isa: the path chosen) */
static size_t q8_zbytes(const kern_args *a, int isa)
{
    if (isa != KERN_CPU_ISA_AVX512 || !kern_cpu_q8z_supported(a->w_type, a->k))
        return 0;
    const int64_t b = kern_cpu_q8z_bytes(a->n, a->k);
    return b < 0 || (uint64_t)b > SIZE_MAX / 2 ? 0 : (size_t)b + 64;
}

size_t kern_cpu_q8_scratch_bytes(const kern_args *a)
{
    return q8_zbytes(a, kern_cpu_q8_isa());
}

/* the AVX-512 path: x in q8_avx512.c's layout, in ctx's scratch when it
 * is large enough (no allocation, no page faults per op), else in a
 * buffer of its own; -1 when out of memory */
static int q8_matmul_z(kern_ctx *ctx, const kern_args *a, q8_job *jb)
{
    const size_t bytes = q8_zbytes(a, jb->isa);
    if (!bytes)
        return -1;
    uint8_t *own = NULL, *zx;
    if (ctx && ctx->scratch && ctx->scratch_size >= bytes)
        zx = (uint8_t *)(((uintptr_t)ctx->scratch + 63) & ~(uintptr_t)63);
    else if (!(zx = own = aligned_alloc(64, (bytes + 63) / 64 * 64)))
        return -1;
    jb->zx = zx;
    jb->zrows = a->n == 1 ? 1 : kern_cpu_q8z_rows_max(a->w_type, a->k);
    jb->panel = kern_cpu_q8z_panel_ok(a->w_type, a->n, a->k);
    /* the tokens whose x the per-256 scale would wreck (q8_outlier_token) */
    jb->redo = jb->panel ? calloc((size_t)a->n, 1) : NULL;
    if (jb->panel && !jb->redo) {
        free(own);
        return -1;
    }
    /* quantizing x is worth the threads from a few tokens on */
    kern_cpu_run(ctx, a->n >= 4, q8_zquant_worker, jb);
    const double work = (double)a->n * (double)a->m * (double)a->k;
    kern_cpu_run(ctx, work >= 65536, q8_worker, jb);
    int rc = jb->redo ? q8_redo_rows(ctx, a, jb->redo) : 0;
    free(jb->redo);
    free(own);
    return rc;
}

/* q8 on the best path of this CPU at or below cap (the `q8-*` variants
 * name one path each, so that `check` can judge each alone) */
static int q8_matmul_cap(kern_ctx *ctx, const kern_args *a, int cap)
{
    if (kern_cpu_check(KERN_OP_MATMUL, a))
        return -1;
    int isa = kern_cpu_q8_isa();
    if (isa > cap)
        isa = cap == KERN_CPU_ISA_VNNI ? q8_isa_ymm() : cap;
    q8_job jb = {.a = a, .nth = kern_cpu_threads(ctx), .isa = isa};
    quant_row_bytes(a->w_type, a->k, &jb.rb);
    if (jb.isa == KERN_CPU_ISA_AVX512 && q8_matmul_z(ctx, a, &jb) == 0)
        return 0;
    if (a->w_type != XF_TYPE_Q8_0 && a->w_type != XF_TYPE_Q4_0 && a->w_type != XF_TYPE_Q5_0 &&
        a->w_type != XF_TYPE_Q4_K && a->w_type != XF_TYPE_Q6_K)
        return kern_cpu_opt_matmul(ctx, a);
    if (jb.isa == KERN_CPU_ISA_AVX512)
        jb.isa = q8_isa_ymm(); /* the AVX-512 layout did not fit in memory */
    q8_blk *xq = malloc((size_t)(a->n * (a->k / 32)) * sizeof *xq + 1);
    if (!xq)
        return kern_cpu_opt_matmul(ctx, a); /* slower, still right */
    for (int64_t t = 0; t < a->n; t++)
        q8_quantize(a->x + t * a->k, xq + t * (a->k / 32), a->k);
    jb.xq = xq;
    const double work = (double)a->n * (double)a->m * (double)a->k;
    kern_cpu_run(ctx, work >= 65536, q8_worker, &jb);
    free(xq);
    return 0;
}

int kern_cpu_q8_matmul(kern_ctx *ctx, const kern_args *a) { return q8_matmul_cap(ctx, a, KERN_CPU_ISA_AVX512); }
int kern_cpu_q8_matmul_avx512(kern_ctx *ctx, const kern_args *a)
{
    return q8_matmul_cap(ctx, a, KERN_CPU_ISA_AVX512);
}
int kern_cpu_q8_matmul_vnni(kern_ctx *ctx, const kern_args *a) { return q8_matmul_cap(ctx, a, KERN_CPU_ISA_VNNI); }
int kern_cpu_q8_matmul_avx2(kern_ctx *ctx, const kern_args *a) { return q8_matmul_cap(ctx, a, KERN_CPU_ISA_AVX2); }
int kern_cpu_q8_matmul_c(kern_ctx *ctx, const kern_args *a) { return q8_matmul_cap(ctx, a, KERN_CPU_ISA_PORTABLE); }
