/* passes: the history of the last passes (issue 18). When a pass ends (the
 * next one begins), what it was is kept: its number, position, tokens and
 * interventions, and host copies of the tensors that match the `keep`
 * patterns, so that `diff blk.3.out blk.3.out@pass-1` shows what a patch
 * changed. At most `passes` passes are kept, their tensors within `cap`
 * bytes: the oldest go first, and a pass whose tensors alone are over the
 * cap keeps none (kp->over_cap says so). exec_keep_set refuses a setting
 * whose passes cannot fit the cap at this pass's size. */
#include "exec_internal.h"

#include <stdlib.h>
#include <string.h>

#define KEEP_DEFAULT_PASSES 8
#define KEEP_DEFAULT_CAP ((size_t)256 << 20)

struct xf_keep {
    char **pat;
    int n_pat;
    int passes;
    size_t cap;
    xf_kept_pass *p; /* [n], newest first */
    int n;
};

static void kept_free(xf_kept_pass *kp)
{
    free(kp->tokens);
    for (int i = 0; i < kp->n_iv; i++)
        free(kp->iv[i]);
    free(kp->iv);
    for (int i = 0; i < kp->n_t; i++)
        free(kp->t[i].data);
    free(kp->t);
    memset(kp, 0, sizeof *kp);
}

static void pats_free(struct xf_keep *k)
{
    for (int i = 0; i < k->n_pat; i++)
        free(k->pat[i]);
    free(k->pat);
    k->pat = NULL;
    k->n_pat = 0;
}

void exec_keep_free(xf_exec *ex)
{
    struct xf_keep *k = ex->keep;
    if (!k)
        return;
    for (int i = 0; i < k->n; i++)
        kept_free(&k->p[i]);
    free(k->p);
    pats_free(k);
    free(k);
    ex->keep = NULL;
}

static struct xf_keep *keep_get(xf_exec *ex)
{
    if (!ex->keep && (ex->keep = calloc(1, sizeof *ex->keep))) {
        ex->keep->passes = KEEP_DEFAULT_PASSES;
        ex->keep->cap = KEEP_DEFAULT_CAP;
    }
    return ex->keep;
}

static bool matches(char *const *pat, int n_pat, const char *name)
{
    for (int i = 0; i < n_pat; i++)
        if (program_glob_match(pat[i], name))
            return true;
    return false;
}

size_t exec_keep_estimate(const xf_exec *ex, char *const *patterns, int n_pat)
{
    size_t b = 0;
    for (int i = 0; i < ex->prog.n_ops; i++)
        if (matches(patterns, n_pat, ex->prog.ops[i].name))
            b += (size_t)ex->prog.ops[i].numel * sizeof(float);
    return b;
}

int exec_keep_set(xf_exec *ex, char *const *patterns, int n_pat, int passes, size_t cap, xf_err *err)
{
    if (passes < 1 || passes > 1000)
        return xf_err_set(err, "keep: --passes must be 1..1000");
    struct xf_keep *k = keep_get(ex);
    if (!k)
        return xf_err_set(err, "out of memory");
    char **np = calloc((size_t)(n_pat ? n_pat : 1), sizeof *np);
    if (!np)
        return xf_err_set(err, "out of memory");
    for (int i = 0; i < n_pat; i++)
        if (!(np[i] = strdup(patterns[i]))) {
            for (int j = 0; j < i; j++)
                free(np[j]);
            free(np);
            return xf_err_set(err, "out of memory");
        }
    pats_free(k);
    k->pat = np;
    k->n_pat = n_pat;
    k->passes = passes;
    k->cap = cap;
    /* what no longer fits goes now */
    size_t total = 0;
    int keep_n = 0;
    for (; keep_n < k->n && keep_n < passes; keep_n++) {
        if (total + k->p[keep_n].bytes > cap)
            break;
        total += k->p[keep_n].bytes;
    }
    for (int i = keep_n; i < k->n; i++)
        kept_free(&k->p[i]);
    k->n = keep_n;
    return 0;
}

int exec_keep_config(const xf_exec *ex, char *const **patterns, int *passes, size_t *cap)
{
    const struct xf_keep *k = ex->keep;
    *patterns = k ? k->pat : NULL;
    *passes = k ? k->passes : KEEP_DEFAULT_PASSES;
    *cap = k ? k->cap : KEEP_DEFAULT_CAP;
    return k ? k->n_pat : 0;
}

int exec_kept_count(const xf_exec *ex) { return ex->keep ? ex->keep->n : 0; }

