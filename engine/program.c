#include "program.h"

#include <ctype.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct builder {
    xf_program *p;
    int cap;
    const xf_model *m;
    int n, pos0, n_kv;
} builder;

static xf_op *add(builder *b, int layer, const char *short_name, kern_op kind, int in0, int in1)
{
    xf_op *op = &b->p->ops[b->p->n_ops++];
    memset(op, 0, sizeof *op);
    if (layer >= 0)
        snprintf(op->name, sizeof op->name, "blk.%d.%s", layer, short_name);
    else
        snprintf(op->name, sizeof op->name, "%s", short_name);
    op->short_name = short_name;
    op->kind = kind;
    op->layer = layer;
    op->in0 = in0;
    op->in1 = in1;
    op->args.n = b->n;
    op->args.pos0 = b->pos0;
    op->args.n_kv = b->n_kv;
    return op;
}

static void shape2(xf_op *op, int64_t a, int64_t c)
{
    op->ndim = 2;
    op->shape[0] = a;
    op->shape[1] = c;
    op->numel = a * c;
}

static void shape3(xf_op *op, int64_t a, int64_t c, int64_t d)
{
    op->ndim = 3;
    op->shape[0] = a;
    op->shape[1] = c;
    op->shape[2] = d;
    op->numel = a * c * d;
}

static int last(builder *b) { return b->p->n_ops - 1; }

static int norm(builder *b, int layer, const char *nm, int in, const xf_weight *w, const xf_weight *bias)
{
    const xf_model *m = b->m;
    xf_op *op = add(b, layer, nm, m->arch == XF_ARCH_GPT2 ? KERN_OP_NORM : KERN_OP_RMSNORM, in, -1);
    op->w = w;
    op->b = bias;
    op->args.k = m->n_embd;
    op->args.eps = m->eps;
    shape2(op, b->n, m->n_embd);
    return last(b);
}

static int matmul(builder *b, int layer, const char *nm, int in, const xf_weight *w, const xf_weight *bias)
{
    xf_op *op = add(b, layer, nm, KERN_OP_MATMUL, in, -1);
    op->w = w;
    op->b = bias;
    op->args.k = w->cols;
    op->args.m = w->rows;
    op->args.w_type = w->type;
    shape2(op, b->n, w->rows);
    return last(b);
}

static int attention(builder *b, int l, int q, int k_src, int v_src)
{
    const xf_model *m = b->m;
    (void)k_src;
    (void)v_src;
    xf_op *op = add(b, l, "kq", KERN_OP_KQ, q, -1);
    op->args.n_head = m->n_head;
    op->args.n_head_kv = m->n_head_kv;
    op->args.head_dim = m->head_dim;
    op->args.scale = (float)(1.0 / sqrt((double)m->head_dim));
    shape3(op, m->n_head, b->n, b->n_kv);
    int kq = last(b);
    op = add(b, l, "kq_soft", KERN_OP_SOFTMAX, kq, -1);
    /* softmax sees [H*n rows, n_kv] */
    op->args.n = (int64_t)m->n_head * b->n;
    op->args.m = b->n_kv;
    shape3(op, m->n_head, b->n, b->n_kv);
    int sm = last(b);
    op = add(b, l, "kqv", KERN_OP_KQV, sm, -1);
    op->args.n_head = m->n_head;
    op->args.n_head_kv = m->n_head_kv;
    op->args.head_dim = m->head_dim;
    shape2(op, b->n, (int64_t)m->n_head * m->head_dim);
    return last(b);
}

/* qwen3's per-head RMSNorm of q or k (HF Qwen3RMSNorm over head_dim): the
 * RMSNORM kernel over n*heads rows of Dh; the shape stays [n, heads, Dh]. */
static int head_norm(builder *b, int layer, const char *nm, int in, const xf_weight *w, int heads)
{
    const xf_model *m = b->m;
    xf_op *op = add(b, layer, nm, KERN_OP_RMSNORM, in, -1);
    op->w = w;
    op->args.n = (int64_t)b->n * heads;
    op->args.k = m->head_dim;
    op->args.eps = m->eps;
    shape3(op, b->n, heads, m->head_dim);
    return last(b);
}

