/* matmul_split.cu: opt's prefill MATMUL (n > MV_MAX_ROWS) on tensor cores at
 * f32-class accuracy, for F16 weights and every block type, and BF16 and
 * F32 weights where kern_cuda_split_float turns them on (split_float.h:
 * their codes). matmul.cu's kc_opt_matmul calls kc_split_matmul first;
 * where it returns 1 (k not a multiple of 32, too little scratch, BF16 or
 * F32 left off) cuBLAS SGEMM runs as before.
 *
 * Why it can be exact enough: a weight of a block type is a * q - b per group
 * of GS elements (GS = 32, or 16 for Q6_K), with q a small integer (at most
 * 8 bits) and a, b floats of the group; an F16 weight is itself an f16. Both
 * q and an f16 are exact as f16 tensor-core operands. What would lose bits
 * is x, so x is split per token into two f16 planes, x * 2^s = hi + lo, with
 * 2^s putting the token's largest |x| in [2^14, 2^15) (f16's range, where
 * hi + lo keeps 22 of x's 24 bits; elements under 2^-24 of the largest lose
 * theirs, below 2^-39 of that largest). Then, per group and per token,
 *     sum_g w x = a * (q . hi + q . lo) - b * sum_g x
 * with both products on tensor cores (m16n8k16, f16 in, f32 accumulate) and
 * the group's scaling in f32 registers; y = acc * 2^-s (+ bias). The error is
 * that of f32 accumulation plus 2^-23 per x: the same class as SGEMM, unlike
 * rounding x to f16 (the `tc` variant, ~3e-4) or splitting the weights too
 * (bf16 x 3, scripts/gpu-notes.md, ~20x SGEMM's error). Deterministic: every
 * output is one thread's fixed sequence of instructions.
 *
 * Non-finite values: the split form can turn the ref's Inf into NaN (w = Inf
 * times a lo of 0; a * Inf - b * Inf), so an output that comes out Inf or NaN
 * is computed again, alone, as the plain f32 dot of the decoded weights with
 * x (ms_exact), unless its token's x holds a NaN (then every output of the
 * token is NaN in any order). Such outputs are exactly those with an Inf or
 * NaN among their inputs (or an f32 overflow): free when there are none,
 * slow (a dot per output) where there are.
 *
 * Why a tensor-core sum never runs long: the MMA's f32 accumulation aligns
 * its addends to the largest and truncates (not round-to-nearest), so a sum
 * kept in the accumulator across all of k drifts with k (GPT-2 F16's logits:
 * 8x SGEMM's error against the float64 reference, sessions/reference.xfs).
 * Each group's (or, for F16, each 32-wide k tile's) products start from zero
 * and join the running sum in an f32 fma or add, which rounds.
 *
 * Passes of one call (all on the stream, capturable, scratch only):
 *   ms_x_split: x [n, k] f32 -> hi, lo [n, k] f16, inv [n] = 2^-s, and for
 *     types with b the group sums sx [n, k/GS] of x * 2^s (F32 weights:
 *     hi, lo [n, 2k], each group of 32 twice);
 *   ms_codes<T> (block types, BF16 and F32): weight rows [r0, r0 + rows) -> q [rows, k] f16
 *     and (a, b) [rows, k/GS], as many rows at a time as the scratch holds
 *     (8 codes a thread: one 16-byte store);
 *   ms_gemm: 128 rows x 64 tokens a block of 4 warps (64 x 32 each), k in
 *     tiles of 32 through a 4-stage cp.async pipeline, ldmatrix from rows
 *     padded to 80 bytes (no bank conflicts);
 *   where the output tiles alone would leave SMs idle (a 896-row matrix of
 *     512 tokens is 56 blocks), k is cut into slices (blockIdx.z,
 *     ms_slices) whose partial sums ms_reduce adds in slice order: still one
 *     fixed order per output, so still deterministic. */
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "kernels_cuda.h"
#include "matmul_split.h"
#include "split_float.h"

#define MS_LD 40       /* halves per shared row: 80 bytes, 8 rows hit 8 distinct 16-byte bank groups */
#define MS_ST 4        /* pipeline stages */
#define MS_THREADS 128 /* 4 warps: 2 along the rows x 2 along the tokens */
#define MS_WM 64       /* a warp's rows: 4 row tiles of 16 */
#define MS_WN 32       /* a warp's tokens: 4 token tiles of 8 */
#define MS_OCC 2       /* blocks an SM (shared memory and registers allow two) */

/* Why these sizes (H100, ncu of the 64 x 64 / 32 x 32 version at 58 useful
 * TFLOP/s on a 4864 x 896 x 512 product): L2 throughput was 55% busy, the
 * tensor pipe 22%, and a warp's 32 x 32 tile spent 6 ldmatrix on 16 MMAs.
 * A 64 x 32 warp tile spends 8 on 32, and a 128 x 64 block reads a third
 * less of L2 per product. Two blocks an SM (90 KB of shared memory each,
 * up to 255 registers a thread for the two accumulator sets). */
typedef struct ms_smem {
    __half w[MS_ST][MS_BM][MS_LD];    /* q codes or F16 weights [row][k] */
    __half x[MS_ST][2][MS_BN][MS_LD]; /* hi, lo [token][k] */
    float2 ab[MS_ST][MS_BM][2];       /* (a, b) of the tile's 1 or 2 groups */
    float sx[MS_ST][MS_BN][2];        /* group sums of x * 2^s */
} ms_smem;

/* ---- x: two f16 planes per token, its scale, its group sums ------------- */

