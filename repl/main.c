/* main: the command line, the modes (interactive, --batch, --script,
 * --replay) and the readline shell with completion from the command table. */
#include <errno.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "args.h"
#include "cmdline.h"
#include "commands.h"
#include "complete.h"
#include "program.h"
#include "record.h"
#include "repl.h"
#include "sessions.h"

#ifndef XF_SOURCE_DIR
#define XF_SOURCE_DIR "."
#endif


/* The one process-wide pointer: a signal handler has no other way in. */
static xf_repl *g_sig_repl;
/* While the prompt waits for a line, Ctrl-C belongs to the line (it drops
 * it, as in bash and gdb); while a command runs, to the command (it stops
 * at the next op boundary). */
static volatile sig_atomic_t g_at_prompt, g_prompt_sigint, g_winch;

static void on_sigint(int sig)
{
    (void)sig;
    if (g_at_prompt)
        g_prompt_sigint = 1;
    else if (g_sig_repl)
        g_sig_repl->interrupt = g_sig_repl->io.ctrl_c_echoed = 1;
}

static void on_sigwinch(int sig)
{
    (void)sig;
    g_winch = 1;
}

static void usage(FILE *f)
{
    /* 80 columns, as everything xfdb prints */
    fprintf(f, "usage: xfdb [MODEL.gguf] [-x CMD]... [--batch] [--script FILE.lua [ARGS]]\n"
               "         [--record FILE.xfs]\n"
               "         [--replay FILE.xfs [--tolerance X] [--update] [--allow-writes]\n"
               "          [--report]]\n"
               "         [--backend cpu|cuda] [--threads N] [--ctx N] [--lua-timeout S]\n"
               "         [--unsafe-lua]\n"
               "With no MODEL, loads models/tiny-shakespeare-gpt2-f16.gguf.\n"
               "--batch runs the -x commands (or standard input, one a line), no prompt.\n"
               "--threads N: CPU threads (default: the cores xfdb may run on).\n"
               "--ctx N uses at most N positions (a KV cache smaller than the model's).\n"
               "--replay refuses a session whose commands write files (dump, record)\n"
               "unless --allow-writes; --report goes on past a divergence and prints the\n"
               "largest difference that matched. --tolerance, --update, --allow-writes,\n"
               "--report need --replay. A session replays on --backend cpu or cuda,\n"
               "whichever recorded it.\n"
               "Exit status: 0 success, 1 a command failed or a replay diverged,\n"
               "2 bad usage. Type `help` inside for the commands.\n");
}

static char *default_model(void)
{
    const char *env = getenv("XFDB_MODEL");
    if (env && *env)
        return strdup(env);
    const char *rel = "models/tiny-shakespeare-gpt2-f16.gguf";
    if (access(rel, R_OK) == 0)
        return strdup(rel);
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s/%s", XF_SOURCE_DIR, rel);
    return strdup(buf);
}

/* --- completion (complete.c) through readline -------------------------------- */

static xf_repl *g_comp_repl; /* readline's completion callbacks take no user pointer */
static char **g_cands;        /* the candidates of the completion in progress */
static bool g_files;          /* file names follow them (record stop | record FILE) */

static char *gen_cands(const char *text, int state)
{
    static int i, f;
    if (!state)
        i = f = 0;
    if (g_cands && g_cands[i])
        return strdup(g_cands[i++]); /* complete_line already matched text */
    return g_files ? rl_filename_completion_function(text, f++) : NULL;
}

static char **complete(const char *text, int start, int end)
{
    (void)end;
    bool files = false;
    complete_free(g_cands);
    g_cands = complete_line(g_comp_repl, rl_line_buffer, (size_t)start, text, &files);
    rl_attempted_completion_over = !files || g_cands;
    if (files && !g_cands)
        return NULL; /* readline's own file names */
    g_files = files;
    rl_filename_completion_desired = files; /* a directory gets its '/' */
    char **m = rl_completion_matches(text, gen_cands);
    complete_free(g_cands);
    g_cands = NULL;
    g_files = false;
    return m;
}

/* ~/.xfdb_history, where readline may read and write it: a regular file
 * (not a symlink, which readline would follow and replace the target of)
 * or none yet. A FIFO would block the start forever (readline opens it
 * without O_NONBLOCK), a device or directory is no history; and without a
 * HOME there is no history rather than one in the current directory
 * (someone else's checkout). false: no history this session (said once). */
