/* attn_prefill.cu: the opt KQ and KQV of a pass of more than one token
 * (prefill), as tiled products on the tensor cores at f32-class accuracy.
 *
 * Why: on the CUDA cores (one FMA a product, 4 x 4 results a thread) the
 * two products were 17 of a 2048-token pass's 42 ms on the Qwen2.5-0.5B
 * (H100, session 15: kq 6.1 ms, kqv 10.7): 90 GFLOP each on a 67 TFLOP/s
 * pipe. The tensor cores' TF32 MMA is 7x that, but a TF32 operand keeps
 * 11 of f32's 24 bits (about 5e-4 relative, the `tc` matmul's class).
 * So each operand is split, x = big + small with big = tf32(x) and small =
 * tf32(x - big), which keeps 22 bits, and a product is the three MMAs
 * small.big + big.small + big.big (small.small is below 2^-22 of it; the
 * split of f32 is exact where it does not underflow: |x| > 2^-113). The
 * error is then that of f32 accumulation, the same class as the CUDA-core
 * sums (test_kernels_cuda: within 2e-5 of the CPU reference, as every
 * opt op; the model tests against float64).
 *
 * Why a sum never runs long: the MMA's f32 accumulation aligns its addends
 * to the largest and truncates (matmul_split.cu), so each unit of 32 (head
 * dims for KQ, keys for KQV) starts from zero and is added to the running
 * sum in a rounding f32 add, in unit order. Deterministic: every output is
 * one fixed sequence of instructions.
 *
 * Non-finite inputs: the split turns an Inf into Inf + NaN, so an output
 * that comes out Inf or NaN is computed again, alone, as the plain chain
 * acc = fma(a, b, acc) in order (KQ: d = 0, 1, ..; KQV: j = 0, 1, .. up to
 * n_kv, a weight after the query's position 0 where CAUSAL), which gives
 * the reference's Inf or NaN. Free where there are none.
 *
 * A block: 64 query rows x 64 keys (KQ) or 64 output dims (KQV), four
 * warps of 32 x 32 (two m16 x four n8 MMA tiles), the operands staged in
 * shared memory 32 of k at a time with rows padded so that a fragment's
 * reads hit 32 distinct banks. Masked scores (key j after the query's
 * position) are -inf, as the per-row kernel writes them; a KQ tile that is
 * all masked writes them without a product. KQV sums every key below
 * n_kv, whatever the weights (a written kq_soft may hold any); a step of
 * 32 keys whose weights are all zero for the block's 64 rows (the causal
 * mask's, after softmax) and whose values are all finite is skipped: its
 * products would add exact zeros. The decode (one token) keeps opt.cu's
 * kernels, which the fast path's fusion reproduces.
 * With dev_step (a captured pass) n_kv and pos0 come from the device and
 * the grid is sized for the bound the call gives. */
#include <stdint.h>

#include "attn_prefill.h"
#include "cuda_internal.h"
#include "opt_body.h"

/* ---- what the KQ and KQV tiles share: the tile sizes, the f32 -> two-TF32
 * split, the m16n8k8 MMA, one unit of a warp's 32 x 32 sums, and a score
 * as the plain chain ---------------------------------------------------- */

#define AP_T 64 /* query rows, and keys (KQ) or output dims (KQV), a block */
#define AP_K 32 /* head dims (KQ) or keys (KQV) a step: one unit of the sums */
#define AP_THREADS 128
#define AP_LDA 36 /* a [row][k] tile's row: element (gid, tig) at bank 4 gid + tig */
#define AP_LDV 72 /* KQV's values [key][dim]: element (tig, gid) at bank 8 tig + gid */

/* f32 -> (big, small) TF32 operands: big = x rounded to 11 bits, small =
 * the rest rounded the same; big is masked so that x - big is exact */
__device__ __forceinline__ void ap_split(float x, uint32_t &big, uint32_t &small)
{
    uint32_t b, s;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(b) : "f"(x));
    b &= 0xffffe000u;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(s) : "f"(x - __uint_as_float(b)));
    big = b;
    small = s & 0xffffe000u;
}

