/* tokenizer: byte-level BPE (GPT-2, Qwen2). See tokenizer.h.
 *
 * Pieces are kept as raw bytes: at load every normal token is decoded from the
 * GPT-2 byte-to-unicode form ('Ġ' -> 0x20), and BPE runs over token ids: a
 * pre-token starts as one symbol per byte (the single-byte tokens) and adjacent
 * pairs merge by rank through a hash table (id_a, id_b) -> (rank, id_ab). That
 * gives exactly the HF/llama.cpp result without a string operation in the
 * merge loop. */
#include "tokenizer.h"

#include "strbuf.h"
#include "utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

/* ---------------------------------------------------------------- UTF-8 */

size_t tok_utf8_valid_prefix(const char *s, size_t len) { return utf8_valid_prefix(s, len); }

/* ------------------------------------------------------- byte <-> unicode */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
 * other 68 bytes map in order to U+0100.. so that no token holds a space or a
 * control character. 324 = 256 + 68 code points are used. */
#define TOK_BL_NCP 324

static void bytelevel_inverse(int16_t cp2byte[TOK_BL_NCP])
{
    int extra = 0;
    for (int i = 0; i < TOK_BL_NCP; i++)
        cp2byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        int cp = keep ? b : 256 + extra++;
        cp2byte[cp] = (int16_t)b;
    }
}

/* Decodes byte-level text s[0..n) into raw bytes out (at most n bytes).
 * Returns 0, or -1 with *bad = byte index in s of the first character that
 * is not UTF-8 or has no byte. */
static int bytelevel_decode(const int16_t *cp2byte, const char *s, size_t n, char *out, size_t *out_len,
                            size_t *bad)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0, o = 0;
    while (i < n) {
        size_t l;
        if (utf8_step(p + i, n - i, &l) != 1) {
            *bad = i;
            return -1;
        }
        uint32_t cp = utf8_cp(p + i, l);
        if (cp >= TOK_BL_NCP || cp2byte[cp] < 0) {
            *bad = i;
            return -1;
        }
        out[o++] = (char)cp2byte[cp];
        i += l;
    }
    *out_len = o;
    return 0;
}

/* ---------------------------------------------------------------- hashing */

static uint64_t hash_bytes(const void *data, size_t n)
{
    /* FNV-1a then a final mix: the keys are short, a simple loop is enough */
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 32;
    return h;
}

static uint64_t hash_u64(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ULL;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dULL;
    x ^= x >> 33;
    return x;
}

static size_t pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n)
        c <<= 1;
    return c;
}

/* -------------------------------------------------------------- the type */

#define TOK_MAX_EOG 4
#define TOK_MERGE_EMPTY UINT64_MAX

typedef struct tok_merge {
    uint64_t key; /* (id_a << 32) | id_b; TOK_MERGE_EMPTY when the slot is free */
    int32_t rank;
    int32_t result;
} tok_merge;

struct xf_tokenizer {
    int32_t n_vocab;
    char *bytes;    /* all pieces back to back: [off[n_vocab]] */
    size_t *off;    /* [n_vocab + 1]: piece i is bytes[off[i] .. off[i+1]) */
    uint8_t *type;  /* [n_vocab] enum tok_type (clamped to 0..255) */
    int32_t *tid;   /* text -> id open addressing: [tid_mask + 1], -1 free */
    size_t tid_mask;
    tok_merge *merge; /* [merge_mask + 1] */
    size_t merge_mask;
    int32_t byte_tok[256]; /* the single-byte token of each byte, -1 if none */
    int32_t bos, eos, pad;
    int32_t eog[TOK_MAX_EOG];
    int n_eog;
    /* specials matched by parse_special, sorted by first byte, then longest first */
    int32_t *spec;
    size_t n_spec;
    size_t spec_start[257]; /* spec[spec_start[b] .. spec_start[b+1]) start with byte b */
    char pre[32];
    char *chat_template;   /* NUL terminated, or NULL */
    char *chat_default_system; /* NUL terminated, or NULL */
    pcre2_code *re;
};

