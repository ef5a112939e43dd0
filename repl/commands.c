/* commands: the one table of REPL commands (name, aliases, synopsis, help,
 * handler). Dispatch, `help`, completion and the nearest-name suggestion all
 * read it; --batch, scripts and sessions run the same strings. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "exec.h"
#include "quant.h"
#include "refdump.h"
#include "repl.h"
#include "sampler.h"
#include "tensor.h"
#include "tokenizer.h"

/* --- output -------------------------------------------------------------------- */

void repl_write(xf_repl *r, const char *s, size_t n)
{
    if (r->capture)
        sb_append(r->capture, s, n);
    if (!r->quiet && r->out) {
        fwrite(s, 1, n, r->out);
        fflush(r->out);
    }
}

void repl_out(xf_repl *r, const char *fmt, ...)
{
    char tmp[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        repl_write(r, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big)
        return;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    repl_write(r, big, (size_t)n);
    free(big);
}

int repl_errf(xf_repl *r, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    /* errors may quote file content: keep control bytes off the terminal. The
     * modules already escape what they quote, so backslashes stay as they are;
     * only control characters (C0, DEL, C1) and invalid UTF-8 are rewritten. */
    char esc[2048];
    pr_escape_controls(tmp, strlen(tmp), esc, sizeof esc);
    if (r->capture)
        sb_printf(r->capture, "error: %s\n", esc);
    if (r->errf) {
        bool c = r->color;
        fprintf(r->errf, "%serror:%s %s\n", c ? "\033[1;31m" : "", c ? "\033[0m" : "", esc);
        fflush(r->errf);
    }
    return 1;
}

/* --- helpers ------------------------------------------------------------------- */

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end || errno || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno || !isfinite(v))
        return false;
    *out = v;
    return true;
}

/* TEXT arguments: "quoted with C escapes" or the rest of the line as typed */
static int parse_text(xf_repl *r, const char *rest, char **out, size_t *len)
{
    while (*rest == ' ' || *rest == '\t')
        rest++;
    size_t n = strlen(rest);
    while (n && (rest[n - 1] == ' ' || rest[n - 1] == '\t' || rest[n - 1] == '\n' || rest[n - 1] == '\r'))
        n--;
    xf_err err = {0};
    if (n >= 2 && rest[0] == '"' && rest[n - 1] == '"') {
        char *inner = strndup(rest + 1, n - 2);
        if (!inner)
            return repl_errf(r, "out of memory");
        int rc = tok_unescape(inner, out, len, &err);
        free(inner);
        if (rc != 0)
            return repl_errf(r, "text: %s", err.msg);
        return 0;
    }
    if (n && rest[0] == '"')
        return repl_errf(r, "text: missing closing quote");
    *out = strndup(rest, n);
    *len = n;
    return *out ? 0 : repl_errf(r, "out of memory");
}

static int need_tok(xf_repl *r)
{
    if (!r->model)
        return repl_errf(r, "no model loaded (use `load PATH`)");
    if (!r->model->tok)
        return repl_errf(r, "%s has no vocabulary", r->model->path);
    return 0;
}

static void piece_str(xf_repl *r, int32_t id, char *buf, size_t size)
{
    size_t len;
    const char *p = r->model->tok ? tok_piece(r->model->tok, id, &len) : NULL;
    if (!p)
        snprintf(buf, size, "?");
    else
        tok_escape(p, len, buf, size);
}

/* --- tensors by name: activations, NAME@ref, NAME@cpu, weights ----------------- */

/* names in a view come from files: escape them once, where they are filled */
static void view_name(repl_view *v, const char *name, const char *suffix)
{
    char esc[128];
    pr_escape(esc, sizeof esc, name, strlen(name));
    snprintf(v->name, sizeof v->name, "%s%s", esc, suffix);
}

static int view_alloc(repl_view *v, xf_err *err)
{
    v->data = malloc((size_t)(v->numel ? v->numel : 1) * sizeof(float));
    return v->data ? 0 : xf_err_set(err, "out of memory for %lld floats", (long long)v->numel);
}

/* NAME@cpu: the same tensor from the cpu backend with ref kernels, on the
 * same tokens. The shadow replays the context (earlier positions as one
 * prefill, then this pass with the same shape) once per pass and keeps it. */
static int view_cpu(xf_repl *r, const char *base, repl_view *v, xf_err *err)
{
    if (!r->ex)
        return xf_err_set(err, "no model with weights loaded");
    int op = exec_tensor_find(r->ex, base, err);
    if (op < 0)
        return -1;
    xf_where w;
    exec_where(r->ex, &w);
    if (!r->shadow) {
        r->shadow = exec_new(r->model, KERN_BACKEND_CPU, r->n_threads, err);
        if (!r->shadow || exec_kernel_select(r->shadow, -1, "ref", err) != 0)
            return -1;
        r->shadow_pass = 0;
    }
    if (r->shadow_pass != w.pass_no) {
        int nh;
        const int32_t *h = exec_history(r->ex, &nh);
        xf_stop why;
        int rc = 0;
        if (w.pos0 > 0)
            rc = exec_begin(r->shadow, h, w.pos0, false, err) || exec_run(r->shadow, XF_RUN_FINISH, 0, &why, err);
        if (rc == 0)
            rc = exec_begin(r->shadow, h + w.pos0, w.n_tokens, w.pos0 > 0, err) ||
                 exec_run(r->shadow, XF_RUN_FINISH, 0, &why, err);
        if (rc != 0) {
            r->shadow_pass = 0;
            return -1;
        }
        r->shadow_pass = w.pass_no;
    }
    const xf_op *o = &exec_program(r->shadow)->ops[op];
    v->ndim = o->ndim;
    memcpy(v->shape, o->shape, sizeof v->shape);
    v->numel = o->numel;
    v->per_pass = true;
    if (view_alloc(v, err) != 0)
        return -1;
    if (exec_tensor_read(r->shadow, op, v->data, err) != 0)
        return -1;
    snprintf(v->name, sizeof v->name, "%s@cpu", o->name);
    snprintf(v->what, sizeof v->what, "cpu:ref");
    return 0;
}

static int view_load(xf_repl *r, const char *spec, repl_view *v, xf_err *err)
{
    const char *at = strchr(spec, '@');
    char base[160];
    snprintf(base, sizeof base, "%.*s", at ? (int)(at - spec) : (int)strlen(spec), spec);
    char canon[XF_NAME_MAX];
    program_resolve_alias(base, canon, sizeof canon);
    if (at && strcmp(at, "@cpu") == 0)
        return view_cpu(r, base, v, err);
    if (at) {
        if (strcmp(at, "@ref") != 0)
            return xf_err_set(err, "'%s': NAME@ref (a dump loaded with `ref load`) or NAME@cpu (the cpu reference)",
                              spec);
        const refdump *ref = r->ex ? exec_ref(r->ex) : NULL;
        if (!ref)
            return xf_err_set(err, "no reference loaded: `ref load FILE.safetensors`");
        const refdump_tensor *t = refdump_find(ref, canon);
        if (!t)
            t = refdump_find(ref, base);
        if (!t)
            return xf_err_set(err, "the reference has no tensor '%s'", base);
        if (t->ndim > 4)
            return xf_err_set(err, "'%s' has %d dimensions (at most 4)", base, t->ndim);
        v->ndim = t->ndim;
        for (int i = 0; i < t->ndim; i++)
            v->shape[i] = t->shape[i];
        v->numel = refdump_numel(t);
        if (view_alloc(v, err) != 0 || refdump_read_f32(ref, t, v->data, err) != 0)
            return -1;
        view_name(v, t->name, "@ref");
        snprintf(v->what, sizeof v->what, "ref %s", refdump_dtype_name(t->dtype));
        return 0;
    }
    if (!r->model || r->model->vocab_only || !r->ex)
        return xf_err_set(err, "no model with weights loaded");
    const xf_weight *w = model_find_weight(r->model, base);
    if (w) {
        if ((uint64_t)w->rows * (uint64_t)w->cols > (1ull << 28))
            return xf_err_set(err, "%s has %lld elements: too large to load whole (print a slice of rows with "
                                   "`quant`)", base, (long long)(w->rows * w->cols));
        v->ndim = w->rows == 1 ? 1 : 2;
        v->shape[0] = w->rows == 1 ? w->cols : w->rows;
        v->shape[1] = w->cols;
        v->numel = w->rows * w->cols;
        if (view_alloc(v, err) != 0)
            return -1;
        for (int64_t i = 0; i < w->rows; i++)
            if (model_weight_row(w, i, v->data + i * w->cols, err) != 0)
                return -1;
        view_name(v, w->name, "");
        const gguf_tensor *gt = gguf_find_tensor(r->model->gguf, w->name);
        snprintf(v->what, sizeof v->what, "weight %s", quant_type_name(gt ? gt->type : w->type));
        return 0;
    }
    int op = exec_tensor_find(r->ex, base, err);
    if (op < 0)
        return -1;
    const xf_op *o = &exec_program(r->ex)->ops[op];
    v->op = op;
    v->per_pass = true;
    v->ndim = o->ndim;
    memcpy(v->shape, o->shape, sizeof v->shape);
    v->numel = o->numel;
    if (view_alloc(v, err) != 0 || exec_tensor_read(r->ex, op, v->data, err) != 0)
        return -1;
    snprintf(v->name, sizeof v->name, "%s", o->name);
    const kern_variant *kv = exec_kernel_selected(r->ex, o->kind);
    snprintf(v->what, sizeof v->what, "%s:%s", kern_backend_name(exec_backend(r->ex)), kv->name);
    return 0;
}

int repl_view_load(xf_repl *r, const char *spec, repl_view *v, xf_err *err)
{
    memset(v, 0, sizeof *v);
    v->op = -1;
    if (view_load(r, spec, v, err) != 0) {
        repl_view_free(v);
        return -1;
    }
    return 0;
}

void repl_view_free(repl_view *v)
{
    free(v->data);
    v->data = NULL;
}

/* the commands' form: the error goes to the user */
static int load_view(xf_repl *r, const char *spec, repl_view *v)
{
    xf_err err = {0};
    return repl_view_load(r, spec, v, &err) == 0 ? 0 : repl_errf(r, "%s", err.msg);
}

/* splits "name[3, :8]" into name and slice text */
static void split_slice(const char *arg, char *name, size_t nsize, const char **slice)
{
    const char *b = strchr(arg, '[');
    size_t n = b ? (size_t)(b - arg) : strlen(arg);
    snprintf(name, nsize, "%.*s", (int)n, arg);
    *slice = b ? b : "";
}

/* --- commands -------------------------------------------------------------------- */

static int cmd_help(xf_repl *r, int argc, char **argv, const char *rest);

static int cmd_quit(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)argc;
    (void)argv;
    (void)rest;
    r->quit = true;
    return 0;
}

static int cmd_load(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    if (argc != 2)
        return repl_errf(r, "usage: load PATH");
    return repl_load(r, argv[1]) == 0 ? 0 : 1;
}

static const char *arch_str(const xf_model *m) { return model_arch_name(m->arch); }

