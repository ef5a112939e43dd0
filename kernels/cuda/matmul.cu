/* matmul.cu: the CUDA `opt` and `tc` MATMUL variants, y[n,m] = x[n,k] . w[m,k]^T (+ b).
 *
 * opt, n == 1, block types, the shapes kern_cuda_gemv_prefer names (long
 *   rows, few rows, k-quants): gemv.cu, weights staged in shared memory with
 *   16-byte copies; the rest of n <= 4 runs:
 * opt, n <= MV_MAX_ROWS (decode): a matrix-vector kernel, one warp per weight
 *   row, that reads every weight byte once with 16-byte (float types) or
 *   16-bit (ggml blocks) loads and decodes quantized blocks on the fly; f32
 *   accumulation, warp-shuffle reduction. No library, no scratch: capturable.
 * opt, n > MV_MAX_ROWS (prefill): F16 weights and the block types with k a
 *   multiple of 32 run matmul_split.cu's tensor-core product (exact weight
 *   codes, x in two f16 planes: f32-class error). The rest, or with too
 *   little scratch for it: cuBLAS SGEMM in FP32 (no TF32). F32 weights
 *   go straight in; other types are first decoded to f32 into ctx->scratch,
 *   KC_MM_MIN_ROWS rows or more at a time. With less scratch than that the
 *   matrix-vector kernel runs over the rows of x MV_MAX_ROWS at a time
 *   (correct, but it reads the weights n/4 times).
 * tc: for n > MV_MAX_ROWS, tensor cores: x rounded to f16 into scratch, the
 *   weights used as they are (F16) or decoded to f16 into scratch, then
 *   cublasGemmEx(f16 x f16 -> f32, CUBLAS_COMPUTE_32F). x and the weights
 *   lose bits (about 3e-4 relative on y); needs n*k*2 (+ KC_MM_MIN_ROWS*k*2
 *   for non-F16 weights) bytes of scratch, else it does what opt does. For
 *   n <= MV_MAX_ROWS it is the opt kernel.
 * The cuBLAS handle is created on first use and kept in ctx->cublas (create
 * it outside graph capture: kern_cuda_ctx_prepare in kernels_cuda.h). */
#include <cublas_v2.h>
#include <string.h>

#include "cuda_internal.h"
#include "gemv.h"
#include "gemv_body.h"
#include "kernels_cuda.h"

#define MV_WARPS 4       /* weight rows per block of the generic kernel */
#define KC_MM_MIN_ROWS 32 /* fewest weight rows worth one decode + GEMM round */
#define MV_WARP_ROWS_MAX 4096 /* up to this many weight rows, a whole warp takes each */

/* ---- matrix-vector: one warp per weight row ------------------------------ */

/* XV: x rows are 16-byte aligned (float4 loads). NRT: 1 for exactly one row
 * of x (decode: 4 fewer accumulators, more warps resident), MV_MAX_ROWS for
 * up to that many (nr at run time). A group of 2^lpr_log2 lanes (8, 16 or
 * 32: fewer for short rows of a tall matrix, so that each lane still has
 * several 16-byte loads in flight; a warp when the rows are few) takes one
 * weight row. */
template <int WT, bool XV, int NRT>
__global__ void __launch_bounds__(MV_THREADS)
    mv_kernel(float *y, float *act, const float *x, const uint8_t *w, uint64_t w_row, const float *b, int nr,
              int64_t k, int64_t m, int lpr_log2)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    int lpr = 1 << lpr_log2;
    int64_t r = ((int64_t)blockIdx.x * MV_THREADS + threadIdx.x) >> lpr_log2;
    int sub = threadIdx.x & (lpr - 1);
    /* a group past the last row still joins the shuffles below */
    bool live = r < m;
    const uint8_t *row = w + (uint64_t)(live ? r : 0) * w_row;
    float acc[NRT];
#pragma unroll
    for (int c = 0; c < NRT; c++)
        acc[c] = 0.0f;
    int64_t pieces = live ? k / 8 : 0;
