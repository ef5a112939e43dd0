/* Hostile GGUF files that model_load must refuse (issue 9), part two:
 * hyperparameters of the wrong type or absurd size, heads that do not
 * divide, broken vocabularies; and the files of tests/fixtures/evil/ (used by
 * tests/cli/malformed_files.sh), built here from the same edits:
 * test_evil_fixtures checks that they are what these builders make;
 * XF_REGEN_EVIL=1 rewrites them. */
#include "malformed.h"

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
static void ed_arch_mamba(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "mamba"), 0);
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

/* Keys that change the math must say what xfdb computes (session 26's
 * attack: each was ignored, the pass silently differing from llama.cpp's). */
static void ed_ropedim_2(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_u32(w, "qwen2.rope.dimension_count", 2), 0);
}
static void ed_keylen_8(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_u32(w, "qwen2.attention.key_length", 8), 0);
}
static void ed_vallen_2(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_u32(w, "qwen2.attention.value_length", 2), 0);
}
static void ed_vocab_size(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_u32(w, "qwen2.vocab_size", 259), 0);
}
static void ed_gpt2_vocab_size(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_u32(w, "gpt2.vocab_size", 261), 0);
}
static void ed_rope_yarn(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_str(w, "qwen2.rope.scaling.type", "yarn"), 0);
}
static void ed_rope_factor_4(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_f32(w, "qwen2.rope.scaling.factor", 4.0f), 0);
}
static void ed_rope_scale_linear(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_f32(w, "qwen2.rope.scale_linear", 0.5f), 0);
}
static void ed_sliding_window(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_u32(w, "qwen2.attention.sliding_window", 8), 0);
}
/* what agrees with the file loads: the head dimension is 16 / 4 = 4 */
static void ed_keys_agree(gguf_writer *w)
{
    assert_int_equal(gguf_writer_set_u32(w, "qwen2.rope.dimension_count", 4), 0);
    assert_int_equal(gguf_writer_set_u32(w, "qwen2.attention.key_length", 4), 0);
    assert_int_equal(gguf_writer_set_u32(w, "qwen2.attention.value_length", 4), 0);
    assert_int_equal(gguf_writer_set_u32(w, "qwen2.vocab_size", 260), 0);
    assert_int_equal(gguf_writer_set_str(w, "qwen2.rope.scaling.type", "none"), 0);
    assert_int_equal(gguf_writer_set_f32(w, "qwen2.rope.scaling.factor", 1.0f), 0);
    assert_int_equal(gguf_writer_set_u32(w, "qwen2.attention.sliding_window", 4096), 0);
}

static void test_keys_that_change_the_math(void **state)
{
    (void)state;
    tiny_spec s;
    qwen2(&s);
    expect_range_error(&s, ed_ropedim_2, "qwen2.rope.dimension_count",
                       "2, but the head dimension is 4 (RoPE over part of a head is not supported)");
    expect_range_error(&s, ed_keylen_8, "qwen2.attention.key_length",
                       "8, but the head dimension is 4 (embedding_length / head_count)");
    expect_range_error(&s, ed_vallen_2, "qwen2.attention.value_length",
                       "2, but the head dimension is 4 (embedding_length / head_count)");
    expect_range_error(&s, ed_vocab_size, "qwen2.vocab_size",
                       "259, but the row count of token_embd.weight is 260");
    expect_range_error(&s, ed_rope_yarn, "qwen2.rope.scaling.type",
                       "scaled RoPE is not supported (only 'none')");
    expect_range_error(&s, ed_rope_factor_4, "qwen2.rope.scaling.factor",
                       "4: scaled RoPE is not supported (only 1)");
    expect_range_error(&s, ed_rope_scale_linear, "qwen2.rope.scale_linear",
                       "0.5: scaled RoPE is not supported (only 1)");
    char tail[160];
    snprintf(tail, sizeof tail,
             "8 positions, shorter than the context (%d): sliding-window attention is not supported",
             s.n_ctx);
    expect_range_error(&s, ed_sliding_window, "qwen2.attention.sliding_window", tail);
    tiny_spec g;
    gpt2(&g);
    expect_range_error(&g, ed_gpt2_vocab_size, "gpt2.vocab_size",
                       "261, but the row count of token_embd.weight is 260");
    blob x;
    mk_spec(&x, &s, ed_keys_agree);
    xf_err err = {{0}};
    xf_model *m = model_load(x.path, &err);
    if (!m)
        fail_msg("keys that agree with the file: %s", err.msg);
    model_free(m);
    blob_free(&x);
}

/* The KV cache's size is a product of bounded factors, checked against the
 * machine's memory before exec_new allocates it whole (a small file asked for
 * terabytes that the CPU's lazy pages granted, session 26). */
