/*
 * luar.log: debug / info / warn / error(msg[, fields]) → one JSON line through host/log,
 * the fields table encoded as members of the line's object, with the running task's
 * request_id and job_id added when the fields do not set them.
 */
#include "log/log.h"
#include "lua/modules.h"
#include "lua/task.h"
#include "lua/util.h"

#include <lauxlib.h>
#include <string.h>

#define LOG_FIELDS_MAX (256 * 1024)

static int has_field(lua_State *L, int idx, const char *name)
{
    if (lua_type(L, idx) != LUA_TTABLE)
        return 0;
    int present = lua_getfield(L, idx, name) != LUA_TNIL;
    lua_pop(L, 1);
    return present;
}

static void add_id(luar_buf_t *b, const char *name, const char *value)
{
    if (value == NULL || value[0] == '\0')
        return;
    if (b->len > 0)
        luar_buf_putc(b, ',');
    luar_buf_append_json_string(b, name, strlen(name));
    luar_buf_putc(b, ':');
    luar_buf_append_json_string(b, value, strlen(value));
}

/* Writes one line at `level`. [-2, +0] */
static int log_at(lua_State *L, int level)
{
    size_t msg_len;
    const char *msg = luaL_checklstring(L, 1, &msg_len);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    if (!luar_log_enabled(level))
        return 0;
    lua_settop(L, 2);
    luar_buf_t *b = luar_lua_newbuf(L, LOG_FIELDS_MAX);
    if (lua_type(L, 2) == LUA_TTABLE) {
        size_t len;
        const char *json = luar_json_encode(L, 2, &len);
        if (len < 2 || json[0] != '{')
            return luaL_argerror(L, 2, "fields must be a table with string keys");
        luar_buf_append(b, json + 1, len - 2);
    }
    luar_task_t *task = luar_task_current(L);
    if (task != NULL) {
        if (!has_field(L, 2, "request_id"))
            add_id(b, "request_id", luar_task_request_id(task));
        if (!has_field(L, 2, "job_id"))
            add_id(b, "job_id", luar_task_job_id(task));
        if (!has_field(L, 2, "trace_id"))
            add_id(b, "trace_id", luar_task_trace(task)->trace_id);
    }
    luar_log_write(level, msg, msg_len, b->data, b->len);
    luar_buf_free(b);
    return 0;
}

static int log_debug(lua_State *L)
{
    return log_at(L, LUAR_LOG_DEBUG);
}

static int log_info(lua_State *L)
{
    return log_at(L, LUAR_LOG_INFO);
}

static int log_warn(lua_State *L)
{
    return log_at(L, LUAR_LOG_WARN);
}

static int log_error(lua_State *L)
{
    return log_at(L, LUAR_LOG_ERROR);
}

int luaopen_luar_log(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"debug", log_debug}, {"info", log_info}, {"warn", log_warn},
        {"error", log_error}, {NULL, NULL},
    };
    luaL_newlib(L, funcs);
    return 1;
}