static inline const char *piece_ptr(const xf_tokenizer *t, int32_t id, size_t *len)
{
    *len = t->off[id + 1] - t->off[id];
    return t->bytes + t->off[id];
}

static int32_t tid_find(const xf_tokenizer *t, const char *s, size_t n)
{
    size_t i = (size_t)hash_bytes(s, n) & t->tid_mask;
    for (;;) {
        int32_t id = t->tid[i];
        if (id < 0)
            return -1;
        size_t l;
        const char *p = piece_ptr(t, id, &l);
        if (l == n && memcmp(p, s, n) == 0)
            return id;
        i = (i + 1) & t->tid_mask;
    }
}

static void tid_insert(xf_tokenizer *t, int32_t id)
{
    size_t n;
    const char *s = piece_ptr(t, id, &n);
    size_t i = (size_t)hash_bytes(s, n) & t->tid_mask;
    for (;;) {
        int32_t o = t->tid[i];
        if (o < 0) {
            t->tid[i] = id;
            return;
        }
        size_t l;
        const char *p = piece_ptr(t, o, &l);
        if (l == n && memcmp(p, s, n) == 0)
            return; /* duplicate text: the first id keeps it, as a vocab dict would */
        i = (i + 1) & t->tid_mask;
    }
}

static const tok_merge *merge_find(const xf_tokenizer *t, int32_t a, int32_t b)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)hash_u64(key) & t->merge_mask;
    for (;;) {
        const tok_merge *m = &t->merge[i];
        if (m->key == key)
            return m;
        if (m->key == TOK_MERGE_EMPTY)
            return NULL;
        i = (i + 1) & t->merge_mask;
    }
}

/* Returns false when the pair already has a (lower) rank. */
static bool merge_insert(xf_tokenizer *t, int32_t a, int32_t b, int32_t rank, int32_t result)
{
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)hash_u64(key) & t->merge_mask;
    for (;;) {
        tok_merge *m = &t->merge[i];
        if (m->key == key)
            return false;
        if (m->key == TOK_MERGE_EMPTY) {
            m->key = key;
            m->rank = rank;
            m->result = result;
            return true;
        }
        i = (i + 1) & t->merge_mask;
    }
}

/* ------------------------------------------------------- pre-tokenizers */

/* \s and \S are spelled out as Unicode White_Space (what HF's Oniguruma and
 * llama.cpp use): PCRE2's \s leaves out U+0085. */
#define WS "\\t-\\r\\x{85}\\p{Z}"

/* GPT-2 (openai/gpt-2 encoder.py), with its trailing \s+ alternative. */
static const char k_re_gpt2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS "\\p{L}\\p{N}]+"
                                "|[" WS "]+(?![^" WS "])|[" WS "]+";

/* Qwen2 (tokenizer.json). Its (?i:'s|'t|...) is written with explicit ASCII
 * case pairs, as llama.cpp does, because PCRE2's caseless UTF matching would
 * also fold 's' to U+017F and 'k' to U+212A. */
static const char k_re_qwen2[] = "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]"
                                 "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
                                 "| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+"
                                 "|[" WS "]+(?![^" WS "])|[" WS "]+";

/* -------------------------------------------------------------- loading */

static const char *gname(const gguf_file *g)
{
    return g->path ? g->path : "(memory)";
}

static uint64_t str_offset(const gguf_file *g, gguf_str s)
{
    /* entries of a string array point into the map, right after their length */
    return (uint64_t)((const uint8_t *)s.ptr - g->map);
}

/* A short, escaped, NUL terminated copy of file text for an error message. */
static const char *err_text(const char *s, size_t n, char *buf, size_t cap)
{
    size_t need = tok_escape(s, n > 48 ? 48 : n, buf, cap);
    if (n > 48 && need + 4 < cap)
        strcat(buf, "...");
    return buf;
}

