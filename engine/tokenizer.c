/* tokenizer: byte-level BPE (GPT-2, Qwen2). See tokenizer.h.
 *
 * Pieces are kept as raw bytes: at load every normal token is decoded from the
 * GPT-2 byte-to-unicode form ('Ġ' -> 0x20), and BPE runs over token ids: a
 * pre-token starts as one symbol per byte (the single-byte tokens) and adjacent
 * pairs merge by rank through a hash table (id_a, id_b) -> (rank, id_ab). That
 * gives exactly the HF/llama.cpp result without a string operation in the
 * merge loop. */
#include "tokenizer_internal.h"

#include "utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

uint64_t tok_hash_bytes(const void *data, size_t n)
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

size_t tok_pow2_at_least(size_t n)
{
    size_t c = 16;
    while (c < n)
        c <<= 1;
    return c;
}

int32_t tok_tid_find(const xf_tokenizer *t, const char *s, size_t n)
{
    size_t i = (size_t)tok_hash_bytes(s, n) & t->tid_mask;
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
    size_t i = (size_t)tok_hash_bytes(s, n) & t->tid_mask;
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

const tok_merge *tok_merge_find(const xf_tokenizer *t, int32_t a, int32_t b)
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

/* -------------------------------------------------------------- loading */

const char *tok_gguf_name(const gguf_file *g)
{
    return g->path ? g->path : "(memory)";
}

static uint64_t str_offset(const gguf_file *g, gguf_str s)
{
    /* entries of a string array point into the map, right after their length */
    return (uint64_t)((const uint8_t *)s.ptr - g->map);
}

/* A short, escaped, NUL terminated copy of file text for an error message. */
const char *tok_err_text(const char *s, size_t n, char *buf, size_t cap)
{
    size_t need = tok_escape(s, n > 48 ? 48 : n, buf, cap);
    if (n > 48 && need + 4 < cap)
        strcat(buf, "...");
    return buf;
}

static int load_vocab(xf_tokenizer *t, const gguf_file *g, xf_err *err)
{
    const char *fn = tok_gguf_name(g);
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
        const gguf_kv *kv = gguf_find_kv(g, "tokenizer.ggml.token_type");
        if (n_types != n) {
            xf_err_set(err, "%s: tokenizer.ggml.token_type at byte %llu: %llu entries for %llu tokens", fn,
                       (unsigned long long)kv->offset, (unsigned long long)n_types, (unsigned long long)n);
            goto out;
        }
        /* llama.cpp's types: 0 undefined, 1 normal, 2 unknown, 3 control,
         * 4 user-defined, 5 unused, 6 byte; any other was taken as normal
         * (an attack, session 26) and would decide how a token is split
         * and shown by a rule the file never meant */
        for (uint64_t i = 0; i < n; i++)
            if (types[i] < TOK_TYPE_UNDEFINED || types[i] > TOK_TYPE_BYTE) {
                xf_err_set(
                    err,
                    "%s: tokenizer.ggml.token_type at byte %llu: element %llu is %d, not a token type (0..6)",
                    fn, (unsigned long long)kv->offset, (unsigned long long)i, (int)types[i]);
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
    size_t off_bytes, tid_bytes, cap = tok_pow2_at_least((size_t)n * 2);
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
                       tok_err_text(toks[i].ptr, (size_t)toks[i].len, eb, sizeof eb));
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
        t->byte_tok[b] = tok_tid_find(t, &c, 1);
    }
    rc = 0;
out:
    free(toks);
    free(types);
    return rc;
}

static int load_merges(xf_tokenizer *t, const gguf_file *g, xf_err *err)
{
    const char *fn = tok_gguf_name(g);
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
    size_t cap = tok_pow2_at_least((size_t)n * 2), merge_bytes;
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
                       (unsigned long long)i, (unsigned long long)at, tok_err_text(s, len, eb, sizeof eb));
            goto out;
        }
        size_t lb = len - la - 1, da = 0, db = 0, bad = 0, bad_at = SIZE_MAX;
        if (bytelevel_decode(cp2byte, s, la, buf, &da, &bad))
            bad_at = bad;
        else if (bytelevel_decode(cp2byte, sp + 1, lb, buf + da, &db, &bad))
            bad_at = la + 1 + bad;
        if (bad_at != SIZE_MAX) {
            xf_err_set(err, "%s: tokenizer.ggml.merges[%llu] at byte %llu: \"%s\" is not byte-level BPE text", fn,
                       (unsigned long long)i, (unsigned long long)(at + bad_at), tok_err_text(s, len, eb, sizeof eb));
            goto out;
        }
        int32_t a = tok_tid_find(t, buf, da);
        int32_t b = tok_tid_find(t, buf + da, db);
        int32_t r = tok_tid_find(t, buf, da + db);
        if (a < 0 || b < 0) {
            xf_err_set(err, "%s: tokenizer.ggml.merges[%llu] at byte %llu: \"%s\": \"%s\" is not a token", fn,
                       (unsigned long long)i, (unsigned long long)(a < 0 ? at : at + la + 1),
                       tok_err_text(s, len, eb, sizeof eb), a < 0 ? "a" : "b");
            goto out;
        }
        if (r < 0) {
            xf_err_set(err, "%s: tokenizer.ggml.merges[%llu] at byte %llu: merge target of \"%s\" is not a token", fn,
                       (unsigned long long)i, (unsigned long long)at, tok_err_text(s, len, eb, sizeof eb));
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
        return xf_err_set(err, "%s: %s at byte %llu: token id %d is outside the vocabulary (%d tokens)", tok_gguf_name(g),
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

xf_tokenizer *tok_new_from_gguf(const gguf_file *g, xf_err *err)
{
    const char *fn = tok_gguf_name(g);
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
                   tok_err_text(s.ptr, (size_t)s.len, eb, sizeof eb));
        goto fail;
    }
    if (tok_pretok_select(t, g, err))
        goto fail;
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
        int32_t id = tok_tid_find(t, eog_texts[i], strlen(eog_texts[i]));
        if (id >= 0 && id != t->eos)
            t->eog[t->n_eog++] = id;
    }
    if (load_specials(t, err))
        goto fail;

    if (gguf_find_kv(g, "tokenizer.chat_template")) {
        if (gguf_get_str(g, "tokenizer.chat_template", &s, err))
            goto fail;
        /* kept as a C string: a NUL inside would cut it without a word */
        const char *nul = memchr(s.ptr, 0, (size_t)s.len);
        if (nul) {
            xf_err_set(
                err, "%s: tokenizer.chat_template at byte %llu: a NUL byte at offset %zu of its %llu bytes",
                fn, (unsigned long long)str_offset(g, s), (size_t)(nul - s.ptr), (unsigned long long)s.len);
            goto fail;
        }
        t->chat_template = malloc((size_t)s.len + 1);
        if (!t->chat_template) {
            xf_err_set(err, "%s: tokenizer.chat_template: out of memory", fn);
            goto fail;
        }
        memcpy(t->chat_template, s.ptr, (size_t)s.len);
        t->chat_template[s.len] = 0;
        t->chat_default_system = tok_chat_find_default_system(t->chat_template);
    }

    if (tok_pretok_compile(t, g, err))
        goto fail;
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
    return tok_tid_find(t, text, len);
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

