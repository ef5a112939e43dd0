/* opt.cu: the CUDA `opt` variants of every op kind but MATMUL (matmul.cu).
 * Rows are reduced by a block (or warp) with shuffles, elementwise ops use
 * 16-byte loads where the pointers allow, everything runs on ctx->stream and
 * nothing allocates, synchronizes or reads device memory from the host, so
 * a pass of these calls can be captured into a CUDA graph. Arithmetic is f32
 * (transcendentals: the accurate expf/tanhf, ROPE angles in double) so
 * results stay within ~1e-6 relative of the f64 reference. */
#include <math.h>

#include "attn_prefill.h"
#include "cuda_internal.h"
#include "kernels_cuda.h"

/* ---- EMBD: one block per token row ---------------------------------------- */

/* 8 elements of a position-table row whose type is known only at run time
 * (uniform over the grid, so the switch does not diverge); F32 and F16,
 * the types position tables come in, take 16-byte loads when aligned. */
__device__ __forceinline__ void opt_pos8(int type, int vec, const uint8_t *row, int64_t p, float *out)
{
    if (vec && type == XF_TYPE_F32) {
        xq_load8<XF_TYPE_F32>(row, p, out);
    } else if (vec && type == XF_TYPE_F16) {
        xq_load8<XF_TYPE_F16>(row, p, out);
    } else {
#pragma unroll
        for (int e = 0; e < 8; e++)
            out[e] = xq_elem(type, row, 8 * p + e);
    }
}

/* Where the ids and pos0 of an EMBD launch come from: kernel parameters
 * (a launch copies them at once, so the caller's array may be reused as soon
 * as the call returns; CH ids: 8 for a decode step, so that a launch does not
 * carry 1 KB of mostly unused parameters), or the device step buffer
 * (kernels.h: dev_step), which a replayed CUDA graph reads afresh. */
template <int CH> struct opt_ids_host {
    int32_t id[CH];
    int p0;
    __device__ __forceinline__ int32_t get(int i) const { return id[i]; }
    __device__ __forceinline__ int pos0() const { return p0; }
};
struct opt_ids_dev {
    const int32_t *step;
    __device__ __forceinline__ int32_t get(int i) const { return step[KERN_STEP_TOK + i]; }
    __device__ __forceinline__ int pos0() const { return step[KERN_STEP_POS0]; }
};

/* y[i, :] = w[ids[i], :] (+ w2[pos0 + i, :]). FAST: rows of w (and of w2 when
 * w2_vec) take the 8-wide path, one thread per 8 elements over the whole
 * [n, k] output so that even one token fills several blocks. */
template <int WT, bool FAST, class IDS>
__global__ void opt_embd_rows(float *y, const uint8_t *w, uint64_t w_row, IDS ids, const uint8_t *w2, int w2_type,
                              uint64_t w2_row, int w2_vec, int n, int64_t k)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    int64_t per = FAST ? k / 8 : k;
    int pos0 = ids.pos0();
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < n * per;
         o += (int64_t)gridDim.x * blockDim.x) {
        int i = (int)(o / per);
        int64_t p = o % per;
        const uint8_t *row = w + (uint64_t)ids.get(i) * w_row;
        const uint8_t *row2 = w2 ? w2 + (uint64_t)(pos0 + i) * w2_row : NULL;
        if (FAST) {
            float v[8], v2[8];
            xq_load8<WT>(row, p, v);
            if (row2) {
                opt_pos8(w2_type, w2_vec, row2, p, v2);
#pragma unroll
                for (int e = 0; e < 8; e++)
                    v[e] += v2[e];
            }
            float *yo = y + (int64_t)i * k + 8 * p;
#pragma unroll
            for (int e = 0; e < 8; e++)
                yo[e] = v[e];
        } else {
            float v = xq_elem(WT, row, p);
            y[(int64_t)i * k + p] = row2 ? v + xq_elem(w2_type, row2, p) : v;
        }
    }
}

