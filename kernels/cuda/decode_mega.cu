/* decode_mega.cu: the decode megakernel, one launch for a run of the fast
 * path's kernels (decode_mega.h: the phases), and its recorder
 * (kernels_cuda.h: kern_cuda_mega_*).
 *
 * Why: a decode token of a small model is bound by launches and the ramp of
 * each kernel, not by bytes: the Qwen2.5-0.5B shape ran ~8 kernels a layer
 * at ~1.0 ms a token against a 0.13 ms floor (scripts/gpu-notes.md), and
 * the marginal cost of a node in the CUDA graph was ~1.5 us. Here the
 * blocks stay resident for the whole run: a phase's virtual blocks are
 * taken by the resident blocks in turn, each run with the body of the
 * kernel the phase stands for (the same instructions, the same sums in the
 * same order: the same bits as the graph of launches, which
 * test_exec_graph checks tensor by tensor), and a grid barrier separates
 * two phases. Before a block arrives at a barrier it asks the weights of
 * the next matrix-vector phase into L2, so they stream while the barrier
 * and the small phases (norms, rotations, attention) run.
 *
 * A norm of one row that a matrix phase reads next is computed by every
 * block (the same bits everywhere), so it costs no barrier; a matrix
 * phase stages each unit's weight rows while it multiplies the one before.
 *
 * The grid is sized to what is resident at once (occupancy x SMs, at most
 * XF_MEGA_BPS blocks an SM, default 2): the barrier waits for every block,
 * so every block must be running. Activations written by an earlier phase
 * are read with plain loads (GV_LDX), never the read-only path: that one
 * is not coherent within a launch.
 *
 * Not the default (exec: `graph mega`): on an H100 it ran a token of the
 * Qwen2.5-0.5B Q4_K_M shape in 1.99 ms against 1.01 ms for the graph of
 * launches (session 12, scripts/gpu-notes.md). The phases are the
 * launch-shaped bodies (hundreds of small blocks, one memory round trip
 * each), which 264 resident blocks run a few at a time, and the ~170
 * barriers a token cost ~0.6 ms with the idle blocks of the small phases. */
#include <stdlib.h>
#include <string.h>

#define GV_LDX(p) (*(p))
#include "decode_mega.h"
#include "kernels_cuda.h"
#include "opt_body.h"

#define MK_THREADS GV_THREADS
#define MK_PF_MAX (24u << 20) /* bytes of a phase's weights asked into L2 ahead at most */

/* Bits 0-31 of bar[0]: arrivals at the barriers of this launch; bar[1]:
 * blocks done. The last block done sets both back to 0 for the next launch
 * (launches of the megakernel never overlap: a graph runs them in order). */
__device__ __forceinline__ void mk_grid_sync(unsigned *bar, unsigned target)
{
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence(); /* this block's writes, before its arrival */
        atomicAdd(bar, 1u);
        unsigned v;
        uint64_t t0, t;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
        do {
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(bar) : "memory");
            asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
            /* a block that never arrives (the grid was not all resident)
             * would hang the process: fail the launch instead, and exec
             * reports the pass's error */
            if (v < target && t - t0 > 4000000000ull)
                __trap();
        } while (v < target);
    }
    __syncthreads();
}

/* the next matrix-vector phase's weight rows into L2, spread over the grid */
__device__ __forceinline__ void mk_prefetch(const mk_phase *p)
{
    if (p->kind != MK_FM)
        return;
    const fm_jobs &J = p->u.fm;
    uint64_t tid = (uint64_t)blockIdx.x * MK_THREADS + threadIdx.x, all = (uint64_t)gridDim.x * MK_THREADS;
    for (int i = 0; i < J.n; i++) {
        const fm_job &jb = J.j[i];
        uint64_t bytes = (uint64_t)jb.m * jb.rb;
        if (bytes > MK_PF_MAX)
            bytes = MK_PF_MAX;
        for (uint64_t o = tid * 128; o < bytes; o += all * 128)
            asm volatile("prefetch.global.L2 [%0];" ::"l"(jb.w + o));
    }
}

/* Unit u of this block's work in a matrix phase of nvb virtual blocks:
 * virtual block blockIdx.x + (u / per) * gridDim.x, and in the swiglu form
 * (per = 2) gate then up of it, as fm_block runs them. 0 past the end. */
