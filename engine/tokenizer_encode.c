/* tokenizer_encode: text -> token ids. Special tokens are matched first
 * (when asked), the rest is split by the pre-tokenizer regex, and each
 * pre-token is merged by rank over token ids (a heap of candidate pairs,
 * memoized per distinct pre-token). */
#include "tokenizer_internal.h"

#include "utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* A candidate merge of symbol `left` with its right neighbour. */
typedef struct bpe_pair {
    int32_t rank;
    int32_t left;   /* symbol index */
    int32_t left_id, right_id, result;
} bpe_pair;

/* Memo of pre-token -> ids for one tok_encode call: words repeat a lot in
 * real text. Keys point into the caller's text, ids into the output. */
typedef struct memo_slot {
    const char *key; /* NULL when free */
    uint32_t len;
    uint32_t n_ids;
    size_t ids_at;
} memo_slot;

#define MEMO_MAX_KEY 64
#define MEMO_MAX_SLOTS ((size_t)1 << 18)

typedef struct enc_ctx {
    const xf_tokenizer *t;
    int32_t *ids;
    size_t n, cap;
    /* BPE scratch, grown to the longest pre-token */
    int32_t *sym_id, *sym_prev, *sym_next;
    size_t sym_cap;
    bpe_pair *heap;
    size_t heap_n, heap_cap;
    memo_slot *memo;
    size_t memo_mask, memo_used;
    pcre2_match_data *md;
} enc_ctx;

static int ctx_push(enc_ctx *c, int32_t id)
{
    if (c->n == c->cap) {
        size_t nc = c->cap ? c->cap * 2 : 256;
        int32_t *p = realloc(c->ids, nc * sizeof *p);
        if (!p)
            return -1;
        c->ids = p;
        c->cap = nc;
    }
    c->ids[c->n++] = id;
    return 0;
}

static inline bool pair_less(const bpe_pair *a, const bpe_pair *b)
{
    /* lowest rank first; among equal ranks the leftmost, as HF applies a merge left to right */
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(enc_ctx *c, bpe_pair p)
{
    size_t i = c->heap_n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!pair_less(&p, &c->heap[up]))
            break;
        c->heap[i] = c->heap[up];
        i = up;
    }
    c->heap[i] = p;
}

static bpe_pair heap_pop(enc_ctx *c)
{
    bpe_pair top = c->heap[0];
    bpe_pair last = c->heap[--c->heap_n];
    size_t i = 0, n = c->heap_n;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n)
            break;
        size_t m = l + 1 < n && pair_less(&c->heap[l + 1], &c->heap[l]) ? l + 1 : l;
        if (!pair_less(&c->heap[m], &last))
            break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (n > 0)
        c->heap[i] = last;
    return top;
}

static void try_pair(enc_ctx *c, int32_t left, int32_t right)
{
    const tok_merge *m = tok_merge_find(c->t, c->sym_id[left], c->sym_id[right]);
    if (!m)
        return;
    bpe_pair p = {m->rank, left, c->sym_id[left], c->sym_id[right], m->result};
    heap_push(c, p);
}

static int grow_scratch(enc_ctx *c, size_t n)
{
    if (n <= c->sym_cap)
        return 0;
    size_t cap = tok_pow2_at_least(n);
    int32_t *a = realloc(c->sym_id, cap * sizeof *a);
    if (a)
        c->sym_id = a;
    int32_t *b = realloc(c->sym_prev, cap * sizeof *b);
    if (b)
        c->sym_prev = b;
    int32_t *d = realloc(c->sym_next, cap * sizeof *d);
    if (d)
        c->sym_next = d;
    /* every merge adds at most two pairs to the n - 1 of the start */
    bpe_pair *h = realloc(c->heap, 3 * cap * sizeof *h);
    if (h)
        c->heap = h;
    if (!a || !b || !d || !h)
        return -1;
    c->sym_cap = cap;
    c->heap_cap = 3 * cap;
    return 0;
}

