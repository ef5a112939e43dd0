/* attn_prefill_fused.cu: kern_cuda_attn_prefill_fused, a prefill layer's
 * opt KQ, SOFTMAX and KQV with the bits of the three ops one after the
 * other. By default it runs attn_prefill.cu's three-launch form (kq and
 * kq_soft written up to each query's position); with XF_ATTN_ONE=1 it
 * runs the one kernel below, which writes kqv alone. The one kernel is
 * new in session 17 and has NOT been run on a GPU yet (no device could be
 * had): it stays behind the switch until test_attn_prefill_fused, which
 * runs both forms, has passed on one and it is measured faster.
 *
 * Why: with the three ops a 2048-token pass of the Qwen2.5-0.5B wrote and
 * read back its [heads, n, n_kv] scores and weights (kq 5.5, softmax 5.4,
 * kqv 7.0 of 35.7 ms, H200, session 16), gigabytes a pass that nothing
 * needs unless the user looks at them: exec owes kq and kq_soft, and the
 * three ops compute them whole when something first reads them.
 *
 * Why not an online softmax (flash attention): its running maximum and
 * rescaled sums add in another order, so its bits would not be the ops'.
 * Here each row's softmax is the chunked one of opt_body.h (pairs (m_c,
 * s_c) of 256-score chunks by one warp, then M and S in chunk order), so
 * the scores are made twice:
 *   pass 1: every chunk's scores into shared memory (the opt KQ's units,
 *           ap_unit: the same bits), each row's pair of the chunk
 *           (csm_chunk), then a row's (M, 1 / S) (smw_mi);
 *   pass 2: every chunk's scores again, their weights in place
 *           (csm_weight, 0 past the query's position: what the softmax
 *           writes there), and the chunk's 8 steps of 32 keys into the kqv
 *           sums as the opt KQV does them (ap_unit; a step whose weights
 *           are all 0 for the block's 64 rows and whose values are all
 *           finite is skipped, as there), over every key below n_kv (the
 *           values past every query's position are still read: 0 * NaN
 *           makes NaN as in the ops);
 *   pass 3, only where an output came out Inf or NaN (an Inf or NaN among
 *           the inputs): the weights once more and, for those outputs, the
 *           plain chain over every key that the opt KQV's fallback runs
 *           (acc = fma(w_j, v_j, acc), j = 0, 1, ..).
 * The products run twice on the tensor cores; nothing of [n, n_kv] leaves
 * the SM.
 *
 * A block: 64 queries (the opt KQV's row tile, so its step skips are the
 * same) of one head; DS = 1 (head dims up to 64: 4 warps) or 2 (up to
 * 128: 8 warps, the kqv sums of 64 dims each by 4). A score round is 64 x
 * 64 DS keys, a warp 32 x 32; the heaviest tiles (the last queries) are
 * launched first. Deterministic: every value is one fixed sequence of
 * instructions, whatever the block count. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attn_prefill.h"
#include "attn_prefill_body.h"
#include "cuda_internal.h"
#include "kernels_cuda.h"
#include "opt_body.h"

#define AF_LDS (KQV_CH + 4)        /* a chunk's row in shared memory: (gid, tig) at bank 4 gid + tig */
#define AF_CMAX (SMW_MAX / KQV_CH) /* chunks a row at most */

template <int DS> struct af_smem {
    float qs[AP_T][64 * DS + 4]; /* [row][d] the block's queries, 0 past hd and n */
    union {
        float ks[64 * DS][AP_LDA];  /* [key][d] a score round's keys, one unit of dims */
        float vs[DS][AP_K][AP_LDV]; /* [slice][key][dim] a kqv step's values */
    } u;
    float sc[AP_T][AF_LDS];     /* [row][key] a chunk's scores, then its weights */
    float2 pair[AP_T][AF_CMAX]; /* [row][chunk] (m_c, s_c) */
    float2 mi[AP_T];            /* [row] (M, 1 / S) */
};

/* what every pass of a block knows */
struct af_blk {
    const float *q, *kc, *vc;
    int64_t n, i0;
    int nh, nkv, g, h, hd, n_kv, pos0;
    float scale;
    int t, warp, gid, tig;
};

