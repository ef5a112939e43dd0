/* test_kernels_cpu_ref: the CPU ref kernels against small cases worked out
 * by hand (numbers typed in from a calculator, not computed by the code
 * under test). The variants are held to ref by test_kernels_cpu. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cpu/cpu.h"
#include "kernels.h"
#include "kernels_cpu_util.h"
#include "testutil.h"

static void test_ref_softmax_hand(void **state)
{
    (void)state;
    float x[9] = {0.0f,      (float)M_LN2, 0.0f,       /* row 0: [0, ln 2, 0] */
                  -INFINITY, 1.5f,         -INFINITY,  /* row 1: one finite entry */
                  -INFINITY, -INFINITY,    -INFINITY}; /* row 2: nothing to attend */
    float y[9];
    tu_poison(y, 9);
    kern_args a = {.x = x, .y = y, .n = 3, .m = 3};
    assert_int_equal(run_ref(KERN_OP_SOFTMAX, &a), 0);
    /* e^0 : e^ln2 : e^0 = 1 : 2 : 1 */
    const double want[9] = {0.25, 0.5, 0.25, 0, 1, 0, 0, 0, 0};
    assert_close(y, want, 9, 1e-7);
    /* [0, ln 2] alone -> [1/3, 2/3] */
    a.n = 1;
    a.m = 2;
    assert_int_equal(run_ref(KERN_OP_SOFTMAX, &a), 0);
    const double want2[2] = {1.0 / 3.0, 2.0 / 3.0};
    assert_close(y, want2, 2, 1e-7);
}

/* A NaN in a row makes the whole row NaN, as torch's softmax (HF's eager
 * attention) does: exp(NaN - max) is NaN and so is the sum. A row whose
 * unmasked scores are all NaN is not a row with nothing to attend to
 * (attack 26, F1: it came out all 0 and the NaN was lost); a row all -inf
 * still is (all 0). */
static void test_ref_softmax_nan(void **state)
{
    (void)state;
    float x[16] = {
        NAN,       NAN,       NAN,       NAN,        /* row 0: all NaN */
        NAN,       NAN,       -INFINITY, -INFINITY,  /* row 1: NaN, then masked (the attack's row) */
        1.0f,      NAN,       2.0f,      -INFINITY,  /* row 2: one NaN among numbers */
        -INFINITY, -INFINITY, -INFINITY, -INFINITY}; /* row 3: nothing to attend to */
    float y[16];
    for (int i = 0; i < 16; i++)
        y[i] = 12345.0f; /* not NaN: the NaN must come from the kernel */
    kern_args a = {.x = x, .y = y, .n = 4, .m = 4};
    assert_int_equal(run_ref(KERN_OP_SOFTMAX, &a), 0);
    for (int i = 0; i < 12; i++)
        if (!isnan(y[i]))
            fail_msg("row %d: y[%d] = %.9g, want NaN", i / 4, i % 4, (double)y[i]);
    for (int i = 12; i < 16; i++)
        assert_true(y[i] == 0.0f);
}

static void test_ref_norm_hand(void **state)
{
    (void)state;
    float x[3] = {1, 2, 3}, one[3] = {1, 1, 1}, g[3] = {2, 3, 0.5f}, b[3] = {1, 1, 1}, y[3];
    /* mean 2, biased variance 2/3, so (x - 2) * sqrt(3/2) */
    kern_args a = {.x = x, .w = one, .w_type = XF_TYPE_F32, .y = y, .n = 1, .k = 3, .eps = 0};
    tu_poison(y, 3);
    assert_int_equal(run_ref(KERN_OP_NORM, &a), 0);
    const double want[3] = {-1.224744871391589, 0, 1.224744871391589};
    assert_close(y, want, 3, 1e-7);
    a.w = g;
    a.b = b;
    tu_poison(y, 3);
    assert_int_equal(run_ref(KERN_OP_NORM, &a), 0);
    const double want2[3] = {1 - 2 * 1.224744871391589, 1, 1 + 0.5 * 1.224744871391589};
    assert_close(y, want2, 3, 1e-7);
    /* eps sits inside the sqrt: var 2/3 + eps 1/3 = 1, so y = x - mean */
    a.w = one;
    a.b = NULL;
    a.eps = 1.0f / 3.0f;
    assert_int_equal(run_ref(KERN_OP_NORM, &a), 0);
    const double want3[3] = {-1, 0, 1};
    assert_close(y, want3, 3, 1e-6);
}

