/* cmdline: the one line splitter (repl_line_parse) and repl_exec_line,
 * which is parse + repl_exec_parsed (the dispatch of a parsed line: the
 * command's preconditions, then its handler from the table). Word rules: words are separated by
 * blanks (space, tab); a "double-quoted" string is part of its word with
 * its quotes kept (TEXT arguments unescape them later) and a backslash in it
 * escapes the next byte; brackets keep blanks, so that
 * `print blk.2.ffn_act[3, :5]` is one word. A line whose first non-blank is
 * '#' is a comment. Nothing has a size limit but memory. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmdline.h"
#include "exec.h"
#include "commands.h"
#include "print.h"
#include "repl.h"

static bool is_blank(char c) { return c == ' ' || c == '\t'; }

/* The end of the word that starts at p (not a blank); *open_quote when the
 * line ends inside quotes. */
static const char *word_end(const char *p, const char *end, bool *open_quote)
{
    int depth = 0;
    bool q = false;
    while (p < end && (q || depth > 0 || !is_blank(*p))) {
        if (q && *p == '\\' && p + 1 < end)
            p++;
        else if (*p == '"')
            q = !q;
        else if (!q && *p == '[')
            depth++;
        else if (!q && *p == ']' && depth > 0)
            depth--;
        p++;
    }
    *open_quote = q;
    return p;
}

static int fail(repl_line *out, char *why, size_t why_size, const char *msg)
{
    repl_line_free(out);
    snprintf(why, why_size, "%s", msg);
    return -1;
}

int repl_line_parse(const char *line, size_t len, repl_line *out, char *why, size_t why_size)
{
    memset(out, 0, sizeof *out);
    /* one line is one command: a line end or NUL inside it would make the
     * text that was checked (Lua sandbox, replay) differ from what runs */
    for (size_t i = 0; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r' || line[i] == '\0')
            return fail(out, why, why_size,
                        line[i] ? "a command line cannot hold a line break (CR or LF): one command per line"
                                : "a command line cannot hold a NUL byte");
    const char *end = line + len, *p = line;
    while (p < end && is_blank(*p))
        p++;
    if (p == end || *p == '#')
        return 0; /* blank or comment: nothing to run */
    /* count the words first: argv and both copies of the line in one block */
    int n = 0;
    bool open_quote = false; /* judged once the command is known (CMD_RAW_TEXT) */
    for (const char *s = p; s < end;) {
        bool open;
        s = word_end(s, end, &open);
        n++;
        if (open && n == 1)
            return fail(out, why, why_size, "text: missing closing quote");
        open_quote |= open;
        while (s < end && is_blank(*s))
            s++;
    }
    size_t head = ((size_t)n + 1) * sizeof(char *);
    if (len > (SIZE_MAX - head) / 2 - 2)
        return fail(out, why, why_size, "out of memory");
    out->buf = malloc(head + 2 * (len + 1));
    if (!out->buf)
        return fail(out, why, why_size, "out of memory");
    out->argv = (char **)(void *)out->buf;
    char *raw = out->buf + head, *words = raw + len + 1;
    memcpy(raw, line, len);
    raw[len] = '\0';
    memcpy(words, line, len);
    words[len] = '\0';
    for (const char *s = p; s < end;) {
        bool open;
        const char *e = word_end(s, end, &open);
        out->argv[out->argc++] = words + (s - line);
        words[e - line] = '\0';
        if (out->argc == 1)
            out->rest = raw + (e - line);
        s = e;
        while (s < end && is_blank(*s))
            s++;
    }
    out->argv[out->argc] = NULL;
    out->cmd = commands_find(out->argv[0]);
    if (!out->cmd) {
        char esc[128];
        pr_escape(esc, sizeof esc, out->argv[0], strlen(out->argv[0]));
        const char *best = commands_nearest(out->argv[0]);
        if (best)
            snprintf(why, why_size, "unknown command '%s'; did you mean '%s'? (help lists commands)", esc, best);
        else
            snprintf(why, why_size, "unknown command '%s' (help lists commands)", esc);
        repl_line_free(out);
        return -1;
    }
    /* Lua code holds quotes of its own ('"'): only a command whose rest is
     * words or quoted TEXT must balance them */
    if (open_quote && !(out->cmd->flags & CMD_RAW_TEXT))
        return fail(out, why, why_size, "text: missing closing quote");
    return 0;
}

void repl_line_free(repl_line *l)
{
    free(l->buf);
    memset(l, 0, sizeof *l);
}

int repl_exec_line(xf_repl *r, const char *line)
{
    /* what a reader may strip: the line end at the very end ("\n", "\r\n",
     * a stray "\r"), never one inside the line */
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    repl_line l;
    char why[512];
    if (repl_line_parse(line, len, &l, why, sizeof why) != 0)
        return repl_errf(r, "%s", why);
    int rc = repl_exec_parsed(r, &l);
    repl_line_free(&l);
    return rc;
}

int repl_exec_parsed(xf_repl *r, const repl_line *l)
{
    const xf_command *c = l->cmd;
    if (!c)
        return 0;
    /* a command whose synopsis is its bare name takes no word after it: an
     * extra one (`profile extra`) was ignored without a word */
    if (l->argc > 1 && strcmp(c->synopsis, c->name) == 0)
        return repl_errf(r, "%s takes no arguments (usage: %s)", c->name, c->synopsis);
    if ((c->flags & CMD_NEEDS_MODEL) && !r->model)
        return repl_errf(r, "%s: no model loaded (load PATH)", c->name);
    if ((c->flags & CMD_NEEDS_WEIGHTS) && (!r->model || !r->ex))
        return repl_errf(r, "%s: %s has no weights (vocabulary only): load a model", c->name,
                         r->model ? r->model->path : "nothing");
    if ((c->flags & CMD_NEEDS_PASS) && !(r->ex && exec_program(r->ex)->n_ops > 0))
        return repl_errf(r, "%s: no pass yet (start one with `run TEXT` or `run --tokens 1,2,3`)", c->name);
    return c->fn(r, l->argc, l->argv, l->rest) ? 1 : 0;
}
