#include "config/config.h"
#include "common/error.h"
#include "common/units.h"
#include "lua/vm.h"
#include "queue/queue.h"
#include "redis/url.h"

#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <openssl/crypto.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_LISTEN "127.0.0.1:8080"
#define DEFAULT_CONFIG "luar.conf.lua"

/* State of one load: where errors go and the file's text, to find the line of a key. */
typedef struct loader {
    luar_config_t *cfg;
    luar_buf_t *err;
    char *text; /* file contents, NUL-terminated, or NULL */
    int nerrors;
} loader_t;

static const char *const known_keys[] = {
    "listen", "scripts", "data", "queue", "workers", "admin", "limits", "log", "reload",
    "plugins", "secrets", "jobs", "webhooks", "public_url", "shutdown", "audit",
    "cache", "redis", "tracing", NULL,
};

/*
 * Returns the first line of the file where `key` is assigned (`key =`), or 0. Good enough
 * to point at the culprit in a configuration table; a key used twice points at the first.
 */
static int line_of_key(const loader_t *ld, const char *key)
{
    if (ld->text == NULL || key == NULL)
        return 0;
    size_t klen = strlen(key);
    int line = 1;
    for (const char *p = ld->text; *p; p++) {
        if (*p == '\n') {
            line++;
            continue;
        }
        if (strncmp(p, key, klen) != 0)
            continue;
        if (p > ld->text && (isalnum((unsigned char)p[-1]) || p[-1] == '_'))
            continue;
        const char *q = p + klen;
        while (*q == ' ' || *q == '\t')
            q++;
        if (*q == '=' && q[1] != '=')
            return line;
    }
    return 0;
}

/* Records one error about `key` (dotted path for messages; last part to find its line). */
static void fail_key(loader_t *ld, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_key(loader_t *ld, const char *path, const char *fmt, ...)
{
    const char *last = strrchr(path, '.');
    int line = line_of_key(ld, last ? last + 1 : path);
    if (ld->cfg->file && line)
        luar_buf_appendf(ld->err, "%s:%d: %s: ", ld->cfg->file, line, path);
    else if (ld->cfg->file)
        luar_buf_appendf(ld->err, "%s: %s: ", ld->cfg->file, path);
    else
        luar_buf_appendf(ld->err, "%s: ", path);
    va_list ap;
    va_start(ap, fmt);
    luar_buf_vappendf(ld->err, fmt, ap);
    va_end(ap);
    luar_buf_putc(ld->err, '\n');
    ld->nerrors++;
}

static void set_str(char **dst, const char *s)
{
    free(*dst);
    *dst = s ? strdup(s) : NULL;
}

/* env(name[, default]): the configuration file's way to read the environment. */
static int l_env(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *v = getenv(name);
    if (v) {
        lua_pushstring(L, v);
        return 1;
    }
    if (lua_gettop(L) >= 2) {
        lua_settop(L, 2);
        return 1;
    }
    return luaL_error(L, "environment variable %s is not set (use env(\"%s\", default) "
                         "to make it optional)", name, name);
}

static int add_listen(luar_config_t *cfg, const char *addr, const char *cert, const char *key,
                      const char *ca)
{
    luar_listen_t *l = realloc(cfg->listen, (cfg->nlisten + 1) * sizeof *l);
    if (l == NULL)
        return LUAR_ENOMEM;
    cfg->listen = l;
    l += cfg->nlisten++;
    memset(l, 0, sizeof *l);
    l->addr = strdup(addr);
    l->cert = cert ? strdup(cert) : NULL;
    l->key = key ? strdup(key) : NULL;
    l->client_ca = ca ? strdup(ca) : NULL;
    return 0;
}

static void free_listen(luar_config_t *cfg)
{
    for (size_t i = 0; i < cfg->nlisten; i++) {
        free((char *)cfg->listen[i].addr);
        free((char *)cfg->listen[i].cert);
        free((char *)cfg->listen[i].key);
        free((char *)cfg->listen[i].client_ca);
    }
    free(cfg->listen);
    cfg->listen = NULL;
    cfg->nlisten = 0;
}

/* Parses "a,b,c" into listeners (from LUAR_LISTEN or --listen). */
static void listen_from_list(luar_config_t *cfg, const char *list)
{
    free_listen(cfg);
    char *copy = strdup(list), *save = NULL;
    for (char *tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save))
        add_listen(cfg, tok, NULL, NULL, NULL);
    free(copy);
}

/* Reads an optional string field of the table at the top of the stack. */
static const char *opt_string(loader_t *ld, lua_State *L, const char *field, const char *path)
{
    const char *s = NULL;
    int t = lua_getfield(L, -1, field);
    if (t == LUA_TSTRING)
        s = lua_tostring(L, -1);
    else if (t != LUA_TNIL)
        fail_key(ld, path, "expected a string, got %s", lua_typename(L, t));
    lua_pop(L, 1);
    return s;
}