template <int WT> struct opt_embd_launch {
    template <class IDS> static int go(cudaStream_t st, const kern_args *a, float *y, const IDS &ids, int cnt)
    {
        uint64_t rb = kc_row_bytes(WT, a->k), rb2 = a->w2 ? kc_row_bytes(a->w2_type, a->k) : 0;
        const uint8_t *w = (const uint8_t *)a->w, *w2 = (const uint8_t *)a->w2;
        int w2_vec = w2 && kc_load8_ok(a->w2_type, w2, a->k);
        if (kc_load8_ok(WT, a->w, a->k))
            opt_embd_rows<WT, true, IDS><<<kc_grid_1d(cnt * (a->k / 8), 64), 64, 0, st>>>(
                y, w, rb, ids, w2, a->w2_type, rb2, w2_vec, cnt, a->k);
        else
            opt_embd_rows<WT, false, IDS><<<kc_grid_1d(cnt * a->k, 64), 64, 0, st>>>(y, w, rb, ids, w2, a->w2_type,
                                                                                      rb2, 0, cnt, a->k);
        return kc_launch_ok();
    }
    /* ids [i0, i0+cnt) of the call */
    static int run(cudaStream_t st, const kern_args *a, int64_t i0, int cnt)
    {
        float *y = a->y + i0 * a->k;
        if (a->dev_step)
            return go(st, a, y, opt_ids_dev{a->dev_step}, cnt);
        if (cnt <= 8) {
            opt_ids_host<8> ids;
            memset(&ids, 0, sizeof ids);
            for (int i = 0; i < cnt; i++)
                ids.id[i] = a->tok[i0 + i];
            ids.p0 = a->pos0 + (int)i0;
            return go(st, a, y, ids, cnt);
        }
        opt_ids_host<KC_TOK_CHUNK> ids;
        memset(&ids, 0, sizeof ids);
        for (int i = 0; i < cnt; i++)
            ids.id[i] = a->tok[i0 + i];
        ids.p0 = a->pos0 + (int)i0;
        return go(st, a, y, ids, cnt);
    }
};

extern "C" int kc_opt_embd(kern_ctx *ctx, const kern_args *a)
{
    if (a->dev_step) {
        /* the ids are on the device: only the shape is checked here */
        if (a->n < 0 || a->n > KC_TOK_CHUNK || !a->w || !a->y || kc_row_bytes(a->w_type, a->k) == 0 ||
            (a->w2 && kc_row_bytes(a->w2_type, a->k) == 0))
            return -1;
        return a->n ? kc_dispatch_type<opt_embd_launch>(a->w_type, kc_stream(ctx), a, (int64_t)0, (int)a->n) : 0;
    }
    if (kc_embd_check(a))
        return -1;
    for (int64_t i0 = 0; i0 < a->n; i0 += KC_TOK_CHUNK) {
        int cnt = (int)(a->n - i0 < KC_TOK_CHUNK ? a->n - i0 : KC_TOK_CHUNK);
        if (kc_dispatch_type<opt_embd_launch>(a->w_type, kc_stream(ctx), a, i0, cnt))
            return -1;
    }
    return 0;
}

/* ---- NORM / RMSNORM: one block per row ---------------------------------- */

#define NORM_THREADS 256

/* sum of v over the block; every thread gets the result */
__device__ float opt_block_sum(float v, float *sh)
{
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = kc_warp_sum(v);
    __syncthreads(); /* sh may still be read from the previous call */
    if (lane == 0)
        sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    return kc_warp_sum(v);
}

/* ADD (the fast path's residual + norm): the row is x + x2, computed on
 * the fly in every pass (the same f32 sums each time) and stored to sum in
 * the last, so that sum and y are bit-identical to an ADD launch followed by
 * a NORM launch on its output; the summation order of the norm depends only
 * on k, vec and blockDim, which the caller keeps as NORM would choose them. */
