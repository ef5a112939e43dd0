/* lua_file: the files Lua reads. Scripts (`source FILE`, `--script FILE`)
 * are read here instead of by luaL_loadfilex, and xf.load / xf.ref_load
 * check their path here before the engine opens it, for two reasons:
 *
 * - A FIFO, a terminal or a device would block the session forever (a plain
 *   open() of a FIFO waits for a writer; a read waits for data). Files are
 *   opened O_NONBLOCK, fstat'ed, and anything but a regular file is refused
 *   with "PATH: not a regular file" before a byte is read.
 * - Errors must not echo file contents (issue 14 item 7). When a script does
 *   not compile, Lua's message quotes the token it stopped at, and a token
 *   can be a whole line of the file (an unfinished string) or any length (a
 *   numeral, a name): `source /etc/passwd` or a binary file would print it.
 *   The message keeps the chunk name, the line number and Lua's own words;
 *   the quoted token is cut to LX_NEAR_MAX bytes and the rest of Lua's text
 *   (which may quote a name) to LX_MSG_MAX, each marked "...". Code typed
 *   at `lua` is not cut: the user just typed it.
 *
 * Scripts load as text only ("t": no precompiled chunks), with luaL_loadfilex's
 * conventions kept: a UTF-8 BOM and a first line starting with '#' (a #!
 * line) are skipped, line numbers unchanged, and the chunk is "@FILE". */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_internal.h"

#define LX_NEAR_MAX 24 /* bytes of the token a syntax error of a file quotes */
#define LX_MSG_MAX 120 /* bytes of Lua's message after "FILE:LINE: " */

int lx_file_check_regular(const char *path, char *why, size_t why_size)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return 0; /* missing, unreadable: the engine's open says so in its own words */
    struct stat st;
    bool bad = fstat(fd, &st) == 0 && !S_ISREG(st.st_mode);
    close(fd);
    if (bad)
        snprintf(why, why_size, "%s: not a regular file", path);
    return bad ? 1 : 0;
}

/* n bytes of s without the tail of a cut UTF-8 character */
static size_t lx_utf8_cut(const char *s, size_t n)
{
    for (int back = 0; back < 3 && n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80; back++)
        n--;
    return n;
}

/* Replaces the syntax error message on top of the stack with its bounded
 * form: "CHUNK:LINE: " kept, Lua's text cut to LX_MSG_MAX, the token after
 * " near '" cut to LX_NEAR_MAX. */
static void lx_bound_syntax_error(lua_State *L)
{
    size_t len;
    const char *m = lua_tolstring(L, -1, &len);
    if (!m)
        return;
    /* the end of "CHUNK:LINE: ": the first ":<digits>: " */
    const char *text = m;
    for (const char *p = strchr(m, ':'); p; p = strchr(p + 1, ':')) {
        const char *d = p + 1;
        while (*d >= '0' && *d <= '9')
            d++;
        if (d > p + 1 && d[0] == ':' && d[1] == ' ') {
            text = d + 2;
            break;
        }
    }
    /* Lua appends " near TOKEN" last; TOKEN is '<eof>'-like or 'text' */
    const char *near = strstr(text, " near '");
    const char *tok = near ? near + 7 : NULL;
    size_t tok_len = tok ? (size_t)(m + len - tok) : 0;
    if (tok_len > 0 && tok[tok_len - 1] == '\'')
        tok_len--;
    size_t body = (size_t)((near ? near : m + len) - text);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addlstring(&b, m, (size_t)(text - m));
    if (body > LX_MSG_MAX) {
        luaL_addlstring(&b, text, lx_utf8_cut(text, LX_MSG_MAX));
        luaL_addstring(&b, "...");
    } else
        luaL_addlstring(&b, text, body);
    if (near) {
        luaL_addstring(&b, " near '");
        if (tok_len > LX_NEAR_MAX) {
            luaL_addlstring(&b, tok, lx_utf8_cut(tok, LX_NEAR_MAX));
            luaL_addstring(&b, "...");
        } else
            luaL_addlstring(&b, tok, tok_len);
        luaL_addchar(&b, '\'');
    }
    luaL_pushresult(&b);
    lua_remove(L, -2);
}

/* Reads the whole regular file fd into b->p; 0, or -1 with errno. */
static int lx_read_all(int fd, size_t size, lx_box *b, size_t *got)
{
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return -1;
    b->p = buf;
    *got = 0;
    while (*got < size) { /* the file may shrink meanwhile: stop at its end */
        ssize_t n = read(fd, buf + *got, size - *got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        *got += (size_t)n;
    }
    return 0;
}

/* Pushes "cannot WHAT PATH: WHY" and returns LUA_ERRFILE. */
static int lx_file_error(lua_State *L, const char *what, const char *path, const char *why)
{
    lua_pushfstring(L, "cannot %s %s: %s", what, path, why);
    return LUA_ERRFILE;
}

/* lx_load_script with the text's box made: pushes one value */
static int lx_load_into(lua_State *L, lx_ctx *c, const char *path, lx_box *b)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return lx_file_error(L, "open", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return lx_file_error(L, "read", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return lx_file_error(L, "open", path, "not a regular file");
    }
    if ((uint64_t)st.st_size > c->mem_cap) {
        close(fd);
        lua_pushfstring(L, "cannot open %s: %I bytes is more than a script may have (the Lua memory cap, %d MB)",
                        path, (lua_Integer)st.st_size, (int)(c->mem_cap >> 20));
        return LUA_ERRFILE;
    }
    size_t n = 0;
    int rc = lx_read_all(fd, (size_t)st.st_size, b, &n);
    int e = errno;
    close(fd);
    if (rc != 0)
        return lx_file_error(L, "read", path, strerror(e));
    const char *s = b->p;
    if (n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
        s += 3;
        n -= 3;
    }
    if (n > 0 && s[0] == '#') { /* a #! line: start at its newline, so line numbers stay */
        const char *nl = memchr(s, '\n', n);
        n -= nl ? (size_t)(nl - s) : n;
        s = nl ? nl : s + n;
    }
    lua_pushfstring(L, "@%s", path);
    int st_load = luaL_loadbufferx(L, s, n, lua_tostring(L, -1), "t");
    if (st_load == LUA_ERRSYNTAX)
        lx_bound_syntax_error(L);
    lua_remove(L, -2); /* the chunk name */
    return st_load;
}

int lx_load_script(lua_State *L, lx_ctx *c, const char *path)
{
    lx_box *b = lx_new_box(L); /* before the open: a memory error here leaks no fd */
    int st = lx_load_into(L, c, path, b);
    lua_remove(L, -2); /* the box: a compiled chunk does not refer to its text */
    return st;
}
