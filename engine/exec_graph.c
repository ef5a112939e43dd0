/* exec_graph: the CUDA fast path of exec. A decode pass run by continue or
 * finish with nothing watching single ops is captured once as CUDA graphs
 * (split after the ops that breakpoints name) and replayed; the per-step
 * values travel in step_dev. The fast-path fusions (q/k/v split with the
 * cache stores, residual + norm, matmul + GELU; q/k/v matmuls in one launch,
 * both rotations with both cache stores, kq/softmax/kqv in one, gate/up/
 * SWIGLU in one) apply here only. */
#include "exec_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void exec_set_graph_mode(xf_exec *ex, xf_graph_mode mode)
{
    if (ex->backend != KERN_BACKEND_CUDA)
        return;
#ifdef XF_HAVE_CUDA
    if (mode != ex->graph_mode)
        exec_graph_clear(ex);
#endif
    ex->graph_mode = mode;
}

xf_graph_mode exec_graph_mode(const xf_exec *ex) { return ex->graph_mode; }

void exec_graph_stats(const xf_exec *ex, xf_graph_stats *st) { *st = ex->gstats; }

const char *exec_graph_why(const xf_exec *ex, char *buf, size_t n)
{
    if (ex->backend != KERN_BACKEND_CUDA)
        return "the cpu backend has no graphs";
    if (ex->graph_mode == XF_GRAPH_OFF)
        return "graph off";
    const char *why = exec_looks_why(ex);
    if (why)
        return why;
    for (int k = 0; k < KERN_OP_COUNT; k++) {
        const kern_variant *v = ex->sel[k];
        if (v->backend != KERN_BACKEND_CUDA || !(v->flags & KERN_VF_CAPTURABLE)) {
            snprintf(buf, n, "kernel %s %s cannot be captured", kern_op_name((kern_op)k), v->name);
            return buf;
        }
    }
    return NULL;
}

/* appends s to the comma list in b[n] */
static void list_add(char *b, size_t n, const char *s)
{
    size_t l = strlen(b);
    snprintf(b + l, n - l, "%s%s", l ? ", " : "", s);
}

void exec_graph_fusions(const xf_exec *ex, char *fused, char *unfused, size_t n)
{
    /* each fusion and the op kinds whose selected variants it must reproduce */
    /* archs: G GPT-2, Q Qwen2 and llama (q/k/v then both rotations), 3 Qwen3
     * (its q/k norms sit between: no q/k/v or rope fusion) */
    enum { G = 1, Q = 2, Q3 = 4 };
    static const struct {
        const char *name;
        kern_op ops[4];
        int n_ops, archs;
    } fu[] = {
        {"residual + norm", {KERN_OP_ADD, KERN_OP_NORM}, 2, G},
        {"residual + norm", {KERN_OP_ADD, KERN_OP_RMSNORM}, 2, Q | Q3},
        {"q/k/v matmuls", {KERN_OP_MATMUL}, 1, Q},
        {"rope + kv stores", {KERN_OP_ROPE}, 1, Q},
        {"kq/softmax/kqv", {KERN_OP_KQ, KERN_OP_SOFTMAX, KERN_OP_KQV}, 3, G | Q | Q3},
        /* graph on (not mega): the rotations and stores inside the attention's launch */
        {"rope in the kq/softmax/kqv launch", {KERN_OP_ROPE, KERN_OP_KQ, KERN_OP_SOFTMAX, KERN_OP_KQV}, 4, Q},
        {"gate/up/swiglu", {KERN_OP_MATMUL, KERN_OP_SWIGLU}, 2, Q | Q3},
        {"qkv split + kv stores", {KERN_OP_VIEW}, 1, G},
        {"matmul + gelu", {KERN_OP_MATMUL, KERN_OP_GELU}, 2, G},
    };
    int arch = ex->m->arch == XF_ARCH_GPT2 ? G : ex->m->arch == XF_ARCH_QWEN3 ? Q3 : Q;
    fused[0] = unfused[0] = '\0';
    for (size_t i = 0; i < sizeof fu / sizeof fu[0]; i++) {
        if (!(fu[i].archs & arch))
            continue;
        int bad = -1;
        for (int j = 0; j < fu[i].n_ops && bad < 0; j++)
            if (!(ex->sel[fu[i].ops[j]]->flags & KERN_VF_FUSE_EXACT))
                bad = j;
        if (bad < 0) {
            list_add(fused, n, fu[i].name);
        } else {
            char t[96];
            kern_op o = fu[i].ops[bad];
            snprintf(t, sizeof t, "%s (%s %s)", fu[i].name, kern_op_name(o), ex->sel[o]->name);
            list_add(unfused, n, t);
        }
    }
}

