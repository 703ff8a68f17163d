/*
 * Building Sentry events (https://develop.sentry.dev/sdk/event-payloads/): the common
 * members, exceptions with stack traces from Lua tracebacks, message events from log
 * lines, tags, user, trace context and breadcrumbs (the last log lines of the process).
 */
#include "sentry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void sentry_event_id(sentry_t *s, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[16];
    if (s->h->random_bytes(r, sizeof r) != 0)
        memset(r, 0, sizeof r); /* cannot happen with OpenSSL seeded; never a bad id */
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* a UUID v4, as Sentry's SDKs make */
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[r[i] >> 4];
        out[2 * i + 1] = hex[r[i] & 15];
    }
    out[32] = '\0';
}

void sentry_iso_time(double t, char out[32])
{
    time_t sec = (time_t)t;
    int ms = (int)((t - (double)sec) * 1000);
    if (ms < 0)
        ms = 0;
    if (ms > 999)
        ms = 999;
    struct tm tm;
    gmtime_r(&sec, &tm);
    char base[24];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 32, "%s.%03dZ", base, ms);
}

void sentry_event_begin(sentry_t *s, sentry_sb_t *b, const char *event_id, double ts,
                        const char *level, const char *logger)
{
    sentry_sb_printf(b,
                     "{\"event_id\":\"%s\",\"timestamp\":%.3f,\"platform\":\"other\","
                     "\"level\":\"%s\",\"logger\":\"%s\",\"server_name\":",
                     event_id, ts, level, logger);
    sentry_sb_json(b, s->server_name, strlen(s->server_name), 256);
    sentry_sb_puts(b, ",\"environment\":");
    sentry_sb_json(b, s->environment, strlen(s->environment), 256);
    if (s->release) {
        sentry_sb_puts(b, ",\"release\":");
        sentry_sb_json(b, s->release, strlen(s->release), 256);
    }
    sentry_sb_puts(b, ",\"sdk\":{\"name\":\"luar-sentry\",\"version\":\"" SENTRY_VERSION "\"}");
}

static void breadcrumbs_json(sentry_t *s, sentry_sb_t *b)
{
    if (s->ncrumbs == 0)
        return;
    sentry_sb_puts(b, ",\"breadcrumbs\":{\"values\":[");
    for (size_t i = 0; i < s->ncrumbs; i++) {
        if (i)
            sentry_sb_puts(b, ",");
        sentry_sb_puts(b, s->crumbs[(s->crumb_head + i) % s->max_breadcrumbs]);
    }
    sentry_sb_puts(b, "]}");
}

void sentry_event_end(sentry_t *s, sentry_sb_t *b, const char *const *tags, const char *user_json,
                      int breadcrumbs)
{
    sentry_sb_puts(b, ",\"tags\":{");
    int first = 1;
    for (size_t i = 0; tags && tags[i]; i += 2) {
        sentry_sb_printf(b, "%s\"%s\":%s", first ? "" : ",", tags[i], tags[i + 1]);
        first = 0;
    }
    for (size_t i = 0; i < s->ntags; i++) {
        int shadowed = 0;
        for (size_t k = 0; tags && tags[k] && !shadowed; k += 2)
            shadowed = strcmp(tags[k], s->tags[i].key) == 0;
        if (shadowed)
            continue;
        if (!first)
            sentry_sb_puts(b, ",");
        sentry_sb_json(b, s->tags[i].key, strlen(s->tags[i].key), 200);
        sentry_sb_puts(b, ":");
        sentry_sb_json(b, s->tags[i].value, strlen(s->tags[i].value), 200);
        first = 0;
    }
    sentry_sb_puts(b, "}");
    if (user_json || s->user) {
        sentry_sb_puts(b, ",\"user\":");
        sentry_sb_puts(b, user_json ? user_json : s->user);
    }
    if (breadcrumbs)
        breadcrumbs_json(s, b);
    sentry_sb_puts(b, "}");
}

void sentry_exception_json(sentry_sb_t *b, const char *type, const char *message,
                           const char *traceback, const char *mechanism, int handled)
{
    sentry_frame_t frames[SENTRY_MAX_FRAMES];
    size_t n = sentry_frames_parse(traceback, traceback ? strlen(traceback) : 0, frames,
                                   SENTRY_MAX_FRAMES);
    if (n == 0 && sentry_frames_from_message(message, strlen(message), &frames[0]))
        n = 1;
    sentry_sb_puts(b, "{\"type\":");
    sentry_sb_json(b, type, strlen(type), 128);
    sentry_sb_puts(b, ",\"value\":");
    sentry_sb_json(b, message, strlen(message), SENTRY_MAX_VALUE);
    sentry_sb_printf(b, ",\"mechanism\":{\"type\":\"%s\",\"handled\":%s}", mechanism,
                     handled ? "true" : "false");
    if (n > 0) {
        sentry_sb_puts(b, ",\"stacktrace\":");
        sentry_frames_json(b, frames, n);
    }
    sentry_sb_puts(b, "}");
}