__global__ void __launch_bounds__(256)
    ms_x_split(__half *hi, __half *lo, float *inv, float *sx, const float *x, int64_t k, int gs, bool dup)
{
    __shared__ float red[8];
    __shared__ int nan_seen;
    int64_t t = blockIdx.x;
    const float *xr = x + t * k;
    float mx = 0.0f;
    if (threadIdx.x == 0)
        nan_seen = 0;
    __syncthreads();
    bool nan = false;
    for (int64_t j = threadIdx.x; j < k; j += 256) {
        float v = fabsf(xr[j]);
        if (v <= 3.4028235e38f) /* finite: Inf and NaN pass through the planes as themselves */
            mx = fmaxf(mx, v);
        nan |= isnan(v);
    }
    if (nan)
        nan_seen = 1;
    for (int o = 16; o > 0; o >>= 1)
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    if ((threadIdx.x & 31) == 0)
        red[threadIdx.x >> 5] = mx;
    __syncthreads();
    mx = red[0];
    for (int i = 1; i < 8; i++)
        mx = fmaxf(mx, red[i]);
    int e = 0;
    if (mx > 0.0f)
        frexpf(mx, &e); /* mx = f * 2^e, f in [0.5, 1) */
    int s = mx > 0.0f ? 15 - e : 0;
    if (s > 115) /* |x| < 2^-100: 2^-s stays a normal float */
        s = 115;
    if (threadIdx.x == 0) /* NaN: the token's x has one, and so has every output of it */
        inv[t] = nan_seen ? __int_as_float(0x7fc00000) : ldexpf(1.0f, -s);
    /* dup (F32 weights): planes of 2k, each group of 32 twice, for the
     * weights' hi codes and their lo codes (split_float.h) */
    int64_t kp = dup ? 2 * k : k;
    for (int64_t j = threadIdx.x; j < k; j += 256) {
        float v = ldexpf(xr[j], s);
        __half h = __float2half_rn(v);
        float hf = __half2float(h);
        __half l = __float2half_rn(isfinite(hf) ? v - hf : 0.0f);
        int64_t at = t * kp + (dup ? msf_f32_at(j) : j);
        hi[at] = h;
        lo[at] = l;
        if (dup) {
            hi[at + 32] = h;
            lo[at + 32] = l;
        }
    }
    if (sx) {
        int64_t ng = k / gs;
        for (int64_t g = threadIdx.x; g < ng; g += 256) {
            float acc = 0.0f;
            for (int i = 0; i < gs; i++)
                acc += ldexpf(xr[g * gs + i], s);
            sx[t * ng + g] = acc;
        }
    }
}

/* ---- block-type weights: integer codes and the group's (a, b) ----------- */

/* The codes of elements [e0, e0 + 8) of a row (e0 a multiple of 8), and the
 * (a, b) of group g, with w = a * q - b. The layouts are xq_elem's
 * (cuda_internal.h); a and b are rounded as xq_elem rounds its d1 and m1,
 * so a * q - b is the weight it decodes. */
template <int T> __device__ __forceinline__ void ms_code8(const uint8_t *row, int64_t e0, __half *q, bool sb)
{
    if (T == XF_TYPE_Q4_0 || T == XF_TYPE_Q4_1) {
        const bool mn = T == XF_TYPE_Q4_1;
        const uint8_t *qs = row + (e0 / 32) * (mn ? 20 : 18) + (mn ? 4 : 2);
        int e = (int)(e0 % 32);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int v = e < 16 ? (qs[e + i] & 0xF) : (qs[e - 16 + i] >> 4);
            q[i] = __int2half_rn(mn ? v : v - 8);
        }
    } else if (T == XF_TYPE_Q5_0 || T == XF_TYPE_Q5_1) {
        const bool mn = T == XF_TYPE_Q5_1;
        const uint8_t *h = row + (e0 / 32) * (mn ? 24 : 22) + (mn ? 4 : 2);
        uint32_t qh =
            (uint32_t)h[0] | ((uint32_t)h[1] << 8) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 24);
        const uint8_t *qs = h + 4;
        int e = (int)(e0 % 32);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int v = (e < 16 ? (qs[e + i] & 0xF) : (qs[e - 16 + i] >> 4)) | (int)(((qh >> (e + i)) & 1u) << 4);
            q[i] = __int2half_rn(mn ? v : v - 16);
        }
    } else if (T == XF_TYPE_Q8_0) {
        const uint8_t *qs = row + (e0 / 32) * 34 + 2 + e0 % 32;
#pragma unroll
        for (int i = 0; i < 8; i++)
            q[i] = __int2half_rn((int)(int8_t)qs[i]);
    } else if (T == XF_TYPE_Q4_K || T == XF_TYPE_Q5_K) {
        const bool five = T == XF_TYPE_Q5_K;
        const uint8_t *bl = row + (e0 / 256) * (five ? 176 : 144);
        int u = (int)(e0 % 256) / 32, l0 = (int)(e0 % 32);
        /* byte loads: a weight's start is only as aligned as its file made it */
        const uint8_t *qs = bl + (five ? 48 : 16) + (u / 2) * 32 + l0;
        int sc = 1, mn; /* the super-block form: the group's 6-bit scale in the code */
        if (sb)
            xq_scale_min_k4(u, bl + 4, &sc, &mn);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int v = (u & 1) ? (qs[i] >> 4) : (qs[i] & 0xF);
            if (five && ((bl[16 + l0 + i] >> u) & 1))
                v += 16;
            q[i] = __int2half_rn(v * sc);
        }
    } else if (T == XF_TYPE_Q6_K) {
        const uint8_t *bl = row + (e0 / 256) * 210;
        int e = (int)(e0 % 256);
        int half = e / 128, part = (e % 128) / 32, l0 = e % 32;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            int l = l0 + i;
            int ql = bl[half * 64 + (part & 1) * 32 + l];
            int v =
                ((part >> 1) ? (ql >> 4) : (ql & 0xF)) | (((bl[128 + half * 32 + l] >> (2 * part)) & 3) << 4);
            q[i] = __int2half_rn(v - 32);
        }
    } else if (T == XF_TYPE_MXFP4) {
        /* codes are the e2m1 values times 2, integers in [-12, 12]; the
         * scale xq_e8m0_half already halves */
        const uint8_t *qs = row + (e0 / 32) * 17 + 1;
        int e = (int)(e0 % 32);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            unsigned c = e < 16 ? (qs[e + i] & 0xFu) : (unsigned)(qs[e - 16 + i] >> 4);
            q[i] = __float2half_rn(xq_mx_val(c));
        }
    }
}