template <bool ADD>
__global__ void opt_norm_kernel(float *y, const float *x, const float *x2, float *sum, const float *g,
                                const float *b, int64_t k, float eps, int rms, int vec)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    __shared__ float sh[32];
    const float *xr = x + (int64_t)blockIdx.x * k;
    const float *x2r = ADD ? x2 + (int64_t)blockIdx.x * k : NULL;
    float *yr = y + (int64_t)blockIdx.x * k;
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
            for (int64_t j = threadIdx.x; j < k / 4; j += blockDim.x) {
                float4 v = ld4(j);
                s += (v.x + v.y) + (v.z + v.w);
            }
        else
            for (int64_t j = threadIdx.x; j < k; j += blockDim.x)
                s += ld1(j);
        mean = opt_block_sum(s, sh) / (float)k;
    }
    /* centred second pass: no cancellation when |mean| >> std */
    float s2 = 0.0f;
    if (vec)
        for (int64_t j = threadIdx.x; j < k / 4; j += blockDim.x) {
            float4 v = ld4(j);
            float a0 = v.x - mean, a1 = v.y - mean, a2 = v.z - mean, a3 = v.w - mean;
            s2 += (a0 * a0 + a1 * a1) + (a2 * a2 + a3 * a3);
        }
    else
        for (int64_t j = threadIdx.x; j < k; j += blockDim.x) {
            float a0 = ld1(j) - mean;
            s2 += a0 * a0;
        }
    float inv = rsqrtf(opt_block_sum(s2, sh) / (float)k + eps);
    if (vec) {
        for (int64_t j = threadIdx.x; j < k / 4; j += blockDim.x) {
            float4 v = ld4(j), gw = ((const float4 *)g)[j], o;
            if (ADD)
                ((float4 *)(sum + (int64_t)blockIdx.x * k))[j] = v;
            o.x = (v.x - mean) * inv * gw.x;
            o.y = (v.y - mean) * inv * gw.y;
            o.z = (v.z - mean) * inv * gw.z;
            o.w = (v.w - mean) * inv * gw.w;
            if (b) {
                float4 bb = ((const float4 *)b)[j];
                o.x += bb.x, o.y += bb.y, o.z += bb.z, o.w += bb.w;
            }
            ((float4 *)yr)[j] = o;
        }
    } else {
        for (int64_t j = threadIdx.x; j < k; j += blockDim.x) {
            float v = ld1(j);
            if (ADD)
                sum[(int64_t)blockIdx.x * k + j] = v;
            float o = (v - mean) * inv * g[j];
            yr[j] = b ? o + b[j] : o;
        }
    }
}

static int opt_norm_check(const kern_args *a)
{
    return a->n < 0 || a->k <= 0 || !a->x || !a->y || !a->w || a->w_type != XF_TYPE_F32 ? -1 : 0;
}

/* NORM's choices for a call: float4 path, threads per row */
static int opt_norm_vec(const kern_args *a, int rms)
{
    const float *b = rms ? NULL : a->b;
    return a->k % 4 == 0 && kc_aligned16(a->x) && kc_aligned16(a->y) && kc_aligned16(a->w) &&
           (!b || kc_aligned16(b));
}
static int opt_norm_threads(const kern_args *a) { return a->k >= 1024 ? NORM_THREADS : 128; }

static int opt_norm_any(kern_ctx *ctx, const kern_args *a, int rms)
{
    if (opt_norm_check(a))
        return -1;
    if (a->n == 0)
        return 0;
    /* rows in grid.x: up to 2^31-1 rows */
    opt_norm_kernel<false><<<(unsigned)a->n, opt_norm_threads(a), 0, kc_stream(ctx)>>>(
        a->y, a->x, NULL, NULL, (const float *)a->w, rms ? NULL : a->b, a->k, a->eps, rms, opt_norm_vec(a, rms));
    return kc_launch_ok();
}

extern "C" int kc_opt_norm(kern_ctx *ctx, const kern_args *a) { return opt_norm_any(ctx, a, 0); }
extern "C" int kc_opt_rmsnorm(kern_ctx *ctx, const kern_args *a) { return opt_norm_any(ctx, a, 1); }

extern "C" int kern_cuda_add_norm(kern_ctx *ctx, const kern_args *add, const kern_args *norm, int rms)
{
    if (!add->x || !add->x2 || !add->y || add->n < 0 || add->k < 0 || opt_norm_check(norm) ||
        norm->x != add->y || add->n * add->k != norm->n * norm->k)
        return -1;
    /* one launch only where the rows line up and every pointer takes the
     * float4 path that both kernels would take; else the two opt kernels */
    int vec = opt_norm_vec(norm, rms);
    if (norm->n == 0 || !vec || add->k != norm->k || !kc_aligned16(add->x) || !kc_aligned16(add->x2)) {
        if (kc_opt_add(ctx, add))
            return -1;
        return opt_norm_any(ctx, norm, rms);
    }
    opt_norm_kernel<true><<<(unsigned)norm->n, opt_norm_threads(norm), 0, kc_stream(ctx)>>>(
        norm->y, add->x, add->x2, add->y, (const float *)norm->w, rms ? NULL : norm->b, norm->k, norm->eps, rms, 1);
    return kc_launch_ok();
}

/* ---- VIEW: a strided 2-D copy, which the copy engine does best --------- */

