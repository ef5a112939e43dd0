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
#include "decode_mega.h"
#include "opt_body.h"

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

/* ---- NORM / RMSNORM: one block per row (opt_norm_row, opt_body.h) -------- */

template <bool ADD>
__global__ void opt_norm_kernel(float *y, const float *x, const float *x2, float *sum, const float *g,
                                const float *b, int64_t k, float eps, int rms, int vec)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    __shared__ float sh[32];
    opt_norm_row<ADD>((int64_t)blockIdx.x, (int)blockDim.x, sh, y, x, x2, sum, g, b, k, eps, rms, vec);
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

/* NORM of a's rows (after the ADD add, or NULL) as a phase of the decode
 * megakernel (decode_mega.cu): opt_norm_kernel's arguments */
static int opt_norm_record(kern_ctx *ctx, const kern_args *add, const kern_args *a, int rms, int vec)
{
    if (a->n > UINT32_MAX)
        return -1;
    mk_phase ph;
    memset(&ph, 0, sizeof ph);
    ph.kind = MK_NORM;
    ph.nvb = (unsigned)a->n;
    mk_norm *r = &ph.u.norm;
    r->y = a->y, r->g = (const float *)a->w, r->b = rms ? NULL : a->b, r->k = a->k, r->eps = a->eps;
    r->rms = rms, r->vec = vec, r->nt = opt_norm_threads(a);
    if (add) {
        r->add = 1, r->x = add->x, r->x2 = add->x2, r->sum = add->y;
    } else {
        r->x = a->x;
    }
    return kc_mega_add(ctx, &ph);
}

static int opt_norm_any(kern_ctx *ctx, const kern_args *a, int rms)
{
    if (opt_norm_check(a))
        return -1;
    if (a->n == 0)
        return 0;
    if (kc_mega_on(ctx))
        return opt_norm_record(ctx, NULL, a, rms, opt_norm_vec(a, rms));
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
        if (kc_mega_flush(ctx) || kc_opt_add(ctx, add)) /* the ADD launches: the recorded phases first */
            return -1;
        return opt_norm_any(ctx, norm, rms);
    }
    if (kc_mega_on(ctx))
        return opt_norm_record(ctx, add, norm, rms, 1);
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

/* ---- KQ of one token: 8 lanes per score (kq_scores, opt_body.h) ---------- */

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

/* ---- SOFTMAX: one block per row (softmax_row, opt_body.h) -------------- */

__global__ void opt_softmax_kernel(float *y, const float *x, int64_t m, const int32_t *step)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    __shared__ float2 sh[32];
    if (step)
        m = step[KERN_STEP_NKV];
    softmax_row<false>(y + (int64_t)blockIdx.x * m, x + (int64_t)blockIdx.x * m, m, sh);
}

/* Many rows (a prefill's [heads x tokens] rows of scores): one warp a row,
 * each chunk's pair by that warp (csm_chunk) and its term added to S in
 * chunk order: the same bits as one block a row (test_kernels_cuda
 * test_softmax compares the two bit for bit). Why: with 2 values a thread
 * the block-per-row kernel is launch- and barrier-bound (1.05 ms of a
 * 17 ms 512-token pass of the Qwen2.5-0.5B shape, H100, at a quarter of
 * its bytes' time). The row: smw_row (opt_body.h), rows of at most
 * SMW_MAX scores. */
__global__ void __launch_bounds__(32 * SMW_ROWS) opt_softmax_warp_kernel(float *y, const float *x, int64_t rows,
                                                                         int64_t m, const int32_t *step)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    if (step)
        m = step[KERN_STEP_NKV];
    int lane = threadIdx.x & 31;
    int64_t r = (int64_t)blockIdx.x * SMW_ROWS + (threadIdx.x >> 5);
    if (r >= rows || m > SMW_MAX)
        return; /* m: the launch checked the bound it was given */
    smw_row(y + r * m, x + r * m, m, m, true, lane);
}

