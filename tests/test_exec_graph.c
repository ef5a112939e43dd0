/* test_exec_graph: the fast path of exec on the cuda backend (decode passes
 * captured as CUDA graphs and replayed) against the same passes run op by
 * op: greedy tokens, the final logits and every tensor of the last pass
 * bit-identical, with and without the fast-path fusions, on the GPT-2
 * default model and the Qwen2, llama and Qwen3 fixtures (RoPE in both
 * modes, GQA/MQA, F32, Q8_0, MXFP4: both one-token matrix-vector plans of
 * the fused q/k/v and gate/up launches); breakpoints
 * that split a pass into graphs; what must fall back to op by op (check,
 * hook, timing, step, a kernel that cannot be captured) and what must
 * capture again (buffers that moved); fusions only over the variants they
 * reproduce; a MATMUL variant selected mid-pass that needs more scratch than
 * the pass began with.
 *
 * More models: XF_GRAPH_MODELS=a.gguf:b.gguf. XF_GRAPH_FIXTURE=I: only the
 * I-th fixture (from 0) of the tests that loop over them (one at a time
 * under compute-sanitizer's racecheck, scripts/gpu-sanitize.sh, which
 * runs past a call's time with all of them). XF_GRAPH_BENCH=N also prints
 * decode ms/token over N tokens for each model: op by op, graphs, graphs
 * without fusions, and graphs with breakpoints that never fire (continue).
 * Exit 77 (ctest: skipped) when no CUDA device answers. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "exec.h"
#include "kernels.h"
#include "quant.h"
#include "testutil.h"

#ifdef XF_HAVE_CUDA /* else every test is skipped (main) */
#include <cuda_runtime_api.h>

#include "kernels_cuda.h"
#endif

#define TG_PROMPT 5

static const char *const tg_fixtures[] = {
    TU_MODEL,
    "tests/fixtures/qwen2/qwen2-gqa-f32.gguf",
    "tests/fixtures/qwen2/qwen2-mqa-q8_0.gguf",
    "tests/fixtures/qwen2/qwen2-gqa-mix.gguf", /* q, k Q5_0 and v Q8_0: one q/k/v launch */
    "tests/fixtures/qwen2/qwen2-gqa-mxfp4.gguf",
    "tests/fixtures/llama/llama-gqa-q8_0.gguf",
    "tests/fixtures/llama/llama-tied-f32.gguf",
    "tests/fixtures/qwen3/qwen3-gqa-q8_0.gguf",
};

/* graph nodes the fusions save over one node per op (exec_graph.c):
 * residual + norm (2 a layer); GPT-2: the q/k/v split with its stores
 * (5 -> 1) and ffn_up + gelu (2 -> 1); Qwen2 and llama: q, k, v, the v
 * store, q_rope, k_rope and the k store (7) -> one launch per weight type
 * of q/k/v (one for two types of a pair kern_cuda_matvec_pair_fused names),
 * the rotations and stores inside the attention's launch
 * (kern_cuda_attn_rope_fused); every SwiGLU model: gate,
 * up and swiglu (3) -> 1; every model: kq, softmax and kqv (3) -> 1 (or
 * 2 with a context longer than 256) */
static int tg_fused_fewer(const xf_model *m)
{
    /* kq, softmax, kqv (3) -> 1, or 2 where the context allows rows longer
     * than one KQV chunk (kern_cuda_attn_fused) */
#ifdef XF_HAVE_CUDA
    int long_rows = kern_cuda_attn_part_floats(m->n_head, m->head_dim, m->n_ctx) >
                    kern_cuda_attn_part_floats(m->n_head, m->head_dim, 1); /* more than one chunk's */
#else
    int long_rows = 0;
#endif
    int L = m->n_layer, fewer = 2 * L + (long_rows ? 1 : 2) * L;
    if (m->arch == XF_ARCH_GPT2)
        return fewer + 5 * L;
    for (int l = 0; l < L; l++) {
        const xf_layer *ly = &m->layers[l];
        if (m->arch == XF_ARCH_QWEN2 || m->arch == XF_ARCH_LLAMA) {
            int types = 1 + (ly->k->type != ly->q->type) +
                        (ly->v->type != ly->q->type && ly->v->type != ly->k->type);
            int launches = types;
#ifdef XF_HAVE_CUDA
            int other = ly->k->type != ly->q->type ? ly->k->type : ly->v->type;
            if (types == 2 && kern_cuda_matvec_pair_fused(ly->q->type, other))
                launches = 1;
#endif
            /* the rotations and stores run inside the attention's launch */
            fewer += 7 - launches;
        }
        fewer += 2;
    }
    return fewer;
}

static xf_exec *tg_exec(xf_model *m, xf_graph_mode mode)
{
    xf_err err = {0};
    xf_exec *ex = exec_new(m, KERN_BACKEND_CUDA, 1, &err);
    if (!ex)
        fail_msg("exec_new: %s", err.msg);
    exec_set_graph_mode(ex, mode);
    assert_int_equal(exec_graph_mode(ex), mode);
    return ex;
}

static void tg_prompt(const xf_model *m, int32_t *tok)
{
    for (int i = 0; i < TG_PROMPT; i++)
        tok[i] = (int32_t)((7 + 1009 * i) % m->n_vocab);
}

static int32_t tg_argmax(const float *v, int n)
{
    int32_t b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b])
            b = i;
    return b;
}

static void tg_pass(xf_exec *ex, const int32_t *tok, int n, bool cont, xf_run_mode mode)
{
    xf_err err = {0};
    xf_stop why;
    if (exec_begin(ex, tok, n, cont, &err) != 0)
        fail_msg("exec_begin: %s", err.msg);
    if (exec_run(ex, mode, 0, &why, &err) != 0)
        fail_msg("exec_run: %s", err.msg);
    assert_int_equal(why, XF_STOP_END);
}