template <int T> __device__ __forceinline__ float2 ms_scale(const uint8_t *row, int64_t g, bool sb)
{
    float a = 0.0f, b = 0.0f;
    if (T == XF_TYPE_Q4_0 || T == XF_TYPE_Q4_1) {
        const bool mn = T == XF_TYPE_Q4_1;
        const uint8_t *bl = row + g * (mn ? 20 : 18);
        a = xq_half(bl);
        b = mn ? -xq_half(bl + 2) : 0.0f;
    } else if (T == XF_TYPE_Q5_0 || T == XF_TYPE_Q5_1) {
        const bool mn = T == XF_TYPE_Q5_1;
        const uint8_t *bl = row + g * (mn ? 24 : 22);
        a = xq_half(bl);
        b = mn ? -xq_half(bl + 2) : 0.0f;
    } else if (T == XF_TYPE_Q8_0) {
        a = xq_half(row + g * 34);
    } else if (T == XF_TYPE_Q4_K || T == XF_TYPE_Q5_K) {
        const uint8_t *bl = row + (g / 8) * (T == XF_TYPE_Q5_K ? 176 : 144);
        int sc, mn;
        xq_scale_min_k4((int)(g % 8), bl + 4, &sc, &mn);
        a = sb ? xq_half(bl) : __fmul_rn(xq_half(bl), (float)sc);
        b = __fmul_rn(xq_half(bl + 2), (float)mn);
    } else if (T == XF_TYPE_Q6_K) {
        /* groups of 16: one int8 scale each */
        const uint8_t *bl = row + (g / 16) * 210;
        int e0 = (int)(g % 16) * 16;
        int half = e0 / 128, part = (e0 % 128) / 32, l0 = e0 % 32;
        a = __fmul_rn(xq_half(bl + 208), (float)(int8_t)bl[192 + half * 8 + part * 2 + l0 / 16]);
    } else if (T == XF_TYPE_MXFP4) {
        a = xq_e8m0_half(row[g * 17]);
    }
    return make_float2(a, b);
}

template <int T> __host__ __device__ constexpr int ms_gs()
{
    return T == XF_TYPE_Q6_K ? 16 : 32;
}
template <int T> __host__ __device__ constexpr bool ms_hasb()
{
    return T == XF_TYPE_Q4_1 || T == XF_TYPE_Q5_1 || T == XF_TYPE_Q4_K || T == XF_TYPE_Q5_K;
}

/* rows [0, rows) of w (w_row bytes each) -> q [rows, k], ab [rows, k / GS]
 * (F32: q [rows, 2k], ab [rows, 2k / 32], split_float.h). A thread writes 8
 * codes (one 16-byte store; a warp 512 consecutive bytes) and, where they
 * open a group, the group's (a, b). */
template <int T>
__global__ void ms_codes(__half *q, float2 *ab, const uint8_t *w, uint64_t w_row, int64_t rows, int64_t k, bool sb)
{
    const int gs = ms_gs<T>();
    const bool fl = T == XF_TYPE_BF16 || T == XF_TYPE_F32, two = T == XF_TYPE_F32;
    int64_t per = k / 8, total = rows * per, kp = two ? 2 * k : k;
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < total;
         o += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = o / per, e0 = (o % per) * 8;
        const uint8_t *row = w + (uint64_t)r * w_row;
        __align__(16) __half v[8], v2[8];
        if constexpr (fl) {
            float a[2];
            msf_code8(row, e0, !two, v, v2, a);
            int64_t at = r * kp + (two ? msf_f32_at(e0) : e0);
            *(uint4 *)(q + at) = *(const uint4 *)v;
            if (two)
                *(uint4 *)(q + at + 32) = *(const uint4 *)v2;
            if (e0 % 32 == 0) {
                float2 *g = ab + r * (kp / 32) + (two ? 2 : 1) * (e0 / 32);
                g[0] = make_float2(a[0], 0.0f);
                if (two)
                    g[1] = make_float2(a[1], 0.0f);
            }
        } else {
            ms_code8<T>(row, e0, v, sb);
            *(uint4 *)(q + r * k + e0) = *(const uint4 *)v;
            if (e0 % gs == 0)
                ab[r * (k / gs) + e0 / gs] = ms_scale<T>(row, e0 / gs, sb);
        }
    }
}

/* ---- the tensor-core product ------------------------------------------- */

__device__ __forceinline__ void ms_ldm4(uint32_t *r, const void *p)
{
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

/* d += a . b, one m16n8k16 tile: f16 in, f32 accumulate */
__device__ __forceinline__ void ms_mma(float *d, const uint32_t *a, const uint32_t *b)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* d = a . b (the accumulator starts from zero: a group's or tile's first product) */
__device__ __forceinline__ void ms_mma0(float *d, const uint32_t *a, const uint32_t *b)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%10,%10,%10,%10};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(0.0f));
}

