/* sessions: the replay of recorded sessions. --replay loads the model
 * the header names (refusing another one by its sha256, and a file whose
 * commands write files unless --allow-writes), applies the backend and
 * kernel choices, runs every command quietly and compares its output with
 * the recording; --update writes the new output instead. */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cmdline.h"
#include "commands.h"
#include "exec.h"
#include "print.h"
#include "record.h"
#include "repl.h"
#include "session.h"
#include "sessions.h"
#include "sha256.h"

/* --- replaying ------------------------------------------------------------------- */

/* the command of a recorded line, or NULL (a line that does not parse) */
static const xf_command *command_of(const char *line)
{
    repl_line l;
    char why[256];
    if (repl_line_parse(line, strlen(line), &l, why, sizeof why) != 0)
        return NULL;
    const xf_command *c = l.cmd;
    repl_line_free(&l);
    return c;
}

static bool command_varies(const char *line)
{
    const xf_command *c = command_of(line);
    return c && (c->flags & CMD_OUTPUT_VARIES);
}

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

/* A line or piece of output as the session file writes it (session_escape):
 * ef's own escape turns control bytes into \xNN but leaves a backslash, so
 * the text "\x1b" and the byte ESC would read the same in a report (an
 * attack, session 26); the file's escape tells them apart. */
typedef struct esc_text {
    char *own;
    const char *s;
} esc_text;

static esc_text esc_of(const char *s)
{
    esc_text e = {session_escape(s, strlen(s)), s};
    if (e.own)
        e.s = e.own;
    return e;
}

static void report_line_diff(FILE *ef, const xf_line_diff *d, double rel, double abs)
{
    esc_text ee = esc_of(d->tok_expected), eg = esc_of(d->tok_got);
    const char *te = ee.s, *tg = eg.s;
    if (d->kind == SESSION_DIFF_NUMBER) {
        if (d->exact)
            fprintf(ef, "  number %d (column %zu): expected %s, got %s: integers must be equal\n", d->number_no,
                    d->col_got + 1, te, tg);
        else
            fprintf(ef,
                    "  number %d (column %zu): expected %s, got %s: differs by %.3g (abs), %.3g (rel); tolerance "
                    "rel %g abs %g\n",
                    d->number_no, d->col_got + 1, te, tg, d->abs_diff, d->rel_diff, rel, abs);
    } else
        fprintf(ef, "  text differs at column %zu: expected '%s', got '%s'\n", d->col_got + 1,
                te[0] ? te : "(end of line)", tg[0] ? tg : "(end of line)");
    free(ee.own);
    free(eg.own);
}

/* the largest difference that matched (--report) */
typedef struct replay_worst {
    double ratio, rel, expected, got;
    int line_no;
} replay_worst;

static replay_worst *g_worst; /* set while --report replays */

static void worst_note(const xf_line_diff *d, int line_no)
{
    if (g_worst && d->worst_ratio > g_worst->ratio) {
        g_worst->ratio = d->worst_ratio;
        g_worst->rel = d->worst_rel;
        g_worst->expected = d->worst_expected;
        g_worst->got = d->worst_got;
        g_worst->line_no = line_no;
    }
}

/* A session recorded on one backend replayed on another: the replay's
 * backend name in the output reads as the recorded one ("cuda:opt" as
 * "cpu:opt"), padding kept where a blank follows, so that only numbers
 * can differ. */
static void backend_words(char **lines, int n, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to);
    for (int i = 0; i < n; i++) {
        char *l = lines[i];
        xf_strbuf b = {0};
        bool changed = false;
        for (size_t j = 0; l[j];) {
            bool word = strncmp(l + j, from, fl) == 0 && (j == 0 || !(isalnum((unsigned char)l[j - 1]) || l[j - 1] == '_')) &&
                        !(isalnum((unsigned char)l[j + fl]) || l[j + fl] == '_');
            if (!word) {
                sb_append(&b, l + j, 1);
                j++;
                continue;
            }
            changed = true;
            sb_append(&b, to, tl);
            j += fl;
            /* a table's column after it stays where it was (two blanks or more: padding) */
            if (tl < fl && l[j] == ' ' && l[j + 1] == ' ')
                for (size_t p = tl; p < fl; p++)
                    sb_append(&b, " ", 1);
            else if (tl > fl)
                for (size_t p = fl; p < tl && l[j] == ' ' && l[j + 1] == ' '; p++)
                    j++;
        }
        if (changed && b.s) {
            free(lines[i]);
            lines[i] = b.s;
        } else
            sb_free(&b);
    }
}

