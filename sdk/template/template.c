/*
 * template: a minimal Luar plugin. Copy it to start your own (docs/plugins.md walks
 * through it). It shows the four parts a plugin has:
 *
 *   - the descriptor (LUAR_PLUGIN_DEFINE at the bottom): ABI, name, version, callbacks;
 *   - init/fini: read `plugins.template` from the config file, keep the host table;
 *   - open: the Lua module `require "luar.template"`, with a plain function (greet) and
 *     one that waits without blocking the loop (later), through the coroutine bridge;
 *   - a webhook scheme, `template`: "X-Template-Signature: sha256=<hex HMAC-SHA256 of the
 *     body>", the event id in X-Template-Id, the type in X-Template-Event.
 *
 * Everything runs on the host's loop thread; nothing here may block or start a thread.
 */
#include <luar/plugin.h>

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The host API table: valid from init until fini returns. */
static const luar_host_t *host;

/* What init builds from the configuration; freed by fini. */
typedef struct template_ctx {
    char *greeting;
} template_ctx_t;

/* ---- Lua: a plain function ------------------------------------------------------------- */

/* template.greet(name) -> "<greeting>, <name>!" */
static int l_greet(lua_State *L)
{
    template_ctx_t *ctx = lua_touserdata(L, lua_upvalueindex(1));
    const char *name = luaL_checkstring(L, 1);
    lua_pushfstring(L, "%s, %s!", ctx->greeting, name);
    return 1;
}

/* ---- Lua: a function that waits (the bridge) --------------------------------------------- */

/* The op's data: what the wait needs, and what push() hands back to Lua. */
typedef struct later {
    luar_plugin_timer_t *timer;
    char *text; /* what to return (a copy: the Lua string may be collected meanwhile) */
    size_t len;
} later_t;

/* The timer fired (loop callback, no Lua here): tell the bridge the op is done. */
static void later_fired(void *arg)
{
    host->bridge_complete(arg);
}

/* Back in the coroutine: push the results. */
static int later_push(lua_State *L, luar_bridge_op_t *op)
{
    later_t *l = host->bridge_op_data(op);
    if (l->text == NULL || l->timer == NULL) {
        lua_pushnil(L);
        lua_pushstring(L, l->text ? "template.later: seconds must be >= 0" : "out of memory");
        return 2;
    }
    lua_pushlstring(L, l->text, l->len);
    return 1;
}

/* Always called once: after push (canceled 0), or when the task was killed while waiting
 * (canceled 1: stop the I/O so bridge_complete is not called any more). */
static void later_cleanup(luar_bridge_op_t *op, int canceled)
{
    later_t *l = host->bridge_op_data(op);
    (void)canceled;
    host->timer_stop(l->timer); /* stops it if pending, and frees it (NULL: no-op) */
    free(l->text);
    host->bridge_op_free(op);
}

/* template.later(seconds, text) -> text, after `seconds`, without blocking the loop */
static int l_later(lua_State *L)
{
    double seconds = luaL_checknumber(L, 1);
    size_t len;
    const char *text = luaL_checklstring(L, 2, &len);
    /* Raises when the caller cannot wait (the top level of a script being loaded): before
     * anything is allocated, so nothing leaks. */
    luar_bridge_op_t *op = host->bridge_op_new(L, "template.later", sizeof(later_t));
    later_t *l = host->bridge_op_data(op);
    if ((l->text = malloc(len + 1)) != NULL) {
        memcpy(l->text, text, len + 1);
        l->len = len;
    }
    if (l->text == NULL || host->timer_start(host, seconds, 0, later_fired, op, &l->timer) != 0)
        host->bridge_complete(op); /* no memory, or bad seconds: answer at once */
    host->bridge_op_set_cleanup(op, later_cleanup);
    return host->bridge_yield(L, op, later_push);
}

static int template_open(lua_State *L, void *ctx)
{
    static const luaL_Reg fns[] = {{"greet", l_greet}, {"later", l_later}, {NULL, NULL}};
    luaL_newlibtable(L, fns);
    lua_pushlightuserdata(L, ctx);
    luaL_setfuncs(L, fns, 1); /* every function gets ctx as upvalue 1 */
    lua_pushliteral(L, "1.0.0");
    lua_setfield(L, -2, "version");
    return 1;
}

/* ---- the webhook scheme ------------------------------------------------------------------ */

typedef struct scheme_cfg {
    luar_buf_t *secret; /* a buffer of ours: wiped when freed */
} scheme_cfg_t;

static const char *const signature_headers[] = {"x-template-signature", NULL};

static int scheme_configure(const char *const *secrets, const size_t *lens, size_t n,
                            const luar_webhook_opt_t *opts, size_t nopts, void **cfg,
                            luar_buf_t *err)
{
    (void)n; /* the host guarantees 1..LUAR_WEBHOOK_MAX_SECRETS; this scheme uses the first */
    if (nopts > 0) {
        host->buf_printf(err, "scheme template: unknown option %s", opts[0].key);
        return LUAR_PLUGIN_EINVAL;
    }
    scheme_cfg_t *c = calloc(1, sizeof *c);
    if (c == NULL || (c->secret = host->buf_new(0)) == NULL ||
        host->buf_append(c->secret, secrets[0], lens[0]) != 0) {
        if (c)
            host->buf_free(c->secret);
        free(c);
        return LUAR_PLUGIN_ENOMEM;
    }
    *cfg = c;
    return 0;
}

