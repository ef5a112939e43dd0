/* graph.cu: what exec needs to capture a decode pass as a CUDA graph and
 * replay it: its own stream (capture is not allowed on the legacy default
 * stream), pinned host memory for the per-pass values that a graph copies
 * to the device as its first node, capture/instantiate/launch, and the two
 * kernels that only the fast path uses: storing rows into the KV cache at a
 * position read from the device, and GPT-2's q/k/v split fused with those
 * stores (one launch instead of five per layer). Every CUDA error becomes
 * -1 (or NULL) and is cleared. */
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "kernels_cuda.h"

struct kern_cuda_graph {
    cudaGraphExec_t exec;
    size_t nodes;
};

extern "C" int kern_cuda_stream_new(kern_ctx *ctx)
{
    if (!ctx || ctx->stream)
        return -1;
    cudaStream_t s = NULL;
    /* non-blocking: no implicit ordering with the legacy stream, which exec
     * never uses (every copy and kernel of a pass names ctx->stream) */
    if (cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    ctx->stream = s;
    return 0;
}

extern "C" void kern_cuda_stream_free(kern_ctx *ctx)
{
    if (!ctx || !ctx->stream)
        return;
    cudaStream_t s = (cudaStream_t)ctx->stream;
    if (cudaStreamSynchronize(s) != cudaSuccess)
        cudaGetLastError();
    if (cudaStreamDestroy(s) != cudaSuccess)
        cudaGetLastError();
    ctx->stream = NULL;
}

extern "C" void *kern_cuda_host_alloc(size_t bytes)
{
    void *p = NULL;
    if (cudaMallocHost(&p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

extern "C" void kern_cuda_host_free(void *p)
{
    if (p && cudaFreeHost(p) != cudaSuccess)
        cudaGetLastError();
}

extern "C" int kern_cuda_capture_begin(kern_ctx *ctx)
{
    if (!ctx || !ctx->stream)
        return -1;
    /* thread-local: another thread's unrelated CUDA calls do not break it */
    if (cudaStreamBeginCapture((cudaStream_t)ctx->stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    return 0;
}

extern "C" kern_cuda_graph *kern_cuda_capture_end(kern_ctx *ctx, int keep)
{
    if (!ctx || !ctx->stream)
        return NULL;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture((cudaStream_t)ctx->stream, &g);
    kern_cuda_graph *out = NULL;
    if (e == cudaSuccess && g && keep) {
        out = (kern_cuda_graph *)calloc(1, sizeof *out);
        if (out && (cudaGraphGetNodes(g, NULL, &out->nodes) != cudaSuccess ||
                    cudaGraphInstantiate(&out->exec, g, 0) != cudaSuccess)) {
            free(out);
            out = NULL;
        }
    }
    if (g)
        cudaGraphDestroy(g);
    if (!out)
        cudaGetLastError();
    return out;
}

extern "C" int kern_cuda_graph_launch(const kern_cuda_graph *g, kern_ctx *ctx)
{
    if (!g || !ctx || !ctx->stream)
        return -1;
    if (cudaGraphLaunch(g->exec, (cudaStream_t)ctx->stream) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    return 0;
}

extern "C" size_t kern_cuda_graph_nodes(const kern_cuda_graph *g) { return g ? g->nodes : 0; }

extern "C" void kern_cuda_graph_free(kern_cuda_graph *g)
{
    if (!g)
        return;
    if (cudaGraphExecDestroy(g->exec) != cudaSuccess)
        cudaGetLastError();
    free(g);
}

/* ---- rows into the KV cache at the step's position ---------------------- */

template <typename T>
__global__ void graph_rows_store(T *dst, const T *src, int64_t row, int64_t total, int pos0, const int32_t *step)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    if (step)
        pos0 = step[KERN_STEP_POS0];
    T *d = dst + (int64_t)pos0 * row;
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < total; o += (int64_t)gridDim.x * blockDim.x)
        d[o] = src[o];
}

extern "C" int kern_cuda_rows_store(kern_ctx *ctx, float *cache, const float *src, int64_t row, int64_t n, int pos0,
                                    const int32_t *dev_step)
{
    if (!cache || !src || row <= 0 || n < 0 || pos0 < 0)
        return -1;
    if (n == 0)
        return 0;
    cudaStream_t st = kc_stream(ctx);
    if (row % 4 == 0 && kc_aligned16(cache) && kc_aligned16(src))
        graph_rows_store<float4><<<kc_grid_1d(n * row / 4, 256), 256, 0, st>>>(
            (float4 *)cache, (const float4 *)src, row / 4, n * row / 4, pos0, dev_step);
    else
        graph_rows_store<float><<<kc_grid_1d(n * row, 256), 256, 0, st>>>(cache, src, row, n * row, pos0, dev_step);
    return kc_launch_ok();
}

/* ---- GPT-2: qkv [n, 3d] -> q, k, v [n, d], k and v also into the caches -- */

template <typename T>
__global__ void graph_qkv_split(const T *qkv, T *q, T *k, T *v, T *kc, T *vc, int64_t n, int64_t d, int pos0,
                                const int32_t *step)
{
    KC_PDL_TRIGGER(); /* the next kernel may start taking free slots */
    if (step)
        pos0 = step[KERN_STEP_POS0];
    int64_t w = 3 * d;
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < n * w; o += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = o / w, c = o % w;
        int part = (int)(c / d);
        int64_t j = c % d;
        T val = qkv[o];
        if (part == 0) {
            q[i * d + j] = val;
        } else if (part == 1) {
            k[i * d + j] = val;
            if (kc)
                kc[(pos0 + i) * d + j] = val;
        } else {
            v[i * d + j] = val;
            if (vc)
                vc[(pos0 + i) * d + j] = val;
        }
    }
}

extern "C" int kern_cuda_qkv_split(kern_ctx *ctx, const float *qkv, float *q, float *k, float *v, float *kc, float *vc,
                                   int64_t n, int64_t d, int pos0, const int32_t *dev_step)
{
    if (!qkv || !q || !k || !v || n < 0 || d <= 0 || pos0 < 0)
        return -1;
    if (n == 0)
        return 0;
    cudaStream_t st = kc_stream(ctx);
    bool vec = d % 4 == 0 && kc_aligned16(qkv) && kc_aligned16(q) && kc_aligned16(k) && kc_aligned16(v) &&
               (!kc || kc_aligned16(kc)) && (!vc || kc_aligned16(vc));
    if (vec)
        graph_qkv_split<float4><<<kc_grid_1d(n * 3 * d / 4, 256), 256, 0, st>>>(
            (const float4 *)qkv, (float4 *)q, (float4 *)k, (float4 *)v, (float4 *)kc, (float4 *)vc, n, d / 4, pos0,
            dev_step);
    else
        graph_qkv_split<float><<<kc_grid_1d(n * 3 * d, 256), 256, 0, st>>>(qkv, q, k, v, kc, vc, n, d, pos0, dev_step);
    return kc_launch_ok();
}

/* ---- per-op timing with events (profile): no sync between ops -------------- */

extern "C" void *kern_cuda_event_new(void)
{
    cudaEvent_t e = NULL;
    return cudaEventCreate(&e) == cudaSuccess ? (void *)e : NULL;
}

extern "C" void kern_cuda_event_free(void *ev)
{
    if (ev)
        cudaEventDestroy((cudaEvent_t)ev);
}

extern "C" int kern_cuda_event_record(void *ev, kern_ctx *ctx)
{
    return cudaEventRecord((cudaEvent_t)ev, (cudaStream_t)ctx->stream) == cudaSuccess ? 0 : -1;
}

extern "C" float kern_cuda_event_elapsed_ms(void *start, void *end)
{
    float ms = -1;
    if (cudaEventElapsedTime(&ms, (cudaEvent_t)start, (cudaEvent_t)end) != cudaSuccess)
        return -1;
    return ms;
}

/* ---- stats of a tensor on the device (print, stats): 8 doubles come back,
 * not the tensor. One block: the second pass needs the mean of the first. --- */

#define KC_STATS_THREADS 1024

__global__ void kc_stats_kernel(const float *x, int64_t n, double *out /* [8] */)
{
    __shared__ double s_sum[KC_STATS_THREADS], s_min[KC_STATS_THREADS], s_max[KC_STATS_THREADS],
        s_abs[KC_STATS_THREADS];
    __shared__ long long s_nan[KC_STATS_THREADS], s_inf[KC_STATS_THREADS];
    int t = threadIdx.x;
    double sum = 0, mn = INFINITY, mx = -INFINITY, ab = 0;
    long long nn = 0, ni = 0;
    for (int64_t i = t; i < n; i += blockDim.x) {
        float v = x[i];
        if (isnan(v)) {
            nn++;
            continue;
        }
        if (isinf(v)) {
            ni++;
            continue;
        }
        sum += v;
        mn = fmin(mn, (double)v);
        mx = fmax(mx, (double)v);
        ab = fmax(ab, fabs((double)v));
    }
    s_sum[t] = sum, s_min[t] = mn, s_max[t] = mx, s_abs[t] = ab, s_nan[t] = nn, s_inf[t] = ni;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w /= 2) {
        if (t < w) {
            s_sum[t] += s_sum[t + w];
            s_min[t] = fmin(s_min[t], s_min[t + w]);
            s_max[t] = fmax(s_max[t], s_max[t + w]);
            s_abs[t] = fmax(s_abs[t], s_abs[t + w]);
            s_nan[t] += s_nan[t + w];
            s_inf[t] += s_inf[t + w];
        }
        __syncthreads();
    }
    long long finite = n - s_nan[0] - s_inf[0];
    double mean = finite > 0 ? s_sum[0] / (double)finite : 0;
    __syncthreads();
    /* two passes, as tensor_stats does: the one-pass formula loses digits */
    double sq = 0;
    for (int64_t i = t; i < n; i += blockDim.x) {
        float v = x[i];
        if (isfinite(v))
            sq += ((double)v - mean) * ((double)v - mean);
    }
    s_sum[t] = sq;
    __syncthreads();
    for (int w = blockDim.x / 2; w > 0; w /= 2) {
        if (t < w)
            s_sum[t] += s_sum[t + w];
        __syncthreads();
    }
    if (t == 0) {
        out[0] = s_min[0];
        out[1] = s_max[0];
        out[2] = mean;
        out[3] = finite > 0 ? sqrt(s_sum[0] / (double)finite) : 0;
        out[4] = s_abs[0];
        out[5] = (double)n;
        out[6] = (double)s_nan[0];
        out[7] = (double)s_inf[0];
    }
}

extern "C" int kern_cuda_stats(kern_ctx *ctx, const float *x, int64_t n, double *out)
{
    cudaStream_t st = (cudaStream_t)ctx->stream;
    double *d = NULL;
    if (cudaMallocAsync((void **)&d, 8 * sizeof(double), st) != cudaSuccess)
        return -1;
    kc_stats_kernel<<<1, KC_STATS_THREADS, 0, st>>>(x, n, d);
    int rc = cudaGetLastError() == cudaSuccess &&
                     cudaMemcpyAsync(out, d, 8 * sizeof(double), cudaMemcpyDeviceToHost, st) == cudaSuccess
                 ? 0
                 : -1;
    cudaFreeAsync(d, st);
    if (cudaStreamSynchronize(st) != cudaSuccess)
        rc = -1;
    return rc;
}
