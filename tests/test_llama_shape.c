/* test_llama_shape: SmolLM2-135M's shape with random weights (issue 17:
 * "the same model shape with random weights on CUDA, ref and opt"): 30
 * llama layers, D 576, 9 heads over 3 KV heads of 64, F 1536, vocab 49152,
 * tied, Q4_1 matrices and Q8_0 embeddings as the real file, written at test
 * time by bench_make_qwen2 (smollm2 q41; 98 MB, never committed). The cpu
 * ref kernels (f64 sums, themselves held to float64 HF references by
 * test_llama) give the expected tensors of a 7-token prompt and two greedy
 * decode passes; cpu opt (2 threads), cuda ref and cuda opt (where a GPU
 * answers) must match every canonical tensor of every pass within 1e-4 x
 * max|ref| and pick the same tokens. Norm weights are all 1 here (the
 * maker's): test_llama covers random gammas. */
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include "model_ref.h"

extern char **environ;

#define LS_N 7
#define LS_DECODE 2

typedef struct ls_pass {
    int n_ops;
    float **t; /* [n_ops] each op's output */
    int32_t next; /* the greedy token after this pass */
} ls_pass;

typedef struct ls_fix {
    char path[1024];
    xf_model *m;
    ls_pass want[1 + LS_DECODE];
} ls_fix;

static void ls_pass_free(ls_pass *p)
{
    for (int i = 0; i < p->n_ops; i++)
        free(p->t[i]);
    free(p->t);
}

/* every op's output of the pass just run, and its greedy token */
static void ls_take(xf_exec *ex, ls_pass *p)
{
    const xf_program *pr = exec_program(ex);
    p->n_ops = pr->n_ops;
    p->t = calloc((size_t)pr->n_ops, sizeof *p->t);
    assert_non_null(p->t);
    for (int i = 0; i < pr->n_ops; i++)
        p->t[i] = mr_op(ex, i);
    const xf_op *lg = &pr->ops[pr->n_ops - 1];
    int64_t V = lg->shape[1];
    p->next = mr_argmax(p->t[pr->n_ops - 1] + (lg->shape[0] - 1) * V, (int)V);
}

static void ls_tokens(int32_t *tok)
{
    for (int i = 0; i < LS_N; i++)
        tok[i] = (int32_t)(17 + 6007 * i) % 49152;
}

/* the prompt and the decode passes of variant on be, each pass taken */
static void ls_run(ls_fix *f, kern_backend be, const char *variant, int threads, ls_pass *out)
{
    int32_t tok[LS_N];
    ls_tokens(tok);
    xf_exec *ex = mr_prompt(f->m, be, variant, threads, tok, LS_N);
    ls_take(ex, &out[0]);
    for (int d = 0; d < LS_DECODE; d++) {
        mr_decode(ex, out[d].next, LS_N + d);
        ls_take(ex, &out[d + 1]);
    }
    exec_free(ex);
}

static int ls_setup(void **state)
{
    ls_fix *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    const char *bd = getenv("XF_BUILD_DIR");
    char maker[1024], vocab[1024];
    snprintf(maker, sizeof maker, "%s/bench_make_qwen2", bd ? bd : ".");
    tu_src_path(vocab, sizeof vocab, "tests/fixtures/vocab/ggml-vocab-smollm.gguf");
    tu_tmp_path(f->path, sizeof f->path, "-smollm2-shape.gguf");
    char *argv[] = {maker, f->path, "smollm2", "q41", vocab, NULL};
    pid_t pid;
    int st = 0;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawn(&pid, maker, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "cannot make the model with %s (exit %d)\n", maker, rc ? -1 : WEXITSTATUS(st));
        free(f);
        return -1;
    }
    xf_err err = {0};
    f->m = model_load(f->path, &err);
    if (!f->m) {
        fprintf(stderr, "%s: %s\n", f->path, err.msg);
        unlink(f->path);
        free(f);
        return -1;
    }
    ls_run(f, KERN_BACKEND_CPU, "ref", 1, f->want);
    *state = f;
    return 0;
}

static int ls_teardown(void **state)
{
    ls_fix *f = *state;
    for (int p = 0; p <= LS_DECODE; p++)
        ls_pass_free(&f->want[p]);
    model_free(f->m);
    unlink(f->path);
    free(f);
    return 0;
}

static void ls_check(ls_fix *f, kern_backend be, const char *variant, int threads)
{
    ls_pass got[1 + LS_DECODE];
    ls_run(f, be, variant, threads, got);
    double worst = 0;
    const char *worst_name = "";
    for (int p = 0; p <= LS_DECODE; p++) {
        assert_int_equal(got[p].n_ops, f->want[p].n_ops);
        /* the program of the pass, for names and sizes: the same on every backend */
        xf_err err = {0};
        xf_program pr;
        assert_int_equal(program_build(f->m, p == 0 ? LS_N : 1, p == 0 ? 0 : LS_N + p - 1, &pr, &err), 0);
        for (int i = 0; i < pr.n_ops; i++) {
            size_t n = (size_t)pr.ops[i].numel;
            double e = tu_rel_max_err(got[p].t[i], f->want[p].t[i], n);
            if (!(e <= MR_TOL))
                fail_msg("%s %s: pass %d, %s: %.3g x max|ref| > %g", kern_backend_name(be), variant, p,
                         pr.ops[i].name, e, MR_TOL);
            if (e > worst) {
                worst = e;
                worst_name = pr.ops[i].short_name;
            }
        }
        program_free(&pr);
        if (got[p].next != f->want[p].next)
            fail_msg("%s %s: greedy token after pass %d is %d, ref's %d", kern_backend_name(be), variant, p,
                     got[p].next, f->want[p].next);
        ls_pass_free(&got[p]);
    }
    printf("# smollm2 shape [%s %s, %d threads]: 3 passes, worst %s %.3g x max|ref|, tokens %d %d\n",
           kern_backend_name(be), variant, threads, worst_name, worst, f->want[0].next, f->want[1].next);
}

static void test_cpu_opt(void **state) { ls_check(*state, KERN_BACKEND_CPU, "opt", 2); }

static void test_cuda(void **state)
{
    if (!mr_have_cuda()) {
        printf("# no CUDA device: skipped\n");
        skip();
    }
    ls_check(*state, KERN_BACKEND_CUDA, "ref", 1);
    ls_check(*state, KERN_BACKEND_CUDA, "opt", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_opt),
        cmocka_unit_test(test_cuda),
    };
    return cmocka_run_group_tests(tests, ls_setup, ls_teardown);
}