/* Across backends (g_cross), a bar drawn from a number (compare's
 * err/tol bars: a word of '#', '.' and '|' with a '#' or a '|') is not
 * compared: the number beside it is, within the tolerance, and a number
 * that moved by one ulp may move a bar by one cell. A copy of line with
 * each such word as "<bar>" (malloc'd), or NULL when it has none. */
static bool g_cross;

static char *bars_out(const char *line)
{
    xf_strbuf b = {0};
    bool any = false;
    for (size_t i = 0; line[i];) {
        size_t e = i;
        bool mark = false;
        while (line[e] == '#' || line[e] == '.' || line[e] == '|') {
            mark |= line[e] != '.';
            e++;
        }
        if (e - i >= 6 && mark && (i == 0 || line[i - 1] == ' ') && (!line[e] || line[e] == ' ')) {
            sb_append(&b, "<bar>", 5);
            any = true;
            i = e;
        } else {
            size_t n = e > i ? e - i : 1;
            sb_append(&b, line + i, n);
            i += n;
        }
    }
    if (!any)
        sb_free(&b);
    return any ? b.s : NULL;
}

static bool line_match(const char *expected, const char *got, double rel, double abs, xf_line_diff *d)
{
    char *e = g_cross ? bars_out(expected) : NULL, *g = g_cross ? bars_out(got) : NULL;
    bool ok = session_line_match(e ? e : expected, g ? g : got, rel, abs, d);
    free(e);
    free(g);
    return ok;
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
    for (int j = 0; j < n && bad < 0; j++) {
        if (!e->out[j].skip && !line_match(e->out[j].text, got[j], rel, abs, &d))
            bad = j;
        else if (!e->out[j].skip)
            worst_note(&d, e->out[j].line_no);
    }
    if (bad < 0 && e->n_out == n_got)
        return true;
    if (!ef)
        return false;
    int j = bad >= 0 ? bad : n;
    int file_line = j < e->n_out ? e->out[j].line_no : (e->n_out ? e->out[e->n_out - 1].line_no : e->line_no);
    fprintf(ef, "%s:%d: replay diverged at command %d of %d (line %d): %s\n", s->path, file_line, k + 1,
            s->n_entries, e->line_no, e->cmd);
    fprintf(ef, "  output line %d of the command (file line %d):\n", j + 1, file_line);
    esc_text ex = esc_of(j < e->n_out ? e->out[j].text : ""), gt = esc_of(j < n_got ? got[j] : "");
    if (bad >= 0) {
        fprintf(ef, "    expected: %s\n    got:      %s\n", ex.s, gt.s);
        report_line_diff(ef, &d, rel, abs);
    } else if (j < e->n_out) {
        fprintf(
            ef,
            "    expected: %s\n    got:      nothing (the command printed %d line%s, the session has %d)\n",
            ex.s, n_got, n_got == 1 ? "" : "s", e->n_out);
    } else {
        fprintf(
            ef,
            "    expected: nothing (the session has %d line%s, the command printed %d)\n    got:      %s\n",
            e->n_out, e->n_out == 1 ? "" : "s", n_got, gt.s);
    }
    free(ex.own);
    free(gt.own);
    return false;
}

