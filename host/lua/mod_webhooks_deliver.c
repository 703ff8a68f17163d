/*
 * webhooks.deliver (SPEC §4, §8; docs/sending-webhooks.md): outbound webhooks signed the
 * Standard Webhooks way, retried on Svix's schedule and dead-lettered.
 *
 * The call checks the delivery and enqueues it durably as one job of the built-in
 * definition LUAR_DELIVER_JOB ("webhooks.deliver", queue "deliveries"), yielding on the
 * queue through the bridge like jobs.enqueue. That definition is added to every VM when
 * the VM is created (luar_webhooks_deliver_define, from vm.c), not when a script requires
 * luar.webhooks: a delivery enqueued by one generation of the scripts, or before a restart,
 * still runs under scripts that never mention webhooks.
 *
 * The job's body is the C function deliver_job below: one attempt per run
 * (host/webhooks/deliver.c). A 2xx answer ends the job (succeeded, the result says the
 * status); any other outcome raises, so the runner retries after the schedule's next delay
 * (the definition's backoff function reads the configured schedule) and leaves the job dead
 * after the last attempt, with that attempt's error as last_error. An open breaker returns
 * jobs.retry_in instead: the job waits without spending an attempt.
 */
#include "common/clock.h"
#include "common/error.h"
#include "crypto/crypto.h"
#include "jobs/jobs.h"
#include "lua/bridge.h"
#include "lua/error.h"
#include "lua/mod_webhooks.h"
#include "lua/util.h"
#include "lua/vm_internal.h"
#include "secrets/redact.h"
#include "webhooks/deliver.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEDUPE_TTL 86400.0 /* an explicit id is delivered once per URL within a day */

/* Headers the delivery sets itself; a caller's extra header may not replace them. */
static const char *const reserved_headers[] = {
    "content-type", "content-length", "host", "transfer-encoding", "webhook-id",
    "webhook-timestamp", "webhook-signature", NULL,
};

/* The string field `k` of the table at index 1, or NULL when nil; raises on another type. */
static const char *opt_field(lua_State *L, const char *k)
{
    int t = lua_getfield(L, 1, k);
    const char *v = NULL;
    if (t == LUA_TSTRING)
        v = lua_tostring(L, -1); /* stays alive: the table holds it */
    else if (t != LUA_TNIL)
        luaL_error(L, "webhooks.deliver: %s must be a string, got %s", k, lua_typename(L, t));
    lua_pop(L, 1);
    return v;
}

static const char *req_field(lua_State *L, const char *k)
{
    const char *v = opt_field(L, k);
    if (v == NULL || v[0] == '\0')
        luaL_error(L, "webhooks.deliver: %s is required", k);
    return v;
}

static int valid_header_name(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (*s <= ' ' || *s >= 127 || strchr("()<>@,;:\\\"/[]?={}", *s))
            return 0;
    return 1;
}

static int valid_id(const char *id)
{
    size_t n = strlen(id);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
            return 0;
    return n > 0 && n <= LUAR_DELIVER_ID_MAX;
}

/* Checks headers = { name = value, … } at stack index `t`; raises on misuse. */
static void check_headers(lua_State *L, int t)
{
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "webhooks.deliver: headers must map names to string values");
        const char *name = lua_tostring(L, -2), *value = lua_tostring(L, -1);
        if (!valid_header_name(name) || strpbrk(value, "\r\n"))
            luaL_error(L, "webhooks.deliver: header %s is not a valid header line", name);
        for (int i = 0; reserved_headers[i]; i++)
            if (strcasecmp(name, reserved_headers[i]) == 0)
                luaL_error(L, "webhooks.deliver: header %s is set by the delivery itself",
                           name);
        if (++n > LUAR_DELIVER_MAX_HEADERS)
            luaL_error(L, "webhooks.deliver: at most %d extra headers",
                       LUAR_DELIVER_MAX_HEADERS);
        lua_pop(L, 1);
    }
}

