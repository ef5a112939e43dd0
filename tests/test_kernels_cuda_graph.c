/* test_kernels_cuda_graph: what only the CUDA graph fast path launches,
 * against the plain launches: per-pass values (pos0, n_kv, tokens) read on
 * the device (dev_step) give the same bits as values on the host, the fused
 * kernels of the fast path, and CUDA graph capture and replay of a
 * decode-like sequence (no allocation, sync or host read inside a call).
 * Inputs and tolerances as in test_kernels_cuda. Built without CUDA it has
 * no tests; exit 77 (ctest: skipped) when no CUDA device answers. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels.h"
#include "kernels_cuda_util.h"
#include "quant.h"
#include "quantize.h"
#include "testutil.h"

#ifdef XF_HAVE_CUDA
/* ---- CUDA graph capture: no allocation, sync or host read inside a call -- */

typedef struct tk_graph_case {
    kern_args embd, norm, mm, gelu, kq, soft;
} tk_graph_case;

static int tk_run_seq(kern_ctx *ctx, const tk_graph_case *g, const char *variant, int with_gemm)
{
    const kern_args *seq[6] = {&g->embd, &g->norm, &g->mm, &g->gelu, &g->kq, &g->soft};
    const kern_op ops[6] = {KERN_OP_EMBD, KERN_OP_NORM, KERN_OP_MATMUL, KERN_OP_GELU, KERN_OP_KQ, KERN_OP_SOFTMAX};
    for (int i = 0; i < 6; i++) {
        if (ops[i] == KERN_OP_MATMUL && !with_gemm && seq[i]->n > 4)
            continue;
        const kern_variant *v = kern_find(ops[i], KERN_BACKEND_CUDA, variant);
        if (!v || v->fn(ctx, seq[i]))
            return -1;
    }
    return 0;
}

static void graph_capture(int64_t n_tok, int with_gemm)
{
    int64_t D = 256, F = 520, V = 40, H = 4, hd = D / H, n_kv = 5 + n_tok;
    tk_arena ar = {0};
    cudaStream_t st;
    assert_int_equal(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), cudaSuccess);
    kern_ctx ctx = {.stream = st, .scratch = tk.scratch, .scratch_size = TK_SCRATCH};
    assert_int_equal(kern_cuda_ctx_prepare(&ctx), 0);
    size_t wb, w2b, mb;
    void *wte = tk_weights(XF_TYPE_F16, V, D, &wb), *wpe = tk_weights(XF_TYPE_F32, n_kv, D, &w2b);
    void *wmm = tk_weights(XF_TYPE_F16, F, D, &mb);
    float *g = tk_host_random((size_t)D, 0.5f, 1.5f), *b = tk_host_random((size_t)D, -0.5f, 0.5f);
    float *cache = tk_host_random((size_t)(n_kv * H * hd), -1, 1);
    int32_t tok[8];
    for (int i = 0; i < n_tok; i++)
        tok[i] = tk_rand_int(0, (int)V - 1);
    tk_graph_case gc;
    float *e = tk_dev(&ar, NULL, (size_t)(n_tok * D) * 4, 0), *nrm = tk_dev(&ar, NULL, (size_t)(n_tok * D) * 4, 0);
    float *h = tk_dev(&ar, NULL, (size_t)(n_tok * F) * 4, 0), *a = tk_dev(&ar, NULL, (size_t)(n_tok * F) * 4, 0);
    float *s = tk_dev(&ar, NULL, (size_t)(H * n_tok * n_kv) * 4, 0), *p = tk_dev(&ar, NULL, (size_t)(H * n_tok * n_kv) * 4, 0);
    gc.embd = (kern_args){.w = tk_dev(&ar, wte, wb, 0), .w_type = XF_TYPE_F16, .w2 = tk_dev(&ar, wpe, w2b, 0),
                          .w2_type = XF_TYPE_F32, .y = e, .tok = tok, .n = n_tok, .k = D, .pos0 = (int)(n_kv - n_tok)};
    gc.norm = (kern_args){.x = e, .w = tk_dev(&ar, g, (size_t)D * 4, 0), .w_type = XF_TYPE_F32,
                          .b = tk_dev(&ar, b, (size_t)D * 4, 0), .y = nrm, .n = n_tok, .k = D, .eps = 1e-5f};
    gc.mm = (kern_args){.x = nrm, .w = tk_dev(&ar, wmm, mb, 0), .w_type = XF_TYPE_F16, .y = h, .n = n_tok, .k = D,
                        .m = F};
    gc.gelu = (kern_args){.x = h, .y = a, .n = n_tok, .k = F};
    /* the normed activations as q of H heads against a random cache */
    gc.kq = (kern_args){.x = nrm, .kc = tk_dev(&ar, cache, (size_t)(n_kv * H * hd) * 4, 0), .y = s, .n = n_tok,
                        .n_head = (int)H, .n_head_kv = (int)H, .head_dim = (int)hd, .n_kv = (int)n_kv,
                        .pos0 = (int)(n_kv - n_tok), .scale = 0.125f};
    gc.soft = (kern_args){.x = s, .y = p, .n = H * n_tok, .m = n_kv};
    float *outs[3] = {nrm, a, p};
    size_t nouts[3] = {(size_t)(n_tok * D), (size_t)(n_tok * F), (size_t)(H * n_tok * n_kv)};
    /* tk_dev uploaded the inputs on tk.ctx's stream, which the non-blocking
     * stream st does not wait for: without this, a loaded GPU ran the eager
     * kernels on memory not yet written (seen under ctest -j6 on an H100) */
    assert_int_equal(tk.mem->sync(&tk.ctx), 0);
    /* eager run: the expected outputs */
    assert_int_equal(tk_run_seq(&ctx, &gc, "opt", with_gemm), 0);
    size_t most = nouts[0] + nouts[1] + nouts[2];
    float *want[3], *got = malloc(most * 4);
    for (int i = 0; i < 3; i++) {
        want[i] = malloc(nouts[i] * 4);
        assert_int_equal(tk.mem->to_host(&ctx, want[i], outs[i], nouts[i] * 4), 0);
    }
    /* capture in global mode: an allocation or sync anywhere would end it */
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    assert_int_equal(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal), cudaSuccess);
    int rc = tk_run_seq(&ctx, &gc, "opt", with_gemm);
    cudaError_t ce = cudaStreamEndCapture(st, &graph);
    if (rc || ce != cudaSuccess)
        fail_msg("capture failed: kernels rc=%d, end capture: %s", rc, cudaGetErrorString(ce));
    assert_int_equal(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
    float *nan = malloc(most * 4);
    tu_poison(nan, most);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tk.mem->to_dev(&ctx, outs[i], nan, nouts[i] * 4), 0);
    assert_int_equal(cudaGraphLaunch(exec, st), cudaSuccess);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tk.mem->to_host(&ctx, got, outs[i], nouts[i] * 4), 0);
        /* the same kernels on the same inputs: bit-identical */
        assert_memory_equal(got, want[i], nouts[i] * 4);
        free(want[i]);
    }
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    kern_cuda_ctx_release(&ctx);
    assert_null(ctx.cublas);
    cudaStreamDestroy(st);
    tk_arena_free(&ar);
    free(nan);
    free(got);
    free(wte);
    free(wpe);
    free(wmm);
    free(g);
    free(b);
    free(cache);
}

/* ---- dev_step: per-pass values read on the device -------------------------- */

/* opt on a (values on the host) and on b (dev_step, launch sized for a
 * bound): the first ny outputs bit-identical, b's output past ny (up to
 * ny_cap, the bound's size) never written */
