/* gemv_body: the device code of the one-token matrix-vector products that
 * more than one launch shares, so that a fused launch computes each output
 * with the very instructions of the kernel it stands in for (same lanes per
 * row, same sums in the same order: the same bits):
 *  - gemv.cu's staged kernel (gv_*: weight rows copied to shared memory,
 *    decoded there), whose whole per-block body is gv_body;
 *  - matmul.cu's matrix-vector kernel for one row of x (mv_dot1: one lane
 *    group per weight row, decode on the fly);
 *  - the plans: which of the two the opt MATMUL runs for a [m, k] matrix of
 *    one token, and how it is cut (kc_mv_plan), decided in one place.
 * Included only by .cu files. */
#ifndef XF_GEMV_BODY_H
#define XF_GEMV_BODY_H

#include "cuda_internal.h"

#define GV_THREADS 256
#define GV_TILE 16384            /* bytes of weight rows one block stages */
#define GV_SMEM_MAX (48 * 1024)  /* a row longer than this: the old kernel */
#define GV_MAX_R 32              /* rows per block at most */
#define GV_BLOCKS_PER_SM 4       /* R shrinks until the grid has this many blocks per SM */
#define MV_THREADS 128           /* threads of a block of the matrix-vector kernel */

/* ---- decode: 8 weights of piece p (elements 8p..8p+7) dotted with x ------ */

/* the float value q - off, for 0 <= q < 2^22 (exact: 2^23 + q is a float) */
__device__ __forceinline__ float gv_q(unsigned q, float off) { return __int_as_float(0x4B000000u | q) - (8388608.0f + off); }

/* How x (the activation row) is loaded: through the read-only path in a
 * kernel of its own (x was written by a kernel before it); the decode
 * megakernel (decode_mega.cu), whose earlier phases write x in the same
 * launch, defines GV_LDX as a plain load before it includes this file. */
#ifndef GV_LDX
#define GV_LDX(p) __ldg(p)
#endif

/* xv[8] = x[8p .. 8p+7]; x 16-byte aligned */
__device__ __forceinline__ void gv_x8(const float *x, int p, float *xv)
{
    float4 a = GV_LDX((const float4 *)x + 2 * p), b = GV_LDX((const float4 *)x + 2 * p + 1);
    xv[0] = a.x, xv[1] = a.y, xv[2] = a.z, xv[3] = a.w;
    xv[4] = b.x, xv[5] = b.y, xv[6] = b.z, xv[7] = b.w;
}

template <int T> struct gv_is_block {
    static const bool value = T == XF_TYPE_Q8_0 || T == XF_TYPE_Q4_0 || T == XF_TYPE_Q4_1 || T == XF_TYPE_Q5_0 ||
                              T == XF_TYPE_Q5_1 || T == XF_TYPE_Q4_K || T == XF_TYPE_Q5_K || T == XF_TYPE_Q6_K ||
                              T == XF_TYPE_MXFP4;
};

/* Piece p of a row (in shared memory, 2-byte aligned but for MXFP4) = unit
 * u = p / 4 (a 32-element block, or sub-block u % 8 of super-block u / 8),
 * part s = p % 4. The layouts are those of xq_elem / xq_piece8 in
 * cuda_internal.h. */
