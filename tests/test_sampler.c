/* Sampler tests: greedy is argmax (lowest id on ties), seeds reproduce,
 * top-k 1 and a tiny top-p are greedy, parameter and logit errors, and the
 * drawn frequencies match softmax / top-k / top-p distributions computed
 * here independently (chi-square with a fixed seed, plus a check that the
 * same statistic rejects a wrong distribution). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "sampler.h"
#include "testutil.h"

static xf_sampler *mk(float temp, int top_k, float top_p, uint64_t seed)
{
    samp_params p = {temp, top_k, top_p, seed};
    xf_err err = {{0}};
    xf_sampler *s = samp_new(&p, &err);
    if (!s)
        fail_msg("%s", err.msg);
    return s;
}

static int32_t argmax(const float *x, int n)
{
    int32_t b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

static int32_t draw(xf_sampler *s, const float *x, int n)
{
    xf_err err = {{0}};
    int32_t id = samp_sample(s, x, n, &err);
    if (id < 0)
        fail_msg("%s", err.msg);
    return id;
}

static void test_greedy(void **state)
{
    (void)state;
    uint64_t rs = 0x1234;
    enum { N = 1000 };
    float x[N];
    xf_sampler *s = mk(0.0f, 0, 1.0f, 7);
    for (int t = 0; t < 20; t++) {
        tu_fill_random(x, N, &rs, -10.0f, 10.0f);
        assert_int_equal(draw(s, x, N), argmax(x, N));
    }
    /* ties: the lowest id wins */
    float tie[6] = {1.0f, 3.0f, 2.0f, 3.0f, -INFINITY, 3.0f};
    assert_int_equal(draw(s, tie, 6), 1);
    float neg[3] = {-INFINITY, -5.0f, -INFINITY};
    assert_int_equal(draw(s, neg, 3), 1);
    samp_free(s);
}

static void test_same_seed(void **state)
{
    (void)state;
    uint64_t rs = 0x777;
    enum { N = 500, T = 300 };
    float x[N];
    tu_fill_random(x, N, &rs, -3.0f, 3.0f);
    xf_sampler *a = mk(1.0f, 40, 0.95f, 42), *b = mk(1.0f, 40, 0.95f, 42), *c = mk(1.0f, 40, 0.95f, 43);
    int32_t first[T];
    int differ = 0, distinct = 0;
    for (int t = 0; t < T; t++) {
        int32_t ia = draw(a, x, N), ib = draw(b, x, N), ic = draw(c, x, N);
        assert_int_equal(ia, ib);
        differ += ia != ic;
        first[t] = ia;
        distinct += t > 0 && ia != first[t - 1];
    }
    assert_true(differ > T / 4); /* another seed, other draws */
    assert_true(distinct > T / 4); /* it does sample */
    /* re-seeding through set_params restarts the sequence */
    samp_params p = *samp_get_params(a);
    xf_err err = {{0}};
    assert_int_equal(samp_set_params(a, &p, &err), 0);
    for (int t = 0; t < T; t++)
        assert_int_equal(draw(a, x, N), first[t]);
    samp_free(a);
    samp_free(b);
    samp_free(c);
}

static void test_topk1_tiny_topp_are_greedy(void **state)
{
    (void)state;
    uint64_t rs = 0x99;
    enum { N = 3000 };
    float *x = malloc(N * sizeof *x);
    xf_sampler *k1 = mk(1.5f, 1, 1.0f, 1), *p0 = mk(1.5f, 0, 1e-6f, 2), *both = mk(0.3f, 5, 1e-6f, 3);
    for (int t = 0; t < 30; t++) {
        tu_fill_random(x, N, &rs, -8.0f, 8.0f);
        if (t % 3 == 0) /* a tie at the top: lowest id */
            x[N - 1] = x[argmax(x, N)];
        if (t % 3 == 1) {
            int32_t m = argmax(x, N);
            x[0] = x[m];
        }
        int32_t g = argmax(x, N);
        assert_int_equal(draw(k1, x, N), g);
        assert_int_equal(draw(p0, x, N), g);
        assert_int_equal(draw(both, x, N), g);
    }
    free(x);
    samp_free(k1);
    samp_free(p0);
    samp_free(both);
}

static void expect_param_error(float temp, int top_k, float top_p, const char *want)
{
    samp_params p = {temp, top_k, top_p, 0};
    xf_err err = {{0}};
    assert_null(samp_new(&p, &err));
    if (!strstr(err.msg, want))
        fail_msg("error \"%s\" does not name \"%s\"", err.msg, want);
}

static void test_errors(void **state)
{
    (void)state;
    expect_param_error(-0.5f, 0, 1.0f, "temperature");
    expect_param_error(NAN, 0, 1.0f, "temperature");
    expect_param_error(1.0f, -1, 1.0f, "top_k -1");
    expect_param_error(1.0f, 0, 0.0f, "top_p 0");
    expect_param_error(1.0f, 0, 1.5f, "top_p 1.5");
    expect_param_error(1.0f, 0, NAN, "top_p");
    samp_params d = samp_default_params();
    xf_err err = {{0}};
    assert_int_equal(samp_check_params(&d, &err), 0);
    assert_true(d.temperature == 0.0f);

    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    xf_sampler *g = mk(0.0f, 0, 1.0f, 0), *s = mk(1.0f, 3, 0.9f, 0);
    xf_sampler *both[2] = {g, s};
    for (int k = 0; k < 2; k++) {
        x[5] = NAN;
        assert_int_equal(samp_sample(both[k], x, 8, &err), -1);
        assert_non_null(strstr(err.msg, "logits[5] is NaN"));
        x[5] = INFINITY;
        assert_int_equal(samp_sample(both[k], x, 8, &err), -1);
        assert_non_null(strstr(err.msg, "logits[5] is +Inf"));
        x[5] = 6;
        assert_int_equal(samp_sample(both[k], x, 0, &err), -1);
        float ninf[2] = {-INFINITY, -INFINITY};
        assert_int_equal(samp_sample(both[k], ninf, 2, &err), -1);
        assert_non_null(strstr(err.msg, "-Inf"));
    }
    assert_int_equal(samp_set_params(s, &(samp_params){1.0f, 0, 2.0f, 0}, &err), -1);
    samp_free(g);
    samp_free(s);
}

