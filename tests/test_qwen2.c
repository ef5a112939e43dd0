/* The Qwen2 forward pass against HF transformers float64 references
 * (tests/fixtures/qwen2/, made by scripts/make_qwen2_fixtures.py): two tiny
 * random Qwen2ForCausalLM models, one with GQA 3:1 and a tied output, one
 * with a single kv head and a separate output.weight, both with q/k/v
 * biases, RoPE base 1e6 and RMSNorm eps 1e-6 as Qwen2.5 has them.
 *
 * - hyperparameters and the program (names, order, shapes) of DESIGN.md;
 * - every canonical tensor of the prompt pass within 1e-4 x max|ref|, the
 *   10 greedy tokens identical to HF generate and the logits of each decode
 *   pass within 1e-4, with ref and opt kernels on 1 and 2 threads;
 * - the Q8_0 files (quantized by gguf-py, llama.cpp's reference) against
 *   an F32 copy of the same dequantized weights, and against HF;
 * - the Qwen2-specific validation of model_load. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "exec.h"
#include "gguf.h"
#include "gguf_writer.h"
#include "quant.h"
#include "refdump.h"
#include "tensor.h"
#include "model_ref.h"
#include "testutil.h"

/* What the generator script built; written down here, not read from the
 * files, so that a loader that misreads a key fails. */
typedef struct fixture {
    const char *name;
    int n_layer, n_embd, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
    bool tied;
} fixture;

static const fixture k_fx[] = {
    {"qwen2-gqa", 2, 96, 6, 2, 160, 512, 64, true},
    {"qwen2-mqa", 2, 64, 4, 1, 128, 512, 64, false},
};
#define N_FX (sizeof k_fx / sizeof k_fx[0])
#define HEAD_DIM 16
#define N_PROMPT 7
#define N_GEN 10
/* Names of one Qwen2 block, in program order (DESIGN.md). */
static const char *const k_block[] = {"attn_norm", "q",        "k",        "v",      "q_rope", "k_rope",
                                      "kq",        "kq_soft",  "kqv",      "attn_out", "ffn_inp", "ffn_norm",
                                      "ffn_gate",  "ffn_up",   "ffn_act",  "ffn_out", "out"};
#define N_BLOCK (sizeof k_block / sizeof k_block[0])

/* Tolerance of the F32 model against the float64 reference, x max|ref|:
 * the contract of DESIGN.md. */
#define TOL_F32 1e-4
/* Q8_0 against the float64 reference, as NMSE per tensor. Q8_0 rounds each
 * weight to d/2 at most, d = max|block|/127: for Gaussian blocks of 32
 * (max ~2.1 sigma) the rounding error has rms ~2.1/127/sqrt(12) = 0.5% of
 * sigma, an NMSE of ~2.3e-5 per matmul. Two layers of matmuls, softmax and
 * SwiGLU compound it to at most 6.7e-4 on these fixtures (blk.1.kq of
 * qwen2-gqa); 2e-3 leaves 3x room, while a wrong scale, nibble order or
 * block stride gives an NMSE of order 1. */
#define NMSE_Q8_0 2e-3

static const char *fx_path(char *buf, size_t size, const fixture *f, const char *suffix)
{
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/qwen2/%s%s", f->name, suffix);
    return tu_src_path(buf, size, rel);
}

/* ------------------------------------------------------------ structure */

