/* bench_kernels_cuda: times every CUDA variant of every op kind on
 * GPT-2-124M shapes (D=768, F=3072, V=50257, 12 heads of 64) for a decode
 * token (n=1, 127 tokens cached) and a 128-token prefill, with CUDA events
 * after warm-up (median of 20 runs; 5 for runs over 20 ms; each call alone
 * and inside a CUDA graph of 20 back-to-back calls), and prints the
 * error of each variant against the CUDA ref on the same inputs. For n=1
 * MATMUL it also prints the memory floor: weight bytes over the measured
 * device-to-device copy bandwidth (bytes read + written per second),
 * against the graph time. "vs ref" compares graph times where both exist.
 * Usage: bench_kernels_cuda [runs]. Not run by ctest.
 *
 * Measured on an NVIDIA H100 80GB HBM3 (D2D copy 2990 GB/s read + write),
 * graph time per call: decode logits matvec F16 27.8 us (floor 25.9 us),
 * F32 51.8 (floor 51.7), Q8_0 22.7 (13.8), Q4_K 25.8 (7.4), Q6_K 31.4 (10.7);
 * prefill logits (n=128) F16 opt 342 us, tc 165 us; a raw cublasGemmEx of
 * that shape takes 138 us with m = 50257 and 51 us with m rounded up to a
 * multiple of 8, so splitting the GEMM at m & ~7 is the next gain for tc/opt. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "quant.h"
#include "quantize.h"

#ifndef XF_HAVE_CUDA
int main(void)
{
    printf("bench_kernels_cuda: built without CUDA\n");
    return 0;
}
#else
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "kernels_cuda.h"

#define D 768
#define F 3072
#define V 50257
#define H 12
#define HD 64
#define NCTX 1024

typedef struct bench {
    const kern_mem_ops *mem;
    kern_ctx ctx;
    cudaStream_t st;
    cudaEvent_t e0, e1;
    int runs;
    uint64_t rng;
    double bw; /* measured D2D bytes (read + written) per second */
} bench;

