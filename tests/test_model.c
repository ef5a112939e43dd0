/* The GPT-2 forward pass against the HF transformers float64 reference:
 * every canonical tensor within 1e-4 x max|ref|, and the greedy tokens
 * identical, with ref and opt kernels, for the F16 model and an F32 copy
 * written by our own GGUF writer. */
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
#include "testutil.h"

static void check_against_ref_on(const char *model_path, const char *variant, int threads, kern_backend be)
{
    char rp[1024];
    xf_err err = {0};
    xf_model *m = model_load(model_path, &err);
    assert_non_null(m);
    refdump *ref = refdump_open(tu_src_path(rp, sizeof rp, TU_MODEL_REF), &err);
    assert_non_null(ref);
    xf_exec *ex = exec_new(m, be, threads, &err);
    assert_non_null(ex);
    assert_int_equal(exec_kernel_select(ex, -1, variant, &err), 0);

    const refdump_tensor *pt = refdump_find(ref, "prompt.tokens");
    assert_non_null(pt);
    int n = (int)refdump_numel(pt);
    int32_t tok[64];
    assert_true(n > 0 && n <= 64);
    assert_int_equal(refdump_read_i32(ref, pt, tok, &err), 0);
    assert_int_equal(exec_begin(ex, tok, n, false, &err), 0);
    xf_stop why;
    assert_int_equal(exec_run(ex, XF_RUN_FINISH, 0, &why, &err), 0);
    assert_int_equal(why, XF_STOP_END);

    const xf_program *p = exec_program(ex);
    int compared = 0;
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; i < p->n_ops; i++) {
        const refdump_tensor *t = refdump_find(ref, p->ops[i].name);
        if (!t)
            continue;
        assert_int_equal(refdump_numel(t), p->ops[i].numel);
        float *a = malloc((size_t)p->ops[i].numel * sizeof(float));
        float *b = malloc((size_t)p->ops[i].numel * sizeof(float));
        assert_int_equal(exec_tensor_read(ex, i, a, &err), 0);
        assert_int_equal(refdump_read_f32(ref, t, b, &err), 0);
        double e = tu_rel_max_err(a, b, (size_t)p->ops[i].numel);
        if (e > worst) {
            worst = e;
            worst_name = p->ops[i].name;
        }
        if (e > 1e-4)
            fail_msg("%s [%s]: %s error %g x max|ref| > 1e-4", model_path, variant, p->ops[i].name, e);
        free(a);
        free(b);
        compared++;
    }
    /* embd, 6 layers x 11 names, out_norm, logits */
    assert_int_equal(compared, 2 + 6 * 11 + 1);
    printf("# %s [%s/%s, %d threads]: %d tensors, worst %s %.3g x max|ref|\n", model_path, kern_backend_name(be),
           variant, threads, compared, worst_name, worst);

    /* greedy continuation with the KV cache: one single-token pass per token */
    const refdump_tensor *gt = refdump_find(ref, "gen.tokens");
    assert_non_null(gt);
    int ng = (int)refdump_numel(gt);
    int32_t want[64];
    assert_true(ng <= 64);
    assert_int_equal(refdump_read_i32(ref, gt, want, &err), 0);
    float *lg = malloc((size_t)m->n_vocab * sizeof(float));
    for (int k = 0; k < ng; k++) {
        assert_int_equal(exec_last_logits(ex, lg, &err), 0);
        int32_t best = 0;
        for (int v = 1; v < m->n_vocab; v++)
            if (lg[v] > lg[best])
                best = v;
        if (best != want[k])
            fail_msg("generated token %d is %d, reference %d", k, best, want[k]);
        assert_int_equal(exec_begin(ex, &best, 1, true, &err), 0);
        xf_where w;
        exec_where(ex, &w);
        assert_int_equal(w.pos0, n + k);
        assert_int_equal(exec_run(ex, XF_RUN_FINISH, 0, &why, &err), 0);
    }
    free(lg);
    exec_free(ex);
    refdump_close(ref);
    model_free(m);
}

static void check_against_ref(const char *model_path, const char *variant, int threads)
{
    check_against_ref_on(model_path, variant, threads, KERN_BACKEND_CPU);
}

/* the same contract on the GPU: the cuda ref and opt kernels end to end */
static void test_cuda(void **state)
{
    (void)state;
    char mp[1024], why[256];
    if (!kern_backend_available(KERN_BACKEND_CUDA, why, sizeof why)) {
        printf("# skipped: %s\n", why);
        skip();
    }
    check_against_ref_on(tu_src_path(mp, sizeof mp, TU_MODEL), "ref", 1, KERN_BACKEND_CUDA);
    check_against_ref_on(tu_src_path(mp, sizeof mp, TU_MODEL), "opt", 1, KERN_BACKEND_CUDA);
}

static void test_f16_ref(void **state)
{
    (void)state;
    char mp[1024];
    check_against_ref(tu_src_path(mp, sizeof mp, TU_MODEL), "ref", 1);
}

static void test_f16_opt(void **state)
{
    (void)state;
    char mp[1024];
    check_against_ref(tu_src_path(mp, sizeof mp, TU_MODEL), "opt", 2);
}

/* an F32 copy of the model through our own writer: every kv copied, every
 * tensor converted */
static void test_f32_copy(void **state)
{
    (void)state;
    char mp[1024], out[1024];
    xf_err err = {0};
    gguf_file *g = gguf_open(tu_src_path(mp, sizeof mp, TU_MODEL), &err);
    assert_non_null(g);
    gguf_writer *w = gguf_writer_new(3, 32);
    assert_non_null(w);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        if (gguf_str_eq(g->kv[i].key, "general.file_type"))
            continue;
        assert_int_equal(gguf_writer_copy_kv(w, g, &g->kv[i]), 0);
    }
    assert_int_equal(gguf_writer_set_u32(w, "general.file_type", 0), 0);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        int64_t n = 1;
        for (int d = 0; d < t->n_dims; d++)
            n *= t->ne[d];
        float *f = malloc((size_t)n * sizeof(float));
        int64_t row = t->ne[0];
        uint64_t rb;
        assert_true(quant_row_bytes(t->type, row, &rb));
        for (int64_t r = 0; r < n / row; r++)
            quant_dequant_row(t->type, (const uint8_t *)t->data + r * rb, f + r * row, row);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        assert_int_equal(gguf_writer_add_tensor(w, name, XF_TYPE_F32, t->n_dims, t->ne, f, (uint64_t)n * 4), 0);
        free(f);
    }
    tu_tmp_path(out, sizeof out, ".gguf");
    assert_int_equal(gguf_writer_save(w, out, &err), 0);
    gguf_writer_free(w);
    gguf_close(g);
    check_against_ref(out, "ref", 1);
    check_against_ref(out, "opt", 2);
    unlink(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_ref),
        cmocka_unit_test(test_f16_opt),
        cmocka_unit_test(test_f32_copy),
        cmocka_unit_test(test_cuda),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
