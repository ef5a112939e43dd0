/* opt_body: the device code of opt.cu's kernels that the decode
 * megakernel (decode_mega.cu) runs too, so that both compute each value
 * with the same instructions in the same order (the same bits):
 *  - NORM / RMSNORM of a row (opt_norm_row), with the fast path's ADD;
 *  - the scores of one token (kq_scores), the softmax of a row
 *    (softmax_row, and softmax_row_512on256 for a block of 256 threads);
 *  - KQV of one token in chunks (kqv_rows, kqv_chunk, kqv1_head);
 *  - the fast path's attention (fa_body, fa_kqv_body: fa_kernel and
 *    fa_kqv_kernel with the block's coordinates as arguments).
 * Included only by .cu files. */
#ifndef XF_OPT_BODY_H
#define XF_OPT_BODY_H

#include <math.h>

#include "cuda_internal.h"

/* ---- NORM / RMSNORM: one block per row (opt.cu opt_norm_kernel) ---------- */

#define NORM_THREADS 256

/* sum of v over the first nw warps of the block (the others pass 0 and
 * only join the barriers); every thread gets the result */
__device__ __forceinline__ float opt_block_sum(float v, float *sh, int nw)
{
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    v = kc_warp_sum(v);
    __syncthreads(); /* sh may still be read from the previous call */
    if (lane == 0 && wid < nw)
        sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    return kc_warp_sum(v);
}

/* ADD (the fast path's residual + norm): the row is x + x2, computed on
 * the fly in every pass (the same f32 sums each time) and stored to sum in
 * the last, so that sum and y are bit-identical to an ADD launch followed by
 * a NORM launch on its output; the summation order of the norm depends only
 * on k, vec and nt, which the caller keeps as NORM would choose them. Row
 * row by the first nt threads of the block; every thread must call it. */
template <bool ADD>
__device__ __forceinline__ void opt_norm_row(int64_t row, int nt, float *sh, float *y, const float *x, const float *x2,
                                             float *sum, const float *g, const float *b, int64_t k, float eps, int rms,
                                             int vec)
{
    /* threads t >= nt only join the barriers: their loops start past the row */
    const int64_t t0 = threadIdx.x < nt ? threadIdx.x : k;
    const float *xr = x + row * k;
    const float *x2r = ADD ? x2 + row * k : NULL;
    float *yr = y + row * k;
    float mean = 0.0f;
    auto ld4 = [&](int64_t j) {
        float4 v = ((const float4 *)xr)[j];
        if (ADD) {
            float4 v2 = ((const float4 *)x2r)[j];
            v.x = v.x + v2.x, v.y = v.y + v2.y, v.z = v.z + v2.z, v.w = v.w + v2.w;
        }
        return v;
    };
    auto ld1 = [&](int64_t j) { return ADD ? xr[j] + x2r[j] : xr[j]; };
    if (!rms) {
        float s = 0.0f;
        if (vec)
            for (int64_t j = t0; j < k / 4; j += nt) {
                float4 v = ld4(j);
                s += (v.x + v.y) + (v.z + v.w);
            }
        else
            for (int64_t j = t0; j < k; j += nt)
                s += ld1(j);
        mean = opt_block_sum(s, sh, nt >> 5) / (float)k;
    }
    /* centred second pass: no cancellation when |mean| >> std */
    float s2 = 0.0f;
    if (vec)
        for (int64_t j = t0; j < k / 4; j += nt) {
            float4 v = ld4(j);
            float a0 = v.x - mean, a1 = v.y - mean, a2 = v.z - mean, a3 = v.w - mean;
            s2 = __fadd_rn(s2, __fadd_rn(__fadd_rn(__fmul_rn(a0, a0), __fmul_rn(a1, a1)),
                                         __fadd_rn(__fmul_rn(a2, a2), __fmul_rn(a3, a3))));
        }
    else
        for (int64_t j = t0; j < k; j += nt) {
            float a0 = ld1(j) - mean;
            s2 = __fadd_rn(s2, __fmul_rn(a0, a0));
        }
    float inv = rsqrtf(opt_block_sum(s2, sh, nt >> 5) / (float)k + eps);
    if (vec) {
        for (int64_t j = t0; j < k / 4; j += nt) {
            float4 v = ld4(j), gw = ((const float4 *)g)[j], o;
            if (ADD)
                ((float4 *)(sum + row * k))[j] = v;
            /* rounded op by op: a multiply-add contracted in one kernel
             * and not in another would move a bit between the two */
            o.x = __fmul_rn(__fmul_rn(v.x - mean, inv), gw.x);
            o.y = __fmul_rn(__fmul_rn(v.y - mean, inv), gw.y);
            o.z = __fmul_rn(__fmul_rn(v.z - mean, inv), gw.z);
            o.w = __fmul_rn(__fmul_rn(v.w - mean, inv), gw.w);
            if (b) {
                float4 bb = ((const float4 *)b)[j];
                o.x = __fadd_rn(o.x, bb.x), o.y = __fadd_rn(o.y, bb.y);
                o.z = __fadd_rn(o.z, bb.z), o.w = __fadd_rn(o.w, bb.w);
            }
            ((float4 *)yr)[j] = o;
        }
    } else {
        for (int64_t j = t0; j < k; j += nt) {
            float v = ld1(j);
            if (ADD)
                sum[row * k + j] = v;
            float o = __fmul_rn(__fmul_rn(v - mean, inv), g[j]);
            yr[j] = b ? __fadd_rn(o, b[j]) : o;
        }
    }
}

