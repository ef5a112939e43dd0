/* model_ref.h: what the model-against-reference tests (test_qwen3.c,
 * test_qwen2_mxfp4.c) share: reading a reference dump, running a prompt
 * and greedy decode passes on a backend with one kernel selection, and
 * comparing every canonical tensor and the greedy tokens with the dump
 * (DESIGN.md Testing: within 1e-4 x max|ref|, tokens identical). static
 * inline, as gguf_bytes.h: each program uses a part, unused ones must not
 * warn. */
#ifndef XF_TESTS_MODEL_REF_H
#define XF_TESTS_MODEL_REF_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "exec.h"
#include "gguf.h"
#include "gguf_writer.h"
#include "model.h"
#include "quant.h"
#include "refdump.h"
#include "testutil.h"

#define MR_TOL 1e-4 /* the F32 contract of DESIGN.md, x max|ref| */
#define MR_MAX_TOK 64

static inline int mr_tokens(const refdump *ref, const char *name, int32_t *tok, int cap)
{
    xf_err err = {0};
    const refdump_tensor *t = refdump_find(ref, name);
    if (!t)
        fail_msg("%s: no tensor %s in the reference", refdump_path(ref), name);
    int n = (int)refdump_numel(t);
    assert_true(n > 0 && n <= cap);
    assert_int_equal(refdump_read_i32(ref, t, tok, &err), 0);
    return n;
}

static inline float *mr_ref(const refdump *ref, const char *name, int64_t numel)
{
    xf_err err = {0};
    const refdump_tensor *t = refdump_find(ref, name);
    if (!t)
        fail_msg("%s: no tensor %s in the reference", refdump_path(ref), name);
    assert_int_equal(refdump_numel(t), numel);
    float *v = malloc((size_t)numel * sizeof *v);
    assert_non_null(v);
    assert_int_equal(refdump_read_f32(ref, t, v, &err), 0);
    return v;
}

/* op's output on the host, NaN-poisoned first so that an unwritten tensor fails */
static inline float *mr_op(xf_exec *ex, int op)
{
    xf_err err = {0};
    const xf_program *p = exec_program(ex);
    float *v = malloc((size_t)p->ops[op].numel * sizeof *v);
    assert_non_null(v);
    tu_poison(v, (size_t)p->ops[op].numel);
    if (exec_tensor_read(ex, op, v, &err) != 0)
        fail_msg("%s: %s", p->ops[op].name, err.msg);
    return v;
}

