/* The llama forward pass against HF transformers float64 references
 * (tests/fixtures/llama/, made by scripts/make_llama_fixtures.py): two tiny
 * random LlamaForCausalLM models, both GQA 3:1, one with a separate
 * output.weight (head_dim 16), one tied (head_dim 32), RoPE base 1e5 and
 * RMSNorm eps 1e-5 as SmolLM2 has them. Their q/k rows are permuted as
 * llama.cpp's converter permutes them, so RoPE runs in llama.cpp's normal
 * mode (adjacent pairs).
 *
 * - hyperparameters and the program (names, order, shapes, rope mode);
 * - the ROPE kernels' normal mode: by hand, opt against ref, the modes
 *   differ, a bad mode refused;
 * - every canonical tensor of the prompt pass within 1e-4 x max|ref|, the 10
 *   greedy tokens identical to HF generate and the logits of each decode pass
 *   within 1e-4, with ref and opt kernels on 1 and 2 threads, and on CUDA
 *   (ref and opt; skipped where no GPU answers);
 * - Q8_0 files against HF float64 (NMSE);
 * - bad llama files refused in one line naming the file, key and byte;
 * - `check break` stops at blk.0.q_rope and names a planted rope variant
 *   that ignores the mode (NeoX halves on llama weights). */
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
#include "kernels.h"
#include "refdump.h"
#include "repl.h"
#include "tensor.h"
#include "model_ref.h"
#include "testutil.h"

typedef struct fixture {
    const char *name;
    int n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_vocab, n_ctx;
    bool tied;
} fixture;

static const fixture k_fx[] = {
    {"llama-gqa", 2, 96, 6, 2, 16, 224, 384, 64, false},
    {"llama-tied", 2, 96, 3, 1, 32, 160, 320, 64, true},
};
#define N_FX (sizeof k_fx / sizeof k_fx[0])
#define N_PROMPT 7
#define N_GEN 10
static const char *const k_block[] = {"attn_norm", "q",       "k",       "v",        "q_rope",  "k_rope",
                                      "kq",        "kq_soft", "kqv",     "attn_out", "ffn_inp", "ffn_norm",
                                      "ffn_gate",  "ffn_up",  "ffn_act", "ffn_out",  "out"};
#define N_BLOCK (sizeof k_block / sizeof k_block[0])
#define TOL_F32 1e-4
/* Q8_0 against float64 on unquantized weights, NMSE per tensor: the bound of
 * test_qwen2.c (its reasoning holds for these shapes: Gaussian blocks of 32) */
#define NMSE_Q8_0 2e-3

static const char *fx_path(char *buf, size_t size, const fixture *f, const char *suffix)
{
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/llama/%s%s", f->name, suffix);
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
        assert_int_equal(m->arch, XF_ARCH_LLAMA);
        assert_string_equal(model_arch_name(m->arch), "llama");
        assert_int_equal(m->n_layer, f->n_layer);
        assert_int_equal(m->n_embd, f->n_embd);
        assert_int_equal(m->n_head, f->n_head);
        assert_int_equal(m->n_head_kv, f->n_head_kv);
        assert_int_equal(m->head_dim, f->head_dim);
        assert_int_equal(m->n_ff, f->n_ff);
        assert_int_equal(m->n_vocab, f->n_vocab);
        assert_int_equal(m->n_ctx, f->n_ctx);
        assert_true(m->rope_base == 1e5f);
        assert_true(m->eps == 1e-5f);
        assert_int_equal(m->rope_mode, KERN_ROPE_NORMAL);
        assert_int_equal(m->tied_output, f->tied);
        if (f->tied)
            assert_ptr_equal(m->output, m->tok_embd);
        else
            assert_string_equal(m->output->name, "output.weight");
        for (int l = 0; l < m->n_layer; l++) {
            const xf_layer *L = &m->layers[l];
            assert_null(L->q_b); /* llama: no biases */
            assert_null(L->k_b);
            assert_null(L->v_b);
            assert_null(L->attn_out_b);
            assert_null(L->qkv);
            assert_non_null(L->ffn_gate);
            assert_int_equal(L->k->rows, f->n_head_kv * f->head_dim);
        }
        xf_program p;
        assert_int_equal(program_build(m, N_PROMPT, 0, &p, &err), 0);
        assert_int_equal(p.n_ops, 3 + (int)N_BLOCK * f->n_layer);
        for (int l = 0; l < f->n_layer; l++)
            for (size_t k = 0; k < N_BLOCK; k++) {
                char nm[64];
                snprintf(nm, sizeof nm, "blk.%d.%s", l, k_block[k]);
                assert_string_equal(p.ops[1 + l * (int)N_BLOCK + (int)k].name, nm);
            }
        for (int l = 0; l < f->n_layer; l++) {
            char nm[64];
            snprintf(nm, sizeof nm, "blk.%d.q_rope", l);
            assert_int_equal(p.ops[program_find(&p, nm)].args.rope_mode, KERN_ROPE_NORMAL);
            snprintf(nm, sizeof nm, "blk.%d.k_rope", l);
            int k = program_find(&p, nm);
            assert_int_equal(p.ops[k].args.rope_mode, KERN_ROPE_NORMAL);
            assert_int_equal(p.ops[k].args.n_head, f->n_head_kv);
        }
        program_free(&p);
        model_free(m);
    }
}

