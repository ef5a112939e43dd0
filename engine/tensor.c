#include "tensor.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tensor_stats(const float *x, size_t n, xf_stats *s)
{
    memset(s, 0, sizeof *s);
    s->n = (int64_t)n;
    double sum = 0, sum2 = 0;
    int64_t finite = 0;
    s->min = INFINITY;
    s->max = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        if (isnan(v)) {
            s->n_nan++;
            continue;
        }
        if (isinf(v)) {
            s->n_inf++;
            continue;
        }
        finite++;
        sum += v;
        if (v < s->min)
            s->min = v;
        if (v > s->max)
            s->max = v;
        if (fabs(v) > s->absmax)
            s->absmax = fabs(v);
    }
    if (finite == 0) {
        s->min = s->max = s->mean = s->std = NAN;
        return;
    }
    s->mean = sum / (double)finite;
    /* two passes: the one-pass formula loses digits when |mean| >> std */
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        if (isfinite(v))
            sum2 += (v - s->mean) * (v - s->mean);
    }
    s->std = sqrt(sum2 / (double)finite);
}

void tensor_diff(const float *a, const float *b, size_t n, double tol, xf_diff *d)
{
    memset(d, 0, sizeof *d);
    d->n = (int64_t)n;
    d->first_over = -1;
    d->worst = -1;
    d->tol = tol;
    double worst = 0;
    bool worst_nonfinite = false;
    double se = 0, sb = 0, ab = 0, aa = 0;
    for (size_t i = 0; i < n; i++) {
        double x = a[i], y = b[i];
        d->nan_a += isnan(x);
        d->nan_b += isnan(y);
        d->inf_a += isinf(x);
        d->inf_b += isinf(y);
        if (!isfinite(x) || !isfinite(y)) {
            if (!(isinf(x) && x == y)) {
                d->mismatch_nonfinite++;
                d->n_over++;
                if (d->first_over < 0)
                    d->first_over = (int64_t)i;
                if (!worst_nonfinite) {
                    worst_nonfinite = true;
                    d->worst = (int64_t)i;
                }
            }
            continue;
        }
        double e = fabs(x - y);
        if (e > d->max_abs)
            d->max_abs = e;
        if (e > worst && !worst_nonfinite) {
            worst = e;
            d->worst = (int64_t)i;
        }
        double r = e / fmax(fabs(y), 1e-30);
        if (e == 0)
            r = 0;
        if (r > d->max_rel)
            d->max_rel = r;
        if (fabs(y) > d->ref_absmax)
            d->ref_absmax = fabs(y);
        if (e > tol) {
            d->n_over++;
            if (d->first_over < 0)
                d->first_over = (int64_t)i;
        }
        se += e * e;
        sb += y * y;
        ab += x * y;
        aa += x * x;
    }
    d->nmse = sb > 0 ? se / sb : (se > 0 ? INFINITY : 0);
    d->cosine = (aa > 0 && sb > 0) ? ab / sqrt(aa * sb) : (aa == sb ? 1.0 : 0.0);
    if (d->mismatch_nonfinite) {
        /* figures of the pairs both finite (none at all when B is all NaN) would
         * read as a match: 0, 0, cosine 1 */
        d->max_abs = d->max_rel = d->nmse = d->cosine = NAN;
    }
}

void tensor_diff_rel(const float *a, const float *b, size_t n, double tol_rel, xf_diff *d)
{
    double m = 0;
    bool any = false;
    for (size_t i = 0; i < n; i++)
        if (isfinite(b[i])) {
            any = true;
            if (fabs(b[i]) > m)
                m = fabs(b[i]);
        }
    /* no finite B: a tolerance relative to nothing is not 0 but unknown */
    tensor_diff(a, b, n, any || n == 0 ? tol_rel * m : NAN, d);
}

