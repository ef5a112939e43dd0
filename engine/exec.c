#include "exec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "quant.h"
#ifdef XF_HAVE_CUDA
#include "cuda/kern_cuda.h"
#endif

#define XF_MAX_EXTRA 32
#define XF_GRAPH_SLOTS 32 /* graphs kept: one per (first op, last op) range of a decode pass */
#define XF_STEP_WORDS 4   /* {pos0, n_kv, token, 0}: kernels.h KERN_STEP_* */

#ifdef XF_HAVE_CUDA
typedef struct xf_graph_slot {
    int s, e; /* ops s..e, inclusive */
    kern_cuda_graph *g;
} xf_graph_slot;
#endif

struct xf_exec {
    xf_model *m;
    kern_backend backend;
    const kern_mem_ops *mem;
    kern_ctx ctx;
    kern_ctx host_ctx;           /* for check: cpu ref runs single-threaded */
    const void **wdev;           /* [n_weights] weight data on the backend */
    void **wdev_owned;           /* [n_weights] device copies to free (cuda) */
    float **kcache, **vcache;    /* [n_layer] -> [n_ctx, KV, Dh] on the backend */
    xf_program prog;
    int pass_no;
    int pc, last;
    int n_past;                  /* cache rows valid after the last complete pass */
    bool active;
    int32_t *tokens;             /* [n] tokens of the current pass (host) */
    int tok_cap;                 /* room in tokens */
    int32_t *hist;               /* [n_ctx] token at each position of the context */
    int n_tokens;
    void **buf;                  /* [n_ops] op outputs on the backend */
    size_t *buf_cap;             /* floats */
    int n_buf;
    bool *ready;                 /* [n_ready] computed in this pass */
    int n_ready;                 /* ops of the arrays ready, op_ms, check_rows */
    int move_ok_n;               /* token count whose programs exec_begin moves (0: none yet) */
    double *op_ms;               /* [n_ops] */
    bool timing;
    void **ev;                   /* cuda: [2 * n_ops] start/end events of each op while timing */
    int n_ev;
    const kern_variant *sel[KERN_OP_COUNT];
    const kern_variant *extra[XF_MAX_EXTRA];
    int n_extra;
    xf_break *brk;
    int n_brk, brk_cap, next_brk_id;
    const xf_break *last_brk;
    xf_check_mode check;
    xf_check_row *check_rows;    /* [n_ops] */
    int n_check;
    refdump *ref;
    volatile sig_atomic_t *interrupt;
    int (*hook)(void *, xf_exec *, int, xf_err *);
    void *hook_ud;
    /* breakpoint pattern matches, cached: op names are the same in every pass */
    unsigned char *bmatch;       /* [n_brk][bmatch_ops]: breakpoint k matches op i */
    bool *bany;                  /* [bmatch_ops]: some breakpoint matches op i */
    int bmatch_ops;              /* ops the cache holds; -1 when the breakpoints changed */
    /* the fast path (cuda): graphs of decode passes */
    xf_graph_mode graph_mode;
    xf_graph_stats gstats;
#ifdef XF_HAVE_CUDA
    int32_t *step_host;          /* pinned [XF_STEP_WORDS]: what the graphs copy to step_dev first */
    int32_t *step_dev;           /* device [XF_STEP_WORDS]: kernels.h dev_step */
    bool inflight;               /* a graph was launched since the last sync */
    bool graph_failed;           /* a capture failed: op by op until the key changes */
    xf_graph_slot gslot[XF_GRAPH_SLOTS];
    int n_gslot, gslot_next;
    /* the key the graphs were captured for: kernels, buffers, scratch */
    bool gkey_valid;
    const kern_variant *gsel[KERN_OP_COUNT];
    void **gbuf;                 /* [n_gbuf] copy of buf */
    int n_gbuf;
    void *gscratch;
#endif
};

static const double k_tol[KERN_OP_COUNT] = {
    /* One table of default tolerances, relative to max|ref|. 1e-4 is the
     * contract with the HF float64 dumps; f32 storage and f32-accumulating
     * optimized kernels stay far below it on these sizes. */
    [KERN_OP_EMBD] = 1e-4,   [KERN_OP_NORM] = 1e-4, [KERN_OP_RMSNORM] = 1e-4, [KERN_OP_MATMUL] = 1e-4,
    [KERN_OP_VIEW] = 1e-4,   [KERN_OP_ROPE] = 1e-4, [KERN_OP_KQ] = 1e-4,      [KERN_OP_SOFTMAX] = 1e-4,
    [KERN_OP_KQV] = 1e-4,    [KERN_OP_ADD] = 1e-4,  [KERN_OP_GELU] = 1e-4,    [KERN_OP_SWIGLU] = 1e-4,
};

double exec_tolerance(kern_op kind) { return (int)kind >= 0 && kind < KERN_OP_COUNT ? k_tol[kind] : 1e-4; }

xf_model *exec_model(const xf_exec *ex) { return ex->m; }
kern_backend exec_backend(const xf_exec *ex) { return ex->backend; }
const xf_program *exec_program(const xf_exec *ex) { return &ex->prog; }
const refdump *exec_ref(const xf_exec *ex) { return ex->ref; }
void exec_set_interrupt(xf_exec *ex, volatile sig_atomic_t *flag) { ex->interrupt = flag; }
void exec_set_timing(xf_exec *ex, bool on) { ex->timing = on; }
const double *exec_op_ms(const xf_exec *ex) { return ex->op_ms; }
xf_check_mode exec_check_get(const xf_exec *ex) { return ex->check; }
const xf_break *exec_last_break(const xf_exec *ex) { return ex->last_brk; }

void exec_set_hook(xf_exec *ex, int (*fn)(void *, xf_exec *, int, xf_err *), void *ud)
{
    ex->hook = fn;
    ex->hook_ud = ud;
}

void exec_check_set(xf_exec *ex, xf_check_mode mode) { ex->check = mode; }

const xf_check_row *exec_check_rows(const xf_exec *ex, int *n)
{
    *n = ex->n_check;
    return ex->check_rows;
}

const int32_t *exec_history(const xf_exec *ex, int *n)
{
    *n = ex->active ? ex->prog.pos0 + ex->prog.n_tokens : 0;
    return ex->hist;
}

const int32_t *exec_tokens(const xf_exec *ex, int *n)
{
    *n = ex->n_tokens;
    return ex->tokens;
}

void exec_where(const xf_exec *ex, xf_where *w)
{
    w->active = ex->active;
    w->pass_no = ex->pass_no;
    w->pos0 = ex->prog.pos0;
    w->n_tokens = ex->prog.n_tokens;
    w->n_past = ex->n_past;
    w->pc = ex->pc;
    w->n_ops = ex->prog.n_ops;
    w->last = ex->last;
}

/* --- setup ------------------------------------------------------------------ */

static void free_buffers(xf_exec *ex)
{
    for (int i = 0; i < ex->n_buf; i++)
        if (ex->buf[i])
            ex->mem->free(ex->buf[i]);
    free(ex->buf);
    free(ex->buf_cap);
    ex->buf = NULL;
    ex->buf_cap = NULL;
    ex->n_buf = 0;
}

