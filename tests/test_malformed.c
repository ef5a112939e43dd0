/* Hostile input across modules (issue 9): GGUF files that the reader accepts
 * but model_load must refuse (missing tensors, shapes and types that do not
 * fit the architecture, hyperparameters of the wrong type or absurd size,
 * NaN/Inf in norms, broken vocabularies), truncations of a whole model at
 * every header boundary through model_load, broken safetensors reaching the
 * REPL through `ref load` and NAME@ref, hostile command lines and slices,
 * the REPL still usable after every failure, and sandboxed Lua scripts
 * trying every indirect route out of the sandbox. Each case asserts the exact
 * error text; byte offsets are found by searching the file's bytes, not by
 * asking the reader under test. GGUF-level parsing cases live in
 * test_gguf.c and safetensors ones in test_refdump.c.
 *
 * The files of tests/fixtures/evil/ (used by tests/cli/malformed_files.sh)
 * are built here too: test_evil_fixtures checks that they are what these
 * builders make; XF_REGEN_EVIL=1 rewrites them. */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <lauxlib.h>
#include <lua.h>

#include "fuzz/tinymodel.h"
#include "model.h"
#include "refdump.h"
#include "repl.h"
#include "commands.h"
#include "run.h"
#include "view.h"
#include "record.h"
#include "sessions.h"
#include "tensor.h"
#include "testutil.h"

/* --- helpers -------------------------------------------------------------------- */

typedef struct blob {
    uint8_t *b;
    size_t n;
    char path[1024];
} blob;

static void blob_write(blob *x)
{
    FILE *f = fopen(x->path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(x->b, 1, x->n, f), x->n);
    assert_int_equal(fclose(f), 0);
}

/* serializes w (and frees it) into x and a fresh temp file */
static void blob_from(blob *x, gguf_writer *w)
{
    assert_non_null(w);
    xf_err err = {{0}};
    if (gguf_writer_to_mem(w, &x->b, &x->n, &err) != 0)
        fail_msg("%s", err.msg);
    gguf_writer_free(w);
    tu_tmp_path(x->path, sizeof x->path, ".gguf");
    blob_write(x);
}

static void blob_free(blob *x)
{
    unlink(x->path);
    free(x->b);
    x->b = NULL;
}

static gguf_writer *spec_writer(const tiny_spec *s)
{
    gguf_writer *w = tiny_writer(s);
    assert_non_null(w);
    return w;
}

static void expect_model_error(const blob *x, const char *want)
{
    xf_err err = {{0}};
    xf_model *m = model_load(x->path, &err);
    if (m) {
        model_free(m);
        fail_msg("model_load accepted a file it must refuse; wanted: %s", want);
    }
    if (strcmp(err.msg, want) != 0)
        fail_msg("model_load error\n got: %s\nwant: %s", err.msg, want);
}

static long long kv_off(const blob *x, const char *key)
{
    long long o = tiny_kv_value_offset(x->b, x->n, key);
    assert_true(o > 0);
    return o;
}

static long long tinfo_off(const blob *x, const char *name)
{
    long long o = tiny_tensor_info_offset(x->b, x->n, name);
    assert_true(o > 0);
    return o;
}

/* index of KEY in the file's kv table */
static int kv_index(const blob *x, const char *key)
{
    xf_err err = {{0}};
    gguf_file *g = gguf_open_mem(x->b, x->n, "x", &err);
    assert_non_null(g);
    const gguf_kv *kv = gguf_find_kv(g, key);
    assert_non_null(kv);
    int i = (int)(kv - g->kv);
    gguf_close(g);
    return i;
}