static void test_ref_rmsnorm_hand(void **state)
{
    (void)state;
    float x[2] = {3, 4}, g[2] = {2, -1}, y[2];
    /* mean of squares 12.5 */
    kern_args a = {.x = x, .w = g, .w_type = XF_TYPE_F32, .y = y, .n = 1, .k = 2, .eps = 0};
    tu_poison(y, 2);
    assert_int_equal(run_ref(KERN_OP_RMSNORM, &a), 0);
    const double want[2] = {2 * 0.848528137423857, -1.131370849898476};
    assert_close(y, want, 2, 1e-7);
    /* eps: 12.5 + 3.5 = 16, so y = x / 4 * g */
    a.eps = 3.5f;
    assert_int_equal(run_ref(KERN_OP_RMSNORM, &a), 0);
    const double want2[2] = {1.5, -1};
    assert_close(y, want2, 2, 1e-7);
}

static void test_ref_rope_hand(void **state)
{
    (void)state;
    /* head_dim 4, base 4: pair (0,2) turns by pos rad, pair (1,3) by
     * pos * 4^(-1/2) = pos/2 rad. Three tokens at positions 0, 1, 2, one
     * head each, all x = [1, 2, 3, 4]. */
    float x[12] = {1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4}, y[12];
    tu_poison(y, 12);
    kern_args a = {.x = x, .y = y, .n = 3, .k = 4, .n_head = 1, .head_dim = 4, .pos0 = 0, .rope_base = 4.0f};
    assert_int_equal(run_ref(KERN_OP_ROPE, &a), 0);
    const double c1 = 0.5403023058681398, s1 = 0.8414709848078965;  /* cos 1, sin 1 */
    const double c2 = -0.4161468365471424, s2 = 0.9092974268256817; /* cos 2, sin 2 */
    const double ch = 0.8775825618903728, sh = 0.479425538604203;   /* cos .5, sin .5 */
    const double want[12] = {
        1,
        2,
        3,
        4, /* position 0: unchanged */
        1 * c1 - 3 * s1,
        2 * ch - 4 * sh,
        1 * s1 + 3 * c1,
        2 * sh + 4 * ch,
        1 * c2 - 3 * s2,
        2 * c1 - 4 * s1,
        1 * s2 + 3 * c2,
        2 * s1 + 4 * c1,
    };
    assert_close(y, want, 12, 1e-6);
    /* pos0 shifts positions: one token at pos0 = 2 is the last row above */
    a.x = x + 8;
    a.n = 1;
    a.pos0 = 2;
    tu_poison(y, 12);
    assert_int_equal(run_ref(KERN_OP_ROPE, &a), 0);
    assert_close(y, want + 8, 4, 1e-6);
}

static void test_ref_matmul_hand(void **state)
{
    (void)state;
    /* x [2,2], w [3,2] = [[1,0],[0,1],[1,1]], b = [0.5, 0, -1] */
    float x[4] = {1, 2, -1, 3}, w[6] = {1, 0, 0, 1, 1, 1}, b[3] = {0.5f, 0, -1}, y[6];
    uint16_t wh[6];
    for (int i = 0; i < 6; i++)
        wh[i] = xf_f32_to_f16(w[i]);
    const double want[6] = {1.5, 2, 2, -0.5, 3, 1};
    for (int t = 0; t < 2; t++) {
        kern_args a = {.x = x,
                       .w = t ? (const void *)wh : w,
                       .w_type = t ? XF_TYPE_F16 : XF_TYPE_F32,
                       .b = b,
                       .y = y,
                       .n = 2,
                       .k = 2,
                       .m = 3};
        tu_poison(y, 6);
        assert_int_equal(run_ref(KERN_OP_MATMUL, &a), 0);
        assert_close(y, want, 6, 0);
    }
}