/* ---- KQ of one token: 8 lanes per score, q row in shared memory ---------- */

#define KQ_TILE 32  /* scores per block and round: 8 warps x 4 groups of 8 lanes */
#define KQ_GRID_Y 8 /* blocks per (head, token) row */

/* The scores of row rowi = (h, i) over tiles t0 = start, start + step, ...
 * of nt / 8 scores each (thread t: score t0 + t / 8, lane t % 8 of its
 * 8-lane group): each score is the same 8-lane sum whichever block and
 * block size computes it. qs: the q row in shared memory. The decode
 * fusion (fa_kernel) runs it too. */
template <bool VEC, int U = 2>
__device__ __forceinline__ void kq_scores(float *y, const float *qs, const float *kc, int64_t rowi, int64_t i, int g,
                                          int nkv, int hd, int n_kv, int pos0, float scale, int64_t start,
                                          int64_t step, int t)
{
    int sub = t & 7;
    /* U tiles an iteration: the loads of all are in flight together (a
     * long row is latency-bound, not bandwidth-bound); each score is still
     * its own sum in the same order. A row that is not live reads row 0
     * (always there) and its sum is dropped. */
    for (int64_t t0 = start; t0 < n_kv; t0 += U * step) {
        int j[U];
        bool live[U];
        const float *kr[U];
        float acc[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            acc[u] = 0.0f;
            j[u] = (int)(t0 + u * step) + (t >> 3);
            live[u] = j[u] < n_kv && j[u] <= pos0 + i;
            kr[u] = kc + ((int64_t)(live[u] ? j[u] : 0) * nkv + g) * hd;
        }
        if (VEC) {
            for (int d = 4 * sub; d < hd; d += 32) {
                float4 kv[U];
#pragma unroll
                for (int u = 0; u < U; u++)
                    kv[u] = *(const float4 *)(kr[u] + d);
#pragma unroll
                for (int u = 0; u < U; u++)
                    acc[u] += qs[d] * kv[u].x + qs[d + 1] * kv[u].y + qs[d + 2] * kv[u].z + qs[d + 3] * kv[u].w;
            }
        } else {
            for (int d = sub; d < hd; d += 8)
#pragma unroll
                for (int u = 0; u < U; u++)
                    acc[u] += qs[d] * kr[u][d];
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            float a = acc[u];
            a += __shfl_xor_sync(0xffffffffu, a, 4);
            a += __shfl_xor_sync(0xffffffffu, a, 2);
            a += __shfl_xor_sync(0xffffffffu, a, 1);
            if (sub == 0 && j[u] < n_kv)
                y[rowi * n_kv + j[u]] = live[u] ? a * scale : -INFINITY;
        }
    }
}

