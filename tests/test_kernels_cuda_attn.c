/* test_kernels_cuda_attn: the flash-decoding attention of one token
 * (kernels/cuda/attn_decode.h) against the CUDA `ref` chain KQ -> SOFTMAX
 * -> KQV on the same inputs, at n_kv = 1, 37, 256, 257, 4096, 16385 (one
 * chunk, a partial chunk, a whole one, one row over, many chunks, many plus
 * one row: the opt KQV sums 256-row chunks too), with GQA (Qwen2.5-0.5B:
 * 14 heads over 2 KV heads of 64), MHA (GPT-2: 12 of 64), the 1.5B shape
 * (12 over 2 of 128) and MQA with a head_dim that is not a multiple of 32
 * (the scalar dot path), plus a token whose position masks cache rows.
 *
 * Inputs are fresh random numbers (never zero); the three outputs are
 * poisoned with NaN before each run. Checks: kq bit-identical to the opt KQ
 * variant (and within 2e-5 of ref); kq_soft within 1e-5 and kqv within 2e-5
 * of ref (max |a - ref| / max |ref|, the tolerances of test_kernels_cuda.c
 * for opt SOFTMAX and KQV); with dev_step and a launch bound 300 rows over
 * the device n_kv, the same bits as the host call. The decode fast path's
 * KQ -> SOFTMAX -> KQV (kern_cuda_attn_fused: one launch, two where the
 * bound allows rows over one chunk) gives the opt chain's bits, from host
 * values and (twice) from dev_step, and leaves its tickets at zero. A NaN
 * in a query or a key makes the heads it reaches NaN (weights and output)
 * in every form, never 0.
 * Exit 77 (ctest: skipped) when no CUDA device answers. */
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
#include "testutil.h"

#ifdef XF_HAVE_CUDA
#include "cuda/attn_decode.h"
#include "kernels_cuda.h"

static struct {
    const kern_mem_ops *mem;
    kern_ctx ctx;
    uint64_t rng;
    int cases;
} ta;

static void *ta_dev_random(size_t n, float **host) /* device copy of n random floats; the host copy in *host */
{
    float *h = malloc((n ? n : 1) * sizeof *h);
    assert_non_null(h);
    tu_fill_random(h, n, &ta.rng, -1.0f, 1.0f);
    void *d = ta.mem->alloc(n * sizeof(float));
    assert_non_null(d);
    assert_int_equal(ta.mem->to_dev(&ta.ctx, d, h, n * sizeof(float)), 0);
    if (host)
        *host = h;
    else
        free(h);
    return d;
}

static float *ta_get(const float *d, size_t n)
{
    float *h = malloc((n ? n : 1) * sizeof *h);
    assert_non_null(h);
    assert_int_equal(ta.mem->to_host(&ta.ctx, h, d, n * sizeof(float)), 0);
    return h;
}

static void ta_poison(float *d, size_t n)
{
    float *h = malloc(n * sizeof *h);
    assert_non_null(h);
    tu_poison(h, n);
    assert_int_equal(ta.mem->to_dev(&ta.ctx, d, h, n * sizeof(float)), 0);
    free(h);
}

static void ta_close(const float *got, const float *ref, size_t n, double tol, const char *what, const char *t)
{
    for (size_t i = 0; i < n; i++)
        if (isnan(got[i]))
            fail_msg("%s: %s[%zu] is NaN (unwritten?)", what, t, i);
    double err = tu_rel_max_err(got, ref, n);
    if (!(err <= tol))
        fail_msg("%s: %s rel err %.3g > %.3g", what, t, err, tol);
}

/* runs attn_decode into the poisoned outputs; host copies in out[0..2] */
static void ta_run(kern_attn_decode *p, float *out[3], size_t nq, size_t nv)
{
    ta_poison(p->kq, nq);
    ta_poison(p->kq_soft, nq);
    ta_poison(p->kqv, nv);
    assert_int_equal(kern_cuda_attn_decode(&ta.ctx, p), 0);
    out[0] = ta_get(p->kq, nq);
    out[1] = ta_get(p->kq_soft, nq);
    out[2] = ta_get(p->kqv, nv);
}