/* Stage s <- k tile kt: weight rows and tokens past the end are clamped to
 * the last one (loaded, never stored). */
template <int GS, bool GROUPED, bool HASB>
__device__ __forceinline__ void ms_load(ms_smem &sm, const ms_args &A, int s, int kt, int r0, int t0)
{
    int tid = threadIdx.x, k0 = kt * MS_BK;
#pragma unroll
    for (int i = 0; i < MS_BM * 4 / MS_THREADS; i++) { /* MS_BM rows x 4 chunks of 16 bytes */
        int c = tid + i * MS_THREADS, r = c >> 2, part = c & 3;
        int64_t gr = r0 + r < A.rows ? r0 + r : A.rows - 1;
        ms_cp16(&sm.w[s][r][part * 8], A.w + gr * A.ldw + k0 + part * 8);
    }
#pragma unroll
    for (int i = 0; i < 2 * MS_BN * 4 / MS_THREADS; i++) { /* 2 planes x MS_BN tokens x 4 chunks */
        int c = tid + i * MS_THREADS, p = c / (MS_BN * 4), t = (c >> 2) % MS_BN, part = c & 3;
        int64_t gt = t0 + t < A.n ? t0 + t : A.n - 1;
        ms_cp16(&sm.x[s][p][t][part * 8], (p ? A.lo : A.hi) + gt * A.k + k0 + part * 8);
    }
    if (GROUPED) {
        const int ng = MS_BK / GS, kg = A.k / GS, g0 = k0 / GS;
        for (int rr = tid; rr < MS_BM; rr += MS_THREADS) {
            int64_t gr = r0 + rr < A.rows ? r0 + rr : A.rows - 1;
            const float2 *src = A.ab + gr * kg + g0;
            if (ng == 2)
                ms_cp16(&sm.ab[s][rr][0], src);
            else
                ms_cp8(&sm.ab[s][rr][0], src);
        }
        if (HASB && tid < MS_BN) {
            int64_t gt = t0 + tid < A.n ? t0 + tid : A.n - 1;
            const float *src = A.sx + gt * kg + g0;
            if (ng == 2)
                ms_cp8(&sm.sx[s][tid][0], src);
            else
                ms_cp4(&sm.sx[s][tid][0], src);
        }
    }
}


template <int GS, bool GROUPED, bool HASB>
__global__ void __launch_bounds__(MS_THREADS, 2) ms_gemm(const __grid_constant__ ms_args A)
{
    extern __shared__ __align__(16) unsigned char ms_raw[];
    ms_smem &sm = *(ms_smem *)ms_raw;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    int wm = (warp & 1) * MS_WM, wn = (warp >> 1) * MS_WN; /* the warp's rows and tokens in the block */
    int gid = lane >> 2, tig = lane & 3;
    int r0 = blockIdx.x * MS_BM, t0 = blockIdx.y * MS_BN;
    int kt0 = (int)blockIdx.z * A.per, kts = A.k / MS_BK - kt0; /* this slice: tiles [kt0, kt0 + kts) */
    if (kts > A.per)
        kts = A.per;

    float acc[4][4][4]; /* [row tile 16][token tile 8][fragment] */
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                acc[i][j][e] = 0.0f;

#pragma unroll
    for (int s = 0; s < MS_ST - 1; s++) {
        if (s < kts)
            ms_load<GS, GROUPED, HASB>(sm, A, s, kt0 + s, r0, t0);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
    }
    for (int kt = 0; kt < kts; kt++) {
        asm volatile("cp.async.wait_group %0;\n" ::"n"(MS_ST - 2) : "memory");
        __syncthreads(); /* tile kt is here; every warp is done with tile kt - 1's stage */
        if (kt + MS_ST - 1 < kts)
            ms_load<GS, GROUPED, HASB>(sm, A, (kt + MS_ST - 1) % MS_ST, kt0 + kt + MS_ST - 1, r0, t0);
        asm volatile("cp.async.commit_group;\n" ::: "memory");
        int s = kt % MS_ST;
        /* every fragment of the tile first (16 ldmatrix in flight), then the
         * products row tile pair by row tile pair, so that only a pair's
         * sums c are live (32 registers, not 64) */
        uint32_t af[2][4][4], bf[2][2][4][2]; /* [kk][row tile], [kk][plane][token tile] */
#pragma unroll
        for (int kk = 0; kk < 2; kk++) {
#pragma unroll
            for (int i = 0; i < 4; i++)
                ms_ldm4(af[kk][i], &sm.w[s][wm + i * 16 + (lane & 15)][kk * 16 + (lane >> 4) * 8]);
#pragma unroll
            for (int p = 0; p < 2; p++)
#pragma unroll
                for (int jj = 0; jj < 2; jj++) {
                    uint32_t r[4];
                    ms_ldm4(r, &sm.x[s][p][wn + jj * 16 + (lane & 7) + ((lane >> 4) << 3)]
                                    [kk * 16 + ((lane >> 3) & 1) * 8]);
                    bf[kk][p][2 * jj][0] = r[0], bf[kk][p][2 * jj][1] = r[1];
                    bf[kk][p][2 * jj + 1][0] = r[2], bf[kk][p][2 * jj + 1][1] = r[3];
                }
        }
        float sxv[2][4][2]; /* [group][token tile][e]: this thread's tokens' group sums */
        if (HASB) {
#pragma unroll
            for (int g = 0; g < MS_BK / GS; g++)
#pragma unroll
                for (int j = 0; j < 4; j++)
#pragma unroll
                    for (int e = 0; e < 2; e++)
                        sxv[g][j][e] = sm.sx[s][wn + j * 8 + tig * 2 + e][g];
        }
#pragma unroll
        for (int i0 = 0; i0 < 4; i0 += 2) {
            float c[2][4][4]; /* this group's (GROUPED) or k tile's q . x: see the note below */
#pragma unroll
            for (int kk = 0; kk < 2; kk++) {
                /* the first product of a group (GROUPED) or of the k tile
                 * (F16) starts the sum c from zero */
                const bool fresh = kk == 0 || (GROUPED && GS == 16);
#pragma unroll
                for (int p = 0; p < 2; p++)
#pragma unroll
                    for (int ii = 0; ii < 2; ii++)
#pragma unroll
                        for (int j = 0; j < 4; j++) {
                            if (fresh && p == 0)
                                ms_mma0(c[ii][j], af[kk][i0 + ii], bf[kk][p][j]);
                            else
                                ms_mma(c[ii][j], af[kk][i0 + ii], bf[kk][p][j]);
                        }
                if (GROUPED && (GS == 16 || kk == 1)) {
                    const int g = GS == 16 ? kk : 0;
#pragma unroll
                    for (int ii = 0; ii < 2; ii++)
#pragma unroll
                        for (int hr = 0; hr < 2; hr++) {
                            float2 abv = sm.ab[s][wm + (i0 + ii) * 16 + gid + hr * 8][g];
#pragma unroll
                            for (int j = 0; j < 4; j++)
#pragma unroll
                                for (int e = 0; e < 2; e++) {
                                    float &av = acc[i0 + ii][j][hr * 2 + e];
                                    av = fmaf(abv.x, c[ii][j][hr * 2 + e], av);
                                    if (HASB)
                                        av = fmaf(-abv.y, sxv[g][j][e], av);
                                }
                        }
                }
            }
            if (!GROUPED) {
                /* F16 weights: acc += the tile's sum in an f32 add that rounds */
#pragma unroll
                for (int ii = 0; ii < 2; ii++)
#pragma unroll
                    for (int j = 0; j < 4; j++)
#pragma unroll
                        for (int e = 0; e < 4; e++)
                            acc[i0 + ii][j][e] += c[ii][j][e];
            }
        }
    }
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    ms_store<4, 4>(A, acc, r0 + wm, t0 + wn, gid, tig, (int)blockIdx.z);
}