template <int TYPE> __device__ __forceinline__ float gv_piece(const uint8_t *row, int p, const float *xv)
{
    int u = p >> 2, s = p & 3;
    float acc = 0.0f, sx = 0.0f;
    if (TYPE == XF_TYPE_MXFP4) {
        /* 17-byte blocks: byte loads; |kvalue| by the exponent trick, the
         * sign bit (code bit 3) moved to the float's sign */
        const uint8_t *b = row + u * 17;
        const uint8_t *qs = b + 1 + 8 * (s & 1);
        int sh = (s >> 1) * 4;
#pragma unroll
        for (int w = 0; w < 8; w++) {
            unsigned c = (qs[w] >> sh) & 0xFu;
            float v = __uint_as_float(__float_as_uint(gv_q(xq_mx_mag(c), 0.0f)) | ((c & 8u) << 28));
            acc = fmaf(v, xv[w], acc);
        }
        return xq_e8m0_half(b[0]) * acc;
    } else if (TYPE == XF_TYPE_Q8_0) {
        const uint8_t *b = row + u * 34;
#pragma unroll
        for (int w = 0; w < 4; w++) {
            unsigned v = xq_ld16(b + 2 + 8 * s + 2 * w);
            /* int8 q: (byte ^ 0x80) = q + 128 */
            acc = fmaf(gv_q((v & 0xFFu) ^ 0x80u, 128.0f), xv[2 * w], acc);
            acc = fmaf(gv_q((v >> 8) ^ 0x80u, 128.0f), xv[2 * w + 1], acc);
        }
        return xq_half(b) * acc;
    } else if (TYPE == XF_TYPE_Q4_0 || TYPE == XF_TYPE_Q4_1) {
        const bool min = TYPE == XF_TYPE_Q4_1;
        const uint8_t *b = row + u * (min ? 20 : 18);
        const uint8_t *qs = b + (min ? 4 : 2) + 8 * (s & 1);
        int sh = (s >> 1) * 4; /* elements 16..31 are the high nibbles */
#pragma unroll
        for (int w = 0; w < 4; w++) {
            unsigned v = xq_ld16(qs + 2 * w);
            acc = fmaf(gv_q((v >> sh) & 0xFu, min ? 0.0f : 8.0f), xv[2 * w], acc);
            acc = fmaf(gv_q((v >> (8 + sh)) & 0xFu, min ? 0.0f : 8.0f), xv[2 * w + 1], acc);
            if (min)
                sx += xv[2 * w] + xv[2 * w + 1];
        }
        return min ? fmaf(xq_half(b), acc, xq_half(b + 2) * sx) : xq_half(b) * acc;
    } else if (TYPE == XF_TYPE_Q5_0 || TYPE == XF_TYPE_Q5_1) {
        const bool min = TYPE == XF_TYPE_Q5_1;
        const int ho = min ? 4 : 2;
        const uint8_t *b = row + u * (min ? 24 : 22);
        uint32_t qh = xq_ld32e(b + ho) >> (8 * s); /* bit i: the 5th bit of element 8s + i */
        const uint8_t *qs = b + ho + 4 + 8 * (s & 1);
        int sh = (s >> 1) * 4;
#pragma unroll
        for (int w = 0; w < 4; w++) {
            unsigned v = xq_ld16(qs + 2 * w);
            unsigned q0 = ((v >> sh) & 0xFu) | (((qh >> (2 * w)) & 1u) << 4);
            unsigned q1 = ((v >> (8 + sh)) & 0xFu) | (((qh >> (2 * w + 1)) & 1u) << 4);
            acc = fmaf(gv_q(q0, min ? 0.0f : 16.0f), xv[2 * w], acc);
            acc = fmaf(gv_q(q1, min ? 0.0f : 16.0f), xv[2 * w + 1], acc);
            if (min)
                sx += xv[2 * w] + xv[2 * w + 1];
        }
        return min ? fmaf(xq_half(b), acc, xq_half(b + 2) * sx) : xq_half(b) * acc;
    } else if (TYPE == XF_TYPE_Q4_K || TYPE == XF_TYPE_Q5_K) {
        const bool five = TYPE == XF_TYPE_Q5_K;
        const uint8_t *b = row + (u >> 3) * (five ? 176 : 144);
        int j = u & 7, sc, mn;
        xq_scale_min_k4(j, b + 4, &sc, &mn);
        const uint8_t *qs = b + (five ? 48 : 16) + (j >> 1) * 32 + 8 * s;
        int sh = (j & 1) * 4;
#pragma unroll
        for (int w = 0; w < 4; w++) {
            unsigned v = xq_ld16(qs + 2 * w);
            unsigned q0 = (v >> sh) & 0xFu, q1 = (v >> (8 + sh)) & 0xFu;
            if (five) {
                unsigned h = xq_ld16(b + 16 + 8 * s + 2 * w);
                q0 |= ((h >> j) & 1u) << 4;
                q1 |= ((h >> (8 + j)) & 1u) << 4;
            }
            acc = fmaf(gv_q(q0, 0.0f), xv[2 * w], acc);
            acc = fmaf(gv_q(q1, 0.0f), xv[2 * w + 1], acc);
            sx += xv[2 * w] + xv[2 * w + 1];
        }
        /* w = d*sc*q - dmin*mn: sum = d*sc * sum(q x) - dmin*mn * sum(x) */
        float d1 = xq_half(b) * gv_q((unsigned)sc, 0.0f), m1 = xq_half(b + 2) * gv_q((unsigned)mn, 0.0f);
        return fmaf(d1, acc, -(m1 * sx));
    } else if (TYPE == XF_TYPE_Q6_K) {
        const uint8_t *b = row + (u >> 3) * 210;
        int j = u & 7, half = j >> 2, part = j & 3;
        const uint8_t *ql = b + half * 64 + (part & 1) * 32 + 8 * s;
        const uint8_t *qh = b + 128 + half * 32 + 8 * s;
        int shl = (part >> 1) * 4, shh = 2 * part;
#pragma unroll
        for (int w = 0; w < 4; w++) {
            unsigned vl = xq_ld16(ql + 2 * w), vh = xq_ld16(qh + 2 * w);
            unsigned q0 = ((vl >> shl) & 0xFu) | (((vh >> shh) & 3u) << 4);
            unsigned q1 = ((vl >> (8 + shl)) & 0xFu) | (((vh >> (8 + shh)) & 3u) << 4);
            acc = fmaf(gv_q(q0, 32.0f), xv[2 * w], acc);
            acc = fmaf(gv_q(q1, 32.0f), xv[2 * w + 1], acc);
        }
        float d = xq_half(b + 208) * (float)(int8_t)b[192 + half * 8 + part * 2 + (s >> 1)];
        return d * acc;
    }
    return 0.0f; /* float types never launch this kernel */
}