extern "C" int kc_opt_view(kern_ctx *ctx, const kern_args *a)
{
    if (a->n < 0 || a->m <= 0 || a->off < 0 || a->off + a->m > a->x_stride || !a->x || !a->y)
        return -1;
    if (a->n == 0)
        return 0;
    cudaError_t e = cudaMemcpy2DAsync(a->y, (size_t)a->m * sizeof(float), a->x + a->off,
                                      (size_t)a->x_stride * sizeof(float), (size_t)a->m * sizeof(float),
                                      (size_t)a->n, cudaMemcpyDeviceToDevice, kc_stream(ctx));
    return e == cudaSuccess ? 0 : -1;
}

/* ---- ROPE: one thread per rotated pair ---------------------------------- */

__global__ void opt_rope_kernel(float *y, const float *x, int64_t pairs, int n_head, int hd, int pos0,
                                const int32_t *step, double log_base, int normal)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    if (step)
        pos0 = step[KERN_STEP_POS0];
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < pairs;
         o += (int64_t)gridDim.x * blockDim.x)
        kc_rope_pair(y, NULL, x, o, n_head, hd, pos0, log_base, normal);
}

extern "C" int kc_opt_rope(kern_ctx *ctx, const kern_args *a)
{
    if (a->n < 0 || a->pos0 < 0 || a->n_head <= 0 || a->head_dim <= 0 || a->head_dim % 2 ||
        !(a->rope_base > 0) || !a->x || !a->y ||
        (a->rope_mode != KERN_ROPE_NEOX && a->rope_mode != KERN_ROPE_NORMAL))
        return -1;
    if (a->n == 0)
        return 0;
    int64_t pairs = a->n * a->n_head * (a->head_dim / 2);
    opt_rope_kernel<<<kc_grid_1d(pairs, 256), 256, 0, kc_stream(ctx)>>>(
        a->y, a->x, pairs, a->n_head, a->head_dim, a->pos0, a->dev_step, log((double)a->rope_base),
        a->rope_mode == KERN_ROPE_NORMAL);
    return kc_launch_ok();
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

template <bool VEC>
__global__ void opt_kq_kernel(float *y, const float *q, const float *kc, int64_t n, int nh, int nkv, int hd,
                              int n_kv, int pos0, const int32_t *step, float scale)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    extern __shared__ float qs[]; /* [hd] */
    if (step) {
        n_kv = step[KERN_STEP_NKV];
        pos0 = step[KERN_STEP_POS0];
    }
    /* nothing left for this block (launched for the worst case) */
    if ((int64_t)blockIdx.y * KQ_TILE >= n_kv)
        return;
    int64_t rowi = blockIdx.x; /* (h, i) */
    int h = (int)(rowi / n);
    int64_t i = rowi % n;
    int g = h / (nh / nkv);
    const float *qr = q + (i * nh + h) * hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x)
        qs[d] = qr[d];
    __syncthreads();
    kq_scores<VEC>(y, qs, kc, rowi, i, g, nkv, hd, n_kv, pos0, scale, (int64_t)blockIdx.y * KQ_TILE,
                   (int64_t)gridDim.y * KQ_TILE, threadIdx.x);
}

extern "C" int kc_opt_kq(kern_ctx *ctx, const kern_args *a)
{
    if (kc_attn_check(a) || !a->kc)
        return -1;
    if (a->n == 0 || a->n_kv == 0)
        return 0;
    if (a->n > 1)
        return kc_attn_prefill_kq(kc_stream(ctx), a); /* tiled (attn_prefill.cu) */
    /* at most KQ_GRID_Y blocks per row, looping over the tiles: a launch
     * sized for a whole context (dev_step) then starts few idle blocks */
    int64_t tiles = (a->n_kv + KQ_TILE - 1) / KQ_TILE;
    dim3 grid((unsigned)(a->n * a->n_head), (unsigned)(tiles < KQ_GRID_Y ? tiles : KQ_GRID_Y));
    size_t shm = (size_t)a->head_dim * sizeof(float);
    if (shm > 48 * 1024)
        return -1;
    if (a->head_dim % 32 == 0 && kc_aligned16(a->kc))
        opt_kq_kernel<true><<<grid, 256, shm, kc_stream(ctx)>>>(a->y, a->x, a->kc, a->n, a->n_head, a->n_head_kv,
                                                                a->head_dim, a->n_kv, a->pos0, a->dev_step,
                                                                a->scale);
    else
        opt_kq_kernel<false><<<grid, 256, shm, kc_stream(ctx)>>>(a->y, a->x, a->kc, a->n, a->n_head,
                                                                 a->n_head_kv, a->head_dim, a->n_kv, a->pos0,
                                                                 a->dev_step, a->scale);
    return kc_launch_ok();
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

__global__ void opt_softmax_kernel(float *y, const float *x, int64_t m, const int32_t *step)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    __shared__ float sh[32];
    if (step)
        m = step[KERN_STEP_NKV];
    softmax_row<false>(y + (int64_t)blockIdx.x * m, x + (int64_t)blockIdx.x * m, m, threadIdx.x, sh);
}