/* ---- SOFTMAX: one block per row, three passes over an L1-resident row --- */

/* Threads that reduce a row of length m. The summation order depends on
 * it, so a launch sized for a bound (dev_step) still reduces with the
 * count the actual m gives, and the extra warps only wait: the same bits
 * either way. */
__host__ __device__ __forceinline__ int opt_softmax_threads(int64_t m) { return m >= 2048 ? 512 : m >= 256 ? 256 : 64; }

/* a float of global memory: through L1, or (CG) from L2 only, for data that
 * other blocks of the same launch wrote (the decode fusion's last block) */
template <bool CG> __device__ __forceinline__ float kc_ld(const float *p) { return CG ? __ldcg(p) : *p; }

/* Softmax of the row xr[0..m) into yr by threads t < opt_softmax_threads(m)
 * of the block (the others only join the barriers); sh: 32 floats of shared
 * memory. Every thread of the block must call it. The decode fusion
 * (fa_kernel) runs it too. */
/* Values of a row each reducing thread keeps in registers: a row of at most
 * nt * SM_REG is read once (one round trip to L2 at depth, where the
 * three passes below read it three times); the sums are the same. */
#define SM_REG 16

template <bool CG> __device__ __forceinline__ void softmax_row(float *yr, const float *xr, int64_t m, int t, float *sh)
{
    int nt = opt_softmax_threads(m); /* <= blockDim.x */
    int lane = t & 31, wid = t >> 5, nw = nt >> 5;
    bool regs = m <= (int64_t)nt * SM_REG;
    float xv[SM_REG]; /* [SM_REG] x[t + u * nt], the short-row path */
    float mx = -INFINITY;
    if (t < nt) {
        if (regs) {
#pragma unroll
            for (int u = 0; u < SM_REG; u++)
                xv[u] = t + (int64_t)u * nt < m ? kc_ld<CG>(xr + t + (int64_t)u * nt) : -INFINITY;
#pragma unroll
            for (int u = 0; u < SM_REG; u++)
                mx = fmaxf(mx, xv[u]);
        } else {
            /* unrolled: a long row's loads in flight together (the order
             * of each thread's sum is the same) */
#pragma unroll 4
            for (int64_t j = t; j < m; j += nt)
                mx = fmaxf(mx, kc_ld<CG>(xr + j));
        }
    }
    mx = kc_warp_max(mx);
    if (lane == 0)
        sh[wid] = mx;
    __syncthreads();
    mx = kc_warp_max(lane < nw ? sh[lane] : -INFINITY);
    if (mx == -INFINITY) { /* nothing to attend to: all weights 0 */
        if (t < nt)
            for (int64_t j = t; j < m; j += nt)
                yr[j] = 0.0f;
        return; /* the whole block: mx is the block's */
    }
    float s = 0.0f;
    if (t < nt) {
        if (regs) {
#pragma unroll
            for (int u = 0; u < SM_REG; u++)
                if (t + (int64_t)u * nt < m)
                    s += expf(xv[u] - mx);
        } else {
#pragma unroll 4
            for (int64_t j = t; j < m; j += nt)
                s += expf(kc_ld<CG>(xr + j) - mx);
        }
    }
    /* block sum over the nt reducing threads (idle warps add nothing) */
    s = kc_warp_sum(s);
    __syncthreads(); /* sh still holds the maxima being read above */
    if (lane == 0)
        sh[wid] = s;
    __syncthreads();
    s = kc_warp_sum(lane < nw ? sh[lane] : 0.0f);
    float inv = 1.0f / s;
    if (t < nt) {
        if (regs) {
#pragma unroll
            for (int u = 0; u < SM_REG; u++)
                if (t + (int64_t)u * nt < m)
                    yr[t + (int64_t)u * nt] = expf(xv[u] - mx) * inv;
        } else {
#pragma unroll 4
            for (int64_t j = t; j < m; j += nt)
                yr[j] = expf(kc_ld<CG>(xr + j) - mx) * inv;
        }
    }
}