/* keys a row of the block attends to: [0, lim) */
__device__ __forceinline__ int64_t af_lim(const af_blk &B, int64_t i)
{
    int64_t l = B.pos0 + i + 1;
    return l < B.n_kv ? l : B.n_kv;
}

/* this thread's share of keys [j0, j0 + 64 DS) x dims [d0, d0 + 32) */
#define AF_KV (64 * AP_K / 128 / 4) /* float4 a thread */
template <int DS, bool VEC>
__device__ __forceinline__ void af_kload(float4 (&kr)[AF_KV], const af_blk &B, int64_t j0, int d0)
{
#pragma unroll
    for (int u = 0; u < AF_KV; u++) {
        int e = B.t + u * 128 * DS, r = e / (AP_K / 4), d = 4 * (e % (AP_K / 4)), dd = d0 + d;
        int64_t j = j0 + r;
        const float *p = B.kc + (j * B.nkv + B.g) * B.hd + dd;
        if (VEC) {
            kr[u] = j < B.n_kv && dd < B.hd ? *(const float4 *)p : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        } else {
            bool ok = j < B.n_kv;
            kr[u].x = ok && dd < B.hd ? p[0] : 0.0f;
            kr[u].y = ok && dd + 1 < B.hd ? p[1] : 0.0f;
            kr[u].z = ok && dd + 2 < B.hd ? p[2] : 0.0f;
            kr[u].w = ok && dd + 3 < B.hd ? p[3] : 0.0f;
        }
    }
}

/* The scores of keys [j0, j0 + 64 DS) for the block's rows into
 * S.sc[row][jc + key]: the opt KQ's (ap_kq_kernel: units of 32 dims in
 * order, a non-finite sum again as the plain chain, times scale; -inf
 * past the query's position). Warp w: rows 32 (w / 2 % 2), keys 32 (w %
 * 2) + 64 (w / 4). Starts and ends at a barrier of the block. Not
 * inlined: inlined beside pass 2's kqv sums and value loads it pushed the
 * kernel past 255 registers (ptxas spilled ~500 bytes); as a call, the
 * sums live in the caller's frame while it runs, once a round. */
template <int DS, bool VEC>
__device__ __noinline__ void af_scores(af_smem<DS> &S, const af_blk &B, int64_t j0, int jc)
{
    int wr = ((B.warp >> 1) & 1) * 32, wc = (B.warp & 1) * 32 + (B.warp >> 2) * 64;
    float acc[2][4][4];
    ap_zero(acc);
    float4 kr[AF_KV];
    af_kload<DS, VEC>(kr, B, j0, 0);
    for (int d0 = 0; d0 < B.hd; d0 += AP_K) {
#pragma unroll
        for (int u = 0; u < AF_KV; u++) {
            int e = B.t + u * 128 * DS;
            *(float4 *)&S.u.ks[e / (AP_K / 4)][4 * (e % (AP_K / 4))] = kr[u];
        }
        __syncthreads();
        if (d0 + AP_K < B.hd) /* the next unit's keys in flight meanwhile */
            af_kload<DS, VEC>(kr, B, j0, d0 + AP_K);
        ap_unit<true, 64 * DS + 4>(acc, &S.qs[0][d0], &S.u.ks[0][0], wr, wc, B.gid, B.tig);
        __syncthreads();
    }
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int r = wr + 16 * mt + B.gid + 8 * (e >> 1), c = wc + 8 * nt + 2 * B.tig + (e & 1);
                int64_t i = B.i0 + r, j = j0 + c;
                float s = -INFINITY;
                if (i < B.n && j < B.n_kv && j <= B.pos0 + i) {
                    float a = acc[mt][nt][e];
                    if (!isfinite(a))
                        a = ap_kq_exact(B.q + (i * B.nh + B.h) * B.hd, B.kc + (j * B.nkv + B.g) * B.hd, B.hd);
                    s = __fmul_rn(a, B.scale);
                }
                S.sc[r][jc + c] = s;
            }
    __syncthreads();
}

/* Chunk [cj0, cj0 + KQV_CH)'s weights into S.sc (S.mi known): its scores
 * again where a row attends to one of its keys (jmax: the block's first
 * key that none does), then csm_weight below each row's lim and 0 from
 * it, as the softmax writes them; a chunk past jmax is all 0 (zeroed: S.sc
 * already is). Ends at a barrier. */
