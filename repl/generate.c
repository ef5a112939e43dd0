/* generate: text generation (generate, chat; repl_generate is shared with
 * Lua). A generation is a loop of decode passes; a breakpoint, a check
 * failure, a hook or Ctrl-C inside one of them pauses the loop, and the
 * paused loop is kept in r->gen so that `continue` resumes it where it
 * stopped, as gdb's continue resumes the program and not only the frame.
 * It is dropped when another pass starts (it knows the pass it paused in)
 * or another generation begins. */
#include <float.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "exec.h"
#include "print.h"
#include "repl.h"
#include "run.h"
#include "sampler.h"
#include "tokenizer.h"

typedef struct gen_state {
    xf_gen_opts o;
    xf_sampler *s;
    tok_stream *ts;
    float *lg;
    int32_t *ids;
    int k;            /* tokens picked so far */
    bool started;     /* the pass that was in flight is done: k counts picks */
    double busy_s;    /* seconds spent generating, pauses excluded */
    const xf_exec *ex; /* the stepper and pass it paused in */
    int pass_no;
} gen_state;

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void gen_free(gen_state *g)
{
    if (!g)
        return;
    if (g->ts)
        tok_stream_free(g->ts);
    samp_free(g->s);
    free(g->lg);
    free(g->ids);
    free(g);
}

/* the destructor the session keeps beside r->gen (repl_drop_gen) */
static void gen_free_state(void *g) { gen_free(g); }

void gen_drop(xf_repl *r) { repl_drop_gen(r); }

bool gen_paused(xf_repl *r)
{
    gen_state *g = r->gen;
    if (!g)
        return false;
    xf_where w;
    if (r->ex)
        exec_where(r->ex, &w);
    /* another pass started (run, token, profile, load ...): it is not ours to resume */
    if (!r->ex || r->ex != g->ex || w.pass_no != g->pass_no) {
        gen_drop(r);
        return false;
    }
    return true;
}

static gen_state *gen_new(xf_repl *r, const xf_gen_opts *o, bool *said)
{
    xf_err err = {0};
    gen_state *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->o = *o;
    samp_params sp = {.temperature = o->temp, .top_k = o->top_k, .top_p = o->top_p, .seed = o->seed};
    g->s = samp_new(&sp, &err);
    if (!g->s && err.msg[0]) { /* parameters the sampler refused: say why, not "out of memory" */
        *said = repl_errf(r, "%s", err.msg);
        free(g);
        return NULL;
    }
    g->lg = malloc((size_t)r->model->n_vocab * sizeof(float));
    g->ids = malloc((size_t)(o->n > 0 ? o->n : 1) * sizeof(int32_t));
    if (r->model->tok && !o->ids)
        g->ts = tok_stream_new(r->model->tok, &err);
    if (!g->s || !g->lg || !g->ids || (r->model->tok && !o->ids && !g->ts)) {
        gen_free(g);
        return NULL;
    }
    return g;
}

/* Streams the text of token id (the model's text may hold control bytes:
 * escaped, newlines kept); -1 on a tokenizer error (in err). */
static int gen_show_text(xf_repl *r, tok_stream *ts, int32_t id, xf_err *err)
{
    const char *txt;
    size_t len;
    bool repl_char = false;
    if (tok_stream_push(ts, id, &txt, &len, &repl_char, err) != 0)
        return -1;
    char esc[1024];
    size_t st = 0;
    for (size_t i = 0; len && i <= len; i++)
        if (i == len || txt[i] == '\n') {
            tok_escape(txt + st, i - st, esc, sizeof esc);
            repl_out(r, "%s%s", esc, i < len ? "\n" : "");
            st = i + 1;
        }
    return 0;
}

/* a message said: -1, the "failed" of the step functions below */
static int bad(int said)
{
    (void)said;
    return -1;
}

/* Runs the pass in flight to its end. 0 done, 1 stopped (why), -1 failed (said). */
static int gen_run_pass(xf_repl *r, xf_stop *why)
{
    xf_err err = {0};
    xf_where w;
    exec_where(r->ex, &w);
    *why = XF_STOP_END;
    if (w.pc >= w.n_ops)
        return 0;
    if (exec_run(r->ex, XF_RUN_CONTINUE, 0, why, &err) != 0) {
        repl_errf(r, "%s", err.msg);
        return -1;
    }
    return *why == XF_STOP_END ? 0 : 1;
}

/* Picks the next token from the last logits and shows it. 0 go on, 1 an
 * end-of-generation token ended it, -1 failed (said). */
