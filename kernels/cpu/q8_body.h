/* q8_body: the x86 bodies of the q8 matmul's integer block dots
 * (q8_matmul.c), included twice there: once with Q8_ISA_VNNI 0 under
 * target avx2 (maddubs + madd) and once with Q8_ISA_VNNI 1 under target
 * avx2+avxvnni (dpbusd). One text, two compilations, because a function
 * that may contain a VNNI instruction must not be inlined into the plain
 * AVX2 one (GCC refuses it, and the AVX2 path must never execute it).
 * Needs Q8_SFX(name) (the per-ISA suffix), Q8_TGT (the target attribute)
 * and the q8_blk type of q8_matmul.c. Not a public header. */

#define Q8_IN static inline __attribute__((always_inline)) Q8_TGT

/* sum over each 4 bytes of u8 a times s8 b, in 8 i32 lanes: lane i covers
 * bytes 4i..4i+3. maddubs saturates its i16 pair sums, which never
 * happens here: a <= 63 (Q4/Q6 quants, offsets) or a = |w| <= 128 (Q8_0)
 * and |b| <= 127, so a pair is at most 2*128*127 = 32512 < 32767. */
Q8_IN __m256i Q8_SFX(dot)(__m256i a, __m256i b)
{
#if Q8_ISA_VNNI
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), a, b);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1));
#endif
}

Q8_IN float Q8_SFX(hsum)(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* an f16 scale at p */
Q8_IN float Q8_SFX(h)(const uint8_t *p) { return _cvtsh_ss((unsigned short)(p[0] | (p[1] << 8))); }

Q8_IN __m256i Q8_SFX(ld)(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* 16 bytes of nibbles: low nibbles in bytes 0-15, high in 16-31 */
Q8_IN __m256i Q8_SFX(nib16)(const uint8_t *p)
{
    const __m128i v = _mm_loadu_si128((const __m128i *)p), m = _mm_set1_epi8(15);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_and_si128(v, m)),
                                   _mm_and_si128(_mm_srli_epi16(v, 4), m), 1);
}

/* Every row function below computes out[t] = w . x_t for nt <= Q8_NT
 * tokens at once (x_t = x + t*xs blocks): a weight block is unpacked once
 * and used for every token (prefill), nt a constant after inlining. */

/* Q8_0: sum(w*x) with w signed: |w| times x carrying w's sign */
Q8_IN void Q8_SFX(row_q8_0)(const uint8_t *w, const q8_blk *x, int64_t xs, int64_t nb, const int nt, float *out)
{
    __m256 acc[Q8_NT];
    for (int t = 0; t < nt; t++)
        acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *p = w + 34 * i;
        const __m256i q = Q8_SFX(ld)(p + 2), aq = _mm256_abs_epi8(q);
        const float d = Q8_SFX(h)(p);
        for (int t = 0; t < nt; t++) {
            const q8_blk *xb = x + t * xs + i;
            const __m256i s = Q8_SFX(dot)(aq, _mm256_sign_epi8(Q8_SFX(ld)(xb->q), q));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d * xb->d), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++)
        out[t] = Q8_SFX(hsum)(acc[t]);
}

/* Q4_0: sum((q-8)*x) = sum(q*x) - 8*sum(x), q the unsigned nibble */
Q8_IN void Q8_SFX(row_q4_0)(const uint8_t *w, const q8_blk *x, int64_t xs, int64_t nb, const int nt, float *out)
{
    __m256 acc[Q8_NT];
    for (int t = 0; t < nt; t++)
        acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *p = w + 18 * i;
        const __m256i q = Q8_SFX(nib16)(p + 2);
        const float d = Q8_SFX(h)(p);
        for (int t = 0; t < nt; t++) {
            const q8_blk *xb = x + t * xs + i;
            const __m256i xq = Q8_SFX(ld)(xb->q);
            const __m256i s = _mm256_sub_epi32(Q8_SFX(dot)(q, xq), _mm256_slli_epi32(Q8_SFX(ld)(xb->ls), 3));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d * xb->d), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++)
        out[t] = Q8_SFX(hsum)(acc[t]);
}