/* Many rows (a prefill's [heads x tokens] rows of scores): one warp a row,
 * each lane standing in for the nt / 32 threads t = 32 v + lane of
 * softmax_row (v < nt / 32): lane's sum v is thread t's, in its order; a
 * warp sum of each makes warp v's total, and the warp sum of those (lane v
 * holding total v, the other lanes 0) is softmax_row's block sum: the same
 * additions in the same order, so the same bits as one block a row
 * (test_kernels_cuda test_softmax compares the two bit for bit). Why: with
 * 2 values a thread the block-per-row kernel is launch- and barrier-bound
 * (1.05 ms of a 17 ms 512-token pass of the Qwen2.5-0.5B shape, H100, at a
 * quarter of its bytes' time). */
#define SMW_ROWS 8 /* rows (warps) a block */
__global__ void __launch_bounds__(32 * SMW_ROWS) opt_softmax_warp_kernel(float *y, const float *x, int64_t rows,
                                                                         int64_t m, const int32_t *step)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    if (step)
        m = step[KERN_STEP_NKV];
    int lane = threadIdx.x & 31;
    int64_t r = (int64_t)blockIdx.x * SMW_ROWS + (threadIdx.x >> 5);
    if (r >= rows)
        return;
    const float *xr = x + r * m;
    float *yr = y + r * m;
    int nt = opt_softmax_threads(m), nv = nt >> 5; /* softmax_row's threads and warps */
    float mx = -INFINITY;
    for (int64_t j = lane; j < m; j += 32)
        mx = fmaxf(mx, xr[j]);
    mx = kc_warp_max(mx); /* a maximum is the same in any grouping */
    if (mx == -INFINITY) {
        for (int64_t j = lane; j < m; j += 32)
            yr[j] = 0.0f;
        return;
    }
    float tot = 0.0f; /* lane v: warp v's total */
#pragma unroll 1
    for (int v = 0; v < nv; v++) {
        float s = 0.0f;
        for (int64_t j = 32 * v + lane; j < m; j += nt)
            s += expf(xr[j] - mx);
        s = kc_warp_sum(s);
        if (lane == v)
            tot = s;
    }
    float sum = kc_warp_sum(lane < nv ? tot : 0.0f);
    float inv = 1.0f / sum;
    for (int64_t j = lane; j < m; j += 32)
        yr[j] = expf(xr[j] - mx) * inv;
}

extern "C" int kc_opt_softmax(kern_ctx *ctx, const kern_args *a)
{
    if (a->n < 0 || a->m <= 0 || !a->x || !a->y)
        return -1;
    if (a->n == 0)
        return 0;
    /* the same bits either way: a warp a row where there are enough rows to
     * fill the GPU with warps and rows are short enough for one warp */
    if (a->n >= 1024 && a->m <= 8192) {
        int64_t blocks = (a->n + SMW_ROWS - 1) / SMW_ROWS;
        if (blocks > INT32_MAX)
            return -1;
        opt_softmax_warp_kernel<<<(unsigned)blocks, 32 * SMW_ROWS, 0, kc_stream(ctx)>>>(a->y, a->x, a->n, a->m,
                                                                                       a->dev_step);
        return kc_launch_ok();
    }
    opt_softmax_kernel<<<(unsigned)a->n, opt_softmax_threads(a->m), 0, kc_stream(ctx)>>>(a->y, a->x, a->m,
                                                                                        a->dev_step);
    return kc_launch_ok();
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

__global__ void __launch_bounds__(32 * KQV_SPLIT)
    opt_kqv1_kernel(float *y, const float *p, const float *vc, int nh, int nkv, int hd, int n_kv,
                    const int32_t *step)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    __shared__ float red[KQV_SPLIT][KQV_MAX_HD];
    if (step)
        n_kv = step[KERN_STEP_NKV];
    kqv1_head<false>(y, p, vc, (int)blockIdx.x, nh, nkv, hd, n_kv, threadIdx.x, threadIdx.y, red);
}

