/* tinymodel: a tiny but complete GPT-2 or Qwen2 GGUF (a byte-level BPE
 * vocabulary of a few hundred tokens, F32 weights of a few KB) written with
 * gguf_writer, for the fuzz seeds, the malformed-input suite, the OOM sweep
 * and the terminal-safety tests. A tiny model makes a full load, a pass and
 * a generation cost microseconds, so that a sweep over every allocation or
 * a fuzzer can afford thousands of them.
 *
 * Header-only (static inline) because each tests/test_*.c program links only
 * itself and testutil.c. Knobs in tiny_spec break the model in one precise
 * way (a tensor left out, one with a wrong shape, a NaN in a norm) so that a
 * test knows exactly which error model_load must name. */
#ifndef XF_TINYMODEL_H
#define XF_TINYMODEL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "gguf_writer.h"
#include "quant.h"
#include "quantize.h"

typedef struct tiny_spec {
    bool qwen2;
    int n_layer, n_embd, n_head, n_head_kv, n_ff, n_ctx;
    const char *name;         /* general.name; NULL: none */
    bool no_vocab;            /* no tokenizer.* keys */
    bool vocab_only;          /* no tensors (and no architecture hparams) */
    const char *const *extra; /* extra user-defined tokens, stored as raw text */
    int n_extra;
    int favor;            /* gpt2: a token id greedy decoding always picks; -1 none */
    const char *omit;     /* a tensor left out of the file */
    const char *omit_key; /* a metadata key left out of the file */
    const char *reshape;  /* a tensor written with one row (1-D: one element) too many */
    const char *poison;   /* a 1-D tensor with poison_val at element poison_at */
    int poison_at;
    float poison_val;
    int wtype; /* XF_TYPE_* of the matrices (0: F32); rows must fit its blocks */
    uint64_t seed;
} tiny_spec;

/* 256 byte tokens, 3 merged ones, <|endoftext|> */
#define TINY_N_BASE_VOCAB 260
#define TINY_EOT_ID 259

static inline void tiny_spec_default(tiny_spec *s)
{
    memset(s, 0, sizeof *s);
    s->n_layer = 1;
    s->n_embd = 8;
    s->n_head = 2;
    s->n_head_kv = 2;
    s->n_ff = 16;
    s->n_ctx = 16;
    s->favor = -1;
    s->seed = 0x9e3779b97f4a7c15ULL;
}

static inline int tiny_vocab_size(const tiny_spec *s)
{
    return TINY_N_BASE_VOCAB + s->n_extra;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves,
 * the others for U+0100 + k in byte order; written as UTF-8 into out[3]. */
static inline void tiny_bytelevel(unsigned b, char out[3])
{
    unsigned cp = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
        unsigned k = 0;
        for (unsigned x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255)))
                k++;
        cp = 256 + k;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = 0;
    }
}

static inline float tiny_rand(uint64_t *st)
{
    *st ^= *st >> 12;
    *st ^= *st << 25;
    *st ^= *st >> 27;
    uint64_t r = *st * 2685821657736338717ULL;
    return (float)((double)(r >> 40) / (double)(1ull << 24)) - 0.5f; /* [-0.5, 0.5) */
}

/* One F32 tensor [rows, cols] (rows 0: a vector of cols), honouring the
 * omit / reshape / poison knobs. vals (may be NULL: random) has the normal size. */
static inline int tiny_tensor(gguf_writer *w, const tiny_spec *s, uint64_t *st, const char *name,
                              int64_t rows, int64_t cols, const float *vals, float fill)
{
    if (s->omit && strcmp(s->omit, name) == 0)
        return 0;
    bool grow = s->reshape && strcmp(s->reshape, name) == 0;
    int64_t r = rows ? rows + grow : 1, c = rows ? cols : cols + grow;
    size_t n = (size_t)(r * c);
    float *f = malloc(n * sizeof *f);
    if (!f)
        return -1;
    for (size_t i = 0; i < n; i++)
        f[i] = vals && i < (size_t)(rows ? rows : 1) * (size_t)cols ? vals[i]
                                                                    : (fill != 0 ? fill : tiny_rand(st));
    if (s->poison && strcmp(s->poison, name) == 0 && s->poison_at >= 0 && (size_t)s->poison_at < n)
        f[s->poison_at] = s->poison_val;
    int64_t ne[2] = {c, r};
    int type = rows && s->wtype ? s->wtype : XF_TYPE_F32;
    uint64_t rb;
    if (type == XF_TYPE_F32 || !quant_row_bytes(type, c, &rb)) {
        int rc = gguf_writer_add_tensor(w, name, XF_TYPE_F32, rows ? 2 : 1, ne, f, (uint64_t)n * sizeof *f);
        free(f);
        return rc;
    }
    uint8_t *q = malloc((size_t)(rb * (uint64_t)r));
    int rc = -1;
    if (q) {
        for (int64_t i = 0; i < r; i++)
            quant_quantize_row(type, f + i * c, q + (uint64_t)i * rb, c);
        rc = gguf_writer_add_tensor(w, name, type, 2, ne, q, rb * (uint64_t)r);
    }
    free(q);
    free(f);
    return rc;
}

