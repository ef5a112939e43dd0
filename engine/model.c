#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels.h"
#include "quant.h"
#include "tokenizer.h"

const char *model_arch_name(xf_arch a)
{
    switch (a) {
    case XF_ARCH_GPT2: return "gpt2";
    case XF_ARCH_QWEN2: return "qwen2";
    case XF_ARCH_QWEN3: return "qwen3";
    case XF_ARCH_LLAMA: return "llama";
    default: return "none";
    }
}

static char *str_dup_n(const char *s, size_t n)
{
    char *r = malloc(n + 1);
    if (r) {
        memcpy(r, s, n);
        r[n] = '\0';
    }
    return r;
}

const xf_weight *model_find_weight(const xf_model *m, const char *name)
{
    for (int i = 0; i < m->n_weights; i++)
        if (strcmp(m->weights[i].name, name) == 0)
            return &m->weights[i];
    return NULL;
}

int model_weight_row(const xf_weight *w, int64_t r, float *dst, xf_err *err)
{
    if (r < 0 || r >= w->rows)
        return xf_err_set(err, "%s: row %lld out of range [0, %lld)", w->name, (long long)r, (long long)w->rows);
    uint64_t rb;
    if (!quant_row_bytes(w->type, w->cols, &rb))
        return xf_err_set(err, "%s: bad row size", w->name);
    quant_dequant_row(w->type, (const uint8_t *)w->data + (uint64_t)r * rb, dst, w->cols);
    return 0;
}

static uint64_t wbytes(const xf_weight *w)
{
    return w ? w->bytes : 0;
}

/* n rows (at most all) of an embedding table */
static uint64_t rows_bytes(const xf_weight *w, int64_t n)
{
    if (!w || w->rows < 1)
        return 0;
    if (n > w->rows)
        n = w->rows;
    return w->bytes / (uint64_t)w->rows * (uint64_t)n;
}

uint64_t model_pass_weight_bytes(const xf_model *m, int n_tokens)
{
    if (m->vocab_only || !m->layers)
        return 0;
    uint64_t b = wbytes(m->out_norm) + wbytes(m->out_norm_b) + wbytes(m->output);
    if (!m->tied_output) /* tied: the head reads the whole table, the rows looked up among it */
        b += rows_bytes(m->tok_embd, n_tokens);
    b += rows_bytes(m->pos_embd, n_tokens);
    for (int l = 0; l < m->n_layer; l++) {
        const xf_layer *L = &m->layers[l];
        const xf_weight *w[] = {L->attn_norm, L->attn_norm_b, L->qkv,      L->qkv_b,    L->q,
                                L->q_b,       L->k,           L->k_b,      L->v,        L->v_b,
                                L->q_norm,    L->k_norm,      L->attn_out, L->attn_out_b, L->ffn_norm,
                                L->ffn_norm_b, L->ffn_gate,   L->ffn_up,   L->ffn_up_b, L->ffn_down,
                                L->ffn_down_b};
        for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
            b += wbytes(w[i]);
    }
    return b;
}

/* Looks up a weight and checks its shape: rows==0 means "a vector of cols". */
static xf_weight *need(xf_model *m, const char *name, int64_t rows, int64_t cols, bool optional, xf_err *err,
                       int *fail)
{
    if (*fail)
        return NULL; /* report the first problem, not the last */
    xf_weight *w = (xf_weight *)model_find_weight(m, name);
    if (!w) {
        if (!optional) {
            xf_err_set(err, "%s: tensor '%s' is missing (architecture %s)", m->path, name, model_arch_name(m->arch));
            *fail = 1;
        }
        return NULL;
    }
    w->bound = true;
    const gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    bool ok = rows == 0 ? (w->rows == 1 && w->cols == cols) : ((rows < 0 || w->rows == rows) && w->cols == cols);
    if (!ok) {
        if (rows == 0)
            xf_err_set(err, "%s: tensor '%s' at byte %llu: shape [%lld, %lld], expected [%lld]", m->path, name,
                       (unsigned long long)t->info_offset, (long long)w->rows, (long long)w->cols, (long long)cols);
        else
            xf_err_set(err, "%s: tensor '%s' at byte %llu: shape [%lld, %lld], expected [%lld, %lld]", m->path,
                       name, (unsigned long long)t->info_offset, (long long)w->rows, (long long)w->cols,
                       (long long)rows, (long long)cols);
        *fail = 1;
        return NULL;
    }
    return w;
}

