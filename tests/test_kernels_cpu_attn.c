/* test_kernels_cpu_attn: the cpu's fused attention of a prefill
 * (kern_cpu_attn_fused, kernels/cpu/opt_attn.c) against the three opt ops
 * it stands in for (kq, softmax, kqv run one after the other): the same
 * bits on random inputs (never zero), on shapes whose sizes are not
 * multiples of the 4-key and 8-lane blocks, GQA and MHA, a prefill that
 * continues a context (pos0 > 0), under every thread set-up, the output
 * poisoned with NaN first. Also: a NaN or Inf in a later token's value row
 * turns the earlier rows NaN as the ops do (0 * NaN), a NaN in a key or a
 * query too (the row it reaches NaN, weights and output); too little
 * scratch or arguments that do not belong together are refused. */
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

static const struct fa_shape {
    int64_t n;
    int heads, kv, hd, pos0;
} fa_shapes[] = {
    {2, 2, 2, 5, 0},  {5, 4, 2, 8, 3},   {7, 6, 1, 64, 10}, {9, 3, 3, 17, 0},  {13, 14, 2, 64, 2},
    {33, 4, 1, 13, 5}, {30, 9, 3, 64, 0}, {6, 12, 12, 40, 7}, {70, 2, 1, 24, 1},
};

/* where a bad value is planted: none, a value row past some rows' end, a key, a query */
enum { FA_NONE, FA_V_NAN, FA_V_INF, FA_K_NAN, FA_Q_NAN, FA_CASES };

typedef struct fa_case {
    const struct fa_shape *sh;
    int n_kv;
    float *q, *kc, *vc;
} fa_case;

static void fa_make(fa_case *c, const struct fa_shape *sh, int bad, uint64_t *rng)
{
    c->sh = sh;
    c->n_kv = sh->pos0 + (int)sh->n;
    size_t nq = (size_t)sh->n * sh->heads * sh->hd, nk = (size_t)c->n_kv * sh->kv * sh->hd;
    c->q = rand_floats(nq, rng, -1, 1);
    c->kc = rand_floats(nk, rng, -1, 1);
    c->vc = rand_floats(nk, rng, -1, 1);
    /* row n_kv - 2 (or the last): past the causal end of every query row before it */
    size_t row = (size_t)(c->n_kv >= 2 ? c->n_kv - 2 : 0) * sh->kv * sh->hd;
    if (bad == FA_V_NAN)
        c->vc[row + 1] = NAN;
    if (bad == FA_V_INF)
        c->vc[row + (size_t)sh->hd * (sh->kv - 1)] = INFINITY; /* the last KV head */
    if (bad == FA_K_NAN)
        c->kc[row] = NAN;
    if (bad == FA_Q_NAN)
        c->q[nq / 2] = NAN;
}

static void fa_free(fa_case *c)
{
    free(c->q);
    free(c->kc);
    free(c->vc);
}

static kern_args fa_kq(const fa_case *c, float *y)
{
    const struct fa_shape *sh = c->sh;
    return (kern_args){.x = c->q,
                       .kc = c->kc,
                       .y = y,
                       .n = sh->n,
                       .n_head = sh->heads,
                       .n_head_kv = sh->kv,
                       .head_dim = sh->hd,
                       .n_kv = c->n_kv,
                       .pos0 = sh->pos0,
                       .scale = 1.0f / sqrtf((float)sh->hd)};
}

static kern_args fa_kqv(const fa_case *c, const float *p, float *y)
{
    const struct fa_shape *sh = c->sh;
    return (kern_args){.x = p,
                       .vc = c->vc,
                       .y = y,
                       .n = sh->n,
                       .n_head = sh->heads,
                       .n_head_kv = sh->kv,
                       .head_dim = sh->hd,
                       .n_kv = c->n_kv,
                       .pos0 = sh->pos0};
}

/* equal bits, or both zero (the fused form may turn -0 into +0) */
static int fa_same(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0 || (a == 0 && b == 0) || (isnan(a) && isnan(b));
}

/* A NaN in a query (every score of its row NaN) or in a key (one NaN
 * among the row's numbers) makes that row's weights and output NaN, in the
 * ops and in the fused form, as torch's attention does (attack 26, F1: a
 * row of NaN scores had weights 0, output 0, the NaN lost). p: the ops'
 * weights; want, got: the ops' and the fused output. */