static int elementwise(builder *b, int layer, const char *nm, kern_op kind, int in0, int in1, int64_t width)
{
    xf_op *op = add(b, layer, nm, kind, in0, in1);
    op->args.k = width;
    shape2(op, b->n, width);
    return last(b);
}

static int build(builder *b)
{
    const xf_model *m = b->m;
    int64_t D = m->n_embd, H = m->n_head, KV = m->n_head_kv, Dh = m->head_dim, F = m->n_ff;
    xf_op *op = add(b, -1, "embd", KERN_OP_EMBD, -1, -1);
    op->w = m->tok_embd;
    op->w2 = m->pos_embd;
    op->args.k = D;
    op->args.w_type = m->tok_embd->type;
    op->args.w2_type = m->pos_embd ? m->pos_embd->type : 0;
    shape2(op, b->n, D);
    int x = last(b);
    for (int l = 0; l < m->n_layer; l++) {
        const xf_layer *L = &m->layers[l];
        int an = norm(b, l, "attn_norm", x, L->attn_norm, L->attn_norm_b);
        int q, k, v;
        if (m->arch == XF_ARCH_GPT2) {
            int qkv = matmul(b, l, "qkv", an, L->qkv, L->qkv_b);
            static const char *const nm[3] = {"q", "k", "v"};
            int ids[3];
            for (int i = 0; i < 3; i++) {
                op = add(b, l, nm[i], KERN_OP_VIEW, qkv, -1);
                op->args.k = 3 * D;
                op->args.m = D;
                op->args.x_stride = 3 * D;
                op->args.off = i * D;
                op->cache = i == 1 ? XF_CACHE_K : i == 2 ? XF_CACHE_V : XF_CACHE_NONE;
                shape3(op, b->n, H, Dh);
                ids[i] = last(b);
            }
            q = ids[0];
            k = ids[1];
            v = ids[2];
        } else {
            q = matmul(b, l, "q", an, L->q, L->q_b);
            shape3(&b->p->ops[q], b->n, H, Dh);
            k = matmul(b, l, "k", an, L->k, L->k_b);
            shape3(&b->p->ops[k], b->n, KV, Dh);
            v = matmul(b, l, "v", an, L->v, L->v_b);
            shape3(&b->p->ops[v], b->n, KV, Dh);
            b->p->ops[v].cache = XF_CACHE_V;
            if (m->arch == XF_ARCH_QWEN3) {
                q = head_norm(b, l, "q_norm", q, L->q_norm, (int)H);
                k = head_norm(b, l, "k_norm", k, L->k_norm, (int)KV);
            }
            op = add(b, l, "q_rope", KERN_OP_ROPE, q, -1);
            op->args.n_head = (int)H;
            op->args.head_dim = (int)Dh;
            op->args.rope_base = m->rope_base;
            op->args.rope_mode = m->rope_mode;
            shape3(op, b->n, H, Dh);
            q = last(b);
            op = add(b, l, "k_rope", KERN_OP_ROPE, k, -1);
            op->args.n_head = (int)KV;
            op->args.head_dim = (int)Dh;
            op->args.rope_base = m->rope_base;
            op->args.rope_mode = m->rope_mode;
            op->cache = XF_CACHE_K;
            shape3(op, b->n, KV, Dh);
            k = last(b);
        }
        int kqv = attention(b, l, q, k, v);
        int ao = matmul(b, l, "attn_out", kqv, L->attn_out, L->attn_out_b);
        int fi = elementwise(b, l, "ffn_inp", KERN_OP_ADD, x, ao, D);
        int fn = norm(b, l, "ffn_norm", fi, L->ffn_norm, L->ffn_norm_b);
        int act;
        if (m->arch == XF_ARCH_GPT2) {
            int up = matmul(b, l, "ffn_up", fn, L->ffn_up, L->ffn_up_b);
            act = elementwise(b, l, "ffn_act", KERN_OP_GELU, up, -1, F);
        } else {
            int gate = matmul(b, l, "ffn_gate", fn, L->ffn_gate, NULL);
            int up = matmul(b, l, "ffn_up", fn, L->ffn_up, NULL);
            act = elementwise(b, l, "ffn_act", KERN_OP_SWIGLU, gate, up, F);
        }
        int fo = matmul(b, l, "ffn_out", act, L->ffn_down, L->ffn_down_b);
        x = elementwise(b, l, "out", KERN_OP_ADD, fi, fo, D);
    }
    int on = norm(b, -1, "out_norm", x, m->out_norm, m->out_norm_b);
    matmul(b, -1, "logits", on, m->output, NULL);
    return 0;
}

