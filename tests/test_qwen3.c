/* The Qwen3 forward pass against HF transformers float64 references
 * (tests/fixtures/qwen3/, made by scripts/make_qwen3_fixtures.py): a tiny
 * random Qwen3ForCausalLM, GQA 2:1, tied output, no q/k/v biases, per-head
 * RMSNorm of q and k before RoPE, and a head_dim (40, qwen3.attention.
 * key_length) that is not hidden/heads (96/4 = 24).
 *
 * - hyperparameters, the program (19 ops a block, q_norm/k_norm between
 *   the projections and RoPE), shapes, kernel arguments and aliases;
 * - every canonical tensor of the prompt pass within 1e-4 x max|ref| and
 *   the 10 greedy tokens identical to HF generate, with ref and opt on
 *   the CPU (1 and 2 threads) and on CUDA where a GPU answers;
 * - the Q8_0 file against an F32 copy of its dequantized weights;
 * - the qwen3-specific validation of model_load (one line, file, key and
 *   byte offset). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "model_ref.h"
#include "program.h"

#define N_LAYER 2
#define D 96
#define H 4
#define KV 2
#define DH 40
#define FF 224
#define VOCAB 512
#define N_PROMPT 7
#define N_GEN 10

static const char *const k_block[] = {"attn_norm", "q",       "k",        "v",        "q_norm",   "k_norm",  "q_rope",
                                      "k_rope",    "kq",      "kq_soft",  "kqv",      "attn_out", "ffn_inp", "ffn_norm",
                                      "ffn_gate",  "ffn_up",  "ffn_act",  "ffn_out",  "out"};
#define N_BLOCK (sizeof k_block / sizeof k_block[0])

static const char *fx(char *buf, size_t size, const char *suffix)
{
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/qwen3/qwen3-gqa%s", suffix);
    return tu_src_path(buf, size, rel);
}

static void test_hparams_and_program(void **state)
{
    (void)state;
    char mp[1024];
    xf_err err = {0};
    xf_model *m = model_load(fx(mp, sizeof mp, "-f32.gguf"), &err);
    if (!m)
        fail_msg("%s", err.msg);
    assert_int_equal(m->arch, XF_ARCH_QWEN3);
    assert_string_equal(model_arch_name(m->arch), "qwen3");
    assert_int_equal(m->n_layer, N_LAYER);
    assert_int_equal(m->n_embd, D);
    assert_int_equal(m->n_head, H);
    assert_int_equal(m->n_head_kv, KV);
    assert_int_equal(m->head_dim, DH); /* key_length, not D/H = 24 */
    assert_int_equal(m->n_ff, FF);
    assert_int_equal(m->n_vocab, VOCAB);
    assert_true(m->rope_base == 1e6f);
    assert_true(m->eps == 1e-6f);
    assert_true(m->tied_output);
    for (int l = 0; l < N_LAYER; l++) {
        const xf_layer *L = &m->layers[l];
        assert_null(L->q_b);
        assert_null(L->k_b);
        assert_null(L->v_b);
        assert_int_equal(L->q->rows, H * DH);
        assert_int_equal(L->k->rows, KV * DH);
        assert_int_equal(L->attn_out->cols, H * DH);
        assert_int_equal(L->attn_out->rows, D);
        assert_non_null(L->q_norm);
        assert_non_null(L->k_norm);
        assert_int_equal(L->q_norm->cols, DH);
        assert_int_equal(L->q_norm->type, XF_TYPE_F32);
    }
    const int n = N_PROMPT;
    xf_program p;
    assert_int_equal(program_build(m, n, 0, &p, &err), 0);
    assert_int_equal(p.n_ops, 3 + (int)N_BLOCK * N_LAYER);
    for (int l = 0; l < N_LAYER; l++)
        for (size_t k = 0; k < N_BLOCK; k++) {
            char nm[64];
            snprintf(nm, sizeof nm, "blk.%d.%s", l, k_block[k]);
            assert_string_equal(p.ops[1 + l * (int)N_BLOCK + (int)k].name, nm);
        }
    /* the head norms: RMSNORM over n*heads rows of head_dim, shape [n, heads, Dh] */
    int qn = program_find(&p, "blk.1.q_norm"), kn = program_find(&p, "blk.1.k_norm");
    int q = program_find(&p, "blk.1.q"), k = program_find(&p, "blk.1.k");
    assert_int_equal(p.ops[qn].kind, KERN_OP_RMSNORM);
    assert_int_equal(p.ops[qn].in0, q);
    assert_int_equal(p.ops[qn].args.n, n * H);
    assert_int_equal(p.ops[qn].args.k, DH);
    assert_true(p.ops[qn].args.eps == 1e-6f);
    assert_string_equal(p.ops[qn].w->name, "blk.1.attn_q_norm.weight");
    assert_int_equal(p.ops[kn].in0, k);
    assert_int_equal(p.ops[kn].args.n, n * KV);
    assert_string_equal(p.ops[kn].w->name, "blk.1.attn_k_norm.weight");
    assert_int_equal(p.ops[qn].ndim, 3);
    assert_int_equal(p.ops[qn].shape[1], H);
    assert_int_equal(p.ops[qn].shape[2], DH);
    assert_int_equal(p.ops[kn].shape[1], KV);
    /* RoPE takes the normed heads; k_rope is what the cache stores */
    assert_int_equal(p.ops[program_find(&p, "blk.1.q_rope")].in0, qn);
    assert_int_equal(p.ops[program_find(&p, "blk.1.k_rope")].in0, kn);
    assert_int_equal(p.ops[program_find(&p, "blk.1.k_rope")].cache, XF_CACHE_K);
    assert_int_equal(p.ops[program_find(&p, "blk.1.q_rope")].args.head_dim, DH);
    int kq = program_find(&p, "blk.1.kq");
    assert_true(fabsf(p.ops[kq].args.scale - 1.0f / sqrtf((float)DH)) < 1e-7f);
    assert_int_equal(p.ops[kq].args.head_dim, DH);
    int kqv = program_find(&p, "blk.1.kqv");
    assert_int_equal(p.ops[kqv].shape[1], H * DH);
    program_free(&p);
    model_free(m);

    /* aliases: llama.cpp's graph names, HF module paths, short forms */
    static const char *const al[][2] = {
        {"Qcur_normed-1", "blk.1.q_norm"},
        {"Kcur_normed-0", "blk.0.k_norm"},
        {"model.layers.1.self_attn.q_norm", "blk.1.q_norm"},
        {"model.layers.0.self_attn.k_norm", "blk.0.k_norm"},
        {"q_norm1", "blk.1.q_norm"},
        {"k_norm0", "blk.0.k_norm"},
        {"Qcur-1", "blk.1.q"},
    };
    for (size_t i = 0; i < sizeof al / sizeof al[0]; i++) {
        char out[64];
        assert_int_equal(program_resolve_alias(al[i][0], out, sizeof out), 1);
        assert_string_equal(out, al[i][1]);
    }
}