/* Norms and biases are read on every op: keep them as f32 whatever the file
 * stored, so kernels need only one vector type. Also rejects NaN/Inf there:
 * a NaN gamma silently poisons every later tensor. */
static int vectors_to_f32(xf_model *m, xf_err *err)
{
    uint64_t total = 0;
    for (int i = 0; i < m->n_weights; i++)
        if (m->weights[i].rows == 1 && !xf_add_u64(total, (uint64_t)m->weights[i].cols, &total))
            return xf_err_set(err, "%s: vector sizes overflow", m->path);
    m->f32 = malloc((total ? total : 1) * sizeof(float));
    if (!m->f32)
        return xf_err_set(err, "%s: out of memory for %llu vector floats", m->path, (unsigned long long)total);
    float *p = m->f32;
    for (int i = 0; i < m->n_weights; i++) {
        xf_weight *w = &m->weights[i];
        if (w->rows != 1)
            continue;
        if (!quant_type_get(w->type) || !quant_type_get(w->type)->supported)
            return xf_err_set(err, "%s: tensor '%s': type %s not supported", m->path, w->name,
                              quant_type_name(w->type));
        quant_dequant_row(w->type, w->data, p, w->cols);
        for (int64_t j = 0; j < w->cols; j++)
            if (p[j] != p[j] || p[j] - p[j] != 0.0f) {
                const gguf_tensor *t = gguf_find_tensor(m->gguf, w->name);
                return xf_err_set(err, "%s: tensor '%s' at byte %llu: element %lld is %s", m->path, w->name,
                                  (unsigned long long)(m->gguf->data_offset + t->offset), (long long)j,
                                  p[j] != p[j] ? "NaN" : "infinite");
            }
        w->data = p;
        w->type = XF_TYPE_F32;
        w->bytes = (uint64_t)w->cols * sizeof(float);
        p += w->cols;
    }
    return 0;
}

static int get_dim(xf_model *m, const char *key, int *out, uint32_t lo, uint32_t hi, xf_err *err)
{
    uint32_t v;
    if (gguf_get_u32(m->gguf, key, &v, err) != 0)
        return -1;
    if (v < lo || v > hi) {
        const gguf_kv *kv = gguf_find_kv(m->gguf, key);
        return xf_err_set(err, "%s: %s at byte %llu: %u out of range [%u, %u]", m->path, key,
                          (unsigned long long)kv->offset, v, lo, hi);
    }
    *out = (int)v;
    return 0;
}

/* The byte offset of a key's value (for messages; the key was read). */
static unsigned long long kv_at(const xf_model *m, const char *key)
{
    const gguf_kv *kv = gguf_find_kv(m->gguf, key);
    return kv ? (unsigned long long)kv->offset : 0;
}

/* qwen3: the head dimension is attention.key_length (128 for every Qwen3,
 * whatever D/H is), and attention.value_length, when present, must equal
 * it (the caches, kq and kqv take one head_dim for K and V); head_count
 * must still divide by head_count_kv (check_heads). Even, for RoPE. */
