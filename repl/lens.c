/* lens: the logit lens as a table (lens.h). Each layer's residual
 * blk.L.out at one position goes through the model's final norm and
 * unembedding (exec_logit_lens); a row shows its top K tokens, so one reads
 * down the table where the model's guess forms. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "exec.h"
#include "lens.h"
#include "print.h"
#include "repl.h"
#include "tokenizer.h"

int lens_topk(const float *lg, int V, int k, lens_top *out)
{
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++)
        if (lg[i] > mx)
            mx = lg[i];
    for (int i = 0; i < V; i++)
        sum += exp((double)lg[i] - mx);
    /* insertion into the short sorted list: k is what a person reads */
    int n = 0;
    for (int i = 0; i < V && k > 0; i++) {
        if (isnan(lg[i]) || (n == k && lg[i] <= out[n - 1].logit))
            continue;
        int j = n < k ? n++ : k - 1;
        while (j > 0 && out[j - 1].logit < lg[i]) {
            out[j] = out[j - 1];
            j--;
        }
        out[j].id = i;
        out[j].logit = lg[i];
    }
    for (int j = 0; j < n; j++)
        out[j].p = exp(out[j].logit - mx) / sum;
    return n;
}

void lens_piece(xf_repl *r, int32_t id, char *buf, size_t size)
{
    size_t len = 0;
    bool known = r->model && r->model->tok && id >= 0 && id < r->model->n_vocab;
    const char *p = known ? tok_piece(r->model->tok, id, &len) : NULL;
    if (!p)
        snprintf(buf, size, "?");
    else
        pr_quote(buf, size, p, len);
}

/* row pos of op (a [n, width] activation) into dst; 0 ok, -1 with err */
static int read_row(xf_repl *r, int op, int64_t pos, int64_t width, float *dst, xf_err *err)
{
    int64_t *idx = malloc((size_t)width * sizeof(int64_t));
    if (!idx)
        return xf_err_set(err, "out of memory");
    for (int64_t i = 0; i < width; i++)
        idx[i] = pos * width + i;
    int rc = exec_tensor_gather(r->ex, op, idx, width, dst, err);
    free(idx);
    return rc;
}

typedef struct lens_table {
    int k, pw;        /* tokens a row, piece width in columns */
    bool probs;       /* room for the probabilities */
    int64_t pos;
    int final_top;    /* the model's own top-1 at pos, -1 unknown */
} lens_table;

static void lens_row(xf_repl *r, const lens_table *t, const char *label, const float *lg)
{
    lens_top top[16];
    int n = lens_topk(lg, r->model->n_vocab, t->k, top);
    char line[2048];
    size_t j = (size_t)snprintf(line, sizeof line, "  %-10s", label);
    for (int i = 0; i < n && j + 300 < sizeof line; i++) {
        char piece[160], fit[128], p[16];
        lens_piece(r, top[i].id, piece, sizeof piece);
        pr_prob(p, sizeof p, top[i].p);
        bool hit = top[i].id == t->final_top;
        /* on a terminal the model's final answer stands out where it appears */
        j += (size_t)snprintf(line + j, sizeof line - j, " %s%s%s%s%s", hit ? pr_sgr(r, "bold") : "",
                              pr_fit(fit, sizeof fit, piece, t->pw, false), hit ? pr_sgr(r, "reset") : "",
                              t->probs ? " " : "", t->probs ? p : "");
    }
    while (j > 0 && line[j - 1] == ' ')
        line[--j] = '\0';
    repl_out(r, "%s\n", line);
}

/* the rows: embd, every blk.L.out, then the model's logits */
static int lens_rows(xf_repl *r, lens_table *t, float *x, float *lg, xf_err *err)
{
    xf_model *m = r->model;
    xf_err ignore = {0};
    int lo = exec_tensor_find(r->ex, "logits", &ignore);
    if (lo >= 0 && exec_tensor_ready(r->ex, lo) && read_row(r, lo, t->pos, m->n_vocab, lg, err) == 0) {
        lens_top top;
        t->final_top = lens_topk(lg, m->n_vocab, 1, &top) ? top.id : -1;
    }
    for (int L = -1; L <= m->n_layer; L++) {
        char name[32];
        if (L < 0)
            snprintf(name, sizeof name, "embd");
        else if (L < m->n_layer)
            snprintf(name, sizeof name, "blk.%d.out", L);
        else
            snprintf(name, sizeof name, "logits");
        int op = exec_tensor_find(r->ex, name, &ignore);
        if (op < 0 || !exec_tensor_ready(r->ex, op)) {
            repl_out(r, "  %-10s (not computed yet in this pass)\n", name);
            continue;
        }
        if (L == m->n_layer) {
            if (read_row(r, op, t->pos, m->n_vocab, lg, err) != 0)
                return -1;
        } else if (read_row(r, op, t->pos, m->n_embd, x, err) != 0 || exec_logit_lens(r->ex, x, lg, err) != 0)
            return -1;
        lens_row(r, t, name, lg);
    }
    return 0;
}

int cmd_lens(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    long k = 5, pos = -1;
    int nums = 0;
    xf_where w;
    exec_where(r->ex, &w);
    for (int i = 1; i < argc; i++) {
        bool num = false;
        if (nums == 0 && args_count(r, "lens", argv[i], 10, &k, &num))
            return 1;
        if (num)
            nums = 1;
        else if (nums < 2 && args_long(argv[i], -(long)w.n_tokens, w.n_tokens - 1, &pos))
            nums = 2;
        else
            return repl_errf(r, "usage: lens [K] [POS]   (K 1..10; POS -%d..%d, a row of this pass)", w.n_tokens,
                             w.n_tokens - 1);
    }
    lens_table t = {.k = (int)k, .pos = pos < 0 ? pos + w.n_tokens : pos, .final_top = -1};
    /* K cells share the width after the label: a blank, a piece, and " 0.70"
     * while a piece keeps 5 columns; past that the pieces alone */
    t.pw = (pr_width(r) - 12) / t.k - 6;
    t.probs = t.pw >= 5;
    if (!t.probs)
        t.pw = (pr_width(r) - 12) / t.k - 1;
    if (t.pw < 3)
        return repl_errf(r, "lens: %d tokens a row do not fit %d columns", t.k, pr_width(r));
    int nh;
    const int32_t *h = exec_history(r->ex, &nh);
    char piece[160];
    lens_piece(r, w.pos0 + t.pos < nh ? h[w.pos0 + t.pos] : -1, piece, sizeof piece);
    repl_out(r, "logit lens at row %lld (position %lld, token %s): top %d of each residual\n", (long long)t.pos,
             (long long)(w.pos0 + t.pos), piece, t.k);
    float *x = malloc((size_t)r->model->n_embd * sizeof(float));
    float *lg = malloc((size_t)r->model->n_vocab * sizeof(float));
    xf_err err = {0};
    int rc = x && lg ? lens_rows(r, &t, x, lg, &err) : xf_err_set(&err, "out of memory");
    free(x);
    free(lg);
    return rc ? repl_errf(r, "lens: %s", err.msg) : 0;
}
