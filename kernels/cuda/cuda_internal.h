/* cuda_internal: what the CUDA kernel files (ref.cu, opt.cu, matmul.cu,
 * cuda_mem.cu, table.cu) share and nobody else sees: the stream of a
 * kern_ctx, argument checks, launch helpers, the weight-type table and the
 * device-side dequantization of ggml blocks.
 *
 * Included only by .cu files (device code below). Two dequantizers live
 * here on purpose: xq_elem() decodes one element the plain way (the ref
 * variants use it), xq_piece8() decodes 8 consecutive elements with wide
 * loads (the opt variants use it). Tests compare the two paths, so a slip in
 * either is caught against the CPU reference. */
#ifndef XF_CUDA_INTERNAL_H
#define XF_CUDA_INTERNAL_H

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "quant.h"

/* ---- host helpers ------------------------------------------------------ */

static inline cudaStream_t kc_stream(const kern_ctx *ctx)
{
    return ctx ? (cudaStream_t)ctx->stream : (cudaStream_t)0;
}

/* 0 if the launch just made was accepted, else -1 (the error is cleared so
 * that the next call starts clean; sticky errors stay and fail later calls). */
static inline int kc_launch_ok(void)
{
    return cudaGetLastError() == cudaSuccess ? 0 : -1;
}

/* Launches kernel<<<grid, block, smem, st>>>(args...) as a programmatic
 * dependent launch (see KC_PDL_WAIT below); 0, or -1 if the launch failed. */
template <typename... KA, typename... A>
static inline int kc_launch_pdl(void (*kernel)(KA...), dim3 grid, dim3 block, size_t smem, cudaStream_t st,
                                A... args)
{
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    if (cudaLaunchKernelEx(&cfg, kernel, ((KA)args)...) == cudaSuccess)
        return 0;
    /* a stream or capture that does not take the attribute: a plain launch
     * (the waits in the kernel then do nothing) */
    cudaGetLastError();
    cfg.numAttrs = 0;
    if (cudaLaunchKernelEx(&cfg, kernel, ((KA)args)...) == cudaSuccess)
        return 0;
    cudaGetLastError();
    return -1;
}

/* blocks for a 1-D grid-stride loop over `total` items: enough to fill the
 * chip, capped so that the grid stays legal for any size. */
static inline unsigned kc_grid_1d(int64_t total, int threads)
{
    int64_t b = (total + threads - 1) / threads;
    if (b > 65535LL * 8)
        b = 65535LL * 8;
    return (unsigned)(b < 1 ? 1 : b);
}

/* Block size of a weight type: elements per block and bytes per block; 0
 * elements if the CUDA backend cannot decode the type. */
typedef struct kc_type {
    int elems;
    int bytes;
} kc_type;

static inline kc_type kc_type_get(int type)
{
    switch (type) {
    case XF_TYPE_F32: return (kc_type){1, 4};
    case XF_TYPE_F16: return (kc_type){1, 2};
    case XF_TYPE_BF16: return (kc_type){1, 2};
    case XF_TYPE_Q4_0: return (kc_type){32, 18};
    case XF_TYPE_Q4_1: return (kc_type){32, 20};
    case XF_TYPE_Q5_0: return (kc_type){32, 22};
    case XF_TYPE_Q5_1: return (kc_type){32, 24};
    case XF_TYPE_Q8_0: return (kc_type){32, 34};
    case XF_TYPE_Q4_K: return (kc_type){256, 144};
    case XF_TYPE_Q5_K: return (kc_type){256, 176};
    case XF_TYPE_Q6_K: return (kc_type){256, 210};
    case XF_TYPE_MXFP4: return (kc_type){32, 17};
    default: return (kc_type){0, 0};
    }
}

/* Bytes of one row of k elements of `type`, or 0 if the type is not
 * decodable here or k is not a whole number of blocks. */
