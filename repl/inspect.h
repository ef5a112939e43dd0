/* inspect: owns the commands that look at tensors: print, stats, diff,
 * topk (logits and the logit lens) and quant (one raw block of a weight). */
#ifndef XF_INSPECT_H
#define XF_INSPECT_H

#include <stdbool.h>

typedef struct xf_repl xf_repl;

int cmd_print(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_stats(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_diff(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_topk(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_quant(xf_repl *r, int argc, char **argv, const char *rest);
/* K of topk/lens: *is_count when s is a number; 1 (said) when that number
 * is outside 1..hi, so that `topk 0` is not read as a tensor named '0' */

#endif