static float bench_rand(bench *b)
{
    b->rng ^= b->rng >> 12, b->rng ^= b->rng << 25, b->rng ^= b->rng >> 27;
    float v = (float)((double)((b->rng * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
    return fabsf(v) < 1e-3f ? 0.5f : v; /* never zero */
}

static void *bench_dev_random(bench *b, size_t nfloat, float lo, float hi)
{
    float *h = malloc(nfloat * sizeof *h);
    for (size_t i = 0; i < nfloat; i++)
        h[i] = lo + (hi - lo) * (bench_rand(b) * 0.5f + 0.5f);
    void *d = b->mem->alloc(nfloat * sizeof(float));
    if (!d || b->mem->to_dev(&b->ctx, d, h, nfloat * sizeof(float))) {
        fprintf(stderr, "bench: device allocation of %zu floats failed\n", nfloat);
        exit(1);
    }
    free(h);
    return d;
}

/* rows x k weights of type: 256 distinct random rows repeated (quantizing
 * 50257 rows of K-quants on the CPU would take longer than the bench) */
static void *bench_dev_weights(bench *b, int type, int64_t rows, int64_t k, size_t *bytes)
{
    uint64_t rb;
    if (!quant_row_bytes(type, k, &rb))
        return NULL;
    int distinct = rows < 256 ? (int)rows : 256;
    uint8_t *q = malloc(rb * distinct);
    float *src = malloc((size_t)k * sizeof *src);
    for (int r = 0; r < distinct; r++) {
        for (int64_t j = 0; j < k; j++)
            src[j] = bench_rand(b) * 0.1f;
        if (quant_quantize_row(type, src, q + r * rb, k) != rb) {
            free(q);
            free(src);
            return NULL;
        }
    }
    *bytes = rb * (size_t)rows;
    uint8_t *d = b->mem->alloc(*bytes);
    if (!d) {
        fprintf(stderr, "bench: device allocation of %zu bytes failed\n", *bytes);
        exit(1);
    }
    for (int64_t r = 0; r < rows; r += distinct) {
        int64_t c = rows - r < distinct ? rows - r : distinct;
        b->mem->to_dev(&b->ctx, d + r * rb, q, (size_t)(c * rb));
    }
    b->mem->sync(&b->ctx);
    free(q);
    free(src);
    return d;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Median microseconds of one call of v: *eager times each call alone
 * (launch included: what stepping one op costs), *graph divides the time of
 * a CUDA graph of back-to-back calls by their count (the GPU's time per call,
 * as a captured decode pass would see it; -1 if the variant cannot be
 * captured). 0 if the variant runs, -1 if it fails. */
static int bench_time(bench *b, const kern_variant *v, const kern_args *a, double *eager, double *graph)
{
    for (int i = 0; i < 3; i++)
        if (v->fn(&b->ctx, a))
            return -1;
    if (b->mem->sync(&b->ctx))
        return -1;
    float t[64];
    int runs = b->runs;
    for (int i = 0; i < runs; i++) {
        cudaEventRecord(b->e0, b->st);
        v->fn(&b->ctx, a);
        cudaEventRecord(b->e1, b->st);
        cudaEventSynchronize(b->e1);
        cudaEventElapsedTime(&t[i], b->e0, b->e1);
        if (i == 0 && t[0] > 20.0f && runs > 5)
            runs = 5;
    }
    qsort(t, runs, sizeof t[0], cmp_float);
    *eager = 1000.0 * t[runs / 2];
    *graph = -1;
    int reps = *eager > 1000.0 ? 1 : 20;
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    if (cudaStreamBeginCapture(b->st, cudaStreamCaptureModeThreadLocal) != cudaSuccess)
        return 0;
    int rc = 0;
    for (int r = 0; r < reps; r++)
        rc |= v->fn(&b->ctx, a);
    if (cudaStreamEndCapture(b->st, &g) != cudaSuccess || rc || cudaGraphInstantiate(&ge, g, 0) != cudaSuccess) {
        cudaGetLastError();
        if (g)
            cudaGraphDestroy(g);
        return 0;
    }
    cudaGraphLaunch(ge, b->st);
    cudaStreamSynchronize(b->st);
    for (int i = 0; i < runs; i++) {
        cudaEventRecord(b->e0, b->st);
        cudaGraphLaunch(ge, b->st);
        cudaEventRecord(b->e1, b->st);
        cudaEventSynchronize(b->e1);
        cudaEventElapsedTime(&t[i], b->e0, b->e1);
    }
    qsort(t, runs, sizeof t[0], cmp_float);
    *graph = 1000.0 * t[runs / 2] / reps;
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    return 0;
}

/* max |a-b| / max |ref| of two device outputs of ny floats */
static double bench_err(bench *b, const float *dy, const float *dref, size_t ny)
{
    float *a = malloc(ny * sizeof *a), *r = malloc(ny * sizeof *r);
    b->mem->to_host(&b->ctx, a, dy, ny * sizeof(float));
    b->mem->to_host(&b->ctx, r, dref, ny * sizeof(float));
    double dmax = 0, rmax = 1e-30;
    for (size_t i = 0; i < ny; i++) {
        if (isinf(r[i]) && a[i] == r[i])
            continue;
        double d = fabs((double)a[i] - r[i]);
        if (isnan(d))
            d = INFINITY;
        dmax = fmax(dmax, d);
        rmax = fmax(rmax, fabs((double)r[i]));
    }
    free(a);
    free(r);
    return dmax / rmax;
}

/* times every CUDA variant of op on a (a->y: device [ny]) and prints one row
 * each; extra_bytes > 0 adds the memory floor column */
static void bench_op(bench *b, kern_op op, const char *label, kern_args *a, size_t ny, double floor_bytes)
{
    const kern_variant *ref = kern_find(op, KERN_BACKEND_CUDA, "ref");
    float *yref = b->mem->alloc(ny * sizeof(float));
    kern_args ar = *a;
    ar.y = yref;
    double tref = -1, gref = -1;
    if (ref && bench_time(b, ref, &ar, &tref, &gref))
        tref = gref = -1;
    size_t nv;
    const kern_variant *v = kern_registry(&nv);
    for (size_t i = 0; i < nv; i++) {
        if (v[i].op != op || v[i].backend != KERN_BACKEND_CUDA)
            continue;
        double t = tref, g = gref;
        if (&v[i] != ref && bench_time(b, &v[i], a, &t, &g))
            t = g = -1;
        double err = &v[i] == ref ? 0.0 : bench_err(b, a->y, yref, ny);
        double sp = g > 0 && gref > 0 ? gref / g : t > 0 && tref > 0 ? tref / t : 0.0;
        printf("%-8s %-34s %-4s %9.1f %9.1f %8.1fx %9.2e", kern_op_name(op), label, v[i].name, t, g, sp, err);
        double tt = g > 0 ? g : t;
        if (floor_bytes > 0 && tt > 0)
            printf("   floor %.1f us = %.0f%% of the time", floor_bytes / b->bw * 1e6,
                   100.0 * (floor_bytes / b->bw * 1e6) / tt);
        printf("\n");
    }
    b->mem->free(yref);
}

static double bench_bandwidth(bench *b)
{
    size_t bytes = (size_t)1 << 30;
    void *s = b->mem->alloc(bytes), *d = b->mem->alloc(bytes);
    if (!s || !d)
        return 0;
    cudaMemsetAsync(s, 1, bytes, b->st);
    float t[10];
    for (int i = 0; i < 12; i++) {
        cudaEventRecord(b->e0, b->st);
        cudaMemcpyAsync(d, s, bytes, cudaMemcpyDeviceToDevice, b->st);
        cudaEventRecord(b->e1, b->st);
        cudaEventSynchronize(b->e1);
        if (i >= 2)
            cudaEventElapsedTime(&t[i - 2], b->e0, b->e1);
    }
    qsort(t, 10, sizeof t[0], cmp_float);
    b->mem->free(s);
    b->mem->free(d);
    return 2.0 * (double)bytes / (t[5] * 1e-3);
}

static void bench_pass(bench *b, int64_t n, int pos0)
{
    int n_kv = pos0 + (int)n;
    char lb[96];
    size_t wb;
    int32_t *tok = malloc((size_t)n * sizeof *tok);
    for (int64_t i = 0; i < n; i++)
        tok[i] = (int32_t)((b->rng = b->rng * 6364136223846793005ULL + 1) >> 33) % V;
    float *x = bench_dev_random(b, (size_t)n * F, -1, 1), *x2 = bench_dev_random(b, (size_t)n * F, -1, 1);
    float *y = b->mem->alloc((size_t)n * V * sizeof(float));
    float *g = bench_dev_random(b, D, 0.5f, 1.5f), *beta = bench_dev_random(b, D, -0.5f, 0.5f);
    printf("\n--- n=%lld tokens, pos0=%d, n_kv=%d ---\n", (long long)n, pos0, n_kv);
    printf("%-8s %-34s %-4s %9s %9s %9s %9s\n", "op", "shape", "var", "eager us", "graph us", "vs ref",
           "err/ref");

    void *wte = bench_dev_weights(b, XF_TYPE_F16, V, D, &wb);
    void *wpe = bench_dev_weights(b, XF_TYPE_F32, NCTX, D, &wb);
    kern_args a = {.w = wte, .w_type = XF_TYPE_F16, .w2 = wpe, .w2_type = XF_TYPE_F32, .y = y, .tok = tok, .n = n,
                   .k = D, .pos0 = pos0};
    snprintf(lb, sizeof lb, "wte F16 + wpe F32, k=%d", D);
    bench_op(b, KERN_OP_EMBD, lb, &a, (size_t)n * D, 0);

    a = (kern_args){.x = x, .w = g, .w_type = XF_TYPE_F32, .b = beta, .y = y, .n = n, .k = D, .eps = 1e-5f};
    bench_op(b, KERN_OP_NORM, "k=768", &a, (size_t)n * D, 0);
    a.b = NULL;
    bench_op(b, KERN_OP_RMSNORM, "k=768", &a, (size_t)n * D, 0);

    /* matmuls of a GPT-2 block and the logits */
    struct {
        int64_t k, m;
        int type;
        const char *name;
    } mm[] = {
        {D, 3 * D, XF_TYPE_F16, "qkv"},         {D, D, XF_TYPE_F16, "attn_out"},
        {D, F, XF_TYPE_F16, "ffn_up"},          {F, D, XF_TYPE_F16, "ffn_out"},
        {D, V, XF_TYPE_F16, "logits"},          {D, V, XF_TYPE_F32, "logits"},
        {D, V, XF_TYPE_Q8_0, "logits"},         {D, V, XF_TYPE_Q4_K, "logits"},
        {D, V, XF_TYPE_Q6_K, "logits"},
    };
    for (size_t i = 0; i < sizeof mm / sizeof mm[0]; i++) {
        void *w = bench_dev_weights(b, mm[i].type, mm[i].m, mm[i].k, &wb);
        if (!w) {
            printf("matmul   %s %s: cannot quantize, skipped\n", mm[i].name, quant_type_name(mm[i].type));
            continue;
        }
        float *bias = bench_dev_random(b, (size_t)mm[i].m, -1, 1);
        a = (kern_args){.x = x, .w = w, .w_type = mm[i].type, .b = bias, .y = y, .n = n, .k = mm[i].k, .m = mm[i].m};
        snprintf(lb, sizeof lb, "%s %s k=%lld m=%lld", mm[i].name, quant_type_name(mm[i].type), (long long)mm[i].k,
                 (long long)mm[i].m);
        double floor_bytes = n == 1 ? (double)wb + 4.0 * (mm[i].k + 2 * mm[i].m) : 0;
        bench_op(b, KERN_OP_MATMUL, lb, &a, (size_t)(n * mm[i].m), floor_bytes);
        b->mem->free(w);
        b->mem->free(bias);
    }

    a = (kern_args){.x = x, .y = y, .n = n, .m = D, .x_stride = 3 * D, .off = D};
    bench_op(b, KERN_OP_VIEW, "k of qkv [n, 2304] -> [n, 768]", &a, (size_t)n * D, 0);
    a = (kern_args){.x = x, .y = y, .n = n, .n_head = H, .head_dim = HD, .pos0 = pos0, .rope_base = 1e4f};
    bench_op(b, KERN_OP_ROPE, "12 heads x 64", &a, (size_t)n * D, 0);

    float *kc = bench_dev_random(b, (size_t)NCTX * D, -1, 1), *vc = bench_dev_random(b, (size_t)NCTX * D, -1, 1);
    float *p = bench_dev_random(b, (size_t)H * n * n_kv, 0.001f, 0.01f);
    a = (kern_args){.x = x, .kc = kc, .y = y, .n = n, .n_head = H, .n_head_kv = H, .head_dim = HD, .n_kv = n_kv,
                    .pos0 = pos0, .scale = 0.125f};
    snprintf(lb, sizeof lb, "12 heads x 64, n_kv=%d", n_kv);
    bench_op(b, KERN_OP_KQ, lb, &a, (size_t)H * n * n_kv, 0);
    a = (kern_args){.x = p, .y = y, .n = H * n, .m = n_kv};
    snprintf(lb, sizeof lb, "%lld rows x %d", (long long)(H * n), n_kv);
    bench_op(b, KERN_OP_SOFTMAX, lb, &a, (size_t)H * n * n_kv, 0);
    a = (kern_args){.x = p, .vc = vc, .y = y, .n = n, .n_head = H, .n_head_kv = H, .head_dim = HD, .n_kv = n_kv,
                    .pos0 = pos0};
    snprintf(lb, sizeof lb, "12 heads x 64, n_kv=%d", n_kv);
    bench_op(b, KERN_OP_KQV, lb, &a, (size_t)n * D, 0);

    a = (kern_args){.x = x, .x2 = x2, .y = y, .n = n, .k = D};
    bench_op(b, KERN_OP_ADD, "k=768", &a, (size_t)n * D, 0);
    a.k = F;
    bench_op(b, KERN_OP_GELU, "k=3072", &a, (size_t)n * F, 0);
    bench_op(b, KERN_OP_SWIGLU, "k=3072", &a, (size_t)n * F, 0);

    b->mem->free(wte);
    b->mem->free(wpe);
    b->mem->free(x);
    b->mem->free(x2);
    b->mem->free(y);
    b->mem->free(g);
    b->mem->free(beta);
    b->mem->free(kc);
    b->mem->free(vc);
    b->mem->free(p);
    free(tok);
}

/* Raw cuBLAS f16 GEMM of the prefill logits shape (y[128, V] = x . w^T), with
 * the output's leading dimension V (odd: rows of y are not 16-byte aligned)
 * and padded to a multiple of 8: does alignment explain the tc variant's
 * time on the logits? Median of the graph-free event timing. */
static void bench_gemm_ldc(bench *b)
{
    const int n = 128, vp = (V + 7) / 8 * 8;
    cublasHandle_t h = (cublasHandle_t)b->ctx.cublas;
    void *w = b->mem->alloc((size_t)vp * D * 2), *x = b->mem->alloc((size_t)n * D * 2);
    float *c = b->mem->alloc((size_t)n * vp * sizeof(float));
    if (!w || !x || !c)
        return;
    cudaMemsetAsync(w, 0x31, (size_t)vp * D * 2, b->st); /* f16 0x3131: about 0.17, never zero */
    cudaMemsetAsync(x, 0x32, (size_t)n * D * 2, b->st);
    const float one = 1.0f, zero = 0.0f;
    int ms[3] = {V, V, vp}, lds[3] = {V, vp, vp};
    const char *what[3] = {"m=V ldc=V (odd)", "m=V ldc=Vpad", "m=Vpad ldc=Vpad"};
    for (int cfg = 0; cfg < 3; cfg++) {
        float t[64];
        for (int i = 0; i < b->runs + 3; i++) {
            cudaEventRecord(b->e0, b->st);
            cublasStatus_t st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, ms[cfg], n, D, &one, w, CUDA_R_16F, D, x,
                                             CUDA_R_16F, D, &zero, c, CUDA_R_32F, lds[cfg], CUBLAS_COMPUTE_32F,
                                             CUBLAS_GEMM_DEFAULT);
            cudaEventRecord(b->e1, b->st);
            cudaEventSynchronize(b->e1);
            if (st != CUBLAS_STATUS_SUCCESS) {
                printf("gemm %s: cuBLAS status %d\n", what[cfg], (int)st);
                break;
            }
            if (i >= 3)
                cudaEventElapsedTime(&t[i - 3], b->e0, b->e1);
        }
        qsort(t, b->runs, sizeof t[0], cmp_float);
        double us = 1000.0 * t[b->runs / 2];
        printf("cublasGemmEx f16->f32 n=%d k=%d %-18s %8.1f us  %6.1f TFLOP/s\n", n, D, what[cfg], us,
               2.0 * ms[cfg] * n * D / (us * 1e-6) / 1e12);
    }
    b->mem->free(w);
    b->mem->free(x);
    b->mem->free(c);
}

int main(int argc, char **argv)
{
    char why[256];
    if (!kern_backend_available(KERN_BACKEND_CUDA, why, sizeof why)) {
        printf("bench_kernels_cuda: %s\n", why);
        return 0;
    }
    bench b = {.mem = kern_backend_mem(KERN_BACKEND_CUDA), .runs = argc > 1 ? atoi(argv[1]) : 20,
               .rng = 0x853c49e6748fea9bULL};
    if (b.runs < 1 || b.runs > 64)
        b.runs = 20;
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    cudaStreamCreateWithFlags(&b.st, cudaStreamNonBlocking);
    cudaEventCreate(&b.e0);
    cudaEventCreate(&b.e1);
    /* scratch for the widest matmul (logits, F32 decode of the weights) */
    size_t scratch = (size_t)V * D * sizeof(float);
    b.ctx = (kern_ctx){.stream = b.st, .scratch = b.mem->alloc(scratch), .scratch_size = scratch};
    if (!b.ctx.scratch || kern_cuda_ctx_prepare(&b.ctx)) {
        fprintf(stderr, "bench: setup failed\n");
        return 1;
    }
    b.bw = bench_bandwidth(&b);
    printf("device: %s (%d SMs), D2D copy %.0f GB/s (read + write), %d runs per median\n", prop.name,
           prop.multiProcessorCount, b.bw / 1e9, b.runs);
    bench_pass(&b, 1, 127);
    bench_pass(&b, 128, 0);
    printf("\n");
    bench_gemm_ldc(&b);
    kern_cuda_ctx_release(&b.ctx);
    b.mem->free(b.ctx.scratch);
    return 0;
}
#endif
