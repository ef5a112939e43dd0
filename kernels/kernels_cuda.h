/* kernels_cuda: what the CUDA backend offers beyond kernels.h (public to
 * the floors above; kernels/cuda/cuda_internal.h is the private one).
 * kernels.h names the variant table, the memory ops, the availability probe
 * and what each variant declares (graph capture, fusions, scratch: its
 * flags and scratch_bytes); this header adds the life cycle of the state
 * that CUDA variants keep in a kern_ctx (its stream, the cuBLAS handle in
 * ctx->cublas), and what exec's fast path needs: capture of a decode pass into a
 * CUDA graph, replay, pinned host memory for the per-pass values
 * (kernels.h: dev_step), and the kernels only that path launches (KV-cache
 * stores at a device position, fused q/k/v split, fused residual + norm,
 * matmul with its GELU in the epilogue).
 * Declared only when the backend is compiled in (XF_HAVE_CUDA). */
#ifndef XF_KERNELS_CUDA_H
#define XF_KERNELS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creates the cuBLAS handle (FP32 math, no TF32) in ctx->cublas if there is
 * none and binds it to ctx->stream. Variants that need it call this on first
 * use; call it yourself before a graph capture, since creating a handle
 * allocates. 0, or -1 if cuBLAS cannot start. */
int kern_cuda_ctx_prepare(kern_ctx *ctx);

/* Destroys what CUDA variants created in ctx (the cuBLAS handle, the kept
 * codes) and sets ctx->cublas and ctx->codes to NULL; the stream and
 * scratch stay the caller's. */
void kern_cuda_ctx_release(kern_ctx *ctx);

/* The prefill product's codes of a weight kept on the device
 * (matmul_codes.cu): opt's MATMUL of two or more tokens then reads them
 * instead of making them from w in every call (the same bits). w is device
 * memory [rows, k] of w_type, and must stay where it is, unchanged, until
 * kern_cuda_codes_free. 0 kept (or kept already), 1 not kept (F16 and the
 * types or shapes the product does not take, XF_CODES=0 in the
 * environment, or less than half of the card would stay free), -1 error.
 * Asynchronous on ctx's stream. */
int kern_cuda_codes_keep(kern_ctx *ctx, const void *w, int w_type, int64_t rows, int64_t k);
/* how many weights have codes kept, and their bytes */
void kern_cuda_codes_stats(const kern_ctx *ctx, int *n, size_t *bytes);
/* Frees every kept code (after the stream's queued work) and the table. */
void kern_cuda_codes_free(kern_ctx *ctx);

/* opt's MATMUL (prefill: n above the matrix-vector kernels' rows) of 2
 * or 3 weights of one type that read the same x [n, k] (a layer's gate and
 * up, or q, k and v), in one launch: one split of x and every product's
 * blocks in one grid, so the second product's blocks fill the SMs the
 * first leaves idle in its last wave. Taken only where each product alone
 * would run on wgmma with its codes kept (or F16) and the scratch holds
 * every product's partial sums at once: each is cut in k as it would be
 * alone, so every output has the bits of opt's MATMUL of that weight
 * alone. 0 done,
 * 1 not taken (no output written; run each alone), -1 error. */
int kern_cuda_matmul_multi(kern_ctx *ctx, const kern_args *const *a, int n);
/* the scratch it needs for these shapes (x's planes, every product's
 * partial sums); 0 where it would not take them. More scratch than a
 * product alone declares changes none of its bits. */
size_t kern_cuda_matmul_multi_scratch(const kern_args *const *a, int n);
/* whether exec's prefill uses it: XF_MM_MULTI=1 in the environment (off
 * by default until it is timed on a GPU; written in session 28, which had
 * none) */
int kern_cuda_matmul_multi_on(void);

/* The block shape of the prefill product on Hopper's wgmma
 * (matmul_wgmma.cu): 128 or 192 weight rows a block. Both give the same
 * bits where they cut k into the same slices (but Q4_K/Q5_K with
 * kern_cuda_kfold on, which folds once a super-block at 128 only); 192 streams fewer bytes of
 * L2 a product, 128 (the default) is sessions 12-27's kernel: 192 is the
 * default once timed faster on a GPU (written in session 28, which had
 * none). XF_MW_ROWS=192 in the environment sets it at first use; this call
 * sets it for tests and measurements. Returns the shape before; 0 only
 * asks. Process-wide. */
int kern_cuda_wgmma_rows(int rows);
/* 1 where the prefill product runs on wgmma: a build for sm_90a, a card of
 * compute capability 9.0, XF_NO_WGMMA unset (else mma.sync, and no launch
 * of several products, kern_cuda_matmul_multi). Asked once a process. */