/* BPE of one pre-token w[0..n) at byte offset `at` of the text, ids appended. */
static int bpe_word(enc_ctx *c, const char *w, size_t n, size_t at, xf_err *err)
{
    const xf_tokenizer *t = c->t;
    const uint8_t *u = (const uint8_t *)w;
    if (n > INT32_MAX)
        return xf_err_set(err, "tokenizer: a pre-token of %zu bytes at byte %zu is too long", n, at);
    if (n == 1) {
        if (t->byte_tok[u[0]] < 0)
            return xf_err_set(err, "tokenizer: byte 0x%02X at byte %zu has no token in the vocabulary", u[0], at);
        return ctx_push(c, t->byte_tok[u[0]]) ? xf_err_set(err, "tokenizer: out of memory") : 0;
    }

    if (t->ignore_merges) {
        int32_t whole = tok_tid_find(t, w, n);
        if (whole >= 0)
            return ctx_push(c, whole) ? xf_err_set(err, "tokenizer: out of memory") : 0;
    }

    memo_slot *slot = NULL;
    if (n <= MEMO_MAX_KEY && c->memo) {
        size_t i = (size_t)tok_hash_bytes(w, n) & c->memo_mask;
        for (;;) {
            memo_slot *s = &c->memo[i];
            if (!s->key) {
                slot = s;
                break;
            }
            if (s->len == n && memcmp(s->key, w, n) == 0) {
                for (uint32_t k = 0; k < s->n_ids; k++)
                    if (ctx_push(c, c->ids[s->ids_at + k]))
                        return xf_err_set(err, "tokenizer: out of memory");
                return 0;
            }
            i = (i + 1) & c->memo_mask;
        }
    }

    if (grow_scratch(c, n))
        return xf_err_set(err, "tokenizer: out of memory for a pre-token of %zu bytes", n);
    int32_t ni = (int32_t)n;
    for (int32_t i = 0; i < ni; i++) {
        int32_t id = t->byte_tok[u[i]];
        if (id < 0)
            return xf_err_set(err, "tokenizer: byte 0x%02X at byte %zu has no token in the vocabulary", u[i],
                              at + (size_t)i);
        c->sym_id[i] = id;
        c->sym_prev[i] = i - 1;
        c->sym_next[i] = i + 1 < ni ? i + 1 : -1;
    }
    c->heap_n = 0;
    for (int32_t i = 0; i + 1 < ni; i++)
        try_pair(c, i, i + 1);
    while (c->heap_n > 0) {
        bpe_pair p = heap_pop(c);
        int32_t l = p.left, r = c->sym_next[l];
        /* lazy invalidation: a merge only ever makes a symbol's token longer,
         * so unchanged ids on both sides mean the pair is still there */
        if (r < 0 || c->sym_id[l] != p.left_id || c->sym_id[r] != p.right_id)
            continue;
        c->sym_id[l] = p.result;
        c->sym_id[r] = -1;
        c->sym_next[l] = c->sym_next[r];
        if (c->sym_next[l] >= 0)
            c->sym_prev[c->sym_next[l]] = l;
        if (c->sym_prev[l] >= 0)
            try_pair(c, c->sym_prev[l], l);
        if (c->sym_next[l] >= 0)
            try_pair(c, l, c->sym_next[l]);
    }
    size_t start = c->n;
    for (int32_t i = 0; i >= 0; i = c->sym_next[i])
        if (ctx_push(c, c->sym_id[i]))
            return xf_err_set(err, "tokenizer: out of memory");

    if (slot && c->memo_used * 2 < c->memo_mask + 1) {
        slot->key = w;
        slot->len = (uint32_t)n;
        slot->n_ids = (uint32_t)(c->n - start);
        slot->ids_at = start;
        c->memo_used++;
    }
    return 0;
}