/* a NaN with a payload no random weight has, so its bytes can be found */
static float marked_nan(void)
{
    uint32_t u = 0x7fc0beefu;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static long long find_bytes(const blob *x, const void *pat, size_t n)
{
    for (size_t i = 0; i + n <= x->n; i++)
        if (memcmp(x->b + i, pat, n) == 0)
            return (long long)i;
    fail_msg("pattern not in file");
    return -1;
}

static void gpt2(tiny_spec *s)
{
    tiny_spec_default(s);
}

static void qwen2(tiny_spec *s)
{
    tiny_spec_default(s);
    s->qwen2 = true;
    s->n_embd = 16;
    s->n_head = 4;
    s->n_head_kv = 2;
}

/* --- model_load: tensors against the architecture --------------------------------- */

static void test_missing_tensor(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    s.omit = "blk.0.attn_qkv.weight";
    blob x;
    blob_from(&x, spec_writer(&s));
    char want[2048];
    snprintf(want, sizeof want, "%s: tensor 'blk.0.attn_qkv.weight' is missing (architecture gpt2)", x.path);
    expect_model_error(&x, want);
    blob_free(&x);
}

static void test_missing_token_embd(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    s.omit = "token_embd.weight";
    blob x;
    blob_from(&x, spec_writer(&s));
    char want[2048];
    snprintf(want, sizeof want, "%s: tensor 'token_embd.weight' is missing (architecture gpt2)", x.path);
    expect_model_error(&x, want);
    blob_free(&x);
}

static void test_missing_output_norm_bias(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    s.omit = "output_norm.bias";
    blob x;
    blob_from(&x, spec_writer(&s));
    char want[2048];
    snprintf(want, sizeof want, "%s: tensor 'output_norm.bias' is missing (architecture gpt2)", x.path);
    expect_model_error(&x, want);
    blob_free(&x);
}

static void test_qwen2_missing_k(void **state)
{
    (void)state;
    tiny_spec s;
    qwen2(&s);
    s.omit = "blk.0.attn_k.weight";
    blob x;
    blob_from(&x, spec_writer(&s));
    char want[2048];
    snprintf(want, sizeof want, "%s: tensor 'blk.0.attn_k.weight' is missing (architecture qwen2)", x.path);
    expect_model_error(&x, want);
    blob_free(&x);
}

/* one wrong shape per case: the message names the tensor, its record and both shapes */
static void expect_shape_error(bool is_qwen2, const char *name, const char *got, const char *expected)
{
    tiny_spec s;
    if (is_qwen2)
        qwen2(&s);
    else
        gpt2(&s);
    s.reshape = name;
    blob x;
    blob_from(&x, spec_writer(&s));
    char want[2048];
    snprintf(want, sizeof want, "%s: tensor '%s' at byte %lld: shape %s, expected %s", x.path, name,
             tinfo_off(&x, name), got, expected);
    expect_model_error(&x, want);
    blob_free(&x);
}

static void test_shape_qkv(void **state)
{
    (void)state;
    /* D = 8: c_attn is [3D, D] */
    expect_shape_error(false, "blk.0.attn_qkv.weight", "[25, 8]", "[24, 8]");
}

static void test_shape_norm(void **state)
{
    (void)state;
    expect_shape_error(false, "blk.0.attn_norm.weight", "[1, 9]", "[8]");
}

static void test_shape_position_embd(void **state)
{
    (void)state;
    /* n_ctx = 16 rows */
    expect_shape_error(false, "position_embd.weight", "[17, 8]", "[16, 8]");
}

static void test_shape_ffn_down(void **state)
{
    (void)state;
    /* F = 16: mlp c_proj is [D, F] */
    expect_shape_error(false, "blk.0.ffn_down.weight", "[9, 16]", "[8, 16]");
}

static void test_shape_qwen2_k_gqa(void **state)
{
    (void)state;
    /* D 16, 4 heads of 4, 2 kv heads: k_proj is [2*4, 16] */
    expect_shape_error(true, "blk.0.attn_k.weight", "[9, 16]", "[8, 16]");
}

static void test_shape_qwen2_q_bias(void **state)
{
    (void)state;
    expect_shape_error(true, "blk.0.attn_q.bias", "[1, 17]", "[16]");
}

static void test_shape_untied_output(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    gguf_writer *w = spec_writer(&s);
    /* an optional output.weight that is there must fit too: [V, D] */
    static float f[8 * 261];
    int64_t ne[2] = {8, 261};
    assert_int_equal(gguf_writer_add_tensor(w, "output.weight", XF_TYPE_F32, 2, ne, f, sizeof f), 0);
    blob x;
    blob_from(&x, w);
    char want[2048];
    snprintf(want, sizeof want, "%s: tensor 'output.weight' at byte %lld: shape [261, 8], expected [260, 8]",
             x.path, tinfo_off(&x, "output.weight"));
    expect_model_error(&x, want);
    blob_free(&x);
}

static void test_three_dim_weight(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    s.omit = "blk.0.attn_output.weight";
    gguf_writer *w = spec_writer(&s);
    static float f[8 * 4 * 2];
    int64_t ne[3] = {8, 4, 2};
    assert_int_equal(gguf_writer_add_tensor(w, "blk.0.attn_output.weight", XF_TYPE_F32, 3, ne, f, sizeof f),
                     0);
    blob x;
    blob_from(&x, w);
    char want[2048];
    snprintf(want, sizeof want,
             "%s: tensor 'blk.0.attn_output.weight' at byte %lld: 3 dimensions; weights are 1-D or 2-D",
             x.path, tinfo_off(&x, "blk.0.attn_output.weight"));
    expect_model_error(&x, want);
    blob_free(&x);
}

/* a type the reader knows but nothing can compute with: the F32 type id of a
 * vector patched to I32 (same element size, so the file stays consistent) */
static void test_unsupported_type(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    blob x;
    blob_from(&x, spec_writer(&s));
    const char *name = "blk.0.ffn_up.bias";
    long long info = tinfo_off(&x, name);
    size_t type_at = (size_t)info + 8 + strlen(name) + 4 + 8 * 1;
    uint32_t ty;
    memcpy(&ty, x.b + type_at, 4);
    assert_int_equal(ty, XF_TYPE_F32);
    ty = 26; /* GGML_TYPE_I32 */
    memcpy(x.b + type_at, &ty, 4);
    blob_write(&x);
    char want[2048];
    snprintf(want, sizeof want, "%s: tensor '%s' at byte %lld: type I32 is not supported", x.path, name,
             info);
    expect_model_error(&x, want);
    blob_free(&x);
}

static void test_vocab_larger_than_embedding(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    s.omit = "token_embd.weight";
    gguf_writer *w = spec_writer(&s);
    static float f[8 * 259];
    int64_t ne[2] = {8, 259};
    assert_int_equal(gguf_writer_add_tensor(w, "token_embd.weight", XF_TYPE_F32, 2, ne, f, sizeof f), 0);
    blob x;
    blob_from(&x, w);
    char want[2048];
    snprintf(want, sizeof want, "%s: vocabulary has 260 tokens but token_embd.weight only 259 rows", x.path);
    expect_model_error(&x, want);
    blob_free(&x);
}

/* B2 regression (fixed in 66c15e2): when several tensors of a layer are missing,
 * need() overwrites the error at every later miss, so the message names the
 * last missing tensor of the layer (blk.1.ffn_down.bias) instead of the
 * first (blk.1.attn_norm.weight). Fix in engine/model.c need(): set the
 * error only when *fail is still 0. */
static void test_bug_b2_block_count_more_than_layers(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    gguf_writer *w = spec_writer(&s);
    assert_int_equal(gguf_writer_set_u32(w, "gpt2.block_count", 2), 0);
    blob x;
    blob_from(&x, w);
    char want[2048];
    snprintf(want, sizeof want, "%s: tensor 'blk.1.attn_norm.weight' is missing (architecture gpt2)", x.path);
    expect_model_error(&x, want);
    blob_free(&x);
}

/* --- model_load: NaN / Inf in the vectors ------------------------------------------ */

static void expect_poison_error(const char *name, int at, float v, const char *what)
{
    tiny_spec s;
    gpt2(&s);
    s.poison = name;
    s.poison_at = at;
    s.poison_val = v;
    blob x;
    blob_from(&x, spec_writer(&s));
    long long start = find_bytes(&x, &v, sizeof v) - 4LL * at;
    char want[2048];
    snprintf(want, sizeof want, "%s: tensor '%s' at byte %lld: element %d is %s", x.path, name, start, at,
             what);
    expect_model_error(&x, want);
    blob_free(&x);
}

static void test_nan_in_norm(void **state)
{
    (void)state;
    expect_poison_error("blk.0.attn_norm.weight", 3, marked_nan(), "NaN");
}

static void test_inf_in_bias(void **state)
{
    (void)state;
    expect_poison_error("blk.0.ffn_up.bias", 5, INFINITY, "infinite");
}

static void test_neg_inf_in_final_norm(void **state)
{
    (void)state;
    expect_poison_error("output_norm.bias", 7, -INFINITY, "infinite");
}

/* a NaN in a matrix is not looked for at load (that would read every weight):
 * the model loads, and the NaN shows up at run time */
static void test_nan_in_matrix_loads(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    s.poison = "blk.0.ffn_up.weight";
    s.poison_at = 0;
    s.poison_val = marked_nan();
    blob x;
    blob_from(&x, spec_writer(&s));
    xf_err err = {{0}};
    xf_model *m = model_load(x.path, &err);
    if (!m)
        fail_msg("%s", err.msg);
    model_free(m);
    blob_free(&x);
}

/* --- model_load: hyperparameters ------------------------------------------------------ */

static void expect_kv_error(const tiny_spec *s, void (*edit)(gguf_writer *), const char *key,
                            const char *fmt_tail)
{
    gguf_writer *w = spec_writer(s);
    if (edit)
        edit(w);
    blob x;
    blob_from(&x, w);
    char want[2048];
    snprintf(want, sizeof want, "%s: kv[%d] '%s' at byte %lld: %s", x.path, kv_index(&x, key), key,
             kv_off(&x, key), fmt_tail);
    expect_model_error(&x, want);
    blob_free(&x);
}

static void expect_range_error(const tiny_spec *s, void (*edit)(gguf_writer *), const char *key,
                               const char *tail)
{
    gguf_writer *w = spec_writer(s);
    edit(w);
    blob x;
    blob_from(&x, w);
    char want[2048];
    snprintf(want, sizeof want, "%s: %s at byte %lld: %s", x.path, key, kv_off(&x, key), tail);
    expect_model_error(&x, want);
    blob_free(&x);
}

/* "FILE: KEY at byte N: TAIL (at byte M)", M the offset of key2 */
static void expect_pair_error(const tiny_spec *s, void (*edit)(gguf_writer *), const char *key, const char *tail,
                              const char *key2)
{
    gguf_writer *w = spec_writer(s);
    if (edit)
        edit(w);
    blob x;
    blob_from(&x, w);
    char want[2048];
    snprintf(want, sizeof want, "%s: %s at byte %lld: %s (at byte %lld)", x.path, key, kv_off(&x, key), tail,
             kv_off(&x, key2));
    expect_model_error(&x, want);
    blob_free(&x);
}

static void ed_block_count_str(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_str(w, "gpt2.block_count", "1"), 0);
}
static void ed_block_count_2p31(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_u32(w, "gpt2.block_count", 1u << 31), 0);
}
static void ed_block_count_0(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_u32(w, "gpt2.block_count", 0), 0);
}
static void ed_ctx_0(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_u32(w, "gpt2.context_length", 0), 0);
}
static void ed_ctx_huge(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_u32(w, "gpt2.context_length", (1u << 20) + 1), 0);
}
static void ed_embd_2p40(gguf_writer *w)
{
    uint64_t v = 1ull << 40;
    assert_int_equal(tiny_set_raw(w, "gpt2.embedding_length", GGUF_VT_UINT64, &v, 8), 0);
}
static void ed_embd_neg(gguf_writer *w)
{
    int32_t v = -8;
    assert_int_equal(tiny_set_raw(w, "gpt2.embedding_length", GGUF_VT_INT32, &v, 4), 0);
}
static void ed_ff_float(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_f32(w, "gpt2.feed_forward_length", 16), 0);
}
static void ed_heads_bool(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_bool(w, "gpt2.attention.head_count", true), 0);
}
static void ed_eps_str(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_str(w, "gpt2.attention.layer_norm_epsilon", "1e-5"), 0);
}
static void ed_eps_0(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_f32(w, "gpt2.attention.layer_norm_epsilon", 0), 0);
}
static void ed_eps_nan(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_f32(w, "gpt2.attention.layer_norm_epsilon", NAN), 0);
}
static void ed_heads_3(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_u32(w, "gpt2.attention.head_count", 3), 0);
}
static void ed_kv_heads_3(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_u32(w, "qwen2.attention.head_count_kv", 3), 0);
}
static void ed_gpt2_kv_1(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_u32(w, "gpt2.attention.head_count_kv", 1), 0);
}

static void ed_gpt2_kv_2(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_u32(w, "gpt2.attention.head_count_kv", 2), 0);
}

static void ed_qwen2_kv_8(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_u32(w, "qwen2.attention.head_count_kv", 8), 0);
}

static void ed_qwen_embd_6(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_u32(w, "qwen2.embedding_length", 6), 0);
    assert_int_equal(gguf_writer_set_u32(w, "qwen2.attention.head_count", 2), 0);
    assert_int_equal(gguf_writer_set_u32(w, "qwen2.attention.head_count_kv", 2), 0);
}
static void ed_rope_1(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_f32(w, "qwen2.rope.freq_base", 1.0f), 0);
}
static void ed_rope_nan(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_f32(w, "qwen2.rope.freq_base", NAN), 0);
}
static void ed_arch_llama(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "llama"), 0);
}
static void ed_arch_esc(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "\x1b[2Jgpt2\x07"), 0);
}
static void ed_arch_u32(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_u32(w, "general.architecture", 2), 0);
}

