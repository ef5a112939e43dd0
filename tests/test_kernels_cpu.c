/* Tests of the CPU kernels (kernels/cpu/), the thread pool and the registry.
 *
 * 1. The ref kernels against small cases worked out by hand (numbers typed
 *    in from a calculator, not computed by the code under test).
 * 2. Every non-ref CPU variant of every op kind against ref on random
 *    shapes (odd sizes, k not a multiple of 8, n = 1 and n > 1, pos0 > 0,
 *    GQA) and random inputs that are never zero, outputs poisoned with NaN
 *    first, with no pool and with pools of 1, 2 and 3 threads.
 * 3. Argument checks, the pool, the registry and the CPU memory ops. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cpu/cpu.h"
#include "kernels.h"
#include "cpu/quant_dot.h"
#include "quant.h"
#include "quantize.h"
#include "testutil.h"

/* ------------------------------------------------------------ fixtures */

/* Thread set-ups every variant runs under: no pool, pools of 1, 2, 3, and
 * a pool of 3 capped to 2 by ctx->n_threads. */
#define N_CFG 5
typedef struct test_state {
    kern_pool *pools[4]; /* [0] unused (no pool), then 1, 2, 3 threads */
} test_state;

static int group_setup(void **state)
{
    test_state *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    for (int t = 1; t <= 3; t++)
        if (!(s->pools[t] = kern_pool_new(t)))
            return -1;
    *state = s;
    return 0;
}

static int group_teardown(void **state)
{
    test_state *s = *state;
    for (int t = 1; t <= 3; t++)
        kern_pool_free(s->pools[t]);
    free(s);
    return 0;
}

static kern_ctx cfg_ctx(const test_state *s, int cfg)
{
    kern_ctx c = {0};
    switch (cfg) {
    case 0:
        c.n_threads = 1;
        break;
    case 1:
        c.n_threads = 1;
        c.pool = s->pools[1];
        break;
    case 2:
        c.n_threads = 2;
        c.pool = s->pools[2];
        break;
    case 3:
        c.n_threads = 3;
        c.pool = s->pools[3];
        break;
    default:
        c.n_threads = 2;
        c.pool = s->pools[3];
        break;
    }
    return c;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

static float *rand_floats(size_t n, uint64_t *rng, float lo, float hi)
{
    float *p = xmalloc(n * sizeof *p);
    tu_fill_random(p, n, rng, lo, hi);
    return p;
}

static void assert_close(const float *got, const double *want, size_t n, double tol)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabs((double)got[i] - want[i]) <= tol * fmax(1.0, fabs(want[i]))))
            fail_msg("element %zu: got %.9g, want %.9g", i, (double)got[i], want[i]);
}

/* Runs ref, then every non-ref CPU variant of op under every thread set-up,
 * each into a NaN-poisoned output, and compares with ref: max |a-b| over
 * max |ref| must stay within tol. Returns how many variants ran. */
static int compare_variants(const test_state *s, kern_op op, const kern_args *a0, size_t ny, double tol,
                            const char *what)
{
    const kern_variant *ref = kern_find(op, KERN_BACKEND_CPU, "ref");
    assert_non_null(ref);
    float *yref = xmalloc(ny * sizeof *yref), *y = xmalloc(ny * sizeof *y);
    kern_args a = *a0;
    tu_poison(yref, ny);
    a.y = yref;
    kern_ctx c0 = cfg_ctx(s, 0);
    assert_int_equal(ref->fn(&c0, &a), 0);
    for (size_t i = 0; i < ny; i++)
        if (isnan(yref[i]))
            fail_msg("%s %s: ref left element %zu unwritten (NaN)", kern_op_name(op), what, i);
    int ran = 0;
    for (size_t v = 0; v < kern_cpu_variant_count; v++) {
        const kern_variant *kv = &kern_cpu_variants[v];
        if (kv->op != op || strcmp(kv->name, "ref") == 0)
            continue;
        ran++;
        for (int cfg = 0; cfg < N_CFG; cfg++) {
            kern_ctx c = cfg_ctx(s, cfg);
            tu_poison(y, ny);
            a.y = y;
            assert_int_equal(kv->fn(&c, &a), 0);
            double err = tu_rel_max_err(y, yref, ny);
            if (!(err <= tol)) {
                size_t bad = 0;
                double worst = -1;
                for (size_t i = 0; i < ny; i++) {
                    double d = isnan(y[i]) ? INFINITY : fabs((double)y[i] - yref[i]);
                    if (d > worst || (isinf(yref[i]) && y[i] != yref[i])) {
                        worst = d;
                        bad = i;
                    }
                }
                fail_msg("%s/%s %s, %d threads (cfg %d): rel err %.3g > %.3g (element %zu: %.9g vs ref %.9g)",
                         kern_op_name(op), kv->name, what, kern_cpu_threads(&c), cfg, err, tol, bad,
                         (double)y[bad], (double)yref[bad]);
            }
        }
    }
    free(yref);
    free(y);
    return ran;
}

