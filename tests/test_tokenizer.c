/* Tokenizer tests: the llama.cpp vocab test vectors (GPT-2, Qwen2), round
 * trips, the streaming detokenizer, escaping, load and input errors on
 * vocabularies built with the gguf writer, and the ChatML format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gguf.h"
#include "gguf_writer.h"
#include "testutil.h"
#include "tokenizer.h"

#define VOCAB_GPT2 "tests/fixtures/vocab/ggml-vocab-gpt-2.gguf"
#define VOCAB_QWEN2 "tests/fixtures/vocab/ggml-vocab-qwen2.gguf"
/* made by scripts/make_tokenizer_vectors.py, ids from HF tokenizers */
#define VOCAB_SMOLLM "tests/fixtures/vocab/ggml-vocab-smollm.gguf"
#define VOCAB_LLAMA3 "tests/fixtures/vocab/ggml-vocab-llama-bpe.gguf"

typedef struct vocab_fixture {
    xf_tokenizer *gpt2;
    xf_tokenizer *qwen2;
} vocab_fixture;

static xf_tokenizer *load_tok(const char *rel)
{
    char path[1024];
    xf_err err = {{0}};
    gguf_file *g = gguf_open(tu_src_path(path, sizeof path, rel), &err);
    if (!g)
        fail_msg("%s", err.msg);
    xf_tokenizer *t = tok_new_from_gguf(g, &err);
    /* the tokenizer copies what it needs: close the file before any use */
    gguf_close(g);
    if (!t)
        fail_msg("%s", err.msg);
    return t;
}

static int setup(void **state)
{
    vocab_fixture *f = calloc(1, sizeof *f);
    f->gpt2 = load_tok(VOCAB_GPT2);
    f->qwen2 = load_tok(VOCAB_QWEN2);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    vocab_fixture *f = *state;
    tok_free(f->gpt2);
    tok_free(f->qwen2);
    free(f);
    return 0;
}

static char *read_file(const char *rel, size_t *len)
{
    char path[1024];
    FILE *fp = fopen(tu_src_path(path, sizeof path, rel), "rb");
    if (!fp)
        fail_msg("cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_int_equal(fread(s, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    s[n] = 0;
    *len = (size_t)n;
    return s;
}

/* The test vectors: texts split as llama.cpp's test-tokenizer-0 does (on
 * "\n__ggml_vocab_test__\n", so a text keeps its own leading and inner
 * newlines and nothing follows the last separator), one .out line each. */
typedef struct vectors {
    char *inp, *outp;
    size_t n;
    const char *text[128];
    size_t text_len[128];
    int32_t *want[128];
    size_t n_want[128];
} vectors;

/* rel.inp with the ids of rel + out_suffix (".out", ".special.out") */
static void vectors_load_ids(vectors *v, const char *rel, const char *out_suffix)
{
    char name[512];
    size_t li, lo;
    memset(v, 0, sizeof *v);
    snprintf(name, sizeof name, "%s.inp", rel);
    v->inp = read_file(name, &li);
    snprintf(name, sizeof name, "%s%s", rel, out_suffix);
    v->outp = read_file(name, &lo);

    static const char sep[] = "\n__ggml_vocab_test__\n";
    size_t pos = 0;
    while (pos < li) {
        assert_true(v->n < 128);
        char *next = strstr(v->inp + pos, sep);
        size_t end = next ? (size_t)(next - v->inp) : li;
        v->text[v->n] = v->inp + pos;
        v->text_len[v->n] = end - pos;
        v->n++;
        if (!next)
            break;
        pos = end + sizeof sep - 1;
    }

    size_t k = 0;
    /* by hand: strtok would merge the empty lines of empty texts */
    char *line = v->outp;
    while (line < v->outp + lo) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = 0;
        assert_true(k < v->n);
        v->want[k] = malloc(strlen(line) / 2 * sizeof(int32_t) + sizeof(int32_t));
        char *p = line;
        for (;;) {
            char *e;
            long x = strtol(p, &e, 10);
            if (e == p)
                break;
            v->want[k][v->n_want[k]++] = (int32_t)x;
            p = e;
        }
        k++;
        if (!nl)
            break;
        line = nl + 1;
    }
    assert_int_equal(k, v->n);
}

