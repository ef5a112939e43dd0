/* Issues 13 and 16: bench's memory floor. The weight bytes a pass reads
 * (model_pass_weight_bytes) against a sum made here from the GGUF's own
 * tensor table, for the default model (GPT-2, head tied to the embedding,
 * biases, a position table) and fixtures: qwen2 (q/k/v biases), qwen3 (head
 * norms), llama tied and untied; the bandwidth measures (positive, finite, cached per
 * process); the floor cells; and the bench table's columns. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec.h"
#include "gguf.h"
#include "model.h"
#include "repl.h"
#include "testutil.h"

/* What a pass of n tokens reads, from the tensor table alone: a vector
 * (norm, bias) as the f32 copy the kernels read; the token embedding n rows
 * (all of it when there is no output.weight: the head reads it whole);
 * the position embedding n rows; every other tensor whole. */
static uint64_t expected_bytes(const char *path, int n)
{
    xf_err err = {0};
    gguf_file *f = gguf_open(path, &err);
    assert_non_null(f);
    bool tied = gguf_find_tensor(f, "output.weight") == NULL;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        int64_t rows = 1;
        for (int d = 1; d < t->n_dims; d++)
            rows *= t->ne[d];
        uint64_t row = t->size / (uint64_t)rows, take = (uint64_t)(n < rows ? n : rows);
        if (rows == 1) /* the model keeps [k] and [1, k] alike as f32 vectors */
            sum += (uint64_t)t->ne[0] * 4;
        else if (gguf_str_eq(t->name, "token_embd.weight"))
            sum += tied ? t->size : row * take;
        else if (gguf_str_eq(t->name, "position_embd.weight"))
            sum += row * take;
        else
            sum += t->size;
    }
    gguf_close(f);
    return sum;
}

static void check_model(const char *rel, bool want_tied)
{
    char path[1024];
    tu_src_path(path, sizeof path, rel);
    xf_err err = {0};
    xf_model *m = model_load(path, &err);
    if (!m)
        fail_msg("%s", err.msg);
    assert_int_equal(m->tied_output, want_tied);
    for (int n = 1; n <= 9; n += 4) {
        uint64_t want = expected_bytes(path, n), got = model_pass_weight_bytes(m, n);
        if (got != want)
            fail_msg("%s, %d tokens: %llu bytes, expected %llu", rel, n, (unsigned long long)got,
                     (unsigned long long)want);
    }
    /* never more than the file's weights plus the f32 copies of vectors */
    assert_true(model_pass_weight_bytes(m, 1) <= m->weight_bytes * 2);
    model_free(m);
}

static void test_default_model_bytes(void **state)
{
    (void)state;
    check_model(TU_MODEL, true);
    /* the default model: GPT-2, f16 matrices, the head tied to wte */
    char path[1024];
    xf_err err = {0};
    xf_model *m = model_load(tu_src_path(path, sizeof path, TU_MODEL), &err);
    assert_non_null(m);
    /* a decode token reads the whole of wte (the head) and one row of wpe */
    uint64_t one = model_pass_weight_bytes(m, 1), two = model_pass_weight_bytes(m, 2);
    assert_int_equal(two - one, m->pos_embd->bytes / (uint64_t)m->pos_embd->rows);
    assert_true(one > m->tok_embd->bytes);
    model_free(m);
}

static void test_fixture_bytes(void **state)
{
    (void)state;
    check_model("tests/fixtures/qwen2/qwen2-gqa-q8_0.gguf", true);
    check_model("tests/fixtures/qwen3/qwen3-gqa-q8_0.gguf", true);
    check_model("tests/fixtures/llama/llama-tied-q8_0.gguf", true);
    check_model("tests/fixtures/llama/llama-gqa-f32.gguf", false);
}

static void check_bw(const kern_membw *bw)
{
    assert_true(isfinite(bw->bytes_per_s));
    assert_true(bw->bytes_per_s > 1e6); /* any machine reads more than 1 MB/s */
    assert_true(strlen(bw->how) > 10);
}

static void test_bandwidth(void **state)
{
    (void)state;
    kern_membw bw;
    assert_int_equal(kern_cpu_membw(1, &bw), 0);
    check_bw(&bw);
    assert_non_null(strstr(bw.how, "1 thread reading"));
    /* through the engine: measured once, the same figure after */
    char path[1024];
    xf_err err = {0};
    xf_model *m = model_load(tu_src_path(path, sizeof path, TU_MODEL), &err);
    assert_non_null(m);
    xf_exec *ex = exec_new(m, KERN_BACKEND_CPU, 2, &err);
    assert_non_null(ex);
    kern_membw a, b;
    assert_int_equal(exec_mem_bandwidth(ex, &a, &err), 0);
    check_bw(&a);
    assert_non_null(strstr(a.how, "2 threads reading"));
    assert_int_equal(exec_mem_bandwidth(ex, &b, &err), 0);
    assert_true(a.bytes_per_s == b.bytes_per_s);
    exec_free(ex);
    char why[256];
    if (kern_backend_available(KERN_BACKEND_CUDA, why, sizeof why)) {
        ex = exec_new(m, KERN_BACKEND_CUDA, 1, &err);
        assert_non_null(ex);
        assert_int_equal(exec_mem_bandwidth(ex, &a, &err), 0);
        check_bw(&a);
        assert_non_null(strstr(a.how, "cudaMemcpy"));
        exec_free(ex);
    } else
        printf("test_bandwidth: no cuda measure: %s\n", why);
    model_free(m);
}

