/* fused_decode.cu: the decode fast path's launches that stand in for
 * several opt ops of one token at once (kernels_cuda.h declares them):
 *  - kern_cuda_matvec_multi: the matrix-vector products of one token that
 *    read the same x (q, k, v) in one launch per weight type;
 *  - kern_cuda_matvec_swiglu: gate and up and silu(gate) * up in one launch;
 *  - kern_cuda_rope_store: the q and k rotations and both cache stores.
 *
 * Why: a decode token of a small model is bound by launches, not bytes: the
 * Qwen2.5-0.5B shape ran ~17 kernels a layer, each ~2-3 us in a CUDA graph
 * whatever its size (scripts/gpu-notes.md), against ~5 us of weights a
 * layer at the copy bandwidth.
 *
 * Each output is computed by the same device code, with the same lanes per
 * row and the same sums in the same order, as the opt kernel it replaces
 * (gemv_body.h: gv_body and mv_dot1, and the plan kc_mv_plan_for that says
 * which of the two kc_opt_matmul runs for the shape; cuda_internal.h:
 * kc_rope_pair, kc_swiglu): the same bits, which test_exec_graph checks
 * tensor by tensor against the unfused graph and against op by op.
 *
 * One launch of fm_kernel runs up to FM_JOBS matrices of one weight type:
 * block b belongs to the job whose range holds it; a job of the staged
 * plan (KC_MV_STAGED) takes its blocks as gemv.cu's kernel does, a job of
 * the direct plan (KC_MV_DIRECT, 128-thread blocks) takes two of its blocks
 * per 256-thread block (threads 0-127 and 128-255). In the swiglu form,
 * every block runs the same rows of gate and then of up, so the thread that
 * stores up[r] is the one that stored gate[r] and reads it back.
 * fm_kernel is a programmatic dependent launch (cuda_internal.h
 * KC_PDL_WAIT): it stages or prefetches its weight rows before it waits for
 * the kernel before it. */
#include "cuda_internal.h"
#include "gemv_body.h"
#include "kernels_cuda.h"

#define FM_JOBS 3

typedef struct fm_job {
    float *y;
    const float *x, *b;
    const uint8_t *w;
    uint64_t rb;
    int64_t m;
    int k, path, R, G, lg;
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

template <int WT>
__global__ void __launch_bounds__(GV_THREADS, 4) fm_kernel(const __grid_constant__ fm_jobs J)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    extern __shared__ uint4 fm_tile[]; /* the staged jobs' rows (the largest plan's bytes) */
    __shared__ float fm_red[GV_THREADS / 32];
    if (J.act) {
        fm_run<WT>(J.j[0], blockIdx.x, fm_tile, fm_red, fm_store{J.j[0].y, J.j[0].b});
        __syncthreads(); /* the tile and red are staged again */
        fm_run<WT>(J.j[1], blockIdx.x, fm_tile, fm_red, fm_store_swiglu{J.j[1].y, J.act, J.j[1].b, J.j[0].y});
        return;
    }
    int i = 0;
    while (i + 1 < J.n && blockIdx.x >= J.j[i + 1].first)
        i++;
    fm_run<WT>(J.j[i], blockIdx.x - J.j[i].first, fm_tile, fm_red, fm_store{J.j[i].y, J.j[i].b});
}

/* fills jb from a's plan; 0, or 1 if a is not a shape the fused launch runs */
static int fm_job_of(const kern_args *a, fm_job *jb, size_t *smem)
{
    kc_mv_plan pl;
    kc_mv_plan_for(a, &pl);
    if (pl.path == KC_MV_OTHER || a->k > INT32_MAX)
        return 1;
    memset(jb, 0, sizeof *jb);
    jb->y = a->y;
    jb->x = a->x;
    jb->b = a->b;
    jb->w = (const uint8_t *)a->w;
    jb->rb = pl.rb;
    jb->m = a->m;
    jb->k = (int)a->k;
    jb->path = pl.path;
    jb->R = pl.R;
    jb->G = pl.G;
    jb->lg = pl.lg;
    jb->blocks = pl.path == KC_MV_STAGED ? pl.blocks : (pl.blocks + 1) / 2;
    if (pl.path == KC_MV_STAGED && pl.smem > *smem)
        *smem = pl.smem;
    return 0;
}

template <int WT> struct fm_launch {
    static int run(cudaStream_t st, const fm_jobs *J, unsigned grid, size_t smem)
    {
        /* programmatic dependent: weights staged or prefetched before the
         * wait for the kernel before (gv_stage, fm_run) */
        return kc_launch_pdl(fm_kernel<WT>, dim3(grid), dim3(GV_THREADS), smem, st, *J);
    }
};

