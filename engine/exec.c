/* exec: the stepper's life cycle (weights to the device, KV cache, buffers),
 * kernel selection and the scratch it needs, the start of a pass (program
 * built or moved), running one op, and the run modes (step, next, finish,
 * continue) over the op loop. The graph fast path, breakpoints, tensor
 * access and check mode live in exec_graph.c, exec_break.c, exec_tensor.c
 * and exec_check.c (exec_internal.h). */
#include "exec_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

void exec_free(xf_exec *ex)
{
    if (!ex)
        return;
#ifdef XF_HAVE_CUDA
    exec_graph_clear(ex);
    free(ex->gbuf);
    for (int i = 0; i < ex->n_ev; i++)
        kern_cuda_event_free(ex->ev[i]);
    free(ex->ev);
#endif
    free_buffers(ex);
    exec_write_free(ex);
    exec_keep_free(ex);
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
    free(ex->bhost);
    free(ex->bdev);
    free(ex->check_rows);
    free(ex->ready);
    free(ex->owed);
    free(ex->owed_rows);
    free(ex->op_ms);
    free(ex->tokens);
    free(ex->hist);
    program_free(&ex->prog);
    if (ex->ref)
        refdump_close(ex->ref);
    if (ex->ctx.pool)
        kern_pool_free(ex->ctx.pool);
    if (ex->ctx.scratch)
        ex->mem->free(ex->ctx.scratch);
#ifdef XF_HAVE_CUDA
    if (ex->backend == KERN_BACKEND_CUDA) {
        if (ex->step_dev)
            ex->mem->free(ex->step_dev);
        if (ex->attn_cnt)
            ex->mem->free(ex->attn_cnt);
        if (ex->attn_part)
            ex->mem->free(ex->attn_part);
        kern_cuda_host_free(ex->step_host);
        kern_cuda_host_free(ex->watch_host);
        if (ex->borrowed)
            ex->ctx.codes = NULL; /* the owner's */
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

/* Measured once per process for each backend (cpu: for each thread
 * count): a measure takes about a second, and the machine does not change. */
int exec_mem_bandwidth(const xf_exec *ex, kern_membw *out, xf_err *err)
{
    static struct {
        bool done;
        int threads;
        kern_membw bw;
    } cache[KERN_BACKEND_COUNT];
    int b = (int)ex->backend, threads = ex->ctx.n_threads;
    if (cache[b].done && (b != KERN_BACKEND_CPU || cache[b].threads == threads)) {
        *out = cache[b].bw;
        return 0;
    }
    kern_membw bw;
    int rc = -1;
    if (ex->backend == KERN_BACKEND_CPU)
        rc = kern_cpu_membw(threads, &bw);
#ifdef XF_HAVE_CUDA
    else if (ex->backend == KERN_BACKEND_CUDA)
        rc = kern_cuda_membw(&bw);
#endif
    else
        snprintf(bw.how, sizeof bw.how, "no measure for this backend");
    if (rc != 0)
        return xf_err_set(err, "memory bandwidth (%s): %s", kern_backend_name(ex->backend), bw.how);
    cache[b].done = true;
    cache[b].threads = threads;
    cache[b].bw = bw;
    *out = bw;
    return 0;
}

/* what refuses a stepper before anything is made: 0 or -1 */
static int exec_new_check(const xf_model *m, kern_backend backend, xf_err *err)
{
    if (m->vocab_only)
        return xf_err_set(err, "%s is a vocabulary-only file: it has no weights to run", m->path);
    char why[256] = "";
    if (!kern_backend_available(backend, why, sizeof why))
        return xf_err_set(err, "backend %s is not available: %s", kern_backend_name(backend), why);
    return model_kv_check(m, backend == KERN_BACKEND_CPU, err);
}

/* owner: NULL, or the stepper whose device weights and kept codes this one
 * borrows (exec_new_beside) */
static xf_exec *exec_new_with(xf_model *m, kern_backend backend, int n_threads, const xf_exec *owner,
                              xf_err *err)
{
    if (exec_new_check(m, backend, err) != 0)
        return NULL;
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
        size_t cnt_bytes = 2 * (size_t)m->n_head * sizeof(int);
        ex->attn_cnt = ex->mem->alloc(cnt_bytes);
        int *zeros = calloc(2 * (size_t)m->n_head, sizeof *zeros);
        int cnt_rc = ex->attn_cnt && zeros ? ex->mem->to_dev(&ex->ctx, ex->attn_cnt, zeros, cnt_bytes) : -1;
        free(zeros);
        /* the chunk sums of a long attention row (a few MB at most: n_head
         * x n_ctx / 256 x head_dim floats) */
        ex->attn_part_floats = kern_cuda_attn_part_floats(m->n_head, m->head_dim, m->n_ctx);
        if (ex->attn_part_floats > 0)
            ex->attn_part = ex->mem->alloc((size_t)ex->attn_part_floats * sizeof(float));
        /* where a graph's watch node says a condition held (no device
         * address: graphs split at breakpoints and the host reads) */
        ex->watch_host = kern_cuda_host_alloc(sizeof(int));
        ex->watch_dev = ex->watch_host ? kern_cuda_host_dev_ptr(ex->watch_host) : NULL;
        if (!ex->step_host || !ex->step_dev || cnt_rc != 0 || !ex->attn_part || !ex->watch_host) {
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
        if (backend == KERN_BACKEND_CPU || owner) {
            ex->wdev[i] = owner ? owner->wdev[i] : w->data;
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
    ex->borrowed = owner != NULL;
    ex->ctx.codes = owner ? owner->ctx.codes : NULL;
    if (!owner && exec_codes_keep(ex, err) != 0)
        goto fail;
    if (ex->mem->sync(&ex->ctx) != 0) {
        xf_err_set(err, "backend %s failed while copying weights", kern_backend_name(backend));
        goto fail;
    }
    return ex;
fail:
    exec_free(ex);
    return NULL;
}

xf_exec *exec_new(xf_model *m, kern_backend backend, int n_threads, xf_err *err)
{
    return exec_new_with(m, backend, n_threads, NULL, err);
}

xf_exec *exec_new_beside(const xf_exec *owner, int n_threads, xf_err *err)
{
    return exec_new_with(owner->m, owner->backend, n_threads, owner, err);
}

/* Grows the kernel scratch (ctx.scratch) to at least need bytes; never
 * shrinks, so that a decode loop does not allocate. The need comes from the
 * selected variants' own declarations (kern_variant.scratch_bytes), so a
 * variant chosen mid-pass never runs on scratch sized for another. A graph
 * that baked in the old pointer is captured again (exec_graph.c keys on it). */
int exec_scratch_grow(xf_exec *ex, size_t need, xf_err *err)
{
    if (need <= ex->ctx.scratch_size)
        return 0;
    if (ex->ctx.scratch) {
        /* a queued kernel or graph may still use the old one */
        if (ex->mem->sync(&ex->ctx) != 0)
            return xf_err_set(err, "backend %s failed before growing the kernel scratch",
                              kern_backend_name(ex->backend));
        ex->mem->free(ex->ctx.scratch);
    }
    ex->ctx.scratch = ex->mem->alloc(need);
    ex->ctx.scratch_size = ex->ctx.scratch ? need : 0;
    if (!ex->ctx.scratch)
        return xf_err_set(err, "out of %s memory for %zu bytes of kernel scratch", kern_backend_name(ex->backend),
                          need);
    return 0;
}

/* Scratch for every op of the current program with the selected variants:
 * at the start of a pass and whenever the selection changes, so that a
 * graph capture (which cannot allocate) finds it ready. */
static int scratch_for_program(xf_exec *ex, xf_err *err)
{
    size_t need = 0;
    for (int i = 0; i < ex->prog.n_ops; i++) {
        const xf_op *op = &ex->prog.ops[i];
        size_t s = kern_variant_scratch(ex->sel[op->kind], &op->args);
        need = s > need ? s : need;
    }
    size_t f = exec_fuse_scratch(ex);
    return exec_scratch_grow(ex, f > need ? f : need, err);
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
        return ex->active ? scratch_for_program(ex, err) : 0;
    }
    /* all: every op kind must have it, or nothing changes */
    for (int k = 0; k < KERN_OP_COUNT; k++)
        if (!find_variant(ex, (kern_op)k, variant))
            return xf_err_set(err, "op '%s' has no %s variant '%s'; nothing changed", kern_op_name((kern_op)k),
                              kern_backend_name(ex->backend), variant);
    for (int k = 0; k < KERN_OP_COUNT; k++)
        ex->sel[k] = find_variant(ex, (kern_op)k, variant);
    return ex->active ? scratch_for_program(ex, err) : 0;
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

static int ensure_buffers(xf_exec *ex, xf_err *err)
{
    const xf_program *p = &ex->prog;
    if (scratch_for_program(ex, err) != 0)
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
    /* The weights were read into memory at load, so a file changed since
     * cannot crash a pass; but the user should know the weights on disk are
     * no longer the ones that run (issue 14: "the file changed on disk").
     * Checked when a prompt starts, not for every decode token: a stat()
     * per token would sit on the hot path of graphed decode. */
    if (!continue_cache && model_check_unchanged(ex->m, err) != 0)
        return -1;
    int pos0 = 0;
    if (continue_cache) {
        if (ex->active && ex->pc < ex->prog.n_ops)
            return xf_err_set(err, "the current pass is at op %d of %d: `finish` it first", ex->pc, ex->prog.n_ops);
        if (!ex->active)
            return xf_err_set(err, "no pass yet (start one with `run TEXT` or `run --tokens 1,2,3`)");
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
    const kern_variant **owed = keep ? ex->owed : calloc((size_t)n_ops, sizeof *owed);
    bool *owed_rows = keep ? ex->owed_rows : calloc((size_t)n_ops, sizeof *owed_rows);
    if (!tk || !ready || !ms || !rows || !owed || !owed_rows) {
        if (tk != ex->tokens)
            free(tk);
        if (!keep) {
            free(ready);
            free(ms);
            free(rows);
            free(owed);
            free(owed_rows);
        }
        program_free(&np);
        return xf_err_set(err, "out of memory");
    }
    exec_keep_snapshot(ex); /* the pass that ends, before anything of it changes */
    exec_write_begin(ex, continue_cache);
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
        memset(owed, 0, (size_t)n_ops * sizeof *owed); /* what the last pass owed goes with it */
        memset(owed_rows, 0, (size_t)n_ops * sizeof *owed_rows);
    } else {
        free(ex->ready);
        free(ex->op_ms);
        free(ex->check_rows);
        free(ex->owed);
        free(ex->owed_rows);
    }
    ex->tokens = tk;
    ex->n_tokens = n;
    ex->ready = ready;
    ex->n_ready = n_ops;
    ex->op_ms = ms;
    ex->check_rows = rows;
    ex->owed = owed;
    ex->owed_rows = owed_rows;
    ex->n_owed = 0;
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
void exec_op_args(const xf_exec *ex, int i, kern_args *a)
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

/* The logits of a prefill are n_tokens x n_vocab: for GPT-2 a third of the
 * pass's arithmetic, for Qwen2.5-0.5B a quarter, and only the last row picks
 * the next token. Like every inference engine, the pass computes that row
 * alone; unlike them, nothing is lost: the other rows are owed, and the
 * first reader of the tensor (print, stats, diff, compare, a breakpoint
 * condition, a hook, a write, the pass history) has them computed first
 * (exec_lazy_settle), by the same variant on the same out_norm rows, which
 * no later op can change (it is the last op). Check mode judges the whole
 * op at once, so there the op runs whole. */
static bool defer_rows(const xf_exec *ex, int i)
{
    const xf_op *op = &ex->prog.ops[i];
    return i == ex->prog.n_ops - 1 && op->kind == KERN_OP_MATMUL && op->layer < 0 && op->args.n > 1 &&
           ex->check == XF_CHECK_OFF;
}

void exec_owe(xf_exec *ex, int op, const kern_variant *v, bool rows)
{
    if (!ex->owed[op])
        ex->n_owed++;
    ex->owed[op] = v;
    ex->owed_rows[op] = rows;
}

int exec_lazy_settle(xf_exec *ex, int op, xf_err *err)
{
    if (ex->n_owed == 0 || op < 0 || op >= ex->n_ready || !ex->owed[op])
        return 0;
    const xf_op *o = &ex->prog.ops[op];
    /* a whole op owed may read another (kq_soft reads kq) */
    if (!ex->owed_rows[op] && (exec_lazy_settle(ex, o->in0, err) != 0 || exec_lazy_settle(ex, o->in1, err) != 0))
        return -1;
    kern_args a;
    exec_op_args(ex, op, &a);
    if (ex->owed_rows[op])
        a.n = o->args.n - 1; /* rows 0..n-2: x [n-1, k] -> y [n-1, m] */
    const kern_variant *v = ex->owed[op];
    if (exec_scratch_grow(ex, kern_variant_scratch(v, &a), err) != 0)
        return -1;
    if (v->fn(&ex->ctx, &a) != 0 || ex->mem->sync(&ex->ctx) != 0)
        return xf_err_set(err, "%s: kernel %s/%s/%s failed computing it on demand", o->name, kern_op_name(o->kind),
                          kern_backend_name(v->backend), v->name);
    ex->owed[op] = NULL;
    ex->n_owed--;
    return 0;
}

bool exec_tensor_deferred(const xf_exec *ex, int op)
{
    return ex->active && op >= 0 && op < ex->n_ready && ex->owed[op] != NULL;
}

int exec_tensor_owed(const xf_exec *ex, int op)
{
    if (!exec_tensor_deferred(ex, op))
        return XF_OWED_NONE;
    return ex->owed_rows[op] ? XF_OWED_ROWS : XF_OWED_ALL;
}

/* The fused attention of a prefill (kernels.h kern_cpu_attn_fused,
 * kernels_cuda.h kern_cuda_attn_prefill_fused): at op i when ops i, i+1,
 * i+2 are a layer's kq, kq_soft and kqv, the pass is a prefill run by
 * `continue` or `finish`, and nothing looks at single ops there: no check,
 * hook, write hook, timing (`profile` shows the ops one by one), written
 * pass, or breakpoint on kq or kq_soft (nothing can stop between them and
 * change kq or kq_soft). kqv's output is what the three selected opt
 * variants give (KERN_VF_FUSE_EXACT). kq and kq_soft are owed, computed
 * by those variants when first read: the cpu's fusion never writes them,
 * the cuda's writes them only up to each query's position (the softmax
 * and kqv read nothing past the causal mask, and writing its -inf and
 * zeros was a quarter of the attention's bytes at 2048 tokens). */
const char *exec_looks_why(const xf_exec *ex)
{
    if (ex->check != XF_CHECK_OFF)
        return "check is on: each op is judged alone";
    if (ex->hook)
        return "a hook looks at every op";
    if (ex->timing)
        return "profile is timing each op";
    if (ex->written || ex->whook)
        return "this pass was written into (set, ablate, patch): its rest runs op by op";
    return NULL;
}

const char *exec_attn_fuse_why(const xf_exec *ex, char *buf, size_t n)
{
    const char *why = exec_looks_why(ex);
    if (why)
        return why;
    static const kern_op ops[3] = {KERN_OP_KQ, KERN_OP_SOFTMAX, KERN_OP_KQV};
    for (int k = 0; k < 3; k++) {
        const kern_variant *v = ex->sel[ops[k]];
        if (v->backend != ex->backend || !(v->flags & KERN_VF_FUSE_EXACT)) {
            snprintf(buf, n, "the selected %s %s is not one the fusion reproduces", kern_op_name(ops[k]),
                     v->name);
            return buf;
        }
    }
    return NULL;
}

int exec_cache_store(xf_exec *ex, int i, xf_err *err)
{
    const xf_op *op = &ex->prog.ops[i];
    if (op->cache == XF_CACHE_NONE)
        return 0;
    size_t row = (size_t)op->shape[1] * (size_t)op->shape[2];
    float *dst = (op->cache == XF_CACHE_K ? ex->kcache : ex->vcache)[op->layer] + (size_t)op->args.pos0 * row;
    if (ex->mem->copy(&ex->ctx, dst, ex->buf[i], (size_t)op->numel * sizeof(float)) != 0)
        return xf_err_set(err, "%s: storing into the KV cache failed", op->name);
    return 0;
}

int exec_run_op(xf_exec *ex, int i, xf_err *err)
{
    const xf_op *op = &ex->prog.ops[i];
    kern_args a;
    exec_op_args(ex, i, &a);
    const kern_variant *v = ex->sel[op->kind];
    bool defer = defer_rows(ex, i);
    if (defer) { /* the last row: x [1, k] -> y [1, m] */
        a.x += (size_t)(a.n - 1) * (size_t)a.k;
        a.y += (size_t)(a.n - 1) * (size_t)a.m;
        a.n = 1;
    }
    bool events = false;
    (void)events; /* used by the cuda build only */
#ifdef XF_HAVE_CUDA
    events = ex->timing && ex->backend == KERN_BACKEND_CUDA;
    if (events && timing_events(ex, err) != 0)
        return -1;
    if (events && kern_cuda_event_record(ex->ev[2 * i], &ex->ctx) != 0)
        return xf_err_set(err, "%s: recording a CUDA event failed", op->name);
#endif
    /* the selection may have changed since the pass began: the variant's
     * own need for these arguments, not what the pass was sized for */
    if (exec_scratch_grow(ex, kern_variant_scratch(v, &a), err) != 0)
        return -1;
    double t0 = ex->timing ? now_ms() : 0;
    if (v->fn(&ex->ctx, &a) != 0)
        return xf_err_set(err, "%s: kernel %s/%s/%s failed", op->name, kern_op_name(op->kind),
                          kern_backend_name(v->backend), v->name);
    if (exec_cache_store(ex, i, err) != 0)
        return -1;
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
    if (defer)
        exec_owe(ex, i, v, true);
    return 0;
}

/* --- running ----------------------------------------------------------------- */

int exec_run(xf_exec *ex, xf_run_mode mode, int count, xf_stop *why, xf_err *err)
{
    *why = XF_STOP_NONE;
    if (!ex->active)
        return xf_err_set(err, "no pass yet (start one with `run TEXT` or `run --tokens 1,2,3`)");
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
    if (watch && ex->n_brk > 0 && exec_brk_cache(ex, err) != 0)
        return -1;
#ifdef XF_HAVE_CUDA
    if (exec_graph_eligible(ex, mode)) {
        int g = exec_graph_run(ex, mode, why, err);
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
        int i = ex->pc, span = exec_fuse_run(ex, i, mode, watch, err);
        if (span < 0)
            return -1;
        if (span == 0) {
            if (exec_run_op(ex, i, err) != 0)
                return -1;
            span = 1;
        }
        ex->pc += span;
        i += span - 1; /* the last op run (fused: kqv), which what follows looks at */
        ex->last = i;
        done += span;
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
        if (ex->whook && ex->whook(ex->whook_ud, ex, i, err) != 0)
            return -1;
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
            int h = exec_breaks_after(ex, i, why, err);
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