const xf_kept_pass *exec_kept(const xf_exec *ex, int back)
{
    return ex->keep && back >= 1 && back <= ex->keep->n ? &ex->keep->p[back - 1] : NULL;
}

size_t exec_kept_bytes(const xf_exec *ex)
{
    size_t b = 0;
    for (int i = 0; ex->keep && i < ex->keep->n; i++)
        b += ex->keep->p[i].bytes;
    return b;
}

const xf_kept_tensor *exec_kept_find(const xf_kept_pass *kp, const char *name)
{
    for (int i = 0; i < kp->n_t; i++)
        if (strcmp(kp->t[i].name, name) == 0)
            return &kp->t[i];
    return NULL;
}

/* the tensors of the pass that match, copied to the host (kp->t) */
static int snapshot_tensors(xf_exec *ex, const struct xf_keep *k, xf_kept_pass *kp)
{
    const xf_program *p = &ex->prog;
    int n = 0;
    size_t want = 0;
    for (int i = 0; i < p->n_ops; i++)
        if (ex->ready[i] && matches(k->pat, k->n_pat, p->ops[i].name)) {
            n++;
            want += (size_t)p->ops[i].numel * sizeof(float);
        }
    kp->want = want;
    if (n == 0)
        return 0;
    if (want > k->cap) {
        kp->over_cap = true;
        return 0;
    }
    if (!(kp->t = calloc((size_t)n, sizeof *kp->t)))
        return -1;
    for (int i = 0; i < p->n_ops; i++) {
        const xf_op *o = &p->ops[i];
        if (!ex->ready[i] || !matches(k->pat, k->n_pat, o->name))
            continue;
        xf_kept_tensor *t = &kp->t[kp->n_t];
        memcpy(t->name, o->name, sizeof t->name);
        t->ndim = o->ndim;
        memcpy(t->shape, o->shape, sizeof t->shape);
        t->numel = o->numel;
        xf_err e = {0};
        t->data = exec_lazy_settle(ex, i, &e) == 0 ? malloc((size_t)o->numel * sizeof(float)) : NULL;
        if (!t->data || ex->mem->to_host(&ex->ctx, t->data, ex->buf[i], (size_t)o->numel * sizeof(float)) != 0) {
            free(t->data);
            return -1;
        }
        kp->n_t++;
        kp->bytes += (size_t)o->numel * sizeof(float);
    }
    return 0;
}

void exec_keep_snapshot(xf_exec *ex)
{
    if (!ex->active || !ex->ready)
        return;
    struct xf_keep *k = keep_get(ex);
    if (!k)
        return;
    xf_kept_pass kp = {.pass_no = ex->pass_no, .pos0 = ex->prog.pos0, .n_tokens = ex->n_tokens,
                       .written = ex->written, .ctx_written = ex->ctx_written};
    kp.tokens = malloc((size_t)ex->n_tokens * sizeof *kp.tokens);
    kp.iv = calloc((size_t)(ex->n_iv ? ex->n_iv : 1), sizeof *kp.iv);
    bool ok = kp.tokens && kp.iv;
    if (ok)
        memcpy(kp.tokens, ex->tokens, (size_t)ex->n_tokens * sizeof *kp.tokens);
    for (int i = 0; ok && i < ex->n_iv; i++)
        ok = (kp.iv[kp.n_iv++] = strdup(ex->iv[i])) != NULL;
    if (ok && k->n_pat > 0 && snapshot_tensors(ex, k, &kp) != 0) {
        /* out of host memory: the pass is listed without tensors */
        for (int i = 0; i < kp.n_t; i++)
            free(kp.t[i].data);
        kp.n_t = 0;
        kp.bytes = 0;
        kp.oom = true;
    }
    if (!ok) {
        kept_free(&kp);
        return;
    }
    /* the oldest go until this one fits the count and the cap */
    size_t total = kp.bytes;
    int keep_n = 0;
    for (; keep_n < k->n && keep_n + 1 < k->passes; keep_n++) {
        if (total + k->p[keep_n].bytes > k->cap)
            break;
        total += k->p[keep_n].bytes;
    }
    for (int i = keep_n; i < k->n; i++)
        kept_free(&k->p[i]);
    k->n = keep_n;
    xf_kept_pass *np = realloc(k->p, (size_t)(k->n + 1) * sizeof *np);
    if (!np) {
        kept_free(&kp);
        return;
    }
    k->p = np;
    memmove(&k->p[1], &k->p[0], (size_t)k->n * sizeof *k->p);
    k->p[0] = kp;
    k->n++;
}