static void vectors_load(vectors *v, const char *rel)
{
    vectors_load_ids(v, rel, ".out");
}

static void vectors_free(vectors *v)
{
    for (size_t i = 0; i < v->n; i++)
        free(v->want[i]);
    free(v->inp);
    free(v->outp);
}

static void print_ids(const char *what, const int32_t *ids, size_t n)
{
    char buf[4096];
    size_t o = 0;
    for (size_t i = 0; i < n && o + 16 < sizeof buf; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, " %d", ids[i]);
    print_message("  %s:%s\n", what, buf);
}

/* parse_special false: as test-tokenizer-0 (rel.out); true: rel.special.out */
static void run_vectors_mode(const xf_tokenizer *t, const char *rel, bool parse_special)
{
    vectors v;
    vectors_load_ids(&v, rel, parse_special ? ".special.out" : ".out");
    size_t pass = 0, roundtrip = 0;
    for (size_t i = 0; i < v.n; i++) {
        int32_t *ids;
        size_t n;
        xf_err err = {{0}};
        /* as test-tokenizer-0: no BOS */
        if (tok_encode(t, v.text[i], v.text_len[i], parse_special, &ids, &n, &err))
            fail_msg("vector %zu: %s", i, err.msg);
        bool ok = n == v.n_want[i] && (n == 0 || memcmp(ids, v.want[i], n * sizeof *ids) == 0);
        if (ok) {
            pass++;
        } else {
            char esc[512];
            tok_escape(v.text[i], v.text_len[i], esc, sizeof esc);
            print_message("FAIL vector %zu \"%s\"\n", i, esc);
            print_ids("want", v.want[i], v.n_want[i]);
            print_ids("got ", ids, n);
        }
        char *back;
        size_t blen;
        assert_int_equal(tok_decode(t, ids, n, &back, &blen, &err), 0);
        if (blen == v.text_len[i] && memcmp(back, v.text[i], blen) == 0)
            roundtrip++;
        free(back);
        free(ids);
    }
    print_message("%s%s: %zu/%zu vectors pass, %zu/%zu round trips\n", rel,
                  parse_special ? " (specials)" : "", pass, v.n, roundtrip, v.n);
    assert_true(v.n >= 40);
    assert_int_equal(pass, v.n);
    assert_int_equal(roundtrip, v.n);
    vectors_free(&v);
}

static void run_vectors(const xf_tokenizer *t, const char *rel)
{
    run_vectors_mode(t, rel, false);
}

/* SmolLM2's vocabulary and Llama 3's (its first 16384 ranks): the ids of
 * HF tokenizers, with special tokens as text and parsed */