static size_t argmax(const float *x, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

double tensor_top1_agree(const float *a, const float *b, size_t rows, size_t row)
{
    if (rows == 0 || row == 0)
        return 1.0;
    size_t same = 0;
    for (size_t r = 0; r < rows; r++)
        same += argmax(a + r * row, row) == argmax(b + r * row, row);
    return (double)same / (double)rows;
}

/* --- slices --------------------------------------------------------------- */

static void skip_ws(const char **p)
{
    while (**p == ' ' || **p == '\t')
        (*p)++;
}

/* The slice as messages quote it: control bytes (a tab too) as \xNN, at
 * most 64 bytes of it, so that an error about a typed or scripted slice
 * puts nothing raw on the terminal. */
static const char *slice_quote(const char *text, char *buf, size_t size)
{
    size_t o = 0;
    for (size_t i = 0; text[i] && o + 8 < size; i++) {
        unsigned char c = (unsigned char)text[i];
        if (i == 64) {
            o += (size_t)snprintf(buf + o, size - o, "...");
            break;
        }
        if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(buf + o, size - o, "\\x%02x", c);
        else
            buf[o++] = (char)c;
    }
    buf[o] = '\0';
    return buf;
}

static int parse_int(const char **p, int64_t *v, const char *text, xf_err *err)
{
    char q[300];
    const char *s = *p;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (end == s || (!isdigit((unsigned char)*s) && *s != '-' && *s != '+'))
        return xf_err_set(err, "slice '%s': expected a number at column %d", slice_quote(text, q, sizeof q), (int)(s - text) + 1);
    if (errno == ERANGE)
        return xf_err_set(err, "slice '%s': number out of range at column %d", slice_quote(text, q, sizeof q), (int)(s - text) + 1);
    *v = x;
    *p = end;
    return 0;
}

int tensor_slice_parse(const char *text, xf_slice *sl, xf_err *err)
{
    char q[300];
    memset(sl, 0, sizeof *sl);
    const char *p = text;
    skip_ws(&p);
    if (*p == '\0')
        return 0;
    if (*p != '[')
        return xf_err_set(err, "slice '%s': expected '[' at column %d", slice_quote(text, q, sizeof q), (int)(p - text) + 1);
    p++;
    for (;;) {
        skip_ws(&p);
        if (sl->ndim == XF_MAX_DIMS)
            return xf_err_set(err, "slice '%s': more than %d dimensions", slice_quote(text, q, sizeof q), XF_MAX_DIMS);
        xf_slice_dim *d = &sl->d[sl->ndim];
        /* [start][:[stop][:step]] */
        int64_t v;
        bool have_first = false;
        if (*p != ':' && *p != ',' && *p != ']') {
            if (parse_int(&p, &v, text, err) != 0)
                return -1;
            d->start = v;
            d->has_start = true;
            have_first = true;
        }
        skip_ws(&p);
        if (*p == ':') {
            p++;
            skip_ws(&p);
            if (*p != ':' && *p != ',' && *p != ']') {
                if (parse_int(&p, &v, text, err) != 0)
                    return -1;
                d->stop = v;
                d->has_stop = true;
            }
            skip_ws(&p);
            if (*p == ':') {
                p++;
                skip_ws(&p);
                if (*p != ',' && *p != ']') {
                    if (parse_int(&p, &v, text, err) != 0)
                        return -1;
                    if (v == 0)
                        return xf_err_set(err, "slice '%s': step 0 at column %d", slice_quote(text, q, sizeof q), (int)(p - text));
                    d->step = v;
                    d->has_step = true;
                }
            }
        } else if (have_first) {
            d->is_index = true;
        } else {
            return xf_err_set(err, "slice '%s': empty entry at column %d", slice_quote(text, q, sizeof q), (int)(p - text) + 1);
        }
        sl->ndim++;
        skip_ws(&p);
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == ']') {
            p++;
            break;
        }
        return xf_err_set(err, "slice '%s': expected ',' or ']' at column %d", slice_quote(text, q, sizeof q), (int)(p - text) + 1);
    }
    skip_ws(&p);
    if (*p != '\0')
        return xf_err_set(err, "slice '%s': unexpected text at column %d", slice_quote(text, q, sizeof q), (int)(p - text) + 1);
    return 0;
}