/* Less address space than the buffer wants: a smaller buffer, and the
 * measure says so (a child process under RLIMIT_AS). */
#if defined(__SANITIZE_ADDRESS__)
#define TF_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TF_ASAN 1
#endif
#endif

static void test_bandwidth_small(void **state)
{
    (void)state;
#ifdef TF_ASAN
    skip(); /* ASan's allocator aborts where malloc would return NULL */
#endif
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* what is mapped now (a sanitizer's shadow too) plus 768 MB */
        unsigned long long vm_kb = 0;
        char line[128];
        FILE *f = fopen("/proc/self/status", "r");
        while (f && fgets(line, sizeof line, f) && sscanf(line, "VmSize: %llu kB", &vm_kb) != 1)
            ;
        if (f)
            fclose(f);
        rlim_t lim = ((rlim_t)vm_kb << 10) + ((rlim_t)768 << 20);
        struct rlimit rl = {lim, lim};
        kern_membw bw;
        if (setrlimit(RLIMIT_AS, &rl) != 0 || kern_cpu_membw(1, &bw) != 0)
            _exit(2);
        bool said = strstr(bw.how, "could not be allocated") != NULL;
        _exit(said && bw.bytes_per_s > 0 && isfinite(bw.bytes_per_s) ? 0 : 1);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_floor_cells(void **state)
{
    (void)state;
    char f[32], x[32];
    pr_floor(f, x, sizeof f, 33.3, 15.9);
    assert_string_equal(f, "15.9 ms");
    assert_string_equal(x, "2.09x");
    pr_floor(f, x, sizeof f, 380, 1.41);
    assert_string_equal(x, "270x");
    pr_floor(f, x, sizeof f, 57.3, 15);
    assert_string_equal(f, "15.0 ms");
    assert_string_equal(x, "3.82x");
    pr_floor(f, x, sizeof f, 1.3, 0.78);
    assert_string_equal(f, "0.780 ms");
    assert_string_equal(x, "1.67x");
    pr_floor(f, x, sizeof f, 500, 250);
    assert_string_equal(f, "250 ms");
    pr_floor(f, x, sizeof f, 5.0, 0);
    assert_string_equal(f, "-");
    assert_string_equal(x, "-");
    pr_rate(f, sizeof f, 45.2e9);
    assert_string_equal(f, "45.2 GB/s");
}

/* the table: a heading with floor and x floor, a floor and a ratio on every row */
static void test_bench_table(void **state)
{
    (void)state;
    xf_repl *r = tu_repl_new();
    assert_non_null(r);
    char path[1024];
    tu_repl_load(r, tu_src_path(path, sizeof path, TU_MODEL));
    const char *o = tu_cmd(r, "bench --prefill 4 --decode 3 --reps 1 --variants opt", 0);
    assert_non_null(strstr(o, "memory bandwidth "));
    assert_non_null(strstr(o, "GB/s: 1 thread reading"));
    assert_non_null(strstr(o, "floor: weight bytes a pass reads"));
    /* the prose above the table fits an 80-column terminal (captured output wraps at 80) */
    for (const char *l = o; *l;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) : strlen(l);
        if (len > 80 && strncmp(l, "variant", 7) != 0 && strncmp(l, "opt ", 4) != 0)
            fail_msg("a bench line of %zu columns: %.*s", len, (int)len, l);
        l += len + (e ? 1 : 0);
    }
    const char *h = strstr(o, "variant  run");
    assert_non_null(h);
    assert_non_null(strstr(h, "floor      x floor\n"));
    const char *rows[] = {"opt      prefill 4", "opt      decode 3"};
    for (int i = 0; i < 2; i++) {
        const char *row = strstr(o, rows[i]);
        assert_non_null(row);
        const char *end = strchr(row, '\n');
        const char *ms = strstr(row, " ms ");
        assert_true(ms && ms < end);
        const char *x = strchr(ms + 4, 'x');
        assert_true(x && x < end);
    }
    o = tu_cmd(r, "bench --overhead --decode 2", 0);
    assert_non_null(strstr(o, "ms/token  floor "));
    o = tu_cmd(r, "bench step", 0);
    assert_null(strstr(o, "memory bandwidth"));
    repl_free(r);
    tu_cmd_free();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_model_bytes), cmocka_unit_test(test_fixture_bytes),
        cmocka_unit_test(test_bandwidth),           cmocka_unit_test(test_bandwidth_small),
        cmocka_unit_test(test_floor_cells),
        cmocka_unit_test(test_bench_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
