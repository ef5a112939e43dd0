/* table.cu: the CUDA variants that the registry merges (kern_cuda_variants).
 * One row per (op, name); the doc line is what `kernel` shows. The flags
 * (kernels.h KERN_VF_*) and scratch needs are declared here, row by row:
 * the opt variants may be captured in graphs and are what the fast-path
 * fusions reproduce bit for bit; tc may be captured (for n <= 4 it is the
 * opt kernel; larger n never runs in a graph) but the fusions do not
 * reproduce its f16 products; the ref variants are neither. */
#include "cuda_internal.h"

/* the last arguments: flags, scratch_bytes (REF and OPT spell both) */
#define V(op, name, fn, doc, ...) {op, KERN_BACKEND_CUDA, name, fn, doc, __VA_ARGS__}
#define REF 0u, NULL
#define OPT (KERN_VF_CAPTURABLE | KERN_VF_FUSE_EXACT), NULL

extern "C" const kern_variant kern_cuda_variants[] = {
    V(KERN_OP_EMBD, "ref", kc_ref_embd, "one thread per element, element-wise decode", REF),
    V(KERN_OP_EMBD, "opt", kc_opt_embd, "8 elements per thread, 16-byte loads, one launch with the position row", OPT),
    V(KERN_OP_NORM, "ref", kc_ref_norm, "one thread per row, f64 mean/var", REF),
    V(KERN_OP_NORM, "opt", kc_opt_norm, "block per row, shuffle reductions, float4", OPT),
    V(KERN_OP_RMSNORM, "ref", kc_ref_rmsnorm, "one thread per row, f64 sum of squares", REF),
    V(KERN_OP_RMSNORM, "opt", kc_opt_rmsnorm, "block per row, shuffle reductions, float4", OPT),
    V(KERN_OP_MATMUL, "ref", kc_ref_matmul, "one thread per output, f64 dot, element-wise decode", REF),
    V(KERN_OP_MATMUL, "opt", kc_opt_matmul,
      "n=1 block types: rows staged in shared memory (gemv.cu); n<=4: matvec, decode on the fly; n>4, F16 and block "
      "types, k%32=0: tensor cores on exact weight codes, x as two f16 (f32-class error; matmul_split.cu); other n>4: "
      "cuBLAS SGEMM FP32 (decode to scratch)",
      KERN_VF_CAPTURABLE | KERN_VF_FUSE_EXACT, kc_opt_matmul_scratch),
    V(KERN_OP_MATMUL, "tc", kc_tc_matmul, "n>4: f16 tensor cores, f32 accumulate (x rounded to f16); else opt",
      KERN_VF_CAPTURABLE, kc_tc_matmul_scratch),
    V(KERN_OP_VIEW, "ref", kc_ref_view, "one thread per element", REF),
    V(KERN_OP_VIEW, "opt", kc_opt_view, "cudaMemcpy2DAsync", OPT),
    V(KERN_OP_ROPE, "ref", kc_ref_rope, "one thread per element, f64 angle and rotation", REF),
    V(KERN_OP_ROPE, "opt", kc_opt_rope, "one thread per pair, f64 angle", OPT),
    V(KERN_OP_KQ, "ref", kc_ref_kq, "one thread per score, f64 dot", REF),
    V(KERN_OP_KQ, "opt", kc_opt_kq, "n=1: 8 lanes per score, q in shared memory; n>1: 64x64 score tiles from q and k in shared memory", OPT),
    V(KERN_OP_SOFTMAX, "ref", kc_ref_softmax, "one thread per row, f64 sum", REF),
    V(KERN_OP_SOFTMAX, "opt", kc_opt_softmax, "block per row, shuffle reductions; 1024+ rows: a warp per row, the same sums in the same order", OPT),
    V(KERN_OP_KQV, "ref", kc_ref_kqv, "one thread per output, f64 sum", REF),
    V(KERN_OP_KQV, "opt", kc_opt_kqv, "n=1: block per head, 8 warps split the cache; n>1: 32 tokens x 64 dims tiles from p and v in shared memory", OPT),
    V(KERN_OP_ADD, "ref", kc_ref_add, "one thread per element", REF),
    V(KERN_OP_ADD, "opt", kc_opt_add, "float4 grid-stride", OPT),
    V(KERN_OP_GELU, "ref", kc_ref_gelu, "one thread per element, f64 tanh", REF),
    V(KERN_OP_GELU, "opt", kc_opt_gelu, "float4 grid-stride, tanhf", OPT),
    V(KERN_OP_SWIGLU, "ref", kc_ref_swiglu, "one thread per element, f64 exp", REF),
    V(KERN_OP_SWIGLU, "opt", kc_opt_swiglu, "float4 grid-stride, expf", OPT),
};

extern "C" const size_t kern_cuda_variant_count = sizeof(kern_cuda_variants) / sizeof(kern_cuda_variants[0]);
