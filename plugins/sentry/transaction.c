/*
 * Sentry transactions (https://develop.sentry.dev/sdk/event-payloads/transaction/) from the
 * host's spans: a request (op http.server) or a job attempt (op queue.task) whose trace is
 * sampled becomes a "transaction" event; the outbound calls (op http.client) made while it
 * ran are its child spans. A trace is kept when the host marks it sampled and its id falls
 * under traces_sample_rate (the id's last 8 hex digits as a fraction, so every process
 * sharing a trace takes the same decision). Child spans wait in a small pool until their
 * parent ends; ones whose parent never reports (a trace not ours) age out.
 */
#include "sentry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHILDREN 512    /* waiting child spans, all transactions together */
#define CHILD_MAX_AGE 300.0 /* seconds a child waits for its parent */

typedef struct child {
    char trace_id[33];
    char parent_id[17];
    double end;
    char *json;
} child_t;

static child_t g_children[MAX_CHILDREN];
static size_t g_nchildren;

static int sampled(const sentry_t *s, const luar_plugin_span_t *sp)
{
    if (!sp->sampled || s->traces_sample_rate <= 0 || strlen(sp->trace_id) != 32)
        return 0;
    if (s->traces_sample_rate >= 1)
        return 1;
    unsigned long x = strtoul(sp->trace_id + 24, NULL, 16);
    return (double)x / 4294967296.0 < s->traces_sample_rate;
}

static const luar_plugin_attr_t *attr(const luar_plugin_span_t *sp, const char *key)
{
    for (size_t i = 0; i < sp->nattrs; i++)
        if (strcmp(sp->attrs[i].key, key) == 0)
            return &sp->attrs[i];
    return NULL;
}

/* Sentry's span status from an HTTP status (or a failure without one). */
static const char *status_of(long http, int error)
{
    if (http == 0)
        return error ? "internal_error" : "ok";
    if (http < 400)
        return "ok";
    switch (http) {
    case 400:
        return "invalid_argument";
    case 401:
        return "unauthenticated";
    case 403:
        return "permission_denied";
    case 404:
        return "not_found";
    case 409:
        return "already_exists";
    case 429:
        return "resource_exhausted";
    case 499:
        return "cancelled";
    case 501:
        return "unimplemented";
    case 503:
        return "unavailable";
    case 504:
        return "deadline_exceeded";
    default:
        return http >= 500 ? "internal_error" : "invalid_argument";
    }
}

static void children_free_at(size_t i)
{
    free(g_children[i].json);
    g_children[i] = g_children[--g_nchildren];
}

void sentry_transactions_free(void)
{
    while (g_nchildren)
        children_free_at(g_nchildren - 1);
}

static void add_child(const luar_plugin_span_t *sp)
{
    const luar_plugin_attr_t *st = attr(sp, "http.response.status_code");
    const luar_plugin_attr_t *url = attr(sp, "url.full");
    const luar_plugin_attr_t *err = attr(sp, "error.type");
    long http = st && !st->str ? (long)st->num : 0;
    sentry_sb_t b;
    sentry_sb_init(&b);
    sentry_sb_printf(&b,
                     "{\"trace_id\":\"%s\",\"span_id\":\"%s\",\"parent_span_id\":\"%s\","
                     "\"op\":\"http.client\",\"start_timestamp\":%.6f,\"timestamp\":%.6f,"
                     "\"status\":\"%s\",\"description\":",
                     sp->trace_id, sp->span_id, sp->parent_id, sp->start, sp->end,
                     status_of(http, sp->error));
    char desc[2200];
    snprintf(desc, sizeof desc, "%s %.2000s", sp->name, url && url->str ? url->str : "");
    sentry_sb_json(&b, desc, strlen(desc), 0);
    sentry_sb_puts(&b, ",\"data\":{\"http.request.method\":");
    sentry_sb_json(&b, sp->name, strlen(sp->name), 16);
    if (url && url->str) {
        sentry_sb_puts(&b, ",\"url\":");
        sentry_sb_json(&b, url->str, strlen(url->str), 2000);
    }
    if (http)
        sentry_sb_printf(&b, ",\"http.response.status_code\":%ld", http);
    if (err && err->str) {
        sentry_sb_puts(&b, ",\"error.type\":");
        sentry_sb_json(&b, err->str, strlen(err->str), 64);
    }
    sentry_sb_puts(&b, "}}");
    char *json = sentry_sb_take(&b, NULL);
    if (json == NULL)
        return;
    /* Full: the oldest child goes (its transaction is the likeliest to be gone). */
    if (g_nchildren == MAX_CHILDREN) {
        size_t oldest = 0;
        for (size_t i = 1; i < g_nchildren; i++)
            if (g_children[i].end < g_children[oldest].end)
                oldest = i;
        children_free_at(oldest);
    }
    child_t *c = &g_children[g_nchildren++];
    snprintf(c->trace_id, sizeof c->trace_id, "%s", sp->trace_id);
    snprintf(c->parent_id, sizeof c->parent_id, "%s", sp->parent_id);
    c->end = sp->end;
    c->json = json;
}