static int gen_pick(xf_repl *r, gen_state *g, int32_t *id_out)
{
    xf_err err = {0};
    const xf_gen_opts *o = &g->o;
    if (exec_last_logits(r->ex, g->lg, &err) != 0)
        return bad(repl_errf(r, "%s", err.msg));
    int32_t id = samp_sample(g->s, g->lg, r->model->n_vocab, &err);
    if (id < 0) {
        repl_errf(r, "generate: %s", err.msg);
        return -1;
    }
    g->ids[g->k++] = id;
    *id_out = id;
    /* end of generation: stop before feeding it, so a chat can append its next turn */
    if (!o->ignore_eos && r->model->tok && tok_is_eog(r->model->tok, id)) {
        if (!o->quiet && !o->ids)
            repl_out(r, "\n[end of generation]");
        else if (!o->quiet)
            repl_out(r, g->k > 1 ? " %d" : "%d", id);
        return 1;
    }
    if (o->quiet)
        return 0;
    if (o->ids)
        repl_out(r, g->k > 1 ? " %d" : "%d", id);
    else if (g->ts && gen_show_text(r, g->ts, id, &err) != 0) {
        repl_errf(r, "generate: %s", err.msg);
        return -1;
    }
    return 0;
}

/* The loop: finish the pass in flight, then pick and feed tokens (a
 * Ctrl-C between two passes is seen at the next pass's first op, so a
 * stop always leaves a pass in flight for step or continue). 0 ended,
 * 1 paused (a stop: why), -1 failed (said). */
static int gen_loop(xf_repl *r, gen_state *g, xf_stop *why)
{
    xf_err err = {0};
    int st = gen_run_pass(r, why);
    if (st != 0)
        return st;
    while (g->k < g->o.n) {
        int32_t id;
        st = gen_pick(r, g, &id);
        if (st != 0)
            return st < 0 ? -1 : 0;
        xf_where w;
        exec_where(r->ex, &w);
        if (w.n_past >= r->model->n_ctx) {
            if (!g->o.quiet)
                repl_out(r, "\n[context full at %d tokens]", r->model->n_ctx);
            return 0;
        }
        if (exec_begin(r->ex, &id, 1, true, &err) != 0) {
            repl_errf(r, "%s", err.msg);
            return -1;
        }
        st = gen_run_pass(r, why);
        if (st != 0)
            return st;
    }
    return 0;
}

/* The end of a generation: the rest of the text, a newline, and the rate
 * at the prompt. */
static int gen_end(xf_repl *r, gen_state *g, int rc)
{
    xf_err err = {0};
    const xf_gen_opts *o = &g->o;
    if (g->ts) {
        const char *txt;
        size_t len;
        bool rep = false;
        if (tok_stream_flush(g->ts, &txt, &len, &rep, &err) != 0) {
            if (rc == 0)
                rc = repl_errf(r, "generate: %s", err.msg);
        } else if (len && !o->quiet) {
            char esc[64];
            tok_escape(txt, len, esc, sizeof esc);
            repl_out(r, "%s%s", esc, rep ? " [invalid UTF-8 from the model]" : "");
        }
    }
    if (!o->quiet && o->n > 0)
        repl_out(r, "\n");
    /* For the person at the prompt, on the terminal only: a script's output
     * stays the same run to run, and a recording (or an xf.cmd capture) never
     * holds it, so replay has nothing to compare it with. */
    if (r->interactive && !o->quiet && !o->ids && g->k > 0 && g->busy_s > 0) {
        xf_strbuf *cap = r->io.capture;
        r->io.capture = NULL;
        repl_out(r, "[%d token%s in %.2f s, %.1f tokens/s]\n", g->k, g->k == 1 ? "" : "s", g->busy_s,
                 g->k / g->busy_s);
        r->io.capture = cap;
    }
    return rc;
}

/* A stop inside the loop: say where, and keep the loop for `continue`. */
static void gen_pause(xf_repl *r, gen_state *g, xf_stop why)
{
    if (!g->o.quiet)
        repl_out(r, "\n");
    /* The pass in flight feeds token k. After the last one every token is
     * out already and only that pass is left: say so, not "resumes". */
    bool last = g->k >= g->o.n;
    const char *then = last ? "finishes the last token's pass" : "resumes it";
    if (why == XF_STOP_INTERRUPT) {
        r->stopped_by_interrupt = true;
        repl_out(r, "stopped at token %d of %d (Ctrl-C); `continue` %s\n", g->k, g->o.n, then);
    } else {
        run_show_stop(r, why);
        repl_out(r, "generation paused at token %d of %d: `continue` %s\n", g->k, g->o.n, then);
    }
    xf_where w;
    exec_where(r->ex, &w);
    g->ex = r->ex;
    g->pass_no = w.pass_no;
    r->gen = g;
    r->gen_free = gen_free_state;
}

