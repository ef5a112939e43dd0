/* info: the commands that set up and describe the session: load, info,
 * tokenize, break/delete, kernel, check and graph. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "exec.h"
#include "info.h"
#include "print.h"
#include "quant.h"
#include "repl.h"
#include "tokenizer.h"

static const char *arch_str(const xf_model *m) { return model_arch_name(m->arch); }

int cmd_load(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    if (argc != 2)
        return repl_errf(r, "usage: load PATH");
    return repl_load(r, args_path(argv[1])) == 0 ? 0 : 1;
}

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

int cmd_info(xf_repl *r, int argc, char **argv, const char *rest)
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
    repl_out(r, "file: %s\n", esc);
    repl_out(r, "GGUF v%u, %llu tensors, %llu metadata keys\n", m->gguf->version,
             (unsigned long long)m->gguf->n_tensors, (unsigned long long)m->gguf->n_kv);
    if (m->tok)
        repl_out(r, "vocabulary: %d tokens, pre-tokenizer %s, bos %d, eos %d\n", tok_vocab_size(m->tok),
                 tok_pre_name(m->tok), tok_bos(m->tok), tok_eos(m->tok));
    if (m->vocab_only) {
        repl_out(r, "vocabulary only: no weights (tokenize works; run, print need a model)\n");
        return 0;
    }
    repl_out(r, "architecture: %s\n", arch_str(m));
    repl_out(r, "layers %d  embd %d  heads %d  kv heads %d  head dim %d\n", m->n_layer, m->n_embd, m->n_head,
             m->n_head_kv, m->head_dim);
    repl_out(r, "ffn %d  context %d  vocab %d\n", m->n_ff, m->n_ctx, m->n_vocab);
    char e[32];
    pr_num(e, sizeof e, m->eps);
    repl_out(r, "norm eps %s", e);
    if (m->arch != XF_ARCH_GPT2) {
        pr_num(e, sizeof e, m->rope_base);
        repl_out(r, "  rope base %s (%s)", e, m->rope_mode == KERN_ROPE_NORMAL ? "pairs" : "neox");
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
    char ctx[96];
    repl_ctx_str(r, ctx, sizeof ctx);
    repl_out(r, "%s\n", ctx);
    if (r->ex)
        repl_out(r, "backend: %s, %d CPU thread%s\n", kern_backend_name(exec_backend(r->ex)), r->n_threads,
                 r->n_threads == 1 ? "" : "s");
    if (r->ex && exec_backend(r->ex) == KERN_BACKEND_CUDA) {
        int kept;
        size_t kb;
        exec_codes_kept(r->ex, &kept, &kb);
        bool blocks = false; /* a block type, whose prefill product needs codes */
        for (int t = 0; t < XF_TYPE_COUNT; t++)
            blocks |= count[t] > 0 && t != XF_TYPE_F32 && t != XF_TYPE_F16 && t != XF_TYPE_BF16;
        pr_bytes(b1, sizeof b1, (double)kb);
        if (kept)
            repl_out(r, "prefill codes: %d layer matrices kept on the device (%s)\n", kept, b1);
        else if (blocks)
            repl_out(r, "prefill codes: made in each prefill (XF_CODES=0, or the card lacked room)\n");
    }
    return 0;
}

int cmd_tokenize(xf_repl *r, int argc, char **argv, const char *rest)
{
    if (args_need_vocab(r))
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
    if (args_text(r, rest, &text, &len))
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
            args_piece(r, ids[i], p, sizeof p);
            repl_out(r, "%5zu %8d  '%s'\n", i, ids[i], p);
        }
    }
    free(ids);
    return 0;
}

/* adds the breakpoint; a condition that is not built in is tried as a Lua
 * expression. Its id, or -1 (said). */