/* prompt, then n_gen greedy decode passes (continue); ids[n_gen] */
static void tg_greedy(xf_exec *ex, int n_gen, int32_t *ids)
{
    const xf_model *m = exec_model(ex);
    int32_t tok[TG_PROMPT];
    tg_prompt(m, tok);
    tg_pass(ex, tok, TG_PROMPT, false, XF_RUN_FINISH);
    float *lg = malloc((size_t)m->n_vocab * sizeof *lg);
    assert_non_null(lg);
    xf_err err = {0};
    for (int k = 0; k < n_gen; k++) {
        assert_int_equal(exec_last_logits(ex, lg, &err), 0);
        ids[k] = tg_argmax(lg, m->n_vocab);
        tg_pass(ex, &ids[k], 1, true, XF_RUN_CONTINUE);
    }
    free(lg);
}

/* ops 0..last of the current pass of a and b, bit for bit */
static void tg_same_tensors_to(xf_exec *a, xf_exec *b, int last, const char *what)
{
    const xf_program *p = exec_program(a), *q = exec_program(b);
    assert_int_equal(p->n_ops, q->n_ops);
    assert_true(last < p->n_ops);
    xf_err err = {0};
    for (int i = 0; i <= last; i++) {
        size_t n = (size_t)p->ops[i].numel;
        assert_int_equal(n, (size_t)q->ops[i].numel);
        assert_true(exec_tensor_ready(a, i));
        assert_true(exec_tensor_ready(b, i));
        float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        assert_non_null(x);
        assert_non_null(y);
        tu_poison(x, n);
        tu_poison(y, n);
        assert_int_equal(exec_tensor_read(a, i, x, &err), 0);
        assert_int_equal(exec_tensor_read(b, i, y, &err), 0);
        if (memcmp(x, y, n * sizeof *x) != 0) {
            size_t j = 0;
            while (j < n && memcmp(&x[j], &y[j], sizeof *x) == 0)
                j++;
            fail_msg("%s: %s differs at %zu: %.9g vs %.9g", what, p->ops[i].name, j, x[j], y[j]);
        }
        free(x);
        free(y);
    }
}

/* every tensor of the current pass of a and b, bit for bit */
static void tg_same_tensors(xf_exec *a, xf_exec *b, const char *what)
{
    tg_same_tensors_to(a, b, exec_program(a)->n_ops - 1, what);
}

/* fixture i of a loop over n runs (XF_GRAPH_FIXTURE: that one alone) */
static bool tg_fixture_on(size_t i)
{
    const char *env = getenv("XF_GRAPH_FIXTURE");
    return !env || !*env || strtoul(env, NULL, 10) == i;
}

static int tg_model_count(char ***extra)
{
    *extra = NULL;
    const char *env = getenv("XF_GRAPH_MODELS");
    if (!env || !*env)
        return 0;
    char *dup = strdup(env);
    int n = 0;
    char **v = calloc(16, sizeof *v);
    for (char *save, *t = strtok_r(dup, ":", &save); t && n < 16; t = strtok_r(NULL, ":", &save))
        v[n++] = strdup(t);
    free(dup);
    *extra = v;
    return n;
}

/* eager, graphs and unfused graphs: the same tokens, logits and tensors */
static void tg_same_as_eager(const char *path)
{
    xf_err err = {0};
    xf_model *m = model_load(path, &err);
    if (!m)
        fail_msg("%s: %s", path, err.msg);
    int n_gen = m->n_ctx - TG_PROMPT - 1 < 30 ? m->n_ctx - TG_PROMPT - 1 : 30;
    assert_true(n_gen >= 4);
    xf_exec *ex[4] = {tg_exec(m, XF_GRAPH_OFF), tg_exec(m, XF_GRAPH_ON), tg_exec(m, XF_GRAPH_UNFUSED),
                      tg_exec(m, XF_GRAPH_MEGA)};
    int32_t ids[4][30];
    for (int e = 0; e < 4; e++)
        tg_greedy(ex[e], n_gen, ids[e]);
    static const char *const names[4] = {"op by op", "graphs", "unfused graphs", "graphs (megakernel)"};
    for (int e = 1; e < 4; e++) {
        for (int k = 0; k < n_gen; k++)
            if (ids[e][k] != ids[0][k])
                fail_msg("%s: %s token %d is %d, op by op %d", path, names[e], k, ids[e][k], ids[0][k]);
        char what[1200];
        snprintf(what, sizeof what, "%s, %s vs op by op", path, names[e]);
        tg_same_tensors(ex[e], ex[0], what);
    }
    xf_graph_stats st[4];
    for (int e = 0; e < 4; e++)
        exec_graph_stats(ex[e], &st[e]);
    assert_int_equal(st[0].replays, 0);
    assert_int_equal(st[0].captures, 0);
    for (int e = 1; e < 4; e++) {
        /* one capture, every decode pass replayed, the prefill op by op */
        assert_int_equal(st[e].fallbacks, 0);
        assert_int_equal(st[e].captures, 1);
        assert_int_equal(st[e].replays, n_gen);
    }
    int n_ops = exec_program(ex[1])->n_ops;
    /* unfused: the step copy, one node per op, one per KV-cache store */
    assert_int_equal((int)st[2].nodes, 1 + n_ops + 2 * m->n_layer);
    assert_int_equal((int)st[1].nodes, (int)st[2].nodes - tg_fused_fewer(m));
    /* the megakernel: the fused kernels as its phases, fewer nodes */
    assert_int_equal(st[1].mega_launches, 0);
    assert_true(st[3].mega_launches >= 1);
    assert_true(st[3].mega_phases >= 4 * m->n_layer);
    assert_true(st[3].nodes < st[1].nodes);
    printf("# %s: %d tokens identical; %d ops; graph nodes %zu fused, %zu unfused, %zu with the megakernel (%d "
           "kernels as phases of %d launches)\n",
           path, n_gen, n_ops, st[1].nodes, st[2].nodes, st[3].nodes, st[3].mega_phases, st[3].mega_launches);
    for (int e = 0; e < 4; e++)
        exec_free(ex[e]);
    model_free(m);
}