template <int DS, bool VEC>
__device__ __forceinline__ void af_weights(af_smem<DS> &S, const af_blk &B, int64_t cj0, int64_t jmax,
                                           bool &zeroed)
{
    if (cj0 < jmax) {
        for (int jr = 0; jr < KQV_CH && cj0 + jr < jmax; jr += 64 * DS)
            af_scores<DS, VEC>(S, B, cj0 + jr, jr);
        for (int e = B.t; e < AP_T * KQV_CH; e += 128 * DS) {
            int r = e / KQV_CH, jj = e % KQV_CH;
            int64_t i = B.i0 + r;
            S.sc[r][jj] = i < B.n && cj0 + jj < af_lim(B, i) ? csm_weight(S.sc[r][jj], S.mi[r]) : 0.0f;
        }
        zeroed = false;
    } else if (!zeroed) {
        for (int e = B.t; e < AP_T * KQV_CH; e += 128 * DS)
            S.sc[e / KQV_CH][e % KQV_CH] = 0.0f;
        zeroed = true;
    }
    __syncthreads();
}

/* this thread's share of a kqv step's values: keys [j0, j0 + 32) x the
 * DS slices' 64 dims, 0 past n_kv and hd */
#define AF_VV (AP_K * 64 / 128)
template <int DS> __device__ __forceinline__ void af_vload(float (&vr)[AF_VV], const af_blk &B, int64_t j0)
{
#pragma unroll
    for (int u = 0; u < AF_VV; u++) {
        int e = B.t + u * 128 * DS, sl = e / (AP_K * 64), k = e / 64 % AP_K, d = 64 * sl + e % 64;
        int64_t j = j0 + k;
        vr[u] = j < B.n_kv && d < B.hd ? B.vc[(j * B.nkv + B.g) * B.hd + d] : 0.0f;
    }
}

/* Pass 3: the outputs in `bad` (bit mt * 16 + nt * 4 + e of this
 * thread's kqv sums) as the opt KQV's fallback makes them, into y: the
 * chain over every key, a = fma(w_j, v_j, a), j = 0, 1, .., n_kv - 1, w_j
 * the weight (0 past the query's position). Every thread of the block
 * runs it (the weights are made by all). */
template <int DS, bool VEC>
__device__ __noinline__ void af_exact(af_smem<DS> &S, const af_blk &B, float *y, unsigned bad, int64_t jmax)
{
    int wr = ((B.warp >> 1) & 1) * 32, dc = (B.warp >> 2) * 64 + (B.warp & 1) * 32;
    float a[32]; /* [bit] the chains */
    for (int x = 0; x < 32; x++)
        a[x] = 0.0f;
    bool zeroed = false;
    for (int64_t cj0 = 0; cj0 < B.n_kv; cj0 += KQV_CH) {
        af_weights<DS, VEC>(S, B, cj0, jmax, zeroed);
        int len = (int)(B.n_kv - cj0 < KQV_CH ? B.n_kv - cj0 : KQV_CH);
        for (int x = 0; x < 32; x++) {
            if (!(bad >> x & 1))
                continue;
            int mt = x >> 4, nt = (x >> 2) & 3, e = x & 3;
            int r = wr + 16 * mt + B.gid + 8 * (e >> 1), d = dc + 8 * nt + 2 * B.tig + (e & 1);
            for (int jj = 0; jj < len; jj++)
                a[x] = __fmaf_rn(S.sc[r][jj], B.vc[((cj0 + jj) * B.nkv + B.g) * B.hd + d], a[x]);
        }
        __syncthreads(); /* S.sc is the next chunk's */
    }
    for (int x = 0; x < 32; x++)
        if (bad >> x & 1) {
            int mt = x >> 4, nt = (x >> 2) & 3, e = x & 3;
            int64_t i = B.i0 + wr + 16 * mt + B.gid + 8 * (e >> 1);
            int d = dc + 8 * nt + 2 * B.tig + (e & 1);
            y[(i * B.nh + B.h) * B.hd + d] = a[x];
        }
}

