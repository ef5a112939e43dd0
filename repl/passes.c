/* passes: the pass history from the REPL (patch.h): `keep` says what the
 * next passes keep (engine/passes.c keeps it), `passes` lists the kept
 * passes with their prompts (escaped pieces), numbers and interventions,
 * NAME@pass-K reads a kept tensor (for view.c), and what `where` adds
 * about writes into the pass. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "exec.h"
#include "patch.h"
#include "print.h"
#include "program.h"
#include "repl.h"
#include "tensor.h"

/* "256MB", "1.5GB", "4096" (bytes; units of 1000 as pr_bytes writes them) */
static bool parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v) || v < 0)
        return false;
    double mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1e3;
    else if (*end == 'M' || *end == 'm')
        mul = 1e6;
    else if (*end == 'G' || *end == 'g')
        mul = 1e9;
    if (mul > 1)
        end++;
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end || v * mul > 1e12)
        return false;
    *out = (size_t)(v * mul);
    return true;
}

static void show_keep(xf_repl *r)
{
    char *const *pat;
    int passes;
    size_t cap;
    int n = exec_keep_config(r->ex, &pat, &passes, &cap);
    char c[32], u[32];
    pr_bytes(c, sizeof c, (double)cap);
    pr_bytes(u, sizeof u, (double)exec_kept_bytes(r->ex));
    repl_out(r, "keep: the last %d passes; tensors:", passes);
    for (int i = 0; i < n; i++) {
        char esc[256];
        pr_escape(esc, sizeof esc, pat[i], strlen(pat[i]));
        repl_out(r, " %s", esc);
    }
    repl_out(r, "%s (%s of %s used)\n", n ? "" : " none", u, c);
}

/* Each of keep's NAMES matches an op of this model: a typo (or `all`, which
 * dump knows and keep does not) is an error naming it, not a keep of nothing.
 * 0, or 1 said. */
static int keep_check_names(xf_repl *r, char **pat, int n)
{
    char **names;
    int nn;
    xf_err err = {0};
    if (n == 0)
        return 0;
    if (program_names(r->model, &names, &nn, &err) != 0)
        return repl_errf(r, "keep: %s", err.msg);
    int rc = 0;
    for (int k = 0; k < n && rc == 0; k++) {
        bool any = false;
        for (int i = 0; i < nn && !any; i++)
            any = program_glob_match(pat[k], names[i]);
        if (!any)
            rc = repl_errf(r, "keep: '%s' matches no tensor of this model%s", pat[k],
                           strcmp(pat[k], "all") == 0 ? " (every tensor: keep *)" : "");
    }
    program_names_free(names, nn);
    return rc;
}

int cmd_keep(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    const char *usage = "usage: keep [NAMES...] [--passes N] [--mem SIZE] | keep off";
    char *const *old;
    int passes;
    size_t cap;
    int n_old = exec_keep_config(r->ex, &old, &passes, &cap);
    char **pat = calloc((size_t)argc, sizeof *pat);
    int n = 0;
    bool off = false, pats_given = false;
    if (!pat)
        return repl_errf(r, "out of memory");
    for (int i = 1; i < argc; i++) {
        long v;
        if (strcmp(argv[i], "--passes") == 0 && i + 1 < argc) {
            if (!args_long(argv[++i], 1, 1000, &v)) {
                free(pat);
                return repl_errf(r, "keep: --passes: '%s' is not a count 1..1000", argv[i]);
            }
            passes = (int)v;
        } else if (strcmp(argv[i], "--mem") == 0 && i + 1 < argc) {
            if (!parse_size(argv[++i], &cap)) {
                free(pat);
                return repl_errf(r, "keep: --mem: '%s' is not a size (256MB, 1GB)", argv[i]);
            }
        } else if (strcmp(argv[i], "off") == 0 && argc == 2)
            off = true;
        else if (argv[i][0] == '-') {
            free(pat);
            return repl_errf(r, "%s", usage);
        } else {
            pat[n++] = argv[i];
            pats_given = true;
        }
    }
    if (argc == 1) {
        free(pat);
        show_keep(r);
        return 0;
    }
    if (keep_check_names(r, pat, n) != 0) {
        free(pat);
        return 1;
    }
    char *const *use = pats_given ? pat : off ? NULL : old;
    int n_use = pats_given ? n : off ? 0 : n_old;
    xf_where w;
    exec_where(r->ex, &w);
    size_t per = w.active ? exec_keep_estimate(r->ex, use, n_use) : 0;
    int rc = 0;
    xf_err err = {0};
    char a[32], b[32], c[32];
    pr_bytes(a, sizeof a, (double)per * passes);
    pr_bytes(b, sizeof b, (double)per);
    pr_bytes(c, sizeof c, (double)cap);
    if (w.active && pats_given && per == 0)
        rc = repl_errf(r, "keep: no tensor of this pass matches (try `list all`)");
    else if ((double)per * passes > (double)cap)
        rc = repl_errf(r, "keep: %d passes of these tensors need %s (%s a pass at this pass's size), over the cap "
                          "of %s: keep fewer passes or names, or raise --mem", passes, a, b, c);
    else if (exec_keep_set(r->ex, use, n_use, passes, cap, &err) != 0)
        rc = repl_errf(r, "%s", err.msg);
    free(pat);
    if (rc == 0)
        show_keep(r);
    return rc;
}