static void ta_case(int H, int KV, int Dh, int n_kv, int pos0)
{
    char what[96];
    snprintf(what, sizeof what, "H %d KV %d Dh %d n_kv %d pos0 %d", H, KV, Dh, n_kv, pos0);
    assert_true(kern_cuda_attn_decode_ok(H, KV, Dh));
    int n_ctx = n_kv + 300; /* rows past n_kv hold data too: a kernel must not use them */
    size_t nq = (size_t)H * n_kv, nv = (size_t)H * Dh;
    float *q = ta_dev_random((size_t)H * Dh, NULL);               /* [1, H, Dh] */
    float *kc = ta_dev_random((size_t)n_ctx * KV * Dh, NULL);     /* [n_ctx, KV, Dh] */
    float *vc = ta_dev_random((size_t)n_ctx * KV * Dh, NULL);     /* [n_ctx, KV, Dh] */
    float *kq_r = ta.mem->alloc(nq * sizeof(float)), *soft_r = ta.mem->alloc(nq * sizeof(float)); /* [H, 1, n_kv] */
    float *kqv_r = ta.mem->alloc(nv * sizeof(float));                                              /* [1, H*Dh] */
    float *kq_o = ta.mem->alloc(nq * sizeof(float));                                               /* [H, 1, n_kv] */
    float *kq = ta.mem->alloc(nq * sizeof(float)), *soft = ta.mem->alloc(nq * sizeof(float));    /* [H, 1, n_kv] */
    float *kqv = ta.mem->alloc(nv * sizeof(float));                                                /* [1, H*Dh] */
    size_t sbytes = kern_cuda_attn_decode_scratch(H, Dh, n_ctx);
    void *scratch = ta.mem->alloc(sbytes);
    int32_t *step = ta.mem->alloc(3 * sizeof(int32_t)); /* [pos0, n_kv, token] */
    assert_true(kq_r && soft_r && kqv_r && kq_o && kq && soft && kqv && scratch && step);
    float scale = 1.0f / sqrtf((float)Dh);

    /* the reference chain and the opt KQ, as the separate ops run them */
    kern_args ak = {.x = q, .kc = kc, .y = kq_r, .n = 1, .n_head = H, .n_head_kv = KV, .head_dim = Dh, .n_kv = n_kv,
                    .pos0 = pos0, .scale = scale};
    kern_args as = {.x = kq_r, .y = soft_r, .n = H, .m = n_kv};
    kern_args av = {.x = soft_r, .vc = vc, .y = kqv_r, .n = 1, .n_head = H, .n_head_kv = KV, .head_dim = Dh,
                    .n_kv = n_kv, .pos0 = pos0};
    assert_int_equal(kern_find(KERN_OP_KQ, KERN_BACKEND_CUDA, "ref")->fn(&ta.ctx, &ak), 0);
    assert_int_equal(kern_find(KERN_OP_SOFTMAX, KERN_BACKEND_CUDA, "ref")->fn(&ta.ctx, &as), 0);
    assert_int_equal(kern_find(KERN_OP_KQV, KERN_BACKEND_CUDA, "ref")->fn(&ta.ctx, &av), 0);
    ak.y = kq_o;
    assert_int_equal(kern_find(KERN_OP_KQ, KERN_BACKEND_CUDA, "opt")->fn(&ta.ctx, &ak), 0);
    float *r_kq = ta_get(kq_r, nq), *r_soft = ta_get(soft_r, nq), *r_kqv = ta_get(kqv_r, nv), *o_kq = ta_get(kq_o, nq);

    kern_attn_decode p = {.q = q, .kc = kc, .vc = vc, .kq = kq, .kq_soft = soft, .kqv = kqv, .scratch = scratch,
                          .scratch_size = sbytes, .n_head = H, .n_head_kv = KV, .head_dim = Dh, .n_kv = n_kv,
                          .pos0 = pos0, .scale = scale};
    float *got[3];
    ta_run(&p, got, nq, nv);
    if (memcmp(got[0], o_kq, nq * sizeof(float)) != 0)
        fail_msg("%s: kq is not bit-identical to the opt KQ", what);
    ta_close(got[0], r_kq, nq, 2e-5, what, "kq");
    ta_close(got[1], r_soft, nq, 1e-5, what, "kq_soft");
    ta_close(got[2], r_kqv, nv, 2e-5, what, "kqv");

    /* graph form: pos0 and n_kv from the device, the launch sized for n_ctx */
    int32_t hs[3] = {pos0, n_kv, 0};
    assert_int_equal(ta.mem->to_dev(&ta.ctx, step, hs, sizeof hs), 0);

    /* the fast path's one-launch form (kern_cuda_attn_fused) against the
     * opt chain, bit for bit: from the host values, then twice from the
     * device ones with the launch sized for n_ctx (the tickets must be back
     * at zero after each launch) */
    {
        float *soft_o = ta.mem->alloc(nq * sizeof(float)), *kqv_o = ta.mem->alloc(nv * sizeof(float));
        int *cnt = ta.mem->alloc(2 * (size_t)H * sizeof(int));
        int *zero = calloc(2 * (size_t)H, sizeof *zero);
        int64_t pf = kern_cuda_attn_part_floats(H, Dh, n_ctx);
        assert_true(pf > 0);
        float *part = ta.mem->alloc((size_t)pf * sizeof(float));
        assert_true(soft_o && kqv_o && cnt && zero && part);
        assert_int_equal(ta.mem->to_dev(&ta.ctx, cnt, zero, 2 * (size_t)H * sizeof(int)), 0);
        kern_args os = {.x = kq_o, .y = soft_o, .n = H, .m = n_kv};
        kern_args ov = av;
        ov.x = soft_o, ov.y = kqv_o;
        assert_int_equal(kern_find(KERN_OP_SOFTMAX, KERN_BACKEND_CUDA, "opt")->fn(&ta.ctx, &os), 0);
        assert_int_equal(kern_find(KERN_OP_KQV, KERN_BACKEND_CUDA, "opt")->fn(&ta.ctx, &ov), 0);
        float *want[3] = {ta_get(kq_o, nq), ta_get(soft_o, nq), ta_get(kqv_o, nv)};
        /* the opt chain itself (KQV summed in chunks of 256 rows) against ref */
        ta_close(want[1], r_soft, nq, 1e-5, what, "opt kq_soft");
        ta_close(want[2], r_kqv, nv, 2e-5, what, "opt kqv");
        for (int run = 0; run < 3; run++) {
            kern_args fk = ak, fs = {.x = kq, .y = soft, .n = H, .m = n_kv}, fv = av;
            fk.y = kq, fv.x = soft, fv.y = kqv;
            if (run > 0) { /* as exec_graph passes them */
                fk.n_kv = fv.n_kv = fs.m = n_ctx;
                fk.pos0 = fv.pos0 = 0;
                fk.dev_step = fs.dev_step = fv.dev_step = step;
            }
            ta_poison(kq, nq);
            ta_poison(soft, nq);
            ta_poison(kqv, nv);
            assert_int_equal(kern_cuda_attn_fused(&ta.ctx, &fk, &fs, &fv, cnt, part, pf), 0);
            float *f[3] = {ta_get(kq, nq), ta_get(soft, nq), ta_get(kqv, nv)};
            for (int i = 0; i < 3; i++)
                if (memcmp(f[i], want[i], (i == 2 ? nv : nq) * sizeof(float)) != 0)
                    fail_msg("%s: attn_fused run %d output %d differs from the opt chain", what, run, i);
            for (int i = 0; i < 3; i++)
                free(f[i]);
        }
        int *back = malloc(2 * (size_t)H * sizeof *back);
        assert_non_null(back);
        assert_int_equal(ta.mem->to_host(&ta.ctx, back, cnt, 2 * (size_t)H * sizeof(int)), 0);
        assert_memory_equal(back, zero, 2 * (size_t)H * sizeof(int));
        for (int i = 0; i < 3; i++)
            free(want[i]);
        free(back), free(zero);
        ta.mem->free(soft_o), ta.mem->free(kqv_o), ta.mem->free(cnt), ta.mem->free(part);
    }
    kern_attn_decode pd = p;
    pd.n_kv = n_ctx;
    pd.pos0 = 0;
    pd.dev_step = step;
    float *dgot[3];
    ta_run(&pd, dgot, nq, nv);
    for (int i = 0; i < 3; i++)
        if (memcmp(dgot[i], got[i], (i == 2 ? nv : nq) * sizeof(float)) != 0)
            fail_msg("%s: dev_step run differs from the host run in output %d", what, i);
    ta.cases++;

    for (int i = 0; i < 3; i++)
        free(got[i]), free(dgot[i]);
    free(r_kq), free(r_soft), free(r_kqv), free(o_kq);
    void *bufs[] = {q, kc, vc, kq_r, soft_r, kqv_r, kq_o, kq, soft, kqv, scratch, step};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        ta.mem->free(bufs[i]);
}

