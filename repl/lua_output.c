/* lua_output: every path by which Lua-produced text reaches the terminal,
 * and the capture of command output for xf.cmd. Lua values are untrusted
 * (a GGUF general.name, a token piece, a script's strings), so all of them
 * leave through pr_escape_controls: print(), the values a `lua EXPR`
 * prints (the formatter also behind xf.show and tostring of tables), error
 * messages (through repl_errf, which escapes) and traceback lines. The one
 * exception is io.write/io.stderr under --unsafe-lua, which is the raw
 * stream by choice. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "lua_internal.h"
#include "repl.h"

/* --- output and capture ------------------------------------------------------------ */

/* Output of the commands run below goes only to buf: not to the terminal,
 * and not to an outer capture (a recording sees what the terminal sees). */
void lx_cap_begin(xf_repl *r, xf_strbuf *buf, lx_cap *s)
{
    s->capture = r->io.capture;
    s->quiet = r->io.quiet;
    s->errf = r->io.errf;
    r->io.capture = buf;
    r->io.quiet = true;
    r->io.errf = NULL;
}

void lx_cap_end(xf_repl *r, const lx_cap *s)
{
    r->io.capture = s->capture;
    r->io.quiet = s->quiet;
    r->io.errf = s->errf;
}

/* The "error: " lines of captured output, prefix removed, pushed as one string. */
void lx_push_errors(lua_State *L, const xf_strbuf *sb)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    bool any = false;
    const char *s = sb->s ? sb->s : "";
    while (*s) {
        const char *e = strchr(s, '\n');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n >= 7 && strncmp(s, "error: ", 7) == 0) {
            if (any)
                luaL_addchar(&b, '\n');
            luaL_addlstring(&b, s + 7, n - 7);
            any = true;
        }
        s += n + (e ? 1 : 0);
    }
    if (!any)
        luaL_addstring(&b, "failed");
    luaL_pushresult(&b);
}

/* Raises the captured errors as one Lua error. */
int lx_error_from(lua_State *L, const char *what, const xf_strbuf *sb)
{
    luaL_where(L, 1);
    lua_pushfstring(L, "%s: ", what);
    lx_push_errors(L, sb);
    lua_concat(L, 3);
    return lua_error(L);
}

static void lx_err_line(xf_repl *r, const char *s, size_t n)
{
    char esc[1024];
    pr_escape_controls(s, n, esc, sizeof esc); /* as repl_errf escapes the first line */
    if (r->io.capture)
        sb_printf(r->io.capture, "  %s\n", esc);
    if (r->io.errf) {
        fprintf(r->io.errf, "  %s\n", esc);
        fflush(r->io.errf);
    }
}

/* A Lua error as one block: the message through repl_errf, then the
 * traceback lines under it (without the frames of the job runner in
 * lua_runtime.c). */
void lx_report(xf_repl *r, const char *msg, bool traceback)
{
    const char *tb = strstr(msg, "\nstack traceback:");
    size_t head = tb ? (size_t)(tb - msg) : strlen(msg);
    /* the head may span lines (error("a\nb")): its first line is the error */
    const char *nl = memchr(msg, '\n', head);
    size_t first = nl ? (size_t)(nl - msg) : head;
    repl_errf(r, "%.*s", (int)first, msg);
    const char *p = nl ? nl + 1 : msg + head + (msg[head] == '\n');
    const char *end = traceback && tb ? msg + strlen(msg) : msg + head;
    /* the first nameless C frame is the job runner: what lies below it is
     * the code around this entry (an outer `lua` that called xf.cmd) */
    const char *cut = tb ? strstr(tb, "\n\t[C]: in ?") : NULL;
    if (cut && cut < end && (cut[11] == '\n' || cut[11] == '\0'))
        end = cut;
    while (p < end) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        size_t n = e ? (size_t)(e - p) : (size_t)(end - p);
        const char *t = p;
        while (t < p + n && *t == '\t')
            t++;
        lx_err_line(r, t, n - (size_t)(t - p));
        p += n + (e ? 1 : 0);
    }
}

/* Lua text to the terminal, in pieces so that a long string needs no
 * buffer of four times its size. A piece never ends inside a UTF-8
 * character, so a valid character is never escaped as invalid bytes; and
 * since each piece comes out as valid UTF-8 without controls, so does
 * their concatenation. */