static int info_breaks(xf_repl *r)
{
    if (!r->ex)
        return repl_errf(r, "no model with weights loaded");
    int n;
    const xf_break *b = exec_breaks(r->ex, &n);
    if (n == 0) {
        repl_out(r, "no breakpoints\n");
        return 0;
    }
    repl_out(r, "%-4s %-28s %-24s %s\n", "id", "pattern", "condition", "hits");
    for (int i = 0; i < n; i++) {
        char ep[256], ec[512];
        pr_escape(ep, sizeof ep, b[i].pattern, strlen(b[i].pattern));
        pr_escape(ec, sizeof ec, b[i].cond_text ? b[i].cond_text : "-", strlen(b[i].cond_text ? b[i].cond_text : "-"));
        repl_out(r, "%-4d %-28s %-24s %d\n", b[i].id, ep, ec, b[i].hits);
    }
    return 0;
}

static int cmd_info(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    if (argc >= 2 && (strcmp(argv[1], "breaks") == 0 || strcmp(argv[1], "break") == 0 || strcmp(argv[1], "b") == 0))
        return info_breaks(r);
    if (argc >= 2 && strcmp(argv[1], "model") != 0)
        return repl_errf(r, "usage: info [model|breaks]");
    xf_model *m = r->model;
    char esc[256], b1[32];
    pr_escape(esc, sizeof esc, m->name, strlen(m->name));
    repl_out(r, "model: %s\n", esc);
    pr_escape(esc, sizeof esc, m->path, strlen(m->path));
    repl_out(r, "file: %s (GGUF v%u, %llu tensors, %llu metadata keys)\n", esc, m->gguf->version,
             (unsigned long long)m->gguf->n_tensors, (unsigned long long)m->gguf->n_kv);
    if (m->tok)
        repl_out(r, "vocabulary: %d tokens, pre-tokenizer %s, bos %d, eos %d\n", tok_vocab_size(m->tok),
                 tok_pre_name(m->tok), tok_bos(m->tok), tok_eos(m->tok));
    if (m->vocab_only) {
        repl_out(r, "vocabulary only: no weights (tokenize works; run, print ... need a model)\n");
        return 0;
    }
    repl_out(r, "architecture: %s\n", arch_str(m));
    repl_out(r, "layers %d  embd %d  heads %d  kv heads %d  head dim %d  ffn %d  context %d  vocab %d\n",
             m->n_layer, m->n_embd, m->n_head, m->n_head_kv, m->head_dim, m->n_ff, m->n_ctx, m->n_vocab);
    char e[32];
    pr_num(e, sizeof e, m->eps);
    repl_out(r, "norm eps %s", e);
    if (m->arch == XF_ARCH_QWEN2) {
        pr_num(e, sizeof e, m->rope_base);
        repl_out(r, "  rope base %s", e);
    }
    repl_out(r, "  output %s\n", m->tied_output ? "tied to token_embd" : "output.weight");
    /* tensor types */
    int count[XF_TYPE_COUNT] = {0};
    uint64_t bytes[XF_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        int t = m->gguf->tensors[i].type;
        if (t >= 0 && t < XF_TYPE_COUNT) {
            count[t]++;
            bytes[t] += m->gguf->tensors[i].size;
        }
    }
    repl_out(r, "tensor types:");
    for (int t = 0; t < XF_TYPE_COUNT; t++)
        if (count[t]) {
            pr_bytes(b1, sizeof b1, (double)bytes[t]);
            repl_out(r, " %s x%d (%s)", quant_type_name(t), count[t], b1);
        }
    repl_out(r, "\n");
    pr_bytes(b1, sizeof b1, (double)m->weight_bytes);
    double cache = 2.0 * m->n_layer * (double)m->n_ctx * m->n_head_kv * m->head_dim * 4;
    char b2[32];
    pr_bytes(b2, sizeof b2, cache);
    repl_out(r, "memory: weights %s, KV cache %s (f32, %d positions)\n", b1, b2, m->n_ctx);
    if (r->ex)
        repl_out(r, "backend: %s\n", kern_backend_name(exec_backend(r->ex)));
    return 0;
}

static int cmd_tokenize(xf_repl *r, int argc, char **argv, const char *rest)
{
    if (need_tok(r))
        return 1;
    bool ids_only = false, special = true;
    /* options come first; the text is everything after them */
    while (1) {
        while (*rest == ' ')
            rest++;
        if (strncmp(rest, "--ids", 5) == 0 && (rest[5] == ' ' || rest[5] == 0)) {
            ids_only = true;
            rest += 5;
        } else if (strncmp(rest, "--no-special", 12) == 0 && (rest[12] == ' ' || rest[12] == 0)) {
            special = false;
            rest += 12;
        } else
            break;
    }
    (void)argc;
    (void)argv;
    char *text;
    size_t len;
    if (parse_text(r, rest, &text, &len))
        return 1;
    int32_t *ids;
    size_t n;
    xf_err err = {0};
    if (tok_encode(r->model->tok, text, len, special, &ids, &n, &err) != 0) {
        free(text);
        return repl_errf(r, "%s", err.msg);
    }
    free(text);
    if (ids_only) {
        for (size_t i = 0; i < n; i++)
            repl_out(r, i ? " %d" : "%d", ids[i]);
        repl_out(r, "\n");
    } else {
        repl_out(r, "%zu tokens\n", n);
        for (size_t i = 0; i < n; i++) {
            char p[256];
            piece_str(r, ids[i], p, sizeof p);
            repl_out(r, "%5zu %8d  '%s'\n", i, ids[i], p);
        }
    }
    free(ids);
    return 0;
}

static int parse_id_list(xf_repl *r, const char *s, int32_t **ids, int *n)
{
    int cap = 16, k = 0;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    if (!v)
        return repl_errf(r, "out of memory");
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX || (*end && *end != ',' && *end != ' ')) {
            free(v);
            return repl_errf(r, "--tokens: '%s' is not a list of token ids (e.g. 1,2,3)", s);
        }
        if (k == cap) {
            cap *= 2;
            int32_t *nv = realloc(v, (size_t)cap * sizeof *nv);
            if (!nv) {
                free(v);
                return repl_errf(r, "out of memory");
            }
            v = nv;
        }
        v[k++] = (int32_t)x;
        p = end;
    }
    if (k == 0) {
        free(v);
        return repl_errf(r, "--tokens: no ids given");
    }
    *ids = v;
    *n = k;
    return 0;
}

static void show_stop(xf_repl *r, xf_stop why);

static int cmd_run(xf_repl *r, int argc, char **argv, const char *rest)
{
    int32_t *ids = NULL;
    int n = 0;
    xf_err err = {0};
    while (*rest == ' ')
        rest++;
    if (argc >= 2 && strcmp(argv[1], "--tokens") == 0) {
        if (argc < 3)
            return repl_errf(r, "usage: run --tokens 1,2,3");
        char joined[4096] = "";
        for (int i = 2; i < argc; i++) {
            strncat(joined, argv[i], sizeof joined - strlen(joined) - 2);
            strcat(joined, " ");
        }
        if (parse_id_list(r, joined, &ids, &n))
            return 1;
    } else {
        if (!*rest)
            return repl_errf(r, "usage: run TEXT | run --tokens 1,2,3");
        if (need_tok(r))
            return 1;
        char *text;
        size_t len;
        if (parse_text(r, rest, &text, &len))
            return 1;
        size_t nn;
        if (tok_encode(r->model->tok, text, len, true, &ids, &nn, &err) != 0) {
            free(text);
            return repl_errf(r, "%s", err.msg);
        }
        free(text);
        n = (int)nn;
        if (n == 0) {
            free(ids);
            return repl_errf(r, "the text has no tokens");
        }
    }
    int rc = exec_begin(r->ex, ids, n, false, &err);
    free(ids);
    if (rc != 0)
        return repl_errf(r, "%s", err.msg);
    r->chatting = false;
    const xf_program *p = exec_program(r->ex);
    xf_where w;
    exec_where(r->ex, &w);
    repl_out(r, "pass %d: %d tokens at position 0, %d ops; stopped before %s\n", w.pass_no, n, p->n_ops, p->ops[0].name);
    return 0;
}

static int cmd_token(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    xf_err err = {0};
    int32_t id;
    if (argc >= 2) {
        long v;
        if (!parse_long(argv[1], 0, INT32_MAX, &v))
            return repl_errf(r, "token: '%s' is not a token id", argv[1]);
        id = (int32_t)v;
    } else {
        float *lg = malloc((size_t)r->model->n_vocab * sizeof(float));
        if (!lg)
            return repl_errf(r, "out of memory");
        if (exec_last_logits(r->ex, lg, &err) != 0) {
            free(lg);
            return repl_errf(r, "%s", err.msg);
        }
        /* greedy: the lowest id wins ties, as the sampler does */
        id = 0;
        for (int i = 1; i < r->model->n_vocab; i++)
            if (lg[i] > lg[id])
                id = i;
        free(lg);
    }
    if (exec_begin(r->ex, &id, 1, true, &err) != 0)
        return repl_errf(r, "%s", err.msg);
    xf_where w;
    exec_where(r->ex, &w);
    char p[128];
    piece_str(r, id, p, sizeof p);
    repl_out(r, "pass %d: token %d '%s' at position %d; stopped before %s\n", w.pass_no, id, p, w.pos0,
             exec_program(r->ex)->ops[0].name);
    return 0;
}

static void show_where(xf_repl *r, bool brief)
{
    xf_where w;
    exec_where(r->ex, &w);
    if (!w.active) {
        repl_out(r, "no pass (use `run`)\n");
        return;
    }
    const xf_program *p = exec_program(r->ex);
    const char *kind = w.pos0 == 0 ? "prefill" : "decode";
    if (!brief)
        repl_out(r, "pass %d (%s, %d token%s at position %d)\n", w.pass_no, kind, w.n_tokens,
                 w.n_tokens == 1 ? "" : "s", w.pos0);
    if (w.last >= 0) {
        const xf_op *o = &p->ops[w.last];
        char sh[64];
        tensor_shape_str(o->ndim, o->shape, sh, sizeof sh);
        if (o->layer >= 0)
            repl_out(r, "at op %d/%d %s (layer %d) %s\n", w.last + 1, w.n_ops, o->name, o->layer, sh);
        else
            repl_out(r, "at op %d/%d %s %s\n", w.last + 1, w.n_ops, o->name, sh);
    }
    if (w.pc < w.n_ops)
        repl_out(r, "next: %s\n", p->ops[w.pc].name);
    else
        repl_out(r, "pass complete\n");
}

static void show_stop(xf_repl *r, xf_stop why)
{
    const xf_program *p = exec_program(r->ex);
    xf_where w;
    exec_where(r->ex, &w);
    switch (why) {
    case XF_STOP_BREAK: {
        const xf_break *b = exec_last_break(r->ex);
        char ep[256];
        pr_escape(ep, sizeof ep, b ? b->pattern : "?", strlen(b ? b->pattern : "?"));
        repl_out(r, "breakpoint %d (%s) hit after %s\n", b ? b->id : 0, ep, p->ops[w.last].name);
        break;
    }
    case XF_STOP_CHECK: {
        int n;
        const xf_check_row *rows = exec_check_rows(r->ex, &n);
        const xf_check_row *c = &rows[n - 1];
        const xf_op *o = &p->ops[c->op];
        char a[32], t[32];
        pr_num(a, sizeof a, c->diff.max_abs);
        pr_num(t, sizeof t, c->diff.tol);
        repl_out(r, "check: %s (%s/%s/%s) over tolerance: max_abs %s > %s vs cpu ref\n", o->name,
                 kern_op_name(o->kind), kern_backend_name(exec_backend(r->ex)), c->variant, a, t);
        pr_diff(r, &c->diff);
        break;
    }
    case XF_STOP_INTERRUPT:
        repl_out(r, "interrupted after %s\n", w.last >= 0 ? p->ops[w.last].name : "nothing");
        break;
    case XF_STOP_HOOK:
        repl_out(r, "stopped by hook after %s\n", p->ops[w.last].name);
        break;
    case XF_STOP_END:
        repl_out(r, "pass %d complete (%d ops)\n", w.pass_no, w.n_ops);
        return;
    default:
        break;
    }
    show_where(r, true);
}