static int qwen3_head_dim(xf_model *m, const char *kh, xf_err *err)
{
    static const char kk[] = "qwen3.attention.key_length", kv[] = "qwen3.attention.value_length";
    uint32_t dk, dv;
    if (gguf_get_u32(m->gguf, kk, &dk, err) != 0)
        return -1;
    if (dk < 2 || dk > 4096 || dk % 2 != 0)
        return xf_err_set(err, "%s: %s at byte %llu: %u: must be even and in [2, 4096] (RoPE rotates pairs)",
                          m->path, kk, kv_at(m, kk), dk);
    if (gguf_find_kv(m->gguf, kv)) {
        if (gguf_get_u32(m->gguf, kv, &dv, err) != 0)
            return -1;
        if (dv != dk)
            return xf_err_set(err, "%s: %s at byte %llu: %u differs from %s %u: one head size for K and V only",
                              m->path, kv, kv_at(m, kv), dv, kk, dk);
    }
    if (m->n_head % m->n_head_kv != 0)
        return xf_err_set(err, "%s: %s at byte %llu: %d is not a multiple of head_count_kv %d", m->path, kh,
                          kv_at(m, kh), m->n_head, m->n_head_kv);
    m->head_dim = (int)dk;
    return 0;
}

/* Head counts size the KV cache (n_ctx x head_count_kv x head_dim a layer)
 * and the attention loops, so they must agree with each other and with
 * what each architecture stores per token:
 * - GPT-2 has no grouped-query attention: its cache row is the whole K (or
 *   V) of a token, D values. head_count_kv, when a converter writes it,
 *   must equal head_count; anything else would size the cache for fewer
 *   values than a token stores (issue 14 item 1: a heap overflow from the
 *   43rd token with head_count_kv 1).
 * - Qwen2 and llama share each K/V head among head_count / head_count_kv
 *   query heads: head_count_kv >= 1 and a divisor of head_count (the k and
 *   v tensors are then checked to hold head_count_kv x head_dim rows).
 * - head_dim = embedding_length / head_count must be whole: q, the
 *   attention output and the cache all assume head_count x head_dim == D;
 *   except qwen3, whose head_dim is its own key (qwen3_head_dim).
 * - The RoPE architectures rotate pairs: head_dim must be even. */
static int check_heads(xf_model *m, const char *a, xf_err *err)
{
    char kh[128], kkv[128], ke[128];
    snprintf(kh, sizeof kh, "%s.attention.head_count", a);
    snprintf(kkv, sizeof kkv, "%s.attention.head_count_kv", a);
    snprintf(ke, sizeof ke, "%s.embedding_length", a);
    if (m->arch == XF_ARCH_QWEN3 && gguf_find_kv(m->gguf, "qwen3.attention.key_length"))
        return qwen3_head_dim(m, kh, err);
    if (m->n_embd % m->n_head != 0)
        return xf_err_set(err, "%s: %s at byte %llu: %d is not a multiple of %s %d (at byte %llu)", m->path, ke,
                          kv_at(m, ke), m->n_embd, kh, m->n_head, kv_at(m, kh));
    bool has_kv = gguf_find_kv(m->gguf, kkv) != NULL;
    if (m->arch == XF_ARCH_GPT2 && has_kv && m->n_head_kv != m->n_head)
        return xf_err_set(err,
                          "%s: %s at byte %llu: %d, but gpt2 has no grouped-query attention: it must equal %s "
                          "(%d) or be absent",
                          m->path, kkv, kv_at(m, kkv), m->n_head_kv, kh, m->n_head);
    if (m->n_head % m->n_head_kv != 0)
        return xf_err_set(err, "%s: %s at byte %llu: %d is not a multiple of %s %d (at byte %llu)", m->path, kh,
                          kv_at(m, kh), m->n_head, kkv, m->n_head_kv, kv_at(m, kkv));
    m->head_dim = m->n_embd / m->n_head;
    if (m->arch != XF_ARCH_GPT2 && m->head_dim % 2 != 0)
        return xf_err_set(err, "%s: %s at byte %llu: head dimension %d / %d = %d is odd: RoPE needs pairs", m->path,
                          kh, kv_at(m, kh), m->n_embd, m->n_head, m->head_dim);
    return 0;
}