#ifdef XF_HAVE_CUDA
static void slot_free(xf_exec *ex, xf_graph_slot *sl)
{
    kern_cuda_graph_free(sl->g);
    if (sl->wdev)
        ex->mem->free(sl->wdev);
    if (sl->mdev)
        ex->mem->free(sl->mdev);
    sl->g = NULL;
    sl->wdev = NULL;
    sl->mdev = NULL;
    sl->nw = 0;
}

void exec_graph_clear(xf_exec *ex)
{
    for (int i = 0; i < ex->n_gslot; i++)
        slot_free(ex, &ex->gslot[i]);
    ex->n_gslot = 0;
    ex->gslot_next = 0;
    ex->gkey_valid = false;
    ex->graph_failed = false;
}

/* A pass that nothing looks into op by op, on kernels that can be captured. */
bool exec_graph_eligible(const xf_exec *ex, xf_run_mode mode)
{
    if (ex->backend != KERN_BACKEND_CUDA || ex->graph_mode == XF_GRAPH_OFF)
        return false;
    if (mode != XF_RUN_CONTINUE && mode != XF_RUN_FINISH)
        return false;
    /* written into: the rest op by op, nothing captured from it */
    if (ex->prog.n_tokens != 1 || exec_looks_why(ex))
        return false;
    bool ok[KERN_OP_COUNT];
    for (int k = 0; k < KERN_OP_COUNT; k++)
        ok[k] = ex->sel[k]->backend == KERN_BACKEND_CUDA && (ex->sel[k]->flags & KERN_VF_CAPTURABLE);
    for (int i = ex->pc; i < ex->prog.n_ops; i++)
        if (!ok[ex->prog.ops[i].kind])
            return false;
    return true;
}

/* A graph bakes in every pointer of the pass and the kernels chosen: when
 * either changed, the graphs go. */
static int graphs_key(xf_exec *ex, xf_err *err)
{
    if (ex->gkey_valid && ex->n_gbuf == ex->n_buf && ex->gscratch == ex->ctx.scratch &&
        memcmp(ex->gsel, ex->sel, sizeof ex->sel) == 0 &&
        memcmp(ex->gbuf, ex->buf, (size_t)ex->n_buf * sizeof *ex->buf) == 0)
        return 0;
    exec_graph_clear(ex);
    if (ex->n_gbuf != ex->n_buf) {
        void **nb = realloc(ex->gbuf, (size_t)(ex->n_buf > 0 ? ex->n_buf : 1) * sizeof *nb);
        if (!nb)
            return xf_err_set(err, "out of memory");
        ex->gbuf = nb;
        ex->n_gbuf = ex->n_buf;
    }
    memcpy(ex->gbuf, ex->buf, (size_t)ex->n_buf * sizeof *ex->buf);
    memcpy(ex->gsel, ex->sel, sizeof ex->sel);
    ex->gscratch = ex->ctx.scratch;
    ex->gkey_valid = true;
    return 0;
}

/* op i's arguments for a graph: the per-pass values come from step_dev, and
 * the launches are sized for a full context */
static void graph_args(const xf_exec *ex, int i, kern_args *a)
{
    exec_op_args(ex, i, a);
    a->dev_step = ex->step_dev;
    kern_op kind = ex->prog.ops[i].kind;
    if (kind == KERN_OP_KQ || kind == KERN_OP_KQV)
        a->n_kv = ex->m->n_ctx;
    else if (kind == KERN_OP_SOFTMAX)
        a->m = ex->m->n_ctx; /* its rows are the n_kv scores of KQ */
}

