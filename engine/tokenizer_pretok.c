/* tokenizer_pretok: the pre-tokenizer regexes that split text before BPE
 * (GPT-2's and Qwen2's, spelled for PCRE2 so that they match what HF's
 * tokenizers and llama.cpp match), the choice among them by
 * tokenizer.ggml.pre, and their compilation. */
#include "tokenizer_internal.h"

#include <stdio.h>


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

int tok_pretok_select(xf_tokenizer *t, const gguf_file *g, xf_err *err)
{
    const char *fn = tok_gguf_name(g);
    gguf_str s;
    t->re_pattern = k_re_gpt2;
    snprintf(t->pre, sizeof t->pre, "gpt-2");
    if (gguf_find_kv(g, "tokenizer.ggml.pre")) {
        if (gguf_get_str(g, "tokenizer.ggml.pre", &s, err))
            return -1;
        if (gguf_str_eq(s, "qwen2")) {
            t->re_pattern = k_re_qwen2;
            snprintf(t->pre, sizeof t->pre, "qwen2");
        } else if (!gguf_str_eq(s, "gpt-2") && !gguf_str_eq(s, "gpt2") && !gguf_str_eq(s, "default")) {
            char eb[80];
            xf_err_set(err, "%s: tokenizer.ggml.pre at byte %llu: pre-tokenizer \"%s\" is not supported (gpt-2, qwen2)",
                       fn, (unsigned long long)gguf_find_kv(g, "tokenizer.ggml.pre")->offset,
                       tok_err_text(s.ptr, (size_t)s.len, eb, sizeof eb));
            return -1;
        }
    }
    return 0;
}

int tok_pretok_compile(xf_tokenizer *t, const gguf_file *g, xf_err *err)
{
    const char *fn = tok_gguf_name(g);
    int ec;
    PCRE2_SIZE eoff;
    t->re = pcre2_compile((PCRE2_SPTR)t->re_pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eoff, NULL);
    if (!t->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        xf_err_set(err, "%s: tokenizer.ggml.pre: regex does not compile at %zu: %s", fn, (size_t)eoff,
                   (const char *)msg);
        return -1;
    }
    /* JIT is an optimization only: where it is missing pcre2_match interprets */
    (void)pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);
    return 0;
}