/* eps and the RoPE base: finite, in range (a NaN passes every < test). */
static int load_floats(xf_model *m, const char *a, xf_err *err)
{
    char key[128];
    snprintf(key, sizeof key, m->arch == XF_ARCH_GPT2 ? "%s.attention.layer_norm_epsilon"
                                                        : "%s.attention.layer_norm_rms_epsilon",
             a);
    if (gguf_get_f32(m->gguf, key, &m->eps, err) != 0)
        return -1;
    if (!(m->eps > 0 && m->eps < 1))
        return xf_err_set(err, "%s: %s at byte %llu: %g: must be in (0, 1)", m->path, key, kv_at(m, key),
                          (double)m->eps);
    m->rope_base = 10000.0f;
    /* llama.cpp's llama uses its normal RoPE (adjacent pairs; its converter
     * permutes HF's q/k rows to match), qwen2 NeoX halves */
    m->rope_mode = m->arch == XF_ARCH_LLAMA ? KERN_ROPE_NORMAL : KERN_ROPE_NEOX;
    if (m->arch != XF_ARCH_GPT2) {
        snprintf(key, sizeof key, "%s.rope.freq_base", a);
        if (gguf_find_kv(m->gguf, key) && gguf_get_f32(m->gguf, key, &m->rope_base, err) != 0)
            return -1;
        if (!(m->rope_base > 1 && isfinite(m->rope_base)))
            return xf_err_set(err, "%s: %s at byte %llu: %g: must be finite and > 1", m->path, key, kv_at(m, key),
                              (double)m->rope_base);
    }
    return 0;
}

/* Optional keys that change the math: where one is present it must say what
 * xfdb computes, or the file is refused (an attack found them ignored, the
 * pass then differing from llama.cpp's without a word):
 * - rope.dimension_count: RoPE over part of a head is not supported, it
 *   must be the head dimension (every RoPE architecture);
 * - attention.key_length / value_length: the head sizes, which xfdb takes
 *   from embedding_length / head_count (qwen3 reads them: qwen3_head_dim);
 * - rope.scaling.type (linear, yarn, ...), rope.scaling.factor and the
 *   older rope.scale_linear: scaled RoPE is not supported; "none" and a
 *   factor of 1 (or 0, "unset") are what xfdb computes;
 * - vocab_size: the rows of token_embd.weight;
 * - attention.sliding_window: at least the context (no position masked).
 * Called once the weights are bound (n_vocab is known), before --ctx
 * narrows n_ctx (the file's context). */
static int check_u32_key(const xf_model *m, const char *key, uint32_t want, const char *what,
                         const char *note, xf_err *err)
{
    uint32_t v;
    if (!gguf_find_kv(m->gguf, key))
        return 0;
    if (gguf_get_u32(m->gguf, key, &v, err) != 0)
        return -1;
    if (v != want)
        return xf_err_set(err, "%s: %s at byte %llu: %u, but %s is %u%s", m->path, key, kv_at(m, key), v,
                          what, want, note);
    return 0;
}