static void tk_same_bits(kern_op op, const kern_args *a, const kern_args *b, size_t ny, size_t ny_cap,
                         const char *what)
{
    const kern_variant *v = kern_find(op, KERN_BACKEND_CUDA, "opt");
    assert_non_null(v);
    float *nan = malloc(ny_cap * sizeof *nan), *ya = malloc(ny * sizeof *ya), *yb = malloc(ny_cap * sizeof *yb);
    assert_non_null(nan);
    assert_non_null(ya);
    assert_non_null(yb);
    tu_poison(nan, ny_cap);
    assert_int_equal(tk.mem->to_dev(&tk.ctx, a->y, nan, ny * sizeof(float)), 0);
    assert_int_equal(tk.mem->to_dev(&tk.ctx, b->y, nan, ny_cap * sizeof(float)), 0);
    if (v->fn(&tk.ctx, a) != 0 || v->fn(&tk.ctx, b) != 0)
        fail_msg("%s/opt [%s]: a call failed", kern_op_name(op), what);
    assert_int_equal(tk.mem->to_host(&tk.ctx, ya, a->y, ny * sizeof(float)), 0);
    assert_int_equal(tk.mem->to_host(&tk.ctx, yb, b->y, ny_cap * sizeof(float)), 0);
    for (size_t i = 0; i < ny; i++) {
        if (isnan(ya[i]))
            fail_msg("%s/opt [%s]: y[%zu] not written", kern_op_name(op), what, i);
        if (memcmp(&ya[i], &yb[i], sizeof ya[i]) != 0)
            fail_msg("%s/opt [%s]: y[%zu] = %.9g with dev_step, %.9g without", kern_op_name(op), what, i, yb[i],
                     ya[i]);
    }
    for (size_t i = ny; i < ny_cap; i++)
        if (!isnan(yb[i]))
            fail_msg("%s/opt [%s]: y[%zu] written past n_kv with dev_step", kern_op_name(op), what, i);
    free(nan);
    free(ya);
    free(yb);
}

static void test_step_values(void **state)
{
    (void)state;
    /* EMBD: ids and position row from the device */
    for (int c = 0; c < 4; c++) {
        int64_t k = c % 2 ? 67 : 64, vocab = 13, n = c < 2 ? 1 : 3, n_ctx = 20;
        int wt = c % 2 ? XF_TYPE_F32 : XF_TYPE_F16, pos0 = 9;
        size_t wb, w2b;
        void *w = tk_weights(wt, vocab, k, &wb), *w2 = tk_weights(XF_TYPE_F32, n_ctx, k, &w2b);
        int32_t tok[3] = {4, 12, 0};
        tk_arena ar = {0};
        kern_args a = {.w = tk_dev(&ar, w, wb, 0), .w_type = wt, .w2 = tk_dev(&ar, w2, w2b, 0),
                       .w2_type = XF_TYPE_F32, .tok = tok, .n = n, .k = k, .pos0 = pos0};
        a.y = tk_dev(&ar, NULL, (size_t)(n * k) * 4, 0);
        kern_args b = a;
        b.y = tk_dev(&ar, NULL, (size_t)(n * k) * 4, 0);
        b.tok = NULL;
        b.pos0 = 0;
        b.dev_step = tk_step(&ar, pos0, pos0 + (int)n, tok, (int)n);
        tk_same_bits(KERN_OP_EMBD, &a, &b, (size_t)(n * k), (size_t)(n * k), c % 2 ? "F32 k=67" : "F16 k=64");
        tk_arena_free(&ar);
        free(w);
        free(w2);
    }
    /* ROPE: the position from the device */
    {
        int64_t n = 2;
        int nh = 3, hd = 64, pos0 = 100;
        size_t total = (size_t)(n * nh * hd);
        float *x = tk_host_random(total, -2, 2);
        tk_arena ar = {0};
        kern_args a = {.x = tk_dev(&ar, x, total * 4, 0), .n = n, .n_head = nh, .head_dim = hd, .pos0 = pos0,
                       .rope_base = 1e4f};
        a.y = tk_dev(&ar, NULL, total * 4, 0);
        kern_args b = a;
        b.y = tk_dev(&ar, NULL, total * 4, 0);
        b.pos0 = 0;
        b.dev_step = tk_step(&ar, pos0, pos0 + (int)n, NULL, 0);
        tk_same_bits(KERN_OP_ROPE, &a, &b, total, total, "n=2 pos0=100");
        tk_arena_free(&ar);
        free(x);
    }
    /* KQ, SOFTMAX, KQV: n_kv from the device, launches sized for a bound */
    static const tk_attn cases[] = {{1, 40, 4, 2, 64}, {1, 0, 2, 2, 64}, {3, 10, 4, 4, 5}, {1, 300, 2, 1, 32}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const tk_attn *c = &cases[ci];
        int n_kv = c->pos0 + c->n, bound = n_kv + 97;
        size_t qn = (size_t)c->n * c->nh * c->hd, cn = (size_t)bound * c->nkv * c->hd;
        size_t sn = (size_t)c->nh * c->n * n_kv, sn_cap = (size_t)c->nh * c->n * bound;
        float *q = tk_host_random(qn, -1, 1), *cache = tk_host_random(cn, -1, 1);
        tk_arena ar = {0};
        int32_t *step = tk_step(&ar, c->pos0, n_kv, NULL, 0);
        char what[96];
        snprintf(what, sizeof what, "n=%d pos0=%d heads=%d/%d hd=%d bound=%d", c->n, c->pos0, c->nh, c->nkv, c->hd,
                 bound);
        kern_args a = {.x = tk_dev(&ar, q, qn * 4, 0), .kc = tk_dev(&ar, cache, cn * 4, 0), .n = c->n,
                       .n_head = c->nh, .n_head_kv = c->nkv, .head_dim = c->hd, .n_kv = n_kv, .pos0 = c->pos0,
                       .scale = 0.125f};
        a.y = tk_dev(&ar, NULL, sn * 4, 0);
        kern_args b = a;
        b.y = tk_dev(&ar, NULL, sn_cap * 4, 0);
        b.n_kv = bound;
        b.pos0 = 0;
        b.dev_step = step;
        tk_same_bits(KERN_OP_KQ, &a, &b, sn, sn_cap, what);
        /* softmax of those scores (causal -inf included) */
        kern_args sa = {.x = a.y, .n = (int64_t)c->nh * c->n, .m = n_kv};
        sa.y = tk_dev(&ar, NULL, sn * 4, 0);
        kern_args sb = sa;
        sb.y = tk_dev(&ar, NULL, sn_cap * 4, 0);
        sb.m = bound + 2000; /* a bound that takes more threads than n_kv */
        sb.dev_step = step;
        size_t sb_cap = (size_t)sb.n * (size_t)sb.m;
        float *big = tk_dev(&ar, NULL, sb_cap * 4, 0);
        sb.y = big;
        tk_same_bits(KERN_OP_SOFTMAX, &sa, &sb, sn, sb_cap, what);
        /* kqv of the probabilities */
        kern_args va = {.x = sa.y, .vc = a.kc, .n = c->n, .n_head = c->nh, .n_head_kv = c->nkv, .head_dim = c->hd,
                        .n_kv = n_kv, .pos0 = c->pos0};
        va.y = tk_dev(&ar, NULL, qn * 4, 0);
        kern_args vb = va;
        vb.y = tk_dev(&ar, NULL, qn * 4, 0);
        vb.n_kv = bound;
        vb.dev_step = step;
        tk_same_bits(KERN_OP_KQV, &va, &vb, qn, qn, what);
        tk_arena_free(&ar);
        free(q);
        free(cache);
    }
    /* a softmax row with nothing to attend to */
    {
        int64_t m = 37;
        float x[37];
        for (int j = 0; j < m; j++)
            x[j] = -INFINITY;
        tk_arena ar = {0};
        int32_t *step = tk_step(&ar, 0, (int)m, NULL, 0);
        kern_args a = {.x = tk_dev(&ar, x, sizeof x, 0), .n = 1, .m = m};
        a.y = tk_dev(&ar, NULL, sizeof x, 0);
        kern_args b = a;
        b.m = 4096;
        b.y = tk_dev(&ar, NULL, 4096 * 4, 0);
        b.dev_step = step;
        tk_same_bits(KERN_OP_SOFTMAX, &a, &b, (size_t)m, 4096, "all -inf");
        float back[37];
        assert_int_equal(tk.mem->to_host(&tk.ctx, back, b.y, sizeof back), 0);
        for (int j = 0; j < m; j++)
            assert_true(back[j] == 0.0f);
        tk_arena_free(&ar);
    }
}

