/* lua_xf: the xf.* functions (scripts/README.md is the user reference),
 * except breakpoints and the on-op hook (lua_cond.c): model and passes,
 * stepping, tensors and diff, kernels, xf.cmd, generation and tokens, and
 * the checks they share (a model, a pass, a vocabulary, not inside a
 * callback). Each function raises a Lua error with the text the matching
 * command would print. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "exec.h"
#include "lua_internal.h"
#include "cmdline.h"
#include "commands.h"
#include "program.h"
#include "run.h"
#include "view.h"
#include "refdump.h"
#include "repl.h"
#include "tensor.h"
#include "tokenizer.h"

/* --- common checks ----------------------------------------------------------------- */

void lx_no_callback(lua_State *L, lx_ctx *c, const char *fn)
{
    if (c->in_callback)
        luaL_error(L, "%s: not allowed inside a breakpoint condition or on_op hook (the stepper is running an op)",
                   fn);
}

xf_exec *lx_need_weights(lua_State *L, lx_ctx *c, const char *fn)
{
    if (!c->r->model)
        luaL_error(L, "%s: no model loaded (xf.load(PATH))", fn);
    if (!c->r->ex)
        luaL_error(L, "%s: %s has no weights (vocabulary only): load a model", fn, c->r->model->path);
    return c->r->ex;
}

static xf_exec *lx_need_pass(lua_State *L, lx_ctx *c, const char *fn)
{
    xf_exec *ex = lx_need_weights(L, c, fn);
    xf_where w;
    exec_where(ex, &w);
    if (!w.active)
        luaL_error(L, "%s: no pass yet (start one with xf.run(TEXT) or xf.run({ids}))", fn);
    return ex;
}

static const xf_tokenizer *lx_need_tok(lua_State *L, lx_ctx *c, const char *fn)
{
    if (!c->r->model)
        luaL_error(L, "%s: no model loaded (xf.load(PATH))", fn);
    if (!c->r->model->tok)
        luaL_error(L, "%s: %s has no vocabulary", fn, c->r->model->path);
    return c->r->model->tok;
}

/* --- the xf module: state ------------------------------------------------------------ */

static const char *lx_stop_name(xf_stop why)
{
    switch (why) {
    case XF_STOP_STEP: return "step";
    case XF_STOP_BREAK: return "break";
    case XF_STOP_CHECK: return "check";
    case XF_STOP_HOOK: return "hook";
    case XF_STOP_END: return "end";
    case XF_STOP_INTERRUPT: return "interrupt";
    default: return NULL;
    }
}

static void lx_push_where(lua_State *L, lx_ctx *c, const char *stop)
{
    lua_createtable(L, 0, 14);
    xf_exec *ex = c->r->ex;
    xf_where w = {0};
    if (ex)
        exec_where(ex, &w);
    lx_set_bool(L, "active", w.active);
    lx_set_int(L, "pass", w.pass_no);
    if (stop)
        lx_set_str(L, "stop", stop);
    if (!w.active)
        return;
    const xf_program *p = exec_program(ex);
    lx_set_int(L, "pos", w.pos0);
    lx_set_int(L, "n_tokens", w.n_tokens);
    lx_set_int(L, "n_past", w.n_past);
    lx_set_int(L, "pc", w.pc);
    lx_set_int(L, "n_ops", w.n_ops);
    lx_set_int(L, "last", w.last);
    lx_set_str(L, "kind", w.pos0 == 0 ? "prefill" : "decode");
    lx_set_bool(L, "complete", w.pc >= w.n_ops);
    if (w.last >= 0) {
        const xf_op *o = &p->ops[w.last];
        lx_set_str(L, "op", o->name);
        lx_set_int(L, "layer", o->layer);
        lx_set_str(L, "op_kind", kern_op_name(o->kind));
    }
    if (w.pc < w.n_ops)
        lx_set_str(L, "next", p->ops[w.pc].name);
}