static int run_mode(xf_repl *r, xf_run_mode mode, int count)
{
    xf_stop why;
    xf_err err = {0};
    r->interrupt = 0;
    if (exec_run(r->ex, mode, count, &why, &err) != 0)
        return repl_errf(r, "%s", err.msg);
    show_stop(r, why);
    return 0;
}

static int cmd_step(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    long n = 1;
    if (argc >= 2 && !parse_long(argv[1], 1, 1000000, &n))
        return repl_errf(r, "step: '%s' is not a count >= 1", argv[1]);
    return run_mode(r, XF_RUN_STEP, (int)n);
}

static int cmd_next(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)argc;
    (void)argv;
    (void)rest;
    return run_mode(r, XF_RUN_NEXT, 0);
}

static int cmd_finish(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)argc;
    (void)argv;
    (void)rest;
    return run_mode(r, XF_RUN_FINISH, 0);
}

static int cmd_continue(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)argc;
    (void)argv;
    (void)rest;
    return run_mode(r, XF_RUN_CONTINUE, 0);
}

static int cmd_where(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)argc;
    (void)argv;
    (void)rest;
    show_where(r, false);
    return 0;
}

static int cmd_list(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    xf_where w;
    exec_where(r->ex, &w);
    const xf_program *p = exec_program(r->ex);
    long around = 5;
    bool all = false;
    if (argc >= 2 && strcmp(argv[1], "all") == 0)
        all = true;
    else if (argc >= 2 && !parse_long(argv[1], 1, 100000, &around))
        return repl_errf(r, "usage: list [N|all]");
    int lo = all ? 0 : w.pc - (int)around, hi = all ? p->n_ops : w.pc + (int)around + 1;
    if (lo < 0)
        lo = 0;
    if (hi > p->n_ops)
        hi = p->n_ops;
    for (int i = lo; i < hi; i++) {
        const xf_op *o = &p->ops[i];
        char sh[64];
        tensor_shape_str(o->ndim, o->shape, sh, sizeof sh);
        const kern_variant *v = exec_kernel_selected(r->ex, o->kind);
        const char *mark = i == w.pc ? "=>" : (exec_tensor_ready(r->ex, i) ? " *" : "  ");
        repl_out(r, "%s %4d %-20s %-8s %-18s %s:%s\n", mark, i, o->name, kern_op_name(o->kind), sh,
                 kern_backend_name(v->backend), v->name);
    }
    return 0;
}


static int cmd_break(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    if (argc < 2)
        return repl_errf(r, "usage: break PATTERN [if COND]");
    const char *cond = NULL;
    char condbuf[512] = "";
    if (argc >= 3) {
        if (strcmp(argv[2], "if") != 0 || argc < 4)
            return repl_errf(r, "usage: break PATTERN [if COND]");
        for (int i = 3; i < argc; i++) {
            strncat(condbuf, argv[i], sizeof condbuf - strlen(condbuf) - 2);
            if (i + 1 < argc)
                strcat(condbuf, " ");
        }
        cond = condbuf;
    }
    xf_err err = {0};
    xf_cond_fn fn = NULL;
    void *ud = NULL;
    void (*ud_free)(void *) = NULL;
    /* not a built-in condition: try it as a Lua expression */
    int id = exec_break_add(r->ex, argv[1], cond, NULL, NULL, NULL, &err);
    if (id < 0 && cond && strstr(err.msg, "unknown condition") && repl_lua_cond) {
        char why[256] = "";
        fn = repl_lua_cond(r, cond, &ud, &ud_free, why, sizeof why);
        if (!fn)
            return repl_errf(r, "condition '%s': %s", cond, why);
        id = exec_break_add(r->ex, argv[1], cond, fn, ud, ud_free, &err);
        if (id < 0 && ud_free)
            ud_free(ud);
    }
    if (id < 0)
        return repl_errf(r, "%s", err.msg);
    char ep[256], ec[512];
    pr_escape(ep, sizeof ep, argv[1], strlen(argv[1]));
    pr_escape(ec, sizeof ec, cond ? cond : "", cond ? strlen(cond) : 0);
    repl_out(r, "breakpoint %d: %s%s%s\n", id, ep, cond ? " if " : "", ec);
    return 0;
}

static int cmd_delete(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    xf_err err = {0};
    long id = -1;
    if (argc >= 2 && !parse_long(argv[1], 1, INT_MAX, &id))
        return repl_errf(r, "delete: '%s' is not a breakpoint number", argv[1]);
    if (exec_break_delete(r->ex, (int)id, &err) != 0)
        return repl_errf(r, "%s", err.msg);
    if (id < 0)
        repl_out(r, "all breakpoints deleted\n");
    else
        repl_out(r, "breakpoint %ld deleted\n", id);
    return 0;
}

/* A plain activation name of this pass (no @, not a weight): its metadata
 * in v (no data), or false to take the general path. */
static bool activation_view(xf_repl *r, const char *name, repl_view *v)
{
    memset(v, 0, sizeof *v);
    v->op = -1;
    if (strchr(name, '@') || !r->ex || (r->model && model_find_weight(r->model, name)))
        return false;
    xf_err err = {0};
    int op = exec_tensor_find(r->ex, name, &err);
    if (op < 0 || !exec_tensor_ready(r->ex, op))
        return false; /* the general path says why */
    const xf_op *o = &exec_program(r->ex)->ops[op];
    v->op = op;
    v->per_pass = true;
    v->ndim = o->ndim;
    memcpy(v->shape, o->shape, sizeof v->shape);
    v->numel = o->numel;
    snprintf(v->name, sizeof v->name, "%s", o->name);
    snprintf(v->what, sizeof v->what, "%s:%s", kern_backend_name(exec_backend(r->ex)),
             exec_kernel_selected(r->ex, o->kind)->name);
    return true;
}

static int cmd_print(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    const char *arg = NULL;
    long n = 8;
    bool raw = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--raw") == 0)
            raw = true;
        else if (strcmp(argv[i], "-n") == 0) {
            if (i + 1 >= argc || !parse_long(argv[i + 1], 0, 100000000, &n))
                return repl_errf(r, "print: -n needs a count");
            i++;
        } else if (!arg)
            arg = argv[i];
        else
            return repl_errf(r, "usage: print NAME[SLICE] [-n N] [--raw]");
    }
    if (!arg)
        return repl_errf(r, "usage: print NAME[SLICE] [-n N] [--raw]");
    char name[160];
    const char *slice;
    split_slice(arg, name, sizeof name, &slice);
    xf_slice sl;
    xf_err err = {0};
    if (tensor_slice_parse(slice, &sl, &err) != 0)
        return repl_errf(r, "%s", err.msg);
    /* an activation of this pass is read where it lives: only the values shown
     * cross from the device, and its stats are reduced there */
    repl_view v;
    bool act = activation_view(r, name, &v);
    if (!act && load_view(r, name, &v))
        return 1;
    xf_selection sel;
    if (tensor_slice_resolve(&sl, v.ndim, v.shape, &sel, &err) != 0) {
        free(v.data);
        return repl_errf(r, "%s: %s", v.name, err.msg);
    }
    int64_t show = n < sel.count ? n : sel.count;
    int64_t need = (!raw && *slice) ? sel.count : show; /* a slice's stats need all of it */
    float *vals = malloc((size_t)(need ? need : 1) * sizeof(float));
    int64_t *idx = malloc((size_t)(need ? need : 1) * sizeof(int64_t));
    if (!vals || !idx) {
        free(vals);
        free(idx);
        free(v.data);
        return repl_errf(r, "out of memory");
    }
    for (int64_t k = 0; k < need; k++)
        idx[k] = tensor_selection_index(&sel, k);
    int rc = 0;
    if (act)
        rc = exec_tensor_gather(r->ex, v.op, idx, need, vals, &err);
    else
        for (int64_t k = 0; k < need; k++)
            vals[k] = v.data[idx[k]];
    xf_stats st;
    if (rc == 0 && !raw) {
        if (act && !*slice)
            rc = exec_tensor_stats(r->ex, v.op, &st, &err);
        else
            tensor_stats(vals, (size_t)need, &st);
    }
    free(idx);
    if (rc != 0) {
        free(vals);
        return repl_errf(r, "%s", err.msg);
    }
    if (raw) {
        pr_values(r, vals, show, true);
    } else {
        char sh[64], ssh[64];
        tensor_shape_str(v.ndim, v.shape, sh, sizeof sh);
        tensor_shape_str(sel.out_ndim, sel.out_shape, ssh, sizeof ssh);
        if (*slice)
            repl_out(r, "%s%s %s of %s f32 %s\n", v.name, slice, ssh, sh, v.what);
        else
            repl_out(r, "%s %s f32 %s\n", v.name, sh, v.what);
        pr_stats_line(r, &st);
        if (show < sel.count)
            repl_out(r, "  first %lld of %lld:\n", (long long)show, (long long)sel.count);
        pr_values(r, vals, show, false);
    }
    free(vals);
    free(v.data);
    return 0;
}

static int cmd_stats(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    if (argc != 2)
        return repl_errf(r, "usage: stats NAME");
    repl_view v;
    xf_stats s;
    xf_err err = {0};
    if (activation_view(r, argv[1], &v)) {
        if (exec_tensor_stats(r->ex, v.op, &s, &err) != 0)
            return repl_errf(r, "%s", err.msg);
    } else {
        if (load_view(r, argv[1], &v))
            return 1;
        tensor_stats(v.data, (size_t)v.numel, &s);
    }
    char sh[64];
    tensor_shape_str(v.ndim, v.shape, sh, sizeof sh);
    repl_out(r, "%s %s f32 %s\n", v.name, sh, v.what);
    pr_stats_line(r, &s);
    free(v.data);
    return 0;
}

