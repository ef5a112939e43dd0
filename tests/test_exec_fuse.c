/* test_exec_fuse: the op loop's matmul fusion of a prefill on cuda
 * (engine/exec_fuse.c, kernels_cuda.h kern_cuda_matmul_multi): a prefill
 * run by finish launches a layer's matmuls that read the same input (gate
 * and up; q, k and v) together where the kernel takes them, and every
 * tensor is the same bits as the pass stepped op by op (which fuses
 * nothing); the fused launches are counted (xf_graph_stats.mm_fused) on
 * the fixtures whose matrices have kept codes and none on the F32 ones
 * (the product does not take F32); a breakpoint on ffn_gate stops there
 * with ffn_up not yet run (those two not fused), and the rest of that pass
 * matches too; check mode fuses nothing, nor a process without
 * XF_MM_MULTI=1 (off until timed on a GPU). Exit 77
 * (ctest: skipped) when no CUDA device answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "exec.h"
#include "model.h"
#include "quant.h"
#include "testutil.h"

#define TF_PROMPT 37 /* tokens: past the matrix-vector kernels' 4, not a multiple of a tile */

static const char *const tf_fixtures[] = {
    "tests/fixtures/qwen2/qwen2-gqa-f32.gguf",  "tests/fixtures/qwen2/qwen2-mqa-q8_0.gguf",
    "tests/fixtures/qwen2/qwen2-gqa-mix.gguf",  "tests/fixtures/qwen2/qwen2-gqa-mxfp4.gguf",
    "tests/fixtures/llama/llama-gqa-q8_0.gguf", "tests/fixtures/qwen3/qwen3-gqa-q8_0.gguf",
};

static xf_exec *tf_exec(xf_model *m)
{
    xf_err err = {0};
    xf_exec *ex = exec_new(m, KERN_BACKEND_CUDA, 1, &err);
    if (!ex)
        fail_msg("exec_new: %s", err.msg);
    return ex;
}

static void tf_begin(xf_exec *ex)
{
    const xf_model *m = exec_model(ex);
    int32_t tok[TF_PROMPT];
    for (int i = 0; i < TF_PROMPT; i++)
        tok[i] = (int32_t)((11 + 613 * i) % m->n_vocab);
    xf_err err = {0};
    if (exec_begin(ex, tok, TF_PROMPT, false, &err) != 0)
        fail_msg("exec_begin: %s", err.msg);
}

static void tf_run(xf_exec *ex, xf_run_mode mode, int count, xf_stop want)
{
    xf_err err = {0};
    xf_stop why;
    if (exec_run(ex, mode, count, &why, &err) != 0)
        fail_msg("exec_run: %s", err.msg);
    assert_int_equal(why, want);
}

static int tf_find(const xf_exec *ex, const char *name)
{
    const xf_program *p = exec_program(ex);
    for (int i = 0; i < p->n_ops; i++)
        if (strcmp(p->ops[i].name, name) == 0)
            return i;
    fail_msg("no op %s", name);
    return -1;
}

/* every tensor of the passes of a and b that both have ready, bit for bit
 * (the logits' owed rows settled by the read) */
static void tf_same(xf_exec *a, xf_exec *b, const char *what)
{
    const xf_program *p = exec_program(a);
    xf_err err = {0};
    int compared = 0;
    for (int i = 0; i < p->n_ops; i++) {
        if (!exec_tensor_ready(a, i) || !exec_tensor_ready(b, i))
            continue;
        size_t n = (size_t)p->ops[i].numel;
        float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        assert_true(x && y);
        tu_poison(x, n);
        tu_poison(y, n);
        if (exec_tensor_read(a, i, x, &err) != 0 || exec_tensor_read(b, i, y, &err) != 0)
            fail_msg("%s: reading %s: %s", what, p->ops[i].name, err.msg);
        for (size_t j = 0; j < n; j++)
            if (memcmp(&x[j], &y[j], sizeof *x) != 0)
                fail_msg("%s: %s differs at %zu: %.9g vs %.9g", what, p->ops[i].name, j, x[j], y[j]);
        free(x);
        free(y);
        compared++;
    }
    assert_true(compared > 0);
}