int kern_cuda_wgmma_available(void);
/* The K-quants' super-block fold in the prefill product (Q4_K, Q5_K): codes
 * sc * q with a = the super-block's d, and on wgmma a super-block's 256 k
 * summed in the tensor cores before one fma by d (the minimum terms b * sx
 * folded per group as each tile is issued): about 40% fewer fold
 * instructions a tile, at the cost of sums of 256 in the tensor cores'
 * truncating accumulator instead of 32 (the tests bound the error). `on`
 * 1 or 0 sets it (-1 only asks; XF_MW_KFOLD=1 in the environment sets it
 * at first use); returns the setting before. Off by default until timed on
 * a GPU (written in session 29, which had none). Codes kept in one form
 * are not used in the other (made in the call instead). Process-wide. */
int kern_cuda_kfold(int on);

/* BF16 and F32 weights in opt's prefill product on the tensor cores
 * (matmul_split.cu, split_float.h: exact f16 codes under a power-of-two
 * scale a group of 32, F32 as two codes an element, hi and lo) instead of
 * cuBLAS SGEMM: `types` 1 BF16, 2 F32, 3 both, 0 neither (the default
 * until timed on a GPU: written in session 29, which had none);
 * XF_SPLIT_FLOAT=bf16|f32|all (or 1: all) in the environment sets it at
 * first use.
 * Codes are kept at load (kern_cuda_codes_keep) only for the types on then.
 * Returns the setting before; -1 only asks. Process-wide. */
int kern_cuda_split_float(int types);
/* The same codes as the device makes them, made on the host by the same
 * code (for the tests, which need no GPU): rows of k BF16 or F32 weights
 * at w -> q [rows, k'] f16 bits and a [rows, k' / 32] group scales, k' = k
 * (BF16) or 2k (F32: each group's 32 hi codes, then its 32 lo codes, the
 * lo scale 2^-11 of the hi). 0, or -1 for another type or k not a
 * multiple of 32. */
int kern_cuda_split_codes_host(int type, const void *w, int64_t rows, int64_t k, uint16_t *q, float *a);

/* A stream of its own in ctx->stream (non-blocking; ctx->stream must be
 * NULL): graphs cannot be captured on the legacy default stream. Create it
 * before kern_cuda_ctx_prepare, so that cuBLAS is bound to it. 0 or -1. */
int kern_cuda_stream_new(kern_ctx *ctx);
/* Waits for the stream, destroys it, sets ctx->stream to NULL. */
void kern_cuda_stream_free(kern_ctx *ctx);

/* Page-locked host memory: a graph's host->device copy node reads it when
 * the graph runs, so it must stay put and unchanged until then. */
void *kern_cuda_host_alloc(size_t bytes);
void kern_cuda_host_free(void *p);

/* Graph capture on ctx->stream (thread-local mode): between begin and end,
 * variant calls and memory ops on ctx are recorded, not run. end(keep=0)
 * discards (after a failed call); else it instantiates the graph: NULL if
 * the capture or the instantiation failed (the CUDA error is cleared). */
typedef struct kern_cuda_graph kern_cuda_graph;
int kern_cuda_capture_begin(kern_ctx *ctx);
kern_cuda_graph *kern_cuda_capture_end(kern_ctx *ctx, int keep);
int kern_cuda_graph_launch(const kern_cuda_graph *g, kern_ctx *ctx);
size_t kern_cuda_graph_nodes(const kern_cuda_graph *g);
void kern_cuda_graph_free(kern_cuda_graph *g);

/* Breakpoint conditions checked inside a graph (watch.cu): one launch
 * tests every tensor of w_dev (device memory, n entries, the largest
 * max_numel elements) and writes 1 to *flag_dev if any element meets its
 * entry's condition; it never writes 0 (the host clears the flag). flag_dev:
 * a device address, e.g. of pinned host memory (kern_cuda_host_dev_ptr). */
enum { KERN_WATCH_NAN, KERN_WATCH_INF, KERN_WATCH_ABSMAX_GT };
typedef struct kern_watch {
    const float *x; /* device [n] */
    int64_t n;
    double thr; /* ABSMAX_GT: true if a finite |v| > thr */
    int kind;   /* KERN_WATCH_* */
} kern_watch;
int kern_cuda_watch(kern_ctx *ctx, const kern_watch *w_dev, int n, int64_t max_numel, int *flag_dev);
/* the device address of kern_cuda_host_alloc memory (NULL if it has none) */
int *kern_cuda_host_dev_ptr(void *host);