static void test_attn_decode(void **state)
{
    (void)state;
    static const int nkv[] = {1, 37, 256, 257, 4096, 16385};
    for (size_t i = 0; i < sizeof nkv / sizeof nkv[0]; i++) {
        ta_case(14, 2, 64, nkv[i], nkv[i] - 1);  /* Qwen2.5-0.5B: GQA 7:1 */
        ta_case(12, 12, 64, nkv[i], nkv[i] - 1); /* GPT-2: MHA */
    }
    ta_case(12, 2, 128, 4099, 4098); /* Qwen2.5-1.5B: GQA 6:1, 128 wide */
    ta_case(4, 1, 48, 200, 199);     /* MQA, head_dim % 32 != 0: the scalar dot */
    ta_case(14, 2, 64, 37, 30);      /* rows 31..36 masked */
    ta_case(14, 2, 64, 200, 100);    /* whole chunks masked */
}

/* heads whose kq_soft row and kqv must be all NaN (nan_head[h]); every
 * other head's finite. what: the case and the form that gave them */
static void ta_nan_check(float *soft, float *kqv, const int *nan_head, int H, int Dh, int n_kv,
                         const char *what)
{
    for (int h = 0; h < H; h++) {
        for (int j = 0; j < n_kv; j++)
            if (nan_head[h] ? !isnan(soft[(size_t)h * n_kv + j]) : !isfinite(soft[(size_t)h * n_kv + j]))
                fail_msg("%s: kq_soft[%d, 0, %d] = %.9g", what, h, j, soft[(size_t)h * n_kv + j]);
        for (int d = 0; d < Dh; d++)
            if (nan_head[h] ? !isnan(kqv[(size_t)h * Dh + d]) : !isfinite(kqv[(size_t)h * Dh + d]))
                fail_msg("%s: kqv[%d] = %.9g", what, h * Dh + d, kqv[(size_t)h * Dh + d]);
    }
    free(soft);
    free(kqv);
}