__device__ __forceinline__ int mk_unit(const fm_jobs &J, unsigned nvb, unsigned u, int *ji, unsigned *b)
{
    unsigned per = J.act ? 2u : 1u, vb = blockIdx.x + (u / per) * gridDim.x;
    if (vb >= nvb)
        return 0;
    if (J.act) {
        *ji = (int)(u % per);
        *b = vb;
        return 1;
    }
    int i = 0;
    while (i + 1 < J.n && vb >= J.j[i + 1].first)
        i++;
    *ji = i;
    *b = vb - J.j[i].first;
    return 1;
}

/* the rows of unit (ji, b) of a staged job into buffer buf (cp.async,
 * committed as one group); NULL (and an empty group) for the direct plan */
__device__ __forceinline__ const uint8_t *mk_issue(const fm_job &jb, unsigned b, uint4 *buf)
{
    const uint8_t *at = NULL;
    if (jb.path == KC_MV_STAGED) {
        int64_t r0 = (int64_t)b * jb.R;
        int rows = (int)(jb.m - r0 < jb.R ? jb.m - r0 : jb.R);
        at = gv_stage_issue(buf, jb.w + (uint64_t)r0 * jb.rb, (uint64_t)rows * jb.rb, jb.w,
                            jb.w + (uint64_t)jb.m * jb.rb);
    }
    /* a group even when empty: wait_group 1 then always means "all but
     * the unit just issued" */
    asm volatile("cp.async.commit_group;\n" ::: "memory");
    return at;
}

template <int WT, class ST>
__device__ __forceinline__ void mk_dots(const fm_job &jb, unsigned b, const uint8_t *at, float *red, ST st)
{
    if (!at) { /* the direct plan: no staging */
        fm_run<WT>(jb, b, NULL, red, st);
        return;
    }
    int64_t r0 = (int64_t)b * jb.R;
    int rows = (int)(jb.m - r0 < jb.R ? jb.m - r0 : jb.R);
    switch (jb.G) {
    case 32: gv_dots<WT, 32>(at, red, jb.x, jb.rb, jb.k, r0, rows, st); break;
    case 64: gv_dots<WT, 64>(at, red, jb.x, jb.rb, jb.k, r0, rows, st); break;
    case 128: gv_dots<WT, 128>(at, red, jb.x, jb.rb, jb.k, r0, rows, st); break;
    default: gv_dots<WT, 256>(at, red, jb.x, jb.rb, jb.k, r0, rows, st); break;
    }
}

/* A matrix phase: this block's units in order, each one's rows staged
 * while the one before is multiplied (two buffers of half bytes in tile).
 * Each unit runs gv_dots (or mv_dot1) as fm_block would: the same bits. */
template <int WT>
__device__ __forceinline__ void mk_fm_units(const fm_jobs &J, unsigned nvb, uint4 *tile, unsigned half, float *red)
{
    int ji, nji;
    unsigned b, nb;
    if (!mk_unit(J, nvb, 0, &ji, &b))
        return;
    uint4 *buf[2] = {tile, tile + half / 16};
    const uint8_t *at[2];
    at[0] = mk_issue(J.j[ji], b, buf[0]);
    for (unsigned u = 0;; u++) {
        int more = mk_unit(J, nvb, u + 1, &nji, &nb);
        if (more) {
            at[(u + 1) & 1] = mk_issue(J.j[nji], nb, buf[(u + 1) & 1]);
            asm volatile("cp.async.wait_group 1;\n" ::: "memory");
        } else {
            asm volatile("cp.async.wait_group 0;\n" ::: "memory");
        }
        __syncthreads(); /* unit u's rows, staged by every thread */
        const fm_job &jb = J.j[ji];
        if (J.act && ji == 1)
            mk_dots<WT>(jb, b, at[u & 1], red, fm_store_swiglu{jb.y, J.act, jb.b, J.j[0].y});
        else
            mk_dots<WT>(jb, b, at[u & 1], red, fm_store{jb.y, jb.b});
        __syncthreads(); /* its buffer is unit u + 2's */
        if (!more)
            break;
        ji = nji;
        b = nb;
    }
}