#ifdef XF_HAVE_CUDA
static void graphs_clear(xf_exec *ex)
{
    for (int i = 0; i < ex->n_gslot; i++)
        kern_cuda_graph_free(ex->gslot[i].g);
    ex->n_gslot = 0;
    ex->gslot_next = 0;
    ex->gkey_valid = false;
    ex->graph_failed = false;
}
#endif

void exec_free(xf_exec *ex)
{
    if (!ex)
        return;
#ifdef XF_HAVE_CUDA
    graphs_clear(ex);
    free(ex->gbuf);
    for (int i = 0; i < ex->n_ev; i++)
        kern_cuda_event_free(ex->ev[i]);
    free(ex->ev);
#endif
    free_buffers(ex);
    /* either array may be missing when exec_new failed */
    for (int l = 0; l < ex->m->n_layer; l++) {
        if (ex->kcache && ex->kcache[l])
            ex->mem->free(ex->kcache[l]);
        if (ex->vcache && ex->vcache[l])
            ex->mem->free(ex->vcache[l]);
    }
    free(ex->kcache);
    free(ex->vcache);
    if (ex->wdev_owned)
        for (int i = 0; i < ex->m->n_weights; i++)
            if (ex->wdev_owned[i])
                ex->mem->free(ex->wdev_owned[i]);
    free(ex->wdev_owned);
    free(ex->wdev);
    exec_break_delete(ex, -1, NULL);
    free(ex->brk);
    free(ex->bmatch);
    free(ex->bany);
    free(ex->check_rows);
    free(ex->ready);
    free(ex->op_ms);
    free(ex->tokens);
    free(ex->hist);
    program_free(&ex->prog);
    if (ex->ref)
        refdump_close(ex->ref);
    if (ex->ctx.pool)
        kern_pool_free(ex->ctx.pool);
#ifdef XF_HAVE_CUDA
    if (ex->backend == KERN_BACKEND_CUDA) {
        if (ex->ctx.scratch)
            ex->mem->free(ex->ctx.scratch);
        if (ex->step_dev)
            ex->mem->free(ex->step_dev);
        kern_cuda_host_free(ex->step_host);
        kern_cuda_ctx_release(&ex->ctx);
        kern_cuda_stream_free(&ex->ctx);
    }
#endif
    free(ex);
}

static int select_default(xf_exec *ex, xf_err *err)
{
    for (int op = 0; op < KERN_OP_COUNT; op++) {
        /* the fast path is the default: a debugger that is slow when nothing is watched is not used */
        ex->sel[op] = kern_find((kern_op)op, ex->backend, "opt");
        if (!ex->sel[op])
            ex->sel[op] = kern_find((kern_op)op, ex->backend, "ref");
        if (!ex->sel[op])
            return xf_err_set(err, "no %s kernel for op '%s'", kern_backend_name(ex->backend),
                              kern_op_name((kern_op)op));
    }
    return 0;
}

xf_exec *exec_new(xf_model *m, kern_backend backend, int n_threads, xf_err *err)
{
    if (m->vocab_only) {
        xf_err_set(err, "%s is a vocabulary-only file: it has no weights to run", m->path);
        return NULL;
    }
    char why[256] = "";
    if (!kern_backend_available(backend, why, sizeof why)) {
        xf_err_set(err, "backend %s is not available: %s", kern_backend_name(backend), why);
        return NULL;
    }
    xf_exec *ex = calloc(1, sizeof *ex);
    if (!ex) {
        xf_err_set(err, "out of memory");
        return NULL;
    }
    ex->m = m;
    ex->backend = backend;
    ex->mem = kern_backend_mem(backend);
    ex->last = -1;
    ex->next_brk_id = 1;
    ex->bmatch_ops = -1;
    if (n_threads < 1)
        n_threads = 1;
    ex->ctx.n_threads = n_threads;
    ex->host_ctx.n_threads = 1;
    if (backend == KERN_BACKEND_CPU && n_threads > 1) {
        ex->ctx.pool = kern_pool_new(n_threads);
        if (!ex->ctx.pool) {
            xf_err_set(err, "cannot start %d threads", n_threads);
            goto fail;
        }
    }
    if (select_default(ex, err) != 0)
        goto fail;
#ifdef XF_HAVE_CUDA
    if (backend == KERN_BACKEND_CUDA) {
        /* a stream of our own (graphs cannot be captured on the legacy
         * one), made before cuBLAS so that its handle is bound to it */
        if (kern_cuda_stream_new(&ex->ctx) != 0) {
            xf_err_set(err, "cannot create a CUDA stream");
            goto fail;
        }
        if (kern_cuda_ctx_prepare(&ex->ctx) != 0) {
            xf_err_set(err, "cuBLAS could not start on the cuda device");
            goto fail;
        }
        ex->step_host = kern_cuda_host_alloc(XF_STEP_WORDS * sizeof(int32_t));
        ex->step_dev = ex->mem->alloc(XF_STEP_WORDS * sizeof(int32_t));
        if (!ex->step_host || !ex->step_dev) {
            xf_err_set(err, "out of memory for the decode step buffers");
            goto fail;
        }
        /* no pass has these values: the first graphed pass writes its own */
        for (int i = 0; i < XF_STEP_WORDS; i++)
            ex->step_host[i] = -1;
        ex->graph_mode = XF_GRAPH_ON;
    }
#endif
    ex->wdev = calloc((size_t)m->n_weights, sizeof *ex->wdev);
    ex->wdev_owned = calloc((size_t)m->n_weights, sizeof *ex->wdev_owned);
    ex->hist = calloc((size_t)m->n_ctx, sizeof *ex->hist);
    ex->kcache = calloc((size_t)m->n_layer, sizeof *ex->kcache);
    ex->vcache = calloc((size_t)m->n_layer, sizeof *ex->vcache);
    if (!ex->wdev || !ex->wdev_owned || !ex->kcache || !ex->vcache || !ex->hist) {
        xf_err_set(err, "out of memory");
        goto fail;
    }
    for (int i = 0; i < m->n_weights; i++) {
        const xf_weight *w = &m->weights[i];
        if (backend == KERN_BACKEND_CPU) {
            ex->wdev[i] = w->data;
            continue;
        }
        void *d = ex->mem->alloc(w->bytes);
        if (!d || ex->mem->to_dev(&ex->ctx, d, w->data, w->bytes) != 0) {
            if (d)
                ex->mem->free(d);
            xf_err_set(err, "cannot copy weight %s (%llu bytes) to the %s device", w->name,
                       (unsigned long long)w->bytes, kern_backend_name(backend));
            goto fail;
        }
        ex->wdev[i] = ex->wdev_owned[i] = d;
    }
    size_t cache_floats = (size_t)m->n_ctx * (size_t)m->n_head_kv * (size_t)m->head_dim;
    for (int l = 0; l < m->n_layer; l++) {
        ex->kcache[l] = ex->mem->alloc(cache_floats * sizeof(float));
        ex->vcache[l] = ex->mem->alloc(cache_floats * sizeof(float));
        if (!ex->kcache[l] || !ex->vcache[l]) {
            xf_err_set(err, "out of memory for the KV cache (%zu bytes per layer)", 2 * cache_floats * sizeof(float));
            goto fail;
        }
    }
    if (ex->mem->sync(&ex->ctx) != 0) {
        xf_err_set(err, "backend %s failed while copying weights", kern_backend_name(backend));
        goto fail;
    }
    return ex;
fail:
    exec_free(ex);
    return NULL;
}

