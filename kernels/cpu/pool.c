/* pool: the CPU thread pool of kernels.h (kern_pool_*).
 *
 * Persistent workers wait for a job generation number to change. A decode
 * step runs ~100 small ops back to back, so a worker that has just finished
 * spins briefly (tens of microseconds) before it sleeps on a condition
 * variable: the next op then starts without a futex wake-up. The spin is
 * bounded because the cores may be shared (other processes, or more threads
 * than cores), where spinning only steals time from the thread we wait for.
 *
 * Indexes are claimed, not assigned: the caller runs index 0, then claims
 * any index no worker has taken yet. A worker that the scheduler has not
 * run (its core busy elsewhere) therefore costs the op nothing but the
 * parallelism; the caller never sits waiting for a thread that has not
 * started. fn(arg, i, n) must thus not assume which thread runs index i
 * (the opt kernels index per-part buffers by i, never by thread).
 *
 * The job generation and the next unclaimed index share one 64-bit atomic,
 * so a late worker can never claim an index of a newer job believing it
 * belongs to the one it woke up for.
 *
 * One thread at a time may call kern_pool_run on a pool, and fn must not
 * call kern_pool_run on the same pool (no nesting): the exec owns one pool
 * and runs one op at a time. */
#include "kernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/* Spin iterations before sleeping. A pause instruction takes from a few
 * cycles (older cores) to ~50 ns (recent Intel, AMD under a hypervisor), so
 * this is a few to ~100 us: enough to bridge the gap between two ops. */
#define POOL_SPIN 2000
#define POOL_MAX_THREADS 256

struct kern_pool {
    int n;         /* threads including the caller */
    pthread_t *th; /* [n-1] workers */
    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* a new job or stop */
    pthread_cond_t cv_done; /* all indexes of the job finished */
    /* generation << 32 | next unclaimed index. A new generation is stored
     * under mu so that a worker deciding to sleep cannot miss it. */
    _Atomic uint64_t state;
    atomic_int done; /* indexes >= 1 finished in this job */
    atomic_bool stop;
    void (*fn)(void *arg, int i, int n); /* published by the release store of state */
    void *arg;
};

static inline void pool_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline uint32_t pool_gen(uint64_t s)
{
    return (uint32_t)(s >> 32);
}

/* Claims and runs indexes of job `gen` until none is left; returns after
 * the last one it ran. */
static void pool_claim(kern_pool *p, uint32_t gen)
{
    uint64_t s = atomic_load_explicit(&p->state, memory_order_acquire);
    for (;;) {
        if (pool_gen(s) != gen || (uint32_t)s >= (uint32_t)p->n)
            return;
        /* on failure s is reloaded and the checks run again */
        if (!atomic_compare_exchange_weak_explicit(&p->state, &s, s + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        /* The job cannot end (nor fn/arg change) before this index is
         * counted done, so reading them now is safe. */
        p->fn(p->arg, (int)(uint32_t)s, p->n);
        if (atomic_fetch_add_explicit(&p->done, 1, memory_order_acq_rel) + 1 == p->n - 1) {
            /* Signal under the lock: a caller that saw the count short
             * under the lock is then already waiting. */
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
        s = atomic_load_explicit(&p->state, memory_order_acquire);
    }
}

static void *pool_worker(void *varg)
{
    kern_pool *p = varg;
    uint32_t seen = 0;
    for (;;) {
        uint32_t g = pool_gen(atomic_load_explicit(&p->state, memory_order_acquire));
        for (int s = 0; g == seen && s < POOL_SPIN && !atomic_load_explicit(&p->stop, memory_order_relaxed);
             s++) {
            pool_relax();
            g = pool_gen(atomic_load_explicit(&p->state, memory_order_acquire));
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = pool_gen(atomic_load_explicit(&p->state, memory_order_acquire))) == seen &&
                   !atomic_load_explicit(&p->stop, memory_order_relaxed))
                pthread_cond_wait(&p->cv_work, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load_explicit(&p->stop, memory_order_acquire))
            return NULL;
        seen = g;
        pool_claim(p, g);
    }
}

static void pool_stop_workers(kern_pool *p, int started)
{
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->stop, true, memory_order_release);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int w = 0; w < started; w++)
        pthread_join(p->th[w], NULL);
}

kern_pool *kern_pool_new(int n_threads)
{
    if (n_threads < 1 || n_threads > POOL_MAX_THREADS)
        return NULL;
    kern_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->n = n_threads;
    atomic_init(&p->state, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->stop, false);
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->cv_work, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->cv_done, NULL) != 0) {
        pthread_cond_destroy(&p->cv_work);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    if (n_threads > 1) {
        p->th = calloc((size_t)n_threads - 1, sizeof *p->th);
        if (!p->th) {
            kern_pool_free(p);
            return NULL;
        }
    }
    for (int w = 0; w < n_threads - 1; w++) {
        if (pthread_create(&p->th[w], NULL, pool_worker, p) != 0) {
            pool_stop_workers(p, w);
            free(p->th);
            p->th = NULL; /* nothing left to join in kern_pool_free */
            kern_pool_free(p);
            return NULL;
        }
    }
    return p;
}

void kern_pool_free(kern_pool *p)
{
    if (!p)
        return;
    if (p->th)
        pool_stop_workers(p, p->n - 1);
    free(p->th);
    pthread_cond_destroy(&p->cv_done);
    pthread_cond_destroy(&p->cv_work);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int kern_pool_threads(const kern_pool *p)
{
    return p ? p->n : 1;
}

void kern_pool_run(kern_pool *p, void (*fn)(void *arg, int i, int n), void *arg)
{
    if (!fn)
        return;
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    uint32_t gen = pool_gen(atomic_load_explicit(&p->state, memory_order_relaxed)) + 1;
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->state, (uint64_t)gen << 32 | 1u, memory_order_release);
    pthread_cond_broadcast(&p->cv_work); /* cheap when nobody sleeps */
    pthread_mutex_unlock(&p->mu);

    fn(arg, 0, p->n);
    pool_claim(p, gen); /* whatever no worker has started yet */

    for (int s = 0; s < POOL_SPIN; s++) {
        if (atomic_load_explicit(&p->done, memory_order_acquire) == p->n - 1)
            return;
        pool_relax();
    }
    pthread_mutex_lock(&p->mu);
    while (atomic_load_explicit(&p->done, memory_order_acquire) != p->n - 1)
        pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