static inline int tiny_vocab(gguf_writer *w, const tiny_spec *s)
{
    int V = tiny_vocab_size(s);
    char **tok = calloc((size_t)V, sizeof *tok);
    int32_t *type = calloc((size_t)V, sizeof *type);
    int rc = -1;
    if (!tok || !type)
        goto out;
    for (int b = 0; b < 256; b++) {
        tok[b] = malloc(3);
        if (!tok[b])
            goto out;
        tiny_bytelevel((unsigned)b, tok[b]);
        type[b] = 1;
    }
    /* "Ġt" = " t", "he", "Ġthe" = " the" */
    static const char *const merged[3] = {"\xc4\xa0t", "he", "\xc4\xa0the"};
    static const char *const merges[3] = {"\xc4\xa0 t", "h e", "\xc4\xa0t he"};
    for (int i = 0; i < 3; i++) {
        tok[256 + i] = strdup(merged[i]);
        type[256 + i] = 1;
    }
    tok[TINY_EOT_ID] = strdup("<|endoftext|>");
    type[TINY_EOT_ID] = 3;
    for (int i = 0; i < s->n_extra; i++) {
        tok[TINY_N_BASE_VOCAB + i] = strdup(s->extra[i]);
        type[TINY_N_BASE_VOCAB + i] = 4;
    }
    for (int i = 256; i < V; i++)
        if (!tok[i])
            goto out;
    rc = gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2") ||
                 gguf_writer_set_str(w, "tokenizer.ggml.pre", s->qwen2 ? "qwen2" : "gpt-2") ||
                 gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tok, (uint64_t)V) ||
                 gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", type, (uint64_t)V) ||
                 gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, 3) ||
                 gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", TINY_EOT_ID) ||
                 gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", TINY_EOT_ID)
             ? -1
             : 0;
out:
    if (tok)
        for (int i = 0; i < V; i++)
            free(tok[i]);
    free(tok);
    free(type);
    return rc;
}

/* The whole model as a writer (add or replace keys before saving); NULL when
 * out of memory or when the spec is inconsistent. */
static inline gguf_writer *tiny_writer(const tiny_spec *s)
{
    gguf_writer *w = gguf_writer_new(3, 32);
    if (!w)
        return NULL;
    uint64_t st = s->seed ? s->seed : 1;
    const char *a = s->qwen2 ? "qwen2" : "gpt2";
    char k[128];
    int rc = s->omit_key && strcmp(s->omit_key, "general.architecture") == 0
                 ? 0
                 : gguf_writer_set_str(w, "general.architecture", a);
    if (s->name)
        rc |= gguf_writer_set_str(w, "general.name", s->name);
    if (!s->no_vocab)
        rc |= tiny_vocab(w, s);
    if (rc || s->vocab_only)
        goto done;
#define KEEP(k) (!s->omit_key || strcmp(s->omit_key, k) != 0)
#define KU(suffix, v)                                                                                        \
    (snprintf(k, sizeof k, "%s." suffix, a), rc |= KEEP(k) ? gguf_writer_set_u32(w, k, (uint32_t)(v)) : 0)
#define KF(suffix, v)                                                                                        \
    (snprintf(k, sizeof k, "%s." suffix, a), rc |= KEEP(k) ? gguf_writer_set_f32(w, k, (v)) : 0)
    KU("block_count", s->n_layer);
    KU("context_length", s->n_ctx);
    KU("embedding_length", s->n_embd);
    KU("feed_forward_length", s->n_ff);
    KU("attention.head_count", s->n_head);
    if (s->qwen2) {
        KU("attention.head_count_kv", s->n_head_kv);
        KF("attention.layer_norm_rms_epsilon", 1e-6f);
        KF("rope.freq_base", 10000.0f);
    } else {
        KF("attention.layer_norm_epsilon", 1e-5f);
    }
#undef KU
#undef KF
#undef KEEP
    if (rc)
        goto done;
    int64_t V = tiny_vocab_size(s), D = s->n_embd, F = s->n_ff, C = s->n_ctx;
    int64_t Dkv = (int64_t)s->n_head_kv * (D / s->n_head);
    float *emb = NULL, *u = NULL;
    if (!s->qwen2 && s->favor >= 0 && s->favor < V) {
        /* the final norm then outputs u whatever the input, and the
         * (tied) logits are u . wte[v]: the favoured row wins by far */
        emb = malloc((size_t)(V * D) * sizeof *emb);
        u = malloc((size_t)D * sizeof *u);
        if (!emb || !u) {
            free(emb);
            free(u);
            rc = -1;
            goto done;
        }
        for (int64_t i = 0; i < V * D; i++)
            emb[i] = tiny_rand(&st) * 0.1f;
        for (int64_t i = 0; i < D; i++) {
            u[i] = (i & 1) ? -1.0f : 1.0f;
            emb[s->favor * D + i] = 4.0f * u[i];
        }
    }
    rc |= tiny_tensor(w, s, &st, "token_embd.weight", V, D, emb, 0);
    if (!s->qwen2)
        rc |= tiny_tensor(w, s, &st, "position_embd.weight", C, D, NULL, 0);
    if (u) {
        rc |= tiny_tensor(w, s, &st, "output_norm.weight", 0, D, NULL, 1e-30f);
        if (!s->qwen2)
            rc |= tiny_tensor(w, s, &st, "output_norm.bias", 0, D, u, 0);
    } else {
        rc |= tiny_tensor(w, s, &st, "output_norm.weight", 0, D, NULL, 1.0f);
        if (!s->qwen2)
            rc |= tiny_tensor(w, s, &st, "output_norm.bias", 0, D, NULL, 0);
    }
    free(emb);
    free(u);
    for (int l = 0; l < s->n_layer && !rc; l++) {
        char n[96];
#define T(suffix, rows, cols, fill)                                                                          \
    (snprintf(n, sizeof n, "blk.%d." suffix, l), rc |= tiny_tensor(w, s, &st, n, rows, cols, NULL, fill))
        T("attn_norm.weight", 0, D, 1.0f);
        T("ffn_norm.weight", 0, D, 1.0f);
        T("attn_output.weight", D, D, 0);
        T("ffn_up.weight", F, D, 0);
        T("ffn_down.weight", D, F, 0);
        if (s->qwen2) {
            T("attn_q.weight", D, D, 0);
            T("attn_k.weight", Dkv, D, 0);
            T("attn_v.weight", Dkv, D, 0);
            T("attn_q.bias", 0, D, 0);
            T("attn_k.bias", 0, Dkv, 0);
            T("attn_v.bias", 0, Dkv, 0);
            T("ffn_gate.weight", F, D, 0);
        } else {
            T("attn_norm.bias", 0, D, 0);
            T("ffn_norm.bias", 0, D, 0);
            T("attn_qkv.weight", 3 * D, D, 0);
            T("attn_qkv.bias", 0, 3 * D, 0);
            T("attn_output.bias", 0, D, 0);
            T("ffn_up.bias", 0, F, 0);
            T("ffn_down.bias", 0, D, 0);
        }
#undef T
    }
done:
    if (rc) {
        gguf_writer_free(w);
        return NULL;
    }
    return w;
}

