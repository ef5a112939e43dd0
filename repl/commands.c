/* commands: the one table of REPL commands (name, aliases, synopsis, help,
 * handler, flags, completion) and the dispatch of a parsed line. Help,
 * completion, the nearest-name suggestion, recording, replay and the Lua
 * sandbox all read the table; the handlers live in files named by their
 * job (run.c, inspect.c, info.c, dumps.c, bench.c, record.c, lua_*.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "commands.h"
#include "dumps.h"
#include "exec.h"
#include "info.h"
#include "inspect.h"
#include "lens.h"
#include "print.h"
#include "record.h"
#include "repl.h"
#include "run.h"

static int cmd_help(xf_repl *r, int argc, char **argv, const char *rest);

int cmd_quit(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)argc;
    (void)argv;
    (void)rest;
    r->quit = true;
    return 0;
}

/* --- the table ------------------------------------------------------------------ */

#define W CMD_NEEDS_MODEL | CMD_NEEDS_WEIGHTS
#define P CMD_NEEDS_MODEL | CMD_NEEDS_WEIGHTS | CMD_NEEDS_PASS
#define RF CMD_READS_FILES
#define WF CMD_WRITES_FILES
#define VARIES CMD_OUTPUT_VARIES
#define NOREC CMD_NOT_RECORDED

