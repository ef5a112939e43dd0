/* What a comparison with a tensor from elsewhere must not hide (attack 26):
 * a reference of another shape with as many elements (a transposed dump) is
 * refused by compare, diff, xf.diff and nmse(ref), while an HF dump's extra
 * size-1 dimensions are not; NaN in a reference gives NaN figures, never the
 * 0 / 0 / cosine 1 of a match; a reference's prompt.tokens are read as integers
 * (checked to fit int32) and a difference is shown where it is; dump and keep
 * refuse a NAME that matches nothing; xf.ablate says the head it was given;
 * "did you mean X?" never answers the X typed; compare says when every shape
 * differs; patch refuses an F64 value past float32's range. */
#include <unistd.h>

#include "exec.h"
#include "refdump.h"
#include "tensor.h"

#include "malformed.h"

#define cmd tu_cmd

/* the end of each test: the REPL and its model file gone */
static void done(xf_repl *r, const char *mp)
{
    repl_free(r);
    unlink(mp);
    tu_cmd_free();
}

/* the values of op NAME of the pass (n floats) */
static void pass_values(xf_repl *r, const char *name, float *v, int64_t n)
{
    const xf_program *p = exec_program(r->ex);
    xf_err err = {{0}};
    for (int i = 0; i < p->n_ops; i++)
        if (strcmp(p->ops[i].name, name) == 0) {
            assert_int_equal(p->ops[i].numel, n);
            if (exec_tensor_read(r->ex, i, v, &err) != 0)
                fail_msg("%s", err.msg);
            return;
        }
    fail_msg("no op %s", name);
}

static void ref_load(xf_repl *r, const char *path)
{
    char line[1200];
    snprintf(line, sizeof line, "ref load %s", path);
    cmd(r, line, 0);
}

/* the line of out that starts with prefix (fails when none), into buf */
static const char *line_of(const char *out, const char *prefix, char *buf, size_t size)
{
    for (const char *s = out; *s;) {
        const char *e = strchr(s, '\n');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (strncmp(s, prefix, strlen(prefix)) == 0) {
            snprintf(buf, size, "%.*s", (int)len, s);
            return buf;
        }
        s += len + (e != NULL);
    }
    fail_msg("no line '%s' in:\n%s", prefix, out);
    return NULL;
}

static void expect_in(const char *out, const char *want)
{
    if (!strstr(out, want))
        fail_msg("wanted '%s' in:\n%s", want, out);
}

