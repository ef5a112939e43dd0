/* Writes a Qwen2.5-shaped GGUF with random weights, so that decode speed is
 * measured at the real size (xfdb `bench`, llama.cpp's llama-bench):
 *   0.5b: 24 layers, D 896, 14 heads over 2 KV heads (of 64), F 4864, vocab
 *         151936, output tied to token_embd;
 *   1.5b: 28 layers, D 1536, 12 heads over 2 KV heads (of 128), F 8960,
 *         vocab 151936, its own output.weight.
 * Weight types: f16 (every matrix F16), bf16 (every matrix BF16), or q4km, the mix llama.cpp's
 * Q4_K_M gives these models: Q4_K for the matrices, Q6_K for output (or the
 * tied token_embd) and for attn_v and ffn_down in the "more bits" layers
 * (the first and last eighth, and every third between), Q4_K elsewhere; a
 * matrix whose rows are not a multiple of 256 (every D-wide row of the 0.5B
 * shape: 896 = 3.5 x 256) falls back as llama.cpp does: Q4_K -> Q5_0, Q6_K
 * -> Q8_0; or mxfp4: every layer matrix MXFP4 (ggml type 39, the
 * quantizer of ggml's quantize_row_mxfp4_ref; 896 and 4864 are whole
 * 32-element blocks), token_embd (and so the tied output) Q8_0 (this
 * file's choice: the embedding rows and the head stay 8-bit), file type
 * llama.cpp's MOSTLY_MXFP4_MOE (38). Quantized by the
 * project's own quant_quantize_row. Norms are 1 (F32), the q/k/v biases
 * small random numbers (F32).
 * The vocabulary (tokens, types, merges, pre-tokenizer, special ids) is
 * copied from a vocabulary GGUF, by default ../shared/vocab/ggml-vocab-qwen2.gguf
 * (151936 tokens, as the models'); llama.cpp loads the file as a qwen2.
 * smollm2 (llama architecture: no biases, rope base 1e5, 30 layers, D 576,
 * 9 heads over 3, F 1536, tied) with q41 (Q4_1 matrices, Q8_0 embeddings,
 * as SmolLM2-135M-Instruct's file) and the smollm vocabulary (49152) gives
 * that model's shape with random weights (tests/test_llama_shape.c).
 * Usage: bench_make_qwen2 OUT.gguf 0.5b|1.5b|smollm2 f16|q4km|mxfp4|q41 [VOCAB.gguf]
 * (0.4-3.5 GB: make it where it is used, never commit it). Rows are
 * quantized on all cores (pthreads); the result does not depend on their
 * number. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "gguf_writer.h"
#include "quant.h"
#include "quantize.h"

typedef struct shape {
    const char *name;
    int L, D, H, KV, F, V, C;
    int tied;
    const char *arch; /* "qwen2": q/k/v biases, rope base 1e6; "llama": none, 1e5 */
} shape;

static const shape shapes[] = {
    {"0.5b", 24, 896, 14, 2, 4864, 151936, 32768, 1, "qwen2"},
    {"1.5b", 28, 1536, 12, 2, 8960, 151936, 32768, 0, "qwen2"},
    /* SmolLM2-135M-Instruct's shape (issue 17): llama, 9 heads over 3, tied */
    {"smollm2", 30, 576, 9, 3, 1536, 49152, 8192, 1, "llama"},
};

/* ---- random rows, quantized in parallel ---------------------------------- */

typedef struct job {
    uint8_t *dst;   /* [rows, row_bytes] */
    int type;
    int64_t rows, cols;
    uint64_t row_bytes, seed;
    float amp;      /* values uniform in [-amp, amp) */
    int next;       /* next chunk of rows to take (under mu) */
    pthread_mutex_t mu;
} job;

#define JOB_CHUNK 64

static void fill_row(float *v, int64_t n, uint64_t s, float amp)
{
    s = s * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull; /* per-row stream: any thread count, same bytes */
    for (int64_t i = 0; i < n; i++) {
        s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
        double u = (double)((s * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
        v[i] = (float)((2.0 * u - 1.0) * amp);
    }
}

static void *job_worker(void *arg)
{
    job *j = arg;
    float *v = malloc((size_t)j->cols * sizeof *v);
    if (!v)
        return (void *)1;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        int64_t r0 = (int64_t)j->next++ * JOB_CHUNK;
        pthread_mutex_unlock(&j->mu);
        if (r0 >= j->rows)
            break;
        for (int64_t r = r0; r < r0 + JOB_CHUNK && r < j->rows; r++) {
            fill_row(v, j->cols, j->seed + (uint64_t)r, j->amp);
            if (quant_quantize_row(j->type, v, j->dst + (uint64_t)r * j->row_bytes, j->cols) != j->row_bytes) {
                free(v);
                return (void *)1;
            }
        }
    }
    free(v);
    return NULL;
}

static uint64_t seed_of(const char *name)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a: each tensor its own numbers */
    for (; *name; name++)
        h = (h ^ (uint8_t)*name) * 1099511628211ull;
    return h;
}

