/* bench_kernels_cpu: times the CPU matmul variants (ref, opt with 1 and 2
 * threads) on GPT-2-tiny shapes (a 128-token prefill and a one-token
 * decode, F16 weights as in the default model, plus F32/Q8_0 decode), on
 * one-token decode with the quantized tensors of Qwen2.5-0.5B Q4_K_M
 * (Q5_0, Q4_K, Q6_K, Q8_0), and the cost of one empty thread-pool run.
 * Prints the median of several runs (CLOCK_MONOTONIC). Not a test: nothing
 * is asserted.
 *
 * usage: bench_kernels_cpu [runs]   (default 9) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "kernels.h"
#include "quant.h"
#include "quantize.h"

/* median seconds of `runs` calls of fn (after one warm-up call) */
static double bench_time(kern_fn fn, kern_ctx *ctx, const kern_args *a, int runs)
{
    double *t = malloc((size_t)runs * sizeof *t);
    if (!t || fn(ctx, a) != 0) {
        free(t);
        return -1;
    }
    for (int r = 0; r < runs; r++) {
        double t0 = bench_now();
        fn(ctx, a);
        t[r] = bench_now() - t0;
    }
    qsort(t, (size_t)runs, sizeof *t, bench_cmp);
    double med = t[runs / 2];
    free(t);
    return med;
}

static void bench_noop(void *arg, int i, int n)
{
    (void)arg;
    (void)i;
    (void)n;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 9;
    if (runs < 1)
        runs = 1;
    kern_pool *pool2 = kern_pool_new(2);
    if (!pool2) {
        fprintf(stderr, "bench_kernels_cpu: cannot start threads\n");
        return 1;
    }
    const kern_variant *ref = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "ref");
    const kern_variant *opt = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "opt");
    if (!ref || !opt) {
        fprintf(stderr, "bench_kernels_cpu: matmul variants missing\n");
        return 1;
    }
    const struct {
        int64_t n, k, m;
        int type;
    } cases[] = {
        {128, 192, 576, XF_TYPE_F16}, {128, 192, 768, XF_TYPE_F16},  {1, 192, 576, XF_TYPE_F16},
        {1, 192, 768, XF_TYPE_F16},   {1, 768, 192, XF_TYPE_F16},    {1, 192, 768, XF_TYPE_F32},
        {1, 192, 768, XF_TYPE_Q8_0},  {128, 192, 768, XF_TYPE_Q8_0},
        /* decode on Qwen2.5-0.5B Q4_K_M tensors: ffn_up/gate, ffn_down, attn_q/o */
        {1, 896, 4864, XF_TYPE_Q5_0}, {1, 4864, 896, XF_TYPE_Q4_K}, {1, 4864, 896, XF_TYPE_Q6_K},
        {1, 896, 896, XF_TYPE_Q8_0},
    };
    printf("matmul y[n,m] = x[n,k] w[m,k]^T, median of %d runs (shared cores: noisy)\n", runs);
    printf("%-28s %-4s %7s %10s %9s\n", "shape", "var", "threads", "ms", "GFLOP/s");
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t n = cases[c].n, k = cases[c].k, m = cases[c].m;
        uint64_t rb;
        if (!quant_row_bytes(cases[c].type, k, &rb))
            continue;
        float *x = malloc((size_t)(n * k) * sizeof *x), *y = malloc((size_t)(n * m) * sizeof *y);
        float *row = malloc((size_t)k * sizeof *row);
        uint8_t *w = malloc((size_t)(rb * (uint64_t)m));
        if (!x || !y || !row || !w)
            return 1;
        for (int64_t i = 0; i < n * k; i++)
            x[i] = bench_rand(&rng);
        int ok = 1;
        for (int64_t r = 0; r < m && ok; r++) {
            for (int64_t j = 0; j < k; j++)
                row[j] = bench_rand(&rng);
            ok = quant_quantize_row(cases[c].type, row, w + (uint64_t)r * rb, k) != 0;
        }
        if (ok) {
            kern_args a = {.x = x, .w = w, .w_type = cases[c].type, .y = y, .n = n, .k = k, .m = m};
            char shape[64];
            snprintf(shape, sizeof shape, "n=%lld k=%lld m=%lld %s", (long long)n, (long long)k, (long long)m,
                     quant_type_name(cases[c].type));
            double flop = 2.0 * (double)n * (double)k * (double)m;
            kern_ctx c1 = {.n_threads = 1}, c2 = {.n_threads = 2, .pool = pool2};
            double tr = bench_time(ref->fn, &c1, &a, n > 1 ? (runs + 1) / 2 : runs);
            double t1 = bench_time(opt->fn, &c1, &a, runs);
            double t2 = bench_time(opt->fn, &c2, &a, runs);
            printf("%-28s %-4s %7d %10.4f %9.2f\n", shape, "ref", 1, tr * 1e3, flop / tr * 1e-9);
            printf("%-28s %-4s %7d %10.4f %9.2f\n", shape, "opt", 1, t1 * 1e3, flop / t1 * 1e-9);
            printf("%-28s %-4s %7d %10.4f %9.2f\n", shape, "opt", 2, t2 * 1e3, flop / t2 * 1e-9);
        }
        free(x);
        free(y);
        free(row);
        free(w);
    }
    /* the fixed cost an op pays for using the pool */
    enum { POOL_RUNS = 2000 };
    double *t = malloc(POOL_RUNS * sizeof *t);
    if (!t)
        return 1;
    for (int r = 0; r < POOL_RUNS; r++) {
        double t0 = bench_now();
        kern_pool_run(pool2, bench_noop, NULL);
        t[r] = bench_now() - t0;
    }
    qsort(t, POOL_RUNS, sizeof *t, bench_cmp);
    printf("empty kern_pool_run, 2 threads: median %.2f us, p90 %.2f us\n", t[POOL_RUNS / 2] * 1e6,
           t[POOL_RUNS * 9 / 10] * 1e6);
    free(t);
    kern_pool_free(pool2);
    return 0;
}