static int check_rope_keys(xf_model *m, xf_err *err)
{
    const char *a = model_arch_name(m->arch);
    char key[128];
    snprintf(key, sizeof key, "%s.vocab_size", a);
    if (check_u32_key(m, key, (uint32_t)m->n_vocab, "the row count of token_embd.weight", "", err) != 0)
        return -1;
    if (m->arch == XF_ARCH_GPT2)
        return 0;
    snprintf(key, sizeof key, "%s.rope.dimension_count", a);
    if (check_u32_key(m, key, (uint32_t)m->head_dim, "the head dimension",
                      " (RoPE over part of a head is not supported)", err) != 0)
        return -1;
    if (m->arch != XF_ARCH_QWEN3) {
        snprintf(key, sizeof key, "%s.attention.key_length", a);
        if (check_u32_key(m, key, (uint32_t)m->head_dim, "the head dimension",
                          " (embedding_length / head_count)", err) != 0)
            return -1;
        snprintf(key, sizeof key, "%s.attention.value_length", a);
        if (check_u32_key(m, key, (uint32_t)m->head_dim, "the head dimension",
                          " (embedding_length / head_count)", err) != 0)
            return -1;
    }
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    if (gguf_find_kv(m->gguf, key)) {
        gguf_str t;
        if (gguf_get_str(m->gguf, key, &t, err) != 0)
            return -1;
        if (!gguf_str_eq(t, "none"))
            return xf_err_set(err, "%s: %s at byte %llu: scaled RoPE is not supported (only 'none')", m->path,
                              key, kv_at(m, key));
    }
    /* a window shorter than the context would mask keys that xfdb attends to */
    snprintf(key, sizeof key, "%s.attention.sliding_window", a);
    if (gguf_find_kv(m->gguf, key)) {
        uint32_t w;
        if (gguf_get_u32(m->gguf, key, &w, err) != 0)
            return -1;
        if (w < (uint32_t)m->n_ctx)
            return xf_err_set(
                err,
                "%s: %s at byte %llu: %u positions, shorter than the context (%d): sliding-window "
                "attention is not supported",
                m->path, key, kv_at(m, key), w, m->n_ctx);
    }
    static const char *const factors[] = {"rope.scaling.factor", "rope.scale_linear"};
    for (size_t i = 0; i < sizeof factors / sizeof *factors; i++) {
        snprintf(key, sizeof key, "%s.%s", a, factors[i]);
        float f;
        if (!gguf_find_kv(m->gguf, key))
            continue;
        if (gguf_get_f32(m->gguf, key, &f, err) != 0)
            return -1;
        if (f != 0.0f && f != 1.0f)
            return xf_err_set(err, "%s: %s at byte %llu: %g: scaled RoPE is not supported (only 1)", m->path,
                              key, kv_at(m, key), (double)f);
    }
    return 0;
}

/* Every tensor of the file must be one the architecture uses: a tensor
 * xfdb does not know (Llama 3's rope_freqs.weight, a bias llama.cpp would
 * add, a layer past block_count) would otherwise be dropped without a
 * word, and the pass would differ from what the file means and from what
 * llama.cpp computes (which refuses such a file: "wrong number of
 * tensors"). */
static int check_all_bound(const xf_model *m, xf_err *err)
{
    for (int i = 0; i < m->n_weights; i++) {
        const xf_weight *w = &m->weights[i];
        if (w->bound)
            continue;
        const gguf_tensor *t = &m->gguf->tensors[i];
        return xf_err_set(err,
                          "%s: tensor '%s' at byte %llu: not used by a %s model of %d layer%s (block_count); "
                          "xfdb would compute without it",
                          m->path, w->name, (unsigned long long)t->info_offset, model_arch_name(m->arch),
                          m->n_layer, m->n_layer == 1 ? "" : "s");
    }
    return 0;
}

static int load_hparams(xf_model *m, const char *a, xf_err *err)
{
    char key[128];
#define DIM(field, suffix, lo, hi)                                                                           \
    do {                                                                                                     \
        snprintf(key, sizeof key, "%s." suffix, a);                                                          \
        if (get_dim(m, key, &m->field, lo, hi, err) != 0)                                                    \
            return -1;                                                                                       \
    } while (0)
    DIM(n_layer, "block_count", 1, 1024);
    DIM(n_ctx, "context_length", 1, 1u << 20);
    DIM(n_embd, "embedding_length", 1, 1u << 16);
    DIM(n_ff, "feed_forward_length", 1, 1u << 18);
    DIM(n_head, "attention.head_count", 1, 4096);
    m->n_head_kv = m->n_head;
    snprintf(key, sizeof key, "%s.attention.head_count_kv", a);
    if (gguf_find_kv(m->gguf, key))
        DIM(n_head_kv, "attention.head_count_kv", 1, 4096);
#undef DIM
    if (check_heads(m, a, err) != 0)
        return -1;
    return load_floats(m, a, err);
}

