/* bench_attn_cpu: one layer's attention of a prefill on the CPU, the three
 * opt ops (kq, softmax, kqv; kq and kq_soft written through memory) against
 * the fused form (kern_cpu_attn_fused, two rows of scores in L1), on the
 * shapes of the bench models: GPT-2 124M (12 heads x 64), Qwen2.5-0.5B
 * (14 / 2 x 64), Qwen2.5-1.5B (12 / 2 x 128), at 128 and 512 tokens.
 * The two are timed in alternation (a shared machine drifts), medians.
 * Checked first: the fused output equals the ops' (test_kernels_cpu_attn
 * holds it on every shape; here only as a guard).
 * usage: bench_attn_cpu [threads (2)] [runs (7)] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "cpu/cpu.h"
#include "kernels.h"

static float *rnd(size_t n, uint64_t *s)
{
    float *p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = bench_rand(s);
    return p;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2, runs = argc > 2 ? atoi(argv[2]) : 7;
    if (threads < 1 || runs < 1 || runs > 99) {
        fprintf(stderr, "usage: bench_attn_cpu [threads] [runs (1-99)]\n");
        return 2;
    }
    const struct {
        const char *name;
        int heads, kv, hd;
    } shapes[] = {{"gpt2-124m", 12, 12, 64}, {"qwen2.5-0.5b", 14, 2, 64}, {"qwen2.5-1.5b", 12, 2, 128}};
    const int ns[] = {128, 512};
    kern_pool *pool = kern_pool_new(threads);
    kern_ctx ctx = {.pool = pool, .n_threads = threads};
    uint64_t seed = 0xa77e;
    printf("one layer's attention of a prefill, %d threads, medians of %d alternating runs (ms)\n", threads, runs);
    printf("%-14s %5s %10s %10s %8s\n", "shape", "n", "3 ops", "fused", "speedup");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
            int n = ns[k], H = shapes[s].heads, KV = shapes[s].kv, hd = shapes[s].hd;
            size_t nq = (size_t)n * H * hd, nk = (size_t)n * KV * hd, ns_ = (size_t)H * n * n;
            float *q = rnd(nq, &seed), *kc = rnd(nk, &seed), *vc = rnd(nk, &seed);
            float *sc = malloc(ns_ * sizeof *sc), *p = malloc(ns_ * sizeof *p);
            float *y0 = malloc(nq * sizeof *y0), *y1 = malloc(nq * sizeof *y1);
            kern_args a = {.x = q, .kc = kc, .y = sc, .n = n, .n_head = H, .n_head_kv = KV, .head_dim = hd,
                           .n_kv = n, .scale = 1.0f / sqrtf((float)hd)};
            kern_args sm = {.x = sc, .y = p, .n = (int64_t)H * n, .m = n};
            kern_args v = {.x = p, .vc = vc, .y = y0, .n = n, .n_head = H, .n_head_kv = KV, .head_dim = hd, .n_kv = n};
            kern_args fv = v;
            fv.y = y1;
            ctx.scratch_size = kern_cpu_attn_fused_scratch(&ctx, &a);
            ctx.scratch = malloc(ctx.scratch_size);
            if (!sc || !p || !y0 || !y1 || !ctx.scratch) {
                fprintf(stderr, "out of memory\n");
                return 1;
            }
            double t_ops[99], t_fused[99];
            for (int r = -1; r < runs; r++) {
                double t0 = bench_now();
                if (kern_cpu_opt_kq(&ctx, &a) || kern_cpu_opt_softmax(&ctx, &sm) || kern_cpu_opt_kqv(&ctx, &v))
                    return 1;
                double t1 = bench_now();
                if (kern_cpu_attn_fused(&ctx, &a, &fv))
                    return 1;
                double t2 = bench_now();
                if (r >= 0) {
                    t_ops[r] = (t1 - t0) * 1e3;
                    t_fused[r] = (t2 - t1) * 1e3;
                }
            }
            for (size_t i = 0; i < nq; i++)
                if (y0[i] != y1[i]) {
                    fprintf(stderr, "%s n=%d: fused differs from the ops at %zu\n", shapes[s].name, n, i);
                    return 1;
                }
            qsort(t_ops, (size_t)runs, sizeof(double), bench_cmp);
            qsort(t_fused, (size_t)runs, sizeof(double), bench_cmp);
            double mo = t_ops[runs / 2], mf = t_fused[runs / 2];
            printf("%-14s %5d %10.3f %10.3f %7.2fx\n", shapes[s].name, n, mo, mf, mo / mf);
            free(q);
            free(kc);
            free(vc);
            free(sc);
            free(p);
            free(y0);
            free(y1);
            free(ctx.scratch);
        }
    kern_pool_free(pool);
    return 0;
}
