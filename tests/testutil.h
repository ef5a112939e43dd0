/* testutil: what every cmocka test shares: random inputs that are never
 * zero, NaN poisoning of outputs, paths of fixtures, GPU presence, and the
 * one REPL harness (a session that prints nothing, commands run with their
 * output captured) that the tests of commands use. */
#ifndef XF_TESTUTIL_H
#define XF_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* xorshift64*; state must be nonzero */
uint64_t tu_rand_u64(uint64_t *state);
/* uniform in [lo, hi), values with |v| < 1e-3 are redrawn so no input is zero */
float tu_rand_float(uint64_t *state, float lo, float hi);
void tu_fill_random(float *x, size_t n, uint64_t *state, float lo, float hi);
/* fills with NaN so that an output a kernel forgot to write is caught */
void tu_poison(float *x, size_t n);
/* max |a-b| / max(max|b|, tiny); NaN anywhere in a -> INFINITY */
double tu_rel_max_err(const float *a, const float *b, size_t n);
/* path below the source tree (XF_SOURCE_DIR) into buf */
const char *tu_src_path(char *buf, size_t size, const char *rel);
/* a fresh temporary file name under $TMPDIR (or /tmp) into buf */
const char *tu_tmp_path(char *buf, size_t size, const char *suffix);
/* XF_TEST_FILTER=NAME (cmocka's pattern: * and ?) in the environment runs
 * only the matching tests of the file: a CUDA test file whole under
 * compute-sanitizer's racecheck runs past any device call's time, one test
 * at a time it does not (scripts/gpu-sanitize.sh) */
void tu_filter_from_env(void);
/* the default model and its reference dump (../shared copies live in the repo) */
#define TU_MODEL "models/tiny-shakespeare-gpt2-f16.gguf"
#define TU_MODEL_REF "tests/fixtures/tiny-shakespeare-gpt2.ref.safetensors"

/* --- a REPL for tests (repl/) ------------------------------------------------------- */
typedef struct xf_repl xf_repl;
typedef struct xf_strbuf xf_strbuf;
/* A session that writes nothing to the terminal (output reaches only a
 * capture), on the cpu backend with XF_TEST_THREADS threads (default 1).
 * NULL when out of memory (test_oom asks for that). */
xf_repl *tu_repl_new(void);
/* repl_load; fails the test with what load printed when it cannot */
void tu_repl_load(xf_repl *r, const char *path);
/* Runs one command line with its output (errors included) in out, which is
 * emptied first without freeing (so that a reserved buffer never grows
 * under an allocation failure test); the capture before is put back.
 * The command's status. */
int tu_repl_run(xf_repl *r, const char *line, xf_strbuf *out);
/* tu_repl_run into the harness's buffer; fails the test unless the command
 * returns want_rc. Its output, valid until the next call. */
const char *tu_cmd(xf_repl *r, const char *line, int want_rc);
/* the harness's buffer (what the last tu_cmd printed), freed by tu_cmd_free */
xf_strbuf *tu_cmd_out(void);
void tu_cmd_free(void);

#endif