/* ---- the kernels only the fast path launches ------------------------------ */

static void test_fast_path_kernels(void **state)
{
    (void)state;
    /* KV-cache rows at a position from the host or the device */
    for (int c = 0; c < 4; c++) {
        int64_t row = c < 2 ? 64 : 5, n = c % 2 ? 2 : 1, n_ctx = 12;
        int pos0 = 7;
        size_t cn = (size_t)(n_ctx * row), sn = (size_t)(n * row);
        float *cache = tk_host_random(cn, -1, 1), *src = tk_host_random(sn, -1, 1), *got = malloc(cn * 4);
        tk_arena ar = {0};
        float *dc = tk_dev(&ar, cache, cn * 4, 0), *ds = tk_dev(&ar, src, sn * 4, 0);
        for (int dev = 0; dev < 2; dev++) {
            assert_int_equal(tk.mem->to_dev(&tk.ctx, dc, cache, cn * 4), 0);
            const int32_t *step = dev ? tk_step(&ar, pos0, pos0 + (int)n, NULL, 0) : NULL;
            assert_int_equal(kern_cuda_rows_store(&tk.ctx, dc, ds, row, n, dev ? 0 : pos0, step), 0);
            assert_int_equal(tk.mem->to_host(&tk.ctx, got, dc, cn * 4), 0);
            memcpy(cache + (size_t)pos0 * row, src, sn * 4); /* what it must be */
            assert_memory_equal(got, cache, cn * 4);
        }
        assert_int_equal(kern_cuda_rows_store(&tk.ctx, dc, ds, 0, n, pos0, NULL), -1);
        tk_arena_free(&ar);
        free(cache);
        free(src);
        free(got);
    }
    /* GPT-2's q/k/v split with the cache stores = 3 VIEWs + 2 stores */
    for (int c = 0; c < 4; c++) {
        int64_t d = c < 2 ? 64 : 5, n = c % 2 ? 3 : 1, n_ctx = 9;
        int pos0 = 4;
        size_t qn = (size_t)(n * 3 * d), on = (size_t)(n * d), cn = (size_t)(n_ctx * d);
        float *qkv = tk_host_random(qn, -1, 1), *kc = tk_host_random(cn, -1, 1), *vc = tk_host_random(cn, -1, 1);
        float *got = malloc(cn * 4), *want = malloc(on * 4);
        tk_arena ar = {0};
        float *dq = tk_dev(&ar, qkv, qn * 4, 0), *o[3], *dkc = tk_dev(&ar, kc, cn * 4, 0),
              *dvc = tk_dev(&ar, vc, cn * 4, 0);
        for (int j = 0; j < 3; j++)
            o[j] = tk_dev(&ar, NULL, on * 4, 0);
        int32_t *step = tk_step(&ar, pos0, pos0 + (int)n, NULL, 0);
        assert_int_equal(kern_cuda_qkv_split(&tk.ctx, dq, o[0], o[1], o[2], dkc, dvc, n, d, 0, step), 0);
        for (int j = 0; j < 3; j++) {
            for (int64_t i = 0; i < n; i++)
                memcpy(want + i * d, qkv + i * 3 * d + j * d, (size_t)d * 4);
            assert_int_equal(tk.mem->to_host(&tk.ctx, got, o[j], on * 4), 0);
            assert_memory_equal(got, want, on * 4);
            if (j == 0)
                continue;
            float *hc = j == 1 ? kc : vc;
            memcpy(hc + (size_t)pos0 * d, want, on * 4);
            assert_int_equal(tk.mem->to_host(&tk.ctx, got, j == 1 ? dkc : dvc, cn * 4), 0);
            assert_memory_equal(got, hc, cn * 4);
        }
        tk_arena_free(&ar);
        free(qkv);
        free(kc);
        free(vc);
        free(got);
        free(want);
    }
    /* residual + norm in one launch = opt ADD then opt NORM / RMSNORM, bit for bit */
    for (int c = 0; c < 8; c++) {
        int rms = c & 1, skew = (c >> 1) & 1;
        int64_t k = c & 4 ? 7 : 768, n = 2;
        size_t t = (size_t)(n * k);
        float *x = tk_host_random(t, -1, 3), *x2 = tk_host_random(t, -1, 1);
        float *g = tk_host_random((size_t)k, 0.5f, 1.5f), *bb = tk_host_random((size_t)k, -0.5f, 0.5f);
        float *s1 = malloc(t * 4), *s2 = malloc(t * 4), *y1 = malloc(t * 4), *y2 = malloc(t * 4);
        tk_arena ar = {0};
        kern_args add = {.x = tk_dev(&ar, x, t * 4, 0), .x2 = tk_dev(&ar, x2, t * 4, skew), .n = n, .k = k};
        add.y = tk_dev(&ar, NULL, t * 4, 0);
        kern_args nrm = {.x = add.y, .w = tk_dev(&ar, g, (size_t)k * 4, 0), .w_type = XF_TYPE_F32,
                         .b = rms ? NULL : tk_dev(&ar, bb, (size_t)k * 4, 0), .n = n, .k = k, .eps = 1e-5f};
        nrm.y = tk_dev(&ar, NULL, t * 4, 0);
        const kern_variant *va = kern_find(KERN_OP_ADD, KERN_BACKEND_CUDA, "opt");
        const kern_variant *vn = kern_find(rms ? KERN_OP_RMSNORM : KERN_OP_NORM, KERN_BACKEND_CUDA, "opt");
        assert_int_equal(va->fn(&tk.ctx, &add), 0);
        assert_int_equal(vn->fn(&tk.ctx, &nrm), 0);
        assert_int_equal(tk.mem->to_host(&tk.ctx, s1, add.y, t * 4), 0);
        assert_int_equal(tk.mem->to_host(&tk.ctx, y1, nrm.y, t * 4), 0);
        float *nan = malloc(t * 4);
        tu_poison(nan, t);
        assert_int_equal(tk.mem->to_dev(&tk.ctx, add.y, nan, t * 4), 0);
        assert_int_equal(tk.mem->to_dev(&tk.ctx, nrm.y, nan, t * 4), 0);
        assert_int_equal(kern_cuda_add_norm(&tk.ctx, &add, &nrm, rms), 0);
        assert_int_equal(tk.mem->to_host(&tk.ctx, s2, add.y, t * 4), 0);
        assert_int_equal(tk.mem->to_host(&tk.ctx, y2, nrm.y, t * 4), 0);
        if (memcmp(s1, s2, t * 4) || memcmp(y1, y2, t * 4))
            fail_msg("add_norm rms=%d k=%lld skew=%d: not the bits of add then norm", rms, (long long)k, skew);
        for (size_t i = 0; i < t; i++)
            assert_false(isnan(y2[i]));
        /* norm must read what add writes */
        kern_args wrong = nrm;
        wrong.x = add.x;
        assert_int_equal(kern_cuda_add_norm(&tk.ctx, &add, &wrong, rms), -1);
        tk_arena_free(&ar);
        free(x);
        free(x2);
        free(g);
        free(bb);
        free(s1);
        free(s2);
        free(y1);
        free(y2);
        free(nan);
    }
}