/* split k: y = the slices' partial sums added in slice order (+ bias); the
 * non-finite rule of the unsplit epilogue */
__global__ void ms_reduce(const __grid_constant__ ms_args A, int slices)
{
    int64_t total = (int64_t)A.n * A.rows;
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < total;
         o += (int64_t)gridDim.x * blockDim.x) {
        int t = (int)(o / A.rows), r = (int)(o % A.rows);
        float v = A.part[o];
        for (int z = 1; z < slices; z++)
            v += A.part[(int64_t)z * total + o];
        float iv = A.inv[t];
        if (!isfinite(v) && !isnan(iv))
            v = ms_exact(A, r, t);
        A.y[(int64_t)t * A.ldy + r] = A.bias ? v + A.bias[r] : v;
    }
}

/* ---- host ------------------------------------------------------------- */

static size_t ms_align(size_t v)
{
    return (v + 255) & ~(size_t)255;
}

static bool ms_type_ok(int t)
{
    switch (t) {
    case XF_TYPE_BF16:
    case XF_TYPE_F32:
        return kc_split_float(t) != 0;
    case XF_TYPE_F16:
    case XF_TYPE_Q4_0:
    case XF_TYPE_Q4_1:
    case XF_TYPE_Q5_0:
    case XF_TYPE_Q5_1:
    case XF_TYPE_Q8_0:
    case XF_TYPE_Q4_K:
    case XF_TYPE_Q5_K:
    case XF_TYPE_Q6_K:
    case XF_TYPE_MXFP4:
        return true;
    default:
        return false;
    }
}

static int ms_gs_of(int t)
{
    return t == XF_TYPE_Q6_K ? 16 : 32;
}
static bool ms_hasb_of(int t)
{
    return t == XF_TYPE_Q4_1 || t == XF_TYPE_Q5_1 || t == XF_TYPE_Q4_K || t == XF_TYPE_Q5_K;
}

/* the product's k: F32 weights have two codes an element (split_float.h) */
static int64_t ms_kp(int t, int64_t k)
{
    return msf_kp(t == XF_TYPE_F32, k);
}

/* bytes of scratch for x's planes, scale and group sums */
static size_t ms_x_bytes(int t, int64_t n, int64_t k)
{
    size_t plane = ms_align((size_t)n * (size_t)ms_kp(t, k) * sizeof(__half));
    size_t sx = ms_hasb_of(t) ? ms_align((size_t)n * (size_t)(k / ms_gs_of(t)) * sizeof(float)) : 0;
    return 2 * plane + ms_align((size_t)n * sizeof(float)) + sx;
}

/* bytes of scratch a weight row's codes and (a, b) take (0 for F16) */
static size_t ms_row_bytes(int t, int64_t k)
{
    if (t == XF_TYPE_F16)
        return 0;
    k = ms_kp(t, k);
    return (size_t)k * sizeof(__half) + (size_t)(k / ms_gs_of(t)) * sizeof(float2);
}

/* The GPU's SM count, asked once; 0 if the device does not say. */
#define MS_MIN_TILES 8 /* k tiles a slice at least */
#define MS_MAX_SLICES 8