static void test_same_as_eager(void **state)
{
    (void)state;
    char mp[1024];
    for (size_t i = 0; i < sizeof tg_fixtures / sizeof tg_fixtures[0]; i++)
        if (tg_fixture_on(i))
            tg_same_as_eager(tu_src_path(mp, sizeof mp, tg_fixtures[i]));
    char **extra;
    int n = tg_model_count(&extra);
    for (int i = 0; i < n; i++) {
        tg_same_as_eager(extra[i]);
        free(extra[i]);
    }
    free(extra);
}

/* Decode at depth: op by op, graphs and the megakernel give the same
 * tensors at positions past 16 chunks of 256 keys, where the decode
 * fusion's scoring blocks take several chunks each and the softmax is
 * combined from the chunks' sums (opt_body.h csm_*). The fixtures' context
 * is 64; a RoPE model's n_ctx only sizes its buffers, so the test raises
 * it. The prompt goes in passes of TG_DEPTH_STEP tokens. */
#define TG_DEPTH 4400
#define TG_DEPTH_STEP 550
static void tg_same_at_depth(const char *path)
{
    xf_err err = {0};
    xf_model *m = model_load(path, &err);
    if (!m)
        fail_msg("%s: %s", path, err.msg);
    assert_true(m->arch != XF_ARCH_GPT2); /* learned positions end at n_ctx */
    m->n_ctx = TG_DEPTH + 8;
    xf_exec *ex[3] = {tg_exec(m, XF_GRAPH_OFF), tg_exec(m, XF_GRAPH_ON), tg_exec(m, XF_GRAPH_MEGA)};
    static const char *const names[3] = {"op by op", "graphs", "graphs (megakernel)"};
    int32_t *tok = malloc(TG_DEPTH * sizeof *tok);
    assert_non_null(tok);
    for (int i = 0; i < TG_DEPTH; i++)
        tok[i] = (int32_t)((7 + 1009 * i) % m->n_vocab);
    for (int e = 0; e < 3; e++)
        for (int at = 0; at < TG_DEPTH; at += TG_DEPTH_STEP)
            tg_pass(ex[e], tok + at, TG_DEPTH - at < TG_DEPTH_STEP ? TG_DEPTH - at : TG_DEPTH_STEP, at > 0,
                    XF_RUN_FINISH);
    float *lg = malloc((size_t)m->n_vocab * sizeof *lg);
    assert_non_null(lg);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(exec_last_logits(ex[0], lg, &err), 0);
        int32_t id = tg_argmax(lg, m->n_vocab);
        for (int e = 0; e < 3; e++)
            tg_pass(ex[e], &id, 1, true, XF_RUN_CONTINUE);
        for (int e = 1; e < 3; e++) {
            char what[1200];
            snprintf(what, sizeof what, "%s at position %d, %s vs op by op", path, TG_DEPTH + k, names[e]);
            tg_same_tensors(ex[e], ex[0], what);
        }
    }
    xf_graph_stats st;
    exec_graph_stats(ex[2], &st);
    assert_true(st.mega_launches >= 1);
    assert_int_equal(st.fallbacks, 0);
    printf("# %s: position %d, 3 tokens; every tensor the same op by op, in graphs and in the megakernel\n",
           path, TG_DEPTH);
    free(lg);
    free(tok);
    for (int e = 0; e < 3; e++)
        exec_free(ex[e]);
    model_free(m);
}

static void test_same_at_depth(void **state)
{
    (void)state;
    static const char *const fx[] = {"tests/fixtures/qwen2/qwen2-gqa-f32.gguf",
                                     "tests/fixtures/qwen2/qwen2-mqa-q8_0.gguf"};
    char mp[1024];
    for (size_t i = 0; i < sizeof fx / sizeof fx[0]; i++)
        if (tg_fixture_on(i))
            tg_same_at_depth(tu_src_path(mp, sizeof mp, fx[i]));
}

/* ---- breakpoints split a pass into graphs -------------------------------- */