static void test_shape_must_agree(void **state)
{
    (void)state;
    char mp[1024], sp[1024], line[1200], ln[256];
    xf_repl *r = tiny_repl(mp, sizeof mp);
    cmd(r, "run --tokens 1,2", 0);
    cmd(r, "continue", 0);
    float embd[16], norm[16];
    pass_values(r, "embd", embd, 16);
    pass_values(r, "blk.0.attn_norm", norm, 16);
    /* embd transposed ([8, 2]: as many elements, another layout); the norm as
     * an HF dump writes it, with the batch dimension ([1, 2, 8]) */
    xf_err err = {{0}};
    refdump_writer *w = refdump_writer_new();
    int64_t st[2] = {8, 2}, sb[3] = {1, 2, 8}, sp1[1] = {2};
    int32_t tok[2] = {1, 2};
    assert_int_equal(refdump_writer_add(w, "embd", REFDUMP_F32, 2, st, embd, &err), 0);
    assert_int_equal(refdump_writer_add(w, "blk.0.attn_norm", REFDUMP_F32, 3, sb, norm, &err), 0);
    assert_int_equal(refdump_writer_add(w, "prompt.tokens", REFDUMP_I32, 1, sp1, tok, &err), 0);
    st_save(w, sp, sizeof sp);
    ref_load(r, sp);

    const char *o = cmd(r, "compare", 0);
    expect_in(o, "\nembd             shape [2, 8] differs from the reference's [8, 2]\n");
    if (!strstr(line_of(o, "blk.0.attn_norm ", ln, sizeof ln), " ok"))
        fail_msg("[1, 2, 8] against [2, 8] must compare: %s", ln);
    expect_in(o, "first tensor over tolerance: embd\n");
    assert_string_equal(cmd(r, "diff embd embd@ref", 1),
                        "error: diff: embd [2, 8] and embd@ref [8, 2] differ in shape\n");
    expect_in(cmd(r, "diff blk.0.attn_norm @ref", 0), "  max_abs 0  max_rel 0  nmse 0  cosine 1\n");
    expect_in(cmd(r, "lua xf.diff('embd', 'embd@ref')", 1),
              "xf.diff: embd [2, 8] and embd@ref [8, 2] differ in shape");

    /* nmse(ref) on embd: an error naming both shapes, not a figure */
    cmd(r, "break embd if nmse(ref)>1", 0);
    cmd(r, "run --tokens 1,2", 0);
    expect_in(cmd(r, "continue", 1), "embd: nmse(ref): the reference is [8, 2], the tensor [2, 8]");
    cmd(r, "delete", 0);

    /* patch takes the [1, 2, 8] file as [2, 8] (the same rule), and still refuses [8, 2] */
    cmd(r, "break blk.0.attn_norm", 0);
    cmd(r, "run --tokens 1,2", 0);
    cmd(r, "continue", 0);
    snprintf(line, sizeof line, "patch blk.0.attn_norm from %s", sp);
    cmd(r, line, 0);
    cmd(r, "delete", 0);
    cmd(r, "run --tokens 1,2", 0);
    cmd(r, "step", 0);
    snprintf(line, sizeof line, "patch embd from %s", sp);
    expect_in(cmd(r, line, 1), "embd is [8, 2] there and [2, 8] in this pass");
    unlink(sp);

    /* the rule itself */
    int64_t a[3] = {1, 7, 96}, b[2] = {7, 96}, c[2] = {96, 7}, d[4] = {7, 1, 96, 1}, e[1] = {672};
    assert_true(tensor_shape_same(3, a, 2, b));
    assert_true(tensor_shape_same(4, d, 2, b));
    assert_true(tensor_shape_same(2, b, 2, b));
    assert_false(tensor_shape_same(2, c, 2, b));
    assert_false(tensor_shape_same(1, e, 2, b));
    assert_false(tensor_shape_same(2, b, 1, b));
    int64_t one[2] = {1, 1};
    assert_true(tensor_shape_same(2, one, 0, one));
    done(r, mp);
}

