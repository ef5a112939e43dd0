/* matmul_wgmma.cu: the prefill matmul's tensor-core product (see
 * matmul_split.cu for the split form: exact weight codes, x as two f16
 * planes, each group's sums folded in f32) on Hopper's warpgroup MMA, for
 * a build that targets sm_90a; matmul_split.cu's ms_gemm (mma.sync) runs
 * everywhere else and with XF_NO_WGMMA set. */
#include <stdlib.h>

#include "cuda_internal.h"
#include "kernels_cuda.h"
#include "matmul_split.h"

/* ---- the same product on Hopper's warpgroup MMA (wgmma) ------------------
 * Block: 2 warpgroups (256 threads), 128 weight rows (64 a warpgroup) x 64
 * tokens; k in tiles of 32 (MS_BK) through MW_ST stages of cp.async. Both
 * operands are read by the tensor cores from shared memory (descriptors),
 * laid out as wgmma's "core matrices" without swizzle: 8 rows x 16 bytes
 * stored as 128 contiguous bytes, [k chunk of 8][row][8 halves]. A unit
 * (one group for the block types, one k tile for F16) is its wgmmas into
 * one of two sum buffers c, starting from zero (scale-d 0); while unit u
 * runs, unit u - 1's sums (done: wait_group 1) are folded into acc in f32
 * registers as ms_gemm folds them: the same products in the same order
 * (whether wgmma rounds its k16 sums as mma.sync does is for the tests to
 * show: the bits may differ). */
#define MW_ST 4      /* stages */
#define MW_PD 2      /* tiles loaded ahead: a stage is refilled only after its unit's fold */
#define MW_THREADS 256

typedef struct mw_smem {
    __half w[MW_ST][MS_BK / 8][MS_BM][8]; /* codes or F16 weights, core-matrix order */
    __half x[MW_ST][2][MS_BK / 8][MS_BN][8]; /* hi, lo */
    float2 ab[MW_ST][MS_BM][2];
    float sx[MW_ST][MS_BN][2];
} mw_smem;

/* wgmma's shared-memory matrix descriptor, no swizzle: start, the byte
 * distance between core matrices adjacent in k (lbo) and in rows (sbo) */
__device__ __forceinline__ uint64_t mw_desc(const void *p, uint32_t lbo, uint32_t sbo)
{
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    return (uint64_t)((a & 0x3FFFFu) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(sbo >> 4) << 32);
}

/* d += A . B (m64n64k16, f16 in, f32 sums), or with FRESH d = A . B: then
 * d is only written, so a unit's sums do not depend on the last unit's
 * (which the fold is reading) */
template <bool FRESH> __device__ __forceinline__ void mw_mma(float (&d)[8][4], uint64_t da, uint64_t db)
{
#define MW_D(M)                                                                                                   \
    M(d[0][0]), M(d[0][1]), M(d[0][2]), M(d[0][3]), M(d[1][0]), M(d[1][1]), M(d[1][2]), M(d[1][3]), M(d[2][0]),  \
        M(d[2][1]), M(d[2][2]), M(d[2][3]), M(d[3][0]), M(d[3][1]), M(d[3][2]), M(d[3][3]), M(d[4][0]), M(d[4][1]), \
        M(d[4][2]), M(d[4][3]), M(d[5][0]), M(d[5][1]), M(d[5][2]), M(d[5][3]), M(d[6][0]), M(d[6][1]), M(d[6][2]), \
        M(d[6][3]), M(d[7][0]), M(d[7][1]), M(d[7][2]), M(d[7][3])
#define MW_W(x) "=f"(x)
#define MW_RW(x) "+f"(x)
#define MW_OPS                                                                                                    \
    "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29," \
    "%30,%31}, %32, %33"
    if (FRESH)
        asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " MW_OPS ", 0, 1, 1, 0, 0;\n"
                     : MW_D(MW_W)
                     : "l"(da), "l"(db)
                     : "memory");
    else
        asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " MW_OPS ", 1, 1, 1, 0, 0;\n"
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
__device__ __forceinline__ void mw_fence(float (&d)[8][4])
{
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            asm volatile("" : "+f"(d[j][e])::"memory");
}