static void test_breaks_split(void **state)
{
    (void)state;
    char mp[1024];
    xf_err err = {0};
    xf_model *m = model_load(tu_src_path(mp, sizeof mp, TU_MODEL), &err);
    assert_non_null(m);
    /* the megakernel: its graphs split and watched as ON's (ON: test_watch_trips) */
    xf_exec *g = tg_exec(m, XF_GRAPH_MEGA), *e = tg_exec(m, XF_GRAPH_OFF);
    xf_exec *both[2] = {g, e};
    int32_t tok[TG_PROMPT], next = 11;
    tg_prompt(m, tok);
    int stop = -1;
    for (int k = 0; k < 2; k++) {
        tg_pass(both[k], tok, TG_PROMPT, false, XF_RUN_FINISH);
        assert_true(exec_break_add(both[k], "blk.2.kq_soft", NULL, NULL, NULL, NULL, &err) > 0);
        assert_int_equal(exec_begin(both[k], &next, 1, true, &err), 0);
        xf_stop why;
        assert_int_equal(exec_run(both[k], XF_RUN_CONTINUE, 0, &why, &err), 0);
        assert_int_equal(why, XF_STOP_BREAK);
        xf_where w;
        exec_where(both[k], &w);
        stop = exec_tensor_find(both[k], "blk.2.kq_soft", &err);
        assert_int_equal(w.last, stop);
        assert_int_equal(w.pc, stop + 1);
        /* what the pass has not reached is not there */
        assert_true(exec_tensor_ready(both[k], stop));
        assert_false(exec_tensor_ready(both[k], stop + 1));
        assert_false(exec_tensor_ready(both[k], w.n_ops - 1));
    }
    xf_graph_stats st;
    exec_graph_stats(g, &st);
    assert_int_equal(st.replays, 1);
    tg_same_tensors_to(g, e, stop, "break at blk.2.kq_soft");
    /* three steps op by op, then on to the end */
    for (int k = 0; k < 2; k++) {
        xf_stop why;
        assert_int_equal(exec_run(both[k], XF_RUN_STEP, 3, &why, &err), 0);
        assert_int_equal(why, XF_STOP_STEP);
        assert_int_equal(exec_run(both[k], XF_RUN_CONTINUE, 0, &why, &err), 0);
        assert_int_equal(why, XF_STOP_END);
    }
    exec_graph_stats(g, &st);
    assert_int_equal(st.replays, 2);
    assert_int_equal(st.captures, 2); /* 0..stop, stop+4..end */
    tg_same_tensors(g, e, "break, step 3, continue");
    /* the next pass stops at the same op through the graph kept for it */
    for (int k = 0; k < 2; k++) {
        next = 12;
        assert_int_equal(exec_begin(both[k], &next, 1, true, &err), 0);
        xf_stop why;
        assert_int_equal(exec_run(both[k], XF_RUN_CONTINUE, 0, &why, &err), 0);
        assert_int_equal(why, XF_STOP_BREAK);
        assert_int_equal(exec_run(both[k], XF_RUN_CONTINUE, 0, &why, &err), 0);
        assert_int_equal(why, XF_STOP_END);
    }
    exec_graph_stats(g, &st);
    assert_int_equal(st.captures, 3); /* + stop+1..end */
    assert_int_equal(st.replays, 4);
    tg_same_tensors(g, e, "break, continue");
    /* conditions that never hold: checked inside one graph of the whole
     * pass (its watch node), no split */
    for (int k = 0; k < 2; k++) {
        assert_int_equal(exec_break_delete(both[k], -1, &err), 0);
        assert_true(exec_break_add(both[k], "blk.*.out", "nan", NULL, NULL, NULL, &err) > 0);
        assert_true(exec_break_add(both[k], "blk.1.*", "absmax>1e30", NULL, NULL, NULL, &err) > 0);
        next = 13;
        tg_pass(both[k], &next, 1, true, XF_RUN_CONTINUE);
    }
    int on_dev, splits;
    exec_graph_watch_plan(g, &on_dev, &splits);
    assert_int_equal(splits, 0);
    assert_true(on_dev > m->n_layer);
    exec_graph_stats(g, &st);
    assert_int_equal(st.replays, 5);
    assert_int_equal(st.captures, 4);
    assert_int_equal(st.watch_trips, 0);
    /* the fused whole pass and its watch node */
    size_t watched_nodes = st.nodes; /* with the megakernel: no formula; the watch node is one */
    assert_true(st.mega_launches >= 1);
    tg_same_tensors(g, e, "break blk.*.out if nan");
    /* a plain breakpoint beside them splits only at its op */
    for (int k = 0; k < 2; k++) {
        assert_true(exec_break_add(both[k], "blk.0.kq", NULL, NULL, NULL, NULL, &err) > 0);
        next = 15;
        assert_int_equal(exec_begin(both[k], &next, 1, true, &err), 0);
        xf_stop why;
        assert_int_equal(exec_run(both[k], XF_RUN_CONTINUE, 0, &why, &err), 0);
        assert_int_equal(why, XF_STOP_BREAK);
        assert_int_equal(exec_run(both[k], XF_RUN_CONTINUE, 0, &why, &err), 0);
        assert_int_equal(why, XF_STOP_END);
    }
    exec_graph_watch_plan(g, &on_dev, &splits);
    assert_int_equal(splits, 1);
    exec_graph_stats(g, &st);
    assert_int_equal(st.replays, 7);
    assert_int_equal(st.captures, 6);
    tg_same_tensors(g, e, "blk.0.kq and conditions");
    /* finish ignores breakpoints: the whole pass in one graph, no watch node */
    long before = st.replays;
    next = 14;
    tg_pass(g, &next, 1, true, XF_RUN_FINISH);
    tg_pass(e, &next, 1, true, XF_RUN_FINISH);
    exec_graph_stats(g, &st);
    assert_int_equal(st.replays, before + 1);
    assert_int_equal((int)st.nodes, (int)watched_nodes - 1);
    tg_same_tensors(g, e, "finish with a breakpoint");
    exec_free(g);
    exec_free(e);
    model_free(m);
}

/* ---- a condition that holds inside a graph -------------------------------- */

/* A test-only GELU that plants a NaN: the opt GELU, then element 3 of its
 * output set to NaN (a captured memset) on the call whose index modulo the
 * layer count is tg_nan_layer. Every pass calls GELU once a layer, layer 0
 * first (op by op and at capture alike), so the NaN lands in layer
 * tg_nan_layer's ffn activation in every pass, graphed or not. */
static int tg_nan_layer, tg_layers;
static unsigned tg_gelu_calls;

static int nan_gelu(kern_ctx *ctx, const kern_args *a)
{
    const kern_variant *opt = kern_find(KERN_OP_GELU, KERN_BACKEND_CUDA, "opt");
    if (opt->fn(ctx, a) != 0)
        return -1;
    if ((int)(tg_gelu_calls++ % (unsigned)tg_layers) != tg_nan_layer)
        return 0;
#ifdef XF_HAVE_CUDA
    return cudaMemsetAsync(a->y + 3, 0xff, sizeof(float), (cudaStream_t)ctx->stream) == cudaSuccess ? 0 : -1;
#else
    return -1;
#endif
}

static const kern_variant k_nan_gelu = {.op = KERN_OP_GELU,
                                        .backend = KERN_BACKEND_CUDA,
                                        .name = "nan_at_layer",
                                        .fn = nan_gelu,
                                        .flags = KERN_VF_CAPTURABLE,
                                        .doc = "opt gelu with a NaN planted in one layer (test only)"};

/* `break blk.*.out if nan` with the NaN planted in layer 1: the graph's
 * watch node sees it, the pass runs again op by op and stops at
 * blk.1.out, as the op-by-op run does; ops before it bit-identical; the
 * next pass trips through the kept graph; `inf` on the same tensors never
 * holds and never replays. */