/* ---------------------------------------------------------- rope kernels */

static int run_rope(kern_backend be, const char *variant, kern_args *a)
{
    const kern_variant *v = kern_find(KERN_OP_ROPE, be, variant);
    assert_non_null(v);
    kern_ctx ctx = {.n_threads = 1};
    return v->fn(&ctx, a);
}

static void test_rope_normal_mode(void **state)
{
    (void)state;
    /* by hand: head_dim 4, position 1, base 16: pair 0 turns by 1 rad, pair 1
     * by 16^(-1/2) = 0.25 rad; pairs are (x0, x1) and (x2, x3) */
    float x[8] = {0}, y[8], want[4];
    for (int i = 0; i < 8; i++)
        x[i] = (float)(i + 1);
    kern_args a = {.x = x,
                   .y = y,
                   .n = 2,
                   .n_head = 1,
                   .head_dim = 4,
                   .pos0 = 0,
                   .rope_base = 16.0f,
                   .rope_mode = KERN_ROPE_NORMAL};
    assert_int_equal(run_rope(KERN_BACKEND_CPU, "ref", &a), 0);
    assert_memory_equal(y, x, 4 * sizeof *y); /* position 0 turns nothing */
    double t0 = 1.0, t1 = 0.25;
    want[0] = (float)(5 * cos(t0) - 6 * sin(t0));
    want[1] = (float)(5 * sin(t0) + 6 * cos(t0));
    want[2] = (float)(7 * cos(t1) - 8 * sin(t1));
    want[3] = (float)(7 * sin(t1) + 8 * cos(t1));
    for (int i = 0; i < 4; i++)
        assert_float_equal(y[4 + i], want[i], 1e-6);
    /* NeoX pairs (x0, x2) and (x1, x3) instead: a different answer */
    a.rope_mode = KERN_ROPE_NEOX;
    assert_int_equal(run_rope(KERN_BACKEND_CPU, "ref", &a), 0);
    assert_true(fabsf(y[4] - want[0]) > 0.1f);
    /* an unknown mode is refused by every CPU variant */
    a.rope_mode = 2;
    assert_int_equal(run_rope(KERN_BACKEND_CPU, "ref", &a), -1);
    assert_int_equal(run_rope(KERN_BACKEND_CPU, "opt", &a), -1);

    /* opt against ref in normal mode: odd head counts, head_dim 2..64, far positions */
    static const struct {
        int n, heads, hd, pos0;
        float base;
    } sh[] = {{1, 1, 2, 0, 1e4f}, {3, 3, 6, 5, 1e5f}, {5, 9, 64, 1000, 1e5f}, {4, 2, 32, 70000, 5e5f}};
    for (size_t s = 0; s < sizeof sh / sizeof sh[0]; s++) {
        size_t len = (size_t)sh[s].n * sh[s].heads * sh[s].hd;
        float *in = malloc(len * sizeof *in), *r = malloc(len * sizeof *r), *o = malloc(len * sizeof *o);
        for (size_t i = 0; i < len; i++)
            in[i] = sinf((float)i * 0.37f) * 3.0f;
        tu_poison(r, len);
        tu_poison(o, len);
        kern_args b = {.x = in,
                       .n = sh[s].n,
                       .n_head = sh[s].heads,
                       .head_dim = sh[s].hd,
                       .pos0 = sh[s].pos0,
                       .rope_base = sh[s].base,
                       .rope_mode = KERN_ROPE_NORMAL};
        b.y = r;
        assert_int_equal(run_rope(KERN_BACKEND_CPU, "ref", &b), 0);
        b.y = o;
        assert_int_equal(run_rope(KERN_BACKEND_CPU, "opt", &b), 0);
        double e = tu_rel_max_err(o, r, len);
        if (!(e <= 1e-6))
            fail_msg("rope normal opt vs ref, shape %zu: %g", s, e);
        free(in);
        free(r);
        free(o);
    }
}