extern "C" int kc_opt_kqv(kern_ctx *ctx, const kern_args *a)
{
    if (kc_attn_check(a) || !a->vc || a->head_dim > KQV_MAX_HD)
        return -1;
    if (a->n == 0)
        return 0;
    dim3 block(32, KQV_SPLIT);
    if (a->n == 1) {
        opt_kqv1_kernel<<<(unsigned)a->n_head, block, 0, kc_stream(ctx)>>>(a->y, a->x, a->vc, a->n_head,
                                                                          a->n_head_kv, a->head_dim, a->n_kv, a->dev_step);
        return kc_launch_ok();
    }
    return kc_attn_prefill_kqv(kc_stream(ctx), a); /* tiled (attn_prefill.cu) */
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

template <bool VEC>
__global__ void __launch_bounds__(FA_THREADS, 2) /* 2 blocks an SM: 64 registers (kqv_chunk) */
    fa_kernel(float *kq, float *kq_soft, float *kqv, const float *q, const float *kc, const float *vc, int nh,
              int nkv, int hd, int n_kv, int pos0, const int32_t *step, float scale, int *cnt)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    extern __shared__ float qs[]; /* [hd] */
    __shared__ float sh[32];
    __shared__ float red[KQV_SPLIT][KQV_MAX_HD];
    __shared__ int last;
    if (step) {
        n_kv = step[KERN_STEP_NKV];
        pos0 = step[KERN_STEP_POS0];
    }
    int h = blockIdx.x, g = h / (nh / nkv), t = threadIdx.x;
    /* A programmatic dependent launch: the key rows of this block's tiles
     * go into L2 while the kernel before (the rope and cache stores) runs.
     * Rows before pos0 were stored by earlier passes; row pos0 may still be
     * in flight, which a prefetch cannot get wrong (L2 is where stores
     * land). The step words are the graph's first node's, already there. */
    const int64_t tile = FA_THREADS / 8, lines = ((int64_t)hd * (int64_t)sizeof(float) + 127) / 128;
    for (int64_t t0 = (int64_t)blockIdx.y * tile; t0 < n_kv; t0 += (int64_t)gridDim.y * tile)
        for (int64_t i = t; i < tile * lines; i += FA_THREADS) {
            int64_t j = t0 + i / lines;
            if (j < n_kv)
                asm volatile("prefetch.global.L2 [%0];" ::"l"(kc + (j * nkv + g) * hd + (i % lines) * 32));
        }
    KC_PDL_WAIT(); /* q is the kernel before's */
    if ((int64_t)blockIdx.y * tile < n_kv) {
        for (int d = t; d < hd; d += FA_THREADS)
            qs[d] = q[(int64_t)h * hd + d];
        __syncthreads();
        kq_scores<VEC, 4>(kq, qs, kc, h, 0, g, nkv, hd, n_kv, pos0, scale, (int64_t)blockIdx.y * tile,
                          (int64_t)gridDim.y * tile, t);
    }
    /* publish the scores, then take a ticket; every block takes one */
    __threadfence();
    __syncthreads();
    if (t == 0) {
        int v = atomicAdd(&cnt[h], 1);
        last = v == (int)gridDim.y - 1;
        if (last)
            cnt[h] = 0;
    }
    __syncthreads();
    if (!last)
        return;
    __threadfence();
    float *sr = kq_soft + (int64_t)h * n_kv;
    softmax_row<true>(sr, kq + (int64_t)h * n_kv, n_kv, t, sh);
    if (n_kv > KQV_CH)
        return; /* fa_kqv_kernel's */
    __syncthreads(); /* the weights, for every warp below */
    kqv1_head<true>(kqv, kq_soft, vc, h, nh, nkv, hd, n_kv, t & 31, t >> 5, red);
}