__device__ __noinline__ void mk_fm(const mk_phase *p, uint4 *tile, float *red)
{
    const fm_jobs &J = p->u.fm;
    unsigned vb = p->nvb, half = p->smem;
    switch (p->wt) {
    case XF_TYPE_F32: mk_fm_units<XF_TYPE_F32>(J, vb, tile, half, red); break;
    case XF_TYPE_F16: mk_fm_units<XF_TYPE_F16>(J, vb, tile, half, red); break;
    case XF_TYPE_BF16: mk_fm_units<XF_TYPE_BF16>(J, vb, tile, half, red); break;
    case XF_TYPE_Q4_0: mk_fm_units<XF_TYPE_Q4_0>(J, vb, tile, half, red); break;
    case XF_TYPE_Q4_1: mk_fm_units<XF_TYPE_Q4_1>(J, vb, tile, half, red); break;
    case XF_TYPE_Q5_0: mk_fm_units<XF_TYPE_Q5_0>(J, vb, tile, half, red); break;
    case XF_TYPE_Q5_1: mk_fm_units<XF_TYPE_Q5_1>(J, vb, tile, half, red); break;
    case XF_TYPE_Q8_0: mk_fm_units<XF_TYPE_Q8_0>(J, vb, tile, half, red); break;
    case XF_TYPE_Q4_K: mk_fm_units<XF_TYPE_Q4_K>(J, vb, tile, half, red); break;
    case XF_TYPE_Q5_K: mk_fm_units<XF_TYPE_Q5_K>(J, vb, tile, half, red); break;
    case XF_TYPE_Q6_K: mk_fm_units<XF_TYPE_Q6_K>(J, vb, tile, half, red); break;
    case XF_TYPE_MXFP4: mk_fm_units<XF_TYPE_MXFP4>(J, vb, tile, half, red); break;
    default: break; /* the recorder takes no other type */
    }
}

__device__ __noinline__ void mk_norm_vb(const mk_norm *a, unsigned vb, float *sh)
{
    if (a->add)
        opt_norm_row<true>(vb, a->nt, sh, a->y, a->x, a->x2, a->sum, a->g, a->b, a->k, a->eps, a->rms, a->vec);
    else
        opt_norm_row<false>(vb, a->nt, sh, a->y, a->x, NULL, NULL, a->g, a->b, a->k, a->eps, a->rms, a->vec);
}

__device__ __noinline__ void mk_rope_vb(const mk_rope *a, unsigned vb, unsigned nvb)
{
    int pos0 = a->step ? a->step[KERN_STEP_POS0] : a->pos0;
    int64_t at = (int64_t)pos0 * a->kvrow, total = a->qpairs + a->kpairs + a->vn;
    for (int64_t o = (int64_t)vb * MK_THREADS + threadIdx.x; o < total; o += (int64_t)nvb * MK_THREADS)
        fr_item(o, a->qy, a->qx, a->qpairs, a->qheads, a->ky, a->kx, a->kpairs, a->kheads, a->hd, a->kc, a->v, a->vc,
                at, pos0, a->log_base, a->normal);
}

/* sc: KQV_CH floats (the launch's staging tile, idle outside MK_FM);
 * st: 2 float2 */
__device__ __noinline__ void mk_fa_vb(const mk_fa *a, unsigned vb, float *qs, float *sc, float2 *st,
                                      float (*red)[KQV_MAX_HD])
{
    int h = (int)(vb % (unsigned)a->nh), by = (int)(vb / (unsigned)a->nh);
    if (a->vec)
        fa_body<true, MK_THREADS, 4>(h, by, a->gy, qs, sc, st, red, a->kq, a->kq_soft, a->kqv, a->q, a->kc,
                                     a->vc, a->nh, a->nkv, a->hd, a->n_kv, a->pos0, a->step, a->scale,
                                     a->stats, a->cmax);
    else
        fa_body<false, MK_THREADS, 4>(h, by, a->gy, qs, sc, st, red, a->kq, a->kq_soft, a->kqv, a->q, a->kc,
                                      a->vc, a->nh, a->nkv, a->hd, a->n_kv, a->pos0, a->step, a->scale,
                                      a->stats, a->cmax);
}

__device__ __noinline__ void mk_kqv_vb(const mk_kqv *a, unsigned vb, float *psh, float2 *mi,
                                       float (*red)[KQV_MAX_HD], int *last)
{
    int h = (int)(vb % (unsigned)a->nh), by = (int)(vb / (unsigned)a->nh);
    fa_kqv_body<1>(h, by, a->gy, threadIdx.x & 31, threadIdx.x >> 5, psh, mi, red, last, a->y, a->kq, a->p,
                   a->vc, a->nh, a->nkv, a->hd, a->n_kv, a->step, a->part, a->stats, a->cmax, a->cnt);
}