/* ------------------------------------------------------ against HF float64 */

static double check_against_ref(const fixture *f, kern_backend be, const char *variant, int threads)
{
    char mp[1024], rp[1024];
    xf_err err = {0};
    xf_model *m = model_load(fx_path(mp, sizeof mp, f, "-f32.gguf"), &err);
    if (!m)
        fail_msg("%s", err.msg);
    refdump *ref = refdump_open(fx_path(rp, sizeof rp, f, ".ref.safetensors"), &err);
    if (!ref)
        fail_msg("%s", err.msg);
    int32_t tok[64], want[64];
    int n = mr_tokens(ref, "prompt.tokens", tok, 64);
    assert_int_equal(n, N_PROMPT);
    xf_exec *ex = mr_prompt(m, be, variant, threads, tok, n);
    const xf_program *p = exec_program(ex);
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
        if (!(e <= TOL_F32))
            fail_msg("%s [%s %s, %d threads]: %s error %g x max|ref| > %g", f->name, be ? "cuda" : "cpu",
                     variant, threads, p->ops[i].name, e, TOL_F32);
        free(a);
        free(b);
    }
    assert_int_equal((int)refdump_count(ref), p->n_ops + 3);
    printf("# %s [%s %s, %d threads]: %d tensors, worst %s %.3g x max|ref|\n", f->name, be ? "cuda" : "cpu",
           variant, threads, p->n_ops, worst_name, worst);
    int ng = mr_tokens(ref, "gen.tokens", want, 64);
    assert_int_equal(ng, N_GEN);
    float *gl = mr_ref(ref, "gen.logits", (int64_t)ng * m->n_vocab);
    float *lg = malloc((size_t)m->n_vocab * sizeof *lg);
    for (int k = 0; k < ng; k++) {
        assert_int_equal(exec_last_logits(ex, lg, &err), 0);
        double e = tu_rel_max_err(lg, gl + (size_t)k * m->n_vocab, (size_t)m->n_vocab);
        if (!(e <= TOL_F32))
            fail_msg("%s [%s]: logits choosing generated token %d: error %g x max|ref|", f->name, variant, k,
                     e);
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
    return worst;
}

static void test_f32_vs_hf(void **state)
{
    (void)state;
    static const struct {
        const char *variant;
        int threads;
    } runs[] = {{"ref", 1}, {"ref", 2}, {"opt", 1}, {"opt", 2}};
    for (size_t fi = 0; fi < N_FX; fi++)
        for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++)
            check_against_ref(&k_fx[fi], KERN_BACKEND_CPU, runs[r].variant, runs[r].threads);
}

