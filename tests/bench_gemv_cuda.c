/* bench_gemv_cuda: the one-token kernels of issue 13 against the memory
 * floor, on the card it runs on:
 *  1. device-to-device copy bandwidth (cudaMemcpyAsync of 1 GiB, bytes read
 *     + written per second): the ceiling every figure below is a share of;
 *  2. MATMUL n = 1, every weight type, on the matrices of a Qwen2.5-0.5B
 *     and 1.5B decode step (q, k, gate, down, head): the old matrix-vector
 *     kernel (kern_cuda_matvec_mv4), gemv.cu's kernel (kern_cuda_gemv) and
 *     the opt variant (which of the two kern_cuda_gemv_prefer picks), weight
 *     bytes / time of opt as GB/s and as % of the copy;
 *  3. the attention of one token at n_kv 1 .. 16384: the opt chain KQ ->
 *     SOFTMAX -> KQV against kern_cuda_attn_decode (GQA 14/2 x 64 and MHA 12
 *     x 64), with the bytes of K and V that must be read;
 *  4. (`mm [N]` only) MATMUL of an N-token prefill (default 512) on the
 *     Qwen2.5 0.5B and 1.5B matrices, F16 and the block types the bench
 *     models use: opt (matmul_split.cu's tensor-core path) in us and useful
 *     TFLOP/s (2 m k N / time), with the codes made in each call and kept
 *     (kern_cuda_codes_keep, as exec keeps a model's), beside cublasGemmEx with f16 weights and f16
 *     x (f32 accumulate: one product a weight, the speed llama.cpp's F16
 *     prefill gets from cuBLAS) on the same shape; BF16 and F32 both
 *     ways: "-sg" is cuBLAS SGEMM (kern_cuda_split_float off, the
 *     default), the plain name the split product. `mm N TYPE MATRIX` runs
 *     only that type (its name, e.g. Q4_K) and the matrices whose name has
 *     MATRIX (e.g. "0.5B gate"): one shape for a profiler.
 * Timing: a CUDA graph of 20 back-to-back calls (launch gaps as in the
 * decode graph), replayed after warm-up; the median of 50 replays / 20.
 * Inputs rotate over copies (weights) or layers (caches) so that no call
 * finds its data in the 50 MB L2 unless the decode step would. Weights are
 * random bytes with sane f16 scales (timing does not depend on values; the
 * tests check the values). Usage: bench_gemv_cuda [quick | attn [N_KV]]
 * (attn: only part 3, at one of its n_kv if given) | mm [N [TYPE [MATRIX]]]. Not run by ctest. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "quant.h"

#ifndef XF_HAVE_CUDA
int main(void)
{
    printf("bench_gemv_cuda: built without CUDA\n");
    return 0;
}
#else
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "cuda/attn_decode.h"
#include "cuda/gemv.h"
#include "kernels_cuda.h"

#define NB 20    /* calls per graph */
#define RUNS 50  /* replays timed */
#define ROT (320u << 20) /* bytes of weight copies to rotate over, beyond L2 */

static cudaStream_t st;
static kern_ctx ctx;
static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t rnd(void)
{
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1Dull;
}

static void *dev(size_t bytes)
{
    void *p = NULL;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        fprintf(stderr, "cudaMalloc %zu failed\n", bytes);
        exit(1);
    }
    return p;
}

static int cmpf(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* median time of one call (us): fn(i, arg) for i in 0..NB-1, captured as one graph */
static double time_graph(int (*fn)(int i, void *arg), void *arg)
{
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    if (cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal) != cudaSuccess)
        return NAN;
    int rc = 0;
    for (int i = 0; i < NB; i++)
        rc |= fn(i, arg);
    if (cudaStreamEndCapture(st, &g) != cudaSuccess || rc || cudaGraphInstantiate(&ge, g, 0) != cudaSuccess) {
        cudaGetLastError();
        if (g)
            cudaGraphDestroy(g);
        return NAN;
    }
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float t[RUNS];
    for (int i = 0; i < 5; i++)
        cudaGraphLaunch(ge, st);
    for (int i = 0; i < RUNS; i++) {
        cudaEventRecord(e0, st);
        cudaGraphLaunch(ge, st);
        cudaEventRecord(e1, st);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&t[i], e0, e1);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    if (cudaGetLastError() != cudaSuccess)
        return NAN;
    qsort(t, RUNS, sizeof t[0], cmpf);
    return 1000.0 * t[RUNS / 2] / NB;
}