/* ---------------------------------------------- ref on hand-made cases */

static int run_ref(kern_op op, kern_args *a)
{
    const kern_variant *v = kern_find(op, KERN_BACKEND_CPU, "ref");
    assert_non_null(v);
    kern_ctx c = {.n_threads = 1};
    return v->fn(&c, a);
}

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

/* ------------------------------------------ variants against ref: ops */

static void test_embd(void **state)
{
    uint64_t rng = 0x1234567ULL;
    const int types[] = {XF_TYPE_F32, XF_TYPE_F16, XF_TYPE_Q8_0};
    const struct {
        int64_t n, k;
        int pos0;
    } shapes[] = {{1, 1, 0}, {5, 7, 3}, {33, 64, 0}, {4, 193, 11}, {40, 512, 2}};
    enum { VOCAB = 37 };
    int tested = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t n = shapes[s].n, k = shapes[s].k, nctx = shapes[s].pos0 + n + 3;
        float *tab = rand_floats((size_t)(VOCAB * k), &rng, -1, 1),
              *pos = rand_floats((size_t)(nctx * k), &rng, -1, 1);
        int32_t *tok = xmalloc((size_t)n * sizeof *tok);
        for (int64_t i = 0; i < n; i++)
            tok[i] = (int32_t)(tu_rand_u64(&rng) % VOCAB);
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            uint64_t rb;
            if (!quant_row_bytes(types[t], k, &rb))
                continue; /* k not a multiple of the block */
            uint8_t *w = xmalloc((size_t)(rb * VOCAB));
            if (quant_quantize_row(types[t], tab, w, k) == 0) {
                free(w);
                continue; /* type not implemented by quant.c */
            }
            for (int r = 0; r < VOCAB; r++)
                quant_quantize_row(types[t], tab + r * k, w + r * rb, k);
            for (int w2t = -1; w2t <= XF_TYPE_F16; w2t++) {
                uint16_t *posh = NULL;
                const void *w2 = NULL;
                if (w2t == XF_TYPE_F32) {
                    w2 = pos;
                } else if (w2t == XF_TYPE_F16) {
                    posh = xmalloc((size_t)(nctx * k) * sizeof *posh);
                    quant_quantize_row(XF_TYPE_F16, pos, posh, nctx * k);
                    w2 = posh;
                }
                kern_args a = {.w = w,
                               .w_type = types[t],
                               .w2 = w2,
                               .w2_type = w2t < 0 ? 0 : w2t,
                               .tok = tok,
                               .n = n,
                               .k = k,
                               .pos0 = shapes[s].pos0};
                char what[96];
                snprintf(what, sizeof what, "%s n=%lld k=%lld w2=%d", quant_type_name(types[t]), (long long)n,
                         (long long)k, w2t);
                /* a copy and an f32 add: exact */
                assert_int_equal(compare_variants(*state, KERN_OP_EMBD, &a, (size_t)(n * k), 0.0, what), 1);
                free(posh);
                tested++;
            }
            free(w);
        }
        free(tab);
        free(pos);
        free(tok);
    }
    assert_true(tested >= 2 * 3 * 5);
}

static void test_norm(void **state)
{
    uint64_t rng = 0xabcdefULL;
    const struct {
        int64_t n, k;
        float lo, hi;
    } shapes[] = {
        {1, 1, -1, 1},    {3, 5, -1, 1},      {17, 67, -2, 3}, {2, 768, -1, 1},
        {25, 896, -4, 4}, {4, 768, 100, 101}, /* |mean| >> std: tests the variance's cancellation */
    };
    for (int op = KERN_OP_NORM; op <= KERN_OP_RMSNORM; op++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int withb = 0; withb < 2; withb++) {
                int64_t n = shapes[s].n, k = shapes[s].k;
                float *x = rand_floats((size_t)(n * k), &rng, shapes[s].lo, shapes[s].hi);
                float *g = rand_floats((size_t)k, &rng, 0.5f, 1.5f), *b = rand_floats((size_t)k, &rng, -1, 1);
                kern_args a = {.x = x,
                               .w = g,
                               .w_type = XF_TYPE_F32,
                               .b = withb && op == KERN_OP_NORM ? b : NULL,
                               .n = n,
                               .k = k,
                               .eps = 1e-5f};
                char what[64];
                snprintf(what, sizeof what, "n=%lld k=%lld b=%d", (long long)n, (long long)k, withb);
                /* f32 sums of <= 896 terms and one rsqrt: observed <= 2e-7 */
                assert_int_equal(compare_variants(*state, (kern_op)op, &a, (size_t)(n * k), 2e-6, what), 1);
                free(x);
                free(g);
                free(b);
            }
}

/* Weight matrix [m, k] of `type` from random f32; NULL if quant.c cannot
 * make that type (or k is not a multiple of its block). */