static void test_cuda_vs_hf(void **state)
{
    (void)state;
    char why[256];
    if (!kern_backend_available(KERN_BACKEND_CUDA, why, sizeof why)) {
        printf("# skipped: %s\n", why);
        skip();
    }
    for (size_t fi = 0; fi < N_FX; fi++) {
        check_against_ref(&k_fx[fi], KERN_BACKEND_CUDA, "ref", 1);
        check_against_ref(&k_fx[fi], KERN_BACKEND_CUDA, "opt", 1);
    }
}

/* Q8_0 (gguf-py's quantizer) against HF float64 on the unquantized weights */
static void test_q8_0_vs_hf(void **state)
{
    (void)state;
    for (size_t fi = 0; fi < N_FX; fi++) {
        const fixture *f = &k_fx[fi];
        char qp[1024], rp[1024];
        xf_err err = {0};
        xf_model *m = model_load(fx_path(qp, sizeof qp, f, "-q8_0.gguf"), &err);
        if (!m)
            fail_msg("%s", err.msg);
        refdump *ref = refdump_open(fx_path(rp, sizeof rp, f, ".ref.safetensors"), &err);
        assert_non_null(ref);
        int32_t tok[64], want[64];
        int n = mr_tokens(ref, "prompt.tokens", tok, 64);
        mr_tokens(ref, "gen.tokens", want, 64);
        for (int v = 0; v < 2; v++) {
            xf_exec *ex = mr_prompt(m, KERN_BACKEND_CPU, v ? "opt" : "ref", 2, tok, n);
            const xf_program *p = exec_program(ex);
            double worst = 0;
            for (int i = 0; i < p->n_ops; i++) {
                float *a = mr_op(ex, i);
                float *b = mr_ref(ref, p->ops[i].name, p->ops[i].numel);
                xf_diff d;
                tensor_diff_rel(a, b, (size_t)p->ops[i].numel, 1.0, &d);
                if (!(d.nmse <= NMSE_Q8_0) || !(d.cosine > 0.999) || d.mismatch_nonfinite)
                    fail_msg("%s Q8_0: %s nmse %g cosine %g", f->name, p->ops[i].name, d.nmse, d.cosine);
                worst = d.nmse > worst ? d.nmse : worst;
                free(a);
                free(b);
            }
            float *lg = malloc((size_t)m->n_vocab * sizeof *lg);
            assert_int_equal(exec_last_logits(ex, lg, &err), 0);
            assert_int_equal(mr_argmax(lg, m->n_vocab), want[0]);
            printf("# %s Q8_0 [%s] vs HF float64: worst nmse %.3g\n", f->name, v ? "opt" : "ref", worst);
            free(lg);
            exec_free(ex);
        }
        refdump_close(ref);
        model_free(m);
    }
}

/* ------------------------------------------------------- check break */

/* RoPE that ignores the mode: NeoX halves on weights permuted for adjacent
 * pairs, the bug a port from Qwen2 would have. Compiled into this test only. */
static int wrong_pairs_rope(kern_ctx *ctx, const kern_args *a)
{
    const kern_variant *ref = kern_find(KERN_OP_ROPE, KERN_BACKEND_CPU, "ref");
    kern_args b = *a;
    b.rope_mode = KERN_ROPE_NEOX;
    return ref->fn(ctx, &b);
}

static const kern_variant k_wrong = {.op = KERN_OP_ROPE,
                                     .backend = KERN_BACKEND_CPU,
                                     .name = "wrong_pairs",
                                     .fn = wrong_pairs_rope,
                                     .doc = "RoPE in NeoX halves whatever the mode (test only)"};