static void tg_watch_trips(xf_graph_mode mode)
{
    char mp[1024];
    xf_err err = {0};
    xf_model *m = model_load(tu_src_path(mp, sizeof mp, TU_MODEL), &err);
    assert_non_null(m);
    assert_true(m->n_layer >= 3);
    tg_layers = m->n_layer;
    tg_nan_layer = 1;
    xf_exec *g = tg_exec(m, mode), *e = tg_exec(m, XF_GRAPH_OFF);
    xf_exec *both[2] = {g, e};
    int32_t tok[TG_PROMPT];
    tg_prompt(m, tok);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(exec_variant_add(both[k], &k_nan_gelu, &err), 0);
        assert_int_equal(exec_kernel_select(both[k], KERN_OP_GELU, "nan_at_layer", &err), 0);
        tg_gelu_calls = 0;
        tg_pass(both[k], tok, TG_PROMPT, false, XF_RUN_FINISH);
        assert_true(exec_break_add(both[k], "blk.*.out", "inf", NULL, NULL, NULL, &err) > 0);
        assert_true(exec_break_add(both[k], "blk.*.out", "nan", NULL, NULL, NULL, &err) > 0);
    }
    char want[64];
    snprintf(want, sizeof want, "blk.%d.out", tg_nan_layer);
    for (int pass = 0; pass < 2; pass++) {
        int32_t next = 21 + pass;
        int stop[2];
        for (int k = 0; k < 2; k++) {
            tg_gelu_calls = 0;
            assert_int_equal(exec_begin(both[k], &next, 1, true, &err), 0);
            xf_stop why;
            if (exec_run(both[k], XF_RUN_CONTINUE, 0, &why, &err) != 0)
                fail_msg("continue: %s", err.msg);
            assert_int_equal(why, XF_STOP_BREAK);
            xf_where w;
            exec_where(both[k], &w);
            stop[k] = w.last;
            assert_string_equal(exec_program(both[k])->ops[w.last].name, want);
            assert_false(exec_tensor_ready(both[k], w.last + 1));
        }
        assert_int_equal(stop[0], stop[1]);
        xf_graph_stats st;
        exec_graph_stats(g, &st);
        assert_int_equal(st.watch_trips, pass + 1);
        /* the whole watched pass, and (pass 0's finish) the rest after the stop:
         * the second pass trips through the same graph */
        assert_int_equal(st.captures, 1 + pass);
        xf_stats s;
        assert_int_equal(exec_tensor_stats(g, stop[0], &s, &err), 0);
        assert_true(s.n_nan > 0);
        /* the ops up to the stop, bit for bit */
        tg_same_tensors_to(g, e, stop[0], pass ? "second trip, to the stop" : "first trip, to the stop");
        /* the rest: the NaN stops every later layer too; finish instead */
        for (int k = 0; k < 2; k++) {
            xf_stop why;
            assert_int_equal(exec_run(both[k], XF_RUN_FINISH, 0, &why, &err), 0);
            assert_int_equal(why, XF_STOP_END);
        }
    }
    exec_free(g);
    exec_free(e);
    model_free(m);
}

static void test_watch_trips(void **state)
{
    (void)state;
    tg_watch_trips(XF_GRAPH_ON);
    tg_watch_trips(XF_GRAPH_MEGA);
}

/* ---- what runs op by op, what captures again ----------------------------- */

static int tg_hook(void *ud, xf_exec *ex, int op, xf_err *err)
{
    (void)ex;
    (void)op;
    (void)err;
    (*(int *)ud)++;
    return 0;
}

static void test_fallbacks(void **state)
{
    (void)state;
    char mp[1024];
    xf_err err = {0};
    xf_model *m = model_load(tu_src_path(mp, sizeof mp, TU_MODEL), &err);
    assert_non_null(m);
    xf_exec *g = tg_exec(m, XF_GRAPH_ON), *e = tg_exec(m, XF_GRAPH_OFF);
    int32_t tok[TG_PROMPT], next = 21;
    tg_prompt(m, tok);
    tg_pass(g, tok, TG_PROMPT, false, XF_RUN_FINISH);
    tg_pass(e, tok, TG_PROMPT, false, XF_RUN_FINISH);
    xf_graph_stats st;
    int n_ops = exec_program(g)->n_ops;

    /* check on: every op is compared with the cpu ref, so op by op */
    exec_check_set(g, XF_CHECK_ON);
    tg_pass(g, &next, 1, true, XF_RUN_CONTINUE);
    exec_check_set(g, XF_CHECK_OFF);
    int nrows;
    exec_check_rows(g, &nrows);
    assert_int_equal(nrows, n_ops);
    /* a hook sees every op */
    int calls = 0;
    exec_set_hook(g, tg_hook, &calls);
    tg_pass(g, &next, 1, true, XF_RUN_CONTINUE);
    exec_set_hook(g, NULL, NULL);
    assert_int_equal(calls, n_ops);
    /* timing syncs after every op */
    exec_set_timing(g, true);
    tg_pass(g, &next, 1, true, XF_RUN_FINISH);
    exec_set_timing(g, false);
    /* a kernel that cannot be captured */
    assert_int_equal(exec_kernel_select(g, KERN_OP_SOFTMAX, "ref", &err), 0);
    tg_pass(g, &next, 1, true, XF_RUN_CONTINUE);
    exec_graph_stats(g, &st);
    assert_int_equal(st.replays, 0);
    assert_int_equal(st.captures, 0);
    for (int k = 0; k < 3; k++) /* the same three passes, op by op anyway */
        tg_pass(e, &next, 1, true, XF_RUN_CONTINUE);
    assert_int_equal(exec_kernel_select(e, KERN_OP_SOFTMAX, "ref", &err), 0);
    tg_pass(e, &next, 1, true, XF_RUN_CONTINUE);
    tg_same_tensors(g, e, "softmax ref");
    assert_int_equal(exec_kernel_select(g, KERN_OP_SOFTMAX, "opt", &err), 0);
    assert_int_equal(exec_kernel_select(e, KERN_OP_SOFTMAX, "opt", &err), 0);

    /* step mode: op by op, then the rest graphed */
    assert_int_equal(exec_begin(g, &next, 1, true, &err), 0);
    xf_stop why;
    assert_int_equal(exec_run(g, XF_RUN_STEP, 5, &why, &err), 0);
    assert_int_equal(why, XF_STOP_STEP);
    assert_int_equal(exec_run(g, XF_RUN_CONTINUE, 0, &why, &err), 0);
    assert_int_equal(why, XF_STOP_END);
    tg_pass(e, &next, 1, true, XF_RUN_CONTINUE);
    exec_graph_stats(g, &st);
    assert_int_equal(st.replays, 1);
    assert_int_equal(st.captures, 1);
    tg_same_tensors(g, e, "step 5, continue");

    /* an interrupt raised before the pass stops it before its first op */
    volatile sig_atomic_t flag = 1;
    exec_set_interrupt(g, &flag);
    assert_int_equal(exec_begin(g, &next, 1, true, &err), 0);
    assert_int_equal(exec_run(g, XF_RUN_CONTINUE, 0, &why, &err), 0);
    assert_int_equal(why, XF_STOP_INTERRUPT);
    assert_false(exec_tensor_ready(g, 0));
    assert_int_equal(flag, 0);
    assert_int_equal(exec_run(g, XF_RUN_CONTINUE, 0, &why, &err), 0);
    assert_int_equal(why, XF_STOP_END);
    exec_set_interrupt(g, NULL);
    tg_pass(e, &next, 1, true, XF_RUN_CONTINUE);
    tg_same_tensors(g, e, "interrupted, continued");

    /* a longer prefill grows the buffers: the graph is captured again */
    int32_t longer[3 * TG_PROMPT];
    for (int i = 0; i < 3 * TG_PROMPT; i++)
        longer[i] = (int32_t)((3 + 31 * i) % m->n_vocab);
    tg_pass(g, longer, 3 * TG_PROMPT, false, XF_RUN_FINISH);
    tg_pass(e, longer, 3 * TG_PROMPT, false, XF_RUN_FINISH);
    for (int k = 0; k < 3; k++) {
        next = 30 + k;
        tg_pass(g, &next, 1, true, XF_RUN_CONTINUE);
        tg_pass(e, &next, 1, true, XF_RUN_CONTINUE);
    }
    exec_graph_stats(g, &st);
    assert_int_equal(st.captures, 3); /* 5..end, 0..end, 0..end on the new buffers */
    assert_int_equal(st.replays, 2 + 3);
    assert_int_equal(st.fallbacks, 0);
    tg_same_tensors(g, e, "after a longer prefill");
    /* graphs off: op by op */
    exec_set_graph_mode(g, XF_GRAPH_OFF);
    tg_pass(g, &next, 1, true, XF_RUN_CONTINUE);
    exec_graph_stats(g, &st);
    assert_int_equal(st.replays, 5);
    exec_free(g);
    exec_free(e);
    model_free(m);
}