/* ops i..i+2 are GPT-2's q, k, v views of one qkv, k and v stored in the cache */
static bool qkv_split_at(const xf_program *p, int i)
{
    const xf_op *q = &p->ops[i], *k = &p->ops[i + 1], *v = &p->ops[i + 2];
    int64_t d = q->args.m;
    if (q->kind != KERN_OP_VIEW || k->kind != KERN_OP_VIEW || v->kind != KERN_OP_VIEW)
        return false;
    if (q->in0 != k->in0 || q->in0 != v->in0 || q->layer < 0 || k->layer != q->layer || v->layer != q->layer)
        return false;
    if (q->cache != XF_CACHE_NONE || k->cache != XF_CACHE_K || v->cache != XF_CACHE_V)
        return false;
    for (int j = 0; j < 3; j++) {
        const xf_op *o = &p->ops[i + j];
        if (o->args.m != d || o->args.x_stride != 3 * d || o->args.off != j * d || o->numel != o->args.n * d)
            return false;
    }
    /* a cache row is one token's k (or v): [n_head_kv, head_dim] */
    return k->shape[1] * k->shape[2] == d && v->shape[1] * v->shape[2] == d;
}

/* ops i..i+n-1 are one-token MATMULs of the same x (q, k, v; gate, up) */
static bool same_x_matmuls(const xf_program *p, int i, int n)
{
    for (int j = 0; j < n; j++) {
        const xf_op *o = &p->ops[i + j];
        if (o->kind != KERN_OP_MATMUL || o->in0 != p->ops[i].in0 || o->args.n != 1)
            return false;
    }
    return true;
}

/* ops i..i+4: q, k, v (v stored in the cache), q_rope of q, k_rope of k
 * (stored in the cache): the attention inputs of Qwen2 and llama */
static bool qkv_rope_at(const xf_program *p, int i)
{
    const xf_op *q = &p->ops[i], *k = &p->ops[i + 1], *v = &p->ops[i + 2], *qr = &p->ops[i + 3],
                *kr = &p->ops[i + 4];
    if (!same_x_matmuls(p, i, 3) || q->cache != XF_CACHE_NONE || k->cache != XF_CACHE_NONE ||
        v->cache != XF_CACHE_V)
        return false;
    return qr->kind == KERN_OP_ROPE && kr->kind == KERN_OP_ROPE && qr->in0 == i && kr->in0 == i + 1 &&
           qr->cache == XF_CACHE_NONE && kr->cache == XF_CACHE_K && kr->layer == v->layer;
}

/* ops i..i+2: KQ, the SOFTMAX of its scores, the KQV of those weights */
static bool attn_at(const xf_program *p, int i)
{
    const xf_op *kq = &p->ops[i], *sm = &p->ops[i + 1], *kqv = &p->ops[i + 2];
    return kq->kind == KERN_OP_KQ && sm->kind == KERN_OP_SOFTMAX && kqv->kind == KERN_OP_KQV && sm->in0 == i &&
           kqv->in0 == i + 1 && kq->cache == XF_CACHE_NONE && sm->cache == XF_CACHE_NONE &&
           kqv->cache == XF_CACHE_NONE;
}

/* ops i..i+2: gate, up of one x and the SWIGLU of the two */
static bool gate_up_at(const xf_program *p, int i)
{
    const xf_op *a = &p->ops[i + 2];
    return same_x_matmuls(p, i, 2) && p->ops[i].cache == XF_CACHE_NONE && p->ops[i + 1].cache == XF_CACHE_NONE &&
           a->kind == KERN_OP_SWIGLU && a->in0 == i && a->in1 == i + 1;
}

/* 1 if the selected variants of op kinds a and b are the ones the fusions reproduce */
static bool exact(const xf_exec *ex, kern_op a, kern_op b)
{
    return (ex->sel[a]->flags & KERN_VF_FUSE_EXACT) && (ex->sel[b]->flags & KERN_VF_FUSE_EXACT);
}