extern "C" int kc_opt_softmax(kern_ctx *ctx, const kern_args *a)
{
    if (a->n < 0 || a->m <= 0 || !a->x || !a->y)
        return -1;
    if (a->n == 0)
        return 0;
    /* the same bits either way: a warp a row where there are enough rows to
     * fill the GPU with warps and rows are short enough for one warp */
    if (a->n >= 1024 && a->m <= SMW_MAX) {
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

/* ---- KQV of one token: one block per head (kqv1_head, opt_body.h) ------- */

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

/* ---- KQ -> SOFTMAX -> KQV of one token (the fast path; opt_body.h) ------ */

template <bool VEC, bool ROPE>
__global__ void __launch_bounds__(FA_THREADS, 2) /* 2 blocks an SM: a head's 16 in one wave */
    fa_kernel(float *kq, float *kq_soft, float *kqv, const float *q, const float *kc, const float *vc, int nh,
              int nkv, int hd, int n_kv, int pos0, const int32_t *step, float scale, float2 *stats, int cmax,
              const __grid_constant__ fa_rope R)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    extern __shared__ float qs[]; /* [hd] */
    __shared__ float sc[KQV_CH];
    __shared__ float2 st[2];
    __shared__ float red[KQV_SPLIT][KQV_MAX_HD];
    fa_body<VEC, FA_THREADS, 2048 / FA_THREADS, ROPE>((int)blockIdx.x, (int)blockIdx.y, (int)gridDim.y, qs,
                                                      sc, st, red, kq, kq_soft, kqv, q, kc, vc, nh, nkv, hd,
                                                      n_kv, pos0, step, scale, stats, cmax, &R);
}

__global__ void __launch_bounds__(32 * KQV_SPLIT)
    fa_kqv_kernel(float *y, const float *kq, float *p, const float *vc, int nh, int nkv, int hd, int n_kv,
                  const int32_t *step, float *part, const float2 *stats, int cmax, int *cnt)
{
    KC_PDL_TRIGGER();
    __shared__ float psh[KQV_CH];
    __shared__ float2 mi;
    __shared__ float red[KQV_SPLIT][KQV_MAX_HD];
    __shared__ int last;
    fa_kqv_body<2>((int)blockIdx.x, (int)blockIdx.y, (int)gridDim.y, (int)threadIdx.x, (int)threadIdx.y, psh,
                   &mi, red, &last, y, kq, p, vc, nh, nkv, hd, n_kv, step, part, stats, cmax, cnt);
}

/* part's layout for rows of up to cmax chunks: the chunks' pairs (m_c, s_c)
 * [nh, cmax] first (8-byte aligned where part is), then the chunk sums
 * [nh, cmax, hd] (fa_part_sums) */
static float *fa_part_sums(float *part, int64_t cmax, int nh)
{
    return part + 2 * cmax * nh;
}

extern "C" int64_t kern_cuda_attn_part_floats(int n_head, int head_dim, int64_t n_ctx)
{
    int64_t chunks = (n_ctx + KQV_CH - 1) / KQV_CH, r;
    if (n_head <= 0 || head_dim <= 0 || n_ctx <= 0 ||
        __builtin_mul_overflow(chunks, (int64_t)n_head * (head_dim + 2), &r))
        return -1;
    return r;
}

/* fa_kernel (and fa_kqv_kernel where a row of n_kv is more than one chunk)
 * as phases of the decode megakernel, whose blocks have 256 threads:
 * fa_body<VEC, 256, 4> computes what fa_kernel's do, bit for bit */
static int fa_record(kern_ctx *ctx, const kern_args *kq, const kern_args *sm, const kern_args *kqv, int *cnt,
                     float *part, int64_t cmax)
{
    mk_phase ph;
    memset(&ph, 0, sizeof ph);
    ph.kind = MK_FA;
    mk_fa *f = &ph.u.fa;
    f->gy = (int)(cmax < FA_GRID_Y ? cmax : FA_GRID_Y);
    ph.nvb = (unsigned)kq->n_head * (unsigned)f->gy;
    f->kq = kq->y, f->kq_soft = sm->y, f->kqv = kqv->y, f->q = kq->x, f->kc = kq->kc, f->vc = kqv->vc;
    f->nh = kq->n_head, f->nkv = kq->n_head_kv, f->hd = kq->head_dim, f->n_kv = (int)kq->n_kv, f->pos0 = kq->pos0;
    f->step = kq->dev_step, f->scale = kq->scale, f->stats = (float2 *)part, f->cmax = (int)cmax;
    f->vec = kq->head_dim % 32 == 0 && kc_aligned16(kq->kc);
    if (kc_mega_add(ctx, &ph))
        return -1;
    if (cmax <= 1)
        return 0;
    memset(&ph, 0, sizeof ph);
    ph.kind = MK_KQV;
    mk_kqv *v = &ph.u.kqv;
    v->gy = (int)(cmax < FA_KQV_GRID_Y ? cmax : FA_KQV_GRID_Y);
    ph.nvb = (unsigned)kqv->n_head * (unsigned)v->gy;
    v->y = kqv->y, v->kq = sm->x, v->p = sm->y, v->vc = kqv->vc, v->nh = kqv->n_head, v->nkv = kqv->n_head_kv;
    v->hd = kqv->head_dim, v->n_kv = (int)kqv->n_kv, v->step = kqv->dev_step;
    v->part = fa_part_sums(part, cmax, kqv->n_head), v->stats = (const float2 *)part, v->cmax = (int)cmax;
    v->cnt = cnt;
    return kc_mega_add(ctx, &ph);
}

/* kern_cuda_attn_fused, and with R (not NULL) kern_cuda_attn_rope_fused */
static int fa_launch(kern_ctx *ctx, const kern_args *kq, const kern_args *sm, const kern_args *kqv, int *cnt,
                     float *part, int64_t part_floats, const fa_rope *R)
{
    if (!kq || !sm || !kqv || !cnt || kc_attn_check(kq) || !kq->kc || kc_attn_check(kqv) || !kqv->vc)
        return 1;
    if (kq->n != 1 || sm->n != kq->n_head || kqv->n != 1 || sm->x != kq->y || kqv->x != sm->y ||
        sm->m != kq->n_kv || kqv->n_kv != kq->n_kv || kqv->n_head != kq->n_head ||
        kqv->n_head_kv != kq->n_head_kv || kqv->head_dim != kq->head_dim || kq->head_dim > KQV_MAX_HD ||
        sm->dev_step != kq->dev_step || kqv->dev_step != kq->dev_step || kq->n_kv <= 0)
        return 1;
    /* the n_kv given bounds the row (the device's n_kv, with dev_step): the
     * chunks of a row that long must fit part */
    int64_t cmax = (kq->n_kv + KQV_CH - 1) / KQV_CH;
    int64_t need = kern_cuda_attn_part_floats(kq->n_head, kq->head_dim, kq->n_kv);
    if (cmax > 1 && (!part || need < 0 || need > part_floats || cmax > INT32_MAX || ((uintptr_t)part & 7u)))
        return 1;
    size_t shm = (size_t)kq->head_dim * sizeof(float);
    dim3 grid((unsigned)kq->n_head, (unsigned)(cmax < FA_GRID_Y ? cmax : FA_GRID_Y));
    if (kc_mega_on(ctx)) {
        if (R)
            return 1; /* the megakernel's phase does not rotate: the caller runs the rotations first */
        return fa_record(ctx, kq, sm, kqv, cnt, part, cmax);
    }
    cudaStream_t st = kc_stream(ctx);
    fa_rope none;
    memset(&none, 0, sizeof none);
    bool vec = kq->head_dim % 32 == 0 && kc_aligned16(kq->kc);
    /* programmatic dependent: fa_kernel asks its key rows into L2 before
     * it waits for the kernel before it */
    if (kc_launch_pdl(R ? (vec ? fa_kernel<true, true> : fa_kernel<false, true>)
                        : (vec ? fa_kernel<true, false> : fa_kernel<false, false>),
                      grid, dim3(FA_THREADS), shm, st, kq->y, sm->y, kqv->y, (const float *)kq->x,
                      (const float *)kq->kc, (const float *)kqv->vc, kq->n_head, kq->n_head_kv, kq->head_dim,
                      (int)kq->n_kv, kq->pos0, (const int32_t *)kq->dev_step, kq->scale, (float2 *)part,
                      (int)cmax, R ? *R : none) != 0)
        return -1;
    if (cmax <= 1)
        return 0; /* no row that long: fa_kernel does it all */
    dim3 g2((unsigned)kq->n_head, (unsigned)(cmax < FA_KQV_GRID_Y ? cmax : FA_KQV_GRID_Y));
    return kc_launch_pdl(fa_kqv_kernel, g2, dim3(32, KQV_SPLIT), 0, st, kqv->y, (const float *)sm->x, sm->y,
                         (const float *)kqv->vc, kqv->n_head, kqv->n_head_kv, kqv->head_dim, kqv->n_kv,
                         (const int32_t *)kqv->dev_step, fa_part_sums(part, cmax, kq->n_head),
                         (const float2 *)part, (int)cmax, cnt) != 0
               ? -1
               : 0;
}

extern "C" int kern_cuda_attn_fused(kern_ctx *ctx, const kern_args *kq, const kern_args *sm,
                                    const kern_args *kqv, int *cnt, float *part, int64_t part_floats)
{
    return fa_launch(ctx, kq, sm, kqv, cnt, part, part_floats, NULL);
}

extern "C" int kern_cuda_attn_rope_fused(kern_ctx *ctx, const kern_args *q, const kern_args *k,
                                         const float *v, int64_t v_numel, const kern_args *kq,
                                         const kern_args *sm, const kern_args *kqv, int *cnt, float *part,
                                         int64_t part_floats)
{
    /* kern_cuda_rope_store's cases whose outputs this KQ reads: q_rope as
     * its x, k_rope and v stored in its caches */
    if (!v || !kq || !kqv || !kc_rope_pair_ok(q, k, v_numel) || kq->x != q->y || q->n_head != kq->n_head ||
        k->n_head != kq->n_head_kv || q->head_dim != kq->head_dim || kq->n != 1 ||
        q->dev_step != kq->dev_step || q->pos0 != kq->pos0 || kq->n_kv <= q->pos0 || kqv->vc == NULL ||
        kq->kc == NULL)
        return 1;
    fa_rope R;
    memset(&R, 0, sizeof R);
    R.qx = q->x, R.kx = k->x, R.v = v, R.qy = q->y, R.ky = k->y;
    R.kc = (float *)kq->kc, R.vc = (float *)kqv->vc; /* the caches the rotations' stores write */
    R.log_base = log((double)q->rope_base);
    R.normal = q->rope_mode == KERN_ROPE_NORMAL;
    return fa_launch(ctx, kq, sm, kqv, cnt, part, part_floats, &R);
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
