/* attn_decode: attention of one token (a decode pass) in two launches,
 * split over the KV cache (flash-decoding), that still writes the three
 * canonical tensors of the separate KQ -> SOFTMAX -> KQV ops, so that the
 * debugger can show each of them.
 *
 * Why: the separate ops give one head's whole cache row to one block (KQV)
 * and one row of scores to one block (SOFTMAX): at n_kv = 16k a token then
 * waits on 14 blocks streaming 4 MB each. Here the cache is cut into chunks
 * of KC_AD_CHUNK rows; a block per (KV head, chunk) computes the scores of
 * every query head of its group (GQA: the chunk's K and V rows are read
 * once for H/KV heads), keeps a partial max, sum and weighted V sum, and a
 * second launch combines the chunks and writes the normalized weights.
 * Declared only when the backend is compiled in (XF_HAVE_CUDA). */
#ifndef XF_ATTN_DECODE_H
#define XF_ATTN_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KC_AD_CHUNK 64 /* cache rows per block: fixed, so the sums' order never depends on a launch bound */

typedef struct kern_attn_decode {
    const float *q;  /* [1, n_head, head_dim]: q (GPT-2) or q_rope (Qwen2) of the token */
    const float *kc; /* [n_ctx, n_head_kv, head_dim]: key cache, rows 0..n_kv-1 valid */
    const float *vc; /* [n_ctx, n_head_kv, head_dim]: value cache */
    float *kq;       /* [n_head, 1, n_kv] out: scale * q.k, -inf where j > pos0 (as KQ) */
    float *kq_soft;  /* [n_head, 1, n_kv] out: softmax of each row of kq (as SOFTMAX) */
    float *kqv;      /* [1, n_head * head_dim] out: kq_soft . V, heads merged (as KQV) */
    void *scratch;   /* device, 16-byte aligned: kern_cuda_attn_decode_scratch bytes */
    size_t scratch_size;
    int n_head, n_head_kv, head_dim;
    int n_kv;        /* cache rows after this pass; with dev_step: an upper bound (n_ctx) */
    int pos0;        /* the token's position (causal mask: j > pos0 is -inf) */
    float scale;     /* 1/sqrt(head_dim) */
    const int32_t *dev_step; /* kernels.h: if set, pos0 and n_kv are read from it when the kernels run */
} kern_attn_decode;

/* Scratch bytes for n_kv_max cache rows (the partial max, sum and V sum of
 * every (head, chunk)). */
size_t kern_cuda_attn_decode_scratch(int n_head, int head_dim, int n_kv_max);

/* 1 if the kernels take this shape: head_dim a multiple of 4 and <= 256,
 * at most 8 query heads per KV head, 16-byte aligned q, caches and kqv. */
int kern_cuda_attn_decode_ok(int n_head, int n_head_kv, int head_dim);

/* Runs the two launches on ctx's stream (capturable: no allocation, no
 * sync). kq is bit-identical to the opt KQ variant's (the same 8-lane dot
 * in the same order) when head_dim % 32 == 0; kq_soft and kqv match the opt
 * SOFTMAX and KQV within f32 rounding (the sums run in another order).
 * 0, or -1 on bad arguments (too little scratch, a shape it does not take)
 * or a CUDA error. */
int kern_cuda_attn_decode(kern_ctx *ctx, const kern_attn_decode *p);

#ifdef __cplusplus
}
#endif
#endif