/* --- kernels ------------------------------------------------------------------ */

int exec_variants(const xf_exec *ex, const kern_variant **out, int cap)
{
    size_t n;
    const kern_variant *all = kern_registry(&n);
    int k = 0;
    for (size_t i = 0; i < n; i++)
        if (all[i].backend == ex->backend) {
            if (k < cap)
                out[k] = &all[i];
            k++;
        }
    for (int i = 0; i < ex->n_extra; i++) {
        if (k < cap)
            out[k] = ex->extra[i];
        k++;
    }
    return k;
}

static const kern_variant *find_variant(const xf_exec *ex, kern_op op, const char *name)
{
    for (int i = 0; i < ex->n_extra; i++)
        if (ex->extra[i]->op == op && strcmp(ex->extra[i]->name, name) == 0)
            return ex->extra[i];
    return kern_find(op, ex->backend, name);
}

int exec_kernel_select(xf_exec *ex, int op, const char *variant, xf_err *err)
{
    if (op < -1 || op >= KERN_OP_COUNT)
        return xf_err_set(err, "unknown op kind %d", op);
    if (op >= 0) {
        const kern_variant *v = find_variant(ex, (kern_op)op, variant);
        if (!v)
            return xf_err_set(err, "op '%s' has no %s variant '%s' (see `kernel`)", kern_op_name((kern_op)op),
                              kern_backend_name(ex->backend), variant);
        ex->sel[op] = v;
        return 0;
    }
    /* all: every op kind must have it, or nothing changes */
    for (int k = 0; k < KERN_OP_COUNT; k++)
        if (!find_variant(ex, (kern_op)k, variant))
            return xf_err_set(err, "op '%s' has no %s variant '%s'; nothing changed", kern_op_name((kern_op)k),
                              kern_backend_name(ex->backend), variant);
    for (int k = 0; k < KERN_OP_COUNT; k++)
        ex->sel[k] = find_variant(ex, (kern_op)k, variant);
    return 0;
}

const kern_variant *exec_kernel_selected(const xf_exec *ex, kern_op op) { return ex->sel[op]; }

int exec_variant_add(xf_exec *ex, const kern_variant *v, xf_err *err)
{
    if (ex->n_extra == XF_MAX_EXTRA)
        return xf_err_set(err, "too many extra variants");
    if (v->backend != ex->backend)
        return xf_err_set(err, "variant %s is for backend %s", v->name, kern_backend_name(v->backend));
    if (find_variant(ex, v->op, v->name))
        return xf_err_set(err, "op '%s' already has a variant '%s'", kern_op_name(v->op), v->name);
    ex->extra[ex->n_extra++] = v;
    return 0;
}

/* --- passes ------------------------------------------------------------------ */

/* Scratch that the selected variants want for this program (cuda matmul
 * decodes quantized weights into it); grown, never shrunk, so that a decode
 * loop does not allocate. */
static int ensure_scratch(xf_exec *ex, xf_err *err)
{
#ifdef XF_HAVE_CUDA
    if (ex->backend != KERN_BACKEND_CUDA)
        return 0;
    size_t need = 0;
    for (int i = 0; i < ex->prog.n_ops; i++) {
        const xf_op *op = &ex->prog.ops[i];
        if (op->kind != KERN_OP_MATMUL)
            continue;
        size_t s = kern_cuda_matmul_scratch(ex->sel[op->kind]->name, op->args.n, op->args.k, op->args.m,
                                            op->args.w_type);
        if (s > need)
            need = s;
    }
    if (need <= ex->ctx.scratch_size)
        return 0;
    if (ex->ctx.scratch)
        ex->mem->free(ex->ctx.scratch);
    ex->ctx.scratch = ex->mem->alloc(need);
    ex->ctx.scratch_size = ex->ctx.scratch ? need : 0;
    if (!ex->ctx.scratch)
        return xf_err_set(err, "out of device memory for %zu bytes of kernel scratch", need);
#else
    (void)ex;
    (void)err;
#endif
    return 0;
}

static int ensure_buffers(xf_exec *ex, xf_err *err)
{
    const xf_program *p = &ex->prog;
    if (ensure_scratch(ex, err) != 0)
        return -1;
    if (ex->n_buf != p->n_ops) {
        free_buffers(ex);
        ex->buf = calloc((size_t)p->n_ops, sizeof *ex->buf);
        ex->buf_cap = calloc((size_t)p->n_ops, sizeof *ex->buf_cap);
        if (!ex->buf || !ex->buf_cap)
            return xf_err_set(err, "out of memory");
        ex->n_buf = p->n_ops;
    }
    for (int i = 0; i < p->n_ops; i++) {
        size_t need = (size_t)p->ops[i].numel;
        if (ex->buf_cap[i] >= need)
            continue;
        /* attention tensors grow with n_kv: give them at least a one-token pass over
         * the whole context, so that a decode loop does not reallocate every token
         * (and graph pointers stay put); a prefill takes what it needs, never
         * n x n_ctx, which for a long context would be most of the memory */
        const xf_op *op = &p->ops[i];
        if (op->kind == KERN_OP_KQ || op->kind == KERN_OP_SOFTMAX) {
            size_t decode = (size_t)op->shape[0] * (size_t)ex->m->n_ctx;
            if (need < decode)
                need = decode;
        }
        if (ex->buf[i])
            ex->mem->free(ex->buf[i]);
        ex->buf[i] = ex->mem->alloc(need * sizeof(float));
        ex->buf_cap[i] = ex->buf[i] ? need : 0;
        if (!ex->buf[i])
            return xf_err_set(err, "out of memory for %s (%zu floats)", op->name, need);
    }
    return 0;
}

/* The fields of a program that depend on where the pass starts (program.c
 * builds them from pos0): moves p to pos0. exec_begin checks once per
 * token count that a moved program equals a built one, so that a field
 * program.c may come to derive from pos0 is not silently left behind. */
static void program_move(xf_program *p, int pos0)
{
    int n_kv = pos0 + p->n_tokens;
    for (int i = 0; i < p->n_ops; i++) {
        xf_op *op = &p->ops[i];
        op->args.pos0 = pos0;
        op->args.n_kv = n_kv;
        if (op->kind == KERN_OP_KQ || op->kind == KERN_OP_SOFTMAX) {
            op->shape[2] = n_kv;
            op->numel = op->shape[0] * op->shape[1] * n_kv;
        }
        if (op->kind == KERN_OP_SOFTMAX)
            op->args.m = n_kv;
    }
    p->pos0 = pos0;
    p->n_kv = n_kv;
}

/* 1 if the program of n tokens at pos0 is ex->prog moved there: checked
 * against program_build the first time for each n (np: the built program,
 * which the caller keeps either way) */