__global__ void __launch_bounds__(32 * KQV_SPLIT)
    fa_kqv_kernel(float *y, const float *p, const float *vc, int nh, int nkv, int hd, int n_kv,
                  const int32_t *step, float *part, int cmax, int *cnt)
{
    KC_PDL_TRIGGER();
    __shared__ float red[KQV_SPLIT][KQV_MAX_HD];
    __shared__ int last;
    /* n_kv and the value cache were written before fa_kernel started (it
     * is a full dependency): they may be read before the wait */
    if (step)
        n_kv = step[KERN_STEP_NKV];
    int nc = (int)((n_kv + KQV_CH - 1) / KQV_CH);
    int h = blockIdx.x, g = h / (nh / nkv), lane = threadIdx.x, ty = threadIdx.y, tid = ty * 32 + lane;
    const float *vb = vc + (int64_t)g * hd;
    int64_t vstride = (int64_t)nkv * hd;
    if (nc > 1 && (int)blockIdx.y < nc) {
        /* this block's first chunk of values into L2 while fa_kernel
         * scores and normalizes: after the wait its loads find them there */
        int64_t j0 = (int64_t)blockIdx.y * KQV_CH, rows = n_kv - j0 < KQV_CH ? n_kv - j0 : KQV_CH;
        int lines = (hd * (int)sizeof(float) + 127) / 128;
        for (int64_t i = tid; i < rows * lines; i += 32 * KQV_SPLIT)
            asm volatile("prefetch.global.L2 [%0];" ::"l"(vb + (j0 + i / lines) * vstride + (i % lines) * 32));
    }
    KC_PDL_WAIT(); /* the weights are fa_kernel's */
    if (nc <= 1 || (int)blockIdx.y >= nc)
        return; /* one chunk: fa_kernel's last block summed it */
    const float *pr = p + (int64_t)h * n_kv;
    float *ph = part + (int64_t)h * cmax * hd;
    for (int c = blockIdx.y; c < nc; c += gridDim.y) {
        int64_t j0 = (int64_t)c * KQV_CH;
        kqv_chunk<true, 2>(pr, vb, vstride, hd, j0, j0 + KQV_CH < n_kv ? j0 + KQV_CH : n_kv, lane, ty, red);
        if (tid < hd)
            ph[(int64_t)c * hd + tid] = kqv_chunk_sum(red, tid);
        __syncthreads(); /* red is the next chunk's */
    }
    __threadfence();
    __syncthreads();
    if (tid == 0) {
        int live = nc < (int)gridDim.y ? nc : (int)gridDim.y;
        int v = atomicAdd(&cnt[nh + h], 1);
        last = v == live - 1;
        if (last)
            cnt[nh + h] = 0;
    }
    __syncthreads();
    if (!last)
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

extern "C" int64_t kern_cuda_attn_part_floats(int n_head, int head_dim, int64_t n_ctx)
{
    int64_t chunks = (n_ctx + KQV_CH - 1) / KQV_CH, r;
    if (n_head <= 0 || head_dim <= 0 || n_ctx <= 0 || __builtin_mul_overflow(chunks, (int64_t)n_head * head_dim, &r))
        return -1;
    return r;
}

extern "C" int kern_cuda_attn_fused(kern_ctx *ctx, const kern_args *kq, const kern_args *sm, const kern_args *kqv,
                                    int *cnt, float *part, int64_t part_floats)
{
    if (!kq || !sm || !kqv || !cnt || kc_attn_check(kq) || !kq->kc || kc_attn_check(kqv) || !kqv->vc)
        return 1;
    if (kq->n != 1 || sm->n != kq->n_head || kqv->n != 1 || sm->x != kq->y || kqv->x != sm->y ||
        sm->m != kq->n_kv || kqv->n_kv != kq->n_kv || kqv->n_head != kq->n_head ||
        kqv->n_head_kv != kq->n_head_kv || kqv->head_dim != kq->head_dim || kq->head_dim > KQV_MAX_HD ||
        sm->dev_step != kq->dev_step || kqv->dev_step != kq->dev_step || kq->n_kv <= 0)
        return 1;
    /* the thread counts of the three kernels: the same bits need the same */
    if (opt_softmax_threads(kq->n_kv) > FA_THREADS)
        return 1;
    /* the n_kv given bounds the row (the device's n_kv, with dev_step): the
     * chunks of a row that long must fit part */
    int64_t cmax = (kq->n_kv + KQV_CH - 1) / KQV_CH;
    int64_t need = kern_cuda_attn_part_floats(kq->n_head, kq->head_dim, kq->n_kv);
    if (cmax > 1 && (!part || need < 0 || need > part_floats || cmax > INT32_MAX))
        return 1;
    size_t shm = (size_t)kq->head_dim * sizeof(float);
    int64_t tiles = (kq->n_kv + FA_THREADS / 8 - 1) / (FA_THREADS / 8);
    dim3 grid((unsigned)kq->n_head, (unsigned)(tiles < FA_GRID_Y ? tiles : FA_GRID_Y));
    cudaStream_t st = kc_stream(ctx);
    /* programmatic dependent: fa_kernel asks its key rows into L2 before
     * it waits for the kernel before it */
    if (kc_launch_pdl(kq->head_dim % 32 == 0 && kc_aligned16(kq->kc) ? fa_kernel<true> : fa_kernel<false>, grid,
                      dim3(FA_THREADS), shm, st, kq->y, sm->y, kqv->y, (const float *)kq->x,
                      (const float *)kq->kc, (const float *)kqv->vc, kq->n_head, kq->n_head_kv, kq->head_dim,
                      (int)kq->n_kv, kq->pos0, (const int32_t *)kq->dev_step, kq->scale, cnt) != 0)
        return -1;
    if (cmax <= 1)
        return 0; /* no row that long: fa_kernel does it all */
    dim3 g2((unsigned)kq->n_head, (unsigned)(cmax < FA_KQV_GRID_Y ? cmax : FA_KQV_GRID_Y));
    return kc_launch_pdl(fa_kqv_kernel, g2, dim3(32, KQV_SPLIT), 0, st, kqv->y, (const float *)kqv->x,
                         (const float *)kqv->vc, kqv->n_head, kqv->n_head_kv, kqv->head_dim, kqv->n_kv,
                         (const int32_t *)kqv->dev_step, part, (int)cmax, cnt) != 0
               ? -1
               : 0;
}

/* ---- ADD / GELU / SWIGLU: 4 elements per thread where aligned ------------ */

template <int OP> __device__ __forceinline__ float opt_elem(float x, float x2)
{
    if (OP == KERN_OP_ADD)
        return x + x2;
    if (OP == KERN_OP_GELU)
        return kc_gelu(x);
    return kc_swiglu(x, x2); /* silu(gate) * up */
}

template <int OP> __global__ void opt_elem_vec(float4 *y, const float4 *x, const float4 *x2, int64_t n4)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < n4; o += (int64_t)gridDim.x * blockDim.x) {
        float4 a = x[o], b = OP == KERN_OP_GELU ? a : x2[o], r;
        r.x = opt_elem<OP>(a.x, b.x);
        r.y = opt_elem<OP>(a.y, b.y);
        r.z = opt_elem<OP>(a.z, b.z);
        r.w = opt_elem<OP>(a.w, b.w);
        y[o] = r;
    }
}

