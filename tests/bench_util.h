/* bench_util: what the CPU benchmarks (tests/bench_*.c) share: a monotonic
 * clock, a comparison for qsort of times (medians), and a xorshift
 * generator of floats in [-1, 1). Benchmarks only: nothing here is tested. */
#ifndef XF_BENCH_UTIL_H
#define XF_BENCH_UTIL_H

#include <stdint.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static inline int bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static inline float bench_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (float)((double)(*s >> 11) / (double)(1ULL << 53) * 2.0 - 1.0);
}

#endif
