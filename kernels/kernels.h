/* kernels: op kinds, the common call signature and the variant registry.
 * Kernels know nothing of models or tensor names: they get pointers, sizes
 * and parameters in a kern_args, and return 0 or -1. Every op kind has a
 * `ref` variant per backend (obviously correct: plain loops, f64
 * accumulation) and at least one faster variant (`opt`).
 *
 * Layouts (row-major, outermost first):
 *   activations are f32; matmul weights are [m, k] rows of w_type (any
 *   quant.h type); norm weights and biases are f32.
 *   K/V caches are f32 [n_ctx, n_head_kv, head_dim]; rows 0..n_kv-1 valid.
 * Pointers are host memory for the cpu backend, device memory for cuda. */
#ifndef XF_KERNELS_H
#define XF_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kern_op {
    KERN_OP_EMBD,    /* y[n,k] = w[tok[i]] (+ w2[pos0+i]); w: [vocab, k] of w_type, w2: [n_ctx, k] of w2_type or NULL */
    KERN_OP_NORM,    /* LayerNorm rows: y[n,k] = (x-mean)/sqrt(var+eps) * w + b */
    KERN_OP_RMSNORM, /* y[n,k] = x / sqrt(mean(x^2)+eps) * w */
    KERN_OP_MATMUL,  /* y[n,m] = x[n,k] . w[m,k]^T (+ b[m]) */
    KERN_OP_VIEW,    /* y[n,m] = x[i*x_stride + off + j]: q/k/v columns of a fused qkv */
    KERN_OP_ROPE,    /* x,y [n, n_head, head_dim], position pos0+i, base rope_base; pairs by rope_mode:
                        NeoX halves (d, d+head_dim/2) or llama.cpp's normal (2d, 2d+1), angle
                        (pos0+i) * base^(-2d/head_dim) for pair d */
    KERN_OP_KQ,      /* y[h,i,j] = scale * q[i,h,:] . kc[j,h/(n_head/n_head_kv),:], j < n_kv;
                        causal: j > pos0+i -> -INFINITY. q = x [n, n_head, head_dim] */
    KERN_OP_SOFTMAX, /* rows of length m (n rows): y = exp(x - max) / sum; -inf -> 0 */
    KERN_OP_KQV,     /* y[i, h*head_dim + d] = sum_j x[h,i,j] * vc[j, h/(n_head/n_head_kv), d] */
    KERN_OP_ADD,     /* y[n*k] = x + x2 */
    KERN_OP_GELU,    /* y[n*k] = gelu_tanh(x) */
    KERN_OP_SWIGLU,  /* y[n*k] = silu(x) * x2 (x = gate, x2 = up) */
    KERN_OP_COUNT
} kern_op;

typedef struct kern_pool kern_pool; /* CPU thread pool (kernels/cpu/pool.c) */

/* Per-backend execution context, owned by the caller (exec). */
typedef struct kern_ctx {
    int n_threads;      /* cpu: worker count including the caller */
    kern_pool *pool;    /* cpu: NULL means single-threaded */
    void *stream;       /* cuda: cudaStream_t (NULL = legacy default stream) */
    void *cublas;       /* cuda: cublasHandle_t, created lazily by variants that need it */
    void *scratch;      /* backend scratch buffer for variants that need one */
    size_t scratch_size;
    void *mega;         /* cuda: the decode megakernel's recorder while one records (kernels_cuda.h) */
    void *codes;        /* cuda: prefill codes kept per weight (kern_cuda_codes_keep), or NULL */
} kern_ctx;

typedef struct kern_args {
    const float *x;      /* primary input */
    const float *x2;     /* second input: ADD addend, SWIGLU up */
    const void *w;       /* weight / table / norm gamma */
    int w_type;          /* XF_TYPE_* of w (norm gamma: always F32) */
    const void *w2;      /* EMBD: position table or NULL */
    int w2_type;
    const float *b;      /* bias [m] (MATMUL) or beta [k] (NORM); NULL if none */
    float *y;            /* output; never aliases an input */
    const int32_t *tok;  /* EMBD: token ids [n], host memory on every backend */
    const float *kc;     /* KQ: key cache */
    const float *vc;     /* KQV: value cache */
    int64_t n;           /* rows (tokens) */
    int64_t k;           /* row length of x (inner dim) */
    int64_t m;           /* output row length (MATMUL, VIEW); SOFTMAX row length */
    int64_t x_stride;    /* VIEW: row stride of x */
    int64_t off;         /* VIEW: column offset */
    int n_head, n_head_kv, head_dim;
    int n_kv;            /* KQ/KQV: cache rows valid after this pass */
    int pos0;            /* position of row 0 */
    float eps;           /* NORM, RMSNORM */
    float scale;         /* KQ */
    float rope_base;     /* ROPE */
    int rope_mode;       /* ROPE: KERN_ROPE_NEOX (0, Qwen2) or KERN_ROPE_NORMAL (1, llama) */
    const int32_t *dev_step; /* cuda opt variants: per-pass values on the device, or NULL (below) */
} kern_args;

