/* tokenizer_text: text around the tokens: a streaming decoder that hands
 * out only whole UTF-8 characters (U+FFFD for ill-formed bytes), and the
 * escaping of pieces for a terminal and its inverse. */
#include "tokenizer_internal.h"

#include "utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ streaming */

struct tok_stream {
    const xf_tokenizer *t;
    uint8_t hold[4]; /* a valid but unfinished character, waiting */
    size_t n_hold;
    uint8_t *in;     /* hold + piece */
    size_t in_cap;
    char *out;       /* what the last call returned */
    size_t out_cap;
};

tok_stream *tok_stream_new(const xf_tokenizer *t, xf_err *err)
{
    tok_stream *s = calloc(1, sizeof *s);
    if (!s) {
        xf_err_set(err, "tokenizer: out of memory");
        return NULL;
    }
    s->t = t;
    return s;
}

void tok_stream_free(tok_stream *s)
{
    if (!s)
        return;
    free(s->in);
    free(s->out);
    free(s);
}

size_t tok_stream_pending(const tok_stream *s) { return s->n_hold; }

static int stream_reserve(tok_stream *s, size_t n_in, xf_err *err)
{
    /* each input byte becomes at most 3 output bytes (one U+FFFD) */
    size_t need_out;
    if (!xf_mul_size(n_in, 3, &need_out) || !xf_add_size(need_out, 1, &need_out))
        return xf_err_set(err, "tokenizer: piece too long");
    if (n_in > s->in_cap) {
        uint8_t *p = realloc(s->in, n_in);
        if (!p)
            return xf_err_set(err, "tokenizer: out of memory");
        s->in = p;
        s->in_cap = n_in;
    }
    if (need_out > s->out_cap) {
        char *p = realloc(s->out, need_out);
        if (!p)
            return xf_err_set(err, "tokenizer: out of memory");
        s->out = p;
        s->out_cap = need_out;
    }
    return 0;
}

int tok_stream_push(tok_stream *s, int32_t id, const char **out, size_t *out_len, bool *replaced, xf_err *err)
{
    size_t pl;
    const char *piece = tok_piece(s->t, id, &pl);
    if (!piece)
        return xf_err_set(err, "tokenizer: id %d is outside the vocabulary (%d tokens)", id, s->t->n_vocab);
    size_t n = s->n_hold + pl;
    if (stream_reserve(s, n, err))
        return -1;
    memcpy(s->in, s->hold, s->n_hold);
    memcpy(s->in + s->n_hold, piece, pl);
    s->n_hold = 0;
    size_t i = 0, o = 0;
    bool rep = false;
    while (i < n) {
        size_t l;
        int r = utf8_step(s->in + i, n - i, &l);
        if (r == 1) {
            memcpy(s->out + o, s->in + i, l);
            o += l;
        } else if (r == 0) {
            memcpy(s->hold, s->in + i, l); /* l <= 3: wait for the rest */
            s->n_hold = l;
        } else {
            o += utf8_put(0xFFFD, s->out + o);
            rep = true;
        }
        i += l;
    }
    s->out[o] = 0;
    *out = s->out;
    *out_len = o;
    if (replaced)
        *replaced = rep;
    return 0;
}

int tok_stream_flush(tok_stream *s, const char **out, size_t *out_len, bool *replaced, xf_err *err)
{
    if (stream_reserve(s, 4, err))
        return -1;
    size_t o = 0;
    /* what is held is one unfinished character: one U+FFFD */
    if (s->n_hold > 0)
        o = utf8_put(0xFFFD, s->out);
    if (replaced)
        *replaced = s->n_hold > 0;
    s->n_hold = 0;
    s->out[o] = 0;
    *out = s->out;
    *out_len = o;
    return 0;
}

/* ------------------------------------------------------------- escaping */

