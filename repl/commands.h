/* commands: owns the ONE table of REPL commands (name, aliases, synopsis,
 * help, handler, flags, what the arguments complete to) and dispatch of a
 * parsed line. Every property of a command lives in its table row: help,
 * completion, recording (CMD_OUTPUT_VARIES, CMD_NOT_RECORDED), replay and
 * the Lua sandbox (CMD_READS_FILES, CMD_WRITES_FILES) read the flags, never
 * lists of names. */
#ifndef XF_COMMANDS_H
#define XF_COMMANDS_H

#include <stdbool.h>
#include <stddef.h>


typedef struct xf_repl xf_repl;

typedef int (*xf_cmd_fn)(xf_repl *r, int argc, char **argv, const char *rest);

enum {
    CMD_REPEATS = 1 << 0,       /* Enter on an empty line repeats it */
    CMD_NEEDS_MODEL = 1 << 1,   /* any loaded file */
    CMD_NEEDS_WEIGHTS = 1 << 2, /* a model with weights */
    CMD_NEEDS_PASS = 1 << 3,    /* a pass was started */
    CMD_READS_FILES = 1 << 4,   /* opens a path the user names (load, ref, source) */
    CMD_WRITES_FILES = 1 << 5,  /* creates or overwrites a file the user names (dump, record) */
    CMD_OUTPUT_VARIES = 1 << 6, /* output differs run to run (timings): recorded as `~` lines, never compared */
    CMD_NOT_RECORDED = 1 << 7,  /* never a step of a recording (record: it drives it; quit: ends the session) */
    CMD_RAW_TEXT = 1 << 8,      /* the rest is code or text as typed (lua): quotes in it need not balance */
};

/* What the arguments complete to (complete.c). TENSOR: activations and
 * weights (print), NAME@ their sources (@ref, @cpu, @pass-K); ACTIVATION:
 * only names a pass computes (break refuses weights); WEIGHT: only weights
 * (quant); OPKIND: an op kind, then its variants (kernel); FILE: a file
 * (after the sub-word when there are words: ref load); WORD_OR_FILE: one of
 * the words or a file (record stop | record FILE); NAME_FROM_FILE: an
 * activation, `from`, a file (patch); NAMES_FILE: the words or activations,
 * then activations or a file (dump); ABLATE: blk.L.head / blk.L.ffn, then a
 * head. */
enum {
    COMPLETE_NONE = 0,
    COMPLETE_TENSOR,
    COMPLETE_FILE,
    COMPLETE_COMMAND,
    COMPLETE_OPKIND,
    COMPLETE_ACTIVATION,
    COMPLETE_WEIGHT,
    COMPLETE_WORD_OR_FILE,
    COMPLETE_NAME_FROM_FILE,
    COMPLETE_NAMES_FILE,
    COMPLETE_ABLATE,
};

typedef struct xf_command {
    const char *name;
    const char *aliases;  /* space separated, or NULL */
    const char *synopsis;
    const char *help;     /* lines after the synopsis */
    xf_cmd_fn fn;
    unsigned flags;
    int complete;         /* what the arguments complete to */
    const char *words;    /* the sub-words its first argument completes to ("on off"), or NULL */
} xf_command;

const xf_command *commands_table(size_t *n);
/* The command of a name or alias, or NULL. */
const xf_command *commands_find(const char *name);
/* The command name nearest to an unknown word (a typo), or NULL. */
const char *commands_nearest(const char *word);
/* The columns output wraps to (the terminal's; 80 when not a terminal or
 * captured), and text wrapped at blanks to it (col: where the cursor is;
 * indent: of the lines after the first). */
int repl_width(const xf_repl *r);
void repl_wrap(xf_repl *r, const char *text, size_t n, int col, int indent, int width);

#endif
