/* membw.cu: the device's memory bandwidth (kern_cuda_membw,
 * kernels_cuda.h), the denominator of bench's memory floor on the cuda
 * backend: a device-to-device cudaMemcpyAsync of 1 GiB (halved while the
 * two buffers cannot be allocated), bytes read + written over the time
 * between two CUDA events, the median of MEMBW_RUNS copies after
 * MEMBW_WARM untimed ones. The same measure as scripts/bench_hf_gpt2.py and
 * tests/bench_gemv_cuda.c. Runs on a stream of its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "kernels_cuda.h"

#define MEMBW_RUNS 9
#define MEMBW_WARM 2
#define MEMBW_MIN_BYTES ((size_t)64 << 20)

static int membw_cmp(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* the median ms of a copy of bytes from a to b, or -1 on a CUDA error */
static float membw_time(void *a, void *b, size_t bytes, cudaStream_t st)
{
    cudaEvent_t e0 = NULL, e1 = NULL;
    float t[MEMBW_RUNS];
    int ok = cudaEventCreate(&e0) == cudaSuccess && cudaEventCreate(&e1) == cudaSuccess &&
             cudaMemsetAsync(a, 1, bytes, st) == cudaSuccess;
    for (int i = 0; ok && i < MEMBW_WARM + MEMBW_RUNS; i++) {
        ok = cudaEventRecord(e0, st) == cudaSuccess &&
             cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, st) == cudaSuccess &&
             cudaEventRecord(e1, st) == cudaSuccess && cudaEventSynchronize(e1) == cudaSuccess;
        if (ok && i >= MEMBW_WARM)
            ok = cudaEventElapsedTime(&t[i - MEMBW_WARM], e0, e1) == cudaSuccess;
    }
    if (e0)
        cudaEventDestroy(e0);
    if (e1)
        cudaEventDestroy(e1);
    if (!ok) {
        cudaGetLastError();
        return -1;
    }
    qsort(t, MEMBW_RUNS, sizeof t[0], membw_cmp);
    return t[MEMBW_RUNS / 2];
}

extern "C" int kern_cuda_membw(kern_membw *out)
{
    memset(out, 0, sizeof *out);
    const size_t want = (size_t)1 << 30;
    size_t bytes = want;
    void *a = NULL, *b = NULL;
    for (; bytes >= MEMBW_MIN_BYTES; bytes /= 2) {
        if (cudaMalloc(&a, bytes) == cudaSuccess && cudaMalloc(&b, bytes) == cudaSuccess)
            break;
        cudaGetLastError();
        if (a)
            cudaFree(a);
        a = b = NULL;
    }
    if (!a) {
        snprintf(out->how, sizeof out->how, "no device memory for two %zu MiB buffers", MEMBW_MIN_BYTES >> 20);
        return -1;
    }
    cudaStream_t st = NULL;
    float ms = -1;
    if (cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking) == cudaSuccess) {
        ms = membw_time(a, b, bytes, st);
        cudaStreamDestroy(st);
    } else
        cudaGetLastError();
    cudaFree(a);
    cudaFree(b);
    if (!(ms > 0)) {
        snprintf(out->how, sizeof out->how, "the device-to-device copy failed or took no measurable time");
        return -1;
    }
    out->bytes_per_s = 2.0 * (double)bytes / (ms * 1e-3);
    int dev = 0, l2 = 0;
    if (cudaGetDevice(&dev) == cudaSuccess && cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev) == cudaSuccess &&
        l2 > 0)
        out->cache_bytes = (uint64_t)l2;
    else
        cudaGetLastError();
    int k = snprintf(out->how, sizeof out->how,
                     "device-to-device cudaMemcpy of %zu MiB, bytes read + written, CUDA events, median of %d "
                     "after %d warm-up copies; L2 %d MB",
                     bytes >> 20, MEMBW_RUNS, MEMBW_WARM, (int)(out->cache_bytes >> 20));
    if (bytes < want && k > 0 && (size_t)k < sizeof out->how)
        snprintf(out->how + k, sizeof out->how - (size_t)k, "; 1024 MiB could not be allocated");
    return 0;
}