/* softmax_row of a row of m >= 2048 (its 512 threads) by a block of 256:
 * thread t stands in for threads t and t + 256 of softmax_row, each sum in
 * that thread's order, warp w's sums as warps w and w + 8 of it: the same
 * additions in the same order, the same bits (the decode megakernel's
 * blocks have 256 threads). sh: 32 floats of shared memory. */
template <bool CG>
__device__ __forceinline__ void softmax_row_512on256(float *yr, const float *xr, int64_t m, int t, float *sh)
{
    const int nt = 512, half = 256;
    int lane = t & 31, wid = t >> 5;
    float mx = -INFINITY;
#pragma unroll 4
    for (int64_t j = t; j < m; j += half)
        mx = fmaxf(mx, kc_ld<CG>(xr + j)); /* a maximum is the same in any grouping */
    mx = kc_warp_max(mx);
    if (lane == 0)
        sh[wid] = mx;
    __syncthreads();
    mx = kc_warp_max(lane < half / 32 ? sh[lane] : -INFINITY);
    if (mx == -INFINITY) {
        for (int64_t j = t; j < m; j += half)
            yr[j] = 0.0f;
        return;
    }
    float sa = 0.0f, sb = 0.0f;
#pragma unroll 4
    for (int64_t j = t; j < m; j += nt)
        sa += expf(kc_ld<CG>(xr + j) - mx);
#pragma unroll 4
    for (int64_t j = t + half; j < m; j += nt)
        sb += expf(kc_ld<CG>(xr + j) - mx);
    sa = kc_warp_sum(sa);
    sb = kc_warp_sum(sb);
    __syncthreads(); /* sh still holds the maxima being read above */
    if (lane == 0) {
        sh[wid] = sa;
        sh[wid + half / 32] = sb;
    }
    __syncthreads();
    float s = kc_warp_sum(lane < nt / 32 ? sh[lane] : 0.0f);
    float inv = 1.0f / s;
    for (int64_t j = t; j < m; j += half)
        yr[j] = expf(kc_ld<CG>(xr + j) - mx) * inv;
}

/* ---- KQV of one token: one block per head; 8 warps split the cache rows --
 * (two or more tokens: attn_prefill.cu) */

#define KQV_SPLIT 8
#define KQV_MAX_HD 256 /* 8 accumulators per lane */

/* Decode (one token). The row of weights is summed in chunks of KQV_CH
 * value-cache rows: kqv_chunk sums rows [j0, j1) with 8 warps (warp ty:
 * rows j0 + ty, j0 + ty + 8, ... in order, then the warps' sums in order,
 * kqv_chunk_sum), and the head's output is the chunks' sums added in chunk
 * order. Why chunks: the fast path (fa_kqv_kernel) spreads a long row's
 * chunks over many blocks, and this per-op kernel, one block a head,
 * adds the same numbers in the same order, so both give the same bits at
 * any depth. A row of at most KQV_CH rows is one chunk: the sum of the
 * unchunked kernel this replaced. */
#define KQV_CH 256

/* Warp ty's rows j0 + ty, j0 + ty + KQV_SPLIT, ... below j1 into red[ty][d]
 * (NT = slots of 32 elements a lane holds, hd <= 32 * NT). Each batch of B
 * rows has all its loads (weights and values) in flight before the first
 * multiply-add: at depth the rows come from DRAM or L2 and a warp's 32 rows
 * of a chunk were 8 round trips at 4 rows a time, now 2-8 (hd 64-256). The sums are
 * still added row by row in order: the same bits as one row at a time. */