/* ---- log lines ------------------------------------------------------------------------- */

/* The parts of a host log line: {"ts":"…","level":"…","msg":"…"[,fields]} */
typedef struct log_line {
    const luar_host_t *h;
    const char *line;
    size_t len;
    const char *ts;
    size_t ts_len;
    const char *msg; /* the JSON string, quotes included */
    size_t msg_len;
    const char *fields; /* members without braces; may be empty */
    size_t fields_len;
} log_line_t;

/* The host's lines are valid JSON: the host's scanner (json_member) reads them. */
static int parse_log_line(const luar_host_t *h, const char *line, size_t len, log_line_t *l)
{
    memset(l, 0, sizeof *l);
    l->h = h;
    l->line = line;
    l->len = len;
    if (len < 2 || line[0] != '{' || line[len - 1] != '}')
        return 0;
    const char *v;
    size_t vlen;
    if (!h->json_member(line, len, "ts", &v, &vlen) || vlen < 2 || v[0] != '"')
        return 0;
    l->ts = v + 1;
    l->ts_len = vlen - 2;
    if (!h->json_member(line, len, "msg", &v, &vlen) || vlen < 2 || v[0] != '"')
        return 0;
    l->msg = v;
    l->msg_len = vlen;
    /* The host writes ts, level and msg first; the fields follow msg. */
    const char *rest = v + vlen;
    const char *end = line + len - 1;
    if (rest < end && *rest == ',') {
        l->fields = rest + 1;
        l->fields_len = (size_t)(end - rest - 1);
    }
    return 1;
}

static const char *crumb_level(int level)
{
    switch (level) {
    case LUAR_PLUGIN_LOG_DEBUG:
        return "debug";
    case LUAR_PLUGIN_LOG_INFO:
        return "info";
    case LUAR_PLUGIN_LOG_WARN:
        return "warning";
    default:
        return "error";
    }
}

void sentry_breadcrumb_add(sentry_t *s, int level, const char *line, size_t len)
{
    log_line_t l;
    if (s->max_breadcrumbs == 0 || !parse_log_line(s->h, line, len, &l))
        return;
    sentry_sb_t b;
    sentry_sb_init(&b);
    sentry_sb_puts(&b, "{\"timestamp\":\"");
    sentry_sb_add(&b, l.ts, l.ts_len);
    sentry_sb_printf(&b,
                     "\",\"level\":\"%s\",\"category\":\"log\",\"message\":", crumb_level(level));
    sentry_sb_add(&b, l.msg, l.msg_len);
    if (l.fields_len) {
        sentry_sb_puts(&b, ",\"data\":{");
        sentry_sb_add(&b, l.fields, l.fields_len);
        sentry_sb_puts(&b, "}");
    }
    sentry_sb_puts(&b, "}");
    char *crumb = sentry_sb_take(&b, NULL);
    if (crumb == NULL)
        return;
    if (s->ncrumbs < s->max_breadcrumbs) {
        s->crumbs[(s->crumb_head + s->ncrumbs++) % s->max_breadcrumbs] = crumb;
    } else {
        free(s->crumbs[s->crumb_head]);
        s->crumbs[s->crumb_head] = crumb;
        s->crumb_head = (s->crumb_head + 1) % s->max_breadcrumbs;
    }
}

void sentry_breadcrumbs_free(sentry_t *s)
{
    for (size_t i = 0; i < s->ncrumbs; i++)
        free(s->crumbs[(s->crumb_head + i) % s->max_breadcrumbs]);
    s->ncrumbs = 0;
    s->crumb_head = 0;
}

/* A field of a log line as a tag value (a JSON string), into `out`; 0 when absent. */
static int field_tag(const log_line_t *l, const char *key, char *out, size_t size)
{
    const char *v;
    size_t vlen;
    if (l->fields_len == 0 || !l->h->json_member(l->line, l->len, key, &v, &vlen))
        return 0;
    if (v[0] == '"' && vlen <= size - 1) {
        memcpy(out, v, vlen);
        out[vlen] = '\0';
        return 1;
    }
    if ((v[0] == '-' || (v[0] >= '0' && v[0] <= '9')) && vlen + 2 <= size - 1) {
        snprintf(out, size, "\"%.*s\"", (int)vlen, v);
        return 1;
    }
    return 0;
}

/* Appends ,"contexts":{"trace":{…}} when trace_id is a JSON string of 32 hex digits. */
static void trace_context(sentry_t *s, sentry_sb_t *b, const char *trace_id, const char *span_id,
                          const char *op)
{
    if (trace_id == NULL || strlen(trace_id) != 32)
        return;
    char span[33];
    if (span_id == NULL || strlen(span_id) != 16) {
        sentry_event_id(s, span); /* Sentry needs a span id: this event's own */
        span[16] = '\0';
        span_id = span;
    }
    sentry_sb_printf(b, ",\"contexts\":{\"trace\":{\"trace_id\":\"%s\",\"span_id\":\"%s\"",
                     trace_id, span_id);
    if (op)
        sentry_sb_printf(b, ",\"op\":\"%s\"", op);
    sentry_sb_puts(b, ",\"type\":\"trace\"}}");
}