static double copy_bandwidth(void)
{
    size_t bytes = (size_t)1 << 30;
    void *a = dev(bytes), *b = dev(bytes);
    cudaMemsetAsync(a, 1, bytes, st);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float t[21];
    for (int i = 0; i < 23; i++) {
        cudaEventRecord(e0, st);
        cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, st);
        cudaEventRecord(e1, st);
        cudaEventSynchronize(e1);
        if (i >= 2)
            cudaEventElapsedTime(&t[i - 2], e0, e1);
    }
    qsort(t, 21, sizeof t[0], cmpf);
    cudaFree(a);
    cudaFree(b);
    return 2.0 * (double)bytes / (t[10] * 1e-3); /* read + written */
}

/* ---- matrix-vector -------------------------------------------------------- */

typedef struct mv_case {
    kern_args a;
    const uint8_t *copies; /* ncopy matrices of `bytes`, back to back */
    size_t bytes;
    int ncopy;
    int mode; /* 0: the opt variant, 1: kern_cuda_matvec_mv4, 2: kern_cuda_gemv (opt for float types) */
} mv_case;

static kern_fn opt_matmul;

static int mv_call(int i, void *arg)
{
    mv_case *c = arg;
    kern_args a = c->a;
    a.w = c->copies + (size_t)(i % c->ncopy) * c->bytes;
    if (c->mode == 1)
        return kern_cuda_matvec_mv4(&ctx, &a);
    int rc = c->mode == 2 ? kern_cuda_gemv(&ctx, &a, NULL) : 1;
    return rc == 1 ? opt_matmul(&ctx, &a) : rc;
}

/* random bytes whose f16 scales (and float elements) are finite and tame */
static void tame(int type, uint8_t *p, size_t bytes)
{
    const quant_type_info *t = quant_type_get(type);
    size_t bb = (size_t)t->block_bytes;
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
        uint64_t r = rnd();
        memcpy(p + i, &r, 8);
    }
    if (type == XF_TYPE_F32) {
        for (size_t i = 0; i + 4 <= bytes; i += 4) {
            uint32_t u;
            memcpy(&u, p + i, 4);
            u = (u & 0x807FFFFFu) | 0x3D800000u; /* |v| in [1/16, 1/8) */
            memcpy(p + i, &u, 4);
        }
        return;
    }
    if (type == XF_TYPE_F16 || type == XF_TYPE_BF16) {
        for (size_t i = 0; i + 2 <= bytes; i += 2) {
            uint16_t h;
            memcpy(&h, p + i, 2);
            h = type == XF_TYPE_F16 ? (uint16_t)((h & 0x83FFu) | 0x2C00u) : (uint16_t)((h & 0x807Fu) | 0x3D80u);
            memcpy(p + i, &h, 2);
        }
        return;
    }
    /* the f16 fields of each block: d (and m / dmin) first, Q6_K's d last */
    uint16_t d = 0x2000; /* 2^-7 */
    for (size_t b = 0; b + bb <= bytes; b += bb) {
        if (type == XF_TYPE_Q6_K) {
            memcpy(p + b + 208, &d, 2);
            continue;
        }
        memcpy(p + b, &d, 2);
        if (type == XF_TYPE_Q4_1 || type == XF_TYPE_Q5_1 || type == XF_TYPE_Q4_K || type == XF_TYPE_Q5_K)
            memcpy(p + b + 2, &d, 2);
    }
}