template <bool CG, int NT, int B>
__device__ __forceinline__ void kqv_rows(const float *pr, const float *vb, int64_t vstride, int hd, int64_t j0,
                                         int64_t j1, int lane, int ty, float (*red)[KQV_MAX_HD])
{
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; t++)
        acc[t] = 0.0f;
    for (int64_t jb = j0 + ty; jb < j1; jb += (int64_t)KQV_SPLIT * B) {
        float pj[B], v[B][NT]; /* [B] weights, [B, NT] this lane's values */
#pragma unroll
        for (int u = 0; u < B; u++) {
            int64_t j = jb + (int64_t)u * KQV_SPLIT;
            bool live = j < j1;
            pj[u] = live ? kc_ld<CG>(pr + j) : 0.0f;
            const float *vr = vb + (live ? j : j0) * vstride;
#pragma unroll
            for (int t = 0; t < NT; t++)
                v[u][t] = live && lane + 32 * t < hd ? vr[lane + 32 * t] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < B; u++)
            if (jb + (int64_t)u * KQV_SPLIT < j1)
#pragma unroll
                for (int t = 0; t < NT; t++)
                    acc[t] += pj[u] * v[u][t];
    }
#pragma unroll
    for (int t = 0; t < NT; t++)
        if (lane + 32 * t < hd)
            red[ty][lane + 32 * t] = acc[t];
}

/* rows [j0, j1) of the weights pr against the value rows at vb (stride
 * vstride) into red[ty][d]; every thread of the block must call it (it
 * ends with a barrier); threads with ty >= KQV_SPLIT only join it. A
 * batch holds 32 * WIDE values and 16 * WIDE weights a lane or fewer,
 * whatever hd is: fa_kernel must keep 2 blocks of 512 threads an SM (64
 * registers), or its 224 blocks of the Qwen-0.5B shape run in two waves
 * (ncu, session 7); fa_kqv_kernel, with 256 threads, takes WIDE 2. */
template <bool CG, int WIDE = 1>
__device__ __forceinline__ void kqv_chunk(const float *pr, const float *vb, int64_t vstride, int hd, int64_t j0,
                                          int64_t j1, int lane, int ty, float (*red)[KQV_MAX_HD])
{
    static_assert(KQV_MAX_HD == 256, "the slot counts below");
    if (ty < KQV_SPLIT) {
        if (hd <= 64)
            kqv_rows<CG, 2, 16 * WIDE>(pr, vb, vstride, hd, j0, j1, lane, ty, red);
        else if (hd <= 128)
            kqv_rows<CG, 4, 8 * WIDE>(pr, vb, vstride, hd, j0, j1, lane, ty, red);
        else
            kqv_rows<CG, 8, 4 * WIDE>(pr, vb, vstride, hd, j0, j1, lane, ty, red);
    }
    __syncthreads();
}

/* the chunk's value at element d: the warps' sums in order */
__device__ __forceinline__ float kqv_chunk_sum(float (*red)[KQV_MAX_HD], int d)
{
    float s = 0.0f;
#pragma unroll
    for (int r = 0; r < KQV_SPLIT; r++)
        s += red[r][d];
    return s;
}

/* Head h of one token, every chunk in turn, by a block of at least
 * 32 * KQV_SPLIT threads (tid = ty * 32 + lane; hd <= KQV_MAX_HD <= that).
 * The decode fusion's last block (fa_kernel) runs it too, for one chunk. */
template <bool CG>
__device__ __forceinline__ void kqv1_head(float *y, const float *p, const float *vc, int h, int nh, int nkv, int hd,
                                          int n_kv, int lane, int ty, float (*red)[KQV_MAX_HD])
{
    int g = h / (nh / nkv), tid = ty * 32 + lane;
    const float *pr = p + (int64_t)h * n_kv;
    const float *vb = vc + (int64_t)g * hd;
    int64_t vstride = (int64_t)nkv * hd;
    float s = 0.0f;
    for (int64_t j0 = 0; j0 < n_kv; j0 += KQV_CH) {
        kqv_chunk<CG>(pr, vb, vstride, hd, j0, j0 + KQV_CH < n_kv ? j0 + KQV_CH : n_kv, lane, ty, red);
        if (tid < hd) {
            float c = kqv_chunk_sum(red, tid);
            s = j0 == 0 ? c : s + c;
        }
        __syncthreads(); /* red is the next chunk's */
    }
    if (tid < hd)
        y[(int64_t)h * hd + tid] = s;
}