template <int GS, bool GROUPED, bool HASB>
__device__ __forceinline__ void mw_load(mw_smem &sm, const ms_args &A, int s, int kt, int r0, int t0)
{
    int tid = threadIdx.x, k0 = kt * MS_BK;
#pragma unroll
    for (int i = 0; i < MS_BM * 4 / MW_THREADS; i++) { /* rows x 4 chunks of 8 halves */
        int c = tid + i * MW_THREADS, r = c >> 2, part = c & 3;
        int64_t gr = r0 + r < A.rows ? r0 + r : A.rows - 1;
        ms_cp16(&sm.w[s][part][r][0], A.w + gr * A.ldw + k0 + part * 8);
    }
#pragma unroll
    for (int i = 0; i < 2 * MS_BN * 4 / MW_THREADS; i++) { /* 2 planes x tokens x 4 chunks */
        int c = tid + i * MW_THREADS, p = c / (MS_BN * 4), t = (c >> 2) % MS_BN, part = c & 3;
        int64_t gt = t0 + t < A.n ? t0 + t : A.n - 1;
        ms_cp16(&sm.x[s][p][part][t][0], (p ? A.lo : A.hi) + gt * A.k + k0 + part * 8);
    }
    if (GROUPED) {
        const int ng = MS_BK / GS, kg = A.k / GS, g0 = k0 / GS;
        if (tid < MS_BM) {
            int64_t gr = r0 + tid < A.rows ? r0 + tid : A.rows - 1;
            const float2 *src = A.ab + gr * kg + g0;
            if (ng == 2)
                ms_cp16(&sm.ab[s][tid][0], src);
            else
                ms_cp8(&sm.ab[s][tid][0], src);
        } else if (HASB && tid - MS_BM < MS_BN) {
            int t = tid - MS_BM;
            int64_t gt = t0 + t < A.n ? t0 + t : A.n - 1;
            const float *src = A.sx + gt * kg + g0;
            if (ng == 2)
                ms_cp8(&sm.sx[s][t][0], src);
            else
                ms_cp4(&sm.sx[s][t][0], src);
        }
    }
}

/* issues one unit: the products of k16 steps [kk0, kk0 + nkk) of stage s
 * into c, from zero */
__device__ __forceinline__ void mw_issue(float (&c)[8][4], mw_smem &sm, int s, int wr, int kk0, int nkk)
{
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
    for (int kk = kk0; kk < kk0 + nkk; kk++) {
        /* A: this warpgroup's 64 rows, k chunks 2kk and 2kk + 1 (MS_BM rows
         * apart); B: 64 tokens of a plane, chunks MS_BN tokens apart; core
         * matrices 8 rows (128 bytes) apart */
        uint64_t da = mw_desc(&sm.w[s][2 * kk][wr][0], MS_BM * 16, 128);
        if (kk == kk0)
            mw_mma<true>(c, da, mw_desc(&sm.x[s][0][2 * kk][0][0], MS_BN * 16, 128));
        else
            mw_mma<false>(c, da, mw_desc(&sm.x[s][0][2 * kk][0][0], MS_BN * 16, 128));
        mw_mma<false>(c, da, mw_desc(&sm.x[s][1][2 * kk][0][0], MS_BN * 16, 128));
    }
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

/* folds a finished unit's sums c into acc: F16, acc += c; a group g (slot
 * of stage s), acc = fma(a, c, acc) - b * sx */
template <bool GROUPED, bool HASB>
__device__ __forceinline__ void mw_fold(float (&acc)[8][4], float (&c)[8][4], const mw_smem &sm, int s, int slot,
                                        int rl, int gid, int tig)
{
    mw_fence(c);
    if constexpr (!GROUPED) {
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                acc[j][e] += c[j][e];
    } else {
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            float2 abv = sm.ab[s][rl + gid + hr * 8][slot];
#pragma unroll
            for (int j = 0; j < 8; j++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    float &av = acc[j][hr * 2 + e];
                    av = fmaf(abv.x, c[j][hr * 2 + e], av);
                    if (HASB)
                        av = fmaf(-abv.y, sm.sx[s][j * 8 + tig * 2 + e][slot], av);
                }
        }
    }
}

