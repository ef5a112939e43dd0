/* main: the command line, the modes (interactive, --batch, --script,
 * --replay) and the readline shell with completion from the command table. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <readline/history.h>
#include <readline/readline.h>

#include "program.h"
#include "repl.h"

#ifndef XF_SOURCE_DIR
#define XF_SOURCE_DIR "."
#endif


/* The one process-wide pointer: a signal handler has no other way in. */
static xf_repl *g_sig_repl;

static void on_sigint(int sig)
{
    (void)sig;
    if (g_sig_repl)
        g_sig_repl->interrupt = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: xfdb [MODEL.gguf] [-x CMD]... [--batch] [--script FILE.lua [ARGS]]\n"
               "            [--record FILE.xfs] [--replay FILE.xfs [--tolerance X] [--update]]\n"
               "            [--backend cpu|cuda] [--threads N] [--ctx N] [--lua-timeout S] [--unsafe-lua]\n"
               "With no MODEL, loads the default model (models/tiny-shakespeare-gpt2-f16.gguf).\n"
               "--batch runs the -x commands (or standard input, one a line) with no prompt.\n"
               "--ctx N uses at most N positions (a smaller KV cache than the model's context length).\n"
               "Exit status: 0 success, 1 a command failed or a replay diverged, 2 bad usage.\n"
               "Type `help` inside for the commands.\n");
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

/* --- completion from the command table and the model's names ---------------- */

static xf_repl *g_comp_repl; /* readline's completion callbacks take no user pointer */
static char **g_names;
static int g_n_names;

static char *gen_commands(const char *text, int state)
{
    static size_t i, len;
    size_t n;
    const xf_command *t = commands_table(&n);
    if (!state) {
        i = 0;
        len = strlen(text);
    }
    while (i < n) {
        const char *name = t[i++].name;
        if (strncmp(name, text, len) == 0)
            return strdup(name);
    }
    return NULL;
}

static char *gen_tensors(const char *text, int state)
{
    static int i, wi;
    static size_t len;
    xf_repl *r = g_comp_repl;
    if (!state) {
        i = 0;
        wi = 0;
        len = strlen(text);
        if (!g_names && r->model && !r->model->vocab_only)
            program_names(r->model, &g_names, &g_n_names, NULL);
    }
    while (i < g_n_names) {
        const char *nm = g_names[i++];
        if (strncmp(nm, text, len) == 0)
            return strdup(nm);
    }
    while (r->model && wi < r->model->n_weights) {
        const char *nm = r->model->weights[wi++].name;
        if (strncmp(nm, text, len) == 0)
            return strdup(nm);
    }
    return NULL;
}

static char *gen_opkinds(const char *text, int state)
{
    static int i;
    static size_t len;
    if (!state) {
        i = 0;
        len = strlen(text);
    }
    while (i <= KERN_OP_COUNT) {
        const char *nm = i == KERN_OP_COUNT ? "all" : kern_op_name((kern_op)i);
        i++;
        if (strncmp(nm, text, len) == 0)
            return strdup(nm);
    }
    return NULL;
}

static char **complete(const char *text, int start, int end)
{
    (void)end;
    rl_attempted_completion_over = 1;
    if (start == 0)
        return rl_completion_matches(text, gen_commands);
    char word[64];
    int i = 0;
    while (i < 63 && rl_line_buffer[i] && rl_line_buffer[i] != ' ') {
        word[i] = rl_line_buffer[i];
        i++;
    }
    word[i] = '\0';
    const xf_command *c = commands_find(word);
    if (!c)
        return NULL;
    switch (c->complete) {
    case COMPLETE_COMMAND: return rl_completion_matches(text, gen_commands);
    case COMPLETE_TENSOR: return rl_completion_matches(text, gen_tensors);
    case COMPLETE_OPKIND: return rl_completion_matches(text, gen_opkinds);
    case COMPLETE_FILE: rl_attempted_completion_over = 0; return NULL;
    default: return NULL;
    }
}

static void history_path(char *buf, size_t size)
{
    const char *home = getenv("HOME");
    snprintf(buf, size, "%s/.xfdb_history", home ? home : ".");
}

static int interactive(xf_repl *r)
{
    char hist[PATH_MAX];
    history_path(hist, sizeof hist);
    using_history();
    read_history(hist);
    rl_readline_name = "xfdb";
    rl_attempted_completion_function = complete;
    g_comp_repl = r;
    int status = 0;
    while (!r->quit) {
        char prompt[128];
        repl_prompt(r, prompt, sizeof prompt);
        r->interrupt = 0;
        char *line = readline(prompt);
        if (!line) {
            fputc('\n', stdout);
            break;
        }
        const char *run = line;
        while (*run == ' ')
            run++;
        if (!*run && r->last_step[0])
            run = r->last_step;
        else if (*run)
            add_history(line);
        if (*run) {
            char *cmd = strdup(run);
            if (session_record_line && r->rec)
                status |= session_record_line(r, cmd);
            else
                repl_exec_line(r, cmd);
            free(cmd);
        }
        free(line);
        if (g_names && r->model == NULL) {
            program_names_free(g_names, g_n_names);
            g_names = NULL;
        }
    }
    write_history(hist);
    history_truncate_file(hist, 1000);
    if (g_names)
        program_names_free(g_names, g_n_names);
    g_names = NULL;
    return status;
}

static int run_line(xf_repl *r, const char *line)
{
    if (session_record_line && r->rec)
        return session_record_line(r, line);
    return repl_exec_line(r, line);
}