/* ---- webhooks.deliver{…} ⏸ ----------------------------------------------------------- */

/* → msg_id, job_id (nil when the id was a duplicate) | nil, err */
static int enqueue_push(lua_State *L, luar_bridge_op_t *op)
{
    const luar_jobs_enqueued_t *e = luar_jobs_enqueued(op);
    if (e->rc)
        return luar_lua_fail(L, "backend", "the queue backend could not take the delivery (%s)",
                             luar_strerror(e->rc));
    lua_pushstring(L, e->note);
    if (e->duplicate || e->n == 0)
        lua_pushnil(L);
    else
        lua_pushstring(L, e->ids[0]);
    return 2;
}

/* webhooks.deliver{url, secret, type, payload[, id][, headers][, timeout]} ⏸ [-1, +2] */
int luar_webhooks_deliver(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    const char *url = req_field(L, "url");
    const char *secret = req_field(L, "secret");
    const char *type = req_field(L, "type");
    const char *id = opt_field(L, "id");
    if (lua_getfield(L, 1, "payload") == LUA_TNIL)
        return luaL_error(L, "webhooks.deliver: payload is required (the event's data)");
    int payload = lua_gettop(L);
    int headers = 0;
    int t = lua_getfield(L, 1, "headers");
    if (t == LUA_TTABLE) {
        headers = lua_gettop(L);
        check_headers(L, headers);
    } else if (t != LUA_TNIL) {
        return luaL_error(L, "webhooks.deliver: headers must be a table, got %s",
                          lua_typename(L, t));
    }
    t = lua_getfield(L, 1, "timeout");
    double timeout = LUAR_DELIVER_DEFAULT_TIMEOUT;
    if (t == LUA_TNUMBER)
        timeout = lua_tonumber(L, -1);
    if ((t != LUA_TNUMBER && t != LUA_TNIL) || !(timeout > 0) ||
        timeout > LUAR_DELIVER_MAX_TIMEOUT)
        return luaL_error(L, "webhooks.deliver: timeout must be a number of seconds in "
                             "(0, %g]", LUAR_DELIVER_MAX_TIMEOUT);
    lua_pop(L, 1);
    if (id && !valid_id(id))
        return luaL_error(L, "webhooks.deliver: id must be 1 to %d bytes without control "
                             "characters", LUAR_DELIVER_ID_MAX);

    /* Values that come from customers (the URL, the secret) fail softly: nil, err. */
    luar_queue_t *q = luar_jobs_queue();
    if (q == NULL)
        return luar_lua_fail(L, "backend", "no queue backend in this command");
    const luar_webhooks_config_t *w = luar_deliver_settings();
    luar_buf_t *why = luar_lua_newbuf(L, 1024);
    const char *kind = NULL;
    if (luar_deliver_check_url(url, w->deliver_allow_private, &kind, why))
        return luar_lua_fail(L, kind, "webhooks.deliver: %s", why->data);
    if (luar_deliver_check_secret(secret, why))
        return luar_lua_fail(L, "invalid", "webhooks.deliver: %s", why->data);
    luar_secret_watch("webhook delivery secret", secret, strlen(secret));

    char msg_id[LUAR_DELIVER_ID_SIZE];
    if (id == NULL) {
        luar_deliver_new_id(msg_id);
        id = msg_id;
    }
    double now = luar_time_now();
    size_t data_len;
    const char *data = luar_json_encode(L, payload, &data_len);
    luar_buf_t *body = luar_lua_newbuf(L, 0);
    if (luar_deliver_body(body, type, strlen(type), now, data, data_len))
        return luaL_error(L, "webhooks.deliver: not enough memory for the body");

    /* The job's arguments: everything an attempt needs, in any later process. */
    const char *const fields[][2] = {
        {"url", url}, {"secret", secret}, {"id", id}, {"type", type}, {"body", body->data},
    };
    lua_createtable(L, 0, 8);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        lua_pushstring(L, fields[i][1]);
        lua_setfield(L, -2, fields[i][0]);
    }
    if (headers) {
        lua_pushvalue(L, headers);
        lua_setfield(L, -2, "headers");
    }
    lua_pushnumber(L, timeout);
    lua_setfield(L, -2, "timeout");
    lua_pushnumber(L, now);
    lua_setfield(L, -2, "created_at");
    const char *args = luar_json_encode(L, -1, NULL);

    luar_job_spec_t spec;
    memset(&spec, 0, sizeof spec);
    spec.name = LUAR_DELIVER_JOB;
    spec.queue = LUAR_DELIVER_QUEUE;
    spec.args = args;
    spec.max_attempts = w->deliver_attempts;
    double first = luar_deliver_delay(w, 0);
    spec.run_at = first > 0 ? luar_queue_now(q) + first : 0;

    /* A caller-given id is the idempotency key: once per URL within DEDUPE_TTL. */
    const char *dedupe = NULL;
    if (id != msg_id) {
        uint8_t md[LUAR_CRYPTO_MAX_MD];
        size_t mdlen = 0;
        luar_crypto_digest("sha256", url, strlen(url), md, &mdlen);
        luar_buf_t *key = luar_lua_newbuf(L, 0);
        luar_buf_puts(key, LUAR_DELIVER_JOB ":");
        luar_hex_encode(key, md, 12);
        luar_buf_appendf(key, ":%s", id);
        dedupe = key->data;
    }

    return luar_jobs_enqueue_wait(L, "webhooks.deliver", &spec, 1, dedupe, DEDUPE_TTL, id,
                                  enqueue_push);
}