__device__ __forceinline__ void ap_mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2])
{
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* a warp's 32 x 32 sums [m16 tile][n8 tile][fragment element]: a = 0
 * (c NULL), or a += c rounded as one f32 add each */
__device__ __forceinline__ void ap_set(float (&a)[2][4][4], const float (*c)[4][4])
{
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                a[mt][nt][e] = c ? __fadd_rn(a[mt][nt][e], c[mt][nt][e]) : 0.0f;
}
__device__ __forceinline__ void ap_zero(float (&a)[2][4][4])
{
    ap_set(a, nullptr);
}

/* One unit (AP_K of k) of a warp's 32 x 32 outputs: c from zero, then
 * acc += c. a: [row][k] (ld AP_LDA), the warp's rows from wr; b: KT (KQ's
 * keys) [n][k] (ld AP_LDA), else (KQV's values) [k][n] (ld AP_LDV), the
 * warp's columns from wc. Fragments as the PTX ISA lays out m16n8k8:
 * a (row gid | gid + 8, k tig | tig + 4), b (k tig | tig + 4, n gid),
 * c (row gid | gid + 8, n 2 tig | 2 tig + 1). */
template <bool KT>
__device__ __forceinline__ void ap_unit(float (&acc)[2][4][4], const float *a, const float *b, int wr, int wc,
                                        int gid, int tig)
{
    float c[2][4][4];
    ap_zero(c);
#pragma unroll
    for (int k = 0; k < AP_K; k += 8) {
        uint32_t ab[2][4], as[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
            const float *r0 = a + (wr + 16 * mt + gid) * AP_LDA, *r8 = r0 + 8 * AP_LDA;
            ap_split(r0[k + tig], ab[mt][0], as[mt][0]);
            ap_split(r8[k + tig], ab[mt][1], as[mt][1]);
            ap_split(r0[k + tig + 4], ab[mt][2], as[mt][2]);
            ap_split(r8[k + tig + 4], ab[mt][3], as[mt][3]);
        }
        /* one n8 tile's b at a time: fewer registers live */
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            uint32_t bb[2], bs[2];
            int col = wc + 8 * nt + gid;
            if (KT) {
                ap_split(b[col * AP_LDA + k + tig], bb[0], bs[0]);
                ap_split(b[col * AP_LDA + k + tig + 4], bb[1], bs[1]);
            } else {
                ap_split(b[(k + tig) * AP_LDV + col], bb[0], bs[0]);
                ap_split(b[(k + tig + 4) * AP_LDV + col], bb[1], bs[1]);
            }
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                ap_mma(c[mt][nt], as[mt], bb);
                ap_mma(c[mt][nt], ab[mt], bs);
                ap_mma(c[mt][nt], ab[mt], bb);
            }
        }
    }
    ap_set(acc, c);
}

/* the score of query i (row of q) and key row kr as the plain chain, for an
 * output the split form left non-finite */
static __device__ __noinline__ float ap_kq_exact(const float *qr, const float *kr, int hd)
{
    float acc = 0.0f;
    for (int d = 0; d < hd; d++)
        acc = __fmaf_rn(qr[d], kr[d], acc);
    return acc;
}

/* VEC: head_dim a multiple of 4 and q, kc 16-byte aligned (float4 loads) */
template <bool VEC>
__global__ void __launch_bounds__(AP_THREADS)
    ap_kq_kernel(float *y, const float *q, const float *kc, int64_t n, int nh, int nkv, int hd, int n_kv,
                 int pos0, const int32_t *step, float scale, int masked)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    __shared__ __align__(16) float qs[AP_T][AP_LDA], ks[AP_T][AP_LDA]; /* [row][d]: q rows, key rows */
    if (step) {
        n_kv = step[KERN_STEP_NKV];
        pos0 = step[KERN_STEP_POS0];
    }
    int64_t j0 = (int64_t)blockIdx.x * AP_T, i0 = (int64_t)blockIdx.y * AP_T;
    if (j0 >= n_kv || i0 >= n)
        return; /* launched for the bound */
    int h = (int)blockIdx.z, g = h / (nh / nkv);
    int t = threadIdx.x, lane = t & 31, warp = t >> 5, gid = lane >> 2, tig = lane & 3;
    int wr = (warp >> 1) * 32, wc = (warp & 1) * 32;
    int64_t ilast = (i0 + AP_T < n ? i0 + AP_T : n) - 1;
    float *yh = y + (int64_t)h * n * n_kv;
    if (j0 > pos0 + ilast) { /* every key after every query of the tile */
        for (int e = masked ? t : AP_T * AP_T; e < AP_T * AP_T; e += AP_THREADS) {
            int64_t i = i0 + e / AP_T, j = j0 + e % AP_T;
            if (i < n && j < n_kv)
                yh[i * n_kv + j] = -INFINITY;
        }
        return;
    }
    float acc[2][4][4];
    ap_zero(acc);
    for (int d0 = 0; d0 < hd; d0 += AP_K) {
        /* dims past hd are zeros on both sides: they add exact zeros */
        if (VEC) {
            for (int e = t; e < AP_T * AP_K / 4; e += AP_THREADS) {
                int r = e / (AP_K / 4), d = 4 * (e % (AP_K / 4)), dd = d0 + d;
                int64_t i = i0 + r, j = j0 + r;
                float4 z = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                *(float4 *)&qs[r][d] = i < n && dd < hd ? *(const float4 *)&q[(i * nh + h) * hd + dd] : z;
                *(float4 *)&ks[r][d] =
                    j < n_kv && dd < hd ? *(const float4 *)&kc[(j * nkv + g) * hd + dd] : z;
            }
        } else {
            for (int e = t; e < AP_T * AP_K; e += AP_THREADS) {
                int r = e / AP_K, d = e % AP_K, dd = d0 + d;
                int64_t i = i0 + r, j = j0 + r;
                qs[r][d] = i < n && dd < hd ? q[(i * nh + h) * hd + dd] : 0.0f;
                ks[r][d] = j < n_kv && dd < hd ? kc[(j * nkv + g) * hd + dd] : 0.0f;
            }
        }
        __syncthreads();
        ap_unit<true>(acc, &qs[0][0], &ks[0][0], wr, wc, gid, tig);
        __syncthreads();
    }
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int64_t i = i0 + wr + 16 * mt + gid + 8 * (e >> 1), j = j0 + wc + 8 * nt + 2 * tig + (e & 1);
                if (i >= n || j >= n_kv || (!masked && j > pos0 + i))
                    continue;
                float s = -INFINITY;
                if (j <= pos0 + i) {
                    float a = acc[mt][nt][e];
                    if (!isfinite(a))
                        a = ap_kq_exact(q + (i * nh + h) * hd, kc + (j * nkv + g) * hd, hd);
                    s = __fmul_rn(a, scale);
                }
                yh[i * n_kv + j] = s;
            }
}