static inline uint64_t kc_row_bytes(int type, int64_t k)
{
    kc_type t = kc_type_get(type);
    if (t.elems == 0 || k <= 0 || k % t.elems != 0)
        return 0;
    return (uint64_t)(k / t.elems) * (uint64_t)t.bytes;
}

/* ---- device: one element, the plain way (ref variants) ------------------ */

__device__ __forceinline__ float xq_half(const uint8_t *p)
{
    /* blocks put halves at even offsets only, so a 16-bit load is aligned */
    return __half2float(__ushort_as_half(*(const unsigned short *)p));
}

/* ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j of a
 * Q4_K / Q5_K super-block, packed in 12 bytes. */
__device__ __forceinline__ void xq_scale_min_k4(int j, const uint8_t *q, int *sc, int *mn)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *mn = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* MXFP4 (base/quant.h): the scale 2^(e-128) as ggml's e8m0_to_fp32_half
 * builds it (subnormal for e < 2; no NaN code), and |kvalue| of a 4-bit
 * code's low 3 bits, {0,1,2,3,4,6,8,12}, from a packed constant (no table
 * in memory, no divergence); bit 3 is the sign. */
__device__ __forceinline__ float xq_e8m0_half(unsigned e)
{
    return __uint_as_float(e < 2 ? 0x00200000u << e : (e - 1) << 23);
}
__device__ __forceinline__ unsigned xq_mx_mag(unsigned c)
{
    return (unsigned)(0x0C08060403020100ull >> (8 * (c & 7))) & 0xFFu;
}
__device__ __forceinline__ float xq_mx_val(unsigned c)
{
    float m = (float)xq_mx_mag(c);
    return (c & 8) ? -m : m;
}

/* Element j of a row of `type`. The arithmetic is written with explicit
 * rounding intrinsics so that nvcc cannot contract it into FMAs: the result
 * is then bit-identical to ggml's C dequantization. */