int program_build(const xf_model *m, int n_tokens, int pos0, xf_program *p, xf_err *err)
{
    memset(p, 0, sizeof *p);
    if (m->vocab_only)
        return xf_err_set(err, "%s is a vocabulary-only file: load a model with weights", m->path);
    if (n_tokens < 1)
        return xf_err_set(err, "a pass needs at least one token");
    if (pos0 < 0 || n_tokens > m->n_ctx - pos0)
        return xf_err_set(err, "context full: %d tokens at position %d exceed the context length %d", n_tokens,
                          pos0, m->n_ctx);
    builder b = {.p = p, .m = m, .n = n_tokens, .pos0 = pos0, .n_kv = pos0 + n_tokens};
    b.cap = 4 + m->n_layer * 20;
    p->ops = calloc((size_t)b.cap, sizeof *p->ops);
    if (!p->ops)
        return xf_err_set(err, "out of memory");
    p->n_tokens = n_tokens;
    p->pos0 = pos0;
    p->n_kv = pos0 + n_tokens;
    build(&b);
    return 0;
}

void program_free(xf_program *p)
{
    free(p->ops);
    memset(p, 0, sizeof *p);
}

int program_find(const xf_program *p, const char *name)
{
    for (int i = 0; i < p->n_ops; i++)
        if (strcmp(p->ops[i].name, name) == 0)
            return i;
    return -1;
}

int program_names(const xf_model *m, char ***names, int *n, xf_err *err)
{
    xf_program p;
    if (program_build(m, 1, 0, &p, err) != 0)
        return -1;
    char **v = calloc((size_t)p.n_ops, sizeof *v);
    if (!v) {
        program_free(&p);
        return xf_err_set(err, "out of memory");
    }
    for (int i = 0; i < p.n_ops; i++) {
        v[i] = strdup(p.ops[i].name);
        if (!v[i]) {
            program_names_free(v, i);
            program_free(&p);
            return xf_err_set(err, "out of memory");
        }
    }
    *names = v;
    *n = p.n_ops;
    program_free(&p);
    return 0;
}