static void tf_fixture(const char *path)
{
    xf_err err = {0};
    xf_model *m = model_load(path, &err);
    if (!m)
        fail_msg("%s: %s", path, err.msg);
    xf_exec *fused = tf_exec(m), *stepped = tf_exec(m);
    int kept;
    size_t kb;
    exec_codes_kept(fused, &kept, &kb);
    xf_graph_stats st;
    char what[1100];

    tf_begin(fused);
    tf_run(fused, XF_RUN_FINISH, 0, XF_STOP_END);
    tf_begin(stepped);
    tf_run(stepped, XF_RUN_STEP, exec_program(stepped)->n_ops, XF_STOP_END);
    exec_graph_stats(fused, &st);
    long per_pass = st.mm_fused;
    /* kept codes: gate and up at least, a layer each; F32: none; none
     * without the wgmma product (exec_mm_fuse_why says so) */
    char fwhy[256];
    if (kept > 0 && !exec_mm_fuse_why(fused, fwhy, sizeof fwhy))
        assert_true(per_pass >= m->n_layer);
    else
        assert_int_equal(per_pass, 0);
    exec_graph_stats(stepped, &st);
    assert_int_equal(st.mm_fused, 0);
    /* `graph` names the product; the F32 fixture's layer matrices as F32 */
    char mp[512];
    assert_non_null(exec_mm_path(fused, mp, sizeof mp));
    assert_non_null(strstr(mp, "run on the tensor cores"));
    bool f32 = false;
    for (int l = 0; l < m->n_layer; l++) {
        const xf_layer *L = &m->layers[l];
        const xf_weight *w[] = {L->qkv, L->q, L->k, L->v, L->attn_out, L->ffn_gate, L->ffn_up, L->ffn_down};
        for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
            f32 |= w[i] && w[i]->type == XF_TYPE_F32;
    }
    if ((strstr(mp, "F32 weights:") != NULL) != f32)
        fail_msg("%s: graph's product line \"%s\" (F32 layer matrices: %s)", path, mp, f32 ? "yes" : "no");
    snprintf(what, sizeof what, "%s: finish (%ld fused launches) vs stepped", path, per_pass);
    tf_same(fused, stepped, what);
    printf("# %s: %d matrices' codes kept, %ld launches of 2-3 matmuls a prefill, every tensor the same\n",
           path, kept, per_pass);

    /* a breakpoint on blk.0.ffn_gate: stops there, ffn_up not run */
    assert_true(exec_break_add(fused, "blk.0.ffn_gate", NULL, NULL, NULL, NULL, &err) > 0);
    tf_begin(fused);
    tf_run(fused, XF_RUN_CONTINUE, 0, XF_STOP_BREAK);
    assert_true(exec_tensor_ready(fused, tf_find(fused, "blk.0.ffn_gate")));
    assert_false(exec_tensor_ready(fused, tf_find(fused, "blk.0.ffn_up")));
    tf_run(fused, XF_RUN_CONTINUE, 0, XF_STOP_END);
    assert_int_equal(exec_break_delete(fused, -1, &err), 0);
    snprintf(what, sizeof what, "%s: stopped at blk.0.ffn_gate, then continued, vs stepped", path);
    tf_same(fused, stepped, what);

    /* check on: each op alone, nothing fused */
    exec_graph_stats(fused, &st);
    long before = st.mm_fused;
    exec_check_set(fused, XF_CHECK_ON);
    tf_begin(fused);
    tf_run(fused, XF_RUN_FINISH, 0, XF_STOP_END);
    exec_graph_stats(fused, &st);
    assert_int_equal(st.mm_fused, before);
    assert_non_null(exec_mm_fuse_why(fused, what, sizeof what));
    exec_check_set(fused, XF_CHECK_OFF);
    assert_null(exec_mm_fuse_why(fused, what, sizeof what));
    exec_free(fused);
    exec_free(stepped);
    model_free(m);
}

static void test_prefill_matmuls_fused(void **state)
{
    (void)state;
    char mp[1024];
    /* off without XF_MM_MULTI=1 (until timed on a GPU) */
    assert_int_equal(unsetenv("XF_MM_MULTI"), 0);
    {
        xf_err err = {0};
        xf_model *m = model_load(tu_src_path(mp, sizeof mp, tf_fixtures[1]), &err);
        if (!m)
            fail_msg("%s", err.msg);
        xf_exec *ex = tf_exec(m);
        char why[160];
        assert_non_null(exec_mm_fuse_why(ex, why, sizeof why));
        tf_begin(ex);
        tf_run(ex, XF_RUN_FINISH, 0, XF_STOP_END);
        xf_graph_stats st;
        exec_graph_stats(ex, &st);
        assert_int_equal(st.mm_fused, 0);
        exec_free(ex);
        model_free(m);
    }
    assert_int_equal(setenv("XF_MM_MULTI", "1", 1), 0);
    for (size_t i = 0; i < sizeof tf_fixtures / sizeof tf_fixtures[0]; i++)
        tf_fixture(tu_src_path(mp, sizeof mp, tf_fixtures[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefill_matmuls_fused),
    };
    char why[256];
    if (!kern_backend_available(KERN_BACKEND_CUDA, why, sizeof why)) {
        printf("test_exec_fuse: skipped all %zu tests: %s\n", sizeof tests / sizeof tests[0], why);
        return 77;
    }
    tu_filter_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