/* adds tensor name [rows, cols] of type (rows == 1: a vector) with random values in [-amp, amp), or all `fill` if amp == 0 */
static int add(gguf_writer *w, const char *name, int type, int64_t rows, int64_t cols, float amp, float fill)
{
    uint64_t rb;
    if (!quant_row_bytes(type, cols, &rb))
        return -1;
    uint8_t *buf = malloc((size_t)(rb * rows));
    if (!buf)
        return -1;
    int rc = 0;
    if (amp == 0) {
        float *v = malloc((size_t)cols * sizeof *v);
        if (!v) {
            free(buf);
            return -1;
        }
        for (int64_t i = 0; i < cols; i++)
            v[i] = fill;
        for (int64_t r = 0; r < rows && rc == 0; r++)
            rc = quant_quantize_row(type, v, buf + r * rb, cols) == rb ? 0 : -1;
        free(v);
    } else {
        job j = {.dst = buf, .type = type, .rows = rows, .cols = cols, .row_bytes = rb, .seed = seed_of(name), .amp = amp};
        pthread_mutex_init(&j.mu, NULL);
        long nt = sysconf(_SC_NPROCESSORS_ONLN);
        nt = nt < 1 ? 1 : nt > 64 ? 64 : nt;
        pthread_t th[64];
        long started = 0;
        for (long i = 0; i < nt; i++)
            if (pthread_create(&th[i], NULL, job_worker, &j) == 0)
                started++;
            else
                break;
        for (long i = 0; i < started; i++) {
            void *res;
            pthread_join(th[i], &res);
            if (res)
                rc = -1;
        }
        pthread_mutex_destroy(&j.mu);
        if (started == 0)
            rc = -1;
    }
    int64_t ne[2] = {cols, rows};
    if (rc == 0)
        rc = gguf_writer_add_tensor(w, name, type, rows == 1 ? 1 : 2, ne, buf, rb * rows);
    free(buf);
    return rc;
}

/* llama.cpp's use_more_bits: the layers Q4_K_M gives Q6_K attn_v / ffn_down */
static int more_bits(int l, int n) { return l < n / 8 || l >= 7 * n / 8 || (l - n / 8) % 3 == 2; }

/* the type a q4km matrix with rows of `cols` gets: want, or its fallback */
static int kq_type(int want, int64_t cols)
{
    if (cols % 256 == 0)
        return want;
    return want == XF_TYPE_Q6_K ? XF_TYPE_Q8_0 : XF_TYPE_Q5_0;
}

enum { MIX_F16, MIX_Q4KM, MIX_MXFP4, MIX_Q41, MIX_BF16 };