static int bind_weights(xf_model *m, xf_err *err)
{
    int fail = 0;
    int64_t D = m->n_embd, F = m->n_ff, H = m->n_head, KV = m->n_head_kv, Dh = m->head_dim;
    char nm[96];
    m->tok_embd = need(m, "token_embd.weight", -1, D, false, err, &fail);
    if (fail)
        return -1;
    /* the vocabulary size comes from the embedding; the tokenizer must agree */
    m->n_vocab = (int)m->tok_embd->rows;
    if (m->tok_embd->rows < 1 || m->tok_embd->rows > (1 << 24))
        return xf_err_set(err, "%s: token_embd.weight has %lld rows", m->path, (long long)m->tok_embd->rows);
    if (m->arch == XF_ARCH_GPT2)
        m->pos_embd = need(m, "position_embd.weight", m->n_ctx, D, false, err, &fail);
    m->out_norm = need(m, "output_norm.weight", 0, D, false, err, &fail);
    if (m->arch == XF_ARCH_GPT2)
        m->out_norm_b = need(m, "output_norm.bias", 0, D, false, err, &fail);
    m->output = need(m, "output.weight", m->n_vocab, D, true, err, &fail);
    if (!m->output && !fail) {
        m->output = m->tok_embd;
        m->tied_output = true;
    }
    m->layers = calloc((size_t)m->n_layer, sizeof *m->layers);
    if (!m->layers)
        return xf_err_set(err, "out of memory");
    for (int l = 0; l < m->n_layer && !fail; l++) {
        xf_layer *L = &m->layers[l];
#define W(field, suffix, rows, cols, opt)                                                                    \
    do {                                                                                                     \
        snprintf(nm, sizeof nm, "blk.%d." suffix, l);                                                        \
        L->field = need(m, nm, rows, cols, opt, err, &fail);                                                 \
    } while (0)
        W(attn_norm, "attn_norm.weight", 0, D, false);
        W(ffn_norm, "ffn_norm.weight", 0, D, false);
        W(ffn_up, "ffn_up.weight", F, D, false);
        W(ffn_down, "ffn_down.weight", D, F, false);
        W(attn_out, "attn_output.weight", D, H * Dh, false);
        if (m->arch == XF_ARCH_GPT2) {
            W(attn_norm_b, "attn_norm.bias", 0, D, false);
            W(ffn_norm_b, "ffn_norm.bias", 0, D, false);
            W(qkv, "attn_qkv.weight", 3 * D, D, false);
            W(qkv_b, "attn_qkv.bias", 0, 3 * D, false);
            W(attn_out_b, "attn_output.bias", 0, D, false);
            W(ffn_up_b, "ffn_up.bias", 0, F, false);
            W(ffn_down_b, "ffn_down.bias", 0, D, false);
        } else {
            W(q, "attn_q.weight", H * Dh, D, false);
            W(k, "attn_k.weight", KV * Dh, D, false);
            W(v, "attn_v.weight", KV * Dh, D, false);
            if (m->arch != XF_ARCH_QWEN3) { /* optional: qwen2 has them, llama.cpp's llama may */
                W(q_b, "attn_q.bias", 0, H * Dh, true);
                W(k_b, "attn_k.bias", 0, KV * Dh, true);
                W(v_b, "attn_v.bias", 0, KV * Dh, true);
            }
            if (m->arch == XF_ARCH_QWEN3) { /* no biases; q and k normed per head */
                W(q_norm, "attn_q_norm.weight", 0, Dh, false);
                W(k_norm, "attn_k_norm.weight", 0, Dh, false);
            }
            W(ffn_gate, "ffn_gate.weight", F, D, false);
        }
#undef W
    }
    return fail ? -1 : 0;
}