static void test_ref_embd_view_add_hand(void **state)
{
    (void)state;
    float w[6] = {1, 2, 3, 4, 5, 6}, w2[8] = {0.5f, 0.5f, 1, 1, 2, 2, 4, 4}, y[4];
    int32_t tok[2] = {2, 0};
    kern_args a = {.w = w,
                   .w_type = XF_TYPE_F32,
                   .w2 = w2,
                   .w2_type = XF_TYPE_F32,
                   .tok = tok,
                   .y = y,
                   .n = 2,
                   .k = 2,
                   .pos0 = 1};
    tu_poison(y, 4);
    assert_int_equal(run_ref(KERN_OP_EMBD, &a), 0);
    const double want[4] = {5 + 1, 6 + 1, 1 + 2, 2 + 2}; /* w[2]+w2[1], w[0]+w2[2] */
    assert_close(y, want, 4, 0);
    a.w2 = NULL;
    assert_int_equal(run_ref(KERN_OP_EMBD, &a), 0);
    const double want2[4] = {5, 6, 1, 2};
    assert_close(y, want2, 4, 0);

    float x[12], yv[6];
    for (int i = 0; i < 12; i++)
        x[i] = (float)(i + 1);
    kern_args v = {.x = x, .y = yv, .n = 2, .m = 3, .x_stride = 6, .off = 2};
    tu_poison(yv, 6);
    assert_int_equal(run_ref(KERN_OP_VIEW, &v), 0);
    const double wantv[6] = {3, 4, 5, 9, 10, 11};
    assert_close(yv, wantv, 6, 0);

    float p[2] = {1.5f, -2}, q[2] = {0.25f, 4}, ya[2];
    kern_args ad = {.x = p, .x2 = q, .y = ya, .n = 1, .k = 2};
    assert_int_equal(run_ref(KERN_OP_ADD, &ad), 0);
    const double wanta[2] = {1.75, 2};
    assert_close(ya, wanta, 2, 0);
}

static void test_ref_act_hand(void **state)
{
    (void)state;
    float x[5] = {1, -1, 2, -3, 0.5f}, y[5];
    kern_args a = {.x = x, .y = y, .n = 1, .k = 5};
    tu_poison(y, 5);
    assert_int_equal(run_ref(KERN_OP_GELU, &a), 0);
    /* gelu_new (GPT-2), tanh form */
    const double want[5] = {0.8411919906082768, -0.15880800939172324, 1.954597694087775,
                            -0.0036373920817729943, 0.34571400982514394};
    assert_close(y, want, 5, 1e-7);

    float g[3] = {1, -2, 3}, up[3] = {2, 0.5f, -1.5f};
    kern_args s = {.x = g, .x2 = up, .y = y, .n = 1, .k = 3};
    tu_poison(y, 5);
    assert_int_equal(run_ref(KERN_OP_SWIGLU, &s), 0);
    const double want2[3] = {1.4621171572600098, -0.11920292202211755, -4.28658357070095};
    assert_close(y, want2, 3, 1e-7);
}

/* Causal mask with pos0 > 0 and the GQA head mapping: 4 query heads over 2
 * kv heads (heads 0,1 -> kv 0; 2,3 -> kv 1). */