static void read_size(loader_t *ld, lua_State *L, const char *field, const char *path,
                      size_t *out)
{
    int t = lua_getfield(L, -1, field);
    uint64_t v;
    if (t == LUA_TNUMBER && lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 0) {
        *out = (size_t)lua_tointeger(L, -1);
    } else if (t == LUA_TSTRING && luar_parse_size(lua_tostring(L, -1), &v) == 0) {
        *out = (size_t)v;
    } else if (t != LUA_TNIL) {
        fail_key(ld, path, "expected a size such as 1048576 or \"1MiB\", got %s",
                 t == LUA_TSTRING ? lua_tostring(L, -1) : lua_typename(L, t));
    }
    lua_pop(L, 1);
}

static void read_number(loader_t *ld, lua_State *L, const char *field, const char *path,
                        double *out, double min)
{
    int t = lua_getfield(L, -1, field);
    if (t == LUA_TNUMBER && lua_tonumber(L, -1) >= min)
        *out = lua_tonumber(L, -1);
    else if (t == LUA_TNUMBER)
        fail_key(ld, path, "must be at least %g", min);
    else if (t != LUA_TNIL)
        fail_key(ld, path, "expected a number, got %s", lua_typename(L, t));
    lua_pop(L, 1);
}

static void read_bool(loader_t *ld, lua_State *L, const char *field, const char *path, int *out)
{
    int t = lua_getfield(L, -1, field);
    if (t == LUA_TBOOLEAN)
        *out = lua_toboolean(L, -1);
    else if (t != LUA_TNIL)
        fail_key(ld, path, "expected true or false, got %s", lua_typename(L, t));
    lua_pop(L, 1);
}

/* Enters the sub-table `field`; returns 0 (nothing pushed) when absent or not a table. */
static int enter(loader_t *ld, lua_State *L, const char *field)
{
    int t = lua_getfield(L, -1, field);
    if (t == LUA_TTABLE)
        return 1;
    if (t != LUA_TNIL)
        fail_key(ld, field, "expected a table, got %s", lua_typename(L, t));
    lua_pop(L, 1);
    return 0;
}

/*
 * Records an error for each key of the table at the top of the stack that is not in
 * `known` (a typo is an error, not silently ignored). `table` names the table in messages
 * ("webhooks"), NULL for the top level.
 */
static void check_keys(loader_t *ld, lua_State *L, const char *const *known, const char *table)
{
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING) {
            fail_key(ld, table ? table : "(top level)", "keys must be names");
            continue;
        }
        const char *k = lua_tostring(L, -1);
        int found = 0;
        for (int i = 0; known[i]; i++)
            found |= strcmp(known[i], k) == 0;
        if (!found) {
            char path[160];
            snprintf(path, sizeof path, "%s%s%.140s", table ? table : "", table ? "." : "", k);
            fail_key(ld, path, "unknown key");
        }
    }
}

void luar_webhooks_config_init(luar_webhooks_config_t *w)
{
    static const double svix[] = {0, 5, 300, 1800, 7200, 18000, 36000, 36000};
    memset(w, 0, sizeof *w);
    w->deliver_attempts = (int)(sizeof svix / sizeof svix[0]);
    memcpy(w->deliver_schedule, svix, sizeof svix);
    w->deliver_breaker_failures = 5;
    w->deliver_breaker_reset = 30;
}

/* webhooks = { … } (the table is at the top of the stack). */
static void read_webhooks(loader_t *ld, lua_State *L, luar_webhooks_config_t *w)
{
    static const char *const known[] = {"deliver_allow_private", "deliver_schedule",
                                        "deliver_breaker", NULL};
    check_keys(ld, L, known, "webhooks");
    read_bool(ld, L, "deliver_allow_private", "webhooks.deliver_allow_private",
              &w->deliver_allow_private);
    int t = lua_getfield(L, -1, "deliver_schedule");
    if (t == LUA_TTABLE) {
        lua_Integer n = luaL_len(L, -1);
        int bad = n < 1 || n > LUAR_DELIVER_MAX_ATTEMPTS;
        for (lua_Integer i = 1; !bad && i <= n; i++) {
            bad = lua_rawgeti(L, -1, i) != LUA_TNUMBER || !(lua_tonumber(L, -1) >= 0);
            if (!bad)
                w->deliver_schedule[i - 1] = lua_tonumber(L, -1);
            lua_pop(L, 1);
        }
        if (bad)
            fail_key(ld, "webhooks.deliver_schedule", "expected a list of 1 to %d delays in "
                     "seconds (numbers >= 0), one per attempt, the first included",
                     LUAR_DELIVER_MAX_ATTEMPTS);
        else
            w->deliver_attempts = (int)n;
    } else if (t != LUA_TNIL) {
        fail_key(ld, "webhooks.deliver_schedule", "expected a list of delays in seconds, got %s",
                 lua_typename(L, t));
    }
    lua_pop(L, 1);
    if (enter(ld, L, "deliver_breaker")) {
        double failures = w->deliver_breaker_failures;
        read_number(ld, L, "failures", "webhooks.deliver_breaker.failures", &failures, 1);
        read_number(ld, L, "reset", "webhooks.deliver_breaker.reset", &w->deliver_breaker_reset,
                    0.001);
        w->deliver_breaker_failures = (int)failures;
        lua_pop(L, 1);
    }
}