static void *make_weights(int type, int64_t m, int64_t k, uint64_t *rng)
{
    uint64_t rb;
    if (!quant_row_bytes(type, k, &rb))
        return NULL;
    float *src = rand_floats((size_t)k, rng, -1, 1);
    uint8_t *w = xmalloc((size_t)(rb * (uint64_t)m));
    for (int64_t r = 0; r < m; r++) {
        tu_fill_random(src, (size_t)k, rng, -1, 1);
        if (quant_quantize_row(type, src, w + (uint64_t)r * rb, k) == 0) {
            free(src);
            free(w);
            return NULL;
        }
    }
    free(src);
    return w;
}

static void test_matmul(void **state)
{
    uint64_t rng = 0x5eed5ULL;
    /* every block format a Q4_K_M file holds (opt's decode takes the fused
     * kern_cpu_quant_dot kernels for them), plus Q8_1/Q2_K/Q3_K on the generic path */
    const int types[] = {XF_TYPE_F32,  XF_TYPE_F16,  XF_TYPE_Q8_0, XF_TYPE_Q4_K, XF_TYPE_Q4_0,
                         XF_TYPE_Q4_1, XF_TYPE_Q5_0, XF_TYPE_Q5_1, XF_TYPE_Q8_1, XF_TYPE_Q5_K,
                         XF_TYPE_Q6_K, XF_TYPE_Q2_K, XF_TYPE_Q3_K};
    enum { N_TYPES = sizeof types / sizeof types[0] };
    const struct {
        int64_t n, k, m;
    } shapes[] = {
        {1, 7, 5},    {1, 192, 576}, {1, 256, 37},  {2, 33, 17},   {3, 64, 31},    {5, 100, 16},
        {7, 257, 35}, {6, 16, 48},   {17, 512, 33}, {4, 1024, 19}, {128, 192, 40}, {9, 768, 70},
        /* decode on Qwen2.5-0.5B widths: rows split unevenly over threads */
        {1, 896, 67}, {1, 4864, 21},
    };
    enum { N_SHAPES = sizeof shapes / sizeof shapes[0] };
    int ran[N_TYPES] = {0};
    for (size_t t = 0; t < N_TYPES; t++)
        for (size_t s = 0; s < N_SHAPES; s++) {
            int64_t n = shapes[s].n, k = shapes[s].k, m = shapes[s].m;
            if (k > 1024 && types[t] != XF_TYPE_Q4_K && types[t] != XF_TYPE_Q6_K)
                continue; /* the long rows only for the k-quants Qwen uses there: keep the test fast */
            void *w = make_weights(types[t], m, k, &rng);
            if (!w)
                continue;
            float *x = rand_floats((size_t)(n * k), &rng, -1, 1), *b = rand_floats((size_t)m, &rng, -1, 1);
            kern_args a = {
                .x = x, .w = w, .w_type = types[t], .b = (s % 2) ? b : NULL, .n = n, .k = k, .m = m};
            char what[96];
            snprintf(what, sizeof what, "%s n=%lld k=%lld m=%lld", quant_type_name(types[t]), (long long)n,
                     (long long)k, (long long)m);
            /* Looser than the other ops: opt accumulates the k products
             * in f32 (8-lane partial sums, 256-column chunks added into y;
             * block formats sum q*x per block or sub-block, then scale, in
             * kern_cpu_quant_dot). The rounding error of such sums grows with k,
             * like eps*sqrt(k/8) relative to |y| for random signs (worst
             * case eps*k). Observed <= 2e-7 for k <= 1024; 4e-6 keeps 20x
             * margin for other rounding (no FMA on the baseline clone). */
            assert_int_equal(compare_variants(*state, KERN_OP_MATMUL, &a, (size_t)(n * m), 4e-6, what), 1);
            ran[t]++;
            free(w);
            free(x);
            free(b);
        }
    /* every shape whose k is a whole number of blocks ran (all of them for F32, F16) */
    for (size_t t = 0; t < N_TYPES; t++) {
        const int be = quant_type_get(types[t])->block_elems;
        int want = 0;
        for (size_t s = 0; s < N_SHAPES; s++)
            want += shapes[s].k % be == 0 && (shapes[s].k <= 1024 || types[t] == XF_TYPE_Q4_K ||
                                              types[t] == XF_TYPE_Q6_K);
        if (ran[t] != want)
            fail_msg("matmul %s ran %d shapes, want %d", quant_type_name(types[t]), ran[t], want);
    }
}

static void test_view(void **state)
{
    uint64_t rng = 0x77ULL;
    const struct {
        int64_t n, stride, off, m;
    } shapes[] = {
        {1, 9, 0, 3}, {4, 9, 3, 3}, {5, 9, 6, 3}, {3, 10, 1, 4}, {7, 2304, 768, 768}, {40, 2304, 1536, 768},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        float *x = rand_floats((size_t)(shapes[s].n * shapes[s].stride), &rng, -1, 1);
        kern_args a = {
            .x = x, .n = shapes[s].n, .m = shapes[s].m, .x_stride = shapes[s].stride, .off = shapes[s].off};
        assert_int_equal(compare_variants(*state, KERN_OP_VIEW, &a, (size_t)(a.n * a.m), 0.0, "view"), 1);
        free(x);
    }
}