static void test_block_count_string(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_kv_error(&s, ed_block_count_str, "gpt2.block_count", "expected an integer (uint32), got string");
}

static void test_block_count_2p31(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_range_error(&s, ed_block_count_2p31, "gpt2.block_count", "2147483648 out of range [1, 1024]");
}

static void test_block_count_0(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_range_error(&s, ed_block_count_0, "gpt2.block_count", "0 out of range [1, 1024]");
}

static void test_context_length_0(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_range_error(&s, ed_ctx_0, "gpt2.context_length", "0 out of range [1, 1048576]");
}

static void test_context_length_huge(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_range_error(&s, ed_ctx_huge, "gpt2.context_length", "1048577 out of range [1, 1048576]");
}

static void test_embedding_2p40(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_kv_error(&s, ed_embd_2p40, "gpt2.embedding_length",
                    "value 1099511627776 (uint64) does not fit uint32");
}

static void test_embedding_negative(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_kv_error(&s, ed_embd_neg, "gpt2.embedding_length", "value -8 (int32) does not fit uint32");
}

static void test_ffn_length_float(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_kv_error(&s, ed_ff_float, "gpt2.feed_forward_length", "expected an integer (uint32), got float32");
}

static void test_head_count_bool(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_kv_error(&s, ed_heads_bool, "gpt2.attention.head_count", "expected an integer (uint32), got bool");
}

static void test_eps_string(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_kv_error(&s, ed_eps_str, "gpt2.attention.layer_norm_epsilon",
                    "expected float32 or float64, got string");
}

static void expect_plain_error(const tiny_spec *s, void (*edit)(gguf_writer *), const char *tail)
{
    gguf_writer *w = spec_writer(s);
    if (edit)
        edit(w);
    blob x;
    blob_from(&x, w);
    char want[2048];
    snprintf(want, sizeof want, "%s: %s", x.path, tail);
    expect_model_error(&x, want);
    blob_free(&x);
}

static void test_eps_zero(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_range_error(&s, ed_eps_0, "gpt2.attention.layer_norm_epsilon", "0: must be in (0, 1)");
}

static void test_eps_nan(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_range_error(&s, ed_eps_nan, "gpt2.attention.layer_norm_epsilon", "nan: must be in (0, 1)");
}

static void test_eps_missing(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    s.omit_key = "gpt2.attention.layer_norm_epsilon";
    expect_plain_error(&s, NULL, "key 'gpt2.attention.layer_norm_epsilon': not found");
}

static void test_block_count_missing(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    s.omit_key = "gpt2.block_count";
    expect_plain_error(&s, NULL, "key 'gpt2.block_count': not found");
}

static void test_heads_do_not_divide(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_pair_error(&s, ed_heads_3, "gpt2.embedding_length", "8 is not a multiple of gpt2.attention.head_count 3",
                      "gpt2.attention.head_count");
}

static void test_kv_heads_do_not_divide(void **state)
{
    (void)state;
    tiny_spec s;
    qwen2(&s);
    expect_pair_error(&s, ed_kv_heads_3, "qwen2.attention.head_count",
                      "4 is not a multiple of qwen2.attention.head_count_kv 3", "qwen2.attention.head_count_kv");
}

/* issue 14 item 1: GPT-2 with head_count_kv 1 sized the KV cache for
 * n_ctx x 1 x head_dim values, but a GPT-2 token stores D = head_count x
 * head_dim: from the 43rd token of a prompt the cache store overflowed */
static void test_gpt2_head_count_kv_1(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_range_error(&s, ed_gpt2_kv_1, "gpt2.attention.head_count_kv",
                       "1, but gpt2 has no grouped-query attention: it must equal gpt2.attention.head_count (2) or "
                       "be absent");
}

/* the same key equal to head_count is what some converters write: fine */
static void test_gpt2_head_count_kv_equal_loads(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    gguf_writer *w = spec_writer(&s);
    ed_gpt2_kv_2(w);
    blob x;
    blob_from(&x, w);
    xf_err err = {{0}};
    xf_model *m = model_load(x.path, &err);
    if (!m)
        fail_msg("%s", err.msg);
    assert_int_equal(m->n_head_kv, m->n_head);
    model_free(m);
    blob_free(&x);
}

/* more K/V heads than query heads */
static void test_qwen2_kv_more_than_heads(void **state)
{
    (void)state;
    tiny_spec s;
    qwen2(&s);
    expect_pair_error(&s, ed_qwen2_kv_8, "qwen2.attention.head_count",
                      "4 is not a multiple of qwen2.attention.head_count_kv 8", "qwen2.attention.head_count_kv");
}

static void test_qwen2_odd_head_dim(void **state)
{
    (void)state;
    tiny_spec s;
    qwen2(&s);
    expect_range_error(&s, ed_qwen_embd_6, "qwen2.attention.head_count", "head dimension 6 / 2 = 3 is odd: RoPE needs pairs");
}

static void test_rope_base_1(void **state)
{
    (void)state;
    tiny_spec s;
    qwen2(&s);
    expect_range_error(&s, ed_rope_1, "qwen2.rope.freq_base", "1: must be finite and > 1");
}

static void test_rope_base_nan(void **state)
{
    (void)state;
    tiny_spec s;
    qwen2(&s);
    expect_range_error(&s, ed_rope_nan, "qwen2.rope.freq_base", "nan: must be finite and > 1");
}

static void test_arch_unknown(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_range_error(&s, ed_arch_llama, "general.architecture", "'llama' is not supported (gpt2, qwen2)");
}

static void test_arch_control_bytes(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_range_error(&s, ed_arch_esc, "general.architecture",
                       "'\\x1b[2Jgpt2\\x07' is not supported (gpt2, qwen2)");
}

static void test_arch_missing(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    s.omit_key = "general.architecture";
    expect_plain_error(&s, NULL, "key 'general.architecture': not found");
}

static void test_arch_not_string(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_kv_error(&s, ed_arch_u32, "general.architecture", "expected string, got uint32");
}

static void test_nothing_to_load(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    s.vocab_only = true;
    s.no_vocab = true;
    expect_plain_error(&s, NULL, "no tensors and no vocabulary: nothing to load");
}

static void test_vocab_only_loads(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    s.vocab_only = true;
    blob x;
    blob_from(&x, spec_writer(&s));
    xf_err err = {{0}};
    xf_model *m = model_load(x.path, &err);
    if (!m)
        fail_msg("%s", err.msg);
    assert_true(m->vocab_only);
    assert_int_equal(m->n_vocab, TINY_N_BASE_VOCAB);
    model_free(m);
    blob_free(&x);
}

/* --- model_load: the vocabulary --------------------------------------------------------- */

static void ed_types_short(gguf_writer *w)
{
    int32_t t[259];
    for (int i = 0; i < 259; i++)
        t[i] = 1;
    assert_int_equal(gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", t, 259), 0);
}
static void ed_bos_999(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 999), 0);
}
static void ed_tok_model_llama(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_str(w, "tokenizer.ggml.model", "llama"), 0);
}
static void ed_tokens_u32(gguf_writer *w)
{
    int32_t t[3] = {1, 2, 3};
    assert_int_equal(gguf_writer_set_arr_i32(w, "tokenizer.ggml.tokens", t, 3), 0);
}

static void test_vocab_type_count(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_range_error(&s, ed_types_short, "tokenizer.ggml.token_type", "259 entries for 260 tokens");
}

static void test_vocab_bos_outside(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_range_error(&s, ed_bos_999, "tokenizer.ggml.bos_token_id",
                       "token id 999 is outside the vocabulary (260 tokens)");
}

static void test_vocab_model_unknown(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_range_error(&s, ed_tok_model_llama, "tokenizer.ggml.model",
                       "\"llama\" is not supported (only byte-level BPE \"gpt2\")");
}

static void test_vocab_tokens_not_strings(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_kv_error(&s, ed_tokens_u32, "tokenizer.ggml.tokens",
                    "expected array of string, got array of int32");
}

/* --- model_load: a whole model cut at every header boundary -------------------------- */

/* offsets where a field of the header, a kv or a tensor-info record starts,
 * walked by hand over the tiny model's bytes */
