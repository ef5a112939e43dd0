/* fused_decode.cu: the decode fast path's launches that stand in for
 * several opt ops of one token at once (kernels_cuda.h declares them):
 *  - kern_cuda_matvec_multi: the matrix-vector products of one token that
 *    read the same x (q, k, v) in one launch (one per weight type, but for
 *    the two-type pairs of FM2_PAIRS: one);
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
#include "decode_mega.h"
#include "fm_body.h"
#include "kernels_cuda.h"

template <int WT>
__global__ void __launch_bounds__(GV_THREADS, 4) fm_kernel(const __grid_constant__ fm_jobs J)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    extern __shared__ uint4 fm_tile[]; /* the staged jobs' rows (the largest plan's bytes) */
    __shared__ float fm_red[GV_THREADS / 32];
    fm_block<WT>(J, blockIdx.x, fm_tile, fm_red);
}

/* Two weight types in one launch: q, k and v of a K-quant file are often
 * of two (Q4_K_M gives v Q6_K in half the layers, or Q5_0 and Q8_0 where
 * rows are not whole 256-blocks), and a second launch of the v product
 * alone was one more kernel on the token's dependent chain (it waits for
 * the q and k launch to end before it may write). The pairs such files
 * give, first type (q's) then second: */
#define FM2_PAIRS(X)                                                                                         \
    X(XF_TYPE_Q5_0, XF_TYPE_Q8_0)                                                                            \
    X(XF_TYPE_Q5_1, XF_TYPE_Q8_0)                                                                            \
    X(XF_TYPE_Q4_K, XF_TYPE_Q6_K)                                                                            \
    X(XF_TYPE_Q5_K, XF_TYPE_Q6_K)

template <int WA, int WB>
__global__ void __launch_bounds__(GV_THREADS, 4) fm2_kernel(const __grid_constant__ fm_jobs J)
{
    KC_PDL_TRIGGER();
    extern __shared__ uint4 fm_tile[];
    __shared__ float fm_red[GV_THREADS / 32];
    fm_block2<WA, WB>(J, blockIdx.x, fm_tile, fm_red);
}

/* one launch of J (jobs of types wa then wb); 1 where the pair has no
 * kernel (nothing launched) */
static int fm2_launch(cudaStream_t st, int wa, int wb, const fm_jobs *J, unsigned grid, size_t smem)
{
#define FM2_CASE(A, B)                                                                                       \
    if (wa == (A) && wb == (B))                                                                              \
        return kc_launch_pdl(fm2_kernel<A, B>, dim3(grid), dim3(GV_THREADS), smem, st, *J) ? -1 : 0;
    FM2_PAIRS(FM2_CASE)
#undef FM2_CASE
    return 1;
}