static void lx_push_model(lua_State *L, const xf_repl *r)
{
    const xf_model *m = r->model;
    lua_createtable(L, 0, 14);
    lx_set_str(L, "path", r->model_path ? r->model_path : m->path);
    lx_set_str(L, "name", m->name);
    lx_set_bool(L, "vocab_only", m->vocab_only);
    lx_set_int(L, "n_vocab", m->n_vocab);
    if (m->vocab_only)
        return;
    lx_set_str(L, "arch", model_arch_name(m->arch));
    lx_set_int(L, "n_layer", m->n_layer);
    lx_set_int(L, "n_embd", m->n_embd);
    lx_set_int(L, "n_head", m->n_head);
    lx_set_int(L, "n_head_kv", m->n_head_kv);
    lx_set_int(L, "head_dim", m->head_dim);
    lx_set_int(L, "n_ff", m->n_ff);
    lx_set_int(L, "n_ctx", m->n_ctx);
    lx_set_num(L, "eps", m->eps);
    if (r->ex)
        lx_set_str(L, "backend", kern_backend_name(exec_backend(r->ex)));
}

static int xl_load(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    const char *path = luaL_checkstring(L, 1);
    lx_no_callback(L, c, "xf.load");
    char why[512];
    if (lx_file_check_regular(path, why, sizeof why)) /* a FIFO would block in the engine's open */
        return luaL_error(L, "xf.load: %s", why);
    lx_box *b = lx_new_box(L);
    lx_cap s;
    lx_cap_begin(c->r, &b->sb, &s);
    int rc;
    LX_ENGINE(c, rc = repl_load(c->r, path));
    lx_cap_end(c->r, &s);
    if (rc == 0) {
        c->load_gen++; /* even when the allocator hands back the same addresses */
        c->pass_gen++;
    }
    lx_gen_sync(c);
    if (rc != 0)
        return lx_error_from(L, "xf.load", &b->sb);
    lx_push_model(L, c->r);
    return 1;
}

static int xl_model(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    if (!c->r->model)
        return 0;
    lx_push_model(L, c->r);
    return 1;
}

static int xl_where(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    lx_gen_sync(c);
    lx_push_where(L, c, NULL);
    return 1;
}

/* ids of a Lua array into Lua-owned memory (freed by the GC whatever happens) */
static int32_t *lx_ids_arg(lua_State *L, int idx, int *n_out)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    if (n > INT32_MAX / 4)
        luaL_error(L, "too many ids (%I)", n);
    int32_t *ids = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *ids, 0);
    for (lua_Integer i = 0; i < n; i++) {
        lua_rawgeti(L, idx, i + 1);
        int ok;
        lua_Integer v = lua_tointegerx(L, -1, &ok);
        if (!ok || v < 0 || v > INT32_MAX)
            luaL_error(L, "ids[%I] is not a token id (an integer >= 0)", i + 1);
        ids[i] = (int32_t)v;
        lua_pop(L, 1);
    }
    *n_out = (int)n;
    return ids;
}

static int xl_run(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    xf_exec *ex = lx_need_weights(L, c, "xf.run");
    lx_no_callback(L, c, "xf.run");
    int32_t *ids;
    int n;
    if (lua_type(L, 1) == LUA_TTABLE) {
        ids = lx_ids_arg(L, 1, &n);
    } else {
        size_t len;
        const char *text = luaL_checklstring(L, 1, &len);
        const xf_tokenizer *tok = lx_need_tok(L, c, "xf.run");
        lx_box *b = lx_new_box(L);
        size_t nn;
        xf_err err = {0};
        int32_t *tmp;
        if (tok_encode(tok, text, len, true, &tmp, &nn, &err) != 0)
            return luaL_error(L, "xf.run: %s", err.msg);
        b->p = tmp;
        ids = tmp;
        n = (int)nn;
    }
    if (n == 0)
        return luaL_error(L, "xf.run: the prompt has no tokens");
    xf_err err = {0};
    int rc;
    LX_ENGINE(c, rc = exec_begin(ex, ids, n, false, &err));
    lx_gen_sync(c);
    if (rc != 0)
        return luaL_error(L, "xf.run: %s", err.msg);
    lx_push_where(L, c, NULL);
    return 1;
}