/* KQV's loads of one step (keys j0 .. j0 + AP_K - 1) into registers: the
 * thread's weights (rows x keys, a row's keys consecutive) and values
 * (keys x dims, a key's dims consecutive); 0 past the tensors */
#define AP_PR (AP_T * AP_K / AP_THREADS)
#define AP_VV (AP_T * AP_K / AP_THREADS)
static_assert(AP_PR * AP_THREADS == AP_T * AP_K && AP_VV * AP_THREADS == AP_T * AP_K, "whole loads a thread");
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

/* output (i, d) of KQV as the plain chain over every key, for an output the
 * split form left non-finite */
template <bool CAUSAL>
static __device__ __noinline__ float ap_kqv_exact(const float *pr, const float *vc, int64_t i, int n_kv,
                                                  int nkv, int g, int hd, int d, int pos0)
{
    float acc = 0.0f;
    for (int64_t j = 0; j < n_kv; j++) {
        float w = !CAUSAL || j <= pos0 + i ? pr[j] : 0.0f;
        acc = __fmaf_rn(w, vc[(j * nkv + g) * hd + d], acc);
    }
    return acc;
}

/* The next step's weights and values are loaded into registers while this
 * step multiplies (the loads' latency, not their bytes, bounded the kernel
 * that loaded, synced, then multiplied). CAUSAL (the fused prefill
 * attention, whose weights are the opt softmax of the opt KQ's scores): the
 * weights after each query's position are not read (they are 0); the
 * values still are (a step whose values are not all finite is multiplied,
 * as always). Zero weights give the MMA exact zeros either way: the same
 * bits as without CAUSAL where the weights there are 0. */
