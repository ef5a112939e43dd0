/* matmul_wgmma.cu: the prefill matmul's tensor-core product (see
 * matmul_split.cu for the split form: exact weight codes, x as two f16
 * planes, each group's sums folded in f32) on Hopper's warpgroup MMA with
 * TMA loads, for a build that targets sm_90a; matmul_split.cu's ms_gemm
 * (mma.sync) runs everywhere else, with XF_NO_WGMMA set, and where a
 * tensor map cannot describe the operands. */
#include <cudaTypedefs.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "kernels_cuda.h"
#include "matmul_split.h"

/* ---- the block ------------------------------------------------------------
 * 3 or 4 warpgroups (mw_cfg): warpgroup 0 is the producer (one warp: TMA
 * for the tiles, cp.async for the group scales), each of the others
 * multiplies 64 weight rows by the block's 128 tokens (MW_BN). k goes in
 * tiles of 64 (MW_BK: one 128-byte row of f16 a tile row, TMA's 128-byte
 * swizzle) through mw_cfg's stages; a full barrier says a stage's bytes are
 * in, an empty barrier that every consumer thread is done with it.
 *
 * Why 128 tokens: a block's stage is 16 KB of weights and 32 KB of x planes
 * for 2 x 128 x 128 x 64 products, 87 flops a byte of L2 (64 tokens gave
 * 64, and the consumers waited on L2 for a quarter of their time).
 *
 * Each k16 step is two wgmmas (m64n128k16) into the same sums, x's hi plane
 * then its lo plane, so c = w . hi + w . lo. A unit (one group of the block
 * types: 32 k, or 16 for Q6_K; 32 k for F16) goes into one of two sum
 * buffers from zero, and while the next unit runs it is folded into acc in
 * f32: F16 acc += c; a group acc = fma(a, c, acc) - b * sx (the split
 * form's fold; the tensor cores' f32 sums may round otherwise than
 * mma.sync's, the tests bound the difference). */
#define MW_BK 64
#define MW_BN 128 /* tokens a block */

/* a block's shared memory: BM weight rows (64 a consumer warpgroup), ST
 * stages, NG groups a 64-k tile (2, or 4 for Q6_K's groups of 16) */
template <int BM, int ST, int NG> struct mw_smem {
    __half w[ST][BM * MW_BK];       /* [row][k] 128-byte rows, swizzled by TMA */
    __half x[ST][2][MW_BN * MW_BK]; /* hi, lo: [token][k], the same */
    float2 ab[ST][BM][NG];          /* (a, b) of the tile's groups */
    float sx[ST][2][MW_BN];         /* group sums of x * 2^s (HASB, 2 groups), [group][token] */
    uint64_t full[ST], empty[ST];   /* mbarriers */
};

/* the tensor maps of one product: weights [rows, k], the x planes [n, k] */
typedef struct mw_maps {
    CUtensorMap w, hi, lo;
} mw_maps;

/* One launch's products (MW_SEGS at most, kc_wgmma_gemm_multi): weights
 * of one type read by the same x, each with its own output. Segment s has
 * the blocks x in [end[s - 1], end[s]): its row tiles (tiles[s]) times its
 * slices of k, slice-major. */
#define MW_SEGS 3
typedef struct mw_job {
    ms_args A[MW_SEGS];
    mw_maps M[MW_SEGS];
    int end[MW_SEGS], tiles[MW_SEGS];
    int nseg;
} mw_job;

__device__ __forceinline__ uint32_t mw_sa(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

__device__ __forceinline__ void mw_bar_init(uint64_t *b, unsigned count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(mw_sa(b)), "r"(count) : "memory");
}

__device__ __forceinline__ void mw_bar_wait(uint64_t *b, unsigned parity)
{
    uint32_t ok;
    do {
        asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                     " selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(ok)
                     : "r"(mw_sa(b)), "r"(parity)
                     : "memory");
    } while (!ok);
}

__device__ __forceinline__ void mw_bar_arrive(uint64_t *b)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(mw_sa(b)) : "memory");
}

/* arrives once and adds `bytes` to what the phase waits for */
__device__ __forceinline__ void mw_bar_expect(uint64_t *b, unsigned bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(mw_sa(b)), "r"(bytes) : "memory");
}

/* an arrival on b once this thread's cp.async copies so far are done (the
 * barrier's count includes it) */
__device__ __forceinline__ void mw_bar_cp_arrive(uint64_t *b)
{
    asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(mw_sa(b)) : "memory");
}

/* cp.async of `bytes` (4 or 8), or zeros where !valid (a source size of 0) */
__device__ __forceinline__ void mw_cpz(void *dst, const void *src, int bytes, bool valid)
{
    if (bytes == 8)
        asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(mw_sa(dst)), "l"(src), "r"(valid ? 8 : 0)
                     : "memory");
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(mw_sa(dst)), "l"(src), "r"(valid ? 4 : 0)
                     : "memory");
}

