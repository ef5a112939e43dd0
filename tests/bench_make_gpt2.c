/* Writes a GPT-2 124M-shaped GGUF (12 layers, D=768, 12 heads, vocab 50257,
 * context 1024) with random weights, so that speed is measured at the real
 * size. The vocabulary is copied from the default model (the same 50257
 * GPT-2 tokens). Usage: bench_make_gpt2 OUT.gguf [f16|f32] [SOURCE.gguf]
 * (250-500 MB: make it where it is used, never commit it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "gguf_writer.h"
#include "quant.h"

enum { L = 12, D = 768, H = 12, F = 3072, V = 50257, C = 1024 };

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static float gauss(void)
{
    /* Box-Muller over xorshift: init as GPT-2 does, N(0, 0.02) */
    double u1, u2;
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    u1 = ((rng * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0) + 1e-300;
    rng ^= rng >> 12, rng ^= rng << 25, rng ^= rng >> 27;
    u2 = ((rng * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(0.02 * sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
}

static int add(gguf_writer *w, const char *name, int type, int64_t rows, int64_t cols, float fill)
{
    int64_t n = rows * cols;
    int64_t ne[2] = {cols, rows};
    size_t esz = type == XF_TYPE_F16 ? 2 : 4;
    uint8_t *buf = malloc((size_t)n * esz);
    if (!buf)
        return -1;
    for (int64_t i = 0; i < n; i++) {
        float v = isnan(fill) ? gauss() : fill;
        if (type == XF_TYPE_F16) {
            uint16_t h = xf_f32_to_f16(v);
            memcpy(buf + i * 2, &h, 2);
        } else
            memcpy(buf + i * 4, &v, 4);
    }
    int rc = gguf_writer_add_tensor(w, name, type, rows == 1 ? 1 : 2, ne, buf, (uint64_t)n * esz);
    free(buf);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s OUT.gguf [f16|f32] [SOURCE.gguf]\n", argv[0]);
        return 2;
    }
    int mt = argc > 2 && strcmp(argv[2], "f32") == 0 ? XF_TYPE_F32 : XF_TYPE_F16;
    const char *src = argc > 3 ? argv[3] : "models/tiny-shakespeare-gpt2-f16.gguf";
    xf_err err = {0};
    gguf_file *g = gguf_open(src, &err);
    if (!g) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    gguf_writer *w = gguf_writer_new(3, 32);
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key.len > 10 && strncmp(g->kv[i].key.ptr, "tokenizer.", 10) == 0)
            gguf_writer_copy_kv(w, g, &g->kv[i]);
    gguf_writer_set_str(w, "general.architecture", "gpt2");
    gguf_writer_set_str(w, "general.name", mt == XF_TYPE_F16 ? "gpt2-124m-shaped-random-f16" : "gpt2-124m-shaped-random-f32");
    gguf_writer_set_u32(w, "gpt2.block_count", L);
    gguf_writer_set_u32(w, "gpt2.context_length", C);
    gguf_writer_set_u32(w, "gpt2.embedding_length", D);
    gguf_writer_set_u32(w, "gpt2.feed_forward_length", F);
    gguf_writer_set_u32(w, "gpt2.attention.head_count", H);
    gguf_writer_set_f32(w, "gpt2.attention.layer_norm_epsilon", 1e-5f);
    int rc = 0;
    rc |= add(w, "token_embd.weight", mt, V, D, NAN);
    rc |= add(w, "position_embd.weight", mt, C, D, NAN);
    char nm[64];
    for (int l = 0; l < L; l++) {
#define T(suffix, type, rows, cols, fill)                                                                    \
    snprintf(nm, sizeof nm, "blk.%d." suffix, l);                                                            \
    rc |= add(w, nm, type, rows, cols, fill)
        T("attn_norm.weight", XF_TYPE_F32, 1, D, 1.0f);
        T("attn_norm.bias", XF_TYPE_F32, 1, D, 0.0f);
        T("attn_qkv.weight", mt, 3 * D, D, NAN);
        T("attn_qkv.bias", XF_TYPE_F32, 1, 3 * D, 0.0f);
        T("attn_output.weight", mt, D, D, NAN);
        T("attn_output.bias", XF_TYPE_F32, 1, D, 0.0f);
        T("ffn_norm.weight", XF_TYPE_F32, 1, D, 1.0f);
        T("ffn_norm.bias", XF_TYPE_F32, 1, D, 0.0f);
        T("ffn_up.weight", mt, F, D, NAN);
        T("ffn_up.bias", XF_TYPE_F32, 1, F, 0.0f);
        T("ffn_down.weight", mt, D, F, NAN);
        T("ffn_down.bias", XF_TYPE_F32, 1, D, 0.0f);
#undef T
    }
    rc |= add(w, "output_norm.weight", XF_TYPE_F32, 1, D, 1.0f);
    rc |= add(w, "output_norm.bias", XF_TYPE_F32, 1, D, 0.0f);
    if (rc != 0 || gguf_writer_save(w, argv[1], &err) != 0) {
        fprintf(stderr, "%s: %s\n", argv[1], rc ? "cannot build the tensors" : err.msg);
        return 1;
    }
    gguf_writer_free(w);
    gguf_close(g);
    printf("wrote %s\n", argv[1]);
    return 0;
}