static const int types[] = {XF_TYPE_F32,  XF_TYPE_F16,  XF_TYPE_BF16, XF_TYPE_Q8_0, XF_TYPE_Q4_0, XF_TYPE_Q4_1,
                            XF_TYPE_Q5_0, XF_TYPE_Q5_1, XF_TYPE_Q4_K, XF_TYPE_Q5_K, XF_TYPE_Q6_K};

typedef struct mshape {
    const char *name;
    int64_t m, k;
} mshape;

static const mshape mshapes[] = {
    {"0.5B q", 896, 896},        {"0.5B k", 128, 896},       {"0.5B gate", 4864, 896},
    {"0.5B down", 896, 4864},    {"0.5B head", 151936, 896}, {"1.5B q", 1536, 1536},
    {"1.5B k", 256, 1536},       {"1.5B gate", 8960, 1536},  {"1.5B down", 1536, 8960},
    {"1.5B head", 151936, 1536},
};

static void bench_matvec(double bw, int quick)
{
    size_t maxb = 0;
    for (size_t s = 0; s < sizeof mshapes / sizeof mshapes[0]; s++)
        maxb = (size_t)mshapes[s].m * mshapes[s].k * 4 > maxb ? (size_t)mshapes[s].m * mshapes[s].k * 4 : maxb;
    uint8_t *host = malloc(maxb);
    uint8_t *master = dev(maxb), *rot = dev(ROT);
    float *x = dev(16384 * sizeof(float)), *y = dev(160000 * sizeof(float)); /* [1, k], [1, m] */
    float *hx = malloc(16384 * sizeof *hx);
    for (int i = 0; i < 16384; i++)
        hx[i] = (float)((int64_t)(rnd() >> 40) - (1 << 23)) / (float)(1 << 23) + 1e-3f;
    cudaMemcpy(x, hx, 16384 * sizeof(float), cudaMemcpyHostToDevice);
    printf("\n== MATMUL n=1 (weights streamed once; GB/s = weight bytes / time; %% of the %.0f GB/s copy)\n", bw / 1e9);
    printf("(old: the 16-bit-load kernel; gemv: gemv.cu's staged kernel; opt: what the variant picks)\n");
    printf("%-5s %-10s %-14s %8s %8s %8s %8s %8s %7s %8s\n", "type", "matrix", "[m x k]", "MB", "old us", "gemv us",
           "opt us", "opt GB/s", "% copy", "opt/old");
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        int type = types[t];
        size_t tb = 0; /* this type's largest matrix: the rest are prefixes of it */
        for (size_t s = 0; s < sizeof mshapes / sizeof mshapes[0]; s++) {
            uint64_t rb;
            if (quant_row_bytes(type, mshapes[s].k, &rb) && rb * mshapes[s].m > tb)
                tb = (size_t)(rb * mshapes[s].m);
        }
        tame(type, host, tb);
        cudaMemcpy(master, host, tb, cudaMemcpyHostToDevice);
        for (size_t s = 0; s < sizeof mshapes / sizeof mshapes[0]; s++) {
            const mshape *sh = &mshapes[s];
            uint64_t rb;
            if (!quant_row_bytes(type, sh->k, &rb)) {
                printf("%-5s %-10s [%6lld x %5lld]  (rows not a whole number of blocks)\n", quant_type_name(type),
                       sh->name, (long long)sh->m, (long long)sh->k);
                continue;
            }
            if (quick && strstr(sh->name, "1.5B"))
                continue;
            size_t bytes = (size_t)(rb * sh->m);
            mv_case c = {.a = {.x = x, .w_type = type, .y = y, .n = 1, .k = sh->k, .m = sh->m}, .bytes = bytes};
            if (bytes * 2 > ROT) {
                c.copies = master, c.ncopy = 1;
            } else {
                c.ncopy = (int)(ROT / bytes) < NB ? (int)(ROT / bytes) : NB;
                for (int i = 0; i < c.ncopy; i++)
                    cudaMemcpy(rot + (size_t)i * bytes, master, bytes, cudaMemcpyDeviceToDevice);
                c.copies = rot;
            }
            c.mode = 1;
            double to = time_graph(mv_call, &c);
            c.mode = 2;
            double tg = time_graph(mv_call, &c);
            c.mode = 0;
            double tn = time_graph(mv_call, &c);
            double gbs = (double)bytes / (tn * 1e-6) / 1e9;
            printf("%-5s %-10s [%6lld x %5lld] %8.2f %8.2f %8.2f %8.2f %8.0f %6.0f%% %7.2fx\n", quant_type_name(type),
                   sh->name, (long long)sh->m, (long long)sh->k, bytes / 1e6, to, tg, tn, gbs, 100.0 * gbs * 1e9 / bw,
                   to / tn);
        }
    }
    free(host);
    free(hx);
    cudaFree(master);
    cudaFree(rot);
    cudaFree(x);
    cudaFree(y);
}