/* Before a launch that is not a megakernel phase: the phases recorded so
 * far go first, as one megakernel launch (nothing when not recording) */
static int mega_flush(xf_exec *ex) { return ex->ctx.mega && kern_cuda_mega_flush(&ex->ctx) != 0 ? -1 : 0; }

/* op i alone, as its selected variant (no cache store) */
static int capture_run(xf_exec *ex, int i)
{
    if (mega_flush(ex) != 0)
        return -1;
    kern_args a;
    graph_args(ex, i, &a);
    /* a capture cannot allocate: exec sized the scratch for the program
     * when the pass began or the selection changed; if it still falls
     * short, fail the capture and run op by op (which grows it) */
    const kern_variant *v = ex->sel[ex->prog.ops[i].kind];
    return kern_variant_scratch(v, &a) > ex->ctx.scratch_size || v->fn(&ex->ctx, &a) != 0 ? -1 : 0;
}

/* op i's output into its KV cache at the step's position, if it has one */
static int capture_store(xf_exec *ex, int i)
{
    const xf_op *op = &ex->prog.ops[i];
    if (op->cache == XF_CACHE_NONE)
        return 0;
    if (mega_flush(ex) != 0)
        return -1;
    int64_t row = op->shape[1] * op->shape[2];
    float *c = (op->cache == XF_CACHE_K ? ex->kcache : ex->vcache)[op->layer];
    return kern_cuda_rows_store(&ex->ctx, c, ex->buf[i], row, op->args.n, op->args.pos0, ex->step_dev) ? -1 : 0;
}

static int capture_one(xf_exec *ex, int i) { return capture_run(ex, i) || capture_store(ex, i) ? -1 : 0; }

/* ops i..i+4 (qkv_rope_at): q, k, v in one launch per weight type, then
 * both rotations and both cache stores in one; where a fused launch does
 * not take the shapes, those ops one kernel each (v's store after the
 * three matmuls: nothing reads it before the rotations). f_attn: ops
 * i+5..i+7 are the attention of q_rope (attn_at), and the rotations and
 * stores may run inside its launch (kern_cuda_attn_rope_fused: one kernel
 * fewer on the token's chain). Returns the ops recorded (5, or 8 with the
 * attention), -1 on failure. */
static int capture_qkv_rope(xf_exec *ex, int i, bool f_mm, bool f_rope, bool f_attn)
{
    kern_args a[5];
    for (int j = 0; j < 5; j++)
        graph_args(ex, i + j, &a[j]);
    const kern_args *mm[3] = {&a[0], &a[1], &a[2]};
    int rc = f_mm ? kern_cuda_matvec_multi(&ex->ctx, mm, 3) : 1;
    for (int j = 0; rc == 1 && j < 3; j++)
        if (capture_run(ex, i + j) != 0)
            return -1;
    if (rc < 0)
        return -1;
    const xf_op *v = &ex->prog.ops[i + 2];
    if (f_rope && f_attn) {
        kern_args kq, sm, kqv;
        graph_args(ex, i + 5, &kq);
        graph_args(ex, i + 6, &sm);
        graph_args(ex, i + 7, &kqv);
        rc = kern_cuda_attn_rope_fused(&ex->ctx, &a[3], &a[4], ex->buf[i + 2], v->numel, &kq, &sm, &kqv,
                                       ex->attn_cnt, ex->attn_part, ex->attn_part_floats);
        if (rc <= 0)
            return rc < 0 ? -1 : 8;
    }
    rc = f_rope ? kern_cuda_rope_store(&ex->ctx, &a[3], &a[4], ex->kcache[v->layer], ex->buf[i + 2], v->numel,
                                       ex->vcache[v->layer])
                : 1;
    if (rc == 1)
        rc = capture_store(ex, i + 2) || capture_one(ex, i + 3) || capture_one(ex, i + 4) ? -1 : 0;
    return rc < 0 ? -1 : 5;
}