static int cmd_diff(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    long n = 8;
    const char *a = NULL, *b = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0) {
            if (i + 1 >= argc || !parse_long(argv[i + 1], 0, 1000000, &n))
                return repl_errf(r, "diff: -n needs a count");
            i++;
        } else if (!a)
            a = argv[i];
        else if (!b)
            b = argv[i];
        else
            return repl_errf(r, "usage: diff A B [-n N]");
    }
    if (!a || !b)
        return repl_errf(r, "usage: diff A B [-n N]   (B may be NAME@ref)");
    repl_view va, vb;
    if (load_view(r, a, &va))
        return 1;
    if (load_view(r, b, &vb)) {
        free(va.data);
        return 1;
    }
    int rc = 0;
    if (va.numel != vb.numel) {
        char s1[64], s2[64];
        tensor_shape_str(va.ndim, va.shape, s1, sizeof s1);
        tensor_shape_str(vb.ndim, vb.shape, s2, sizeof s2);
        rc = repl_errf(r, "diff: %s %s and %s %s differ in size", va.name, s1, vb.name, s2);
    } else {
        xf_diff d;
        double tol = va.op >= 0 ? exec_tolerance(exec_program(r->ex)->ops[va.op].kind) : 1e-4;
        tensor_diff_rel(va.data, vb.data, (size_t)va.numel, tol, &d);
        char sh[64];
        tensor_shape_str(va.ndim, va.shape, sh, sizeof sh);
        repl_out(r, "diff %s vs %s %s (tolerance %g x max|B|)\n", va.name, vb.name, sh, tol);
        pr_diff(r, &d);
        if (va.ndim == 2 && strcmp(va.name, "logits") == 0)
            repl_out(r, "  top-1 agreement %.0f%%\n",
                     100 * tensor_top1_agree(va.data, vb.data, (size_t)va.shape[0], (size_t)va.shape[1]));
        int64_t start = d.first_over >= 0 ? d.first_over : 0;
        int64_t end = start + n < va.numel ? start + n : va.numel;
        if (end > start)
            repl_out(r, "  %-10s %-14s %-14s %s\n", "index", "A", "B", "|A-B|");
        for (int64_t i = start; i < end; i++) {
            char x[32], y[32], z[32];
            pr_num(x, sizeof x, va.data[i]);
            pr_num(y, sizeof y, vb.data[i]);
            pr_num(z, sizeof z, fabs((double)va.data[i] - (double)vb.data[i]));
            repl_out(r, "  %-10lld %-14s %-14s %s\n", (long long)i, x, y, z);
        }
    }
    free(va.data);
    free(vb.data);
    return rc;
}

static int cmd_topk(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    long k = 10;
    const char *name = NULL;
    for (int i = 1; i < argc; i++) {
        long v;
        if (parse_long(argv[i], 1, 1000, &v))
            k = v;
        else if (!name)
            name = argv[i];
        else
            return repl_errf(r, "usage: topk [K] [NAME]");
    }
    int V = r->model->n_vocab;
    float *lg = malloc((size_t)V * sizeof(float));
    if (!lg)
        return repl_errf(r, "out of memory");
    xf_err err = {0};
    const char *label = "logits";
    if (!name || strcmp(name, "logits") == 0) {
        if (exec_last_logits(r->ex, lg, &err) != 0) {
            free(lg);
            return repl_errf(r, "%s", err.msg);
        }
    } else {
        /* logit lens: final norm then unembedding of the last row of a residual */
        repl_view v;
        if (load_view(r, name, &v)) {
            free(lg);
            return 1;
        }
        int D = r->model->n_embd;
        if (v.numel % D != 0 || v.shape[v.ndim - 1] != D) {
            free(v.data);
            free(lg);
            return repl_errf(r, "topk: %s is not a residual of width %d", v.name, D);
        }
        const float *row = v.data + (v.numel / D - 1) * D;
        float *h = malloc((size_t)D * sizeof(float));
        kern_args a = {0};
        a.x = row;
        a.y = h;
        a.n = 1;
        a.k = D;
        a.w = r->model->out_norm->data;
        a.b = r->model->out_norm_b ? r->model->out_norm_b->data : NULL;
        a.eps = r->model->eps;
        kern_ctx c = {.n_threads = 1};
        const kern_variant *nv =
            kern_find(r->model->arch == XF_ARCH_GPT2 ? KERN_OP_NORM : KERN_OP_RMSNORM, KERN_BACKEND_CPU, "ref");
        const kern_variant *mv = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "ref");
        int bad = !h || nv->fn(&c, &a) != 0;
        if (!bad) {
            kern_args b = {0};
            b.x = h;
            b.y = lg;
            b.n = 1;
            b.k = D;
            b.m = V;
            b.w = r->model->output->data;
            b.w_type = r->model->output->type;
            bad = mv->fn(&c, &b) != 0;
        }
        free(h);
        free(v.data);
        if (bad) {
            free(lg);
            return repl_errf(r, "topk: logit lens failed");
        }
        label = "logit lens";
    }
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++)
        if (lg[i] > mx)
            mx = lg[i];
    for (int i = 0; i < V; i++)
        sum += exp((double)lg[i] - mx);
    repl_out(r, "top %ld tokens (%s%s%s):\n", k, label, name ? " of " : "", name ? name : "");
    bool *used = calloc((size_t)V, 1);
    for (long j = 0; j < k && j < V && used; j++) {
        int best = -1;
        for (int i = 0; i < V; i++)
            if (!used[i] && (best < 0 || lg[i] > lg[best]))
                best = i;
        used[best] = 1;
        char p[128], l[32], pp[32];
        piece_str(r, best, p, sizeof p);
        pr_num(l, sizeof l, lg[best]);
        pr_num(pp, sizeof pp, exp((double)lg[best] - mx) / sum);
        repl_out(r, "  %2ld %8d %-20s logit %-10s p %s\n", j + 1, best, p, l, pp);
    }
    free(used);
    free(lg);
    return 0;
}

static int cmd_kernel(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    xf_err err = {0};
    if (argc == 3) {
        int op = strcmp(argv[1], "all") == 0 ? -1 : kern_op_from_name(argv[1]);
        if (op < 0 && strcmp(argv[1], "all") != 0)
            return repl_errf(r, "kernel: unknown op kind '%s' (see `kernel`)", argv[1]);
        if (exec_kernel_select(r->ex, op, argv[2], &err) != 0)
            return repl_errf(r, "%s", err.msg);
        repl_out(r, "%s -> %s\n", argv[1], argv[2]);
        return 0;
    }
    if (argc != 1)
        return repl_errf(r, "usage: kernel [OP VARIANT] | kernel all VARIANT");
    const kern_variant *vs[256];
    int n = exec_variants(r->ex, vs, 256);
    repl_out(r, "%-9s %-7s %-30s %s\n", "op", "backend", "variants (* selected)", "");
    for (int op = 0; op < KERN_OP_COUNT; op++) {
        char line[256] = "";
        const kern_variant *sel = exec_kernel_selected(r->ex, (kern_op)op);
        for (int i = 0; i < n && i < 256; i++)
            if (vs[i]->op == (kern_op)op) {
                strncat(line, vs[i] == sel ? "*" : " ", sizeof line - strlen(line) - 1);
                strncat(line, vs[i]->name, sizeof line - strlen(line) - 1);
                strncat(line, " ", sizeof line - strlen(line) - 1);
            }
        repl_out(r, "%-9s %-7s %s\n", kern_op_name((kern_op)op), kern_backend_name(exec_backend(r->ex)), line);
    }
    return 0;
}

static void show_check_table(xf_repl *r, bool only_over)
{
    int n;
    const xf_check_row *rows = exec_check_rows(r->ex, &n);
    const xf_program *p = exec_program(r->ex);
    if (n == 0) {
        repl_out(r, "no ops checked in this pass (check on, then step or continue)\n");
        return;
    }
    repl_out(r, "%-20s %-8s %-10s %-12s %-12s %-12s %s\n", "op", "kind", "variant", "max_abs", "nmse", "cosine",
             "status");
    int first = -1;
    for (int i = 0; i < n; i++)
        if (rows[i].over) {
            first = i;
            break;
        }
    for (int i = 0; i < n; i++) {
        if (only_over && !rows[i].over)
            continue;
        const xf_op *o = &p->ops[rows[i].op];
        char a[32], b[32], c[32];
        pr_num(a, sizeof a, rows[i].diff.max_abs);
        pr_num(b, sizeof b, rows[i].diff.nmse);
        pr_num(c, sizeof c, rows[i].diff.cosine);
        repl_out(r, "%-20s %-8s %-10s %-12s %-12s %-12s %s\n", o->name, kern_op_name(o->kind), rows[i].variant, a,
                 b, c, rows[i].over ? (i == first ? "OVER <- first" : "OVER") : "ok");
    }
    if (first >= 0) {
        const xf_op *o = &p->ops[rows[first].op];
        repl_out(r, "first op over tolerance: %s (kernel %s/%s/%s)\n", o->name, kern_op_name(o->kind),
                 kern_backend_name(exec_backend(r->ex)), rows[first].variant);
    } else
        repl_out(r, "%d ops checked, none over tolerance\n", n);
}

static int cmd_check(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    if (argc == 1 || strcmp(argv[1], "pass") == 0 || strcmp(argv[1], "table") == 0) {
        show_check_table(r, false);
        return 0;
    }
    if (argc != 2)
        return repl_errf(r, "usage: check [on|off|break|pass]");
    if (strcmp(argv[1], "on") == 0)
        exec_check_set(r->ex, XF_CHECK_ON);
    else if (strcmp(argv[1], "off") == 0)
        exec_check_set(r->ex, XF_CHECK_OFF);
    else if (strcmp(argv[1], "break") == 0)
        exec_check_set(r->ex, XF_CHECK_BREAK);
    else
        return repl_errf(r, "usage: check [on|off|break|pass]");
    repl_out(r, "check %s\n", argv[1]);
    return 0;
}