static size_t header_boundaries(const blob *x, size_t *cuts, size_t max, size_t *data_off)
{
    size_t n = 0, p = 24;
    const uint8_t *b = x->b;
    uint64_t nt, nkv;
    memcpy(&nt, b + 8, 8);
    memcpy(&nkv, b + 16, 8);
    cuts[n++] = 0;
    cuts[n++] = 4;
    cuts[n++] = 8;
    cuts[n++] = 16;
    for (uint64_t i = 0; i < nkv && n + 3 < max; i++) {
        cuts[n++] = p;
        uint64_t kl;
        memcpy(&kl, b + p, 8);
        p += 8 + kl;
        cuts[n++] = p; /* the value type */
        uint32_t t;
        memcpy(&t, b + p, 4);
        p += 4;
        static const int sz[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
        if (t == GGUF_VT_STRING) {
            uint64_t l;
            memcpy(&l, b + p, 8);
            p += 8 + l;
        } else if (t == GGUF_VT_ARRAY) {
            uint32_t et;
            uint64_t an;
            memcpy(&et, b + p, 4);
            memcpy(&an, b + p + 4, 8);
            p += 12;
            for (uint64_t k = 0; k < an; k++) {
                if (et == GGUF_VT_STRING) {
                    uint64_t l;
                    memcpy(&l, b + p, 8);
                    p += 8 + l;
                } else
                    p += (size_t)sz[et];
            }
        } else
            p += (size_t)sz[t];
    }
    for (uint64_t i = 0; i < nt && n + 2 < max; i++) {
        cuts[n++] = p;
        uint64_t l;
        memcpy(&l, b + p, 8);
        p += 8 + l;
        uint32_t nd;
        memcpy(&nd, b + p, 4);
        cuts[n++] = p; /* n_dims */
        p += 4 + 8 * (size_t)nd + 4 + 8;
    }
    *data_off = (p + 31) / 32 * 32;
    cuts[n++] = p;
    cuts[n++] = *data_off;
    cuts[n++] = x->n - 1;
    return n;
}

static void test_truncated_everywhere(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    blob full;
    blob_from(&full, spec_writer(&s));
    size_t cuts[512], data_off;
    size_t n = header_boundaries(&full, cuts, 512, &data_off);
    assert_true(n > 40);
    for (size_t i = 0; i < n; i++) {
        blob x = {0};
        x.n = cuts[i];
        x.b = malloc(x.n ? x.n : 1);
        memcpy(x.b, full.b, x.n);
        tu_tmp_path(x.path, sizeof x.path, ".gguf");
        blob_write(&x);
        xf_err err = {{0}};
        xf_model *m = model_load(x.path, &err);
        if (m)
            fail_msg("model_load accepted the model cut at byte %zu", cuts[i]);
        char want[2048];
        /* the header fields, exactly */
        if (cuts[i] == 0)
            snprintf(want, sizeof want, "%s: magic at byte 0: not a GGUF file (0 bytes)", x.path);
        else if (cuts[i] == 4)
            snprintf(want, sizeof want,
                     "%s: version at byte 4: unexpected end of file (need 4 bytes, 0 left)", x.path);
        else if (cuts[i] == 8)
            snprintf(want, sizeof want,
                     "%s: n_tensors at byte 8: unexpected end of file (need 8 bytes, 0 left)", x.path);
        else if (cuts[i] == 16)
            snprintf(want, sizeof want, "%s: n_kv at byte 16: unexpected end of file (need 8 bytes, 0 left)",
                     x.path);
        else
            want[0] = 0;
        if (want[0] && strcmp(err.msg, want) != 0)
            fail_msg("cut at %zu:\n got: %s\nwant: %s", cuts[i], err.msg, want);
        /* everywhere: one line naming the file and a byte offset not past the cut */
        snprintf(want, sizeof want, "%s: ", x.path);
        const char *at = strstr(err.msg, " at byte ");
        if (strncmp(err.msg, want, strlen(want)) != 0 || !at || strchr(err.msg, '\n'))
            fail_msg("cut at %zu: malformed error: %s", cuts[i], err.msg);
        unsigned long long off = strtoull(at + 9, NULL, 10);
        if (off > cuts[i])
            fail_msg("cut at %zu: error names byte %llu past the end: %s", cuts[i], off, err.msg);
        if (!strstr(err.msg, "end of file") && !strstr(err.msg, "cannot fit") &&
            !strstr(err.msg, "not a GGUF file"))
            fail_msg("cut at %zu: error does not say the file ends: %s", cuts[i], err.msg);
        blob_free(&x);
    }
    blob_free(&full);
}

/* the last tensor's data runs one byte past the end */
static void test_data_past_end(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    blob x;
    blob_from(&x, spec_writer(&s));
    uint64_t nt;
    memcpy(&nt, x.b + 8, 8);
    /* the tiny model writes ffn_down.bias (8 floats) last, ending the file */
    const char *name = "blk.0.ffn_down.bias";
    long long info = tinfo_off(&x, name);
    long long off_field = info + 8 + (long long)strlen(name) + 4 + 8 + 4;
    size_t full = x.n;
    x.n--;
    blob_write(&x);
    char want[2048];
    snprintf(want, sizeof want,
             "%s: tensor_info[%llu].offset at byte %lld: data [%zu, %zu) past end of file (size %zu)", x.path,
             (unsigned long long)nt - 1, off_field, full - 32, full, full - 1);
    expect_model_error(&x, want);
    blob_free(&x);
}

static void test_misaligned_offset(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    blob x;
    blob_from(&x, spec_writer(&s));
    const char *name = "token_embd.weight"; /* the first tensor: offset 0 */
    long long info = tinfo_off(&x, name);
    size_t off_field = (size_t)info + 8 + strlen(name) + 4 + 16 + 4;
    uint64_t o;
    memcpy(&o, x.b + off_field, 8);
    assert_int_equal(o, 0);
    o = 4;
    memcpy(x.b + off_field, &o, 8);
    blob_write(&x);
    char want[2048];
    snprintf(want, sizeof want,
             "%s: tensor_info[0].offset at byte %zu: offset 4 is not a multiple of the alignment 32", x.path,
             off_field);
    expect_model_error(&x, want);
    blob_free(&x);
}

/* counts whose byte size overflows 64 bits, through model_load */
static void test_counts_overflow(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    blob x;
    blob_from(&x, spec_writer(&s));
    uint64_t huge = 1ull << 61; /* * KV_MIN_BYTES overflows */
    memcpy(x.b + 16, &huge, 8);
    blob_write(&x);
    char want[2048];
    snprintf(want, sizeof want,
             "%s: n_kv at byte 16: 2305843009213693952 key/values cannot fit in the %zu bytes left", x.path,
             x.n - 24);
    expect_model_error(&x, want);
    huge = UINT64_MAX;
    memcpy(x.b + 16, &huge, 8);
    blob_write(&x);
    snprintf(want, sizeof want,
             "%s: n_kv at byte 16: 18446744073709551615 key/values cannot fit in the %zu bytes left", x.path,
             x.n - 24);
    expect_model_error(&x, want);
    blob_free(&x);
}

static void test_duplicate_tensor_name(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    blob x;
    blob_from(&x, spec_writer(&s));
    /* two names of the same length: the later one renamed to the earlier */
    const char *a = "blk.0.ffn_up.weight", *b = "blk.0.attn_qkv.bias";
    assert_int_equal(strlen(a), strlen(b));
    long long ia = tinfo_off(&x, a), ib = tinfo_off(&x, b);
    assert_true(ia < ib);
    memcpy(x.b + ib + 8, a, strlen(a));
    blob_write(&x);
    xf_err err = {{0}};
    xf_model *m = model_load(x.path, &err);
    assert_null(m);
    char want[2048];
    /* the tensor indices follow the writer's order: token_embd, position_embd,
     * output_norm.weight, output_norm.bias, then the layer in tiny_writer's order */
    static const char *const order[] = {
        "token_embd.weight",        "position_embd.weight",   "output_norm.weight",
        "output_norm.bias",         "blk.0.attn_norm.weight", "blk.0.ffn_norm.weight",
        "blk.0.attn_output.weight", "blk.0.ffn_up.weight",    "blk.0.ffn_down.weight",
        "blk.0.attn_norm.bias",     "blk.0.ffn_norm.bias",    "blk.0.attn_qkv.weight",
        "blk.0.attn_qkv.bias"};
    int ta = -1, tb = -1;
    for (int i = 0; i < 13; i++) {
        if (strcmp(order[i], a) == 0)
            ta = i;
        if (strcmp(order[i], b) == 0)
            tb = i;
    }
    snprintf(want, sizeof want,
             "%s: tensor_info[%d].name at byte %lld: duplicate tensor name '%s' (first at tensor_info[%d])",
             x.path, tb, ib, a, ta);
    if (strcmp(err.msg, want) != 0)
        fail_msg("\n got: %s\nwant: %s", err.msg, want);
    blob_free(&x);
}

/* --- the REPL: failures leave it usable --------------------------------------------- */

static xf_strbuf g_out;

#define cmd tu_cmd

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static xf_repl *tiny_repl(char *path, size_t size)
{
    tiny_spec s;
    gpt2(&s);
    s.name = "tiny";
    tu_tmp_path(path, size, ".gguf");
    assert_int_equal(tiny_save(&s, path), 0);
    xf_repl *r = tu_repl_new();
    assert_non_null(r);
    tu_repl_load(r, path);
    return r;
}

static void test_repl_usable_after_bad_loads(void **state)
{
    (void)state;
    char mp[1024], line[2200];
    xf_repl *r = tiny_repl(mp, sizeof mp);
    const char *before = cmd(r, "tokenize --ids hello the", 0);
    char ids[256];
    snprintf(ids, sizeof ids, "%s", before);
    /* a handful of broken models, each refused with one error line */
    tiny_spec s;
    const char *omit[] = {"blk.0.attn_qkv.weight", NULL, NULL};
    for (int k = 0; k < 3; k++) {
        gpt2(&s);
        s.omit = omit[k];
        if (k == 1) {
            s.poison = "blk.0.ffn_norm.bias";
            s.poison_val = NAN;
        }
        if (k == 2)
            s.reshape = "blk.0.ffn_up.weight";
        blob x;
        blob_from(&x, spec_writer(&s));
        snprintf(line, sizeof line, "load %s", x.path);
        const char *o = cmd(r, line, 1);
        assert_int_equal(count_lines(o), 1);
        assert_true(strncmp(o, "error: ", 7) == 0);
        blob_free(&x);
        /* still the old model, still working */
        assert_string_equal(r->model_path, mp);
        assert_string_equal(cmd(r, "tokenize --ids hello the", 0), ids);
        cmd(r, "run --tokens 1,2", 0);
        cmd(r, "continue", 0);
    }
    /* not a file, a directory, nothing */
    cmd(r, "load /nonexistent/x.gguf", 1);
    cmd(r, "load /", 1);
    cmd(r, "load", 1);
    assert_string_equal(r->model_path, mp);
    repl_free(r);
    sb_free(&g_out);
    unlink(mp);
}

/* B1 regression (fixed in 66c15e2): a line that is not empty after the leading
 * blanks but holds no word ("\r", a CRLF script's empty line) makes
 * repl_exec_line read an uninitialized argv[0]. The stack is sprayed with
 * pointers to "help" first so that the stale value is deterministic: the
 * bug then shows as output (help's text) where there must be none; under
 * ASan it is a wild read. Fix in repl/commands.c repl_exec_line: return 0
 * when split_words gives argc == 0. */
static const char *volatile g_spray_word = "help";

static __attribute__((noinline)) void spray_stack(void)
{
    volatile const char *v[1024];
    for (int i = 0; i < 1024; i++)
        v[i] = g_spray_word;
    __asm__ volatile("" : : "r"(v) : "memory");
}

static __attribute__((noinline)) int exec_sprayed(xf_repl *r, const char *line)
{
    spray_stack();
    return repl_exec_line(r, line);
}

static void test_bug_b1_blank_cr_line(void **state)
{
    (void)state;
    char mp[1024];
    xf_repl *r = tiny_repl(mp, sizeof mp);
    static const char *const lines[] = {"\r", " \r", "\r\r", "\t\r\n"};
    for (size_t i = 0; i < 4; i++) {
        sb_free(&g_out);
        r->capture = &g_out;
        int rc = exec_sprayed(r, lines[i]);
        r->capture = NULL;
        if (rc != 0 || g_out.len != 0)
            fail_msg("a blank line (%zu) returned %d and printed %zu bytes: %.60s", i, rc, g_out.len,
                     g_out.s ? g_out.s : "");
    }
    repl_free(r);
    sb_free(&g_out);
    unlink(mp);
}

/* hostile command words and arguments: one escaped error line each */
static void test_hostile_command_lines(void **state)
{
    (void)state;
    char mp[1024];
    xf_repl *r = tiny_repl(mp, sizeof mp);
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    char many[400] = "print";
    for (int i = 0; i < 70; i++)
        strcat(many, " a");
    struct {
        const char *line;
        const char *want; /* the whole output */
    } cases[] = {
        {"prnt x", "error: unknown command 'prnt'; did you mean 'print'? (help lists commands)\n"},
        /* no limit on words since issue 12: the line reaches print, which says how it is used */
        {many, "error: usage: print NAME[SLICE] [-n N] [--raw] [--heat]\n"},
        {"token 99999999999999999999", "error: token: '99999999999999999999' is not a token id\n"},
        {"run --tokens 1,,x", "error: --tokens: '1,,x ' is not a list of token ids (e.g. 1,2,3)\n"},
        {"tokenize \"abc", "error: text: missing closing quote\n"},
        {"tokenize \"\\xZZ\"", "error: text: escape \\x at position 0 needs two hex digits\n"},
        {"tokenize \"\\ud800\"",
         "error: text: escape \\u at position 0: U+D800 is not a Unicode scalar value\n"},
        {"print token_embd.weight[1,2,3,4,5]", "error: slice '[1,2,3,4,5]': more than 4 dimensions\n"},
        {"print token_embd.weight[::0]", "error: slice '[::0]': step 0 at column 4\n"},
        {"print token_embd.weight[99999999999999999999]",
         "error: slice '[99999999999999999999]': number out of range at column 2\n"},
        {"print token_embd.weight[260]",
         "error: token_embd.weight: index 260 out of range for dimension 0 of size 260\n"},
    };
    cmd(r, "run --tokens 1,2", 0); /* `token` needs a pass */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* repl_errf doubles every backslash today (h9 report, note N1):
         * compare with one level of doubling undone, so that both pass */
        char o[1024];
        size_t k = 0;
        for (const char *c = cmd(r, cases[i].line, 1); *c && k + 1 < sizeof o; c++) {
            o[k++] = *c;
            if (c[0] == '\\' && c[1] == '\\')
                c++;
        }
        o[k] = 0;
        if (strcmp(o, cases[i].want) != 0)
            fail_msg("'%.40s':\n got: %s\nwant: %s", cases[i].line, o, cases[i].want);
    }
    /* control bytes in a command word or a slice: one line, escaped (the
     * exact text is not asserted: the message is escaped twice today, see
     * the h9 report, note N1) */
    static const char *const esc_lines[] = {"\x1b[2Jrun", "print token_embd.weight[\x1b]",
                                            "\x07\x08\x7f\x9b"};
    for (size_t i = 0; i < 3; i++) {
        const char *o = cmd(r, esc_lines[i], 1);
        assert_int_equal(count_lines(o), 1);
        assert_true(strncmp(o, "error: ", 7) == 0);
        for (const char *c = o; *c; c++)
            if (((unsigned char)*c < 0x20 && *c != '\n') || *c == 0x7f)
                fail_msg("control byte 0x%02x in: %s", *c, o);
    }
    assert_non_null(strstr(cmd(r, esc_lines[0], 1), "x1B[2Jrun"));
    /* a 5000-byte unknown word: one line, cut, no crash */
    const char *o = cmd(r, big, 1);
    assert_int_equal(count_lines(o), 1);
    repl_free(r);
    sb_free(&g_out);
    unlink(mp);
}

