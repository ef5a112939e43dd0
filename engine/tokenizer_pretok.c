/* tokenizer_pretok: the pre-tokenizer regexes that split text before BPE
 * (GPT-2's, Qwen2's, SmolLM's and Llama 3's, spelled for PCRE2 so that they
 * match what HF's tokenizers and llama.cpp match), the choice among them by
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

/* SmolLM (llama.cpp's "smollm", HF: Digits(individual_digits) then
 * ByteLevel's GPT-2 regex): every digit is a piece of its own, the GPT-2
 * regex splits the text between digits. One regex does both: \p{N} comes
 * first, and where GPT-2's "whitespace not followed by a non-space" looks
 * past the end of a between-digits segment it sees a digit here, so the
 * lookahead treats a digit as the segment's end ([^WS\p{N}] for \S). The
 * other alternatives never span a digit. */
static const char k_re_smollm[] = "\\p{N}|'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?[^" WS "\\p{L}\\p{N}]+"
                                  "|[" WS "]+(?![^" WS "\\p{N}])|[" WS "]+";

/* Llama 3 (llama.cpp's "llama-bpe"): Qwen2's regex with digits in runs of
 * up to three. Its BPE also ignores merges for a pre-token that is a
 * vocabulary entry (HF: ignore_merges). */
static const char k_re_llama3[] = "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]"
                                  "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
                                  "| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+"
                                  "|[" WS "]+(?![^" WS "])|[" WS "]+";

/* tokenizer.ggml.pre values and what they select (the first name is the one shown) */
static const struct pretok {
    const char *name, *alias[3];
    const char *re;
    bool ignore_merges;
} k_pretok[] = {
    {"gpt-2", {"gpt2", "default", NULL}, k_re_gpt2, false},
    {"qwen2", {NULL}, k_re_qwen2, false},
    {"smollm", {NULL}, k_re_smollm, false},
    {"llama-bpe", {"llama3", "llama-v3", NULL}, k_re_llama3, true},
};

int tok_pretok_select(xf_tokenizer *t, const gguf_file *g, xf_err *err)
{
    const char *fn = tok_gguf_name(g);
    gguf_str s;
    const struct pretok *pick = &k_pretok[0];
    if (gguf_find_kv(g, "tokenizer.ggml.pre")) {
        if (gguf_get_str(g, "tokenizer.ggml.pre", &s, err))
            return -1;
        pick = NULL;
        for (size_t i = 0; i < sizeof k_pretok / sizeof k_pretok[0] && !pick; i++) {
            if (gguf_str_eq(s, k_pretok[i].name))
                pick = &k_pretok[i];
            for (int a = 0; a < 3 && k_pretok[i].alias[a] && !pick; a++)
                if (gguf_str_eq(s, k_pretok[i].alias[a]))
                    pick = &k_pretok[i];
        }
        if (!pick) {
            char eb[80];
            xf_err_set(err,
                       "%s: tokenizer.ggml.pre at byte %llu: pre-tokenizer \"%s\" is not supported (gpt-2, qwen2, "
                       "smollm, llama-bpe)",
                       fn, (unsigned long long)gguf_find_kv(g, "tokenizer.ggml.pre")->offset,
                       tok_err_text(s.ptr, (size_t)s.len, eb, sizeof eb));
            return -1;
        }
    }
    t->re_pattern = pick->re;
    t->ignore_merges = pick->ignore_merges;
    snprintf(t->pre, sizeof t->pre, "%s", pick->name);
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
