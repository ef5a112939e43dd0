/* dumps: owns safetensors dumps in and out: dump (write tensors of this
 * pass), ref load (a reference for NAME@ref) and compare (every tensor of
 * the pass against the reference). */
#ifndef XF_DUMPS_H
#define XF_DUMPS_H

#include <stdbool.h>

typedef struct xf_repl xf_repl;

int cmd_dump(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_ref(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_compare(xf_repl *r, int argc, char **argv, const char *rest);

/* Says (once a command) that the loaded reference was made from other
 * tokens than this pass's, when its prompt.tokens differ: then every tensor
 * differs and no kernel is to blame. Returns true when it warned. */
bool dumps_warn_ref_prompt(xf_repl *r);

#endif
