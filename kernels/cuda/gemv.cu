/* gemv.cu: y[1,m] = x[1,k] . w[m,k]^T (+ b) for the ggml block types, the
 * CUDA opt MATMUL of one token (gemv.h says what it takes).
 *
 * Why not the 16-bit-load kernel of matmul.cu: at one token the product is
 * a pure stream of weight bytes (floor: bytes / copy bandwidth), and that
 * kernel reached 29-61% of it on the H100 for the block types (Q4_K 25.8 us
 * against a 7.4 us floor for the GPT-2 head): 2-byte loads straight from
 * global memory issue 8x the load instructions of 16-byte ones, and every
 * quant goes through an I2F conversion, which runs at 1/8 of the FMA rate.
 * Here:
 *  - a block stages the bytes of R consecutive rows (one contiguous span)
 *    into shared memory with 16-byte cp.async copies from the 16-byte
 *    boundary at or below the span (rows of 18/22/34/210-byte blocks are
 *    not aligned, the span is, up to its ends: those 16-byte pieces that
 *    reach outside the matrix are copied 2 bytes at a time);
 *  - then the 8 warps decode from shared memory: a group of G lanes per row
 *    (G = 32, or 64..256 when the block holds fewer than 8 rows), each lane
 *    taking 8-element pieces p, p+G, ...; quants become floats by the
 *    exponent trick (bits 0x4B000000 | q are the float 2^23 + q, so one OR
 *    and one FADD, with the format's offset folded into the FADD), the
 *    block scale is applied once per piece (d * sum(q x), minus m * sum(x)
 *    for the formats with a minimum);
 *  - R is the largest power of two <= 32 whose rows fit GV_TILE bytes and
 *    that still gives 4 blocks per SM; small-and-wide matrices end at R = 1,
 *    one row over 256 threads (a split-K inside the block).
 * Sums: f32, fixed order (lane, shuffle tree, warps in index order), so the
 * same inputs give the same bits on every call, in or out of a graph. The
 * error against the f64 ref is that of any f32 dot of length k. */
#include "cuda_internal.h"
#include "gemv.h"

#define GV_THREADS 256
#define GV_TILE 16384            /* bytes of weight rows one block stages */
#define GV_SMEM_MAX (48 * 1024)  /* a row longer than this: the old kernel */
#define GV_MAX_R 32              /* rows per block at most */
#define GV_BLOCKS_PER_SM 4       /* R shrinks until the grid has this many blocks per SM */

/* ---- decode: 8 weights of piece p (elements 8p..8p+7) dotted with x ------ */

/* the float value q - off, for 0 <= q < 2^22 (exact: 2^23 + q is a float) */
__device__ __forceinline__ float gv_q(unsigned q, float off) { return __int_as_float(0x4B000000u | q) - (8388608.0f + off); }

/* xv[8] = x[8p .. 8p+7]; x 16-byte aligned */
__device__ __forceinline__ void gv_x8(const float *x, int p, float *xv)
{
    float4 a = __ldg((const float4 *)x + 2 * p), b = __ldg((const float4 *)x + 2 * p + 1);
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

/* Copies bytes [g0, g0 + len) of the matrix [w, wend) to shared memory
 * from the 16-byte boundary at or below g0; returns where g0 landed. */
__device__ __forceinline__ const uint8_t *gv_stage(uint4 *tile, const uint8_t *g0, uint64_t len, const uint8_t *w,
                                                   const uint8_t *wend)
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
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    __syncthreads();
    return (const uint8_t *)tile + (g0 - a0);
}

/* Block b: weight rows [b*R, b*R + R) (fewer in the last block). G: lanes
 * per row; G = 32 when R >= 8 (each warp takes rows w, w+8, ...), else
 * 256 / R (R <= 256 / G, one row per group, warps combined in order). */
