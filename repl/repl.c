/* repl: the state of one user session, loading a model into it, and the
 * prompt that shows where it stands. */
#include <sched.h> /* sched_getaffinity, CPU_COUNT (_GNU_SOURCE: CMakeLists.txt) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "print.h"
#include "repl.h"
#include "tokenizer.h"

xf_repl *repl_new(void)
{
    xf_repl *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->io.out = stdout;
    r->io.errf = stderr;
    r->io.interrupt = &r->interrupt;
    r->io.quit = &r->quit;
    r->n_threads = repl_default_threads();
    r->backend = KERN_BACKEND_CPU;
    r->lua_timeout = 10;
    r->replay_tolerance = -1;
    return r;
}

void repl_drop_gen(xf_repl *r)
{
    if (r->gen && r->gen_free)
        r->gen_free(r->gen);
    r->gen = NULL;
}

void repl_free(xf_repl *r)
{
    if (!r)
        return;
    repl_drop_gen(r);
    repl_lua_close(r);
    exec_free(r->shadow);
    exec_free(r->ex);
    model_free(r->model);
    free(r->model_path);
    free(r);
}

/* Picks the backend: the one asked for, else cuda when a GPU answers. */
static kern_backend pick_backend(xf_repl *r)
{
    if (r->backend_forced)
        return r->backend;
    char why[128];
    if (kern_backend_available(KERN_BACKEND_CUDA, why, sizeof why))
        return KERN_BACKEND_CUDA;
    return KERN_BACKEND_CPU;
}

int repl_load(xf_repl *r, const char *path)
{
    xf_err err = {0};
    xf_model *m = model_load(path, &err);
    if (!m)
        return repl_errf(r, "%s", err.msg);
    xf_exec *ex = NULL;
    /* a smaller context than the file's: the KV cache (n_ctx x layers x KV x Dh
     * floats) and the attention buffers are sized by it */
    r->native_ctx = m->n_ctx;
    if (r->ctx_limit > 0 && !m->vocab_only && r->ctx_limit < m->n_ctx)
        m->n_ctx = r->ctx_limit;
    if (!m->vocab_only) {
        kern_backend be = pick_backend(r);
        ex = exec_new(m, be, r->n_threads, &err);
        if (!ex) {
            model_free(m);
            return repl_errf(r, "%s", err.msg);
        }
        exec_set_interrupt(ex, &r->interrupt);
    }
    /* the old model goes only once the new one is usable */
    repl_drop_gen(r);
    exec_free(r->shadow);
    r->shadow = NULL;
    r->shadow_pass = 0;
    exec_free(r->ex);
    model_free(r->model);
    free(r->model_path);
    r->ex = ex;
    r->model = m;
    r->chatting = false;
    r->model_path = strdup(path);
    char name[256], p[512];
    pr_escape(name, sizeof name, m->name, strlen(m->name));
    pr_escape(p, sizeof p, path, strlen(path));
    if (m->vocab_only)
        repl_out(r, "loaded %s: vocabulary only, %d tokens (no weights)\n", p, m->n_vocab);
    else {
        char b[32];
        pr_bytes(b, sizeof b, (double)m->weight_bytes);
        /* two lines: a long path must not push the summary past 80 columns */
        repl_out(r, "loaded %s\n", p);
        repl_out(r, "%s '%s': %d layers, %d tensors, %s\n", model_arch_name(m->arch), name, m->n_layer,
                 m->n_weights, b);
        char ctx[96];
        repl_ctx_str(r, ctx, sizeof ctx);
        repl_out(r, "backend %s, %d thread%s, %s\n", kern_backend_name(exec_backend(ex)), r->n_threads,
                 r->n_threads == 1 ? "" : "s", ctx);
    }
    return 0;
}

void repl_prompt(xf_repl *r, char *buf, size_t size)
{
    if (!r->ex) {
        snprintf(buf, size, "(xfdb) ");
        return;
    }
    xf_where w;
    exec_where(r->ex, &w);
    const xf_program *p = exec_program(r->ex);
    if (!w.active)
        snprintf(buf, size, "(xfdb) ");
    /* xfdb*: the pass was written into (set, patch, ablate) */
    else if (w.last >= 0)
        snprintf(buf, size, "(xfdb%s %s) ", exec_pass_written(r->ex) ? "*" : "", p->ops[w.last].name);
    else
        snprintf(buf, size, "(xfdb before %s) ", p->ops[0].name);
}

/* As llama.cpp: every core the process may use (its affinity mask, which
 * taskset and cgroup cpusets narrow), else the online count. */
int repl_default_threads(void)
{
    int n = 0;
#ifdef CPU_COUNT
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
#endif
    if (n < 1) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    return n > 256 ? 256 : n;
}

void repl_ctx_str(const xf_repl *r, char *buf, size_t size)
{
    int n = r->model ? r->model->n_ctx : 0;
    if (r->ctx_limit > 0 && n < r->native_ctx)
        snprintf(buf, size, "context %d positions (--ctx %d; the model's: %d)", n, r->ctx_limit, r->native_ctx);
    else if (r->ctx_limit > 0)
        snprintf(buf, size, "context %d positions (the model's; --ctx %d is larger)", n, r->ctx_limit);
    else
        snprintf(buf, size, "context %d positions (the model's)", n);
}

int repl_fresh_stepper(xf_repl *r)
{
    if (!r->ex)
        return 0;
    xf_err err = {0};
    xf_exec *ex = exec_new(r->model, exec_backend(r->ex), r->n_threads, &err);
    if (!ex)
        return repl_errf(r, "%s", err.msg);
    exec_set_interrupt(ex, &r->interrupt);
    exec_set_graph_mode(ex, exec_graph_mode(r->ex));
    for (int k = 0; k < KERN_OP_COUNT; k++)
        exec_kernel_select(ex, k, exec_kernel_selected(r->ex, (kern_op)k)->name, NULL);
    repl_drop_gen(r);
    exec_free(r->shadow);
    r->shadow = NULL;
    r->shadow_pass = 0;
    exec_free(r->ex);
    r->ex = ex;
    r->chatting = false;
    return 0;
}
