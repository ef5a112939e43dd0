/* variants: the CPU backend's table of kernel variants (kern_cpu_variants
 * of kernels.h) and the argument check that all CPU kernels share. */
#include "cpu/cpu.h"

#include <math.h>
#include <stddef.h>

/* r = a*b when it fits in int64 and stays addressable; a, b >= 0. */
static int check_mul(int64_t a, int64_t b, int64_t *r)
{
    if (a < 0 || b < 0 || __builtin_mul_overflow(a, b, r))
        return -1;
    return (uint64_t)*r <= (uint64_t)(SIZE_MAX / 8) ? 0 : -1;
}

static int check_mul3(int64_t a, int64_t b, int64_t c)
{
    int64_t r;
    return check_mul(a, b, &r) == 0 && check_mul(r, c, &r) == 0 ? 0 : -1;
}

/* Row bytes of `type` for k elements, the type dequantizable and the whole
 * table of `rows` rows addressable. */
static int check_rows(int type, int64_t k, int64_t rows)
{
    const quant_type_info *ti = quant_type_get(type);
    uint64_t rb;
    int64_t total;
    if (!ti || !ti->supported || !quant_row_bytes(type, k, &rb) || rb > (uint64_t)INT64_MAX)
        return -1;
    return check_mul((int64_t)rb, rows, &total);
}

static int check_heads(const kern_args *a)
{
    if (a->n_head <= 0 || a->n_head_kv <= 0 || a->head_dim <= 0 || a->n_head % a->n_head_kv != 0)
        return -1;
    if (a->n_kv < 0 || a->pos0 < 0)
        return -1;
    return 0;
}

int kern_cpu_check(kern_op op, const kern_args *a)
{
    if (!a || !a->y || a->n < 0)
        return -1;
    switch (op) {
    case KERN_OP_EMBD:
        if (!a->tok || !a->w || a->k <= 0 || a->pos0 < 0 || check_mul3(a->n, a->k, 1))
            return -1;
        /* Only the row size is checked here: the table height is the
         * exec's to validate against token ids (it knows the vocabulary). */
        if (check_rows(a->w_type, a->k, 1) || (a->w2 && check_rows(a->w2_type, a->k, 1)))
            return -1;
        for (int64_t i = 0; i < a->n; i++)
            if (a->tok[i] < 0)
                return -1;
        return 0;
    case KERN_OP_NORM:
    case KERN_OP_RMSNORM:
        if (!a->x || !a->w || a->w_type != XF_TYPE_F32 || a->k <= 0)
            return -1;
        return check_mul3(a->n, a->k, 1);
    case KERN_OP_MATMUL:
        if (!a->x || !a->w || a->k <= 0 || a->m <= 0)
            return -1;
        if (check_rows(a->w_type, a->k, a->m) || check_mul3(a->n, a->k, 1) || check_mul3(a->n, a->m, 1))
            return -1;
        return 0;
    case KERN_OP_VIEW: {
        int64_t last;
        if (!a->x || a->m <= 0 || a->off < 0 || a->x_stride < 0 || check_mul3(a->n, a->m, 1))
            return -1;
        /* the furthest element read: (n-1)*x_stride + off + m - 1 */
        if (a->off > INT64_MAX - a->m)
            return -1;
        if (a->n > 0 &&
            (check_mul(a->n - 1, a->x_stride, &last) || __builtin_add_overflow(last, a->off + a->m, &last)))
            return -1;
        return 0;
    }
    case KERN_OP_ROPE:
        if (!a->x || a->n_head <= 0 || a->head_dim <= 0 || a->head_dim % 2 != 0 || a->pos0 < 0)
            return -1;
        if (!(a->rope_base > 0.0f) || !isfinite(a->rope_base))
            return -1;
        if (a->rope_mode != KERN_ROPE_NEOX && a->rope_mode != KERN_ROPE_NORMAL)
            return -1;
        return check_mul3(a->n, a->n_head, a->head_dim);
    case KERN_OP_KQ:
        if (!a->x || !a->kc || check_heads(a))
            return -1;
        if (check_mul3(a->n, a->n_head, a->head_dim) || check_mul3(a->n_head, a->n, a->n_kv) ||
            check_mul3(a->n_kv, a->n_head_kv, a->head_dim))
            return -1;
        return 0;
    case KERN_OP_SOFTMAX:
        if (!a->x || a->m <= 0)
            return -1;
        return check_mul3(a->n, a->m, 1);
    case KERN_OP_KQV:
        if (!a->x || !a->vc || check_heads(a))
            return -1;
        if (check_mul3(a->n, a->n_head, a->head_dim) || check_mul3(a->n_head, a->n, a->n_kv) ||
            check_mul3(a->n_kv, a->n_head_kv, a->head_dim))
            return -1;
        return 0;
    case KERN_OP_ADD:
    case KERN_OP_SWIGLU:
        if (!a->x || !a->x2 || a->k <= 0)
            return -1;
        return check_mul3(a->n, a->k, 1);
    case KERN_OP_GELU:
        if (!a->x || a->k <= 0)
            return -1;
        return check_mul3(a->n, a->k, 1);
    case KERN_OP_COUNT:
        break;
    }
    return -1;
}