static int load_vocab(xf_tokenizer *t, const gguf_file *g, xf_err *err)
{
    const char *fn = gname(g);
    gguf_str *toks = NULL;
    uint64_t n = 0;
    int32_t *types = NULL;
    uint64_t n_types = 0;
    int rc = -1;

    if (gguf_get_arr_str(g, "tokenizer.ggml.tokens", &toks, &n, err))
        return -1;
    const gguf_kv *kv_toks = gguf_find_kv(g, "tokenizer.ggml.tokens");
    if (n == 0 || n > (uint64_t)INT32_MAX - 1) {
        xf_err_set(err, "%s: tokenizer.ggml.tokens at byte %llu: %llu tokens (want 1..%d)", fn,
                   (unsigned long long)(kv_toks ? kv_toks->offset : 0), (unsigned long long)n, INT32_MAX - 1);
        goto out;
    }
    t->n_vocab = (int32_t)n;

    if (gguf_find_kv(g, "tokenizer.ggml.token_type")) {
        if (gguf_get_arr_i32(g, "tokenizer.ggml.token_type", &types, &n_types, err))
            goto out;
        if (n_types != n) {
            const gguf_kv *kv = gguf_find_kv(g, "tokenizer.ggml.token_type");
            xf_err_set(err, "%s: tokenizer.ggml.token_type at byte %llu: %llu entries for %llu tokens", fn,
                       (unsigned long long)kv->offset, (unsigned long long)n_types, (unsigned long long)n);
            goto out;
        }
    }

    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (toks[i].len > SIZE_MAX || !xf_add_size(total, (size_t)toks[i].len, &total)) {
            xf_err_set(err, "%s: tokenizer.ggml.tokens[%llu] at byte %llu: total token length overflows", fn,
                       (unsigned long long)i, (unsigned long long)str_offset(g, toks[i]));
            goto out;
        }
    }
    /* decoding never makes a piece longer, so total bounds the raw bytes */
    size_t off_bytes, tid_bytes, cap = pow2_at_least((size_t)n * 2);
    if (!xf_mul_size((size_t)n + 1, sizeof *t->off, &off_bytes) || !xf_mul_size(cap, sizeof *t->tid, &tid_bytes) ||
        !xf_add_size(total, 1, &total)) {
        xf_err_set(err, "%s: tokenizer.ggml.tokens: %llu tokens overflow the tables", fn, (unsigned long long)n);
        goto out;
    }
    t->bytes = malloc(total);
    t->off = malloc(off_bytes);
    t->type = malloc(n);
    t->tid = malloc(tid_bytes);
    if (!t->bytes || !t->off || !t->type || !t->tid) {
        xf_err_set(err, "%s: tokenizer.ggml.tokens: out of memory for %llu tokens", fn, (unsigned long long)n);
        goto out;
    }

    int16_t cp2byte[TOK_BL_NCP];
    bytelevel_inverse(cp2byte);
    size_t o = 0;
    for (uint64_t i = 0; i < n; i++) {
        int ty = types ? types[i] : TOK_TYPE_NORMAL;
        t->type[i] = (uint8_t)(ty < 0 || ty > 255 ? 0 : ty);
        t->off[i] = o;
        if (ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_USER_DEFINED) {
            /* added tokens are stored as their raw text, not byte-level encoded */
            memcpy(t->bytes + o, toks[i].ptr, (size_t)toks[i].len);
            o += (size_t)toks[i].len;
            continue;
        }
        size_t l, bad;
        if (bytelevel_decode(cp2byte, toks[i].ptr, (size_t)toks[i].len, t->bytes + o, &l, &bad)) {
            char eb[80];
            xf_err_set(err, "%s: tokenizer.ggml.tokens[%llu] at byte %llu: \"%s\" is not byte-level BPE text", fn,
                       (unsigned long long)i, (unsigned long long)(str_offset(g, toks[i]) + bad),
                       err_text(toks[i].ptr, (size_t)toks[i].len, eb, sizeof eb));
            goto out;
        }
        o += l;
    }
    t->off[n] = o;

    memset(t->tid, 0xff, tid_bytes);
    t->tid_mask = cap - 1;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->off[i + 1] > t->off[i])
            tid_insert(t, i);
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        t->byte_tok[b] = tid_find(t, &c, 1);
    }
    rc = 0;