extern "C" int kern_cuda_matvec_pair_fused(int first_type, int second_type)
{
#define FM2_HAS(A, B)                                                                                        \
    if (first_type == (A) && second_type == (B))                                                             \
        return 1;
    FM2_PAIRS(FM2_HAS)
#undef FM2_HAS
    return 0;
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
    jb->wt = a->w_type;
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

/* the launch of J as a phase of the decode megakernel instead */
static int fm_record(kern_ctx *ctx, const fm_jobs *J, int wt, unsigned grid, size_t smem)
{
    mk_phase ph;
    memset(&ph, 0, sizeof ph);
    ph.kind = MK_FM;
    ph.wt = wt;
    ph.nvb = grid;
    ph.smem = (unsigned)smem;
    ph.u.fm = *J;
    return kc_mega_add(ctx, &ph);
}

extern "C" int kern_cuda_matvec_multi(kern_ctx *ctx, const kern_args *const *a, int n)
{
    if (n < 1 || n > FM_JOBS)
        return 1;
    fm_job jobs[FM_JOBS];
    size_t smem[FM_JOBS] = {0};
    for (int i = 0; i < n; i++)
        if (!a[i] || fm_job_of(a[i], &jobs[i], &smem[i]))
            return 1; /* nothing launched: the caller runs each alone */
    /* one launch per weight type, the jobs in their order; two types of a
     * known pair (q's first) in one launch, not in the megakernel (its
     * phases are one type each) */
    int wb = -1;
    bool pair = !kc_mega_on(ctx);
    for (int i = 1; i < n && pair; i++)
        if (a[i]->w_type != a[0]->w_type) {
            pair = wb < 0 || a[i]->w_type == wb; /* not three types */
            wb = a[i]->w_type;
        }
    pair = pair && wb >= 0 && kern_cuda_matvec_pair_fused(a[0]->w_type, wb);
    bool done[FM_JOBS] = {false};
    for (int i = 0; i < n; i++) {
        if (done[i])
            continue;
        fm_jobs J;
        memset(&J, 0, sizeof J);
        size_t sm = 0;
        uint64_t grid = 0;
        for (int j = i; j < n; j++) {
            if (done[j] || (!pair && a[j]->w_type != a[i]->w_type))
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
        if (kc_mega_on(ctx)) { /* a phase of the megakernel (decode_mega.cu) */
            if (fm_record(ctx, &J, a[i]->w_type, (unsigned)grid, sm))
                return -1;
            continue;
        }
        cudaStream_t st = kc_stream(ctx);
        if (pair
                ? fm2_launch(st, a[0]->w_type, wb, &J, (unsigned)grid, sm) != 0
                : kc_dispatch_type<fm_launch>(a[i]->w_type, st, (const fm_jobs *)&J, (unsigned)grid, sm) != 0)
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
    if (kc_mega_on(ctx))
        return fm_record(ctx, &J, gate->w_type, g->blocks, sm);
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
         o += (int64_t)gridDim.x * blockDim.x)
        fr_item(o, qy, qx, qpairs, qheads, ky, kx, kpairs, kheads, hd, kc, v, vc, at, pos0, log_base, normal);
}

extern "C" int kern_cuda_rope_store(kern_ctx *ctx, const kern_args *q, const kern_args *k, float *kc,
                                    const float *v, int64_t v_numel, float *vc)
{
    if (!kc || !v || !vc || !kc_rope_pair_ok(q, k, v_numel))
        return 1;
    int64_t hd = q->head_dim;
    int64_t qpairs = q->n_head * (hd / 2), kpairs = k->n_head * (hd / 2), kvrow = k->n_head * hd;
    if (kc_mega_on(ctx)) { /* a phase of the megakernel: fr_kernel's arguments */
        mk_phase ph;
        memset(&ph, 0, sizeof ph);
        ph.kind = MK_ROPE;
        ph.nvb = (unsigned)((qpairs + kpairs + kvrow + GV_THREADS - 1) / GV_THREADS);
        mk_rope *r = &ph.u.rope;
        r->qy = q->y, r->qx = q->x, r->qpairs = qpairs, r->qheads = q->n_head;
        r->ky = k->y, r->kx = k->x, r->kpairs = kpairs, r->kheads = k->n_head, r->hd = q->head_dim;
        r->kc = kc, r->v = v, r->vc = vc, r->vn = kvrow, r->kvrow = kvrow, r->pos0 = q->pos0, r->step = q->dev_step;
        r->log_base = log((double)q->rope_base), r->normal = q->rope_mode == KERN_ROPE_NORMAL;
        return kc_mega_add(ctx, &ph);
    }
    fr_kernel<<<kc_grid_1d(qpairs + kpairs + kvrow, 256), 256, 0, kc_stream(ctx)>>>(
        q->y, q->x, qpairs, q->n_head, k->y, k->x, kpairs, k->n_head, q->head_dim, kc, v, vc, kvrow, kvrow, q->pos0,
        q->dev_step, log((double)q->rope_base), q->rope_mode == KERN_ROPE_NORMAL);
    return kc_launch_ok();
}
