/* record: the `record` command and the recording it keeps in r->rec.
 * `record FILE.xfs` / --record start it (engine/session.c writes the file:
 * PATH.tmp, synced per command, renamed with an end line at `record stop`
 * or exit); sessions.c runs each line with its output captured and hands
 * both here (record_entry).
 *
 * Replay starts from a freshly loaded model. A recording started
 * mid-session (a pass, breakpoints, check mode, a reference) first records
 * a preamble: the commands that rebuild that state (ref load, check,
 * graph, run --tokens / finish / token for the context and the pass in
 * flight, step to where it stands, break), run in the live session too on
 * a fresh stepper, so that the session and its replay are the same from
 * the first command on (pass numbers included). Output that
 * varies from run to run (CMD_OUTPUT_VARIES: the timings of `profile`) is
 * recorded as `~` lines, which replay does not compare. Paths in commands
 * are replayed as written: sessions under sessions/ use paths relative to
 * the source root, where ctest runs them. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "args.h"
#include "cmdline.h"
#include "commands.h"
#include "print.h"
#include "record.h"
#include "repl.h"
#include "session.h"
#include "sha256.h"

typedef struct rec_state {
    xf_session_writer *w; /* the recording; NULL while replaying */
    bool replaying;       /* `record` is refused inside a replay */
} rec_state;

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* --- recording ------------------------------------------------------------------ */

static int record_start(xf_repl *r, const char *path, double rel, double abs)
{
    rec_state *st = r->rec;
    if (st && st->replaying)
        return repl_errf(r, "record: not while replaying a session");
    if (st && st->w)
        return repl_errf(r, "record: already recording to %s (`record stop` first)", session_writer_path(st->w));
    if (!r->model || !r->model_path)
        return repl_errf(r, "record: load a model first");
    xf_err err = {0};
    char sha[65];
    if (sha256_file_hex(r->model_path, sha, &err) != 0)
        return repl_errf(r, "record: model: %s", err.msg);
    xf_session_kernel ks[KERN_OP_COUNT];
    int nk = 0;
    if (r->ex)
        for (int op = 0; op < KERN_OP_COUNT; op++) {
            const kern_variant *v = exec_kernel_selected(r->ex, (kern_op)op);
            if (v) {
                ks[nk].op = (char *)kern_op_name((kern_op)op);
                ks[nk].variant = (char *)v->name;
                nk++;
            }
        }
    xf_session_header h = {
        .model_name = base_name(r->model_path),
        .model_path = r->model_path,
        .model_sha256 = sha,
        .backend = kern_backend_name(r->ex ? exec_backend(r->ex) : r->backend),
        .kernels = ks,
        .n_kernels = nk,
        .tol_rel = rel,
        .tol_abs = abs,
    };
    xf_session_writer *w = session_writer_open(path, &h, &err);
    if (!w)
        return repl_errf(r, "record: %s", err.msg);
    st = calloc(1, sizeof *st);
    if (!st) {
        session_writer_abandon(w);
        return repl_errf(r, "out of memory");
    }
    st->w = w;
    r->rec = st;
    return 0;
}

typedef struct preamble {
    char **lines;
    int n, cap;
    bool oom;
} preamble;

static void pre_add(preamble *p, char *line)
{
    if (!line || p->oom) {
        p->oom = true;
        free(line);
        return;
    }
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 8;
        char **v = realloc(p->lines, (size_t)cap * sizeof *v);
        if (!v) {
            p->oom = true;
            free(line);
            return;
        }
        p->lines = v;
        p->cap = cap;
    }
    p->lines[p->n++] = line;
}

static void pre_free(preamble *p)
{
    for (int i = 0; i < p->n; i++)
        free(p->lines[i]);
    free(p->lines);
}

/* "PREFIX 1,2,3" for ids[0..n) */
static char *ids_line(const char *prefix, const int32_t *ids, int n)
{
    xf_strbuf b = {0};
    sb_printf(&b, "%s ", prefix);
    for (int i = 0; i < n; i++)
        sb_printf(&b, i ? ",%d" : "%d", (int)ids[i]);
    return b.s;
}

/* A line the session parser takes back as one command: no line breaks,
 * no NUL (a pattern or condition typed at the prompt has none). */
static bool one_line(const char *s) { return !strpbrk(s, "\r\n"); }

static void pre_step(preamble *p, int n)
{
    char *l = NULL;
    if (n > 0)
        pre_add(p, asprintf(&l, "step %d", n) < 0 ? NULL : l);
}

/* To pc, with the writes into the pass made where they were (issue 18):
 * `set`, `ablate` and `patch` are commands; what Lua wrote (xf.on, a table
 * of values) is not, and is said. Also what `keep` keeps. */