int repl_generate(xf_repl *r, const xf_gen_opts *o, int32_t **ids_out, int *n_out)
{
    xf_err err = {0};
    samp_params sp = {.temperature = o->temp, .top_k = o->top_k, .top_p = o->top_p, .seed = o->seed};
    xf_sampler *s = samp_new(&sp, &err);
    if (!s)
        return repl_errf(r, "generate: %s", err.msg);
    int V = r->model->n_vocab;
    float *lg = malloc((size_t)V * sizeof(float));
    int32_t *ids = malloc((size_t)(o->n > 0 ? o->n : 1) * sizeof(int32_t));
    tok_stream *ts = r->model->tok && !o->ids ? tok_stream_new(r->model->tok, &err) : NULL;
    int rc = 0, k = 0;
    if (!lg || !ids || (r->model->tok && !o->ids && !ts)) {
        rc = repl_errf(r, "generate: out of memory");
        goto out;
    }
    r->interrupt = 0;
    /* finish the pass in flight: its logits pick the first token */
    xf_where w;
    exec_where(r->ex, &w);
    if (!w.active) {
        rc = repl_errf(r, "generate: no pass yet (run a prompt first)");
        goto out;
    }
    if (w.pc < w.n_ops) {
        xf_stop why;
        if (exec_run(r->ex, XF_RUN_CONTINUE, 0, &why, &err) != 0) {
            rc = repl_errf(r, "%s", err.msg);
            goto out;
        }
        if (why != XF_STOP_END) {
            show_stop(r, why);
            goto out;
        }
    }
    for (k = 0; k < o->n; k++) {
        if (exec_last_logits(r->ex, lg, &err) != 0) {
            rc = repl_errf(r, "%s", err.msg);
            break;
        }
        int32_t id = samp_sample(s, lg, V, &err);
        if (id < 0) {
            rc = repl_errf(r, "generate: %s", err.msg);
            break;
        }
        ids[k] = id;
        /* end of generation: stop before feeding it, so a chat can append its next turn */
        if (!o->ignore_eos && r->model->tok && tok_is_eog(r->model->tok, id)) {
            k++;
            if (!o->quiet && !o->ids)
                repl_out(r, "\n[end of generation]");
            else if (!o->quiet)
                repl_out(r, k > 1 ? " %d" : "%d", id);
            break;
        }
        if (!o->quiet) {
            if (o->ids)
                repl_out(r, k ? " %d" : "%d", id);
            else if (ts) {
                const char *txt;
                size_t len;
                bool repl_char = false;
                if (tok_stream_push(ts, id, &txt, &len, &repl_char, &err) != 0) {
                    rc = repl_errf(r, "generate: %s", err.msg);
                    k++;
                    break;
                }
                if (len) {
                    char esc[1024];
                    /* the model's text may hold control bytes: escape them, keep newlines */
                    size_t st = 0;
                    for (size_t i = 0; i <= len; i++)
                        if (i == len || txt[i] == '\n') {
                            tok_escape(txt + st, i - st, esc, sizeof esc);
                            repl_out(r, "%s%s", esc, i < len ? "\n" : "");
                            st = i + 1;
                        }
                }
            }
        }
        xf_where wn;
        exec_where(r->ex, &wn);
        if (wn.n_past >= r->model->n_ctx) {
            k++;
            if (!o->quiet)
                repl_out(r, "\n[context full at %d tokens]", r->model->n_ctx);
            break;
        }
        if (exec_begin(r->ex, &id, 1, true, &err) != 0) {
            rc = repl_errf(r, "%s", err.msg);
            k++;
            break;
        }
        xf_stop why;
        if (exec_run(r->ex, XF_RUN_CONTINUE, 0, &why, &err) != 0) {
            rc = repl_errf(r, "%s", err.msg);
            k++;
            break;
        }
        if (why != XF_STOP_END) {
            k++;
            if (!o->quiet)
                repl_out(r, "\n");
            show_stop(r, why);
            break;
        }
    }
    if (ts) {
        const char *txt;
        size_t len;
        bool rep = false;
        if (tok_stream_flush(ts, &txt, &len, &rep, &err) != 0) {
            if (rc == 0)
                rc = repl_errf(r, "generate: %s", err.msg);
        } else if (len && !o->quiet) {
            char esc[64];
            tok_escape(txt, len, esc, sizeof esc);
            repl_out(r, "%s%s", esc, rep ? " [invalid UTF-8 from the model]" : "");
        }
    }
    if (!o->quiet && o->n > 0)
        repl_out(r, "\n");
out:
    if (ts)
        tok_stream_free(ts);
    samp_free(s);
    free(lg);
    if (ids_out && rc == 0) {
        *ids_out = ids;
        *n_out = k;
    } else
        free(ids);
    return rc;
}

static int cmd_generate(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    xf_gen_opts o = {.n = -1, .temp = 0, .top_k = 0, .top_p = 1, .seed = 0};
    for (int i = 1; i < argc; i++) {
        double d;
        long l;
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (strcmp(a, "--ids") == 0)
            o.ids = true;
        else if (strcmp(a, "--ignore-eos") == 0)
            o.ignore_eos = true;
        else if (strcmp(a, "--temp") == 0 && has && parse_double(argv[i + 1], &d) && d >= 0) {
            o.temp = (float)d;
            i++;
        } else if (strcmp(a, "--top-k") == 0 && has && parse_long(argv[i + 1], 0, 1 << 24, &l)) {
            o.top_k = (int)l;
            i++;
        } else if (strcmp(a, "--top-p") == 0 && has && parse_double(argv[i + 1], &d) && d > 0 && d <= 1) {
            o.top_p = (float)d;
            i++;
        } else if (strcmp(a, "--seed") == 0 && has && parse_long(argv[i + 1], 0, LONG_MAX, &l)) {
            o.seed = (unsigned long long)l;
            i++;
        } else if (o.n < 0 && parse_long(a, 0, 1 << 20, &l))
            o.n = (int)l;
        else
            return repl_errf(r, "generate: bad argument '%s' (usage: generate N [--temp T] [--top-k K] "
                                "[--top-p P] [--seed S] [--ids] [--ignore-eos])", a);
    }
    if (o.n < 0)
        return repl_errf(r, "usage: generate N [--temp T] [--top-k K] [--top-p P] [--seed S] [--ids]");
    return repl_generate(r, &o, NULL, NULL);
}

static int cmd_chat(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)argc;
    (void)argv;
    if (need_tok(r))
        return 1;
    long n = 256;
    const char *sys = NULL;
    char *sysbuf = NULL;
    bool fresh = false;
    xf_gen_opts o = {.n = 256, .top_p = 1};
    /* options, then the message */
    for (;;) {
        while (*rest == ' ')
            rest++;
        if (strncmp(rest, "-n ", 3) == 0) {
            char *end;
            n = strtol(rest + 3, &end, 10);
            if (end == rest + 3 || n < 1 || n > 100000)
                return repl_errf(r, "chat: -n takes a token count");
            rest = end;
        } else if (strncmp(rest, "--new ", 6) == 0) {
            fresh = true;
            rest += 6;
        } else if (strncmp(rest, "--temp ", 7) == 0) {
            char *end;
            o.temp = strtof(rest + 7, &end);
            if (end == rest + 7 || !(o.temp >= 0))
                return repl_errf(r, "chat: --temp takes a number >= 0");
            rest = end;
        } else if (strncmp(rest, "--seed ", 7) == 0) {
            char *end;
            o.seed = strtoull(rest + 7, &end, 10);
            if (end == rest + 7)
                return repl_errf(r, "chat: --seed takes a number");
            rest = end;
        } else if (strncmp(rest, "--system ", 9) == 0) {
            size_t len;
            const char *p = rest + 9;
            while (*p == ' ')
                p++;
            if (*p != '"')
                return repl_errf(r, "chat: --system takes a \"quoted\" text");
            const char *q = p + 1;
            while (*q && !(*q == '"' && q[-1] != '\\'))
                q++;
            if (!*q)
                return repl_errf(r, "chat: --system: missing closing quote");
            char *tmp = strndup(p, (size_t)(q - p + 1));
            free(sysbuf);
            sysbuf = NULL;
            int bad = !tmp || parse_text(r, tmp, &sysbuf, &len);
            free(tmp);
            if (bad)
                return 1;
            sys = sysbuf;
            rest = q + 1;
        } else
            break;
    }
    char *msg;
    size_t len;
    if (!*rest) {
        free(sysbuf);
        return repl_errf(r, "usage: chat [--new] [--system \"TEXT\"] [-n N] [--temp T] [--seed S] MESSAGE");
    }
    if (parse_text(r, rest, &msg, &len)) {
        free(sysbuf);
        return 1;
    }
    xf_err err = {0};
    xf_where w;
    exec_where(r->ex, &w);
    bool cont = r->chatting && !fresh && w.active && w.pc == w.n_ops && !sys;
    tok_chat_msg msgs[2];
    size_t nm = 0;
    if (sys)
        msgs[nm++] = (tok_chat_msg){"system", sys};
    msgs[nm++] = (tok_chat_msg){"user", msg};
    char *prompt = NULL;
    int rc = 0;
    if (cont) {
        /* a later turn: close the assistant's turn, then only the new user turn */
        const char *tpl = "<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n";
        size_t sz = strlen(tpl) + len + 1;
        prompt = malloc(sz);
        if (prompt)
            snprintf(prompt, sz, tpl, msg);
    } else if (tok_chat_format(r->model->tok, msgs, nm, true, &prompt, &err) != 0) {
        rc = repl_errf(r, "chat: %s", err.msg);
    }
    free(msg);
    free(sysbuf);
    if (rc)
        return rc;
    if (!prompt)
        return repl_errf(r, "out of memory");
    int32_t *ids;
    size_t nid;
    if (tok_encode(r->model->tok, prompt, strlen(prompt), true, &ids, &nid, &err) != 0) {
        free(prompt);
        return repl_errf(r, "chat: %s", err.msg);
    }
    free(prompt);
    rc = exec_begin(r->ex, ids, (int)nid, cont, &err);
    free(ids);
    if (rc != 0)
        return repl_errf(r, "chat: %s", err.msg);
    r->chatting = true;
    o.n = (int)n;
    return repl_generate(r, &o, NULL, NULL);
}

static int cmd_dump(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    if (argc < 3)
        return repl_errf(r, "usage: dump NAMES|all FILE.safetensors");
    const char *path = argv[argc - 1];
    const xf_program *p = exec_program(r->ex);
    xf_err err = {0};
    refdump_writer *w = refdump_writer_new();
    if (!w)
        return repl_errf(r, "out of memory");
    int rc = 0, count = 0;
    bool all = argc == 3 && strcmp(argv[1], "all") == 0;
    for (int i = 0; i < p->n_ops && rc == 0; i++) {
        bool want = all;
        for (int a = 1; a < argc - 1 && !want; a++)
            want = program_glob_match(argv[a], p->ops[i].name);
        if (!want)
            continue;
        if (!exec_tensor_ready(r->ex, i)) {
            if (all)
                continue;
            rc = repl_errf(r, "dump: %s is not computed yet in this pass", p->ops[i].name);
            break;
        }
        const xf_op *o = &p->ops[i];
        float *h = malloc((size_t)o->numel * sizeof(float));
        if (!h) {
            rc = repl_errf(r, "out of memory");
            break;
        }
        if (exec_tensor_read(r->ex, i, h, &err) != 0 ||
            refdump_writer_add(w, o->name, REFDUMP_F32, o->ndim, o->shape, h, &err) != 0)
            rc = repl_errf(r, "dump: %s", err.msg);
        free(h);
        count++;
    }
    if (rc == 0 && count == 0)
        rc = repl_errf(r, "dump: no computed tensor matches");
    if (rc == 0) {
        int nt;
        const int32_t *tk = exec_tokens(r->ex, &nt);
        int64_t sh[1] = {nt};
        if (refdump_writer_add(w, "prompt.tokens", REFDUMP_I32, 1, sh, tk, &err) != 0 ||
            refdump_writer_meta(w, "producer", "xfdb", &err) != 0 || refdump_writer_save(w, path, &err) != 0)
            rc = repl_errf(r, "dump: %s", err.msg);
        else {
            char esc[512];
            pr_escape(esc, sizeof esc, path, strlen(path));
            repl_out(r, "wrote %d tensors and prompt.tokens to %s\n", count, esc);
        }
    }
    refdump_writer_free(w);
    return rc;
}

static int cmd_ref(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    if (argc != 3 || strcmp(argv[1], "load") != 0)
        return repl_errf(r, "usage: ref load FILE.safetensors");
    xf_err err = {0};
    if (exec_ref_load(r->ex, argv[2], &err) != 0)
        return repl_errf(r, "%s", err.msg);
    char esc[512];
    pr_escape(esc, sizeof esc, argv[2], strlen(argv[2]));
    repl_out(r, "reference %s: %zu tensors\n", esc, refdump_count(exec_ref(r->ex)));
    return 0;
}