static void test_hparams_and_program(void **state)
{
    (void)state;
    for (size_t fi = 0; fi < N_FX; fi++) {
        const fixture *f = &k_fx[fi];
        char mp[1024];
        xf_err err = {0};
        xf_model *m = model_load(fx_path(mp, sizeof mp, f, "-f32.gguf"), &err);
        if (!m)
            fail_msg("%s", err.msg);
        assert_int_equal(m->arch, XF_ARCH_QWEN2);
        assert_false(m->vocab_only);
        assert_null(m->tok);
        assert_int_equal(m->n_layer, f->n_layer);
        assert_int_equal(m->n_embd, f->n_embd);
        assert_int_equal(m->n_head, f->n_head);
        assert_int_equal(m->n_head_kv, f->n_head_kv);
        assert_int_equal(m->head_dim, HEAD_DIM);
        assert_int_equal(m->n_ff, f->n_ff);
        assert_int_equal(m->n_vocab, f->n_vocab);
        assert_int_equal(m->n_ctx, f->n_ctx);
        assert_true(m->rope_base == 1e6f);
        assert_true(m->eps == 1e-6f);
        assert_int_equal(m->tied_output, f->tied);
        if (f->tied)
            assert_ptr_equal(m->output, m->tok_embd);
        else {
            assert_ptr_not_equal(m->output, m->tok_embd);
            assert_string_equal(m->output->name, "output.weight");
        }
        assert_null(m->pos_embd);
        for (int l = 0; l < m->n_layer; l++) {
            const xf_layer *L = &m->layers[l];
            /* Qwen2 has q/k/v biases and nothing else: no norm betas, no o/ffn biases */
            assert_non_null(L->q_b);
            assert_non_null(L->k_b);
            assert_non_null(L->v_b);
            assert_int_equal(L->q->rows, f->n_head * HEAD_DIM);
            assert_int_equal(L->k->rows, f->n_head_kv * HEAD_DIM);
            assert_int_equal(L->v->rows, f->n_head_kv * HEAD_DIM);
            assert_int_equal(L->k_b->cols, f->n_head_kv * HEAD_DIM);
            assert_non_null(L->ffn_gate);
            assert_null(L->qkv);
            assert_null(L->attn_norm_b);
            assert_null(L->ffn_norm_b);
            assert_null(L->attn_out_b);
            assert_null(L->ffn_up_b);
            assert_null(L->ffn_down_b);
        }

        /* the prompt pass: embd, 17 ops per block, out_norm, logits */
        const int n = N_PROMPT, H = f->n_head, KV = f->n_head_kv, Dh = HEAD_DIM;
        xf_program p;
        assert_int_equal(program_build(m, n, 0, &p, &err), 0);
        assert_int_equal(p.n_ops, 3 + (int)N_BLOCK * f->n_layer);
        assert_string_equal(p.ops[0].name, "embd");
        for (int l = 0; l < f->n_layer; l++)
            for (size_t k = 0; k < N_BLOCK; k++) {
                char nm[64];
                snprintf(nm, sizeof nm, "blk.%d.%s", l, k_block[k]);
                assert_string_equal(p.ops[1 + l * (int)N_BLOCK + (int)k].name, nm);
            }
        assert_string_equal(p.ops[p.n_ops - 2].name, "out_norm");
        assert_string_equal(p.ops[p.n_ops - 1].name, "logits");
        struct {
            const char *name;
            int ndim;
            int64_t s[3];
        } shapes[] = {
            {"embd", 2, {n, f->n_embd}},         {"blk.1.q", 3, {n, H, Dh}},
            {"blk.1.k", 3, {n, KV, Dh}},         {"blk.1.v", 3, {n, KV, Dh}},
            {"blk.1.q_rope", 3, {n, H, Dh}},     {"blk.1.k_rope", 3, {n, KV, Dh}},
            {"blk.1.kq", 3, {H, n, n}},          {"blk.1.kq_soft", 3, {H, n, n}},
            {"blk.1.kqv", 2, {n, H * Dh}},       {"blk.1.ffn_gate", 2, {n, f->n_ff}},
            {"blk.1.ffn_act", 2, {n, f->n_ff}},  {"blk.1.out", 2, {n, f->n_embd}},
            {"logits", 2, {n, f->n_vocab}},
        };
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            int op = program_find(&p, shapes[i].name);
            assert_true(op >= 0);
            assert_int_equal(p.ops[op].ndim, shapes[i].ndim);
            for (int d = 0; d < shapes[i].ndim; d++)
                assert_int_equal(p.ops[op].shape[d], shapes[i].s[d]);
        }
        assert_int_equal(p.ops[program_find(&p, "blk.0.kq")].args.n_head_kv, KV);
        assert_true(p.ops[program_find(&p, "blk.0.q_rope")].args.rope_base == 1e6f);
        program_free(&p);

        /* a decode pass at position n attends to n+1 keys */
        assert_int_equal(program_build(m, 1, n, &p, &err), 0);
        int kq = program_find(&p, "blk.0.kq");
        assert_int_equal(p.ops[kq].shape[0], H);
        assert_int_equal(p.ops[kq].shape[1], 1);
        assert_int_equal(p.ops[kq].shape[2], n + 1);
        program_free(&p);
        /* the context is 64: a pass beyond it is refused */
        assert_int_equal(program_build(m, 2, f->n_ctx - 1, &p, &err), -1);
        assert_non_null(strstr(err.msg, "context"));
        model_free(m);
    }
}

/* ------------------------------------------------------ against HF float64 */