static inline int32_t mr_argmax(const float *v, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

/* a prompt pass of tok[0..n) on backend with every op's variant `variant` */
static inline xf_exec *mr_prompt(xf_model *m, kern_backend be, const char *variant, int threads, const int32_t *tok,
                                 int n)
{
    xf_err err = {0};
    xf_exec *ex = exec_new(m, be, threads, &err);
    if (!ex)
        fail_msg("exec_new: %s", err.msg);
    if (exec_kernel_select(ex, -1, variant, &err) != 0)
        fail_msg("kernel all %s: %s", variant, err.msg);
    assert_int_equal(exec_begin(ex, tok, n, false, &err), 0);
    xf_stop why;
    if (exec_run(ex, XF_RUN_FINISH, 0, &why, &err) != 0)
        fail_msg("prompt pass: %s", err.msg);
    assert_int_equal(why, XF_STOP_END);
    return ex;
}

/* token t as one decode pass at want_pos, run to the end */
static inline void mr_decode(xf_exec *ex, int32_t t, int want_pos)
{
    xf_err err = {0};
    xf_stop why;
    assert_int_equal(exec_begin(ex, &t, 1, true, &err), 0);
    xf_where w;
    exec_where(ex, &w);
    assert_int_equal(w.pos0, want_pos);
    if (exec_run(ex, XF_RUN_FINISH, 0, &why, &err) != 0)
        fail_msg("decode at %d: %s", want_pos, err.msg);
    assert_int_equal(why, XF_STOP_END);
}

/* The model file against its reference dump on one backend and selection:
 * every op of the prompt pass within MR_TOL x max|ref| (and every tensor
 * of the dump compared but the token and gen.logits records), then greedy
 * decoding with the KV cache: each token HF's, and where the dump has
 * gen.logits the logits that chose it within MR_TOL. Returns the worst
 * error; worst_name[64] gets its tensor's name. */
static inline double mr_check(const char *model_path, const char *ref_path, kern_backend be, const char *variant,
                              int threads, char *worst_name /* [64] */)
{
    xf_err err = {0};
    xf_model *m = model_load(model_path, &err);
    if (!m)
        fail_msg("%s", err.msg);
    refdump *ref = refdump_open(ref_path, &err);
    if (!ref)
        fail_msg("%s", err.msg);
    int32_t tok[MR_MAX_TOK], want[MR_MAX_TOK];
    int n = mr_tokens(ref, "prompt.tokens", tok, MR_MAX_TOK);
    xf_exec *ex = mr_prompt(m, be, variant, threads, tok, n);
    const xf_program *p = exec_program(ex);
    const char *bn = kern_backend_name(be);
    double worst = 0;
    worst_name[0] = '\0';
    for (int i = 0; i < p->n_ops; i++) {
        float *a = mr_op(ex, i);
        float *b = mr_ref(ref, p->ops[i].name, p->ops[i].numel);
        double e = tu_rel_max_err(a, b, (size_t)p->ops[i].numel);
        if (!(e <= MR_TOL))
            fail_msg("%s [%s %s, %d threads]: %s error %g x max|ref| > %g", model_path, bn, variant, threads,
                     p->ops[i].name, e, MR_TOL);
        if (e > worst) {
            worst = e;
            snprintf(worst_name, 64, "%s", p->ops[i].name);
        }
        free(a);
        free(b);
    }
    bool has_gl = refdump_find(ref, "gen.logits") != NULL;
    assert_int_equal((int)refdump_count(ref), p->n_ops + 2 + (has_gl ? 1 : 0));
    int ng = mr_tokens(ref, "gen.tokens", want, MR_MAX_TOK);
    float *gl = has_gl ? mr_ref(ref, "gen.logits", (int64_t)ng * m->n_vocab) : NULL;
    float *lg = malloc((size_t)m->n_vocab * sizeof *lg);
    assert_non_null(lg);
    for (int k = 0; k < ng; k++) {
        assert_int_equal(exec_last_logits(ex, lg, &err), 0);
        if (gl) {
            double e = tu_rel_max_err(lg, gl + (size_t)k * m->n_vocab, (size_t)m->n_vocab);
            if (!(e <= MR_TOL))
                fail_msg("%s [%s %s]: logits choosing generated token %d: error %g x max|ref|", model_path, bn,
                         variant, k, e);
        }
        int32_t best = mr_argmax(lg, m->n_vocab);
        if (best != want[k])
            fail_msg("%s [%s %s]: generated token %d is %d, HF %d", model_path, bn, variant, k, best, want[k]);
        mr_decode(ex, best, n + k);
    }
    free(lg);
    free(gl);
    exec_free(ex);
    refdump_close(ref);
    model_free(m);
    return worst;
}

typedef struct mr_copy_opts {
    bool to_f32;          /* dequantize every tensor to F32 */
    const char *drop;     /* tensor left out, or NULL */
    const char *u32_key;  /* kv replaced by u32_val (added if absent), or NULL */
    uint32_t u32_val;
    const char *u32_key2; /* a second one, or NULL */
    uint32_t u32_val2;
} mr_copy_opts;

/* A copy of a GGUF through our writer, changed as o says; returns out. */
static inline const char *mr_copy_gguf(const char *src, char *out, size_t out_size, const mr_copy_opts *o)
{
    xf_err err = {0};
    gguf_file *g = gguf_open(src, &err);
    if (!g)
        fail_msg("%s", err.msg);
    gguf_writer *w = gguf_writer_new(3, 32);
    assert_non_null(w);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        if (o->to_f32 && gguf_str_eq(g->kv[i].key, "general.file_type"))
            continue;
        if ((o->u32_key && gguf_str_eq(g->kv[i].key, o->u32_key)) ||
            (o->u32_key2 && gguf_str_eq(g->kv[i].key, o->u32_key2)))
            continue;
        assert_int_equal(gguf_writer_copy_kv(w, g, &g->kv[i]), 0);
    }
    if (o->to_f32)
        assert_int_equal(gguf_writer_set_u32(w, "general.file_type", 0), 0);
    if (o->u32_key)
        assert_int_equal(gguf_writer_set_u32(w, o->u32_key, o->u32_val), 0);
    if (o->u32_key2)
        assert_int_equal(gguf_writer_set_u32(w, o->u32_key2, o->u32_val2), 0);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        if (o->drop && strcmp(name, o->drop) == 0)
            continue;
        if (!o->to_f32) {
            assert_int_equal(gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data, t->size), 0);
            continue;
        }
        int64_t nel = 1;
        for (int d = 0; d < t->n_dims; d++)
            nel *= t->ne[d];
        float *v = malloc((size_t)nel * sizeof *v); /* [nel / ne[0], ne[0]] */
        assert_non_null(v);
        uint64_t rb;
        assert_true(quant_row_bytes(t->type, t->ne[0], &rb));
        for (int64_t r = 0; r < nel / t->ne[0]; r++)
            quant_dequant_row(t->type, (const uint8_t *)t->data + r * rb, v + r * t->ne[0], t->ne[0]);
        assert_int_equal(gguf_writer_add_tensor(w, name, XF_TYPE_F32, t->n_dims, t->ne, v, (uint64_t)nel * 4), 0);
        free(v);
    }
    tu_tmp_path(out, out_size, ".gguf");
    if (gguf_writer_save(w, out, &err) != 0)
        fail_msg("%s", err.msg);
    gguf_writer_free(w);
    gguf_close(g);
    return out;
}