/* ---- timings (XF_GRAPH_BENCH=N) ------------------------------------------ */

static double tg_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int tg_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* median ms per decode pass (exec_begin + exec_run), n passes after a prompt */
static double tg_decode_ms(xf_exec *ex, int n, const char *brk, xf_run_mode mode)
{
    xf_err err = {0};
    const xf_model *m = exec_model(ex);
    if (brk)
        assert_true(exec_break_add(ex, brk, "nan", NULL, NULL, NULL, &err) > 0);
    int32_t tok[TG_PROMPT];
    tg_prompt(m, tok);
    tg_pass(ex, tok, TG_PROMPT, false, XF_RUN_FINISH);
    double *t = malloc((size_t)n * sizeof *t);
    for (int k = 0; k < n; k++) {
        int32_t id = (int32_t)((101 + 7 * k) % m->n_vocab);
        double t0 = tg_now_ms();
        tg_pass(ex, &id, 1, true, mode);
        t[k] = tg_now_ms() - t0;
    }
    qsort(t, (size_t)n, sizeof *t, tg_cmp);
    double md = t[n / 2];
    free(t);
    if (brk)
        exec_break_delete(ex, -1, NULL);
    return md;
}

static void tg_bench(const char *path, int n)
{
    xf_err err = {0};
    xf_model *m = model_load(path, &err);
    if (!m)
        fail_msg("%s: %s", path, err.msg);
    if (n > m->n_ctx - TG_PROMPT - 1)
        n = m->n_ctx - TG_PROMPT - 1;
    xf_exec *ex = tg_exec(m, XF_GRAPH_OFF);
    double eager = tg_decode_ms(ex, n, NULL, XF_RUN_CONTINUE);
    double eager_brk = tg_decode_ms(ex, n, "logits", XF_RUN_CONTINUE);
    exec_set_graph_mode(ex, XF_GRAPH_UNFUSED);
    double unfused = tg_decode_ms(ex, n, NULL, XF_RUN_CONTINUE);
    exec_set_graph_mode(ex, XF_GRAPH_ON);
    double fused = tg_decode_ms(ex, n, NULL, XF_RUN_CONTINUE);
    double brk_last = tg_decode_ms(ex, n, "logits", XF_RUN_CONTINUE);
    double brk_layers = tg_decode_ms(ex, n, "blk.*.out", XF_RUN_CONTINUE);
    exec_check_set(ex, XF_CHECK_ON);
    double check = tg_decode_ms(ex, n < 16 ? n : 16, NULL, XF_RUN_CONTINUE);
    exec_check_set(ex, XF_CHECK_OFF);
    xf_graph_stats st;
    exec_graph_stats(ex, &st);
    printf("# timing %s (%s), decode ms/token, median of %d:\n"
           "#   op by op %.4f | graphs %.4f (%zu nodes) | graphs unfused %.4f\n"
           "#   continue + break logits if nan: op by op %.4f, graphs %.4f\n"
           "#   continue + break blk.*.out if nan (graphs split per layer) %.4f | check on %.4f\n",
           m->name, path, n, eager, fused, st.nodes, unfused, eager_brk, brk_last, brk_layers, check);
    exec_free(ex);
    model_free(m);
}

static void test_bench(void **state)
{
    (void)state;
    const char *env = getenv("XF_GRAPH_BENCH");
    int n = env ? atoi(env) : 0;
    if (n < 2) {
        printf("# timings: set XF_GRAPH_BENCH=N\n");
        return;
    }
    char mp[1024];
    tg_bench(tu_src_path(mp, sizeof mp, TU_MODEL), n);
    char **extra;
    int ne = tg_model_count(&extra);
    for (int i = 0; i < ne; i++) {
        tg_bench(extra[i], n);
        free(extra[i]);
    }
    free(extra);
}