static int lx_run_mode(lua_State *L, const char *fn, xf_run_mode mode, int count)
{
    lx_ctx *c = lx_get(L);
    xf_exec *ex = lx_need_pass(L, c, fn);
    lx_no_callback(L, c, fn);
    if (c->r->interrupt)
        return luaL_error(L, "%s: interrupted (Ctrl-C)", fn);
    xf_stop why;
    xf_err err = {0};
    lua_State *saved = c->cur;
    c->cur = L; /* callbacks run on this thread */
    int rc;
    LX_ENGINE(c, rc = exec_run(ex, mode, count, &why, &err));
    c->cur = saved;
    lx_gen_sync(c);
    if (rc != 0)
        return luaL_error(L, "%s: %s", fn, err.msg);
    if (why == XF_STOP_INTERRUPT) {
        c->killed = true; /* the whole script stops, as at the prompt */
        snprintf(c->kill_msg, sizeof c->kill_msg, "interrupted (Ctrl-C)");
        return lx_raise_killed(L, c, 1);
    }
    lx_push_where(L, c, lx_stop_name(why));
    if (why == XF_STOP_BREAK && exec_last_break(ex))
        lx_set_int(L, "break_id", exec_last_break(ex)->id);
    return 1;
}

static int xl_step(lua_State *L)
{
    lua_Integer n = luaL_optinteger(L, 1, 1);
    luaL_argcheck(L, n >= 1 && n <= 100000000, 1, "step count must be >= 1");
    return lx_run_mode(L, "xf.step", XF_RUN_STEP, (int)n);
}

static int xl_next(lua_State *L) { return lx_run_mode(L, "xf.next", XF_RUN_NEXT, 0); }
static int xl_finish(lua_State *L) { return lx_run_mode(L, "xf.finish", XF_RUN_FINISH, 0); }
static int xl_continue(lua_State *L) { return lx_run_mode(L, "xf.continue", XF_RUN_CONTINUE, 0); }