static const xf_command k_commands[] = {
    {"help", "h ?", "help [CMD]", "List the commands, or explain one.", cmd_help, 0, COMPLETE_COMMAND},
    {"load", NULL, "load PATH", "Load a GGUF model (or a vocabulary-only GGUF, for tokenizing).", cmd_load, RF,
     COMPLETE_FILE},
    {"info", "i", "info [model|breaks]",
     "Model summary (architecture, sizes, tensor types, memory), or the breakpoints with hit counts.", cmd_info,
     CMD_NEEDS_MODEL, COMPLETE_NONE},
    {"tokenize", "tokens", "tokenize [--ids] [--no-special] TEXT",
     "Show the ids and pieces of TEXT (\"quoted\" text takes C escapes: \\n \\t \\\\ \\\" \\xNN \\uXXXX).\n"
     "--ids prints only the ids on one line. Special tokens (<|endoftext|>) are parsed unless --no-special.",
     cmd_tokenize, CMD_NEEDS_MODEL, COMPLETE_NONE},
    {"run", "r", "run TEXT | run --tokens 1,2,3",
     "Start a pass over a prompt from position 0 (the KV cache is reset) and stop before its first op.", cmd_run,
     W, COMPLETE_NONE},
    {"token", NULL, "token [ID]",
     "Start the next decode pass with ID, or with the greedy choice from the last logits; stop before its\n"
     "first op. The previous pass must be complete.",
     cmd_token, P, COMPLETE_NONE},
    {"step", "s", "step [N]", "Run the next N ops (default 1). Enter on an empty line repeats.", cmd_step,
     P | CMD_REPEATS, COMPLETE_NONE},
    {"next", "n", "next", "Run to the end of the current layer.", cmd_next, P | CMD_REPEATS, COMPLETE_NONE},
    {"finish", "fin", "finish", "Run to the end of the pass, not stopping at breakpoints.", cmd_finish, P,
     COMPLETE_NONE},
    {"continue", "c cont", "continue",
     "Run to the next breakpoint, check failure (check break) or the end of the pass. Ctrl-C stops at the\n"
     "next op boundary.",
     cmd_continue, P | CMD_REPEATS, COMPLETE_NONE},
    {"where", "w bt", "where", "The pass, its position and the op last run and next.", cmd_where, P,
     COMPLETE_NONE},
    {"list", "l", "list [N|all]", "The ops around the program counter with shapes and kernel variants\n"
                                  "(=> next op, * computed in this pass).",
     cmd_list, P, COMPLETE_NONE},
    {"break", "b", "break PATTERN [if COND]",
     "Stop after every op whose name matches the glob PATTERN (blk.*.kq_soft, blk.3.*, l_out-3).\n"
     "COND: nan, inf, absmax>X, nmse(ref)>X (against `ref load`), or a Lua expression.",
     cmd_break, W, COMPLETE_TENSOR},
    {"delete", "d", "delete [N]", "Delete breakpoint N, or all of them.", cmd_delete, W, COMPLETE_NONE},
    {"print", "p", "print NAME[SLICE] [-n N] [--raw] [--heat]",
     "Shape, dtype, variant, stats and values of a tensor, NAME@ref or a weight (GGUF name). SLICE is\n"
     "numpy-like: [3, :8], [-1], [:, 2, 0:4]. A vector shows its first N values (default 8), a matrix its\n"
     "rows, head ... tail, as wide as the terminal; logits show the last position. --heat draws a\n"
     "matrix (kq_soft: every head, tokens on the axes). --raw prints only the first N values (%.9g).",
     cmd_print, W, COMPLETE_TENSOR},
    {"stats", NULL, "stats NAME [--hist]",
     "Min, max, mean, std, absmax and NaN/Inf counts of a tensor; --hist adds a histogram and a sparkline.",
     cmd_stats, W, COMPLETE_TENSOR},
    {"diff", NULL, "diff A B [-n N]",
     "Compare two tensors (names, NAME@ref, NAME@cpu; B alone as @ref or @cpu means A's): max abs, max\n"
     "rel, NMSE, cosine, NaN/Inf, the first and the worst element over tolerance as [i, j], and the N\n"
     "largest differences side by side.",
     cmd_diff, W, COMPLETE_TENSOR},
    {"topk", NULL, "topk [K] [NAME]",
     "Top K tokens of the last logits, or the logit lens of a residual (final norm + unembedding).", cmd_topk, P,
     COMPLETE_TENSOR},
    {"lens", NULL, "lens [K] [POS]",
     "The logit lens of every layer: the top K tokens (default 5) of embd and each blk.L.out at row POS\n"
     "of this pass (default the last) through the final norm and unembedding, one row a layer.",
     cmd_lens, P, COMPLETE_NONE},
    {"kernel", "k", "kernel [OP VARIANT] | kernel all VARIANT",
     "List op kinds with their variants (* selected), or select one variant (kernel norm ref).", cmd_kernel, W,
     COMPLETE_OPKIND},
    {"check", NULL, "check [on|off|break|pass]",
     "on: run each op's cpu ref on the same inputs and record the error; break: also stop at the first op\n"
     "over tolerance and name its kernel; pass (or no argument): the table for this pass.",
     cmd_check, W, COMPLETE_NONE},
    {"generate", "gen g", "generate N [--temp T] [--top-k K] [--top-p P] [--seed S] [--ids] [--ignore-eos]",
     "Finish the current pass, then decode up to N tokens (greedy unless --temp > 0), printing text as it\n"
     "comes, or the ids on one line with --ids. Stops at an end-of-generation token unless --ignore-eos.",
     cmd_generate, P, COMPLETE_NONE},
    {"chat", NULL, "chat [--new] [--system \"TEXT\"] [-n N] [--temp T] [--seed S] MESSAGE",
     "Talk to an instruct model: MESSAGE goes through the model's chat template (ChatML) and the reply is\n"
     "generated until the end of its turn (at most N tokens, default 256). Later `chat`s continue the\n"
     "conversation in the KV cache; --new (or --system) starts over.",
     cmd_chat, W, COMPLETE_NONE},
    {"dump", NULL, "dump NAMES|all FILE.safetensors",
     "Write tensors of the last pass (F32, canonical names) plus prompt.tokens (I32) to a safetensors file.",
     cmd_dump, P | WF, COMPLETE_FILE},
    {"ref", NULL, "ref load FILE.safetensors", "Load a reference dump for NAME@ref, compare and nmse(ref).",
     cmd_ref, W | RF, COMPLETE_FILE},
    {"compare", NULL, "compare [@ref]",
     "Every computed tensor of this pass against the reference, in program order; the first over tolerance\n"
     "is marked.",
     cmd_compare, P, COMPLETE_NONE},
    {"profile", NULL, "profile",
     "Re-run the current pass op by op and time each op (cuda: CUDA events, no sync between ops; cpu: wall\n"
     "clock); the time per op kind.",
     cmd_profile, P | VARIES, COMPLETE_NONE},
    {"lua", NULL, "lua CODE",
     "Run Lua code with the `xf` module (sandboxed unless --unsafe-lua). A Lua error prints a traceback.",
     cmd_lua, 0, COMPLETE_NONE},
    {"source", NULL, "source FILE.lua [ARGS]", "Run a Lua script (ARGS in `arg`).", cmd_source, RF, COMPLETE_FILE},
    {"record", NULL, "record FILE.xfs [--tolerance REL] [--abs ABS] | record stop | record",
     "Record the commands that follow and their output as a session that `xfdb --replay` checks (text\n"
     "exactly, numbers within the tolerance, default rel 1e-5 abs 1e-7). `record` alone says whether a\n"
     "recording is on. Ends at `record stop` or exit; a killed recording leaves FILE.xfs.tmp, which replay\n"
     "reports as incomplete.",
     cmd_record, WF | NOREC, COMPLETE_FILE},
    {"quant", NULL, "quant WEIGHT ROW [BLOCK]",
     "One raw block of a weight row as stored in the file: bytes, scales, mins and quants, and its floats.",
     cmd_quant, W, COMPLETE_TENSOR},
    {"graph", NULL, "graph [on|off|unfused]",
     "CUDA decode fast path: a one-token pass run by continue/finish with check off and no hook replays\n"
     "as CUDA graphs (breakpoints split them). on: with the fast-path fusions; unfused: one kernel per op;\n"
     "off: op by op. Shows capture/replay counts. The cpu backend has no graphs.",
     cmd_graph, W, COMPLETE_NONE},
    {"bench", NULL, "bench [step] [--overhead] [--prefill N,N] [--decode N] [--reps R] [--variants opt,ref]",
     "Time prefill (default 128 and 512 tokens) and decode (128 tokens) per kernel variant set, medians\n"
     "after a warm-up, then the per-op-kind table of one pass (as `profile`); `bench step` times one step\n"
     "plus an 8-value print; --overhead times decode with nothing watched, with a breakpoint that never\n"
     "fires and with check on. Replaces the current pass.",
     cmd_bench, W | VARIES, COMPLETE_NONE},
    {"quit", "q exit", "quit", "Leave xfdb.", cmd_quit, NOREC, COMPLETE_NONE},
};

