/* membw: the read bandwidth of main memory (kern_cpu_membw, kernels.h), the
 * denominator of bench's memory floor. n threads stream over one buffer
 * larger than the last-level cache (max(1 GiB, 4x L3), halved while it is
 * over half of MemAvailable or the allocation fails), each its own
 * contiguous part, with the widest loads the CPU has (AVX-512, AVX2, else
 * 64-bit words). One untimed pass first (the pages are touched when the
 * buffer is filled, before it); the figure
 * is the median of MEMBW_PASSES timed passes, bytes read / wall time from
 * the start barrier to the end one. */
#include "kernels.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MEMBW_X86 1
#endif

#define MEMBW_PASSES 5
#define MEMBW_MIN ((size_t)1 << 30)     /* 1 GiB */
#define MEMBW_FLOOR ((size_t)64 << 20)  /* the smallest buffer tried */
#define MEMBW_MAX_THREADS 256
#define MEMBW_ALIGN ((size_t)2 << 20)   /* huge-page aligned: fewer TLB misses */

enum { ISA_PORTABLE, ISA_AVX2, ISA_AVX512 };

/* L3 size in bytes: sysconf, else /sys (e.g. "307200K"), else 0 */
static size_t membw_l3(void)
{
#ifdef _SC_LEVEL3_CACHE_SIZE
    long v = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (v > 0)
        return (size_t)v;
#endif
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r");
    if (!f)
        return 0;
    unsigned long long n = 0;
    char unit = 0;
    int got = fscanf(f, "%llu%c", &n, &unit);
    fclose(f);
    if (got < 1)
        return 0;
    if (unit == 'K')
        n <<= 10;
    else if (unit == 'M')
        n <<= 20;
    return (size_t)n;
}

/* MemAvailable of /proc/meminfo in bytes, or 0 if unknown: with overcommit
 * a large allocation succeeds and filling it is what fails (the OOM killer) */
static size_t membw_avail(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[128];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    fclose(f);
    return (size_t)kb << 10;
}

static int membw_isa(void)
{
#ifdef MEMBW_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return ISA_AVX512;
    if (__builtin_cpu_supports("avx2"))
        return ISA_AVX2;
#endif
    return ISA_PORTABLE;
}

/* Each reader returns something that depends on every byte it read, so the
 * compiler cannot drop the loads. n is a multiple of 256 bytes. */
static uint64_t read_portable(const uint8_t *p, size_t n)
{
    const uint64_t *w = (const uint64_t *)(const void *)p;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i < n / 8; i += 4) {
        a ^= w[i];
        b ^= w[i + 1];
        c ^= w[i + 2];
        d ^= w[i + 3];
    }
    return a ^ b ^ c ^ d;
}

#ifdef MEMBW_X86
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *p, size_t n)
{
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i < n; i += 128) {
        a = _mm256_xor_si256(a, _mm256_load_si256((const __m256i *)(const void *)(p + i)));
        b = _mm256_xor_si256(b, _mm256_load_si256((const __m256i *)(const void *)(p + i + 32)));
        c = _mm256_xor_si256(c, _mm256_load_si256((const __m256i *)(const void *)(p + i + 64)));
        d = _mm256_xor_si256(d, _mm256_load_si256((const __m256i *)(const void *)(p + i + 96)));
    }
    a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    return (uint64_t)_mm256_extract_epi64(a, 0) ^ (uint64_t)_mm256_extract_epi64(a, 3);
}

__attribute__((target("avx512f"))) static uint64_t read_avx512(const uint8_t *p, size_t n)
{
    __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
    for (size_t i = 0; i < n; i += 256) {
        a = _mm512_xor_si512(a, _mm512_load_si512((const void *)(p + i)));
        b = _mm512_xor_si512(b, _mm512_load_si512((const void *)(p + i + 64)));
        c = _mm512_xor_si512(c, _mm512_load_si512((const void *)(p + i + 128)));
        d = _mm512_xor_si512(d, _mm512_load_si512((const void *)(p + i + 192)));
    }
    a = _mm512_xor_si512(_mm512_xor_si512(a, b), _mm512_xor_si512(c, d));
    return (uint64_t)_mm512_reduce_add_epi64(a);
}
#endif

static uint64_t membw_read(int isa, const uint8_t *p, size_t n)
{
#ifdef MEMBW_X86
    if (isa == ISA_AVX512)
        return read_avx512(p, n);
    if (isa == ISA_AVX2)
        return read_avx2(p, n);
#endif
    (void)isa;
    return read_portable(p, n);
}

typedef struct membw_job {
    const uint8_t *buf;
    size_t part; /* bytes per thread, a multiple of 256 */
    int n, isa, passes;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open; /* the workers wait for it: n, part and the barriers are set */
    pthread_barrier_t start, end;
    double *sec; /* [passes], written by thread 0 */
    volatile uint64_t sink;
} membw_job;

static double membw_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Thread i: every pass, read its part between the two barriers; thread 0
 * times the pass (pass 0 is the untimed warm-up). */
static void membw_thread(membw_job *j, int i)
{
    uint64_t acc = 0;
    for (int pass = 0; pass <= j->passes; pass++) {
        pthread_barrier_wait(&j->start);
        double t0 = membw_now();
        acc ^= membw_read(j->isa, j->buf + (size_t)i * j->part, j->part);
        pthread_barrier_wait(&j->end);
        if (i == 0 && pass > 0)
            j->sec[pass - 1] = membw_now() - t0;
    }
    pthread_mutex_lock(&j->mu);
    j->sink ^= acc;
    pthread_mutex_unlock(&j->mu);
}