static void check_against_ref(const fixture *f, const char *model_path, const char *variant, int threads)
{
    char rp[1024];
    xf_err err = {0};
    xf_model *m = model_load(model_path, &err);
    if (!m)
        fail_msg("%s", err.msg);
    refdump *ref = refdump_open(fx_path(rp, sizeof rp, f, ".ref.safetensors"), &err);
    if (!ref)
        fail_msg("%s", err.msg);
    int32_t tok[64], want[64];
    int n = mr_tokens(ref, "prompt.tokens", tok, 64);
    assert_int_equal(n, N_PROMPT);
    xf_exec *ex = mr_prompt(m, KERN_BACKEND_CPU, variant, threads, tok, n);

    const xf_program *p = exec_program(ex);
    int compared = 0;
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < p->n_ops; i++) {
        float *a = mr_op(ex, i);
        float *b = mr_ref(ref, p->ops[i].name, p->ops[i].numel);
        double e = tu_rel_max_err(a, b, (size_t)p->ops[i].numel);
        if (e > worst) {
            worst = e;
            worst_name = p->ops[i].name;
        }
        if (e > TOL_F32)
            fail_msg("%s [%s, %d threads]: %s error %g x max|ref| > %g", model_path, variant, threads,
                     p->ops[i].name, e, TOL_F32);
        free(a);
        free(b);
        compared++;
    }
    /* every activation of the dump was compared: it holds the ops plus
     * prompt.tokens, gen.tokens and gen.logits */
    assert_int_equal(compared, 3 + (int)N_BLOCK * f->n_layer);
    assert_int_equal((int)refdump_count(ref), compared + 3);
    printf("# %s [%s, %d threads]: %d tensors, worst %s %.3g x max|ref|\n", f->name, variant, threads, compared,
           worst_name, worst);

    /* greedy decoding with the KV cache, one pass per token; the logits
     * that choose each token are HF's gen.logits row */
    int ng = mr_tokens(ref, "gen.tokens", want, 64);
    assert_int_equal(ng, N_GEN);
    float *gl = mr_ref(ref, "gen.logits", (int64_t)ng * m->n_vocab);
    float *lg = malloc((size_t)m->n_vocab * sizeof *lg);
    for (int k = 0; k < ng; k++) {
        assert_int_equal(exec_last_logits(ex, lg, &err), 0);
        double e = tu_rel_max_err(lg, gl + (size_t)k * m->n_vocab, (size_t)m->n_vocab);
        if (e > TOL_F32)
            fail_msg("%s [%s]: logits choosing generated token %d: error %g x max|ref|", f->name, variant, k, e);
        int32_t best = mr_argmax(lg, m->n_vocab);
        if (best != want[k])
            fail_msg("%s [%s]: generated token %d is %d, HF %d", f->name, variant, k, best, want[k]);
        mr_decode(ex, best, n + k);
    }
    free(lg);
    free(gl);
    exec_free(ex);
    refdump_close(ref);
    model_free(m);
}

static void test_f32_vs_hf(void **state)
{
    (void)state;
    static const struct {
        const char *variant;
        int threads;
    } runs[] = {{"ref", 1}, {"ref", 2}, {"opt", 1}, {"opt", 2}};
    for (size_t fi = 0; fi < N_FX; fi++)
        for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
            char mp[1024];
            check_against_ref(&k_fx[fi], fx_path(mp, sizeof mp, &k_fx[fi], "-f32.gguf"), runs[r].variant,
                              runs[r].threads);
        }
}

/* ------------------------------------------------------------- copies */

typedef struct copy_opts {
    bool to_f32;          /* dequantize every tensor to F32 */
    const char *drop;     /* tensor left out, or NULL */
    const char *u32_key;  /* kv replaced by u32_val, or NULL */
    uint32_t u32_val;
} copy_opts;

/* A copy of a GGUF through our writer, changed as o says; returns out. */
static const char *copy_gguf(const char *src, char *out, size_t out_size, const copy_opts *o)
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
        if (o->u32_key && gguf_str_eq(g->kv[i].key, o->u32_key))
            continue;
        assert_int_equal(gguf_writer_copy_kv(w, g, &g->kv[i]), 0);
    }
    if (o->to_f32)
        assert_int_equal(gguf_writer_set_u32(w, "general.file_type", 0), 0);
    if (o->u32_key)
        assert_int_equal(gguf_writer_set_u32(w, o->u32_key, o->u32_val), 0);
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

/* ---------------------------------------------------------------- Q8_0 */

/* Q8_0 kernels against F32 kernels on the same (dequantized) weights:
 * only the arithmetic differs, so the F32 contract holds, and the greedy
 * tokens of both are the same. */