template <int OP> __global__ void opt_elem_scalar(float *y, const float *x, const float *x2, int64_t n)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < n; o += (int64_t)gridDim.x * blockDim.x)
        y[o] = opt_elem<OP>(x[o], OP == KERN_OP_GELU ? 0.0f : x2[o]);
}

template <int OP> static int opt_elem_run(kern_ctx *ctx, const kern_args *a)
{
    if (a->n < 0 || a->k < 0 || !a->x || !a->y || (OP != KERN_OP_GELU && !a->x2))
        return -1;
    int64_t total = a->n * a->k;
    if (total == 0)
        return 0;
    cudaStream_t st = kc_stream(ctx);
    if (total % 4 == 0 && kc_aligned16(a->x) && kc_aligned16(a->y) && (OP == KERN_OP_GELU || kc_aligned16(a->x2)))
        opt_elem_vec<OP><<<kc_grid_1d(total / 4, 256), 256, 0, st>>>((float4 *)a->y, (const float4 *)a->x,
                                                                     (const float4 *)a->x2, total / 4);
    else
        opt_elem_scalar<OP><<<kc_grid_1d(total, 256), 256, 0, st>>>(a->y, a->x, a->x2, total);
    return kc_launch_ok();
}

extern "C" int kc_opt_add(kern_ctx *ctx, const kern_args *a) { return opt_elem_run<KERN_OP_ADD>(ctx, a); }
extern "C" int kc_opt_gelu(kern_ctx *ctx, const kern_args *a) { return opt_elem_run<KERN_OP_GELU>(ctx, a); }
extern "C" int kc_opt_swiglu(kern_ctx *ctx, const kern_args *a) { return opt_elem_run<KERN_OP_SWIGLU>(ctx, a); }