static int cmd_compare(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    if (argc > 2 || (argc == 2 && strcmp(argv[1], "@ref") != 0))
        return repl_errf(r, "usage: compare [@ref]");
    const refdump *ref = exec_ref(r->ex);
    if (!ref)
        return repl_errf(r, "no reference loaded: `ref load FILE.safetensors`");
    const xf_program *p = exec_program(r->ex);
    xf_err err = {0};
    int first = -1, compared = 0;
    repl_out(r, "%-20s %-12s %-12s %-12s %-10s %s\n", "tensor", "max_abs", "tol", "nmse", "cosine", "status");
    for (int i = 0; i < p->n_ops; i++) {
        const xf_op *o = &p->ops[i];
        const refdump_tensor *t = refdump_find(ref, o->name);
        if (!t || !exec_tensor_ready(r->ex, i))
            continue;
        if (refdump_numel(t) != o->numel) {
            repl_out(r, "%-20s shape differs from the reference (%lld vs %lld elements)\n", o->name,
                     (long long)o->numel, (long long)refdump_numel(t));
            if (first < 0)
                first = i;
            continue;
        }
        float *a = malloc((size_t)o->numel * sizeof(float)), *b = malloc((size_t)o->numel * sizeof(float));
        if (!a || !b || exec_tensor_read(r->ex, i, a, &err) != 0 || refdump_read_f32(ref, t, b, &err) != 0) {
            free(a);
            free(b);
            return repl_errf(r, "compare: %s", a && b ? err.msg : "out of memory");
        }
        xf_diff d;
        tensor_diff_rel(a, b, (size_t)o->numel, exec_tolerance(o->kind), &d);
        free(a);
        free(b);
        compared++;
        bool over = d.n_over > 0;
        if (over && first < 0)
            first = i;
        char x[32], y[32], z[32], c[32];
        pr_num(x, sizeof x, d.max_abs);
        pr_num(y, sizeof y, d.tol);
        pr_num(z, sizeof z, d.nmse);
        pr_num(c, sizeof c, d.cosine);
        repl_out(r, "%-20s %-12s %-12s %-12s %-10s %s\n", o->name, x, y, z, c,
                 over ? (first == i ? "OVER <- first" : "OVER") : "ok");
    }
    if (compared == 0)
        return repl_errf(r, "compare: no computed tensor of this pass is in the reference");
    if (first >= 0)
        repl_out(r, "first tensor over tolerance: %s\n", p->ops[first].name);
    else
        repl_out(r, "%d tensors compared, all within tolerance\n", compared);
    return 0;
}

static int cmd_profile(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)argc;
    (void)argv;
    (void)rest;
    xf_where w;
    exec_where(r->ex, &w);
    if (!w.active)
        return repl_errf(r, "profile: no pass (run a prompt first)");
    /* re-run the current pass from its first op with a sync after every op */
    int n;
    const int32_t *tk0 = exec_tokens(r->ex, &n);
    int32_t *tk = malloc((size_t)n * sizeof *tk);
    if (!tk)
        return repl_errf(r, "out of memory");
    memcpy(tk, tk0, (size_t)n * sizeof *tk);
    xf_err err = {0};
    bool decode = w.pos0 > 0;
    int rc = 0;
    if (decode && w.pc == w.n_ops) {
        free(tk);
        return repl_errf(r, "profile: run it on a pass that has not finished (e.g. right after `token`)");
    }
    if (!decode && exec_begin(r->ex, tk, n, false, &err) != 0) {
        free(tk);
        return repl_errf(r, "%s", err.msg);
    }
    free(tk);
    exec_set_timing(r->ex, true);
    xf_stop why;
    rc = exec_run(r->ex, XF_RUN_FINISH, 0, &why, &err);
    exec_set_timing(r->ex, false);
    if (rc != 0)
        return repl_errf(r, "%s", err.msg);
    const xf_program *p = exec_program(r->ex);
    const double *ms = exec_op_ms(r->ex);
    double by_kind[KERN_OP_COUNT] = {0}, total = 0;
    for (int i = 0; i < p->n_ops; i++) {
        by_kind[p->ops[i].kind] += ms[i];
        total += ms[i];
    }
    repl_out(r, "%-9s %-8s %-10s %s\n", "op kind", "variant", "ms", "share");
    for (int k = 0; k < KERN_OP_COUNT; k++) {
        if (by_kind[k] == 0)
            continue;
        char a[32];
        pr_num(a, sizeof a, by_kind[k]);
        repl_out(r, "%-9s %-8s %-10s %.1f%%\n", kern_op_name((kern_op)k),
                 exec_kernel_selected(r->ex, (kern_op)k)->name, a, 100 * by_kind[k] / (total > 0 ? total : 1));
    }
    char t[32];
    pr_num(t, sizeof t, total);
    repl_out(r, "total %s ms for %d ops, %d tokens (%s; timings vary: not for recordings)\n", t, p->n_ops, w.n_tokens,
             exec_backend(r->ex) == KERN_BACKEND_CUDA ? "CUDA events around each op, no sync between ops"
                                                     : "wall clock per op");
    return 0;
}


static int cmd_quant(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    long row = 0, blk = 0;
    if (argc < 3 || argc > 4 || !parse_long(argv[2], 0, LONG_MAX, &row) ||
        (argc == 4 && !parse_long(argv[3], 0, LONG_MAX, &blk)))
        return repl_errf(r, "usage: quant WEIGHT ROW [BLOCK]");
    const xf_weight *w = model_find_weight(r->model, argv[1]);
    if (!w)
        return repl_errf(r, "quant: no weight named '%s' (GGUF names, e.g. blk.0.attn_q.weight)", argv[1]);
    const gguf_tensor *gt = gguf_find_tensor(r->model->gguf, w->name);
    int type = gt->type; /* the file's type: vectors were converted to f32 at load */
    const quant_type_info *qi = quant_type_get(type);
    if (row >= w->rows)
        return repl_errf(r, "quant: row %ld out of range [0, %lld)", row, (long long)w->rows);
    int64_t nblk = w->cols / qi->block_elems;
    if (blk >= nblk)
        return repl_errf(r, "quant: block %ld out of range [0, %lld)", blk, (long long)nblk);
    uint64_t rb;
    quant_row_bytes(type, w->cols, &rb);
    const uint8_t *b = (const uint8_t *)gt->data + (uint64_t)row * rb + (uint64_t)blk * (uint64_t)qi->block_bytes;
    char wn[160];
    pr_escape(wn, sizeof wn, w->name, strlen(w->name));
    repl_out(r, "%s row %ld block %ld of %lld: %s, %d elements in %d bytes at file byte %llu\n", wn, row, blk,
             (long long)nblk, qi->name, qi->block_elems, qi->block_bytes,
             (unsigned long long)(r->model->gguf->data_offset + gt->offset + (uint64_t)row * rb +
                                  (uint64_t)blk * (uint64_t)qi->block_bytes));
    repl_out(r, "  bytes:");
    for (int i = 0; i < qi->block_bytes && i < 64; i++)
        repl_out(r, " %02x", b[i]);
    repl_out(r, qi->block_bytes > 64 ? " ...\n" : "\n");
    static quant_field f[6]; /* 6 KB: keep it off the stack */
    int nf = quant_block_fields(type, b, f, 6);
    for (int i = 0; i < nf; i++) {
        repl_out(r, "  %-6s", f[i].name);
        int show = f[i].count > 32 ? 32 : f[i].count;
        char v[32];
        for (int j = 0; j < show; j++) {
            pr_num(v, sizeof v, f[i].v[j]);
            repl_out(r, " %s", v);
        }
        repl_out(r, f[i].count > show ? " ... (%d)\n" : "\n", f[i].count);
    }
    if (nf == 0)
        repl_out(r, "  (%s is not a block format: one value per element)\n", qi->name);
    int n = qi->block_elems > 1 ? qi->block_elems : 8;
    if (n > w->cols - blk * qi->block_elems)
        n = (int)(w->cols - blk * qi->block_elems);
    float vals[256];
    quant_dequant_row(type, b, vals, qi->block_elems > 1 ? qi->block_elems : n);
    repl_out(r, "  floats");
    char v[32];
    for (int j = 0; j < n && j < 32; j++) {
        pr_num(v, sizeof v, vals[j]);
        repl_out(r, " %s", v);
    }
    repl_out(r, n > 32 ? " ... (%d)\n" : "\n", n);
    return 0;
}

static int cmd_graph(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    static const char *const names[] = {"off", "on", "unfused"};
    if (argc == 2) {
        int m = -1;
        for (int i = 0; i < 3; i++)
            if (strcmp(argv[1], names[i]) == 0)
                m = i;
        if (m < 0)
            return repl_errf(r, "usage: graph [on|off|unfused]");
        exec_set_graph_mode(r->ex, (xf_graph_mode)m);
    } else if (argc != 1)
        return repl_errf(r, "usage: graph [on|off|unfused]");
    xf_graph_stats st;
    exec_graph_stats(r->ex, &st);
    repl_out(r, "graphs %s (%s backend); captures %ld, replays %ld, fallbacks %ld, nodes of the last pass graph %zu\n",
             names[exec_graph_mode(r->ex)], kern_backend_name(exec_backend(r->ex)), st.captures, st.replays,
             st.fallbacks, st.nodes);
    return 0;
}

/* --- bench ---------------------------------------------------------------------- */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* one pass of n pseudo-random tokens (fixed seed: the same work every run),
 * run with `finish`, or with `continue` (breakpoints looked at) when watched */
static int bench_pass_mode(xf_repl *r, int n, bool cont, uint64_t *seed, xf_run_mode mode, xf_err *err)
{
    int32_t *tk = malloc((size_t)n * sizeof *tk);
    if (!tk)
        return xf_err_set(err, "out of memory");
    for (int i = 0; i < n; i++) {
        *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
        tk[i] = (int32_t)((*seed >> 33) % (uint64_t)r->model->n_vocab);
    }
    int rc = exec_begin(r->ex, tk, n, cont, err);
    free(tk);
    xf_stop why;
    if (rc == 0)
        rc = exec_run(r->ex, mode, 0, &why, err);
    if (rc == 0 && why != XF_STOP_END)
        rc = xf_err_set(err, "the pass stopped before its end (a breakpoint or check fired)");
    return rc;
}

static int bench_pass(xf_repl *r, int n, bool cont, uint64_t *seed, xf_err *err)
{
    return bench_pass_mode(r, n, cont, seed, XF_RUN_FINISH, err);
}