static int parse_workers(const char *s, int *out)
{
    if (strcmp(s, "auto") == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        *out = n > 0 ? (int)n : 1;
        return 0;
    }
    char *end;
    errno = 0;
    long n = strtol(s, &end, 10);
    if (errno || *end || n < 1 || n > 256)
        return LUAR_EINVAL;
    *out = (int)n;
    return 0;
}

static void read_listen(loader_t *ld, lua_State *L)
{
    int t = lua_getfield(L, -1, "listen");
    if (t == LUA_TSTRING) {
        listen_from_list(ld->cfg, lua_tostring(L, -1));
    } else if (t == LUA_TTABLE) {
        free_listen(ld->cfg);
        lua_Integer n = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            int et = lua_geti(L, -1, i);
            if (et == LUA_TSTRING) {
                add_listen(ld->cfg, lua_tostring(L, -1), NULL, NULL, NULL);
            } else if (et == LUA_TTABLE) {
                static const char *const known[] = {"addr", "tls", NULL};
                static const char *const known_tls[] = {"cert", "key", "client_ca", NULL};
                check_keys(ld, L, known, "listen");
                const char *addr = opt_string(ld, L, "addr", "listen.addr");
                const char *cert = NULL, *key = NULL, *ca = NULL;
                if (addr == NULL)
                    fail_key(ld, "listen", "entry %d has no addr", (int)i);
                if (enter(ld, L, "tls")) {
                    check_keys(ld, L, known_tls, "listen.tls");
                    cert = opt_string(ld, L, "cert", "listen.tls.cert");
                    key = opt_string(ld, L, "key", "listen.tls.key");
                    ca = opt_string(ld, L, "client_ca", "listen.tls.client_ca");
                    if (cert == NULL || key == NULL)
                        fail_key(ld, "listen.tls", "needs both cert and key");
                    lua_pop(L, 1);
                }
                if (addr)
                    add_listen(ld->cfg, addr, cert, key, ca);
            } else {
                fail_key(ld, "listen", "entry %d: expected an address string or a table",
                         (int)i);
            }
            lua_pop(L, 1);
        }
        if (n == 0)
            fail_key(ld, "listen", "is empty");
    } else if (t != LUA_TNIL) {
        fail_key(ld, "listen", "expected a string or a list, got %s", lua_typename(L, t));
    }
    lua_pop(L, 1);
}

/* Parses the store key `text` from `from` (a setting name) into cfg->secrets_key. */
static void set_secrets_key(loader_t *ld, const char *text, const char *from)
{
    luar_buf_t why;
    luar_buf_init(&why, 0);
    if (luar_secrets_parse_key(text, ld->cfg->secrets_key.bytes, &why) == 0) {
        ld->cfg->secrets_key.set = 1;
        ld->cfg->secrets_key.from = from;
    } else if (strcmp(from, "secrets.key") == 0) {
        fail_key(ld, "secrets.key", "%s", why.data);
    } else {
        luar_buf_appendf(ld->err, "%s: %s\n", from, why.data);
        ld->nerrors++;
    }
    luar_buf_free(&why);
}

/* secrets = { file, key } and audit = { file }. */
static void read_secrets(loader_t *ld, lua_State *L)
{
    const char *s;
    static const char *const known_secrets[] = {"file", "key", NULL};
    static const char *const known_audit[] = {"file", NULL};
    if (enter(ld, L, "secrets")) {
        check_keys(ld, L, known_secrets, "secrets");
        if ((s = opt_string(ld, L, "file", "secrets.file")))
            set_str(&ld->cfg->secrets_file, s);
        if ((s = opt_string(ld, L, "key", "secrets.key")))
            set_secrets_key(ld, s, "secrets.key");
        lua_pop(L, 1);
    }
    if (enter(ld, L, "audit")) {
        check_keys(ld, L, known_audit, "audit");
        if ((s = opt_string(ld, L, "file", "audit.file")))
            set_str(&ld->cfg->audit_file, s);
        lua_pop(L, 1);
    }
}

/* redis = { url }: the Redis of luar.redis, checked now so a typo stops the start. */
static void read_redis(loader_t *ld, lua_State *L)
{
    static const char *const known[] = {"url", NULL};
    if (!enter(ld, L, "redis"))
        return;
    check_keys(ld, L, known, "redis");
    const char *s = opt_string(ld, L, "url", "redis.url");
    if (s != NULL) {
        luar_redis_url_t u;
        luar_buf_t why;
        luar_buf_init(&why, 0);
        if (luar_redis_url_parse(s, &u, &why) == 0) {
            luar_redis_url_free(&u);
            set_str(&ld->cfg->redis_url, s);
        } else {
            fail_key(ld, "redis.url", "%s", why.data ? why.data : "invalid URL");
        }
        luar_buf_free(&why);
    }
    lua_pop(L, 1);
}