/* Records ops s..e on the stream being captured; the fast-path fusions
 * apply only to ops wholly inside the range. */
static int capture_ops(xf_exec *ex, int s, int e)
{
    const xf_program *p = &ex->prog;
    bool fuse = ex->graph_mode == XF_GRAPH_ON || ex->graph_mode == XF_GRAPH_MEGA;
    /* a fusion stands in for the ops it replaces only where it computes what
     * their selected variants compute, bit for bit (kernels.h KERN_VF_FUSE_EXACT) */
    bool f_qkv = fuse && exact(ex, KERN_OP_VIEW, KERN_OP_VIEW);
    bool f_norm = fuse && exact(ex, KERN_OP_ADD, KERN_OP_NORM);
    bool f_rms = fuse && exact(ex, KERN_OP_ADD, KERN_OP_RMSNORM);
    bool f_gelu = fuse && exact(ex, KERN_OP_MATMUL, KERN_OP_GELU);
    bool f_mm = fuse && exact(ex, KERN_OP_MATMUL, KERN_OP_MATMUL);
    bool f_rope = fuse && exact(ex, KERN_OP_ROPE, KERN_OP_ROPE);
    bool f_swiglu = fuse && exact(ex, KERN_OP_MATMUL, KERN_OP_SWIGLU);
    bool f_attn = fuse && exact(ex, KERN_OP_KQ, KERN_OP_SOFTMAX) && exact(ex, KERN_OP_KQV, KERN_OP_KQV);
    for (int i = s; i <= e;) {
        const xf_op *op = &p->ops[i];
        kern_args a;
        graph_args(ex, i, &a);
        if (f_qkv && i + 2 <= e && qkv_split_at(p, i)) {
            if (mega_flush(ex) != 0 ||
                kern_cuda_qkv_split(&ex->ctx, a.x, ex->buf[i], ex->buf[i + 1], ex->buf[i + 2], ex->kcache[op->layer],
                                    ex->vcache[op->layer], op->args.n, op->args.m, op->args.pos0, ex->step_dev) != 0)
                return -1;
            i += 3;
            continue;
        }
        if ((f_mm || f_rope) && i + 4 <= e && qkv_rope_at(p, i)) {
            /* the attention of q_rope right after, wholly in the range */
            bool ra = f_attn && i + 7 <= e && attn_at(p, i + 5) && p->ops[i + 5].in0 == i + 3 &&
                      p->ops[i + 5].layer == p->ops[i + 2].layer;
            int used = capture_qkv_rope(ex, i, f_mm, f_rope, ra);
            if (used < 0)
                return -1;
            i += used;
            continue;
        }
        if (f_attn && i + 2 <= e && attn_at(p, i)) {
            kern_args sm, kqv;
            graph_args(ex, i + 1, &sm);
            graph_args(ex, i + 2, &kqv);
            int rc = kern_cuda_attn_fused(&ex->ctx, &a, &sm, &kqv, ex->attn_cnt, ex->attn_part,
                                          ex->attn_part_floats);
            if (rc < 0)
                return -1;
            if (rc == 0) {
                i += 3;
                continue;
            }
        }
        if (f_swiglu && i + 2 <= e && gate_up_at(p, i)) {
            kern_args g, u, act;
            graph_args(ex, i + 1, &u);
            graph_args(ex, i + 2, &act);
            g = a;
            int rc = kern_cuda_matvec_swiglu(&ex->ctx, &g, &u, &act);
            if (rc < 0)
                return -1;
            if (rc == 0) {
                i += 3;
                continue;
            }
        }
        if (op->kind == KERN_OP_ADD && i + 1 <= e && p->ops[i + 1].in0 == i &&
            ((f_norm && p->ops[i + 1].kind == KERN_OP_NORM) || (f_rms && p->ops[i + 1].kind == KERN_OP_RMSNORM))) {
            kern_args b;
            graph_args(ex, i + 1, &b);
            if (kern_cuda_add_norm(&ex->ctx, &a, &b, p->ops[i + 1].kind == KERN_OP_RMSNORM) != 0)
                return -1;
            i += 2;
            continue;
        }
        if (f_gelu && op->kind == KERN_OP_MATMUL && i + 1 <= e && p->ops[i + 1].kind == KERN_OP_GELU &&
            p->ops[i + 1].in0 == i && op->cache == XF_CACHE_NONE) {
            kern_args b;
            graph_args(ex, i + 1, &b);
            if (mega_flush(ex) != 0 || kern_cuda_matmul_gelu(&ex->ctx, &a, &b) != 0)
                return -1;
            i += 2;
            continue;
        }
        if (ex->ctx.mega && f_mm && op->kind == KERN_OP_MATMUL && op->cache == XF_CACHE_NONE && a.n == 1) {
            /* a one-token product as a megakernel phase: the fused launch
             * of one job runs what the opt MATMUL runs (kernels_cuda.h) */
            const kern_args *mm[1] = {&a};
            int rc = kern_cuda_matvec_multi(&ex->ctx, mm, 1);
            if (rc < 0)
                return -1;
            if (rc == 0) {
                i++;
                continue;
            }
        }
        if (capture_one(ex, i) != 0)
            return -1;
        i++;
    }
    return 0;
}