template <int DS, bool VEC>
__global__ void __launch_bounds__(128 * DS, 2 / DS)
    af_kernel(float *y, const float *q, const float *kc, const float *vc, int64_t n, int nh, int nkv, int hd,
              int n_kv, int pos0, const int32_t *step, float scale)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    extern __shared__ __align__(16) unsigned char af_raw[];
    af_smem<DS> &S = *(af_smem<DS> *)af_raw;
    if (step) {
        n_kv = step[KERN_STEP_NKV];
        pos0 = step[KERN_STEP_POS0];
    }
    /* blockIdx.x the head, blockIdx.y the query tile from the last */
    int64_t i0 = (int64_t)(gridDim.y - 1 - blockIdx.y) * AP_T;
    if (i0 >= n || n_kv <= 0 || n_kv > SMW_MAX)
        return; /* launched for the bound; n_kv: the launch checked the bound it was given */
    af_blk B;
    B.q = q, B.kc = kc, B.vc = vc, B.n = n, B.i0 = i0, B.nh = nh, B.nkv = nkv, B.h = (int)blockIdx.x;
    B.g = B.h / (nh / nkv), B.hd = hd, B.n_kv = n_kv, B.pos0 = pos0, B.scale = scale;
    B.t = threadIdx.x, B.warp = B.t >> 5, B.gid = (B.t & 31) >> 2, B.tig = B.t & 3;
    int lane = B.t & 31;
    const int NW = 4 * DS;
    int64_t ilast = (i0 + AP_T < n ? i0 + AP_T : n) - 1;
    int64_t jmax = af_lim(B, ilast); /* the first key that no row of the block attends to */
    for (int e = B.t; e < AP_T * 64 * DS; e += 128 * DS) {
        int r = e / (64 * DS), d = e % (64 * DS);
        int64_t i = i0 + r;
        S.qs[r][d] = i < n && d < hd ? q[(i * nh + B.h) * hd + d] : 0.0f;
    }
    __syncthreads();
    /* pass 1: each chunk's pair a row, then the rows' (M, 1 / S) */
    for (int64_t cj0 = 0; cj0 < jmax; cj0 += KQV_CH) {
        for (int jr = 0; jr < KQV_CH && cj0 + jr < jmax; jr += 64 * DS)
            af_scores<DS, VEC>(S, B, cj0 + jr, jr);
        for (int r = B.warp; r < AP_T && i0 + r < n; r += NW) {
            int64_t lim = af_lim(B, i0 + r);
            if (lim <= cj0)
                continue; /* (-inf, 0): never read (smw_mi takes the row's first nc) */
            float2 s2 = csm_chunk<false>(&S.sc[r][0], (int)(lim - cj0 < KQV_CH ? lim - cj0 : KQV_CH), lane);
            if (lane == 0)
                S.pair[r][cj0 / KQV_CH] = s2;
        }
        __syncthreads(); /* S.sc is the next chunk's */
    }
    for (int r = B.warp; r < AP_T && i0 + r < n; r += NW) {
        int nc = (int)((af_lim(B, i0 + r) + KQV_CH - 1) / KQV_CH);
        float2 mi = smw_mi(lane < nc ? S.pair[r][lane] : make_float2(-INFINITY, 0.0f), nc, lane);
        if (lane == 0)
            S.mi[r] = mi;
    }
    /* (S.mi is read after af_scores' barriers) */
    /* pass 2: the kqv sums, warp w: rows wr, dims dc */
    int wr = ((B.warp >> 1) & 1) * 32, sl = B.warp >> 2, dc = 64 * sl + (B.warp & 1) * 32;
    float acc[2][4][4];
    ap_zero(acc);
    bool zeroed = false;
    for (int64_t cj0 = 0; cj0 < n_kv; cj0 += KQV_CH) {
        af_weights<DS, VEC>(S, B, cj0, jmax, zeroed);
        float vr[AF_VV];
        af_vload<DS>(vr, B, cj0);
        for (int s = 0; s < KQV_CH && cj0 + s < n_kv; s += AP_K) {
            int64_t j0 = cj0 + s;
            int wz = 0, nf0 = 0, nf1 = 0; /* a weight not 0; a value not finite in slice 0, 1 */
            for (int e = B.t; e < AP_T * AP_K; e += 128 * DS)
                wz |= S.sc[e / AP_K][s + e % AP_K] != 0.0f;
#pragma unroll
            for (int u = 0; u < AF_VV; u++) {
                int e = B.t + u * 128 * DS, v = e / (AP_K * 64);
                S.u.vs[v][e / 64 % AP_K][e % 64] = vr[u];
                if (v == 0)
                    nf0 |= !isfinite(vr[u]);
                else
                    nf1 |= !isfinite(vr[u]);
            }
            int any0 = __syncthreads_or(wz | nf0), any1 = DS > 1 ? __syncthreads_or(wz | nf1) : 0;
            if (s + AP_K < KQV_CH && j0 + AP_K < n_kv) /* the next step's values in flight meanwhile */
                af_vload<DS>(vr, B, j0 + AP_K);
            if (sl == 0 ? any0 : any1)
                ap_unit<false, AF_LDS>(acc, &S.sc[0][s], &S.u.vs[sl][0][0], wr, dc - 64 * sl, B.gid, B.tig);
            __syncthreads(); /* S.u.vs is the next step's */
        }
    }
    /* the outputs; one the split form left non-finite is pass 3's */
    unsigned bad = 0;
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int64_t i = i0 + wr + 16 * mt + B.gid + 8 * (e >> 1);
                int d = dc + 8 * nt + 2 * B.tig + (e & 1);
                if (i >= n || d >= hd)
                    continue;
                if (isfinite(acc[mt][nt][e]))
                    y[(i * nh + B.h) * hd + d] = acc[mt][nt][e];
                else
                    bad |= 1u << (mt * 16 + nt * 4 + e);
            }
    if (__syncthreads_or(bad != 0))
        af_exact<DS, VEC>(S, B, y, bad, jmax);
}