__device__ static float xq_elem(int type, const uint8_t *row, int64_t j)
{
    switch (type) {
    case XF_TYPE_F32: return ((const float *)row)[j];
    case XF_TYPE_F16: return __half2float(((const __half *)row)[j]);
    case XF_TYPE_BF16: return __uint_as_float((unsigned)((const unsigned short *)row)[j] << 16);
    case XF_TYPE_Q4_0: {
        const uint8_t *b = row + (j / 32) * 18;
        int e = (int)(j % 32);
        int q = e < 16 ? (b[2 + e] & 0xF) : (b[2 + e - 16] >> 4);
        return __fmul_rn((float)(q - 8), xq_half(b));
    }
    case XF_TYPE_Q4_1: {
        const uint8_t *b = row + (j / 32) * 20;
        int e = (int)(j % 32);
        int q = e < 16 ? (b[4 + e] & 0xF) : (b[4 + e - 16] >> 4);
        return __fadd_rn(__fmul_rn((float)q, xq_half(b)), xq_half(b + 2));
    }
    case XF_TYPE_Q5_0: {
        const uint8_t *b = row + (j / 32) * 22;
        int e = (int)(j % 32);
        uint32_t qh = (uint32_t)b[2] | ((uint32_t)b[3] << 8) | ((uint32_t)b[4] << 16) | ((uint32_t)b[5] << 24);
        int lo = e < 16 ? (b[6 + e] & 0xF) : (b[6 + e - 16] >> 4);
        int q = lo | (int)(((qh >> e) & 1u) << 4);
        return __fmul_rn((float)(q - 16), xq_half(b));
    }
    case XF_TYPE_Q5_1: {
        const uint8_t *b = row + (j / 32) * 24;
        int e = (int)(j % 32);
        uint32_t qh = (uint32_t)b[4] | ((uint32_t)b[5] << 8) | ((uint32_t)b[6] << 16) | ((uint32_t)b[7] << 24);
        int lo = e < 16 ? (b[8 + e] & 0xF) : (b[8 + e - 16] >> 4);
        int q = lo | (int)(((qh >> e) & 1u) << 4);
        return __fadd_rn(__fmul_rn((float)q, xq_half(b)), xq_half(b + 2));
    }
    case XF_TYPE_Q8_0: {
        const uint8_t *b = row + (j / 32) * 34;
        return __fmul_rn((float)(int8_t)b[2 + j % 32], xq_half(b));
    }
    case XF_TYPE_Q4_K:
    case XF_TYPE_Q5_K: {
        /* layout: d, dmin, scales[12], (Q5_K: qh[32]), qs[128] */
        bool five = type == XF_TYPE_Q5_K;
        const uint8_t *b = row + (j / 256) * (five ? 176 : 144);
        int e = (int)(j % 256);
        int u = e / 32, l = e % 32; /* sub-block and place in it */
        const uint8_t *qs = b + (five ? 48 : 16);
        int qb = qs[(u / 2) * 32 + l];
        int q = (u & 1) ? (qb >> 4) : (qb & 0xF);
        if (five && ((b[16 + l] >> u) & 1))
            q += 16;
        int sc, mn;
        xq_scale_min_k4(u, b + 4, &sc, &mn);
        float d1 = __fmul_rn(xq_half(b), (float)sc);
        float m1 = __fmul_rn(xq_half(b + 2), (float)mn);
        return __fsub_rn(__fmul_rn(d1, (float)q), m1);
    }
    case XF_TYPE_Q6_K: {
        /* layout: ql[128], qh[64], scales[16] (int8), d */
        const uint8_t *b = row + (j / 256) * 210;
        int e = (int)(j % 256);
        int half = e / 128, r = e % 128, part = r / 32, l = r % 32;
        int ql = b[half * 64 + (part & 1) * 32 + l];
        int lo = (part >> 1) ? (ql >> 4) : (ql & 0xF);
        int hi = (b[128 + half * 32 + l] >> (2 * part)) & 3;
        int q = (lo | (hi << 4)) - 32;
        int sc = (int8_t)b[192 + half * 8 + part * 2 + l / 16];
        return __fmul_rn(__fmul_rn(xq_half(b + 208), (float)sc), (float)q);
    }
    case XF_TYPE_MXFP4: {
        /* layout: e, qs[16] (low nibbles elements 0-15, high 16-31); 17-byte
         * blocks: byte loads only */
        const uint8_t *b = row + (j / 32) * 17;
        int e = (int)(j % 32);
        unsigned c = e < 16 ? (b[1 + e] & 0xFu) : (unsigned)(b[1 + e - 16] >> 4);
        return __fmul_rn(xq_mx_val(c), xq_e8m0_half(b[0]));
    }
    default: return __int_as_float(0x7fc00000); /* callers reject other types first */
    }
}

/* ---- device: 8 consecutive elements with wide loads (opt variants) ----- */

__device__ __forceinline__ unsigned xq_ld16(const uint8_t *p) { return *(const unsigned short *)p; }
/* 4 bytes at an even address, as two aligned 16-bit loads */
__device__ __forceinline__ uint32_t xq_ld32e(const uint8_t *p) { return xq_ld16(p) | (xq_ld16(p + 2) << 16); }

/* Elements 8*s .. 8*s+7 (s in 0..3) of 32-element unit `u` of a row of a
 * block type: for 32-element blocks u is the block, for 256-element
 * super-blocks u/8 is the block and u%8 the sub-block. All loads are 16-bit
 * at even offsets (every ggml block size but MXFP4's 17 is even), so any
 * 2-aligned weight buffer works; MXFP4 blocks sit at odd offsets and are
 * read bytewise. */