static void scheme_free(void *cfg)
{
    scheme_cfg_t *c = cfg;
    host->buf_free(c->secret);
    free(c);
}

/* Appends the hex HMAC-SHA256 of the body to `out`. */
static int body_mac(const scheme_cfg_t *c, const char *body, size_t len, luar_buf_t *out)
{
    size_t klen;
    const char *key = host->buf_data(c->secret, &klen);
    unsigned char mac[64];
    size_t mac_len;
    int rc = host->hmac("sha256", key, klen, body, len, mac, &mac_len);
    return rc ? rc : host->hex_encode(out, mac, mac_len);
}

static luar_webhook_verdict_t scheme_verify(const void *cfg, const luar_webhook_msg_t *msg,
                                            double tolerance, double now, luar_buf_t *why)
{
    (void)tolerance; /* this provider signs no timestamp */
    (void)now;
    size_t len;
    const char *sig = host->webhook_header(msg, "x-template-signature", &len);
    if (sig == NULL) {
        host->buf_printf(why, "no x-template-signature header");
        return LUAR_WEBHOOK_MISSING;
    }
    if (len < 7 || memcmp(sig, "sha256=", 7) != 0) {
        host->buf_printf(why, "x-template-signature does not start with sha256=");
        return LUAR_WEBHOOK_INVALID;
    }
    luar_buf_t *expected = host->buf_new(256);
    if (expected == NULL)
        return LUAR_WEBHOOK_INVALID;
    size_t hex_len = 0;
    int ok = body_mac(cfg, msg->body, msg->body_len, expected) == 0;
    const char *hex = host->buf_data(expected, &hex_len);
    ok = ok && len - 7 == hex_len && host->equals(hex, sig + 7, hex_len); /* constant time */
    host->buf_free(expected);
    if (!ok) {
        host->buf_printf(why, "no signature matches"); /* never the signature itself */
        return LUAR_WEBHOOK_INVALID;
    }
    return LUAR_WEBHOOK_OK;
}

static int scheme_events(const void *cfg, const luar_webhook_msg_t *msg,
                         luar_webhook_event_t *out, size_t max, size_t *n, luar_buf_t *scratch,
                         luar_buf_t *why)
{
    (void)cfg;
    (void)scratch;
    size_t id_len, type_len;
    const char *id = host->webhook_header(msg, "x-template-id", &id_len);
    const char *type = host->webhook_header(msg, "x-template-event", &type_len);
    if (id == NULL || id_len == 0) {
        host->buf_printf(why, "no x-template-id header");
        return LUAR_PLUGIN_EPARSE;
    }
    if (max < 1)
        return LUAR_PLUGIN_ETOOBIG;
    if (type == NULL) {
        type = "event";
        type_len = 5;
    }
    out[0] = (luar_webhook_event_t){id, id_len, type, type_len, msg->body, msg->body_len, 0};
    *n = 1;
    return 0;
}

static int scheme_sign(const void *cfg, const char *id, double timestamp, const char *body,
                       size_t body_len, luar_buf_t *out, luar_buf_t *err)
{
    (void)timestamp;
    (void)err;
    char made[40];
    if (id == NULL) { /* the caller has none: make one, as the provider would */
        unsigned char r[8];
        host->random_bytes(r, sizeof r);
        snprintf(made, sizeof made, "evt_%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2],
                 r[3], r[4], r[5], r[6], r[7]);
        id = made;
    }
    int rc = host->buf_printf(out, "X-Template-Id: %s\r\nX-Template-Event: event\r\n"
                                   "X-Template-Signature: sha256=", id);
    if (rc == 0)
        rc = body_mac(cfg, body, body_len, out);
    if (rc == 0)
        rc = host->buf_append(out, "\r\n", 2);
    return rc;
}

static const luar_webhook_scheme_t template_scheme = {
    .name = "template",
    .signature_headers = signature_headers,
    .configure = scheme_configure,
    .free_cfg = scheme_free,
    .verify = scheme_verify,
    .events = scheme_events,
    .sign = scheme_sign,
};

static const luar_webhook_scheme_t *const schemes[] = {&template_scheme, NULL};

/* ---- init, fini, the descriptor ---------------------------------------------------------- */

static int template_init(const luar_host_t *h, const luar_plugin_config_t *config, void **ctx,
                         char *err, size_t err_size)
{
    host = h;
    /* plugins = { template = { greeting = "Hello" } } in the config file; optional */
    const char *greeting = h->config_string(config, "greeting");
    if (greeting != NULL && greeting[0] == '\0') {
        snprintf(err, err_size, "plugins.template.greeting is empty");
        return LUAR_PLUGIN_ECONFIG;
    }
    template_ctx_t *c = calloc(1, sizeof *c);
    if (c == NULL || (c->greeting = strdup(greeting ? greeting : "Hello")) == NULL) {
        free(c);
        snprintf(err, err_size, "out of memory");
        return LUAR_PLUGIN_ENOMEM;
    }
    h->log(h, LUAR_PLUGIN_LOG_DEBUG, "template ready (greeting \"%s\")", c->greeting);
    *ctx = c;
    return 0;
}

static void template_fini(void *ctx)
{
    template_ctx_t *c = ctx;
    free(c->greeting);
    free(c);
}

LUAR_PLUGIN_DEFINE = {
    .abi = LUAR_PLUGIN_ABI,
    .name = "template",
    .version = "1.0.0",
    .description = "a minimal plugin: a Lua module and a webhook scheme",
    .init = template_init,
    .fini = template_fini,
    .open = template_open,
    .schemes = schemes,
};