template <int DS, bool VEC> static int af_launch(cudaStream_t st, const kern_args *kq, const kern_args *kqv)
{
    static bool attr_set = false; /* per instantiation: the attribute is the function's */
    size_t smem = sizeof(af_smem<DS>);
    if (!attr_set) {
        if (cudaFuncSetAttribute(af_kernel<DS, VEC>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)smem) != cudaSuccess) {
            cudaGetLastError();
            return -1;
        }
        attr_set = true;
    }
    dim3 grid((unsigned)kq->n_head, (unsigned)((kq->n + AP_T - 1) / AP_T));
    af_kernel<DS, VEC><<<grid, 128 * DS, smem, st>>>(kqv->y, kq->x, kq->kc, kqv->vc, kq->n, kq->n_head,
                                                     kq->n_head_kv, kq->head_dim, kq->n_kv, kq->pos0,
                                                     kq->dev_step, kq->scale);
    return kc_launch_ok();
}

extern "C" int kern_cuda_attn_prefill_fused(kern_ctx *ctx, const kern_args *kq, const kern_args *sm,
                                            const kern_args *kqv)
{
    if (kc_attn_check(kq) || kc_attn_check(kqv) || kq->n < 2 || !kq->kc || !kqv->vc || !sm->x || !sm->y ||
        sm->x != kq->y || kqv->x != sm->y || kqv->n != kq->n || kqv->n_head != kq->n_head ||
        kqv->n_head_kv != kq->n_head_kv || kqv->head_dim != kq->head_dim || kqv->n_kv != kq->n_kv ||
        kqv->pos0 != kq->pos0 || kqv->dev_step != kq->dev_step || sm->m != kq->n_kv ||
        sm->n != (int64_t)kq->n_head * kq->n || kq->n_kv <= 0)
        return -1;
    if (kq->n_kv > SMW_MAX)
        return 1; /* rows a warp's 32 chunks cannot hold: the three ops */
    cudaStream_t st = kc_stream(ctx);
    /* read at each call (tests switch it between calls) */
    const char *one = getenv("XF_ATTN_ONE");
    if (!one || strcmp(one, "1") != 0) {
        if (kqv->head_dim > KQV_MAX_HD)
            return 1;
        return kc_attn_prefill_fused3(st, kq, sm, kqv);
    }
    if (kq->head_dim > 128)
        return 1; /* heads of more than two 64-dim slices: the three ops */
    if ((kq->n + AP_T - 1) / AP_T > 65535 || kq->n_head > INT32_MAX)
        return -1;
    bool vec = kq->head_dim % 4 == 0 && kc_aligned16(kq->kc);
    if (kq->head_dim <= 64)
        return vec ? af_launch<1, true>(st, kq, kqv) : af_launch<1, false>(st, kq, kqv);
    return vec ? af_launch<2, true>(st, kq, kqv) : af_launch<2, false>(st, kq, kqv);
}
