/* make_corpus: writes the seed corpus of the fuzz harnesses into
 * DIR/<harness>/ (DIR: argv[1], default tests/fuzz/corpus): tiny GGUF
 * models (GPT-2 and Qwen2, F32, F16 and Q8_0, vocabulary only), small
 * safetensors dumps of every dtype, command scripts and slices, and
 * session files. Small real files give the fuzzer a valid structure to
 * mutate instead of having to discover the formats byte by byte. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz/tinymodel.h"
#include "refdump.h"

static const char *g_dir;

static void put(const char *harness, const char *name, const void *data, size_t n)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", g_dir, harness);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }
    snprintf(path, sizeof path, "%s/%s/%s", g_dir, harness, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void put_tiny(const char *name, const tiny_spec *s)
{
    uint8_t *buf;
    size_t size;
    if (tiny_to_mem(s, &buf, &size) != 0) {
        fprintf(stderr, "make_corpus: tiny model %s failed\n", name);
        exit(1);
    }
    put("fuzz_gguf", name, buf, size);
    free(buf);
}

static void gguf_seeds(void)
{
    tiny_spec s;
    tiny_spec_default(&s);
    s.name = "tiny gpt2";
    put_tiny("gpt2-f32.gguf", &s);
    s.n_layer = 2;
    s.n_embd = 32;
    s.n_head = 4;
    s.n_ff = 64;
    s.n_ctx = 8;
    s.wtype = XF_TYPE_Q8_0;
    put_tiny("gpt2-q8_0.gguf", &s);
    s.wtype = XF_TYPE_F16;
    put_tiny("gpt2-f16.gguf", &s);
    tiny_spec_default(&s);
    s.qwen2 = true;
    s.n_head = 4;
    s.n_head_kv = 2;
    s.n_embd = 16;
    put_tiny("qwen2-gqa-f32.gguf", &s);
    s.n_head_kv = 1;
    s.wtype = XF_TYPE_Q8_0;
    s.n_embd = 32;
    s.n_ff = 32;
    put_tiny("qwen2-mqa-q8_0.gguf", &s);
    tiny_spec_default(&s);
    s.vocab_only = true;
    put_tiny("vocab-only.gguf", &s);
    /* a model without a vocabulary, and one with special tokens */
    tiny_spec_default(&s);
    s.no_vocab = true;
    put_tiny("gpt2-novocab.gguf", &s);
    static const char *const extra[] = {"<|im_start|>", "<|im_end|>", "\x1b[2J"};
    tiny_spec_default(&s);
    s.qwen2 = true;
    s.extra = extra;
    s.n_extra = 3;
    put_tiny("qwen2-chat.gguf", &s);
}

static void st_seeds(void)
{
    xf_err err = {{0}};
    uint8_t raw[256], bits[256];
    for (int i = 0; i < 256; i++) {
        raw[i] = (uint8_t)(i * 37 + 11);
        bits[i] = (uint8_t)(i % 3 == 0);
    }
    /* one dump of every dtype, with shapes of rank 0..3 and a zero-size dim */
    refdump_writer *w = refdump_writer_new();
    int64_t sh[3] = {2, 3, 4}, zero[2] = {0, 5}, one[1] = {4};
    for (int d = 0; d < REFDUMP_DTYPE_COUNT; d++) {
        char name[64];
        snprintf(name, sizeof name, "t.%s", refdump_dtype_name(d));
        int nd = d % 4;
        if (refdump_writer_add(w, name, d, nd,
                               nd == 3   ? sh
                               : nd == 2 ? sh + 1
                                         : one,
                               d == REFDUMP_BOOL ? bits : raw, &err) != 0) {
            fprintf(stderr, "make_corpus: %s\n", err.msg);
            exit(1);
        }
    }
    refdump_writer_add(w, "empty", REFDUMP_F32, 2, zero, NULL, &err);
    refdump_writer_meta(w, "producer", "xfdb", &err);
    refdump_writer_meta(w, "format", "pt", &err);
    uint8_t *buf;
    size_t size;
    if (refdump_writer_to_mem(w, &buf, &size, &err) != 0) {
        fprintf(stderr, "make_corpus: %s\n", err.msg);
        exit(1);
    }
    put("fuzz_safetensors", "all-dtypes.safetensors", buf, size);
    free(buf);
    refdump_writer_free(w);

    /* a dump as `dump` writes it: canonical F32 names and prompt.tokens */
    w = refdump_writer_new();
    float f[24];
    for (int i = 0; i < 24; i++)
        f[i] = (float)i * 0.25f - 3.0f;
    int32_t tok[3] = {464, 3290, 318};
    int64_t s2[2] = {3, 8}, s1[1] = {3};
    refdump_writer_add(w, "embd", REFDUMP_F32, 2, s2, f, &err);
    refdump_writer_add(w, "blk.0.attn_norm", REFDUMP_F32, 2, s2, f, &err);
    refdump_writer_add(w, "prompt.tokens", REFDUMP_I32, 1, s1, tok, &err);
    refdump_writer_meta(w, "producer", "xfdb", &err);
    refdump_writer_to_mem(w, &buf, &size, &err);
    put("fuzz_safetensors", "dump.safetensors", buf, size);
    free(buf);
    refdump_writer_free(w);
    static const char empty[] = "\x02\x00\x00\x00\x00\x00\x00\x00{}";
    put("fuzz_safetensors", "empty.safetensors", empty, sizeof empty - 1);
}