static int xl_ops(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    xf_exec *ex = lx_need_weights(L, c, "xf.ops");
    const xf_program *p = exec_program(ex);
    lua_createtable(L, p->n_ops, 0);
    for (int i = 0; i < p->n_ops; i++) {
        const xf_op *o = &p->ops[i];
        lua_createtable(L, 0, 7);
        lx_set_int(L, "index", i);
        lx_set_str(L, "name", o->name);
        lx_set_str(L, "kind", kern_op_name(o->kind));
        lx_set_int(L, "layer", o->layer);
        lx_push_shape(L, o->ndim, o->shape);
        lua_setfield(L, -2, "shape");
        lx_set_bool(L, "ready", exec_tensor_ready(ex, i));
        const kern_variant *v = exec_kernel_selected(ex, o->kind);
        lx_set_str(L, "variant", v ? v->name : "?");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* --- tensors, diff ----------------------------------------------------------------- */

static int xl_tensor(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    const char *name = luaL_checkstring(L, 1);
    lx_gen_sync(c);
    lx_push_named(L, c, name);
    return 1;
}

static int xl_diff(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    lx_gen_sync(c);
    lx_tensor *a = lx_tensor_arg(L, c, 1);
    lx_tensor *b = lx_tensor_arg(L, c, 2);
    if (!tensor_shape_same(a->ndim > 4 ? 4 : a->ndim, a->shape, b->ndim > 4 ? 4 : b->ndim, b->shape)) {
        char s1[96], s2[96];
        tensor_shape_str(a->ndim > 4 ? 4 : a->ndim, a->shape, s1, sizeof s1);
        tensor_shape_str(b->ndim > 4 ? 4 : b->ndim, b->shape, s2, sizeof s2);
        return luaL_error(L, "xf.diff: %s %s and %s %s differ in %s", a->name, s1, b->name, s2,
                          a->numel != b->numel ? "size" : "shape");
    }
    /* the same tolerance `diff` uses: the op kind's, else 1e-4 x max|B| */
    double tol = 1e-4;
    if (a->op >= 0 && c->r->ex && a->op < exec_program(c->r->ex)->n_ops)
        tol = exec_tolerance(exec_program(c->r->ex)->ops[a->op].kind);
    if (!lua_isnoneornil(L, 3)) {
        tol = luaL_checknumber(L, 3);
        luaL_argcheck(L, tol >= 0 && isfinite(tol), 3, "relative tolerance must be a number >= 0");
    }
    xf_diff d;
    tensor_diff_rel(a->data, b->data, (size_t)a->numel, tol, &d);
    lua_createtable(L, 0, 18);
    lx_set_num(L, "max_abs", d.max_abs);
    lx_set_num(L, "max_rel", d.max_rel);
    lx_set_num(L, "nmse", d.nmse);
    lx_set_num(L, "cosine", d.cosine);
    lx_set_num(L, "ref_absmax", d.ref_absmax);
    lx_set_int(L, "nan", d.nan_a + d.nan_b);
    lx_set_int(L, "inf", d.inf_a + d.inf_b);
    lx_set_int(L, "nan_a", d.nan_a);
    lx_set_int(L, "nan_b", d.nan_b);
    lx_set_int(L, "inf_a", d.inf_a);
    lx_set_int(L, "inf_b", d.inf_b);
    lx_set_int(L, "mismatch_nonfinite", d.mismatch_nonfinite);
    lx_set_int(L, "first_over", d.first_over);
    lx_set_int(L, "n_over", d.n_over);
    lx_set_int(L, "n", d.n);
    lx_set_num(L, "tol", d.tol);
    lx_set_num(L, "tol_rel", tol);
    lx_set_bool(L, "ok", d.n_over == 0);
    if (a->ndim == 2 && b->ndim == 2 && strcmp(a->name, "logits") == 0)
        lx_set_num(L, "top1", tensor_top1_agree(a->data, b->data, (size_t)a->shape[0], (size_t)a->shape[1]));
    return 1;
}

static int xl_ref_load(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    const char *path = luaL_checkstring(L, 1);
    xf_exec *ex = lx_need_weights(L, c, "xf.ref_load");
    lx_no_callback(L, c, "xf.ref_load");
    char why[512];
    if (lx_file_check_regular(path, why, sizeof why)) /* a FIFO would block in the engine's open */
        return luaL_error(L, "xf.ref_load: %s", why);
    xf_err err = {0};
    int lrc;
    LX_ENGINE(c, lrc = exec_ref_load(ex, path, &err));
    if (lrc != 0)
        return luaL_error(L, "xf.ref_load: %s", err.msg);
    lua_pushinteger(L, (lua_Integer)refdump_count(exec_ref(ex)));
    return 1;
}

static int xl_ref_names(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    const refdump *ref = c->r->ex ? exec_ref(c->r->ex) : NULL;
    if (!ref)
        return luaL_error(L, "xf.ref_names: no reference loaded: xf.ref_load(FILE.safetensors)");
    size_t n = refdump_count(ref);
    lua_createtable(L, n > INT32_MAX ? 0 : (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, refdump_at(ref, i)->name);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* --- kernels ------------------------------------------------------------------------ */

static int xl_kernel(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    const char *op = luaL_checkstring(L, 1);
    const char *variant = luaL_checkstring(L, 2);
    xf_exec *ex = lx_need_weights(L, c, "xf.kernel");
    lx_no_callback(L, c, "xf.kernel");
    int k = strcmp(op, "all") == 0 ? -1 : kern_op_from_name(op);
    if (k < 0 && strcmp(op, "all") != 0)
        return luaL_error(L, "xf.kernel: unknown op kind '%s' (see xf.kernels())", op);
    xf_err err = {0};
    if (exec_kernel_select(ex, k, variant, &err) != 0)
        return luaL_error(L, "xf.kernel: %s", err.msg);
    return 0;
}

static int xl_kernels(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    xf_exec *ex = lx_need_weights(L, c, "xf.kernels");
    const kern_variant *vs[256];
    int n = exec_variants(ex, vs, 256);
    if (n > 256)
        n = 256;
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_createtable(L, 0, 5);
        lx_set_str(L, "op", kern_op_name(vs[i]->op));
        lx_set_str(L, "backend", kern_backend_name(vs[i]->backend));
        lx_set_str(L, "name", vs[i]->name);
        lx_set_bool(L, "selected", exec_kernel_selected(ex, vs[i]->op) == vs[i]);
        lx_set_str(L, "doc", vs[i]->doc ? vs[i]->doc : "");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* --- commands, generation, tokens ---------------------------------------------------- */

static int xl_cmd(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    size_t len;
    const char *line = luaL_checklstring(L, 1, &len);
    lx_no_callback(L, c, "xf.cmd");
    lx_box *b = lx_new_box(L); /* before the parse: it may raise (memory) */
    /* One parse, checked and run: the sandbox judges the command that
     * dispatch will run (a CR, LF or NUL inside the line is an error, never
     * a second command that slips past the check). */
    char why[512];
    repl_line pl;
    if (repl_line_parse(line, len, &pl, why, sizeof why) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "xf.cmd: %s", why);
        return 2;
    }
    if (!c->unsafe && pl.cmd && (pl.cmd->flags & (CMD_READS_FILES | CMD_WRITES_FILES))) {
        /* "no io" holds for commands too: files are read only through
         * xf.load / xf.ref_load, the checked readers, and never written */
        lua_pushnil(L);
        lua_pushfstring(L, "xf.cmd: `%s` %s files and is disabled in the sandbox (start xfdb with "
                           "--unsafe-lua to allow it)", pl.cmd->name,
                        (pl.cmd->flags & CMD_WRITES_FILES) ? "writes" : "reads");
        repl_line_free(&pl);
        return 2;
    }
    if (c->r->interrupt) {
        repl_line_free(&pl);
        return luaL_error(L, "xf.cmd: interrupted (Ctrl-C)");
    }
    lx_cap s;
    lx_cap_begin(c->r, &b->sb, &s);
    lua_State *saved = c->cur;
    c->cur = L;
    int rc;
    c->r->stopped_by_interrupt = false;
    LX_ENGINE(c, rc = repl_exec_parsed(c->r, &pl));
    repl_line_free(&pl);
    c->cur = saved;
    lx_cap_end(c->r, &s);
    lx_gen_sync(c);
    const char *text = b->sb.s ? b->sb.s : "";
    /* exec_run consumed the Ctrl-C flag; the command noted that it stopped there */
    if (c->r->stopped_by_interrupt) {
        c->killed = true;
        snprintf(c->kill_msg, sizeof c->kill_msg, "interrupted (Ctrl-C)");
        return lx_raise_killed(L, c, 1);
    }
    if (rc == 0) {
        lua_pushlstring(L, text, b->sb.len);
        return 1;
    }
    lua_pushnil(L);
    lx_push_errors(L, &b->sb);
    lua_pushlstring(L, text, b->sb.len);
    return 3;
}

static double lx_opt_field(lua_State *L, int t, const char *k, double def)
{
    if (lua_getfield(L, t, k) == LUA_TNIL) {
        lua_pop(L, 1);
        return def;
    }
    int ok;
    double v = lua_tonumberx(L, -1, &ok);
    if (!ok)
        luaL_error(L, "xf.generate: opts.%s must be a number", k);
    lua_pop(L, 1);
    return v;
}

static lua_Integer lx_opt_int_field(lua_State *L, int t, const char *k, lua_Integer def)
{
    if (lua_getfield(L, t, k) == LUA_TNIL) {
        lua_pop(L, 1);
        return def;
    }
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok)
        luaL_error(L, "xf.generate: opts.%s must be an integer", k);
    lua_pop(L, 1);
    return v;
}

static int xl_generate(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0 && n <= (1 << 20), 1, "token count must be in 0..1048576");
    xf_gen_opts o = {.n = (int)n, .temp = 0, .top_k = 0, .top_p = 1, .seed = 0, .quiet = true};
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        double temp = lx_opt_field(L, 2, "temp", 0), top_p = lx_opt_field(L, 2, "top_p", 1);
        lua_Integer top_k = lx_opt_int_field(L, 2, "top_k", 0), seed = lx_opt_int_field(L, 2, "seed", 0);
        if (!(temp >= 0) || !isfinite(temp))
            return luaL_error(L, "xf.generate: opts.temp must be >= 0");
        if (top_k < 0 || top_k > (1 << 24))
            return luaL_error(L, "xf.generate: opts.top_k must be an integer >= 0");
        if (!(top_p > 0 && top_p <= 1))
            return luaL_error(L, "xf.generate: opts.top_p must be in (0, 1]");
        if (seed < 0)
            return luaL_error(L, "xf.generate: opts.seed must be an integer >= 0");
        o.temp = (float)temp;
        o.top_k = (int)top_k;
        o.top_p = (float)top_p;
        o.seed = (unsigned long long)seed;
    }
    lx_need_pass(L, c, "xf.generate");
    lx_no_callback(L, c, "xf.generate");
    lx_box *b = lx_new_box(L);
    lx_box *tb = lx_new_box(L); /* both before the results, which must be the top two values */
    lx_cap s;
    lx_cap_begin(c->r, &b->sb, &s);
    lua_State *saved = c->cur;
    c->cur = L;
    int32_t *ids = NULL;
    int n_ids = 0;
    int rc;
    LX_ENGINE(c, rc = repl_generate(c->r, &o, &ids, &n_ids));
    c->cur = saved;
    lx_cap_end(c->r, &s);
    b->p = ids;
    lx_gen_sync(c);
    /* Ctrl-C stops the script, as at xf.continue: not an error a pcall could swallow */
    if (rc != 0 && b->sb.s && strstr(b->sb.s, "interrupted (Ctrl-C)")) {
        c->killed = true;
        snprintf(c->kill_msg, sizeof c->kill_msg, "interrupted (Ctrl-C)");
        return lx_raise_killed(L, c, 1);
    }
    if (rc != 0)
        return lx_error_from(L, "xf.generate", &b->sb);
    lua_createtable(L, n_ids, 0);
    for (int i = 0; i < n_ids; i++) {
        lua_pushinteger(L, ids[i]);
        lua_rawseti(L, -2, i + 1);
    }
    if (c->r->model->tok) {
        char *txt = NULL;
        size_t len = 0;
        xf_err err = {0};
        if (tok_decode(c->r->model->tok, ids, (size_t)n_ids, &txt, &len, &err) != 0)
            return luaL_error(L, "xf.generate: %s", err.msg);
        tb->p = txt;
        lua_pushlstring(L, txt, len);
    } else
        lua_pushliteral(L, "");
    return 2;
}

/* xf.chat_format({{role=, content=}, ...} [, add_generation_prompt=true]) ->
 * the prompt text by the model's chat template (ChatML), to run with specials */
static int xl_chat_format(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    bool gen = lua_isnoneornil(L, 2) ? true : lua_toboolean(L, 2);
    const xf_tokenizer *tok = lx_need_tok(L, c, "xf.chat_format");
    lua_Integer n = luaL_len(L, 1);
    luaL_argcheck(L, n >= 1 && n <= 1024, 1, "1..1024 messages");
    lx_box *b = lx_new_box(L);
    tok_chat_msg *msgs = calloc((size_t)n, sizeof *msgs);
    if (!msgs)
        return luaL_error(L, "xf.chat_format: out of memory");
    b->p = msgs;
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_geti(L, 1, i) != LUA_TTABLE)
            return luaL_error(L, "xf.chat_format: message %d is not a table {role=, content=}", (int)i);
        if (lua_getfield(L, -1, "role") != LUA_TSTRING || lua_getfield(L, -2, "content") != LUA_TSTRING)
            return luaL_error(L, "xf.chat_format: message %d needs string fields role and content", (int)i);
        /* the strings stay referenced by the message tables in argument 1 */
        msgs[i - 1].content = lua_tostring(L, -1);
        msgs[i - 1].role = lua_tostring(L, -2);
        lua_pop(L, 3);
    }
    char *out = NULL;
    xf_err err = {0};
    if (tok_chat_format(tok, msgs, (size_t)n, gen, &out, &err) != 0)
        return luaL_error(L, "xf.chat_format: %s", err.msg);
    lua_pushstring(L, out);
    free(out);
    return 1;
}