/* ---- fusions follow the selection ------------------------------------------ */

/* With MATMUL tc selected (capturable, but not what kern_cuda_matmul_gelu
 * reproduces: no KERN_VF_FUSE_EXACT) the up-projection and its GELU run as
 * two nodes while the other fusions stay; tokens and every tensor are those
 * of the same selection op by op. */
static void test_fusion_follows_selection(void **state)
{
    (void)state;
    char mp[1024];
    xf_err err = {0};
    xf_model *m = model_load(tu_src_path(mp, sizeof mp, TU_MODEL), &err);
    assert_non_null(m);
    assert_int_equal(m->arch, XF_ARCH_GPT2);
    xf_exec *g = tg_exec(m, XF_GRAPH_ON), *e = tg_exec(m, XF_GRAPH_OFF);
    char fused[512], unfused[512], wb[160];
    assert_null(exec_graph_why(g, wb, sizeof wb));
    exec_graph_fusions(g, fused, unfused, sizeof fused);
    assert_string_equal(unfused, "");
    assert_non_null(strstr(fused, "kq/softmax/kqv"));
    assert_non_null(strstr(fused, "matmul + gelu"));
    assert_null(strstr(fused, "swiglu")); /* GPT-2 has none */
    assert_int_equal(exec_kernel_select(g, KERN_OP_MATMUL, "tc", &err), 0);
    assert_null(exec_graph_why(g, wb, sizeof wb)); /* tc is capturable */
    exec_graph_fusions(g, fused, unfused, sizeof fused);
    assert_string_equal(unfused, "matmul + gelu (matmul tc)");
    exec_check_set(g, XF_CHECK_ON);
    assert_non_null(exec_graph_why(g, wb, sizeof wb));
    assert_non_null(strstr(exec_graph_why(g, wb, sizeof wb), "check is on"));
    exec_check_set(g, XF_CHECK_OFF);
    assert_int_equal(exec_kernel_select(e, KERN_OP_SOFTMAX, "ref", &err), 0);
    assert_non_null(strstr(exec_graph_why(e, wb, sizeof wb), "graph off"));
    exec_set_graph_mode(e, XF_GRAPH_ON);
    assert_non_null(strstr(exec_graph_why(e, wb, sizeof wb), "kernel softmax ref cannot be captured"));
    assert_int_equal(exec_kernel_select(e, KERN_OP_SOFTMAX, "opt", &err), 0);
    exec_set_graph_mode(e, XF_GRAPH_OFF);
    assert_int_equal(exec_kernel_select(e, KERN_OP_MATMUL, "tc", &err), 0);
    int32_t ig[6], ie[6];
    tg_greedy(g, 6, ig);
    tg_greedy(e, 6, ie);
    assert_memory_equal(ig, ie, sizeof ig);
    tg_same_tensors(g, e, "matmul tc: graphs vs op by op");
    xf_graph_stats st;
    exec_graph_stats(g, &st);
    assert_int_equal(st.fallbacks, 0);
    assert_int_equal(st.captures, 1);
    int n_ops = exec_program(g)->n_ops, L = m->n_layer;
    /* unfused 1 + n_ops + 2L; residual + norm saves 2L, the q/k/v split 4L,
     * attention 2L, no GELU fusion */
    assert_int_equal((int)st.nodes, 1 + n_ops + 2 * L - 2 * L - 4 * L - 2 * L);
    exec_free(g);
    exec_free(e);
    model_free(m);
}

/* ---- a kernel chosen mid-pass gets the scratch it declares ---------------- */

/* Prefill: some ops with opt, then MATMUL tc (on F32 weights it declares
 * scratch where opt declares none; kernels.h scratch_bytes) for the rest;
 * then greedy decode passes with the fast path. The logits of every pass
 * stay within tolerance of a run done entirely with ref, and the prefill's
 * differ from an all-opt run's (so the selected kernel really ran with its
 * scratch, not a fallback to opt for want of it). */
static void tg_scratch_midpass(const char *path)
{
    xf_err err = {0};
    xf_model *m = model_load(path, &err);
    if (!m)
        fail_msg("%s: %s", path, err.msg);
    xf_exec *ref = tg_exec(m, XF_GRAPH_OFF), *mix = tg_exec(m, XF_GRAPH_ON), *opt = tg_exec(m, XF_GRAPH_OFF);
    assert_int_equal(exec_kernel_select(ref, -1, "ref", &err), 0);
    int32_t tok[TG_PROMPT];
    tg_prompt(m, tok);
    tg_pass(ref, tok, TG_PROMPT, false, XF_RUN_FINISH);
    tg_pass(opt, tok, TG_PROMPT, false, XF_RUN_FINISH);
    xf_stop why;
    assert_int_equal(exec_begin(mix, tok, TG_PROMPT, false, &err), 0);
    const xf_program *p = exec_program(mix);
    int first_mm = 0;
    while (first_mm < p->n_ops && p->ops[first_mm].kind != KERN_OP_MATMUL)
        first_mm++;
    assert_true(first_mm < p->n_ops);
    /* past the first matmul with opt, so that the pass began with opt's scratch */
    assert_int_equal(exec_run(mix, XF_RUN_STEP, first_mm + 1, &why, &err), 0);
    const kern_variant *big = kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "tc");
    assert_non_null(big);
    assert_non_null(big->scratch_bytes);
    if (exec_kernel_select(mix, KERN_OP_MATMUL, big->name, &err) != 0)
        fail_msg("select %s: %s", big->name, err.msg);
    if (exec_run(mix, XF_RUN_CONTINUE, 0, &why, &err) != 0)
        fail_msg("%s: continue with matmul %s: %s", path, big->name, err.msg);
    assert_int_equal(why, XF_STOP_END);
    size_t V = (size_t)m->n_vocab;
    float *lr = malloc(V * sizeof *lr), *lm = malloc(V * sizeof *lm), *lo = malloc(V * sizeof *lo);
    assert_non_null(lr);
    assert_non_null(lm);
    assert_non_null(lo);
    assert_int_equal(exec_last_logits(opt, lo, &err), 0);
    for (int k = 0; k < 4; k++) {
        assert_int_equal(exec_last_logits(ref, lr, &err), 0);
        assert_int_equal(exec_last_logits(mix, lm, &err), 0);
        double e = tu_rel_max_err(lm, lr, V);
        printf("# %s: pass %d, matmul %s after opt: logits rel err %.3g vs all ref\n", path, k, big->name, e);
        if (!(e < 2e-2))
            fail_msg("%s: pass %d: logits %.3g away from the all-ref run", path, k, e);
        if (k == 0 && memcmp(lm, lo, V * sizeof *lm) == 0)
            fail_msg("%s: the prefill's logits are all-opt's: %s did not run with its scratch", path, big->name);
        int32_t next = tg_argmax(lr, m->n_vocab); /* the same tokens for both */
        tg_pass(ref, &next, 1, true, XF_RUN_CONTINUE);
        tg_pass(mix, &next, 1, true, XF_RUN_CONTINUE);
    }
    free(lr);
    free(lm);
    free(lo);
    exec_free(ref);
    exec_free(mix);
    exec_free(opt);
    model_free(m);
}