out:
    free(toks);
    free(types);
    return rc;
}

static int load_merges(xf_tokenizer *t, const gguf_file *g, xf_err *err)
{
    const char *fn = gname(g);
    gguf_str *m = NULL;
    uint64_t n = 0;
    char *buf = NULL;
    int rc = -1;
    int16_t cp2byte[TOK_BL_NCP];
    bytelevel_inverse(cp2byte);

    if (gguf_get_arr_str(g, "tokenizer.ggml.merges", &m, &n, err))
        return -1;
    if (n > (uint64_t)INT32_MAX) {
        const gguf_kv *kv = gguf_find_kv(g, "tokenizer.ggml.merges");
        xf_err_set(err, "%s: tokenizer.ggml.merges at byte %llu: %llu merges is too many", fn,
                   (unsigned long long)kv->offset, (unsigned long long)n);
        goto out;
    }
    size_t cap = pow2_at_least((size_t)n * 2), merge_bytes;
    if (!xf_mul_size(cap, sizeof *t->merge, &merge_bytes)) {
        xf_err_set(err, "%s: tokenizer.ggml.merges: %llu merges overflow the table", fn, (unsigned long long)n);
        goto out;
    }
    t->merge = malloc(merge_bytes);
    size_t maxlen = 0;
    for (uint64_t i = 0; i < n; i++)
        if (m[i].len > maxlen)
            maxlen = (size_t)m[i].len;
    buf = malloc(maxlen + 1);
    if (!t->merge || !buf) {
        xf_err_set(err, "%s: tokenizer.ggml.merges: out of memory for %llu merges", fn, (unsigned long long)n);
        goto out;
    }
    for (size_t i = 0; i < cap; i++)
        t->merge[i].key = TOK_MERGE_EMPTY;
    t->merge_mask = cap - 1;

    for (uint64_t i = 0; i < n; i++) {
        const char *s = m[i].ptr;
        size_t len = (size_t)m[i].len;
        uint64_t at = str_offset(g, m[i]);
        char eb[80];
        /* byte-level text never holds a real space, so "a b" splits at the only one */
        const char *sp = memchr(s, ' ', len);
        size_t la = sp ? (size_t)(sp - s) : 0;
        if (!sp || la == 0 || la + 1 == len || memchr(sp + 1, ' ', len - la - 1)) {
            xf_err_set(err, "%s: tokenizer.ggml.merges[%llu] at byte %llu: \"%s\" is not of the form \"a b\"", fn,
                       (unsigned long long)i, (unsigned long long)at, err_text(s, len, eb, sizeof eb));
            goto out;
        }
        size_t lb = len - la - 1, da = 0, db = 0, bad = 0, bad_at = SIZE_MAX;
        if (bytelevel_decode(cp2byte, s, la, buf, &da, &bad))
            bad_at = bad;
        else if (bytelevel_decode(cp2byte, sp + 1, lb, buf + da, &db, &bad))
            bad_at = la + 1 + bad;
        if (bad_at != SIZE_MAX) {
            xf_err_set(err, "%s: tokenizer.ggml.merges[%llu] at byte %llu: \"%s\" is not byte-level BPE text", fn,
                       (unsigned long long)i, (unsigned long long)(at + bad_at), err_text(s, len, eb, sizeof eb));
            goto out;
        }
        int32_t a = tid_find(t, buf, da);
        int32_t b = tid_find(t, buf + da, db);
        int32_t r = tid_find(t, buf, da + db);
        if (a < 0 || b < 0) {
            xf_err_set(err, "%s: tokenizer.ggml.merges[%llu] at byte %llu: \"%s\": \"%s\" is not a token", fn,
                       (unsigned long long)i, (unsigned long long)(a < 0 ? at : at + la + 1),
                       err_text(s, len, eb, sizeof eb), a < 0 ? "a" : "b");
            goto out;
        }
        if (r < 0) {
            xf_err_set(err, "%s: tokenizer.ggml.merges[%llu] at byte %llu: merge target of \"%s\" is not a token", fn,
                       (unsigned long long)i, (unsigned long long)at, err_text(s, len, eb, sizeof eb));
            goto out;
        }
        merge_insert(t, a, b, (int32_t)i, r); /* a repeated pair keeps its first rank */
    }
    rc = 0;
out:
    free(m);
    free(buf);
    return rc;
}