static void test_check_names_wrong_rope(void **state)
{
    (void)state;
    char mp[1024];
    xf_repl *r = tu_repl_new();
    assert_non_null(r);
    r->n_threads = 2;
    tu_repl_load(r, fx_path(mp, sizeof mp, &k_fx[0], "-f32.gguf"));
    xf_err err = {0};
    assert_int_equal(exec_variant_add(r->ex, &k_wrong, &err), 0);
    tu_cmd(r, "kernel rope wrong_pairs", 0);
    tu_cmd(r, "check break", 0);
    tu_cmd(r, "run --tokens 5,17,99,250,3", 0);
    const char *o = tu_cmd(r, "continue", 0);
    if (!strstr(o, "check: blk.0.q_rope (rope/cpu/wrong_pairs) over tolerance"))
        fail_msg("continue said: %s", o);
    xf_where w;
    exec_where(r->ex, &w);
    assert_string_equal(exec_program(r->ex)->ops[w.last].name, "blk.0.q_rope");
    o = tu_cmd(r, "check", 0);
    if (!strstr(o, "first op over tolerance: blk.0.q_rope (kernel rope/cpu/wrong_pairs)"))
        fail_msg("check said: %s", o);
    /* with the right variant the same pass checks clean */
    tu_cmd(r, "kernel rope ref", 0);
    tu_cmd(r, "check on", 0);
    tu_cmd(r, "run --tokens 5,17,99,250,3", 0);
    tu_cmd(r, "continue", 0);
    o = tu_cmd(r, "check", 0);
    if (!strstr(o, "none over tolerance"))
        fail_msg("check said: %s", o);
    repl_free(r);
}

/* ---------------------------------------------------------- validation */

/* A copy of src with u32 key set to val (or tensor `drop` left out); returns out. */
static const char *copy_gguf(const char *src, char *out, size_t out_size, const char *key, uint32_t val,
                             const char *drop)
{
    xf_err err = {0};
    gguf_file *g = gguf_open(src, &err);
    if (!g)
        fail_msg("%s", err.msg);
    gguf_writer *w = gguf_writer_new(3, 32);
    assert_non_null(w);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (!key || !gguf_str_eq(g->kv[i].key, key))
            assert_int_equal(gguf_writer_copy_kv(w, g, &g->kv[i]), 0);
    if (key)
        assert_int_equal(gguf_writer_set_u32(w, key, val), 0);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        if (!drop || strcmp(name, drop) != 0)
            assert_int_equal(gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data, t->size), 0);
    }
    tu_tmp_path(out, out_size, ".gguf");
    if (gguf_writer_save(w, out, &err) != 0)
        fail_msg("%s", err.msg);
    gguf_writer_free(w);
    gguf_close(g);
    return out;
}

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
    assert_null(strchr(err.msg, '\n'));
    assert_non_null(strstr(err.msg, path));
}

static void test_validation(void **state)
{
    (void)state;
    char src[1024], out[1024];
    fx_path(src, sizeof src, &k_fx[0], "-f32.gguf");
    static const struct {
        const char *key;
        uint32_t val;
        const char *drop, *needle;
    } cases[] = {
        /* RoPE over part of a head (16) is not supported */
        {"llama.rope.dimension_count", 8, NULL, "llama.rope.dimension_count at byte "},
        {"llama.vocab_size", 385, NULL, "llama.vocab_size at byte "},
        /* 6 heads cannot share 4 kv heads */
        {"llama.attention.head_count_kv", 4, NULL, "llama.attention.head_count at byte "},
        /* an odd head dimension has no pairs: 96 / 32 = 3 */
        {"llama.attention.head_count", 32, NULL, "is odd: RoPE needs pairs"},
        {NULL, 0, "blk.1.ffn_gate.weight", "tensor 'blk.1.ffn_gate.weight' is missing (architecture llama)"},
        {NULL, 0, "blk.0.attn_k.weight", "tensor 'blk.0.attn_k.weight' is missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        expect_load_error(copy_gguf(src, out, sizeof out, cases[i].key, cases[i].val, cases[i].drop),
                          cases[i].needle);
        unlink(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hparams_and_program),
        cmocka_unit_test(test_rope_normal_mode),
        cmocka_unit_test(test_f32_vs_hf),
        cmocka_unit_test(test_q8_0_vs_hf),
        cmocka_unit_test(test_check_names_wrong_rope),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_cuda_vs_hf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