static bool history_path(char *buf, size_t size)
{
    const char *home = getenv("HOME");
    if (!home || home[0] != '/')
        return false;
    int n = snprintf(buf, size, "%s/.xfdb_history", home);
    if (n < 0 || (size_t)n >= size)
        return false;
    struct stat st;
    if (lstat(buf, &st) != 0)
        return errno == ENOENT;
    if (S_ISREG(st.st_mode))
        return true;
    fprintf(stderr, "xfdb: %s is %s: command history is not kept\n", buf,
            S_ISLNK(st.st_mode) ? "a symbolic link" : "not a regular file");
    return false;
}

/* Enter on an empty line repeats the line typed last when its command
 * says CMD_REPEATS (step, next, continue, token) and it ran: the repeat
 * belongs to that command only, so any other line typed (run, generate,
 * load, print ...) ends it, as does Ctrl-C at the prompt. Only what the
 * user typed counts: commands run by Lua or a script do not change it. */
static void remember_repeat(char **repeat, const char *line, int rc)
{
    repl_line l;
    char why[256];
    bool repeats = false;
    if (repl_line_parse(line, strlen(line), &l, why, sizeof why) == 0) {
        repeats = rc == 0 && l.cmd && (l.cmd->flags & CMD_REPEATS);
        repl_line_free(&l);
    }
    free(*repeat);
    *repeat = repeats ? strdup(line) : NULL;
}

/* readline's callback interface: the loop below owns the wait for input,
 * so that Ctrl-C can drop the line being typed and show a new prompt
 * (plain readline() would keep the line, and Enter would run it). */
static char *g_line;
static bool g_line_done;

static void on_line(char *line)
{
    g_line = line;
    g_line_done = true;
    rl_callback_handler_remove(); /* the command runs outside readline's terminal mode */
}

/* Ctrl-C at the prompt: "^C", a new line, an empty line under a new prompt. */
static void drop_line(void)
{
    rl_free_line_state();
    rl_callback_sigcleanup();
    fputs("^C\n", rl_outstream ? rl_outstream : stdout);
    rl_replace_line("", 0);
    rl_point = rl_end = rl_mark = 0;
    using_history(); /* Up starts again from the newest entry */
    rl_on_new_line();
    rl_redisplay();
}

/* One line typed at the prompt (malloc'd), NULL at end of input. *dropped:
 * a Ctrl-C dropped at least one line while waiting. */
static char *read_line(const char *prompt, bool *dropped)
{
    g_line = NULL;
    g_line_done = false;
    *dropped = false;
    int fd = fileno(rl_instream ? rl_instream : stdin);
    /* SIGINT and SIGWINCH arrive only inside pselect: one that came while
     * readline handled a key would otherwise wait for the next key */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGWINCH);
    sigprocmask(SIG_BLOCK, &block, &old);
    g_at_prompt = 1;
    if (g_sig_repl)
        g_sig_repl->io.ctrl_c_echoed = 0; /* the prompt starts on a line of its own */
    rl_callback_handler_install(prompt, on_line);
    while (!g_line_done) {
        fd_set in;
        FD_ZERO(&in);
        FD_SET(fd, &in);
        int n = pselect(fd + 1, &in, NULL, NULL, NULL, &old);
        if (g_prompt_sigint) {
            g_prompt_sigint = 0;
            *dropped = true;
            drop_line();
        }
        if (g_winch) {
            g_winch = 0;
            rl_resize_terminal();
        }
        if (n < 0 && errno != EINTR) {
            rl_callback_handler_remove();
            break;
        }
        if (n > 0)
            rl_callback_read_char();
    }
    g_at_prompt = 0;
    sigprocmask(SIG_SETMASK, &old, NULL);
    return g_line;
}

static int interactive(xf_repl *r)
{
    char hist[PATH_MAX];
    bool keep_history = history_path(hist, sizeof hist);
    using_history();
    if (keep_history)
        read_history(hist);
    rl_readline_name = "xfdb";
    rl_attempted_completion_function = complete;
    rl_completer_word_break_characters = COMPLETE_WORD_BREAKS;
    /* SIGINT and SIGWINCH are ours (read_line): readline's handlers would
     * keep the typed line on Ctrl-C */
    rl_catch_signals = 0;
    rl_catch_sigwinch = 0;
    struct sigaction sa = {0};
    sa.sa_handler = on_sigwinch;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGWINCH, &sa, NULL);
    g_comp_repl = r;
    int status = 0;
    char *repeat = NULL; /* the line Enter repeats, any length */
    while (!r->quit) {
        char prompt[128];
        repl_prompt(r, prompt, sizeof prompt);
        bool dropped;
        char *line = read_line(prompt, &dropped);
        r->interrupt = 0;
        if (dropped) { /* the line Enter would repeat is not the one on the screen any more */
            free(repeat);
            repeat = NULL;
        }
        if (!line) {
            fputc('\n', stdout);
            break;
        }
        const char *run = line;
        while (*run == ' ')
            run++;
        bool typed = *run != 0;
        if (!typed && repeat)
            run = repeat;
        else if (typed)
            add_history(line);
        if (*run) {
            char *cmd = strdup(run);
            if (cmd) {
                int rc = session_record_line(r, cmd);
                if (r->rec)
                    status |= rc;
                if (typed)
                    remember_repeat(&repeat, cmd, rc);
            }
            free(cmd);
        }
        free(line);
    }
    free(repeat);
    if (keep_history && history_path(hist, sizeof hist)) { /* what is there now */
        write_history(hist);
        history_truncate_file(hist, 1000);
    }
    return status;
}