/* ---- KQ -> SOFTMAX -> KQV of one token (the fast path) ------------------
 * fa_kernel, block (h, y), FA_THREADS threads: the scores of tiles y,
 * y + gridDim.y, ... of head h (kq_scores, FA_THREADS / 8 a tile); then
 * the last block of head h to finish (a ticket from cnt[h], which it sets
 * back to 0 for the next launch) runs softmax_row over the whole row,
 * reading what the other blocks wrote from L2 (__ldcg), and, when the row
 * is one KQV chunk, kqv1_head: the whole attention in one launch.
 * A longer row's KQV is fa_kqv_kernel's, launched after it: block (h, y)
 * sums chunks y, y + gridDim.y, ... (kqv_chunk) into part, and the last
 * block of head h (tickets in cnt[nh + h]) adds the chunks in order. Each
 * value is computed by the code and in the order of the three opt kernels:
 * bit-identical to them, in two launches where they take three, with the
 * long row spread over the GPU (a position of 4096 was 7.5 ms a token on
 * one block a head, lease 2 of session 5).
 * Both are programmatic dependent launches that ask their cache rows into
 * L2 before they wait (fa_kernel the keys while the rope and cache stores
 * run, fa_kqv_kernel the values while fa_kernel scores): at depth the
 * chain is bound by memory latency, not bytes (session 7, H100: the 4096
 * position's token from 1.48 to 1.27 ms with the batched loads of
 * kqv_rows, softmax_row and kq_scores). */
#define FA_THREADS 512 /* opt_softmax_threads' largest count */
#define FA_GRID_Y 16
#define FA_KQV_GRID_Y 16

/* fa_kernel's block (h, by) of gy blocks a head, run by NT threads (512 in
 * fa_kernel, 256 in the decode megakernel: a tile is NT / 8 scores, which
 * moves no bits, and a softmax of 512 threads runs as softmax_row_512on256).
 * Shared memory: qs [hd], sh [32], red, *last. */
template <bool VEC, int NT>
__device__ __forceinline__ void fa_body(int h, int by, int gy, float *qs, float *sh, float (*red)[KQV_MAX_HD], int *last,
                                        float *kq, float *kq_soft, float *kqv, const float *q, const float *kc,
                                        const float *vc, int nh, int nkv, int hd, int n_kv, int pos0,
                                        const int32_t *step, float scale, int *cnt)
{
    if (step) {
        n_kv = step[KERN_STEP_NKV];
        pos0 = step[KERN_STEP_POS0];
    }
    int g = h / (nh / nkv), t = threadIdx.x;
    /* A programmatic dependent launch: the key rows of this block's tiles
     * go into L2 while the kernel before (the rope and cache stores) runs.
     * Rows before pos0 were stored by earlier passes; row pos0 may still be
     * in flight, which a prefetch cannot get wrong (L2 is where stores
     * land). The step words are the graph's first node's, already there. */
    const int64_t tile = NT / 8, lines = ((int64_t)hd * (int64_t)sizeof(float) + 127) / 128;
    for (int64_t t0 = (int64_t)by * tile; t0 < n_kv; t0 += (int64_t)gy * tile)
        for (int64_t i = t; i < tile * lines; i += NT) {
            int64_t j = t0 + i / lines;
            if (j < n_kv)
                asm volatile("prefetch.global.L2 [%0];" ::"l"(kc + (j * nkv + g) * hd + (i % lines) * 32));
        }
    KC_PDL_WAIT(); /* q is the kernel before's */
    if ((int64_t)by * tile < n_kv) {
        for (int d = t; d < hd; d += NT)
            qs[d] = q[(int64_t)h * hd + d];
        __syncthreads();
        kq_scores<VEC, 4>(kq, qs, kc, h, 0, g, nkv, hd, n_kv, pos0, scale, (int64_t)by * tile, (int64_t)gy * tile,
                          t);
    }
    /* publish the scores, then take a ticket; every block takes one */
    __threadfence();
    __syncthreads();
    if (t == 0) {
        int v = atomicAdd(&cnt[h], 1);
        *last = v == gy - 1;
        if (*last)
            cnt[h] = 0;
    }
    __syncthreads();
    if (!*last)
        return;
    __threadfence();
    float *sr = kq_soft + (int64_t)h * n_kv;
    if (NT >= 512 || n_kv < 2048)
        softmax_row<true>(sr, kq + (int64_t)h * n_kv, n_kv, t, sh);
    else
        softmax_row_512on256<true>(sr, kq + (int64_t)h * n_kv, n_kv, t, sh);
    if (n_kv > KQV_CH)
        return; /* fa_kqv_kernel's */
    __syncthreads(); /* the weights, for every warp below */
    kqv1_head<true>(kqv, kq_soft, vc, h, nh, nkv, hd, n_kv, t & 31, t >> 5, red);
}

