/* sampler: greedy / temperature / top-k / top-p. See sampler.h. */
#include "sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

typedef struct samp_cand {
    float logit;
    int32_t id;
} samp_cand;

struct xf_sampler {
    samp_params p;
    uint64_t rng[4];   /* xoshiro256** state */
    samp_cand *cand;   /* [cap] candidates of the current call */
    size_t cap;
    double *w;         /* [cap] unnormalized probabilities, in cand order */
};

samp_params samp_default_params(void)
{
    samp_params p = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f, .seed = 0};
    return p;
}

int samp_check_params(const samp_params *p, xf_err *err)
{
    if (!(p->temperature >= 0.0f) || isinf(p->temperature))
        return xf_err_set(err, "sampler: temperature %g must be a finite number >= 0", (double)p->temperature);
    if (p->top_k < 0)
        return xf_err_set(err, "sampler: top_k %d must be >= 0 (0 turns it off)", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return xf_err_set(err, "sampler: top_p %g must be in (0, 1]", (double)p->top_p);
    return 0;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void rng_seed(xf_sampler *s, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(xf_sampler *s)
{
    uint64_t *r = s->rng;
    uint64_t out = rotl(r[1] * 5, 7) * 9;
    uint64_t t = r[1] << 17;
    r[2] ^= r[0];
    r[3] ^= r[1];
    r[1] ^= r[2];
    r[0] ^= r[3];
    r[2] ^= t;
    r[3] = rotl(r[3], 45);
    return out;
}

/* uniform in [0, 1) with 53 random bits */
static double rng_uniform(xf_sampler *s) { return (double)(rng_next(s) >> 11) * 0x1.0p-53; }

xf_sampler *samp_new(const samp_params *p, xf_err *err)
{
    if (samp_check_params(p, err))
        return NULL;
    xf_sampler *s = calloc(1, sizeof *s);
    if (!s) {
        xf_err_set(err, "sampler: out of memory");
        return NULL;
    }
    s->p = *p;
    rng_seed(s, p->seed);
    return s;
}

void samp_free(xf_sampler *s)
{
    if (!s)
        return;
    free(s->cand);
    free(s->w);
    free(s);
}

int samp_set_params(xf_sampler *s, const samp_params *p, xf_err *err)
{
    if (samp_check_params(p, err))
        return -1;
    s->p = *p;
    rng_seed(s, p->seed);
    return 0;
}

const samp_params *samp_get_params(const xf_sampler *s) { return &s->p; }

/* a ranks before b: larger logit, then smaller id */
static inline bool cand_before(const samp_cand *a, const samp_cand *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_cand(const void *pa, const void *pb)
{
    const samp_cand *a = pa, *b = pb;
    if (cand_before(a, b))
        return -1;
    return cand_before(b, a) ? 1 : 0;
}

/* Moves the m best of c[0..n) to c[0..m), sorted best first (m <= n).
 * A heap whose root is the worst kept candidate: O(n log m). */
static void select_top(samp_cand *c, size_t n, size_t m)
{
    if (m == 0)
        return;
    if (m < n) {
        /* heap over c[0..m): children are "better or equal" than parents */
        for (size_t k = m / 2; k-- > 0;) {
            size_t i = k;
            for (;;) {
                size_t l = 2 * i + 1, w = i;
                if (l < m && cand_before(&c[w], &c[l]))
                    w = l;
                if (l + 1 < m && cand_before(&c[w], &c[l + 1]))
                    w = l + 1;
                if (w == i)
                    break;
                samp_cand t = c[i];
                c[i] = c[w];
                c[w] = t;
                i = w;
            }
        }
        for (size_t j = m; j < n; j++) {
            if (!cand_before(&c[j], &c[0]))
                continue;
            samp_cand t = c[0];
            c[0] = c[j];
            c[j] = t;
            size_t i = 0;
            for (;;) {
                size_t l = 2 * i + 1, w = i;
                if (l < m && cand_before(&c[w], &c[l]))
                    w = l;
                if (l + 1 < m && cand_before(&c[w], &c[l + 1]))
                    w = l + 1;
                if (w == i)
                    break;
                samp_cand u = c[i];
                c[i] = c[w];
                c[w] = u;
                i = w;
            }
        }
    }
    qsort(c, m, sizeof *c, cmp_cand);
}

/* The smallest prefix of the sorted c[0..n) whose mass reaches target; 0 if none does. */
static size_t nucleus_size(const samp_cand *c, size_t n, double mx, double inv_t, double target)
{
    double cum = 0;
    for (size_t i = 0; i < n; i++) {
        cum += exp(((double)c[i].logit - mx) * inv_t);
        if (cum >= target)
            return i + 1;
    }
    return 0;
}

static int reserve(xf_sampler *s, size_t n, xf_err *err)
{
    if (n <= s->cap)
        return 0;
    samp_cand *c = realloc(s->cand, n * sizeof *c);
    if (c)
        s->cand = c;
    double *w = realloc(s->w, n * sizeof *w);
    if (w)
        s->w = w;
    if (!c || !w)
        return xf_err_set(err, "sampler: out of memory for %zu candidates", n);
    s->cap = n;
    return 0;
}

int32_t samp_sample(xf_sampler *s, const float *logits, int n_vocab, xf_err *err)
{
    if (!logits || n_vocab <= 0) {
        xf_err_set(err, "sampler: no logits (n_vocab %d)", n_vocab);
        return -1;
    }
    int32_t best = -1;
    for (int i = 0; i < n_vocab; i++) {
        float v = logits[i];
        if (isnan(v) || (isinf(v) && v > 0)) {
            xf_err_set(err, "sampler: logits[%d] is %s", i, isnan(v) ? "NaN" : "+Inf");
            return -1;
        }
        if (v > -INFINITY && (best < 0 || v > logits[best]))
            best = i; /* strict >: the lowest id wins a tie */
    }
    if (best < 0) {
        xf_err_set(err, "sampler: all %d logits are -Inf", n_vocab);
        return -1;
    }
    if (s->p.temperature == 0.0f)
        return best;

    if (reserve(s, (size_t)n_vocab, err))
        return -1;
    samp_cand *c = s->cand;
    size_t n = 0;
    for (int i = 0; i < n_vocab; i++)
        if (logits[i] > -INFINITY)
            c[n++] = (samp_cand){logits[i], i};

    bool sorted = false;
    if (s->p.top_k > 0 && (size_t)s->p.top_k < n) {
        select_top(c, n, (size_t)s->p.top_k);
        n = (size_t)s->p.top_k;
        sorted = true;
    }

    /* softmax numerators in double, relative to the largest logit */
    double inv_t = 1.0 / (double)s->p.temperature, mx = logits[best], z = 0;
    for (size_t i = 0; i < n; i++)
        z += exp(((double)c[i].logit - mx) * inv_t);

    if (s->p.top_p < 1.0f) {
        double target = (double)s->p.top_p * z;
        size_t m = n;
        if (!sorted) {
            /* only the head of the distribution can be the nucleus: keep the
             * candidates within L temperature units of the top, widening L
             * until they hold enough mass, and sort just those */
            static const double widths[] = {4, 8, 16, 32};
            for (size_t k = 0; k < sizeof widths / sizeof *widths; k++) {
                float thr = (float)(mx - widths[k] * (double)s->p.temperature);
                size_t j = 0;
                double mass = 0;
                for (size_t i = 0; i < n; i++) {
                    if (c[i].logit >= thr) {
                        samp_cand t = c[i];
                        c[i] = c[j];
                        c[j++] = t;
                        mass += exp(((double)t.logit - mx) * inv_t);
                    }
                }
                if (mass >= target) {
                    m = j;
                    break;
                }
            }
            qsort(c, m, sizeof *c, cmp_cand);
        }
        size_t keep = nucleus_size(c, m, mx, inv_t, target);
        if (keep == 0 && m < n) {
            /* summation order left the head a rounding error short: sort all */
            qsort(c, n, sizeof *c, cmp_cand);
            keep = nucleus_size(c, n, mx, inv_t, target);
        }
        n = keep ? keep : n; /* 0: rounding kept cum just under top_p * z */
    }

    double tot = 0;
    for (size_t i = 0; i < n; i++) {
        s->w[i] = exp(((double)c[i].logit - mx) * inv_t);
        tot += s->w[i];
    }
    double u = rng_uniform(s) * tot, cum = 0;
    for (size_t i = 0; i < n; i++) {
        cum += s->w[i];
        if (u < cum)
            return c[i].id;
    }
    return c[n - 1].id; /* u fell past the sum by rounding */
}