static void check_q8_vs_dequant(const fixture *f, const char *variant, int threads)
{
    char qp[1024], cp[1024], rp[1024];
    xf_err err = {0};
    fx_path(qp, sizeof qp, f, "-q8_0.gguf");
    copy_opts o = {.to_f32 = true};
    copy_gguf(qp, cp, sizeof cp, &o);
    xf_model *mq = model_load(qp, &err);
    if (!mq)
        fail_msg("%s", err.msg);
    xf_model *mf = model_load(cp, &err);
    if (!mf)
        fail_msg("%s", err.msg);
    /* the quantized file really is Q8_0 in every matrix, F32 in every vector */
    for (int i = 0; i < mq->n_weights; i++)
        assert_int_equal(mq->weights[i].type, mq->weights[i].rows > 1 ? XF_TYPE_Q8_0 : XF_TYPE_F32);
    refdump *ref = refdump_open(fx_path(rp, sizeof rp, f, ".ref.safetensors"), &err);
    assert_non_null(ref);
    int32_t tok[64];
    int n = mr_tokens(ref, "prompt.tokens", tok, 64);
    xf_exec *eq = mr_prompt(mq, KERN_BACKEND_CPU, variant, threads, tok, n);
    xf_exec *ef = mr_prompt(mf, KERN_BACKEND_CPU, variant, threads, tok, n);
    const xf_program *p = exec_program(eq);
    assert_int_equal(p->n_ops, exec_program(ef)->n_ops);
    double worst = 0;
    for (int i = 0; i < p->n_ops; i++) {
        float *a = mr_op(eq, i), *b = mr_op(ef, i);
        double e = tu_rel_max_err(a, b, (size_t)p->ops[i].numel);
        if (e > TOL_F32)
            fail_msg("%s Q8_0 [%s, %d threads]: %s differs from the dequantized F32 run by %g x max|ref|", f->name,
                     variant, threads, p->ops[i].name, e);
        worst = e > worst ? e : worst;
        free(a);
        free(b);
    }
    float *la = malloc((size_t)mq->n_vocab * sizeof *la), *lb = malloc((size_t)mq->n_vocab * sizeof *lb);
    for (int k = 0; k < N_GEN; k++) {
        assert_int_equal(exec_last_logits(eq, la, &err), 0);
        assert_int_equal(exec_last_logits(ef, lb, &err), 0);
        int32_t ta = mr_argmax(la, mq->n_vocab), tb = mr_argmax(lb, mf->n_vocab);
        if (ta != tb)
            fail_msg("%s Q8_0 [%s]: generated token %d is %d, dequantized F32 run %d", f->name, variant, k, ta, tb);
        mr_decode(eq, ta, n + k);
        mr_decode(ef, tb, n + k);
    }
    printf("# %s Q8_0 vs dequantized F32 [%s, %d threads]: worst %.3g x max|ref|\n", f->name, variant, threads,
           worst);
    free(la);
    free(lb);
    exec_free(eq);
    exec_free(ef);
    refdump_close(ref);
    model_free(mq);
    model_free(mf);
    unlink(cp);
}

static void test_q8_0_vs_dequant(void **state)
{
    (void)state;
    for (size_t fi = 0; fi < N_FX; fi++) {
        check_q8_vs_dequant(&k_fx[fi], "ref", 1);
        check_q8_vs_dequant(&k_fx[fi], "opt", 2);
    }
}

/* Q8_0 against HF float64 (unquantized weights): NMSE per tensor within
 * the bound of NMSE_Q8_0, cosine near 1, and the prediction after the
 * prompt the same. */
static void test_q8_0_vs_hf(void **state)
{
    (void)state;
    for (size_t fi = 0; fi < N_FX; fi++) {
        const fixture *f = &k_fx[fi];
        char qp[1024], rp[1024];
        xf_err err = {0};
        xf_model *m = model_load(fx_path(qp, sizeof qp, f, "-q8_0.gguf"), &err);
        assert_non_null(m);
        refdump *ref = refdump_open(fx_path(rp, sizeof rp, f, ".ref.safetensors"), &err);
        assert_non_null(ref);
        int32_t tok[64], want[64];
        int n = mr_tokens(ref, "prompt.tokens", tok, 64);
        mr_tokens(ref, "gen.tokens", want, 64);
        xf_exec *ex = mr_prompt(m, KERN_BACKEND_CPU, "opt", 2, tok, n);
        const xf_program *p = exec_program(ex);
        double worst = 0;
        for (int i = 0; i < p->n_ops; i++) {
            float *a = mr_op(ex, i);
            float *b = mr_ref(ref, p->ops[i].name, p->ops[i].numel);
            xf_diff d;
            tensor_diff_rel(a, b, (size_t)p->ops[i].numel, 1.0, &d);
            if (!(d.nmse <= NMSE_Q8_0) || !(d.cosine > 0.999) || d.mismatch_nonfinite)
                fail_msg("%s Q8_0: %s nmse %g cosine %g (%lld non-finite mismatches)", f->name, p->ops[i].name,
                         d.nmse, d.cosine, (long long)d.mismatch_nonfinite);
            worst = d.nmse > worst ? d.nmse : worst;
            free(a);
            free(b);
        }
        /* the quantization error is far below the margin of the greedy
         * choice after the prompt (the script asserts >= 1e-3 x max) */
        float *lg = malloc((size_t)m->n_vocab * sizeof *lg);
        assert_int_equal(exec_last_logits(ex, lg, &err), 0);
        assert_int_equal(mr_argmax(lg, m->n_vocab), want[0]);
        printf("# %s Q8_0 vs HF float64: worst nmse %.3g\n", f->name, worst);
        free(lg);
        exec_free(ex);
        refdump_close(ref);
        model_free(m);
    }
}