/* The vocabulary must name every row of token_embd.weight, no more and no
 * fewer. Fewer tokens than rows: generate would pick an id with no text and
 * fail mid-way (an attack, session 26); converters pad the vocabulary to the
 * rows (llama.cpp's [PAD] tokens), and llama.cpp refuses a file whose rows
 * are not its token count. */
static int check_vocab_rows(const xf_model *m, xf_err *err)
{
    if (!m->tok)
        return 0;
    int n = tok_vocab_size(m->tok);
    if (n > m->n_vocab)
        return xf_err_set(err, "%s: vocabulary has %d tokens but token_embd.weight only %d rows", m->path, n,
                          m->n_vocab);
    if (n < m->n_vocab)
        return xf_err_set(
            err, "%s: vocabulary has %d tokens but token_embd.weight %d rows: ids %d..%d have no token",
            m->path, n, m->n_vocab, n, m->n_vocab - 1);
    return 0;
}

xf_model *model_load(const char *path, xf_err *err)
{
    xf_model *m = calloc(1, sizeof *m);
    if (!m) {
        xf_err_set(err, "out of memory");
        return NULL;
    }
    m->path = strdup(path);
    if (!m->path) {
        xf_err_set(err, "out of memory");
        goto fail;
    }
    m->gguf = gguf_open(path, err);
    if (!m->gguf)
        goto fail;

    if (gguf_find_kv(m->gguf, "tokenizer.ggml.tokens")) {
        m->tok = tok_new_from_gguf(m->gguf, err);
        if (!m->tok)
            goto fail;
    }
    gguf_str s;
    if (gguf_find_kv(m->gguf, "general.name") && gguf_get_str(m->gguf, "general.name", &s, NULL) == 0)
        m->name = str_dup_n(s.ptr, s.len);
    else {
        const char *b = strrchr(path, '/');
        m->name = strdup(b ? b + 1 : path);
    }
    if (!m->name) {
        xf_err_set(err, "out of memory");
        goto fail;
    }

    if (m->gguf->n_tensors == 0) {
        if (!m->tok) {
            xf_err_set(err, "%s: no tensors and no vocabulary: nothing to load", path);
            goto fail;
        }
        m->vocab_only = true;
        m->n_vocab = tok_vocab_size(m->tok);
        return m;
    }

    if (gguf_get_str(m->gguf, "general.architecture", &s, err) != 0)
        goto fail;
    if (gguf_str_eq(s, "gpt2"))
        m->arch = XF_ARCH_GPT2;
    else if (gguf_str_eq(s, "qwen2"))
        m->arch = XF_ARCH_QWEN2;
    else if (gguf_str_eq(s, "qwen3"))
        m->arch = XF_ARCH_QWEN3;
    else if (gguf_str_eq(s, "llama"))
        m->arch = XF_ARCH_LLAMA;
    else {
        const gguf_kv *kv = gguf_find_kv(m->gguf, "general.architecture");
        char esc[80];
        size_t j = 0;
        for (uint64_t i = 0; i < s.len && j + 5 < sizeof esc; i++) {
            unsigned char c = (unsigned char)s.ptr[i];
            j += (size_t)snprintf(esc + j, sizeof esc - j, (c >= 32 && c < 127 && c != '\\') ? "%c" : "\\x%02x", c);
        }
        xf_err_set(err, "%s: general.architecture at byte %llu: '%s' is not supported (gpt2, qwen2, qwen3, llama)",
                   path, (unsigned long long)kv->offset, esc);
        goto fail;
    }
    if (load_hparams(m, model_arch_name(m->arch), err) != 0)
        goto fail;

    m->weights = calloc((size_t)m->gguf->n_tensors, sizeof *m->weights);
    if (m->weights)
        m->n_weights = (int)m->gguf->n_tensors; /* model_free walks n_weights entries */
    if (!m->weights) {
        xf_err_set(err, "out of memory");
        goto fail;
    }
    for (int i = 0; i < m->n_weights; i++) {
        const gguf_tensor *t = &m->gguf->tensors[i];
        xf_weight *w = &m->weights[i];
        w->name = str_dup_n(t->name.ptr, t->name.len);
        if (!w->name) {
            xf_err_set(err, "out of memory");
            goto fail;
        }
        if (t->n_dims > 2 && (t->ne[2] != 1 || t->ne[3] != 1)) {
            xf_err_set(err, "%s: tensor '%s' at byte %llu: %d dimensions; weights are 1-D or 2-D", path, w->name,
                       (unsigned long long)t->info_offset, t->n_dims);
            goto fail;
        }
        w->data = t->data;
        w->type = t->type;
        w->cols = t->ne[0];
        w->rows = t->ne[1];
        w->bytes = t->size;
        w->id = i;
        if (!xf_add_u64(m->weight_bytes, t->size, &m->weight_bytes)) {
            xf_err_set(err, "%s: tensor sizes overflow", path);
            goto fail;
        }
        const quant_type_info *qi = quant_type_get(t->type);
        if (!qi || !qi->supported) {
            xf_err_set(err, "%s: tensor '%s' at byte %llu: type %s is not supported", path, w->name,
                       (unsigned long long)t->info_offset, quant_type_name(t->type));
            goto fail;
        }
    }
    if (bind_weights(m, err) != 0 || check_all_bound(m, err) != 0 || vectors_to_f32(m, err) != 0)
        goto fail;
    if (check_rope_keys(m, err) != 0)
        goto fail;
    if (check_vocab_rows(m, err) != 0)
        goto fail;
    return m;
fail:
    model_free(m);
    return NULL;
}

