/* attn_decode.cu: flash-decoding attention of one token that also writes
 * kq, kq_soft and kqv (attn_decode.h says why and what).
 *
 * Launch 1, ad_split_kernel: block (KV head g, chunk c) of KC_AD_CHUNK cache
 *   rows, 8 warps.
 *   a) scores of the GQ = n_head / n_head_kv query heads of group g against
 *      the chunk's K rows: 8 lanes per score, each lane the same dot slice in
 *      the same order as opt_kq_kernel (opt.cu), then the same xor-shuffle
 *      tree, so kq is bit-identical to the opt KQ; written to kq and kept in
 *      shared memory;
 *   b) per head: chunk max m_c, p_j = exp(s_j - m_c), l_c = sum p_j;
 *   c) o_c[d] = sum_j p_j v_j[d]: each warp takes every 8th row, lanes split
 *      d, every head of the group accumulates from the one V load; the 8
 *      warps' sums are added in warp order.
 *   Partials (m_c, l_c, o_c) go to scratch, indexed by the chunk count of
 *   the launch bound so both launches agree.
 * Launch 2, ad_combine_kernel: block (head h, slice y of KC_AD_SOFT scores):
 *   M = max m_c, L = sum l_c exp(m_c - M) (fixed order: thread strides then
 *   a shuffle tree, the same in every block of the head), kq_soft[j] =
 *   exp(kq[j] - M) / L over its slice; slice 0 also writes kqv = sum_c o_c
 *   exp(m_c - M) / L.
 * With dev_step the grids are sized for the bound and the blocks past the
 * device n_kv leave at once: the chunking is fixed (KC_AD_CHUNK), so the
 * bits do not depend on the bound. */
#include <math.h>

#include "attn_decode.h"
#include "cuda_internal.h"

#define AD_THREADS 256
#define AD_MAX_GQ 8    /* query heads per KV head */
#define AD_MAX_HD 128  /* head_dim at most: 4 accumulators per lane and head */
#define AD_SOFT 2048   /* scores per combine block */
static_assert(KC_AD_CHUNK == 64, "phase b gives each lane 2 of the chunk's rows");

__device__ __forceinline__ void ad_step(const int32_t *step, int *n_kv, int *pos0)
{
    if (step) {
        *n_kv = step[KERN_STEP_NKV];
        *pos0 = step[KERN_STEP_POS0];
    }
}

/* a) the scores of rows j0.. of the chunk for heads g*gq + hh, into kq and sc */
template <bool VEC>
__device__ __forceinline__ void ad_scores(float (*sc)[KC_AD_CHUNK], const float (*qs)[AD_MAX_HD], float *kq,
                                          const float *kc, int g, int gq, int nkv, int hd, int j0, int n_kv,
                                          int pos0, float scale)
{
    int sub = threadIdx.x & 7, grp = threadIdx.x >> 3;
    /* gq * KC_AD_CHUNK is a multiple of 32: whole warps run each round */
    for (int idx = grp; idx < gq * KC_AD_CHUNK; idx += AD_THREADS / 8) {
        int hh = idx / KC_AD_CHUNK, jj = idx % KC_AD_CHUNK, j = j0 + jj;
        bool live = j < n_kv && j <= pos0;
        const float *qr = qs[hh];
        float acc = 0.0f;
        if (live) {
            const float *kr = kc + ((int64_t)j * nkv + g) * hd;
            /* as opt_kq_kernel: keep this expression as it is there */
            if (VEC) {
                for (int d = 4 * sub; d < hd; d += 32) {
                    float4 kv = *(const float4 *)(kr + d);
                    acc += qr[d] * kv.x + qr[d + 1] * kv.y + qr[d + 2] * kv.z + qr[d + 3] * kv.w;
                }
            } else {
                for (int d = sub; d < hd; d += 8)
                    acc += qr[d] * kr[d];
            }
        }
        acc += __shfl_xor_sync(0xffffffffu, acc, 4);
        acc += __shfl_xor_sync(0xffffffffu, acc, 2);
        acc += __shfl_xor_sync(0xffffffffu, acc, 1);
        float s = live ? acc * scale : -INFINITY;
        if (sub == 0) {
            sc[hh][jj] = s;
            if (j < n_kv)
                kq[(int64_t)(g * gq + hh) * n_kv + j] = s;
        }
    }
}