/* Optional special id: absent -> -1; present and out of range -> error. */
static int load_special_id(const xf_tokenizer *t, const gguf_file *g, const char *key, int32_t *out, xf_err *err)
{
    *out = -1;
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv)
        return 0;
    int32_t v;
    if (gguf_get_i32(g, key, &v, err))
        return -1;
    if (v < 0 || v >= t->n_vocab)
        return xf_err_set(err, "%s: %s at byte %llu: token id %d is outside the vocabulary (%d tokens)", gname(g),
                          key, (unsigned long long)kv->offset, v, t->n_vocab);
    *out = v;
    return 0;
}

static int cmp_spec(const void *pa, const void *pb, void *ctx)
{
    const xf_tokenizer *t = ctx;
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    size_t la, lb;
    const char *sa = piece_ptr(t, a, &la), *sb = piece_ptr(t, b, &lb);
    if ((uint8_t)sa[0] != (uint8_t)sb[0])
        return (uint8_t)sa[0] < (uint8_t)sb[0] ? -1 : 1;
    if (la != lb)
        return la > lb ? -1 : 1;
    return a < b ? -1 : a > b;
}

static int load_specials(xf_tokenizer *t, xf_err *err)
{
    size_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (tok_is_special(t, i))
            n++;
    t->spec = malloc((n ? n : 1) * sizeof *t->spec);
    if (!t->spec)
        return xf_err_set(err, "tokenizer: out of memory for %zu special tokens", n);
    for (int32_t i = 0; i < t->n_vocab; i++) {
        size_t l;
        const char *p = piece_ptr(t, i, &l);
        /* an empty or non-UTF-8 special can never match valid input at a
         * character boundary, so it is left out of matching */
        if (tok_is_special(t, i) && l > 0 && utf8_valid_prefix(p, l) == l)
            t->spec[t->n_spec++] = i;
    }
    qsort_r(t->spec, t->n_spec, sizeof *t->spec, cmp_spec, t);
    size_t k = 0;
    for (int b = 0; b <= 256; b++) {
        while (b < 256 && k < t->n_spec && (uint8_t)t->bytes[t->off[t->spec[k]]] < b)
            k++;
        t->spec_start[b] = k;
    }
    t->spec_start[256] = t->n_spec;
    return 0;
}

/* The default system text of a ChatML template: the literal that follows
 * "<|im_start|>system" + newline (a real one or the two characters \n) up to
 * "<|im_end|>", when it holds no template syntax. */
static char *find_default_system(const char *tpl)
{
    static const char start[] = "<|im_start|>system";
    for (const char *p = strstr(tpl, start); p; p = strstr(p + 1, start)) {
        const char *q = p + sizeof start - 1;
        if (q[0] == '\n')
            q += 1;
        else if (q[0] == '\\' && q[1] == 'n')
            q += 2;
        else
            continue;
        const char *e = strstr(q, "<|im_end|>");
        if (!e || e == q)
            continue;
        size_t n = (size_t)(e - q);
        if (strcspn(q, "'\"{}+\\\n") < n)
            continue;
        char *s = malloc(n + 1);
        if (!s)
            return NULL;
        memcpy(s, q, n);
        s[n] = 0;
        return s;
    }
    return NULL;
}

