/* tokenizer_internal: the representation of an xf_tokenizer and the calls
 * that the tokenizer's files make into each other. Private to
 * engine/tokenizer*.c; everything else goes through tokenizer.h.
 *   tokenizer.c         the vocabulary, merges and specials from a GGUF, lookups, queries, decode
 *   tokenizer_pretok.c  the pre-tokenizer regexes (GPT-2, Qwen2, SmolLM, Llama 3): choice and compilation
 *   tokenizer_encode.c  encoding: pre-tokens by regex, BPE merges by rank, special tokens
 *   tokenizer_text.c    streaming decode to whole UTF-8 characters, escaping of pieces
 *   tokenizer_chat.c    chat templates (ChatML): the default system text, formatting */
#ifndef XF_TOKENIZER_INTERNAL_H
#define XF_TOKENIZER_INTERNAL_H

#include "tokenizer.h"

#include <stdint.h>
#include <string.h>

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>


#define TOK_MAX_EOG 4
#define TOK_MERGE_EMPTY UINT64_MAX

typedef struct tok_merge {
    uint64_t key; /* (id_a << 32) | id_b; TOK_MERGE_EMPTY when the slot is free */
    int32_t rank;
    int32_t result;
} tok_merge;

struct xf_tokenizer {
    int32_t n_vocab;
    char *bytes;    /* all pieces back to back: [off[n_vocab]] */
    size_t *off;    /* [n_vocab + 1]: piece i is bytes[off[i] .. off[i+1]) */
    uint8_t *type;  /* [n_vocab] enum tok_type (clamped to 0..255) */
    int32_t *tid;   /* text -> id open addressing: [tid_mask + 1], -1 free */
    size_t tid_mask;
    tok_merge *merge; /* [merge_mask + 1] */
    size_t merge_mask;
    int32_t byte_tok[256]; /* the single-byte token of each byte, -1 if none */
    int32_t bos, eos, pad;
    int32_t eog[TOK_MAX_EOG];
    int n_eog;
    /* specials matched by parse_special, sorted by first byte, then longest first */
    int32_t *spec;
    size_t n_spec;
    size_t spec_start[257]; /* spec[spec_start[b] .. spec_start[b+1]) start with byte b */
    char pre[32];
    const char *re_pattern; /* the pre-tokenizer regex (tokenizer_pretok.c) */
    bool ignore_merges;     /* a pre-token that is a vocabulary entry is that token (llama-bpe) */
    char *chat_template;   /* NUL terminated, or NULL */
    char *chat_default_system; /* NUL terminated, or NULL */
    pcre2_code *re;
};

static inline const char *piece_ptr(const xf_tokenizer *t, int32_t id, size_t *len)
{
    *len = t->off[id + 1] - t->off[id];
    return t->bytes + t->off[id];
}


/* tokenizer.c */
uint64_t tok_hash_bytes(const void *data, size_t n);
size_t tok_pow2_at_least(size_t n);
/* the id whose piece is s[0..n), or -1 */
int32_t tok_tid_find(const xf_tokenizer *t, const char *s, size_t n);
/* the merge of ids (a, b), or NULL */
const tok_merge *tok_merge_find(const xf_tokenizer *t, int32_t a, int32_t b);
/* the file name of g for messages */
const char *tok_gguf_name(const gguf_file *g);
/* s[0..n) for an error message: escaped and cut to fit buf */
const char *tok_err_text(const char *s, size_t n, char *buf, size_t cap);

/* tokenizer_pretok.c: picks the regex that tokenizer.ggml.pre names (t->pre,
 * t->re_pattern), then compiles it into t->re once the vocabulary loaded. */
int tok_pretok_select(xf_tokenizer *t, const gguf_file *g, xf_err *err);
int tok_pretok_compile(xf_tokenizer *t, const gguf_file *g, xf_err *err);

/* tokenizer_chat.c: the default system text of a ChatML template, or NULL */
char *tok_chat_find_default_system(const char *tpl);

#endif
