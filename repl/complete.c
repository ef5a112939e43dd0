/* complete: what the word under the cursor of a command line completes to,
 * from the command table (names and aliases, a command's sub-words and
 * --flags from its synopsis) and the loaded model (activation names,
 * weights, op kinds, the variants of one op kind). main.c hands the result
 * to readline; tests call it directly. */
#include <stdio.h>
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

/* whether w is one of the blank-separated words */
static bool is_word(const char *words, const char *w)
{
    size_t n = strlen(w);
    for (const char *s = words; s && *s; s += strspn(s, " ")) {
        size_t k = strcspn(s, " ");
        if (k == n && strncmp(s, w, n) == 0)
            return true;
        s += k;
    }
    return false;
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

/* name is one of the model's activations, or an alias of one */
static bool is_activation(const xf_repl *r, const char *name)
{
    char **names, canon[XF_NAME_MAX];
    int n;
    if (!r->model || r->model->vocab_only || program_names(r->model, &names, &n, NULL) != 0)
        return false;
    program_resolve_alias(name, canon, sizeof canon);
    bool found = false;
    for (int i = 0; i < n && !found; i++)
        found = strcmp(names[i], name) == 0 || strcmp(names[i], canon) == 0;
    program_names_free(names, n);
    return found;
}

/* NAME@<TAB>: the sources a name reads from (view.c): the reference when
 * one is loaded, the cpu shadow, each kept pass */
static void add_suffixes(cands *c, const xf_repl *r, bool bare)
{
    const char *at = strchr(c->text, '@');
    size_t base = (size_t)(at - c->text);
    /* a bare @ref or @cpu: diff's B, "A's" (no @pass-K there) */
    if (base == 0 && bare) {
        if (r->ex && exec_ref(r->ex))
            add_str(c, "@ref");
        add_str(c, "@cpu");
        return;
    }
    if (base == 0 || memchr(c->text, '[', base) || base >= 512)
        return;
    char s[512];
    /* only after an activation's name (or an alias): a weight or a typo has no sources */
    memcpy(s, c->text, base);
    s[base] = '\0';
    if (!is_activation(r, s))
        return;
    const char *fixed[] = {"@ref", "@cpu"};
    for (int i = 0; i < 2; i++) {
        if (i == 0 && (!r->ex || !exec_ref(r->ex)))
            continue;
        snprintf(s, sizeof s, "%.*s%s", (int)base, c->text, fixed[i]);
        add_str(c, s);
    }
    for (int k = 1; r->ex && k <= exec_kept_count(r->ex); k++) {
        snprintf(s, sizeof s, "%.*s@pass-%d", (int)base, c->text, k);
        add_str(c, s);
    }
}

/* `ablate <TAB>`: blk.L.head and blk.L.ffn of each layer; then a head */
static void add_ablate(cands *c, const xf_repl *r, const repl_line *l)
{
    if (!r->model || r->model->vocab_only)
        return;
    char s[64];
    for (int L = 0; l->argc == 1 && L < r->model->n_layer; L++) {
        snprintf(s, sizeof s, "blk.%d.head", L);
        add_str(c, s);
        snprintf(s, sizeof s, "blk.%d.ffn", L);
        add_str(c, s);
    }
    size_t n = l->argc == 2 ? strlen(l->argv[1]) : 0;
    for (int h = 0; n > 5 && strcmp(l->argv[1] + n - 5, ".head") == 0 && h < r->model->n_head; h++) {
        snprintf(s, sizeof s, "%d", h);
        add_str(c, s);
    }
}

/* the argument shapes that take a file after other words (commands.h) */
static void add_names_then_file(cands *c, const xf_repl *r, const xf_command *cmd, const repl_line *l,
                                bool *files)
{
    int word = l->argc;
    switch (cmd->complete) {
    case COMPLETE_WORD_OR_FILE: /* record stop | record FILE (the words came first) */
        *files = word == 1;
        break;
    case COMPLETE_NAME_FROM_FILE: /* patch NAME from FILE */
        if (word == 1)
            add_names(c, r, true, false);
        else if (word == 2)
            add_str(c, "from");
        else if (word == 3)
            *files = true;
        break;
    case COMPLETE_NAMES_FILE: /* dump NAMES|all FILE */
        if (word == 1)
            add_names(c, r, true, false); /* and `all` */
        else {
            if (!is_word(cmd->words, l->argv[1])) /* `all` stands alone: a file after it */
                add_names(c, r, true, false);
            *files = true;
        }
        break;
    default:
        break;
    }
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
    /* set NAME = VALUE: the `=` after the name, a tensor (or a number) after it */
    if (strcmp(cmd->name, "set") == 0 && word == 2) {
        add_str(c, "=");
        return;
    }
    if (strchr(c->text, '@') && cmd->complete == COMPLETE_TENSOR) {
        add_suffixes(c, r, strcmp(cmd->name, "diff") == 0 && word == 2);
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
    case COMPLETE_ABLATE:
        add_ablate(c, r, l);
        break;
    default:
        add_names_then_file(c, r, cmd, l, files);
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
