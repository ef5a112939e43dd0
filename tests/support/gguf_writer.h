/* gguf_writer: writes GGUF v2/v3 files for tests, benchmarks and fixture
 * makers (an F32 copy of a model, tiny models, corrupt files). Test-only: it
 * is not part of the product (issue 12), which only reads GGUF. */
#ifndef XF_GGUF_WRITER_H
#define XF_GGUF_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "gguf.h"

typedef struct gguf_writer gguf_writer;
gguf_writer *gguf_writer_new(uint32_t version, uint64_t alignment);
void gguf_writer_free(gguf_writer *w);
/* Copies a kv (any type, arrays included) from an open file. */
int gguf_writer_copy_kv(gguf_writer *w, const gguf_file *src, const gguf_kv *kv);
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *v, uint64_t n);
int gguf_writer_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
int gguf_writer_set_arr_f32(gguf_writer *w, const char *key, const float *v, uint64_t n);
/* ne in ggml order; data is copied. */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne,
                           const void *data, uint64_t size);
/* Writes the file with base/xfile's atomic writer (a temporary beside it,
 * renamed over path). */
int gguf_writer_save(gguf_writer *w, const char *path, xf_err *err);
/* Serializes into a malloc'd buffer (tests that corrupt bytes). */
int gguf_writer_to_mem(gguf_writer *w, uint8_t **buf, size_t *size, xf_err *err);

#endif