int tensor_slice_resolve(const xf_slice *sl, int ndim, const int64_t *shape, xf_selection *sel, xf_err *err)
{
    memset(sel, 0, sizeof *sel);
    if (sl->ndim > ndim)
        return xf_err_set(err, "slice has %d entries but the tensor has %d dimensions", sl->ndim, ndim);
    sel->ndim = ndim;
    sel->count = 1;
    for (int i = 0; i < ndim; i++) {
        int64_t n = shape[i];
        sel->shape[i] = n;
        const xf_slice_dim *d = i < sl->ndim ? &sl->d[i] : NULL;
        if (d && d->is_index) {
            int64_t k = d->start < 0 ? d->start + n : d->start;
            if (k < 0 || k >= n)
                return xf_err_set(err, "index %lld out of range for dimension %d of size %lld", (long long)d->start,
                                  i, (long long)n);
            sel->start[i] = k;
            sel->step[i] = 1;
            sel->cnt[i] = 1;
            continue;
        }
        int64_t step = d && d->has_step ? d->step : 1;
        int64_t start, stop;
        /* python semantics: clamp, negative counts from the end */
        if (step > 0) {
            start = d && d->has_start ? d->start : 0;
            stop = d && d->has_stop ? d->stop : n;
            if (start < 0)
                start += n;
            if (stop < 0)
                stop += n;
            start = start < 0 ? 0 : (start > n ? n : start);
            stop = stop < 0 ? 0 : (stop > n ? n : stop);
            sel->cnt[i] = stop > start ? 1 + (stop - start - 1) / step : 0; /* no overflow for huge steps */
        } else {
            start = d && d->has_start ? d->start : n - 1;
            stop = d && d->has_stop ? d->stop : -n - 1;
            if (start < 0)
                start += n;
            if (stop < 0)
                stop += n;
            start = start < -1 ? -1 : (start > n - 1 ? n - 1 : start);
            stop = stop < -1 ? -1 : (stop > n - 1 ? n - 1 : stop);
            sel->cnt[i] = start > stop ? 1 + (int64_t)((uint64_t)(start - stop - 1) / (0 - (uint64_t)step)) : 0;
        }
        sel->start[i] = start;
        sel->step[i] = step;
        sel->out_shape[sel->out_ndim++] = sel->cnt[i];
    }
    for (int i = 0; i < ndim; i++)
        sel->count *= sel->cnt[i];
    return 0;
}

int64_t tensor_selection_index(const xf_selection *sel, int64_t k)
{
    int64_t idx = 0, mul = 1;
    for (int i = sel->ndim - 1; i >= 0; i--) {
        int64_t c = sel->cnt[i] ? k % sel->cnt[i] : 0;
        k = sel->cnt[i] ? k / sel->cnt[i] : 0;
        idx += (sel->start[i] + c * sel->step[i]) * mul;
        mul *= sel->shape[i];
    }
    return idx;
}

void tensor_unravel(int64_t flat, int ndim, const int64_t *shape, int64_t *idx)
{
    for (int i = ndim - 1; i >= 0; i--) {
        idx[i] = shape[i] > 0 ? flat % shape[i] : 0;
        flat = shape[i] > 0 ? flat / shape[i] : 0;
    }
}

/* the error of element i for ranking: a NaN/Inf mismatch above every finite error */
static double err_rank(const float *a, const float *b, int64_t i)
{
    double x = a[i], y = b[i];
    if (!isfinite(x) || !isfinite(y))
        return isinf(x) && x == y ? 0 : INFINITY;
    return fabs(x - y);
}

int64_t tensor_worst(const float *a, const float *b, int64_t count, int64_t *out, int64_t n)
{
    /* insertion into a short sorted list: n is what a person reads (a few
     * dozen), count may be millions */
    int64_t k = 0;
    for (int64_t i = 0; i < count && n > 0; i++) {
        double e = err_rank(a, b, i);
        if (e == 0 || (k == n && e <= err_rank(a, b, out[k - 1])))
            continue;
        int64_t j = k < n ? k++ : n - 1;
        while (j > 0 && err_rank(a, b, out[j - 1]) < e) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = i;
    }
    return k;
}

void tensor_shape_str(int ndim, const int64_t *shape, char *buf, size_t size)
{
    size_t j = 0;
    j += (size_t)snprintf(buf + j, size - j, "[");
    for (int i = 0; i < ndim && j < size; i++)
        j += (size_t)snprintf(buf + j, size - j, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (j < size)
        snprintf(buf + j, size - j, "]");
}

bool tensor_shape_same(int nda, const int64_t *a, int ndb, const int64_t *b)
{
    int i = 0, j = 0;
    for (;;) {
        while (i < nda && a[i] == 1)
            i++;
        while (j < ndb && b[j] == 1)
            j++;
        if (i == nda || j == ndb)
            return i == nda && j == ndb;
        if (a[i++] != b[j++])
            return false;
    }
}
