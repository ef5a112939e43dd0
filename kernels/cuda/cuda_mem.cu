/* cuda_mem.cu: the CUDA backend's memory ops (kern_cuda_mem), its
 * availability probe, the device's SM count (kc_sm_count, which the launch
 * planners size grids by) and the life cycle of the per-context cuBLAS
 * handle.
 * Copies run on ctx->stream; only to_host and sync wait for it. Every CUDA
 * error becomes -1 (or NULL), and a non-sticky error is cleared so that the
 * next call starts clean. */
#include <cublas_v2.h>
#include <stdio.h>

#include "cuda_internal.h"
#include "kernels_cuda.h"

int kc_sm_count(void)
{
    static int sms = -1; /* a benign race at worst: every writer stores the same value */
    if (sms < 0) {
        int dev = 0, v = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || v < 0) {
            cudaGetLastError();
            return 0; /* asked again next time */
        }
        sms = v;
    }
    return sms;
}

static void *cm_alloc(size_t bytes)
{
    void *p = NULL;
    /* a 0-byte request still gets a distinct pointer: NULL means failure */
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

static void cm_free(void *p)
{
    if (p && cudaFree(p) != cudaSuccess)
        cudaGetLastError();
}

static int cm_copy_kind(kern_ctx *ctx, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    if (bytes == 0)
        return 0;
    if (!dst || !src)
        return -1;
    if (cudaMemcpyAsync(dst, src, bytes, kind, kc_stream(ctx)) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    return 0;
}

static int cm_to_dev(kern_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    return cm_copy_kind(ctx, dst, src, bytes, cudaMemcpyHostToDevice);
}

static int cm_sync(kern_ctx *ctx)
{
    if (cudaStreamSynchronize(kc_stream(ctx)) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    return 0;
}

static int cm_to_host(kern_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    if (cm_copy_kind(ctx, dst, src, bytes, cudaMemcpyDeviceToHost))
        return -1;
    return cm_sync(ctx);
}

static int cm_copy(kern_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    return cm_copy_kind(ctx, dst, src, bytes, cudaMemcpyDeviceToDevice);
}

static const kern_mem_ops cm_ops = {cm_alloc, cm_free, cm_to_dev, cm_to_host, cm_copy, cm_sync, kern_cuda_stats};

extern "C" const kern_mem_ops *kern_cuda_mem(void) { return &cm_ops; }

extern "C" int kern_cuda_available(char *why, size_t why_size)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count <= 0) {
        if (why && why_size)
            snprintf(why, why_size, "no CUDA device: %s",
                     e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports none");
        cudaGetLastError();
        return 0;
    }
    void *p = NULL;
    e = cudaMalloc(&p, 256);
    if (e != cudaSuccess) {
        if (why && why_size)
            snprintf(why, why_size, "CUDA device present but unusable: %s", cudaGetErrorString(e));
        cudaGetLastError();
        return 0;
    }
    cudaFree(p);
    if (why && why_size)
        why[0] = '\0';
    return 1;
}

extern "C" int kern_cuda_ctx_prepare(kern_ctx *ctx)
{
    if (!ctx)
        return -1;
    if (!ctx->cublas) {
        cublasHandle_t h = NULL;
        if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS)
            return -1;
        /* FP32 GEMMs stay FP32: TF32 only where a variant asks by name */
        if (cublasSetMathMode(h, CUBLAS_DEFAULT_MATH) != CUBLAS_STATUS_SUCCESS) {
            cublasDestroy(h);
            return -1;
        }
        ctx->cublas = h;
    }
    return cublasSetStream((cublasHandle_t)ctx->cublas, kc_stream(ctx)) == CUBLAS_STATUS_SUCCESS ? 0 : -1;
}

extern "C" void kern_cuda_ctx_release(kern_ctx *ctx)
{
    kern_cuda_codes_free(ctx);
    if (ctx && ctx->cublas) {
        cublasDestroy((cublasHandle_t)ctx->cublas);
        ctx->cublas = NULL;
    }
}