static void test_kv_cache_larger_than_memory(void **state)
{
    (void)state;
    xf_model m = {0};
    m.path = "big.gguf";
    m.n_layer = 1024, m.n_ctx = 1 << 20, m.n_head_kv = 4096, m.head_dim = 64; /* 2^51 bytes: 2 PiB */
    uint64_t b;
    assert_int_equal(model_kv_bytes(&m, &b), 0);
    assert_true(b == 1ull << 51);
    xf_err err = {{0}};
    assert_int_equal(model_kv_check(&m, true, &err), -1);
    assert_non_null(strstr(err.msg,
                           "big.gguf: a KV cache of 1048576 positions needs 2251799813685248 bytes (1024 "
                           "layers x 2 x 1048576 positions x 4096 kv heads x 64 x 4), more than this "
                           "machine's memory ("));
    assert_non_null(strstr(err.msg, "use fewer positions (xfdb --ctx N)"));
    /* on a device the allocation itself says no */
    assert_int_equal(model_kv_check(&m, false, &err), 0);
    m.n_ctx = 16, m.n_layer = 2, m.n_head_kv = 2; /* 16 KiB */
    assert_int_equal(model_kv_check(&m, true, &err), 0);
}

static void test_arch_unknown(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_range_error(&s, ed_arch_mamba, "general.architecture",
                       "'mamba' is not supported (gpt2, qwen2, qwen3, llama)");
}

static void test_arch_control_bytes(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_range_error(&s, ed_arch_esc, "general.architecture",
                       "'\\x1b[2Jgpt2\\x07' is not supported (gpt2, qwen2, qwen3, llama)");
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

/* a token type past llama.cpp's 0..6 was taken as normal (session 26) */
static void ed_types_99(gguf_writer *w)
{
    int32_t t[260];
    for (int i = 0; i < 260; i++)
        t[i] = 1;
    t[7] = 99;
    assert_int_equal(gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", t, 260), 0);
}
static void ed_types_neg(gguf_writer *w)
{
    int32_t t[260];
    for (int i = 0; i < 260; i++)
        t[i] = 1;
    t[259] = -5;
    assert_int_equal(gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", t, 260), 0);
}
/* a chat template with a NUL inside was cut there (session 26) */
static void ed_template_nul(gguf_writer *w)
{
    static const char text[] = "{{ messages }}\0<|im_start|>";
    uint8_t raw[8 + sizeof text - 1];
    uint64_t len = sizeof text - 1;
    memcpy(raw, &len, 8);
    memcpy(raw + 8, text, sizeof text - 1);
    assert_int_equal(tiny_set_raw(w, "tokenizer.chat_template", GGUF_VT_STRING, raw, sizeof raw), 0);
}

static void test_vocab_type_and_template(void **state)
{
    (void)state;
    tiny_spec s;
    gpt2(&s);
    expect_range_error(&s, ed_types_99, "tokenizer.ggml.token_type",
                       "element 7 is 99, not a token type (0..6)");
    expect_range_error(&s, ed_types_neg, "tokenizer.ggml.token_type",
                       "element 259 is -5, not a token type (0..6)");
    blob x;
    mk_spec(&x, &s, ed_template_nul);
    char want[2048];
    snprintf(want, sizeof want,
             "%s: tokenizer.chat_template at byte %lld: a NUL byte at offset 14 of its 27 bytes", x.path,
             kv_off(&x, "tokenizer.chat_template") + 8);
    expect_model_error(&x, want);
    blob_free(&x);
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

/* --- the evil fixtures -------------------------------------------------------------------- */

typedef struct evil_fixture {
    const char *name;
    void (*make)(blob *x);
} evil_fixture;

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

int main(void)
{
    const struct CMUnitTest tests[] = {
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
        cmocka_unit_test(test_keys_that_change_the_math),
        cmocka_unit_test(test_kv_cache_larger_than_memory),
        cmocka_unit_test(test_arch_unknown),
        cmocka_unit_test(test_arch_control_bytes),
        cmocka_unit_test(test_arch_missing),
        cmocka_unit_test(test_arch_not_string),
        cmocka_unit_test(test_nothing_to_load),
        cmocka_unit_test(test_vocab_only_loads),
        cmocka_unit_test(test_vocab_type_count),
        cmocka_unit_test(test_vocab_type_and_template),
        cmocka_unit_test(test_vocab_bos_outside),
        cmocka_unit_test(test_vocab_model_unknown),
        cmocka_unit_test(test_vocab_tokens_not_strings),
        cmocka_unit_test(test_evil_fixtures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
