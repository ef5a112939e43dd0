/* Session file tests: SHA-256 against the FIPS 180-4 / NIST vectors; the
 * parser on a good file and on malformed ones (missing header, bad
 * version, output before any command, invalid UTF-8, control bytes,
 * truncated, end-line count, text after the end, missing model line, bad
 * fields) with the exact error naming file, line and byte offset; the line
 * comparison (tolerance, absolute floor, integers exact, nan/inf, padding
 * next to numbers, text); the writer's crash safety (PATH.tmp until close,
 * a file abandoned mid-way parses as incomplete) and a write/parse round
 * trip with escaping and `~` lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "session.h"
#include "sha256.h"
#include "testutil.h"

#define SHA_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define L1 "# xfdb session 1\n"
#define L2 "# model: m.gguf sha256 " SHA_A "\n"

/* --- sha256 ------------------------------------------------------------------ */

static void test_sha256_vectors(void **state)
{
    (void)state;
    char hex[65];
    sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(m, strlen(m), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* a million 'a' fed in uneven pieces: the block buffering */
    xf_sha256 s;
    sha256_init(&s);
    static char a[1000];
    memset(a, 'a', sizeof a);
    size_t left = 1000000, piece = 1;
    while (left) {
        size_t k = piece < left ? piece : left;
        if (k > sizeof a)
            k = sizeof a;
        sha256_update(&s, a, k);
        left -= k;
        piece = piece * 3 % 997 + 1;
    }
    uint8_t d[32];
    sha256_final(&s, d);
    char got[65];
    for (int i = 0; i < 32; i++)
        snprintf(got + 2 * i, 3, "%02x", d[i]);
    assert_string_equal(got, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* 55, 56 and 64 bytes: the padding edge cases */
    static const struct {
        size_t n;
        const char *hex;
    } pads[] = {
        {55, "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072"},
        {56, "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e"},
        {63, "75220b47218278e656f2013bb8f0c455a25eaf01e86c64924e9d48d89776d6f2"},
        {64, "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c"},
        {65, "9537c5fdf120482f7d58d25e9ed583f52c02b4e304ea814db1633ad565aed7e9"},
    };
    memset(a, 'x', 65);
    for (size_t i = 0; i < sizeof pads / sizeof pads[0]; i++) {
        sha256_hex(a, pads[i].n, hex);
        assert_string_equal(hex, pads[i].hex);
    }
}

static void test_sha256_file(void **state)
{
    (void)state;
    char path[256];
    tu_tmp_path(path, sizeof path, ".bin");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("abc", f);
    fclose(f);
    char hex[65];
    xf_err err = {{0}};
    assert_int_equal(sha256_file_hex(path, hex, &err), 0);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    unlink(path);
    assert_int_equal(sha256_file_hex(path, hex, &err), -1);
    assert_non_null(strstr(err.msg, "cannot open"));
    assert_non_null(strstr(err.msg, path));
}

/* --- parsing ------------------------------------------------------------------ */

static xf_session *parse(const char *text, xf_err *err) { return session_parse("t.xfs", text, strlen(text), err); }

static void expect_error(const char *text, const char *want)
{
    xf_err err = {{0}};
    xf_session *s = parse(text, &err);
    if (s) {
        session_free(s);
        fail_msg("parsed; expected error: %s", want);
    }
    assert_string_equal(err.msg, want);
}

static void test_parse_good(void **state)
{
    (void)state;
    const char *text = L1 L2 "# model-path: models/m.gguf\n"
                             "# backend: cpu\n"
                             "# kernels: matmul=opt norm=ref\n"
                             "# tolerance: rel 1e-3 abs 1e-6\n"
                             "# a note\n"
                             "\n"
                             "> run \"hi\"\n"
                             "< pass 1: 2 tokens\n"
                             "<\n"
                             "< \n"
                             "# before step\n"
                             "> step 2\r\n"
                             "~ varies 12 ms\n"
                             "# tail\n"
                             "# end: 2 commands\n";
    xf_err err = {{0}};
    xf_session *s = parse(text, &err);
    if (!s)
        fail_msg("%s", err.msg);
    assert_int_equal(s->version, 1);
    assert_string_equal(s->model_name, "m.gguf");
    assert_string_equal(s->model_sha256, SHA_A);
    assert_string_equal(s->model_path, "models/m.gguf");
    assert_string_equal(s->backend, "cpu");
    assert_int_equal(s->n_kernels, 2);
    assert_string_equal(s->kernels[0].op, "matmul");
    assert_string_equal(s->kernels[0].variant, "opt");
    assert_string_equal(s->kernels[1].op, "norm");
    assert_string_equal(s->kernels[1].variant, "ref");
    assert_true(s->tol_rel == 1e-3);
    assert_true(s->tol_abs == 1e-6);
    assert_int_equal(s->n_header_comments, 1);
    assert_string_equal(s->header_comments[0], "# a note");
    assert_int_equal(s->n_entries, 2);
    assert_string_equal(s->entries[0].cmd, "run \"hi\"");
    assert_int_equal(s->entries[0].line_no, 9);
    assert_int_equal(s->entries[0].n_out, 3);
    assert_string_equal(s->entries[0].out[0].text, "pass 1: 2 tokens");
    assert_string_equal(s->entries[0].out[1].text, "");
    assert_string_equal(s->entries[0].out[2].text, "");
    assert_false(s->entries[0].out[0].skip);
    assert_int_equal(s->entries[0].out[0].line_no, 10);
    assert_string_equal(s->entries[1].cmd, "step 2");
    assert_int_equal(s->entries[1].n_comments, 1);
    assert_string_equal(s->entries[1].comments[0], "# before step");
    assert_int_equal(s->entries[1].n_out, 1);
    assert_true(s->entries[1].out[0].skip);
    assert_string_equal(s->entries[1].out[0].text, "varies 12 ms");
    assert_int_equal(s->n_tail_comments, 1);
    assert_string_equal(s->n_tail_comments ? s->tail_comments[0] : "", "# tail");
    assert_true(s->complete);
    assert_int_equal(session_check_complete(s, &err), 0);
    session_free(s);

    /* defaults when the optional lines are absent */
    s = parse(L1 L2 "# end: 0 commands\n", &err);
    if (!s)
        fail_msg("%s", err.msg);
    assert_string_equal(s->backend, "cpu");
    assert_true(s->tol_rel == SESSION_DEFAULT_REL);
    assert_true(s->tol_abs == SESSION_DEFAULT_ABS);
    assert_null(s->model_path);
    assert_int_equal(s->n_entries, 0);
    assert_true(s->complete);
    session_free(s);
}

static void test_parse_header_errors(void **state)
{
    (void)state;
    expect_error("", "t.xfs: line 1 at byte 0: empty file: not an xfdb session (the first line must be "
                     "'# xfdb session 1')");
    expect_error("> run hi\n< x\n",
                 "t.xfs: line 1 at byte 0: not an xfdb session (the first line must be '# xfdb session 1')");
    expect_error("# xfdb sessions 1\n",
                 "t.xfs: line 1 at byte 0: not an xfdb session (the first line must be '# xfdb session 1')");
    expect_error("# xfdb session 2\n" L2,
                 "t.xfs: line 1 at byte 15: unsupported session version 2 (this xfdb reads version 1)");
    expect_error("# xfdb session 1a\n", "t.xfs: line 1 at byte 15: bad session version '1a'");
    /* no model line: reported where the header ends */
    expect_error(L1 "# backend: cpu\n> run hi\n",
                 "t.xfs: line 3 at byte 32: the header has no '# model: FILE_NAME sha256 HEX' line");
    expect_error(L1 "# model: m.gguf sha256 abc\n",
                 "t.xfs: line 2 at byte 40: model: the sha256 must be 64 hex digits (got 3 characters)");
    expect_error(L1 "# model: m.gguf " SHA_A "\n", "t.xfs: line 2 at byte 26: model: expected 'FILE_NAME sha256 HEX'");
    expect_error(L1 "# model: m.gguf sha256 g" SHA_A "\n",
                 "t.xfs: line 2 at byte 40: model: the sha256 must be 64 hex digits (got 65 characters)");
    /* 'g' and 63 hex digits: the byte of the 'g' */
    expect_error(L1 "# model: m.gguf sha256 g"
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
                 "t.xfs: line 2 at byte 40: model: 'g' is not a hex digit");
    expect_error(L1 "# model: m.gguf sha256 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaZ\n",
                 "t.xfs: line 2 at byte 103: model: 'Z' is not a hex digit");
    expect_error(L1 L2 "# tolerance: rel x\n", "t.xfs: line 3 at byte 122: tolerance: rel 'x' is not a number >= 0");
    expect_error(L1 L2 "# tolerance: abs 1e-3\n", "t.xfs: line 3 at byte 118: tolerance: expected 'rel X abs Y'");
    expect_error(L1 L2 "# tolerance: rel 1e-3 tol 2\n",
                 "t.xfs: line 3 at byte 127: tolerance: expected 'rel X abs Y', found 'tol'");
    expect_error(L1 L2 "# kernels: matmul=opt norm\n",
                 "t.xfs: line 3 at byte 127: kernels: expected OP=VARIANT, found 'norm'");
    expect_error(L1 L2 "# backend: cpu\n# backend: cuda\n",
                 "t.xfs: line 4 at byte 120: a second '# backend:' line (the first is line 3)");
    expect_error(L1 L2 L2, "t.xfs: line 3 at byte 105: a second '# model:' line (the first is line 2)");
}

static void test_parse_body_errors(void **state)
{
    (void)state;
    /* L1 is 17 bytes, L2 88: the body starts at byte 105 */
    assert_int_equal(strlen(L1), 17);
    assert_int_equal(strlen(L2), 88);
    expect_error(L1 L2 "< orphan\n", "t.xfs: line 3 at byte 105: output line before any command");
    expect_error(L1 "< orphan\n", "t.xfs: line 2 at byte 17: output line before any command");
    expect_error(L1 L2 "> run\n<x\n", "t.xfs: line 4 at byte 111: expected a space after '<'");
    expect_error(L1 L2 ">\n", "t.xfs: line 3 at byte 105: empty command after '>'");
    expect_error(L1 L2 ">   \n", "t.xfs: line 3 at byte 105: empty command after '>'");
    expect_error(L1 L2 "> run\nhello\n",
                 "t.xfs: line 4 at byte 111: unexpected text: a line starts with '> ' (command), '< ' (output), "
                 "'~ ' (output not compared) or '#'");
    /* invalid UTF-8: the offset of the bad byte itself */
    expect_error(L1 L2 "> run\n< caf\xc3\n", "t.xfs: line 4 at byte 116: invalid UTF-8 (byte 0xc3)");
    expect_error(L1 L2 "> run\n< \xc0\xaf\n", "t.xfs: line 4 at byte 113: invalid UTF-8 (byte 0xc0)"); /* overlong */
    expect_error(L1 L2 "> run\n< \xed\xa0\x80\n", "t.xfs: line 4 at byte 113: invalid UTF-8 (byte 0xed)"); /* surrogate */
    expect_error(L1 L2 "> run\n< a\x07z\n",
                 "t.xfs: line 4 at byte 114: control byte 0x07 (a session stores it as \\x07)");
    static const char nul[] = L1 L2 "> run\n< a\0z\n";
    xf_err err = {{0}};
    assert_null(session_parse("t.xfs", nul, sizeof nul - 1, &err));
    assert_string_equal(err.msg, "t.xfs: line 4 at byte 114: NUL byte (a session is text)");
    /* the end line */
    expect_error(L1 L2 "> run\n# end: 2 commands\n", "t.xfs: line 4 at byte 118: the end line counts 2 commands, "
                                                    "the file has 1");
    expect_error(L1 L2 "> run\n# end: one\n", "t.xfs: line 4 at byte 111: bad end line: expected '# end: N commands'");
    expect_error(L1 L2 "> run\n# end: 1 command\n> step\n", "t.xfs: line 5 at byte 128: text after the end line");
}

static void test_parse_truncated(void **state)
{
    (void)state;
    /* a recording cut off mid-line: it parses, but is not complete */
    const char *text = L1 L2 "> run hi\n< pass 1: 2 tok";
    xf_err err = {{0}};
    xf_session *s = parse(text, &err);
    if (!s)
        fail_msg("%s", err.msg);
    assert_false(s->complete);
    assert_int_equal(s->n_entries, 1);
    assert_int_equal(session_check_complete(s, &err), -1);
    char want[512];
    snprintf(want, sizeof want,
             "t.xfs: line 4 at byte %zu: incomplete: no '# end: N commands' line after 1 command: the recording did "
             "not end cleanly (xfdb was killed or crashed while recording); record it again",
             strlen(text));
    assert_string_equal(err.msg, want);
    session_free(s);
    /* ending on a newline: the last line is still line 4 */
    s = parse(L1 L2 "> run hi\n< x\n", &err);
    assert_non_null(s);
    assert_int_equal(session_check_complete(s, &err), -1);
    assert_non_null(strstr(err.msg, "t.xfs: line 4 at byte 118: incomplete"));
    session_free(s);
    /* the header alone, cut before its model line ends */
    expect_error(L1 "# model: m.gguf sha2",
                 "t.xfs: line 2 at byte 26: model: expected 'FILE_NAME sha256 HEX'");
}

/* --- comparing ------------------------------------------------------------------ */

/* compare's err/tol bars are drawings of the numbers on their line: two
 * bars of one width match (the numbers and the status word are compared),
 * anything else in the same place does not */
static void test_compare_bars(void **state)
{
    (void)state;
    xf_line_diff d;
    assert_true(session_line_match("a 2.38e-07 ####......|. ok", "a 3.58e-07 #####.....|. ok", 1e-4, 1e-5, &d));
    assert_true(session_line_match("a 1 \u2588\u2588\u2588\u00b7\u00b7\u00b7\u00b7\u00b7\u00b7\u00b7|\u00b7 ok",
                                   "a 1 \u2588\u2588\u2588\u2588\u00b7\u00b7\u00b7\u00b7\u00b7\u00b7|\u00b7 ok", 1e-4, 1e-5, &d));
    /* the verdict beside it still counts */
    assert_false(session_line_match("a 1 ####......|. ok", "a 1 ##########|# OVER", 1e-4, 1e-5, &d));
    assert_string_equal(d.tok_expected, "ok");
    /* another width, or a bar against text, or short punctuation: text */
    assert_false(session_line_match("a ####......|. ok", "a ####.......|. ok", 1e-4, 1e-5, &d));
    assert_false(session_line_match("a ####......|. ok", "a ####....x.|. ok", 1e-4, 1e-5, &d));
    assert_false(session_line_match("wait...", "wait###", 1e-4, 1e-5, &d));
    assert_int_equal(d.kind, SESSION_DIFF_TEXT);
}

static void test_compare_numbers(void **state)
{
    (void)state;
    xf_line_diff d;
    /* within rel 1e-5 of the larger magnitude */
    assert_true(session_line_match("x 1.00000", "x 1.00001", 1e-5, 1e-7, &d));
    assert_true(session_line_match("x 100000", "x 100000.5", 1e-5, 1e-7, &d));
    assert_false(session_line_match("x 1.0000", "x 1.0001", 1e-5, 1e-7, &d));
    assert_int_equal(d.kind, SESSION_DIFF_NUMBER);
    assert_int_equal(d.number_no, 1);
    assert_int_equal(d.col_expected, 2);
    assert_string_equal(d.tok_expected, "1.0000");
    assert_string_equal(d.tok_got, "1.0001");
    assert_true(fabs(d.abs_diff - 1e-4) < 1e-12);
    assert_true(fabs(d.rel_diff - 1e-4 / 1.0001) < 1e-12);
    assert_false(d.exact);
    /* the absolute floor near zero */
    assert_true(session_line_match("v 0", "v 5e-08", 1e-5, 1e-7, &d));
    assert_false(session_line_match("v 0", "v 2e-07", 1e-5, 1e-7, &d));
    assert_true(session_line_match("v 0", "v 2e-07", 1e-5, 1e-6, &d));
    /* the second number is the one that differs */
    assert_false(session_line_match("min -2.2836  max 2.22067", "min -2.2836  max 2.22167", 1e-5, 1e-7, &d));
    assert_int_equal(d.number_no, 2);
    assert_int_equal(d.col_got, 17);
    /* integers compare exactly whatever the tolerance: token ids */
    assert_false(session_line_match("id 150000", "id 150001", 1e-3, 1e-7, &d));
    assert_true(d.exact);
    assert_int_equal(d.kind, SESSION_DIFF_NUMBER);
    assert_true(session_line_match("id 150000", "id 150000", 0, 0, &d));
    assert_true(session_line_match("x -0", "x 0", 0, 0, &d));
    assert_true(session_line_match("x 007", "x 7", 0, 0, &d));
    assert_true(session_line_match("n 123456789012345678901234567890", "n 123456789012345678901234567890", 0, 0, &d));
    assert_false(session_line_match("n 123456789012345678901234567890", "n 123456789012345678901234567891", 1, 1, &d));
    /* an integer against a float: tolerance */
    assert_true(session_line_match("x 1", "x 0.999999", 1e-5, 0, &d));
    /* nan and inf */
    assert_true(session_line_match("a nan b inf c -inf", "a nan b inf c -inf", 0, 0, &d));
    assert_true(session_line_match("a -nan", "a nan", 0, 0, &d));
    assert_false(session_line_match("a nan", "a 0.5", 1, 1, &d));
    assert_int_equal(d.kind, SESSION_DIFF_NUMBER);
    assert_true(isnan(d.abs_diff));
    assert_false(session_line_match("a inf", "a -inf", 1, 1, &d));
    assert_false(session_line_match("a inf", "a 1e308", 1, 1, &d));
    /* "info" and "nano" are words, not numbers */
    assert_false(session_line_match("info", "inf", 1, 1, &d));
    assert_int_equal(d.kind, SESSION_DIFF_TEXT);
    /* exponents and signs */
    assert_true(session_line_match("e 2.38419e-07", "e 2.3842e-07", 1e-4, 0, &d));
    assert_false(session_line_match("e 2.38419e-07", "e 2.38419e-06", 1e-4, 0, &d));
    assert_true(session_line_match("[-1, 3]", "[-1, 3]", 0, 0, &d));
    assert_false(session_line_match("[-1, 3]", "[1, 3]", 1, 1, &d));
    /* session_number_match on bare tokens */
    assert_true(session_number_match("1e-3", "0.001", 0, 0, &d));
    assert_false(session_number_match("abc", "1", 1, 1, &d));
    assert_int_equal(d.kind, SESSION_DIFF_TEXT);
}

static void test_compare_text(void **state)
{
    (void)state;
    xf_line_diff d;
    assert_true(session_line_match("pass 1 complete", "pass 1 complete", 0, 0, &d));
    assert_false(session_line_match("pass 1 complete", "pass 1 finished", 1, 1, &d));
    assert_int_equal(d.kind, SESSION_DIFF_TEXT);
    assert_int_equal(d.col_expected, 7);
    assert_string_equal(d.tok_expected, "complete");
    assert_string_equal(d.tok_got, "finished");
    /* digits inside names are text: blk.3 vs blk.4 */
    assert_false(session_line_match("blk.3.q", "blk.4.q", 1, 1, &d));
    assert_int_equal(d.kind, SESSION_DIFF_TEXT);
    assert_false(session_line_match("x86", "x87", 1, 1, &d));
    assert_int_equal(d.kind, SESSION_DIFF_TEXT);
    /* padding next to a number may change with its width; other blanks may not */
    assert_true(session_line_match("ok 0            1", "ok 2.38419e-07  1", 1, 1e-6, &d));
    assert_true(session_line_match("   3 x", " 3 x", 0, 0, &d));
    assert_false(session_line_match("I'll  not", "I'll not", 0, 0, &d));
    assert_int_equal(d.kind, SESSION_DIFF_TEXT);
    assert_int_equal(d.col_expected, 4);
    /* trailing blanks are ignored; a missing word is reported at the end of the line */
    assert_true(session_line_match("done   ", "done", 0, 0, &d));
    assert_false(session_line_match("a b", "a", 0, 0, &d));
    assert_string_equal(d.tok_expected, " ");
    assert_string_equal(d.tok_got, "");
    /* a number where text was */
    assert_false(session_line_match("p nan", "p n/a", 1, 1, &d));
    assert_int_equal(d.kind, SESSION_DIFF_TEXT);
}

/* --- writing ------------------------------------------------------------------ */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return b;
}

static void test_writer_round_trip(void **state)
{
    (void)state;
    char path[256], tmp[300];
    tu_tmp_path(path, sizeof path, ".xfs");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    xf_session_kernel ks[2] = {{"matmul", "opt"}, {"norm", "ref"}};
    char *comments[1] = {"# about this session"};
    xf_session_header h = {.model_name = "m f16.gguf", .model_path = "/x/m f16.gguf", .model_sha256 = SHA_A,
                           .backend = "cpu", .kernels = ks, .n_kernels = 2, .tol_rel = 2e-4, .tol_abs = 3e-6,
                           .comments = comments, .n_comments = 1};
    xf_err err = {{0}};
    xf_session_writer *w = session_writer_open(path, &h, &err);
    if (!w)
        fail_msg("%s", err.msg);
    assert_int_equal(access(tmp, F_OK), 0);
    /* before the first command, a header lookalike stays a comment */
    assert_int_equal(session_writer_comment(w, "# tolerance: rel 0.5", &err), 0);
    assert_int_not_equal(access(path, F_OK), 0);
    const char out1[] = "line one 1.5\n\nbell \x07 and bad \xff utf8\nno newline";
    assert_int_equal(session_writer_entry(w, "print x", out1, sizeof out1 - 1, NULL, 0, false, &err), 0);
    assert_int_equal(session_writer_comment(w, "# between", &err), 0);
    /* lookalikes of the end line stay comments */
    assert_int_equal(session_writer_comment(w, "# end: 1 commands", &err), 0);
    assert_int_equal(session_writer_comment(w, "no hash", &err), -1);
    bool skip[2] = {false, true};
    assert_int_equal(session_writer_entry(w, "profile", "a 1\nb 2\n", 8, skip, 2, false, &err), 0);
    assert_int_equal(session_writer_entry(w, "bench", "t 3 ms\n", 7, NULL, 0, true, &err), 0);
    assert_int_equal(session_writer_count(w), 3);

    /* mid-way, the .tmp holds every command so far and parses as incomplete */
    size_t len;
    char *mid = slurp(tmp, &len);
    assert_non_null(mid);
    xf_session *s = session_parse(tmp, mid, len, &err);
    if (!s)
        fail_msg("%s", err.msg);
    assert_false(s->complete);
    assert_int_equal(s->n_entries, 3);
    session_free(s);
    free(mid);

    assert_int_equal(session_writer_close(w, &err), 0);
    assert_int_not_equal(access(tmp, F_OK), 0);
    s = session_load(path, &err);
    if (!s)
        fail_msg("%s", err.msg);
    assert_true(s->complete);
    assert_string_equal(s->model_name, "m f16.gguf");
    assert_string_equal(s->model_path, "/x/m f16.gguf");
    assert_string_equal(s->model_sha256, SHA_A);
    assert_true(s->tol_rel == 2e-4);
    assert_true(s->tol_abs == 3e-6);
    assert_int_equal(s->n_kernels, 2);
    assert_string_equal(s->kernels[1].variant, "ref");
    assert_int_equal(s->n_header_comments, 2);
    assert_string_equal(s->header_comments[0], "# about this session");
    assert_string_equal(s->header_comments[1], "#  tolerance: rel 0.5");
    assert_int_equal(s->n_entries, 3);
    const xf_session_entry *e = &s->entries[0];
    assert_string_equal(e->cmd, "print x");
    assert_int_equal(e->n_out, 4);
    assert_string_equal(e->out[0].text, "line one 1.5");
    assert_string_equal(e->out[1].text, "");
    assert_string_equal(e->out[2].text, "bell \x07 and bad \xff utf8"); /* the escape undone */
    assert_string_equal(e->out[3].text, "no newline");
    assert_int_equal(s->entries[1].n_comments, 2);
    assert_string_equal(s->entries[1].comments[0], "# between");
    assert_string_equal(s->entries[1].comments[1], "#  end: 1 commands");
    assert_false(s->entries[1].out[0].skip);
    assert_true(s->entries[1].out[1].skip);
    assert_true(s->entries[2].out[0].skip);
    assert_string_equal(s->entries[2].out[0].text, "t 3 ms");
    session_free(s);

    /* the text as written, for the record */
    char *all = slurp(path, &len);
    assert_non_null(strstr(all, "# model: m f16.gguf sha256 " SHA_A "\n# model-path: /x/m f16.gguf\n# backend: cpu\n"
                                "# kernels: matmul=opt norm=ref\n# tolerance: rel 0.0002 abs 3e-06\n"));
    assert_non_null(strstr(all, "> print x\n< line one 1.5\n<\n< bell \\x07 and bad \\xff utf8\n"));
    assert_non_null(strstr(all, "> profile\n< a 1\n~ b 2\n> bench\n~ t 3 ms\n# end: 3 commands\n"));
    free(all);
    unlink(path);
}

static void test_writer_abandon(void **state)
{
    (void)state;
    char path[256], tmp[300];
    tu_tmp_path(path, sizeof path, ".xfs");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    xf_session_header h = {.model_name = "m.gguf", .model_sha256 = SHA_A, .backend = "cpu", .tol_rel = 1e-5,
                           .tol_abs = 1e-7};
    xf_err err = {{0}};
    /* a crash: the process dies with the recording open */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        xf_session_writer *w = session_writer_open(path, &h, &err);
        _exit(w && session_writer_entry(w, "run hi", "pass 1\n", 7, NULL, 0, false, &err) == 0 ? 0 : 1);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_not_equal(access(path, F_OK), 0);
    xf_session *s = session_load(tmp, &err);
    if (!s)
        fail_msg("%s", err.msg);
    assert_false(s->complete);
    assert_int_equal(s->n_entries, 1);
    assert_int_equal(session_check_complete(s, &err), -1);
    assert_non_null(strstr(err.msg, "incomplete"));
    session_free(s);
    /* the next recording takes over the dead one's lock and temporary */
    xf_session_writer *w = session_writer_open(path, &h, &err);
    if (!w)
        fail_msg("%s", err.msg);
    /* abandoning (an error path) leaves nothing a replay could take for a
     * crashed recording */
    session_writer_abandon(w);
    assert_int_not_equal(access(tmp, F_OK), 0);
    assert_int_not_equal(access(path, F_OK), 0);
    char lock[300];
    snprintf(lock, sizeof lock, "%s.lock", path);
    assert_int_not_equal(access(lock, F_OK), 0);
    /* a header without the model's hash is refused */
    h.model_sha256 = "abc";
    assert_null(session_writer_open(path, &h, &err));
    assert_non_null(strstr(err.msg, "sha256"));
    assert_int_not_equal(access(tmp, F_OK), 0);
}

static void test_escape_split(void **state)
{
    (void)state;
    char *e = session_escape("a\tb\x01\xe2\x82\xac\xe2\x82", 9);
    assert_string_equal(e, "a\tb\\x01\xe2\x82\xac\\xe2\\x82");
    free(e);
    char **lines;
    int n = session_split_output("x\n\ny", 4, &lines);
    assert_int_equal(n, 3);
    assert_string_equal(lines[0], "x");
    assert_string_equal(lines[1], "");
    assert_string_equal(lines[2], "y");
    session_lines_free(lines, n);
    n = session_split_output("x\n", 2, &lines);
    assert_int_equal(n, 1);
    session_lines_free(lines, n);
    n = session_split_output("", 0, &lines);
    assert_int_equal(n, 0);
    session_lines_free(lines, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),     cmocka_unit_test(test_sha256_file),
        cmocka_unit_test(test_parse_good),         cmocka_unit_test(test_parse_header_errors),
        cmocka_unit_test(test_parse_body_errors),  cmocka_unit_test(test_parse_truncated),
        cmocka_unit_test(test_compare_numbers),    cmocka_unit_test(test_compare_bars),
        cmocka_unit_test(test_compare_text),
        cmocka_unit_test(test_writer_round_trip),  cmocka_unit_test(test_writer_abandon),
        cmocka_unit_test(test_escape_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
