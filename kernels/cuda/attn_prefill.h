/* attn_prefill: the opt KQ and KQV of a pass of two or more tokens, as
 * tiled products (attn_prefill.cu says why and in what order they sum).
 * Included only by .cu files. */
#ifndef XF_ATTN_PREFILL_H
#define XF_ATTN_PREFILL_H

#include <cuda_runtime.h>

#include "kernels.h"

/* KQ: y [n_head, n, n_kv] from q (a->x, [n, n_head, head_dim]) and the key
 * cache (a->kc, [n_ctx, n_head_kv, head_dim]); -inf where the key is after
 * the query. KQV: y [n, n_head, head_dim] from the weights (a->x, [n_head,
 * n, n_kv]) and the value cache (a->vc). a->n >= 2 (decode has its own
 * kernels). 0, or -1 on bad arguments or a failed launch. */
extern "C" int kc_attn_prefill_kq(cudaStream_t st, const kern_args *a);
extern "C" int kc_attn_prefill_kqv(cudaStream_t st, const kern_args *a);

#endif
