/* dumps: owns safetensors dumps in and out: dump (write tensors of this
 * pass), ref load (a reference for NAME@ref) and compare (every tensor of
 * the pass against the reference). */
#ifndef XF_DUMPS_H
#define XF_DUMPS_H

typedef struct xf_repl xf_repl;

int cmd_dump(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_ref(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_compare(xf_repl *r, int argc, char **argv, const char *rest);

#endif
