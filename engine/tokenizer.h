/* tokenizer: byte-level BPE as in GPT-2 and Qwen2, built from the metadata
 * of a GGUF file (tokenizer.ggml.*). Owns the vocabulary (token bytes, types,
 * text->id and merge-rank hash tables), the compiled pre-tokenizer regex,
 * special-token matching, the streaming detokenizer that never emits broken
 * UTF-8, display escaping of pieces, C-escape parsing of TEXT arguments, and
 * the ChatML chat format. An xf_tokenizer is immutable after tok_new_from_gguf,
 * so one tokenizer may encode from several threads at once. */
#ifndef XF_TOKENIZER_H
#define XF_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "gguf.h"

/* tokenizer.ggml.token_type values (llama.cpp's llama_token_type). */
enum tok_type {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6,
};

typedef struct xf_tokenizer xf_tokenizer;

/* Builds the tokenizer from tokenizer.ggml.{model,pre,tokens,token_type,merges,
 * bos_token_id,eos_token_id,padding_token_id} and tokenizer.chat_template.
 * The gguf_file may be closed afterwards (everything is copied).
 * Errors read "FILE: FIELD[INDEX] at byte OFFSET: what is wrong". */
xf_tokenizer *tok_new_from_gguf(const gguf_file *g, xf_err *err);
void tok_free(xf_tokenizer *t);

/* Encodes len bytes of text (must be valid UTF-8; an error names the byte
 * offset of the first bad byte). No BOS is added. With parse_special, the
 * texts of control (3) and user-defined (4) tokens are matched as single
 * tokens, leftmost and longest first; without it they are plain text.
 * *ids is malloc'd (free() it; non-NULL even when *n_ids is 0). */
int tok_encode(const xf_tokenizer *t, const char *text, size_t len, bool parse_special, int32_t **ids,
               size_t *n_ids, xf_err *err);

int32_t tok_vocab_size(const xf_tokenizer *t);
int32_t tok_bos(const xf_tokenizer *t); /* -1 if none */
int32_t tok_eos(const xf_tokenizer *t); /* -1 if none */
int32_t tok_pad(const xf_tokenizer *t); /* -1 if none */
/* End of generation: the eos id and the tokens <|im_end|>, <|endoftext|>. */
bool tok_is_eog(const xf_tokenizer *t, int32_t id);
/* enum tok_type of id; -1 for an id out of range. */
int tok_type(const xf_tokenizer *t, int32_t id);
/* Control or user-defined: matched as a whole by tok_encode(parse_special). */
bool tok_is_special(const xf_tokenizer *t, int32_t id);
/* tokenizer.ggml.pre as loaded ("gpt-2", "qwen2"). */
const char *tok_pre_name(const xf_tokenizer *t);
/* tokenizer.chat_template, NUL terminated; NULL if the file has none. */
const char *tok_chat_template(const xf_tokenizer *t);

/* The raw bytes of a token (specials give their text). Not NUL terminated;
 * may be an incomplete or invalid UTF-8 sequence. NULL for an id out of range. */
const char *tok_piece(const xf_tokenizer *t, int32_t id, size_t *len);
/* The id whose raw bytes are exactly text[0..len); -1 if none. */
int32_t tok_id_of(const xf_tokenizer *t, const char *text, size_t len);
/* Concatenated raw bytes of the pieces (no UTF-8 repair); *out is malloc'd
 * and NUL terminated. An id out of range is an error. */
int tok_decode(const xf_tokenizer *t, const int32_t *ids, size_t n, char **out, size_t *out_len, xf_err *err);

/* Streaming detokenizer: push ids one at a time and get back only bytes that
 * form complete, valid UTF-8. A piece that ends inside a multi-byte character
 * is held until the next push completes it; bytes that can never become valid
 * (a stray continuation byte, an overlong form, a surrogate) are replaced by
 * U+FFFD at once, and a flush at the end replaces what is still held. The
 * output pointer is owned by the stream and valid until its next call. */
typedef struct tok_stream tok_stream;
tok_stream *tok_stream_new(const xf_tokenizer *t, xf_err *err);
void tok_stream_free(tok_stream *s);
/* *replaced (may be NULL) tells whether this call emitted U+FFFD. */
int tok_stream_push(tok_stream *s, int32_t id, const char **out, size_t *out_len, bool *replaced, xf_err *err);
int tok_stream_flush(tok_stream *s, const char **out, size_t *out_len, bool *replaced, xf_err *err);
/* Bytes held back, waiting for the rest of a character (0..3). */
size_t tok_stream_pending(const tok_stream *s);

/* UTF-8 validation helper shared by the tokenizer's users: returns the byte
 * offset of the first byte that is not part of valid UTF-8 (a truncated
 * sequence at the end counts as invalid), or len if all is valid. The same
 * as utf8_valid_prefix (base/utf8.h), which code of the engine uses. */
size_t tok_utf8_valid_prefix(const char *s, size_t len);

/* Escapes a piece for terminal display: \n -> "\n", \t -> "\t", backslash
 * doubled, every other control byte (C0, DEL, and the C1 characters U+0080..
 * U+009F) and every byte of invalid UTF-8 as \xNN; valid printable UTF-8 is
 * copied. Writes at most cap bytes including the NUL (never cutting an escape
 * or a character in half) and returns the length the whole escaped text
 * needs, like snprintf. */
size_t tok_escape(const char *s, size_t len, char *buf, size_t cap);

/* Parses C escapes of a TEXT argument: \n \t \r \0 \\ \" \' \a \b \f \v \e,
 * \xNN (exactly two hex digits, any byte), \uXXXX (four hex digits) and
 * \UXXXXXXXX (eight) as UTF-8 (surrogates and values above U+10FFFF are
 * errors). An unknown escape or a malformed one is an error naming its
 * 0-based byte position in `in`. *out is malloc'd, NUL terminated, and may
 * hold NUL bytes (hence *out_len). */
int tok_unescape(const char *in, char **out, size_t *out_len, xf_err *err);

/* ChatML: for each message "<|im_start|>ROLE\nCONTENT<|im_end|>\n", then
 * "<|im_start|>assistant\n" when add_generation_prompt. When the first
 * message is not a system message and the file's chat template carries a
 * default system text (Qwen2: "You are a helpful assistant", Qwen2.5: "You are
 * Qwen, created by Alibaba Cloud. You are a helpful assistant."), that system
 * message comes first, as the template does. A vocabulary without the
 * <|im_start|> and <|im_end|> tokens is an error (GPT-2 has no chat format).
 * *out is malloc'd and NUL terminated; encode it with parse_special. */
typedef struct tok_chat_msg {
    const char *role;    /* "system", "user", "assistant", ... */
    const char *content; /* NUL terminated */
} tok_chat_msg;
int tok_chat_format(const xf_tokenizer *t, const tok_chat_msg *msgs, size_t n, bool add_generation_prompt,
                    char **out, xf_err *err);
/* The default system text found in the chat template, NULL if none. */
const char *tok_chat_default_system(const xf_tokenizer *t);

#endif
