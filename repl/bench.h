/* bench: owns the timing commands: profile (per-op time of one pass) and
 * bench (prefill/decode speed per kernel set, step latency, the cost of
 * watching). Their output varies run to run (CMD_OUTPUT_VARIES). */
#ifndef XF_BENCH_H
#define XF_BENCH_H

typedef struct xf_repl xf_repl;

int cmd_profile(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_bench(xf_repl *r, int argc, char **argv, const char *rest);

#endif