/* Per-pass values on the device (CUDA graphs). A captured graph replays the
 * kernel parameters it was captured with, so the values that change from one
 * decode step to the next travel in a small device buffer instead:
 * dev_step[KERN_STEP_POS0] = pos0, dev_step[KERN_STEP_NKV] = n_kv and the n
 * token ids from dev_step[KERN_STEP_TOK] on. When a->dev_step is set, the
 * CUDA opt variants of EMBD, ROPE, KQ, SOFTMAX and KQV read pos0, n_kv (KQ,
 * KQV, and SOFTMAX's row length m) and the ids from it when they run; the
 * host fields are then upper bounds that size the launch (a->n_kv and
 * SOFTMAX's a->m: at least the device n_kv, e.g. n_ctx) and a->tok, a->pos0
 * are ignored. Scores keep the layout [H, n, n_kv] of the device n_kv. The
 * results are bit-identical to a call with the same values on the host. */
enum { KERN_STEP_POS0 = 0, KERN_STEP_NKV = 1, KERN_STEP_TOK = 2 };

/* ROPE pairings (kern_args.rope_mode), as llama.cpp's rope modes: NEOX
 * rotates element d with d + head_dim/2 (HF's rotate_half); NORMAL rotates
 * the adjacent pair (2d, 2d+1) (llama.cpp's convert permutes HF llama q/k
 * rows so that this matches rotate_half on the GGUF's weights). */
enum { KERN_ROPE_NEOX = 0, KERN_ROPE_NORMAL = 1 };

typedef int (*kern_fn)(kern_ctx *ctx, const kern_args *a);

typedef enum kern_backend { KERN_BACKEND_CPU = 0, KERN_BACKEND_CUDA = 1, KERN_BACKEND_COUNT } kern_backend;

/* What a variant declares about itself (kern_variant.flags). exec decides
 * from these fields alone, never from a variant's name, whether a pass may
 * be captured as a CUDA graph and whether the fast-path fusions
 * (kernels_cuda.h) may replace the ops this variant would run. */
enum {
    /* May be recorded into a CUDA graph and replayed: no allocation, sync
     * or host read inside a call (given the scratch it declares), and it
     * reads the per-pass values from a->dev_step when that is set. */
    KERN_VF_CAPTURABLE = 1u << 0,
    /* The fast-path fusions that replace this op (kernels_cuda.h:
     * kern_cuda_qkv_split, kern_cuda_add_norm, kern_cuda_matmul_gelu; on
     * the cpu kern_cpu_attn_fused) compute what this variant computes, bit
     * for bit. A fusion applies
     * only when the selected variant of every op it replaces says so. */
    KERN_VF_FUSE_EXACT = 1u << 1,
};

typedef struct kern_variant {
    kern_op op;
    kern_backend backend;
    const char *name;  /* "ref", "opt", ... unique per (op, backend) */
    kern_fn fn;
    const char *doc;   /* one line for `kernel` */
    unsigned flags;    /* KERN_VF_* */
    /* Bytes of ctx->scratch (16-byte aligned backend memory) with which the
     * variant runs `a` at full speed; NULL or 0: it needs none. It reads
     * only the sizes and types of a (n, k, m, w_type, ...), never its
     * pointers, so that the caller can size scratch for a whole program
     * before a pass runs. With less scratch a variant must still be correct
     * (slower), never fail or overrun. */
    size_t (*scratch_bytes)(const kern_args *a);
} kern_variant;

/* ctx scratch variant v wants for a (0 if it declares nothing). */
static inline size_t kern_variant_scratch(const kern_variant *v, const kern_args *a)
{
    return v && v->scratch_bytes ? v->scratch_bytes(a) : 0;
}