#pragma unroll 4
    for (int64_t p = sub; p < pieces; p += lpr) {
        float wv[8];
        xq_load8<WT>(row, p, wv);
#pragma unroll
        for (int c = 0; c < NRT; c++) {
            if (c >= nr)
                break;
            const float *xr = x + c * k + 8 * p;
            float xv[8];
            if (XV) {
                float4 a = __ldg((const float4 *)xr), bq = __ldg((const float4 *)xr + 1);
                xv[0] = a.x, xv[1] = a.y, xv[2] = a.z, xv[3] = a.w;
                xv[4] = bq.x, xv[5] = bq.y, xv[6] = bq.z, xv[7] = bq.w;
            } else {
#pragma unroll
                for (int e = 0; e < 8; e++)
                    xv[e] = __ldg(xr + e);
            }
            float s = 0.0f;
#pragma unroll
            for (int e = 0; e < 8; e++)
                s += wv[e] * xv[e];
            acc[c] += s;
        }
    }
#pragma unroll
    for (int c = 0; c < NRT; c++) {
        if (c >= nr)
            break;
        float s = acc[c];
        for (int o = lpr >> 1; o > 0; o >>= 1)
            s += __shfl_xor_sync(0xffffffffu, s, o);
        if (live && sub == 0) {
            float v = b ? s + b[r] : s;
            y[c * m + r] = v;
            if (act) /* the fast path's GELU of this output, fused */
                act[c * m + r] = kc_gelu(v);
        }
    }
}

/* mv_kernel for one row of x, 16-byte aligned: gemv_body.h's mv_dot1,
 * which the fused launches (fused_decode.cu) run too */
template <int WT>
__global__ void __launch_bounds__(MV_THREADS)
    mv1_kernel(float *y, float *act, const float *x, const uint8_t *w, uint64_t w_row, const float *b, int64_t k,
               int64_t m, int lpr_log2)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    int lpr = 1 << lpr_log2;
    int64_t r = ((int64_t)blockIdx.x * MV_THREADS + threadIdx.x) >> lpr_log2;
    int sub = threadIdx.x & (lpr - 1);
    bool live = r < m; /* a group past the last row still joins the shuffles */
    const uint8_t *row = w + (uint64_t)(live ? r : 0) * w_row;
    /* launched as a programmatic dependent: this block's rows into L2, then
     * wait for the kernel before to finish (x is its output) */
    int rpb = MV_THREADS >> lpr_log2;
    mv_prefetch(w, w_row, (int64_t)blockIdx.x * rpb, rpb, m, threadIdx.x, MV_THREADS);
    KC_PDL_WAIT();
    float s = mv_dot1<WT>(row, x, k, sub, lpr, live);
    if (live && sub == 0) {
        float v = b ? s + b[r] : s;
        y[r] = v;
        if (act) /* the fast path's GELU of this output, fused */
            act[r] = kc_gelu(v);
    }
}

/* Any layout the 8-wide path cannot take (float types with k % 8 != 0 or an
 * unaligned base): lanes stride over the elements, still coalesced. */
template <int WT>
__global__ void __launch_bounds__(MV_WARPS * 32)
    mv_generic_kernel(float *y, float *act, const float *x, const uint8_t *w, uint64_t w_row, const float *b,
                      int nr, int64_t k, int64_t m)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    int64_t r = (int64_t)blockIdx.x * MV_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (r >= m)
        return;
    const uint8_t *row = w + (uint64_t)r * w_row;
    float acc[MV_MAX_ROWS] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t j = lane; j < k; j += 32) {
        float wv = xq_elem(WT, row, j);
        for (int c = 0; c < nr; c++)
            acc[c] += wv * x[c * k + j];
    }
    for (int c = 0; c < nr; c++) {
        float s = kc_warp_sum(acc[c]);
        if (lane == 0) {
            float v = b ? s + b[r] : s;
            y[c * m + r] = v;
            if (act)
                act[c * m + r] = kc_gelu(v);
        }
    }
}