/* the start of k tile kt: its bytes here and visible to the tensor cores,
 * every thread past the unit that last read the stage refilled now; the
 * tile MW_PD ahead asked for. Returns kt's stage. */
template <int GS, bool GROUPED, bool HASB>
__device__ __forceinline__ int mw_tile(mw_smem &sm, const ms_args &A, int kt, int kt0, int kts, int r0, int t0)
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(MW_PD - 1) : "memory");
    /* this thread's bytes of tile kt, written by cp.async (the generic
     * proxy), made visible to the tensor cores' reads (the async proxy);
     * the barrier then makes every thread's visible */
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();
    if (kt + MW_PD < kts)
        mw_load<GS, GROUPED, HASB>(sm, A, (kt + MW_PD) % MW_ST, kt0 + kt + MW_PD, r0, t0);
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    return kt % MW_ST;
}

/* waits for every unit but the newest, then folds the one before it (in
 * prev, from stage ps, group slot pslot) */
template <bool GROUPED, bool HASB>
__device__ __forceinline__ void mw_wait1_fold(float (&acc)[8][4], float (&prev)[8][4], const mw_smem &sm, int ps,
                                              int pslot, int rl, int gid, int tig)
{
    asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
    mw_fold<GROUPED, HASB>(acc, prev, sm, ps, pslot, rl, gid, tig);
}