/* tracing = { endpoint, sample_rate, service_name, headers = { name = value } } */
static void read_tracing(loader_t *ld, lua_State *L)
{
    static const char *const known[] = {"endpoint", "sample_rate", "service_name", "headers",
                                        NULL};
    if (!enter(ld, L, "tracing"))
        return;
    luar_tracing_config_t *t = &ld->cfg->tracing;
    check_keys(ld, L, known, "tracing");
    const char *s = opt_string(ld, L, "endpoint", "tracing.endpoint");
    if (s && strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
        fail_key(ld, "tracing.endpoint", "must be an http:// or https:// URL (the collector's "
                                         "OTLP/HTTP traces endpoint, e.g. "
                                         "http://127.0.0.1:4318/v1/traces)");
    else if (s)
        set_str(&t->endpoint, s);
    if ((s = opt_string(ld, L, "service_name", "tracing.service_name")))
        set_str(&t->service_name, s);
    read_number(ld, L, "sample_rate", "tracing.sample_rate", &t->sample_rate, 0);
    if (t->sample_rate > 1)
        fail_key(ld, "tracing.sample_rate", "must be from 0 to 1, got %g", t->sample_rate);
    if (enter(ld, L, "headers")) {
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
                fail_key(ld, "tracing.headers", "expected name = value strings");
            else if (t->nheaders == LUAR_TRACE_MAX_HEADERS)
                fail_key(ld, "tracing.headers", "at most %d headers", LUAR_TRACE_MAX_HEADERS);
            else {
                t->header_names[t->nheaders] = strdup(lua_tostring(L, -2));
                t->header_values[t->nheaders] = strdup(lua_tostring(L, -1));
                t->nheaders++;
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Reads the table at the top of the stack into ld->cfg. */
/* cache = { max_bytes, max_value } (luar.cache). */
static void read_cache(loader_t *ld, lua_State *L)
{
    static const char *const known[] = {"max_bytes", "max_value", NULL};
    if (!enter(ld, L, "cache"))
        return;
    check_keys(ld, L, known, "cache");
    size_t *max_bytes = &ld->cfg->cache.max_bytes, *max_value = &ld->cfg->cache.max_value;
    int value_given = lua_getfield(L, -1, "max_value") != LUA_TNIL;
    lua_pop(L, 1);
    read_size(ld, L, "max_bytes", "cache.max_bytes", max_bytes);
    read_size(ld, L, "max_value", "cache.max_value", max_value);
    if (*max_bytes < 1)
        fail_key(ld, "cache.max_bytes", "must be at least 1 byte");
    else if (!value_given && *max_value > *max_bytes)
        *max_value = *max_bytes; /* a small cache caps its values with it */
    /* 512 MiB is Redis's own limit on a string. */
    if (*max_value < 1 || *max_value > ((size_t)512 << 20))
        fail_key(ld, "cache.max_value", "must be from 1 byte to 512MiB");
    else if (*max_value > *max_bytes && *max_bytes >= 1)
        fail_key(ld, "cache.max_value", "must not be more than cache.max_bytes (%zu bytes)",
                 *max_bytes);
    lua_pop(L, 1);
}

/* ---- plugins = { dir = …, <name> = { … } } ---------------------------------------- */

#define PLUGIN_CONFIG_DEPTH 8

static int plugin_name_ok(const char *s)
{
    if (!(s[0] >= 'a' && s[0] <= 'z') || strlen(s) > 64)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return 0;
    return 1;
}

static void add_plugin_value(struct luar_plugin_config *pc, const char *key, const char *value,
                             int type)
{
    luar_config_value_t *v = realloc(pc->values, (pc->nvalues + 1) * sizeof *v);
    if (v == NULL)
        return;
    pc->values = v;
    v[pc->nvalues].key = strdup(key);
    v[pc->nvalues].value = strdup(value);
    v[pc->nvalues].type = type;
    if (v[pc->nvalues].key && v[pc->nvalues].value)
        pc->nvalues++;
    else {
        free(v[pc->nvalues].key);
        free(v[pc->nvalues].value);
    }
}

/* Flattens the table at the top of the stack into pc under `prefix` ("" at the top). */
static void read_plugin_table(loader_t *ld, lua_State *L, struct luar_plugin_config *pc,
                              const char *prefix, int depth)
{
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        char key[256], path[320];
        int n;
        if (lua_type(L, -2) == LUA_TSTRING)
            n = snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "",
                         lua_tostring(L, -2));
        else if (lua_isinteger(L, -2))
            n = snprintf(key, sizeof key, "%s%s%lld", prefix, *prefix ? "." : "",
                         (long long)lua_tointeger(L, -2));
        else
            n = snprintf(key, sizeof key, "%s%s?", prefix, *prefix ? "." : "");
        /* A cut key could name another setting: refused, not truncated; the path shown
         * for it ends with "…". */
        int cut = n < 0 || (size_t)n >= sizeof key;
        n = snprintf(path, sizeof path, "plugins.%s.%s", pc->name, key);
        if (cut || n < 0 || (size_t)n >= sizeof path) {
            size_t len = strlen(path);
            len = len < sizeof path - 4 ? len : sizeof path - 4;
            memcpy(path + len, "\xe2\x80\xa6", 4); /* "…" and its NUL */
        }
        int t = lua_type(L, -1);
        if (cut) {
            fail_key(ld, path, "key longer than %d bytes", (int)sizeof key - 1);
        } else if (lua_type(L, -2) != LUA_TSTRING && !lua_isinteger(L, -2)) {
            fail_key(ld, path, "keys must be names or list indexes");
        } else if (t == LUA_TTABLE && depth < PLUGIN_CONFIG_DEPTH) {
            read_plugin_table(ld, L, pc, key, depth + 1);
        } else if (t == LUA_TTABLE) {
            fail_key(ld, path, "nested more than %d levels", PLUGIN_CONFIG_DEPTH);
        } else if (t == LUA_TSTRING) {
            add_plugin_value(pc, key, lua_tostring(L, -1), t);
        } else if (t == LUA_TNUMBER) {
            char num[64];
            if (lua_isinteger(L, -1))
                snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, -1));
            else
                snprintf(num, sizeof num, "%.17g", lua_tonumber(L, -1));
            add_plugin_value(pc, key, num, t);
        } else if (t == LUA_TBOOLEAN) {
            add_plugin_value(pc, key, lua_toboolean(L, -1) ? "true" : "false", t);
        } else {
            fail_key(ld, path, "expected a string, number, boolean or table, got %s",
                     lua_typename(L, t));
        }
        lua_pop(L, 1);
    }
}