template <bool VEC>
__global__ void __launch_bounds__(AD_THREADS)
    ad_split_kernel(float *kq, float *ml, float *po, const float *q, const float *kc, const float *vc, int nh, int nkv,
                    int hd, int n_kv, int pos0, const int32_t *step, float scale, int nch)
{
    __shared__ float qs[AD_MAX_GQ][AD_MAX_HD];                  /* [gq, hd]: the group's q rows */
    __shared__ float sc[AD_MAX_GQ][KC_AD_CHUNK];                /* [gq, chunk]: scores, then weights */
    __shared__ float red[AD_THREADS / 32][AD_MAX_GQ][AD_MAX_HD]; /* [warp, gq, hd]: V sums per warp */
    ad_step(step, &n_kv, &pos0);
    int g = blockIdx.x, c = blockIdx.y, j0 = c * KC_AD_CHUNK;
    if (j0 >= n_kv)
        return; /* past the device n_kv: the combine ignores this chunk */
    int gq = nh / nkv, lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    for (int i = threadIdx.x; i < gq * hd; i += AD_THREADS)
        qs[i / hd][i % hd] = q[(int64_t)g * gq * hd + i];
    __syncthreads();
    ad_scores<VEC>(sc, qs, kq, kc, g, gq, nkv, hd, j0, n_kv, pos0, scale);
    __syncthreads();
    /* b) warp hh: the chunk's max and sum for head hh */
    if (wid < gq) {
        float s0 = sc[wid][lane], s1 = sc[wid][lane + 32];
        float m = kc_warp_max(kc_fmax_nan(s0, s1)); /* NaN if a score is: the row NaN */
        float p0 = m == -INFINITY ? 0.0f : expf(s0 - m), p1 = m == -INFINITY ? 0.0f : expf(s1 - m);
        float l = kc_warp_sum(p0 + p1);
        sc[wid][lane] = p0;
        sc[wid][lane + 32] = p1;
        if (lane == 0) {
            int64_t at = (int64_t)(g * gq + wid) * nch + c;
            ml[2 * at] = m;
            ml[2 * at + 1] = l;
        }
    }
    __syncthreads();
    /* c) warp wid: rows j0 + wid, + 8, ...; lane: d = lane + 32 t. The V
     * loads of all its rows go out first (one memory latency, not 8). */
    const int RPW = KC_AD_CHUNK / (AD_THREADS / 32); /* rows per warp */
    int rows = n_kv - j0 < KC_AD_CHUNK ? n_kv - j0 : KC_AD_CHUNK; /* never read past row n_kv - 1 */
    float vv[RPW][AD_MAX_HD / 32];
#pragma unroll
    for (int r = 0; r < RPW; r++) {
        int jj = wid + r * (AD_THREADS / 32);
        const float *vr = vc + ((int64_t)(j0 + jj) * nkv + g) * hd;
#pragma unroll
        for (int t = 0; t < AD_MAX_HD / 32; t++)
            vv[r][t] = jj < rows && lane + 32 * t < hd ? vr[lane + 32 * t] : 0.0f;
    }
    float acc[AD_MAX_GQ][AD_MAX_HD / 32];
#pragma unroll
    for (int hh = 0; hh < AD_MAX_GQ; hh++)
#pragma unroll
        for (int t = 0; t < AD_MAX_HD / 32; t++) {
            acc[hh][t] = 0.0f;
#pragma unroll
            for (int r = 0; r < RPW; r++)
                if (hh < gq) /* rows past n_kv carry weight 0 and value 0 */
                    acc[hh][t] += sc[hh][wid + r * (AD_THREADS / 32)] * vv[r][t];
        }
#pragma unroll
    for (int hh = 0; hh < AD_MAX_GQ; hh++)
#pragma unroll
        for (int t = 0; t < AD_MAX_HD / 32; t++)
            if (hh < gq && lane + 32 * t < hd)
                red[wid][hh][lane + 32 * t] = acc[hh][t];
    __syncthreads();
    for (int i = threadIdx.x; i < gq * hd; i += AD_THREADS) {
        int hh = i / hd, d = i % hd;
        float s = 0.0f;
#pragma unroll
        for (int w = 0; w < AD_THREADS / 32; w++)
            s += red[w][hh][d];
        po[((int64_t)(g * gq + hh) * nch + c) * hd + d] = s;
    }
}

__device__ __forceinline__ float ad_block_reduce(float v, bool is_max, float *sh)
{
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    v = is_max ? kc_warp_max(v) : kc_warp_sum(v);
    __syncthreads(); /* sh may still be read from a previous reduction */
    if (lane == 0)
        sh[wid] = v;
    __syncthreads();
    v = lane < AD_THREADS / 32 ? sh[lane] : (is_max ? -INFINITY : 0.0f);
    return is_max ? kc_warp_max(v) : kc_warp_sum(v);
}