void lx_write_escaped(xf_repl *r, const char *s, size_t len)
{
    enum { PIECE = 1024 };
    char esc[4 * PIECE + 8];
    size_t at = 0;
    while (at < len) {
        size_t end = len - at > PIECE ? at + PIECE : len;
        for (int back = 0; back < 3 && end < len && end > at + 1 && ((unsigned char)s[end] & 0xc0) == 0x80; back++)
            end--;
        size_t n = pr_escape_controls(s + at, end - at, esc, sizeof esc);
        repl_write(r, esc, n);
        at = end;
    }
}

int lx_print(lua_State *L)
{
    lx_ctx *c = lx_get(L);
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_addchar(&b, '\n');
    luaL_pushresult(&b);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    lx_write_escaped(c->r, s, len); /* scripts are untrusted: tabs and newlines kept, controls escaped */
    return 0;
}

/* The values of a `lua EXPR` (on the stack from index 1) as the formatter
 * shows them, on one line. */
void lx_write_values(lx_ctx *c, lua_State *L)
{
    int nres = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->show_ref);
    lua_insert(L, 1);
    lua_call(L, nres, 1);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (s) {
        /* strings print as they are at the top level (a GGUF name, a token piece): escape */
        lx_write_escaped(c->r, s, len);
        repl_write(c->r, "\n", 1);
    }
}

/* The formatter of `lua EXPR` results and xf.show: tables one or two levels
 * deep with sorted keys, so that the same value always prints the same. */
static const char k_show_src[] =
    "local type, tostring, rawget, next, getmetatable, select = type, tostring, rawget, next, getmetatable, select\n"
    "local fmt, concat, sort, mtype = string.format, table.concat, table.sort, math.type\n"
    "local function key_lt(a, b)\n"
    "  local ta, tb = type(a), type(b)\n"
    "  if ta ~= tb then return ta < tb end\n"
    "  if ta == 'number' or ta == 'string' then return a < b end\n"
    "  return tostring(a) < tostring(b)\n"
    "end\n"
    "local function show(v, depth, top)\n"
    "  local tv = type(v)\n"
    "  if tv == 'string' then return top and v or fmt('%q', v) end\n"
    "  if tv ~= 'table' then return tostring(v) end\n"
    "  local mt = getmetatable(v)\n"
    "  if type(mt) == 'table' and rawget(mt, '__tostring') then return tostring(v) end\n"
    "  if depth > 3 then return '{...}' end\n"
    "  local parts, n = {}, 0\n"
    "  while rawget(v, n + 1) ~= nil do n = n + 1 end\n"
    "  for i = 1, n do\n"
    "    if #parts >= 64 then parts[#parts + 1] = '...'; break end\n"
    "    parts[#parts + 1] = show(rawget(v, i), depth + 1)\n"
    "  end\n"
    "  local keys = {}\n"
    "  for k in next, v do\n"
    "    if not (mtype(k) == 'integer' and k >= 1 and k <= n) then keys[#keys + 1] = k end\n"
    "  end\n"
    "  sort(keys, key_lt)\n"
    "  for i, k in ipairs(keys) do\n"
    "    if i > 64 then parts[#parts + 1] = '...'; break end\n"
    "    local ks = (type(k) == 'string' and k:match('^[%a_][%w_]*$')) and k or ('[' .. show(k, depth + 1) .. ']')\n"
    "    parts[#parts + 1] = ks .. '=' .. show(rawget(v, k), depth + 1)\n"
    "  end\n"
    "  return '{' .. concat(parts, ', ') .. '}'\n"
    "end\n"
    "return function(...)\n"
    "  local out = {}\n"
    "  for i = 1, select('#', ...) do out[i] = show((select(i, ...)), 1, true) end\n"
    "  return concat(out, '\\t')\n"
    "end\n";


int lx_show_open(lua_State *L)
{
    if (luaL_loadbufferx(L, k_show_src, sizeof k_show_src - 1, "=xf.show", "t") != LUA_OK)
        lua_error(L);
    lua_call(L, 0, 1);
    return luaL_ref(L, LUA_REGISTRYINDEX);
}