static void test_nan_reference_is_no_match(void **state)
{
    (void)state;
    /* the figures: NaN when a pair is not both finite, whatever the rest */
    float a[3] = {1, 2, 3}, nan3[3] = {NAN, NAN, NAN}, part[3] = {1, NAN, 3};
    xf_diff d;
    tensor_diff_rel(a, nan3, 3, 1e-4, &d);
    assert_true(isnan(d.max_abs) && isnan(d.max_rel) && isnan(d.nmse) && isnan(d.cosine));
    assert_true(isnan(d.tol)); /* relative to no finite value */
    assert_int_equal(d.n_over, 3);
    assert_int_equal(d.nan_b, 3);
    tensor_diff_rel(a, part, 3, 1e-4, &d);
    assert_true(isnan(d.max_abs) && isnan(d.nmse) && isnan(d.cosine));
    assert_true(fabs(d.tol - 3e-4) < 1e-12);
    assert_int_equal(d.n_over, 1);
    assert_int_equal(d.first_over, 1);
    /* a match still reads as one; equal infinities are equal */
    float inf[3] = {1, INFINITY, 3};
    tensor_diff_rel(inf, inf, 3, 1e-4, &d);
    assert_true(d.max_abs == 0 && d.nmse == 0 && d.cosine == 1 && d.n_over == 0);
    tensor_diff_rel(a, a, 3, 1e-4, &d);
    assert_true(d.max_abs == 0 && d.nmse == 0 && d.cosine == 1 && d.n_over == 0);

    char mp[1024], sp[1024], ln[256];
    xf_repl *r = tiny_repl(mp, sizeof mp);
    xf_err err = {{0}};
    refdump_writer *w = refdump_writer_new();
    float nans[16];
    for (int i = 0; i < 16; i++)
        nans[i] = NAN;
    int64_t s2[2] = {2, 8};
    assert_int_equal(refdump_writer_add(w, "embd", REFDUMP_F32, 2, s2, nans, &err), 0);
    st_save(w, sp, sizeof sp);
    ref_load(r, sp);
    cmd(r, "run --tokens 1,2", 0);
    cmd(r, "continue", 0);
    const char *o = cmd(r, "compare", 0);
    line_of(o, "embd ", ln, sizeof ln);
    if (strncmp(ln, "embd             nan       nan       nan       nan ", 50) != 0 ||
        !strstr(ln, "OVER first"))
        fail_msg("an all-NaN reference: %s", ln);
    o = cmd(r, "diff embd @ref", 0);
    expect_in(o, "  max_abs nan  max_rel nan  nmse nan  cosine nan\n");
    expect_in(o, "  nan 0/16  inf 0/0  over tol (nan): 16, first at [0, 0]\n");
    /* nmse(ref) is NaN: over any X, the breakpoint stops */
    cmd(r, "break embd if nmse(ref)>1", 0);
    cmd(r, "run --tokens 1,2", 0);
    expect_in(cmd(r, "continue", 0), "hit after embd\n");
    unlink(sp);
    done(r, mp);
}

/* a reference whose embd is this pass's and whose prompt.tokens are ids[n] of dtype dt */
static void ref_with_tokens(xf_repl *r, char *sp, size_t size, int dt, const void *ids, int64_t n)
{
    float embd[16];
    pass_values(r, "embd", embd, 16);
    xf_err err = {{0}};
    refdump_writer *w = refdump_writer_new();
    int64_t s2[2] = {2, 8};
    assert_int_equal(refdump_writer_add(w, "embd", REFDUMP_F32, 2, s2, embd, &err), 0);
    assert_int_equal(refdump_writer_add(w, "prompt.tokens", dt, 1, &n, ids, &err), 0);
    st_save(w, sp, size);
    ref_load(r, sp);
}

static void test_ref_prompt_tokens(void **state)
{
    (void)state;
    char mp[1024], sp[1024];
    xf_repl *r = tiny_repl(mp, sizeof mp);
    cmd(r, "run --tokens 1,2", 0);
    cmd(r, "continue", 0);
    /* an id past int32 (through float it was UB, and read as -2147483648) */
    int64_t big[2] = {1, (int64_t)1 << 40};
    ref_with_tokens(r, sp, sizeof sp, REFDUMP_I64, big, 2);
    const char *o = cmd(r, "compare", 0);
    expect_in(o, "warning: the reference's prompt.tokens cannot be checked against this pass: ");
    expect_in(o, ": element 1 is 1099511627776, outside int32\n");
    assert_null(strstr(o, "-2147483648"));
    unlink(sp);
    /* floats are not ids */
    float f[2] = {1, 2};
    ref_with_tokens(r, sp, sizeof sp, REFDUMP_F32, f, 2);
    expect_in(cmd(r, "diff embd @ref", 0), ": F32 is not an integer type\n");
    unlink(sp);
    /* the same two tokens: no warning */
    int32_t same[2] = {1, 2};
    ref_with_tokens(r, sp, sizeof sp, REFDUMP_I32, same, 2);
    assert_null(strstr(cmd(r, "compare", 0), "warning"));
    unlink(sp);

    /* prompts that differ past the sixth token: the lists show where */
    cmd(r, "run --tokens 1,2,3,4,5,6,7,8,9", 0);
    cmd(r, "step", 0);
    int32_t other[9] = {1, 2, 3, 4, 5, 6, 7, 10, 9};
    float embd[72];
    pass_values(r, "embd", embd, 72);
    xf_err err = {{0}};
    refdump_writer *w = refdump_writer_new();
    int64_t s2[2] = {9, 8}, s1[1] = {9};
    assert_int_equal(refdump_writer_add(w, "embd", REFDUMP_F32, 2, s2, embd, &err), 0);
    assert_int_equal(refdump_writer_add(w, "prompt.tokens", REFDUMP_I32, 1, s1, other, &err), 0);
    st_save(w, sp, sizeof sp);
    ref_load(r, sp);
    o = cmd(r, "compare", 0);
    expect_in(o, "warning: the reference was made from other tokens: every tensor will differ\n"
                 "  reference prompt.tokens 9 tokens: ... 6 7 10 9\n"
                 "  this pass                9 tokens: ... 6 7 8 9\n"
                 "  first difference at token 7\n");
    unlink(sp);
    done(r, mp);
}

