/* utf8: the one strict UTF-8 decoder and encoder of the program (Unicode
 * Table 3-7: no overlongs, no surrogates, nothing above U+10FFFF). See utf8.h. */
#include "utf8.h"

/* One step of strict UTF-8 (Unicode Table 3-7) at p[0..n), n >= 1.
 * Returns 1: a valid character of *l bytes; 0: a valid but truncated prefix
 * of *l == n bytes (more input could complete it); -1: ill-formed, *l is the
 * length of its maximal subpart (the bytes one U+FFFD replaces). */
int utf8_step(const uint8_t *p, size_t n, size_t *l)
{
    uint8_t b0 = p[0];
    if (b0 < 0x80) {
        *l = 1;
        return 1;
    }
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 2;
    } else if (b0 == 0xE0) {
        need = 3;
        lo = 0xA0;
    } else if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) {
        need = 3;
    } else if (b0 == 0xED) {
        need = 3;
        hi = 0x9F; /* no surrogates */
    } else if (b0 == 0xF0) {
        need = 4;
        lo = 0x90;
    } else if (b0 >= 0xF1 && b0 <= 0xF3) {
        need = 4;
    } else if (b0 == 0xF4) {
        need = 4;
        hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        *l = 1;
        return -1;
    }
    for (size_t k = 1; k < need; k++) {
        if (k >= n) {
            *l = k;
            return 0;
        }
        uint8_t klo = k == 1 ? lo : 0x80, khi = k == 1 ? hi : 0xBF;
        if (p[k] < klo || p[k] > khi) {
            *l = k;
            return -1;
        }
    }
    *l = need;
    return 1;
}

uint32_t utf8_cp(const uint8_t *p, size_t l)
{
    if (l == 1)
        return p[0];
    if (l == 2)
        return ((uint32_t)(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
    if (l == 3)
        return ((uint32_t)(p[0] & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    return ((uint32_t)(p[0] & 0x07) << 18) | ((uint32_t)(p[1] & 0x3F) << 12) | ((uint32_t)(p[2] & 0x3F) << 6) |
           (p[3] & 0x3F);
}

size_t utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t utf8_valid_prefix(const char *s, size_t len)
{
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < len) {
        /* ASCII fast path: most text is plain ASCII */
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        size_t l;
        if (utf8_step(p + i, len - i, &l) != 1)
            return i;
        i += l;
    }
    return len;
}