/* log2 of the lanes per weight row of mv_kernel for a [m, k] matrix */
static int mv_lanes_log2(int64_t k, int64_t m)
{
    int64_t pieces = k / 8;
    int lg = pieces >= 128 ? 5 : pieces >= 48 ? 4 : 3;
    /* too few rows to fill the chip with narrower groups (the matrices of a
     * decode step of a small model): a warp per row, so that twice the warps
     * have their loads in flight and each waits on fewer of them in turn */
    if (lg < 5 && m <= MV_WARP_ROWS_MAX)
        lg = 5;
    return lg;
}

template <int WT> struct mv_launch {
    /* rows of x processed MV_MAX_ROWS at a time; act: also gelu(y) there, or NULL */
    static int run(cudaStream_t st, const kern_args *a, float *act)
    {
        uint64_t w_row = kc_row_bytes(WT, a->k);
        unsigned blocks = (unsigned)((a->m + MV_WARPS - 1) / MV_WARPS);
        bool fast = kc_load8_ok(WT, a->w, a->k);
        bool xv = kc_aligned16(a->x) && a->k % 4 == 0;
        for (int64_t i0 = 0; i0 < a->n; i0 += MV_MAX_ROWS) {
            int nr = (int)(a->n - i0 < MV_MAX_ROWS ? a->n - i0 : MV_MAX_ROWS);
            const float *x = a->x + i0 * a->k;
            float *y = a->y + i0 * a->m, *ac = act ? act + i0 * a->m : NULL;
            const uint8_t *w = (const uint8_t *)a->w;
            int rc = 0;
            if (fast) {
                int lg = mv_lanes_log2(a->k, a->m);
                unsigned fb = (unsigned)((a->m + (MV_THREADS >> lg) - 1) / (MV_THREADS >> lg));
                if (xv && nr == 1)
                    rc = kc_launch_pdl(mv1_kernel<WT>, dim3(fb), dim3(MV_THREADS), 0, st, y, ac, x, w, w_row, a->b,
                                       a->k, a->m, lg);
                else if (xv)
                    mv_kernel<WT, true, MV_MAX_ROWS><<<fb, MV_THREADS, 0, st>>>(y, ac, x, w, w_row, a->b, nr, a->k,
                                                                                a->m, lg);
                else
                    mv_kernel<WT, false, MV_MAX_ROWS><<<fb, MV_THREADS, 0, st>>>(y, ac, x, w, w_row, a->b, nr, a->k,
                                                                                 a->m, lg);
            } else {
                mv_generic_kernel<WT><<<blocks, MV_WARPS * 32, 0, st>>>(y, ac, x, w, w_row, a->b, nr, a->k, a->m);
            }
            if (rc != 0 || kc_launch_ok())
                return -1;
        }
        return 0;
    }
};

/* ---- decode weights rows [r0, r0+rows) into a dense f32 / f16 matrix ----- */

template <typename OT> __device__ __forceinline__ void dq_store8(OT *dst, const float *v);
template <> __device__ __forceinline__ void dq_store8<float>(float *dst, const float *v)
{
    ((float4 *)dst)[0] = make_float4(v[0], v[1], v[2], v[3]);
    ((float4 *)dst)[1] = make_float4(v[4], v[5], v[6], v[7]);
}
template <> __device__ __forceinline__ void dq_store8<__half>(__half *dst, const float *v)
{
    unsigned u[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        __half2 h = __floats2half2_rn(v[2 * i], v[2 * i + 1]);
        memcpy(&u[i], &h, sizeof u[i]);
    }
    *(uint4 *)dst = make_uint4(u[0], u[1], u[2], u[3]);
}