/* the pieces of ids as 'a' 'b' ... cut to width columns */
static void prompt_line(xf_repl *r, const int32_t *ids, int n, int width)
{
    char line[512] = "  ";
    size_t len = 2;
    for (int i = 0; i < n; i++) {
        char p[128], q[140];
        args_piece(r, ids[i], p, sizeof p);
        int ql = snprintf(q, sizeof q, "%s'%s'", i ? " " : "", p);
        if ((int)len + ql > width - 4) {
            snprintf(line + len, sizeof line - len, " ...");
            break;
        }
        memcpy(line + len, q, (size_t)ql + 1);
        len += (size_t)ql;
    }
    repl_out(r, "%s\n", line);
}

static void iv_lines(xf_repl *r, char *const *iv, int n)
{
    for (int i = 0; i < n; i++) {
        char esc[256];
        pr_escape(esc, sizeof esc, iv[i], strlen(iv[i]));
        if (strlen(esc) > 74) /* escaped: ASCII, one column a byte */
            memcpy(esc + 71, "...", 4);
        repl_out(r, "  * %s\n", esc);
    }
}

int cmd_passes(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)argv;
    (void)rest;
    if (argc != 1)
        return repl_errf(r, "usage: passes");
    int n = exec_kept_count(r->ex);
    for (int k = n; k >= 1; k--) {
        const xf_kept_pass *kp = exec_kept(r->ex, k);
        char b[32];
        pr_bytes(b, sizeof b, (double)(kp->over_cap ? kp->want : kp->bytes));
        repl_out(r, "pass %d (@pass-%d): %d token%s at position %d%s; ", kp->pass_no, k, kp->n_tokens,
                 kp->n_tokens == 1 ? "" : "s", kp->pos0, kp->written ? ", written" : "");
        if (kp->over_cap)
            repl_out(r, "tensors not kept (%s, over the cap)\n", b);
        else if (kp->oom)
            repl_out(r, "tensors not kept (out of memory)\n");
        else
            repl_out(r, "%d tensor%s kept (%s)\n", kp->n_t, kp->n_t == 1 ? "" : "s", b);
        prompt_line(r, kp->tokens, kp->n_tokens, 80);
        iv_lines(r, kp->iv, kp->n_iv);
    }
    xf_where w;
    exec_where(r->ex, &w);
    int nt, niv;
    const int32_t *tk = exec_tokens(r->ex, &nt);
    const char *const *iv = exec_interventions(r->ex, &niv);
    repl_out(r, "pass %d (this pass): %d token%s at position %d%s\n", w.pass_no, nt, nt == 1 ? "" : "s", w.pos0,
             exec_pass_written(r->ex) ? ", written" : "");
    prompt_line(r, tk, nt, 80);
    iv_lines(r, (char *const *)iv, niv);
    if (n == 0)
        repl_out(r, "(no earlier pass kept yet: `keep NAMES` chooses the tensors the next passes keep)\n");
    return 0;
}

int passes_view(xf_repl *r, const char *base, const char *suffix, int *ndim, int64_t *shape, int64_t *numel,
                float **data, char *name, size_t name_size, xf_err *err)
{
    long k;
    if (strncmp(suffix, "@pass-", 6) != 0 || !args_long(suffix + 6, 1, 1000, &k))
        return xf_err_set(err, "'%s%s': NAME@pass-K is the pass K passes before this one (K >= 1)", base, suffix);
    const xf_kept_pass *kp = exec_kept(r->ex, (int)k);
    if (!kp)
        return xf_err_set(err, "nothing kept as %s (%d pass%s kept: `passes` lists them)", suffix,
                          exec_kept_count(r->ex), exec_kept_count(r->ex) == 1 ? "" : "es");
    char canon[XF_NAME_MAX];
    program_resolve_alias(base, canon, sizeof canon);
    const xf_kept_tensor *t = exec_kept_find(kp, canon);
    if (!t)
        t = exec_kept_find(kp, base);
    if (!t)
        return xf_err_set(err, "pass %d (%s) kept no tensor '%s'%s", kp->pass_no, suffix + 1, base,
                          kp->over_cap ? " (its tensors were over the cap)" : " (`keep NAMES` chooses them)");
    *ndim = t->ndim;
    memcpy(shape, t->shape, sizeof t->shape);
    *numel = t->numel;
    *data = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
    if (!*data)
        return xf_err_set(err, "out of memory");
    memcpy(*data, t->data, (size_t)t->numel * sizeof(float));
    snprintf(name, name_size, "%s%s", t->name, suffix);
    return 0;
}

void passes_where(xf_repl *r)
{
    int n;
    const char *const *iv = exec_interventions(r->ex, &n);
    if (n > 0) {
        repl_out(r, "written into (%d intervention%s; the rest of the pass runs op by op):\n", n, n == 1 ? "" : "s");
        iv_lines(r, (char *const *)iv, n);
    }
    if (exec_context_written(r->ex))
        repl_out(r, "an earlier pass of this context was written into (its KV cache rows hold the values)\n");
}

char *passes_iv_json(xf_repl *r)
{
    int n;
    const char *const *iv = exec_interventions(r->ex, &n);
    if (n == 0)
        return NULL;
    xf_strbuf b = {0};
    sb_append(&b, "[", 1);
    for (int i = 0; i < n; i++) {
        char esc[512];
        pr_escape(esc, sizeof esc, iv[i], strlen(iv[i])); /* printable UTF-8 from here on */
        sb_append(&b, i ? ", \"" : "\"", i ? 3 : 1);
        for (const char *p = esc; *p; p++) {
            if (*p == '"' || *p == '\\')
                sb_append(&b, "\\", 1);
            sb_append(&b, p, 1);
        }
        sb_append(&b, "\"", 1);
    }
    sb_append(&b, "]", 1);
    return b.s;
}