static void preamble_writes(xf_repl *r, preamble *p, int pc)
{
    int n, done = 0;
    const char *const *iv = exec_interventions(r->ex, &n);
    for (int i = 0; i < n; i++) {
        bool cmd = (!strncmp(iv[i], "set ", 4) || !strncmp(iv[i], "ablate ", 7) || !strncmp(iv[i], "patch ", 6)) &&
                   one_line(iv[i]) && !strstr(iv[i], "@pass-"); /* a fresh stepper has no kept passes */
        if (!cmd) {
            char esc[256];
            pr_escape(esc, sizeof esc, iv[i], strlen(iv[i]));
            repl_out(r, "note: the write `%s` is not recorded (made from Lua, or it reads a kept pass)\n", esc);
            continue;
        }
        int at = exec_intervention_pc(r->ex, i);
        pre_step(p, at - done);
        done = at > done ? at : done;
        pre_add(p, strdup(iv[i]));
    }
    pre_step(p, pc - done);
    if (exec_context_written(r->ex))
        repl_out(r, "note: what earlier passes wrote into the KV cache is not rebuilt\n");
    char *const *pat;
    int passes;
    size_t cap;
    int np = exec_keep_config(r->ex, &pat, &passes, &cap);
    if (np > 0) {
        xf_strbuf b = {0};
        sb_printf(&b, "keep");
        for (int i = 0; i < np; i++)
            sb_printf(&b, " %s", pat[i]);
        sb_printf(&b, " --passes %d --mem %zu", passes, cap);
        pre_add(p, b.s);
    }
}

/* The commands that rebuild the state of r->ex on a fresh stepper. What
 * they cannot rebuild is said (Lua functions, a paused generation, a chat). */
static void build_preamble(xf_repl *r, preamble *p)
{
    xf_where w;
    exec_where(r->ex, &w);
    const refdump *ref = exec_ref(r->ex);
    if (ref) {
        char *l = NULL, *q = args_quote_path(refdump_path(ref));
        if (!q || asprintf(&l, "ref load %s", q) < 0)
            l = NULL;
        free(q);
        pre_add(p, l);
    }
    if (exec_check_get(r->ex) != XF_CHECK_OFF)
        pre_add(p, strdup(exec_check_get(r->ex) == XF_CHECK_BREAK ? "check break" : "check on"));
    if (exec_backend(r->ex) == KERN_BACKEND_CUDA && exec_graph_mode(r->ex) != XF_GRAPH_ON)
        pre_add(p, strdup(exec_graph_mode(r->ex) == XF_GRAPH_OFF        ? "graph off"
                          : exec_graph_mode(r->ex) == XF_GRAPH_UNFUSED ? "graph unfused"
                                                                       : "graph mega"));
    if (w.active) {
        int nh, nt;
        const int32_t *hist = exec_history(r->ex, &nh);
        const int32_t *tk = exec_tokens(r->ex, &nt);
        if (w.pos0 > 0) {
            pre_add(p, ids_line("run --tokens", hist, w.pos0));
            pre_add(p, strdup("finish"));
            pre_add(p, ids_line("token", tk, nt));
        } else
            pre_add(p, ids_line("run --tokens", tk, nt));
        preamble_writes(r, p, w.pc);
    }
    int nb;
    const xf_break *b = exec_breaks(r->ex, &nb);
    for (int i = 0; i < nb; i++) {
        char esc[256];
        pr_escape(esc, sizeof esc, b[i].pattern, strlen(b[i].pattern));
        if ((b[i].fn && !b[i].cond_text) || !one_line(b[i].pattern) ||
            (b[i].cond_text && !one_line(b[i].cond_text))) {
            repl_out(r, "note: breakpoint %d (%s) is a Lua function: not recorded\n", b[i].id, esc);
            continue;
        }
        char *l = NULL;
        int rc = b[i].cond_text ? asprintf(&l, "break %s if %s", b[i].pattern, b[i].cond_text)
                                : asprintf(&l, "break %s", b[i].pattern);
        pre_add(p, rc < 0 ? NULL : l);
    }
    if (r->gen)
        repl_out(r, "note: the paused generation is not recorded (generate again)\n");
    if (r->chatting)
        repl_out(r, "note: the next `chat` starts a new conversation (the context is kept)\n");
}

/* Started mid-session: rebuild the state from a fresh stepper with
 * commands that are recorded, so that replay rebuilds it too. 0 ok, 1 failed. */