template <int TYPE> __device__ __forceinline__ void xq_piece8(const uint8_t *row, int64_t u, int s, float *out)
{
    if (TYPE == XF_TYPE_MXFP4) {
        const uint8_t *b = row + u * 17;
        float d = xq_e8m0_half(b[0]);
        const uint8_t *qs = b + 1 + 8 * (s & 1);
        int sh = (s >> 1) * 4; /* elements 16..31 are the high nibbles */
#pragma unroll
        for (int w = 0; w < 8; w++)
            out[w] = xq_mx_val((qs[w] >> sh) & 0xFu) * d;
    } else if (TYPE == XF_TYPE_Q8_0) {
        const uint8_t *b = row + u * 34;
        float d = xq_half(b);
#pragma unroll
        for (int w = 0; w < 4; w++) {
            unsigned v = xq_ld16(b + 2 + 8 * s + 2 * w);
            out[2 * w] = (float)(int8_t)(v & 0xFF) * d;
            out[2 * w + 1] = (float)(int8_t)(v >> 8) * d;
        }
    } else if (TYPE == XF_TYPE_Q4_0 || TYPE == XF_TYPE_Q4_1) {
        const int qo = TYPE == XF_TYPE_Q4_0 ? 2 : 4, bs = TYPE == XF_TYPE_Q4_0 ? 18 : 20;
        const uint8_t *b = row + u * bs;
        float d = xq_half(b);
        float m = TYPE == XF_TYPE_Q4_1 ? xq_half(b + 2) : -8.0f * d;
        int sh = (s >> 1) * 4; /* elements 16..31 are the high nibbles */
#pragma unroll
        for (int w = 0; w < 4; w++) {
            unsigned v = xq_ld16(b + qo + 8 * (s & 1) + 2 * w);
            out[2 * w] = (float)((v >> sh) & 0xF) * d + m;
            out[2 * w + 1] = (float)((v >> (8 + sh)) & 0xF) * d + m;
        }
    } else if (TYPE == XF_TYPE_Q5_0 || TYPE == XF_TYPE_Q5_1) {
        const int ho = TYPE == XF_TYPE_Q5_0 ? 2 : 4, bs = TYPE == XF_TYPE_Q5_0 ? 22 : 24;
        const uint8_t *b = row + u * bs;
        float d = xq_half(b);
        float m = TYPE == XF_TYPE_Q5_1 ? xq_half(b + 2) : -16.0f * d;
        uint32_t qh = xq_ld32e(b + ho) >> (8 * s); /* bit e is the 5th bit of element e */
        int sh = (s >> 1) * 4;
#pragma unroll
        for (int w = 0; w < 4; w++) {
            unsigned v = xq_ld16(b + ho + 4 + 8 * (s & 1) + 2 * w);
            int q0 = ((v >> sh) & 0xF) | (((qh >> (2 * w)) & 1) << 4);
            int q1 = ((v >> (8 + sh)) & 0xF) | (((qh >> (2 * w + 1)) & 1) << 4);
            out[2 * w] = (float)q0 * d + m;
            out[2 * w + 1] = (float)q1 * d + m;
        }
    } else if (TYPE == XF_TYPE_Q4_K || TYPE == XF_TYPE_Q5_K) {
        const bool five = TYPE == XF_TYPE_Q5_K;
        const uint8_t *b = row + (u >> 3) * (five ? 176 : 144);
        int j = (int)(u & 7);
        int sc, mn;
        xq_scale_min_k4(j, b + 4, &sc, &mn);
        float d1 = xq_half(b) * (float)sc;
        float m1 = xq_half(b + 2) * (float)mn;
        const uint8_t *qs = b + (five ? 48 : 16) + (j >> 1) * 32 + 8 * s;
        int sh = (j & 1) * 4;
#pragma unroll
        for (int w = 0; w < 4; w++) {
            unsigned v = xq_ld16(qs + 2 * w);
            int q0 = (v >> sh) & 0xF, q1 = (v >> (8 + sh)) & 0xF;
            if (five) {
                unsigned h = xq_ld16(b + 16 + 8 * s + 2 * w);
                q0 |= ((h >> j) & 1) << 4;
                q1 |= ((h >> (8 + j)) & 1) << 4;
            }
            out[2 * w] = d1 * (float)q0 - m1;
            out[2 * w + 1] = d1 * (float)q1 - m1;
        }
    } else if (TYPE == XF_TYPE_Q6_K) {
        const uint8_t *b = row + (u >> 3) * 210;
        int j = (int)(u & 7), half = j >> 2, part = j & 3;
        int l0 = 8 * s;
        float d = xq_half(b + 208) * (float)(int8_t)b[192 + half * 8 + part * 2 + l0 / 16];
        const uint8_t *ql = b + half * 64 + (part & 1) * 32 + l0;
        const uint8_t *qh = b + 128 + half * 32 + l0;
        int shl = (part >> 1) * 4, shh = 2 * part;
#pragma unroll
        for (int w = 0; w < 4; w++) {
            unsigned vl = xq_ld16(ql + 2 * w), vh = xq_ld16(qh + 2 * w);
            int q0 = (((vl >> shl) & 0xF) | (((vh >> shh) & 3) << 4)) - 32;
            int q1 = (((vl >> (8 + shl)) & 0xF) | (((vh >> (8 + shh)) & 3) << 4)) - 32;
            out[2 * w] = d * (float)q0;
            out[2 * w + 1] = d * (float)q1;
        }
    }
}