static bool program_move_checked(xf_exec *ex, const xf_program *np)
{
    const xf_program *p = &ex->prog;
    if (!p->ops || p->n_tokens != np->n_tokens || p->n_ops != np->n_ops)
        return false;
    xf_program c = {.ops = malloc((size_t)p->n_ops * sizeof *p->ops), .n_ops = p->n_ops, .n_tokens = p->n_tokens};
    if (!c.ops)
        return false;
    memcpy(c.ops, p->ops, (size_t)p->n_ops * sizeof *p->ops);
    program_move(&c, np->pos0);
    bool same = c.pos0 == np->pos0 && c.n_kv == np->n_kv &&
                memcmp(c.ops, np->ops, (size_t)p->n_ops * sizeof *p->ops) == 0;
    free(c.ops);
    return same;
}

int exec_begin(xf_exec *ex, const int32_t *tokens, int n, bool continue_cache, xf_err *err)
{
    if (n < 1)
        return xf_err_set(err, "a pass needs at least one token");
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= ex->m->n_vocab)
            return xf_err_set(err, "token %d (index %d) is outside the vocabulary [0, %d)", tokens[i], i,
                              ex->m->n_vocab);
    int pos0 = 0;
    if (continue_cache) {
        if (ex->active && ex->pc < ex->prog.n_ops)
            return xf_err_set(err, "the current pass is at op %d of %d: `finish` it first", ex->pc, ex->prog.n_ops);
        if (!ex->active)
            return xf_err_set(err, "no pass yet: start one with `run`");
        pos0 = ex->n_past;
    }
    /* A decode loop builds the same program at the next position every
     * token: move the current one there instead (building costs about as
     * much host time as a tenth of a graphed decode pass). */
    bool move = ex->prog.ops && ex->prog.n_tokens == n && ex->move_ok_n == n && pos0 <= ex->m->n_ctx - n;
    xf_program np = {0};
    if (!move) {
        if (program_build(ex->m, n, pos0, &np, err) != 0)
            return -1;
        if (ex->move_ok_n != n && program_move_checked(ex, &np))
            ex->move_ok_n = n;
    }
    int n_ops = move ? ex->prog.n_ops : np.n_ops;
    bool keep = ex->ready && ex->n_ready == n_ops; /* per-op arrays of the right size */
    int32_t *tk = n <= ex->tok_cap ? ex->tokens : malloc((size_t)n * sizeof *tk);
    bool *ready = keep ? ex->ready : calloc((size_t)n_ops, sizeof *ready);
    double *ms = keep ? ex->op_ms : calloc((size_t)n_ops, sizeof *ms);
    xf_check_row *rows = keep ? ex->check_rows : calloc((size_t)n_ops, sizeof *rows);
    if (!tk || !ready || !ms || !rows) {
        if (tk != ex->tokens)
            free(tk);
        if (!keep) {
            free(ready);
            free(ms);
            free(rows);
        }
        program_free(&np);
        return xf_err_set(err, "out of memory");
    }
    /* the caller may pass our own tokens or history back */
    memmove(ex->hist + pos0, tokens, (size_t)n * sizeof *tk);
    memmove(tk, tokens, (size_t)n * sizeof *tk);
    if (move) {
        program_move(&ex->prog, pos0);
    } else {
        program_free(&ex->prog);
        ex->prog = np;
    }
    if (tk != ex->tokens) {
        free(ex->tokens);
        ex->tok_cap = n;
    }
    if (keep) {
        memset(ready, 0, (size_t)n_ops * sizeof *ready);
        memset(ms, 0, (size_t)n_ops * sizeof *ms);
    } else {
        free(ex->ready);
        free(ex->op_ms);
        free(ex->check_rows);
    }
    ex->tokens = tk;
    ex->n_tokens = n;
    ex->ready = ready;
    ex->n_ready = n_ops;
    ex->op_ms = ms;
    ex->check_rows = rows;
    ex->n_check = 0;
    if (!continue_cache)
        ex->n_past = 0;
    ex->active = true;
    ex->pc = 0;
    ex->last = -1;
    ex->last_brk = NULL;
    ex->pass_no++;
    if (ensure_buffers(ex, err) != 0) {
        ex->active = false;
        return -1;
    }
    return 0;
}

static const void *wptr(const xf_exec *ex, const xf_weight *w) { return w ? ex->wdev[w->id] : NULL; }