static void test_rope(void **state)
{
    uint64_t rng = 0x40be;
    const struct {
        int64_t n;
        int heads, hd, pos0;
        float base;
    } shapes[] = {
        {1, 1, 2, 0, 10000},  {3, 2, 6, 5, 10000},     {4, 3, 64, 0, 10000},  {2, 14, 64, 1000, 1e6f},
        {5, 2, 18, 7, 10000}, {1, 1, 128, 4095, 1e6f}, {40, 14, 64, 3, 1e6f},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t ny = (size_t)(shapes[s].n * shapes[s].heads * shapes[s].hd);
        float *x = rand_floats(ny, &rng, -2, 2);
        kern_args a = {.x = x,
                       .n = shapes[s].n,
                       .k = shapes[s].heads * shapes[s].hd,
                       .n_head = shapes[s].heads,
                       .head_dim = shapes[s].hd,
                       .pos0 = shapes[s].pos0,
                       .rope_base = shapes[s].base};
        char what[64];
        snprintf(what, sizeof what, "n=%lld heads=%d hd=%d pos0=%d", (long long)a.n, a.n_head, a.head_dim,
                 a.pos0);
        /* same f64 angles as ref, then f32 products: a few ulp */
        assert_int_equal(compare_variants(*state, KERN_OP_ROPE, &a, ny, 1e-6, what), 1);
        free(x);
    }
}

static const struct attn_shape {
    int64_t n;
    int heads, kv, hd, pos0;
} attn_shapes[] = {
    {1, 2, 2, 5, 0},   {4, 4, 2, 8, 3},    {7, 6, 1, 64, 10},  {3, 3, 3, 17, 0},
    {5, 14, 2, 64, 2}, {1, 14, 2, 64, 40}, {1, 12, 12, 64, 0}, {33, 4, 1, 13, 5},
};

static void test_kq(void **state)
{
    uint64_t rng = 0x6b71;
    for (size_t s = 0; s < sizeof attn_shapes / sizeof attn_shapes[0]; s++) {
        const struct attn_shape *sh = &attn_shapes[s];
        int n_kv = sh->pos0 + (int)sh->n;
        float *q = rand_floats((size_t)(sh->n * sh->heads * sh->hd), &rng, -1, 1);
        float *kc = rand_floats((size_t)n_kv * sh->kv * sh->hd, &rng, -1, 1);
        kern_args a = {.x = q,
                       .kc = kc,
                       .n = sh->n,
                       .n_head = sh->heads,
                       .n_head_kv = sh->kv,
                       .head_dim = sh->hd,
                       .n_kv = n_kv,
                       .pos0 = sh->pos0,
                       .scale = 1.0f / sqrtf((float)sh->hd)};
        char what[80];
        snprintf(what, sizeof what, "n=%lld H=%d KV=%d hd=%d pos0=%d", (long long)sh->n, sh->heads, sh->kv,
                 sh->hd, sh->pos0);
        /* f32 dots of <= 64 terms (observed <= 1.2e-7); the -inf pattern
         * must match exactly */
        assert_int_equal(
            compare_variants(*state, KERN_OP_KQ, &a, (size_t)sh->heads * sh->n * n_kv, 2e-6, what), 1);
        free(q);
        free(kc);
    }
}

static void test_kqv(void **state)
{
    uint64_t rng = 0x6b7176;
    for (size_t s = 0; s < sizeof attn_shapes / sizeof attn_shapes[0]; s++) {
        const struct attn_shape *sh = &attn_shapes[s];
        int n_kv = sh->pos0 + (int)sh->n;
        float *p = rand_floats((size_t)sh->heads * sh->n * n_kv, &rng, 0, 1);
        float *vc = rand_floats((size_t)n_kv * sh->kv * sh->hd, &rng, -1, 1);
        kern_args a = {.x = p,
                       .vc = vc,
                       .n = sh->n,
                       .n_head = sh->heads,
                       .n_head_kv = sh->kv,
                       .head_dim = sh->hd,
                       .n_kv = n_kv,
                       .pos0 = sh->pos0};
        char what[80];
        snprintf(what, sizeof what, "n=%lld H=%d KV=%d hd=%d pos0=%d", (long long)sh->n, sh->heads, sh->kv,
                 sh->hd, sh->pos0);
        /* f32 sums of <= 41 terms (observed <= 3e-7) */
        assert_int_equal(
            compare_variants(*state, KERN_OP_KQV, &a, (size_t)(sh->n * sh->heads * sh->hd), 2e-6, what), 1);
        free(p);
        free(vc);
    }
}

