/* fuzz_gguf: libFuzzer harness for everything a GGUF file reaches.
 * 1. gguf_open_mem over the input; on success every kv through every typed
 *    getter, every tensor found by name and its bytes touched (dequantized
 *    when small), and the tokenizer built and used when the file has one.
 * 2. model_load of the same bytes through a memfd (model_load takes a path);
 *    on success every weight row read, and when the model is small, one
 *    forward pass of two tokens and their logits.
 * Invariants beyond "no crash, no sanitizer report": an error is one
 * non-empty line that names the file; lookups find what the table holds;
 * tensor data lies inside the input. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "exec.h"
#include "gguf.h"
#include "model.h"
#include "quant.h"
#include "tokenizer.h"

#define NAME "fuzz.gguf"

static int g_fd = -1;
static char g_path[64];
static volatile unsigned g_sink; /* keeps touched bytes from being optimized away */

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "fuzz_gguf: invariant broken: %s: \"%s\"\n", what, msg ? msg : "(null)");
    abort();
}

/* one line, non-empty, naming the file */
static void check_err(const xf_err *err, const char *file)
{
    if (!err->msg[0])
        die("empty error message", err->msg);
    if (strchr(err->msg, '\n'))
        die("error message of several lines", err->msg);
    if (file && strncmp(err->msg, file, strlen(file)) != 0)
        die("error message does not name the file", err->msg);
}

static void touch(const void *p, size_t n)
{
    const volatile unsigned char *b = p;
    unsigned s = 0;
    if (n) {
        s += b[0];
        s += b[n - 1];
    }
    g_sink += s;
}

static void walk_kvs(const gguf_file *g)
{
    char key[4096];
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const gguf_kv *kv = &g->kv[i];
        if (kv->key.len >= sizeof key)
            continue;
        memcpy(key, kv->key.ptr, kv->key.len);
        key[kv->key.len] = '\0';
        if (gguf_find_kv(g, key) != kv)
            die("gguf_find_kv does not find its own key", key);
        xf_err err = {{0}};
        uint32_t u32;
        uint64_t u64;
        int32_t i32;
        float f;
        bool b;
        gguf_str s;
        if (gguf_get_u32(g, key, &u32, &err) != 0)
            check_err(&err, NAME);
        if (gguf_get_u64(g, key, &u64, &err) != 0)
            check_err(&err, NAME);
        if (gguf_get_i32(g, key, &i32, &err) != 0)
            check_err(&err, NAME);
        if (gguf_get_f32(g, key, &f, &err) != 0)
            check_err(&err, NAME);
        if (gguf_get_bool(g, key, &b, &err) != 0)
            check_err(&err, NAME);
        if (gguf_get_str(g, key, &s, &err) == 0)
            touch(s.ptr, s.len);
        else
            check_err(&err, NAME);
        gguf_str *as = NULL;
        int32_t *ai = NULL;
        float *af = NULL;
        uint64_t n = 0;
        if (gguf_get_arr_str(g, key, &as, &n, &err) == 0) {
            for (uint64_t k = 0; k < n; k++)
                touch(as[k].ptr, as[k].len);
            free(as);
        } else
            check_err(&err, NAME);
        if (gguf_get_arr_i32(g, key, &ai, &n, &err) == 0) {
            if (n)
                g_sink += (unsigned)ai[0] + (unsigned)ai[n - 1];
            free(ai);
        } else
            check_err(&err, NAME);
        if (gguf_get_arr_f32(g, key, &af, &n, &err) == 0) {
            if (n)
                touch(&af[n - 1], sizeof *af);
            free(af);
        } else
            check_err(&err, NAME);
    }
}

static void walk_tensors(const gguf_file *g, const uint8_t *data, size_t size)
{
    char name[512];
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *t = &g->tensors[i];
        if (t->name.len >= sizeof name)
            die("tensor name longer than the reader's limit", "");
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = '\0';
        if (gguf_find_tensor(g, name) != t)
            die("gguf_find_tensor does not find its own tensor", name);
        const uint8_t *p = t->data;
        if (t->size && (p < data || p > data + size || t->size > (uint64_t)(data + size - p)))
            die("tensor data outside the file", name);
        touch(p, (size_t)t->size);
        const quant_type_info *qi = quant_type_get(t->type);
        uint64_t rb;
        if (!qi || !qi->supported || t->size > (1u << 20) || !quant_row_bytes(t->type, t->ne[0], &rb) || !rb)
            continue;
        float *row = malloc((size_t)t->ne[0] * sizeof *row);
        if (!row)
            continue;
        for (uint64_t off = 0; off + rb <= t->size; off += rb)
            quant_dequant_row(t->type, p + off, row, t->ne[0]);
        free(row);
    }
}

