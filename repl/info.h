/* info: owns the commands that set up and describe the session: load,
 * info, tokenize, breakpoints (break, delete), the kernel choice (kernel),
 * check mode (check) and the CUDA graph mode (graph). */
#ifndef XF_INFO_H
#define XF_INFO_H

typedef struct xf_repl xf_repl;

int cmd_load(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_info(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_tokenize(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_break(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_delete(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_kernel(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_check(xf_repl *r, int argc, char **argv, const char *rest);
int cmd_graph(xf_repl *r, int argc, char **argv, const char *rest);

#endif