/* Elements 8p .. 8p+7 of a row of TYPE. Float types need a 16-byte aligned
 * row (callers check the base pointer and that k % 8 == 0); block types need
 * 2-byte alignment only. */
template <int TYPE> __device__ __forceinline__ void xq_load8(const uint8_t *row, int64_t p, float *out)
{
    if (TYPE == XF_TYPE_F32) {
        const float4 *q = (const float4 *)(row + 32 * p);
        float4 a = __ldg(q), b = __ldg(q + 1);
        out[0] = a.x, out[1] = a.y, out[2] = a.z, out[3] = a.w;
        out[4] = b.x, out[5] = b.y, out[6] = b.z, out[7] = b.w;
    } else if (TYPE == XF_TYPE_F16) {
        uint4 v = __ldg((const uint4 *)(row + 16 * p));
        unsigned u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            __half2 h;
            memcpy(&h, &u[i], sizeof h);
            float2 f = __half22float2(h);
            out[2 * i] = f.x, out[2 * i + 1] = f.y;
        }
    } else if (TYPE == XF_TYPE_BF16) {
        uint4 v = __ldg((const uint4 *)(row + 16 * p));
        unsigned u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            out[2 * i] = __uint_as_float(u[i] << 16);
            out[2 * i + 1] = __uint_as_float(u[i] & 0xFFFF0000u);
        }
    } else {
        xq_piece8<TYPE>(row, p >> 2, (int)(p & 3), out);
    }
}

/* Calls F<TYPE>::run(args...) for a runtime weight type; -1 if the type is
 * not decodable here. */
#define KC_TYPE_CASE(T)                                                                                  \
    case T: return F<T>::run(args...);
template <template <int> class F, typename... A> static int kc_dispatch_type(int type, A... args)
{
    switch (type) {
        KC_TYPE_CASE(XF_TYPE_F32)
        KC_TYPE_CASE(XF_TYPE_F16)
        KC_TYPE_CASE(XF_TYPE_BF16)
        KC_TYPE_CASE(XF_TYPE_Q4_0)
        KC_TYPE_CASE(XF_TYPE_Q4_1)
        KC_TYPE_CASE(XF_TYPE_Q5_0)
        KC_TYPE_CASE(XF_TYPE_Q5_1)
        KC_TYPE_CASE(XF_TYPE_Q8_0)
        KC_TYPE_CASE(XF_TYPE_Q4_K)
        KC_TYPE_CASE(XF_TYPE_Q5_K)
        KC_TYPE_CASE(XF_TYPE_Q6_K)
        KC_TYPE_CASE(XF_TYPE_MXFP4)
    default: return -1;
    }
}

/* 1 if a weight buffer can take the xq_load8 path: k a multiple of 8 and,
 * for the float types, 16-byte aligned rows. */
static inline int kc_load8_ok(int type, const void *w, int64_t k)
{
    if (k % 8)
        return 0;
    if (kc_type_get(type).elems > 1)
        return 1;
    return ((uintptr_t)w & 15) == 0;
}