static void use_tokenizer(const xf_tokenizer *t, const uint8_t *data, size_t size)
{
    static const char *const texts[] = {"Hello world", " the  he\n\n", "<|endoftext|>x",
                                        "caf\xc3\xa9 123 'll", "<|im_start|>user\nhi<|im_end|>"};
    size_t nt = sizeof texts / sizeof texts[0];
    xf_err err = {{0}};
    int32_t V = tok_vocab_size(t);
    for (size_t k = 0; k <= nt; k++) {
        const char *s = k < nt ? texts[k] : (const char *)data + (size > 48 ? size - 48 : 0);
        size_t len = k < nt ? strlen(s) : (size > 48 ? 48 : size);
        int32_t *ids = NULL;
        size_t n = 0;
        if (tok_encode(t, s, len, k & 1, &ids, &n, &err) != 0) {
            check_err(&err, NULL);
            continue;
        }
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= V)
                die("tok_encode returned an id outside the vocabulary", s);
        char *out = NULL;
        size_t out_len = 0;
        if (tok_decode(t, ids, n, &out, &out_len, &err) == 0)
            free(out);
        else
            die("tok_decode of tok_encode's ids failed", err.msg);
        free(ids);
    }
    /* every piece escaped, and streamed */
    tok_stream *st = tok_stream_new(t, &err);
    char buf[64];
    for (int32_t id = 0; id < V && id < 4096; id++) {
        size_t len;
        const char *p = tok_piece(t, id, &len);
        if (!p)
            die("tok_piece of an id in range is NULL", "");
        tok_escape(p, len, buf, sizeof buf);
        for (const char *c = buf; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                die("tok_escape left a control byte", buf);
        if (st) {
            const char *o;
            size_t ol;
            if (tok_stream_push(st, id, &o, &ol, NULL, &err) != 0)
                die("tok_stream_push of an id in range failed", err.msg);
        }
    }
    if (st) {
        const char *o;
        size_t ol;
        tok_stream_flush(st, &o, &ol, NULL, &err);
        tok_stream_free(st);
    }
}

static void run_model(xf_model *m)
{
    xf_err err = {{0}};
    for (int i = 0; i < m->n_weights; i++) {
        const xf_weight *w = &m->weights[i];
        if (w->cols > (1 << 20))
            continue;
        float *row = malloc((size_t)w->cols * sizeof *row);
        if (!row)
            continue;
        if (model_weight_row(w, 0, row, &err) != 0 || model_weight_row(w, w->rows - 1, row, &err) != 0)
            die("model_weight_row of an existing row failed", err.msg);
        if (model_weight_row(w, w->rows, row, &err) == 0)
            die("model_weight_row past the last row succeeded", w->name);
        free(row);
    }
    if (m->vocab_only)
        return;
    /* a pass costs about weights + KV cache: keep to small models */
    double kv = 2.0 * m->n_layer * (double)m->n_ctx * m->n_head_kv * m->head_dim * 4;
    if (m->weight_bytes > (4u << 20) || kv > (16u << 20) || (double)m->n_ff * m->n_layer > 1e6)
        return;
    xf_exec *ex = exec_new(m, KERN_BACKEND_CPU, 1, &err);
    if (!ex) {
        check_err(&err, NULL);
        return;
    }
    int32_t toks[2] = {0, m->n_vocab > 1 ? 1 : 0};
    int n = m->n_ctx >= 2 ? 2 : 1;
    xf_stop why;
    if (exec_begin(ex, toks, n, false, &err) != 0 || exec_run(ex, XF_RUN_FINISH, 0, &why, &err) != 0)
        check_err(&err, NULL);
    else {
        float *lg = malloc((size_t)m->n_vocab * sizeof *lg);
        if (lg && exec_last_logits(ex, lg, &err) != 0)
            die("no logits after a finished pass", err.msg);
        free(lg);
    }
    exec_free(ex);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    g_fd = memfd_create("fuzz_gguf", MFD_CLOEXEC);
    if (g_fd < 0) {
        perror("memfd_create");
        abort();
    }
    snprintf(g_path, sizeof g_path, "/proc/self/fd/%d", g_fd);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    xf_err err = {{0}};
    gguf_file *g = gguf_open_mem(data, size, NAME, &err);
    if (!g) {
        check_err(&err, NAME);
        if (!strstr(err.msg, " at byte ") && !strstr(err.msg, "out of memory"))
            die("gguf error without a byte offset", err.msg);
        return 0;
    }
    walk_kvs(g);
    walk_tensors(g, data, size);
    if (gguf_find_kv(g, "tokenizer.ggml.tokens")) {
        xf_tokenizer *t = tok_new_from_gguf(g, &err);
        if (t) {
            use_tokenizer(t, data, size);
            tok_free(t);
        } else
            check_err(&err, NAME);
    }
    bool model_like = gguf_find_kv(g, "general.architecture") || gguf_find_kv(g, "tokenizer.ggml.tokens");
    gguf_close(g);
    if (!model_like || size > (4u << 20))
        return 0;

    if (ftruncate(g_fd, 0) != 0 || pwrite(g_fd, data, size, 0) != (ssize_t)size)
        abort();
    xf_model *m = model_load(g_path, &err);
    if (!m) {
        check_err(&err, g_path);
        return 0;
    }
    run_model(m);
    model_free(m);
    return 0;
}
