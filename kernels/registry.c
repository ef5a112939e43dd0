/* registry: names of op kinds and backends, the built-in table of kernel
 * variants, lookup, and each backend's memory operations (kernels.h).
 *
 * The combined table: without CUDA it is kern_cpu_variants itself. With
 * CUDA the two tables live in different translation units (one compiled by
 * nvcc), so no static initializer can concatenate them; the table is built
 * once, under pthread_once, into a heap array that is never written again
 * and never freed (it lives as long as the program, like the tables it
 * copies). Every caller sees the same immutable array; nothing depends on
 * who asked first. */
#include "kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef XF_HAVE_CUDA
#include <pthread.h>
#endif

static const char *const op_names[KERN_OP_COUNT] = {
    [KERN_OP_EMBD] = "embd",     [KERN_OP_NORM] = "norm",       [KERN_OP_RMSNORM] = "rmsnorm",
    [KERN_OP_MATMUL] = "matmul", [KERN_OP_VIEW] = "view",       [KERN_OP_ROPE] = "rope",
    [KERN_OP_KQ] = "kq",         [KERN_OP_SOFTMAX] = "softmax", [KERN_OP_KQV] = "kqv",
    [KERN_OP_ADD] = "add",       [KERN_OP_GELU] = "gelu",       [KERN_OP_SWIGLU] = "swiglu",
};

const char *kern_op_name(kern_op op)
{
    if ((int)op < 0 || op >= KERN_OP_COUNT)
        return "?";
    return op_names[op];
}

int kern_op_from_name(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < KERN_OP_COUNT; i++)
        if (strcmp(op_names[i], name) == 0)
            return i;
    return -1;
}

const char *kern_backend_name(kern_backend b)
{
    switch (b) {
    case KERN_BACKEND_CPU:
        return "cpu";
    case KERN_BACKEND_CUDA:
        return "cuda";
    case KERN_BACKEND_COUNT:
        break;
    }
    return "?";
}

/* ------------------------------------------------------------ registry */

#ifdef XF_HAVE_CUDA
typedef struct registry_table {
    const kern_variant *v;
    size_t count;
} registry_table;

static registry_table registry_all; /* written once by registry_build, then read-only */
static pthread_once_t registry_once = PTHREAD_ONCE_INIT;

static void registry_build(void)
{
    size_t n = kern_cpu_variant_count + kern_cuda_variant_count;
    kern_variant *v = malloc(n * sizeof *v);
    if (!v) {
        /* out of memory at start-up: degrade to the cpu table rather than
         * hand out nothing; the cuda variants are then not selectable */
        registry_all.v = kern_cpu_variants;
        registry_all.count = kern_cpu_variant_count;
        return;
    }
    memcpy(v, kern_cpu_variants, kern_cpu_variant_count * sizeof *v);
    memcpy(v + kern_cpu_variant_count, kern_cuda_variants, kern_cuda_variant_count * sizeof *v);
    registry_all.v = v;
    registry_all.count = n;
}
#endif

const kern_variant *kern_registry(size_t *count)
{
#ifdef XF_HAVE_CUDA
    pthread_once(&registry_once, registry_build);
    if (count)
        *count = registry_all.count;
    return registry_all.v;
#else
    if (count)
        *count = kern_cpu_variant_count;
    return kern_cpu_variants;
#endif
}

const kern_variant *kern_find(kern_op op, kern_backend backend, const char *name)
{
    if (!name)
        return NULL;
    size_t n;
    const kern_variant *v = kern_registry(&n);
    for (size_t i = 0; i < n; i++)
        if (v[i].op == op && v[i].backend == backend && strcmp(v[i].name, name) == 0)
            return &v[i];
    return NULL;
}

/* ------------------------------------------------------ cpu memory ops */

/* 64-byte alignment: a cache line, and enough for any vector load. */
static void *cpu_alloc(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 1) != 0)
        return NULL;
    return p;
}

static void cpu_free(void *p)
{
    free(p);
}

static int cpu_memcpy(kern_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    (void)ctx;
    if (bytes == 0)
        return 0;
    if (!dst || !src)
        return -1;
    memmove(dst, src, bytes); /* overlap-safe: costs nothing over memcpy */
    return 0;
}

static int cpu_sync(kern_ctx *ctx)
{
    (void)ctx;
    return 0;
}

static const kern_mem_ops cpu_mem_ops = {
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_dev = cpu_memcpy,
    .to_host = cpu_memcpy,
    .copy = cpu_memcpy,
    .sync = cpu_sync,
    .stats = NULL, /* host memory: read in place */
};

const kern_mem_ops *kern_backend_mem(kern_backend b)
{
    switch (b) {
    case KERN_BACKEND_CPU:
        return &cpu_mem_ops;
    case KERN_BACKEND_CUDA:
#ifdef XF_HAVE_CUDA
        return kern_cuda_mem();
#else
        return NULL;
#endif
    case KERN_BACKEND_COUNT:
        break;
    }
    return NULL;
}

int kern_backend_available(kern_backend b, char *why, size_t why_size)
{
    if (why && why_size)
        why[0] = '\0';
    switch (b) {
    case KERN_BACKEND_CPU:
        return 1;
    case KERN_BACKEND_CUDA:
#ifdef XF_HAVE_CUDA
        return kern_cuda_available(why, why_size);
#else
        if (why && why_size)
            snprintf(why, why_size, "built without CUDA");
        return 0;
#endif
    case KERN_BACKEND_COUNT:
        break;
    }
    if (why && why_size)
        snprintf(why, why_size, "unknown backend %d", (int)b);
    return 0;
}