/* What the watch node of a graph over ops s..e checks: each device
 * condition of a breakpoint on an op of the range (host[] is false inside
 * it: the graph splits after such an op, and the host judges every
 * breakpoint there). Host memory *w (caller frees), *n entries (0: no
 * node), the largest tensor in *maxn. */
static int watch_list(xf_exec *ex, int s, int e, kern_watch **w, int *n, int64_t *maxn, xf_err *err)
{
    int cnt = 0;
    *w = NULL;
    *n = 0;
    *maxn = 0;
    for (int i = s; i <= e; i++)
        if (ex->bdev[i] && !ex->bhost[i])
            for (int k = 0; k < ex->n_brk; k++)
                cnt += ex->bmatch[(size_t)k * (size_t)ex->bmatch_ops + (size_t)i] && exec_cond_on_device(ex->brk[k].cond);
    if (cnt == 0)
        return 0;
    kern_watch *l = calloc((size_t)cnt, sizeof *l);
    if (!l)
        return xf_err_set(err, "out of memory");
    int j = 0;
    for (int i = s; i <= e; i++) {
        if (!ex->bdev[i] || ex->bhost[i])
            continue;
        for (int k = 0; k < ex->n_brk; k++) {
            const xf_break *b = &ex->brk[k];
            if (!ex->bmatch[(size_t)k * (size_t)ex->bmatch_ops + (size_t)i] || !exec_cond_on_device(b->cond))
                continue;
            l[j].x = (const float *)ex->buf[i];
            l[j].n = ex->prog.ops[i].numel;
            l[j].kind = b->cond == XF_COND_NAN ? KERN_WATCH_NAN : b->cond == XF_COND_INF ? KERN_WATCH_INF
                                                                                        : KERN_WATCH_ABSMAX_GT;
            l[j].thr = b->x;
            if (l[j].n > *maxn)
                *maxn = l[j].n;
            j++;
        }
    }
    *w = l;
    *n = cnt;
    return 0;
}

/* Runs ops s..e as one graph, captured on first use; watched: with the
 * watch node of the breakpoints' device conditions last (its flag cleared
 * before the launch). 0 launched, 1 it could not be captured (the caller
 * runs the ops one by one), -1 error. *nw: the conditions the graph checks. */
