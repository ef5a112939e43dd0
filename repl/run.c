/* run: the commands that move the stepper (run, token, step, next, finish,
 * continue), say where it stands (where, list), and generate text
 * (generate, chat; repl_generate is shared with Lua). */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "exec.h"
#include "patch.h"
#include "print.h"
#include "repl.h"
#include "run.h"
#include "sampler.h"
#include "tensor.h"
#include "tokenizer.h"


int cmd_run(xf_repl *r, int argc, char **argv, const char *rest)
{
    int32_t *ids = NULL;
    int n = 0;
    xf_err err = {0};
    while (*rest == ' ')
        rest++;
    if (argc >= 2 && strcmp(argv[1], "--tokens") == 0) {
        if (argc < 3)
            return repl_errf(r, "usage: run --tokens 1,2,3");
        /* any number of ids: the words after --tokens, each followed by a blank */
        char *joined = args_join(argc - 2, argv + 2, true);
        if (!joined)
            return repl_errf(r, "out of memory");
        int bad = args_ids(r, joined, &ids, &n);
        free(joined);
        if (bad)
            return 1;
    } else {
        if (!*rest)
            return repl_errf(r, "usage: run TEXT | run --tokens 1,2,3");
        if (args_need_vocab(r))
            return 1;
        char *text;
        size_t len;
        if (args_text(r, rest, &text, &len))
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
    repl_out(r, "pass %d: %d token%s at position 0, %d ops; stopped before %s\n", w.pass_no, n, n == 1 ? "" : "s",
             p->n_ops, p->ops[0].name);
    return 0;
}

int cmd_token(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    xf_err err = {0};
    int32_t one, *ids = &one;
    int n = 1;
    long v;
    if (argc == 2 && !strchr(argv[1], ',')) {
        if (!args_long(argv[1], 0, INT32_MAX, &v))
            return repl_errf(r, "token: '%s' is not a token id", argv[1]);
        one = (int32_t)v;
    } else if (argc >= 2) {
        /* several ids make one decode pass over all of them (how a recording
         * rebuilds a chat turn); one is the usual single-token step */
        char *joined = args_join(argc - 1, argv + 1, false);
        if (!joined)
            return repl_errf(r, "out of memory");
        int bad = args_ids(r, joined, &ids, &n);
        free(joined);
        if (bad)
            return 1;
    } else {
        float *lg = malloc((size_t)r->model->n_vocab * sizeof(float));
        if (!lg)
            return repl_errf(r, "out of memory");
        if (exec_last_logits(r->ex, lg, &err) != 0) {
            free(lg);
            return repl_errf(r, "%s", err.msg);
        }
        /* greedy: the lowest id wins ties, as the sampler does */
        one = 0;
        for (int i = 1; i < r->model->n_vocab; i++)
            if (lg[i] > lg[one])
                one = i;
        free(lg);
    }
    int rc = exec_begin(r->ex, ids, n, true, &err);
    int32_t first = ids[0];
    if (ids != &one)
        free(ids);
    if (rc != 0)
        return repl_errf(r, "%s", err.msg);
    xf_where w;
    exec_where(r->ex, &w);
    const char *next = exec_program(r->ex)->ops[0].name;
    if (n > 1) {
        repl_out(r, "pass %d: %d tokens at position %d; stopped before %s\n", w.pass_no, n, w.pos0, next);
        return 0;
    }
    char p[128];
    args_piece(r, first, p, sizeof p);
    repl_out(r, "pass %d: token %d '%s' at position %d; stopped before %s\n", w.pass_no, first, p, w.pos0, next);
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
    if (!brief)
        passes_where(r);
}

void run_show_stop(xf_repl *r, xf_stop why)
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
        r->stopped_by_interrupt = true;
        if (w.last >= 0)
            repl_out(r, "interrupted after %s\n", p->ops[w.last].name);
        else
            repl_out(r, "interrupted after 0 ops, before %s\n", p->ops[0].name);
        break;
    case XF_STOP_HOOK:
        repl_out(r, "stopped by hook after %s\n", p->ops[w.last].name);
        break;
    case XF_STOP_END:
        repl_out(r, "pass %d complete (%d ops)\n", w.pass_no, w.n_ops);
        if (gen_paused(r))
            repl_out(r, "(a generation is paused here: `continue` resumes it)\n");
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
    run_show_stop(r, why);
    return 0;
}

int cmd_step(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    long n = 1;
    if (argc >= 2 && !args_long(argv[1], 1, 1000000, &n))
        return repl_errf(r, "step: '%s' is not a count in 1..1000000", argv[1]);
    return run_mode(r, XF_RUN_STEP, (int)n);
}

int cmd_next(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)argc;
    (void)argv;
    (void)rest;
    return run_mode(r, XF_RUN_NEXT, 0);
}

int cmd_finish(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)argc;
    (void)argv;
    (void)rest;
    return run_mode(r, XF_RUN_FINISH, 0);
}

int cmd_continue(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)argc;
    (void)argv;
    (void)rest;
    /* stopped inside `generate`: continue is the generation's, as in gdb
     * continue resumes the program, not only the current frame */
    if (gen_paused(r))
        return gen_resume(r);
    return run_mode(r, XF_RUN_CONTINUE, 0);
}

int cmd_where(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)argc;
    (void)argv;
    (void)rest;
    show_where(r, false);
    /* after a few prints one forgets that `continue` resumes a generation, not only the pass */
    if (gen_paused(r))
        repl_out(r, "(a generation is paused here: `continue` resumes it)\n");
    return 0;
}

int cmd_list(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    xf_where w;
    exec_where(r->ex, &w);
    const xf_program *p = exec_program(r->ex);
    long around = 5;
    bool all = false;
    if (argc >= 2 && strcmp(argv[1], "all") == 0)
        all = true;
    else if (argc >= 2 && !args_long(argv[1], 1, 100000, &around))
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