/* The decode fusion (kern_cuda_attn_fused: fa_kernel, and fa_kqv_kernel
 * past one chunk of 256) = opt KQ, SOFTMAX and KQV one after the other,
 * bit for bit in kq, kq_soft and kqv: with values on the host, and from
 * the device in a launch sized for a bound; rows of one chunk, one key
 * past it, 16 chunks (a block each) and more (blocks with several);
 * called twice (its tickets reset themselves); nothing written past the
 * row. The softmax of a long row is split into chunks whose sums are
 * combined (opt_body.h csm_*): a chunk of scores far below the others
 * (weights that round to 0 in it) and one row's peak in its last chunk
 * are planted. */
static void test_attn_fused_bits(void **state)
{
    (void)state;
    static const struct {
        int nh, nkv, hd, n_kv;
    } cases[] = {{14, 2, 64, 1},  {14, 2, 64, 200},  {14, 2, 64, 256},   {14, 2, 64, 257},
                 {4, 4, 80, 700}, {14, 2, 64, 4096}, {12, 2, 128, 5000}, {3, 1, 40, 9001}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int nh = cases[ci].nh, nkv = cases[ci].nkv, hd = cases[ci].hd, n_kv = cases[ci].n_kv;
        int bound = n_kv + 600;
        size_t qn = (size_t)nh * hd, cn = (size_t)bound * nkv * hd, sn = (size_t)nh * n_kv;
        size_t sn_cap = (size_t)nh * bound;
        float *q = tk_host_random(qn, -2, 2), *kc = tk_host_random(cn, -1, 1),
              *vc = tk_host_random(cn, -1, 1);
        if (n_kv > 600) {
            /* chunk 1 (keys 256..511) scored far below the rest in head
             * 0's row (its weights underflow to 0), the last key of head 1
             * (when it shares head 0's keys) its row's peak */
            for (int j = 256; j < 512; j++)
                for (int d = 0; d < hd; d++)
                    kc[((size_t)j * nkv) * hd + d] = q[d] < 0 ? 40.0f : -40.0f;
            if (nh > 1 && nh / nkv > 1) /* head 1 shares group 0 */
                for (int d = 0; d < hd; d++)
                    kc[((size_t)(n_kv - 1) * nkv) * hd + d] = q[hd + d] > 0 ? 1.5f : -1.5f;
        }
        tk_arena ar = {0};
        float *dq = tk_dev(&ar, q, qn * 4, 0), *dk = tk_dev(&ar, kc, cn * 4, 0),
              *dv = tk_dev(&ar, vc, cn * 4, 0);
        /* the three opt ops, values on the host */
        kern_args a = {.x = dq,
                       .kc = dk,
                       .n = 1,
                       .n_head = nh,
                       .n_head_kv = nkv,
                       .head_dim = hd,
                       .n_kv = n_kv,
                       .pos0 = n_kv - 1,
                       .scale = 1.0f / sqrtf((float)hd)};
        a.y = tk_dev(&ar, NULL, sn * 4, 0);
        kern_args sa = {.x = a.y, .n = nh, .m = n_kv};
        sa.y = tk_dev(&ar, NULL, sn * 4, 0);
        kern_args va = {.x = sa.y,
                        .vc = dv,
                        .n = 1,
                        .n_head = nh,
                        .n_head_kv = nkv,
                        .head_dim = hd,
                        .n_kv = n_kv,
                        .pos0 = n_kv - 1};
        va.y = tk_dev(&ar, NULL, qn * 4, 0);
        const kern_variant *ok = kern_find(KERN_OP_KQ, KERN_BACKEND_CUDA, "opt");
        const kern_variant *os = kern_find(KERN_OP_SOFTMAX, KERN_BACKEND_CUDA, "opt");
        const kern_variant *ov = kern_find(KERN_OP_KQV, KERN_BACKEND_CUDA, "opt");
        assert_true(ok && os && ov);
        assert_int_equal(ok->fn(&tk.ctx, &a), 0);
        assert_int_equal(os->fn(&tk.ctx, &sa), 0);
        assert_int_equal(ov->fn(&tk.ctx, &va), 0);
        float *want[3] = {tk_fetch(a.y, sn), tk_fetch(sa.y, sn), tk_fetch(va.y, qn)};
        for (size_t i = 0; i < qn; i++)
            if (!isfinite(want[2][i]))
                fail_msg("attn case %zu: opt kqv[%zu] = %g", ci, i, want[2][i]);
        int64_t pf = kern_cuda_attn_part_floats(nh, hd, bound);
        assert_true(pf > 0);
        float *part = tk_dev(&ar, NULL, (size_t)pf * 4, 0);
        int zero[64] = {0};
        assert_true(2 * nh <= 64);
        int *cnt = tk_dev(&ar, zero, 2 * (size_t)nh * sizeof(int), 0);
        float *nan = malloc(sn_cap * 4);
        assert_non_null(nan);
        tu_poison(nan, sn_cap);
        for (int dev = 0; dev < 2; dev++) {
            kern_args b = a, sb = sa, vb = va;
            b.y = tk_dev(&ar, nan, sn_cap * 4, 0);
            sb.x = b.y;
            sb.y = tk_dev(&ar, nan, sn_cap * 4, 0);
            vb.x = sb.y;
            vb.y = tk_dev(&ar, nan, qn * 4, 0);
            if (dev) { /* the graph's form: a launch for the bound, n_kv from the device */
                int32_t *step = tk_step(&ar, n_kv - 1, n_kv, NULL, 0);
                b.dev_step = sb.dev_step = vb.dev_step = step;
                b.n_kv = vb.n_kv = sb.m = bound;
                b.pos0 = vb.pos0 = 0;
            }
            for (int call = 0; call < 2; call++) {
                assert_int_equal(kern_cuda_attn_fused(&tk.ctx, &b, &sb, &vb, cnt, part, pf), 0);
                const void *outs[3] = {b.y, sb.y, vb.y};
                char what[96];
                snprintf(what, sizeof what, "nh=%d hd=%d n_kv=%d dev=%d call %d", nh, hd, n_kv, dev, call);
                tk_same_as(outs, want, sn, sn_cap, qn, what);
            }
        }
        /* the weights of each head sum to 1 */
        for (int h = 0; h < nh; h++) {
            double sum = 0;
            for (int j = 0; j < n_kv; j++)
                sum += want[1][(size_t)h * n_kv + j];
            if (fabs(sum - 1.0) > 1e-5)
                fail_msg("attn case %zu: head %d's weights sum to %.9g", ci, h, sum);
        }
        if (n_kv > 600) /* the planted far-below chunk weighs nothing */
            for (int j = 256; j < 512; j++)
                assert_true(want[1][j] == 0.0f);
        for (int o = 0; o < 3; o++)
            free(want[o]);
        free(nan);
        free(q);
        free(kc);
        free(vc);
        tk_arena_free(&ar);
    }
}

