/* attn_prefill.cu: the opt KQ and KQV of a pass of more than one token
 * (prefill), as tiled products with the tiles in shared memory.
 *
 * Why: the per-row kernels (one block per query row for KQ, 4 rows for
 * KQV) read every key and value row once per query row from L2: at 512
 * tokens they were 38% of the Qwen2.5-0.5B's prefill (KQ 4.0 ms, KQV 3.6 ms
 * of 22.8, H100), at 2048 most of it. Here a block computes a 64 x 64 tile
 * of scores (or of outputs) from 64 rows of q and 64 of k (of p and v)
 * staged in shared memory, 16 results a thread (KQV: 32 x 64 outputs, 8
 * a thread: its grid is tokens / rows a block x heads, and 64 rows left
 * most of the SMs idle at 512 tokens).
 *
 * The order of the sums is fixed and simple, one chain a result: a score
 * is acc = fma(q[d], k[d], acc) for d = 0, 1, ..., hd - 1, times the
 * scale; an output is acc = fma(p[j], v[j][d], acc) for j = 0, 1, ... in
 * order. Masked scores (key j after the query's position) are -inf, as
 * the per-row kernel writes them; a KQ tile that is all masked writes them
 * without a product. KQV sums every key below n_kv, whatever the weights
 * (a written kq_soft may hold any); a step of 32 keys whose weights are
 * all zero for the tile's rows (the causal mask's, after softmax) and whose
 * values are all finite is skipped: its products would add exact zeros.
 * The decode (one token) keeps opt.cu's kernels, which the fast path's
 * fusion reproduces.
 * With dev_step (a captured pass) n_kv and pos0 come from the device and
 * the grid is sized for the bound the call gives. */
#include "attn_prefill.h"
#include "cuda_internal.h"
#include "opt_body.h"

#define AP_T 64  /* query rows, and keys (KQ) or output dims (KQV), a block */
#define AP_VR 2  /* KQV: rows a thread (a block: 16 x AP_VR query rows) */
#define AP_K 32  /* head dims (KQ) or keys (KQV) a step */
#define AP_THREADS 256

__global__ void __launch_bounds__(AP_THREADS) ap_kq_kernel(float *y, const float *q, const float *kc, int64_t n, int nh,
                                                           int nkv, int hd, int n_kv, int pos0, const int32_t *step,
                                                           float scale)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    __shared__ float qs[AP_K][AP_T + 1], ks[AP_K][AP_T + 1]; /* [d][row]: q rows, key rows */
    if (step) {
        n_kv = step[KERN_STEP_NKV];
        pos0 = step[KERN_STEP_POS0];
    }
    int64_t j0 = (int64_t)blockIdx.x * AP_T, i0 = (int64_t)blockIdx.y * AP_T;
    if (j0 >= n_kv || i0 >= n)
        return; /* launched for the bound */
    int h = (int)blockIdx.z, g = h / (nh / nkv);
    int t = threadIdx.x, tx = t & 15, ty = t >> 4;
    int64_t ilast = (i0 + AP_T < n ? i0 + AP_T : n) - 1;
    float *yh = y + (int64_t)h * n * n_kv;
    if (j0 > pos0 + ilast) { /* every key after every query of the tile */
        for (int e = t; e < AP_T * AP_T; e += AP_THREADS) {
            int64_t i = i0 + e / AP_T, j = j0 + e % AP_T;
            if (i < n && j < n_kv)
                yh[i * n_kv + j] = -INFINITY;
        }
        return;
    }
    float acc[4][4];
#pragma unroll
    for (int a = 0; a < 4; a++)
