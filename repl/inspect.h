/* inspect: owns the commands that look at tensors: print, stats, diff,
 * topk (logits and the logit lens) and quant (one raw block of a weight). */
#ifndef XF_INSPECT_H
#define XF_INSPECT_H

typedef struct xf_repl xf_repl;

int cmd_print(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_stats(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_diff(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_topk(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_quant(xf_repl *r, int argc, char **argv, const char *rest);

#endif