static void test_scratch_midpass(void **state)
{
    (void)state;
    char mp[1024];
    for (size_t i = 0; i < sizeof tg_fixtures / sizeof tg_fixtures[0]; i++)
        tg_scratch_midpass(tu_src_path(mp, sizeof mp, tg_fixtures[i]));
}

/* A prefill with the layer matrices' codes kept on the device (exec_new)
 * gives every tensor the same bits as one whose codes are made in each call
 * (XF_CODES=0); a stepper made beside it (bench's, exec_new_beside) reads
 * the same weights and codes, gives the same bits again, and freeing it
 * leaves the owner's weights and codes in place. */
static void tg_codes_beside(const char *path)
{
    xf_err err = {0};
    xf_model *m = model_load(path, &err);
    if (!m)
        fail_msg("%s: %s", path, err.msg);
    /* the caller's XF_CODES (a run of the whole program under XF_CODES=0) comes back after */
    const char *env = getenv("XF_CODES");
    char *was = env ? strdup(env) : NULL;
    assert_int_equal(setenv("XF_CODES", "0", 1), 0);
    xf_exec *made = tg_exec(m, XF_GRAPH_ON);
    assert_int_equal(unsetenv("XF_CODES"), 0);
    xf_exec *kept = tg_exec(m, XF_GRAPH_ON);
    if (was)
        assert_int_equal(setenv("XF_CODES", was, 1), 0);
    free(was);
    int n_made, n_kept;
    size_t b_made, b_kept;
    exec_codes_kept(made, &n_made, &b_made);
    exec_codes_kept(kept, &n_kept, &b_kept);
    assert_int_equal(n_made, 0);
    bool blocks = false;
#ifdef XF_HAVE_CUDA
    int fl = kern_cuda_split_float(-1); /* BF16 (1) and F32 (2) have codes where on (XF_SPLIT_FLOAT) */
#else
    int fl = 0;
#endif
    for (int i = 0; i < m->n_weights; i++) {
        int t = m->weights[i].type;
        blocks |= strncmp(m->weights[i].name, "blk.", 4) == 0 && m->weights[i].rows > 1 && t != XF_TYPE_F16 &&
                  (t != XF_TYPE_F32 || (fl & 2)) && (t != XF_TYPE_BF16 || (fl & 1));
    }
    printf("# %s: codes of %d layer matrices kept (%zu bytes)\n", path, n_kept, b_kept);
    if (blocks != (n_kept > 0))
        fail_msg("%s: %d matrices' codes kept, block-type layer matrices: %s", path, n_kept,
                 blocks ? "yes" : "no");
    int32_t tok[TG_PROMPT];
    tg_prompt(m, tok);
    tg_pass(made, tok, TG_PROMPT, false, XF_RUN_FINISH);
    tg_pass(kept, tok, TG_PROMPT, false, XF_RUN_FINISH);
    tg_same_tensors(made, kept, "codes kept against made in the call");
    xf_exec *beside = exec_new_beside(kept, 1, &err);
    if (!beside)
        fail_msg("exec_new_beside: %s", err.msg);
    int n_beside;
    size_t b_beside;
    exec_codes_kept(beside, &n_beside, &b_beside);
    assert_int_equal(n_beside, n_kept);
    tg_pass(beside, tok, TG_PROMPT, false, XF_RUN_FINISH);
    tg_same_tensors(made, beside, "a stepper beside, against codes made in the call");
    exec_free(beside);
    tg_pass(kept, tok, TG_PROMPT, false, XF_RUN_FINISH);
    tg_same_tensors(made, kept, "codes kept, after the stepper beside was freed");
    exec_free(made);
    exec_free(kept);
    model_free(m);
}

static void test_codes_beside(void **state)
{
    (void)state;
    char mp[1024];
    for (size_t i = 0; i < sizeof tg_fixtures / sizeof tg_fixtures[0]; i++)
        tg_codes_beside(tu_src_path(mp, sizeof mp, tg_fixtures[i]));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_as_eager),   cmocka_unit_test(test_same_at_depth),
        cmocka_unit_test(test_breaks_split),    cmocka_unit_test(test_watch_trips),
        cmocka_unit_test(test_fallbacks),       cmocka_unit_test(test_fusion_follows_selection),
        cmocka_unit_test(test_scratch_midpass), cmocka_unit_test(test_bench),
        cmocka_unit_test(test_codes_beside),
    };
    char why[256];
    if (!kern_backend_available(KERN_BACKEND_CUDA, why, sizeof why)) {
        printf("test_exec_graph: skipped all %zu tests: %s\n", sizeof tests / sizeof tests[0], why);
        return 77;
    }
    tu_filter_from_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