__global__ void __launch_bounds__(AD_THREADS)
    ad_combine_kernel(float *kq_soft, float *kqv, const float *kq, const float *ml, const float *po, int hd, int n_kv,
                      int pos0, const int32_t *step, int nch)
{
    extern __shared__ float wc[]; /* [nch]: exp(m_c - M) of each chunk */
    __shared__ float sh[AD_THREADS / 32];
    __shared__ float part[AD_THREADS]; /* [ng, hd]: kqv sums per chunk group */
    ad_step(step, &n_kv, &pos0);
    int h = blockIdx.x, y = blockIdx.y;
    if (y > 0 && (int64_t)y * AD_SOFT >= n_kv)
        return;
    int used = (n_kv + KC_AD_CHUNK - 1) / KC_AD_CHUNK; /* chunks launch 1 filled */
    const float *mlh = ml + (int64_t)h * nch * 2;
    float m = -INFINITY;
    for (int c = threadIdx.x; c < used; c += AD_THREADS)
        m = kc_fmax_nan(m, mlh[2 * c]);
    m = ad_block_reduce(m, true, sh);
    float l = 0.0f;
    for (int c = threadIdx.x; c < used; c += AD_THREADS) {
        float e = m == -INFINITY ? 0.0f : expf(mlh[2 * c] - m);
        wc[c] = e;
        l += mlh[2 * c + 1] * e;
    }
    l = ad_block_reduce(l, false, sh); /* its barriers also publish wc */
    float inv = m == -INFINITY ? 0.0f : 1.0f / l; /* nothing to attend to: all weights 0 */
    const float *kr = kq + (int64_t)h * n_kv;
    float *sr = kq_soft + (int64_t)h * n_kv;
    int jend = (y + 1) * AD_SOFT < n_kv ? (y + 1) * AD_SOFT : n_kv;
    for (int j = y * AD_SOFT + threadIdx.x; j < jend; j += AD_THREADS)
        sr[j] = m == -INFINITY ? 0.0f : expf(kr[j] - m) * inv;
    if (y != 0)
        return;
    /* kqv: thread = (chunk group cg, d); group cg sums chunks cg, cg + ng,
     * ...; then the groups are added in order */
    int ng = AD_THREADS / hd, cg = threadIdx.x / hd, d = threadIdx.x % hd;
    float s = 0.0f;
    if (cg < ng) {
#pragma unroll 4
        for (int c = cg; c < used; c += ng)
            s += po[((int64_t)h * nch + c) * hd + d] * wc[c];
        part[cg * hd + d] = s;
    }
    __syncthreads();
    if (cg == 0) {
        float t = 0.0f;
        for (int i = 0; i < ng; i++)
            t += part[i * hd + d];
        kqv[(int64_t)h * hd + d] = t * inv;
    }
}

static int ad_chunks(int n_kv) { return (n_kv + KC_AD_CHUNK - 1) / KC_AD_CHUNK; }

extern "C" size_t kern_cuda_attn_decode_scratch(int n_head, int head_dim, int n_kv_max)
{
    if (n_head <= 0 || head_dim <= 0 || n_kv_max <= 0)
        return 0;
    return (size_t)n_head * (size_t)ad_chunks(n_kv_max) * (size_t)(2 + head_dim) * sizeof(float);
}

extern "C" int kern_cuda_attn_decode_ok(int n_head, int n_head_kv, int head_dim)
{
    return n_head > 0 && n_head_kv > 0 && n_head % n_head_kv == 0 && n_head / n_head_kv <= AD_MAX_GQ &&
           head_dim > 0 && head_dim <= AD_MAX_HD && head_dim % 4 == 0;
}

extern "C" int kern_cuda_attn_decode(kern_ctx *ctx, const kern_attn_decode *p)
{
    if (!p || !p->q || !p->kc || !p->vc || !p->kq || !p->kq_soft || !p->kqv || !p->scratch || p->n_kv < 0 ||
        p->pos0 < 0 || !kern_cuda_attn_decode_ok(p->n_head, p->n_head_kv, p->head_dim) || !kc_aligned16(p->scratch))
        return -1;
    if (p->n_kv == 0)
        return 0;
    if (p->scratch_size < kern_cuda_attn_decode_scratch(p->n_head, p->head_dim, p->n_kv))
        return -1;
    int nch = ad_chunks(p->n_kv);
    /* room for nch floats, rounded up (memcheck saw the combine's unrolled
     * loop read up to 3 floats past an unpadded array) */
    size_t wbytes = ((size_t)nch + 4) * sizeof(float);
    if (wbytes > 48 * 1024)
        return -1;
    float *ml = (float *)p->scratch;                    /* [n_head, nch, 2]: chunk max and sum */
    float *po = ml + (size_t)p->n_head * nch * 2;       /* [n_head, nch, head_dim]: chunk V sums */
    cudaStream_t st = kc_stream(ctx);
    dim3 g1((unsigned)p->n_head_kv, (unsigned)nch);
    /* the vector path of opt_kq_kernel and its condition, for the same bits */
    if (p->head_dim % 32 == 0 && kc_aligned16(p->kc))
        ad_split_kernel<true><<<g1, AD_THREADS, 0, st>>>(p->kq, ml, po, p->q, p->kc, p->vc, p->n_head, p->n_head_kv,
                                                        p->head_dim, p->n_kv, p->pos0, p->dev_step, p->scale, nch);
    else
        ad_split_kernel<false><<<g1, AD_THREADS, 0, st>>>(p->kq, ml, po, p->q, p->kc, p->vc, p->n_head,
                                                         p->n_head_kv, p->head_dim, p->n_kv, p->pos0, p->dev_step,
                                                         p->scale, nch);
    if (kc_launch_ok())
        return -1;
    dim3 g2((unsigned)p->n_head, (unsigned)((p->n_kv + AD_SOFT - 1) / AD_SOFT));
    ad_combine_kernel<<<g2, AD_THREADS, wbytes, st>>>(p->kq_soft, p->kqv, p->kq, ml, po, p->head_dim, p->n_kv,
                                                      p->pos0, p->dev_step, nch);
    return kc_launch_ok();
}