static int add_layer(gguf_writer *w, const shape *s, int l, int mix)
{
    char nm[64];
    int64_t D = s->D, Dh = s->D / s->H, KVD = (int64_t)s->KV * Dh, F = s->F;
    float a = 0.0346f; /* uniform with std 0.02, as the models' init */
    int q4km = mix == MIX_Q4KM;
    int base = q4km               ? XF_TYPE_Q4_K
               : mix == MIX_MXFP4 ? XF_TYPE_MXFP4
               : mix == MIX_Q41   ? XF_TYPE_Q4_1
               : mix == MIX_BF16  ? XF_TYPE_BF16
                                  : XF_TYPE_F16;
    int bias = strcmp(s->arch, "qwen2") == 0;
    int hi = q4km && more_bits(l, s->L) ? XF_TYPE_Q6_K : base;
    int rc = 0;
#define T(suffix, type, rows, cols, amp, fill)                                                               \
    snprintf(nm, sizeof nm, "blk.%d." suffix, l);                                                            \
    rc |= add(w, nm, q4km && (type) != XF_TYPE_F32 ? kq_type(type, cols) : (type), rows, cols, amp, fill)
    T("attn_norm.weight", XF_TYPE_F32, 1, D, 0.0f, 1.0f);
    T("attn_q.weight", base, D, D, a, 0.0f);
    if (bias) {
        T("attn_q.bias", XF_TYPE_F32, 1, D, 0.1f, 0.0f);
    }
    T("attn_k.weight", base, KVD, D, a, 0.0f);
    if (bias) {
        T("attn_k.bias", XF_TYPE_F32, 1, KVD, 0.1f, 0.0f);
    }
    T("attn_v.weight", hi, KVD, D, a, 0.0f);
    if (bias) {
        T("attn_v.bias", XF_TYPE_F32, 1, KVD, 0.1f, 0.0f);
    }
    T("attn_output.weight", base, D, D, a, 0.0f);
    T("ffn_norm.weight", XF_TYPE_F32, 1, D, 0.0f, 1.0f);
    T("ffn_gate.weight", base, F, D, a, 0.0f);
    T("ffn_up.weight", base, F, D, a, 0.0f);
    T("ffn_down.weight", hi, D, F, a, 0.0f);
#undef T
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s OUT.gguf 0.5b|1.5b|smollm2 f16|bf16|q4km|mxfp4|q41 [VOCAB.gguf]\n",
                argv[0]);
        return 2;
    }
    const shape *s = NULL;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        if (strcmp(argv[2], shapes[i].name) == 0)
            s = &shapes[i];
    int mix = strcmp(argv[3], "q4km") == 0    ? MIX_Q4KM
              : strcmp(argv[3], "mxfp4") == 0 ? MIX_MXFP4
              : strcmp(argv[3], "q41") == 0   ? MIX_Q41
              : strcmp(argv[3], "bf16") == 0  ? MIX_BF16
                                              : MIX_F16;
    int q4km = mix == MIX_Q4KM;
    if (!s || (mix == MIX_F16 && strcmp(argv[3], "f16") != 0)) {
        fprintf(stderr, "%s: shape 0.5b, 1.5b or smollm2, types f16, bf16, q4km, mxfp4 or q41\n", argv[0]);
        return 2;
    }
    const char *vocab = argc > 4 ? argv[4] : "../shared/vocab/ggml-vocab-qwen2.gguf";
    xf_err err = {0};
    gguf_file *g = gguf_open(vocab, &err);
    if (!g) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    gguf_writer *w = gguf_writer_new(3, 32);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key.len > 10 && strncmp(g->kv[i].key.ptr, "tokenizer.", 10) == 0)
            gguf_writer_copy_kv(w, g, &g->kv[i]);
    char name[96];
    snprintf(name, sizeof name, "%s-%s-shaped-random-%s", strcmp(s->arch, "llama") ? "qwen2.5" : "llama", s->name,
             argv[3]);
    gguf_writer_set_str(w, "general.architecture", s->arch);
    gguf_writer_set_str(w, "general.name", name);
    /* llama_ftype: MOSTLY_Q4_K_M, MOSTLY_MXFP4_MOE, MOSTLY_Q4_1, MOSTLY_BF16, MOSTLY_F16 */
    gguf_writer_set_u32(w, "general.file_type",
                        q4km               ? 15
                        : mix == MIX_MXFP4 ? 38
                        : mix == MIX_Q41   ? 3
                        : mix == MIX_BF16  ? 32
                                           : 1);
    char key[96];
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, s->arch), key)
    gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)s->L);
    gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)s->C);
    gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)s->D);
    gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)s->F);
    gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)s->H);
    gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)s->KV);
    gguf_writer_set_f32(w, KEY("rope.freq_base"), strcmp(s->arch, "llama") ? 1000000.0f : 100000.0f);
    gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), strcmp(s->arch, "llama") ? 1e-6f : 1e-5f);
#undef KEY
    /* q41: as SmolLM2-135M's file, Q4_1 matrices and Q8_0 embeddings */
    int out_type = q4km                                 ? kq_type(XF_TYPE_Q6_K, s->D)
                   : mix == MIX_MXFP4 || mix == MIX_Q41 ? XF_TYPE_Q8_0
                   : mix == MIX_BF16                    ? XF_TYPE_BF16
                                                        : XF_TYPE_F16;
    int emb_type = s->tied            ? out_type
                   : q4km             ? kq_type(XF_TYPE_Q4_K, s->D)
                   : mix == MIX_MXFP4 ? XF_TYPE_Q8_0
                   : mix == MIX_BF16  ? XF_TYPE_BF16
                                      : XF_TYPE_F16;
    int rc = add(w, "token_embd.weight", emb_type, s->V, s->D, 0.0346f, 0.0f);
    for (int l = 0; l < s->L && rc == 0; l++)
        rc = add_layer(w, s, l, mix);
    rc |= add(w, "output_norm.weight", XF_TYPE_F32, 1, s->D, 0.0f, 1.0f);
    if (!s->tied)
        rc |= add(w, "output.weight", out_type, s->V, s->D, 0.0346f, 0.0f);
    if (rc != 0 || gguf_writer_save(w, argv[1], &err) != 0) {
        fprintf(stderr, "%s: %s\n", argv[1], rc ? "cannot build the tensors" : err.msg);
        return 1;
    }
    gguf_writer_free(w);
    gguf_close(g);
    printf("wrote %s (%s, %s)\n", argv[1], s->name,
           q4km               ? "Q4_K_M-like mix"
           : mix == MIX_MXFP4 ? "MXFP4 matrices, Q8_0 embeddings"
           : mix == MIX_Q41   ? "Q4_1 matrices, Q8_0 embeddings"
           : mix == MIX_BF16  ? "BF16"
                              : "F16");
    return 0;
}