static void add_plugin_dir(luar_config_t *cfg, const char *dir)
{
    char **d = realloc(cfg->plugin_dirs, (cfg->nplugin_dirs + 1) * sizeof *d);
    if (d == NULL)
        return;
    cfg->plugin_dirs = d;
    if ((d[cfg->nplugin_dirs] = strdup(dir)) != NULL)
        cfg->nplugin_dirs++;
}

/* plugins = { dir = "…" | { "…", … }, <name> = { … }, … } */
static void read_plugins(loader_t *ld, lua_State *L)
{
    luar_config_t *cfg = ld->cfg;
    if (!enter(ld, L, "plugins"))
        return;
    int t = lua_getfield(L, -1, "dir");
    if (t == LUA_TSTRING) {
        add_plugin_dir(cfg, lua_tostring(L, -1));
    } else if (t == LUA_TTABLE) {
        lua_Integer n = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            if (lua_geti(L, -1, i) == LUA_TSTRING)
                add_plugin_dir(cfg, lua_tostring(L, -1));
            else
                fail_key(ld, "plugins.dir", "entry %lld: expected a folder name, got %s",
                         (long long)i, luaL_typename(L, -1));
            lua_pop(L, 1);
        }
        if (n == 0)
            fail_key(ld, "plugins.dir", "expected a folder or a list of folders, got an "
                                        "empty table");
    } else if (t != LUA_TNIL) {
        fail_key(ld, "plugins.dir", "expected a folder or a list of folders, got %s",
                 lua_typename(L, t));
    }
    lua_pop(L, 1);
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (name && strcmp(name, "dir") == 0) {
            lua_pop(L, 1);
            continue;
        }
        char path[160];
        snprintf(path, sizeof path, "plugins.%.140s", name ? name : "?");
        if (name == NULL || !plugin_name_ok(name)) {
            fail_key(ld, path, "plugin names are [a-z][a-z0-9_]* (at most 64 characters)");
        } else if (!lua_istable(L, -1)) {
            fail_key(ld, path, "expected a table (the plugin's settings), got %s",
                     luaL_typename(L, -1));
        } else {
            struct luar_plugin_config *p =
                realloc(cfg->plugins, (cfg->nplugins + 1) * sizeof *p);
            if (p != NULL) {
                cfg->plugins = p;
                p = &p[cfg->nplugins++];
                memset(p, 0, sizeof *p);
                p->name = strdup(name);
                read_plugin_table(ld, L, p, "", 1);
            }
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

const struct luar_plugin_config *luar_config_plugin(const luar_config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nplugins; i++)
        if (cfg->plugins[i].name && strcmp(cfg->plugins[i].name, name) == 0)
            return &cfg->plugins[i];
    return NULL;
}

static void free_plugins(luar_config_t *cfg)
{
    for (size_t i = 0; i < cfg->nplugin_dirs; i++)
        free(cfg->plugin_dirs[i]);
    free(cfg->plugin_dirs);
    for (size_t i = 0; i < cfg->nplugins; i++) {
        struct luar_plugin_config *p = &cfg->plugins[i];
        for (size_t k = 0; k < p->nvalues; k++) {
            /* API keys live here: wipe them like the secrets key */
            OPENSSL_cleanse(p->values[k].value, strlen(p->values[k].value));
            free(p->values[k].key);
            free(p->values[k].value);
        }
        free(p->values);
        free(p->name);
    }
    free(cfg->plugins);
}