/* --batch: standard input, one command a line (a CRLF file too). 0 ok, 1 a command failed. */
static int run_stdin(xf_repl *r)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int status = 0;
    while (!r->quit && (len = getline(&line, &cap, stdin)) >= 0) {
        if (len && line[len - 1] == '\n')
            line[--len] = '\0';
        if (len && line[len - 1] == '\r')
            line[--len] = '\0';
        /* a NUL inside the line: getline read it, the string would hide it */
        if ((size_t)len != strlen(line)) {
            repl_errf(r, "a command line cannot hold a NUL byte");
            status = 1;
            break;
        }
        if (session_record_line(r, line) != 0) {
            status = 1;
            break;
        }
    }
    free(line);
    return status;
}

typedef struct main_args {
    const char *model, *script, *record, *replay;
    const char **cmds;
    int n_cmds, script_argc;
    char **script_argv;
    bool batch;
    session_replay_opts replay_opts;
} main_args;

/* 0 go on, 1 --help was shown, 2 bad usage (said) */
static int parse_args(xf_repl *r, int argc, char **argv, main_args *m)
{
    m->replay_opts.tol = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (strcmp(a, "-x") == 0 && has)
            m->cmds[m->n_cmds++] = argv[++i];
        else if (strcmp(a, "--batch") == 0)
            m->batch = true;
        else if (strcmp(a, "--script") == 0 && has) {
            m->script = argv[++i];
            m->script_argc = argc - i - 1;
            m->script_argv = argv + i + 1;
            break;
        } else if (strcmp(a, "--record") == 0 && has)
            m->record = argv[++i];
        else if (strcmp(a, "--replay") == 0 && has)
            m->replay = argv[++i];
        else if (strcmp(a, "--update") == 0)
            m->replay_opts.update = true;
        else if (strcmp(a, "--allow-writes") == 0)
            m->replay_opts.allow_writes = true;
        else if (strcmp(a, "--report") == 0)
            m->replay_opts.report = true;
        else if (strcmp(a, "--tolerance") == 0 && has) {
            double tol; /* finite, as the session header's and `record --tolerance` (not '' or inf) */
            if (!args_double(argv[++i], &tol) || tol < 0) {
                fprintf(stderr, "xfdb: --tolerance: '%s' is not a number >= 0\n", argv[i]);
                return 2;
            }
            m->replay_opts.tol = tol;
        } else if (strcmp(a, "--backend") == 0 && has) {
            const char *b = argv[++i];
            if (strcmp(b, "cpu") == 0)
                r->backend = KERN_BACKEND_CPU;
            else if (strcmp(b, "cuda") == 0)
                r->backend = KERN_BACKEND_CUDA;
            else {
                fprintf(stderr, "xfdb: --backend: '%s' is not cpu or cuda\n", b);
                return 2;
            }
            r->backend_forced = true;
        } else if (strcmp(a, "--threads") == 0 && has) {
            char *end;
            long t = strtol(argv[++i], &end, 10);
            if (*end || t < 1 || t > 256) {
                fprintf(stderr, "xfdb: --threads: '%s' is not a count in 1..256\n", argv[i]);
                return 2;
            }
            r->n_threads = (int)t;
        } else if (strcmp(a, "--ctx") == 0 && has) {
            char *end;
            long c = strtol(argv[++i], &end, 10);
            if (*end || c < 1 || c > (1L << 20)) {
                fprintf(stderr, "xfdb: --ctx: '%s' is not a number of positions in 1..1048576\n", argv[i]);
                return 2;
            }
            r->ctx_limit = (int)c;
        } else if (strcmp(a, "--lua-timeout") == 0 && has) {
            char *end;
            r->lua_timeout = strtod(argv[++i], &end);
            if (*end || !(r->lua_timeout > 0)) {
                fprintf(stderr, "xfdb: --lua-timeout: '%s' is not a number of seconds > 0\n", argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--unsafe-lua") == 0)
            r->unsafe_lua = true;
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        } else if (a[0] == '-' || m->model) {
            fprintf(stderr, "xfdb: unknown or misplaced argument '%s'\n", a);
            usage(stderr);
            return 2;
        } else
            m->model = a;
    }
    /* options of --replay mean nothing without it: say so rather than ignore them */
    const char *orphan = m->replay_opts.tol >= 0 ? "--tolerance"
                         : m->replay_opts.update ? "--update"
                         : m->replay_opts.allow_writes ? "--allow-writes"
                         : m->replay_opts.report ? "--report" : NULL;
    if (orphan && !m->replay) {
        fprintf(stderr, "xfdb: %s applies to --replay FILE.xfs, and there is none\n", orphan);
        return 2;
    }
    return 0;
}

/* Loads the model and runs the mode: script, -x commands, standard input or
 * the terminal. The exit status. */
static int run_modes(xf_repl *r, const main_args *m)
{
    char *def = m->model ? NULL : default_model();
    /* scripts read stdout: the startup load speaks only in interactive use */
    r->io.quiet = r->batch;
    int lrc = repl_load(r, m->model ? m->model : def);
    r->io.quiet = false;
    free(def);
    if (lrc != 0)
        return 1;
    if (m->record && session_record_start(r, m->record) != 0)
        return 1;
    int status = 0;
    if (m->script)
        status = repl_run_script(r, m->script, m->script_argc, m->script_argv) ? 1 : 0;
    else if (m->n_cmds > 0) {
        for (int i = 0; i < m->n_cmds && !r->quit; i++)
            if (session_record_line(r, m->cmds[i]) != 0) {
                status = 1;
                break;
            }
    } else if (r->batch)
        status = run_stdin(r);
    else {
        r->interactive = true;
        status = interactive(r);
    }
    if (r->rec && session_record_stop(r) != 0)
        status = 1; /* the recording could not be written */
    return status;
}

/* Frees the session with SIGINT blocked and the handler's pointer cleared
 * first: a Ctrl-C while xfdb exits must not reach a freed REPL. */
static void teardown(xf_repl *r)
{
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, NULL);
    g_sig_repl = NULL;
    repl_free(r);
}