/* the partial dot of one staged row: pieces t, t+G, ... */
template <int WT, int G> __device__ __forceinline__ float gv_row(const uint8_t *row, const float *x, int pieces, int t)
{
    float acc = 0.0f;
#pragma unroll 4
    for (int p = t; p < pieces; p += G) {
        float xv[8];
        gv_x8(x, p, xv);
        acc += gv_piece<WT>(row, p, xv);
    }
    return acc;
}

__device__ __forceinline__ void gv_store(float *y, float *act, const float *bias, int64_t r, float s)
{
    float v = bias ? s + bias[r] : s;
    y[r] = v;
    if (act) /* the fast path's GELU of this output, fused */
        act[r] = kc_gelu(v);
}

/* Starts copying bytes [g0, g0 + len) of the matrix [w, wend) to shared
 * memory from the 16-byte boundary at or below g0 (cp.async, not waited
 * for; the pieces at the matrix's ends are stored at once); returns where
 * g0 lands. */
__device__ __forceinline__ const uint8_t *gv_stage_issue(uint4 *tile, const uint8_t *g0, uint64_t len,
                                                         const uint8_t *w, const uint8_t *wend)
{
    const uint8_t *a0 = (const uint8_t *)((uintptr_t)g0 & ~(uintptr_t)15);
    int nch = (int)((g0 + len - a0 + 15) >> 4);
    unsigned sbase = (unsigned)__cvta_generic_to_shared(tile);
    for (int c = threadIdx.x; c < nch; c += GV_THREADS) {
        const uint8_t *src = a0 + 16 * (uint64_t)c;
        if (src >= w && src + 16 <= wend) {
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(sbase + 16u * c), "l"(src) : "memory");
        } else {
            /* the first or last piece of an unaligned matrix: only the bytes
             * inside it, one at a time (an MXFP4 matrix may end at an odd
             * address) */
            uint8_t *dst = (uint8_t *)(tile + c);
#pragma unroll
            for (int h = 0; h < 16; h++) {
                const uint8_t *q = src + h;
                dst[h] = q >= w && q < wend ? *q : (uint8_t)0;
            }
        }
    }
    return (const uint8_t *)tile + (g0 - a0);
}

/* gv_stage_issue, then the wait: the rows are in shared memory */
__device__ __forceinline__ const uint8_t *gv_stage(uint4 *tile, const uint8_t *g0, uint64_t len, const uint8_t *w,
                                                   const uint8_t *wend)
{
    const uint8_t *at = gv_stage_issue(tile, g0, len, w, wend);
    /* the weights are on their way: now the previous kernel must be done
     * (programmatic dependent launch; nothing without it) before x is read */
    KC_PDL_WAIT();
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    __syncthreads();
    return at;
}


/* The products of rows r0 .. r0 + rows - 1, staged at tile (gv_body's
 * second half; the decode megakernel stages them itself, a unit ahead). */
template <int WT, int G, class ST>
__device__ __forceinline__ void gv_dots(const uint8_t *tile, float *red, const float *x, uint64_t rb, int k,
                                        int64_t r0, int rows, ST store)
{
    const int ng = GV_THREADS / G;
    int grp = threadIdx.x / G, t = threadIdx.x % G, pieces = k >> 3;
    if (G == 32) {
        for (int i = grp; i < rows; i += ng) {
            float s = kc_warp_sum(gv_row<WT, G>(tile + (uint64_t)i * rb, x, pieces, t));
            if (t == 0)
                store(r0 + i, s);
        }
    } else {
        bool live = grp < rows;
        float s = kc_warp_sum(live ? gv_row<WT, G>(tile + (uint64_t)grp * rb, x, pieces, t) : 0.0f);
        if ((threadIdx.x & 31) == 0)
            red[threadIdx.x >> 5] = s;
        __syncthreads();
        if (live && t == 0) {
            float tot = 0.0f;
#pragma unroll
            for (int i = 0; i < G / 32; i++)
                tot += red[grp * (G / 32) + i];
            store(r0 + grp, tot);
        }
    }
}

