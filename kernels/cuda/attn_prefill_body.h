/* attn_prefill_body.h: what the prefill attention's kernels share (the
 * opt KQ and KQV in attn_prefill.cu, their fusion in
 * attn_prefill_fused.cu): the tile sizes, the f32 -> two-TF32 split, the
 * m16n8k8 MMA, one unit of a warp's 32 x 32 sums, and a score as the plain
 * chain. attn_prefill.cu's header says why the sums are made this way.
 * Included only by those two .cu files. */
#ifndef XF_ATTN_PREFILL_BODY_H
#define XF_ATTN_PREFILL_BODY_H

#include <stdint.h>

#define AP_T 64 /* query rows, and keys (KQ) or output dims (KQV), a block */
#define AP_K 32 /* head dims (KQ) or keys (KQV) a step: one unit of the sums */
#define AP_THREADS 128
#define AP_LDA 36 /* a [row][k] tile's row: element (gid, tig) at bank 4 gid + tig */
#define AP_LDV 72 /* KQV's values [key][dim]: element (tig, gid) at bank 8 tig + gid */

/* f32 -> (big, small) TF32 operands: big = x rounded to 11 bits, small =
 * the rest rounded the same; big is masked so that x - big is exact */
__device__ __forceinline__ void ap_split(float x, uint32_t &big, uint32_t &small)
{
    uint32_t b, s;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(b) : "f"(x));
    b &= 0xffffe000u;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(s) : "f"(x - __uint_as_float(b)));
    big = b;
    small = s & 0xffffe000u;
}

__device__ __forceinline__ void ap_mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2])
{
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* a warp's 32 x 32 sums [m16 tile][n8 tile][fragment element] = 0 */
__device__ __forceinline__ void ap_zero(float (&a)[2][4][4])
{
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                a[mt][nt][e] = 0.0f;
}

/* One unit (AP_K of k) of a warp's 32 x 32 outputs: c from zero, then
 * acc += c. a: [row][k] (ld LDA), the warp's rows from wr; b: KT (KQ's
 * keys) [n][k] (ld AP_LDA), else (KQV's values) [k][n] (ld AP_LDV), the
 * warp's columns from wc. Fragments as the PTX ISA lays out m16n8k8:
 * a (row gid | gid + 8, k tig | tig + 4), b (k tig | tig + 4, n gid),
 * c (row gid | gid + 8, n 2 tig | 2 tig + 1). */
template <bool KT, int LDA>
__device__ __forceinline__ void ap_unit(float (&acc)[2][4][4], const float *a, const float *b, int wr, int wc,
                                        int gid, int tig)
{
    float c[2][4][4];
    ap_zero(c);
#pragma unroll
    for (int k = 0; k < AP_K; k += 8) {
        uint32_t ab[2][4], as[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
            const float *r0 = a + (wr + 16 * mt + gid) * LDA, *r8 = r0 + 8 * LDA;
            ap_split(r0[k + tig], ab[mt][0], as[mt][0]);
            ap_split(r8[k + tig], ab[mt][1], as[mt][1]);
            ap_split(r0[k + tig + 4], ab[mt][2], as[mt][2]);
            ap_split(r8[k + tig + 4], ab[mt][3], as[mt][3]);
        }
        /* one n8 tile's b at a time: fewer registers live */
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            uint32_t bb[2], bs[2];
            int col = wc + 8 * nt + gid;
            if (KT) {
                ap_split(b[col * AP_LDA + k + tig], bb[0], bs[0]);
                ap_split(b[col * AP_LDA + k + tig + 4], bb[1], bs[1]);
            } else {
                ap_split(b[(k + tig) * AP_LDV + col], bb[0], bs[0]);
                ap_split(b[(k + tig + 4) * AP_LDV + col], bb[1], bs[1]);
            }
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                ap_mma(c[mt][nt], as[mt], bb);
                ap_mma(c[mt][nt], ab[mt], bs);
                ap_mma(c[mt][nt], ab[mt], bb);
            }
        }
    }
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                acc[mt][nt][e] = __fadd_rn(acc[mt][nt][e], c[mt][nt][e]);
}

/* the score of query i (row of q) and key row kr as the plain chain, for an
 * output the split form left non-finite */
static __device__ __noinline__ float ap_kq_exact(const float *qr, const float *kr, int hd)
{
    float acc = 0.0f;
    for (int d = 0; d < hd; d++)
        acc = __fmaf_rn(qr[d], kr[d], acc);
    return acc;
}

#endif