template <int WT, typename OT, bool FAST>
__global__ void dq_rows_kernel(OT *dst, const uint8_t *w, uint64_t w_row, int64_t rows, int64_t k)
{
    if (FAST) {
        int64_t per = k / 8, total = rows * per;
        for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < total;
             o += (int64_t)gridDim.x * blockDim.x) {
            int64_t r = o / per, p = o % per;
            float v[8];
            xq_load8<WT>(w + (uint64_t)r * w_row, p, v);
            dq_store8<OT>(dst + r * k + 8 * p, v);
        }
    } else {
        int64_t total = rows * k;
        for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < total;
             o += (int64_t)gridDim.x * blockDim.x) {
            int64_t r = o / k, j = o % k;
            dst[o] = (OT)xq_elem(WT, w + (uint64_t)r * w_row, j);
        }
    }
}

template <int WT> struct dq_launch {
    /* dst must be 16-byte aligned */
    template <typename OT>
    static int go(cudaStream_t st, OT *dst, const void *w, int64_t r0, int64_t rows, int64_t k)
    {
        uint64_t w_row = kc_row_bytes(WT, k);
        const uint8_t *src = (const uint8_t *)w + (uint64_t)r0 * w_row;
        if (kc_load8_ok(WT, w, k))
            dq_rows_kernel<WT, OT, true><<<kc_grid_1d(rows * (k / 8), 256), 256, 0, st>>>(dst, src, w_row, rows, k);
        else
            dq_rows_kernel<WT, OT, false><<<kc_grid_1d(rows * k, 256), 256, 0, st>>>(dst, src, w_row, rows, k);
        return kc_launch_ok();
    }
    static int run(cudaStream_t st, void *dst, int half, const void *w, int64_t r0, int64_t rows, int64_t k)
    {
        return half ? go<__half>(st, (__half *)dst, w, r0, rows, k) : go<float>(st, (float *)dst, w, r0, rows, k);
    }
};

__global__ void mm_f32_to_f16(__half *dst, const float *src, int64_t total)
{
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < total; o += (int64_t)gridDim.x * blockDim.x)
        dst[o] = __float2half_rn(src[o]);
}

__global__ void mm_add_bias(float *y, const float *b, int64_t n, int64_t m)
{
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < n * m; o += (int64_t)gridDim.x * blockDim.x)
        y[o] += b[o % m];
}

/* ---- the cuBLAS handle of a context ------------------------------------ */

static cublasHandle_t mm_handle(kern_ctx *ctx)
{
    if (!ctx)
        return NULL;
    if (!ctx->cublas && kern_cuda_ctx_prepare(ctx))
        return NULL;
    cublasHandle_t h = (cublasHandle_t)ctx->cublas;
    if (cublasSetStream(h, kc_stream(ctx)) != CUBLAS_STATUS_SUCCESS)
        return NULL;
    return h;
}

static int mm_check(const kern_args *a)
{
    if (a->n < 0 || a->m <= 0 || kc_row_bytes(a->w_type, a->k) == 0 || !a->x || !a->w || !a->y)
        return -1;
    /* cuBLAS takes int dimensions */
    if (a->m > INT32_MAX || a->k > INT32_MAX || a->n > INT32_MAX)
        return -1;
    return 0;
}

static int mm_bias(cudaStream_t st, const kern_args *a)
{
    if (!a->b)
        return 0;
    mm_add_bias<<<kc_grid_1d(a->n * a->m, 256), 256, 0, st>>>(a->y, a->b, a->n, a->m);
    return kc_launch_ok();
}

/* y[:, r0:r0+rows] = x . wd^T, wd a dense [rows, k] matrix of f32 or f16 */
static int mm_gemm(cublasHandle_t h, const kern_args *a, const void *wd, const void *xd, int half, int64_t r0,
                   int64_t rows)
{
    const float one = 1.0f, zero = 0.0f;
    /* column-major view: y^T [m, n] = wd [k, rows]^T . x^T [k, n] */
    cublasStatus_t s;
    if (!half)
        s = cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)a->n, (int)a->k, &one, (const float *)wd,
                        (int)a->k, (const float *)xd, (int)a->k, &zero, a->y + r0, (int)a->m);
    else
        s = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)a->n, (int)a->k, &one, wd, CUDA_R_16F,
                         (int)a->k, xd, CUDA_R_16F, (int)a->k, &zero, a->y + r0, CUDA_R_32F, (int)a->m,
                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return s == CUBLAS_STATUS_SUCCESS ? 0 : -1;
}