static void fa_check_nan_row(const fa_case *c, int bad, const float *p, const float *want, const float *got)
{
    const struct fa_shape *sh = c->sh;
    int64_t hd = sh->hd, H = sh->heads, i, h;
    if (bad == FA_Q_NAN) { /* fa_make's q[nq / 2]: query i, head h */
        int64_t at = (int64_t)sh->n * H * hd / 2;
        i = at / (H * hd), h = (at / hd) % H;
    } else { /* key n_kv - 2 of KV head 0: the last query sees it, in head 0 */
        i = sh->n - 1, h = 0;
    }
    const float *pr = p + (h * sh->n + i) * c->n_kv;
    for (int64_t j = 0; j < c->n_kv; j++)
        if (!isnan(pr[j]))
            fail_msg("bad=%d n=%lld hd=%d: kq_soft[%lld, %lld, %lld] = %.9g, not NaN", bad, (long long)sh->n,
                     sh->hd, (long long)h, (long long)i, (long long)j, (double)pr[j]);
    for (int64_t d = 0; d < hd; d++) {
        int64_t at = (i * H + h) * hd + d;
        if (!isnan(want[at]) || !isnan(got[at]))
            fail_msg("bad=%d n=%lld hd=%d: kqv[%lld, %lld] = %.9g (ops), %.9g (fused), not NaN", bad,
                     (long long)sh->n, sh->hd, (long long)i, (long long)(h * hd + d), (double)want[at],
                     (double)got[at]);
    }
}

static void test_fused_same_bits(void **state)
{
    const test_state *ts = *state;
    uint64_t rng = 0xfa77;
    int nan_rows_seen = 0;
    for (size_t s = 0; s < sizeof fa_shapes / sizeof fa_shapes[0]; s++)
        for (int bad = 0; bad < FA_CASES; bad++) {
            fa_case c;
            fa_make(&c, &fa_shapes[s], bad, &rng);
            const struct fa_shape *sh = c.sh;
            size_t ns = (size_t)sh->heads * sh->n * c.n_kv, ny = (size_t)sh->n * sh->heads * sh->hd;
            float *sc = xmalloc(ns * sizeof *sc), *p = xmalloc(ns * sizeof *p);
            float *want = xmalloc(ny * sizeof *want), *got = xmalloc(ny * sizeof *got);
            for (int cfg = 0; cfg < N_CFG; cfg++) {
                kern_ctx ctx = cfg_ctx(ts, cfg);
                /* the three ops */
                kern_args a = fa_kq(&c, sc);
                assert_int_equal(kern_cpu_opt_kq(&ctx, &a), 0);
                kern_args sm = {.x = sc, .y = p, .n = (int64_t)sh->heads * sh->n, .m = c.n_kv};
                assert_int_equal(kern_cpu_opt_softmax(&ctx, &sm), 0);
                kern_args v = fa_kqv(&c, p, want);
                assert_int_equal(kern_cpu_opt_kqv(&ctx, &v), 0);
                /* fused, poisoned first */
                for (size_t i = 0; i < ny; i++)
                    got[i] = NAN;
                kern_args fk = fa_kq(&c, NULL), fv = fa_kqv(&c, NULL, got);
                size_t need = kern_cpu_attn_fused_scratch(&ctx, &fk);
                assert_true(need >= (size_t)c.n_kv * sizeof(float));
                ctx.scratch = xmalloc(need);
                ctx.scratch_size = need;
                assert_int_equal(kern_cpu_attn_fused(&ctx, &fk, &fv), 0);
                for (size_t i = 0; i < ny; i++)
                    if (!fa_same(got[i], want[i]))
                        fail_msg("n=%lld H=%d KV=%d hd=%d pos0=%d bad=%d cfg=%d: y[%zu] fused %.9g, ops %.9g",
                                 (long long)sh->n, sh->heads, sh->kv, sh->hd, sh->pos0, bad, cfg, i, got[i],
                                 want[i]);
                if (bad == FA_V_NAN || bad == FA_V_INF)
                    for (size_t i = 0; i < ny; i++)
                        nan_rows_seen += isnan(want[i]) && i < (size_t)sh->heads * sh->hd;
                if (bad == FA_Q_NAN || bad == FA_K_NAN)
                    fa_check_nan_row(&c, bad, p, want, got);
                free(ctx.scratch);
            }
            free(sc);
            free(p);
            free(want);
            free(got);
            fa_free(&c);
        }
    /* the planted values past the end did reach row 0 through 0 * NaN */
    assert_true(nan_rows_seen > 0);
}

static void test_fused_refuses(void **state)
{
    (void)state;
    uint64_t rng = 0xfa78;
    fa_case c;
    fa_make(&c, &fa_shapes[1], FA_NONE, &rng);
    float y[5 * 4 * 8];
    kern_ctx ctx = {.n_threads = 1};
    kern_args fk = fa_kq(&c, NULL), fv = fa_kqv(&c, NULL, y);
    size_t need = kern_cpu_attn_fused_scratch(&ctx, &fk);
    ctx.scratch = xmalloc(need);
    ctx.scratch_size = need - 1;
    assert_int_equal(kern_cpu_attn_fused(&ctx, &fk, &fv), -1); /* short scratch */
    ctx.scratch_size = need;
    fv.n_kv--;
    assert_int_equal(kern_cpu_attn_fused(&ctx, &fk, &fv), -1); /* kq and kqv disagree */
    fv.n_kv++;
    assert_int_equal(kern_cpu_attn_fused(&ctx, &fk, &fv), 0);
    free(ctx.scratch);
    fa_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fused_same_bits),
        cmocka_unit_test(test_fused_refuses),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
