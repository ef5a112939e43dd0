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
#include "gemv.h"
#include "gemv_body.h"

/* Block b: gv_body over rows [b*R, b*R + R), stored with the bias and the
 * fused GELU (gv_store). */
struct gv_st {
    float *y, *act;
    const float *bias;
    __device__ __forceinline__ void operator()(int64_t r, float s) const { gv_store(y, act, bias, r, s); }
};

template <int WT, int G>
__global__ void __launch_bounds__(GV_THREADS, 4)
    gv_kernel(float *y, float *act, const float *x, const uint8_t *w, uint64_t rb, const float *bias, int k,
              int64_t m, int R)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    extern __shared__ uint4 gv_tile[]; /* [R * rb + up to 30] bytes: the rows, from a 16-byte boundary */
    __shared__ float gv_red[GV_THREADS / 32]; /* [8]: per-warp sums when G > 32 */
    gv_body<WT, G>(gv_tile, gv_red, x, w, rb, k, m, R, (int64_t)blockIdx.x, gv_st{y, act, bias});
}

/* ---- host ----------------------------------------------------------------- */

/* SMs, or the H100's 132 if the runtime cannot say */
static int gv_sms(void)
{
    int sms = kc_sm_count();
    return sms > 0 ? sms : 132;
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
    static int run(cudaStream_t st, const kern_args *a, float *act, const kc_mv_plan *pl)
    {
        if (!gv_is_block<WT>::value)
            return 1;
        const uint8_t *w = (const uint8_t *)a->w;
        int k = (int)a->k, r = pl->R;
        /* a programmatic dependent launch: the rows are staged while the
         * kernel before finishes (gv_stage waits for it before x is read) */
#define GV_GO(G)                                                                                              \
    kc_launch_pdl(gv_kernel<gv_is_block<WT>::value ? WT : XF_TYPE_Q8_0, G>, dim3(pl->blocks), dim3(GV_THREADS), \
                  pl->smem, st, a->y, act, a->x, w, pl->rb, a->b, k, a->m, r)
        switch (pl->G) {
        case 32: return GV_GO(32);
        case 64: return GV_GO(64);
        case 128: return GV_GO(128);
        default: return GV_GO(256);
        }
#undef GV_GO
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

void kc_gv_plan(const kern_args *a, kc_mv_plan *p)
{
    memset(p, 0, sizeof *p);
    p->path = KC_MV_OTHER;
    if (a->n != 1 || !a->x || !a->w || !a->y || a->m <= 0 || a->k <= 0 || a->k > INT32_MAX)
        return;
    if (kc_type_get(a->w_type).elems <= 1)
        return;
    uint64_t rb = kc_row_bytes(a->w_type, a->k);
    /* 16-bit loads from the staged rows need an even base (MXFP4 reads bytes) */
    bool odd_ok = a->w_type == XF_TYPE_MXFP4;
    if (rb == 0 || rb + 32 > GV_SMEM_MAX || !kc_aligned16(a->x) || (((uintptr_t)a->w & 1) && !odd_ok))
        return;
    if (a->m > (int64_t)UINT32_MAX) /* the grid's x dimension, with R = 1 */
        return;
    int r = gv_rows(rb, a->m);
    p->path = KC_MV_STAGED;
    p->rb = rb;
    p->R = r;
    p->G = r >= 8 ? 32 : GV_THREADS / r;
    p->smem = (size_t)r * rb + 32;
    p->blocks = (unsigned)((a->m + r - 1) / r);
}

extern "C" int kern_cuda_gemv(kern_ctx *ctx, const kern_args *a, float *act)
{
    kc_mv_plan pl;
    kc_gv_plan(a, &pl);
    if (pl.path != KC_MV_STAGED)
        return 1;
    return kc_dispatch_type<gv_launch>(a->w_type, kc_stream(ctx), a, act, (const kc_mv_plan *)&pl);
}