/* fa_kqv_kernel's block (h, by) of gy blocks a head, 32 x KQV_SPLIT
 * threads (lane, ty); WIDE: kqv_chunk's batch (2 in fa_kqv_kernel, 1 where
 * registers are 64 a thread; the sums are the same). Shared memory: red,
 * *last. */
template <int WIDE>
__device__ __forceinline__ void fa_kqv_body(int h, int by, int gy, int lane, int ty, float (*red)[KQV_MAX_HD], int *last,
                                            float *y, const float *p, const float *vc, int nh, int nkv, int hd,
                                            int n_kv, const int32_t *step, float *part, int cmax, int *cnt)
{
    /* n_kv and the value cache were written before fa_kernel started (it
     * is a full dependency): they may be read before the wait */
    if (step)
        n_kv = step[KERN_STEP_NKV];
    int nc = (int)((n_kv + KQV_CH - 1) / KQV_CH);
    int g = h / (nh / nkv), tid = ty * 32 + lane;
    const float *vb = vc + (int64_t)g * hd;
    int64_t vstride = (int64_t)nkv * hd;
    if (nc > 1 && by < nc) {
        /* this block's first chunk of values into L2 while fa_kernel
         * scores and normalizes: after the wait its loads find them there */
        int64_t j0 = (int64_t)by * KQV_CH, rows = n_kv - j0 < KQV_CH ? n_kv - j0 : KQV_CH;
        int lines = (hd * (int)sizeof(float) + 127) / 128;
        for (int64_t i = tid; i < rows * lines; i += 32 * KQV_SPLIT)
            asm volatile("prefetch.global.L2 [%0];" ::"l"(vb + (j0 + i / lines) * vstride + (i % lines) * 32));
    }
    KC_PDL_WAIT(); /* the weights are fa_kernel's */
    if (nc <= 1 || by >= nc)
        return; /* one chunk: fa_kernel's last block summed it */
    const float *pr = p + (int64_t)h * n_kv;
    float *ph = part + (int64_t)h * cmax * hd;
    for (int c = by; c < nc; c += gy) {
        int64_t j0 = (int64_t)c * KQV_CH;
        kqv_chunk<true, WIDE>(pr, vb, vstride, hd, j0, j0 + KQV_CH < n_kv ? j0 + KQV_CH : n_kv, lane, ty, red);
        if (tid < hd)
            ph[(int64_t)c * hd + tid] = kqv_chunk_sum(red, tid);
        __syncthreads(); /* red is the next chunk's */
    }
    __threadfence();
    __syncthreads();
    if (tid == 0) {
        int live = nc < gy ? nc : gy;
        int v = atomicAdd(&cnt[nh + h], 1);
        *last = v == live - 1;
        if (*last)
            cnt[nh + h] = 0;
    }
    __syncthreads();
    if (!*last)
        return;
    __threadfence();
    if (tid < hd) {
        float s = 0.0f;
#pragma unroll 8
        for (int c = 0; c < nc; c++) {
            float v = __ldcg(ph + (int64_t)c * hd + tid);
            s = c == 0 ? v : s + v;
        }
        y[(int64_t)h * hd + tid] = s;
    }
}
#endif