xf_tokenizer *tok_new_from_gguf(const gguf_file *g, xf_err *err)
{
    const char *fn = gname(g);
    xf_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        xf_err_set(err, "%s: tokenizer: out of memory", fn);
        return NULL;
    }
    gguf_str s;
    if (gguf_get_str(g, "tokenizer.ggml.model", &s, err))
        goto fail;
    if (!gguf_str_eq(s, "gpt2")) {
        char eb[80];
        xf_err_set(err, "%s: tokenizer.ggml.model at byte %llu: \"%s\" is not supported (only byte-level BPE \"gpt2\")",
                   fn, (unsigned long long)gguf_find_kv(g, "tokenizer.ggml.model")->offset,
                   err_text(s.ptr, (size_t)s.len, eb, sizeof eb));
        goto fail;
    }
    const char *pattern = k_re_gpt2;
    snprintf(t->pre, sizeof t->pre, "gpt-2");
    if (gguf_find_kv(g, "tokenizer.ggml.pre")) {
        if (gguf_get_str(g, "tokenizer.ggml.pre", &s, err))
            goto fail;
        if (gguf_str_eq(s, "qwen2")) {
            pattern = k_re_qwen2;
            snprintf(t->pre, sizeof t->pre, "qwen2");
        } else if (!gguf_str_eq(s, "gpt-2") && !gguf_str_eq(s, "gpt2") && !gguf_str_eq(s, "default")) {
            char eb[80];
            xf_err_set(err, "%s: tokenizer.ggml.pre at byte %llu: pre-tokenizer \"%s\" is not supported (gpt-2, qwen2)",
                       fn, (unsigned long long)gguf_find_kv(g, "tokenizer.ggml.pre")->offset,
                       err_text(s.ptr, (size_t)s.len, eb, sizeof eb));
            goto fail;
        }
    }
    if (load_vocab(t, g, err) || load_merges(t, g, err))
        goto fail;
    if (load_special_id(t, g, "tokenizer.ggml.bos_token_id", &t->bos, err) ||
        load_special_id(t, g, "tokenizer.ggml.eos_token_id", &t->eos, err) ||
        load_special_id(t, g, "tokenizer.ggml.padding_token_id", &t->pad, err))
        goto fail;
    if (t->eos >= 0)
        t->eog[t->n_eog++] = t->eos;
    static const char *const eog_texts[] = {"<|im_end|>", "<|endoftext|>"};
    for (size_t i = 0; i < sizeof eog_texts / sizeof *eog_texts; i++) {
        int32_t id = tid_find(t, eog_texts[i], strlen(eog_texts[i]));
        if (id >= 0 && id != t->eos)
            t->eog[t->n_eog++] = id;
    }
    if (load_specials(t, err))
        goto fail;

    if (gguf_find_kv(g, "tokenizer.chat_template")) {
        if (gguf_get_str(g, "tokenizer.chat_template", &s, err))
            goto fail;
        t->chat_template = malloc((size_t)s.len + 1);
        if (!t->chat_template) {
            xf_err_set(err, "%s: tokenizer.chat_template: out of memory", fn);
            goto fail;
        }
        memcpy(t->chat_template, s.ptr, (size_t)s.len);
        t->chat_template[s.len] = 0;
        t->chat_default_system = find_default_system(t->chat_template);
    }

    int ec;
    PCRE2_SIZE eoff;
    t->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eoff, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        xf_err_set(err, "%s: tokenizer.ggml.pre: regex does not compile at %zu: %s", fn, (size_t)eoff,
                   (const char *)msg);
        goto fail;
    }
    /* JIT is an optimization only: where it is missing pcre2_match interprets */
    (void)pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);
    return t;
fail:
    tok_free(t);
    return NULL;
}

void tok_free(xf_tokenizer *t)
{
    if (!t)
        return;
    free(t->bytes);
    free(t->off);
    free(t->type);
    free(t->tid);
    free(t->merge);
    free(t->spec);
    free(t->chat_template);
    free(t->chat_default_system);
    if (t->re)
        pcre2_code_free(t->re);
    free(t);
}

/* ------------------------------------------------------------- queries */

int32_t tok_vocab_size(const xf_tokenizer *t) { return t->n_vocab; }
int32_t tok_bos(const xf_tokenizer *t) { return t->bos; }
int32_t tok_eos(const xf_tokenizer *t) { return t->eos; }
int32_t tok_pad(const xf_tokenizer *t) { return t->pad; }
const char *tok_pre_name(const xf_tokenizer *t) { return t->pre; }
const char *tok_chat_template(const xf_tokenizer *t) { return t->chat_template; }
const char *tok_chat_default_system(const xf_tokenizer *t) { return t->chat_default_system; }

