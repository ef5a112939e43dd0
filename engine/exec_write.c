/* exec_write: writing into the forward pass (issue 18). A value is written
 * where the tensor lives (host memory, or the device through the backend's
 * to_dev), into the output of an op that has run in this pass and that no
 * later op has read yet: every op that reads it runs after the write and
 * uses the new value. Writing a tensor whose readers already ran is
 * refused, naming them (the rest of the pass would mix old and new
 * values). The output of a k/v op is also a KV cache row: the cache rows
 * are written too, so later decode passes attend to the written value.
 *
 * A pass that was written into is marked (exec_pass_written, with the
 * interventions as the REPL typed them); the rest of it runs op by op,
 * never as a CUDA graph (exec_graph_eligible), and nothing is captured
 * from it. exec_begin clears the mark; a decode pass that continues a
 * written context says so (exec_context_written). */
#include "exec_internal.h"

#include <stdlib.h>
#include <string.h>

bool exec_pass_written(const xf_exec *ex) { return ex->active && ex->written; }
bool exec_context_written(const xf_exec *ex) { return ex->active && ex->ctx_written; }

const char *const *exec_interventions(const xf_exec *ex, int *n)
{
    *n = ex->active ? ex->n_iv : 0;
    return (const char *const *)ex->iv;
}

int exec_intervention_pc(const xf_exec *ex, int i) { return i >= 0 && i < ex->n_iv ? ex->iv_pc[i] : -1; }

void exec_set_write_hook(xf_exec *ex, int (*fn)(void *, xf_exec *, int, xf_err *), void *ud)
{
    ex->whook = fn;
    ex->whook_ud = ud;
}

bool exec_write_hooked(const xf_exec *ex) { return ex->whook != NULL; }

void exec_write_free(xf_exec *ex)
{
    for (int i = 0; i < ex->n_iv; i++)
        free(ex->iv[i]);
    free(ex->iv);
    free(ex->iv_pc);
    ex->iv = NULL;
    ex->iv_pc = NULL;
    ex->n_iv = ex->iv_cap = 0;
}

void exec_write_begin(xf_exec *ex, bool continue_cache)
{
    ex->ctx_written = continue_cache && (ex->ctx_written || ex->written);
    ex->written = false;
    for (int i = 0; i < ex->n_iv; i++)
        free(ex->iv[i]);
    ex->n_iv = 0;
}

int exec_note_intervention(xf_exec *ex, const char *text, xf_err *err)
{
    if (!ex->active)
        return xf_err_set(err, "no pass yet (start one with `run TEXT` or `run --tokens 1,2,3`)");
    for (int i = 0; i < ex->n_iv; i++)
        if (strcmp(ex->iv[i], text) == 0) /* a hook writing every decode op says it once */
            return 0;
    if (ex->n_iv == ex->iv_cap) {
        int cap = ex->iv_cap ? 2 * ex->iv_cap : 4;
        char **v = realloc(ex->iv, (size_t)cap * sizeof *v);
        if (v)
            ex->iv = v;
        int *pc = v ? realloc(ex->iv_pc, (size_t)cap * sizeof *pc) : NULL;
        if (!pc)
            return xf_err_set(err, "out of memory");
        ex->iv_pc = pc;
        ex->iv_cap = cap;
    }
    if (!(ex->iv[ex->n_iv] = strdup(text)))
        return xf_err_set(err, "out of memory");
    ex->iv_pc[ex->n_iv++] = ex->pc;
    return 0;
}

/* true when op j reads the output of op i: an input, or (attention) the
 * KV cache rows that i stored */
static bool reads(const xf_program *p, int j, int i)
{
    const xf_op *a = &p->ops[i], *b = &p->ops[j];
    if (b->in0 == i || b->in1 == i)
        return true;
    if (a->cache == XF_CACHE_K && b->kind == KERN_OP_KQ && b->layer == a->layer)
        return true;
    return a->cache == XF_CACHE_V && b->kind == KERN_OP_KQV && b->layer == a->layer;
}