void sentry_span_ended(sentry_t *s, const luar_plugin_span_t *sp)
{
    if (!sampled(s, sp))
        return;
    if (sp->kind == LUAR_PLUGIN_SPAN_CLIENT) {
        add_child(sp);
        return;
    }
    int server = sp->kind == LUAR_PLUGIN_SPAN_SERVER;
    if (!server && sp->kind != LUAR_PLUGIN_SPAN_CONSUMER)
        return;
    const luar_plugin_attr_t *route = attr(sp, "http.route");
    const char *r = route && route->str ? route->str : "";
    /* probes and scrapes are not transactions worth a quota */
    if (server &&
        (strcmp(r, "/healthz") == 0 || strcmp(r, "/readyz") == 0 || strcmp(r, "/metrics") == 0 ||
         strcmp(r, "unmatched") == 0 || strncmp(r, "/admin", 6) == 0))
        return;
    const luar_plugin_attr_t *st = attr(sp, "http.response.status_code");
    long http = st && !st->str ? (long)st->num : 0;
    char id[33];
    sentry_event_id(s, id);
    sentry_sb_t b;
    sentry_sb_init(&b);
    sentry_sb_printf(&b,
                     "{\"event_id\":\"%s\",\"type\":\"transaction\",\"platform\":\"other\","
                     "\"start_timestamp\":%.6f,\"timestamp\":%.6f,\"transaction\":",
                     id, sp->start, sp->end);
    sentry_sb_json(&b, sp->name, strlen(sp->name), 200);
    sentry_sb_printf(&b, ",\"transaction_info\":{\"source\":\"%s\"},\"server_name\":",
                     server ? "route" : "task");
    sentry_sb_json(&b, s->server_name, strlen(s->server_name), 256);
    sentry_sb_puts(&b, ",\"environment\":");
    sentry_sb_json(&b, s->environment, strlen(s->environment), 256);
    if (s->release) {
        sentry_sb_puts(&b, ",\"release\":");
        sentry_sb_json(&b, s->release, strlen(s->release), 256);
    }
    sentry_sb_puts(&b, ",\"sdk\":{\"name\":\"luar-sentry\",\"version\":\"" SENTRY_VERSION "\"}");
    sentry_sb_printf(&b, ",\"contexts\":{\"trace\":{\"trace_id\":\"%s\",\"span_id\":\"%s\"",
                     sp->trace_id, sp->span_id);
    if (sp->parent_id[0])
        sentry_sb_printf(&b, ",\"parent_span_id\":\"%s\"", sp->parent_id);
    sentry_sb_printf(&b, ",\"op\":\"%s\",\"status\":\"%s\",\"type\":\"trace\"}}",
                     server ? "http.server" : "queue.task", status_of(http, sp->error));
    sentry_sb_puts(&b, ",\"spans\":[");
    int first = 1;
    for (size_t i = 0; i < g_nchildren;) {
        child_t *c = &g_children[i];
        if (strcmp(c->trace_id, sp->trace_id) == 0 && strcmp(c->parent_id, sp->span_id) == 0) {
            if (!first)
                sentry_sb_puts(&b, ",");
            sentry_sb_puts(&b, c->json);
            first = 0;
            children_free_at(i);
        } else if (c->end < sp->end - CHILD_MAX_AGE) {
            children_free_at(i);
        } else {
            i++;
        }
    }
    sentry_sb_puts(&b, "]");
    const char *tags[2 * 4 + 1];
    char v[4][200];
    size_t nt = 0;
    static const char *const keys[][2] = {{"http.request.method", "method"},
                                          {"http.route", "route"},
                                          {"luar.job.name", "job"},
                                          {"luar.job.queue", "queue"}};
    for (size_t i = 0; i < 4; i++) {
        const luar_plugin_attr_t *a = attr(sp, keys[i][0]);
        if (a == NULL || a->str == NULL)
            continue;
        sentry_sb_t t;
        sentry_sb_init(&t);
        sentry_sb_json(&t, a->str, strlen(a->str), 150);
        snprintf(v[nt / 2], sizeof v[0], "%s", t.data && !t.oom ? t.data : "\"\"");
        sentry_sb_free(&t);
        tags[nt] = keys[i][1];
        tags[nt + 1] = v[nt / 2];
        nt += 2;
    }
    tags[nt] = NULL;
    sentry_event_end(s, &b, tags, NULL, 0);
    sentry_transport_submit(s, id, SENTRY_CAT_TRANSACTION, &b);
}
