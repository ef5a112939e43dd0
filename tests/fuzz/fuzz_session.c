/* fuzz_session: libFuzzer harness for the session (.xfs) parser and the
 * output-line comparison. session_parse over the input; on failure the
 * error is one line "fuzz.xfs: line L at byte B: ..."; on success every
 * entry and output line is walked, every output line matches itself, and
 * the line splitter and the escaper run over the raw input: escaped text
 * holds no control byte but tab and escaping it again changes nothing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"

#define NAME "fuzz.xfs"

static volatile size_t g_sink;

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "fuzz_session: invariant broken: %s: \"%s\"\n", what, msg ? msg : "(null)");
    abort();
}

static void check_escaped(const char *raw, size_t len)
{
    char *e = session_escape(raw, len);
    if (!e)
        return;
    for (const char *c = e; *c; c++)
        if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f)
            die("session_escape left a control byte", e);
    /* the escape is a round trip (the .xfs stores bytes escaped and gives them
     * back); NUL is the one byte it cannot keep (lines are C strings) */
    if (!memchr(raw, 0, len)) {
        size_t n2;
        char *back = session_unescape(e, strlen(e), &n2);
        if (back && (n2 != len || memcmp(back, raw, len) != 0))
            die("session_unescape(session_escape(x)) != x", e);
        free(back);
    }
    free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    xf_err err = {{0}};
    xf_session *s = session_parse(NAME, text, size, &err);
    if (!s) {
        if (!err.msg[0] || strchr(err.msg, '\n') ||
            strncmp(err.msg, NAME ": line ", strlen(NAME ": line ")) != 0 || !strstr(err.msg, " at byte "))
            die("malformed parse error", err.msg);
    } else {
        if (session_check_complete(s, &err) != 0) {
            if (s->complete || strncmp(err.msg, NAME ": line ", strlen(NAME ": line ")) != 0)
                die("session_check_complete disagrees with complete", err.msg);
        } else if (!s->complete)
            die("session_check_complete accepts an incomplete session", "");
        for (int i = 0; i < s->n_entries; i++) {
            const xf_session_entry *e = &s->entries[i];
            if (!e->cmd || e->offset >= size || e->line_no < 1 || e->line_no > s->n_lines)
                die("entry out of the file", e->cmd);
            g_sink += strlen(e->cmd);
            for (int k = 0; k < e->n_out; k++) {
                const char *l = e->out[k].text;
                xf_line_diff d;
                if (!session_line_match(l, l, s->tol_rel, s->tol_abs, &d))
                    die("an output line does not match itself", l);
                if (k > 0)
                    g_sink += session_line_match(e->out[k - 1].text, l, 1e-5, 1e-7, &d);
            }
            for (int k = 0; k < e->n_comments; k++)
                g_sink += strlen(e->comments[k]);
        }
        session_free(s);
    }
    char **lines = NULL;
    int n = session_split_output(text, size, &lines);
    for (int i = 0; i < n; i++)
        g_sink += strlen(lines[i]);
    session_lines_free(lines, n);
    check_escaped(text, size < 4096 ? size : 4096);
    return 0;
}