bool tok_is_eog(const xf_tokenizer *t, int32_t id)
{
    for (int i = 0; i < t->n_eog; i++)
        if (t->eog[i] == id)
            return true;
    return false;
}

int tok_type(const xf_tokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->n_vocab)
        return -1;
    return t->type[id];
}

bool tok_is_special(const xf_tokenizer *t, int32_t id)
{
    int ty = tok_type(t, id);
    return ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_USER_DEFINED;
}

const char *tok_piece(const xf_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_vocab) {
        *len = 0;
        return NULL;
    }
    return piece_ptr(t, id, len);
}

int32_t tok_id_of(const xf_tokenizer *t, const char *text, size_t len)
{
    if (len == 0)
        return -1;
    return tid_find(t, text, len);
}

int tok_decode(const xf_tokenizer *t, const int32_t *ids, size_t n, char **out, size_t *out_len, xf_err *err)
{
    size_t total = 0, l;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return xf_err_set(err, "tokenizer: token %zu: id %d is outside the vocabulary (%d tokens)", i, ids[i],
                              t->n_vocab);
        total += t->off[ids[i] + 1] - t->off[ids[i]];
    }
    char *s = malloc(total + 1);
    if (!s)
        return xf_err_set(err, "tokenizer: out of memory for %zu bytes", total);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p = piece_ptr(t, ids[i], &l);
        memcpy(s + o, p, l);
        o += l;
    }
    s[o] = 0;
    *out = s;
    *out_len = o;
    return 0;
}

/* ------------------------------------------------------------- encoding */

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
    const tok_merge *m = merge_find(c->t, c->sym_id[left], c->sym_id[right]);
    if (!m)
        return;
    bpe_pair p = {m->rank, left, c->sym_id[left], c->sym_id[right], m->result};
    heap_push(c, p);
}

static int grow_scratch(enc_ctx *c, size_t n)
{
    if (n <= c->sym_cap)
        return 0;
    size_t cap = pow2_at_least(n);
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

    memo_slot *slot = NULL;
    if (n <= MEMO_MAX_KEY && c->memo) {
        size_t i = (size_t)hash_bytes(w, n) & c->memo_mask;
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
    size_t mslots = pow2_at_least(len / 4 + 64);
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

/* ---------------------------------------------------------------- chat */

static void sb_msg(xf_strbuf *b, const char *role, const char *content)
{
    sb_puts(b, "<|im_start|>");
    sb_puts(b, role);
    sb_puts(b, "\n");
    sb_puts(b, content);
    sb_puts(b, "<|im_end|>\n");
}

int tok_chat_format(const xf_tokenizer *t, const tok_chat_msg *msgs, size_t n, bool add_generation_prompt,
                    char **out, xf_err *err)
{
    *out = NULL;
    if (tid_find(t, "<|im_start|>", 12) < 0 || tid_find(t, "<|im_end|>", 10) < 0)
        return xf_err_set(err, "tokenizer: no chat format: the vocabulary has no <|im_start|>/<|im_end|> tokens");
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].role[0] || !msgs[i].content)
            return xf_err_set(err, "chat message %zu has no role or no content", i);
    xf_strbuf b = {0};
    if (t->chat_default_system && (n == 0 || strcmp(msgs[0].role, "system") != 0))
        sb_msg(&b, "system", t->chat_default_system);
    for (size_t i = 0; i < n; i++)
        sb_msg(&b, msgs[i].role, msgs[i].content);
    if (add_generation_prompt)
        sb_puts(&b, "<|im_start|>assistant\n");
    sb_append(&b, "", 0); /* an empty conversation is "", not NULL */
    if (b.oom) {
        sb_free(&b);
        return xf_err_set(err, "chat: out of memory");
    }
    *out = b.s;
    return 0;
}