/* phases [0, n) of ph; bar: 2 words, zero at the launch; MINB: blocks an
 * SM the registers allow; flags: MK_F_* (to measure what each choice is
 * worth; the results are the same bits either way) */
#define MK_F_NOPF 2    /* no weights asked into L2 ahead */
#define MK_F_NORMBAR 4 /* a one-row norm before a matrix phase by one block, then a barrier */
template <int MINB>
__global__ void __launch_bounds__(MK_THREADS, MINB) mk_kernel(const mk_phase *ph, int n, unsigned *bar, int flags)
{
    extern __shared__ uint4 mk_tile[]; /* MK_FM: the staged rows */
    __shared__ float red8[GV_THREADS / 32];
    __shared__ float sh[32];
    __shared__ float qs[KQV_MAX_HD];
    __shared__ float2 st[2];
    __shared__ float red[KQV_SPLIT][KQV_MAX_HD];
    __shared__ int last;
    unsigned nbar = 0; /* barriers passed */
    for (int i = 0; i < n; i++) {
        const mk_phase *p = ph + i;
        int kind = p->kind;
        unsigned nvb = p->nvb;
        /* A norm of one row that a matrix phase reads next: every block
         * computes it (the same code on the same inputs: the same bits,
         * stored by every block) and reads its own, with no barrier between */
        bool every = kind == MK_NORM && nvb == 1 && i + 1 < n && ph[i + 1].kind == MK_FM &&
                     !(flags & MK_F_NORMBAR);
        if (every) {
            mk_norm_vb(&p->u.norm, 0, sh);
            __syncthreads(); /* its stores, before this block's threads read them */
            continue;
        }
        if (kind == MK_FM) /* its own loop: the next unit staged ahead */
            mk_fm(p, mk_tile, red8);
        for (unsigned vb = blockIdx.x; vb < nvb && kind != MK_FM; vb += gridDim.x) {
            switch (kind) {
            case MK_NORM: mk_norm_vb(&p->u.norm, vb, sh); break;
            case MK_ROPE: mk_rope_vb(&p->u.rope, vb, nvb); break;
            case MK_FA:
                mk_fa_vb(&p->u.fa, vb, qs, (float *)mk_tile, st, red);
                break;
            case MK_KQV:
                mk_kqv_vb(&p->u.kqv, vb, (float *)mk_tile, st, red, &last);
                break;
            default: break;
            }
            __syncthreads(); /* shared memory is the next virtual block's */
        }
        if (i + 1 < n) {
            /* the weights of the next matrix phase (of the next three) stream
             * into L2 while this block waits and the small phases run */
            for (int j = i + 1; j < n && j <= i + 3 && !(flags & MK_F_NOPF); j++)
                if (ph[j].kind == MK_FM) {
                    mk_prefetch(ph + j);
                    break;
                }
            mk_grid_sync(bar, ++nbar * gridDim.x);
        }
    }
    if (threadIdx.x == 0) {
        __threadfence();
        unsigned v = atomicAdd(bar + 1, 1u);
        if (v == gridDim.x - 1) { /* every block is past every barrier */
            bar[0] = 0;
            bar[1] = 0;
            __threadfence();
        }
    }
}

/* ---- the recorder ----------------------------------------------------------- */

struct kern_mega {
    mk_phase *ph;    /* host copy of the table */
    int n, cap;      /* phases recorded, room */
    int start;       /* the first phase not yet launched */
    char *dev;       /* device: bar words (MK_HDR bytes), then the table */
    unsigned smem;   /* dynamic shared memory of the pending launch */
    int launches;
};
#define MK_HDR 256

extern "C" size_t kern_cuda_mega_bytes(int max_phases)
{
    if (max_phases <= 0 || (size_t)max_phases > ((size_t)1 << 24))
        return 0;
    return MK_HDR + (size_t)max_phases * sizeof(mk_phase);
}

