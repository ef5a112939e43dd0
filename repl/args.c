/* args: argument parsing every handler shares (numbers, TEXT, id lists,
 * joined words) and the vocabulary checks. Nothing here has a size limit
 * but memory: a line of any length parses. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "print.h"
#include "repl.h"
#include "tokenizer.h"

bool args_long(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (*end || errno || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

bool args_double(const char *s, double *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno || !isfinite(v))
        return false;
    *out = v;
    return true;
}

/* TEXT arguments: "quoted with C escapes" or the rest of the line as typed */
int args_text(xf_repl *r, const char *rest, char **out, size_t *len)
{
    while (*rest == ' ' || *rest == '\t')
        rest++;
    size_t n = strlen(rest);
    while (n && (rest[n - 1] == ' ' || rest[n - 1] == '\t' || rest[n - 1] == '\n' || rest[n - 1] == '\r'))
        n--;
    xf_err err = {0};
    if (n >= 2 && rest[0] == '"' && rest[n - 1] == '"') {
        char *inner = strndup(rest + 1, n - 2);
        if (!inner)
            return repl_errf(r, "out of memory");
        int rc = tok_unescape(inner, out, len, &err);
        free(inner);
        if (rc != 0)
            return repl_errf(r, "text: %s", err.msg);
        return 0;
    }
    if (n && rest[0] == '"')
        return repl_errf(r, "text: missing closing quote");
    *out = strndup(rest, n);
    *len = n;
    return *out ? 0 : repl_errf(r, "out of memory");
}

int args_ids(xf_repl *r, const char *s, int32_t **ids, int *n)
{
    int cap = 16, k = 0;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    if (!v)
        return repl_errf(r, "out of memory");
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p)
            break;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX || (*end && *end != ',' && *end != ' ')) {
            free(v);
            return repl_errf(r, "--tokens: '%s' is not a list of token ids (e.g. 1,2,3)", s);
        }
        if (k == cap) {
            cap *= 2;
            int32_t *nv = realloc(v, (size_t)cap * sizeof *nv);
            if (!nv) {
                free(v);
                return repl_errf(r, "out of memory");
            }
            v = nv;
        }
        v[k++] = (int32_t)x;
        p = end;
    }
    if (k == 0) {
        free(v);
        return repl_errf(r, "--tokens: no ids given");
    }
    *ids = v;
    *n = k;
    return 0;
}

int args_need_vocab(xf_repl *r)
{
    if (!r->model)
        return repl_errf(r, "no model loaded (use `load PATH`)");
    if (!r->model->tok)
        return repl_errf(r, "%s has no vocabulary", r->model->path);
    return 0;
}

void args_piece(xf_repl *r, int32_t id, char *buf, size_t size)
{
    size_t len;
    const char *p = r->model->tok ? tok_piece(r->model->tok, id, &len) : NULL;
    if (!p)
        snprintf(buf, size, "?");
    else
        tok_escape(p, len, buf, size);
}

char *args_join(int argc, char **argv, bool trailing_blank)
{
    size_t n = 1;
    for (int i = 0; i < argc; i++)
        n += strlen(argv[i]) + 1;
    char *s = malloc(n), *p = s;
    if (!s)
        return NULL;
    for (int i = 0; i < argc; i++) {
        size_t l = strlen(argv[i]);
        memcpy(p, argv[i], l);
        p += l;
        if (trailing_blank || i + 1 < argc)
            *p++ = ' ';
    }
    *p = '\0';
    return s;
}

/* K for topk/lens: a count in 1..hi, or a word that is no number; a number
 * out of range is an error, never a tensor name */
int args_count(xf_repl *r, const char *cmd, const char *s, long hi, long *k, bool *is_count)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    *is_count = *s && !*end;
    if (!*is_count)
        return 0;
    if (errno || v < 1 || v > hi)
        return repl_errf(r, "%s: K must be 1..%ld (got %s)", cmd, hi, s);
    *k = v;
    return 0;
}

char *args_path(char *word)
{
    size_t n = strlen(word);
    if (n < 2 || word[0] != '"' || word[n - 1] != '"')
        return word;
    /* the splitter kept the quotes (and found them balanced): drop them and
     * the backslashes that escape a quote or a backslash */
    size_t o = 0;
    for (size_t i = 1; i + 1 < n; i++) {
        if (word[i] == '\\' && i + 2 < n && (word[i + 1] == '"' || word[i + 1] == '\\'))
            i++;
        word[o++] = word[i];
    }
    word[o] = '\0';
    return word;
}

char *args_quote_path(const char *path)
{
    if (!strpbrk(path, " \t\"\\") && path[0])
        return strdup(path);
    size_t n = strlen(path);
    char *q = n < SIZE_MAX / 2 - 3 ? malloc(2 * n + 3) : NULL;
    if (!q)
        return NULL;
    size_t o = 0;
    q[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        if (path[i] == '"' || path[i] == '\\')
            q[o++] = '\\';
        q[o++] = path[i];
    }
    q[o++] = '"';
    q[o] = '\0';
    return q;
}