static int graph_run_range(xf_exec *ex, int s, int e, bool watched, int *nw, xf_err *err)
{
    xf_graph_slot *sl = NULL;
    int wgen = watched ? ex->brk_gen : -1;
    for (int k = 0; k < ex->n_gslot && !sl; k++)
        if (ex->gslot[k].s == s && ex->gslot[k].e == e && ex->gslot[k].wgen == wgen)
            sl = &ex->gslot[k];
    if (!sl) {
        kern_watch *wl = NULL, *wdev = NULL;
        int n = 0;
        int64_t maxn = 0;
        if (watched) {
            /* the list goes to the device before the capture: a copy made
             * during it would be a node reading host memory at every replay */
            if (watch_list(ex, s, e, &wl, &n, &maxn, err) != 0)
                return -1;
            if (n > 0) {
                wdev = ex->mem->alloc((size_t)n * sizeof *wdev);
                int rc = wdev ? ex->mem->to_dev(&ex->ctx, wdev, wl, (size_t)n * sizeof *wl) : -1;
                if (rc == 0)
                    rc = ex->mem->sync(&ex->ctx);
                free(wl);
                if (rc != 0) {
                    if (wdev)
                        ex->mem->free(wdev);
                    return xf_err_set(err, "out of device memory for the breakpoint conditions");
                }
            }
        }
        /* the megakernel's phase table: room for two phases an op */
        void *mdev = NULL;
        if (ex->graph_mode == XF_GRAPH_MEGA) {
            size_t mb = kern_cuda_mega_bytes(2 * (e - s + 1) + 2);
            mdev = mb ? ex->mem->alloc(mb) : NULL;
            if (mdev && kern_cuda_mega_begin(&ex->ctx, mdev, mb) != 0) {
                ex->mem->free(mdev);
                mdev = NULL; /* graphs of launches instead */
            }
        }
        if (kern_cuda_capture_begin(&ex->ctx) != 0) {
            if (mdev) {
                kern_cuda_mega_end(&ex->ctx, 0, NULL, NULL);
                ex->mem->free(mdev);
            }
            if (wdev)
                ex->mem->free(wdev);
            ex->graph_failed = true;
            ex->gstats.fallbacks++;
            return 1;
        }
        /* the first node: this pass's values, from pinned memory at replay time */
        int rc = ex->mem->to_dev(&ex->ctx, ex->step_dev, ex->step_host, XF_STEP_WORDS * sizeof(int32_t));
        if (rc == 0)
            rc = capture_ops(ex, s, e);
        if (rc == 0)
            rc = mega_flush(ex);
        if (rc == 0 && n > 0)
            rc = kern_cuda_watch(&ex->ctx, wdev, n, maxn, ex->watch_dev);
        kern_cuda_graph *g = kern_cuda_capture_end(&ex->ctx, rc == 0);
        int mphases = 0, mlaunches = 0;
        if (mdev) {
            /* the table goes to the device now that the capture is over */
            if (kern_cuda_mega_end(&ex->ctx, g != NULL, &mphases, &mlaunches) != 0 && g) {
                kern_cuda_graph_free(g);
                g = NULL;
            }
            if (!g || mlaunches == 0) {
                ex->mem->free(mdev);
                mdev = NULL;
            }
        }
        if (!g) {
            /* op by op instead, where a failing kernel says what failed */
            if (wdev)
                ex->mem->free(wdev);
            ex->graph_failed = true;
            ex->gstats.fallbacks++;
            return 1;
        }
        if (ex->n_gslot < XF_GRAPH_SLOTS) {
            sl = &ex->gslot[ex->n_gslot++];
        } else {
            sl = &ex->gslot[ex->gslot_next];
            ex->gslot_next = (ex->gslot_next + 1) % XF_GRAPH_SLOTS;
            slot_free(ex, sl);
        }
        sl->s = s;
        sl->e = e;
        sl->g = g;
        sl->wgen = wgen;
        sl->wdev = wdev;
        sl->nw = n;
        sl->mdev = mdev;
        ex->gstats.captures++;
        if (s == 0 && e == ex->prog.n_ops - 1) {
            ex->gstats.nodes = kern_cuda_graph_nodes(g);
            ex->gstats.mega_phases = mlaunches ? mphases : 0;
            ex->gstats.mega_launches = mlaunches;
        }
    }
    if (sl->nw > 0)
        *(volatile int *)ex->watch_host = 0; /* no graph is queued: the last watched one was synced */
    if (kern_cuda_graph_launch(sl->g, &ex->ctx) != 0)
        return xf_err_set(err, "%s..%s: replaying the CUDA graph failed", ex->prog.ops[s].name, ex->prog.ops[e].name);
    ex->inflight = true;
    ex->gstats.replays++;
    *nw = sl->nw;
    return 0;
}

