/* fm_body: the device code of fused_decode.cu's launches that the decode
 * megakernel (decode_mega.cu) runs too: the jobs of one fused matrix-vector
 * launch (fm_job, fm_jobs, fm_run, fm_block: gemv_body.h's gv_body or
 * mv_dot1 for each job's plan) and one item of the rotations and cache
 * stores (fr_item). Included only by .cu files. */
#ifndef XF_FM_BODY_H
#define XF_FM_BODY_H

#include "cuda_internal.h"
#include "gemv_body.h"

#define FM_JOBS 3

typedef struct fm_job {
    float *y;
    const float *x, *b;
    const uint8_t *w;
    uint64_t rb;
    int64_t m;
    int k, path, R, G, lg;
    int wt;                 /* the weights' type (fm2_kernel picks the job's body by it) */
    unsigned first, blocks; /* the job's 256-thread blocks: [first, first + blocks) */
} fm_job;

typedef struct fm_jobs {
    fm_job j[FM_JOBS];
    int n;
    float *act; /* swiglu form: act[r] = silu(j[0].y[r]) * j[1].y[r]; else NULL */
} fm_jobs;

struct fm_store {
    float *y;
    const float *b;
    __device__ __forceinline__ void operator()(int64_t r, float s) const { y[r] = b ? s + b[r] : s; }
};

struct fm_store_swiglu {
    float *y, *act;
    const float *b, *gate;
    __device__ __forceinline__ void operator()(int64_t r, float s) const
    {
        float v = b ? s + b[r] : s;
        y[r] = v;
        act[r] = kc_swiglu(gate[r], v); /* gate[r]: this thread's own store */
    }
};

template <int WT, class ST>
__device__ __forceinline__ void fm_run(const fm_job &jb, unsigned b, uint4 *tile, float *red, ST st)
{
    if (jb.path == KC_MV_STAGED) {
        switch (jb.G) {
        case 32: gv_body<WT, 32>(tile, red, jb.x, jb.w, jb.rb, jb.k, jb.m, jb.R, b, st); break;
        case 64: gv_body<WT, 64>(tile, red, jb.x, jb.w, jb.rb, jb.k, jb.m, jb.R, b, st); break;
        case 128: gv_body<WT, 128>(tile, red, jb.x, jb.w, jb.rb, jb.k, jb.m, jb.R, b, st); break;
        default: gv_body<WT, 256>(tile, red, jb.x, jb.w, jb.rb, jb.k, jb.m, jb.R, b, st); break;
        }
        return;
    }
    /* mv1_kernel<WT> block 2b + half, thread threadIdx.x % 128 */
    int64_t vb = 2 * (int64_t)b + (threadIdx.x >> 7);
    int lpr = 1 << jb.lg;
    int64_t r = (vb * MV_THREADS + (threadIdx.x & (MV_THREADS - 1))) >> jb.lg;
    int sub = threadIdx.x & (lpr - 1);
    bool live = r < jb.m;
    const uint8_t *row = jb.w + (uint64_t)(live ? r : 0) * jb.rb;
    /* this block's rows into L2 while the kernel before finishes */
    int rpb = MV_THREADS >> jb.lg;
    mv_prefetch(jb.w, jb.rb, 2 * (int64_t)b * rpb, 2 * rpb, jb.m, threadIdx.x, GV_THREADS);
    KC_PDL_WAIT();
    float s = mv_dot1<WT>(row, jb.x, jb.k, sub, lpr, live);
    if (live && sub == 0)
        st(r, s);
}

/* the job whose blocks hold block b (jobs in grid order) */
__device__ __forceinline__ int fm_job_at(const fm_jobs &J, unsigned b)
{
    int i = 0;
    while (i + 1 < J.n && b >= J.j[i + 1].first)
        i++;
    return i;
}

/* Block b of fm_kernel's grid over the jobs J (256 threads; tile: dynamic
 * shared memory of the largest staged plan's bytes, red: 8 floats). The
 * decode megakernel runs it too, for its virtual blocks. */
template <int WT>
__device__ __forceinline__ void fm_block(const fm_jobs &J, unsigned b, uint4 *tile, float *red)
{
    if (J.act) {
        fm_run<WT>(J.j[0], b, tile, red, fm_store{J.j[0].y, J.j[0].b});
        __syncthreads(); /* the tile and red are staged again */
        fm_run<WT>(J.j[1], b, tile, red, fm_store_swiglu{J.j[1].y, J.act, J.j[1].b, J.j[0].y});
        return;
    }
    int i = fm_job_at(J, b);
    fm_run<WT>(J.j[i], b - J.j[i].first, tile, red, fm_store{J.j[i].y, J.j[i].b});
}

/* Block b of fm2_kernel's grid: jobs of two weight types in one launch,
 * each job run by the body of its own type (fm_run<WA> or fm_run<WB>, the
 * very code of a one-type launch: the same bits) */
template <int WA, int WB>
__device__ __forceinline__ void fm_block2(const fm_jobs &J, unsigned b, uint4 *tile, float *red)
{
    int i = fm_job_at(J, b);
    const fm_job &jb = J.j[i];
    if (jb.wt == WA)
        fm_run<WA>(jb, b - jb.first, tile, red, fm_store{jb.y, jb.b});
    else
        fm_run<WB>(jb, b - jb.first, tile, red, fm_store{jb.y, jb.b});
}

/* ---- ROPE of q and k, k_rope and v into the caches: item o of fr_kernel's
 * grid-stride loop (each item alone: which thread runs it moves no bits) */
__device__ __forceinline__ void fr_item(int64_t o, float *qy, const float *qx, int64_t qpairs, int qheads, float *ky,
                                        const float *kx, int64_t kpairs, int kheads, int hd, float *kc, const float *v,
                                        float *vc, int64_t at, int pos0, double log_base, int normal)
{
    if (o < qpairs)
        kc_rope_pair(qy, NULL, qx, o, qheads, hd, pos0, log_base, normal);
    else if (o < qpairs + kpairs)
        kc_rope_pair(ky, kc + at, kx, o - qpairs, kheads, hd, pos0, log_base, normal);
    else
        vc[at + (o - qpairs - kpairs)] = v[o - qpairs - kpairs];
}

#endif
