/* bench_q8_cpu: the CPU matmul variant `q8` per instruction-set path
 * (XF_CPU_ISA: vnni = 256-bit AVX-VNNI, avx512 = AVX-512 VNNI) beside opt,
 * on the weight types of the real Qwen2.5 Q4_K_M files, one thread:
 *   "L2": about 1 MiB of weights read again and again (what the kernel's
 *         instructions cost, whatever the neighbours do to memory);
 *   "mem": about 150 MiB read once per call (what decode sees);
 * and a 64-token prefill on the L2 set. Median of the runs, in GB/s of
 * weights (decode) or GMAC/s (prefill). Not a test: nothing is asserted
 * (tests/test_kernels_cpu_q8.c checks every path against ref).
 *
 * usage: bench_q8_cpu [runs]   (default 15) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "kernels.h"
#include "quant.h"
#include "quantize.h"

/* median seconds of fn over `runs` calls after a warm-up */
static double bq_time(kern_fn fn, kern_ctx *c, const kern_args *a, int runs)
{
    double t[64];
    if (runs > 64)
        runs = 64;
    fn(c, a);
    for (int r = 0; r < runs; r++) {
        double t0 = bench_now();
        fn(c, a);
        t[r] = bench_now() - t0;
    }
    qsort(t, (size_t)runs, sizeof t[0], bench_cmp);
    return t[runs / 2];
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 15;
    if (runs < 1)
        runs = 1;
    const kern_variant *q8 = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "q8");
    const kern_variant *opt = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "opt");
    if (!q8 || !opt)
        return 1;
    const int types[] = {XF_TYPE_Q8_0, XF_TYPE_Q4_0, XF_TYPE_Q4_1, XF_TYPE_Q5_0, XF_TYPE_Q5_1, XF_TYPE_Q4_K, XF_TYPE_Q6_K};
    const char *paths[] = {"opt", "vnni", "avx512"};
    printf("one thread, median of %d; GB/s of weights (decode), GMAC/s (prefill 64)\n", runs);
    printf("%-6s %-6s %9s %9s %12s\n", "type", "path", "L2 GB/s", "mem GB/s", "pf64 GMAC/s");
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    const int64_t k = 1536;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        uint64_t rb;
        quant_row_bytes(types[ti], k, &rb);
        const int64_t m_l2 = (int64_t)((1u << 20) / rb), m_mem = (int64_t)((150u << 20) / rb);
        uint8_t *w = malloc((size_t)(rb * (uint64_t)m_mem));
        float *row = malloc((size_t)k * sizeof *row), *x = malloc((size_t)(64 * k) * sizeof *x);
        float *y = malloc((size_t)(64 * m_mem) * sizeof *y);
        if (!w || !row || !x || !y)
            return 1;
        for (int64_t j = 0; j < 64 * k; j++)
            x[j] = bench_rand(&rng);
        for (int64_t r = 0; r < m_mem; r++) {
            if (r < 64)
                for (int64_t j = 0; j < k; j++)
                    row[j] = bench_rand(&rng);
            if (r < 64)
                quant_quantize_row(types[ti], row, w + (uint64_t)r * rb, k);
            else
                memcpy(w + (uint64_t)r * rb, w + (uint64_t)(r % 64) * rb, rb);
        }
        for (int p = 0; p < 3; p++) {
            if (p > 0)
                setenv("XF_CPU_ISA", paths[p], 1);
            kern_fn fn = p == 0 ? opt->fn : q8->fn;
            kern_ctx c = {.n_threads = 1};
            kern_args a = {.x = x, .w = w, .w_type = types[ti], .y = y, .n = 1, .k = k, .m = m_l2};
            const double tl2 = bq_time(fn, &c, &a, runs * 4);
            a.m = m_mem;
            const double tmem = bq_time(fn, &c, &a, runs / 3 + 1);
            a.m = m_l2;
            a.n = 64;
            const double tpf = bq_time(fn, &c, &a, runs / 3 + 1);
            printf("%-6s %-6s %9.2f %9.2f %12.2f\n", quant_type_name(types[ti]), paths[p],
                   (double)rb * (double)m_l2 / tl2 * 1e-9, (double)rb * (double)m_mem / tmem * 1e-9,
                   64.0 * (double)k * (double)m_l2 / tpf * 1e-9);
        }
        unsetenv("XF_CPU_ISA");
        free(w);
        free(row);
        free(x);
        free(y);
    }
    return 0;
}