/* ---------------------------------------------------------- validation */

static void expect_load_error(const char *path, const char *needle)
{
    xf_err err = {0};
    xf_model *m = model_load(path, &err);
    if (m) {
        model_free(m);
        fail_msg("%s loaded; expected an error with '%s'", path, needle);
    }
    if (!strstr(err.msg, needle))
        fail_msg("error '%s' does not say '%s'", err.msg, needle);
    /* one line, naming the file */
    assert_null(strchr(err.msg, '\n'));
    assert_non_null(strstr(err.msg, path));
}

static void test_validation(void **state)
{
    (void)state;
    const fixture *f = &k_fx[0];
    char src[1024], out[1024];
    fx_path(src, sizeof src, f, "-f32.gguf");

    /* 6 heads cannot share 4 kv heads */
    copy_opts o = {.u32_key = "qwen2.attention.head_count_kv", .u32_val = 4};
    expect_load_error(copy_gguf(src, out, sizeof out, &o), "head_count_kv");
    unlink(out);

    /* Qwen2's MLP is gated: no ffn_gate, no model */
    o = (copy_opts){.drop = "blk.1.ffn_gate.weight"};
    expect_load_error(copy_gguf(src, out, sizeof out, &o), "blk.1.ffn_gate.weight");
    unlink(out);

    /* k, v and their biases have KV*Dh = 32 rows: 2 kv heads are not 3
     * (which of the four the message names is the loader's choice) */
    o = (copy_opts){.u32_key = "qwen2.attention.head_count_kv", .u32_val = 3};
    expect_load_error(copy_gguf(src, out, sizeof out, &o), "expected [48");
    unlink(out);

    /* the q/k/v biases are optional in the format: without them the model
     * loads, and the q projection no longer matches HF (the bias is used) */
    o = (copy_opts){.drop = "blk.0.attn_q.bias"};
    copy_gguf(src, out, sizeof out, &o);
    xf_err err = {0};
    xf_model *m = model_load(out, &err);
    if (!m)
        fail_msg("%s", err.msg);
    assert_null(m->layers[0].q_b);
    assert_non_null(m->layers[0].k_b);
    char rp[1024];
    refdump *ref = refdump_open(fx_path(rp, sizeof rp, f, ".ref.safetensors"), &err);
    int32_t tok[64];
    int n = mr_tokens(ref, "prompt.tokens", tok, 64);
    xf_exec *ex = mr_prompt(m, KERN_BACKEND_CPU, "ref", 1, tok, n);
    int q = exec_tensor_find(ex, "blk.0.q", &err), k = exec_tensor_find(ex, "blk.0.k", &err);
    float *a = mr_op(ex, q), *b = mr_ref(ref, "blk.0.q", exec_program(ex)->ops[q].numel);
    assert_true(tu_rel_max_err(a, b, (size_t)exec_program(ex)->ops[q].numel) > 1e-2);
    free(a);
    free(b);
    a = mr_op(ex, k);
    b = mr_ref(ref, "blk.0.k", exec_program(ex)->ops[k].numel);
    assert_true(tu_rel_max_err(a, b, (size_t)exec_program(ex)->ops[k].numel) <= TOL_F32);
    free(a);
    free(b);
    exec_free(ex);
    refdump_close(ref);
    model_free(m);
    unlink(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hparams_and_program),
        cmocka_unit_test(test_f32_vs_hf),
        cmocka_unit_test(test_q8_0_vs_dequant),
        cmocka_unit_test(test_q8_0_vs_hf),
        cmocka_unit_test(test_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