/* Drives g until it ends or pauses. ids_out (Lua) takes the ids picked
 * and never keeps a paused loop; Ctrl-C is then an error, so that a script
 * stops as it does at xf.continue. */
static int gen_drive(xf_repl *r, gen_state *g, int32_t **ids_out, int *n_out)
{
    double t0 = now_s();
    xf_stop why = XF_STOP_END;
    r->interrupt = 0;
    int st = gen_loop(r, g, &why);
    g->busy_s += now_s() - t0;
    if (st == 1 && !ids_out) {
        gen_pause(r, g, why);
        return 0;
    }
    int rc = st < 0 ? 1 : 0;
    if (st == 1 && why == XF_STOP_INTERRUPT) {
        r->stopped_by_interrupt = true;
        rc = repl_errf(r, "interrupted (Ctrl-C)");
    }
    else if (st == 1)
        run_show_stop(r, why);
    rc = gen_end(r, g, rc);
    if (ids_out && rc == 0) {
        *ids_out = g->ids;
        *n_out = g->k;
        g->ids = NULL;
    }
    gen_free(g);
    return rc;
}

int repl_generate(xf_repl *r, const xf_gen_opts *o, int32_t **ids_out, int *n_out)
{
    gen_drop(r);
    xf_where w;
    exec_where(r->ex, &w);
    if (!w.active)
        return repl_errf(r, "generate: no pass yet (run a prompt first)");
    bool said = false;
    gen_state *g = gen_new(r, o, &said);
    if (!g)
        return said ? 1 : repl_errf(r, "generate: out of memory");
    return gen_drive(r, g, ids_out, n_out);
}

int gen_resume(xf_repl *r)
{
    gen_state *g = r->gen;
    r->gen = NULL;
    return gen_drive(r, g, NULL, NULL);
}

/* One option and its value: 1 taken (i advanced), 0 not an option, -1 bad (said). */
static int gen_option(xf_repl *r, const char *who, xf_gen_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    double d;
    long l;
    static const char *const with_value[] = {"--temp", "--top-k", "--top-p", "--seed"};
    if (strcmp(a, "--ids") == 0)
        return o->ids = true, 1;
    if (strcmp(a, "--ignore-eos") == 0)
        return o->ignore_eos = true, 1;
    int which = -1;
    for (int k = 0; k < 4; k++)
        if (strcmp(a, with_value[k]) == 0)
            which = k;
    if (which < 0)
        return 0;
    if (*i + 1 >= argc)
        return bad(repl_errf(r, "%s: %s needs a value", who, a));
    const char *v = argv[++*i];
    switch (which) {
    case 0:
        if (args_double(v, &d) && d >= 0 && d <= FLT_MAX) /* a float: 1e308 would turn into inf */
            return o->temp = (float)d, 1;
        return bad(repl_errf(r, "%s: --temp: '%s' is not a temperature (a number >= 0)", who, v));
    case 1:
        if (args_long(v, 0, 1 << 24, &l))
            return o->top_k = (int)l, 1;
        return bad(repl_errf(r, "%s: --top-k: '%s' is not a count >= 0", who, v));
    case 2:
        if (args_double(v, &d) && d > 0 && d <= 1)
            return o->top_p = (float)d, 1;
        return bad(repl_errf(r, "%s: --top-p: '%s' is not a probability in (0, 1]", who, v));
    default:
        if (args_long(v, 0, LONG_MAX, &l))
            return o->seed = (unsigned long long)l, 1;
        return bad(repl_errf(r, "%s: --seed: '%s' is not a whole number >= 0", who, v));
    }
}

int cmd_generate(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)rest;
    xf_gen_opts o = {.n = -1, .temp = 0, .top_k = 0, .top_p = 1, .seed = 0};
    for (int i = 1; i < argc; i++) {
        long l;
        int st = gen_option(r, "generate", &o, argc, argv, &i);
        if (st < 0)
            return 1;
        if (st > 0)
            continue;
        if (o.n < 0 && args_long(argv[i], 0, 1 << 20, &l))
            o.n = (int)l;
        else if (argv[i][0] == '-' && argv[i][1] == '-')
            return repl_errf(r, "generate: no option '%s' (help generate)", argv[i]);
        else
            return repl_errf(r, "generate: '%s' is not a token count (usage: generate N [OPTIONS])", argv[i]);
    }
    if (o.n < 0)
        return repl_errf(r, "usage: generate N [OPTIONS] (help generate)");
    if (o.n == 0) {
        repl_out(r, "generate 0: nothing to generate\n");
        return 0;
    }
    return repl_generate(r, &o, NULL, NULL);
}