int exec_tensor_consumed(const xf_exec *ex, int op, int *out, int cap)
{
    int n = 0;
    if (!ex->active || op < 0 || op >= ex->prog.n_ops)
        return 0;
    for (int j = op + 1; j < ex->prog.n_ops; j++)
        if (ex->ready[j] && reads(&ex->prog, j, op)) {
            if (n < cap)
                out[n] = j;
            n++;
        }
    return n;
}

/* the op may be written: computed in this pass, not read yet */
static int writable(const xf_exec *ex, int op, xf_err *err)
{
    if (!ex->active)
        return xf_err_set(err, "no pass yet (start one with `run TEXT` or `run --tokens 1,2,3`)");
    if (op < 0 || op >= ex->prog.n_ops)
        return xf_err_set(err, "no op %d", op);
    const xf_op *o = &ex->prog.ops[op];
    if (!ex->ready[op])
        return xf_err_set(err, "%s has not run yet in this pass (next op: %s): stop after it "
                               "(break %s, continue) and write it then",
                          o->name, ex->pc < ex->prog.n_ops ? ex->prog.ops[ex->pc].name : "none", o->name);
    int who[4];
    int n = exec_tensor_consumed(ex, op, who, 4);
    if (n == 0)
        return 0;
    char list[4 * XF_NAME_MAX + 16] = "";
    for (int k = 0; k < n && k < 4; k++) {
        strcat(list, k ? ", " : "");
        strcat(list, ex->prog.ops[who[k]].name);
    }
    return xf_err_set(err, "%s was already read by %s%s: writing it now would change nothing that "
                           "follows; `run` again and stop right after it (break %s)",
                      o->name, list, n > 4 ? ", ..." : "", o->name);
}

int exec_tensor_write(xf_exec *ex, int op, const int64_t *idx, int64_t n, const float *vals, int64_t nv,
                      xf_err *err)
{
    if (writable(ex, op, err) != 0 || exec_lazy_settle(ex, op, err) != 0)
        return -1;
    const xf_op *o = &ex->prog.ops[op];
    if (n <= 0)
        return 0;
    if (nv != 1 && nv != n)
        return xf_err_set(err, "%s: %lld values for %lld elements", o->name, (long long)nv, (long long)n);
    int64_t lo = idx[0], hi = idx[0];
    for (int64_t k = 1; k < n; k++) {
        lo = idx[k] < lo ? idx[k] : lo;
        hi = idx[k] > hi ? idx[k] : hi;
    }
    if (lo < 0 || hi >= o->numel)
        return xf_err_set(err, "%s: index out of range", o->name);
    /* the span the indices lie in: read, change, write back, wherever it lives.
     * A graph may still be running on the device: wait for it first. */
    if (ex->mem->sync(&ex->ctx) != 0)
        return xf_err_set(err, "%s: backend %s failed", o->name, kern_backend_name(ex->backend));
#ifdef XF_HAVE_CUDA
    ex->inflight = false;
#endif
    float *dev = (float *)ex->buf[op] + lo;
    size_t span = (size_t)(hi - lo + 1);
    float *h = malloc(span * sizeof(float));
    if (!h)
        return xf_err_set(err, "out of memory");
    int rc = ex->mem->to_host(&ex->ctx, h, dev, span * sizeof(float));
    if (rc == 0) {
        for (int64_t k = 0; k < n; k++)
            h[idx[k] - lo] = vals[nv == 1 ? 0 : k];
        rc = ex->mem->to_dev(&ex->ctx, dev, h, span * sizeof(float));
    }
    if (rc == 0 && o->cache != XF_CACHE_NONE) {
        size_t row = (size_t)o->shape[1] * (size_t)o->shape[2];
        float *dst = (o->cache == XF_CACHE_K ? ex->kcache : ex->vcache)[o->layer] + (size_t)o->args.pos0 * row;
        rc = ex->mem->copy(&ex->ctx, dst + lo, dev, span * sizeof(float));
    }
    if (rc == 0)
        rc = ex->mem->sync(&ex->ctx);
    free(h);
    if (rc != 0)
        return xf_err_set(err, "%s: writing to the %s device failed", o->name, kern_backend_name(ex->backend));
    ex->written = true;
    return 0;
}