static void test_softmax(void **state)
{
    uint64_t rng = 0x50f7;
    const struct {
        int64_t n, m;
        int mask;
    } shapes[] = {
        {1, 1, 0}, {5, 3, 0}, {4, 17, 0}, {3, 130, 0}, {70, 9, 1}, {14, 41, 1}, {200, 300, 1},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t n = shapes[s].n, m = shapes[s].m;
        float *x = rand_floats((size_t)(n * m), &rng, -10, 10);
        if (shapes[s].mask) {
            /* a causal-looking pattern: row i keeps i % m + 1 entries, and
             * row 1 is all -inf */
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = i % m + 1; j < m; j++)
                    x[i * m + j] = -INFINITY;
            for (int64_t j = 0; j < m; j++)
                x[1 * m + j] = -INFINITY;
        }
        kern_args a = {.x = x, .n = n, .m = m};
        char what[64];
        snprintf(what, sizeof what, "n=%lld m=%lld mask=%d", (long long)n, (long long)m, shapes[s].mask);
        /* polynomial expf within ~2 ulp, f32 sum of <= 300 terms
         * (observed <= 2e-7) */
        assert_int_equal(compare_variants(*state, KERN_OP_SOFTMAX, &a, (size_t)(n * m), 2e-6, what), 1);
        free(x);
    }
}

