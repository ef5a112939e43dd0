/* sampler: picks the next token id from one row of logits. Greedy (argmax,
 * lowest id on ties) when temperature is 0; otherwise softmax(logits / T),
 * then top-k, then top-p (nucleus) over the renormalized top-k, then a draw
 * from the sampler's own PRNG (xoshiro256**, seeded through splitmix64; no
 * global state), so the same seed gives the same sequence of draws. Owns its
 * parameters, its PRNG state and a scratch buffer of candidates. */
#ifndef XF_SAMPLER_H
#define XF_SAMPLER_H

#include <stdint.h>

#include "err.h"

typedef struct samp_params {
    float temperature; /* 0: greedy; > 0: sample; < 0 or NaN: error */
    int top_k;         /* 0: off; > 0: keep the k most likely; < 0: error */
    float top_p;       /* in (0, 1]; 1: off */
    uint64_t seed;
} samp_params;

typedef struct xf_sampler xf_sampler;

/* greedy: temperature 0, top_k 0, top_p 1, seed 0 */
samp_params samp_default_params(void);
/* Validates p: an error names the parameter and its value. */
int samp_check_params(const samp_params *p, xf_err *err);
xf_sampler *samp_new(const samp_params *p, xf_err *err);
void samp_free(xf_sampler *s);
/* New parameters; the PRNG restarts from p->seed. */
int samp_set_params(xf_sampler *s, const samp_params *p, xf_err *err);
const samp_params *samp_get_params(const xf_sampler *s);

/* logits: [n_vocab]. Returns the id, or -1 with an error for a NaN or +Inf
 * logit (named by index: never silently picked around), for logits that are
 * all -Inf, or for n_vocab <= 0. -Inf logits are never drawn. A sampled (not
 * greedy) call consumes exactly one PRNG draw. */
int32_t samp_sample(xf_sampler *s, const float *logits, int n_vocab, xf_err *err);

#endif
