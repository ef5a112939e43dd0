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
#include "print.h"
#include "repl.h"
#include "run.h"
#include "sampler.h"
#include "tensor.h"
#include "tokenizer.h"

static void show_stop(xf_repl *r, xf_stop why);

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
    repl_out(r, "pass %d: %d tokens at position 0, %d ops; stopped before %s\n", w.pass_no, n, p->n_ops, p->ops[0].name);
    return 0;
}

int cmd_token(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    xf_err err = {0};
    int32_t id;
    if (argc >= 2) {
        long v;
        if (!args_long(argv[1], 0, INT32_MAX, &v))
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
    args_piece(r, id, p, sizeof p);
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

int cmd_step(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    long n = 1;
    if (argc >= 2 && !args_long(argv[1], 1, 1000000, &n))
        return repl_errf(r, "step: '%s' is not a count >= 1", argv[1]);
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
    return run_mode(r, XF_RUN_CONTINUE, 0);
}

int cmd_where(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)argc;
    (void)argv;
    (void)rest;
    show_where(r, false);
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

/* Streams the text of token id (the model's text may hold control bytes:
 * escaped, newlines kept); -1 on a tokenizer error (in err). */
static int gen_show_text(xf_repl *r, tok_stream *ts, int32_t id, xf_err *err)
{
    const char *txt;
    size_t len;
    bool repl_char = false;
    if (tok_stream_push(ts, id, &txt, &len, &repl_char, err) != 0)
        return -1;
    char esc[1024];
    size_t st = 0;
    for (size_t i = 0; len && i <= len; i++)
        if (i == len || txt[i] == '\n') {
            tok_escape(txt + st, i - st, esc, sizeof esc);
            repl_out(r, "%s%s", esc, i < len ? "\n" : "");
            st = i + 1;
        }
    return 0;
}

/* Feeds id as the next decode pass and runs it: 0 go on, 1 stopped (the
 * context is full, a breakpoint: said), -1 failed (said). */
static int gen_feed(xf_repl *r, const xf_gen_opts *o, int32_t id)
{
    xf_err err = {0};
    xf_where wn;
    exec_where(r->ex, &wn);
    if (wn.n_past >= r->model->n_ctx) {
        if (!o->quiet)
            repl_out(r, "\n[context full at %d tokens]", r->model->n_ctx);
        return 1;
    }
    xf_stop why;
    if (exec_begin(r->ex, &id, 1, true, &err) != 0 || exec_run(r->ex, XF_RUN_CONTINUE, 0, &why, &err) != 0) {
        repl_errf(r, "%s", err.msg);
        return -1;
    }
    if (why != XF_STOP_END) {
        if (!o->quiet)
            repl_out(r, "\n");
        show_stop(r, why);
        return 1;
    }
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
            else if (ts && gen_show_text(r, ts, id, &err) != 0) {
                rc = repl_errf(r, "generate: %s", err.msg);
                k++;
                break;
            }
        }
        int st = gen_feed(r, o, id);
        if (st != 0) {
            k++;
            rc = st < 0 ? 1 : 0;
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

int cmd_generate(xf_repl *r, int argc, char **argv, const char *rest)
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
        else if (strcmp(a, "--temp") == 0 && has && args_double(argv[i + 1], &d) && d >= 0) {
            o.temp = (float)d;
            i++;
        } else if (strcmp(a, "--top-k") == 0 && has && args_long(argv[i + 1], 0, 1 << 24, &l)) {
            o.top_k = (int)l;
            i++;
        } else if (strcmp(a, "--top-p") == 0 && has && args_double(argv[i + 1], &d) && d > 0 && d <= 1) {
            o.top_p = (float)d;
            i++;
        } else if (strcmp(a, "--seed") == 0 && has && args_long(argv[i + 1], 0, LONG_MAX, &l)) {
            o.seed = (unsigned long long)l;
            i++;
        } else if (o.n < 0 && args_long(a, 0, 1 << 20, &l))
            o.n = (int)l;
        else
            return repl_errf(r, "generate: bad argument '%s' (usage: generate N [--temp T] [--top-k K] "
                                "[--top-p P] [--seed S] [--ids] [--ignore-eos])", a);
    }
    if (o.n < 0)
        return repl_errf(r, "usage: generate N [--temp T] [--top-k K] [--top-p P] [--seed S] [--ids]");
    return repl_generate(r, &o, NULL, NULL);
}

int cmd_chat(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)argc;
    (void)argv;
    if (args_need_vocab(r))
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
            int bad = !tmp || args_text(r, tmp, &sysbuf, &len);
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
    if (args_text(r, rest, &msg, &len)) {
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