/* B3 regression (fixed in 66c15e2): tensor_slice_resolve overflows int64 on a step
 * beyond +-2^62; numpy selects one element in both cases. */
static void test_bug_b3_slice_huge_step(void **state)
{
    (void)state;
    int64_t shape[2] = {10, 3};
    struct {
        const char *text;
        int64_t first, count;
    } cases[] = {
        {"[0:5:9223372036854775807]", 0, 1},
        {"[5:0:-9223372036854775808]", 15, 1},
        {"[::9223372036854775807]", 0, 1},
        {"[::-9223372036854775807]", 27, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        xf_slice sl;
        xf_selection sel;
        xf_err err = {{0}};
        assert_int_equal(tensor_slice_parse(cases[i].text, &sl, &err), 0);
        assert_int_equal(tensor_slice_resolve(&sl, 2, shape, &sel, &err), 0);
        if (sel.out_shape[0] != cases[i].count || sel.count != 3 * cases[i].count)
            fail_msg("%s selects %lld rows (%lld elements), numpy selects %lld", cases[i].text,
                     (long long)sel.out_shape[0], (long long)sel.count, (long long)cases[i].count);
        assert_int_equal(tensor_selection_index(&sel, 0), cases[i].first);
    }
}

/* --- safetensors reaching the REPL ----------------------------------------------- */

static void st_save(refdump_writer *w, char *path, size_t size)
{
    xf_err err = {{0}};
    tu_tmp_path(path, size, ".safetensors");
    if (refdump_writer_save(w, path, &err) != 0)
        fail_msg("%s", err.msg);
    refdump_writer_free(w);
}

static void test_ref_hostile(void **state)
{
    (void)state;
    char mp[1024], sp[1024], line[2200];
    xf_repl *r = tiny_repl(mp, sizeof mp);
    xf_err err = {{0}};
    refdump_writer *w = refdump_writer_new();
    static float big[64];
    int64_t s5[5] = {1, 1, 1, 2, 2}, s0[2] = {0, 8}, sw[2] = {2, 3}, s1[1] = {4};
    int64_t i64[4] = {1, -5, (int64_t)1 << 40, INT64_MIN};
    assert_int_equal(refdump_writer_add(w, "five", REFDUMP_F32, 5, s5, big, &err), 0);
    assert_int_equal(refdump_writer_add(w, "none", REFDUMP_F32, 2, s0, NULL, &err), 0);
    assert_int_equal(refdump_writer_add(w, "embd", REFDUMP_F32, 2, sw, big, &err),
                     0); /* [2, 8] in the model */
    assert_int_equal(refdump_writer_add(w, "wide", REFDUMP_I64, 1, s1, i64, &err), 0);
    st_save(w, sp, sizeof sp);
    snprintf(line, sizeof line, "ref load %s", sp);
    cmd(r, line, 0);
    assert_string_equal(cmd(r, "print five@ref", 1), "error: 'five' has 5 dimensions (at most 4)\n");
    const char *o = cmd(r, "print none@ref", 0);
    assert_non_null(strstr(o, "none@ref [0, 8] f32 ref F32"));
    o = cmd(r, "print wide@ref --raw", 0);
    assert_string_equal(o, "1 -5 1.09951163e+12 -9.22337204e+18\n");
    cmd(r, "run --tokens 1,2", 0);
    cmd(r, "continue", 0);
    /* the only name in common has another shape: said, and nothing compared */
    o = cmd(r, "compare", 1);
    assert_non_null(
        strstr(o, "\nembd             shape differs from the reference (16 vs 6 elements)\n"));
    assert_non_null(strstr(o, "error: compare: no computed tensor of this pass is in the reference\n"));
    assert_string_equal(cmd(r, "diff embd embd@ref", 1),
                        "error: diff: embd [2, 8] and embd@ref [2, 3] differ in size\n");
    unlink(sp);

    /* a truncated file: refused with the file, the field and the byte */
    FILE *f = fopen(sp, "wb");
    assert_non_null(f);
    fputs("\x40\x00\x00\x00\x00\x00\x00\x00{\"a\":", f);
    fclose(f);
    o = cmd(r, line, 1);
    assert_int_equal(count_lines(o), 1);
    char want[1200];
    snprintf(want, sizeof want, "error: %s: ", sp);
    if (strncmp(o, want, strlen(want)) != 0 || !strstr(o, " at byte "))
        fail_msg("ref load of a truncated file: %s", o);
    /* the old reference is gone or kept, but the REPL still works */
    cmd(r, "print embd -n 2", 0);
    unlink(sp);
    repl_free(r);
    sb_free(&g_out);
    unlink(mp);
}

/* --- the evil fixtures -------------------------------------------------------------------- */

typedef struct evil_fixture {
    const char *name;
    void (*make)(blob *x);
} evil_fixture;

static void mk_spec(blob *x, const tiny_spec *s, void (*edit)(gguf_writer *))
{
    gguf_writer *w = spec_writer(s);
    if (edit)
        edit(w);
    blob_from(x, w);
}

static void ev_missing_tensor(blob *x)
{
    tiny_spec s;
    gpt2(&s);
    s.omit = "blk.0.attn_qkv.weight";
    mk_spec(x, &s, NULL);
}
static void ev_qkv_shape(blob *x)
{
    tiny_spec s;
    gpt2(&s);
    s.reshape = "blk.0.attn_qkv.weight";
    mk_spec(x, &s, NULL);
}
static void ev_nan_norm(blob *x)
{
    tiny_spec s;
    gpt2(&s);
    s.poison = "blk.0.attn_norm.weight";
    s.poison_at = 3;
    s.poison_val = marked_nan();
    mk_spec(x, &s, NULL);
}
static void ev_block_count_string(blob *x)
{
    tiny_spec s;
    gpt2(&s);
    mk_spec(x, &s, ed_block_count_str);
}
static void ev_block_count_2p31(blob *x)
{
    tiny_spec s;
    gpt2(&s);
    mk_spec(x, &s, ed_block_count_2p31);
}
static void ev_context_zero(blob *x)
{
    tiny_spec s;
    gpt2(&s);
    mk_spec(x, &s, ed_ctx_0);
}
static void ev_embedding_2p40(blob *x)
{
    tiny_spec s;
    gpt2(&s);
    mk_spec(x, &s, ed_embd_2p40);
}
static void ev_arch_escape(blob *x)
{
    tiny_spec s;
    gpt2(&s);
    mk_spec(x, &s, ed_arch_esc);
}
static void ev_vocab_types(blob *x)
{
    tiny_spec s;
    gpt2(&s);
    mk_spec(x, &s, ed_types_short);
}
static void ev_truncated(blob *x)
{
    tiny_spec s;
    gpt2(&s);
    mk_spec(x, &s, NULL);
    x->n = 100; /* inside the first kv */
}
static void ev_data_past_end(blob *x)
{
    tiny_spec s;
    gpt2(&s);
    mk_spec(x, &s, NULL);
    x->n--;
}
static void ev_n_kv_huge(blob *x)
{
    tiny_spec s;
    gpt2(&s);
    mk_spec(x, &s, NULL);
    uint64_t huge = UINT64_MAX;
    memcpy(x->b + 16, &huge, 8);
}

static void ev_gpt2_head_count_kv(blob *x)
{
    tiny_spec s;
    gpt2(&s);
    mk_spec(x, &s, ed_gpt2_kv_1);
}
/* blk.0.attn_norm.bias placed on the data of blk.0.attn_norm.weight (both
 * [n_embd] F32): the offset field follows the name, n_dims, one dim, type */
static void ev_overlapping_tensors(blob *x)
{
    tiny_spec s;
    gpt2(&s);
    mk_spec(x, &s, NULL);
    long long w = tinfo_off(x, "blk.0.attn_norm.weight"), b = tinfo_off(x, "blk.0.attn_norm.bias");
    size_t fw = (size_t)w + 8 + strlen("blk.0.attn_norm.weight") + 4 + 8 + 4;
    size_t fb = (size_t)b + 8 + strlen("blk.0.attn_norm.bias") + 4 + 8 + 4;
    memcpy(x->b + fb, x->b + fw, 8);
}

static const evil_fixture k_evil[] = {
    {"missing_tensor.gguf", ev_missing_tensor},
    {"gpt2_head_count_kv.gguf", ev_gpt2_head_count_kv},
    {"overlapping_tensors.gguf", ev_overlapping_tensors},
    {"qkv_shape.gguf", ev_qkv_shape},
    {"nan_norm.gguf", ev_nan_norm},
    {"block_count_string.gguf", ev_block_count_string},
    {"block_count_2p31.gguf", ev_block_count_2p31},
    {"context_zero.gguf", ev_context_zero},
    {"embedding_2p40.gguf", ev_embedding_2p40},
    {"arch_escape.gguf", ev_arch_escape},
    {"vocab_types.gguf", ev_vocab_types},
    {"truncated.gguf", ev_truncated},
    {"data_past_end.gguf", ev_data_past_end},
    {"n_kv_huge.gguf", ev_n_kv_huge},
};

static void test_evil_fixtures(void **state)
{
    (void)state;
    bool regen = getenv("XF_REGEN_EVIL") && *getenv("XF_REGEN_EVIL") == '1';
    for (size_t i = 0; i < sizeof k_evil / sizeof k_evil[0]; i++) {
        blob x;
        k_evil[i].make(&x);
        unlink(x.path);
        char rel[256], path[1024];
        snprintf(rel, sizeof rel, "tests/fixtures/evil/%s", k_evil[i].name);
        tu_src_path(path, sizeof path, rel);
        if (regen) {
            snprintf(x.path, sizeof x.path, "%s", path);
            blob_write(&x);
        }
        FILE *f = fopen(path, "rb");
        if (!f)
            fail_msg("%s is missing (XF_REGEN_EVIL=1 writes it)", path);
        uint8_t *b = malloc(x.n + 1);
        size_t n = fread(b, 1, x.n + 1, f);
        fclose(f);
        if (n != x.n || memcmp(b, x.b, x.n) != 0)
            fail_msg("%s is not what its builder makes (XF_REGEN_EVIL=1 rewrites it)", path);
        /* and model_load refuses it */
        xf_err err = {{0}};
        xf_model *m = model_load(path, &err);
        if (m)
            fail_msg("%s loads", path);
        free(b);
        free(x.b);
    }
}

/* --- Lua: sandbox escape attempts ------------------------------------------------- */

/* A sandboxed script (the default: no --unsafe-lua) must not reach the file
 * system, the process, the debug library or bytecode, must not outlive its
 * time limit, and must not crash or corrupt the host, whatever it tries.
 * test_lua.c checks that each disabled function says so; these are the
 * indirect routes. Each case: Lua code, the status wanted, a substring of
 * the output wanted. */
typedef struct lua_case {
    const char *code;
    int rc;
    const char *want;
} lua_case;

static xf_repl *lua_repl(char *path, size_t size, double timeout)
{
    xf_repl *r = tiny_repl(path, size);
    r->unsafe_lua = false;
    r->lua_timeout = timeout;
    return r;
}

static void run_lua_cases(xf_repl *r, const lua_case *cases, size_t n)
{
    char line[2048];
    for (size_t i = 0; i < n; i++) {
        snprintf(line, sizeof line, "lua %s", cases[i].code);
        int rc = tu_repl_run(r, line, &g_out);
        const char *o = g_out.s ? g_out.s : "";
        if (rc != cases[i].rc || !strstr(o, cases[i].want))
            fail_msg("lua %s\nreturned %d (want %d), output:\n%s\nwant: %s", cases[i].code, rc, cases[i].rc,
                     o, cases[i].want);
        /* and the host goes on */
        assert_string_equal(cmd(r, "lua 6 * 7", 0), "42\n");
    }
}

static void test_lua_escape_routes(void **state)
{
    (void)state;
    char mp[1024];
    xf_repl *r = lua_repl(mp, sizeof mp, 5);
    static const lua_case cases[] = {
        /* bytecode: string.dump by every name it has, load by every route */
        {"return ('').dump(print)", 1, "string.dump is disabled"},
        {"return getmetatable('').__index.dump(print)", 1, "string.dump is disabled"},
        {"return coroutine.wrap(string.dump)(print)", 1, "string.dump is disabled"},
        {"print(pcall(string.dump, print))", 0, "false\t"},
        {"return rawget(_G, 'load')('return 1')", 1, "load is disabled"},
        {"return _ENV.load('return 1')", 1, "load is disabled"},
        {"print(select(2, pcall(load, 'return 1')))", 0, "load is disabled"},
        /* the disabled libraries: their real tables cannot be reached */
        {"local e = setmetatable({}, {__index = _G}) local _ENV = e return io.write", 1,
         "io.write is disabled"},
        {"print(getmetatable(io), getmetatable(os), getmetatable(debug), getmetatable(package))", 0,
         "false\tfalse\tfalse\tfalse\n"},
        {"setmetatable(io, nil)", 1, "cannot change a protected metatable"},
        {"return debug.sethook()", 1, "debug.sethook is disabled"},
        {"return debug.getupvalue(print, 1)", 1, "debug.getupvalue is disabled"},
        {"return package.loaded.io", 1, "package.loaded is disabled"},
        {"return package.searchers[2]('io')", 1, "package.searchers is disabled"},
        {"return require('debug')", 1, "require is disabled"},
        {"for k in pairs(io) do print(k) end print('none')", 0, "none\n"},
        /* the process and the file system through os */
        {"os.exit(3)", 1, "os.exit is disabled"},
        {"os.remove('/tmp/x')", 1, "os.remove is disabled"},
        {"os.rename('/tmp/x', '/tmp/y')", 1, "os.rename is disabled"},
        {"return os.tmpname()", 1, "os.tmpname is disabled"},
        {"return os.setlocale('C')", 1, "os.setlocale is disabled"},
        {"return os.getenv('HOME')", 1, "os.getenv is disabled"},
        {"collectgarbage('generational')", 1, "is disabled in the sandbox"},
        {"collectgarbage('step', 1e9)", 1, "is disabled in the sandbox"},
        /* io objects via the chunk's varargs: there are none */
        {"print(select('#', ...))", 0, "0\n"},
        /* deep recursion through C: an error, not a crash */
        {"local function f() return coroutine.wrap(f)() end f()", 1, "error: lua:1: "},
        {"local function f() return f() + 1 end f()", 1, "stack overflow"},
        {"function rec(n) local a, b = xf.cmd('lua rec(' .. n + 1 .. ')') return a or b end print(rec(1))", 0,
         "nested too deeply"},
        /* the handle's methods with a foreign self */
        {"return getmetatable(xf.tensor('token_embd.weight')).__index.values('x')", 1, "bad argument"},
        {"return getmetatable(xf.tensor('token_embd.weight')).__len(io)", 1, "bad argument"},
        /* files the engine refuses */
        {"return xf.load('/dev/zero')", 1, "not a regular file"},
        {"return xf.ref_load('/proc/self/mem')", 1, "error"},
        /* C library limits */
        {"return string.rep('ab', math.maxinteger)", 1, "resulting string too large"},
        {"return string.unpack('s8', string.pack('j', math.maxinteger))", 1, "data string too short"},
        {"return table.move({}, 1, math.maxinteger, 2)", 1, "destination wrap around"},
        {"return table.concat({}, '', 1, math.maxinteger)", 1, "at index 1 in table for 'concat'"},
        {"return string.format('%99999d', 1)", 1, "invalid conversion"},
        /* the shared string metatable: the script can only hurt itself */
        {"getmetatable('').__index = function() error('boom') end return ('x'):upper()", 1, "boom"},
        {"getmetatable('').__index = string print(('x'):upper())", 0, "X\n"},
    };
    run_lua_cases(r, cases, sizeof cases / sizeof cases[0]);
    /* tokenizing, a pass and printing still work after all that */
    cmd(r, "tokenize hello", 0);
    cmd(r, "run --tokens 1,2", 0);
    cmd(r, "continue", 0);
    repl_free(r);
    sb_free(&g_out);
    unlink(mp);
}

/* precompiled Lua (the binary chunk of `return 1`) in a file, made with a
 * separate plain Lua state */
static int write_chunk(lua_State *L, const void *p, size_t n, void *ud)
{
    (void)L;
    return fwrite(p, 1, n, (FILE *)ud) == n ? 0 : 1;
}

static void test_lua_no_bytecode_by_source(void **state)
{
    (void)state;
    char mp[1024], bc[1024], line[1200];
    tu_tmp_path(bc, sizeof bc, ".lua");
    lua_State *L = luaL_newstate();
    assert_non_null(L);
    assert_int_equal(luaL_loadstring(L, "print('bytecode ran') return 1"), LUA_OK);
    FILE *f = fopen(bc, "wb");
    assert_non_null(f);
    assert_int_equal(lua_dump(L, write_chunk, f, 0), 0);
    fclose(f);
    lua_close(L);
    xf_repl *r = lua_repl(mp, sizeof mp, 5);
    snprintf(line, sizeof line, "source %s", bc);
    const char *o = cmd(r, line, 1);
    assert_non_null(strstr(o, "attempt to load a binary chunk"));
    assert_null(strstr(o, "bytecode ran"));
    /* from Lua, `source` reads a file: refused in the sandbox (issue 14 item 7) */
    snprintf(line, sizeof line, "lua print(xf.cmd('source %s'))", bc);
    o = cmd(r, line, 0);
    assert_non_null(strstr(o, "reads files and is disabled in the sandbox"));
    assert_null(strstr(o, "bytecode ran"));
    repl_free(r);
    sb_free(&g_out);
    unlink(bc);
    unlink(mp);
}

/* KNOWN BUG B12 (h9 report): xf.cmd runs any REPL command, so a sandboxed
 * script writes files anywhere with `dump` and `record` ("no io" broken).
 * Fix in repl/lua_api.c xl_cmd: unless --unsafe-lua, refuse the commands
 * that write files (dump, record) with "... is disabled in the sandbox". */
static void test_bug_b12_lua_writes_files(void **state)
{
    (void)state;
    char mp[1024], out[1024], line[1400];
    xf_repl *r = lua_repl(mp, sizeof mp, 5);
    cmd(r, "run --tokens 1,2", 0);
    cmd(r, "continue", 0);
    const char *verbs[2][2] = {{"dump all", ".safetensors"}, {"record", ".xfs"}};
    for (int i = 0; i < 2; i++) {
        tu_tmp_path(out, sizeof out, verbs[i][1]);
        snprintf(line, sizeof line, "lua print(xf.cmd('%s %s'))", verbs[i][0], out);
        const char *o = cmd(r, line, 0);
        bool written = access(out, F_OK) == 0;
        unlink(out);
        if (written || !strstr(o, "disabled in the sandbox"))
            fail_msg("a sandboxed script ran `%s FILE`: %s; output: %s", verbs[i][0],
                     written ? "the file was written" : "not refused", o);
    }
    tu_repl_run(r, "record stop", &g_out); /* in case it started */
    repl_free(r);
    sb_free(&g_out);
    unlink(mp);
}

/* KNOWN BUG B13 (h9 report): print() from Lua writes its bytes raw, so a
 * script puts escape sequences on the terminal (scripts are untrusted,
 * DESIGN.md). Fix in repl/lua_api.c lx_print: escape control bytes but
 * '\t' and '\n' (tok_escape per line, as repl_generate does). */
static void test_bug_b13_lua_print_escaped(void **state)
{
    (void)state;
    char mp[1024];
    xf_repl *r = lua_repl(mp, sizeof mp, 5);
    const char *o = cmd(r, "lua print('a\\27[2Jb\\7c', '\\u{9b}31m')", 0);
    for (const char *c = o; *c; c++)
        if (((unsigned char)*c < 0x20 && *c != '\n' && *c != '\t') || *c == 0x7f ||
            ((unsigned char)c[0] == 0xc2 && (unsigned char)c[1] >= 0x80 && (unsigned char)c[1] <= 0x9f))
            fail_msg("lua print wrote control byte 0x%02x raw: %s", (unsigned char)*c, o);
    repl_free(r);
    sb_free(&g_out);
    unlink(mp);
}

/* KNOWN BUG B14 (h9 report): a __gc finalizer runs the xf module while the
 * Lua state is being closed (repl_free); what it runs leaks its output
 * buffers, and the REPL is half torn down. Fix in repl/lua_api.c: mark the
 * context closing in repl_lua_close before lua_close and make every xf
 * function refuse then. */
static void test_bug_b14_lua_gc_at_close(void **state)
{
    (void)state;
    char mp[1024];
    xf_repl *r = lua_repl(mp, sizeof mp, 5);
    cmd(r, "lua setmetatable({}, {__gc = function() print(xf.cmd('info') and 'xf ran at close') end})", 0);
    sb_free(&g_out);
    r->capture = &g_out;
    repl_free(r); /* the finalizer runs here */
    const char *o = g_out.s ? g_out.s : "";
    if (strstr(o, "xf ran at close"))
        fail_msg("a finalizer ran xf.cmd while the state was being closed: %s", o);
    sb_free(&g_out);
    unlink(mp);
}

/* runs `lua CODE` in a child with lua_timeout 0.5 s; how long it took, or
 * -1 when it was still running after `limit` seconds (then it is killed) */
static double lua_child_seconds(const char *code, int limit)
{
    char mp[1024], line[2048];
    tiny_spec s;
    gpt2(&s);
    tu_tmp_path(mp, sizeof mp, ".gguf");
    assert_int_equal(tiny_save(&s, mp), 0);
    snprintf(line, sizeof line, "lua %s", code);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        alarm((unsigned)limit); /* the default action ends the child */
        xf_repl *r = repl_new();
        r->quiet = true;
        r->errf = NULL;
        r->out = NULL;
        r->lua_timeout = 0.5;
        r->backend_forced = true; /* cpu: starting CUDA would count against the time measured */
        if (repl_load(r, mp) != 0)
            _exit(2);
        repl_exec_line(r, line);
        repl_free(r);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    unlink(mp);
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)
        return -1;
    /* 0: the time limit stopped it; 1: the watchdog ended a process that Lua
     * could not stop (a C function or a finalizer), with a message */
    assert_true(WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 1));
    return (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
}