int sentry_log_event(sentry_t *s, const char *line, size_t len)
{
    log_line_t l;
    if (!parse_log_line(s->h, line, len, &l))
        return -1;
    const luar_host_t *h = s->h;
    char id[33];
    sentry_event_id(s, id);
    sentry_sb_t b;
    sentry_sb_init(&b);
    sentry_event_begin(s, &b, id, h->now(h), "error", "luar.log");
    sentry_sb_puts(&b, ",\"logentry\":{\"formatted\":");
    sentry_sb_add(&b, l.msg, l.msg_len);
    sentry_sb_puts(&b, "}");
    if (l.fields_len) {
        sentry_sb_puts(&b, ",\"extra\":{");
        sentry_sb_add(&b, l.fields, l.fields_len);
        sentry_sb_puts(&b, "}");
    }
    char trace[64] = "";
    if (field_tag(&l, "trace_id", trace, sizeof trace) && strlen(trace) == 34) {
        trace[33] = '\0';
        trace_context(s, &b, trace + 1, NULL, NULL);
    }
    static const char *const keys[] = {"route", "method", "status", "request_id", "job", "queue"};
    char values[6][160];
    const char *tags[2 * 6 + 3];
    size_t nt = 0;
    for (size_t i = 0; i < 6; i++) {
        if (field_tag(&l, keys[i], values[i], sizeof values[i])) {
            tags[nt++] = keys[i];
            tags[nt++] = values[i];
        }
    }
    tags[nt++] = "where";
    tags[nt++] = "\"log\"";
    tags[nt] = NULL;
    sentry_event_end(s, &b, tags, NULL, 1);
    sentry_transport_submit(s, id, SENTRY_CAT_ERROR, &b);
    return 0;
}

/* ---- uncaught errors --------------------------------------------------------------------- */

static void tag_json(char *out, size_t size, const char *v)
{
    sentry_sb_t b;
    sentry_sb_init(&b);
    sentry_sb_json(&b, v, strlen(v), 150);
    snprintf(out, size, "%s", b.data && !b.oom ? b.data : "\"\"");
    sentry_sb_free(&b);
}

void sentry_error_event(sentry_t *s, const luar_plugin_error_t *e)
{
    char id[33];
    sentry_event_id(s, id);
    int http = e->route != NULL, job = e->job != NULL;
    char logger[64];
    snprintf(logger, sizeof logger, "luar.%.40s", e->where ? e->where : "lua");
    sentry_sb_t b;
    sentry_sb_init(&b);
    sentry_event_begin(s, &b, id, e->timestamp, "error", logger);
    if (http || job) {
        sentry_sb_puts(&b, ",\"transaction\":");
        const char *t = http ? e->route : e->job;
        sentry_sb_json(&b, t, strlen(t), 200);
    }
    char mechanism[64];
    snprintf(mechanism, sizeof mechanism, "luar.%.40s", e->where ? e->where : "lua");
    sentry_sb_puts(&b, ",\"exception\":{\"values\":[");
    sentry_exception_json(&b, "LuaError", e->message, e->traceback, mechanism, 0);
    sentry_sb_puts(&b, "]}");
    trace_context(s, &b, e->trace_id, e->span_id, http ? "http.server" : job ? "queue.task" : NULL);
    if (job) {
        sentry_sb_puts(&b, ",\"extra\":{\"job_id\":");
        sentry_sb_json(&b, e->job_id ? e->job_id : "", e->job_id ? strlen(e->job_id) : 0, 64);
        sentry_sb_printf(&b, ",\"attempt\":%d,\"final\":%s}", e->attempt,
                         e->final ? "true" : "false");
    }
    char v[8][200];
    const char *tags[2 * 8 + 1];
    size_t nt = 0;
#define TAG(key, value)                                                                            \
    do {                                                                                           \
        if (value) {                                                                               \
            tag_json(v[nt / 2], sizeof v[0], value);                                               \
            tags[nt] = key;                                                                        \
            tags[nt + 1] = v[nt / 2];                                                              \
            nt += 2;                                                                               \
        }                                                                                          \
    } while (0)
    TAG("where", e->where);
    TAG("route", e->route);
    TAG("method", e->method);
    TAG("request_id", e->request_id);
    TAG("job", e->job);
    TAG("queue", e->queue);
    TAG("schedule", e->schedule);
    if (e->status > 0) {
        snprintf(v[nt / 2], sizeof v[0], "\"%d\"", e->status);
        tags[nt] = "status";
        tags[nt + 1] = v[nt / 2];
        nt += 2;
    }
#undef TAG
    tags[nt] = NULL;
    sentry_event_end(s, &b, tags, NULL, 1);
    sentry_transport_submit(s, id, SENTRY_CAT_ERROR, &b);
}