static inline int kc_aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

__device__ __forceinline__ float kc_warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* max(a, b), NaN if either is: fmaxf returns the other operand of a NaN,
 * and a softmax whose maximum skipped its NaN scores took a row of NaN and
 * -inf for one with nothing to attend to (all weights 0: attack 26, F1).
 * The row's maximum NaN makes every weight NaN, as torch's softmax does.
 * Otherwise fmaxf's result, bit for bit. */
__device__ __forceinline__ float kc_fmax_nan(float a, float b)
{
    return isnan(a) || isnan(b) ? a + b : fmaxf(a, b);
}

/* the maximum over the warp (every lane gets it), NaN if any lane's is
 * (kc_fmax_nan): the softmaxes' maxima */
__device__ __forceinline__ float kc_warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = kc_fmax_nan(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* GELU, tanh form (the opt GELU, and the fast path's matmul epilogue that
 * stands in for it). Rounded op by op (no contraction into FMAs), so that
 * it gives the same bits wherever it is inlined. 0.5 x (1 + tanh(u)) is
 * computed as x / (1 + exp(-2u)), the same function: for x below about -2
 * tanh(u) is near -1 and 1 + tanh(u) cancelled away ~10 bits (4.5e-6
 * relative at x = -2.7 against the f64 reference, test_kernels_cuda). */
#define KC_GELU_C 0.7978845608f /* sqrt(2/pi) */
__device__ __forceinline__ float kc_gelu(float x)
{
    float c = __fmul_rn(__fmul_rn(__fmul_rn(0.044715f, x), x), x);
    float e = expf(__fmul_rn(-2.0f * KC_GELU_C, __fadd_rn(x, c)));
    return __fdiv_rn(x, __fadd_rn(1.0f, e));
}

/* ---- programmatic dependent launch (Hopper: griddepcontrol) ------------
 * A kernel launched with kc_launch_pdl may start while the kernel before it
 * on the stream (or in the graph) is still running, once every block of
 * that one has passed KC_PDL_TRIGGER (or ended); it must run KC_PDL_WAIT,
 * which returns when the one before has finished and its writes are
 * visible, before it reads anything a kernel before it wrote, writes
 * anything, or ends. What it does before the wait is read weights (which
 * no kernel writes): the one-token matrix-vector kernels stage or prefetch
 * their weight rows there, so the next matrix's bytes stream in while the
 * previous op finishes. In a kernel launched without the attribute both
 * instructions do nothing. Every opt kernel triggers at its start: the
 * trigger only lets the next launch begin taking free SM slots. */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define KC_PDL_TRIGGER() asm volatile("griddepcontrol.launch_dependents;" ::: "memory")
#define KC_PDL_WAIT() asm volatile("griddepcontrol.wait;" ::: "memory")
#else /* before Hopper (a build for other GPUs): launches are plain, nothing to wait for */
#define KC_PDL_TRIGGER() ((void)0)
#define KC_PDL_WAIT() ((void)0)
#endif

/* silu(g) * u (the opt SWIGLU, and the fused gate/up launch that stands in
 * for it), rounded op by op for the same bits wherever it is inlined. */
__device__ __forceinline__ float kc_swiglu(float g, float u)
{
    return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
}

/* ROPE's pieces (kc_rope_pair, and the decode attention that rotates q and
 * k itself, opt_body.h fa_body): the angle of pair p (of hd / 2) at
 * position pos, its sine and cosine in double */
__device__ __forceinline__ void kc_rope_angle(int64_t pos, int p, int hd, double log_base, double *s,
                                              double *c)
{
    double theta = (double)pos * exp(-2.0 * p / hd * log_base);
    sincos(theta, s, c);
}

/* the rotation of the pair (x0, x1) by the angle (s, c), rounded op by op:
 * no contraction that could differ between kernels */
__device__ __forceinline__ float2 kc_rope_rot(float x0, float x1, double s, double c)
{
    return make_float2((float)__dsub_rn(__dmul_rn(x0, c), __dmul_rn(x1, s)),
                       (float)__dadd_rn(__dmul_rn(x0, s), __dmul_rn(x1, c)));
}

/* the elements of pair p in a row of hd: NeoX halves or adjacent pairs */
__device__ __forceinline__ int kc_rope_elem(int p, int normal)
{
    return normal ? 2 * p : p;
}
__device__ __forceinline__ int kc_rope_off(int hd, int normal)
{
    return normal ? 1 : hd / 2;
}

/* 1 if q and k are ROPEs of one token that one launch can rotate together
 * (same head_dim, base, mode, position and step) and v_numel is a k row's
 * size: the cases of kern_cuda_rope_store and kern_cuda_attn_rope_fused */
static inline bool kc_rope_pair_ok(const kern_args *q, const kern_args *k, int64_t v_numel)
{
    return q && k && q->x && q->y && k->x && k->y && v_numel == (int64_t)k->n_head * k->head_dim &&
           q->n == 1 && k->n == 1 && q->head_dim == k->head_dim && q->head_dim > 0 && q->head_dim % 2 == 0 &&
           q->rope_base == k->rope_base && q->rope_base > 0 && q->rope_mode == k->rope_mode &&
           (q->rope_mode == KERN_ROPE_NEOX || q->rope_mode == KERN_ROPE_NORMAL) &&
           q->dev_step == k->dev_step && q->pos0 == k->pos0 && q->pos0 >= 0 && q->n_head > 0 && k->n_head > 0;
}

/* One rotated pair o of a ROPE over rows of hd (the opt ROPE, and the fused
 * rope-and-store launch): o = row * (hd / 2) + p, row = token * n_head +
 * head; writes y (and yc, a KV cache at the same offsets, if set). The
 * angle in double: at positions in the thousands an f32 angle would already
 * be off by ~1e-4 rad. */
__device__ __forceinline__ void kc_rope_pair(float *y, float *yc, const float *x, int64_t o, int n_head, int hd,
                                             int pos0, double log_base, int normal)
{
    int half = hd / 2;
    int p = (int)(o % half);
    int64_t row = o / half; /* (token, head) */
    int64_t i = row / n_head;
    double s, c;
    kc_rope_angle(pos0 + i, p, hd, log_base, &s, &c);
    const float *xr = x + row * hd;
    int e = kc_rope_elem(p, normal), off = kc_rope_off(hd, normal);
    float2 r = kc_rope_rot(xr[e], xr[e + off], s, c);
    float y0 = r.x, y1 = r.y;
    y[row * hd + e] = y0;
    y[row * hd + e + off] = y1;
    if (yc) {
        yc[row * hd + e] = y0;
        yc[row * hd + e + off] = y1;
    }
}

/* ---- variant entry points (defined in ref.cu, opt.cu, matmul.cu) ------- */

#define KC_DECL(name) int name(kern_ctx *ctx, const kern_args *a)
extern "C" {
KC_DECL(kc_ref_embd);
KC_DECL(kc_ref_norm);
KC_DECL(kc_ref_rmsnorm);
KC_DECL(kc_ref_matmul);
KC_DECL(kc_ref_view);
KC_DECL(kc_ref_rope);
KC_DECL(kc_ref_kq);
KC_DECL(kc_ref_softmax);
KC_DECL(kc_ref_kqv);
KC_DECL(kc_ref_add);
KC_DECL(kc_ref_gelu);
KC_DECL(kc_ref_swiglu);

KC_DECL(kc_opt_embd);
KC_DECL(kc_opt_norm);
KC_DECL(kc_opt_rmsnorm);
KC_DECL(kc_opt_matmul);
KC_DECL(kc_tc_matmul);
KC_DECL(kc_opt_view);
KC_DECL(kc_opt_rope);
KC_DECL(kc_opt_kq);
KC_DECL(kc_opt_softmax);
KC_DECL(kc_opt_kqv);
KC_DECL(kc_opt_add);
KC_DECL(kc_opt_gelu);
KC_DECL(kc_opt_swiglu);

/* kern_mem_ops.stats of the cuda backend (graph.cu): statistics of x[0..n)
 * on the device, as engine/tensor.c computes them (finite values; two
 * passes): out = {min, max, mean, std, absmax, n, nan, inf}. Synchronous. */
int kern_cuda_stats(kern_ctx *ctx, const float *x, int64_t n, double *out);

/* kern_variant.scratch_bytes of the MATMUL variants (matmul.cu) */
/* the current device's SM count, asked once a process (one device per
 * process); 0 if the runtime cannot say (the error cleared). cuda_mem.cu */
int kc_sm_count(void);

size_t kc_opt_matmul_scratch(const kern_args *a);
size_t kc_tc_matmul_scratch(const kern_args *a);

/* opt's prefill matmul on tensor cores (matmul_split.cu): 0 done, 1 not a
 * case it takes (weights not F16 or a block type, k % 32, scratch), -1
 * error; and the scratch it wants for a full-speed run */
int kc_split_matmul(kern_ctx *ctx, const kern_args *a);
size_t kc_split_matmul_scratch(const kern_args *a);
/* kept codes (matmul_codes.cu): the bytes a weight's codes and (a, b) take,
 * 0 where the split product makes none (F16, a type or shape it does not
 * take); the codes made into dst (that many bytes) on st; the kept codes
 * of a weight, or NULL */
size_t kc_split_codes_bytes(int w_type, int64_t rows, int64_t k);
int kc_split_codes_make(cudaStream_t st, int w_type, void *dst, const void *w, int64_t rows, int64_t k);
const void *kc_codes_find(const kern_ctx *ctx, const void *w, int w_type, int64_t rows, int64_t k);
/* 1 where `type`'s codes are in the super-block form (kern_cuda_kfold on,
 * Q4_K or Q5_K): each code sc * q (exact in f16: at most 63 * 31), a the
 * super-block's d, b as before; the wgmma product then folds a once a
 * super-block, mma.sync as any group. Codes kept in the other form are
 * not found (kc_codes_find). matmul_codes.cu */
int kc_kfold(int type);
/* 1 where BF16 or F32 weights (`type`) take the split product
 * (kern_cuda_split_float). split_float.cu */
int kc_split_float(int type);
}

/* EMBD token ids travel to the device inside the kernel's parameters (the
 * ids are host memory, see kernels.h): no device buffer, no copy, no sync,
 * and a launch copies them at once, so the caller may reuse its array as
 * soon as the call returns. Longer prompts take several launches. */
#define KC_TOK_CHUNK 256

/* opt's MATMUL of at most this many tokens runs the matrix-vector kernels
 * (matmul.cu), of more the prefill product (matmul_split.cu) */
#define MV_MAX_ROWS 4
typedef struct kc_tok_chunk {
    int32_t id[KC_TOK_CHUNK];
} kc_tok_chunk;

/* Checks shared by both EMBD variants; 0 if the call is well formed. */
static inline int kc_embd_check(const kern_args *a)
{
    if (a->n < 0 || a->pos0 < 0 || !a->w || !a->y || (a->n > 0 && !a->tok))
        return -1;
    if (kc_row_bytes(a->w_type, a->k) == 0)
        return -1;
    if (a->w2 && kc_row_bytes(a->w2_type, a->k) == 0)
        return -1;
    for (int64_t i = 0; i < a->n; i++)
        if (a->tok[i] < 0)
            return -1;
    return 0;
}

/* Checks shared by the KQ and KQV variants; 0 if the call is well formed. */
static inline int kc_attn_check(const kern_args *a)
{
    if (a->n < 0 || a->n_head <= 0 || a->n_head_kv <= 0 || a->n_head % a->n_head_kv || a->head_dim <= 0 ||
        a->n_kv < 0 || a->pos0 < 0 || !a->x || !a->y)
        return -1;
    return 0;
}

#endif