static void test_eltwise(void **state)
{
    uint64_t rng = 0xe1e;
    const struct {
        int64_t n, k;
        float lo, hi;
    } shapes[] = {
        {1, 1, -8, 8},     {1, 7, -8, 8},    {3, 1000, -8, 8},
        {2, 40000, -8, 8}, {5, 4864, -6, 6}, {2, 333, -100, 100}, /* tails of gelu and silu, exp overflow */
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t n = shapes[s].n, k = shapes[s].k;
        float *x = rand_floats((size_t)(n * k), &rng, shapes[s].lo, shapes[s].hi);
        float *x2 = rand_floats((size_t)(n * k), &rng, -2, 2);
        kern_args a = {.x = x, .x2 = x2, .n = n, .k = k};
        char what[64];
        snprintf(what, sizeof what, "n=%lld k=%lld", (long long)n, (long long)k);
        assert_int_equal(compare_variants(*state, KERN_OP_ADD, &a, (size_t)(n * k), 0.0, what), 1);
        /* the exp form of gelu and silu against f64 tanh/exp: a few ulp */
        assert_int_equal(compare_variants(*state, KERN_OP_GELU, &a, (size_t)(n * k), 1e-6, what), 1);
        assert_int_equal(compare_variants(*state, KERN_OP_SWIGLU, &a, (size_t)(n * k), 1e-6, what), 1);
        free(x);
        free(x2);
    }
    /* near the ends of exp's range: -x/e^88 must come out as the tiny
     * number it is, not NaN or garbage */
    float ex1[8] = {-1e4f, -88.5f, -13, 88.5f, 20, -20, -87, -90};
    /* huge and infinite: the limits, no NaN, inf where ref has inf */
    float ex2[8] = {1e30f, -1e30f, INFINITY, 1e4f, -1e4f, 3e38f, -3e38f, 50};
    float up[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    kern_args e = {.x = ex1, .x2 = up, .n = 1, .k = 8};
    assert_int_equal(compare_variants(*state, KERN_OP_GELU, &e, 8, 1e-6, "near exp limits"), 1);
    assert_int_equal(compare_variants(*state, KERN_OP_SWIGLU, &e, 8, 1e-6, "near exp limits"), 1);
    e.x = ex2;
    assert_int_equal(compare_variants(*state, KERN_OP_GELU, &e, 8, 1e-6, "huge"), 1);
    assert_int_equal(compare_variants(*state, KERN_OP_SWIGLU, &e, 8, 1e-6, "huge"), 1);
}

/* ------------------------------------------------------ argument checks */

/* Every CPU variant refuses obviously invalid arguments and accepts n = 0. */
static void test_invalid_args(void **state)
{
    (void)state;
    float x[64] = {1}, y[64];
    uint16_t wh[64] = {0};
    int32_t tok[2] = {0, -1};
    for (size_t v = 0; v < kern_cpu_variant_count; v++) {
        const kern_variant *kv = &kern_cpu_variants[v];
        kern_ctx c = {.n_threads = 1};
        /* a valid small argument set for every op */
        kern_args ok = {.x = x,
                        .x2 = x,
                        .w = x,
                        .w_type = XF_TYPE_F32,
                        .tok = tok,
                        .kc = x,
                        .vc = x,
                        .y = y,
                        .n = 1,
                        .k = 4,
                        .m = 4,
                        .x_stride = 4,
                        .n_head = 2,
                        .n_head_kv = 1,
                        .head_dim = 2,
                        .n_kv = 1,
                        .eps = 1e-5f,
                        .scale = 1,
                        .rope_base = 10000};
        assert_int_equal(kv->fn(&c, &ok), 0);
        kern_args a = ok;
        a.n = -1;
        assert_int_equal(kv->fn(&c, &a), -1);
        a = ok;
        a.y = NULL;
        assert_int_equal(kv->fn(&c, &a), -1);
        assert_int_equal(kv->fn(&c, NULL), -1);
        a = ok;
        a.n = 0;
        tu_poison(y, 64);
        assert_int_equal(kv->fn(&c, &a), 0);
        for (int i = 0; i < 64; i++)
            assert_true(isnan(y[i])); /* nothing written */
        a = ok;
        switch (kv->op) {
        case KERN_OP_EMBD:
            a.k = 0;
            assert_int_equal(kv->fn(&c, &a), -1);
            a = ok;
            a.tok = NULL;
            assert_int_equal(kv->fn(&c, &a), -1);
            a = ok;
            a.n = 2; /* tok[1] = -1 */
            assert_int_equal(kv->fn(&c, &a), -1);
            a = ok;
            a.w_type = 99;
            assert_int_equal(kv->fn(&c, &a), -1);
            break;
        case KERN_OP_NORM:
        case KERN_OP_RMSNORM:
            a.k = 0;
            assert_int_equal(kv->fn(&c, &a), -1);
            a = ok;
            a.w = NULL;
            assert_int_equal(kv->fn(&c, &a), -1);
            a = ok;
            a.w_type = XF_TYPE_F16; /* gamma is always f32 */
            a.w = wh;
            assert_int_equal(kv->fn(&c, &a), -1);
            break;
        case KERN_OP_MATMUL:
            a.k = 0;
            assert_int_equal(kv->fn(&c, &a), -1);
            a = ok;
            a.m = 0;
            assert_int_equal(kv->fn(&c, &a), -1);
            a = ok;
            a.w_type = 99;
            assert_int_equal(kv->fn(&c, &a), -1);
            a = ok;
            a.w_type = XF_TYPE_Q8_0; /* k = 4 is not a multiple of its 32-element block */
            assert_int_equal(kv->fn(&c, &a), -1);
            a = ok;
            a.x = NULL;
            assert_int_equal(kv->fn(&c, &a), -1);
            break;
        case KERN_OP_VIEW:
            a.off = -1;
            assert_int_equal(kv->fn(&c, &a), -1);
            a = ok;
            a.m = 0;
            assert_int_equal(kv->fn(&c, &a), -1);
            break;
        case KERN_OP_ROPE:
            a.head_dim = 3;
            assert_int_equal(kv->fn(&c, &a), -1);
            a = ok;
            a.rope_base = 0;
            assert_int_equal(kv->fn(&c, &a), -1);
            break;
        case KERN_OP_KQ:
        case KERN_OP_KQV:
            a.n_head = 3; /* not a multiple of n_head_kv = 2 */
            a.n_head_kv = 2;
            assert_int_equal(kv->fn(&c, &a), -1);
            a = ok;
            a.n_head_kv = 0;
            assert_int_equal(kv->fn(&c, &a), -1);
            a = ok;
            a.kc = NULL;
            a.vc = NULL;
            assert_int_equal(kv->fn(&c, &a), -1);
            break;
        case KERN_OP_SOFTMAX:
            a.m = 0;
            assert_int_equal(kv->fn(&c, &a), -1);
            break;
        case KERN_OP_ADD:
        case KERN_OP_SWIGLU:
            a.x2 = NULL;
            assert_int_equal(kv->fn(&c, &a), -1);
            /* fall through */
        case KERN_OP_GELU:
            a = ok;
            a.k = 0;
            assert_int_equal(kv->fn(&c, &a), -1);
            break;
        case KERN_OP_COUNT:
            fail();
        }
    }
}

/* The opt kernels also run with no ctx at all (single-threaded). */
static void test_null_ctx(void **state)
{
    (void)state;
    float x[6] = {1, 2, 3, 4, 5, 6}, y[6];
    const kern_variant *v = kern_find(KERN_OP_ADD, KERN_BACKEND_CPU, "opt");
    assert_non_null(v);
    kern_args a = {.x = x, .x2 = x, .y = y, .n = 2, .k = 3};
    tu_poison(y, 6);
    assert_int_equal(v->fn(NULL, &a), 0);
    for (int i = 0; i < 6; i++)
        assert_true(y[i] == 2 * x[i]);
}

/* ------------------------------------------------------- f16 conversion */

static void test_f16_row_exhaustive(void **state)
{
    (void)state;
    enum { N = 65536 + 5 }; /* every half, and a tail that is not a multiple of 8 */
    uint16_t *h = xmalloc(N * sizeof *h);
    float *f = xmalloc(N * sizeof *f);
    for (int i = 0; i < N; i++)
        h[i] = (uint16_t)(i * 40503u); /* a permutation mod 2^16: neighbours differ */
    /* the dispatching conversion (F16C here when the CPU has it) and the
     * portable one that other CPUs get */
    void (*const conv[2])(const uint16_t *, float *, int64_t) = {kern_cpu_f16_to_f32_row,
                                                                 kern_cpu_f16_to_f32_row_generic};
    for (int c = 0; c < 2; c++) {
        tu_poison(f, N);
        conv[c](h, f, N);
        for (int i = 0; i < N; i++) {
            float want = xf_f16_to_f32(h[i]);
            if (isnan(want)) {
                assert_true(isnan(f[i]));
            } else if (memcmp(&want, &f[i], sizeof want) != 0) {
                fail_msg("conversion %d, half 0x%04x: got %.9g want %.9g", c, h[i], (double)f[i],
                         (double)want);
            }
        }
    }
    free(h);
    free(f);
}

/* Both f16 matrix-vector products against an f64 sum (the portable one
 * does not run inside matmul/opt on a CPU with F16C). */
static void test_f16_gemv(void **state)
{
    (void)state;
    uint64_t rng = 0xf16f16;
    const int64_t rows_s[] = {1, 3, 4, 7, 37}, k_s[] = {1, 7, 16, 33, 300, 600};
    void (*const gemv[2])(const uint16_t *, int64_t, int64_t, const float *,
                          float *) = {kern_cpu_f16_gemv, kern_cpu_f16_gemv_generic};
    for (size_t ri = 0; ri < 5; ri++)
        for (size_t ki = 0; ki < 6; ki++) {
            int64_t rows = rows_s[ri], k = k_s[ki];
            float *wf = rand_floats((size_t)(rows * k), &rng, -1, 1),
                  *x = rand_floats((size_t)k, &rng, -1, 1);
            uint16_t *w = xmalloc((size_t)(rows * k) * sizeof *w);
            float *y = xmalloc((size_t)rows * sizeof *y), *want = xmalloc((size_t)rows * sizeof *want);
            for (int64_t i = 0; i < rows * k; i++)
                w[i] = xf_f32_to_f16(wf[i]);
            for (int64_t r = 0; r < rows; r++) {
                double acc = 0;
                for (int64_t j = 0; j < k; j++)
                    acc += (double)xf_f16_to_f32(w[r * k + j]) * x[j];
                want[r] = (float)acc;
            }
            for (int g = 0; g < 2; g++) {
                tu_poison(y, (size_t)rows);
                gemv[g](w, rows, k, x, y);
                double err = tu_rel_max_err(y, want, (size_t)rows);
                if (!(err <= 5e-5))
                    fail_msg("f16 gemv %d rows=%lld k=%lld: rel err %.3g", g, (long long)rows, (long long)k,
                             err);
            }
            free(wf);
            free(x);
            free(w);
            free(y);
            free(want);
        }
}

/* ----------------------------------------------------------------- pool */

typedef struct pool_probe {
    atomic_int calls[8];
    atomic_int bad_n;
    int want_n;
} pool_probe;

static void pool_probe_fn(void *arg, int i, int n)
{
    pool_probe *p = arg;
    if (n != p->want_n || i < 0 || i >= 8)
        atomic_fetch_add(&p->bad_n, 1);
    else
        atomic_fetch_add(&p->calls[i], 1);
}

static void test_pool(void **state)
{
    (void)state;
    assert_null(kern_pool_new(0));
    assert_null(kern_pool_new(-3));
    kern_pool_free(NULL);
    assert_int_equal(kern_pool_threads(NULL), 1);
    for (int t = 1; t <= 4; t++) {
        kern_pool *p = kern_pool_new(t);
        assert_non_null(p);
        assert_int_equal(kern_pool_threads(p), t);
        pool_probe pr = {.want_n = t};
        enum { RUNS = 3000 };
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int r = 0; r < RUNS; r++)
            kern_pool_run(p, pool_probe_fn, &pr);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        assert_int_equal(atomic_load(&pr.bad_n), 0);
        for (int i = 0; i < 8; i++)
            assert_int_equal(atomic_load(&pr.calls[i]), i < t ? RUNS : 0);
        double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3 / RUNS;
        print_message("pool of %d: %.2f us per empty run (cores shared, indicative only)\n", t, us);
        kern_pool_free(p);
    }
    /* a pool can be made and dropped without ever running */
    kern_pool_free(kern_pool_new(3));
}