void program_names_free(char **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* --- aliases --------------------------------------------------------------- */

typedef struct alias {
    const char *from; /* llama.cpp graph name prefix (before "-L") */
    const char *to;   /* canonical short name */
} alias;

/* llama.cpp graph names, as its eval-callback prints them */
static const alias k_llama[] = {
    {"attn_norm", "attn_norm"}, {"Qcur", "q"},          {"Kcur", "k"},         {"Vcur", "v"},
    {"kq", "kq"},               {"kq_soft_max", "kq_soft"}, {"kqv_out", "kqv"}, {"attn_out", "attn_out"},
    {"ffn_inp", "ffn_inp"},     {"ffn_norm", "ffn_norm"}, {"ffn_gate", "ffn_gate"}, {"ffn_up", "ffn_up"},
    {"ffn_act", "ffn_act"},     {"ffn_out", "ffn_out"}, {"l_out", "out"},      {"wqkv", "qkv"},
    {"Qcur_normed", "q_norm"},  {"Kcur_normed", "k_norm"},
};

/* HF module paths below transformer.h.L / model.layers.L */
static const alias k_hf[] = {
    {"ln_1", "attn_norm"},           {"attn.c_attn", "qkv"},         {"attn.c_proj", "attn_out"},
    {"ln_2", "ffn_norm"},            {"mlp.c_fc", "ffn_up"},         {"mlp.act", "ffn_act"},
    {"mlp.c_proj", "ffn_out"},       {"input_layernorm", "attn_norm"}, {"self_attn.q_proj", "q"},
    {"self_attn.k_proj", "k"},       {"self_attn.v_proj", "v"},      {"self_attn.o_proj", "attn_out"},
    {"post_attention_layernorm", "ffn_norm"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
    {"mlp.act_fn", "ffn_act"},       {"mlp.down_proj", "ffn_out"},   {"", "out"},
    {"self_attn.q_norm", "q_norm"},  {"self_attn.k_norm", "k_norm"},
};

/* short forms: q3 = blk.3.q */
static const char *const k_short[] = {"attn_norm", "qkv", "q_rope", "k_rope", "q_norm", "k_norm", "q", "k", "v",
                                      "kq_soft", "kqv", "kq", "attn_out", "ffn_inp", "ffn_norm", "ffn_gate",
                                      "ffn_up", "ffn_act", "ffn_out", "out"};

static bool parse_layer(const char *s, int *l, const char **rest)
{
    if (!isdigit((unsigned char)*s))
        return false;
    char *end;
    long v = strtol(s, &end, 10);
    if (v < 0 || v > 100000)
        return false;
    *l = (int)v;
    *rest = end;
    return true;
}

int program_resolve_alias(const char *name, char *out, size_t out_size)
{
    int l;
    const char *rest;
    if (strcmp(name, "result_norm") == 0 || strcmp(name, "transformer.ln_f") == 0 ||
        strcmp(name, "model.norm") == 0) {
        snprintf(out, out_size, "out_norm");
        return 1;
    }
    if (strcmp(name, "result_output") == 0 || strcmp(name, "lm_head") == 0) {
        snprintf(out, out_size, "logits");
        return 1;
    }
    if (strcmp(name, "inp_embd") == 0 || strcmp(name, "model.embed_tokens") == 0) {
        snprintf(out, out_size, "embd");
        return 1;
    }
    /* llama.cpp: NAME-L */
    const char *dash = strrchr(name, '-');
    if (dash && parse_layer(dash + 1, &l, &rest) && *rest == '\0') {
        size_t len = (size_t)(dash - name);
        for (size_t i = 0; i < sizeof k_llama / sizeof k_llama[0]; i++)
            if (strlen(k_llama[i].from) == len && strncmp(name, k_llama[i].from, len) == 0) {
                snprintf(out, out_size, "blk.%d.%s", l, k_llama[i].to);
                return 1;
            }
    }
    /* HF: transformer.h.L.X / model.layers.L.X */
    const char *pre[] = {"transformer.h.", "model.layers."};
    for (int k = 0; k < 2; k++) {
        size_t pl = strlen(pre[k]);
        if (strncmp(name, pre[k], pl) == 0 && parse_layer(name + pl, &l, &rest)) {
            if (*rest == '.')
                rest++;
            else if (*rest != '\0')
                break;
            for (size_t i = 0; i < sizeof k_hf / sizeof k_hf[0]; i++)
                if (strcmp(rest, k_hf[i].from) == 0) {
                    snprintf(out, out_size, "blk.%d.%s", l, k_hf[i].to);
                    return 1;
                }
        }
    }
    /* short: q3, kq_soft3, attn_norm0 */
    for (size_t i = 0; i < sizeof k_short / sizeof k_short[0]; i++) {
        size_t sl = strlen(k_short[i]);
        if (strncmp(name, k_short[i], sl) == 0 && parse_layer(name + sl, &l, &rest) && *rest == '\0') {
            snprintf(out, out_size, "blk.%d.%s", l, k_short[i]);
            return 1;
        }
    }
    snprintf(out, out_size, "%s", name);
    return 0;
}

bool program_glob_match(const char *pattern, const char *canonical)
{
    if (fnmatch(pattern, canonical, 0) == 0)
        return true;
    char res[XF_NAME_MAX];
    if (program_resolve_alias(pattern, res, sizeof res) && strcmp(res, canonical) == 0)
        return true;
    return false;
}
