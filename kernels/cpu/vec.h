/* vec: 8-wide f32 vector helpers of the CPU opt kernels, written with GCC
 * vector extensions so one source serves every ISA: the compiler emits AVX2
 * for the x86-64-v3 clone of a hot function (KERN_CPU_CLONES) and pairs of
 * SSE instructions for the baseline clone. The build cannot assume the
 * machine (no -march=native), hence run-time dispatch by target_clones.
 * Internal to kernels/cpu/. */
#ifndef XF_KERN_CPU_VEC_H
#define XF_KERN_CPU_VEC_H

#include <math.h>
#include <stdint.h>
#include <string.h>

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef uint16_t v8h __attribute__((vector_size(16)));

#define VEC_INLINE static inline __attribute__((always_inline))

/* opt kernels (opt.c, opt_attn.c): below this many output floats an op runs
 * on the calling thread: waking the pool costs a few microseconds, more
 * than the op itself. */
#define OPT_PAR_MIN 16384

/* Hot functions get an AVX2+FMA+F16C clone chosen at load time (ifunc).
 * Not under ThreadSanitizer: it cannot run ifunc resolvers, which the
 * loader calls before the sanitizer's runtime is up. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__) &&                 \
    !defined(__SANITIZE_THREAD__)
#define KERN_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
/* and an AVX-512 clone too, for code that holds more than 16 vectors live
 * (the fused attention's two rows at once): its EVEX encoding has 32
 * registers for the same 8-wide operations */
#define KERN_CPU_CLONES_V4 __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KERN_CPU_CLONES
#define KERN_CPU_CLONES_V4
#endif

/* GCC warns that returning a 32-byte vector changes the ABI when AVX is
 * off (the baseline clone), and notes the same for vector parameters in a
 * way no pragma silences. Every helper here is always_inline, so no vector
 * crosses a real call: returns are fine with the warning off, and vectors
 * go in through macros or pointers, never as by-value parameters. */
#pragma GCC diagnostic ignored "-Wpsabi"

VEC_INLINE v8f v8_load(const float *p)
{
    v8f v;
    memcpy(&v, p, sizeof v); /* unaligned load */
    return v;
}

#define v8_store(p, v)                                                                                       \
    do {                                                                                                     \
        v8f v8_store_v_ = (v);                                                                               \
        memcpy((p), &v8_store_v_, sizeof(v8f));                                                              \
    } while (0)

VEC_INLINE v8f v8_splat(float f)
{
    return (v8f){f, f, f, f, f, f, f, f};
}

VEC_INLINE float v8_hsum_p(const v8f *p)
{
    v8f v = *p;
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}
#define v8_hsum(v)                                                                                           \
    __extension__({                                                                                          \
        v8f v8_hsum_v_ = (v);                                                                                \
        v8_hsum_p(&v8_hsum_v_);                                                                              \
    })

/* The eight horizontal sums of v[0..8) as one vector: three rounds of
 * pairwise shuffles and adds instead of eight scalar reductions. */
VEC_INLINE v8f v8_hsum8_p(const v8f *v)
{
    v8f p[4], q[2];
    for (int i = 0; i < 4; i++) /* [a0+a1, b0+b1, a2+a3, b2+b3, ...] for a, b = v[2i], v[2i+1] */
        p[i] = __builtin_shufflevector(v[2 * i], v[2 * i + 1], 0, 8, 2, 10, 4, 12, 6, 14) +
               __builtin_shufflevector(v[2 * i], v[2 * i + 1], 1, 9, 3, 11, 5, 13, 7, 15);
    for (int i = 0; i < 2; i++) /* [a0..3, b0..3, c0..3, d0..3, a4..7, b4..7, c4..7, d4..7] */
        q[i] = __builtin_shufflevector(p[2 * i], p[2 * i + 1], 0, 1, 8, 9, 4, 5, 12, 13) +
               __builtin_shufflevector(p[2 * i], p[2 * i + 1], 2, 3, 10, 11, 6, 7, 14, 15);
    return __builtin_shufflevector(q[0], q[1], 0, 1, 2, 3, 8, 9, 10, 11) +
           __builtin_shufflevector(q[0], q[1], 4, 5, 6, 7, 12, 13, 14, 15);
}