/* How many slices of k a product of `blocks` output tiles and kts k tiles
 * runs in: 1 where the tiles give every SM a block; else as many as still
 * fit one wave of MS_OCC blocks an SM (an 896-row matrix of 512 tokens is
 * 56 blocks: 4 slices, 224 blocks on 132 SMs x 2; 5 would start a second
 * wave for 16 of them), each slice MS_MIN_TILES tiles or more. Splitting
 * more than that was measured slower (H100, session 9: the 4864-row
 * matrices cut in 5 wrote 50 MB of partial sums each; 0.5B Q4_K_M prefill
 * 13.9 -> 15.9 ms). Deterministic for a shape and a device. */
static int ms_slices(int64_t blocks, int kts)
{
    int sms = kc_sm_count();
    if (sms <= 0 || blocks <= 0 || blocks >= sms)
        return 1;
    int64_t want = (int64_t)MS_OCC * sms / blocks;
    int most = kts / MS_MIN_TILES;
    if (most > MS_MAX_SLICES)
        most = MS_MAX_SLICES;
    int sl = (int)(want < most ? want : most);
    if (sl < 1)
        return 1;
    /* the count whose slices all get tiles */
    int per = (kts + sl - 1) / sl;
    return (kts + per - 1) / per;
}

static int64_t ms_tiles(int64_t rows, int64_t n)
{
    return ((rows + MS_BM - 1) / MS_BM) * ((n + MS_BN - 1) / MS_BN);
}

/* bytes of the split-k partial sums of `rows` weight rows (0: one slice) */
static size_t ms_part_bytes(int t, int64_t rows, int64_t n, int64_t k)
{
    int sl = ms_slices(ms_tiles(rows, n), (int)(k / MS_BK)), wg = kc_wgmma_slices(t, rows, n, k);
    if (wg > sl)
        sl = wg;
    return sl > 1 ? ms_align((size_t)sl * (size_t)n * (size_t)rows * sizeof(float)) : 0;
}

/* the shapes the path takes: k whole tiles, every size an int, the token
 * tiles within a grid's y (65535) */
static bool ms_shape_ok(const kern_args *a)
{
    /* m: room for a row tile's round-up in int (rows + 191) */
    return ms_type_ok(a->w_type) && a->k > 0 && a->k % MS_BK == 0 && kc_row_bytes(a->w_type, a->k) != 0 &&
           a->m > 0 && a->n > 0 &&
           a->m <= INT32_MAX - 256 && ms_kp(a->w_type, a->k) <= INT32_MAX &&
           (a->n + MS_BN - 1) / MS_BN <= 65535;
}

extern "C" size_t kc_split_matmul_scratch(const kern_args *a)
{
    if (!ms_shape_ok(a))
        return 0;
    return ms_x_bytes(a->w_type, a->n, a->k) + ms_part_bytes(a->w_type, a->m, a->n, ms_kp(a->w_type, a->k)) +
           ms_align((size_t)a->m * ms_row_bytes(a->w_type, a->k)) + 256;
}

template <int GS, bool GROUPED, bool HASB> static int ms_launch(cudaStream_t st, const ms_args *A, int slices)
{
    static bool attr_set = false; /* per instantiation; the attribute is the function's, not a stream op */
    size_t smem = sizeof(ms_smem);
    if (!attr_set) {
        if (cudaFuncSetAttribute(ms_gemm<GS, GROUPED, HASB>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)smem) != cudaSuccess) {
            cudaGetLastError();
            return -1;
        }
        attr_set = true;
    }
    dim3 grid((unsigned)((A->rows + MS_BM - 1) / MS_BM), (unsigned)((A->n + MS_BN - 1) / MS_BN),
              (unsigned)slices);
    ms_gemm<GS, GROUPED, HASB><<<grid, MS_THREADS, smem, st>>>(*A);
    if (kc_launch_ok())
        return -1;
    if (slices > 1) {
        ms_reduce<<<kc_grid_1d((int64_t)A->n * A->rows, 256), 256, 0, st>>>(*A, slices);
        return kc_launch_ok();
    }
    return 0;
}

template <int T> struct ms_codes_launch {
    static int run(cudaStream_t st, __half *q, float2 *ab, const void *w, int64_t r0, int64_t rows, int64_t k)
    {
        if (T == XF_TYPE_F16)
            return -1;
        uint64_t w_row = kc_row_bytes(T, k);
        ms_codes<T><<<kc_grid_1d(rows * (k / 8), 256), 256, 0, st>>>(
            q, ab, (const uint8_t *)w + (uint64_t)r0 * w_row, w_row, rows, k, kc_kfold(T) != 0);
        return kc_launch_ok();
    }
};

extern "C" size_t kc_split_codes_bytes(int t, int64_t rows, int64_t k)
{
    if (!ms_type_ok(t) || t == XF_TYPE_F16 || rows <= 0 || k <= 0 || k % MS_BK || !kc_row_bytes(t, k) ||
        rows > INT32_MAX || ms_kp(t, k) > INT32_MAX)
        return 0;
    size_t rb = ms_row_bytes(t, k);
    if ((uint64_t)rows > SIZE_MAX / rb)
        return 0;
    return (size_t)rows * rb;
}

/* the layout kc_split_matmul gives its scratch codes: q [rows, k], then ab */
extern "C" int kc_split_codes_make(cudaStream_t st, int t, void *dst, const void *w, int64_t rows, int64_t k)
{
    if (!kc_split_codes_bytes(t, rows, k))
        return -1;
    __half *q = (__half *)dst;
    float2 *ab = (float2 *)(q + rows * ms_kp(t, k));
    return kc_dispatch_type<ms_codes_launch>(t, st, q, ab, w, (int64_t)0, rows, k) ? -1 : 0;
}