typedef struct membw_arg {
    membw_job *job;
    int i;
} membw_arg;

static void *membw_worker(void *p)
{
    membw_arg *a = p;
    membw_job *j = a->job;
    pthread_mutex_lock(&j->mu);
    while (!j->open)
        pthread_cond_wait(&j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
    if (a->i < j->n)
        membw_thread(j, a->i);
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The passes over buf[size] with up to n threads (as many as could be
 * started: *n_used): the median seconds of a pass; *bytes read per pass. */
static double membw_passes(const uint8_t *buf, size_t size, int n, int isa, int *n_used, size_t *bytes)
{
    double sec[MEMBW_PASSES];
    membw_job j = {.buf = buf, .isa = isa, .passes = MEMBW_PASSES, .sec = sec};
    pthread_t th[MEMBW_MAX_THREADS];
    membw_arg args[MEMBW_MAX_THREADS];
    pthread_mutex_init(&j.mu, NULL);
    pthread_cond_init(&j.cv, NULL);
    int started = 1;
    for (; started < n; started++) {
        args[started] = (membw_arg){&j, started};
        if (pthread_create(&th[started], NULL, membw_worker, &args[started]) != 0)
            break;
    }
    /* the workers that started wait at the gate: now the count is known */
    j.n = started;
    j.part = size / (size_t)started / 256 * 256;
    pthread_barrier_init(&j.start, NULL, (unsigned)started);
    pthread_barrier_init(&j.end, NULL, (unsigned)started);
    pthread_mutex_lock(&j.mu);
    j.open = 1;
    pthread_cond_broadcast(&j.cv);
    pthread_mutex_unlock(&j.mu);
    membw_thread(&j, 0);
    for (int k = 1; k < started; k++)
        pthread_join(th[k], NULL);
    pthread_barrier_destroy(&j.start);
    pthread_barrier_destroy(&j.end);
    pthread_cond_destroy(&j.cv);
    pthread_mutex_destroy(&j.mu);
    qsort(sec, MEMBW_PASSES, sizeof *sec, cmp_double);
    *n_used = started;
    *bytes = j.part * (size_t)started;
    return sec[MEMBW_PASSES / 2];
}

/* A buffer of at least want bytes, halved down to MEMBW_FLOOR while the
 * allocation fails: its size in *got, NULL if even the floor failed. */
static uint8_t *membw_alloc(size_t want, size_t *got)
{
    for (size_t sz = want; sz >= MEMBW_FLOOR; sz /= 2) {
        void *p = NULL;
        if (posix_memalign(&p, MEMBW_ALIGN, sz) == 0) {
#ifdef MADV_HUGEPAGE
            madvise(p, sz, MADV_HUGEPAGE);
#endif
            memset(p, 0x5a, sz); /* touch every page: no page faults while timed */
            *got = sz;
            return p;
        }
    }
    return NULL;
}

static void membw_size(char *buf, size_t cap, double b)
{
    if (b >= 1e9)
        snprintf(buf, cap, "%.1f GB", b / 1e9);
    else
        snprintf(buf, cap, "%.1f MB", b / 1e6);
}

int kern_cpu_membw(int n_threads, kern_membw *out)
{
    static const char *const isa_name[] = {"64-bit loads (portable)", "AVX2 loads", "AVX-512 loads"};
    memset(out, 0, sizeof *out);
    int n = n_threads < 1 ? 1 : n_threads > MEMBW_MAX_THREADS ? MEMBW_MAX_THREADS : n_threads;
    size_t l3 = membw_l3();
    size_t want = l3 > MEMBW_MIN / 4 ? 4 * l3 : MEMBW_MIN;
    size_t got = 0, avail = membw_avail(), ask = want;
    while (avail && ask > avail / 2 && ask / 2 >= MEMBW_FLOOR)
        ask /= 2; /* never more than half of what is free */
    uint8_t *buf = membw_alloc(ask, &got);
    if (!buf) {
        snprintf(out->how, sizeof out->how, "no memory for even a %zu MB buffer", MEMBW_FLOOR >> 20);
        return -1;
    }
    int isa = membw_isa(), used = n;
    size_t bytes = 0;
    double sec = membw_passes(buf, got, n, isa, &used, &bytes);
    free(buf);
    if (!(sec > 0) || bytes == 0) {
        snprintf(out->how, sizeof out->how, "a pass over %zu bytes took no measurable time", bytes);
        return -1;
    }
    out->bytes_per_s = (double)bytes / sec;
    out->cache_bytes = l3;
    char g[32], l[32], w[32];
    membw_size(g, sizeof g, (double)bytes);
    membw_size(l, sizeof l, (double)l3);
    membw_size(w, sizeof w, (double)want);
    int k = snprintf(out->how, sizeof out->how, "%d thread%s%s reading %s (%s), median of %d passes", used,
                     used == 1 ? "" : "s", used < n ? " (no more could start)" : "", g, isa_name[isa],
                     MEMBW_PASSES);
    if (k > 0 && (size_t)k < sizeof out->how) {
        if (got < want)
            snprintf(out->how + k, sizeof out->how - (size_t)k, "; %s %s%s", w,
                     got < ask ? "could not be allocated" : "is over half the available memory",
                     l3 && (size_t)got <= l3 ? ", and this fits in the L3: too high" : "");
        else if (l3)
            snprintf(out->how + k, sizeof out->how - (size_t)k, "; L3 %s", l);
        else
            snprintf(out->how + k, sizeof out->how - (size_t)k, "; L3 size unknown");
    }
    return 0;
}