/* lanes of m (all ones / all zeros from a comparison) pick a, others b */
#define v8_select(m, a, b) ((v8f)(((v8i)(a) & (m)) | ((v8i)(b) & ~(m))))

/* Partial vectors at row ends: n < 8 lanes, the rest filled with `fill`. */
VEC_INLINE v8f v8_load_part(const float *p, int n, float fill)
{
    float t[8] = {fill, fill, fill, fill, fill, fill, fill, fill};
    memcpy(t, p, (size_t)n * sizeof *t);
    return v8_load(t);
}

#define v8_store_part(p, v, n)                                                                               \
    do {                                                                                                     \
        float v8_part_t_[8];                                                                                 \
        v8_store(v8_part_t_, (v));                                                                           \
        memcpy((p), v8_part_t_, (size_t)(n) * sizeof(float));                                                \
    } while (0)

/* exp(x) in f32, ~1 ulp on the normal range (Cephes expf: x = n ln2 + r,
 * |r| <= ln2/2, degree-6 polynomial for e^r, 2^n put into the exponent).
 * x > 88.72 gives +inf, x < -87.33 gives 0 (the true result would be
 * subnormal: below 1.2e-38, irrelevant next to the values it is summed
 * with), -inf gives 0, NaN gives NaN. */
VEC_INLINE v8f v8_exp_p(const v8f *xp)
{
    v8f x = *xp;
    const v8f magic = v8_splat(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
    v8i over = x > v8_splat(88.72283905206835f);
    v8i under = x < v8_splat(-87.33654475f);
    /* clamp so that n stays in [-126, 127] and 2^n is a normal number */
    v8f xc = v8_select(x < v8_splat(-87.33654475f), v8_splat(-87.33654475f), x);
    xc = v8_select(xc > v8_splat(88.3f), v8_splat(88.3f), xc);
    v8f t = xc * v8_splat(1.44269504088896341f) + magic;
    v8u n = (v8u)t - (v8u)magic; /* n in the low mantissa bits, two's complement */
    v8f nf = t - magic;
    v8f r = xc - nf * v8_splat(0.693359375f);
    r = r - nf * v8_splat(-2.12194440e-4f);
    v8f p = v8_splat(1.9875691500e-4f);
    p = p * r + v8_splat(1.3981999507e-3f);
    p = p * r + v8_splat(8.3334519073e-3f);
    p = p * r + v8_splat(4.1665795894e-2f);
    p = p * r + v8_splat(1.6666665459e-1f);
    p = p * r + v8_splat(5.0000001201e-1f);
    v8f e = p * (r * r) + r + v8_splat(1.0f);
    v8f scale = (v8f)((n + 127u) << 23);
    e = e * scale;
    e = v8_select(over, v8_splat(INFINITY), e);
    return v8_select(under, v8_splat(0.0f), e);
}
#define v8_exp(x)                                                                                            \
    __extension__({                                                                                          \
        v8f v8_exp_v_ = (x);                                                                                 \
        v8_exp_p(&v8_exp_v_);                                                                                \
    })

/* 8 f16 values to f32, exactly: shifting the 15 low bits up by 13 makes an
 * f32 whose exponent is 112 too small, for normals and subnormals alike,
 * and a multiply by 2^112 fixes it; inf/NaN get the all-ones exponent. */
VEC_INLINE v8f v8_from_f16(const uint16_t *p)
{
    v8h h;
    memcpy(&h, p, sizeof h);
    v8u u = __builtin_convertvector(h, v8u);
    v8u sign = (u & 0x8000u) << 16;
    v8u em = u & 0x7fffu;
    v8f f = (v8f)(em << 13) * v8_splat(0x1p112f);
    v8u infnan = (em << 13) | 0x7f800000u;
    v8i special = (v8i)(em >= 0x7c00u);
    return (v8f)(((v8u)v8_select(special, (v8f)infnan, f)) | sign);
}

#endif