static int cmd_bench(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    long prefill[4] = {128, 512, 0, 0}, decode = 128, reps = 5;
    int n_prefill = 2;
    const char *variants[4] = {"opt", "ref"};
    int n_var = 2;
    bool step_only = false, overhead = false;
    for (int i = 1; i < argc; i++) {
        bool has = i + 1 < argc;
        if (strcmp(argv[i], "--prefill") == 0 && has) {
            n_prefill = 0;
            char *save, *tokp = argv[++i];
            for (char *t = strtok_r(tokp, ",", &save); t && n_prefill < 4; t = strtok_r(NULL, ",", &save))
                if (!parse_long(t, 1, 1 << 20, &prefill[n_prefill++]))
                    return repl_errf(r, "bench: --prefill takes token counts, e.g. 128,512");
        } else if (strcmp(argv[i], "--decode") == 0 && has) {
            if (!parse_long(argv[++i], 0, 1 << 20, &decode))
                return repl_errf(r, "bench: --decode takes a token count");
        } else if (strcmp(argv[i], "--reps") == 0 && has) {
            if (!parse_long(argv[++i], 1, 1000, &reps))
                return repl_errf(r, "bench: --reps takes a count >= 1");
        } else if (strcmp(argv[i], "--variants") == 0 && has) {
            n_var = 0;
            char *save, *tokp = argv[++i];
            for (char *t = strtok_r(tokp, ",", &save); t && n_var < 4; t = strtok_r(NULL, ",", &save))
                variants[n_var++] = t;
        } else if (strcmp(argv[i], "step") == 0)
            step_only = true;
        else if (strcmp(argv[i], "--overhead") == 0)
            overhead = true;
        else
            return repl_errf(r, "usage: bench [step] [--overhead] [--prefill N,N] [--decode N] [--reps R] "
                                "[--variants opt,ref]");
    }
    xf_err err = {0};
    const kern_variant *saved[KERN_OP_COUNT];
    for (int k = 0; k < KERN_OP_COUNT; k++)
        saved[k] = exec_kernel_selected(r->ex, (kern_op)k);
    int rc = 0;
    double *t = calloc((size_t)(reps > 64 ? reps : 64) + 1, sizeof *t);
    if (!t)
        return repl_errf(r, "out of memory");
    repl_out(r, "bench on %s, backend %s, %d thread%s; medians of %ld runs after a warm-up\n", r->model->name,
             kern_backend_name(exec_backend(r->ex)), r->n_threads, r->n_threads == 1 ? "" : "s", reps);
    if (step_only) {
        /* the interactive loop: one `step` plus an 8-value print, through the command layer */
        uint64_t seed = 42;
        if (bench_pass(r, 10, false, &seed, &err) != 0) {
            rc = repl_errf(r, "bench: %s", err.msg);
            goto out;
        }
        xf_strbuf sink = {0};
        xf_strbuf *cap = r->capture;
        bool q = r->quiet;
        int nt;
        const int32_t *tk0 = exec_tokens(r->ex, &nt);
        int32_t tk[10];
        memcpy(tk, tk0, sizeof tk);
        int samples = 0;
        double *st = calloc(200, sizeof *st);
        for (int rep = 0; rep < 3 && st; rep++) {
            exec_begin(r->ex, tk, 10, false, &err);
            xf_where w;
            exec_where(r->ex, &w);
            for (int i = 0; i < w.n_ops - 1 && samples < 200; i++) {
                r->capture = &sink;
                r->quiet = true;
                double t0 = now_ms();
                int a = repl_exec_line(r, "step");
                char line[96];
                snprintf(line, sizeof line, "print %s -n 8", exec_program(r->ex)->ops[i].name);
                int b = repl_exec_line(r, line);
                double dt = now_ms() - t0;
                r->capture = cap;
                r->quiet = q;
                sink.len = 0;
                if (a || b) {
                    rc = repl_errf(r, "bench step: a command failed");
                    break;
                }
                if (rep > 0)
                    st[samples++] = dt;
            }
        }
        sb_free(&sink);
        if (st && samples) {
            char m[32], mx[32];
            double worst = 0;
            for (int i = 0; i < samples; i++)
                worst = st[i] > worst ? st[i] : worst;
            pr_num(m, sizeof m, median(st, samples));
            pr_num(mx, sizeof mx, worst);
            repl_out(r, "step + print -n 8: median %s ms, max %s ms over %d ops (10-token pass)\n", m, mx, samples);
        }
        free(st);
        goto out;
    }
    if (overhead) {
        /* the price of watching: decode with nothing watched, with one breakpoint
         * that never fires (it reads the logits every pass), and with check on */
        static const char *const modes[3] = {"nothing watched", "break logits if nan", "check on"};
        long nd = decode < r->model->n_ctx - 6 ? decode : r->model->n_ctx - 6; /* + prefill + warm-up */
        double *dt = malloc((size_t)(nd > 0 ? nd : 1) * sizeof *dt);
        if (!dt) {
            rc = repl_errf(r, "out of memory");
            goto out;
        }
        for (int mode = 0; mode < 3 && rc == 0; mode++) {
            int bid = -1;
            if (mode == 1 && (bid = exec_break_add(r->ex, "logits", "nan", NULL, NULL, NULL, &err)) < 0) {
                rc = repl_errf(r, "bench: %s", err.msg);
                break;
            }
            xf_check_mode cm = exec_check_get(r->ex);
            if (mode == 2)
                exec_check_set(r->ex, XF_CHECK_ON);
            uint64_t seed = 7;
            rc = bench_pass(r, 1, false, &seed, &err);
            /* warm-up: the first passes of a mode pay for allocation and graph capture */
            for (long i = 0; i < 4 && rc == 0; i++)
                rc = bench_pass_mode(r, 1, true, &seed, XF_RUN_CONTINUE, &err);
            for (long i = 0; i < nd && rc == 0; i++) {
                double t0 = now_ms();
                rc = bench_pass_mode(r, 1, true, &seed, XF_RUN_CONTINUE, &err);
                dt[i] = now_ms() - t0;
            }
            exec_check_set(r->ex, cm);
            if (bid > 0)
                exec_break_delete(r->ex, bid, NULL);
            if (rc != 0) {
                rc = repl_errf(r, "bench: %s", err.msg);
                break;
            }
            char a[32];
            pr_num(a, sizeof a, median(dt, (int)nd));
            repl_out(r, "decode, %-22s %s ms/token (median of %ld tokens)\n", modes[mode], a, nd);
        }
        free(dt);
        goto out;
    }
    repl_out(r, "%-8s %-14s %-12s %-12s\n", "variant", "run", "ms", "tokens/s");
    for (int v = 0; v < n_var && rc == 0; v++) {
        if (exec_kernel_select(r->ex, -1, variants[v], &err) != 0) {
            rc = repl_errf(r, "bench: %s", err.msg);
            break;
        }
        for (int p = 0; p < n_prefill && rc == 0; p++) {
            if (prefill[p] > r->model->n_ctx) {
                repl_out(r, "%-8s prefill %-6ld skipped: the context is %d tokens\n", variants[v], prefill[p],
                         r->model->n_ctx);
                continue;
            }
            uint64_t seed = 1;
            for (long i = 0; i <= reps; i++) {
                double t0 = now_ms();
                if (bench_pass(r, (int)prefill[p], false, &seed, &err) != 0) {
                    rc = repl_errf(r, "bench: %s", err.msg);
                    break;
                }
                if (i > 0)
                    t[i - 1] = now_ms() - t0;
            }
            if (rc)
                break;
            double md = median(t, (int)reps);
            char a[32], b[32], label[32];
            pr_num(a, sizeof a, md);
            pr_num(b, sizeof b, 1000.0 * (double)prefill[p] / md);
            snprintf(label, sizeof label, "prefill %ld", prefill[p]);
            repl_out(r, "%-8s %-14s %-12s %-12s\n", variants[v], label, a, b);
        }
        if (decode > 0 && rc == 0) {
            long nd = decode < r->model->n_ctx - 1 ? decode : r->model->n_ctx - 1;
            double *dt = malloc((size_t)nd * sizeof *dt);
            uint64_t seed = 7;
            if (!dt || bench_pass(r, 1, false, &seed, &err) != 0) {
                free(dt);
                rc = repl_errf(r, "bench: %s", dt ? err.msg : "out of memory");
                break;
            }
            for (long i = 0; i < nd; i++) {
                double t0 = now_ms();
                if (bench_pass(r, 1, true, &seed, &err) != 0) {
                    rc = repl_errf(r, "bench: %s", err.msg);
                    break;
                }
                dt[i] = now_ms() - t0;
            }
            if (rc == 0) {
                double md = median(dt, (int)nd);
                char a[32], b[32], label[32];
                pr_num(a, sizeof a, md);
                pr_num(b, sizeof b, 1000.0 / md);
                snprintf(label, sizeof label, "decode %ld", nd);
                repl_out(r, "%-8s %-14s %-12s %-12s (ms per token)\n", variants[v], label, a, b);
            }
            free(dt);
        }
    }
    for (int k = 0; k < KERN_OP_COUNT; k++)
        exec_kernel_select(r->ex, k, saved[k]->name, NULL);
    if (rc == 0 && n_prefill > 0) {
        /* one pass op by op with the user's kernel choice: where the time goes */
        uint64_t seed = 1;
        long n = prefill[0] < r->model->n_ctx ? prefill[0] : r->model->n_ctx;
        repl_out(r, "per op kind, one %ld-token pass:\n", n);
        if (bench_pass(r, (int)n, false, &seed, &err) != 0)
            rc = repl_errf(r, "bench: %s", err.msg);
        else
            rc = cmd_profile(r, 1, NULL, "");
    }
out:
    for (int k = 0; k < KERN_OP_COUNT; k++)
        exec_kernel_select(r->ex, k, saved[k]->name, NULL);
    free(t);
    repl_out(r, "(bench replaced the current pass and the KV cache)\n");
    return rc;
}

/* --- the table ------------------------------------------------------------------ */

#define W CMD_NEEDS_MODEL | CMD_NEEDS_WEIGHTS
#define P CMD_NEEDS_MODEL | CMD_NEEDS_WEIGHTS | CMD_NEEDS_PASS