/* The rest of the pass as graphs (continue, finish). With breakpoints
 * (continue): a graph splits after each op a breakpoint names whose
 * condition only the host can judge (none, Lua, nmse(ref)); the nan, inf
 * and absmax>X conditions inside a range are checked by the graph's watch
 * node, and when one held, the range is run again op by op (the pass is
 * deterministic: each op writes its own buffer, the cache stores write the
 * same rows again), where the host finds the op and the breakpoint, so the
 * stop is exactly where op by op would stop. 0: the pass is complete, or
 * it stopped (why set); 1: run the rest op by op from pc; -1 error. */
int exec_graph_run(xf_exec *ex, xf_run_mode mode, xf_stop *why, xf_err *err)
{
    const xf_program *p = &ex->prog;
    if (graphs_key(ex, err) != 0)
        return -1;
    if (ex->graph_failed)
        return 1;
    bool watch = mode == XF_RUN_CONTINUE && ex->n_brk > 0;
    if (watch && exec_brk_cache(ex, err) != 0)
        return -1;
    /* without a device address for the flag, split at every breakpoint */
    const bool *split = !watch ? NULL : ex->watch_dev ? ex->bhost : ex->bany;
    int32_t want[XF_STEP_WORDS] = {p->pos0, p->n_kv, ex->tokens[0], 0};
    if (memcmp(ex->step_host, want, sizeof want) != 0) {
        /* a graph still queued reads step_host when it runs */
        if (ex->inflight && ex->mem->sync(&ex->ctx) != 0)
            return xf_err_set(err, "backend %s failed during the pass", kern_backend_name(ex->backend));
        ex->inflight = false;
        memcpy(ex->step_host, want, sizeof want);
    }
    while (ex->pc < p->n_ops) {
        if (ex->interrupt && *ex->interrupt) {
            *ex->interrupt = 0;
            *why = XF_STOP_INTERRUPT;
            return 0;
        }
        int s = ex->pc, e = s, nw = 0;
        if (split)
            while (e < p->n_ops - 1 && !split[e])
                e++;
        else
            e = p->n_ops - 1;
        int r = graph_run_range(ex, s, e, watch && ex->watch_dev, &nw, err);
        if (r != 0)
            return r;
        if (nw > 0) {
            if (ex->mem->sync(&ex->ctx) != 0)
                return xf_err_set(err, "backend %s failed during the pass", kern_backend_name(ex->backend));
            ex->inflight = false;
            if (*(volatile int *)ex->watch_host) {
                /* a condition held in s..e: again op by op, from s */
                ex->gstats.watch_trips++;
                return 1;
            }
        }
        for (int i = s; i <= e; i++)
            ex->ready[i] = true;
        ex->pc = e + 1;
        ex->last = e;
        if (ex->pc >= p->n_ops)
            ex->n_past = p->pos0 + p->n_tokens;
        if (split && split[e]) {
            int h = exec_breaks_after(ex, e, why, err);
            if (h != 0)
                return h < 0 ? -1 : 0;
        }
    }
    return 0;
}

#endif

void exec_graph_watch_plan(xf_exec *ex, int *on_device, int *splits)
{
    *on_device = *splits = 0;
#ifdef XF_HAVE_CUDA
    xf_err err;
    if (ex->backend != KERN_BACKEND_CUDA || !ex->active || ex->n_brk == 0 || exec_brk_cache(ex, &err) != 0)
        return;
    for (int i = 0; i < ex->prog.n_ops; i++) {
        bool host = ex->watch_dev ? ex->bhost[i] : ex->bany[i];
        *splits += host && i < ex->prog.n_ops - 1;
        *on_device += ex->watch_dev && ex->bdev[i] && !ex->bhost[i];
    }
#else
    (void)ex;
#endif
}
