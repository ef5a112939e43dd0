/* q8z_layout.h: where the parts of a group of KERN_CPU_Q8Z_TILE tokens sit
 * in q8_avx512.c's K layout (x of Q4_K/Q6_K prefill, one scale per 256:
 * that file's header comment), for q8_avx512.c, which writes it, and
 * q8_avx512_panel.c, which runs panels of 16 rows on it: q [sb][token][256]
 * int8, dx [sb][token] f32, bs [sb][token][16] i16 (sums of 16 quants),
 * b32 [sb][token][8] i16 (sums of 32); a group is zk_group(k) bytes. */
#ifndef XF_KERN_CPU_Q8Z_LAYOUT_H
#define XF_KERN_CPU_Q8Z_LAYOUT_H

#include "cpu/cpu.h"

#include <stdint.h>

static inline int64_t zk_q(int64_t k) { return k / 256 * KERN_CPU_Q8Z_TILE * 256; }
static inline int64_t zk_dx(int64_t k) { return k / 256 * KERN_CPU_Q8Z_TILE * (int64_t)sizeof(float); }
static inline int64_t zk_bs(int64_t k) { return k / 256 * KERN_CPU_Q8Z_TILE * 16 * (int64_t)sizeof(int16_t); }
static inline int64_t zk_b32(int64_t k) { return k / 256 * KERN_CPU_Q8Z_TILE * 8 * (int64_t)sizeof(int16_t); }
static inline int64_t zk_group(int64_t k) { return zk_q(k) + zk_dx(k) + zk_bs(k) + zk_b32(k); }

#endif
