/* record: recorded sessions on the REPL side. `record FILE.xfs` / --record
 * run each command with its output captured and append it to the session
 * (engine/session.c writes the file: PATH.tmp, synced per command, renamed
 * with an end line at `record stop` or exit). --replay loads the model the
 * header names (refusing another one by its sha256), applies the backend
 * and kernel choices, runs every command quietly and compares its output
 * with the recording; --update writes the new output instead.
 *
 * What a recording does not hold: the state before `record` (a pass,
 * breakpoints, check mode, a loaded reference): replay starts from a freshly
 * loaded model, so `record` warns when such state exists. Output that
 * varies from run to run (the timings of `profile`) is recorded as `~`
 * lines, which replay does not compare. Paths in commands are replayed as
 * written: sessions under sessions/ use paths relative to the source root,
 * where ctest runs them. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "repl.h"
#include "session.h"
#include "sha256.h"

typedef struct rec_state {
    xf_session_writer *w; /* the recording; NULL while replaying */
    bool replaying;       /* `record` is refused inside a replay */
} rec_state;

/* Commands whose output varies from run to run: recorded, never compared. */
static bool output_varies(const char *cmd_name)
{
    return strcmp(cmd_name, "profile") == 0 || strcmp(cmd_name, "bench") == 0;
}

/* The table entry of the first word of line, or NULL. */
static const xf_command *first_command(const char *line)
{
    while (*line == ' ' || *line == '\t')
        line++;
    char word[64];
    size_t n = strcspn(line, " \t");
    if (n == 0 || n >= sizeof word)
        return NULL;
    memcpy(word, line, n);
    word[n] = '\0';
    return commands_find(word);
}

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

/* Replay starts from a fresh load: says what a recording started now cannot hold. */
static void note_state(xf_repl *r)
{
    if (!r->ex)
        return;
    xf_where wh;
    exec_where(r->ex, &wh);
    int nb;
    exec_breaks(r->ex, &nb);
    const char *what[4];
    int n = 0;
    if (wh.active)
        what[n++] = "the current pass";
    if (nb > 0)
        what[n++] = "the breakpoints";
    if (exec_check_get(r->ex) != XF_CHECK_OFF)
        what[n++] = "check mode";
    if (exec_ref(r->ex))
        what[n++] = "the loaded reference";
    if (n) {
        repl_out(r, "note: replay starts from a freshly loaded model; ");
        for (int i = 0; i < n; i++)
            repl_out(r, "%s%s", what[i], i + 2 < n ? ", " : i + 1 < n ? " and " : "");
        repl_out(r, " %s not part of this recording\n", n > 1 ? "are" : "is");
    }
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

void session_record_stop(xf_repl *r)
{
    rec_state *st = r->rec;
    if (!st || !st->w)
        return;
    char *path = strdup(session_writer_path(st->w));
    int n = session_writer_count(st->w);
    xf_err err = {0};
    int rc = session_writer_close(st->w, &err);
    st->w = NULL;
    record_drop(r, false);
    if (rc != 0)
        repl_errf(r, "record: %s (the recording is left in %s.tmp, incomplete)", err.msg, path ? path : "?");
    else if (r->interactive)
        repl_out(r, "recorded %d command%s to %s\n", n, n == 1 ? "" : "s", path ? path : "?");
    free(path);
}

int session_record_line(xf_repl *r, const char *line)
{
    rec_state *st = r->rec;
    if (!st || !st->w)
        return repl_exec_line(r, line);
    const char *p = line;
    while (*p == ' ' || *p == '\t')
        p++;
    if (!*p)
        return repl_exec_line(r, line);
    /* the line as it will replay: no line end (a CRLF file) or trailing blanks */
    char *cmd = strdup(p);
    if (!cmd)
        return repl_errf(r, "out of memory");
    size_t n = strlen(cmd);
    while (n && (cmd[n - 1] == ' ' || cmd[n - 1] == '\t' || cmd[n - 1] == '\r' || cmd[n - 1] == '\n'))
        cmd[--n] = '\0';
    xf_err err = {0};
    if (*cmd == '#') {
        /* comments document the session */
        int bad = session_writer_comment(st->w, cmd, &err) != 0;
        free(cmd);
        if (bad) {
            repl_errf(r, "record: %s; recording stopped (%s.tmp is left incomplete)", err.msg,
                      session_writer_path(st->w));
            record_drop(r, true);
            return 1;
        }
        return 0;
    }
    const xf_command *c = first_command(cmd);
    /* `record stop` ends the file and `quit` the session: neither is a step of it */
    if (c && (strcmp(c->name, "record") == 0 || strcmp(c->name, "quit") == 0)) {
        free(cmd);
        return repl_exec_line(r, line);
    }
    xf_strbuf *outer = r->capture;
    xf_strbuf buf = {0};
    r->capture = &buf;
    int rc = repl_exec_line(r, cmd);
    r->capture = outer;
    if (outer && buf.len)
        sb_append(outer, buf.s, buf.len);
    /* the command may have ended the recording itself (Lua running `record stop`) */
    st = r->rec;
    if (st && st->w &&
        session_writer_entry(st->w, cmd, buf.s ? buf.s : "", buf.len, NULL, 0, c && output_varies(c->name), &err) !=
            0) {
        repl_errf(r, "record: %s; recording stopped (%s.tmp is left incomplete)", err.msg,
                  session_writer_path(st->w));
        record_drop(r, true);
    }
    sb_free(&buf);
    free(cmd);
    return rc;
}

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
        session_record_stop(r);
        r->interactive = was_interactive;
        if (!r->rec)
            repl_out(r, "recorded %d command%s to %s\n", n, n == 1 ? "" : "s", path ? path : "?");
        free(path);
        return 0;
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
            path = argv[i];
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
    note_state(r);
    return 0;
}