/* cache[(pos + i) * row + j] = src[i * row + j] for i < n, j < row, where
 * pos = dev_step[KERN_STEP_POS0] if dev_step is set, else pos0. */
int kern_cuda_rows_store(kern_ctx *ctx, float *cache, const float *src, int64_t row, int64_t n, int pos0,
                         const int32_t *dev_step);

/* The fusions below replace several ops with one launch. Each reproduces,
 * bit for bit, the variants that carry KERN_VF_FUSE_EXACT (kernels.h) and no
 * others: use one only where the selected variant of every op it replaces
 * has that flag, else run those ops one kernel each. */

/* GPT-2's three VIEW ops and two cache stores in one launch: q, k, v [n, d]
 * are the column blocks 0, 1, 2 of qkv [n, 3d]; k and v also go to rows
 * pos..pos+n-1 of kc and vc ([n_ctx, d]; either may be NULL), pos as in
 * kern_cuda_rows_store. Copies only: bit-identical to the ops it replaces. */
int kern_cuda_qkv_split(kern_ctx *ctx, const float *qkv, float *q, float *k, float *v, float *kc, float *vc,
                        int64_t n, int64_t d, int pos0, const int32_t *dev_step);

/* An opt ADD (add: y = x + x2) followed by an opt NORM (rms 0) or RMSNORM
 * (rms 1) of its output (norm->x == add->y): one launch where the pointers
 * allow, else the two opt kernels; add->y and norm->y are bit-identical to
 * those of the two opt launches either way. */
int kern_cuda_add_norm(kern_ctx *ctx, const kern_args *add, const kern_args *norm, int rms);

/* An opt MATMUL (mm) followed by an opt GELU of its output (gelu->x ==
 * mm->y): for up to 4 rows one launch that writes both (the GELU in the
 * matrix-vector epilogue), else the two opt calls; mm->y and gelu->y are
 * bit-identical to those of the two calls either way. */
int kern_cuda_matmul_gelu(kern_ctx *ctx, const kern_args *mm, const kern_args *gelu);

/* The decode fast path's fused launches (fused_decode.cu). Each returns 0,
 * -1 on a CUDA error, or 1 when its arguments are not a case it takes, and
 * then it has launched nothing: the caller runs the ops one kernel each.
 * Every output is bit-identical to the opt variant's it stands in for.
 *
 * matvec_multi: the opt MATMULs a[0..n-1] (n <= 3, one token each, any
 * weight types; typically q, k and v of one x): one launch per weight type,
 * except that two types make one launch where kern_cuda_matvec_pair_fused
 * (a[0]'s type, the other) says so (outside the megakernel). Takes the
 * shapes that kc_opt_matmul runs with its staged (gemv.cu) or 8-wide
 * matrix-vector kernel. */
int kern_cuda_matvec_multi(kern_ctx *ctx, const kern_args *const *a, int n);

/* 1 if matvec_multi runs jobs of first_type and second_type (the first
 * job's type first) in one launch: the pairs K-quant mixes give q/k and v
 * (Q5_0 + Q8_0, Q5_1 + Q8_0, Q4_K + Q6_K, Q5_K + Q6_K); else 0. */
int kern_cuda_matvec_pair_fused(int first_type, int second_type);

/* matvec_swiglu: the opt MATMULs gate and up of one x (same type and
 * shape) and the opt SWIGLU act (act->x == gate->y, act->x2 == up->y) in
 * one launch. */
int kern_cuda_matvec_swiglu(kern_ctx *ctx, const kern_args *gate, const kern_args *up, const kern_args *act);

/* rope_store: the opt ROPEs q and k of one token (same head_dim, base,
 * mode, position), k->y also stored at the token's row of kc, and v
 * (v_numel = k's n_head * head_dim floats) at that row of vc; the row as in
 * kern_cuda_rows_store (dev_step or pos0). One launch. */
int kern_cuda_rope_store(kern_ctx *ctx, const kern_args *q, const kern_args *k, float *kc, const float *v,
                         int64_t v_numel, float *vc);

/* The decode megakernel (decode_mega.cu). Between kern_cuda_mega_begin and
 * kern_cuda_mega_end, ctx records: kern_cuda_matvec_multi, _matvec_swiglu,
 * _rope_store, _attn_fused, _add_norm and the opt NORM / RMSNORM append
 * their launches as phases of one persistent kernel instead of launching
 * them (each computes what its launch would, bit for bit), and
 * kern_cuda_mega_flush launches the phases recorded so far as one kernel
 * on ctx's stream. Any other launch while recording must come after a
 * flush (the recordable functions flush before a launch of their own).
 * Meant for a stream capture: dev (kern_cuda_mega_bytes(max_phases) bytes
 * of device memory, 16-byte aligned, kept as long as the graph) receives
 * the table at kern_cuda_mega_end(upload 1), after the capture has ended;
 * the captured launches read it at every replay. begin: 0, or -1 (ctx
 * already recording, bad buffer, no memory); flush, end: 0 or -1; end
 * reports the phases recorded and the launches made. */
