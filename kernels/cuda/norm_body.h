/* norm_body.h: the row of the opt NORM / RMSNORM kernels (with the
 * residual add in front: the fast path's add + norm) as device code that
 * more than one kernel runs: opt.cu's opt_norm_kernel, one block a row, and
 * fused_decode.cu's matrix-vector kernel whose last block adds the residual
 * to the product and normalizes it. Both run it with the same threads per
 * row (kc_norm_threads), the same float4 path and the same sums in the same
 * order: the same bits. */
#pragma once

#include "cuda_internal.h"

#define NORM_THREADS 256

/* threads of a row of k: where the sums' order comes from */
static inline int kc_norm_threads(int64_t k) { return k >= 1024 ? NORM_THREADS : 128; }

/* sum of v over threads t < nt (a multiple of 32) of the block; threads
 * t >= nt pass 0 and only join the barriers; every thread gets the sum */
__device__ __forceinline__ float kc_block_sum(float v, float *sh, int t, int nt)
{
    int lane = t & 31, wid = t >> 5, nw = nt >> 5;
    v = kc_warp_sum(v);
    __syncthreads(); /* sh may still be read from the previous call */
    if (lane == 0 && t < nt)
        sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    return kc_warp_sum(v);
}

template <bool CG> __device__ __forceinline__ float4 kc_ld4(const float *p, int64_t j)
{
    return CG ? __ldcg((const float4 *)p + j) : ((const float4 *)p)[j];
}

/* One row: yr = norm(xr (+ x2r)) * g (+ b), and (ADD) sumr = xr + x2r, by
 * threads t < nt of the block (the others join the barriers); vec: the
 * float4 path (k % 4 == 0, every pointer 16-byte aligned). rms: RMSNORM
 * (no mean, no b). CG: xr and x2r read from L2 (other blocks of the same
 * launch wrote them). sh: 32 floats of shared memory. The row is x + x2
 * computed on the fly in every pass (the same f32 sums each time) and
 * stored to sum in the last, so that sum and y are bit-identical to an ADD
 * launch followed by a NORM launch on its output. */
template <bool ADD, bool CG>
__device__ __forceinline__ void kc_norm_row(float *yr, const float *xr, const float *x2r, float *sumr,
                                            const float *g, const float *b, int64_t k, float eps, int rms, int vec,
                                            int t, int nt, float *sh)
{
    bool on = t < nt;
    float mean = 0.0f;
    auto ld4 = [&](int64_t j) {
        float4 v = kc_ld4<CG>(xr, j);
        if (ADD) {
            float4 v2 = kc_ld4<CG>(x2r, j);
            v.x = v.x + v2.x, v.y = v.y + v2.y, v.z = v.z + v2.z, v.w = v.w + v2.w;
        }
        return v;
    };
    auto ld1 = [&](int64_t j) {
        float a = CG ? __ldcg(xr + j) : xr[j];
        return ADD ? a + (CG ? __ldcg(x2r + j) : x2r[j]) : a;
    };
    if (!rms) {
        float s = 0.0f;
        if (on) {
            if (vec)
                for (int64_t j = t; j < k / 4; j += nt) {
                    float4 v = ld4(j);
                    s += (v.x + v.y) + (v.z + v.w);
                }
            else
                for (int64_t j = t; j < k; j += nt)
                    s += ld1(j);
        }
        mean = kc_block_sum(s, sh, t, nt) / (float)k;
    }
    /* centred second pass: no cancellation when |mean| >> std */
    float s2 = 0.0f;
    if (on) {
        if (vec)
            for (int64_t j = t; j < k / 4; j += nt) {
                float4 v = ld4(j);
                float a0 = v.x - mean, a1 = v.y - mean, a2 = v.z - mean, a3 = v.w - mean;
                s2 += (a0 * a0 + a1 * a1) + (a2 * a2 + a3 * a3);
            }
        else
            for (int64_t j = t; j < k; j += nt) {
                float a0 = ld1(j) - mean;
                s2 += a0 * a0;
            }
    }
    float inv = rsqrtf(kc_block_sum(s2, sh, t, nt) / (float)k + eps);
    if (!on)
        return;
    if (vec) {
        for (int64_t j = t; j < k / 4; j += nt) {
            float4 v = ld4(j), gw = ((const float4 *)g)[j], o;
            if (ADD)
                ((float4 *)sumr)[j] = v;
            o.x = (v.x - mean) * inv * gw.x;
            o.y = (v.y - mean) * inv * gw.y;
            o.z = (v.z - mean) * inv * gw.z;
            o.w = (v.w - mean) * inv * gw.w;
            if (b) {
                float4 bb = ((const float4 *)b)[j];
                o.x += bb.x, o.y += bb.y, o.z += bb.z, o.w += bb.w;
            }
            ((float4 *)yr)[j] = o;
        }
    } else {
        for (int64_t j = t; j < k; j += nt) {
            float v = ld1(j);
            if (ADD)
                sumr[j] = v;
            float o = (v - mean) * inv * g[j];
            yr[j] = b ? o + b[j] : o;
        }
    }
}
