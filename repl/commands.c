/* commands: the one table of REPL commands (name, aliases, synopsis, help,
 * handler, flags, completion) and the dispatch of a parsed line. Help,
 * completion, the nearest-name suggestion, recording, replay and the Lua
 * sandbox all read the table; the handlers live in files named by their
 * job (run.c, inspect.c, info.c, dumps.c, bench.c, record.c, lua_*.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "bench.h"
#include "commands.h"
#include "dumps.h"
#include "exec.h"
#include "info.h"
#include "inspect.h"
#include "lens.h"
#include "patch.h"
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
    {"help", "h ?", "help [CMD]", "List the commands, or explain one.", cmd_help, 0, COMPLETE_COMMAND, NULL},
    {"load", NULL, "load PATH",
     "Load a GGUF model. A vocabulary-only GGUF loads too, for tokenizing. Says the architecture, name, "
     "layers, tensor count, weight memory and backend (`info` shows the tensor types).",
     cmd_load, RF, COMPLETE_FILE, NULL},
    {"info", "i", "info [model|breaks]",
     "The model, or the breakpoints (info breaks). model: architecture, sizes, tensor types, memory, the "
     "context (the file's and what --ctx set), the CPU threads and, on cuda, the prefill codes kept on the "
     "device; breaks: the breakpoints with hit counts.",
     cmd_info, CMD_NEEDS_MODEL, COMPLETE_NONE, "model breaks"},
    {"tokenize", "tokens", "tokenize [--ids] [--no-special] TEXT",
     "Show the ids and pieces of TEXT. \"Quoted\" text takes C escapes: \\n \\t \\\\ \\\" \\xNN \\uXXXX. "
     "--ids prints only the ids on one line. Special tokens (<|endoftext|>) are parsed unless --no-special.",
     cmd_tokenize, CMD_NEEDS_MODEL, COMPLETE_NONE, NULL},
    {"run", "r", "run TEXT | run --tokens 1,2,3",
     "Start a pass over a prompt; stop before its first op. The pass starts at position 0 (the KV cache is "
     "reset). TEXT or ids are required.",
     cmd_run, W, COMPLETE_NONE, NULL},
    {"token", NULL, "token [ID[,ID...]]",
     "Start the next decode pass; stop before its first op. Its input is ID (several ids: one pass over "
     "them), or the greedy choice from the last logits. The previous pass must be complete. Enter repeats "
     "it.",
     cmd_token, P | CMD_REPEATS, COMPLETE_NONE, NULL},
    {"step", "s", "step [N]", "Run the next N ops (default 1). Enter on an empty line repeats it.", cmd_step,
     P | CMD_REPEATS, COMPLETE_NONE, NULL},
    {"next", "n", "next", "Run to the end of the current layer. Enter repeats it.", cmd_next, P | CMD_REPEATS,
     COMPLETE_NONE, NULL},
    {"finish", "fin", "finish", "Run to the end of the pass, past breakpoints.", cmd_finish, P, COMPLETE_NONE,
     NULL},
    {"continue", "c cont", "continue",
     "Run to the next breakpoint or the end of the pass. Also stops at a check failure (check break). In a "
     "generation a breakpoint paused, it resumes the generation. Ctrl-C stops at the next op boundary. "
     "Enter repeats it.",
     cmd_continue, P | CMD_REPEATS, COMPLETE_NONE, NULL},
    {"where", "w bt", "where",
     "Where the pass stands: last op, next op. Says if a generation is paused there.", cmd_where, P,
     COMPLETE_NONE, NULL},
    {"list", "l", "list [N|all]",
     "The ops around the program counter. N ops either side (default 5), with shapes and kernel variants "
     "(=> next op, * computed in this pass); all: every op.",
     cmd_list, P, COMPLETE_NONE, "all"},
    {"break", "b", "break PATTERN [if COND]",
     "Stop after every op whose name matches a glob. PATTERN names activations: blk.*.kq_soft, blk.3.*, "
     "l_out-3. COND: nan, inf, absmax>X, nmse(ref)>X (against `ref load`; a NaN/Inf the reference lacks is "
     "over any X), or a Lua expression. On cuda a graphed decode pass checks nan, inf and absmax>X on the "
     "device and, when one holds, runs again op by op to the exact op; other breakpoints split the graph at "
     "their op.",
     cmd_break, W, COMPLETE_ACTIVATION, NULL},
    {"delete", "d", "delete [N]", "Delete breakpoint N, or all of them.", cmd_delete, W, COMPLETE_NONE, NULL},
    {"print", "p", "print NAME[SLICE] [-n N] [--raw] [--heat]",
     "Show a tensor: shape, stats, its values by shape. NAME: an activation, NAME@ref, NAME@cpu or a weight "
     "(GGUF name). SLICE is numpy-like: [3, :8], [-1], [:, 2, 0:4]. -n N shows at most N values (N >= 1): "
     "a vector its first N (default 8); a matrix its rows, head ... tail, as wide as the terminal (default "
     "up to 12 rows; with -n, the rows N leaves after the columns that fit), saying which rows and blocks "
     "are left out; logits show the last position. --heat draws a matrix (kq_soft: every head, tokens on the "
     "axes). --raw prints only the first N values (%.9g).",
     cmd_print, W, COMPLETE_TENSOR, NULL},
    {"stats", NULL, "stats NAME [--hist]",
     "Min, max, mean, std, absmax, NaN/Inf of a tensor. --hist adds a histogram and a sparkline.", cmd_stats,
     W, COMPLETE_TENSOR, NULL},
    {"diff", NULL, "diff A B [-n N]",
     "Compare two tensors and show where they differ. A and B: names, NAME@ref, NAME@cpu (B alone as @ref "
     "or @cpu means A's; NAME@cpu does not replay set/ablate/patch, and says so in a written pass), of one "
     "shape (size-1 dimensions aside). Max abs, max rel, NMSE, cosine (nan when a NaN/Inf is on one side "
     "only), NaN/Inf counts, the first and the worst element over tolerance as [i, j], and the N largest "
     "differences side by side.",
     cmd_diff, W, COMPLETE_TENSOR, NULL},
    {"topk", NULL, "topk [K] [NAME]",
     "Top K tokens of the logits, or a logit lens. With NAME, the lens of a residual (final norm + "
     "unembedding).",
     cmd_topk, P, COMPLETE_TENSOR, NULL},
    {"lens", NULL, "lens [K] [POS]",
     "The logit lens of every layer, one row a layer. The top K tokens (default 5) of embd and each blk.L.out "
     "at row POS of this pass (default the last), through the final norm and unembedding.",
     cmd_lens, P, COMPLETE_NONE, NULL},
    {"set", NULL, "set NAME[SLICE] = VALUE | NAME2[SLICE] | NAME@ref | NAME@cpu | NAME@pass-K",
     "Write into the pass. NAME must have run in this pass and no op may have read it yet (stop right after "
     "it: break NAME); the ops that read it run after and use the new values. VALUE: a number written to "
     "every element of the slice (nan, inf and -inf too; past float32's range is an error); or a tensor's "
     "values (its slice, or the same slice when it has NAME's shape). The pass is marked written: `where`, "
     "the prompt (xfdb*), dump metadata and `passes` show it; the rest of it runs op by op. `run` starts "
     "clean.",
     cmd_set, P, COMPLETE_TENSOR, NULL},
    {"ablate", NULL, "ablate blk.L.head H | ablate blk.L.ffn",
     "Zero one attention head or one MLP. blk.L.head H zeroes head H's columns of blk.L.kqv (stop after "
     "blk.L.kqv); blk.L.ffn zeroes blk.L.ffn_out (stop after it). As set: the pass is marked written.",
     cmd_ablate, P, COMPLETE_ABLATE, NULL},
    {"patch", NULL, "patch NAME[SLICE] from FILE.safetensors",
     "Activation patching. Write NAME (or its slice) with the same tensor of a dump of another prompt (dump "
     "NAMES FILE). The shapes must be the same; as set, NAME must have run and not been read yet.",
     cmd_patch, P | RF, COMPLETE_NAME_FROM_FILE, NULL},
    {"keep", NULL, "keep [NAMES...] [--passes N] [--mem SIZE] | keep off",
     "What the next passes keep when they end. Tensors matching NAMES (globs: blk.*.out) of the last N "
     "passes (default 8) within --mem (default 256MB; refused when N passes would not fit), read back as "
     "NAME@pass-K (K passes before this one): diff blk.3.out blk.3.out@pass-1. A NAME that matches no "
     "tensor of the model is refused (every tensor: keep *). keep alone says what is kept.",
     cmd_keep, W, COMPLETE_ACTIVATION, NULL},
    {"passes", NULL, "passes",
     "The kept passes and this one. Their numbers (@pass-K), tokens, prompts (escaped pieces), the tensors "
     "kept and the interventions written into each.",
     cmd_passes, P, COMPLETE_NONE, NULL},
    {"kernel", "k", "kernel [OP VARIANT] | kernel all VARIANT",
     "List kernel variants (* selected), or select one. kernel OP VARIANT selects one op kind's (kernel "
     "norm ref); kernel all VARIANT every op kind's (kernel all ref, kernel all opt).",
     cmd_kernel, W, COMPLETE_OPKIND, NULL},
    {"check", NULL, "check [on|off|break|pass]",
     "Check each op against the cpu reference kernels. on: run each op's cpu ref on the same inputs and "
     "record the error; break: also stop at the first op over tolerance and name its kernel; off; pass (or "
     "no argument): the table for this pass.",
     cmd_check, W, COMPLETE_NONE, "on off break pass"},
    {"generate", "gen g", "generate N [--temp T] [--top-k K] [--top-p P] [--seed S] [--ids] [--ignore-eos]",
     "Decode up to N tokens, printing the text. The pass in flight finishes first. Greedy unless --temp > 0; "
     "--ids prints the ids on one line; stops at an end-of-generation token unless --ignore-eos. A "
     "breakpoint or Ctrl-C pauses it and `continue` resumes it. Ends with the rate in tokens/s (text only).",
     cmd_generate, P, COMPLETE_NONE, NULL},
    {"chat", NULL, "chat [--new] [--system \"TEXT\"] [-n N] [--temp T] [--seed S] MESSAGE",
     "One chat turn with an instruct model. MESSAGE goes through the model's chat template (ChatML) and the "
     "reply is generated until the end of its turn (at most N tokens, default 256; --temp and --seed as in "
     "generate). Later `chat`s continue the conversation in the KV cache; --new (or --system) starts over.",
     cmd_chat, W, COMPLETE_NONE, NULL},
    {"dump", NULL, "dump NAMES|all FILE.safetensors",
     "Write tensors of the last pass to a safetensors file. F32 under canonical names, plus prompt.tokens "
     "(I32). Whole tensors: each NAME (a glob) must match one of the pass, else nothing is written; all "
     "stands alone.",
     cmd_dump, P | WF, COMPLETE_NAMES_FILE, "all"},
    {"ref", NULL, "ref load FILE.safetensors",
     "Load a reference dump: NAME@ref, compare, nmse(ref).", cmd_ref, W | RF, COMPLETE_FILE, "load"},
    {"compare", NULL, "compare [@ref]",
     "Every tensor of this pass against the reference. In program order; the first over tolerance is "
     "marked. A tensor whose shape is not the reference's (size-1 dimensions aside) is said, not compared.",
     cmd_compare, P, COMPLETE_NONE, NULL},
    {"profile", NULL, "profile",
     "Time each op of the current pass, per op kind. Re-runs the pass op by op (cuda: CUDA events around "
     "each op, no sync between ops, a prefill first run once untimed so that loading kernels is not "
     "counted; cpu: wall clock).",
     cmd_profile, P | VARIES, COMPLETE_NONE, NULL},
    {"lua", NULL, "lua CODE",
     "Run Lua code with the `xf` module. An expression, or a `return`, prints its values. Sandboxed "
     "unless --unsafe-lua; a Lua error prints a traceback.",
     cmd_lua, CMD_RAW_TEXT, COMPLETE_NONE, NULL},
    {"source", NULL, "source FILE.lua [ARGS]", "Run a Lua script (ARGS in `arg`).", cmd_source, RF,
     COMPLETE_FILE, NULL},
    {"record", NULL, "record FILE.xfs [--tolerance REL] [--abs ABS] | record stop | record",
     "Record the session for `xfdb --replay`. The commands that follow and their output: replay checks text "
     "exactly, numbers within --tolerance REL / --abs ABS (default rel 1e-5, abs 1e-7). Started "
     "mid-session, it first rebuilds the state it starts from with commands it records. `record` alone says "
     "whether a recording is on. Ends at `record stop` or exit; a killed recording leaves FILE.xfs.tmp, "
     "which replay reports as incomplete.",
     cmd_record, WF | NOREC, COMPLETE_WORD_OR_FILE, "stop"},
    {"quant", NULL, "quant WEIGHT ROW [BLOCK]",
     "One raw block of a weight row, and its floats. As stored in the file: bytes, scales, mins, quants.",
     cmd_quant, W, COMPLETE_WEIGHT, NULL},
    {"graph", NULL, "graph [on|off|unfused|mega]",
     "The CUDA decode fast path and its counters. A one-token pass run by continue/finish with check off and "
     "no hook replays as CUDA graphs (breakpoints split them). on: with the fast-path fusions; mega: the "
     "same fusions, their kernels run as phases of one persistent megakernel (every tensor still written, "
     "the same bits); unfused: one kernel per op; off: op by op. "
     "Shows the counters, the megakernel's phases, why a decode pass would run op by op if it would, "
     "which fusions the selected kernels allow, whether a prefill runs each layer's attention as one "
     "call (both backends), and on cuda whether it runs a layer's matmuls of one input (gate and up; q, k "
     "and v) in one launch, with the count of such launches, and which product its matmuls run (wgmma "
     "or mma.sync; BF16 and F32 weights: cuBLAS SGEMM unless XF_SPLIT_FLOAT). The cpu backend has no "
     "graphs.",
     cmd_graph, W, COMPLETE_NONE, "on off unfused mega"},
    {"bench", NULL,
     "bench [step] [--overhead] [--prefill N,N] [--decode N] [--depth D] [--reps R] [--variants opt,ref]",
     "Time prefill and decode per kernel variant set. --prefill token counts (default 128,512), --decode "
     "tokens (default 128) after a prefill of --depth D tokens (default 1: decode from position 1), medians "
     "of --reps R runs (default 5) after a warm-up, for each of --variants "
     "(default opt,ref); then the per-op-kind table of one pass (as `profile`). Each figure stands beside "
     "its "
     "memory floor: the weight bytes the pass reads (decode: every matrix, the head, norms and biases, one "
     "embedding row, or the whole table when the head is tied to it; prefill: the same, once per pass) over "
     "the memory bandwidth measured once per process (cpu: bench's threads reading max(1 GiB, 4x L3); cuda: "
     "a 1 GiB device copy), and x floor, the figure over it. step: one step plus an "
     "8-value print; --overhead: decode with nothing watched, with breakpoints that never fire (break logits "
     "if nan; break blk.*.out if nan), with check on. It runs on a stepper of its own: the pass, breakpoints "
     "and KV cache stay as they were.",
     cmd_bench, W | VARIES, COMPLETE_NONE, "step"},
    {"quit", "q exit", "quit", "Leave xfdb.", cmd_quit, NOREC, COMPLETE_NONE, NULL},
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

/* The width help wraps to: the terminal's (it may be resized between two
 * commands), $COLUMNS where that is unknown, 80 when the output is not a
 * terminal or is captured (a recording must replay the same lines). */