/* --update: the same file with the new output (tmp + rename). */
static int write_update(xf_repl *r, const xf_session *s, char ***got, const int *n_got, double rel, FILE *ef)
{
    xf_err err = {0};
    /* the backend that ran; a session that loaded a vocabulary-only file has no stepper at the end */
    const char *backend = r->ex ? kern_backend_name(exec_backend(r->ex)) : s->backend;
    xf_session_header h = {
        .model_name = s->model_name,
        .model_path = s->model_path,
        .model_sha256 = s->model_sha256,
        .backend = backend,
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
        all_skip |= command_varies(e->cmd);
        /* the output as the command printed it (raw bytes, split at '\n'):
         * joined back, the writer escapes it line by line */
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

/* A killed recording leaves only PATH.tmp: say so rather than "not found".
 * The session, or NULL with *status (1 incomplete, 2 malformed). */
static xf_session *replay_open(const char *path, FILE *ef, int *status)
{
    xf_err err = {0};
    *status = 1;
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.tmp", path) < 0) {
        fprintf(ef, "xfdb: replay: out of memory\n");
        return NULL;
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
        return NULL;
    xf_session *s = session_load(path, &err);
    if (!s) {
        fprintf(ef, "xfdb: replay: %s\n", err.msg);
        *status = 2;
        return NULL;
    }
    if (session_check_complete(s, &err) != 0) {
        fprintf(ef, "xfdb: replay: %s\n", err.msg);
        session_free(s);
        return NULL;
    }
    return s;
}

/* An untrusted session must not overwrite files: every command that writes
 * one (CMD_WRITES_FILES) is refused, before anything runs, unless
 * --allow-writes. 0 ok, 1 refused (said). */
static int replay_check_writes(const xf_session *s, bool allow, FILE *ef)
{
    if (allow)
        return 0;
    for (int k = 0; k < s->n_entries; k++) {
        const xf_command *c = command_of(s->entries[k].cmd);
        if (c && (c->flags & CMD_WRITES_FILES)) {
            fprintf(ef,
                    "xfdb: replay: %s:%d: refusing to replay `%s`: %s writes files (replay --allow-writes "
                    "runs such commands)\n",
                    s->path, s->entries[k].line_no, s->entries[k].cmd, c->name);
            return 1;
        }
    }
    return 0;
}

/* The model, backend and kernels of the header. 0 ok, else the exit status (said). */
static int replay_setup(xf_repl *r, const xf_session *s, FILE *ef)
{
    xf_err err = {0};
    char *model = find_model(s, ef);
    if (!model)
        return 1;
    if (!r->backend_forced) {
        if (strcmp(s->backend, "cpu") == 0)
            r->backend = KERN_BACKEND_CPU;
        else if (strcmp(s->backend, "cuda") == 0)
            r->backend = KERN_BACKEND_CUDA;
        else {
            fprintf(ef, "xfdb: replay: %s: backend '%s' is not cpu or cuda\n", s->path, s->backend);
            free(model);
            return 2;
        }
        r->backend_forced = true;
    }
    r->io.quiet = true;
    int lrc = repl_load(r, model);
    free(model);
    if (lrc != 0)
        return 1;
    for (int i = 0; r->ex && i < s->n_kernels; i++) {
        int op = kern_op_from_name(s->kernels[i].op);
        if (op < 0 || exec_kernel_select(r->ex, op, s->kernels[i].variant, &err) != 0) {
            fprintf(ef, "xfdb: replay: %s: kernels: %s\n", s->path,
                    op < 0 ? "unknown op kind" : err.msg);
            if (op < 0)
                fprintf(ef, "  ('%s' is not an op kind of this xfdb)\n", s->kernels[i].op);
            return 1;
        }
    }
    return 0;
}

/* One recorded line, parsed once: what replay_check_writes looked at is
 * what runs (a writer that slipped past it is refused here too). A line
 * that does not parse prints its error, which is output to compare. */
static void replay_line(xf_repl *r, const char *line, bool allow_writes)
{
    repl_line l;
    char why[512];
    if (repl_line_parse(line, strlen(line), &l, why, sizeof why) != 0) {
        repl_errf(r, "%s", why);
        return;
    }
    if (l.cmd && (l.cmd->flags & CMD_WRITES_FILES) && !allow_writes)
        repl_errf(r, "%s: writes files; replay runs it only with --allow-writes", l.cmd->name);
    else
        repl_exec_parsed(r, &l);
    repl_line_free(&l);
}

typedef struct replay_run {
    char ***got; /* [n_entries] output lines of each command */
    int *n_got;
    int ran, changed;
} replay_run;

/* Runs every command quietly (errors are output to compare, not to show)
 * and compares, or counts the changes for --update. 0 ok, 1 diverged or failed. */
static int replay_commands(xf_repl *r, const xf_session *s, double rel, double abs, const session_replay_opts *o,
                           replay_run *rr, FILE *ef)
{
    void *outer_rec = record_replay_begin(r);
    FILE *saved_errf = r->io.errf;
    r->io.errf = NULL;
    xf_strbuf *outer = r->io.capture;
    int status = 0;
    bool update = o->update, allow_writes = o->allow_writes;
    int diverged = 0;
    for (int k = 0; k < s->n_entries && (status == 0 || (o->report && diverged)); k++) {
        xf_strbuf buf = {0};
        r->io.capture = &buf;
        replay_line(r, s->entries[k].cmd, allow_writes);
        r->io.capture = outer;
        rr->n_got[k] = session_split_output(buf.s ? buf.s : "", buf.len, &rr->got[k]);
        const char *ran_on = r->ex ? kern_backend_name(exec_backend(r->ex)) : s->backend;
        g_cross = strcmp(ran_on, s->backend) != 0;
        if (rr->n_got[k] > 0 && g_cross)
            backend_words(rr->got[k], rr->n_got[k], ran_on, s->backend);
        sb_free(&buf);
        rr->ran++;
        if (rr->n_got[k] < 0) {
            rr->n_got[k] = 0;
            fprintf(ef, "xfdb: replay: out of memory\n");
            status = 1;
            break;
        }
        if (update) {
            if (!compare_entry(s, k, rr->got[k], rr->n_got[k], rel, abs, NULL))
                rr->changed++;
        } else if (!compare_entry(s, k, rr->got[k], rr->n_got[k], rel, abs, ef)) {
            if (!diverged)
                fprintf(ef, "  (xfdb --replay %s --update records the new output)\n", s->path);
            status = 1;
            diverged++;
        }
        if (r->quit && k + 1 < s->n_entries) {
            fprintf(ef, "%s:%d: replay: `%s` ended the session before its last command\n", s->path,
                    s->entries[k].line_no, s->entries[k].cmd);
            status = 1;
        }
    }
    g_cross = false;
    r->io.errf = saved_errf;
    record_replay_end(r, outer_rec);
    r->io.quiet = false;
    return status;
}

static int replay_main(xf_repl *r, const char *path, const session_replay_opts *o, FILE *ef);

/* The report quotes the session (its commands, output lines, model name and
 * paths: untrusted text) in many places: all of it goes through one
 * escaping stream, so no control byte of the file reaches the terminal. */
int session_replay_main(xf_repl *r, const char *path, const session_replay_opts *o)
{
    FILE *raw = r->io.errf ? r->io.errf : stderr, *ef = pr_escaping_stream(raw);
    if (!ef) { /* out of memory: no report that could quote the file unescaped */
        fprintf(raw, "xfdb: replay: out of memory\n");
        return 1;
    }
    int status = replay_main(r, path, o, ef);
    fclose(ef);
    return status;
}

static int replay_main(xf_repl *r, const char *path, const session_replay_opts *o, FILE *ef)
{
    int status;
    xf_session *s = replay_open(path, ef, &status);
    if (!s)
        return status;
    status = replay_check_writes(s, o->allow_writes, ef);
    if (status == 0)
        status = replay_setup(r, s, ef);
    if (status != 0) {
        session_free(s);
        return status;
    }
    double rel = o->tol >= 0 ? o->tol : s->tol_rel, abs = s->tol_abs;
    replay_run rr = {
        .got = calloc((size_t)(s->n_entries ? s->n_entries : 1), sizeof *rr.got),
        .n_got = calloc((size_t)(s->n_entries ? s->n_entries : 1), sizeof *rr.n_got),
    };
    replay_worst worst = {0};
    g_worst = o->report ? &worst : NULL;
    status = rr.got && rr.n_got ? replay_commands(r, s, rel, abs, o, &rr, ef) : 1;
    g_worst = NULL;
    if (status == 0 && o->update) {
        status = write_update(r, s, rr.got, rr.n_got, rel, ef);
        if (status == 0)
            fprintf(r->io.out ? r->io.out : stdout, "%s: updated: %d commands, %d with new output\n", path, rr.ran,
                    rr.changed);
    } else if (status == 0)
        fprintf(r->io.out ? r->io.out : stdout, "%s: %d commands replayed, output matches (tolerance rel %g abs %g)\n",
                path, rr.ran, rel, abs);
    if (o->report) {
        FILE *out = r->io.out ? r->io.out : stdout;
        if (worst.line_no == 0)
            fprintf(out, "%s: report: every number that matched is equal\n", path);
        else
            fprintf(out,
                    "%s: report: the largest difference that matched, line %d:\n  expected %.9g, got %.9g: rel "
                    "%.3g, %.3g of the tolerance (rel %g abs %g)\n",
                    path, worst.line_no, worst.expected, worst.got, worst.rel, worst.ratio, rel, abs);
    }
    for (int k = 0; rr.got && k < s->n_entries; k++)
        session_lines_free(rr.got[k], rr.n_got[k]);
    free(rr.got);
    free(rr.n_got);
    session_free(s);
    return status;
}