/* No CPU variant is captured in graphs; the opt attention ops match the
 * fused attention of a prefill (VF: KERN_VF_FUSE_EXACT, opt_attn.c); only
 * q8 wants scratch (VS: its x layout, so that no op allocates). */
#define V(op, name, fn, doc)                                                                                 \
    {                                                                                                        \
        op, KERN_BACKEND_CPU, name, fn, doc, 0u, NULL                                                        \
    }
#define VF(op, name, fn, doc)                                                                                \
    {                                                                                                        \
        op, KERN_BACKEND_CPU, name, fn, doc, KERN_VF_FUSE_EXACT, NULL                                        \
    }
#define VS(op, name, fn, doc, scratch)                                                                       \
    {                                                                                                        \
        op, KERN_BACKEND_CPU, name, fn, doc, 0u, scratch                                                     \
    }

const kern_variant kern_cpu_variants[] = {
    V(KERN_OP_EMBD, "ref", kern_cpu_ref_embd, "dequantize row tok[i] (+ position row), f64 add"),
    V(KERN_OP_EMBD, "opt", kern_cpu_opt_embd, "memcpy/vector f16 rows, threaded over tokens"),
    V(KERN_OP_NORM, "ref", kern_cpu_ref_norm, "two-pass mean/variance in f64"),
    V(KERN_OP_NORM, "opt", kern_cpu_opt_norm, "two-pass f32 vector sums, threaded over rows"),
    V(KERN_OP_RMSNORM, "ref", kern_cpu_ref_rmsnorm, "mean of squares in f64"),
    V(KERN_OP_RMSNORM, "opt", kern_cpu_opt_rmsnorm, "f32 vector sums, threaded over rows"),
    V(KERN_OP_MATMUL, "ref", kern_cpu_ref_matmul, "one dequantized weight row at a time, f64 dots"),
    V(KERN_OP_MATMUL, "opt", kern_cpu_opt_matmul,
      "n=1: rows over threads, f16/f32 vector dots, fused quant dots for blocks; n>1: 16-row f32 panels x "
      "4-token tiles"),
    VS(KERN_OP_MATMUL, "q8", kern_cpu_q8_matmul,
       "Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/Q4_K/Q6_K: x rounded to int8 blocks once, integer dots (AVX-512 VNNI/"
       "AVX-VNNI/AVX2/C; Q4_1 Q5_1 AVX-512 only); else opt",
       kern_cpu_q8_scratch_bytes),
    VS(KERN_OP_MATMUL, "q8-avx512", kern_cpu_q8_matmul_avx512,
       "q8 on its AVX-512 VNNI path (two blocks a zmm; below it where the CPU lacks it)", kern_cpu_q8_scratch_bytes),
    V(KERN_OP_MATMUL, "q8-vnni", kern_cpu_q8_matmul_vnni, "q8 on its AVX-VNNI path (AVX2 where the CPU lacks it)"),
    V(KERN_OP_MATMUL, "q8-avx2", kern_cpu_q8_matmul_avx2, "q8 on its AVX2 path (maddubs + madd)"),
    V(KERN_OP_MATMUL, "q8-c", kern_cpu_q8_matmul_c, "q8 on its portable C path"),
    V(KERN_OP_VIEW, "ref", kern_cpu_ref_view, "element by element copy"),
    V(KERN_OP_VIEW, "opt", kern_cpu_opt_view, "memcpy per row, threaded when large"),
    V(KERN_OP_ROPE, "ref", kern_cpu_ref_rope, "angles, cos and sin in f64 per element"),
    V(KERN_OP_ROPE, "opt", kern_cpu_opt_rope,
      "f64 cos/sin table per token shared by heads, threaded over tokens"),
    V(KERN_OP_KQ, "ref", kern_cpu_ref_kq, "f64 dots, causal mask"),
    VF(KERN_OP_KQ, "opt", kern_cpu_opt_kq,
      "4 keys per pass f32 vector dots, masked keys skipped, threaded over heads"),
    V(KERN_OP_SOFTMAX, "ref", kern_cpu_ref_softmax, "f64 exp and sum"),
    VF(KERN_OP_SOFTMAX, "opt", kern_cpu_opt_softmax, "vector expf polynomial, f32 sums, threaded over rows"),
    V(KERN_OP_KQV, "ref", kern_cpu_ref_kqv, "f64 weighted sums of value rows"),
    VF(KERN_OP_KQV, "opt", kern_cpu_opt_kqv,
      "4 value rows per pass, f32 vector accumulate, threaded over heads"),
    V(KERN_OP_ADD, "ref", kern_cpu_ref_add, "element by element"),
    V(KERN_OP_ADD, "opt", kern_cpu_opt_add, "vector add, threaded when large"),
    V(KERN_OP_GELU, "ref", kern_cpu_ref_gelu, "tanh form in f64"),
    V(KERN_OP_GELU, "opt", kern_cpu_opt_gelu, "x*sigmoid(2u) with vector expf, threaded when large"),
    V(KERN_OP_SWIGLU, "ref", kern_cpu_ref_swiglu, "silu(gate)*up in f64"),
    V(KERN_OP_SWIGLU, "opt", kern_cpu_opt_swiglu, "vector expf, threaded when large"),
};

const size_t kern_cpu_variant_count = sizeof kern_cpu_variants / sizeof kern_cpu_variants[0];
