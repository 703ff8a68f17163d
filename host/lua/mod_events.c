/*
 * luar.events: durable publish/subscribe. Each subscriber is a job ("event:<name>"), so a
 * published event becomes one durable job per matching subscriber, enqueued in one commit;
 * each subscriber retries and dead-letters on its own (RabbitMQ's topic exchange with a
 * queue per subscriber). Patterns follow AMQP topic rules (`*` one word, `#` any words).
 */
#include "jobs/jobs.h"
#include "lua/modules.h"

#include <lauxlib.h>
#include <string.h>

/* events.subscribe(pattern, name, [opts,] fn) [-n, +0] */
static int events_subscribe(lua_State *L)
{
    const char *pattern = luaL_checkstring(L, 1);
    const char *name = luaL_checkstring(L, 2);
    int opts = lua_istable(L, 3) ? 3 : 0;
    int fn = opts ? 4 : 3;
    luaL_checktype(L, fn, LUA_TFUNCTION);
    if (*pattern == '\0')
        return luaL_argerror(L, 1, "empty pattern");
    if (*name == '\0' || strlen(name) > 100)
        return luaL_argerror(L, 2, "expected a subscriber name of 1 to 100 characters");
    luar_jobs_define_subscriber(L, pattern, name, opts, fn);
    return 0;
}

int luaopen_luar_events(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"subscribe", events_subscribe},
        {"publish", luar_events_publish},
        {NULL, NULL},
    };
    luaL_newlib(L, fns);
    return 1;
}