static size_t mm_align(size_t v) { return (v + 255) & ~(size_t)255; }

/* decode rows in chunks into dst (room for `cap` rows) and multiply each */
static int mm_chunked(cudaStream_t st, cublasHandle_t h, const kern_args *a, void *dst, int64_t cap,
                      const void *xd, int half)
{
    for (int64_t r0 = 0; r0 < a->m; r0 += cap) {
        int64_t rows = a->m - r0 < cap ? a->m - r0 : cap;
        if (kc_dispatch_type<dq_launch>(a->w_type, st, dst, half, a->w, r0, rows, a->k))
            return -1;
        if (mm_gemm(h, a, dst, xd, half, r0, rows))
            return -1;
    }
    return 0;
}

void kc_mv_plan_for(const kern_args *a, kc_mv_plan *p)
{
    memset(p, 0, sizeof *p);
    p->path = KC_MV_OTHER;
    if (a->n != 1 || mm_check(a))
        return;
    /* kc_opt_matmul's order: the staged kernel where preferred and it takes
     * the shape, else mv_launch, whose 8-wide one-row kernel needs what
     * these test */
    if (kern_cuda_gemv_prefer(a->w_type, a->k, a->m)) {
        kc_gv_plan(a, p);
        if (p->path == KC_MV_STAGED)
            return;
    }
    if (!kc_load8_ok(a->w_type, a->w, a->k) || !kc_aligned16(a->x) || a->k % 4 != 0)
        return;
    int lg = mv_lanes_log2(a->k, a->m);
    p->path = KC_MV_DIRECT;
    p->lg = lg;
    p->rb = kc_row_bytes(a->w_type, a->k);
    p->blocks = (unsigned)((a->m + (MV_THREADS >> lg) - 1) / (MV_THREADS >> lg));
}

extern "C" int kc_opt_matmul(kern_ctx *ctx, const kern_args *a)
{
    if (mm_check(a))
        return -1;
    if (a->n == 0)
        return 0;
    cudaStream_t st = kc_stream(ctx);
    /* 1: not a shape it takes, or one the kernel below runs faster */
    int gv = a->n == 1 && kern_cuda_gemv_prefer(a->w_type, a->k, a->m) ? kern_cuda_gemv(ctx, a, NULL) : 1;
    if (gv <= 0)
        return gv;
    if (a->n <= MV_MAX_ROWS)
        return kc_dispatch_type<mv_launch>(a->w_type, st, a, (float *)NULL);
    int sp = kc_split_matmul(ctx, a);
    if (sp <= 0)
        return sp;
    size_t row_f32 = (size_t)a->k * sizeof(float);
    int64_t cap = ctx && ctx->scratch && kc_aligned16(ctx->scratch) ? (int64_t)(ctx->scratch_size / row_f32) : 0;
    if (a->w_type != XF_TYPE_F32 && cap < KC_MM_MIN_ROWS && cap < a->m)
        return kc_dispatch_type<mv_launch>(a->w_type, st, a, (float *)NULL); /* no room to decode: slow but correct */
    cublasHandle_t h = mm_handle(ctx);
    if (!h)
        return -1;
    int rc = a->w_type == XF_TYPE_F32 ? mm_gemm(h, a, a->w, a->x, 0, 0, a->m)
                                      : mm_chunked(st, h, a, ctx->scratch, cap, a->x, 0);
    return rc ? rc : mm_bias(st, a);
}