static int break_add(xf_repl *r, const char *pattern, const char *cond)
{
    xf_err err = {0};
    int id = exec_break_add(r->ex, pattern, cond, NULL, NULL, NULL, &err);
    if (id < 0 && cond && strstr(err.msg, "unknown condition")) {
        char why[256] = "";
        void *ud = NULL;
        void (*ud_free)(void *) = NULL;
        xf_cond_fn fn = repl_lua_cond(r, cond, &ud, &ud_free, why, sizeof why);
        if (!fn) {
            repl_errf(r, "condition '%s': %s", cond, why);
            return -1;
        }
        id = exec_break_add(r->ex, pattern, cond, fn, ud, ud_free, &err);
        if (id < 0 && ud_free)
            ud_free(ud);
    }
    if (id < 0)
        repl_errf(r, "%s", err.msg);
    return id;
}

int cmd_break(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    if (argc < 2 || (argc >= 3 && (strcmp(argv[2], "if") != 0 || argc < 4)))
        return repl_errf(r, "usage: break PATTERN [if COND]");
    /* the words after `if`, any length */
    char *cond = argc >= 4 ? args_join(argc - 3, argv + 3, false) : NULL;
    if (argc >= 4 && !cond)
        return repl_errf(r, "out of memory");
    int id = break_add(r, argv[1], cond);
    if (id >= 0) {
        char ep[256], ec[512];
        pr_escape(ep, sizeof ep, argv[1], strlen(argv[1]));
        pr_escape(ec, sizeof ec, cond ? cond : "", cond ? strlen(cond) : 0);
        repl_out(r, "breakpoint %d: %s%s%s\n", id, ep, cond ? " if " : "", ec);
    }
    free(cond);
    return id < 0 ? 1 : 0;
}

int cmd_delete(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    xf_err err = {0};
    long id = -1;
    if (argc >= 2 && !args_long(argv[1], 1, INT_MAX, &id))
        return repl_errf(r, "delete: '%s' is not a breakpoint number", argv[1]);
    if (exec_break_delete(r->ex, (int)id, &err) != 0)
        return repl_errf(r, "%s", err.msg);
    if (id < 0)
        repl_out(r, "all breakpoints deleted\n");
    else
        repl_out(r, "breakpoint %ld deleted\n", id);
    return 0;
}

int cmd_kernel(xf_repl *r, int argc, char **argv, const char *rest)
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
    /* 80 columns: names up to blk.NN.attn_norm, %.6g numbers */
    repl_out(r, "%-16s %-7s %-7s %-11s %-11s %-11s %s\n", "op", "kind", "variant", "max_abs", "nmse", "cosine",
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
        repl_out(r, "%-16s %-7s %-7s %-11s %-11s %-11s %s\n", o->name, kern_op_name(o->kind), rows[i].variant, a,
                 b, c, rows[i].over ? (i == first ? "OVER <-" : "OVER") : "ok");
    }
    if (first >= 0) {
        const xf_op *o = &p->ops[rows[first].op];
        repl_out(r, "first op over tolerance: %s (kernel %s/%s/%s)\n", o->name, kern_op_name(o->kind),
                 kern_backend_name(exec_backend(r->ex)), rows[first].variant);
    } else
        repl_out(r, "%d ops checked, none over tolerance\n", n);
}

int cmd_check(xf_repl *r, int argc, char **argv, const char *rest)
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

