/* model: hyperparameters and weights of one architecture (gpt2, qwen2, qwen3, llama) read
 * from a GGUF file, validated against each other. Matrices stay in the file's
 * type and in the copy of the file gguf_open read; 1-D tensors (norms, biases) are converted to f32
 * and owned here. A vocabulary-only GGUF loads with vocab_only set. */
#ifndef XF_MODEL_H
#define XF_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "gguf.h"

typedef enum xf_arch { XF_ARCH_NONE = 0, XF_ARCH_GPT2, XF_ARCH_QWEN2, XF_ARCH_QWEN3, XF_ARCH_LLAMA } xf_arch;

/* One weight: a matrix [rows, cols] (cols innermost) or a vector [cols]
 * (rows == 1). data is host memory: the map, or `f32` below. */
typedef struct xf_weight {
    const char *name;      /* GGUF name, NUL-terminated copy owned by the model */
    const void *data;
    int type;              /* XF_TYPE_* */
    int64_t rows, cols;
    uint64_t bytes;
    int id;                /* index in model->weights */
    bool bound;            /* the architecture uses it (model_load refuses a file with one it does not) */
} xf_weight;

typedef struct xf_layer {
    xf_weight *attn_norm, *attn_norm_b;           /* [D] */
    xf_weight *qkv, *qkv_b;                       /* gpt2: [3D, D], [3D] */
    xf_weight *q, *q_b, *k, *k_b, *v, *v_b;       /* qwen2, llama: [H*Dh, D], [KV*Dh, D] (+bias); qwen3: no bias */
    xf_weight *q_norm, *k_norm;                   /* qwen3: [Dh], RMSNorm of each q / k head */
    xf_weight *attn_out, *attn_out_b;             /* [D, H*Dh] */
    xf_weight *ffn_norm, *ffn_norm_b;             /* [D] */
    xf_weight *ffn_gate;                          /* qwen2, llama: [F, D] */
    xf_weight *ffn_up, *ffn_up_b;                 /* [F, D] */
    xf_weight *ffn_down, *ffn_down_b;             /* [D, F] */
} xf_layer;

typedef struct xf_model {
    char *path;
    gguf_file *gguf;
    xf_arch arch;
    bool vocab_only;        /* no tensors: tokenizing only */
    char *name;             /* general.name, or the file name */
    int n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, n_ctx, n_vocab; /* head_dim: D/H, or qwen3's key_length */
    float eps;              /* layernorm / rmsnorm epsilon */
    float rope_base;        /* qwen2, llama */
    int rope_mode;          /* KERN_ROPE_NEOX (qwen2) or KERN_ROPE_NORMAL (llama: adjacent pairs) */
    xf_weight *tok_embd;    /* [V, D] */
    xf_weight *pos_embd;    /* gpt2: [n_ctx, D] */
    xf_weight *out_norm, *out_norm_b; /* [D] */
    xf_weight *output;      /* [V, D]; == tok_embd when tied */
    bool tied_output;
    xf_layer *layers;       /* [n_layer] */
    xf_weight *weights;     /* every tensor of the file, in file order */
    int n_weights;
    uint64_t weight_bytes;  /* sum of tensor sizes */
    float *f32;             /* storage of converted vectors */
    struct xf_tokenizer *tok; /* NULL if the file has no vocabulary */
} xf_model;

xf_model *model_load(const char *path, xf_err *err);
/* 0 while the file the model was read from is unchanged on disk; else -1
 * with "PATH: the file changed on disk since it was loaded (...)" (see
 * gguf_check_unchanged). The weights in memory stay valid (a copy); call it
 * at the start of each pass so that nobody debugs weights that are no
 * longer in the file. */
int model_check_unchanged(const xf_model *m, xf_err *err);
void model_free(xf_model *m);
/* Bytes of weights one pass of n_tokens tokens reads at the least (bench's
 * memory floor): every matrix the pass multiplies (each layer's and the
 * output head), the norms and biases (the f32 copies the kernels read), and
 * of the embedding tables only the n_tokens rows looked up (at most all),
 * unless the head is tied to the token embedding: it then reads the table
 * whole (counted once). Not the KV cache nor activations. 0 for a
 * vocabulary-only model. */
uint64_t model_pass_weight_bytes(const xf_model *m, int n_tokens);
/* Bytes of the KV cache for m->n_ctx positions (n_layer x 2 x n_ctx x
 * n_head_kv x head_dim f32); -1 when that overflows 64 bits. */
int model_kv_bytes(const xf_model *m, uint64_t *out);
/* 0 when the KV cache of m->n_ctx positions can be allocated: its size does
 * not overflow and, host (the cache lives in host memory), is at most the
 * machine's physical memory; else -1 with an error naming the factors and
 * --ctx. */
int model_kv_check(const xf_model *m, bool host, xf_err *err);
const char *model_arch_name(xf_arch a);
/* By GGUF name, or NULL. */
const xf_weight *model_find_weight(const xf_model *m, const char *name);
/* Dequantize row r of a weight into dst[cols]; -1 if out of range. */
int model_weight_row(const xf_weight *w, int64_t r, float *dst, xf_err *err);

#endif