/* ---- the job: one attempt per run ---------------------------------------------------- */

struct attempt_op {
    luar_deliver_call_t *call; /* in flight, or NULL */
    int failed_to_start;
    char start_error[256];
    luar_deliver_outcome_t outcome;
    int attempt, max_attempts;
};

static void on_attempt(void *arg, const luar_deliver_outcome_t *o)
{
    luar_bridge_op_t *op = arg;
    struct attempt_op *a = luar_bridge_op_data(op);
    a->call = NULL;
    a->outcome = *o;
    luar_bridge_complete(op);
}

static void attempt_cleanup(luar_bridge_op_t *op, int canceled)
{
    struct attempt_op *a = luar_bridge_op_data(op);
    if (canceled && a->call) /* job timeout or shutdown: stop the transfer, record nothing */
        luar_deliver_cancel(a->call);
    a->call = NULL;
    luar_bridge_op_free(op);
}

/* The job's outcome: a result, jobs.retry_in, or an error (a failed attempt). */
static int attempt_push(lua_State *L, luar_bridge_op_t *op)
{
    struct attempt_op *a = luar_bridge_op_data(op);
    const luar_deliver_outcome_t *o = &a->outcome;
    if (a->failed_to_start) {
        lua_pushfstring(L, "cannot deliver: %s", a->start_error);
        return lua_error(L);
    }
    if (o->postpone > 0) {
        luar_jobs_push_retry_in(L, o->postpone);
        return 1;
    }
    if (!o->delivered) {
        lua_pushfstring(L, "%s (attempt %d of %d)", o->message, a->attempt, a->max_attempts);
        return lua_error(L);
    }
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, o->status);
    lua_setfield(L, -2, "status");
    lua_pushinteger(L, a->attempt);
    lua_setfield(L, -2, "attempt");
    lua_pushnumber(L, floor(o->duration * 1e6) / 1e3);
    lua_setfield(L, -2, "duration_ms");
    return 1;
}

static const char *arg_string(lua_State *L, const char *k)
{
    lua_getfield(L, 1, k);
    const char *v = lua_tostring(L, -1); /* alive: the arguments table holds it */
    lua_pop(L, 1);
    if (v == NULL)
        luaL_error(L, "webhooks.deliver job: the stored arguments have no %s", k);
    return v;
}

