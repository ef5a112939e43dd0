/* A Qwen2 model with every matrix in MXFP4 (tests/fixtures/qwen2/
 * qwen2-gqa-mxfp4.gguf, quantized by gguf-py as ggml's
 * quantize_row_mxfp4_ref does; scripts/make_qwen2_fixtures.py --mxfp4)
 * against HF transformers float64 on the weights gguf-py dequantizes from
 * that file: the MXFP4 kernels and the pass are judged by the F32 contract
 * (every canonical tensor within 1e-4 x max|ref|, the 10 greedy tokens and
 * the logits choosing them as HF's), the quantization error is not. ref and
 * opt on the CPU (1 and 2 threads: opt's prefill dequantizes chunks, its
 * decode runs the fused MXFP4 dot), and on CUDA where a GPU answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "model_ref.h"

static const char *fx(char *buf, size_t size, const char *suffix)
{
    char rel[256];
    snprintf(rel, sizeof rel, "tests/fixtures/qwen2/qwen2-gqa-mxfp4%s", suffix);
    return tu_src_path(buf, size, rel);
}

static void test_file_is_mxfp4(void **state)
{
    (void)state;
    char mp[1024];
    xf_err err = {0};
    xf_model *m = model_load(fx(mp, sizeof mp, ".gguf"), &err);
    if (!m)
        fail_msg("%s", err.msg);
    assert_int_equal(m->arch, XF_ARCH_QWEN2);
    int mx = 0;
    for (int i = 0; i < m->n_weights; i++) {
        int want = m->weights[i].rows > 1 ? XF_TYPE_MXFP4 : XF_TYPE_F32;
        if (m->weights[i].type != want)
            fail_msg("%s: %s is %s", mp, m->weights[i].name, quant_type_name(m->weights[i].type));
        mx += want == XF_TYPE_MXFP4;
    }
    assert_int_equal(mx, 1 + 2 * 7); /* token_embd (tied output) and 7 matrices a layer */
    model_free(m);
}

static void test_cpu_vs_hf(void **state)
{
    (void)state;
    static const struct {
        const char *variant;
        int threads;
    } runs[] = {{"ref", 1}, {"opt", 1}, {"opt", 2}};
    char mp[1024], rp[1024];
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        char wn[64];
        double w = mr_check(fx(mp, sizeof mp, ".gguf"), fx(rp, sizeof rp, ".ref.safetensors"), KERN_BACKEND_CPU,
                            runs[r].variant, runs[r].threads, wn);
        printf("# qwen2-gqa MXFP4 [cpu %s, %d threads]: worst %s %.3g x max|ref|\n", runs[r].variant,
               runs[r].threads, wn, w);
    }
}

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
        double w = mr_check(fx(mp, sizeof mp, ".gguf"), fx(rp, sizeof rp, ".ref.safetensors"), KERN_BACKEND_CUDA,
                            vars[v], 1, wn);
        printf("# qwen2-gqa MXFP4 [cuda %s]: worst %s %.3g x max|ref|\n", vars[v], wn, w);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_is_mxfp4),
        cmocka_unit_test(test_cpu_vs_hf),
        cmocka_unit_test(test_cuda_vs_hf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