static void cmdline_seeds(void)
{
    /* slices: selector byte (even), rank, three dim bytes, text */
    static const char *const slices[] = {
        "[3, :8]", "[-1]", "[:, 2, 0:4]", "[::2]", "[::-1, 1:-1:3]", "[ 1 : 5 : 2 , -3 ]", "", "[0,0,0,0]"};
    for (size_t i = 0; i < sizeof slices / sizeof slices[0]; i++) {
        char b[64], name[32];
        b[0] = 0;
        b[1] = (char)(i % 4);
        b[2] = (char)0xa7;
        b[3] = (char)0x5c;
        b[4] = (char)0x39;
        size_t n = strlen(slices[i]);
        memcpy(b + 5, slices[i], n);
        snprintf(name, sizeof name, "slice-%zu", i);
        put("fuzz_cmdline", name, b, 5 + n);
    }
    /* command scripts: selector byte (odd), then lines */
    static const char *const scripts[] = {
        "\x01info\ntokenize \"hello \\e[2J the\"\ntokenize --ids the he",
        "\x01run --tokens 1,2,259\nstep 3\nwhere\nlist\nprint blk.0.attn_norm[0, :4] -n "
        "3\nnext\nfinish\ntopk 5",
        "\x01run \"the\\n<|endoftext|>\"\ncontinue\ngenerate 4\ngenerate 3 --temp 0.8 --top-k 5 --seed 7 "
        "--ids",
        "\x01break blk.0.* if absmax>1\nrun hello\ncontinue\ninfo breaks\ndelete 1\ncheck "
        "on\ncontinue\ncheck",
        ("\x01kernel\nkernel all ref\nrun --tokens 5\nprint token_embd.weight[258, :] --raw\nstats "
         "blk.0.ffn_up\n"
         "diff logits logits@cpu\ntoken\nprint logits[-1, ::-50]"),
        "\x01help\nhelp print\nprnt x\nprint nosuch\nrun\ntoken 99999999\nprint x[1,2,3,4,5]",
    };
    for (size_t i = 0; i < sizeof scripts / sizeof scripts[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "script-%zu", i);
        put("fuzz_cmdline", name, scripts[i], strlen(scripts[i]));
    }
}

static void session_seeds(void)
{
    static const char *const files[] = {
        ("# xfdb session 1\n"
         "# model: tiny.gguf sha256 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n"
         "# backend: cpu\n# kernels: embd=opt norm=ref\n# tolerance: rel 1e-05 abs 1e-07\n"
         "> run --tokens 1,2\n< pass 1: 2 tokens at position 0, 27 ops; stopped before embd\n"
         "# a comment\n> print embd -n 2\n< embd [2, 8] f32 cpu:opt\n~ min -0.5 max 0.49\n<   -0.1234 1e-05 "
         "nan -inf\n"
         "> tokenize x\n< error: \\x1b bad\n<\n# end: 3 commands\n"),
        ("# xfdb session 1\n# model: m.gguf sha256 "
         "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\r\n> step\r\n< ok\r\n"),
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "session-%zu.xfs", i);
        put("fuzz_session", name, files[i], strlen(files[i]));
    }
}

int main(int argc, char **argv)
{
    g_dir = argc > 1 ? argv[1] : "tests/fuzz/corpus";
    if (mkdir(g_dir, 0755) != 0 && errno != EEXIST) {
        perror(g_dir);
        return 1;
    }
    gguf_seeds();
    st_seeds();
    cmdline_seeds();
    session_seeds();
    return 0;
}