static void test_f32_vs_hf(void **state)
{
    (void)state;
    static const struct {
        const char *variant;
        int threads;
    } runs[] = {{"ref", 1}, {"ref", 2}, {"opt", 1}, {"opt", 2}};
    char mp[1024], rp[1024];
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        char wn[64];
        double w = mr_check(fx(mp, sizeof mp, "-f32.gguf"), fx(rp, sizeof rp, ".ref.safetensors"), KERN_BACKEND_CPU,
                            runs[r].variant, runs[r].threads, wn);
        printf("# qwen3-gqa F32 [cpu %s, %d threads]: worst %s %.3g x max|ref|\n", runs[r].variant, runs[r].threads,
               wn, w);
    }
}

static void test_q8_0_vs_dequant(void **state)
{
    (void)state;
    char qp[1024], rp[1024];
    xf_err err = {0};
    refdump *ref = refdump_open(fx(rp, sizeof rp, ".ref.safetensors"), &err);
    assert_non_null(ref);
    int32_t tok[MR_MAX_TOK];
    int n = mr_tokens(ref, "prompt.tokens", tok, MR_MAX_TOK);
    refdump_close(ref);
    static const char *const vars[] = {"ref", "opt"};
    for (int v = 0; v < 2; v++) {
        double w = mr_check_vs_dequant(fx(qp, sizeof qp, "-q8_0.gguf"), XF_TYPE_Q8_0, tok, n, N_GEN,
                                       KERN_BACKEND_CPU, vars[v], v + 1);
        printf("# qwen3-gqa Q8_0 vs dequantized F32 [cpu %s]: worst %.3g x max|ref|\n", vars[v], w);
    }
}

/* CUDA: ref and opt keep the same contract as the CPU (opt's decode passes
 * run as CUDA graphs) */
static void test_cuda_vs_hf(void **state)
{
    (void)state;
    if (!mr_have_cuda()) {
        printf("# no CUDA device: skipped\n");
        skip();
    }
    char mp[1024], rp[1024];
    static const char *const vars[] = {"ref", "opt"};
    for (int v = 0; v < 2; v++) {
        char wn[64];
        double w = mr_check(fx(mp, sizeof mp, "-f32.gguf"), fx(rp, sizeof rp, ".ref.safetensors"),
                            KERN_BACKEND_CUDA, vars[v], 1, wn);
        printf("# qwen3-gqa F32 [cuda %s]: worst %s %.3g x max|ref|\n", vars[v], wn, w);
    }
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
    fx(src, sizeof src, "-f32.gguf");
    /* the head norms are required */
    mr_copy_opts o = {.drop = "blk.1.attn_k_norm.weight"};
    expect_load_error(mr_copy_gguf(src, out, sizeof out, &o), "'blk.1.attn_k_norm.weight' is missing");
    unlink(out);
    /* V heads of another size than K heads: refused, naming the key and its byte */
    o = (mr_copy_opts){.u32_key = "qwen3.attention.value_length", .u32_val = 32};
    expect_load_error(mr_copy_gguf(src, out, sizeof out, &o), "qwen3.attention.value_length at byte");
    unlink(out);
    /* an odd head size cannot be rotated */
    o = (mr_copy_opts){.u32_key = "qwen3.attention.key_length", .u32_val = 39};
    expect_load_error(mr_copy_gguf(src, out, sizeof out, &o), "qwen3.attention.key_length at byte");
    unlink(out);
    /* a head size that the weights do not have: attn_output has H x 40 columns */
    o = (mr_copy_opts){.u32_key = "qwen3.attention.key_length", .u32_val = 32,
                       .u32_key2 = "qwen3.attention.value_length", .u32_val2 = 32};
    expect_load_error(mr_copy_gguf(src, out, sizeof out, &o), "expected [96, 128]");
    unlink(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hparams_and_program),
        cmocka_unit_test(test_f32_vs_hf),
        cmocka_unit_test(test_q8_0_vs_dequant),
        cmocka_unit_test(test_cuda_vs_hf),
        cmocka_unit_test(test_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