int repl_width(const xf_repl *r)
{
    int w = 0;
    if (r->io.capture || !r->io.out || !isatty(fileno(r->io.out)))
        return 80;
    struct winsize ws;
    if (ioctl(fileno(r->io.out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        w = ws.ws_col;
    const char *env = getenv("COLUMNS");
    if (w <= 0 && env) {
        char *end;
        long c = strtol(env, &end, 10);
        if (!*end && c > 0 && c < 10000)
            w = (int)c;
    }
    if (w <= 0)
        w = 80;
    return w < 40 ? 40 : w;
}

/* Writes text wrapped at blanks to lines of at most width columns, the
 * first starting at column `col` (what is already on the line), the next
 * ones indented by `indent`. A line break in the text is a blank: the help
 * texts reflow to any width. A word longer than a line is not cut. */
void repl_wrap(xf_repl *r, const char *text, size_t n, int col, int indent, int width)
{
    size_t i = 0;
    bool first = true;
    while (i < n) {
        while (i < n && (text[i] == ' ' || text[i] == '\n'))
            i++;
        size_t e = i;
        while (e < n && text[e] != ' ' && text[e] != '\n')
            e++;
        if (e == i)
            break;
        int wl = (int)(e - i);
        if (!first && col + 1 + wl > width) {
            repl_out(r, "\n%*s", indent, "");
            col = indent;
        } else if (!first) {
            repl_out(r, " ");
            col++;
        }
        repl_out(r, "%.*s", wl, text + i);
        col += wl;
        first = false;
        i = e;
    }
    repl_out(r, "\n");
}

/* the summary of a help text: its first sentence */
static size_t first_sentence(const char *h)
{
    for (const char *p = h; *p; p++)
        if (*p == '.' && (p[1] == ' ' || p[1] == '\n' || !p[1]))
            return (size_t)(p - h + 1);
    return strlen(h);
}

#define HELP_COL 24 /* the synopsis column of the overview */

int cmd_help(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    size_t n;
    const xf_command *t = commands_table(&n);
    int width = repl_width(r);
    if (argc >= 2) {
        const xf_command *c = commands_find(argv[1]);
        if (!c) {
            char esc[128];
            pr_escape(esc, sizeof esc, argv[1], strlen(argv[1]));
            return repl_errf(r, "help: no command '%s'", esc);
        }
        /* the synopsis wraps under its first argument */
        int ind = (int)strlen(c->name) + 1;
        repl_wrap(r, c->synopsis, strlen(c->synopsis), 0, ind < 16 ? ind : 4, width);
        if (c->aliases)
            repl_out(r, "aliases: %s\n", c->aliases);
        repl_wrap(r, c->help, strlen(c->help), 0, 0, width);
        return 0;
    }
    repl_out(r, "commands (help CMD for the arguments and more):\n");
    for (size_t i = 0; i < n; i++) {
        /* a synopsis too long for the column shows as its name: help CMD has the rest */
        const char *syn = t[i].synopsis;
        size_t sl = strlen(syn);
        if (sl > HELP_COL - 1) {
            syn = t[i].name;
            sl = strlen(syn);
            repl_out(r, "  %s ...%*s", syn, HELP_COL - (int)sl - 4, "");
        } else
            repl_out(r, "  %-*s", HELP_COL, syn);
        repl_wrap(r, t[i].help, first_sentence(t[i].help), HELP_COL + 2, HELP_COL + 2, width);
    }
    const char *tail = "Enter on an empty line repeats step, next, continue or token right after them. "
                       "Ctrl-C stops a command at the next op (at the prompt: drops the line). "
                       "Names accept aliases: l_out-3, transformer.h.3.ln_1, q3.";
    repl_wrap(r, tail, strlen(tail), 0, 0, width);
    return 0;
}