int main(int argc, char **argv)
{
    xf_repl *r = repl_new();
    if (!r) {
        fprintf(stderr, "xfdb: out of memory\n");
        return 2;
    }
    const char *model = NULL, *script = NULL, *record = NULL, *replay = NULL;
    const char **cmds = calloc((size_t)argc + 1, sizeof *cmds);
    int n_cmds = 0, script_argc = 0;
    char **script_argv = NULL;
    bool batch = false, update = false;
    double tol = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (strcmp(a, "-x") == 0 && has)
            cmds[n_cmds++] = argv[++i];
        else if (strcmp(a, "--batch") == 0)
            batch = true;
        else if (strcmp(a, "--script") == 0 && has) {
            script = argv[++i];
            script_argc = argc - i - 1;
            script_argv = argv + i + 1;
            break;
        } else if (strcmp(a, "--record") == 0 && has)
            record = argv[++i];
        else if (strcmp(a, "--replay") == 0 && has)
            replay = argv[++i];
        else if (strcmp(a, "--update") == 0)
            update = true;
        else if (strcmp(a, "--tolerance") == 0 && has) {
            char *end;
            tol = strtod(argv[++i], &end);
            if (*end || !(tol >= 0)) {
                fprintf(stderr, "xfdb: --tolerance: '%s' is not a number >= 0\n", argv[i]);
                goto usage_error;
            }
        } else if (strcmp(a, "--backend") == 0 && has) {
            const char *b = argv[++i];
            if (strcmp(b, "cpu") == 0)
                r->backend = KERN_BACKEND_CPU;
            else if (strcmp(b, "cuda") == 0)
                r->backend = KERN_BACKEND_CUDA;
            else {
                fprintf(stderr, "xfdb: --backend: '%s' is not cpu or cuda\n", b);
                goto usage_error;
            }
            r->backend_forced = true;
        } else if (strcmp(a, "--threads") == 0 && has) {
            char *end;
            long t = strtol(argv[++i], &end, 10);
            if (*end || t < 1 || t > 256) {
                fprintf(stderr, "xfdb: --threads: '%s' is not a count in 1..256\n", argv[i]);
                goto usage_error;
            }
            r->n_threads = (int)t;
        } else if (strcmp(a, "--ctx") == 0 && has) {
            char *end;
            long c = strtol(argv[++i], &end, 10);
            if (*end || c < 1 || c > (1L << 20)) {
                fprintf(stderr, "xfdb: --ctx: '%s' is not a number of positions in 1..1048576\n", argv[i]);
                goto usage_error;
            }
            r->ctx_limit = (int)c;
        } else if (strcmp(a, "--lua-timeout") == 0 && has) {
            char *end;
            r->lua_timeout = strtod(argv[++i], &end);
            if (*end || !(r->lua_timeout > 0)) {
                fprintf(stderr, "xfdb: --lua-timeout: '%s' is not a number of seconds > 0\n", argv[i]);
                goto usage_error;
            }
        } else if (strcmp(a, "--unsafe-lua") == 0)
            r->unsafe_lua = true;
        else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            repl_free(r);
            free(cmds);
            return 0;
        } else if (a[0] == '-' || model) {
            fprintf(stderr, "xfdb: unknown or misplaced argument '%s'\n", a);
            usage(stderr);
            goto usage_error;
        } else
            model = a;
    }
    if (!batch && (!script && !replay) && n_cmds > 0)
        batch = true; /* -x without a terminal session still runs non-interactively */
    r->batch = batch || script || replay || !isatty(0);
    const char *nc = getenv("NO_COLOR");
    r->color = isatty(2) && !(nc && *nc);

    g_sig_repl = r;
    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);

    int status = 0;
    if (replay) {
        if (!session_replay_main) {
            fprintf(stderr, "xfdb: --replay: this build has no session support\n");
            goto usage_error;
        }
        status = session_replay_main(r, replay, tol, update);
        repl_free(r);
        free(cmds);
        return status;
    }
    char *def = model ? NULL : default_model();
    /* scripts read stdout: the startup load speaks only in interactive use */
    r->quiet = r->batch;
    int lrc = repl_load(r, model ? model : def);
    r->quiet = false;
    if (lrc != 0) {
        free(def);
        repl_free(r);
        free(cmds);
        return 1;
    }
    free(def);
    if (record) {
        if (!session_record_start || session_record_start(r, record) != 0) {
            if (!session_record_start)
                fprintf(stderr, "xfdb: --record: this build has no session support\n");
            repl_free(r);
            free(cmds);
            return 1;
        }
    }
    if (script) {
        if (!repl_run_script) {
            fprintf(stderr, "xfdb: --script: this build has no Lua support\n");
            status = 2;
        } else
            status = repl_run_script(r, script, script_argc, script_argv) ? 1 : 0;
    } else if (n_cmds > 0) {
        for (int i = 0; i < n_cmds && !r->quit; i++)
            if (run_line(r, cmds[i]) != 0) {
                status = 1;
                break;
            }
    } else if (r->batch) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while (!r->quit && (len = getline(&line, &cap, stdin)) >= 0) {
            if (len && line[len - 1] == '\n')
                line[len - 1] = '\0';
            if (run_line(r, line) != 0) {
                status = 1;
                break;
            }
        }
        free(line);
    } else {
        r->interactive = true;
        status = interactive(r);
    }
    if (r->rec && session_record_stop)
        session_record_stop(r);
    repl_free(r);
    free(cmds);
    return status;
usage_error:
    repl_free(r);
    free(cmds);
    return 2;
}
