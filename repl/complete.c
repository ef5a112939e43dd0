/* complete: what the word under the cursor of a command line completes to,
 * from the command table (names and aliases, a command's sub-words and
 * --flags from its synopsis) and the loaded model (activation names,
 * weights, op kinds, the variants of one op kind). main.c hands the result
 * to readline; tests call it directly. */
#include <stdlib.h>
#include <string.h>

#include "cmdline.h"
#include "commands.h"
#include "complete.h"
#include "exec.h"
#include "program.h"
#include "repl.h"

typedef struct cands {
    char **v;
    int n, cap;
    const char *text;
    size_t len;
    bool oom;
} cands;

/* adds s if it starts with the text and is not there yet */
static void add(cands *c, const char *s, size_t n)
{
    if (c->oom || n < c->len || strncmp(s, c->text, c->len) != 0)
        return;
    for (int i = 0; i < c->n; i++)
        if (strlen(c->v[i]) == n && strncmp(c->v[i], s, n) == 0)
            return;
    if (c->n + 1 >= c->cap) {
        int cap = c->cap ? 2 * c->cap : 32;
        char **v = realloc(c->v, (size_t)cap * sizeof *v);
        if (!v) {
            c->oom = true;
            return;
        }
        c->v = v;
        c->cap = cap;
    }
    char *d = strndup(s, n);
    if (!d) {
        c->oom = true;
        return;
    }
    c->v[c->n++] = d;
    c->v[c->n] = NULL;
}

static void add_str(cands *c, const char *s) { add(c, s, strlen(s)); }

/* the blank-separated words of s (a table's alias or sub-word list) */
static void add_words(cands *c, const char *s)
{
    while (s && *s) {
        size_t n = strcspn(s, " ");
        if (n)
            add(c, s, n);
        s += n;
        s += strspn(s, " ");
    }
}

static void add_commands(cands *c)
{
    size_t n;
    const xf_command *t = commands_table(&n);
    for (size_t i = 0; i < n; i++) {
        add_str(c, t[i].name);
        add_words(c, t[i].aliases); /* `gen`, `c`, `tokens` are commands too */
    }
}

/* the options a synopsis spells (--temp, -n), so that help and completion agree */
static void add_flags(cands *c, const char *syn)
{
    for (const char *p = syn; (p = strchr(p, '-')) != NULL;) {
        bool start = p == syn || strchr(" [|", p[-1]);
        size_t n = strspn(p, "-abcdefghijklmnopqrstuvwxyz");
        if (start && n >= 2 && p[1] != ' ')
            add(c, p, n);
        p += n ? n : 1;
    }
}

static void add_names(cands *c, const xf_repl *r, bool activations, bool weights)
{
    if (!r->model || r->model->vocab_only)
        return;
    if (activations) {
        char **names;
        int n;
        if (program_names(r->model, &names, &n, NULL) == 0) {
            for (int i = 0; i < n; i++)
                add_str(c, names[i]);
            program_names_free(names, n);
        }
    }
    for (int i = 0; weights && i < r->model->n_weights; i++)
        add_str(c, r->model->weights[i].name);
}

/* `kernel OP <TAB>`: the variants of that op kind on this backend (all: of any) */
static void add_variants(cands *c, const xf_repl *r, const char *op)
{
    if (!r->ex)
        return;
    int kind = strcmp(op, "all") == 0 ? -1 : kern_op_from_name(op);
    if (kind < 0 && strcmp(op, "all") != 0)
        return;
    const kern_variant *v[256];
    int n = exec_variants(r->ex, v, 256);
    for (int i = 0; i < n && i < 256; i++)
        if (kind < 0 || (int)v[i]->op == kind)
            add_str(c, v[i]->name);
}

static void add_opkinds(cands *c)
{
    for (int i = 0; i < KERN_OP_COUNT; i++)
        add_str(c, kern_op_name((kern_op)i));
    add_str(c, "all");
}

static void add_for_command(cands *c, const xf_repl *r, const xf_command *cmd, const repl_line *l, bool *files)
{
    int word = l->argc; /* the index of the word being completed (0: the command) */
    if (c->len && c->text[0] == '-') {
        add_flags(c, cmd->synopsis);
        return;
    }
    if (word == 1 && cmd->words) {
        add_words(c, cmd->words);
        if (cmd->complete == COMPLETE_NONE)
            return;
    }
    switch (cmd->complete) {
    case COMPLETE_COMMAND:
        add_commands(c);
        break;
    case COMPLETE_TENSOR:
        add_names(c, r, true, true);
        break;
    case COMPLETE_ACTIVATION:
        if (word == 1)
            add_names(c, r, true, false);
        break;
    case COMPLETE_WEIGHT:
        if (word == 1)
            add_names(c, r, false, true);
        break;
    case COMPLETE_OPKIND:
        if (word == 1)
            add_opkinds(c);
        else if (word == 2)
            add_variants(c, r, l->argv[1]);
        break;
    case COMPLETE_FILE:
        /* `ref load FILE`: the sub-word first, then the file */
        *files = !(word == 1 && cmd->words);
        break;
    default:
        break;
    }
}

char **complete_line(xf_repl *r, const char *line, size_t start, const char *text, bool *files)
{
    cands c = {.text = text, .len = strlen(text)};
    *files = false;
    repl_line l;
    char why[256];
    if (repl_line_parse(line, start, &l, why, sizeof why) != 0)
        return NULL;
    if (!l.cmd)
        add_commands(&c);
    else
        add_for_command(&c, r, l.cmd, &l, files);
    repl_line_free(&l);
    if (c.oom) {
        complete_free(c.v);
        return NULL;
    }
    return c.v;
}

void complete_free(char **v)
{
    for (int i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}