template <int GS, bool GROUPED, bool HASB>
__global__ void __launch_bounds__(MW_THREADS, 2) mw_gemm(const __grid_constant__ ms_args A)
{
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
    /* a device pass without wgmma (the host launches this only in a 90a build) */
    __trap();
#else
    extern __shared__ __align__(128) unsigned char mw_raw[];
    mw_smem &sm = *(mw_smem *)mw_raw;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int wr = (warp >> 2) * 64;           /* the warpgroup's rows in the block */
    int rl = wr + (warp & 3) * 16;       /* this warp's 16 rows of them */
    int gid = lane >> 2, tig = lane & 3;
    int r0 = blockIdx.x * MS_BM, t0 = blockIdx.y * MS_BN;
    int kt0 = (int)blockIdx.z * A.per, kts = A.k / MS_BK - kt0;
    if (kts > A.per)
        kts = A.per;
    float acc[8][4], c0[8][4], c1[8][4];
#pragma unroll
    for (int j = 0; j < 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            acc[j][e] = c0[j][e] = c1[j][e] = 0.0f;
#pragma unroll
    for (int s = 0; s < MW_PD; s++) {
        if (s < kts)
            mw_load<GS, GROUPED, HASB>(sm, A, s, kt0 + s, r0, t0);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
    }
    /* Units alternate between c0 and c1, and the loops hold no branch, so
     * that which buffer is in flight is plain to the compiler (else it
     * serializes the wgmmas). GS 16: two units a tile, c0 then c1; else one
     * a tile, tiles taken in pairs after the first. */
    int s = mw_tile<GS, GROUPED, HASB>(sm, A, 0, kt0, kts, r0, t0), ps;
    if (GS == 16) {
        mw_issue(c0, sm, s, wr, 0, 1);
        mw_issue(c1, sm, s, wr, 1, 1);
        mw_wait1_fold<GROUPED, HASB>(acc, c0, sm, s, 0, rl, gid, tig);
        for (int kt = 1; kt < kts; kt++) {
            ps = s;
            s = mw_tile<GS, GROUPED, HASB>(sm, A, kt, kt0, kts, r0, t0);
            mw_issue(c0, sm, s, wr, 0, 1);
            mw_wait1_fold<GROUPED, HASB>(acc, c1, sm, ps, 1, rl, gid, tig);
            mw_issue(c1, sm, s, wr, 1, 1);
            mw_wait1_fold<GROUPED, HASB>(acc, c0, sm, s, 0, rl, gid, tig);
        }
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        mw_fold<GROUPED, HASB>(acc, c1, sm, s, 1, rl, gid, tig);
    } else {
        mw_issue(c0, sm, s, wr, 0, 2);
        int kt = 1;
        for (; kt + 1 < kts; kt += 2) {
            ps = s;
            s = mw_tile<GS, GROUPED, HASB>(sm, A, kt, kt0, kts, r0, t0);
            mw_issue(c1, sm, s, wr, 0, 2);
            mw_wait1_fold<GROUPED, HASB>(acc, c0, sm, ps, 0, rl, gid, tig);
            ps = s;
            s = mw_tile<GS, GROUPED, HASB>(sm, A, kt + 1, kt0, kts, r0, t0);
            mw_issue(c0, sm, s, wr, 0, 2);
            mw_wait1_fold<GROUPED, HASB>(acc, c1, sm, ps, 0, rl, gid, tig);
        }
        if (kt < kts) { /* an even count: one tile left, into c1 */
            ps = s;
            s = mw_tile<GS, GROUPED, HASB>(sm, A, kt, kt0, kts, r0, t0);
            mw_issue(c1, sm, s, wr, 0, 2);
            mw_wait1_fold<GROUPED, HASB>(acc, c0, sm, ps, 0, rl, gid, tig);
            asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
            mw_fold<GROUPED, HASB>(acc, c1, sm, s, 0, rl, gid, tig);
        } else {
            asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
            mw_fold<GROUPED, HASB>(acc, c0, sm, s, 0, rl, gid, tig);
        }
    }
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    ms_store<1, 8>(A, (const float(&)[1][8][4])acc, r0 + rl, t0, gid, tig);
#endif
}

/* mw_gemm<...> on the stream, then ms_reduce where k was sliced */
template <int GS, bool GROUPED, bool HASB> static int mw_launch(cudaStream_t st, const ms_args *A, int slices)
{
    static bool attr_set = false;
    size_t smem = sizeof(mw_smem);
    if (!attr_set) {
        if (cudaFuncSetAttribute(mw_gemm<GS, GROUPED, HASB>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)smem) != cudaSuccess) {
            cudaGetLastError();
            return -1;
        }
        attr_set = true;
    }
    dim3 grid((unsigned)((A->rows + MS_BM - 1) / MS_BM), (unsigned)((A->n + MS_BN - 1) / MS_BN),
              (unsigned)slices);
    mw_gemm<GS, GROUPED, HASB><<<grid, MW_THREADS, smem, st>>>(*A);
    if (kc_launch_ok())
        return -1;
    if (slices > 1) {
        ms_reduce<<<kc_grid_1d((int64_t)A->n * A->rows, 256), 256, 0, st>>>(*A, slices);
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

int kc_wgmma_gemm(cudaStream_t st, int t, const ms_args *A, int slices)
{
    if (!ms_wgmma())
        return 1;
    if (t == XF_TYPE_F16)
        return mw_launch<32, false, false>(st, A, slices);
    if (t == XF_TYPE_Q6_K)
        return mw_launch<16, true, false>(st, A, slices);
    bool hasb = t == XF_TYPE_Q4_1 || t == XF_TYPE_Q5_1 || t == XF_TYPE_Q4_K || t == XF_TYPE_Q5_K;
    return hasb ? mw_launch<32, true, true>(st, A, slices) : mw_launch<32, true, false>(st, A, slices);
}