/* Q5_0: sum((q-16)*x), q = nibble | bit j of the u32 qh << 4 for element
 * j (elements 0-15 the low nibbles, 16-31 the high): the 32 bits spread to
 * bytes as llama.cpp's bytes_from_bits_32 (byte j gets byte j/8 of qh, all
 * its other bits set, so it is 0xff exactly when bit j%8 is set) */
Q8_IN void Q8_SFX(row_q5_0)(const uint8_t *w, const q8_blk *x, int64_t xs, int64_t nb, const int nt, float *out)
{
    __m256 acc[Q8_NT];
    for (int t = 0; t < nt; t++)
        acc[t] = _mm256_setzero_ps();
    const __m256i o16 = _mm256_set1_epi8(16), ones = _mm256_set1_epi64x(-1);
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i others = _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe);
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *p = w + 22 * i;
        int32_t qh;
        memcpy(&qh, p + 2, 4);
        const __m256i hb = _mm256_cmpeq_epi8(
            _mm256_or_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(qh), spread), others), ones);
        const __m256i q = _mm256_or_si256(Q8_SFX(nib16)(p + 6), _mm256_and_si256(hb, o16));
        const float d = Q8_SFX(h)(p);
        for (int t = 0; t < nt; t++) {
            const q8_blk *xb = x + t * xs + i;
            const __m256i xq = Q8_SFX(ld)(xb->q);
            const __m256i s = _mm256_sub_epi32(Q8_SFX(dot)(q, xq), _mm256_slli_epi32(Q8_SFX(ld)(xb->ls), 4));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(d * xb->d), acc[t]);
        }
    }
    for (int t = 0; t < nt; t++)
        out[t] = Q8_SFX(hsum)(acc[t]);
}

/* Q4_K: per sub-block s of 32, d*sc_s*dx*sum(q*x) - dmin*mn_s*dx*sum(x);
 * qs[32c + l] holds sub-block 2c (low nibble) and 2c+1 (high), in order */
Q8_IN void Q8_SFX(row_q4_k)(const uint8_t *w, const q8_blk *x, int64_t xs, int64_t nb, const int nt, float *out)
{
    __m256 acc[Q8_NT];
    float mins[Q8_NT];
    for (int t = 0; t < nt; t++) {
        acc[t] = _mm256_setzero_ps();
        mins[t] = 0;
    }
    const __m256i m15 = _mm256_set1_epi8(15);
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *p = w + 144 * i;
        int sc[8], mn[8];
        quant_k4_scales(p + 4, sc, mn);
        const float d = Q8_SFX(h)(p), dmin = Q8_SFX(h)(p + 2);
        for (int c = 0; c < 4; c++) {
            const __m256i v = Q8_SFX(ld)(p + 16 + 32 * c);
            const __m256i lo = _mm256_and_si256(v, m15), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m15);
            const float d0 = d * (float)sc[2 * c], d1 = d * (float)sc[2 * c + 1];
            for (int t = 0; t < nt; t++) {
                const q8_blk *xb = x + t * xs + 8 * i;
                const __m256i s0 = Q8_SFX(dot)(lo, Q8_SFX(ld)(xb[2 * c].q));
                const __m256i s1 = Q8_SFX(dot)(hi, Q8_SFX(ld)(xb[2 * c + 1].q));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_set1_ps(d0 * xb[2 * c].d), acc[t]);
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_set1_ps(d1 * xb[2 * c + 1].d), acc[t]);
            }
        }
        for (int t = 0; t < nt; t++)
            for (int s = 0; s < 8; s++)
                mins[t] += dmin * (float)mn[s] * x[t * xs + 8 * i + s].d * (float)x[t * xs + 8 * i + s].sum;
    }
    for (int t = 0; t < nt; t++)
        out[t] = Q8_SFX(hsum)(acc[t]) - mins[t];
}