/* A NaN in the token's query of head H - 1 (plant 0: a row of NaN
 * scores) or in key n_kv / 2 of KV head 0 (plant 1: one NaN among the
 * scores of every head of that group): those heads' weights and outputs
 * all NaN, as torch's attention, in the ref and opt chains, the
 * flash-decoding split (per-chunk maxima and their combine) and the fast
 * path's one or two launches (attack 26, F1: softmaxes whose maximum
 * skipped NaN gave a row of NaN scores weights 0 and output 0). */
static void ta_nan_case(int H, int KV, int Dh, int n_kv, int plant)
{
    char what[128];
    size_t nq = (size_t)H * n_kv, nv = (size_t)H * Dh;
    float *hq, *hk;
    float *q = ta_dev_random((size_t)H * Dh, &hq), *kc = ta_dev_random((size_t)n_kv * KV * Dh, &hk);
    float *vc = ta_dev_random((size_t)n_kv * KV * Dh, NULL);
    int nan_head[64] = {0};
    assert_true(H <= 64);
    if (plant == 0) {
        hq[(size_t)(H - 1) * Dh] = NAN;
        nan_head[H - 1] = 1;
    } else {
        hk[(size_t)(n_kv / 2) * KV * Dh] = NAN;
        for (int h = 0; h < H / KV; h++)
            nan_head[h] = 1;
    }
    assert_int_equal(ta.mem->to_dev(&ta.ctx, q, hq, (size_t)H * Dh * sizeof(float)), 0);
    assert_int_equal(ta.mem->to_dev(&ta.ctx, kc, hk, (size_t)n_kv * KV * Dh * sizeof(float)), 0);
    float *kq = ta.mem->alloc(nq * sizeof(float)), *soft = ta.mem->alloc(nq * sizeof(float));
    float *kqv = ta.mem->alloc(nv * sizeof(float));
    int64_t pf = kern_cuda_attn_part_floats(H, Dh, n_kv);
    size_t sbytes = kern_cuda_attn_decode_scratch(H, Dh, n_kv);
    assert_true(pf > 0);
    float *part = ta.mem->alloc((size_t)pf * sizeof(float));
    void *scratch = ta.mem->alloc(sbytes);
    int *cnt = ta.mem->alloc(2 * (size_t)H * sizeof(int)), *zero = calloc(2 * (size_t)H, sizeof *zero);
    assert_true(kq && soft && kqv && part && scratch && cnt && zero);
    assert_int_equal(ta.mem->to_dev(&ta.ctx, cnt, zero, 2 * (size_t)H * sizeof(int)), 0);
    float scale = 1.0f / sqrtf((float)Dh);
    kern_args ak = {.x = q,
                    .kc = kc,
                    .y = kq,
                    .n = 1,
                    .n_head = H,
                    .n_head_kv = KV,
                    .head_dim = Dh,
                    .n_kv = n_kv,
                    .pos0 = n_kv - 1,
                    .scale = scale};
    kern_args as = {.x = kq, .y = soft, .n = H, .m = n_kv};
    kern_args av = {.x = soft,
                    .vc = vc,
                    .y = kqv,
                    .n = 1,
                    .n_head = H,
                    .n_head_kv = KV,
                    .head_dim = Dh,
                    .n_kv = n_kv,
                    .pos0 = n_kv - 1};
    static const char *const var[2] = {"ref", "opt"};
    for (int form = 0; form < 4; form++) {
        ta_poison(soft, nq);
        ta_poison(kqv, nv);
        if (form < 2) { /* the three ops */
            assert_int_equal(kern_find(KERN_OP_KQ, KERN_BACKEND_CUDA, var[form])->fn(&ta.ctx, &ak), 0);
            assert_int_equal(kern_find(KERN_OP_SOFTMAX, KERN_BACKEND_CUDA, var[form])->fn(&ta.ctx, &as), 0);
            assert_int_equal(kern_find(KERN_OP_KQV, KERN_BACKEND_CUDA, var[form])->fn(&ta.ctx, &av), 0);
        } else if (form == 2) {
            kern_attn_decode p = {.q = q,
                                  .kc = kc,
                                  .vc = vc,
                                  .kq = kq,
                                  .kq_soft = soft,
                                  .kqv = kqv,
                                  .scratch = scratch,
                                  .scratch_size = sbytes,
                                  .n_head = H,
                                  .n_head_kv = KV,
                                  .head_dim = Dh,
                                  .n_kv = n_kv,
                                  .pos0 = n_kv - 1,
                                  .scale = scale};
            assert_int_equal(kern_cuda_attn_decode(&ta.ctx, &p), 0);
        } else {
            assert_int_equal(kern_cuda_attn_fused(&ta.ctx, &ak, &as, &av, cnt, part, pf), 0);
        }
        static const char *const fname[4] = {"ref chain", "opt chain", "attn_decode", "attn_fused"};
        snprintf(what, sizeof what, "H %d KV %d Dh %d n_kv %d plant %d, %s", H, KV, Dh, n_kv, plant,
                 fname[form]);
        ta_nan_check(ta_get(soft, nq), ta_get(kqv, nv), nan_head, H, Dh, n_kv, what);
    }
    free(hq), free(hk), free(zero);
    void *bufs[] = {q, kc, vc, kq, soft, kqv, part, scratch, cnt};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        ta.mem->free(bufs[i]);
}

