/* session: the .xfs file format of recorded sessions. It owns writing a
 * recording (header, one entry per command, the end line; crash-safe), the
 * strict parser of untrusted session files, and the comparison of an
 * output line with its recorded version (text exactly, numbers within a
 * tolerance). Running the commands is the REPL's job (repl/record.c); this
 * module never prints.
 *
 * The format, version 1 (UTF-8 text, one item a line, '\n' ends a line, a
 * '\r' before it is ignored):
 *
 *   # xfdb session 1                                 first line, exactly
 *   # model: NAME sha256 HEX64                       the model's file name and hash
 *   # model-path: PATH                               where it was loaded from (optional)
 *   # backend: cpu                                   (optional, default cpu)
 *   # kernels: embd=opt norm=ref ...                 the selection at the start (optional)
 *   # tolerance: rel 1e-05 abs 1e-07                 (optional, these are the defaults)
 *   # any other comment
 *   > COMMAND                                        a command as typed
 *   < OUTPUT LINE                                    a line it printed (errors: "< error: ...")
 *   ~ OUTPUT LINE                                    a line it printed that is not compared
 *   # end: N commands                                the trailer: the recording ended cleanly
 *
 * Header lines are the `# key: value` lines before the first command;
 * unknown keys and later `#` lines are comments (kept by session_write).
 * A `<` or `~` alone is an empty output line; blank file lines are ignored.
 * The escape: a byte that is not printable UTF-8 (invalid UTF-8, a control
 * byte but tab, DEL) is stored as \xNN (two hex digits, lowercase when
 * written, either case read). A backslash is stored as \\ where the reader
 * would otherwise see an escape (before another backslash, an 'x', or a
 * byte stored as \xNN); elsewhere it stays one backslash, so that `run
 * "A\nB"` reads as typed and files written before the escape read the same.
 * The reader undoes it in commands, output lines, comments and the model's
 * name and path: \\ is a backslash, \xNN the byte, any other backslash
 * itself. Commands, output and comments round-trip byte for byte, except a
 * NUL (lines are C strings), which reads back as U+FFFD, as a printed NUL
 * does in session_split_output. A command holding \x0a is refused (the
 * recorder cuts a command at its line end).
 *
 * Crash safety and one writer: a recording takes the lock PATH.lock (flock;
 * a second xfdb recording to PATH is refused), writes PATH.tmp (any old file
 * at that name removed, then created O_EXCL|O_NOFOLLOW: a planted symlink
 * is never followed), syncs it after every command and renames it to PATH
 * only after the end line. A killed recording leaves PATH.tmp without an
 * end line (and PATH untouched); the parser marks such a file incomplete,
 * and replay refuses it as such. Every error path (a failed write, sync or
 * rename; session_writer_abandon) removes PATH.tmp and the lock: only a
 * killed process leaves PATH.tmp behind. A PATH that is a symlink, not a
 * regular file, or read-only is refused (base/xfile.h).
 *
 * Comparison (session_line_match): each line is split into numbers,
 * runs of blanks and other text. Text must be identical; a run of blanks
 * next to a number may differ in length (tables pad numbers to a column);
 * blanks at the end of a line are ignored. Two integers (digits only, no
 * '.', no exponent: token ids, counts, indices) must be equal; other
 * numbers a, b must satisfy |a-b| <= max(abs, rel * max(|a|,|b|)). nan
 * equals nan, inf equals inf of the same sign. A number is a digit run not
 * glued to a preceding letter, digit, '_' or '.' (so `blk.3.q` and `x86`
 * are text), optionally signed, with optional fraction and exponent, or the
 * words nan/inf. */
#ifndef XF_SESSION_H
#define XF_SESSION_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

#define SESSION_VERSION 1
#define SESSION_DEFAULT_REL 1e-5
#define SESSION_DEFAULT_ABS 1e-7
/* Files larger than this are refused before they are read. */
#define SESSION_MAX_BYTES (256u << 20)

typedef struct xf_session_line {
    char *text;   /* without the "< " / "~ " prefix; owned */
    bool skip;    /* a `~` line: matches any one line */
    int line_no;  /* 1-based line in the file */
} xf_session_line;

typedef struct xf_session_entry {
    char *cmd;              /* the command as typed; owned */
    int line_no;            /* line of its `>` */
    size_t offset;          /* byte offset of its `>` */
    xf_session_line *out;   /* [n_out] expected output */
    int n_out;
    char **comments;        /* `#` lines just before the `>` (with the '#'); owned */
    int n_comments;
} xf_session_entry;

typedef struct xf_session_kernel {
    char *op;      /* op kind name, as written */
    char *variant;
} xf_session_kernel;

typedef struct xf_session {
    char *path;             /* as given to session_load (for messages) */
    int version;
    char *model_name;       /* file name; NULL when the header names none */
    char *model_path;       /* NULL if absent */
    char model_sha256[65];  /* lowercase hex; "" when absent */
    char *backend;          /* "cpu" unless the header says otherwise */
    xf_session_kernel *kernels;
    int n_kernels;
    double tol_rel, tol_abs;
    char **header_comments; /* other `#` lines of the header, in order */
    int n_header_comments;
    xf_session_entry *entries;
    int n_entries;
    char **tail_comments;   /* `#` lines after the last entry's output, before the end line */
    int n_tail_comments;
    bool complete;          /* the end line is there */
    int n_lines;            /* lines in the file (for messages about its end) */
    size_t n_bytes;
} xf_session;