template <bool CAUSAL>
__global__ void __launch_bounds__(AP_THREADS, 2) /* 2 blocks an SM: 246 registers (capped for 3, it spilled) */
    ap_kqv_kernel(float *y, const float *p, const float *vc, int64_t n, int nh, int nkv, int hd, int n_kv,
                  int pos0, const int32_t *step)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    __shared__ __align__(16) float ps[AP_T][AP_LDA]; /* [row][key] weights */
    __shared__ __align__(16) float vs[AP_K][AP_LDV]; /* [key][dim] values */
    if (step) {
        n_kv = step[KERN_STEP_NKV];
        pos0 = step[KERN_STEP_POS0];
    }
    int64_t i0 = (int64_t)blockIdx.x * AP_T;
    int d0 = (int)blockIdx.y * AP_T, h = (int)blockIdx.z, g = h / (nh / nkv);
    if (i0 >= n)
        return;
    int t = threadIdx.x, lane = t & 31, warp = t >> 5, gid = lane >> 2, tig = lane & 3;
    int wr = (warp >> 1) * 32, wc = (warp & 1) * 32;
    const float *ph = p + (int64_t)h * n * n_kv;
    float acc[2][4][4];
    ap_zero(acc);
    float pr[AP_PR], vr[AP_VV];
    if (n_kv > 0)
        ap_kqv_fetch<CAUSAL>(pr, vr, ph, vc, i0, 0, n, n_kv, nkv, g, hd, d0, t, pos0);
    for (int64_t j0 = 0; j0 < n_kv; j0 += AP_K) {
        int work = 0; /* a weight that is not zero, or a value that is not finite */
#pragma unroll
        for (int u = 0; u < AP_PR; u++) {
            int e = t + u * AP_THREADS;
            ps[e / AP_K][e % AP_K] = pr[u];
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
        ap_unit<false>(acc, &ps[0][0], &vs[0][0], wr, wc, gid, tig);
        __syncthreads();
    }
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int64_t i = i0 + wr + 16 * mt + gid + 8 * (e >> 1);
                int d = d0 + wc + 8 * nt + 2 * tig + (e & 1);
                if (i >= n || d >= hd)
                    continue;
                float a = acc[mt][nt][e];
                if (!isfinite(a))
                    a = ap_kqv_exact<CAUSAL>(ph + i * n_kv, vc, i, n_kv, nkv, g, hd, d, pos0);
                y[(i * nh + h) * hd + d] = a;
            }
}

/* masked: the -inf after each query's position written (0: the fused
 * attention's, which nothing reads there) */
static int ap_kq_launch(cudaStream_t st, const kern_args *a, int masked)
{
    if (kc_attn_check(a) || !a->kc || a->n < 2)
        return -1;
    if (a->n_kv == 0)
        return 0;
    int64_t gx = (a->n_kv + AP_T - 1) / AP_T, gy = (a->n + AP_T - 1) / AP_T;
    if (gx > INT32_MAX || gy > 65535 || a->n_head > 65535)
        return -1;
    dim3 grid((unsigned)gx, (unsigned)gy, (unsigned)a->n_head);
    if (a->head_dim % 4 == 0 && kc_aligned16(a->x) && kc_aligned16(a->kc))
        ap_kq_kernel<true><<<grid, AP_THREADS, 0, st>>>(a->y, a->x, a->kc, a->n, a->n_head, a->n_head_kv,
                                                        a->head_dim, a->n_kv, a->pos0, a->dev_step, a->scale,
                                                        masked);
    else
        ap_kq_kernel<false><<<grid, AP_THREADS, 0, st>>>(a->y, a->x, a->kc, a->n, a->n_head, a->n_head_kv,
                                                         a->head_dim, a->n_kv, a->pos0, a->dev_step, a->scale,
                                                         masked);
    return kc_launch_ok();
}

extern "C" int kc_attn_prefill_kq(cudaStream_t st, const kern_args *a)
{
    return ap_kq_launch(st, a, 1);
}

/* the KQV launch; CAUSAL as ap_kqv_kernel's */
template <bool CAUSAL> static int ap_kqv_launch(cudaStream_t st, const kern_args *a)
{
    if (kc_attn_check(a) || !a->vc || a->n < 2)
        return -1;
    int64_t gx = (a->n + AP_T - 1) / AP_T, gy = (a->head_dim + AP_T - 1) / AP_T;
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
 * position (twice: the chunks' pairs, the weights) and KQV reads no weight
 * after it. Nothing is written there either: not KQ's -inf, not the
 * softmax's zeros (exec owes kq and kq_soft, which the three ops compute
 * whole when something first reads them). At 2048 tokens from position 0
 * that is half of the [heads, n, n_kv] rows of scores and of weights
 * neither read nor written (at 2048 tokens, 117 MB of each a layer of the
 * Qwen2.5-0.5B). Every value that is written is computed by the same code
 * in the same order as the three ops (smw_row with lim, ap_kqv_kernel's
 * CAUSAL): the same bits (test_kernels_cuda_graph test_attn_prefill_fused).
 * (Session 17's one-kernel form, whose scores and weights never left the
 * SM, kept those bits by making each score twice and lost: 8-38% slower
 * at 512 and 2048 tokens on all four bench files, H100, session 20;
 * scripts/gpu-notes.md.) */
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
    smw_row(y + r * m, x + r * m, m, (int64_t)pos0 + r % n + 1, false, lane);
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
    if (kq->n_kv > SMW_MAX || kqv->head_dim > KQV_MAX_HD)
        return 1; /* rows a warp's 32 chunks cannot hold, or heads too wide: the three ops */
    cudaStream_t st = kc_stream(ctx);
    if (ap_kq_launch(st, kq, 0) != 0)
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