/* ------------------------------------------------------------- registry */

static void test_registry(void **state)
{
    (void)state;
    static const char *const names[KERN_OP_COUNT] = {
        "embd", "norm", "rmsnorm", "matmul", "view", "rope", "kq", "softmax", "kqv", "add", "gelu", "swiglu"};
    for (int op = 0; op < KERN_OP_COUNT; op++) {
        assert_string_equal(kern_op_name((kern_op)op), names[op]);
        assert_int_equal(kern_op_from_name(names[op]), op);
    }
    assert_int_equal(kern_op_from_name("matmu"), -1);
    assert_int_equal(kern_op_from_name(""), -1);
    assert_int_equal(kern_op_from_name(NULL), -1);
    assert_string_equal(kern_op_name(KERN_OP_COUNT), "?");
    assert_string_equal(kern_backend_name(KERN_BACKEND_CPU), "cpu");
    assert_string_equal(kern_backend_name(KERN_BACKEND_CUDA), "cuda");

    size_t n = 0;
    const kern_variant *all = kern_registry(&n);
    assert_non_null(all);
    assert_true(n >= kern_cpu_variant_count);
    assert_ptr_equal(kern_registry(NULL), all); /* one table for every caller */
    /* cpu variants first, in their table's order */
    for (size_t i = 0; i < kern_cpu_variant_count; i++) {
        assert_int_equal(all[i].backend, KERN_BACKEND_CPU);
        assert_ptr_equal(all[i].fn, kern_cpu_variants[i].fn);
    }
    for (size_t i = 0; i < n; i++) {
        assert_true(all[i].op >= 0 && all[i].op < KERN_OP_COUNT);
        assert_non_null(all[i].fn);
        assert_non_null(all[i].name);
        assert_true(all[i].doc && all[i].doc[0]);
        /* (op, backend, name) is unique, and kern_find finds this entry */
        for (size_t j = i + 1; j < n; j++)
            assert_false(all[i].op == all[j].op && all[i].backend == all[j].backend &&
                         strcmp(all[i].name, all[j].name) == 0);
        assert_ptr_equal(kern_find(all[i].op, all[i].backend, all[i].name), &all[i]);
    }
    for (int op = 0; op < KERN_OP_COUNT; op++) {
        assert_non_null(kern_find((kern_op)op, KERN_BACKEND_CPU, "ref"));
        assert_non_null(kern_find((kern_op)op, KERN_BACKEND_CPU, "opt"));
    }
    assert_null(kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, "nope"));
    assert_null(kern_find(KERN_OP_MATMUL, KERN_BACKEND_CPU, NULL));

    char why[128] = "x";
    assert_int_equal(kern_backend_available(KERN_BACKEND_CPU, why, sizeof why), 1);