static void test_ref_attention_hand(void **state)
{
    (void)state;
    enum { H = 4, KV = 2, HD = 2, N = 2, NKV = 3, POS0 = 1 };
    float kc[NKV * KV * HD], vc[NKV * KV * HD], q[N * H * HD];
    for (int j = 0; j < NKV; j++)
        for (int hk = 0; hk < KV; hk++) {
            /* key j of kv head hk: [j+1, 10*(hk+1)] */
            kc[(j * KV + hk) * HD + 0] = (float)(j + 1);
            kc[(j * KV + hk) * HD + 1] = (float)(10 * (hk + 1));
            /* value: [100*hk + j + 1, -(100*hk + j + 1)] */
            vc[(j * KV + hk) * HD + 0] = (float)(100 * hk + j + 1);
            vc[(j * KV + hk) * HD + 1] = -(float)(100 * hk + j + 1);
        }
    /* token 0 queries [0,1] (sees the kv head), token 1 queries [1,0] (sees j) */
    for (int h = 0; h < H; h++) {
        q[(0 * H + h) * HD + 0] = 0;
        q[(0 * H + h) * HD + 1] = 1;
        q[(1 * H + h) * HD + 0] = 1;
        q[(1 * H + h) * HD + 1] = 0;
    }
    float y[H * N * NKV];
    tu_poison(y, H * N * NKV);
    kern_args a = {.x = q,
                   .kc = kc,
                   .y = y,
                   .n = N,
                   .n_head = H,
                   .n_head_kv = KV,
                   .head_dim = HD,
                   .n_kv = NKV,
                   .pos0 = POS0,
                   .scale = 0.5f};
    assert_int_equal(run_ref(KERN_OP_KQ, &a), 0);
    for (int h = 0; h < H; h++) {
        double kvh = 10.0 * (h / 2 + 1);
        /* token 0 is at position 1: key 2 is in its future */
        assert_true(y[(h * N + 0) * NKV + 0] == (float)(0.5 * kvh));
        assert_true(y[(h * N + 0) * NKV + 1] == (float)(0.5 * kvh));
        assert_true(isinf(y[(h * N + 0) * NKV + 2]) && y[(h * N + 0) * NKV + 2] < 0);
        /* token 1 at position 2 sees all three keys */
        for (int j = 0; j < NKV; j++)
            assert_true(y[(h * N + 1) * NKV + j] == (float)(0.5 * (j + 1)));
    }

    /* KQV: head h weights [0.25, 0.25, 0.5] for token 0, one-hot on key
     * h % 3 for token 1 */
    float p[H * N * NKV], o[N * H * HD];
    for (int h = 0; h < H; h++)
        for (int j = 0; j < NKV; j++) {
            p[(h * N + 0) * NKV + j] = j == 2 ? 0.5f : 0.25f;
            p[(h * N + 1) * NKV + j] = j == h % 3 ? 1.0f : 0.0f;
        }
    tu_poison(o, N * H * HD);
    kern_args b = {
        .x = p, .vc = vc, .y = o, .n = N, .n_head = H, .n_head_kv = KV, .head_dim = HD, .n_kv = NKV};
    assert_int_equal(run_ref(KERN_OP_KQV, &b), 0);
    for (int h = 0; h < H; h++) {
        int hk = h / 2;
        double avg = 0.25 * (100 * hk + 1) + 0.25 * (100 * hk + 2) + 0.5 * (100 * hk + 3);
        assert_true(fabs(o[0 * H * HD + h * HD + 0] - avg) < 1e-4);
        assert_true(fabs(o[0 * H * HD + h * HD + 1] + avg) < 1e-4);
        assert_true(o[1 * H * HD + h * HD + 0] == (float)(100 * hk + h % 3 + 1));
        assert_true(o[1 * H * HD + h * HD + 1] == -(float)(100 * hk + h % 3 + 1));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_softmax_hand),       cmocka_unit_test(test_ref_softmax_nan),
        cmocka_unit_test(test_ref_norm_hand),          cmocka_unit_test(test_ref_rmsnorm_hand),
        cmocka_unit_test(test_ref_rope_hand),          cmocka_unit_test(test_ref_matmul_hand),
        cmocka_unit_test(test_ref_embd_view_add_hand), cmocka_unit_test(test_ref_act_hand),
        cmocka_unit_test(test_ref_attention_hand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