/* the word at p (up to a blank) into buf, cut to size; returns what follows it */
static const char *chat_word(const char *p, char *buf, size_t size)
{
    while (*p == ' ')
        p++;
    size_t n = strcspn(p, " ");
    snprintf(buf, size, "%.*s", (int)(n < size ? n : size - 1), p);
    if (n >= size)
        buf[0] = 'x'; /* a word longer than any number is none */
    return p + n;
}

int cmd_chat(xf_repl *r, int argc, char **argv, const char *rest)
{
    (void)argc;
    (void)argv;
    if (args_need_vocab(r))
        return 1;
    long n = 256;
    const char *sys = NULL;
    char *sysbuf = NULL;
    bool fresh = false;
    xf_gen_opts o = {.n = 256, .top_p = 1};
    /* options, then the message */
    for (;;) {
        while (*rest == ' ')
            rest++;
        if (strncmp(rest, "-n ", 3) == 0) {
            char word[64];
            rest = chat_word(rest + 3, word, sizeof word);
            if (!args_long(word, 1, 100000, &n))
                return repl_errf(r, "chat: -n takes a token count");
        } else if (strncmp(rest, "--new ", 6) == 0) {
            fresh = true;
            rest += 6;
        } else if (strncmp(rest, "--temp ", 7) == 0 || strncmp(rest, "--seed ", 7) == 0) {
            /* one word, checked as generate checks it (a whole word: "5abc"
             * is not 5 and a message "abc") */
            char opt[16], word[64]; /* 16: GCC -O3 warns on a strcmp with "--ignore-eos" otherwise */
            memcpy(opt, rest, 6);
            opt[6] = 0;
            rest = chat_word(rest + 7, word, sizeof word);
            char *av[2] = {opt, word};
            int i = 0;
            if (gen_option(r, "chat", &o, 2, av, &i) != 1)
                return 1;
        } else if (strncmp(rest, "--system ", 9) == 0) {
            size_t len;
            const char *p = rest + 9;
            while (*p == ' ')
                p++;
            if (*p != '"')
                return repl_errf(r, "chat: --system takes a \"quoted\" text");
            const char *q = p + 1;
            while (*q && !(*q == '"' && q[-1] != '\\'))
                q++;
            if (!*q)
                return repl_errf(r, "chat: --system: missing closing quote");
            char *tmp = strndup(p, (size_t)(q - p + 1));
            free(sysbuf);
            sysbuf = NULL;
            int bad = !tmp || args_text(r, tmp, &sysbuf, &len);
            free(tmp);
            if (bad)
                return 1;
            sys = sysbuf;
            rest = q + 1;
        } else
            break;
    }
    char *msg;
    size_t len;
    if (!*rest) {
        free(sysbuf);
        return repl_errf(r, "usage: chat [OPTIONS] MESSAGE (help chat)");
    }
    if (args_text(r, rest, &msg, &len)) {
        free(sysbuf);
        return 1;
    }
    xf_err err = {0};
    xf_where w;
    exec_where(r->ex, &w);
    bool cont = r->chatting && !fresh && w.active && w.pc == w.n_ops && !sys;
    tok_chat_msg msgs[2];
    size_t nm = 0;
    if (sys)
        msgs[nm++] = (tok_chat_msg){"system", sys};
    msgs[nm++] = (tok_chat_msg){"user", msg};
    char *prompt = NULL;
    int rc = 0;
    if (cont) {
        /* a later turn: close the assistant's turn, then only the new user turn */
        const char *tpl = "<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n";
        size_t sz = strlen(tpl) + len + 1;
        prompt = malloc(sz);
        if (prompt)
            snprintf(prompt, sz, tpl, msg);
    } else if (tok_chat_format(r->model->tok, msgs, nm, true, &prompt, &err) != 0) {
        rc = repl_errf(r, "chat: %s", err.msg);
    }
    free(msg);
    free(sysbuf);
    if (rc)
        return rc;
    if (!prompt)
        return repl_errf(r, "out of memory");
    int32_t *ids;
    size_t nid;
    if (tok_encode(r->model->tok, prompt, strlen(prompt), true, &ids, &nid, &err) != 0) {
        free(prompt);
        return repl_errf(r, "chat: %s", err.msg);
    }
    free(prompt);
    rc = exec_begin(r->ex, ids, (int)nid, cont, &err);
    free(ids);
    if (rc != 0)
        return repl_errf(r, "chat: %s", err.msg);
    r->chatting = true;
    o.n = (int)n;
    return repl_generate(r, &o, NULL, NULL);
}