template <int WT, int G>
__global__ void __launch_bounds__(GV_THREADS, 4)
    gv_kernel(float *y, float *act, const float *x, const uint8_t *w, uint64_t rb, const float *bias, int k,
              int64_t m, int R)
{
    extern __shared__ uint4 gv_tile[]; /* [R * rb + up to 30] bytes: the rows, from a 16-byte boundary */
    __shared__ float gv_red[GV_THREADS / 32]; /* [8]: per-warp sums when G > 32 */
    int64_t r0 = (int64_t)blockIdx.x * R;
    int rows = (int)(m - r0 < R ? m - r0 : R);
    const uint8_t *tile = gv_stage(gv_tile, w + (uint64_t)r0 * rb, (uint64_t)rows * rb, w, w + (uint64_t)m * rb);
    const int ng = GV_THREADS / G;
    int grp = threadIdx.x / G, t = threadIdx.x % G, pieces = k >> 3;
    if (G == 32) {
        for (int i = grp; i < rows; i += ng) {
            float s = kc_warp_sum(gv_row<WT, G>(tile + (uint64_t)i * rb, x, pieces, t));
            if (t == 0)
                gv_store(y, act, bias, r0 + i, s);
        }
    } else {
        bool live = grp < rows;
        float s = kc_warp_sum(live ? gv_row<WT, G>(tile + (uint64_t)grp * rb, x, pieces, t) : 0.0f);
        if ((threadIdx.x & 31) == 0)
            gv_red[threadIdx.x >> 5] = s;
        __syncthreads();
        if (live && t == 0) {
            float tot = 0.0f;
#pragma unroll
            for (int i = 0; i < G / 32; i++)
                tot += gv_red[grp * (G / 32) + i];
            gv_store(y, act, bias, r0 + grp, tot);
        }
    }
}

/* ---- host ----------------------------------------------------------------- */

static int gv_sms(void)
{
    static int sms; /* one device per process; a benign race at worst */
    if (sms <= 0) {
        int dev = 0, v = 0;
        if (cudaGetDevice(&dev) == cudaSuccess && cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) ==
                                                      cudaSuccess && v > 0)
            sms = v;
        else
            return 132;
    }
    return sms;
}

/* rows per block for rows of rb bytes, m rows (see the top of the file) */
static int gv_rows(uint64_t rb, int64_t m)
{
    int r = GV_MAX_R;
    while (r > 1 && (uint64_t)r * rb + 32 > GV_TILE)
        r >>= 1;
    int64_t want = (int64_t)GV_BLOCKS_PER_SM * gv_sms();
    while (r > 1 && (m + r - 1) / r < want)
        r >>= 1;
    return r;
}

template <int WT> struct gv_launch {
    static int run(cudaStream_t st, const kern_args *a, float *act)
    {
        if (!gv_is_block<WT>::value)
            return 1;
        uint64_t rb = kc_row_bytes(WT, a->k);
        int r = gv_rows(rb, a->m);
        size_t smem = (size_t)r * rb + 32;
        unsigned grid = (unsigned)((a->m + r - 1) / r);
        const uint8_t *w = (const uint8_t *)a->w;
        int k = (int)a->k;
#define GV_GO(G)                                                                                             \
    gv_kernel<gv_is_block<WT>::value ? WT : XF_TYPE_Q8_0, G><<<grid, GV_THREADS, smem, st>>>(a->y, act, a->x, w, rb, \
                                                                                             a->b, k, a->m, r)
        switch (r >= 8 ? 32 : GV_THREADS / r) {
        case 32: GV_GO(32); break;
        case 64: GV_GO(64); break;
        case 128: GV_GO(128); break;
        default: GV_GO(256); break;
        }
#undef GV_GO
        return kc_launch_ok();
    }
};

extern "C" int kern_cuda_gemv_prefer(int w_type, int64_t k, int64_t m)
{
    /* H100, bench_gemv_cuda (scripts/gpu-notes.md): both kernels are bound
     * by decode instructions, not bytes, on tall matrices; staging wins where
     * rows are long (k >= 2048: the down projections, 1.6-2.3x: one row per
     * block, split over 256 threads) or few (m <= 256: 1.2-1.6x), and for
     * the k-quants (their 16-bit loads cost the old kernel most); the
     * 32-element types with short rows and many of them stay faster on the
     * old kernel (0.73-0.89x here). */
    kc_type t = kc_type_get(w_type);
    if (t.elems <= 1)
        return 0;
    return k >= 2048 || m <= 256 || t.elems == 256;
}

extern "C" int kern_cuda_gemv(kern_ctx *ctx, const kern_args *a, float *act)
{
    if (a->n != 1 || !a->x || !a->w || !a->y || a->m <= 0 || a->k <= 0 || a->k > INT32_MAX)
        return 1;
    if (kc_type_get(a->w_type).elems <= 1)
        return 1;
    uint64_t rb = kc_row_bytes(a->w_type, a->k);
    /* 16-bit loads from the staged rows need an even base (MXFP4 reads bytes) */
    bool odd_ok = a->w_type == XF_TYPE_MXFP4;
    if (rb == 0 || rb + 32 > GV_SMEM_MAX || !kc_aligned16(a->x) || (((uintptr_t)a->w & 1) && !odd_ok))
        return 1;
    if (a->m > (int64_t)UINT32_MAX) /* the grid's x dimension, with R = 1 */
        return 1;
    return kc_dispatch_type<gv_launch>(a->w_type, kc_stream(ctx), a, act);
}