/* kern_cuda_attn_rope_fused (the rotations and cache stores inside the
 * decode attention's launch) = opt ROPE of q and of k, k_rope and v stored
 * at row pos0 of the caches (kern_cuda_rows_store), then opt KQ, SOFTMAX
 * and KQV, bit for bit in q_rope, k_rope, both whole caches, kq, kq_soft
 * and kqv: values on the host and from the device (a launch for a bound),
 * NeoX and adjacent pairs, rows of one chunk and of many (row pos0 then in
 * a chunk of a block other than the first), called twice. Outputs
 * NaN-poisoned; row pos0 of both caches holds random values before. */
/* one case of test_attn_rope_fused: nh heads over nkv of hd, n_kv keys */
static void tk_rope_case(int nh, int nkv, int hd, int n_kv, int mode)
{
    const kern_variant *orope = kern_find(KERN_OP_ROPE, KERN_BACKEND_CUDA, "opt");
    const kern_variant *ok = kern_find(KERN_OP_KQ, KERN_BACKEND_CUDA, "opt");
    const kern_variant *os = kern_find(KERN_OP_SOFTMAX, KERN_BACKEND_CUDA, "opt");
    const kern_variant *ov = kern_find(KERN_OP_KQV, KERN_BACKEND_CUDA, "opt");
    assert_true(orope && ok && os && ov);
    int pos0 = n_kv - 1, bound = n_kv + 300;
    size_t qn = (size_t)nh * hd, kn = (size_t)nkv * hd, cn = (size_t)bound * kn, sn = (size_t)nh * n_kv;
    size_t sn_cap = (size_t)nh * bound;
    float *qx = tk_host_random(qn, -2, 2), *kx = tk_host_random(kn, -2, 2), *v = tk_host_random(kn, -1, 1);
    float *kc = tk_host_random(cn, -1, 1), *vc = tk_host_random(cn, -1, 1);
    tk_arena ar = {0};
    float *dv = tk_dev(&ar, v, kn * 4, 0);
    /* the ops one by one */
    float *dk1 = tk_dev(&ar, kc, cn * 4, 0), *dv1 = tk_dev(&ar, vc, cn * 4, 0);
    kern_args rq = {0}, rk, a = {0}, sa = {0}, va = {0};
    rq.x = tk_dev(&ar, qx, qn * 4, 0), rq.n = 1, rq.n_head = nh, rq.head_dim = hd, rq.pos0 = pos0;
    rq.rope_base = 10000.0f, rq.rope_mode = mode, rq.y = tk_dev(&ar, NULL, qn * 4, 0);
    rk = rq;
    rk.x = tk_dev(&ar, kx, kn * 4, 0), rk.n_head = nkv, rk.y = tk_dev(&ar, NULL, kn * 4, 0);
    assert_int_equal(orope->fn(&tk.ctx, &rq), 0);
    assert_int_equal(orope->fn(&tk.ctx, &rk), 0);
    assert_int_equal(kern_cuda_rows_store(&tk.ctx, dk1, rk.y, (int64_t)kn, 1, pos0, NULL), 0);
    assert_int_equal(kern_cuda_rows_store(&tk.ctx, dv1, dv, (int64_t)kn, 1, pos0, NULL), 0);
    a.x = rq.y, a.kc = dk1, a.n = 1, a.n_head = nh, a.n_head_kv = nkv, a.head_dim = hd, a.n_kv = n_kv;
    a.pos0 = pos0, a.scale = 1.0f / sqrtf((float)hd), a.y = tk_dev(&ar, NULL, sn * 4, 0);
    sa.x = a.y, sa.n = nh, sa.m = n_kv, sa.y = tk_dev(&ar, NULL, sn * 4, 0);
    va = a;
    va.x = sa.y, va.kc = NULL, va.vc = dv1, va.scale = 0.0f, va.y = tk_dev(&ar, NULL, qn * 4, 0);
    assert_int_equal(ok->fn(&tk.ctx, &a), 0);
    assert_int_equal(os->fn(&tk.ctx, &sa), 0);
    assert_int_equal(ov->fn(&tk.ctx, &va), 0);
    float *want[3] = {tk_fetch(a.y, sn), tk_fetch(sa.y, sn), tk_fetch(va.y, qn)};
    float *wq = tk_fetch(rq.y, qn), *wk = tk_fetch(rk.y, kn), *wkc = tk_fetch(dk1, cn),
          *wvc = tk_fetch(dv1, cn);
    int64_t pf = kern_cuda_attn_part_floats(nh, hd, bound);
    assert_true(pf > 0 && 2 * nh <= 64);
    float *part = tk_dev(&ar, NULL, (size_t)pf * 4, 0);
    int zero[64] = {0};
    int *cnt = tk_dev(&ar, zero, 2 * (size_t)nh * sizeof(int), 0);
    float *nan = malloc(sn_cap * 4);
    assert_non_null(nan);
    tu_poison(nan, sn_cap);
    for (int dev = 0; dev < 2; dev++) {
        tk_arena ad = {0}; /* this form's buffers (an arena holds 24) */
        kern_args q2 = rq, k2 = rk, b = a, sb = sa, vb = va;
        q2.y = tk_dev(&ad, nan, qn * 4, 0), k2.y = tk_dev(&ad, nan, kn * 4, 0);
        b.x = q2.y, b.kc = tk_dev(&ad, kc, cn * 4, 0), vb.vc = tk_dev(&ad, vc, cn * 4, 0);
        b.y = tk_dev(&ad, nan, sn_cap * 4, 0), sb.x = b.y;
        sb.y = tk_dev(&ad, nan, sn_cap * 4, 0), vb.x = sb.y;
        vb.y = tk_dev(&ad, nan, qn * 4, 0);
        if (dev) { /* the graph's form: a launch for the bound, the step's values from the device */
            int32_t *step = tk_step(&ad, pos0, n_kv, NULL, 0);
            q2.dev_step = k2.dev_step = b.dev_step = sb.dev_step = vb.dev_step = step;
            b.n_kv = vb.n_kv = sb.m = bound;
            q2.pos0 = k2.pos0 = b.pos0 = vb.pos0 = 0;
        }
        for (int call = 0; call < 2; call++) {
            char what[112];
            snprintf(what, sizeof what, "rope nh=%d nkv=%d hd=%d n_kv=%d mode %d dev=%d call %d", nh, nkv, hd,
                     n_kv, mode, dev, call);
            int rc =
                kern_cuda_attn_rope_fused(&tk.ctx, &q2, &k2, dv, (int64_t)kn, &b, &sb, &vb, cnt, part, pf);
            if (rc != 0)
                fail_msg("%s: kern_cuda_attn_rope_fused returned %d", what, rc);
            const void *outs[3] = {b.y, sb.y, vb.y};
            tk_same_as(outs, want, sn, sn_cap, qn, what);
            float *gq = tk_fetch(q2.y, qn), *gk = tk_fetch(k2.y, kn), *gkc = tk_fetch(b.kc, cn),
                  *gvc = tk_fetch(vb.vc, cn);
            if (memcmp(gq, wq, qn * 4) || memcmp(gk, wk, kn * 4))
                fail_msg("%s: q_rope or k_rope differs from opt ROPE", what);
            if (memcmp(gkc, wkc, cn * 4) || memcmp(gvc, wvc, cn * 4))
                fail_msg("%s: a cache differs from the rope store's", what);
            free(gq), free(gk), free(gkc), free(gvc);
        }
        tk_arena_free(&ad);
    }
    /* refusals launch nothing: q_rope not the scores' x, two tokens */
    kern_args bad = a, two = rq;
    bad.x = rk.x;
    two.n = 2;
    assert_int_equal(
        kern_cuda_attn_rope_fused(&tk.ctx, &rq, &rk, dv, (int64_t)kn, &bad, &sa, &va, cnt, part, pf), 1);
    assert_int_equal(
        kern_cuda_attn_rope_fused(&tk.ctx, &two, &rk, dv, (int64_t)kn, &a, &sa, &va, cnt, part, pf), 1);
    for (int o = 0; o < 3; o++)
        free(want[o]);
    free(wq), free(wk), free(wkc), free(wvc), free(nan);
    free(qx), free(kx), free(v), free(kc), free(vc);
    tk_arena_free(&ar);
}