extern "C" int kern_cuda_mega_begin(kern_ctx *ctx, void *dev, size_t bytes)
{
    if (!ctx || ctx->mega || !dev || bytes < kern_cuda_mega_bytes(1) || !kc_aligned16(dev))
        return -1;
    kern_mega *r = (kern_mega *)calloc(1, sizeof *r);
    int cap = (int)((bytes - MK_HDR) / sizeof(mk_phase));
    if (!r || !(r->ph = (mk_phase *)calloc((size_t)cap, sizeof(mk_phase)))) {
        free(r);
        return -1;
    }
    r->cap = cap;
    r->dev = (char *)dev;
    ctx->mega = r;
    return 0;
}

int kc_mega_on(const kern_ctx *ctx) { return ctx && ctx->mega != NULL; }

int kc_mega_add(kern_ctx *ctx, const mk_phase *ph)
{
    kern_mega *r = (kern_mega *)ctx->mega;
    if (r->n >= r->cap || ph->nvb == 0)
        return ph->nvb == 0 ? 0 : -1;
    mk_phase *q = &r->ph[r->n++];
    *q = *ph;
    if (q->kind == MK_FM) {
        q->smem = (q->smem + 15u) & ~15u; /* a buffer; the launch has two */
        if (2 * q->smem > r->smem)
            r->smem = 2 * q->smem;
    }
    /* the attention phases keep a chunk of scores or weights in the tile */
    if ((q->kind == MK_FA || q->kind == MK_KQV) && r->smem < KQV_CH * sizeof(float))
        r->smem = KQV_CH * sizeof(float);
    return 0;
}

static int mk_env(const char *name, int dflt, int lo, int hi)
{
    const char *e = getenv(name);
    int v = e ? atoi(e) : dflt;
    return v >= lo && v <= hi ? v : dflt;
}

/* blocks an SM for smem bytes of dynamic shared memory: what fits at once
 * of kernel k, at most want; 0 if none fits */
static int mk_blocks_per_sm(void (*k)(const mk_phase *, int, unsigned *, int), unsigned smem, int want)
{
    if (cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess)
        return 0;
    int fit = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&fit, k, MK_THREADS, smem) != cudaSuccess)
        return 0;
    return fit < want ? fit : want;
}

int kc_mega_flush(kern_ctx *ctx)
{
    kern_mega *r = ctx ? (kern_mega *)ctx->mega : NULL;
    if (!r || r->n == r->start)
        return 0;
    /* XF_MEGA_BPS: blocks an SM (1-2: 128 registers a thread, 3-4: 64);
     * XF_MEGA_FLAGS: MK_F_* for measurements */
    int want = mk_env("XF_MEGA_BPS", 2, 1, 4), flags = mk_env("XF_MEGA_FLAGS", 0, 0, 6) & (MK_F_NOPF | MK_F_NORMBAR);
    void (*k)(const mk_phase *, int, unsigned *, int) = want > 2 ? mk_kernel<4> : mk_kernel<2>;
    int sms = kc_sm_count(), bps = mk_blocks_per_sm(k, r->smem, want);
    if (sms <= 0 || bps <= 0)
        return -1;
    const mk_phase *tab = (const mk_phase *)(r->dev + MK_HDR) + r->start;
    k<<<(unsigned)(sms * bps), MK_THREADS, r->smem, kc_stream(ctx)>>>(tab, r->n - r->start, (unsigned *)r->dev,
                                                                     flags);
    r->start = r->n;
    r->smem = 0;
    r->launches++;
    return kc_launch_ok();
}

extern "C" int kern_cuda_mega_flush(kern_ctx *ctx) { return kc_mega_flush(ctx); }

extern "C" int kern_cuda_mega_end(kern_ctx *ctx, int upload, int *phases, int *launches)
{
    kern_mega *r = ctx ? (kern_mega *)ctx->mega : NULL;
    if (!r)
        return -1;
    ctx->mega = NULL;
    int rc = 0;
    if (upload) {
        /* after the capture: the table the captured launches point at, and
         * the barrier words at zero */
        static const char zero[MK_HDR] = {0};
        if (cudaMemcpy(r->dev, zero, MK_HDR, cudaMemcpyHostToDevice) != cudaSuccess ||
            (r->n > 0 &&
             cudaMemcpy(r->dev + MK_HDR, r->ph, (size_t)r->n * sizeof(mk_phase), cudaMemcpyHostToDevice) != cudaSuccess))
            rc = -1;
    }
    if (phases)
        *phases = r->n;
    if (launches)
        *launches = r->launches;
    free(r->ph);
    free(r);
    return rc;
}