static int record_preamble(xf_repl *r)
{
    if (!r->ex)
        return 0;
    xf_where w;
    exec_where(r->ex, &w);
    int nb;
    exec_breaks(r->ex, &nb);
    bool state = w.pass_no > 0 || nb > 0 || exec_check_get(r->ex) != XF_CHECK_OFF || exec_ref(r->ex) ||
                 exec_graph_mode(r->ex) != XF_GRAPH_ON;
    if (!state)
        return 0;
    preamble p = {0};
    build_preamble(r, &p);
    if (p.oom) {
        pre_free(&p);
        return repl_errf(r, "record: out of memory");
    }
    if (repl_fresh_stepper(r) != 0) {
        pre_free(&p);
        return 1;
    }
    repl_out(r, "recording from a fresh stepper: %d command%s rebuild the state\n", p.n, p.n == 1 ? "" : "s");
    repl_out(r, "(passes count from 1 again; breakpoints are renumbered)\n");
    /* their output is recorded, not shown: what the user sees next is the state as it was */
    bool q = r->io.quiet;
    r->io.quiet = true;
    int rc = 0;
    for (int i = 0; i < p.n && rc == 0 && record_active(r); i++)
        rc = session_record_line(r, p.lines[i]);
    r->io.quiet = q;
    if (rc != 0)
        repl_errf(r, "record: rebuilding the state failed; the recording goes on from here");
    pre_free(&p);
    return rc;
}

int session_record_start(xf_repl *r, const char *path)
{
    return record_start(r, path, SESSION_DEFAULT_REL, SESSION_DEFAULT_ABS) ? 1 : 0;
}

static void record_drop(xf_repl *r, bool abandon)
{
    rec_state *st = r->rec;
    if (!st)
        return;
    if (abandon && st->w)
        session_writer_abandon(st->w);
    free(st);
    r->rec = NULL;
}

/* The file at path, as (device, inode); false if there is none. */
static bool file_id(const char *path, struct stat *st)
{
    return path && stat(path, st) == 0;
}

int session_record_stop(xf_repl *r)
{
    rec_state *st = r->rec;
    if (!st || !st->w)
        return 0;
    char *path = strdup(session_writer_path(st->w));
    int n = session_writer_count(st->w);
    xf_err err = {0};
    /* a failed close removes PATH.tmp (engine/session_write.c), unless
     * only the directory sync after the rename failed: then the recording
     * is PATH, a new inode there */
    struct stat before, after;
    bool had = file_id(path, &before);
    int rc = session_writer_close(st->w, &err);
    st->w = NULL;
    record_drop(r, false);
    char esc[512];
    pr_escape(esc, sizeof esc, path ? path : "?", path ? strlen(path) : 1);
    if (rc != 0) {
        bool renamed =
            file_id(path, &after) && (!had || after.st_dev != before.st_dev || after.st_ino != before.st_ino);
        if (renamed)
            repl_errf(r, "record: %s", err.msg); /* it says "written, but ..." */
        else
            repl_errf(r, "record: %s; the recording is discarded (%s.tmp removed, %s as it was)", err.msg, esc, esc);
    } else if (r->interactive)
        repl_out(r, "recorded %d command%s to %s\n", n, n == 1 ? "" : "s", esc);
    free(path);
    return rc != 0;
}

bool record_active(const xf_repl *r)
{
    const rec_state *st = r->rec;
    return st && st->w;
}

/* A write error stops the recording and discards it: abandoning the
 * writer removes PATH.tmp (engine/session_write.c), so that no partial file
 * is left for a replay to take for a crashed recording; PATH is untouched. */
static int record_failed(xf_repl *r, const xf_err *err)
{
    rec_state *st = r->rec;
    const char *path = session_writer_path(st->w);
    char esc[512];
    pr_escape(esc, sizeof esc, path, strlen(path));
    repl_errf(r, "record: %s; recording stopped and discarded (%s.tmp removed, %s as it was)", err->msg, esc,
              esc);
    record_drop(r, true);
    return 1;
}

int record_comment(xf_repl *r, const char *text)
{
    rec_state *st = r->rec;
    xf_err err = {0};
    if (!st || !st->w)
        return 0;
    return session_writer_comment(st->w, text, &err) != 0 ? record_failed(r, &err) : 0;
}

int record_entry(xf_repl *r, const char *cmd, const char *out, size_t len, bool varies)
{
    rec_state *st = r->rec;
    xf_err err = {0};
    if (!st || !st->w)
        return 0;
    return session_writer_entry(st->w, cmd, out, len, NULL, 0, varies, &err) != 0 ? record_failed(r, &err) : 0;
}

/* The guard a replay puts in r->rec: `record` sees it and refuses. It has
 * no writer, so nothing ever frees it. */
static rec_state k_replaying = {.replaying = true};