/* chi-square of counts against probabilities (cells with p == 0 must be empty) */
static double chi2(const int *count, const double *p, int n, int draws)
{
    double c = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] == 0) {
            if (count[i] != 0)
                return INFINITY;
            continue;
        }
        double e = p[i] * draws, d = count[i] - e;
        c += d * d / e;
    }
    return c;
}

/* the expected distribution, computed the textbook way in the test */
static void expected(const float *x, int n, double temp, int top_k, double top_p, double *p)
{
    int order[16];
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = 0; i < n; i++) /* selection sort: logit desc, id asc */
        for (int j = i + 1; j < n; j++)
            if (x[order[j]] > x[order[i]] || (x[order[j]] == x[order[i]] && order[j] < order[i])) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
    int k = top_k > 0 && top_k < n ? top_k : n;
    double z = 0, w[16];
    for (int i = 0; i < k; i++)
        z += w[i] = exp(x[order[i]] / temp);
    int keep = k;
    double cum = 0;
    for (int i = 0; i < k; i++) {
        cum += w[i] / z;
        if (cum >= top_p) {
            keep = i + 1;
            break;
        }
    }
    double zk = 0;
    for (int i = 0; i < keep; i++)
        zk += w[i];
    for (int i = 0; i < n; i++)
        p[i] = 0;
    for (int i = 0; i < keep; i++)
        p[order[i]] = w[i] / zk;
}

/* 99.9% quantiles of chi-square with df degrees of freedom, df = 1..7 */
static const double k_chi2_999[] = {0, 10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32};

static void check_distribution(const float *x, int n, float temp, int top_k, float top_p, uint64_t seed)
{
    enum { DRAWS = 60000 };
    int count[16] = {0};
    xf_sampler *s = mk(temp, top_k, top_p, seed);
    for (int t = 0; t < DRAWS; t++)
        count[draw(s, x, n)]++;
    samp_free(s);
    double p[16];
    expected(x, n, temp, top_k, top_p, p);
    int df = -1;
    for (int i = 0; i < n; i++)
        df += p[i] > 0;
    double c = chi2(count, p, n, DRAWS);
    print_message("T=%.2f k=%d p=%.2f: chi2 %.2f (df %d, limit %.2f)\n", (double)temp, top_k, (double)top_p, c, df,
                  k_chi2_999[df]);
    assert_true(df >= 1 && df <= 7);
    assert_true(c < k_chi2_999[df]);
    /* the same counts must reject a nearby wrong distribution: the statistic has power */
    double q[16];
    expected(x, n, temp * 1.15, top_k, top_p, q);
    assert_true(chi2(count, q, n, DRAWS) > k_chi2_999[df]);
}

static void test_distribution(void **state)
{
    (void)state;
    const float x[8] = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f, 2.0f, 0.0f, -INFINITY};
    check_distribution(x, 8, 0.7f, 0, 1.0f, 11);  /* plain softmax; -Inf never drawn */
    check_distribution(x, 8, 1.3f, 4, 1.0f, 12);  /* top-k, with the tie 1/5 inside */
    check_distribution(x, 8, 1.0f, 0, 0.75f, 13); /* nucleus */
    check_distribution(x, 8, 2.0f, 5, 0.8f, 14);  /* top-k then nucleus over it */
}

/* the nucleus of a large vocabulary: nearly flat (it spans most ids) and
 * spread out (the sampler only sorts the head), and where it is cut */
static void large_nucleus(double scale, float top_p)
{
    enum { N = 20000 };
    float *x = malloc(N * sizeof *x);
    /* logits are a permutation of 0..N-1, scaled: id i holds value (i * 7919) % N */
    for (int i = 0; i < N; i++)
        x[i] = (float)(((i * 7919) % N) * scale);
    xf_sampler *s = mk(1.0f, 0, top_p, 5);
    double z = 0;
    for (int v = 0; v < N; v++)
        z += exp((v - (N - 1)) * scale);
    /* the smallest value kept: walk down from the top until top_p of the mass */
    double cum = 0;
    int lo = N;
    while (cum < top_p * z)
        cum += exp((--lo - (N - 1)) * scale);
    int min_v = N;
    for (int t = 0; t < 300; t++) {
        int32_t id = draw(s, x, N);
        int v = (int)((id * 7919) % N);
        assert_true(v >= lo - 1); /* float vs double rounding at the cut */
        if (v < min_v)
            min_v = v;
    }
    /* and it reaches down into the nucleus, not just its top */
    assert_true(min_v < lo + (N - lo) / 4);
    samp_free(s);
    free(x);
}

static void test_large_nucleus(void **state)
{
    (void)state;
    large_nucleus(1e-4, 0.5f);
    large_nucleus(1e-3, 0.9f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy),       cmocka_unit_test(test_same_seed),
        cmocka_unit_test(test_topk1_tiny_topp_are_greedy),
        cmocka_unit_test(test_errors),       cmocka_unit_test(test_distribution),
        cmocka_unit_test(test_large_nucleus),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