static int xl_tokenize(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    bool special = lua_isnoneornil(L, 2) ? true : lua_toboolean(L, 2);
    const xf_tokenizer *tok = lx_need_tok(L, c, "xf.tokenize");
    lx_box *b = lx_new_box(L);
    int32_t *ids;
    size_t n;
    xf_err err = {0};
    if (tok_encode(tok, text, len, special, &ids, &n, &err) != 0)
        return luaL_error(L, "xf.tokenize: %s", err.msg);
    b->p = ids;
    lua_createtable(L, n > INT32_MAX ? 0 : (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_pushinteger(L, ids[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int xl_detokenize(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    const xf_tokenizer *tok = lx_need_tok(L, c, "xf.detokenize");
    int n;
    int32_t *ids = lx_ids_arg(L, 1, &n);
    lx_box *b = lx_new_box(L);
    char *out;
    size_t len;
    xf_err err = {0};
    if (tok_decode(tok, ids, (size_t)n, &out, &len, &err) != 0)
        return luaL_error(L, "xf.detokenize: %s", err.msg);
    b->p = out;
    lua_pushlstring(L, out, len);
    return 1;
}

static int xl_raw(lua_State *L)
{
    char buf[64];
    pr_raw(buf, sizeof buf, luaL_checknumber(L, 1));
    lua_pushstring(L, buf);
    return 1;
}

static int xl_show(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    int n = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->show_ref);
    lua_insert(L, 1);
    lua_call(L, n, 1);
    return 1;
}

static const luaL_Reg k_xf_funcs[] = {
    {"load", xl_load},         {"model", xl_model},
    {"run", xl_run},           {"step", xl_step},
    {"next", xl_next},         {"finish", xl_finish},
    {"continue", xl_continue}, {"where", xl_where},
    {"ops", xl_ops},           {"tensor", xl_tensor},
    {"diff", xl_diff},         {"ref_load", xl_ref_load},
    {"ref_names", xl_ref_names}, {"kernel", xl_kernel},
    {"kernels", xl_kernels},   {"brk", xl_brk},
    {"delete", xl_delete},     {"on_op", xl_on_op},
    {"set", xl_set},           {"ablate", xl_ablate},     {"on", xl_on},
    {"cmd", xl_cmd},           {"generate", xl_generate}, {"chat_format", xl_chat_format},
    {"tokenize", xl_tokenize}, {"detokenize", xl_detokenize},
    {"raw", xl_raw},           {"show", xl_show},
    {NULL, NULL},
};


void lx_xf_open(lua_State *L) { luaL_newlib(L, k_xf_funcs); }
