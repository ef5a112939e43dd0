/* split_float.cu: which of BF16 and F32 weights take the split prefill
 * product (kern_cuda_split_float, XF_SPLIT_FLOAT; kc_split_float for
 * matmul_split.cu), and their codes made on the host by the device's code
 * (split_float.h) for the tests (kern_cuda_split_codes_host). */
#include <stdlib.h>
#include <string.h>

#include "cuda_internal.h"
#include "kernels_cuda.h"
#include "split_float.h"

/* which of BF16 (1) and F32 (2) take the split product: XF_SPLIT_FLOAT in
 * the environment at first use ("bf16", "f32", "all" or "1"; else off), or
 * kern_cuda_split_float; -1 not yet read */
static int msf_on = -1;

static int msf_types(void)
{
    if (msf_on < 0) {
        const char *e = getenv("XF_SPLIT_FLOAT");
        msf_on = 0;
        if (e && (strcmp(e, "all") == 0 || strcmp(e, "1") == 0))
            msf_on = 3;
        else if (e && strcmp(e, "bf16") == 0)
            msf_on = 1;
        else if (e && strcmp(e, "f32") == 0)
            msf_on = 2;
    }
    return msf_on;
}

extern "C" int kern_cuda_split_float(int types)
{
    int was = msf_types();
    if (types >= 0 && types <= 3)
        msf_on = types;
    return was;
}

int kc_split_float(int t)
{
    return t == XF_TYPE_BF16 ? msf_types() & 1 : t == XF_TYPE_F32 ? (msf_types() & 2) != 0 : 0;
}

extern "C" int kern_cuda_split_codes_host(int t, const void *w, int64_t rows, int64_t k, uint16_t *q,
                                          float *a)
{
    if ((t != XF_TYPE_BF16 && t != XF_TYPE_F32) || !w || !q || !a || rows <= 0 || k <= 0 || k % 32)
        return -1;
    bool two = t == XF_TYPE_F32;
    int64_t kp = msf_kp(two, k);
    uint64_t w_row = kc_row_bytes(t, k);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t e0 = 0; e0 < k; e0 += 8) {
            __half v[8], v2[8];
            float g[2];
            msf_code8((const uint8_t *)w + (uint64_t)r * w_row, e0, !two, v, v2, g);
            int64_t at = r * kp + (two ? msf_f32_at(e0) : e0);
            memcpy(q + at, v, sizeof v);
            if (two)
                memcpy(q + at + 32, v2, sizeof v2);
            if (e0 % 32 == 0) {
                float *ga = a + r * (kp / 32) + (two ? 2 : 1) * (e0 / 32);
                ga[0] = g[0];
                if (two)
                    ga[1] = g[1];
            }
        }
    return 0;
}