static const xf_command k_commands[] = {
    {"help", "h ?", "help [CMD]", "List the commands, or explain one.", cmd_help, 0, COMPLETE_COMMAND},
    {"load", NULL, "load PATH", "Load a GGUF model (or a vocabulary-only GGUF, for tokenizing).", cmd_load, 0,
     COMPLETE_FILE},
    {"info", "i", "info [model|breaks]",
     "Model summary (architecture, sizes, tensor types, memory), or the breakpoints with hit counts.", cmd_info,
     CMD_NEEDS_MODEL, COMPLETE_NONE},
    {"tokenize", "tokens", "tokenize [--ids] [--no-special] TEXT",
     "Show the ids and pieces of TEXT (\"quoted\" text takes C escapes: \\n \\t \\\\ \\\" \\xNN \\uXXXX).\n"
     "--ids prints only the ids on one line. Special tokens (<|endoftext|>) are parsed unless --no-special.",
     cmd_tokenize, CMD_NEEDS_MODEL, COMPLETE_NONE},
    {"run", "r", "run TEXT | run --tokens 1,2,3",
     "Start a pass over a prompt from position 0 (the KV cache is reset) and stop before its first op.", cmd_run,
     W, COMPLETE_NONE},
    {"token", NULL, "token [ID]",
     "Start the next decode pass with ID, or with the greedy choice from the last logits; stop before its\n"
     "first op. The previous pass must be complete.",
     cmd_token, P, COMPLETE_NONE},
    {"step", "s", "step [N]", "Run the next N ops (default 1). Enter on an empty line repeats.", cmd_step,
     P | CMD_REPEATS, COMPLETE_NONE},
    {"next", "n", "next", "Run to the end of the current layer.", cmd_next, P | CMD_REPEATS, COMPLETE_NONE},
    {"finish", "fin", "finish", "Run to the end of the pass, not stopping at breakpoints.", cmd_finish, P,
     COMPLETE_NONE},
    {"continue", "c cont", "continue",
     "Run to the next breakpoint, check failure (check break) or the end of the pass. Ctrl-C stops at the\n"
     "next op boundary.",
     cmd_continue, P | CMD_REPEATS, COMPLETE_NONE},
    {"where", "w bt", "where", "The pass, its position and the op last run and next.", cmd_where, P,
     COMPLETE_NONE},
    {"list", "l", "list [N|all]", "The ops around the program counter with shapes and kernel variants\n"
                                  "(=> next op, * computed in this pass).",
     cmd_list, P, COMPLETE_NONE},
    {"break", "b", "break PATTERN [if COND]",
     "Stop after every op whose name matches the glob PATTERN (blk.*.kq_soft, blk.3.*, l_out-3).\n"
     "COND: nan, inf, absmax>X, nmse(ref)>X (against `ref load`), or a Lua expression.",
     cmd_break, W, COMPLETE_TENSOR},
    {"delete", "d", "delete [N]", "Delete breakpoint N, or all of them.", cmd_delete, W, COMPLETE_NONE},
    {"print", "p", "print NAME[SLICE] [-n N] [--raw]",
     "Shape, dtype, variant, stats and the first N values (default 8) of a tensor, NAME@ref or a weight\n"
     "(GGUF name). SLICE is numpy-like: [3, :8], [-1], [:, 2, 0:4]. --raw prints only the values (%.9g).",
     cmd_print, W, COMPLETE_TENSOR},
    {"stats", NULL, "stats NAME", "Min, max, mean, std, absmax and NaN/Inf counts of a tensor.", cmd_stats, W,
     COMPLETE_TENSOR},
    {"diff", NULL, "diff A B [-n N]",
     "Compare two tensors (names, NAME@ref): max abs, max rel, NMSE, cosine, NaN/Inf, first index over\n"
     "tolerance, and N values side by side from there.",
     cmd_diff, W, COMPLETE_TENSOR},
    {"topk", NULL, "topk [K] [NAME]",
     "Top K tokens of the last logits, or the logit lens of a residual (final norm + unembedding).", cmd_topk, P,
     COMPLETE_TENSOR},
    {"kernel", "k", "kernel [OP VARIANT] | kernel all VARIANT",
     "List op kinds with their variants (* selected), or select one variant (kernel norm ref).", cmd_kernel, W,
     COMPLETE_OPKIND},
    {"check", NULL, "check [on|off|break|pass]",
     "on: run each op's cpu ref on the same inputs and record the error; break: also stop at the first op\n"
     "over tolerance and name its kernel; pass (or no argument): the table for this pass.",
     cmd_check, W, COMPLETE_NONE},
    {"generate", "gen g", "generate N [--temp T] [--top-k K] [--top-p P] [--seed S] [--ids] [--ignore-eos]",
     "Finish the current pass, then decode up to N tokens (greedy unless --temp > 0), printing text as it\n"
     "comes, or the ids on one line with --ids. Stops at an end-of-generation token unless --ignore-eos.",
     cmd_generate, P, COMPLETE_NONE},
    {"chat", NULL, "chat [--new] [--system \"TEXT\"] [-n N] [--temp T] [--seed S] MESSAGE",
     "Talk to an instruct model: MESSAGE goes through the model's chat template (ChatML) and the reply is\n"
     "generated until the end of its turn (at most N tokens, default 256). Later `chat`s continue the\n"
     "conversation in the KV cache; --new (or --system) starts over.",
     cmd_chat, W, COMPLETE_NONE},
    {"dump", NULL, "dump NAMES|all FILE.safetensors",
     "Write tensors of the last pass (F32, canonical names) plus prompt.tokens (I32) to a safetensors file.",
     cmd_dump, P, COMPLETE_FILE},
    {"ref", NULL, "ref load FILE.safetensors", "Load a reference dump for NAME@ref, compare and nmse(ref).",
     cmd_ref, W, COMPLETE_FILE},
    {"compare", NULL, "compare [@ref]",
     "Every computed tensor of this pass against the reference, in program order; the first over tolerance\n"
     "is marked.",
     cmd_compare, P, COMPLETE_NONE},
    {"profile", NULL, "profile",
     "Re-run the current pass op by op and time each op (cuda: CUDA events, no sync between ops; cpu: wall\n"
     "clock); the time per op kind.",
     cmd_profile, P, COMPLETE_NONE},
    {"lua", NULL, "lua CODE",
     "Run Lua code with the `xf` module (sandboxed unless --unsafe-lua). A Lua error prints a traceback.",
     cmd_lua, 0, COMPLETE_NONE},
    {"source", NULL, "source FILE.lua [ARGS]", "Run a Lua script (ARGS in `arg`).", cmd_source, 0, COMPLETE_FILE},
    {"record", NULL, "record FILE.xfs [--tolerance REL] [--abs ABS] | record stop | record",
     "Record the commands that follow and their output as a session that `xfdb --replay` checks (text\n"
     "exactly, numbers within the tolerance, default rel 1e-5 abs 1e-7). `record` alone says whether a\n"
     "recording is on. Ends at `record stop` or exit; a killed recording leaves FILE.xfs.tmp, which replay\n"
     "reports as incomplete.",
     cmd_record, 0, COMPLETE_FILE},
    {"quant", NULL, "quant WEIGHT ROW [BLOCK]",
     "One raw block of a weight row as stored in the file: bytes, scales, mins and quants, and its floats.",
     cmd_quant, W, COMPLETE_TENSOR},
    {"graph", NULL, "graph [on|off|unfused]",
     "CUDA decode fast path: a one-token pass run by continue/finish with check off and no hook replays\n"
     "as CUDA graphs (breakpoints split them). on: with the fast-path fusions; unfused: one kernel per op;\n"
     "off: op by op. Shows capture/replay counts. The cpu backend has no graphs.",
     cmd_graph, W, COMPLETE_NONE},
    {"bench", NULL, "bench [step] [--overhead] [--prefill N,N] [--decode N] [--reps R] [--variants opt,ref]",
     "Time prefill (default 128 and 512 tokens) and decode (128 tokens) per kernel variant set, medians\n"
     "after a warm-up, then the per-op-kind table of one pass (as `profile`); `bench step` times one step\n"
     "plus an 8-value print; --overhead times decode with nothing watched, with a breakpoint that never\n"
     "fires and with check on. Replaces the current pass.",
     cmd_bench, W, COMPLETE_NONE},
    {"quit", "q exit", "quit", "Leave xfdb.", cmd_quit, 0, COMPLETE_NONE},
};

#undef W
#undef P

const xf_command *commands_table(size_t *n)
{
    *n = sizeof k_commands / sizeof k_commands[0];
    return k_commands;
}

static bool alias_has(const char *aliases, const char *name)
{
    if (!aliases)
        return false;
    size_t n = strlen(name);
    for (const char *p = aliases; *p;) {
        const char *e = strchr(p, ' ');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && strncmp(p, name, n) == 0)
            return true;
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

const xf_command *commands_find(const char *name)
{
    size_t n;
    const xf_command *t = commands_table(&n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0 || alias_has(t[i].aliases, name))
            return &t[i];
    return NULL;
}

static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 30 || lb > 30)
        return 99;
    int d[32][32];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c)
                c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c)
                c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

static int cmd_help(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    size_t n;
    const xf_command *t = commands_table(&n);
    if (argc >= 2) {
        const xf_command *c = commands_find(argv[1]);
        if (!c)
            return repl_errf(r, "help: no command '%s'", argv[1]);
        repl_out(r, "%s\n", c->synopsis);
        if (c->aliases)
            repl_out(r, "aliases: %s\n", c->aliases);
        repl_out(r, "%s\n", c->help);
        return 0;
    }
    repl_out(r, "commands (help CMD for more):\n");
    for (size_t i = 0; i < n; i++) {
        const char *nl = strchr(t[i].help, '\n');
        int len = nl ? (int)(nl - t[i].help) : (int)strlen(t[i].help);
        repl_out(r, "  %-44s %.*s\n", t[i].synopsis, len > 60 ? 60 : len, t[i].help);
    }
    repl_out(r, "Enter repeats the last step/next/continue. Names accept aliases: l_out-3, transformer.h.3.ln_1, q3.\n");
    return 0;
}

/* Splits a command line into words. Double-quoted strings keep their
 * quotes (TEXT arguments unescape them later); brackets keep spaces so that
 * print blk.2.ffn_act[3, :5] is one word. */
static int split_words(char *line, char **argv, int max)
{
    int argc = 0;
    char *p = line;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            *p++ = '\0';
        if (!*p)
            break;
        if (argc == max)
            return -1;
        argv[argc++] = p;
        int depth = 0;
        bool q = false;
        while (*p && (q || depth > 0 || (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r'))) {
            if (q && *p == '\\' && p[1])
                p++;
            else if (*p == '"')
                q = !q;
            else if (!q && *p == '[')
                depth++;
            else if (!q && *p == ']' && depth > 0)
                depth--;
            p++;
        }
    }
    return argc;
}

int repl_exec_line(xf_repl *r, const char *line)
{
    while (*line == ' ' || *line == '\t')
        line++;
    if (!*line || *line == '#')
        return 0;
    char *copy = strdup(line);
    if (!copy)
        return repl_errf(r, "out of memory");
    /* the raw remainder after the command word, for TEXT arguments */
    const char *rest = line;
    while (*rest && *rest != ' ' && *rest != '\t')
        rest++;
    char *argv[64];
    int argc = split_words(copy, argv, 64);
    if (argc == 0) { /* only blanks, \r or \n: nothing to run */
        free(copy);
        return 0;
    }
    if (argc < 0) {
        free(copy);
        return repl_errf(r, "too many words on one line (at most 64)");
    }
    const xf_command *c = commands_find(argv[0]);
    int rc;
    if (!c) {
        size_t n;
        const xf_command *t = commands_table(&n);
        const char *best = NULL;
        int bd = 3;
        for (size_t i = 0; i < n; i++) {
            int d = edit_distance(argv[0], t[i].name);
            if (d < bd) {
                bd = d;
                best = t[i].name;
            }
        }
        char esc[128];
        pr_escape(esc, sizeof esc, argv[0], strlen(argv[0]));
        if (best)
            rc = repl_errf(r, "unknown command '%s'; did you mean '%s'? (help lists commands)", esc, best);
        else
            rc = repl_errf(r, "unknown command '%s' (help lists commands)", esc);
    } else if ((c->flags & CMD_NEEDS_MODEL) && !r->model) {
        rc = repl_errf(r, "%s: no model loaded (load PATH)", c->name);
    } else if ((c->flags & CMD_NEEDS_WEIGHTS) && (!r->model || !r->ex)) {
        rc = repl_errf(r, "%s: %s has no weights (vocabulary only): load a model", c->name,
                       r->model ? r->model->path : "nothing");
    } else if ((c->flags & CMD_NEEDS_PASS) && !(r->ex && (exec_where(r->ex, &(xf_where){0}), 1) &&
                                                 exec_program(r->ex)->n_ops > 0)) {
        rc = repl_errf(r, "%s: no pass yet (start one with `run TEXT` or `run --tokens 1,2,3`)", c->name);
    } else if (!c->fn) {
        rc = repl_errf(r, "%s: not part of this build", c->name);
    } else {
        rc = c->fn(r, argc, argv, rest) ? 1 : 0;
        if (c->flags & CMD_REPEATS)
            snprintf(r->last_step, sizeof r->last_step, "%s", line);
    }
    free(copy);
    return rc;
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
    else if (w.last >= 0)
        snprintf(buf, size, "(xfdb %s) ", p->ops[w.last].name);
    else
        snprintf(buf, size, "(xfdb before %s) ", p->ops[0].name);
}