static void test_attn_rope_fused(void **state)
{
    (void)state;
    static const int cases[][5] = {{14, 2, 64, 1, KERN_ROPE_NEOX},     {14, 2, 64, 300, KERN_ROPE_NEOX},
                                   {12, 2, 128, 4100, KERN_ROPE_NEOX}, {4, 4, 80, 257, KERN_ROPE_NORMAL},
                                   {3, 1, 40, 5000, KERN_ROPE_NORMAL}, {9, 3, 64, 77, KERN_ROPE_NORMAL}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
        tk_rope_case(cases[ci][0], cases[ci][1], cases[ci][2], cases[ci][3], cases[ci][4]);
}

/* what one case of test_attn_prefill_fused plants in its random inputs */
enum {
    TK_PF_PLAIN, /* nothing */
    TK_PF_NAN_V, /* NaN at dim 1 of kv head 0's value row of the last key, and at dim hd - 1
                    of the row 32 keys before it (another 32-key step) where there is one */
    TK_PF_INF_Q, /* +Inf at dim 2 of head 0's query n / 2 (key 0's dim 2 > 0: a score +Inf) */
    TK_PF_INF_V, /* +Inf at dim 3 of kv head 0's value row of key 0 (every weight on it > 0) */
    TK_PF_NAN_Q, /* NaN at dim 2 of head 0's query n / 2: a row of NaN scores, NaN weights (not 0) */
};

/* One case of test_attn_prefill_fused; 0, or 1 when the fusion says the
 * shape is not its own. */
static int tk_prefill_fused_case(int n, int pos0, int nh, int nkv, int hd, int plant)
{
    int n_kv = pos0 + n;
    size_t qn = (size_t)n * nh * hd, cn = (size_t)n_kv * nkv * hd, sn = (size_t)nh * n * n_kv;
    float *q = tk_host_random(qn, -2, 2), *kc = tk_host_random(cn, -1, 1), *vc = tk_host_random(cn, -1, 1);
    if (plant == TK_PF_NAN_V) {
        int kb = n_kv - 1 - 32 >= 0 ? n_kv - 1 - 32 : n_kv - 1;
        vc[(size_t)(n_kv - 1) * nkv * hd + 1] = NAN;
        vc[(size_t)kb * nkv * hd + hd - 1] = NAN;
    } else if (plant == TK_PF_INF_Q) {
        q[(size_t)(n / 2) * nh * hd + 2] = INFINITY;
        kc[2] = 0.5f;
    } else if (plant == TK_PF_INF_V) {
        vc[3] = INFINITY;
    } else if (plant == TK_PF_NAN_Q) {
        q[(size_t)(n / 2) * nh * hd + 2] = NAN;
    }
    tk_arena ar = {0};
    float *nan = malloc((sn > qn ? sn : qn) * 4);
    assert_non_null(nan);
    tu_poison(nan, sn > qn ? sn : qn);
    kern_args a = {.x = tk_dev(&ar, q, qn * 4, 0),
                   .kc = tk_dev(&ar, kc, cn * 4, 0),
                   .n = n,
                   .n_head = nh,
                   .n_head_kv = nkv,
                   .head_dim = hd,
                   .n_kv = n_kv,
                   .pos0 = pos0,
                   .scale = 1.0f / sqrtf((float)hd)};
    kern_args va = a;
    va.kc = NULL;
    va.vc = tk_dev(&ar, vc, cn * 4, 0);
    kern_args sa = {.n = (int64_t)nh * n, .m = n_kv};
    /* the three opt ops, then the fusion, every output poisoned first */
    float *want[3] = {NULL, NULL, NULL};
    int rc = 0;
    for (int fused = 0; fused < 2 && rc == 0; fused++) {
        a.y = tk_dev(&ar, nan, sn * 4, 0);
        sa.x = a.y;
        sa.y = tk_dev(&ar, nan, sn * 4, 0);
        va.x = sa.y;
        va.y = tk_dev(&ar, nan, qn * 4, 0);
        if (!fused) {
            assert_int_equal(kern_find(KERN_OP_KQ, KERN_BACKEND_CUDA, "opt")->fn(&tk.ctx, &a), 0);
            assert_int_equal(kern_find(KERN_OP_SOFTMAX, KERN_BACKEND_CUDA, "opt")->fn(&tk.ctx, &sa), 0);
            assert_int_equal(kern_find(KERN_OP_KQV, KERN_BACKEND_CUDA, "opt")->fn(&tk.ctx, &va), 0);
            want[0] = tk_fetch(a.y, sn);
            want[1] = tk_fetch(sa.y, sn);
            want[2] = tk_fetch(va.y, qn);
            continue;
        }
        rc = kern_cuda_attn_prefill_fused(&tk.ctx, &a, &sa, &va);
        assert_true(rc == 0 || rc == 1);
        if (rc == 0) {
            /* kq and kq_soft up to each query's position, kqv whole; past
             * the position nothing is written (exec owes the two) */
            const void *outs[3] = {a.y, sa.y, va.y};
            for (int o = 0; o < 3; o++) {
                size_t cnt = o == 2 ? qn : sn;
                float *got = tk_fetch(outs[o], cnt);
                for (size_t e = 0; e < cnt; e++) {
                    bool live = o == 2 || (int64_t)(e % n_kv) <= pos0 + (int64_t)(e / n_kv % n);
                    if (live ? memcmp(&got[e], &want[o][e], sizeof(float)) != 0 : !isnan(got[e]))
                        fail_msg(
                            "prefill n=%d pos0=%d heads=%d/%d hd=%d plant %d: %s[%zu] = %.9g, opt %.9g%s", n,
                            pos0, nh, nkv, hd, plant,
                            o == 0   ? "kq"
                            : o == 1 ? "kq_soft"
                                     : "kqv",
                            e, got[e], want[o][e], live ? "" : " (written past the query's position)");
                }
                free(got);
            }
        }
    }
    /* a query of NaN: its row of weights all NaN, as torch's (attack 26,
     * F1: a softmax that skipped NaN in its maximum made them all 0) */
    for (int64_t j = 0; rc == 0 && plant == TK_PF_NAN_Q && j < n_kv; j++)
        if (!isnan(want[1][(size_t)(n / 2) * n_kv + j]))
            fail_msg("prefill n=%d pos0=%d: kq_soft[0, %d, %lld] = %.9g, not NaN", n, pos0, n / 2,
                     (long long)j, want[1][(size_t)(n / 2) * n_kv + j]);
    /* what the three ops give there (the f64 sums' values) */
    for (int i = 0; rc == 0 && i < n; i++)
        for (int h = 0; h < nh; h++)
            for (int d = 0; d < hd; d++) {
                float v = want[2][((size_t)i * nh + h) * hd + d];
                bool kv0 = h < nh / nkv;
                if (plant == TK_PF_NAN_V && kv0 && (d == 1 || d == hd - 1))
                    assert_true(isnan(v)); /* 0 * NaN: every query on kv head 0 */
                else if ((plant == TK_PF_INF_Q || plant == TK_PF_NAN_Q) && i == n / 2 && h == 0)
                    assert_true(isnan(v)); /* NaN weights */
                else if (plant == TK_PF_INF_V && kv0 && d == 3)
                    assert_true(isinf(v) && v > 0);
                else
                    assert_true(isfinite(v));
            }
    for (int o = 0; o < 3; o++)
        free(want[o]);
    free(nan);
    free(q);
    free(kc);
    free(vc);
    tk_arena_free(&ar);
    return rc;
}

/* The fused prefill attention (kern_cuda_attn_prefill_fused: the softmax
 * and KQV read nothing past the causal mask) = opt KQ, SOFTMAX and KQV one
 * after the other, bit for bit in kqv and in kq and kq_soft up to each
 * query's position, past which it writes nothing: two tokens, partial
 * 64-tiles, a pass after a prefix, GQA, MHA and MQA, head dims 40-136,
 * rows of 1 to 32 softmax chunks (8192 keys, a chunk a lane), and each
 * again with: value rows of late keys NaN, in one 64-dim slice each and
 * in different 32-key steps (masked for most queries: the weights past a
 * query's position are 0, but the values are read, and 0 * NaN must still
 * make every query's output NaN, so a step of zero weights is multiplied
 * when its slice's values are not finite), an Inf in a query (its scores'
 * plain chain, a row of NaN weights), an Inf in key 0's value (+Inf
 * outputs, where the split form gives NaN: the plain chain), a NaN in a
 * query (a row of NaN scores: NaN weights and output, never 0). Rows past
 * 8192 keys are not its shape (1: the three ops run). */
static void test_attn_prefill_fused(void **state)
{
    (void)state;
    static const tk_attn cases[] = {{2, 0, 2, 1, 64},    {70, 37, 14, 2, 64},  {130, 3, 5, 1, 80},
                                    {300, 0, 4, 4, 128}, {257, 255, 6, 2, 40}, {40, 8152, 2, 1, 64}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const tk_attn *c = &cases[ci];
        for (int plant = TK_PF_PLAIN; plant <= TK_PF_NAN_Q; plant++)
            assert_int_equal(tk_prefill_fused_case(c->n, c->pos0, c->nh, c->nkv, c->hd, plant), 0);
    }
    assert_int_equal(tk_prefill_fused_case(2, 8191, 2, 1, 64, TK_PF_PLAIN), 1);
    assert_int_equal(tk_prefill_fused_case(3, 5, 2, 1, 136, TK_PF_PLAIN), 0);
}

/* matmul with its GELU in the epilogue = opt MATMUL then opt GELU, bit for bit */
static void test_matmul_gelu(void **state)
{
    (void)state;
    static const int types[] = {XF_TYPE_F16, XF_TYPE_F32, XF_TYPE_Q8_0};
    for (int ti = 0; ti < 3; ti++)
        for (int c = 0; c < 4; c++) {
            int type = types[ti];
            /* k = 67: the element-wise kernel (F32 only); n = 9: cuBLAS, then the GELU kernel */
            int64_t k = c == 3 && type == XF_TYPE_F32 ? 67 : 256, n = c == 0 ? 1 : c == 1 ? 3 : c == 2 ? 9 : 1,
                    m = 70;
            size_t wb;
            void *w = tk_weights(type, m, k, &wb);
            assert_non_null(w);
            float *x = tk_host_random((size_t)(n * k), -1, 1), *b = tk_host_random((size_t)m, -1, 1);
            size_t t = (size_t)(n * m);
            float *y1 = malloc(t * 4), *y2 = malloc(t * 4), *g1 = malloc(t * 4), *g2 = malloc(t * 4),
                  *nan = malloc(t * 4);
            tu_poison(nan, t);
            tk_arena ar = {0};
            kern_args mm = {.x = tk_dev(&ar, x, (size_t)(n * k) * 4, 0), .w = tk_dev(&ar, w, wb, 0), .w_type = type,
                            .b = tk_dev(&ar, b, (size_t)m * 4, 0), .n = n, .k = k, .m = m};
            mm.y = tk_dev(&ar, NULL, t * 4, 0);
            kern_args ge = {.x = mm.y, .n = n, .k = m};
            ge.y = tk_dev(&ar, NULL, t * 4, 0);
            assert_int_equal(kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "opt")->fn(&tk.ctx, &mm), 0);
            assert_int_equal(kern_find(KERN_OP_GELU, KERN_BACKEND_CUDA, "opt")->fn(&tk.ctx, &ge), 0);
            assert_int_equal(tk.mem->to_host(&tk.ctx, y1, mm.y, t * 4), 0);
            assert_int_equal(tk.mem->to_host(&tk.ctx, g1, ge.y, t * 4), 0);
            assert_int_equal(tk.mem->to_dev(&tk.ctx, mm.y, nan, t * 4), 0);
            assert_int_equal(tk.mem->to_dev(&tk.ctx, ge.y, nan, t * 4), 0);
            assert_int_equal(kern_cuda_matmul_gelu(&tk.ctx, &mm, &ge), 0);
            assert_int_equal(tk.mem->to_host(&tk.ctx, y2, mm.y, t * 4), 0);
            assert_int_equal(tk.mem->to_host(&tk.ctx, g2, ge.y, t * 4), 0);
            for (size_t i = 0; i < t; i++)
                assert_false(isnan(g2[i]));
            if (memcmp(y1, y2, t * 4) || memcmp(g1, g2, t * 4))
                fail_msg("matmul_gelu %s n=%lld k=%lld: not the bits of matmul then gelu", quant_type_name(type),
                         (long long)n, (long long)k);
            kern_args wrong = ge;
            wrong.x = mm.x;
            assert_int_equal(kern_cuda_matmul_gelu(&tk.ctx, &mm, &wrong), -1);
            tk_arena_free(&ar);
            free(w);
            free(x);
            free(b);
            free(y1);
            free(y2);
            free(g1);
            free(g2);
            free(nan);
        }
}