size_t kern_cuda_mega_bytes(int max_phases);
int kern_cuda_mega_begin(kern_ctx *ctx, void *dev, size_t bytes);
int kern_cuda_mega_flush(kern_ctx *ctx);
int kern_cuda_mega_end(kern_ctx *ctx, int upload, int *phases, int *launches);

/* attn_fused: the opt KQ, SOFTMAX and KQV of one token (sm->x == kq->y,
 * kqv->x == sm->y; kq_soft rows [n_head, n_kv]) in one launch, or two
 * where kq->n_kv (the bound, with dev_step) allows rows longer than one
 * KQV chunk (opt.cu fa_kernel, fa_kqv_kernel), with the opt kernels' bits.
 * cnt: device ints [2 * n_head], zero before the first call; each call
 * leaves them zero again (the last block of each head resets its own), so
 * one array serves every layer of a pass, on one stream (the first
 * n_head are no longer used: the scoring launch takes no tickets). part:
 * device floats [part_floats], 8-byte aligned, the softmax pairs and the
 * chunk sums of a long row, at least kern_cuda_attn_part_floats(n_head,
 * head_dim, kq->n_kv) (NULL when the bound is one chunk). 0 launched; 1
 * not this fusion's shape (run the three ops); -1 launch error. */
int kern_cuda_attn_fused(kern_ctx *ctx, const kern_args *kq, const kern_args *sm, const kern_args *kqv, int *cnt,
                         float *part, int64_t part_floats);
/* attn_rope_fused: kern_cuda_rope_store(q, k, kq->kc, v, v_numel,
 * kqv->vc) and kern_cuda_attn_fused(kq, sm, kqv, ...) in the launches of
 * the second alone (q->y == kq->x; one token): its scoring blocks rotate
 * q and k themselves (opt_body.h fa_body), each output and cache row the
 * bits of the two calls. Not while the megakernel records (1). 0, 1 or -1
 * as attn_fused. */
int kern_cuda_attn_rope_fused(kern_ctx *ctx, const kern_args *q, const kern_args *k, const float *v,
                              int64_t v_numel, const kern_args *kq, const kern_args *sm, const kern_args *kqv,
                              int *cnt, float *part, int64_t part_floats);
/* floats of part for rows of up to n_ctx (-1 on overflow or a bad shape) */
int64_t kern_cuda_attn_part_floats(int n_head, int head_dim, int64_t n_ctx);

/* attn_prefill_fused: the opt KQ, SOFTMAX and KQV of a pass of two or more
 * tokens (sm->x == kq->y, kqv->x == sm->y), with the three ops' bits, for a
 * caller that knows nothing changes kq or kq_soft between them
 * (engine/exec.c fuse_attn_at): the softmax and KQV then read no score or
 * weight after a query's position (the causal mask's -inf and 0), half of
 * the rows at 2048 tokens from position 0 (attn_prefill.cu). kqv is
 * written whole; kq and kq_soft only up to each query's position (the
 * caller owes them: the three ops give them whole when read).
 * 0 launched; 1 not this fusion's shape (rows of more than 8192 keys, a
 * head of more than 256 dims: run the three ops); -1 bad arguments or a
 * launch error. */
int kern_cuda_attn_prefill_fused(kern_ctx *ctx, const kern_args *kq, const kern_args *sm,
                                 const kern_args *kqv);

/* CUDA events for per-op timing (`profile`): record on ctx's stream; the
 * elapsed time (ms) is valid once the stream has reached the end event;
 * -1 on error. */
void *kern_cuda_event_new(void);
void kern_cuda_event_free(void *ev);
int kern_cuda_event_record(void *ev, kern_ctx *ctx);
float kern_cuda_event_elapsed_ms(void *start, void *end);

/* The device's memory bandwidth (membw.cu): a device-to-device copy of
 * 1 GiB (halved while it cannot be allocated; `how` says so), bytes read +
 * written over the CUDA-event time, the median of 9 after 2 warm-ups.
 * 0, or -1 with the reason in out->how. */
int kern_cuda_membw(kern_membw *out);

#ifdef __cplusplus
}
#endif
#endif
