/* bench_tokenizer: encode speed of the GPT-2 and Qwen2 tokenizers on one core
 * over ~2 MB of synthesized English-like text (common words in Zipf-like
 * frequencies, some made-up rare words, numbers, punctuation, paragraphs).
 * Prints MB/s, the median of 5 runs, per tokenizer.
 * Usage: bench_tokenizer [VOCAB_DIR] (default: tests/fixtures/vocab of the source tree). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gguf.h"
#include "tokenizer.h"

static const char *const k_words[] = {
    "the", "of", "and", "to", "a", "in", "that", "is", "was", "he", "for", "it", "with", "as", "his", "on", "be",
    "at", "by", "I", "had", "not", "are", "but", "from", "or", "have", "an", "they", "which", "one", "you", "were",
    "her", "all", "she", "there", "would", "their", "we", "him", "been", "has", "when", "who", "will", "more", "no",
    "if", "out", "so", "said", "what", "up", "its", "about", "into", "than", "them", "can", "only", "other", "new",
    "some", "could", "time", "these", "two", "may", "then", "do", "first", "any", "my", "now", "such", "like", "our",
    "over", "man", "me", "even", "most", "made", "after", "also", "did", "many", "before", "must", "through", "back",
    "years", "where", "much", "your", "way", "well", "down", "should", "because", "each", "just", "those", "people",
    "how", "too", "little", "state", "good", "very", "make", "world", "still", "own", "see", "men", "work", "long",
    "get", "here", "between", "both", "life", "being", "under", "never", "day", "same", "another", "know", "while",
    "last", "might", "us", "great", "old", "year", "off", "come", "since", "against", "go", "came", "right", "used",
    "take", "three", "house", "river", "morning", "captain", "letter", "window", "garden", "evening", "silence",
    "thought", "remembered", "understanding", "extraordinary", "nevertheless", "immediately", "circumstances",
    "particularly", "government", "experience", "themselves", "something", "without", "against", "mountain",
    "ship", "harbour", "village", "journey", "question", "answered", "whispered", "carriage", "lantern", "anxious",
    "weather", "northern", "fortune", "merchant", "kingdom", "soldiers", "children", "mother", "father", "doctor",
};
#define N_WORDS (sizeof k_words / sizeof *k_words)

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Zipf-like pick: low indexes (common words) far more often */
static size_t pick_word(uint64_t *s)
{
    double u = (double)(rng_next(s) >> 11) / 9007199254740992.0;
    size_t i = (size_t)((double)N_WORDS * u * u * u);
    return i < N_WORDS ? i : N_WORDS - 1;
}

static char *make_text(size_t target, size_t *len)
{
    char *t = malloc(target + 256);
    size_t o = 0;
    uint64_t s = 0x9E3779B97F4A7C15ULL;
    int in_sentence = 0;
    while (o < target) {
        uint64_t r = rng_next(&s) % 1000;
        char w[64];
        if (r < 40) { /* a made-up rare word: BPE does real work on it */
            size_t n = 4 + rng_next(&s) % 8;
            for (size_t k = 0; k < n; k++)
                w[k] = (char)('a' + rng_next(&s) % 26);
            w[n] = 0;
        } else if (r < 55) {
            snprintf(w, sizeof w, "%u", (unsigned)(rng_next(&s) % 100000));
        } else {
            snprintf(w, sizeof w, "%s", k_words[pick_word(&s)]);
        }
        if (!in_sentence && w[0] >= 'a' && w[0] <= 'z')
            w[0] = (char)(w[0] - 'a' + 'A');
        if (o > 0 && t[o - 1] != '\n')
            t[o++] = ' ';
        size_t wl = strlen(w);
        memcpy(t + o, w, wl);
        o += wl;
        in_sentence = 1;
        uint64_t p = rng_next(&s) % 100;
        if (p < 6) {
            t[o++] = ',';
        } else if (p < 12) {
            const char *end = p < 10 ? "." : p < 11 ? "?" : "!";
            t[o++] = end[0];
            in_sentence = 0;
            if (rng_next(&s) % 8 == 0) {
                t[o++] = '\n';
                t[o++] = '\n';
            }
        } else if (p < 13) {
            memcpy(t + o, "'s", 2);
            o += 2;
        }
    }
    t[o] = 0;
    *len = o;
    return t;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int bench_one(const char *dir, const char *file, const char *text, size_t len)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    xf_err err = {{0}};
    double t0 = now_s();
    gguf_file *g = gguf_open(path, &err);
    if (!g) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    xf_tokenizer *t = tok_new_from_gguf(g, &err);
    gguf_close(g);
    if (!t) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    double load = now_s() - t0;
    double mbs[5];
    size_t n_ids = 0;
    for (int r = 0; r < 5; r++) {
        int32_t *ids;
        double a = now_s();
        if (tok_encode(t, text, len, false, &ids, &n_ids, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            tok_free(t);
            return -1;
        }
        double b = now_s();
        free(ids);
        mbs[r] = (double)len / 1e6 / (b - a);
    }
    qsort(mbs, 5, sizeof *mbs, cmp_double);
    printf("%-24s load %6.1f ms  %zu bytes -> %zu tokens  encode %.1f MB/s (median of 5; min %.1f max %.1f)\n",
           file, load * 1e3, len, n_ids, mbs[2], mbs[0], mbs[4]);
    tok_free(t);
    return 0;
}

int main(int argc, char **argv)
{
    char dir[2048];
    if (argc > 1) {
        snprintf(dir, sizeof dir, "%s", argv[1]);
    } else if (getenv("XF_SOURCE_DIR")) {
        snprintf(dir, sizeof dir, "%s/tests/fixtures/vocab", getenv("XF_SOURCE_DIR"));
    } else {
        /* __FILE__ is this source's path: the fixtures lie next to it */
        snprintf(dir, sizeof dir, "%s", __FILE__);
        char *slash = strrchr(dir, '/');
        if (slash)
            snprintf(slash, sizeof dir - (size_t)(slash - dir), "/fixtures/vocab");
        else
            snprintf(dir, sizeof dir, "fixtures/vocab");
    }
    size_t len;
    char *text = make_text((size_t)2 << 20, &len);
    int rc = 0;
    rc |= bench_one(dir, "ggml-vocab-gpt-2.gguf", text, len);
    rc |= bench_one(dir, "ggml-vocab-qwen2.gguf", text, len);
    free(text);
    return rc ? 1 : 0;
}