extern "C" int kc_tc_matmul(kern_ctx *ctx, const kern_args *a)
{
    if (mm_check(a))
        return -1;
    if (a->n == 0)
        return 0;
    if (a->n <= MV_MAX_ROWS)
        return kc_opt_matmul(ctx, a);
    size_t xbytes = mm_align((size_t)a->n * a->k * sizeof(__half));
    size_t row_f16 = (size_t)a->k * sizeof(__half);
    size_t have = ctx && ctx->scratch && kc_aligned16(ctx->scratch) ? ctx->scratch_size : 0;
    int64_t cap = have > xbytes ? (int64_t)((have - xbytes) / row_f16) : 0;
    bool direct = a->w_type == XF_TYPE_F16;
    if (have < xbytes || (!direct && cap < KC_MM_MIN_ROWS && cap < a->m))
        return kc_opt_matmul(ctx, a);
    cudaStream_t st = kc_stream(ctx);
    cublasHandle_t h = mm_handle(ctx);
    if (!h)
        return -1;
    __half *x16 = (__half *)ctx->scratch; /* [n, k] */
    mm_f32_to_f16<<<kc_grid_1d(a->n * a->k, 256), 256, 0, st>>>(x16, a->x, a->n * a->k);
    if (kc_launch_ok())
        return -1;
    int rc = direct ? mm_gemm(h, a, a->w, x16, 1, 0, a->m)
                    : mm_chunked(st, h, a, (char *)ctx->scratch + xbytes, cap, x16, 1);
    return rc ? rc : mm_bias(st, a);
}

extern "C" int kern_cuda_matmul_gelu(kern_ctx *ctx, const kern_args *mm, const kern_args *gelu)
{
    if (mm_check(mm) || !gelu->x || !gelu->y || gelu->x != mm->y || gelu->n * gelu->k != mm->n * mm->m)
        return -1;
    if (mm->n == 0)
        return 0;
    /* the same kernel as kc_opt_matmul's for this shape: the same bits */
    int gv = mm->n == 1 && kern_cuda_gemv_prefer(mm->w_type, mm->k, mm->m) ? kern_cuda_gemv(ctx, mm, gelu->y) : 1;
    if (gv <= 0)
        return gv;
    if (mm->n <= MV_MAX_ROWS)
        return kc_dispatch_type<mv_launch>(mm->w_type, kc_stream(ctx), mm, gelu->y);
    if (kc_opt_matmul(ctx, mm))
        return -1;
    return kc_opt_gelu(ctx, gelu);
}

extern "C" int kern_cuda_matvec_mv4(kern_ctx *ctx, const kern_args *a)
{
    if (mm_check(a) || a->n > MV_MAX_ROWS)
        return -1;
    return a->n == 0 ? 0 : kc_dispatch_type<mv_launch>(a->w_type, kc_stream(ctx), a, (float *)NULL);
}

/* kern_variant.scratch_bytes: what each variant's full-speed path above
 * uses (opt: matmul_split.cu's x planes and every weight row's codes where
 * it takes the type, else every weight row decoded to f32 at once; tc: x in
 * f16 plus the weight rows decoded to f16 unless they are F16). */
extern "C" size_t kc_opt_matmul_scratch(const kern_args *a)
{
    if (a->n <= MV_MAX_ROWS || a->k <= 0 || a->m <= 0)
        return 0;
    size_t sp = kc_split_matmul_scratch(a);
    if (sp)
        return sp;
    if (a->w_type == XF_TYPE_F32)
        return 0;
    return (size_t)a->m * (size_t)a->k * sizeof(float);
}

extern "C" size_t kc_tc_matmul_scratch(const kern_args *a)
{
    if (a->n <= MV_MAX_ROWS || a->k <= 0 || a->m <= 0)
        return 0;
    return mm_align((size_t)a->n * a->k * sizeof(__half)) +
           (a->w_type == XF_TYPE_F16 ? 0 : (size_t)a->m * a->k * sizeof(__half));
}