#ifdef XF_HAVE_CUDA
    assert_non_null(kern_backend_mem(KERN_BACKEND_CUDA));
#else
    assert_null(kern_backend_mem(KERN_BACKEND_CUDA));
    assert_int_equal(kern_backend_available(KERN_BACKEND_CUDA, why, sizeof why), 0);
    assert_string_equal(why, "built without CUDA");
#endif
    assert_int_equal(kern_backend_available(KERN_BACKEND_COUNT, why, sizeof why), 0);
    assert_null(kern_backend_mem(KERN_BACKEND_COUNT));
}

static void test_cpu_mem(void **state)
{
    (void)state;
    const kern_mem_ops *mo = kern_backend_mem(KERN_BACKEND_CPU);
    assert_non_null(mo);
    kern_ctx c = {.n_threads = 1};
    const size_t sizes[] = {1, 3, 64, 100, 4097};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t nb = sizes[s];
        uint8_t *a = mo->alloc(nb), *b = mo->alloc(nb), *src = xmalloc(nb);
        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal((uintptr_t)a % 64, 0);
        assert_int_equal((uintptr_t)b % 64, 0);
        for (size_t i = 0; i < nb; i++)
            src[i] = (uint8_t)(i * 7 + 1);
        assert_int_equal(mo->to_dev(&c, a, src, nb), 0);
        assert_int_equal(mo->copy(&c, b, a, nb), 0);
        memset(src, 0, nb);
        assert_int_equal(mo->to_host(&c, src, b, nb), 0);
        assert_int_equal(mo->sync(&c), 0);
        for (size_t i = 0; i < nb; i++)
            assert_int_equal(src[i], (uint8_t)(i * 7 + 1));
        mo->free(a);
        mo->free(b);
        free(src);
    }
    mo->free(NULL);
    assert_int_equal(mo->copy(&c, NULL, NULL, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_softmax_hand),
        cmocka_unit_test(test_ref_norm_hand),
        cmocka_unit_test(test_ref_rmsnorm_hand),
        cmocka_unit_test(test_ref_rope_hand),
        cmocka_unit_test(test_ref_matmul_hand),
        cmocka_unit_test(test_ref_embd_view_add_hand),
        cmocka_unit_test(test_ref_act_hand),
        cmocka_unit_test(test_ref_attention_hand),
        cmocka_unit_test(test_embd),
        cmocka_unit_test(test_norm),
        cmocka_unit_test(test_matmul),
        cmocka_unit_test(test_view),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_kq),
        cmocka_unit_test(test_kqv),
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_eltwise),
        cmocka_unit_test(test_invalid_args),
        cmocka_unit_test(test_null_ctx),
        cmocka_unit_test(test_f16_row_exhaustive),
        cmocka_unit_test(test_f16_gemv),
        cmocka_unit_test(test_pool),
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_cpu_mem),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