static double arg_number(lua_State *L, int t, const char *k)
{
    lua_getfield(L, t, k);
    double v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

/* The job body: fn(args, job) ⏸ → result | jobs.retry_in(s); raises on a failed attempt. */
static int deliver_job(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checktype(L, 2, LUA_TTABLE);
    luar_deliver_msg_t m;
    memset(&m, 0, sizeof m);
    m.url = arg_string(L, "url");
    m.secret = arg_string(L, "secret");
    luar_secret_watch("webhook delivery secret", m.secret, strlen(m.secret));
    m.id = arg_string(L, "id");
    m.body = arg_string(L, "body");
    m.body_len = strlen(m.body);
    m.timeout = arg_number(L, 1, "timeout");
    m.created_at = arg_number(L, 1, "created_at");
    m.attempt = (int)arg_number(L, 2, "attempt");
    m.max_attempts = (int)arg_number(L, 2, "max_attempts");
    lua_getfield(L, 2, "id");
    m.job_id = lua_tostring(L, -1); /* kept on the stack until the call returns */
    luar_client_header_t extra[LUAR_DELIVER_MAX_HEADERS];
    if (lua_getfield(L, 1, "headers") == LUA_TTABLE) {
        lua_pushnil(L);
        while (m.nheaders < LUAR_DELIVER_MAX_HEADERS && lua_next(L, -2)) {
            if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING)
                extra[m.nheaders++] = (luar_client_header_t){lua_tostring(L, -2),
                                                             lua_tostring(L, -1)};
            lua_pop(L, 1);
        }
        m.headers = extra;
    }

    luar_bridge_op_t *op = luar_bridge_op_new(L, "webhooks.deliver", sizeof(struct attempt_op));
    luar_bridge_op_set_cleanup(op, attempt_cleanup);
    struct attempt_op *a = luar_bridge_op_data(op);
    a->attempt = m.attempt;
    a->max_attempts = m.max_attempts;
    luar_buf_t err;
    luar_buf_init(&err, sizeof a->start_error - 1);
    int rc = luar_deliver_attempt(luar_bridge_loop(L), &m, on_attempt, op, &a->call, &err);
    if (rc) {
        a->failed_to_start = 1;
        snprintf(a->start_error, sizeof a->start_error, "%s",
                 err.len ? err.data : luar_strerror(rc));
        luar_bridge_complete(op);
    }
    luar_buf_free(&err);
    return luar_bridge_yield(L, op, attempt_push);
}

/* The definition's backoff: seconds after attempt N failed, from the configured schedule. */
static int deliver_backoff(lua_State *L)
{
    lua_Integer attempt = luaL_checkinteger(L, 1);
    lua_pushnumber(L, luar_deliver_delay(luar_deliver_settings(),
                                         attempt > 1000000 ? 1000000 : (int)attempt));
    return 1;
}

void luar_webhooks_deliver_define(lua_State *L)
{
    luar_jobs_registry_t *r = luar_jobs_registry(luar_vm_of(L));
    if (r == NULL)
        luaL_error(L, "not enough memory for the job registry");
    luar_job_def_t d;
    memset(&d, 0, sizeof d);
    d.retries = luar_deliver_settings()->deliver_attempts - 1;
    d.backoff = LUAR_BACKOFF_FUNCTION;
    lua_pushcfunction(L, deliver_backoff);
    d.backoff_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushcfunction(L, deliver_job);
    d.fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    d.name = strdup(LUAR_DELIVER_JOB);
    d.queue = strdup(LUAR_DELIVER_QUEUE);
    int rc = d.name && d.queue ? luar_jobs_define(r, &d) : LUAR_ENOMEM;
    if (rc == LUAR_ENOMEM && (d.name == NULL || d.queue == NULL)) {
        free(d.name);
        free(d.queue);
    }
    if (rc)
        luaL_error(L, "cannot define the job %s: %s", LUAR_DELIVER_JOB, luar_strerror(rc));
}