/* Memory of a backend: exec allocates activations, caches and weight copies
 * through this, so that it never needs to know where memory lives. */
typedef struct kern_mem_ops {
    void *(*alloc)(size_t bytes); /* NULL on failure */
    void (*free)(void *p);
    int (*to_dev)(kern_ctx *ctx, void *dst, const void *src, size_t bytes);  /* host -> backend */
    int (*to_host)(kern_ctx *ctx, void *dst, const void *src, size_t bytes); /* backend -> host, synchronous */
    int (*copy)(kern_ctx *ctx, void *dst, const void *src, size_t bytes);    /* backend -> backend */
    int (*sync)(kern_ctx *ctx);
    /* Statistics of x[0..n) where it lives, so that only 8 numbers travel:
     * out = {min, max, mean, std, absmax, n, nan, inf} over the finite
     * values (two passes), as engine/tensor.c computes them; synchronous.
     * NULL where backend memory is host memory: the caller reads it in place. */
    int (*stats)(kern_ctx *ctx, const float *x, int64_t n, double *out);
} kern_mem_ops;

/* NULL if the backend is not compiled in. */
const kern_mem_ops *kern_backend_mem(kern_backend b);
/* 1 if usable now (cuda: a device answers); else 0 with the reason in why. */
int kern_backend_available(kern_backend b, char *why, size_t why_size);

const char *kern_op_name(kern_op op);       /* "matmul", "norm", ... */
int kern_op_from_name(const char *name);    /* -1 if unknown */
const char *kern_backend_name(kern_backend b);

/* The built-in registry: cpu variants, then cuda ones when compiled in. */
const kern_variant *kern_registry(size_t *count);
/* The variant (op, backend, name), or NULL. */
const kern_variant *kern_find(kern_op op, kern_backend backend, const char *name);

/* Tables each backend contributes (kernels/cpu/ *.c, kernels/cuda/ *.cu). */
extern const kern_variant kern_cpu_variants[];
extern const size_t kern_cpu_variant_count;
#ifdef XF_HAVE_CUDA
extern const kern_variant kern_cuda_variants[];
extern const size_t kern_cuda_variant_count;
const kern_mem_ops *kern_cuda_mem(void);
int kern_cuda_available(char *why, size_t why_size);
#endif

/* The memory bandwidth a pass that streams its weights can reach at best
 * (bench's floor): bytes per second, and how it was measured, one line. */
typedef struct kern_membw {
    double bytes_per_s; /* > 0 and finite when the call returned 0 */
    uint64_t cache_bytes; /* the last-level cache (cpu: L3, cuda: L2); 0 if unknown */
    char how[240];      /* how it was measured; on -1, why it could not be */
} kern_membw;
/* kernels/cpu/membw.c: n_threads threads read a buffer of max(1 GiB, 4x the
 * L3) (halved while it is over half the available memory or cannot be
 * allocated; `how` says so), the widest loads
 * the CPU has, each thread its own part; the median of 5 passes after one
 * untimed pass. Takes about a second. 0, or -1 with the reason in out->how. */
int kern_cpu_membw(int n_threads, kern_membw *out);

/* kernels/cpu/opt_attn.c: kq, softmax and kqv of a prefill in one pass
 * over rows, never writing kq's or softmax's output: kqv's output (at
 * kqv->y) is bit-identical to running the three cpu `opt` variants (which
 * carry KERN_VF_FUSE_EXACT for it) one after the other, but for the sign
 * of a zero sum. kq and kqv are the two ops' arguments (kq->y and kqv->x
 * unused, may be NULL).
 * Needs kern_cpu_attn_fused_scratch bytes of ctx->scratch; -1 if short or
 * if the arguments do not belong together. */
size_t kern_cpu_attn_fused_scratch(const kern_ctx *ctx, const kern_args *kq);
int kern_cpu_attn_fused(kern_ctx *ctx, const kern_args *kq, const kern_args *kqv);

/* CPU thread pool: kern_pool_run calls fn(arg, i, n) for i in 0..n-1 across
 * the workers (caller included) and returns when all are done. */
kern_pool *kern_pool_new(int n_threads);
void kern_pool_free(kern_pool *p);
void kern_pool_run(kern_pool *p, void (*fn)(void *arg, int i, int n), void *arg);
int kern_pool_threads(const kern_pool *p);

#ifdef __cplusplus
}
#endif
#endif