/* Parses a session held in memory; name is used in messages. NULL on a
 * malformed file with "NAME: line L at byte B: what is wrong" in err. A
 * file without the end line parses (complete = false): see
 * session_check_complete. */
xf_session *session_parse(const char *name, const char *text, size_t len, xf_err *err);
/* Reads and parses a file. */
xf_session *session_load(const char *path, xf_err *err);
void session_free(xf_session *s);
/* 0 when the end line is there; else -1 with "NAME: line L at byte B:
 * incomplete: ..." (L, B: the end of the file). */
int session_check_complete(const xf_session *s, xf_err *err);

/* --- comparing -------------------------------------------------------------- */

typedef enum session_diff_kind {
    SESSION_DIFF_NONE = 0,
    SESSION_DIFF_TEXT,   /* text (or the kind of a token) differs */
    SESSION_DIFF_NUMBER, /* a number is out of tolerance (or two integers differ) */
} session_diff_kind;

typedef struct xf_line_diff {
    session_diff_kind kind;
    size_t col_expected, col_got;     /* byte offsets where the differing token starts */
    int number_no;                    /* SESSION_DIFF_NUMBER: which number on the line, 1-based */
    char tok_expected[64], tok_got[64]; /* the differing tokens as written (cut at 63 bytes; "" at line end) */
    double expected, got;             /* SESSION_DIFF_NUMBER */
    double abs_diff, rel_diff;        /* |a-b|, |a-b| / max(|a|,|b|) (nan when one side is nan) */
    bool exact;                       /* two integers: compared exactly */
    /* of the numbers that matched (not integers): the largest share of its
     * tolerance a difference used, |a-b| / max(abs, rel * max(|a|,|b|)),
     * and that number's values */
    double worst_ratio, worst_rel, worst_expected, worst_got;
} xf_line_diff;

/* true when got matches expected; else false with the first difference in d (may be NULL). */
bool session_line_match(const char *expected, const char *got, double rel, double abs, xf_line_diff *d);
/* Compares two numbers as written (both must be numbers by the rules above). */
bool session_number_match(const char *expected, const char *got, double rel, double abs, xf_line_diff *d);

/* --- writing ---------------------------------------------------------------- */

typedef struct xf_session_header {
    const char *model_name;
    const char *model_path;    /* may be NULL */
    const char *model_sha256;  /* 64 hex digits */
    const char *backend;
    const xf_session_kernel *kernels;
    int n_kernels;
    double tol_rel, tol_abs;
    char *const *comments;     /* extra `#` lines after the standard ones (with the '#') */
    int n_comments;
} xf_session_header;

typedef struct xf_session_writer xf_session_writer;

/* Takes PATH.lock, creates PATH.tmp and writes the header (synced). */
xf_session_writer *session_writer_open(const char *path, const xf_session_header *h, xf_err *err);
/* A `#` line (text must start with '#'). One that would read as the end
 * line, or before the first command as a header line, is written with a
 * second blank after the '#' so that it stays a comment. */
int session_writer_comment(xf_session_writer *w, const char *text, xf_err *err);
/* One command and its output (text as printed, lines split at '\n'; a
 * last line without '\n' counts). skip: NULL (compare every line), or a
 * flag per output line; skip_all marks every line `~`. Flushed to disk
 * before it returns. */
int session_writer_entry(xf_session_writer *w, const char *cmd, const char *output, size_t len,
                         const bool *skip, int n_skip, bool skip_all, xf_err *err);
int session_writer_count(const xf_session_writer *w); /* entries written */
const char *session_writer_path(const xf_session_writer *w); /* PATH (not .tmp) */
/* Writes the end line, syncs and renames PATH.tmp to PATH, syncs the
 * directory, releases the lock; frees w. On an error PATH.tmp is removed
 * and PATH is what it was. */
int session_writer_close(xf_session_writer *w, xf_err *err);
/* Gives the recording up: removes PATH.tmp and the lock; frees w. */
void session_writer_abandon(xf_session_writer *w);

/* Splits output into lines as printed (not escaped: what a parsed
 * session's lines hold, the escape undone), a NUL byte as U+FFFD. Returns
 * the count; *lines is malloc'd, each line malloc'd; -1 when out of memory. */
int session_split_output(const char *output, size_t len, char ***lines);
void session_lines_free(char **lines, int n);
/* Escapes a line for a session file (the escape above); malloc'd,
 * NUL-terminated; NULL when out of memory. */
char *session_escape(const char *s, size_t len);
/* Undoes session_escape; malloc'd, NUL-terminated, *out_len (may be NULL)
 * its length; NULL when out of memory. */
char *session_unescape(const char *s, size_t len, size_t *out_len);

#endif