/* one box of a 2-d tensor map (inner coordinate c0, outer c1) into shared
 * memory, its bytes counted on b; elements outside the tensor come as 0 */
__device__ __forceinline__ void mw_tma(void *dst, const CUtensorMap *map, int c0, int c1, uint64_t *b)
{
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3}], [%4];\n" ::"r"(mw_sa(dst)),
                 "l"(map), "r"(c0), "r"(c1), "r"(mw_sa(b))
                 : "memory");
}

/* wgmma's descriptor of a K-major tile in TMA's 128-byte swizzle: 8-row
 * atoms of 1024 bytes (sbo), the start advanced 32 bytes a k16 step */
__device__ __forceinline__ uint64_t mw_desc(uint32_t a)
{
    return (uint64_t)((a & 0x3FFFFu) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) |
           ((uint64_t)1 << 62);
}

/* d (=|+)= A . B, m64n128k16, f16 in, f32 sums; FRESH: d only written */
template <bool FRESH> __device__ __forceinline__ void mw_mma(float (&d)[16][4], uint64_t da, uint64_t db)
{
#define MW_D(M) \
    M(d[0][0]), M(d[0][1]), M(d[0][2]), M(d[0][3]), M(d[1][0]), M(d[1][1]), M(d[1][2]), M(d[1][3]), M(d[2][0]), \
    M(d[2][1]), M(d[2][2]), M(d[2][3]), M(d[3][0]), M(d[3][1]), M(d[3][2]), M(d[3][3]), M(d[4][0]), M(d[4][1]), \
    M(d[4][2]), M(d[4][3]), M(d[5][0]), M(d[5][1]), M(d[5][2]), M(d[5][3]), M(d[6][0]), M(d[6][1]), M(d[6][2]), \
    M(d[6][3]), M(d[7][0]), M(d[7][1]), M(d[7][2]), M(d[7][3]), M(d[8][0]), M(d[8][1]), M(d[8][2]), M(d[8][3]), \
    M(d[9][0]), M(d[9][1]), M(d[9][2]), M(d[9][3]), M(d[10][0]), M(d[10][1]), M(d[10][2]), M(d[10][3]), \
    M(d[11][0]), M(d[11][1]), M(d[11][2]), M(d[11][3]), M(d[12][0]), M(d[12][1]), M(d[12][2]), M(d[12][3]), \
    M(d[13][0]), M(d[13][1]), M(d[13][2]), M(d[13][3]), M(d[14][0]), M(d[14][1]), M(d[14][2]), M(d[14][3]), \
    M(d[15][0]), M(d[15][1]), M(d[15][2]), M(d[15][3])
#define MW_W(x) "=f"(x)
#define MW_RW(x) "+f"(x)
#define MW_OPS "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}, %64, %65"
    if (FRESH)
        asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " MW_OPS ", 0, 1, 1, 0, 0;\n"
                     : MW_D(MW_W)
                     : "l"(da), "l"(db)
                     : "memory");
    else
        asm volatile("wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " MW_OPS ", 1, 1, 1, 0, 0;\n"
                     : MW_D(MW_RW)
                     : "l"(da), "l"(db)
                     : "memory");
#undef MW_OPS
#undef MW_RW
#undef MW_W
#undef MW_D
}

/* keeps the compiler from moving register reads or writes of d across the
 * asynchronous wgmma that owns them */