/* The work of block b of the staged kernel over rows [b*R, b*R + R) (fewer
 * in the last block); G: lanes per row, 32 when R >= 8 (each warp takes
 * rows w, w+8, ...), else 256 / R (one row per group, warps combined in
 * order). store(r, s) receives each row's sum, once, from the same thread
 * for the same (R, G, b, row): a fused launch that runs two matrices of one
 * plan through one block in turn finds its first matrix's output where the
 * same thread wrote it. tile: dynamic shared memory of R * rb + 32 bytes;
 * red: 8 floats of shared memory. All 256 threads must call it. */
template <int WT, int G, class ST>
__device__ __forceinline__ void gv_body(uint4 *tile_sm, float *red, const float *x, const uint8_t *w, uint64_t rb,
                                        int k, int64_t m, int R, int64_t b, ST store)
{
    int64_t r0 = b * R;
    int rows = (int)(m - r0 < R ? m - r0 : R);
    const uint8_t *tile = gv_stage(tile_sm, w + (uint64_t)r0 * rb, (uint64_t)rows * rb, w, w + (uint64_t)m * rb);
    gv_dots<WT, G>(tile, red, x, rb, k, r0, rows, store);
}

/* Before KC_PDL_WAIT in a kernel of the direct plan: the bytes of weight
 * rows [r0, r0 + rows) of w (rb bytes each), one 128-byte line per thread
 * of nt, asked into L2 so that the loads after the wait find them there. */
__device__ __forceinline__ void mv_prefetch(const uint8_t *w, uint64_t rb, int64_t r0, int64_t rows, int64_t m,
                                            int t, int nt)
{
    if (r0 >= m)
        return;
    if (r0 + rows > m)
        rows = m - r0;
    const uint8_t *a = w + (uint64_t)r0 * rb;
    uint64_t span = (uint64_t)rows * rb;
    for (uint64_t o = (uint64_t)t * 128; o < span; o += (uint64_t)nt * 128)
        asm volatile("prefetch.global.L2 [%0];" ::"l"(a + o));
}

/* The dot of one weight row with one row of x (16-byte aligned, k a
 * multiple of 8, the row readable by xq_load8) by a group of lpr lanes (sub:
 * this lane's index in it), reduced over the group: every lane of the group
 * returns it. A group past the last row (live 0) still joins the shuffles.
 * matmul.cu's mv_kernel runs exactly this for one row of x. */
template <int WT>
__device__ __forceinline__ float mv_dot1(const uint8_t *row, const float *x, int64_t k, int sub, int lpr, bool live)
{
    float acc = 0.0f;
    int64_t pieces = live ? k / 8 : 0;
#pragma unroll 4
    for (int64_t p = sub; p < pieces; p += lpr) {
        float wv[8];
        xq_load8<WT>(row, p, wv);
        const float *xr = x + 8 * p;
        float4 a = GV_LDX((const float4 *)xr), bq = GV_LDX((const float4 *)xr + 1);
        float xv[8];
        xv[0] = a.x, xv[1] = a.y, xv[2] = a.z, xv[3] = a.w;
        xv[4] = bq.x, xv[5] = bq.y, xv[6] = bq.z, xv[7] = bq.w;
        float s = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; e++)
            s += wv[e] * xv[e];
        acc += s;
    }
    for (int o = lpr >> 1; o > 0; o >>= 1)
        acc += __shfl_xor_sync(0xffffffffu, acc, o);
    return acc;
}

/* How the opt MATMUL computes y[1, m] = x . w^T for one token (host side). */
typedef struct kc_mv_plan {
    int path;        /* KC_MV_STAGED (gemv.cu), KC_MV_DIRECT (mv_kernel, one x row, aligned), KC_MV_OTHER */
    int R, G;        /* STAGED: rows per block, lanes per row */
    size_t smem;     /* STAGED: dynamic shared memory bytes */
    int lg;          /* DIRECT: log2 of the lanes per row */
    unsigned blocks; /* the grid: STAGED blocks of 256 threads, DIRECT blocks of MV_THREADS */
    uint64_t rb;     /* bytes of a weight row */
} kc_mv_plan;
enum { KC_MV_OTHER = 0, KC_MV_STAGED = 1, KC_MV_DIRECT = 2 };

/* Fills p for a (n == 1) as kc_opt_matmul would run it: KC_MV_STAGED where
 * it calls kern_cuda_gemv and that takes the shape, KC_MV_DIRECT where it
 * runs mv1_kernel<WT>, KC_MV_OTHER for anything else (the generic
 * kernel, n != 1, an unaligned x). gemv.cu, matmul.cu. */
void kc_gv_plan(const kern_args *a, kc_mv_plan *p); /* STAGED or OTHER */
void kc_mv_plan_for(const kern_args *a, kc_mv_plan *p);

#endif