/* ---- attention of one token ----------------------------------------------- */

#define AT_LAYERS 24

typedef struct at_case {
    int H, KV, Dh, n_kv, fused; /* fused: 0 the opt chain, 1 attn_decode, 2 kern_cuda_attn_fused */
    float *q, *kc[AT_LAYERS], *vc[AT_LAYERS], *kq, *soft, *kqv, *part;
    int *cnt;
    int64_t part_floats;
    void *scratch;
    size_t scratch_size;
} at_case;

static kern_fn opt_kq, opt_softmax, opt_kqv;

static int at_call(int i, void *arg)
{
    at_case *c = arg;
    int l = i % AT_LAYERS;
    float scale = 1.0f / sqrtf((float)c->Dh);
    if (c->fused == 1) {
        kern_attn_decode p = {.q = c->q, .kc = c->kc[l], .vc = c->vc[l], .kq = c->kq, .kq_soft = c->soft,
                              .kqv = c->kqv, .scratch = c->scratch, .scratch_size = c->scratch_size,
                              .n_head = c->H, .n_head_kv = c->KV, .head_dim = c->Dh, .n_kv = c->n_kv,
                              .pos0 = c->n_kv - 1, .scale = scale};
        return kern_cuda_attn_decode(&ctx, &p);
    }
    kern_args k = {.x = c->q, .kc = c->kc[l], .y = c->kq, .n = 1, .n_head = c->H, .n_head_kv = c->KV,
                   .head_dim = c->Dh, .n_kv = c->n_kv, .pos0 = c->n_kv - 1, .scale = scale};
    kern_args s = {.x = c->kq, .y = c->soft, .n = c->H, .m = c->n_kv};
    kern_args v = {.x = c->soft, .vc = c->vc[l], .y = c->kqv, .n = 1, .n_head = c->H, .n_head_kv = c->KV,
                   .head_dim = c->Dh, .n_kv = c->n_kv, .pos0 = c->n_kv - 1};
    if (c->fused == 2)
        return kern_cuda_attn_fused(&ctx, &k, &s, &v, c->cnt, c->part, c->part_floats) ? -1 : 0;
    return opt_kq(&ctx, &k) || opt_softmax(&ctx, &s) || opt_kqv(&ctx, &v) ? -1 : 0;
}

