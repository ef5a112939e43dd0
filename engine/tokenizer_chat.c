/* tokenizer_chat: chat templates. The ChatML format (<|im_start|>role ...
 * <|im_end|>) that Qwen2 models use, with the default system text that a
 * template embeds, found at load. */
#include "tokenizer_internal.h"

#include "strbuf.h"

#include <stdlib.h>
#include <string.h>

/* The default system text of a ChatML template: the literal that follows
 * "<|im_start|>system" + newline (a real one or the two characters \n) up to
 * "<|im_end|>", when it holds no template syntax. */
char *tok_chat_find_default_system(const char *tpl)
{
    static const char start[] = "<|im_start|>system";
    for (const char *p = strstr(tpl, start); p; p = strstr(p + 1, start)) {
        const char *q = p + sizeof start - 1;
        if (q[0] == '\n')
            q += 1;
        else if (q[0] == '\\' && q[1] == 'n')
            q += 2;
        else
            continue;
        const char *e = strstr(q, "<|im_end|>");
        if (!e || e == q)
            continue;
        size_t n = (size_t)(e - q);
        if (strcspn(q, "'\"{}+\\\n") < n)
            continue;
        char *s = malloc(n + 1);
        if (!s)
            return NULL;
        memcpy(s, q, n);
        s[n] = 0;
        return s;
    }
    return NULL;
}



static void sb_msg(xf_strbuf *b, const char *role, const char *content)
{
    sb_puts(b, "<|im_start|>");
    sb_puts(b, role);
    sb_puts(b, "\n");
    sb_puts(b, content);
    sb_puts(b, "<|im_end|>\n");
}

int tok_chat_format(const xf_tokenizer *t, const tok_chat_msg *msgs, size_t n, bool add_generation_prompt,
                    char **out, xf_err *err)
{
    *out = NULL;
    if (tok_tid_find(t, "<|im_start|>", 12) < 0 || tok_tid_find(t, "<|im_end|>", 10) < 0)
        return xf_err_set(err, "tokenizer: no chat format: the vocabulary has no <|im_start|>/<|im_end|> tokens");
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].role[0] || !msgs[i].content)
            return xf_err_set(err, "chat message %zu has no role or no content", i);
    xf_strbuf b = {0};
    if (t->chat_default_system && (n == 0 || strcmp(msgs[0].role, "system") != 0))
        sb_msg(&b, "system", t->chat_default_system);
    for (size_t i = 0; i < n; i++)
        sb_msg(&b, msgs[i].role, msgs[i].content);
    if (add_generation_prompt)
        sb_puts(&b, "<|im_start|>assistant\n");
    sb_append(&b, "", 0); /* an empty conversation is "", not NULL */
    if (b.oom) {
        sb_free(&b);
        return xf_err_set(err, "chat: out of memory");
    }
    *out = b.s;
    return 0;
}

