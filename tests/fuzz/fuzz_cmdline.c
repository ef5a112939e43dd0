/* fuzz_cmdline: libFuzzer harness for what a user types.
 * The first input byte picks the target:
 *  - even: the slice parser. Bytes 1..4 give a shape (rank from byte 1,
 *    dims 0..15 from bytes 2..4 and the rank), the rest is the slice text.
 *    tensor_slice_parse, tensor_slice_resolve, and every selected flat
 *    index (or the first and last 256 of them) must lie inside the tensor.
 *  - odd: the command line. The rest, split at '\n' (at most 16 lines), runs
 *    through repl_exec_line on a fresh REPL holding a tiny GPT-2 (written at
 *    start-up with an evil name and control-byte tokens, so that escaping is
 *    exercised), one REPL per input so that a crash reproduces from its
 *    input alone. Everything printed (output and errors, captured) must be
 *    free of control bytes other than '\n'.
 * Commands that touch the file system or only cost time (CMD_READS_FILES,
 * CMD_WRITES_FILES, CMD_OUTPUT_VARIES in the table: load, ref, dump, record,
 * source, bench, profile; and lua) are skipped: a fuzzer must not write
 * files where it likes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz/tinymodel.h"
#include "repl.h"
#include "cmdline.h"
#include "commands.h"
#include "tensor.h"

static char g_model[256];

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "fuzz_cmdline: invariant broken: %s: \"%s\"\n", what, msg ? msg : "(null)");
    abort();
}

static void fuzz_slice(const uint8_t *data, size_t size)
{
    if (size < 4)
        return;
    int ndim = 1 + data[0] % XF_MAX_DIMS;
    int64_t shape[XF_MAX_DIMS] = {1, 1, 1, 1};
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        shape[i] = data[1 + i % 3] >> (4 * (i / 3)) & 15;
        numel *= shape[i];
    }
    char text[512];
    size_t n = size - 4 < sizeof text - 1 ? size - 4 : sizeof text - 1;
    memcpy(text, data + 4, n);
    text[n] = '\0';
    xf_slice sl;
    xf_err err = {{0}};
    if (tensor_slice_parse(text, &sl, &err) != 0) {
        if (!err.msg[0])
            die("slice parse failed without a message", text);
        return;
    }
    xf_selection sel;
    if (tensor_slice_resolve(&sl, ndim, shape, &sel, &err) != 0) {
        if (!err.msg[0])
            die("slice resolve failed without a message", text);
        return;
    }
    int64_t prod = 1;
    for (int i = 0; i < sel.out_ndim; i++) {
        if (sel.out_shape[i] < 0)
            die("negative output dimension", text);
        prod *= sel.out_shape[i];
    }
    if (sel.count != prod || sel.count > numel)
        die("selection count is not the product of the output shape, or exceeds the tensor", text);
    for (int64_t k = 0; k < sel.count; k++) {
        if (k == 256 && sel.count > 512)
            k = sel.count - 256;
        int64_t idx = tensor_selection_index(&sel, k);
        if (idx < 0 || idx >= numel)
            die("selected index outside the tensor", text);
    }
}

/* offset of the first control byte (C0 but '\n', DEL, C1 as UTF-8), or -1 */
static long first_control(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n; i++) {
        if ((u[i] < 0x20 && u[i] != '\n') || u[i] == 0x7f)
            return (long)i;
        if (u[i] == 0xc2 && i + 1 < n && u[i + 1] >= 0x80 && u[i + 1] <= 0x9f)
            return (long)i;
    }
    return -1;
}

/* Runs one line unless its command touches the file system or only costs
 * time (the table's flags say which; Lua by name: it runs anything). A line
 * that does not parse still runs, for its error message. */
static void run_line(xf_repl *r, const char *line)
{
    repl_line l;
    char why[256];
    if (repl_line_parse(line, strlen(line), &l, why, sizeof why) != 0) {
        repl_exec_line(r, line);
        return;
    }
    unsigned deny = CMD_READS_FILES | CMD_WRITES_FILES | CMD_OUTPUT_VARIES;
    if (!l.cmd || !((l.cmd->flags & deny) || strcmp(l.cmd->name, "lua") == 0))
        repl_exec_parsed(r, &l);
    repl_line_free(&l);
}

static void fuzz_repl(const uint8_t *data, size_t size)
{
    xf_repl *r = repl_new();
    if (!r)
        abort();
    r->io.quiet = true;
    r->io.errf = NULL;
    r->io.out = NULL;
    r->batch = true;
    r->backend_forced = true;
    r->backend = KERN_BACKEND_CPU;
    r->n_threads = 1;
    xf_strbuf out = {0};
    r->io.capture = &out;
    if (repl_load(r, g_model) != 0)
        die("the tiny model does not load", out.s);
    char *text = malloc(size + 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    char *line = text;
    for (int k = 0; k < 16 && line && !r->quit; k++) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        run_line(r, line);
        line = nl ? nl + 1 : NULL;
    }
    long at = first_control(out.s, out.len);
    if (at >= 0) {
        long a = at > 60 ? at - 60 : 0;
        char ctx[160];
        snprintf(ctx, sizeof ctx, "byte 0x%02x at %ld after \"%.*s\"", (unsigned char)out.s[at], at,
                 (int)(at - a), out.s + a);
        die("a control byte reached the output", ctx);
    }
    r->io.capture = NULL;
    sb_free(&out);
    free(text);
    repl_free(r);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static const char *const extra[] = {"\x1b]0;pwned\x07", "\x1b[2J", "tab\there", "nul\x01\x02\x7f"};
    tiny_spec s;
    tiny_spec_default(&s);
    s.name = "\x1b[2J\x1b]0;pwned\x07tiny";
    s.extra = extra;
    s.n_extra = 4;
    const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(g_model, sizeof g_model, "%s/fuzz_cmdline-%ld.gguf", dir, (long)getpid());
    if (tiny_save(&s, g_model) != 0) {
        fprintf(stderr, "fuzz_cmdline: cannot write %s\n", g_model);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        fuzz_repl(data + 1, size - 1);
    else
        fuzz_slice(data + 1, size - 1);
    return 0;
}