static void bench_attention(double bw, int only_nkv)
{
    static const int nkvs[] = {1, 128, 512, 1024, 2048, 4096, 8192, 16384};
    static const int shp[][3] = {{14, 2, 64}, {12, 12, 64}};
    const int nmax = 16384;
    printf("\n== attention of one token (opt KQ+SOFTMAX+KQV, the decode fast path kern_cuda_attn_fused, and "
           "attn_decode; %d layers' caches rotate)\n",
           AT_LAYERS);
    printf("%-12s %6s %10s %10s %10s %8s %10s\n", "heads", "n_kv", "chain us", "fast us", "decode us", "KV MB",
           "floor us");
    for (int si = 0; si < 2; si++) {
        at_case c = {.H = shp[si][0], .KV = shp[si][1], .Dh = shp[si][2]};
        size_t cache = (size_t)nmax * c.KV * c.Dh; /* floats per cache [n_ctx, KV, Dh] */
        float *h = malloc(cache * sizeof *h);
        for (size_t i = 0; i < cache; i++)
            h[i] = (float)((int64_t)(rnd() >> 40) - (1 << 23)) / (float)(1 << 23) + 1e-3f;
        for (int l = 0; l < AT_LAYERS; l++) {
            c.kc[l] = dev(cache * sizeof(float));
            c.vc[l] = dev(cache * sizeof(float));
            cudaMemcpy(c.kc[l], h, cache * sizeof(float), cudaMemcpyHostToDevice);
            cudaMemcpy(c.vc[l], h, cache * sizeof(float), cudaMemcpyHostToDevice);
        }
        c.q = dev((size_t)c.H * c.Dh * sizeof(float));
        cudaMemcpy(c.q, h, (size_t)c.H * c.Dh * sizeof(float), cudaMemcpyHostToDevice);
        c.kq = dev((size_t)c.H * nmax * sizeof(float));
        c.soft = dev((size_t)c.H * nmax * sizeof(float));
        c.kqv = dev((size_t)c.H * c.Dh * sizeof(float));
        c.scratch_size = kern_cuda_attn_decode_scratch(c.H, c.Dh, nmax);
        c.scratch = dev(c.scratch_size);
        c.part_floats = kern_cuda_attn_part_floats(c.H, c.Dh, nmax);
        c.part = dev((size_t)c.part_floats * sizeof(float));
        c.cnt = dev(2 * (size_t)c.H * sizeof(int));
        cudaMemset(c.cnt, 0, 2 * (size_t)c.H * sizeof(int));
        for (size_t i = 0; i < sizeof nkvs / sizeof nkvs[0]; i++) {
            if (only_nkv > 0 && nkvs[i] != only_nkv)
                continue;
            c.n_kv = nkvs[i];
            c.fused = 0;
            double tc = time_graph(at_call, &c);
            c.fused = 2;
            double tp = time_graph(at_call, &c);
            c.fused = 1;
            double tf = time_graph(at_call, &c);
            double kvb = 2.0 * c.n_kv * c.KV * c.Dh * 4;
            printf("%2d/%-2d x %-3d %6d %10.2f %10.2f %10.2f %8.2f %10.2f\n", c.H, c.KV, c.Dh, c.n_kv, tc, tp, tf,
                   kvb / 1e6, kvb / bw * 1e6);
        }
        for (int l = 0; l < AT_LAYERS; l++)
            cudaFree(c.kc[l]), cudaFree(c.vc[l]);
        cudaFree(c.q), cudaFree(c.kq), cudaFree(c.soft), cudaFree(c.kqv), cudaFree(c.scratch);
        cudaFree(c.part), cudaFree(c.cnt);
        free(h);
    }
}

/* ---- prefill matmul ------------------------------------------------------- */

typedef struct mm_case {
    kern_args a;
    int cublas;         /* 1: cublasGemmEx f16 x f16 -> f32 instead of opt */
    cublasHandle_t h;
    const void *wh, *xh; /* [m, k], [n, k] f16 for cublas */
} mm_case;

static int mm_call(int i, void *arg)
{
    (void)i;
    mm_case *c = arg;
    if (!c->cublas)
        return opt_matmul(&ctx, &c->a);
    const float one = 1.0f, zero = 0.0f;
    /* y [n, m] row-major = column-major [m, n] = W [m, k] (row-major: k x m col-major, transposed) . x^T */
    return cublasGemmEx(c->h, CUBLAS_OP_T, CUBLAS_OP_N, (int)c->a.m, (int)c->a.n, (int)c->a.k, &one, c->wh,
                        CUDA_R_16F, (int)c->a.k, c->xh, CUDA_R_16F, (int)c->a.k, &zero, c->a.y, CUDA_R_32F,
                        (int)c->a.m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) != CUBLAS_STATUS_SUCCESS;
}