int model_kv_bytes(const xf_model *m, uint64_t *out)
{
    uint64_t b = 2 * sizeof(float);
    const int f[] = {m->n_layer, m->n_ctx, m->n_head_kv, m->head_dim};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        if (f[i] < 0 || !xf_mul_u64(b, (uint64_t)f[i], &b))
            return -1;
    *out = b;
    return 0;
}

/* The KV cache is allocated whole by exec_new (engine/exec.c). Each factor of its size is
 * bounded at load, their product is not: a 1.3 MB file's context_length
 * asked for 275 GB (an attack, session 26), and on the CPU the pages come
 * lazily, so the allocation succeeds and the process is killed later, in
 * the middle of a pass. A cache in host memory larger than the machine's
 * memory is refused here (a device refuses its own allocation). */
int model_kv_check(const xf_model *m, bool host, xf_err *err)
{
    uint64_t kv;
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    uint64_t ram = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : UINT64_MAX;
    bool over = model_kv_bytes(m, &kv) != 0;
    if (!over && (!host || kv <= ram))
        return 0;
    char need[32];
    if (over)
        snprintf(need, sizeof need, "more than 2^64");
    else
        snprintf(need, sizeof need, "%llu", (unsigned long long)kv);
    return xf_err_set(
        err,
        "%s: a KV cache of %d positions needs %s bytes (%d layers x 2 x %d positions x %d kv heads x "
        "%d x 4), more than this machine's memory (%llu bytes): use fewer positions (xfdb --ctx N)",
        m->path, m->n_ctx, need, m->n_layer, m->n_ctx, m->n_head_kv, m->head_dim, (unsigned long long)ram);
}

int model_check_unchanged(const xf_model *m, xf_err *err)
{
    return m ? gguf_check_unchanged(m->gguf, err) : 0;
}

void model_free(xf_model *m)
{
    if (!m)
        return;
    if (m->tok)
        tok_free(m->tok);
    for (int i = 0; i < m->n_weights; i++)
        free((char *)m->weights[i].name);
    free(m->weights);
    free(m->layers);
    free(m->f32);
    free(m->name);
    gguf_close(m->gguf);
    free(m->path);
    free(m);
}