#undef W
#undef P
#undef RF
#undef WF
#undef VARIES
#undef NOREC

const xf_command *commands_table(size_t *n)
{
    *n = sizeof k_commands / sizeof k_commands[0];
    return k_commands;
}

static bool alias_has(const char *aliases, const char *name)
{
    if (!aliases)
        return false;
    size_t n = strlen(name);
    for (const char *p = aliases; *p;) {
        const char *e = strchr(p, ' ');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && strncmp(p, name, n) == 0)
            return true;
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

const xf_command *commands_find(const char *name)
{
    size_t n;
    const xf_command *t = commands_table(&n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(t[i].name, name) == 0 || alias_has(t[i].aliases, name))
            return &t[i];
    return NULL;
}

static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 30 || lb > 30)
        return 99;
    int d[32][32];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c)
                c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c)
                c = d[i][j - 1] + 1;
            d[i][j] = c;
        }
    return d[la][lb];
}

const char *commands_nearest(const char *word)
{
    size_t n;
    const xf_command *t = commands_table(&n);
    const char *best = NULL;
    int bd = 3;
    for (size_t i = 0; i < n; i++) {
        int d = edit_distance(word, t[i].name);
        if (d < bd) {
            bd = d;
            best = t[i].name;
        }
    }
    return best;
}

int cmd_help(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    size_t n;
    const xf_command *t = commands_table(&n);
    if (argc >= 2) {
        const xf_command *c = commands_find(argv[1]);
        if (!c)
            return repl_errf(r, "help: no command '%s'", argv[1]);
        repl_out(r, "%s\n", c->synopsis);
        if (c->aliases)
            repl_out(r, "aliases: %s\n", c->aliases);
        repl_out(r, "%s\n", c->help);
        return 0;
    }
    repl_out(r, "commands (help CMD for more):\n");
    for (size_t i = 0; i < n; i++) {
        const char *nl = strchr(t[i].help, '\n');
        int len = nl ? (int)(nl - t[i].help) : (int)strlen(t[i].help);
        repl_out(r, "  %-44s %.*s\n", t[i].synopsis, len > 60 ? 60 : len, t[i].help);
    }
    repl_out(r, "Enter repeats the last step/next/continue. Names accept aliases: l_out-3, transformer.h.3.ln_1, q3.\n");
    return 0;
}

int repl_exec_parsed(xf_repl *r, const repl_line *l)
{
    const xf_command *c = l->cmd;
    if (!c)
        return 0;
    if ((c->flags & CMD_NEEDS_MODEL) && !r->model)
        return repl_errf(r, "%s: no model loaded (load PATH)", c->name);
    if ((c->flags & CMD_NEEDS_WEIGHTS) && (!r->model || !r->ex))
        return repl_errf(r, "%s: %s has no weights (vocabulary only): load a model", c->name,
                         r->model ? r->model->path : "nothing");
    if ((c->flags & CMD_NEEDS_PASS) && !(r->ex && exec_program(r->ex)->n_ops > 0))
        return repl_errf(r, "%s: no pass yet (start one with `run TEXT` or `run --tokens 1,2,3`)", c->name);
    return c->fn(r, l->argc, l->argv, l->rest) ? 1 : 0;
}