void *record_replay_begin(xf_repl *r)
{
    void *outer = r->rec;
    r->rec = &k_replaying;
    return outer;
}

void record_replay_end(xf_repl *r, void *outer) { r->rec = outer; }

static bool parse_tol(const char *s, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(d) || d < 0)
        return false;
    *out = d;
    return true;
}

int cmd_record(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    rec_state *st = r->rec;
    if (argc == 1) {
        if (st && st->w)
            repl_out(r, "recording to %s (%d command%s so far)\n", session_writer_path(st->w),
                     session_writer_count(st->w), session_writer_count(st->w) == 1 ? "" : "s");
        else
            repl_out(r, "not recording\n");
        return 0;
    }
    if (strcmp(argv[1], "stop") == 0) {
        if (argc != 2)
            return repl_errf(r, "usage: record stop");
        if (!st || !st->w)
            return repl_errf(r, "record: not recording");
        char *path = strdup(session_writer_path(st->w));
        int n = session_writer_count(st->w);
        bool was_interactive = r->interactive;
        r->interactive = false; /* the message below is this command's */
        int rc = session_record_stop(r);
        r->interactive = was_interactive;
        char esc[512];
        pr_escape(esc, sizeof esc, path ? path : "?", path ? strlen(path) : 1);
        if (rc == 0)
            repl_out(r, "recorded %d command%s to %s\n", n, n == 1 ? "" : "s", esc);
        free(path);
        return rc;
    }
    double rel = SESSION_DEFAULT_REL, abs = SESSION_DEFAULT_ABS;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tolerance") == 0 && i + 1 < argc) {
            if (!parse_tol(argv[++i], &rel))
                return repl_errf(r, "record: --tolerance: '%s' is not a number >= 0", argv[i]);
        } else if (strcmp(argv[i], "--abs") == 0 && i + 1 < argc) {
            if (!parse_tol(argv[++i], &abs))
                return repl_errf(r, "record: --abs: '%s' is not a number >= 0", argv[i]);
        } else if (!path && argv[i][0] != '-')
            path = args_path(argv[i]);
        else
            return repl_errf(r, "usage: record FILE.xfs [--tolerance REL] [--abs ABS] | record stop");
    }
    if (!path)
        return repl_errf(r, "usage: record FILE.xfs [--tolerance REL] [--abs ABS] | record stop");
    if (record_start(r, path, rel, abs))
        return 1;
    char esc[512];
    pr_escape(esc, sizeof esc, path, strlen(path));
    repl_out(r, "recording to %s (until `record stop` or the end of the session)\n", esc);
    record_preamble(r);
    return 0;
}

/* --- recording a line ------------------------------------------------------------- */

int session_record_line(xf_repl *r, const char *line)
{
    if (!record_active(r))
        return repl_exec_line(r, line);
    /* the line as it will replay: no blanks around it */
    while (*line == ' ' || *line == '\t')
        line++;
    size_t n = strlen(line);
    while (n && (line[n - 1] == ' ' || line[n - 1] == '\t'))
        n--;
    char *cmd = strndup(line, n);
    if (!cmd)
        return repl_errf(r, "out of memory");
    repl_line l;
    char why[512];
    int rc = 0;
    int prc = repl_line_parse(cmd, n, &l, why, sizeof why);
    if (prc != 0 && strpbrk(cmd, "\r\n")) {
        /* not one line: a session cannot hold it, and it does not run */
        rc = repl_errf(r, "%s", why);
    } else if (prc == 0 && !l.cmd) {
        /* blank, or a comment: comments document the session */
        rc = *cmd == '#' ? record_comment(r, cmd) : 0;
    } else if (l.cmd && (l.cmd->flags & CMD_NOT_RECORDED)) {
        /* `record stop` ends the file and `quit` the session: neither is a step of it */
        rc = repl_exec_parsed(r, &l);
    } else {
        xf_strbuf *outer = r->io.capture;
        xf_strbuf buf = {0};
        r->io.capture = &buf;
        /* a line that does not parse is recorded with its error, which replay
         * compares like any output */
        rc = l.cmd ? repl_exec_parsed(r, &l) : repl_errf(r, "%s", why);
        r->io.capture = outer;
        if (outer && buf.len)
            sb_append(outer, buf.s, buf.len);
        /* the command may have ended the recording itself (Lua running `record stop`) */
        if (record_entry(r, cmd, buf.s ? buf.s : "", buf.len, l.cmd && (l.cmd->flags & CMD_OUTPUT_VARIES)))
            rc = 1; /* the recording failed (said): so does the line, for the exit status */
        sb_free(&buf);
    }
    repl_line_free(&l);
    free(cmd);
    return rc;
}
