/* watch.cu: the device side of breakpoint conditions in a captured decode
 * pass (kern_cuda_watch). The built-in conditions the graph can check
 * are all "some element is": NaN, +-Inf, or finite with |v| > X (absmax
 * > X is exactly that, as tensor_stats computes absmax over the finite
 * values). So no reduction is needed: every thread tests its elements and
 * a warp that finds one writes 1 to the flag, a word of pinned host memory
 * the kernel reaches through its device address (no copy node, no reset
 * node: the host clears it before each launch and reads it after the
 * stream's sync). One launch checks every watched tensor of a graph, at
 * its end: the tensors stay in their buffers through the pass, so the
 * check costs one node a pass however many ops it watches. */
#include "cuda_internal.h"
#include "kernels_cuda.h"

#define KW_THREADS 256
#define KW_PER_THREAD 8 /* elements a thread tests per block-stride */
#define KW_GRID_X 32    /* blocks per watched tensor at most */

__global__ void __launch_bounds__(KW_THREADS) kw_kernel(const kern_watch *w, int *flag)
{
    KC_PDL_TRIGGER();
    KC_PDL_WAIT(); /* the tensors are the pass's */
    const kern_watch d = w[blockIdx.y];
    const float *x = d.x;
    bool hit = false;
    int64_t step = (int64_t)gridDim.x * KW_THREADS;
    for (int64_t i = (int64_t)blockIdx.x * KW_THREADS + threadIdx.x; i < d.n; i += step) {
        float v = x[i];
        if (d.kind == KERN_WATCH_NAN)
            hit |= isnan(v);
        else if (d.kind == KERN_WATCH_INF)
            hit |= isinf(v);
        else
            hit |= isfinite(v) && (double)fabsf(v) > d.thr;
    }
    if (__any_sync(0xffffffffu, hit) && (threadIdx.x & 31) == 0)
        *(volatile int *)flag = 1;
}

extern "C" int kern_cuda_watch(kern_ctx *ctx, const kern_watch *w_dev, int n, int64_t max_numel, int *flag_dev)
{
    if (!ctx || !w_dev || !flag_dev || n <= 0 || n > 65535 || max_numel <= 0)
        return -1;
    int64_t want = (max_numel + (int64_t)KW_THREADS * KW_PER_THREAD - 1) / ((int64_t)KW_THREADS * KW_PER_THREAD);
    dim3 grid((unsigned)(want < KW_GRID_X ? want : KW_GRID_X), (unsigned)n);
    return kc_launch_pdl(kw_kernel, grid, dim3(KW_THREADS), 0, kc_stream(ctx), w_dev, flag_dev);
}

extern "C" int *kern_cuda_host_dev_ptr(void *host)
{
    void *d = NULL;
    if (!host || cudaHostGetDevicePointer(&d, host, 0) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return (int *)d;
}
