/* testutil: what every cmocka test shares: random inputs that are never
 * zero, NaN poisoning of outputs, paths of fixtures, GPU presence. */
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
/* the default model and its reference dump (../shared copies live in the repo) */
#define TU_MODEL "models/tiny-shakespeare-gpt2-f16.gguf"
#define TU_MODEL_REF "tests/fixtures/tiny-shakespeare-gpt2.ref.safetensors"

#endif
