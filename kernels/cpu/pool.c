/* pool: the CPU thread pool of kernels.h (kern_pool_*).
 *
 * Persistent workers wait for a job generation number to change. A decode
 * step runs ~100 small ops back to back, so a worker that has just finished
 * spins briefly (a few tens of microseconds) before it sleeps on a condition
 * variable: the next op then starts without a futex wake-up. The spin is
 * bounded because the cores may be shared (other processes, or more threads
 * than cores), where spinning only steals time from the thread we wait for.
 *
 * One thread at a time may call kern_pool_run on a pool, and fn must not call
 * kern_pool_run on the same pool (no nesting): the exec owns one pool and
 * runs one op at a time. */
#include "kernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

/* Spin iterations before sleeping. With a pause instruction one iteration is
 * ~10-40 ns, so this is roughly 20-80 us. */
#define POOL_SPIN 2000
#define POOL_MAX_THREADS 256

struct kern_pool {
    int n;                       /* threads including the caller */
    pthread_t *th;               /* [n-1] workers: worker w runs index w+1 */
    pthread_mutex_t mu;
    pthread_cond_t cv_work;      /* gen changed or stop */
    pthread_cond_t cv_done;      /* pending reached 0 */
    atomic_uint gen;             /* job generation; written under mu */
    atomic_int pending;          /* workers that have not finished this job */
    atomic_bool stop;
    void (*fn)(void *arg, int i, int n); /* published by the release store of gen */
    void *arg;
};

typedef struct pool_worker_arg {
    kern_pool *p;
    int index;
} pool_worker_arg;

static inline void pool_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void *pool_worker(void *varg)
{
    pool_worker_arg wa = *(pool_worker_arg *)varg;
    free(varg);
    kern_pool *p = wa.p;
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        for (int s = 0; g == seen && s < POOL_SPIN && !atomic_load_explicit(&p->stop, memory_order_relaxed); s++) {
            pool_relax();
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen &&
                   !atomic_load_explicit(&p->stop, memory_order_relaxed))
                pthread_cond_wait(&p->cv_work, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load_explicit(&p->stop, memory_order_acquire))
            return NULL;
        seen = g;
        p->fn(p->arg, wa.index, p->n);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            /* Under the lock, so that a caller that saw pending != 0 under the
             * lock is already waiting when the signal comes. */
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
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
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
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
        pool_worker_arg *wa = malloc(sizeof *wa);
        if (wa) {
            wa->p = p;
            wa->index = w + 1;
        }
        if (!wa || pthread_create(&p->th[w], NULL, pool_worker, wa) != 0) {
            free(wa);
            pool_stop_workers(p, w);
            free(p->th);
            p->th = NULL;
            p->n = 1; /* nothing left to join in kern_pool_free */
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
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    /* The generation changes under the lock so that a worker deciding to
     * sleep cannot miss it; the broadcast is cheap when nobody sleeps. */
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);

    fn(arg, 0, p->n);

    for (int s = 0; s < POOL_SPIN; s++) {
        if (atomic_load_explicit(&p->pending, memory_order_acquire) == 0)
            return;
        pool_relax();
    }
    pthread_mutex_lock(&p->mu);
    while (atomic_load_explicit(&p->pending, memory_order_acquire) != 0)
        pthread_cond_wait(&p->cv_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