static inline int tiny_to_mem(const tiny_spec *s, uint8_t **buf, size_t *size)
{
    gguf_writer *w = tiny_writer(s);
    if (!w)
        return -1;
    xf_err err = {{0}};
    int rc = gguf_writer_to_mem(w, buf, size, &err);
    gguf_writer_free(w);
    return rc;
}

static inline int tiny_save(const tiny_spec *s, const char *path)
{
    gguf_writer *w = tiny_writer(s);
    if (!w)
        return -1;
    xf_err err = {{0}};
    int rc = gguf_writer_save(w, path, &err);
    gguf_writer_free(w);
    return rc;
}

/* A key of any scalar type with raw value bytes (the writer has setters for
 * a few types only): a one-key GGUF is built by hand, opened, and the key
 * copied from it. */
static inline int tiny_set_raw(gguf_writer *w, const char *key, uint32_t vtype, const void *val, size_t n)
{
    size_t kl = strlen(key), size = 24 + 8 + kl + 4 + n;
    uint8_t *b = calloc(1, size);
    if (!b)
        return -1;
    uint32_t ver = 3;
    uint64_t nt = 0, nkv = 1, kl64 = kl;
    memcpy(b, "GGUF", 4);
    memcpy(b + 4, &ver, 4);
    memcpy(b + 8, &nt, 8);
    memcpy(b + 16, &nkv, 8);
    memcpy(b + 24, &kl64, 8);
    memcpy(b + 32, key, kl);
    memcpy(b + 32 + kl, &vtype, 4);
    memcpy(b + 36 + kl, val, n);
    xf_err err = {{0}};
    gguf_file *g = gguf_open_mem(b, size, "raw", &err);
    int rc = g ? gguf_writer_copy_kv(w, g, &g->kv[0]) : -1;
    gguf_close(g);
    free(b);
    return rc;
}

/* Offset of the value of KEY in a serialized file (after its type field),
 * found by searching the bytes: independent of the reader under test. */
static inline long long tiny_kv_value_offset(const uint8_t *buf, size_t size, const char *key)
{
    size_t l = strlen(key);
    for (size_t i = 24; i + 8 + l + 4 <= size; i++) {
        uint64_t len;
        memcpy(&len, buf + i, 8);
        if (len == l && memcmp(buf + i + 8, key, l) == 0)
            return (long long)(i + 8 + l + 4);
    }
    return -1;
}

/* Offset of the tensor-info record (its name's length field) of NAME. */
static inline long long tiny_tensor_info_offset(const uint8_t *buf, size_t size, const char *name)
{
    long long o = tiny_kv_value_offset(buf, size, name);
    return o < 0 ? -1 : o - 4 - (long long)strlen(name) - 8;
}

#endif