/* Output that could not be written (a full disk, a closed pipe) is a
 * failure, never a silent success. */
static int check_stdout(int status, int first_errno)
{
    errno = 0;
    if (fflush(stdout) != 0 || ferror(stdout) || first_errno) {
        /* the errno of the first failed write (the session noted it): what
         * ran since may have changed errno */
        int e = first_errno ? first_errno : errno ? errno : EIO;
        fprintf(stderr, "xfdb: writing standard output failed: %s\n", strerror(e));
        return status ? status : 1;
    }
    return status;
}

int main(int argc, char **argv)
{
    xf_repl *r = repl_new();
    main_args m = {0};
    m.cmds = calloc((size_t)argc + 1, sizeof *m.cmds);
    if (!r || !m.cmds) {
        fprintf(stderr, "xfdb: out of memory\n");
        repl_free(r);
        free(m.cmds);
        return 2;
    }
    int prc = parse_args(r, argc, argv, &m);
    if (prc != 0) {
        repl_free(r);
        free(m.cmds);
        return prc == 1 ? check_stdout(0, 0) : 2;
    }
    if (!m.batch && (!m.script && !m.replay) && m.n_cmds > 0)
        m.batch = true; /* -x without a terminal session still runs non-interactively */
    r->batch = m.batch || m.script || m.replay || !isatty(0);
    const char *nc = getenv("NO_COLOR"), *term = getenv("TERM");
    r->io.color = isatty(2) && !(nc && *nc) && !(term && strcmp(term, "dumb") == 0);

    g_sig_repl = r;
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    /* a closed pipe is a write error (EPIPE), which repl_write turns into a
     * clean quit: killed by SIGPIPE, a recording would be lost (only its
     * .tmp left) */
    struct sigaction ign = {0};
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, NULL);

    int status = m.replay ? session_replay_main(r, m.replay, &m.replay_opts) : run_modes(r, &m);
    int out_errno = r->io.out_errno;
    teardown(r);
    free(m.cmds);
    return check_stdout(status, out_errno);
}