__device__ __forceinline__ void mw_fence(float (&d)[16][4])
{
#pragma unroll
    for (int j = 0; j < 16; j++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            asm volatile("" : "+f"(d[j][e])::"memory");
}
/* A block's shape: NC consumer warpgroups of 64 weight rows each (BM rows
 * a block) and one producer warpgroup. NC = 2 keeps two sum buffers a
 * consumer (a unit is folded while the next one runs: 192 registers of
 * sums); NC = 3 has room for one (65536 registers over 512 threads), so a
 * consumer waits for its unit before folding it and the other two keep the
 * tensor cores busy meanwhile. Why 3: a stage then brings 24 KB of weights
 * and 32 KB of x planes for 3 x 64 x 128 x 64 x 2 products, 110 flops a
 * byte of L2 against 85 with 2 (session 10's ncu: the consumers waited on L2 for
 * a quarter of their time), and 192-row tiles fill 132 SMs in fewer waves
 * for the Qwen2.5 shapes (gate/up of the 1.5B at 512 tokens: 188 blocks,
 * not 280). The same units in the same order and the same folds: an output
 * has the same bits with either shape (k sliced alike; not the super-block
 * fold, KF, which runs at 128 only). */
template <int NC> struct mw_cfg {
    static constexpr int BM = 64 * NC;
    static constexpr int ST = NC == 2 ? 4 : 3; /* what shared memory holds */
    static constexpr int THREADS = 128 * (NC + 1);
    static constexpr bool TWO = NC == 2;                                      /* two sum buffers a consumer */
    static constexpr int TILE_BYTES = BM * MW_BK * 2 + 2 * MW_BN * MW_BK * 2; /* what TMA brings a stage */
};

/* issues unit u of stage s: KS k16 steps from step u * KS, both x planes
 * into the same sums (c = w . hi + w . lo, from 0) */
template <int KS, class SM>
__device__ __forceinline__ void mw_issue(float (&c)[16][4], SM &sm, int s, int wr, int u)
{
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
    uint32_t a = mw_sa(&sm.w[s][wr * MW_BK]), bh = mw_sa(&sm.x[s][0][0]), bl = mw_sa(&sm.x[s][1][0]);
#pragma unroll
    for (int i = 0; i < KS; i++) {
        uint32_t off = (uint32_t)(u * KS + i) * 32u;
        if (i == 0)
            mw_mma<true>(c, mw_desc(a + off), mw_desc(bh + off));
        else
            mw_mma<false>(c, mw_desc(a + off), mw_desc(bh + off));
        mw_mma<false>(c, mw_desc(a + off), mw_desc(bl + off));
    }
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

/* issues a whole 64-k tile of stage s into c (KF: a super-block's sums),
 * from zero where FRESH */
template <bool FRESH, class SM> __device__ __forceinline__ void mw_issue_tile(float (&c)[16][4], SM &sm, int s, int wr)
{
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
    uint32_t a = mw_sa(&sm.w[s][wr * MW_BK]), bh = mw_sa(&sm.x[s][0][0]), bl = mw_sa(&sm.x[s][1][0]);
#pragma unroll
    for (int i = 0; i < MW_BK / 16; i++) {
        uint32_t off = (uint32_t)i * 32u;
        if (FRESH && i == 0)
            mw_mma<true>(c, mw_desc(a + off), mw_desc(bh + off));
        else
            mw_mma<false>(c, mw_desc(a + off), mw_desc(bh + off));
        mw_mma<false>(c, mw_desc(a + off), mw_desc(bl + off));
    }
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

/* acc -= b sx for the two groups of stage s (KF: they do not read the sums) */
template <class SM>
__device__ __forceinline__ void mw_bfold(float (&acc)[16][4], const SM &sm, int s, int rl, int gid, int tig)
{
#pragma unroll
    for (int slot = 0; slot < 2; slot++) {
        float b0 = sm.ab[s][rl + gid][slot].y, b1 = sm.ab[s][rl + gid + 8][slot].y;
#pragma unroll
        for (int j = 0; j < 16; j++) {
            float2 sxv = *(const float2 *)&sm.sx[s][slot][j * 8 + tig * 2];
            acc[j][0] = fmaf(-b0, sxv.x, acc[j][0]);
            acc[j][1] = fmaf(-b0, sxv.y, acc[j][1]);
            acc[j][2] = fmaf(-b1, sxv.x, acc[j][2]);
            acc[j][3] = fmaf(-b1, sxv.y, acc[j][3]);
        }
    }
}

/* folds a finished unit's sums c (group `slot` of stage s) into acc */
template <bool GROUPED, bool HASB, class SM>
__device__ __forceinline__ void mw_fold(float (&acc)[16][4], float (&c)[16][4], const SM &sm, int s, int slot,
                                        int rl, int gid, int tig)
{
    mw_fence(c);
    if constexpr (!GROUPED) {
#pragma unroll
        for (int j = 0; j < 16; j++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                acc[j][e] += c[j][e];
    } else {
        float2 ab0 = sm.ab[s][rl + gid][slot], ab1 = sm.ab[s][rl + gid + 8][slot];
#pragma unroll
        for (int j = 0; j < 16; j++) {
            float2 sxv = HASB ? *(const float2 *)&sm.sx[s][slot][j * 8 + tig * 2] : make_float2(0.0f, 0.0f);
            acc[j][0] = fmaf(ab0.x, c[j][0], acc[j][0]);
            acc[j][1] = fmaf(ab0.x, c[j][1], acc[j][1]);
            acc[j][2] = fmaf(ab1.x, c[j][2], acc[j][2]);
            acc[j][3] = fmaf(ab1.x, c[j][3], acc[j][3]);
            if (HASB) {
                acc[j][0] = fmaf(-ab0.y, sxv.x, acc[j][0]);
                acc[j][1] = fmaf(-ab0.y, sxv.y, acc[j][1]);
                acc[j][2] = fmaf(-ab1.y, sxv.x, acc[j][2]);
                acc[j][3] = fmaf(-ab1.y, sxv.y, acc[j][3]);
            }
        }
    }
}

/* the producer warp: each k tile's boxes by TMA (lane 0) and, for the
 * block types, its groups' (a, b) and x sums by cp.async (every lane) */
template <int NC, int GS, bool GROUPED, bool HASB, class SM>
__device__ __forceinline__ void mw_produce(SM &sm, const mw_maps &M, const ms_args &A, int kbeg, int kts,
                                           int r0, int t0, int lane)
{
    typedef mw_cfg<NC> C;
    const int ng = MW_BK / GS, kg = A.k / GS;
    for (int kt = 0; kt < kts; kt++) {
        int s = kt % C::ST, k0 = kbeg + kt * MW_BK;
        if (kt >= C::ST)
            mw_bar_wait(&sm.empty[s], (unsigned)((kt / C::ST - 1) & 1));
        if (lane == 0) {
            mw_bar_expect(&sm.full[s], C::TILE_BYTES);
            mw_tma(&sm.w[s][0], &M.w, k0, r0, &sm.full[s]);
            mw_tma(&sm.x[s][0][0], &M.hi, k0, t0, &sm.full[s]);
            mw_tma(&sm.x[s][1][0], &M.lo, k0, t0, &sm.full[s]);
        }
        if (GROUPED) {
            /* a group past k (the last tile of a k that is 32 past a
             * multiple of 64) gets (a, b) = 0 and sums 0: its fold adds 0
             * (TMA gives its codes and x as zeros) */
            for (int i = lane; i < C::BM * ng; i += 32) {
                int r = i / ng, g = k0 / GS + i % ng;
                int64_t gr = r0 + r < A.rows ? r0 + r : A.rows - 1;
                mw_cpz(&sm.ab[s][r][i % ng], A.ab + gr * kg + (g < kg ? g : kg - 1), 8, g < kg);
            }
            if (HASB)
                for (int i = lane; i < MW_BN * ng; i += 32) {
                    int t = i / ng, g = k0 / GS + i % ng;
                    int64_t gt = t0 + t < A.n ? t0 + t : A.n - 1;
                    mw_cpz(&sm.sx[s][i % ng][t], A.sx + gt * kg + (g < kg ? g : kg - 1), 4, g < kg);
                }
            mw_bar_cp_arrive(&sm.full[s]);
        }
    }
}

/* the consumer warpgroups. With two sum buffers (NC = 2) a tile's units
 * alternate between c0 and c1 (a tile has an even count, so which buffer a
 * unit uses is known to the compiler) and a unit is folded while the next
 * one runs; the tile's last unit is waited for and folded before the stage
 * is given back. No branch reads a sum buffer: ptxas serializes every wgmma
 * where one does (a unit past k has zero codes, zero x and zero (a, b): its
 * fold adds 0). With one (NC = 3) each unit is waited for, then folded. */
template <int NC, int GS, bool GROUPED, bool HASB, bool KF, class SM>
__device__ __forceinline__ void mw_consume(SM &sm, const ms_args &A, int kts, int r0, int t0, int z, int cw)
{
    typedef mw_cfg<NC> C;
    constexpr int UK = GROUPED ? GS : 32, U = MW_BK / UK, KS = UK / 16;
    int lane = threadIdx.x & 31, gid = lane >> 2, tig = lane & 3;
    int wr = (cw >> 2) * 64, rl = wr + (cw & 3) * 16;
    float acc[16][4], c0[16][4];
#pragma unroll
    for (int j = 0; j < 16; j++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            acc[j][e] = 0.0f;
    if constexpr (KF) {
        /* Q4_K / Q5_K in the super-block form (kc_kfold: codes sc * q, a =
         * d): a super-block's 4 tiles into c0 from zero, each tile's -b sx
         * folded while its wgmmas run, a stage given back once the tile
         * after it is issued and its own wgmmas are done; at the
         * super-block's end the sums are waited for and folded once,
         * acc = fma(d, c, acc). (kts: whole super-blocks, mw_slices.) */
        for (int kt = 0; kt < kts; kt += 4) {
            float d0 = 0.0f, d1 = 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                int s = (kt + j) % C::ST;
                mw_bar_wait(&sm.full[s], (unsigned)(((kt + j) / C::ST) & 1));
                if (j == 0) {
                    d0 = sm.ab[s][rl + gid][0].x;
                    d1 = sm.ab[s][rl + gid + 8][0].x;
                    mw_issue_tile<true>(c0, sm, s, wr);
                } else {
                    mw_issue_tile<false>(c0, sm, s, wr);
                }
                mw_bfold(acc, sm, s, rl, gid, tig);
                if (j < 3) {
                    asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
                    if (j > 0)
                        mw_bar_arrive(&sm.empty[(kt + j - 1) % C::ST]);
                } else {
                    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
                    mw_bar_arrive(&sm.empty[(kt + 2) % C::ST]);
                    mw_bar_arrive(&sm.empty[s]);
                }
            }
            mw_fence(c0);
#pragma unroll
            for (int j = 0; j < 16; j++) {
                acc[j][0] = fmaf(d0, c0[j][0], acc[j][0]);
                acc[j][1] = fmaf(d0, c0[j][1], acc[j][1]);
                acc[j][2] = fmaf(d1, c0[j][2], acc[j][2]);
                acc[j][3] = fmaf(d1, c0[j][3], acc[j][3]);
            }
        }
    } else if constexpr (C::TWO) {
        float c1[16][4];
        for (int kt = 0; kt < kts; kt++) {
            int s = kt % C::ST;
            mw_bar_wait(&sm.full[s], (unsigned)((kt / C::ST) & 1));
            mw_issue<KS>(c0, sm, s, wr, 0);
#pragma unroll
            for (int u = 1; u < U; u++) {
                if (u % 2 == 1)
                    mw_issue<KS>(c1, sm, s, wr, u);
                else
                    mw_issue<KS>(c0, sm, s, wr, u);
                asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
                if (u % 2 == 1)
                    mw_fold<GROUPED, HASB>(acc, c0, sm, s, u - 1, rl, gid, tig);
                else
                    mw_fold<GROUPED, HASB>(acc, c1, sm, s, u - 1, rl, gid, tig);
            }
            asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
            mw_fold<GROUPED, HASB>(acc, c1, sm, s, U - 1, rl, gid, tig);
            mw_bar_arrive(&sm.empty[s]);
        }
    } else {
        for (int kt = 0; kt < kts; kt++) {
            int s = kt % C::ST;
            mw_bar_wait(&sm.full[s], (unsigned)((kt / C::ST) & 1));
#pragma unroll 1
            for (int u = 0; u < U; u++) {
                mw_issue<KS>(c0, sm, s, wr, u);
                asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
                mw_fold<GROUPED, HASB>(acc, c0, sm, s, u, rl, gid, tig);
            }
            mw_bar_arrive(&sm.empty[s]);
        }
    }
    ms_store<1, 16>(A, (const float(&)[1][16][4])acc, r0 + rl, t0, gid, tig, z);
}

/* a block of one product: its row tile rb, slice z of k (A, M: grid
 * constants) */
template <int NC, int GS, bool GROUPED, bool HASB, bool KF>
__device__ __forceinline__ void mw_block(const ms_args &A, const mw_maps &M, int rb, int z)
{
    typedef mw_cfg<NC> C;
    typedef mw_smem<C::BM, C::ST, MW_BK / GS> SM;
    extern __shared__ unsigned char mw_raw[];
    /* TMA's 128-byte swizzle wants 1024-byte aligned tiles */
    uint32_t base = mw_sa(mw_raw);
    SM &sm = *(SM *)(mw_raw + ((1024u - (base & 1023u)) & 1023u));
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int r0 = rb * C::BM, t0 = blockIdx.y * MW_BN;
    /* this slice's k: [kbeg, kend), A.per tiles of 32 (even: whole tiles of 64) */
    int kbeg = z * A.per * MS_BK, kend = kbeg + A.per * MS_BK;
    if (kend > A.k)
        kend = A.k;
    int kts = (kend - kbeg + MW_BK - 1) / MW_BK;
    if (threadIdx.x == 0) {
        for (int s = 0; s < C::ST; s++) {
            mw_bar_init(&sm.full[s], GROUPED ? 1 + 32 : 1);
            mw_bar_init(&sm.empty[s], NC * 128);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    /* the producer gives its registers to the consumers: 40 / 232 of 384
     * threads' 168, or 24 / 160 of 512 threads' 128 */
    if (warp < 4) {
        if constexpr (C::TWO)
            asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
        else
            asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n" ::: "memory");
        if (warp == 0)
            mw_produce<NC, GS, GROUPED, HASB>(sm, M, A, kbeg, kts, r0, t0, lane);
    } else {
        if constexpr (C::TWO)
            asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
        else
            asm volatile("setmaxnreg.inc.sync.aligned.u32 160;\n" ::: "memory");
        mw_consume<NC, GS, GROUPED, HASB, KF>(sm, A, kts, r0, t0, z, warp - 4);
    }
}

/* one product (its blocks x: row tiles) */
template <int NC, int GS, bool GROUPED, bool HASB, bool KF>
__global__ void __launch_bounds__(mw_cfg<NC>::THREADS, 1)
    mw_gemm(const __grid_constant__ ms_args A, const __grid_constant__ mw_maps M)
{
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
    /* a device pass without wgmma (the host launches this only in a 90a build) */
    __trap();
#else
    mw_block<NC, GS, GROUPED, HASB, KF>(A, M, (int)blockIdx.x, (int)blockIdx.z);
#endif
}

/* a job's products: segment s takes the blocks x in [end[s - 1], end[s]),
 * row tile fastest, then the slice of k */
template <int NC, int GS, bool GROUPED, bool HASB, bool KF>
__global__ void __launch_bounds__(mw_cfg<NC>::THREADS, 1) mw_gemm_job(const __grid_constant__ mw_job J)
{
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
    __trap();
#else
    int seg = 0;
    while (seg + 1 < J.nseg && (int)blockIdx.x >= J.end[seg])
        seg++;
    int b = (int)blockIdx.x - (seg ? J.end[seg - 1] : 0);
    mw_block<NC, GS, GROUPED, HASB, KF>(J.A[seg], J.M[seg], b % J.tiles[seg], b / J.tiles[seg]);
#endif
}
/* cuTensorMapEncodeTiled from the driver (through the runtime: no link to
 * libcuda), NULL where the driver has none */
static PFN_cuTensorMapEncodeTiled_v12000 mw_encoder(void)
{
    static PFN_cuTensorMapEncodeTiled_v12000 fn = NULL;
    static bool tried = false;
    if (!tried) {
        tried = true;
        void *p = NULL;
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) ==
                cudaSuccess &&
            q == cudaDriverEntryPointSuccess)
            fn = (PFN_cuTensorMapEncodeTiled_v12000)p;
        else
            cudaGetLastError();
    }
    return fn;
}

/* a map of f16 [outer, inner] rows `ld` halves apart, in boxes of
 * MW_BK x box_outer, 128-byte swizzle; false where TMA cannot (alignment) */
static bool mw_map(CUtensorMap *m, const __half *p, int64_t inner, int64_t outer, int64_t ld, int box_outer)
{
    PFN_cuTensorMapEncodeTiled_v12000 enc = mw_encoder();
    if (!enc || !kc_aligned16(p) || (ld * 2) % 16 != 0)
        return false;
    cuuint64_t dim[2] = {(cuuint64_t)inner, (cuuint64_t)outer}, stride[1] = {(cuuint64_t)(ld * 2)};
    cuuint32_t box[2] = {MW_BK, (cuuint32_t)box_outer}, es[2] = {1, 1};
    return enc(m, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, (void *)p, dim, stride, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
               CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

/* the slices of k for `bm`-row blocks, one an SM, each an even count of
 * 32-k tiles (whole tiles of 64), at most `most` (what the caller's partial
 * sums buffer holds); 192-row blocks give a slice 4 tiles or more (the
 * partial sums' writes and reads against the SMs a slice fills) */
static int mw_slices(const ms_args *A, int bm, int most, int *per, bool kf)
{
    /* a slice's 32-k tiles: whole 64-k tiles, or (kf) whole super-blocks */
    const int unit = kf ? 8 : 2;
    int kts = A->k / MS_BK, sms = kc_sm_count();
    if (bm == 192 && kts / 4 < most)
        most = kts / 4;
    if (most <= 1 || sms <= 0) {
        *per = (kts + unit - 1) / unit * unit;
        return 1;
    }
    int64_t blocks = (int64_t)((A->rows + bm - 1) / bm) * ((A->n + MW_BN - 1) / MW_BN);
    int want = blocks >= sms ? 1 : (int)(sms / blocks);
    int sl = want < most ? want : most;
    if (sl < 1)
        sl = 1;
    int p = (kts + sl - 1) / sl;
    p = (p + unit - 1) / unit * unit;
    *per = p;
    return (kts + p - 1) / p;
}

/* the dynamic shared memory of mw_gemm<...>, its attribute set on first
 * use (the function's, not a stream operation); 0 where it cannot be */
template <int NC, int GS, bool GROUPED, bool HASB, bool KF> static size_t mw_smem_bytes(bool job)
{
    typedef mw_cfg<NC> C;
    static int set[2] = {0, 0}; /* 1 set, -1 refused: mw_gemm, mw_gemm_job */
    size_t smem = sizeof(mw_smem<C::BM, C::ST, MW_BK / GS>) + 1024;
    if (!set[job]) {
        cudaError_t e = job ? cudaFuncSetAttribute(mw_gemm_job<NC, GS, GROUPED, HASB, KF>,
                                                   cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)
                            : cudaFuncSetAttribute(mw_gemm<NC, GS, GROUPED, HASB, KF>,
                                                   cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        set[job] = e == cudaSuccess ? 1 : -1;
        if (e != cudaSuccess)
            cudaGetLastError();
    }
    return set[job] > 0 ? smem : 0;
}

/* several products of one x in one launch (mw_job), each cut in k as
 * mw_launch would cut it with most[s], then a reduce for each cut one; 1
 * where a tensor map cannot describe an operand (nothing launched) */
template <int NC, int GS, bool GROUPED, bool HASB, bool KF>
static int mw_launch_multi(cudaStream_t st, const ms_args *const *A0, int nseg, const int *most)
{
    typedef mw_cfg<NC> C;
    size_t smem = mw_smem_bytes<NC, GS, GROUPED, HASB, KF>(true);
    if (!smem)
        return -1;
    mw_job J;
    memset(&J, 0, sizeof J);
    J.nseg = nseg;
    int blocks = 0, slices[MW_SEGS];
    for (int s = 0; s < nseg; s++) {
        ms_args &A = J.A[s];
        A = *A0[s];
        slices[s] = mw_slices(&A, C::BM, A.part ? most[s] : 1, &A.per, KF);
        if (slices[s] == 1)
            A.part = NULL;
        if (!mw_map(&J.M[s].w, A.w, A.k, A.rows, A.ldw, C::BM) ||
            !mw_map(&J.M[s].hi, A.hi, A.k, A.n, A.k, MW_BN) ||
            !mw_map(&J.M[s].lo, A.lo, A.k, A.n, A.k, MW_BN))
            return 1;
        J.tiles[s] = (A.rows + C::BM - 1) / C::BM;
        blocks += J.tiles[s] * slices[s];
        J.end[s] = blocks;
    }
    dim3 grid((unsigned)blocks, (unsigned)((J.A[0].n + MW_BN - 1) / MW_BN), 1);
    mw_gemm_job<NC, GS, GROUPED, HASB, KF><<<grid, C::THREADS, smem, st>>>(J);
    if (kc_launch_ok())
        return -1;
    for (int s = 0; s < nseg; s++)
        if (slices[s] > 1) {
            ms_reduce<<<kc_grid_1d((int64_t)J.A[s].n * J.A[s].rows, 256), 256, 0, st>>>(J.A[s], slices[s]);
            if (kc_launch_ok())
                return -1;
        }
    return 0;
}

/* mw_gemm<...> on the stream, then ms_reduce where k was sliced; 1 where
 * the operands do not fit a tensor map (the caller runs ms_gemm) */
template <int NC, int GS, bool GROUPED, bool HASB, bool KF>
static int mw_launch(cudaStream_t st, const ms_args *A0, int most)
{
    typedef mw_cfg<NC> C;
    size_t smem = mw_smem_bytes<NC, GS, GROUPED, HASB, KF>(false);
    if (!smem)
        return -1;
    ms_args A = *A0;
    mw_maps M;
    memset(&M, 0, sizeof M);
    if (!mw_map(&M.w, A.w, A.k, A.rows, A.ldw, C::BM) || !mw_map(&M.hi, A.hi, A.k, A.n, A.k, MW_BN) ||
        !mw_map(&M.lo, A.lo, A.k, A.n, A.k, MW_BN))
        return 1;
    int slices = mw_slices(&A, C::BM, A.part ? most : 1, &A.per, KF);
    if (slices == 1)
        A.part = NULL;
    dim3 grid((unsigned)((A.rows + C::BM - 1) / C::BM), (unsigned)((A.n + MW_BN - 1) / MW_BN), (unsigned)slices);
    mw_gemm<NC, GS, GROUPED, HASB, KF><<<grid, C::THREADS, smem, st>>>(A, M);
    if (kc_launch_ok())
        return -1;
    if (slices > 1) {
        ms_reduce<<<kc_grid_1d((int64_t)A.n * A.rows, 256), 256, 0, st>>>(A, slices);
        return kc_launch_ok();
    }
    return 0;
}

/* 1 where the device has Hopper's wgmma (compute capability 9.0; the build
 * targets sm_90a) */
static bool ms_wgmma(void)
{
    static int ok = -1;
    if (ok < 0) {
        int dev = 0, major = 0, minor = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
            cudaGetLastError();
            major = 0;
        }
#ifdef XF_CUDA_WGMMA
        ok = major == 9 && minor == 0 && !getenv("XF_NO_WGMMA");
#else
        ok = 0;
#endif
    }
    return ok == 1;
}

extern "C" int kern_cuda_wgmma_available(void)
{
    return ms_wgmma();
}

/* consumer warpgroups a block: 2 (128 rows) or 3 (192), kernels_cuda.h */
static int mw_nc_now = 0;

static int mw_nc(void)
{
    if (!mw_nc_now) {
        const char *e = getenv("XF_MW_ROWS");
        mw_nc_now = e && strcmp(e, "192") == 0 ? 3 : 2;
    }
    return mw_nc_now;
}

/* the super-block fold's consumer (kc_kfold's types) runs in 128-row
 * blocks: at 192 its sums, acc and the minimum terms' operands pass the
 * 160 registers a consumer has (ptxas spilled); 192-row blocks fold the
 * super-block form's codes by group (a = d), as any block type */
static bool mw_kf(int t, int64_t k)
{
    return mw_nc() == 2 && kc_kfold(t) && k % 256 == 0; /* k: whole super-blocks (its types' rows are) */
}

extern "C" int kern_cuda_wgmma_rows(int rows)
{
    int was = 64 * mw_nc();
    if (rows == 128 || rows == 192)
        mw_nc_now = rows / 64;
    return was;
}

int kc_wgmma_slices(int t, int64_t rows, int64_t n, int64_t k)
{
    /* 128-row blocks take no more slices than mma.sync's tiles would */
    if (!ms_wgmma() || mw_nc() == 2 || rows <= 0 || n <= 0 || k <= 0 || k > INT32_MAX)
        return 1;
    ms_args A;
    memset(&A, 0, sizeof A);
    A.rows = (int)(rows < INT32_MAX - 256 ? rows : INT32_MAX - 256), A.n = (int)(n < 1 << 24 ? n : 1 << 24),
    A.k = (int)k;
    int per;
    return mw_slices(&A, 64 * mw_nc(), MS_WG_MAX_SLICES, &per, mw_kf(t, k));
}

int kc_wgmma_plan(int t, int64_t rows, int64_t n, int64_t k, int slices, int room)
{
    if (!ms_wgmma() || rows <= 0 || n <= 0 || k <= 0 || rows > INT32_MAX - 256 || n > INT32_MAX - 256 ||
        k > INT32_MAX)
        return 0;
    ms_args A;
    memset(&A, 0, sizeof A);
    A.rows = (int)rows, A.n = (int)n, A.k = (int)k;
    int per;
    bool kf = mw_kf(t, k);
    if (mw_nc() == 3)
        return mw_slices(&A, 192, room > 1 ? room : 1, &per, kf);
    return mw_slices(&A, 128, room > 1 ? slices : 1, &per, kf);
}

template <int NC> static int mw_launch_type(cudaStream_t st, int t, const ms_args *A, int most)
{
    if (t == XF_TYPE_F16)
        return mw_launch<NC, 32, false, false, false>(st, A, most);
    if (t == XF_TYPE_Q6_K)
        return mw_launch<NC, 16, true, false, false>(st, A, most);
    if constexpr (NC == 2)
        if (mw_kf(t, A->k))
            return mw_launch<NC, 32, true, true, true>(st, A, most);
    bool hasb = t == XF_TYPE_Q4_1 || t == XF_TYPE_Q5_1 || t == XF_TYPE_Q4_K || t == XF_TYPE_Q5_K;
    return hasb ? mw_launch<NC, 32, true, true, false>(st, A, most)
                : mw_launch<NC, 32, true, false, false>(st, A, most);
}

template <int NC>
static int mw_multi_type(cudaStream_t st, int t, const ms_args *const *A, int nseg, const int *most)
{
    if (t == XF_TYPE_F16)
        return mw_launch_multi<NC, 32, false, false, false>(st, A, nseg, most);
    if (t == XF_TYPE_Q6_K)
        return mw_launch_multi<NC, 16, true, false, false>(st, A, nseg, most);
    if constexpr (NC == 2)
        if (mw_kf(t, A[0]->k))
            return mw_launch_multi<NC, 32, true, true, true>(st, A, nseg, most);
    bool hasb = t == XF_TYPE_Q4_1 || t == XF_TYPE_Q5_1 || t == XF_TYPE_Q4_K || t == XF_TYPE_Q5_K;
    return hasb ? mw_launch_multi<NC, 32, true, true, false>(st, A, nseg, most)
                : mw_launch_multi<NC, 32, true, false, false>(st, A, nseg, most);
}

int kc_wgmma_gemm_multi(cudaStream_t st, int t, const ms_args *const *A, int nseg, const int *slices,
                        const int *room)
{
    if (!ms_wgmma() || nseg < 1 || nseg > MW_SEGS)
        return 1;
    /* what kc_wgmma_gemm hands mw_launch for each alone */
    return mw_nc() == 3 ? mw_multi_type<3>(st, t, A, nseg, room) : mw_multi_type<2>(st, t, A, nseg, slices);
}

int kc_wgmma_gemm(cudaStream_t st, int t, const ms_args *A, int slices, int room)
{
    if (!ms_wgmma())
        return 1;
    /* 128 rows: as many slices as mma.sync's tiles would take (sessions
     * 12-27's bits); 192: as many as its own tiles want and the room holds */
    return mw_nc() == 3 ? mw_launch_type<3>(st, t, A, room) : mw_launch_type<2>(st, t, A, slices);
}