static void read_table(loader_t *ld, lua_State *L)
{
    luar_config_t *cfg = ld->cfg;
    check_keys(ld, L, known_keys, NULL);
    read_listen(ld, L);
    read_redis(ld, L);
    read_tracing(ld, L);
    const char *s;
    if ((s = opt_string(ld, L, "scripts", "scripts")))
        set_str(&cfg->scripts, s);
    if ((s = opt_string(ld, L, "data", "data")))
        set_str(&cfg->data, s);
    if ((s = opt_string(ld, L, "queue", "queue")))
        set_str(&cfg->queue, s);
    if ((s = opt_string(ld, L, "public_url", "public_url")))
        set_str(&cfg->public_url, s);
    int t = lua_getfield(L, -1, "workers");
    if (t == LUA_TNUMBER || t == LUA_TSTRING) {
        if (parse_workers(lua_tostring(L, -1), &cfg->workers))
            fail_key(ld, "workers", "expected a number from 1 to 256 or \"auto\", got %s",
                     lua_tostring(L, -1));
    } else if (t != LUA_TNIL) {
        fail_key(ld, "workers", "expected a number or \"auto\", got %s", lua_typename(L, t));
    }
    lua_pop(L, 1);
    static const char *const known_admin[] = {"token", NULL};
    static const char *const known_limits[] = {"max_body", "max_header", "header_timeout",
                                               "body_timeout", "keepalive_timeout",
                                               "max_connections", "lua_memory", "cpu_budget",
                                               NULL};
    static const char *const known_log[] = {"level", "format", "file", "max_bytes", "backups",
                                            NULL};
    static const char *const known_reload[] = {"watch", "debounce", NULL};
    static const char *const known_jobs[] = {"lease", "heartbeat", "result_ttl", "dead_ttl",
                                             "poll", "concurrency", "queues", NULL};
    static const char *const known_shutdown[] = {"grace", NULL};
    if (enter(ld, L, "admin")) {
        check_keys(ld, L, known_admin, "admin");
        if ((s = opt_string(ld, L, "token", "admin.token")))
            set_str(&cfg->admin_token, s);
        lua_pop(L, 1);
    }
    if (enter(ld, L, "limits")) {
        check_keys(ld, L, known_limits, "limits");
        double conns = cfg->limits.max_connections;
        read_size(ld, L, "max_body", "limits.max_body", &cfg->limits.max_body);
        read_size(ld, L, "max_header", "limits.max_header", &cfg->limits.max_header);
        read_number(ld, L, "header_timeout", "limits.header_timeout",
                    &cfg->limits.header_timeout, 0.001);
        read_number(ld, L, "body_timeout", "limits.body_timeout", &cfg->limits.body_timeout,
                    0.001);
        read_number(ld, L, "keepalive_timeout", "limits.keepalive_timeout",
                    &cfg->limits.keepalive_timeout, 0);
        read_number(ld, L, "max_connections", "limits.max_connections", &conns, 1);
        cfg->limits.max_connections = (int)conns;
        read_size(ld, L, "lua_memory", "limits.lua_memory", &cfg->lua_memory);
        read_number(ld, L, "cpu_budget", "limits.cpu_budget", &cfg->cpu_budget, 0.001);
        if (cfg->limits.max_header < 256)
            fail_key(ld, "limits.max_header", "must be at least 256 bytes");
        if (cfg->lua_memory && cfg->lua_memory < (1u << 20))
            fail_key(ld, "limits.lua_memory", "must be at least 1MiB");
        lua_pop(L, 1);
    }
    if (enter(ld, L, "log")) {
        check_keys(ld, L, known_log, "log");
        if ((s = opt_string(ld, L, "level", "log.level")) &&
            luar_log_level_parse(s, &cfg->log.level))
            fail_key(ld, "log.level", "expected debug, info, warn or error, got %s", s);
        if ((s = opt_string(ld, L, "format", "log.format")) && strcmp(s, "json") != 0)
            fail_key(ld, "log.format", "only \"json\" is supported, got %s", s);
        if ((s = opt_string(ld, L, "file", "log.file")))
            set_str((char **)&cfg->log.file, s);
        size_t max = (size_t)cfg->log.max_bytes;
        read_size(ld, L, "max_bytes", "log.max_bytes", &max);
        cfg->log.max_bytes = max;
        double backups = cfg->log.backups;
        read_number(ld, L, "backups", "log.backups", &backups, 0);
        cfg->log.backups = (int)backups;
        lua_pop(L, 1);
    }
    if (enter(ld, L, "reload")) {
        check_keys(ld, L, known_reload, "reload");
        read_bool(ld, L, "watch", "reload.watch", &cfg->reload_watch);
        read_number(ld, L, "debounce", "reload.debounce", &cfg->reload_debounce, 0);
        lua_pop(L, 1);
    }
    if (enter(ld, L, "jobs")) {
        check_keys(ld, L, known_jobs, "jobs");
        luar_jobs_config_t *j = &cfg->jobs;
        double conc = j->concurrency;
        read_number(ld, L, "lease", "jobs.lease", &j->lease, 1);
        read_number(ld, L, "heartbeat", "jobs.heartbeat", &j->heartbeat, 0.1);
        read_number(ld, L, "result_ttl", "jobs.result_ttl", &j->result_ttl, 0);
        read_number(ld, L, "dead_ttl", "jobs.dead_ttl", &j->dead_ttl, 0);
        read_number(ld, L, "poll", "jobs.poll", &j->poll, 0.01);
        read_number(ld, L, "concurrency", "jobs.concurrency", &conc, 0);
        j->concurrency = (int)conc;
        if (j->heartbeat >= j->lease)
            fail_key(ld, "jobs.heartbeat", "must be shorter than jobs.lease (%g s)", j->lease);
        if (enter(ld, L, "queues")) {
            lua_pushnil(L);
            while (lua_next(L, -2)) {
                if (lua_type(L, -2) != LUA_TSTRING || !lua_isinteger(L, -1) ||
                    lua_tointeger(L, -1) < 1) {
                    fail_key(ld, "jobs.queues", "expected name = concurrency (a positive "
                                                "integer) entries");
                } else if (j->nqueues < LUAR_MAX_QUEUE_LIMITS) {
                    j->queues[j->nqueues].name = strdup(lua_tostring(L, -2));
                    j->queues[j->nqueues].limit = (int)lua_tointeger(L, -1);
                    j->nqueues++;
                }
                lua_pop(L, 1);
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    if (enter(ld, L, "webhooks")) {
        read_webhooks(ld, L, &cfg->webhooks);
        lua_pop(L, 1);
    }
    if (enter(ld, L, "shutdown")) {
        check_keys(ld, L, known_shutdown, "shutdown");
        read_number(ld, L, "grace", "shutdown.grace", &cfg->shutdown_grace, 0);
        lua_pop(L, 1);
    }
    read_secrets(ld, L);
    read_cache(ld, L);
    read_plugins(ld, L);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    luar_buf_t b;
    luar_buf_init(&b, 16u << 20);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (luar_buf_append(&b, chunk, n))
            break;
    fclose(f);
    return luar_buf_detach(&b, NULL);
}

/* Runs the configuration file and reads its table. */
static void load_file(loader_t *ld)
{
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        luar_buf_puts(ld->err, "out of memory loading the configuration\n");
        ld->nerrors++;
        return;
    }
    luaL_openlibs(L);
    lua_pushcfunction(L, l_env);
    lua_setglobal(L, "env");
    ld->text = read_file(ld->cfg->file);
    if (ld->text == NULL) {
        luar_buf_appendf(ld->err, "%s: cannot read: %s\n", ld->cfg->file, strerror(errno));
        ld->nerrors++;
    } else if (luaL_loadbufferx(L, ld->text, strlen(ld->text), lua_pushfstring(L, "@%s",
                                ld->cfg->file), "t") ||
               lua_pcall(L, 0, 1, 0)) {
        /* Syntax and runtime errors already read "file:line: message". */
        luar_buf_appendf(ld->err, "%s\n", lua_tostring(L, -1));
        ld->nerrors++;
    } else if (!lua_istable(L, -1)) {
        luar_buf_appendf(ld->err, "%s:1: the file must return a table, it returned %s\n",
                         ld->cfg->file, luaL_typename(L, -1));
        ld->nerrors++;
    } else {
        read_table(ld, L);
    }
    lua_close(L);
}

static void apply_env(loader_t *ld)
{
    luar_config_t *cfg = ld->cfg;
    const char *v;
    if ((v = getenv("LUAR_LISTEN")) && *v)
        listen_from_list(cfg, v);
    if ((v = getenv("LUAR_QUEUE")) && *v)
        set_str(&cfg->queue, v);
    if ((v = getenv("LUAR_SCRIPTS")) && *v)
        set_str(&cfg->scripts, v);
    if ((v = getenv("LUAR_DATA")) && *v)
        set_str(&cfg->data, v);
    if ((v = getenv("LUAR_WORKERS")) && *v && parse_workers(v, &cfg->workers)) {
        luar_buf_appendf(ld->err, "LUAR_WORKERS: expected a number from 1 to 256 or "
                                  "\"auto\", got %s\n", v);
        ld->nerrors++;
    }
    if ((v = getenv("LUAR_LOG_LEVEL")) && *v && luar_log_level_parse(v, &cfg->log.level)) {
        luar_buf_appendf(ld->err, "LUAR_LOG_LEVEL: expected debug, info, warn or error, "
                                  "got %s\n", v);
        ld->nerrors++;
    }
    if ((v = getenv("LUAR_ADMIN_TOKEN")) && *v)
        set_str(&cfg->admin_token, v);
    if ((v = getenv("LUAR_SECRETS_KEY")) && *v)
        set_secrets_key(ld, v, "LUAR_SECRETS_KEY");
    if ((v = getenv("LUAR_PUBLIC_URL")) && *v)
        set_str(&cfg->public_url, v);
}

static void apply_flags(loader_t *ld, const luar_config_flags_t *f)
{
    luar_config_t *cfg = ld->cfg;
    if (f->listen)
        listen_from_list(cfg, f->listen);
    if (f->scripts)
        set_str(&cfg->scripts, f->scripts);
    if (f->data)
        set_str(&cfg->data, f->data);
    if (f->queue)
        set_str(&cfg->queue, f->queue);
    if (f->workers && parse_workers(f->workers, &cfg->workers)) {
        luar_buf_appendf(ld->err, "--workers: expected a number from 1 to 256 or \"auto\", "
                                  "got %s\n", f->workers);
        ld->nerrors++;
    }
}

/* "<data>/<name>", malloc'd. */
static char *data_path(const luar_config_t *cfg, const char *name)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    luar_buf_appendf(&b, "%s/%s", cfg->data, name);
    return luar_buf_detach(&b, NULL);
}

int luar_config_load(luar_config_t *cfg, const luar_config_flags_t *flags, luar_buf_t *err)
{
    static const luar_config_flags_t none;
    if (flags == NULL)
        flags = &none;
    memset(cfg, 0, sizeof *cfg);
    luar_http_limits_default(&cfg->limits);
    cfg->workers = 1;
    cfg->lua_memory = 256u << 20;
    cfg->cpu_budget = 5;
    cfg->shutdown_grace = 30;
    cfg->log.level = LUAR_LOG_INFO;
    cfg->log.max_bytes = 10u << 20;
    cfg->log.backups = 5;
    cfg->reload_watch = 1;
    cfg->reload_debounce = 0.2;
    cfg->jobs.lease = 30;
    cfg->jobs.heartbeat = 10;
    cfg->jobs.result_ttl = 86400;
    cfg->jobs.dead_ttl = 2592000;
    cfg->jobs.poll = 0.5;
    cfg->jobs.concurrency = LUAR_JOBS_DEFAULT_CONCURRENCY;
    cfg->cache.max_bytes = LUAR_QUEUE_CACHE_DEFAULT_MAX_BYTES;
    cfg->cache.max_value = LUAR_QUEUE_CACHE_DEFAULT_MAX_VALUE;
    luar_webhooks_config_init(&cfg->webhooks);
    cfg->tracing.sample_rate = 1.0;
    cfg->scripts = strdup("scripts");
    cfg->data = strdup("luar-data");
    add_listen(cfg, DEFAULT_LISTEN, NULL, NULL, NULL);

    loader_t ld = {.cfg = cfg, .err = err};
    if (flags->config)
        cfg->file = strdup(flags->config);
    else if (access(DEFAULT_CONFIG, F_OK) == 0)
        cfg->file = strdup(DEFAULT_CONFIG);
    if (cfg->file)
        load_file(&ld);
    apply_env(&ld);
    apply_flags(&ld, flags);
    if (cfg->queue == NULL) {
        luar_buf_t q;
        luar_buf_init(&q, 0);
        luar_buf_appendf(&q, "sqlite:%s/luar.db", cfg->data);
        cfg->queue = luar_buf_detach(&q, NULL);
    }
    if (cfg->secrets_file == NULL)
        cfg->secrets_file = data_path(cfg, "secrets.enc");
    if (cfg->audit_file == NULL)
        cfg->audit_file = data_path(cfg, "audit.log");
    free(ld.text);
    if (ld.nerrors) {
        luar_config_free(cfg);
        return LUAR_ECONFIG;
    }
    return 0;
}

void luar_config_free(luar_config_t *cfg)
{
    free_listen(cfg);
    for (int i = 0; i < cfg->jobs.nqueues; i++)
        free(cfg->jobs.queues[i].name);
    free(cfg->file);
    free(cfg->scripts);
    free(cfg->public_url);
    free(cfg->data);
    free(cfg->queue);
    free(cfg->admin_token);
    free((char *)cfg->log.file);
    free(cfg->secrets_file);
    free(cfg->audit_file);
    free(cfg->redis_url);
    free_plugins(cfg);
    luar_tracing_config_free(&cfg->tracing);
    OPENSSL_cleanse(&cfg->secrets_key, sizeof cfg->secrets_key);
    memset(cfg, 0, sizeof *cfg);
}

char *luar_config_control_path(const luar_config_t *cfg)
{
    luar_buf_t b;
    luar_buf_init(&b, 0);
    luar_buf_appendf(&b, "%s/luar.sock", cfg->data);
    return luar_buf_detach(&b, NULL);
}

void luar_config_vm(const luar_config_t *cfg, uv_loop_t *loop, luar_vm_config_t *vc)
{
    memset(vc, 0, sizeof *vc);
    vc->loop = loop;
    vc->scripts_dir = cfg->scripts;
    vc->mem_limit = cfg->lua_memory;
    vc->cpu_budget = cfg->cpu_budget;
}
