/* lens: owns the `lens` command (the logit lens of every layer at one
 * position, one row a layer) and what it shares with `topk`: the top K of a
 * logits row with softmax probabilities, and a token's quoted piece. The
 * lens itself (final norm + unembedding of one row) is engine/lens.c. */
#ifndef XF_LENS_H
#define XF_LENS_H

#include <stddef.h>
#include <stdint.h>

typedef struct xf_repl xf_repl;

typedef struct lens_top {
    int id;
    double logit, p; /* p: softmax over the whole row */
} lens_top;

/* the k largest of lg[V], largest first; returns how many (<= k) */
int lens_topk(const float *lg, int V, int k, lens_top *out);
/* token id's piece quoted for the terminal ('\n', ' the'), "?" when unknown */
void lens_piece(xf_repl *r, int32_t id, char *buf, size_t size);

int cmd_lens(xf_repl *r, int argc, char **argv, const char *rest);

#endif