/* A quantized model against an F32 copy of its own dequantized weights, on
 * one backend and selection: only the arithmetic differs, so every tensor
 * within MR_TOL and the n_gen greedy tokens identical. Checks that every
 * matrix of the file has type qtype and every vector F32. Returns the
 * worst error. */
static inline double mr_check_vs_dequant(const char *qpath, int qtype, const int32_t *tok, int n, int n_gen,
                                         kern_backend be, const char *variant, int threads)
{
    char cp[1024];
    xf_err err = {0};
    mr_copy_opts o = {.to_f32 = true};
    mr_copy_gguf(qpath, cp, sizeof cp, &o);
    xf_model *mq = model_load(qpath, &err);
    if (!mq)
        fail_msg("%s", err.msg);
    xf_model *mf = model_load(cp, &err);
    if (!mf)
        fail_msg("%s", err.msg);
    for (int i = 0; i < mq->n_weights; i++)
        if (mq->weights[i].type != (mq->weights[i].rows > 1 ? qtype : XF_TYPE_F32))
            fail_msg("%s: %s has type %s", qpath, mq->weights[i].name, quant_type_name(mq->weights[i].type));
    xf_exec *eq = mr_prompt(mq, be, variant, threads, tok, n);
    xf_exec *ef = mr_prompt(mf, be, variant, threads, tok, n);
    const xf_program *p = exec_program(eq);
    assert_int_equal(p->n_ops, exec_program(ef)->n_ops);
    double worst = 0;
    for (int i = 0; i < p->n_ops; i++) {
        float *a = mr_op(eq, i), *b = mr_op(ef, i);
        double e = tu_rel_max_err(a, b, (size_t)p->ops[i].numel);
        if (!(e <= MR_TOL))
            fail_msg("%s [%s, %d threads]: %s differs from the dequantized F32 run by %g x max|ref|", qpath, variant,
                     threads, p->ops[i].name, e);
        worst = e > worst ? e : worst;
        free(a);
        free(b);
    }
    float *la = malloc((size_t)mq->n_vocab * sizeof *la), *lb = malloc((size_t)mq->n_vocab * sizeof *lb);
    assert_non_null(la);
    assert_non_null(lb);
    for (int k = 0; k < n_gen; k++) {
        assert_int_equal(exec_last_logits(eq, la, &err), 0);
        assert_int_equal(exec_last_logits(ef, lb, &err), 0);
        int32_t ta = mr_argmax(la, mq->n_vocab), tb = mr_argmax(lb, mf->n_vocab);
        if (ta != tb)
            fail_msg("%s [%s]: generated token %d is %d, dequantized F32 run %d", qpath, variant, k, ta, tb);
        mr_decode(eq, ta, n + k);
        mr_decode(ef, tb, n + k);
    }
    free(la);
    free(lb);
    exec_free(eq);
    exec_free(ef);
    model_free(mq);
    model_free(mf);
    unlink(cp);
    return worst;
}

/* 1 if a CUDA device answers (else the CUDA cases skip) */
static inline int mr_have_cuda(void)
{
    char why[256];
    return kern_backend_available(KERN_BACKEND_CUDA, why, sizeof why);
}

#endif