static void test_vectors_smollm_llama3(void **state)
{
    (void)state;
    static const struct {
        const char *rel, *pre;
    } v[] = {{VOCAB_SMOLLM, "smollm"}, {VOCAB_LLAMA3, "llama-bpe"}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        xf_tokenizer *t = load_tok(v[i].rel);
        assert_string_equal(tok_pre_name(t), v[i].pre);
        run_vectors_mode(t, v[i].rel, false);
        run_vectors_mode(t, v[i].rel, true);
        if (i == 0) {
            /* SmolLM2's ChatML template adds its default system message */
            tok_chat_msg msg = {.role = "user", .content = "Hi"};
            char *out;
            xf_err err = {{0}};
            assert_int_equal(tok_chat_format(t, &msg, 1, true, &out, &err), 0);
            assert_string_equal(out,
                                "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
                                "Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                                "<|im_start|>assistant\n");
            free(out);
            assert_true(tok_is_eog(t, 2)); /* <|im_end|> */
        }
        tok_free(t);
    }
}

static void test_vectors_gpt2(void **state)
{
    vocab_fixture *f = *state;
    run_vectors(f->gpt2, VOCAB_GPT2);
}

static void test_vectors_qwen2(void **state)
{
    vocab_fixture *f = *state;
    run_vectors(f->qwen2, VOCAB_QWEN2);
}

static void test_metadata(void **state)
{
    vocab_fixture *f = *state;
    assert_int_equal(tok_vocab_size(f->gpt2), 50257);
    assert_int_equal(tok_bos(f->gpt2), 50256);
    assert_int_equal(tok_eos(f->gpt2), 50256);
    assert_int_equal(tok_pad(f->gpt2), -1);
    assert_string_equal(tok_pre_name(f->gpt2), "gpt-2");
    assert_null(tok_chat_template(f->gpt2));
    assert_true(tok_is_eog(f->gpt2, 50256));
    assert_false(tok_is_eog(f->gpt2, 50255));
    assert_int_equal(tok_type(f->gpt2, 50256), TOK_TYPE_CONTROL);
    assert_int_equal(tok_type(f->gpt2, 50257), -1);

    assert_int_equal(tok_vocab_size(f->qwen2), 151936);
    assert_string_equal(tok_pre_name(f->qwen2), "qwen2");
    assert_int_equal(tok_eos(f->qwen2), 151643);
    assert_int_equal(tok_pad(f->qwen2), 151643);
    assert_true(tok_is_eog(f->qwen2, 151643)); /* <|endoftext|> */
    assert_true(tok_is_eog(f->qwen2, 151645)); /* <|im_end|> */
    assert_false(tok_is_eog(f->qwen2, 151644)); /* <|im_start|> */
    assert_true(tok_is_special(f->qwen2, 151644));
    assert_false(tok_is_special(f->qwen2, 9707));

    /* pieces are raw bytes: 'Ġ' (U+0120) in the file is the space byte */
    size_t l;
    const char *p = tok_piece(f->gpt2, 220, &l);
    assert_int_equal(l, 1);
    assert_int_equal(p[0], ' ');
    p = tok_piece(f->gpt2, 15496, &l);
    assert_int_equal(l, 5);
    assert_memory_equal(p, "Hello", 5);
    p = tok_piece(f->qwen2, 151645, &l);
    assert_int_equal(l, 10);
    assert_memory_equal(p, "<|im_end|>", 10);
    assert_null(tok_piece(f->gpt2, -1, &l));
    assert_null(tok_piece(f->gpt2, 50257, &l));
    assert_int_equal(tok_id_of(f->gpt2, " ", 1), 220);
    assert_int_equal(tok_id_of(f->gpt2, "Hello", 5), 15496);
    assert_int_equal(tok_id_of(f->gpt2, "<|endoftext|>", 13), 50256);
    assert_int_equal(tok_id_of(f->gpt2, "no-such-token-xyzzy", 19), -1);
    assert_int_equal(tok_id_of(f->gpt2, "", 0), -1);
}

static void expect_ids(const xf_tokenizer *t, const char *text, bool special, const int32_t *want, size_t n_want)
{
    int32_t *ids;
    size_t n;
    xf_err err = {{0}};
    if (tok_encode(t, text, strlen(text), special, &ids, &n, &err))
        fail_msg("%s", err.msg);
    if (n != n_want || memcmp(ids, want, n * sizeof *ids) != 0) {
        print_ids("want", want, n_want);
        print_ids("got ", ids, n);
        fail_msg("encoding of \"%s\" differs", text);
    }
    free(ids);
}

static void test_special(void **state)
{
    vocab_fixture *f = *state;
    int32_t *ids, *plain;
    size_t n, n_plain;
    xf_err err = {{0}};
    const char *text = "<|im_start|>user\nHi<|im_end|>\n";

    /* parse_special: the specials are single ids around the encoding of the rest */
    assert_int_equal(tok_encode(f->qwen2, text, strlen(text), true, &ids, &n, &err), 0);
    assert_int_equal(tok_encode(f->qwen2, "user\nHi", 7, false, &plain, &n_plain, &err), 0);
    assert_int_equal(n, n_plain + 3);
    assert_int_equal(ids[0], 151644);
    assert_memory_equal(ids + 1, plain, n_plain * sizeof *ids);
    assert_int_equal(ids[n_plain + 1], 151645);
    assert_int_equal(ids[n_plain + 2], 198); /* "\n" */
    free(ids);
    free(plain);

    /* without it they are text: no special id, and it round-trips */
    assert_int_equal(tok_encode(f->qwen2, text, strlen(text), false, &ids, &n, &err), 0);
    assert_true(n > 10);
    for (size_t i = 0; i < n; i++)
        assert_false(tok_is_special(f->qwen2, ids[i]));
    char *back;
    size_t bl;
    assert_int_equal(tok_decode(f->qwen2, ids, n, &back, &bl, &err), 0);
    assert_string_equal(back, text);
    free(back);
    free(ids);

    const int32_t eot[] = {50256};
    expect_ids(f->gpt2, "<|endoftext|>", true, eot, 1);
    const int32_t hello_eot[] = {15496, 50256, 15496};
    expect_ids(f->gpt2, "Hello<|endoftext|>Hello", true, hello_eot, 3);
    /* a special split across fragments does not match */
    assert_int_equal(tok_encode(f->gpt2, "<|endoftext|", 12, true, &ids, &n, &err), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(ids[i], 50256);
    free(ids);
    /* the empty text is no tokens, and still a valid array */
    assert_int_equal(tok_encode(f->gpt2, "", 0, true, &ids, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_non_null(ids);
    free(ids);
}

static void expect_encode_error(const xf_tokenizer *t, const char *text, size_t len, const char *want)
{
    int32_t *ids = (int32_t *)1;
    size_t n = 99;
    xf_err err = {{0}};
    assert_int_equal(tok_encode(t, text, len, true, &ids, &n, &err), -1);
    assert_null(ids);
    assert_int_equal(n, 0);
    if (!strstr(err.msg, want))
        fail_msg("error \"%s\" does not name \"%s\"", err.msg, want);
}

static void test_invalid_utf8(void **state)
{
    vocab_fixture *f = *state;
    expect_encode_error(f->gpt2, "ab\xC3(", 4, "at byte 2");
    expect_encode_error(f->gpt2, "\xED\xA0\x80", 3, "at byte 0");          /* surrogate */
    expect_encode_error(f->gpt2, "x\xC0\xAF", 3, "at byte 1");             /* overlong '/' */
    expect_encode_error(f->qwen2, "hello \x80 world", 13, "at byte 6");    /* stray continuation */
    expect_encode_error(f->qwen2, "abc\xE2\x82", 5, "at byte 3");          /* truncated at the end */
    expect_encode_error(f->qwen2, "\xF4\x90\x80\x80", 4, "at byte 0");     /* above U+10FFFF */
    assert_int_equal(tok_utf8_valid_prefix("h\xC3\xA9llo", 6), 6);
    assert_int_equal(tok_utf8_valid_prefix("h\xC3llo", 5), 1);
}

/* every chunk the stream gives is valid UTF-8, and together they are the text */
static void stream_check(const xf_tokenizer *t, const char *text, size_t len)
{
    int32_t *ids;
    size_t n;
    xf_err err = {{0}};
    assert_int_equal(tok_encode(t, text, len, false, &ids, &n, &err), 0);
    tok_stream *s = tok_stream_new(t, &err);
    assert_non_null(s);
    char *acc = malloc(len + 16);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *out;
        size_t ol;
        bool rep = true;
        assert_int_equal(tok_stream_push(s, ids[i], &out, &ol, &rep, &err), 0);
        assert_false(rep);
        assert_int_equal(tok_utf8_valid_prefix(out, ol), ol);
        assert_true(o + ol <= len);
        memcpy(acc + o, out, ol);
        o += ol;
    }
    const char *out;
    size_t ol;
    bool rep = true;
    assert_int_equal(tok_stream_flush(s, &out, &ol, &rep, &err), 0);
    assert_false(rep);
    assert_int_equal(ol, 0);
    assert_int_equal(o, len);
    assert_memory_equal(acc, text, len);
    free(acc);
    tok_stream_free(s);
    free(ids);
}

static void test_stream(void **state)
{
    vocab_fixture *f = *state;
    xf_err err = {{0}};
    /* GPT-2 splits the llama emoji (F0 9F A6 99) as " \xF0\x9F", "\xA6", "\x99" */
    const int32_t llama[] = {428, 318, 12520, 99, 247, 13, 20322};
    expect_ids(f->gpt2, " this is \xF0\x9F\xA6\x99.cpp", false, llama, 7);
    tok_stream *s = tok_stream_new(f->gpt2, &err);
    const char *out;
    size_t ol;
    bool rep;
    const char *want[] = {" this", " is", " ", "", "\xF0\x9F\xA6\x99", ".", "cpp"};
    for (int i = 0; i < 7; i++) {
        assert_int_equal(tok_stream_push(s, llama[i], &out, &ol, &rep, &err), 0);
        assert_int_equal(ol, strlen(want[i]));
        assert_memory_equal(out, want[i], ol);
        assert_false(rep);
        assert_int_equal(tok_stream_pending(s), i == 2 ? 2u : i == 3 ? 3u : 0u);
    }
    /* cut off inside the character: the flush replaces it and says so */
    assert_int_equal(tok_stream_push(s, 12520, &out, &ol, &rep, &err), 0);
    assert_int_equal(ol, 1);
    assert_int_equal(tok_stream_flush(s, &out, &ol, &rep, &err), 0);
    assert_true(rep);
    assert_int_equal(ol, 3);
    assert_memory_equal(out, "\xEF\xBF\xBD", 3);
    assert_int_equal(tok_stream_pending(s), 0);
    /* a byte that can never start a character is replaced at once */
    int32_t cont = tok_id_of(f->gpt2, "\x99", 1);
    assert_true(cont >= 0);
    assert_int_equal(tok_stream_push(s, cont, &out, &ol, &rep, &err), 0);
    assert_true(rep);
    assert_int_equal(ol, 3);
    assert_memory_equal(out, "\xEF\xBF\xBD", 3);
    /* a lead byte followed by a non-continuation: U+FFFD then the text */
    int32_t lead = tok_id_of(f->gpt2, "\xE4", 1);
    assert_int_equal(tok_stream_push(s, lead, &out, &ol, &rep, &err), 0);
    assert_int_equal(ol, 0);
    assert_int_equal(tok_stream_push(s, 15496, &out, &ol, &rep, &err), 0);
    assert_true(rep);
    assert_int_equal(ol, 8);
    assert_memory_equal(out, "\xEF\xBF\xBDHello", 8);
    assert_int_equal(tok_stream_push(s, 50257, &out, &ol, &rep, &err), -1);
    assert_non_null(strstr(err.msg, "50257"));
    tok_stream_free(s);

    vectors v;
    vectors_load(&v, VOCAB_QWEN2);
    for (size_t i = 0; i < v.n; i++) {
        stream_check(f->qwen2, v.text[i], v.text_len[i]);
        stream_check(f->gpt2, v.text[i], v.text_len[i]);
    }
    vectors_free(&v);
}

static void expect_escape(const char *in, size_t len, const char *want)
{
    char buf[256];
    size_t need = tok_escape(in, len, buf, sizeof buf);
    assert_string_equal(buf, want);
    assert_int_equal(need, strlen(want));
}

static void test_escape(void **state)
{
    (void)state;
    expect_escape("a\nb\tc\\d", 7, "a\\nb\\tc\\\\d");
    expect_escape("\x01\x1b[\x7f", 4, "\\x01\\x1B[\\x7F");
    expect_escape("h\xC3\xA9 \xE4\xB8\x96", 7, "h\xC3\xA9 \xE4\xB8\x96");
    expect_escape("\xC3", 1, "\\xC3");
    expect_escape("\xE4\xB8", 2, "\\xE4\\xB8");
    expect_escape("\xC2\x9B", 2, "\\xC2\\x9B"); /* C1 CSI */
    expect_escape("a\0b", 3, "a\\x00b");
    /* a short buffer: cut between units, NUL terminated, full length returned */
    char small[6];
    size_t need = tok_escape("ab\ncd", 5, small, sizeof small);
    assert_int_equal(need, 6);
    assert_string_equal(small, "ab\\nc");
    need = tok_escape("abc\n", 4, small, 5);
    assert_string_equal(small, "abc");
    assert_int_equal(need, 5);
    assert_int_equal(tok_escape("abc", 3, NULL, 0), 3);
}

static void expect_unescape(const char *in, const char *want, size_t want_len)
{
    char *out;
    size_t n;
    xf_err err = {{0}};
    if (tok_unescape(in, &out, &n, &err))
        fail_msg("%s: %s", in, err.msg);
    assert_int_equal(n, want_len);
    assert_memory_equal(out, want, n);
    assert_int_equal(out[n], 0);
    free(out);
}

static void expect_unescape_error(const char *in, const char *want)
{
    char *out = (char *)1;
    size_t n;
    xf_err err = {{0}};
    assert_int_equal(tok_unescape(in, &out, &n, &err), -1);
    assert_null(out);
    if (!strstr(err.msg, want))
        fail_msg("error \"%s\" does not name \"%s\"", err.msg, want);
}

static void test_unescape(void **state)
{
    (void)state;
    expect_unescape("plain", "plain", 5);
    expect_unescape("a\\nb\\tc\\rd\\\\e\\\"f\\'g", "a\nb\tc\rd\\e\"f'g", 13);
    expect_unescape("x\\0y", "x\0y", 3);
    expect_unescape("\\x41\\xff", "A\xff", 2);
    expect_unescape("\\u00e9\\u4E16", "\xC3\xA9\xE4\xB8\x96", 5);
    expect_unescape("\\U0001F999", "\xF0\x9F\xA6\x99", 4);
    expect_unescape("", "", 0);
    expect_unescape_error("ab\\q", "unknown escape \\q at position 2");
    expect_unescape_error("\\x4", "position 0");
    expect_unescape_error("abc\\xZZ", "position 3");
    expect_unescape_error("\\u12", "position 0");
    expect_unescape_error("  \\uD800", "position 2");
    expect_unescape_error("\\U00110000", "position 0");
    expect_unescape_error("tail\\", "position 4");
}

/* ---- small vocabularies built with the gguf writer */

/* GPT-2's byte-to-unicode form of byte b, as UTF-8 */
static void bl_char(int b, char *out)
{
    int cp = b, extra = 0;
    bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    if (!keep) {
        for (int k = 0; k < b; k++)
            if (!((k >= 33 && k <= 126) || (k >= 161 && k <= 172) || (k >= 174 && k <= 255)))
                extra++;
        cp = 256 + extra;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = 0;
    }
}

typedef struct mini_vocab {
    char *tok[300];
    int32_t type[300];
    size_t n_tok;
    const char *merges[8];
    size_t n_merges;
    const char *tpl;
    const char *pre; /* tokenizer.ggml.pre; NULL: qwen2 */
} mini_vocab;

/* 256 byte tokens, then "ab" "Ġa" "Ġab" "<|im_start|>" "<|im_end|>", merges "Ġ a", "a b", "Ġa b" */
static void mini_init(mini_vocab *v)
{
    memset(v, 0, sizeof *v);
    for (int b = 0; b < 256; b++) {
        v->tok[b] = malloc(4);
        bl_char(b, v->tok[b]);
        v->type[b] = TOK_TYPE_NORMAL;
    }
    v->n_tok = 256;
    const char *extra[] = {"ab", "\xC4\xA0" "a", "\xC4\xA0" "ab", "<|im_start|>", "<|im_end|>"};
    for (size_t i = 0; i < 5; i++) {
        v->tok[v->n_tok] = strdup(extra[i]);
        v->type[v->n_tok++] = i < 3 ? TOK_TYPE_NORMAL : TOK_TYPE_CONTROL;
    }
    v->merges[0] = "\xC4\xA0 a";
    v->merges[1] = "a b";
    v->merges[2] = "\xC4\xA0" "a b";
    v->n_merges = 3;
}

static void mini_free(mini_vocab *v)
{
    for (size_t i = 0; i < v->n_tok; i++)
        free(v->tok[i]);
}

/* serializes v; the caller frees *buf after closing the file */
static gguf_file *mini_open(const mini_vocab *v, uint8_t **buf, size_t *size)
{
    gguf_writer *w = gguf_writer_new(3, 32);
    xf_err err = {{0}};
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "qwen2"), 0);
    assert_int_equal(gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2"), 0);
    assert_int_equal(gguf_writer_set_str(w, "tokenizer.ggml.pre", v->pre ? v->pre : "qwen2"), 0);
    assert_int_equal(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)v->tok, v->n_tok), 0);
    assert_int_equal(gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", v->type, v->n_tok), 0);
    assert_int_equal(gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", v->merges, v->n_merges), 0);
    assert_int_equal(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 260), 0);
    if (v->tpl)
        assert_int_equal(gguf_writer_set_str(w, "tokenizer.chat_template", v->tpl), 0);
    if (gguf_writer_to_mem(w, buf, size, &err))
        fail_msg("%s", err.msg);
    gguf_writer_free(w);
    gguf_file *g = gguf_open_mem(*buf, *size, "mini.gguf", &err);
    if (!g)
        fail_msg("%s", err.msg);
    return g;
}

/* offset in the serialized file of the string element `s` (after its length) */
static unsigned long long str_at(const uint8_t *buf, size_t size, const char *s, size_t skip)
{
    size_t l = strlen(s);
    for (size_t i = 8; i + l <= size; i++) {
        uint64_t len;
        memcpy(&len, buf + i - 8, 8);
        if (len == l && memcmp(buf + i, s, l) == 0 && skip-- == 0)
            return i;
    }
    fail_msg("string %s not in file", s);
    return 0;
}

static void expect_load_error(mini_vocab *v, const char *field, const char *what, const char *elem, size_t skip,
                              size_t delta)
{
    uint8_t *buf;
    size_t size;
    gguf_file *g = mini_open(v, &buf, &size);
    xf_err err = {{0}};
    xf_tokenizer *t = tok_new_from_gguf(g, &err);
    assert_null(t);
    char want[256];
    snprintf(want, sizeof want, "mini.gguf: %s at byte %llu: ", field, str_at(buf, size, elem, skip) + delta);
    if (!strstr(err.msg, want) || !strstr(err.msg, what))
        fail_msg("error \"%s\" lacks \"%s\" / \"%s\"", err.msg, want, what);
    gguf_close(g);
    free(buf);
}

static void test_mini_vocab(void **state)
{
    (void)state;
    mini_vocab v;
    mini_init(&v);
    uint8_t *buf;
    size_t size;
    gguf_file *g = mini_open(&v, &buf, &size);
    xf_err err = {{0}};
    xf_tokenizer *t = tok_new_from_gguf(g, &err);
    if (!t)
        fail_msg("%s", err.msg);
    gguf_close(g);
    free(buf);
    /* " abab": Ġ+a (rank 0), then the second a+b (rank 1), then Ġa+b (rank 2) */
    const int32_t w1[] = {258, 256};
    expect_ids(t, " abab", false, w1, 2);
    const int32_t w2[] = {'x', 256, 'a'};
    expect_ids(t, "xaba", false, w2, 3);
    const int32_t w3[] = {259, 'x', 260};
    expect_ids(t, "<|im_start|>x<|im_end|>", true, w3, 3);
    assert_true(tok_is_eog(t, 260));
    assert_null(tok_chat_default_system(t));
    tok_free(t);

    /* broken vocabularies: each error names the field, index and byte offset */
    v.merges[1] = "a c"; /* "ac" is not a token */
    expect_load_error(&v, "tokenizer.ggml.merges[1]", "is not a token", "a c", 0, 0);
    v.merges[1] = "ab"; /* not "a b" */
    expect_load_error(&v, "tokenizer.ggml.merges[1]", "is not of the form \"a b\"", "ab", 1, 0);
    v.merges[1] = "a  b";
    expect_load_error(&v, "tokenizer.ggml.merges[1]", "is not of the form", "a  b", 0, 0);
    v.merges[1] = "a \x01";
    expect_load_error(&v, "tokenizer.ggml.merges[1]", "is not byte-level BPE text", "a \x01", 0, 2);
    v.merges[1] = "a b";

    /* a normal token holding a real space has no byte-level form */
    free(v.tok[257]);
    v.tok[257] = strdup("x y");
    expect_load_error(&v, "tokenizer.ggml.tokens[257]", "is not byte-level BPE text", "x y", 0, 1);
    free(v.tok[257]);
    v.tok[257] = strdup("\xC4\xA0" "a");

    /* llama-bpe ignores merges for a pre-token that is a token: without the
     * merge "Ġa b", " ab" is Ġa + b by BPE, but the token Ġab as a whole */
    v.n_merges = 2;
    static const struct {
        const char *pre;
        int32_t ids[2];
        size_t n;
    } im[] = {{"qwen2", {257, 'b'}, 2}, {"llama-bpe", {258}, 1}, {"smollm", {257, 'b'}, 2}};
    for (size_t i = 0; i < sizeof im / sizeof im[0]; i++) {
        v.pre = im[i].pre;
        g = mini_open(&v, &buf, &size);
        t = tok_new_from_gguf(g, &err);
        if (!t)
            fail_msg("%s", err.msg);
        gguf_close(g);
        free(buf);
        expect_ids(t, " ab", false, im[i].ids, im[i].n);
        tok_free(t);
    }
    mini_free(&v);
}

static void test_chat(void **state)
{
    vocab_fixture *f = *state;
    char *out = NULL;
    xf_err err = {{0}};
    tok_chat_msg user = {"user", "Hello"};
    /* the Qwen2 file's template carries "You are a helpful assistant" */
    assert_string_equal(tok_chat_default_system(f->qwen2), "You are a helpful assistant");
    assert_int_equal(tok_chat_format(f->qwen2, &user, 1, true, &out, &err), 0);
    assert_string_equal(out, "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
                             "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
    free(out);
    tok_chat_msg two[] = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}};
    assert_int_equal(tok_chat_format(f->qwen2, two, 4, false, &out, &err), 0);
    assert_string_equal(out, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                             "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n");
    free(out);
    /* GPT-2 has no chat format */
    assert_int_equal(tok_chat_format(f->gpt2, &user, 1, true, &out, &err), -1);
    assert_null(out);
    assert_non_null(strstr(err.msg, "<|im_start|>"));
    tok_chat_msg bad = {NULL, "x"};
    assert_int_equal(tok_chat_format(f->qwen2, &bad, 1, true, &out, &err), -1);

    /* the no-tools part of the Qwen2.5 template (its text, as in the model's GGUF) */
    mini_vocab v;
    mini_init(&v);
    v.tpl = "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n"
            "        {{- messages[0]['content'] }}\n    {%- else %}\n"
            "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n"
            "{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n"
            "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n"
            "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n";
    uint8_t *buf;
    size_t size;
    gguf_file *g = mini_open(&v, &buf, &size);
    xf_tokenizer *t = tok_new_from_gguf(g, &err);
    assert_non_null(t);
    gguf_close(g);
    free(buf);
    assert_string_equal(tok_chat_default_system(t), "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
    assert_int_equal(tok_chat_format(t, &user, 1, true, &out, &err), 0);
    assert_string_equal(out, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                             "assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
    free(out);
    tok_free(t);
    mini_free(&v);
}

/* long inputs: a long run of one class, and many repeated words */
static void test_long(void **state)
{
    vocab_fixture *f = *state;
    size_t n = 200000;
    char *s = malloc(n + 1);
    memset(s, 'a', n);
    s[n] = 0;
    int32_t *ids;
    size_t ni;
    xf_err err = {{0}};
    const xf_tokenizer *toks[] = {f->gpt2, f->qwen2};
    for (int k = 0; k < 2; k++) {
        assert_int_equal(tok_encode(toks[k], s, n, false, &ids, &ni, &err), 0);
        char *back;
        size_t bl;
        assert_int_equal(tok_decode(toks[k], ids, ni, &back, &bl, &err), 0);
        assert_int_equal(bl, n);
        assert_memory_equal(back, s, n);
        assert_true(ni < n / 2);
        free(back);
        free(ids);
    }
    /* repeated words give the same ids each time (the per-call memo) */
    const char *w = " hello";
    for (size_t i = 0; i + 6 <= n; i += 6)
        memcpy(s + i, w, 6);
    size_t m = n / 6 * 6;
    assert_int_equal(tok_encode(f->gpt2, s, m, false, &ids, &ni, &err), 0);
    assert_int_equal(ni, n / 6);
    for (size_t i = 0; i < ni; i++)
        assert_int_equal(ids[i], 23748); /* " hello" */
    free(ids);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_gpt2), cmocka_unit_test(test_vectors_qwen2),
        cmocka_unit_test(test_metadata),     cmocka_unit_test(test_special),
        cmocka_unit_test(test_invalid_utf8), cmocka_unit_test(test_stream),
        cmocka_unit_test(test_escape),       cmocka_unit_test(test_unescape),
        cmocka_unit_test(test_mini_vocab),   cmocka_unit_test(test_chat),
        cmocka_unit_test(test_long),         cmocka_unit_test(test_vectors_smollm_llama3),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