static void test_dump_keep_names(void **state)
{
    (void)state;
    char mp[1024], fp[1024], line[1200];
    xf_repl *r = tiny_repl(mp, sizeof mp);
    /* keep, before any pass (then nothing was checked) and in one */
    assert_string_equal(cmd(r, "keep all", 1),
                        "error: keep: 'all' matches no tensor of this model (every tensor: keep *)\n");
    assert_string_equal(cmd(r, "keep blk.0.out typo", 1),
                        "error: keep: 'typo' matches no tensor of this model\n");
    cmd(r, "keep off off", 1);
    expect_in(cmd(r, "keep", 0), "tensors: none");
    expect_in(cmd(r, "keep blk.*.out", 0), "tensors: blk.*.out");
    cmd(r, "run --tokens 1,2", 0);
    cmd(r, "continue", 0);
    assert_string_equal(cmd(r, "keep blk.0.out typo", 1),
                        "error: keep: 'typo' matches no tensor of this model\n");
    tu_tmp_path(fp, sizeof fp, ".safetensors");
    struct {
        const char *names, *want;
    } bad[] = {
        {"embd blk.0.outt",
         "error: dump: 'blk.0.outt' matches no tensor of this pass (`list all` names them)\n"},
        {"all embd", "error: dump: 'all' is every tensor and stands alone: dump all FILE\n"},
        {"embd blk.0.out[0]",
         "error: dump: blk.0.out[0]: dump writes whole tensors, not slices (dump blk.0.out FILE)\n"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        snprintf(line, sizeof line, "dump %s %s", bad[k].names, fp);
        assert_string_equal(cmd(r, line, 1), bad[k].want);
        assert_int_equal(access(fp, F_OK), -1); /* nothing written */
    }
    snprintf(line, sizeof line, "dump embd blk.*.out %s", fp);
    expect_in(cmd(r, line, 0), "wrote 2 tensors");
    unlink(fp);

    done(r, mp);
}

static void test_lua_ablate_head_as_given(void **state)
{
    (void)state;
    char mp[1024];
    xf_repl *r = tiny_repl(mp, sizeof mp);
    cmd(r, "run --tokens 1,2", 0);
    expect_in(cmd(r, "lua xf.ablate('blk.0.head', 2^31)", 1),
              "xf.ablate: head 2147483648 is not a head number");
    expect_in(cmd(r, "lua xf.ablate('blk.0.head', -(2^40))", 1),
              "xf.ablate: head -1099511627776 is not a head number");
    done(r, mp);
}

/* a name that exists, looked up where it is not (the reference, the
 * weights), is not answered "did you mean" itself (session 26) */
static void test_no_suggestion_of_itself(void **state)
{
    (void)state;
    char mp[1024], sp[1024];
    xf_repl *r = tiny_repl(mp, sizeof mp);
    cmd(r, "run --tokens 1,2", 0);
    cmd(r, "continue", 0);
    int32_t ids[2] = {1, 2};
    ref_with_tokens(r, sp, sizeof sp, REFDUMP_I32, ids, 2);
    const char *o = cmd(r, "print blk.0.out@ref", 1);
    expect_in(o, "the reference has no tensor 'blk.0.out'");
    assert_null(strstr(o, "did you mean"));
    o = cmd(r, "quant blk.0.out 0", 1);
    expect_in(o, "quant: no weight named 'blk.0.out'");
    assert_null(strstr(o, "did you mean"));
    /* a near miss still gets one */
    expect_in(cmd(r, "print blk.0.outt", 1), "did you mean blk.0.out?");
    unlink(sp);
    done(r, mp);
}

/* every tensor of the pass in the reference has another shape: compare says
 * that, not that none is in the reference (session 26) */
static void test_compare_all_shapes_differ(void **state)
{
    (void)state;
    char mp[1024], sp[1024];
    xf_repl *r = tiny_repl(mp, sizeof mp);
    cmd(r, "run --tokens 1,2", 0);
    cmd(r, "continue", 0);
    float embd[16] = {0};
    xf_err err = {{0}};
    refdump_writer *w = refdump_writer_new();
    int64_t s2[2] = {8, 2};
    assert_int_equal(refdump_writer_add(w, "embd", REFDUMP_F32, 2, s2, embd, &err), 0);
    st_save(w, sp, sizeof sp);
    ref_load(r, sp);
    expect_in(cmd(r, "compare", 1),
              "compare: none compared: the 1 tensor of this pass in the reference has other shapes there\n");
    unlink(sp);
    done(r, mp);
}

/* patch from an F64 dump: a value past float32's range would be written as
 * inf, so it is refused, as `set` refuses one (session 26); in range, it is
 * written rounded */
static void test_patch_f64_range(void **state)
{
    (void)state;
    char mp[1024], sp[1024];
    xf_repl *r = tiny_repl(mp, sizeof mp);
    cmd(r, "run --tokens 1,2", 0);
    cmd(r, "step", 0); /* embd ran, nothing read it yet */
    double v[16];
    for (int i = 0; i < 16; i++)
        v[i] = 0.25 * i;
    v[5] = 1e300;
    xf_err err = {{0}};
    refdump_writer *w = refdump_writer_new();
    int64_t s2[2] = {2, 8};
    assert_int_equal(refdump_writer_add(w, "embd", REFDUMP_F64, 2, s2, v, &err), 0);
    st_save(w, sp, sizeof sp);
    char line[1200];
    snprintf(line, sizeof line, "patch embd from %s", sp);
    const char *o = cmd(r, line, 1);
    expect_in(o, ": embd element 5 (F64 at byte ");
    expect_in(o, ") is 1e+300, outside float32's range\n");
    unlink(sp);
    v[5] = 1.25;
    w = refdump_writer_new();
    assert_int_equal(refdump_writer_add(w, "embd", REFDUMP_F64, 2, s2, v, &err), 0);
    st_save(w, sp, sizeof sp);
    snprintf(line, sizeof line, "patch embd from %s", sp);
    cmd(r, line, 0);
    float got[16];
    pass_values(r, "embd", got, 16);
    for (int i = 0; i < 16; i++)
        assert_true(got[i] == (float)v[i]);
    unlink(sp);
    done(r, mp);
}

int main(void)
{
    tu_filter_from_env();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape_must_agree),         cmocka_unit_test(test_nan_reference_is_no_match),
        cmocka_unit_test(test_ref_prompt_tokens),        cmocka_unit_test(test_dump_keep_names),
        cmocka_unit_test(test_lua_ablate_head_as_given), cmocka_unit_test(test_patch_f64_range),
        cmocka_unit_test(test_no_suggestion_of_itself),  cmocka_unit_test(test_compare_all_shapes_differ),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
