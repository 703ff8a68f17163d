/*
 * The Sentry plugin's traceback parser and JSON helpers (plugins/sentry/frames.c, sb.c),
 * compiled into this test: Lua tracebacks as Lua 5.4 writes them, oldest frame first as
 * Sentry wants, the raising line last, and the JSON strings the events are built from.
 */
#include "../../plugins/sentry/frames.c"
#include "../../plugins/sentry/sb.c"
#include "test.h"

#include <lauxlib.h>
#include <lualib.h>

static int frame_is(const sentry_frame_t *f, const char *file, const char *func, long line,
                    int in_app)
{
    return f->file_len == strlen(file) && memcmp(f->file, file, f->file_len) == 0 &&
           f->func_len == strlen(func) && memcmp(f->func, func, f->func_len) == 0 &&
           f->line == line && f->in_app == in_app;
}

TEST(test_lua_54_traceback_oldest_first)
{
    const char *tb = "stack traceback:\n"
                     "\t[C]: in function 'error'\n"
                     "\thandlers/orders.lua:12: in upvalue 'check'\n"
                     "\thandlers/orders.lua:30: in function <handlers/orders.lua:25>\n"
                     "\t(...tail calls...)\n"
                     "\tlib/util.lua:7: in local 'wrap'\n"
                     "\tlib/util.lua:9: in method 'call'\n"
                     "\tlib/util.lua:11: in field 'run'\n"
                     "\tlib/util.lua:13: in function 'util.go'\n"
                     "\tmain.lua:3: in main chunk\n"
                     "\t[string \"inline\"]:1: in ?\n"
                     "\t...\t(skipping 4 levels)\n"
                     "\t[C]: in ?";
    sentry_frame_t f[SENTRY_MAX_FRAMES];
    size_t n = sentry_frames_parse(tb, strlen(tb), f, SENTRY_MAX_FRAMES);
    CHECK_EQ_INT(n, 10);
    if (n != 10)
        return;
    CHECK(frame_is(&f[0], "[C]", "?", 0, 0));
    CHECK(frame_is(&f[1], "[string \"inline\"]", "?", 1, 0));
    CHECK(frame_is(&f[2], "main.lua", "<main>", 3, 1));
    CHECK(frame_is(&f[3], "lib/util.lua", "util.go", 13, 1));
    CHECK(frame_is(&f[4], "lib/util.lua", "run", 11, 1));
    CHECK(frame_is(&f[5], "lib/util.lua", "call", 9, 1));
    CHECK(frame_is(&f[6], "lib/util.lua", "wrap", 7, 1));
    CHECK(frame_is(&f[7], "handlers/orders.lua", "<anonymous>", 30, 1));
    CHECK(frame_is(&f[8], "handlers/orders.lua", "check", 12, 1));
    CHECK(frame_is(&f[9], "[C]", "error", 0, 0)); /* the raising call last */
}

TEST(test_max_keeps_the_newest_frames)
{
    const char *tb = "stack traceback:\n\ta.lua:1: in local 'x'\n\tb.lua:2: in local 'y'\n"
                     "\tc.lua:3: in local 'z'\n";
    sentry_frame_t f[2];
    CHECK_EQ_INT(sentry_frames_parse(tb, strlen(tb), f, 2), 2);
    CHECK(frame_is(&f[0], "b.lua", "y", 2, 1));
    CHECK(frame_is(&f[1], "a.lua", "x", 1, 1));
    CHECK_EQ_INT(sentry_frames_parse("", 0, f, 2), 0);
    CHECK_EQ_INT(sentry_frames_parse("no traceback here", 17, f, 2), 0);
    /* windows line ends and a path with a colon */
    const char *crlf = "stack traceback:\r\n\tC:/app/x.lua:5: in function 'f'\r\n";
    CHECK_EQ_INT(sentry_frames_parse(crlf, strlen(crlf), f, 2), 1);
    CHECK(frame_is(&f[0], "C:/app/x.lua", "f", 5, 1));
}

TEST(test_position_from_message)
{
    sentry_frame_t f;
    const char *m = "handlers/orders.lua:12: attempt to index a nil value (local 't')";
    CHECK(sentry_frames_from_message(m, strlen(m), &f));
    CHECK(frame_is(&f, "handlers/orders.lua", "?", 12, 1));
    CHECK(!sentry_frames_from_message("timed out after 5 s", 19, &f));
    CHECK(!sentry_frames_from_message("x: y", 4, &f));
}

/* The parser against tracebacks the real Lua 5.4 writes. */
TEST(test_real_lua_traceback)
{
    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    const char *chunk = "local function inner()\n"                                /* 1 */
                        "  local t = nil\n"                                       /* 2 */
                        "  return t.x\n"                                          /* 3: raises */
                        "end\n"                                                   /* 4 */
                        "local function outer() local r = inner() return r end\n" /* 5 */
                        "return coroutine.create(function() outer() end)\n";      /* 6 */
    CHECK(luaL_loadbuffer(L, chunk, strlen(chunk), "@app/handler.lua") == LUA_OK);
    lua_call(L, 0, 1);
    lua_State *co = lua_tothread(L, -1);
    int nres;
    CHECK(lua_resume(co, L, 0, &nres) == LUA_ERRRUN);
    luaL_traceback(L, co, NULL, 0);
    const char *tb = lua_tostring(L, -1);
    sentry_frame_t f[SENTRY_MAX_FRAMES];
    size_t n = sentry_frames_parse(tb, strlen(tb), f, SENTRY_MAX_FRAMES);
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK(frame_is(&f[0], "app/handler.lua", "<anonymous>", 6, 1));
        CHECK(frame_is(&f[1], "app/handler.lua", "outer", 5, 1));
        CHECK(frame_is(&f[2], "app/handler.lua", "inner", 3, 1));
    } else {
        fprintf(stderr, "%s\n", tb);
    }
    lua_close(L);
}

TEST(test_frames_json)
{
    sentry_frame_t f[2] = {{"a\"b.lua", 7, "fn", 2, 4, 1}, {"[C]", 3, "error", 5, 0, 0}};
    sentry_sb_t b;
    sentry_sb_init(&b);
    sentry_frames_json(&b, f, 2);
    CHECK_EQ_STR(b.data, "{\"frames\":[{\"filename\":\"a\\\"b.lua\",\"function\":\"fn\","
                         "\"lineno\":4,\"in_app\":true},{\"filename\":\"[C]\",\"function\":"
                         "\"error\",\"in_app\":false}]}");
    sentry_sb_free(&b);
}

TEST(test_json_strings)
{
    sentry_sb_t b;
    sentry_sb_init(&b);
    sentry_sb_json(&b, "a\n\x01\xff\xc3\xa9z", 7, 0);
    CHECK_EQ_STR(b.data, "\"a\\n\\u0001\\ufffd\xc3\xa9z\"");
    sentry_sb_reset(&b);
    sentry_sb_json(&b, "\xc3\xa9\xc3\xa9", 4, 3); /* cut inside the second character */
    CHECK_EQ_STR(b.data, "\"\xc3\xa9...\"");
    sentry_sb_free(&b);
}

int main(void)
{
    RUN(test_lua_54_traceback_oldest_first);
    RUN(test_max_keeps_the_newest_frames);
    RUN(test_position_from_message);
    RUN(test_real_lua_traceback);
    RUN(test_frames_json);
    RUN(test_json_strings);
    return DONE();
}