/* Pre-tokenizes text[a..b) (no special tokens inside) and BPEs each piece. */
static int encode_fragment(enc_ctx *c, const char *text, size_t a, size_t b, xf_err *err)
{
    const char *s = text + a;
    size_t n = b - a, pos = 0;
    while (pos < n) {
        int rc = pcre2_match(c->t->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, c->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) {
            /* text no alternative covers stays one piece, as llama.cpp keeps it */
            return bpe_word(c, s + pos, n - pos, a + pos, err);
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return xf_err_set(err, "tokenizer: pre-tokenizer failed at byte %zu: %s", a + pos, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t m0 = ov[0], m1 = ov[1];
        if (m0 > pos && bpe_word(c, s + pos, m0 - pos, a + pos, err))
            return -1;
        if (m1 <= m0) {
            /* an empty match (none of our patterns has one): step over one character */
            size_t l;
            m1 = m0;
            if (m1 < n) {
                utf8_step((const uint8_t *)s + m1, n - m1, &l);
                m1 += l;
            }
        }
        if (m1 > m0 && bpe_word(c, s + m0, m1 - m0, a + m0, err))
            return -1;
        pos = m1;
    }
    return 0;
}

/* The longest special token starting at text[i], or -1. */
static int32_t match_special(const xf_tokenizer *t, const char *text, size_t len, size_t i, size_t *mlen)
{
    uint8_t b = (uint8_t)text[i];
    for (size_t k = t->spec_start[b]; k < t->spec_start[b + 1]; k++) {
        size_t l;
        const char *p = piece_ptr(t, t->spec[k], &l);
        if (l <= len - i && memcmp(p, text + i, l) == 0) {
            *mlen = l;
            return t->spec[k];
        }
    }
    return -1;
}

int tok_encode(const xf_tokenizer *t, const char *text, size_t len, bool parse_special, int32_t **ids,
               size_t *n_ids, xf_err *err)
{
    *ids = NULL;
    *n_ids = 0;
    if (!text && len)
        return xf_err_set(err, "tokenizer: NULL text");
    size_t bad = utf8_valid_prefix(text, len);
    if (bad < len)
        return xf_err_set(err, "tokenizer: input is not valid UTF-8 at byte %zu (0x%02X)", bad,
                          (unsigned)(uint8_t)text[bad]);

    enc_ctx c = {.t = t};
    int rc = -1;
    c.md = pcre2_match_data_create_from_pattern(t->re, NULL);
    size_t mslots = tok_pow2_at_least(len / 4 + 64);
    if (mslots > MEMO_MAX_SLOTS)
        mslots = MEMO_MAX_SLOTS;
    c.memo = calloc(mslots, sizeof *c.memo);
    c.memo_mask = mslots - 1;
    c.cap = len / 3 + 16;
    c.ids = malloc(c.cap * sizeof *c.ids);
    if (!c.md || !c.memo || !c.ids) {
        xf_err_set(err, "tokenizer: out of memory for %zu bytes of text", len);
        goto out;
    }

    size_t frag = 0;
    if (parse_special && t->n_spec > 0) {
        for (size_t i = 0; i < len;) {
            uint8_t b = (uint8_t)text[i];
            size_t ml = 0;
            int32_t id = t->spec_start[b] < t->spec_start[b + 1] ? match_special(t, text, len, i, &ml) : -1;
            if (id < 0) {
                i++;
                continue;
            }
            if (i > frag && encode_fragment(&c, text, frag, i, err))
                goto out;
            if (ctx_push(&c, id)) {
                xf_err_set(err, "tokenizer: out of memory");
                goto out;
            }
            i += ml;
            frag = i;
        }
    }
    if (len > frag && encode_fragment(&c, text, frag, len, err))
        goto out;
    *ids = c.ids;
    *n_ids = c.n;
    c.ids = NULL;
    rc = 0;
out:
    free(c.ids);
    free(c.sym_id);
    free(c.sym_prev);
    free(c.sym_next);
    free(c.heap);
    free(c.memo);
    if (c.md)
        pcre2_match_data_free(c.md);
    return rc;
}