size_t tok_escape(const char *s, size_t len, char *buf, size_t cap)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t need = 0, w = 0, i = 0;
    bool full = cap == 0;
    while (i < len) {
        char tmp[16];
        size_t tl = 0, l;
        int r = utf8_step(p + i, len - i, &l);
        if (r == 1 && l == 1) {
            uint8_t ch = p[i];
            if (ch == '\n')
                tl = (size_t)snprintf(tmp, sizeof tmp, "\\n");
            else if (ch == '\t')
                tl = (size_t)snprintf(tmp, sizeof tmp, "\\t");
            else if (ch == '\\')
                tl = (size_t)snprintf(tmp, sizeof tmp, "\\\\");
            else if (ch < 0x20 || ch == 0x7F)
                tl = (size_t)snprintf(tmp, sizeof tmp, "\\x%02X", ch);
            else
                tmp[tl++] = (char)ch;
        } else if (r == 1) {
            uint32_t cp = utf8_cp(p + i, l);
            if (cp >= 0x80 && cp <= 0x9F) /* C1 controls (U+009B is a terminal CSI) */
                tl = (size_t)snprintf(tmp, sizeof tmp, "\\x%02X\\x%02X", p[i], p[i + 1]);
            else {
                memcpy(tmp, p + i, l);
                tl = l;
            }
        } else {
            for (size_t k = 0; k < l; k++)
                tl += (size_t)snprintf(tmp + tl, sizeof tmp - tl, "\\x%02X", p[i + k]);
        }
        if (!full && w + tl + 1 <= cap) {
            memcpy(buf + w, tmp, tl);
            w += tl;
        } else {
            full = true;
        }
        need += tl;
        i += l;
    }
    if (cap > 0)
        buf[w] = 0;
    return need;
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* k hex digits at s, or -1 */
static long hex_n(const char *s, int k)
{
    long v = 0;
    for (int i = 0; i < k; i++) {
        int h = hex_val(s[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

int tok_unescape(const char *in, char **out, size_t *out_len, xf_err *err)
{
    *out = NULL;
    *out_len = 0;
    size_t n = strlen(in);
    /* escapes never make text longer (\UXXXXXXXX: 10 chars -> 4 bytes) */
    char *o = malloc(n + 1);
    if (!o)
        return xf_err_set(err, "unescape: out of memory");
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] != '\\') {
            o[w++] = in[i];
            continue;
        }
        size_t at = i;
        char e = in[i + 1];
        char c = 0;
        switch (e) {
        case 'n': c = '\n'; break;
        case 't': c = '\t'; break;
        case 'r': c = '\r'; break;
        case '0': c = '\0'; break;
        case '\\': c = '\\'; break;
        case '"': c = '"'; break;
        case '\'': c = '\''; break;
        case 'a': c = '\a'; break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'v': c = '\v'; break;
        case 'e': c = 0x1B; break;
        case 'x': {
            long v = n - i >= 4 ? hex_n(in + i + 2, 2) : -1;
            if (v < 0) {
                free(o);
                return xf_err_set(err, "escape \\x at position %zu needs two hex digits", at);
            }
            o[w++] = (char)v;
            i += 3;
            continue;
        }
        case 'u':
        case 'U': {
            int k = e == 'u' ? 4 : 8;
            long v = n - i >= (size_t)k + 2 ? hex_n(in + i + 2, k) : -1;
            if (v < 0) {
                free(o);
                return xf_err_set(err, "escape \\%c at position %zu needs %d hex digits", e, at, k);
            }
            if ((v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF) {
                free(o);
                return xf_err_set(err, "escape \\%c at position %zu: U+%04lX is not a Unicode scalar value", e, at, v);
            }
            w += utf8_put((uint32_t)v, o + w);
            i += 1 + (size_t)k;
            continue;
        }
        case '\0':
            free(o);
            return xf_err_set(err, "lone backslash at position %zu (end of text)", at);
        default:
            free(o);
            if ((uint8_t)e >= 0x20 && (uint8_t)e < 0x7F)
                return xf_err_set(err, "unknown escape \\%c at position %zu", e, at);
            return xf_err_set(err, "unknown escape \\x%02X at position %zu", (unsigned)(uint8_t)e, at);
        }
        o[w++] = c;
        i++;
    }
    o[w] = 0;
    *out = o;
    *out_len = w;
    return 0;
}