int cmd_graph(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    static const char *const names[] = {"off", "on", "unfused", "mega"};
    if (argc == 2) {
        int m = -1;
        for (int i = 0; i < 4; i++)
            if (strcmp(argv[1], names[i]) == 0)
                m = i;
        if (m < 0)
            return repl_errf(r, "usage: graph [on|off|unfused|mega]");
        exec_set_graph_mode(r->ex, (xf_graph_mode)m);
    } else if (argc != 1)
        return repl_errf(r, "usage: graph [on|off|unfused|mega]");
    xf_graph_stats st;
    exec_graph_stats(r->ex, &st);
    repl_out(r, "graphs %s (%s backend); captures %ld, replays %ld, fallbacks %ld\n", names[exec_graph_mode(r->ex)],
             kern_backend_name(exec_backend(r->ex)), st.captures, st.replays, st.fallbacks);
    repl_out(r, "nodes of the last pass graph: %zu\n", st.nodes);
    if (st.mega_launches > 0)
        repl_out(r, "megakernel: %d kernels of it run as phases of %d launch%s\n", st.mega_phases,
                 st.mega_launches, st.mega_launches == 1 ? "" : "es");
    char wb[160], t[700];
    int on_dev, splits;
    exec_graph_watch_plan(r->ex, &on_dev, &splits);
    if (on_dev || splits || st.watch_trips) {
        snprintf(t, sizeof t,
                 "breakpoints: %d op%s checked inside the graph (nan, inf, absmax>X), %d split%s it (read on the "
                 "host); conditions that held in a graph: %ld (that range then ran again op by op to the stop)",
                 on_dev, on_dev == 1 ? "" : "s", splits, splits == 1 ? "" : "s", st.watch_trips);
        repl_wrap(r, t, strlen(t), 0, 2, repl_width(r));
    }
    const char *why = exec_graph_why(r->ex, wb, sizeof wb);
    int w = repl_width(r);
    if (why) {
        snprintf(t, sizeof t, "a decode pass runs op by op: %s", why);
        repl_wrap(r, t, strlen(t), 0, 2, w);
    } else {
        xf_graph_mode gm = exec_graph_mode(r->ex);
        repl_out(r, "a decode pass run by continue or finish runs as graphs%s\n",
                 gm == XF_GRAPH_UNFUSED ? ", one kernel per op"
                 : gm == XF_GRAPH_MEGA  ? ", the fused kernels as phases of a megakernel"
                                        : "");
        if (gm == XF_GRAPH_ON || gm == XF_GRAPH_MEGA) {
            char fused[512], unfused[512];
            exec_graph_fusions(r->ex, fused, unfused, sizeof fused);
            snprintf(t, sizeof t, "fused: %s", *fused ? fused : "none");
            repl_wrap(r, t, strlen(t), 0, 2, w);
            if (*unfused) {
                snprintf(t, sizeof t, "not fused (the selected variant is not one the fusion reproduces): %s",
                         unfused);
                repl_wrap(r, t, strlen(t), 0, 2, w);
            }
        }
    }
    const char *awhy = exec_attn_fuse_why(r->ex, wb, sizeof wb);
    if (awhy)
        snprintf(t, sizeof t, "a prefill's attention runs op by op: %s", awhy);
    else
        snprintf(
            t, sizeof t,
            "a prefill run by continue or finish runs each layer's kq, kq_soft and kqv as one call (%s; "
            "kq and kq_soft computed when first read; a layer whose kq or kq_soft a breakpoint names runs "
            "them op by op)",
            exec_backend(r->ex) == KERN_BACKEND_CUDA
                ? "no score or weight read or written past the causal mask"
                : "two rows of scores at a time");
    repl_wrap(r, t, strlen(t), 0, 2, w);
    const char *path = exec_mm_path(r->ex, t, sizeof t);
    if (path)
        repl_wrap(r, path, strlen(path), 0, 2, w);
    if (exec_backend(r->ex) == KERN_BACKEND_CUDA) {
        const char *mwhy = exec_mm_fuse_why(r->ex, wb, sizeof wb);
        if (mwhy)
            snprintf(t, sizeof t, "a prefill's matmuls run one launch each: %s", mwhy);
        else
            snprintf(
                t, sizeof t,
                "a prefill run by continue or finish runs a layer's matmuls of one input (gate and up; q, k "
                "and v) in one launch where each alone would run on the tensor cores with its codes kept "
                "(the same bits: each cut in k as alone); %ld such launch%s so far",
                st.mm_fused, st.mm_fused == 1 ? "" : "es");
        repl_wrap(r, t, strlen(t), 0, 2, w);
    }
    return 0;
}

