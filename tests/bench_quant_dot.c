/* bench_quant_dot: throughput of kern_cpu_quant_dot (the decode matmul's inner
 * product for block-format weights), per weight type, as GMAC/s (weights
 * multiplied per nanosecond) and ns per weight per thread.
 *
 * Two working sets per type: "L2", about 512 KiB of weight rows that stay in
 * each core's cache (what the kernel itself costs), and "mem", about 96 MiB
 * of rows read once per run from DRAM (what decode sees: every weight of the
 * model is read once per token). Rows are split over 1 or 2 threads as the
 * opt matmul does. Prints the median of several runs (CLOCK_MONOTONIC); the
 * machine's cores are shared, so compare medians taken back to back.
 * Not a test: nothing is asserted (tests/test_quant_dot.c checks the results).
 *
 * usage: bench_quant_dot [runs] [TYPE...]   (default 7 runs, the types of a
 * Qwen2.5 Q4_K_M file; TYPE is a name such as Q5_0) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "kernels.h"
#include "cpu/quant_dot.h"
#include "quant.h"
#include "quantize.h"

typedef struct bench_job {
    int type;
    const uint8_t *w; /* [m, rb] rows of the weight type */
    uint64_t rb;
    int64_t m, k;
    const float *x; /* [k] */
    float *y;       /* [m] */
    int parts;      /* threads the rows are split over */
} bench_job;

static void bench_rows(void *arg, int i, int n)
{
    const bench_job *j = arg;
    int parts = n < j->parts ? n : j->parts;
    if (i >= parts)
        return;
    int64_t lo = j->m * i / parts, hi = j->m * (i + 1) / parts;
    for (int64_t r = lo; r < hi; r++)
        j->y[r] = kern_cpu_quant_dot(j->type, j->w + (uint64_t)r * j->rb, j->x, j->k);
}

/* median seconds of `runs` passes over all rows (after one warm-up pass) */
static double bench_time(bench_job *j, kern_pool *pool, int runs)
{
    double *t = malloc((size_t)runs * sizeof *t);
    if (!t)
        return -1;
    for (int r = -1; r < runs; r++) {
        double t0 = bench_now();
        if (pool)
            kern_pool_run(pool, bench_rows, j);
        else
            bench_rows(j, 0, 1);
        if (r >= 0)
            t[r] = bench_now() - t0;
    }
    qsort(t, (size_t)runs, sizeof *t, bench_cmp);
    double med = t[runs / 2];
    free(t);
    return med;
}

static int bench_type_id(const char *name)
{
    for (int t = 0; t < XF_TYPE_COUNT; t++) {
        const quant_type_info *ti = quant_type_get(t);
        if (ti && ti->supported && strcmp(ti->name, name) == 0)
            return t;
    }
    return -1;
}

int main(int argc, char **argv)
{
    int runs = argc > 1 ? atoi(argv[1]) : 7;
    if (runs < 1)
        runs = 1;
    static const char *const default_types[] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"};
    const char *const *names = argc > 2 ? (const char *const *)argv + 2 : default_types;
    int n_names = argc > 2 ? argc - 2 : (int)(sizeof default_types / sizeof default_types[0]);
    kern_pool *pool2 = kern_pool_new(2);
    if (!pool2) {
        fprintf(stderr, "bench_quant_dot: cannot start threads\n");
        return 1;
    }
    printf("kern_cpu_quant_dot over weight rows, median of %d runs (shared cores: noisy)\n", runs);
    printf("%-6s %6s %-4s %7s %10s %9s %11s %8s\n", "type", "k", "set", "threads", "ms", "GMAC/s",
           "ns/w/thread", "GB/s");
    uint64_t rng = 0x9e3779b97f4a7c15ULL;
    for (int ti = 0; ti < n_names; ti++) {
        int type = bench_type_id(names[ti]);
        if (type < 0) {
            fprintf(stderr, "bench_quant_dot: unknown type %s\n", names[ti]);
            continue;
        }
        /* Qwen2.5-0.5B shapes: the 32-element formats hold the 896-wide
         * tensors, the k-quants ffn_down (k = 4864) */
        int64_t k = quant_type_get(type)->block_elems == 256 ? 4864 : 896;
        uint64_t rb;
        if (!quant_row_bytes(type, k, &rb))
            continue;
        int64_t m_max = (int64_t)((96u << 20) / rb);
        float *x = malloc((size_t)k * sizeof *x);          /* [k] */
        float *row = malloc((size_t)k * sizeof *row);      /* [k] */
        float *y = malloc((size_t)m_max * sizeof *y);      /* [m_max] */
        uint8_t *w = malloc((size_t)(rb * (uint64_t)m_max)); /* [m_max, rb] */
        if (!x || !row || !y || !w)
            return 1;
        for (int64_t j = 0; j < k; j++)
            x[j] = bench_rand(&rng);
        /* a few distinct random rows, repeated: quantizing 96 MiB with the
         * reference quantizers would take longer than the benchmark */
        enum { DISTINCT = 64 };
        for (int64_t r = 0; r < m_max; r++) {
            if (r < DISTINCT) {
                for (int64_t j = 0; j < k; j++)
                    row[j] = bench_rand(&rng);
                quant_quantize_row(type, row, w + (uint64_t)r * rb, k);
            } else {
                memcpy(w + (uint64_t)r * rb, w + (uint64_t)(r % DISTINCT) * rb, (size_t)rb);
            }
        }
        for (int set = 0; set < 2; set++) {
            int64_t m = set == 0 ? (int64_t)((512u << 10) / rb) : m_max;
            bench_job j = {.type = type, .w = w, .rb = rb, .m = m, .k = k, .x = x, .y = y};
            for (int th = 1; th <= 2; th++) {
                j.parts = th;
                double t = bench_time(&j, th == 1 ? NULL : pool2, runs);
                double macs = (double)m * (double)k;
                printf("%-6s %6lld %-4s %7d %10.4f %9.2f %11.4f %8.2f\n", names[ti], (long long)k,
                       set == 0 ? "L2" : "mem", th, t * 1e3, macs / t * 1e-9, t * 1e9 * th / macs,
                       (double)m * (double)rb / t * 1e-9);
            }
        }
        free(x);
        free(row);
        free(y);
        free(w);
    }
    kern_pool_free(pool2);
    return 0;
}