#pragma unroll
        for (int b = 0; b < 4; b++)
            acc[a][b] = 0.0f;
    for (int d0 = 0; d0 < hd; d0 += AP_K) {
        for (int e = t; e < AP_T * AP_K; e += AP_THREADS) {
            int r = e / AP_K, d = e % AP_K, dd = d0 + d;
            int64_t i = i0 + r, j = j0 + r;
            qs[d][r] = i < n && dd < hd ? q[(i * nh + h) * hd + dd] : 0.0f;
            ks[d][r] = j < n_kv && dd < hd ? kc[(j * nkv + g) * hd + dd] : 0.0f;
        }
        __syncthreads();
        /* dims past hd are zeros on both sides: fma(0, 0, acc) is acc */
#pragma unroll 8
        for (int d = 0; d < AP_K; d++) {
            float qa[4], kb[4];
#pragma unroll
            for (int a = 0; a < 4; a++)
                qa[a] = qs[d][ty + 16 * a];
#pragma unroll
            for (int b = 0; b < 4; b++)
                kb[b] = ks[d][tx + 16 * b];
#pragma unroll
            for (int a = 0; a < 4; a++)
#pragma unroll
                for (int b = 0; b < 4; b++)
                    acc[a][b] = __fmaf_rn(qa[a], kb[b], acc[a][b]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int a = 0; a < 4; a++)
#pragma unroll
        for (int b = 0; b < 4; b++) {
            int64_t i = i0 + ty + 16 * a, j = j0 + tx + 16 * b;
            if (i < n && j < n_kv)
                yh[i * n_kv + j] = j <= pos0 + i ? __fmul_rn(acc[a][b], scale) : -INFINITY;
        }
}

/* KQV's loads of one step (keys j0 .. j0 + AP_K - 1) into registers: the
 * thread's 4 weights (rows x keys, a row's keys consecutive) and 8 values
 * (keys x dims, a key's dims consecutive); 0 past the tensors */
#define AP_PR (16 * AP_VR * AP_K / AP_THREADS)
#define AP_VV (AP_T * AP_K / AP_THREADS)
static_assert(AP_PR * AP_THREADS == 16 * AP_VR * AP_K && AP_VV * AP_THREADS == AP_T * AP_K, "whole loads a thread");
template <bool CAUSAL>
__device__ __forceinline__ void ap_kqv_fetch(float (&pr)[AP_PR], float (&vr)[AP_VV], const float *ph,
                                             const float *vc, int64_t i0, int64_t j0, int64_t n, int n_kv,
                                             int nkv, int g, int hd, int d0, int t, int pos0)
{
#pragma unroll
    for (int u = 0; u < AP_PR; u++) {
        int e = t + u * AP_THREADS, r = e / AP_K, jj = e % AP_K;
        int64_t i = i0 + r, j = j0 + jj;
        /* CAUSAL: a weight after the query's position is the 0 that the
         * softmax of a masked score is (not read) */
        pr[u] = i < n && j < n_kv && (!CAUSAL || j <= pos0 + i) ? ph[i * n_kv + j] : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < AP_VV; u++) {
        int e = t + u * AP_THREADS, vj = e / AP_T, c = e % AP_T;
        int64_t jv = j0 + vj;
        vr[u] = jv < n_kv && d0 + c < hd ? vc[(jv * nkv + g) * hd + d0 + c] : 0.0f;
    }
}

/* The next step's weights and values are loaded into registers while this
 * step multiplies (the loads' latency, not their bytes, bounded the kernel
 * that loaded, synced, then multiplied); the products and their order are
 * the same, so are the bits. CAUSAL (the fused prefill attention, whose
 * weights are the opt softmax of the opt KQ's scores): the weights after
 * each query's position are not read (they are 0); the values still are
 * (a step whose values are not all finite is multiplied, as always). */
template <bool CAUSAL>
__global__ void __launch_bounds__(AP_THREADS)
    ap_kqv_kernel(float *y, const float *p, const float *vc, int64_t n, int nh, int nkv, int hd, int n_kv,
                  int pos0, const int32_t *step)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    __shared__ float ps[AP_K][16 * AP_VR + 1]; /* [key][row] weights */
    __shared__ float vs[AP_K][AP_T];     /* [key][dim] values */
    if (step) {
        n_kv = step[KERN_STEP_NKV];
        pos0 = step[KERN_STEP_POS0];
    }
    int64_t i0 = (int64_t)blockIdx.x * (16 * AP_VR);
    int d0 = (int)blockIdx.y * AP_T, h = (int)blockIdx.z, g = h / (nh / nkv);
    if (i0 >= n)
        return;
    int t = threadIdx.x, tx = t & 15, ty = t >> 4;
    const float *ph = p + (int64_t)h * n * n_kv;
    float acc[AP_VR][4];
#pragma unroll
    for (int a = 0; a < AP_VR; a++)
#pragma unroll
        for (int b = 0; b < 4; b++)
            acc[a][b] = 0.0f;
    float pr[AP_PR], vr[AP_VV];
    if (n_kv > 0)
        ap_kqv_fetch<CAUSAL>(pr, vr, ph, vc, i0, 0, n, n_kv, nkv, g, hd, d0, t, pos0);
    for (int64_t j0 = 0; j0 < n_kv; j0 += AP_K) {
        int work = 0; /* a weight that is not zero, or a value that is not finite */
#pragma unroll
        for (int u = 0; u < AP_PR; u++) {
            int e = t + u * AP_THREADS;
            ps[e % AP_K][e / AP_K] = pr[u];
            work |= pr[u] != 0.0f;
        }
#pragma unroll
        for (int u = 0; u < AP_VV; u++) {
            int e = t + u * AP_THREADS;
            vs[e / AP_T][e % AP_T] = vr[u];
            work |= !isfinite(vr[u]);
        }
        bool any = __syncthreads_or(work);
        if (j0 + AP_K < n_kv)
            ap_kqv_fetch<CAUSAL>(pr, vr, ph, vc, i0, j0 + AP_K, n, n_kv, nkv, g, hd, d0, t, pos0);
        if (!any)
            continue; /* every product of this step is an exact zero; nobody reads the tiles */
#pragma unroll 8
        for (int jj = 0; jj < AP_K; jj++) {
            float pa[AP_VR], vb[4];
#pragma unroll
            for (int a = 0; a < AP_VR; a++)
                pa[a] = ps[jj][ty + 16 * a];
#pragma unroll
            for (int b = 0; b < 4; b++)
                vb[b] = vs[jj][tx + 16 * b];
#pragma unroll
            for (int a = 0; a < AP_VR; a++)
#pragma unroll
                for (int b = 0; b < 4; b++)
                    acc[a][b] = __fmaf_rn(pa[a], vb[b], acc[a][b]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int a = 0; a < AP_VR; a++)
#pragma unroll
        for (int b = 0; b < 4; b++) {
            int64_t i = i0 + ty + 16 * a;
            int d = d0 + tx + 16 * b;
            if (i < n && d < hd)
                y[(i * nh + h) * hd + d] = acc[a][b];
        }
}

extern "C" int kc_attn_prefill_kq(cudaStream_t st, const kern_args *a)
{
    if (kc_attn_check(a) || !a->kc || a->n < 2)
        return -1;
    if (a->n_kv == 0)
        return 0;
    int64_t gx = (a->n_kv + AP_T - 1) / AP_T, gy = (a->n + AP_T - 1) / AP_T;
    if (gx > INT32_MAX || gy > 65535 || a->n_head > 65535)
        return -1;
    dim3 grid((unsigned)gx, (unsigned)gy, (unsigned)a->n_head);
    ap_kq_kernel<<<grid, AP_THREADS, 0, st>>>(a->y, a->x, a->kc, a->n, a->n_head, a->n_head_kv, a->head_dim,
                                              a->n_kv, a->pos0, a->dev_step, a->scale);
    return kc_launch_ok();
}

/* the KQV launch; CAUSAL as ap_kqv_kernel's */
template <bool CAUSAL> static int ap_kqv_launch(cudaStream_t st, const kern_args *a)
{
    if (kc_attn_check(a) || !a->vc || a->n < 2)
        return -1;
    int64_t gx = (a->n + 16 * AP_VR - 1) / (16 * AP_VR), gy = (a->head_dim + AP_T - 1) / AP_T;
    if (gx > INT32_MAX || gy > 65535 || a->n_head > 65535)
        return -1;
    dim3 grid((unsigned)gx, (unsigned)gy, (unsigned)a->n_head);
    ap_kqv_kernel<CAUSAL><<<grid, AP_THREADS, 0, st>>>(a->y, a->x, a->vc, a->n, a->n_head, a->n_head_kv,
                                                       a->head_dim, a->n_kv, a->pos0, a->dev_step);
    return kc_launch_ok();
}

extern "C" int kc_attn_prefill_kqv(cudaStream_t st, const kern_args *a)
{
    return ap_kqv_launch<false>(st, a);
}

/* ---- the fused prefill attention: KQ, a causal SOFTMAX, a causal KQV -----
 * The three opt ops of a layer where exec knows that the softmax reads the
 * opt KQ's scores unchanged and KQV the softmax's weights (engine/exec.c
 * fuse_attn_at): the scores after each query's position are then -inf and
 * their weights 0, so the softmax reads a row only up to the query's
 * position (twice: the chunks' pairs, the weights) and writes the zeros
 * after it without reading, and KQV reads no weight after it. At 2048
 * tokens from position 0 that is half of the [heads, n, n_kv] rows of
 * scores and weights not read. Every value is computed by the same code in
 * the same order as the three ops (smw_row with lim, ap_kqv_kernel's
 * CAUSAL): the same bits (test_kernels_cuda_graph test_attn_prefill_fused). */
__global__ void __launch_bounds__(32 * SMW_ROWS)
    ap_softmax_kernel(float *y, const float *x, int64_t rows, int64_t n, int64_t m, int pos0,
                      const int32_t *step)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    if (step) {
        m = step[KERN_STEP_NKV];
        pos0 = step[KERN_STEP_POS0];
    }
    int lane = threadIdx.x & 31;
    int64_t r = (int64_t)blockIdx.x * SMW_ROWS + (threadIdx.x >> 5);
    if (r >= rows || m > SMW_MAX)
        return; /* m: the launch checked the bound it was given */
    /* row r = (head, query i): keys 0 .. pos0 + i are live */
    smw_row(y + r * m, x + r * m, m, (int64_t)pos0 + r % n + 1, lane);
}

extern "C" int kern_cuda_attn_prefill_fused(kern_ctx *ctx, const kern_args *kq, const kern_args *sm,
                                            const kern_args *kqv)
{
    if (kc_attn_check(kq) || kc_attn_check(kqv) || kq->n < 2 || !sm->x || !sm->y || sm->x != kq->y ||
        kqv->x != sm->y || kqv->n != kq->n || kqv->n_head != kq->n_head || kqv->n_kv != kq->n_kv ||
        kqv->pos0 != kq->pos0 || sm->m != kq->n_kv || sm->n != (int64_t)kq->n_head * kq->n || kq->n_kv <= 0)
        return -1;
    if (kq->n_kv > SMW_MAX || kqv->head_dim > KQV_MAX_HD)
        return 1; /* rows a warp cannot hold: the three ops */
    cudaStream_t st = kc_stream(ctx);
    if (kc_attn_prefill_kq(st, kq) != 0)
        return -1;
    int64_t blocks = (sm->n + SMW_ROWS - 1) / SMW_ROWS;
    if (blocks > INT32_MAX)
        return -1;
    ap_softmax_kernel<<<(unsigned)blocks, 32 * SMW_ROWS, 0, st>>>(sm->y, sm->x, sm->n, kq->n, sm->m, kq->pos0,
                                                                  sm->dev_step);
    if (kc_launch_ok() != 0)
        return -1;
    return ap_kqv_launch<true>(st, kqv);
}