static void bench_prefill_matmul(int n, const char *only_type, const char *only_matrix)
{
    static const int mtypes[] = {XF_TYPE_F16,   XF_TYPE_Q4_K, XF_TYPE_Q6_K, XF_TYPE_Q8_0,
                                 XF_TYPE_MXFP4, XF_TYPE_BF16, XF_TYPE_F32};
    static const mshape ms[] = {
        {"0.5B q", 896, 896},      {"0.5B k", 128, 896},      {"0.5B gate", 4864, 896}, {"0.5B down", 896, 4864},
        {"1.5B q", 1536, 1536},    {"1.5B gate", 8960, 1536}, {"1.5B down", 1536, 8960},
    };
    size_t wmax = 0, kmax = 0, mmax = 0;
    for (size_t s = 0; s < sizeof ms / sizeof ms[0]; s++) {
        size_t w = (size_t)ms[s].m * (size_t)ms[s].k * 4;
        wmax = w > wmax ? w : wmax;
        kmax = (size_t)ms[s].k > kmax ? (size_t)ms[s].k : kmax;
        mmax = (size_t)ms[s].m > mmax ? (size_t)ms[s].m : mmax;
    }
    uint8_t *host = malloc(wmax);
    uint8_t *w = dev(wmax);
    float *x = dev((size_t)n * kmax * sizeof(float)), *y = dev((size_t)n * mmax * sizeof(float));
    uint16_t *xh = dev((size_t)n * kmax * 2), *wh = dev(mmax * kmax * 2); /* f16 bits */
    float *hx = malloc((size_t)n * kmax * sizeof *hx);
    for (size_t i = 0; i < (size_t)n * kmax; i++)
        hx[i] = (float)((int64_t)(rnd() >> 40) - (1 << 23)) / (float)(1 << 23) + 1e-3f;
    cudaMemcpy(x, hx, (size_t)n * kmax * sizeof(float), cudaMemcpyHostToDevice);
    cudaMemset(xh, 0x2c, (size_t)n * kmax * 2); /* timing only: tame f16 values */
    cudaMemset(wh, 0x2c, mmax * kmax * 2);
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
        printf("cublasCreate failed\n");
        return;
    }
    cublasSetStream(h, st);
    size_t scr = 0;
    const kern_variant *ov = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "opt");
    /* BF16 and F32 both ways: cuBLAS SGEMM (kern_cuda_split_float off,
     * the default) and the split product */
    int split_was = kern_cuda_split_float(-1);
    for (int on = 0; on < 2; on++) {
        kern_cuda_split_float(on ? 3 : 0);
        for (size_t t = 0; t < sizeof mtypes / sizeof mtypes[0]; t++)
            for (size_t s = 0; s < sizeof ms / sizeof ms[0]; s++) {
                kern_args a = {.x = x, .w_type = mtypes[t], .y = y, .n = n, .k = ms[s].k, .m = ms[s].m};
                size_t b = kern_variant_scratch(ov, &a);
                scr = b > scr ? b : scr;
            }
    }
    ctx.scratch = dev(scr);
    ctx.scratch_size = scr;
    printf("\n== MATMUL of a %d-token prefill (CUDA graph of %d calls, median of %d; scratch %.1f MB)\n", n, NB,
           RUNS, scr / 1e6);
    printf("%-8s %-10s %-14s %10s %8s %10s %8s %12s %8s\n", "type", "matrix", "[m x k]", "opt us", "TFLOP/s",
           "kept us", "TFLOP/s", "cublas f16 us", "TFLOP/s");
    double cub[sizeof ms / sizeof ms[0]] = {0};
    for (size_t s = 0; s < sizeof ms / sizeof ms[0]; s++) {
        if (only_matrix && !strstr(ms[s].name, only_matrix))
            continue;
        mm_case c = {.a = {.x = x, .y = y, .n = n, .k = ms[s].k, .m = ms[s].m}, .cublas = 1, .h = h, .wh = wh,
                     .xh = xh};
        cub[s] = time_graph(mm_call, &c);
    }
    for (size_t tt = 0; tt < 2 * sizeof mtypes / sizeof mtypes[0]; tt++) {
        int type = mtypes[tt / 2], fl32 = type == XF_TYPE_BF16 || type == XF_TYPE_F32, sgemm = tt % 2 == 0;
        if ((only_type && strcmp(only_type, quant_type_name(type)) != 0) || (!fl32 && sgemm))
            continue;
        kern_cuda_split_float(fl32 && !sgemm ? 3 : 0);
        char label[16];
        snprintf(label, sizeof label, "%s%s", quant_type_name(type), fl32 && sgemm ? "-sg" : "");
        for (size_t s = 0; s < sizeof ms / sizeof ms[0]; s++) {
            uint64_t rb;
            if (!quant_row_bytes(type, ms[s].k, &rb) || (only_matrix && !strstr(ms[s].name, only_matrix)))
                continue;
            tame(type, host, (size_t)(rb * ms[s].m));
            cudaMemcpy(w, host, (size_t)(rb * ms[s].m), cudaMemcpyHostToDevice);
            mm_case c = {.a = {.x = x, .w = w, .w_type = type, .y = y, .n = n, .k = ms[s].k, .m = ms[s].m}};
            double us = time_graph(mm_call, &c);
            /* the codes kept as exec keeps them for a model's layer matrices
             * (F16 has none: the same product) */
            double kus = us;
            if (kern_cuda_codes_keep(&ctx, w, type, ms[s].m, ms[s].k) == 0) {
                kus = time_graph(mm_call, &c);
                kern_cuda_codes_free(&ctx);
            }
            double fl = 2.0 * (double)ms[s].m * (double)ms[s].k * n;
            printf("%-8s %-10s [%5lld x %5lld] %10.1f %8.1f %10.1f %8.1f %12.1f %8.1f\n", label, ms[s].name,
                   (long long)ms[s].m, (long long)ms[s].k, us, fl / (us * 1e-6) / 1e12, kus,
                   fl / (kus * 1e-6) / 1e12, cub[s], fl / (cub[s] * 1e-6) / 1e12);
        }
    }
    kern_cuda_split_float(split_was);
    cublasDestroy(h);
    cudaFree(ctx.scratch);
    ctx.scratch = NULL, ctx.scratch_size = 0;
    cudaFree(w), cudaFree(x), cudaFree(y), cudaFree(xh), cudaFree(wh);
    free(host), free(hx);
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    int attn_only = argc > 1 && strcmp(argv[1], "attn") == 0;
    int mm_only = argc > 1 && strcmp(argv[1], "mm") == 0;
    char why[256];
    if (!kern_backend_available(KERN_BACKEND_CUDA, why, sizeof why)) {
        printf("bench_gemv_cuda: no GPU: %s\n", why);
        return 0;
    }
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
    ctx = (kern_ctx){.n_threads = 1, .stream = st};
    opt_matmul = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "opt")->fn;
    opt_kq = kern_find(KERN_OP_KQ, KERN_BACKEND_CUDA, "opt")->fn;
    opt_softmax = kern_find(KERN_OP_SOFTMAX, KERN_BACKEND_CUDA, "opt")->fn;
    opt_kqv = kern_find(KERN_OP_KQV, KERN_BACKEND_CUDA, "opt")->fn;
    double bw = copy_bandwidth();
    printf("card: %s, %d SMs, L2 %d MB; D2D copy %.0f GB/s (read + written, 1 GiB, median of 21)\n", prop.name,
           prop.multiProcessorCount, prop.l2CacheSize >> 20, bw / 1e9);
    if (mm_only) {
        int n = argc > 2 ? atoi(argv[2]) : 512;
        bench_prefill_matmul(n > 0 && n <= 16384 ? n : 512, argc > 3 ? argv[3] : NULL, argc > 4 ? argv[4] : NULL);
    } else {
        if (!attn_only)
            bench_matvec(bw, quick);
        bench_attention(bw, attn_only && argc > 2 ? atoi(argv[2]) : 0);
    }
    kern_cuda_ctx_release(&ctx);
    cudaStreamDestroy(st);
    return 0;
}
#endif