static int ms_gemm_any(cudaStream_t st, int t, const ms_args *A, int slices, int room)
{
    int rc = kc_wgmma_gemm(st, t, A, slices, room);
    if (rc != 1)
        return rc;
    ms_args one;
    if (slices == 1 && A->part) { /* mma.sync's store takes a partial sums buffer for slices */
        one = *A;
        one.part = NULL;
        A = &one;
    }
    if (t == XF_TYPE_F16)
        return ms_launch<32, false, false>(st, A, slices);
    if (ms_gs_of(t) == 16)
        return ms_launch<16, true, false>(st, A, slices);
    return ms_hasb_of(t) ? ms_launch<32, true, true>(st, A, slices)
                         : ms_launch<32, true, false>(st, A, slices);
}

/* How a product of `rows` rows cuts k, given `room` bytes for partial
 * sums: *holds the slices the room holds (at most MS_WG_MAX_SLICES), the
 * return mma.sync's slices (1 where the room cannot hold them). The one
 * place this is decided: kc_split_matmul, and the launch of several, which
 * must cut each product as kc_split_matmul would alone. */
static int ms_plan(int64_t rows, int64_t n, int64_t k, size_t room, int *holds)
{
    size_t one = (size_t)n * (size_t)rows * sizeof(float);
    *holds = (int)(room / one < MS_WG_MAX_SLICES ? room / one : MS_WG_MAX_SLICES);
    int sl = ms_slices(ms_tiles(rows, n), (int)(k / MS_BK));
    return sl > *holds ? 1 : sl;
}

/* the arguments of one product of rows [r0, r0 + rows) of a's weight,
 * whose codes (or F16 rows) start at w, (a, b) at ab; x's planes in p */
static void ms_fill(ms_args *A, const kern_args *a, const __half *w, const float2 *ab, int64_t r0,
                    int64_t rows, const char *p)
{
    int t = a->w_type;
    int64_t kp = ms_kp(t, a->k);
    size_t plane = ms_align((size_t)a->n * (size_t)kp * sizeof(__half));
    memset(A, 0, sizeof *A);
    A->w = w;
    A->ab = ab;
    A->w_row = kc_row_bytes(t, a->k);
    A->wq = (const uint8_t *)a->w + (uint64_t)r0 * A->w_row;
    A->type = t;
    A->x = a->x;
    A->ldw = kp;
    A->hi = (const __half *)p, A->lo = (const __half *)(p + plane);
    A->inv = (const float *)(p + 2 * plane);
    A->sx = ms_hasb_of(t) ? (const float *)(p + 2 * plane + ms_align((size_t)a->n * sizeof(float))) : NULL;
    A->bias = a->b ? a->b + r0 : NULL;
    A->y = a->y + r0;
    A->ldy = a->m;
    A->rows = (int)rows, A->n = (int)a->n, A->k = (int)kp, A->kx = (int)a->k;
}

/* x [n, k] of a into its planes, scale and group sums at the scratch p
 * (the layout ms_fill reads) */
static int ms_split_x(cudaStream_t st, char *p, const kern_args *a)
{
    ms_args A;
    ms_fill(&A, a, NULL, NULL, 0, 0, p);
    ms_x_split<<<(unsigned)a->n, 256, 0, st>>>((__half *)A.hi, (__half *)A.lo, (float *)A.inv, (float *)A.sx,
                                               a->x, a->k, ms_gs_of(a->w_type), a->w_type == XF_TYPE_F32);
    return kc_launch_ok();
}

/* 0 done, 1 not a case it takes (the caller runs SGEMM), -1 error */
extern "C" int kc_split_matmul(kern_ctx *ctx, const kern_args *a)
{
    int t = a->w_type;
    if (!ms_shape_ok(a))
        return 1;
    /* the float types' rows are read whole (F16 by the product, BF16 and
     * F32 by their codes' typed loads) */
    if ((t == XF_TYPE_F16 || t == XF_TYPE_BF16 || t == XF_TYPE_F32) && !kc_aligned16(a->w))
        return 1;
    if (!ctx || !ctx->scratch || !kc_aligned16(ctx->scratch))
        return 1;
    int64_t kp = ms_kp(t, a->k);
    size_t xb = ms_x_bytes(t, a->n, a->k), rb = ms_row_bytes(t, a->k);
    if (ctx->scratch_size < xb + 256)
        return 1;
    /* codes kept since the weight was loaded (matmul_codes.cu): none made here */
    const __half *kept = rb ? (const __half *)kc_codes_find(ctx, a->w, t, a->m, a->k) : NULL;
    if (kept)
        rb = 0;
    int64_t cap = a->m;
    if (rb) {
        /* all the rows' codes at once where they fit (the scratch this
         * variant declares); else whole row tiles at a time. (Until session
         * 27 the room was rounded down to a tile first, so a matrix of fewer
         * rows than a tile, given exactly what it declared, went to SGEMM.) */
        int64_t room = (int64_t)((ctx->scratch_size - xb - 256) / rb);
        if (room < a->m)
            cap = room / MS_BM * MS_BM;
        if (cap < 1)
            return 1;
    }
    cudaStream_t st = kc_stream(ctx);
    char *p = (char *)ctx->scratch;
    if (ms_split_x(st, p, a))
        return -1;
    __half *q = (__half *)(p + xb);
    float2 *ab = rb ? (float2 *)((char *)q + (size_t)cap * (size_t)kp * sizeof(__half)) : NULL;
    /* the split-k partials: what is left after the codes */
    size_t used = xb + ms_align((size_t)cap * rb);
    float *part = (float *)(p + used);
    size_t room = ctx->scratch_size > used ? ctx->scratch_size - used : 0;
    for (int64_t r0 = 0; r0 < a->m; r0 += cap) {
        int64_t rows = a->m - r0 < cap ? a->m - r0 : cap;
        int holds, sl = ms_plan(rows, a->n, kp, room, &holds);
        ms_args A;
        if (kept) { /* cap is all of m: one pass of the loop */
            ms_fill(&A, a, kept, (const float2 *)(kept + a->m * kp), r0, rows, p);
        } else if (rb) {
            if (kc_dispatch_type<ms_codes_launch>(t, st, q, ab, a->w, r0, rows, a->k))
                return -1;
            ms_fill(&A, a, q, ab, r0, rows, p);
        } else {
            ms_fill(&A, a, (const __half *)a->w + r0 * a->k, NULL, r0, rows, p);
        }
        A.part = holds > 1 ? part : NULL;
        A.per = ((int)(kp / MS_BK) + sl - 1) / sl;
        if (ms_gemm_any(st, t, &A, sl, holds))
            return -1;
    }
    return 0;
}

