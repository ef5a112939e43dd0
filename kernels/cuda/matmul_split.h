/* matmul_split.h: what matmul_split.cu (the prefill matmul on tensor cores,
 * mma.sync) and matmul_wgmma.cu (the same product on Hopper's wgmma) share:
 * the block tile, the arguments of one product, the async copies, the
 * exact recomputation of a non-finite output and the epilogue store; and
 * the wgmma path's entry points. Internal to kernels/cuda. */
#ifndef XF_MATMUL_SPLIT_H
#define XF_MATMUL_SPLIT_H

#include <cuda_fp16.h>
#include <stdint.h>

#include "cuda_internal.h"

#define MS_BM 128 /* weight rows (outputs) of a block */
#define MS_BN 64  /* tokens of a block */
#define MS_BK 32  /* k of one pipeline stage */

__device__ __forceinline__ void ms_cp16(void *dst, const void *src)
{
    unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void ms_cp8(void *dst, const void *src)
{
    unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void ms_cp4(void *dst, const void *src)
{
    unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(d), "l"(src) : "memory");
}

typedef struct ms_args {
    const uint8_t *wq; /* the weights as stored, row 0 of this call (ms_exact) */
    uint64_t w_row;    /* bytes of a stored row */
    int type;          /* their type */
    const float *x;    /* [n, k] f32 (ms_exact) */
    const __half *w;   /* [rows, ldw]: codes, or the F16 weights */
    int64_t ldw;       /* halves */
    const float2 *ab;  /* [rows, k / GS], GROUPED */
    const __half *hi, *lo;
    const float *inv, *sx; /* sx [n, k / GS], HASB */
    const float *bias;     /* [rows] or NULL */
    float *y;              /* [n, ldy]: this call's column 0 is row 0 of w */
    int64_t ldy;
    int rows, n, k; /* k: the product's (for F32's two codes a weight, twice x's: split_float.h) */
    int kx;         /* x's k, and the stored row's elements */
    float *part; /* split k: [slices, n, rows] partial sums (times 2^-s), summed by ms_reduce; else NULL */
    int per;     /* k tiles a slice (blockIdx.z; a job's blocks x, mw_job) */
} ms_args;

/* output (r, t) as the plain f32 dot of the decoded row with x, for an output
 * the split form left non-finite (see the header); bias not added */
static __device__ __noinline__ float ms_exact(const ms_args &A, int r, int t)
{
    const uint8_t *row = A.wq + (uint64_t)r * A.w_row;
    const float *xr = A.x + (int64_t)t * A.kx;
    float acc = 0.0f;
    for (int j = 0; j < A.kx; j++)
        acc = fmaf(xq_elem(A.type, row, j), xr[j], acc);
    return acc;
}

/* the warp's outputs (rows from r0, tokens from t0): y (bias added,
 * non-finite ones computed again), or slice z's partial sums */
template <int I, int J>
__device__ __forceinline__ void ms_store(const ms_args &A, const float (&acc)[I][J][4], int r0, int t0,
                                         int gid, int tig, int z)
{
#pragma unroll
    for (int i = 0; i < I; i++)
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            int r = r0 + i * 16 + gid + hr * 8;
            if (r >= A.rows)
                continue;
            float bv = A.bias ? A.bias[r] : 0.0f;
#pragma unroll
            for (int j = 0; j < J; j++)
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    int t = t0 + j * 8 + tig * 2 + e;
                    if (t < A.n && A.part) {
                        A.part[((int64_t)z * A.n + t) * A.rows + r] = acc[i][j][hr * 2 + e] * A.inv[t];
                    } else if (t < A.n) {
                        float iv = A.inv[t], v = acc[i][j][hr * 2 + e] * iv;
                        if (!isfinite(v) && !isnan(iv))
                            v = ms_exact(A, r, t);
                        A.y[(int64_t)t * A.ldy + r] = A.bias ? v + bv : v;
                    }
                }
        }
}

/* split k: adds the slices' partial sums (matmul_split.cu) */
__global__ void ms_reduce(const __grid_constant__ ms_args A, int slices);

/* the product on wgmma where the device and the build have it: 0 done,
 * -1 error, 1 not taken (the caller runs ms_gemm). `slices`: what
 * mma.sync's tiles would cut k into; `room`: how many slices A.part holds
 * (A.part NULL: none). */
int kc_wgmma_gemm(cudaStream_t st, int type, const ms_args *A, int slices, int room);
/* products of one x (the same hi, lo, inv, sx, n and k; one weight type)
 * in one launch, each cut in k as kc_wgmma_gemm(.., slices[i], room[i])
 * would cut it alone (its partial sums in its own A.part), then a reduce
 * for each cut one: the bits of each alone. 0 done, -1 error, 1 not taken
 * (no wgmma, more than 3, an operand a tensor map cannot describe:
 * nothing launched) */
int kc_wgmma_gemm_multi(cudaStream_t st, int type, const ms_args *const *A, int nseg, const int *slices,
                        const int *room);
/* the slices of k kc_wgmma_gemm(.., slices, room) cuts this shape into (A.part
 * set where room > 1); 0 where the device or build has no wgmma */
int kc_wgmma_plan(int type, int64_t rows, int64_t n, int64_t k, int slices, int room);
/* how many slices of k the wgmma product wants for this shape (1 where it
 * does not run): the scratch must hold that many partial sums */
int kc_wgmma_slices(int type, int64_t rows, int64_t n, int64_t k);
#define MS_WG_MAX_SLICES 8

#endif