extern "C" int kern_cuda_matvec_multi(kern_ctx *ctx, const kern_args *const *a, int n)
{
    if (n < 1 || n > FM_JOBS)
        return 1;
    fm_job jobs[FM_JOBS];
    size_t smem[FM_JOBS] = {0};
    for (int i = 0; i < n; i++)
        if (!a[i] || fm_job_of(a[i], &jobs[i], &smem[i]))
            return 1; /* nothing launched: the caller runs each alone */
    /* one launch per weight type, the jobs in their order */
    bool done[FM_JOBS] = {false};
    for (int i = 0; i < n; i++) {
        if (done[i])
            continue;
        fm_jobs J;
        memset(&J, 0, sizeof J);
        size_t sm = 0;
        uint64_t grid = 0;
        for (int j = i; j < n; j++) {
            if (done[j] || a[j]->w_type != a[i]->w_type)
                continue;
            J.j[J.n] = jobs[j];
            J.j[J.n].first = (unsigned)grid;
            grid += jobs[j].blocks;
            sm = smem[j] > sm ? smem[j] : sm;
            J.n++;
            done[j] = true;
        }
        if (grid > UINT32_MAX)
            return -1;
        if (kc_dispatch_type<fm_launch>(a[i]->w_type, kc_stream(ctx), (const fm_jobs *)&J, (unsigned)grid, sm))
            return -1;
    }
    return 0;
}

extern "C" int kern_cuda_matvec_swiglu(kern_ctx *ctx, const kern_args *gate, const kern_args *up,
                                       const kern_args *act)
{
    if (!gate || !up || !act || !act->y || act->x != gate->y || act->x2 != up->y || act->n != 1 ||
        act->k != gate->m)
        return 1;
    fm_jobs J;
    memset(&J, 0, sizeof J);
    size_t sm = 0;
    if (gate->w_type != up->w_type || gate->m != up->m || gate->k != up->k || gate->x != up->x ||
        fm_job_of(gate, &J.j[0], &sm) || fm_job_of(up, &J.j[1], &sm))
        return 1;
    /* one cut for both, so that each row of up is where its gate row was */
    const fm_job *g = &J.j[0], *u = &J.j[1];
    if (g->path != u->path || g->R != u->R || g->G != u->G || g->lg != u->lg || g->blocks != u->blocks)
        return 1;
    J.n = 2;
    J.act = act->y;
    return kc_dispatch_type<fm_launch>(gate->w_type, kc_stream(ctx), (const fm_jobs *)&J, g->blocks, sm);
}

/* ---- ROPE of q and k, k_rope and v into the caches ----------------------- */

__global__ void fr_kernel(float *qy, const float *qx, int64_t qpairs, int qheads, float *ky, const float *kx,
                          int64_t kpairs, int kheads, int hd, float *kc, const float *v, float *vc, int64_t vn,
                          int64_t kvrow, int pos0, const int32_t *step, double log_base, int normal)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    if (step)
        pos0 = step[KERN_STEP_POS0];
    int64_t at = (int64_t)pos0 * kvrow; /* the token's row of either cache */
    int64_t total = qpairs + kpairs + vn;
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < total;
         o += (int64_t)gridDim.x * blockDim.x) {
        if (o < qpairs)
            kc_rope_pair(qy, NULL, qx, o, qheads, hd, pos0, log_base, normal);
        else if (o < qpairs + kpairs)
            kc_rope_pair(ky, kc + at, kx, o - qpairs, kheads, hd, pos0, log_base, normal);
        else
            vc[at + (o - qpairs - kpairs)] = v[o - qpairs - kpairs];
    }
}

extern "C" int kern_cuda_rope_store(kern_ctx *ctx, const kern_args *q, const kern_args *k, float *kc,
                                    const float *v, int64_t v_numel, float *vc)
{
    if (!q || !k || !kc || !v || !vc || !q->x || !q->y || !k->x || !k->y)
        return 1;
    if (v_numel != (int64_t)k->n_head * k->head_dim) /* a v row is a k row's size (one token) */
        return 1;
    if (q->n != 1 || k->n != 1 || q->head_dim != k->head_dim || q->head_dim <= 0 || q->head_dim % 2 ||
        q->rope_base != k->rope_base || !(q->rope_base > 0) || q->rope_mode != k->rope_mode ||
        (q->rope_mode != KERN_ROPE_NEOX && q->rope_mode != KERN_ROPE_NORMAL) || q->dev_step != k->dev_step ||
        q->pos0 != k->pos0 || q->pos0 < 0 || q->n_head <= 0 || k->n_head <= 0)
        return 1;
    int64_t hd = q->head_dim;
    int64_t qpairs = q->n_head * (hd / 2), kpairs = k->n_head * (hd / 2), kvrow = k->n_head * hd;
    fr_kernel<<<kc_grid_1d(qpairs + kpairs + kvrow, 256), 256, 0, kc_stream(ctx)>>>(
        q->y, q->x, qpairs, q->n_head, k->y, k->x, kpairs, k->n_head, q->head_dim, kc, v, vc, kvrow, kvrow, q->pos0,
        q->dev_step, log((double)q->rope_base), q->rope_mode == KERN_ROPE_NORMAL);
    return kc_launch_ok();
}