/* Q6_K: d*sc*sum((q-32)*x) per sub-block of 16. In half n (128 elements),
 * x block 4n+k gets q = nibble of ql[l] (k 0,1: low; 2,3: high; k odd:
 * ql[l+32]) | bits 2k..2k+1 of qh[l] << 4, l = 0..31; i32 lanes 0-3 of a
 * dot are elements 0-15 (scale sc[8n+2k]), lanes 4-7 elements 16-31. */
Q8_IN void Q8_SFX(row_q6_k)(const uint8_t *w, const q8_blk *x, int64_t xs, int64_t nb, const int nt, float *out)
{
    __m256 acc[Q8_NT];
    for (int t = 0; t < nt; t++)
        acc[t] = _mm256_setzero_ps();
    const __m256i m15 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *p = w + 210 * i;
        const float d = Q8_SFX(h)(p + 208);
        const int8_t *sc = (const int8_t *)(p + 192);
        for (int n = 0; n < 2; n++) {
            const __m256i a = Q8_SFX(ld)(p + 64 * n), b = Q8_SFX(ld)(p + 64 * n + 32);
            const __m256i h = Q8_SFX(ld)(p + 128 + 32 * n);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(a, m15), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(b, m15),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), m15),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b, 4), m15),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
            for (int k = 0; k < 4; k++) {
                const float e0 = d * (float)sc[8 * n + 2 * k], e1 = d * (float)sc[8 * n + 2 * k + 1];
                const __m256 dd = _mm256_setr_ps(e0, e0, e0, e0, e1, e1, e1, e1);
                for (int t = 0; t < nt; t++) {
                    const q8_blk *xb = x + t * xs + 8 * i + 4 * n + k;
                    const __m256i xq = Q8_SFX(ld)(xb->q);
                    const __m256i s = _mm256_sub_epi32(Q8_SFX(dot)(q[k], xq), _mm256_slli_epi32(Q8_SFX(ld)(xb->ls), 5));
                    acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dd, _mm256_set1_ps(xb->d)), acc[t]);
                }
            }
        }
    }
    for (int t = 0; t < nt; t++)
        out[t] = Q8_SFX(hsum)(acc[t]);
}

/* one entry per type, specialized for each token count 1..Q8_NT */
#define Q8_BY_NT(fn, nb)                                                                                     \
    Q8_TGT static void Q8_SFX(fn##_n)(const uint8_t *w, const q8_blk *x, int64_t xs, int64_t k, int nt,    \
                                      float *out)                                                            \
    {                                                                                                        \
        switch (nt) {                                                                                        \
        case 1: Q8_SFX(fn)(w, x, xs, nb, 1, out); break;                                                     \
        case 2: Q8_SFX(fn)(w, x, xs, nb, 2, out); break;                                                     \
        case 3: Q8_SFX(fn)(w, x, xs, nb, 3, out); break;                                                     \
        default: Q8_SFX(fn)(w, x, xs, nb, 4, out); break;                                                    \
        }                                                                                                    \
    }
Q8_BY_NT(row_q8_0, k / 32)
Q8_BY_NT(row_q4_0, k / 32)
Q8_BY_NT(row_q5_0, k / 32)
Q8_BY_NT(row_q4_k, k / 256)
Q8_BY_NT(row_q6_k, k / 256)
#undef Q8_BY_NT

/* out[t] = w . x_t for t < nt (1..Q8_NT), x_t = x + t*xs blocks */
Q8_TGT static void Q8_SFX(rows)(int type, const uint8_t *w, const q8_blk *x, int64_t xs, int64_t k, int nt, float *out)
{
    switch (type) {
    case XF_TYPE_Q8_0: Q8_SFX(row_q8_0_n)(w, x, xs, k, nt, out); break;
    case XF_TYPE_Q4_0: Q8_SFX(row_q4_0_n)(w, x, xs, k, nt, out); break;
    case XF_TYPE_Q5_0: Q8_SFX(row_q5_0_n)(w, x, xs, k, nt, out); break;
    case XF_TYPE_Q4_K: Q8_SFX(row_q4_k_n)(w, x, xs, k, nt, out); break;
    default: Q8_SFX(row_q6_k_n)(w, x, xs, k, nt, out); break;
    }
}

#undef Q8_IN