/* The kernel arguments of op i with pointers on the backend. */
static void op_args(const xf_exec *ex, int i, kern_args *a)
{
    const xf_op *op = &ex->prog.ops[i];
    *a = op->args;
    a->x = op->in0 >= 0 ? ex->buf[op->in0] : NULL;
    a->x2 = op->in1 >= 0 ? ex->buf[op->in1] : NULL;
    a->w = wptr(ex, op->w);
    a->w2 = wptr(ex, op->w2);
    a->b = (const float *)wptr(ex, op->b);
    a->y = ex->buf[i];
    a->tok = ex->tokens;
    if (op->layer >= 0) {
        a->kc = ex->kcache[op->layer];
        a->vc = ex->vcache[op->layer];
    }
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

#ifdef XF_HAVE_CUDA
/* Per-op timing on the GPU: a start and an end event around each op, read
 * after the pass, so that timing adds no sync between ops (a host clock with
 * a sync per op measures launch latency, not kernels). */
static int timing_events(xf_exec *ex, xf_err *err)
{
    int need = 2 * ex->prog.n_ops;
    if (ex->n_ev >= need)
        return 0;
    void **ev = realloc(ex->ev, (size_t)need * sizeof *ev);
    if (!ev)
        return xf_err_set(err, "out of memory");
    ex->ev = ev;
    for (; ex->n_ev < need; ex->n_ev++)
        if (!(ex->ev[ex->n_ev] = kern_cuda_event_new()))
            return xf_err_set(err, "cannot create a CUDA event for timing");
    return 0;
}

static void timing_collect(xf_exec *ex, int from, int to)
{
    for (int i = from; i < to && 2 * i + 1 < ex->n_ev; i++) {
        float ms = kern_cuda_event_elapsed_ms(ex->ev[2 * i], ex->ev[2 * i + 1]);
        ex->op_ms[i] = ms >= 0 ? ms : NAN;
    }
}
#endif

static int run_op(xf_exec *ex, int i, xf_err *err)
{
    const xf_op *op = &ex->prog.ops[i];
    kern_args a;
    op_args(ex, i, &a);
    const kern_variant *v = ex->sel[op->kind];
    bool events = false;
    (void)events; /* used by the cuda build only */
#ifdef XF_HAVE_CUDA
    events = ex->timing && ex->backend == KERN_BACKEND_CUDA;
    if (events && timing_events(ex, err) != 0)
        return -1;
    if (events && kern_cuda_event_record(ex->ev[2 * i], &ex->ctx) != 0)
        return xf_err_set(err, "%s: recording a CUDA event failed", op->name);
#endif
    double t0 = ex->timing ? now_ms() : 0;
    if (v->fn(&ex->ctx, &a) != 0)
        return xf_err_set(err, "%s: kernel %s/%s/%s failed", op->name, kern_op_name(op->kind),
                          kern_backend_name(v->backend), v->name);
    if (op->cache != XF_CACHE_NONE) {
        size_t row = (size_t)op->shape[1] * (size_t)op->shape[2];
        float *dst = (op->cache == XF_CACHE_K ? ex->kcache : ex->vcache)[op->layer] + (size_t)op->args.pos0 * row;
        if (ex->mem->copy(&ex->ctx, dst, ex->buf[i], (size_t)op->numel * sizeof(float)) != 0)
            return xf_err_set(err, "%s: storing into the KV cache failed", op->name);
    }
#ifdef XF_HAVE_CUDA
    if (events) {
        if (kern_cuda_event_record(ex->ev[2 * i + 1], &ex->ctx) != 0)
            return xf_err_set(err, "%s: recording a CUDA event failed", op->name);
    } else
#endif
        if (ex->timing) {
        if (ex->mem->sync(&ex->ctx) != 0)
            return xf_err_set(err, "%s: backend error", op->name);
        ex->op_ms[i] = now_ms() - t0;
    }
    ex->ready[i] = true;
    return 0;
}

bool exec_tensor_ready(const xf_exec *ex, int op)
{
    return ex->active && op >= 0 && op < ex->prog.n_ops && ex->ready[op];
}

int exec_tensor_read(xf_exec *ex, int op, float *dst, xf_err *err)
{
    if (!ex->active)
        return xf_err_set(err, "no pass: start one with `run`");
    if (op < 0 || op >= ex->prog.n_ops)
        return xf_err_set(err, "no op %d", op);
    if (!ex->ready[op])
        return xf_err_set(err, "%s is not computed yet in this pass (next op: %s)", ex->prog.ops[op].name,
                          ex->pc < ex->prog.n_ops ? ex->prog.ops[ex->pc].name : "none");
    if (ex->mem->to_host(&ex->ctx, dst, ex->buf[op], (size_t)ex->prog.ops[op].numel * sizeof(float)) != 0)
        return xf_err_set(err, "%s: copying from the device failed", ex->prog.ops[op].name);
    return 0;
}

static int ready_or_err(const xf_exec *ex, int op, xf_err *err)
{
    if (!ex->active)
        return xf_err_set(err, "no pass: start one with `run`");
    if (op < 0 || op >= ex->prog.n_ops)
        return xf_err_set(err, "no op %d", op);
    if (!ex->ready[op])
        return xf_err_set(err, "%s is not computed yet in this pass (next op: %s)", ex->prog.ops[op].name,
                          ex->pc < ex->prog.n_ops ? ex->prog.ops[ex->pc].name : "none");
    return 0;
}

int exec_tensor_gather(xf_exec *ex, int op, const int64_t *idx, int64_t n, float *dst, xf_err *err)
{
    if (ready_or_err(ex, op, err) != 0)
        return -1;
    if (n <= 0)
        return 0;
    int64_t lo = idx[0], hi = idx[0], numel = ex->prog.ops[op].numel;
    for (int64_t k = 1; k < n; k++) {
        lo = idx[k] < lo ? idx[k] : lo;
        hi = idx[k] > hi ? idx[k] : hi;
    }
    if (lo < 0 || hi >= numel)
        return xf_err_set(err, "%s: index out of range", ex->prog.ops[op].name);
    const float *src = (const float *)ex->buf[op];
    if (ex->backend == KERN_BACKEND_CPU) {
        for (int64_t k = 0; k < n; k++)
            dst[k] = src[idx[k]];
        return 0;
    }
    size_t span = (size_t)(hi - lo + 1);
    float *h = malloc(span * sizeof(float));
    if (!h)
        return xf_err_set(err, "out of memory");
    int rc = ex->mem->to_host(&ex->ctx, h, src + lo, span * sizeof(float));
    if (rc == 0)
        for (int64_t k = 0; k < n; k++)
            dst[k] = h[idx[k] - lo];
    free(h);
    return rc == 0 ? 0 : xf_err_set(err, "%s: copying from the device failed", ex->prog.ops[op].name);
}

int exec_tensor_stats(xf_exec *ex, int op, xf_stats *st, xf_err *err)
{
    if (ready_or_err(ex, op, err) != 0)
        return -1;
    const xf_op *o = &ex->prog.ops[op];
    if (ex->backend == KERN_BACKEND_CPU) {
        tensor_stats((const float *)ex->buf[op], (size_t)o->numel, st);
        return 0;
    }
#ifdef XF_HAVE_CUDA
    double v[8];
    if (kern_cuda_stats(&ex->ctx, (const float *)ex->buf[op], o->numel, v) != 0)
        return xf_err_set(err, "%s: statistics on the device failed", o->name);
    memset(st, 0, sizeof *st);
    st->n = (int64_t)v[5];
    st->n_nan = (int64_t)v[6];
    st->n_inf = (int64_t)v[7];
    if (st->n == st->n_nan + st->n_inf) { /* no finite value: as tensor_stats */
        st->min = st->max = st->mean = st->std = NAN;
        return 0;
    }
    st->min = v[0];
    st->max = v[1];
    st->mean = v[2];
    st->std = v[3];
    st->absmax = v[4];
    return 0;
#else
    return xf_err_set(err, "backend %s has no statistics", kern_backend_name(ex->backend));
#endif
}

int exec_tensor_find(const xf_exec *ex, const char *name, xf_err *err)
{
    if (!ex->active)
        return xf_err_set(err, "no pass: start one with `run` first");
    int i = program_find(&ex->prog, name);
    if (i >= 0)
        return i;
    char canon[XF_NAME_MAX];
    program_resolve_alias(name, canon, sizeof canon);
    i = program_find(&ex->prog, canon);
    if (i >= 0)
        return i;
    return xf_err_set(err, "no tensor named '%s' in this pass (try `list` or tab completion)", name);
}

int exec_last_logits(xf_exec *ex, float *dst, xf_err *err)
{
    if (!ex->active || ex->pc < ex->prog.n_ops)
        return xf_err_set(err, "no complete pass: logits are not computed yet");
    int li = ex->prog.n_ops - 1;
    const xf_op *op = &ex->prog.ops[li];
    size_t V = (size_t)op->shape[1];
    const float *src = (const float *)ex->buf[li] + (size_t)(op->shape[0] - 1) * V;
    if (ex->mem->to_host(&ex->ctx, dst, src, V * sizeof(float)) != 0)
        return xf_err_set(err, "logits: copying from the device failed");
    return 0;
}

/* --- check ------------------------------------------------------------------- */

static float *host_copy(xf_exec *ex, const void *src, size_t floats, xf_err *err)
{
    float *h = malloc((floats ? floats : 1) * sizeof(float));
    if (!h) {
        xf_err_set(err, "out of memory");
        return NULL;
    }
    if (floats && ex->mem->to_host(&ex->ctx, h, src, floats * sizeof(float)) != 0) {
        free(h);
        xf_err_set(err, "copying from the device failed");
        return NULL;
    }
    return h;
}

int exec_check_op(xf_exec *ex, int i, xf_check_row *row, xf_err *err)
{
    if (!exec_tensor_ready(ex, i))
        return xf_err_set(err, "op %d is not computed in this pass", i);
    const xf_op *op = &ex->prog.ops[i];
    const kern_variant *ref = kern_find(op->kind, KERN_BACKEND_CPU, "ref");
    if (!ref)
        return xf_err_set(err, "no cpu ref kernel for %s", kern_op_name(op->kind));
    kern_args a = op->args;
    a.tok = ex->tokens;
    /* the ref reads host memory: copy this op's inputs, never the ops before it,
     * so that each kernel is judged alone on the inputs it actually got */
    float *x = NULL, *x2 = NULL, *kc = NULL, *vc = NULL, *y = NULL, *got = NULL;
    int rc = -1;
    size_t row_kv = (size_t)ex->m->n_head_kv * (size_t)ex->m->head_dim;
    if (op->in0 >= 0 && !(x = host_copy(ex, ex->buf[op->in0], (size_t)ex->prog.ops[op->in0].numel, err)))
        goto out;
    if (op->in1 >= 0 && !(x2 = host_copy(ex, ex->buf[op->in1], (size_t)ex->prog.ops[op->in1].numel, err)))
        goto out;
    if (op->kind == KERN_OP_KQ && !(kc = host_copy(ex, ex->kcache[op->layer], (size_t)a.n_kv * row_kv, err)))
        goto out;
    if (op->kind == KERN_OP_KQV && !(vc = host_copy(ex, ex->vcache[op->layer], (size_t)a.n_kv * row_kv, err)))
        goto out;
    y = malloc((size_t)op->numel * sizeof(float));
    got = host_copy(ex, ex->buf[i], (size_t)op->numel, err);
    if (!y || !got) {
        if (!y)
            xf_err_set(err, "out of memory");
        goto out;
    }
    a.x = x;
    a.x2 = x2;
    a.kc = kc;
    a.vc = vc;
    a.w = op->w ? op->w->data : NULL;
    a.w2 = op->w2 ? op->w2->data : NULL;
    a.b = op->b ? (const float *)op->b->data : NULL;
    a.y = y;
    if (ref->fn(&ex->host_ctx, &a) != 0) {
        xf_err_set(err, "%s: cpu ref kernel failed", op->name);
        goto out;
    }
    row->op = i;
    row->variant = ex->sel[op->kind]->name;
    row->tol_rel = exec_tolerance(op->kind);
    tensor_diff_rel(got, y, (size_t)op->numel, row->tol_rel, &row->diff);
    row->over = row->diff.n_over > 0;
    rc = 0;
out:
    free(x);
    free(x2);
    free(kc);
    free(vc);
    free(y);
    free(got);
    return rc;
}

/* --- breakpoints ------------------------------------------------------------- */

static int parse_cond(const char *c, xf_cond_kind *kind, double *x)
{
    char tail;
    while (*c == ' ')
        c++;
    if (strcmp(c, "nan") == 0) {
        *kind = XF_COND_NAN;
        return 0;
    }
    if (strcmp(c, "inf") == 0) {
        *kind = XF_COND_INF;
        return 0;
    }
    if (sscanf(c, "absmax > %lf %c", x, &tail) == 1 || sscanf(c, "absmax>%lf %c", x, &tail) == 1) {
        *kind = XF_COND_ABSMAX_GT;
        return 0;
    }
    if (sscanf(c, "nmse(ref) > %lf %c", x, &tail) == 1 || sscanf(c, "nmse(ref)>%lf %c", x, &tail) == 1) {
        *kind = XF_COND_NMSE_REF_GT;
        return 0;
    }
    return -1;
}

int exec_break_add(xf_exec *ex, const char *pattern, const char *cond, xf_cond_fn fn, void *ud,
                   void (*ud_free)(void *), xf_err *err)
{
    xf_cond_kind kind = XF_COND_ALWAYS;
    double x = 0;
    if (!pattern || !*pattern)
        return xf_err_set(err, "break needs a pattern (e.g. blk.*.kq_soft)");
    if (cond && *cond && parse_cond(cond, &kind, &x) != 0) {
        if (!fn)
            return xf_err_set(err, "unknown condition '%s' (nan, inf, absmax>X, nmse(ref)>X or a Lua expression)",
                              cond);
        kind = XF_COND_FN;
    }
    if (!cond && fn)
        kind = XF_COND_FN;
    /* a pattern that matches nothing is almost always a typo: say so now */
    char **names;
    int nn;
    if (program_names(ex->m, &names, &nn, err) != 0)
        return -1;
    bool any = false;
    for (int i = 0; i < nn && !any; i++)
        any = program_glob_match(pattern, names[i]);
    program_names_free(names, nn);
    if (!any)
        return xf_err_set(err, "pattern '%s' matches no op of this model", pattern);
    if (ex->n_brk == ex->brk_cap) {
        int cap = ex->brk_cap ? 2 * ex->brk_cap : 8;
        xf_break *nb = realloc(ex->brk, (size_t)cap * sizeof *nb);
        if (!nb)
            return xf_err_set(err, "out of memory");
        ex->brk = nb;
        ex->brk_cap = cap;
    }
    xf_break *b = &ex->brk[ex->n_brk];
    memset(b, 0, sizeof *b);
    b->pattern = strdup(pattern);
    b->cond_text = cond && *cond ? strdup(cond) : NULL;
    if (!b->pattern || (cond && *cond && !b->cond_text)) {
        free(b->pattern);
        free(b->cond_text);
        return xf_err_set(err, "out of memory");
    }
    b->id = ex->next_brk_id++;
    b->cond = kind;
    b->x = x;
    b->fn = kind == XF_COND_FN ? fn : NULL;
    b->ud = ud;
    b->ud_free = ud_free;
    ex->n_brk++;
    ex->last_brk = NULL;
    ex->bmatch_ops = -1;
    return b->id;
}

int exec_break_delete(xf_exec *ex, int id, xf_err *err)
{
    int w = 0;
    bool found = false;
    for (int i = 0; i < ex->n_brk; i++) {
        xf_break *b = &ex->brk[i];
        if (id == -1 || b->id == id) {
            found = true;
            free(b->pattern);
            free(b->cond_text);
            if (b->ud_free)
                b->ud_free(b->ud);
            continue;
        }
        ex->brk[w++] = *b;
    }
    ex->n_brk = w;
    ex->last_brk = NULL;
    ex->bmatch_ops = -1;
    if (!found && id != -1)
        return xf_err_set(err, "no breakpoint %d (see `info breaks`)", id);
    return 0;
}

const xf_break *exec_breaks(const xf_exec *ex, int *n)
{
    *n = ex->n_brk;
    return ex->brk;
}

/* Which breakpoints match which ops, computed once per change of the
 * breakpoints: globbing every pattern against every op name on every op
 * would cost more than a decode step's kernels. */
static int brk_cache(xf_exec *ex, xf_err *err)
{
    int n = ex->prog.n_ops;
    if (ex->bmatch_ops == n)
        return 0;
    size_t cells = (size_t)(ex->n_brk > 0 ? ex->n_brk : 1) * (size_t)n;
    unsigned char *m = realloc(ex->bmatch, cells);
    if (m)
        ex->bmatch = m;
    bool *any = realloc(ex->bany, (size_t)n * sizeof *any);
    if (any)
        ex->bany = any;
    if (!m || !any)
        return xf_err_set(err, "out of memory");
    for (int i = 0; i < n; i++) {
        any[i] = false;
        for (int k = 0; k < ex->n_brk; k++) {
            m[(size_t)k * (size_t)n + (size_t)i] = program_glob_match(ex->brk[k].pattern, ex->prog.ops[i].name);
            any[i] = any[i] || m[(size_t)k * (size_t)n + (size_t)i];
        }
    }
    ex->bmatch_ops = n;
    return 0;
}

/* 1 if breakpoint k stops after op i (brk_cache is current) */
static int break_hits(xf_exec *ex, int k, int i, xf_err *err)
{
    xf_break *b = &ex->brk[k];
    const xf_op *op = &ex->prog.ops[i];
    if (!ex->bmatch[(size_t)k * (size_t)ex->bmatch_ops + (size_t)i])
        return 0;
    if (b->cond == XF_COND_ALWAYS)
        return 1;
    if (b->cond == XF_COND_FN)
        return b->fn(b->ud, ex, i, err);
    if (b->cond != XF_COND_NMSE_REF_GT) {
        /* reduced where the tensor lives: on the GPU 8 numbers come back, not the tensor */
        xf_stats s;
        if (exec_tensor_stats(ex, i, &s, err) != 0)
            return -1;
        return b->cond == XF_COND_NAN ? s.n_nan > 0 : b->cond == XF_COND_INF ? s.n_inf > 0 : s.absmax > b->x;
    }
    float *h = malloc((size_t)op->numel * sizeof(float));
    if (!h)
        return xf_err_set(err, "out of memory");
    int r = -1;
    if (exec_tensor_read(ex, i, h, err) != 0)
        goto out;
    if (b->cond == XF_COND_NMSE_REF_GT) {
        const refdump_tensor *t = ex->ref ? refdump_find(ex->ref, op->name) : NULL;
        if (!t) {
            r = 0; /* nothing to compare with: the condition cannot hold */
            goto out;
        }
        if (refdump_numel(t) != op->numel) {
            xf_err_set(err, "%s: reference has %lld elements, the tensor %lld", op->name,
                       (long long)refdump_numel(t), (long long)op->numel);
            goto out;
        }
        float *rv = malloc((size_t)op->numel * sizeof(float));
        if (!rv || refdump_read_f32(ex->ref, t, rv, err) != 0) {
            if (!rv)
                xf_err_set(err, "out of memory");
            free(rv);
            goto out;
        }
        xf_diff d;
        tensor_diff(h, rv, (size_t)op->numel, INFINITY, &d);
        free(rv);
        r = d.nmse > b->x;
        goto out;
    }
out:
    free(h);
    return r;
}

/* The breakpoints after op i (just run): 1 if one stopped (why set), 0 if
 * none, -1 on error. */
static int breaks_after(xf_exec *ex, int i, xf_stop *why, xf_err *err)
{
    if (!ex->bany[i])
        return 0;
    for (int k = 0; k < ex->n_brk; k++) {
        int h = break_hits(ex, k, i, err);
        if (h < 0)
            return -1;
        if (h > 0) {
            ex->brk[k].hits++;
            ex->last_brk = &ex->brk[k];
            if (ex->pc >= ex->prog.n_ops)
                ex->n_past = ex->prog.pos0 + ex->prog.n_tokens;
            *why = XF_STOP_BREAK;
            return 1;
        }
    }
    return 0;
}

/* --- the fast path: CUDA graphs of decode passes ------------------------------ */

void exec_set_graph_mode(xf_exec *ex, xf_graph_mode mode)
{
    if (ex->backend != KERN_BACKEND_CUDA)
        return;
#ifdef XF_HAVE_CUDA
    if (mode != ex->graph_mode)
        graphs_clear(ex);
#endif
    ex->graph_mode = mode;
}

xf_graph_mode exec_graph_mode(const xf_exec *ex) { return ex->graph_mode; }

void exec_graph_stats(const xf_exec *ex, xf_graph_stats *st) { *st = ex->gstats; }

#ifdef XF_HAVE_CUDA
/* A pass that nothing looks into op by op, on kernels that can be captured. */
static bool graph_eligible(const xf_exec *ex, xf_run_mode mode)
{
    if (ex->backend != KERN_BACKEND_CUDA || ex->graph_mode == XF_GRAPH_OFF)
        return false;
    if (mode != XF_RUN_CONTINUE && mode != XF_RUN_FINISH)
        return false;
    if (ex->prog.n_tokens != 1 || ex->check != XF_CHECK_OFF || ex->hook || ex->timing)
        return false;
    bool ok[KERN_OP_COUNT];
    for (int k = 0; k < KERN_OP_COUNT; k++)
        ok[k] = kern_cuda_variant_capturable(ex->sel[k]);
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
    graphs_clear(ex);
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
    op_args(ex, i, a);
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

/* Records ops s..e on the stream being captured; the fast-path fusions
 * apply only to ops wholly inside the range. */
static int capture_ops(xf_exec *ex, int s, int e)
{
    const xf_program *p = &ex->prog;
    bool fuse = ex->graph_mode == XF_GRAPH_ON;
    for (int i = s; i <= e;) {
        const xf_op *op = &p->ops[i];
        kern_args a;
        graph_args(ex, i, &a);
        if (fuse && i + 2 <= e && qkv_split_at(p, i)) {
            if (kern_cuda_qkv_split(&ex->ctx, a.x, ex->buf[i], ex->buf[i + 1], ex->buf[i + 2], ex->kcache[op->layer],
                                    ex->vcache[op->layer], op->args.n, op->args.m, op->args.pos0, ex->step_dev) != 0)
                return -1;
            i += 3;
            continue;
        }
        if (fuse && op->kind == KERN_OP_ADD && i + 1 <= e && p->ops[i + 1].in0 == i &&
            (p->ops[i + 1].kind == KERN_OP_NORM || p->ops[i + 1].kind == KERN_OP_RMSNORM)) {
            kern_args b;
            graph_args(ex, i + 1, &b);
            if (kern_cuda_add_norm(&ex->ctx, &a, &b, p->ops[i + 1].kind == KERN_OP_RMSNORM) != 0)
                return -1;
            i += 2;
            continue;
        }
        if (fuse && op->kind == KERN_OP_MATMUL && i + 1 <= e && p->ops[i + 1].kind == KERN_OP_GELU &&
            p->ops[i + 1].in0 == i && op->cache == XF_CACHE_NONE) {
            kern_args b;
            graph_args(ex, i + 1, &b);
            if (kern_cuda_matmul_gelu(&ex->ctx, &a, &b) != 0)
                return -1;
            i += 2;
            continue;
        }
        if (ex->sel[op->kind]->fn(&ex->ctx, &a) != 0)
            return -1;
        if (op->cache != XF_CACHE_NONE) {
            int64_t row = op->shape[1] * op->shape[2];
            float *c = (op->cache == XF_CACHE_K ? ex->kcache : ex->vcache)[op->layer];
            if (kern_cuda_rows_store(&ex->ctx, c, ex->buf[i], row, op->args.n, op->args.pos0, ex->step_dev) != 0)
                return -1;
        }
        i++;
    }
    return 0;
}

/* Runs ops s..e as one graph, captured on first use: 0 launched, 1 it could
 * not be captured (the caller runs the ops one by one), -1 error. */
static int graph_run_range(xf_exec *ex, int s, int e, xf_err *err)
{
    xf_graph_slot *sl = NULL;
    for (int k = 0; k < ex->n_gslot && !sl; k++)
        if (ex->gslot[k].s == s && ex->gslot[k].e == e)
            sl = &ex->gslot[k];
    if (!sl) {
        if (kern_cuda_capture_begin(&ex->ctx) != 0) {
            ex->graph_failed = true;
            ex->gstats.fallbacks++;
            return 1;
        }
        /* the first node: this pass's values, from pinned memory at replay time */
        int rc = ex->mem->to_dev(&ex->ctx, ex->step_dev, ex->step_host, XF_STEP_WORDS * sizeof(int32_t));
        if (rc == 0)
            rc = capture_ops(ex, s, e);
        kern_cuda_graph *g = kern_cuda_capture_end(&ex->ctx, rc == 0);
        if (!g) {
            /* op by op instead, where a failing kernel says what failed */
            ex->graph_failed = true;
            ex->gstats.fallbacks++;
            return 1;
        }
        if (ex->n_gslot < XF_GRAPH_SLOTS) {
            sl = &ex->gslot[ex->n_gslot++];
        } else {
            sl = &ex->gslot[ex->gslot_next];
            ex->gslot_next = (ex->gslot_next + 1) % XF_GRAPH_SLOTS;
            kern_cuda_graph_free(sl->g);
        }
        sl->s = s;
        sl->e = e;
        sl->g = g;
        ex->gstats.captures++;
        if (s == 0 && e == ex->prog.n_ops - 1)
            ex->gstats.nodes = kern_cuda_graph_nodes(g);
    }
    if (kern_cuda_graph_launch(sl->g, &ex->ctx) != 0)
        return xf_err_set(err, "%s..%s: replaying the CUDA graph failed", ex->prog.ops[s].name, ex->prog.ops[e].name);
    ex->inflight = true;
    ex->gstats.replays++;
    return 0;
}

/* The rest of the pass as graphs, split after the ops that breakpoints name
 * (continue). 0: the pass is complete, or it stopped (why set); 1: run the
 * rest op by op; -1 error. */
static int run_graphed(xf_exec *ex, xf_run_mode mode, xf_stop *why, xf_err *err)
{
    const xf_program *p = &ex->prog;
    if (graphs_key(ex, err) != 0)
        return -1;
    if (ex->graph_failed)
        return 1;
    bool watch = mode == XF_RUN_CONTINUE && ex->n_brk > 0;
    if (watch && brk_cache(ex, err) != 0)
        return -1;
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
        int s = ex->pc, e = s;
        if (watch)
            while (e < p->n_ops - 1 && !ex->bany[e])
                e++;
        else
            e = p->n_ops - 1;
        int r = graph_run_range(ex, s, e, err);
        if (r != 0)
            return r;
        for (int i = s; i <= e; i++)
            ex->ready[i] = true;
        ex->pc = e + 1;
        ex->last = e;
        if (ex->pc >= p->n_ops)
            ex->n_past = p->pos0 + p->n_tokens;
        if (watch) {
            int h = breaks_after(ex, e, why, err);
            if (h != 0)
                return h < 0 ? -1 : 0;
        }
    }
    return 0;
}
#endif

/* --- running ----------------------------------------------------------------- */

int exec_run(xf_exec *ex, xf_run_mode mode, int count, xf_stop *why, xf_err *err)
{
    *why = XF_STOP_NONE;
    if (!ex->active)
        return xf_err_set(err, "no pass: start one with `run` or `token`");
    const xf_program *p = &ex->prog;
    if (ex->pc >= p->n_ops) {
        *why = XF_STOP_END;
        return xf_err_set(err, "the pass is complete: `token` starts the next one, `run` a new prompt");
    }
    if (mode == XF_RUN_STEP && count < 1)
        return xf_err_set(err, "step count must be at least 1");
    int layer = p->ops[ex->pc].layer;
    bool watch = mode != XF_RUN_FINISH && (ex->n_brk > 0 || ex->check == XF_CHECK_BREAK);
    ex->last_brk = NULL;
    if (watch && ex->n_brk > 0 && brk_cache(ex, err) != 0)
        return -1;
#ifdef XF_HAVE_CUDA
    if (graph_eligible(ex, mode)) {
        int g = run_graphed(ex, mode, why, err);
        if (g < 0)
            return -1;
        if (g == 0 && *why != XF_STOP_NONE)
            return 0;
        /* else complete (the loop below does not run) or op by op from pc */
    }
#endif
    int done = 0;
    while (ex->pc < p->n_ops) {
        if (mode == XF_RUN_NEXT && (layer < 0 ? done >= 1 : p->ops[ex->pc].layer != layer)) {
            *why = XF_STOP_STEP;
            return 0;
        }
        if (ex->interrupt && *ex->interrupt) {
            *ex->interrupt = 0;
            *why = XF_STOP_INTERRUPT;
            return 0;
        }
        int i = ex->pc;
        if (run_op(ex, i, err) != 0)
            return -1;
        ex->pc++;
        ex->last = i;
        done++;
        if (ex->pc >= p->n_ops) /* complete, even if a check, hook or breakpoint stops here */
            ex->n_past = p->pos0 + p->n_tokens;
        if (ex->check != XF_CHECK_OFF) {
            xf_check_row row;
            if (exec_check_op(ex, i, &row, err) != 0)
                return -1;
            ex->check_rows[ex->n_check++] = row;
            if (ex->check == XF_CHECK_BREAK && row.over) {
                *why = XF_STOP_CHECK;
                return 0;
            }
        }
        if (ex->hook) {
            int h = ex->hook(ex->hook_ud, ex, i, err);
            if (h < 0)
                return -1;
            if (h > 0) {
                *why = XF_STOP_HOOK;
                return 0;
            }
        }
        if (watch && ex->n_brk > 0) {
            int h = breaks_after(ex, i, why, err);
            if (h != 0)
                return h < 0 ? -1 : 0;
        }
        if (mode == XF_RUN_STEP && done >= count && ex->pc < p->n_ops) {
            *why = XF_STOP_STEP;
            return 0;
        }
    }
    ex->n_past = p->pos0 + p->n_tokens;
    if (ex->mem->sync(&ex->ctx) != 0)
        return xf_err_set(err, "backend %s failed during the pass", kern_backend_name(ex->backend));
#ifdef XF_HAVE_CUDA
    ex->inflight = false;
    if (ex->timing && ex->backend == KERN_BACKEND_CUDA)
        timing_collect(ex, 0, p->n_ops);
#endif
    *why = XF_STOP_END;
    return 0;
}

int exec_ref_load(xf_exec *ex, const char *path, xf_err *err)
{
    refdump *r = refdump_open(path, err);
    if (!r)
        return -1;
    if (ex->ref)
        refdump_close(ex->ref);
    ex->ref = r;
    return 0;
}