/* KNOWN BUG B16 (h9 report): repl_lua_close runs lua_close with the time
 * limit of the last command long expired or switched off, and an endless
 * __gc finalizer keeps the program from ever exiting. Fix in
 * repl/lua_api.c repl_lua_close: restart the clock (lx_begin_outer) with
 * the hook in place before lua_close, so the finalizer is stopped too. */
static void test_bug_b16_lua_gc_loop_at_close(void **state)
{
    (void)state;
    /* a finalizer that never ends, run when the state closes after the
     * command's time limit has been reset */
    double dt = lua_child_seconds("setmetatable({}, {__gc = function() while true do end end})", 3);
    if (dt < 0)
        fail_msg("an endless __gc finalizer hangs the program at exit (still running after 3 s)");
}

/* KNOWN BUG B15 (h9 report): the time limit (and Ctrl-C) is enforced by a
 * count hook, which never runs inside a C function: a backtracking pattern
 * keeps string.find busy for hours. Fix in repl/lua_api.c: in the sandbox,
 * wrap string.find/match/gmatch/gsub with a work bound (e.g. refuse a
 * subject longer than a few KB with more than two `-`/`*` repetitions), or
 * run Lua under a watchdog that ends a call stuck in C. */
static void test_bug_b15_lua_time_limit_in_c(void **state)
{
    (void)state;
    const char *code[] = {
        "return string.rep('a', 3000):find('.-.-.-.-b')",
        "return string.rep('x', 1e6):find('.-y')",
    };
    for (int i = 0; i < 2; i++) {
        double dt = lua_child_seconds(code[i], 3);
        if (dt < 0 || dt > 2)
            fail_msg("lua %s: the 0.5 s time limit did not stop it (%s)", code[i],
                     dt < 0 ? "still running after 3 s" : "it took over 2 s");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_tensor),
        cmocka_unit_test(test_missing_token_embd),
        cmocka_unit_test(test_missing_output_norm_bias),
        cmocka_unit_test(test_qwen2_missing_k),
        cmocka_unit_test(test_shape_qkv),
        cmocka_unit_test(test_shape_norm),
        cmocka_unit_test(test_shape_position_embd),
        cmocka_unit_test(test_shape_ffn_down),
        cmocka_unit_test(test_shape_qwen2_k_gqa),
        cmocka_unit_test(test_shape_qwen2_q_bias),
        cmocka_unit_test(test_shape_untied_output),
        cmocka_unit_test(test_three_dim_weight),
        cmocka_unit_test(test_unsupported_type),
        cmocka_unit_test(test_vocab_larger_than_embedding),
        cmocka_unit_test(test_bug_b2_block_count_more_than_layers),
        cmocka_unit_test(test_nan_in_norm),
        cmocka_unit_test(test_inf_in_bias),
        cmocka_unit_test(test_neg_inf_in_final_norm),
        cmocka_unit_test(test_nan_in_matrix_loads),
        cmocka_unit_test(test_block_count_string),
        cmocka_unit_test(test_block_count_2p31),
        cmocka_unit_test(test_block_count_0),
        cmocka_unit_test(test_context_length_0),
        cmocka_unit_test(test_context_length_huge),
        cmocka_unit_test(test_embedding_2p40),
        cmocka_unit_test(test_embedding_negative),
        cmocka_unit_test(test_ffn_length_float),
        cmocka_unit_test(test_head_count_bool),
        cmocka_unit_test(test_eps_string),
        cmocka_unit_test(test_eps_zero),
        cmocka_unit_test(test_eps_nan),
        cmocka_unit_test(test_eps_missing),
        cmocka_unit_test(test_block_count_missing),
        cmocka_unit_test(test_heads_do_not_divide),
        cmocka_unit_test(test_kv_heads_do_not_divide),
        cmocka_unit_test(test_qwen2_odd_head_dim),
        cmocka_unit_test(test_gpt2_head_count_kv_1),
        cmocka_unit_test(test_gpt2_head_count_kv_equal_loads),
        cmocka_unit_test(test_qwen2_kv_more_than_heads),
        cmocka_unit_test(test_rope_base_1),
        cmocka_unit_test(test_rope_base_nan),
        cmocka_unit_test(test_arch_unknown),
        cmocka_unit_test(test_arch_control_bytes),
        cmocka_unit_test(test_arch_missing),
        cmocka_unit_test(test_arch_not_string),
        cmocka_unit_test(test_nothing_to_load),
        cmocka_unit_test(test_vocab_only_loads),
        cmocka_unit_test(test_vocab_type_count),
        cmocka_unit_test(test_vocab_bos_outside),
        cmocka_unit_test(test_vocab_model_unknown),
        cmocka_unit_test(test_vocab_tokens_not_strings),
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_data_past_end),
        cmocka_unit_test(test_misaligned_offset),
        cmocka_unit_test(test_counts_overflow),
        cmocka_unit_test(test_duplicate_tensor_name),
        cmocka_unit_test(test_repl_usable_after_bad_loads),
        cmocka_unit_test(test_bug_b1_blank_cr_line),
        cmocka_unit_test(test_hostile_command_lines),
        cmocka_unit_test(test_bug_b3_slice_huge_step),
        cmocka_unit_test(test_ref_hostile),
        cmocka_unit_test(test_evil_fixtures),
        cmocka_unit_test(test_lua_escape_routes),
        cmocka_unit_test(test_lua_no_bytecode_by_source),
        cmocka_unit_test(test_bug_b12_lua_writes_files),
        cmocka_unit_test(test_bug_b13_lua_print_escaped),
        cmocka_unit_test(test_bug_b14_lua_gc_at_close),
        cmocka_unit_test(test_bug_b16_lua_gc_loop_at_close),
        cmocka_unit_test(test_bug_b15_lua_time_limit_in_c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