static void test_attn_decode_nan(void **state)
{
    (void)state;
    static const int nkv[] = {37, 300, 4096}; /* one chunk; the fast path's two launches; many chunks */
    for (size_t i = 0; i < sizeof nkv / sizeof nkv[0]; i++)
        for (int plant = 0; plant < 2; plant++) {
            ta_nan_case(14, 2, 64, nkv[i], plant);
            ta_nan_case(4, 1, 48, nkv[i], plant);
        }
}

static void test_attn_decode_bad_args(void **state)
{
    (void)state;
    assert_false(kern_cuda_attn_decode_ok(16, 1, 64)); /* 16 heads per KV head */
    assert_false(kern_cuda_attn_decode_ok(4, 4, 256)); /* head_dim over 128 */
    assert_false(kern_cuda_attn_decode_ok(6, 4, 64));  /* H % KV */
    kern_attn_decode p = {0};
    assert_int_equal(kern_cuda_attn_decode(&ta.ctx, &p), -1);
}

static int ta_setup(void **state)
{
    (void)state;
    ta.rng = 0x94D049BB133111EBULL;
    ta.mem = kern_backend_mem(KERN_BACKEND_CUDA);
    ta.ctx = (kern_ctx){.n_threads = 1};
    return ta.mem ? 0 : -1;
}

static int ta_teardown(void **state)
{
    (void)state;
    print_message("%d attention cases checked\n", ta.cases);
    kern_cuda_ctx_release(&ta.ctx);
    return 0;
}
#endif

int main(void)
{
#ifdef XF_HAVE_CUDA
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attn_decode),
        cmocka_unit_test(test_attn_decode_nan),
        cmocka_unit_test(test_attn_decode_bad_args),
    };
    char why[256];
    if (!kern_backend_available(KERN_BACKEND_CUDA, why, sizeof why)) {
        printf("test_kernels_cuda_attn: skipped: %s\n", why);
        return 77;
    }
    tu_filter_from_env();
    return cmocka_run_group_tests(tests, ta_setup, ta_teardown);
#else
    printf("test_kernels_cuda_attn: built without CUDA: skipped\n");
    return 77;
#endif
}