/* opt's MATMUL of 2-3 weights that read the same x (gate and up; q, k and
 * v), kernels_cuda.h kern_cuda_matmul_multi: one x split and one launch
 * (mw_job) where each product alone would take the split path on wgmma
 * with kept codes (or F16): each cut in k as kc_split_matmul would cut it
 * alone (the same room: the scratch after x's planes, kept codes making
 * none), its partial sums in a part of that room of its own, so each
 * output has the bits the product alone gives. Otherwise (or where the
 * room does not hold every product's partial sums at once) 1, no output
 * written. */
extern "C" int kern_cuda_matmul_multi(kern_ctx *ctx, const kern_args *const *a, int nw)
{
    if (!ctx || nw < 2 || nw > 3 || !ctx->scratch || !kc_aligned16(ctx->scratch))
        return 1;
    int t = a[0]->w_type;
    if (a[0]->n <= MV_MAX_ROWS || !ms_shape_ok(a[0]))
        return 1;
    size_t xb = ms_x_bytes(t, a[0]->n, a[0]->k);
    if (ctx->scratch_size < xb + 256)
        return 1;
    size_t room = ctx->scratch_size - xb, parts = 0, part_at[3];
    const __half *w[3];
    int sl[3], holds[3];
    for (int i = 0; i < nw; i++) {
        const kern_args *b = a[i];
        if (b->w_type != t || b->x != a[0]->x || b->n != a[0]->n || b->k != a[0]->k || !ms_shape_ok(b) ||
            !b->w || !b->y)
            return 1;
        if (t == XF_TYPE_F16) {
            if (!kc_aligned16(b->w))
                return 1;
            w[i] = (const __half *)b->w;
        } else if (!(w[i] = (const __half *)kc_codes_find(ctx, b->w, t, b->m, b->k))) {
            return 1;
        }
        /* what kc_split_matmul would hand the wgmma product alone */
        int64_t kp = ms_kp(t, b->k);
        sl[i] = ms_plan(b->m, b->n, kp, room, &holds[i]);
        int cut = kc_wgmma_plan(t, b->m, b->n, kp, sl[i], holds[i]);
        if (cut < 1)
            return 1; /* no wgmma here */
        part_at[i] = parts;
        if (cut > 1)
            parts += ms_align((size_t)cut * (size_t)b->n * (size_t)b->m * sizeof(float));
    }
    if (parts > room)
        return 1;
    cudaStream_t st = kc_stream(ctx);
    char *p = (char *)ctx->scratch;
    ms_args A[3];
    const ms_args *Ap[3];
    for (int i = 0; i < nw; i++) {
        const kern_args *b = a[i];
        ms_fill(&A[i], b, w[i], t == XF_TYPE_F16 ? NULL : (const float2 *)(w[i] + b->m * ms_kp(t, b->k)), 0,
                b->m, p);
        /* as kc_split_matmul: the buffer where it holds two slices or more */
        A[i].part = holds[i] > 1 ? (float *)(p + xb + part_at[i]) : NULL;
        Ap[i] = &A[i];
    }
    if (ms_split_x(st, p, a[0]))
        return -1;
    /* 1 (a tensor map refused an operand): no output written, only the
     * scratch; the caller runs each product alone */
    return kc_wgmma_gemm_multi(st, t, Ap, nw, sl, holds);
}

extern "C" size_t kern_cuda_matmul_multi_scratch(const kern_args *const *a, int nw)
{
    if (nw < 2 || nw > 3 || a[0]->n <= MV_MAX_ROWS || !ms_shape_ok(a[0]))
        return 0;
    int t = a[0]->w_type;
    size_t need = ms_x_bytes(t, a[0]->n, a[0]->k) + 256;
    for (int i = 0; i < nw; i++) {
        const kern_args *b = a[i];
        if (b->w_type != t || b->n != a[0]->n || b->k != a[0]->k || !ms_shape_ok(b))
            return 0;
        /* the most slices each alone can take: what its own declaration holds */
        int64_t kp = ms_kp(t, b->k);
        int holds, sl = ms_plan(b->m, b->n, kp, SIZE_MAX, &holds);
        int cut = kc_wgmma_plan(t, b->m, b->n, kp, sl, holds);
        if (cut > 1)
            need += ms_align((size_t)cut * (size_t)b->n * (size_t)b->m * sizeof(float));
    }
    return need;
}

extern "C" int kern_cuda_matmul_multi_on(void)
{
    const char *on = getenv("XF_MM_MULTI");
    return on && strcmp(on, "1") == 0;
}