/* --- replaying ------------------------------------------------------------------- */

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Finds the model of the header: next to the session file, in models/,
 * next to the session's directory in ../models/, then the recorded path.
 * The first file whose sha256 matches wins. Its path (malloc'd), or NULL
 * with the reason printed. */
static char *find_model(const xf_session *s, FILE *ef)
{
    const char *slash = strrchr(s->path, '/');
    int dl = slash ? (int)(slash - s->path) : 1;
    const char *dir = slash ? s->path : ".";
    char *cand[4] = {0};
    int n = 0;
    bool oom = asprintf(&cand[n++], "%.*s/%s", dl, dir, s->model_name) < 0;
    oom |= asprintf(&cand[n++], "models/%s", s->model_name) < 0;
    oom |= asprintf(&cand[n++], "%.*s/../models/%s", dl, dir, s->model_name) < 0;
    if (s->model_path)
        oom |= (cand[n++] = strdup(s->model_path)) == NULL;
    char *found = NULL;
    int seen[4], n_seen = 0;
    char sha[4][65];
    for (int i = 0; i < n && !oom && !found; i++) {
        bool dup = false;
        for (int j = 0; j < i; j++)
            dup |= strcmp(cand[i], cand[j]) == 0;
        if (dup || !is_file(cand[i]))
            continue;
        xf_err err = {0};
        if (sha256_file_hex(cand[i], sha[i], &err) != 0) {
            fprintf(ef, "xfdb: replay: %s\n", err.msg);
            continue;
        }
        if (strcmp(sha[i], s->model_sha256) == 0)
            found = strdup(cand[i]);
        else
            seen[n_seen++] = i;
    }
    if (oom)
        fprintf(ef, "xfdb: replay: out of memory\n");
    else if (!found && n_seen == 0) {
        fprintf(ef, "xfdb: replay: %s: model %s not found (looked for", s->path, s->model_name);
        for (int i = 0; i < n; i++) {
            bool dup = false;
            for (int j = 0; j < i; j++)
                dup |= strcmp(cand[i], cand[j]) == 0;
            if (!dup)
                fprintf(ef, "%s %s", i ? "," : "", cand[i]);
        }
        fprintf(ef, ")\n");
    } else if (!found) {
        fprintf(ef,
                "xfdb: replay: %s: refusing to replay against a different model: the session was recorded with "
                "%s sha256 %s, but",
                s->path, s->model_name, s->model_sha256);
        for (int i = 0; i < n_seen; i++)
            fprintf(ef, "%s %s has sha256 %s", i ? ";" : "", cand[seen[i]], sha[seen[i]]);
        fprintf(ef, "\n");
    }
    for (int i = 0; i < n; i++)
        free(cand[i]);
    return found;
}

static void report_line_diff(FILE *ef, const xf_line_diff *d, double rel, double abs)
{
    if (d->kind == SESSION_DIFF_NUMBER) {
        if (d->exact)
            fprintf(ef, "  number %d (column %zu): expected %s, got %s: integers must be equal\n", d->number_no,
                    d->col_got + 1, d->tok_expected, d->tok_got);
        else
            fprintf(ef,
                    "  number %d (column %zu): expected %s, got %s: differs by %.3g (abs), %.3g (rel); tolerance "
                    "rel %g abs %g\n",
                    d->number_no, d->col_got + 1, d->tok_expected, d->tok_got, d->abs_diff, d->rel_diff, rel, abs);
    } else
        fprintf(ef, "  text differs at column %zu: expected '%s', got '%s'\n", d->col_got + 1,
                d->tok_expected[0] ? d->tok_expected : "(end of line)", d->tok_got[0] ? d->tok_got : "(end of line)");
}

/* Compares one command's output; prints the first difference to ef (NULL:
 * silent). true: matched. */
static bool compare_entry(const xf_session *s, int k, char **got, int n_got, double rel, double abs, FILE *ef)
{
    const xf_session_entry *e = &s->entries[k];
    bool all_skip = e->n_out > 0;
    for (int j = 0; j < e->n_out; j++)
        all_skip &= e->out[j].skip;
    if (all_skip)
        return true; /* output that varies: any number of lines */
    int n = e->n_out < n_got ? e->n_out : n_got;
    int bad = -1;
    xf_line_diff d = {0};
    for (int j = 0; j < n && bad < 0; j++)
        if (!e->out[j].skip && !session_line_match(e->out[j].text, got[j], rel, abs, &d))
            bad = j;
    if (bad < 0 && e->n_out == n_got)
        return true;
    if (!ef)
        return false;
    int j = bad >= 0 ? bad : n;
    int file_line = j < e->n_out ? e->out[j].line_no : (e->n_out ? e->out[e->n_out - 1].line_no : e->line_no);
    fprintf(ef, "%s:%d: replay diverged at command %d of %d (line %d): %s\n", s->path, file_line, k + 1,
            s->n_entries, e->line_no, e->cmd);
    fprintf(ef, "  output line %d of the command (file line %d):\n", j + 1, file_line);
    if (bad >= 0) {
        fprintf(ef, "    expected: %s\n    got:      %s\n", e->out[j].text, got[j]);
        report_line_diff(ef, &d, rel, abs);
    } else if (j < e->n_out) {
        fprintf(ef, "    expected: %s\n    got:      nothing (the command printed %d line%s, the session has %d)\n",
                e->out[j].text, n_got, n_got == 1 ? "" : "s", e->n_out);
    } else {
        fprintf(ef, "    expected: nothing (the session has %d line%s, the command printed %d)\n    got:      %s\n",
                e->n_out, e->n_out == 1 ? "" : "s", n_got, got[j]);
    }
    return false;
}

/* --update: the same file with the new output (tmp + rename). */
static int write_update(xf_repl *r, const xf_session *s, char ***got, const int *n_got, double rel, FILE *ef)
{
    xf_err err = {0};
    const char *backend = kern_backend_name(exec_backend(r->ex));
    xf_session_header h = {
        .model_name = s->model_name,
        .model_path = s->model_path,
        .model_sha256 = s->model_sha256,
        .backend = r->ex ? backend : s->backend,
        .kernels = s->kernels,
        .n_kernels = s->n_kernels,
        .tol_rel = rel,
        .tol_abs = s->tol_abs,
        .comments = s->header_comments,
        .n_comments = s->n_header_comments,
    };
    xf_session_writer *w = session_writer_open(s->path, &h, &err);
    if (!w) {
        fprintf(ef, "xfdb: replay --update: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    for (int k = 0; k < s->n_entries && rc == 0; k++) {
        const xf_session_entry *e = &s->entries[k];
        for (int c = 0; c < e->n_comments && rc == 0; c++)
            rc = session_writer_comment(w, e->comments[c], &err);
        if (rc)
            break;
        /* `~` marks stay where they were; an all-`~` output stays all-`~` */
        bool all_skip = e->n_out > 0;
        bool *skip = calloc((size_t)(e->n_out ? e->n_out : 1), sizeof *skip);
        for (int j = 0; j < e->n_out; j++) {
            all_skip &= e->out[j].skip;
            if (skip)
                skip[j] = e->out[j].skip;
        }
        const xf_command *c = first_command(e->cmd);
        all_skip |= c && output_varies(c->name);
        /* the lines were escaped when split: join them back as they will be written */
        xf_strbuf text = {0};
        for (int j = 0; j < n_got[k]; j++) {
            sb_append(&text, got[k][j], strlen(got[k][j]));
            sb_append(&text, "\n", 1);
        }
        rc = session_writer_entry(w, e->cmd, text.s ? text.s : "", text.len, skip, skip ? e->n_out : 0, all_skip,
                                  &err);
        sb_free(&text);
        free(skip);
    }
    for (int c = 0; c < s->n_tail_comments && rc == 0; c++)
        rc = session_writer_comment(w, s->tail_comments[c], &err);
    if (rc) {
        session_writer_abandon(w);
        fprintf(ef, "xfdb: replay --update: %s\n", err.msg);
        return 1;
    }
    if (session_writer_close(w, &err) != 0) {
        fprintf(ef, "xfdb: replay --update: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int session_replay_main(xf_repl *r, const char *path, double tol, bool update)
{
    FILE *ef = r->errf ? r->errf : stderr;
    xf_err err = {0};
    /* a killed recording leaves only PATH.tmp: say so rather than "not found" */
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp", path) < 0) {
        fprintf(ef, "xfdb: replay: out of memory\n");
        return 1;
    }
    struct stat st_s, st_t;
    bool have_tmp = stat(tmp, &st_t) == 0 && S_ISREG(st_t.st_mode);
    bool have_file = stat(path, &st_s) == 0;
    if (!have_file && have_tmp)
        fprintf(ef,
                "xfdb: replay: %s: incomplete: there is no %s, only %s, a recording that did not end cleanly "
                "(xfdb was killed or crashed while recording); record it again\n",
                path, path, tmp);
    else if (have_tmp && st_t.st_mtime >= st_s.st_mtime)
        fprintf(ef, "xfdb: replay: note: %s is a newer recording that did not end cleanly; replaying %s\n", tmp,
                path);
    free(tmp);
    if (!have_file && have_tmp)
        return 1;
    xf_session *s = session_load(path, &err);
    if (!s) {
        fprintf(ef, "xfdb: replay: %s\n", err.msg);
        return 2;
    }
    if (session_check_complete(s, &err) != 0) {
        fprintf(ef, "xfdb: replay: %s\n", err.msg);
        session_free(s);
        return 1;
    }
    char *model = find_model(s, ef);
    if (!model) {
        session_free(s);
        return 1;
    }
    if (!r->backend_forced) {
        if (strcmp(s->backend, "cpu") == 0)
            r->backend = KERN_BACKEND_CPU;
        else if (strcmp(s->backend, "cuda") == 0)
            r->backend = KERN_BACKEND_CUDA;
        else {
            fprintf(ef, "xfdb: replay: %s: backend '%s' is not cpu or cuda\n", path, s->backend);
            session_free(s);
            return 2;
        }
        r->backend_forced = true;
    }
    r->quiet = true;
    int lrc = repl_load(r, model);
    free(model);
    if (lrc != 0) {
        session_free(s);
        return 1;
    }
    for (int i = 0; r->ex && i < s->n_kernels; i++) {
        int op = kern_op_from_name(s->kernels[i].op);
        if (op < 0 || exec_kernel_select(r->ex, op, s->kernels[i].variant, &err) != 0) {
            fprintf(ef, "xfdb: replay: %s: kernels: %s\n", path,
                    op < 0 ? "unknown op kind" : err.msg);
            if (op < 0)
                fprintf(ef, "  ('%s' is not an op kind of this xfdb)\n", s->kernels[i].op);
            session_free(s);
            return 1;
        }
    }
    double rel = tol >= 0 ? tol : s->tol_rel, abs = s->tol_abs;
    rec_state guard = {.replaying = true};
    void *outer_rec = r->rec;
    r->rec = &guard;
    FILE *saved_errf = r->errf;
    r->errf = NULL; /* errors are output to compare, not to show */
    xf_strbuf *outer = r->capture;
    char ***got = calloc((size_t)(s->n_entries ? s->n_entries : 1), sizeof *got);
    int *n_got = calloc((size_t)(s->n_entries ? s->n_entries : 1), sizeof *n_got);
    int status = got && n_got ? 0 : 1;
    int ran = 0, changed = 0;
    for (int k = 0; k < s->n_entries && status == 0; k++) {
        xf_strbuf buf = {0};
        r->capture = &buf;
        repl_exec_line(r, s->entries[k].cmd);
        r->capture = outer;
        n_got[k] = session_split_output(buf.s ? buf.s : "", buf.len, &got[k]);
        sb_free(&buf);
        ran++;
        if (n_got[k] < 0) {
            n_got[k] = 0;
            fprintf(ef, "xfdb: replay: out of memory\n");
            status = 1;
            break;
        }
        if (update) {
            if (!compare_entry(s, k, got[k], n_got[k], rel, abs, NULL))
                changed++;
        } else if (!compare_entry(s, k, got[k], n_got[k], rel, abs, ef)) {
            fprintf(ef, "  (xfdb --replay %s --update records the new output)\n", path);
            status = 1;
        }
        if (r->quit && k + 1 < s->n_entries) {
            fprintf(ef, "%s:%d: replay: `%s` ended the session before its last command\n", path,
                    s->entries[k].line_no, s->entries[k].cmd);
            status = 1;
        }
    }
    r->errf = saved_errf;
    r->rec = outer_rec;
    r->quiet = false;
    if (status == 0 && update) {
        status = write_update(r, s, got, n_got, rel, ef);
        if (status == 0)
            fprintf(r->out ? r->out : stdout, "%s: updated: %d commands, %d with new output\n", path, ran, changed);
    } else if (status == 0)
        fprintf(r->out ? r->out : stdout, "%s: %d commands replayed, output matches (tolerance rel %g abs %g)\n",
                path, ran, rel, abs);
    for (int k = 0; got && k < s->n_entries; k++)
        session_lines_free(got[k], n_got[k]);
    free(got);
    free(n_got);
    session_free(s);
    return status;
}