/* A decode-like sequence captured once with dev_step, replayed for several
 * steps: each replay gives the bits of calls with the values on the host. */
static void test_step_graph_replay(void **state)
{
    (void)state;
    int64_t D = 128, V = 30, H = 4, hd = D / H, n_ctx = 64;
    kern_ctx ctx = {.scratch = tk.scratch, .scratch_size = TK_SCRATCH};
    assert_int_equal(kern_cuda_stream_new(&ctx), 0);
    assert_non_null(ctx.stream);
    assert_int_equal(kern_cuda_stream_new(&ctx), -1); /* one already */
    size_t wb, w2b;
    void *wte = tk_weights(XF_TYPE_F16, V, D, &wb), *wpe = tk_weights(XF_TYPE_F32, n_ctx, D, &w2b);
    float *cache = tk_host_random((size_t)(n_ctx * D), -1, 1);
    tk_arena ar = {0};
    int32_t *pin = kern_cuda_host_alloc(16 * sizeof(int32_t));
    assert_non_null(pin);
    int32_t *dstep = tk_dev(&ar, NULL, 16 * sizeof(int32_t), 0);
    float *e = tk_dev(&ar, NULL, (size_t)D * 4, 0), *s = tk_dev(&ar, NULL, (size_t)(H * n_ctx) * 4, 0);
    float *p = tk_dev(&ar, NULL, (size_t)(H * n_ctx) * 4, 0), *o = tk_dev(&ar, NULL, (size_t)D * 4, 0);
    float *kc = tk_dev(&ar, cache, (size_t)(n_ctx * D) * 4, 0), *kc2 = tk_dev(&ar, NULL, (size_t)(n_ctx * D) * 4, 0);
    kern_args embd = {.w = tk_dev(&ar, wte, wb, 0), .w_type = XF_TYPE_F16, .w2 = tk_dev(&ar, wpe, w2b, 0),
                      .w2_type = XF_TYPE_F32, .y = e, .n = 1, .k = D};
    /* the embedding as q of H heads against the cache, then softmax, kqv */
    kern_args kq = {.x = e, .kc = kc, .y = s, .n = 1, .n_head = (int)H, .n_head_kv = (int)H, .head_dim = (int)hd,
                    .scale = 0.17f};
    kern_args sm = {.x = s, .y = p, .n = H};
    kern_args kqv = {.x = p, .vc = kc, .y = o, .n = 1, .n_head = (int)H, .n_head_kv = (int)H, .head_dim = (int)hd};
    kern_op ops[4] = {KERN_OP_EMBD, KERN_OP_KQ, KERN_OP_SOFTMAX, KERN_OP_KQV};
    kern_args *seq[4] = {&embd, &kq, &sm, &kqv};
    /* capture: the step copy first, then the calls with dev_step and bounds */
    assert_int_equal(kern_cuda_capture_begin(&ctx), 0);
    int rc = tk.mem->to_dev(&ctx, dstep, pin, 16 * sizeof(int32_t));
    for (int i = 0; i < 4 && rc == 0; i++) {
        kern_args a = *seq[i];
        a.dev_step = dstep;
        a.n_kv = (int)n_ctx;
        if (ops[i] == KERN_OP_SOFTMAX)
            a.m = n_ctx;
        rc = kern_find(ops[i], KERN_BACKEND_CUDA, "opt")->fn(&ctx, &a);
    }
    if (rc == 0)
        rc = kern_cuda_rows_store(&ctx, kc2, o, D, 1, 0, dstep);
    kern_cuda_graph *g = kern_cuda_capture_end(&ctx, rc == 0);
    assert_int_equal(rc, 0);
    assert_non_null(g);
    assert_int_equal((int)kern_cuda_graph_nodes(g), 6);
    float *want = malloc((size_t)D * 4), *got = malloc((size_t)D * 4), *row = malloc((size_t)D * 4);
    static const int pos[] = {0, 5, 31, 63, 6};
    for (int t = 0; t < 5; t++) {
        int pos0 = pos[t];
        int32_t tok = (int32_t)((pos0 * 7 + 3) % V);
        /* values on the host, op by op */
        embd.tok = &tok;
        embd.pos0 = pos0;
        kq.pos0 = pos0;
        kq.n_kv = kqv.n_kv = pos0 + 1;
        sm.m = pos0 + 1;
        for (int i = 0; i < 4; i++)
            assert_int_equal(kern_find(ops[i], KERN_BACKEND_CUDA, "opt")->fn(&ctx, seq[i]), 0);
        assert_int_equal(tk.mem->to_host(&ctx, want, o, (size_t)D * 4), 0);
        float *nan = malloc((size_t)D * 4);
        tu_poison(nan, (size_t)D);
        assert_int_equal(tk.mem->to_dev(&ctx, o, nan, (size_t)D * 4), 0);
        free(nan);
        /* the graph, told only through the pinned step */
        pin[KERN_STEP_POS0] = pos0;
        pin[KERN_STEP_NKV] = pos0 + 1;
        pin[KERN_STEP_TOK] = tok;
        assert_int_equal(kern_cuda_graph_launch(g, &ctx), 0);
        assert_int_equal(tk.mem->to_host(&ctx, got, o, (size_t)D * 4), 0);
        if (memcmp(got, want, (size_t)D * 4) != 0)
            fail_msg("replay at pos0 %d: not the bits of the calls with host values", pos0);
        assert_int_equal(tk.mem->to_host(&ctx, row, kc2 + (size_t)pos0 * D, (size_t)D * 4), 0);
        assert_memory_equal(row, want, (size_t)D * 4);
    }
    kern_cuda_graph_free(g);
    kern_cuda_graph_free(NULL);
    /* a failed call inside a capture: nothing kept, the stream usable after */
    assert_int_equal(kern_cuda_capture_begin(&ctx), 0);
    kern_args bad = sm;
    bad.m = -1;
    assert_int_equal(kern_find(KERN_OP_SOFTMAX, KERN_BACKEND_CUDA, "opt")->fn(&ctx, &bad), -1);
    assert_null(kern_cuda_capture_end(&ctx, 0));
    assert_int_equal(kern_find(KERN_OP_SOFTMAX, KERN_BACKEND_CUDA, "opt")->fn(&ctx, &sm), 0);
    assert_int_equal(tk.mem->sync(&ctx), 0);
    /* the legacy stream cannot capture */
    kern_ctx legacy = {0};
    assert_int_equal(kern_cuda_capture_begin(&legacy), -1);
    /* what the variants declare (kernels.h KERN_VF_*), not their names */
    assert_true(kern_find(KERN_OP_KQ, KERN_BACKEND_CUDA, "opt")->flags & KERN_VF_CAPTURABLE);
    assert_true(kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "tc")->flags & KERN_VF_CAPTURABLE);
    assert_false(kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "tc")->flags & KERN_VF_FUSE_EXACT);
    assert_true(kern_find(KERN_OP_MATMUL, KERN_BACKEND_CUDA, "opt")->flags & KERN_VF_FUSE_EXACT);
    assert_false(kern_find(KERN_OP_KQ, KERN_BACKEND_CUDA, "ref")->flags & KERN_VF_CAPTURABLE);
    assert_false(kern_find(KERN_OP_KQ, KERN_BACKEND_CPU, "opt")->flags & KERN_VF_CAPTURABLE);
    kern_cuda_ctx_release(&ctx);
    kern_cuda_stream_free(&ctx);
    assert_null(ctx.stream);
    kern_cuda_host_free(pin);
    tk_arena_free(&ar);
    free(want);
    free(got);
    free(row);
    free(wte);
    free(wpe);
    free(cache);
}

static void test_graph_capture_decode(void **state)
{
    (void)state;
    graph_capture(1, 0);
}

static void test_graph_capture_gemm(void **state)
{
    (void)state;
    graph_capture(7, 1);
}

/* ---- main ---------------------------------------------------------------- */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step_values),        cmocka_unit_test(test_fast_path_kernels),
        cmocka_unit_test(test_attn_fused_bits),    cmocka_unit_test(test_attn_rope_fused),
        cmocka_unit_test(test_attn_prefill_fused), cmocka_unit_test(test_matmul_gelu),
        cmocka_unit_test(test_step_graph_replay),  cmocka_unit_test(test_graph_capture_decode),
        cmocka_unit_test(test_graph_capture_gemm),
    };
    if (tk_no_device("test_kernels_cuda_graph", sizeof tests / sizeof tests[0]))
        return 77;
    tu_filter_from_env();
    return cmocka_run_group_tests(tests, tk_setup, tk_teardown);
}
#else
int main(void)
{
    printf("test_kernels_cuda_graph: skipped: built without CUDA\n");
    return 77;
}
#endif
